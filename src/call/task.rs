//! The call task: the control plane's thin tokio shell around the
//! [`CallManager`] (DESIGN.md §4; issue 7 §1).
//!
//! # Contract
//!
//! Each time round its loop the task waits for the first of: a
//! [`SpanEvent`] from any D-channel task, a [`SipEvent`] from the SIP task,
//! the media poll interval ([`CallTaskConfig::media_poll`]: the engine's
//! event ring is a lock-free SPSC ring with no wakeup, so it is drained on
//! a short interval), the manager's deadline (`poll_timeout`) or the
//! heartbeat. It feeds the input to the manager, then executes every
//! [`Action`] in order:
//!
//! - `Action::Isdn` → the span's [`DChannelHandle`]; the reply of a
//!   `PlaceCall` goes back through `handle_isdn_placed` (before any later
//!   event of that span is fed: the task awaits it inline); a refused
//!   command goes back through `handle_isdn_refused` (the manager forgets
//!   a call Q.931 answers "unknown call" for); a channel RESTART the
//!   audit asked for raises the `ChannelRecovered` NOC event.
//! - `Action::Sip` → the [`SipHandle`]. SIP calls are named by
//!   [`SipCallId`]; the manager's [`CallHandle`] carries the same number.
//!   Failover between a group's peers is the SIP task's alone; the peer a
//!   call was answered or refused by is told to the manager
//!   (`handle_sip_peer`) for its CDR and the status.
//! - `Action::Media` → the media engine's command ring (a full ring is
//!   counted, never waited on; the manager's audit recovers the call).
//! - `Action::Cdr` → the [`CdrWriter`] (which redacts), and the
//!   [`CallTaskStats`] the demo and telemetry read.
//!
//! Status: the calls in progress ([`CallTaskStats::calls`], the status
//! view's `calls` section) are refreshed when the count changes and at
//! most every [`CallTaskConfig::status_interval`] otherwise.
//!
//! Lifecycle: the live-call count ([`CallManager::call_count`]) is mirrored
//! into [`Lifecycle`] with `work_started`/`work_ended`, so a SIGTERM drain
//! waits for live calls; while [`Lifecycle::is_draining`] the manager and
//! the SIP task refuse new calls. Supervisor: `beat()` every turn.
//!
//! The task stops when `stop` is set (after the drain) or both event
//! channels close; it returns the manager for inspection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tracing::{info, warn};

use super::cdr::{CdrRecord, CdrWriter};
use super::manager::{Action, CallManager, IsdnCommand, SipAction, SipPlaceError};
use crate::isdn::task::{DChannelHandle, SpanEvent, TaskError};
use crate::media::control::{Command as MediaCommand, Event as MediaEvent};
use crate::media::ring::{Consumer, Producer};
use crate::ops::daemon::Lifecycle;
use crate::ops::layer_metrics::CallMetrics;
use crate::ops::status_view::CallView;
use crate::ops::supervisor::Heartbeat;
use crate::sip::task::{PlaceCall, SipCallId, SipEvent, SipHandle, SipStatus, SipTaskError};
use crate::sip::ua::{CallHandle, UaEvent};

/// The task's own knobs.
#[derive(Debug, Clone)]
pub struct CallTaskConfig {
    /// How often the media event ring is drained.
    pub media_poll: Duration,
    /// The longest the task goes without checking in.
    pub heartbeat_interval: Duration,
    /// How often the calls in progress are copied out for the status.
    pub status_interval: Duration,
}

impl Default for CallTaskConfig {
    /// 5 ms media polling (a quarter of a 20 ms packet), 1 s heartbeat,
    /// status refreshed every 500 ms.
    fn default() -> Self {
        CallTaskConfig {
            media_poll: Duration::from_millis(5),
            heartbeat_interval: Duration::from_secs(1),
            status_interval: Duration::from_millis(500),
        }
    }
}

