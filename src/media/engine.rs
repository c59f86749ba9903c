//! The media engine of one media thread (DESIGN.md §1): a fixed table of
//! [`Channel`]s for a group of spans, their RTP/RTCP sockets, the command
//! and event rings, and the mio loop that drives them from the E1 clock.
//!
//! # Layers
//!
//! - [`MediaCore`] is sans-IO: [`MediaCore::handle_tdm_frame`] per received
//!   E1 frame (returns the frame to send), [`MediaCore::handle_rtp`] /
//!   [`MediaCore::handle_rtcp`] per datagram, [`MediaCore::handle_commands`]
//!   to drain the command ring, [`MediaCore::poll_transmit`] /
//!   [`MediaCore::poll_transmit_rtcp`] for the packets to send. The
//!   wallclock is read once, in [`MediaCore::new`], for the RTCP NTP
//!   timestamps (later instants: that + the E1 sample count). Every
//!   `TICK_SAMPLES` frames of a span ([`super::channel::TICK_MS`] ms) each of
//!   its channels ticks once.
//! - [`MediaLoop`] binds the sockets at start-up and runs a mio `Poll` over
//!   them and the [`TdmPort`]'s descriptor: read datagrams, service the line,
//!   send packets, drain commands, check in with the supervisor. The line's
//!   frames are the only clock while it is up.
//! - [`spawn`] starts the loop on its own thread, pinned, `SCHED_FIFO` and
//!   `mlockall` when asked; their failure is logged as a warning.
//!
//! # Ports
//!
//! Deterministic, so firewall rules can be written: the RTP port of span
//! number `s` (from 1), timeslot `t` is
//! `rtp_port_base + 64 * (s - 1) + 2 * t`, and its RTCP port is that + 1
//! (RFC 3550 §11). A span takes 64 ports (TS0 and TS16 leave theirs unused);
//! the engine refuses a plan that passes 65535. A base of 0 binds every
//! socket to an ephemeral port instead (tests and benches only; see
//! [`MediaLoop::rtp_addr`]).
//!
//! # Memory budget
//!
//! Everything is allocated by [`MediaCore::new`] and [`MediaLoop::new`];
//! [`MemoryBudget`] lists each consumer, one line each, and is logged at
//! start-up. For `n` channels on `s` spans:
//!
//! | consumer | size |
//! |---|---|
//! | channel state (pipeline, DTMF detector, packet buffers) | `n × size_of::<Channel>()` |
//! | jitter rings | `n × next_pow2(8 × jitter_max_depth_ms + 960) × 2 B` (i16 samples) |
//! | DTMF delay lines | `n × next_pow2(8 × dtmf_delay_ms + 320 + 2 × TICK_SAMPLES) B` |
//! | RTCP session, RFC 4733 sender/receiver, tone and digit players, event queue, call-start counters (out of line) | `n × size_of::<Cold>()` (in the logged budget) |
//! | PLC synthesis buffers (out of line) | `n × 1,800 B` (in the logged budget) |
//! | span frame blocks | `s × 2 × TICK_SAMPLES × 32 B` (rx and tx, one tick) |
//! | channel stats (telemetry atomics) | `n × size_of::<ChannelStats>()` |
//! | transmit and relatch queues (RTP, RTCP, commanded channels) | `n × 12 B` |
//! | socket peers (connected or not) | `n × size_of::<Peer>()` (32 B) |
//! | command ring | `command_ring × size_of::<Command>()` |
//! | event ring | `event_ring × size_of::<Event>()` |
//! | receive buffers | `RECV_BATCH × 2048 B` (one `recvmmsg`) |
//! | poll events | `(2n + 1) × size_of::<mio::event::Event>()` |
//!
//! With the defaults (200 ms jitter, 40 ms DTMF delay) a channel costs about
//! 17.5 KiB: 2.9 KiB of state read every tick, 5.3 KiB out of line (RTCP,
//! RFC 4733, tones, digits, events, the PLC's synthesis buffers), an 8 KiB
//! jitter ring and a 1 KiB delay line: 60 channels (2 spans) with the
//! default 1024-slot rings about 1.3 MiB, 1,000 channels about 17.5 MiB.
//! Kernel socket buffers are not counted (2 sockets per channel).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::channel::{Channel, ChannelParams, ChannelStats, STATS_EVERY_TICKS, TICK_SAMPLES};
use super::control::{ChannelId, Command, Event, RejectReason};
use super::ring::{Consumer, Producer, ring};
use super::tdm::{E1Frame, TdmPort};
use super::trace_tap::TraceTap;

/// One span of the group: its number (from 1, as configured) and the
/// timeslots that carry B-channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanParams {
    pub number: u16,
    pub timeslots: Vec<u8>,
}

impl SpanParams {
    /// An ISDN PRI span: B-channels on TS1..15 and TS17..31.
    pub fn pri(number: u16) -> Self {
        SpanParams {
            number,
            timeslots: (1..=31).filter(|&t| t != 16).collect(),
        }
    }
}

/// Everything the engine is built from (plain values; `config` converts
/// the site config and board profile into these).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineParams {
    pub spans: Vec<SpanParams>,
    /// Address the RTP/RTCP sockets bind to.
    pub bind_ip: IpAddr,
    /// See the module doc for the port formula.
    pub rtp_port_base: u16,
    /// Largest jitter depth a connect may ask for; sizes the rings.
    pub jitter_max_depth_ms: u16,
    /// Voice delay that lets detected DTMF be cut out (see `channel`).
    pub dtmf_delay_ms: u16,
    pub command_ring: usize,
    pub event_ring: usize,
    /// Seeds every channel's PRNG (SSRC, initial sequence and timestamp).
    pub seed: u64,
}

impl EngineParams {
    /// Defaults: 200 ms jitter ceiling, 40 ms DTMF delay, 1024-slot rings.
    pub fn new(spans: Vec<SpanParams>, bind_ip: IpAddr, rtp_port_base: u16, seed: u64) -> Self {
        EngineParams {
            spans,
            bind_ip,
            rtp_port_base,
            jitter_max_depth_ms: 200,
            dtmf_delay_ms: super::channel::DEFAULT_DTMF_DELAY_MS,
            command_ring: 1024,
            event_ring: 1024,
            seed,
        }
    }
}

/// The RTP port of span number `span` (from 1), timeslot `ts`; `None` if
/// out of range. RTCP is this + 1.
pub fn rtp_port(base: u16, span: u16, ts: u8) -> Option<u16> {
    let p = base as u32 + 64 * (span as u32).checked_sub(1)? + 2 * ts as u32;
    (p < u16::MAX as u32 && ts < 32).then_some(p as u16)
}

