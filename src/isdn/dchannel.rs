//! One span's D-channel signalling stack: Q.921 LAPD with Q.931 on top.
//!
//! [`DChannel`] is the sans-IO join of [`q921::Link`] and [`q931::Q931`]
//! (DESIGN.md §4). The D-channel task feeds it the frames the line layer cut
//! out of TS16 (or the dahdi D-channel fd gave) and drains the frames to send;
//! the call module drives calls through [`DChannel::q931_mut`] and reads
//! [`DChannel::poll_event`].
//!
//! - `handle_frame(now, bytes)`: one received LAPD frame, address field to the
//!   end of the information field (no flags, no FCS).
//! - `handle_timeout(now)`: when `poll_timeout()` said so (earlier is harmless).
//! - After any input or command: [`DChannel::pump`] moves the primitives
//!   between the layers (the `handle_*` methods pump by themselves; call it
//!   after a Q.931 command), then drain `poll_transmit()` and `poll_event()`.
//!
//! The primitives cross as Q.921 §4 and Q.931 §5.9 say: DL-ESTABLISH
//! request/confirm/indication, DL-RELEASE confirm/indication, DL-DATA. One
//! rule is ours: a DL-ESTABLISH indication while Q.931 believes the link is
//! up means Q.921 re-established on its own (after an MDL error, a FRMR or
//! an N(R) error) and discarded its I queues (Q.921 §5.7.1), so messages may
//! have been lost. Q.931 is then told "released, established", which runs the
//! §5.9 procedure: calls not yet active are cleared, active ones are kept
//! and reconciled with STATUS ENQUIRY.

use std::time::Instant;

use tracing::{debug, warn};

use super::q921::{self, Link, LinkConfig};
use super::q931::{self, DlIndication, DlRequest, Q931};

/// Counters of the glue itself (each layer counts its own errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DChannelCounters {
    /// DL-DATA requests Q.921 refused (its I queue full or the link releasing);
    /// Q.931's timers recover the call.
    pub data_refused: u64,
    /// Q.921 re-establishments without a release (see the module doc).
    pub reestablishments: u64,
    /// MDL-ERROR indications from Q.921.
    pub mdl_errors: u64,
}

/// A span's Q.921 + Q.931. See the module doc for the contract.
pub struct DChannel {
    span: u8,
    link: Link,
    q931: Q931,
    counters: DChannelCounters,
}

impl DChannel {
    /// Builds the stack; the link starts establishing at the first
    /// `handle_timeout` (Q.921 §5.5.1, "establishment at start-up").
    pub fn new(link: LinkConfig, q931: q931::Config, now: Instant) -> DChannel {
        let span = q931.span;
        DChannel {
            span,
            link: Link::new(link, now),
            q931: Q931::new(q931),
            counters: DChannelCounters::default(),
        }
    }

    /// The Q.931 layer, to read call and channel state.
    pub fn q931(&self) -> &Q931 {
        &self.q931
    }

    /// The Q.931 layer, for commands. Call [`DChannel::pump`] afterwards.
    pub fn q931_mut(&mut self) -> &mut Q931 {
        &mut self.q931
    }

    /// The Q.921 layer, to read its state and counters.
    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn counters(&self) -> &DChannelCounters {
        &self.counters
    }

    /// One received LAPD frame (no flags, no FCS).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.link.handle_frame(now, frame);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.q931.handle_timeout(now);
        self.pump(now);
    }

    /// The earlier of the two layers' deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.link.poll_timeout(), self.q931.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next LAPD frame to send (no flags, no FCS).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    /// The next event for the call module.
    pub fn poll_event(&mut self) -> Option<q931::Event> {
        self.q931.poll_event()
    }

    /// Moves primitives between Q.921 and Q.931 until neither has any left.
    /// Bounded: each pass consumes what the layers queued, and a layer only
    /// queues in answer to input.
    pub fn pump(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(ev) = self.link.poll_event() {
                moved = true;
                self.link_event(now, ev);
            }
            while let Some(req) = self.q931.poll_dl() {
                moved = true;
                self.q931_request(now, req);
            }
            if !moved {
                return;
            }
        }
    }

    fn link_event(&mut self, now: Instant, ev: q921::Event) {
        match ev {
            q921::Event::EstablishConfirm => self.established(now, false),
            q921::Event::EstablishIndication { discarded } => {
                self.established(now, discarded > 0 || self.q931.link_up())
            }
            q921::Event::ReleaseConfirm | q921::Event::ReleaseIndication { .. } => {
                if self.q931.link_up() {
                    self.q931.handle_dl(now, DlIndication::Released);
                }
            }
            q921::Event::Data(bytes) => self.q931.handle_dl(now, DlIndication::Data(bytes)),
            // PRI carries no broadcast call control (TEI 0 only); a UI frame
            // on SAPI 0 is counted by Q.921 and goes no further.
            q921::Event::UnitData(_) => {}
            q921::Event::MdlError(e) => {
                self.counters.mdl_errors += 1;
                debug!(span = self.span, mdl = %e.letter(), "MDL-ERROR");
            }
        }
    }

    /// DL-ESTABLISH confirm or indication. `lost`: Q.921 re-established by
    /// itself and may have dropped messages (module doc).
    fn established(&mut self, now: Instant, lost: bool) {
        if lost && self.q931.link_up() {
            self.counters.reestablishments += 1;
            warn!(
                span = self.span,
                "data link re-established by Q.921; reconciling calls (Q.931 5.9)"
            );
            self.q931.handle_dl(now, DlIndication::Released);
        }
        if !self.q931.link_up() {
            self.q931.handle_dl(now, DlIndication::Established);
        }
    }

    fn q931_request(&mut self, now: Instant, req: DlRequest) {
        match req {
            // Q.931 asks for the link after it was told "released" by the
            // re-establishment rule above, while Q.921 is already up again: a
            // DL-ESTABLISH request now would send SABME on a working link,
            // which the peer would take as another re-establishment, and so
            // on. The link is there, so confirm it at once.
            DlRequest::Establish if self.link.state().is_established() => {
                if !self.q931.link_up() {
                    self.q931.handle_dl(now, DlIndication::Established);
                }
            }
            DlRequest::Establish => self.link.dl_establish(now),
            DlRequest::Data(bytes) => {
                if let Err(e) = self.link.dl_data(now, &bytes) {
                    self.counters.data_refused += 1;
                    debug!(span = self.span, error = ?e, "DL-DATA refused by Q.921");
                }
            }
        }
    }
}
