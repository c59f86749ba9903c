//! The gateway's assembly (issue 7 §6, issues 4/6/8 wiring): everything
//! that carries calls, built from a validated [`Config`] and put on the
//! [`OpsBoard`].
//!
//! [`Gateway::start`] (on the control runtime, after the management
//! listener is bound and before `READY=1`):
//!
//! 1. the media thread: `config::media_plan` (board spans → line port,
//!    engine channels, thread placement), `MediaCore` + `MediaLoop` over a
//!    `LinePort` (raw spans) or a `DahdiLinePort` (DAHDI spans: each span
//!    opened and checked whole by `DahdiSpan::open`, then split: the
//!    B-channels to the port, the D-channel kept for step 2),
//!    `engine::spawn` checking in as loop `media`;
//! 2. one D-channel task per span (role and timers from the site's
//!    `SpanSignalling::dchannel_params`) over its `RingPort` (raw spans) or
//!    over the span's D-channel fd as a `DahdiPort` (DAHDI: kernel HDLC, no
//!    rings through the media thread), each checking in as `dchan-<span>`
//!    with NOC events through `ops::dchannel`;
//! 3. the SIP task from `SiteConfig::sip_task_config` (loop `sip`, peer
//!    NOC events through `ops::sip`);
//! 4. the call task (`call::task`, loop `calls`) with the CDR writer;
//! 5. on the board: span/D-channel, SIP, media and call metrics, the
//!    readiness checks and the status sections (`ops::layers`), and a
//!    watcher of the line event ring that raises the alarm NOC events.
//!
//! A step that fails returns its [`GatewayError`] and leaves nothing
//! running: once the media thread is spawned, a later failure (a SIP
//! address in use) stops it, and the D-channel tasks end with their
//! handles. The daemon shows the result as a [`GatewayState`].
//!
//! [`Gateway::start`] opens DAHDI spans through the kernel
//! (`/dev/dahdi/channel`); [`Gateway::start_with`] takes another
//! [`DahdiBackend`] (the simulated card of the tests).
//!
//! `pair` spans hand their far ends out ([`Gateway::take_pair_far_ends`])
//! for the simulated exchange.
//!
//! [`Gateway::stop`] after the drain: stop the call task, then the
//! D-channel and SIP tasks, then the media thread; it reports whether
//! every call, dialog and channel was gone.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::board::{OpsBoard, TraceHub, TraceRecord};
use super::daemon::Lifecycle;
use super::dchannel::DchannelOps;
use super::events::NocEvent;
use super::layer_metrics::{
    CallMetrics, LOOP_OVERRUN_DEFAULT_US, MediaLoopMetrics, PeerRow, SipMessageMetrics,
    SipSnapshot, SpanSnapshot,
};
use super::layers;
use super::sip::SipOps;
use super::supervisor::Supervisor;
use crate::call::cdr::CdrWriter;
use crate::call::manager::CallManager;
use crate::call::site_config::manager_config;
use crate::call::task::{self as call_task, CallTaskConfig, CallTaskParts, CallTaskStats};
use crate::config::{Config, DahdiSpanPlan, media_plan};
use crate::isdn::port::DahdiPort;
use crate::isdn::task::{self as isdn_task, DChannelHandle, DChannelStatus, TaskConfig};
use crate::line::driver::dahdi::{DahdiBackend, DahdiError, DahdiSpan, LinuxDahdi};
use crate::line::e1_perf::PerfCounts;
use crate::media::dahdi_lines::{DahdiLinePort, DahdiLinePortParams, DahdiLineSpanParams};
use crate::media::engine::{self, MediaCore, MediaLoop};
use crate::media::lines::{LineHandle, LineNotice, LinePort, LinePortParams, PairFarEnd};
use crate::media::span_status::SpanTelemetry;
use crate::media::tdm::TdmPort;
use crate::media::trace_tap::{TAP_RING_DEFAULT, TapControl, trace_tap};
use crate::sip::peer::PeerState;
use crate::sip::task::{self as sip_task, SipHandle, SipStatus};

