//! The operations side of the SIP task: its supervisor check-in and the NOC
//! events of core peers.
//!
//! `sip` knows nothing of `ops` (DESIGN.md §3), so the task takes an
//! [`Observer`]; [`SipOps`] is the one the daemon gives it: `beat()` feeds
//! the loop's [`Heartbeat`] (registered as [`LOOP_NAME`]), and
//! `peer_event()` raises [`NocEvent::PeerUp`] / [`NocEvent::PeerDown`] with
//! the peer's group, address and transport.
//!
//! With [`SipOps::register_full`] it also sees every message
//! (`message()`): it counts requests by method and responses by method and
//! status in [`SipMessageMetrics`] (after parsing; retransmissions count,
//! as they are on the wire), and while a `tdmgw trace` runs it publishes
//! each message as a [`TraceRecord::Udp`] rebuilt from the addresses.
//!
//! # Which span's trace a SIP message goes to
//!
//! A SIP message names no span; its call does. While a trace runs, every
//! SDP we send is read: a media port that is one of our B-channels' RTP
//! ports ties the message's Call-ID to that channel's span (the port plan
//! is per span, `media::engine`). Messages of a Call-ID so tied go to that
//! span's traces only; every other message (OPTIONS, an INVITE from the
//! core before we answer it, calls that began before the trace) goes to
//! every running trace. The table keeps the last [`CALL_SPANS_MAX`] calls.
//!
//! Messages on TCP or TLS are traced as UDP datagrams between the same
//! addresses (our side: the listener's address), one message each and in
//! clear: a trace shows what the SIP layer sent and received, not the
//! stream's segments or TLS records.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::board::{TraceHub, TraceRecord};
use super::events::NocEvent;
use super::layer_metrics::{MessageDirection, SipMessageMetrics};
use super::supervisor::{Heartbeat, Supervisor};
use crate::sip::message::{Framing, Limits, Message, StartLine};
use crate::sip::peer::PeerState;
use crate::sip::sdp::Sdp;
use crate::sip::task::{MessageSeen, Observer, PeerInfo};
use crate::sip::transport::Transport;

/// Calls whose span the SIP trace remembers (oldest forgotten first).
pub const CALL_SPANS_MAX: usize = 4096;

/// The supervisor's name for the SIP task.
pub const LOOP_NAME: &str = "sip";

/// The supervisor heartbeat and NOC events of the SIP task.
#[derive(Debug)]
pub struct SipOps {
    heartbeat: Heartbeat,
    messages: Option<Arc<SipMessageMetrics>>,
    trace: Option<SipTrace>,
}

/// The SIP side of `tdmgw trace` (module doc).
#[derive(Debug)]
struct SipTrace {
    hub: TraceHub,
    /// Our B-channels' RTP ports and their spans.
    rtp_ports: HashMap<u16, u8>,
    calls: Mutex<CallSpans>,
}

/// Call-ID → span, bounded.
#[derive(Debug, Default)]
struct CallSpans {
    map: HashMap<String, u8>,
    order: VecDeque<String>,
}

