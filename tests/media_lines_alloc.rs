//! The media plane's promise (DESIGN.md §1, issue 5) with real line
//! drivers under the engine: after start-up the media thread allocates
//! nothing. A counting global allocator counts every allocation and free
//! made on this thread while the flag is up; the flag is up exactly while
//! the engine's loop turns over a `LinePort` (inner epoll, timerfd, the
//! pair line stepped in real time, G.704 framing, HDLC on TS16, alarms,
//! G.826 counters, D-channel and event rings, the status seqlock, RTP),
//! and down while the test plays the control plane. The loop metrics the
//! daemon records every turn (`MediaLoopMetrics::observe_turn`) run in the
//! counted region too.
//!
//! Both ends of a pair line sit in the one port (span 1 the near end,
//! span 2 the far end), with bit errors towards span 1; D-channel frames
//! go both ways through the rings and RTP audio crosses the line from
//! span 1's TS1 to span 2's TS1 (span 1's CRC-4 errors come back to span
//! 2 as E bits: far-end errored seconds). A `tdmgw trace` of both spans runs
//! throughout: the media thread copies every RTP/RTCP datagram into the
//! trace tap's ring, which the control plane drains.

use std::net::UdpSocket;
use std::time::Duration;

use tdmgw::isdn::port::FrameRings;
use tdmgw::line::driver::pair::End;
use tdmgw::line::span::SpanConfig;
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams};
use tdmgw::media::engine::{EngineParams, MediaCore, MediaLoop, SpanParams};
use tdmgw::media::lines::{
    LineDriverParams, LinePort, LinePortParams, LineSpanParams, PairParams, pair_line,
};
use tdmgw::media::trace_tap::{TAP_RING_DEFAULT, trace_tap};
use tdmgw::ops::layer_metrics::{LOOP_OVERRUN_DEFAULT_US, MediaLoopMetrics};

mod common;
use common::counting_alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Line time to run, in frames of span 1 (3 s).
const FRAMES: u64 = 3 * 8000;

fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x0BAD_CAFEu32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn line_port_with_dchannel_rings_allocates_nothing() {
    let span = |id| SpanConfig {
        span_id: id,
        ..SpanConfig::default()
    };
    let (mut near, far) = pair_line(PairParams::default()).unwrap();
    // One bit error in 400,000 towards span 1 (about 5 a second): FAS,
    // CRC-4 and FCS errors go through their counters too.
    near.line_mut().set_bit_error_every(End::A, 400_000);
    let (mut port, mut lines) = LinePort::open(LinePortParams::new(vec![
        LineSpanParams::new(span(1), LineDriverParams::Pair(near)),
        LineSpanParams::new(span(2), LineDriverParams::PairFar(far)),
    ]))
    .unwrap();
    let ep = EngineParams::new(
        vec![SpanParams::pri(1), SpanParams::pri(2)],
        "127.0.0.1".parse().unwrap(),
        0,
        3,
    );
    let (core, mut ctl) = MediaCore::new(&ep).unwrap();
    let mut lp = MediaLoop::new(core).unwrap();
    // The daemon's per-turn telemetry runs on the media thread too.
    let loop_metrics = MediaLoopMetrics::new("media-0", LOOP_OVERRUN_DEFAULT_US);
    let (tap, mut tap_ctl) = trace_tap(2, TAP_RING_DEFAULT);
    lp.set_trace_tap(tap);
    tap_ctl.set_span(1, true);
    tap_ctl.set_span(2, true);
    let ts1 = |span| {
        lp.core()
            .channel_index(ChannelId { span, timeslot: 1 })
            .unwrap()
    };
    let in1 = lp.rtp_addr(ts1(1)).unwrap().0;
    let x = UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = UdpSocket::bind("127.0.0.1:0").unwrap();
    y.set_nonblocking(true).unwrap();
    for (span, to) in [(1, x.local_addr().unwrap()), (2, y.local_addr().unwrap())] {
        let mut p = ConnectParams::new(to, Codec::Pcma);
        p.dtmf_detect = false;
        let ch = ChannelId { span, timeslot: 1 };
        ctl.commands
            .try_push(Command::Connect { ch, params: p })
            .unwrap();
    }
    let mut d1 = lines.dchannels[0].take().unwrap();
    let mut d2 = lines.dchannels[1].take().unwrap();
    // Start-up: the first turn registers the port's descriptor.
    lp.turn(&mut port, Some(Duration::ZERO)).unwrap();

    let mut buf = [0u8; 300];
    let (mut sent, mut got1, mut got2) = (0u32, 0u32, 0u32);
    let mut seq = 0u16;
    let mut rtp_out = 0usize;
    let mut turns = 0;
    let (mut traced_in, mut traced_out) = (0u32, 0u32);
    while lines.status[0].read().counters.frame_periods < FRAMES {
        turns += 1;
        assert!(turns < 200_000, "line time does not advance");
        counting_alloc::track(true);
        let r = lp.turn(&mut port, Some(Duration::from_millis(2)));
        loop_metrics.observe_turn(&lp);
        counting_alloc::track(false);
        r.unwrap();
        // The control plane: D-channel frames both ways, RTP in.
        if turns % 4 == 0 && sent < 400 {
            let f = sent.to_be_bytes();
            if d1.push_transmit(&[0x00, 0x01, f[2], f[3], 0xA5])
                && d2.push_transmit(&[0x02, 0x01, f[2], f[3], 0x5A])
            {
                sent += 1;
            }
        }
        while let Some(n) = d2.pop_received(&mut buf) {
            assert!(n == 5 && buf[..2] == [0x00, 0x01] && buf[4] == 0xA5);
            got2 += 1;
        }
        while let Some(n) = d1.pop_received(&mut buf) {
            assert!(n == 5 && buf[..2] == [0x02, 0x01] && buf[4] == 0x5A);
            got1 += 1;
        }
        let line_ms = lines.status[0].read().counters.frame_periods / 8;
        if u64::from(seq) * 20 < line_ms {
            x.send_to(&rtp_packet(seq, &[0x2A; 160]), in1).unwrap();
            seq += 1;
        }
        let mut pkt = [0u8; 1500];
        while let Ok((n, _)) = y.recv_from(&mut pkt) {
            rtp_out += pkt[12..n].iter().filter(|&&o| o == 0x2A).count();
        }
        while lines.events.try_pop().is_some() {}
        while let Some(p) = tap_ctl.try_pop() {
            assert!(!p.rtcp || p.payload()[1] >= 200, "{p:?}");
            if p.sent {
                traced_out += 1;
            } else {
                traced_in += 1;
            }
        }
    }
    let (allocs, frees) = counting_alloc::counts();
    let s1 = lines.status[0].read();
    let s2 = lines.status[1].read();
    eprintln!(
        "{turns} turns, {sent} D-channel frames each way ({got2} / {got1} received), \
         {rtp_out} tone octets out, span 1 {s1:?}"
    );
    eprintln!(
        "traced {traced_in} datagrams in, {traced_out} out, {} lost to a full ring",
        tap_ctl.overflows()
    );
    assert_eq!(
        (allocs, frees),
        (0, 0),
        "allocations / frees on the media thread"
    );
    // The trace saw what went through the sockets: RTP into span 1 and out
    // of span 2 (about 150 packets each way in 3 s).
    assert!(
        traced_in >= 100 && traced_out >= 100,
        "{traced_in} {traced_out}"
    );
    assert_eq!(tap_ctl.overflows(), 0);
    // Everything ran: frames both ways (bit errors may cost a few), audio
    // across the line, bit errors counted.
    assert!(sent >= 100, "{sent}");
    assert!(
        got1 * 10 >= sent * 9 && got2 * 10 >= sent * 9,
        "{got1} {got2}"
    );
    assert!(rtp_out >= 8000, "{rtp_out}");
    assert!(s1.counters.deframer.crc4_errors + s1.counters.deframer.fas_errors > 0);
    assert!(s2.counters.hdlc_rx.frames >= u64::from(got2));
    // Span 1's CRC-4 errors go back to span 2 as E bits: span 2's far-end
    // errored seconds, published through the status words like the rest.
    assert!(s2.counters.deframer.febe > 0, "{s2:?}");
    assert!(s2.far_es > 0 && s2.far_interval.es > 0, "{s2:?}");
}
