//! Process-level lifecycle: the real binary under a fake systemd. The test binds
//! the `NOTIFY_SOCKET` datagram socket, sets `WATCHDOG_USEC=1000000` and checks
//! READY=1, watchdog pings every ~0.5 s, reload on SIGHUP, STOPPING=1 and exit 0
//! on SIGTERM; and that pings stop when a loop stalls (fault injection).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct FakeSystemd {
    _dir: tempfile::TempDir,
    sock: UnixDatagram,
    sock_path: PathBuf,
    config: PathBuf,
}

/// A message from the daemon and when it arrived.
struct Note {
    at: Instant,
    text: String,
}

impl FakeSystemd {
    fn new(extra_config: &str) -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let sock_path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let config = dir.path().join("tdmgw.toml");
        std::fs::write(
            &config,
            format!(
                "board = \"builtin:sim\"\n[management]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"{}\"\n[lifecycle]\ndrain_timeout = \"2s\"\n[[span]]\nid = 1\nrole = \"user\"\n{extra_config}",
                dir.path().join("admin.sock").display()
            ),
        )
        .unwrap();
        FakeSystemd {
            _dir: dir,
            sock,
            sock_path,
            config,
        }
    }

    fn start(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_tdmgw"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("NOTIFY_SOCKET", &self.sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Collects notifications for `d` (or until `stop` matches one).
    fn collect(&self, d: Duration, stop: impl Fn(&str) -> bool) -> Vec<Note> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = stop(&text);
                out.push(Note {
                    at: Instant::now(),
                    text,
                });
                if done {
                    break;
                }
            }
        }
        out
    }

    fn config_path(&self) -> &Path {
        &self.config
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("tdmgw did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pings(notes: &[Note]) -> Vec<Instant> {
    notes
        .iter()
        .filter(|n| n.text == "WATCHDOG=1")
        .map(|n| n.at)
        .collect()
}

#[test]
fn ready_pings_reload_and_clean_stop() {
    let sd = FakeSystemd::new("");
    let mut child = sd.start();
    let start = sd.collect(Duration::from_secs(20), |t| t == "READY=1");
    assert!(
        start.iter().any(|n| n.text == "READY=1"),
        "no READY=1 within 20 s"
    );

    let running = sd.collect(Duration::from_millis(2600), |_| false);
    let p = pings(&running);
    // A 1 s WATCHDOG_USEC means a ping every 0.5 s: about 5 in 2.6 s.
    assert!(p.len() >= 3, "only {} pings in 2.6 s", p.len());
    for w in p.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(250) && gap <= Duration::from_millis(900),
            "ping gap {gap:?} is not about 0.5 s"
        );
    }

    // SIGHUP with a valid config: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    signal(&child, Signal::SIGHUP);
    let notes = sd.collect(Duration::from_secs(5), |t| t == "READY=1");
    let reloading = notes
        .iter()
        .find(|n| n.text.starts_with("RELOADING=1"))
        .expect("no RELOADING=1");
    assert!(
        reloading.text.contains("\nMONOTONIC_USEC="),
        "{}",
        reloading.text
    );
    assert!(notes.iter().any(|n| n.text == "READY=1"));

    // SIGHUP with a broken config: it keeps running on the old one and says so.
    std::fs::write(sd.config_path(), "board = \"builtin:sim\"\nbogus = 1\n").unwrap();
    // (the broken file is never applied, so the daemon keeps its listeners)
    signal(&child, Signal::SIGHUP);
    let notes = sd.collect(Duration::from_secs(5), |t| t == "READY=1");
    assert!(
        notes
            .iter()
            .any(|n| n.text.starts_with("STATUS=") && n.text.contains("reload rejected")),
        "no STATUS about the rejected reload"
    );
    assert!(child.try_wait().unwrap().is_none(), "died on a bad reload");
    let after = sd.collect(Duration::from_millis(1200), |_| false);
    assert!(
        !pings(&after).is_empty(),
        "pings stopped after a rejected reload"
    );

    signal(&child, Signal::SIGTERM);
    let notes = sd.collect(Duration::from_secs(5), |t| t == "STOPPING=1");
    assert!(
        notes.iter().any(|n| n.text == "STOPPING=1"),
        "no STOPPING=1"
    );
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert!(st.success(), "exit status {st}");
}

#[test]
fn pings_stop_when_a_loop_stalls() {
    let sd = FakeSystemd::new(
        "[debug]\nallow_fault_injection = true\nstall_loop = \"control\"\nstall_after = \"1500ms\"\n",
    );
    let mut child = sd.start();
    let start = sd.collect(Duration::from_secs(20), |t| t == "READY=1");
    assert!(start.iter().any(|n| n.text == "READY=1"));
    let ready_at = Instant::now();

    let notes = sd.collect(Duration::from_secs(4), |_| false);
    let p = pings(&notes);
    assert!(!p.is_empty(), "no pings before the stall");
    // The stall starts 1.5 s after start-up; give the supervisor one period
    // to notice. No ping may come in the last 1.5 s of the 4 s window.
    let quiet_from = ready_at + Duration::from_millis(2500);
    let late: Vec<_> = p.iter().filter(|&&t| t > quiet_from).collect();
    assert!(
        late.is_empty(),
        "{} ping(s) after the loop stalled",
        late.len()
    );
    assert!(
        notes
            .iter()
            .any(|n| n.text.starts_with("STATUS=watchdog withheld") && n.text.contains("control")),
        "no STATUS naming the stuck loop"
    );

    signal(&child, Signal::SIGTERM);
    let st = wait_exit(&mut child, Duration::from_secs(10));
    assert!(st.success(), "exit status {st}");
}

#[test]
fn missing_config_is_one_line_pointing_at_the_demo() {
    let out = Command::new(env!("CARGO_BIN_EXE_tdmgw"))
        .args(["run", "--config", "/nonexistent/tdmgw.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tdmgw demo") && err.contains("examples/"),
        "{err}"
    );
}

#[test]
fn version_names_the_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_tdmgw"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("tdmgw 0.") && v.contains("(git "), "{v}");
}
