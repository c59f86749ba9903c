//! DAHDI spans as the media engine's line side (DESIGN.md §1 and §5):
//! [`DahdiLinePort`] is a [`TdmPort`] over the B-channels of DAHDI spans
//! ([`DahdiBChannels`], the half of a [`DahdiSpan`](crate::line::driver::dahdi::DahdiSpan) that
//! `DahdiSpan::split` hands over; the D-channel stays with the D-channel
//! task as `isdn::port::DahdiPort`, kernel HDLC, no rings through here).
//!
//! # Blocks to frames
//!
//! The card frames the line; DAHDI gives one fd per B-channel, each read
//! or write one block of `block_octets` A-law octets (160 = 20 ms by
//! default) for one timeslot. The engine wants whole E1 frames, one at a
//! time. So, per span, each B-channel ("lane") keeps a small FIFO of
//! received blocks ([`LANE_DEPTH`] blocks). A span *block* is assembled
//! when every working lane has a block (the card fills every channel of
//! a span in the same interrupt, but their readiness reaches us one fd at
//! a time), or when one lane is [`LAG_BLOCKS`] blocks ahead of an empty
//! one (a channel that stopped delivering must not stop the others; its
//! missing block is played as idle and counted). Assembly transposes the
//! lanes' blocks into `block_octets` frames (TS0 and TS16 idle, timeslots
//! without a B-channel idle), passes each through `on_frame(span, rx,
//! tx)` and transposes the transmit frames back into one block per lane.
//!
//! # Clocking
//!
//! Transmit is clocked by the card (DAHDI loop timing): one block written
//! per block read, never a timer of ours. The first block written on each
//! lane is preceded by [`DahdiLinePortParams::tx_prime_blocks`] idle
//! blocks, so the card's transmit buffers hold a block in hand and a late
//! turn of the media thread does not underrun them. The card's transmit
//! queue must not grow either: a turn that comes late finds several blocks
//! waiting, and writing a block for each would leave them all queued, the
//! delay for good (the card underran meanwhile, sending idle). So a
//! service writes each lane at most prime + 1 blocks, the newest; older
//! ones are dropped as late (counted in `tx_backlog_drops`), and a lane's
//! first write is its prime and the newest block. A write the card still
//! refuses (its buffers full) drops that block, counted by the driver.
//!
//! # Readiness
//!
//! The engine registers one descriptor. The port keeps an inner
//! `mio::Poll` (an epoll descriptor, readable while any of its sources
//! is) holding every B-channel fd (READABLE | PRIORITY: DAHDI signals a
//! pending channel event as POLLPRI) and a `timerfd`; [`TdmPort::raw_fd`]
//! is the inner poll's descriptor. A readable lane is read until `EAGAIN`
//! (or until its FIFO is full: then the timer is armed to fire at once so
//! the rest is read next turn). The timer also fires every
//! [`DahdiLinePortParams::status_interval_ms`] for the span status.
//!
//! # Alarms and status
//!
//! A read that meets `ELAST` fetches the channel's events (the driver);
//! ALARM / NOALARM re-read DAHDI_SPANSTAT, and SPANSTAT is also read on
//! every status interval. The span's alarms ([`LineAlarms`]) are mapped
//! onto the raw spans' [`Alarms`] ([`alarms_from_dahdi`]); each change is
//! an [`LineEvent::AlarmRaised`] / [`LineEvent::AlarmCleared`] in the same
//! event ring the raw spans use, and the span's [`SpanTelemetry`] is
//! published every service, so metrics, `/readyz` and `tdmgw status` read
//! DAHDI spans as they read raw ones. SPANSTAT's counters (FAS, CRC-4,
//! E-bit errors, errored seconds) are accumulated from the port's start
//! (a counter reset by `dahdi_cfg` is taken as a restart from 0). No
//! B-channel block for a whole status interval is the driver's loss of
//! signal (`driver_los`, [`DahdiLineEvent::BlocksStopped`]).
//!
//! Nothing here allocates after [`DahdiLinePort::open`], takes a lock or
//! blocks (the simulated card of the tests takes its own mutex inside its
//! ioctls; the kernel's do not).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::lines::{DriverEvent, LineEventRecord, LineHandle, LineNotice, now_us};
use super::ring::{Producer, ring};
use super::span_status::{SpanStatus, SpanTelemetry};
use super::tdm::{E1Frame, TdmPort};
use crate::line::driver::dahdi::{
    DahdiBChannels, DahdiChannel, DahdiEvent, LineAlarms, LineCounters, SpanEvent,
};
use crate::line::e1_alarm::{Alarm, Alarms, LineEvent};
use crate::line::g711::ALAW_IDLE;

/// Blocks each lane holds (the kernel's own `b_numbufs` are behind them).
pub const LANE_DEPTH: usize = 4;
/// A lane this many blocks ahead of an empty one forces assembly.
pub const LAG_BLOCKS: usize = 2;
/// Largest block the port handles: 20 ms.
pub const BLOCK_OCTETS_MAX: usize = 160;
const IDLE_FRAME: E1Frame = [ALAW_IDLE; 32];
/// B-channels of an E1 span.
const MAX_LANES: usize = 30;
const TIMER_TOKEN: Token = Token(1 << 20);
/// Read-and-assemble rounds per span per service (each round reads at
/// most one block per lane).
const ROUNDS: usize = 2 * LANE_DEPTH + 2;

