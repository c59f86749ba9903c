//! The data link state machine of one LAPD connection (Q.921 §5, Annex B SDL)
//! for a point-to-point PRI: TEI fixed (state 4 on creation), SAPI 0.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use super::frame::{
    Address, Control, FrameError, FrameRepr, Role, Sapi, Supervisory, Tei, Unnumbered,
};
use super::seq;
use crate::isdn::timers::{TimerId, TimerValues};

/// Q.921 §5.9.3: maximum octets of an information field.
pub const N201_DEFAULT: usize = 260;

/// Parameters of one data link (Q.921 §5.9).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Span number, for log context only.
    pub span: u8,
    pub role: Role,
    pub sapi: Sapi,
    pub tei: Tei,
    /// Window: maximum outstanding I frames (§5.9.5, 1..=127; PRI default 7).
    pub k: u8,
    /// Maximum retransmissions (§5.9.2, default 3).
    pub n200: u8,
    /// Maximum information field octets (§5.9.3, default 260).
    pub n201: usize,
    pub t200: Duration,
    pub t203: Duration,
    /// Keep the link up by ourselves: establish at start-up and, after a
    /// failed establishment or a peer release, try again after a back-off
    /// (a local choice for PRI, where the link must always be up).
    pub auto_establish: bool,
    /// First back-off before re-establishing; doubled each failure...
    pub backoff_min: Duration,
    /// ...up to this bound.
    pub backoff_max: Duration,
    /// Most DL-DATA requests queued beyond the window.
    pub i_queue_max: usize,
}

impl LinkConfig {
    /// A PRI link (TEI 0, SAPI 0) with T200/T203 from the span's timer table.
    pub fn pri(span: u8, role: Role, timers: &TimerValues, n200: u8, k: u8) -> LinkConfig {
        LinkConfig {
            span,
            role,
            sapi: Sapi::CALL_CONTROL,
            tei: Tei::PRI,
            k: k.clamp(1, 127),
            n200: n200.max(1),
            n201: N201_DEFAULT,
            t200: timers.get(TimerId::T200),
            t203: timers.get(TimerId::T203),
            auto_establish: true,
            backoff_min: timers.get(TimerId::T200),
            backoff_max: Duration::from_secs(30),
            i_queue_max: 64,
        }
    }
}

/// Data link states (Q.921 §5 / Annex B). States 1-3 (TEI assignment) do
/// not exist on PRI where the TEI is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// 4: TEI assigned, no multiple-frame operation.
    TeiAssigned,
    /// 5: SABME sent, waiting for UA.
    AwaitingEstablishment,
    /// 6: DISC sent, waiting for UA.
    AwaitingRelease,
    /// 7: multiple-frame established.
    MultipleFrameEstablished,
    /// 8: timer recovery (T200 ran out, polling the peer).
    TimerRecovery,
}

impl State {
    pub fn number(self) -> u8 {
        match self {
            State::TeiAssigned => 4,
            State::AwaitingEstablishment => 5,
            State::AwaitingRelease => 6,
            State::MultipleFrameEstablished => 7,
            State::TimerRecovery => 8,
        }
    }

    /// Whether layer 3 may exchange I frames (states 7 and 8).
    pub fn is_established(self) -> bool {
        matches!(self, State::MultipleFrameEstablished | State::TimerRecovery)
    }
}

/// MDL-ERROR indication codes (Q.921 Appendix II, Table II.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MdlError {
    /// A: unsolicited supervisory response (F=1).
    A,
    /// B: unsolicited DM response (F=1).
    B,
    /// C: unsolicited UA response (F=1).
    C,
    /// D: unsolicited UA response (F=0).
    D,
    /// E: unsolicited DM response (F=0).
    E,
    /// F: peer-initiated re-establishment (SABME).
    F,
    /// G: SABME retransmitted N200 times without answer.
    G,
    /// H: DISC retransmitted N200 times without answer.
    H,
    /// I: status enquiry retransmitted N200 times without answer.
    I,
    /// J: N(R) sequence error.
    J,
    /// K: FRMR received.
    K,
    /// L: undefined or not implemented control field.
    L,
    /// M: information field not permitted.
    M,
    /// N: frame of wrong size.
    N,
    /// O: information field longer than N201.
    O,
}

impl MdlError {
    pub const ALL: [MdlError; 15] = [
        MdlError::A,
        MdlError::B,
        MdlError::C,
        MdlError::D,
        MdlError::E,
        MdlError::F,
        MdlError::G,
        MdlError::H,
        MdlError::I,
        MdlError::J,
        MdlError::K,
        MdlError::L,
        MdlError::M,
        MdlError::N,
        MdlError::O,
    ];

    pub fn letter(self) -> char {
        (b'A' + self as u8) as char
    }
}

