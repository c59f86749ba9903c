//! Simulators (issue 7 §5), usable from tests and from the CLI so that each
//! can face a real tdmgw process or a real peer.
//!
//! - [`core`]: `tdmgw sim core`, a simulated MCVP core on SIP/UDP
//!   ([`core::SimCore::start`] / [`core::run`] with a
//!   [`core::SimCoreConfig`], results in a [`core::SimCoreReport`]); its
//!   per-call RTP endpoint is [`rtp_peer`], its command line
//!   [`core_cli`].

pub mod core;
pub mod core_cli;
pub mod rtp_peer;
