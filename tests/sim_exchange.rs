//! The simulated exchange against a user-side peer built from the same
//! pieces (a `RawSpan` + user-role `DChannel` that answers, echoes the
//! B-channels and places calls of its own): on a pair line in simulated
//! time (everything checked tight, independent of the machine's load), and
//! in real time on a pair line driven from other threads and over SAToP on
//! 127.0.0.1 (a few seconds each; the media checks there allow for a busy
//! test box holding a thread off the CPU, which slips the line).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tdmgw::line::driver::pair::PairConfig;
use tdmgw::line::driver::satop::SatopParams;
use tdmgw::line::driver::serial::{SerialParams, SerialPort};
use tdmgw::line::driver::timing::Timing;
use tdmgw::sim::{
    AudioMode, ExchangeConfig, ExchangeReport, Incoming, RunControl, Scenario, pair_wire,
    run_pair_end, run_pair_simulated, run_satop, run_serial_port,
};

/// The exchange: six calls (999 and 101 from 0207946000), every second
/// one left for the peer to clear, every second connected one with DTMF,
/// the fifth to a number the peer rejects with 17 (user busy), the sixth
/// abandoned while the peer rings; it rejects the peer's calls to 118 with
/// 21 (call rejected).
fn exchange_cfg() -> ExchangeConfig {
    let mut c = ExchangeConfig::network(Scenario {
        calls: 6,
        rate_per_s: 20.0,
        hold: Duration::from_millis(600),
        called: vec![
            "999".into(),
            "101".into(),
            "999".into(),
            "101".into(),
            "123".into(),
            "999".into(),
        ],
        calling: Some("0207946000".into()),
        far_clear_every: 2,
        far_clear_grace: Duration::from_secs(3),
        abandon_every: 6,
        abandon_after: Duration::from_millis(40),
        dtmf_every: 2,
        dtmf_digits: "12#".into(),
        incoming: Incoming::Answer {
            ring: Duration::from_millis(50),
        },
        reject_numbers: vec![("118".into(), 21)],
        expect_incoming: 3,
        expected_causes: vec![17],
        max_loss_percent: 0.0,
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
        expect_incoming: 6,
        // 21: our call to 118; 16: the exchange's call it abandoned.
        expected_causes: vec![21, 16],
        audio: AudioMode::Echo,
        ..Scenario::default()
    });
    c.run_for = Duration::from_secs(15);
    c
}

/// The exchange for the real-time runs: a thread held off the CPU for a
/// few ms slips the line (a SAToP packet or a pair-wire frame played as
/// all ones), so some loss is allowed and the DTMF echo is not required
/// (a slip inside a digit splits or drops it); what the far end heard is
/// still reported.
fn exchange_cfg_realtime() -> ExchangeConfig {
    let mut c = exchange_cfg();
    c.scenario.max_loss_percent = 25.0;
    c.scenario.min_received_percent = 25.0;
    c.scenario.dtmf_expect_echo = false;
    c
}

/// Real-time media: every call's audio checked (and passed within the
/// loose limits), blocks came back, DTMF was sent.
fn check_media_loose(ex: &ExchangeReport, peer: &ExchangeReport) {
    let ex_json = serde_json::to_string_pretty(ex).unwrap();
    assert_eq!(ex.audio.checks, 6, "{ex_json}");
    assert_eq!(ex.audio.passed, 6, "{ex_json}");
    assert!(ex.audio.blocks_received > 0);
    assert_eq!(ex.dtmf.digits_sent, 9);
    assert!(peer.dtmf.digits_received > 0, "{peer:?}");
}

#[test]
fn exchange_and_peer_in_simulated_time() {
    let (ex, peer) = run_pair_simulated(
        &exchange_cfg(),
        &peer_cfg(),
        PairConfig::default(),
        Duration::from_secs(30),
    );
    check(&ex, &peer);
    // Simulated time: the line never slips, every block comes back.
    assert_eq!((ex.audio.blocks_lost, ex.audio.blocks_mismatched), (0, 0));
    assert_eq!((ex.line.fas_errors, ex.line.crc4_errors), (0, 0));
    assert_eq!(ex.line.driver.underruns + peer.line.driver.underruns, 0);
    // The round trip is the wire's prefill (8 ms) each way plus a frame or
    // two of echo: constant, and the same for every call.
    let (lo, hi) = (
        ex.audio.rtt_frames_min.unwrap(),
        ex.audio.rtt_frames_max.unwrap(),
    );
    assert!((128..=160).contains(&lo) && hi - lo <= 8, "{lo}..{hi}");
}

