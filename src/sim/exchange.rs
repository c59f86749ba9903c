//! The simulated exchange's control side and its run shells.
//!
//! [`ExchangeControl`] is a PRI endpoint's signalling and call mix: a
//! [`DChannel`] (network role by default, as an exchange is; the user role
//! makes the test peer) driven in a plain loop, fed the D-channel frames
//! the line side ([`ExchangeLine`]) cut out of TS16 and handing it frames
//! to send and [`LineCommand`]s (start/stop a B-channel's audio) through
//! the rings of [`ControlRings`]. It is sans-IO like the cores under it:
//! `step(now)` does everything due at `now`, `poll_timeout()` says when to
//! call it next; it may allocate (it is control plane).
//!
//! The call mix is a [`Scenario`]: `calls` calls placed at `rate_per_s` to
//! the `called` numbers in turn (with `calling`), each held `hold` after
//! CONNECT and then cleared by us, or (every `far_clear_every`th) left for
//! the far end to clear within `far_clear_grace`; every `abandon_every`th
//! call is cleared `abandon_after` its SETUP if it is not answered by then
//! (abandoned while ringing); every `dtmf_every`th connected call sends
//! `dtmf_digits` in-band and (with `dtmf_expect_echo`) expects them back.
//! Incoming calls are answered after `ring` (ALERTING first) or rejected
//! with a cause ([`Incoming`], `reject_numbers`), and cleared by us after
//! `incoming_hold` when set; per called number an [`IncomingPolicy`]
//! (`incoming_by_number`) can answer, ring for ever, or reject (at once,
//! or after ringing), give early media, and hold. Per called number a
//! [`ClearPlan`] (`clear_by_number`) clears a placed call in a chosen state
//! (after CALL PROCEEDING, ALERTING, PROGRESS, CONNECT) or leaves it for
//! the far end. Every connected call plays the test signal (or echoes,
//! [`AudioMode::Echo`]; `incoming_audio` for incoming calls) and is checked
//! ([`super::exchange_audio`]); with `early_media` a placed call's audio
//! starts at the far end's progress indicator 1 or 8 (PROGRESS, or ALERTING
//! with it), so what is checked flowed before the answer.
//!
//! The run shells are in [`super::exchange_run`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info, warn};

use crate::isdn::cause::Cause;
use crate::isdn::dchannel::DChannel;
use crate::isdn::q921::{self, LinkConfig};
use crate::isdn::q931::{self, CallId, ClearedBy, Event, PlaceCall, Role};
use crate::isdn::timers::TimerValues;
use crate::line::span::{LineEvent, SpanConfig};

use super::exchange_audio::{AudioMode, AudioStats, BLOCK_OCTETS, Digits};
use super::exchange_line::{ControlRings, DFrame, ExchangeLine, LineCommand, LineReport};

/// What the simulated exchange does with incoming calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Incoming {
    /// ALERTING at once, CONNECT after `ring`.
    Answer { ring: Duration },
    /// DISCONNECT with this Q.850 cause.
    Reject { cause: u8 },
    /// ALERTING at once, never CONNECT: the caller's timers (or its
    /// clearing) end the call.
    NoAnswer,
}

/// What the simulated exchange does with one incoming call (the scenario's
/// defaults, or per called number with `Scenario::incoming_by_number`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncomingPolicy {
    pub action: Incoming,
    /// With [`Incoming::Reject`]: ALERTING first, DISCONNECT after this
    /// long (`None`: DISCONNECT at once, no ALERTING).
    pub reject_after: Option<Duration>,
    /// PROGRESS with progress indicator 8 (in-band information available)
    /// right after ALERTING, and the audio from then: early media towards
    /// the caller.
    pub early_media: bool,
    /// Clear the call this long after we answered (`None`: the caller clears).
    pub hold: Option<Duration>,
    pub audio: AudioMode,
}

/// The state of a placed call in which [`ClearPlan`] clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearOn {
    /// From our SETUP.
    Setup,
    /// From CALL PROCEEDING (state N9: the far end has the call, no alerting).
    Proceeding,
    /// From ALERTING (N7).
    Alerting,
    /// From the first progress indicator 1 or 8 (early media).
    Progress,
    /// From CONNECT (N10): the hold time.
    Active,
    /// Never: the far end must clear after answering (within the hold
    /// plus `far_clear_grace`).
    Far,
}

/// When we clear a placed call: `after` the call reaches state `on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearPlan {
    pub on: ClearOn,
    pub after: Duration,
}

