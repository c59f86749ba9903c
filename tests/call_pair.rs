//! Two-peer test of the whole signalling path with the real sans-IO cores:
//! an exchange (network-side Q.931 + Q.921) ⇄ the gateway's user-side
//! D-channel ⇄ the `CallManager` ⇄ the gateway's SIP user agent ⇄ the core's
//! user agent, all in simulated time. LAPD frames and SIP datagrams cross in
//! memory once per millisecond; the media plane is a stub that answers every
//! Disconnect with a call summary. A call really crosses Q.931 → SIP and back.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tdmgw::call::cdr::{CdrRecord, ClearedBy as CdrClearedBy, Direction};
use tdmgw::call::manager::{
    Action, CallManager, CallManagerConfig, CoreRoute, IsdnCommand, SipAction,
};
use tdmgw::call::manager_config::DigitLimits;
use tdmgw::call::routing::Router;
use tdmgw::config::Route;
use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::dchannel::DChannel;
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, CallId, Event, PlaceCall};
use tdmgw::isdn::task::TaskError;
use tdmgw::isdn::timers::{TimerId, TimerValues};
use tdmgw::media::control::{self as media, CallSummary};
use tdmgw::sip::NameAddr;
use tdmgw::sip::endpoint::{Remote, Transport};
use tdmgw::sip::message::Limits;
use tdmgw::sip::sdp::{self, LocalMedia, Origin};
use tdmgw::sip::text::Params;
use tdmgw::sip::transaction::TimerValues as SipTimers;
use tdmgw::sip::ua::{CallHandle, EndedBy, OutgoingCall, UaConfig, UaEvent, UserAgent};
use tdmgw::sip::uri::Uri;

const GW: &str = "10.0.0.1:5060";
const CORE: &str = "10.0.0.2:5060";

fn ua(addr: &str, seed: u64) -> UserAgent {
    UserAgent::new(UaConfig {
        timers: SipTimers::default(),
        limits: Limits::default(),
        sent_by: addr.into(),
        sent_by_tls: None,
        contact: Uri::parse(&format!("sip:x@{addr}")).unwrap(),
        call_id_host: addr.split(':').next().unwrap().into(),
        user_agent: String::new(),
        seed,
        rel100: false,
        session_expires_s: None,
        min_se_s: 90,
    })
}

fn dchannel(role: q931::Role, now: Instant) -> DChannel {
    let l2 = match role {
        q931::Role::User => q921::Role::User,
        q931::Role::Network => q921::Role::Network,
    };
    let mut q = q931::Config::e1(1, role);
    q.overlap_receiving = false;
    DChannel::new(
        LinkConfig::pri(1, l2, &TimerValues::default(), 3, 7),
        q,
        now,
    )
}

