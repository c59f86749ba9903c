//! The D-channel task: two tasks (our user side, our network side) over the
//! in-memory frame port in simulated time, and a task over the DAHDI
//! D-channel of the simulated card (SOCK_SEQPACKET socketpairs).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::port::{FramePort, MemoryLink, MemoryPort};
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, CallId, ClearedBy, Event, PlaceCall, RestartClass};
use tdmgw::isdn::task::{
    self, DChannelHandle, Observer, SpanEvent, StopReason, Stopped, TaskConfig,
};
use tdmgw::isdn::timers::{TimerId, TimerValues};
use tdmgw::line::driver::dahdi::seqpacket::{CardEnd, SeqpacketCard};
use tdmgw::line::driver::dahdi::{DahdiSpan, DahdiSpanParams, sys};

/// Counts the task's check-ins and the events it reports to ops.
#[derive(Default)]
struct Probe {
    beats: AtomicU64,
    link_ups: AtomicU64,
    restarts_sent: AtomicU64,
    restarts_received: AtomicU64,
}

impl Observer for Probe {
    fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    fn event(&self, _span: u8, e: &Event) {
        let c = match e {
            Event::LinkUp => &self.link_ups,
            Event::RestartSent { .. } => &self.restarts_sent,
            Event::RestartReceived { .. } => &self.restarts_received,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn config(span: u8, role: q931::Role) -> TaskConfig {
    let timers = TimerValues::default();
    let l2 = match role {
        q931::Role::User => q921::Role::User,
        q931::Role::Network => q921::Role::Network,
    };
    TaskConfig::new(
        LinkConfig::pri(span, l2, &timers, 3, 7),
        q931::Config::e1(span, role),
    )
}

/// One side: its handle, its events, its ops probe and its task.
struct Side {
    h: DChannelHandle,
    rx: UnboundedReceiver<SpanEvent>,
    probe: Arc<Probe>,
    join: JoinHandle<Stopped>,
    /// Events seen while waiting for another one.
    seen: VecDeque<Event>,
}

impl Side {
    fn spawn<P: FramePort + Send + 'static>(role: q931::Role, port: P) -> Side {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Arc::new(Probe::default());
        let (h, join) = task::spawn(config(1, role), port, tx, probe.clone());
        Side {
            h,
            rx,
            probe,
            join,
            seen: VecDeque::new(),
        }
    }

    /// The next event matching `f` (others are kept in `seen`); fails after
    /// `within` of simulated time.
    async fn expect<T>(
        &mut self,
        what: &str,
        within: Duration,
        f: impl Fn(&Event) -> Option<T>,
    ) -> T {
        if let Some(i) = self.seen.iter().position(|e| f(e).is_some()) {
            let e = self.seen.remove(i).expect("position is in range");
            return f(&e).expect("matched above");
        }
        let wait = async {
            loop {
                let e = self.rx.recv().await.expect("task alive").event;
                match f(&e) {
                    Some(v) => return v,
                    None => self.seen.push_back(e),
                }
            }
        };
        match timeout(within, wait).await {
            Ok(v) => v,
            Err(_) => panic!("no {what} within {within:?}; seen {:?}", self.seen),
        }
    }

    async fn link_up(&mut self) {
        self.expect("LinkUp", secs(30), |e| (*e == Event::LinkUp).then_some(()))
            .await;
    }

    async fn incoming(&mut self) -> (CallId, u8) {
        self.expect("IncomingCall", secs(10), |e| match e {
            Event::IncomingCall { id, channel, .. } => Some((*id, *channel)),
            _ => None,
        })
        .await
    }

    async fn connected(&mut self, id: CallId) {
        self.expect("Connected", secs(10), |e| {
            (*e == Event::Connected { id }).then_some(())
        })
        .await;
    }

    async fn released(&mut self, id: CallId, within: Duration) -> (Cause, ClearedBy) {
        self.expect("Released", within, |e| match e {
            Event::Released { id: i, cause, by } if *i == id => Some((*cause, *by)),
            _ => None,
        })
        .await
    }

    /// No calls, every channel idle, as the status channel shows it.
    fn assert_quiet(&self) {
        let s = self.h.status().borrow().clone();
        assert_eq!(s.calls, 0, "calls left: {s:?}");
        assert!(s.channels.all_idle(), "channels not idle: {:?}", s.channels);
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn pair() -> (Side, Side, MemoryLink) {
    let (a, b, link) = MemoryPort::pair();
    let mut user = Side::spawn(q931::Role::User, a);
    let mut net = Side::spawn(q931::Role::Network, b);
    user.link_up().await;
    net.link_up().await;
    (user, net, link)
}

/// `from` calls `to`, `to` answers; returns (caller's id, callee's id).
async fn call_answered(from: &mut Side, to: &mut Side) -> (CallId, CallId) {
    let a = from
        .h
        .place_call(PlaceCall::speech("999", Some("2079460000")))
        .await
        .expect("place call");
    let (b, _ts) = to.incoming().await;
    to.h.alerting(b).await.expect("alerting");
    to.h.connect(b).await.expect("connect");
    from.expect("Alerting", secs(10), |e| {
        (*e == Event::Alerting { id: a }).then_some(())
    })
    .await;
    from.connected(a).await;
    to.connected(b).await;
    (a, b)
}

/// `clearer` hangs up its call `x`; the other side's is `y`.
async fn clear(clearer: &mut Side, x: CallId, other: &mut Side, y: CallId) {
    clearer
        .h
        .disconnect(x, Cause::NORMAL_CLEARING)
        .await
        .expect("disconnect");
    let (cause, by) = other.released(y, secs(10)).await;
    assert_eq!((cause, by), (Cause::NORMAL_CLEARING, ClearedBy::Remote));
    let (_, by) = clearer.released(x, secs(10)).await;
    assert_eq!(by, ClearedBy::Local);
}

/// Asks both tasks to stop before either can see the other's port close,
/// then checks that both stopped on request with every call in null.
async fn shut_down(a: Side, b: Side) -> (Stopped, Stopped) {
    a.h.shutdown().await;
    b.h.shutdown().await;
    let a = a.join.await.expect("task did not panic");
    let b = b.join.await.expect("task did not panic");
    for s in [&a, &b] {
        assert!(matches!(s.reason, StopReason::Shutdown), "{:?}", s.reason);
        let q = s.dchannel.q931();
        assert_eq!(q.call_count(), 0);
        assert!(q.channels().all_idle());
    }
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn calls_both_ways_are_placed_and_cleared_from_either_side() {
    let (mut user, mut net, _link) = pair().await;
    for round in 0..10 {
        let (a, b) = call_answered(&mut user, &mut net).await;
        if round % 2 == 0 {
            clear(&mut user, a, &mut net, b).await;
        } else {
            clear(&mut net, b, &mut user, a).await;
        }
        let (b, a) = call_answered(&mut net, &mut user).await;
        if round % 2 == 0 {
            clear(&mut net, b, &mut user, a).await;
        } else {
            clear(&mut user, a, &mut net, b).await;
        }
    }
    // A call refused before it is answered, and a command Q.931 refuses.
    let a = user
        .h
        .place_call(PlaceCall::speech("101", None))
        .await
        .unwrap();
    let (b, _) = net.incoming().await;
    net.h.disconnect(b, Cause::USER_BUSY).await.unwrap();
    assert_eq!(
        user.released(a, secs(10)).await,
        (Cause::USER_BUSY, ClearedBy::Remote)
    );
    net.released(b, secs(10)).await;
    assert_eq!(
        user.h.connect(a).await,
        Err(task::TaskError::Refused(q931::CommandError::UnknownCall))
    );
    // Let the last messages' acknowledgements settle, then check.
    tokio::time::sleep(secs(1)).await;
    user.assert_quiet();
    net.assert_quiet();
    assert!(user.probe.beats.load(Ordering::Relaxed) > 0);
    assert_eq!(user.probe.link_ups.load(Ordering::Relaxed), 1);
    shut_down(user, net).await;
}

#[tokio::test(start_paused = true)]
async fn an_active_call_survives_a_short_link_drop_and_is_cleared_by_t309() {
    let (mut user, mut net, link) = pair().await;
    let t309 = TimerValues::default().get(TimerId::T309);

    // A short drop: the link fails (T203, then T200 x N200), comes back
    // before T309 and the call is reconciled by STATUS ENQUIRY.
    let (a, b) = call_answered(&mut user, &mut net).await;
    link.set_up(false);
    user.expect("LinkDown", secs(30), |e| {
        (*e == Event::LinkDown).then_some(())
    })
    .await;
    net.expect("LinkDown", secs(30), |e| {
        (*e == Event::LinkDown).then_some(())
    })
    .await;
    assert_eq!(
        user.h.status().borrow().calls,
        1,
        "active call kept under T309"
    );
    link.set_up(true);
    user.link_up().await;
    net.link_up().await;
    tokio::time::sleep(secs(10)).await;
    assert_eq!(user.h.status().borrow().calls, 1);
    assert_eq!(net.h.status().borrow().calls, 1);
    assert!(
        !user
            .seen
            .iter()
            .any(|e| matches!(e, Event::Released { .. }))
    );
    clear(&mut user, a, &mut net, b).await;

    // A long drop: T309 clears the call on both sides.
    let (a, b) = call_answered(&mut net, &mut user).await;
    link.set_up(false);
    let (_, by) = user.released(b, t309 + secs(60)).await;
    assert_eq!(by, ClearedBy::Timer(TimerId::T309));
    let (_, by) = net.released(a, secs(60)).await;
    assert_eq!(by, ClearedBy::Timer(TimerId::T309));
    link.set_up(true);
    user.link_up().await;
    net.link_up().await;
    tokio::time::sleep(secs(1)).await;
    user.assert_quiet();
    net.assert_quiet();
    shut_down(user, net).await;
}

#[tokio::test(start_paused = true)]
async fn restart_is_answered_and_reported_to_ops() {
    let (mut user, mut net, _link) = pair().await;
    let (a, b) = call_answered(&mut user, &mut net).await;
    // RESTART of all interfaces from the network clears the call.
    net.h
        .restart(RestartClass::ALL_INTERFACES, &[])
        .await
        .expect("restart");
    assert_eq!(user.released(a, secs(10)).await.1, ClearedBy::Restart);
    assert_eq!(net.released(b, secs(10)).await.1, ClearedBy::Restart);
    user.expect("ChannelsRestarted", secs(10), |e| {
        matches!(e, Event::ChannelsRestarted { .. }).then_some(())
    })
    .await;
    net.expect("ChannelsRestarted", secs(10), |e| {
        matches!(e, Event::ChannelsRestarted { .. }).then_some(())
    })
    .await;
    // Indicated channels from the user side.
    user.h
        .restart(RestartClass::INDICATED_CHANNELS, &[5, 6])
        .await
        .expect("restart");
    let ts = net
        .expect("RestartReceived", secs(10), |e| match e {
            Event::RestartReceived { timeslots, .. } => Some(timeslots.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ts, vec![5, 6]);
    user.expect("ChannelsRestarted", secs(10), |e| match e {
        Event::ChannelsRestarted { timeslots } if *timeslots == [5, 6] => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(net.probe.restarts_sent.load(Ordering::Relaxed), 1);
    assert_eq!(net.probe.restarts_received.load(Ordering::Relaxed), 1);
    assert_eq!(user.probe.restarts_sent.load(Ordering::Relaxed), 1);
    assert_eq!(user.probe.restarts_received.load(Ordering::Relaxed), 1);
    user.assert_quiet();
    net.assert_quiet();
    shut_down(user, net).await;
}

#[tokio::test(start_paused = true)]
async fn the_task_stops_when_its_handles_are_dropped_or_its_port_closes() {
    let (a, b, _link) = MemoryPort::pair();
    let user = Side::spawn(q931::Role::User, a);
    let Side { h, join, .. } = Side::spawn(q931::Role::Network, b);
    drop(h);
    let stopped = join.await.unwrap();
    assert!(matches!(stopped.reason, StopReason::HandlesDropped));
    // The network side's port is gone with its task: the user's port closes.
    let stopped = user.join.await.unwrap();
    assert!(matches!(stopped.reason, StopReason::PortClosed));
    assert_eq!(
        user.h.place_call(PlaceCall::speech("999", None)).await,
        Err(task::TaskError::Stopped)
    );
}

// ---- the DAHDI D-channel ----

/// The card's end of the D-channel as a frame port, so that a network-side
/// task can sit on the simulated card's line side: it sends frames as the
/// card delivers them (+2 FCS octets) and strips the spare octets the
/// driver writes.
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
                Some(n) => panic!("the driver wrote {n} octets: not a frame + 2 spare"),
                None => g.clear_ready(),
            }
        }
    }

    fn poll_send(&mut self, _cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().0.send_frame(frame))
    }
}

#[tokio::test]
async fn a_task_on_the_dahdi_d_channel_of_the_simulated_card() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (mut card, ends) =
                SeqpacketCard::e1_pri(1, 1, 30, sys::DAHDI_SIG_HDLCFCS).expect("card");
            let span = DahdiSpan::open(&mut card, DahdiSpanParams::e1_pri(1, 1, 30)).expect("open");
            let port = tdmgw::isdn::port::DahdiPort::new(span).expect("register");
            let card_fd = unsafe { AsyncFd::register(CardFd(ends.d)) }.expect("register card");
            let card_port = CardPort { fd: card_fd };

            let (tx, rx) = mpsc::unbounded_channel();
            let (h, fut) = task::start(config(1, q931::Role::User), port, tx, Arc::new(()));
            let join = tokio::task::spawn_local(fut);
            let mut user = Side {
                h,
                rx,
                probe: Arc::default(),
                join,
                seen: VecDeque::new(),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let (h, fut) = task::start(config(1, q931::Role::Network), card_port, tx, Arc::new(()));
            let join = tokio::task::spawn_local(fut);
            let mut net = Side {
                h,
                rx,
                probe: Arc::default(),
                join,
                seen: VecDeque::new(),
            };
            user.link_up().await;
            net.link_up().await;
            let (a, b) = call_answered(&mut user, &mut net).await;
            clear(&mut net, b, &mut user, a).await;
            let (b, a) = call_answered(&mut net, &mut user).await;
            clear(&mut user, a, &mut net, b).await;
            let (stopped, _) = shut_down(user, net).await;
            assert!(stopped.dchannel.link().counters().clone() != Default::default());
        })
        .await;
}
