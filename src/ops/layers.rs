//! One call per layer to put it on the operations board: its metrics, its
//! readiness checks and its `tdmgw status` sections (issue 8).
//!
//! The daemon calls, once each at start-up, after the layer is built:
//!
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
use super::layer_metrics::{
    CallMetrics, MediaLoopMetrics, SipMessageMetrics, SipSnapshot, SpanSnapshot, collect_dchannels,
    collect_media, collect_media_loops, collect_peers, collect_sip_stats, collect_sip_transport,
    collect_spans,
};
use super::metrics::Exposition;
use super::status_view::{
    CallView, calls_json, channels_json, dchannel_checks, peer_checks, peers_json, span_checks,
    spans_json,
};
use crate::isdn::task::DChannelStatus;
use crate::media::engine::StatsTable;
use crate::sip::transport::Counters;

fn snapshot(rx: &[watch::Receiver<DChannelStatus>]) -> Vec<DChannelStatus> {
    rx.iter().map(|r| r.borrow().clone()).collect()
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
            }));
    }
    {
        let status = status.clone();
        board.add_checks(move |out| {
            let peers = status.borrow().peers.clone();
            peer_checks(out, &peers);
        });
    }
    board.add_status("peers", move || {
        let peers = status.borrow().peers.clone();
        peers_json(&peers)
    });
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