fn core_media() -> LocalMedia {
    LocalMedia {
        origin: Origin {
            username: "core".into(),
            session_id: 1,
            version: 1,
            address: "10.0.0.2".parse().unwrap(),
        },
        address: "10.0.0.2".parse().unwrap(),
        port: 30000,
        codecs: vec!["PCMA".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: sdp::Direction::SendRecv,
    }
}

/// What the exchange and the core do with calls.
#[derive(Default)]
struct Script {
    /// Exchange: answer incoming calls (alert, then connect).
    exchange_answers: bool,
    /// Core: 180, 183 with SDP, then 200 for incoming INVITEs.
    core_answers: bool,
    /// Who hangs up an answered call, after how long.
    exchange_hangs_up_after: Option<Duration>,
    core_hangs_up_after: Option<Duration>,
}

struct World {
    now: Instant,
    exchange: DChannel,
    gw_dc: DChannel,
    mgr: CallManager,
    gw_ua: UserAgent,
    core_ua: UserAgent,
    script: Script,
    sip_in_flight: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    cdrs: Vec<CdrRecord>,
    media_cmds: Vec<media::Command>,
    exchange_events: Vec<Event>,
    core_events: Vec<UaEvent>,
    /// (call, hang up at) for each side.
    exchange_hangup: Option<(CallId, Instant)>,
    core_hangup: Option<(CallHandle, Instant)>,
}

impl World {
    fn new(script: Script) -> World {
        let now = Instant::now();
        let mut cfg = CallManagerConfig::new(
            vec![Route::new("999", "mcvp")],
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            40000,
            "10.0.0.1",
        );
        cfg.core_routes = vec![CoreRoute {
            called: "*".into(),
            spans: vec![1],
        }];
        World {
            now,
            exchange: dchannel(q931::Role::Network, now),
            gw_dc: dchannel(q931::Role::User, now),
            mgr: CallManager::new(cfg, now, 1_700_000_000_000),
            gw_ua: ua(GW, 1),
            core_ua: ua(CORE, 2),
            script,
            sip_in_flight: VecDeque::new(),
            cdrs: Vec::new(),
            media_cmds: Vec::new(),
            exchange_events: Vec::new(),
            core_events: Vec::new(),
            exchange_hangup: None,
            core_hangup: None,
        }
    }

    /// The gateway shell: executes the manager's actions on the real cores.
    fn execute(&mut self) {
        let now = self.now;
        while let Some(a) = self.mgr.poll_action() {
            match a {
                Action::Isdn { span, command } => {
                    assert_eq!(span, 1);
                    let q = self.gw_dc.q931_mut();
                    match command {
                        IsdnCommand::PlaceCall { token, call } => {
                            let r = q.place_call(now, call).map_err(TaskError::Refused);
                            self.gw_dc.pump(now);
                            self.mgr.handle_isdn_placed(now, token, r);
                        }
                        IsdnCommand::Information {
                            id,
                            digits,
                            sending_complete,
                        } => ignore(q.information(now, id, &digits, sending_complete)),
                        IsdnCommand::Alerting { id } => ignore(q.alerting(now, id)),
                        IsdnCommand::Progress { id, description } => {
                            ignore(q.progress(now, id, description))
                        }
                        IsdnCommand::Connect { id } => ignore(q.connect(now, id)),
                        IsdnCommand::Disconnect { id, cause } => {
                            ignore(q.disconnect(now, id, cause))
                        }
                        IsdnCommand::Release { id, cause } => ignore(q.release(now, id, cause)),
                        IsdnCommand::StatusEnquiry { id } => ignore(q.status_enquiry(now, id)),
                        IsdnCommand::Restart { class, timeslots } => {
                            ignore(q.restart(now, class, &timeslots))
                        }
                        IsdnCommand::BusyOut { on } => q.set_busy_out(on),
                    }
                    self.gw_dc.pump(now);
                }
                Action::Sip(s) => self.sip_action(s),
                Action::Media(cmd) => {
                    if let media::Command::Disconnect { ch } = cmd {
                        self.mgr.handle_media(
                            now,
                            media::Event::CallSummary {
                                ch,
                                summary: CallSummary {
                                    packets_received: 100,
                                    packets_expected: 100,
                                    ..CallSummary::default()
                                },
                            },
                        );
                    }
                    self.media_cmds.push(cmd);
                }
                Action::Cdr(r) => self.cdrs.push(r),
            }
        }
    }

    fn sip_action(&mut self, s: SipAction) {
        let now = self.now;
        let ua = &mut self.gw_ua;
        match s {
            SipAction::PlaceCall { token, invite, .. } => {
                let peer = Remote {
                    address: CORE.parse().unwrap(),
                    transport: Transport::Udp,
                };
                let call = ua.place_call(now, invite.into_outgoing(peer));
                self.mgr.handle_sip_placed(now, token, Ok(call));
                self.mgr.handle_sip_peer(call, CORE);
            }
            SipAction::Provisional { call, status, sdp } => {
                ignore(ua.send_provisional(now, call, status, sdp.as_ref()))
            }
            SipAction::Accept { call, sdp } => ignore(ua.accept(now, call, sdp.as_ref())),
            SipAction::Reject {
                call,
                status,
                reason,
            } => ignore(ua.reject(now, call, status, reason.as_deref())),
            SipAction::Hangup { call, reason } => ignore(ua.hangup(now, call, reason.as_deref())),
            SipAction::Reinvite { call, sdp } => ignore(ua.reinvite(now, call, &sdp)),
            SipAction::DtmfInfo {
                call,
                digit,
                duration_ms,
            } => ignore(ua.send_dtmf_info(now, call, digit, duration_ms)),
        }
    }

    /// The exchange's behaviour.
    fn exchange_step(&mut self) {
        let now = self.now;
        while let Some(e) = self.exchange.poll_event() {
            match &e {
                Event::IncomingCall { id, .. } if self.script.exchange_answers => {
                    let q = self.exchange.q931_mut();
                    q.alerting(now, *id).unwrap();
                    q.progress(now, *id, 8).unwrap();
                    q.connect(now, *id).unwrap();
                    self.exchange.pump(now);
                }
                Event::Connected { id } => {
                    if let Some(d) = self.script.exchange_hangs_up_after {
                        self.exchange_hangup = Some((*id, now + d));
                    }
                }
                _ => {}
            }
            self.exchange_events.push(e);
        }
        if let Some((id, at)) = self.exchange_hangup
            && at <= now
        {
            self.exchange_hangup = None;
            self.exchange
                .q931_mut()
                .disconnect(now, id, Cause::NORMAL_CLEARING)
                .unwrap();
            self.exchange.pump(now);
        }
    }

    /// The core's behaviour.
    fn core_step(&mut self) {
        let now = self.now;
        while let Some(e) = self.core_ua.poll_event() {
            match &e {
                UaEvent::IncomingCall { call, sdp, .. } if self.script.core_answers => {
                    let ans = sdp::answer(sdp.as_ref().unwrap(), &core_media());
                    let ua = &mut self.core_ua;
                    ua.send_provisional(now, *call, 180, None).unwrap();
                    ua.send_provisional(now, *call, 183, Some(&ans)).unwrap();
                    ua.accept(now, *call, Some(&ans)).unwrap();
                    if let Some(d) = self.script.core_hangs_up_after {
                        self.core_hangup = Some((*call, now + d));
                    }
                }
                UaEvent::Answered { call, .. } => {
                    if let Some(d) = self.script.core_hangs_up_after {
                        self.core_hangup = Some((*call, now + d));
                    }
                }
                _ => {}
            }
            self.core_events.push(e);
        }
        if let Some((call, at)) = self.core_hangup
            && at <= now
        {
            self.core_hangup = None;
            self.core_ua.hangup(now, call, None).unwrap();
        }
    }

    /// One millisecond: timers, frames, datagrams, events, actions.
    fn tick(&mut self) {
        let now = self.now;
        for dc in [&mut self.exchange, &mut self.gw_dc] {
            if dc.poll_timeout().is_some_and(|t| t <= now) {
                dc.handle_timeout(now);
            }
        }
        for ua in [&mut self.gw_ua, &mut self.core_ua] {
            if ua.poll_timeout().is_some_and(|t| t <= now) {
                ua.handle_timeout(now);
            }
        }
        if self.mgr.poll_timeout().is_some_and(|t| t <= now) {
            self.mgr.handle_timeout(now);
        }
        // LAPD frames both ways.
        while let Some(f) = self.exchange.poll_transmit() {
            self.gw_dc.handle_frame(now, &f);
        }
        while let Some(f) = self.gw_dc.poll_transmit() {
            self.exchange.handle_frame(now, &f);
        }
        // SIP datagrams sent last tick arrive now.
        let arriving: Vec<_> = self.sip_in_flight.drain(..).collect();
        for (from, to, bytes) in arriving {
            let remote = Remote {
                address: from,
                transport: Transport::Udp,
            };
            if to == GW.parse().unwrap() {
                self.gw_ua.handle_input(now, &bytes, remote);
            } else {
                self.core_ua.handle_input(now, &bytes, remote);
            }
        }
        while let Some(t) = self.gw_ua.poll_transmit() {
            self.sip_in_flight
                .push_back((GW.parse().unwrap(), t.destination, t.bytes));
        }
        while let Some(t) = self.core_ua.poll_transmit() {
            self.sip_in_flight
                .push_back((CORE.parse().unwrap(), t.destination, t.bytes));
        }
        // The gateway shell.
        while let Some(e) = self.gw_dc.poll_event() {
            self.mgr.handle_isdn(now, 1, e);
            self.execute();
        }
        self.mgr
            .handle_channel_table(1, self.gw_dc.q931().channels());
        while let Some(e) = self.gw_ua.poll_event() {
            self.mgr.handle_sip(now, e);
            self.execute();
        }
        self.execute();
        self.exchange_step();
        self.core_step();
        self.now += Duration::from_millis(1);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
        }
    }

    fn run_until(&mut self, limit: Duration, what: &str, done: impl Fn(&World) -> bool) {
        let end = self.now + limit;
        while self.now < end {
            self.tick();
            if done(self) {
                return;
            }
        }
        panic!("not reached in {limit:?}: {what}");
    }

    fn link_up(&mut self) {
        self.run_until(Duration::from_secs(5), "link up", |w| {
            w.gw_dc.q931().link_up() && w.exchange.q931().link_up()
        });
    }

    fn assert_clean(&mut self) {
        // Let transactions and timers (Timer K/J, T305/T308 ...) finish.
        self.run_until(Duration::from_secs(60), "everything idle", |w| {
            w.mgr.is_idle()
                && w.gw_ua.is_idle()
                && w.core_ua.is_idle()
                && w.gw_dc.q931().call_count() == 0
                && w.exchange.q931().call_count() == 0
        });
        assert!(
            self.gw_dc.q931().channels().all_idle(),
            "gateway channels idle"
        );
        assert!(
            self.exchange.q931().channels().all_idle(),
            "exchange channels idle"
        );
        assert_eq!(self.mgr.counters.audit_restarts, 0);
    }
}

