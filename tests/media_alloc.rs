//! The media plane's promise (DESIGN.md §1, issue 5): after start-up the
//! media thread never allocates. A counting global allocator counts every
//! allocation and free made on this thread while the flag is up; the flag is
//! up exactly while the engine's loop turns (mio poll, RTP sockets, E1
//! frames, commands), and down while the test plays the control plane and
//! the far end.
//!
//! 2 spans (60 channels), 10 simulated seconds (80,000 E1 frames per span),
//! ~180 calls connecting and disconnecting, PCMA and PCMU at 10..40 ms,
//! audio both ways through real loopback UDP sockets, loss / reordering /
//! duplicates injected by the far end, in-band DTMF detected and sent as
//! RFC 4733 telephone-events, telephone-events from the far end
//! regenerated into the timeslots, DTMF digits and tones played into the
//! timeslots, RTCP reports both ways (and malformed ones), BYE at every
//! disconnect, SSRC changes, remote updates and RTP timeouts.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tdmgw::line::g711;
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams, DigitString, Event};
use tdmgw::media::dtmf::{DtmfDetector, DtmfEvent};
use tdmgw::media::engine::{EngineParams, MediaLoop, SpanParams};
use tdmgw::media::rfc4733::TelephoneEvent;
use tdmgw::media::rtcp::compound::{Compound, CompoundWriter, RtcpPacket};
use tdmgw::media::rtcp::rr::ReportBlock;
use tdmgw::media::rtcp::sr::SenderInfo;
use tdmgw::media::rtp::{PayloadType, RtpPacket, RtpRepr};
use tdmgw::media::tdm::{E1Frame, FrameSource, SimE1};
use tdmgw::media::tone::{ToneGenerator, ToneSpec};

mod common;
use common::counting_alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CHANNELS: usize = 60;
const SECONDS: u64 = 10;
const CALL_EVERY_MS: u64 = 3000;
const CALL_MS: u64 = 2500;
const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

/// The call plan of channel `c`: call `k` starts at `start(c, k)`.
fn start(c: usize, k: u64) -> u64 {
    50 + (c as u64 * 53) % 500 + k * CALL_EVERY_MS
}

/// Where channel `c` is in its calls at `ms`: (call number, ms into it).
fn in_call(c: usize, ms: u64) -> Option<(u64, u64)> {
    let first = start(c, 0);
    if ms < first {
        return None;
    }
    let k = (ms - first) / CALL_EVERY_MS;
    let off = ms - start(c, k);
    (off < CALL_MS).then_some((k, off))
}

fn ptime(c: usize, k: u64) -> u8 {
    [20, 20, 10, 30, 40][(c + k as usize) % 5]
}

fn codec(c: usize, k: u64) -> Codec {
    if (c + k as usize).is_multiple_of(7) {
        Codec::Pcmu
    } else {
        Codec::Pcma
    }
}

fn inband_digit(c: usize, k: u64) -> u8 {
    DIGITS[(c + k as usize) % 16]
}

const TE: PayloadType = PayloadType(101);

/// Calls with RFC 4733 negotiated (the others keep DTMF in-band).
fn telephone_events(c: usize, k: u64) -> bool {
    !(c + k as usize).is_multiple_of(5)
}

/// The far end sends digit `9` as telephone-events 2000..2100 ms into the
/// call (on the channels whose E1 side listens for digits).
fn sends_rfc4733(c: usize, k: u64) -> bool {
    sends_digits(c) && telephone_events(c, k) && c % 15 != 7
}

/// The E1 side: a quiet tone per timeslot, an in-band DTMF digit 1000 ms
/// into each call; the frames sent back are run through a DTMF detector on
/// the channels the control plane sends digits to. Runs on the media
/// thread, so it must not allocate either.
struct Line {
    voice: Vec<ToneGenerator>,
    digit: Vec<Option<ToneGenerator>>,
    tx_detectors: Vec<DtmfDetector>,
    tx_digits: Vec<u32>,
    /// Digits `9` (regenerated from telephone-events) heard.
    tx_regenerated: Vec<u32>,
}

fn channel_of(span: usize, ts: usize) -> Option<usize> {
    let i = match ts {
        1..=15 => ts - 1,
        17..=31 => ts - 2,
        _ => return None,
    };
    Some(span * 30 + i)
}

