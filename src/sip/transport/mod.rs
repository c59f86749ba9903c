//! SIP transports (RFC 3261 §18): the tokio I/O shell under the sans-IO
//! SIP stack. UDP, TCP and TLS listeners, outgoing connections, framing,
//! CRLF keep-alives (RFC 5626), a source allow-list and a per-source rate
//! limit, counters for telemetry.
//!
//! # Contract
//!
//! - [`Transports::bind`]`(TransportConfig)` binds every configured listener
//!   (port 0 allowed; [`Transports::local_addrs`] tells what was bound) and
//!   starts one reader task per UDP socket and one accept task per TCP/TLS
//!   listener. Dropping the [`Transports`] stops every task and closes every
//!   socket and connection.
//! - [`Transports::recv`] yields [`TransportEvent`]s: an [`Inbound`] holds the
//!   bytes of one whole message (a datagram, or one Content-Length-framed
//!   message cut from a stream by [`StreamFramer`]); a [`TransportError`]
//!   says a connection to a destination failed (connect, TLS handshake, I/O,
//!   framing, keep-alive timeout), for the transaction layer's §17.1.4 /
//!   §17.2.4 "transport error".
//! - [`Transports::send`]`(Outbound)` never blocks: a datagram goes out at
//!   once; a stream message is queued on the connection for
//!   `(transport, destination)`, opened if there is none. A response whose
//!   destination is the source of an incoming connection goes back on that
//!   connection (§18.2.2), since accepted connections are registered under
//!   their remote address. It returns the transport actually used: §18.1.1
//!   moves a large UDP request to TCP (see [`TransportConfig::udp_mtu`]).
//! - Parsing is the caller's: the transport hands up bytes, the endpoint
//!   parses them with [`Inbound::parse`]. For a [`Rejection`] that carries an
//!   answer (400, 505, 513 ...) the endpoint sends [`answer_rejection`]'s
//!   `Outbound`; otherwise it drops and counts. This keeps one parse per
//!   message and one place (the endpoint) that counts malformed input.
//!   A stream whose framing breaks (no/bad Content-Length, too large) cannot
//!   be resynchronised (§18.3): the connection is closed and counted.
//! - Signalling is accepted only from [`TransportConfig::allowed_sources`]
//!   (IP addresses: a core's TCP source port is ephemeral). Datagrams from
//!   elsewhere get no answer; connections from elsewhere are closed at once;
//!   both are counted as [`DropReason::NotAllowed`]. Each source then passes
//!   a token bucket ([`RateLimit`]); messages over it are dropped and counted
//!   as [`DropReason::RateLimited`].
//! - Keep-alives (RFC 5626 §4.4.1): on connections we open, a CRLFCRLF ping
//!   every `keepalive_interval` (jittered to 80-100 %); no CRLF pong within
//!   `keepalive_timeout` = the flow failed: a [`TransportError`] for its
//!   destination. Pings from the other side are answered with CRLF on every
//!   connection.
//! - Idle connections (no SIP message either way for `idle_timeout`) are
//!   closed quietly. Per-connection buffers are bounded: the framer holds at
//!   most `max_message_len` plus one read, the send queue `connection_queue`
//!   messages (a full queue fails the send with [`SendError::QueueFull`]).
//! - [`Counters`] (atomics, shared) hold per-transport received/sent/dropped
//!   by [`DropReason`] and connection counts for telemetry.
//!
//! [`StreamFramer`]: crate::sip::StreamFramer

mod tcp;
mod tls;
mod udp;

pub use tls::{TlsError, TlsMaterial};

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::message::{Framing, Limits, Message, Rejection};
use super::response::response_to;

pub use super::endpoint::Transport;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub transport: Transport,
    /// The local address it arrived on (listener, or our end of a connection).
    pub local: SocketAddr,
    /// The remote address; sending to it on the same transport reaches the
    /// same connection (§18.2.2).
    pub source: SocketAddr,
    /// One whole message. A datagram larger than `max_message_len` is cut at
    /// `max_message_len + 1` octets, so that the parser answers 513 (§21.5.14)
    /// when its header section is intact.
    pub bytes: Vec<u8>,
}

