//! One B-channel's media pipeline between its E1 timeslot and its RTP
//! stream. Sans-IO: the engine feeds it E1 audio and datagrams and drains
//! packets and events; time is the channel's own sample count of the E1
//! clock (8 per millisecond), advanced by [`Channel::tick`].
//!
//! # Contract
//!
//! - [`Channel::tick`] once per [`TICK_MS`] of E1 ([`TICK_SAMPLES`]
//!   frames): `rx` holds the octets the timeslot received in it, `tx` gets
//!   the octets to send in the next one. Every packet, timeout and playout
//!   decision hangs off this call, so the E1 line clock paces the stream (no
//!   timer).
//! - [`Channel::handle_rtp`] for each datagram arriving on the channel's RTP
//!   socket, with its source address.
//! - [`Channel::poll_transmit`] after a tick: at most one RTP packet (the
//!   channel's own preallocated buffer) and the address to send it to. A
//!   packet not taken before the next one is built is counted as an overrun.
//! - [`Channel::handle_rtcp`] for each datagram on the channel's RTCP
//!   socket; [`Channel::poll_transmit_rtcp`] after a tick or a disconnect:
//!   at most one RTCP compound (a report every ~5 s, the BYE at the end).
//! - [`Channel::poll_event`] after any call: [`Event`]s for the control
//!   plane (a queue of [`EVENT_QUEUE`], overflow counted).
//! - [`Channel::command`] applies one [`Command`] addressed to it.
//!
//! All buffers are allocated by [`Channel::new`]; nothing after.
//!
//! # TDM → RTP
//!
//! The received octets go into a delay line of `dtmf_delay_ms` (default
//! [`DEFAULT_DTMF_DELAY_MS`]) and, decoded, into the DTMF detector. A
//! detected digit (ITU-T Q.24 limits take ~40 ms) is reported to the
//! control plane ([`Event::DtmfStart`]/[`Event::DtmfEnd`]). Without a
//! negotiated telephone-event payload type that is all: the digit stays in
//! the voice (in-band). With one, it is sent as RFC 4733 events
//! ([`EventSender`]): the start packet (marker) carries the timestamp of
//! the digit's first sample in the voice stream's own mapping (sample `t`
//! is `ts0 + t - start` for voice and events alike), updates follow every
//! ptime, the final report goes three times (§2.5.1.4), all in the voice
//! stream's SSRC and sequence space (§2.1). The digit's samples still in
//! the delay line become idle code, voice packets starting at or after the
//! digit are held (not sent) while the events are, and samples of it
//! already sent are counted as leaked. A tick sends at most one packet: a
//! voice packet due with an event's last packet leaves a tick (5 ms) later.
//! Each `ptime` of audio leaving the delay line becomes one packet:
//! A-law octets copied as they are (PCMA), or mapped by G.711 Table 4
//! (PCMU). The RTP header (RFC 3550 §5.1) starts from a random sequence
//! number, timestamp and SSRC (RFC 3550 §5.1, §8.1) drawn from the channel's
//! seeded PRNG; the timestamp advances by the samples each packet carries
//! and the marker bit is set on the first packet (RFC 3551 §4.1).
//!
//! # RTP → TDM
//!
//! Each datagram is checked ([`RtpPacket::parse`], the negotiated payload
//! type, at most [`MAX_PACKET_SAMPLES`] octets), latched ([`Latch`],
//! symmetric RTP), sequence-checked (RFC 3550 A.1), decoded to linear and put
//! in the [`JitterBuffer`]. Every refusal is counted by kind. Each tick pulls
//! its samples; the [`Plc`] (G.711 Appendix I) conceals the samples the
//! buffer flags missing, on the same block so the flags stay aligned, and
//! delays the output by 30 samples (3.75 ms: the RTP → TDM path is the
//! jitter depth + 3.75 ms + up to a tick); received telephone-events
//! ([`EventReceiver`]) are regenerated as DTMF over it for their reported
//! durations and reported as [`Event::DtmfReceivedStart`] /
//! [`Event::DtmfReceivedEnd`]; the result is A-law coded into `tx`. A tone
//! or DTMF digits commanded by the control plane replace the far end's
//! audio while they play. No valid packet for `rtp_timeout_ms` raises
//! [`Event::RtpTimeout`] once.
//!
//! # RTCP
//!
//! Each connect starts an [`RtcpSession`] (RFC 3550 §6.2/§6.3: first report
//! after half of Tmin = 5 s, then every ~5 s randomised over [0.5, 1.5] and
//! divided by e − 3/2). Its due time is kept in the session, so a tick
//! reads no RTCP state until a report is due; sent packet counts are
//! handed over in one batch per report, not per packet. The report is an
//! SR (we sent) or RR with one block on the latched source when RTP came in
//! since the last report (RFC 3550 A.3 loss and A.8 jitter from the
//! channel's sequence state and jitter buffer), and the SDES CNAME. Its
//! NTP timestamp is [`ntp_at`] the E1 sample count (no clock read on the
//! media thread). It goes to where the far end's RTCP comes from, else to
//! its RTP address's port + 1. Received compounds are accepted from the
//! latched RTP source's IP, parsed (malformed ones counted), give the RTT
//! (§6.4.1) and, for a BYE, [`Event::RtcpBye`]. A disconnect sends a last
//! report with the BYE (§6.6). The summary ([`CallSummary`]) adds loss %,
//! jitter, mean RTT, concealed ms and the G.107 R-factor and MOS
//! ([`CallQuality`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::control::{
    CallSummary, ChannelId, Codec, Command, ConnectParams, DigitString, Event, PTIMES_MS,
    RejectReason,
};
use super::dtmf::{DtmfDetector, DtmfEvent};
use super::jitter::{JitterBuffer, JitterConfig, JitterCounters, MAX_PACKET_SAMPLES};
use super::latch::{Latch, LatchVerdict};
use super::plc::{Plc, PlcCounters};
use super::quality::{CallQuality, CallStats, EModel};
use super::rfc4733::{EventPacket, EventReceiver, EventSender, EventSenderConfig};
use super::rtcp::session::{ReceptionStats, ReportTime, RtcpConfig, RtcpEvent, RtcpSession};
use super::rtp::{PayloadType, RTP_HEADER_LEN, RtpError, RtpErrorCounters, RtpPacket, RtpRepr};
use super::seq::{SeqVerdict, SourceSeq};
use super::tone::{ToneGenerator, ToneSpec};
use crate::line::g711;

/// Samples (E1 frames) per millisecond.
pub const SAMPLES_PER_MS: u64 = 8;
/// Milliseconds of E1 audio per [`Channel::tick`]. Working in blocks
/// rather than frame by frame keeps each channel's state in cache for a
/// block's worth of samples: the engine's cost is mostly cache misses on
/// per-channel state, and a thousand channels' per-tick lines do not fit
/// in a core's L2, so each tick pays them again. 5 ms (a DSP's usual
/// frame) divides every ptime (10-40 ms), so TDM → RTP packets leave as
/// soon as their last sample is in; RTP → TDM carries one tick more (the
/// block computed at a tick's end plays during the next). Against 2 ms it
/// halves the L2 misses (cachegrind, 1,020 channels: 13.6 M → 7.2 M read
/// misses per 1.5 simulated s) for 3 ms more delay one way.
pub const TICK_MS: usize = 5;
/// Samples per tick.
pub const TICK_SAMPLES: usize = 8 * TICK_MS;
/// Events a channel holds between two drains by the engine.
pub const EVENT_QUEUE: usize = 8;
/// Voice held back so a detected digit can be cut out of it: the detector
/// reports a digit 36..40 ms after its start (Q.24: 40 ms tones must be
/// accepted), so 36 ms is the least that loses nothing at 10 ms ptime
/// (measured over onset alignments); 40 ms leaves a margin.
pub const DEFAULT_DTMF_DELAY_MS: u16 = 40;
/// Largest RTP packet a channel builds: header + 40 ms of G.711.
pub const MAX_TX_PACKET: usize = RTP_HEADER_LEN + MAX_PACKET_SAMPLES;
/// Largest RTCP compound a channel builds: SR with one report block (52),
/// SDES with a CNAME of at most [`MAX_CNAME`] (~76), BYE (8).
pub const MAX_RTCP_PACKET: usize = 256;
/// Longest CNAME (RFC 3550 §6.5.1) a channel keeps.
pub const MAX_CNAME: usize = 64;

/// NTP timestamp (RFC 3550 §4: seconds since 1900 in the high 32 bits,
/// fraction in the low) of E1 sample `now`, given the NTP time of sample 0.
///
/// The media thread reads no clock per packet: the engine reads the
/// wallclock once at start-up (`ntp_base`) and every later instant is that
/// plus the E1 sample count. The E1 clock may be off the wallclock by up
/// to ±100 ppm (±8.6 s a day); that only shifts the SR's NTP timestamps,
/// which the far end uses as an opaque LSR echo and for lip sync (audio
/// only here). Round-trip times are unaffected: `A - LSR - DLSR` subtracts
/// two readings of this same clock (RFC 3550 §6.4.1).
pub fn ntp_at(ntp_base: u64, now: u64) -> u64 {
    let secs = now / 8000;
    let frac = ((now % 8000) << 32) / 8000;
    ntp_base.wrapping_add(secs << 32).wrapping_add(frac)
}

/// A small seeded PRNG (SplitMix64, Steele et al. 2014): random initial
/// sequence numbers, timestamps and SSRCs without allocation or syscalls.
#[derive(Debug, Clone, Copy)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Construction-time parameters (the engine's, not per call).
#[derive(Debug, Clone, Copy)]
pub struct ChannelParams {
    pub id: ChannelId,
    /// Seeds the PRNG for sequence numbers, timestamps and SSRCs.
    pub seed: u64,
    /// Sizes the jitter buffer's ring: the largest `max_depth_ms` a connect
    /// may ask for.
    pub jitter_max_depth_ms: u16,
    /// Voice delay for DTMF suppression (0: cut only after detection).
    pub dtmf_delay_ms: u16,
}

