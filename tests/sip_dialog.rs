//! UAC ⇄ UAS over an in-memory network in simulated time, with seeded loss,
//! delay (so reordering) and duplication: calls both ways, BYE both ways,
//! CANCEL (ringing, before any provisional, racing the 200), forked 2xx,
//! re-INVITE, 481, OPTIONS, INFO, Timer B, no ACK. After every scenario every
//! user agent's tables are empty.

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::Rng;
use tdmgw::sip::endpoint::{Remote, Transport};
use tdmgw::sip::sdp::{self, Direction, LocalMedia, Origin, Sdp};
use tdmgw::sip::transaction::TimerValues;
use tdmgw::sip::ua::{CallHandle, EndedBy, OutgoingCall, UaConfig, UaEvent, UserAgent};
use tdmgw::sip::{Framing, Header, Limits, Message, Method, NameAddr, Uri};

struct Node {
    ua: UserAgent,
    addr: SocketAddr,
    events: VecDeque<UaEvent>,
}

struct Packet {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
}

/// What crossed the network: (from, to, first line, bytes).
type Log = Vec<(SocketAddr, SocketAddr, String, Vec<u8>)>;

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    packets: Vec<Packet>,
    seq: u64,
    rng: Rng,
    loss_per_mille: u64,
    dup_per_mille: u64,
    max_delay_ms: u64,
    /// Addresses that fork initial INVITEs to all nodes behind them and
    /// route other requests by Request-URI host:port (a stateless proxy).
    proxy: Option<SocketAddr>,
    /// Packets for which this returns true are lost.
    drop_if: Option<fn(&str) -> bool>,
    log: Log,
    transport: Transport,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 0, i]), 5060)
}

fn config(i: u8, seed: u64) -> UaConfig {
    UaConfig {
        timers: TimerValues::default(),
        limits: Limits::default(),
        sent_by: format!("10.0.0.{i}:5060"),
        sent_by_tls: None,
        contact: Uri::parse(&format!("sip:ua{i}@10.0.0.{i}:5060")).unwrap(),
        call_id_host: format!("10.0.0.{i}"),
        user_agent: "tdmgw-test".into(),
        seed,
        rel100: true,
        session_expires_s: Some(1800),
        min_se_s: 90,
    }
}