/// Why an engine cannot be built.
#[derive(Debug)]
pub enum EngineError {
    /// A span number of 0, a timeslot outside 1..=31 or TS16, a duplicate.
    BadSpan(String),
    /// A port of the plan passes 65535.
    PortRange {
        span: u16,
        timeslot: u8,
    },
    Io(io::Error),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::BadSpan(s) => write!(f, "media engine: {s}"),
            EngineError::PortRange { span, timeslot } => write!(
                f,
                "media engine: RTP port of span {span} TS{timeslot} is past 65534 (lower rtp_port_base)"
            ),
            EngineError::Io(e) => write!(f, "media engine: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<io::Error> for EngineError {
    fn from(e: io::Error) -> Self {
        EngineError::Io(e)
    }
}

/// One consumer of the memory budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    pub consumer: &'static str,
    pub count: usize,
    pub each_bytes: usize,
}

/// The media thread's memory, computed at start-up; see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBudget {
    pub lines: Vec<BudgetLine>,
}

impl MemoryBudget {
    fn add(&mut self, consumer: &'static str, count: usize, each_bytes: usize) {
        self.lines.push(BudgetLine {
            consumer,
            count,
            each_bytes,
        });
    }

    pub fn total_bytes(&self) -> usize {
        self.lines.iter().map(|l| l.count * l.each_bytes).sum()
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(
                f,
                "{:<44} {:>6} x {:>7} B = {:>10} B",
                l.consumer,
                l.count,
                l.each_bytes,
                l.count * l.each_bytes
            )?;
        }
        write!(f, "{:<44} {:>30} B", "total", self.total_bytes())
    }
}

/// Per-channel telemetry shared with the control plane.
#[derive(Debug)]
pub struct StatsTable {
    pub ids: Box<[ChannelId]>,
    pub stats: Box<[ChannelStats]>,
}

/// The control plane's ends of a media thread.
pub struct ControlHandle {
    pub commands: Producer<Command>,
    pub events: Consumer<Event>,
    pub stats: Arc<StatsTable>,
}

const NO_CHANNEL: u32 = u32::MAX;

struct SpanState {
    number: u16,
    channel_of_ts: [u32; 32],
    frame_in_block: usize,
    rx_block: [E1Frame; TICK_SAMPLES],
    tx_block: [E1Frame; TICK_SAMPLES],
}

/// The sans-IO engine core; see the module doc.
pub struct MediaCore {
    channels: Box<[Channel]>,
    ports: Box<[u16]>,
    stats: Arc<StatsTable>,
    spans: Box<[SpanState]>,
    commands: Consumer<Command>,
    events: Producer<Event>,
    tx_queue: Box<[u32]>,
    tx_len: usize,
    /// Channels with an RTCP compound to send (reports, BYE).
    rtcp_queue: Box<[u32]>,
    rtcp_len: usize,
    /// Channels a command reached since [`Self::drain_relatch`] (their
    /// latch may have been reset); `relatch_all` when more than fit.
    relatch: Box<[u32]>,
    relatch_len: usize,
    relatch_all: bool,
    ticks: u64,
    /// The span whose channels' state the last tick prefetched.
    state_prefetched: Option<usize>,
    ring_full_reported: u64,
    bind_ip: IpAddr,
    budget: MemoryBudget,
}

