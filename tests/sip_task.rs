//! Two SIP tasks, a "gateway" and a "core", over loopback UDP, TCP and TLS
//! (certificates made here with rcgen): calls both ways with SDP, BYE from
//! either side, CANCEL, failover from a dead peer to a live one, and peer
//! health by OPTIONS. Every test ends with no call, dialog or transaction
//! left on either side.

mod sip_common;

use std::net::SocketAddr;
use std::time::Duration;

use sip_common::*;
use tdmgw::sip::peer::{GroupParams, PeerId, PeerState};
use tdmgw::sip::sdp;
use tdmgw::sip::task::SipEvent;
use tdmgw::sip::transport::{TlsMaterial, Transport};
use tdmgw::sip::ua::EndedBy;

/// A test PKI: a CA and leaf certificates it signs.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tdmgw sip_task CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Material with a certificate for `name` (server and client use).
    fn material(&self, name: &str) -> TlsMaterial {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TlsMaterial {
            ca_pem: self.ca_pem.clone().into_bytes(),
            cert_pem: Some(cert.pem().into_bytes()),
            key_pem: Some(key.serialize_pem().into_bytes()),
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(LOOPBACK, port)
}

/// Pings rarely, so that the call tests end idle.
const RARE: Duration = Duration::from_secs(60);

/// A gateway and a core that know each other over `transport` (group
/// "core" on the gateway, "gw" on the core).
async fn pair(transport: Transport) -> (Node, Node) {
    let (gp, cp) = (free_port(), free_port());
    let pki = (transport == Transport::Tls).then(Pki::new);
    let (gname, cname) = match transport {
        Transport::Tls => (Some("gw.test"), Some("core.test")),
        _ => (None, None),
    };
    let listen = |port| vec![(transport, addr(port))];
    let gw = node(
        1,
        &listen(gp),
        vec![group(
            "core",
            RARE,
            vec![peer(addr(cp), transport, 1, cname)],
        )],
        pki.as_ref().map(|p| p.material("gw.test")),
    )
    .await;
    let core = node(
        2,
        &listen(cp),
        vec![group("gw", RARE, vec![peer(addr(gp), transport, 1, gname)])],
        pki.as_ref().map(|p| p.material("core.test")),
    )
    .await;
    (gw, core)
}

/// `caller` calls `callee` in `group`; the callee rings and answers with
/// its SDP; the agreed media addresses are checked. Returns both ids.
async fn connected_call(
    caller: &mut Node,
    callee: &mut Node,
    group: &str,
) -> (tdmgw::sip::task::SipCallId, tdmgw::sip::task::SipCallId) {
    let id = caller
        .handle
        .place_call(call_to(group, "999", 40_000))
        .await
        .unwrap();
    let ev = callee
        .wait("IncomingCall", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await;
    let SipEvent::IncomingCall {
        call,
        sdp: offered,
        peer,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(peer, Some(PeerId(0)), "the caller is a configured peer");
    let offered = offered.expect("INVITE carries an offer");
    assert_eq!(offered.audio_address(), Some((LOOPBACK, 40_000)));
    callee
        .handle
        .send_provisional(call, 180, None)
        .await
        .unwrap();
    let answer = sdp::answer(&offered, &media(41_000));
    callee.handle.accept(call, Some(answer)).await.unwrap();
    let ev = caller
        .wait("Provisional", |e| matches!(e, SipEvent::Provisional { .. }))
        .await;
    assert!(matches!(ev, SipEvent::Provisional { status: 180, call, .. } if call == id));
    let ev = caller
        .wait("Answered", |e| matches!(e, SipEvent::Answered { .. }))
        .await;
    let SipEvent::Answered { call, sdp, .. } = ev else {
        unreachable!()
    };
    assert_eq!(call, id);
    assert_eq!(
        sdp.and_then(|s| s.audio_address()),
        Some((LOOPBACK, 41_000))
    );
    (id, call)
}

/// Caller hangs up with a Reason; both sides see the end.
async fn bye(from: &mut Node, id: tdmgw::sip::task::SipCallId, to: &mut Node) {
    from.handle
        .hangup(id, Some("Q.850;cause=16;text=\"Normal call clearing\""))
        .await
        .unwrap();
    let ev = to
        .wait("Ended", |e| matches!(e, SipEvent::Ended { .. }))
        .await;
    let SipEvent::Ended { by, reason, .. } = ev else {
        unreachable!()
    };
    assert_eq!(by, EndedBy::Remote);
    assert!(reason.unwrap_or_default().contains("cause=16"));
    let ev = from
        .wait("Ended", |e| matches!(e, SipEvent::Ended { .. }))
        .await;
    assert!(matches!(ev, SipEvent::Ended { by: EndedBy::Local, call, .. } if call == id));
}

async fn both_ways(transport: Transport) {
    let (mut gw, mut core) = pair(transport).await;
    // Gateway -> core, the caller clears.
    let (g, c) = connected_call(&mut gw, &mut core, "core").await;
    // In the call: a new offer (re-INVITE) and a DTMF INFO.
    let moved = sdp::offer(&sip_common::media(40_100));
    gw.handle.reinvite(g, moved).await.unwrap();
    let ev = core
        .wait("MediaUpdate", |e| matches!(e, SipEvent::MediaUpdate { .. }))
        .await;
    let SipEvent::MediaUpdate { call, sdp } = ev else {
        unreachable!()
    };
    assert_eq!((call, sdp.audio_address()), (c, Some((LOOPBACK, 40_100))));
    gw.handle.send_dtmf_info(g, '9', 160).await.unwrap();
    let ev = core
        .wait("InfoDtmf", |e| matches!(e, SipEvent::InfoDtmf { .. }))
        .await;
    assert_eq!(
        ev,
        SipEvent::InfoDtmf {
            call: c,
            digit: '9',
            duration_ms: Some(160)
        }
    );
    bye(&mut gw, g, &mut core).await;
    // Core -> gateway, the callee (gateway) clears.
    let (_c, g) = connected_call(&mut core, &mut gw, "gw").await;
    bye(&mut gw, g, &mut core).await;
    gw.wait_idle().await;
    core.wait_idle().await;
    for n in [gw, core] {
        let stopped = n.stop().await;
        assert!(stopped.ua.is_idle());
    }
}

#[tokio::test]
async fn calls_both_ways_over_udp() {
    both_ways(Transport::Udp).await;
}

#[tokio::test]
async fn calls_both_ways_over_tcp() {
    both_ways(Transport::Tcp).await;
}

#[tokio::test]
async fn calls_both_ways_over_mutual_tls() {
    both_ways(Transport::Tls).await;
}

/// Over TCP: on UDP the INVITE client transaction keeps absorbing 487
/// retransmissions for Timer D, a fixed 32 s (RFC 3261 §17.1.1.2), too
/// long for a test that ends idle; on TCP Timer D is zero.
#[tokio::test]
async fn cancel_of_a_ringing_call() {
    let (mut gw, mut core) = pair(Transport::Tcp).await;
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    let SipEvent::IncomingCall { call, .. } = core
        .wait("IncomingCall", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await
    else {
        unreachable!()
    };
    core.handle.send_provisional(call, 180, None).await.unwrap();
    gw.wait("Provisional", |e| matches!(e, SipEvent::Provisional { .. }))
        .await;
    gw.handle.hangup(id, Some("Q.850;cause=16")).await.unwrap();
    let ev = core
        .wait("Ended", |e| matches!(e, SipEvent::Ended { .. }))
        .await;
    assert!(
        matches!(
            ev,
            SipEvent::Ended {
                by: EndedBy::Remote,
                ..
            }
        ),
        "{ev:?}"
    );
    // Our INVITE ends with the 487 of the CANCELled INVITE: no failover.
    let ev = gw
        .wait("the call's end", |e| {
            matches!(e, SipEvent::Failed { .. } | SipEvent::Ended { .. })
        })
        .await;
    match ev {
        SipEvent::Failed { status, call, .. } => assert_eq!((status, call), (487, id)),
        SipEvent::Ended { call, .. } => assert_eq!(call, id),
        _ => unreachable!(),
    }
    assert_eq!(gw.handle.status().borrow().task.failovers, 0);
    gw.wait_idle().await;
    core.wait_idle().await;
    gw.stop().await;
    core.stop().await;
}

/// A group whose best peer is dead (`dead` transport on a closed port) and
/// whose second peer is the live core: the call lands on the core.
async fn failover(dead: Transport) {
    let cp = free_port();
    // UDP: a socket that never answers; TCP: a closed port (refused).
    let (_silent, silent_addr) = silent_udp_peer();
    let dead_addr = match dead {
        Transport::Udp => silent_addr,
        _ => addr(closed_port()),
    };
    let mut core = node(2, &[(Transport::Udp, addr(cp))], vec![], None).await;
    let mut gw = node(
        1,
        &[
            (Transport::Udp, addr(free_port())),
            (Transport::Tcp, addr(free_port())),
        ],
        vec![group(
            "core",
            RARE,
            vec![
                peer(dead_addr, dead, 1, None),
                peer(addr(cp), Transport::Udp, 2, None),
            ],
        )],
        None,
    )
    .await;
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    let SipEvent::IncomingCall {
        call, sdp: offered, ..
    } = core
        .wait("IncomingCall", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await
    else {
        unreachable!()
    };
    let answer = sdp::answer(&offered.unwrap(), &media(41_000));
    core.handle.accept(call, Some(answer)).await.unwrap();
    let ev = gw
        .wait("Answered", |e| matches!(e, SipEvent::Answered { .. }))
        .await;
    assert!(
        matches!(ev, SipEvent::Answered { call, peer: PeerId(1), .. } if call == id),
        "{ev:?}"
    );
    let status = gw.handle.status().borrow().clone();
    assert_eq!(status.task.failovers, 1);
    assert_eq!(status.peers[0].call_failures, 1);
    bye(&mut gw, id, &mut core).await;
    gw.wait_idle().await;
    core.wait_idle().await;
    gw.stop().await;
    core.stop().await;
}

#[tokio::test]
async fn failover_from_a_silent_udp_peer() {
    failover(Transport::Udp).await;
}

#[tokio::test]
async fn failover_from_a_refused_tcp_peer() {
    failover(Transport::Tcp).await;
}

#[tokio::test]
async fn a_group_of_dead_peers_fails_the_call_with_503_or_408() {
    let mut gw = node(
        1,
        &[(Transport::Tcp, addr(free_port()))],
        vec![group(
            "core",
            RARE,
            vec![
                peer(addr(closed_port()), Transport::Tcp, 1, None),
                peer(addr(closed_port()), Transport::Tcp, 2, None),
            ],
        )],
        None,
    )
    .await;
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    let ev = gw
        .wait("Failed", |e| matches!(e, SipEvent::Failed { .. }))
        .await;
    assert!(
        matches!(ev, SipEvent::Failed { call, status: 503 | 408, .. } if call == id),
        "{ev:?}"
    );
    assert_eq!(gw.handle.status().borrow().task.calls_failed_all_peers, 1);
    assert!(
        gw.handle
            .place_call(call_to("nope", "999", 1))
            .await
            .is_err()
    );
    gw.wait_idle().await;
    gw.stop().await;
}

#[tokio::test]
async fn peer_goes_down_without_options_answers_and_comes_back() {
    // Silent first: a socket of ours that never answers, on the port where
    // the core comes up later.
    let (silent, silent_addr) = silent_udp_peer();
    let cp = silent_addr.port();
    let mut gw = node(
        1,
        &[(Transport::Udp, addr(free_port()))],
        vec![group(
            "core",
            Duration::from_millis(100),
            vec![peer(addr(cp), Transport::Udp, 1, None)],
        )],
        None,
    )
    .await;
    let ev = gw
        .wait("PeerDown", |e| matches!(e, SipEvent::PeerDown(_)))
        .await;
    let SipEvent::PeerDown(info) = ev else {
        unreachable!()
    };
    assert_eq!((info.address, info.group.as_str()), (addr(cp), "core"));
    assert_eq!(gw.handle.status().borrow().peers[0].state, PeerState::Down);
    // The core comes up on that port: the next answered ping brings it back.
    drop(silent);
    let core = node(2, &[(Transport::Udp, addr(cp))], vec![], None).await;
    gw.wait("PeerUp", |e| matches!(e, SipEvent::PeerUp(_)))
        .await;
    let s = gw.handle.status().borrow().clone();
    assert_eq!(s.peers[0].state, PeerState::Up);
    assert_eq!((s.calls, s.ua_calls, s.dialogs), (0, 0, 0));
    assert!(s.peers[0].srtt.is_some(), "the ping round trip is measured");
    assert!(s.peers[0].ping_failures >= 2);
    let stopped = gw.stop().await;
    assert_eq!((stopped.ua.call_count(), stopped.ua.dialog_count()), (0, 0));
    core.wait_idle().await;
    core.stop().await;
}

/// A draining core answers OPTIONS and INVITE with 503 (RFC 3261 §11.2,
/// §21.5.4): the gateway's pings take it down, a new call fails over to the
/// second core, and the pings bring the first back when it stops draining.
#[tokio::test]
async fn a_draining_core_is_taken_down_and_calls_go_to_the_other() {
    let (c1, c2) = (free_port(), free_port());
    let core1 = node(2, &[(Transport::Udp, addr(c1))], vec![], None).await;
    let mut core2 = node(3, &[(Transport::Udp, addr(c2))], vec![], None).await;
    core1.handle.set_draining(true).await.unwrap();
    assert!(core1.handle.status().borrow().draining);
    let mut gw = node(
        1,
        &[(Transport::Udp, addr(free_port()))],
        vec![group(
            "core",
            Duration::from_millis(100),
            vec![
                peer(addr(c1), Transport::Udp, 1, None),
                peer(addr(c2), Transport::Udp, 2, None),
            ],
        )],
        None,
    )
    .await;
    let SipEvent::PeerDown(info) = gw
        .wait("PeerDown", |e| matches!(e, SipEvent::PeerDown(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(info.address, addr(c1));
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    let SipEvent::IncomingCall { call, sdp: o, .. } = core2
        .wait("IncomingCall", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await
    else {
        unreachable!()
    };
    core2
        .handle
        .accept(call, Some(sdp::answer(&o.unwrap(), &media(41_000))))
        .await
        .unwrap();
    let ev = gw
        .wait("Answered", |e| matches!(e, SipEvent::Answered { .. }))
        .await;
    assert!(
        matches!(
            ev,
            SipEvent::Answered {
                peer: PeerId(1),
                ..
            }
        ),
        "{ev:?}"
    );
    bye(&mut gw, id, &mut core2).await;
    gw.wait_no_calls().await;
    core1.handle.set_draining(false).await.unwrap();
    let SipEvent::PeerUp(info) = gw
        .wait("PeerUp", |e| matches!(e, SipEvent::PeerUp(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(info.address, addr(c1));
    let stopped = gw.stop().await;
    assert_eq!((stopped.ua.call_count(), stopped.ua.dialog_count()), (0, 0));
    core2.wait_idle().await;
    // core1 saw only pings: none of its tables hold a call.
    let s = core1.handle.status().borrow().clone();
    assert_eq!((s.calls, s.ua_calls, s.dialogs), (0, 0, 0));
    core1.stop().await;
    core2.stop().await;
}

/// The call module hangs up while the first peer is still silent: no
/// failover to the second peer, and the call ends once.
#[tokio::test]
async fn hangup_during_a_silent_attempt_does_not_fail_over() {
    let cp = free_port();
    let (_silent, silent_addr) = silent_udp_peer();
    let mut core = node(2, &[(Transport::Udp, addr(cp))], vec![], None).await;
    let mut gw = node(
        1,
        &[(Transport::Udp, addr(free_port()))],
        vec![group(
            "core",
            RARE,
            vec![
                peer(silent_addr, Transport::Udp, 1, None),
                peer(addr(cp), Transport::Udp, 2, None),
            ],
        )],
        None,
    )
    .await;
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    gw.handle.hangup(id, Some("Q.850;cause=16")).await.unwrap();
    let ev = gw
        .wait("the call's end", |e| {
            matches!(e, SipEvent::Failed { .. } | SipEvent::Ended { .. })
        })
        .await;
    assert!(
        matches!(ev, SipEvent::Failed { call, .. } | SipEvent::Ended { call, .. } if call == id),
        "{ev:?}"
    );
    gw.wait_idle().await;
    let s = gw.handle.status().borrow().clone();
    assert_eq!(s.task.failovers, 0);
    assert!(
        core.events.try_recv().is_err(),
        "the second peer got no call"
    );
    assert_eq!(core.handle.status().borrow().task.calls_incoming, 0);
    gw.stop().await;
    core.stop().await;
}

/// The best peer answers our INVITE with 503 (it is draining, RFC 3261
/// §21.5.4): the call moves to the next peer at once.
#[tokio::test]
async fn failover_on_a_503_answer() {
    let (c1, c2) = (free_port(), free_port());
    // TCP to the draining core: on UDP its 503'd INVITE would linger for
    // Timer D (32 s) before the test could see the gateway idle.
    let core1 = node(2, &[(Transport::Tcp, addr(c1))], vec![], None).await;
    let mut core2 = node(3, &[(Transport::Udp, addr(c2))], vec![], None).await;
    core1.handle.set_draining(true).await.unwrap();
    let mut gw = node(
        1,
        &[
            (Transport::Udp, addr(free_port())),
            (Transport::Tcp, addr(free_port())),
        ],
        vec![GroupParams {
            // One failed ping is not enough to take a peer down.
            down_after: 5,
            ..group(
                "core",
                RARE,
                vec![
                    peer(addr(c1), Transport::Tcp, 1, None),
                    peer(addr(c2), Transport::Udp, 2, None),
                ],
            )
        }],
        None,
    )
    .await;
    let id = gw
        .handle
        .place_call(call_to("core", "999", 40_000))
        .await
        .unwrap();
    let SipEvent::IncomingCall { call, sdp: o, .. } = core2
        .wait("IncomingCall", |e| {
            matches!(e, SipEvent::IncomingCall { .. })
        })
        .await
    else {
        unreachable!()
    };
    core2
        .handle
        .accept(call, Some(sdp::answer(&o.unwrap(), &media(41_000))))
        .await
        .unwrap();
    let ev = gw
        .wait("Answered", |e| matches!(e, SipEvent::Answered { .. }))
        .await;
    assert!(
        matches!(
            ev,
            SipEvent::Answered {
                peer: PeerId(1),
                ..
            }
        ),
        "{ev:?}"
    );
    let s = gw.handle.status().borrow().clone();
    assert_eq!((s.task.failovers, s.peers[0].call_failures), (1, 1));
    bye(&mut gw, id, &mut core2).await;
    gw.wait_idle().await;
    core1.wait_idle().await;
    core2.wait_idle().await;
    for n in [gw, core1, core2] {
        n.stop().await;
    }
}
