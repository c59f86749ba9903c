//! The gateway on a DAHDI board, end to end, against a simulated card:
//! `Gateway::start_with` opens the span on a `SeqpacketCard` (one
//! SOCK_SEQPACKET socketpair per channel), runs its D-channel task over
//! the D-channel fd (`DahdiPort`, kernel-HDLC style: a frame + 2 FCS
//! octets per message) and carries its B-channels in the media thread
//! (`DahdiLinePort`). The test plays the rest of the world:
//!
//! - the exchange: a network-side D-channel task on the card's end of the
//!   D-channel, placing a 999 call;
//! - the card's clock: a thread writing one 160-octet block of noise on
//!   every B-channel every 20 ms and reading back what the gateway wrote;
//! - the core: `SimCore` on loopback, answering and echoing RTP.
//!
//! The call connects, the card's audio on the call's timeslot comes back
//! on that timeslot (card → media thread → RTP → core echo → jitter
//! buffer → card), readiness follows the card's alarms, and after the
//! exchange clears nothing is left. Real time on loopback; every wait is
//! bounded and fails with what it saw.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use tdmgw::config::Config;
use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::port::FramePort;
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, Event, PlaceCall};
use tdmgw::isdn::task::{self, SpanEvent, TaskConfig};
use tdmgw::isdn::timers::TimerValues;
use tdmgw::line::driver::dahdi::seqpacket::{CardEnd, SeqpacketCard};
use tdmgw::line::driver::dahdi::sys;
use tdmgw::ops::board::OpsBoard;
use tdmgw::ops::daemon::Lifecycle;
use tdmgw::ops::gateway::Gateway;
use tdmgw::ops::supervisor::Supervisor;
use tdmgw::sim::core::{SimCore, SimCoreConfig};

mod common;
use common::Rng;

const BLOCK: usize = 160;
const CHANNELS: u8 = 2;

/// The card's end of the D-channel as a frame port for the exchange's
/// task: frames go out as the card delivers them (+2 FCS octets), the
/// gateway's 2 spare octets are stripped.
struct CardPort {
    fd: AsyncFd<CardFd>,
}

struct CardFd(CardEnd);

impl AsRawFd for CardFd {
    fn as_raw_fd(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl FramePort for CardPort {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            let mut g = ready!(self.fd.poll_read_ready_mut(cx))?;
            let mut msg = [0u8; 512];
            match g.get_inner_mut().0.recv(&mut msg)? {
                Some(0) => return Poll::Ready(Ok(None)),
                Some(n) if n > 2 && n - 2 <= buf.len() => {
                    buf[..n - 2].copy_from_slice(&msg[..n - 2]);
                    return Poll::Ready(Ok(Some(n - 2)));
                }
                Some(n) => panic!("the gateway wrote {n} octets: not a frame + 2 spare"),
                None => g.clear_ready(),
            }
        }
    }

    fn poll_send(&mut self, _cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().0.send_frame(frame))
    }
}

/// What the card's clock thread sent and got back, per lane (TS1, TS2).
#[derive(Default)]
struct Lanes {
    sent: Vec<Vec<u8>>,
    got: Vec<Vec<u8>>,
}