impl Inbound {
    /// Parse with the framing of its transport.
    pub fn parse(&self, limits: Limits) -> Result<Message, Rejection> {
        Message::parse(&self.bytes, self.transport.framing(), limits)
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The answer to a request that did not parse but can be answered (400, 505,
/// 513 ...), sent back where it came from (§18.2.2; on UDP to the source
/// address as RFC 3581 does). `None`: drop and count.
pub fn answer_rejection(inbound: &Inbound, rejection: &Rejection) -> Option<Outbound> {
    let (status, request) = rejection.answer.as_ref()?;
    let reply = response_to(request, *status, Some(rejection.fault), None);
    Some(Outbound {
        transport: inbound.transport,
        destination: inbound.source,
        bytes: reply.to_bytes(),
    })
}

/// What the transports report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    Message(Inbound),
    Error(TransportError),
}

/// A connection to `destination` failed; messages queued on it are lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect failed or timed out.
    Connect,
    /// TLS handshake failed (certificate not verified, wrong name, protocol).
    TlsHandshake,
    /// Read or write failed, or a write did not complete in time.
    Io,
    /// The stream could not be framed (§18.3); we closed it.
    Framing,
    /// No CRLF pong to our ping within the timeout (RFC 5626 §4.4.1).
    KeepaliveTimeout,
}

/// Why [`Transports::send`] refused a message at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No socket for this transport and address family.
    NoTransport(Transport),
    /// The connection's send queue is full.
    QueueFull,
    /// The datagram could not be sent (buffer full, network unreachable ...).
    Datagram,
    /// TLS is not configured.
    NoTls,
}

/// Why a message was dropped, for the `reason` label of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Source not in the allow-list.
    NotAllowed,
    /// Source over its rate limit.
    RateLimited,
    /// Stream framing failed (bad Content-Length, too large): stream closed.
    Framing,
    /// A send queue was full.
    QueueFull,
    /// A datagram send failed, or a connection died with messages queued.
    SendFailed,
    /// No socket for the transport or address family.
    NoTransport,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::NotAllowed,
        DropReason::RateLimited,
        DropReason::Framing,
        DropReason::QueueFull,
        DropReason::SendFailed,
        DropReason::NoTransport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotAllowed => "not_allowed",
            DropReason::RateLimited => "rate_limited",
            DropReason::Framing => "framing",
            DropReason::QueueFull => "queue_full",
            DropReason::SendFailed => "send_failed",
            DropReason::NoTransport => "no_transport",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one transport. Relaxed atomics: telemetry reads them.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Messages handed up.
    pub received: AtomicU64,
    /// Messages written to a socket.
    pub sent: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Datagrams larger than `max_message_len` (handed up cut, for 513).
    pub oversize: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    /// Closed for idleness.
    pub connections_reaped: AtomicU64,
    pub connect_failures: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub keepalive_pings_sent: AtomicU64,
    pub keepalive_pongs_received: AtomicU64,
    /// Pings from the other side answered with a pong.
    pub keepalive_pings_answered: AtomicU64,
    pub keepalive_failures: AtomicU64,
}

impl TransportCounters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    fn drop_one(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counters of every transport.
#[derive(Debug, Default)]
pub struct Counters {
    pub udp: TransportCounters,
    pub tcp: TransportCounters,
    pub tls: TransportCounters,
}

impl Counters {
    pub fn get(&self, transport: Transport) -> &TransportCounters {
        match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
            Transport::Tls => &self.tls,
        }
    }
}

/// Token bucket per source: `per_second` messages on average, bursts of
/// `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    /// Generous for a core peer (a busy core sends tens of messages a second
    /// per gateway); it catches a looping or flooding source.
    fn default() -> Self {
        RateLimit {
            per_second: 200,
            burst: 400,
        }
    }
}

/// A token bucket; time is an argument (sans-IO).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
    warned: bool,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
            warned: false,
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * f64::from(self.limit.per_second))
            .min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Everything the transports need; `sip.listen`, the TLS files and the peer