fn sends_digits(c: usize) -> bool {
    c.is_multiple_of(4)
}

impl FrameSource for Line {
    fn rx_frame(&mut self, span: usize, frame_no: u64, rx: &mut E1Frame) {
        let ms = frame_no / 8;
        for (ts, o) in rx.iter_mut().enumerate() {
            let Some(c) = channel_of(span, ts) else {
                *o = 0xD5;
                continue;
            };
            let mut x = [0i16; 1];
            match in_call(c, ms) {
                Some((k, 1000..1100)) => {
                    let g = self.digit[c].get_or_insert_with(|| {
                        ToneGenerator::new(ToneSpec::dtmf(inband_digit(c, k)).unwrap())
                    });
                    g.fill(&mut x);
                }
                _ => {
                    self.digit[c] = None;
                    self.voice[c].fill(&mut x);
                }
            }
            *o = g711::linear_to_alaw(x[0]);
        }
    }

    fn tx_frame(&mut self, span: usize, _frame_no: u64, tx: &E1Frame) {
        for (ts, &o) in tx.iter().enumerate() {
            let Some(c) = channel_of(span, ts) else {
                continue;
            };
            if !sends_digits(c) {
                continue;
            }
            let d = &mut self.tx_detectors[c];
            d.handle_samples(&[g711::alaw_to_linear(o)]);
            while let Some(e) = d.poll_event() {
                match e {
                    DtmfEvent::DigitStart { digit: b'5', .. } => self.tx_digits[c] += 1,
                    DtmfEvent::DigitStart { digit: b'9', .. } => self.tx_regenerated[c] += 1,
                    _ => {}
                }
            }
        }
    }
}

/// The far end of one channel: sends 1 kHz audio every ptime with loss,
/// reordering and duplicates; checks what it receives.
#[derive(Default)]
struct Peer {
    seq: u16,
    ts: u32,
    ssrc: u32,
    phase: f64,
    held: Vec<(u64, Vec<u8>)>,
    rx_ssrc: Option<u32>,
    /// Next sequence number, and where the last voice packet ended.
    rx_next: Option<(u16, Option<u32>)>,
    rx_packets: u64,
    rx_discontinuities: u64,
    rx_events: u64,
    /// Middle 32 bits of the last SR's NTP and the ms it arrived.
    last_sr: Option<(u32, u64)>,
    rtcp_reports: u64,
    rtcp_byes: u64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

fn audio(p: &mut Peer, n: usize, codec: Codec) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let x = (8000.0 * (p.phase * std::f64::consts::TAU).sin()) as i16;
            p.phase = (p.phase + 1000.0 / 8000.0).fract();
            match codec {
                Codec::Pcma => g711::linear_to_alaw(x),
                Codec::Pcmu => g711::linear_to_ulaw(x),
            }
        })
        .collect()
}

/// A UDP socket pair on ports P, P + 1 (RFC 3550 §11), non-blocking.
fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..1000 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if !p.is_multiple_of(2) || p == u16::MAX - 1 {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
            a.set_nonblocking(true).unwrap();
            b.set_nonblocking(true).unwrap();
            return (a, b);
        }
    }
    panic!("no free port pair");
}

/// The far end's RTCP: an RR (or SR) with a block about the engine's stream.
fn peer_rtcp(p: &Peer, ms: u64, engine_ssrc: Option<u32>, sender: bool) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let blocks: Vec<ReportBlock> = engine_ssrc
        .map(|ssrc| {
            let (lsr, dlsr) = p
                .last_sr
                .map_or((0, 0), |(lsr, at)| (lsr, ((ms - at) * 65536 / 1000) as u32));
            ReportBlock {
                ssrc,
                fraction_lost: 0,
                cumulative_lost: 0,
                extended_highest_seq: p.rx_packets as u32,
                jitter: 3,
                lsr,
                dlsr,
            }
        })
        .into_iter()
        .collect();
    let mut w = CompoundWriter::new(&mut buf);
    if sender {
        let info = SenderInfo {
            ntp: 0xE000_0000_0000_0000 + (ms << 32) / 1000,
            rtp_ts: p.ts,
            packet_count: 1,
            octet_count: 160,
        };
        w.sr(p.ssrc, &info, &blocks).unwrap();
    } else {
        w.rr(p.ssrc, &blocks).unwrap();
    }
    w.sdes_cname(p.ssrc, b"peer@127.0.0.1").unwrap();
    let n = w.len();
    buf[..n].to_vec()
}