#[test]
fn simulated_runs_are_reproducible() {
    let run = || {
        let (ex, _) = run_pair_simulated(
            &exchange_cfg(),
            &peer_cfg(),
            PairConfig::default(),
            Duration::from_secs(30),
        );
        let mut v = serde_json::to_value(&ex).unwrap();
        v.as_object_mut().unwrap().remove("elapsed_ms");
        v
    };
    assert_eq!(run(), run());
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

/// Everything: calls both ways, audio, DTMF, the JSON.
fn check(ex: &ExchangeReport, peer: &ExchangeReport) {
    check_calls(ex, peer);
    let ex_json = serde_json::to_string_pretty(ex).unwrap();
    let peer_json = serde_json::to_string_pretty(peer).unwrap();
    // Every connected call's audio checked and passed on the exchange.
    assert_eq!(ex.audio.checks, 6, "{ex_json}");
    assert_eq!(ex.audio.passed, 6, "{ex_json}");
    assert!(ex.audio.rtt_frames_min.is_some_and(|r| r > 0));
    // DTMF: every second connected call sent 12#, the peer heard it and
    // its echo came back.
    assert_eq!(ex.dtmf.calls_sending, 3, "{ex_json}");
    assert_eq!(ex.dtmf.calls_matched, 3, "{ex_json}");
    assert_eq!(peer.dtmf.digits_received, 9, "{peer_json}");
    // The JSON carries what the CLI prints.
    let v: serde_json::Value = serde_json::from_str(&ex_json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["role"], "network");
    assert_eq!(v["outgoing"]["failed_by_cause"]["17"], 1);
    assert_eq!(v["audio"]["passed"], 6);
    assert!(
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["failure"].is_null())
    );
}

/// Both runs held and the calls went as the scenarios say.
fn check_calls(ex: &ExchangeReport, peer: &ExchangeReport) {
    let ex_json = serde_json::to_string_pretty(ex).unwrap();
    let peer_json = serde_json::to_string_pretty(peer).unwrap();
    assert!(ex.ok, "exchange: {ex_json}");
    assert!(peer.ok, "peer: {peer_json}");
    // Exchange -> peer: six placed, four answered and completed, one
    // rejected by the peer with its cause, one abandoned while ringing.
    assert_eq!(ex.outgoing.calls, 6);
    assert_eq!(ex.outgoing.abandoned, 1, "{ex_json}");
    assert_eq!(ex.outgoing.answered, 4, "{ex_json}");
    assert_eq!(ex.outgoing.completed, 4, "{ex_json}");
    assert_eq!(ex.outgoing.failed_by_cause.get("17"), Some(&1), "{ex_json}");
    assert_eq!(
        ex.outgoing.cleared_by_far_end,
        2 + 1,
        "two far-clear calls and the rejection"
    );
    // Peer -> exchange: two answered and completed, 118 rejected with 21.
    assert_eq!(ex.incoming.calls, 3);
    assert_eq!(ex.incoming.rejected, 1);
    assert_eq!(ex.incoming.completed, 2, "{ex_json}");
    assert_eq!(
        peer.outgoing.failed_by_cause.get("21"),
        Some(&1),
        "{peer_json}"
    );
    assert_eq!(peer.incoming.calls, 6);
    // The call the exchange abandoned while the peer rang: the caller
    // gave up, not a failure.
    assert_eq!(peer.incoming.abandoned, 1, "{peer_json}");
    assert_eq!(peer.incoming.failed_by_cause.get("16"), None, "{peer_json}");
    assert_eq!(peer.incoming.rejected, 1);
    assert!(ex.channels_idle_at_end && peer.channels_idle_at_end);
    assert_eq!(ex.calls.len(), 9);
}

#[test]
fn exchange_and_peer_over_a_pair_line() {
    let (wire, a, b) = pair_wire(PairConfig::default());
    let (stop_wire, wire_thread) = wire.spawn();
    let (ca, cb) = controls();
    let (ex, peer) = std::thread::scope(|s| {
        let ex = s.spawn(|| run_pair_end(&exchange_cfg_realtime(), a, &ca));
        let peer = s.spawn(|| run_pair_end(&peer_cfg(), b, &cb));
        stop_when_both_done(&ca, &cb);
        (ex.join().unwrap(), peer.join().unwrap())
    });
    stop_wire.store(true, Ordering::Relaxed);
    wire_thread.join().unwrap();
    let (ex, peer) = (ex.unwrap(), peer.unwrap());
    check_calls(&ex, &peer);
    check_media_loose(&ex, &peer);
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
        let ex = s.spawn(|| run_satop(&exchange_cfg_realtime(), ex_params, &ca));
        let peer = s.spawn(|| run_satop(&peer_cfg(), peer_params, &cb));
        stop_when_both_done(&ca, &cb);
        (ex.join().unwrap(), peer.join().unwrap())
    });
    let (ex, peer) = (ex.unwrap(), peer.unwrap());
    check_calls(&ex, &peer);
    check_media_loose(&ex, &peer);
    // The exchange clocked the pseudowire (internal timing).
    assert!(ex.line.frames_sent > 0);
}

