//! The simulated MCVP core (issue 7 §5, `tdmgw sim core`): a SIP user agent
//! on UDP (and TCP) that answers, rejects or ignores INVITEs by policy,
//! places calls, runs an RTP peer per call ([`super::rtp_peer`]) and
//! reports what happened as JSON, with a verdict per check.
//!
//! # Contract
//!
//! - [`SimCore::start`]`(SimCoreConfig)` binds the SIP listeners and the
//!   loop (one tokio task owning a [`UserAgent`] and the [`Transports`]),
//!   then returns at once; [`SimCore::sip_addr`] is the bound UDP address.
//! - The run ends by itself when [`SimCoreConfig::run_for`] has passed, or,
//!   with `run_for: None` and a [`CallPlan`], when every planned call has
//!   been placed and has ended; [`SimCore::stop`] ends it early. Ending
//!   clears every live call (BYE, CANCEL, 480) and waits at most
//!   [`SimCoreConfig::drain`] for them. [`SimCore::finish`] waits for the end
//!   and returns the [`SimCoreReport`]; [`run`] does both.
//! - Incoming INVITEs are handled by the [`AnswerPolicy`] of the called
//!   number (`answer_by_number`, else `answer`): optional 180, optional 183
//!   with SDP (early media, the RTP peer starts then), after `delay` either
//!   200 with the SDP answer, a 3xx-6xx with a `Reason: Q.850` header (RFC
//!   3326; the cause from RFC 3398 §7.2.4.1 unless given; none with
//!   `reason_header: false`, so the far end maps by its own table), or
//!   nothing (the caller's timers run). An answered incoming call is cleared by the
//!   caller, or by us after `hangup_after`.
//! - Outgoing calls ([`CallPlan`]): `calls` INVITEs at `rate_per_s` to
//!   `target`, each with our SDP offer (PCMA/PCMU/telephone-event), cleared
//!   by us after `hold` (or by the far end, `far_end_clears`), or cancelled
//!   `cancel_after_ring` after the first 180/183 if still unanswered;
//!   `dtmf` digits as RFC 4733 events on every `dtmf_every`-th call; the
//!   numbers of `called_in_turn` in turn, each with its `expect_by_number`
//!   outcome; never more than `max_in_progress` at once (a due call waits).
//! - Checks ([`MediaChecks`], plan expectations) are evaluated once at the
//!   end: each placed call got its expected outcome; each answered call
//!   received at least `min_packets` RTP packets with at most
//!   `max_loss_percent` loss; with `expect_echo`, what we generated came
//!   back (pattern markers or tone, and the DTMF digits); every call ended.
//!   `all_checks_passed` is their conjunction.
//!
//! The simulator is a test tool: it uses the user agent and transports
//! directly, not the gateway's SIP task, and keeps its state in plain maps.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::rtp_peer::{MediaMode, PeerConfig, RtpPeer, RtpStats};
use crate::call::cause_map::{CauseMap, Reason};
use crate::sip::endpoint::Remote;
use crate::sip::sdp::{self, Direction, LocalMedia, Origin, Sdp};
use crate::sip::transaction::TimerValues;
use crate::sip::transport::{Outbound, TransportConfig, TransportEvent, Transports};
use crate::sip::ua::{CallHandle, EndedBy, OutgoingCall, UaConfig, UaEvent, UserAgent};
use crate::sip::{Limits, Message, NameAddr, StartLine, Uri, reason_phrase};

pub use crate::sip::endpoint::Transport;
use crate::sip::transport::Transport as Wire;

/// The transports' name for a transport (the endpoint has its own enum).
fn to_wire(t: Transport) -> Wire {
    match t {
        Transport::Udp => Wire::Udp,
        Transport::Tcp => Wire::Tcp,
        Transport::Tls => Wire::Tls,
    }
}

fn from_wire(t: Wire) -> Transport {
    match t {
        Wire::Udp => Transport::Udp,
        Wire::Tcp => Transport::Tcp,
        Wire::Tls => Transport::Tls,
    }
}

/// What to do with an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// 200 with our SDP answer.
    Answer,
    /// A 300-699, with `Reason: Q.850;cause=` (given, or RFC 3398 §7.2.4.1).
    Reject { status: u16, q850: Option<u8> },
    /// Never answer: let the caller's timers run (or its CANCEL come).
    NoAnswer,
}

/// How the core treats an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// Send 180 Ringing first.
    pub ring: bool,
    /// Send 183 with our SDP (early media; the RTP peer starts).
    pub early_media: bool,
    /// Time from the INVITE to the final response.
    pub delay: Duration,
    pub outcome: Outcome,
    /// Clear an answered call ourselves after this long.
    pub hangup_after: Option<Duration>,
    /// DTMF digits sent (RFC 4733) on answered calls.
    pub dtmf: String,
    /// A rejection carries `Reason: Q.850;cause=` (RFC 3326); `false`
    /// sends none, so that the far end maps the status by its own table.
    pub reason_header: bool,
}

impl Default for AnswerPolicy {
    fn default() -> Self {
        AnswerPolicy {
            ring: true,
            early_media: false,
            delay: Duration::ZERO,
            outcome: Outcome::Answer,
            hangup_after: None,
            dtmf: String::new(),
            reason_header: true,
        }
    }
}

/// The result a planned call must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Expect {
    /// Answered and ended normally.
    Answer,
    /// Refused with this final status.
    Status { status: u16 },
    /// Never answered: still ringing at `no_answer_timeout`, when we CANCEL.
    NoAnswer,
}

