//! The call manager against a randomised world, reproducible from a seed
//! (the VOPR idea at small scale): calls both ways, progress, clearing from
//! either side at any moment, replies that fail, terminal events and media
//! summaries arriving late, out of order or never. Invariants checked
//! throughout: no command for a Q.931 call after the manager took its
//! `Released` (one sent while the manager still held that event is answered
//! "unknown call", as Q.931 would), none for a SIP call after its terminal
//! event; the channel audit never restarts a channel and never probes a
//! call Q.931 still holds; at the end every call is forgotten with exactly
//! one CDR and nothing is left in the manager.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tdmgw::call::manager::{
    Action, CallManager, CallManagerConfig, CoreRoute, IsdnCommand, SipAction, SipPlaceError, Token,
};
use tdmgw::config::Route;
use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::q931::{
    CallId, ChannelState, ChannelTable, ClearedBy, CommandError, Event, PartyNumber,
};
use tdmgw::isdn::task::TaskError;
use tdmgw::media::control::{self as media, CallSummary};
use tdmgw::sip::endpoint::{Remote, Transport};
use tdmgw::sip::message::{Framing, Limits, Message};
use tdmgw::sip::sdp::{self, LocalMedia, Origin, Sdp};
use tdmgw::sip::ua::{CallHandle, EndedBy, UaEvent};

mod common;
use common::Rng;

fn config() -> CallManagerConfig {
    let mut c = CallManagerConfig::new(
        vec![Route::new("999", "mcvp"), Route::new("101", "mcvp")],
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        40000,
        "gw",
    );
    c.core_routes = vec![CoreRoute {
        called: "*".into(),
        spans: vec![1, 2],
    }];
    // Every STATUS ENQUIRY in this world is an audit probe (no call lives
    // for the long-call check's hour).
    c.long_call_check = Duration::from_secs(86_400 * 365);
    c
}