/// What a DAHDI span's media side reports besides alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DahdiLineEvent {
    /// No B-channel block for a whole status interval: the card (or
    /// DAHDI's timing) stopped delivering. The span carries no audio.
    BlocksStopped,
    BlocksResumed,
    /// A B-channel's read or write failed (the device went away): the
    /// lane is out of use until tdmgw restarts.
    ChannelFailed {
        timeslot: u8,
    },
    /// Any other DAHDI event on a B-channel (e.g. REMOVED).
    Channel {
        timeslot: u8,
        event: DahdiEvent,
    },
}

/// One DAHDI span of a [`DahdiLinePort`].
pub struct DahdiLineSpanParams<C: DahdiChannel> {
    /// The span number as configured (the engine's, from 1).
    pub number: u16,
    /// The span's B-channels (`DahdiSpan::split`).
    pub channels: DahdiBChannels<C>,
    /// CRC-4 configured on the span (for `in_multiframe`).
    pub crc4: bool,
}

impl<C: DahdiChannel> fmt::Debug for DahdiLineSpanParams<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DahdiLineSpanParams")
            .field("number", &self.number)
            .field("dahdi", self.channels.params())
            .field("crc4", &self.crc4)
            .finish()
    }
}

/// Everything a [`DahdiLinePort`] is built from; spans in the engine's
/// order (`on_frame`'s span index is the index here).
#[derive(Debug)]
pub struct DahdiLinePortParams<C: DahdiChannel> {
    pub spans: Vec<DahdiLineSpanParams<C>>,
    /// Slots of the line event ring.
    pub event_ring: usize,
    /// Idle blocks written ahead of each lane's first block.
    pub tx_prime_blocks: usize,
    /// How often SPANSTAT is read and block delivery checked.
    pub status_interval_ms: u64,
}

impl<C: DahdiChannel> DahdiLinePortParams<C> {
    /// A 256-slot event ring, one block primed, status every second.
    pub fn new(spans: Vec<DahdiLineSpanParams<C>>) -> Self {
        DahdiLinePortParams {
            spans,
            event_ring: 256,
            tx_prime_blocks: 1,
            status_interval_ms: 1000,
        }
    }
}

/// Why a port could not be opened.
#[derive(Debug)]
pub enum DahdiLineError {
    /// A span's block size is outside 1..=[`BLOCK_OCTETS_MAX`].
    BlockSize {
        span: u16,
        octets: usize,
    },
    Io(io::Error),
}

impl fmt::Display for DahdiLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DahdiLineError::BlockSize { span, octets } => write!(
                f,
                "span {span}: DAHDI block of {octets} octets (the media thread takes 1-{BLOCK_OCTETS_MAX})"
            ),
            DahdiLineError::Io(e) => write!(f, "dahdi line port: {e}"),
        }
    }
}

impl std::error::Error for DahdiLineError {}

impl From<io::Error> for DahdiLineError {
    fn from(e: io::Error) -> Self {
        DahdiLineError::Io(e)
    }
}

/// The E1 alarms of a DAHDI span as the raw spans name them.
///
/// LOS, LOF, LOMF, AIS and RAI map one to one. A card that reports RED
/// without a cause (no verbose bits) shows LOF: red means no frame
/// alignment, whatever the cause. NOT_OPEN (the span was never started
/// by `dahdi_cfg`) shows LOS: nothing is received on it. LOOPBACK and
/// RECOVERING are not line alarms; they are in the raw word only.
pub fn alarms_from_dahdi(a: LineAlarms) -> Alarms {
    let red_cause = LineAlarms::LOS | LineAlarms::LOF | LineAlarms::LOMF;
    Alarms::NONE
        .with(
            Alarm::Los,
            a.contains(LineAlarms::LOS) || a.contains(LineAlarms::NOT_OPEN),
        )
        .with(
            Alarm::Lof,
            a.contains(LineAlarms::LOF) || (a.is_red() && !a.intersects(red_cause)),
        )
        .with(Alarm::Lomf, a.contains(LineAlarms::LOMF))
        .with(Alarm::Ais, a.contains(LineAlarms::AIS))
        .with(Alarm::Rai, a.contains(LineAlarms::RAI))
}

/// One B-channel of a span and its FIFO of received blocks.
struct Lane {
    ts: u8,
    /// A readiness edge seen and not yet read down to `EAGAIN`.
    pending: bool,
    /// Read or write failed: out of use, logged once.
    failed: bool,
    /// The idle prime blocks have been written.
    primed: bool,
    fifo: Box<[u8]>,
    head: usize,
    len: usize,
}

/// SPANSTAT counters accumulated from the port's start.
#[derive(Default, Clone, Copy)]
struct Accumulated {
    last: LineCounters,
    fas: u64,
    crc4: u64,
    ebit: u64,
    errsec: u64,
}

impl Accumulated {
    fn add(&mut self, now: LineCounters) {
        // A counter below its last value was reset (dahdi_cfg): count
        // from 0 again.
        let d = |new: u32, old: u32| u64::from(if new >= old { new - old } else { new });
        self.fas += d(now.fas_errors, self.last.fas_errors);
        self.crc4 += d(now.crc4_errors, self.last.crc4_errors);
        self.ebit += d(now.ebit_errors, self.last.ebit_errors);
        self.errsec += d(now.errored_seconds, self.last.errored_seconds);
        self.last = now;
    }
}

