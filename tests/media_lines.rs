//! Raw E1 spans under the media engine (issues 3 and 5): media threads
//! running `LinePort`s, D-channel tasks over the frame rings, B-channel
//! audio from one engine's RTP socket across an E1 to the other's.
//!
//! (a) A pair line between two media threads (the gateway's near end, the
//!     exchange's far end): a user-side and a network-side D-channel task
//!     over `RingPort`s bring the link up and complete a call.
//! (b) Two engines facing each other over SAToP on 127.0.0.1 (one with
//!     its own clock, one loop-timed): alignment kept, D-channel frames
//!     both ways through the rings, RTP in on one engine out of the other.
//!
//! Real time on loopback; every wait is bounded and fails with what it saw.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use tdmgw::isdn::port::FrameRings;
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, Event, PlaceCall};
use tdmgw::isdn::task::{self, SpanEvent, TaskConfig};
use tdmgw::isdn::timers::TimerValues;
use tdmgw::line::driver::satop::{SatopParams, Timing};
use tdmgw::line::span::SpanConfig;
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams, Event as MediaEvent};
use tdmgw::media::engine::{
    self, ControlHandle, EngineParams, MediaCore, MediaLoop, SpanParams, ThreadParams,
};
use tdmgw::media::lines::{
    LineDriverParams, LineHandle, LinePort, LinePortParams, LineSpanParams, PairParams, pair_line,
};
use tdmgw::media::span_status::SpanStatus;

/// A media thread over one `LinePort`, and the control plane's ends.
struct Running {
    ctl: ControlHandle,
    lines: LineHandle,
    /// RTP address of each channel (port base 0: ephemeral ports).
    rtp: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<std::io::Result<(MediaLoop, LinePort)>>>,
}

