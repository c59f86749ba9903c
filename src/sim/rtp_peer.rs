//! One simulated call's RTP endpoint (the media half of `tdmgw sim core`).
//!
//! # Contract
//!
//! - [`RtpPeer::start`] takes a bound tokio UDP socket (its port is the one
//!   in our SDP), a [`PeerConfig`] and the remote address from the peer's
//!   SDP if known, and spawns one task. [`RtpPeer::set_remote`] changes the
//!   destination (a later SDP); [`RtpPeer::stop`] ends the task and returns
//!   the [`RtpStats`]. Dropping the peer stops the task too.
//! - Send side ([`MediaMode`]): `Echo` sends back every received packet
//!   re-stamped as our own source (our SSRC and sequence numbers, our
//!   timestamp base plus the received timestamp's offset from the first one,
//!   marker and payload type kept: RFC 3550 §5.1, a translator-like
//!   re-origination rather than a reflector); `Tone` sends a sine of the
//!   given frequency; `Pattern` sends a pseudo-random byte stream with an
//!   8-octet sequence marker per packet that the receiver finds at any
//!   offset (so that re-packetisation by a gateway does not hide it), and
//!   times the round trip of markers that come back. Generated streams are
//!   paced at `ptime` from a tick counter (timestamp = ticks × samples per
//!   packet), with RFC 4733 telephone-events for `dtmf` digits on the same
//!   SSRC and sequence space (voice held while an event is sent, §2.5.1.2).
//! - Receive side, whatever the mode: RFC 3550 A.1 sequence state (packets,
//!   expected, lost, gaps, reordered/duplicates, SSRC changes), A.8 jitter,
//!   RFC 4733 digits seen, tone presence (Goertzel) and markers found.
//!
//! Marker and tone checks need a bit-transparent path for `Pattern`
//! (the same G.711 law end to end: A-law through tdmgw's E1 is
//! transparent, A-law ⇄ µ-law transcoding is not); the tone survives any
//! G.711 path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::line::g711;
use crate::media::dtmf::DtmfEvent;
use crate::media::rfc4733::{EventReceiver, EventSender, EventSenderConfig};
use crate::media::rtp::{PayloadType, RtpPacket, RtpRepr};
use crate::media::seq::{Jitter, SeqVerdict, SourceSeq, seq_diff};
use crate::media::tone::{CadenceStep, ToneGenerator, ToneSpec};

/// What a simulated endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum MediaMode {
    /// Send back what is received, re-stamped as our own source.
    Echo,
    /// A continuous sine at `hz` (-10 dBm0).
    Tone { hz: f32 },
    /// Pseudo-random octets with sequence markers.
    Pattern,
}

/// One peer's settings, from the negotiated SDP.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub mode: MediaMode,
    /// The audio payload type negotiated (0 PCMU or 8 PCMA).
    pub payload_type: u8,
    /// The telephone-event payload type negotiated, if any.
    pub event_payload_type: Option<u8>,
    pub ptime_ms: u32,
    /// DTMF digits (ASCII `0-9*#A-D`) to send as RFC 4733 events.
    pub dtmf: String,
    /// When the first digit starts, after the peer starts.
    pub dtmf_start: Duration,
    /// Tone and pause of each digit (Q.24: at least 40 ms each).
    pub dtmf_on: Duration,
    pub dtmf_off: Duration,
    /// Our SSRC and the random bases of sequence number and timestamp
    /// (RFC 3550 §5.1: random initial values).
    pub ssrc: u32,
    pub seq_base: u16,
    pub ts_base: u32,
}

