//! The SIP task: the control plane's thin tokio shell around one
//! [`UserAgent`] and the core [`PeerTable`], owning the [`Transports`]
//! (DESIGN.md §4). It mirrors `isdn::task` so the call module sees one style.
//!
//! # Contract
//!
//! Each time round its loop the task waits for the first of: a command from
//! the call module, a [`TransportEvent`], the earliest deadline (the user
//! agent's, the peer table's, a call attempt's failover timer) or the
//! heartbeat interval. It feeds the input (`handle_input`,
//! `handle_transport_error`, a command, `handle_timeout`), starts the OPTIONS
//! pings the peer table asks for, then sends every transmit, hands every
//! event to the call module, publishes the [`SipStatus`] if it changed, and
//! checks in with the supervisor through its [`Observer`].
//!
//! - **Commands** ([`Command`], usually through a [`SipHandle`]) go over a
//!   bounded mpsc channel; each carries a oneshot for its result, so a
//!   refused command ([`SipTaskError`]) is answered, never dropped.
//! - **Calls** are named by [`SipCallId`], stable across failover. A call
//!   placed to a peer group ([`PlaceCall`]) tries the candidates of
//!   [`PeerTable::select`] in turn: an attempt fails over to the next
//!   candidate when the peer sends no response at all to the INVITE within
//!   `invite_timeout` (a 100 Trying counts: RFC 3261 §17.1.1.2 says the peer
//!   is then working on it), when it answers 503 (§21.5.4: try elsewhere),
//!   or when the transport fails (the user agent reports 503, §8.1.3.1).
//!   Each such failure is reported to the peer table (`report_failure`), a
//!   final answer other than 503 is `report_success`. Only when every
//!   candidate failed does the call module see [`SipEvent::Failed`]; any
//!   other final status (404, 486 ...) ends the call at once, as does a
//!   `hangup` while an attempt is pending. An abandoned attempt is hung up
//!   (CANCEL once it rings, RFC 3261 §9.1) and its events are swallowed.
//! - **Events** ([`SipEvent`]) go out on an unbounded channel the caller
//!   gives: the user agent's call events under their [`SipCallId`], and
//!   peer up/down. Unbounded for the same reason as `isdn::task`: the call
//!   module awaits replies from this task, so a bounded channel could
//!   deadlock the two; the stack emits events only in answer to input.
//! - **Health**: every peer is pinged with OPTIONS (`PeerTable::poll_ping`
//!   → `UserAgent::send_options`); the final status comes back as
//!   `handle_ping_result` with the round trip (any final status but 503 and
//!   408 proves the peer alive, RFC 3261 §11.2). A transport error toward a
//!   peer is reported to the peer table once (not again by the call it
//!   fails). Peer up/down go to the [`Observer`] and the event channel.
//! - **Status**: a `watch` of [`SipStatus`] (peers with state and RTT, calls,
//!   dialogs, transactions, counters), replaced only when it changed.
//! - **Observer**: `beat()` at least every `heartbeat_interval`,
//!   `peer_event()` on every peer state change (`ops::sip` raises the NOC
//!   events `PeerUp`/`PeerDown`), `message()` for every message received
//!   or handed to the transports (`ops::sip` counts them by method and
//!   status and publishes them to `tdmgw trace`).
//!
//! The task stops on [`Command::Shutdown`] or when every [`SipHandle`] is
//! dropped, and returns the user agent and peer table ([`Stopped`]). It
//! does not clear calls on the way out: drain first.
//!
//! Addresses: when `UaConfig::sent_by` is empty, the task fills `sent_by`,
//! `sent_by_tls`, `contact` and `call_id_host` from the bound listeners
//! (the first UDP or TCP one; tests bind port 0).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use super::endpoint::{self, EndpointStats, Remote};
use super::header::{Method, NameAddr};
use super::message::{Framing, Header, Message};
use super::peer::{GroupId, GroupParams, PeerEvent, PeerId, PeerState, PeerTable};
use super::sdp::Sdp;
use super::transport::{
    Counters, Outbound, SetupError, Transport, TransportConfig, TransportEvent, Transports,
};
use super::ua::{
    CallHandle, EndedBy, OptionsHandle, OutgoingCall, UaConfig, UaError, UaEvent, UaStats,
    UserAgent,
};
use super::uri::Uri;

/// Our address in [`MessageSeen`] when no listener of the transport is bound.
const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// What a SIP task is built from (`SiteConfig::sip_task_config`).
#[derive(Debug, Clone)]
pub struct SipTaskConfig {
    pub transport: TransportConfig,
    pub ua: UaConfig,
    pub groups: Vec<GroupParams>,
    /// Fail over when the peer sends nothing at all to our INVITE for this
    /// long (`sip.invite_timeout`).
    pub invite_timeout: Duration,
    /// The longest the task goes without checking in with the supervisor.
    pub heartbeat_interval: Duration,
    /// Commands queued before senders wait.
    pub command_queue: usize,
    /// Seed of the peer table's weighted selection.
    pub seed: u64,
}

impl SipTaskConfig {
    /// A 1 s heartbeat, 64 queued commands, a 2 s INVITE failover timer.
    pub fn new(transport: TransportConfig, ua: UaConfig, groups: Vec<GroupParams>) -> Self {
        SipTaskConfig {
            transport,
            seed: ua.seed ^ 0x5151_7a5c,
            ua,
            groups,
            invite_timeout: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            command_queue: 64,
        }
    }
}

/// A call of the SIP task, stable across failover attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipCallId(pub u64);