/// Why the gateway could not be built.
#[derive(Debug)]
pub enum GatewayError {
    Plan(String),
    Media(String),
    /// A DAHDI span could not be opened (the message says what
    /// `system.conf` or the device needs).
    Dahdi {
        span: u16,
        error: DahdiError,
    },
    Sip(String),
    Io(std::io::Error),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Plan(e) => write!(f, "media plan: {e}"),
            GatewayError::Media(e) => write!(f, "media thread: {e}"),
            GatewayError::Dahdi { span, error } => write!(f, "span {span}: {error}"),
            GatewayError::Sip(e) => write!(f, "sip task: {e}"),
            GatewayError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GatewayError {}

/// What the daemon's gateway is doing, as `/readyz` (check `gateway`),
/// `tdmgw status` (section `gateway`) and `/metrics`
/// (`tdmgw_gateway_state`) show it. The daemon publishes it on a `watch`
/// ([`super::layers::register_gateway`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayState {
    /// The site config has no routes and no core peers: the daemon runs
    /// operations only, by design. Ready.
    NotConfigured,
    /// [`Gateway::start`] has not returned yet. Not ready.
    Starting,
    /// Every part runs. Ready (the span, D-channel and peer checks say the rest).
    Running,
    /// [`Gateway::start`] failed with this error: no calls. Not ready.
    Failed(String),
    /// A part of the running gateway ended by itself
    /// ([`Gateway::ended_parts`]): calls are not carried as configured. Not ready.
    Stopped(String),
}

impl GatewayState {
    /// The label of `tdmgw_gateway_state` and the status section's `state`.
    pub const LABELS: [&'static str; 5] =
        ["not_configured", "starting", "running", "failed", "stopped"];

    pub fn label(&self) -> &'static str {
        match self {
            GatewayState::NotConfigured => Self::LABELS[0],
            GatewayState::Starting => Self::LABELS[1],
            GatewayState::Running => Self::LABELS[2],
            GatewayState::Failed(_) => Self::LABELS[3],
            GatewayState::Stopped(_) => Self::LABELS[4],
        }
    }

    /// Calls can be carried as the config asks (or none are asked for).
    pub fn is_ready(&self) -> bool {
        matches!(self, GatewayState::NotConfigured | GatewayState::Running)
    }

    /// What an operator reads after `gateway: `.
    pub fn detail(&self) -> String {
        match self {
            GatewayState::NotConfigured => {
                "not configured (no routes and no core peers: operations only)".into()
            }
            GatewayState::Starting => "starting".into(),
            GatewayState::Running => String::new(),
            GatewayState::Failed(e) => format!("failed to start: {e}"),
            GatewayState::Stopped(what) => format!("stopped: {what}"),
        }
    }
}

/// What was left when the gateway stopped.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Calls the call manager still held (0: nothing leaked).
    pub calls_left: usize,
    pub manager_idle: bool,
    /// B-channels not idle per span at the end.
    pub channels_busy: usize,
    /// SIP dialogs still held by the user agent (an ended call's dialog
    /// stays until its transactions end: RFC 3261 Timer J/K).
    pub dialogs_left: usize,
    /// SIP calls not yet ended (the leak check).
    pub sip_calls_left: usize,
}

/// The media thread's line side, whichever the board has.
type BoxedPort = Box<dyn TdmPort + Send>;

/// The running gateway.
pub struct Gateway {
    media_stop: Arc<AtomicBool>,
    media_join: Option<std::thread::JoinHandle<std::io::Result<(MediaLoop, BoxedPort)>>>,
    dchannels: Vec<DChannelHandle>,
    dchannel_joins: Vec<JoinHandle<isdn_task::Stopped>>,
    sip: SipHandle,
    sip_join: JoinHandle<sip_task::Stopped>,
    call_stop: watch::Sender<bool>,
    call_join: JoinHandle<CallManager>,
    line_watch: JoinHandle<()>,
    sip_mirror: JoinHandle<()>,
    trace_drain: JoinHandle<()>,
    /// Call results (the demo's progress lines).
    pub stats: Arc<CallTaskStats>,
    pair_far_ends: Vec<(u8, PairFarEnd)>,
    span_status: Vec<Arc<SpanTelemetry>>,
}

