//! The media plane's promise (DESIGN.md §1) on DAHDI spans: after
//! start-up the media thread allocates nothing. A counting global
//! allocator counts every allocation and free made on this thread while
//! the flag is up; the flag is up exactly while the engine's loop turns
//! over a `DahdiLinePort` (inner epoll, per-lane FIFOs, block assembly,
//! one write per lane per block, ELAST and GETEVENT, SPANSTAT on ALARM
//! and on the status timer, the line event ring, the status seqlock,
//! RTP both ways), and down while the test plays the card and the far
//! end.
//!
//! Two simulated DAHDI spans of 30 B-channels; calls on four channels of
//! each connect, carry audio both ways, disconnect and reconnect; span 2
//! goes into red alarm and back; SPANSTAT counters move.

use std::net::UdpSocket;
use std::time::Duration;

use tdmgw::line::driver::dahdi::seqpacket::{CardSpan, SeqpacketCard};
use tdmgw::line::driver::dahdi::sys::{self, DahdiSpanInfo};
use tdmgw::line::driver::dahdi::{DahdiSpan, DahdiSpanParams};
use tdmgw::line::e1_alarm::{Alarm, LineEvent};
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams};
use tdmgw::media::dahdi_lines::{DahdiLinePort, DahdiLinePortParams, DahdiLineSpanParams};
use tdmgw::media::engine::{EngineParams, MediaCore, MediaLoop, SpanParams};
use tdmgw::media::lines::LineNotice;

mod common;
use common::counting_alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const BLOCK: usize = 160;
/// Line time: 5 s of 20 ms blocks.
const STEPS: u16 = 250;

fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * BLOCK as u32).to_be_bytes());
    p.extend_from_slice(&0x0BAD_CAFEu32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn card(
    span: u16,
) -> (
    SeqpacketCard,
    CardSpan,
    DahdiLineSpanParams<tdmgw::line::driver::dahdi::seqpacket::SeqpacketChannel>,
) {
    let base = (span - 1) * 31 + 1;
    let (mut card, ends) = SeqpacketCard::e1_pri(span, base, 30, sys::DAHDI_SIG_HDLCFCS).unwrap();
    let (_d, channels) = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(span, base, 30))
        .unwrap()
        .split();
    let p = DahdiLineSpanParams {
        number: span,
        channels,
        crc4: true,
    };
    (card, ends, p)
}