/// The call mix; see the module doc. [`Scenario::default`] places no
/// calls and answers at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub calls: u32,
    pub rate_per_s: f64,
    pub hold: Duration,
    /// Called numbers, used in turn.
    pub called: Vec<String>,
    pub calling: Option<String>,
    /// Every Nth placed call (N > 0) is left for the far end to clear.
    pub far_clear_every: u32,
    pub far_clear_grace: Duration,
    /// Every Nth placed call (N > 0) is abandoned if not answered in time.
    pub abandon_every: u32,
    pub abandon_after: Duration,
    /// Every Nth connected call (N > 0) sends `dtmf_digits` in-band.
    pub dtmf_every: u32,
    pub dtmf_digits: String,
    pub dtmf_delay: Duration,
    /// The far end echoes: the digits sent must come back.
    pub dtmf_expect_echo: bool,
    pub incoming: Incoming,
    /// Incoming calls to these numbers are rejected with the cause.
    pub reject_numbers: Vec<(String, u8)>,
    /// Clear answered incoming calls after this (else the caller clears).
    pub incoming_hold: Option<Duration>,
    /// The run is not done before this many incoming calls were seen.
    pub expect_incoming: u32,
    /// Causes of unanswered or failed calls that are expected (rejections
    /// the far end was told to make): they do not fail the run.
    pub expected_causes: Vec<u8>,
    pub audio: AudioMode,
    /// Audio check limits: blocks lost (gaps) or corrupted at most this %
    /// of those seen, and at least this % of the blocks sent received.
    pub max_loss_percent: f64,
    pub min_received_percent: f64,
    /// Wait after the link comes up (again, until the first call is placed)
    /// before placing the first call.
    pub start_delay: Duration,
    /// Placed calls: start the audio at the far end's progress indicator 1
    /// or 8 (early media) instead of at CONNECT. Incoming calls (the
    /// default policy): PROGRESS with indicator 8 after ALERTING.
    pub early_media: bool,
    /// Audio of incoming calls (`None`: as `audio`).
    pub incoming_audio: Option<AudioMode>,
    /// Rejections (`Incoming::Reject`, `reject_numbers`) ring this long
    /// first (`None`: at once).
    pub reject_after: Option<Duration>,
    /// Incoming calls to these numbers follow their own policy.
    pub incoming_by_number: Vec<(String, IncomingPolicy)>,
    /// Placed calls to these numbers are cleared by their plan.
    pub clear_by_number: Vec<(String, ClearPlan)>,
    /// At most this many placed calls in progress at once (0: no limit); a
    /// call due while the limit is reached waits for one to end.
    pub max_in_progress: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            calls: 0,
            rate_per_s: 1.0,
            hold: Duration::from_secs(2),
            called: vec!["999".into()],
            calling: None,
            far_clear_every: 0,
            far_clear_grace: Duration::from_secs(10),
            abandon_every: 0,
            abandon_after: Duration::from_millis(500),
            dtmf_every: 0,
            dtmf_digits: "123#".into(),
            dtmf_delay: Duration::from_millis(100),
            dtmf_expect_echo: true,
            incoming: Incoming::Answer {
                ring: Duration::ZERO,
            },
            reject_numbers: Vec::new(),
            incoming_hold: None,
            expect_incoming: 0,
            expected_causes: Vec::new(),
            audio: AudioMode::Test,
            max_loss_percent: 1.0,
            min_received_percent: 50.0,
            start_delay: Duration::from_millis(100),
            early_media: false,
            incoming_audio: None,
            reject_after: None,
            incoming_by_number: Vec::new(),
            clear_by_number: Vec::new(),
            max_in_progress: 0,
        }
    }
}

impl Scenario {
    /// The policy for an incoming call to `called`: its own, else the
    /// defaults (`reject_numbers`, `incoming`, `incoming_hold`,
    /// `early_media`, `incoming_audio`).
    pub fn incoming_policy(&self, called: &str) -> IncomingPolicy {
        if let Some((_, p)) = self.incoming_by_number.iter().find(|(n, _)| n == called) {
            return *p;
        }
        let action = self
            .reject_numbers
            .iter()
            .find(|(n, _)| n == called)
            .map_or(self.incoming, |(_, c)| Incoming::Reject { cause: *c });
        IncomingPolicy {
            action,
            reject_after: self.reject_after,
            early_media: self.early_media,
            hold: self.incoming_hold,
            audio: self.incoming_audio.unwrap_or(self.audio),
        }
    }

    /// The clear plan of a placed call to `called`, if it has one.
    pub fn clear_plan(&self, called: &str) -> Option<ClearPlan> {
        self.clear_by_number
            .iter()
            .find(|(n, _)| n == called)
            .map(|(_, p)| *p)
    }
}

/// Everything a simulated exchange is built from.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Span number (logs) and the Q.931/Q.921 parameters: the spec's
    /// defaults for `role` unless changed.
    pub span: u8,
    pub role: Role,
    pub crc4: bool,
    pub q931: q931::Config,
    pub link: LinkConfig,
    pub scenario: Scenario,
    /// Hard bound of a run; live calls are then cleared.
    pub run_for: Duration,
}

impl ExchangeConfig {
    /// The network side of span 1 with CRC-4 and the default timers.
    pub fn network(scenario: Scenario) -> ExchangeConfig {
        ExchangeConfig::with_role(Role::Network, scenario)
    }

    /// The same pieces on the user side (the test peer).
    pub fn user(scenario: Scenario) -> ExchangeConfig {
        ExchangeConfig::with_role(Role::User, scenario)
    }

    fn with_role(role: Role, scenario: Scenario) -> ExchangeConfig {
        let span = 1;
        let l2 = match role {
            Role::User => q921::Role::User,
            Role::Network => q921::Role::Network,
        };
        ExchangeConfig {
            span,
            role,
            crc4: true,
            q931: q931::Config::e1(span, role),
            link: LinkConfig::pri(span, l2, &TimerValues::default(), 3, 7),
            scenario,
            run_for: Duration::from_secs(60),
        }
    }

    /// The line side's span parameters.
    pub fn span_config(&self) -> SpanConfig {
        SpanConfig {
            span_id: u16::from(self.span),
            crc4: self.crc4,
            ..SpanConfig::default()
        }
    }
}

/// Counts of one direction's calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Placed (outgoing) or received (incoming).
    pub calls: u64,
    pub answered: u64,
    /// Answered and cleared normally.
    pub completed: u64,
    pub abandoned: u64,
    /// Rejected by us (incoming).
    pub rejected: u64,
    /// Not answered, or dropped, by cause (Q.850 value as a string key).
    pub failed_by_cause: BTreeMap<String, u64>,
    pub cleared_by_us: u64,
    pub cleared_by_far_end: u64,
    /// Most calls of this direction in progress at once.
    pub peak_in_progress: u64,
}

