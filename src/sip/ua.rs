//! The user agent for calls: INVITE sessions on top of the transaction
//! layer ([`super::endpoint`]) and dialogs ([`super::dialog`]), sans-IO.
//! This is the API the call module and the SIP task use.
//!
//! # Contract
//!
//! - The SIP task (socket owner) feeds `handle_input(now, bytes, remote)`
//!   for each datagram or framed stream message, `handle_transport_error(now,
//!   remote)` for failed sends, `handle_timeout(now)` when `poll_timeout()`
//!   passes, and sends every [`Transmit`] from `poll_transmit()`.
//! - The call module drives calls by [`CallHandle`]: `place_call`,
//!   `send_provisional`, `accept`, `reject`, `hangup`, `reinvite`,
//!   `send_dtmf_info`; and reads [`UaEvent`]s from `poll_event()`. Every
//!   call ends with exactly one terminal event, [`UaEvent::Failed`] (our
//!   INVITE got no 2xx) or [`UaEvent::Ended`], after which its handle is dead.
//! - A ringing outgoing call does not time out by itself (RFC 3261
//!   §17.1.1.2: Timer B stops at the first provisional): the call module's
//!   no-answer timer calls `hangup`, which CANCELs (§9.1) and, if no final
//!   response comes within 64*T1, gives the INVITE up.
//! - `send_options` pings a peer (core peer health); the result comes as
//!   [`UaEvent::OptionsResult`].
//! - Reason headers (RFC 3326) pass as their text: the caller writes them
//!   (`call::cause_map::Reason::q850_value`) and parses the ones in events.
//!
//! What the user agent answers by itself: OPTIONS (200 with Allow, Accept,
//! Supported; 503 while draining, RFC 3261 §11.2), requests inside no dialog
//! (481, §12.2.2), out-of-order CSeq (500, §12.2.2), CANCEL (487 to the
//! INVITE, §9.2), re-INVITE and UPDATE offers (an answer from our current
//! media, accepting a new remote address, port or direction; 488 when no
//! codec is left, RFC 3264 §6, RFC 3311), INFO with DTMF (`application/
//! dtmf-relay`, `application/dtmf`; 415 for other bodies, RFC 6086 §4.2.2),
//! the ACK of a 2xx and its retransmissions (§13.2.2.4), the 2xx
//! retransmissions of a UAS until the ACK (§13.3.1.4), forked 2xx (ACK then
//! BYE, §13.2.2.4), and a CANCEL crossed by a 2xx (ACK then BYE, §9.1).
//!
//! Options ([`UaConfig`]):
//! - `rel100` (RFC 3262): `100rel` in Supported; reliable provisionals that
//!   require it are PRACKed in RSeq order (retransmissions and gaps
//!   discarded, §4); when an INVITE requires 100rel our provisionals are
//!   sent reliably, one at a time, resent T1-doubling until PRACKed, and the
//!   INVITE is rejected 504 after 64*T1 without PRACK (§3). Not done: an
//!   offer in a reliable provisional answered in the PRACK, PRACK bodies.
//! - `session_expires_s` (RFC 4028): Session-Expires/Min-SE on our INVITE,
//!   422 below our Min-SE and one retry after a 422 (§7.3); the refresher
//!   chosen per §9; refreshes at half the interval by UPDATE when the peer
//!   allows it, else re-INVITE with our current SDP; the other side sends
//!   BYE at interval - min(32 s, interval/3) without a refresh (§10).
//!
//! Not done: authentication (401/407), 3xx redirection (reported as
//! Failed), RFC 3263 DNS (the next hop is the peer given), an INVITE
//! without offer answered in a reliable provisional.
//!
//! A call leaves the tables when it has ended and none of its transactions,
//! retransmissions or guards is still running.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::dialog::{Dialog, DialogId, DialogState, Role};
use super::endpoint::{Endpoint, EndpointConfig, Remote, Transmit, Transport, TxnEvent, TxnId};
use super::header::{Method, NameAddr};
use super::message::{Header, Limits, Message, StartLine};
use super::response::{UasCapabilities, allow_value, response_to};
use super::sdp::{self, Direction, LocalMedia, Sdp};
use super::transaction::TimerValues;
use super::uri::Uri;

/// A call's handle, stable for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// An OPTIONS request's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionsHandle(pub u64);

/// Who or what ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// Our hangup/reject completed (BYE answered or timed out, the CANCELled
    /// INVITE's final response, our final response sent).
    Local,
    /// The peer sent BYE or CANCEL.
    Remote,
    /// No ACK for our 2xx (§13.3.1.4; we sent BYE).
    Timeout,
    /// The transport failed under the call.
    TransportError,
}

/// What the user agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// A new INVITE (100 Trying already sent) from `peer`. `sdp` is its
    /// offer; `None` asks for our offer in the 2xx (the answer then comes
    /// as [`UaEvent::MediaUpdate`] with the ACK).
    IncomingCall {
        call: CallHandle,
        request: Box<Message>,
        sdp: Option<Sdp>,
        peer: Remote,
    },
    /// A 101-199 to our INVITE.
    Provisional {
        call: CallHandle,
        status: u16,
        sdp: Option<Sdp>,
    },
    /// The 2xx to our INVITE (ACK already sent).
    Answered { call: CallHandle, sdp: Option<Sdp> },
    /// Our INVITE failed: a 3xx-6xx (`reason`: its Reason header values),
    /// 408 for a timeout (Timer B), 503 for a transport error (§8.1.3.1).
    Failed {
        call: CallHandle,
        status: u16,
        reason: Option<String>,
    },
    /// The call is over. `reason`: the Reason header values of the BYE or
    /// CANCEL that ended it (remote), or the one we sent (local).
    Ended {
        call: CallHandle,
        by: EndedBy,
        reason: Option<String>,
    },
    /// The peer changed the session (re-INVITE, UPDATE, or the answer in an
    /// ACK) and we accepted: `sdp` is the peer's new description.
    MediaUpdate { call: CallHandle, sdp: Sdp },
    /// An INFO with a DTMF digit (accepted with 200).
    InfoDtmf {
        call: CallHandle,
        digit: char,
        duration_ms: Option<u32>,
    },
    /// Our re-INVITE was refused (§14.1: the session goes on unchanged;
    /// 491 means glare, retry later).
    ReinviteFailed { call: CallHandle, status: u16 },
    /// The outcome of `send_options`: the final status, 408 on timeout,
    /// 503 on a transport error.
    OptionsResult { handle: OptionsHandle, status: u16 },
}

/// Why an API call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaError {
    /// No live call with this handle.
    NoSuchCall,
    /// Not allowed in the call's current state (e.g. `accept` on our own INVITE).
    WrongState,
    /// A status code out of range for the operation.
    BadStatus,
}

impl std::fmt::Display for UaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UaError::NoSuchCall => "no such call",
            UaError::WrongState => "not allowed in the call's state",
            UaError::BadStatus => "status code out of range",
        })
    }
}

impl std::error::Error for UaError {}

/// Configuration of the user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    pub timers: TimerValues,
    pub limits: Limits,
    /// `host[:port]` for our Via headers (UDP, TCP) and for TLS.
    pub sent_by: String,
    pub sent_by_tls: Option<String>,
    /// Our Contact URI, e.g. `sip:gw@192.0.2.1:5060`; `;transport=tcp|tls`
    /// is added for stream transports.
    pub contact: Uri,
    /// Host part of our Call-IDs (§8.1.1.4).
    pub call_id_host: String,
    /// `User-Agent` / `Server` header value; empty = none.
    pub user_agent: String,
    /// Seed for tags, branches and Call-IDs (OS randomness in production).
    pub seed: u64,
    /// RFC 3262: advertise `100rel`, PRACK reliable provisionals that
    /// require it, and send ours reliably when an INVITE requires it.
    pub rel100: bool,
    /// RFC 4028 session timers: the interval we ask for (`Session-Expires`,
    /// e.g. 1800 s); `None` turns them off (no `timer` in Supported).
    pub session_expires_s: Option<u32>,
    /// RFC 4028 `Min-SE`: the smallest interval we accept (at least 90 s).
    pub min_se_s: u32,
}

/// What we accept in INVITE/UPDATE/INFO bodies (§20.1 Accept).
const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// The methods we implement (§20.5 Allow).
/// The methods we implement (§20.5 Allow) and option tags we support
/// (§20.37): PRACK and `100rel` (RFC 3262) when enabled.
fn capabilities(config: &UaConfig) -> UasCapabilities {
    let mut allow = vec![
        Method::Invite,
        Method::Ack,
        Method::Cancel,
        Method::Bye,
        Method::Options,
        Method::Update,
        Method::Info,
    ];
    let mut supported = Vec::new();
    if config.rel100 {
        allow.push(Method::Prack);
        supported.push("100rel".to_owned());
    }
    if config.session_expires_s.is_some() {
        supported.push("timer".to_owned());
    }
    UasCapabilities { allow, supported }
}

/// Whether `msg` lists `tag` in header `name` (Require, Supported).
fn lists_tag(msg: &Message, name: &str, tag: &str) -> bool {
    msg.list(name)
        .unwrap_or_default()
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

/// RFC 4028 §4: `Session-Expires: delta-seconds [;refresher=uac|uas]`.
fn session_expires(msg: &Message) -> Option<(u32, Option<Role>)> {
    let v = msg.single("Session-Expires").ok()??;
    let (num, params) = v.split_once(';').unwrap_or((v, ""));
    let secs: u32 = num.trim().parse().ok()?;
    let refresher = match super::text::Params::parse(params).ok()?.value("refresher") {
        Some(r) if r.eq_ignore_ascii_case("uac") => Some(Role::Uac),
        Some(r) if r.eq_ignore_ascii_case("uas") => Some(Role::Uas),
        _ => None,
    };
    Some((secs, refresher))
}

fn refresher_name(role: Role) -> &'static str {
    match role {
        Role::Uac => "uac",
        Role::Uas => "uas",
    }
}

/// RFC 4028 timers of a confirmed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionTimer {
    interval_s: u32,
    /// When we (the refresher) send the next refresh (§7.4: half the interval).
    refresh_at: Option<Instant>,
    /// When the session expires without a refresh (§10: the refresher's
    /// peer waits interval - min(32 s, interval/3)).
    expires_at: Instant,
    we_refresh: bool,
}

