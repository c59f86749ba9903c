//! Operations against a running daemon: /metrics passes `promtool check
//! metrics`, /livez and /readyz answer honestly, `tdmgw status` (text and
//! JSON) and `tdmgw drain` work over the admin socket, `tdmgw trace` writes a
//! pcapng that tshark opens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tdmgw");

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tdmgw.toml");
        std::fs::write(
            &config,
            format!(
                "board = \"builtin:sim\"\n[management]\nlisten = \"127.0.0.1:0\"\nadmin_socket = \"{}\"\n[lifecycle]\ndrain_timeout = \"1s\"\n[[span]]\nid = 1\nrole = \"user\"\n",
                dir.path().join("admin.sock").display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, dir };
        let end = Instant::now() + Duration::from_secs(20);
        while d.status_json().is_none() {
            assert!(Instant::now() < end, "admin socket never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    fn status_json(&self) -> Option<serde_json::Value> {
        let out = Command::new(BIN)
            .args(["status", "--json", "--socket"])
            .arg(self.socket())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn management(&self) -> String {
        self.status_json().unwrap()["daemon"]["management"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

/// A minimal HTTP/1.0 GET: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

fn promtool(text: &str) -> Option<(bool, String)> {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn metrics_health_status_and_drain() {
    let d = Daemon::start();
    let addr = d.management();

    let (code, metrics) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "tdmgw_build_info{version=",
        "tdmgw_process_resident_memory_bytes ",
        "tdmgw_watchdog_pings_sent_total ",
        "tdmgw_watchdog_pings_withheld_total ",
        "tdmgw_draining 0",
    ] {
        assert!(metrics.contains(name), "no {name} in:\n{metrics}");
    }
    match promtool(&metrics) {
        Some((ok, text)) => assert!(ok && text.trim().is_empty(), "promtool:\n{text}\n{metrics}"),
        None => eprintln!("SKIPPED promtool: not installed; .ci/run installs prometheus"),
    }

    assert_eq!(get(&addr, "/livez").0, 200);
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&addr, "/nope").0, 404);

    let out = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(d.socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("accepting calls") && text.contains("loops: ") && text.contains("control"),
        "{text}"
    );

    let out = Command::new(BIN)
        .args(["drain", "--wait", "5", "--socket"])
        .arg(d.socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("drained"), "{text}");
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("FAIL accepting calls: draining"), "{body}");
    assert!(get(&addr, "/metrics").1.contains("tdmgw_draining 1"));
    assert_eq!(d.status_json().unwrap()["lifecycle"]["draining"], true);
}

#[test]
fn trace_writes_a_pcapng_tshark_reads() {
    let d = Daemon::start();
    let out_file = d.dir.path().join("t.pcapng");
    let out = Command::new(BIN)
        .args(["trace", "--span", "1", "--seconds", "1", "--out"])
        .arg(&out_file)
        .arg("--socket")
        .arg(d.socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&out_file).unwrap();
    assert_eq!(&data[..4], &[0x0A, 0x0D, 0x0D, 0x0A], "not pcapng");
    check_with_tshark(&out_file);
}

fn check_with_tshark(path: &Path) {
    match Command::new("tshark").arg("-r").arg(path).output() {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => eprintln!("SKIPPED tshark: not installed; .ci/run installs it"),
    }
}