fn core_sdp() -> Sdp {
    sdp::offer(&LocalMedia {
        origin: Origin {
            username: "c".into(),
            session_id: 1,
            version: 1,
            address: "192.0.2.7".parse().unwrap(),
        },
        address: "192.0.2.7".parse().unwrap(),
        port: 30000,
        codecs: vec!["PCMA".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: sdp::Direction::SendRecv,
    })
}

fn invite() -> Box<Message> {
    let t = "INVITE sip:+441632960999@gw SIP/2.0\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK1\r\n\
             From: <sip:+442079460000@core>;tag=c\r\nTo: <sip:+441632960999@gw>\r\nCall-ID: x\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:c@192.0.2.7>\r\nContent-Length: 0\r\n\r\n";
    Box::new(Message::parse(t.as_bytes(), Framing::Datagram, Limits::default()).unwrap())
}

/// A pending input for the manager.
#[derive(Debug)]
enum Pending {
    Released(u8, CallId, Cause),
    SipEnded(CallHandle, EndedBy),
    SipFailed(CallHandle, u16),
    Summary(media::ChannelId),
    /// PlaceCall replies held back, so that the call's events overtake them.
    IsdnPlaced(Token, Result<CallId, TaskError>),
    SipPlaced(Token, Result<CallHandle, SipPlaceError>),
}

struct World {
    rng: Rng,
    now: Instant,
    m: CallManager,
    next_id: u32,
    next_handle: u64,
    /// Live Q.931 calls: (span, id) -> timeslot; cleared ones are no
    /// longer driven by the exchange.
    isdn_live: HashMap<(u8, CallId), u8>,
    isdn_clearing: HashSet<(u8, CallId)>,
    isdn_dead: HashSet<(u8, CallId)>,
    /// Live SIP calls: handle -> (we placed it, answered).
    sip_live: HashMap<CallHandle, (bool, bool)>,
    sip_clearing: HashSet<CallHandle>,
    sip_dead: HashSet<CallHandle>,
    pending: Vec<Pending>,
    cdrs: Vec<String>,
    /// Calls whose PlaceCall reply is held back: the manager holds their
    /// events too, so their end counts only once the reply is delivered.
    unreplied_isdn: HashSet<(u8, CallId)>,
    unreplied_sip: HashSet<CallHandle>,
    ended_unreplied_isdn: HashSet<(u8, CallId)>,
    ended_unreplied_sip: HashSet<CallHandle>,
    /// Timeslots of calls whose Released is still pending.
    released_ts: HashMap<(u8, CallId), u8>,
    /// Ended (Released, or SIP's terminal event) while the manager held
    /// events: it may not have taken them yet. Dead once nothing is held.
    isdn_ending: HashSet<(u8, CallId)>,
    sip_ending: HashSet<CallHandle>,
    /// Calls the manager placed on Q.931, and those whose channel Q.931
    /// has reported (CALL PROCEEDING, or `ChannelSelected` before a first
    /// ALERTING/CONNECT, as the real Q.931 does).
    isdn_placed: HashSet<(u8, CallId)>,
    channel_told: HashSet<(u8, CallId)>,
}

impl World {
    fn new(seed: u64) -> World {
        let now = Instant::now();
        World {
            rng: Rng(seed.wrapping_mul(2).wrapping_add(1)),
            now,
            m: CallManager::new(config(), now, 0),
            next_id: 1,
            next_handle: 1,
            isdn_live: HashMap::new(),
            isdn_clearing: HashSet::new(),
            isdn_dead: HashSet::new(),
            sip_live: HashMap::new(),
            sip_clearing: HashSet::new(),
            sip_dead: HashSet::new(),
            pending: Vec::new(),
            cdrs: Vec::new(),
            unreplied_isdn: HashSet::new(),
            unreplied_sip: HashSet::new(),
            ended_unreplied_isdn: HashSet::new(),
            ended_unreplied_sip: HashSet::new(),
            released_ts: HashMap::new(),
            isdn_ending: HashSet::new(),
            sip_ending: HashSet::new(),
            isdn_placed: HashSet::new(),
            channel_told: HashSet::new(),
        }
    }

    fn free_ts(&mut self, span: u8) -> Option<u8> {
        let used: HashSet<u8> = self
            .isdn_live
            .iter()
            .filter(|((s, _), _)| *s == span)
            .map(|(_, ts)| *ts)
            .collect();
        (1..=31u8).filter(|t| *t != 16).find(|t| !used.contains(t))
    }

    fn isdn_cmd(&mut self, span: u8, c: IsdnCommand) {
        let id = match &c {
            IsdnCommand::PlaceCall { token, .. } => {
                let r = if self.rng.one_in(5) {
                    Err(TaskError::Refused(CommandError::NoChannel))
                } else if let Some(ts) = self.free_ts(span) {
                    let id = CallId(self.next_id);
                    self.next_id += 1;
                    self.isdn_live.insert((span, id), ts);
                    self.isdn_placed.insert((span, id));
                    Ok(id)
                } else {
                    Err(TaskError::Refused(CommandError::NoChannel))
                };
                if self.rng.one_in(2) {
                    if let Ok(id) = r {
                        self.unreplied_isdn.insert((span, id));
                    }
                    self.pending.push(Pending::IsdnPlaced(*token, r));
                } else {
                    self.m.handle_isdn_placed(self.now, *token, r);
                }
                return;
            }
            IsdnCommand::Restart { .. } | IsdnCommand::BusyOut { .. } => return,
            IsdnCommand::StatusEnquiry { id } => {
                assert!(
                    !self.isdn_live.contains_key(&(span, *id)),
                    "audit probed call {span}/{id:?}, which Q.931 still holds"
                );
                if self.isdn_ending.contains(&(span, *id)) {
                    self.m.handle_isdn_refused(
                        self.now,
                        span,
                        *id,
                        TaskError::Refused(CommandError::UnknownCall),
                    );
                    return;
                }
                *id
            }
            _ if isdn_command_id(&c).is_some_and(|id| self.isdn_ending.contains(&(span, id))) => {
                // Q.931 would answer "unknown call".
                return;
            }
            IsdnCommand::Information { id, .. }
            | IsdnCommand::Alerting { id }
            | IsdnCommand::Progress { id, .. }
            | IsdnCommand::Connect { id } => *id,
            IsdnCommand::Disconnect { id, cause } | IsdnCommand::Release { id, cause } => {
                if self.isdn_live.contains_key(&(span, *id))
                    && self.isdn_clearing.insert((span, *id))
                {
                    let ts = self.isdn_live[&(span, *id)];
                    self.released_ts.insert((span, *id), ts);
                    self.pending.push(Pending::Released(span, *id, *cause));
                }
                *id
            }
        };
        assert!(
            !self.isdn_dead.contains(&(span, id)),
            "command for released call {span}/{id:?}: {c:?}"
        );
    }

    fn sip_cmd(&mut self, a: SipAction) {
        let call = match &a {
            SipAction::PlaceCall { token, .. } => {
                let r = if self.rng.one_in(6) {
                    Err(SipPlaceError::NoPeer)
                } else {
                    let h = CallHandle(self.next_handle);
                    self.next_handle += 1;
                    self.sip_live.insert(h, (true, false));
                    Ok(h)
                };
                if self.rng.one_in(2) {
                    if let Ok(h) = &r {
                        self.unreplied_sip.insert(*h);
                    }
                    self.pending.push(Pending::SipPlaced(*token, r));
                } else {
                    self.m.handle_sip_placed(self.now, *token, r);
                }
                return;
            }
            SipAction::Accept { call, .. } => {
                if let Some(s) = self.sip_live.get_mut(call) {
                    s.1 = true;
                }
                *call
            }
            SipAction::Reject { call, status, .. } => {
                assert!((300..700).contains(status));
                if self.sip_live.contains_key(call) && self.sip_clearing.insert(*call) {
                    self.pending.push(Pending::SipEnded(*call, EndedBy::Local));
                }
                *call
            }
            SipAction::Hangup { call, .. } => {
                if self.sip_live.contains_key(call) && self.sip_clearing.insert(*call) {
                    let outgoing_early = self.sip_live.get(call) == Some(&(true, false));
                    self.pending.push(if outgoing_early && self.rng.one_in(2) {
                        Pending::SipFailed(*call, 487)
                    } else {
                        Pending::SipEnded(*call, EndedBy::Local)
                    });
                }
                *call
            }
            SipAction::Provisional { call, .. }
            | SipAction::Reinvite { call, .. }
            | SipAction::DtmfInfo { call, .. } => *call,
        };
        if self.sip_ending.contains(&call) {
            // The SIP task would answer "no such call".
            return;
        }
        // A core INVITE rejected at once never had a record in the world.
        assert!(
            !self.sip_dead.contains(&call),
            "action for ended SIP call {call:?}: {a:?}"
        );
    }

    fn drain(&mut self) {
        while let Some(a) = self.m.poll_action() {
            match a {
                Action::Isdn { span, command } => self.isdn_cmd(span, command),
                Action::Sip(s) => self.sip_cmd(s),
                Action::Media(media::Command::Disconnect { ch }) => {
                    if !self.rng.one_in(10) {
                        self.pending.push(Pending::Summary(ch));
                    }
                }
                Action::Media(_) => {}
                Action::Cdr(r) => {
                    assert!(
                        !self.cdrs.contains(&r.call_id),
                        "two CDRs for {}",
                        r.call_id
                    );
                    self.cdrs.push(r.call_id);
                }
            }
        }
        if self.m.held_events() == 0 {
            self.isdn_dead.extend(self.isdn_ending.drain());
            self.sip_dead.extend(self.sip_ending.drain());
        }
    }

    /// The manager has taken (or holds) an ending event of this call.
    fn isdn_ended(&mut self, k: (u8, CallId)) {
        if self.unreplied_isdn.contains(&k) {
            self.ended_unreplied_isdn.insert(k);
        } else if self.m.held_events() > 0 {
            self.isdn_ending.insert(k);
        } else {
            self.isdn_dead.insert(k);
        }
    }

    fn sip_ended(&mut self, call: CallHandle) {
        if self.unreplied_sip.contains(&call) {
            self.ended_unreplied_sip.insert(call);
        } else if self.m.held_events() > 0 {
            self.sip_ending.insert(call);
        } else {
            self.sip_dead.insert(call);
        }
    }

    fn deliver(&mut self, p: Pending) {
        let now = self.now;
        match p {
            Pending::Released(span, id, cause) => {
                self.isdn_live.remove(&(span, id));
                self.m.handle_isdn(
                    now,
                    span,
                    Event::Released {
                        id,
                        cause,
                        by: ClearedBy::Local,
                    },
                );
                self.isdn_ended((span, id));
            }
            Pending::SipEnded(call, by) => {
                self.sip_live.remove(&call);
                self.m.handle_sip(
                    now,
                    UaEvent::Ended {
                        call,
                        by,
                        reason: None,
                    },
                );
                self.sip_ended(call);
            }
            Pending::SipFailed(call, status) => {
                self.sip_live.remove(&call);
                self.m.handle_sip(
                    now,
                    UaEvent::Failed {
                        call,
                        status,
                        reason: None,
                    },
                );
                self.sip_ended(call);
            }
            Pending::IsdnPlaced(token, r) => {
                self.m.handle_isdn_placed(now, token, r);
                self.drain();
                if let Ok(id) = r {
                    // Its held events have been replayed: its end counts now.
                    let done: Vec<_> = self
                        .ended_unreplied_isdn
                        .iter()
                        .filter(|k| k.1 == id)
                        .copied()
                        .collect();
                    for k in done {
                        self.ended_unreplied_isdn.remove(&k);
                        if self.m.held_events() > 0 {
                            self.isdn_ending.insert(k);
                        } else {
                            self.isdn_dead.insert(k);
                        }
                    }
                    self.unreplied_isdn.retain(|k| k.1 != id);
                }
            }
            Pending::SipPlaced(token, r) => {
                let h = r.as_ref().ok().copied();
                self.m.handle_sip_placed(now, token, r);
                self.drain();
                if let Some(h) = h {
                    self.unreplied_sip.remove(&h);
                    if self.ended_unreplied_sip.remove(&h) {
                        if self.m.held_events() > 0 {
                            self.sip_ending.insert(h);
                        } else {
                            self.sip_dead.insert(h);
                        }
                    }
                }
            }
            Pending::Summary(ch) => self.m.handle_media(
                now,
                media::Event::CallSummary {
                    ch,
                    summary: CallSummary::default(),
                },
            ),
        }
        self.drain();
    }

    fn pick<T: Copy>(&mut self, v: Vec<T>) -> Option<T> {
        if v.is_empty() {
            return None;
        }
        let i = self.rng.range(0, v.len() as u64) as usize;
        Some(v[i])
    }

    fn live_isdn(&self) -> Vec<(u8, CallId)> {
        let mut v: Vec<_> = self
            .isdn_live
            .keys()
            .filter(|k| !self.isdn_clearing.contains(k))
            .copied()
            .collect();
        v.sort();
        v
    }

    fn live_sip(&self) -> Vec<CallHandle> {
        let mut v: Vec<_> = self
            .sip_live
            .keys()
            .filter(|k| !self.sip_clearing.contains(k))
            .copied()
            .collect();
        v.sort();
        v
    }

    /// The exchange clears a call: DISCONNECT now, RELEASE later.
    fn exchange_clears(&mut self, k: (u8, CallId)) {
        if let Some(ts) = self.isdn_live.get(&k) {
            self.released_ts.insert(k, *ts);
        }
        let cause = Cause([16, 17, 18, 31, 41][self.rng.range(0, 5) as usize]);
        self.isdn_clearing.insert(k);
        self.m.handle_isdn(
            self.now,
            k.0,
            Event::Disconnected {
                id: k.1,
                cause,
                by: ClearedBy::Remote,
            },
        );
        self.pending.push(Pending::Released(k.0, k.1, cause));
        self.drain();
    }

    fn core_clears(&mut self, h: CallHandle) {
        self.sip_clearing.insert(h);
        let (ours, answered) = self.sip_live[&h];
        let p = if ours && !answered {
            Pending::SipFailed(
                h,
                [404, 408, 480, 486, 503, 603][self.rng.range(0, 6) as usize],
            )
        } else {
            Pending::SipEnded(h, EndedBy::Remote)
        };
        self.deliver(p);
    }

    /// What each span's Q.931 would publish: a channel is busy while its
    /// call exists (until the manager is given its `Released`).
    fn tables(&mut self) {
        for span in 1..=2u8 {
            let mut t = ChannelTable::e1();
            for ((s, _), ts) in &self.isdn_live {
                if *s == span {
                    t.set(*ts, ChannelState::Busy);
                }
            }
            for p in &self.pending {
                if let Pending::Released(s, id, _) = p
                    && *s == span
                    && let Some(ts) = self.released_ts.get(&(*s, *id))
                {
                    t.set(*ts, ChannelState::Busy);
                }
            }
            self.m.handle_channel_table(span, &t);
        }
    }

    fn step(&mut self) {
        self.tables();
        let now = self.now;
        match self.rng.range(0, 10) {
            0 => {
                let span = self.rng.range(1, 3) as u8;
                let Some(ts) = self.free_ts(span) else { return };
                let id = CallId(self.next_id);
                self.next_id += 1;
                self.isdn_live.insert((span, id), ts);
                let called = ["999", "101", "123"][self.rng.range(0, 3) as usize];
                self.m.handle_isdn(
                    now,
                    span,
                    Event::IncomingCall {
                        id,
                        called: Some(PartyNumber::new(0, 1, called)),
                        calling: Some(PartyNumber::new(2, 1, "2079460123")),
                        bearer: None,
                        channel: ts,
                    },
                );
            }
            1 => {
                let h = CallHandle(self.next_handle);
                self.next_handle += 1;
                self.sip_live.insert(h, (false, false));
                self.m.handle_sip(
                    now,
                    UaEvent::IncomingCall {
                        call: h,
                        request: invite(),
                        sdp: Some(core_sdp()),
                        peer: Remote {
                            address: "192.0.2.7:5060".parse().unwrap(),
                            transport: Transport::Udp,
                        },
                    },
                );
            }
            2 | 3 => {
                let Some(k) = self.pick(self.live_isdn()) else {
                    return;
                };
                let ts = self.isdn_live[&k];
                let e = match self.rng.range(0, 4) {
                    0 => Event::Proceeding {
                        id: k.1,
                        channel: ts,
                    },
                    1 => Event::Alerting { id: k.1 },
                    2 => Event::Progress {
                        id: k.1,
                        description: 8,
                    },
                    _ => Event::Connected { id: k.1 },
                };
                let first_answer = matches!(e, Event::Alerting { .. } | Event::Connected { .. });
                if self.isdn_placed.contains(&k) && self.channel_told.insert(k) {
                    if first_answer {
                        self.m.handle_isdn(
                            now,
                            k.0,
                            Event::ChannelSelected {
                                id: k.1,
                                channel: ts,
                            },
                        );
                    } else if !matches!(e, Event::Proceeding { .. }) {
                        self.channel_told.remove(&k);
                    }
                }
                self.m.handle_isdn(now, k.0, e);
            }
            4 | 5 => {
                let Some(h) = self.pick(self.live_sip()) else {
                    return;
                };
                let (ours, answered) = self.sip_live[&h];
                if !ours || answered {
                    return;
                }
                let e = match self.rng.range(0, 3) {
                    0 => UaEvent::Provisional {
                        call: h,
                        status: 180,
                        sdp: None,
                    },
                    1 => UaEvent::Provisional {
                        call: h,
                        status: 183,
                        sdp: Some(core_sdp()),
                    },
                    _ => {
                        self.sip_live.insert(h, (true, true));
                        UaEvent::Answered {
                            call: h,
                            sdp: Some(core_sdp()),
                        }
                    }
                };
                self.m.handle_sip(now, e);
            }
            6 => {
                if let Some(k) = self.pick(self.live_isdn()) {
                    self.exchange_clears(k);
                }
            }
            7 => {
                if let Some(h) = self.pick(self.live_sip()) {
                    self.core_clears(h);
                }
            }
            8 => {
                if !self.pending.is_empty() {
                    let i = self.rng.range(0, self.pending.len() as u64) as usize;
                    let p = self.pending.swap_remove(i);
                    self.deliver(p);
                }
            }
            _ => {
                self.now += Duration::from_millis(self.rng.range(0, 40_000));
                self.timeouts();
            }
        }
        self.drain();
    }

    fn timeouts(&mut self) {
        while let Some(t) = self.m.poll_timeout() {
            if t > self.now {
                break;
            }
            self.m.handle_timeout(self.now);
            self.drain();
        }
    }

    /// Everyone hangs up; everything pending arrives; time passes.
    fn finish(&mut self) {
        for _ in 0..10_000 {
            self.tables();
            if let Some(k) = self.live_isdn().first().copied() {
                self.exchange_clears(k);
            } else if let Some(h) = self.live_sip().first().copied() {
                self.core_clears(h);
            } else if let Some(p) = self.pending.pop() {
                self.deliver(p);
            } else {
                self.now += Duration::from_secs(5);
                self.timeouts();
                if self.pending.is_empty() && self.m.is_idle() {
                    return;
                }
            }
        }
        panic!("no quiescence: {} calls held", self.m.call_count());
    }
}

fn run(seed: u64, steps: usize) {
    if std::env::var_os("SIM_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    }
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w.finish();
    assert!(w.m.is_idle(), "seed {seed}: calls left");
    assert_eq!(
        w.m.counters.audit_restarts, 0,
        "seed {seed}: the audit restarted a channel of a live call"
    );
    assert_eq!(
        w.m.counters.held_overflows, 0,
        "seed {seed}: the held queue overflowed"
    );
    assert!(w.isdn_live.is_empty() && w.sip_live.is_empty());
    let created = w.m.counters.exchange_to_core;
    if std::env::var_os("SIM_VERBOSE").is_some() {
        eprintln!("seed {seed}: {} CDRs, {:?}", w.cdrs.len(), w.m.counters);
    }
    // Every call the manager took (none is refused before it has a
    // record in this world: no draining, valid numbers and SDP) has one CDR.
    let created = created + w.m.counters.core_to_exchange;
    assert_eq!(
        w.cdrs.len() as u64,
        created,
        "seed {seed}: one CDR per call"
    );
}

#[test]
fn fixed_seeds() {
    for seed in 1..=40 {
        run(seed, 300);
    }
}

proptest! {
    // A fixed RNG seed: the same 64 worlds in every run, so CI does not
    // meet a new seed by chance (see `regression_seed_audit_restart`).
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7d3a_11c9),
        ..ProptestConfig::default()
    })]
    #[test]
    fn any_seed_ends_with_nothing_held(seed in any::<u64>()) {
        run(seed, 200);
    }
}

