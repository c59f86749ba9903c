//! Helpers for the tests that run whole SIP tasks (`mod sip_common;`).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tdmgw::sip::Limits;
use tdmgw::sip::NameAddr;
use tdmgw::sip::Uri;
use tdmgw::sip::peer::{GroupParams, PeerParams};
use tdmgw::sip::sdp::{self, Direction, LocalMedia, Origin, Sdp};
use tdmgw::sip::task::{self, PlaceCall, SipEvent, SipHandle, SipStatus, SipTaskConfig, Stopped};
use tdmgw::sip::transaction::TimerValues;
use tdmgw::sip::transport::{TlsMaterial, Transport, TransportConfig};
use tdmgw::sip::ua::UaConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The longest any single step may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A port free for both UDP and TCP on 127.0.0.1 (SIP puts both on one
/// port, so that a Contact's `;transport=tcp` reaches our TCP listener).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((LOOPBACK, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A TCP port nothing listens on (bound once, then closed): connects are
/// refused.
pub fn closed_port() -> u16 {
    free_port()
}

/// A UDP socket that never answers: a silent peer. Held by the test, so
/// that what is sent to it reaches no one else's socket.
pub fn silent_udp_peer() -> (std::net::UdpSocket, SocketAddr) {
    let s = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Short RFC 3261 timers, so that transactions end within ~1.3 s.
pub fn fast_timers() -> TimerValues {
    TimerValues {
        t1_ms: 20,
        t2_ms: 160,
        t4_ms: 100,
    }
}

pub fn ua_config(seed: u64) -> UaConfig {
    UaConfig {
        timers: fast_timers(),
        limits: Limits::default(),
        sent_by: String::new(),
        sent_by_tls: None,
        contact: Uri::parse("sip:tdmgw@127.0.0.1").unwrap(),
        call_id_host: String::new(),
        user_agent: "tdmgw-test".into(),
        seed,
        rel100: true,
        session_expires_s: None,
        min_se_s: 90,
    }
}

pub fn peer(
    address: SocketAddr,
    transport: Transport,
    priority: u16,
    tls_name: Option<&str>,
) -> PeerParams {
    PeerParams {
        address,
        transport,
        priority,
        weight: 100,
        tls_name: tls_name.map(str::to_owned),
    }
}

/// A group pinging every `interval`.
pub fn group(name: &str, interval: Duration, peers: Vec<PeerParams>) -> GroupParams {
    GroupParams::new(name, interval, 2, 1, peers)
}

pub struct Node {
    pub handle: SipHandle,
    pub events: mpsc::UnboundedReceiver<SipEvent>,
    pub join: JoinHandle<Stopped>,
}

/// A SIP task on `listen` with `groups`, accepting signalling from 127.0.0.1.
pub async fn node(
    seed: u64,
    listen: &[(Transport, SocketAddr)],
    groups: Vec<GroupParams>,
    tls: Option<TlsMaterial>,
) -> Node {
    let tls_names = groups
        .iter()
        .flat_map(|g| &g.peers)
        .filter_map(|p| Some((p.address, p.tls_name.clone()?)))
        .collect();
    let transport = TransportConfig {
        listen: listen.to_vec(),
        allowed_sources: vec![LOOPBACK],
        tls_names,
        tls,
        keepalive_interval: None,
        ..TransportConfig::default()
    };
    let mut cfg = SipTaskConfig::new(transport, ua_config(seed), groups);
    cfg.invite_timeout = Duration::from_millis(300);
    cfg.heartbeat_interval = Duration::from_millis(200);
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, join) = task::spawn(cfg, tx, Arc::new(())).await.expect("spawn");
    Node {
        handle,
        events: rx,
        join,
    }
}

impl Node {
    /// The next event that `pred` accepts (others, e.g. peer changes, are
    /// skipped).
    pub async fn wait(&mut self, what: &str, pred: impl Fn(&SipEvent) -> bool) -> SipEvent {
        let fut = async {
            loop {
                let e = self.events.recv().await.expect("event channel closed");
                if pred(&e) {
                    return e;
                }
            }
        };
        timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("no {what} in time"))
    }

    /// Waits until no call, dialog or transaction is left.
    pub async fn wait_idle(&self) {
        let mut rx = self.handle.status();
        let fut = async {
            loop {
                if is_idle(&rx.borrow_and_update()) {
                    return;
                }
                rx.changed().await.expect("task stopped");
            }
        };
        if timeout(WAIT, fut).await.is_err() {
            panic!("not idle in time: {:?}", *rx.borrow());
        }
    }

    /// Waits until no call or dialog is left (transactions may run on:
    /// pings).
    pub async fn wait_no_calls(&self) {
        let mut rx = self.handle.status();
        let fut = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if s.calls == 0 && s.ua_calls == 0 && s.dialogs == 0 {
                        return;
                    }
                }
                rx.changed().await.expect("task stopped");
            }
        };
        if timeout(WAIT, fut).await.is_err() {
            panic!("calls left: {:?}", *rx.borrow());
        }
    }

    /// Stops the task and returns its stack.
    pub async fn stop(self) -> Stopped {
        self.handle.shutdown().await;
        timeout(WAIT, self.join)
            .await
            .expect("task did not stop")
            .expect("task panicked")
    }
}

pub fn is_idle(s: &SipStatus) -> bool {
    s.calls == 0 && s.ua_calls == 0 && s.dialogs == 0 && s.transactions == 0
}

pub fn media(port: u16) -> LocalMedia {
    LocalMedia {
        origin: Origin {
            username: "-".into(),
            session_id: u64::from(port),
            version: 1,
            address: LOOPBACK,
        },
        address: LOOPBACK,
        port,
        codecs: vec!["PCMA".into(), "PCMU".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: Direction::SendRecv,
    }
}

pub fn offer(port: u16) -> Sdp {
    sdp::offer(&media(port))
}

pub fn call_to(group: &str, user: &str, rtp_port: u16) -> PlaceCall {
    PlaceCall {
        group: group.into(),
        user: user.into(),
        from: NameAddr::parse("\"Gateway\" <sip:02079460000@gw.test>").unwrap(),
        to: NameAddr::parse(&format!("<sip:{user}@core.test>")).unwrap(),
        headers: vec![],
        sdp: offer(rtp_port),
    }
}
