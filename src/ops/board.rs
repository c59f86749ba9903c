//! The operations board: what every layer shares with the NOC-facing side
//! (metrics collectors, readiness checks, status sections, the trace hub, the
//! drain flag). Layers register at start-up; the HTTP server, the admin socket
//! and the supervisor read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// A D-channel frame (address field onwards, no FCS) on a span.
    Lapd {
        span: u8,
        at: SystemTime,
        sent: bool,
        we_are_network: bool,
        frame: Vec<u8>,
    },
    /// A SIP or RTP/RTCP datagram belonging to a call on `span` (None: not
    /// tied to a span, e.g. OPTIONS, or a SIP message whose call's span is
    /// not known yet; such records go into every trace). `orig_len` is the
    /// payload's length on the wire when `payload` was cut to a snap length
    /// (the media tap's slots), else `payload.len()`.
    Udp {
        span: Option<u8>,
        at: SystemTime,
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
        orig_len: usize,
    },
}

/// Spans are numbered 1..=255 (`u8`); index 0 is unused.
const TRACE_SPANS: usize = 256;

/// How many traces run, in all and per span: what the layers read before
/// building a record, so that an untraced gateway pays one atomic load.
struct TraceActivity {
    any: AtomicUsize,
    spans: [AtomicUsize; TRACE_SPANS],
}

/// Fan-out of trace records. Layers ask [`TraceHub::is_active`] /
/// [`TraceHub::span_active`] (one relaxed atomic load each) before they
/// build a record; a trace is a [`TraceSubscription`] of one span, counted
/// from [`TraceHub::subscribe_span`] until it is dropped.
#[derive(Clone)]
pub struct TraceHub {
    tx: tokio::sync::broadcast::Sender<TraceRecord>,
    activity: Arc<TraceActivity>,
}

impl std::fmt::Debug for TraceHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceHub")
            .field("active", &self.activity.any.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for TraceHub {
    fn default() -> Self {
        TraceHub {
            tx: tokio::sync::broadcast::channel(4096).0,
            activity: Arc::new(TraceActivity {
                any: AtomicUsize::new(0),
                spans: std::array::from_fn(|_| AtomicUsize::new(0)),
            }),
        }
    }
}

/// One running trace of one span; the span stops being traced (as far as
/// this trace goes) when it is dropped.
pub struct TraceSubscription {
    pub rx: tokio::sync::broadcast::Receiver<TraceRecord>,
    span: u8,
    activity: Arc<TraceActivity>,
}

impl Drop for TraceSubscription {
    fn drop(&mut self) {
        self.activity.spans[usize::from(self.span)].fetch_sub(1, Ordering::Relaxed);
        self.activity.any.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TraceHub {
    /// Some trace is running.
    pub fn is_active(&self) -> bool {
        self.activity.any.load(Ordering::Relaxed) > 0
    }

    /// Traces running (every span).
    pub fn running(&self) -> usize {
        self.activity.any.load(Ordering::Relaxed)
    }

    /// A trace of `span` is running.
    pub fn span_active(&self, span: u8) -> bool {
        self.activity.spans[usize::from(span)].load(Ordering::Relaxed) > 0
    }

    /// Sends `r` to every running trace (each keeps what is its span's).
    pub fn publish(&self, r: TraceRecord) {
        if self.is_active() {
            let _ = self.tx.send(r);
        }
    }

    /// Starts a trace of `span`.
    pub fn subscribe_span(&self, span: u8) -> TraceSubscription {
        let rx = self.tx.subscribe();
        self.activity.spans[usize::from(span)].fetch_add(1, Ordering::Relaxed);
        self.activity.any.fetch_add(1, Ordering::Relaxed);
        TraceSubscription {
            rx,
            span,
            activity: self.activity.clone(),
        }
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
