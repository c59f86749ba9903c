//! Q.921 LAPD for ISDN PRI (ITU-T Q.921, ETSI EN 300 125): the frame codec
//! and the data link state machine, sans-IO.
//!
//! # Public API (for the D-channel task and Q.931)
//!
//! - [`frame`]: [`Frame`] (borrowed view, `new_checked`), [`FrameRepr`]
//!   (`parse`, `parse_bytes`, `buffer_len`, `emit`, `to_vec`), [`Address`],
//!   [`Control`], [`Sapi`], [`Tei`], [`Role`] (C/R conventions of §3.3.2).
//!   Frames run from the address field to the end of the information field:
//!   no flags, no FCS (the HDLC line layer or the dahdi fd adds those).
//! - [`Link`]: one data link (SAPI 0, TEI 0 on PRI), built from
//!   [`LinkConfig::pri`] with T200/T203 from the span's
//!   [`TimerValues`](crate::isdn::timers::TimerValues) and N200/k from the
//!   site config.
//!   - in: `handle_frame(now, &[u8])`, `handle_timeout(now)`,
//!     `dl_establish(now)`, `dl_release(now)`, `dl_data(now, &[u8])`,
//!     `dl_unit_data(&[u8])`, `set_own_receiver_busy(bool)`;
//!   - out: `poll_transmit() -> Option<Vec<u8>>` (a frame to send),
//!     `poll_event() -> Option<Event>` (DL-ESTABLISH/DL-RELEASE
//!     indication and confirm, DL-DATA and DL-UNIT-DATA indication,
//!     MDL-ERROR), `poll_timeout() -> Option<Instant>`;
//!   - read: `state()`, `counters()` (every MDL error code A..O and frame
//!     counts), `sequence_state()`.
//!
//! Drain `poll_transmit` and `poll_event` after every input.
//!
//! # Timers per state
//!
//! T200 runs in state 5 (SABME), 6 (DISC), 7 while I frames are
//! unacknowledged, and 8 (poll). T203 runs in state 7 while T200 does not.
//! A local re-establishment timer (back-off from `backoff_min`, doubling up
//! to `backoff_max`) runs in state 4 when `auto_establish` is set and layer 3
//! has not released the link.
//!
//! # Frame rejection
//!
//! Following ETSI PRI practice (Q.921 §5.8.5, 2nd paragraph), a frame
//! rejection condition (L, M, N, O) or an N(R) error (J) in state 7 or 8
//! gives MDL-ERROR and re-establishment; FRMR is never sent, but a received
//! FRMR (K) is honoured the same way.

pub mod frame;
pub mod link;
pub mod seq;

pub use frame::{
    Address, Control, Frame, FrameError, FrameRepr, Role, Sapi, Supervisory, Tei, Unnumbered,
    fuzz_q921_frame,
};
pub use link::{Counters, DataError, Event, Link, LinkConfig, MdlError, N201_DEFAULT, State};