#[test]
fn emergency_call_crosses_q931_to_sip_and_back() {
    let mut w = World::new(Script {
        core_answers: true,
        exchange_hangs_up_after: Some(Duration::from_secs(5)),
        ..Script::default()
    });
    w.link_up();
    let now = w.now;
    let mut place = PlaceCall::speech("999", Some("2079460123"));
    place.calling.as_mut().unwrap().presentation = Some((0, 3));
    w.exchange.q931_mut().place_call(now, place).unwrap();
    w.exchange.pump(now);
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    let seen = |w: &World, f: fn(&Event) -> bool| w.exchange_events.iter().any(f);
    assert!(seen(&w, |e| matches!(e, Event::Alerting { .. })));
    assert!(seen(&w, |e| matches!(
        e,
        Event::Progress { description: 8, .. }
    )));
    assert!(seen(&w, |e| matches!(e, Event::Connected { .. })));
    // The core saw the INVITE with PAI, and a BYE carrying the Q.850 cause.
    let invite = w
        .core_events
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { request, .. } => Some(request.clone()),
            _ => None,
        })
        .expect("INVITE at the core");
    assert!(
        invite
            .to_bytes()
            .starts_with(b"INVITE sip:999@mcvp;user=phone SIP/2.0")
    );
    assert!(invite.headers_named("P-Asserted-Identity").count() == 1);
    let ended = w.core_events.iter().find_map(|e| match e {
        UaEvent::Ended { by, reason, .. } => Some((*by, reason.clone())),
        _ => None,
    });
    let (by, reason) = ended.expect("BYE at the core");
    assert_eq!(by, EndedBy::Remote);
    assert!(reason.unwrap().contains("cause=16"));
    assert!(
        w.media_cmds
            .iter()
            .any(|c| matches!(c, media::Command::Connect { .. }))
    );
    let r = &w.cdrs[0];
    assert_eq!(r.direction, Direction::ExchangeToCore);
    assert_eq!(r.cleared_by, CdrClearedBy::Exchange);
    assert_eq!((r.q850_cause, r.sip_status), (16, Some(200)));
    assert!(r.answer_ms.is_some() && r.alerting_ms.is_some());
    w.assert_clean();
}