impl CallSpans {
    fn insert(&mut self, call_id: &str, span: u8) {
        if self.map.insert(call_id.to_string(), span).is_none() {
            self.order.push_back(call_id.to_string());
            while self.order.len() > CALL_SPANS_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

impl SipOps {
    /// Registers the SIP task as loop [`LOOP_NAME`].
    pub fn register(supervisor: &Supervisor) -> Arc<SipOps> {
        Arc::new(SipOps {
            heartbeat: supervisor.register(LOOP_NAME),
            messages: None,
            trace: None,
        })
    }

    /// [`SipOps::register`], counting messages in `messages` and publishing
    /// them to `trace`; `rtp_ports` maps our B-channels' RTP ports to their
    /// spans (module doc).
    pub fn register_full(
        supervisor: &Supervisor,
        messages: Arc<SipMessageMetrics>,
        trace: TraceHub,
        rtp_ports: HashMap<u16, u8>,
    ) -> Arc<SipOps> {
        Arc::new(SipOps {
            heartbeat: supervisor.register(LOOP_NAME),
            messages: Some(messages),
            trace: Some(SipTrace {
                hub: trace,
                rtp_ports,
                calls: Mutex::default(),
            }),
        })
    }

    fn count(&self, m: &MessageSeen<'_>, parsed: &Message) {
        let Some(metrics) = &self.messages else {
            return;
        };
        let dir = if m.sent {
            MessageDirection::Out
        } else {
            MessageDirection::In
        };
        match &parsed.start {
            StartLine::Request { method, .. } => metrics.request(dir, method),
            StartLine::Response { status, .. } => {
                if let Ok(cseq) = parsed.cseq() {
                    metrics.response(dir, &cseq.method, *status);
                }
            }
        }
    }
}

impl SipTrace {
    /// The span of the message's call, learnt from the SDP we send.
    fn span_of(&self, m: &MessageSeen<'_>, parsed: Option<&Message>) -> Option<u8> {
        let parsed = parsed?;
        let call_id = parsed.call_id().ok()?;
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        if m.sent
            && !parsed.body.is_empty()
            && let Ok(sdp) = Sdp::parse(&parsed.body)
            && let Some(span) = sdp
                .media
                .iter()
                .find_map(|md| self.rtp_ports.get(&md.port).copied())
        {
            calls.insert(call_id, span);
        }
        calls.map.get(call_id).copied()
    }

    fn publish(&self, m: &MessageSeen<'_>, parsed: Option<&Message>) {
        let span = self.span_of(m, parsed);
        let (src, dst): (SocketAddr, SocketAddr) = if m.sent {
            (m.local, m.remote)
        } else {
            (m.remote, m.local)
        };
        self.hub.publish(TraceRecord::Udp {
            span,
            at: std::time::SystemTime::now(),
            src,
            dst,
            payload: m.bytes.to_vec(),
            orig_len: m.bytes.len(),
        });
    }
}

impl Observer for SipOps {
    fn beat(&self) {
        self.heartbeat.beat();
    }

    fn peer_event(&self, peer: &PeerInfo, state: PeerState) {
        noc_event_for(peer, state);
    }

    fn message(&self, m: &MessageSeen<'_>) {
        let tracing = self.trace.as_ref().filter(|t| t.hub.is_active());
        if self.messages.is_none() && tracing.is_none() {
            return;
        }
        let framing = match m.transport {
            Transport::Udp => Framing::Datagram,
            _ => Framing::Stream,
        };
        let parsed = Message::parse(m.bytes, framing, Limits::default()).ok();
        if let Some(p) = &parsed {
            self.count(m, p);
        }
        if let Some(t) = tracing {
            t.publish(m, parsed.as_ref());
        }
    }
}

/// Raises the NOC event of a peer state change; returns which.
pub fn noc_event_for(peer: &PeerInfo, state: PeerState) -> NocEvent {
    match state {
        PeerState::Up => {
            crate::noc_event!(
                NocEvent::PeerUp,
                group = %peer.group,
                peer = %peer.address,
                transport = peer.transport.name(),
                "core SIP peer up (OPTIONS answered)"
            );
            NocEvent::PeerUp
        }
        PeerState::Down => {
            crate::noc_event!(
                NocEvent::PeerDown,
                group = %peer.group,
                peer = %peer.address,
                transport = peer.transport.name(),
                "core SIP peer down: new calls go to the next peer of the group"
            );
            NocEvent::PeerDown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::peer::PeerId;

    #[test]
    fn peer_changes_map_to_noc_events() {
        let p = PeerInfo {
            id: PeerId(0),
            group: "mcvp".into(),
            address: "192.0.2.7:5061".parse().unwrap(),
            transport: Transport::Tls,
        };
        assert_eq!(noc_event_for(&p, PeerState::Up), NocEvent::PeerUp);
        assert_eq!(noc_event_for(&p, PeerState::Down), NocEvent::PeerDown);
    }

    fn invite(call_id: &str, rtp_port: u16) -> Vec<u8> {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 8\r\n"
        );
        format!(
            "INVITE sip:999@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:gw@127.0.0.1>;tag=a\r\nTo: <sip:999@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    fn ok(call_id: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:gw@127.0.0.1>;tag=a\r\nTo: <sip:999@127.0.0.1>;tag=b\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn seen(sent: bool, bytes: &[u8]) -> MessageSeen<'_> {
        MessageSeen {
            sent,
            transport: Transport::Udp,
            local: "127.0.0.1:5070".parse().unwrap(),
            remote: "127.0.0.1:5080".parse().unwrap(),
            bytes,
        }
    }

    /// The call's span comes from our SDP's RTP port; its later messages
    /// follow it; a message of an unknown call goes to every trace.
    #[test]
    fn messages_are_counted_and_traced_to_their_call_span() {
        let sup = Supervisor::new();
        let hub = TraceHub::default();
        let metrics = Arc::new(SipMessageMetrics::new());
        let ports = HashMap::from([(30_010, 1u8), (30_074, 2u8)]);
        let ops = SipOps::register_full(&sup, metrics.clone(), hub.clone(), ports);
        ops.message(&seen(true, &invite("early", 30_074)));
        let mut sub = hub.subscribe_span(2);
        ops.message(&seen(true, &invite("c2", 30_074)));
        ops.message(&seen(false, &ok("c2")));
        ops.message(&seen(false, &ok("unknown")));
        ops.message(&seen(false, b"not SIP at all"));
        let mut got = Vec::new();
        while let Ok(TraceRecord::Udp { span, src, .. }) = sub.rx.try_recv() {
            got.push((span, src.port()));
        }
        assert_eq!(
            got,
            vec![(Some(2), 5070), (Some(2), 5080), (None, 5080), (None, 5080)]
        );
        let mut out = crate::ops::metrics::Exposition::default();
        metrics.collect(&mut out);
        let text = out.finish();
        assert!(
            text.contains(r#"tdmgw_sip_requests_total{direction="out",method="INVITE"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tdmgw_sip_responses_total{direction="in",method="INVITE",code="200"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn beats_reach_the_supervisor() {
        let sup = Supervisor::new();
        let ops = SipOps::register(&sup);
        assert_eq!(sup.loop_names(), vec![LOOP_NAME.to_string()]);
        ops.beat();
    }
}
