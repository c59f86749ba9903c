//! Issue 8 §5 against the real daemon: `tdmgw run` as a process with a
//! temp config (one E1 span over SAToP on 127.0.0.1, SIP and RTP on
//! loopback, the management listener on port 0, the admin socket in the
//! temp dir), facing `tdmgw sim exchange` on the span and `tdmgw sim core`
//! as its core peer.
//!
//! - A live scrape of `/metrics` passes `promtool check metrics`, before
//!   and after a call, and carries the call's SIP, RTP and call counters.
//! - `tdmgw status` and `tdmgw status --json` show the span, its channel
//!   grid (the call's channel busy while it lasts), calls and the peer.
//! - `tdmgw trace` taken during a call decodes with tshark and holds the
//!   call's D-channel frames (SETUP, CONNECT, DISCONNECT), its INVITE and
//!   RTP.
//! - `/readyz` goes to 503 naming the span's alarm when the span's far end
//!   goes away (the SAToP flow stops: the line is in alarm, as on a cut
//!   pseudowire) and back to 200 when it returns. Through a SAToP relay
//!   that corrupts, then drops, the gateway's packets, the exchange reports
//!   the errors back (E bits, then RAI): far-end errored seconds, then
//!   far-end unavailable time in `tdmgw status` and `/metrics`. `/readyz`
//!   goes to 503 naming the core
//!   peers when the only core peer stops answering OPTIONS, and back to
//!   200 when it answers again.
//!
//! - A gateway that cannot start (its serial span's tty does not exist)
//!   leaves the daemon up but not ready: `/readyz` 503 naming the error,
//!   `/livez` 200 (every loop that runs makes progress), the state in
//!   `/metrics` and `tdmgw status`; SIGTERM still stops it cleanly.
//!
//! Every process is killed when its guard is dropped, so a failing test
//! leaves nothing running. Waits are hang guards only (nothing is timed).
//! The two tests take turns (one rig at a time) so that a loaded 2-core
//! box keeps both E1 ends in real time.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

mod e2e_common;
use e2e_common::{
    Proc, free_rtp_base, free_udp_port, http_get_any, status_of, status_text_of, wait_for,
};

/// Hang guard for anything the daemon should reach by itself.
const HANG: Duration = Duration::from_secs(90);

/// One rig at a time (module doc).
static ONE_RIG: Mutex<()> = Mutex::new(());

// ------------------------------------------------------------------- rig