/// The media thread's line side: the raw spans' `LinePort`, or the DAHDI
/// spans' B-channels as a `DahdiLinePort` with each span's D-channel half,
/// by span index, for the D-channel tasks.
#[allow(clippy::type_complexity)]
fn open_lines<B: DahdiBackend>(
    lines: LinePortParams,
    dahdi: &[DahdiSpanPlan],
    backend: &mut B,
) -> Result<(BoxedPort, LineHandle, Vec<Option<DahdiSpan<B::Channel>>>), GatewayError>
where
    B::Channel: Send + 'static,
{
    if dahdi.is_empty() {
        let (port, h) = LinePort::open(lines).map_err(|e| GatewayError::Media(e.to_string()))?;
        return Ok((Box::new(port), h, Vec::new()));
    }
    let mut d_halves = Vec::with_capacity(dahdi.len());
    let mut spans = Vec::with_capacity(dahdi.len());
    for p in dahdi {
        let span = DahdiSpan::open(backend, p.params).map_err(|error| GatewayError::Dahdi {
            span: p.span,
            error,
        })?;
        let (d, b) = span.split();
        d_halves.push(Some(d));
        spans.push(DahdiLineSpanParams {
            number: p.span,
            channels: b,
            crc4: p.crc4,
        });
    }
    let (port, h) = DahdiLinePort::open(DahdiLinePortParams::new(spans))
        .map_err(|e| GatewayError::Media(e.to_string()))?;
    Ok((Box::new(port), h, d_halves))
}

fn span_snapshot(span: u16, t: &SpanTelemetry) -> SpanSnapshot {
    let s = t.read();
    let d = &s.counters.deframer;
    SpanSnapshot {
        span,
        alarms: s.alarms,
        counters: s.counters,
        current: PerfCounts {
            seconds: u32::from(s.interval.elapsed),
            es: u32::from(s.interval.es),
            ses: u32::from(s.interval.ses),
            uas: u32::from(s.interval.uas),
            far_es: u32::from(s.far_interval.es),
            far_ses: u32::from(s.far_interval.ses),
            far_uas: u32::from(s.far_interval.uas),
            ..PerfCounts::default()
        },
        total: PerfCounts {
            fas_errors: d.fas_errors,
            crc4_blocks: d.crc4_blocks,
            crc4_errors: d.crc4_errors,
            febe: d.febe,
            alignment_losses: d.alignment_losses,
            es: s.es,
            ses: s.ses,
            uas: s.uas,
            slips: s.slips,
            far_es: s.far_es,
            far_ses: s.far_ses,
            far_uas: s.far_uas,
            ..PerfCounts::default()
        },
        unavailable: s.unavailable,
        far_unavailable: s.far_unavailable,
    }
}

/// When each peer entered its current state (as the mirror saw it).
type PeerSince = HashMap<(String, SocketAddr), (bool, std::time::Instant)>;

fn sip_snapshot(
    s: &SipStatus,
    listeners: &[(crate::sip::transport::Transport, SocketAddr)],
    since: &mut PeerSince,
) -> SipSnapshot {
    let now = std::time::Instant::now();
    SipSnapshot {
        calls: s.calls,
        dialogs: s.dialogs,
        transactions: s.transactions,
        listeners: listeners.to_vec(),
        peers: s
            .peers
            .iter()
            .map(|p| {
                let up = p.state == PeerState::Up;
                let key = (p.info.group.clone(), p.info.address);
                let entry = since.entry(key).or_insert((up, now));
                if entry.0 != up {
                    *entry = (up, now);
                }
                PeerRow {
                    group: p.info.group.clone(),
                    address: p.info.address.to_string(),
                    transport: p.info.transport,
                    up,
                    in_state: now.saturating_duration_since(entry.1),
                    rtt: p.srtt,
                    pings_sent: p.pings_sent,
                    ping_failures: p.ping_failures,
                    call_failures: p.call_failures,
                }
            })
            .collect(),
        ua: s.ua,
        endpoint: s.endpoint,
    }
}

/// Mirrors the SIP task's status into the snapshot the metrics and status
/// read: on every change, and each second so that the time in state
/// (`tdmgw_sip_peer_state_duration_seconds`) moves.
async fn mirror_sip_status(
    mut status: watch::Receiver<SipStatus>,
    listeners: Vec<(crate::sip::transport::Transport, SocketAddr)>,
    tx: watch::Sender<SipSnapshot>,
) {
    let mut since = PeerSince::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = status.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
        }
        let s = sip_snapshot(&status.borrow_and_update(), &listeners, &mut since);
        if tx.send(s).is_err() {
            break;
        }
    }
}

