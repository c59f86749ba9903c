//! One call per layer to put it on the operations board: its metrics, its
//! readiness checks and its `tdmgw status` sections (issue 8).
//!
//! The daemon calls, once each at start-up, after the layer is built:
//!
//! - [`register_gateway`] (before the gateway is started) with the `watch`
//!   of its [`GatewayState`];
//! - [`register_spans`] with a function returning every span's
//!   [`SpanSnapshot`] (however the media threads publish them) and every
//!   D-channel task's status `watch` (`DChannelHandle::status()`);
//! - [`register_sip`] with the transports' counters
//!   (`Transports::counters()`), a [`SipMessageMetrics`] the SIP task bumps
//!   and the `watch` of [`SipSnapshot`] the SIP task publishes;
//! - [`register_media`] with each media thread's `StatsTable`
//!   (`ControlHandle::stats`) and [`MediaLoopMetrics`];
//! - [`register_calls`] with the [`CallMetrics`] the call module bumps and a
//!   function listing its calls in progress.
//!
//! Every source is read at scrape or status time and copied out before
//! rendering: no lock is held across a render, and nothing here runs on the
//! media thread.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::board::OpsBoard;
use super::gateway::GatewayState;
use super::layer_metrics::{
    CallMetrics, MediaLoopMetrics, SipMessageMetrics, SipSnapshot, SpanSnapshot, collect_dchannels,
    collect_gateway, collect_media, collect_media_loops, collect_peers, collect_sip_stats,
    collect_sip_tables, collect_sip_transport, collect_spans,
};
use super::metrics::Exposition;
use super::status_view::{
    CallView, calls_json, channels_json, dchannel_checks, gateway_check, gateway_json, peer_checks,
    peers_json, sip_json, span_checks, spans_json,
};
use crate::isdn::task::DChannelStatus;
use crate::media::engine::StatsTable;
use crate::sip::transport::Counters;

fn snapshot(rx: &[watch::Receiver<DChannelStatus>]) -> Vec<DChannelStatus> {
    rx.iter().map(|r| r.borrow().clone()).collect()
}

/// The gateway as a whole: metric `tdmgw_gateway_state`; check `gateway`
/// (failing unless it runs as configured); status section `gateway`. The
/// daemon registers it before it starts the gateway and sends each change
/// of state.
pub fn register_gateway(board: &OpsBoard, state: watch::Receiver<GatewayState>) {
    {
        let state = state.clone();
        board
            .metrics
            .register(Arc::new(move |out: &mut Exposition| {
                collect_gateway(out, &state.borrow().clone());
            }));
    }
    {
        let state = state.clone();
        board.add_checks(move |out| gateway_check(out, &state.borrow().clone()));
    }
    board.add_status("gateway", move || gateway_json(&state.borrow()));
}

/// Spans and D-channels: metrics `tdmgw_span_*`, `tdmgw_dchannel_*`,
/// `tdmgw_channels`, `tdmgw_q921_*`, `tdmgw_q931_*`; checks `span N alarms`
/// and `span N D-channel`; status sections `spans` and `channels`.
pub fn register_spans(
    board: &OpsBoard,
    spans: impl Fn() -> Vec<SpanSnapshot> + Send + Sync + 'static,
    dchannels: Vec<watch::Receiver<DChannelStatus>>,
) {
    let spans = Arc::new(spans);
    let dchannels = Arc::new(dchannels);
    {
        let (spans, dchannels) = (spans.clone(), dchannels.clone());
        board
            .metrics
            .register(Arc::new(move |out: &mut Exposition| {
                collect_spans(out, &spans());
                collect_dchannels(out, &snapshot(&dchannels));
            }));
    }
    {
        let (spans, dchannels) = (spans.clone(), dchannels.clone());
        board.add_checks(move |out| {
            span_checks(out, &spans());
            dchannel_checks(out, &snapshot(&dchannels));
        });
    }
    {
        let (spans, dchannels) = (spans.clone(), dchannels.clone());
        board.add_status("spans", move || spans_json(&spans(), &snapshot(&dchannels)));
    }
    board.add_status("channels", move || channels_json(&snapshot(&dchannels)));
}

