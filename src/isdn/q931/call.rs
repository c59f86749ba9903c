//! The per-span Q.931 call control core (Q.931 §5, EN 300 403-1 §5) for the
//! user and the network side.
//!
//! Sans-IO contract of [`Q931`]:
//! - `handle_dl(now, DlIndication)` feeds layer-2 indications (link up,
//!   link down, one received message);
//! - commands from the call module are methods (`place_call`, `alerting`,
//!   `progress`, `connect`, `disconnect`, `release`, `restart`);
//! - `poll_dl()` drains layer-2 requests (establish, data) and
//!   `poll_event()` drains [`Event`]s for the call module;
//! - `poll_timeout()` is the earliest deadline; call `handle_timeout(now)`
//!   at or after it.
//!
//! Timers run per call from one table ([`TimerValues`]), indexed by
//! [`TimerId`]: T303 (U1/N6), T310 (U3/N9), T301 (U4/N7), T313 (U8), T305
//! (U11/N12), T308 (U19/N19), T309 (U10/N10 while the link is down), T322
//! (after STATUS ENQUIRY); T316 runs per span for our RESTART; T302 (U25/N2)
//! while an incoming call's digits are collected (overlap receiving), which
//! ends at Sending Complete, at T302's expiry, or as soon as
//! [`Config::number_complete`] says the called number is complete.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::api::{CallId, ClearedBy, CommandError, Event, PlaceCall, Role};
use super::channels::{ChannelState, ChannelTable, Hunt};
use super::codepoints::{IeId, MessageType as Mt};
use super::header::CallReference;
use super::ie::IeBody;
use super::ie_values::{
    CallStateIe, CauseIe, ChannelId, ChannelList, ProgressIndicator, RestartClass,
};
use super::layer2::{DlIndication, DlRequest};
use super::message::{Decoded, Message};
use super::rules::{Direction, Verdict, check};
use super::state::State;
use crate::isdn::cause::{Cause, Location};
use crate::isdn::timers::{TIMERS, TimerId, TimerValues};

/// Parameters of one span's Q.931.
#[derive(Debug, Clone)]
pub struct Config {
    pub span: u8,
    pub role: Role,
    pub timers: TimerValues,
    pub hunt: Hunt,
    pub timeslots: Vec<u8>,
    /// Send RESTART (all interfaces) after D-channel establishment.
    pub restart_on_establish: bool,
    /// T316 expiries after which our RESTART is given up.
    pub t316_retries: u8,
    /// Answer a SETUP without Sending Complete with SETUP ACKNOWLEDGE and
    /// collect digits (INFORMATION, T302) before CALL PROCEEDING.
    pub overlap_receiving: bool,
    /// Overlap receiving: the call layer's test of whether the called
    /// number collected so far is complete (the routes'); `None`: only
    /// Sending Complete or T302 end the digits.
    pub number_complete: Option<NumberComplete>,
}

/// Q.931 §5.1.3 / §5.2.4: "the called party number is complete", as the
/// call layer determines it from its numbering plan (its routes); called
/// with the called digits so far and the calling number's digits.
#[derive(Clone)]
pub struct NumberComplete(Arc<NumberTest>);

/// `(called digits, calling digits) -> complete`.
type NumberTest = dyn Fn(&str, Option<&str>) -> bool + Send + Sync;

impl NumberComplete {
    pub fn new(f: impl Fn(&str, Option<&str>) -> bool + Send + Sync + 'static) -> NumberComplete {
        NumberComplete(Arc::new(f))
    }

    /// Whether `called` (with `calling`) is complete.
    pub fn test(&self, called: &str, calling: Option<&str>) -> bool {
        (self.0)(called, calling)
    }
}

impl fmt::Debug for NumberComplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NumberComplete(..)")
    }
}

impl Config {
    /// An E1 PRI with the spec's timers; the user side hunts from the top.
    pub fn e1(span: u8, role: Role) -> Config {
        Config {
            span,
            role,
            timers: TimerValues::default(),
            hunt: match role {
                Role::User => Hunt::Descending,
                Role::Network => Hunt::Ascending,
            },
            timeslots: (1..=31).filter(|t| *t != 16).collect(),
            restart_on_establish: false,
            t316_retries: 2,
            overlap_receiving: true,
            number_complete: None,
        }
    }
}

/// Counters of everything odd the peer sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub header_errors: u64,
    pub rejected: u64,
    pub reported: u64,
    pub unknown_call_reference: u64,
    pub unexpected_in_state: u64,
    pub queue_overflow: u64,
}

/// A call's key: its value and whether we allocated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    value: u16,
    ours: bool,
}

struct Call {
    id: CallId,
    state: State,
    channel: Option<u8>,
    deadlines: [Option<Instant>; TIMERS.len()],
    /// The SETUP as sent, retransmitted on the first T303 expiry.
    setup: Option<Vec<u8>>,
    retransmitted: [bool; TIMERS.len()],
    cause: CauseIe,
    /// Our outgoing call's request, kept for a retry after cause 44.
    request: Option<PlaceCall>,
    retried: bool,
    /// Who started clearing, once someone has.
    cleared_by: Option<ClearedBy>,
    /// Overlap receiving: the incoming call, reported once digits are complete.
    incoming: Option<Event>,
}

struct PendingRestart {
    class: RestartClass,
    timeslots: Vec<u8>,
    channel_id: Option<ChannelId>,
    deadline: Instant,
    expiries: u8,
}

/// Messages kept while the link is being (re-)established.
const QUEUE_MAX: usize = 64;

/// One span's Q.931. See the module doc for the contract.
pub struct Q931 {
    cfg: Config,
    calls: BTreeMap<Key, Call>,
    next_value: u16,
    next_id: u32,
    channels: ChannelTable,
    link_up: bool,
    establish_requested: bool,
    queue: VecDeque<Vec<u8>>,
    dl_out: VecDeque<DlRequest>,
    events: VecDeque<Event>,
    restart: Option<PendingRestart>,
    last_restart_at: Option<Instant>,
    pub counters: Counters,
}