/// A new call to a core peer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceCall {
    /// The `[[peer_group]]` name.
    pub group: String,
    /// The user part of the Request-URI (the called number, e.g. `999`);
    /// the host part is the chosen peer's address.
    pub user: String,
    /// Our From, without tag.
    pub from: NameAddr,
    pub to: NameAddr,
    /// Extra headers (P-Asserted-Identity, Privacy ...).
    pub headers: Vec<Header>,
    /// Our SDP offer.
    pub sdp: Sdp,
}

/// One peer as events and the status name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub group: String,
    pub address: SocketAddr,
    pub transport: Transport,
}

/// What the SIP task reports to the call module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    /// A new INVITE (100 Trying sent). `peer`: the configured peer it came
    /// from, matched by IP address and transport.
    IncomingCall {
        call: SipCallId,
        request: Box<Message>,
        sdp: Option<Sdp>,
        peer: Option<PeerId>,
    },
    /// A 101-199 to our INVITE.
    Provisional {
        call: SipCallId,
        status: u16,
        sdp: Option<Sdp>,
    },
    /// The 2xx to our INVITE (ACK sent), from `peer`.
    Answered {
        call: SipCallId,
        sdp: Option<Sdp>,
        peer: PeerId,
    },
    /// Our call failed: a final status from the last peer tried (408 for a
    /// timeout, 503 for a transport error or every peer failing), or 503
    /// when the group had no peer.
    Failed {
        call: SipCallId,
        status: u16,
        reason: Option<String>,
    },
    /// The call is over (see `UaEvent::Ended`).
    Ended {
        call: SipCallId,
        by: EndedBy,
        reason: Option<String>,
    },
    MediaUpdate {
        call: SipCallId,
        sdp: Sdp,
    },
    InfoDtmf {
        call: SipCallId,
        digit: char,
        duration_ms: Option<u32>,
    },
    ReinviteFailed {
        call: SipCallId,
        status: u16,
    },
    PeerUp(PeerInfo),
    PeerDown(PeerInfo),
}

/// One peer in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub info: PeerInfo,
    pub state: PeerState,
    /// Smoothed OPTIONS round trip (RFC 6298 SRTT).
    pub srtt: Option<Duration>,
    pub last_rtt: Option<Duration>,
    pub pings_sent: u64,
    pub ping_failures: u64,
    pub call_failures: u64,
}

/// The task's own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounters {
    pub calls_placed: u64,
    pub calls_incoming: u64,
    /// Attempts abandoned for the next candidate.
    pub failovers: u64,
    /// Calls that failed after every candidate.
    pub calls_failed_all_peers: u64,
    /// Sends the transports refused at once (counted as transport errors).
    pub send_errors: u64,
    pub transport_errors: u64,
}

/// The SIP task as telemetry and the call module read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipStatus {
    pub peers: Vec<PeerSnapshot>,
    /// Calls the call module knows (not yet ended).
    pub calls: usize,
    /// The user agent's tables (ended calls linger until their transactions end).
    pub ua_calls: usize,
    pub dialogs: usize,
    pub transactions: usize,
    pub draining: bool,
    pub ua: UaStats,
    pub endpoint: EndpointStats,
    pub task: TaskCounters,
}

/// What the task tells the world besides the call module.
pub trait Observer: Send + Sync + 'static {
    /// The task went round its loop (the supervisor's check-in).
    fn beat(&self) {}
    /// A peer changed state, before the event goes to the call module.
    fn peer_event(&self, _peer: &PeerInfo, _state: PeerState) {}
    /// A message received, or handed to the transports to send (message
    /// counters, `tdmgw trace`).
    fn message(&self, _m: &MessageSeen<'_>) {}
}

/// One SIP message as the task saw it go by (see [`Observer::message`]).
#[derive(Debug, Clone, Copy)]
pub struct MessageSeen<'a> {
    /// We sent it (else received).
    pub sent: bool,
    pub transport: Transport,
    /// Our address: the listener it arrived on or is sent from (for a
    /// connection, the listener's, not the connection's own port).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The whole message.
    pub bytes: &'a [u8],
}

/// No supervisor, no NOC (tests, tools).
impl Observer for () {}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipTaskError {
    /// The user agent refused it.
    Refused(UaError),
    /// No live call with this id.
    NoSuchCall,
    /// No `[[peer_group]]` of that name.
    NoSuchGroup(String),
    /// The task has stopped.
    Stopped,
}

impl std::fmt::Display for SipTaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SipTaskError::Refused(e) => write!(f, "refused by the SIP user agent: {e}"),
            SipTaskError::NoSuchCall => f.write_str("no such SIP call"),
            SipTaskError::NoSuchGroup(g) => write!(f, "no peer group `{g}`"),
            SipTaskError::Stopped => f.write_str("the SIP task has stopped"),
        }
    }
}

impl std::error::Error for SipTaskError {}

/// Where a command's result goes.
pub type Reply<T> = oneshot::Sender<Result<T, SipTaskError>>;

/// What the call module asks the SIP task to do.
#[derive(Debug)]
pub enum Command {
    PlaceCall {
        call: Box<PlaceCall>,
        reply: Reply<SipCallId>,
    },
    Provisional {
        call: SipCallId,
        status: u16,
        sdp: Option<Sdp>,
        reply: Reply<()>,
    },
    Accept {
        call: SipCallId,
        sdp: Option<Sdp>,
        reply: Reply<()>,
    },
    Reject {
        call: SipCallId,
        status: u16,
        reason: Option<String>,
        reply: Reply<()>,
    },
    /// BYE, CANCEL, or a 480 for an unanswered incoming call; `reason` is a
    /// Reason header value (RFC 3326).
    Hangup {
        call: SipCallId,
        reason: Option<String>,
        reply: Reply<()>,
    },
    Reinvite {
        call: SipCallId,
        sdp: Sdp,
        reply: Reply<()>,
    },
    DtmfInfo {
        call: SipCallId,
        digit: char,
        duration_ms: u32,
        reply: Reply<()>,
    },
    /// OPTIONS answered 503 and new INVITEs refused (RFC 3261 §11.2).
    SetDraining { draining: bool, reply: Reply<()> },
    /// Stop the task after sending what is queued.
    Shutdown,
}

