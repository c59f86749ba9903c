//! Two simulated cores facing each other over loopback UDP: one places
//! calls, the other answers by policy and echoes. Each test is bounded.

use std::time::Duration;

use tdmgw::sim::core::{
    AnswerPolicy, CallDirection, CallPlan, CallResult, Expect, MediaChecks, Outcome, SimCore,
    SimCoreConfig, SimCoreReport, Transport,
};
use tdmgw::sim::rtp_peer::MediaMode;

const BOUND: Duration = Duration::from_secs(20);

/// The answering core: echo; `101` busy; `555` early media then answer;
/// `777` never answers; `888` answers and clears after 300 ms.
async fn answerer(tcp: bool) -> SimCore {
    let mut cfg = SimCoreConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.tcp = tcp;
    cfg.media = MediaMode::Echo;
    cfg.answer_by_number = vec![
        (
            "101".into(),
            AnswerPolicy {
                outcome: Outcome::Reject {
                    status: 486,
                    q850: None,
                },
                ..AnswerPolicy::default()
            },
        ),
        (
            "555".into(),
            AnswerPolicy {
                early_media: true,
                delay: Duration::from_millis(300),
                ..AnswerPolicy::default()
            },
        ),
        (
            "777".into(),
            AnswerPolicy {
                outcome: Outcome::NoAnswer,
                ..AnswerPolicy::default()
            },
        ),
        (
            "888".into(),
            AnswerPolicy {
                hangup_after: Some(Duration::from_millis(600)),
                ..AnswerPolicy::default()
            },
        ),
    ];
    SimCore::start(cfg).await.expect("answerer binds")
}

fn caller(plan: CallPlan, media: MediaMode) -> SimCoreConfig {
    let mut cfg = SimCoreConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.media = media;
    cfg.plan = Some(plan);
    cfg.checks = MediaChecks {
        expect_echo: true,
        ..MediaChecks::default()
    };
    cfg
}

async fn run_pair(
    plan_of: impl FnOnce(&SimCore) -> SimCoreConfig,
) -> (SimCoreReport, SimCoreReport) {
    tokio::time::timeout(BOUND, async {
        let a = answerer(false).await;
        let c = tdmgw::sim::core::run(plan_of(&a))
            .await
            .expect("caller binds");
        let a = a.stop_and_report().await;
        (c, a)
    })
    .await
    .expect("the run ends by itself")
}