impl ChannelParams {
    pub fn new(id: ChannelId, seed: u64) -> Self {
        ChannelParams {
            id,
            seed,
            jitter_max_depth_ms: JitterConfig::default().max_depth_ms,
            dtmf_delay_ms: DEFAULT_DTMF_DELAY_MS,
        }
    }
}

/// A channel's plain counters, cumulative since construction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounters {
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub packets_received: u64,
    pub octets_received: u64,
    pub rtp_errors: RtpErrorCounters,
    /// Valid packets from the latched source held back by RFC 3550 A.1
    /// (probation or an unconfirmed large sequence jump).
    pub seq_rejected: u64,
    /// Datagrams on the socket while no session is up.
    pub rtp_while_idle: u64,
    pub telephone_event_packets: u64,
    pub comfort_noise_packets: u64,
    pub dtmf_digits: u64,
    /// Samples of a detected digit already sent before it was detected.
    pub dtmf_leaked_samples: u64,
    pub rtp_timeouts: u64,
    pub ssrc_changes: u64,
    pub sessions: u64,
    /// Packets built before the previous one was taken.
    pub tx_overruns: u64,
    /// Events lost to a full per-channel queue.
    pub events_dropped: u64,
    pub jitter: JitterCounters,
    /// RFC 4733 packets sent, digits sent as telephone-events, and voice
    /// packets held back while one was signalled (§2.5.1.2).
    pub telephone_events_sent: u64,
    pub rfc4733_digits_sent: u64,
    pub voice_packets_held: u64,
    /// Digits received as telephone-events and regenerated; payloads
    /// refused (§2.5.2: wrong length).
    pub rfc4733_digits_received: u64,
    pub telephone_event_malformed: u64,
    /// RTCP compounds sent (reports and BYE), received, refused as
    /// malformed, from a source other than the far end's, or while idle;
    /// built before the previous one was taken.
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    pub rtcp_malformed: u64,
    pub rtcp_wrong_source: u64,
    pub rtcp_while_idle: u64,
    pub rtcp_overruns: u64,
    pub plc: PlcCounters,
    /// RFC 3550 A.3 packets lost, summed over ended sessions (each
    /// session's cumulative loss at its end, duplicates not netted below 0).
    pub packets_lost: u64,
}

/// The same counters as atomics, for telemetry to read while the media
/// thread runs. Updated with Relaxed stores every [`STATS_EVERY_TICKS`].
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub packets_sent: AtomicU64,
    pub octets_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub octets_received: AtomicU64,
    /// Indexed like [`RtpError`] (`RtpError::X as usize`).
    pub rtp_errors: [AtomicU64; RtpError::COUNT],
    pub seq_rejected: AtomicU64,
    pub rtp_while_idle: AtomicU64,
    pub telephone_event_packets: AtomicU64,
    pub dtmf_digits: AtomicU64,
    pub dtmf_leaked_samples: AtomicU64,
    pub rtp_timeouts: AtomicU64,
    pub ssrc_changes: AtomicU64,
    pub sessions: AtomicU64,
    pub tx_overruns: AtomicU64,
    pub events_dropped: AtomicU64,
    pub late: AtomicU64,
    pub duplicates: AtomicU64,
    pub samples_concealed: AtomicU64,
    pub samples_inserted: AtomicU64,
    pub samples_dropped: AtomicU64,
    pub telephone_events_sent: AtomicU64,
    pub rfc4733_digits_received: AtomicU64,
    pub rtcp_sent: AtomicU64,
    pub rtcp_received: AtomicU64,
    pub rtcp_malformed: AtomicU64,
    /// Samples the G.711 Appendix I PLC synthesised.
    pub plc_concealed_samples: AtomicU64,
    /// Gauge: RFC 3550 A.8 jitter, samples.
    pub jitter_samples: AtomicU64,
    /// RFC 3550 A.3 packets lost: ended sessions plus the live one, never
    /// decreasing (a live session's loss can shrink as late packets come).
    pub packets_lost: AtomicU64,
    /// Gauge: the jitter buffer's measured depth, samples (0 when idle).
    pub jitter_buffer_depth_samples: AtomicU64,
    /// Gauge: a session is up.
    pub connected: AtomicBool,
}

/// Ticks between two copies of the counters into [`ChannelStats`] (500 ms:
/// status and scrapes read them far less often, and each copy is a few
/// cache misses per channel; commands and call ends publish at once).
pub const STATS_EVERY_TICKS: u64 = 500 / TICK_MS as u64;

impl ChannelStats {
    fn store(&self, c: &ChannelCounters, jitter_samples: u32, connected: bool) {
        let s = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        s(&self.packets_sent, c.packets_sent);
        s(&self.octets_sent, c.octets_sent);
        s(&self.packets_received, c.packets_received);
        s(&self.octets_received, c.octets_received);
        for (a, v) in self.rtp_errors.iter().zip(c.rtp_errors.by_kind) {
            s(a, v);
        }
        s(&self.seq_rejected, c.seq_rejected);
        s(&self.rtp_while_idle, c.rtp_while_idle);
        s(&self.telephone_event_packets, c.telephone_event_packets);
        s(&self.dtmf_digits, c.dtmf_digits);
        s(&self.dtmf_leaked_samples, c.dtmf_leaked_samples);
        s(&self.rtp_timeouts, c.rtp_timeouts);
        s(&self.ssrc_changes, c.ssrc_changes);
        s(&self.sessions, c.sessions);
        s(&self.tx_overruns, c.tx_overruns);
        s(&self.events_dropped, c.events_dropped);
        s(&self.late, c.jitter.late);
        s(&self.duplicates, c.jitter.duplicates);
        s(&self.samples_concealed, c.jitter.samples_missing);
        s(&self.samples_inserted, c.jitter.samples_inserted);
        s(&self.samples_dropped, c.jitter.samples_dropped);
        s(&self.telephone_events_sent, c.telephone_events_sent);
        s(&self.rfc4733_digits_received, c.rfc4733_digits_received);
        s(&self.rtcp_sent, c.rtcp_sent);
        s(&self.rtcp_received, c.rtcp_received);
        s(&self.rtcp_malformed, c.rtcp_malformed);
        s(&self.plc_concealed_samples, c.plc.concealed_samples);
        s(&self.jitter_samples, jitter_samples as u64);
        self.connected.store(connected, Ordering::Relaxed);
    }
}

/// Per-session state (inline: no allocation on connect). `repr(C)` in
/// this order: the fields every tick reads come first, in the session's
/// first two lines (with [`Channel`]'s alignment, the session starts a
/// line), so a tick's prefetch fetches those and not the receive, send
/// and report state (`SESSION_TICK_BYTES`).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Session {
    // ---- line 0: the tick's timers and packet state
    ptime_samples: u64,
    /// First sample of the next packet to build.
    pkt_start: u64,
    last_valid_rx: u64,
    te_from: u64,
    /// E1 sample of the next RTCP report (the RTCP session's timer, kept
    /// here so a tick reads no RTCP state).
    rtcp_due: u64,
    /// `p.rtp_timeout_ms` in samples.
    rtp_timeout_samples: u64,
    /// The RFC 4733 sender has packets to send; voice from `te_from` (the
    /// digit's first sample) on is held meanwhile.
    te_tx_active: bool,
    /// The RFC 4733 receiver is playing a digit or waits for an end.
    te_rx_active: bool,
    timed_out: bool,
    /// `p.dtmf_detect`.
    dtmf_detect: bool,
    marker_pending: bool,
    /// An RTP packet arrived since the last report (RFC 3550 §6.4.2).
    rx_since_report: bool,
    seq: u16,
    ssrc: u32,
    ts0: u32,
    // ---- line 1: the mute window and the detector's base
    /// Samples `[mute_from, mute_to)` are cut from the voice stream.
    mute_from: Option<u64>,
    mute_to: Option<u64>,
    /// Channel sample at which the DTMF detector was restarted.
    det_base: u64,
    /// Channel sample at connect; also the first sample of the first packet.
    start: u64,
    max_jitter: u32,
    ssrc_changes: u32,
    // ---- the rest: parameters, receive, reports
    p: ConnectParams,
    dtmf_digits: u32,
    rfc4733_sent: u32,
    rfc4733_received: u32,
    latch: Latch,
    src: Option<SourceSeq>,
    /// RTP packets and octets already passed to the RTCP session.
    rtcp_synced: (u64, u64),
    /// Where the far end's RTCP comes from (symmetric RTCP, RFC 4961).
    rtcp_from: Option<SocketAddr>,
}

/// The bytes of [`Session`] a tick reads (its first two lines).
const SESSION_TICK_BYTES: usize = 128;

/// DTMF digits being played into the timeslot.
struct DigitPlayer {
    queue: [u8; DigitString::MAX],
    len: usize,
    next: usize,
    on_samples: u32,
    off_samples: u32,
    tone_gen: Option<ToneGenerator>,
    /// Samples left of the current tone (then of its pause).
    left: u32,
    in_pause: bool,
}

/// See the module documentation. `repr(C)` in this order, aligned to a
/// cache line: the scalars every tick reads fill the first line, the
/// session's per-tick part the next two (see [`Session`]), then the
/// pipeline stages' own state; so a tick's prefetch
/// ([`Self::prefetch_state`]) fetches few lines, and a thousand channels'
/// per-tick lines stay closer to fitting a core's L2.
#[repr(C, align(64))]
pub struct Channel {
    // ---- line 0
    now: u64,
    // TDM -> RTP
    delay: Box<[u8]>,
    delay_mask: u64,
    delay_samples: u64,
    packet_len: usize,
    rtcp_len: usize,
    /// The last tick's playout went through the PLC (else its history is
    /// stale and is reset before the next use).
    plc_live: bool,
    /// A commanded tone ([`Cold::tone`]) or digits ([`Cold::digits`])
    /// are playing: the only per-tick reads of those.
    tone_on: bool,
    digits_on: bool,
    ev_head: u8,
    ev_len: u8,
    // ---- lines 1 on
    session: Option<Session>,
    detector: DtmfDetector,
    // RTP -> TDM
    jb: JitterBuffer,
    plc: Plc,
    counters: ChannelCounters,
    id: ChannelId,
    rng: SplitMix64,
    packet: [u8; MAX_TX_PACKET],
    rtcp_to: SocketAddr,
    ntp_base: u64,
    /// State touched per digit, per report or per call, kept out of line so
    /// the per-tick state of a thousand channels spans fewer pages.
    cold: Box<Cold>,
}

