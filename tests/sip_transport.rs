//! Process-level tests of the SIP transports over loopback: UDP, TCP and TLS
//! (certificates made here with rcgen), keep-alives, the allow-list and the
//! rate limit. Every wait is bounded; nothing asserts on elapsed time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tdmgw::sip::peer::{PingIds, options_request};
use tdmgw::sip::transport::{
    DropReason, ErrorKind, Inbound, Outbound, RateLimit, TlsMaterial, Transport, TransportConfig,
    TransportEvent, Transports, answer_rejection,
};
use tdmgw::sip::{Framing, Limits, Message, response_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn config(listen: &[(Transport, &str)]) -> TransportConfig {
    TransportConfig {
        listen: listen
            .iter()
            .map(|(t, a)| (*t, a.parse().unwrap()))
            .collect(),
        allowed_sources: vec![LOOPBACK],
        keepalive_interval: None,
        ..TransportConfig::default()
    }
}

async fn bind(cfg: TransportConfig) -> Transports {
    Transports::bind(cfg).await.expect("bind")
}

async fn next_event(t: &mut Transports) -> TransportEvent {
    timeout(WAIT, t.recv())
        .await
        .expect("no event in time")
        .expect("transports closed")
}

async fn next_message(t: &mut Transports) -> Inbound {
    match next_event(t).await {
        TransportEvent::Message(m) => m,
        TransportEvent::Error(e) => panic!("expected a message, got {e:?}"),
    }
}

async fn next_error(t: &mut Transports) -> tdmgw::sip::transport::TransportError {
    match next_event(t).await {
        TransportEvent::Error(e) => e,
        TransportEvent::Message(m) => panic!("expected an error, got {m:?}"),
    }
}

/// Poll `cond` until it holds; fails after [`WAIT`].
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let r = timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "timed out waiting for {what}");
}

fn options(n: u32, transport: Transport, from: SocketAddr, to: SocketAddr) -> Message {
    let ids = PingIds {
        branch: format!("z9hG4bKtest{n}"),
        call_id: format!("call{n}"),
        from_tag: "t1".into(),
        cseq: n,
    };
    options_request(to, transport, from, &ids)
}

fn send(t: &Transports, transport: Transport, destination: SocketAddr, m: &Message) -> Transport {
    t.send(Outbound {
        transport,
        destination,
        bytes: m.to_bytes(),
    })
    .expect("send")
}

/// `m` as the other side sees it (with its Content-Length).
fn reparsed(m: &Message) -> Message {
    Message::parse(&m.to_bytes(), Framing::Stream, Limits::default()).unwrap()
}

fn parse(i: &Inbound) -> Message {
    i.parse(Limits::default()).expect("parses")
}

