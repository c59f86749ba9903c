//! The DAHDI driver driven end to end against a simulated card: every
//! channel of an E1 PRI span is a SOCK_SEQPACKET socketpair whose far end
//! the test plays (one D-channel frame + 2 FCS octets per message, one
//! 160-octet block per B-channel message), with the ioctls emulated.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tdmgw::line::driver::dahdi::seqpacket::{CardSpan, SeqpacketCard, SeqpacketChannel};
use tdmgw::line::driver::dahdi::sys::{self, DahdiSpanInfo};
use tdmgw::line::driver::dahdi::{
    B_BLOCK_OCTETS, D_FRAME_MAX, DahdiError, DahdiEvent, DahdiSpan, DahdiSpanParams, LineAlarms,
    SpanEvent, e1_b_timeslots,
};

type Span = DahdiSpan<SeqpacketChannel>;

fn open_span(span: u16, base: u16, b: u8) -> (SeqpacketCard, CardSpan, Span) {
    let (mut card, ends) = SeqpacketCard::e1_pri(span, base, b, sys::DAHDI_SIG_HDLCFCS).unwrap();
    let dahdi = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(span, base, b)).unwrap();
    (card, ends, dahdi)
}

fn events(span: &mut Span) -> Vec<SpanEvent> {
    std::iter::from_fn(|| span.poll_event()).collect()
}

/// A Q.921 SABME (TEI 0, SAPI 0, command from the network) and an I-frame
/// whose information field is full of flag and escape octets.
const SABME: [u8; 3] = [0x02, 0x01, 0x7F];

fn i_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x00, 0x01, 0x00, 0x00];
    f.extend((0..len - 4).map(|i| [0x7E, 0x7D, 0xFF, i as u8][i % 4]));
    f
}

#[test]
fn opens_and_configures_a_whole_span() {
    let (card, ends, span) = open_span(1, 1, 30);
    assert_eq!(ends.d.channo, 16);
    assert_eq!(span.params().d_channel, 16);
    let ts: Vec<u8> = span.b_timeslots().collect();
    assert_eq!(ts, e1_b_timeslots().collect::<Vec<_>>());
    assert!(!ts.contains(&16) && ts.len() == 30);
    // D-channel: chan_dahdi's buffers, no blocksize; B: blocksize 160.
    let d = card.bufinfo(16).unwrap();
    assert_eq!(
        (d.numbufs, d.bufsize, d.txbufpolicy, d.rxbufpolicy),
        (32, 1024, 0, 0)
    );
    assert_eq!(card.blocksize(16), None);
    for (ts, end) in &ends.b {
        assert_eq!(end.channo, u16::from(*ts), "timeslot N is channel base+N-1");
        assert_eq!(card.blocksize(end.channo), Some(B_BLOCK_OCTETS));
        assert_eq!(card.bufinfo(end.channo).unwrap().bufsize, 160);
    }
    // Every fd is non-blocking (the media thread registers them with mio).
    let flags = fcntl(span.d_channel_fd(), FcntlArg::F_GETFL).unwrap();
    assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
    for ts in span.b_timeslots() {
        let fd = span.b_channel_fd(ts).unwrap();
        let flags = fcntl(fd, FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
    }
    assert!(span.b_channel_fd(16).is_none() && span.b_channel_fd(0).is_none());
    assert_eq!(span.b_channel_raw_fds().count(), 30);
    assert_eq!(span.status().alarms, LineAlarms::NONE);
    assert_eq!(span.status().span, 1);
}

#[test]
fn second_span_channel_numbers() {
    // Span 2 of a quad card: base channel 32, D-channel 47.
    let (_card, ends, span) = open_span(2, 32, 30);
    assert_eq!(ends.d.channo, 47);
    assert_eq!(span.params().d_channel, 47);
    assert_eq!(ends.b[0].1.channo, 32);
    assert_eq!(ends.b[14].1.channo, 46); // TS15
    assert_eq!(ends.b[15].1.channo, 48); // TS17
    assert_eq!(ends.b[29].1.channo, 62); // TS31
}

#[test]
fn d_channel_frames_both_ways() {
    let (_card, ends, mut span) = open_span(1, 1, 30);
    let long = i_frame(D_FRAME_MAX);
    ends.d.send_frame(&SABME).unwrap();
    ends.d.send_frame(&long).unwrap();
    ends.d.send_frame(&i_frame(20)).unwrap();
    assert_eq!(span.recv_d_frame().unwrap(), Some(&SABME[..]));
    assert_eq!(span.recv_d_frame().unwrap(), Some(&long[..]));
    assert_eq!(span.recv_d_frame().unwrap().map(<[u8]>::len), Some(20));
    assert_eq!(span.recv_d_frame().unwrap(), None);

    // Our frames reach the card with 2 spare octets for the FCS.
    let ua = [0x02, 0x01, 0x73];
    assert!(span.send_d_frame(&ua).unwrap());
    assert!(span.send_d_frame(&long).unwrap());
    let mut buf = [0u8; 1024];
    let n = ends.d.recv(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], &[0x02, 0x01, 0x73, 0, 0]);
    let n = ends.d.recv(&mut buf).unwrap().unwrap();
    assert_eq!(n, D_FRAME_MAX + 2);
    assert_eq!(&buf[..D_FRAME_MAX], &long[..]);
    assert_eq!(ends.d.recv(&mut buf).unwrap(), None);

    let c = span.counters();
    assert_eq!((c.d_frames_rx, c.d_frames_tx), (3, 2));
    assert_eq!(c.d_octets_rx, 3 + D_FRAME_MAX as u64 + 20);
    assert!(matches!(
        span.send_d_frame(&i_frame(D_FRAME_MAX + 1)),
        Err(DahdiError::FrameTooLong { len: 265 })
    ));
}

