//! The call manager driven by scripted Q.931, SIP and media events in
//! simulated time; every scenario ends with no call held.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tdmgw::call::cause_map::{Q850_TO_SIP, SIP_TO_Q850};
use tdmgw::call::cdr::{ClearedBy as CdrClearedBy, Direction};
use tdmgw::call::manager::{
    Action, CallManager, CallManagerConfig, CoreRoute, DigitLimits, IsdnCommand, RtpTimeoutAction,
    SipAction, SipPlaceError, Token,
};
use tdmgw::config::Route;
use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::q931::CommandError;
use tdmgw::isdn::q931::{
    CallId, ChannelState, ChannelTable, ClearedBy, Event, PartyNumber, RestartClass,
};
use tdmgw::isdn::task::TaskError;
use tdmgw::media::control::{self as media, CallSummary, ChannelId};
use tdmgw::sip::endpoint::{Remote, Transport};
use tdmgw::sip::message::{Framing, Limits, Message};
use tdmgw::sip::sdp::{self, LocalMedia, Origin, Sdp};
use tdmgw::sip::ua::{CallHandle, EndedBy, UaEvent};

const SPAN: u8 = 1;
const TS: u8 = 5;
const CORE_RTP: &str = "192.0.2.7";

fn route(called: &str, group: &str) -> Route {
    Route::new(called, group)
}

fn config() -> CallManagerConfig {
    let mut c = CallManagerConfig::new(
        vec![
            route("999", "mcvp"),
            route("101", "mcvp"),
            route("0207XXXXXXX", "contact"),
        ],
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        40000,
        "gw.example",
    );
    c.route_digits = vec![DigitLimits::default(); 2];
    c.route_digits.push(DigitLimits {
        min_digits: 11,
        max_digits: 11,
    });
    c.core_routes = vec![CoreRoute {
        called: "*".into(),
        spans: vec![1, 2],
    }];
    c
}

struct H {
    m: CallManager,
    now: Instant,
    out: Vec<Action>,
}

impl H {
    fn new() -> H {
        H::with(config())
    }

    fn with(cfg: CallManagerConfig) -> H {
        let now = Instant::now();
        H {
            m: CallManager::new(cfg, now, 1_700_000_000_000),
            now,
            out: Vec::new(),
        }
    }

    fn drain(&mut self) -> Vec<Action> {
        while let Some(a) = self.m.poll_action() {
            self.out.push(a);
        }
        std::mem::take(&mut self.out)
    }

    fn isdn(&mut self, e: Event) -> Vec<Action> {
        self.m.handle_isdn(self.now, SPAN, e);
        self.drain()
    }

    fn sip(&mut self, e: UaEvent) -> Vec<Action> {
        self.m.handle_sip(self.now, e);
        self.drain()
    }

    fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        while let Some(t) = self.m.poll_timeout() {
            if t > self.now {
                break;
            }
            self.m.handle_timeout(self.now);
        }
        self.drain()
    }

    fn summary(&mut self, ts: u8) -> Vec<Action> {
        self.m.handle_media(
            self.now,
            media::Event::CallSummary {
                ch: ChannelId {
                    span: 1,
                    timeslot: ts,
                },
                summary: CallSummary {
                    packets_received: 500,
                    packets_expected: 500,
                    jitter_samples: 16,
                    ..CallSummary::default()
                },
            },
        );
        self.drain()
    }
}

fn number(d: &str) -> PartyNumber {
    let mut n = PartyNumber::new(2, 1, d);
    n.presentation = Some((0, 3));
    n
}

fn setup(called: &str, id: u32) -> Event {
    Event::IncomingCall {
        id: CallId(id),
        called: Some(PartyNumber::new(0, 1, called)),
        calling: Some(number("2079460123")),
        bearer: None,
        channel: TS,
    }
}

fn core_media() -> LocalMedia {
    LocalMedia {
        origin: Origin {
            username: "core".into(),
            session_id: 9,
            version: 1,
            address: CORE_RTP.parse().unwrap(),
        },
        address: CORE_RTP.parse().unwrap(),
        port: 30000,
        codecs: vec!["PCMA".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: sdp::Direction::SendRecv,
    }
}

fn one<T: Clone>(v: &[T], pred: impl Fn(&T) -> bool, what: &str) -> T {
    let found: Vec<&T> = v.iter().filter(|a| pred(a)).collect();
    assert_eq!(found.len(), 1, "expected one {what}");
    found[0].clone()
}

fn place_token(acts: &[Action]) -> (Token, tdmgw::call::manager::InviteParams) {
    match one(
        acts,
        |a| matches!(a, Action::Sip(SipAction::PlaceCall { .. })),
        "INVITE",
    ) {
        Action::Sip(SipAction::PlaceCall { token, invite, .. }) => (token, *invite),
        _ => unreachable!(),
    }
}

fn isdn_cmds(acts: &[Action]) -> Vec<IsdnCommand> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Isdn { command, .. } => Some(command.clone()),
            _ => None,
        })
        .collect()
}

fn cdr(acts: &[Action]) -> tdmgw::call::cdr::CdrRecord {
    match one(acts, |a| matches!(a, Action::Cdr(_)), "CDR") {
        Action::Cdr(r) => r,
        _ => unreachable!(),
    }
}

const SIP_CALL: CallHandle = CallHandle(77);

/// SETUP 999 -> INVITE placed on handle 77; returns the offer.
fn exchange_call_placed(h: &mut H) -> Sdp {
    let acts = h.isdn(setup("999", 1));
    let (token, invite) = place_token(&acts);
    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    assert!(h.drain().is_empty());
    invite.sdp
}

fn answer_to(offer: &Sdp) -> Sdp {
    sdp::answer(offer, &core_media())
}

