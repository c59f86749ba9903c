//! The simulated exchange against a user-side peer built from the same
//! pieces (a `RawSpan` + user-role `DChannel` that answers, echoes the
//! B-channels and places calls of its own), over SAToP on 127.0.0.1 and
//! over an in-process pair line. Real time: each run lasts a few seconds.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tdmgw::line::driver::pair::PairConfig;
use tdmgw::line::driver::satop::SatopParams;
use tdmgw::sim::{
    AudioMode, ExchangeConfig, ExchangeReport, Incoming, RunControl, Scenario, pair_wire,
    run_pair_end, run_satop,
};

/// The exchange: five calls (999 and 101 from 0207946000), every second
/// one left for the peer to clear, every second connected one with DTMF,
/// the fifth to a number the peer rejects with 17 (user busy); it rejects
/// the peer's calls to 118 with 21 (call rejected).
fn exchange_cfg() -> ExchangeConfig {
    let mut c = ExchangeConfig::network(Scenario {
        calls: 5,
        rate_per_s: 20.0,
        hold: Duration::from_millis(600),
        called: vec!["999".into(), "101".into(), "999".into(), "101".into(), "123".into()],
        calling: Some("0207946000".into()),
        far_clear_every: 2,
        far_clear_grace: Duration::from_secs(3),
        dtmf_every: 2,
        dtmf_digits: "12#".into(),
        incoming: Incoming::Answer {
            ring: Duration::from_millis(50),
        },
        reject_numbers: vec![("118".into(), 21)],
        expect_incoming: 3,
        expected_causes: vec![17],
        // A busy test box may hold a thread off the CPU long enough for
        // the SAToP playout to slip once in a short call.
        max_loss_percent: 5.0,
        ..Scenario::default()
    });
    c.run_for = Duration::from_secs(15);
    c
}

/// The peer: answers after 100 ms and clears answered calls after 900 ms
/// (so the exchange's far-clear calls end from here), rejects 123 with 17,
/// echoes every B-channel, and places two calls to 101 and one to 118.
fn peer_cfg() -> ExchangeConfig {
    let mut c = ExchangeConfig::user(Scenario {
        calls: 3,
        rate_per_s: 10.0,
        hold: Duration::from_millis(500),
        called: vec!["101".into(), "118".into(), "101".into()],
        calling: Some("01632960000".into()),
        incoming: Incoming::Answer {
            ring: Duration::from_millis(100),
        },
        reject_numbers: vec![("123".into(), 17)],
        incoming_hold: Some(Duration::from_millis(900)),
        expect_incoming: 5,
        expected_causes: vec![21],
        audio: AudioMode::Echo,
        ..Scenario::default()
    });
    c.run_for = Duration::from_secs(15);
    c
}

/// Waits until both runs are done (bounded), then stops both.
fn stop_when_both_done(a: &RunControl, b: &RunControl) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !(a.done.load(Ordering::Relaxed) && b.done.load(Ordering::Relaxed))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.stop.store(true, Ordering::Relaxed);
    b.stop.store(true, Ordering::Relaxed);
}

fn controls() -> (RunControl, RunControl) {
    let c = || RunControl {
        wait_for_stop: true,
        ..RunControl::default()
    };
    (c(), c())
}