#[test]
fn b_channel_blocks_both_ways_on_all_30() {
    let (_card, ends, mut span) = open_span(1, 1, 30);
    for (ts, end) in &ends.b {
        end.send(&[*ts; B_BLOCK_OCTETS]).unwrap();
    }
    for ts in e1_b_timeslots() {
        let block = span.recv_b_block(ts).unwrap().unwrap();
        assert_eq!(block, &[ts; B_BLOCK_OCTETS][..], "ts {ts}");
        assert_eq!(span.recv_b_block(ts).unwrap(), None);
        let mut out = [0xD5u8; B_BLOCK_OCTETS];
        out[0] = ts;
        assert!(span.send_b_block(ts, &out).unwrap());
    }
    let mut buf = [0u8; 512];
    for (ts, end) in &ends.b {
        let n = end.recv(&mut buf).unwrap().unwrap();
        assert_eq!(n, B_BLOCK_OCTETS);
        assert_eq!(buf[0], *ts);
        assert!(buf[1..n].iter().all(|&o| o == 0xD5));
    }
    let c = span.counters();
    assert_eq!(
        (c.b_blocks_rx, c.b_blocks_tx, c.b_short_blocks),
        (30, 30, 0)
    );
    assert!(matches!(
        span.recv_b_block(16),
        Err(DahdiError::NoSuchTimeslot(16))
    ));
    // A short block is delivered and counted.
    ends.b[0].1.send(&[1, 2, 3]).unwrap();
    assert_eq!(span.recv_b_block(1).unwrap(), Some(&[1, 2, 3][..]));
    assert_eq!(span.counters().b_short_blocks, 1);
}

#[test]
fn short_reads_and_oversize_frames_are_counted_and_skipped() {
    let (_card, ends, mut span) = open_span(1, 1, 30);
    ends.d.send(&[0x02]).unwrap();
    ends.d.send(&[0x02, 0x01]).unwrap();
    ends.d.send(&vec![0x55; D_FRAME_MAX + 1 + 2]).unwrap();
    ends.d.send_frame(&SABME).unwrap();
    assert_eq!(span.recv_d_frame().unwrap(), Some(&SABME[..]));
    let c = span.counters();
    assert_eq!((c.d_short_reads, c.d_oversize, c.d_frames_rx), (2, 1, 1));
}

#[test]
fn hdlc_events_on_short_reads_are_fetched_and_counted() {
    let (card, ends, mut span) = open_span(1, 1, 30);
    card.raise_event(16, DahdiEvent::BADFCS.0);
    card.raise_event(16, DahdiEvent::ABORT.0);
    card.raise_event(16, DahdiEvent::OVERRUN.0);
    card.raise_event(16, DahdiEvent::BADFCS.0);
    ends.d.send_frame(&SABME).unwrap();
    // The read fails with ELAST; GETEVENT drains all four; the frame follows.
    assert_eq!(span.recv_d_frame().unwrap(), Some(&SABME[..]));
    assert_eq!(card.pending_events(16), 0);
    let c = span.counters();
    assert_eq!(
        (c.hdlc_bad_fcs, c.hdlc_aborts, c.hdlc_overruns, c.events),
        (2, 1, 1, 4)
    );
    let ev = events(&mut span);
    assert_eq!(ev.len(), 4);
    assert_eq!(
        ev[0],
        SpanEvent::Channel {
            channo: 16,
            timeslot: 16,
            event: DahdiEvent::BADFCS
        }
    );
    assert_eq!(
        ev[2],
        SpanEvent::Channel {
            channo: 16,
            timeslot: 16,
            event: DahdiEvent::OVERRUN
        }
    );
    // An unknown event code is kept as is.
    card.raise_event(16, 77);
    assert_eq!(span.recv_d_frame().unwrap(), None);
    assert_eq!(
        events(&mut span),
        vec![SpanEvent::Channel {
            channo: 16,
            timeslot: 16,
            event: DahdiEvent(77)
        }]
    );
}