#[test]
fn core_call_back_crosses_sip_to_q931_and_back() {
    let mut w = World::new(Script {
        exchange_answers: true,
        core_hangs_up_after: Some(Duration::from_secs(3)),
        ..Script::default()
    });
    w.link_up();
    let now = w.now;
    let offer = sdp::offer(&core_media());
    let to = NameAddr {
        display_name: None,
        uri: Uri::parse("sip:+441632960999@10.0.0.1").unwrap(),
        params: Params::default(),
    };
    w.core_ua.place_call(
        now,
        OutgoingCall {
            request_uri: to.uri.clone(),
            from: NameAddr::parse("<sip:+442079460000@core>").unwrap(),
            to,
            headers: Vec::new(),
            sdp: offer,
            peer: Remote {
                address: GW.parse().unwrap(),
                transport: Transport::Udp,
            },
        },
    );
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    let incoming = w.exchange_events.iter().find_map(|e| match e {
        Event::IncomingCall {
            called, calling, ..
        } => Some((called.clone(), calling.clone())),
        _ => None,
    });
    let (called, calling) = incoming.expect("SETUP at the exchange");
    assert_eq!(called.unwrap().digits_str(), "1632960999");
    assert_eq!(calling.unwrap().digits_str(), "2079460000");
    let status = |w: &World, s: u16| {
        w.core_events
            .iter()
            .any(|e| matches!(e, UaEvent::Provisional { status, .. } if *status == s))
    };
    assert!(status(&w, 180));
    assert!(status(&w, 183), "early media from PROGRESS 8");
    assert!(
        w.core_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { .. }))
    );
    assert!(w.exchange_events.iter().any(
        |e| matches!(e, Event::Released { cause, .. } | Event::Disconnected { cause, .. } if *cause == Cause::NORMAL_CLEARING)
    ));
    let r = &w.cdrs[0];
    assert_eq!(r.direction, Direction::CoreToExchange);
    assert_eq!(r.cleared_by, CdrClearedBy::Core);
    w.assert_clean();
}