/// Audio checks over all calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AudioSummary {
    pub checks: u64,
    pub passed: u64,
    pub failed: u64,
    pub blocks_sent: u64,
    pub blocks_received: u64,
    pub blocks_lost: u64,
    pub blocks_mismatched: u64,
    pub rtt_frames_min: Option<u32>,
    pub rtt_frames_max: Option<u32>,
    pub rtt_ms_mean: Option<f64>,
}

/// DTMF over all calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DtmfSummary {
    pub calls_sending: u64,
    pub digits_sent: u64,
    pub digits_received: u64,
    /// Calls whose echoed digits came back exactly (with `dtmf_expect_echo`).
    pub calls_matched: u64,
    pub calls_mismatched: u64,
}

/// One call, as it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallRecord {
    pub tag: u32,
    /// `"outgoing"` (we placed it) or `"incoming"`.
    pub direction: &'static str,
    pub ts: Option<u8>,
    pub called: String,
    pub calling: Option<String>,
    pub alerted: bool,
    pub answered: bool,
    pub abandoned: bool,
    pub rejected: bool,
    /// `"us"`, `"far_end"`, `"timer"`, `"link"`, `"restart"`, `"protocol"`.
    pub cleared_by: &'static str,
    pub cause: u8,
    pub setup_to_answer_ms: Option<u64>,
    pub connected_ms: Option<u64>,
    pub audio: Option<AudioStats>,
    pub audio_ok: Option<bool>,
    pub dtmf_sent: String,
    pub dtmf_received: String,
    /// The audio started before the answer (early media).
    pub early_media: bool,
    /// The state its clear plan cleared it in (`proceeding`, `alerting`,
    /// `progress`, `active`), if it had one that fired.
    pub clear_state: Option<&'static str>,
    /// Why this call counts as a failure, if it does.
    pub failure: Option<String>,
}

/// Line events seen by the control side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LineSummary {
    pub alarms_raised: u64,
    pub alarms_cleared: u64,
    pub crc4_interworking: bool,
    pub dframes_dropped: u64,
    pub reports_dropped: u64,
    pub frames_sent: u64,
    pub fas_errors: u64,
    pub crc4_errors: u64,
    /// What the driver under the line saw (slips show here first).
    pub driver: DriverSummary,
}

/// The raw driver's view: SAToP playout (RFC 4553 §6.2.2) or the pair
/// wire; zero for serial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DriverSummary {
    /// Units (packets, frames) played as all ones: missing in time.
    pub missing: u64,
    pub underruns: u64,
    pub late: u64,
    /// Timer ticks given up because the thread was held off the CPU.
    pub timer_slips: u64,
    /// Serial: octets dropped on a full transmit buffer.
    pub tx_overrun_octets: u64,
}

/// The JSON result of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExchangeReport {
    /// Every check held.
    pub ok: bool,
    /// The checks that did not, in words.
    pub failures: Vec<String>,
    /// `"network"` or `"user"`.
    pub role: &'static str,
    pub link_up: bool,
    pub link_up_after_ms: Option<u64>,
    pub link_downs: u64,
    pub outgoing: CallCounts,
    pub incoming: CallCounts,
    pub audio: AudioSummary,
    pub dtmf: DtmfSummary,
    pub channels_idle_at_end: bool,
    pub timed_out: bool,
    pub elapsed_ms: u64,
    pub line: LineSummary,
    pub calls: Vec<CallRecord>,
}

#[derive(Debug)]
struct Call {
    rec: CallRecord,
    id: CallId,
    outgoing: bool,
    placed_at: Instant,
    connected_at: Option<Instant>,
    /// When we clear it (hold, abandon, incoming hold, far-end grace).
    clear_at: Option<Instant>,
    /// Incoming: when to send CONNECT.
    answer_at: Option<Instant>,
    far_clear: bool,
    abandon: bool,
    digits: Digits,
    audio_running: bool,
    released: bool,
    /// The audio this call plays (or echoes).
    mode: AudioMode,
    /// Placed: the state in which we clear it.
    clear_plan: Option<ClearPlan>,
    /// Incoming: what we do with it.
    policy: Option<IncomingPolicy>,
    /// The cause we clear with when `clear_at` comes.
    clear_cause: Cause,
}

/// How a run is stopped from outside and how it says it is done.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Set by the caller: stop now (live calls are cleared first).
    pub stop: Arc<AtomicBool>,
    /// Set by the run once its scenario is done.
    pub done: Arc<AtomicBool>,
    /// Keep running after done until `stop` (a test with two peers, each
    /// waiting for the other); otherwise stop at once when done.
    pub wait_for_stop: bool,
}

/// The control side; see the module doc.
pub struct ExchangeControl {
    cfg: ExchangeConfig,
    dch: DChannel,
    rings: ControlRings,
    pending_out: VecDeque<DFrame>,
    pending_cmds: VecDeque<LineCommand>,
    started: Instant,
    link_up_at: Option<Instant>,
    link_up: bool,
    next_call_at: Option<Instant>,
    placed: u32,
    connected_count: u32,
    tag_base: u32,
    next_tag: u32,
    calls: BTreeMap<CallId, Call>,
    report: ExchangeReport,
    rtt_sum: u64,
    rtt_n: u64,
    shutting_down: bool,
    /// The E1 has been free of defects since then (None: it is not).
    line_up_since: Option<Instant>,
    /// The D-channel stack runs (the line was up for `line_settle`).
    dch_running: bool,
}

/// How long the E1 must be free of defects before the D-channel starts:
/// a SABME sent before the far end sees our frames is lost and costs a
/// T200 and a re-establishment.
const LINE_SETTLE: Duration = Duration::from_millis(20);