impl MediaCore {
    /// Builds the channel table and the rings (every allocation the core
    /// will make).
    pub fn new(p: &EngineParams) -> Result<(MediaCore, ControlHandle), EngineError> {
        let mut channels = Vec::new();
        let mut ports = Vec::new();
        let mut spans = Vec::new();
        let mut rng = super::channel::SplitMix64(p.seed);
        for sp in &p.spans {
            if sp.number == 0 || spans.iter().any(|s: &SpanState| s.number == sp.number) {
                return Err(EngineError::BadSpan(format!(
                    "span number {} is 0 or repeated",
                    sp.number
                )));
            }
            let mut st = SpanState {
                number: sp.number,
                channel_of_ts: [NO_CHANNEL; 32],
                frame_in_block: 0,
                rx_block: [[crate::line::g711::ALAW_IDLE; 32]; TICK_SAMPLES],
                tx_block: [[crate::line::g711::ALAW_IDLE; 32]; TICK_SAMPLES],
            };
            for &ts in &sp.timeslots {
                if !(1..=31).contains(&ts)
                    || ts == 16
                    || st.channel_of_ts[ts as usize] != NO_CHANNEL
                {
                    return Err(EngineError::BadSpan(format!(
                        "span {} timeslot {ts} is not a B-channel or repeated",
                        sp.number
                    )));
                }
                let port = match p.rtp_port_base {
                    0 => 0,
                    base => rtp_port(base, sp.number, ts).ok_or(EngineError::PortRange {
                        span: sp.number,
                        timeslot: ts,
                    })?,
                };
                st.channel_of_ts[ts as usize] = channels.len() as u32;
                let id = ChannelId {
                    span: sp.number,
                    timeslot: ts,
                };
                channels.push(Channel::new(ChannelParams {
                    id,
                    seed: rng.next_u64(),
                    jitter_max_depth_ms: p.jitter_max_depth_ms,
                    dtmf_delay_ms: p.dtmf_delay_ms,
                }));
                ports.push(port);
            }
            spans.push(st);
        }
        // The only wallclock read of the media path (RFC 3550 §4 NTP for
        // the SRs): every later instant is this plus the E1 sample count
        // (see `channel::ntp_at`).
        let ntp_base = ntp_wallclock();
        for ch in &mut channels {
            let id = ch.id();
            // RFC 3550 §6.5.1: user@host, unique per channel of this host.
            let cname = format!("tdmgw.{}.{}@{}", id.span, id.timeslot, p.bind_ip);
            ch.set_cname(cname.as_bytes());
            ch.set_ntp_base(ntp_base);
        }
        let n = channels.len();
        let stats = Arc::new(StatsTable {
            ids: channels.iter().map(|c| c.id()).collect(),
            stats: (0..n).map(|_| ChannelStats::default()).collect(),
        });
        let (cmd_tx, cmd_rx) = ring(p.command_ring.max(1));
        let (ev_tx, ev_rx) = ring(p.event_ring.max(1));
        let mut budget = MemoryBudget::default();
        budget.add(
            "channel state (pipeline, DTMF, packet bufs)",
            n,
            std::mem::size_of::<Channel>(),
        );
        budget.add(
            "jitter ring, DTMF delay, RTCP/RFC 4733 state",
            n,
            channels.first().map_or(0, |c| c.heap_bytes()),
        );
        budget.add(
            "span frame blocks (rx + tx, one tick)",
            spans.len(),
            std::mem::size_of::<SpanState>(),
        );
        budget.add(
            "channel stats (telemetry atomics)",
            n,
            std::mem::size_of::<ChannelStats>(),
        );
        budget.add("transmit and relatch queues (RTP, RTCP)", n, 12);
        budget.add(
            "command ring",
            p.command_ring.max(1),
            std::mem::size_of::<Command>(),
        );
        budget.add(
            "event ring",
            p.event_ring.max(1),
            std::mem::size_of::<Event>(),
        );
        let core = MediaCore {
            channels: channels.into_boxed_slice(),
            ports: ports.into_boxed_slice(),
            stats: stats.clone(),
            spans: spans.into_boxed_slice(),
            commands: cmd_rx,
            events: ev_tx,
            tx_queue: vec![0; n].into_boxed_slice(),
            tx_len: 0,
            rtcp_queue: vec![0; n].into_boxed_slice(),
            rtcp_len: 0,
            relatch: vec![0; n].into_boxed_slice(),
            relatch_len: 0,
            relatch_all: false,
            ticks: 0,
            state_prefetched: None,
            ring_full_reported: 0,
            bind_ip: p.bind_ip,
            budget,
        };
        let handle = ControlHandle {
            commands: cmd_tx,
            events: ev_rx,
            stats,
        };
        Ok((core, handle))
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Values dropped on a full command ring and event ring so far.
    pub fn ring_overflows(&self) -> (u64, u64) {
        (self.commands.overflows(), self.events.overflows())
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// Channel `index` (in span order, then timeslot order as given).
    pub fn channel(&self, index: usize) -> Option<&Channel> {
        self.channels.get(index)
    }

    /// The index of a channel, if this engine carries it.
    pub fn channel_index(&self, id: ChannelId) -> Option<usize> {
        let sp = self.spans.iter().find(|s| s.number == id.span)?;
        let i = *sp.channel_of_ts.get(id.timeslot as usize)?;
        (i != NO_CHANNEL).then_some(i as usize)
    }

    /// The local RTP address of channel `index` (RTCP: port + 1; with a
    /// port base of 0, port 0 until [`MediaLoop::new`] has bound it).
    pub fn rtp_addr(&self, index: usize) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.bind_ip, *self.ports.get(index)?))
    }

    /// One received E1 frame of span `span` (index in the params' list);
    /// `tx` gets the frame to send in return (TS0/TS16 are the span's).
    pub fn handle_tdm_frame(&mut self, span: usize, rx: &E1Frame, tx: &mut E1Frame) {
        let Some(sp) = self.spans.get_mut(span) else {
            return;
        };
        let k = sp.frame_in_block;
        sp.rx_block[k] = *rx;
        *tx = sp.tx_block[k];
        if k + 1 < TICK_SAMPLES {
            sp.frame_in_block = k + 1;
            return;
        }
        sp.frame_in_block = 0;
        self.ticks += 1;
        self.tick_span(span);
    }

    /// One tick of a span: every channel ticks on its column of
    /// the 8-frame block.
    fn tick_span(&mut self, span: usize) {
        // Each channel's lines are otherwise a DRAM miss (a thousand
        // channels push each other out of cache). The spans of a line tick
        // one after the other in the same frame, so the next span's state
        // is fetched while this one ticks (and this one's, when the tick
        // before was not the span before), then what this span's state
        // points at, all before the first of its channels works.
        let own = self.state_prefetched != Some(span);
        for s in [span, span + 1].into_iter().skip(usize::from(!own)) {
            for &idx in self
                .spans
                .get(s)
                .map_or(&[][..], |sp| &sp.channel_of_ts[..])
            {
                if let Some(c) = self.channels.get(idx as usize) {
                    c.prefetch_state();
                }
            }
        }
        self.state_prefetched = Some(span + 1);
        for &idx in &self.spans[span].channel_of_ts {
            if let Some(c) = self.channels.get(idx as usize) {
                c.prefetch_data();
            }
        }
        for ts in 1..32 {
            let sp = &mut self.spans[span];
            let idx = sp.channel_of_ts[ts];
            if idx == NO_CHANNEL {
                continue;
            }
            let mut rx = [0u8; TICK_SAMPLES];
            for (o, f) in rx.iter_mut().zip(&sp.rx_block) {
                *o = f[ts];
            }
            let mut tx = [0u8; TICK_SAMPLES];
            let ch = &mut self.channels[idx as usize];
            let had_packet = ch.has_packet();
            let had_rtcp = ch.has_rtcp();
            ch.tick(&rx, &mut tx);
            for (f, o) in sp.tx_block.iter_mut().zip(tx) {
                f[ts] = o;
            }
            if ch.has_packet() && !had_packet && self.tx_len < self.tx_queue.len() {
                self.tx_queue[self.tx_len] = idx;
                self.tx_len += 1;
            }
            if ch.has_rtcp() && !had_rtcp && self.rtcp_len < self.rtcp_queue.len() {
                self.rtcp_queue[self.rtcp_len] = idx;
                self.rtcp_len += 1;
            }
            // Spread the telemetry copies over the interval.
            if (self.ticks + idx as u64).is_multiple_of(STATS_EVERY_TICKS) {
                ch.publish(&self.stats.stats[idx as usize]);
            }
            self.flush_events(idx as usize);
        }
    }

    /// One datagram received on channel `index`'s RTP socket.
    pub fn handle_rtp(&mut self, index: usize, datagram: &[u8], from: SocketAddr) {
        if let Some(ch) = self.channels.get_mut(index) {
            ch.handle_rtp(datagram, from);
            self.flush_events(index);
        }
    }

    /// A datagram on channel `index`'s RTP socket longer than the receive
    /// buffer (the kernel cut it): counted as malformed, never parsed.
    pub fn handle_rtp_truncated(&mut self, index: usize) {
        if let Some(ch) = self.channels.get_mut(index) {
            ch.reject_truncated();
        }
    }

    /// One datagram received on channel `index`'s RTCP socket.
    pub fn handle_rtcp(&mut self, index: usize, datagram: &[u8], from: SocketAddr) {
        if let Some(ch) = self.channels.get_mut(index) {
            ch.handle_rtcp(datagram, from);
            self.flush_events(index);
        }
    }

    /// The next RTCP compound to send (from channel `index`'s RTCP socket):
    /// channel index, destination, datagram.
    pub fn poll_transmit_rtcp(&mut self) -> Option<(usize, SocketAddr, &[u8])> {
        while self.rtcp_len > 0 {
            self.rtcp_len -= 1;
            let idx = self.rtcp_queue[self.rtcp_len] as usize;
            if self.channels[idx].has_rtcp() {
                let (pkt, to) = self.channels[idx].poll_transmit_rtcp()?;
                return Some((idx, to, pkt));
            }
        }
        None
    }

    /// Drains the command ring; returns the number applied.
    pub fn handle_commands(&mut self) -> usize {
        let mut n = 0;
        while let Some(cmd) = self.commands.try_pop() {
            n += 1;
            let ch = cmd.channel();
            match self.channel_index(ch) {
                Some(i) => {
                    let had_rtcp = self.channels[i].has_rtcp();
                    self.channels[i].command(cmd);
                    // A disconnect leaves its BYE to send.
                    if self.channels[i].has_rtcp()
                        && !had_rtcp
                        && self.rtcp_len < self.rtcp_queue.len()
                    {
                        self.rtcp_queue[self.rtcp_len] = i as u32;
                        self.rtcp_len += 1;
                    }
                    self.channels[i].publish(&self.stats.stats[i]);
                    self.flush_events(i);
                    if self.relatch_len < self.relatch.len() {
                        self.relatch[self.relatch_len] = i as u32;
                        self.relatch_len += 1;
                    } else {
                        self.relatch_all = true;
                    }
                }
                None => {
                    self.events.push_or_count(Event::CommandRejected {
                        ch,
                        reason: RejectReason::UnknownChannel,
                    });
                }
            }
        }
        let full = self.events.overflows();
        if full != self.ring_full_reported
            && self
                .events
                .try_push(Event::EventsDropped { ring_full: full })
                .is_ok()
        {
            self.ring_full_reported = full;
        }
        n
    }

    /// Calls `f(index, latched source)` for every channel a command
    /// reached since the last call (a connect, a new remote and a
    /// disconnect reset the latch): the shell un-connects a socket whose
    /// channel no longer holds the source it was connected to.
    pub fn drain_relatch(&mut self, mut f: impl FnMut(usize, Option<SocketAddr>)) {
        if std::mem::take(&mut self.relatch_all) {
            for (i, ch) in self.channels.iter().enumerate() {
                f(i, ch.latched_source());
            }
        } else {
            for &i in &self.relatch[..self.relatch_len] {
                if let Some(ch) = self.channels.get(i as usize) {
                    f(i as usize, ch.latched_source());
                }
            }
        }
        self.relatch_len = 0;
    }

    fn flush_events(&mut self, index: usize) {
        let ch = &mut self.channels[index];
        while let Some(e) = ch.poll_event() {
            self.events.push_or_count(e);
        }
    }

    /// Prefetch hint for the datagram channel `index` is about to read
    /// (see [`Channel::prefetch_rx`]); a shell calls it before the read.
    pub fn prefetch_rx(&self, index: usize) {
        if let Some(ch) = self.channels.get(index) {
            ch.prefetch_rx();
        }
    }

    /// The next RTP packet to send (its datagram borrowed from the channel
    /// until the next call).
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        while self.tx_len > 0 {
            self.tx_len -= 1;
            let idx = self.tx_queue[self.tx_len] as usize;
            // The one after this: fetched while this one is sent.
            if let Some(&next) = self
                .tx_len
                .checked_sub(1)
                .and_then(|i| self.tx_queue.get(i))
                && let Some(c) = self.channels.get(next as usize)
            {
                c.prefetch_tx();
            }
            if self.channels[idx].has_packet() && self.channels[idx].is_connected() {
                let ch = &mut self.channels[idx];
                let latched = ch.latched_source();
                let (datagram, to) = ch.poll_transmit()?;
                return Some(Transmit {
                    index: idx,
                    to,
                    to_latched: latched == Some(to),
                    datagram,
                });
            }
        }
        None
    }
}