impl Gateway {
    /// Builds and starts everything (module doc). `seed` seeds SSRCs, SDP
    /// session ids, SIP tags. DAHDI spans are opened through the kernel.
    pub async fn start(
        config: &Config,
        board: &Arc<OpsBoard>,
        supervisor: &Supervisor,
        lifecycle: Arc<Lifecycle>,
        seed: u64,
    ) -> Result<Gateway, GatewayError> {
        let mut kernel = LinuxDahdi::default();
        Self::start_with(config, board, supervisor, lifecycle, seed, &mut kernel).await
    }

    /// [`Gateway::start`] with the DAHDI device given (a simulated card in
    /// tests); used only when the board's spans are `dahdi`.
    pub async fn start_with<B>(
        config: &Config,
        board: &Arc<OpsBoard>,
        supervisor: &Supervisor,
        lifecycle: Arc<Lifecycle>,
        seed: u64,
        dahdi: &mut B,
    ) -> Result<Gateway, GatewayError>
    where
        B: DahdiBackend + Send,
        B::Channel: Send + 'static,
    {
        let site = &config.site;
        // 1. The media thread.
        let plan =
            media_plan(site, &config.board, seed).map_err(|e| GatewayError::Plan(e.to_string()))?;
        let (core, ctl) =
            MediaCore::new(&plan.engine).map_err(|e| GatewayError::Media(format!("{e:?}")))?;
        let mut lp = MediaLoop::new(core).map_err(|e| GatewayError::Media(format!("{e:?}")))?;
        let span_ids: Vec<u16> = plan.engine.spans.iter().map(|s| s.number).collect();
        let (tap, tap_ctl) = trace_tap(
            span_ids.iter().copied().max().unwrap_or(0),
            TAP_RING_DEFAULT,
        );
        lp.set_trace_tap(tap);
        let rtp_ports = rtp_port_spans(&lp);
        let (port, mut lines, mut dahdi_d) = open_lines(plan.lines, &plan.dahdi, dahdi)?;
        let media_stop = Arc::new(AtomicBool::new(false));
        let media_beat = supervisor.register("media");
        let loop_metrics = Arc::new(MediaLoopMetrics::new("media-0", LOOP_OVERRUN_DEFAULT_US));
        let lm = loop_metrics.clone();
        let media_join = engine::spawn(lp, port, plan.thread, media_stop.clone(), move |lp| {
            media_beat.beat();
            lm.observe_turn(lp);
        })
        .map_err(GatewayError::Io)?;
        // A failure from here on must not leave the media thread running
        // the spans (framing the line towards the exchange, holding the
        // sockets and the tty) for a gateway that is not there.
        let mut media_guard = StopOnDrop(Some(media_stop.clone()));

        // 2. One D-channel task per span.
        let (span_tx, span_rx) = mpsc::unbounded_channel();
        let mut dchannels = Vec::new();
        let mut dchannel_joins = Vec::new();
        for (i, id) in span_ids.iter().enumerate() {
            let id8 = u8::try_from(*id).unwrap_or(u8::MAX);
            let Some(sig) = site.spans.iter().find(|s| s.id == id8) else {
                warn!(
                    span = id,
                    "board span has no [[span]] in the site config: no D-channel"
                );
                continue;
            };
            let channels = config
                .board
                .spans
                .iter()
                .find(|b| b.id == id8)
                .map_or(30, |b| b.channels);
            let (link, mut q931) = sig.dchannel_params(channels);
            q931.overlap_receiving = site.call.overlap_receiving;
            q931.number_complete = Some(crate::call::site_config::number_complete(site, id8));
            let we_are_network = q931.role == crate::isdn::q931::Role::Network;
            let obs = || {
                DchannelOps::register_traced(supervisor, id8, board.trace.clone(), we_are_network)
            };
            let cfg = TaskConfig::new(link, q931);
            // Raw spans: the D-channel rings; DAHDI: the D-channel fd.
            let rings = lines.dchannels.get_mut(i).and_then(Option::take);
            let d_half = dahdi_d.get_mut(i).and_then(Option::take);
            let (h, j) = if let Some(rings) = rings {
                let port = rings.into_port().map_err(GatewayError::Io)?;
                isdn_task::spawn(cfg, port, span_tx.clone(), obs())
            } else if let Some(d) = d_half {
                let port = DahdiPort::new(d).map_err(GatewayError::Io)?;
                isdn_task::spawn(cfg, port, span_tx.clone(), obs())
            } else {
                continue;
            };
            dchannels.push(h);
            dchannel_joins.push(j);
        }
        drop(span_tx);

        // 3. The SIP task.
        let base_dir = config.site_path.parent().unwrap_or(Path::new("."));
        let sip_cfg = site
            .sip_task_config(base_dir, seed)
            .map_err(|e| GatewayError::Sip(e.to_string()))?;
        let (sip_tx, sip_rx) = mpsc::unbounded_channel();
        let sip_messages = Arc::new(SipMessageMetrics::new());
        let sip_ops = SipOps::register_full(
            supervisor,
            sip_messages.clone(),
            board.trace.clone(),
            rtp_ports,
        );
        let (sip, sip_join) = sip_task::spawn(sip_cfg, sip_tx, sip_ops)
            .await
            .map_err(|e| GatewayError::Sip(format!("{e:?}")))?;

        // 4. The call task.
        let cdr = match &site.cdr.path {
            Some(p) => match CdrWriter::open(
                p,
                site.cdr.max_bytes,
                site.cdr.keep,
                site.log.redact_numbers,
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(path = %p.display(), error = %e, "CDR file cannot be opened: no CDRs");
                    None
                }
            },
            None => None,
        };
        let stats = Arc::new(CallTaskStats::default());
        let call_metrics = Arc::new(CallMetrics::new());
        let (call_stop, stop_rx) = watch::channel(false);
        let manager = CallManager::new(
            manager_config(site, seed),
            std::time::Instant::now(),
            unix_ms(),
        );
        let parts = CallTaskParts {
            config: CallTaskConfig::default(),
            manager,
            dchannels: dchannels.clone(),
            sip: sip.clone(),
            span_events: span_rx,
            sip_events: sip_rx,
            media_commands: ctl.commands,
            media_events: ctl.events,
            cdr,
            lifecycle,
            heartbeat: Some(supervisor.register("calls")),
            stats: stats.clone(),
            metrics: Some(call_metrics.clone()),
            stop: stop_rx,
        };
        let call_join = tokio::spawn(call_task::run(parts));