/// Call results, read by telemetry and the demo's progress lines.
#[derive(Debug, Default)]
pub struct CallTaskStats {
    /// Calls the manager holds right now.
    pub live: AtomicU64,
    /// CDRs written.
    pub ended: AtomicU64,
    /// Ended after an answer with a normal clearing (cause 16).
    pub completed: AtomicU64,
    pub media_ring_full: AtomicU64,
    /// Not answered or failed, by Q.850 cause.
    pub failed_by_cause: Mutex<std::collections::BTreeMap<u8, u64>>,
    /// MOS of every call with a media summary (sum and count).
    pub mos_sum_milli: AtomicU64,
    pub mos_count: AtomicU64,
    /// Whether the manager was idle (no call, no index entry) last turn.
    pub idle: AtomicBool,
    /// The calls in progress, for the status view.
    pub calls: Mutex<Vec<CallView>>,
}

impl CallTaskStats {
    fn record(&self, r: &CdrRecord) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        if r.answer_ms.is_some() && r.q850_cause == 16 {
            self.completed.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut m) = self.failed_by_cause.lock() {
            *m.entry(r.q850_cause).or_default() += 1;
        }
        if let Some(q) = &r.quality
            && q.mos > 0.0
        {
            self.mos_sum_milli
                .fetch_add((q.mos * 1000.0) as u64, Ordering::Relaxed);
            self.mos_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Mean MOS of the calls with a media summary.
    pub fn mean_mos(&self) -> Option<f64> {
        let n = self.mos_count.load(Ordering::Relaxed);
        (n > 0).then(|| self.mos_sum_milli.load(Ordering::Relaxed) as f64 / 1000.0 / n as f64)
    }

    /// The calls in progress as last copied out.
    pub fn calls(&self) -> Vec<CallView> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn failed(&self) -> Vec<(u8, u64)> {
        self.failed_by_cause
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

/// Everything the call task runs with.
pub struct CallTaskParts {
    pub config: CallTaskConfig,
    pub manager: CallManager,
    pub dchannels: Vec<DChannelHandle>,
    pub sip: SipHandle,
    pub span_events: mpsc::UnboundedReceiver<SpanEvent>,
    pub sip_events: mpsc::UnboundedReceiver<SipEvent>,
    pub media_commands: Producer<MediaCommand>,
    pub media_events: Consumer<MediaEvent>,
    pub cdr: Option<CdrWriter>,
    pub lifecycle: Arc<Lifecycle>,
    pub heartbeat: Option<Heartbeat>,
    pub stats: Arc<CallTaskStats>,
    /// Telemetry's call metrics: started as the manager takes a call on,
    /// ended (with the setup latency) per CDR.
    pub metrics: Option<Arc<CallMetrics>>,
    /// Set to stop the task.
    pub stop: watch::Receiver<bool>,
}

struct Task {
    cfg: CallTaskConfig,
    m: CallManager,
    spans: HashMap<u8, DChannelHandle>,
    sip: SipHandle,
    sip_status: watch::Receiver<SipStatus>,
    media_commands: Producer<MediaCommand>,
    media_events: Consumer<MediaEvent>,
    cdr: Option<CdrWriter>,
    lifecycle: Arc<Lifecycle>,
    heartbeat: Option<Heartbeat>,
    stats: Arc<CallTaskStats>,
    metrics: Option<Arc<CallMetrics>>,
    live: usize,
    draining: bool,
    /// When the calls were last copied out, and how many there were.
    status_at: std::time::Instant,
    status_count: usize,
    /// The manager's created-call counters already told to the metrics.
    started_seen: (u64, u64),
    /// Last table seen per span (the audit's input when it changes).
    tables: HashMap<u8, watch::Receiver<crate::isdn::task::DChannelStatus>>,
}

/// Runs the call task until `stop` (see the module doc).
pub async fn run(p: CallTaskParts) -> CallManager {
    let CallTaskParts {
        config,
        manager,
        dchannels,
        sip,
        mut span_events,
        mut sip_events,
        media_commands,
        media_events,
        cdr,
        lifecycle,
        heartbeat,
        stats,
        metrics,
        mut stop,
    } = p;
    let tables = dchannels.iter().map(|d| (d.span(), d.status())).collect();
    let mut t = Task {
        cfg: config,
        m: manager,
        spans: dchannels.into_iter().map(|d| (d.span(), d)).collect(),
        sip_status: sip.status(),
        sip,
        media_commands,
        media_events,
        cdr,
        lifecycle,
        heartbeat,
        stats,
        metrics,
        live: 0,
        draining: false,
        status_at: std::time::Instant::now(),
        status_count: 0,
        started_seen: (0, 0),
        tables,
    };
    info!(spans = t.spans.len(), "call task starting");
    let mut media_tick = interval(t.cfg.media_poll);
    media_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut beat = interval(t.cfg.heartbeat_interval);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let (mut spans_open, mut sip_open) = (true, true);
    loop {
        let deadline = t.m.poll_timeout().map(Instant::from_std).unwrap_or(far);
        tokio::select! {
            ev = span_events.recv(), if spans_open => match ev {
                Some(SpanEvent { span, event }) => {
                    t.m.handle_isdn(std::time::Instant::now(), span, event);
                }
                None => spans_open = false,
            },
            ev = sip_events.recv(), if sip_open => match ev {
                Some(e) => t.on_sip(e),
                None => sip_open = false,
            },
            _ = media_tick.tick() => t.drain_media(),
            _ = sleep_until(deadline) => t.m.handle_timeout(std::time::Instant::now()),
            _ = beat.tick() => t.audit_tables(),
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        t.turn().await;
        if !spans_open && !sip_open {
            break;
        }
    }
    // Whatever is still live is cut now (the drain is over): release the
    // lifecycle's count so it does not outlive the task.
    for _ in 0..t.live {
        t.lifecycle.work_ended();
    }
    info!(calls = t.m.call_count(), "call task stopped");
    t.m
}

impl Task {
    /// After every input: execute the actions, mirror the live count and
    /// the drain flag, check in.
    async fn turn(&mut self) {
        self.execute().await;
        let draining = self.lifecycle.is_draining();
        if draining != self.draining {
            self.draining = draining;
            self.m.set_draining(draining);
            if let Err(e) = self.sip.set_draining(draining).await {
                warn!(error = %e, "sip task did not take the drain flag");
            }
        }
        let live = self.m.call_count();
        while self.live < live {
            self.lifecycle.work_started();
            self.live += 1;
        }
        while self.live > live {
            self.lifecycle.work_ended();
            self.live -= 1;
        }
        self.stats.live.store(live as u64, Ordering::Relaxed);
        self.stats.idle.store(self.m.is_idle(), Ordering::Relaxed);
        self.publish_calls(live);
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    /// Copies the calls in progress out for the status view when their
    /// number changed, or at the status interval while there are any.
    fn publish_calls(&mut self, live: usize) {
        let now = std::time::Instant::now();
        let due = now.saturating_duration_since(self.status_at) >= self.cfg.status_interval;
        if live == self.status_count && (live == 0 || !due) {
            return;
        }
        self.status_at = now;
        self.status_count = live;
        let views = self
            .m
            .calls_in_progress()
            .into_iter()
            .map(|c| CallView {
                id: c.id,
                direction: c.direction,
                calling: c.calling,
                called: c.called,
                span: c.span,
                timeslot: c.timeslot.unwrap_or(0),
                peer: c.peer,
                state: c.state.to_owned(),
                started: c.started,
            })
            .collect();
        if let Ok(mut calls) = self.stats.calls.lock() {
            *calls = views;
        }
    }

    fn drain_media(&mut self) {
        while let Some(ev) = self.media_events.try_pop() {
            self.m.handle_media(std::time::Instant::now(), ev);
        }
    }

    /// Feeds a span's channel table to the manager's audit when it changed.
    fn audit_tables(&mut self) {
        for (span, rx) in &mut self.tables {
            if rx.has_changed().unwrap_or(false) {
                let table = rx.borrow_and_update().channels.clone();
                self.m.handle_channel_table(*span, &table);
            }
        }
    }

    fn peer_text(&self, id: crate::sip::peer::PeerId) -> Option<String> {
        let s = self.sip_status.borrow();
        s.peers
            .iter()
            .find(|p| p.info.id == id)
            .map(|p| p.info.address.to_string())
    }

    fn on_sip(&mut self, e: SipEvent) {
        let now = std::time::Instant::now();
        let h = |c: SipCallId| CallHandle(c.0);
        let ua = match e {
            SipEvent::IncomingCall {
                call,
                request,
                sdp,
                peer,
            } => {
                let source = peer
                    .and_then(|p| self.peer_text(p))
                    .unwrap_or_else(|| "unknown".into());
                info!(call = call.0, peer = %source, "INVITE from the core");
                UaEvent::IncomingCall {
                    call: h(call),
                    request,
                    sdp,
                    peer: crate::sip::endpoint::Remote {
                        transport: crate::sip::endpoint::Transport::Udp,
                        address: source
                            .parse()
                            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                    },
                }
            }
            SipEvent::Provisional { call, status, sdp } => UaEvent::Provisional {
                call: h(call),
                status,
                sdp,
            },
            SipEvent::Answered { call, sdp, peer } => {
                if let Some(p) = self.peer_text(peer) {
                    self.m.handle_sip_peer(h(call), &p);
                }
                UaEvent::Answered { call: h(call), sdp }
            }
            SipEvent::Failed {
                call,
                status,
                reason,
                peer,
            } => {
                if let Some(p) = peer.and_then(|p| self.peer_text(p)) {
                    self.m.handle_sip_peer(h(call), &p);
                }
                UaEvent::Failed {
                    call: h(call),
                    status,
                    reason,
                }
            }
            SipEvent::Ended { call, by, reason } => UaEvent::Ended {
                call: h(call),
                by,
                reason,
            },
            SipEvent::MediaUpdate { call, sdp } => UaEvent::MediaUpdate { call: h(call), sdp },
            SipEvent::InfoDtmf {
                call,
                digit,
                duration_ms,
            } => UaEvent::InfoDtmf {
                call: h(call),
                digit,
                duration_ms,
            },
            SipEvent::ReinviteFailed { call, status } => UaEvent::ReinviteFailed {
                call: h(call),
                status,
            },
            SipEvent::PeerUp(p) => {
                self.m.handle_peer(&p.group, &p.address.to_string(), true);
                return;
            }
            SipEvent::PeerDown(p) => {
                self.m.handle_peer(&p.group, &p.address.to_string(), false);
                return;
            }
        };
        self.m.handle_sip(now, ua);
    }

    /// Calls the manager took on since last time: `tdmgw_calls_in_progress`
    /// counts them until their CDR.
    fn mirror_started(&mut self) {
        let c = &self.m.counters;
        let now = (c.created_exchange_to_core, c.created_core_to_exchange);
        if let Some(m) = &self.metrics {
            for _ in self.started_seen.0..now.0 {
                m.started(super::cdr::Direction::ExchangeToCore);
            }
            for _ in self.started_seen.1..now.1 {
                m.started(super::cdr::Direction::CoreToExchange);
            }
        }
        self.started_seen = now;
    }

    async fn execute(&mut self) {
        self.mirror_started();
        while let Some(a) = self.m.poll_action() {
            // A reply fed back below may have taken a new call on.
            self.mirror_started();
            match a {
                Action::Isdn { span, command } => self.isdn(span, command).await,
                Action::Sip(s) => self.sip_action(s).await,
                Action::Media(c) => {
                    if self.media_commands.try_push(c).is_err() {
                        self.stats.media_ring_full.fetch_add(1, Ordering::Relaxed);
                        warn!(command = ?c, "media command ring full: command dropped");
                    }
                }
                Action::Cdr(r) => {
                    self.stats.record(&r);
                    if let Some(m) = &self.metrics {
                        if let Some(a) = r.answer_ms {
                            m.setup_latency(
                                r.direction,
                                Duration::from_millis(a.saturating_sub(r.setup_ms)),
                            );
                        }
                        m.ended(r.direction, r.answer_ms.is_some(), r.q850_cause);
                    }
                    if let Some(w) = &mut self.cdr {
                        w.write(r);
                    }
                }
            }
        }
    }

    async fn isdn(&mut self, span: u8, c: IsdnCommand) {
        let Some(d) = self.spans.get(&span).cloned() else {
            warn!(span, command = ?c, "no D-channel task for the span");
            if let IsdnCommand::PlaceCall { token, .. } = c {
                self.m.handle_isdn_placed(
                    std::time::Instant::now(),
                    token,
                    Err(TaskError::Stopped),
                );
            }
            return;
        };
        let id = isdn_command_call(&c);
        let restart = match &c {
            IsdnCommand::Restart { timeslots, .. } => Some(timeslots.clone()),
            _ => None,
        };
        let r = match c {
            IsdnCommand::PlaceCall { token, call } => {
                let r = d.place_call(call).await;
                self.m
                    .handle_isdn_placed(std::time::Instant::now(), token, r);
                return;
            }
            IsdnCommand::Information {
                id,
                digits,
                sending_complete,
            } => d.information(id, &digits, sending_complete).await,
            IsdnCommand::Alerting { id } => d.alerting(id).await,
            IsdnCommand::Progress { id, description } => d.progress(id, description).await,
            IsdnCommand::Connect { id } => d.connect(id).await,
            IsdnCommand::Disconnect { id, cause } => d.disconnect(id, cause).await,
            IsdnCommand::Release { id, cause } => d.release(id, cause).await,
            IsdnCommand::StatusEnquiry { id } => d.status_enquiry(id).await,
            IsdnCommand::Restart { class, timeslots } => d.restart(class, &timeslots).await,
            IsdnCommand::BusyOut { on } => d.busy_out(on).await,
        };
        match r {
            Ok(()) => {
                // Only the manager's audit asks for a RESTART.
                for ts in restart.into_iter().flatten() {
                    crate::ops::events::channel_recovered(u16::from(span), ts, "busy");
                }
            }
            Err(e) => {
                // The terminal events drive the clearing (manager contract);
                // "unknown call" tells the manager Q.931 has forgotten it.
                info!(span, call_id = ?id, error = %e, "D-channel command refused");
                if let Some(id) = id {
                    self.m
                        .handle_isdn_refused(std::time::Instant::now(), span, id, e);
                }
            }
        }
    }

    async fn sip_action(&mut self, s: SipAction) {
        let sid = |c: CallHandle| SipCallId(c.0);
        let r: Result<(), SipTaskError> = match s {
            SipAction::PlaceCall {
                token,
                group,
                invite,
            } => {
                let inv = *invite;
                let user = super::identity::uri_user(&inv.request_uri).unwrap_or_default();
                let place = PlaceCall {
                    group: group.clone(),
                    user,
                    from: inv.from,
                    to: inv.to,
                    headers: inv.headers,
                    sdp: inv.sdp,
                };
                let r = match self.sip.place_call(place).await {
                    Ok(id) => Ok(CallHandle(id.0)),
                    Err(SipTaskError::Stopped) => Err(SipPlaceError::Stopped),
                    Err(e) => {
                        info!(error = %e, "INVITE not placed");
                        Err(SipPlaceError::NoPeer)
                    }
                };
                self.m
                    .handle_sip_placed(std::time::Instant::now(), token, r);
                return;
            }
            SipAction::Provisional { call, status, sdp } => {
                self.sip.send_provisional(sid(call), status, sdp).await
            }
            SipAction::Accept { call, sdp } => self.sip.accept(sid(call), sdp).await,
            SipAction::Reject {
                call,
                status,
                reason,
            } => self.sip.reject(sid(call), status, reason.as_deref()).await,
            SipAction::Hangup { call, reason } => {
                self.sip.hangup(sid(call), reason.as_deref()).await
            }
            SipAction::Reinvite { call, sdp } => self.sip.reinvite(sid(call), sdp).await,
            SipAction::DtmfInfo {
                call,
                digit,
                duration_ms,
            } => self.sip.send_dtmf_info(sid(call), digit, duration_ms).await,
        };
        if let Err(e) = r {
            info!(error = %e, "SIP command refused");
        }
    }
}

/// The Q.931 call a command is for.
fn isdn_command_call(c: &IsdnCommand) -> Option<crate::isdn::q931::CallId> {
    match c {
        IsdnCommand::Information { id, .. }
        | IsdnCommand::Alerting { id }
        | IsdnCommand::Progress { id, .. }
        | IsdnCommand::Connect { id }
        | IsdnCommand::Disconnect { id, .. }
        | IsdnCommand::Release { id, .. }
        | IsdnCommand::StatusEnquiry { id } => Some(*id),
        IsdnCommand::PlaceCall { .. }
        | IsdnCommand::Restart { .. }
        | IsdnCommand::BusyOut { .. } => None,
    }
}