/// One RTP packet to send, from [`MediaCore::poll_transmit`].
#[derive(Debug)]
pub struct Transmit<'a> {
    /// The channel (and socket) index.
    pub index: usize,
    pub to: SocketAddr,
    /// `to` is the source the channel's latch holds: the socket may be
    /// connected to it (the latch refuses every other source until a
    /// command resets it).
    pub to_latched: bool,
    pub datagram: &'a [u8],
}

/// Counters of the loop itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCounters {
    pub turns: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub rtcp_datagrams_in: u64,
    pub rtcp_datagrams_out: u64,
    pub recv_errors: u64,
    /// Sends refused by the kernel (full buffer, unreachable; on a
    /// connected socket, a port the far end closed): dropped. Also counts
    /// a socket the kernel refused to connect or un-connect.
    pub send_errors: u64,
    pub tdm_frames: u64,
    /// RTP sockets connected to their channel's latched source, and
    /// un-connected again by a command that reset the latch.
    pub connects: u64,
    pub unconnects: u64,
    /// Sends and reads on a connected RTP socket that failed with
    /// `ECONNREFUSED`: the far end's port is closed (ICMP port
    /// unreachable), usual for a moment when it ends a call first. Not
    /// counted as send or receive errors.
    pub port_unreachable: u64,
}

const TDM_TOKEN: Token = Token(0);
/// Largest datagram read (RTP over Ethernet fits).
const RECV_BUF: usize = 2048;
/// Datagrams one `recvmmsg` reads. A socket normally holds one packet per
/// ptime; the batch is what lets one call both read it and find the socket
/// drained (a short count), where `recv` needs a second call that fails
/// with `EWOULDBLOCK`.
const RECV_BATCH: usize = 4;

/// How a channel's RTP socket is addressed. Once the channel's latch
/// holds a source, the socket is connected to it: the kernel then sends
/// without a route lookup per packet and delivers only that source's
/// datagrams, which is the latch's own rule; a command that resets the
/// latch (connect, new remote, disconnect) un-connects it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Bound to an ephemeral port (a port base of 0): never connected,
    /// because Linux gives up such a socket's port when it is
    /// un-connected (`udp_disconnect` without `SOCK_BINDPORT_LOCK`).
    Ephemeral,
    /// Not connected: `sendto`, and any source reaches the channel.
    Open,
    /// Connected to the channel's latched source: `send`.
    Connected(SocketAddr),
}

/// The mio shell around a [`MediaCore`]; see the module doc.
pub struct MediaLoop {
    core: MediaCore,
    poll: Poll,
    events: Events,
    rtp: Box<[UdpSocket]>,
    peers: Box<[Peer]>,
    rtcp: Box<[UdpSocket]>,
    buf: Box<[u8]>,
    batch: Box<RecvBatch>,
    tdm_registered: bool,
    /// `tdmgw trace`'s copies (`trace_tap`); off unless set.
    tap: TraceTap,
    /// Time the last turn spent outside `poll`.
    last_busy: Duration,
    pub counters: LoopCounters,
}