fn first_line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| *b == b'\r')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Net {
    fn new(nodes: u8, seed: u64) -> Net {
        let now = Instant::now();
        Net {
            now,
            nodes: (1..=nodes)
                .map(|i| Node {
                    ua: UserAgent::new(config(i, seed * 100 + u64::from(i))),
                    addr: addr(i),
                    events: VecDeque::new(),
                })
                .collect(),
            packets: Vec::new(),
            seq: 0,
            rng: Rng(seed.max(1)),
            loss_per_mille: 0,
            dup_per_mille: 0,
            max_delay_ms: 5,
            proxy: None,
            drop_if: None,
            log: Vec::new(),
            transport: Transport::Udp,
        }
    }

    fn lossy(mut self, loss: u64, dup: u64, max_delay_ms: u64) -> Net {
        self.loss_per_mille = loss;
        self.dup_per_mille = dup;
        self.max_delay_ms = max_delay_ms;
        self
    }

    fn ua(&mut self, n: usize) -> &mut UserAgent {
        &mut self.nodes[n].ua
    }

    fn remote(&self, n: usize) -> Remote {
        Remote {
            address: self.nodes[n].addr,
            transport: self.transport,
        }
    }

    /// Move every node's output into the network, and its events into its queue.
    fn collect(&mut self) {
        for n in 0..self.nodes.len() {
            while let Some(t) = self.nodes[n].ua.poll_transmit() {
                let from = self.nodes[n].addr;
                self.send(from, t.destination, t.transport, t.bytes);
            }
            while let Some(e) = self.nodes[n].ua.poll_event() {
                self.nodes[n].events.push_back(e);
            }
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        let line = first_line(&bytes);
        if self.drop_if.is_some_and(|f| f(&line)) {
            return;
        }
        let reliable = transport.is_reliable();
        if !reliable && self.rng.chance(self.loss_per_mille) {
            return;
        }
        let copies = if !reliable && self.rng.chance(self.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            // Streams keep order: a fixed delay. Datagrams: 1..max ms, so they cross.
            let delay = if reliable {
                1
            } else {
                self.rng.range(1, self.max_delay_ms + 1)
            };
            self.seq += 1;
            self.packets.push(Packet {
                at: self.now + Duration::from_millis(delay),
                seq: self.seq,
                from,
                to,
                transport,
                bytes: bytes.clone(),
            });
        }
    }

    fn deliver(&mut self, p: Packet) {
        if Some(p.to) == self.proxy {
            return self.forward(p);
        }
        self.log
            .push((p.from, p.to, first_line(&p.bytes), p.bytes.clone()));
        if let Some(n) = self.nodes.iter().position(|n| n.addr == p.to) {
            let remote = Remote {
                address: p.from,
                transport: p.transport,
            };
            let now = self.now;
            self.nodes[n].ua.handle_input(now, &p.bytes, remote);
        }
    }

    /// The stateless forking proxy: an initial INVITE goes to every node but
    /// the sender; other requests go by Request-URI; responses never come here
    /// (nodes answer to the source, which stays the original sender).
    fn forward(&mut self, p: Packet) {
        let Ok(m) = Message::parse(&p.bytes, Framing::Datagram, Limits::default()) else {
            return;
        };
        let initial_invite =
            m.method() == Some(&Method::Invite) && m.to().is_ok_and(|t| t.tag().is_none());
        let targets: Vec<SocketAddr> = if initial_invite || m.method() == Some(&Method::Cancel) {
            self.nodes
                .iter()
                .map(|n| n.addr)
                .filter(|a| *a != p.from)
                .collect()
        } else {
            let uri = m.start_uri().and_then(|u| u.as_sip()).unwrap();
            let host: IpAddr = uri.host.parse().unwrap();
            vec![SocketAddr::new(host, uri.port.unwrap_or(5060))]
        };
        for to in targets {
            self.deliver(Packet {
                to,
                ..Packet {
                    bytes: p.bytes.clone(),
                    ..p
                }
            });
        }
    }

    /// Advance to the next thing that happens. False when nothing is pending.
    fn step(&mut self) -> bool {
        self.collect();
        let next_packet = self.packets.iter().map(|p| (p.at, p.seq)).min();
        let next_timer = self.nodes.iter().filter_map(|n| n.ua.poll_timeout()).min();
        let at = match (next_packet.map(|p| p.0), next_timer) {
            (None, None) => return false,
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap(),
        };
        self.now = self.now.max(at);
        if let Some((pat, seq)) = next_packet.filter(|p| p.0 <= self.now) {
            let _ = pat;
            let i = self.packets.iter().position(|p| p.seq == seq).unwrap();
            let p = self.packets.swap_remove(i);
            self.deliver(p);
        } else {
            let now = self.now;
            for n in &mut self.nodes {
                if n.ua.poll_timeout().is_some_and(|t| t <= now) {
                    n.ua.handle_timeout(now);
                }
            }
        }
        self.collect();
        true
    }

    /// Run until node `n` reports an event matching `pred`; return it.
    fn wait(&mut self, n: usize, what: &str, pred: impl Fn(&UaEvent) -> bool) -> UaEvent {
        for _ in 0..100_000 {
            self.collect();
            if let Some(i) = self.nodes[n].events.iter().position(&pred) {
                return self.nodes[n].events.remove(i).unwrap();
            }
            assert!(
                self.step(),
                "quiet before node {n} saw {what}: {:?}",
                self.nodes[n].events
            );
        }
        panic!("livelock waiting for {what}");
    }

    /// Run everything due in the next `d`.
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..100_000 {
            self.collect();
            let next_packet = self.packets.iter().map(|p| p.at).min();
            let next_timer = self.nodes.iter().filter_map(|n| n.ua.poll_timeout()).min();
            match next_packet.into_iter().chain(next_timer).min() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("livelock in run_for");
    }

    /// Run until nothing is pending (bounded), then check no table leaked.
    fn settle(&mut self) {
        for _ in 0..200_000 {
            if !self.step() {
                for (i, n) in self.nodes.iter().enumerate() {
                    assert!(
                        n.ua.is_idle(),
                        "node {i} leaked: calls {} dialogs {} transactions {}",
                        n.ua.call_count(),
                        n.ua.dialog_count(),
                        n.ua.transaction_count()
                    );
                }
                return;
            }
        }
        panic!("livelock: never settled");
    }

    fn events(&mut self, n: usize) -> Vec<UaEvent> {
        self.nodes[n].events.drain(..).collect()
    }

    fn count(&self, from: usize, to: usize, line_start: &str) -> usize {
        let (f, t) = (self.nodes[from].addr, self.nodes[to].addr);
        self.log
            .iter()
            .filter(|(a, b, l, _)| *a == f && *b == t && l.starts_with(line_start))
            .count()
    }
}

fn media(i: u8, port: u16, codecs: &[&str]) -> LocalMedia {
    LocalMedia {
        origin: Origin {
            username: "-".into(),
            session_id: u64::from(i) * 1000,
            version: 1,
            address: IpAddr::from([10, 0, 0, i]),
        },
        address: IpAddr::from([10, 0, 0, i]),
        port,
        codecs: codecs.iter().map(|c| c.to_string()).collect(),
        telephone_event: true,
        ptime_ms: 20,
        direction: Direction::SendRecv,
    }
}

fn outgoing(net: &Net, to: SocketAddr, offer: Option<Sdp>) -> OutgoingCall {
    let offer = offer.unwrap_or_else(|| sdp::offer(&media(1, 40_000, &["PCMA", "PCMU"])));
    OutgoingCall {
        request_uri: Uri::parse(&format!("sip:999@{to}")).unwrap(),
        from: NameAddr::parse("\"Gateway\" <sip:02079460000@gw.example>").unwrap(),
        to: NameAddr::parse("<sip:999@core.example>").unwrap(),
        headers: vec![
            Header::new("P-Asserted-Identity", "<tel:+442079460000>"),
            Header::new("Privacy", "none"),
        ],
        sdp: offer,
        peer: Remote {
            address: to,
            transport: net.transport,
        },
    }
}

const CAUSE16: &str = "Q.850;cause=16;text=\"Normal call clearing\"";

/// `caller` calls `callee`; the callee rings and answers. Returns both handles.
fn establish(net: &mut Net, caller: usize, callee: usize) -> (CallHandle, CallHandle) {
    let now = net.now;
    let offer = sdp::offer(&media(caller as u8 + 1, 40_000, &["PCMA", "PCMU"]));
    let to = net.nodes[callee].addr;
    let params = outgoing(net, to, Some(offer.clone()));
    let a = net.ua(caller).place_call(now, params);
    let UaEvent::IncomingCall {
        call: b,
        request,
        sdp,
        peer,
    } = net.wait(callee, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    })
    else {
        unreachable!()
    };
    assert_eq!(sdp.as_ref(), Some(&offer));
    assert_eq!(peer.address, net.nodes[caller].addr);
    assert_eq!(request.single("Privacy"), Ok(Some("none")));
    assert!(
        request
            .headers_named("P-Asserted-Identity")
            .next()
            .is_some()
    );
    let now = net.now;
    net.ua(callee).send_provisional(now, b, 180, None).unwrap();
    // A 180 is not retransmitted (§17.2.1): on a lossy network it may never come.
    net.run_for(Duration::from_millis(300));
    let ringing: Vec<UaEvent> = net.nodes[caller].events.drain(..).collect();
    if net.loss_per_mille == 0 {
        assert_eq!(
            ringing,
            [UaEvent::Provisional {
                call: a,
                status: 180,
                sdp: None
            }]
        );
    }
    assert!(ringing.len() <= 1, "{ringing:?}");
    let answer = sdp::answer(&offer, &media(callee as u8 + 1, 50_000, &["PCMA"]));
    let now = net.now;
    net.ua(callee).accept(now, b, Some(&answer)).unwrap();
    let ev = net.wait(caller, "Answered", |e| {
        matches!(e, UaEvent::Answered { .. })
    });
    assert_eq!(
        ev,
        UaEvent::Answered {
            call: a,
            sdp: Some(answer)
        }
    );
    (a, b)
}

