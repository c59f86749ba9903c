//! The media thread shell: `engine::spawn` runs a `MediaLoop` clocked by a
//! timer-driven simulated E1 line, two channels of the same engine talk RTP
//! to each other over loopback, the loop checks in every turn and stops when
//! told. Real-time settings that the test process may not have (an absent
//! CPU) are warnings, not failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tdmgw::media::control::{Codec, Command, ConnectParams, Event};
use tdmgw::media::engine::{EngineParams, MediaCore, MediaLoop, SpanParams, ThreadParams, spawn};
use tdmgw::media::tdm::{E1Frame, FrameSource, SimE1};

struct Tone;

impl FrameSource for Tone {
    fn rx_frame(&mut self, _span: usize, frame_no: u64, rx: &mut E1Frame) {
        // A 1 kHz square-ish A-law pattern on every timeslot.
        *rx = [if frame_no % 8 < 4 { 0xA5 } else { 0x25 }; 32];
    }
    fn tx_frame(&mut self, _span: usize, _frame_no: u64, _tx: &E1Frame) {}
}

#[test]
fn media_thread_runs_checks_in_and_stops() {
    let params = EngineParams::new(
        vec![SpanParams {
            number: 1,
            timeslots: vec![1, 2],
        }],
        "127.0.0.1".parse().unwrap(),
        0,
        9,
    );
    let (core, mut ctl) = MediaCore::new(&params).unwrap();
    let lp = MediaLoop::new(core).unwrap();
    let a = lp.rtp_addr(0).unwrap().0;
    let b = lp.rtp_addr(1).unwrap().0;
    let port = SimE1::timed(1, Tone).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let hb = beats.clone();
    let tp = ThreadParams {
        name: "media-test".into(),
        cpu: Some(4095), // absent: a warning, not a failure
        sched_fifo_priority: None,
        mlockall: false,
    };
    let h = spawn(lp, port, tp, stop.clone(), move |_: &MediaLoop| {
        hb.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    for (ch, peer) in [(ctl.stats.ids[0], b), (ctl.stats.ids[1], a)] {
        let params = ConnectParams::new(peer, Codec::Pcma);
        ctl.commands
            .try_push(Command::Connect { ch, params })
            .unwrap();
    }
    // Liveness bound only (never a timing assertion): wait until both
    // channels heard each other's first packet.
    let mut first = 0;
    for _ in 0..2000 {
        while let Some(e) = ctl.events.try_pop() {
            if matches!(e, Event::FirstRtp { .. }) {
                first += 1;
            }
        }
        if first == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(first, 2, "both directions flowing");
    stop.store(true, Ordering::Relaxed);
    let (lp, port) = h.join().unwrap().unwrap();
    assert!(beats.load(Ordering::Relaxed) > 0, "checked in");
    assert!(lp.counters.datagrams_out >= 2 && lp.counters.datagrams_in >= 2);
    assert!(port.frames() > 0);
    assert_eq!(lp.counters.send_errors, 0);
}

/// An engine of one channel on ports from a free base (as in production),
/// turned by hand: 8 E1 frames (1 ms) per turn.
fn one_channel_engine() -> (MediaLoop, tdmgw::media::engine::ControlHandle) {
    let params = EngineParams::new(
        vec![SpanParams {
            number: 1,
            timeslots: vec![1],
        }],
        "127.0.0.1".parse().unwrap(),
        0,
        11,
    );
    MediaLoop::bind_first_free(&params, (22_000u16..60_000).step_by(977)).expect("a free port pair")
}

fn rtp(seq: u16, ssrc: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(12 + len, 0xD5);
    p
}

/// Once the channel latched a source its socket is connected to it: a
/// stranger's datagrams never reach the engine, and the engine's packets
/// go to the source. A new remote un-connects it, and the next source is
/// latched and connected in turn; a datagram larger than the receive
/// buffer is counted as too long, not parsed. Ends with a disconnect,
/// which leaves the socket open to any source again.
#[test]
fn latched_socket_is_connected_until_the_latch_is_reset() {
    use tdmgw::media::rtp::RtpError;
    let (mut lp, mut ctl) = one_channel_engine();
    let ch = ctl.stats.ids[0];
    let engine = lp.rtp_addr(0).unwrap().0;
    let bind = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    };
    let (a, stranger) = (bind(), bind());
    let mut port = SimE1::manual(1, 8, Tone);
    let mut turn = |lp: &mut MediaLoop, ms: u32| {
        for _ in 0..ms {
            lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
        }
    };
    let connect = |ctl: &mut tdmgw::media::engine::ControlHandle, to: &std::net::UdpSocket| {
        let params = ConnectParams::new(to.local_addr().unwrap(), Codec::Pcma);
        ctl.commands
            .try_push(Command::Connect { ch, params })
            .unwrap();
    };
    connect(&mut ctl, &a);
    turn(&mut lp, 1);
    // Until a source is latched, the socket takes any: the stranger's
    // packet arrives (and latches).
    stranger.send_to(&rtp(1, 0x5757, 160), engine).unwrap();
    turn(&mut lp, 100);
    assert_eq!(lp.counters.datagrams_in, 1);
    assert!(lp.counters.connects == 1, "{:?}", lp.counters);
    let mut buf = [0u8; 2048];
    let (n, from) = stranger.recv_from(&mut buf).expect("symmetric RTP");
    assert_eq!((n, from), (172, engine));

    // Back to `a`: a connect resets the latch and un-connects.
    connect(&mut ctl, &a);
    turn(&mut lp, 1);
    assert_eq!(lp.counters.unconnects, 1, "{:?}", lp.counters);
    for seq in 0..5 {
        a.send_to(&rtp(seq, 0xAAAA, 160), engine).unwrap();
        turn(&mut lp, 20);
    }
    assert_eq!(lp.counters.connects, 2, "{:?}", lp.counters);
    let in_before = lp.counters.datagrams_in;
    assert_eq!(in_before, 6);
    // The stranger is refused by the kernel now, not by the latch.
    for seq in 0..3 {
        stranger.send_to(&rtp(seq, 0x5757, 160), engine).unwrap();
    }
    turn(&mut lp, 20);
    assert_eq!(lp.counters.datagrams_in, in_before, "stranger delivered");
    let wrong = |lp: &MediaLoop, e| lp.core().channel(0).unwrap().counters().rtp_errors.get(e);
    assert_eq!(wrong(&lp, RtpError::WrongSource), 0);
    // A datagram the receive buffer cuts is counted, not parsed.
    a.send_to(&rtp(9, 0xAAAA, 3000), engine).unwrap();
    turn(&mut lp, 2);
    assert_eq!(wrong(&lp, RtpError::TooLong), 1);
    let (_, from) = a.recv_from(&mut buf).expect("packets to the source");
    assert_eq!(from, engine);

    // A new remote: un-connected, the stranger's packets latch again.
    ctl.commands
        .try_push(Command::UpdateRemote {
            ch,
            remote: stranger.local_addr().unwrap(),
            restrict_to_sdp: false,
        })
        .unwrap();
    turn(&mut lp, 1);
    assert_eq!(lp.counters.unconnects, 2, "{:?}", lp.counters);
    stranger.send_to(&rtp(20, 0x5757, 160), engine).unwrap();
    turn(&mut lp, 40);
    assert_eq!(lp.counters.connects, 3, "{:?}", lp.counters);

    // Disconnect: the socket is open to any source again.
    ctl.commands.try_push(Command::Disconnect { ch }).unwrap();
    turn(&mut lp, 1);
    assert_eq!(lp.counters.unconnects, 3, "{:?}", lp.counters);
    let in_before = lp.counters.datagrams_in;
    a.send_to(&rtp(30, 0xAAAA, 160), engine).unwrap();
    turn(&mut lp, 2);
    assert_eq!(lp.counters.datagrams_in, in_before + 1);
    assert_eq!(lp.counters.send_errors, 0);
}

/// The far end closes its port while the channel still sends: on the
/// connected socket the kernel's ICMP port unreachable comes back as
/// `ECONNREFUSED`, counted as such and not as a send or receive error;
/// the loop goes on.
#[test]
fn a_closed_far_port_is_counted_as_unreachable_not_as_an_error() {
    let (mut lp, mut ctl) = one_channel_engine();
    let ch = ctl.stats.ids[0];
    let engine = lp.rtp_addr(0).unwrap().0;
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let params = ConnectParams::new(a.local_addr().unwrap(), Codec::Pcma);
    ctl.commands
        .try_push(Command::Connect { ch, params })
        .unwrap();
    let mut port = SimE1::manual(1, 8, Tone);
    let mut turn = |lp: &mut MediaLoop, ms: u32| {
        for _ in 0..ms {
            lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
        }
    };
    turn(&mut lp, 1);
    a.send_to(&rtp(1, 0xAAAA, 160), engine).unwrap();
    turn(&mut lp, 100);
    assert_eq!(lp.counters.connects, 1, "{:?}", lp.counters);
    drop(a);
    turn(&mut lp, 200);
    let c = lp.counters;
    assert!(c.port_unreachable > 0, "{c:?}");
    assert_eq!((c.send_errors, c.recv_errors), (0, 0), "{c:?}");
    assert!(c.datagrams_out > 5, "{c:?}");
}