/// The daemon under test and the addresses its peers use.
struct Rig {
    gateway: Proc,
    admin: PathBuf,
    management: SocketAddr,
    sip: SocketAddr,
    satop_gateway: SocketAddr,
    satop_exchange: SocketAddr,
    core: SocketAddr,
    /// Last: removed after the gateway is killed.
    dir: tempfile::TempDir,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (satop_gateway, satop_exchange) = (addr(free_udp_port()), addr(free_udp_port()));
        let (sip, core) = (addr(free_udp_port()), addr(free_udp_port()));
        let admin = dir.path().join("admin.sock");
        let board = format!(
            r#"name = "ops-live"
description = "one E1 over SAToP on loopback"
[media]
realtime_priority = 0
lock_memory = false
[[span]]
id = 1
driver = "satop"
local = "{satop_gateway}"
remote = "{satop_exchange}"
playout_ms = 16
channels = 30
crc4 = true
clock_priority = 1
"#
        );
        let site = format!(
            r#"board = "board.toml"
[management]
listen = "127.0.0.1:0"
admin_socket = "{admin}"
[log]
level = "info"
[lifecycle]
drain_timeout = "2s"
[media]
rtp_address = "127.0.0.1"
rtp_port_base = {rtp}
[sip]
listen = [{{ transport = "udp", address = "{sip}" }}]
timers = {{ T1 = "100ms" }}
[[peer_group]]
name = "core"
options_interval = "1s"
down_after = 1
up_after = 1
[[peer_group.peer]]
address = "{core}"
[[route]]
called = "999"
peer_group = "core"
[[span]]
id = 1
role = "user"
switchtype = "euro-isdn"
"#,
            admin = admin.display(),
            rtp = free_rtp_base(),
        );
        std::fs::write(dir.path().join("board.toml"), board).unwrap();
        let site_path = dir.path().join("tdmgw.toml");
        std::fs::write(&site_path, site).unwrap();
        let gateway = Proc::spawn(
            "gateway",
            dir.path(),
            &[
                "run".into(),
                "--config".into(),
                site_path.display().to_string(),
            ],
            &[],
        );
        let mut rig = Rig {
            gateway,
            admin,
            management: addr(0),
            sip,
            satop_gateway,
            satop_exchange,
            core,
            dir,
        };
        let status = wait_for(HANG, || rig.try_status())
            .unwrap_or_else(|| panic!("no admin socket\n{}", rig.gateway.tail()));
        rig.management = status["daemon"]["management"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no management address in {status}"));
        rig
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The simulated exchange on the span: network side, answers and
    /// echoes incoming calls, places none; runs until dropped.
    fn exchange(&self, name: &str) -> Proc {
        self.exchange_at(name, self.satop_exchange, self.satop_gateway)
    }

    /// [`Rig::exchange`] through `relay`: the gateway's packets as the
    /// relay passes them.
    fn exchange_via(&self, name: &str, relay: &Relay) -> Proc {
        self.exchange_at(name, relay.exchange, relay.towards_exchange)
    }

    fn exchange_at(&self, name: &str, local: SocketAddr, remote: SocketAddr) -> Proc {
        Proc::spawn(
            name,
            self.path(),
            &[
                "sim".into(),
                "exchange".into(),
                "--satop-local".into(),
                local.to_string(),
                "--satop-remote".into(),
                remote.to_string(),
                "--calls".into(),
                "0".into(),
                "--answer".into(),
                "--echo".into(),
                "--expect-incoming".into(),
                "1000".into(),
                "--seconds".into(),
                "600".into(),
                "--json".into(),
            ],
            &[],
        )
    }

    /// The answering core, the gateway's only peer; runs until dropped.
    fn core(&self, name: &str) -> Proc {
        Proc::spawn(
            name,
            self.path(),
            &[
                "sim".into(),
                "core".into(),
                "--listen".into(),
                self.core.to_string(),
                "--ring".into(),
                "--echo".into(),
                "--seconds".into(),
                "600".into(),
            ],
            &[],
        )
    }

    fn try_status(&self) -> Option<Value> {
        status_of(&self.admin).ok()
    }

    fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|| panic!("tdmgw status --json failed\n{}", self.gateway.tail()))
    }

    fn status_text(&self) -> String {
        status_text_of(&self.admin).unwrap_or_else(|e| panic!("tdmgw status: {e}"))
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get_any(self.management, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.gateway.tail()))
    }

    /// Waits until `/readyz` answers `code` with a body containing `text`.
    fn wait_readyz(&self, code: u16, text: &str, why: &str, others: &[&Proc]) -> String {
        let mut last = (0, String::new());
        let got = wait_for(HANG, || {
            last = self.get("/readyz");
            (last.0 == code && last.1.contains(text)).then(|| last.1.clone())
        });
        got.unwrap_or_else(|| {
            let tails: Vec<String> = others.iter().map(|p| p.tail()).collect();
            panic!(
                "{why}: /readyz never answered {code} with {text:?}; last {} {}\n{}\n{}",
                last.0,
                last.1,
                self.gateway.tail(),
                tails.join("\n")
            )
        })
    }
}

/// What a [`Relay`] does to the gateway's packets towards the exchange:
/// pass them.
const PASS: u8 = 0;
/// One bit of line data flipped in every 8th packet: CRC-4 errors at the
/// exchange, which it reports back in its E bits (FEBE).
const CORRUPT: u8 = 1;
/// None pass: the exchange is in LOS and sends RAI back.
const DROP: u8 = 2;