/// Calls to place.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    pub target: SocketAddr,
    pub transport: Transport,
    pub calls: u32,
    /// New calls per second.
    pub rate_per_s: f64,
    /// How long an answered call stays up before we clear it.
    pub hold: Duration,
    pub called: String,
    /// When not empty, the numbers called in turn (instead of `called`).
    pub called_in_turn: Vec<String>,
    /// Per called number, the result its calls must have (else `expect`).
    pub expect_by_number: Vec<(String, Expect)>,
    /// CANCEL a call this long after its first 180 or 183 if it is not
    /// answered by then (a caller giving up while it rings).
    pub cancel_after_ring: Option<Duration>,
    /// At most this many placed calls in progress at once (0: no limit); a
    /// call due while the limit is reached waits for one to end.
    pub max_in_progress: u32,
    pub calling: String,
    /// Digits sent as RFC 4733 events on every `dtmf_every`-th call (0: none).
    pub dtmf: String,
    pub dtmf_every: u32,
    pub expect: Expect,
    /// The far end clears after answering; we clear only after `hold` + 5 s,
    /// and that fails the call's check.
    pub far_end_clears: bool,
    /// Clear a call that is still ringing after this long (CANCEL).
    pub no_answer_timeout: Duration,
}

impl CallPlan {
    /// The number the `i`-th call (from 0) goes to.
    pub fn called_for(&self, i: u32) -> &str {
        match self.called_in_turn.len() {
            0 => &self.called,
            n => &self.called_in_turn[i as usize % n],
        }
    }

    /// The result a call to `called` must have.
    pub fn expect_for(&self, called: &str) -> Expect {
        self.expect_by_number
            .iter()
            .find(|(n, _)| n == called)
            .map_or(self.expect, |(_, e)| *e)
    }

    /// One call to `target` for `called`, answered and held 1 s.
    pub fn new(target: SocketAddr, called: &str) -> CallPlan {
        CallPlan {
            target,
            transport: Transport::Udp,
            calls: 1,
            rate_per_s: 10.0,
            hold: Duration::from_secs(1),
            called: called.to_owned(),
            called_in_turn: Vec::new(),
            expect_by_number: Vec::new(),
            cancel_after_ring: None,
            max_in_progress: 0,
            calling: "01632960001".to_owned(),
            dtmf: String::new(),
            dtmf_every: 0,
            expect: Expect::Answer,
            far_end_clears: false,
            no_answer_timeout: Duration::from_secs(30),
        }
    }
}

/// The packets a call connected for `connected_ms` can be asked for: half
/// of its 20 ms packets after 300 ms of set-up (the gateway connects its
/// media and fills its DTMF delay line first). A call the far end cleared
/// moments after the answer (an abandon crossing the 200 OK) carried
/// almost none, and that is no fault of the media path.
fn packets_allowed(connected_ms: Option<f64>) -> u64 {
    connected_ms.map_or(u64::MAX, |ms| ((ms - 300.0).max(0.0) / 20.0 / 2.0) as u64)
}

/// Media checks on every answered call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MediaChecks {
    /// At least this many RTP packets received.
    pub min_packets: u64,
    pub max_loss_percent: f64,
    /// What we generate (pattern, tone, DTMF) must come back.
    pub expect_echo: bool,
    /// Share of markers (Pattern) or audio packets (Tone) that must come back.
    pub min_echo_percent: f64,
}

impl Default for MediaChecks {
    fn default() -> Self {
        MediaChecks {
            min_packets: 10,
            max_loss_percent: 5.0,
            expect_echo: false,
            min_echo_percent: 80.0,
        }
    }
}

/// Everything a simulated core needs.
#[derive(Debug, Clone)]
pub struct SimCoreConfig {
    /// SIP UDP listener (port 0: any). Its IP goes in Via, Contact and SDP,
    /// so it must be a concrete address.
    pub listen: SocketAddr,
    /// Also listen on TCP at the same address (port 0: any).
    pub tcp: bool,
    /// Sources SIP is accepted from; loopback and the plan's target are
    /// always added.
    pub allowed_sources: Vec<IpAddr>,
    pub answer: AnswerPolicy,
    /// Per called number (exact match), before `answer`.
    pub answer_by_number: Vec<(String, AnswerPolicy)>,
    pub media: MediaMode,
    /// Codecs in our order of preference (`PCMA`, `PCMU`).
    pub codecs: Vec<String>,
    pub ptime_ms: u32,
    pub plan: Option<CallPlan>,
    /// Run this long; `None`: until the plan is done (or `stop`).
    pub run_for: Option<Duration>,
    /// Longest wait for live calls to clear at the end.
    pub drain: Duration,
    pub checks: MediaChecks,
    pub timers: TimerValues,
    /// Seed for SIP tags/Call-IDs and RTP SSRCs (runs are reproducible
    /// from it, apart from the network's timing).
    pub seed: u64,
}

impl SimCoreConfig {
    /// Answer everything at once with 180, echo, listen on `listen`.
    pub fn new(listen: SocketAddr) -> SimCoreConfig {
        SimCoreConfig {
            listen,
            tcp: false,
            allowed_sources: Vec::new(),
            answer: AnswerPolicy::default(),
            answer_by_number: Vec::new(),
            media: MediaMode::Echo,
            codecs: vec!["PCMA".into(), "PCMU".into()],
            ptime_ms: 20,
            plan: None,
            run_for: None,
            drain: Duration::from_secs(3),
            checks: MediaChecks::default(),
            timers: TimerValues::default(),
            seed: 0x5EED_C0DE,
        }
    }

    fn policy_for(&self, called: &str) -> &AnswerPolicy {
        self.answer_by_number
            .iter()
            .find(|(n, _)| n == called)
            .map_or(&self.answer, |(_, p)| p)
    }
}

/// Why a simulated core could not start.
#[derive(Debug)]
pub enum SimCoreError {
    Bind(String),
}

impl std::fmt::Display for SimCoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimCoreError::Bind(e) => write!(f, "sim core cannot bind: {e}"),
        }
    }
}

impl std::error::Error for SimCoreError {}

/// Direction of a call seen from the simulated core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Incoming,
    Outgoing,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// Still in progress (only while running, or when draining timed out).
    Live,
    /// Answered, then cleared.
    Completed,
    /// Our INVITE got a final non-2xx (or timed out).
    Failed,
    /// We refused the incoming call.
    Rejected,
    /// Cleared before an answer (CANCEL either way, or our 480).
    Cancelled,
}