/// SIP: metrics `tdmgw_sip_*`; checks `core peers <group>`; status section
/// `peers`.
pub fn register_sip(
    board: &OpsBoard,
    transport: Arc<Counters>,
    messages: Arc<SipMessageMetrics>,
    status: watch::Receiver<SipSnapshot>,
) {
    {
        let status = status.clone();
        board
            .metrics
            .register(Arc::new(move |out: &mut Exposition| {
                let s = status.borrow().clone();
                collect_sip_transport(out, &transport);
                messages.collect(out);
                collect_peers(out, &s.peers);
                collect_sip_stats(out, &s.ua, &s.endpoint);
                collect_sip_tables(out, &s);
            }));
    }
    {
        let status = status.clone();
        board.add_checks(move |out| {
            let peers = status.borrow().peers.clone();
            peer_checks(out, &peers);
        });
    }
    {
        let status = status.clone();
        board.add_status("peers", move || {
            let peers = status.borrow().peers.clone();
            peers_json(&peers)
        });
    }
    board.add_status("sip", move || sip_json(&status.borrow()));
}

/// Media: metrics `tdmgw_rtp_*`, `tdmgw_jitter_buffer_*`, `tdmgw_dtmf_*`,
/// `tdmgw_media_*`.
pub fn register_media(
    board: &OpsBoard,
    tables: Vec<Arc<StatsTable>>,
    loops: Vec<Arc<MediaLoopMetrics>>,
) {
    board
        .metrics
        .register(Arc::new(move |out: &mut Exposition| {
            let t: Vec<&StatsTable> = tables.iter().map(|t| &**t).collect();
            collect_media(out, &t);
            let l: Vec<&MediaLoopMetrics> = loops.iter().map(|l| &**l).collect();
            collect_media_loops(out, &l);
        }));
}