/// Exactly one terminal event per side, and nothing else left over.
fn expect_ended(net: &mut Net, n: usize, call: CallHandle, by: EndedBy) -> Option<String> {
    let ev = net.wait(n, "Ended", |e| {
        matches!(e, UaEvent::Ended { .. } | UaEvent::Failed { .. })
    });
    let UaEvent::Ended {
        call: c,
        by: b,
        reason,
    } = ev
    else {
        panic!("node {n}: {ev:?}")
    };
    assert_eq!((c, b), (call, by), "node {n}");
    reason
}

#[test]
fn basic_calls_both_directions_bye_both_ways_under_loss() {
    let mut absorbed = 0;
    for seed in 1..=12 {
        let mut net = Net::new(2, seed).lossy(150, 50, 60);
        // 1 -> 2, the caller hangs up.
        let (a, b) = establish(&mut net, 0, 1);
        let now = net.now;
        net.ua(0).hangup(now, a, Some(CAUSE16)).unwrap();
        let r = expect_ended(&mut net, 1, b, EndedBy::Remote);
        assert_eq!(r.as_deref(), Some(CAUSE16), "seed {seed}");
        expect_ended(&mut net, 0, a, EndedBy::Local);
        // 2 -> 1, the callee hangs up.
        let (b2, a2) = establish(&mut net, 1, 0);
        let now = net.now;
        net.ua(0).hangup(now, a2, None).unwrap();
        expect_ended(&mut net, 1, b2, EndedBy::Remote);
        expect_ended(&mut net, 0, a2, EndedBy::Local);
        net.settle();
        // Retransmissions were absorbed: no duplicate events.
        assert_eq!(net.events(0), [], "seed {seed}");
        assert_eq!(net.events(1), [], "seed {seed}");
        absorbed += (0..2)
            .map(|n| net.ua(n).endpoint_stats().request_retransmissions)
            .sum::<u64>();
    }
    // The loss and duplication did make the transaction layer work.
    assert!(absorbed > 0, "{absorbed}");
}

#[test]
fn calls_over_a_reliable_transport() {
    let mut net = Net::new(2, 3);
    net.transport = Transport::Tcp;
    let (a, b) = establish(&mut net, 0, 1);
    let now = net.now;
    net.ua(1).hangup(now, b, None).unwrap();
    expect_ended(&mut net, 0, a, EndedBy::Remote);
    expect_ended(&mut net, 1, b, EndedBy::Local);
    net.settle();
    // No retransmission on a stream.
    assert_eq!(net.count(0, 1, "INVITE"), 1);
    assert_eq!(net.count(1, 0, "SIP/2.0 200"), 1);
    assert_eq!(net.count(0, 1, "SIP/2.0 200"), 1);
}

#[test]
fn cancel_of_a_ringing_call() {
    let mut net = Net::new(2, 5);
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    }) else {
        unreachable!()
    };
    let now = net.now;
    net.ua(1).send_provisional(now, b, 180, None).unwrap();
    net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
    let now = net.now;
    net.ua(0).hangup(now, a, Some(CAUSE16)).unwrap();
    let r = expect_ended(&mut net, 1, b, EndedBy::Remote);
    assert_eq!(r.as_deref(), Some(CAUSE16));
    let r = expect_ended(&mut net, 0, a, EndedBy::Local);
    assert_eq!(r.as_deref(), Some(CAUSE16));
    net.settle();
    assert_eq!(net.count(0, 1, "CANCEL"), 1);
    assert_eq!(net.count(1, 0, "SIP/2.0 487"), 1);
    assert_eq!(net.count(0, 1, "ACK"), 1);
    assert_eq!(net.count(0, 1, "BYE"), 0);
    // The UAS's API refuses to answer a cancelled call.
    let now = net.now;
    assert!(net.ua(1).accept(now, b, None).is_err());
}