struct DahdiLineSpan<C: DahdiChannel> {
    number: u16,
    b: DahdiBChannels<C>,
    lanes: Box<[Lane]>,
    /// Timeslot -> lane index, `u8::MAX` when none.
    lane_of_ts: [u8; 32],
    block: usize,
    crc4: bool,
    /// Idle blocks written ahead of each lane's first block.
    prime_blocks: usize,
    telemetry: Arc<SpanTelemetry>,
    /// The alarms last reported in the event ring.
    alarms: Alarms,
    acc: Accumulated,
    frames_rx: u64,
    frames_tx: u64,
    /// Lane blocks assembled as idle because the lane had none.
    missing_blocks: u64,
    /// Frames of idle sent as the prime (per span, not per lane).
    primed_frames: u64,
    /// Transmit blocks not written because newer ones were held after a
    /// late turn (old audio, dropped to keep the card's queue short).
    late_blocks: u64,
    /// Blocks since the last status interval (0: blocks stopped).
    blocks_in_interval: u64,
    stopped: bool,
    status_failed: bool,
}

/// Scratch for one span's service, shared by the spans (one at a time).
struct Scratch {
    rx: Box<[E1Frame]>,
    tx: Box<[E1Frame]>,
    idle: Box<[u8]>,
    /// Transmit blocks waiting for `flush_tx`: `keep` slots of
    /// [`MAX_LANES`] lanes of `max_block` octets, a ring.
    hold: Box<[u8]>,
    hold_head: usize,
    hold_len: usize,
    /// Transmit blocks written per lane per service at most: the prime
    /// and one (see the module doc).
    keep: usize,
    max_block: usize,
}

impl Scratch {
    fn hold_at(&self, slot: usize, lane: usize) -> usize {
        (slot * MAX_LANES + lane) * self.max_block
    }
}

impl<C: DahdiChannel> DahdiLineSpan<C> {
    /// The oldest block in lane `lane`'s FIFO.
    fn lane_block(&self, lane: usize) -> &[u8] {
        let l = &self.lanes[lane];
        let at = l.head * self.block;
        &l.fifo[at..at + self.block]
    }