/// See [`Channel::cold`].
struct Cold {
    tone: Option<ToneGenerator>,
    digits: DigitPlayer,
    /// The event queue ([`Channel::ev_head`], [`Channel::ev_len`]).
    events: [Option<Event>; EVENT_QUEUE],
    /// The counters when the session began (for its summary).
    at_connect: ChannelCounters,
    te_tx: EventSender,
    te_rx: EventReceiver,
    rtcp: RtcpSession,
    rtcp_packet: [u8; MAX_RTCP_PACKET],
    cname: [u8; MAX_CNAME],
    cname_len: usize,
}

impl Channel {
    /// Allocates every buffer the channel will use.
    pub fn new(p: ChannelParams) -> Self {
        let delay_samples = p.dtmf_delay_ms as u64 * SAMPLES_PER_MS;
        let cap =
            (delay_samples as usize + MAX_PACKET_SAMPLES + 2 * TICK_SAMPLES).next_power_of_two();
        let jb = JitterBuffer::new(JitterConfig {
            max_depth_ms: p.jitter_max_depth_ms,
            ..JitterConfig::default()
        });
        Channel {
            id: p.id,
            rng: SplitMix64(p.seed),
            now: 0,
            session: None,
            counters: ChannelCounters::default(),
            delay: vec![g711::ALAW_IDLE; cap].into_boxed_slice(),
            delay_mask: cap as u64 - 1,
            delay_samples,
            detector: DtmfDetector::new(),
            packet: [0; MAX_TX_PACKET],
            packet_len: 0,
            jb,
            plc: Plc::new(),
            plc_live: false,
            tone_on: false,
            digits_on: false,
            ev_head: 0,
            ev_len: 0,
            rtcp_len: 0,
            rtcp_to: SocketAddr::from(([0, 0, 0, 0], 0)),
            ntp_base: 0,
            cold: Box::new(Cold {
                tone: None,
                digits: DigitPlayer {
                    queue: [0; DigitString::MAX],
                    len: 0,
                    next: 0,
                    on_samples: 0,
                    off_samples: 0,
                    tone_gen: None,
                    left: 0,
                    in_pause: false,
                },
                events: [None; EVENT_QUEUE],
                at_connect: ChannelCounters::default(),
                te_tx: EventSender::new(EventSenderConfig::default(), 0),
                te_rx: EventReceiver::default(),
                rtcp: RtcpSession::new(RtcpConfig::default(), 0, b"", 0),
                rtcp_packet: [0; MAX_RTCP_PACKET],
                cname: [0; MAX_CNAME],
                cname_len: 0,
            }),
        }
    }

    /// Sets the RTCP CNAME (RFC 3550 §6.5.1, `user@host`; truncated to
    /// [`MAX_CNAME`]) used from the next connect.
    pub fn set_cname(&mut self, cname: &[u8]) {
        let n = cname.len().min(MAX_CNAME);
        self.cold.cname[..n].copy_from_slice(&cname[..n]);
        self.cold.cname_len = n;
    }

    /// Sets the NTP time of channel sample 0 (see [`ntp_at`]).
    pub fn set_ntp_base(&mut self, ntp: u64) {
        self.ntp_base = ntp;
    }

    /// The NTP wallclock of the channel's current sample.
    pub fn ntp_now(&self) -> u64 {
        ntp_at(self.ntp_base, self.now)
    }

    /// The RTCP session of the current (or last) call.
    pub fn rtcp(&self) -> &RtcpSession {
        &self.cold.rtcp
    }

    pub fn id(&self) -> ChannelId {
        self.id
    }

    pub fn is_connected(&self) -> bool {
        self.session.is_some()
    }

    /// The source the latch holds (symmetric RTP sends there), if any.
    pub fn latched_source(&self) -> Option<SocketAddr> {
        self.session.as_ref()?.latch.latched().map(|(a, _)| a)
    }

    /// A datagram longer than the receive buffer arrived (the socket cut
    /// it): counted as too long, not parsed.
    pub fn reject_truncated(&mut self) {
        if self.session.is_some() {
            self.counters.rtp_errors.count(RtpError::TooLong);
        } else {
            self.counters.rtp_while_idle += 1;
        }
    }