/// What the link reports up (DL-* primitives to layer 3, MDL-ERROR to
/// management).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// DL-ESTABLISH confirm: the establishment layer 3 asked for is done.
    EstablishConfirm,
    /// DL-ESTABLISH indication: the link came up (peer or link initiated,
    /// including re-establishment). `discarded` counts DL-DATA requests
    /// thrown away by the re-establishment (§5.7.1: "discard all I queues").
    EstablishIndication { discarded: usize },
    /// DL-RELEASE confirm: the release layer 3 asked for is done.
    ReleaseConfirm,
    /// DL-RELEASE indication: the link went down without layer 3 asking.
    ReleaseIndication { discarded: usize },
    /// DL-DATA indication: an I frame's information field, in sequence.
    Data(Vec<u8>),
    /// DL-UNIT-DATA indication: a UI frame's information field.
    UnitData(Vec<u8>),
    /// MDL-ERROR indication.
    MdlError(MdlError),
}

/// Why a DL-DATA request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// Longer than N201.
    TooLong,
    /// The I queue is full.
    QueueFull,
}

/// Counters of everything the link did and every error kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Invalid frames discarded per §2.9 (short, bad address).
    pub invalid_frames: u64,
    /// Frames for another SAPI/TEI, or of a kind not used on PRI (XID).
    pub ignored_frames: u64,
    /// Frames that are not allowed in the current state or with this C/R.
    pub unexpected_frames: u64,
    pub i_frames_sent: u64,
    pub i_frames_retransmitted: u64,
    pub i_frames_received: u64,
    /// Out-of-sequence I frames (N(S) != V(R)) discarded.
    pub i_frames_out_of_sequence: u64,
    pub rej_sent: u64,
    pub rnr_received: u64,
    pub t200_expiries: u64,
    pub t203_expiries: u64,
    pub establishments: u64,
    pub discarded_requests: u64,
    /// Indexed by `MdlError as usize`.
    pub mdl_errors: [u64; 15],
}

