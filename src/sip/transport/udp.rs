//! UDP (RFC 3261 §18.1.2, §18.2.1): one datagram is one message.
//!
//! The receive buffer is `max_message_len + 1` octets, allocated once per
//! socket: a datagram that fills it was larger than the limit, is counted as
//! oversize and handed up cut, for the parser's 513. Datagrams of nothing but
//! CR/LF (keep-alives some user agents send over UDP) are ignored.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::{Inbound, Shared, Transport, bump};

pub(super) async fn read_loop(shared: Arc<Shared>, socket: UdpSocket, local: SocketAddr) {
    let mut buf = vec![0u8; shared.config.max_message_len.saturating_add(1)];
    let mut shutdown = shared.shutdown.clone();
    let counters = shared.counters(Transport::Udp);
    loop {
        let (n, source) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here on some
                // systems; they say nothing about this socket.
                Err(e) => {
                    tracing::debug!(%local, error = %e, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if !shared.admit(Transport::Udp, source) {
            continue;
        }
        let Some(data) = buf.get(..n) else { continue };
        if data.iter().all(|c| *c == b'\r' || *c == b'\n') {
            continue;
        }
        if n > shared.config.max_message_len {
            bump(&counters.oversize);
        }
        let inbound = Inbound {
            transport: Transport::Udp,
            local,
            source,
            bytes: data.to_vec(),
        };
        shared.deliver(inbound).await;
    }
}