    /// Samples of the E1 clock since construction.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn counters(&self) -> ChannelCounters {
        let mut c = self.counters;
        c.jitter = self.jb.counters;
        c.plc = self.plc.counters;
        c
    }

    /// Our SSRC, sequence number of the next packet and its timestamp.
    pub fn tx_state(&self) -> Option<(u32, u16, u32)> {
        self.session.as_ref().map(|s| {
            let ts = s.ts0.wrapping_add((s.pkt_start - s.start) as u32);
            (s.ssrc, s.seq, ts)
        })
    }

    /// Copies the counters into `stats` (Relaxed stores).
    pub fn publish(&self, stats: &ChannelStats) {
        let c = self.counters();
        stats.store(&c, self.jb.jitter_samples(), self.session.is_some());
        let live = self.session.as_ref().and_then(|s| s.src.as_ref());
        let lost_now = live.map_or(0, |q| q.cumulative_lost().max(0) as u64);
        stats
            .packets_lost
            .fetch_max(c.packets_lost + lost_now, Ordering::Relaxed);
        let depth = live.map_or(0, |_| self.jb.depth_samples().max(0) as u64);
        stats
            .jitter_buffer_depth_samples
            .store(depth, Ordering::Relaxed);
    }

    // ---- events ---------------------------------------------------------

    fn emit(&mut self, e: Event) {
        if usize::from(self.ev_len) == EVENT_QUEUE {
            self.counters.events_dropped += 1;
            return;
        }
        self.cold.events[usize::from(self.ev_head + self.ev_len) % EVENT_QUEUE] = Some(e);
        self.ev_len += 1;
    }

    /// The next event for the control plane, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.cold.events[usize::from(self.ev_head)].take();
        self.ev_head = (self.ev_head + 1) % EVENT_QUEUE as u8;
        self.ev_len -= 1;
        e
    }

    /// First of two prefetch steps for the next [`Self::tick`] (the engine
    /// calls it a span ahead): the lines of the fields a tick reads, by
    /// address only, so it never waits on memory itself.
    #[inline]
    pub fn prefetch_state(&self) {
        use super::prefetch;
        // Line 0 (`now` to `ev_len`), then the session's per-tick part;
        // a packet's fields are fetched by `prefetch_data` when one is due.
        prefetch(&self.now);
        super::prefetch_bytes(&self.session, SESSION_TICK_BYTES);
        self.jb.prefetch_state();
        self.detector.prefetch_state();
        self.plc.prefetch_state();
    }

    /// Second step (after [`Self::prefetch_state`] has had time to land):
    /// what the state points at — the jitter ring at the playout point, the
    /// delay line, the detector's sample ring, the PLC history, and the
    /// packet's audio and buffer when the next tick builds one.
    #[inline]
    pub fn prefetch_data(&self) {
        use super::prefetch;
        self.jb.prefetch();
        self.detector.prefetch_data();
        self.plc.prefetch_data();
        super::prefetch_ring(
            &self.delay,
            (self.now & self.delay_mask) as usize,
            TICK_SAMPLES,
        );
        if let Some(s) = self.session.as_ref() {
            // The next tick builds a packet: its audio left the cache the
            // delay line's length ago.
            let end = self.now + TICK_SAMPLES as u64;
            if end >= s.pkt_start + s.ptime_samples + self.delay_samples {
                for t in (s.pkt_start..s.pkt_start + s.ptime_samples).step_by(64) {
                    if let Some(d) = self.delay.get((t & self.delay_mask) as usize) {
                        prefetch(d);
                    }
                }
                super::prefetch_bytes(&self.packet, RTP_HEADER_LEN + s.ptime_samples as usize);
                super::prefetch_bytes(&s.p, usize::MAX);
                prefetch(&self.counters.packets_sent);
            }
        }
    }

    /// Prefetch for the next [`Self::handle_rtp`] (the engine calls it
    /// just before the system call that reads the datagram, whose time
    /// hides the misses): the session, the counters and the jitter
    /// buffer's state and next ring run. Reads the session's ptime and the
    /// buffer's state.
    #[inline]
    pub fn prefetch_rx(&self) {
        super::prefetch_bytes(&self.session, usize::MAX);
        super::prefetch(&self.counters.packets_received);
        super::prefetch(&self.now);
        if let Some(s) = self.session.as_ref() {
            self.jb.prefetch_insert(s.ptime_samples as usize);
        }
    }

    /// Prefetch for [`Self::poll_transmit`] and the send that follows (the
    /// engine calls it for the next queued channel before sending the
    /// current one): the session (its latch) and the built packet.
    #[inline]
    pub fn prefetch_tx(&self) {
        super::prefetch_bytes(&self.session, usize::MAX);
        super::prefetch(&self.packet_len);
        super::prefetch_bytes(&self.packet, MAX_TX_PACKET);
    }

    /// A packet is waiting for [`Self::poll_transmit`].
    pub fn has_packet(&self) -> bool {
        self.packet_len != 0
    }

    /// Heap bytes this channel allocated at construction (memory budget):
    /// the jitter ring, the DTMF delay line, the out-of-line state
    /// ([`Cold`]: RTCP, RFC 4733, tones, digits, events) and the PLC's
    /// synthesis buffers.
    pub fn heap_bytes(&self) -> usize {
        self.jb.heap_bytes()
            + self.delay.len()
            + std::mem::size_of::<Cold>()
            + self.plc.heap_bytes()
    }

    pub fn has_events(&self) -> bool {
        self.ev_len > 0
    }

    // ---- commands -------------------------------------------------------

    /// Applies a command addressed to this channel (the engine has routed it).
    pub fn command(&mut self, cmd: Command) {
        let ch = self.id;
        let rejected = match cmd {
            Command::Connect { params, .. } => self.connect(params).err(),
            Command::UpdateRemote {
                remote,
                restrict_to_sdp,
                ..
            } => match self.session.as_mut() {
                Some(s) => {
                    s.latch.reset(remote, restrict_to_sdp);
                    s.p.remote = remote;
                    s.p.restrict_to_sdp = restrict_to_sdp;
                    None
                }
                None => Some(RejectReason::NotConnected),
            },
            Command::Disconnect { .. } => {
                if self.session.is_some() {
                    self.disconnect();
                    None
                } else {
                    Some(RejectReason::NotConnected)
                }
            }
            Command::PlayTone { tone, .. } => {
                self.cold.tone = Some(ToneGenerator::new(tone));
                self.tone_on = true;
                None
            }
            Command::StopTone { .. } => {
                self.cold.tone = None;
                self.tone_on = false;
                None
            }
            Command::SendDigits { digits, .. } => self.queue_digits(&digits).err(),
        };
        if let Some(reason) = rejected {
            self.emit(Event::CommandRejected { ch, reason });
        }
    }

    fn connect(&mut self, p: ConnectParams) -> Result<(), RejectReason> {
        if !PTIMES_MS.contains(&p.ptime_ms) {
            return Err(RejectReason::BadPtime);
        }
        if p.payload_type.0 > 127 || p.telephone_event_pt.is_some_and(|t| t.0 > 127) {
            return Err(RejectReason::BadPayloadType);
        }
        if self.session.is_some() {
            self.disconnect();
        }
        let r = self.rng.next_u64();
        let ssrc = p.ssrc.unwrap_or(r as u32);
        let r2 = self.rng.next_u64();
        let rtcp_seed = self.rng.next_u64();
        self.jb.reconfigure(p.jitter);
        self.detector = DtmfDetector::new();
        self.plc.reset();
        self.plc_live = false;
        self.counters.sessions += 1;
        // Kept outside the session: cold, and large enough to spread the
        // session's hot fields over more cache lines.
        self.cold.at_connect = self.counters();
        let ptime_samples = p.ptime_ms as u64 * SAMPLES_PER_MS;
        let ts0 = (r2 >> 32) as u32;
        // RFC 4733 §2.1: events use the voice stream's timestamp clock;
        // sample `t` has timestamp `ts0 + (t - start)` in both.
        self.cold.te_tx = EventSender::new(
            EventSenderConfig {
                interval_samples: ptime_samples as u32,
                ..EventSenderConfig::default()
            },
            ts0.wrapping_sub(self.now as u32),
        );
        self.cold.te_rx.reset();
        // RFC 3550 §6.2, §6.3.2: the first report after half the minimum
        // interval, randomised.
        self.cold.rtcp = RtcpSession::new(
            RtcpConfig {
                seed: rtcp_seed,
                ..RtcpConfig::default()
            },
            ssrc,
            &self.cold.cname[..self.cold.cname_len],
            self.now,
        );
        let rtcp_due = self.cold.rtcp.poll_timeout().unwrap_or(u64::MAX);
        self.session = Some(Session {
            p,
            ptime_samples,
            ssrc,
            // RFC 3550 §5.1: initial sequence number and timestamp random.
            seq: (r >> 32) as u16,
            ts0,
            start: self.now,
            pkt_start: self.now,
            marker_pending: true,
            latch: Latch::new(p.remote, p.restrict_to_sdp),
            src: None,
            last_valid_rx: self.now,
            timed_out: false,
            det_base: self.now,
            mute_from: None,
            mute_to: None,
            max_jitter: 0,
            ssrc_changes: 0,
            dtmf_digits: 0,
            te_tx_active: false,
            te_from: 0,
            te_rx_active: false,
            rfc4733_sent: 0,
            rfc4733_received: 0,
            rtcp_due,
            rtp_timeout_samples: p.rtp_timeout_ms as u64 * SAMPLES_PER_MS,
            dtmf_detect: p.dtmf_detect,
            rtcp_synced: (self.counters.packets_sent, self.counters.octets_sent),
            rx_since_report: false,
            rtcp_from: None,
        });
        self.packet_len = 0;
        Ok(())
    }

    fn disconnect(&mut self) {
        let Some(mut s) = self.session.take() else {
            return;
        };
        // RFC 3550 §6.6: a BYE (with a last report) before forgetting the
        // session.
        let (time, reception) = self.report_inputs(&mut s);
        self.rtcp_to = rtcp_destination(&s);
        match self
            .cold
            .rtcp
            .bye(time, reception, &mut self.cold.rtcp_packet)
        {
            Ok(n) => self.queue_rtcp(n),
            Err(_) => self.counters.rtcp_overruns += 1,
        }
        let c = &self.counters;
        let j = &self.jb.counters;
        let a = &self.cold.at_connect;
        let quality = self.quality(&s);
        let rtt = self.cold.rtcp.rtt();
        let rc = self.cold.rtcp.counters;
        let summary = CallSummary {
            duration_ms: (self.now - s.start) / SAMPLES_PER_MS,
            packets_sent: c.packets_sent - a.packets_sent,
            octets_sent: c.octets_sent - a.octets_sent,
            packets_received: c.packets_received - a.packets_received,
            octets_received: c.octets_received - a.octets_received,
            packets_expected: s.src.map_or(0, |q| q.expected()),
            packets_lost: s.src.map_or(0, |q| q.cumulative_lost() as i64),
            late: j.late - a.jitter.late,
            duplicates: j.duplicates - a.jitter.duplicates,
            malformed: c.rtp_errors.total() - a.rtp_errors.total(),
            jitter_samples: self.jb.jitter_samples(),
            max_jitter_samples: s.max_jitter.max(self.jb.jitter_samples()),
            concealed_samples: j.samples_missing - a.jitter.samples_missing,
            samples_inserted: j.samples_inserted - a.jitter.samples_inserted,
            samples_dropped: j.samples_dropped - a.jitter.samples_dropped,
            ssrc_changes: s.ssrc_changes,
            dtmf_digits_detected: s.dtmf_digits,
            dtmf_digits_sent_rtp: s.rfc4733_sent,
            dtmf_digits_received_rtp: s.rfc4733_received,
            loss_percent_x100: fixed(quality.loss_percent, 100.0),
            jitter_us: fixed(quality.jitter_ms, 1000.0),
            rtt_us: fixed(quality.rtt_ms.unwrap_or(0.0), 1000.0),
            rtt_samples: rtt.samples.min(u32::MAX as u64) as u32,
            concealed_ms: fixed(quality.concealed_ms, 1.0),
            one_way_delay_ms: fixed(quality.one_way_delay_ms, 1.0),
            r_factor_x100: fixed(quality.r_factor, 100.0),
            mos_x100: fixed(quality.mos, 100.0),
            rtcp_sent: rc.reports_sent.min(u32::MAX as u64) as u32,
            rtcp_received: rc.received.min(u32::MAX as u64) as u32,
            rtcp_malformed: rc.errors.total().min(u32::MAX as u64) as u32,
        };
        self.counters.packets_lost += summary.packets_lost.max(0) as u64;
        self.packet_len = 0;
        self.jb.reset();
        self.cold.te_rx.reset();
        self.emit(Event::CallSummary {
            ch: self.id,
            summary,
        });
    }

    /// The G.107 E-model summary of session `s` (once, at its end).
    fn quality(&self, s: &Session) -> CallQuality {
        let c = &self.counters;
        let a = &self.cold.at_connect;
        let plc = &self.plc.counters;
        let stats = CallStats {
            packets_sent: c.packets_sent - a.packets_sent,
            // RFC 3550 A.3 over every packet of the source (telephone-events
            // and comfort noise share its sequence space).
            packets_received: s.src.map_or(0, |q| q.received()),
            packets_expected: s.src.map_or(0, |q| q.expected()),
            jitter_samples: self.jb.jitter_samples(),
            rtt_ms: self.cold.rtcp.rtt().mean_ms(),
            jitter_buffer_ms: self.jb.target_depth_samples() as f64 / SAMPLES_PER_MS as f64,
            ptime_ms: s.p.ptime_ms as f64,
            concealed_samples: plc.concealed_samples - a.plc.concealed_samples,
            loss_bursts: plc.erasures - a.plc.erasures,
            plc: true,
        };
        CallQuality::from_stats(&stats, &EModel::default())
    }

    /// Syncs the sent counts into the RTCP session and gives the report's
    /// time and reception block (RFC 3550 §6.4: a block only for a source
    /// heard since the last report).
    fn report_inputs(&mut self, s: &mut Session) -> (ReportTime, Option<ReceptionStats>) {
        let (p0, o0) = s.rtcp_synced;
        let (p1, o1) = (self.counters.packets_sent, self.counters.octets_sent);
        self.cold
            .rtcp
            .on_rtp_sent_batch((p1 - p0) as u32, (o1 - o0) as u32);
        s.rtcp_synced = (p1, o1);
        let time = ReportTime {
            now: self.now,
            ntp: ntp_at(self.ntp_base, self.now),
            rtp_ts: s.ts0.wrapping_add((self.now - s.start) as u32),
        };
        let jitter = self.jb.jitter_samples();
        let reception = match (s.rx_since_report, s.latch.latched(), s.src.as_mut()) {
            (true, Some((_, ssrc)), Some(q)) => Some(ReceptionStats::take(ssrc, q, jitter)),
            _ => None,
        };
        s.rx_since_report = false;
        (time, reception)
    }

    /// RFC 3550 §6.4 report due: written into the RTCP buffer.
    fn rtcp_report(&mut self) {
        let Some(mut s) = self.session.take() else {
            return;
        };
        let (time, reception) = self.report_inputs(&mut s);
        self.rtcp_to = rtcp_destination(&s);
        match self
            .cold
            .rtcp
            .handle_timeout(time, reception, &mut self.cold.rtcp_packet)
        {
            Ok(Some(n)) => self.queue_rtcp(n),
            Ok(None) => {}
            Err(_) => self.counters.rtcp_overruns += 1,
        }
        s.rtcp_due = self.cold.rtcp.poll_timeout().unwrap_or(u64::MAX);
        self.session = Some(s);
    }

    fn queue_rtcp(&mut self, n: usize) {
        if self.rtcp_len != 0 {
            self.counters.rtcp_overruns += 1;
        }
        self.rtcp_len = n;
        self.counters.rtcp_sent += 1;
    }

    /// An RTCP compound is waiting for [`Self::poll_transmit_rtcp`].
    pub fn has_rtcp(&self) -> bool {
        self.rtcp_len != 0
    }

    /// The RTCP compound built by the last tick or disconnect (a report or
    /// the BYE), if not yet taken, and where to send it: where the far end's
    /// RTCP comes from, else its RTP address's port + 1 (RFC 3550 §11).
    pub fn poll_transmit_rtcp(&mut self) -> Option<(&[u8], SocketAddr)> {
        if self.rtcp_len == 0 {
            return None;
        }
        let n = std::mem::take(&mut self.rtcp_len);
        Some((&self.cold.rtcp_packet[..n], self.rtcp_to))
    }

    fn queue_digits(&mut self, d: &DigitString) -> Result<(), RejectReason> {
        let p = &mut self.cold.digits;
        // Compact the queue: drop the digits already played.
        if p.next > 0 {
            p.queue.copy_within(p.next..p.len, 0);
            p.len -= p.next;
            p.next = 0;
        }
        let new = d.as_bytes();
        if p.len + new.len() > DigitString::MAX {
            return Err(RejectReason::DigitQueueFull);
        }
        p.queue[p.len..p.len + new.len()].copy_from_slice(new);
        p.len += new.len();
        p.on_samples = d.on_ms as u32 * SAMPLES_PER_MS as u32;
        p.off_samples = d.off_ms as u32 * SAMPLES_PER_MS as u32;
        self.digits_on = true;
        Ok(())
    }

    // ---- the tick ---------------------------------------------------------

    /// One tick of E1 audio; see the module documentation.
    pub fn tick(&mut self, rx: &[u8; TICK_SAMPLES], tx: &mut [u8; TICK_SAMPLES]) {
        if self.session.is_some() {
            self.tdm_to_rtp(rx);
        }
        self.now += TICK_SAMPLES as u64;
        self.playout(tx);
        if let Some(s) = self.session.as_mut() {
            // RTP inactivity (RFC 3550 leaves it to the application).
            let silent = self.now - s.last_valid_rx;
            if !s.timed_out && silent >= s.rtp_timeout_samples {
                s.timed_out = true;
                self.counters.rtp_timeouts += 1;
                let silent_ms = (silent / SAMPLES_PER_MS).min(u32::MAX as u64) as u32;
                self.emit(Event::RtpTimeout {
                    ch: self.id,
                    silent_ms,
                });
            }
        }
        // RFC 3550 §6.3.6: the report timer, in E1 time.
        if self
            .session
            .as_ref()
            .is_some_and(|s| self.now >= s.rtcp_due)
        {
            self.rtcp_report();
        }
    }

    fn tdm_to_rtp(&mut self, rx: &[u8; TICK_SAMPLES]) {
        let t0 = self.now;
        let start = (t0 & self.delay_mask) as usize;
        let first = TICK_SAMPLES.min(self.delay.len() - start);
        super::copy_short(&mut self.delay[start..start + first], &rx[..first]);
        super::copy_short(&mut self.delay[..TICK_SAMPLES - first], &rx[first..]);
        let detect = self.session.as_ref().is_some_and(|s| s.dtmf_detect);
        if detect {
            let mut lin = [0i16; TICK_SAMPLES];
            g711::decode_alaw(rx, &mut lin);
            let mut fed = 0;
            while fed < lin.len() {
                fed += self.detector.handle_samples(&lin[fed..]);
                while let Some(e) = self.detector.poll_event() {
                    self.on_dtmf(e, t0 + TICK_SAMPLES as u64);
                }
            }
        }
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let end = t0 + TICK_SAMPLES as u64;
        let mut event_sent = false;
        if s.te_tx_active {
            event_sent = self.send_event(end);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        while end >= s.pkt_start + s.ptime_samples + self.delay_samples {
            if s.te_tx_active && s.pkt_start >= s.te_from {
                // RFC 4733 §2.5.1.2 / issue 5: no voice while the digit is
                // signalled as events; its audio is not sent. (The packet
                // the digit starts in goes out, the digit's part muted.)
                let n = s.ptime_samples;
                s.pkt_start += n;
                if s.mute_to.is_some_and(|e| e <= s.pkt_start) {
                    s.mute_from = None;
                    s.mute_to = None;
                }
                self.counters.voice_packets_held += 1;
                continue;
            }
            if !event_sent {
                self.build_packet();
            }
            // One packet per tick: voice due with an event's last packet
            // goes out on the next tick (5 ms later).
            break;
        }
    }

    /// The telephone-event packet due at `now`, if any, into the packet
    /// buffer (RFC 4733 §2.1: the voice stream's SSRC and sequence space).
    fn send_event(&mut self, now: u64) -> bool {
        let ep = self.cold.te_tx.poll_packet(now);
        let active = self.cold.te_tx.is_active();
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        s.te_tx_active = active;
        let (Some(ep), Some(pt)) = (ep, s.p.telephone_event_pt) else {
            return false;
        };
        let EventPacket {
            marker,
            timestamp,
            payload,
        } = ep;
        let repr = RtpRepr {
            marker,
            payload_type: pt,
            sequence_number: s.seq,
            timestamp,
            ssrc: s.ssrc,
        };
        s.seq = s.seq.wrapping_add(1);
        if self.packet_len != 0 {
            self.counters.tx_overruns += 1;
        }
        self.packet_len = repr.emit(&payload, &mut self.packet).unwrap_or(0);
        self.counters.packets_sent += 1;
        self.counters.octets_sent += payload.len() as u64;
        self.counters.telephone_events_sent += 1;
        true
    }

    /// A detector event; `now` is the channel sample just after the block
    /// that produced it.
    fn on_dtmf(&mut self, e: DtmfEvent, now: u64) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let ch = self.id;
        let ev = match e {
            DtmfEvent::DigitStart { digit, at_sample } => {
                let from = s.det_base + at_sample;
                self.counters.dtmf_digits += 1;
                s.dtmf_digits += 1;
                if s.p.telephone_event_pt.is_some() {
                    // Merge with a window whose end has not been sent yet.
                    let open = s.mute_from.is_some() && s.mute_to.is_none_or(|t| t > s.pkt_start);
                    if !open {
                        s.mute_from = Some(from);
                    }
                    s.mute_to = None;
                    self.counters.dtmf_leaked_samples += s.pkt_start.saturating_sub(from);
                    // RFC 4733 §2.5.1.2: the event starts at the digit's
                    // first sample (its timestamp), sent from now on.
                    if self.cold.te_tx.start(now, digit, from) {
                        s.te_tx_active = true;
                        s.te_from = from;
                        s.rfc4733_sent += 1;
                        self.counters.rfc4733_digits_sent += 1;
                    }
                }
                Event::DtmfStart { ch, digit }
            }
            DtmfEvent::DigitEnd {
                digit,
                duration_samples,
            } => {
                if s.p.telephone_event_pt.is_some() {
                    // The pause after the tone is silence: cut up to now.
                    s.mute_to = Some(now);
                    // RFC 4733 §2.5.1.4: the final report, sent three times.
                    self.cold.te_tx.end(now, duration_samples);
                }
                Event::DtmfEnd {
                    ch,
                    digit,
                    duration_ms: (duration_samples / SAMPLES_PER_MS).min(u32::MAX as u64) as u32,
                }
            }
        };
        self.emit(ev);
    }

    fn build_packet(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let n = s.ptime_samples as usize;
        let end = s.pkt_start + n as u64;
        let repr = RtpRepr {
            marker: s.marker_pending,
            payload_type: s.p.payload_type,
            sequence_number: s.seq,
            // RFC 3550 §5.1: the sampling instant of the first octet.
            timestamp: s.ts0.wrapping_add((s.pkt_start - s.start) as u32),
            ssrc: s.ssrc,
        };
        if self.packet_len != 0 {
            self.counters.tx_overruns += 1;
        }
        // The header, then the audio written straight into the packet.
        // Cannot fail: the buffer holds the largest ptime and the payload
        // type was checked at connect.
        let (h, payload) = match (
            repr.emit(&[], &mut self.packet),
            self.packet.get_mut(RTP_HEADER_LEN..RTP_HEADER_LEN + n),
        ) {
            (Some(h), Some(payload)) => (h, payload),
            _ => (0, &mut [][..]),
        };
        let n = payload.len();
        let mute_overlaps = s
            .mute_from
            .is_some_and(|f| f < end && s.mute_to.is_none_or(|e| e > s.pkt_start));
        if !mute_overlaps {
            // The common case: the delay line's runs as they are (PCMA), or
            // mapped by G.711 Table 4 (PCMU).
            let start = (s.pkt_start & self.delay_mask) as usize;
            let first = n.min(self.delay.len() - start);
            payload[..first].copy_from_slice(&self.delay[start..start + first]);
            payload[first..].copy_from_slice(&self.delay[..n - first]);
            if s.p.codec == Codec::Pcmu {
                g711::alaw_to_ulaw_in_place(payload);
            }
        } else {
            let idle = match s.p.codec {
                Codec::Pcma => g711::ALAW_IDLE,
                Codec::Pcmu => g711::ULAW_IDLE,
            };
            for (i, out) in payload.iter_mut().enumerate() {
                let t = s.pkt_start + i as u64;
                let muted = s.mute_from.is_some_and(|f| t >= f) && s.mute_to.is_none_or(|e| t < e);
                let a = self.delay[(t & self.delay_mask) as usize];
                *out = if muted {
                    idle
                } else if s.p.codec == Codec::Pcmu {
                    // G.711 Table 4: A-law to µ-law code conversion.
                    g711::alaw_to_ulaw(a)
                } else {
                    a
                };
            }
        }
        if s.mute_to.is_some_and(|e| e <= end) {
            s.mute_from = None;
            s.mute_to = None;
        }
        s.marker_pending = false;
        s.seq = s.seq.wrapping_add(1);
        s.pkt_start = end;
        self.packet_len = if h == 0 { 0 } else { h + n };
        self.counters.packets_sent += 1;
        self.counters.octets_sent += s.ptime_samples;
    }

    /// The packet built by the last tick, if not yet taken, and where to send
    /// it (the latched source, else the SDP address: symmetric RTP).
    pub fn poll_transmit(&mut self) -> Option<(&[u8], SocketAddr)> {
        if self.packet_len == 0 {
            return None;
        }
        let to = self.session.as_ref()?.latch.send_to();
        let n = std::mem::take(&mut self.packet_len);
        Some((&self.packet[..n], to))
    }

    fn playout(&mut self, tx: &mut [u8; TICK_SAMPLES]) {
        let mut lin = [0i16; TICK_SAMPLES];
        if self.digits_on {
            // Once it has nothing to play it stays so until digits are queued.
            self.digits_on = self.play_digits(&mut lin);
        }
        if self.digits_on {
            self.plc_live = false;
        } else if self.tone_on {
            if let Some(t) = self.cold.tone.as_mut() {
                t.fill(&mut lin);
            }
            self.plc_live = false;
        } else if self.session.is_some() {
            let mut missing = [false; TICK_SAMPLES];
            let lost = self.jb.pull(&mut lin, &mut missing);
            self.conceal(&mut lin, &missing, lost);
            self.regenerate_dtmf(&mut lin);
        } else {
            self.plc_live = false;
            *tx = [g711::ALAW_IDLE; TICK_SAMPLES];
            return;
        }
        g711::encode_alaw(&lin, tx);
    }

    /// G.711 Appendix I concealment of the samples the jitter buffer flags
    /// missing. The PLC delays its output by 30 samples (3.75 ms, the look-
    /// back that lets an erasure's start be smoothed), so the RTP → TDM path
    /// carries 3.75 ms more than the jitter depth; `lin` and `missing` are
    /// the same block, so the flags stay aligned with their samples. When
    /// nothing is missing the PLC is a 30-sample delay line (its fast
    /// path). After a tone or digits replaced the far end's audio the
    /// history is stale: it is reset first (30 samples of silence).
    fn conceal(
        &mut self,
        lin: &mut [i16; TICK_SAMPLES],
        missing: &[bool; TICK_SAMPLES],
        lost: u32,
    ) {
        if !self.plc_live {
            self.plc.reset();
            self.plc_live = true;
        }
        if lost == 0 {
            self.plc.process_good(lin);
        } else {
            self.plc.process(lin, missing);
        }
    }

    /// RFC 4733 §2.5.2: a received telephone-event digit is played over the
    /// far end's audio (after the PLC) for its reported duration.
    fn regenerate_dtmf(&mut self, lin: &mut [i16; TICK_SAMPLES]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.te_rx_active {
            return;
        }
        self.cold.te_rx.fill(self.now, lin);
        s.te_rx_active = self.cold.te_rx.is_playing() || self.cold.te_rx.poll_timeout().is_some();
        self.drain_rfc4733_events();
    }

    fn drain_rfc4733_events(&mut self) {
        let ch = self.id;
        while let Some(e) = self.cold.te_rx.poll_event() {
            let ev = match e {
                DtmfEvent::DigitStart { digit, .. } => {
                    self.counters.rfc4733_digits_received += 1;
                    if let Some(s) = self.session.as_mut() {
                        s.rfc4733_received += 1;
                    }
                    Event::DtmfReceivedStart { ch, digit }
                }
                DtmfEvent::DigitEnd {
                    digit,
                    duration_samples,
                } => Event::DtmfReceivedEnd {
                    ch,
                    digit,
                    duration_ms: (duration_samples / SAMPLES_PER_MS).min(u32::MAX as u64) as u32,
                },
            };
            self.emit(ev);
        }
    }

    /// Plays queued DTMF digits; false when none is playing.
    fn play_digits(&mut self, lin: &mut [i16; TICK_SAMPLES]) -> bool {
        let p = &mut self.cold.digits;
        let mut filled = 0;
        while filled < TICK_SAMPLES {
            if p.left == 0 {
                if !p.in_pause && p.tone_gen.is_some() {
                    p.in_pause = true;
                    p.tone_gen = None;
                    p.left = p.off_samples;
                    continue;
                }
                if p.next >= p.len {
                    p.in_pause = false;
                    if filled == 0 {
                        return false;
                    }
                    lin[filled..].fill(0);
                    return true;
                }
                let d = p.queue[p.next];
                p.next += 1;
                p.in_pause = false;
                p.tone_gen = ToneSpec::dtmf(d).map(ToneGenerator::new);
                p.left = p.on_samples.max(1);
                continue;
            }
            let n = (p.left as usize).min(TICK_SAMPLES - filled);
            match p.tone_gen.as_mut() {
                Some(g) => g.fill(&mut lin[filled..filled + n]),
                None => lin[filled..filled + n].fill(0),
            }
            p.left -= n as u32;
            filled += n;
        }
        true
    }

    // ---- RTP in -----------------------------------------------------------

    /// One datagram from the channel's RTP socket.
    pub fn handle_rtp(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(s) = self.session.as_mut() else {
            self.counters.rtp_while_idle += 1;
            return;
        };
        let p = match RtpPacket::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.counters.rtp_errors.count(e);
                return;
            }
        };
        let pt = p.repr.payload_type;
        let audio = pt == s.p.payload_type;
        let event = s.p.telephone_event_pt == Some(pt);
        if !audio && !event && pt != PayloadType::CN {
            self.counters.rtp_errors.count(RtpError::UnknownPayloadType);
            return;
        }
        if p.payload.len() > MAX_PACKET_SAMPLES {
            self.counters.rtp_errors.count(RtpError::TooLong);
            return;
        }
        match s.latch.check(from, p.repr.ssrc) {
            LatchVerdict::Reject => {
                self.counters.rtp_errors.count(RtpError::WrongSource);
                return;
            }
            LatchVerdict::Accept => {}
            LatchVerdict::Latched => {
                s.src = None;
                s.te_rx_active = false;
                self.jb.reset();
                self.cold.te_rx.reset();
                self.cold.rtcp.set_remote_ssrc(p.repr.ssrc);
                self.emit(Event::FirstRtp {
                    ch: self.id,
                    from,
                    ssrc: p.repr.ssrc,
                });
            }
            LatchVerdict::SsrcChanged { old, new } => {
                // RFC 3550 §8.2: a new SSRC is a new source: fresh sequence
                // and jitter state.
                s.src = None;
                s.ssrc_changes += 1;
                s.te_rx_active = false;
                self.counters.ssrc_changes += 1;
                self.jb.reset();
                self.cold.te_rx.reset();
                self.cold.rtcp.set_remote_ssrc(new);
                self.emit(Event::SsrcChanged {
                    ch: self.id,
                    old,
                    new,
                });
            }
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let seq = p.repr.sequence_number;
        let verdict = match s.src.as_mut() {
            Some(q) => q.update(seq, 1),
            None => {
                let mut q = SourceSeq::new(seq, 1);
                let v = q.update(seq, 1);
                s.src = Some(q);
                v
            }
        };
        if verdict != SeqVerdict::Valid {
            self.counters.seq_rejected += 1;
            return;
        }
        s.last_valid_rx = self.now;
        s.timed_out = false;
        s.rx_since_report = true;
        if event {
            // RFC 4733 §2.5.2: regenerated as DTMF into the timeslot.
            self.counters.telephone_event_packets += 1;
            s.te_rx_active = true;
            if self
                .cold
                .te_rx
                .handle_packet(self.now, p.repr.timestamp, p.payload)
                .is_err()
            {
                self.counters.telephone_event_malformed += 1;
            }
            self.drain_rfc4733_events();
            return;
        }
        if !audio {
            // RFC 3389 comfort noise: the gap it stands for is concealed.
            self.counters.comfort_noise_packets += 1;
            return;
        }
        let n = p.payload.len();
        let mut decoded = [0i16; MAX_PACKET_SAMPLES];
        match s.p.codec {
            Codec::Pcma => g711::decode_alaw(p.payload, &mut decoded),
            Codec::Pcmu => g711::decode_ulaw(p.payload, &mut decoded),
        };
        self.jb
            .insert(self.now, p.repr.timestamp, p.repr.marker, &decoded[..n]);
        s.max_jitter = s.max_jitter.max(self.jb.jitter_samples());
        self.counters.packets_received += 1;
        self.counters.octets_received += n as u64;
    }
}