#[test]
fn write_with_event_pending_fetches_it_then_sends() {
    let (card, ends, mut span) = open_span(1, 1, 30);
    card.raise_event(16, DahdiEvent::BADFCS.0);
    assert!(span.send_d_frame(&SABME).unwrap());
    let mut buf = [0u8; 64];
    assert_eq!(ends.d.recv(&mut buf).unwrap(), Some(5));
    assert_eq!(span.counters().hdlc_bad_fcs, 1);
}

#[test]
fn alarms_are_reported_from_spanstat_and_cleared() {
    let (card, ends, mut span) = open_span(1, 1, 30);
    card.alarm(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS);
    // The D-channel read meets ELAST, GETEVENT gives ALARM, SPANSTAT says why.
    assert_eq!(span.recv_d_frame().unwrap(), None);
    let red = LineAlarms::RED | LineAlarms::LOS;
    assert_eq!(
        events(&mut span),
        vec![SpanEvent::Alarms {
            old: LineAlarms::NONE,
            new: red
        }]
    );
    assert!(span.status().alarms.is_red());
    assert_eq!(span.status().alarms.to_string(), "LOS|RED");
    // The same ALARM on a B-channel re-reads SPANSTAT but reports no change.
    ends.b[4].1.send(&[0xD5; 160]).unwrap();
    assert!(span.recv_b_block(5).unwrap().is_some());
    assert_eq!(events(&mut span), vec![]);

    // Far end now sends AIS, then RAI only, then all clear.
    card.alarm(sys::DAHDI_ALARM_BLUE);
    assert_eq!(span.recv_d_frame().unwrap(), None);
    assert_eq!(
        events(&mut span),
        vec![SpanEvent::Alarms {
            old: red,
            new: LineAlarms::AIS
        }]
    );
    card.set_alarms(sys::DAHDI_ALARM_YELLOW);
    span.refresh_status().unwrap();
    assert_eq!(
        events(&mut span),
        vec![SpanEvent::Alarms {
            old: LineAlarms::AIS,
            new: LineAlarms::RAI
        }]
    );
    assert!(span.status().alarms.is_yellow());
    card.alarm(0);
    assert_eq!(span.recv_d_frame().unwrap(), None);
    assert_eq!(
        events(&mut span),
        vec![SpanEvent::Alarms {
            old: LineAlarms::RAI,
            new: LineAlarms::NONE
        }]
    );
    assert!(span.status().alarms.is_empty());
}

#[test]
fn line_counters_come_from_spanstat() {
    let (card, _ends, mut span) = open_span(1, 1, 30);
    card.set_spaninfo(DahdiSpanInfo {
        spanno: 1,
        alarms: sys::DAHDI_ALARM_LMFA,
        bpvcount: 12,
        crc4count: 34,
        ebitcount: 5,
        fascount: 6,
        errsec: 7,
        irqmisses: 2,
        syncsrc: 1,
        ..Default::default()
    });
    let s = span.refresh_status().unwrap();
    assert_eq!(s.counters.bipolar_violations, 12);
    assert_eq!(s.counters.crc4_errors, 34);
    assert_eq!(s.counters.ebit_errors, 5);
    assert_eq!(s.counters.fas_errors, 6);
    assert_eq!(s.counters.errored_seconds, 7);
    assert_eq!(s.counters.irq_misses, 2);
    assert_eq!(s.sync_source, 1);
    assert!(s.alarms.contains(LineAlarms::LOMF) && s.alarms.is_red());
    assert_eq!(span.status(), s);
}

