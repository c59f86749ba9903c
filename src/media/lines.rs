//! Raw E1 spans as the media engine's line side (issues 3 and 5; DESIGN.md
//! §1 and §5): [`LinePort`] is a [`TdmPort`] that owns, per span, a
//! [`RawSpan`] and its driver (SAToP, serial, or one end of an in-process
//! `pair` line), and the span's rings to the control plane.
//!
//! # Readiness
//!
//! The engine registers one descriptor per [`TdmPort`]. A `LinePort` keeps
//! its own inner `mio::Poll` (an epoll descriptor, readable while any of its
//! sources is ready) holding every driver's descriptor and one `timerfd`
//! armed (absolute, `CLOCK_MONOTONIC`) at the earliest driver deadline
//! (`poll_timeout`); [`TdmPort::raw_fd`] is the inner poll's descriptor.
//! Each [`TdmPort::service`] drains the inner poll, gives every driver its
//! `recv_ready` (all of them: a read that finds nothing costs one syscall)
//! and, when due, its `handle_timeout`, then re-arms the timer (at once if
//! a driver stopped at its read budget). Driver time `now_us` is
//! `CLOCK_MONOTONIC` in microseconds.
//!
//! # Frames (loop timing)
//!
//! Each payload a driver hands over goes through `exchange(rx, tx)`:
//! `rx` into [`RawSpan::handle_rx`]; every aligned frame to the engine's
//! `on_frame(span, rx, tx)` (which fills the B-channels of a transmit
//! frame); those frames wait in a small backlog
//! ([`LineSpanParams::tx_backlog_frames`]) and fill `tx` 32 octets at a
//! time, [`RawSpan::emit_frame`] writing TS0 and TS16 into each. With no
//! aligned frames (LOS, LOF) `tx` is still filled, with idle B-channels
//! (0xD5) and TS0 as the span decides (A bit = RAI while we are in red or
//! blue alarm), so the far end sees our alarm state. One frame out per
//! frame in; the drivers free-run on their timers with nothing received.
//!
//! # Rings to the control plane
//!
//! - D-channel: per span a [`dchannel_rings`] pair; [`LineHandle::dchannels`]
//!   holds the control sides (`into_port()` gives the `RingPort` for
//!   `isdn::task::spawn`). Pumped once per service per span.
//! - Events: one ring of [`LineEventRecord`]s for all spans: alarm
//!   raise/clear ([`LineEvent`]) and the driver's own loss-of-signal /
//!   remote-fault changes. A full ring is counted
//!   ([`LineHandle::events`]`.overflows()`), never waited on.
//! - Status: per span an `Arc<`[`SpanTelemetry`]`>` (seqlock of atomics)
//!   republished on every service.
//!
//! # The `pair` line's far end
//!
//! [`pair_line`] builds both ends of an in-process E1: [`PairNearEnd`]
//! (our span's driver) keeps the [`PairLine`], stepped 8 frame periods per
//! millisecond by the port's timer, whose impairments (LOS, AIS, bit
//! errors, bit slips) another thread changes through a [`PairControl`]
//! ([`PairNearEnd::take_control`], a ring of [`Impairment`]s); the
//! [`PairFarEnd`] is the exchange's end, reached through two fixed rings
//! (line octets towards it, 32-octet frames back) and an eventfd. Hand the
//! far end to another `LinePort` ([`LineDriverParams::PairFar`]) on the
//! simulated exchange's own thread (with a `MediaLoop` of its own for its
//! B-channels, or calling `service` itself on the fd's readiness): it is
//! then a span like any other, loop-timed from our side. Our side is the
//! clock; the far end answers each frame it receives with one frame. Its
//! frames wait in the ring; we start taking them once
//! [`PairParams::prefill_frames`] are there (a playout delay that absorbs
//! the other thread's scheduling), and when the ring runs dry we repeat
//! the last two frames (a controlled slip that keeps FAS/NFAS
//! alternation, G.822 §2), count an underrun and prime again.
//!
//! Nothing here allocates after [`LinePort::open`], takes a lock or blocks.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::dchannel_ring::{DChannelMedia, DChannelRings, dchannel_rings};
use super::ring::{Consumer, Producer, ring};
use super::span_status::{SpanStatus, SpanTelemetry};
use super::tdm::{E1Frame, TdmPort};
use crate::line::driver::pair::RX_OCTETS_MAX;
pub use crate::line::driver::pair::{End, PairConfig, PairLine, Signal};
use crate::line::driver::satop::{SatopEvent, SatopParams, SatopPort};
use crate::line::driver::serial::{SerialEvent, SerialParams, SerialPort};
use crate::line::e1::FRAME_OCTETS;
use crate::line::e1_alarm::{Alarm, LineEvent};
use crate::line::g711::ALAW_IDLE;
use crate::line::span::{RawSpan, SpanConfig};

