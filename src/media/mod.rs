//! The media plane's sans-IO pieces (DESIGN.md §1): everything a media thread
//! does to one B-channel between the E1 octets and the RTP datagrams.
//!
//! Nothing here allocates after construction, takes a lock or reads a clock:
//! time is passed in as a sample count of the E1 clock (8 kHz, `u64`).
//!
//! # Public API (what the engine calls)
//!
//! - [`rtp::RtpPacket::parse`] checks a received datagram once
//!   (RFC 3550 §5.1); every failure is an [`rtp::RtpError`] counted in
//!   [`rtp::RtpErrorCounters`]. [`rtp::RtpRepr::emit`] writes a header and
//!   payload into a preallocated buffer (rtp-rs `build_into`).
//! - [`latch::Latch::check`] decides on the source (symmetric RTP, optional
//!   restriction to the SDP address) and reports SSRC changes;
//!   [`latch::Latch::send_to`] says where to send.
//! - [`seq::SourceSeq`] (RFC 3550 A.1/A.3) and [`seq::Jitter`] (A.8) keep the
//!   receive statistics RTCP reports; [`seq::extend_seq`] / [`seq::extend_ts`]
//!   do wrap-around.
//! - [`jitter::JitterBuffer::insert`] per received audio packet (decoded to
//!   linear), [`jitter::JitterBuffer::pull`] per channel tick;
//!   missing samples are flagged for concealment; counters in
//!   [`jitter::JitterCounters`].
//!
//! - [`dtmf::DtmfDetector::handle_samples`] per E1 tick of linear audio;
//!   [`dtmf::DtmfDetector::poll_event`] yields digit start/end (Q.23 tones,
//!   Q.24 limits).
//! - [`tone::ToneGenerator::fill`] plays call-progress tones (UK defaults)
//!   and DTMF digits, phase-continuous across calls.
//! - [`plc::Plc::process`] per E1 tick on the jitter buffer's output and its
//!   missing flags: G.711 Appendix I concealment, in place, 3.75 ms delay.
//! - [`rfc4733::EventSender`]: `start`/`end` from the DTMF detector's
//!   events, `poll_packet(now)` per tick (voice held while `is_active`);
//!   [`rfc4733::EventReceiver`]: `handle_packet` per telephone-event packet,
//!   `fill(now, block)` per tick after the PLC (regenerated DTMF),
//!   `poll_event` for the control plane.
//! - [`rtcp::session::RtcpSession`]: `on_rtp_sent` per packet sent,
//!   `handle_rtcp(now, ntp, datagram)` per RTCP datagram,
//!   `poll_timeout`/`handle_timeout(time, reception, buf)` for reports
//!   (RFC 3550 §6.3 interval), `bye` on disconnect; codecs in
//!   [`rtcp::compound`].
//! - [`quality::CallQuality::from_stats`] once at call end: the summary with
//!   the G.107 R-factor and MOS.
//!
//!
//! # The engine (what the control plane and the line side see)
//!
//! - [`engine::MediaCore::new`] builds, from plain [`engine::EngineParams`]
//!   (spans × timeslots, bind address, RTP port base, jitter ceiling, DTMF
//!   delay, ring sizes, seed), the channel table and the rings, and returns
//!   the control plane's [`engine::ControlHandle`]: a
//!   [`ring::Producer`] of [`control::Command`]s, a [`ring::Consumer`] of
//!   [`control::Event`]s and the per-channel [`channel::ChannelStats`]
//!   atomics telemetry reads. Port of span `s` timeslot `t`:
//!   `base + 64 (s - 1) + 2 t`, RTCP + 1. The memory budget is computed here.
//! - Sans-IO core: [`engine::MediaCore::handle_tdm_frame`] per received E1
//!   frame (gives the frame to send: loop timing), `handle_rtp`,
//!   `handle_commands`, `poll_transmit`. Every [`channel::TICK_MS`] ms a
//!   [`channel::Channel`] ticks: E1 audio → delay line + DTMF detector →
//!   RTP packets every ptime; RTP → latch → jitter buffer → concealment →
//!   tones/digits → E1.
//! - [`engine::MediaLoop`] binds the sockets and runs the mio poll, clocked
//!   by a [`tdm::TdmPort`] (the span drivers; [`tdm::SimE1`] for tests and
//!   benches); [`engine::spawn`] runs it on its own thread (pinning,
//!   `SCHED_FIFO`, `mlockall` as asked, warnings on failure) with a
//!   supervisor check-in callback per turn.
//! - [`lines::LinePort`]: the engine's [`tdm::TdmPort`] over raw E1 spans
//!   (`line::span::RawSpan` + `satop` / `serial` / `pair` driver per span),
//!   one frame out per frame in; its [`lines::LineHandle`] gives the control
//!   plane each span's D-channel rings ([`dchannel_ring::DChannelRings`],
//!   `into_port()` for `isdn::task::spawn`), a ring of line events and a
//!   lock-free [`span_status::SpanTelemetry`] per span;
//!   [`lines::pair_line`]'s far end is the simulated exchange's span.
//! - [`dahdi_lines::DahdiLinePort`]: the engine's [`tdm::TdmPort`] over
//!   DAHDI spans' B-channels (per-timeslot blocks turned into frames, one
//!   block written per block read); the same line event ring and
//!   [`span_status::SpanTelemetry`] per span, no D-channel rings (the
//!   D-channel task reads the DAHDI D-channel fd itself).
//! - Wired into the channel: the PLC runs on every playout tick (a 30-sample
//!   delay line when nothing is missing); detected DTMF goes out as RFC 4733
//!   events when `telephone_event_pt` is negotiated (in-band otherwise);
//!   received events are regenerated into the timeslot and reported as
//!   `DtmfReceivedStart`/`DtmfReceivedEnd`; one RTCP session per connected
//!   channel (reports on the E1 clock, BYE on disconnect, RTT from the far
//!   end's blocks; [`engine::MediaCore::handle_rtcp`] /
//!   [`engine::MediaCore::poll_transmit_rtcp`] on the RTCP socket); the
//!   `CallSummary` carries loss, jitter, RTT, concealment and the G.107
//!   R-factor and MOS.