/// One call in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub direction: CallDirection,
    pub called: String,
    pub calling: String,
    pub result: CallResult,
    /// The final status: 200, our rejection, or the failure received.
    pub status: Option<u16>,
    /// The Reason header of the failure, rejection or clearing.
    pub reason: Option<String>,
    /// `local`, `remote`, `timeout`, `transport_error`.
    pub ended_by: Option<&'static str>,
    /// Provisional statuses sent or received, in order.
    pub provisional: Vec<u16>,
    pub early_media: bool,
    /// INVITE to 200, ms.
    pub setup_ms: Option<f64>,
    /// 200 to the end, ms.
    pub connected_ms: Option<f64>,
    pub rtp: Option<RtpStats>,
}

/// One check and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The JSON results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct SimCoreReport {
    pub sip_addr: SocketAddr,
    pub elapsed_ms: f64,
    pub calls_received: u64,
    pub calls_answered: u64,
    pub calls_rejected: u64,
    pub calls_cancelled: u64,
    pub calls_placed: u64,
    pub calls_completed: u64,
    pub calls_failed: u64,
    /// Our placed calls' failures by status (408 timeout, 503 transport).
    pub failed_by_status: BTreeMap<u16, u64>,
    /// Our rejections by status.
    pub rejected_by_status: BTreeMap<u16, u64>,
    /// RFC 4733 digits received over all calls, in call order.
    pub dtmf_received: String,
    /// Malformed SIP dropped or answered by the transaction layer.
    pub sip_malformed: u64,
    pub calls: Vec<CallReport>,
    pub checks: Vec<Check>,
    pub all_checks_passed: bool,
}

/// Live counters while a core runs (for a demo's progress line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimCoreProgress {
    pub calls_received: u64,
    pub calls_answered: u64,
    pub calls_rejected: u64,
    pub calls_placed: u64,
    pub calls_completed: u64,
    pub calls_failed: u64,
    /// Calls not yet ended.
    pub calls_live: u64,
}

/// A running simulated core.
pub struct SimCore {
    sip_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    progress: watch::Receiver<SimCoreProgress>,
    stop: Arc<watch::Sender<bool>>,
    task: JoinHandle<SimCoreReport>,
}

/// Ends a [`SimCore`]'s run from elsewhere (a signal handler, a test).
#[derive(Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl SimCore {
    /// Bind and start; see the module doc.
    pub async fn start(config: SimCoreConfig) -> Result<SimCore, SimCoreError> {
        let mut listen = vec![(Wire::Udp, config.listen)];
        if config.tcp {
            listen.push((Wire::Tcp, config.listen));
        }
        let mut allowed = config.allowed_sources.clone();
        allowed.extend([
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            config.listen.ip(),
        ]);
        if let Some(p) = &config.plan {
            allowed.push(p.target.ip());
        }
        let transports = Transports::bind(TransportConfig {
            listen,
            allowed_sources: allowed,
            // A simulator is driven hard by tests and demos.
            rate_limit: crate::sip::transport::RateLimit {
                per_second: 100_000,
                burst: 100_000,
            },
            keepalive_interval: None,
            ..TransportConfig::default()
        })
        .await
        .map_err(|e| SimCoreError::Bind(e.to_string()))?;
        let sip_addr = transports
            .local_addr(Wire::Udp)
            .ok_or_else(|| SimCoreError::Bind("no UDP listener".into()))?;
        let tcp_addr = transports.local_addr(Wire::Tcp);
        let (stop, stop_rx) = watch::channel(false);
        let (progress_tx, progress) = watch::channel(SimCoreProgress::default());
        let core = Core::new(config, sip_addr, transports, progress_tx);
        let task = tokio::spawn(core.run(stop_rx));
        Ok(SimCore {
            sip_addr,
            tcp_addr,
            progress,
            stop: Arc::new(stop),
            task,
        })
    }

    /// The bound SIP UDP address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// The bound SIP TCP address, if TCP was asked for.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// End the run now (live calls are cleared first).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The live counters now.
    pub fn progress(&self) -> SimCoreProgress {
        *self.progress.borrow()
    }

    /// Wait until the live counters satisfy `f` (or the run has ended).
    pub async fn wait_progress(&mut self, f: impl FnMut(&SimCoreProgress) -> bool) {
        let _ = self.progress.wait_for(f).await;
    }

    /// A handle that ends the run (the core itself is consumed by `finish`).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Wait for the run to end; the report.
    pub async fn finish(self) -> SimCoreReport {
        match self.task.await {
            Ok(r) => r,
            Err(e) => panic!("sim core task failed: {e}"),
        }
    }

    /// `stop` then `finish`.
    pub async fn stop_and_report(self) -> SimCoreReport {
        self.stop();
        self.finish().await
    }
}

/// Start a core and wait for its report.
pub async fn run(config: SimCoreConfig) -> Result<SimCoreReport, SimCoreError> {
    Ok(SimCore::start(config).await?.finish().await)
}

/// Work the loop schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Place(u32),
    Final(CallHandle),
    Hangup(CallHandle),
}

/// One call's state in the loop.
struct SimCall {
    index: usize,
    started: Instant,
    answered_at: Option<Instant>,
    /// Our RTP socket until the peer starts with it.
    socket: Option<UdpSocket>,
    local_sdp: Option<Sdp>,
    remote_sdp: Option<Sdp>,
    peer: Option<RtpPeer>,
    dtmf: String,
    /// The policy (incoming) or the plan's expectation (outgoing).
    policy: Option<AnswerPolicy>,
    expect: Option<Expect>,
    far_end_clears: bool,
    /// We cleared a call the far end should have.
    forced_clear: bool,
}