/// What one peer saw and sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RtpStats {
    pub packets_sent: u64,
    /// Valid RTP packets received (all payload types).
    pub packets_received: u64,
    /// RFC 3550 A.3 expected and cumulative lost, over the last source.
    pub packets_expected: u64,
    pub packets_lost: i64,
    pub loss_percent: f64,
    /// Forward sequence jumps of more than one (each a loss burst).
    pub sequence_gaps: u64,
    /// Packets at or behind the highest sequence number (reordered or duplicated).
    pub reordered_or_duplicate: u64,
    /// Datagrams that are not valid RTP (counted, dropped).
    pub malformed: u64,
    pub ssrc_changes: u64,
    /// RFC 3550 A.8 interarrival jitter at the end, in ms.
    pub jitter_ms: f64,
    pub telephone_event_packets: u64,
    /// Digits seen in RFC 4733 events, in order.
    pub dtmf_received: String,
    pub dtmf_sent: String,
    /// Audio packets whose payload carries our tone (Tone mode).
    pub tone_packets: u64,
    pub audio_packets_received: u64,
    /// Pattern mode: markers sent, found in what came back, and their round trip.
    pub markers_sent: u64,
    pub markers_received: u64,
    pub rtt_ms_min: Option<f64>,
    pub rtt_ms_avg: Option<f64>,
    pub rtt_ms_max: Option<f64>,
}

enum Cmd {
    Remote(SocketAddr),
    Stop,
}

/// A running peer; see the module doc.
pub struct RtpPeer {
    cmd: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<RtpStats>,
    local: SocketAddr,
}

impl RtpPeer {
    /// Start serving `socket` (already bound; its port is in our SDP).
    pub fn start(socket: UdpSocket, config: PeerConfig, remote: Option<SocketAddr>) -> RtpPeer {
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (cmd, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(Arc::new(socket), config, remote, rx));
        RtpPeer { cmd, task, local }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send to `remote` from now on (a new SDP).
    pub fn set_remote(&self, remote: SocketAddr) {
        let _ = self.cmd.send(Cmd::Remote(remote));
    }

    /// Stop sending and receiving; the statistics.
    pub async fn stop(self) -> RtpStats {
        let _ = self.cmd.send(Cmd::Stop);
        self.task.await.unwrap_or_default()
    }
}

/// The 4 sync octets of a marker, then the counter and its complement
/// (big-endian u16 each).
const SYNC: [u8; 4] = [0xA5, 0x5A, 0xC3, 0x3C];
const MARKER_LEN: usize = 8;
/// Send times kept for round-trip measurement (20 s at 20 ms).
const SENT_RING: usize = 1024;

/// The send side's state.
struct Sender {
    cfg: PeerConfig,
    samples_per_packet: u32,
    seq: u16,
    tick: u64,
    tone: ToneGenerator,
    events: EventSender,
    /// (digit index, sample at which the next digit action is due, started?)
    dtmf_next: usize,
    dtmf_due: u64,
    dtmf_open: Option<u64>,
    prng: u64,
    sent_at: Vec<Option<(u16, Instant)>>,
    /// Echo: the first received timestamp, mapped onto `ts_base`.
    echo_ts_origin: Option<u32>,
}

impl Sender {
    fn new(cfg: PeerConfig) -> Sender {
        let samples_per_packet = cfg.ptime_ms.clamp(10, 60) * 8;
        let hz = match cfg.mode {
            MediaMode::Tone { hz } => hz,
            _ => 0.0,
        };
        let off = CadenceStep::off_ms(0);
        let tone = ToneGenerator::new(ToneSpec {
            freqs_hz: [hz, 0.0],
            levels_dbm0: [-10.0, -10.0],
            cadence: [off; 4],
            n_steps: 0,
        });
        let events = EventSender::new(
            EventSenderConfig {
                interval_samples: samples_per_packet,
                ..EventSenderConfig::default()
            },
            cfg.ts_base,
        );
        let dtmf_due = duration_samples(cfg.dtmf_start);
        Sender {
            seq: cfg.seq_base,
            prng: u64::from(cfg.ssrc) | 1 << 40,
            cfg,
            samples_per_packet,
            tick: 0,
            tone,
            events,
            dtmf_next: 0,
            dtmf_due,
            dtmf_open: None,
            sent_at: vec![None; SENT_RING],
            echo_ts_origin: None,
        }
    }

