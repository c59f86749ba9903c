//! The interworking core: binds each Q.931 call to a SIP call and a media
//! channel. Sans-IO (DESIGN.md §4); see the contract on [`CallManager`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use tracing::{info, warn};

pub use super::action::{Action, InviteParams, IsdnCommand, SipAction, SipPlaceError, Token};
pub use super::manager_config::{
    CallCounters, CallManagerConfig, CoreRoute, DigitLimits, RtpTimeoutAction,
};

use super::cause_map::{CauseMap, Reason, Rule, q850_from_reasons};
use super::cdr::{self, CdrRecord, Direction, Quality};
use super::identity;
use super::routing::Router;
use crate::isdn::cause::Cause;
use crate::isdn::q931::{
    self, BearerCapability, CallId, ChannelState, ChannelTable, PartyNumber, PlaceCall,
    RestartClass,
};
use crate::isdn::task::TaskError;
use crate::media::control::{self as media, ChannelId, Codec, ConnectParams, DigitString};
use crate::media::engine::rtp_port;
use crate::media::quality::{Conditions, EModel, G711_PLC, mos_from_r};
use crate::sip::header::NameAddr;
use crate::sip::sdp::{self, LocalMedia, Origin, Sdp};
use crate::sip::text::Params;
use crate::sip::ua::{CallHandle, EndedBy, UaEvent};

/// Q.850 location used when a Q.931 event gives no location: "public
/// network serving the local user" (what an exchange sends).
const LOCATION_PUBLIC_LOCAL: u8 = 2;

