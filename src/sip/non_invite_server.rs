//! RFC 3261 §17.2.2 non-INVITE server transaction (Figure 8), sans-IO.
//!
//! Contract: create with [`NonInviteServer::new`] when a new request arrives
//! (§17.2.3 matching is the caller's); pass retransmissions of the request
//! to `handle_request(now)`, the TU's responses (already emitted bytes) to
//! `send_response(now, status, bytes)`, transport failures to
//! `handle_transport_error(now)`. Drain `poll_transmit()` and
//! `poll_event()`, arm `poll_timeout()`, call `handle_timeout(now)`.
//! Timer J (64*T1 unreliable, 0 reliable) runs in Completed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::transaction::TimerValues;

/// States of Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What the server transaction tells its TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// §17.2.4: sending a response failed; the TU is informed.
    TransportError,
}

#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    reliable: bool,
    timers: TimerValues,
    /// Timer J, the only timer of this machine.
    timer_j: Option<Instant>,
    last_response: Option<Vec<u8>>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
}

impl NonInviteServer {
    pub fn new(reliable: bool, timers: TimerValues) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            reliable,
            timers,
            timer_j: None,
            last_response: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    fn set_state(&mut self, new: NonInviteServerState) {
        tracing::debug!(old = ?self.state, new = ?new, "sip non-INVITE server transaction");
        self.state = new;
    }

    /// A retransmission of the request (§17.2.2).
    pub fn handle_request(&mut self, _now: Instant) {
        match self.state {
            // Trying: discarded. Proceeding/Completed: resend the last response.
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => {
                self.transmits.extend(self.last_response.clone());
            }
            NonInviteServerState::Trying | NonInviteServerState::Terminated => {}
        }
    }

    /// The TU's response: 1xx keeps or moves to Proceeding, 2xx-6xx to Completed.
    pub fn send_response(&mut self, now: Instant, status: u16, bytes: Vec<u8>) {
        if matches!(
            self.state,
            NonInviteServerState::Completed | NonInviteServerState::Terminated
        ) {
            // §17.2.2: further final responses from the TU are discarded.
            return;
        }
        self.transmits.push_back(bytes.clone());
        self.last_response = Some(bytes);
        if status < 200 {
            if self.state == NonInviteServerState::Trying {
                self.set_state(NonInviteServerState::Proceeding);
            }
        } else {
            self.set_state(NonInviteServerState::Completed);
            // §17.2.2: Timer J = 64*T1 for unreliable transports, zero for reliable.
            let j = if self.reliable {
                Duration::ZERO
            } else {
                Duration::from_millis(self.timers.t1_ms) * 64
            };
            self.timer_j = Some(now + j);
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != NonInviteServerState::Terminated {
            self.events.push_back(ServerEvent::TransportError);
            self.timer_j = None;
            self.set_state(NonInviteServerState::Terminated);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_j.is_some_and(|j| j <= now) {
            self.timer_j = None;
            self.set_state(NonInviteServerState::Terminated);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_8_with_lost_responses() {
        let now = Instant::now();
        let mut s = NonInviteServer::new(false, TimerValues::default());
        // Trying: a retransmitted request is absorbed.
        s.handle_request(now);
        assert_eq!(s.poll_transmit(), None);
        s.send_response(now, 100, b"100".to_vec());
        assert_eq!(s.state(), NonInviteServerState::Proceeding);
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"100"[..]));
        // The 100 was lost: the retransmitted request gets it again.
        s.handle_request(now);
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"100"[..]));
        s.send_response(now, 200, b"200".to_vec());
        assert_eq!(s.state(), NonInviteServerState::Completed);
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"200"[..]));
        // The 200 was lost: Completed resends it; a second final is discarded.
        s.handle_request(now);
        assert_eq!(s.poll_transmit().as_deref(), Some(&b"200"[..]));
        s.send_response(now, 500, b"500".to_vec());
        assert_eq!(s.poll_transmit(), None);
        // Timer J = 64*T1.
        let j = now + Duration::from_secs(32);
        assert_eq!(s.poll_timeout(), Some(j));
        s.handle_timeout(j - Duration::from_millis(1));
        assert_eq!(s.state(), NonInviteServerState::Completed);
        s.handle_timeout(j);
        assert_eq!(s.state(), NonInviteServerState::Terminated);
    }

    #[test]
    fn reliable_j_is_zero_and_transport_error_reported() {
        let now = Instant::now();
        let mut s = NonInviteServer::new(true, TimerValues::default());
        s.send_response(now, 486, b"486".to_vec());
        assert_eq!(s.poll_timeout(), Some(now));
        let mut s = NonInviteServer::new(false, TimerValues::default());
        s.handle_transport_error(now);
        assert_eq!(s.poll_event(), Some(ServerEvent::TransportError));
        assert_eq!(s.state(), NonInviteServerState::Terminated);
    }
}