    fn next_seq(&mut self) -> u16 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Starts and ends DTMF digits on their schedule.
    fn run_dtmf(&mut self, now: u64) {
        if self.cfg.event_payload_type.is_none() || now < self.dtmf_due {
            return;
        }
        let on = duration_samples(self.cfg.dtmf_on).max(320);
        let off = duration_samples(self.cfg.dtmf_off).max(320);
        if let Some(started) = self.dtmf_open.take() {
            self.events.end(now, now - started);
            self.dtmf_due = now + off;
        } else if let Some(&d) = self.cfg.dtmf.as_bytes().get(self.dtmf_next) {
            self.dtmf_next += 1;
            if self.events.start(now, d, now) {
                self.dtmf_open = Some(now);
                self.dtmf_due = now + on;
            }
        }
    }

    /// The packet of this tick, if any, into `buf`; its length.
    fn tick(&mut self, buf: &mut [u8], now_instant: Instant) -> Option<usize> {
        let now = self.tick * u64::from(self.samples_per_packet);
        self.tick += 1;
        self.run_dtmf(now);
        if let Some(ev) = self.events.poll_packet(now) {
            let pt = self.cfg.event_payload_type?;
            let repr = RtpRepr {
                marker: ev.marker,
                payload_type: PayloadType(pt),
                sequence_number: self.next_seq(),
                timestamp: ev.timestamp,
                ssrc: self.cfg.ssrc,
            };
            return repr.emit(&ev.payload, buf);
        }
        if self.events.is_active() {
            return None;
        }
        let n = self.samples_per_packet as usize;
        let mut payload = [0u8; 480];
        let payload = &mut payload[..n];
        match self.cfg.mode {
            MediaMode::Echo => return None,
            MediaMode::Tone { .. } => {
                let mut lin = [0i16; 480];
                self.tone.fill(&mut lin[..n]);
                encode(self.cfg.payload_type, &lin[..n], payload);
            }
            MediaMode::Pattern => {
                let counter = (self.tick - 1) as u16;
                self.fill_pattern(counter, payload);
                self.sent_at[usize::from(counter) % SENT_RING] = Some((counter, now_instant));
            }
        }
        let repr = RtpRepr {
            marker: self.tick == 1,
            payload_type: PayloadType(self.cfg.payload_type),
            sequence_number: self.next_seq(),
            timestamp: self.cfg.ts_base.wrapping_add(now as u32),
            ssrc: self.cfg.ssrc,
        };
        repr.emit(payload, buf)
    }

    /// Marker at the start, xorshift filler after it (0x7F avoided: the
    /// µ-law negative zero is not kept by a decode/encode round).
    fn fill_pattern(&mut self, counter: u16, out: &mut [u8]) {
        let mut marker = [0u8; MARKER_LEN];
        marker[..4].copy_from_slice(&SYNC);
        marker[4..6].copy_from_slice(&counter.to_be_bytes());
        marker[6..8].copy_from_slice(&(!counter).to_be_bytes());
        for (i, o) in out.iter_mut().enumerate() {
            *o = if let Some(m) = marker.get(i) {
                *m
            } else {
                self.prng ^= self.prng << 13;
                self.prng ^= self.prng >> 7;
                self.prng ^= self.prng << 17;
                match self.prng as u8 {
                    0x7F => 0x7E,
                    b => b,
                }
            };
        }
    }

