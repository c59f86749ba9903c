//! DAHDI spans under the media engine: the engine's loop turns over a
//! `DahdiLinePort` whose B-channels are the driver ends of a simulated
//! card (one SOCK_SEQPACKET socketpair per channel, the card ends played
//! by the test: one 160-octet block per lane per step, the way the card's
//! interrupt fills every channel of a span at once).
//!
//! The test is the card's clock: each step it sends one block on every
//! lane and one RTP packet, then turns the engine until that block has
//! been taken. So line time is the test's, and every run is the same.
//!
//! (a) Audio both ways on one channel: the card's TS5 octets come out in
//!     RTP packets to the far end, unchanged (PCMA is the E1's own code),
//!     and the far end's RTP payloads come out of the card's TS5 lane;
//!     the unconnected lanes get idle.
//! (b) A span's alarms (ALARM events, SPANSTAT) reach the span status and
//!     the line event ring while audio keeps flowing.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tdmgw::line::driver::dahdi::seqpacket::{CardSpan, SeqpacketCard, SeqpacketChannel};
use tdmgw::line::driver::dahdi::{DahdiSpan, DahdiSpanParams, sys};
use tdmgw::line::e1_alarm::{Alarm, LineEvent};
use tdmgw::line::g711::ALAW_IDLE;
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams, Event};
use tdmgw::media::dahdi_lines::{DahdiLinePort, DahdiLinePortParams, DahdiLineSpanParams};
use tdmgw::media::engine::{ControlHandle, EngineParams, MediaCore, MediaLoop, SpanParams};
use tdmgw::media::lines::{LineHandle, LineNotice};

mod common;
use common::Rng;

const BLOCK: usize = 160;

/// The engine over one simulated DAHDI span, and the card's side of it.
struct Rig {
    card: SeqpacketCard,
    ends: CardSpan,
    port: DahdiLinePort<SeqpacketChannel>,
    lines: LineHandle,
    lp: MediaLoop,
    ctl: ControlHandle,
    /// Blocks the card has delivered.
    blocks: u64,
}