/// Run by hand (`cargo test --test sim_exchange -- --ignored`): real time
/// over a pty between two threads, where the serial driver takes 1.5 ms
/// without octets as no signal and feeds the span zeros; on a busy 2-core
/// box that garbles D-channel frames now and then (Q.921 recovers, Q.931
/// §5.9 clears the calls not yet active).
#[test]
#[ignore = "real-time pty between threads: the serial driver's 1.5 ms no-signal rule makes it flaky on a loaded box"]
fn exchange_and_peer_over_a_pty_serial_line() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let name = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut ex_params = SerialParams::new(name.clone(), 2_048_000);
    ex_params.timing = Timing::Internal;
    // The peer clocks itself too (both ends on this host's clock): a
    // loop-timed serial end free-runs whenever its thread sees nothing for
    // 1.5 ms, which a busy test box causes, and then sends frames the
    // exchange never clocked.
    let mut peer_params = SerialParams::new(name, 2_048_000);
    peer_params.timing = Timing::Internal;
    let ex_port = SerialPort::from_fd(pty.master, &ex_params, 0).unwrap();
    let peer_port = SerialPort::from_fd(pty.slave, &peer_params, 0).unwrap();
    // A serial driver takes 1.5 ms without octets as no signal and feeds
    // the span zeros: two threads over a pty on a busy test box get that
    // now and then, so the media checks are loose here (the pair and
    // SAToP tests hold them tight) and DTMF is not required back.
    let ex_cfg = exchange_cfg_realtime();
    let (ca, cb) = controls();
    let (ex, peer) = std::thread::scope(|s| {
        let ex = s.spawn(|| run_serial_port(&ex_cfg, ex_port, &ca));
        let peer = s.spawn(|| run_serial_port(&peer_cfg(), peer_port, &cb));
        stop_when_both_done(&ca, &cb);
        (ex.join().unwrap(), peer.join().unwrap())
    });
    let (ex, peer) = (ex.unwrap(), peer.unwrap());
    check_calls(&ex, &peer);
    check_media_loose(&ex, &peer);
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
    assert!(
        rep.failures.iter().any(|f| f.contains("never came up")),
        "{:?}",
        rep.failures
    );
}

