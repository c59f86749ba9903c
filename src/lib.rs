//! tdmgw: an E1 ISDN PRI to SIP/RTP gateway for emergency-call networks.
//!
//! See `DESIGN.md` for the planes and the path of a call. Layers, from the
//! bottom: `line` (E1 framing, TS16 HDLC, G.711, line drivers), `isdn`
//! (Q.921 and Q.931 cores and the D-channel stack), `sip` (messages, SDP,
//! transactions), `media` (the media plane's RTP pieces), `call` (where ISDN
//! and SIP meet), `config` (files into parameters), `ops` (systemd lifecycle,
//! supervisor, logging, metrics, admin), `sim` (the simulated exchange
//! and core that face a real tdmgw).

pub mod call;
pub mod config;
pub mod isdn;
pub mod line;
pub mod media;
pub mod ops;
pub mod sim;
pub mod sip;

/// `0.1.0 (git abc123)`: the crate version and the revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("TDMGW_GIT_REV"),
    ")"
);