/// groups of the site config map onto it.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Listeners to bind.
    pub listen: Vec<(Transport, SocketAddr)>,
    /// IP addresses signalling is accepted from: the core peers' addresses
    /// (every `[[peer_group.peer]]`). Empty: nothing is accepted.
    pub allowed_sources: Vec<IpAddr>,
    /// The name a TLS destination's certificate must carry (`tls_name`);
    /// destinations not listed are verified against their IP address.
    pub tls_names: Vec<(SocketAddr, String)>,
    /// CA, and our certificate for a TLS listener and mutual TLS.
    pub tls: Option<TlsMaterial>,
    /// A TLS listener demands a client certificate signed by the CA.
    pub tls_require_client_cert: bool,
    /// Largest message accepted (and framed on streams).
    pub max_message_len: usize,
    /// Path MTU for the §18.1.1 size rule.
    pub udp_mtu: usize,
    /// §18.1.1: send a UDP request larger than `udp_mtu - 200` over TCP
    /// (the top Via's transport is rewritten). Needs a TCP listener.
    pub udp_large_requests_over_tcp: bool,
    pub rate_limit: RateLimit,
    /// CRLFCRLF ping interval on connections we open; `None`: no pings.
    pub keepalive_interval: Option<Duration>,
    /// RFC 5626 §4.4.1: a pong must come within 10 s.
    pub keepalive_timeout: Duration,
    /// Close a connection that carried no message for this long.
    pub idle_timeout: Duration,
    /// TCP connect + TLS handshake, and each write.
    pub connect_timeout: Duration,
    /// Messages queued per connection.
    pub connection_queue: usize,
    /// Events queued for [`Transports::recv`] (readers wait when full).
    pub event_queue: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: Vec::new(),
            allowed_sources: Vec::new(),
            tls_names: Vec::new(),
            tls: None,
            tls_require_client_cert: true,
            max_message_len: crate::sip::message::MAX_MESSAGE_LEN_DEFAULT,
            udp_mtu: 1500,
            udp_large_requests_over_tcp: true,
            rate_limit: RateLimit::default(),
            // RFC 5626 §4.4.1 recommends 95-120 s for the public Internet;
            // a core peer on a private network wants faults seen sooner.
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            connection_queue: 256,
            event_queue: 1024,
        }
    }
}

/// §18.1.1: does a request of `len` octets for UDP have to go over a
/// congestion-controlled transport? (Larger than MTU − 200.)
pub fn udp_request_too_large(len: usize, udp_mtu: usize) -> bool {
    len > udp_mtu.saturating_sub(200)
}

/// Why [`Transports::bind`] failed.
#[derive(Debug)]
pub enum SetupError {
    Bind(Transport, SocketAddr, std::io::Error),
    Tls(TlsError),
    /// A TLS listener needs `tls` with our certificate and key.
    TlsListenerWithoutCertificate,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Bind(t, a, e) => write!(f, "cannot bind {} {a}: {e}", t.name()),
            SetupError::Tls(e) => write!(f, "TLS: {e}"),
            SetupError::TlsListenerWithoutCertificate => {
                write!(f, "a TLS listener needs tls_cert and tls_key")
            }
        }
    }
}

impl std::error::Error for SetupError {}

pub(crate) type ConnKey = (Transport, SocketAddr);

struct ConnEntry {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

/// State shared by the owner and its tasks.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) counters: Arc<Counters>,
    events: mpsc::Sender<TransportEvent>,
    conns: Mutex<HashMap<ConnKey, ConnEntry>>,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
    allowed: HashSet<IpAddr>,
    /// Sources already logged as not allowed (bounded, to log once each).
    warned_sources: Mutex<HashSet<IpAddr>>,
    next_id: AtomicU64,
    pub(crate) shutdown: watch::Receiver<()>,
    pub(crate) tls: Option<tls::TlsContext>,
}

const WARNED_SOURCES_MAX: usize = 1024;

impl Shared {
    pub(crate) fn counters(&self, t: Transport) -> &TransportCounters {
        self.counters.get(t)
    }