fn check(ex: &ExchangeReport, peer: &ExchangeReport) {
    let ex_json = serde_json::to_string_pretty(ex).unwrap();
    let peer_json = serde_json::to_string_pretty(peer).unwrap();
    assert!(ex.ok, "exchange: {ex_json}");
    assert!(peer.ok, "peer: {peer_json}");
    // Exchange -> peer: five placed, four answered and completed, one
    // rejected by the peer with its cause.
    assert_eq!(ex.outgoing.calls, 5);
    assert_eq!(ex.outgoing.answered, 4, "{ex_json}");
    assert_eq!(ex.outgoing.completed, 4, "{ex_json}");
    assert_eq!(ex.outgoing.failed_by_cause.get("17"), Some(&1), "{ex_json}");
    assert_eq!(ex.outgoing.cleared_by_far_end, 2 + 1, "two far-clear calls and the rejection");
    // Peer -> exchange: two answered and completed, 118 rejected with 21.
    assert_eq!(ex.incoming.calls, 3);
    assert_eq!(ex.incoming.rejected, 1);
    assert_eq!(ex.incoming.completed, 2, "{ex_json}");
    assert_eq!(peer.outgoing.failed_by_cause.get("21"), Some(&1), "{peer_json}");
    assert_eq!(peer.incoming.calls, 5);
    assert_eq!(peer.incoming.rejected, 1);
    // Every connected call's audio checked and passed on the exchange.
    assert_eq!(ex.audio.checks, 6, "{ex_json}");
    assert_eq!(ex.audio.passed, 6, "{ex_json}");
    assert!(ex.audio.rtt_frames_min.is_some_and(|r| r > 0));
    // DTMF: every second connected call sent 12#, the peer heard it and
    // its echo came back.
    assert_eq!(ex.dtmf.calls_sending, 3, "{ex_json}");
    assert_eq!(ex.dtmf.calls_matched, 3, "{ex_json}");
    assert_eq!(peer.dtmf.digits_received, 9, "{peer_json}");
    assert!(ex.channels_idle_at_end && peer.channels_idle_at_end);
    assert_eq!(ex.calls.len(), 8);
    // The JSON carries what the CLI prints.
    let v: serde_json::Value = serde_json::from_str(&ex_json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["role"], "network");
    assert_eq!(v["outgoing"]["failed_by_cause"]["17"], 1);
    assert_eq!(v["audio"]["passed"], 6);
    assert!(v["calls"].as_array().unwrap().iter().all(|c| c["failure"].is_null()));
}

#[test]
fn exchange_and_peer_over_a_pair_line() {
    let (wire, a, b) = pair_wire(PairConfig::default());
    let (stop_wire, wire_thread) = wire.spawn();
    let (ca, cb) = controls();
    let (ex, peer) = std::thread::scope(|s| {
        let ex = s.spawn(|| run_pair_end(&exchange_cfg(), a, &ca));
        let peer = s.spawn(|| run_pair_end(&peer_cfg(), b, &cb));
        stop_when_both_done(&ca, &cb);
        (ex.join().unwrap(), peer.join().unwrap())
    });
    stop_wire.store(true, Ordering::Relaxed);
    let ws = wire_thread.join().unwrap();
    // Underruns (a thread held off the CPU > 8 ms) would show as audio loss.
    let _ = ws;
    check(&ex.unwrap(), &peer.unwrap());
}

fn free_udp_addr() -> std::net::SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

#[test]
fn exchange_and_peer_over_satop_on_loopback() {
    let (ea, pa) = (free_udp_addr(), free_udp_addr());
    let mut ex_params = SatopParams::new(ea, pa);
    let mut peer_params = SatopParams::new(pa, ea);
    ex_params.playout_ms = 16;
    peer_params.playout_ms = 16;
    let (ca, cb) = controls();
    let (ex, peer) = std::thread::scope(|s| {
        let ex = s.spawn(|| run_satop(&exchange_cfg(), ex_params, &ca));
        let peer = s.spawn(|| run_satop(&peer_cfg(), peer_params, &cb));
        stop_when_both_done(&ca, &cb);
        (ex.join().unwrap(), peer.join().unwrap())
    });
    check(&ex.unwrap(), &peer.unwrap());
}

#[test]
fn no_far_end_times_out_and_reports_it() {
    let (wire, a, _b) = pair_wire(PairConfig::default());
    let (stop_wire, wire_thread) = wire.spawn();
    let mut cfg = exchange_cfg();
    cfg.run_for = Duration::from_millis(500);
    let rep = run_pair_end(&cfg, a, &RunControl::default()).unwrap();
    stop_wire.store(true, Ordering::Relaxed);
    wire_thread.join().unwrap();
    assert!(!rep.ok);
    assert!(rep.timed_out);
    assert!(!rep.link_up);
    assert!(rep.failures.iter().any(|f| f.contains("never came up")), "{:?}", rep.failures);
}