impl ExchangeControl {
    /// The control side over the rings from [`ExchangeLine::new`].
    pub fn new(cfg: ExchangeConfig, rings: ControlRings, now: Instant) -> ExchangeControl {
        let dch = DChannel::new(cfg.link.clone(), cfg.q931.clone(), now);
        let role = match cfg.role {
            Role::Network => "network",
            Role::User => "user",
        };
        ExchangeControl {
            tag_base: if cfg.role == Role::Network {
                0
            } else {
                1 << 31
            },
            dch,
            rings,
            pending_out: VecDeque::new(),
            pending_cmds: VecDeque::new(),
            started: now,
            link_up_at: None,
            link_up: false,
            next_call_at: None,
            placed: 0,
            connected_count: 0,
            next_tag: 1,
            calls: BTreeMap::new(),
            report: ExchangeReport {
                role,
                ..ExchangeReport::default()
            },
            rtt_sum: 0,
            rtt_n: 0,
            shutting_down: false,
            line_up_since: None,
            dch_running: false,
            cfg,
        }
    }

    pub fn dchannel(&self) -> &DChannel {
        &self.dch
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Calls not yet ended.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// Everything due at `now`.
    pub fn step(&mut self, now: Instant) {
        while let Some(r) = self.rings.reports.try_pop() {
            self.line_report(now, r);
        }
        if !self.dch_running && self.line_up_since.is_some_and(|t| now - t >= LINE_SETTLE) {
            // Q.921 §5.5.1 establishment at start-up, once layer 1 is up.
            self.dch_running = true;
            self.dch.handle_timeout(now);
        }
        while let Some(f) = self.rings.dframes_in.try_pop() {
            if !self.dch_running {
                // The far end's stack already runs: so do we, at once
                // (dropping its SABME would cost a T200 and a collision).
                self.dch_running = true;
                self.dch.handle_frame(now, f.as_bytes());
                self.dch.handle_timeout(now);
            } else {
                self.dch.handle_frame(now, f.as_bytes());
            }
        }
        if self.dch_running && self.dch.poll_timeout().is_some_and(|t| t <= now) {
            self.dch.handle_timeout(now);
        }
        self.drain_events(now);
        if !self.shutting_down {
            self.place_due(now);
        }
        self.call_timers(now);
        self.drain_events(now);
        self.flush(now);
    }

    /// When `step` is next needed: the stack's and the scenario's timers,
    /// and at least every millisecond for the rings.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut t = now + Duration::from_millis(1);
        if let Some(d) = self.dch.poll_timeout().filter(|_| self.dch_running) {
            t = t.min(d);
        }
        t.max(now)
    }

    /// The scenario has run: every call placed and ended, every audio
    /// report in, the expected incoming calls seen.
    pub fn is_done(&self) -> bool {
        self.link_up_at.is_some()
            && self.placed >= self.cfg.scenario.calls
            && self.calls.is_empty()
            && self.report.incoming.calls >= u64::from(self.cfg.scenario.expect_incoming)
    }