/// Why the task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Shutdown,
    /// Every command sender was dropped.
    HandlesDropped,
    /// The transports stopped delivering.
    TransportsClosed,
}

/// The stopped task's stack, for inspection.
pub struct Stopped {
    pub reason: StopReason,
    pub ua: UserAgent,
    pub peers: PeerTable,
}

/// The call module's end of the SIP task (cheap to clone).
#[derive(Debug, Clone)]
pub struct SipHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<SipStatus>,
    counters: Arc<Counters>,
    local_addrs: Arc<Vec<(Transport, SocketAddr)>>,
}

impl SipHandle {
    /// The status channel (`borrow()` for now, `changed()` to wait).
    pub fn status(&self) -> watch::Receiver<SipStatus> {
        self.status.clone()
    }

    /// The transports' counters (atomics, live).
    pub fn transport_counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The bound listeners.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.local_addrs
    }

    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.local_addrs
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// Sends a raw command (the reply is the caller's).
    pub async fn send(&self, c: Command) -> Result<(), SipTaskError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| SipTaskError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SipTaskError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.unwrap_or(Err(SipTaskError::Stopped))
    }

    /// Starts a call to a peer group; the outcome comes as events.
    pub async fn place_call(&self, call: PlaceCall) -> Result<SipCallId, SipTaskError> {
        let call = Box::new(call);
        self.ask(|reply| Command::PlaceCall { call, reply }).await
    }

    pub async fn send_provisional(
        &self,
        call: SipCallId,
        status: u16,
        sdp: Option<Sdp>,
    ) -> Result<(), SipTaskError> {
        self.ask(|reply| Command::Provisional {
            call,
            status,
            sdp,
            reply,
        })
        .await
    }

    pub async fn accept(&self, call: SipCallId, sdp: Option<Sdp>) -> Result<(), SipTaskError> {
        self.ask(|reply| Command::Accept { call, sdp, reply }).await
    }

    pub async fn reject(
        &self,
        call: SipCallId,
        status: u16,
        reason: Option<&str>,
    ) -> Result<(), SipTaskError> {
        let reason = reason.map(str::to_owned);
        self.ask(|reply| Command::Reject {
            call,
            status,
            reason,
            reply,
        })
        .await
    }

    pub async fn hangup(&self, call: SipCallId, reason: Option<&str>) -> Result<(), SipTaskError> {
        let reason = reason.map(str::to_owned);
        self.ask(|reply| Command::Hangup {
            call,
            reason,
            reply,
        })
        .await
    }

    pub async fn reinvite(&self, call: SipCallId, sdp: Sdp) -> Result<(), SipTaskError> {
        self.ask(|reply| Command::Reinvite { call, sdp, reply })
            .await
    }

    pub async fn send_dtmf_info(
        &self,
        call: SipCallId,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), SipTaskError> {
        self.ask(|reply| Command::DtmfInfo {
            call,
            digit,
            duration_ms,
            reply,
        })
        .await
    }

    pub async fn set_draining(&self, draining: bool) -> Result<(), SipTaskError> {
        self.ask(|reply| Command::SetDraining { draining, reply })
            .await
    }

    /// Asks the task to stop; its `JoinHandle` says when it has.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Binds the transports, builds the stack and spawns the task on the
/// current tokio runtime.
pub async fn spawn(
    cfg: SipTaskConfig,
    events: mpsc::UnboundedSender<SipEvent>,
    observer: Arc<dyn Observer>,
) -> Result<(SipHandle, JoinHandle<Stopped>), SetupError> {
    let transports = Transports::bind(cfg.transport.clone()).await?;
    let local_addrs = transports.local_addrs().to_vec();
    let mut ua_cfg = cfg.ua.clone();
    if ua_cfg.sent_by.is_empty() {
        fill_addresses(&mut ua_cfg, &local_addrs);
    }
    let now = Instant::now().into_std();
    info!(
        listeners = ?local_addrs,
        sent_by = %ua_cfg.sent_by,
        t1_ms = ua_cfg.timers.t1_ms,
        t2_ms = ua_cfg.timers.t2_ms,
        t4_ms = ua_cfg.timers.t4_ms,
        rel100 = ua_cfg.rel100,
        session_expires_s = ?ua_cfg.session_expires_s,
        groups = cfg.groups.len(),
        "sip task starting"
    );
    let ua = UserAgent::new(ua_cfg);
    let peers = PeerTable::new(cfg.groups.clone(), now, cfg.seed);
    let (cmd_tx, cmd_rx) = mpsc::channel(cfg.command_queue.max(1));
    let mut task = Task {
        transports,
        ua,
        peers,
        commands: cmd_rx,
        events,
        observer,
        heartbeat: cfg.heartbeat_interval,
        invite_timeout: cfg.invite_timeout,
        next_id: 1,
        calls: HashMap::new(),
        by_handle: HashMap::new(),
        abandoned: HashMap::new(),
        pings: HashMap::new(),
        draining: false,
        counters: TaskCounters::default(),
        events_closed: false,
        status: None,
    };
    let (status_tx, status_rx) = watch::channel(task.snapshot());
    task.status = Some(status_tx);
    let handle = SipHandle {
        commands: cmd_tx,
        status: status_rx,
        counters: task.transports.counters(),
        local_addrs: Arc::new(local_addrs),
    };
    Ok((handle, tokio::spawn(task.run())))
}