    /// Allow-list check; counts and logs (once per source) a refusal.
    pub(crate) fn admit(&self, transport: Transport, source: SocketAddr) -> bool {
        if self.allowed.contains(&source.ip()) {
            return true;
        }
        self.counters(transport).drop_one(DropReason::NotAllowed);
        let mut warned = lock(&self.warned_sources);
        if warned.len() < WARNED_SOURCES_MAX && warned.insert(source.ip()) {
            tracing::warn!(transport = transport.name(), %source, "SIP from a source that is not a core peer ignored");
        }
        false
    }

    /// Rate limit, then hand the message up (waits while the event queue is full).
    pub(crate) async fn deliver(&self, inbound: Inbound) {
        let now = Instant::now();
        let ok = {
            let mut buckets = lock(&self.buckets);
            let b = buckets
                .entry(inbound.source.ip())
                .or_insert_with(|| TokenBucket::new(self.config.rate_limit, now));
            let ok = b.take(now);
            if !ok && !b.warned {
                b.warned = true;
                tracing::warn!(transport = inbound.transport.name(), source = %inbound.source, "SIP source over its rate limit: messages dropped");
            }
            ok
        };
        let counters = self.counters(inbound.transport);
        if !ok {
            counters.drop_one(DropReason::RateLimited);
            return;
        }
        bump(&counters.received);
        let _ = self.events.send(TransportEvent::Message(inbound)).await;
    }

    pub(crate) async fn report_error(
        &self,
        transport: Transport,
        destination: SocketAddr,
        kind: ErrorKind,
    ) {
        tracing::warn!(transport = transport.name(), %destination, ?kind, "SIP transport error");
        let e = TransportError {
            transport,
            destination,
            kind,
        };
        let _ = self.events.send(TransportEvent::Error(e)).await;
    }

    pub(crate) fn new_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Register a connection (replacing any older one under the same key).
    pub(crate) fn register(&self, key: ConnKey, id: u64, tx: mpsc::Sender<Vec<u8>>) {
        lock(&self.conns).insert(key, ConnEntry { id, tx });
    }

    /// Forget a connection, unless a newer one has taken its key.
    pub(crate) fn unregister(&self, key: ConnKey, id: u64) {
        let mut conns = lock(&self.conns);
        if conns.get(&key).is_some_and(|e| e.id == id) {
            conns.remove(&key);
        }
    }

    pub(crate) fn tls_name(&self, destination: SocketAddr) -> Option<&str> {
        self.config
            .tls_names
            .iter()
            .find(|(a, _)| *a == destination)
            .map(|(_, n)| n.as_str())
    }
}

/// A poisoned lock only means another task panicked while holding it; the
/// maps inside stay consistent (every update is a single insert/remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The transports: owns the sockets and the tasks that serve them.
pub struct Transports {
    shared: Arc<Shared>,
    events: mpsc::Receiver<TransportEvent>,
    udp: Vec<(SocketAddr, std::net::UdpSocket)>,
    local: Vec<(Transport, SocketAddr)>,
    /// Dropped with `self`: every task sees the channel close and stops.
    _shutdown: watch::Sender<()>,
}