impl Rig {
    /// DAHDI span 1 (channels 1-31, D-channel 16) as tdmgw span `number`.
    fn new(number: u16, b_channels: u8) -> Rig {
        let (mut card, ends) =
            SeqpacketCard::e1_pri(1, 1, b_channels, sys::DAHDI_SIG_HDLCFCS).unwrap();
        let span = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, b_channels)).unwrap();
        let (_d, channels) = span.split();
        let timeslots = channels.b_timeslots().collect();
        let (port, lines) =
            DahdiLinePort::open(DahdiLinePortParams::new(vec![DahdiLineSpanParams {
                number,
                channels,
                crc4: true,
            }]))
            .unwrap();
        let ep = EngineParams::new(
            vec![SpanParams { number, timeslots }],
            "127.0.0.1".parse().unwrap(),
            0,
            11,
        );
        let (core, ctl) = MediaCore::new(&ep).unwrap();
        let lp = MediaLoop::new(core).unwrap();
        Rig {
            card,
            ends,
            port,
            lines,
            lp,
            ctl,
            blocks: 0,
        }
    }

    fn rtp_addr(&self, span: u16, timeslot: u8) -> SocketAddr {
        let i = self
            .lp
            .core()
            .channel_index(ChannelId { span, timeslot })
            .unwrap();
        self.lp.rtp_addr(i).unwrap().0
    }

    fn connect(&mut self, span: u16, timeslot: u8, remote: SocketAddr) {
        let mut p = ConnectParams::new(remote, Codec::Pcma);
        p.dtmf_detect = false;
        let ch = ChannelId { span, timeslot };
        self.ctl
            .commands
            .try_push(Command::Connect { ch, params: p })
            .unwrap();
    }

    /// The card delivers one block per lane (`block(ts)`), then the engine
    /// turns until it has taken them.
    fn step(&mut self, mut block: impl FnMut(u8) -> [u8; BLOCK]) {
        for (ts, end) in &self.ends.b {
            end.send(&block(*ts)).unwrap();
        }
        self.blocks += 1;
        let want = self.blocks * BLOCK as u64;
        for _ in 0..1000 {
            self.lp
                .turn(&mut self.port, Some(Duration::from_millis(100)))
                .unwrap();
            if self.lp.counters.tdm_frames >= want {
                return;
            }
        }
        panic!("the engine did not take block {}", self.blocks);
    }

    /// Everything the engine wrote on lane `ts` since the last call.
    fn card_received(&self, ts: u8) -> Vec<u8> {
        let end = &self.ends.b.iter().find(|(t, _)| *t == ts).unwrap().1;
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Some(n) = end.recv(&mut buf).unwrap() {
            assert_eq!(n, BLOCK, "the engine writes whole blocks");
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * BLOCK as u32).to_be_bytes());
    p.extend_from_slice(&0x00DA_7D11u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A block of A-law speech-like noise (loud enough that no stretch of it
/// is a quiet passage for the jitter buffer to stretch or squeeze).
fn noise(rng: &mut Rng) -> [u8; BLOCK] {
    // A-law segments 4-7 (even bits inverted: XOR 0x55), either sign.
    std::array::from_fn(|_| (0x40 | (rng.next() as u8 & 0xBF)) ^ 0x55)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn engine_carries_audio_both_ways_between_rtp_and_a_dahdi_span() {
    let mut rig = Rig::new(3, 30);
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_nonblocking(true).unwrap();
    let ts5 = rig.rtp_addr(3, 5);
    rig.connect(3, 5, far.local_addr().unwrap());

    let mut rng = Rng(0x0DA4D1);
    let (mut tdm_in, mut rtp_in) = (Vec::new(), Vec::new());
    let (mut tdm_out, mut rtp_out, mut idle_lane) = (Vec::new(), Vec::new(), Vec::new());
    const STEPS: u16 = 150;
    for seq in 0..STEPS {
        let b = noise(&mut rng);
        tdm_in.extend_from_slice(&b);
        rig.step(|ts| if ts == 5 { b } else { [ALAW_IDLE; BLOCK] });
        let p = noise(&mut rng);
        rtp_in.extend_from_slice(&p);
        far.send_to(&rtp_packet(seq, &p), ts5).unwrap();
        tdm_out.extend(rig.card_received(5));
        idle_lane.extend(rig.card_received(6));
        let mut pkt = [0u8; 1500];
        while let Ok((n, from)) = far.recv_from(&mut pkt) {
            // Symmetric RTP: only the channel's own socket counts (a stray
            // datagram from elsewhere on a shared host is not ours).
            if from == ts5 {
                rtp_out.extend_from_slice(&pkt[12..n]);
            }
        }
    }
    // Two seconds from the middle of each stream, octet for octet.
    let mid = 20 * BLOCK..120 * BLOCK;
    let at = find(&rtp_out, &tdm_in[mid.clone()]);
    assert!(
        at.is_some(),
        "card TS5 -> RTP: the card's audio is not in the {} octets sent",
        rtp_out.len()
    );
    let at = find(&tdm_out, &rtp_in[mid.clone()]);
    assert!(
        at.is_some(),
        "RTP -> card TS5: the far end's audio is not in the {} octets written",
        tdm_out.len()
    );
    // One block per block (and the prime) on every lane, idle where no
    // call is.
    assert_eq!(tdm_out.len(), (usize::from(STEPS) + 1) * BLOCK);
    assert_eq!(idle_lane.len(), tdm_out.len());
    assert!(idle_lane.iter().all(|&o| o == ALAW_IDLE));
    while let Some(e) = rig.ctl.events.try_pop() {
        assert!(!matches!(e, Event::CommandRejected { .. }), "{e:?}");
    }
    let s = rig.lines.status[0].read();
    assert_eq!(rig.lines.status[0].span, 3);
    assert_eq!(s.counters.frame_periods, u64::from(STEPS) * BLOCK as u64);
    assert_eq!(s.counters.frames_sent, s.counters.frame_periods);
    assert!(s.in_frame && s.alarms.is_empty() && !s.driver_los, "{s:?}");
    assert_eq!(s.driver_gaps, 0, "{s:?}");
    let c = rig.port.channels(0).unwrap().counters();
    assert_eq!(c.b_blocks_rx, u64::from(STEPS) * 30);
    assert_eq!(c.b_tx_busy, 0);
}

#[test]
fn span_alarms_reach_status_and_events_while_audio_flows() {
    let mut rig = Rig::new(1, 2);
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_nonblocking(true).unwrap();
    rig.connect(1, 1, far.local_addr().unwrap());
    let mut notices = Vec::new();
    let mut packets = 0;
    let mut drain = |rig: &mut Rig, notices: &mut Vec<LineNotice>| {
        while let Some(r) = rig.lines.events.try_pop() {
            assert_eq!(r.span, 1);
            notices.push(r.notice);
        }
        let mut pkt = [0u8; 1500];
        while far.recv_from(&mut pkt).is_ok() {
            packets += 1;
        }
    };
    for _ in 0..10 {
        rig.step(|_| [0x2A; BLOCK]);
    }
    drain(&mut rig, &mut notices);
    assert!(notices.is_empty(), "{notices:?}");

    // The exchange's signal goes: the card raises ALARM on every channel.
    rig.card
        .alarm(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS | sys::DAHDI_ALARM_LFA);
    for _ in 0..10 {
        rig.step(|_| [0x2A; BLOCK]);
    }
    drain(&mut rig, &mut notices);
    assert_eq!(
        notices,
        [
            LineNotice::Line(LineEvent::AlarmRaised(Alarm::Los)),
            LineNotice::Line(LineEvent::AlarmRaised(Alarm::Lof)),
        ]
    );
    let s = rig.lines.status[0].read();
    assert!(s.alarms.red() && !s.in_frame, "{s:?}");

    // It comes back with the far end reporting our earlier loss (RAI),
    // then all clear.
    notices.clear();
    rig.card.alarm(sys::DAHDI_ALARM_YELLOW);
    rig.step(|_| [0x2A; BLOCK]);
    rig.card.alarm(0);
    rig.step(|_| [0x2A; BLOCK]);
    drain(&mut rig, &mut notices);
    assert_eq!(
        notices,
        [
            LineNotice::Line(LineEvent::AlarmCleared(Alarm::Los)),
            LineNotice::Line(LineEvent::AlarmCleared(Alarm::Lof)),
            LineNotice::Line(LineEvent::AlarmRaised(Alarm::Rai)),
            LineNotice::Line(LineEvent::AlarmCleared(Alarm::Rai)),
        ]
    );
    let s = rig.lines.status[0].read();
    assert!(
        s.alarms.is_empty() && s.in_frame && s.in_multiframe,
        "{s:?}"
    );
    // Audio went on throughout: a packet per block but the delay line's.
    assert!(packets >= 18, "{packets} RTP packets for 22 blocks");
    assert_eq!(rig.port.events_dropped(), 0);
}