    /// Stops placing calls and clears every live one.
    pub fn shut_down(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.clear(now, id, Cause::NORMAL_CLEARING);
        }
        self.flush(now);
    }

    /// The report (call once, at the end).
    pub fn finish(&mut self, now: Instant, timed_out: bool) -> ExchangeReport {
        while let Some(r) = self.rings.reports.try_pop() {
            self.line_report(now, r);
        }
        let mut rep = std::mem::take(&mut self.report);
        rep.timed_out = timed_out;
        rep.elapsed_ms = ms(now - self.started);
        rep.link_up = self.link_up;
        rep.channels_idle_at_end = self.dch.q931().channels().all_idle();
        if self.rtt_n > 0 {
            rep.audio.rtt_ms_mean = Some(self.rtt_sum as f64 / self.rtt_n as f64 / 8.0);
        }
        let s = &self.cfg.scenario;
        let mut fail = Vec::new();
        if rep.link_up_after_ms.is_none() {
            fail.push("the D-channel never came up".to_string());
        }
        if timed_out {
            fail.push(format!(
                "not done within {} s",
                self.cfg.run_for.as_secs_f64()
            ));
        }
        if rep.outgoing.calls < u64::from(s.calls) {
            fail.push(format!(
                "placed {} of {} calls",
                rep.outgoing.calls, s.calls
            ));
        }
        if rep.incoming.calls < u64::from(s.expect_incoming) {
            fail.push(format!(
                "saw {} of {} incoming calls",
                rep.incoming.calls, s.expect_incoming
            ));
        }
        if !rep.channels_idle_at_end {
            fail.push("B-channels not all idle at the end".to_string());
        }
        if !self.calls.is_empty() {
            fail.push(format!("{} calls still live at the end", self.calls.len()));
        }
        for c in &rep.calls {
            if let Some(f) = &c.failure {
                fail.push(format!("call {:#x} ts {:?}: {f}", c.tag, c.ts));
            }
        }
        rep.ok = fail.is_empty();
        rep.failures = fail;
        rep
    }

    /// Adds the line side's counters to a report.
    pub fn add_line_counters(rep: &mut ExchangeReport, line: &ExchangeLine) {
        let c = line.counters();
        let s = line.span_counters();
        rep.line.dframes_dropped = c.dframes_dropped;
        rep.line.reports_dropped = c.reports_dropped;
        rep.line.frames_sent = s.frames_sent;
        rep.line.fas_errors = s.deframer.fas_errors;
        rep.line.crc4_errors = s.deframer.crc4_errors;
    }

    fn line_report(&mut self, now: Instant, r: LineReport) {
        match r {
            LineReport::LineUp(up) => {
                self.line_up_since = up.then_some(now);
                debug!(
                    span = self.cfg.span,
                    up, "sim exchange: E1 defects cleared/raised"
                );
            }
            LineReport::Audio { tag, stats, .. } => self.audio_report(tag, stats),
            LineReport::Dtmf { tag, digit, .. } => {
                self.report.dtmf.digits_received += 1;
                if let Some(c) = self.calls.values_mut().find(|c| c.rec.tag == tag) {
                    c.rec.dtmf_received.push(char::from(digit));
                }
            }
            LineReport::Line(ev) => match ev {
                LineEvent::AlarmRaised(a) => {
                    self.report.line.alarms_raised += 1;
                    info!(span = self.cfg.span, alarm = ?a, "sim exchange: line alarm raised");
                }
                LineEvent::AlarmCleared(_) => self.report.line.alarms_cleared += 1,
                LineEvent::Crc4Interworking => self.report.line.crc4_interworking = true,
            },
        }
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.dch.poll_event() {
            self.event(now, ev);
        }
    }

    fn event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::LinkUp => {
                self.link_up = true;
                if self.link_up_at.is_none() {
                    self.link_up_at = Some(now);
                    self.report.link_up_after_ms = Some(ms(now - self.started));
                }
                // The start delay runs from the last establishment before
                // the first call: a link that comes up from a SABME
                // collision (Q.921 §5.5.1.3, both ends establishing at
                // start-up) is re-established when the far end's T200
                // repeats its SABME, and calls placed in between are lost.
                if self.placed == 0 {
                    self.next_call_at = Some(now + self.cfg.scenario.start_delay);
                }
                info!(
                    span = self.cfg.span,
                    role = self.report.role,
                    "sim exchange: D-channel up"
                );
            }
            Event::LinkDown => {
                self.link_up = false;
                self.report.link_downs += 1;
                warn!(
                    span = self.cfg.span,
                    role = self.report.role,
                    "sim exchange: D-channel down"
                );
            }
            Event::IncomingCall {
                id,
                called,
                calling,
                channel,
                ..
            } => self.incoming(now, id, called, calling, channel),
            Event::Proceeding { id, channel } | Event::SetupAcknowledged { id, channel } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.rec.ts = Some(channel);
                }
                self.reached(now, id, ClearOn::Proceeding);
            }
            Event::Alerting { id } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.rec.alerted = true;
                }
                self.reached(now, id, ClearOn::Alerting);
            }
            Event::Progress { id, description } => {
                // Q.931 §4.5.23: 1 (not end-to-end ISDN) and 8 (in-band
                // information now available) both mean early media.
                if matches!(description, 1 | 8) {
                    self.early_media(id);
                    self.reached(now, id, ClearOn::Progress);
                }
            }
            Event::Connected { id } => self.connected(now, id),
            Event::Disconnected { id, cause, by } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    note_clearing(&mut c.rec, cause, by);
                }
            }
            Event::Released { id, cause, by } => self.released(now, id, cause, by),
            Event::RestartSent { .. }
            | Event::RestartReceived { .. }
            | Event::ChannelsRestarted { .. }
            | Event::RestartFailed { .. } => {
                debug!(span = self.cfg.span, ?ev, "sim exchange: restart");
            }
        }
    }

    fn new_tag(&mut self) -> u32 {
        let t = self.tag_base | self.next_tag;
        self.next_tag += 1;
        t
    }

    fn place_due(&mut self, now: Instant) {
        let s = &self.cfg.scenario;
        let Some(at) = self.next_call_at else { return };
        if !self.link_up || self.placed >= s.calls || now < at {
            return;
        }
        if s.max_in_progress > 0
            && self.calls.values().filter(|c| c.outgoing).count() >= s.max_in_progress as usize
        {
            // Back-pressure: placed when one ends, the schedule shifts.
            self.next_call_at = Some(now + Duration::from_millis(1));
            return;
        }
        let n = self.placed;
        let called = s
            .called
            .get(n as usize % s.called.len().max(1))
            .cloned()
            .unwrap_or_default();
        let calling = s.calling.clone();
        let every = |k: u32| k > 0 && (n + 1).is_multiple_of(k);
        let far_clear = every(s.far_clear_every);
        let abandon = every(s.abandon_every);
        let interval = Duration::from_secs_f64(1.0 / s.rate_per_s.max(0.001));
        let abandon_after = s.abandon_after;
        let plan = s.clear_plan(&called);
        let mode = s.audio;
        self.next_call_at = Some(at + interval);
        self.placed += 1;
        self.report.outgoing.calls += 1;
        let tag = self.new_tag();
        let req = PlaceCall::speech(&called, calling.as_deref());
        match self.dch.q931_mut().place_call(now, req) {
            Ok(id) => {
                info!(span = self.cfg.span, call = ?id, tag, %called, "sim exchange: placing call");
                let call = Call {
                    rec: CallRecord {
                        tag,
                        direction: "outgoing",
                        called,
                        calling,
                        ..CallRecord::default()
                    },
                    id,
                    outgoing: true,
                    placed_at: now,
                    connected_at: None,
                    clear_at: abandon.then_some(now + abandon_after),
                    answer_at: None,
                    far_clear: far_clear || plan.is_some_and(|p| p.on == ClearOn::Far),
                    abandon,
                    digits: Digits::default(),
                    audio_running: false,
                    released: false,
                    mode,
                    clear_plan: plan,
                    policy: None,
                    clear_cause: Cause::NORMAL_CLEARING,
                };
                self.calls.insert(id, call);
                self.note_peak(true);
                self.reached(now, id, ClearOn::Setup);
            }
            Err(e) => {
                warn!(span = self.cfg.span, error = ?e, "sim exchange: cannot place call");
                let rec = CallRecord {
                    tag,
                    direction: "outgoing",
                    called,
                    calling,
                    cause: Cause::NO_CIRCUIT_AVAILABLE.value(),
                    cleared_by: "us",
                    failure: Some(format!("place_call refused: {e:?}")),
                    ..CallRecord::default()
                };
                *self
                    .report
                    .outgoing
                    .failed_by_cause
                    .entry(rec.cause.to_string())
                    .or_default() += 1;
                self.report.calls.push(rec);
            }
        }
    }

    fn incoming(
        &mut self,
        now: Instant,
        id: CallId,
        called: Option<q931::PartyNumber>,
        calling: Option<q931::PartyNumber>,
        channel: u8,
    ) {
        let called = called.map(|p| p.digits_str()).unwrap_or_default();
        let policy = self.cfg.scenario.incoming_policy(&called);
        self.report.incoming.calls += 1;
        let tag = self.new_tag();
        info!(span = self.cfg.span, call = ?id, tag, ts = channel, %called, action = ?policy.action, "sim exchange: incoming call");
        let mut call = Call {
            rec: CallRecord {
                tag,
                direction: "incoming",
                ts: Some(channel),
                called,
                calling: calling.map(|p| p.digits_str()),
                ..CallRecord::default()
            },
            id,
            outgoing: false,
            placed_at: now,
            connected_at: None,
            clear_at: None,
            answer_at: None,
            far_clear: false,
            abandon: false,
            digits: Digits::default(),
            audio_running: false,
            released: false,
            mode: policy.audio,
            clear_plan: None,
            policy: Some(policy),
            clear_cause: Cause::NORMAL_CLEARING,
        };
        let q = self.dch.q931_mut();
        let alert = match (policy.action, policy.reject_after) {
            (Incoming::Reject { cause }, None) => {
                call.rec.rejected = true;
                self.report.incoming.rejected += 1;
                if let Err(e) = q.disconnect(now, id, Cause(cause)) {
                    warn!(call = ?id, error = ?e, "sim exchange: cannot reject");
                }
                false
            }
            (Incoming::Reject { cause }, Some(after)) => {
                // Rejected after ringing: counted as rejected when it is.
                call.clear_at = Some(now + after);
                call.clear_cause = Cause(cause);
                true
            }
            (Incoming::Answer { ring }, _) => {
                call.answer_at = Some(now + ring);
                true
            }
            (Incoming::NoAnswer, _) => true,
        };
        if alert {
            if let Err(e) = q.alerting(now, id) {
                warn!(call = ?id, error = ?e, "sim exchange: cannot alert");
            }
            // Q.931 §5.2.5.1: in-band information from the called side,
            // progress indicator 8, before the answer.
            if policy.early_media
                && let Err(e) = q.progress(now, id, 8)
            {
                warn!(call = ?id, error = ?e, "sim exchange: cannot send PROGRESS");
            }
        }
        self.calls.insert(id, call);
        self.note_peak(false);
        if alert && policy.early_media {
            self.early_media(id);
        }
    }

    fn note_peak(&mut self, outgoing: bool) {
        let n = self
            .calls
            .values()
            .filter(|c| c.outgoing == outgoing)
            .count() as u64;
        let counts = if outgoing {
            &mut self.report.outgoing
        } else {
            &mut self.report.incoming
        };
        counts.peak_in_progress = counts.peak_in_progress.max(n);
    }

    /// Starts a call's audio before the answer (once).
    fn early_media(&mut self, id: CallId) {
        let early = self.cfg.scenario.early_media;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let wanted = if c.outgoing {
            early
        } else {
            c.policy.is_some_and(|p| p.early_media)
        };
        if !wanted || c.audio_running || c.released {
            return;
        }
        let Some(ts) = c.rec.ts else {
            return;
        };
        c.audio_running = true;
        c.rec.early_media = true;
        self.pending_cmds.push_back(LineCommand::Start {
            ts,
            tag: c.rec.tag,
            mode: c.mode,
            digits: Digits::default(),
            dtmf_delay_frames: 0,
        });
    }

    /// A placed call reached `state`: arms its clear plan if it is for that state.
    fn reached(&mut self, now: Instant, id: CallId, state: ClearOn) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(plan) = c.clear_plan.filter(|p| p.on == state) else {
            return;
        };
        if c.released || c.clear_at.is_some() && state != ClearOn::Active {
            return;
        }
        c.clear_at = Some(now + plan.after);
        // Cleared before an answer: abandoned by us.
        c.abandon = state != ClearOn::Active;
        c.rec.clear_state = Some(clear_on_name(state));
    }

    fn connected(&mut self, now: Instant, id: CallId) {
        let s = &self.cfg.scenario;
        self.connected_count += 1;
        let dtmf = s.dtmf_every > 0 && self.connected_count.is_multiple_of(s.dtmf_every);
        let dtmf_digits = Digits::new(&s.dtmf_digits);
        let (hold, far_grace) = (s.hold, s.far_clear_grace);
        let delay_frames = u32::try_from(s.dtmf_delay.as_micros() / 125).unwrap_or(u32::MAX);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let mode = c.mode;
        // Digits go out with the audio's start: not on a call whose audio
        // already runs (early media).
        let digits = if dtmf && mode == AudioMode::Test && !c.audio_running {
            dtmf_digits
        } else {
            Digits::default()
        };
        c.connected_at = Some(now);
        c.rec.answered = true;
        c.rec.setup_to_answer_ms = Some(ms(now - c.placed_at));
        c.clear_at = if c.outgoing {
            let hold = match c.clear_plan {
                Some(p) if p.on == ClearOn::Active => {
                    c.rec.clear_state = Some(clear_on_name(ClearOn::Active));
                    p.after
                }
                _ => hold,
            };
            Some(now + if c.far_clear { hold + far_grace } else { hold })
        } else {
            c.policy.and_then(|p| p.hold).map(|h| now + h)
        };
        c.abandon = false;
        if c.outgoing {
            self.report.outgoing.answered += 1;
        } else {
            self.report.incoming.answered += 1;
        }
        if !digits.is_empty() {
            c.digits = digits;
            c.rec.dtmf_sent = digits.as_str().to_string();
            self.report.dtmf.calls_sending += 1;
            self.report.dtmf.digits_sent += digits.as_bytes().len() as u64;
        }
        if let Some(ts) = c.rec.ts
            && !c.audio_running
        {
            c.audio_running = true;
            let cmd = LineCommand::Start {
                ts,
                tag: c.rec.tag,
                mode,
                digits,
                dtmf_delay_frames: delay_frames,
            };
            self.pending_cmds.push_back(cmd);
        }
    }

    fn call_timers(&mut self, now: Instant) {
        let due: Vec<(CallId, bool)> = self
            .calls
            .values()
            .filter(|c| !c.released)
            .filter_map(|c| {
                if c.answer_at.is_some_and(|t| t <= now) {
                    Some((c.id, true))
                } else if c.clear_at.is_some_and(|t| t <= now) {
                    Some((c.id, false))
                } else {
                    None
                }
            })
            .collect();
        for (id, answer) in due {
            if answer {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.answer_at = None;
                }
                if let Err(e) = self.dch.q931_mut().connect(now, id) {
                    warn!(call = ?id, error = ?e, "sim exchange: cannot answer");
                }
            } else {
                let Some(c) = self.calls.get_mut(&id) else {
                    continue;
                };
                c.clear_at = None;
                let cause = c.clear_cause;
                if !c.outgoing && c.connected_at.is_none() {
                    // An incoming call rejected after ringing.
                    if cause == Cause::NORMAL_CLEARING {
                        continue;
                    }
                    c.rec.rejected = true;
                    self.report.incoming.rejected += 1;
                    self.clear(now, id, cause);
                    continue;
                }
                if c.connected_at.is_none() && c.abandon {
                    c.rec.abandoned = true;
                } else if c.far_clear {
                    c.rec.failure = Some(format!(
                        "the far end did not clear within {} ms of the hold",
                        c.connected_at.map_or(0, |t| ms(now - t))
                    ));
                } else if c.connected_at.is_none() {
                    continue;
                }
                self.clear(now, id, Cause::NORMAL_CLEARING);
            }
        }
    }

    /// Clears a call from our side (whatever its state).
    fn clear(&mut self, now: Instant, id: CallId, cause: Cause) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.rec.cleared_by.is_empty() {
            c.rec.cleared_by = "us";
        }
        let q = self.dch.q931_mut();
        if q.disconnect(now, id, cause).is_err() {
            // Already clearing (or not yet answerable): RELEASE does it.
            let _ = q.release(now, id, cause);
        }
    }

    fn released(&mut self, now: Instant, id: CallId, cause: Cause, by: ClearedBy) {
        let Some(mut c) = self.calls.remove(&id) else {
            return;
        };
        note_clearing(&mut c.rec, cause, by);
        c.released = true;
        c.rec.cause = if c.rec.cause == 0 {
            cause.value()
        } else {
            c.rec.cause
        };
        if let Some(t) = c.connected_at {
            c.rec.connected_ms = Some(ms(now - t));
        }
        self.classify(&mut c);
        if c.audio_running {
            if let Some(ts) = c.rec.ts {
                self.pending_cmds.push_back(LineCommand::Stop { ts });
            }
            // Kept until the line's audio report arrives.
            self.calls.insert(id, c);
        } else {
            self.end_call(c);
        }
    }

    fn classify(&mut self, c: &mut Call) {
        let s = &self.cfg.scenario;
        let counts = if c.outgoing {
            &mut self.report.outgoing
        } else {
            &mut self.report.incoming
        };
        match c.rec.cleared_by {
            "us" => counts.cleared_by_us += 1,
            "far_end" => counts.cleared_by_far_end += 1,
            _ => {}
        }
        let cause = c.rec.cause;
        let normal =
            cause == Cause::NORMAL_CLEARING.value() || cause == Cause::NORMAL_UNSPECIFIED.value();
        if c.rec.answered {
            if normal && c.rec.failure.is_none() {
                counts.completed += 1;
            } else {
                *counts.failed_by_cause.entry(cause.to_string()).or_default() += 1;
                if c.rec.failure.is_none() {
                    c.rec.failure = Some(format!("dropped with cause {cause}"));
                }
            }
        } else if c.rec.abandoned {
            counts.abandoned += 1;
        } else if c.rec.rejected {
            // Counted as rejected when it was.
        } else if !c.outgoing && normal && c.rec.cleared_by == "far_end" {
            // The caller gave up while we rang (a CANCEL on the SIP side).
            c.rec.abandoned = true;
            counts.abandoned += 1;
        } else {
            *counts.failed_by_cause.entry(cause.to_string()).or_default() += 1;
            if !s.expected_causes.contains(&cause) && c.rec.failure.is_none() {
                c.rec.failure = Some(format!(
                    "not answered: cause {cause} ({})",
                    Cause(cause).name().unwrap_or("unknown")
                ));
            }
        }
    }

    fn audio_report(&mut self, tag: u32, stats: AudioStats) {
        let Some(id) = self
            .calls
            .values()
            .find(|c| c.rec.tag == tag && c.released)
            .map(|c| c.id)
        else {
            return;
        };
        let Some(mut c) = self.calls.remove(&id) else {
            return;
        };
        c.rec.audio = Some(stats);
        if c.mode == AudioMode::Test {
            let verdict = check_audio(&self.cfg.scenario, &stats);
            let a = &mut self.report.audio;
            a.checks += 1;
            a.blocks_sent += stats.blocks_sent;
            a.blocks_received += stats.blocks_received;
            a.blocks_lost += stats.blocks_lost;
            a.blocks_mismatched += stats.blocks_mismatched;
            if stats.blocks_received > 0 {
                a.rtt_frames_min = Some(
                    a.rtt_frames_min
                        .map_or(stats.rtt_frames_min, |m| m.min(stats.rtt_frames_min)),
                );
                a.rtt_frames_max = Some(
                    a.rtt_frames_max
                        .map_or(stats.rtt_frames_max, |m| m.max(stats.rtt_frames_max)),
                );
                self.rtt_sum += stats.rtt_frames_sum;
                self.rtt_n += stats.blocks_received;
            }
            match verdict {
                Ok(()) => {
                    a.passed += 1;
                    c.rec.audio_ok = Some(true);
                }
                Err(why) => {
                    a.failed += 1;
                    c.rec.audio_ok = Some(false);
                    if c.rec.failure.is_none() {
                        c.rec.failure = Some(format!("audio check failed: {why}"));
                    }
                }
            }
        }
        self.end_call(c);
    }

    fn end_call(&mut self, mut c: Call) {
        let sc = &self.cfg.scenario;
        if !c.digits.is_empty() && sc.dtmf_expect_echo {
            if c.rec.dtmf_received == c.rec.dtmf_sent {
                self.report.dtmf.calls_matched += 1;
            } else {
                self.report.dtmf.calls_mismatched += 1;
                if c.rec.failure.is_none() {
                    c.rec.failure = Some(format!(
                        "DTMF sent {:?}, came back {:?}",
                        c.rec.dtmf_sent, c.rec.dtmf_received
                    ));
                }
            }
        }
        info!(span = self.cfg.span, tag = c.rec.tag, ts = ?c.rec.ts, cause = c.rec.cause,
            cleared_by = c.rec.cleared_by, failure = ?c.rec.failure, "sim exchange: call ended");
        self.report.calls.push(c.rec);
    }

    /// Sends what the stack queued and the commands, as far as the rings take.
    fn flush(&mut self, now: Instant) {
        // Q.931 commands queue their messages; move them to Q.921.
        self.dch.pump(now);
        self.drain_events(now);
        while let Some(f) = self.dch.poll_transmit() {
            match DFrame::new(&f) {
                Some(d) => self.pending_out.push_back(d),
                None => warn!(
                    len = f.len(),
                    "sim exchange: D-channel frame too long, dropped"
                ),
            }
        }
        while let Some(d) = self.pending_out.pop_front() {
            if let Err(d) = self.rings.dframes_out.try_push(d) {
                self.pending_out.push_front(d);
                break;
            }
        }
        while let Some(c) = self.pending_cmds.pop_front() {
            if let Err(c) = self.rings.commands.try_push(c) {
                self.pending_cmds.push_front(c);
                break;
            }
        }
    }
}