struct Core {
    cfg: SimCoreConfig,
    sip_addr: SocketAddr,
    transports: Transports,
    ua: UserAgent,
    calls: HashMap<CallHandle, SimCall>,
    reports: Vec<CallReport>,
    /// Final per-call facts the checks need, by report index.
    facts: Vec<(Option<Expect>, bool, String)>,
    jobs: Vec<(Instant, Job)>,
    placed: u32,
    ssrc_seed: u64,
    started: Instant,
    stopping: Option<Instant>,
    progress: watch::Sender<SimCoreProgress>,
}

fn rng(state: &mut u64) -> u64 {
    // splitmix64
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn user_of(uri: &Uri) -> String {
    match uri {
        Uri::Sip(u) => u.user.clone().unwrap_or_default(),
        Uri::Tel(t) => t.number.clone(),
        Uri::Other { rest, .. } => rest.clone(),
    }
}

fn ended_by_name(by: EndedBy) -> &'static str {
    match by {
        EndedBy::Local => "local",
        EndedBy::Remote => "remote",
        EndedBy::Timeout => "timeout",
        EndedBy::TransportError => "transport_error",
    }
}

/// The negotiated audio and telephone-event payload types of an SDP answer.
fn negotiated(answer: &Sdp) -> (u8, Option<u8>) {
    let Some(m) = answer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)
    else {
        return (8, None);
    };
    let is_te = |e: &str| e.eq_ignore_ascii_case("telephone-event");
    let audio = m
        .formats
        .iter()
        .find(|f| !is_te(&f.encoding))
        .map_or(8, |f| f.payload_type);
    let event = m
        .formats
        .iter()
        .find(|f| is_te(&f.encoding))
        .map(|f| f.payload_type);
    (audio, event)
}

impl Core {
    fn new(
        cfg: SimCoreConfig,
        sip_addr: SocketAddr,
        transports: Transports,
        progress: watch::Sender<SimCoreProgress>,
    ) -> Core {
        let host = sip_addr.ip().to_string();
        let ua = UserAgent::new(UaConfig {
            timers: cfg.timers,
            limits: Limits::default(),
            sent_by: sip_addr.to_string(),
            sent_by_tls: None,
            contact: Uri::parse(&format!("sip:core@{sip_addr}")).unwrap_or_else(|_| Uri::Other {
                scheme: "sip".into(),
                rest: format!("core@{sip_addr}"),
            }),
            call_id_host: host,
            user_agent: format!("tdmgw-sim-core/{}", env!("CARGO_PKG_VERSION")),
            seed: cfg.seed,
            rel100: true,
            session_expires_s: None,
            min_se_s: 90,
        });
        let now = Instant::now();
        let mut jobs = Vec::new();
        if let Some(p) = &cfg.plan
            && p.calls > 0
        {
            jobs.push((now, Job::Place(0)));
        }
        Core {
            ssrc_seed: cfg.seed ^ 0xA5A5_5A5A,
            cfg,
            sip_addr,
            transports,
            ua,
            calls: HashMap::new(),
            reports: Vec::new(),
            facts: Vec::new(),
            jobs,
            placed: 0,
            started: now,
            stopping: None,
            progress,
        }
    }