fn failed_checks(r: &SimCoreReport) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_echo_the_pattern_and_dtmf() {
    let (c, a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "999");
        plan.calls = 3;
        plan.rate_per_s = 20.0;
        plan.dtmf = "12#".into();
        plan.dtmf_every = 1;
        caller(plan, MediaMode::Pattern)
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    assert_eq!(
        (c.calls_placed, c.calls_completed, c.calls_failed),
        (3, 3, 0)
    );
    for call in &c.calls {
        assert_eq!(call.direction, CallDirection::Outgoing);
        assert_eq!(call.result, CallResult::Completed);
        assert_eq!(call.status, Some(200));
        assert_eq!(call.provisional, vec![180]);
        assert_eq!(call.ended_by, Some("local"));
        let rtp = call.rtp.as_ref().unwrap();
        assert!(rtp.markers_received > 0 && rtp.rtt_ms_avg.is_some());
        assert_eq!(rtp.dtmf_received, "12#");
        assert_eq!(rtp.packets_lost, 0);
    }
    // The answering side saw the digits and echoed as its own source.
    assert_eq!((a.calls_received, a.calls_answered), (3, 3));
    assert_eq!(a.dtmf_received, "12#12#12#");
    assert!(a.all_checks_passed, "{:#?}", failed_checks(&a));
    for call in &a.calls {
        assert_eq!(call.ended_by, Some("remote"));
        assert_eq!(call.calling, "01632960001");
        let rtp = call.rtp.as_ref().unwrap();
        assert!(rtp.packets_sent > 0 && rtp.packets_sent <= rtp.packets_received);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_call_reports_its_status_and_reason() {
    let (c, a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "101");
        plan.expect = Expect::Status { status: 486 };
        caller(plan, MediaMode::Pattern)
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    assert_eq!(c.calls_failed, 1);
    assert_eq!(c.failed_by_status.get(&486), Some(&1));
    let call = &c.calls[0];
    assert_eq!(call.result, CallResult::Failed);
    // RFC 3398 §7.2.4.1: 486 ⇄ cause 17, sent as Reason (RFC 3326).
    assert!(call.reason.as_deref().unwrap().contains("Q.850;cause=17"));
    assert_eq!(a.calls_rejected, 1);
    assert_eq!(a.rejected_by_status.get(&486), Some(&1));
    assert!(a.calls[0].rtp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_then_answer_with_tone_echo() {
    let (c, a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "555");
        plan.hold = Duration::from_millis(800);
        caller(plan, MediaMode::Tone { hz: 1004.0 })
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    let call = &c.calls[0];
    assert_eq!(call.provisional, vec![180, 183]);
    assert!(call.early_media);
    let rtp = call.rtp.as_ref().unwrap();
    assert!(rtp.tone_packets > 0);
    assert!(a.calls[0].early_media);
    assert_eq!(a.calls[0].result, CallResult::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_is_cancelled_by_the_caller() {
    let (c, a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "777");
        plan.no_answer_timeout = Duration::from_millis(400);
        plan.expect = Expect::NoAnswer;
        caller(plan, MediaMode::Pattern)
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    assert_eq!(c.calls_cancelled, 1);
    assert_eq!(c.calls[0].provisional, vec![180]);
    assert_eq!(a.calls_cancelled, 1);
    assert_eq!(a.calls[0].ended_by, Some("remote"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_end_clearing_and_a_failed_expectation_are_reported() {
    let (c, _a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "888");
        plan.far_end_clears = true;
        caller(plan, MediaMode::Pattern)
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    assert_eq!(c.calls[0].ended_by, Some("remote"));

    // Expecting an answer from a busy number: the run reports the failure.
    let (c, _a) =
        run_pair(|a| caller(CallPlan::new(a.sip_addr(), "101"), MediaMode::Pattern)).await;
    assert!(!c.all_checks_passed);
    assert_eq!(failed_checks(&c).len(), 1, "{:#?}", failed_checks(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tcp_and_the_json_report() {
    let (c, a) = tokio::time::timeout(BOUND, async {
        let a = answerer(true).await;
        let mut plan = CallPlan::new(a.tcp_addr().unwrap(), "999");
        plan.transport = Transport::Tcp;
        plan.hold = Duration::from_millis(500);
        let mut cfg = caller(plan, MediaMode::Pattern);
        cfg.tcp = true;
        let c = tdmgw::sim::core::run(cfg).await.unwrap();
        let mut a = a;
        // The answerer may not have seen the end yet; its counters follow.
        a.wait_progress(|p| p.calls_live == 0).await;
        let live = a.progress();
        assert_eq!((live.calls_received, live.calls_answered), (1, 1));
        (c, a.stop_and_report().await)
    })
    .await
    .unwrap();
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    assert_eq!(a.calls_answered, 1);
    let v = serde_json::to_value(&c).unwrap();
    for key in [
        "calls_placed",
        "calls_completed",
        "failed_by_status",
        "calls",
        "checks",
        "all_checks_passed",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["calls"][0]["result"], "completed");
    assert_eq!(v["calls"][0]["direction"], "outgoing");
    assert!(v["calls"][0]["rtp"]["packets_received"].as_u64().unwrap() > 0);
}

/// Numbers in turn with their own expectations, a CANCEL 200 ms after the
/// 180 of the call that is never answered, at most one call at a time
/// (the three calls then take three hold times or more), and a rejection
/// without a Reason header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_in_turn_cancel_after_ring_and_one_call_at_a_time() {
    let (c, a) = run_pair(|a| {
        let mut plan = CallPlan::new(a.sip_addr(), "999");
        plan.calls = 3;
        plan.rate_per_s = 20.0;
        plan.hold = Duration::from_millis(300);
        plan.called_in_turn = vec!["999".into(), "777".into(), "101".into()];
        plan.expect_by_number = vec![
            ("777".into(), Expect::NoAnswer),
            ("101".into(), Expect::Status { status: 486 }),
        ];
        plan.cancel_after_ring = Some(Duration::from_millis(200));
        plan.max_in_progress = 1;
        caller(plan, MediaMode::Pattern)
    })
    .await;
    assert!(c.all_checks_passed, "{:#?}", failed_checks(&c));
    let by = |n: &str| c.calls.iter().find(|x| x.called == n).unwrap();
    assert_eq!(by("999").result, CallResult::Completed);
    let ring = by("777");
    assert_eq!(
        (ring.result, ring.ended_by, ring.provisional.clone()),
        (CallResult::Cancelled, Some("local"), vec![180])
    );
    assert_eq!(by("101").status, Some(486));
    assert!(
        by("101")
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cause=17")),
        "the answerer sends Reason by default"
    );
    // One at a time: the answered call's hold and the 200 ms of ringing
    // come one after the other (a lower bound, never a timing race).
    assert!(c.elapsed_ms >= 500.0, "{}", c.elapsed_ms);
    assert_eq!(a.calls_received, 3);
}