#[test]
fn emergency_call_exchange_to_core_end_to_end() {
    let mut h = H::new();
    let acts = h.isdn(setup("999", 1));
    let (token, invite) = place_token(&acts);
    assert_eq!(
        invite.request_uri.to_string(),
        "sip:999@mcvp;user=phone",
        "called number in the Request-URI"
    );
    assert_eq!(
        invite.from.uri.to_string(),
        "sip:+442079460123@gw.example;user=phone"
    );
    let pai: Vec<_> = invite
        .headers
        .iter()
        .filter(|h| h.is("P-Asserted-Identity"))
        .collect();
    assert_eq!(pai.len(), 1);
    assert!(invite.headers.iter().all(|h| !h.is("Privacy")));
    // SDP offer: our address, the port of span 1 / TS5, PCMA PCMU telephone-event.
    let offer = &invite.sdp;
    assert_eq!(
        offer.audio_address(),
        Some(("192.0.2.1".parse().unwrap(), 40000 + 2 * 5))
    );
    let names: Vec<_> = offer.media[0]
        .formats
        .iter()
        .map(|f| f.encoding.clone())
        .collect();
    assert_eq!(names, ["PCMA", "PCMU", "telephone-event"]);

    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    // The SIP task names the peer that answered (its `Answered { peer }`).
    h.m.handle_sip_peer(SIP_CALL, "192.0.2.7:5060");
    h.now += Duration::from_millis(300);
    let acts = h.sip(UaEvent::Provisional {
        call: SIP_CALL,
        status: 180,
        sdp: None,
    });
    assert_eq!(isdn_cmds(&acts), [IsdnCommand::Alerting { id: CallId(1) }]);
    let ans = answer_to(offer);
    let acts = h.sip(UaEvent::Provisional {
        call: SIP_CALL,
        status: 183,
        sdp: Some(ans.clone()),
    });
    let connect = one(
        &acts,
        |a| matches!(a, Action::Media(media::Command::Connect { .. })),
        "media connect",
    );
    let Action::Media(media::Command::Connect { ch, params }) = connect else {
        unreachable!()
    };
    assert_eq!(
        ch,
        ChannelId {
            span: 1,
            timeslot: 5
        }
    );
    assert_eq!(
        params.remote,
        "192.0.2.7:30000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(params.codec, media::Codec::Pcma);
    assert!(params.telephone_event_pt.is_some());
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Progress {
            id: CallId(1),
            description: 8
        }]
    );
    h.now += Duration::from_secs(2);
    let acts = h.sip(UaEvent::Answered {
        call: SIP_CALL,
        sdp: Some(ans),
    });
    assert_eq!(
        acts,
        [Action::Isdn {
            span: 1,
            command: IsdnCommand::Connect { id: CallId(1) }
        }]
    );
    h.now += Duration::from_secs(60);
    // BYE from the core with a Reason: used as is.
    let acts = h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Remote,
        reason: Some("Q.850;cause=31;text=\"x\"".into()),
    });
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(31)
        }]
    );
    assert!(acts.contains(&Action::Media(media::Command::Disconnect { ch })));
    assert!(
        h.isdn(Event::Released {
            id: CallId(1),
            cause: Cause(31),
            by: ClearedBy::Local,
        })
        .is_empty()
    );
    let acts = h.summary(TS);
    let r = cdr(&acts);
    assert_eq!(r.direction, Direction::ExchangeToCore);
    assert_eq!((r.span, r.timeslot), (1, 5));
    assert_eq!(r.called, "999");
    assert_eq!(r.calling, "2079460123");
    assert_eq!(r.q850_cause, 31);
    assert_eq!(r.cleared_by, CdrClearedBy::Core);
    assert_eq!(r.sip_status, Some(200));
    assert_eq!(r.core_peer.as_deref(), Some("192.0.2.7:5060"));
    assert_eq!(r.alerting_ms, Some(r.setup_ms + 300));
    assert_eq!(r.answer_ms, Some(r.setup_ms + 2300));
    assert_eq!(r.release_ms, r.setup_ms + 62_300);
    let q = r.quality.expect("quality from the summary");
    assert!(q.mos > 4.0 && q.jitter_ms == 2.0);
    assert!(h.m.is_idle());
}

fn invite_text(user: &str, extra: &str) -> Message {
    let t = format!(
        "INVITE sip:{user}@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKa\r\n\
         From: <sip:+441632960001@core>;tag=c\r\nTo: <sip:{user}@gw.example>\r\nCall-ID: cb1\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:core@192.0.2.7>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(t.as_bytes(), Framing::Datagram, Limits::default()).unwrap()
}

fn core_offer() -> Sdp {
    sdp::offer(&core_media())
}

fn incoming_invite(user: &str) -> UaEvent {
    UaEvent::IncomingCall {
        call: SIP_CALL,
        request: Box::new(invite_text(user, "")),
        sdp: Some(core_offer()),
        peer: Remote {
            address: "192.0.2.7:5060".parse().unwrap(),
            transport: Transport::Udp,
        },
    }
}

/// INVITE -> SETUP placed as CallId 9 on span 1, CALL PROCEEDING on TS 5.
fn core_call_proceeding(h: &mut H) {
    let acts = h.sip(incoming_invite("+442079460999"));
    let (span, token, call) = match one(&acts, |a| matches!(a, Action::Isdn { .. }), "SETUP") {
        Action::Isdn {
            span,
            command: IsdnCommand::PlaceCall { token, call },
        } => (span, token, call),
        a => panic!("{a:?}"),
    };
    assert_eq!(span, 1);
    assert_eq!(call.called.digits_str(), "2079460999");
    assert_eq!(call.called.type_of_number, 2, "national");
    let calling = call.calling.expect("calling number");
    assert_eq!(calling.digits_str(), "1632960001");
    assert_eq!(calling.presentation, Some((0, 0)));
    h.m.handle_isdn_placed(h.now, token, Ok(CallId(9)));
    assert!(h.drain().is_empty());
    assert!(
        h.isdn(Event::Proceeding {
            id: CallId(9),
            channel: TS
        })
        .is_empty()
    );
}

#[test]
fn core_to_exchange_mirror() {
    let mut h = H::new();
    core_call_proceeding(&mut h);
    let acts = h.isdn(Event::Alerting { id: CallId(9) });
    assert_eq!(
        acts,
        [Action::Sip(SipAction::Provisional {
            call: SIP_CALL,
            status: 180,
            sdp: None
        })]
    );
    let acts = h.isdn(Event::Progress {
        id: CallId(9),
        description: 8,
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Media(media::Command::Connect { .. })))
    );
    let p = one(
        &acts,
        |a| matches!(a, Action::Sip(SipAction::Provisional { status: 183, .. })),
        "183",
    );
    let Action::Sip(SipAction::Provisional { sdp: Some(ans), .. }) = p else {
        panic!("183 without SDP")
    };
    assert_eq!(ans.audio_address().unwrap().1, 40010);
    let acts = h.isdn(Event::Connected { id: CallId(9) });
    assert_eq!(
        acts,
        [Action::Sip(SipAction::Accept {
            call: SIP_CALL,
            sdp: Some(ans)
        })]
    );
    // The exchange hangs up: BYE with the Reason.
    let acts = h.isdn(Event::Disconnected {
        id: CallId(9),
        cause: Cause::NORMAL_CLEARING,
        by: ClearedBy::Remote,
    });
    let Action::Sip(SipAction::Hangup {
        reason: Some(r), ..
    }) = one(
        &acts,
        |a| matches!(a, Action::Sip(SipAction::Hangup { .. })),
        "BYE",
    )
    else {
        panic!()
    };
    assert!(r.starts_with("Q.850;cause=16"));
    h.isdn(Event::Released {
        id: CallId(9),
        cause: Cause::NORMAL_CLEARING,
        by: ClearedBy::Remote,
    });
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    let r = cdr(&h.summary(TS));
    assert_eq!(r.direction, Direction::CoreToExchange);
    assert_eq!(r.cleared_by, CdrClearedBy::Exchange);
    assert!(h.m.is_idle());
}