#[test]
fn cancelled_invite_without_final_response_is_given_up_after_64_t1() {
    let mut net = Net::new(2, 7);
    // The 487 never arrives.
    net.drop_if = Some(|line| line.starts_with("SIP/2.0 487"));
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    }) else {
        unreachable!()
    };
    let now = net.now;
    net.ua(1).send_provisional(now, b, 180, None).unwrap();
    net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
    let cancelled_at = net.now;
    net.ua(0).hangup(cancelled_at, a, None).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    assert_eq!(net.now - cancelled_at, Duration::from_secs(32));
    net.settle();
}

#[test]
fn hangup_before_any_provisional_waits_for_one_then_cancels() {
    let mut net = Net::new(2, 6);
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    // §9.1: no CANCEL before a provisional: it goes when the 100 Trying comes.
    net.ua(0).hangup(now, a, None).unwrap();
    assert_eq!(net.count(0, 1, "CANCEL"), 0);
    let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    }) else {
        unreachable!()
    };
    expect_ended(&mut net, 1, b, EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    net.settle();
    assert_eq!(net.count(0, 1, "CANCEL"), 1);
    assert_eq!(net.events(0), []);
}

#[test]
fn cancel_racing_200_ends_with_ack_and_bye() {
    for seed in 1..=6 {
        let mut net = Net::new(2, seed).lossy(0, 0, 20);
        let now = net.now;
        let to = net.nodes[1].addr;
        let params = outgoing(&net, to, None);
        let a = net.ua(0).place_call(now, params);
        let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
            matches!(e, UaEvent::IncomingCall { .. })
        }) else {
            unreachable!()
        };
        let now = net.now;
        net.ua(1).send_provisional(now, b, 180, None).unwrap();
        net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
        // The callee answers and the caller hangs up at the same instant:
        // the 200 and the CANCEL cross on the wire.
        let now = net.now;
        let offer = sdp::offer(&media(2, 50_000, &["PCMA"]));
        net.ua(1).accept(now, b, Some(&offer)).unwrap();
        net.ua(0).hangup(now, a, Some(CAUSE16)).unwrap();
        expect_ended(&mut net, 0, a, EndedBy::Local);
        let r = expect_ended(&mut net, 1, b, EndedBy::Remote);
        assert_eq!(r.as_deref(), Some(CAUSE16));
        net.settle();
        assert_eq!(net.count(0, 1, "CANCEL"), 1, "seed {seed}");
        assert!(net.count(0, 1, "ACK") >= 1, "seed {seed}");
        assert_eq!(net.count(0, 1, "BYE"), 1, "seed {seed}");
        assert_eq!(net.count(1, 0, "SIP/2.0 487"), 0, "seed {seed}");
        // Never reported as answered.
        assert_eq!(net.events(0), [], "seed {seed}");
        assert_eq!(net.events(1), [], "seed {seed}");
    }
}