/// Per-number policies and clear plans in simulated time: the exchange
/// clears its calls in the state each plan names and checks the early
/// media of 201 and 202 (the peer sends PROGRESS with indicator 8 and
/// echoes before it answers); the peer rings 203 for ever, rejects 204 with
/// 17 after ringing, answers 205 (cleared by the exchange 200 ms into the
/// active state); the peer's own call to 301, which the exchange lets ring
/// with early media (its default policy), is abandoned by the peer 200 ms
/// after ALERTING, the early media checked on the exchange.
#[test]
fn clear_plans_early_media_and_incoming_policies_in_simulated_time() {
    use tdmgw::sim::exchange::{ClearOn, ClearPlan, IncomingPolicy};
    let plan = |on, ms| ClearPlan {
        on,
        after: Duration::from_millis(ms),
    };
    let mut ex = ExchangeConfig::network(Scenario {
        calls: 5,
        rate_per_s: 20.0,
        called: ["201", "202", "203", "204", "205"]
            .map(String::from)
            .to_vec(),
        early_media: true,
        clear_by_number: vec![
            ("201".into(), plan(ClearOn::Progress, 300)),
            ("202".into(), plan(ClearOn::Active, 300)),
            ("203".into(), plan(ClearOn::Alerting, 100)),
            ("205".into(), plan(ClearOn::Active, 200)),
        ],
        incoming: Incoming::NoAnswer,
        expect_incoming: 1,
        expected_causes: vec![17],
        max_loss_percent: 0.0,
        ..Scenario::default()
    });
    ex.run_for = Duration::from_secs(15);
    let policy = |action, early| IncomingPolicy {
        action,
        reject_after: None,
        early_media: early,
        hold: None,
        audio: AudioMode::Echo,
    };
    let mut peer = ExchangeConfig::user(Scenario {
        calls: 1,
        called: vec!["301".into()],
        audio: AudioMode::Echo,
        early_media: true,
        incoming_by_number: vec![
            ("201".into(), policy(Incoming::NoAnswer, true)),
            (
                "202".into(),
                policy(
                    Incoming::Answer {
                        ring: Duration::from_millis(300),
                    },
                    true,
                ),
            ),
            ("203".into(), policy(Incoming::NoAnswer, false)),
            (
                "204".into(),
                IncomingPolicy {
                    reject_after: Some(Duration::from_millis(200)),
                    ..policy(Incoming::Reject { cause: 17 }, false)
                },
            ),
        ],
        clear_by_number: vec![("301".into(), plan(ClearOn::Alerting, 200))],
        expect_incoming: 5,
        ..Scenario::default()
    });
    peer.run_for = Duration::from_secs(15);
    let (ex, peer) = run_pair_simulated(&ex, &peer, PairConfig::default(), Duration::from_secs(20));
    let ex_json = serde_json::to_string_pretty(&ex).unwrap();
    let peer_json = serde_json::to_string_pretty(&peer).unwrap();
    assert!(ex.ok, "{ex_json}");
    assert!(peer.ok, "{peer_json}");
    let call = |r: &ExchangeReport, n: &str| {
        r.calls
            .iter()
            .find(|c| c.called == n)
            .cloned()
            .unwrap_or_else(|| panic!("no call to {n}"))
    };
    let c = call(&ex, "201");
    assert!(c.abandoned && !c.answered && c.early_media, "{ex_json}");
    assert_eq!(c.clear_state, Some("progress"));
    let a = c.audio.expect("early audio checked");
    // 300 ms of early media in 4 ms blocks, less the round trip.
    assert!(a.blocks_received > 40 && a.blocks_lost == 0, "{a:?}");
    let c = call(&ex, "202");
    assert!(
        c.answered && c.early_media && c.audio_ok == Some(true),
        "{ex_json}"
    );
    assert_eq!(c.clear_state, Some("active"));
    let c = call(&ex, "203");
    assert!(c.abandoned && c.alerted && !c.early_media, "{ex_json}");
    assert_eq!(c.clear_state, Some("alerting"));
    let c = call(&ex, "204");
    assert!(
        c.alerted && c.cause == 17 && c.cleared_by == "far_end",
        "{ex_json}"
    );
    let c = call(&ex, "205");
    assert!(c.answered && c.cleared_by == "us", "{ex_json}");
    assert_eq!(ex.audio.checks, 4, "201, 202, 205, 301: {ex_json}");
    // The peer's side: its rejection counted, its abandoned call, and the
    // exchange's view of that call (the caller gave up while it rang).
    assert_eq!(peer.incoming.rejected, 1, "{peer_json}");
    let c = call(&peer, "301");
    assert!(
        c.abandoned && c.clear_state == Some("alerting"),
        "{peer_json}"
    );
    let c = call(&ex, "301");
    assert!(c.abandoned && c.cleared_by == "far_end", "{ex_json}");
    assert!(c.early_media && c.audio_ok == Some(true), "{ex_json}");
    assert_eq!(ex.incoming.abandoned, 1);
}

/// `max_in_progress`: calls due while the limit is reached wait for one to
/// end (the schedule shifts); all are placed and completed.
#[test]
fn calls_in_progress_are_bounded() {
    let mut ex = ExchangeConfig::network(Scenario {
        calls: 6,
        rate_per_s: 100.0,
        hold: Duration::from_millis(200),
        max_in_progress: 2,
        ..Scenario::default()
    });
    ex.run_for = Duration::from_secs(15);
    let mut peer = ExchangeConfig::user(Scenario {
        audio: AudioMode::Echo,
        expect_incoming: 6,
        ..Scenario::default()
    });
    peer.run_for = Duration::from_secs(15);
    let (ex, peer) = run_pair_simulated(&ex, &peer, PairConfig::default(), Duration::from_secs(20));
    assert!(ex.ok && peer.ok, "{ex:?}\n{peer:?}");
    assert_eq!(ex.outgoing.completed, 6);
    assert_eq!(ex.outgoing.peak_in_progress, 2, "{ex:?}");
    assert_eq!(peer.incoming.peak_in_progress, 2, "{peer:?}");
    // Unbounded, the six calls overlap.
    let mut free = ExchangeConfig::network(Scenario {
        calls: 6,
        rate_per_s: 100.0,
        hold: Duration::from_millis(200),
        ..Scenario::default()
    });
    free.run_for = Duration::from_secs(15);
    let mut peer = ExchangeConfig::user(Scenario {
        audio: AudioMode::Echo,
        expect_incoming: 6,
        ..Scenario::default()
    });
    peer.run_for = Duration::from_secs(15);
    let (free, _) =
        run_pair_simulated(&free, &peer, PairConfig::default(), Duration::from_secs(20));
    assert!(free.outgoing.peak_in_progress > 2, "{free:?}");
}