/// The states a call can be cleared in, exchange -> core.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Placing,
    Trying,
    Ringing,
    EarlyMedia,
    Answered,
}

fn drive_to(h: &mut H, stage: Stage) -> Option<Token> {
    let acts = h.isdn(setup("999", 1));
    let (token, offer) = place_token(&acts);
    if let Stage::Placing = stage {
        return Some(token);
    }
    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    h.drain();
    if matches!(stage, Stage::Ringing | Stage::EarlyMedia | Stage::Answered) {
        h.sip(UaEvent::Provisional {
            call: SIP_CALL,
            status: 180,
            sdp: None,
        });
    }
    if matches!(stage, Stage::EarlyMedia | Stage::Answered) {
        h.sip(UaEvent::Provisional {
            call: SIP_CALL,
            status: 183,
            sdp: Some(answer_to(&offer.sdp)),
        });
    }
    if let Stage::Answered = stage {
        h.sip(UaEvent::Answered {
            call: SIP_CALL,
            sdp: Some(answer_to(&offer.sdp)),
        });
    }
    None
}

#[test]
fn clearing_from_either_side_in_each_state() {
    for stage in [
        Stage::Placing,
        Stage::Trying,
        Stage::Ringing,
        Stage::EarlyMedia,
        Stage::Answered,
    ] {
        for exchange_clears in [true, false] {
            let mut h = H::new();
            let pending = drive_to(&mut h, stage);
            let media = matches!(stage, Stage::EarlyMedia | Stage::Answered);
            if exchange_clears {
                let acts = h.isdn(Event::Disconnected {
                    id: CallId(1),
                    cause: Cause::NORMAL_CLEARING,
                    by: ClearedBy::Remote,
                });
                h.isdn(Event::Released {
                    id: CallId(1),
                    cause: Cause::NORMAL_CLEARING,
                    by: ClearedBy::Remote,
                });
                if let Some(token) = pending {
                    // The INVITE went out anyway: it is hung up at once.
                    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
                    let late = h.drain();
                    assert!(
                        matches!(late[..], [Action::Sip(SipAction::Hangup { .. })]),
                        "{stage:?}"
                    );
                } else {
                    assert!(
                        acts.iter()
                            .any(|a| matches!(a, Action::Sip(SipAction::Hangup { .. }))),
                        "{stage:?}: {acts:?}"
                    );
                }
                let acts = h.sip(UaEvent::Ended {
                    call: SIP_CALL,
                    by: EndedBy::Local,
                    reason: None,
                });
                if !media {
                    assert_eq!(cdr(&acts).cleared_by, CdrClearedBy::Exchange);
                }
            } else {
                if let Some(token) = pending {
                    h.m.handle_sip_placed(h.now, token, Err(SipPlaceError::NoPeer));
                } else if matches!(stage, Stage::Answered) {
                    h.m.handle_sip(
                        h.now,
                        UaEvent::Ended {
                            call: SIP_CALL,
                            by: EndedBy::Remote,
                            reason: None,
                        },
                    );
                } else {
                    h.m.handle_sip(
                        h.now,
                        UaEvent::Failed {
                            call: SIP_CALL,
                            status: 486,
                            reason: None,
                        },
                    );
                }
                let acts = h.drain();
                let cmds = isdn_cmds(&acts);
                let expect = match stage {
                    Stage::Placing => 34,
                    Stage::Answered => 16,
                    _ => 17,
                };
                assert_eq!(
                    cmds,
                    [IsdnCommand::Disconnect {
                        id: CallId(1),
                        cause: Cause(expect)
                    }],
                    "{stage:?}"
                );
                h.isdn(Event::Released {
                    id: CallId(1),
                    cause: Cause(expect),
                    by: ClearedBy::Local,
                });
            }
            if media {
                let r = cdr(&h.summary(TS));
                assert!(r.quality.is_some());
            }
            assert!(h.m.is_idle(), "{stage:?} exchange_clears={exchange_clears}");
        }
    }
}

#[test]
fn every_sip_to_q850_row_through_the_manager() {
    for &(status, cause) in SIP_TO_Q850 {
        let mut h = H::new();
        exchange_call_placed(&mut h);
        let acts = h.sip(UaEvent::Failed {
            call: SIP_CALL,
            status,
            reason: None,
        });
        assert_eq!(
            isdn_cmds(&acts),
            [IsdnCommand::Disconnect {
                id: CallId(1),
                cause: Cause(cause)
            }],
            "{status}"
        );
        let acts = h.isdn(Event::Released {
            id: CallId(1),
            cause: Cause(cause),
            by: ClearedBy::Local,
        });
        let r = cdr(&acts);
        assert_eq!((r.q850_cause, r.sip_status), (cause, Some(status)));
        assert!(h.m.is_idle());
    }
}

