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
