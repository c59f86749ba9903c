//! A whole call (INVITE, 100, 180, 200, ACK, BYE, 200) between two user
//! agents in memory, and the transaction layer's timer scan with many live
//! calls. Run: `cargo bench --bench sip_ua`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tdmgw::sip::endpoint::{Remote, Transport};
use tdmgw::sip::sdp::{self, Direction, LocalMedia, Origin};
use tdmgw::sip::transaction::TimerValues;
use tdmgw::sip::ua::{OutgoingCall, UaConfig, UaEvent, UserAgent};
use tdmgw::sip::{Limits, NameAddr, Uri};

fn ua(i: u8) -> UserAgent {
    UserAgent::new(UaConfig {
        timers: TimerValues::default(),
        limits: Limits::default(),
        sent_by: format!("10.0.0.{i}:5060"),
        sent_by_tls: None,
        contact: Uri::parse(&format!("sip:ua@10.0.0.{i}:5060")).expect("uri"),
        call_id_host: format!("10.0.0.{i}"),
        user_agent: String::new(),
        seed: u64::from(i),
        rel100: true,
        session_expires_s: Some(1800),
        min_se_s: 90,
    })
}

fn remote(i: u8) -> Remote {
    Remote {
        address: SocketAddr::new(IpAddr::from([10, 0, 0, i]), 5060),
        transport: Transport::Udp,
    }
}

fn media(i: u8) -> LocalMedia {
    LocalMedia {
        origin: Origin {
            username: "-".into(),
            session_id: 1,
            version: 1,
            address: IpAddr::from([10, 0, 0, i]),
        },
        address: IpAddr::from([10, 0, 0, i]),
        port: 40_000,
        codecs: vec!["PCMA".into(), "PCMU".into()],
        telephone_event: true,
        ptime_ms: 20,
        direction: Direction::SendRecv,
    }
}

/// Deliver everything both ways until quiet; returns messages moved.
fn pump(a: &mut UserAgent, b: &mut UserAgent, now: Instant) -> usize {
    let mut n = 0;
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_input(now, &t.bytes, remote(1));
            moved = true;
            n += 1;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_input(now, &t.bytes, remote(2));
            moved = true;
            n += 1;
        }
        if !moved {
            return n;
        }
    }
}

fn one_call(a: &mut UserAgent, b: &mut UserAgent, now: Instant) -> usize {
    let offer = sdp::offer(&media(1));
    let call = a.place_call(
        now,
        OutgoingCall {
            request_uri: Uri::parse("sip:999@10.0.0.2").expect("uri"),
            from: NameAddr::parse("<sip:0207@gw>").expect("from"),
            to: NameAddr::parse("<sip:999@core>").expect("to"),
            headers: Vec::new(),
            sdp: offer.clone(),
            peer: remote(2),
        },
    );
    let mut n = pump(a, b, now);
    let Some(UaEvent::IncomingCall { call: inc, .. }) = b.poll_event() else {
        panic!("no incoming call")
    };
    b.send_provisional(now, inc, 180, None).expect("180");
    b.accept(now, inc, Some(&sdp::answer(&offer, &media(2))))
        .expect("accept");
    n += pump(a, b, now);
    a.hangup(now, call, None).expect("hangup");
    n += pump(a, b, now);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    n
}

fn main() {
    let mut a = ua(1);
    let mut b = ua(2);
    let start = Instant::now();
    let mut now = start;
    let calls = 5_000;
    let t = Instant::now();
    let mut messages = 0;
    for _ in 0..calls {
        messages += one_call(&mut a, &mut b, now);
        now += Duration::from_millis(1);
    }
    let per = t.elapsed() / calls;
    println!(
        "call setup + teardown, both user agents: {per:?} per call ({} messages per call)",
        messages / calls as usize
    );
    // Every transaction of those calls is still live (timers not run): the
    // timer scan over them.
    let live = a.transaction_count() + b.transaction_count();
    let t = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        std::hint::black_box(a.poll_timeout());
    }
    println!(
        "poll_timeout over {} live transactions: {:?}",
        a.transaction_count(),
        t.elapsed() / rounds
    );
    now += Duration::from_secs(60);
    a.handle_timeout(now);
    b.handle_timeout(now);
    println!(
        "{live} transactions before timers ran, {} after",
        a.transaction_count() + b.transaction_count()
    );
}