#[test]
fn media_path_allocates_nothing() {
    // Ports from a base, as in production: the engine connects a socket
    // to its latched source and un-connects it when a command resets the
    // latch, so those calls run under the counting allocator too.
    let spans = vec![SpanParams::pri(1), SpanParams::pri(2)];
    let params = EngineParams::new(spans, "127.0.0.1".parse().unwrap(), 0, 0x5EED);
    let bases = (21_000u16..60_000).step_by(1_000 + 128 * (std::process::id() as usize % 7));
    let (mut lp, mut ctl) =
        MediaLoop::bind_first_free(&params, bases).expect("a free range of 128 ports");
    assert_eq!(lp.core().channel_count(), CHANNELS);
    let engine_addr: Vec<SocketAddr> = (0..CHANNELS).map(|i| lp.rtp_addr(i).unwrap().0).collect();
    let ids: Vec<ChannelId> = ctl.stats.ids.to_vec();
    let engine_rtcp: Vec<SocketAddr> = (0..CHANNELS).map(|i| lp.rtp_addr(i).unwrap().1).collect();
    let (socks, rtcp_socks): (Vec<UdpSocket>, Vec<UdpSocket>) =
        (0..CHANNELS).map(|_| bind_pair()).unzip();
    let peer_addr: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let mut peers: Vec<Peer> = (0..CHANNELS).map(|_| Peer::default()).collect();
    let mut port = SimE1::manual(
        2,
        8,
        Line {
            voice: (0..CHANNELS)
                .map(|c| {
                    ToneGenerator::new(ToneSpec {
                        freqs_hz: [300.0 + 3.0 * c as f32, 0.0],
                        levels_dbm0: [-20.0, -99.0],
                        ..ToneSpec::UK_NUMBER_UNOBTAINABLE
                    })
                })
                .collect(),
            digit: (0..CHANNELS).map(|_| None).collect(),
            tx_detectors: (0..CHANNELS).map(|_| DtmfDetector::new()).collect(),
            tx_digits: vec![0; CHANNELS],
            tx_regenerated: vec![0; CHANNELS],
        },
    );
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut events: Vec<Event> = Vec::new();
    let mut buf = [0u8; 2048];
    let mut expected_inband = 0u32;
    let mut expected_timeouts = 0u32;
    let mut commanded_digits = vec![0u32; CHANNELS];
    let mut rfc4733_digits = vec![0u32; CHANNELS];
    let mut expected_rfc4733_from_tdm = 0u32;
    let mut malformed_rtcp_sent = 0u32;

    // One turn before the clock starts: first-use work (epoll set-up) is
    // start-up, not the media path.
    lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
    let frames_before = port.frames();

    for ms in 0..SECONDS * 1000 {
        // ---- control plane: commands on the call plan ----
        for c in 0..CHANNELS {
            let ch = ids[c];
            let first_of_call = in_call(c, ms);
            let mut send = |cmd| ctl.commands.try_push(cmd).unwrap();
            match first_of_call {
                Some((k, 0)) => {
                    let mut p = ConnectParams::new(peer_addr[c], codec(c, k));
                    p.ptime_ms = ptime(c, k);
                    if c % 15 == 7 {
                        p.rtp_timeout_ms = 500;
                    }
                    if telephone_events(c, k) {
                        p.telephone_event_pt = Some(TE);
                    }
                    send(Command::StopTone { ch });
                    send(Command::Connect { ch, params: p });
                    let peer = &mut peers[c];
                    peer.ssrc = rng.next() as u32;
                    peer.seq = rng.next() as u16;
                    peer.ts = rng.next() as u32;
                    peer.rx_ssrc = None;
                    peer.rx_next = None;
                    peer.last_sr = None;
                    peer.held.clear();
                }
                Some((_, 1500)) if sends_digits(c) => {
                    send(Command::SendDigits {
                        ch,
                        digits: DigitString::new(b"5", 80, 80).unwrap(),
                    });
                    commanded_digits[c] += 1;
                }
                Some((_, 2000)) if c % 20 == 9 => send(Command::UpdateRemote {
                    ch,
                    remote: peer_addr[c],
                    restrict_to_sdp: true,
                }),
                Some((k, 2499)) => {
                    send(Command::Disconnect { ch });
                    if ms + 1 < SECONDS * 1000 {
                        expected_inband += 1;
                        if telephone_events(c, k) {
                            expected_rfc4733_from_tdm += 1;
                        }
                        if c % 15 == 7 {
                            expected_timeouts += 1;
                        }
                    }
                }
                None if c % 6 == 1
                    && ms > start(c, 0)
                    && (ms - start(c, 0)) % CALL_EVERY_MS == CALL_MS + 100 =>
                {
                    send(Command::PlayTone {
                        ch,
                        tone: ToneSpec::UK_RINGBACK,
                    })
                }
                _ => {}
            }
        }

        // ---- far end: send with loss, reordering, duplicates; receive ----
        for c in 0..CHANNELS {
            let Some((k, off)) = in_call(c, ms) else {
                continue;
            };
            let pt = ptime(c, k) as u64;
            let silent = c % 15 == 7 && off >= 1800;
            // RFC 4733 §2.5.1: digit 9 for 100 ms from 2000 ms, updates
            // every ptime, the end three times; no voice meanwhile.
            let event_at = off.checked_sub(2000).filter(|_| sends_rfc4733(c, k));
            if let Some(e) = event_at.filter(|&e| e <= 100 + 2 * pt && e % pt == 0) {
                let peer = &mut peers[c];
                if e == 0 {
                    rfc4733_digits[c] += 1;
                }
                let report = TelephoneEvent {
                    event: 9,
                    end: e >= 100,
                    volume: 10,
                    duration: (e.min(100) * 8) as u16,
                };
                let repr = RtpRepr {
                    marker: e == 0,
                    payload_type: TE,
                    sequence_number: peer.seq,
                    // §2.5.1.2: every report carries the event's start
                    // (the timestamp has advanced `e` ms since).
                    timestamp: peer.ts.wrapping_sub(e as u32 * 8),
                    ssrc: peer.ssrc,
                };
                peer.seq = peer.seq.wrapping_add(1);
                let mut pkt = [0u8; 16];
                repr.emit(&report.to_bytes(), &mut pkt).unwrap();
                if !rng.chance(3) {
                    socks[c].send_to(&pkt, engine_addr[c]).unwrap();
                }
            }
            let in_event = event_at.is_some_and(|e| e <= 100 + 2 * pt);
            if in_event && off % pt == 0 {
                // The event's time passes in the timestamp too.
                let peer = &mut peers[c];
                peer.ts = peer.ts.wrapping_add(pt as u32 * 8);
                let _ = audio(peer, pt as usize * 8, codec(c, k));
            }
            // RTCP from the far end every 400 ms, now and then malformed.
            if off % 400 == 200 && !silent {
                let peer = &peers[c];
                let d = if c % 9 == 0 && off == 1000 {
                    malformed_rtcp_sent += 1;
                    vec![0x81, 201, 0, 9, 1, 2, 3]
                } else {
                    peer_rtcp(peer, ms, peer.rx_ssrc, off % 800 == 200)
                };
                rtcp_socks[c].send_to(&d, engine_rtcp[c]).unwrap();
            }
            if off % pt == 0 && !silent && !in_event {
                let peer = &mut peers[c];
                if c % 10 == 3 && off == 1200 {
                    peer.ssrc = peer.ssrc.wrapping_add(1);
                }
                let payload = audio(peer, pt as usize * 8, codec(c, k));
                let repr = RtpRepr {
                    marker: off == 0,
                    payload_type: codec(c, k).static_payload_type(),
                    sequence_number: peer.seq,
                    timestamp: peer.ts,
                    ssrc: peer.ssrc,
                };
                peer.seq = peer.seq.wrapping_add(1);
                peer.ts = peer.ts.wrapping_add(pt as u32 * 8);
                let mut pkt = vec![0u8; 12 + payload.len()];
                repr.emit(&payload, &mut pkt).unwrap();
                if rng.chance(3) {
                    // lost
                } else if rng.chance(5) {
                    let hold = pt * (1 + rng.next() % 2);
                    peer.held.push((ms + hold, pkt));
                } else {
                    if rng.chance(3) {
                        socks[c].send_to(&pkt, engine_addr[c]).unwrap();
                    }
                    socks[c].send_to(&pkt, engine_addr[c]).unwrap();
                }
            }
            let peer = &mut peers[c];
            if peer.held.is_empty() {
                continue;
            }
            let due: Vec<Vec<u8>> = {
                let (due, keep): (Vec<_>, Vec<_>) = peer.held.drain(..).partition(|h| h.0 <= ms);
                peer.held = keep;
                due.into_iter().map(|h| h.1).collect()
            };
            for pkt in due {
                socks[c].send_to(&pkt, engine_addr[c]).unwrap();
            }
        }
        for c in 0..CHANNELS {
            while let Ok((n, from)) = socks[c].recv_from(&mut buf) {
                assert_eq!(
                    from, engine_addr[c],
                    "symmetric RTP: from the channel's port"
                );
                let p = RtpPacket::parse(&buf[..n]).unwrap();
                let peer = &mut peers[c];
                peer.rx_packets += 1;
                let event = p.repr.payload_type == TE;
                if event {
                    peer.rx_events += 1;
                }
                // One sequence space for voice and events (RFC 4733 §2.1);
                // voice timestamps continue, or jump by whole packets where
                // voice was held for an event.
                let voice_end = peer.rx_next.and_then(|n| n.1);
                if peer.rx_ssrc != Some(p.repr.ssrc) {
                    peer.rx_ssrc = Some(p.repr.ssrc);
                } else if peer.rx_next.map(|n| n.0) != Some(p.repr.sequence_number)
                    || (!event
                        && voice_end.is_some_and(|v| {
                            let gap = p.repr.timestamp.wrapping_sub(v);
                            gap >= 0x8000_0000 || gap % p.payload.len() as u32 != 0
                        }))
                {
                    peer.rx_discontinuities += 1;
                }
                let step = p.payload.len() as u32;
                peer.rx_next = Some((
                    p.repr.sequence_number.wrapping_add(1),
                    if event {
                        voice_end
                    } else {
                        Some(p.repr.timestamp.wrapping_add(step))
                    },
                ));
            }
            while let Ok((n, from)) = rtcp_socks[c].recv_from(&mut buf) {
                assert_eq!(from, engine_rtcp[c], "RTCP from the channel's RTCP port");
                let compound = Compound::parse(&buf[..n]).expect("the engine's RTCP is valid");
                let peer = &mut peers[c];
                for pkt in compound.packets() {
                    match pkt {
                        RtcpPacket::Sr(sr) => {
                            peer.rtcp_reports += 1;
                            peer.last_sr = Some(((sr.info.ntp >> 16) as u32, ms));
                        }
                        RtcpPacket::Rr(_) => peer.rtcp_reports += 1,
                        RtcpPacket::Bye(_) => peer.rtcp_byes += 1,
                        _ => {}
                    }
                }
            }
        }

        // ---- the media thread: one E1 millisecond, tracked ----
        counting_alloc::track(true);
        let r = lp.turn(&mut port, Some(Duration::ZERO));
        counting_alloc::track(false);
        r.unwrap();

        while let Some(e) = ctl.events.try_pop() {
            events.push(e);
        }
    }

    let (allocs, frees) = counting_alloc::counts();
    assert_eq!(
        (allocs, frees),
        (0, 0),
        "allocations and frees on the media thread"
    );
    assert_eq!(
        port.frames() - frames_before,
        SECONDS * 8000,
        "80,000 frames per span"
    );
    // The sockets were connected to their latched sources, and
    // un-connected when a call ended or its remote changed.
    assert!(lp.counters.connects >= CHANNELS as u64, "{:?}", lp.counters);
    assert!(lp.counters.unconnects > 0, "{:?}", lp.counters);
    assert_eq!(lp.counters.send_errors, 0, "{:?}", lp.counters);

    // The run did what it claims: check the traffic and the events.
    let mut kinds: HashMap<&str, u32> = HashMap::new();
    let mut lost = 0i64;
    let mut dups = 0u64;
    let mut received = 0u64;
    let mut rfc4733_sent = 0u32;
    let mut rtcp_in = 0u32;
    let mut rtcp_bad = 0u32;
    let mut rtt_samples = 0u32;
    let mut mos_min = u32::MAX;
    for e in &events {
        let k = match e {
            Event::DtmfStart { .. } => "dtmf",
            Event::DtmfEnd { .. } => "dtmf_end",
            Event::DtmfReceivedStart { digit, .. } => {
                assert_eq!(*digit, b'9');
                "rfc4733"
            }
            Event::DtmfReceivedEnd { .. } => "rfc4733_end",
            Event::RtcpBye { .. } => "bye",
            Event::FirstRtp { .. } => "first_rtp",
            Event::RtpTimeout { .. } => "timeout",
            Event::SsrcChanged { .. } => "ssrc",
            Event::CallSummary { summary, .. } => {
                lost += summary.packets_lost;
                dups += summary.duplicates;
                received += summary.packets_received;
                rfc4733_sent += summary.dtmf_digits_sent_rtp;
                rtcp_in += summary.rtcp_received;
                rtcp_bad += summary.rtcp_malformed;
                rtt_samples += summary.rtt_samples;
                if summary.packets_expected > 0 {
                    mos_min = mos_min.min(summary.mos_x100);
                }
                "summary"
            }
            Event::CommandRejected { .. } => "rejected",
            Event::EventsDropped { .. } => "dropped",
        };
        *kinds.entry(k).or_default() += 1;
    }
    let calls = expected_inband;
    assert!(calls >= 150, "{calls} calls");
    assert_eq!(kinds.get("summary").copied(), Some(calls), "{kinds:?}");
    assert_eq!(
        kinds.get("dtmf").copied(),
        Some(expected_inband),
        "in-band digits: {kinds:?}"
    );
    assert_eq!(
        kinds.get("timeout").copied(),
        Some(expected_timeouts),
        "{kinds:?}"
    );
    assert!(kinds.get("ssrc").copied().unwrap_or(0) >= 12, "{kinds:?}");
    assert!(
        kinds.get("first_rtp").copied().unwrap_or(0) >= calls,
        "{kinds:?}"
    );
    assert_eq!(kinds.get("rejected"), None);
    assert_eq!(kinds.get("dropped"), None);
    assert!(
        lost > 0 && dups > 0 && received > 100_000 / 20,
        "lost {lost} dups {dups} rx {received}"
    );
    let sent_digits: u32 = commanded_digits.iter().sum();
    let heard: u32 = port.source.tx_digits.iter().sum();
    assert!(sent_digits >= 30);
    assert_eq!(
        heard, sent_digits,
        "every commanded digit heard on the E1 side"
    );
    let to_far_end: u64 = peers.iter().map(|p| p.rx_packets).sum();
    let gaps: u64 = peers.iter().map(|p| p.rx_discontinuities).sum();
    assert!(to_far_end > 10_000, "{to_far_end}");
    assert_eq!(gaps, 0, "seq and ts continuous within each call");

    // DTMF both ways as RFC 4733: every in-band digit of a call with
    // telephone-event went out as events; every digit the far end sent as
    // events was regenerated into the timeslot and heard there.
    assert!(
        expected_rfc4733_from_tdm >= 100,
        "{expected_rfc4733_from_tdm}"
    );
    assert_eq!(rfc4733_sent, expected_rfc4733_from_tdm);
    let events_seen: u64 = peers.iter().map(|p| p.rx_events).sum();
    assert!(
        events_seen >= 5 * expected_rfc4733_from_tdm as u64,
        "{events_seen}"
    );
    let te_sent: u32 = rfc4733_digits.iter().sum();
    let te_heard: u32 = port.source.tx_regenerated.iter().sum();
    assert!(te_sent >= 20, "{te_sent}");
    assert_eq!(kinds.get("rfc4733").copied(), Some(te_sent), "{kinds:?}");
    assert_eq!(te_heard, te_sent, "every telephone-event digit regenerated");

    // RTCP both ways: reports and a BYE per call reach the far end; the far
    // end's reports are parsed (round trips measured, malformed counted).
    let byes: u64 = peers.iter().map(|p| p.rtcp_byes).sum();
    let reports: u64 = peers.iter().map(|p| p.rtcp_reports).sum();
    assert!(byes >= calls as u64, "{byes} BYEs for {calls} calls");
    assert!(reports >= byes + 20, "{reports} reports");
    assert!(rtcp_in > 5 * calls, "{rtcp_in}");
    assert_eq!(rtcp_bad, malformed_rtcp_sent);
    assert!(rtt_samples > 10, "{rtt_samples}");
    assert!(mos_min > 300 && mos_min < 441, "{mos_min}");
}