#[test]
fn refuses_a_d_channel_without_hdlc_fcs() {
    for sig in [
        sys::DAHDI_SIG_HDLCRAW,
        sys::DAHDI_SIG_CLEAR,
        sys::DAHDI_SIG_HDLCNET,
        0,
    ] {
        let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 30, sig).unwrap();
        match DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 30)) {
            Err(DahdiError::NotHdlcFcs {
                channo: 16,
                sigtype,
            }) => assert_eq!(sigtype, sig),
            other => panic!("sigtype {sig:#x}: {:?}", other.err()),
        }
    }
    // hardhdlc is HDLC with FCS done by the card: accepted, as chan_dahdi does.
    let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 30, sys::DAHDI_SIG_HARDHDLC).unwrap();
    assert!(DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 30)).is_ok());
}

#[test]
fn refuses_misconfigured_b_channels_and_spans() {
    let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 30, sys::DAHDI_SIG_HDLCFCS).unwrap();
    let p = sys::DahdiParams {
        spanno: 1,
        sigtype: sys::DAHDI_SIG_HDLCFCS,
        ..Default::default()
    };
    card.set_params(5, p);
    let e = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 30))
        .err()
        .unwrap();
    assert!(matches!(e, DahdiError::NotClear { channo: 5, .. }), "{e}");
    assert!(e.to_string().contains("bchan"));

    // The profile says span 2 but the channels are on span 1.
    let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 30, sys::DAHDI_SIG_HDLCFCS).unwrap();
    let e = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(2, 1, 30))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            DahdiError::WrongSpan {
                channo: 16,
                expected: 2,
                found: 1
            }
        ),
        "{e}"
    );

    // A channel dahdi_cfg never configured cannot be specified.
    let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 10, sys::DAHDI_SIG_HDLCFCS).unwrap();
    let e = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 11))
        .err()
        .unwrap();
    assert!(matches!(e, DahdiError::Open { channo: 11, .. }), "{e}");

    let (mut card, _ends) = SeqpacketCard::e1_pri(1, 1, 30, sys::DAHDI_SIG_HDLCFCS).unwrap();
    assert!(matches!(
        DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 31)),
        Err(DahdiError::Params(_))
    ));
    assert!(matches!(
        DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(0, 1, 30)),
        Err(DahdiError::Params(_))
    ));
}

#[test]
fn full_card_buffers_make_sends_return_false() {
    let (_card, ends, mut span) = open_span(1, 1, 2);
    let frame = i_frame(200);
    let mut sent = 0;
    while span.send_d_frame(&frame).unwrap() {
        sent += 1;
        assert!(sent < 1_000_000, "socket never filled");
    }
    assert!(sent > 0);
    assert_eq!(span.counters().d_tx_busy, 1);
    // The card drains one frame; the next send goes through.
    let mut buf = [0u8; 512];
    assert_eq!(ends.d.recv(&mut buf).unwrap(), Some(202));
    assert!(span.send_d_frame(&frame).unwrap());

    let block = [0xD5u8; B_BLOCK_OCTETS];
    let mut sent = 0;
    while span.send_b_block(1, &block).unwrap() {
        sent += 1;
        assert!(sent < 1_000_000);
    }
    assert_eq!(span.counters().b_tx_busy, 1);
}

#[test]
fn a_vanished_card_is_an_error_not_a_spin() {
    let (_card, ends, mut span) = open_span(1, 1, 2);
    drop(ends);
    assert!(matches!(
        span.recv_d_frame(),
        Err(DahdiError::Closed { channo: 16 })
    ));
    assert!(matches!(
        span.recv_b_block(1),
        Err(DahdiError::Closed { channo: 1 })
    ));
}

#[test]
fn event_ring_overflow_is_counted() {
    let (card, _ends, mut span) = open_span(1, 1, 2);
    for _ in 0..3 {
        for _ in 0..20 {
            card.raise_event(16, DahdiEvent::BADFCS.0);
        }
        assert_eq!(span.recv_d_frame().unwrap(), None);
    }
    let c = span.counters();
    assert_eq!(c.hdlc_bad_fcs, 60);
    assert_eq!(c.events_dropped, 60 - 32);
    assert_eq!(events(&mut span).len(), 32);
}

#[test]
fn fds_signal_readiness_to_poll() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let (_card, ends, mut span) = open_span(1, 1, 2);
    assert!(span.d_channel_raw_fd() >= 0);
    let idle = {
        let mut fds = [PollFd::new(span.d_channel_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap()
    };
    assert_eq!(idle, 0);
    ends.d.send_frame(&SABME).unwrap();
    let ready = {
        let mut fds = [PollFd::new(span.d_channel_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap()
    };
    assert_eq!(ready, 1);
    assert_eq!(span.recv_d_frame().unwrap(), Some(&SABME[..]));
}