impl Running {
    fn start(name: &str, spans: Vec<LineSpanParams>) -> Running {
        let numbers = spans.iter().map(|s| s.span.span_id).collect::<Vec<_>>();
        let ep = EngineParams::new(
            numbers.iter().map(|&n| SpanParams::pri(n)).collect(),
            "127.0.0.1".parse().unwrap(),
            0,
            7,
        );
        let (core, ctl) = MediaCore::new(&ep).unwrap();
        let lp = MediaLoop::new(core).unwrap();
        let rtp = (0..lp.core().channel_count())
            .map(|i| lp.rtp_addr(i).unwrap().0)
            .collect();
        let (port, lines) = LinePort::open(LinePortParams::new(spans)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tp = ThreadParams {
            name: name.to_string(),
            ..ThreadParams::default()
        };
        let join = engine::spawn(lp, port, tp, stop.clone(), |_: &MediaLoop| {}).unwrap();
        Running {
            ctl,
            lines,
            rtp,
            stop,
            join: Some(join),
        }
    }

    fn rtp_of(&self, ts: u8) -> SocketAddr {
        // One span: channels in timeslot order, TS16 skipped.
        self.rtp[usize::from(if ts < 16 { ts - 1 } else { ts - 2 })]
    }

    /// In multiframe alignment, no alarm, and a second of aligned frames
    /// behind it (the start-up, when one end starts before the other, is
    /// over).
    fn up(&self) -> bool {
        let s = self.lines.status[0].read();
        s.in_multiframe && s.alarms.is_empty() && s.counters.deframer.frames >= 8000
    }

    fn stop(mut self) -> (MediaLoop, LinePort) {
        self.stop.store(true, Ordering::Relaxed);
        self.join.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn span(id: u16) -> SpanConfig {
    SpanConfig {
        span_id: id,
        ..SpanConfig::default()
    }
}

/// Polls `f` every millisecond for up to `secs`; panics with `what`.
fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no {what} within {secs} s");
}

/// No alignment lost since `before` but for gaps the driver itself made
/// (a media thread scheduled later than the playout on a loaded machine):
/// each such loss is explained by at least one gap.
fn assert_alignment_kept(before: &SpanStatus, now: &SpanStatus) {
    let losses = now.counters.deframer.alignment_losses - before.counters.deframer.alignment_losses;
    let gaps = now.driver_gaps - before.driver_gaps;
    assert!(
        losses <= gaps,
        "{losses} alignment losses, {gaps} driver gaps: {now:?}"
    );
}

fn task_config(role: q931::Role) -> TaskConfig {
    let l2 = match role {
        q931::Role::User => q921::Role::User,
        q931::Role::Network => q921::Role::Network,
    };
    TaskConfig::new(
        LinkConfig::pri(1, l2, &TimerValues::default(), 3, 7),
        q931::Config::e1(1, role),
    )
}

/// The next event matching `f` within 10 s.
async fn expect<T>(
    rx: &mut mpsc::UnboundedReceiver<SpanEvent>,
    what: &str,
    f: impl Fn(&Event) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("task alive").event;
            if let Some(v) = f(&e) {
                return v;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

#[tokio::test]
async fn dchannel_tasks_over_a_pair_line_bring_the_link_up_and_complete_a_call() {
    let (near, far) = pair_line(PairParams::default()).unwrap();
    let mut gw = Running::start(
        "media-gw",
        vec![LineSpanParams::new(span(1), LineDriverParams::Pair(near))],
    );
    let mut ex = Running::start(
        "media-exchange",
        vec![LineSpanParams::new(span(1), LineDriverParams::PairFar(far))],
    );
    wait_for("alignment on both ends", 10, || gw.up() && ex.up());
    let before = [gw.lines.status[0].read(), ex.lines.status[0].read()];
    let gw_port = gw.lines.dchannels[0].take().unwrap().into_port().unwrap();
    let ex_port = ex.lines.dchannels[0].take().unwrap().into_port().unwrap();
    let (utx, mut urx) = mpsc::unbounded_channel();
    let (ntx, mut nrx) = mpsc::unbounded_channel();
    let (user, ujoin) = task::spawn(task_config(q931::Role::User), gw_port, utx, Arc::new(()));
    let (net, njoin) = task::spawn(task_config(q931::Role::Network), ex_port, ntx, Arc::new(()));
    expect(&mut urx, "user LinkUp", |e| {
        (*e == Event::LinkUp).then_some(())
    })
    .await;
    expect(&mut nrx, "network LinkUp", |e| {
        (*e == Event::LinkUp).then_some(())
    })
    .await;
    let a = user
        .place_call(PlaceCall::speech("999", Some("2079460000")))
        .await
        .unwrap();
    let (b, ts) = expect(&mut nrx, "IncomingCall", |e| match e {
        Event::IncomingCall { id, channel, .. } => Some((*id, *channel)),
        _ => None,
    })
    .await;
    assert!((1..=31).contains(&ts) && ts != 16);
    net.alerting(b).await.unwrap();
    net.connect(b).await.unwrap();
    expect(&mut urx, "Connected", |e| {
        (*e == Event::Connected { id: a }).then_some(())
    })
    .await;
    expect(&mut nrx, "Connected", |e| {
        (*e == Event::Connected { id: b }).then_some(())
    })
    .await;
    user.shutdown().await;
    net.shutdown().await;
    ujoin.await.unwrap();
    njoin.await.unwrap();
    // The line carried it without losing alignment once it was gained:
    // SABME/UA, SETUP, CALL PROCEEDING, ALERTING, CONNECT, CONNECT ACK and
    // their RRs crossed with no FCS error.
    for (r, b) in [&gw, &ex].into_iter().zip(&before) {
        let s = r.lines.status[0].read();
        assert!(s.in_frame, "{s:?}");
        assert_alignment_kept(b, &s);
        assert!(
            s.counters.hdlc_rx.frames >= b.counters.hdlc_rx.frames + 3,
            "{s:?}"
        );
        assert_eq!(
            s.counters.hdlc_rx.fcs_errors, b.counters.hdlc_rx.fcs_errors,
            "{s:?}"
        );
        assert_eq!(s.dchannel_ring_overflows, 0);
    }
    let (_, port) = gw.stop();
    assert_eq!(port.events_dropped(), 0);
    ex.stop();
}

/// Two ports on 127.0.0.1 that were free a moment ago.
fn two_free_ports() -> (SocketAddr, SocketAddr) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

fn rtp_packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let ts = u32::from(seq) * 160;
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn two_engines_over_satop_carry_dchannel_frames_and_rtp_audio() {
    let (la, lb) = two_free_ports();
    let mut pa = SatopParams::new(la, lb);
    // One end must be the clock (two loop-timed ends have none).
    pa.timing = Timing::Internal;
    // Two media threads on a shared, loaded machine: a playout deep enough
    // for their scheduling (4 ms, the default, is for a quiet gateway).
    pa.playout_ms = 20;
    let mut pb = SatopParams::new(lb, la);
    pb.playout_ms = 20;
    let mut a = Running::start(
        "media-a",
        vec![LineSpanParams::new(span(1), LineDriverParams::Satop(pa))],
    );
    let mut b = Running::start(
        "media-b",
        vec![LineSpanParams::new(span(1), LineDriverParams::Satop(pb))],
    );
    wait_for("alignment on both ends", 10, || a.up() && b.up());
    let before = [a.lines.status[0].read(), b.lines.status[0].read()];

    // D-channel frames both ways through the rings.
    let mut ra = a.lines.dchannels[0].take().unwrap();
    let mut rb = b.lines.dchannels[0].take().unwrap();
    let mut buf = [0u8; 300];
    for i in 0..5u8 {
        assert!(ra.push_transmit(&[0x00, 0x01, i, 0xAA, 0x7E]));
        assert!(rb.push_transmit(&[0x02, 0x01, i, 0x55]));
    }
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    wait_for("D-channel frames both ways", 5, || {
        while let Some(n) = rb.pop_received(&mut buf) {
            got_b.push(buf[..n].to_vec());
        }
        while let Some(n) = ra.pop_received(&mut buf) {
            got_a.push(buf[..n].to_vec());
        }
        got_a.len() == 5 && got_b.len() == 5
    });
    for i in 0..5u8 {
        assert_eq!(got_b[usize::from(i)], [0x00, 0x01, i, 0xAA, 0x7E]);
        assert_eq!(got_a[usize::from(i)], [0x02, 0x01, i, 0x55]);
    }

    // B-channel audio: RTP into A's TS5, across the E1, out of B's TS5.
    let x = UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = UdpSocket::bind("127.0.0.1:0").unwrap();
    y.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let ch = ChannelId {
        span: 1,
        timeslot: 5,
    };
    for (r, to) in [
        (&mut a, x.local_addr().unwrap()),
        (&mut b, y.local_addr().unwrap()),
    ] {
        let mut p = ConnectParams::new(to, Codec::Pcma);
        p.dtmf_detect = false;
        r.ctl
            .commands
            .try_push(Command::Connect { ch, params: p })
            .unwrap();
    }
    let tone = [0x2Au8; 160];
    let mut marked = 0usize;
    let mut packets = 0;
    let until = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u16;
    let mut next_send = Instant::now();
    while marked < 1600 && Instant::now() < until {
        if Instant::now() >= next_send {
            x.send_to(&rtp_packet(seq, &tone), a.rtp_of(5)).unwrap();
            seq += 1;
            next_send += Duration::from_millis(20);
        }
        let mut pkt = [0u8; 1500];
        if let Ok((n, _)) = y.recv_from(&mut pkt) {
            packets += 1;
            marked += pkt[12..n].iter().filter(|&&o| o == 0x2A).count();
        }
    }
    assert!(
        marked >= 1600,
        "only {marked} octets of the tone in {packets} packets out of B"
    );
    // B latched on A's audio; nothing was rejected on either side.
    for (r, before) in [&mut a, &mut b].into_iter().zip(&before) {
        while let Some(e) = r.ctl.events.try_pop() {
            assert!(!matches!(e, MediaEvent::CommandRejected { .. }), "{e:?}");
        }
        let s = r.lines.status[0].read();
        assert!(s.in_frame && !s.driver_los, "{s:?}");
        assert_alignment_kept(before, &s);
    }
    let (_, pa) = a.stop();
    let sa = pa.satop(0).unwrap().stats();
    assert!(sa.packets_received > 100 && sa.packets_sent > 100, "{sa:?}");
    b.stop();
}