/// `sent_by`, `contact` and `call_id_host` from the bound listeners.
fn fill_addresses(ua: &mut UaConfig, local: &[(Transport, SocketAddr)]) {
    let plain = local
        .iter()
        .find(|(t, _)| *t != Transport::Tls)
        .or_else(|| local.first())
        .map(|(_, a)| *a);
    let Some(addr) = plain else {
        return;
    };
    ua.sent_by = addr.to_string();
    ua.sent_by_tls = local
        .iter()
        .find(|(t, _)| *t == Transport::Tls)
        .map(|(_, a)| a.to_string());
    ua.call_id_host = host_text(addr.ip());
    if let Ok(uri) = Uri::parse(&format!("sip:tdmgw@{addr}")) {
        ua.contact = uri;
    }
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// A `sip:` URI for `user` (may be empty) at `address` over `transport`
/// (RFC 3261 §19.1.4: `transport=` for TCP and TLS; TLS stays `sip:` with
/// `transport=tls`, as the peer table's OPTIONS do).
pub fn peer_uri(user: &str, address: SocketAddr, transport: Transport) -> Option<Uri> {
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    let params = match transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    };
    Uri::parse(&format!("sip:{at}{address}{params}")).ok()
}

/// One call as the task tracks it.
#[derive(Debug)]
struct TaskCall {
    /// The user agent's call for the current attempt (or the incoming call).
    handle: CallHandle,
    outgoing: Option<Outgoing>,
}

/// An outgoing call's failover state.
#[derive(Debug)]
struct Outgoing {
    params: Box<PlaceCall>,
    /// Candidates still to try, best first.
    remaining: Vec<PeerId>,
    /// The peer of the current attempt.
    peer: PeerId,
    /// Call-ID of the current attempt's INVITE.
    call_id: Option<String>,
    /// Failover deadline while the peer has sent nothing; `None` once heard.
    deadline: Option<std::time::Instant>,
    /// The attempt's transport failed (already reported to the peer table).
    transport_failed: bool,
    /// The call module hung up: no further attempts.
    hung_up: bool,
    answered: bool,
}

struct Task {
    transports: Transports,
    ua: UserAgent,
    peers: PeerTable,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SipEvent>,
    observer: Arc<dyn Observer>,
    heartbeat: Duration,
    invite_timeout: Duration,
    next_id: u64,
    calls: HashMap<SipCallId, TaskCall>,
    by_handle: HashMap<CallHandle, SipCallId>,
    /// Attempts given up for another peer: their events are swallowed until
    /// their terminal one.
    abandoned: HashMap<CallHandle, PeerId>,
    /// Outstanding OPTIONS pings: the peer and when the ping was sent.
    pings: HashMap<OptionsHandle, (PeerId, std::time::Instant)>,
    draining: bool,
    counters: TaskCounters,
    events_closed: bool,
    status: Option<watch::Sender<SipStatus>>,
}

enum Wake {
    Command(Option<Command>),
    Transport(Option<TransportEvent>),
    Timer,
}