#[test]
fn every_q850_to_sip_row_through_the_manager() {
    for &(cause, status) in Q850_TO_SIP {
        let mut h = H::new();
        core_call_proceeding(&mut h);
        let acts = h.isdn(Event::Disconnected {
            id: CallId(9),
            cause: Cause(cause),
            by: ClearedBy::Remote,
        });
        let Action::Sip(SipAction::Reject {
            status: got,
            reason: Some(reason),
            ..
        }) = one(
            &acts,
            |a| matches!(a, Action::Sip(SipAction::Reject { .. })),
            "final response",
        )
        else {
            panic!()
        };
        assert_eq!(got, status, "cause {cause}");
        assert!(reason.starts_with(&format!("Q.850;cause={cause};")));
        h.isdn(Event::Released {
            id: CallId(9),
            cause: Cause(cause),
            by: ClearedBy::Remote,
        });
        let acts = h.sip(UaEvent::Ended {
            call: SIP_CALL,
            by: EndedBy::Local,
            reason: None,
        });
        assert_eq!(cdr(&acts).sip_status, Some(status));
        assert!(h.m.is_idle());
    }
}

#[test]
fn reason_header_and_trunk_override_win() {
    let mut cfg = config();
    let mut trunk = tdmgw::call::cause_map::CauseMap::default();
    trunk.sip_to_q850.insert(486, 34);
    cfg.trunk_cause_maps.insert(SPAN, trunk);
    let mut h = H::with(cfg);
    exchange_call_placed(&mut h);
    let acts = h.sip(UaEvent::Failed {
        call: SIP_CALL,
        status: 486,
        reason: None,
    });
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(34)
        }]
    );
    let mut h = H::new();
    exchange_call_placed(&mut h);
    let acts = h.sip(UaEvent::Failed {
        call: SIP_CALL,
        status: 503,
        reason: Some("Q.850;cause=42".into()),
    });
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(42)
        }],
        "a Reason is used as is, and no failover"
    );
}

/// Failover between the group's peers is the SIP task's: a 503 or 408
/// reaching the manager is the call's end (every peer tried), mapped by the
/// RFC 3398 table (503 -> 41, 408 -> 102), never a second round of
/// attempts; the CDR names the peer the SIP task reported.
#[test]
fn a_final_503_or_408_is_mapped_not_retried() {
    for (status, cause) in [(503, 41), (408, 102)] {
        let mut h = H::new();
        exchange_call_placed(&mut h);
        h.m.handle_sip_peer(SIP_CALL, "192.0.2.8:5060");
        let acts = h.sip(UaEvent::Failed {
            call: SIP_CALL,
            status,
            reason: None,
        });
        assert!(
            !acts
                .iter()
                .any(|a| matches!(a, Action::Sip(SipAction::PlaceCall { .. }))),
            "{status}: no retry in the manager"
        );
        assert_eq!(
            isdn_cmds(&acts),
            [IsdnCommand::Disconnect {
                id: CallId(1),
                cause: Cause(cause)
            }],
            "{status}"
        );
        let acts = h.isdn(Event::Released {
            id: CallId(1),
            cause: Cause(cause),
            by: ClearedBy::Local,
        });
        let r = cdr(&acts);
        assert_eq!((r.q850_cause, r.sip_status), (cause, Some(status)));
        assert_eq!(r.core_peer.as_deref(), Some("192.0.2.8:5060"));
        assert!(h.m.is_idle());
    }
}

#[test]
fn cancel_crossing_200_leaves_nothing() {
    let mut h = H::new();
    let offer = exchange_call_placed(&mut h);
    h.sip(UaEvent::Provisional {
        call: SIP_CALL,
        status: 180,
        sdp: None,
    });
    // The caller hangs up: CANCEL goes out ...
    let acts = h.isdn(Event::Disconnected {
        id: CallId(1),
        cause: Cause(16),
        by: ClearedBy::Remote,
    });
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Sip(SipAction::Hangup { .. })))
    );
    // ... and crosses the 200: no CONNECT to a clearing call.
    let acts = h.sip(UaEvent::Answered {
        call: SIP_CALL,
        sdp: Some(answer_to(&offer)),
    });
    assert!(isdn_cmds(&acts).is_empty(), "{acts:?}");
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(16),
        by: ClearedBy::Remote,
    });
    // The user agent ACKs and BYEs by itself, then ends the call.
    let acts = h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    assert_eq!(cdr(&acts).q850_cause, 16);
    assert!(h.m.is_idle());
}

#[test]
fn disconnect_crossing_connect_and_bye_crossing_reinvite() {
    // Core -> exchange: the exchange answers, the core CANCELs at the same time.
    let mut h = H::new();
    core_call_proceeding(&mut h);
    let acts = h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Remote,
        reason: None,
    });
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(9),
            cause: Cause(16)
        }]
    );
    // CONNECT arrives after our DISCONNECT went out: no 200 for a dead call.
    assert!(h.isdn(Event::Connected { id: CallId(9) }).is_empty());
    let acts = h.isdn(Event::Released {
        id: CallId(9),
        cause: Cause(16),
        by: ClearedBy::Local,
    });
    assert_eq!(cdr(&acts).cleared_by, CdrClearedBy::Core);
    assert!(h.m.is_idle());

    // BYE crossing a re-INVITE: the re-INVITE's answer arrives for a call
    // that has just ended.
    let mut h = H::new();
    drive_to(&mut h, Stage::Answered);
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Remote,
        reason: None,
    });
    let acts = h.sip(UaEvent::MediaUpdate {
        call: SIP_CALL,
        sdp: answer_to(&core_offer()),
    });
    assert!(acts.is_empty());
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(16),
        by: ClearedBy::Local,
    });
    cdr(&h.summary(TS));
    assert!(h.m.is_idle());
    assert_eq!(h.m.counters.stray_events, 1);
}