impl Channel {
    /// One datagram from the channel's RTCP socket (RFC 3550 §6): parsed
    /// by the RTCP session (malformed compounds counted and dropped whole);
    /// the far end's reports give the round-trip time, its BYE an
    /// [`Event::RtcpBye`]. Accepted from the IP address RTP is latched to
    /// (or, before that, any address unless restricted to the SDP one).
    pub fn handle_rtcp(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(s) = self.session.as_mut() else {
            self.counters.rtcp_while_idle += 1;
            return;
        };
        let allowed = match s.latch.latched() {
            Some((rtp_from, _)) => rtp_from.ip() == from.ip(),
            None => !s.p.restrict_to_sdp || s.p.remote.ip() == from.ip(),
        };
        if !allowed {
            self.counters.rtcp_wrong_source += 1;
            return;
        }
        self.counters.rtcp_received += 1;
        let ntp = ntp_at(self.ntp_base, self.now);
        match self.cold.rtcp.handle_rtcp(self.now, ntp, datagram) {
            Ok(()) => s.rtcp_from = Some(from),
            Err(_) => self.counters.rtcp_malformed += 1,
        }
        if let Some(RtcpEvent::Bye { ssrc }) = self.cold.rtcp.poll_event() {
            self.emit(Event::RtcpBye { ch: self.id, ssrc });
        }
    }
}