impl Task {
    async fn run(mut self) -> Stopped {
        let reason = loop {
            self.flush();
            self.observer.beat();
            let beat_at = Instant::now() + self.heartbeat;
            let deadline = self
                .next_deadline()
                .map(Instant::from_std)
                .map_or(beat_at, |d| d.min(beat_at));
            let wake = tokio::select! {
                biased;
                c = self.commands.recv() => Wake::Command(c),
                e = self.transports.recv() => Wake::Transport(e),
                () = sleep_until(deadline) => Wake::Timer,
            };
            let now = Instant::now().into_std();
            match wake {
                Wake::Command(Some(Command::Shutdown)) => break StopReason::Shutdown,
                Wake::Command(None) => break StopReason::HandlesDropped,
                Wake::Command(Some(c)) => self.execute(now, c),
                Wake::Transport(None) => break StopReason::TransportsClosed,
                Wake::Transport(Some(TransportEvent::Message(m))) => {
                    self.observer.message(&MessageSeen {
                        sent: false,
                        transport: m.transport,
                        local: m.local,
                        remote: m.source,
                        bytes: &m.bytes,
                    });
                    self.note_response(&m.bytes, m.transport);
                    let from = Remote {
                        address: m.source,
                        transport: m.transport,
                    };
                    self.ua.handle_input(now, &m.bytes, from);
                }
                Wake::Transport(Some(TransportEvent::Error(e))) => {
                    self.counters.transport_errors += 1;
                    self.transport_failed(now, e.destination, e.transport);
                }
                Wake::Timer => self.on_timer(now),
            }
        };
        self.flush();
        info!(reason = ?reason, calls = self.calls.len(), "sip task stopped");
        Stopped {
            reason,
            ua: self.ua,
            peers: self.peers,
        }
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        let attempts = self
            .calls
            .values()
            .filter_map(|c| c.outgoing.as_ref()?.deadline);
        [self.ua.poll_timeout(), self.peers.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(attempts)
            .min()
    }

    fn on_timer(&mut self, now: std::time::Instant) {
        if self.ua.poll_timeout().is_some_and(|d| d <= now) {
            self.ua.handle_timeout(now);
        }
        if self.peers.poll_timeout().is_some_and(|d| d <= now) {
            self.peers.handle_timeout(now);
        }
        let expired: Vec<SipCallId> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.outgoing
                    .as_ref()
                    .and_then(|o| o.deadline)
                    .is_some_and(|d| d <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(o) = self.calls.get_mut(&id).and_then(|c| c.outgoing.as_mut()) {
                o.deadline = None;
            }
            info!(
                call = id.0,
                "sip INVITE unanswered by the peer: failing over"
            );
            self.fail_over(now, id, 408, None, true);
        }
    }

    /// A 1xx-6xx to the current INVITE of an attempt: the peer is alive, so
    /// the failover timer stops (its outcome now comes from the UA).
    fn note_response(&mut self, bytes: &[u8], transport: Transport) {
        // Parse again only what can matter: a response while an attempt
        // still waits for its first one.
        let waiting = self
            .calls
            .values()
            .any(|c| c.outgoing.as_ref().is_some_and(|o| o.deadline.is_some()));
        if !waiting || !bytes.starts_with(b"SIP/2.0 ") {
            return;
        }
        let framing = match transport {
            Transport::Udp => Framing::Datagram,
            _ => Framing::Stream,
        };
        let Ok(m) = Message::parse(bytes, framing, Default::default()) else {
            return;
        };
        if m.status().is_none() || m.cseq().map(|c| c.method) != Ok(Method::Invite) {
            return;
        }
        let Ok(call_id) = m.call_id() else {
            return;
        };
        for c in self.calls.values_mut() {
            if let Some(o) = &mut c.outgoing
                && o.call_id.as_deref() == Some(call_id)
            {
                o.deadline = None;
            }
        }
    }

    /// A transport error toward `destination`: the user agent fails what
    /// used it; the peer table counts it once.
    fn transport_failed(&mut self, now: std::time::Instant, destination: SocketAddr, t: Transport) {
        if let Some(peer) = self.peers.find(destination, t) {
            warn!(peer = %destination, transport = t.name(), "sip transport error toward a core peer");
            self.peers.report_failure(now, peer);
            for c in self.calls.values_mut() {
                if let Some(o) = &mut c.outgoing
                    && o.peer == peer
                    && !o.answered
                {
                    o.transport_failed = true;
                }
            }
        }
        self.ua.handle_transport_error(
            now,
            Remote {
                address: destination,
                transport: t,
            },
        );
    }

    fn new_id(&mut self) -> SipCallId {
        let id = SipCallId(self.next_id);
        self.next_id += 1;
        id
    }

    fn execute(&mut self, now: std::time::Instant, c: Command) {
        // A caller that stopped waiting for the reply is no reason to fail.
        let _ = match c {
            Command::PlaceCall { call, reply } => reply.send(self.place_call(now, call)).is_ok(),
            Command::Provisional {
                call,
                status,
                sdp,
                reply,
            } => {
                let r = self.with_handle(call, |ua, h| {
                    ua.send_provisional(now, h, status, sdp.as_ref())
                });
                reply.send(r).is_ok()
            }
            Command::Accept { call, sdp, reply } => {
                let r = self.with_handle(call, |ua, h| ua.accept(now, h, sdp.as_ref()));
                reply.send(r).is_ok()
            }
            Command::Reject {
                call,
                status,
                reason,
                reply,
            } => {
                let r =
                    self.with_handle(call, |ua, h| ua.reject(now, h, status, reason.as_deref()));
                reply.send(r).is_ok()
            }
            Command::Hangup {
                call,
                reason,
                reply,
            } => reply.send(self.hangup(now, call, reason)).is_ok(),
            Command::Reinvite { call, sdp, reply } => {
                let r = self.with_handle(call, |ua, h| ua.reinvite(now, h, &sdp));
                reply.send(r).is_ok()
            }
            Command::DtmfInfo {
                call,
                digit,
                duration_ms,
                reply,
            } => {
                let r =
                    self.with_handle(call, |ua, h| ua.send_dtmf_info(now, h, digit, duration_ms));
                reply.send(r).is_ok()
            }
            Command::SetDraining { draining, reply } => {
                if draining != self.draining {
                    info!(draining, "sip draining changed");
                }
                self.draining = draining;
                self.ua.set_draining(draining);
                reply.send(Ok(())).is_ok()
            }
            Command::Shutdown => true,
        };
    }

    fn with_handle(
        &mut self,
        call: SipCallId,
        f: impl FnOnce(&mut UserAgent, CallHandle) -> Result<(), UaError>,
    ) -> Result<(), SipTaskError> {
        let h = self
            .calls
            .get(&call)
            .map(|c| c.handle)
            .ok_or(SipTaskError::NoSuchCall)?;
        f(&mut self.ua, h).map_err(SipTaskError::Refused)
    }

    fn place_call(
        &mut self,
        now: std::time::Instant,
        params: Box<PlaceCall>,
    ) -> Result<SipCallId, SipTaskError> {
        let group: GroupId = self
            .peers
            .group_id(&params.group)
            .ok_or_else(|| SipTaskError::NoSuchGroup(params.group.clone()))?;
        let mut remaining = self.peers.select(group, now);
        remaining.reverse();
        let id = self.new_id();
        self.counters.calls_placed += 1;
        let Some(first) = remaining.pop() else {
            // A group always has a peer (validated); kept for safety.
            self.emit(SipEvent::Failed {
                call: id,
                status: 503,
                reason: None,
            });
            return Ok(id);
        };
        let outgoing = Outgoing {
            params,
            remaining,
            peer: first,
            call_id: None,
            deadline: None,
            transport_failed: false,
            hung_up: false,
            answered: false,
        };
        self.calls.insert(
            id,
            TaskCall {
                handle: CallHandle(0),
                outgoing: Some(outgoing),
            },
        );
        if !self.start_attempt(now, id) {
            self.fail_over(now, id, 503, None, false);
        }
        Ok(id)
    }

    /// Sends the INVITE of the current attempt; false when the peer's URI
    /// cannot be made (not expected: addresses come from the config).
    fn start_attempt(&mut self, now: std::time::Instant, id: SipCallId) -> bool {
        let Some(o) = self.calls.get(&id).and_then(|c| c.outgoing.as_ref()) else {
            return false;
        };
        let Some(pp) = self.peers.params(o.peer).cloned() else {
            return false;
        };
        let Some(request_uri) = peer_uri(&o.params.user, pp.address, pp.transport) else {
            return false;
        };
        let call = OutgoingCall {
            request_uri,
            from: o.params.from.clone(),
            to: o.params.to.clone(),
            headers: o.params.headers.clone(),
            sdp: o.params.sdp.clone(),
            peer: Remote {
                address: pp.address,
                transport: pp.transport,
            },
        };
        info!(call = id.0, peer = %pp.address, transport = pp.transport.name(), "sip INVITE to core peer");
        if let Some(o) = self.calls.get_mut(&id).and_then(|c| c.outgoing.as_mut()) {
            // Before sending: a send refused at once marks the attempt.
            o.transport_failed = false;
        }
        let handle = self.ua.place_call(now, call);
        // The INVITE is queued now: note its Call-ID to match responses.
        let call_id = self.send_transmits_noting_invite();
        let deadline = now + self.invite_timeout;
        if let Some(c) = self.calls.get_mut(&id) {
            c.handle = handle;
            if let Some(o) = &mut c.outgoing {
                o.call_id = call_id;
                o.deadline = Some(deadline);
            }
        }
        self.by_handle.insert(handle, id);
        true
    }

    /// Gives up the current attempt of `id` (`report`: count it against
    /// the peer) and starts the next candidate, or reports the call failed.
    fn fail_over(
        &mut self,
        now: std::time::Instant,
        id: SipCallId,
        status: u16,
        reason: Option<String>,
        abandon: bool,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let handle = c.handle;
        let Some(o) = &mut c.outgoing else {
            return;
        };
        let peer = o.peer;
        if !o.transport_failed {
            self.peers.report_failure(now, peer);
        }
        let next = if o.hung_up { None } else { o.remaining.pop() };
        self.by_handle.remove(&handle);
        if abandon {
            // Still running in the UA: hang it up and swallow its events.
            let _ = self.ua.hangup(now, handle, None);
            self.abandoned.insert(handle, peer);
        }
        match next {
            Some(p) => {
                o.peer = p;
                self.counters.failovers += 1;
                if !self.start_attempt(now, id) {
                    self.fail_over(now, id, status, reason, false);
                }
            }
            None => {
                self.calls.remove(&id);
                self.counters.calls_failed_all_peers += 1;
                warn!(
                    call = id.0,
                    status, "sip call failed on every core peer tried"
                );
                self.emit(SipEvent::Failed {
                    call: id,
                    status,
                    reason,
                });
            }
        }
    }

    fn hangup(
        &mut self,
        now: std::time::Instant,
        id: SipCallId,
        reason: Option<String>,
    ) -> Result<(), SipTaskError> {
        let c = self.calls.get_mut(&id).ok_or(SipTaskError::NoSuchCall)?;
        if let Some(o) = &mut c.outgoing {
            // No further attempts, and no failover timer: the call module's
            // hangup decides how this one ends.
            o.hung_up = true;
            o.deadline = None;
        }
        let h = c.handle;
        self.ua
            .hangup(now, h, reason.as_deref())
            .map_err(SipTaskError::Refused)
    }

    /// Sends every queued transmit; returns the Call-ID of the first
    /// out-of-dialog INVITE among them (the one `place_call` just queued).
    fn send_transmits_noting_invite(&mut self) -> Option<String> {
        let mut call_id = None;
        while let Some(t) = self.ua.poll_transmit() {
            if call_id.is_none() {
                call_id = invite_call_id(&t.bytes, t.transport);
            }
            self.send(t);
        }
        call_id
    }

    fn send(&mut self, t: endpoint::Transmit) {
        let out = Outbound {
            transport: t.transport,
            destination: t.destination,
            bytes: t.bytes,
        };
        let (dest, tr) = (out.destination, out.transport);
        self.observer.message(&MessageSeen {
            sent: true,
            transport: tr,
            local: self.transports.local_addr(tr).unwrap_or(UNSPECIFIED),
            remote: dest,
            bytes: &out.bytes,
        });
        if let Err(e) = self.transports.send(out) {
            self.counters.send_errors += 1;
            info!(destination = %dest, transport = tr.name(), error = ?e, "sip send refused");
            let now = Instant::now().into_std();
            self.transport_failed(now, dest, tr);
        }
    }

    /// Pings due, transmits, events and the status.
    fn flush(&mut self) {
        let now = Instant::now().into_std();
        while let Some(peer) = self.peers.poll_ping(now) {
            self.start_ping(now, peer);
        }
        // Bounded: each pass drains the queues; sending may fail and queue
        // more (transport errors), which the next pass drains.
        for _ in 0..64 {
            let mut any = false;
            while let Some(t) = self.ua.poll_transmit() {
                any = true;
                self.send(t);
            }
            while let Some(e) = self.ua.poll_event() {
                any = true;
                self.on_ua_event(now, e);
            }
            while let Some(e) = self.peers.poll_event() {
                any = true;
                self.on_peer_event(e);
            }
            if !any {
                break;
            }
        }
        self.publish();
    }

    fn start_ping(&mut self, now: std::time::Instant, peer: PeerId) {
        let Some(pp) = self.peers.params(peer).cloned() else {
            return;
        };
        let Some(uri) = peer_uri("", pp.address, pp.transport) else {
            return;
        };
        let remote = Remote {
            address: pp.address,
            transport: pp.transport,
        };
        let h = self.ua.send_options(now, uri, remote);
        self.pings.insert(h, (peer, now));
    }

    fn on_peer_event(&mut self, e: PeerEvent) {
        let (peer, state) = match e {
            PeerEvent::PeerUp(p) => (p, PeerState::Up),
            PeerEvent::PeerDown(p) => (p, PeerState::Down),
        };
        let Some(info) = self.peer_info(peer) else {
            return;
        };
        self.observer.peer_event(&info, state);
        self.emit(match state {
            PeerState::Up => SipEvent::PeerUp(info),
            PeerState::Down => SipEvent::PeerDown(info),
        });
    }

    fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        self.peers
            .peers()
            .find(|(id, ..)| *id == peer)
            .map(|(id, g, p, _)| PeerInfo {
                id,
                group: self
                    .peers
                    .group(g)
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
                address: p.address,
                transport: p.transport,
            })
    }