#[test]
fn reinvite_moves_the_media() {
    let mut h = H::new();
    drive_to(&mut h, Stage::Answered);
    let mut moved = core_media();
    moved.port = 31000;
    let acts = h.sip(UaEvent::MediaUpdate {
        call: SIP_CALL,
        sdp: sdp::offer(&moved),
    });
    assert_eq!(
        acts,
        [Action::Media(media::Command::UpdateRemote {
            ch: ChannelId {
                span: 1,
                timeslot: TS
            },
            remote: "192.0.2.7:31000".parse().unwrap(),
            restrict_to_sdp: false,
        })]
    );
}

#[test]
fn group_down_rejects_at_once_with_cause_34() {
    let mut h = H::new();
    h.m.handle_peer("mcvp", "192.0.2.7:5060", false);
    h.m.handle_peer("mcvp", "192.0.2.8:5060", true);
    let acts = h.isdn(setup("999", 1));
    place_token(&acts);
    h.m.handle_peer("mcvp", "192.0.2.8:5060", false);
    let acts = h.isdn(setup("101", 2));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(2),
            cause: Cause(34)
        }]
    );
    assert!(!acts.iter().any(|a| matches!(a, Action::Sip(_))));
    let acts = h.isdn(Event::Released {
        id: CallId(2),
        cause: Cause(34),
        by: ClearedBy::Local,
    });
    assert_eq!(cdr(&acts).q850_cause, 34);
    assert_eq!(h.m.counters.refused_group_down, 1);
}

#[test]
fn no_route_incomplete_and_digit_limits() {
    let mut h = H::new();
    let acts = h.isdn(setup("123", 1));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(1)
        }]
    );
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(1),
        by: ClearedBy::Local,
    });
    // "0207" could still become a contact-centre number: address incomplete.
    let acts = h.isdn(setup("0207946", 2));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(2),
            cause: Cause(28)
        }]
    );
    h.isdn(Event::Released {
        id: CallId(2),
        cause: Cause(28),
        by: ClearedBy::Local,
    });
    let acts = h.isdn(setup("02079460000", 3));
    let (_, invite) = place_token(&acts);
    assert_eq!(
        invite.request_uri.to_string(),
        "sip:02079460000@contact;user=phone"
    );
    // Too short for its route (min 11): cause 28.
    let mut cfg = config();
    cfg.route_digits[0].min_digits = 4;
    let mut h = H::with(cfg);
    let acts = h.isdn(setup("999", 4));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(4),
            cause: Cause(28)
        }]
    );
}

#[test]
fn draining_refuses_both_ways() {
    let mut h = H::new();
    h.m.set_draining(true);
    let acts = h.isdn(setup("999", 1));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(42)
        }]
    );
    let acts = h.sip(incoming_invite("999"));
    let Action::Sip(SipAction::Reject { status, .. }) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(*status, 503);
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(42),
        by: ClearedBy::Local,
    });
    assert!(h.m.is_idle());
}

#[test]
fn setup_not_placed_tries_the_next_span_then_503() {
    let mut h = H::new();
    let acts = h.sip(incoming_invite("999"));
    let Action::Isdn {
        span: 1,
        command: IsdnCommand::PlaceCall { token, .. },
    } = acts[0].clone()
    else {
        panic!("{acts:?}")
    };
    h.m.handle_isdn_placed(
        h.now,
        token,
        Err(TaskError::Refused(CommandError::NoChannel)),
    );
    let acts = h.drain();
    let Action::Isdn {
        span: 2,
        command: IsdnCommand::PlaceCall { token, .. },
    } = acts[0].clone()
    else {
        panic!("{acts:?}")
    };
    h.m.handle_isdn_placed(h.now, token, Err(TaskError::Stopped));
    let acts = h.drain();
    let Action::Sip(SipAction::Reject { status, .. }) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(*status, 503, "cause 34 -> 503");
    let acts = h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    assert_eq!(cdr(&acts).q850_cause, 34);
    assert!(h.m.is_idle());
}

#[test]
fn core_cancels_while_setup_is_placed() {
    let mut h = H::new();
    let acts = h.sip(incoming_invite("999"));
    let Action::Isdn {
        command: IsdnCommand::PlaceCall { token, .. },
        ..
    } = acts[0].clone()
    else {
        panic!()
    };
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Remote,
        reason: None,
    });
    h.m.handle_isdn_placed(h.now, token, Ok(CallId(3)));
    let acts = h.drain();
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Release {
            id: CallId(3),
            cause: Cause(16)
        }]
    );
    let acts = h.isdn(Event::Released {
        id: CallId(3),
        cause: Cause(16),
        by: ClearedBy::Local,
    });
    cdr(&acts);
    assert!(h.m.is_idle());
}

#[test]
fn no_answer_timer_and_missing_summary() {
    let mut h = H::new();
    let offer = exchange_call_placed(&mut h);
    h.sip(UaEvent::Provisional {
        call: SIP_CALL,
        status: 183,
        sdp: Some(answer_to(&offer)),
    });
    let acts = h.advance(Duration::from_secs(301));
    assert!(isdn_cmds(&acts).contains(&IsdnCommand::Disconnect {
        id: CallId(1),
        cause: Cause(19)
    }));
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(19),
        by: ClearedBy::Local,
    });
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    // The media summary never comes: the CDR goes out after summary_wait.
    let acts = h.advance(Duration::from_secs(3));
    assert!(cdr(&acts).quality.is_none());
    assert!(h.m.is_idle());
    assert_eq!(h.m.counters.summaries_missing, 1);
}

