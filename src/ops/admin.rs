//! The admin socket (`/run/tdmgw/admin.sock`, mode 0660) behind `tdmgw status`,
//! `tdmgw drain` and `tdmgw trace`.
//!
//! Protocol: the client sends one JSON line, `{"cmd":"status"}`,
//! `{"cmd":"drain","wait_s":N}` or `{"cmd":"trace","span":N,"seconds":S}`.
//! `status` answers one JSON line. `drain` answers a JSON progress line per
//! second and a last line with `"done":true`. `trace` answers one JSON line,
//! then the pcapng stream until the time is up; the client writes the file
//! (the daemon cannot write outside its own directories).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::board::{OpsBoard, TraceRecord};
use super::pcap::PcapngWriter;

/// A request on the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum AdminRequest {
    Status,
    Drain { wait_s: u64 },
    Trace { span: u8, seconds: u64 },
}

/// Longest trace an operator may ask for.
pub const TRACE_SECONDS_MAX: u64 = 3600;

/// Binds the socket (replacing a stale one) with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves admin requests until the task is dropped.
pub async fn serve(listener: UnixListener, board: Arc<OpsBoard>, context: Arc<Value>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let board = board.clone();
        let context = context.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &board, &context).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn handle(stream: UnixStream, board: &OpsBoard, context: &Value) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd);
    // One request line, bounded so a stray client cannot make us buffer much.
    let n = tokio::time::timeout(Duration::from_secs(5), async {
        let mut limited = (&mut rd).take(4096);
        limited.read_line(&mut line).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    if n == 0 {
        return Ok(());
    }
    let req: AdminRequest = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            let msg = json!({"error": format!("bad request: {e}")});
            wr.write_all(format!("{msg}\n").as_bytes()).await?;
            return Ok(());
        }
    };
    match req {
        AdminRequest::Status => {
            let s = status(board, context);
            wr.write_all(format!("{s}\n").as_bytes()).await?;
        }
        AdminRequest::Drain { wait_s } => drain(board, wait_s, &mut wr).await?,
        AdminRequest::Trace { span, seconds } => trace(board, span, seconds, &mut wr).await?,
    }
    wr.shutdown().await
}

/// The whole status document.
pub fn status(board: &OpsBoard, context: &Value) -> Value {
    let mut m = board.status_json();
    m.insert("daemon".into(), context.clone());
    m.insert(
        "loops".into(),
        json!({
            "registered": board.supervisor.loop_names(),
            "stuck": board.supervisor.stuck_loops(),
        }),
    );
    m.insert("traces".into(), json!({"running": board.trace.running()}));
    m.insert(
        "lifecycle".into(),
        json!({"draining": board.lifecycle.is_draining(), "live_calls": board.lifecycle.live()}),
    );
    let checks: Vec<Value> = board
        .readiness()
        .into_iter()
        .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
        .collect();
    m.insert("readiness".into(), Value::Array(checks));
    Value::Object(m)
}

async fn drain(
    board: &OpsBoard,
    wait_s: u64,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    if !board.lifecycle.is_draining() {
        crate::noc_event!(
            super::events::NocEvent::Draining,
            "drain asked for on the admin socket: new calls are refused"
        );
    }
    board.lifecycle.start_drain();
    let until = Instant::now() + Duration::from_secs(wait_s.min(TRACE_SECONDS_MAX));
    loop {
        let live = board.lifecycle.live();
        let done = live == 0 || Instant::now() >= until;
        let msg = json!({"draining": true, "live_calls": live, "done": done});
        wr.write_all(format!("{msg}\n").as_bytes()).await?;
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn trace(
    board: &OpsBoard,
    span: u8,
    seconds: u64,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let seconds = seconds.min(TRACE_SECONDS_MAX);
    if span == 0 {
        let msg = json!({"error": "span numbers start at 1"});
        return wr.write_all(format!("{msg}\n").as_bytes()).await;
    }
    let mut sub = board.trace.subscribe_span(span);
    let head = json!({"ok": true, "span": span, "seconds": seconds});
    wr.write_all(format!("{head}\n").as_bytes()).await?;
    let mut w = PcapngWriter::new(Vec::new())?;
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut lagged = 0u64;
    loop {
        let rec = tokio::select! {
            r = sub.rx.recv() => r,
            _ = tokio::time::sleep_until(until) => break,
        };
        match rec {
            Ok(TraceRecord::Lapd {
                span: s,
                at,
                sent,
                we_are_network,
                frame,
            }) if s == span => {
                w.lapd(at, sent, we_are_network, &frame)?;
            }
            Ok(TraceRecord::Udp {
                span: s,
                at,
                src,
                dst,
                payload,
                orig_len,
            }) if s.is_none() || s == Some(span) => {
                w.udp_cut(at, src, dst, &payload, orig_len)?;
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged += n,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
        let buf = std::mem::take(w.inner_mut());
        wr.write_all(&buf).await?;
    }
    drop(sub);
    if lagged > 0 {
        tracing::warn!(
            span,
            lost = lagged,
            "trace could not keep up; {lagged} packets left out"
        );
    }
    let buf = std::mem::take(w.inner_mut());
    wr.write_all(&buf).await
}

/// Client side: sends a request and returns the connected stream.
fn connect(path: &Path, req: &AdminRequest) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach tdmgw at {}: {e} (is it running? is the path right?)",
                path.display()
            ),
        )
    })?;
    let line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    s.write_all(format!("{line}\n").as_bytes())?;
    Ok(s)
}