/// Who started the clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Exchange,
    Core,
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsdnLeg {
    /// No Q.931 call (refused before placing, or placing failed).
    None,
    Placing(Token),
    /// A live Q.931 call; `responded`: the peer answered the SETUP (or the
    /// call came from the exchange).
    Up {
        id: CallId,
        responded: bool,
    },
    Clearing(CallId),
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SipLeg {
    None,
    Placing(Token),
    /// Our INVITE is out (exchange -> core), no 2xx yet.
    Outgoing(CallHandle),
    /// An INVITE from the core not yet answered.
    Incoming(CallHandle),
    Confirmed(CallHandle),
    Clearing(CallHandle),
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MediaLeg {
    Idle,
    Connected(ChannelId, SocketAddr),
    AwaitingSummary(ChannelId, Instant),
    Done,
}

#[derive(Debug)]
struct Call {
    key: u64,
    direction: Direction,
    span: u8,
    timeslot: Option<u8>,
    isdn: IsdnLeg,
    sip: SipLeg,
    media: MediaLeg,
    called: String,
    calling: String,
    group: String,
    /// The core peer the SIP call went to (or came from), once known.
    peer: Option<String>,
    place: Option<PlaceCall>,
    spans_left: Vec<u8>,
    remote_sdp: Option<Sdp>,
    local_sdp: Option<Sdp>,
    /// Our SDP was the offer (so the remote one is the answer).
    local_is_offer: bool,
    /// Exchange side told of alerting / early media; core side told of 18x.
    isdn_alerted: bool,
    isdn_progress: bool,
    sip_ringing: bool,
    sip_early_media: bool,
    got_provisional: bool,
    setup_at: Instant,
    alerting_at: Option<Instant>,
    answer_at: Option<Instant>,
    release_at: Option<Instant>,
    cleared_by: Option<Side>,
    cause: Option<u8>,
    sip_status: Option<u16>,
    /// The Reason header value for the SIP side's clearing.
    reason: Option<String>,
    quality: Option<Quality>,
    no_answer_at: Option<Instant>,
    last_enquiry: Option<Instant>,
}

impl Call {
    fn clearing(&self) -> bool {
        self.cleared_by.is_some()
    }

    fn channel(&self) -> Option<ChannelId> {
        Some(ChannelId {
            span: u16::from(self.span),
            timeslot: self.timeslot?,
        })
    }

    fn finished(&self) -> bool {
        matches!(self.isdn, IsdnLeg::None | IsdnLeg::Gone)
            && matches!(self.sip, SipLeg::None | SipLeg::Gone)
            && matches!(self.media, MediaLeg::Idle | MediaLeg::Done)
    }

    fn isdn_alive(&self) -> bool {
        matches!(
            self.isdn,
            IsdnLeg::Up { .. } | IsdnLeg::Clearing(_) | IsdnLeg::Placing(_)
        )
    }
}

/// A call in progress, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The CDR's `call_id` (`<start unix ms>-<call>`; `call=<call>` in logs).
    pub id: String,
    pub direction: Direction,
    /// As dialled (the status redacts them when the site asks).
    pub calling: String,
    pub called: String,
    pub span: u8,
    pub timeslot: Option<u8>,
    /// The core peer, once known.
    pub peer: Option<String>,
    /// `setup`, `alerting`, `active` or `clearing`.
    pub state: &'static str,
    pub started: Instant,
}

/// The call module's core.
///
/// # Contract
///
/// In (each with `now`; call order is event order):
/// - `handle_isdn(now, span, q931::Event)` for every span event;
///   `handle_isdn_placed(token, Result<CallId, TaskError>)` with the reply
///   of an [`IsdnCommand::PlaceCall`] (events of the new call that arrive
///   before the reply are held and replayed, later events of the span that
///   depend on them wait behind them); `handle_isdn_refused(span, id,
///   error)` with any other command's refusal; `handle_channel_table(span,
///   &ChannelTable)` whenever a span's status changes (the audit's input).
/// - `handle_sip(now, UaEvent)` for every user-agent event;
///   `handle_sip_placed(now, token, Result<CallHandle, SipPlaceError>)`
///   with the reply of a [`SipAction::PlaceCall`] (likewise held and
///   replayed); `handle_sip_peer(call, peer)` when the SIP layer names the
///   peer; `handle_peer(group, peer, up)` on each peer health change.
/// - `handle_media(now, media::control::Event)`.
/// - `handle_timeout(now)` when `poll_timeout()` is due; `set_draining`.
///
/// Out: `poll_action()` until `None` after every input. Replies to the
/// other commands (a refused `Alerting`, a `Hangup` on a dead handle) need
/// not be fed back: the terminal events (`Released`, `Ended`/`Failed`,
/// `CallSummary`) drive the clearing, and a reply that never comes is
/// covered by the audit; a Q.931 "unknown call" refusal fed back lets the
/// manager forget a leg Q.931 has forgotten (the only other ways a Q.931
/// leg is forgotten are its `Released` and a RESTART of its channel).
///
/// A call is forgotten, with exactly one [`Action::Cdr`], when its Q.931
/// call has been released, its SIP call has ended and its media session has
/// been summarised (or `summary_wait` passed).
pub struct CallManager {
    cfg: CallManagerConfig,
    router: Router,
    calls: HashMap<u64, Call>,
    by_isdn: HashMap<(u8, CallId), u64>,
    by_sip: HashMap<CallHandle, u64>,
    by_token: HashMap<Token, u64>,
    next_key: u64,
    actions: VecDeque<Action>,
    draining: bool,
    peers: HashMap<String, HashMap<String, bool>>,
    /// Spans busied out (see [`CallManager::handle_peer`]).
    busied_out: HashSet<u8>,
    links: HashMap<u8, bool>,
    tables: HashMap<u8, ChannelTable>,
    suspects: HashSet<(u8, u8)>,
    /// Events held until a PlaceCall reply names their call, in arrival
    /// order (see `handle_isdn` / `handle_sip`).
    early_isdn: VecDeque<(u8, q931::Event)>,
    early_sip: VecDeque<UaEvent>,
    next_audit: Instant,
    /// Unix milliseconds at `epoch` (CDR times).
    epoch: Instant,
    epoch_unix_ms: u64,
    pub counters: CallCounters,
}

impl CallManager {
    /// `now` and `unix_ms` are the same moment (CDR times are wall time).
    pub fn new(cfg: CallManagerConfig, now: Instant, unix_ms: u64) -> CallManager {
        let router = Router::with_limits(cfg.routes.clone(), cfg.route_digits.clone());
        let next_audit = now + cfg.audit_interval;
        CallManager {
            cfg,
            router,
            calls: HashMap::new(),
            by_isdn: HashMap::new(),
            by_sip: HashMap::new(),
            by_token: HashMap::new(),
            next_key: 1,
            actions: VecDeque::new(),
            draining: false,
            peers: HashMap::new(),
            busied_out: HashSet::new(),
            links: HashMap::new(),
            tables: HashMap::new(),
            suspects: HashSet::new(),
            early_isdn: VecDeque::new(),
            early_sip: VecDeque::new(),
            next_audit,
            epoch: now,
            epoch_unix_ms: unix_ms,
            counters: CallCounters::default(),
        }
    }

    /// Calls not yet forgotten.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The calls not yet forgotten, oldest first.
    pub fn calls_in_progress(&self) -> Vec<CallInfo> {
        let mut v: Vec<&Call> = self.calls.values().collect();
        v.sort_by_key(|c| c.key);
        v.into_iter()
            .map(|c| CallInfo {
                id: self.call_id(c.key),
                direction: c.direction,
                calling: c.calling.clone(),
                called: c.called.clone(),
                span: c.span,
                timeslot: c.timeslot,
                peer: c.peer.clone(),
                state: if c.clearing() {
                    "clearing"
                } else if c.answer_at.is_some() {
                    "active"
                } else if c.alerting_at.is_some() {
                    "alerting"
                } else {
                    "setup"
                },
                started: c.setup_at,
            })
            .collect()
    }

    /// The id of call `key` in CDRs and the status.
    fn call_id(&self, key: u64) -> String {
        format!("{}-{}", self.epoch_unix_ms, key)
    }

    /// Events held for a PlaceCall reply (see `handle_isdn`, `handle_sip`).
    pub fn held_events(&self) -> usize {
        self.early_isdn.len() + self.early_sip.len()
    }

    /// No call, no index entry: nothing leaked.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.early_isdn.is_empty()
            && self.early_sip.is_empty()
            && self.by_isdn.is_empty()
            && self.by_sip.is_empty()
            && self.by_token.is_empty()
    }

    /// While set, new calls both ways are refused (drain_cause / drain_status).
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().flat_map(|c| {
            let summary = match c.media {
                MediaLeg::AwaitingSummary(_, t) => Some(t),
                _ => None,
            };
            [c.no_answer_at, summary].into_iter().flatten()
        });
        calls.chain([self.next_audit]).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for key in keys {
            let Some(c) = self.calls.get_mut(&key) else {
                continue;
            };
            if c.no_answer_at.is_some_and(|t| t <= now) {
                c.no_answer_at = None;
                self.counters.no_answer_timeouts += 1;
                info!(call = key, span = c.span, ts = ?c.timeslot, "no answer: clearing with cause 19");
                self.clear(now, key, Side::Gateway, Cause::NO_ANSWER.0, None);
            }
            if let Some(c) = self.calls.get_mut(&key)
                && let MediaLeg::AwaitingSummary(ch, t) = c.media
                && t <= now
            {
                self.counters.summaries_missing += 1;
                warn!(call = key, channel = %ch, "no media summary: CDR without quality");
                c.media = MediaLeg::Done;
                self.maybe_finish(now, key);
            }
        }
        if self.next_audit <= now {
            self.next_audit = now + self.cfg.audit_interval;
            self.audit(now);
        }
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn isdn(&mut self, span: u8, command: IsdnCommand) {
        self.push(Action::Isdn { span, command });
    }

    fn cause_map(&self, span: u8) -> &CauseMap {
        self.cfg
            .trunk_cause_maps
            .get(&span)
            .unwrap_or(&self.cfg.cause_map)
    }

    fn new_call(&mut self, now: Instant, direction: Direction, span: u8) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        match direction {
            Direction::ExchangeToCore => self.counters.created_exchange_to_core += 1,
            Direction::CoreToExchange => self.counters.created_core_to_exchange += 1,
        }
        self.calls.insert(
            key,
            Call {
                key,
                direction,
                span,
                timeslot: None,
                isdn: IsdnLeg::None,
                sip: SipLeg::None,
                media: MediaLeg::Idle,
                called: String::new(),
                calling: String::new(),
                group: String::new(),
                peer: None,
                place: None,
                spans_left: Vec::new(),
                remote_sdp: None,
                local_sdp: None,
                local_is_offer: false,
                isdn_alerted: false,
                isdn_progress: false,
                sip_ringing: false,
                sip_early_media: false,
                got_provisional: false,
                setup_at: now,
                alerting_at: None,
                answer_at: None,
                release_at: None,
                cleared_by: None,
                cause: None,
                sip_status: None,
                reason: None,
                quality: None,
                no_answer_at: None,
                last_enquiry: None,
            },
        );
        key
    }

    fn token(&mut self, key: u64) -> Token {
        let t = self.next_key;
        self.next_key += 1;
        self.by_token.insert(t, key);
        t
    }

    fn local_media(&self, span: u8, ts: u8, key: u64) -> Option<LocalMedia> {
        let port = rtp_port(self.cfg.rtp_port_base, u16::from(span), ts)?;
        Some(LocalMedia {
            origin: Origin {
                username: "tdmgw".into(),
                session_id: self.cfg.seed.wrapping_add(key),
                version: 1,
                address: self.cfg.media_ip,
            },
            address: self.cfg.media_ip,
            port,
            codecs: self.cfg.codecs.clone(),
            telephone_event: self.cfg.telephone_event,
            ptime_ms: self.cfg.ptime_ms,
            direction: sdp::Direction::SendRecv,
        })
    }

    // ----- peers, links, draining ------------------------------------------

    /// A core peer of `group` (named by its address text) went up or down.
    ///
    /// With `busy_out` configured, a span every one of whose routes' peer
    /// groups is down is busied out ([`IsdnCommand::BusyOut`]: its idle
    /// B-channels, and channels as their calls end, go out of service in
    /// Q.931, so the exchange's SETUPs are refused at once and the gateway
    /// hunts none of them) and back in service when a peer of one of those
    /// groups comes up. Without it, SETUPs for a route whose group is down
    /// are refused with `group_down_cause` (34) all the same.
    pub fn handle_peer(&mut self, group: &str, peer: &str, up: bool) {
        self.peers
            .entry(group.to_owned())
            .or_default()
            .insert(peer.to_owned(), up);
        if self.cfg.busy_out {
            self.review_busy_out();
        }
    }

    /// The spans the manager knows of: core routes' and audited ones.
    fn known_spans(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self
            .cfg
            .core_routes
            .iter()
            .flat_map(|r| r.spans.iter().copied())
            .chain(self.tables.keys().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether every peer group a span's routes use is down (a span no
    /// route applies to has nothing to protect: never busied out).
    fn span_unreachable(&self, span: u8) -> bool {
        let mut groups = self
            .cfg
            .routes
            .iter()
            .filter(|r| r.span.is_none_or(|s| s == span))
            .map(|r| r.peer_group.as_str())
            .peekable();
        groups.peek().is_some() && groups.all(|g| self.group_down(g))
    }

    fn review_busy_out(&mut self) {
        for span in self.known_spans() {
            let down = self.span_unreachable(span);
            if down == self.busied_out.contains(&span) {
                continue;
            }
            if down {
                self.busied_out.insert(span);
                self.counters.busy_outs += 1;
                warn!(
                    span,
                    "busy-out: no peer of the span's core groups is up: B-channels out of service"
                );
            } else {
                self.busied_out.remove(&span);
                warn!(
                    span,
                    "busy-out ended: a core peer is up: B-channels back in service"
                );
            }
            self.isdn(span, IsdnCommand::BusyOut { on: down });
        }
    }

    /// Spans busied out now.
    pub fn busied_out(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.busied_out.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Every peer of the group that has been reported is down (a group with
    /// no report is taken as up: the peer table starts its peers up).
    pub fn group_down(&self, group: &str) -> bool {
        self.peers
            .get(group)
            .is_some_and(|p| !p.is_empty() && p.values().all(|up| !up))
    }

    // ----- ISDN input ------------------------------------------------------

    /// One event of span `span`'s Q.931.
    ///
    /// An event for a call id the manager does not know yet, while a SETUP
    /// of this span awaits its [`IsdnCommand::PlaceCall`] reply, is held
    /// (bounded) and replayed when the reply names that id: the shell need
    /// not order replies before events. A later event of the span that
    /// depends on a held one waits behind it (same call, or same channel:
    /// a channel freed by one call and taken by the next must be seen in
    /// that order; span-wide events wait for everything held), so what
    /// the manager applies is always in Q.931's order.
    pub fn handle_isdn(&mut self, now: Instant, span: u8, event: q931::Event) {
        if self.isdn_blocked(span, &event, self.early_isdn.len()) {
            if self.early_isdn.len() >= HELD_EVENTS_MAX {
                self.force_oldest_isdn(now);
            }
            self.early_isdn.push_back((span, event));
            self.replay_isdn(now, span);
            return;
        }
        self.dispatch_isdn(now, span, event);
    }

    /// Whether `event` must wait: its call is not known while a SETUP of
    /// the span awaits its reply, or one of the first `before` held events
    /// of the span is about the same call or channel.
    fn isdn_blocked(&self, span: u8, event: &q931::Event, before: usize) -> bool {
        let id = isdn_event_call(event);
        let unplaced = id.is_some_and(|id| !self.by_isdn.contains_key(&(span, id)))
            && self.isdn_placing_on(span);
        if unplaced {
            return true;
        }
        let channels = self.event_channels(span, event);
        self.early_isdn
            .iter()
            .take(before)
            .filter(|(s, _)| *s == span)
            .any(|(_, held)| {
                let held_id = isdn_event_call(held);
                (id.is_none() && !matches!(event, q931::Event::IncomingCall { .. }))
                    || (id.is_some() && held_id == id)
                    || channels
                        .iter()
                        .any(|ts| self.event_channels(span, held).contains(ts))
            })
    }

    /// The channels an event is about: the one it names, or that of the
    /// call it is for (as the manager knows it).
    fn event_channels(&self, span: u8, event: &q931::Event) -> Vec<u8> {
        use q931::Event as E;
        match event {
            E::IncomingCall { channel, .. }
            | E::SetupAcknowledged { channel, .. }
            | E::Proceeding { channel, .. }
            | E::ChannelSelected { channel, .. } => vec![*channel],
            E::ChannelsRestarted { timeslots } | E::RestartReceived { timeslots, .. } => {
                timeslots.clone()
            }
            _ => isdn_event_call(event)
                .and_then(|id| self.by_isdn.get(&(span, id)))
                .and_then(|k| self.calls.get(k))
                .and_then(|c| c.timeslot)
                .into_iter()
                .collect(),
        }
    }

    fn isdn_placing_on(&self, span: u8) -> bool {
        self.calls
            .values()
            .any(|c| c.span == span && matches!(c.isdn, IsdnLeg::Placing(_)))
    }

    /// Applies the span's held events, oldest first, that no longer wait
    /// (their call is known, or nothing of the span is being placed any
    /// more: strays then; and nothing earlier still held is about them).
    fn replay_isdn(&mut self, now: Instant, span: u8) {
        let mut i = 0;
        while i < self.early_isdn.len() {
            let (s, e) = &self.early_isdn[i];
            if *s != span || self.isdn_blocked(span, e, i) {
                i += 1;
                continue;
            }
            if let Some((s, e)) = self.early_isdn.remove(i) {
                self.dispatch_isdn(now, s, e);
            }
            // Applying it may release what waited behind it: start over.
            i = 0;
        }
    }

    /// The held queue is full (a PlaceCall reply never came): apply the
    /// oldest event as it is (a stray if its call is unknown).
    fn force_oldest_isdn(&mut self, now: Instant) {
        if let Some((span, e)) = self.early_isdn.pop_front() {
            self.counters.held_overflows += 1;
            warn!(
                span,
                "held Q.931 events full: the oldest is applied unmatched"
            );
            self.dispatch_isdn(now, span, e);
        }
    }

    fn dispatch_isdn(&mut self, now: Instant, span: u8, event: q931::Event) {
        use q931::Event as E;
        match event {
            E::IncomingCall {
                id,
                called,
                calling,
                bearer,
                channel,
            } => self.on_incoming_setup(now, span, id, called, calling, bearer, channel),
            E::SetupAcknowledged { id, channel }
            | E::Proceeding { id, channel }
            | E::ChannelSelected { id, channel } => self.on_isdn_channel(span, id, channel),
            E::Alerting { id } => self.on_isdn_alerting(now, span, id),
            E::Progress { id, description } => self.on_isdn_progress(now, span, id, description),
            E::Connected { id } => self.on_isdn_connected(now, span, id),
            E::Disconnected { id, cause, .. } => self.on_isdn_clearing(now, span, id, cause, false),
            E::Released { id, cause, .. } => self.on_isdn_clearing(now, span, id, cause, true),
            E::ChannelsRestarted { timeslots } | E::RestartReceived { timeslots, .. } => {
                self.on_channels_restarted(now, span, &timeslots)
            }
            E::RestartSent { .. } | E::RestartFailed { .. } => {}
            E::LinkUp => {
                self.links.insert(span, true);
            }
            E::LinkDown => {
                self.links.insert(span, false);
            }
        }
    }

    fn key_of_isdn(&mut self, span: u8, id: CallId) -> Option<u64> {
        let k = self.by_isdn.get(&(span, id)).copied();
        if k.is_none() {
            self.counters.stray_events += 1;
            info!(
                span,
                call_id = id.0,
                "q931 event for a call the manager does not know"
            );
        }
        k
    }

    /// The reply to [`IsdnCommand::PlaceCall`].
    pub fn handle_isdn_placed(
        &mut self,
        now: Instant,
        token: Token,
        result: Result<CallId, TaskError>,
    ) {
        let span = self
            .by_token
            .get(&token)
            .and_then(|k| self.calls.get(k))
            .map(|c| c.span);
        let key = self.by_token.get(&token).copied();
        self.isdn_placed(now, token, result);
        if let Some(span) = span {
            self.replay_isdn(now, span);
        }
        self.finish_clearing(now, key);
    }

    /// A call that started clearing while one of its legs was being placed:
    /// clear that leg now that it exists (`clear` is idempotent).
    fn finish_clearing(&mut self, now: Instant, key: Option<u64>) {
        let Some(key) = key else {
            return;
        };
        if let Some(c) = self.calls.get(&key)
            && let (Some(cause), Some(_)) = (c.cause, c.cleared_by)
        {
            self.clear(now, key, Side::Gateway, cause, None);
        }
    }

    fn isdn_placed(&mut self, now: Instant, token: Token, result: Result<CallId, TaskError>) {
        let Some(key) = self.by_token.remove(&token) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        let span = c.span;
        match result {
            Ok(id) => {
                // If the core gave up while the SETUP was being placed, the
                // clearing reaches this leg in `finish_clearing`, after the
                // held events (which may already release it).
                self.by_isdn.insert((span, id), key);
                c.isdn = IsdnLeg::Up {
                    id,
                    responded: false,
                };
            }
            Err(e) => {
                info!(call = key, span, error = %e, "SETUP not placed");
                c.isdn = IsdnLeg::None;
                if c.clearing() {
                    self.maybe_finish(now, key);
                } else if !self.place_on_next_span(key) {
                    self.counters.refused_no_channel += 1;
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.isdn = IsdnLeg::Gone;
                    }
                    self.clear(now, key, Side::Gateway, Cause::NO_CIRCUIT_AVAILABLE.0, None);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_incoming_setup(
        &mut self,
        now: Instant,
        span: u8,
        id: CallId,
        called: Option<PartyNumber>,
        calling: Option<PartyNumber>,
        _bearer: Option<BearerCapability>,
        ts: u8,
    ) {
        self.counters.exchange_to_core += 1;
        if let Some(other) = self.isdn_calls_on(span, ts).first() {
            // Q.931 offers the channel, so it holds no call there: the
            // older call's channel is stale (the audit probes it).
            warn!(
                span,
                ts,
                old = other,
                "SETUP on a channel the manager holds a call on"
            );
        }
        let key = self.new_call(now, Direction::ExchangeToCore, span);
        self.by_isdn.insert((span, id), key);
        let mut called_digits = called.as_ref().map(|n| n.digits_str()).unwrap_or_default();
        let calling_digits = calling.as_ref().map(|n| n.digits_str());
        if let Some(c) = self.calls.get_mut(&key) {
            c.isdn = IsdnLeg::Up {
                id,
                responded: true,
            };
            c.timeslot = Some(ts);
            c.calling = calling_digits.clone().unwrap_or_default();
            c.called = called_digits.clone();
        }
        if self.draining {
            self.counters.refused_draining += 1;
            return self.refuse_setup(now, key, self.cfg.drain_cause, "draining");
        }
        let Some(m) = self
            .router
            .route(&called_digits, calling_digits.as_deref(), span)
        else {
            if !called_digits.is_empty() && self.router.could_match_later(&called_digits, span) {
                self.counters.refused_incomplete += 1;
                return self.refuse_setup(now, key, Cause::INVALID_NUMBER_FORMAT, "incomplete");
            }
            self.counters.refused_no_route += 1;
            return self.refuse_setup(now, key, self.cfg.no_route_cause, "no route");
        };
        let (index, group) = (m.index, m.route.peer_group.clone());
        let limits = self.router.limits(index);
        if called_digits.len() < limits.min_digits {
            self.counters.refused_incomplete += 1;
            return self.refuse_setup(now, key, Cause::INVALID_NUMBER_FORMAT, "too few digits");
        }
        if called_digits.len() > limits.max_digits {
            info!(
                call = key,
                route = index,
                max = limits.max_digits,
                "called number cut to the route's maximum"
            );
            called_digits.truncate(limits.max_digits);
        }
        if self.group_down(&group) {
            self.counters.refused_group_down += 1;
            return self.refuse_setup(now, key, self.cfg.group_down_cause, "every peer down");
        }
        let Some(local) = self.local_media(span, ts, key) else {
            return self.refuse_setup(now, key, Cause::RESOURCE_UNAVAILABLE, "no RTP port");
        };
        let offer = sdp::offer(&local);
        let caller =
            identity::caller_to_sip(calling.as_ref(), &self.cfg.numbers, &self.cfg.identity);
        let called_user = match &called {
            Some(n) => {
                let mut n = identity::isdn_number(n);
                n.digits = called_digits.clone();
                self.cfg.numbers.to_sip_user(&n)
            }
            None => called_digits.clone(),
        };
        let domain = self
            .cfg
            .group_domains
            .get(&group)
            .cloned()
            .unwrap_or_else(|| group.clone());
        let request_uri = identity::phone_uri(&called_user, &domain);
        let invite = InviteParams {
            to: NameAddr {
                display_name: None,
                uri: request_uri.clone(),
                params: Params::default(),
            },
            request_uri,
            from: caller.from,
            headers: caller.headers,
            sdp: offer.clone(),
        };
        info!(call = key, span, ts, route = index, group = %group, "SETUP routed to the core");
        let token = self.token(key);
        if let Some(c) = self.calls.get_mut(&key) {
            c.called = called_digits;
            c.group = group.clone();
            c.local_sdp = Some(offer);
            c.local_is_offer = true;
            c.sip = SipLeg::Placing(token);
            c.no_answer_at = Some(now + self.cfg.no_answer_timeout);
        }
        self.push(Action::Sip(SipAction::PlaceCall {
            token,
            group,
            invite: Box::new(invite),
        }));
    }

    /// Clear an incoming SETUP before any SIP call exists.
    fn refuse_setup(&mut self, now: Instant, key: u64, cause: Cause, why: &str) {
        info!(call = key, cause = %cause, why, "SETUP refused");
        self.clear(now, key, Side::Gateway, cause.0, None);
    }

    fn on_isdn_channel(&mut self, span: u8, id: CallId, ts: u8) {
        let Some(key) = self.key_of_isdn(span, id) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        if let IsdnLeg::Up { responded, .. } = &mut c.isdn {
            *responded = true;
        }
        c.timeslot = Some(ts);
    }

    /// The calls whose live Q.931 call is on `span`/`ts` (normally one).
    fn isdn_calls_on(&self, span: u8, ts: u8) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.span == span && c.timeslot == Some(ts) && c.isdn_alive())
            .map(|c| c.key)
            .collect();
        v.sort_unstable();
        v
    }

    /// The call whose media session on `ch` matches `state` (oldest first).
    fn media_call(&self, ch: ChannelId, f: impl Fn(&MediaLeg) -> bool) -> Option<u64> {
        self.calls
            .values()
            .filter(|c| c.channel() == Some(ch) && f(&c.media))
            .map(|c| c.key)
            .min()
    }

    fn responded(&mut self, key: u64) {
        if let Some(c) = self.calls.get_mut(&key)
            && let IsdnLeg::Up { responded, .. } = &mut c.isdn
        {
            *responded = true;
        }
    }

    fn on_isdn_alerting(&mut self, now: Instant, span: u8, id: CallId) {
        let Some(key) = self.key_of_isdn(span, id) else {
            return;
        };
        self.responded(key);
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.alerting_at.get_or_insert(now);
        if let (SipLeg::Incoming(call), false, false) = (c.sip, c.sip_ringing, c.clearing()) {
            c.sip_ringing = true;
            self.push(Action::Sip(SipAction::Provisional {
                call,
                status: 180,
                sdp: None,
            }));
        }
    }

    /// Our answer to the core's offer for the call's channel, kept as the
    /// call's local SDP; media connected to the core's address.
    fn answer_core(&mut self, key: u64) -> Option<Sdp> {
        let c = self.calls.get(&key)?;
        if let Some(s) = &c.local_sdp {
            return Some(s.clone());
        }
        let ts = c.timeslot?;
        let local = self.local_media(c.span, ts, key)?;
        let (answer, is_offer) = match &c.remote_sdp {
            Some(offer) => (sdp::answer(offer, &local), false),
            // No offer in the INVITE: ours goes in the 2xx (answer in the ACK).
            None => (sdp::offer(&local), true),
        };
        answer.audio_address()?;
        if let Some(c) = self.calls.get_mut(&key) {
            c.local_sdp = Some(answer.clone());
            c.local_is_offer = is_offer;
        }
        self.connect_media(key);
        Some(answer)
    }

    fn on_isdn_progress(&mut self, _now: Instant, span: u8, id: CallId, description: u8) {
        let Some(key) = self.key_of_isdn(span, id) else {
            return;
        };
        self.responded(key);
        let Some(c) = self.calls.get(&key) else {
            return;
        };
        // Q.931 §4.5.23: 1 (not end-to-end ISDN) and 8 (in-band information
        // now available) both mean early media: 183 with our answer.
        let (SipLeg::Incoming(call), false, false) = (c.sip, c.sip_early_media, c.clearing())
        else {
            return;
        };
        if !matches!(description, 1 | 8) {
            return;
        }
        let Some(answer) = self.answer_core(key) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&key) {
            c.sip_early_media = true;
        }
        self.push(Action::Sip(SipAction::Provisional {
            call,
            status: 183,
            sdp: Some(answer),
        }));
    }

    fn on_isdn_connected(&mut self, now: Instant, span: u8, id: CallId) {
        let Some(key) = self.key_of_isdn(span, id) else {
            return;
        };
        self.responded(key);
        let Some(c) = self.calls.get(&key) else {
            return;
        };
        let SipLeg::Incoming(call) = c.sip else {
            return;
        };
        if c.clearing() {
            return;
        }
        let Some(answer) = self.answer_core(key) else {
            // Q.931 events carry no channel after CALL PROCEEDING was skipped.
            warn!(
                call = key,
                span, "CONNECT without a known channel: clearing"
            );
            return self.clear(now, key, Side::Gateway, Cause::RESOURCE_UNAVAILABLE.0, None);
        };
        self.counters.answered += 1;
        if let Some(c) = self.calls.get_mut(&key) {
            c.answer_at = Some(now);
            c.sip = SipLeg::Confirmed(call);
            c.sip_status = Some(200);
        }
        self.push(Action::Sip(SipAction::Accept {
            call,
            sdp: Some(answer),
        }));
    }

    fn on_isdn_clearing(
        &mut self,
        now: Instant,
        span: u8,
        id: CallId,
        cause: Cause,
        released: bool,
    ) {
        let Some(key) = self.key_of_isdn(span, id) else {
            return;
        };
        if released {
            self.by_isdn.remove(&(span, id));
            if let Some(c) = self.calls.get_mut(&key) {
                c.isdn = IsdnLeg::Gone;
            }
        } else if let Some(c) = self.calls.get_mut(&key) {
            c.isdn = IsdnLeg::Clearing(id);
        }
        self.clear(now, key, Side::Exchange, cause.0, None);
        self.maybe_finish(now, key);
    }

    fn on_channels_restarted(&mut self, now: Instant, span: u8, timeslots: &[u8]) {
        for &ts in timeslots {
            // §5.5: the restart cleared the call (Released normally precedes this).
            for key in self.isdn_calls_on(span, ts) {
                self.forget_isdn(key);
                self.clear(now, key, Side::Exchange, Cause::TEMPORARY_FAILURE.0, None);
                self.maybe_finish(now, key);
            }
        }
    }

    /// Q.931 no longer holds the call's Q.931 call (released, restarted,
    /// or it answered a command "unknown call").
    fn forget_isdn(&mut self, key: u64) {
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        if let IsdnLeg::Up { id, .. } | IsdnLeg::Clearing(id) = c.isdn {
            self.by_isdn.remove(&(c.span, id));
        }
        c.isdn = IsdnLeg::Gone;
    }

    /// A command for Q.931 call `id` of `span` was refused. Only "unknown
    /// call" matters: Q.931 has forgotten the call (it is in the null state,
    /// its channel free), so the manager may too; its `Released`, if still
    /// on the way, is then a stray. The shell feeds every refusal.
    pub fn handle_isdn_refused(&mut self, now: Instant, span: u8, id: CallId, error: TaskError) {
        if error != TaskError::Refused(q931::CommandError::UnknownCall) {
            return;
        }
        let Some(&key) = self.by_isdn.get(&(span, id)) else {
            return;
        };
        info!(
            call = key,
            span,
            call_id = id.0,
            "Q.931 no longer knows the call: its leg is gone"
        );
        self.forget_isdn(key);
        self.clear(now, key, Side::Gateway, Cause::TEMPORARY_FAILURE.0, None);
        self.maybe_finish(now, key);
    }

    // ----- SIP input -------------------------------------------------------

    /// The reply to [`SipAction::PlaceCall`]: the SIP call's handle (the
    /// SIP task picks the peer, and fails over between the group's peers by
    /// itself; [`CallManager::handle_sip_peer`] names the peer once known).
    pub fn handle_sip_placed(
        &mut self,
        now: Instant,
        token: Token,
        result: Result<CallHandle, SipPlaceError>,
    ) {
        let key = self.by_token.get(&token).copied();
        self.sip_placed(now, token, result);
        self.replay_sip(now);
        self.finish_clearing(now, key);
    }

    /// The core peer (its address) SIP call `call` went to or came from,
    /// for the CDR and the status: the shell tells it when the SIP layer
    /// names it (answer, final failure).
    pub fn handle_sip_peer(&mut self, call: CallHandle, peer: &str) {
        if let Some(c) = self.by_sip.get(&call).and_then(|k| self.calls.get_mut(k)) {
            c.peer = Some(peer.to_owned());
        }
    }

    fn sip_placed(
        &mut self,
        now: Instant,
        token: Token,
        result: Result<CallHandle, SipPlaceError>,
    ) {
        let Some(key) = self.by_token.remove(&token) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        match result {
            Ok(handle) => {
                // Cleared meanwhile: hung up in `finish_clearing`, after the
                // held events (which may already end it).
                self.by_sip.insert(handle, key);
                c.sip = SipLeg::Outgoing(handle);
            }
            Err(e) => {
                info!(call = key, error = ?e, "INVITE not placed");
                c.sip = SipLeg::Gone;
                let group = c.group.clone();
                let cause = if self.group_down(&group) {
                    self.cfg.group_down_cause.0
                } else {
                    Cause::NO_CIRCUIT_AVAILABLE.0
                };
                self.clear(now, key, Side::Gateway, cause, None);
                self.maybe_finish(now, key);
            }
        }
    }

    /// One user-agent event.
    ///
    /// An event for a handle the manager does not know yet, while an INVITE
    /// awaits its [`SipAction::PlaceCall`] reply, is held (bounded) and
    /// replayed when the reply names that handle; later events of the same
    /// call wait behind it, so each call's events are applied in order.
    pub fn handle_sip(&mut self, now: Instant, event: UaEvent) {
        if self.sip_blocked(&event, self.early_sip.len()) {
            if self.early_sip.len() >= HELD_EVENTS_MAX
                && let Some(e) = self.early_sip.pop_front()
            {
                self.counters.held_overflows += 1;
                warn!("held SIP events full: the oldest is applied unmatched");
                self.dispatch_sip(now, e);
            }
            self.early_sip.push_back(event);
            self.replay_sip(now);
            return;
        }
        self.dispatch_sip(now, event);
    }

    /// Whether `event` must wait: its handle is unknown while an INVITE
    /// awaits its reply, or one of the first `before` held events is of the
    /// same call.
    fn sip_blocked(&self, event: &UaEvent, before: usize) -> bool {
        let Some(h) = sip_event_call(event) else {
            return false;
        };
        (!self.by_sip.contains_key(&h) && self.sip_placing())
            || self
                .early_sip
                .iter()
                .take(before)
                .any(|e| sip_event_call(e) == Some(h))
    }

    fn sip_placing(&self) -> bool {
        self.calls
            .values()
            .any(|c| matches!(c.sip, SipLeg::Placing(_)))
    }

    fn replay_sip(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.early_sip.len() {
            if self.sip_blocked(&self.early_sip[i], i) {
                i += 1;
                continue;
            }
            if let Some(e) = self.early_sip.remove(i) {
                self.dispatch_sip(now, e);
            }
            i = 0;
        }
    }

    fn dispatch_sip(&mut self, now: Instant, event: UaEvent) {
        match event {
            UaEvent::IncomingCall {
                call,
                request,
                sdp,
                peer,
            } => self.on_invite(now, call, &request, sdp, peer.address),
            UaEvent::Provisional { call, status, sdp } => {
                self.on_sip_provisional(now, call, status, sdp)
            }
            UaEvent::Answered { call, sdp } => self.on_sip_answered(now, call, sdp),
            UaEvent::Failed {
                call,
                status,
                reason,
            } => self.on_sip_failed(now, call, status, reason),
            UaEvent::Ended { call, by, reason } => self.on_sip_ended(now, call, by, reason),
            UaEvent::MediaUpdate { call, sdp } => self.on_sip_media_update(call, sdp),
            UaEvent::InfoDtmf {
                call,
                digit,
                duration_ms,
            } => self.on_sip_dtmf(call, digit, duration_ms),
            UaEvent::ReinviteFailed { call, status } => {
                info!(
                    sip_call = call.0,
                    status, "re-INVITE refused: session unchanged"
                );
            }
            UaEvent::OptionsResult { .. } => {}
        }
    }

    fn key_of_sip(&mut self, call: CallHandle) -> Option<u64> {
        let k = self.by_sip.get(&call).copied();
        if k.is_none() {
            self.counters.stray_events += 1;
            info!(
                sip_call = call.0,
                "sip event for a call the manager does not know"
            );
        }
        k
    }

    fn reason_value(cause: u8) -> String {
        Reason::q850_value(cause, Cause(cause).name().unwrap_or(""))
    }

    fn on_invite(
        &mut self,
        now: Instant,
        call: CallHandle,
        request: &crate::sip::message::Message,
        offer: Option<Sdp>,
        source: SocketAddr,
    ) {
        self.counters.core_to_exchange += 1;
        let reject = |m: &mut CallManager, status: u16, cause: u8| {
            m.push(Action::Sip(SipAction::Reject {
                call,
                status,
                reason: Some(Self::reason_value(cause)),
            }));
        };
        if self.draining {
            self.counters.refused_draining += 1;
            return reject(self, self.cfg.drain_status, self.cfg.drain_cause.0);
        }
        let called_user = request.start_uri().and_then(identity::uri_user);
        let Some(called) = called_user
            .as_deref()
            .and_then(|u| self.cfg.numbers.to_isdn(u))
        else {
            // RFC 3398 §8.2.6.1: cause 28 -> 484.
            self.counters.refused_incomplete += 1;
            return reject(self, 484, Cause::INVALID_NUMBER_FORMAT.0);
        };
        if let Some(o) = &offer {
            // RFC 3264 §6: nothing in common -> 488 (RFC 3398: cause 65).
            let probe = self.local_media(1, 1, 0);
            if probe.is_some_and(|l| sdp::answer(o, &l).audio_address().is_none()) {
                return reject(self, 488, Cause::BEARER_NOT_IMPLEMENTED.0);
            }
        }
        let spans = self
            .cfg
            .core_routes
            .iter()
            .find(|r| crate::config::pattern_matches(&r.called, &called.digits))
            .map(|r| r.spans.clone())
            .unwrap_or_default();
        let spans: Vec<u8> = spans
            .into_iter()
            .filter(|s| self.links.get(s).copied().unwrap_or(true))
            .collect();
        let Some(&first) = spans.first() else {
            self.counters.refused_no_channel += 1;
            return reject(self, 503, Cause::NO_CIRCUIT_AVAILABLE.0);
        };
        let calling = identity::caller_from_sip(request, &self.cfg.numbers);
        let place = PlaceCall {
            called: identity::party_number(&called),
            calling: calling.clone(),
            bearer: BearerCapability::speech_alaw(),
            channel: None,
            exclusive: false,
            sending_complete: true,
        };
        let key = self.new_call(now, Direction::CoreToExchange, first);
        self.by_sip.insert(call, key);
        if let Some(c) = self.calls.get_mut(&key) {
            c.sip = SipLeg::Incoming(call);
            c.called = called.digits.clone();
            c.calling = calling.map(|n| n.digits_str()).unwrap_or_default();
            c.remote_sdp = offer;
            c.place = Some(place);
            c.spans_left = spans;
            c.peer = (!source.ip().is_unspecified()).then(|| source.to_string());
        }
        info!(call = key, sip_call = call.0, "INVITE to the exchange");
        self.place_on_next_span(key);
    }

    /// Sends the call's SETUP on the next span of its list; false if none left.
    fn place_on_next_span(&mut self, key: u64) -> bool {
        let Some(c) = self.calls.get_mut(&key) else {
            return false;
        };
        if c.spans_left.is_empty() {
            return false;
        }
        let span = c.spans_left.remove(0);
        let Some(place) = c.place.clone() else {
            return false;
        };
        c.span = span;
        let token = self.token(key);
        if let Some(c) = self.calls.get_mut(&key) {
            c.isdn = IsdnLeg::Placing(token);
        }
        self.isdn(span, IsdnCommand::PlaceCall { token, call: place });
        true
    }

    fn on_sip_provisional(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        sdp: Option<Sdp>,
    ) {
        let Some(key) = self.key_of_sip(call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.got_provisional = true;
        if c.clearing() {
            return;
        }
        let IsdnLeg::Up { id, .. } = c.isdn else {
            return;
        };
        let span = c.span;
        if let Some(s) = sdp {
            c.remote_sdp = Some(s);
            self.connect_media(key);
        }
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        let early = c.remote_sdp.is_some() && c.media != MediaLeg::Idle;
        let mut out = Vec::new();
        // RFC 3398 §7 (SIP to ISUP, the ACM/CPG mapping): 180-182 alert the
        // caller; a provisional with SDP is early media: PROGRESS with
        // progress description 8 (in-band information now available).
        if (status == 180 || status == 181 || status == 182) && !c.isdn_alerted {
            c.isdn_alerted = true;
            c.alerting_at.get_or_insert(now);
            out.push(IsdnCommand::Alerting { id });
        }
        if early && !c.isdn_progress {
            c.isdn_progress = true;
            out.push(IsdnCommand::Progress { id, description: 8 });
        }
        for command in out {
            self.isdn(span, command);
        }
    }

    fn on_sip_answered(&mut self, now: Instant, call: CallHandle, sdp: Option<Sdp>) {
        let Some(key) = self.key_of_sip(call) else {
            // A 2xx for a call we no longer know: end its dialog.
            return self.push(Action::Sip(SipAction::Hangup {
                call,
                reason: Some(Self::reason_value(Cause::NORMAL_CLEARING.0)),
            }));
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.sip_status = Some(200);
        c.no_answer_at = None;
        if let Some(s) = sdp {
            c.remote_sdp = Some(s);
        }
        if c.clearing() {
            // CANCEL crossed the 200: the user agent ACKs and BYEs by itself.
            c.sip = SipLeg::Clearing(call);
            return;
        }
        c.sip = SipLeg::Confirmed(call);
        let IsdnLeg::Up { id, .. } = c.isdn else {
            return;
        };
        let span = c.span;
        if c.remote_sdp.as_ref().and_then(Sdp::audio_address).is_none() {
            warn!(call = key, "200 without usable SDP: clearing");
            return self.clear(
                now,
                key,
                Side::Gateway,
                Cause::BEARER_NOT_IMPLEMENTED.0,
                None,
            );
        }
        self.connect_media(key);
        if self
            .calls
            .get(&key)
            .is_some_and(|c| c.media == MediaLeg::Idle)
        {
            // RFC 3264: the answer holds no G.711 stream: nothing to carry
            // the call's audio. RFC 3398: 488 <-> cause 65.
            warn!(
                call = key,
                "200 with no usable codec: clearing with cause 65"
            );
            return self.clear(
                now,
                key,
                Side::Gateway,
                Cause::BEARER_NOT_IMPLEMENTED.0,
                None,
            );
        }
        self.counters.answered += 1;
        if let Some(c) = self.calls.get_mut(&key) {
            c.answer_at = Some(now);
        }
        self.isdn(span, IsdnCommand::Connect { id });
    }

    fn on_sip_failed(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        reason: Option<String>,
    ) {
        let Some(key) = self.key_of_sip(call) else {
            return;
        };
        self.by_sip.remove(&call);
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.sip_status = Some(status);
        c.sip = SipLeg::Gone;
        // Failover between the group's peers is the SIP task's (it knows
        // their health, the INVITE timeout and transport errors): a final
        // failure here is the call's end, mapped by the cause table.
        let reason_cause = reason.as_deref().and_then(|r| q850_from_reasons([r]));
        let span = c.span;
        let mapped = self.cause_map(span).sip_to_q850(status, reason_cause, None);
        let (cause, rule) = mapped.unwrap_or((Cause::NORMAL_CLEARING.0, Rule::ClassDefault));
        info!(call = key, status, cause, rule = %rule, "SIP final response mapped to Q.850");
        self.clear(now, key, Side::Core, cause, Some(status));
        self.maybe_finish(now, key);
    }

    fn on_sip_ended(
        &mut self,
        now: Instant,
        call: CallHandle,
        by: EndedBy,
        reason: Option<String>,
    ) {
        let Some(key) = self.key_of_sip(call) else {
            return;
        };
        self.by_sip.remove(&call);
        if let Some(c) = self.calls.get_mut(&key) {
            c.sip = SipLeg::Gone;
        }
        let (cause, why) = match by {
            // RFC 3398 §7 (SIP to ISUP): BYE and CANCEL release with cause 16
            // (normal call clearing); a Q.850 Reason (RFC 3326) is used as is.
            EndedBy::Remote | EndedBy::Local => {
                match reason.as_deref().and_then(|r| q850_from_reasons([r])) {
                    Some(c) => (c, Rule::ReasonHeader),
                    None => (Cause::NORMAL_CLEARING.0, Rule::Rfc3398),
                }
            }
            EndedBy::Timeout => (Cause::RECOVERY_ON_TIMER_EXPIRY.0, Rule::ClassDefault),
            EndedBy::TransportError => (Cause::TEMPORARY_FAILURE.0, Rule::ClassDefault),
        };
        let side = if by == EndedBy::Remote {
            Side::Core
        } else {
            Side::Gateway
        };
        info!(call = key, by = ?by, cause, rule = %why, "SIP call ended");
        self.clear(now, key, side, cause, None);
        self.maybe_finish(now, key);
    }

    fn on_sip_media_update(&mut self, call: CallHandle, sdp: Sdp) {
        let Some(key) = self.key_of_sip(call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.remote_sdp = Some(sdp);
        match c.media {
            MediaLeg::Connected(ch, old) => {
                let Some((ip, port)) = c.remote_sdp.as_ref().and_then(Sdp::audio_address) else {
                    return;
                };
                let remote = SocketAddr::new(ip, port);
                if remote != old {
                    c.media = MediaLeg::Connected(ch, remote);
                    self.push(Action::Media(media::Command::UpdateRemote {
                        ch,
                        remote,
                        restrict_to_sdp: false,
                    }));
                }
            }
            MediaLeg::Idle => self.connect_media(key),
            _ => {}
        }
    }

    fn on_sip_dtmf(&mut self, call: CallHandle, digit: char, duration_ms: Option<u32>) {
        let Some(key) = self.key_of_sip(call) else {
            return;
        };
        if !self.cfg.dtmf_from_info {
            return;
        }
        let Some(MediaLeg::Connected(ch, _)) = self.calls.get(&key).map(|c| c.media) else {
            return;
        };
        let on = duration_ms.unwrap_or(100).clamp(40, 500) as u16;
        let mut b = [0u8; 4];
        let Some(digits) = DigitString::new(digit.encode_utf8(&mut b).as_bytes(), on, 60) else {
            return;
        };
        self.push(Action::Media(media::Command::SendDigits { ch, digits }));
    }

    // ----- media -----------------------------------------------------------

    /// Connect (or update) the call's channel to the remote SDP's address.
    fn connect_media(&mut self, key: u64) {
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        let (Some(ch), Some(remote_sdp)) = (c.channel(), c.remote_sdp.as_ref()) else {
            return;
        };
        let Some((ip, port)) = remote_sdp.audio_address() else {
            return;
        };
        let remote = SocketAddr::new(ip, port);
        match c.media {
            MediaLeg::Connected(_, old) if old == remote => {}
            MediaLeg::Connected(_, _) => {
                c.media = MediaLeg::Connected(ch, remote);
                self.push(Action::Media(media::Command::UpdateRemote {
                    ch,
                    remote,
                    restrict_to_sdp: false,
                }));
            }
            MediaLeg::Idle => {
                // The negotiated codec: the answer's first G.711 format.
                let answer = if c.local_is_offer {
                    remote_sdp
                } else {
                    c.local_sdp.as_ref().unwrap_or(remote_sdp)
                };
                let Some(mut params) = connect_params(answer, remote_sdp, remote) else {
                    return;
                };
                params.rtp_timeout_ms =
                    u32::try_from(self.cfg.rtp_timeout.as_millis()).unwrap_or(u32::MAX);
                c.media = MediaLeg::Connected(ch, remote);
                self.push(Action::Media(media::Command::Connect { ch, params }));
            }
            MediaLeg::AwaitingSummary(..) | MediaLeg::Done => {}
        }
    }

    /// One media-thread event.
    pub fn handle_media(&mut self, now: Instant, event: media::Event) {
        let connected = |m: &MediaLeg| matches!(m, MediaLeg::Connected(..));
        match event {
            media::Event::CallSummary { ch, summary } => {
                // The session's summary follows its Disconnect; a newer call
                // on the channel is not waiting for one.
                let awaiting = |m: &MediaLeg| matches!(m, MediaLeg::AwaitingSummary(..));
                let Some(key) = self.media_call(ch, awaiting) else {
                    return;
                };
                if let Some(c) = self.calls.get_mut(&key) {
                    c.quality = Some(quality(&summary));
                    c.media = MediaLeg::Done;
                }
                self.maybe_finish(now, key);
            }
            media::Event::DtmfEnd {
                ch,
                digit,
                duration_ms,
            } if self.cfg.dtmf_to_info => {
                let Some(c) = self
                    .media_call(ch, connected)
                    .and_then(|k| self.calls.get(&k))
                else {
                    return;
                };
                if let SipLeg::Confirmed(call) = c.sip {
                    self.push(Action::Sip(SipAction::DtmfInfo {
                        call,
                        digit: char::from(digit),
                        duration_ms,
                    }));
                }
            }
            media::Event::RtpTimeout { ch, silent_ms } => {
                self.counters.rtp_timeouts += 1;
                let key = self.media_call(ch, connected);
                self.on_rtp_timeout(now, ch, key, silent_ms);
            }
            media::Event::CommandRejected { ch, reason } => {
                self.counters.media_rejects += 1;
                warn!(channel = %ch, reason = ?reason, "media command rejected");
            }
            _ => {}
        }
    }

    /// No RTP from the core for `rtp_timeout` on `ch`. An answered call
    /// whose remote SDP says the core sends (not `recvonly`/`inactive`, RFC
    /// 3264 §6.1: a held call is silent on purpose) is cleared with
    /// `rtp_timeout_cause` (41, temporary failure: the exchange may retry at
    /// once) towards the exchange, and BYE with `Reason: Q.850;cause=41`
    /// towards the core, when `rtp_timeout_action` is `Clear`; otherwise,
    /// and before an answer (early media may be silent), it is logged only.
    fn on_rtp_timeout(&mut self, now: Instant, ch: ChannelId, key: Option<u64>, silent_ms: u32) {
        let Some(c) = key.and_then(|k| self.calls.get(&k)) else {
            warn!(channel = %ch, silent_ms, "no RTP from the core (no call on the channel)");
            return;
        };
        let key = c.key;
        let held = c.remote_sdp.as_ref().is_some_and(|s| {
            let media = s.media.iter().find(|m| m.kind == "audio" && m.port != 0);
            matches!(
                media.and_then(|m| m.direction).or(s.direction),
                Some(sdp::Direction::RecvOnly | sdp::Direction::Inactive)
            )
        });
        let rule = if c.answer_at.is_none() {
            "not answered yet: logged only"
        } else if held {
            "the core holds the call (SDP recvonly/inactive): logged only"
        } else if self.cfg.rtp_timeout_action == RtpTimeoutAction::Log {
            "rtp_timeout_action = log: logged only"
        } else {
            "rtp_timeout_action = clear: clearing"
        };
        let clear = rule.ends_with("clearing");
        let cause = self.cfg.rtp_timeout_cause;
        warn!(call = key, channel = %ch, silent_ms, cause = cause.0, rule, "no RTP from the core");
        if clear {
            self.counters.rtp_timeout_clears += 1;
            self.clear(now, key, Side::Gateway, cause.0, None);
        }
    }

    // ----- clearing --------------------------------------------------------

    /// Start clearing `key` from `side` with Q.850 `cause`: each leg not yet
    /// clearing is told (mapped cause, Reason header both ways), media is
    /// disconnected. Idempotent: the first clearing's cause is kept.
    fn clear(&mut self, now: Instant, key: u64, side: Side, cause: u8, sip_status: Option<u16>) {
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        if c.cleared_by.is_none() {
            c.cleared_by = Some(side);
            c.cause = Some(cause);
            c.release_at = Some(now);
            c.reason = Some(Self::reason_value(cause));
        }
        if sip_status.is_some() {
            c.sip_status = sip_status;
        }
        c.no_answer_at = None;
        let cause = c.cause.unwrap_or(cause);
        let reason = c.reason.clone();
        let span = c.span;
        // The ISDN leg.
        match c.isdn {
            IsdnLeg::Up { id, responded } => {
                c.isdn = IsdnLeg::Clearing(id);
                let command = if responded {
                    IsdnCommand::Disconnect {
                        id,
                        cause: Cause(cause),
                    }
                } else {
                    IsdnCommand::Release {
                        id,
                        cause: Cause(cause),
                    }
                };
                self.actions.push_back(Action::Isdn { span, command });
            }
            IsdnLeg::None => c.isdn = IsdnLeg::Gone,
            IsdnLeg::Placing(_) | IsdnLeg::Clearing(_) | IsdnLeg::Gone => {}
        }
        // The SIP leg.
        match c.sip {
            SipLeg::Incoming(call) => {
                let (status, rule) = if cause == self.cfg.drain_cause.0 && self.draining {
                    (self.cfg.drain_status, Rule::Override)
                } else {
                    self.cfg
                        .trunk_cause_maps
                        .get(&span)
                        .unwrap_or(&self.cfg.cause_map)
                        .q850_to_sip(cause, LOCATION_PUBLIC_LOCAL)
                };
                info!(call = key, cause, status, rule = %rule, "Q.850 cause mapped to SIP");
                c.sip = SipLeg::Clearing(call);
                c.sip_status = Some(status);
                self.actions.push_back(Action::Sip(SipAction::Reject {
                    call,
                    status,
                    reason,
                }));
            }
            SipLeg::Outgoing(call) | SipLeg::Confirmed(call) => {
                c.sip = SipLeg::Clearing(call);
                self.actions
                    .push_back(Action::Sip(SipAction::Hangup { call, reason }));
            }
            SipLeg::None => c.sip = SipLeg::Gone,
            SipLeg::Placing(_) | SipLeg::Clearing(_) | SipLeg::Gone => {}
        }
        // Media.
        if let MediaLeg::Connected(ch, _) = c.media {
            c.media = MediaLeg::AwaitingSummary(ch, now + self.cfg.summary_wait);
            self.actions
                .push_back(Action::Media(media::Command::Disconnect { ch }));
        }
        self.maybe_finish(now, key);
    }

    /// Forget a call whose legs are all gone, with its CDR.
    fn maybe_finish(&mut self, now: Instant, key: u64) {
        if !self.calls.get(&key).is_some_and(Call::finished) {
            return;
        }
        let Some(c) = self.calls.remove(&key) else {
            return;
        };
        self.by_isdn.retain(|_, k| *k != key);
        self.by_sip.retain(|_, k| *k != key);
        self.by_token.retain(|_, k| *k != key);
        let rec = self.cdr(&c, now);
        info!(call = key, span = c.span, ts = ?c.timeslot, cause = rec.q850_cause, sip = ?rec.sip_status, "call over");
        self.push(Action::Cdr(rec));
    }

    fn unix_ms(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.epoch).as_millis() as u64;
        self.epoch_unix_ms + d
    }

    fn cdr(&self, c: &Call, now: Instant) -> CdrRecord {
        CdrRecord {
            call_id: self.call_id(c.key),
            span: c.span,
            timeslot: c.timeslot.unwrap_or(0),
            direction: c.direction,
            calling: c.calling.clone(),
            called: c.called.clone(),
            setup_ms: self.unix_ms(c.setup_at),
            alerting_ms: c.alerting_at.map(|t| self.unix_ms(t)),
            answer_ms: c.answer_at.map(|t| self.unix_ms(t)),
            release_ms: self.unix_ms(c.release_at.unwrap_or(now)),
            cleared_by: match c.cleared_by {
                Some(Side::Exchange) => cdr::ClearedBy::Exchange,
                Some(Side::Core) => cdr::ClearedBy::Core,
                _ => cdr::ClearedBy::Gateway,
            },
            q850_cause: c.cause.unwrap_or(Cause::NORMAL_CLEARING.0),
            sip_status: c.sip_status,
            core_peer: c.peer.clone(),
            quality: c.quality,
        }
    }

    // ----- channel audit ---------------------------------------------------

    /// A span's channel table as its D-channel task published it.
    pub fn handle_channel_table(&mut self, span: u8, table: &ChannelTable) {
        self.tables.insert(span, table.clone());
    }

    /// Compares each span's channel table with the manager's calls. A
    /// channel busy on one side and idle on the other at two audits in a
    /// row (so that events in flight are not mistaken for faults) is a
    /// mismatch, counted and logged:
    ///
    /// - Q.931 busy (or reserved), no call of the manager there (and none of
    ///   the span whose channel is still unknown): a stuck channel, recovered
    ///   with a single-channel RESTART (Q.931 §5.5.1; one per span per
    ///   audit, Q.931 allows one outstanding). Calls are never touched: if
    ///   Q.931 still had a call there, the manager would know it.
    /// - Q.931 idle, a call of the manager there: the manager's view is
    ///   stale. The call is probed with STATUS ENQUIRY (§5.8.10); if Q.931
    ///   answers "unknown call" the manager forgets the leg
    ///   ([`CallManager::handle_isdn_refused`]); a call Q.931 still holds is
    ///   never forgotten.
    ///
    /// Long active calls get a STATUS ENQUIRY too, which clears them if
    /// Q.931 finds the peer has lost them.
    fn audit(&mut self, now: Instant) {
        let mut found = HashSet::new();
        let mut spans: Vec<u8> = self.tables.keys().copied().collect();
        spans.sort_unstable();
        let mut probes = Vec::new();
        for span in spans {
            let Some(table) = self.tables.get(&span) else {
                continue;
            };
            let rows: Vec<(u8, ChannelState)> = table.iter().collect();
            // A call whose channel Q.931 has not reported yet (its SETUP not
            // answered) may be on any busy channel: none of them is stuck.
            let unlocated = self
                .calls
                .values()
                .any(|c| c.span == span && c.isdn_alive() && c.timeslot.is_none());
            let mut restart = None;
            for (ts, state) in rows {
                let ours = self.isdn_calls_on(span, ts);
                let q931_busy = matches!(state, ChannelState::Busy | ChannelState::Reserved);
                let stuck = q931_busy && ours.is_empty() && !unlocated;
                let stale = state == ChannelState::Idle && !ours.is_empty();
                if !stuck && !stale {
                    continue;
                }
                found.insert((span, ts));
                if !self.suspects.contains(&(span, ts)) {
                    continue;
                }
                if stale {
                    self.counters.audit_mismatches += 1;
                    warn!(span, ts, calls = ?ours, "audit: Q.931 has the channel idle, the manager a call on it: STATUS ENQUIRY");
                    probes.extend(ours.into_iter().map(|k| (span, k)));
                } else if restart.is_none() {
                    self.counters.audit_mismatches += 1;
                    warn!(span, ts, q931 = ?state, "audit: channel busy in Q.931 with no call: single-channel RESTART");
                    restart = Some(ts);
                }
            }
            if let Some(ts) = restart {
                self.counters.audit_restarts += 1;
                found.remove(&(span, ts));
                self.isdn(
                    span,
                    IsdnCommand::Restart {
                        class: RestartClass::INDICATED_CHANNELS,
                        timeslots: vec![ts],
                    },
                );
            }
        }
        for (span, key) in probes {
            let id = match self.calls.get(&key).map(|c| c.isdn) {
                Some(IsdnLeg::Up { id, .. } | IsdnLeg::Clearing(id)) => id,
                _ => continue,
            };
            self.counters.audit_probes += 1;
            self.isdn(span, IsdnCommand::StatusEnquiry { id });
        }
        self.suspects = found;
        let long = self.cfg.long_call_check;
        let mut enquiries = Vec::new();
        for c in self.calls.values_mut() {
            let (Some(answered), IsdnLeg::Up { id, .. }) = (c.answer_at, c.isdn) else {
                continue;
            };
            let since = c.last_enquiry.unwrap_or(answered);
            if now.saturating_duration_since(since) >= long {
                c.last_enquiry = Some(now);
                enquiries.push((c.span, id));
            }
        }
        for (span, id) in enquiries {
            self.counters.status_enquiries += 1;
            self.isdn(span, IsdnCommand::StatusEnquiry { id });
        }
    }
}

/// Events held for a call not yet known: at most this many (then the oldest
/// is applied unmatched).
const HELD_EVENTS_MAX: usize = 1024;

/// The call a Q.931 event is about; `None` for span-wide events and for
/// `IncomingCall` (always a new id).
fn isdn_event_call(e: &q931::Event) -> Option<CallId> {
    use q931::Event as E;
    match e {
        E::SetupAcknowledged { id, .. }
        | E::Proceeding { id, .. }
        | E::ChannelSelected { id, .. }
        | E::Alerting { id }
        | E::Progress { id, .. }
        | E::Connected { id }
        | E::Disconnected { id, .. }
        | E::Released { id, .. } => Some(*id),
        _ => None,
    }
}

/// The call a user-agent event is about; `None` for new INVITEs and OPTIONS.
fn sip_event_call(e: &UaEvent) -> Option<CallHandle> {
    match e {
        UaEvent::Provisional { call, .. }
        | UaEvent::Answered { call, .. }
        | UaEvent::Failed { call, .. }
        | UaEvent::Ended { call, .. }
        | UaEvent::MediaUpdate { call, .. }
        | UaEvent::InfoDtmf { call, .. }
        | UaEvent::ReinviteFailed { call, .. } => Some(*call),
        UaEvent::IncomingCall { .. } | UaEvent::OptionsResult { .. } => None,
    }
}

/// Media parameters from the negotiated SDP: the answer's first G.711
/// format, its telephone-event payload type and ptime, the remote address.
fn connect_params(answer: &Sdp, remote_sdp: &Sdp, remote: SocketAddr) -> Option<ConnectParams> {
    let m = answer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)?;
    let (codec, pt) = m.formats.iter().find_map(|f| {
        let codec = if f.encoding.eq_ignore_ascii_case("PCMA") {
            Codec::Pcma
        } else if f.encoding.eq_ignore_ascii_case("PCMU") {
            Codec::Pcmu
        } else {
            return None;
        };
        Some((codec, f.payload_type))
    })?;
    let mut p = ConnectParams::new(remote, codec);
    p.payload_type = crate::media::rtp::PayloadType(pt);
    p.telephone_event_pt = m
        .formats
        .iter()
        .find(|f| f.encoding.eq_ignore_ascii_case("telephone-event"))
        .map(|f| crate::media::rtp::PayloadType(f.payload_type));
    let ptime = remote_sdp
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)
        .and_then(|m| m.ptime_ms)
        .unwrap_or(20);
    if let Ok(pt) = u8::try_from(ptime)
        && media::PTIMES_MS.contains(&pt)
    {
        p.ptime_ms = pt;
    }
    Some(p)
}

/// The CDR's quality block from the media summary: loss, jitter (8 kHz
/// samples to ms) and the G.107 R-factor and MOS for G.711 with PLC (delay
/// unknown here: the jitter as the only delay term).
fn quality(s: &media::CallSummary) -> Quality {
    let expected = s.packets_expected.max(1) as f64;
    let lost = s.packets_lost.max(0) as u64;
    let loss_percent = if s.packets_expected == 0 {
        0.0
    } else {
        100.0 * lost as f64 / expected
    };
    let jitter_ms = f64::from(s.jitter_samples) / 8.0;
    let r = EModel::default()
        .r_factor(&Conditions::new(jitter_ms, loss_percent, 1.0, G711_PLC))
        .r;
    Quality {
        packets_received: s.packets_received,
        packets_lost: lost,
        loss_percent,
        jitter_ms,
        rtt_ms: None,
        r_factor: r,
        mos: mos_from_r(r),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn media(codecs: &[&str], port: u16) -> LocalMedia {
        LocalMedia {
            origin: Origin {
                username: "t".into(),
                session_id: 1,
                version: 1,
                address: "192.0.2.9".parse().unwrap(),
            },
            address: "192.0.2.9".parse().unwrap(),
            port,
            codecs: codecs.iter().map(|c| c.to_string()).collect(),
            telephone_event: true,
            ptime_ms: 30,
            direction: sdp::Direction::SendRecv,
        }
    }

    #[test]
    fn media_parameters_follow_the_answer() {
        let offer = sdp::offer(&media(&["PCMA", "PCMU"], 40010));
        let answer = sdp::answer(&offer, &media(&["PCMU"], 30000));
        let remote: SocketAddr = "192.0.2.9:30000".parse().unwrap();
        let p = connect_params(&answer, &answer, remote).unwrap();
        assert_eq!(p.codec, Codec::Pcmu);
        assert_eq!(p.payload_type.0, 0);
        assert_eq!(p.telephone_event_pt.map(|pt| pt.0), Some(101));
        assert_eq!(p.ptime_ms, 30);
        let g729 = sdp::answer(&offer, &media(&["G729"], 30000));
        assert!(connect_params(&g729, &g729, remote).is_none());
    }

    #[test]
    fn quality_from_a_clean_and_a_lossy_summary() {
        let clean = quality(&media::CallSummary {
            packets_received: 1000,
            packets_expected: 1000,
            ..media::CallSummary::default()
        });
        assert_eq!(clean.loss_percent, 0.0);
        assert!(clean.r_factor > 90.0 && clean.mos > 4.3);
        let lossy = quality(&media::CallSummary {
            packets_received: 900,
            packets_expected: 1000,
            packets_lost: 100,
            jitter_samples: 400,
            ..media::CallSummary::default()
        });
        assert_eq!(lossy.loss_percent, 10.0);
        assert_eq!(lossy.jitter_ms, 50.0);
        assert!(lossy.mos < clean.mos);
        // A negative cumulative loss (duplicates) is no loss.
        let dup = quality(&media::CallSummary {
            packets_lost: -3,
            ..media::CallSummary::default()
        });
        assert_eq!(dup.packets_lost, 0);
    }

    #[test]
    fn group_health_needs_every_reported_peer_down() {
        let now = Instant::now();
        let cfg = CallManagerConfig::new(Vec::new(), "192.0.2.1".parse().unwrap(), 40000, "gw");
        let mut m = CallManager::new(cfg, now, 0);
        assert!(!m.group_down("g"), "never reported: up");
        m.handle_peer("g", "a", false);
        assert!(m.group_down("g"));
        m.handle_peer("g", "b", true);
        assert!(!m.group_down("g"));
        m.handle_peer("g", "b", false);
        assert!(m.group_down("g"));
        m.handle_peer("g", "a", true);
        assert!(!m.group_down("g"));
    }

    #[test]
    fn timeouts_are_due_at_the_audit_when_idle() {
        let now = Instant::now();
        let cfg = CallManagerConfig::new(Vec::new(), "192.0.2.1".parse().unwrap(), 40000, "gw");
        let mut m = CallManager::new(cfg, now, 0);
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(60)));
        m.handle_timeout(now + Duration::from_secs(60));
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(120)));
        assert!(m.poll_action().is_none());
    }
}