/// A transmit frame with idle B-channels (TS0/TS16 are the span's).
const IDLE_FRAME: E1Frame = [ALAW_IDLE; 32];
/// Line octets in a millisecond (2.048 Mbit/s).
const OCTETS_PER_MS: usize = 256;
const FRAMES_PER_MS: u32 = 8;
/// The most a timer-clocked pair catches up in one service (100 ms).
const MAX_CATCH_UP_MS: u64 = 100;
const TIMER_TOKEN: Token = Token(1 << 20);

/// What a span's driver is built from.
pub enum LineDriverParams {
    Satop(SatopParams),
    Serial(SerialParams),
    /// Our end of an in-process pair line ([`pair_line`]).
    Pair(PairNearEnd),
    /// The far end of a pair line built by another port's owner.
    PairFar(PairFarEnd),
}

impl fmt::Debug for LineDriverParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineDriverParams::Satop(p) => f.debug_tuple("Satop").field(p).finish(),
            LineDriverParams::Serial(p) => f.debug_tuple("Serial").field(p).finish(),
            LineDriverParams::Pair(_) => f.write_str("Pair"),
            LineDriverParams::PairFar(_) => f.write_str("PairFar"),
        }
    }
}

/// One span of a [`LinePort`].
#[derive(Debug)]
pub struct LineSpanParams {
    /// Framing, alarms, D-channel queues; `span.span_id` is the span number.
    pub span: SpanConfig,
    pub driver: LineDriverParams,
    /// Slots of each D-channel ring (each 266 octets).
    pub dchannel_ring_slots: usize,
    /// Engine frames held for the next transmit payload: covers the phase
    /// between received frames and the driver's transmit payloads.
    pub tx_backlog_frames: usize,
}

impl LineSpanParams {
    /// 32 D-channel slots each way, a 4 ms transmit backlog.
    pub fn new(span: SpanConfig, driver: LineDriverParams) -> LineSpanParams {
        LineSpanParams {
            span,
            driver,
            dchannel_ring_slots: 32,
            tx_backlog_frames: 32,
        }
    }
}

/// Everything a [`LinePort`] is built from; spans in the engine's order
/// (`on_frame`'s span index is the index here).
#[derive(Debug)]
pub struct LinePortParams {
    pub spans: Vec<LineSpanParams>,
    /// Slots of the line event ring.
    pub event_ring: usize,
}

impl LinePortParams {
    pub fn new(spans: Vec<LineSpanParams>) -> LinePortParams {
        LinePortParams {
            spans,
            event_ring: 256,
        }
    }
}

/// A driver's own state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverEvent {
    Satop(SatopEvent),
    Serial(SerialEvent),
    Dahdi(super::dahdi_lines::DahdiLineEvent),
}

/// What happened on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineNotice {
    /// Debounced alarm raise/clear, CRC-4 interworking (G.775, G.706).
    Line(LineEvent),
    Driver(DriverEvent),
}

/// One event of span number `span`, for the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineEventRecord {
    pub span: u16,
    pub notice: LineNotice,
}

/// Why a port could not be opened.
#[derive(Debug)]
pub enum LineError {
    Satop {
        span: u16,
        error: crate::line::driver::satop::SatopError,
    },
    Serial {
        span: u16,
        error: crate::line::driver::serial::SerialError,
    },
    Io(io::Error),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Satop { span, error } => write!(f, "span {span}: {error}"),
            LineError::Serial { span, error } => write!(f, "span {span}: {error}"),
            LineError::Io(e) => write!(f, "line port: {e}"),
        }
    }
}

impl std::error::Error for LineError {}

impl From<io::Error> for LineError {
    fn from(e: io::Error) -> Self {
        LineError::Io(e)
    }
}

/// The control plane's ends of a [`LinePort`], spans in the port's order.
pub struct LineHandle {
    /// Per span: the control side of its D-channel rings; take it
    /// (`dchannels[i].take()`) and call `into_port()` inside the tokio
    /// runtime, or use it directly as [`crate::isdn::port::FrameRings`].
    pub dchannels: Vec<Option<DChannelRings>>,
    pub events: Consumer<LineEventRecord>,
    pub status: Vec<Arc<SpanTelemetry>>,
}