#[test]
fn dahdi_line_port_allocates_nothing() {
    let (_card1, ends1, p1) = card(1);
    let (card2, ends2, p2) = card(2);
    let mut params = DahdiLinePortParams::new(vec![p1, p2]);
    // The status timer fires within the run (the test sleeps past it).
    params.status_interval_ms = 5;
    let (mut port, mut lines) = DahdiLinePort::open(params).unwrap();
    let ep = EngineParams::new(
        vec![SpanParams::pri(1), SpanParams::pri(2)],
        "127.0.0.1".parse().unwrap(),
        0,
        5,
    );
    let (core, mut ctl) = MediaCore::new(&ep).unwrap();
    let mut lp = MediaLoop::new(core).unwrap();
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    far.set_nonblocking(true).unwrap();
    let calls: Vec<ChannelId> = [1u16, 2]
        .into_iter()
        .flat_map(|span| (1..=4).map(move |timeslot| ChannelId { span, timeslot }))
        .collect();
    let rtp: Vec<_> = calls
        .iter()
        .map(|&ch| {
            let i = lp.core().channel_index(ch).unwrap();
            lp.rtp_addr(i).unwrap().0
        })
        .collect();
    let connect = |ctl: &mut tdmgw::media::engine::ControlHandle| {
        for &ch in &calls {
            let mut p = ConnectParams::new(far.local_addr().unwrap(), Codec::Pcma);
            p.dtmf_detect = false;
            ctl.commands
                .try_push(Command::Connect { ch, params: p })
                .unwrap();
        }
    };
    connect(&mut ctl);
    // Start-up: the first turn registers the port's descriptor.
    lp.turn(&mut port, Some(Duration::ZERO)).unwrap();

    let (mut rtp_out, mut tdm_marked, mut alarms) = (0usize, 0usize, Vec::new());
    let mut buf = [0u8; 1500];
    for step in 0..STEPS {
        // The card: a block per lane; the calls' lanes carry a tone.
        for (ends, _) in [(&ends1, 1), (&ends2, 2)] {
            for (ts, end) in &ends.b {
                let o = if *ts <= 4 { 0x1A } else { 0xD5 };
                end.send(&[o; BLOCK]).unwrap();
            }
        }
        for (i, to) in rtp.iter().enumerate() {
            far.send_to(&rtp_packet(step, &[0x2A + i as u8; BLOCK]), to)
                .unwrap();
        }
        match step {
            60 => card2.alarm(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS),
            90 => card2.alarm(0),
            120 => {
                for &ch in &calls {
                    ctl.commands.try_push(Command::Disconnect { ch }).unwrap();
                }
            }
            130 => connect(&mut ctl),
            150 => {
                // SPANSTAT counters move without an event; only the
                // status timer reads them.
                card2.set_spaninfo(DahdiSpanInfo {
                    spanno: 2,
                    fascount: 7,
                    crc4count: 3,
                    ..Default::default()
                });
                std::thread::sleep(Duration::from_millis(6));
            }
            _ => {}
        }
        let want = u64::from(step + 1) * 2 * BLOCK as u64;
        let mut turns = 0;
        while lp.counters.tdm_frames < want {
            turns += 1;
            assert!(turns < 1000, "the engine did not take step {step}");
            counting_alloc::track(true);
            let r = lp.turn(&mut port, Some(Duration::from_millis(50)));
            counting_alloc::track(false);
            r.unwrap();
        }
        // The far end and the card's receive side.
        while let Ok((n, from)) = far.recv_from(&mut buf) {
            if rtp.contains(&from) {
                assert_eq!(n, 12 + BLOCK);
                rtp_out += 1;
            }
        }
        for ends in [&ends1, &ends2] {
            for (ts, end) in &ends.b {
                while let Some(n) = end.recv(&mut buf).unwrap() {
                    if *ts <= 4 {
                        tdm_marked += buf[..n]
                            .iter()
                            .filter(|&&o| (0x2A..0x32).contains(&o))
                            .count();
                    }
                }
            }
        }
        while let Some(r) = lines.events.try_pop() {
            // Driver notices (blocks stopped/resumed) follow the test's
            // wall-clock pace against the 5 ms status timer: not checked.
            if let LineNotice::Line(_) = r.notice {
                alarms.push((r.span, r.notice));
            }
        }
        while ctl.events.try_pop().is_some() {}
    }
    // A turn with the status timer due, after the counters moved.
    std::thread::sleep(Duration::from_millis(6));
    counting_alloc::track(true);
    let r = lp.turn(&mut port, Some(Duration::from_millis(50)));
    counting_alloc::track(false);
    r.unwrap();

    let (allocs, frees) = counting_alloc::counts();
    let s2 = lines.status[1].read();
    eprintln!("{rtp_out} RTP packets out, {tdm_marked} RTP octets on the lanes, span 2 {s2:?}");
    assert_eq!(
        (allocs, frees),
        (0, 0),
        "allocations / frees on the media thread"
    );
    // Everything ran: audio both ways on 8 channels for most of 5 s, the
    // alarm raised and cleared, the counters read by the timer.
    assert!(rtp_out >= 8 * 200, "{rtp_out}");
    assert!(tdm_marked >= 8 * 200 * BLOCK, "{tdm_marked}");
    let los = LineNotice::Line(LineEvent::AlarmRaised(Alarm::Los));
    let los_clear = LineNotice::Line(LineEvent::AlarmCleared(Alarm::Los));
    assert_eq!(alarms, [(2, los), (2, los_clear)]);
    assert_eq!(s2.counters.deframer.fas_errors, 7);
    assert_eq!(s2.counters.deframer.crc4_errors, 3);
    assert_eq!(s2.counters.frame_periods, u64::from(STEPS) * BLOCK as u64);
}