/// The card's B-channel side: a block of noise per lane every 20 ms, the
/// gateway's blocks read back, until `stop`.
fn card_clock(
    lanes: Vec<(u8, CardEnd)>,
    log: Arc<Mutex<Lanes>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = Rng(0xCA4D);
        let mut next = Instant::now();
        let guard = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < guard {
            let mut l = log.lock().unwrap();
            for (i, (_, end)) in lanes.iter().enumerate() {
                // Loud A-law (segments 4-7): no quiet passage to stretch.
                let b: Vec<u8> = (0..BLOCK)
                    .map(|_| (0x40 | (rng.next() as u8 & 0xBF)) ^ 0x55)
                    .collect();
                end.send(&b).unwrap();
                l.sent[i].extend_from_slice(&b);
                let mut buf = [0u8; 1024];
                while let Some(n) = end.recv(&mut buf).unwrap() {
                    l.got[i].extend_from_slice(&buf[..n]);
                }
            }
            drop(l);
            next += Duration::from_millis(20);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

/// Some 50 ms of what the card sent on lane `i` after octet `from` is
/// found, octet for octet, in what it got back.
fn echoed(l: &Lanes, i: usize, from: usize) -> bool {
    let (sent, got) = (&l.sent[i], &l.got[i]);
    let mut at = from;
    while at + 400 <= sent.len() {
        let needle = &sent[at..at + 400];
        let hit = got
            .windows(8)
            .enumerate()
            .filter(|(_, w)| *w == &needle[..8])
            .any(|(p, _)| got.get(p..p + 400) == Some(needle));
        if hit {
            return true;
        }
        at += 400;
    }
    false
}

/// A block of 64 UDP ports (RTP/RTCP of span 1) that were free a moment
/// ago, as an RTP port base.
fn free_port_base() -> u16 {
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    for _ in 0..50 {
        let base = 20_000 + 64 * rng.range(0, 600) as u16;
        let ok = (base..base + 64)
            .map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if ok {
            return base;
        }
    }
    panic!("no free block of 64 UDP ports");
}

fn exchange_config() -> TaskConfig {
    let link = LinkConfig::pri(1, q921::Role::Network, &TimerValues::default(), 3, 7);
    let mut l3 = q931::Config::e1(1, q931::Role::Network);
    l3.timeslots.truncate(usize::from(CHANNELS));
    TaskConfig::new(link, l3)
}

/// The next exchange event matching `f` within 10 s.
async fn expect<T>(
    rx: &mut mpsc::UnboundedReceiver<SpanEvent>,
    what: &str,
    f: impl Fn(&Event) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("exchange task alive").event;
            if let Some(v) = f(&e) {
                return v;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

/// Polls `f` every 20 ms for up to `secs`; panics with `what`.
async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {what} within {secs} s");
}

fn check(board: &OpsBoard, name: &str) -> tdmgw::ops::board::Check {
    board
        .readiness()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no readiness check `{name}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_999_call_crosses_a_dahdi_span_to_the_core_and_its_audio_comes_back() {
    let core = SimCore::start(SimCoreConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("sim core");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("board.toml"),
        format!(
            "name = \"dahdi-test\"\n[[span]]\nid = 1\ndriver = \"dahdi\"\ndahdi_span = 1\nchannels = {CHANNELS}\n"
        ),
    )
    .unwrap();
    let site = format!(
        r#"board = "board.toml"
[management]
listen = "127.0.0.1:0"
admin_socket = "{admin}"
[lifecycle]
drain_timeout = "1s"
[media]
rtp_address = "127.0.0.1"
rtp_port_base = {base}
[sip]
listen = [{{ transport = "udp", address = "127.0.0.1:0" }}]
[[peer_group]]
name = "core"
[[peer_group.peer]]
address = "{core}"
[[route]]
called = "999"
peer_group = "core"
[[span]]
id = 1
role = "user"
"#,
        admin = dir.path().join("admin.sock").display(),
        base = free_port_base(),
        core = core.sip_addr(),
    );
    std::fs::write(dir.path().join("site.toml"), site).unwrap();
    let config = Config::load(&dir.path().join("site.toml")).expect("config");

    let (mut card, ends) =
        SeqpacketCard::e1_pri(1, 1, CHANNELS, sys::DAHDI_SIG_HDLCFCS).expect("card");
    let supervisor = Supervisor::new();
    let lifecycle = Arc::new(Lifecycle::default());
    let board = Arc::new(OpsBoard::new(supervisor.clone(), lifecycle.clone()));
    let gw = Gateway::start_with(&config, &board, &supervisor, lifecycle, 7, &mut card)
        .await
        .expect("gateway on the simulated DAHDI card");

    // The card's B-channel clock.
    let log = Arc::new(Mutex::new(Lanes {
        sent: vec![Vec::new(); usize::from(CHANNELS)],
        got: vec![Vec::new(); usize::from(CHANNELS)],
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let clock = card_clock(ends.b, log.clone(), stop.clone());

    // The exchange on the card's end of the D-channel.
    // SAFETY: the AsyncFd owns the card end, so its fd stays open.
    let card_d = unsafe { AsyncFd::register(CardFd(ends.d)) }.expect("register card end");
    let (tx, mut ex_rx) = mpsc::unbounded_channel();
    let (ex, ex_join) = task::spawn(exchange_config(), CardPort { fd: card_d }, tx, Arc::new(()));
    expect(&mut ex_rx, "LinkUp at the exchange", |e| {
        (*e == Event::LinkUp).then_some(())
    })
    .await;
    wait_for("the gateway's D-channel up", 10, || gw.dchannels_up()).await;
    wait_for("span 1 ready", 5, || check(&board, "span 1 alarms").ok).await;

    let call = ex
        .place_call(PlaceCall::speech("999", Some("2079460000")))
        .await
        .unwrap();
    let ts = expect(&mut ex_rx, "CALL PROCEEDING", |e| match e {
        Event::Proceeding { id, channel } if *id == call => Some(*channel),
        _ => None,
    })
    .await;
    assert!((1..=CHANNELS).contains(&ts), "channel {ts}");
    expect(&mut ex_rx, "CONNECT", |e| {
        (*e == Event::Connected { id: call }).then_some(())
    })
    .await;
    let lane = usize::from(ts - 1);
    let from = log.lock().unwrap().sent[lane].len();
    wait_for("the card's audio echoed back on its timeslot", 10, || {
        echoed(&log.lock().unwrap(), lane, from)
    })
    .await;
    {
        let l = log.lock().unwrap();
        let other = 1 - lane;
        assert!(
            !echoed(&l, other, 0),
            "audio came back on the idle timeslot too"
        );
        assert!(
            l.got[other].iter().all(|&o| o == 0xD5),
            "the idle timeslot carries idle"
        );
    }
    let s = gw.span_status(0).expect("span 1 status");
    assert!(s.counters.frame_periods > 0 && s.alarms.is_empty(), "{s:?}");

    // The exchange's signal goes: readiness says so; it comes back.
    card.alarm(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS);
    wait_for("span 1 alarms failing", 5, || {
        !check(&board, "span 1 alarms").ok
    })
    .await;
    assert!(check(&board, "span 1 alarms").detail.contains("LOS"));
    card.alarm(0);
    wait_for("span 1 alarms clear", 5, || {
        check(&board, "span 1 alarms").ok
    })
    .await;

    // The exchange clears; nothing is left behind.
    ex.disconnect(call, Cause::NORMAL_CLEARING).await.unwrap();
    expect(&mut ex_rx, "RELEASE", |e| match e {
        Event::Released { id, .. } if *id == call => Some(()),
        _ => None,
    })
    .await;
    wait_for("the gateway idle", 10, || {
        gw.stats.idle.load(Ordering::Relaxed) && gw.channels_busy() == 0 && gw.sip_calls() == 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    clock.join().unwrap();
    let report = gw.stop().await;
    assert_eq!(report.calls_left, 0, "{report:?}");
    assert_eq!(report.channels_busy, 0, "{report:?}");
    assert_eq!(report.sip_calls_left, 0, "{report:?}");
    ex.shutdown().await;
    ex_join.await.unwrap();
    let core_report = core.stop_and_report().await;
    assert_eq!(core_report.calls_received, 1, "{:?}", core_report.calls);
    assert_eq!(core_report.calls_answered, 1);
}