impl SessionTimer {
    fn start(now: Instant, interval_s: u32, we_refresh: bool) -> SessionTimer {
        let interval = Duration::from_secs(u64::from(interval_s));
        let (refresh_at, expires_at) = if we_refresh {
            (Some(now + interval / 2), now + interval)
        } else {
            let margin = Duration::from_secs(32).min(interval / 3);
            (None, now + interval - margin)
        };
        SessionTimer {
            interval_s,
            refresh_at,
            expires_at,
            we_refresh,
        }
    }
}

/// RFC 3262 §7.2: `RAck: response-num CSeq-num Method`.
fn parse_rack(msg: &Message) -> Option<(u32, u32, Method)> {
    let v = msg.single("RAck").ok()??;
    let mut it = v.split_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method = Method::parse(it.next()?).ok()?;
    Some((rseq, cseq, method))
}

/// Parameters of an outgoing INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCall {
    pub request_uri: Uri,
    /// Our From, without tag (one is added).
    pub from: NameAddr,
    pub to: NameAddr,
    /// Extra headers, e.g. P-Asserted-Identity, Privacy (RFC 3325).
    pub headers: Vec<Header>,
    /// The SDP offer (RFC 3264). Always made by us: an offer in the 2xx
    /// would need our answer in the ACK (§13.2.2.4), which only the call
    /// module could give.
    pub sdp: Sdp,
    /// The next hop: a core peer's address and transport.
    pub peer: Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// UAC: INVITE sent, no provisional yet.
    Calling,
    /// UAC: a provisional came.
    Proceeding,
    /// UAC: CANCEL sent; waiting for the INVITE's final response.
    Cancelling,
    /// UAS: INVITE received, no final response yet.
    Incoming,
    /// UAS: 2xx sent, no ACK yet.
    AwaitingAck,
    Confirmed,
    /// BYE sent, waiting for its response.
    Terminating,
    /// Terminal event given; lingering for transactions.
    Ended,
}

/// What a transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Our INVITE (UAC) or theirs (UAS).
    Invite,
    Cancel,
    Bye,
    /// The BYE to a further fork's 2xx (§13.2.2.4).
    ForkBye,
    /// A request we answered inside the dialog (re-INVITE).
    InDialog,
    /// Our re-INVITE (§14.1).
    ReInvite,
    /// Our INFO.
    Info,
    /// Our PRACK (RFC 3262).
    Prack,
    /// Our session refresh UPDATE (RFC 4028).
    Refresh,
}

/// §13.3.1.4: a UAS resends its 2xx (T1 doubling to T2) until the ACK.
#[derive(Debug, Clone)]
struct Pending2xx {
    bytes: Vec<u8>,
    invite_seq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// RFC 3262 §3: a reliable provisional, resent (T1 doubling) until PRACKed.
#[derive(Debug, Clone)]
struct Reliable1xx {
    bytes: Vec<u8>,
    rseq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct Call {
    role: Role,
    state: CallState,
    peer: Remote,
    /// UAC: our INVITE (without Via); UAS: theirs.
    invite: Message,
    invite_txn: Option<TxnId>,
    local_tag: String,
    /// The confirmed dialog, or the UAS's early one.
    dialog: Option<Dialog>,
    /// UAC early dialogs, one per remote tag (forking, §12.1.2).
    early: Vec<Dialog>,
    local_sdp: Option<Sdp>,
    remote_sdp: Option<Sdp>,
    /// UAC: hangup asked before a provisional; CANCEL waits for one (§9.1).
    cancel_wanted: bool,
    /// The Reason we clear with.
    hangup_reason: Option<String>,
    /// UAC: the ACK for the 2xx, resent for each 2xx retransmission.
    ack_bytes: Option<Vec<u8>>,
    pending_2xx: Option<Pending2xx>,
    /// UAS: hangup while waiting for the ACK (§15: BYE only after it).
    bye_after_ack: bool,
    /// Our re-INVITE awaiting its final response: its CSeq and offer.
    reinvite: Option<(u32, Sdp)>,
    /// The ACK of our last re-INVITE's 2xx, by CSeq, for retransmitted 2xx.
    reinvite_ack: Option<(u32, Vec<u8>)>,
    /// UAC: the last provisional reported (status, To tag, body), so that
    /// retransmitted or duplicated ones are reported once.
    last_provisional: Option<(u16, Option<String>, Vec<u8>)>,
    /// UAC: the last RSeq PRACKed per remote tag (RFC 3262 §4).
    rseq_seen: Vec<(String, u32)>,
    /// UAS: the reliable provisional awaiting PRACK, and those queued
    /// behind it (RFC 3262 §3: one at a time).
    reliable: Option<Reliable1xx>,
    reliable_queue: VecDeque<Message>,
    next_rseq: u32,
    /// UAC: when to give up on the final response to a CANCELled INVITE.
    cancel_guard: Option<Instant>,
    /// RFC 4028 session timer, once confirmed.
    session: Option<SessionTimer>,
    /// RFC 4028 §7.3: we already INVITEd again after a 422.
    retried_422: bool,
    /// The peer allows UPDATE (its Allow), so refreshes use it (RFC 4028 §7.4).
    peer_allows_update: bool,
    /// Live transactions of this call.
    txns: usize,
}

impl Call {
    fn ended(&self) -> bool {
        self.state == CallState::Ended
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ok = self.pending_2xx.as_ref().map(|p| p.next.min(p.give_up));
        let rel = self.reliable.as_ref().map(|r| r.next.min(r.give_up));
        let session = self
            .session
            .map(|s| s.refresh_at.map_or(s.expires_at, |r| r.min(s.expires_at)));
        ok.into_iter()
            .chain(rel)
            .chain(self.cancel_guard)
            .chain(session)
            .min()
    }
}

/// Counters for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaStats {
    /// Requests answered 481 (no dialog, §12.2.2).
    pub no_dialog: u64,
    /// 2xx with no call, dropped.
    pub stray_2xx: u64,
    /// Forked 2xx answered with ACK + BYE.
    pub forks_released: u64,
    /// Offers rejected with 488.
    pub offers_rejected: u64,
}

/// The user agent. See the module doc.
pub struct UserAgent {
    config: UaConfig,
    endpoint: Endpoint,
    next_handle: u64,
    calls: HashMap<CallHandle, Call>,
    dialogs: HashMap<DialogId, CallHandle>,
    /// Which call (or OPTIONS) each transaction belongs to.
    owners: HashMap<TxnId, (CallHandle, Purpose)>,
    options: HashMap<TxnId, OptionsHandle>,
    events: VecDeque<UaEvent>,
    draining: bool,
    stats: UaStats,
}

/// All Reason header values of a message, comma-joined.
fn reason_of(msg: &Message) -> Option<String> {
    let v: Vec<&str> = msg
        .headers_named("Reason")
        .filter_map(|h| h.value_str().ok())
        .collect();
    (!v.is_empty()).then(|| v.join(", "))
}

fn content_type(msg: &Message) -> Option<String> {
    let v = msg.single("Content-Type").ok()??;
    let base = v.split(';').next().unwrap_or(v);
    Some(base.trim().to_ascii_lowercase())
}

/// The SDP body of a message, if it has one that parses.
fn sdp_of(msg: &Message) -> Option<Sdp> {
    if msg.body.is_empty() {
        return None;
    }
    match content_type(msg).as_deref() {
        Some("application/sdp") | None => Sdp::parse(&msg.body).ok(),
        Some(_) => None,
    }
}

fn has_sdp_body(msg: &Message) -> bool {
    !msg.body.is_empty() && matches!(content_type(msg).as_deref(), Some("application/sdp") | None)
}

/// `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`) bodies. Signals 10 and 11 are `*` and `#`.
pub fn parse_dtmf_info(content_type: &str, body: &[u8]) -> Option<(char, Option<u32>)> {
    let text = std::str::from_utf8(body).ok()?;
    let digit = |s: &str| -> Option<char> {
        match s.trim() {
            "10" => Some('*'),
            "11" => Some('#'),
            s if s.len() == 1 => s
                .chars()
                .next()
                .map(|c| c.to_ascii_uppercase())
                .filter(|c| c.is_ascii_digit() || "*#ABCD".contains(*c)),
            _ => None,
        }
    };
    if content_type == "application/dtmf" {
        return Some((digit(text)?, None));
    }
    let mut signal = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => signal = digit(v),
            "duration" => duration = v.trim().parse::<u32>().ok(),
            _ => {}
        }
    }
    Some((signal?, duration))
}

/// Our Contact for `transport`: `;transport=tcp|tls` on streams (§19.1.1).
fn contact_for(contact: &Uri, transport: Transport) -> Uri {
    let mut uri = contact.clone();
    if let (Uri::Sip(u), Transport::Tcp | Transport::Tls) = (&mut uri, transport)
        && u.params.get("transport").is_none()
    {
        let t = if transport == Transport::Tcp {
            "tcp"
        } else {
            "tls"
        };
        u.params.set("transport", Some(t));
    }
    uri
}

/// RFC 3264 §8: our answer to a new offer in the session, from our current
/// description: same address, port and codecs, the next o= version; `None`
/// when no audio stream can be accepted (the caller answers 488).
fn answer_reoffer(local: &Sdp, offer: &Sdp) -> Option<Sdp> {
    let audio = local
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)?;
    let local_media = LocalMedia {
        origin: local.origin.next_version(),
        address: audio.connection.or(local.connection)?,
        port: audio.port,
        codecs: audio
            .formats
            .iter()
            .filter(|f| !f.encoding.eq_ignore_ascii_case("telephone-event"))
            .map(|f| f.encoding.clone())
            .collect(),
        telephone_event: audio
            .formats
            .iter()
            .any(|f| f.encoding.eq_ignore_ascii_case("telephone-event")),
        ptime_ms: audio.ptime_ms.unwrap_or(20),
        // The gateway can always send and receive; the offer narrows it.
        direction: Direction::SendRecv,
    };
    let mut answer = sdp::answer(offer, &local_media);
    // RFC 3264 §8: the version goes up only when the description changes.
    let unchanged = Sdp {
        origin: local.origin.clone(),
        ..answer.clone()
    } == *local;
    if unchanged {
        answer.origin = local.origin.clone();
    }
    answer.audio_address().is_some().then_some(answer)
}

impl UserAgent {
    pub fn new(config: UaConfig) -> UserAgent {
        let endpoint = Endpoint::new(EndpointConfig {
            timers: config.timers,
            limits: config.limits,
            capabilities: capabilities(&config),
            sent_by: config.sent_by.clone(),
            sent_by_tls: config.sent_by_tls.clone(),
            seed: config.seed,
        });
        UserAgent {
            config,
            endpoint,
            next_handle: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            owners: HashMap::new(),
            options: HashMap::new(),
            events: VecDeque::new(),
            draining: false,
            stats: UaStats::default(),
        }
    }