#[test]
fn forked_2xx_first_confirms_the_others_get_ack_and_bye() {
    let mut net = Net::new(3, 9);
    let proxy = SocketAddr::new(IpAddr::from([10, 0, 0, 100]), 5060);
    net.proxy = Some(proxy);
    let now = net.now;
    let offer = sdp::offer(&media(1, 40_000, &["PCMA"]));
    let params = outgoing(&net, proxy, Some(offer.clone()));
    let a = net.ua(0).place_call(now, params);
    let mut callees = Vec::new();
    for n in [1, 2] {
        let UaEvent::IncomingCall { call, .. } = net.wait(n, "IncomingCall", |e| {
            matches!(e, UaEvent::IncomingCall { .. })
        }) else {
            unreachable!()
        };
        callees.push(call);
    }
    // Both forks ring (two early dialogs), then both answer.
    for (i, n) in [1usize, 2].into_iter().enumerate() {
        let now = net.now;
        net.ua(n)
            .send_provisional(now, callees[i], 180, None)
            .unwrap();
    }
    net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
    net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
    assert_eq!(net.ua(0).dialog_count(), 2, "two early dialogs");
    let now = net.now;
    for (i, n) in [1usize, 2].into_iter().enumerate() {
        let answer = sdp::answer(&offer, &media(n as u8 + 1, 50_000, &["PCMA"]));
        net.ua(n).accept(now, callees[i], Some(&answer)).unwrap();
    }
    net.wait(0, "Answered", |e| matches!(e, UaEvent::Answered { .. }));
    // Exactly one of the two callees is released with BYE.
    let mut released = None;
    for _ in 0..10_000 {
        if let Some(n) = [1usize, 2].into_iter().find(|n| {
            net.nodes[*n]
                .events
                .iter()
                .any(|e| matches!(e, UaEvent::Ended { .. }))
        }) {
            released = Some(n);
            break;
        }
        assert!(net.step());
    }
    let released = released.expect("a fork released");
    let kept = 3 - released;
    expect_ended(&mut net, released, callees[released - 1], EndedBy::Remote);
    assert_eq!(net.ua(0).stats().forks_released, 1);
    let now = net.now;
    net.ua(0).hangup(now, a, None).unwrap();
    expect_ended(&mut net, kept, callees[kept - 1], EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    net.settle();
    assert_eq!(net.count(0, released, "ACK"), 1);
    assert_eq!(net.count(0, released, "BYE"), 1);
    assert_eq!(net.count(0, kept, "BYE"), 1);
    for n in 0..3 {
        assert_eq!(net.events(n), [], "node {n}");
    }
}

#[test]
fn reinvite_changes_remote_address_and_unsupported_offer_gets_488() {
    let mut net = Net::new(2, 11).lossy(100, 0, 30);
    let (a, b) = establish(&mut net, 0, 1);
    // Let the ACK arrive (§14.1: no re-INVITE before it).
    net.run_for(Duration::from_secs(2));
    // The callee moves its media to a new address and puts us on hold.
    let mut moved = media(2, 52_000, &["PCMA"]);
    moved.address = IpAddr::from([10, 0, 0, 22]);
    moved.origin.version = 2;
    moved.direction = Direction::SendOnly;
    let offer = sdp::offer(&moved);
    let now = net.now;
    net.ua(1).reinvite(now, b, &offer).unwrap();
    let UaEvent::MediaUpdate { call, sdp } = net.wait(0, "MediaUpdate", |e| {
        matches!(e, UaEvent::MediaUpdate { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(call, a);
    assert_eq!(
        sdp.audio_address(),
        Some((IpAddr::from([10, 0, 0, 22]), 52_000))
    );
    let UaEvent::MediaUpdate { sdp: answer, .. } = net.wait(1, "MediaUpdate", |e| {
        matches!(e, UaEvent::MediaUpdate { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(answer.media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(
        answer.audio_address(),
        Some((IpAddr::from([10, 0, 0, 1]), 40_000))
    );
    assert_eq!(answer.origin.version, 2, "o= version one up (RFC 3264 §8)");
    // An offer with no codec we have: 488, the call goes on.
    let mut g729 = media(2, 52_000, &["PCMA"]);
    g729.telephone_event = false;
    let mut bad = sdp::offer(&g729);
    bad.media[0].formats[0].encoding = "G729".into();
    bad.media[0].formats[0].payload_type = 18;
    let now = net.now;
    net.ua(1).reinvite(now, b, &bad).unwrap();
    let ev = net.wait(1, "ReinviteFailed", |e| {
        matches!(e, UaEvent::ReinviteFailed { .. })
    });
    assert_eq!(
        ev,
        UaEvent::ReinviteFailed {
            call: b,
            status: 488
        }
    );
    let now = net.now;
    net.ua(0).send_dtmf_info(now, a, '5', 160).unwrap();
    let ev = net.wait(1, "InfoDtmf", |e| matches!(e, UaEvent::InfoDtmf { .. }));
    assert_eq!(
        ev,
        UaEvent::InfoDtmf {
            call: b,
            digit: '5',
            duration_ms: Some(160)
        }
    );
    let now = net.now;
    net.ua(1).hangup(now, b, None).unwrap();
    expect_ended(&mut net, 0, a, EndedBy::Remote);
    expect_ended(&mut net, 1, b, EndedBy::Local);
    net.settle();
    assert_eq!(net.ua(0).stats().offers_rejected, 1);
    assert_eq!(net.events(0), []);
}

#[test]
fn bye_after_the_dialog_ended_gets_481() {
    let mut net = Net::new(2, 12);
    let (a, b) = establish(&mut net, 0, 1);
    let mut stale = net.ua(1).dialog(b).cloned().unwrap();
    let now = net.now;
    net.ua(0).hangup(now, a, None).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    net.settle();
    // A BYE in the dead dialog, as a confused peer would send it.
    let mut bye = stale.request(Method::Bye);
    bye.headers.insert(
        0,
        Header::new("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKstale1"),
    );
    let (from, to) = (net.nodes[1].addr, net.nodes[0].addr);
    net.send(from, to, Transport::Udp, bye.to_bytes());
    net.settle();
    assert_eq!(net.count(0, 1, "SIP/2.0 481"), 1);
    assert_eq!(net.ua(0).stats().no_dialog, 1);
    // A BYE with no To tag at all: 481 too.
    let mut bye = stale.request(Method::Bye);
    bye.headers.retain(|h| !h.is("To"));
    bye.push("To", "<sip:999@core.example>");
    bye.headers.insert(
        0,
        Header::new("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKstale2"),
    );
    net.send(from, to, Transport::Udp, bye.to_bytes());
    net.settle();
    assert_eq!(net.count(0, 1, "SIP/2.0 481"), 2);
}

#[test]
fn options_answered_200_then_503_while_draining() {
    let mut net = Net::new(2, 13).lossy(200, 100, 50);
    let now = net.now;
    let core = net.remote(1);
    let uri = Uri::parse("sip:10.0.0.2:5060").unwrap();
    let h = net.ua(0).send_options(now, uri.clone(), core);
    let ev = net.wait(0, "OptionsResult", |e| {
        matches!(e, UaEvent::OptionsResult { .. })
    });
    assert_eq!(
        ev,
        UaEvent::OptionsResult {
            handle: h,
            status: 200
        }
    );
    net.ua(1).set_draining(true);
    let now = net.now;
    let h = net.ua(0).send_options(now, uri, core);
    let ev = net.wait(0, "OptionsResult", |e| {
        matches!(e, UaEvent::OptionsResult { .. })
    });
    assert_eq!(
        ev,
        UaEvent::OptionsResult {
            handle: h,
            status: 503
        }
    );
    // New calls are refused while draining.
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 503,
            reason: None
        }
    );
    net.settle();
}

#[test]
fn options_200_carries_allow_accept_supported() {
    let mut ua = UserAgent::new(config(1, 1));
    let req = "OPTIONS sip:10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKo\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@10.0.0.2>;tag=x\r\nTo: <sip:10.0.0.1>\r\nCall-ID: o@x\r\n\
CSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let now = Instant::now();
    let from = Remote {
        address: addr(2),
        transport: Transport::Udp,
    };
    ua.handle_input(now, req.as_bytes(), from);
    let t = ua.poll_transmit().unwrap();
    let r = Message::parse(&t.bytes, Framing::Datagram, Limits::default()).unwrap();
    assert_eq!(r.status(), Some(200));
    let allow = r.list("Allow").unwrap();
    for m in [
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO",
    ] {
        assert!(allow.contains(&m), "{m}");
    }
    assert!(r.list("Accept").unwrap().contains(&"application/sdp"));
    assert!(r.headers_named("Supported").next().is_some());
    assert_eq!(t.destination, addr(2));
}

#[test]
fn timer_b_surfaces_as_failed_408() {
    let mut net = Net::new(1, 14);
    let now = net.now;
    let nowhere = SocketAddr::new(IpAddr::from([10, 0, 0, 99]), 5060);
    let params = outgoing(&net, nowhere, None);
    let a = net.ua(0).place_call(now, params);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 408,
            reason: None
        }
    );
    // 64*T1 after the INVITE, not before.
    assert_eq!(net.now - now, Duration::from_millis(32_000));
    net.settle();
}

#[test]
fn no_ack_for_the_2xx_ends_the_call_with_bye() {
    let mut net = Net::new(2, 15);
    net.drop_if = Some(|line| line.starts_with("ACK"));
    let (a, b) = establish(&mut net, 0, 1);
    let start = net.now;
    expect_ended(&mut net, 1, b, EndedBy::Timeout);
    assert!(net.now - start >= Duration::from_millis(31_000));
    expect_ended(&mut net, 0, a, EndedBy::Remote);
    net.settle();
    // The 2xx was resent (T1 doubling to T2) and each copy re-ACKed.
    assert!(net.count(1, 0, "SIP/2.0 200") >= 8);
}

#[test]
fn rejected_call_fails_with_status_and_reason() {
    let mut net = Net::new(2, 16).lossy(150, 0, 40);
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    }) else {
        unreachable!()
    };
    let now = net.now;
    let busy = "Q.850;cause=17";
    net.ua(1).reject(now, b, 486, Some(busy)).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Local);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 486,
            reason: Some(busy.into())
        }
    );
    net.settle();
    assert_eq!(net.events(0), []);
}

#[test]
fn sip_ua_fuzz_seeds_never_panic_and_never_leak() {
    // Its own seeds, and the RFC 4475 torture messages of the parser's target.
    for dir in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sip_ua"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sip_message"),
    ] {
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("corpus dir") {
            let data = std::fs::read(entry.expect("entry").path()).expect("seed");
            tdmgw::sip::ua::fuzz_sip_ua(&data);
            n += 1;
        }
        assert!(n > 0, "no seeds in {dir}");
    }
}

