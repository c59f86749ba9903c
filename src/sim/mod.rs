//! Simulators that face a real tdmgw (or each other) on real interfaces,
//! for tests, the demo and the CLI (`tdmgw sim ...`).
//!
//! # The simulated exchange (`tdmgw sim exchange`)
//!
//! The network side of a PRI on a raw E1, split as the gateway is
//! (DESIGN.md §1):
//!
//! - line side, [`exchange_line::ExchangeLine`]: a `RawSpan` (CRC-4 as
//!   configured) and one [`exchange_audio::AudioChannel`] per B-channel
//!   (test signal out, echo check, DTMF in and out), run frame by frame
//!   behind a raw driver's `exchange(rx, tx)` callback with no allocation;
//! - control side, [`exchange::ExchangeControl`]: a network-role
//!   `DChannel` (Q.921 + Q.931 with the spec's default timers) and the call
//!   mix of an [`exchange::Scenario`], in a plain loop (`step(now)` /
//!   `poll_timeout(now)`);
//! - between them, the SPSC rings of [`exchange_line::ControlRings`]
//!   (`media::ring`, the project's SPSC ring):
//!   D-channel frames both ways, audio commands in, audio and DTMF reports
//!   out.
//!
//! Shells ([`exchange_run`]): [`run_satop`] (the exchange is the clock
//! master: internal timing), [`run_serial`] / [`run_serial_port`], and
//! [`run_pair_end`] on one end of an in-process
//! [`exchange_pair::PairWire`] whose other end a gateway (or the test peer)
//! drives from its own thread; [`run_pair_simulated`] runs two of them on a
//! pair line in one thread in simulated time (reproducible, load-proof). Each returns an [`exchange::ExchangeReport`]
//! (serde JSON); `tdmgw sim exchange` is [`exchange_cli`]. The same pieces
//! in the user role with
//! [`exchange_audio::AudioMode::Echo`] make the test peer of
//! `tests/sim_exchange.rs`.
//!
//! # The simulated core (`tdmgw sim core`)
//!
//! [`core`]: a simulated MCVP core on SIP/UDP ([`core::SimCore::start`] /
//! [`core::run`] with a [`core::SimCoreConfig`], results in a
//! [`core::SimCoreReport`]); its per-call RTP endpoint is [`rtp_peer`], its
//! command line [`core_cli`].

pub mod core;
pub mod core_cli;
pub mod demo;
pub mod exchange;
pub mod exchange_audio;
pub mod exchange_cli;
pub mod exchange_line;
pub mod exchange_pair;
pub mod exchange_run;
pub mod rtp_peer;

pub use exchange::{
    CallRecord, ExchangeConfig, ExchangeControl, ExchangeReport, Incoming, RunControl, Scenario,
};
pub use exchange_audio::AudioMode;
pub use exchange_pair::{PairEndPort, PairWire, pair_wire};
pub use exchange_run::{
    SimError, run_pair_end, run_pair_simulated, run_satop, run_serial, run_serial_port,
};
