//! libpri as a strict second opinion: tdmgw's D-channel task against
//! libpri (EuroISDN E1), each side in each role, over a SOCK_SEQPACKET
//! socketpair that carries one LAPD frame per message.
//!
//! libpri is GPL: it is only ever linked into the test peer
//! `tests/libpri/peer.c`, which this test builds at run time with `cc` from
//! PATH into a temporary directory. The test is skipped, saying so, only if
//! there is no C compiler or no libpri (`libpri-dev`); `.ci/run` installs
//! both, so it runs in CI.
//!
//! libpri runs on the wall clock, so this test does too; it waits for each
//! expected event for at most a few seconds and kills the peer at the end
//! (the peer also exits by itself after 120 s or on EOF on its stdin).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::timeout;

use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::port::FramePort;
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, CallId, ClearedBy, Event, PlaceCall, RestartClass};
use tdmgw::isdn::task::{self, DChannelHandle, SpanEvent, StopReason, TaskConfig};
use tdmgw::isdn::timers::{TimerId, TimerValues};

const WAIT: Duration = Duration::from_secs(5);

/// Builds the peer; `None` (with a message) when there is no compiler or
/// no libpri. Any other compile error fails the test.
fn build_peer(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libpri/peer.c");
    let exe = dir.join("peer");
    let out = match Command::new("cc")
        .arg("-Wall")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg("-lpri")
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: no C compiler `cc` on PATH; install gcc and libpri-dev");
            return None;
        }
        Err(e) => panic!("cannot run cc: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("libpri.h") || stderr.contains("-lpri") {
            eprintln!("SKIPPED: libpri is not installed (apt-get install libpri-dev):\n{stderr}");
            return None;
        }
        panic!("tests/libpri/peer.c does not compile:\n{stderr}");
    }
    Some(exe)
}

/// Every frame on the wire: (when, sent by us, frame).
type Capture = Arc<Mutex<Vec<(SystemTime, bool, Vec<u8>)>>>;

/// Our end of the socketpair as a frame port (frames without FCS); it
/// records every frame both ways for the tshark check.
struct SocketPort {
    fd: AsyncFd<OwnedFd>,
    capture: Capture,
    /// Cleared to cut the link: frames either way are then lost.
    up: Arc<AtomicBool>,
}

impl SocketPort {
    fn record(&self, sent: bool, frame: &[u8]) {
        let mut c = self.capture.lock().unwrap_or_else(|p| p.into_inner());
        c.push((SystemTime::now(), sent, frame.to_vec()));
    }
}