    fn on_ua_event(&mut self, now: std::time::Instant, e: UaEvent) {
        match e {
            UaEvent::OptionsResult { handle, status } => {
                if let Some((peer, sent)) = self.pings.remove(&handle) {
                    // RFC 3261 §11.2: any final answer shows the peer alive,
                    // but 503 says it takes no calls; 408 is our timeout.
                    let result = if status == 503 || status == 408 {
                        Err(())
                    } else {
                        Ok(now.saturating_duration_since(sent))
                    };
                    self.peers.handle_ping_result(now, peer, result);
                }
            }
            UaEvent::IncomingCall {
                call,
                request,
                sdp,
                peer: from,
            } => {
                let id = self.new_id();
                self.counters.calls_incoming += 1;
                let peer = self.find_peer(from.address.ip(), from.transport);
                self.calls.insert(
                    id,
                    TaskCall {
                        handle: call,
                        outgoing: None,
                    },
                );
                self.by_handle.insert(call, id);
                self.emit(SipEvent::IncomingCall {
                    call: id,
                    request,
                    sdp,
                    peer,
                });
            }
            other => self.on_call_event(now, other),
        }
    }

    /// A stream's source port is ephemeral: peers are matched by IP address
    /// and transport.
    fn find_peer(&self, ip: IpAddr, t: Transport) -> Option<PeerId> {
        self.peers
            .peers()
            .find(|(_, _, p, _)| p.address.ip() == ip && p.transport == t)
            .map(|(id, ..)| id)
    }