    /// While draining, OPTIONS is answered 503 (the core stops sending new
    /// calls, RFC 3261 §11.2) and new INVITEs get 503 too.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn stats(&self) -> UaStats {
        self.stats
    }

    /// The transaction layer's counters.
    pub fn endpoint_stats(&self) -> super::endpoint::EndpointStats {
        self.endpoint.stats()
    }

    /// Live calls (ended ones included until their transactions finish).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Dialog table entries.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Live transactions.
    pub fn transaction_count(&self) -> usize {
        self.endpoint.len()
    }

    /// No call, dialog, transaction or OPTIONS left: nothing leaked.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.dialogs.is_empty()
            && self.owners.is_empty()
            && self.options.is_empty()
            && self.endpoint.is_empty()
    }

    /// The call's dialog (confirmed, or the UAS's early one).
    pub fn dialog(&self, call: CallHandle) -> Option<&Dialog> {
        self.calls.get(&call)?.dialog.as_ref()
    }

    /// The peer's current session description.
    pub fn remote_sdp(&self, call: CallHandle) -> Option<&Sdp> {
        self.calls.get(&call)?.remote_sdp.as_ref()
    }

    fn new_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    fn contact(&self, transport: Transport) -> Uri {
        contact_for(&self.config.contact, transport)
    }

    /// Headers every request and response of ours carries.
    fn push_common(&self, m: &mut Message, request: bool) {
        if !self.config.user_agent.is_empty() {
            let name = if request { "User-Agent" } else { "Server" };
            m.push(name, self.config.user_agent.clone());
        }
    }

    fn set_sdp_body(m: &mut Message, sdp: Option<&Sdp>) {
        if let Some(s) = sdp {
            m.push("Content-Type", "application/sdp");
            m.body = s.to_text().into_bytes();
        }
    }

    fn own(&mut self, txn: TxnId, call: CallHandle, purpose: Purpose) {
        self.owners.insert(txn, (call, purpose));
        if let Some(c) = self.calls.get_mut(&call) {
            c.txns += 1;
        }
    }

    // ----- API for the call module ---------------------------------------

    /// Send an INVITE (RFC 3261 §8.1.1, §13.2.1) and return the call's handle.
    pub fn place_call(&mut self, now: Instant, params: OutgoingCall) -> CallHandle {
        let handle = CallHandle(self.new_handle());
        let local_tag = self.endpoint.random_token();
        let call_id = format!(
            "{}@{}",
            self.endpoint.random_token(),
            self.config.call_id_host
        );
        let mut from = params.from.clone();
        from.params.set("tag", Some(&local_tag));
        let mut invite = Message {
            start: StartLine::Request {
                method: Method::Invite,
                uri: params.request_uri.clone(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        invite.push("Max-Forwards", "70");
        invite.push("From", from.to_string());
        invite.push("To", params.to.to_string());
        invite.push("Call-ID", call_id);
        invite.push("CSeq", "1 INVITE");
        invite.push(
            "Contact",
            format!("<{}>", self.contact(params.peer.transport)),
        );
        invite.push("Allow", self.allow());
        invite.push("Supported", self.supported());
        if let Some(se) = self.config.session_expires_s {
            // RFC 4028 §7.1: no refresher: the UAS picks.
            invite.push("Session-Expires", se.to_string());
            invite.push("Min-SE", self.config.min_se_s.to_string());
        }
        self.push_common(&mut invite, true);
        invite.headers.extend(params.headers.iter().cloned());
        Self::set_sdp_body(&mut invite, Some(&params.sdp));
        let txn = self.endpoint.send_request(now, invite.clone(), params.peer);
        self.calls.insert(
            handle,
            Call {
                role: Role::Uac,
                state: CallState::Calling,
                peer: params.peer,
                invite,
                invite_txn: Some(txn),
                local_tag,
                dialog: None,
                early: Vec::new(),
                local_sdp: Some(params.sdp),
                remote_sdp: None,
                cancel_wanted: false,
                hangup_reason: None,
                ack_bytes: None,
                pending_2xx: None,
                bye_after_ack: false,
                reinvite: None,
                reinvite_ack: None,
                last_provisional: None,
                rseq_seen: Vec::new(),
                reliable: None,
                reliable_queue: VecDeque::new(),
                next_rseq: 1,
                cancel_guard: None,
                session: None,
                retried_422: false,
                peer_allows_update: false,
                txns: 0,
            },
        );
        self.own(txn, handle, Purpose::Invite);
        tracing::info!(call = handle.0, peer = %params.peer.address, "sip INVITE sent");
        self.process_at(now);
        handle
    }

    fn allow(&self) -> String {
        allow_value(&capabilities(&self.config))
    }

    fn supported(&self) -> String {
        capabilities(&self.config).supported.join(", ")
    }

    /// A response to the incoming INVITE of `call`, with our tag, Contact and
    /// the Record-Route copied (§12.1.1).
    fn invite_response(&self, call: &Call, status: u16, sdp: Option<&Sdp>) -> Message {
        let mut r = response_to(&call.invite, status, None, Some(&call.local_tag));
        if status < 300 {
            r.headers
                .extend(call.invite.headers_named("Record-Route").cloned());
            r.push(
                "Contact",
                format!("<{}>", self.contact(call.peer.transport)),
            );
        }
        if (200..300).contains(&status) {
            r.push("Allow", self.allow());
            r.push("Supported", self.supported());
        }
        self.push_common(&mut r, false);
        Self::set_sdp_body(&mut r, sdp);
        r
    }

    /// RFC 4028 §9: as UAS of `request` (an INVITE, re-INVITE or UPDATE),
    /// pick the interval and refresher, write them into our 2xx `response`
    /// (with `Require: timer` if the peer supports it) and start the timer.
    /// `None` when session timers are off.
    fn negotiate_session(
        &self,
        now: Instant,
        request: &Message,
        response: &mut Message,
    ) -> Option<SessionTimer> {
        let ours = self.config.session_expires_s?;
        let peer_supports =
            lists_tag(request, "Supported", "timer") || lists_tag(request, "Require", "timer");
        let (secs, refresher) = session_expires(request).unwrap_or((ours, None));
        // §9: without a refresher in the request, the UAC refreshes if it
        // supports the extension, else we do.
        let refresher = refresher.unwrap_or(if peer_supports { Role::Uac } else { Role::Uas });
        response.push(
            "Session-Expires",
            format!("{secs};refresher={}", refresher_name(refresher)),
        );
        if peer_supports {
            response.push("Require", "timer");
        }
        Some(SessionTimer::start(now, secs, refresher == Role::Uas))
    }

    /// RFC 4028 §8.1: 422 for a Session-Expires below our Min-SE.
    fn interval_too_small(&mut self, now: Instant, txn: TxnId, request: &Message) -> bool {
        let small = self.config.session_expires_s.is_some()
            && session_expires(request).is_some_and(|(s, _)| s < self.config.min_se_s);
        if small {
            let mut r = response_to(request, 422, Some("Session Interval Too Small"), None);
            r.push("Min-SE", self.config.min_se_s.to_string());
            self.push_common(&mut r, false);
            self.endpoint.respond(now, txn, r);
        }
        small
    }

    /// Send 180/183 (any 101-199) on an incoming call, with early media SDP
    /// if given (§13.3.1.1). Creates the UAS's early dialog.
    pub fn send_provisional(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        sdp: Option<&Sdp>,
    ) -> Result<(), UaError> {
        if !(101..=199).contains(&status) {
            return Err(UaError::BadStatus);
        }
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Incoming {
            return Err(UaError::WrongState);
        }
        // RFC 3262 §3: the INVITE requires reliable provisionals.
        let reliable = self.config.rel100 && lists_tag(&c.invite, "Require", "100rel");
        let mut r = self.invite_response(c, status, sdp);
        let txn = c.invite_txn.ok_or(UaError::WrongState)?;
        self.ensure_uas_dialog(call);
        if let (Some(s), Some(c)) = (sdp, self.calls.get_mut(&call)) {
            c.local_sdp = Some(s.clone());
        }
        if !reliable {
            self.endpoint.respond(now, txn, r);
        } else if let Some(c) = self.calls.get_mut(&call) {
            r.push("Require", "100rel");
            if c.reliable.is_some() {
                // §3: one unacknowledged reliable provisional at a time.
                c.reliable_queue.push_back(r);
            } else {
                self.send_reliable(now, call, r);
            }
        }
        self.process_at(now);
        Ok(())
    }

    /// RFC 3262 §3: send a reliable provisional with the next RSeq and
    /// resend it until its PRACK.
    fn send_reliable(&mut self, now: Instant, call: CallHandle, mut r: Message) {
        let t1 = Duration::from_millis(self.config.timers.t1_ms);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(txn) = c.invite_txn else {
            return;
        };
        let rseq = c.next_rseq;
        c.next_rseq = c.next_rseq.wrapping_add(1);
        r.push("RSeq", rseq.to_string());
        let bytes = r.to_bytes();
        c.reliable = Some(Reliable1xx {
            bytes,
            rseq,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
        self.endpoint.respond(now, txn, r);
    }

    /// RFC 3262 §3: a PRACK for our reliable provisional stops its
    /// retransmission and lets the next one go; anything else gets 481.
    fn on_prack(&mut self, now: Instant, txn: TxnId, call: CallHandle, request: &Message) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let invite_seq = c.invite.cseq().map(|s| s.seq).ok();
        let matched = match (parse_rack(request), &c.reliable) {
            (Some((rseq, cseq, Method::Invite)), Some(rel)) => {
                rseq == rel.rseq && Some(cseq) == invite_seq
            }
            _ => false,
        };
        if !matched {
            return self.respond(now, txn, request, 481);
        }
        c.reliable = None;
        let next = (c.state == CallState::Incoming)
            .then(|| c.reliable_queue.pop_front())
            .flatten();
        self.respond(now, txn, request, 200);
        if let Some(r) = next {
            self.send_reliable(now, call, r);
        }
    }

    fn ensure_uas_dialog(&mut self, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.dialog.is_some() {
            return;
        }
        let contact = contact_for(&self.config.contact, c.peer.transport);
        match Dialog::uas(&c.invite, &c.local_tag, contact, c.peer) {
            Ok(d) => {
                self.dialogs.insert(d.id.clone(), call);
                c.dialog = Some(d);
            }
            Err(e) => tracing::info!(call = call.0, fault = %e, "sip INVITE cannot make a dialog"),
        }
    }

    /// Answer an incoming call with 200 and our SDP (the answer, or our
    /// offer if the INVITE had none). The 2xx is resent until the ACK (§13.3.1.4).
    pub fn accept(
        &mut self,
        now: Instant,
        call: CallHandle,
        sdp: Option<&Sdp>,
    ) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Incoming {
            return Err(UaError::WrongState);
        }
        let txn = c.invite_txn.ok_or(UaError::WrongState)?;
        let invite_seq = c.invite.cseq().map(|s| s.seq).unwrap_or(0);
        let mut r = self.invite_response(c, 200, sdp);
        let session = self.negotiate_session(now, &c.invite, &mut r);
        self.ensure_uas_dialog(call);
        if self.calls.get(&call).is_some_and(|c| c.dialog.is_none()) {
            // No dialog possible (no Contact or From tag): refuse the call.
            return self.reject(now, call, 400, None);
        }
        let bytes = r.to_bytes();
        self.endpoint.respond(now, txn, r);
        let t1 = Duration::from_millis(self.config.timers.t1_ms);
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(d) = &mut c.dialog {
                d.state = DialogState::Confirmed;
            }
            if let Some(s) = sdp {
                c.local_sdp = Some(s.clone());
            }
            c.state = CallState::AwaitingAck;
            c.session = session;
            // The final response ends the reliable provisionals (RFC 3262 §3).
            c.reliable = None;
            c.reliable_queue.clear();
            c.pending_2xx = Some(Pending2xx {
                bytes,
                invite_seq,
                next: now + t1,
                interval: t1,
                give_up: now + t1 * 64,
            });
        }
        tracing::info!(call = call.0, "sip call answered");
        self.process_at(now);
        Ok(())
    }

    /// Refuse an incoming call with a 300-699 and an optional Reason header
    /// value (RFC 3326). Ends the call ([`EndedBy::Local`]).
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        reason: Option<&str>,
    ) -> Result<(), UaError> {
        if !(300..=699).contains(&status) {
            return Err(UaError::BadStatus);
        }
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Incoming {
            return Err(UaError::WrongState);
        }
        let txn = c.invite_txn.ok_or(UaError::WrongState)?;
        let mut r = self.invite_response(c, status, None);
        if let Some(reason) = reason {
            r.push("Reason", reason);
        }
        self.endpoint.respond(now, txn, r);
        self.end(call, EndedBy::Local, reason.map(str::to_owned));
        self.process_at(now);
        Ok(())
    }

    /// Clear a call with an optional Reason header value: BYE when
    /// confirmed; CANCEL when our INVITE is early (§9.1: only after a
    /// provisional, so it waits for one; a 2xx crossing it gets ACK and
    /// BYE); 480 on an incoming call not answered yet. The call ends with
    /// [`UaEvent::Ended`] once the clearing completes.
    pub fn hangup(
        &mut self,
        now: Instant,
        call: CallHandle,
        reason: Option<&str>,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        c.hangup_reason = reason.map(str::to_owned);
        match c.state {
            CallState::Calling => c.cancel_wanted = true,
            CallState::Proceeding => self.send_cancel(now, call),
            CallState::Incoming => return self.reject(now, call, 480, reason),
            CallState::AwaitingAck => c.bye_after_ack = true,
            CallState::Confirmed => self.send_bye(now, call),
            CallState::Cancelling | CallState::Terminating | CallState::Ended => {
                return Err(UaError::WrongState);
            }
        }
        self.process_at(now);
        Ok(())
    }

    /// Send a re-INVITE with a new offer (§14.1), e.g. a new local media
    /// address or hold. The answer comes as [`UaEvent::MediaUpdate`], a
    /// refusal as [`UaEvent::ReinviteFailed`].
    pub fn reinvite(&mut self, now: Instant, call: CallHandle, sdp: &Sdp) -> Result<(), UaError> {
        let allow = self.allow();
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Confirmed || c.reinvite.is_some() || c.pending_2xx.is_some() {
            return Err(UaError::WrongState);
        }
        let session = c.session.map(|s| s.interval_s);
        let d = c.dialog.as_mut().ok_or(UaError::WrongState)?;
        let mut m = d.request(Method::Invite);
        let (seq, peer) = (d.local_seq, d.peer);
        m.push("Allow", allow);
        if let Some(secs) = session {
            // RFC 4028 §7.4: a re-INVITE refreshes; we offer to keep refreshing.
            m.push("Session-Expires", format!("{secs};refresher=uac"));
            m.push("Supported", "timer");
        }
        c.reinvite = Some((seq, sdp.clone()));
        self.push_common(&mut m, true);
        Self::set_sdp_body(&mut m, Some(sdp));
        let txn = self.endpoint.send_request(now, m, peer);
        self.own(txn, call, Purpose::ReInvite);
        self.process_at(now);
        Ok(())
    }

    /// Send a DTMF digit in an INFO (`application/dtmf-relay`), for cores
    /// that take no RFC 4733 events.
    pub fn send_dtmf_info(
        &mut self,
        now: Instant,
        call: CallHandle,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), UaError> {
        if !(digit.is_ascii_digit() || "*#ABCD".contains(digit)) {
            return Err(UaError::BadStatus);
        }
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Confirmed {
            return Err(UaError::WrongState);
        }
        let d = c.dialog.as_mut().ok_or(UaError::WrongState)?;
        let mut m = d.request(Method::Info);
        let peer = d.peer;
        m.push("Content-Type", "application/dtmf-relay");
        m.body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n").into_bytes();
        self.push_common(&mut m, true);
        let txn = self.endpoint.send_request(now, m, peer);
        self.own(txn, call, Purpose::Info);
        self.process_at(now);
        Ok(())
    }

    /// Ping `peer` with OPTIONS (§11.1), e.g. for core peer health.
    pub fn send_options(&mut self, now: Instant, request_uri: Uri, peer: Remote) -> OptionsHandle {
        let handle = OptionsHandle(self.new_handle());
        let tag = self.endpoint.random_token();
        let call_id = format!(
            "{}@{}",
            self.endpoint.random_token(),
            self.config.call_id_host
        );
        let mut m = Message {
            start: StartLine::Request {
                method: Method::Options,
                uri: request_uri.clone(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        m.push("Max-Forwards", "70");
        m.push("From", format!("<{}>;tag={tag}", self.config.contact));
        m.push("To", format!("<{request_uri}>"));
        m.push("Call-ID", call_id);
        m.push("CSeq", "1 OPTIONS");
        m.push("Accept", "application/sdp");
        self.push_common(&mut m, true);
        let txn = self.endpoint.send_request(now, m, peer);
        self.options.insert(txn, handle);
        self.process_at(now);
        handle
    }

    fn send_cancel(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let extra: Vec<Header> = c
            .hangup_reason
            .iter()
            .map(|r| Header::new("Reason", r.clone()))
            .collect();
        if !c.ended() {
            c.state = CallState::Cancelling;
        }
        c.cancel_wanted = false;
        // §9.1: no final response 64*T1 after the CANCEL: the INVITE
        // transaction is destroyed.
        c.cancel_guard = Some(now + Duration::from_millis(self.config.timers.t1_ms) * 64);
        let invite = c.invite_txn;
        match invite.and_then(|t| self.endpoint.cancel(now, t, extra)) {
            Some(txn) => self.own(txn, call, Purpose::Cancel),
            // The INVITE already has its final response or is gone; its
            // outcome (2xx -> BYE, else the end) follows.
            None => tracing::debug!(call = call.0, "sip CANCEL not sendable"),
        }
    }

    fn send_bye(&mut self, now: Instant, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(d) = &mut c.dialog else {
            return;
        };
        let mut bye = d.request(Method::Bye);
        let peer = d.peer;
        if let Some(r) = &c.hangup_reason {
            bye.push("Reason", r.clone());
        }
        if !c.ended() {
            c.state = CallState::Terminating;
        }
        c.pending_2xx = None;
        self.push_common(&mut bye, true);
        let txn = self.endpoint.send_request(now, bye, peer);
        self.own(txn, call, Purpose::Bye);
    }

    /// Report the terminal event and mark the call ended.
    fn end(&mut self, call: CallHandle, by: EndedBy, reason: Option<String>) {
        if let Some(c) = self.calls.get_mut(&call) {
            if c.ended() {
                return;
            }
            c.state = CallState::Ended;
            c.pending_2xx = None;
            c.reliable = None;
            c.reliable_queue.clear();
            tracing::info!(call = call.0, ?by, "sip call ended");
            self.events.push_back(UaEvent::Ended { call, by, reason });
        }
    }

    fn fail(&mut self, call: CallHandle, status: u16, reason: Option<String>) {
        if let Some(c) = self.calls.get_mut(&call) {
            if c.ended() {
                return;
            }
            c.state = CallState::Ended;
            tracing::info!(call = call.0, status, "sip call failed");
            self.events.push_back(UaEvent::Failed {
                call,
                status,
                reason,
            });
        }
    }

    // ----- input from the SIP task ---------------------------------------

    pub fn handle_input(&mut self, now: Instant, bytes: &[u8], from: Remote) {
        self.endpoint.handle_input(now, bytes, from);
        self.process_at(now);
    }

    pub fn handle_transport_error(&mut self, now: Instant, remote: Remote) {
        self.endpoint.handle_transport_error(now, remote);
        self.process_at(now);
    }

    /// The earliest deadline: transactions (min-scan), and per call the 2xx
    /// and reliable provisional retransmissions and the CANCEL guard.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(Call::next_deadline);
        self.endpoint.poll_timeout().into_iter().chain(calls).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.retransmit_2xx(now);
        self.retransmit_reliable(now);
        self.expire_cancel_guards(now);
        self.run_session_timers(now);
        self.process_at(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// RFC 4028 §7.4, §10: send due refreshes (UPDATE if the peer allows
    /// it, else a re-INVITE with our current description); end expired
    /// sessions with BYE.
    fn run_session_timers(&mut self, now: Instant) {
        let mut refresh = Vec::new();
        let mut expired = Vec::new();
        for (h, c) in self.calls.iter_mut() {
            let Some(st) = &mut c.session else {
                continue;
            };
            if st.expires_at <= now {
                c.session = None;
                if c.state == CallState::Confirmed {
                    expired.push(*h);
                }
            } else if st.refresh_at.is_some_and(|r| r <= now) {
                st.refresh_at = None;
                if c.state == CallState::Confirmed && c.reinvite.is_none() {
                    refresh.push(*h);
                }
            }
        }
        for h in refresh {
            let Some(c) = self.calls.get_mut(&h) else {
                continue;
            };
            if !c.peer_allows_update {
                if let Some(sdp) = c.local_sdp.clone() {
                    let _ = self.reinvite(now, h, &sdp);
                }
                continue;
            }
            let secs = c.session.map(|s| s.interval_s);
            let Some(d) = c.dialog.as_mut() else {
                continue;
            };
            let mut m = d.request(Method::Update);
            let peer = d.peer;
            if let Some(secs) = secs {
                m.push("Session-Expires", format!("{secs};refresher=uac"));
            }
            m.push("Supported", self.supported());
            self.push_common(&mut m, true);
            let txn = self.endpoint.send_request(now, m, peer);
            self.own(txn, h, Purpose::Refresh);
        }
        for h in expired {
            tracing::info!(call = h.0, "sip session expired (RFC 4028), sending BYE");
            self.send_bye(now, h);
            self.end(h, EndedBy::Timeout, None);
        }
    }

    /// RFC 4028 §7.4: the response to our refresh UPDATE.
    fn on_refresh_response(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        response: &Message,
    ) {
        if status < 200 {
            return;
        }
        if status == 481 || status == 408 {
            // §12.2.1.2: the dialog is gone.
            self.send_bye(now, call);
            self.end(call, EndedBy::Remote, None);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if (200..300).contains(&status) {
            let old = c.session.map(|s| s.interval_s);
            let (secs, r) = session_expires(response)
                .map(|(s, r)| (Some(s), r))
                .unwrap_or((old, Some(Role::Uac)));
            if let Some(secs) = secs {
                c.session = Some(SessionTimer::start(
                    now,
                    secs,
                    r.unwrap_or(Role::Uac) == Role::Uac,
                ));
            }
        }
        // Other failures: the session expires at its deadline unless refreshed.
    }

    /// §9.1: a CANCELled INVITE with no final response after 64*T1 is
    /// given up: its transaction is destroyed and the call ends.
    fn expire_cancel_guards(&mut self, now: Instant) {
        let due: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.cancel_guard.is_some_and(|g| g <= now))
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            let Some(c) = self.calls.get_mut(&h) else {
                continue;
            };
            c.cancel_guard = None;
            let reason = c.hangup_reason.clone();
            if let Some(txn) = c.invite_txn
                && self.endpoint.abandon_invite(txn)
            {
                tracing::info!(
                    call = h.0,
                    "sip no final response after CANCEL, INVITE abandoned"
                );
            }
            self.end(h, EndedBy::Local, reason);
        }
    }

    /// RFC 3262 §3: resend each unPRACKed reliable provisional (T1
    /// doubling); after 64*T1 reject the INVITE with a 5xx.
    fn retransmit_reliable(&mut self, now: Instant) {
        let mut give_up = Vec::new();
        for (h, c) in self.calls.iter_mut() {
            let Some(r) = &mut c.reliable else {
                continue;
            };
            if r.give_up <= now {
                give_up.push(*h);
            } else if r.next <= now {
                self.endpoint.retransmit(r.bytes.clone(), c.peer);
                r.interval *= 2;
                r.next = now + r.interval;
            }
        }
        for h in give_up {
            let Some(c) = self.calls.get_mut(&h) else {
                continue;
            };
            c.reliable = None;
            c.reliable_queue.clear();
            let txn = c.invite_txn;
            let Some(c) = self.calls.get(&h) else {
                continue;
            };
            tracing::info!(
                call = h.0,
                "sip no PRACK for reliable provisional, rejecting"
            );
            let r = self.invite_response(c, 504, None);
            if let Some(txn) = txn {
                self.endpoint.respond(now, txn, r);
            }
            self.end(h, EndedBy::Timeout, None);
        }
    }

    /// §13.3.1.4: resend each unacknowledged 2xx; give up after 64*T1 and
    /// end the call with BYE.
    fn retransmit_2xx(&mut self, now: Instant) {
        let t2 = Duration::from_millis(self.config.timers.t2_ms);
        let mut give_up = Vec::new();
        for (h, c) in self.calls.iter_mut() {
            let Some(p) = &mut c.pending_2xx else {
                continue;
            };
            if p.give_up <= now {
                give_up.push(*h);
                continue;
            }
            if p.next <= now {
                // §13.3.1.4: "independent of the transport protocol" (a
                // proxy may forward over UDP what we sent over TCP).
                self.endpoint.retransmit(p.bytes.clone(), c.peer);
                p.interval = (p.interval * 2).min(t2);
                p.next = now + p.interval;
            }
        }
        for h in give_up {
            let Some(c) = self.calls.get_mut(&h) else {
                continue;
            };
            c.pending_2xx = None;
            if !matches!(c.state, CallState::AwaitingAck | CallState::Confirmed) {
                continue;
            }
            tracing::info!(call = h.0, "sip no ACK for 2xx, sending BYE");
            // A hangup that waited for the ACK completes now.
            let by = if c.bye_after_ack {
                EndedBy::Local
            } else {
                EndedBy::Timeout
            };
            let reason = c.hangup_reason.clone();
            self.send_bye(now, h);
            self.end(h, by, reason);
        }
    }

    fn process_at(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            self.on_txn_event(now, ev);
        }
        self.reap();
    }

    fn on_txn_event(&mut self, now: Instant, ev: TxnEvent) {
        match ev {
            TxnEvent::Request { txn, request, from } => self.on_request(now, txn, *request, from),
            TxnEvent::Ack { request, .. } => self.on_ack(now, *request),
            TxnEvent::Cancelled { invite, cancel } => self.on_cancelled(now, invite, *cancel),
            TxnEvent::Response { txn, response } => self.on_response(now, txn, *response),
            TxnEvent::Stray2xx { response, .. } => self.on_stray_2xx(*response),
            TxnEvent::Timeout { txn } => self.on_txn_failure(now, txn, 408),
            TxnEvent::TransportError { txn } => self.on_txn_failure(now, txn, 503),
            TxnEvent::AckTimeout { .. } => {}
            TxnEvent::Terminated { txn } => {
                self.options.remove(&txn);
                if let Some((call, _)) = self.owners.remove(&txn)
                    && let Some(c) = self.calls.get_mut(&call)
                {
                    c.txns = c.txns.saturating_sub(1);
                    if c.invite_txn == Some(txn) {
                        c.invite_txn = None;
                    }
                }
            }
        }
    }

    /// Remove ended calls with nothing left running.
    fn reap(&mut self) {
        let done: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ended() && c.txns == 0 && c.pending_2xx.is_none())
            .map(|(h, _)| *h)
            .collect();
        for h in done {
            self.calls.remove(&h);
            self.dialogs.retain(|_, c| *c != h);
        }
    }

    fn respond(&mut self, now: Instant, txn: TxnId, request: &Message, status: u16) {
        let mut r = response_to(request, status, None, None);
        self.push_common(&mut r, false);
        self.endpoint.respond(now, txn, r);
    }

    fn on_request(&mut self, now: Instant, txn: TxnId, request: Message, from: Remote) {
        let Some(method) = request.method().cloned() else {
            return;
        };
        let in_dialog = DialogId::of_request(&request);
        if method == Method::Options {
            return self.answer_options(now, txn, &request, in_dialog.is_some());
        }
        let Some(id) = in_dialog else {
            if method == Method::Invite {
                return self.on_new_invite(now, txn, request, from);
            }
            // §12.2.2 / §15.1.2: BYE, UPDATE, INFO outside any dialog.
            self.stats.no_dialog += 1;
            return self.respond(now, txn, &request, 481);
        };
        let call = self
            .dialogs
            .get(&id)
            .copied()
            .filter(|h| self.calls.get(h).is_some_and(|c| !c.ended()));
        let Some(call) = call else {
            self.stats.no_dialog += 1;
            return self.respond(now, txn, &request, 481);
        };
        let order = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.dialog.as_mut())
            .map(|d| d.check_remote_cseq(&request));
        if let Some(Err(status)) = order {
            return self.respond(now, txn, &request, status);
        }
        match method {
            Method::Bye => self.on_bye(now, txn, call, &request),
            Method::Invite | Method::Update => self.on_reoffer(now, txn, call, &request),
            Method::Info => self.on_info(now, txn, call, &request),
            Method::Prack => self.on_prack(now, txn, call, &request),
            _ => self.respond(now, txn, &request, 405),
        }
    }

    fn answer_options(&mut self, now: Instant, txn: TxnId, request: &Message, in_dialog: bool) {
        if self.draining && !in_dialog {
            let mut r = response_to(request, 503, None, None);
            self.push_common(&mut r, false);
            self.endpoint.respond(now, txn, r);
            return;
        }
        let tag = self.endpoint.random_token();
        let mut r = response_to(request, 200, None, Some(&tag));
        r.push("Allow", self.allow());
        r.push("Accept", ACCEPT);
        r.push("Supported", self.supported());
        self.push_common(&mut r, false);
        self.endpoint.respond(now, txn, r);
    }

    fn on_new_invite(&mut self, now: Instant, txn: TxnId, request: Message, from: Remote) {
        if self.draining {
            return self.respond(now, txn, &request, 503);
        }
        if has_sdp_body(&request) && sdp_of(&request).is_none() {
            let mut r = response_to(&request, 400, Some("Bad SDP"), None);
            self.push_common(&mut r, false);
            self.endpoint.respond(now, txn, r);
            return;
        }
        if self.interval_too_small(now, txn, &request) {
            return;
        }
        if self.is_merged(&request) {
            // §8.2.2.2: the same request reached us by another path.
            return self.respond(now, txn, &request, 482);
        }
        let handle = CallHandle(self.new_handle());
        let local_tag = self.endpoint.random_token();
        let sdp = sdp_of(&request);
        let peer_allows_update = lists_tag(&request, "Allow", "UPDATE");
        self.calls.insert(
            handle,
            Call {
                role: Role::Uas,
                state: CallState::Incoming,
                peer: from,
                invite: request.clone(),
                invite_txn: Some(txn),
                local_tag,
                dialog: None,
                early: Vec::new(),
                local_sdp: None,
                remote_sdp: sdp.clone(),
                cancel_wanted: false,
                hangup_reason: None,
                ack_bytes: None,
                pending_2xx: None,
                bye_after_ack: false,
                reinvite: None,
                reinvite_ack: None,
                last_provisional: None,
                rseq_seen: Vec::new(),
                reliable: None,
                reliable_queue: VecDeque::new(),
                next_rseq: 1,
                cancel_guard: None,
                session: None,
                retried_422: false,
                peer_allows_update: false,
                txns: 0,
            },
        );
        self.own(txn, handle, Purpose::Invite);
        // RFC 3262 §3: the first RSeq is uniform in 1..2**31-1.
        let first_rseq = (self.endpoint.random() % 0x7FFF_FFFE) as u32 + 1;
        if let Some(c) = self.calls.get_mut(&handle) {
            c.peer_allows_update = peer_allows_update;
            c.next_rseq = first_rseq;
        }
        tracing::info!(call = handle.0, remote = %from.address, "sip INVITE received");
        self.events.push_back(UaEvent::IncomingCall {
            call: handle,
            request: Box::new(request),
            sdp,
            peer: from,
        });
    }

    /// §8.2.2.2: an INVITE without To tag whose From tag, Call-ID and CSeq
    /// are those of an INVITE we are still handling, in another transaction.
    fn is_merged(&self, request: &Message) -> bool {
        let key = |m: &Message| {
            Some((
                m.call_id().ok()?.to_owned(),
                m.from().ok()?.tag()?.to_owned(),
                m.cseq().ok()?.seq,
            ))
        };
        let Some(k) = key(request) else {
            return false;
        };
        self.calls.values().any(|c| {
            c.role == Role::Uas && c.invite_txn.is_some() && key(&c.invite).as_ref() == Some(&k)
        })
    }

    fn on_bye(&mut self, now: Instant, txn: TxnId, call: CallHandle, request: &Message) {
        self.respond(now, txn, request, 200);
        // A BYE in an early dialog of our INVITE: the INVITE is cancelled
        // too (a 2xx crossing it gets ACK and BYE).
        if self
            .calls
            .get(&call)
            .is_some_and(|c| c.role == Role::Uac && c.state == CallState::Proceeding)
        {
            self.send_cancel(now, call);
        }
        // §15.1.2: a BYE ends the session; a pending INVITE gets 487.
        let pending = self.calls.get(&call).and_then(|c| {
            (c.role == Role::Uas && c.state == CallState::Incoming).then_some(c.invite_txn)?
        });
        if let Some(inv) = pending
            && let Some(c) = self.calls.get(&call)
        {
            let r = self.invite_response(c, 487, None);
            self.endpoint.respond(now, inv, r);
        }
        self.end(call, EndedBy::Remote, reason_of(request));
    }

    /// A re-INVITE or UPDATE (§14.2, RFC 3311 §5.2).
    fn on_reoffer(&mut self, now: Instant, txn: TxnId, call: CallHandle, request: &Message) {
        let is_invite = request.method() == Some(&Method::Invite);
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if is_invite
            && matches!(
                c.state,
                CallState::Incoming | CallState::Calling | CallState::Proceeding
            )
        {
            // §14.2: a second INVITE before the final response to the first.
            let mut r = response_to(request, 500, None, None);
            r.push("Retry-After", "1");
            self.endpoint.respond(now, txn, r);
            return;
        }
        if is_invite && c.reinvite.is_some() {
            // §14.2: glare with our own re-INVITE.
            return self.respond(now, txn, request, 491);
        }
        if is_invite && c.pending_2xx.is_some() {
            // §14.2: an INVITE while ours is unanswered/unacknowledged: 491... we
            // have no outstanding INVITE, but the last 2xx is not ACKed yet (§14.2: 500).
            let mut r = response_to(request, 500, None, None);
            r.push("Retry-After", "1");
            self.endpoint.respond(now, txn, r);
            return;
        }
        let local = c.local_sdp.clone();
        if self.interval_too_small(now, txn, request) {
            return;
        }
        let offer = sdp_of(request);
        if has_sdp_body(request) && offer.is_none() {
            let r = response_to(request, 400, Some("Bad SDP"), None);
            self.endpoint.respond(now, txn, r);
            return;
        }
        let body = match (&offer, &local) {
            (Some(o), Some(l)) => match answer_reoffer(l, o) {
                Some(a) => Some(a),
                None => {
                    self.stats.offers_rejected += 1;
                    return self.respond(now, txn, request, 488);
                }
            },
            // No offer: ours as it is (RFC 3264 §8: unchanged, same
            // version), the answer comes in the ACK.
            (None, Some(l)) => Some(l.clone()),
            (Some(_), None) => {
                self.stats.offers_rejected += 1;
                return self.respond(now, txn, request, 488);
            }
            (None, None) => None,
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(d) = &mut c.dialog {
            d.refresh_target(request);
        }
        if let Some(b) = &body {
            c.local_sdp = Some(b.clone());
        }
        // Only a changed description is news for the call module (a
        // session refresh repeats the same one).
        let changed = offer
            .as_ref()
            .filter(|o| c.remote_sdp.as_ref() != Some(*o))
            .cloned();
        if let Some(o) = &offer {
            c.remote_sdp = Some(o.clone());
        }
        let contact = contact_for(&self.config.contact, c.peer.transport);
        let mut r = response_to(request, 200, None, None);
        r.push("Contact", format!("<{contact}>"));
        r.push("Allow", self.allow());
        r.push("Supported", self.supported());
        // RFC 4028 §9: every re-INVITE/UPDATE refreshes the session.
        let session = self.negotiate_session(now, request, &mut r);
        if let Some(c) = self.calls.get_mut(&call)
            && session.is_some()
        {
            c.session = session;
        }
        self.push_common(&mut r, false);
        Self::set_sdp_body(&mut r, body.as_ref());
        let bytes = r.to_bytes();
        self.endpoint.respond(now, txn, r);
        if is_invite {
            self.own(txn, call, Purpose::InDialog);
            let t1 = Duration::from_millis(self.config.timers.t1_ms);
            if let Some(c) = self.calls.get_mut(&call) {
                c.pending_2xx = Some(Pending2xx {
                    bytes,
                    invite_seq: request.cseq().map(|s| s.seq).unwrap_or(0),
                    next: now + t1,
                    interval: t1,
                    give_up: now + t1 * 64,
                });
            }
        }
        if let Some(sdp) = changed {
            self.events.push_back(UaEvent::MediaUpdate { call, sdp });
        }
    }

    fn on_info(&mut self, now: Instant, txn: TxnId, call: CallHandle, request: &Message) {
        let ct = content_type(request);
        let dtmf = ct
            .as_deref()
            .filter(|t| *t == "application/dtmf-relay" || *t == "application/dtmf")
            .and_then(|t| parse_dtmf_info(t, &request.body));
        match (dtmf, ct) {
            (Some((digit, duration_ms)), _) => {
                self.respond(now, txn, request, 200);
                self.events.push_back(UaEvent::InfoDtmf {
                    call,
                    digit,
                    duration_ms,
                });
            }
            // RFC 6086 §4.2.2: an INFO without a body is a keep-alive probe.
            (None, None) if request.body.is_empty() => self.respond(now, txn, request, 200),
            (None, Some(t)) if t.starts_with("application/dtmf") => {
                self.respond(now, txn, request, 400)
            }
            (None, _) => {
                let mut r = response_to(request, 415, None, None);
                r.push("Accept", ACCEPT);
                self.endpoint.respond(now, txn, r);
            }
        }
    }

    /// The ACK for a 2xx of ours (§13.3.1.4): stop resending it.
    fn on_ack(&mut self, now: Instant, ack: Message) {
        let Some(call) = DialogId::of_request(&ack).and_then(|id| self.dialogs.get(&id).copied())
        else {
            return;
        };
        let seq = ack.cseq().map(|c| c.seq).ok();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.pending_2xx
            .as_ref()
            .is_some_and(|p| Some(p.invite_seq) == seq)
        {
            c.pending_2xx = None;
        }
        if c.state == CallState::AwaitingAck {
            c.state = CallState::Confirmed;
            if c.bye_after_ack {
                self.send_bye(now, call);
            }
        }
        // An offer in our 2xx is answered in the ACK (§13.2.2.4).
        if let Some(sdp) = sdp_of(&ack) {
            if let Some(c) = self.calls.get_mut(&call) {
                if c.ended() {
                    return;
                }
                c.remote_sdp = Some(sdp.clone());
            }
            self.events.push_back(UaEvent::MediaUpdate { call, sdp });
        }
    }

    /// §9.2: the caller cancelled; answer the INVITE 487.
    fn on_cancelled(&mut self, now: Instant, invite: TxnId, cancel: Message) {
        let Some(&(call, _)) = self.owners.get(&invite) else {
            return;
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Incoming {
            return;
        }
        let r = self.invite_response(c, 487, None);
        self.endpoint.respond(now, invite, r);
        self.end(call, EndedBy::Remote, reason_of(&cancel));
    }

    fn on_response(&mut self, now: Instant, txn: TxnId, response: Message) {
        if let Some(h) = self.options.get(&txn).copied() {
            if let Some(status @ 200..) = response.status() {
                self.events
                    .push_back(UaEvent::OptionsResult { handle: h, status });
            }
            return;
        }
        let Some(&(call, purpose)) = self.owners.get(&txn) else {
            return;
        };
        let Some(status) = response.status() else {
            return;
        };
        match purpose {
            Purpose::Invite => match status {
                100..=199 => self.on_invite_provisional(now, call, status, &response),
                200..=299 => self.on_invite_2xx(now, call, &response),
                _ => self.on_invite_failure(now, call, status, &response),
            },
            Purpose::Bye if status >= 200 => {
                // §15.1.1: whatever the final response (even 481), the session is over.
                let reason = self.calls.get(&call).and_then(|c| c.hangup_reason.clone());
                self.end(call, EndedBy::Local, reason);
            }
            Purpose::ReInvite => self.on_reinvite_response(now, call, status, &response),
            Purpose::Bye
            | Purpose::Cancel
            | Purpose::ForkBye
            | Purpose::InDialog
            | Purpose::Info
            | Purpose::Prack => {}
            Purpose::Refresh => self.on_refresh_response(now, call, status, &response),
        }
    }

    fn on_invite_provisional(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        response: &Message,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if status > 100 && response.to().is_ok_and(|t| t.tag().is_some()) {
            let tag = response.to().ok().and_then(|t| t.tag().map(str::to_owned));
            let known = c
                .early
                .iter()
                .any(|d| Some(&d.id.remote_tag) == tag.as_ref());
            let contact = contact_for(&self.config.contact, c.peer.transport);
            if !known && let Ok(d) = Dialog::uac(&c.invite, response, contact, c.peer) {
                self.dialogs.insert(d.id.clone(), call);
                c.early.push(d);
            }
        }
        if status > 100 && self.config.rel100 && lists_tag(response, "Require", "100rel") {
            match self.send_prack(now, call, response) {
                Some(txn) => self.own(txn, call, Purpose::Prack),
                // A retransmission, out of order, or without RSeq: discarded.
                None => return,
            }
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.state {
            CallState::Calling => {
                c.state = CallState::Proceeding;
                if c.cancel_wanted {
                    // §9.1: the CANCEL waited for this provisional.
                    self.send_cancel(now, call);
                    return;
                }
            }
            CallState::Proceeding => {}
            _ => return,
        }
        let tag = response.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let seen = Some((status, tag, response.body.clone()));
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if status > 100 && c.last_provisional != seen {
            c.last_provisional = seen;
            let sdp = sdp_of(response);
            if let (Some(s), Some(c)) = (&sdp, self.calls.get_mut(&call)) {
                c.remote_sdp = Some(s.clone());
            }
            self.events
                .push_back(UaEvent::Provisional { call, status, sdp });
        }
    }

    /// RFC 3262 §4: PRACK a reliable provisional that is the next in RSeq
    /// order for its early dialog; `None` for retransmissions (RSeq not
    /// above the last), gaps (wait for the missing one) and malformed ones.
    fn send_prack(&mut self, now: Instant, call: CallHandle, response: &Message) -> Option<TxnId> {
        let rseq: u32 = response.single("RSeq").ok()??.trim().parse().ok()?;
        let tag = response.to().ok()?.tag()?.to_owned();
        let c = self.calls.get_mut(&call)?;
        let last = c.rseq_seen.iter().find(|(t, _)| *t == tag).map(|(_, r)| *r);
        match last {
            Some(l) if rseq <= l || rseq != l.wrapping_add(1) => return None,
            Some(_) => {}
            None => c.rseq_seen.push((tag.clone(), rseq)),
        }
        if let Some(e) = c.rseq_seen.iter_mut().find(|(t, _)| *t == tag) {
            e.1 = rseq;
        }
        let invite_seq = c.invite.cseq().ok()?.seq;
        let d = c.early.iter_mut().find(|d| d.id.remote_tag == tag)?;
        let mut prack = d.request(Method::Prack);
        prack.push("RAck", format!("{rseq} {invite_seq} INVITE"));
        let peer = d.peer;
        if !self.config.user_agent.is_empty() {
            prack.push("User-Agent", self.config.user_agent.clone());
        }
        Some(self.endpoint.send_request(now, prack, peer))
    }

    fn on_invite_2xx(&mut self, now: Instant, call: CallHandle, response: &Message) {
        let Some(id) = DialogId::of_response(response) else {
            tracing::info!(call = call.0, "sip 2xx without To tag ignored");
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(d) = &c.dialog {
            if d.id == id {
                // §13.2.2.4: a retransmission: the same ACK again.
                if let Some(ack) = c.ack_bytes.clone() {
                    self.endpoint.retransmit(ack, c.peer);
                }
            } else {
                self.release_fork(now, call, response);
            }
            return;
        }
        let dialog = match c.early.iter().position(|d| d.id == id) {
            Some(i) => {
                let mut d = c.early.swap_remove(i);
                d.confirm(response).map(|_| d)
            }
            None => Dialog::uac(
                &c.invite,
                response,
                contact_for(&self.config.contact, c.peer.transport),
                c.peer,
            ),
        };
        let dialog = match dialog {
            Ok(d) => d,
            Err(e) => {
                // §13.2.2.4 needs a Contact to ACK to; without a dialog the
                // 2xx cannot be ACKed: the call fails.
                tracing::info!(call = call.0, fault = %e, "sip 2xx cannot make a dialog");
                self.fail(call, 502, None);
                return;
            }
        };
        // Other early dialogs of the INVITE end with the 2xx (§12.1.2 forks).
        for d in c.early.drain(..) {
            self.dialogs.remove(&d.id);
        }
        self.dialogs.insert(dialog.id.clone(), call);
        let invite_seq = c.invite.cseq().map(|s| s.seq).unwrap_or(1);
        let mut ack = dialog.ack(invite_seq);
        self.push_common(&mut ack, true);
        let peer = dialog.peer;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.dialog = Some(dialog);
        c.ack_bytes = Some(self.endpoint.send_stateless(ack, peer));
        let sdp = sdp_of(response);
        if sdp.is_some() {
            c.remote_sdp = sdp.clone();
        }
        match c.state {
            CallState::Calling | CallState::Proceeding if !c.cancel_wanted => {
                c.state = CallState::Confirmed;
                c.peer_allows_update = lists_tag(response, "Allow", "UPDATE");
                // RFC 4028 §7.2: the 2xx says whether and who refreshes;
                // without a refresher the UAC does.
                if self.config.session_expires_s.is_some() {
                    c.session = session_expires(response).map(|(secs, r)| {
                        SessionTimer::start(now, secs, r.unwrap_or(Role::Uac) == Role::Uac)
                    });
                }
                tracing::info!(call = call.0, "sip call answered");
                self.events.push_back(UaEvent::Answered { call, sdp });
            }
            // §9.1: the 2xx crossed our CANCEL (or beat it): ACK, then BYE.
            _ => self.send_bye(now, call),
        }
    }

    /// §14.1: the response to our re-INVITE.
    fn on_reinvite_response(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        response: &Message,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.ended() || status < 200 {
            return;
        }
        let seq = response.cseq().map(|s| s.seq).unwrap_or(0);
        if status >= 300 {
            if c.reinvite.take().is_none() {
                return;
            }
            if status == 481 || status == 408 {
                // §14.1: the dialog is gone.
                self.send_bye(now, call);
                let by = if status == 408 {
                    EndedBy::Timeout
                } else {
                    EndedBy::Remote
                };
                self.end(call, by, None);
            } else {
                self.events
                    .push_back(UaEvent::ReinviteFailed { call, status });
            }
            return;
        }
        let Some((offer_seq, offer)) = c.reinvite.take() else {
            // A retransmitted 2xx: the same ACK again (§13.2.2.4).
            if let Some((_, ack)) = c.reinvite_ack.clone().filter(|(s, _)| *s == seq) {
                self.endpoint.retransmit(ack, c.peer);
            }
            return;
        };
        let Some(d) = &mut c.dialog else {
            return;
        };
        d.refresh_target(response);
        let mut ack = d.ack(offer_seq);
        let peer = d.peer;
        if !self.config.user_agent.is_empty() {
            ack.push("User-Agent", self.config.user_agent.clone());
        }
        let bytes = self.endpoint.send_stateless(ack, peer);
        c.reinvite_ack = Some((offer_seq, bytes));
        c.local_sdp = Some(offer);
        if self.config.session_expires_s.is_some()
            && let Some((secs, r)) = session_expires(response)
        {
            // We were the UAC of this re-INVITE (RFC 4028 §7.2).
            c.session = Some(SessionTimer::start(
                now,
                secs,
                r.unwrap_or(Role::Uac) == Role::Uac,
            ));
        }
        if let Some(sdp) = sdp_of(response)
            && c.remote_sdp.as_ref() != Some(&sdp)
        {
            c.remote_sdp = Some(sdp.clone());
            self.events.push_back(UaEvent::MediaUpdate { call, sdp });
        }
    }

    /// §13.2.2.4: a 2xx from a further fork: ACK it and send BYE.
    fn release_fork(&mut self, now: Instant, call: CallHandle, response: &Message) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Ok(mut d) = Dialog::uac(
            &c.invite,
            response,
            contact_for(&self.config.contact, c.peer.transport),
            c.peer,
        ) else {
            return;
        };
        let invite_seq = c.invite.cseq().map(|s| s.seq).unwrap_or(1);
        let peer = d.peer;
        let ack = d.ack(invite_seq);
        self.endpoint.send_stateless(ack, peer);
        let bye = d.request(Method::Bye);
        let txn = self.endpoint.send_request(now, bye, peer);
        self.own(txn, call, Purpose::ForkBye);
        self.stats.forks_released += 1;
        tracing::info!(call = call.0, tag = %d.id.remote_tag, "sip forked 2xx released");
    }

    /// RFC 4028 §7.3 (§6): after a 422, INVITE again (same dialog
    /// identifiers, CSeq one up) with Session-Expires raised to its Min-SE.
    /// Once per call. True if the retry went out.
    fn retry_after_422(&mut self, now: Instant, call: CallHandle, response: &Message) -> bool {
        let Some(min_se) = response
            .single("Min-SE")
            .ok()
            .flatten()
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            return false;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let asked = session_expires(&c.invite).map(|(s, _)| s);
        if c.retried_422 || self.config.session_expires_s.is_none() || asked >= Some(min_se) {
            return false;
        }
        let Ok(cseq) = c.invite.cseq() else {
            return false;
        };
        let mut invite = c.invite.clone();
        invite
            .headers
            .retain(|h| !h.is("CSeq") && !h.is("Session-Expires") && !h.is("Min-SE"));
        invite.push("CSeq", format!("{} INVITE", cseq.seq.wrapping_add(1)));
        invite.push("Session-Expires", min_se.to_string());
        invite.push("Min-SE", min_se.to_string());
        c.invite = invite.clone();
        c.retried_422 = true;
        c.state = CallState::Calling;
        c.last_provisional = None;
        c.rseq_seen.clear();
        let peer = c.peer;
        let txn = self.endpoint.send_request(now, invite, peer);
        if let Some(c) = self.calls.get_mut(&call) {
            c.invite_txn = Some(txn);
        }
        self.own(txn, call, Purpose::Invite);
        tracing::info!(
            call = call.0,
            min_se,
            "sip 422: INVITE again with a longer session interval"
        );
        true
    }

    fn on_invite_failure(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        response: &Message,
    ) {
        if status == 422
            && self.calls.get(&call).is_some_and(|c| {
                matches!(c.state, CallState::Calling | CallState::Proceeding) && !c.cancel_wanted
            })
            && self.retry_after_422(now, call, response)
        {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        for d in c.early.drain(..) {
            self.dialogs.remove(&d.id);
        }
        match c.state {
            CallState::Cancelling => {
                let reason = c.hangup_reason.clone();
                self.end(call, EndedBy::Local, reason);
            }
            CallState::Calling | CallState::Proceeding if c.cancel_wanted => {
                let reason = c.hangup_reason.clone();
                self.end(call, EndedBy::Local, reason);
            }
            CallState::Calling | CallState::Proceeding => {
                self.fail(call, status, reason_of(response))
            }
            _ => {}
        }
    }

    fn on_txn_failure(&mut self, now: Instant, txn: TxnId, status: u16) {
        if let Some(h) = self.options.get(&txn).copied() {
            self.events
                .push_back(UaEvent::OptionsResult { handle: h, status });
            return;
        }
        let Some(&(call, purpose)) = self.owners.get(&txn) else {
            return;
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let by = if status == 408 {
            EndedBy::Timeout
        } else {
            EndedBy::TransportError
        };
        match (purpose, c.role, c.state) {
            (Purpose::Invite, Role::Uac, CallState::Calling | CallState::Proceeding)
                if !c.cancel_wanted =>
            {
                self.fail(call, status, None)
            }
            (
                Purpose::Invite,
                Role::Uac,
                CallState::Calling | CallState::Proceeding | CallState::Cancelling,
            ) => {
                let reason = c.hangup_reason.clone();
                self.end(call, EndedBy::Local, reason);
            }
            (Purpose::Invite, Role::Uas, CallState::Incoming | CallState::AwaitingAck) => {
                self.end(call, by, None)
            }
            (Purpose::Bye, _, _) => {
                let reason = c.hangup_reason.clone();
                self.end(call, EndedBy::Local, reason);
            }
            (Purpose::ReInvite, _, CallState::Confirmed) => {
                // §14.1: no answer to our re-INVITE: the dialog is gone.
                if let Some(c) = self.calls.get_mut(&call) {
                    c.reinvite = None;
                }
                self.send_bye(now, call);
                self.end(call, by, None);
            }
            (Purpose::InDialog, _, CallState::Confirmed) if status == 503 => {
                // The peer is unreachable: the session is gone too.
                self.send_bye(now, call);
                self.end(call, by, None);
            }
            _ => {}
        }
    }

    /// §13.2.2.4: a 2xx with no transaction left: re-send the ACK of its dialog.
    fn on_stray_2xx(&mut self, response: Message) {
        let call = DialogId::of_response(&response).and_then(|id| self.dialogs.get(&id).copied());
        let seq = response.cseq().map(|s| s.seq).ok();
        let ack = call.and_then(|h| self.calls.get(&h)).and_then(|c| {
            let initial = c.invite.cseq().ok().map(|s| s.seq);
            let ack = match &c.reinvite_ack {
                Some((s, bytes)) if Some(*s) == seq => Some(bytes.clone()),
                _ if initial == seq => c.ack_bytes.clone(),
                _ => None,
            };
            Some((ack?, c.peer))
        });
        match ack {
            Some((ack, peer)) => self.endpoint.retransmit(ack, peer),
            _ => {
                self.stats.stray_2xx += 1;
                tracing::debug!("sip 2xx for no dialog dropped");
            }
        }
    }
}

/// Fuzz entry point: `data` split at NUL bytes is a sequence of messages
/// from one peer, 10 ms apart; incoming calls are rung, answered and hung
/// up; then every timer runs out. Must never panic, and must end idle
/// (nothing leaks whatever the peer sends).
#[doc(hidden)]
pub fn fuzz_sip_ua(data: &[u8]) {
    let mut ua = UserAgent::new(UaConfig {
        timers: TimerValues::default(),
        limits: Limits::default(),
        sent_by: "192.0.2.1:5060".into(),
        sent_by_tls: None,
        contact: Uri::parse("sip:gw@192.0.2.1:5060").unwrap_or(Uri::Other {
            scheme: "sip".into(),
            rest: String::new(),
        }),
        call_id_host: "192.0.2.1".into(),
        user_agent: String::new(),
        seed: 1,
        rel100: true,
        session_expires_s: Some(1800),
        min_se_s: 90,
    });
    let peer = Remote {
        address: std::net::SocketAddr::from(([192, 0, 2, 9], 5060)),
        transport: Transport::Udp,
    };
    let local = LocalMedia {
        origin: sdp::Origin {
            username: "-".into(),
            session_id: 1,
            version: 1,
            address: std::net::IpAddr::from([192, 0, 2, 1]),
        },
        address: std::net::IpAddr::from([192, 0, 2, 1]),
        port: 40_000,
        codecs: vec!["PCMA".into(), "PCMU".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: Direction::SendRecv,
    };
    let mut now = Instant::now();
    let mut calls = Vec::new();
    for msg in data.split(|b| *b == 0) {
        ua.handle_input(now, msg, peer);
        while ua.poll_transmit().is_some() {}
        while let Some(ev) = ua.poll_event() {
            if let UaEvent::IncomingCall { call, sdp, .. } = ev {
                let answer = sdp.map(|o| sdp::answer(&o, &local));
                let _ = ua.send_provisional(now, call, 180, None);
                let _ = ua.accept(now, call, answer.as_ref());
                calls.push(call);
            }
        }
        now += Duration::from_millis(10);
        ua.handle_timeout(now);
    }
    for call in calls {
        let _ = ua.hangup(now, call, None);
    }
    for _ in 0..10_000 {
        while ua.poll_transmit().is_some() {}
        while ua.poll_event().is_some() {}
        match ua.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                ua.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(ua.is_idle(), "user agent leaked state");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn ua() -> UserAgent {
        UserAgent::new(UaConfig {
            timers: TimerValues::default(),
            limits: Limits::default(),
            sent_by: "192.0.2.1:5060".into(),
            sent_by_tls: None,
            contact: Uri::parse("sip:gw@192.0.2.1:5060").unwrap(),
            call_id_host: "192.0.2.1".into(),
            user_agent: String::new(),
            seed: 3,
            rel100: false,
            session_expires_s: None,
            min_se_s: 90,
        })
    }

    const PEER: &str = "192.0.2.9:5060";

    fn media() -> LocalMedia {
        LocalMedia {
            origin: sdp::Origin {
                username: "-".into(),
                session_id: 7,
                version: 1,
                address: "192.0.2.1".parse().unwrap(),
            },
            address: "192.0.2.1".parse().unwrap(),
            port: 40_000,
            codecs: vec!["PCMA".into()],
            telephone_event: false,
            ptime_ms: 20,
            direction: Direction::SendRecv,
        }
    }

    #[test]
    fn late_offer_invite_gets_our_offer_and_the_answer_comes_with_the_ack() {
        let mut ua = ua();
        let now = Instant::now();
        let peer = Remote {
            address: PEER.parse().unwrap(),
            transport: Transport::Udp,
        };
        let invite = "INVITE sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKlate\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@192.0.2.9>;tag=c9\r\nTo: <sip:gw@192.0.2.1>\r\nCall-ID: late@core\r\n\
CSeq: 1 INVITE\r\nContact: <sip:core@192.0.2.9:5060>\r\nContent-Length: 0\r\n\r\n";
        ua.handle_input(now, invite.as_bytes(), peer);
        let Some(UaEvent::IncomingCall {
            call, sdp: None, ..
        }) = ua.poll_event()
        else {
            panic!("no offerless IncomingCall")
        };
        let offer = sdp::offer(&media());
        ua.accept(now, call, Some(&offer)).unwrap();
        let ok = std::iter::from_fn(|| ua.poll_transmit())
            .filter_map(|t| Message::parse(&t.bytes, Framing::Datagram, Limits::default()).ok())
            .find(|m| m.status() == Some(200))
            .unwrap();
        assert_eq!(sdp_of(&ok), Some(offer.clone()));
        let tag = ok.to().unwrap().tag().unwrap().to_owned();
        let answer = sdp::answer(
            &offer,
            &LocalMedia {
                port: 30_000,
                ..media()
            },
        );
        let body = answer.to_text();
        let ack = format!(
            "ACK sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKack\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@192.0.2.9>;tag=c9\r\nTo: <sip:gw@192.0.2.1>;tag={tag}\r\n\
Call-ID: late@core\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        ua.handle_input(now, ack.as_bytes(), peer);
        assert_eq!(
            ua.poll_event(),
            Some(UaEvent::MediaUpdate { call, sdp: answer })
        );
        // The ACK stopped the 2xx retransmissions: only session-less waits remain.
        assert_eq!(
            ua.calls.get(&call).map(|c| c.state),
            Some(CallState::Confirmed)
        );
        assert!(ua.calls.get(&call).is_some_and(|c| c.pending_2xx.is_none()));
    }

    proptest::proptest! {
        #[test]
        fn dtmf_info_never_panics_and_reads_what_we_send(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            digit in proptest::sample::select(&['0', '5', '9', '*', '#', 'A', 'D'][..]),
            duration in 0u32..100_000,
        ) {
            let _ = parse_dtmf_info("application/dtmf-relay", &body);
            let _ = parse_dtmf_info("application/dtmf", &body);
            let ours = format!("Signal={digit}\r\nDuration={duration}\r\n");
            proptest::prop_assert_eq!(
                parse_dtmf_info("application/dtmf-relay", ours.as_bytes()),
                Some((digit, Some(duration)))
            );
        }
    }

    #[test]
    fn merged_invite_gets_482() {
        let mut ua = ua();
        let now = Instant::now();
        let peer = Remote {
            address: PEER.parse().unwrap(),
            transport: Transport::Udp,
        };
        let invite = |branch: &str| {
            format!(
                "INVITE sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@192.0.2.9>;tag=c9\r\nTo: <sip:gw@192.0.2.1>\r\nCall-ID: m@core\r\n\
CSeq: 1 INVITE\r\nContact: <sip:core@192.0.2.9:5060>\r\nContent-Length: 0\r\n\r\n"
            )
        };
        ua.handle_input(now, invite("z9hG4bKp1").as_bytes(), peer);
        assert!(matches!(
            ua.poll_event(),
            Some(UaEvent::IncomingCall { .. })
        ));
        ua.handle_input(now, invite("z9hG4bKp2").as_bytes(), peer);
        assert_eq!(ua.poll_event(), None);
        let statuses: Vec<u16> = std::iter::from_fn(|| ua.poll_transmit())
            .filter_map(|t| Message::parse(&t.bytes, Framing::Datagram, Limits::default()).ok())
            .filter_map(|m| m.status())
            .collect();
        assert_eq!(statuses, [100, 100, 482]);
    }

    #[test]
    fn dtmf_info_bodies() {
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some(('5', Some(160)))
        );
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", b"Signal= 11\r\n"),
            Some(('#', None))
        );
        assert_eq!(parse_dtmf_info("application/dtmf", b"*"), Some(('*', None)));
        assert_eq!(parse_dtmf_info("application/dtmf-relay", b"Signal=X"), None);
        assert_eq!(parse_dtmf_info("application/dtmf-relay", b"\xff"), None);
    }
}