impl Transports {
    /// Bind every listener and start serving them.
    pub async fn bind(config: TransportConfig) -> Result<Transports, SetupError> {
        let tls = match &config.tls {
            Some(m) => Some(
                tls::TlsContext::new(m, config.tls_require_client_cert).map_err(SetupError::Tls)?,
            ),
            None => None,
        };
        let wants_tls_listener = config.listen.iter().any(|(t, _)| *t == Transport::Tls);
        if wants_tls_listener && tls.as_ref().is_none_or(|t| t.server.is_none()) {
            return Err(SetupError::TlsListenerWithoutCertificate);
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
        let mut udp = Vec::new();
        let mut udp_readers = Vec::new();
        let mut streams = Vec::new();
        let mut local = Vec::new();
        for (t, addr) in &config.listen {
            let err = |e| SetupError::Bind(*t, *addr, e);
            match t {
                Transport::Udp => {
                    // Sends go through a non-blocking std clone of the
                    // socket: `send` stays synchronous, and tokio's
                    // try_send_to would refuse until the first readiness event.
                    let s = std::net::UdpSocket::bind(addr).map_err(err)?;
                    s.set_nonblocking(true).map_err(err)?;
                    let a = s.local_addr().map_err(err)?;
                    let sender = s.try_clone().map_err(err)?;
                    let receiver = UdpSocket::from_std(s).map_err(err)?;
                    local.push((*t, a));
                    udp.push((a, sender));
                    udp_readers.push((a, receiver));
                }
                Transport::Tcp | Transport::Tls => {
                    let l = TcpListener::bind(addr).await.map_err(err)?;
                    let a = l.local_addr().map_err(err)?;
                    local.push((*t, a));
                    streams.push((*t, l));
                }
            }
        }
        let shared = Arc::new(Shared {
            allowed: config.allowed_sources.iter().copied().collect(),
            config,
            counters: Arc::new(Counters::default()),
            events: events_tx,
            conns: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            warned_sources: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
            shutdown: shutdown_rx,
            tls,
        });
        for (a, s) in udp_readers {
            tokio::spawn(udp::read_loop(shared.clone(), s, a));
        }
        for (t, l) in streams {
            tokio::spawn(tcp::accept_loop(shared.clone(), l, t));
        }
        for (t, a) in &local {
            tracing::info!(transport = t.name(), address = %a, "SIP listening");
        }
        Ok(Transports {
            shared,
            events: events_rx,
            udp,
            local,
            _shutdown: shutdown_tx,
        })
    }

    /// What was bound, in the order configured.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.local
    }

    /// The first listener of a transport.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.local
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// The next received message or transport error. `None` never happens
    /// while `self` lives (the tasks hold the sender), but is handled.
    pub async fn recv(&mut self) -> Option<TransportEvent> {
        self.events.recv().await
    }

    /// Counters for telemetry (shared; keep the `Arc`).
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// Open stream connections (both directions).
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Send one message; see the module doc. Returns the transport used.
    pub fn send(&self, out: Outbound) -> Result<Transport, SendError> {
        match out.transport {
            Transport::Udp => self.send_udp(out),
            Transport::Tcp | Transport::Tls => self.send_stream(out),
        }
    }

    fn send_udp(&self, out: Outbound) -> Result<Transport, SendError> {
        let cfg = &self.shared.config;
        if cfg.udp_large_requests_over_tcp
            && udp_request_too_large(out.bytes.len(), cfg.udp_mtu)
            && !out.bytes.starts_with(b"SIP/")
            && self.local_addr(Transport::Tcp).is_some()
        {
            // §18.1.1: a request within 200 octets of the MTU MUST go over
            // a congestion-controlled transport, and the top Via MUST then
            // name it.
            if let Some(bytes) = rewrite_top_via(&out.bytes, Transport::Tcp, cfg) {
                return self.send_stream(Outbound {
                    transport: Transport::Tcp,
                    destination: out.destination,
                    bytes,
                });
            }
        }
        let counters = self.shared.counters(Transport::Udp);
        let Some((_, socket)) = self
            .udp
            .iter()
            .find(|(a, _)| a.is_ipv4() == out.destination.is_ipv4())
        else {
            counters.drop_one(DropReason::NoTransport);
            return Err(SendError::NoTransport(Transport::Udp));
        };
        match socket.send_to(&out.bytes, out.destination) {
            Ok(_) => {
                bump(&counters.sent);
                Ok(Transport::Udp)
            }
            Err(e) => {
                counters.drop_one(DropReason::SendFailed);
                tracing::debug!(destination = %out.destination, error = %e, "UDP send failed");
                Err(SendError::Datagram)
            }
        }
    }

