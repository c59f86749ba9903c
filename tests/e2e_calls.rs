//! End to end with the real binary (issue 7 §7): `tdmgw run` on a SAToP
//! board over loopback UDP, `tdmgw sim exchange` in another process on the
//! other end of the E1, `tdmgw sim core` processes as the core. Calls both
//! ways with the audio checked end to end, clearing from either side in
//! each state, early media both ways, DTMF both ways; after each run the
//! daemon must hold no call, channel, dialog or RTP session.

mod e2e_common;

use e2e_common::{Core, Gateway, TestDir, exchange, report_of};

/// The exchange's number the core's calls go to.
const EXCHANGE_NUMBER: &str = "01632960999";

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Calls both ways at once, audio verified end to end: the exchange places
/// 999 and 101 calls with its test signal, which the core echoes (the
/// exchange checks every block for loss, corruption and round trip); the
/// core places call-backs with a marked pattern, which the exchange
/// echoes (the core checks its markers came back). DTMF both ways: the
/// exchange's in-band digits reach the core as RFC 4733 events, the
/// core's RFC 4733 events reach the exchange in-band.
#[test]
fn calls_both_ways_with_audio_and_dtmf() {
    let dir = TestDir::new("both-ways");
    let d = dir.path();
    let mut core = Core::start(d, "core", &["--ring", "--answer-after", "0.2"]);
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        &[
            "--calls",
            "6",
            "--rate",
            "4",
            "--hold",
            "2",
            "--called",
            "999,101",
            "--calling",
            "01632960123",
            "--dtmf-every",
            "2",
            "--dtmf",
            "123#",
            "--incoming-audio",
            "echo",
            "--expect-incoming",
            "4",
            "--max-loss-percent",
            "5",
        ],
    );
    gw.wait_dchannel_up();
    let gw_sip = gw.sip.to_string();
    let mut caller = Core::start(
        d,
        "caller",
        &[
            "--call",
            &gw_sip,
            "--calls",
            "4",
            "--rate",
            "2",
            "--hold",
            "3",
            "--called",
            EXCHANGE_NUMBER,
            "--pattern",
            "--expect-echo",
            "--dtmf",
            "456*",
            "--dtmf-every",
            "2",
        ],
    );
    let placed = caller.report();
    let ex = report_of(&mut ex);
    let answered = core.stop();
    ex.assert_ok("exchange");
    placed.assert_ok("calling core");
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
    // Its DTMF: in-band on the E1, RFC 4733 at the core, on the 3 calls sending.
    let dtmf_calls: Vec<_> = answered
        .calls()
        .into_iter()
        .filter(|c| c["rtp"]["dtmf_received"] == "123#")
        .collect();
    answered.check(
        dtmf_calls.len() == 3,
        "3 calls carried 123# to the core as RFC 4733",
    );
    // The core's calls: answered by the exchange, pattern echoed back.
    let i = &ex.json["incoming"];
    ex.check(
        n(i, "calls") == 4 && n(i, "answered") == 4,
        "4 call-backs answered",
    );
    placed.check(
        placed.json["calls_completed"] == 4,
        "the core's 4 calls completed",
    );
    // Its DTMF: RFC 4733 from the core, in-band at the exchange on every
    // second call (and back: the exchange echoes the B-channel).
    let got: Vec<_> = ex
        .calls()
        .into_iter()
        .filter(|c| c["direction"] == "incoming" && c["dtmf_received"] == "456*")
        .collect();
    ex.check(
        got.len() == 2,
        "2 call-backs carried 456* in-band to the exchange",
    );
    gw.assert_idle();
    gw.stop();
}
