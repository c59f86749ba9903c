//! E1 line layer: what sits between a line driver and the D-channel / B-channel users.
//!
//! Runs on the media thread (DESIGN.md §1): every type here is sized at
//! construction and allocates nothing afterwards, takes no lock and never
//! blocks. The cores are sans-IO (DESIGN.md §4): they are fed octets and
//! drained of octets and frames; time, where needed, is counted in E1 frames
//! (8000 per second), never read from a clock.
//!
//! Wire conventions (DESIGN.md §5): the raw octet stream carries line bits in
//! transmission order, most significant bit first. TS16 carries HDLC whose
//! octets go least significant bit first, so the first HDLC bit sits in bit 1
//! (the MSB) of the TS16 octet. B-channel octets are G.711 A-law, idle `0xD5`.
//!
//! # Layer contract
//!
//! - [`e1`]: G.704 basic frame and G.706 §4.1 frame alignment.
//!   [`e1::E1Framer::emit_frame`] writes TS0 (FAS / NFAS with A and Sa bits,
//!   and the CRC-4 multiframe when built with `with_crc4(true)`) of each
//!   outgoing 32-octet frame; [`e1::E1Deframer::handle_octet`] takes
//!   line octets at any bit offset and returns each 32-octet frame once in
//!   alignment (borrowed, valid until the next call), counting FAS errors and
//!   alignment losses (three consecutive errored FAS).
//! - [`hdlc`]: the D-channel bit layer on TS16.
//!   - [`hdlc::HdlcDecoder::handle_octet`] takes one received TS16 octet and
//!     returns `Some(frame)` (address..information, FCS stripped and checked)
//!     when a good frame has just closed. The slice borrows the decoder's own
//!     fixed buffer and is valid until the next call: copy it into a ring slot.
//!     Bad FCS, aborts, over-long, short and non-octet frames are dropped and
//!     counted in [`hdlc::HdlcRxStats`].
//!   - [`hdlc::HdlcEncoder::load`] queues one frame (at most
//!     [`hdlc::MAX_FRAME_OCTETS`]) when [`hdlc::HdlcEncoder::can_load`] says
//!     so; [`hdlc::HdlcEncoder::poll_octet`] yields the next TS16 octet to send,
//!     idle flags when there is nothing to send. A frame loaded while the
//!     previous one is still going out follows it with one shared flag.
//!
//! Still to come in this layer (issue 3): CRC-4 receive (multiframe
//! alignment, checking, E bits, Annex B), alarms and G.826 counters in `e1`,
//! the span that joins framer, HDLC and B-channels, and the `pair`, `satop`
//! and `serial` drivers. [`g711`] and the DAHDI driver ([`driver::dahdi`]) are
//! here.

pub mod driver;
pub mod e1;
pub mod e1_alarm;
pub mod e1_perf;
pub mod g711;
pub mod hdlc;
pub mod span;