impl Counters {
    pub fn mdl(&self, e: MdlError) -> u64 {
        self.mdl_errors[e as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Timer {
    T200,
    T203,
    /// Local: back-off before an automatic re-establishment.
    Reestablish,
}

const TIMER_COUNT: usize = 3;

/// One LAPD data link. Sans-IO:
///
/// - feed received frames with [`Link::handle_frame`] (address field on, no
///   FCS), layer 3 requests with [`Link::dl_establish`],
///   [`Link::dl_release`], [`Link::dl_data`], [`Link::dl_unit_data`];
/// - drain frames to send with [`Link::poll_transmit`] and primitives for
///   layer 3 with [`Link::poll_event`], after every call;
/// - call [`Link::handle_timeout`] at or after [`Link::poll_timeout`].
///
/// `now` is any monotonic instant; the link never reads a clock.
///
/// Buffering (after libosmocore lapd_core.c "Notes on buffering"): a
/// DL-DATA request is copied into the I queue (owned, at most
/// `i_queue_max`). When the window has room it is copied into one of `k`
/// fixed slots of N201 octets (allocated at creation) and sent with
/// N(S) = V(S). It stays in its slot until an N(R) beyond it is received
/// (V(A) passes it); retransmissions (T200, REJ, timer recovery) are
/// emitted from the slot. Re-establishment and release empty both the slots
/// and the queue, reporting how many requests were discarded. Received
/// information fields are copied into the [`Event::Data`] they travel in.
pub struct Link {
    cfg: LinkConfig,
    state: State,
    vs: u8,
    va: u8,
    vr: u8,
    /// Retransmission count (RC).
    rc: u8,
    peer_busy: bool,
    own_busy: bool,
    reject_exception: bool,
    ack_pending: bool,
    layer3_initiated: bool,
    /// State 5 entered from 7/8 by the link itself (an MDL error): layer 3
    /// still has the link, so the UA tells it only if frames were lost.
    reestablishing: bool,
    /// Layer 3 released the link: do not re-establish by ourselves.
    released_by_layer3: bool,
    backoff: Duration,
    timers: [Option<Instant>; TIMER_COUNT],
    /// `k * n201` octets: retransmission slots.
    slots: Box<[u8]>,
    slot_len: Box<[usize]>,
    /// Slot of V(A).
    slot_head: usize,
    /// Frames in slots, from V(A) on (sent or to be re-sent).
    stored: usize,
    i_queue: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Link {
    /// A link in state 4 (TEI assigned). With `auto_establish` it sends
    /// SABME at the first `handle_timeout(now)` (its timeout is `now`).
    pub fn new(cfg: LinkConfig, now: Instant) -> Link {
        let k = usize::from(cfg.k);
        let mut timers = [None; TIMER_COUNT];
        if cfg.auto_establish {
            timers[Timer::Reestablish as usize] = Some(now);
        }
        Link {
            slots: vec![0; k * cfg.n201].into_boxed_slice(),
            slot_len: vec![0; k].into_boxed_slice(),
            backoff: cfg.backoff_min,
            cfg,
            state: State::TeiAssigned,
            vs: 0,
            va: 0,
            vr: 0,
            rc: 0,
            peer_busy: false,
            own_busy: false,
            reject_exception: false,
            ack_pending: false,
            layer3_initiated: false,
            reestablishing: false,
            released_by_layer3: false,
            timers,
            slot_head: 0,
            stored: 0,
            i_queue: VecDeque::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// V(S), V(A), V(R).
    pub fn sequence_state(&self) -> (u8, u8, u8) {
        (self.vs, self.va, self.vr)
    }

    pub fn peer_busy(&self) -> bool {
        self.peer_busy
    }

    /// Unacknowledged plus queued DL-DATA requests.
    pub fn pending_requests(&self) -> usize {
        self.stored + self.i_queue.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    // ---- layer 3 primitives -------------------------------------------

    /// DL-ESTABLISH request (§5.5.1.1).
    pub fn dl_establish(&mut self, now: Instant) {
        self.released_by_layer3 = false;
        match self.state {
            State::TeiAssigned | State::MultipleFrameEstablished | State::TimerRecovery => {
                self.discard_i_queue();
                self.establish_data_link(now);
                self.layer3_initiated = true;
                self.set_state(State::AwaitingEstablishment);
            }
            State::AwaitingEstablishment => self.layer3_initiated = true,
            State::AwaitingRelease => {}
        }
    }

    /// DL-RELEASE request (§5.6.1).
    pub fn dl_release(&mut self, now: Instant) {
        self.released_by_layer3 = true;
        self.stop(Timer::Reestablish);
        match self.state {
            State::TeiAssigned => self.events.push_back(Event::ReleaseConfirm),
            State::AwaitingRelease => {}
            _ => {
                self.discard_i_queue();
                self.rc = 0;
                self.send_u(Unnumbered::Disc, true, true);
                self.stop(Timer::T203);
                self.start(Timer::T200, now);
                self.set_state(State::AwaitingRelease);
            }
        }
    }

    /// DL-DATA request: queue an information field for acknowledged
    /// transfer. In state 4 this also starts establishment (as layer 3 must
    /// have the link to send on, §5.5.1.1).
    pub fn dl_data(&mut self, now: Instant, info: &[u8]) -> Result<(), DataError> {
        if info.len() > self.cfg.n201 {
            return Err(DataError::TooLong);
        }
        if self.i_queue.len() >= self.cfg.i_queue_max || self.state == State::AwaitingRelease {
            self.counters.discarded_requests += 1;
            return Err(DataError::QueueFull);
        }
        self.i_queue.push_back(info.to_vec());
        match self.state {
            State::TeiAssigned => self.dl_establish(now),
            State::MultipleFrameEstablished => self.transmit_i_frames(now),
            _ => {}
        }
        Ok(())
    }

    /// DL-UNIT-DATA request: one UI command, in any state (§5.2).
    pub fn dl_unit_data(&mut self, info: &[u8]) -> Result<(), DataError> {
        if info.len() > self.cfg.n201 {
            return Err(DataError::TooLong);
        }
        let repr = FrameRepr {
            address: self.address(true),
            control: Control::U {
                kind: Unnumbered::Ui,
                pf: false,
            },
            info,
        };
        self.push_tx(&repr);
        Ok(())
    }

    /// Local receiver busy (§5.6.2 / Annex B "set/clear own receiver busy"):
    /// while set, received I frames are discarded and RNR is sent.
    pub fn set_own_receiver_busy(&mut self, busy: bool) {
        if busy == self.own_busy {
            return;
        }
        self.own_busy = busy;
        if self.state.is_established() {
            let kind = if busy {
                Supervisory::Rnr
            } else {
                Supervisory::Rr
            };
            self.send_s(kind, false, false);
            self.ack_pending = false;
        }
    }

    // ---- timers --------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant) {
        for t in [Timer::T200, Timer::T203, Timer::Reestablish] {
            if self.timers[t as usize].is_some_and(|at| at <= now) {
                self.timers[t as usize] = None;
                match t {
                    Timer::T200 => self.on_t200(now),
                    Timer::T203 => self.on_t203(now),
                    Timer::Reestablish => self.on_reestablish(now),
                }
            }
        }
    }

    fn start(&mut self, t: Timer, now: Instant) {
        let d = match t {
            Timer::T200 => self.cfg.t200,
            Timer::T203 => self.cfg.t203,
            Timer::Reestablish => self.backoff,
        };
        self.timers[t as usize] = Some(now + d);
    }

    fn stop(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    fn running(&self, t: Timer) -> bool {
        self.timers[t as usize].is_some()
    }

    fn on_reestablish(&mut self, now: Instant) {
        if self.state == State::TeiAssigned && !self.released_by_layer3 {
            info!(
                span = self.cfg.span,
                tei = self.cfg.tei.0,
                backoff_ms = self.backoff.as_millis() as u64,
                "q921: establishing data link"
            );
            self.establish_data_link(now);
            self.layer3_initiated = false;
            self.set_state(State::AwaitingEstablishment);
        }
    }

    fn on_t200(&mut self, now: Instant) {
        self.counters.t200_expiries += 1;
        match self.state {
            State::AwaitingEstablishment => {
                if self.rc >= self.cfg.n200 {
                    let discarded = self.discard_i_queue();
                    self.mdl_error(MdlError::G);
                    self.events
                        .push_back(Event::ReleaseIndication { discarded });
                    self.enter_tei_assigned(now);
                } else {
                    self.rc += 1;
                    self.send_u(Unnumbered::Sabme, true, true);
                    self.start(Timer::T200, now);
                }
            }
            State::AwaitingRelease => {
                if self.rc >= self.cfg.n200 {
                    self.mdl_error(MdlError::H);
                    self.events.push_back(Event::ReleaseConfirm);
                    self.enter_tei_assigned(now);
                } else {
                    self.rc += 1;
                    self.send_u(Unnumbered::Disc, true, true);
                    self.start(Timer::T200, now);
                }
            }
            State::MultipleFrameEstablished => {
                // Annex B state 7, T200 expiry: RC = 0, then poll.
                self.rc = 0;
                self.poll_peer(now);
                self.set_state(State::TimerRecovery);
            }
            State::TimerRecovery => {
                if self.rc >= self.cfg.n200 {
                    self.mdl_error(MdlError::I);
                    self.reestablish(now);
                } else {
                    self.poll_peer(now);
                }
            }
            State::TeiAssigned => {}
        }
    }

    /// Annex B T200 expiry in states 7/8: retransmit the last I frame with
    /// P=1, or (nothing outstanding / peer busy) send an enquiry.
    fn poll_peer(&mut self, now: Instant) {
        if self.vs != self.va && !self.peer_busy {
            let ns = seq::prev(self.vs);
            self.send_stored(ns, true);
            self.counters.i_frames_retransmitted += 1;
        } else {
            self.transmit_enquiry();
        }
        self.rc += 1;
        self.start(Timer::T200, now);
    }

    fn on_t203(&mut self, now: Instant) {
        self.counters.t203_expiries += 1;
        if self.state == State::MultipleFrameEstablished {
            // §5.6.3 / Annex B: poll the idle link, RC = 0, timer recovery.
            self.transmit_enquiry();
            self.rc = 0;
            self.start(Timer::T200, now);
            self.set_state(State::TimerRecovery);
        }
    }

    // ---- received frames ---------------------------------------------

    /// A received frame: address field on, no flags or FCS.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        self.counters.frames_in += 1;
        let repr = match FrameRepr::parse_bytes(bytes) {
            Ok(r) => r,
            Err(e) => return self.on_bad_frame(now, bytes, e),
        };
        trace!(span = self.cfg.span, tei = self.cfg.tei.0, frame = %repr, "q921: rx");
        let a = repr.address;
        if a.sapi != self.cfg.sapi || (a.tei != self.cfg.tei && a.tei != Tei::BROADCAST) {
            self.counters.ignored_frames += 1;
            return;
        }
        let command = self.cfg.role.received_is_command(a.cr);
        if a.tei == Tei::BROADCAST
            && !matches!(
                repr.control,
                Control::U {
                    kind: Unnumbered::Ui,
                    ..
                }
            )
        {
            self.counters.ignored_frames += 1;
            return;
        }
        match repr.control {
            Control::I { ns, nr, p } => {
                if repr.info.len() > self.cfg.n201 {
                    return self.frame_rejection(now, MdlError::O);
                }
                if !command {
                    self.counters.unexpected_frames += 1;
                    return;
                }
                self.on_i(now, ns, nr, p, repr.info);
            }
            Control::S { kind, nr, pf } => self.on_s(now, kind, command, nr, pf),
            Control::U { kind, pf } => self.on_u(now, kind, command, pf, repr.info),
        }
        self.flush_ack();
    }

    fn on_bad_frame(&mut self, now: Instant, bytes: &[u8], e: FrameError) {
        if e.is_invalid_frame() {
            self.counters.invalid_frames += 1;
            debug!(span = self.cfg.span, tei = self.cfg.tei.0, error = %e, len = bytes.len(), "q921: invalid frame discarded");
            return;
        }
        // Only frames addressed to us count as rejection conditions.
        let ours = bytes.len() >= 2
            && Sapi(bytes[0] >> 2) == self.cfg.sapi
            && Tei(bytes[1] >> 1) == self.cfg.tei;
        if !ours {
            self.counters.ignored_frames += 1;
            return;
        }
        let code = match e {
            FrameError::UndefinedControl => MdlError::L,
            FrameError::InfoNotPermitted => MdlError::M,
            _ => MdlError::N,
        };
        self.frame_rejection(now, code);
    }

    /// §5.8.5: in states 7 and 8 a frame rejection condition gives
    /// MDL-ERROR and re-establishment (ETSI PRI practice: no FRMR sent);
    /// elsewhere the frame is discarded (and still counted).
    fn frame_rejection(&mut self, now: Instant, code: MdlError) {
        self.mdl_error(code);
        if self.state.is_established() {
            self.reestablish(now);
        }
    }

    fn on_u(&mut self, now: Instant, kind: Unnumbered, command: bool, pf: bool, info: &[u8]) {
        match (kind, command) {
            (Unnumbered::Ui, true) => self.events.push_back(Event::UnitData(info.to_vec())),
            (Unnumbered::Sabme, true) => self.on_sabme(now, pf),
            (Unnumbered::Disc, true) => self.on_disc(now, pf),
            (Unnumbered::Ua, false) => self.on_ua(now, pf),
            (Unnumbered::Dm, false) => self.on_dm(now, pf),
            (Unnumbered::Frmr, false) => {
                if self.state.is_established() {
                    self.mdl_error(MdlError::K);
                    self.reestablish(now);
                } else {
                    self.counters.unexpected_frames += 1;
                }
            }
            (Unnumbered::Xid, _) => self.counters.ignored_frames += 1,
            _ => self.counters.unexpected_frames += 1,
        }
    }

    fn on_sabme(&mut self, now: Instant, p: bool) {
        match self.state {
            // §5.5.1.2 / Annex B state 4: not able to establish (layer 3
            // released the link) -> DM.
            State::TeiAssigned if self.released_by_layer3 => self.send_u(Unnumbered::Dm, false, p),
            State::TeiAssigned => {
                self.send_u(Unnumbered::Ua, false, p);
                self.clear_exceptions();
                self.reset_sequence();
                self.stop(Timer::Reestablish);
                self.events
                    .push_back(Event::EstablishIndication { discarded: 0 });
                self.enter_established(now);
            }
            // §5.5.4.1: same commands crossed: answer UA, stay, wait for ours.
            State::AwaitingEstablishment => self.send_u(Unnumbered::Ua, false, p),
            State::AwaitingRelease => self.send_u(Unnumbered::Dm, false, p),
            // Annex B state 7 (and 8), SABME: the peer re-establishes
            // (MDL-ERROR F). Layer 3 keeps its link; only if I frames of
            // ours were outstanding (V(S) != V(A)) are they discarded and
            // layer 3 told (DL-ESTABLISH indication), as libpri does too.
            // Both ends establishing at start-up over a line that lost the
            // first SABMEs end here once, and must not disturb layer 3.
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.send_u(Unnumbered::Ua, false, p);
                self.clear_exceptions();
                self.mdl_error(MdlError::F);
                if self.frames_outstanding() {
                    let discarded = self.discard_i_queue();
                    self.events
                        .push_back(Event::EstablishIndication { discarded });
                }
                self.reset_sequence();
                self.enter_established(now);
            }
        }
    }

    fn on_disc(&mut self, now: Instant, p: bool) {
        match self.state {
            State::TeiAssigned | State::AwaitingEstablishment => {
                self.send_u(Unnumbered::Dm, false, p)
            }
            State::AwaitingRelease => self.send_u(Unnumbered::Ua, false, p),
            State::MultipleFrameEstablished | State::TimerRecovery => {
                let discarded = self.discard_i_queue();
                self.send_u(Unnumbered::Ua, false, p);
                self.events
                    .push_back(Event::ReleaseIndication { discarded });
                self.enter_tei_assigned(now);
            }
        }
    }

    fn on_ua(&mut self, now: Instant, f: bool) {
        match self.state {
            State::AwaitingEstablishment if f => {
                if self.layer3_initiated {
                    self.events.push_back(Event::EstablishConfirm);
                } else if !self.reestablishing || self.frames_outstanding() {
                    // Established by the link (start-up, after a failure),
                    // or re-established with frames unacknowledged: those
                    // went with the old link (§5.7.1, Annex B state 5 UA).
                    let discarded = self.discard_i_queue();
                    self.events
                        .push_back(Event::EstablishIndication { discarded });
                }
                self.reestablishing = false;
                self.reset_sequence();
                self.enter_established(now);
            }
            State::AwaitingRelease if f => {
                self.events.push_back(Event::ReleaseConfirm);
                self.enter_tei_assigned(now);
            }
            _ => self.mdl_error(if f { MdlError::C } else { MdlError::D }),
        }
    }

    fn on_dm(&mut self, now: Instant, f: bool) {
        match self.state {
            State::TeiAssigned => {
                // Annex B state 4: DM F=0 asks us to establish.
                if !f && !self.released_by_layer3 {
                    self.establish_data_link(now);
                    self.layer3_initiated = false;
                    self.set_state(State::AwaitingEstablishment);
                }
            }
            State::AwaitingEstablishment if f => {
                let discarded = self.discard_i_queue();
                self.events
                    .push_back(Event::ReleaseIndication { discarded });
                self.enter_tei_assigned(now);
            }
            State::AwaitingEstablishment => {}
            State::AwaitingRelease => {
                if f {
                    self.events.push_back(Event::ReleaseConfirm);
                    self.enter_tei_assigned(now);
                }
            }
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.mdl_error(if f { MdlError::B } else { MdlError::E });
                self.reestablish(now);
            }
        }
    }

    fn on_s(&mut self, now: Instant, kind: Supervisory, command: bool, nr: u8, pf: bool) {
        if !self.state.is_established() {
            self.counters.unexpected_frames += 1;
            return;
        }
        self.peer_busy = kind == Supervisory::Rnr;
        if self.peer_busy {
            self.counters.rnr_received += 1;
        }
        if command && pf {
            self.enquiry_response();
        }
        let answers_poll = !command && pf;
        if !seq::nr_valid(self.va, nr, self.vs) {
            return self.nr_error(now);
        }
        if self.state == State::TimerRecovery {
            self.update_va(nr);
            if answers_poll {
                // Annex B state 8: the peer answered our poll.
                self.stop(Timer::T200);
                self.start(Timer::T203, now);
                self.invoke_retransmission(nr);
                self.set_state(State::MultipleFrameEstablished);
                self.transmit_i_frames(now);
            }
            return;
        }
        if answers_poll {
            self.mdl_error(MdlError::A);
        }
        match kind {
            Supervisory::Rej => {
                self.update_va(nr);
                self.stop(Timer::T200);
                self.start(Timer::T203, now);
                self.invoke_retransmission(nr);
                self.transmit_i_frames(now);
            }
            Supervisory::Rnr => {
                self.update_va(nr);
                self.stop(Timer::T203);
                self.start(Timer::T200, now);
            }
            Supervisory::Rr => {
                self.ack_in_state7(now, nr);
                self.transmit_i_frames(now);
            }
        }
    }

    fn on_i(&mut self, now: Instant, ns: u8, nr: u8, p: bool, info: &[u8]) {
        if !self.state.is_established() {
            self.counters.unexpected_frames += 1;
            return;
        }
        self.counters.i_frames_received += 1;
        if self.own_busy {
            if p {
                self.send_s(Supervisory::Rnr, false, true);
                self.ack_pending = false;
            }
        } else if ns == self.vr {
            self.vr = seq::next(self.vr);
            self.reject_exception = false;
            self.events.push_back(Event::Data(info.to_vec()));
            if p {
                self.send_s(Supervisory::Rr, false, true);
                self.ack_pending = false;
            } else {
                self.ack_pending = true;
            }
        } else {
            self.counters.i_frames_out_of_sequence += 1;
            if self.reject_exception {
                if p {
                    self.send_s(Supervisory::Rr, false, true);
                    self.ack_pending = false;
                }
            } else {
                // §5.6.4: one REJ per sequence error.
                self.reject_exception = true;
                self.counters.rej_sent += 1;
                self.send_s(Supervisory::Rej, false, p);
                self.ack_pending = false;
            }
        }
        if !seq::nr_valid(self.va, nr, self.vs) {
            return self.nr_error(now);
        }
        if self.state == State::TimerRecovery || self.peer_busy {
            self.update_va(nr);
        } else {
            self.ack_in_state7(now, nr);
        }
        if self.state == State::MultipleFrameEstablished {
            self.transmit_i_frames(now);
        }
    }

    /// Annex B state 7, valid N(R) not answering a poll.
    fn ack_in_state7(&mut self, now: Instant, nr: u8) {
        if nr == self.vs {
            self.update_va(nr);
            self.stop(Timer::T200);
            self.start(Timer::T203, now);
        } else if nr != self.va {
            self.update_va(nr);
            self.start(Timer::T200, now);
        }
    }

    /// §5.8.2 N(R) sequence error: MDL-ERROR J and re-establishment.
    fn nr_error(&mut self, now: Instant) {
        warn!(
            span = self.cfg.span,
            tei = self.cfg.tei.0,
            va = self.va,
            vs = self.vs,
            "q921: N(R) sequence error"
        );
        self.mdl_error(MdlError::J);
        self.reestablish(now);
    }

    // ---- procedures of Annex B --------------------------------------

    /// "Establish data link": SABME P=1, T200, and the state 5 entry.
    fn establish_data_link(&mut self, now: Instant) {
        self.clear_exceptions();
        self.rc = 0;
        self.send_u(Unnumbered::Sabme, true, true);
        self.stop(Timer::T203);
        self.stop(Timer::Reestablish);
        self.start(Timer::T200, now);
    }

    /// Link-initiated re-establishment from state 7/8.
    fn reestablish(&mut self, now: Instant) {
        self.establish_data_link(now);
        self.layer3_initiated = false;
        self.reestablishing = true;
        self.set_state(State::AwaitingEstablishment);
    }

    /// I frames sent and not acknowledged (V(S) != V(A), Annex B), or kept
    /// for retransmission.
    fn frames_outstanding(&self) -> bool {
        self.vs != self.va || self.stored > 0
    }

    fn enter_established(&mut self, now: Instant) {
        self.stop(Timer::T200);
        self.stop(Timer::Reestablish);
        self.start(Timer::T203, now);
        self.backoff = self.cfg.backoff_min;
        self.counters.establishments += 1;
        self.set_state(State::MultipleFrameEstablished);
        self.transmit_i_frames(now);
    }

    fn enter_tei_assigned(&mut self, now: Instant) {
        self.stop(Timer::T200);
        self.stop(Timer::T203);
        self.discard_i_queue();
        self.reestablishing = false;
        self.set_state(State::TeiAssigned);
        if self.cfg.auto_establish && !self.released_by_layer3 {
            self.start(Timer::Reestablish, now);
            self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        }
    }

    fn clear_exceptions(&mut self) {
        self.peer_busy = false;
        self.reject_exception = false;
        self.own_busy = false;
        self.ack_pending = false;
    }

    fn reset_sequence(&mut self) {
        self.vs = 0;
        self.va = 0;
        self.vr = 0;
    }

    /// Empties slots and queue; returns how many requests were dropped.
    fn discard_i_queue(&mut self) -> usize {
        let n = self.stored + self.i_queue.len();
        self.stored = 0;
        self.slot_head = 0;
        self.i_queue.clear();
        self.counters.discarded_requests += n as u64;
        n
    }

    /// V(A) = N(R), freeing the acknowledged slots.
    fn update_va(&mut self, nr: u8) {
        let acked = usize::from(seq::diff(nr, self.va));
        let acked = acked.min(self.stored);
        self.stored -= acked;
        self.slot_head = (self.slot_head + acked) % usize::from(self.cfg.k);
        self.va = nr;
    }

    /// Annex B "invoke retransmission": V(S) back to N(R); the frames from
    /// there on are sent again from their slots.
    fn invoke_retransmission(&mut self, nr: u8) {
        let back = seq::diff(self.vs, nr);
        self.counters.i_frames_retransmitted += u64::from(back);
        self.vs = nr;
    }

    /// Sends I frames while the window, the peer and the queue allow
    /// (state 7 only; none in timer recovery).
    fn transmit_i_frames(&mut self, now: Instant) {
        if self.state != State::MultipleFrameEstablished {
            return;
        }
        let k = usize::from(self.cfg.k);
        while !self.peer_busy {
            let out = usize::from(seq::diff(self.vs, self.va));
            if out >= k {
                break;
            }
            if out >= self.stored {
                let Some(info) = self.i_queue.pop_front() else {
                    break;
                };
                let slot = (self.slot_head + self.stored) % k;
                let n201 = self.cfg.n201;
                self.slots[slot * n201..slot * n201 + info.len()].copy_from_slice(&info);
                self.slot_len[slot] = info.len();
                self.stored += 1;
            }
            self.send_stored(self.vs, false);
            self.counters.i_frames_sent += 1;
            self.vs = seq::next(self.vs);
            self.ack_pending = false;
            if !self.running(Timer::T200) {
                self.stop(Timer::T203);
                self.start(Timer::T200, now);
            }
        }
    }

    /// Emits the stored I frame with N(S) = `ns`.
    fn send_stored(&mut self, ns: u8, p: bool) {
        let k = usize::from(self.cfg.k);
        let off = usize::from(seq::diff(ns, self.va));
        if off >= self.stored {
            debug_assert!(false, "no stored frame for N(S)={ns}");
            return;
        }
        let slot = (self.slot_head + off) % k;
        let n201 = self.cfg.n201;
        let len = self.slot_len[slot];
        let mut buf = vec![0u8; 4 + len];
        let repr = FrameRepr {
            address: self.address(true),
            control: Control::I { ns, nr: self.vr, p },
            info: &self.slots[slot * n201..slot * n201 + len],
        };
        repr.emit(&mut buf);
        trace!(span = self.cfg.span, tei = self.cfg.tei.0, frame = %repr, "q921: tx");
        self.counters.frames_out += 1;
        self.tx.push_back(buf);
    }

    /// RR (or RNR when busy) command with P=1.
    fn transmit_enquiry(&mut self) {
        let kind = if self.own_busy {
            Supervisory::Rnr
        } else {
            Supervisory::Rr
        };
        self.send_s(kind, true, true);
        self.ack_pending = false;
    }

    /// RR (or RNR) response with F=1.
    fn enquiry_response(&mut self) {
        let kind = if self.own_busy {
            Supervisory::Rnr
        } else {
            Supervisory::Rr
        };
        self.send_s(kind, false, true);
        self.ack_pending = false;
    }

    /// An acknowledgement owed and not carried by an I frame: RR response.
    fn flush_ack(&mut self) {
        if self.ack_pending && self.state.is_established() {
            self.ack_pending = false;
            let kind = if self.own_busy {
                Supervisory::Rnr
            } else {
                Supervisory::Rr
            };
            self.send_s(kind, false, false);
        }
    }

    fn address(&self, command: bool) -> Address {
        let cr = if command {
            self.cfg.role.cr_for_command()
        } else {
            self.cfg.role.cr_for_response()
        };
        Address {
            sapi: self.cfg.sapi,
            cr,
            tei: self.cfg.tei,
        }
    }

    fn send_s(&mut self, kind: Supervisory, command: bool, pf: bool) {
        let repr = FrameRepr {
            address: self.address(command),
            control: Control::S {
                kind,
                nr: self.vr,
                pf,
            },
            info: &[],
        };
        self.push_tx(&repr);
    }

    fn send_u(&mut self, kind: Unnumbered, command: bool, pf: bool) {
        let repr = FrameRepr {
            address: self.address(command),
            control: Control::U { kind, pf },
            info: &[],
        };
        self.push_tx(&repr);
    }

    fn push_tx(&mut self, repr: &FrameRepr<'_>) {
        trace!(span = self.cfg.span, tei = self.cfg.tei.0, frame = %repr, "q921: tx");
        self.counters.frames_out += 1;
        self.tx.push_back(repr.to_vec());
    }

    fn mdl_error(&mut self, e: MdlError) {
        self.counters.mdl_errors[e as usize] += 1;
        warn!(span = self.cfg.span, tei = self.cfg.tei.0, state = self.state.number(), code = %e.letter(), "q921: MDL-ERROR");
        self.events.push_back(Event::MdlError(e));
    }

    fn set_state(&mut self, new: State) {
        if new != self.state {
            info!(
                span = self.cfg.span,
                sapi = self.cfg.sapi.0,
                tei = self.cfg.tei.0,
                old = ?self.state,
                new = ?new,
                "q921: state {} -> {}",
                self.state.number(),
                new.number()
            );
            self.state = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(role: Role, auto: bool) -> (Link, Instant) {
        let now = Instant::now();
        let mut cfg = LinkConfig::pri(1, role, &TimerValues::default(), 3, 7);
        cfg.auto_establish = auto;
        (Link::new(cfg, now), now)
    }

    #[test]
    fn user_answers_network_sabme_with_ua_response() {
        let (mut l, now) = link(Role::User, false);
        // 02 01 7F: SABME P=1, a command from the network (C/R 1).
        l.handle_frame(now, &[0x02, 0x01, 0x7F]);
        // 02 01 73: UA F=1, a response from the user (C/R 1).
        assert_eq!(l.poll_transmit(), Some(vec![0x02, 0x01, 0x73]));
        assert_eq!(l.state(), State::MultipleFrameEstablished);
        assert_eq!(
            l.poll_event(),
            Some(Event::EstablishIndication { discarded: 0 })
        );
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(10)));
    }

    #[test]
    fn network_establishes_with_sabme_command() {
        let (mut l, now) = link(Role::Network, true);
        assert_eq!(l.poll_timeout(), Some(now));
        l.handle_timeout(now);
        assert_eq!(l.poll_transmit(), Some(vec![0x02, 0x01, 0x7F]));
        assert_eq!(l.state(), State::AwaitingEstablishment);
        // 02 01 73 from the user: UA F=1 (user response C/R 1).
        l.handle_frame(now, &[0x02, 0x01, 0x73]);
        assert_eq!(l.state(), State::MultipleFrameEstablished);
        // An I frame carries N(S)=0 N(R)=0 as a network command (C/R 1).
        l.dl_data(now, &[0x08, 0x02, 0x80, 0x01, 0x75]).unwrap();
        assert_eq!(
            l.poll_transmit(),
            Some(vec![0x02, 0x01, 0x00, 0x00, 0x08, 0x02, 0x80, 0x01, 0x75])
        );
        // The user's RR response N(R)=1: 02 (C/R 1, user response) 01 01 02.
        l.handle_frame(now, &[0x02, 0x01, 0x01, 0x02]);
        assert_eq!(l.sequence_state(), (1, 1, 0));
        assert_eq!(l.pending_requests(), 0);
    }

    #[test]
    fn sabme_retransmitted_n200_times_then_mdl_g() {
        let (mut l, mut now) = link(Role::User, true);
        l.handle_timeout(now);
        let mut sabmes = 0;
        while l.state() != State::TeiAssigned || sabmes == 0 {
            while let Some(f) = l.poll_transmit() {
                assert_eq!(f, vec![0x00, 0x01, 0x7F]);
                sabmes += 1;
            }
            now = l.poll_timeout().unwrap();
            l.handle_timeout(now);
            assert!(sabmes <= 4);
        }
        assert_eq!(sabmes, 4, "first SABME plus N200 = 3 retransmissions");
        assert_eq!(l.counters().mdl(MdlError::G), 1);
        // Back-off: the next attempt after backoff_min (T200), and each
        // further failure doubles it up to backoff_max.
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn released_by_layer3_answers_sabme_with_dm() {
        let (mut l, now) = link(Role::User, false);
        l.dl_release(now);
        assert_eq!(l.poll_event(), Some(Event::ReleaseConfirm));
        l.handle_frame(now, &[0x02, 0x01, 0x7F]);
        // 02 01 1F: DM F=1, user response.
        assert_eq!(l.poll_transmit(), Some(vec![0x02, 0x01, 0x1F]));
        assert_eq!(l.state(), State::TeiAssigned);
    }
}