#[test]
fn reliable_provisionals_are_pracked_in_order_under_loss() {
    for seed in 1..=6 {
        let mut net = Net::new(2, seed).lossy(200, 50, 40);
        let now = net.now;
        let offer = sdp::offer(&media(1, 40_000, &["PCMA"]));
        let to = net.nodes[1].addr;
        let mut params = outgoing(&net, to, Some(offer.clone()));
        params.headers.push(Header::new("Require", "100rel"));
        let a = net.ua(0).place_call(now, params);
        let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
            matches!(e, UaEvent::IncomingCall { .. })
        }) else {
            unreachable!()
        };
        // 183 with early media, then 180 at once: the 180 waits for the
        // 183's PRACK (RFC 3262 §3) and both arrive, once each, in order.
        let early = sdp::answer(&offer, &media(2, 50_000, &["PCMA"]));
        let now = net.now;
        net.ua(1)
            .send_provisional(now, b, 183, Some(&early))
            .unwrap();
        net.ua(1).send_provisional(now, b, 180, None).unwrap();
        let ev = net.wait(0, "183", |e| matches!(e, UaEvent::Provisional { .. }));
        assert_eq!(
            ev,
            UaEvent::Provisional {
                call: a,
                status: 183,
                sdp: Some(early.clone())
            }
        );
        let ev = net.wait(0, "180", |e| matches!(e, UaEvent::Provisional { .. }));
        assert_eq!(
            ev,
            UaEvent::Provisional {
                call: a,
                status: 180,
                sdp: None
            }
        );
        net.run_for(Duration::from_secs(1));
        let now = net.now;
        net.ua(1).accept(now, b, Some(&early)).unwrap();
        net.wait(0, "Answered", |e| matches!(e, UaEvent::Answered { .. }));
        net.run_for(Duration::from_secs(1));
        let now = net.now;
        net.ua(0).hangup(now, a, None).unwrap();
        expect_ended(&mut net, 1, b, EndedBy::Remote);
        expect_ended(&mut net, 0, a, EndedBy::Local);
        net.settle();
        assert!(net.count(0, 1, "PRACK") >= 2, "seed {seed}");
        assert_eq!(net.count(1, 0, "SIP/2.0 481"), 0, "seed {seed}");
        assert_eq!(net.events(0), [], "seed {seed}");
    }
}