        // 5. The operations board.
        let status = lines.status.clone();
        let ids = span_ids.clone();
        let watches: Vec<watch::Receiver<DChannelStatus>> =
            dchannels.iter().map(DChannelHandle::status).collect();
        layers::register_spans(
            board,
            move || {
                ids.iter()
                    .zip(status.iter())
                    .map(|(id, t)| span_snapshot(*id, t))
                    .collect()
            },
            watches,
        );
        let listeners = sip.local_addrs().to_vec();
        let (snap_tx, snap_rx) = watch::channel(sip_snapshot(
            &sip.status().borrow(),
            &listeners,
            &mut PeerSince::new(),
        ));
        let sip_mirror = tokio::spawn(mirror_sip_status(sip.status(), listeners, snap_tx));
        layers::register_sip(board, sip.transport_counters(), sip_messages, snap_rx);
        layers::register_media(board, vec![ctl.stats.clone()], vec![loop_metrics]);
        let call_stats = stats.clone();
        layers::register_calls(
            board,
            call_metrics,
            move || call_stats.calls(),
            site.log.redact_numbers,
        );
        let trace_drain = tokio::spawn(drain_trace_tap(
            tap_ctl,
            span_ids.clone(),
            board.trace.clone(),
        ));
        let mut events = lines.events;
        let line_watch = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                while let Some(r) = events.try_pop() {
                    line_notice(r.span, r.notice);
                }
            }
        });
        media_guard.0 = None;
        info!(
            spans = span_ids.len(),
            dchannels = dchannels.len(),
            sip = ?sip.local_addrs(),
            "gateway started: media thread, D-channel tasks, SIP task, call task"
        );
        Ok(Gateway {
            media_stop,
            media_join: Some(media_join),
            dchannels,
            dchannel_joins,
            sip,
            sip_join,
            call_stop,
            call_join,
            line_watch,
            sip_mirror,
            trace_drain,
            stats,
            pair_far_ends: plan.pair_far_ends,
            span_status: lines.status,
        })
    }

    /// The parts that have ended by themselves (none while it runs as
    /// started): `the media thread`, `the D-channel task of span N`, `the
    /// SIP task`, `the call task`.
    pub fn ended_parts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self
            .media_join
            .as_ref()
            .is_some_and(std::thread::JoinHandle::is_finished)
        {
            out.push("the media thread".to_string());
        }
        for (d, j) in self.dchannels.iter().zip(&self.dchannel_joins) {
            if j.is_finished() {
                out.push(format!("the D-channel task of span {}", d.span()));
            }
        }
        if self.sip_join.is_finished() {
            out.push("the SIP task".to_string());
        }
        if self.call_join.is_finished() {
            out.push("the call task".to_string());
        }
        out
    }

    /// The far ends of the `pair` spans (once).
    pub fn take_pair_far_ends(&mut self) -> Vec<(u8, PairFarEnd)> {
        std::mem::take(&mut self.pair_far_ends)
    }

    /// The SIP listeners actually bound.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip.local_addrs().first().map(|(_, a)| *a)
    }

    /// Every span's D-channel is established.
    pub fn dchannels_up(&self) -> bool {
        !self.dchannels.is_empty() && self.dchannels.iter().all(|d| d.status().borrow().link_up)
    }

    /// B-channels not idle, over every span.
    pub fn channels_busy(&self) -> usize {
        self.dchannels
            .iter()
            .map(|d| {
                d.status()
                    .borrow()
                    .channels
                    .iter()
                    .filter(|(_, s)| *s != crate::isdn::q931::ChannelState::Idle)
                    .count()
            })
            .sum()
    }

    /// SIP dialogs the user agent holds.
    pub fn dialogs(&self) -> usize {
        self.sip.status().borrow().dialogs
    }

    /// SIP calls not yet ended.
    pub fn sip_calls(&self) -> usize {
        self.sip.status().borrow().calls
    }

    /// A span's line status.
    pub fn span_status(&self, index: usize) -> Option<crate::media::span_status::SpanStatus> {
        self.span_status.get(index).map(|t| t.read())
    }

    /// Orderly stop (module doc); call after the drain.
    pub async fn stop(mut self) -> StopReport {
        let mut rep = StopReport {
            channels_busy: self.channels_busy(),
            dialogs_left: self.dialogs(),
            sip_calls_left: self.sip_calls(),
            ..StopReport::default()
        };
        let _ = self.call_stop.send(true);
        match (&mut self.call_join).await {
            Ok(m) => {
                rep.calls_left = m.call_count();
                rep.manager_idle = m.is_idle();
            }
            Err(e) => warn!(error = %e, "call task failed"),
        }
        for d in &self.dchannels {
            d.shutdown().await;
        }
        for j in self.dchannel_joins.drain(..) {
            let _ = j.await;
        }
        self.sip.shutdown().await;
        let _ = (&mut self.sip_join).await;
        self.line_watch.abort();
        self.sip_mirror.abort();
        self.trace_drain.abort();
        self.media_stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.media_join.take() {
            let r = tokio::task::spawn_blocking(move || j.join()).await;
            if !matches!(r, Ok(Ok(Ok(_)))) {
                warn!("media thread ended with an error");
            }
        }
        info!(?rep, "gateway stopped");
        rep
    }
}

