//! Stream connections (RFC 3261 §18.2.2, §18.3) for TCP and TLS: accept,
//! connect, and one task per connection that frames what it reads with
//! [`StreamFramer`], writes what is queued for it, keeps the flow alive
//! (RFC 5626 §4.4.1) and closes it when idle.
//!
//! Buffers per connection: one read buffer of [`READ_CHUNK`] octets, the
//! framer's (at most `max_message_len` plus one read: it fails with
//! `TooLarge` beyond that), and the send queue of `connection_queue` messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use super::tls::server_name;
use super::{ConnKey, DropReason, ErrorKind, Inbound, Shared, Transport, bump};
use crate::sip::framer::{Frame, StreamFramer};

const READ_CHUNK: usize = 8192;

/// How a connection ended without a fault.
enum Closed {
    /// The other side closed.
    Eof,
    /// No message for `idle_timeout`.
    Idle,
    /// The transports were dropped, or the connection was replaced.
    Shutdown,
}

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, transport: Transport) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off rather than spin.
                    tracing::warn!(transport = transport.name(), error = %e, "SIP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if !shared.admit(transport, peer) {
            continue;
        }
        tokio::spawn(serve_accepted(shared.clone(), stream, peer, transport));
    }
}

async fn serve_accepted(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, t: Transport) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let key = (t, peer);
    let id = shared.new_conn_id();
    match t {
        Transport::Udp => {}
        Transport::Tcp => run(shared, stream, key, local, id, None, false).await,
        Transport::Tls => {
            let Some(tls) = &shared.tls else { return };
            let limit = shared.config.connect_timeout;
            match timeout(limit, tls.accept(stream)).await {
                Ok(Ok(s)) => run(shared.clone(), s, key, local, id, None, false).await,
                Ok(Err(e)) => {
                    bump(&shared.counters(t).tls_handshake_failures);
                    tracing::warn!(%peer, error = %e, "TLS handshake from a core peer failed");
                }
                Err(_) => {
                    bump(&shared.counters(t).tls_handshake_failures);
                    tracing::warn!(%peer, "TLS handshake from a core peer timed out");
                }
            }
        }
    }
}

/// Open the connection registered under `key` by the sender, then serve it.
pub(super) async fn connect_and_run(
    shared: Arc<Shared>,
    key: ConnKey,
    id: u64,
    rx: mpsc::Receiver<Vec<u8>>,
) {
    let (t, destination) = key;
    let limit = shared.config.connect_timeout;
    let counters = shared.counters(t);
    let stream = match timeout(limit, TcpStream::connect(destination)).await {
        Ok(Ok(s)) => s,
        _ => {
            bump(&counters.connect_failures);
            return fail(&shared, key, id, rx, ErrorKind::Connect).await;
        }
    };
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return fail(&shared, key, id, rx, ErrorKind::Connect).await;
    };
    match t {
        Transport::Udp => {}
        Transport::Tcp => run(shared, stream, key, local, id, Some(rx), true).await,
        Transport::Tls => {
            let tls = shared.tls.as_ref();
            let name = server_name(shared.tls_name(destination), destination);
            let (Some(tls), Some(name)) = (tls, name) else {
                return fail(&shared, key, id, rx, ErrorKind::TlsHandshake).await;
            };
            match timeout(limit, tls.connect(stream, name)).await {
                Ok(Ok(s)) => run(shared.clone(), s, key, local, id, Some(rx), true).await,
                Ok(Err(e)) => {
                    bump(&counters.tls_handshake_failures);
                    tracing::debug!(%destination, error = %e, "TLS handshake failed");
                    fail(&shared, key, id, rx, ErrorKind::TlsHandshake).await
                }
                Err(_) => {
                    bump(&counters.tls_handshake_failures);
                    fail(&shared, key, id, rx, ErrorKind::TlsHandshake).await
                }
            }
        }
    }
}

/// The connection never came up: drop what was queued, report.
async fn fail(
    shared: &Shared,
    key: ConnKey,
    id: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
    kind: ErrorKind,
) {
    shared.unregister(key, id);
    discard_queue(shared, key.0, &mut rx);
    shared.report_error(key.0, key.1, kind).await;
}

fn discard_queue(shared: &Shared, t: Transport, rx: &mut mpsc::Receiver<Vec<u8>>) {
    rx.close();
    while rx.try_recv().is_ok() {
        shared.counters(t).drop_one(DropReason::SendFailed);
    }
}

