//! RFC 3261 §17.1.1 INVITE client transaction (Figure 5) as updated by
//! RFC 6026 §8.4 (Accepted state: 2xx and its retransmissions go to the TU,
//! which ACKs them itself), sans-IO.
//!
//! Contract as for [`super::transaction::NonInviteClient`]: create with the
//! parsed INVITE, feed matched responses, transport errors and timeouts,
//! drain `poll_transmit`/`poll_event`, arm `poll_timeout`. The ACK for a
//! non-2xx final response is built here (§17.1.1.3) and retransmitted for
//! each retransmission of that response while in Completed.
//! Timers: A (unreliable) and B in Calling, B in Proceeding, D in Completed,
//! M in Accepted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::header::Method;
use super::message::{Message, StartLine};
use super::transaction::{ClientEvent, Deadlines, TimerValues};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    /// RFC 6026 §8.4.
    Accepted,
    Completed,
    Terminated,
}

/// Timers of Figure 5 and RFC 6026, indexing the deadline table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientTimer {
    /// INVITE retransmit, T1 doubling (unreliable only).
    A = 0,
    /// INVITE transaction timeout, 64*T1.
    B = 1,
    /// Wait for response retransmits: at least 32 s unreliable, 0 reliable.
    D = 2,
    /// RFC 6026: wait for 2xx retransmissions, 64*T1.
    M = 3,
}

const TIMERS: [InviteClientTimer; 4] = [
    InviteClientTimer::A,
    InviteClientTimer::B,
    InviteClientTimer::D,
    InviteClientTimer::M,
];

/// §17.1.1.3: Timer D is "at least 32 seconds" for unreliable transports.
pub const TIMER_D_UNRELIABLE_MS: u64 = 32_000;

#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    request: Message,
    request_bytes: Vec<u8>,
    reliable: bool,
    timers: TimerValues,
    deadlines: Deadlines<4>,
    a_interval: Duration,
    ack: Option<Vec<u8>>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
}

impl InviteClient {
    pub fn new(now: Instant, request: Message, reliable: bool, timers: TimerValues) -> Self {
        let t1 = Duration::from_millis(timers.t1_ms);
        let request_bytes = request.to_bytes();
        let mut t = InviteClient {
            state: InviteClientState::Calling,
            request,
            request_bytes,
            reliable,
            timers,
            deadlines: Deadlines::new(),
            a_interval: t1,
            ack: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.transmits.push_back(t.request_bytes.clone());
        if !reliable {
            t.arm(InviteClientTimer::A, now + t1);
        }
        t.arm(InviteClientTimer::B, now + t1 * 64);
        t
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    fn arm(&mut self, timer: InviteClientTimer, at: Instant) {
        self.deadlines.arm(timer as usize, at);
    }

    fn set_state(&mut self, new: InviteClientState) {
        tracing::debug!(old = ?self.state, new = ?new, "sip INVITE client transaction");
        self.state = new;
        if new == InviteClientState::Terminated {
            self.deadlines.stop_all();
        }
    }

    pub fn handle_response(&mut self, now: Instant, response: Message) {
        let Some(status) = response.status() else {
            return;
        };
        use InviteClientState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                // §17.1.1.2: no retransmissions in Proceeding, and Timer B
                // only times out Calling: a ringing call waits for its final
                // response as long as the TU lets it.
                self.deadlines.stop(InviteClientTimer::A as usize);
                self.deadlines.stop(InviteClientTimer::B as usize);
                if self.state == Calling {
                    self.set_state(Proceeding);
                }
                self.events
                    .push_back(ClientEvent::Response(Box::new(response)));
            }
            (Calling | Proceeding, 200..=299) => self.on_2xx(now, response),
            (Calling | Proceeding, _) => self.on_non_2xx_final(now, response),
            // RFC 6026 §8.4: 2xx retransmissions in Accepted go to the TU.
            (Accepted, 200..=299) => self
                .events
                .push_back(ClientEvent::Response(Box::new(response))),
            // §17.1.1.2: a retransmitted final in Completed is ACKed again, not passed up.
            (Completed, 300..) => self.transmits.extend(self.ack.clone()),
            _ => {}
        }
    }

    fn on_2xx(&mut self, now: Instant, response: Message) {
        self.events
            .push_back(ClientEvent::Response(Box::new(response)));
        self.deadlines.stop_all();
        self.set_state(InviteClientState::Accepted);
        let m = Duration::from_millis(self.timers.t1_ms) * 64;
        self.arm(InviteClientTimer::M, now + m);
    }