#[test]
fn audit_restarts_a_stuck_channel() {
    let mut h = H::new();
    let mut table = ChannelTable::e1();
    table.set(7, ChannelState::Busy); // Q.931 busy, the manager knows nothing
    h.m.handle_channel_table(SPAN, &table);
    let acts = h.advance(Duration::from_secs(60));
    assert!(isdn_cmds(&acts).is_empty(), "one audit is not enough");
    let acts = h.advance(Duration::from_secs(60));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Restart {
            class: RestartClass::INDICATED_CHANNELS,
            timeslots: vec![7]
        }]
    );
    assert_eq!(h.m.counters.audit_restarts, 1);
    table.set(7, ChannelState::Idle);
    h.m.handle_channel_table(SPAN, &table);
    let acts = h.advance(Duration::from_secs(120));
    assert!(isdn_cmds(&acts).is_empty());

    // The other way: the manager holds a call Q.931 has the channel idle
    // for. It is probed, not restarted or forgotten, until Q.931 says it
    // does not know the call.
    drive_to(&mut h, Stage::Answered);
    h.advance(Duration::from_secs(60));
    let acts = h.advance(Duration::from_secs(60));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::StatusEnquiry { id: CallId(1) }]
    );
    assert_eq!(h.m.counters.audit_restarts, 1, "no RESTART for a call");
    assert_eq!(h.m.call_count(), 1, "not forgotten on suspicion");
    h.m.handle_isdn_refused(
        h.now,
        SPAN,
        CallId(1),
        TaskError::Refused(CommandError::UnknownCall),
    );
    let acts = h.drain();
    assert!(isdn_cmds(&acts).is_empty(), "nothing for a call Q.931 lost");
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Sip(SipAction::Hangup { .. })))
    );
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    let r = cdr(&h.summary(TS));
    assert_eq!(r.q850_cause, 41);
    assert!(h.m.is_idle());
}

#[test]
fn long_calls_get_status_enquiry() {
    let mut cfg = config();
    cfg.long_call_check = Duration::from_secs(100);
    let mut h = H::with(cfg);
    drive_to(&mut h, Stage::Answered);
    let mut table = ChannelTable::e1();
    table.set(TS, ChannelState::Busy);
    h.m.handle_channel_table(SPAN, &table);
    let acts = h.advance(Duration::from_secs(60));
    assert!(isdn_cmds(&acts).is_empty());
    let acts = h.advance(Duration::from_secs(60));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::StatusEnquiry { id: CallId(1) }]
    );
}

#[test]
fn info_dtmf_is_played_into_the_timeslot() {
    let mut h = H::new();
    drive_to(&mut h, Stage::Answered);
    let acts = h.sip(UaEvent::InfoDtmf {
        call: SIP_CALL,
        digit: '5',
        duration_ms: Some(160),
    });
    let Action::Media(media::Command::SendDigits { digits, .. }) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(digits.as_bytes(), b"5");
    assert_eq!(digits.on_ms, 160);
}

#[test]
fn restricted_caller_is_anonymous_with_privacy() {
    let mut h = H::new();
    let mut calling = number("2079460123");
    calling.presentation = Some((1, 3));
    let acts = h.isdn(Event::IncomingCall {
        id: CallId(1),
        called: Some(PartyNumber::new(0, 1, "999")),
        calling: Some(calling),
        bearer: None,
        channel: TS,
    });
    let (_, invite) = place_token(&acts);
    assert_eq!(
        invite.from.uri.to_string(),
        "sip:anonymous@anonymous.invalid"
    );
    assert!(invite.headers.iter().any(|h| h.is("Privacy")));
    assert!(invite.headers.iter().any(|h| h.is("P-Asserted-Identity")));
}

#[test]
fn answer_without_g711_is_cleared_with_cause_65() {
    let mut h = H::new();
    exchange_call_placed(&mut h);
    let mut g729 = core_media();
    g729.codecs = vec!["G729".into()];
    let mut answer = sdp::offer(&g729);
    answer.media[0].formats.push(sdp::Format {
        payload_type: 18,
        encoding: "G729".into(),
        clock_rate: 8000,
        fmtp: None,
    });
    let acts = h.sip(UaEvent::Answered {
        call: SIP_CALL,
        sdp: Some(answer),
    });
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(65)
        }]
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Sip(SipAction::Hangup { .. })))
    );
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(65),
        by: ClearedBy::Local,
    });
    let acts = h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    assert_eq!(cdr(&acts).q850_cause, 65);
    assert!(h.m.is_idle());
}

#[test]
fn events_before_the_placed_reply_are_held_and_replayed() {
    // Core -> exchange: CALL PROCEEDING and ALERTING arrive before the
    // shell feeds the PlaceCall reply.
    let mut h = H::new();
    let acts = h.sip(incoming_invite("999"));
    let Action::Isdn {
        command: IsdnCommand::PlaceCall { token, .. },
        ..
    } = acts[0].clone()
    else {
        panic!()
    };
    assert!(
        h.isdn(Event::Proceeding {
            id: CallId(4),
            channel: TS
        })
        .is_empty()
    );
    assert!(h.isdn(Event::Alerting { id: CallId(4) }).is_empty());
    h.m.handle_isdn_placed(h.now, token, Ok(CallId(4)));
    let acts = h.drain();
    assert_eq!(
        acts,
        [Action::Sip(SipAction::Provisional {
            call: SIP_CALL,
            status: 180,
            sdp: None
        })]
    );
    assert_eq!(h.m.counters.stray_events, 0);

    // Exchange -> core: the 200 arrives before the INVITE's handle.
    let mut h = H::new();
    let acts = h.isdn(setup("999", 1));
    let (token, invite) = place_token(&acts);
    assert!(
        h.sip(UaEvent::Answered {
            call: SIP_CALL,
            sdp: Some(answer_to(&invite.sdp)),
        })
        .is_empty()
    );
    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    let acts = h.drain();
    assert!(isdn_cmds(&acts).contains(&IsdnCommand::Connect { id: CallId(1) }));

    // A reply that fails: the held events of nobody are dispatched as strays.
    let mut h = H::new();
    let acts = h.isdn(setup("999", 1));
    let (token, _) = place_token(&acts);
    h.sip(UaEvent::Answered {
        call: CallHandle(500),
        sdp: None,
    });
    h.m.handle_sip_placed(h.now, token, Err(SipPlaceError::Stopped));
    let acts = h.drain();
    assert!(
        acts.contains(&Action::Sip(SipAction::Hangup {
            call: CallHandle(500),
            reason: Some("Q.850;cause=16;text=\"normal call clearing\"".into())
        })),
        "{acts:?}"
    );
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause(34),
        by: ClearedBy::Local,
    });
    assert!(h.m.is_idle());
}

