//! End to end with the real binary (issue 7 §7): `tdmgw run` on a SAToP
//! board over loopback UDP, `tdmgw sim exchange` in another process on the
//! other end of the E1, `tdmgw sim core` processes as the core (the
//! answering one is the gateway's peer; calling ones place calls to the
//! gateway). Calls both ways with the audio checked end to end, clearing
//! from either side in each state, early media both ways, DTMF both ways;
//! after each run the daemon must hold no call, B-channel, SIP call,
//! dialog or RTP session (`tdmgw status --json` and `/metrics`).
//!
//! Each test runs its own gateway; the states a call is cleared in are
//! reached by the simulators' signalling (clear on ALERTING, on PROGRESS,
//! cancel after 180), not by racing timers.

mod e2e_common;

use e2e_common::{Core, Gateway, Report, TestDir, exchange, report_of};
use serde_json::Value;

/// The exchange's number the core's call-backs go to.
const EXCHANGE_NUMBER: &str = "01632960999";

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The one call of a report to `called`.
fn call(r: &Report, called: &str) -> Value {
    let calls = r.calls_to(called);
    r.check(calls.len() == 1, &format!("one call to {called}"));
    calls.into_iter().next().unwrap_or_default()
}

fn provisional(c: &Value) -> Vec<u64> {
    c["provisional"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Calls both ways at once, audio verified end to end: the exchange places
/// 999 and 101 calls with its test signal, which the core echoes (the
/// exchange checks every block for loss, corruption and round trip); the
/// core places call-backs with a marked pattern, which the exchange
/// echoes (the core checks its markers came back). DTMF both ways on every
/// call: the exchange's in-band digits reach the core as RFC 4733 events
/// (and come back through the echo), the core's RFC 4733 events reach the
/// exchange in-band (and come back as RFC 4733 through the exchange's
/// echo). One call each way may miss a digit: a line slip on a loaded box
/// inside a 60 ms tone cuts it (the E1 is real-time UDP between
/// processes); the digits are checked strictly in simulated time
/// elsewhere.
#[test]
fn calls_both_ways_with_audio_and_dtmf() {
    let dir = TestDir::new("both-ways");
    let d = dir.path();
    let mut core = Core::start(d, "core", "--ring --answer-after 0.2");
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        "--calls 6 --rate 4 --hold 2 --called 999,101 --calling 01632960123 \
         --dtmf-every 1 --dtmf 123# --incoming-audio echo --expect-incoming 4",
    );
    gw.wait_dchannel_up();
    let mut caller = Core::start(
        d,
        "caller",
        &format!(
            "--call {} --calls 4 --rate 2 --hold 3 --called {EXCHANGE_NUMBER} \
             --pattern --expect-echo --min-echo-percent 60 --dtmf 456* --dtmf-every 1",
            gw.sip
        ),
    );
    let placed = caller.report();
    let ex = report_of(&mut ex);
    let answered = core.stop();
    ex.assert_ok_but("exchange", &["DTMF sent"], 1);
    placed.assert_ok_but("calling core", &["dtmf echoed"], 1);
    answered.assert_ok("answering core");

    // The exchange's calls: answered, test signal echoed through the core.
    let o = &ex.json["outgoing"];
    ex.check(
        n(o, "calls") == 6 && n(o, "completed") == 6,
        "6 placed calls completed",
    );
    let a = &ex.json["audio"];
    ex.check(
        n(a, "checks") == 6 && n(a, "passed") == 6,
        "6 audio checks passed",
    );
    ex.check(
        n(&ex.json["dtmf"], "calls_sending") == 6 && n(&ex.json["dtmf"], "calls_matched") >= 5,
        "123# came back on the calls",
    );
    // Its DTMF: in-band on the E1, RFC 4733 at the core.
    let at_core = answered
        .calls()
        .into_iter()
        .filter(|c| c["rtp"]["dtmf_received"] == "123#")
        .count();
    answered.check(
        at_core >= 5,
        "the calls carried 123# to the core as RFC 4733",
    );
    // The core's calls: answered by the exchange, pattern echoed back.
    let i = &ex.json["incoming"];
    ex.check(
        n(i, "calls") == 4 && n(i, "answered") == 4 && n(i, "completed") == 4,
        "4 call-backs answered and completed",
    );
    placed.check(
        placed.json["calls_completed"] == 4,
        "the core's 4 calls completed",
    );
    // Its DTMF: RFC 4733 from the core, in-band at the exchange.
    let in_band = ex
        .calls()
        .into_iter()
        .filter(|c| c["direction"] == "incoming" && c["dtmf_received"] == "456*")
        .count();
    ex.check(
        in_band >= 3,
        "the call-backs carried 456* in-band to the exchange",
    );
    gw.assert_idle();
    gw.stop();
}

/// The exchange's calls, cleared by each side in each state:
///
/// | number | core | exchange | state at clearing |
/// |---|---|---|---|
/// | 6001 | no answer, no 180 | clears 1 s after CALL PROCEEDING | U3 / INVITE pending: CANCEL |
/// | 6002 | 180, no answer | clears 0.5 s after ALERTING | U4 / ringing: CANCEL |
/// | 6003 | 180, 183 with SDP, no answer | clears 1.5 s after PROGRESS | early media both ways (checked): CANCEL |
/// | 6004 | answers | clears 1 s after CONNECT | U10: BYE to the core |
/// | 6005 | 486 at once | - | core rejects: cause 17 |
/// | 6006 | 180, 183, 486 after 0.5 s | - | core rejects during early media: cause 17 |
/// | 6007 | answers, BYE after 1 s | waits for the far end | U10: BYE from the core, DISCONNECT |
#[test]
fn exchange_calls_cleared_in_each_state() {
    let dir = TestDir::new("exchange-clears");
    let d = dir.path();
    let mut core = Core::start(
        d,
        "core",
        "--ring --policy 6001=none,no-ring --policy 6002=none --policy 6003=none,early \
         --policy 6004=answer --policy 6005=486,no-ring --policy 6006=486:0.5,early \
         --policy 6007=answer,hangup=1",
    );
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        "--calls 7 --rate 5 --hold 1 --called 6001,6002,6003,6004,6005,6006,6007 \
         --early-media --clear 6001=proceeding:1 --clear 6002=alerting:0.5 \
         --clear 6003=progress:1.5 --clear 6004=active:1 --clear 6007=far \
         --expect-cause 17",
    );
    gw.wait_dchannel_up();
    let ex = report_of(&mut ex);
    let core = core.stop();
    ex.assert_ok("exchange");
    core.assert_ok("core");

    // The exchange's side of each call.
    for (num, state) in [
        ("6001", "proceeding"),
        ("6002", "alerting"),
        ("6003", "progress"),
    ] {
        let c = call(&ex, num);
        ex.check(
            c["abandoned"] == true && c["answered"] == false && c["clear_state"] == state,
            &format!("{num}: cleared by the exchange in state {state}"),
        );
    }
    ex.check(call(&ex, "6001")["alerted"] == false, "6001: no ALERTING");
    ex.check(call(&ex, "6002")["alerted"] == true, "6002: ALERTING");
    let early = call(&ex, "6003");
    ex.check(
        early["early_media"] == true && early["audio_ok"] == true,
        "6003: the test signal went to the core and came back before any answer",
    );
    let c = call(&ex, "6004");
    ex.check(
        c["answered"] == true && c["cleared_by"] == "us" && c["cause"] == 16,
        "6004: answered, cleared by the exchange",
    );
    for num in ["6005", "6006"] {
        let c = call(&ex, num);
        ex.check(
            c["answered"] == false && c["cause"] == 17 && c["cleared_by"] == "far_end",
            &format!("{num}: refused with cause 17 (486)"),
        );
    }
    let c = call(&ex, "6007");
    ex.check(
        c["answered"] == true && c["cleared_by"] == "far_end" && c["cause"] == 16,
        "6007: cleared by the core's BYE, cause 16",
    );

    // The core's side; the gateway's CANCEL and BYE carry the exchange's
    // cause (RFC 3326).
    let normal = |c: &Value| {
        c["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("Q.850;cause=16;"))
    };
    let cancelled = |num: &str, prov: &[u64]| {
        let c = call(&core, num);
        core.check(
            c["result"] == "cancelled"
                && c["ended_by"] == "remote"
                && provisional(&c) == prov
                && normal(&c),
            &format!("{num}: CANCEL with Reason: Q.850;cause=16 from the gateway after {prov:?}"),
        );
        c
    };
    cancelled("6001", &[]);
    cancelled("6002", &[180]);
    let c = cancelled("6003", &[180, 183]);
    core.check(
        c["early_media"] == true && n(&c["rtp"], "packets_received") >= 20,
        "6003: early media reached the core",
    );
    let c = call(&core, "6004");
    core.check(
        c["result"] == "completed" && c["ended_by"] == "remote" && normal(&c),
        "6004: BYE with Reason: Q.850;cause=16 from the gateway",
    );
    for num in ["6005", "6006"] {
        let c = call(&core, num);
        core.check(
            c["result"] == "rejected" && c["status"] == 486,
            &format!("{num}: rejected with 486"),
        );
    }
    let c = call(&core, "6007");
    core.check(
        c["result"] == "completed" && c["ended_by"] == "local",
        "6007: the core's BYE",
    );
    gw.assert_idle();
    gw.stop();
}

/// The core's calls, cleared by each side in each state:
///
/// | number | exchange | core | state at clearing |
/// |---|---|---|---|
/// | 6101 | rings, never answers | CANCEL 0.5 s after the 180 | U4 / ringing |
/// | 6102 | rejects with cause 17 at once | expects 486 | SETUP refused |
/// | 6103 | rings, rejects with 17 after 0.5 s | expects 486 | DISCONNECT while alerting |
/// | 6104 | answers, clears after 1 s | waits for the far end | U10: DISCONNECT, BYE to the core |
/// | 6105 | answers | BYE after 1 s | U10: BYE from the core |
/// | 6106 | rings, never answers | no answer in 2 s: CANCEL | no answer |
#[test]
fn core_calls_cleared_in_each_state() {
    let dir = TestDir::new("core-clears");
    let d = dir.path();
    let mut core = Core::start(d, "core", "--ring");
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        "--calls 0 --expect-incoming 6 --incoming-audio echo \
         --policy 6101=none --policy 6102=17 --policy 6103=17:0.5 \
         --policy 6104=answer,hold=1 --policy 6105=answer --policy 6106=none",
    );
    gw.wait_dchannel_up();
    let target = gw.sip.to_string();
    let caller = |name: &str, args: &str| Core::start(d, name, &format!("--call {target} {args}"));
    let mut cancel = caller(
        "cancel",
        "--called 6101 --cancel-after-ring 0.5 --expect no-answer",
    );
    let mut refused = caller(
        "refused",
        "--calls 2 --rate 4 --called 6102,6103 --expect 486",
    );
    let mut far = caller("far", "--called 6104 --hold 1 --far-end-clears");
    let mut bye = caller("bye", "--called 6105 --hold 1");
    let mut no_answer = caller(
        "no-answer",
        "--called 6106 --no-answer-timeout 2 --expect no-answer",
    );
    let reports: Vec<(&str, Report)> = vec![
        ("cancel", cancel.report()),
        ("refused", refused.report()),
        ("far", far.report()),
        ("bye", bye.report()),
        ("no-answer", no_answer.report()),
    ];
    let ex = report_of(&mut ex);
    core.stop().assert_ok("answering core");
    for (who, r) in &reports {
        r.assert_ok(who);
    }
    ex.assert_ok("exchange");

    // The core's side: each call ended as its plan expects (checked by the
    // calling cores), with the provisional responses of its state.
    let by = |who: &str| &reports.iter().find(|(w, _)| *w == who).unwrap().1;
    let c = call(by("cancel"), "6101");
    by("cancel").check(
        provisional(&c) == [180] && c["ended_by"] == "local",
        "6101: ringing, then our CANCEL",
    );
    let r = by("refused");
    let c = call(r, "6102");
    r.check(
        provisional(&c).is_empty() && c["reason"].as_str().is_some_and(|s| s.contains("cause=17")),
        "6102: 486 with Reason: Q.850;cause=17, no ringing",
    );
    let c = call(r, "6103");
    r.check(
        provisional(&c) == [180] && c["reason"].as_str().is_some_and(|s| s.contains("cause=17")),
        "6103: 180, then 486 with Reason: Q.850;cause=17",
    );
    let c = call(by("far"), "6104");
    by("far").check(c["ended_by"] == "remote", "6104: BYE from the gateway");
    let c = call(by("bye"), "6105");
    by("bye").check(c["ended_by"] == "local", "6105: our BYE");

    // The exchange's side.
    let i = &ex.json["incoming"];
    ex.check(n(i, "calls") == 6, "6 incoming calls");
    for num in ["6101", "6106"] {
        let c = call(&ex, num);
        ex.check(
            c["answered"] == false && c["abandoned"] == true && c["cleared_by"] == "far_end",
            &format!("{num}: the caller gave up while it rang"),
        );
    }
    for num in ["6102", "6103"] {
        let c = call(&ex, num);
        ex.check(
            c["rejected"] == true && c["cause"] == 17,
            &format!("{num}: rejected with 17"),
        );
    }
    let c = call(&ex, "6104");
    ex.check(
        c["answered"] == true && c["cleared_by"] == "us",
        "6104: answered, cleared by the exchange",
    );
    let c = call(&ex, "6105");
    ex.check(
        c["answered"] == true && c["cleared_by"] == "far_end" && c["cause"] == 16,
        "6105: cleared by the core, cause 16",
    );
    gw.assert_idle();
    gw.stop();
}