pub mod channel;
pub mod control;
pub mod dahdi_lines;
pub mod dchannel_ring;
pub mod dtmf;
pub mod engine;
pub mod jitter;
pub mod latch;
pub mod lines;
pub mod plc;
pub mod quality;
pub mod rfc4733;
pub mod ring;
pub mod rtcp;
pub mod rtp;
pub mod seq;
pub mod span_status;
pub mod tdm;
pub mod tone;
pub mod trace_tap;

mod fuzz;

/// A hint to fetch the cache line holding `*p` (no effect where the
/// architecture has no such instruction). For the media thread's
/// per-channel state, which a thousand channels push out of cache.
#[inline(always)]
pub(crate) fn prefetch<T>(p: &T) {
    prefetch_ptr(p as *const T as *const u8);
}

/// [`prefetch`] of every cache line that items `start..start + len` of
/// `ring` touch, wrapping at its end (a tick's run of a sample ring;
/// `start` is an index into it, `len` at most its length).
#[inline(always)]
pub(crate) fn prefetch_ring<T>(ring: &[T], start: usize, len: usize) {
    let n = ring.len();
    if start >= n || len == 0 {
        return;
    }
    // No `%`: a division per line costs more than the prefetch saves.
    let len = len.min(n);
    let at = |i: usize| if i >= n { i - n } else { i };
    let per_line = (64 / core::mem::size_of::<T>().max(1)).max(1);
    let mut k = 0;
    while k < len {
        prefetch(&ring[at(start + k)]);
        k += per_line;
    }
    prefetch(&ring[at(start + len - 1)]);
}

/// [`prefetch`] of every cache line of the first `bytes` bytes of `*p`
/// (at most the whole of it).
#[inline(always)]
pub(crate) fn prefetch_bytes<T>(p: &T, bytes: usize) {
    let base = p as *const T as *const u8;
    let len = bytes.min(core::mem::size_of::<T>());
    let mut off = 0;
    while off < len {
        prefetch_ptr(base.wrapping_add(off));
        off += 64;
    }
    if len > 0 {
        prefetch_ptr(base.wrapping_add(len - 1));
    }
}

/// `dst.copy_from_slice(src)` for the short runs of the per-tick paths
/// (a tick's 16 samples, split where a ring wraps): in fixed blocks of 8
/// the compiler moves inline, where a slice copy of unknown length is a
/// call into `memcpy`. Copies `min(dst.len(), src.len())` items.
#[inline(always)]
pub(crate) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len().min(src.len());
    let mut dc = dst[..n].chunks_exact_mut(8);
    let mut sc = src[..n].chunks_exact(8);
    for (d, s) in (&mut dc).zip(&mut sc) {
        if let (Ok(d), Ok(s)) = (<&mut [T; 8]>::try_from(d), <&[T; 8]>::try_from(s)) {
            *d = *s;
        }
    }
    for (d, s) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *d = *s;
    }
}

#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing into
    // the program, whatever the address; SSE is part of the x86_64
    // baseline. (Callers pass addresses inside live objects.)
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
#[doc(hidden)]
pub use fuzz::fuzz_rtp_receive;
