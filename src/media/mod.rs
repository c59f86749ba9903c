//! The media plane's sans-IO pieces (DESIGN.md §1): everything a media thread
//! does to one B-channel between the E1 octets and the RTP datagrams.
//!
//! Nothing here allocates after construction, takes a lock or reads a clock:
//! time is passed in as a sample count of the E1 clock (8 kHz, `u64`).
//! The engine (mio loop, sockets, rings) is built on top later.

pub mod dtmf;
pub mod latch;
pub mod rtp;
pub mod seq;
pub mod tone;

mod fuzz;
#[doc(hidden)]
pub use fuzz::fuzz_rtp_receive;