#[test]
fn call_refused_by_the_core_reaches_the_exchange_with_the_mapped_cause() {
    // The core does not answer: it has no script; reject by hand at once.
    let mut w = World::new(Script::default());
    w.link_up();
    let now = w.now;
    w.exchange
        .q931_mut()
        .place_call(now, PlaceCall::speech("999", None))
        .unwrap();
    w.exchange.pump(now);
    w.run_until(Duration::from_secs(5), "INVITE at the core", |w| {
        w.core_events
            .iter()
            .any(|e| matches!(e, UaEvent::IncomingCall { .. }))
    });
    let call = w
        .core_events
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
        .unwrap();
    let now = w.now;
    w.core_ua.reject(now, call, 486, None).unwrap();
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    assert!(w.exchange_events.iter().any(
        |e| matches!(e, Event::Disconnected { cause, .. } | Event::Released { cause, .. } if *cause == Cause::USER_BUSY)
    ), "486 -> cause 17: {:?}", w.exchange_events);
    w.assert_clean();
}

/// A command refused by a core is fine here: the terminal events clear the
/// call (what the daemon's shell does too, after logging).
fn ignore<T, E>(_: Result<T, E>) {}

/// Busy-out with the real Q.931 on both ends: while the core group is down
/// the gateway's idle B-channels are out of service, so the exchange's
/// SETUP is refused by Q.931 at once (cause 34: no channel to choose); once
/// a peer is up the channels are idle again and a call goes through.
#[test]
fn busy_out_refuses_at_q931_while_the_core_is_down() {
    let mut w = World::new(Script {
        core_answers: true,
        exchange_hangs_up_after: Some(Duration::from_secs(1)),
        ..Script::default()
    });
    w.mgr = {
        let mut cfg = CallManagerConfig::new(
            vec![Route::new("999", "mcvp")],
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            40000,
            "10.0.0.1",
        );
        cfg.core_routes = vec![CoreRoute {
            called: "*".into(),
            spans: vec![1],
        }];
        cfg.busy_out = true;
        CallManager::new(cfg, w.now, 1_700_000_000_000)
    };
    w.link_up();
    w.mgr.handle_peer("mcvp", CORE, false);
    w.execute();
    let table = w.gw_dc.q931().channels();
    assert!(table.busy_out());
    assert!(
        table
            .iter()
            .all(|(_, s)| s == q931::ChannelState::OutOfService)
    );
    let now = w.now;
    w.exchange
        .q931_mut()
        .place_call(now, PlaceCall::speech("999", None))
        .unwrap();
    w.exchange.pump(now);
    w.run_until(Duration::from_secs(5), "refused", |w| {
        w.exchange_events
            .iter()
            .any(|e| matches!(e, Event::Released { .. }))
    });
    assert!(w.exchange_events.iter().any(
        |e| matches!(e, Event::Released { cause, .. } if *cause == Cause::NO_CIRCUIT_AVAILABLE)
    ));
    assert!(w.mgr.is_idle(), "the manager never saw the SETUP");
    assert!(
        w.core_events.is_empty(),
        "nothing reached the core: {:?}",
        w.core_events
    );

    w.mgr.handle_peer("mcvp", CORE, true);
    w.execute();
    assert!(w.gw_dc.q931().channels().all_idle());
    let now = w.now;
    w.exchange
        .q931_mut()
        .place_call(now, PlaceCall::speech("999", None))
        .unwrap();
    w.exchange.pump(now);
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    assert_eq!(w.cdrs[0].q850_cause, 16);
    assert_eq!(w.cdrs[0].core_peer.as_deref(), Some(CORE));
    w.assert_clean();
}