    /// Echo mode: `pkt` re-stamped as ours. The far end's telephone-events
    /// are echoed too (its DTMF comes back), except when we send digits of
    /// our own: our source carries one event stream whose events follow one
    /// another (RFC 4733 §2.5.1), and the far end's events spliced in with
    /// new timestamps would cut ours short and reach it as digits we never
    /// sent (a demo call-back heard "1256*" for our "456*": its own "12"
    /// echoed over our "4").
    fn echo(&mut self, pkt: &RtpPacket<'_>, buf: &mut [u8]) -> Option<usize> {
        if !self.cfg.dtmf.is_empty() && Some(pkt.repr.payload_type.0) == self.cfg.event_payload_type
        {
            return None;
        }
        let origin = *self.echo_ts_origin.get_or_insert(pkt.repr.timestamp);
        let repr = RtpRepr {
            marker: pkt.repr.marker,
            payload_type: pkt.repr.payload_type,
            sequence_number: self.next_seq(),
            timestamp: self
                .cfg
                .ts_base
                .wrapping_add(pkt.repr.timestamp.wrapping_sub(origin)),
            ssrc: self.cfg.ssrc,
        };
        repr.emit(pkt.payload, buf)
    }
}

fn duration_samples(d: Duration) -> u64 {
    (d.as_millis() as u64).saturating_mul(8)
}

fn encode(pt: u8, lin: &[i16], out: &mut [u8]) {
    if pt == PayloadType::PCMU.0 {
        g711::encode_ulaw(lin, out);
    } else {
        g711::encode_alaw(lin, out);
    }
}

fn decode(pt: u8, codes: &[u8], out: &mut [i16]) -> usize {
    if pt == PayloadType::PCMU.0 {
        g711::decode_ulaw(codes, out)
    } else {
        g711::decode_alaw(codes, out)
    }
}

/// The share of `x`'s energy at `hz` (Goertzel; 1.0 = a pure tone).
pub fn tone_share(x: &[i16], hz: f32) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let c = 2.0 * (std::f64::consts::TAU * f64::from(hz) / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &v in x {
        let v = f64::from(v);
        energy += v * v;
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    if energy <= 0.0 {
        return 0.0;
    }
    let n = x.len() as f64;
    let power = (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / n;
    (power / energy).min(1.0)
}

/// The receive side's state.
#[derive(Default)]
struct Receiver {
    stats: RtpStats,
    ssrc: Option<u32>,
    seq: Option<SourceSeq>,
    jitter: Jitter,
    events: EventReceiver,
    /// The last octets of the previous audio payload (a marker may straddle).
    carry: Vec<u8>,
    last_marker: Option<u16>,
    rtt_sum_ms: f64,
    rtt_count: u64,
}

impl Receiver {
    fn on_packet(&mut self, pkt: &RtpPacket<'_>, cfg: &PeerConfig, arrival: u64) {
        self.stats.packets_received += 1;
        let r = pkt.repr;
        if self.ssrc != Some(r.ssrc) {
            if self.ssrc.is_some() {
                self.stats.ssrc_changes += 1;
                self.events.reset();
                self.jitter.reset();
            }
            self.ssrc = Some(r.ssrc);
            self.seq = Some(SourceSeq::new(r.sequence_number, 1));
            self.carry.clear();
        }
        if let Some(s) = &mut self.seq {
            // Gaps and reordering against the highest sequence so far.
            let max = s.extended_max() as u16;
            if s.received() > 0 {
                match seq_diff(r.sequence_number, max) {
                    d if d > 1 => self.stats.sequence_gaps += 1,
                    d if d <= 0 => self.stats.reordered_or_duplicate += 1,
                    _ => {}
                }
            }
            if s.update(r.sequence_number, 1) == SeqVerdict::BadJump {
                self.stats.sequence_gaps += 1;
            }
        }
        if Some(r.payload_type.0) == cfg.event_payload_type {
            self.stats.telephone_event_packets += 1;
            let _ = self.events.handle_packet(arrival, r.timestamp, pkt.payload);
            self.drain_events();
            return;
        }
        self.stats.audio_packets_received += 1;
        self.jitter.update(arrival, r.timestamp);
        match cfg.mode {
            MediaMode::Tone { hz } => {
                let mut lin = [0i16; 1024];
                let n = decode(r.payload_type.0, pkt.payload, &mut lin);
                if tone_share(lin.get(..n).unwrap_or(&[]), hz) > 0.5 {
                    self.stats.tone_packets += 1;
                }
            }
            MediaMode::Pattern => {}
            MediaMode::Echo => {}
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.events.poll_event() {
            if let DtmfEvent::DigitStart { digit, .. } = e {
                self.stats.dtmf_received.push(char::from(digit));
            }
        }
    }

    /// Pattern mode: finds markers in `payload` (and across the previous
    /// payload's end) and times their round trip.
    fn scan_markers(&mut self, payload: &[u8], sender: &Sender, now: Instant) {
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(payload);
        let mut i = 0;
        while i + MARKER_LEN <= window.len() {
            let m = window.get(i..i + MARKER_LEN).unwrap_or(&[]);
            if m.get(..4) == Some(&SYNC[..]) {
                let c = u16::from_be_bytes([m[4], m[5]]);
                let inv = u16::from_be_bytes([m[6], m[7]]);
                if inv == !c && self.last_marker != Some(c) {
                    self.last_marker = Some(c);
                    self.stats.markers_received += 1;
                    self.time_marker(c, sender, now);
                    i += MARKER_LEN;
                    continue;
                }
            }
            i += 1;
        }
        let keep = window.len().saturating_sub(MARKER_LEN - 1);
        self.carry = window.split_off(keep);
    }

    fn time_marker(&mut self, c: u16, sender: &Sender, now: Instant) {
        let Some(Some((sent_c, at))) = sender.sent_at.get(usize::from(c) % SENT_RING) else {
            return;
        };
        if *sent_c != c {
            return;
        }
        let ms = now.saturating_duration_since(*at).as_secs_f64() * 1000.0;
        let s = &mut self.stats;
        s.rtt_ms_min = Some(s.rtt_ms_min.map_or(ms, |m| m.min(ms)));
        s.rtt_ms_max = Some(s.rtt_ms_max.map_or(ms, |m| m.max(ms)));
        self.rtt_sum_ms += ms;
        self.rtt_count += 1;
    }

    fn finish(mut self, sender: &Sender, sent: u64, markers_sent: u64) -> RtpStats {
        self.drain_events();
        let s = &mut self.stats;
        s.packets_sent = sent;
        s.markers_sent = markers_sent;
        let dtmf = &sender.cfg.dtmf;
        s.dtmf_sent = dtmf.get(..sender.dtmf_next).unwrap_or(dtmf).to_owned();
        if let Some(q) = &self.seq {
            s.packets_expected = q.expected();
            s.packets_lost = i64::from(q.cumulative_lost()).max(0);
            if s.packets_expected > 0 {
                s.loss_percent = s.packets_lost as f64 * 100.0 / s.packets_expected as f64;
            }
        }
        s.jitter_ms = f64::from(self.jitter.value()) / 8.0;
        if self.rtt_count > 0 {
            s.rtt_ms_avg = Some(self.rtt_sum_ms / self.rtt_count as f64);
        }
        self.stats
    }
}

async fn run(
    socket: Arc<UdpSocket>,
    cfg: PeerConfig,
    mut remote: Option<SocketAddr>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) -> RtpStats {
    let start = Instant::now();
    let mut tx = Sender::new(cfg.clone());
    let mut rx = Receiver::default();
    let mut sent = 0u64;
    let mut markers_sent = 0u64;
    let mut ticker =
        tokio::time::interval(Duration::from_millis(u64::from(tx.samples_per_packet / 8)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut out = [0u8; 1500];
    let mut inbuf = [0u8; 2048];
    let sample_clock = |now: Instant| (now.duration_since(start).as_micros() as u64) * 8 / 1000;
    loop {
        tokio::select! {
            c = cmds.recv() => match c {
                Some(Cmd::Remote(a)) => remote = Some(a),
                Some(Cmd::Stop) | None => break,
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                rx.events.handle_timeout(sample_clock(now));
                rx.drain_events();
                let Some(dest) = remote else { continue };
                let was_pattern = cfg.mode == MediaMode::Pattern && !tx.events.is_active();
                if let Some(n) = tx.tick(&mut out, now) {
                    let pt = out.get(1).map(|b| b & 0x7F);
                    if socket.send_to(out.get(..n).unwrap_or(&[]), dest).await.is_ok() {
                        sent += 1;
                        if was_pattern && pt == Some(cfg.payload_type) {
                            markers_sent += 1;
                        }
                    }
                }
            }
            r = socket.recv_from(&mut inbuf) => {
                let Ok((n, from)) = r else { continue };
                let now = Instant::now();
                let Ok(pkt) = RtpPacket::parse(inbuf.get(..n).unwrap_or(&[])) else {
                    rx.stats.malformed += 1;
                    continue;
                };
                rx.on_packet(&pkt, &cfg, sample_clock(now));
                if cfg.mode == MediaMode::Pattern && Some(pkt.repr.payload_type.0) != cfg.event_payload_type {
                    rx.scan_markers(pkt.payload, &tx, now);
                }
                if cfg.mode == MediaMode::Echo {
                    // Symmetric RTP (RFC 4961) when the SDP gave no address.
                    let dest = remote.unwrap_or(from);
                    if let Some(len) = tx.echo(&pkt, &mut out)
                        && socket.send_to(out.get(..len).unwrap_or(&[]), dest).await.is_ok()
                    {
                        sent += 1;
                    }
                }
            }
        }
    }
    rx.finish(&tx, sent, markers_sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: MediaMode) -> PeerConfig {
        PeerConfig {
            mode,
            payload_type: 8,
            event_payload_type: Some(101),
            ptime_ms: 20,
            dtmf: String::new(),
            dtmf_start: Duration::from_millis(100),
            dtmf_on: Duration::from_millis(80),
            dtmf_off: Duration::from_millis(80),
            ssrc: 0x1234_5678,
            seq_base: 65530,
            ts_base: 0xFFFF_FF00,
        }
    }

    #[test]
    fn markers_are_found_at_any_offset_and_across_packets() {
        let mut tx = Sender::new(cfg(MediaMode::Pattern));
        let mut stream = Vec::new();
        for c in 0..5u16 {
            let mut p = [0u8; 160];
            tx.fill_pattern(c, &mut p);
            stream.extend_from_slice(&p);
        }
        // Re-cut at 37 octets from the start, in chunks of 111 (a gateway
        // re-packetising on its own clock).
        let mut rx = Receiver::default();
        let now = Instant::now();
        for chunk in stream[37..].chunks(111) {
            rx.scan_markers(chunk, &tx, now);
        }
        // Marker 0 was cut off; 1..4 found once each.
        assert_eq!(rx.stats.markers_received, 4);
        assert!(!stream.contains(&0x7F));
    }

    #[test]
    fn tone_share_tells_tone_from_pattern() {
        let mut tx = Sender::new(cfg(MediaMode::Tone { hz: 1004.0 }));
        let mut lin = [0i16; 160];
        tx.tone.fill(&mut lin);
        assert!(tone_share(&lin, 1004.0) > 0.8);
        assert!(tone_share(&lin, 400.0) < 0.1);
        let mut p = [0u8; 160];
        tx.fill_pattern(0, &mut p);
        let mut lin2 = [0i16; 160];
        decode(8, &p, &mut lin2);
        assert!(tone_share(&lin2, 1004.0) < 0.2);
        assert_eq!(tone_share(&[], 1004.0), 0.0);
    }

    #[test]
    fn generated_stream_carries_dtmf_on_the_same_ssrc_and_sequence() {
        let mut c = cfg(MediaMode::Tone { hz: 1004.0 });
        c.dtmf = "9#".into();
        let mut tx = Sender::new(c);
        let mut buf = [0u8; 1500];
        let now = Instant::now();
        let mut seqs = Vec::new();
        let mut rx = Receiver::default();
        let rcfg = cfg(MediaMode::Echo);
        for i in 0..60u64 {
            if let Some(n) = tx.tick(&mut buf, now) {
                let p = RtpPacket::parse(&buf[..n]).unwrap();
                assert_eq!(p.repr.ssrc, 0x1234_5678);
                seqs.push(p.repr.sequence_number);
                rx.on_packet(&p, &rcfg, i * 160);
            }
        }
        // Sequence numbers are consecutive across the wrap and the events.
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        assert_eq!(rx.stats.dtmf_received, "9#");
        assert!(rx.stats.telephone_event_packets >= 8);
        let s = rx.finish(&tx, seqs.len() as u64, 0);
        assert_eq!(s.dtmf_sent, "9#");
        assert_eq!(s.packets_lost, 0);
        assert_eq!(s.sequence_gaps, 0);
    }

    proptest::proptest! {
        /// Peer input never panics: any datagram, in any mode.
        #[test]
        fn any_datagram_is_taken_without_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            arrival in 0u64..1_000_000,
        ) {
            let tx = Sender::new(cfg(MediaMode::Pattern));
            for mode in [MediaMode::Pattern, MediaMode::Tone { hz: 1004.0 }, MediaMode::Echo] {
                let mut rx = Receiver::default();
                if let Ok(p) = RtpPacket::parse(&data) {
                    rx.on_packet(&p, &cfg(mode), arrival);
                    rx.scan_markers(p.payload, &tx, Instant::now());
                }
                rx.scan_markers(&data, &tx, Instant::now());
            }
        }
    }

    #[test]
    fn losses_and_gaps_are_counted() {
        let mut tx = Sender::new(cfg(MediaMode::Pattern));
        let mut rx = Receiver::default();
        let rcfg = cfg(MediaMode::Pattern);
        let mut buf = [0u8; 1500];
        let now = Instant::now();
        for i in 0..20u64 {
            let n = tx.tick(&mut buf, now).unwrap();
            if i == 5 || i == 6 || i == 12 {
                continue;
            }
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            rx.on_packet(&p, &rcfg, i * 160);
        }
        let s = rx.finish(&tx, 20, 20);
        assert_eq!(s.packets_lost, 3);
        assert_eq!(s.sequence_gaps, 2);
        assert_eq!(s.packets_expected, 20);
    }

    /// A telephone-event packet of `digit` (RFC 4733 §2.3), start of event.
    fn event_packet(digit: u8, ts: u32, buf: &mut [u8]) -> usize {
        let code = match digit {
            b'*' => 10,
            b'#' => 11,
            d => d - b'0',
        };
        let payload = [code, 10, 0, 160];
        let repr = RtpRepr {
            marker: true,
            payload_type: PayloadType(101),
            sequence_number: 7,
            timestamp: ts,
            ssrc: 0xABCD,
        };
        repr.emit(&payload, buf).unwrap()
    }

    #[test]
    fn echo_sends_back_the_far_ends_events_only_when_it_sends_none_of_its_own() {
        let mut inbuf = [0u8; 64];
        let n = event_packet(b'1', 8000, &mut inbuf);
        let event = RtpPacket::parse(&inbuf[..n]).unwrap();
        let audio_repr = RtpRepr {
            marker: false,
            payload_type: PayloadType(8),
            sequence_number: 8,
            timestamp: 8160,
            ssrc: 0xABCD,
        };
        let mut abuf = [0u8; 200];
        let an = audio_repr.emit(&[0xD5; 160], &mut abuf).unwrap();
        let audio = RtpPacket::parse(&abuf[..an]).unwrap();
        let mut out = [0u8; 1500];

        // No digits of our own: the far end's DTMF comes back.
        let mut plain = Sender::new(cfg(MediaMode::Echo));
        let m = plain.echo(&event, &mut out).expect("event echoed");
        let back = RtpPacket::parse(&out[..m]).unwrap();
        assert_eq!(back.repr.payload_type.0, 101);
        assert_eq!(back.repr.ssrc, 0x1234_5678);

        // Our own digits going out: the far end's events are not spliced
        // into our event stream; its audio still comes back.
        let mut c = cfg(MediaMode::Echo);
        c.dtmf = "456*".into();
        let mut own = Sender::new(c.clone());
        assert_eq!(own.echo(&event, &mut out), None);
        assert!(own.echo(&audio, &mut out).is_some());

        // What the far end hears from us is our digits, in order, even with
        // its own digits arriving all along.
        let mut rx = Receiver::default();
        let now = Instant::now();
        let far = [b'1', b'2', b'3', b'#'];
        for i in 0..200u64 {
            let mut sent = Vec::new();
            if let Some(k) = own.tick(&mut out, now) {
                sent.push(out[..k].to_vec());
            }
            let k = event_packet(
                far[(i / 20) as usize % 4],
                8000 + (i / 20) as u32 * 1600,
                &mut inbuf,
            );
            if let Some(k) = own.echo(&RtpPacket::parse(&inbuf[..k]).unwrap(), &mut out) {
                sent.push(out[..k].to_vec());
            }
            for p in sent {
                rx.on_packet(&RtpPacket::parse(&p).unwrap(), &c, i * 160);
            }
        }
        rx.drain_events();
        assert_eq!(rx.stats.dtmf_received, "456*");
    }
}