// ---------------------------------------------------------------- pair

/// How the pair line is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairParams {
    pub line: PairConfig,
    /// Capacity of each ring to and from the far end, in frames.
    pub ring_frames: usize,
    /// Far-end frames waiting before we take them (playout delay).
    pub prefill_frames: usize,
}

impl Default for PairParams {
    /// 128 ms rings, 8 ms playout (the far end runs on another thread
    /// whose scheduling the playout absorbs).
    fn default() -> Self {
        PairParams {
            line: PairConfig::default(),
            ring_frames: 1024,
            prefill_frames: 64,
        }
    }
}

/// Up to one frame's worth of line octets (bit slips make it vary).
#[derive(Clone, Copy)]
struct LineChunk {
    len: u8,
    octets: [u8; RX_OCTETS_MAX],
}

/// Our end of a pair line: the line itself and the rings to the far end.
pub struct PairNearEnd {
    /// Boxed: two elastic stores of 32 frames each way.
    line: Box<PairLine>,
    to_far: Producer<LineChunk>,
    from_far: Consumer<E1Frame>,
    far_wake: Arc<OwnedFd>,
    prefill: usize,
    impairments: Consumer<Impairment>,
    control: Option<PairControl>,
}

impl PairNearEnd {
    /// The line, to set impairments (LOS, AIS, bit errors, slips) before
    /// the port is opened; afterwards through [`LinePort::pair_line_mut`]
    /// on the media thread, or a [`PairControl`] from any other.
    pub fn line_mut(&mut self) -> &mut PairLine {
        &mut self.line
    }

    /// The handle that changes the line's impairments from another thread
    /// (the simulated exchange, a test); `None` once taken.
    pub fn take_control(&mut self) -> Option<PairControl> {
        self.control.take()
    }
}

/// A change to a pair line's impairments, towards the receiving end `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    /// The signal, or LOS / AIS in its place.
    Signal { to: End, signal: Signal },
    /// Bit errors with this probability per million bits (0 = off).
    BitErrorRate { to: End, per_million: u32 },
    /// One bit error every `bits` bits (0 = off).
    BitErrorEvery { to: End, bits: u64 },
    /// Insert (> 0) or delete (< 0) this many bits.
    SlipBits { to: End, bits: i32 },
}

/// Sends [`Impairment`]s to the media thread that steps the pair line;
/// applied at the next millisecond of line time.
pub struct PairControl {
    tx: Producer<Impairment>,
}

impl PairControl {
    /// `false` if 64 changes are already waiting (the media thread is not
    /// running): try again later.
    pub fn apply(&mut self, i: Impairment) -> bool {
        self.tx.try_push(i).is_ok()
    }
}