/// A world whose gateway receives overlap calls (Q.931 §5.2.4) and knows
/// its numbering plan: `routes` with their digit limits, the same for the
/// manager and for Q.931's "number complete" test, as `ops::gateway` wires
/// them.
fn overlap_world(routes: Vec<Route>, limits: Vec<DigitLimits>) -> World {
    let mut w = World::new(Script {
        core_answers: true,
        exchange_hangs_up_after: Some(Duration::from_secs(1)),
        ..Script::default()
    });
    let mut cfg = CallManagerConfig::new(
        routes.clone(),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        40000,
        "10.0.0.1",
    );
    cfg.core_routes = vec![CoreRoute {
        called: "*".into(),
        spans: vec![1],
    }];
    cfg.route_digits = limits.clone();
    w.mgr = CallManager::new(cfg, w.now, 1_700_000_000_000);
    let mut q = q931::Config::e1(1, q931::Role::User);
    let router = Router::with_limits(routes, limits);
    q.number_complete = Some(q931::NumberComplete::new(move |called, calling| {
        router.number_complete(called, calling, 1)
    }));
    w.gw_dc = DChannel::new(
        LinkConfig::pri(1, q921::Role::User, &TimerValues::default(), 3, 7),
        q,
        w.now,
    );
    w
}

/// The exchange dials `digits` one at a time: SETUP with the first (no
/// Sending Complete), then one INFORMATION per digit every 300 ms, none
/// with Sending Complete. Returns the time of the last digit.
fn dial_overlap(w: &mut World, digits: &str) -> Instant {
    let now = w.now;
    let (first, rest) = digits.split_at(1);
    let mut place = PlaceCall::speech(first, Some("2079460123"));
    place.sending_complete = false;
    let id = w.exchange.q931_mut().place_call(now, place).unwrap();
    w.exchange.pump(now);
    let mut last = now;
    for (i, d) in rest.chars().enumerate() {
        w.run_for(Duration::from_millis(300));
        let now = w.now;
        let r = w
            .exchange
            .q931_mut()
            .information(now, id, &d.to_string(), false);
        assert_eq!(
            r,
            Ok(()),
            "digit {} refused: the gateway stopped collecting",
            i + 2
        );
        w.exchange.pump(now);
        last = now;
    }
    last
}

