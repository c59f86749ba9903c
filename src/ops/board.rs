//! The operations board: what every layer shares with the NOC-facing side
//! (metrics collectors, readiness checks, status sections, the trace hub, the
//! drain flag). Layers register at start-up; the HTTP server, the admin socket
//! and the supervisor read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::daemon::Lifecycle;
use super::metrics::Registry;
use super::supervisor::Supervisor;

/// One readiness condition and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `span 1 alarms`, `span 1 D-channel`, `core peers`.
    pub name: String,
    pub ok: bool,
    /// Shown in the /readyz body when failing: `LOS, RAI`.
    pub detail: String,
}

type CheckFn = Arc<dyn Fn(&mut Vec<Check>) + Send + Sync>;
type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// A packet for `tdmgw trace`.
#[derive(Debug, Clone)]
pub enum TraceRecord {
    /// A D-channel frame (no FCS) on a span.
    Lapd {
        span: u8,
        at: SystemTime,
        sent: bool,
        we_are_network: bool,
        frame: Vec<u8>,
    },
    /// A SIP or RTP datagram belonging to a call on `span` (None: not tied to a span, e.g. OPTIONS).
    Udp {
        span: Option<u8>,
        at: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
    },
}

/// Fan-out of trace records; costs one atomic load when nobody traces.
#[derive(Debug, Clone)]
pub struct TraceHub {
    tx: tokio::sync::broadcast::Sender<TraceRecord>,
}

impl Default for TraceHub {
    fn default() -> Self {
        TraceHub {
            tx: tokio::sync::broadcast::channel(4096).0,
        }
    }
}

impl TraceHub {
    pub fn is_active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, r: TraceRecord) {
        if self.is_active() {
            let _ = self.tx.send(r);
        }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TraceRecord> {
        self.tx.subscribe()
    }
}

/// Shared by every layer and the operations side.
#[derive(Clone)]
pub struct OpsBoard {
    pub metrics: Registry,
    pub supervisor: Supervisor,
    pub lifecycle: Arc<Lifecycle>,
    pub trace: TraceHub,
    checks: Arc<Mutex<Vec<CheckFn>>>,
    status: Arc<Mutex<Vec<(String, StatusFn)>>>,
}

impl std::fmt::Debug for OpsBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpsBoard")
    }
}

impl OpsBoard {
    pub fn new(supervisor: Supervisor, lifecycle: Arc<Lifecycle>) -> OpsBoard {
        OpsBoard {
            metrics: Registry::new(),
            supervisor,
            lifecycle,
            trace: TraceHub::default(),
            checks: Arc::default(),
            status: Arc::default(),
        }
    }

    /// Adds readiness checks, evaluated on each /readyz.
    pub fn add_checks(&self, f: impl Fn(&mut Vec<Check>) + Send + Sync + 'static) {
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(f));
    }

    /// Adds a section (`spans`, `calls`, `peers` ...) to `tdmgw status --json`.
    pub fn add_status(&self, key: &str, f: impl Fn() -> serde_json::Value + Send + Sync + 'static) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.to_string(), Arc::new(f)));
    }

    pub fn readiness(&self) -> Vec<Check> {
        let fns = self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = vec![Check {
            name: "accepting calls".into(),
            ok: !self.lifecycle.is_draining(),
            detail: if self.lifecycle.is_draining() {
                "draining".into()
            } else {
                String::new()
            },
        }];
        for f in fns {
            f(&mut out);
        }
        out
    }

    pub fn status_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let fns = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut m = serde_json::Map::new();
        for (k, f) in fns {
            m.insert(k, f());
        }
        m
    }
}