    fn on_non_2xx_final(&mut self, now: Instant, response: Message) {
        let ack = build_ack(&self.request, &response).to_bytes();
        self.transmits.push_back(ack.clone());
        self.ack = Some(ack);
        self.events
            .push_back(ClientEvent::Response(Box::new(response)));
        self.deadlines.stop_all();
        self.set_state(InviteClientState::Completed);
        let d = if self.reliable {
            0
        } else {
            TIMER_D_UNRELIABLE_MS
        };
        self.arm(InviteClientTimer::D, now + Duration::from_millis(d));
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            InviteClientState::Calling | InviteClientState::Proceeding
        ) {
            self.events.push_back(ClientEvent::TransportError);
            self.set_state(InviteClientState::Terminated);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            if self.deadlines.take_due(timer as usize, now) {
                match timer {
                    InviteClientTimer::A => self.on_timer_a(now),
                    InviteClientTimer::B => {
                        // §17.1.1.2: Timer B in Calling informs the TU.
                        self.events.push_back(ClientEvent::Timeout);
                        self.set_state(InviteClientState::Terminated);
                    }
                    InviteClientTimer::D | InviteClientTimer::M => {
                        self.set_state(InviteClientState::Terminated)
                    }
                }
            }
        }
    }

    fn on_timer_a(&mut self, now: Instant) {
        if self.state == InviteClientState::Calling {
            // §17.1.1.2: retransmit and double A (no T2 cap for INVITE).
            self.transmits.push_back(self.request_bytes.clone());
            self.a_interval *= 2;
            self.arm(InviteClientTimer::A, now + self.a_interval);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// §17.1.1.3: the ACK for a non-2xx final response: Request-URI, Call-ID,
/// From and CSeq number of the INVITE, only its top Via, the response's To
/// (with tag), the INVITE's Route headers, method ACK.
pub fn build_ack(invite: &Message, response: &Message) -> Message {
    let uri = match &invite.start {
        StartLine::Request { uri, .. } => uri.clone(),
        StartLine::Response { .. } => super::uri::Uri::Other {
            scheme: "invalid".into(),
            rest: String::new(),
        },
    };
    let mut ack = Message {
        start: StartLine::Request {
            method: Method::Ack,
            uri,
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    if let Some(via) = invite.headers_named("Via").next() {
        let top = via
            .value_str()
            .ok()
            .and_then(|v| super::text::split_commas(v).ok())
            .and_then(|v| v.first().map(|s| s.to_string()));
        ack.push("Via", top.unwrap_or_default());
    }
    ack.headers.extend(invite.headers_named("Route").cloned());
    ack.push("Max-Forwards", "70");
    ack.headers.extend(invite.headers_named("From").cloned());
    ack.headers.extend(response.headers_named("To").cloned());
    ack.headers.extend(invite.headers_named("Call-ID").cloned());
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    ack.push("CSeq", format!("{seq} ACK"));
    ack
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    const INVITE: &[u8] =
        b"INVITE sip:999@core SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKi1\r\n\
Route: <sip:edge;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:gw>;tag=1\r\nTo: <sip:999@core>\r\n\
Call-ID: i1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn invite() -> Message {
        Message::parse(INVITE, Framing::Datagram, Limits::default()).unwrap()
    }

    fn response(status: u16) -> Message {
        crate::sip::response_to(&invite(), status, None, Some("core1"))
    }

    fn drain(t: &mut InviteClient) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    #[test]
    fn timer_a_doubles_without_cap_until_b() {
        let start = Instant::now();
        let mut t = InviteClient::new(start, invite(), false, TimerValues::default());
        let mut sent = vec![];
        let mut now = start;
        for _ in 0..20 {
            sent.extend(
                drain(&mut t)
                    .iter()
                    .map(|_| (now - start).as_millis() as u64),
            );
            let Some(d) = t.poll_timeout() else { break };
            now = d;
            t.handle_timeout(now);
        }
        // A: 0.5, 1, 2, 4, 8, 16 s intervals; B at 32 s.
        assert_eq!(sent, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(t.poll_event(), Some(ClientEvent::Timeout));
        assert_eq!(t.state(), InviteClientState::Terminated);
    }

    #[test]
    fn non_2xx_final_is_acked_inside_and_reacked() {
        let now = Instant::now();
        let mut t = InviteClient::new(now, invite(), false, TimerValues::default());
        drain(&mut t);
        t.handle_response(now, response(180));
        assert_eq!(t.state(), InviteClientState::Proceeding);
        t.handle_response(now, response(486));
        assert_eq!(t.state(), InviteClientState::Completed);
        let acks = drain(&mut t);
        assert_eq!(acks.len(), 1);
        let ack = Message::parse(&acks[0], Framing::Stream, Limits::default()).unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.to().unwrap().tag(), Some("core1"));
        assert_eq!(ack.vias().unwrap()[0].branch(), Some("z9hG4bKi1"));
        assert_eq!(ack.headers_named("Route").count(), 1);
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(events.len(), 2);
        // The ACK was lost: the retransmitted 486 gets the same ACK, not the TU.
        t.handle_response(now, response(486));
        assert_eq!(drain(&mut t), acks);
        assert_eq!(t.poll_event(), None);
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(t.state(), InviteClientState::Terminated);
    }

    #[test]
    fn rfc6026_accepted_passes_2xx_retransmissions_up() {
        let now = Instant::now();
        let mut t = InviteClient::new(now, invite(), true, TimerValues::default());
        drain(&mut t);
        t.handle_response(now, response(200));
        assert_eq!(t.state(), InviteClientState::Accepted);
        t.handle_response(now, response(200));
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(events.len(), 2);
        assert!(
            drain(&mut t).is_empty(),
            "no ACK for 2xx inside the transaction"
        );
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(t.state(), InviteClientState::Terminated);
    }

    #[test]
    fn ringing_longer_than_timer_b_does_not_time_out() {
        let now = Instant::now();
        let mut t = InviteClient::new(now, invite(), false, TimerValues::default());
        drain(&mut t);
        t.handle_response(now, response(180));
        assert_eq!(t.poll_timeout(), None);
        t.handle_timeout(now + Duration::from_secs(120));
        assert_eq!(t.state(), InviteClientState::Proceeding);
        t.handle_response(now + Duration::from_secs(120), response(200));
        assert_eq!(t.state(), InviteClientState::Accepted);
    }

    #[test]
    fn transport_error_in_calling() {
        let now = Instant::now();
        let mut t = InviteClient::new(now, invite(), false, TimerValues::default());
        t.handle_transport_error(now);
        assert_eq!(t.poll_event(), Some(ClientEvent::TransportError));
    }
}