impl MediaLoop {
    /// Binds every channel's RTP and RTCP socket (non-blocking) and
    /// registers them; logs the memory budget.
    pub fn new(mut core: MediaCore) -> Result<MediaLoop, EngineError> {
        let poll = Poll::new()?;
        let n = core.channels.len();
        let mut rtp = Vec::with_capacity(n);
        let mut rtcp = Vec::with_capacity(n);
        // All RTP sockets first: their descriptors and kernel objects, which
        // every packet touches, end up side by side (RTCP's are rarely used).
        let mut rtcp_ports = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let port = core.ports[i];
            peers.push(if port == 0 {
                Peer::Ephemeral
            } else {
                Peer::Open
            });
            let mut s = UdpSocket::bind(SocketAddr::new(core.bind_ip, port))?;
            core.ports[i] = s.local_addr()?.port();
            poll.registry()
                .register(&mut s, Token(1 + 2 * i), Interest::READABLE)?;
            rtp.push(s);
            rtcp_ports.push(if port == 0 { 0 } else { port + 1 });
        }
        for (i, rtcp_port) in rtcp_ports.into_iter().enumerate() {
            let mut c = UdpSocket::bind(SocketAddr::new(core.bind_ip, rtcp_port))?;
            poll.registry()
                .register(&mut c, Token(2 + 2 * i), Interest::READABLE)?;
            rtcp.push(c);
        }
        let cap = 2 * n + 1;
        core.budget.add("receive buffers", RECV_BATCH, RECV_BUF);
        core.budget
            .add("socket peers", n, std::mem::size_of::<Peer>());
        core.budget
            .add("poll events", cap, std::mem::size_of::<mio::event::Event>());
        tracing::info!(
            channels = n,
            spans = core.spans.len(),
            bytes = core.budget.total_bytes(),
            "media engine memory budget\n{}",
            core.budget
        );
        Ok(MediaLoop {
            core,
            poll,
            events: Events::with_capacity(cap),
            rtp: rtp.into_boxed_slice(),
            peers: peers.into_boxed_slice(),
            rtcp: rtcp.into_boxed_slice(),
            buf: vec![0; RECV_BUF].into_boxed_slice(),
            batch: Box::new(RecvBatch::new()),
            tdm_registered: false,
            tap: TraceTap::off(),
            last_busy: Duration::ZERO,
            counters: LoopCounters::default(),
        })
    }

    /// Builds and binds an engine from `params` at the first port base of
    /// `bases` whose whole plan binds: ports from a base as in production
    /// (so sockets get connected, see [`Peer`]), on a machine where other
    /// processes hold some ports (tests, benches). `None` when none binds.
    pub fn bind_first_free(
        params: &EngineParams,
        bases: impl IntoIterator<Item = u16>,
    ) -> Option<(MediaLoop, ControlHandle)> {
        bases.into_iter().find_map(|base| {
            let p = EngineParams {
                rtp_port_base: base,
                ..params.clone()
            };
            let (core, ctl) = MediaCore::new(&p).ok()?;
            Some((MediaLoop::new(core).ok()?, ctl))
        })
    }

    /// Gives the loop its trace tap (start-up only; see `trace_tap`).
    pub fn set_trace_tap(&mut self, mut tap: TraceTap) {
        let table = (0..self.core.channels.len())
            .filter_map(|i| {
                let (rtp, rtcp) = self.rtp_addr(i)?;
                Some((self.core.channels[i].id().span, rtp, rtcp))
            })
            .collect();
        tap.set_channels(table);
        let slot = std::mem::size_of::<super::trace_tap::TapPacket>();
        self.core.budget.add("trace tap ring", tap.capacity(), slot);
        tracing::info!(
            slots = tap.capacity(),
            bytes = tap.capacity() * slot,
            "media engine: trace tap ring"
        );
        self.tap = tap;
    }

    pub fn core(&self) -> &MediaCore {
        &self.core
    }

    /// The bound RTP and RTCP addresses of channel `index`.
    pub fn rtp_addr(&self, index: usize) -> Option<(SocketAddr, SocketAddr)> {
        let rtp = self.rtp.get(index)?.local_addr().ok()?;
        let rtcp = self.rtcp.get(index)?.local_addr().ok()?;
        Some((rtp, rtcp))
    }

    pub fn core_mut(&mut self) -> &mut MediaCore {
        &mut self.core
    }

    /// Registers the line side's descriptor (once, before the first turn).
    pub fn register_tdm(&mut self, fd: RawFd) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), TDM_TOKEN, Interest::READABLE)?;
        self.tdm_registered = true;
        Ok(())
    }

    /// One turn: wait for readiness (at most `timeout`), read datagrams,
    /// service the line if due, send packets, drain commands.
    pub fn turn(&mut self, port: &mut dyn TdmPort, timeout: Option<Duration>) -> io::Result<()> {
        if !self.tdm_registered
            && let Some(fd) = port.raw_fd()
        {
            self.register_tdm(fd)?;
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let busy_from = std::time::Instant::now();
        self.counters.turns += 1;
        self.tap.refresh();
        let mut tdm_due = port.raw_fd().is_none();
        let Self {
            core,
            events,
            rtp,
            rtcp,
            buf,
            batch,
            counters,
            tap,
            ..
        } = self;
        for ev in events.iter() {
            let t = ev.token().0;
            if t == TDM_TOKEN.0 {
                tdm_due = true;
            } else if t % 2 == 1 {
                drain_rtp(core, (t - 1) / 2, &rtp[(t - 1) / 2], batch, counters, tap);
            } else if let Some(s) = rtcp.get((t - 2) / 2) {
                drain_rtcp(core, (t - 2) / 2, s, buf, counters, tap);
            }
        }
        // Commands first: a connect applies before this turn's frames.
        if self.core.handle_commands() > 0 {
            let Self {
                core,
                rtp,
                peers,
                counters,
                ..
            } = self;
            core.drain_relatch(|i, latched| {
                if let (Some(p), Some(sock)) = (peers.get_mut(i), rtp.get(i))
                    && let Peer::Connected(a) = *p
                    && latched != Some(a)
                {
                    match unconnect(sock) {
                        Ok(()) => {
                            *p = Peer::Open;
                            counters.unconnects += 1;
                        }
                        Err(_) => counters.send_errors += 1,
                    }
                }
            });
        }
        if tdm_due {
            let Self {
                core,
                rtp,
                peers,
                rtcp,
                counters,
                tap,
                ..
            } = self;
            let n = port.service(&mut |span, rx, tx| {
                core.handle_tdm_frame(span, rx, tx);
                // A port that hands over more than a packet time at once (a
                // SAToP playout or a line thread catching up after the loop
                // was held off the CPU) ticks a channel more than once in
                // one service: each packet goes out as it is built, or the
                // next one would overwrite it (a gap in the sequence).
                if core.tx_len > 0 || core.rtcp_len > 0 {
                    send_pending(core, rtp, peers, rtcp, counters, tap);
                }
            })?;
            self.counters.tdm_frames += n as u64;
        }
        self.flush();
        self.last_busy = busy_from.elapsed();
        Ok(())
    }

    /// Time the last turn spent working (outside `poll`): the loop
    /// duration histogram's input.
    pub fn last_turn_busy(&self) -> Duration {
        self.last_busy
    }

    fn flush(&mut self) {
        send_pending(
            &mut self.core,
            &self.rtp,
            &mut self.peers,
            &self.rtcp,
            &mut self.counters,
            &mut self.tap,
        );
    }

    /// Turns until `stop` is set, calling `check_in` with the loop once
    /// per turn (the supervisor's heartbeat, loop telemetry).
    pub fn run(
        &mut self,
        port: &mut dyn TdmPort,
        stop: &AtomicBool,
        check_in: &mut dyn FnMut(&MediaLoop),
    ) -> io::Result<()> {
        // The line clocks the loop; the timeout only lets `stop` be seen
        // (and the supervisor be told) on a dead line.
        let idle = Some(Duration::from_millis(100));
        while !stop.load(Ordering::Relaxed) {
            self.turn(port, idle)?;
            check_in(self);
        }
        Ok(())
    }
}

