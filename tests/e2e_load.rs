//! 300 calls through the real binary (issue 7 §7), at the end of which
//! every channel is idle and every dialog gone, as the running daemon
//! reports it (`tdmgw status --json` over its admin socket, `/metrics`).
//!
//! 200 calls from the exchange (999 and 101, the core rings then answers,
//! every 10th abandoned while it rings, DTMF on every 7th, the test signal
//! checked on each) and 100 from the core (answered by the exchange,
//! which echoes the B-channel; the core sends a marked pattern, and a DTMF
//! digit on every 10th), both at once, a dozen or so in progress at a time.
//! Each side keeps at most 16 and 8 calls in progress (a due call waits):
//! when the box holds the processes off the CPU for a second or two, calls
//! are delayed, not refused for want of a B-channel.

mod e2e_common;

use e2e_common::{Core, Gateway, TestDir, exchange, metric_sum, report_of};

#[test]
fn three_hundred_calls_leave_nothing_behind() {
    let dir = TestDir::new("300-calls");
    let d = dir.path();
    let mut core = Core::start(d, "core", "--ring --answer-after 0.3");
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        "--calls 200 --rate 10 --hold 1 --called 999,101 --calling 01632960123 \
         --abandon-every 10 --abandon-after 0.1 --dtmf-every 7 --dtmf 159# \
         --answer 0.2 --incoming-audio echo --expect-incoming 100 --max-in-progress 16",
    );
    gw.wait_dchannel_up();
    let mut caller = Core::start(
        d,
        "caller",
        &format!(
            "--call {} --calls 100 --rate 5 --hold 1 --called 01632960999 --pattern \
             --dtmf 7 --dtmf-every 10 --max-in-progress 8",
            gw.sip
        ),
    );
    let placed = caller.report();
    let ex = report_of(&mut ex);
    let answered = core.stop();
    // Shown when the test fails: what the media plane saw.
    let m = gw.metrics();
    for l in m.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("tdmgw_rtp_")
                || l.starts_with("tdmgw_media_")
                || l.starts_with("tdmgw_jitter_")
                || l.starts_with("tdmgw_span_"))
    }) {
        eprintln!("{l}");
    }
    placed.assert_ok("calling core");
    answered.assert_ok("answering core");

    // Every call ended as planned. The audio is checked on each call, but
    // at a dozen calls at once on a two-core box that other jobs load, the
    // core's echo is sometimes held off the CPU long enough for the
    // gateway's jitter buffer to drop late packets: what must hold here is
    // that the audio went round on every answered call and that most calls
    // pass the full check (the other tests check every call, fewer at
    // once). A slip inside a DTMF digit can split or drop it: 90%.
    let not_media: Vec<String> = ex
        .failures()
        .into_iter()
        .filter(|f| !f.contains("audio check failed") && !f.contains("DTMF sent"))
        .collect();
    ex.check(
        not_media.is_empty(),
        &format!("exchange failures: {not_media:?}"),
    );
    let o = &ex.json["outgoing"];
    let i = &ex.json["incoming"];
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    ex.check(n(o, "calls") == 200, "200 calls placed by the exchange");
    ex.check(
        n(o, "completed") + n(o, "abandoned") == 200 && n(o, "abandoned") > 0,
        "the exchange's calls completed or were abandoned",
    );
    ex.check(
        n(i, "calls") == 100 && n(i, "completed") == 100,
        "100 calls from the core completed",
    );
    let silent: Vec<u64> = ex
        .calls()
        .iter()
        .filter(|c| c["direction"] == "outgoing" && c["answered"] == true)
        .filter(|c| n(&c["audio"], "blocks_received") == 0)
        .map(|c| n(c, "tag"))
        .collect();
    ex.check(
        silent.is_empty(),
        &format!("no audio came back on calls {silent:?}"),
    );
    let a = &ex.json["audio"];
    ex.check(
        n(a, "checks") == n(o, "answered") && n(a, "passed") * 2 >= n(a, "checks"),
        "every answered call's audio checked, most passed",
    );
    // DTMF both ways: the exchange's in-band digits came back through the
    // core's echo (as RFC 4733 both ways at the gateway); the core's RFC
    // 4733 digit on every 10th call arrived in-band at the exchange, and
    // back at the core through its echo.
    let dtmf = &ex.json["dtmf"];
    ex.check(
        n(dtmf, "calls_sending") >= 15
            && n(dtmf, "calls_matched") * 10 >= n(dtmf, "calls_sending") * 9,
        "DTMF from the exchange came back",
    );
    let sevens = ex
        .calls()
        .iter()
        .filter(|c| c["direction"] == "incoming" && c["dtmf_received"] == "7")
        .count();
    ex.check(sevens >= 9, "the core's digit arrived in-band");
    let back = placed
        .calls()
        .iter()
        .filter(|c| c["rtp"]["dtmf_received"] == "7")
        .count();
    placed.check(back >= 9, "the core's digit came back");
    placed.check(
        placed.json["calls_completed"] == 100,
        "the core's 100 calls completed",
    );

    // Nothing left in the running daemon, and it counted every call.
    gw.assert_idle();
    let m = gw.metrics();
    assert_eq!(metric_sum(&m, "tdmgw_calls_started_total"), 300.0, "{m}");
    assert_eq!(metric_sum(&m, "tdmgw_calls_ended_total"), 300.0, "{m}");
    let st = gw.status();
    assert_eq!(st["channels"][0]["idle"], 30, "{st}");
    assert_eq!(st["sip"]["dialogs"], 0, "{st}");
    gw.stop();
}