    /// Publishes the live counters when they changed (one pass over the
    /// calls per loop turn: a simulator's run has hundreds, not millions).
    fn publish(&self) {
        let mut p = SimCoreProgress::default();
        for r in &self.reports {
            let out = r.direction == CallDirection::Outgoing;
            match (out, r.result) {
                (false, _) => p.calls_received += 1,
                (true, _) => p.calls_placed += 1,
            }
            match (out, r.result) {
                (_, CallResult::Live) => p.calls_live += 1,
                (true, CallResult::Completed) => p.calls_completed += 1,
                (true, CallResult::Failed) => p.calls_failed += 1,
                (false, CallResult::Rejected) => p.calls_rejected += 1,
                _ => {}
            }
            if !out && r.status == Some(200) {
                p.calls_answered += 1;
            }
        }
        self.progress.send_if_modified(|old| {
            let changed = *old != p;
            *old = p;
            changed
        });
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) -> SimCoreReport {
        let end_at = self.cfg.run_for.map(|d| self.started + d);
        loop {
            let now = Instant::now();
            if self.stopping.is_none() && (end_at.is_some_and(|t| now >= t) || self.plan_done()) {
                self.begin_stop(now);
            }
            if let Some(t) = self.stopping
                && (self.calls.is_empty() || now >= t)
            {
                break;
            }
            let wake = self.next_wake(end_at);
            tokio::select! {
                ev = self.transports.recv() => match ev {
                    Some(ev) => self.on_transport(ev),
                    None => break,
                },
                r = stop.changed(), if self.stopping.is_none() => {
                    if r.is_err() || *stop.borrow() {
                        self.begin_stop(Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_time(Instant::now());
            self.flush().await;
            self.publish();
        }
        self.finish().await
    }

    fn next_wake(&self, end_at: Option<Instant>) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let ua = self.ua.poll_timeout().map(Instant::from_std);
        let job = self.jobs.iter().map(|(t, _)| *t).min();
        [ua, job, end_at, self.stopping]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    fn plan_done(&self) -> bool {
        match (&self.cfg.plan, self.cfg.run_for) {
            (Some(p), None) => self.placed >= p.calls && self.calls.is_empty(),
            _ => false,
        }
    }

    fn begin_stop(&mut self, now: Instant) {
        self.stopping = Some(now + self.cfg.drain);
        self.jobs.clear();
        let live: Vec<CallHandle> = self.calls.keys().copied().collect();
        for h in live {
            let _ = self.ua.hangup(now.into_std(), h, None);
        }
    }

    fn on_transport(&mut self, ev: TransportEvent) {
        let now = Instant::now().into_std();
        match ev {
            TransportEvent::Message(m) => {
                // The endpoint parses, and answers what does not parse.
                let remote = Remote {
                    address: m.source,
                    transport: from_wire(m.transport),
                };
                self.ua.handle_input(now, &m.bytes, remote);
            }
            TransportEvent::Error(e) => {
                let remote = Remote {
                    address: e.destination,
                    transport: from_wire(e.transport),
                };
                self.ua.handle_transport_error(now, remote);
            }
        }
    }

    fn on_time(&mut self, now: Instant) {
        if self.ua.poll_timeout().is_some_and(|t| t <= now.into_std()) {
            self.ua.handle_timeout(now.into_std());
        }
        let due: Vec<Job> = self
            .jobs
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, j)| *j)
            .collect();
        self.jobs.retain(|(t, _)| *t > now);
        for j in due {
            self.run_job(now, j);
        }
    }

    /// Sends what the user agent has, handles its events (which may make
    /// more to send), until both are empty.
    async fn flush(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.ua.poll_transmit() {
                progress = true;
                let out = Outbound {
                    transport: to_wire(t.transport),
                    destination: t.destination,
                    bytes: t.bytes,
                };
                if self.transports.send(out).is_err() {
                    let remote = Remote {
                        address: t.destination,
                        transport: t.transport,
                    };
                    self.ua
                        .handle_transport_error(Instant::now().into_std(), remote);
                }
            }
            while let Some(ev) = self.ua.poll_event() {
                progress = true;
                self.on_event(Instant::now(), ev).await;
            }
            if !progress {
                return;
            }
        }
    }

    async fn on_event(&mut self, now: Instant, ev: UaEvent) {
        match ev {
            UaEvent::IncomingCall {
                call, request, sdp, ..
            } => {
                self.on_incoming(now, call, &request, sdp).await;
            }
            UaEvent::Provisional { call, status, sdp } => {
                self.on_provisional(now, call, status, sdp)
            }
            UaEvent::Answered { call, sdp } => self.on_answered(now, call, sdp),
            UaEvent::Failed {
                call,
                status,
                reason,
            } => self.on_failed(call, status, reason).await,
            UaEvent::Ended { call, by, reason } => self.on_ended(now, call, by, reason).await,
            UaEvent::MediaUpdate { call, sdp } => {
                if let (Some(c), Some((ip, port))) =
                    (self.calls.get_mut(&call), sdp.audio_address())
                {
                    match &c.peer {
                        Some(p) => p.set_remote(SocketAddr::new(ip, port)),
                        None => {
                            c.remote_sdp = Some(sdp);
                            self.start_media(call);
                        }
                    }
                }
            }
            UaEvent::InfoDtmf { call, digit, .. } => {
                tracing::info!(call = call.0, %digit, "sim core: INFO DTMF");
            }
            UaEvent::ReinviteFailed { .. } | UaEvent::OptionsResult { .. } => {}
        }
    }

    fn local_media(&mut self, port: u16) -> LocalMedia {
        let address = self.sip_addr.ip();
        LocalMedia {
            origin: Origin {
                username: "-".into(),
                session_id: rng(&mut self.ssrc_seed) >> 1,
                version: 1,
                address,
            },
            address,
            port,
            codecs: self.cfg.codecs.clone(),
            telephone_event: true,
            ptime_ms: self.cfg.ptime_ms,
            direction: Direction::SendRecv,
        }
    }

    async fn bind_rtp(&self) -> Option<UdpSocket> {
        match UdpSocket::bind(SocketAddr::new(self.sip_addr.ip(), 0)).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "sim core: cannot bind an RTP socket");
                None
            }
        }
    }

    fn new_report(&mut self, direction: CallDirection, called: String, calling: String) -> usize {
        self.reports.push(CallReport {
            direction,
            called,
            calling,
            result: CallResult::Live,
            status: None,
            reason: None,
            ended_by: None,
            provisional: Vec::new(),
            early_media: false,
            setup_ms: None,
            connected_ms: None,
            rtp: None,
        });
        self.facts.push((None, false, String::new()));
        self.reports.len() - 1
    }

    async fn on_incoming(
        &mut self,
        now: Instant,
        call: CallHandle,
        request: &Message,
        offer: Option<Sdp>,
    ) {
        let called = match &request.start {
            StartLine::Request { uri, .. } => user_of(uri),
            StartLine::Response { .. } => String::new(),
        };
        let calling = request.from().map(|f| user_of(&f.uri)).unwrap_or_default();
        let policy = self.cfg.policy_for(&called).clone();
        tracing::info!(call = call.0, %called, %calling, outcome = ?policy.outcome, "sim core: incoming call");
        let index = self.new_report(CallDirection::Incoming, called, calling);
        let socket = self.bind_rtp().await;
        let port = socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port());
        let local = self.local_media(port);
        // RFC 3264 §6: our answer; with no offer, our offer (its answer comes in the ACK).
        let local_sdp = match &offer {
            Some(o) => sdp::answer(o, &local),
            None => sdp::offer(&local),
        };
        let now_std = now.into_std();
        if offer.is_some() && local_sdp.audio_address().is_none() {
            // RFC 3264 §6: nothing in common.
            let _ = self.ua.reject(now_std, call, 488, None);
            self.reports[index].status = Some(488);
            self.calls
                .insert(call, self.sim_call(index, now, None, Some(policy)));
            return;
        }
        let mut c = self.sim_call(index, now, socket, Some(policy.clone()));
        c.local_sdp = Some(local_sdp.clone());
        c.remote_sdp = offer;
        c.dtmf = policy.dtmf.clone();
        self.calls.insert(call, c);
        if policy.ring && self.ua.send_provisional(now_std, call, 180, None).is_ok() {
            self.reports[index].provisional.push(180);
        }
        if policy.early_media
            && self
                .ua
                .send_provisional(now_std, call, 183, Some(&local_sdp))
                .is_ok()
        {
            self.reports[index].provisional.push(183);
            self.reports[index].early_media = true;
            self.start_media(call);
        }
        if policy.outcome != Outcome::NoAnswer {
            self.jobs.push((now + policy.delay, Job::Final(call)));
        }
    }

    fn sim_call(
        &self,
        index: usize,
        now: Instant,
        socket: Option<UdpSocket>,
        policy: Option<AnswerPolicy>,
    ) -> SimCall {
        SimCall {
            index,
            started: now,
            answered_at: None,
            socket,
            local_sdp: None,
            remote_sdp: None,
            peer: None,
            dtmf: String::new(),
            policy,
            expect: None,
            far_end_clears: false,
            forced_clear: false,
        }
    }

    /// Starts the call's RTP peer from its SDPs (once).
    fn start_media(&mut self, call: CallHandle) {
        let mode = self.cfg.media;
        let ptime_ms = self.cfg.ptime_ms;
        let ssrc = rng(&mut self.ssrc_seed);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.peer.is_some() {
            return;
        }
        let Some(socket) = c.socket.take() else {
            return;
        };
        // The payload types: the answer's (ours as UAS, theirs as UAC).
        let answer = match self.reports[c.index].direction {
            CallDirection::Incoming => c.local_sdp.as_ref(),
            CallDirection::Outgoing => c.remote_sdp.as_ref(),
        };
        let (payload_type, event_payload_type) = answer.map_or((8, None), negotiated);
        let remote = c
            .remote_sdp
            .as_ref()
            .and_then(Sdp::audio_address)
            .map(|(ip, port)| SocketAddr::new(ip, port));
        let cfg = PeerConfig {
            mode,
            payload_type,
            event_payload_type,
            ptime_ms,
            dtmf: c.dtmf.clone(),
            dtmf_start: Duration::from_millis(200),
            dtmf_on: Duration::from_millis(80),
            dtmf_off: Duration::from_millis(80),
            ssrc: ssrc as u32,
            seq_base: (ssrc >> 32) as u16,
            ts_base: (ssrc >> 48) as u32 * 0x1_0001,
        };
        c.peer = Some(RtpPeer::start(socket, cfg, remote));
    }

    fn run_job(&mut self, now: Instant, job: Job) {
        match job {
            Job::Place(i) => self.place(now, i),
            Job::Final(call) => self.final_response(now, call),
            Job::Hangup(call) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.forced_clear = c.far_end_clears && c.answered_at.is_some();
                }
                let _ = self.ua.hangup(now.into_std(), call, None);
            }
        }
    }

    fn final_response(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some(policy) = c.policy.clone() else {
            return;
        };
        let index = c.index;
        match policy.outcome {
            Outcome::Answer => {
                let sdp = c.local_sdp.clone();
                if self.ua.accept(now.into_std(), call, sdp.as_ref()).is_ok() {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.answered_at = Some(now);
                    }
                    let setup = ms(now.duration_since(self.started_of(call, now)));
                    let r = &mut self.reports[index];
                    r.status = Some(200);
                    r.setup_ms = Some(setup);
                    self.start_media(call);
                    if let Some(h) = policy.hangup_after {
                        self.jobs.push((now + h, Job::Hangup(call)));
                    }
                }
            }
            Outcome::Reject { status, q850 } => {
                let cause = q850
                    .or_else(|| {
                        CauseMap::default()
                            .sip_to_q850(status, None, None)
                            .map(|(c, _)| c)
                    })
                    .filter(|_| policy.reason_header);
                let reason = cause.map(|c| Reason::q850_value(c, reason_phrase(status)));
                if self
                    .ua
                    .reject(now.into_std(), call, status, reason.as_deref())
                    .is_ok()
                {
                    self.reports[index].status = Some(status);
                }
            }
            Outcome::NoAnswer => {}
        }
    }

    fn started_of(&self, call: CallHandle, now: Instant) -> Instant {
        self.calls.get(&call).map_or(now, |c| c.started)
    }

    fn place(&mut self, now: Instant, i: u32) {
        let Some(plan) = self.cfg.plan.clone() else {
            return;
        };
        let live = self
            .calls
            .values()
            .filter(|c| self.reports[c.index].direction == CallDirection::Outgoing)
            .count();
        if plan.max_in_progress > 0 && live >= plan.max_in_progress as usize {
            // Back-pressure: try again shortly, the schedule shifts.
            self.jobs
                .push((now + Duration::from_millis(20), Job::Place(i)));
            return;
        }
        if i + 1 < plan.calls {
            let gap = Duration::from_secs_f64(1.0 / plan.rate_per_s.max(0.001));
            self.jobs.push((now + gap, Job::Place(i + 1)));
        }
        self.placed = i + 1;
        // Bound synchronously: std socket, then into tokio.
        let socket = std::net::UdpSocket::bind(SocketAddr::new(self.sip_addr.ip(), 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(UdpSocket::from_std);
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sim core: cannot bind an RTP socket");
                return;
            }
        };
        let port = socket.local_addr().map_or(0, |a| a.port());
        let local = self.local_media(port);
        let offer = sdp::offer(&local);
        let target = plan.target;
        let called = plan.called_for(i).to_owned();
        let request_uri = Uri::parse(&format!("sip:{called}@{target}"));
        let to = NameAddr::parse(&format!("<sip:{called}@{target}>"));
        let from = NameAddr::parse(&format!("<sip:{}@{}>", plan.calling, self.sip_addr));
        let (Ok(request_uri), Ok(to), Ok(from)) = (request_uri, to, from) else {
            tracing::warn!(%called, calling = %plan.calling, "sim core: numbers do not make a SIP URI");
            return;
        };
        let call = self.ua.place_call(
            now.into_std(),
            OutgoingCall {
                request_uri,
                from,
                to,
                headers: Vec::new(),
                sdp: offer.clone(),
                peer: Remote {
                    address: target,
                    transport: plan.transport,
                },
            },
        );
        let expect = plan.expect_for(&called);
        let index = self.new_report(CallDirection::Outgoing, called, plan.calling.clone());
        let mut c = self.sim_call(index, now, Some(socket), None);
        c.local_sdp = Some(offer);
        c.expect = Some(expect);
        c.far_end_clears = plan.far_end_clears;
        if plan.dtmf_every > 0 && (i + 1).is_multiple_of(plan.dtmf_every) {
            c.dtmf = plan.dtmf.clone();
        }
        self.calls.insert(call, c);
        self.jobs
            .push((now + plan.no_answer_timeout, Job::Hangup(call)));
    }

    fn on_provisional(&mut self, now: Instant, call: CallHandle, status: u16, sdp: Option<Sdp>) {
        let cancel_after = self.cfg.plan.as_ref().and_then(|p| p.cancel_after_ring);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let index = c.index;
        let first_ring = matches!(status, 180 | 183)
            && !self.reports[index]
                .provisional
                .iter()
                .any(|s| matches!(s, 180 | 183));
        if let (Some(d), true, None, CallDirection::Outgoing) = (
            cancel_after,
            first_ring,
            c.answered_at,
            self.reports[index].direction,
        ) {
            // Replace the no-answer guard: we give up `d` after the ringing.
            self.jobs.retain(|(_, j)| *j != Job::Hangup(call));
            self.jobs.push((now + d, Job::Hangup(call)));
        }
        self.reports[index].provisional.push(status);
        if let Some(s) = sdp
            && s.audio_address().is_some()
            && c.peer.is_none()
        {
            c.remote_sdp = Some(s);
            self.reports[index].early_media = true;
            self.start_media(call);
        }
    }

    fn on_answered(&mut self, now: Instant, call: CallHandle, sdp: Option<Sdp>) {
        let Some(plan) = self.cfg.plan.clone() else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.answered_at = Some(now);
        let index = c.index;
        let setup = now.duration_since(c.started);
        match (&c.peer, sdp) {
            (Some(p), Some(s)) => {
                if let Some((ip, port)) = s.audio_address() {
                    p.set_remote(SocketAddr::new(ip, port));
                }
                c.remote_sdp = Some(s);
            }
            (None, Some(s)) => c.remote_sdp = Some(s),
            (_, None) => {}
        }
        let r = &mut self.reports[index];
        r.status = Some(200);
        r.setup_ms = Some(ms(setup));
        self.start_media(call);
        // Replace the no-answer guard by the hold (or the far end's guard).
        self.jobs.retain(|(_, j)| *j != Job::Hangup(call));
        let hold = if plan.far_end_clears {
            plan.hold + Duration::from_secs(5)
        } else {
            plan.hold
        };
        self.jobs.push((now + hold, Job::Hangup(call)));
    }

    async fn on_failed(&mut self, call: CallHandle, status: u16, reason: Option<String>) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.jobs.retain(|(_, j)| *j != Job::Hangup(call));
        let r = &mut self.reports[c.index];
        r.result = CallResult::Failed;
        r.status = Some(status);
        r.reason = reason;
        self.close(c).await;
    }

    async fn on_ended(
        &mut self,
        now: Instant,
        call: CallHandle,
        by: EndedBy,
        reason: Option<String>,
    ) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.jobs
            .retain(|(_, j)| *j != Job::Hangup(call) && *j != Job::Final(call));
        let r = &mut self.reports[c.index];
        r.ended_by = Some(ended_by_name(by));
        if r.reason.is_none() {
            r.reason = reason;
        }
        r.result = match (c.answered_at, r.status) {
            (Some(at), _) => {
                r.connected_ms = Some(ms(now.duration_since(at)));
                CallResult::Completed
            }
            (None, Some(s)) if s >= 300 && r.direction == CallDirection::Incoming => {
                CallResult::Rejected
            }
            _ => CallResult::Cancelled,
        };
        self.close(c).await;
    }

    /// Stops the call's media and keeps what the checks need.
    async fn close(&mut self, c: SimCall) {
        if let Some(p) = c.peer {
            self.reports[c.index].rtp = Some(p.stop().await);
        }
        self.facts[c.index] = (
            c.expect,
            c.forced_clear,
            c.policy.map(|p| p.dtmf).unwrap_or(c.dtmf),
        );
    }

    async fn finish(mut self) -> SimCoreReport {
        // Calls that did not clear within the drain time: stop their media.
        let live: Vec<CallHandle> = self.calls.keys().copied().collect();
        for h in live {
            if let Some(c) = self.calls.remove(&h) {
                self.close(c).await;
            }
        }
        let checks = self.checks();
        let r = &self.reports;
        let count = |f: &dyn Fn(&CallReport) -> bool| r.iter().filter(|c| f(c)).count() as u64;
        let incoming = |c: &CallReport| c.direction == CallDirection::Incoming;
        let outgoing = |c: &CallReport| c.direction == CallDirection::Outgoing;
        let mut failed_by_status = BTreeMap::new();
        let mut rejected_by_status = BTreeMap::new();
        for c in r {
            match (c.result, c.status) {
                (CallResult::Failed, Some(s)) => *failed_by_status.entry(s).or_insert(0) += 1,
                (CallResult::Rejected, Some(s)) => *rejected_by_status.entry(s).or_insert(0) += 1,
                _ => {}
            }
        }
        let stats = self.ua.endpoint_stats();
        SimCoreReport {
            sip_addr: self.sip_addr,
            elapsed_ms: ms(self.started.elapsed()),
            calls_received: count(&|c| incoming(c)),
            calls_answered: count(&|c| incoming(c) && c.status == Some(200)),
            calls_rejected: count(&|c| incoming(c) && c.result == CallResult::Rejected),
            calls_cancelled: count(&|c| c.result == CallResult::Cancelled),
            calls_placed: count(&|c| outgoing(c)),
            calls_completed: count(&|c| outgoing(c) && c.result == CallResult::Completed),
            calls_failed: count(&|c| outgoing(c) && c.result == CallResult::Failed),
            failed_by_status,
            rejected_by_status,
            dtmf_received: r
                .iter()
                .filter_map(|c| c.rtp.as_ref())
                .map(|s| s.dtmf_received.as_str())
                .collect(),
            sip_malformed: stats.rejected_answered + stats.rejected_dropped,
            all_checks_passed: checks.iter().all(|c| c.passed),
            checks,
            calls: self.reports,
        }
    }

    fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let mut push = |name: String, passed: bool, detail: String| {
            out.push(Check {
                name,
                passed,
                detail,
            })
        };
        if let Some(p) = &self.cfg.plan {
            push(
                "all planned calls placed".into(),
                self.placed >= p.calls,
                format!("{} of {}", self.placed, p.calls),
            );
        }
        let mc = self.cfg.checks;
        for (i, (r, (expect, forced, dtmf))) in self.reports.iter().zip(&self.facts).enumerate() {
            let name = |what: &str| format!("call {i} ({:?} {}): {what}", r.direction, r.called);
            push(
                name("ended"),
                r.result != CallResult::Live,
                format!("{:?}", r.result),
            );
            match expect {
                Some(Expect::Answer) => push(
                    name("answered and completed"),
                    r.result == CallResult::Completed,
                    format!("{:?} status {:?}", r.result, r.status),
                ),
                Some(Expect::Status { status }) => push(
                    name(&format!("refused with {status}")),
                    r.result == CallResult::Failed && r.status == Some(*status),
                    format!("{:?} status {:?}", r.result, r.status),
                ),
                Some(Expect::NoAnswer) => push(
                    name("unanswered, cancelled by us"),
                    r.result == CallResult::Cancelled && r.ended_by == Some("local"),
                    format!("{:?} status {:?}", r.result, r.status),
                ),
                None => {}
            }
            if *forced {
                push(
                    name("far end cleared"),
                    false,
                    "we had to clear it after the hold time".into(),
                );
            }
            if r.result == CallResult::Completed {
                self.media_checks(&mut push, &name, r.rtp.as_ref(), r.connected_ms, dtmf, mc);
            }
        }
        out
    }

    fn media_checks(
        &self,
        push: &mut impl FnMut(String, bool, String),
        name: &dyn Fn(&str) -> String,
        rtp: Option<&RtpStats>,
        connected_ms: Option<f64>,
        dtmf: &str,
        mc: MediaChecks,
    ) {
        let Some(s) = rtp else {
            push(name("media"), false, "no RTP session".into());
            return;
        };
        let min_packets = mc.min_packets.min(packets_allowed(connected_ms));
        push(
            name("rtp received"),
            s.packets_received >= min_packets,
            format!("{} packets (min {min_packets})", s.packets_received),
        );
        push(
            name("rtp loss"),
            s.loss_percent <= mc.max_loss_percent,
            format!("{:.2} % (max {})", s.loss_percent, mc.max_loss_percent),
        );
        if !mc.expect_echo {
            return;
        }
        let pct = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                n as f64 * 100.0 / of as f64
            }
        };
        match self.cfg.media {
            MediaMode::Pattern => push(
                name("pattern echoed"),
                s.markers_sent > 0
                    && pct(s.markers_received, s.markers_sent) >= mc.min_echo_percent,
                format!("{} of {} markers back", s.markers_received, s.markers_sent),
            ),
            MediaMode::Tone { hz } => push(
                name("tone echoed"),
                s.audio_packets_received > 0
                    && pct(s.tone_packets, s.audio_packets_received) >= mc.min_echo_percent,
                format!(
                    "{} of {} audio packets carry {hz} Hz",
                    s.tone_packets, s.audio_packets_received
                ),
            ),
            MediaMode::Echo => {}
        }
        if !dtmf.is_empty() && self.cfg.media != MediaMode::Echo {
            push(
                name("dtmf echoed"),
                s.dtmf_sent == dtmf && s.dtmf_received == dtmf,
                format!("sent {:?}, received {:?}", s.dtmf_sent, s.dtmf_received),
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::sdp::Format;

    #[test]
    fn packets_asked_of_a_call_follow_its_connected_time() {
        // Never connected (no time known): the configured minimum.
        assert_eq!(
            MediaChecks::default()
                .min_packets
                .min(packets_allowed(None)),
            10
        );
        // An abandon crossing the answer: 234 ms connected asks for none.
        assert_eq!(packets_allowed(Some(234.0)), 0);
        // 1 s: half of 35 packets; a normal hold keeps the minimum of 10.
        assert_eq!(packets_allowed(Some(1000.0)), 17);
        assert_eq!(packets_allowed(Some(5000.0)).min(10), 10);
    }

    #[test]
    fn policy_by_called_number_then_default() {
        let mut cfg = SimCoreConfig::new("127.0.0.1:0".parse().unwrap());
        let busy = AnswerPolicy {
            outcome: Outcome::Reject {
                status: 486,
                q850: None,
            },
            ..AnswerPolicy::default()
        };
        cfg.answer_by_number.push(("101".into(), busy.clone()));
        assert_eq!(cfg.policy_for("101"), &busy);
        assert_eq!(cfg.policy_for("999").outcome, Outcome::Answer);
    }

    #[test]
    fn negotiated_payload_types_come_from_the_answer() {
        let local = LocalMedia {
            origin: Origin {
                username: "-".into(),
                session_id: 1,
                version: 1,
                address: "127.0.0.1".parse().unwrap(),
            },
            address: "127.0.0.1".parse().unwrap(),
            port: 4000,
            codecs: vec!["PCMU".into(), "PCMA".into()],
            telephone_event: true,
            ptime_ms: 20,
            direction: Direction::SendRecv,
        };
        let mut offer = sdp::offer(&local);
        offer.media[0]
            .formats
            .retain(|f: &Format| f.payload_type != 0);
        offer.media[0].formats.iter_mut().for_each(|f| {
            if f.payload_type == 101 {
                f.payload_type = 96;
            }
        });
        let answer = sdp::answer(&offer, &local);
        assert_eq!(negotiated(&answer), (8, Some(96)));
    }
}