/// Issue 7: in this world the audit restarted span 2 TS 6 while Q.931
/// still held a call there. Two calls' SETUPs awaited their PlaceCall
/// replies; the second call's events (TS 6, freed by the first call's
/// RELEASE) were applied before the first call's held CALL PROCEEDING on
/// TS 6, which then overwrote the channel index; the first call's end
/// removed it, and the second call, still on TS 6, was unknown to the
/// audit. Held events are now applied in Q.931's order per span, and the
/// audit reads the calls themselves, not a channel index.
#[test]
fn regression_seed_audit_restart() {
    run(8535512414357255292, 300);
}

fn isdn_command_id(c: &IsdnCommand) -> Option<CallId> {
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

/// A soak over fresh random worlds, not run in CI:
/// `SIM_SEEDS=5000 cargo test --release --test call_manager_sim -- --ignored random_worlds`
/// (`SIM_SEED=<n>` repeats a run; each failing world prints its seed).
#[test]
#[ignore = "soak: random seeds, run by hand"]
fn random_worlds() {
    let count: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let base: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("random worlds: SIM_SEED={base} SIM_SEEDS={count}");
    let mut rng = Rng(base | 1);
    for _ in 0..count {
        let seed = rng.next();
        let steps = 100 + rng.range(0, 400) as usize;
        let r = std::panic::catch_unwind(|| run(seed, steps));
        assert!(r.is_ok(), "world seed {seed} with {steps} steps failed");
    }
}