/// Sends every RTP and RTCP packet the channels have built.
fn send_pending(
    core: &mut MediaCore,
    rtp: &[UdpSocket],
    peers: &mut [Peer],
    rtcp: &[UdpSocket],
    counters: &mut LoopCounters,
    tap: &mut TraceTap,
) {
    while let Some(t) = core.poll_transmit() {
        let (idx, to, pkt) = (t.index, t.to, t.datagram);
        if tap.on() {
            tap.packet(idx, false, true, to, pkt);
        }
        let (Some(sock), Some(peer)) = (rtp.get(idx), peers.get_mut(idx)) else {
            continue;
        };
        match *peer {
            Peer::Open if t.to_latched => match sock.connect(to) {
                Ok(()) => {
                    *peer = Peer::Connected(to);
                    counters.connects += 1;
                }
                Err(_) => counters.send_errors += 1,
            },
            // The latch moves only by a command, which un-connects first;
            // should it move otherwise, sending elsewhere still works.
            Peer::Connected(a) if a != to => match unconnect(sock) {
                Ok(()) => {
                    *peer = Peer::Open;
                    counters.unconnects += 1;
                }
                Err(_) => counters.send_errors += 1,
            },
            _ => {}
        }
        let sent = match *peer {
            Peer::Connected(a) if a == to => sock.send(pkt),
            _ => sock.send_to(pkt, to),
        };
        match sent {
            Ok(_) => counters.datagrams_out += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                counters.port_unreachable += 1
            }
            Err(_) => counters.send_errors += 1,
        }
    }
    while let Some((idx, to, pkt)) = core.poll_transmit_rtcp() {
        if tap.on() {
            tap.packet(idx, true, true, to, pkt);
        }
        match rtcp[idx].send_to(pkt, to) {
            Ok(_) => counters.rtcp_datagrams_out += 1,
            Err(_) => counters.send_errors += 1,
        }
    }
}