    /// Reads every pending lane and assembles what is complete; returns
    /// the frames handed to the engine. `again`: a lane may still have data.
    fn pump(
        &mut self,
        index: usize,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
        scratch: &mut Scratch,
        events: &mut Producer<LineEventRecord>,
        again: &mut bool,
    ) -> usize {
        let mut frames = 0;
        for _ in 0..ROUNDS {
            let mut progress = false;
            for i in 0..self.lanes.len() {
                progress |= self.read_lane(i, events);
            }
            while self.can_assemble() {
                self.assemble(index, on_frame, scratch);
                frames += self.block;
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.flush_tx(scratch, events);
        // A lane still readable (its FIFO full, or the rounds used up)
        // has data the next edge might not announce: come back at once.
        if self.lanes.iter().any(|l| l.pending && !l.failed) {
            *again = true;
        }
        frames
    }

    /// One block from lane `i` if it is readable and has room.
    fn read_lane(&mut self, i: usize, events: &mut Producer<LineEventRecord>) -> bool {
        let lane = &self.lanes[i];
        if !lane.pending || lane.failed || lane.len == LANE_DEPTH {
            return false;
        }
        let ts = lane.ts;
        match self.b.recv_b_block(ts) {
            Ok(Some(data)) => {
                let lane = &mut self.lanes[i];
                let at = ((lane.head + lane.len) % LANE_DEPTH) * self.block;
                let slot = &mut lane.fifo[at..at + self.block];
                let n = data.len().min(self.block);
                slot[..n].copy_from_slice(&data[..n]);
                // A short block (counted by the driver) is padded with idle.
                slot[n..].fill(ALAW_IDLE);
                lane.len += 1;
                true
            }
            Ok(None) => {
                self.lanes[i].pending = false;
                false
            }
            Err(e) => {
                self.fail_lane(i, &e, events);
                false
            }
        }
    }

    fn fail_lane(
        &mut self,
        i: usize,
        e: &dyn fmt::Display,
        events: &mut Producer<LineEventRecord>,
    ) {
        let lane = &mut self.lanes[i];
        lane.failed = true;
        lane.len = 0;
        tracing::error!(span = self.number, ts = lane.ts, error = %e, "dahdi B-channel failed; out of use until restart");
        events.push_or_count(LineEventRecord {
            span: self.number,
            notice: LineNotice::Driver(DriverEvent::Dahdi(DahdiLineEvent::ChannelFailed {
                timeslot: lane.ts,
            })),
        });
    }

    /// Every working lane has a block, or one is [`LAG_BLOCKS`] ahead.
    fn can_assemble(&self) -> bool {
        let mut live = 0;
        let mut all = true;
        for l in self.lanes.iter().filter(|l| !l.failed) {
            live += 1;
            if l.len >= LAG_BLOCKS {
                return true;
            }
            all &= l.len >= 1;
        }
        live > 0 && all
    }

    /// One span block: the lanes' oldest blocks through the engine, the
    /// transmit block held for [`Self::flush_tx`].
    fn assemble(
        &mut self,
        index: usize,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
        s: &mut Scratch,
    ) {
        let n = self.block;
        s.rx[..n].fill(IDLE_FRAME);
        for i in 0..self.lanes.len() {
            let ts = usize::from(self.lanes[i].ts);
            if self.lanes[i].len == 0 {
                if !self.lanes[i].failed {
                    self.missing_blocks += 1;
                }
                continue;
            }
            for (f, &o) in s.rx[..n].iter_mut().zip(self.lane_block(i)) {
                f[ts] = o;
            }
            let lane = &mut self.lanes[i];
            lane.head = (lane.head + 1) % LANE_DEPTH;
            lane.len -= 1;
        }
        for (rx, tx) in s.rx[..n].iter().zip(s.tx[..n].iter_mut()) {
            *tx = IDLE_FRAME;
            on_frame(index, rx, tx);
        }
        self.frames_rx += n as u64;
        self.blocks_in_interval += 1;
        // Hold the transmit block; the oldest goes if the hold is full.
        if s.hold_len == s.keep {
            s.hold_head = (s.hold_head + 1) % s.keep;
            s.hold_len -= 1;
            self.late_blocks += 1;
        }
        let slot = (s.hold_head + s.hold_len) % s.keep;
        s.hold_len += 1;
        for (i, lane) in self.lanes.iter().enumerate() {
            let at = s.hold_at(slot, i);
            let ts = usize::from(lane.ts);
            for (o, f) in s.hold[at..at + n].iter_mut().zip(&s.tx[..n]) {
                *o = f[ts];
            }
        }
    }

    /// Writes the held transmit blocks, oldest first, at most `keep` per
    /// lane in all: a lane's first write is its idle prime blocks and the
    /// newest block.
    fn flush_tx(&mut self, s: &mut Scratch, events: &mut Producer<LineEventRecord>) {
        let n = self.block;
        let (mut primed, mut written) = (0, 0);
        for i in 0..self.lanes.len() {
            if self.lanes[i].failed {
                continue;
            }
            match self.write_lane(i, s) {
                Ok((p, w)) => {
                    primed = primed.max(p);
                    written = written.max(w);
                }
                Err(e) => self.fail_lane(i, &e, events),
            }
        }
        // Held blocks not written at a lane's start are late audio too.
        self.late_blocks += (s.hold_len - written.min(s.hold_len)) as u64;
        // Prime blocks are written on every lane at once: idle frames.
        self.primed_frames += (primed * n) as u64;
        self.frames_tx += (written * n) as u64;
        s.hold_head = 0;
        s.hold_len = 0;
    }

    /// Lane `i`'s share of [`Self::flush_tx`]: (prime blocks, held blocks)
    /// written. A write the card refuses (its buffers full) is counted by
    /// the driver and dropped.
    fn write_lane(
        &mut self,
        i: usize,
        s: &Scratch,
    ) -> Result<(usize, usize), crate::line::driver::dahdi::DahdiError> {
        let (n, ts) = (self.block, self.lanes[i].ts);
        let mut primed = 0;
        let mut skip = 0;
        if !self.lanes[i].primed {
            self.lanes[i].primed = true;
            for _ in 0..self.prime_blocks {
                primed += usize::from(self.b.send_b_block(ts, &s.idle[..n])?);
            }
            skip = s
                .hold_len
                .saturating_sub(s.keep.saturating_sub(self.prime_blocks).max(1));
        }
        for k in skip..s.hold_len {
            let at = s.hold_at((s.hold_head + k) % s.keep, i);
            self.b.send_b_block(ts, &s.hold[at..at + n])?;
        }
        Ok((primed, s.hold_len - skip))
    }

    /// Every status interval: SPANSTAT, and block delivery.
    fn on_status_interval(&mut self, events: &mut Producer<LineEventRecord>) {
        match self.b.refresh_status() {
            Ok(st) => {
                self.acc.add(st.counters);
                if self.status_failed {
                    self.status_failed = false;
                    tracing::info!(span = self.number, "DAHDI_SPANSTAT answers again");
                }
            }
            Err(e) => {
                if !self.status_failed {
                    self.status_failed = true;
                    tracing::error!(span = self.number, error = %e, "DAHDI_SPANSTAT failed; span alarms are stale");
                }
            }
        }
        let stopped = self.blocks_in_interval == 0;
        self.blocks_in_interval = 0;
        if stopped != self.stopped {
            self.stopped = stopped;
            let e = if stopped {
                tracing::error!(
                    span = self.number,
                    "no B-channel blocks from the DAHDI card for a status interval"
                );
                DahdiLineEvent::BlocksStopped
            } else {
                tracing::info!(
                    span = self.number,
                    "B-channel blocks from the DAHDI card again"
                );
                DahdiLineEvent::BlocksResumed
            };
            events.push_or_count(LineEventRecord {
                span: self.number,
                notice: LineNotice::Driver(DriverEvent::Dahdi(e)),
            });
        }
    }

    /// Drains the driver's events, reports alarm changes and publishes the
    /// span's status.
    fn report(&mut self, events: &mut Producer<LineEventRecord>) {
        let span = self.number;
        while let Some(e) = self.b.poll_event() {
            // Alarm changes are read from the status below (one path for
            // the events and the periodic SPANSTAT alike).
            if let SpanEvent::Channel {
                timeslot, event, ..
            } = e
            {
                events.push_or_count(LineEventRecord {
                    span,
                    notice: LineNotice::Driver(DriverEvent::Dahdi(DahdiLineEvent::Channel {
                        timeslot,
                        event,
                    })),
                });
            }
        }
        let alarms = alarms_from_dahdi(self.b.status().alarms);
        for a in Alarm::ALL {
            let (was, is) = (self.alarms.contains(a), alarms.contains(a));
            if was != is {
                let e = if is {
                    LineEvent::AlarmRaised(a)
                } else {
                    LineEvent::AlarmCleared(a)
                };
                events.push_or_count(LineEventRecord {
                    span,
                    notice: LineNotice::Line(e),
                });
            }
        }
        self.alarms = alarms;
        self.telemetry.publish(&self.status());
    }

    fn status(&self) -> SpanStatus {
        let a = self.alarms;
        let in_frame = !(a.contains(Alarm::Los) || a.contains(Alarm::Lof) || a.blue());
        let c = self.b.counters();
        let mut st = SpanStatus {
            alarms: a,
            in_frame,
            in_multiframe: self.crc4 && in_frame && !a.contains(Alarm::Lomf),
            es: u32::try_from(self.acc.errsec).unwrap_or(u32::MAX),
            driver_los: self.stopped,
            tx_idle_frames: self.primed_frames,
            tx_backlog_drops: (self.late_blocks + c.b_tx_busy) * self.block as u64,
            driver_gaps: self.missing_blocks + c.b_short_blocks + c.b_tx_busy,
            ..SpanStatus::default()
        };
        let d = &mut st.counters.deframer;
        d.frames = self.frames_rx;
        d.fas_errors = self.acc.fas;
        d.crc4_errors = self.acc.crc4;
        d.febe = self.acc.ebit;
        st.counters.frame_periods = self.frames_rx;
        st.counters.frames_sent = self.frames_tx;
        st.counters.events_dropped = c.events_dropped;
        st
    }
}

/// DAHDI spans as the engine's [`TdmPort`]; see the module doc.
pub struct DahdiLinePort<C: DahdiChannel> {
    spans: Box<[DahdiLineSpan<C>]>,
    poll: Poll,
    events: Events,
    timer: TimerFd,
    line_events: Producer<LineEventRecord>,
    scratch: Scratch,
    status_interval_us: u64,
    next_status_us: u64,
}

impl<C: DahdiChannel> DahdiLinePort<C> {
    /// Registers every B-channel fd, allocates every FIFO, scratch buffer
    /// and ring. The spans' order is the engine's. The returned
    /// [`LineHandle`] has no D-channel rings (`dchannels` are all `None`:
    /// the D-channel task owns the span's D-channel fd), the line event
    /// ring and a [`SpanTelemetry`] per span.
    pub fn open(
        params: DahdiLinePortParams<C>,
    ) -> Result<(DahdiLinePort<C>, LineHandle), DahdiLineError> {
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
        let n = params.spans.len();
        let mut spans = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let mut fds = 0;
        let mut max_block = 1;
        for (i, sp) in params.spans.into_iter().enumerate() {
            let block = sp.channels.params().block_octets;
            if !(1..=BLOCK_OCTETS_MAX).contains(&block) {
                return Err(DahdiLineError::BlockSize {
                    span: sp.number,
                    octets: block,
                });
            }
            max_block = max_block.max(block);
            let mut lanes = Vec::with_capacity(sp.channels.len());
            let mut lane_of_ts = [u8::MAX; 32];
            for (ts, fd) in sp.channels.b_channel_raw_fds() {
                poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(i * 32 + usize::from(ts)),
                    Interest::READABLE | Interest::PRIORITY,
                )?;
                lane_of_ts[usize::from(ts)] = lanes.len() as u8;
                lanes.push(Lane {
                    ts,
                    // Read once at the start: data may be waiting already.
                    pending: true,
                    failed: false,
                    primed: false,
                    fifo: vec![ALAW_IDLE; LANE_DEPTH * block].into_boxed_slice(),
                    head: 0,
                    len: 0,
                });
                fds += 1;
            }
            let telemetry = Arc::new(SpanTelemetry::new(sp.number));
            status.push(telemetry.clone());
            let acc = Accumulated {
                last: sp.channels.status().counters,
                ..Accumulated::default()
            };
            let span = DahdiLineSpan {
                number: sp.number,
                b: sp.channels,
                lanes: lanes.into_boxed_slice(),
                lane_of_ts,
                block,
                crc4: sp.crc4,
                prime_blocks: params.tx_prime_blocks,
                telemetry,
                alarms: Alarms::NONE,
                acc,
                frames_rx: 0,
                frames_tx: 0,
                missing_blocks: 0,
                primed_frames: 0,
                late_blocks: 0,
                blocks_in_interval: 0,
                stopped: false,
                status_failed: false,
            };
            // The alarms in force at open are reported like later changes.
            span.telemetry.publish(&span.status());
            spans.push(span);
        }
        let (mut line_events, events) = ring(params.event_ring.max(1));
        for s in &mut spans {
            s.report(&mut line_events);
        }
        let keep = params.tx_prime_blocks + 1;
        let scratch = Scratch {
            rx: vec![IDLE_FRAME; max_block].into_boxed_slice(),
            tx: vec![IDLE_FRAME; max_block].into_boxed_slice(),
            idle: vec![ALAW_IDLE; max_block].into_boxed_slice(),
            hold: vec![ALAW_IDLE; keep * MAX_LANES * max_block].into_boxed_slice(),
            hold_head: 0,
            hold_len: 0,
            keep,
            max_block,
        };
        let interval = params.status_interval_ms.max(1) * 1000;
        let now = now_us();
        let mut port = DahdiLinePort {
            spans: spans.into_boxed_slice(),
            poll,
            events: Events::with_capacity(fds + 1),
            timer,
            line_events,
            scratch,
            status_interval_us: interval,
            next_status_us: now + interval,
        };
        // At once: the first service reads whatever is already waiting.
        port.arm_timer(now, true)?;
        let handle = LineHandle {
            dchannels: (0..n).map(|_| None).collect(),
            events,
            status,
        };
        Ok((port, handle))
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// Span `index`'s B-channels (counters, status; tests and inspection).
    pub fn channels(&self, index: usize) -> Option<&DahdiBChannels<C>> {
        self.spans.get(index).map(|s| &s.b)
    }

    /// Line events dropped on a full ring.
    pub fn events_dropped(&self) -> u64 {
        self.line_events.overflows()
    }

    fn arm_timer(&mut self, now: u64, at_once: bool) -> io::Result<()> {
        let next = if at_once { now } else { self.next_status_us };
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

/// Marks the lane of `token` (span index × 32 + timeslot) readable.
fn mark<C: DahdiChannel>(spans: &mut [DahdiLineSpan<C>], token: usize) {
    let (span, ts) = (token / 32, token % 32);
    if let Some(s) = spans.get_mut(span) {
        let i = s.lane_of_ts[ts];
        if let Some(l) = s.lanes.get_mut(usize::from(i)) {
            l.pending = true;
        }
    }
}

impl<C: DahdiChannel> TdmPort for DahdiLinePort<C> {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.poll.as_raw_fd())
    }

    fn service(
        &mut self,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    ) -> io::Result<usize> {
        // Drain the inner readiness (edge-triggered: it must be consumed
        // for the outer poll to see the next edge).
        match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.token() != TIMER_TOKEN {
                mark(&mut self.spans, ev.token().0);
            }
        }
        let mut exp = [0u8; 8];
        let _ = nix::unistd::read(self.timer.as_fd(), &mut exp);
        let now = now_us();
        let status_due = now >= self.next_status_us;
        if status_due {
            self.next_status_us = now + self.status_interval_us;
        }
        let mut frames = 0;
        let mut again = false;
        let DahdiLinePort {
            spans,
            line_events,
            scratch,
            ..
        } = self;
        for (i, s) in spans.iter_mut().enumerate() {
            frames += s.pump(i, on_frame, scratch, line_events, &mut again);
            if status_due {
                s.on_status_interval(line_events);
            }
            s.report(line_events);
        }
        self.arm_timer(now, again)?;
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::driver::dahdi::seqpacket::{CardSpan, SeqpacketCard, SeqpacketChannel};
    use crate::line::driver::dahdi::{DahdiSpan, DahdiSpanParams, sys};

    type Port = DahdiLinePort<SeqpacketChannel>;

    /// A port over one simulated span of `b` B-channels, its card ends and
    /// the control side; `block` octets per block.
    fn port(b: u8, block: usize) -> (SeqpacketCard, CardSpan, Port, LineHandle) {
        let (mut card, ends) = SeqpacketCard::e1_pri(1, 1, b, sys::DAHDI_SIG_HDLCFCS).unwrap();
        let mut p = DahdiSpanParams::e1_pri(1, 1, b);
        p.block_octets = block;
        let (_d, channels) = DahdiSpan::open(&mut card, p).unwrap().split();
        let (port, h) = DahdiLinePort::open(DahdiLinePortParams::new(vec![DahdiLineSpanParams {
            number: 7,
            channels,
            crc4: true,
        }]))
        .unwrap();
        (card, ends, port, h)
    }

    /// Octet `k` of the block card lane `ts` sends (distinct per lane
    /// and position, never the idle code).
    fn rx_octet(ts: u8, k: usize) -> u8 {
        (ts.wrapping_mul(8) ^ k as u8) | 1
    }

    fn send_block(ends: &CardSpan, ts: u8, block: usize) {
        let end = &ends.b.iter().find(|(t, _)| *t == ts).unwrap().1;
        let b: Vec<u8> = (0..block).map(|k| rx_octet(ts, k)).collect();
        end.send(&b).unwrap();
    }

    fn recv_blocks(ends: &CardSpan, ts: u8) -> Vec<Vec<u8>> {
        let end = &ends.b.iter().find(|(t, _)| *t == ts).unwrap().1;
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Some(n) = end.recv(&mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
        out
    }

    fn events(h: &mut LineHandle) -> Vec<LineNotice> {
        std::iter::from_fn(|| h.events.try_pop())
            .map(|r| r.notice)
            .collect()
    }

    #[test]
    fn dahdi_alarms_map_to_the_raw_spans_names() {
        let m = |a| alarms_from_dahdi(LineAlarms::from_dahdi(a)).to_string();
        assert_eq!(m(0), "none");
        assert_eq!(m(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS), "LOS");
        assert_eq!(m(sys::DAHDI_ALARM_RED), "LOF", "red without a cause");
        assert_eq!(m(sys::DAHDI_ALARM_LFA | sys::DAHDI_ALARM_LMFA), "LOF|LOMF");
        assert_eq!(m(sys::DAHDI_ALARM_BLUE), "AIS");
        assert_eq!(m(sys::DAHDI_ALARM_YELLOW), "RAI");
        assert_eq!(m(sys::DAHDI_ALARM_NOTOPEN), "LOS");
        assert_eq!(
            m(sys::DAHDI_ALARM_LOOPBACK | sys::DAHDI_ALARM_RECOVER),
            "none"
        );
    }

    #[test]
    fn a_block_per_lane_becomes_frames_and_a_block_goes_back() {
        let (_card, ends, mut port, h) = port(4, 40);
        for ts in 1..=4 {
            send_block(&ends, ts, 40);
        }
        let mut seen = Vec::new();
        let n = port
            .service(&mut |span, rx, tx| {
                assert_eq!(span, 0);
                seen.push(*rx);
                // Send back each frame's received octet + 1 per timeslot.
                for ts in 1..=4 {
                    tx[ts] = rx[ts].wrapping_add(1);
                }
            })
            .unwrap();
        assert_eq!(n, 40);
        assert_eq!(seen.len(), 40);
        for (k, f) in seen.iter().enumerate() {
            for ts in 1..=4u8 {
                assert_eq!(f[usize::from(ts)], rx_octet(ts, k), "frame {k} ts {ts}");
            }
            // TS0, TS16 and timeslots without a B-channel are idle.
            assert!(f[5..].iter().chain(&f[..1]).all(|&o| o == ALAW_IDLE));
        }
        for ts in 1..=4u8 {
            let got = recv_blocks(&ends, ts);
            // One idle block primes the card's buffers, then the answer.
            assert_eq!(got.len(), 2, "ts {ts}");
            assert_eq!(got[0], vec![ALAW_IDLE; 40]);
            let want: Vec<u8> = (0..40).map(|k| rx_octet(ts, k).wrapping_add(1)).collect();
            assert_eq!(got[1], want);
        }
        let s = h.status[0].read();
        assert_eq!(h.status[0].span, 7);
        assert_eq!((s.counters.frame_periods, s.counters.frames_sent), (40, 40));
        assert!(s.in_frame && s.in_multiframe && s.alarms.is_empty());
        assert_eq!(s.tx_idle_frames, 40);
        // The next block: no prime this time.
        for ts in 1..=4 {
            send_block(&ends, ts, 40);
        }
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 40);
        assert_eq!(recv_blocks(&ends, 3).len(), 1);
    }

    #[test]
    fn a_span_waits_for_its_last_lane_but_not_for_a_dead_one() {
        let (_card, ends, mut port, h) = port(3, 16);
        send_block(&ends, 1, 16);
        send_block(&ends, 2, 16);
        assert_eq!(
            port.service(&mut |_, _, _| {}).unwrap(),
            0,
            "TS3 not in yet"
        );
        send_block(&ends, 3, 16);
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 16);
        // TS3 stops: TS1 and TS2 go on once they are LAG_BLOCKS ahead,
        // TS3 played as idle and counted.
        let mut ts3 = Vec::new();
        for _ in 0..LAG_BLOCKS {
            send_block(&ends, 1, 16);
            send_block(&ends, 2, 16);
        }
        let n = port.service(&mut |_, rx, _| ts3.push(rx[3])).unwrap();
        assert_eq!(n, 16, "one block assembled, the other waits for TS3");
        assert!(ts3.iter().all(|&o| o == ALAW_IDLE));
        let s = h.status[0].read();
        assert_eq!(s.driver_gaps, 1);
        // TS3 catches up: the waiting block goes with it.
        send_block(&ends, 3, 16);
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 16);
    }