/// Raises the stop flag it holds when dropped (a start-up that failed
/// after the media thread was spawned): the thread ends at its next turn
/// and drops the line port. Disarmed (`None`) once the gateway is built.
struct StopOnDrop(Option<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.store(true, Ordering::Relaxed);
            warn!("gateway start-up failed: media thread stopped");
        }
    }
}

/// Our B-channels' RTP ports and their spans (the SIP trace's Call-ID →
/// span rule, `ops::sip`).
fn rtp_port_spans(lp: &MediaLoop) -> HashMap<u16, u8> {
    (0..lp.core().channel_count())
        .filter_map(|i| {
            let span = u8::try_from(lp.core().channel(i)?.id().span).ok()?;
            Some((lp.rtp_addr(i)?.0.port(), span))
        })
        .collect()
}

/// How often the media trace tap is drained while a trace runs (its ring
/// holds about 170 ms of a full E1, `media::trace_tap`).
const TAP_DRAIN_PERIOD: Duration = Duration::from_millis(10);

/// The control plane's end of the media trace tap: turns the spans being
/// traced on and off, and publishes the copied RTP/RTCP datagrams to the
/// trace hub. Idle (a check every 100 ms) while nothing is traced.
async fn drain_trace_tap(mut tap: TapControl, spans: Vec<u16>, hub: TraceHub) {
    let mut dropped = tap.overflows();
    loop {
        let active = hub.is_active();
        for &s in &spans {
            let on = active && u8::try_from(s).is_ok_and(|s8| hub.span_active(s8));
            if tap.span_on(s) != on {
                tap.set_span(s, on);
            }
        }
        while let Some(p) = tap.try_pop() {
            let (src, dst) = if p.sent {
                (p.local, p.remote)
            } else {
                (p.remote, p.local)
            };
            hub.publish(TraceRecord::Udp {
                span: u8::try_from(p.span).ok(),
                at: p.at,
                src,
                dst,
                payload: p.payload().to_vec(),
                orig_len: usize::from(p.orig_len),
            });
        }
        let o = tap.overflows();
        if o != dropped {
            warn!(
                lost = o - dropped,
                "trace tap ring full: RTP packets left out of the trace"
            );
            dropped = o;
        }
        tokio::time::sleep(if active {
            TAP_DRAIN_PERIOD
        } else {
            Duration::from_millis(100)
        })
        .await;
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Alarm raise/clear from the line event ring as NOC events (issue 8 §4).
fn line_notice(span: u16, n: LineNotice) {
    use crate::line::e1_alarm::LineEvent;
    match n {
        LineNotice::Line(LineEvent::AlarmRaised(a)) => {
            crate::noc_event!(NocEvent::AlarmRaised, span, alarm = ?a, "E1 alarm raised");
        }
        LineNotice::Line(LineEvent::AlarmCleared(a)) => {
            crate::noc_event!(NocEvent::AlarmCleared, span, alarm = ?a, "E1 alarm cleared");
        }
        LineNotice::Line(LineEvent::Crc4Interworking) => {
            warn!(
                span,
                "no CRC-4 multiframe from the far end: basic framing (G.706 Annex B)"
            );
        }
        LineNotice::Driver(d) => info!(span, event = ?d, "line driver state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// A board of one span (`span` is its driver's TOML; `None`: the
    /// built-in simulated board) and a site with SIP on `sip`, written to
    /// `dir`, loaded; the RTP range is probed free.
    fn config(dir: &Path, span: Option<&str>, sip: SocketAddr) -> Config {
        // Each candidate once per test binary (its tests run in parallel).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seed = std::process::id().wrapping_mul(2_654_435_761);
        let base = (0..50)
            .map(|_| NEXT.fetch_add(1, Ordering::Relaxed))
            .map(|n| 20_000 + (seed.wrapping_add(n) % 150) as u16 * 64)
            .find(|b| (0..64).all(|i| UdpSocket::bind(("127.0.0.1", b + i)).is_ok()))
            .expect("a free RTP range");
        let board = match span {
            Some(span) => {
                std::fs::write(
                    dir.join("board.toml"),
                    format!(
                        "name = \"t\"\ndescription = \"t\"\n[media]\nrealtime_priority = 0\nlock_memory = false\n[[span]]\nid = 1\n{span}\n"
                    ),
                )
                .unwrap();
                "board.toml"
            }
            None => "builtin:sim",
        };
        let site = format!(
            "board = \"{board}\"
[media]
rtp_address = \"127.0.0.1\"
rtp_port_base = {base}
[sip]
listen = [{{ transport = \"udp\", address = \"{sip}\" }}]
[[peer_group]]
name = \"core\"
[[peer_group.peer]]
address = \"127.0.0.1:9\"
[[route]]
called = \"*\"
peer_group = \"core\"
[[span]]
id = 1
role = \"user\"
"
        );
        std::fs::write(dir.join("site.toml"), site).unwrap();
        Config::load(&dir.join("site.toml")).expect("config")
    }

    async fn start(config: &Config) -> Result<Gateway, GatewayError> {
        let supervisor = Supervisor::new();
        let lifecycle = Arc::new(Lifecycle::default());
        let board = Arc::new(OpsBoard::new(supervisor.clone(), lifecycle.clone()));
        Gateway::start(config, &board, &supervisor, lifecycle, 7).await
    }

    /// A serial span whose tty does not exist: the error names the span
    /// and the device (what `/readyz` and `tdmgw status` show).
    #[tokio::test]
    async fn a_missing_serial_device_fails_the_start_naming_span_and_device() {
        let dir = tempfile::tempdir().unwrap();
        let tty = dir.path().join("no-such-tty");
        let span = format!(
            "driver = \"serial\"\ndevice = \"{}\"\nbaud = 2048000",
            tty.display()
        );
        let c = config(dir.path(), Some(&span), "127.0.0.1:0".parse().unwrap());
        let Err(e) = start(&c).await else {
            panic!("the gateway started on a missing tty");
        };
        let text = e.to_string();
        assert!(matches!(e, GatewayError::Media(_)), "{e:?}");
        assert!(
            text.contains("span 1") && text.contains("no-such-tty"),
            "{text}"
        );
    }

    /// The SIP address is taken: the start fails after the media thread
    /// was spawned, and that thread lets go of the span (its SAToP socket
    /// can be bound again) instead of running on for no gateway.
    #[tokio::test]
    async fn a_sip_address_in_use_fails_the_start_and_stops_the_media_thread() {
        let dir = tempfile::tempdir().unwrap();
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let free = || {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (local, remote) = (free(), free());
        let span = format!("driver = \"satop\"\nlocal = \"{local}\"\nremote = \"{remote}\"");
        let c = config(dir.path(), Some(&span), taken.local_addr().unwrap());
        let Err(e) = start(&c).await else {
            panic!("the gateway started on a SIP address in use");
        };
        assert!(matches!(e, GatewayError::Sip(_)), "{e:?}");
        // Hang guard only: the thread stops at its next turn.
        let mut rebound = None;
        for _ in 0..200 {
            if let Ok(s) = UdpSocket::bind(local) {
                rebound = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            rebound.is_some(),
            "the media thread still holds the span's SAToP socket {local}"
        );
    }

    /// The media thread's published status reaches the snapshot the
    /// metrics and `tdmgw status` read, far-end seconds included.
    #[test]
    fn span_snapshot_carries_near_and_far_end_seconds() {
        use crate::media::span_status::{IntervalSeconds, SpanStatus};
        let t = SpanTelemetry::new(3);
        t.publish(&SpanStatus {
            es: 5,
            ses: 2,
            uas: 11,
            interval: IntervalSeconds {
                elapsed: 420,
                es: 1,
                ses: 0,
                uas: 0,
            },
            far_es: 7,
            far_ses: 3,
            far_uas: 12,
            far_interval: IntervalSeconds {
                elapsed: 420,
                es: 4,
                ses: 2,
                uas: 10,
            },
            far_unavailable: true,
            ..SpanStatus::default()
        });
        let s = span_snapshot(3, &t);
        assert_eq!(s.span, 3);
        let near = |p: &PerfCounts| (p.es, p.ses, p.uas);
        let far = |p: &PerfCounts| (p.far_es, p.far_ses, p.far_uas);
        assert_eq!((near(&s.total), near(&s.current)), ((5, 2, 11), (1, 0, 0)));
        assert_eq!((far(&s.total), far(&s.current)), ((7, 3, 12), (4, 2, 10)));
        assert_eq!(s.current.seconds, 420);
        assert!(s.far_unavailable && !s.unavailable);
    }

    /// A part that ends by itself is named by `ended_parts` (what the
    /// daemon turns into state `Stopped`); none while all run.
    #[tokio::test]
    async fn a_part_that_ends_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), None, "127.0.0.1:0".parse().unwrap());
        let gw = start(&c).await.expect("the gateway on the simulated board");
        assert_eq!(gw.ended_parts(), Vec::<String>::new());
        gw.dchannels[0].shutdown().await;
        let mut ended = Vec::new();
        for _ in 0..200 {
            ended = gw.ended_parts();
            if !ended.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(ended, vec!["the D-channel task of span 1".to_string()]);
        gw.stop().await;
    }
}