/// An exchange that answers our SETUP with CONNECT at once (no CALL
/// PROCEEDING, Q.931 §5.1.8): Q.931 reports the channel first
/// (`ChannelSelected`), so the call is answered, not cleared with cause 47
/// for want of a channel.
#[test]
fn connect_as_first_answer_carries_the_channel() {
    let mut h = H::new();
    let acts = h.sip(incoming_invite("+442079460999"));
    let Action::Isdn {
        command: IsdnCommand::PlaceCall { token, .. },
        ..
    } = one(&acts, |a| matches!(a, Action::Isdn { .. }), "SETUP")
    else {
        panic!()
    };
    h.m.handle_isdn_placed(h.now, token, Ok(CallId(9)));
    assert!(
        h.isdn(Event::ChannelSelected {
            id: CallId(9),
            channel: TS
        })
        .is_empty()
    );
    let acts = h.isdn(Event::Connected { id: CallId(9) });
    let Action::Sip(SipAction::Accept { sdp: Some(ans), .. }) = one(
        &acts,
        |a| matches!(a, Action::Sip(SipAction::Accept { .. })),
        "200",
    ) else {
        panic!("{acts:?}")
    };
    assert_eq!(ans.audio_address().unwrap().1, 40000 + 2 * u16::from(TS));
    assert_eq!(h.m.counters.answered, 1);
    assert_eq!(h.m.calls_in_progress()[0].state, "active");
}

/// Issue 7, the audit restart (seed 8535512414357255292, scripted): two
/// SETUPs of span 1 await their PlaceCall replies. The first call gets
/// TS 6, is released, and the second then gets TS 6; the second reply
/// comes first. Held events are applied in Q.931's order, so the second
/// call ends on TS 6 and the audit finds nothing to restart.
#[test]
fn held_events_keep_the_order_of_a_channel() {
    let mut cfg = config();
    cfg.core_routes = vec![CoreRoute {
        called: "*".into(),
        spans: vec![SPAN],
    }];
    let mut h = H::with(cfg);
    let mut tokens = Vec::new();
    for (i, call) in [CallHandle(1), CallHandle(2)].into_iter().enumerate() {
        let mut invite = incoming_invite("+442079460999");
        if let UaEvent::IncomingCall { call: c, .. } = &mut invite {
            *c = call;
        }
        let acts = h.sip(invite);
        let Action::Isdn {
            command: IsdnCommand::PlaceCall { token, .. },
            ..
        } = one(&acts, |a| matches!(a, Action::Isdn { .. }), "SETUP")
        else {
            panic!("{i}")
        };
        tokens.push(token);
    }
    // Q.931's order: call 1 on TS 6 and released; call 2 on TS 6.
    for e in [
        Event::Proceeding {
            id: CallId(1),
            channel: 6,
        },
        Event::Released {
            id: CallId(1),
            cause: Cause(41),
            by: ClearedBy::Remote,
        },
        Event::Proceeding {
            id: CallId(2),
            channel: 6,
        },
        Event::Alerting { id: CallId(2) },
    ] {
        assert!(h.isdn(e).is_empty(), "held while both replies are out");
    }
    assert_eq!(h.m.held_events(), 4);
    // The second reply first: its events still wait behind call 1's TS 6.
    h.m.handle_isdn_placed(h.now, tokens[1], Ok(CallId(2)));
    assert!(h.drain().is_empty());
    assert_eq!(h.m.held_events(), 4);
    h.m.handle_isdn_placed(h.now, tokens[0], Ok(CallId(1)));
    let acts = h.drain();
    assert_eq!(h.m.held_events(), 0);
    assert!(
        acts.iter().any(|a| matches!(
            a,
            Action::Sip(SipAction::Reject {
                call: CallHandle(1),
                ..
            })
        )),
        "call 1 refused to the core: {acts:?}"
    );
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Sip(SipAction::Provisional {
            call: CallHandle(2),
            status: 180,
            ..
        })
    )));
    let calls = h.m.calls_in_progress();
    let live: Vec<_> = calls.iter().filter(|c| c.state != "clearing").collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].timeslot, Some(6));
    // Two audits over a table with TS 6 busy: the call is there, no RESTART.
    let mut table = ChannelTable::e1();
    table.set(6, ChannelState::Busy);
    h.m.handle_channel_table(SPAN, &table);
    let mut acts = h.advance(Duration::from_secs(60));
    acts.extend(h.advance(Duration::from_secs(60)));
    assert!(isdn_cmds(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.m.counters.audit_mismatches, 0);
}

/// A call Q.931 still holds is never forgotten on the audit's suspicion:
/// STATUS ENQUIRY is sent, and only "unknown call" drops the leg.
#[test]
fn the_audit_never_forgets_a_call_q931_holds() {
    let mut h = H::new();
    drive_to(&mut h, Stage::Answered);
    // Q.931 shows the channel idle (a stale table), twice.
    h.m.handle_channel_table(SPAN, &ChannelTable::e1());
    h.advance(Duration::from_secs(60));
    let acts = h.advance(Duration::from_secs(60));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::StatusEnquiry { id: CallId(1) }]
    );
    // Q.931 knows the call (a refusal for another reason changes nothing).
    h.m.handle_isdn_refused(
        h.now,
        SPAN,
        CallId(1),
        TaskError::Refused(CommandError::WrongState),
    );
    assert!(h.drain().is_empty());
    assert_eq!(h.m.call_count(), 1);
    assert_eq!(h.m.counters.audit_restarts, 0);
    assert_eq!(h.m.counters.audit_probes, 1);
}

fn rtp_timeout(h: &mut H) -> Vec<Action> {
    h.m.handle_media(
        h.now,
        media::Event::RtpTimeout {
            ch: ChannelId {
                span: u16::from(SPAN),
                timeslot: TS,
            },
            silent_ms: 30_000,
        },
    );
    h.drain()
}