/// Serve one established connection. `rx`: the queue made by the sender for
/// an outgoing connection; an accepted one registers a new queue here.
async fn run<S: AsyncRead + AsyncWrite>(
    shared: Arc<Shared>,
    stream: S,
    key: ConnKey,
    local: SocketAddr,
    id: u64,
    rx: Option<mpsc::Receiver<Vec<u8>>>,
    initiated: bool,
) {
    let mut rx = match rx {
        Some(rx) => rx,
        None => {
            let (tx, rx) = mpsc::channel(shared.config.connection_queue.max(1));
            shared.register(key, id, tx);
            rx
        }
    };
    let (t, peer) = key;
    let counters = shared.counters(t);
    bump(&counters.connections_opened);
    tracing::debug!(transport = t.name(), %peer, %local, "SIP connection up");
    let conn = Conn {
        shared: &shared,
        transport: t,
        local,
        peer,
        id,
        initiated,
    };
    let result = conn.serve(stream, &mut rx).await;
    shared.unregister(key, id);
    bump(&counters.connections_closed);
    match result {
        Ok(Closed::Idle) => bump(&counters.connections_reaped),
        Ok(Closed::Eof | Closed::Shutdown) => {}
        Err(kind) => {
            discard_queue(&shared, t, &mut rx);
            shared.report_error(t, peer, kind).await;
        }
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    transport: Transport,
    local: SocketAddr,
    peer: SocketAddr,
    id: u64,
    initiated: bool,
}

impl Conn<'_> {
    /// RFC 5626 §4.4.1: the interval is chosen between 80 % and 100 % of the
    /// configured value, so flows do not ping in step. The spread comes from
    /// the connection id (no RNG in the I/O shell).
    fn keepalive_interval(&self) -> Option<Duration> {
        let base = self.shared.config.keepalive_interval?;
        if !self.initiated {
            return None;
        }
        let percent = 80 + (self.id % 21) as u32;
        Some(base * percent / 100)
    }

    async fn serve<S: AsyncRead + AsyncWrite>(
        &self,
        stream: S,
        rx: &mut mpsc::Receiver<Vec<u8>>,
    ) -> Result<Closed, ErrorKind> {
        let cfg = &self.shared.config;
        let counters = self.shared.counters(self.transport);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut framer = StreamFramer::new(cfg.max_message_len);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut shutdown = self.shared.shutdown.clone();
        let interval = self.keepalive_interval();
        let mut last_message = Instant::now();
        let mut next_ping = interval.map(|i| Instant::now() + i);
        let mut pong_due: Option<Instant> = None;
        let closed = loop {
            let idle_at = last_message + cfg.idle_timeout;
            let wake = pong_due.or(next_ping).map_or(idle_at, |k| k.min(idle_at));
            tokio::select! {
                r = rd.read(&mut buf) => {
                    let n = r.map_err(|_| ErrorKind::Io)?;
                    if n == 0 {
                        break Closed::Eof;
                    }
                    framer.handle_input(buf.get(..n).unwrap_or_default());
                    while let Some(frame) = self.next_frame(&mut framer)? {
                        match frame {
                            Frame::Message(bytes) => {
                                last_message = Instant::now();
                                self.shared.deliver(self.inbound(bytes)).await;
                            }
                            Frame::Ping => {
                                write(&mut wr, b"\r\n", cfg.connect_timeout).await?;
                                bump(&counters.keepalive_pings_answered);
                            }
                            Frame::Pong => {
                                if pong_due.take().is_some() {
                                    bump(&counters.keepalive_pongs_received);
                                    next_ping = interval.map(|i| Instant::now() + i);
                                }
                            }
                        }
                    }
                    if pong_due.is_some() && framer.take_pong() {
                        pong_due = None;
                        bump(&counters.keepalive_pongs_received);
                        next_ping = interval.map(|i| Instant::now() + i);
                    }
                }
                m = rx.recv() => match m {
                    Some(bytes) => {
                        write(&mut wr, &bytes, cfg.connect_timeout).await?;
                        bump(&counters.sent);
                        last_message = Instant::now();
                    }
                    // Replaced in the table: nobody can queue here any more.
                    None => break Closed::Shutdown,
                },
                _ = sleep_until(wake) => {
                    let now = Instant::now();
                    if pong_due.is_some_and(|d| now >= d) {
                        // RFC 5626 §4.4.1: no pong in time, the flow failed.
                        bump(&counters.keepalive_failures);
                        return Err(ErrorKind::KeepaliveTimeout);
                    }
                    if pong_due.is_none() && next_ping.is_some_and(|d| now >= d) {
                        write(&mut wr, b"\r\n\r\n", cfg.connect_timeout).await?;
                        bump(&counters.keepalive_pings_sent);
                        pong_due = Some(now + cfg.keepalive_timeout);
                        next_ping = None;
                    }
                    if now >= idle_at {
                        tracing::debug!(transport = self.transport.name(), peer = %self.peer, "idle SIP connection closed");
                        break Closed::Idle;
                    }
                }
                _ = shutdown.changed() => break Closed::Shutdown,
            }
        };
        // A clean close (TLS close_notify, TCP FIN), bounded.
        let _ = timeout(Duration::from_secs(1), wr.shutdown()).await;
        Ok(closed)
    }

    fn next_frame(&self, framer: &mut StreamFramer) -> Result<Option<Frame>, ErrorKind> {
        framer.poll_frame().map_err(|e| {
            // §18.3: a stream that cannot be framed cannot be resynchronised.
            self.shared
                .counters(self.transport)
                .drop_one(DropReason::Framing);
            tracing::warn!(transport = self.transport.name(), peer = %self.peer, error = ?e, "SIP stream framing failed: connection closed");
            ErrorKind::Framing
        })
    }

    fn inbound(&self, bytes: Vec<u8>) -> Inbound {
        Inbound {
            transport: self.transport,
            local: self.local,
            source: self.peer,
            bytes,
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ErrorKind> {
    let w = async {
        wr.write_all(bytes).await?;
        wr.flush().await
    };
    match timeout(limit, w).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(ErrorKind::Io),
    }
}
