//! RFC 3261 §17.2.1 INVITE server transaction (Figure 7) as updated by
//! RFC 6026 §7.1 (Accepted state, timer L), sans-IO.
//!
//! Contract: create when a new INVITE arrives; the TU sends 100 Trying (or
//! another provisional) through `send_response` at once (§17.2.1). Feed
//! INVITE retransmissions to `handle_request`, matched ACKs to `handle_ack`,
//! the TU's responses (emitted bytes) to `send_response`. Drain
//! `poll_transmit`/`poll_event`, arm `poll_timeout`, call `handle_timeout`.
//! Timers: G (unreliable) and H in Completed, I in Confirmed, L in Accepted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::transaction::{Deadlines, TimerValues};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026 §7.1.
    Accepted,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerTimer {
    /// Final response retransmit, T1 doubling capped at T2 (unreliable).
    G = 0,
    /// Wait for ACK, 64*T1.
    H = 1,
    /// Absorb ACK retransmissions: T4 unreliable, 0 reliable.
    I = 2,
    /// RFC 6026: absorb INVITE retransmissions after a 2xx, 64*T1.
    L = 3,
}

const TIMERS: [InviteServerTimer; 4] = [
    InviteServerTimer::G,
    InviteServerTimer::H,
    InviteServerTimer::I,
    InviteServerTimer::L,
];

/// What the INVITE server transaction tells its TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerEvent {
    /// Timer H fired: no ACK for our non-2xx final (§17.2.1).
    AckTimeout,
    /// RFC 6026 §7.1: an ACK (for our 2xx) matched in Accepted, for the TU.
    Ack,
    TransportError,
}

#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    reliable: bool,
    timers: TimerValues,
    deadlines: Deadlines<4>,
    g_interval: Duration,
    last_response: Option<Vec<u8>>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<InviteServerEvent>,
}

impl InviteServer {
    pub fn new(reliable: bool, timers: TimerValues) -> Self {
        InviteServer {
            state: InviteServerState::Proceeding,
            reliable,
            timers,
            deadlines: Deadlines::new(),
            g_interval: Duration::from_millis(timers.t1_ms),
            last_response: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    fn t1(&self) -> Duration {
        Duration::from_millis(self.timers.t1_ms)
    }

    fn set_state(&mut self, new: InviteServerState) {
        tracing::debug!(old = ?self.state, new = ?new, "sip INVITE server transaction");
        self.state = new;
        self.deadlines.stop_all();
    }

    fn arm(&mut self, timer: InviteServerTimer, at: Instant) {
        self.deadlines.arm(timer as usize, at);
    }

    /// A retransmission of the INVITE.
    pub fn handle_request(&mut self, _now: Instant) {
        if matches!(
            self.state,
            InviteServerState::Proceeding | InviteServerState::Completed
        ) {
            self.transmits.extend(self.last_response.clone());
        }
        // Confirmed and Accepted absorb it (§17.2.1, RFC 6026 §7.1).
    }

    pub fn handle_ack(&mut self, now: Instant) {
        match self.state {
            InviteServerState::Completed => {
                self.set_state(InviteServerState::Confirmed);
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.timers.t4_ms)
                };
                self.arm(InviteServerTimer::I, now + i);
            }
            InviteServerState::Accepted => self.events.push_back(InviteServerEvent::Ack),
            _ => {}
        }
    }

    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Vec<u8>) {
        match (self.state, status) {
            (InviteServerState::Proceeding, 100..=199) => {}
            (InviteServerState::Proceeding, 200..=299) => {
                self.set_state(InviteServerState::Accepted);
                self.arm(InviteServerTimer::L, now + self.t1() * 64);
            }
            (InviteServerState::Proceeding, _) => {
                self.set_state(InviteServerState::Completed);
                if !self.reliable {
                    self.arm(InviteServerTimer::G, now + self.g_interval);
                }
                self.arm(InviteServerTimer::H, now + self.t1() * 64);
            }
            // RFC 6026 §7.1: the TU's 2xx retransmissions pass through Accepted.
            (InviteServerState::Accepted, 200..=299) => {}
            _ => return,
        }
        self.transmits.push_back(bytes.clone());
        self.last_response = Some(bytes);
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != InviteServerState::Terminated {
            self.events.push_back(InviteServerEvent::TransportError);
            self.set_state(InviteServerState::Terminated);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            if self.deadlines.take_due(timer as usize, now) {
                match timer {
                    InviteServerTimer::G => {
                        // §17.2.1: resend the final; G = min(2G, T2).
                        self.transmits.extend(self.last_response.clone());
                        self.g_interval =
                            (self.g_interval * 2).min(Duration::from_millis(self.timers.t2_ms));
                        self.arm(InviteServerTimer::G, now + self.g_interval);
                    }
                    InviteServerTimer::H => {
                        self.events.push_back(InviteServerEvent::AckTimeout);
                        self.set_state(InviteServerState::Terminated);
                    }
                    InviteServerTimer::I | InviteServerTimer::L => {
                        self.set_state(InviteServerState::Terminated)
                    }
                }
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<InviteServerEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_retransmits_with_g_capped_at_t2_until_h() {
        let start = Instant::now();
        let mut s = InviteServer::new(false, TimerValues::default());
        s.send_response(start, 100, b"100".to_vec());
        s.handle_request(start);
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"100"[..]));
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"100"[..]));
        s.send_response(start, 486, b"486".to_vec());
        let mut sent = vec![];
        let mut now = start;
        while let Some(d) = s.poll_timeout() {
            while s.poll_transmit().is_some() {
                sent.push((now - start).as_millis() as u64);
            }
            now = d;
            s.handle_timeout(now);
        }
        // ACKs lost: G at 0.5, 1, 2, 4, 4, ... s until H at 32 s.
        assert_eq!(sent[..6], [0, 500, 1500, 3500, 7500, 11500]);
        assert_eq!(*sent.last().unwrap(), 31500);
        assert_eq!(s.poll_event(), Some(InviteServerEvent::AckTimeout));
    }

    #[test]
    fn ack_confirms_then_timer_i() {
        let now = Instant::now();
        let mut s = InviteServer::new(false, TimerValues::default());
        s.send_response(now, 603, b"603".to_vec());
        s.handle_request(now);
        assert_eq!(std::iter::from_fn(|| s.poll_transmit()).count(), 2);
        s.handle_ack(now);
        assert_eq!(s.state(), InviteServerState::Confirmed);
        s.handle_request(now);
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
        s.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(s.state(), InviteServerState::Terminated);
    }

    #[test]
    fn rfc6026_accepted_forwards_2xx_and_ack() {
        let now = Instant::now();
        let mut s = InviteServer::new(true, TimerValues::default());
        s.send_response(now, 200, b"200".to_vec());
        assert_eq!(s.state(), InviteServerState::Accepted);
        s.send_response(now, 200, b"200".to_vec());
        assert_eq!(std::iter::from_fn(|| s.poll_transmit()).count(), 2);
        s.handle_request(now);
        assert_eq!(s.poll_transmit(), None, "INVITE retransmission absorbed");
        s.handle_ack(now);
        assert_eq!(s.poll_event(), Some(InviteServerEvent::Ack));
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(32)));
        s.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(s.state(), InviteServerState::Terminated);
    }
}