/// A SAToP relay in the middle of the span: the gateway's remote address
/// (its `remote`, once the exchange there is gone) on one side; on the
/// other a socket the exchange takes for the gateway. The exchange's
/// packets pass untouched; the gateway's as `mode` says. Stops when dropped.
struct Relay {
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The relay's socket towards the exchange (the exchange's remote).
    towards_exchange: SocketAddr,
    /// Where the exchange listens.
    exchange: SocketAddr,
}

impl Relay {
    fn start(rig: &Rig) -> Relay {
        use std::net::UdpSocket;
        use std::sync::atomic::Ordering;
        // The exchange that had the address may still be going away.
        let gw_side = wait_for(HANG, || UdpSocket::bind(rig.satop_exchange).ok())
            .expect("the gateway's remote address is free");
        let ex_side = UdpSocket::bind("127.0.0.1:0").unwrap();
        let exchange = addr(free_udp_port());
        let towards_exchange = ex_side.local_addr().unwrap();
        let gateway = rig.satop_gateway;
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PASS));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // One thread per direction, each blocked in recv (woken every
        // 50 ms to look at `stop`): no added latency on a busy box.
        let forward =
            move |from_sock: UdpSocket,
                  to_sock: UdpSocket,
                  expect: SocketAddr,
                  to: SocketAddr,
                  m: Option<std::sync::Arc<std::sync::atomic::AtomicU8>>,
                  st: std::sync::Arc<std::sync::atomic::AtomicBool>| {
                from_sock
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    let mut count = 0u64;
                    while !st.load(Ordering::Relaxed) {
                        let Ok((n, from)) = from_sock.recv_from(&mut buf) else {
                            continue;
                        };
                        if from != expect || n < 5 {
                            continue;
                        }
                        count += 1;
                        match m.as_ref().map_or(PASS, |m| m.load(Ordering::Relaxed)) {
                            DROP => continue,
                            CORRUPT if count.is_multiple_of(8) => buf[n - 1] ^= 0x10,
                            _ => {}
                        }
                        let _ = to_sock.send_to(&buf[..n], to);
                    }
                })
            };
        let threads = vec![
            forward(
                gw_side.try_clone().unwrap(),
                ex_side.try_clone().unwrap(),
                gateway,
                exchange,
                Some(mode.clone()),
                stop.clone(),
            ),
            forward(ex_side, gw_side, exchange, gateway, None, stop.clone()),
        ];
        Relay {
            mode,
            stop,
            threads,
            towards_exchange,
            exchange,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `promtool check metrics` on a scrape; `None` when promtool is missing.
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    c.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = c.wait_with_output().ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn assert_promtool_clean(text: &str) {
    match promtool(text) {
        Some((ok, msg)) => assert!(ok && msg.trim().is_empty(), "promtool:\n{msg}"),
        None => eprintln!("SKIPPED promtool: not installed; .ci/run installs prometheus"),
    }
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `tshark -r file` with `args`; `None` when tshark is missing.
fn tshark(file: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_RIG.lock().unwrap_or_else(|p| p.into_inner())
}

// ----------------------------------------------------------------- tests

#[test]
fn metrics_status_and_a_trace_of_a_call() {
    let _one = lock();
    let rig = Rig::start();
    let exchange = rig.exchange("exchange");
    let core = rig.core("core");
    rig.wait_readyz(200, "", "span, D-channel and peer up", &[&exchange, &core]);

    // A live scrape passes promtool.
    let (code, metrics) = rig.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("tdmgw_build_info"), "{metrics}");
    assert!(metrics.contains("tdmgw_span_alarm{span=\"1\""), "{metrics}");
    assert_promtool_clean(&metrics);

    // Status: the span, its grid, the calls section, the peer.
    let text = rig.status_text();
    for want in [
        "span 1",
        "D-channel up",
        "ts  1-15",
        "calls in progress",
        "peer core",
        "UP",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    let s = rig.status();
    assert_eq!(s["spans"][0]["span"], 1, "{s}");
    assert_eq!(s["spans"][0]["dchannel"]["up"], true, "{s}");
    assert_eq!(s["channels"][0]["idle"], 30, "{s}");
    assert!(s["calls"].is_array(), "{s}");
    assert_eq!(s["peers"][0]["state"], "up", "{s}");
    assert_eq!(s["peers"][0]["address"], rig.core.to_string(), "{s}");

    // A trace of span 1 while the core calls the exchange.
    let pcap = rig.path().join("call.pcapng");
    let mut trace = Proc::spawn(
        "trace",
        rig.path(),
        &[
            "trace".into(),
            "--socket".into(),
            rig.admin.display().to_string(),
            "--span".into(),
            "1".into(),
            "--seconds".into(),
            "12".into(),
            "--out".into(),
            pcap.display().to_string(),
        ],
        &[],
    );
    wait_for(HANG, || {
        (rig.status()["traces"]["running"].as_u64() == Some(1)).then_some(())
    })
    .unwrap_or_else(|| panic!("the trace never started\n{}", trace.tail()));
    let mut caller = Proc::spawn(
        "caller",
        rig.path(),
        &[
            "sim".into(),
            "core".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--call".into(),
            rig.sip.to_string(),
            "--calls".into(),
            "1".into(),
            "--hold".into(),
            "3".into(),
            "--called".into(),
            "01632960999".into(),
            "--expect".into(),
            "answer".into(),
            "--seconds".into(),
            "60".into(),
        ],
        &[],
    );
    // While the call lasts, the status shows its channel busy.
    let busy = wait_for(HANG, || {
        let s = rig.status();
        (s["channels"][0]["busy"].as_u64() == Some(1)).then_some(s)
    })
    .unwrap_or_else(|| panic!("no busy channel\n{}\n{}", caller.tail(), exchange.tail()));
    assert!(
        busy["channels"][0]["grid"]
            .as_str()
            .is_some_and(|g| g.contains('B')),
        "{busy}"
    );
    let text = rig.status_text();
    assert!(
        text.lines()
            .any(|l| l.contains("ts  1-15") && l.contains('B')),
        "the grid shows the busy channel:\n{text}"
    );
    let answered = caller
        .wait(HANG)
        .unwrap_or_else(|e| panic!("{e}"))
        .success();
    assert!(answered, "the call failed\n{}", caller.tail());
    let traced = trace.wait(HANG).unwrap_or_else(|e| panic!("{e}")).success();
    assert!(traced, "tdmgw trace failed\n{}", trace.tail());

    // The trace decodes: D-channel, SIP and RTP of the call.
    let Some(info) = tshark(&pcap, &["-T", "fields", "-e", "_ws.col.Info"]) else {
        eprintln!("SKIPPED tshark checks: not installed; .ci/run installs it");
        return;
    };
    for want in ["SETUP", "CONNECT", "DISCONNECT", "RELEASE"] {
        assert!(info.contains(want), "no {want} in the trace:\n{info}");
    }
    let invites = tshark(&pcap, &["-Y", "sip.Method == \"INVITE\""]).unwrap();
    assert!(
        !invites.trim().is_empty(),
        "no INVITE in the trace:\n{info}"
    );
    let rtp = tshark(&pcap, &["-Y", "rtp"]).unwrap();
    assert!(
        rtp.lines().count() >= 50,
        "{} RTP packets in the trace",
        rtp.lines().count()
    );
    let dirs = tshark(
        &pcap,
        &["-Y", "q931", "-T", "fields", "-e", "lapd.direction"],
    )
    .unwrap();
    assert!(
        dirs.lines().any(|l| l == "0") && dirs.lines().any(|l| l == "1"),
        "Q.931 both ways: {dirs}"
    );
    let malformed = tshark(&pcap, &["-Y", "_ws.malformed"]);
    assert_eq!(malformed.as_deref().map(str::trim), Some(""), "{info}");

    // The scrape after the call: still clean, and the call's counters.
    let (_, metrics) = rig.get("/metrics");
    assert_promtool_clean(&metrics);
    let invites_in = sample(
        &metrics,
        "tdmgw_sip_requests_total{direction=\"in\",method=\"INVITE\"}",
    );
    assert!(invites_in >= Some(1.0), "{metrics}");
    assert!(
        sample(&metrics, "tdmgw_rtp_packets_received_total{span=\"1\"}") >= Some(50.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "tdmgw_calls_ended_total{direction=\"core_to_exchange\",result=\"answered\""
        ) >= Some(1.0),
        "{metrics}"
    );
    for family in [
        "tdmgw_rtp_packets_lost_total{span=\"1\"}",
        "tdmgw_jitter_buffer_depth_max_seconds{span=\"1\"}",
        "tdmgw_media_loop_duration_seconds_count{thread=\"media-0\"}",
        "tdmgw_sip_peer_state_duration_seconds{group=\"core\"",
    ] {
        assert!(sample(&metrics, family).is_some(), "no {family}");
    }
    assert!(
        sample(
            &metrics,
            "tdmgw_media_loop_duration_seconds_count{thread=\"media-0\"}"
        ) > Some(0.0),
        "the media loop's turns are recorded"
    );
}

#[test]
fn readyz_follows_span_alarm_and_core_peers() {
    let _one = lock();
    let rig = Rig::start();
    let exchange = rig.exchange("exchange");
    let core = rig.core("core");
    rig.wait_readyz(200, "", "span, D-channel and peer up", &[&exchange, &core]);

    // The span's far end goes away: the line is in alarm.
    drop(exchange);
    let body = rig.wait_readyz(503, "FAIL span 1 alarms", "span in alarm", &[&core]);
    assert!(body.contains("ok   core peers"), "{body}");
    let s = rig.status();
    assert_ne!(s["spans"][0]["alarms"], serde_json::json!([]), "{s}");
    let exchange = rig.exchange("exchange-again");
    rig.wait_readyz(
        200,
        "ok   span 1 alarms",
        "alarm cleared",
        &[&exchange, &core],
    );

    // The far end reports errors in what we send it, over a line that is
    // clean towards us: far-end G.826 seconds in the status and the
    // metrics. Through a relay that corrupts our packets, the exchange
    // sees CRC-4 errors and sends E bits back (far-end errored seconds);
    // when it drops them all, the exchange is in LOS and sends RAI (far-end
    // severely errored seconds, ten of them far-end unavailable time).
    let far = |key: &str| {
        let s = rig.status();
        s["spans"][0]["counters"][key].as_u64().unwrap_or(0)
    };
    // An exchange's start-up may cost a far-end ES (E bits before its
    // CRC-4 multiframe alignment): the corruption must add more.
    let before = far("far_es");
    drop(exchange);
    let relay = Relay::start(&rig);
    relay.set(CORRUPT);
    let exchange = rig.exchange_via("exchange-relayed", &relay);
    wait_for(HANG, || (far("far_es") >= before + 3).then_some(())).unwrap_or_else(|| {
        panic!(
            "no far-end errored second from the exchange's E bits: {}\n{}",
            rig.status()["spans"],
            exchange.tail()
        )
    });
    let (_, metrics) = rig.get("/metrics");
    assert!(
        sample(
            &metrics,
            "tdmgw_span_far_end_errored_seconds_total{span=\"1\"}"
        ) > Some(0.0),
        "{metrics}"
    );
    relay.set(DROP);
    let s = wait_for(HANG, || {
        let s = rig.status();
        (s["spans"][0]["far_unavailable"] == true).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the exchange's RAI never made far-end unavailable time: {}\n{}\n{}",
            rig.status()["spans"],
            rig.gateway.tail(),
            exchange.tail()
        )
    });
    let span = &s["spans"][0];
    assert!(span["counters"]["far_uas"].as_u64() >= Some(10), "{span}");
    assert!(
        span["counters"]["far_es"].as_u64() >= Some(before + 3),
        "{span}"
    );
    assert_eq!(
        span["unavailable"], false,
        "our receive side is clean: {span}"
    );
    let (_, metrics) = rig.get("/metrics");
    assert_eq!(
        sample(&metrics, "tdmgw_span_far_end_unavailable{span=\"1\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "tdmgw_span_far_end_unavailable_seconds_total{span=\"1\"}"
        ) >= Some(10.0),
        "{metrics}"
    );
    assert_promtool_clean(&metrics);
    let text = rig.status_text();
    assert!(
        text.lines()
            .any(|l| l.contains("far end (its E bits, RAI)") && l.contains("UNAVAILABLE")),
        "{text}"
    );
    drop(exchange);
    drop(relay);
    let exchange = rig.exchange("exchange-direct");
    rig.wait_readyz(
        200,
        "ok   span 1 alarms",
        "direct again",
        &[&exchange, &core],
    );

    // The only core peer stops answering OPTIONS.
    drop(core);
    let body = rig.wait_readyz(503, "FAIL core peers core", "peer down", &[&exchange]);
    assert!(body.contains("ok   span 1 alarms"), "{body}");
    assert_eq!(rig.status()["peers"][0]["state"], "down");
    let core = rig.core("core-again");
    rig.wait_readyz(
        200,
        "ok   core peers core",
        "peer back",
        &[&exchange, &core],
    );
}

#[test]
fn readyz_fails_naming_the_error_when_the_gateway_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.sock");
    let tty = dir.path().join("no-such-tty");
    let board = format!(
        r#"name = "missing-card"
description = "one E1 on a serial tty that is not there"
[media]
realtime_priority = 0
lock_memory = false
[[span]]
id = 1
driver = "serial"
device = "{tty}"
baud = 2048000
"#,
        tty = tty.display()
    );
    let site = format!(
        r#"board = "board.toml"
[management]
listen = "127.0.0.1:0"
admin_socket = "{admin}"
[lifecycle]
drain_timeout = "1s"
[media]
rtp_address = "127.0.0.1"
rtp_port_base = {rtp}
[sip]
listen = [{{ transport = "udp", address = "127.0.0.1:0" }}]
[[peer_group]]
name = "core"
[[peer_group.peer]]
address = "127.0.0.1:9"
[[route]]
called = "999"
peer_group = "core"
[[span]]
id = 1
role = "user"
"#,
        admin = admin.display(),
        rtp = free_rtp_base(),
    );
    std::fs::write(dir.path().join("board.toml"), board).unwrap();
    let site_path = dir.path().join("tdmgw.toml");
    std::fs::write(&site_path, site).unwrap();
    let mut gateway = Proc::spawn(
        "gateway",
        dir.path(),
        &[
            "run".into(),
            "--config".into(),
            site_path.display().to_string(),
        ],
        &[],
    );
    // The admin socket answers once the start-up is over either way.
    let status = wait_for(HANG, || {
        status_of(&admin)
            .ok()
            .filter(|s| s["gateway"]["state"] != "starting")
    })
    .unwrap_or_else(|| panic!("no status from the daemon\n{}", gateway.tail()));
    assert_eq!(status["gateway"]["state"], "failed", "{status}");
    let error = status["gateway"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("span 1") && error.contains("no-such-tty"),
        "{status}"
    );
    let management: SocketAddr = status["daemon"]["management"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no management address in {status}"));
    let get = |path: &str| {
        http_get_any(management, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", gateway.tail()))
    };

    // Not ready, saying why; alive, since its loops run.
    let (code, body) = get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!("FAIL gateway: failed to start: {error}")),
        "{body}"
    );
    assert!(body.contains("ok   accepting calls"), "{body}");
    let (code, body) = get("/livez");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, metrics) = get("/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&metrics, "tdmgw_gateway_state{state=\"failed\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "tdmgw_gateway_state{state=\"running\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert_promtool_clean(&metrics);
    let text = status_text_of(&admin).unwrap_or_else(|e| panic!("tdmgw status: {e}"));
    assert!(
        text.contains(&format!("gateway: FAILED to start: {error}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("  FAIL gateway: failed to start: {error}")),
        "{text}"
    );

    // The daemon stayed up for the NOC, and stops cleanly when asked.
    assert!(gateway.try_status().is_none(), "{}", gateway.tail());
    gateway.signal(Signal::SIGTERM);
    let st = gateway.wait(HANG).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.success(), "exit {st}\n{}", gateway.tail());
}