/// `tdmgw status`: the status document.
pub fn client_status(path: &Path) -> std::io::Result<Value> {
    use std::io::BufRead;
    let s = connect(path, &AdminRequest::Status)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// `tdmgw drain`: calls `progress` with each progress line; returns the last.
pub fn client_drain(
    path: &Path,
    wait_s: u64,
    mut progress: impl FnMut(&Value),
) -> std::io::Result<Value> {
    use std::io::BufRead;
    let s = connect(path, &AdminRequest::Drain { wait_s })?;
    s.set_read_timeout(Some(Duration::from_secs(wait_s + 10)))?;
    let mut last = Value::Null;
    for line in std::io::BufReader::new(s).lines() {
        let v: Value = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        progress(&v);
        last = v;
    }
    Ok(last)
}

/// `tdmgw trace`: writes the pcapng stream to `out`; returns bytes written.
pub fn client_trace(path: &Path, span: u8, seconds: u64, out: &PathBuf) -> std::io::Result<u64> {
    use std::io::{BufRead, Read};
    let s = connect(path, &AdminRequest::Trace { span, seconds })?;
    s.set_read_timeout(Some(Duration::from_secs(seconds + 10)))?;
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head)?;
    let v: Value = serde_json::from_str(&head).map_err(std::io::Error::other)?;
    if v.get("ok") != Some(&Value::Bool(true)) {
        return Err(std::io::Error::other(format!(
            "tdmgw refused the trace: {v}"
        )));
    }
    let mut data = Vec::new();
    r.read_to_end(&mut data)?;
    std::fs::write(out, &data)?;
    Ok(data.len() as u64)
}

/// Renders the status document for a terminal.
pub fn render_status(v: &Value) -> String {
    let mut out = String::new();
    let d = &v["daemon"];
    out.push_str(&format!(
        "tdmgw {}  up {}s  board {}  management http://{}\n",
        d["version"].as_str().unwrap_or("?"),
        d["started_unix"].as_u64().map_or(0, |s| {
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |n| n.as_secs().saturating_sub(s))
        }),
        d["board"].as_str().unwrap_or("?"),
        d["management"].as_str().unwrap_or("?"),
    ));
    let lc = &v["lifecycle"];
    out.push_str(&format!(
        "state: {}  live calls: {}\n",
        if lc["draining"].as_bool() == Some(true) {
            "DRAINING"
        } else {
            "accepting calls"
        },
        lc["live_calls"]
    ));
    // The layers' sections (absent until the layer is registered).
    super::status_view::render_gateway(v, &mut out);
    super::status_view::render_spans(v, &mut out);
    super::status_view::render_calls(v, &mut out);
    super::status_view::render_peers(v, &mut out);
    if let Some(n) = v["traces"]["running"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!("\ntraces running: {n}"));
    }
    let loops = &v["loops"];
    out.push_str(&format!(
        "\nloops: {}",
        loops["registered"].as_array().map_or(String::new(), |a| a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", "))
    ));
    if let Some(stuck) = loops["stuck"].as_array()
        && !stuck.is_empty()
    {
        out.push_str(&format!("  STUCK: {stuck:?}"));
    }
    out.push_str("\nreadiness:\n");
    if let Some(checks) = v["readiness"].as_array() {
        for c in checks {
            let ok = c["ok"].as_bool() == Some(true);
            out.push_str(&format!(
                "  {} {}{}\n",
                if ok { "ok  " } else { "FAIL" },
                c["name"].as_str().unwrap_or("?"),
                c["detail"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                    .map_or(String::new(), |d| format!(": {d}"))
            ));
        }
    }
    out
}