fn note_clearing(rec: &mut CallRecord, cause: Cause, by: ClearedBy) {
    if !rec.cleared_by.is_empty() {
        return;
    }
    rec.cause = cause.value();
    rec.cleared_by = match by {
        ClearedBy::Local => "us",
        ClearedBy::Remote => "far_end",
        ClearedBy::Timer(_) => "timer",
        ClearedBy::Link => "link",
        ClearedBy::Restart => "restart",
        ClearedBy::Protocol => "protocol",
    };
}

fn clear_on_name(s: ClearOn) -> &'static str {
    match s {
        ClearOn::Setup => "setup",
        ClearOn::Proceeding => "proceeding",
        ClearOn::Alerting => "alerting",
        ClearOn::Progress => "progress",
        ClearOn::Active => "active",
        ClearOn::Far => "far",
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One call's audio verdict against the scenario's budgets.
fn check_audio(sc: &Scenario, s: &AudioStats) -> Result<(), String> {
    if s.blocks_received == 0 {
        return Err(format!("none of {} blocks came back", s.blocks_sent));
    }
    // Corrupted blocks count against the loss budget: a slip (a SAToP
    // packet or an RTP frame played twice or skipped by a jitter
    // buffer) garbles the block it falls in. Corruption beyond the
    // budget (a wrong codec, bit errors) fails.
    let bad = s.blocks_lost + s.blocks_mismatched;
    let seen = (s.blocks_received + bad) as f64;
    if bad as f64 * 100.0 > sc.max_loss_percent * seen {
        return Err(format!(
            "{} lost and {} corrupted of {} blocks",
            s.blocks_lost, s.blocks_mismatched, seen
        ));
    }
    // Blocks sent in the last round trip could not come back before the
    // call ended: the share is of those that could.
    let in_flight = u64::from(s.rtt_frames_max).div_ceil(BLOCK_OCTETS as u64);
    let could = s.blocks_sent.saturating_sub(in_flight).max(1);
    if (s.blocks_received as f64) * 100.0 < sc.min_received_percent * could as f64 {
        return Err(format!(
            "only {} of {} blocks came back ({} more were still in flight)",
            s.blocks_received,
            could,
            s.blocks_sent - could.min(s.blocks_sent)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_share_counts_only_blocks_that_could_come_back() {
        let sc = Scenario::default();
        // 146 blocks sent, a 185 ms round trip: the last 47 were in flight.
        let s = AudioStats {
            blocks_sent: 146,
            blocks_received: 72,
            rtt_frames_max: 1480,
            ..AudioStats::default()
        };
        assert_eq!(check_audio(&sc, &s), Ok(()));
        let short = AudioStats {
            blocks_received: 40,
            ..s
        };
        let err = check_audio(&sc, &short).unwrap_err();
        assert!(err.contains("only 40 of 99"), "{err}");
        assert!(check_audio(&sc, &AudioStats::default()).is_err());
        let lossy = AudioStats {
            blocks_lost: 30,
            ..s
        };
        assert!(check_audio(&sc, &lossy).is_err(), "30 of 102 lost");
    }
}