/// Early media both ways, with audio before the answer:
///
/// - exchange → core: the core answers 183 with SDP (the exchange gets
///   PROGRESS with indicator 8) and the exchange's test signal goes
///   through the core's echo and back before any answer: 6301 is then
///   abandoned after 1.5 s (all its audio was early), 6302 answered after
///   1.5 s (the audio runs on through the answer).
/// - core → exchange: the exchange sends ALERTING then PROGRESS with
///   indicator 8 and echoes the B-channel (the core gets 183 with SDP and
///   its pattern back): 6311 never answered (the core cancels 1.5 s after
///   the 183), 6312 answered after 1.5 s.
#[test]
fn early_media_both_ways() {
    let dir = TestDir::new("early-media");
    let d = dir.path();
    let mut core = Core::start(
        d,
        "core",
        "--ring --early-media --policy 6301=none --policy 6302=answer:1.5",
    );
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        "--calls 2 --rate 4 --hold 1 --called 6301,6302 --early-media \
         --clear 6301=progress:1.5 --expect-incoming 2 \
         --policy 6311=none,early,echo --policy 6312=answer:1.5,early,echo \
        ",
    );
    gw.wait_dchannel_up();
    let target = gw.sip.to_string();
    let mut unanswered = Core::start(
        d,
        "caller-6311",
        &format!(
            "--call {target} --called 6311 --pattern --cancel-after-ring 1.5 --expect no-answer"
        ),
    );
    let mut answered = Core::start(
        d,
        "caller-6312",
        &format!(
            "--call {target} --called 6312 --pattern --expect-echo --min-echo-percent 60 --hold 1"
        ),
    );
    let unanswered = unanswered.report();
    let answered = answered.report();
    let ex = report_of(&mut ex);
    let core = core.stop();
    for (who, r) in [
        ("core", &core),
        ("caller 6311", &unanswered),
        ("caller 6312", &answered),
        ("exchange", &ex),
    ] {
        r.assert_ok(who);
    }

    // Exchange → core.
    let c = call(&ex, "6301");
    ex.check(
        c["answered"] == false
            && c["early_media"] == true
            && c["audio_ok"] == true
            && n(&c["audio"], "blocks_received") > 100,
        "6301: the test signal came back before any answer",
    );
    let c = call(&ex, "6302");
    ex.check(
        c["answered"] == true && c["early_media"] == true && c["audio_ok"] == true,
        "6302: early media, then answered; audio checked throughout",
    );
    for num in ["6301", "6302"] {
        let c = call(&core, num);
        core.check(
            c["early_media"] == true && provisional(&c).contains(&183),
            &format!("{num}: 183 with SDP"),
        );
    }

    // Core → exchange.
    let c = call(&unanswered, "6311");
    let rtp = &c["rtp"];
    unanswered.check(
        c["early_media"] == true
            && provisional(&c).contains(&183)
            && n(rtp, "markers_received") >= 25
            && n(rtp, "markers_received") * 2 >= n(rtp, "markers_sent"),
        "6311: 183 with SDP, and the pattern came back through the exchange before any answer",
    );
    let c = call(&answered, "6312");
    answered.check(
        c["early_media"] == true && c["result"] == "completed",
        "6312: 183 with SDP, then answered",
    );
    for num in ["6311", "6312"] {
        let c = call(&ex, num);
        ex.check(
            c["early_media"] == true,
            &format!("{num}: the exchange gave early media"),
        );
    }
    gw.assert_idle();
    gw.stop();
}