#[tokio::test]
async fn udp_round_trip() {
    let mut gw = bind(config(&[(Transport::Udp, "127.0.0.1:0")])).await;
    let mut core = bind(config(&[(Transport::Udp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Udp).unwrap();
    let core_addr = core.local_addr(Transport::Udp).unwrap();
    let req = options(1, Transport::Udp, gw_addr, core_addr);
    assert_eq!(send(&gw, Transport::Udp, core_addr, &req), Transport::Udp);
    let got = next_message(&mut core).await;
    assert_eq!(
        (got.transport, got.source, got.local),
        (Transport::Udp, gw_addr, core_addr)
    );
    assert_eq!(parse(&got), reparsed(&req));
    let ok = response_to(&parse(&got), 200, None, Some("c1"));
    send(&core, Transport::Udp, got.source, &ok);
    let back = next_message(&mut gw).await;
    assert_eq!(parse(&back).status(), Some(200));
    assert_eq!(
        gw.counters()
            .udp
            .sent
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        core.counters()
            .udp
            .received
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A UDP port that is free now, for binding UDP and TCP on the same port.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn large_udp_request_goes_over_tcp_with_its_via_rewritten() {
    let mut core = None;
    for _ in 0..10 {
        let a = format!("127.0.0.1:{}", free_port());
        let cfg = config(&[(Transport::Udp, &a), (Transport::Tcp, &a)]);
        if let Ok(t) = Transports::bind(cfg).await {
            core = Some(t);
            break;
        }
    }
    let mut core = core.expect("a port for UDP and TCP");
    let core_addr = core.local_addr(Transport::Udp).unwrap();
    let gw = bind(config(&[
        (Transport::Udp, "127.0.0.1:0"),
        (Transport::Tcp, "127.0.0.1:0"),
    ]))
    .await;
    let gw_addr = gw.local_addr(Transport::Udp).unwrap();
    let mut req = options(1, Transport::Udp, gw_addr, core_addr);
    req.body = vec![b'x'; 1400];
    req.push("Content-Type", "text/plain");
    // §18.1.1: larger than MTU − 200 → TCP.
    assert_eq!(send(&gw, Transport::Udp, core_addr, &req), Transport::Tcp);
    let got = next_message(&mut core).await;
    assert_eq!(got.transport, Transport::Tcp);
    let m = parse(&got);
    assert_eq!(m.vias().unwrap()[0].transport, "TCP");
    assert_eq!(m.body.len(), 1400);
    // A small one stays on UDP.
    let small = options(2, Transport::Udp, gw_addr, core_addr);
    assert_eq!(send(&gw, Transport::Udp, core_addr, &small), Transport::Udp);
    assert_eq!(next_message(&mut core).await.transport, Transport::Udp);
}

#[tokio::test]
async fn tcp_framing_across_segments_and_response_on_the_incoming_connection() {
    let mut core = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let core_addr = core.local_addr(Transport::Tcp).unwrap();
    let mut client = TcpStream::connect(core_addr).await.unwrap();
    let me = client.local_addr().unwrap();
    let m1 = options(1, Transport::Tcp, me, core_addr).to_bytes();
    let mut m2 = options(2, Transport::Tcp, me, core_addr);
    m2.body = b"v=0\r\n".to_vec();
    let m2 = m2.to_bytes();
    let m3 = options(3, Transport::Tcp, me, core_addr).to_bytes();
    // Two messages in one segment.
    client
        .write_all(&[m1.clone(), m2.clone()].concat())
        .await
        .unwrap();
    assert_eq!(next_message(&mut core).await.bytes, m1);
    assert_eq!(next_message(&mut core).await.bytes, m2);
    // One message split across three segments, with a keep-alive before it.
    client.write_all(b"\r\n\r\n").await.unwrap();
    for chunk in m3.chunks(m3.len() / 3 + 1) {
        client.write_all(chunk).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = next_message(&mut core).await;
    assert_eq!((got.bytes, got.source), (m3.clone(), me));
    // §18.2.2: the response goes back on the connection the request came in on.
    let req = Message::parse(&m3, Framing::Stream, Limits::default()).unwrap();
    let ok = response_to(&req, 200, None, Some("x")).to_bytes();
    send_bytes(&core, Transport::Tcp, me, &ok);
    let mut want = b"\r\n".to_vec(); // the pong to our ping
    want.extend_from_slice(&ok);
    let mut buf = vec![0u8; want.len()];
    timeout(WAIT, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, want);
    assert_eq!(core.connection_count(), 1);
    let c = core.counters();
    assert_eq!(
        c.tcp
            .keepalive_pings_answered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        c.tcp
            .connections_opened
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

fn send_bytes(t: &Transports, transport: Transport, destination: SocketAddr, bytes: &[u8]) {
    t.send(Outbound {
        transport,
        destination,
        bytes: bytes.to_vec(),
    })
    .expect("send");
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn tcp_connection_reused_both_ways() {
    let mut gw = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let mut core = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Tcp).unwrap();
    let core_addr = core.local_addr(Transport::Tcp).unwrap();
    let mut sources = Vec::new();
    for n in 1..=3 {
        send(
            &gw,
            Transport::Tcp,
            core_addr,
            &options(n, Transport::Tcp, gw_addr, core_addr),
        );
        let got = next_message(&mut core).await;
        assert_eq!(parse(&got).cseq().unwrap().seq, n);
        sources.push(got.source);
        let ok = response_to(&parse(&got), 200, None, Some("x"));
        send(&core, Transport::Tcp, got.source, &ok);
        let back = next_message(&mut gw).await;
        assert_eq!((back.source, parse(&back).status()), (core_addr, Some(200)));
    }
    assert!(sources.iter().all(|s| *s == sources[0]), "{sources:?}");
    assert_eq!(load(&gw.counters().tcp.connections_opened), 1);
    assert_eq!(load(&core.counters().tcp.connections_opened), 1);
    assert_eq!((gw.connection_count(), core.connection_count()), (1, 1));
}

#[tokio::test]
async fn tcp_connect_failure_and_broken_framing_are_reported() {
    // A port with nothing behind it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut gw = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Tcp).unwrap();
    send(
        &gw,
        Transport::Tcp,
        closed,
        &options(1, Transport::Tcp, gw_addr, closed),
    );
    let e = next_error(&mut gw).await;
    assert_eq!(
        (e.transport, e.destination, e.kind),
        (Transport::Tcp, closed, ErrorKind::Connect)
    );
    assert_eq!(gw.counters().tcp.dropped(DropReason::SendFailed), 1);

    // §18.3: a stream message without Content-Length cannot be framed: closed.
    let mut client = TcpStream::connect(gw_addr).await.unwrap();
    client
        .write_all(b"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, client.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed");
    assert_eq!(gw.counters().tcp.dropped(DropReason::Framing), 1);
    let e = next_error(&mut gw).await;
    assert_eq!(e.kind, ErrorKind::Framing);
}

#[tokio::test]
async fn crlf_keepalive_answered_and_a_silent_peer_fails_the_flow() {
    let keepalive = |timeout_ms| {
        let mut cfg = config(&[(Transport::Tcp, "127.0.0.1:0")]);
        cfg.keepalive_interval = Some(Duration::from_millis(50));
        cfg.keepalive_timeout = Duration::from_millis(timeout_ms);
        cfg
    };
    // A generous pong timeout where pongs are expected (a loaded machine
    // must not fail the flow), a short one for the silent peer.
    let gw = bind(keepalive(10_000)).await;
    let mut core = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Tcp).unwrap();
    let core_addr = core.local_addr(Transport::Tcp).unwrap();
    send(
        &gw,
        Transport::Tcp,
        core_addr,
        &options(1, Transport::Tcp, gw_addr, core_addr),
    );
    next_message(&mut core).await;
    // RFC 5626 §4.4.1: our pings are answered by the core's pongs.
    let (g, c) = (gw.counters(), core.counters());
    wait_until("three pongs", || load(&g.tcp.keepalive_pongs_received) >= 3).await;
    assert!(load(&c.tcp.keepalive_pings_answered) >= 3);
    assert_eq!(load(&g.tcp.keepalive_failures), 0);

    let mut gw = bind(keepalive(200)).await;
    let g = gw.counters();
    // A peer that reads but never answers: the flow fails, reported for it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut s, _) = silent.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    send(
        &gw,
        Transport::Tcp,
        silent_addr,
        &options(2, Transport::Tcp, gw_addr, silent_addr),
    );
    let e = next_error(&mut gw).await;
    assert_eq!(
        (e.destination, e.kind),
        (silent_addr, ErrorKind::KeepaliveTimeout)
    );
    assert_eq!(load(&g.tcp.keepalive_failures), 1);
    timeout(WAIT, sink).await.unwrap().unwrap();
}

#[tokio::test]
async fn sources_not_in_the_allow_list_are_ignored_and_counted() {
    let mut cfg = config(&[
        (Transport::Udp, "127.0.0.1:0"),
        (Transport::Tcp, "127.0.0.1:0"),
    ]);
    cfg.allowed_sources = vec!["127.0.0.2".parse().unwrap()];
    let mut core = bind(cfg).await;
    let core_udp = core.local_addr(Transport::Udp).unwrap();
    let core_tcp = core.local_addr(Transport::Tcp).unwrap();
    let stranger = bind(config(&[(Transport::Udp, "127.0.0.1:0")])).await;
    let peer = bind(config(&[(Transport::Udp, "127.0.0.2:0")])).await;
    let s_addr = stranger.local_addr(Transport::Udp).unwrap();
    let p_addr = peer.local_addr(Transport::Udp).unwrap();
    send(
        &stranger,
        Transport::Udp,
        core_udp,
        &options(1, Transport::Udp, s_addr, core_udp),
    );
    let c = core.counters();
    wait_until("the stranger's datagram", || {
        c.udp.dropped(DropReason::NotAllowed) == 1
    })
    .await;
    send(
        &peer,
        Transport::Udp,
        core_udp,
        &options(2, Transport::Udp, p_addr, core_udp),
    );
    let got = next_message(&mut core).await;
    assert_eq!(got.source, p_addr, "only the peer's message is handed up");
    assert_eq!(load(&c.udp.received), 1);
    // A stranger's connection is closed without a word.
    let mut client = TcpStream::connect(core_tcp).await.unwrap();
    let _ = client
        .write_all(&options(3, Transport::Tcp, s_addr, core_tcp).to_bytes())
        .await;
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, client.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(c.tcp.dropped(DropReason::NotAllowed), 1);
    assert_eq!(load(&c.tcp.received), 0);
}

#[tokio::test]
async fn rate_limit_per_source() {
    let mut cfg = config(&[(Transport::Udp, "127.0.0.1:0")]);
    // No refill: exactly the burst gets through, whatever the timing.
    cfg.rate_limit = RateLimit {
        per_second: 0,
        burst: 3,
    };
    let mut core = bind(cfg).await;
    let core_addr = core.local_addr(Transport::Udp).unwrap();
    let gw = bind(config(&[(Transport::Udp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Udp).unwrap();
    for n in 1..=10 {
        send(
            &gw,
            Transport::Udp,
            core_addr,
            &options(n, Transport::Udp, gw_addr, core_addr),
        );
    }
    let c = core.counters();
    wait_until("ten datagrams", || {
        load(&c.udp.received) + c.udp.dropped(DropReason::RateLimited) == 10
    })
    .await;
    assert_eq!(c.udp.dropped(DropReason::RateLimited), 7);
    for n in 1..=3 {
        assert_eq!(parse(&next_message(&mut core).await).cseq().unwrap().seq, n);
    }
}

/// A test PKI: a CA and leaf certificates it signs.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
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

    /// A certificate for `names` (DNS names or IP addresses), usable as
    /// server and as client: (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    fn material(&self, identity: Option<(Vec<u8>, Vec<u8>)>) -> TlsMaterial {
        let (cert_pem, key_pem) = match identity {
            Some((c, k)) => (Some(c), Some(k)),
            None => (None, None),
        };
        TlsMaterial {
            ca_pem: self.ca_pem.clone().into_bytes(),
            cert_pem,
            key_pem,
        }
    }
}

/// The core: a TLS listener with a certificate for `core.test`.
async fn tls_core(pki: &Pki, require_client_cert: bool) -> (Transports, SocketAddr) {
    let mut cfg = config(&[(Transport::Tls, "127.0.0.1:0")]);
    cfg.tls = Some(pki.material(Some(pki.leaf(&["core.test"]))));
    cfg.tls_require_client_cert = require_client_cert;
    let core = bind(cfg).await;
    let addr = core.local_addr(Transport::Tls).unwrap();
    (core, addr)
}

/// The gateway: TLS client only, trusting `ca`, expecting `name` at `core`.
async fn tls_gw(
    ca: &Pki,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    core: SocketAddr,
    name: &str,
) -> Transports {
    let mut cfg = config(&[]);
    cfg.tls = Some(ca.material(identity));
    cfg.tls_names = vec![(core, name.to_owned())];
    bind(cfg).await
}

#[tokio::test]
async fn tls_round_trip_verifies_the_core_by_name() {
    let pki = Pki::new("tdmgw test CA");
    let (mut core, core_addr) = tls_core(&pki, false).await;
    let mut gw = tls_gw(&pki, None, core_addr, "core.test").await;
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let req = options(1, Transport::Tls, local, core_addr);
    assert_eq!(send(&gw, Transport::Tls, core_addr, &req), Transport::Tls);
    let got = next_message(&mut core).await;
    assert_eq!(
        (got.transport, parse(&got)),
        (Transport::Tls, reparsed(&req))
    );
    let ok = response_to(&parse(&got), 200, None, Some("x"));
    send(&core, Transport::Tls, got.source, &ok);
    let back = next_message(&mut gw).await;
    assert_eq!(
        (back.transport, back.source, parse(&back).status()),
        (Transport::Tls, core_addr, Some(200))
    );
}

#[tokio::test]
async fn tls_fails_for_a_wrong_name_or_a_wrong_ca() {
    let pki = Pki::new("tdmgw test CA");
    let (mut core, core_addr) = tls_core(&pki, false).await;
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let req = options(1, Transport::Tls, local, core_addr);

    let mut wrong_name = tls_gw(&pki, None, core_addr, "other.test").await;
    send(&wrong_name, Transport::Tls, core_addr, &req);
    let e = next_error(&mut wrong_name).await;
    assert_eq!(
        (e.destination, e.kind),
        (core_addr, ErrorKind::TlsHandshake)
    );
    assert_eq!(load(&wrong_name.counters().tls.tls_handshake_failures), 1);

    let other_ca = Pki::new("someone else's CA");
    let mut wrong_ca = tls_gw(&other_ca, None, core_addr, "core.test").await;
    send(&wrong_ca, Transport::Tls, core_addr, &req);
    let e = next_error(&mut wrong_ca).await;
    assert_eq!(
        (e.destination, e.kind),
        (core_addr, ErrorKind::TlsHandshake)
    );

    let c = core.counters();
    wait_until("two failed handshakes at the core", || {
        load(&c.tls.tls_handshake_failures) == 2
    })
    .await;
    // Nothing reached the core; a good client still does.
    let good = tls_gw(&pki, None, core_addr, "core.test").await;
    send(&good, Transport::Tls, core_addr, &req);
    assert_eq!(parse(&next_message(&mut core).await), reparsed(&req));
    assert_eq!(load(&c.tls.received), 1);
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let pki = Pki::new("tdmgw test CA");
    let (mut core, core_addr) = tls_core(&pki, true).await;
    let local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let req = options(1, Transport::Tls, local, core_addr);

    // Without a client certificate the core refuses the handshake.
    let mut anon = tls_gw(&pki, None, core_addr, "core.test").await;
    send(&anon, Transport::Tls, core_addr, &req);
    let e = next_error(&mut anon).await;
    assert_eq!(e.destination, core_addr);
    let c = core.counters();
    wait_until("the refused handshake", || {
        load(&c.tls.tls_handshake_failures) == 1
    })
    .await;

    // With one from another CA, too.
    let rogue = Pki::new("rogue CA");
    let mut cfg = config(&[]);
    cfg.tls = Some(TlsMaterial {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        ..rogue.material(Some(rogue.leaf(&["gw.test"])))
    });
    cfg.tls_names = vec![(core_addr, "core.test".into())];
    let mut rogue_gw = bind(cfg).await;
    send(&rogue_gw, Transport::Tls, core_addr, &req);
    next_error(&mut rogue_gw).await;
    wait_until("the second refused handshake", || {
        load(&c.tls.tls_handshake_failures) == 2
    })
    .await;

    // With the CA's client certificate it works both ways.
    let mut gw = tls_gw(&pki, Some(pki.leaf(&["gw.test"])), core_addr, "core.test").await;
    send(&gw, Transport::Tls, core_addr, &req);
    let got = next_message(&mut core).await;
    assert_eq!(parse(&got), reparsed(&req));
    send(
        &core,
        Transport::Tls,
        got.source,
        &response_to(&req, 200, None, Some("x")),
    );
    assert_eq!(parse(&next_message(&mut gw).await).status(), Some(200));
    assert_eq!(load(&c.tls.received), 1);
}

#[tokio::test]
async fn idle_connections_are_reaped() {
    let mut cfg = config(&[(Transport::Tcp, "127.0.0.1:0")]);
    cfg.idle_timeout = Duration::from_millis(100);
    let gw = bind(cfg).await;
    let mut core = bind(config(&[(Transport::Tcp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Tcp).unwrap();
    let core_addr = core.local_addr(Transport::Tcp).unwrap();
    send(
        &gw,
        Transport::Tcp,
        core_addr,
        &options(1, Transport::Tcp, gw_addr, core_addr),
    );
    next_message(&mut core).await;
    let g = gw.counters();
    wait_until("the idle connection closed", || {
        load(&g.tcp.connections_reaped) == 1
    })
    .await;
    assert_eq!(gw.connection_count(), 0);
    // The core sees the close as a clean end, not an error.
    wait_until("the core's side closed", || core.connection_count() == 0).await;
    // The next message opens a new connection.
    send(
        &gw,
        Transport::Tcp,
        core_addr,
        &options(2, Transport::Tcp, gw_addr, core_addr),
    );
    assert_eq!(parse(&next_message(&mut core).await).cseq().unwrap().seq, 2);
    assert_eq!(load(&g.tcp.connections_opened), 2);
}

#[tokio::test]
async fn oversize_and_malformed_datagrams_get_their_answers() {
    let mut cfg = config(&[(Transport::Udp, "127.0.0.1:0")]);
    cfg.max_message_len = 1000;
    let limits = Limits {
        max_message_len: 1000,
    };
    let mut core = bind(cfg).await;
    let core_addr = core.local_addr(Transport::Udp).unwrap();
    let mut gw = bind(config(&[(Transport::Udp, "127.0.0.1:0")])).await;
    let gw_addr = gw.local_addr(Transport::Udp).unwrap();

    // Larger than the limit: handed up cut, answered 513 (§21.5.14).
    let mut big = options(1, Transport::Udp, gw_addr, core_addr);
    big.body = vec![b'x'; 1200];
    send(&gw, Transport::Udp, core_addr, &big);
    let got = next_message(&mut core).await;
    assert_eq!(got.bytes.len(), 1001);
    assert_eq!(load(&core.counters().udp.oversize), 1);
    let rej = got.parse(limits).unwrap_err();
    let answer = answer_rejection(&got, &rej).expect("answerable");
    assert_eq!(
        (answer.transport, answer.destination),
        (Transport::Udp, gw_addr)
    );
    core.send(answer).unwrap();
    assert_eq!(parse(&next_message(&mut gw).await).status(), Some(513));

    // A broken header: 400 naming the fault.
    let bad = b"OPTIONS sip:core SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKb\r\n\
From: <sip:gw>;tag=1\r\nTo: <sip:core>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: many\r\n\r\n";
    send_bytes(&gw, Transport::Udp, core_addr, bad);
    let got = next_message(&mut core).await;
    let rej = got.parse(limits).unwrap_err();
    core.send(answer_rejection(&got, &rej).unwrap()).unwrap();
    assert_eq!(parse(&next_message(&mut gw).await).status(), Some(400));

    // A broken response: nothing to answer (§18.1.2), the caller counts it.
    send_bytes(
        &gw,
        Transport::Udp,
        core_addr,
        b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
    );
    let got = next_message(&mut core).await;
    let rej = got.parse(limits).unwrap_err();
    assert_eq!(answer_rejection(&got, &rej), None);
}

#[tokio::test]
async fn tls_1_2_client_is_served() {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let pki = Pki::new("tdmgw test CA");
    let (mut core, core_addr) = tls_core(&pki, false).await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = TcpStream::connect(core_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("core.test").unwrap();
    let mut tls = timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let me = tls.get_ref().0.local_addr().unwrap();
    let req = options(1, Transport::Tls, me, core_addr);
    tls.write_all(&req.to_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let got = next_message(&mut core).await;
    assert_eq!((got.source, parse(&got)), (me, reparsed(&req)));
}