/// When the INVITE reached the core, and its Request-URI.
fn invite_at_core(w: &mut World, limit: Duration) -> (Instant, String) {
    w.run_until(limit, "INVITE at the core", |w| {
        w.core_events
            .iter()
            .any(|e| matches!(e, UaEvent::IncomingCall { .. }))
    });
    let uri = w
        .core_events
        .iter()
        .find_map(|e| match e {
            UaEvent::IncomingCall { request, .. } => Some(request.to_bytes()),
            _ => None,
        })
        .map(|b| {
            let line = b.split(|c| *c == b'\r').next().unwrap_or_default().to_vec();
            String::from_utf8_lossy(&line).into_owned()
        })
        .unwrap_or_default();
    (w.now, uri)
}

fn t302() -> Duration {
    TimerValues::default().get(TimerId::T302)
}

#[test]
fn overlap_999_is_routed_at_its_third_digit_without_waiting_for_t302() {
    // 999 beside 101 and 0207XXXXXXX: no longer number can match a rule.
    let mut w = overlap_world(
        vec![
            Route::new("999", "mcvp"),
            Route::new("101", "mcvp"),
            Route::new("0207XXXXXXX", "mcvp"),
        ],
        vec![DigitLimits::default(); 3],
    );
    w.link_up();
    let last = dial_overlap(&mut w, "999");
    // Well before T302 (15 s) could have run out: within a second.
    let (at, uri) = invite_at_core(&mut w, Duration::from_secs(1));
    assert!(at - last < t302(), "routed at {:?}", at - last);
    assert_eq!(uri, "INVITE sip:999@mcvp;user=phone SIP/2.0");
    // The exchange got CALL PROCEEDING, then the call as usual.
    assert!(
        w.exchange_events
            .iter()
            .any(|e| matches!(e, Event::Proceeding { .. }))
    );
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    assert_eq!(w.cdrs[0].q850_cause, 16);
    w.assert_clean();
}

#[test]
fn overlap_with_a_catch_all_waits_for_t302_unless_the_route_gives_its_length() {
    let routes = vec![Route::new("999", "mcvp"), Route::new("*", "mcvp")];
    // The catch-all could take 9990...: Q.931 collects until T302, as before.
    let mut w = overlap_world(routes.clone(), vec![DigitLimits::default(); 2]);
    w.link_up();
    let last = dial_overlap(&mut w, "999");
    let (at, uri) = invite_at_core(&mut w, t302() + Duration::from_secs(2));
    assert!(at - last >= t302(), "routed at {:?}", at - last);
    assert_eq!(uri, "INVITE sip:999@mcvp;user=phone SIP/2.0");
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    w.assert_clean();

    // `max_digits = 3` on the 999 route: complete at its third digit.
    let mut w = overlap_world(
        routes,
        vec![
            DigitLimits {
                min_digits: 3,
                max_digits: 3,
            },
            DigitLimits::default(),
        ],
    );
    w.link_up();
    let last = dial_overlap(&mut w, "999");
    let (at, _) = invite_at_core(&mut w, Duration::from_secs(1));
    assert!(at - last < t302(), "routed at {:?}", at - last);
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    w.assert_clean();
}

#[test]
fn overlap_fixed_length_route_is_routed_at_its_last_digit() {
    // An 11-digit pattern, nothing longer: complete at the 11th digit.
    let mut w = overlap_world(
        vec![Route::new("0207XXXXXXX", "mcvp"), Route::new("999", "mcvp")],
        vec![DigitLimits::default(); 2],
    );
    w.link_up();
    let last = dial_overlap(&mut w, "02079460123");
    let (at, uri) = invite_at_core(&mut w, Duration::from_secs(1));
    assert!(at - last < t302());
    assert_eq!(uri, "INVITE sip:02079460123@mcvp;user=phone SIP/2.0");
    w.run_until(Duration::from_secs(10), "CDR", |w| !w.cdrs.is_empty());
    w.assert_clean();
}