#[test]
fn no_prack_rejects_the_invite_with_504() {
    let mut net = Net::new(2, 21);
    net.drop_if = Some(|line| line.starts_with("PRACK"));
    let now = net.now;
    let to = net.nodes[1].addr;
    let mut params = outgoing(&net, to, None);
    params.headers.push(Header::new("Require", "100rel"));
    let a = net.ua(0).place_call(now, params);
    let UaEvent::IncomingCall { call: b, .. } = net.wait(1, "IncomingCall", |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    }) else {
        unreachable!()
    };
    let now = net.now;
    net.ua(1).send_provisional(now, b, 180, None).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Timeout);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 504,
            reason: None
        }
    );
    net.settle();
    // Resent T1, 2T1, 4T1, ... until 64*T1: 7 copies in all.
    assert_eq!(net.count(1, 0, "SIP/2.0 180"), 7);
}

#[test]
fn without_100rel_an_invite_requiring_it_gets_420() {
    let mut net = Net::new(2, 22);
    net.nodes[1].ua = UserAgent::new(UaConfig {
        rel100: false,
        ..config(2, 22)
    });
    let now = net.now;
    let to = net.nodes[1].addr;
    let mut params = outgoing(&net, to, None);
    params.headers.push(Header::new("Require", "100rel"));
    let a = net.ua(0).place_call(now, params);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 420,
            reason: None
        }
    );
    net.settle();
    assert_eq!(net.events(1), []);
}

fn with_session_timer(net: &mut Net, secs: u32) {
    for i in 0..net.nodes.len() {
        let c = config(i as u8 + 1, 30 + i as u64);
        net.nodes[i].ua = UserAgent::new(UaConfig {
            session_expires_s: Some(secs),
            ..c
        });
    }
}

#[test]
fn session_timer_refreshes_keep_the_call_up() {
    let mut net = Net::new(2, 31).lossy(100, 0, 30);
    with_session_timer(&mut net, 90);
    let (a, b) = establish(&mut net, 0, 1);
    net.run_for(Duration::from_secs(600));
    // The caller refreshes with UPDATE every 45 s (RFC 4028 §7.4, §9:
    // refresher=uac as it supports timers); nothing to report.
    assert!(
        net.count(0, 1, "UPDATE") >= 12,
        "{}",
        net.count(0, 1, "UPDATE")
    );
    assert_eq!(net.events(0), []);
    assert_eq!(net.events(1), []);
    let now = net.now;
    net.ua(0).hangup(now, a, None).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    net.settle();
}

#[test]
fn session_expires_without_refreshes() {
    let mut net = Net::new(2, 32);
    with_session_timer(&mut net, 90);
    net.drop_if = Some(|line| line.starts_with("UPDATE"));
    let (a, b) = establish(&mut net, 0, 1);
    let start = net.now;
    // §10: the callee gives up at 90 - min(32, 90/3) = 60 s.
    expect_ended(&mut net, 1, b, EndedBy::Timeout);
    let waited = net.now - start;
    assert!(
        waited > Duration::from_secs(59) && waited <= Duration::from_secs(61),
        "{waited:?}"
    );
    expect_ended(&mut net, 0, a, EndedBy::Remote);
    net.settle();
}

#[test]
fn session_interval_below_min_se_gets_422_and_a_retry() {
    let mut net = Net::new(2, 33);
    net.nodes[0].ua = UserAgent::new(UaConfig {
        session_expires_s: Some(60),
        min_se_s: 30,
        ..config(1, 33)
    });
    // RFC 4028 §7.3: the caller INVITEs again with the callee's Min-SE.
    let (a, b) = establish(&mut net, 0, 1);
    assert_eq!(net.count(1, 0, "SIP/2.0 422"), 1);
    assert_eq!(net.count(0, 1, "INVITE"), 2);
    let now = net.now;
    net.ua(1).hangup(now, b, None).unwrap();
    expect_ended(&mut net, 0, a, EndedBy::Remote);
    expect_ended(&mut net, 1, b, EndedBy::Local);
    net.settle();
}

#[test]
fn a_2xx_after_the_invite_transaction_ended_is_acked_again() {
    let mut net = Net::new(2, 41);
    let (a, b) = establish(&mut net, 0, 1);
    // Timer M (64*T1) has ended the caller's INVITE transaction.
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.ua(0).transaction_count(), 0);
    let ok = net
        .log
        .iter()
        .find(|(_, _, l, _)| l.starts_with("SIP/2.0 200"))
        .map(|(f, t, _, bytes)| (*f, *t, bytes.clone()))
        .unwrap();
    let acks = net.count(0, 1, "ACK");
    net.send(ok.0, ok.1, Transport::Udp, ok.2);
    net.run_for(Duration::from_secs(1));
    // §13.2.2.4: the dialog re-sends its ACK (the Stray2xx path).
    assert_eq!(net.count(0, 1, "ACK"), acks + 1);
    let now = net.now;
    net.ua(0).hangup(now, a, None).unwrap();
    expect_ended(&mut net, 1, b, EndedBy::Remote);
    expect_ended(&mut net, 0, a, EndedBy::Local);
    net.settle();
}

#[test]
fn transport_error_fails_the_invite_with_503() {
    let mut net = Net::new(2, 42);
    net.transport = Transport::Tcp;
    let now = net.now;
    let to = net.nodes[1].addr;
    let params = outgoing(&net, to, None);
    let a = net.ua(0).place_call(now, params);
    // The connection broke: the INVITE never left.
    while net.ua(0).poll_transmit().is_some() {}
    let peer = net.remote(1);
    net.ua(0).handle_transport_error(now, peer);
    let ev = net.wait(0, "Failed", |e| matches!(e, UaEvent::Failed { .. }));
    assert_eq!(
        ev,
        UaEvent::Failed {
            call: a,
            status: 503,
            reason: None
        }
    );
    net.settle();
}

