//! RFC 3261 §17 client transactions, sans-IO. This slice holds the
//! non-INVITE client transaction (§17.1.2, Figure 6); the INVITE machines
//! follow the same contract.
//!
//! # Contract
//!
//! - Create with [`NonInviteClient::new`]`(now, request_bytes, reliable, timers)`:
//!   the request is queued for sending at once.
//! - Feed responses matched to this transaction (§17.1.3: top Via branch and
//!   CSeq method) with `handle_response(now, msg)`, transport failures with
//!   `handle_transport_error(now)`.
//! - Drain `poll_transmit()` (bytes to send on the transaction's transport)
//!   and `poll_event()` (what the TU must see), arm one timer at
//!   `poll_timeout()`, and call `handle_timeout(now)` when it passes.
//! - The transaction never reads a clock: time is the `now` passed in.
//!
//! Timers run per state: Trying E (unreliable only) and F; Proceeding E and F;
//! Completed K.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::message::Message;

/// A transaction's timers: one deadline per timer of its RFC 3261 figure,
/// indexed by the machine's timer enum (`Timer::E as usize`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines<const N: usize>([Option<Instant>; N]);

impl<const N: usize> Deadlines<N> {
    pub(crate) fn new() -> Self {
        Deadlines([None; N])
    }

    pub(crate) fn arm(&mut self, timer: usize, at: Instant) {
        self.0[timer] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: usize) {
        self.0[timer] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.0 = [None; N];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Whether `timer` is due at `now`; a due timer is disarmed.
    pub(crate) fn take_due(&mut self, timer: usize, now: Instant) -> bool {
        let due = self.0[timer].is_some_and(|d| d <= now);
        if due {
            self.0[timer] = None;
        }
        due
    }
}

/// RFC 3261 §17.1.1.1 / Table 4 base values, configurable (site config
/// `sip.timers`, checked against `config::site::SIP_TIMERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerValues {
    /// RTT estimate, default 500 ms.
    pub t1_ms: u64,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2_ms: u64,
    /// Maximum duration a message remains in the network, default 5 s.
    pub t4_ms: u64,
}

impl Default for TimerValues {
    fn default() -> Self {
        TimerValues {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
        }
    }
}

impl TimerValues {
    fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
}

/// Timers of the non-INVITE client transaction (Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Request retransmit interval (unreliable transports).
    E = 0,
    /// Transaction timeout, 64*T1.
    F = 1,
    /// Wait time for response retransmissions: T4 unreliable, 0 reliable.
    K = 2,
}

const TIMERS: [Timer; 3] = [Timer::E, Timer::F, Timer::K];

/// States of Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What a client transaction tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A provisional or final response (passed up once per state change rules).
    Response(Box<Message>),
    /// Timer F fired: no final response (§17.1.2.2; the TU treats it as 408).
    Timeout,
    /// The transport reported a failure (§17.1.4; treated as 503).
    TransportError,
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2).
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    request: Vec<u8>,
    reliable: bool,
    timers: TimerValues,
    deadlines: Deadlines<3>,
    /// Current Timer E interval.
    e_interval: Duration,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
}

impl NonInviteClient {
    pub fn new(now: Instant, request: Vec<u8>, reliable: bool, timers: TimerValues) -> Self {
        let mut t = NonInviteClient {
            state: NonInviteClientState::Trying,
            request,
            reliable,
            timers,
            deadlines: Deadlines::new(),
            e_interval: timers.t1(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.transmits.push_back(t.request.clone());
        // §17.1.2.2: Timer E = T1 on unreliable transports; Timer F = 64*T1 always.
        if !reliable {
            t.arm(Timer::E, now + t.e_interval);
        }
        t.arm(Timer::F, now + timers.t1() * 64);
        t
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    fn arm(&mut self, timer: Timer, at: Instant) {
        self.deadlines.arm(timer as usize, at);
    }

    fn stop(&mut self, timer: Timer) {
        self.deadlines.stop(timer as usize);
    }

    fn set_state(&mut self, new: NonInviteClientState) {
        tracing::debug!(old = ?self.state, new = ?new, "sip non-INVITE client transaction");
        self.state = new;
        if new == NonInviteClientState::Terminated {
            self.deadlines.stop_all();
        }
    }

    /// A response matched to this transaction.
    pub fn handle_response(&mut self, now: Instant, response: Message) {
        let Some(status) = response.status() else {
            return;
        };
        use NonInviteClientState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => self.on_provisional(response),
            (Trying | Proceeding, _) => self.on_final(now, response),
            // §17.1.2.2: Completed absorbs retransmitted responses.
            (Completed | Terminated, _) => {}
        }
    }

    fn on_provisional(&mut self, response: Message) {
        if self.state == NonInviteClientState::Trying {
            self.set_state(NonInviteClientState::Proceeding);
        }
        self.events
            .push_back(ClientEvent::Response(Box::new(response)));
    }

    fn on_final(&mut self, now: Instant, response: Message) {
        self.events
            .push_back(ClientEvent::Response(Box::new(response)));
        self.stop(Timer::E);
        self.stop(Timer::F);
        self.set_state(NonInviteClientState::Completed);
        // §17.1.2.2: Timer K = T4 for unreliable transports, zero for reliable.
        let k = if self.reliable {
            Duration::ZERO
        } else {
            self.timers.t4()
        };
        self.arm(Timer::K, now + k);
    }

    /// §17.1.4: a transport failure ends the transaction and is reported.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            self.events.push_back(ClientEvent::TransportError);
            self.set_state(NonInviteClientState::Terminated);
        }
    }