/// Calls: metrics `tdmgw_calls_*`, `tdmgw_call_setup_seconds`; status
/// section `calls` (numbers redacted when `redact_numbers`).
pub fn register_calls(
    board: &OpsBoard,
    metrics: Arc<CallMetrics>,
    calls: impl Fn() -> Vec<CallView> + Send + Sync + 'static,
    redact_numbers: bool,
) {
    board
        .metrics
        .register(Arc::new(move |out: &mut Exposition| metrics.collect(out)));
    board.add_status("calls", move || {
        calls_json(&calls(), Instant::now(), redact_numbers)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::cdr::Direction;
    use crate::isdn::q921;
    use crate::ops::daemon::Lifecycle;
    use crate::ops::status_view::tests_support::{dchannels, peers, spans};
    use crate::ops::supervisor::Supervisor;
    use std::sync::Mutex;
    use std::time::Duration;

    fn failing(board: &OpsBoard) -> Vec<String> {
        board
            .readiness()
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }

    /// The gateway's state: ready only when running (or not configured);
    /// a failed start names its error in /readyz, the status (JSON and
    /// text) and the state set.
    #[test]
    fn gateway_state_feeds_readiness_status_and_metrics() {
        let board = OpsBoard::new(Supervisor::new(), Arc::new(Lifecycle::default()));
        let (tx, rx) = watch::channel(GatewayState::Starting);
        register_gateway(&board, rx);
        assert_eq!(failing(&board), vec!["gateway"]);

        let error =
            "media thread: span 1: cannot open /dev/ttyE1: ENOENT: No such file or directory";
        tx.send_replace(GatewayState::Failed(error.into()));
        let check = board.readiness().into_iter().find(|c| c.name == "gateway");
        let check = check.expect("a gateway check");
        assert!(!check.ok);
        assert_eq!(check.detail, format!("failed to start: {error}"));
        let r = crate::ops::http::respond(&board, &hyper::Method::GET, "/readyz");
        assert_eq!(r.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
        let status = crate::ops::admin::status(&board, &serde_json::json!({"version": "t"}));
        assert_eq!(status["gateway"]["state"], "failed");
        assert_eq!(status["gateway"]["error"], error);
        let text = crate::ops::admin::render_status(&status);
        assert!(
            text.contains(&format!("gateway: FAILED to start: {error}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("  FAIL gateway: failed to start: {error}")),
            "{text}"
        );
        let m = board.metrics.render();
        assert!(
            m.contains("tdmgw_gateway_state{state=\"failed\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("tdmgw_gateway_state{state=\"running\"} 0\n"),
            "{m}"
        );

        tx.send_replace(GatewayState::Running);
        assert!(failing(&board).is_empty());
        let status = crate::ops::admin::status(&board, &serde_json::json!({"version": "t"}));
        assert!(status["gateway"]["error"].is_null());
        assert!(!crate::ops::admin::render_status(&status).contains("gateway: "));
        assert!(
            board
                .metrics
                .render()
                .contains("tdmgw_gateway_state{state=\"running\"} 1\n")
        );

        tx.send_replace(GatewayState::Stopped("the media thread ended".into()));
        let c = board.readiness().into_iter().find(|c| c.name == "gateway");
        assert_eq!(
            c.map(|c| (c.ok, c.detail)),
            Some((false, "stopped: the media thread ended".into()))
        );

        // Operations only, by the site's choice: ready.
        tx.send_replace(GatewayState::NotConfigured);
        assert!(failing(&board).is_empty());
    }

    /// Registered layers show in /readyz, `tdmgw status` and /metrics, and
    /// follow their sources as they change.
    #[test]
    fn registered_layers_feed_readiness_status_and_metrics() {
        let board = OpsBoard::new(Supervisor::new(), Arc::new(Lifecycle::default()));
        let line = Arc::new(Mutex::new(spans()));
        let (dc1_tx, dc1) = watch::channel(dchannels()[0].clone());
        let (dc2_tx, dc2) = watch::channel(dchannels()[1].clone());
        {
            let line = line.clone();
            register_spans(&board, move || line.lock().unwrap().clone(), vec![dc1, dc2]);
        }
        let (sip_tx, sip_rx) = watch::channel(SipSnapshot {
            peers: peers(),
            calls: 1,
            dialogs: 2,
            transactions: 3,
            listeners: vec![(
                crate::sip::transport::Transport::Udp,
                "192.0.2.1:5060".parse().unwrap(),
            )],
            ..SipSnapshot::default()
        });
        register_sip(
            &board,
            Arc::new(Counters::default()),
            Arc::new(SipMessageMetrics::new()),
            sip_rx,
        );
        register_media(
            &board,
            vec![],
            vec![Arc::new(MediaLoopMetrics::new("media-0", 2_000))],
        );
        let calls = Arc::new(CallMetrics::new());
        calls.started(Direction::ExchangeToCore);
        let started = Instant::now() - Duration::from_secs(5);
        register_calls(
            &board,
            calls.clone(),
            move || {
                vec![CallView {
                    id: "c-1".into(),
                    direction: Direction::ExchangeToCore,
                    calling: "02079460123".into(),
                    called: "999".into(),
                    span: 1,
                    timeslot: 3,
                    peer: Some("192.0.2.10:5060".into()),
                    state: "active".into(),
                    started,
                }]
            },
            true,
        );

        // Span 2 is red with its D-channel down; the core group has one peer up.
        assert_eq!(failing(&board), vec!["span 2 alarms", "span 2 D-channel"]);

        // Span 2 recovers; every core peer goes down.
        line.lock().unwrap()[1].alarms = crate::line::e1_alarm::Alarms::NONE;
        dc2_tx.send_modify(|d| {
            d.link_up = true;
            d.q921_state = q921::State::MultipleFrameEstablished;
        });
        sip_tx.send_modify(|s| s.peers.iter_mut().for_each(|p| p.up = false));
        assert_eq!(failing(&board), vec!["core peers core"]);
        sip_tx.send_modify(|s| s.peers[1].up = true);
        assert!(failing(&board).is_empty());

        let status = crate::ops::admin::status(&board, &serde_json::json!({"version": "t"}));
        assert_eq!(status["spans"][1]["dchannel"]["up"], true);
        assert_eq!(
            status["channels"][0]["grid"],
            "..B..B.........-...R..........r"
        );
        assert_eq!(status["calls"][0]["calling"], "********123");
        assert_eq!(status["peers"][1]["state"], "up");
        assert_eq!(status["sip"]["listeners"][0]["address"], "192.0.2.1:5060");
        assert_eq!(status["sip"]["dialogs"], 2);
        let text = crate::ops::admin::render_status(&status);
        assert!(text.contains("span 2  OK"), "{text}");
        assert!(text.contains("ts  1-15 |..B..B.........|"), "{text}");
        assert!(
            text.contains("exchange->core  ********123 -> 999"),
            "{text}"
        );
        assert!(text.contains("peer core 192.0.2.11:5060 udp  UP"), "{text}");
        assert!(
            text.contains("sip udp 192.0.2.1:5060  calls 1  dialogs 2  transactions 3"),
            "{text}"
        );

        dc1_tx.send_modify(|d| d.calls = 4);
        let m = board.metrics.render();
        assert!(m.contains("tdmgw_dchannel_calls{span=\"1\"} 4\n"), "{m}");
        assert!(m.contains("tdmgw_calls_in_progress{direction=\"exchange_to_core\"} 1\n"));
        assert!(m.contains(
            "tdmgw_sip_peer_up{group=\"core\",peer=\"192.0.2.10:5060\",transport=\"udp\"} 0\n"
        ));
        assert!(m.contains("# TYPE tdmgw_media_loop_duration_seconds histogram\n"));
        assert!(m.contains("tdmgw_sip_dialogs 2\n"), "{m}");
        assert!(m.contains("tdmgw_sip_calls 1\n"), "{m}");
    }
}