/// What the callee does with the call, and when (ms after it arrives).
#[derive(Debug, Clone, Copy)]
enum CalleeAction {
    Answer(u64),
    Reject(u64),
}

/// One call under random loss, duplication, delay and timing of every
/// action: each side ends with exactly one terminal event, the caller is
/// answered only if the callee accepted, and both tables end empty.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    seed: u64,
    loss: u64,
    dup: u64,
    delay: u64,
    ring_ms: u64,
    action: CalleeAction,
    caller_hangup_ms: Option<u64>,
    rel100: bool,
}

fn random_call(sc: Scenario) {
    let Scenario {
        seed,
        loss,
        dup,
        delay,
        ring_ms,
        action,
        caller_hangup_ms,
        rel100,
    } = sc;
    let mut net = Net::new(2, seed).lossy(loss, dup, delay);
    let start = net.now;
    let offer = sdp::offer(&media(1, 40_000, &["PCMA", "PCMU"]));
    let to = net.nodes[1].addr;
    let mut params = outgoing(&net, to, Some(offer.clone()));
    if rel100 {
        params.headers.push(Header::new("Require", "100rel"));
    }
    let a = net.ua(0).place_call(start, params);
    let mut seen: [Vec<UaEvent>; 2] = [Vec::new(), Vec::new()];
    let mut b: Option<(CallHandle, Instant)> = None;
    let (mut rung, mut acted, mut hung) = (false, false, caller_hangup_ms.is_none());
    let mut accepted = false;
    let at = |base: Instant, ms: u64| base + Duration::from_millis(ms);
    for _ in 0..200_000 {
        for (n, s) in seen.iter_mut().enumerate() {
            s.extend(net.nodes[n].events.drain(..));
        }
        if b.is_none() {
            b = seen[1].iter().find_map(|e| match e {
                UaEvent::IncomingCall { call, .. } => Some((*call, net.now)),
                _ => None,
            });
        }
        let now = net.now;
        if let Some((bc, t0)) = b {
            if !rung && now >= at(t0, ring_ms) {
                rung = true;
                let _ = net.ua(1).send_provisional(now, bc, 180, None);
            }
            match action {
                CalleeAction::Answer(ms) if !acted && now >= at(t0, ms) => {
                    acted = true;
                    let answer = sdp::answer(&offer, &media(2, 50_000, &["PCMA"]));
                    accepted = net.ua(1).accept(now, bc, Some(&answer)).is_ok();
                }
                CalleeAction::Reject(ms) if !acted && now >= at(t0, ms) => {
                    acted = true;
                    let _ = net.ua(1).reject(now, bc, 486, None);
                }
                _ => {}
            }
        }
        if let Some(ms) = caller_hangup_ms.filter(|_| !hung)
            && now >= at(start, ms)
        {
            hung = true;
            let _ = net.ua(0).hangup(now, a, Some(CAUSE16));
        }
        let caller_done = seen[0]
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { .. } | UaEvent::Failed { .. }));
        if hung && (acted || caller_done) {
            break;
        }
        if !net.step() {
            // Nothing in flight: jump to the next scheduled action.
            net.now += Duration::from_millis(10);
        }
    }
    // Let retransmissions and in-flight messages play out.
    net.run_for(Duration::from_secs(70));
    for (n, s) in seen.iter_mut().enumerate() {
        s.extend(net.nodes[n].events.drain(..));
    }
    if b.is_none() {
        b = seen[1].iter().find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some((*call, net.now)),
            _ => None,
        });
    }
    // Whoever still has a live, answered call hangs up.
    let terminal = |e: &UaEvent| matches!(e, UaEvent::Ended { .. } | UaEvent::Failed { .. });
    for (n, s) in seen.iter_mut().enumerate() {
        s.extend(net.nodes[n].events.drain(..));
        let handle = if n == 0 { Some(a) } else { b.map(|x| x.0) };
        if let Some(h) = handle.filter(|_| !s.iter().any(terminal)) {
            let now = net.now;
            let _ = net.ua(n).hangup(now, h, None);
        }
    }
    net.settle();
    for (n, s) in seen.iter_mut().enumerate() {
        s.extend(net.nodes[n].events.drain(..));
        let terminals = s.iter().filter(|e| terminal(e)).count();
        let expected = usize::from(n == 0 || b.is_some());
        assert_eq!(terminals, expected, "node {n}: {s:?}");
    }
    let answered = seen[0]
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { .. }));
    assert!(
        !answered || accepted,
        "answered without accept: {:?}",
        seen[0]
    );
    assert!(
        seen[0]
            .iter()
            .filter(|e| matches!(e, UaEvent::Answered { .. }))
            .count()
            <= 1
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn random_calls_end_once_on_both_sides_and_leak_nothing(
        seed in 1u64..1_000_000,
        loss in 0u64..250,
        dup in 0u64..150,
        delay in 1u64..150,
        ring_ms in 0u64..500,
        answer in proptest::bool::ANY,
        act_ms in 0u64..3_000,
        caller_hangup_ms in proptest::option::of(0u64..4_000),
        rel100 in proptest::bool::ANY,
    ) {
        let action = if answer { CalleeAction::Answer(act_ms) } else { CalleeAction::Reject(act_ms) };
        random_call(Scenario { seed, loss, dup, delay, ring_ms, action, caller_hangup_ms, rel100 });
    }
}
