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
//! - [`e1`]: G.704 frame and G.706 §4.1-4.3 alignment.
//!   [`e1::E1Framer::emit_frame`] writes TS0 (FAS / NFAS with A and Sa bits,
//!   and the CRC-4 multiframe when built with `with_crc4(true)`) of each
//!   outgoing 32-octet frame; [`e1::E1Deframer::handle_octet`] takes
//!   line octets at any bit offset and returns each 32-octet frame once in
//!   alignment (borrowed, valid until the next call), counting FAS errors and
//!   alignment losses (three consecutive errored FAS); with CRC-4 it also
//!   finds the multiframe (§4.2), checks CRC-4 (§4.3, E bits, FEBE, the
//!   915/1000 guard) and, with `with_annex_b(true)`, falls back to basic
//!   framing against a non-CRC-4 far end (Annex B).
//! - [`e1_alarm`]: G.775 LOS and AIS on the raw bits, LOF / LOMF / RAI from
//!   the deframer, debounced (integrated) into alarms with DAHDI-like
//!   defaults; each raise/clear is a [`e1_alarm::LineEvent`].
//! - [`e1_perf`]: anomaly counts and G.826 ES / SES / UAS (Annex A
//!   availability, held back up to ten seconds) per 15-minute interval, the
//!   last 96 intervals and since start.
//! - [`span`]: [`span::RawSpan`], the join a raw driver and the media
//!   thread use. `handle_rx(octets, on_frame)` deframes (any alignment),
//!   feeds TS16 to the HDLC receiver and hands each aligned frame to
//!   `on_frame`; received D-channel frames wait in a fixed ring for
//!   `poll_dchannel_frame(out)`. `emit_frame(frame)` writes TS0 and TS16 of
//!   a frame whose B-channels the caller filled; `send_dchannel_frame`
//!   queues in a fixed queue. `poll_event`, `alarms`, `counters`, `perf`
//!   report. Line time (for alarms and counters) is the received bits;
//!   `handle_no_signal(octets)` keeps it going when the driver has none.
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
//! Drivers ([`driver`]): `dahdi` (the card frames; DAHDI gives alarms and
//! counters), `pair` ([`driver::pair::PairLine`], an in-process line with
//! both ends and knobs for clock offset, controlled and bit slips, bit
//! errors, LOS and AIS), and the raw-E1 drivers [`driver::satop`] and
//! [`driver::serial`]. The raw drivers move unframed line octets between a
//! UDP socket (RFC 4553 SAToP) or a tty and the span through one callback,
//! `exchange(rx, tx)`: `rx` received line octets, `tx` whole 32-octet frames
//! to fill, one frame out per frame in (loop timing, [`driver::timing`]);
//! with nothing received they free-run on a 1 ms timer and report LOS.

pub mod driver;
pub mod e1;
pub mod e1_alarm;
pub mod e1_perf;
pub mod g711;
pub mod hdlc;
pub mod span;