/// The exchange's end of a pair line; see the module doc.
pub struct PairFarEnd {
    from_near: Consumer<LineChunk>,
    to_near: Producer<E1Frame>,
    wake: Arc<OwnedFd>,
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with constant flags; a non-negative result is a
    // new descriptor nothing else owns.
    let raw = unsafe { nix::libc::eventfd(0, nix::libc::EFD_NONBLOCK | nix::libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is the new eventfd (checked above), owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Both ends of an in-process E1 line.
pub fn pair_line(p: PairParams) -> io::Result<(PairNearEnd, PairFarEnd)> {
    let (to_far, from_near) = ring(p.ring_frames.max(16));
    let (to_near, from_far) = ring(p.ring_frames.max(16));
    let wake = Arc::new(eventfd()?);
    let (itx, irx) = ring(64);
    Ok((
        PairNearEnd {
            line: Box::new(PairLine::new(p.line)),
            to_far,
            from_far,
            far_wake: wake.clone(),
            prefill: p.prefill_frames.clamp(2, p.ring_frames.max(16) / 2),
            impairments: irx,
            control: Some(PairControl { tx: itx }),
        },
        PairFarEnd {
            from_near,
            to_near,
            wake,
        },
    ))
}

struct PairNear {
    end: PairNearEnd,
    next_us: u64,
    priming: bool,
    last: [E1Frame; 2],
    slip_phase: usize,
    underruns: u64,
    slips_seen: u64,
}

impl PairNear {
    fn new(end: PairNearEnd, now_us: u64) -> PairNear {
        PairNear {
            end,
            next_us: now_us + 1000,
            priming: true,
            last: [[0xFF; 32]; 2],
            slip_phase: 0,
            underruns: 0,
            slips_seen: 0,
        }
    }

    fn poll_timeout(&self) -> u64 {
        self.next_us
    }

    fn handle_timeout(&mut self, now_us: u64, exchange: &mut impl FnMut(&[u8], &mut [u8])) {
        while let Some(i) = self.end.impairments.try_pop() {
            let line = &mut self.end.line;
            match i {
                Impairment::Signal { to, signal } => line.set_signal(to, signal),
                Impairment::BitErrorRate { to, per_million } => {
                    line.set_bit_error_rate(to, per_million)
                }
                Impairment::BitErrorEvery { to, bits } => line.set_bit_error_every(to, bits),
                Impairment::SlipBits { to, bits } => line.slip_bits(to, bits),
            }
        }
        let mut ms = 0;
        while now_us >= self.next_us {
            ms += 1;
            self.next_us += 1000;
            if ms >= MAX_CATCH_UP_MS {
                self.next_us = now_us + 1000;
                break;
            }
        }
        for _ in 0..ms * u64::from(FRAMES_PER_MS) {
            self.period(exchange);
        }
        if ms > 0 {
            let _ = nix::unistd::write(&*self.end.far_wake, &1u64.to_ne_bytes());
        }
    }

    /// The far end's next frame, or a controlled slip.
    fn far_frame(&mut self) -> E1Frame {
        if self.priming && self.end.from_far.len() >= self.end.prefill {
            self.priming = false;
        }
        if !self.priming {
            if let Some(f) = self.end.from_far.try_pop() {
                self.last = [self.last[1], f];
                return f;
            }
            self.priming = true;
            self.underruns += 1;
            // Repeat from the older of the two, so FAS/NFAS keep alternating.
            self.slip_phase = 0;
        }
        let f = self.last[self.slip_phase];
        self.slip_phase ^= 1;
        f
    }

    fn period(&mut self, exchange: &mut impl FnMut(&[u8], &mut [u8])) {
        let ticks = self.end.line.advance();
        let mut buf = [0u8; RX_OCTETS_MAX];
        for _ in 0..ticks[End::A as usize] {
            let n = self.end.line.receive(End::A, &mut buf);
            let mut tx = [0u8; FRAME_OCTETS];
            exchange(&buf[..n], &mut tx);
            self.end.line.transmit(End::A, &tx);
        }
        for _ in 0..ticks[End::B as usize] {
            let f = self.far_frame();
            self.end.line.transmit(End::B, &f);
            let mut c = LineChunk {
                len: 0,
                octets: [0; RX_OCTETS_MAX],
            };
            c.len = self.end.line.receive(End::B, &mut c.octets) as u8;
            self.end.to_far.push_or_count(c);
        }
    }

    /// Controlled slips of the line into our end since the last call.
    fn take_slips(&mut self) -> u32 {
        let s = self.end.line.stats(End::A).slips();
        let new = s - self.slips_seen;
        self.slips_seen = s;
        u32::try_from(new).unwrap_or(u32::MAX)
    }
}

/// Silence from our side after which the far end free-runs with no
/// signal: our media thread has stopped, not merely been scheduled late
/// (a late thread's octets still arrive, in order, and must not be split
/// by inserted no-signal time).
const FAR_SILENCE_US: u64 = 100_000;

struct PairFar {
    end: PairFarEnd,
    rx_phase: usize,
    next_tick_us: u64,
    free_run_ms: u64,
}

impl PairFar {
    fn new(end: PairFarEnd, now_us: u64) -> PairFar {
        PairFar {
            end,
            rx_phase: 0,
            next_tick_us: now_us + FAR_SILENCE_US,
            free_run_ms: 0,
        }
    }

    fn gaps(&self) -> u64 {
        self.free_run_ms + self.end.from_near.overflows()
    }

    fn recv_ready(&mut self, now_us: u64, exchange: &mut impl FnMut(&[u8], &mut [u8])) {
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(self.end.wake.as_fd(), &mut count);
        let mut tx = [0u8; 3 * FRAME_OCTETS];
        while let Some(c) = self.end.from_near.try_pop() {
            let n = usize::from(c.len).min(RX_OCTETS_MAX);
            self.next_tick_us = now_us + FAR_SILENCE_US;
            let total = self.rx_phase + n;
            self.rx_phase = total % FRAME_OCTETS;
            let len = (total / FRAME_OCTETS) * FRAME_OCTETS;
            exchange(&c.octets[..n], &mut tx[..len]);
            for f in tx[..len].chunks_exact(FRAME_OCTETS) {
                let mut frame = [0u8; FRAME_OCTETS];
                frame.copy_from_slice(f);
                self.end.to_near.push_or_count(frame);
            }
        }
    }

    fn poll_timeout(&self) -> u64 {
        self.next_tick_us
    }

    /// Free-run: nothing from our side for [`FAR_SILENCE_US`] (its media
    /// thread stopped): each millisecond one of no signal in, and 8
    /// frames out regardless.
    fn handle_timeout(&mut self, now_us: u64, exchange: &mut impl FnMut(&[u8], &mut [u8])) {
        const ZEROS: [u8; OCTETS_PER_MS] = [0; OCTETS_PER_MS];
        let mut ticks = 0;
        while now_us >= self.next_tick_us {
            ticks += 1;
            self.next_tick_us += 1000;
            if ticks >= MAX_CATCH_UP_MS {
                self.next_tick_us = now_us + 1000;
                break;
            }
        }
        self.free_run_ms += ticks;
        for _ in 0..ticks {
            let mut tx = [0u8; OCTETS_PER_MS];
            exchange(&ZEROS, &mut tx);
            for f in tx.chunks_exact(FRAME_OCTETS) {
                let mut frame = [0u8; FRAME_OCTETS];
                frame.copy_from_slice(f);
                self.end.to_near.push_or_count(frame);
            }
        }
    }
}

/// A pair line's far end driven by its owner's own loop instead of a
/// [`LinePort`] (the simulated exchange's line thread, which has its own
/// framer): the same loop-timed exchange, one frame back per frame
/// received, free-running with no signal. Times are the caller's
/// microseconds, from any fixed epoch.
pub struct PairFarDriver(PairFar);

impl PairFarEnd {
    /// See [`PairFarDriver`]; `now_us` in the caller's time base.
    pub fn into_driver(self, now_us: u64) -> PairFarDriver {
        PairFarDriver(PairFar::new(self, now_us))
    }
}

impl PairFarDriver {
    /// Readable when line octets from our side are waiting.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.end.wake.as_fd()
    }

    /// The free-run deadline.
    pub fn poll_timeout(&self) -> u64 {
        self.0.poll_timeout()
    }

    /// Takes every chunk waiting, through `exchange(rx, tx)`.
    pub fn recv_ready(&mut self, now_us: u64, mut exchange: impl FnMut(&[u8], &mut [u8])) {
        self.0.recv_ready(now_us, &mut exchange);
    }

    pub fn handle_timeout(&mut self, now_us: u64, mut exchange: impl FnMut(&[u8], &mut [u8])) {
        self.0.handle_timeout(now_us, &mut exchange);
    }

    /// Free-run milliseconds and chunks dropped on a full ring.
    pub fn gaps(&self) -> u64 {
        self.0.gaps()
    }
}

// ---------------------------------------------------------------- port

enum Driver {
    Satop(SatopPort),
    Serial(SerialPort),
    Pair(PairNear),
    PairFar(PairFar),
}

impl Driver {
    fn raw_fd(&self) -> Option<RawFd> {
        match self {
            Driver::Satop(p) => Some(p.as_raw_fd()),
            Driver::Serial(p) => Some(p.as_raw_fd()),
            Driver::Pair(_) => None,
            Driver::PairFar(p) => Some(p.end.wake.as_raw_fd()),
        }
    }

    fn poll_timeout(&self) -> u64 {
        match self {
            Driver::Satop(p) => p.poll_timeout(),
            Driver::Serial(p) => p.poll_timeout(),
            Driver::Pair(p) => p.poll_timeout(),
            Driver::PairFar(p) => p.poll_timeout(),
        }
    }
}

/// Engine frames waiting for the driver's next transmit payload.
struct TxBacklog {
    frames: Box<[E1Frame]>,
    head: usize,
    len: usize,
    drops: u64,
    idle: u64,
}

impl TxBacklog {
    fn new(n: usize) -> TxBacklog {
        TxBacklog {
            frames: vec![IDLE_FRAME; n.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            drops: 0,
            idle: 0,
        }
    }

    fn push(&mut self, f: E1Frame) {
        let n = self.frames.len();
        if self.len == n {
            // More frames in than out (a far end faster than its clock):
            // the oldest goes, as an elastic store deletes.
            self.head = (self.head + 1) % n;
            self.len -= 1;
            self.drops += 1;
        }
        self.frames[(self.head + self.len) % n] = f;
        self.len += 1;
    }

    fn pop(&mut self) -> E1Frame {
        if self.len == 0 {
            self.idle += 1;
            return IDLE_FRAME;
        }
        let f = self.frames[self.head];
        self.head = (self.head + 1) % self.frames.len();
        self.len -= 1;
        f
    }
}

struct LineSpan {
    number: u16,
    raw: RawSpan,
    driver: Driver,
    backlog: TxBacklog,
    dchannel: DChannelMedia,
    telemetry: Arc<SpanTelemetry>,
    /// Driver I/O failed: logged once, the span stays down.
    failed: bool,
}

/// One payload: `rx` into the span, aligned frames through the engine,
/// `tx` filled from the backlog with TS0/TS16 from the span.
fn exchange(
    index: usize,
    raw: &mut RawSpan,
    backlog: &mut TxBacklog,
    on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    frames: &mut usize,
    rx: &[u8],
    tx: &mut [u8],
) {
    raw.handle_rx(rx, |f| {
        let mut t = IDLE_FRAME;
        on_frame(index, f, &mut t);
        backlog.push(t);
        *frames += 1;
    });
    for chunk in tx.chunks_mut(FRAME_OCTETS) {
        let mut f = backlog.pop();
        raw.emit_frame(&mut f);
        // A short tail (drivers hand whole frames) gets the frame's start.
        chunk.copy_from_slice(&f[..chunk.len()]);
    }
}

impl LineSpan {
    fn service(
        &mut self,
        index: usize,
        now_us: u64,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
        again: &mut bool,
    ) -> usize {
        if self.failed {
            return 0;
        }
        self.dchannel.pump_tx(&mut self.raw);
        let mut frames = 0;
        let LineSpan {
            raw,
            driver,
            backlog,
            ..
        } = self;
        let mut ex = |rx: &[u8], tx: &mut [u8]| {
            exchange(index, raw, backlog, on_frame, &mut frames, rx, tx);
        };
        let r: Result<(), String> = match driver {
            Driver::Satop(p) => (|| {
                if !p.recv_ready(now_us, &mut ex).map_err(|e| e.to_string())? {
                    *again = true;
                }
                if now_us >= p.poll_timeout() {
                    p.handle_timeout(now_us, &mut ex)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })(),
            Driver::Serial(p) => (|| {
                if p.has_pending() {
                    p.write_ready().map_err(|e| e.to_string())?;
                }
                if !p.recv_ready(now_us, &mut ex).map_err(|e| e.to_string())? {
                    *again = true;
                }
                if now_us >= p.poll_timeout() {
                    p.handle_timeout(now_us, &mut ex)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })(),
            Driver::Pair(p) => {
                if now_us >= p.poll_timeout() {
                    p.handle_timeout(now_us, &mut ex);
                }
                Ok(())
            }
            Driver::PairFar(p) => {
                p.recv_ready(now_us, &mut ex);
                if now_us >= p.poll_timeout() {
                    p.handle_timeout(now_us, &mut ex);
                }
                Ok(())
            }
        };
        if let Err(e) = r {
            // Only a local fault of the socket or tty gets here (the far
            // end's doing is counted inside); the message is built once.
            self.failed = true;
            tracing::error!(span = self.number, error = %e, "line driver failed; span stays down");
        }
        if let Driver::Pair(p) = &mut self.driver {
            let slips = p.take_slips();
            if slips > 0 {
                self.raw.count_slips(slips);
            }
        }
        self.dchannel.pump_rx(&mut self.raw);
        frames
    }

    fn report(&mut self, events: &mut Producer<LineEventRecord>) {
        let span = self.number;
        while let Some(e) = self.raw.poll_event() {
            events.push_or_count(LineEventRecord {
                span,
                notice: LineNotice::Line(e),
            });
        }
        let alarms = self.raw.alarms();
        let mut st = SpanStatus::of(&self.raw);
        match &mut self.driver {
            Driver::Satop(p) => {
                // RFC 4553 §4.3.1: L while our attachment circuit is in
                // fault (LOS, AIS).
                p.set_local_fault(alarms.contains(Alarm::Los) || alarms.contains(Alarm::Ais));
                while let Some(e) = p.poll_event() {
                    events.push_or_count(LineEventRecord {
                        span,
                        notice: LineNotice::Driver(DriverEvent::Satop(e)),
                    });
                }
                st.driver_los = p.los();
                let pl = p.stats().playout;
                st.driver_gaps = pl.played_idle + pl.missing + pl.overrun_dropped;
            }
            Driver::Serial(p) => {
                while let Some(e) = p.poll_event() {
                    events.push_or_count(LineEventRecord {
                        span,
                        notice: LineNotice::Driver(DriverEvent::Serial(e)),
                    });
                }
                st.driver_los = p.los();
            }
            Driver::Pair(p) => {
                st.far_underruns = p.underruns;
                st.driver_gaps = p.underruns;
            }
            Driver::PairFar(p) => st.driver_gaps = p.gaps(),
        }
        st.dchannel_ring_overflows = self.dchannel.rx_overflows();
        st.tx_idle_frames = self.backlog.idle;
        st.tx_backlog_drops = self.backlog.drops;
        self.telemetry.publish(&st);
    }
}

/// Raw spans as the engine's [`TdmPort`]; see the module doc.
pub struct LinePort {
    spans: Box<[LineSpan]>,
    poll: Poll,
    events: Events,
    timer: TimerFd,
    line_events: Producer<LineEventRecord>,
}

/// `CLOCK_MONOTONIC` in microseconds: the drivers' `now_us`.
pub fn now_us() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000,
        Err(_) => 0,
    }
}

impl LinePort {
    /// Opens every driver (binds sockets, opens ttys), allocates every
    /// buffer and ring. The spans' order is the engine's.
    pub fn open(params: LinePortParams) -> Result<(LinePort, LineHandle), LineError> {
        let now = now_us();
        let poll = Poll::new()?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        poll.registry().register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER_TOKEN,
            Interest::READABLE,
        )?;
        let mut spans = Vec::with_capacity(params.spans.len());
        let mut dchannels = Vec::with_capacity(params.spans.len());
        let mut status = Vec::with_capacity(params.spans.len());
        for (i, sp) in params.spans.into_iter().enumerate() {
            let number = sp.span.span_id;
            let driver = match sp.driver {
                LineDriverParams::Satop(p) => {
                    Driver::Satop(SatopPort::open(p, now).map_err(|error| LineError::Satop {
                        span: number,
                        error,
                    })?)
                }
                LineDriverParams::Serial(p) => {
                    Driver::Serial(SerialPort::open(&p, now).map_err(|error| {
                        LineError::Serial {
                            span: number,
                            error,
                        }
                    })?)
                }
                LineDriverParams::Pair(end) => Driver::Pair(PairNear::new(end, now)),
                LineDriverParams::PairFar(end) => Driver::PairFar(PairFar::new(end, now)),
            };
            if let Some(fd) = driver.raw_fd() {
                poll.registry()
                    .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
            }
            let (media, control) = dchannel_rings(sp.dchannel_ring_slots);
            let telemetry = Arc::new(SpanTelemetry::new(number));
            status.push(telemetry.clone());
            dchannels.push(Some(control));
            spans.push(LineSpan {
                number,
                raw: RawSpan::new(sp.span),
                driver,
                backlog: TxBacklog::new(sp.tx_backlog_frames),
                dchannel: media,
                telemetry,
                failed: false,
            });
        }
        let (line_events, events) = ring(params.event_ring.max(1));
        let n = spans.len();
        let mut port = LinePort {
            spans: spans.into_boxed_slice(),
            poll,
            events: Events::with_capacity(n + 1),
            timer,
            line_events,
        };
        port.arm_timer(now, false)?;
        let handle = LineHandle {
            dchannels,
            events,
            status,
        };
        Ok((port, handle))
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// Span `index`'s line layer (tests, inspection between turns).
    pub fn raw_span(&self, index: usize) -> Option<&RawSpan> {
        self.spans.get(index).map(|s| &s.raw)
    }

    pub fn raw_span_mut(&mut self, index: usize) -> Option<&mut RawSpan> {
        self.spans.get_mut(index).map(|s| &mut s.raw)
    }

    /// The pair line of span `index` if its driver is a pair's near end
    /// (impairments: LOS, AIS, bit errors, slips).
    pub fn pair_line_mut(&mut self, index: usize) -> Option<&mut PairLine> {
        match &mut self.spans.get_mut(index)?.driver {
            Driver::Pair(p) => Some(&mut p.end.line),
            _ => None,
        }
    }

    /// The SAToP port of span `index`, if that is its driver.
    pub fn satop(&self, index: usize) -> Option<&SatopPort> {
        match &self.spans.get(index)?.driver {
            Driver::Satop(p) => Some(p),
            _ => None,
        }
    }

    /// Line events dropped on a full ring.
    pub fn events_dropped(&self) -> u64 {
        self.line_events.overflows()
    }

    fn arm_timer(&mut self, now: u64, at_once: bool) -> io::Result<()> {
        let next = if at_once {
            now
        } else {
            self.spans
                .iter()
                .filter(|s| !s.failed)
                .map(|s| s.driver.poll_timeout())
                .min()
                .unwrap_or(now + 100_000)
        };
        // Absolute on CLOCK_MONOTONIC; 0 would disarm, so at least 1 ns.
        let ts = TimeSpec::new(
            (next / 1_000_000) as i64,
            ((next % 1_000_000) * 1000) as i64,
        );
        let ts = if next == 0 { TimeSpec::new(0, 1) } else { ts };
        self.timer
            .set(
                Expiration::OneShot(ts),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
            .map_err(io::Error::from)
    }
}

impl TdmPort for LinePort {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.poll.as_raw_fd())
    }

    fn service(
        &mut self,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    ) -> io::Result<usize> {
        // Drain the inner readiness (edge-triggered: it must be consumed
        // for the outer poll to see the next edge) and reset the timer.
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut exp = [0u8; 8];
        let _ = nix::unistd::read(self.timer.as_fd(), &mut exp);
        let now = now_us();
        let mut frames = 0;
        let mut again = false;
        for (i, s) in self.spans.iter_mut().enumerate() {
            frames += s.service(i, now, on_frame, &mut again);
            s.report(&mut self.line_events);
        }
        self.arm_timer(now, again)?;
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: u16) -> SpanConfig {
        SpanConfig {
            span_id: id,
            ..SpanConfig::default()
        }
    }

    /// Services `port` until `done` or 5 s of turns; waits on its fd.
    fn run_until(port: &mut LinePort, mut done: impl FnMut(&mut LinePort) -> bool) {
        let fd = port.raw_fd().unwrap();
        for _ in 0..5000 {
            let mut pfd = [nix::libc::pollfd {
                fd,
                events: nix::libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            unsafe { nix::libc::poll(pfd.as_mut_ptr(), 1, 5) };
            port.service(&mut |_, _, _| {}).unwrap();
            if done(port) {
                return;
            }
        }
        panic!("not done within 5000 turns");
    }

    #[test]
    fn both_pair_ends_in_one_port_align_and_a_los_is_reported() {
        let (mut near, far) = pair_line(PairParams::default()).unwrap();
        let mut control = near.take_control().unwrap();
        assert!(near.take_control().is_none());
        let (mut port, mut h) = LinePort::open(LinePortParams::new(vec![
            LineSpanParams::new(cfg(1), LineDriverParams::Pair(near)),
            LineSpanParams::new(cfg(2), LineDriverParams::PairFar(far)),
        ]))
        .unwrap();
        let up = |s: &RawSpan| {
            s.multiframe_state() == crate::line::e1::MultiframeState::InMultiframe
                && s.alarms().is_empty()
        };
        run_until(&mut port, |p| {
            up(p.raw_span(0).unwrap()) && up(p.raw_span(1).unwrap())
        });
        let s = h.status[0].read();
        assert!(s.in_frame && s.in_multiframe, "{s:?}");
        assert_eq!(h.status[1].span, 2);
        // Cut the far end's signal towards us: LOS raised on span 1, RAI
        // (our A bit) seen by span 2.
        assert!(control.apply(Impairment::Signal {
            to: End::A,
            signal: Signal::Los,
        }));
        run_until(&mut port, |p| {
            p.raw_span(0).unwrap().alarms().red() && p.raw_span(1).unwrap().alarms().yellow()
        });
        let mut seen = Vec::new();
        while let Some(e) = h.events.try_pop() {
            seen.push(e);
        }
        assert!(seen.contains(&LineEventRecord {
            span: 1,
            notice: LineNotice::Line(LineEvent::AlarmRaised(Alarm::Los))
        }));
        assert!(seen.contains(&LineEventRecord {
            span: 2,
            notice: LineNotice::Line(LineEvent::AlarmRaised(Alarm::Rai))
        }));
        assert!(h.status[0].read().alarms.red());
    }
}