    fn on_call_event(&mut self, now: std::time::Instant, e: UaEvent) {
        let handle = match &e {
            UaEvent::Provisional { call, .. }
            | UaEvent::Answered { call, .. }
            | UaEvent::Failed { call, .. }
            | UaEvent::Ended { call, .. }
            | UaEvent::MediaUpdate { call, .. }
            | UaEvent::InfoDtmf { call, .. }
            | UaEvent::ReinviteFailed { call, .. } => *call,
            UaEvent::IncomingCall { .. } | UaEvent::OptionsResult { .. } => return,
        };
        if let Some(&peer) = self.abandoned.get(&handle) {
            match e {
                UaEvent::Failed { .. } | UaEvent::Ended { .. } => {
                    self.abandoned.remove(&handle);
                }
                UaEvent::Answered { .. } => {
                    // Answered after we gave up on it: the peer was slow,
                    // not dead. Release the call (§9.1's crossed 2xx).
                    self.peers.report_success(now, peer);
                    let _ = self.ua.hangup(now, handle, None);
                }
                _ => {}
            }
            return;
        }
        let Some(&id) = self.by_handle.get(&handle) else {
            return;
        };
        match e {
            UaEvent::Provisional { status, sdp, .. } => {
                self.mark_heard(id);
                self.emit(SipEvent::Provisional {
                    call: id,
                    status,
                    sdp,
                });
            }
            UaEvent::Answered { sdp, .. } => {
                let peer = self.mark_heard(id);
                if let Some(o) = self.calls.get_mut(&id).and_then(|c| c.outgoing.as_mut()) {
                    o.answered = true;
                }
                if let Some(p) = peer {
                    self.peers.report_success(now, p);
                }
                self.emit(SipEvent::Answered {
                    call: id,
                    sdp,
                    peer: peer.unwrap_or(PeerId(usize::MAX)),
                });
            }
            UaEvent::Failed { status, reason, .. } => self.on_failed(now, id, status, reason),
            UaEvent::Ended { by, reason, .. } => {
                self.calls.remove(&id);
                self.by_handle.remove(&handle);
                self.emit(SipEvent::Ended {
                    call: id,
                    by,
                    reason,
                });
            }
            UaEvent::MediaUpdate { sdp, .. } => self.emit(SipEvent::MediaUpdate { call: id, sdp }),
            UaEvent::InfoDtmf {
                digit, duration_ms, ..
            } => self.emit(SipEvent::InfoDtmf {
                call: id,
                digit,
                duration_ms,
            }),
            UaEvent::ReinviteFailed { status, .. } => {
                self.emit(SipEvent::ReinviteFailed { call: id, status })
            }
            UaEvent::IncomingCall { .. } | UaEvent::OptionsResult { .. } => {}
        }
    }

    /// Stops the failover timer; returns the attempt's peer.
    fn mark_heard(&mut self, id: SipCallId) -> Option<PeerId> {
        let o = self.calls.get_mut(&id)?.outgoing.as_mut()?;
        o.deadline = None;
        Some(o.peer)
    }