    fn send_stream(&self, out: Outbound) -> Result<Transport, SendError> {
        let key = (out.transport, out.destination);
        let counters = self.shared.counters(out.transport);
        if out.transport == Transport::Tls && self.shared.tls.is_none() {
            counters.drop_one(DropReason::NoTransport);
            return Err(SendError::NoTls);
        }
        let mut conns = lock(&self.shared.conns);
        if let Some(entry) = conns.get(&key) {
            return match entry.tx.try_send(out.bytes) {
                Ok(()) => Ok(out.transport),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    counters.drop_one(DropReason::QueueFull);
                    Err(SendError::QueueFull)
                }
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    // The connection task is ending: open a new one.
                    conns.remove(&key);
                    drop(conns);
                    self.open(key, bytes);
                    Ok(out.transport)
                }
            };
        }
        drop(conns);
        self.open(key, out.bytes);
        Ok(out.transport)
    }

    /// Open a connection with `first` queued on it.
    fn open(&self, key: ConnKey, first: Vec<u8>) {
        let (tx, rx) = mpsc::channel(self.shared.config.connection_queue.max(1));
        let _ = tx.try_send(first);
        let id = self.shared.new_conn_id();
        self.shared.register(key, id, tx);
        tokio::spawn(tcp::connect_and_run(self.shared.clone(), key, id, rx));
    }
}

/// The message with its top Via's transport replaced (§18.1.1), or `None`
/// when it does not parse (then it goes as it is).
fn rewrite_top_via(bytes: &[u8], to: Transport, cfg: &TransportConfig) -> Option<Vec<u8>> {
    let limits = Limits {
        max_message_len: cfg.max_message_len,
    };
    let mut msg = Message::parse(bytes, Framing::Datagram, limits).ok()?;
    let idx = msg.headers.iter().position(|h| h.is("Via"))?;
    let value = msg.headers.get(idx)?.value_str().ok()?.to_owned();
    let parts = super::text::split_commas(&value).ok()?;
    let first = parts.first()?;
    let mut via = super::header::Via::parse(first).ok()?;
    via.transport = to.via_token().to_owned();
    let mut new_value = via.to_string();
    for p in parts.iter().skip(1) {
        new_value.push_str(", ");
        new_value.push_str(p.trim());
    }
    let name = msg.headers.get(idx)?.name.clone();
    *msg.headers.get_mut(idx)? = super::message::Header::new(&name, new_value);
    Some(msg.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_refills_at_the_rate_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let limit = RateLimit {
            per_second: 10,
            burst: 3,
        };
        let mut b = TokenBucket::new(limit, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 100 ms at 10/s = one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(t2)).count(), 3);
    }

    #[test]
    fn size_rule_of_18_1_1() {
        assert!(!udp_request_too_large(1300, 1500));
        assert!(udp_request_too_large(1301, 1500));
    }

    #[test]
    fn top_via_rewritten_to_tcp() {
        let req = b"OPTIONS sip:core SIP/2.0\r\nVia: SIP/2.0/UDP gw:5060;branch=z9hG4bKa, SIP/2.0/UDP p;branch=z9hG4bKb\r\n\
From: <sip:gw>;tag=1\r\nTo: <sip:core>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let out = rewrite_top_via(req, Transport::Tcp, &TransportConfig::default()).unwrap();
        let m = Message::parse(&out, Framing::Stream, Limits::default()).unwrap();
        let vias = m.vias().unwrap();
        assert_eq!(vias[0].transport, "TCP");
        assert_eq!(vias[0].branch(), Some("z9hG4bKa"));
        assert_eq!(vias[1].transport, "UDP");
    }

    #[test]
    fn rejection_answered_to_the_source() {
        let bad = b"OPTIONS sip:core SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKa\r\n\
From: <sip:gw>;tag=1\r\nTo: <sip:core>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: x\r\n\r\n";
        let inbound = Inbound {
            transport: Transport::Tcp,
            local: "127.0.0.1:5060".parse().unwrap(),
            source: "127.0.0.1:40000".parse().unwrap(),
            bytes: bad.to_vec(),
        };
        let rej = inbound.parse(Limits::default()).unwrap_err();
        let out = answer_rejection(&inbound, &rej).unwrap();
        assert_eq!(
            (out.transport, out.destination),
            (Transport::Tcp, inbound.source)
        );
        let m = Message::parse(&out.bytes, Framing::Stream, Limits::default()).unwrap();
        assert_eq!(m.status(), Some(400));
    }
}