    /// The earliest armed deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// Run every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in TIMERS {
            if self.deadlines.take_due(timer as usize, now) {
                match timer {
                    Timer::E => self.on_timer_e(now),
                    Timer::F => self.on_timer_f(),
                    Timer::K => self.set_state(NonInviteClientState::Terminated),
                }
            }
        }
    }

    fn on_timer_e(&mut self, now: Instant) {
        // §17.1.2.2: in Trying the interval doubles up to T2; in Proceeding it is T2.
        self.e_interval = match self.state {
            NonInviteClientState::Trying => (self.e_interval * 2).min(self.timers.t2()),
            NonInviteClientState::Proceeding => self.timers.t2(),
            _ => return,
        };
        self.transmits.push_back(self.request.clone());
        self.arm(Timer::E, now + self.e_interval);
    }

    fn on_timer_f(&mut self) {
        if matches!(
            self.state,
            NonInviteClientState::Trying | NonInviteClientState::Proceeding
        ) {
            self.events.push_back(ClientEvent::Timeout);
            self.set_state(NonInviteClientState::Terminated);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    const OPTIONS: &[u8] = b"OPTIONS sip:core SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKo1\r\n\
From: <sip:gw>;tag=1\r\nTo: <sip:core>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn response(status: u16) -> Message {
        let req = Message::parse(OPTIONS, Framing::Datagram, Limits::default()).unwrap();
        crate::sip::response_to(&req, status, None, Some("t"))
    }

    /// Run the transaction to `until`, collecting the times of each transmission.
    fn run(t: &mut NonInviteClient, start: Instant, until: Instant) -> Vec<u64> {
        let mut sent = Vec::new();
        let mut now = start;
        loop {
            while t.poll_transmit().is_some() {
                sent.push((now - start).as_millis() as u64);
            }
            match t.poll_timeout() {
                Some(d) if d <= until => {
                    now = d;
                    t.handle_timeout(now);
                }
                _ => return sent,
            }
        }
    }

    #[test]
    fn trying_timer_e_backs_off_to_t2_then_timer_f() {
        let start = Instant::now();
        let mut t = NonInviteClient::new(start, OPTIONS.to_vec(), false, TimerValues::default());
        let sent = run(&mut t, start, start + Duration::from_secs(40));
        // All responses lost: E at 0.5, 1, 2, 4 s intervals, then T2 = 4 s, until F at 32 s.
        assert_eq!(
            sent,
            [
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(t.poll_event(), Some(ClientEvent::Timeout));
        assert_eq!(t.state(), NonInviteClientState::Terminated);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn proceeding_retransmits_every_t2_and_completed_absorbs() {
        let start = Instant::now();
        let mut t = NonInviteClient::new(start, OPTIONS.to_vec(), false, TimerValues::default());
        assert!(t.poll_transmit().is_some());
        t.handle_response(start, response(100));
        assert_eq!(t.state(), NonInviteClientState::Proceeding);
        assert!(matches!(t.poll_event(), Some(ClientEvent::Response(_))));
        let sent = run(&mut t, start, start + Duration::from_millis(9000));
        // First E still at T1, then T2 each.
        assert_eq!(sent, [500, 4500, 8500]);
        let at = start + Duration::from_millis(9000);
        t.handle_response(at, response(200));
        assert_eq!(t.state(), NonInviteClientState::Completed);
        assert!(
            matches!(t.poll_event(), Some(ClientEvent::Response(r)) if r.status() == Some(200))
        );
        // A retransmitted 200 is absorbed; K = T4 ends the transaction.
        t.handle_response(at, response(200));
        assert_eq!(t.poll_event(), None);
        assert_eq!(t.poll_timeout(), Some(at + Duration::from_millis(5000)));
        t.handle_timeout(at + Duration::from_millis(5000));
        assert_eq!(t.state(), NonInviteClientState::Terminated);
    }

    #[test]
    fn reliable_transport_has_no_e_and_zero_k() {
        let start = Instant::now();
        let timers = TimerValues {
            t1_ms: 100,
            ..TimerValues::default()
        };
        let mut t = NonInviteClient::new(start, OPTIONS.to_vec(), true, timers);
        assert!(t.poll_transmit().is_some());
        assert_eq!(t.poll_timeout(), Some(start + Duration::from_millis(6400)));
        t.handle_response(start, response(404));
        assert_eq!(t.poll_timeout(), Some(start));
        t.handle_timeout(start);
        assert_eq!(t.state(), NonInviteClientState::Terminated);
    }

    #[test]
    fn transport_error_reaches_the_tu() {
        let start = Instant::now();
        let mut t = NonInviteClient::new(start, OPTIONS.to_vec(), false, TimerValues::default());
        t.handle_transport_error(start);
        assert_eq!(t.poll_event(), Some(ClientEvent::TransportError));
        assert_eq!(t.state(), NonInviteClientState::Terminated);
    }
}