/// Where a session's RTCP goes: symmetric to the far end's (RFC 4961),
/// else the RTP destination's port + 1 (RFC 3550 §11).
fn rtcp_destination(s: &Session) -> SocketAddr {
    if let Some(a) = s.rtcp_from {
        return a;
    }
    let mut a = s.latch.send_to();
    a.set_port(a.port().saturating_add(1));
    a
}

/// `x * scale` rounded, as a non-negative `u32` (summary fixed point).
fn fixed(x: f64, scale: f64) -> u32 {
    (x * scale).round().clamp(0.0, u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::plc::OUTPUT_DELAY_SAMPLES;
    use crate::media::rtp::RtpPacket;

    fn id() -> ChannelId {
        ChannelId {
            span: 1,
            timeslot: 5,
        }
    }

    fn remote() -> SocketAddr {
        "192.0.2.7:40002".parse().unwrap()
    }

    fn channel(delay_ms: u16) -> Channel {
        Channel::new(ChannelParams {
            dtmf_delay_ms: delay_ms,
            ..ChannelParams::new(id(), 42)
        })
    }

    fn connect(ch: &mut Channel, f: impl FnOnce(&mut ConnectParams)) {
        let mut p = ConnectParams::new(remote(), Codec::Pcma);
        f(&mut p);
        ch.command(Command::Connect {
            ch: id(),
            params: p,
        });
        assert!(ch.is_connected());
    }

    fn events(ch: &mut Channel) -> Vec<Event> {
        std::iter::from_fn(|| ch.poll_event()).collect()
    }

    /// Ticks `ms` times with `rx(sample_index)` as the received octets;
    /// returns the packets sent and the octets played to the timeslot.
    fn run(
        ch: &mut Channel,
        ms: usize,
        mut rx: impl FnMut(u64) -> u8,
    ) -> (Vec<(RtpRepr, Vec<u8>)>, Vec<u8>) {
        let mut pkts = Vec::new();
        let mut played = Vec::new();
        assert_eq!(ms % TICK_MS, 0);
        for _ in 0..ms / TICK_MS {
            let t0 = ch.now();
            let r: [u8; TICK_SAMPLES] = core::array::from_fn(|i| rx(t0 + i as u64));
            let mut tx = [0u8; TICK_SAMPLES];
            ch.tick(&r, &mut tx);
            played.extend_from_slice(&tx);
            if let Some((buf, to)) = ch.poll_transmit() {
                assert_eq!(to, remote());
                let p = RtpPacket::parse(buf).unwrap();
                pkts.push((p.repr, p.payload.to_vec()));
            }
        }
        (pkts, played)
    }

    fn pattern(t: u64) -> u8 {
        (t.wrapping_mul(37) % 251) as u8
    }

    #[test]
    fn packetises_pcma_octets_untouched_with_continuous_seq_and_ts() {
        for ptime in PTIMES_MS {
            let mut ch = channel(0);
            connect(&mut ch, |p| {
                p.ptime_ms = ptime;
                p.ssrc = Some(0x1234_5678);
                p.dtmf_detect = false;
            });
            let (pkts, _) = run(&mut ch, 400, pattern);
            let n = ptime as usize * 8;
            assert_eq!(pkts.len(), 400 / ptime as usize, "ptime {ptime}");
            for (i, (r, payload)) in pkts.iter().enumerate() {
                let first = &pkts[0].0;
                assert_eq!(r.marker, i == 0, "marker only on the first");
                assert_eq!(r.payload_type, PayloadType::PCMA);
                assert_eq!(r.ssrc, 0x1234_5678);
                assert_eq!(
                    r.sequence_number,
                    first.sequence_number.wrapping_add(i as u16)
                );
                assert_eq!(r.timestamp, first.timestamp.wrapping_add((i * n) as u32));
                let want: Vec<u8> = (0..n as u64)
                    .map(|k| pattern(i as u64 * n as u64 + k))
                    .collect();
                assert_eq!(payload, &want, "ptime {ptime} packet {i}");
            }
        }
    }

    #[test]
    fn pcmu_goes_through_the_g711_table() {
        let mut ch = channel(0);
        connect(&mut ch, |p| {
            *p = ConnectParams::new(remote(), Codec::Pcmu);
            p.dtmf_detect = false;
        });
        let (pkts, _) = run(&mut ch, 40, pattern);
        assert_eq!(pkts[0].0.payload_type, PayloadType::PCMU);
        let want: Vec<u8> = (0..160).map(|k| g711::alaw_to_ulaw(pattern(k))).collect();
        assert_eq!(pkts[0].1, want);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut ch = channel(0);
        connect(&mut ch, |p| p.dtmf_detect = false);
        let s = ch.session.as_mut().unwrap();
        s.seq = 0xFFFE;
        s.ts0 = 0xFFFF_FF00;
        let (pkts, _) = run(&mut ch, 80, pattern);
        let seqs: Vec<u16> = pkts.iter().map(|p| p.0.sequence_number).collect();
        let tss: Vec<u32> = pkts.iter().map(|p| p.0.timestamp).collect();
        assert_eq!(seqs, [0xFFFE, 0xFFFF, 0, 1]);
        assert_eq!(tss, [0xFFFF_FF00, 0xFFFF_FFA0, 0x40, 0xE0]);
    }

    #[test]
    fn initial_seq_ts_ssrc_differ_per_seed_and_call() {
        let mut a = channel(0);
        connect(&mut a, |_| {});
        let first = a.tx_state().unwrap();
        connect(&mut a, |_| {});
        let second = a.tx_state().unwrap();
        let mut b = Channel::new(ChannelParams::new(id(), 43));
        connect(&mut b, |_| {});
        assert_ne!(first, second);
        assert_ne!(first, b.tx_state().unwrap());
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 12 + payload.len()];
        let r = RtpRepr {
            marker: false,
            payload_type: PayloadType(pt),
            sequence_number: seq,
            timestamp: ts,
            ssrc,
        };
        let n = r.emit(payload, &mut b).unwrap();
        b.truncate(n);
        b
    }

    #[test]
    fn received_audio_is_played_after_the_jitter_depth() {
        let mut ch = channel(0);
        connect(&mut ch, |p| p.dtmf_detect = false);
        let mut played = Vec::new();
        for k in 0..20u64 {
            let payload: Vec<u8> = (0..160).map(|i| pattern(k * 160 + i)).collect();
            ch.handle_rtp(&rtp(k as u16, k as u32 * 160, 9, 8, &payload), remote());
            let (_, out) = run(&mut ch, 20, |_| 0xD5);
            played.extend(out);
        }
        // The first packet waits the 20 ms minimum depth, plus the PLC's
        // 3.75 ms look-back; then the octets come out as sent (A-law ->
        // linear -> A-law is exact).
        let want: Vec<u8> = (0..160 * 10).map(pattern).collect();
        let d = 160 + OUTPUT_DELAY_SAMPLES;
        assert!(played[..d].iter().all(|&o| o == g711::ALAW_IDLE));
        assert_eq!(&played[d..d + 160 * 10], &want[..]);
        assert_eq!(ch.counters().packets_received, 20);
        let ev = events(&mut ch);
        assert!(matches!(ev[0], Event::FirstRtp { ssrc: 9, .. }), "{ev:?}");
    }

    #[test]
    fn ssrc_change_is_reported_and_resets_the_source() {
        let mut ch = channel(0);
        connect(&mut ch, |p| p.dtmf_detect = false);
        ch.handle_rtp(&rtp(100, 0, 1, 8, &[0xD5; 160]), remote());
        ch.handle_rtp(&rtp(101, 160, 1, 8, &[0xD5; 160]), remote());
        ch.handle_rtp(&rtp(7, 99_999, 2, 8, &[0xD5; 160]), remote());
        ch.handle_rtp(&rtp(8, 100_159, 2, 8, &[0xD5; 160]), remote());
        let ev = events(&mut ch);
        assert_eq!(
            ev[1],
            Event::SsrcChanged {
                ch: id(),
                old: 1,
                new: 2
            }
        );
        assert_eq!(ch.counters().ssrc_changes, 1);
        assert_eq!(ch.counters().seq_rejected, 0, "new source, new sequence");
        assert_eq!(ch.counters().packets_received, 4);
        ch.command(Command::Disconnect { ch: id() });
        let ev = events(&mut ch);
        let Event::CallSummary { summary, .. } = ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(summary.ssrc_changes, 1);
        assert_eq!(summary.packets_expected, 2, "counted from the new source");
    }

    #[test]
    fn every_kind_of_bad_datagram_is_counted_never_a_panic() {
        let mut ch = channel(0);
        ch.handle_rtp(&rtp(1, 0, 1, 8, &[1]), remote());
        assert_eq!(ch.counters().rtp_while_idle, 1);
        connect(&mut ch, |p| {
            p.dtmf_detect = false;
            p.telephone_event_pt = Some(PayloadType(101));
        });
        let other: SocketAddr = "192.0.2.8:40002".parse().unwrap();
        let good = rtp(1, 0, 1, 8, &[0xD5; 160]);
        let cases: Vec<(Vec<u8>, RtpError)> = vec![
            (vec![0x80, 8, 0], RtpError::TooShort),
            (
                vec![0x40, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::BadVersion,
            ),
            (
                vec![0x83, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::HeadersTruncated,
            ),
            (
                vec![0xA0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                RtpError::BadPadding,
            ),
            (
                vec![0x81, 0xC9, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 1],
                RtpError::RtcpOnRtpPort,
            ),
            (rtp(1, 0, 1, 0, &[0xFF; 160]), RtpError::UnknownPayloadType),
            (rtp(1, 0, 1, 8, &[]), RtpError::EmptyPayload),
            (rtp(1, 0, 1, 8, &[0xD5; 321]), RtpError::TooLong),
        ];
        for (bytes, kind) in &cases {
            ch.handle_rtp(bytes, remote());
            assert_eq!(ch.counters().rtp_errors.get(*kind), 1, "{kind:?}");
        }
        ch.handle_rtp(&good, remote());
        ch.handle_rtp(&good, other);
        assert_eq!(ch.counters().rtp_errors.get(RtpError::WrongSource), 1);
        assert_eq!(ch.counters().rtp_errors.total(), cases.len() as u64 + 1);
        assert_eq!(ch.counters().packets_received, 1);
        // Telephone-event and CN packets are accepted, not audio.
        ch.handle_rtp(&rtp(2, 160, 1, 101, &[1, 0x8A, 0, 160]), remote());
        ch.handle_rtp(&rtp(3, 320, 1, 13, &[40]), remote());
        assert_eq!(ch.counters().telephone_event_packets, 1);
        assert_eq!(ch.counters().comfort_noise_packets, 1);
        assert_eq!(ch.counters().rtp_errors.total(), cases.len() as u64 + 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(dgrams in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..400), 1..20)) {
            let mut ch = channel(0);
            connect(&mut ch, |p| p.telephone_event_pt = Some(PayloadType(101)));
            for d in &dgrams {
                ch.handle_rtp(d, remote());
                let mut tx = [0; TICK_SAMPLES];
                ch.tick(&[0xD5; TICK_SAMPLES], &mut tx);
            }
        }
    }

    #[test]
    fn rtp_timeout_is_reported_once_and_rearmed_by_rtp() {
        let mut ch = channel(0);
        connect(&mut ch, |p| {
            p.rtp_timeout_ms = 100;
            p.dtmf_detect = false;
        });
        run(&mut ch, 100 - TICK_MS, |_| 0xD5);
        assert!(events(&mut ch).is_empty());
        run(&mut ch, TICK_MS, |_| 0xD5);
        assert_eq!(
            events(&mut ch),
            [Event::RtpTimeout {
                ch: id(),
                silent_ms: 100
            }]
        );
        run(&mut ch, 300, |_| 0xD5);
        assert!(events(&mut ch).is_empty(), "once");
        ch.handle_rtp(&rtp(1, 0, 1, 8, &[0xD5; 160]), remote());
        run(&mut ch, 100, |_| 0xD5);
        let ev = events(&mut ch);
        assert!(
            matches!(
                ev[..],
                [
                    Event::FirstRtp { .. },
                    Event::RtpTimeout { silent_ms: 100, .. }
                ]
            ),
            "{ev:?}"
        );
        assert_eq!(ch.counters().rtp_timeouts, 2);
    }

    /// A-law of a DTMF digit (Q.23 levels) for samples in `[on, off)`, a
    /// quiet 300 Hz tone elsewhere (stands for speech).
    fn dtmf_line(digit: u8, on: u64, off: u64) -> impl FnMut(u64) -> u8 {
        let mut g = ToneGenerator::new(ToneSpec::dtmf(digit).unwrap());
        move |t| {
            let mut x = [0i16; 1];
            g.fill(&mut x);
            if (on..off).contains(&t) {
                g711::linear_to_alaw(x[0])
            } else {
                let v = 300.0 * (t as f32 * 300.0 / 8000.0 * std::f32::consts::TAU).sin();
                g711::linear_to_alaw(v as i16)
            }
        }
    }

    /// Voice packets laid out by timestamp from the first one (held packets
    /// leave their span as `None`), and the telephone-event packets.
    #[allow(clippy::type_complexity)]
    fn split_stream(pkts: &[(RtpRepr, Vec<u8>)]) -> (Vec<Option<u8>>, Vec<(RtpRepr, Vec<u8>)>) {
        let ts0 = pkts[0].0.timestamp;
        let mut voice = Vec::new();
        let mut events = Vec::new();
        for (r, payload) in pkts {
            if r.payload_type == PayloadType(101) {
                events.push((*r, payload.clone()));
                continue;
            }
            let at = r.timestamp.wrapping_sub(ts0) as usize;
            if voice.len() < at {
                voice.resize(at, None);
            }
            voice.extend(payload.iter().map(|&o| Some(o)));
        }
        (voice, events)
    }

    #[test]
    fn detected_digit_is_cut_from_the_voice_stream() {
        let mut ch = channel(DEFAULT_DTMF_DELAY_MS);
        connect(&mut ch, |p| p.telephone_event_pt = Some(PayloadType(101)));
        let (on, off) = (4000u64, 4000 + 8 * 80);
        let (pkts, _) = run(&mut ch, 1000, dtmf_line(b'7', on, off));
        let (voice, _) = split_stream(&pkts);
        let ev = events(&mut ch);
        assert_eq!(
            ev[0],
            Event::DtmfStart {
                ch: id(),
                digit: b'7'
            }
        );
        assert!(
            matches!(
                ev[1],
                Event::DtmfEnd {
                    digit: b'7',
                    duration_ms: 76..=84,
                    ..
                }
            ),
            "{ev:?}"
        );
        let stream: Vec<u8> = voice.iter().map(|o| o.unwrap_or(g711::ALAW_IDLE)).collect();
        // The stream starts at sample 0 (no packet lost to the delay line).
        assert!(stream.len() >= off as usize + 400);
        let digit_octets = (on..off)
            .filter(|&t| stream[t as usize] != g711::ALAW_IDLE)
            .count();
        assert_eq!(digit_octets, 0, "every octet of the digit suppressed");
        assert_eq!(ch.counters().dtmf_leaked_samples, 0);
        // The voice before and after it goes through (bar the muted pause).
        assert_eq!(
            stream[..on as usize - 16],
            (0..on - 16)
                .map(dtmf_line(b'7', on, off))
                .collect::<Vec<_>>()[..]
        );
        let after = (off + 8 * 60) as usize;
        assert!(
            stream[after..after + 160]
                .iter()
                .any(|&o| o != g711::ALAW_IDLE)
        );
    }

    #[test]
    fn without_delay_the_leaked_part_is_counted() {
        let mut ch = channel(0);
        connect(&mut ch, |p| p.telephone_event_pt = Some(PayloadType(101)));
        run(&mut ch, 1000, dtmf_line(b'#', 4000, 4800));
        let leaked = ch.counters().dtmf_leaked_samples;
        assert!((160..=480).contains(&leaked), "{leaked}");
    }

    #[test]
    fn commanded_digits_and_tones_play_into_the_timeslot() {
        let mut ch = channel(0);
        ch.command(Command::SendDigits {
            ch: id(),
            digits: DigitString::new(b"19#", 80, 80).unwrap(),
        });
        let (_, played) = run(&mut ch, 600, |_| 0xD5);
        let mut det = DtmfDetector::new();
        let lin: Vec<i16> = played.iter().map(|&a| g711::alaw_to_linear(a)).collect();
        det.handle_samples(&lin);
        let got: Vec<u8> = std::iter::from_fn(|| det.poll_event())
            .filter_map(|e| match e {
                DtmfEvent::DigitStart { digit, .. } => Some(digit),
                _ => None,
            })
            .collect();
        assert_eq!(got, b"19#");
        assert!(
            played[8 * 500..].iter().all(|&o| o == g711::ALAW_IDLE),
            "idle after"
        );

        ch.command(Command::PlayTone {
            ch: id(),
            tone: ToneSpec::UK_BUSY,
        });
        let (_, played) = run(&mut ch, 100, |_| 0xD5);
        assert!(played.iter().filter(|&&o| o != g711::ALAW_IDLE).count() > 600);
        ch.command(Command::StopTone { ch: id() });
        let (_, played) = run(&mut ch, 10, |_| 0xD5);
        assert!(played.iter().all(|&o| o == g711::ALAW_IDLE));
    }

    #[test]
    fn bad_commands_are_rejected_with_a_reason() {
        let mut ch = channel(0);
        ch.command(Command::Disconnect { ch: id() });
        let mut p = ConnectParams::new(remote(), Codec::Pcma);
        p.ptime_ms = 25;
        ch.command(Command::Connect {
            ch: id(),
            params: p,
        });
        let too_many = DigitString::new(b"0123456789", 40, 40).unwrap();
        ch.command(Command::SendDigits {
            ch: id(),
            digits: too_many,
        });
        ch.command(Command::SendDigits {
            ch: id(),
            digits: too_many,
        });
        let reasons: Vec<RejectReason> = events(&mut ch)
            .into_iter()
            .map(|e| match e {
                Event::CommandRejected { reason, .. } => reason,
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                RejectReason::NotConnected,
                RejectReason::BadPtime,
                RejectReason::DigitQueueFull
            ]
        );
        assert!(!ch.is_connected());
    }
}
#[cfg(test)]
mod layout {
    use super::*;
    use std::mem::{align_of, offset_of};

    /// The per-tick fields sit where the prefetches expect them: line 0 of
    /// the (line-aligned) channel, and the session's first
    /// `SESSION_TICK_BYTES` from line 1.
    #[test]
    fn per_tick_fields_sit_in_the_prefetched_lines() {
        assert_eq!(align_of::<Channel>(), 64);
        for off in [
            offset_of!(Channel, now),
            offset_of!(Channel, delay),
            offset_of!(Channel, delay_mask),
            offset_of!(Channel, delay_samples),
            offset_of!(Channel, packet_len),
            offset_of!(Channel, rtcp_len),
            offset_of!(Channel, plc_live),
            offset_of!(Channel, tone_on),
            offset_of!(Channel, digits_on),
            offset_of!(Channel, ev_head),
            offset_of!(Channel, ev_len),
        ] {
            assert!(off < 64, "{off}");
        }
        assert_eq!(offset_of!(Channel, session), 64);
        for off in [
            offset_of!(Session, ptime_samples),
            offset_of!(Session, pkt_start),
            offset_of!(Session, last_valid_rx),
            offset_of!(Session, te_from),
            offset_of!(Session, rtcp_due),
            offset_of!(Session, rtp_timeout_samples),
            offset_of!(Session, te_tx_active),
            offset_of!(Session, te_rx_active),
            offset_of!(Session, timed_out),
            offset_of!(Session, dtmf_detect),
            offset_of!(Session, mute_from),
            offset_of!(Session, mute_to) + 15,
            offset_of!(Session, det_base),
        ] {
            assert!(off < SESSION_TICK_BYTES, "{off}");
        }
    }
}