impl FramePort for SocketPort {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            let mut g = ready!(self.fd.poll_read_ready_mut(cx))?;
            match nix::unistd::read(g.get_inner(), buf) {
                Ok(0) => return Poll::Ready(Ok(None)),
                Ok(_) if !self.up.load(Ordering::Relaxed) => {}
                Ok(n) => {
                    self.record(false, &buf[..n]);
                    return Poll::Ready(Ok(Some(n)));
                }
                Err(Errno::EAGAIN) => g.clear_ready(),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        if !self.up.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut g = ready!(self.fd.poll_write_ready_mut(cx))?;
            match nix::unistd::write(g.get_inner(), frame) {
                Ok(_) => {
                    self.record(true, frame);
                    return Poll::Ready(Ok(()));
                }
                Err(Errno::EAGAIN) => g.clear_ready(),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

/// The libpri peer process: commands in, event lines out.
struct Libpri {
    child: Child,
    stdin: ChildStdin,
    lines: UnboundedReceiver<String>,
    seen: VecDeque<String>,
    all: Vec<String>,
    log: PathBuf,
}

impl Libpri {
    /// `timers`: libpri's T200 and T203 in ms, if not its defaults.
    fn start(
        exe: &Path,
        role: &str,
        timers: Option<(u64, u64)>,
        dir: &Path,
    ) -> (Libpri, SocketPort) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let log = dir.join(format!("libpri-{role}.log"));
        let theirs_raw = theirs.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg(role);
        if let Some((t200, t203)) = timers {
            cmd.arg(t200.to_string()).arg(t203.to_string());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if theirs_raw == 3 {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it.
                    if libc_fcntl_clear_cloexec(3) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if nix::libc::dup2(theirs_raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start the libpri peer");
        drop(theirs);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port = SocketPort {
            // SAFETY: the AsyncFd owns the socket for its whole life.
            fd: unsafe { AsyncFd::register(ours) }.expect("register socket"),
            capture: Capture::default(),
            up: Arc::new(AtomicBool::new(true)),
        };
        let lp = Libpri {
            child,
            stdin,
            lines,
            seen: VecDeque::new(),
            all: Vec::new(),
            log,
        };
        (lp, port)
    }

    fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("peer alive");
        self.stdin.flush().expect("peer alive");
    }

    /// The words after `keyword` of the next line that starts with it
    /// (other lines are kept for later).
    async fn expect(&mut self, keyword: &str) -> Vec<String> {
        let matches = |l: &str| l.split_whitespace().next() == Some(keyword);
        if let Some(i) = self.seen.iter().position(|l| matches(l)) {
            let l = self.seen.remove(i).expect("in range");
            return l.split_whitespace().skip(1).map(str::to_string).collect();
        }
        loop {
            let line = match timeout(WAIT, self.lines.recv()).await {
                Ok(Some(l)) => l,
                Ok(None) => panic!("libpri peer exited while we waited for `{keyword}`"),
                Err(_) => panic!(
                    "libpri sent no `{keyword}` within {WAIT:?}; pending {:?}",
                    self.seen
                ),
            };
            self.all.push(line.clone());
            if matches(&line) {
                return line
                    .split_whitespace()
                    .skip(1)
                    .map(str::to_string)
                    .collect();
            }
            self.seen.push_back(line);
        }
    }

    /// Every line libpri printed so far that reports an error.
    async fn errors(&mut self) -> Vec<String> {
        self.cmd("calls");
        self.expect("calls").await;
        self.all
            .iter()
            .filter(|l| l.starts_with("error"))
            .cloned()
            .collect()
    }
}

fn libc_fcntl_clear_cloexec(fd: i32) -> i32 {
    // SAFETY: fcntl on a descriptor we own, no pointers.
    unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) }
}

impl Drop for Libpri {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(400).collect();
            eprintln!("---- libpri peer stdout ----\n{}", self.all.join("\n"));
            eprintln!("---- libpri debug (last 150 lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Our task and its events.
struct Ours {
    h: DChannelHandle,
    rx: UnboundedReceiver<SpanEvent>,
    seen: VecDeque<Event>,
    join: tokio::task::JoinHandle<task::Stopped>,
}

impl Ours {
    fn start(role: q931::Role, timers: TimerValues, port: SocketPort) -> Ours {
        let l2 = match role {
            q931::Role::User => q921::Role::User,
            q931::Role::Network => q921::Role::Network,
        };
        let cfg = TaskConfig::new(
            LinkConfig::pri(1, l2, &timers, 3, 7),
            q931::Config {
                timers,
                ..q931::Config::e1(1, role)
            },
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let (h, join) = task::spawn(cfg, port, tx, Arc::new(()));
        Ours {
            h,
            rx,
            seen: VecDeque::new(),
            join,
        }
    }

    async fn expect<T>(&mut self, what: &str, f: impl Fn(&Event) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|e| f(e).is_some()) {
            let e = self.seen.remove(i).expect("in range");
            return f(&e).expect("matched");
        }
        loop {
            let e = match timeout(WAIT, self.rx.recv()).await {
                Ok(Some(e)) => e.event,
                Ok(None) => panic!("our task stopped while we waited for {what}"),
                Err(_) => panic!("we got no {what} within {WAIT:?}; seen {:?}", self.seen),
            };
            if let Some(v) = f(&e) {
                return v;
            }
            self.seen.push_back(e);
        }
    }

    async fn is(&mut self, want: Event) {
        let what = format!("{want:?}");
        self.expect(&what, |e| (*e == want).then_some(())).await
    }

    async fn released(&mut self, id: CallId) -> (Cause, ClearedBy) {
        self.expect("Released", |e| match e {
            Event::Released { id: i, cause, by } if *i == id => Some((*cause, *by)),
            _ => None,
        })
        .await
    }

    async fn restarted(&mut self) -> Vec<u8> {
        self.expect("ChannelsRestarted", |e| match e {
            Event::ChannelsRestarted { timeslots } => Some(timeslots.clone()),
            _ => None,
        })
        .await
    }
}

/// We call libpri; libpri answers; `we_clear` says who hangs up.
async fn our_call(ours: &mut Ours, lp: &mut Libpri, we_clear: bool) {
    let a = ours
        .h
        .place_call(PlaceCall::speech("999", Some("2079460000")))
        .await
        .expect("place call");
    let ring = lp.expect("ring").await;
    let (id, called) = (&ring[0], &ring[2]);
    assert_eq!(called, "999", "called number as libpri decoded it");
    lp.cmd(&format!("proceed {id}"));
    ours.expect("Proceeding", |e| {
        matches!(e, Event::Proceeding { id, .. } if *id == a).then_some(())
    })
    .await;
    lp.cmd(&format!("alert {id}"));
    ours.is(Event::Alerting { id: a }).await;
    lp.cmd(&format!("connect {id}"));
    ours.is(Event::Connected { id: a }).await;
    lp.expect("connect_ack").await;
    if we_clear {
        ours.h
            .disconnect(a, Cause::NORMAL_CLEARING)
            .await
            .expect("disconnect");
        let req = lp.expect("hangup_req").await;
        assert_eq!(req, [id.as_str(), "16"]);
        assert_eq!(ours.released(a).await.1, ClearedBy::Local);
    } else {
        lp.cmd(&format!("hangup {id} 16"));
        assert_eq!(
            ours.released(a).await,
            (Cause::NORMAL_CLEARING, ClearedBy::Remote)
        );
    }
    assert_eq!(lp.expect("null").await, [id.as_str()]);
}

/// libpri calls us on `channel` (0: any); we answer; `we_clear` says who
/// hangs up.
async fn their_call(ours: &mut Ours, lp: &mut Libpri, n: u32, channel: u8, we_clear: bool) {
    lp.cmd(&format!("call {n} 101 {channel}"));
    let (b, ts) = ours
        .expect("IncomingCall", |e| match e {
            Event::IncomingCall {
                id,
                called,
                channel,
                ..
            } => {
                assert_eq!(
                    called.as_ref().map(|c| c.digits.as_slice()),
                    Some(&b"101"[..])
                );
                Some((*id, *channel))
            }
            _ => None,
        })
        .await;
    if channel != 0 {
        assert_eq!(ts, channel);
    }
    ours.h.alerting(b).await.expect("alerting");
    lp.expect("ringing").await;
    ours.h.connect(b).await.expect("connect");
    lp.expect("answer").await;
    ours.is(Event::Connected { id: b }).await;
    if we_clear {
        ours.h
            .disconnect(b, Cause::NORMAL_CLEARING)
            .await
            .expect("disconnect");
        assert_eq!(
            lp.expect("hangup_req").await,
            [n.to_string(), "16".to_string()]
        );
        assert_eq!(ours.released(b).await.1, ClearedBy::Local);
    } else {
        lp.cmd(&format!("hangup {n} 16"));
        assert_eq!(
            ours.released(b).await,
            (Cause::NORMAL_CLEARING, ClearedBy::Remote)
        );
    }
    assert_eq!(lp.expect("null").await, [n.to_string()]);
}

async fn restarts(ours: &mut Ours, lp: &mut Libpri) {
    // libpri restarts one channel (class 0); we answer.
    lp.cmd("reset 5");
    ours.expect("RestartReceived", |e| match e {
        Event::RestartReceived { class, timeslots } => {
            assert_eq!(
                (*class, timeslots.as_slice()),
                (RestartClass::INDICATED_CHANNELS, &[5u8][..])
            );
            Some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(ours.restarted().await, [5]);
    assert_eq!(lp.expect("restart_ack").await, ["5"]);
    // We restart one channel; libpri answers.
    ours.h
        .restart(RestartClass::INDICATED_CHANNELS, &[7])
        .await
        .expect("restart");
    assert_eq!(lp.expect("restart").await, ["7"]);
    assert_eq!(ours.restarted().await, [7]);
    // We restart the interface and all interfaces (one message each);
    // libpri answers. (libpri 1.6 cannot send either: pri_restart is a
    // no-op there.)
    for class in [RestartClass::SINGLE_INTERFACE, RestartClass::ALL_INTERFACES] {
        ours.h.restart(class, &[]).await.expect("restart");
        assert_eq!(
            lp.expect("restart").await,
            ["-1"],
            "libpri saw the whole interface"
        );
        assert_eq!(ours.restarted().await.len(), 30);
    }
}

async fn against_libpri(our_role: q931::Role) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build_peer(dir.path()) else {
        return;
    };
    let (mut lp, port) = Libpri::start(&exe, their_role(our_role), None, dir.path());
    let capture = port.capture.clone();
    let mut ours = Ours::start(our_role, TimerValues::default(), port);
    ours.is(Event::LinkUp).await;
    lp.expect("up").await;

    our_call(&mut ours, &mut lp, true).await;
    our_call(&mut ours, &mut lp, false).await;
    // The network side must name the channel; the user side may leave
    // the choice to the network.
    let (first, second) = match our_role {
        q931::Role::User => (1, 2),
        q931::Role::Network => (0, 3),
    };
    their_call(&mut ours, &mut lp, 1, first, true).await;
    their_call(&mut ours, &mut lp, 2, second, false).await;
    restarts(&mut ours, &mut lp).await;

    let errors = lp.errors().await;
    assert!(errors.is_empty(), "libpri complained: {errors:?}");
    lp.cmd("calls");
    assert_eq!(lp.expect("calls").await, ["0"], "libpri calls left");
    let s = ours.h.status().borrow().clone();
    assert_eq!(s.calls, 0);
    assert!(s.channels.all_idle(), "{:?}", s.channels);
    assert_eq!(
        s.q931,
        q931::Counters::default(),
        "we found fault with libpri's messages"
    );
    assert_eq!(
        s.dchannel,
        Default::default(),
        "Q.921 errors or re-establishments"
    );
    assert_eq!(s.q921_state, q921::State::MultipleFrameEstablished);
    ours.h.shutdown().await;
    let stopped = ours.join.await.expect("task");
    assert!(matches!(stopped.reason, StopReason::Shutdown));
    assert_eq!(stopped.dchannel.q931().call_count(), 0);
    let frames = capture.lock().unwrap().clone();
    tshark_check(dir.path(), our_role == q931::Role::Network, &frames);
}

/// Both stacks' frames, as Wireshark's LAPD and Q.931 dissectors read
/// them: no malformed packet, no expert error or warning (skipped without tshark
/// outside CI, like the other tshark checks).
fn tshark_check(dir: &Path, we_are_network: bool, frames: &[(SystemTime, bool, Vec<u8>)]) {
    let path = dir.join("libpri.pcapng");
    let file = std::fs::File::create(&path).expect("pcap file");
    let mut w = tdmgw::ops::pcap::PcapngWriter::new(file).expect("pcapng");
    for (at, sent, frame) in frames {
        w.lapd(*at, *sent, we_are_network, frame).expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    let run = |args: &[&str]| {
        Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(args)
            .output()
    };
    let all = match run(&["-V"]) {
        Ok(o) => o,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED tshark check: tshark not runnable ({e}); .ci/run installs it");
            return;
        }
        Err(e) => panic!("tshark: {e}"),
    };
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let text = String::from_utf8_lossy(&all.stdout);
    assert!(
        text.contains("Message type: RESTART ACKNOWLEDGE ("),
        "Q.931 decoded"
    );
    for bad in ["Malformed", "Expert Info (Error", "[Expert Info (Warning"] {
        assert!(!text.contains(bad), "tshark flags {bad}:\n{text}");
    }
}

#[tokio::test]
async fn our_user_side_against_libpri_network_side() {
    against_libpri(q931::Role::User).await;
}

#[tokio::test]
async fn our_network_side_against_libpri_user_side() {
    against_libpri(q931::Role::Network).await;
}

fn their_role(our_role: q931::Role) -> &'static str {
    match our_role {
        q931::Role::User => "net",
        q931::Role::Network => "user",
    }
}

/// An answered call survives a D-channel failure on both stacks (T309,
/// EN 300 403 §5.9) and is reconciled by STATUS ENQUIRY / STATUS once the
/// link is back. Both stacks run T200 = 200 ms and T203 = 1 s so that the
/// failure is seen in about 2 s of wall-clock time.
async fn link_drop_against_libpri(our_role: q931::Role) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build_peer(dir.path()) else {
        return;
    };
    let (mut lp, port) = Libpri::start(&exe, their_role(our_role), Some((200, 1000)), dir.path());
    let up = port.up.clone();
    let capture = port.capture.clone();
    let mut timers = TimerValues::default();
    timers
        .set(TimerId::T200, Duration::from_millis(200))
        .unwrap();
    timers.set(TimerId::T203, Duration::from_secs(1)).unwrap();
    timers.set(TimerId::T322, Duration::from_secs(1)).unwrap();
    let mut ours = Ours::start(our_role, timers.clone(), port);
    ours.is(Event::LinkUp).await;
    lp.expect("up").await;

    let a = ours
        .h
        .place_call(PlaceCall::speech("999", None))
        .await
        .expect("place call");
    let id = lp.expect("ring").await[0].clone();
    lp.cmd(&format!("connect {id}"));
    ours.is(Event::Connected { id: a }).await;
    lp.expect("connect_ack").await;

    up.store(false, Ordering::Relaxed);
    ours.is(Event::LinkDown).await;
    lp.expect("down").await;
    up.store(true, Ordering::Relaxed);
    ours.is(Event::LinkUp).await;
    lp.expect("up").await;
    // Our STATUS ENQUIRY is answered with STATUS (call state 10): the call
    // is still up on both sides after T322 would have run out.
    tokio::time::sleep(timers.get(TimerId::T322) + Duration::from_millis(500)).await;
    assert_eq!(ours.h.status().borrow().calls, 1, "the call survived");
    assert!(
        !ours
            .seen
            .iter()
            .any(|e| matches!(e, Event::Released { .. }))
    );
    lp.cmd("calls");
    assert_eq!(lp.expect("calls").await, ["1"]);
    // Q.931 message type of an I-frame: address 2, control 2, then
    // discriminator, call reference length 2, call reference 2, type.
    let types: Vec<(bool, u8)> = capture
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, f)| f.len() > 8 && f[2] & 1 == 0 && f[4] == 0x08)
        .map(|(_, sent, f)| (*sent, f[8]))
        .collect();
    assert!(types.contains(&(true, 0x75)), "we sent STATUS ENQUIRY");
    assert!(types.contains(&(false, 0x7d)), "libpri answered STATUS");

    ours.h
        .disconnect(a, Cause::NORMAL_CLEARING)
        .await
        .expect("disconnect");
    lp.expect("hangup_req").await;
    assert_eq!(ours.released(a).await.1, ClearedBy::Local);
    assert_eq!(lp.expect("null").await, [id.as_str()]);
    let errors = lp.errors().await;
    assert!(errors.is_empty(), "libpri complained: {errors:?}");
    let s = ours.h.status().borrow().clone();
    assert_eq!((s.calls, s.channels.all_idle()), (0, true));
    assert_eq!(
        s.q931,
        q931::Counters::default(),
        "we found fault with libpri's messages"
    );
}

#[tokio::test]
async fn our_user_side_keeps_a_call_through_a_link_drop_with_libpri() {
    link_drop_against_libpri(q931::Role::User).await;
}

#[tokio::test]
async fn our_network_side_keeps_a_call_through_a_link_drop_with_libpri() {
    link_drop_against_libpri(q931::Role::Network).await;
}