/// Dissolves a UDP socket's association (`connect` with `AF_UNSPEC`):
/// it sends with `sendto` again and receives from any source, on the same
/// local address and port (bound explicitly, see [`Peer::Ephemeral`]).
fn unconnect(sock: &UdpSocket) -> io::Result<()> {
    use nix::libc;
    // SAFETY: an all-zero sockaddr is a valid value; only its family is read.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `addr` is a live sockaddr of the size passed, read only
    // during the call.
    let r = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn drain_rtp(
    core: &mut MediaCore,
    idx: usize,
    sock: &UdpSocket,
    batch: &mut RecvBatch,
    counters: &mut LoopCounters,
    tap: &mut TraceTap,
) {
    // A queued ICMP error (RFC 1122 4.1.3.3) fails one read and the next
    // continues; a socket that keeps failing is left until its next event.
    let mut errors = 0;
    // The channel's lines come in while the kernel works.
    core.prefetch_rx(idx);
    loop {
        match batch.recv(sock.as_raw_fd()) {
            Ok(n) => {
                for (&(len, from, cut), buf) in batch.got.iter().zip(&batch.bufs).take(n) {
                    counters.datagrams_in += 1;
                    match from {
                        Some(_) if cut => core.handle_rtp_truncated(idx),
                        Some(from) => {
                            if tap.on() {
                                tap.packet(idx, false, false, from, &buf[..len]);
                            }
                            core.handle_rtp(idx, &buf[..len], from);
                        }
                        None => counters.recv_errors += 1,
                    }
                }
                // A short batch: the kernel found the socket empty (or hit
                // an error it keeps for the next call, which the next
                // event's drain reads).
                if n < RECV_BATCH {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    counters.port_unreachable += 1;
                } else {
                    counters.recv_errors += 1;
                }
                errors += 1;
                if errors >= 8 {
                    return;
                }
            }
        }
    }
}

/// Buffers of one `recvmmsg(2)` (allocated once, by [`MediaLoop::new`]).
struct RecvBatch {
    bufs: [[u8; RECV_BUF]; RECV_BATCH],
    /// Per datagram of the last [`Self::recv`]: length, source (`None`
    /// for an address family other than IPv4/IPv6, never seen on UDP), and
    /// whether it was longer than its buffer (`MSG_TRUNC`).
    got: [(usize, Option<SocketAddr>, bool); RECV_BATCH],
}

impl RecvBatch {
    fn new() -> Self {
        RecvBatch {
            bufs: [[0; RECV_BUF]; RECV_BATCH],
            got: [(0, None, false); RECV_BATCH],
        }
    }

    /// Reads up to [`RECV_BATCH`] datagrams from non-blocking socket `fd`
    /// in one call; the count (at least 1), or the error of the first read
    /// (`WouldBlock` when the socket is empty).
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        use nix::libc;
        use std::mem::MaybeUninit;
        let mut names = [MaybeUninit::<libc::sockaddr_storage>::uninit(); RECV_BATCH];
        let mut iov: [libc::iovec; RECV_BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        for (v, b) in iov.iter_mut().zip(self.bufs.iter_mut()) {
            v.iov_base = b.as_mut_ptr().cast();
            v.iov_len = RECV_BUF;
        }
        // SAFETY: mmsghdr is plain data (integers and raw pointers), for
        // which all-zero bytes are a valid value.
        let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for ((h, v), name) in hdrs.iter_mut().zip(iov.iter_mut()).zip(names.iter_mut()) {
            h.msg_hdr.msg_name = name.as_mut_ptr().cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live iovec of one buffer of
        // RECV_BUF bytes and at a sockaddr_storage with its size; all of
        // them outlive the call, and the kernel writes within those sizes.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                RECV_BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (r as usize).min(RECV_BATCH);
        for ((h, name), got) in hdrs.iter().zip(&names).zip(self.got.iter_mut()).take(n) {
            // SAFETY: for each of the `n` datagrams it returned, the kernel
            // wrote `msg_namelen` bytes of its name.
            let from = unsafe { sockaddr_to_std(name.as_ptr(), h.msg_hdr.msg_namelen) };
            let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            *got = ((h.msg_len as usize).min(RECV_BUF), from, cut);
        }
        Ok(n)
    }
}

/// The socket address the kernel wrote at `ss` (`len` bytes of it).
///
/// # Safety
/// `ss` points at a `sockaddr_storage` whose first `len` bytes are
/// initialised.
unsafe fn sockaddr_to_std(
    ss: *const nix::libc::sockaddr_storage,
    len: nix::libc::socklen_t,
) -> Option<SocketAddr> {
    use nix::libc;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY (all three reads): the family is initialised (checked above),
    // and a family of AF_INET / AF_INET6 with at least that structure's
    // size means the kernel wrote that structure there.
    match unsafe { (*ss).ss_family } as i32 {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            let a = unsafe { &*(ss as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            let a = unsafe { &*(ss as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn drain_rtcp(
    core: &mut MediaCore,
    idx: usize,
    sock: &UdpSocket,
    buf: &mut [u8],
    counters: &mut LoopCounters,
    tap: &mut TraceTap,
) {
    let mut errors = 0;
    loop {
        match sock.recv_from(buf) {
            Ok((n, from)) => {
                counters.rtcp_datagrams_in += 1;
                if tap.on() {
                    tap.packet(idx, true, false, from, &buf[..n]);
                }
                core.handle_rtcp(idx, &buf[..n], from);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionRefused {
                    counters.port_unreachable += 1;
                } else {
                    counters.recv_errors += 1;
                }
                errors += 1;
                if errors >= 8 {
                    return;
                }
            }
        }
    }
}

/// The wallclock as a 64-bit NTP timestamp (RFC 3550 §4: seconds since
/// 1 January 1900); read once, at start-up.
fn ntp_wallclock() -> u64 {
    const UNIX_TO_NTP_S: u64 = 2_208_988_800;
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    ((d.as_secs() + UNIX_TO_NTP_S) << 32) | frac
}

/// How the media thread runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadParams {
    pub name: String,
    /// Pin to this CPU (`sched_setaffinity`).
    pub cpu: Option<usize>,
    /// Run `SCHED_FIFO` at this priority (1..=99).
    pub sched_fifo_priority: Option<i32>,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
    pub mlockall: bool,
}

/// Applies the real-time settings to the calling thread; each failure is a
/// warning (the gateway still carries calls, with more jitter).
pub fn apply_thread_params(tp: &ThreadParams) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    if let Some(cpu) = tp.cpu {
        let mut set = CpuSet::new();
        let r = set
            .set(cpu)
            .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
        if let Err(e) = r {
            tracing::warn!(thread = %tp.name, cpu, error = %e, "media thread: cannot pin to CPU, running unpinned");
        }
    }
    if tp.mlockall {
        use nix::sys::mman::{MlockAllFlags, mlockall};
        if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
            tracing::warn!(thread = %tp.name, error = %e, "media thread: mlockall failed, memory may be paged out");
        }
    }
    if let Some(prio) = tp.sched_fifo_priority {
        let param = nix::libc::sched_param {
            sched_priority: prio,
        };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid
        // sched_param.
        let r = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) };
        if r != 0 {
            tracing::warn!(
                thread = %tp.name,
                priority = prio,
                error = %io::Error::last_os_error(),
                "media thread: SCHED_FIFO refused (needs CAP_SYS_NICE), running SCHED_OTHER"
            );
        }
    }
}

/// Starts a media thread running `lp` over `port` until `stop` is set; it
/// calls `check_in` with the loop every turn. Returns the loop and the
/// port when it ends.
pub fn spawn<P, H>(
    mut lp: MediaLoop,
    mut port: P,
    tp: ThreadParams,
    stop: Arc<AtomicBool>,
    mut check_in: H,
) -> io::Result<JoinHandle<io::Result<(MediaLoop, P)>>>
where
    P: TdmPort + Send + 'static,
    H: FnMut(&MediaLoop) + Send + 'static,
{
    std::thread::Builder::new()
        .name(tp.name.clone())
        .spawn(move || {
            apply_thread_params(&tp);
            lp.run(&mut port, &stop, &mut check_in)?;
            Ok((lp, port))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::control::{Codec, ConnectParams};
    use crate::media::rtp::RtpPacket;

    fn params(spans: &[u16]) -> EngineParams {
        let spans = spans.iter().map(|&n| SpanParams::pri(n)).collect();
        EngineParams::new(spans, "127.0.0.1".parse().unwrap(), 40_000, 7)
    }

    fn id(span: u16, timeslot: u8) -> ChannelId {
        ChannelId { span, timeslot }
    }

    /// A line that hands over 100 ms of frames per service: each channel
    /// builds five packets per turn, and all five must go out.
    #[test]
    fn a_burst_of_frames_sends_every_packet_it_builds() {
        struct Speech;
        impl crate::media::tdm::FrameSource for Speech {
            fn rx_frame(&mut self, _span: usize, n: u64, rx: &mut E1Frame) {
                *rx = [(n % 251) as u8 | 0x80; 32];
            }
            fn tx_frame(&mut self, _span: usize, _n: u64, _tx: &E1Frame) {}
        }
        let p = EngineParams::new(vec![SpanParams::pri(1)], "127.0.0.1".parse().unwrap(), 0, 3);
        let (core, mut ctl) = MediaCore::new(&p).unwrap();
        let mut lp = MediaLoop::new(core).unwrap();
        let far = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        far.set_nonblocking(true).unwrap();
        let ch = ctl.stats.ids[4];
        let params = ConnectParams::new(far.local_addr().unwrap(), Codec::Pcma);
        ctl.commands
            .try_push(Command::Connect { ch, params })
            .unwrap();
        let mut port = crate::media::tdm::SimE1::manual(1, 800, Speech);
        for _ in 0..4 {
            lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
        }
        let mut seqs = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = far.recv(&mut buf) {
            seqs.push(RtpPacket::parse(&buf[..n]).unwrap().repr.sequence_number);
        }
        // 400 ms, less the 40 ms the DTMF delay line holds: 18 packets of
        // 20 ms, numbered without a gap.
        assert_eq!(seqs.len(), 18, "{seqs:?}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
        let i = lp.core().channel_index(ch).unwrap();
        lp.core_mut().channels[i].publish(&ctl.stats.stats[i]);
        assert_eq!(
            ctl.stats.stats[i]
                .tx_overruns
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn port_plan_is_the_documented_formula() {
        assert_eq!(rtp_port(40_000, 1, 1), Some(40_002));
        assert_eq!(rtp_port(40_000, 1, 31), Some(40_062));
        assert_eq!(rtp_port(40_000, 2, 1), Some(40_066));
        assert_eq!(rtp_port(40_000, 0, 1), None);
        assert_eq!(rtp_port(65_000, 9, 31), None);
        let (core, _) = MediaCore::new(&params(&[1, 3])).unwrap();
        assert_eq!(core.channel_count(), 60);
        let i = core.channel_index(id(3, 17)).unwrap();
        assert_eq!(core.rtp_addr(i).unwrap().port(), 40_000 + 128 + 34);
        assert_eq!(core.channel_index(id(3, 16)), None);
        assert_eq!(core.channel_index(id(2, 1)), None);
        assert!(matches!(
            MediaCore::new(&EngineParams::new(
                vec![SpanParams::pri(9)],
                "::1".parse().unwrap(),
                65_000,
                0
            )),
            Err(EngineError::PortRange { span: 9, .. })
        ));
        let mut bad = params(&[1]);
        bad.spans[0].timeslots.push(16);
        assert!(matches!(MediaCore::new(&bad), Err(EngineError::BadSpan(_))));
        assert!(MediaCore::new(&params(&[1, 1])).is_err());
    }

    #[test]
    fn budget_has_a_line_per_consumer_and_scales_with_channels() {
        let (one, _) = MediaCore::new(&params(&[1])).unwrap();
        let (two, _) = MediaCore::new(&params(&[1, 2])).unwrap();
        assert_eq!(one.budget().lines.len(), 7);
        let per_channel = |b: &MemoryBudget| b.lines[0].each_bytes + b.lines[1].each_bytes;
        assert!(per_channel(one.budget()) > 10_000);
        assert!(
            two.budget().total_bytes()
                > one.budget().total_bytes() + 30 * per_channel(one.budget())
        );
        assert!(one.budget().to_string().contains("jitter ring"));
    }

    /// TS5 of span 2 through the core: the octets of each frame's TS5 come
    /// back out in an RTP packet, TS0/TS16 are not the core's business, and
    /// unknown channels are refused by event.
    #[test]
    fn frames_to_packets_and_commands_by_ring() {
        let (mut core, mut ctl) = MediaCore::new(&params(&[1, 2])).unwrap();
        let remote: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut p = ConnectParams::new(remote, Codec::Pcma);
        p.dtmf_detect = false;
        ctl.commands
            .try_push(Command::Connect {
                ch: id(2, 5),
                params: p,
            })
            .unwrap();
        ctl.commands
            .try_push(Command::Disconnect { ch: id(7, 5) })
            .unwrap();
        assert_eq!(core.handle_commands(), 2);
        assert_eq!(
            ctl.events.try_pop(),
            Some(Event::CommandRejected {
                ch: id(7, 5),
                reason: RejectReason::UnknownChannel
            })
        );
        let mut sent = Vec::new();
        let mut tx = [0u8; 32];
        for f in 0..8 * 80u32 {
            let rx: E1Frame = core::array::from_fn(|ts| if ts == 5 { f as u8 } else { 0xD5 });
            core.handle_tdm_frame(0, &[0x55; 32], &mut tx);
            core.handle_tdm_frame(1, &rx, &mut tx);
            let want_index = core.channel_index(id(2, 5)).unwrap();
            while let Some(t) = core.poll_transmit() {
                assert_eq!(t.index, want_index);
                assert_eq!(t.to, remote);
                assert!(!t.to_latched, "nothing received: no latch");
                sent.push(RtpPacket::parse(t.datagram).unwrap().payload.to_vec());
            }
        }
        // 80 ms of audio, 40 ms held by the DTMF delay line: 2 packets.
        assert_eq!(sent.len(), 2);
        let want: Vec<u8> = (0..160u32).map(|f| f as u8).collect();
        assert_eq!(sent[0], want);
        core.handle_tdm_frame(5, &[0; 32], &mut tx); // unknown span: ignored
        assert_eq!(ctl.stats.ids.len(), 60);
    }

    /// One `recvmmsg` reads what is queued, up to the batch, with each
    /// datagram's length and source (IPv4 and IPv6); a short batch means
    /// the socket is drained, and an empty socket is `WouldBlock`.
    #[test]
    fn recv_batch_reads_datagrams_with_their_sources() {
        for ip in ["127.0.0.1", "::1"] {
            let Ok(rx) = std::net::UdpSocket::bind((ip, 0)) else {
                continue; // no IPv6 loopback here
            };
            rx.set_nonblocking(true).unwrap();
            let tx = std::net::UdpSocket::bind((ip, 0)).unwrap();
            let mut batch = RecvBatch::new();
            let e = batch.recv(rx.as_raw_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            for len in 1..=RECV_BATCH + 2 {
                tx.send_to(&vec![len as u8; len * 10], rx.local_addr().unwrap())
                    .unwrap();
            }
            let mut lens = Vec::new();
            loop {
                let n = batch.recv(rx.as_raw_fd()).unwrap();
                for (&(len, from, cut), buf) in batch.got.iter().zip(&batch.bufs).take(n) {
                    assert!(!cut);
                    assert_eq!(from, Some(tx.local_addr().unwrap()));
                    assert!(buf[..len].iter().all(|&b| b as usize * 10 == len));
                    lens.push(len);
                }
                if n < RECV_BATCH {
                    break;
                }
            }
            let want: Vec<usize> = (1..=RECV_BATCH + 2).map(|l| l * 10).collect();
            assert_eq!(lens, want);
            let e = batch.recv(rx.as_raw_fd()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn full_event_ring_is_counted_and_reported_when_room_returns() {
        let mut p = params(&[1]);
        p.event_ring = 2;
        let (mut core, mut ctl) = MediaCore::new(&p).unwrap();
        for _ in 0..5 {
            ctl.commands
                .try_push(Command::Disconnect { ch: id(1, 1) })
                .unwrap();
        }
        core.handle_commands();
        assert_eq!(ctl.events.overflows(), 3);
        while ctl.events.try_pop().is_some() {}
        core.handle_commands();
        assert_eq!(
            ctl.events.try_pop(),
            Some(Event::EventsDropped { ring_full: 3 })
        );
        core.handle_commands();
        assert_eq!(ctl.events.try_pop(), None, "reported once");
    }
}