/// RTP timeout on an answered call: cleared with cause 41 towards the
/// exchange (DISCONNECT) and BYE with `Reason: Q.850;cause=41` towards the
/// core. Before the answer, or with `rtp_timeout_action = log`, it is
/// logged only.
#[test]
fn rtp_timeout_clears_an_answered_call() {
    let mut h = H::new();
    drive_to(&mut h, Stage::Answered);
    let acts = rtp_timeout(&mut h);
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(1),
            cause: Cause(41)
        }]
    );
    let Action::Sip(SipAction::Hangup {
        reason: Some(r), ..
    }) = one(
        &acts,
        |a| matches!(a, Action::Sip(SipAction::Hangup { .. })),
        "BYE",
    )
    else {
        panic!()
    };
    assert!(r.starts_with("Q.850;cause=41"), "{r}");
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Media(media::Command::Disconnect { .. })))
    );
    assert_eq!(h.m.counters.rtp_timeout_clears, 1);

    // Early media only: logged.
    let mut h = H::new();
    drive_to(&mut h, Stage::EarlyMedia);
    assert!(rtp_timeout(&mut h).is_empty());
    assert_eq!(h.m.counters.rtp_timeouts, 1);

    // The site asked for logging only.
    let mut cfg = config();
    cfg.rtp_timeout_action = RtpTimeoutAction::Log;
    let mut h = H::with(cfg);
    drive_to(&mut h, Stage::Answered);
    assert!(rtp_timeout(&mut h).is_empty());
    assert_eq!(h.m.counters.rtp_timeout_clears, 0);
}

/// The media session of an answered call is connected with the configured
/// RTP timeout.
#[test]
fn media_is_connected_with_the_configured_rtp_timeout() {
    let mut cfg = config();
    cfg.rtp_timeout = Duration::from_secs(12);
    let mut h = H::with(cfg);
    let acts = h.isdn(setup("999", 1));
    let (token, offer) = place_token(&acts);
    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    let acts = h.sip(UaEvent::Answered {
        call: SIP_CALL,
        sdp: Some(answer_to(&offer.sdp)),
    });
    let Action::Media(media::Command::Connect { params, .. }) = one(
        &acts,
        |a| matches!(a, Action::Media(media::Command::Connect { .. })),
        "connect",
    ) else {
        panic!()
    };
    assert_eq!(params.rtp_timeout_ms, 12_000);
}

/// Busy-out: when every peer of the groups a span's routes use is down,
/// the span is busied out (once), and back in service when one comes up.
#[test]
fn busy_out_follows_the_core_groups() {
    let mut cfg = config();
    cfg.busy_out = true;
    cfg.core_routes[0].spans = vec![SPAN];
    let mut h = H::with(cfg);
    h.m.handle_peer("mcvp", "192.0.2.7:5060", true);
    h.m.handle_peer("contact", "192.0.2.9:5060", false);
    assert!(
        h.drain().is_empty(),
        "the span's 999 and 101 still have a peer"
    );
    h.m.handle_peer("mcvp", "192.0.2.7:5060", false);
    let acts = h.drain();
    assert_eq!(
        acts,
        [Action::Isdn {
            span: SPAN,
            command: IsdnCommand::BusyOut { on: true }
        }]
    );
    assert_eq!(h.m.busied_out(), [SPAN]);
    h.m.handle_peer("mcvp", "192.0.2.8:5060", false);
    assert!(h.drain().is_empty(), "once");
    // A SETUP that still comes (on a channel busy before) gets 34 at once.
    let acts = h.isdn(setup("999", 3));
    assert_eq!(
        isdn_cmds(&acts),
        [IsdnCommand::Disconnect {
            id: CallId(3),
            cause: Cause(34)
        }]
    );
    h.m.handle_peer("mcvp", "192.0.2.8:5060", true);
    let acts = h.drain();
    assert_eq!(
        acts,
        [Action::Isdn {
            span: SPAN,
            command: IsdnCommand::BusyOut { on: false }
        }]
    );
    assert!(h.m.busied_out().is_empty());

    // Without the switch nothing is busied out.
    let mut h = H::new();
    h.m.handle_peer("mcvp", "192.0.2.7:5060", false);
    assert!(h.drain().is_empty());
}

/// The status view's calls: span, timeslot, direction, numbers, state,
/// peer; the id is the CDR's.
#[test]
fn calls_in_progress_for_the_status() {
    let mut h = H::new();
    let acts = h.isdn(setup("999", 1));
    let (token, offer) = place_token(&acts);
    let c = &h.m.calls_in_progress()[0];
    assert_eq!((c.span, c.timeslot, c.state), (SPAN, Some(TS), "setup"));
    assert_eq!(
        (c.called.as_str(), c.calling.as_str()),
        ("999", "2079460123")
    );
    assert_eq!(c.direction, Direction::ExchangeToCore);
    assert_eq!(c.peer, None);
    h.m.handle_sip_placed(h.now, token, Ok(SIP_CALL));
    h.sip(UaEvent::Provisional {
        call: SIP_CALL,
        status: 180,
        sdp: None,
    });
    assert_eq!(h.m.calls_in_progress()[0].state, "alerting");
    h.m.handle_sip_peer(SIP_CALL, "192.0.2.7:5060");
    h.sip(UaEvent::Answered {
        call: SIP_CALL,
        sdp: Some(answer_to(&offer.sdp)),
    });
    let c = h.m.calls_in_progress()[0].clone();
    assert_eq!(c.state, "active");
    assert_eq!(c.peer.as_deref(), Some("192.0.2.7:5060"));
    h.isdn(Event::Disconnected {
        id: CallId(1),
        cause: Cause::NORMAL_CLEARING,
        by: ClearedBy::Remote,
    });
    assert_eq!(h.m.calls_in_progress()[0].state, "clearing");
    h.isdn(Event::Released {
        id: CallId(1),
        cause: Cause::NORMAL_CLEARING,
        by: ClearedBy::Remote,
    });
    h.sip(UaEvent::Ended {
        call: SIP_CALL,
        by: EndedBy::Local,
        reason: None,
    });
    let r = cdr(&h.summary(TS));
    assert_eq!(r.call_id, c.id);
    assert_eq!(r.core_peer.as_deref(), Some("192.0.2.7:5060"));
    assert!(h.m.calls_in_progress().is_empty());
}

/// The core's INVITE names its source as the call's peer.
#[test]
fn an_incoming_call_names_its_core_peer() {
    let mut h = H::new();
    core_call_proceeding(&mut h);
    assert_eq!(
        h.m.calls_in_progress()[0].peer.as_deref(),
        Some("192.0.2.7:5060")
    );
}