impl Q931 {
    pub fn new(cfg: Config) -> Q931 {
        info!(span = cfg.span, role = ?cfg.role, timers = %cfg.timers.summary(), "q931 timers in force");
        Q931 {
            channels: ChannelTable::new(cfg.timeslots.iter().copied()),
            cfg,
            calls: BTreeMap::new(),
            next_value: 1,
            next_id: 1,
            link_up: false,
            establish_requested: false,
            queue: VecDeque::new(),
            dl_out: VecDeque::new(),
            events: VecDeque::new(),
            restart: None,
            last_restart_at: None,
            counters: Counters::default(),
        }
    }

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    pub fn channels(&self) -> &ChannelTable {
        &self.channels
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// The state of a call, `None` once it reached null.
    pub fn call_state(&self, id: CallId) -> Option<State> {
        self.calls.values().find(|c| c.id == id).map(|c| c.state)
    }

    /// The ids of the calls in progress.
    pub fn call_ids(&self) -> Vec<CallId> {
        self.calls.values().map(|c| c.id).collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    pub fn poll_dl(&mut self) -> Option<DlRequest> {
        self.dl_out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self
            .calls
            .values()
            .flat_map(|c| c.deadlines.iter().flatten().copied());
        calls.chain(self.restart.as_ref().map(|r| r.deadline)).min()
    }

    fn null(&self) -> State {
        match self.cfg.role {
            Role::User => State::U0Null,
            Role::Network => State::N0Null,
        }
    }

    fn st(&self, u: State, n: State) -> State {
        match self.cfg.role {
            Role::User => u,
            Role::Network => n,
        }
    }

    fn location(&self) -> Location {
        match self.cfg.role {
            Role::User => Location::USER,
            Role::Network => Location::PUBLIC_LOCAL,
        }
    }

    fn cause_ie(&self, c: Cause) -> CauseIe {
        CauseIe::new(c, self.location())
    }

    // ---- layer 2 ----

    pub fn handle_dl(&mut self, now: Instant, ind: DlIndication) {
        match ind {
            DlIndication::Established => self.on_established(now),
            DlIndication::Released => self.on_released(now),
            DlIndication::Data(bytes) => self.handle_message(now, &bytes),
        }
    }

    fn send(&mut self, m: &Message) {
        let Ok(bytes) = m.to_vec() else {
            warn!(span = self.cfg.span, msg = ?m.msg_type, "q931 message too long, not sent");
            return;
        };
        self.send_bytes(bytes);
    }

    fn send_bytes(&mut self, bytes: Vec<u8>) {
        if self.link_up {
            self.dl_out.push_back(DlRequest::Data(bytes));
            return;
        }
        // Q.931 §5.9: a message to send and no link: ask for establishment.
        if self.queue.len() >= QUEUE_MAX {
            self.counters.queue_overflow += 1;
        } else {
            self.queue.push_back(bytes);
        }
        if !self.establish_requested {
            self.establish_requested = true;
            self.dl_out.push_back(DlRequest::Establish);
        }
    }

    fn on_established(&mut self, now: Instant) {
        self.link_up = true;
        self.establish_requested = false;
        info!(span = self.cfg.span, "q931 data link established");
        self.events.push_back(Event::LinkUp);
        while let Some(b) = self.queue.pop_front() {
            self.dl_out.push_back(DlRequest::Data(b));
        }
        // §5.9: survivors of a link failure are reconciled by STATUS ENQUIRY.
        let survivors: Vec<Key> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadlines[TimerId::T309 as usize].is_some())
            .map(|(k, _)| *k)
            .collect();
        for k in survivors {
            self.stop(k, TimerId::T309);
            self.send_status_enquiry(now, k);
        }
        if self.cfg.restart_on_establish {
            let due = self
                .last_restart_at
                .is_none_or(|t| now.duration_since(t) >= self.cfg.timers.get(TimerId::T316));
            if due && self.restart.is_none() {
                let _ = self.restart(now, RestartClass::ALL_INTERFACES, &[]);
            } else {
                info!(
                    span = self.cfg.span,
                    "q931 restart on establishment skipped: rate limit"
                );
            }
        }
    }

    fn on_released(&mut self, now: Instant) {
        if !self.link_up && self.establish_requested {
            return;
        }
        self.link_up = false;
        warn!(
            span = self.cfg.span,
            calls = self.calls.len(),
            "q931 data link released"
        );
        self.events.push_back(Event::LinkDown);
        let keys: Vec<Key> = self.calls.keys().copied().collect();
        for k in keys {
            let active = self.calls.get(&k).is_some_and(|c| c.state.is_active());
            if active {
                // §5.9: active calls survive for T309.
                if self
                    .calls
                    .get(&k)
                    .is_some_and(|c| c.deadlines[TimerId::T309 as usize].is_none())
                {
                    self.start(now, k, TimerId::T309);
                }
            } else {
                self.release_call(k, Cause::TEMPORARY_FAILURE, ClearedBy::Link);
            }
        }
        self.queue.clear();
        self.establish_requested = true;
        self.dl_out.push_back(DlRequest::Establish);
    }

    // ---- timers ----

    fn start(&mut self, now: Instant, k: Key, t: TimerId) {
        let d = self.cfg.timers.get(t);
        if let Some(c) = self.calls.get_mut(&k) {
            c.deadlines[t as usize] = Some(now + d);
        }
    }

    fn stop(&mut self, k: Key, t: TimerId) {
        if let Some(c) = self.calls.get_mut(&k) {
            c.deadlines[t as usize] = None;
        }
    }

    fn stop_call_timers(&mut self, k: Key) {
        if let Some(c) = self.calls.get_mut(&k) {
            // T309 and T322 are not state timers.
            for t in [
                TimerId::T301,
                TimerId::T303,
                TimerId::T305,
                TimerId::T308,
                TimerId::T310,
                TimerId::T313,
                TimerId::T302,
                TimerId::T304,
            ] {
                c.deadlines[t as usize] = None;
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (k, c) in &self.calls {
            for (i, d) in c.deadlines.iter().enumerate() {
                if d.is_some_and(|d| d <= now) {
                    expired.push((*k, TIMERS[i].id));
                }
            }
        }
        for (k, t) in expired {
            self.stop(k, t);
            if self.calls.contains_key(&k) {
                self.on_timer(now, k, t);
            }
        }
        if self.restart.as_ref().is_some_and(|r| r.deadline <= now) {
            self.on_t316(now);
        }
    }

    fn on_timer(&mut self, now: Instant, k: Key, t: TimerId) {
        let Some(c) = self.calls.get_mut(&k) else {
            return;
        };
        let again = c.retransmitted[t as usize];
        c.retransmitted[t as usize] = true;
        info!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), state = %c.state.short(), timer = t.spec().name, "q931 timer expired");
        match t {
            // §5.1.1 / §5.2.1: SETUP retransmitted once, the stored bytes.
            TimerId::T303 if !again => {
                if let Some(b) = c.setup.clone() {
                    self.send_bytes(b);
                }
                self.start(now, k, t);
            }
            TimerId::T303 => {
                let m = self.msg(k, Mt::RELEASE_COMPLETE).with(
                    IeId::CAUSE,
                    IeBody::Cause(self.cause_ie(Cause::RECOVERY_ON_TIMER_EXPIRY)),
                );
                self.send(&m);
                self.release_call(k, Cause::RECOVERY_ON_TIMER_EXPIRY, ClearedBy::Timer(t));
            }
            // §5.1.6, §5.1.7, §5.2.7: no progress: clear with cause 102.
            TimerId::T310 | TimerId::T301 | TimerId::T313 => {
                self.send_disconnect_by(
                    now,
                    k,
                    Cause::RECOVERY_ON_TIMER_EXPIRY,
                    ClearedBy::Timer(t),
                );
            }
            // §5.2.4 / §5.1.3: T302: digits collected so far are complete,
            // or clear with cause 28 if there are none.
            TimerId::T302 => self.digits_complete(now, k),
            // §5.1.3: T304: overlap sending went quiet.
            TimerId::T304 => self.send_disconnect_by(
                now,
                k,
                Cause::RECOVERY_ON_TIMER_EXPIRY,
                ClearedBy::Timer(t),
            ),
            // §5.3.3 / §5.3.4: T305: RELEASE with the cause of the DISCONNECT.
            TimerId::T305 => {
                let cause = c.cause.clone();
                self.send_release(now, k, cause);
            }
            // §5.3.3: T308 once: RELEASE again; twice: release the call reference.
            TimerId::T308 if !again => {
                let cause = c.cause.clone();
                let m = self
                    .msg(k, Mt::RELEASE)
                    .with(IeId::CAUSE, IeBody::Cause(cause));
                self.send(&m);
                self.start(now, k, t);
            }
            TimerId::T308 => {
                let cause = c.cause.cause;
                self.release_call(k, cause, ClearedBy::Timer(t));
            }
            // §5.9: the link did not come back in time.
            TimerId::T309 => {
                self.release_call(k, Cause::DESTINATION_OUT_OF_ORDER, ClearedBy::Timer(t))
            }
            // §5.8.10: STATUS ENQUIRY retransmitted once, then clear (41).
            TimerId::T322 if !again => {
                let m = self.msg(k, Mt::STATUS_ENQUIRY);
                self.send(&m);
                self.start(now, k, t);
            }
            TimerId::T322 => {
                self.send_disconnect_by(now, k, Cause::TEMPORARY_FAILURE, ClearedBy::Timer(t))
            }
            _ => {}
        }
    }

    // ---- state ----

    fn set_state(&mut self, k: Key, new: State) {
        let span = self.cfg.span;
        if let Some(c) = self.calls.get_mut(&k) {
            if c.state != new {
                info!(span, call = format_args!("{:#06x}", k.value), id = c.id.0, ts = ?c.channel, "q931 state {} -> {}", c.state.short(), new.short());
            }
            c.state = new;
        }
    }

    fn msg(&self, k: Key, t: Mt) -> Message {
        // Q.931 §4.3: the originating side sends flag 0.
        Message::new(CallReference::pri(k.value, !k.ours), t)
    }

    /// The call goes to null: channel idle, call reference free, event out.
    fn release_call(&mut self, k: Key, cause: Cause, by: ClearedBy) {
        let null = self.null();
        self.set_state(k, null);
        let Some(c) = self.calls.remove(&k) else {
            return;
        };
        // "Who cleared" is whoever started clearing, not the timer that
        // finally released the call reference.
        let by = c.cleared_by.unwrap_or(by);
        if let Some(ts) = c.channel
            && self.channels.get(ts) != Some(ChannelState::Restarting)
        {
            self.channels.set(ts, ChannelState::Idle);
        }
        self.events.push_back(Event::Released {
            id: c.id,
            cause,
            by,
        });
    }

    fn send_disconnect(&mut self, now: Instant, k: Key, cause: Cause) {
        self.send_disconnect_by(now, k, cause, ClearedBy::Local);
    }

    fn send_disconnect_by(&mut self, now: Instant, k: Key, cause: Cause, by: ClearedBy) {
        self.stop_call_timers(k);
        let ie = self.cause_ie(cause);
        if let Some(c) = self.calls.get_mut(&k) {
            c.cause = ie.clone();
            c.cleared_by.get_or_insert(by);
        }
        let m = self
            .msg(k, Mt::DISCONNECT)
            .with(IeId::CAUSE, IeBody::Cause(ie));
        self.send(&m);
        let s = self.st(State::U11DisconnectRequest, State::N12DisconnectIndication);
        self.set_state(k, s);
        self.start(now, k, TimerId::T305);
    }

    fn send_release(&mut self, now: Instant, k: Key, cause: CauseIe) {
        self.stop_call_timers(k);
        if let Some(c) = self.calls.get_mut(&k) {
            c.cause = cause.clone();
            c.cleared_by.get_or_insert(ClearedBy::Local);
        }
        let m = self
            .msg(k, Mt::RELEASE)
            .with(IeId::CAUSE, IeBody::Cause(cause));
        self.send(&m);
        let s = self.st(State::U19ReleaseRequest, State::N19ReleaseRequest);
        self.set_state(k, s);
        self.start(now, k, TimerId::T308);
    }

    fn send_status(&mut self, cr: CallReference, state: u8, cause: Cause, diagnostic: &[u8]) {
        let m = Message::new(cr, Mt::STATUS)
            .with(
                IeId::CAUSE,
                IeBody::Cause(self.cause_ie(cause).with_diagnostics(diagnostic)),
            )
            .with(
                IeId::CALL_STATE,
                IeBody::CallState(CallStateIe {
                    coding_standard: 0,
                    value: state,
                }),
            );
        self.send(&m);
    }

    fn send_status_enquiry(&mut self, now: Instant, k: Key) {
        let m = self.msg(k, Mt::STATUS_ENQUIRY);
        self.send(&m);
        if let Some(c) = self.calls.get_mut(&k) {
            c.retransmitted[TimerId::T322 as usize] = false;
        }
        self.start(now, k, TimerId::T322);
    }

    fn key_of(&self, id: CallId) -> Option<Key> {
        self.calls.iter().find(|(_, c)| c.id == id).map(|(k, _)| *k)
    }

    fn new_call(&mut self, k: Key, id: CallId, state: State, channel: Option<u8>) {
        self.calls.insert(
            k,
            Call {
                id,
                state,
                channel,
                deadlines: [None; TIMERS.len()],
                setup: None,
                retransmitted: [false; TIMERS.len()],
                cause: self.cause_ie(Cause::NORMAL_UNSPECIFIED),
                request: None,
                retried: false,
                cleared_by: None,
                incoming: None,
            },
        );
        info!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), id = id.0, ts = ?channel, "q931 state {} -> {}", self.null().short(), state.short());
    }

    fn allocate_value(&mut self) -> u16 {
        loop {
            let v = self.next_value;
            self.next_value = if v >= 0x7FFF { 1 } else { v + 1 };
            if !self.calls.contains_key(&Key {
                value: v,
                ours: true,
            }) {
                return v;
            }
        }
    }

    // ---- commands ----

    /// Places a call: SETUP en bloc (with sending complete), state U1/N6, T303.
    pub fn place_call(&mut self, now: Instant, req: PlaceCall) -> Result<CallId, CommandError> {
        let id = CallId(self.next_id);
        self.next_id += 1;
        self.send_setup(now, id, req)?;
        Ok(id)
    }

    fn send_setup(&mut self, now: Instant, id: CallId, req: PlaceCall) -> Result<(), CommandError> {
        let ts = match req.channel {
            Some(ts) if self.channels.is_idle(ts) => ts,
            Some(_) => return Err(CommandError::NoChannel),
            None => self
                .channels
                .hunt(self.cfg.hunt)
                .ok_or(CommandError::NoChannel)?,
        };
        self.channels.set(ts, ChannelState::Reserved);
        let k = Key {
            value: self.allocate_value(),
            ours: true,
        };
        let mut m = self.msg(k, Mt::SETUP);
        if req.sending_complete {
            m = m.with(IeId::SENDING_COMPLETE, IeBody::SendingComplete);
        }
        m = m
            .with(
                IeId::BEARER_CAPABILITY,
                IeBody::BearerCapability(req.bearer.clone()),
            )
            .with(
                IeId::CHANNEL_IDENTIFICATION,
                IeBody::ChannelId(ChannelId::pri(ts, req.exclusive)),
            );
        if let Some(c) = &req.calling {
            m = m.with(IeId::CALLING_PARTY_NUMBER, IeBody::Number(c.clone()));
        }
        m = m.with(
            IeId::CALLED_PARTY_NUMBER,
            IeBody::Number(req.called.clone()),
        );
        let bytes = m.to_vec().map_err(|_| CommandError::WrongState)?;
        let s = self.st(State::U1CallInitiated, State::N6CallPresent);
        self.new_call(k, id, s, Some(ts));
        if let Some(c) = self.calls.get_mut(&k) {
            c.setup = Some(bytes.clone());
            c.request = Some(req);
        }
        self.send_bytes(bytes);
        self.start(now, k, TimerId::T303);
        Ok(())
    }

    fn command_key(&self, id: CallId, allowed: &[u8]) -> Result<Key, CommandError> {
        let k = self.key_of(id).ok_or(CommandError::UnknownCall)?;
        let s = self.calls[&k].state.number();
        if allowed.contains(&s) {
            Ok(k)
        } else {
            Err(CommandError::WrongState)
        }
    }

    /// ALERTING for an incoming call (U9 -> U7, N3 -> N4).
    pub fn alerting(&mut self, _now: Instant, id: CallId) -> Result<(), CommandError> {
        let k = self.command_key(id, &[3, 9])?;
        let m = self.msg(k, Mt::ALERTING);
        self.send(&m);
        let s = self.st(State::U7CallReceived, State::N4CallDelivered);
        self.set_state(k, s);
        Ok(())
    }

    /// PROGRESS with a progress indicator (1 or 8) for an incoming call.
    pub fn progress(
        &mut self,
        _now: Instant,
        id: CallId,
        description: u8,
    ) -> Result<(), CommandError> {
        let k = self.command_key(id, &[3, 4, 7, 9])?;
        let pi = ProgressIndicator {
            coding_standard: 0,
            location: self.location(),
            description,
        };
        let m = self
            .msg(k, Mt::PROGRESS)
            .with(IeId::PROGRESS_INDICATOR, IeBody::ProgressIndicator(pi));
        self.send(&m);
        Ok(())
    }

    /// CONNECT for an incoming call: user U8 (T313), network N10.
    pub fn connect(&mut self, now: Instant, id: CallId) -> Result<(), CommandError> {
        let k = self.command_key(id, &[3, 4, 7, 9])?;
        let m = self.msg(k, Mt::CONNECT);
        self.send(&m);
        match self.cfg.role {
            Role::User => {
                self.set_state(k, State::U8ConnectRequest);
                self.start(now, k, TimerId::T313);
            }
            Role::Network => {
                self.set_state(k, State::N10Active);
                self.events.push_back(Event::Connected { id });
            }
        }
        Ok(())
    }

    /// DISCONNECT with `cause` (§5.3.2 / §5.3.4) from any state but null
    /// and the clearing states.
    pub fn disconnect(
        &mut self,
        now: Instant,
        id: CallId,
        cause: Cause,
    ) -> Result<(), CommandError> {
        let k = self.command_key(id, &[1, 2, 3, 4, 6, 7, 8, 9, 10, 25])?;
        self.send_disconnect(now, k, cause);
        Ok(())
    }

    /// RELEASE with `cause` (e.g. after a DISCONNECT with in-band tones).
    pub fn release(&mut self, now: Instant, id: CallId, cause: Cause) -> Result<(), CommandError> {
        let k = self.command_key(id, &[1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 25])?;
        let ie = self.cause_ie(cause);
        self.send_release(now, k, ie);
        Ok(())
    }

    /// Busy-out of the span's B-channels (the call module's, while no core
    /// peer can take calls): idle channels, and channels as their calls
    /// end, go out of service, so neither our hunting nor an incoming
    /// SETUP takes them (a SETUP naming one is refused with cause 44, or 34
    /// when it lets us choose and none is left); off gives them back. No
    /// message is sent: EN 300 403 has no SERVICE message.
    pub fn set_busy_out(&mut self, on: bool) {
        if self.channels.busy_out() == on {
            return;
        }
        let changed = self.channels.set_busy_out(on);
        info!(
            span = self.cfg.span,
            on,
            channels = changed,
            "q931 busy-out"
        );
    }

    /// STATUS ENQUIRY for a call (§5.8.10), T322 running until STATUS.
    pub fn status_enquiry(&mut self, now: Instant, id: CallId) -> Result<(), CommandError> {
        let k = self.key_of(id).ok_or(CommandError::UnknownCall)?;
        self.send_status_enquiry(now, k);
        Ok(())
    }

    // ---- received messages ----

    fn handle_message(&mut self, now: Instant, bytes: &[u8]) {
        let d = match Message::parse(bytes) {
            Ok(d) => d,
            Err(e) => {
                // §5.8.1-5.8.3: ignored.
                self.counters.header_errors += 1;
                debug!(span = self.cfg.span, error = %e, "q931 message ignored");
                return;
            }
        };
        let cr = d.message.call_ref;
        if cr.is_dummy() {
            debug!(span = self.cfg.span, msg = ?d.message.msg_type, "q931 dummy call reference ignored");
            return;
        }
        if cr.is_global() {
            self.on_global(now, &d);
            return;
        }
        let dir = match self.cfg.role {
            Role::User => Direction::NetworkToUser,
            Role::Network => Direction::UserToNetwork,
        };
        let verdict = check(&d, dir);
        let k = Key {
            value: cr.value,
            ours: cr.flag,
        };
        if !self.calls.contains_key(&k) {
            self.on_unknown_cr(now, k, &d, verdict);
            return;
        }
        let m = &d.message;
        match verdict {
            Verdict::Accept => {}
            Verdict::AcceptAndReport(p) => {
                self.counters.reported += 1;
                if !matches!(
                    m.msg_type,
                    Mt::DISCONNECT | Mt::RELEASE | Mt::RELEASE_COMPLETE
                ) {
                    let s = self.calls[&k].state.number();
                    self.send_status(self.msg(k, Mt::STATUS).call_ref, s, p.cause, &p.diagnostic);
                }
            }
            Verdict::Reject(p) => {
                self.counters.rejected += 1;
                warn!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), msg = ?m.msg_type, cause = %p.cause, "q931 message rejected");
                // §5.8.6.1: the answer depends on the message.
                match m.msg_type {
                    Mt::DISCONNECT => {
                        let ie = self.cause_ie(p.cause);
                        self.send_release(now, k, ie);
                    }
                    Mt::RELEASE => {
                        let r = self
                            .msg(k, Mt::RELEASE_COMPLETE)
                            .with(IeId::CAUSE, IeBody::Cause(self.cause_ie(p.cause)));
                        self.send(&r);
                        self.release_call(k, p.cause, ClearedBy::Protocol);
                    }
                    Mt::RELEASE_COMPLETE => self.on_release_complete(now, k, m),
                    _ => {
                        let s = self.calls[&k].state.number();
                        self.send_status(
                            self.msg(k, Mt::STATUS).call_ref,
                            s,
                            p.cause,
                            &p.diagnostic,
                        );
                    }
                }
                return;
            }
        }
        self.dispatch(now, k, m);
    }

    fn dispatch(&mut self, now: Instant, k: Key, m: &Message) {
        let state = self.calls[&k].state;
        let s = state.number();
        use State::*;
        match (m.msg_type, state) {
            (Mt::SETUP_ACKNOWLEDGE, U1CallInitiated | N6CallPresent) => {
                self.on_setup_ack(now, k, m)
            }
            (Mt::INFORMATION, U25OverlapReceiving | N2OverlapSending) => {
                self.on_information(now, k, m)
            }
            (
                Mt::CALL_PROCEEDING,
                U1CallInitiated | U2OverlapSending | N6CallPresent | N25OverlapReceiving,
            ) => self.on_proceeding(now, k, m),
            (
                Mt::ALERTING,
                U1CallInitiated
                | U2OverlapSending
                | N25OverlapReceiving
                | U3OutgoingCallProceeding
                | N6CallPresent
                | N9IncomingCallProceeding,
            ) => self.on_alerting(now, k, m),
            (
                Mt::CONNECT,
                U1CallInitiated
                | U2OverlapSending
                | N25OverlapReceiving
                | U3OutgoingCallProceeding
                | U4CallDelivered
                | N6CallPresent
                | N9IncomingCallProceeding
                | N7CallReceived,
            ) => self.on_connect(now, k, m),
            (Mt::CONNECT_ACKNOWLEDGE, U8ConnectRequest) => self.on_connect_ack(k),
            // EN 300 403-1 §5.1.8: CONNECT ACKNOWLEDGE from the calling user
            // is optional and the network takes no action on it in N10. It
            // also crosses a DISCONNECT or RELEASE we send right after
            // CONNECT (found against libpri, which logs our STATUS cause 101
            // as an error): that is a race, not a §5.8.4 state error.
            (Mt::CONNECT_ACKNOWLEDGE, N10Active | N12DisconnectIndication | N19ReleaseRequest) => {}
            (
                Mt::PROGRESS,
                U1CallInitiated
                | U3OutgoingCallProceeding
                | U4CallDelivered
                | N6CallPresent
                | N9IncomingCallProceeding
                | N7CallReceived
                | U12DisconnectIndication
                | N12DisconnectIndication,
            ) => self.on_progress(k, m),
            (Mt::DISCONNECT, U11DisconnectRequest | N12DisconnectIndication) => {
                // §5.3.5: clear collision: both sent DISCONNECT.
                let cause = self.calls[&k].cause.clone();
                self.send_release(now, k, cause);
            }
            (Mt::DISCONNECT, U19ReleaseRequest | N19ReleaseRequest) => {}
            (Mt::DISCONNECT, _) => self.on_disconnect(now, k, m),
            (Mt::RELEASE, _) => self.on_release(k, m),
            (Mt::RELEASE_COMPLETE, _) => self.on_release_complete(now, k, m),
            (Mt::STATUS_ENQUIRY, _) => {
                self.send_status(
                    self.msg(k, Mt::STATUS).call_ref,
                    s,
                    Cause::STATUS_ENQUIRY_RESPONSE,
                    &[],
                );
            }
            (Mt::STATUS, _) => self.on_status(now, k, m),
            (Mt::INFORMATION | Mt::NOTIFY | Mt::FACILITY, _) => {
                debug!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), msg = ?m.msg_type, "q931 message noted");
            }
            // §5.8.3.2 f: SETUP on a call reference in use is ignored.
            (Mt::SETUP, _) => {}
            _ => {
                // §5.8.4: message not compatible with the call state.
                self.counters.unexpected_in_state += 1;
                warn!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), msg = ?m.msg_type, state = s, "q931 unexpected message");
                self.send_status(
                    self.msg(k, Mt::STATUS).call_ref,
                    s,
                    Cause::MESSAGE_NOT_COMPATIBLE_WITH_STATE,
                    &[m.msg_type.0],
                );
            }
        }
    }

    /// The channel of a first answer to our SETUP (§5.1.2: the network may
    /// choose another channel if ours was preferred).
    fn adopt_channel(&mut self, k: Key, m: &Message) {
        let Some(ts) = m.channel_id().and_then(|c| c.timeslot()) else {
            if let Some(ts) = self.calls[&k].channel {
                self.channels.set(ts, ChannelState::Busy);
            }
            return;
        };
        let old = self.calls[&k].channel;
        if old != Some(ts) {
            if let Some(o) = old
                && self.channels.get(o) == Some(ChannelState::Reserved)
            {
                self.channels.set(o, ChannelState::Idle);
            }
            if let Some(c) = self.calls.get_mut(&k) {
                c.channel = Some(ts);
            }
        }
        self.channels.set(ts, ChannelState::Busy);
    }

    fn on_proceeding(&mut self, now: Instant, k: Key, m: &Message) {
        self.stop(k, TimerId::T303);
        self.stop(k, TimerId::T304);
        self.adopt_channel(k, m);
        let s = self.st(
            State::U3OutgoingCallProceeding,
            State::N9IncomingCallProceeding,
        );
        self.set_state(k, s);
        self.start(now, k, TimerId::T310);
        let c = &self.calls[&k];
        if let Some(ts) = c.channel {
            self.events.push_back(Event::Proceeding {
                id: c.id,
                channel: ts,
            });
        }
        self.progress_events(k, m);
    }

    /// ALERTING or CONNECT answering our SETUP first (§5.1.5, §5.1.8: the
    /// peer may skip CALL PROCEEDING), or naming another channel than the
    /// one reported: the call module learns the channel here, since these
    /// events carry none.
    fn adopt_and_report_channel(&mut self, k: Key, m: &Message) {
        let Some(c) = self.calls.get(&k) else {
            return;
        };
        let first = matches!(c.state, State::U1CallInitiated | State::N6CallPresent);
        let before = c.channel;
        self.adopt_channel(k, m);
        let c = &self.calls[&k];
        if let Some(channel) = c.channel
            && (first || c.channel != before)
        {
            self.events
                .push_back(Event::ChannelSelected { id: c.id, channel });
        }
    }

    fn on_alerting(&mut self, now: Instant, k: Key, m: &Message) {
        self.stop(k, TimerId::T303);
        self.stop(k, TimerId::T304);
        self.stop(k, TimerId::T310);
        self.adopt_and_report_channel(k, m);
        let s = self.st(State::U4CallDelivered, State::N7CallReceived);
        self.set_state(k, s);
        self.start(now, k, TimerId::T301);
        let id = self.calls[&k].id;
        self.events.push_back(Event::Alerting { id });
        self.progress_events(k, m);
    }

    fn on_connect(&mut self, _now: Instant, k: Key, m: &Message) {
        self.stop_call_timers(k);
        self.adopt_and_report_channel(k, m);
        let ack = self.msg(k, Mt::CONNECT_ACKNOWLEDGE);
        self.send(&ack);
        let s = self.st(State::U10Active, State::N10Active);
        self.set_state(k, s);
        let id = self.calls[&k].id;
        self.events.push_back(Event::Connected { id });
    }

    fn on_connect_ack(&mut self, k: Key) {
        self.stop(k, TimerId::T313);
        self.set_state(k, State::U10Active);
        let id = self.calls[&k].id;
        self.events.push_back(Event::Connected { id });
    }

    fn on_progress(&mut self, k: Key, m: &Message) {
        // §5.1.6: PROGRESS stops T310 on the calling side.
        self.stop(k, TimerId::T310);
        self.progress_events(k, m);
    }

    fn progress_events(&mut self, k: Key, m: &Message) {
        let id = self.calls[&k].id;
        for p in m.progress() {
            self.events.push_back(Event::Progress {
                id,
                description: p.description,
            });
        }
    }

    fn on_disconnect(&mut self, now: Instant, k: Key, m: &Message) {
        let cause = m.cause().map_or(Cause::NORMAL_UNSPECIFIED, |c| c.cause);
        self.peer_clearing(k, cause, true);
        let s = self.st(State::U12DisconnectIndication, State::N11DisconnectRequest);
        self.set_state(k, s);
        // §5.3.4: answer with RELEASE (in-band tones are not kept here).
        let ie = m.cause().cloned().unwrap_or_else(|| self.cause_ie(cause));
        self.send_release(now, k, ie);
    }

    fn on_release(&mut self, k: Key, m: &Message) {
        let s = self.calls[&k].state.number();
        // Without a cause, the cause of the clearing so far (§5.3.4).
        let cause = m.cause().map_or(self.calls[&k].cause.cause, |c| c.cause);
        // §5.3.5: RELEASE in the release request state is a clear collision:
        // release the call reference without RELEASE COMPLETE.
        if s != 19 {
            let rc = self.msg(k, Mt::RELEASE_COMPLETE);
            self.send(&rc);
        }
        // In U11/U12 (N11/N12) the call module already heard of the clearing.
        self.peer_clearing(k, cause, !matches!(s, 11 | 12 | 19));
        self.release_call(k, cause, ClearedBy::Remote);
    }

    /// The peer started (or joined) clearing: note who cleared first, and
    /// tell the call module with `Disconnected` when `report`.
    fn peer_clearing(&mut self, k: Key, cause: Cause, report: bool) {
        if let Some(c) = self.calls.get_mut(&k) {
            c.cleared_by.get_or_insert(ClearedBy::Remote);
            if report {
                self.events.push_back(Event::Disconnected {
                    id: c.id,
                    cause,
                    by: ClearedBy::Remote,
                });
            }
        }
    }

    fn on_release_complete(&mut self, now: Instant, k: Key, m: &Message) {
        let c = &self.calls[&k];
        let cause = m.cause().map_or(c.cause.cause, |c| c.cause);
        let by = ClearedBy::Remote;
        // EN 300 403 §5.1.2 / Q.931 §5.7: the user side retries a call that
        // lost its channel to the network (cause 44) on another channel.
        if self.cfg.role == Role::User
            && c.state == State::U1CallInitiated
            && cause == Cause::REQUESTED_CHANNEL_NOT_AVAILABLE
            && !c.retried
        {
            let id = c.id;
            let mut req = c.request.clone();
            let lost = c.channel;
            self.calls.remove(&k);
            if let Some(ts) = lost
                && self.channels.get(ts) == Some(ChannelState::Reserved)
            {
                self.channels.set(ts, ChannelState::Idle);
            }
            if let Some(r) = req.as_mut() {
                r.channel = None;
                info!(
                    span = self.cfg.span,
                    id = id.0,
                    "q931 call collision: retrying on another channel"
                );
                if self.send_setup(now, id, r.clone()).is_ok()
                    && let Some(k2) = self.key_of(id)
                    && let Some(c2) = self.calls.get_mut(&k2)
                {
                    c2.retried = true;
                    return;
                }
            }
            self.events.push_back(Event::Released {
                id,
                cause,
                by: ClearedBy::Remote,
            });
            return;
        }
        self.release_call(k, cause, by);
    }

    /// §5.8.11: STATUS received.
    fn on_status(&mut self, now: Instant, k: Key, m: &Message) {
        let Some(peer) = m.call_state() else { return };
        self.stop(k, TimerId::T322);
        let ours = self.calls[&k].state.number();
        if peer == 0 {
            // The peer has no call: release ours.
            self.release_call(
                k,
                Cause::MESSAGE_NOT_COMPATIBLE_WITH_STATE,
                ClearedBy::Protocol,
            );
            return;
        }
        // Clearing states are compatible with each other; active with active.
        let clearing = |s: u8| matches!(s, 11 | 12 | 19);
        let incompatible = (ours == 10) != (peer == 10) && !(clearing(ours) || clearing(peer));
        if incompatible {
            warn!(
                span = self.cfg.span,
                call = format_args!("{:#06x}", k.value),
                ours,
                peer,
                "q931 call states incompatible"
            );
            let ie = self.cause_ie(Cause::MESSAGE_NOT_COMPATIBLE_WITH_STATE);
            self.send_release(now, k, ie);
        }
    }

    /// §5.8.3.2: a call reference we do not know.
    fn on_unknown_cr(&mut self, now: Instant, k: Key, d: &Decoded, verdict: Verdict) {
        let m = &d.message;
        let cr = CallReference::pri(k.value, !k.ours);
        match m.msg_type {
            Mt::SETUP if !k.ours => match verdict {
                Verdict::Reject(p) => {
                    self.counters.rejected += 1;
                    let rc = Message::new(cr, Mt::RELEASE_COMPLETE).with(
                        IeId::CAUSE,
                        IeBody::Cause(self.cause_ie(p.cause).with_diagnostics(&p.diagnostic)),
                    );
                    self.send(&rc);
                }
                _ => self.on_setup(now, k, m),
            },
            Mt::RELEASE_COMPLETE => {}
            Mt::STATUS_ENQUIRY => self.send_status(cr, 0, Cause::STATUS_ENQUIRY_RESPONSE, &[]),
            Mt::STATUS if m.call_state() == Some(0) => {}
            _ => {
                self.counters.unknown_call_reference += 1;
                let cause = if m.msg_type == Mt::STATUS {
                    Cause::MESSAGE_NOT_COMPATIBLE_WITH_STATE
                } else {
                    Cause::INVALID_CALL_REFERENCE
                };
                debug!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), msg = ?m.msg_type, "q931 unknown call reference");
                let rc = Message::new(cr, Mt::RELEASE_COMPLETE)
                    .with(IeId::CAUSE, IeBody::Cause(self.cause_ie(cause)));
                self.send(&rc);
            }
        }
    }

    /// An incoming SETUP (§5.1 network side / §5.2 user side): channel
    /// selection, then CALL PROCEEDING at once (en bloc).
    fn on_setup(&mut self, now: Instant, k: Key, m: &Message) {
        let cr = CallReference::pri(k.value, true);
        let want = m.channel_id();
        let exclusive = want.is_some_and(|c| c.exclusive);
        let asked = want.and_then(|c| c.timeslot());
        let ts = match asked {
            Some(ts) if !self.channels.exists(ts) => Err(Cause::IDENTIFIED_CHANNEL_DOES_NOT_EXIST),
            Some(ts) if self.channels.is_idle(ts) => Ok(ts),
            // Glare on the user side: the network wins (EN 300 403 §5.2.3.1);
            // our own call on that channel will be refused with cause 44.
            Some(ts)
                if self.cfg.role == Role::User
                    && self.channels.get(ts) == Some(ChannelState::Reserved) =>
            {
                if let Some(c) = self
                    .calls
                    .values_mut()
                    .find(|c| c.channel == Some(ts) && c.state == State::U1CallInitiated)
                {
                    c.channel = None;
                }
                Ok(ts)
            }
            Some(_) if exclusive => Err(Cause::REQUESTED_CHANNEL_NOT_AVAILABLE),
            _ => self
                .channels
                .hunt(self.cfg.hunt)
                .ok_or(Cause::NO_CIRCUIT_AVAILABLE),
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(cause) => {
                info!(span = self.cfg.span, call = format_args!("{:#06x}", k.value), ts = ?asked, cause = %cause, "q931 incoming call refused");
                let rc = Message::new(cr, Mt::RELEASE_COMPLETE)
                    .with(IeId::CAUSE, IeBody::Cause(self.cause_ie(cause)));
                self.send(&rc);
                return;
            }
        };
        let id = CallId(self.next_id);
        self.next_id += 1;
        self.channels.set(ts, ChannelState::Busy);
        let s = self.st(State::U6CallPresent, State::N1CallInitiated);
        self.new_call(k, id, s, Some(ts));
        let event = Event::IncomingCall {
            id,
            called: m.number(IeId::CALLED_PARTY_NUMBER).cloned(),
            calling: m.number(IeId::CALLING_PARTY_NUMBER).cloned(),
            bearer: m.bearer().cloned(),
            channel: ts,
        };
        if self.cfg.overlap_receiving && !m.sending_complete() && !self.number_complete(&event) {
            // §5.2.4 / §5.1.3: overlap: SETUP ACKNOWLEDGE, collect digits under T302.
            let ack = self.msg(k, Mt::SETUP_ACKNOWLEDGE).with(
                IeId::CHANNEL_IDENTIFICATION,
                IeBody::ChannelId(ChannelId::pri(ts, true)),
            );
            self.send(&ack);
            let s = self.st(State::U25OverlapReceiving, State::N2OverlapSending);
            self.set_state(k, s);
            if let Some(c) = self.calls.get_mut(&k) {
                c.incoming = Some(event);
            }
            self.start(now, k, TimerId::T302);
            return;
        }
        let cp = self.msg(k, Mt::CALL_PROCEEDING).with(
            IeId::CHANNEL_IDENTIFICATION,
            IeBody::ChannelId(ChannelId::pri(ts, true)),
        );
        self.send(&cp);
        let s = self.st(
            State::U9IncomingCallProceeding,
            State::N3OutgoingCallProceeding,
        );
        self.set_state(k, s);
        self.events.push_back(event);
    }

    fn on_setup_ack(&mut self, now: Instant, k: Key, m: &Message) {
        self.stop(k, TimerId::T303);
        self.adopt_channel(k, m);
        let s = self.st(State::U2OverlapSending, State::N25OverlapReceiving);
        self.set_state(k, s);
        self.start(now, k, TimerId::T304);
        let c = &self.calls[&k];
        if let Some(ts) = c.channel {
            self.events.push_back(Event::SetupAcknowledged {
                id: c.id,
                channel: ts,
            });
        }
    }

    /// Overlap receiving: more digits (§5.2.4 / §5.1.3).
    fn on_information(&mut self, now: Instant, k: Key, m: &Message) {
        if let Some(n) = m.number(IeId::CALLED_PARTY_NUMBER)
            && let Some(c) = self.calls.get_mut(&k)
            && let Some(Event::IncomingCall { called, .. }) = c.incoming.as_mut()
        {
            match called {
                Some(have) => have.digits.extend_from_slice(&n.digits),
                None => *called = Some(n.clone()),
            }
        }
        let complete = self
            .calls
            .get(&k)
            .and_then(|c| c.incoming.as_ref())
            .is_some_and(|e| self.number_complete(e));
        if m.sending_complete() || complete {
            // §5.1.3 / §5.2.4: Sending Complete, or the number is known to
            // be complete: stop T302 and go on without waiting for it.
            self.stop(k, TimerId::T302);
            self.digits_complete(now, k);
        } else {
            self.start(now, k, TimerId::T302);
        }
    }

    /// Whether an incoming call's called number is complete by the call
    /// layer's test ([`Config::number_complete`]), without Sending Complete.
    fn number_complete(&self, incoming: &Event) -> bool {
        let Event::IncomingCall {
            called: Some(called),
            calling,
            ..
        } = incoming
        else {
            return false;
        };
        let Some(test) = &self.cfg.number_complete else {
            return false;
        };
        let calling = calling.as_ref().map(|n| n.digits_str());
        let complete =
            !called.digits.is_empty() && test.test(&called.digits_str(), calling.as_deref());
        if complete {
            debug!(
                span = self.cfg.span,
                digits = called.digits.len(),
                "q931 called number complete without Sending Complete"
            );
        }
        complete
    }

    /// The digits of an overlap call are complete: CALL PROCEEDING and the
    /// incoming call event; with no digits at all, clear with cause 28.
    fn digits_complete(&mut self, now: Instant, k: Key) {
        let Some(c) = self.calls.get_mut(&k) else {
            return;
        };
        let Some(event) = c.incoming.take() else {
            return;
        };
        let has_digits =
            matches!(&event, Event::IncomingCall { called: Some(n), .. } if !n.digits.is_empty());
        if !has_digits {
            self.send_disconnect_by(
                now,
                k,
                Cause::INVALID_NUMBER_FORMAT,
                ClearedBy::Timer(TimerId::T302),
            );
            return;
        }
        let cp = self.msg(k, Mt::CALL_PROCEEDING);
        self.send(&cp);
        let s = self.st(
            State::U9IncomingCallProceeding,
            State::N3OutgoingCallProceeding,
        );
        self.set_state(k, s);
        self.events.push_back(event);
    }

    /// INFORMATION with more called-number digits for our overlap call
    /// (U2 / N25), restarting T304; `sending_complete` ends the digits.
    pub fn information(
        &mut self,
        now: Instant,
        id: CallId,
        digits: &str,
        sending_complete: bool,
    ) -> Result<(), CommandError> {
        let k = self.key_of(id).ok_or(CommandError::UnknownCall)?;
        if self.calls[&k].state != self.st(State::U2OverlapSending, State::N25OverlapReceiving) {
            return Err(CommandError::WrongState);
        }
        let mut m = self.msg(k, Mt::INFORMATION);
        if sending_complete {
            m = m.with(IeId::SENDING_COMPLETE, IeBody::SendingComplete);
        }
        let n = super::ie_number::PartyNumber::new(0, 1, digits);
        m = m.with(IeId::CALLED_PARTY_NUMBER, IeBody::Number(n));
        self.send(&m);
        self.start(now, k, TimerId::T304);
        Ok(())
    }

    // ---- restart (§5.5) ----

    /// Sends RESTART for `class`: indicated channels (`timeslots`), the
    /// single interface or all interfaces (one message). Calls on those
    /// channels are cleared at once; T316 runs until RESTART ACKNOWLEDGE.
    pub fn restart(
        &mut self,
        now: Instant,
        class: RestartClass,
        timeslots: &[u8],
    ) -> Result<(), CommandError> {
        if self.restart.is_some() {
            return Err(CommandError::RestartPending);
        }
        let (timeslots, channel_id) = if class == RestartClass::INDICATED_CHANNELS {
            if timeslots.is_empty() || timeslots.iter().any(|t| !self.channels.exists(*t)) {
                return Err(CommandError::NoChannel);
            }
            let mut c = ChannelId::pri(timeslots[0], true);
            c.list = Some(ChannelList {
                coding_standard: 0,
                channel_type: ChannelId::B_CHANNEL_UNITS,
                channels: timeslots.to_vec(),
                map: false,
            });
            (timeslots.to_vec(), Some(c))
        } else {
            (self.channels.timeslots(), None)
        };
        self.clear_channels(&timeslots);
        for t in &timeslots {
            self.channels.set(*t, ChannelState::Restarting);
        }
        info!(span = self.cfg.span, class = class.0, channels = ?timeslots, "q931 sending RESTART");
        self.restart = Some(PendingRestart {
            class,
            timeslots,
            channel_id,
            deadline: now + self.cfg.timers.get(TimerId::T316),
            expiries: 0,
        });
        self.last_restart_at = Some(now);
        self.send_restart_msg();
        Ok(())
    }

    fn send_restart_msg(&mut self) {
        let Some(r) = &self.restart else { return };
        self.events.push_back(Event::RestartSent {
            class: r.class,
            timeslots: r.timeslots.clone(),
            attempt: r.expiries.saturating_add(1),
        });
        let mut m = Message::new(CallReference::global(false), Mt::RESTART);
        if let Some(c) = &r.channel_id {
            m = m.with(IeId::CHANNEL_IDENTIFICATION, IeBody::ChannelId(c.clone()));
        }
        m = m.with(IeId::RESTART_INDICATOR, IeBody::RestartIndicator(r.class));
        self.send(&m);
    }

    fn on_t316(&mut self, now: Instant) {
        let Some(r) = self.restart.as_mut() else {
            return;
        };
        r.expiries += 1;
        warn!(
            span = self.cfg.span,
            expiries = r.expiries,
            "q931 T316 expired"
        );
        if r.expiries > self.cfg.t316_retries {
            let r = self.restart.take();
            if let Some(r) = r {
                for t in &r.timeslots {
                    self.channels.set(*t, ChannelState::OutOfService);
                }
                self.events.push_back(Event::RestartFailed {
                    timeslots: r.timeslots,
                });
            }
            return;
        }
        r.deadline = now + self.cfg.timers.get(TimerId::T316);
        self.send_restart_msg();
    }

    /// Clears every call on `timeslots` locally (§5.5.2).
    fn clear_channels(&mut self, timeslots: &[u8]) {
        let keys: Vec<Key> = self
            .calls
            .iter()
            .filter(|(_, c)| c.channel.is_some_and(|t| timeslots.contains(&t)))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.release_call(k, Cause::TEMPORARY_FAILURE, ClearedBy::Restart);
        }
    }

    fn on_global(&mut self, _now: Instant, d: &Decoded) {
        let m = &d.message;
        let flag = !m.call_ref.flag;
        match m.msg_type {
            Mt::RESTART => {
                let Some(class) = m.restart_class() else {
                    self.send_status(
                        CallReference::global(flag),
                        0,
                        Cause::MANDATORY_IE_MISSING,
                        &[IeId::RESTART_INDICATOR.0],
                    );
                    return;
                };
                let timeslots: Vec<u8> = if class == RestartClass::INDICATED_CHANNELS {
                    match m.channel_id().and_then(|c| c.list.as_ref()) {
                        Some(l)
                            if !l.map && l.channels.iter().all(|t| self.channels.exists(*t)) =>
                        {
                            l.channels.clone()
                        }
                        Some(_) => {
                            self.send_status(
                                CallReference::global(flag),
                                0,
                                Cause::INVALID_IE_CONTENTS,
                                &[IeId::CHANNEL_IDENTIFICATION.0],
                            );
                            return;
                        }
                        None => {
                            self.send_status(
                                CallReference::global(flag),
                                0,
                                Cause::MANDATORY_IE_MISSING,
                                &[IeId::CHANNEL_IDENTIFICATION.0],
                            );
                            return;
                        }
                    }
                } else {
                    self.channels.timeslots()
                };
                info!(span = self.cfg.span, class = class.0, channels = ?timeslots, "q931 RESTART received");
                self.events.push_back(Event::RestartReceived {
                    class,
                    timeslots: timeslots.clone(),
                });
                self.clear_channels(&timeslots);
                for t in &timeslots {
                    self.channels.set(*t, ChannelState::Idle);
                }
                let mut ack = Message::new(CallReference::global(flag), Mt::RESTART_ACKNOWLEDGE);
                if let Some(c) = m.channel_id() {
                    ack = ack.with(IeId::CHANNEL_IDENTIFICATION, IeBody::ChannelId(c.clone()));
                }
                ack = ack.with(IeId::RESTART_INDICATOR, IeBody::RestartIndicator(class));
                self.send(&ack);
                self.events
                    .push_back(Event::ChannelsRestarted { timeslots });
            }
            Mt::RESTART_ACKNOWLEDGE => {
                let Some(r) = self.restart.take() else {
                    debug!(
                        span = self.cfg.span,
                        "q931 RESTART ACKNOWLEDGE without RESTART ignored"
                    );
                    return;
                };
                for t in &r.timeslots {
                    self.channels.set(*t, ChannelState::Idle);
                }
                info!(span = self.cfg.span, channels = ?r.timeslots, "q931 RESTART acknowledged");
                self.events.push_back(Event::ChannelsRestarted {
                    timeslots: r.timeslots,
                });
            }
            Mt::STATUS => {}
            _ => {
                // §5.8.3.2 / §5.5: other messages on the global call reference.
                self.send_status(
                    CallReference::global(flag),
                    0,
                    Cause::INVALID_CALL_REFERENCE,
                    &[],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked(role: Role, now: Instant) -> Q931 {
        let mut q = Q931::new(Config::e1(1, role));
        q.handle_dl(now, DlIndication::Established);
        q
    }

    /// The messages `q` asked layer 2 to send.
    fn sent(q: &mut Q931) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| q.poll_dl())
            .filter_map(|r| match r {
                DlRequest::Data(b) => Some(b),
                DlRequest::Establish => None,
            })
            .collect()
    }

    fn deliver(msgs: Vec<Vec<u8>>, to: &mut Q931, now: Instant) {
        for b in msgs {
            to.handle_dl(now, DlIndication::Data(b));
        }
    }

    fn types(msgs: &[Vec<u8>]) -> Vec<Mt> {
        msgs.iter()
            .map(|b| Message::parse(b).expect("ours parse").message.msg_type)
            .collect()
    }

    /// ALERTING or CONNECT as the first answer to our SETUP (the CALL
    /// PROCEEDING is skipped, here dropped): the call module learns the
    /// channel from `ChannelSelected`, once, before the answer's event.
    #[test]
    fn first_answer_without_call_proceeding_reports_the_channel() {
        let now = Instant::now();
        for (alerting, skip_proceeding) in [(true, true), (false, true), (true, false)] {
            let mut user = linked(Role::User, now);
            let mut net = linked(Role::Network, now);
            let a = user
                .place_call(now, PlaceCall::speech("999", None))
                .expect("call");
            deliver(sent(&mut user), &mut net, now);
            let (b, ts) = std::iter::from_fn(|| net.poll_event())
                .find_map(|e| match e {
                    Event::IncomingCall { id, channel, .. } => Some((id, channel)),
                    _ => None,
                })
                .expect("incoming call");
            let proceeding = sent(&mut net);
            assert_eq!(types(&proceeding), [Mt::CALL_PROCEEDING]);
            if !skip_proceeding {
                deliver(proceeding, &mut user, now);
            }
            if alerting {
                net.alerting(now, b).expect("alerting");
                deliver(sent(&mut net), &mut user, now);
            }
            net.connect(now, b).expect("connect");
            deliver(sent(&mut net), &mut user, now);
            let events: Vec<Event> = std::iter::from_fn(|| user.poll_event())
                .filter(|e| !matches!(e, Event::LinkUp))
                .collect();
            let selected: Vec<&Event> = events
                .iter()
                .filter(|e| matches!(e, Event::ChannelSelected { .. }))
                .collect();
            if skip_proceeding {
                assert_eq!(
                    selected,
                    [&Event::ChannelSelected { id: a, channel: ts }],
                    "{events:?}"
                );
                assert!(matches!(events[0], Event::ChannelSelected { .. }));
            } else {
                assert!(
                    selected.is_empty(),
                    "CALL PROCEEDING carried it: {events:?}"
                );
                assert!(matches!(events[0], Event::Proceeding { channel, .. } if channel == ts));
            }
            assert!(events.contains(&Event::Connected { id: a }));
            assert_eq!(user.call_state(a), Some(State::U10Active));
        }
    }

    #[test]
    fn connect_ack_crossing_our_clearing_is_not_a_state_error() {
        let now = Instant::now();
        for release in [false, true] {
            let mut user = linked(Role::User, now);
            let mut net = linked(Role::Network, now);
            let a = user
                .place_call(now, PlaceCall::speech("999", None))
                .expect("call");
            deliver(sent(&mut user), &mut net, now);
            let b = std::iter::from_fn(|| net.poll_event())
                .find_map(|e| match e {
                    Event::IncomingCall { id, .. } => Some(id),
                    _ => None,
                })
                .expect("incoming call");
            net.connect(now, b).expect("connect");
            deliver(sent(&mut net), &mut user, now);
            // The user's CONNECT ACKNOWLEDGE is on the wire while the
            // network clears.
            let ack = sent(&mut user);
            assert_eq!(types(&ack), [Mt::CONNECT_ACKNOWLEDGE]);
            if release {
                net.release(now, b, Cause::NORMAL_CLEARING)
                    .expect("release");
            } else {
                net.disconnect(now, b, Cause::NORMAL_CLEARING)
                    .expect("disconnect");
            }
            let clearing = sent(&mut net);
            deliver(ack, &mut net, now);
            assert_eq!(sent(&mut net), Vec::<Vec<u8>>::new(), "no STATUS");
            assert_eq!(net.counters.unexpected_in_state, 0);
            // Clearing completes on both sides.
            deliver(clearing, &mut user, now);
            deliver(sent(&mut user), &mut net, now);
            deliver(sent(&mut net), &mut user, now);
            assert_eq!(user.call_state(a), None);
            assert_eq!(net.call_state(b), None);
        }
    }

    /// Overlap receiving with the call layer's "number complete" test
    /// (§5.2.4): a SETUP whose number is already complete is answered with
    /// CALL PROCEEDING at once; an incomplete one gets SETUP ACKNOWLEDGE
    /// and the INFORMATION that completes it stops T302.
    #[test]
    fn overlap_receiving_stops_once_the_number_is_complete() {
        let now = Instant::now();
        let mut net = linked(Role::Network, now);
        let mut cfg = Config::e1(1, Role::User);
        cfg.number_complete = Some(NumberComplete::new(|called, _| called == "999"));
        let mut user = Q931::new(cfg);
        user.handle_dl(now, DlIndication::Established);
        let _ = sent(&mut user);
        let _ = sent(&mut net);
        while user.poll_event().is_some() {}

        // Complete in the SETUP: no SETUP ACKNOWLEDGE, no T302.
        let mut place = PlaceCall::speech("999", None);
        place.sending_complete = false;
        net.place_call(now, place).unwrap();
        deliver(sent(&mut net), &mut user, now);
        assert_eq!(types(&sent(&mut user)), [Mt::CALL_PROCEEDING]);
        assert!(matches!(
            user.poll_event(),
            Some(Event::IncomingCall { called: Some(n), .. }) if n.digits_str() == "999"
        ));

        // "9", then "9", then "9": complete at the third digit.
        let mut place = PlaceCall::speech("9", None);
        place.sending_complete = false;
        let id = net.place_call(now, place).unwrap();
        deliver(sent(&mut net), &mut user, now);
        let ack = sent(&mut user);
        assert_eq!(types(&ack), [Mt::SETUP_ACKNOWLEDGE]);
        deliver(ack, &mut net, now);
        for _ in 0..2 {
            net.information(now, id, "9", false).unwrap();
            deliver(sent(&mut net), &mut user, now);
        }
        assert_eq!(types(&sent(&mut user)), [Mt::CALL_PROCEEDING]);
        assert!(matches!(
            user.poll_event(),
            Some(Event::IncomingCall { called: Some(n), .. }) if n.digits_str() == "999"
        ));
        // T302 stopped: nothing more happens at its expiry.
        user.handle_timeout(now + std::time::Duration::from_secs(60));
        assert!(types(&sent(&mut user)).iter().all(|t| *t != Mt::DISCONNECT));
        assert_eq!(user.poll_event(), None);
    }
}