    #[test]
    fn a_backlog_of_blocks_is_read_and_assembled_in_one_service() {
        let (_card, ends, mut port, _h) = port(2, 16);
        for _ in 0..LANE_DEPTH + 3 {
            send_block(&ends, 1, 16);
            send_block(&ends, 2, 16);
        }
        // More blocks than a lane holds: read and assembled in turn.
        let n = port.service(&mut |_, _, _| {}).unwrap();
        assert_eq!(n, 16 * (LANE_DEPTH + 3));
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 0);
    }

    #[test]
    fn a_late_turn_writes_only_the_newest_blocks() {
        let (_card, ends, mut port, h) = port(2, 16);
        // Start-up with a backlog: the prime and the newest block only.
        for k in 0..3u8 {
            for ts in 1..=2 {
                let end = &ends.b.iter().find(|(t, _)| *t == ts).unwrap().1;
                end.send(&[k; 16]).unwrap();
            }
        }
        let n = port
            .service(&mut |_, rx, tx| {
                tx[1] = rx[1] + 0x10;
                tx[2] = rx[2] + 0x10;
            })
            .unwrap();
        assert_eq!(n, 48, "every received block reaches the engine");
        let got = recv_blocks(&ends, 1);
        assert_eq!(got, [vec![ALAW_IDLE; 16], vec![0x12; 16]]);
        assert_eq!(recv_blocks(&ends, 2).len(), 2);
        // Steady: one for one.
        for ts in 1..=2 {
            send_block(&ends, ts, 16);
        }
        port.service(&mut |_, _, _| {}).unwrap();
        assert_eq!(recv_blocks(&ends, 1).len(), 1);
        assert_eq!(recv_blocks(&ends, 2).len(), 1);
        // The media thread comes 3 blocks late: the 2 newest are written.
        for k in 0..3u8 {
            for ts in 1..=2 {
                let end = &ends.b.iter().find(|(t, _)| *t == ts).unwrap().1;
                end.send(&[0x40 + k; 16]).unwrap();
            }
        }
        port.service(&mut |_, rx, tx| tx[1] = rx[1]).unwrap();
        let got = recv_blocks(&ends, 1);
        assert_eq!(got, [vec![0x41; 16], vec![0x42; 16]]);
        let s = h.status[0].read();
        // 2 late at start-up, 1 now; 16 frames each.
        assert_eq!(s.tx_backlog_drops, 3 * 16);
        assert_eq!(s.counters.frame_periods, 7 * 16);
        assert_eq!(s.counters.frames_sent, 4 * 16);
    }

    #[test]
    fn span_alarms_become_line_events_and_status() {
        let (card, ends, mut port, mut h) = port(2, 16);
        assert!(events(&mut h).is_empty());
        card.alarm(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS);
        send_block(&ends, 1, 16);
        send_block(&ends, 2, 16);
        // The reads meet ELAST; GETEVENT gives ALARM; SPANSTAT says LOS.
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 16);
        assert_eq!(
            events(&mut h),
            [LineNotice::Line(LineEvent::AlarmRaised(Alarm::Los))]
        );
        let s = h.status[0].read();
        assert!(s.alarms.contains(Alarm::Los) && !s.in_frame && !s.in_multiframe);
        card.alarm(sys::DAHDI_ALARM_YELLOW);
        send_block(&ends, 1, 16);
        send_block(&ends, 2, 16);
        port.service(&mut |_, _, _| {}).unwrap();
        assert_eq!(
            events(&mut h),
            [
                LineNotice::Line(LineEvent::AlarmCleared(Alarm::Los)),
                LineNotice::Line(LineEvent::AlarmRaised(Alarm::Rai)),
            ]
        );
        let s = h.status[0].read();
        assert!(s.alarms.yellow() && s.in_frame);
        // A B-channel event other than an alarm is passed on.
        card.raise_event(2, DahdiEvent::REMOVED.0);
        send_block(&ends, 1, 16);
        send_block(&ends, 2, 16);
        port.service(&mut |_, _, _| {}).unwrap();
        assert_eq!(
            events(&mut h),
            [LineNotice::Driver(DriverEvent::Dahdi(
                DahdiLineEvent::Channel {
                    timeslot: 2,
                    event: DahdiEvent::REMOVED
                }
            ))]
        );
    }

    #[test]
    fn alarms_in_force_at_open_are_reported() {
        let (mut card, _ends) = SeqpacketCard::e1_pri(2, 32, 1, sys::DAHDI_SIG_HDLCFCS).unwrap();
        card.set_alarms(sys::DAHDI_ALARM_BLUE);
        let (_d, channels) = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(2, 32, 1))
            .unwrap()
            .split();
        let (_port, mut h) =
            DahdiLinePort::open(DahdiLinePortParams::new(vec![DahdiLineSpanParams {
                number: 2,
                channels,
                crc4: false,
            }]))
            .unwrap();
        assert_eq!(
            events(&mut h),
            [LineNotice::Line(LineEvent::AlarmRaised(Alarm::Ais))]
        );
        assert!(h.status[0].read().alarms.blue());
        assert!(h.dchannels.iter().all(Option::is_none));
    }

    /// Waits (bounded) for the port's descriptor, then services it.
    fn service_when_ready(port: &mut Port) -> usize {
        let mut pfd = [nix::libc::pollfd {
            fd: port.raw_fd().unwrap(),
            events: nix::libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        unsafe { nix::libc::poll(pfd.as_mut_ptr(), 1, 5000) };
        port.service(&mut |_, _, _| {}).unwrap()
    }

    #[test]
    fn spanstat_counters_accumulate_and_silence_is_reported() {
        let (mut card, ends) = SeqpacketCard::e1_pri(1, 1, 1, sys::DAHDI_SIG_HDLCFCS).unwrap();
        card.set_spaninfo(sys::DahdiSpanInfo {
            spanno: 1,
            fascount: 100,
            crc4count: 10,
            ..Default::default()
        });
        let (_d, channels) = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 1))
            .unwrap()
            .split();
        let mut params = DahdiLinePortParams::new(vec![DahdiLineSpanParams {
            number: 1,
            channels,
            crc4: true,
        }]);
        params.status_interval_ms = 2;
        let (mut port, mut h) = DahdiLinePort::open(params).unwrap();
        // Counted from the port's start; a reset counts from 0 again.
        card.set_spaninfo(sys::DahdiSpanInfo {
            spanno: 1,
            fascount: 103,
            crc4count: 4,
            ebitcount: 2,
            errsec: 1,
            ..Default::default()
        });
        let mut stopped = false;
        for _ in 0..1000 {
            service_when_ready(&mut port);
            if events(&mut h).contains(&LineNotice::Driver(DriverEvent::Dahdi(
                DahdiLineEvent::BlocksStopped,
            ))) {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "no BlocksStopped without blocks");
        let s = h.status[0].read();
        assert!(s.driver_los);
        assert_eq!(s.counters.deframer.fas_errors, 3);
        assert_eq!(s.counters.deframer.crc4_errors, 4);
        assert_eq!(s.counters.deframer.febe, 2);
        assert_eq!(s.es, 1);
        // Blocks again: resumed at the next interval that saw one.
        let mut resumed = false;
        for _ in 0..1000 {
            send_block(&ends, 1, 160);
            service_when_ready(&mut port);
            if events(&mut h).contains(&LineNotice::Driver(DriverEvent::Dahdi(
                DahdiLineEvent::BlocksResumed,
            ))) {
                resumed = true;
                break;
            }
        }
        assert!(resumed);
        assert!(!h.status[0].read().driver_los);
    }

    #[test]
    fn a_vanished_channel_is_taken_out_and_the_others_go_on() {
        let (_card, mut ends, mut port, mut h) = port(2, 16);
        let (_, gone) = ends.b.remove(1);
        drop(gone);
        send_block(&ends, 1, 16);
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 16);
        assert_eq!(
            events(&mut h),
            [LineNotice::Driver(DriverEvent::Dahdi(
                DahdiLineEvent::ChannelFailed { timeslot: 2 }
            ))]
        );
        send_block(&ends, 1, 16);
        assert_eq!(port.service(&mut |_, _, _| {}).unwrap(), 16);
        assert_eq!(recv_blocks(&ends, 1).len(), 3, "prime + 2 blocks");
    }
}