    /// Our INVITE got no 2xx: fail over on 503 (a 503 response, or a
    /// transport error) and on a timeout, unless the call module hung up;
    /// anything else ends the call.
    fn on_failed(
        &mut self,
        now: std::time::Instant,
        id: SipCallId,
        status: u16,
        reason: Option<String>,
    ) {
        let Some(o) = self.calls.get(&id).and_then(|c| c.outgoing.as_ref()) else {
            self.calls.remove(&id);
            self.emit(SipEvent::Failed {
                call: id,
                status,
                reason,
            });
            return;
        };
        let retry = (status == 503 || status == 408) && !o.hung_up;
        if retry {
            info!(
                call = id.0,
                status, "sip INVITE failed on a core peer: failing over"
            );
            return self.fail_over(now, id, status, reason, false);
        }
        if status != 503 && status != 408 {
            self.peers.report_success(now, o.peer);
        }
        if let Some(c) = self.calls.remove(&id) {
            self.by_handle.remove(&c.handle);
        }
        self.emit(SipEvent::Failed {
            call: id,
            status,
            reason,
        });
    }

    fn emit(&mut self, e: SipEvent) {
        if self.events.send(e).is_err() && !self.events_closed {
            self.events_closed = true;
            warn!("call module's SIP event channel closed; events are dropped");
        }
    }

    fn snapshot(&self) -> SipStatus {
        let peers = self
            .peers
            .peers()
            .map(|(id, g, p, s)| PeerSnapshot {
                info: PeerInfo {
                    id,
                    group: self
                        .peers
                        .group(g)
                        .map(|g| g.name.clone())
                        .unwrap_or_default(),
                    address: p.address,
                    transport: p.transport,
                },
                state: s.state,
                srtt: s.srtt,
                last_rtt: s.last_rtt,
                pings_sent: s.pings_sent,
                ping_failures: s.ping_failures,
                call_failures: s.call_failures,
            })
            .collect();
        SipStatus {
            peers,
            calls: self.calls.len(),
            ua_calls: self.ua.call_count(),
            dialogs: self.ua.dialog_count(),
            transactions: self.ua.transaction_count(),
            draining: self.draining,
            ua: self.ua.stats(),
            endpoint: self.ua.endpoint_stats(),
            task: self.counters,
        }
    }

    fn publish(&mut self) {
        let new = self.snapshot();
        if let Some(tx) = &self.status {
            tx.send_if_modified(|s| {
                let changed = *s != new;
                if changed {
                    *s = new;
                }
                changed
            });
        }
    }
}

/// The Call-ID of an out-of-dialog INVITE (no To tag) in `bytes`.
fn invite_call_id(bytes: &[u8], transport: Transport) -> Option<String> {
    let m = Message::parse(bytes, transport.framing(), Default::default()).ok()?;
    if m.method() != Some(&Method::Invite) {
        return None;
    }
    if m.to().ok()?.params.get("tag").is_some() {
        return None;
    }
    m.call_id().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_uris_carry_the_transport() {
        let a: SocketAddr = "192.0.2.7:5061".parse().unwrap();
        assert_eq!(
            peer_uri("999", a, Transport::Tls).unwrap().to_string(),
            "sip:999@192.0.2.7:5061;transport=tls"
        );
        assert_eq!(
            peer_uri("", a, Transport::Udp).unwrap().to_string(),
            "sip:192.0.2.7:5061"
        );
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        assert_eq!(
            peer_uri("101", v6, Transport::Tcp).unwrap().to_string(),
            "sip:101@[2001:db8::1]:5060;transport=tcp"
        );
    }

    fn request(method: &str, to: &str) -> Vec<u8> {
        format!(
            "{method} sip:999@192.0.2.7 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:gw@192.0.2.1>;tag=a\r\n\
             To: {to}\r\n\
             Call-ID: c1@192.0.2.1\r\n\
             CSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn only_a_new_invite_names_an_attempt() {
        let udp = Transport::Udp;
        let new = request("INVITE", "<sip:999@core>");
        assert_eq!(invite_call_id(&new, udp).as_deref(), Some("c1@192.0.2.1"));
        let reinvite = request("INVITE", "<sip:999@core>;tag=b");
        assert_eq!(invite_call_id(&reinvite, udp), None);
        assert_eq!(
            invite_call_id(&request("OPTIONS", "<sip:x@core>"), udp),
            None
        );
        assert_eq!(invite_call_id(b"garbage", udp), None);
    }

    #[test]
    fn addresses_come_from_the_bound_listeners() {
        let mut ua = UaConfig {
            timers: Default::default(),
            limits: Default::default(),
            sent_by: String::new(),
            sent_by_tls: None,
            contact: Uri::parse("sip:x@127.0.0.1").unwrap(),
            call_id_host: String::new(),
            user_agent: String::new(),
            seed: 1,
            rel100: false,
            session_expires_s: None,
            min_se_s: 90,
        };
        let local = [
            (Transport::Tls, "192.0.2.4:5061".parse().unwrap()),
            (Transport::Udp, "192.0.2.4:5060".parse().unwrap()),
        ];
        fill_addresses(&mut ua, &local);
        assert_eq!(ua.sent_by, "192.0.2.4:5060");
        assert_eq!(ua.sent_by_tls.as_deref(), Some("192.0.2.4:5061"));
        assert_eq!(ua.contact.to_string(), "sip:tdmgw@192.0.2.4:5060");
        assert_eq!(ua.call_id_host, "192.0.2.4");
    }
}
