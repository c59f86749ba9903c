//! E1 performance counters: anomaly counts and G.826 errored seconds,
//! severely errored seconds and unavailable seconds, per 15-minute interval.
//!
//! Sans-IO, clocked by the line: [`E1Perf::handle_frame_period`] is called
//! once per received frame period (256 bits) with the anomalies counted in
//! it and whether a defect (LOS, AIS, LOF) was present; every
//! [`FRAMES_PER_SECOND`] periods one second is classified:
//!
//! - SES (G.826 §3.1.3 and Annex B for 2048 kbit/s): a defect in the second,
//!   or at least [`PerfConfig::ses_crc4_percent`] % (30 %) of the CRC-4 blocks
//!   checked in it errored; on a line without CRC-4 at least
//!   [`PerfConfig::ses_fas_errors`] errored FAS (28, the usual in-service
//!   estimate of a 10⁻³ bit error ratio from the FAS).
//! - ES (G.826 §3.1.2): at least one errored block (CRC-4) or errored FAS
//!   (no CRC-4), or a defect. Every SES is also an ES.
//! - Unavailable time (G.826 Annex A): begins at the onset of ten
//!   consecutive SES, those ten included; available time begins again at the
//!   onset of ten consecutive non-SES, those ten included. ES and SES are
//!   counted only in available time. Seconds whose availability is not yet
//!   known (up to ten) are held back and counted when it is, in the interval
//!   they belong to (the previous one if it has closed since): the current
//!   ES/SES/UAS counts may lag by up to ten seconds, as in RFC 4805.
//!
//! The far end's view of our transmit direction is counted the same way
//! (G.826 §B.2 / RFC 4805's far-end counters), from what it sends back:
//!
//! - far-end SES: RAI received in the second (the far end is in a defect
//!   state: it counts the second severely errored), or on a CRC-4 line at
//!   least 30 % of the blocks reported errored by E bits (FEBE);
//! - far-end ES: at least one FEBE, or a far-end SES;
//! - far-end unavailable time: the same ten-second rule, on its own.
//!
//! A second with a near-end defect (LOS, AIS, LOF) tells nothing about the
//! far end (no E bits or A bit can be read): it is left out of the far-end
//! counts and does not break or extend a far-end run.
//!
//! Intervals are 900 seconds of line time (the first one shorter by
//! [`PerfConfig::first_interval_elapsed_s`], to end on a quarter hour of the
//! caller's clock); the last 96 closed intervals
//! (24 hours) are kept in a fixed ring, and totals since start. Nothing is
//! allocated.

use super::e1_alarm::FRAMES_PER_SECOND;

/// Seconds in one interval (15 minutes).
pub const INTERVAL_SECONDS: u32 = 900;
/// Closed intervals kept.
pub const HISTORY_INTERVALS: usize = 96;
/// G.826 Annex A: ten consecutive SES / non-SES switch availability.
const AVAILABILITY_RUN: usize = 10;

/// SES thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfConfig {
    /// The span number, for the logs.
    pub span_id: u16,
    /// Percentage of CRC-4 blocks errored in a second that makes it an SES.
    pub ses_crc4_percent: u32,
    /// Errored FAS in a second that make it an SES on a non-CRC-4 line.
    pub ses_fas_errors: u32,
    /// Seconds of the first interval already gone when the span starts, so
    /// that intervals end on the caller's quarter hours (RFC 4805 style):
    /// the first interval is then shorter, as its `seconds` shows.
    pub first_interval_elapsed_s: u32,
}

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig {
            span_id: 0,
            ses_crc4_percent: 30,
            ses_fas_errors: 28,
            first_interval_elapsed_s: 0,
        }
    }
}

/// Anomalies counted in one frame period (or any stretch of time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    pub fas_errors: u32,
    /// CRC-4 blocks (sub-multiframes) checked.
    pub crc4_blocks: u32,
    pub crc4_errors: u32,
    /// E bits = 0 received: far-end block errors.
    pub febe: u32,
    /// Frame alignment given up: three errored FAS (G.706 §4.1.1), the
    /// 915/1000 CRC-4 guard (§4.3.2) or no multiframe in 8 ms (§4.2).
    pub alignment_losses: u32,
    pub slips: u32,
}

/// The counts of one interval, or of all time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerfCounts {
    /// Seconds of line time in the interval.
    pub seconds: u32,
    pub fas_errors: u64,
    pub crc4_blocks: u64,
    pub crc4_errors: u64,
    pub febe: u64,
    pub slips: u64,
    pub alignment_losses: u64,
    /// Errored seconds (SES included), available time only.
    pub es: u32,
    /// Severely errored seconds, available time only.
    pub ses: u32,
    /// Unavailable seconds.
    pub uas: u32,
    /// Far-end errored seconds (far-end SES included), far-end available time only.
    pub far_es: u32,
    /// Far-end severely errored seconds, far-end available time only.
    pub far_ses: u32,
    /// Far-end unavailable seconds.
    pub far_uas: u32,
}

impl PerfCounts {
    fn add(&mut self, a: &Anomalies) {
        self.fas_errors += u64::from(a.fas_errors);
        self.crc4_blocks += u64::from(a.crc4_blocks);
        self.crc4_errors += u64::from(a.crc4_errors);
        self.febe += u64::from(a.febe);
        self.slips += u64::from(a.slips);
        self.alignment_losses += u64::from(a.alignment_losses);
    }

    fn count_second(&mut self, end: End, class: SecondClass, available: bool) {
        let (es, ses, uas) = match end {
            End::Near => (&mut self.es, &mut self.ses, &mut self.uas),
            End::Far => (&mut self.far_es, &mut self.far_ses, &mut self.far_uas),
        };
        if !available {
            *uas += 1;
            return;
        }
        match class {
            SecondClass::Clean => {}
            SecondClass::Errored => *es += 1,
            SecondClass::Severe => {
                *es += 1;
                *ses += 1;
            }
        }
    }
}

/// A second as G.826 sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondClass {
    Clean,
    Errored,
    Severe,
}

/// Which end's view of the line a second belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// What we receive.
    Near,
    /// What the far end receives from us, as it reports (E bits, RAI).
    Far,
}

/// A second whose availability is not known yet, and its interval.
#[derive(Debug, Clone, Copy)]
struct Pending {
    class: SecondClass,
    interval: u64,
}

/// G.826 Annex A for one end: seconds are held back while a run of ten
/// could still switch availability.
#[derive(Debug, Clone)]
struct Availability {
    unavailable: bool,
    pending: [Pending; AVAILABILITY_RUN],
    pending_len: usize,
}

/// What one classified second settles: held seconds released with their
/// availability, and whether availability switched.
struct Settled {
    released: [Pending; AVAILABILITY_RUN + 1],
    len: usize,
    available: bool,
    switched: bool,
}

impl Availability {
    fn new() -> Self {
        Availability {
            unavailable: false,
            pending: [Pending {
                class: SecondClass::Clean,
                interval: 0,
            }; AVAILABILITY_RUN],
            pending_len: 0,
        }
    }

    fn second(&mut self, class: SecondClass, interval: u64) -> Settled {
        let mut out = Settled {
            released: [Pending {
                class: SecondClass::Clean,
                interval: 0,
            }; AVAILABILITY_RUN + 1],
            len: 0,
            available: !self.unavailable,
            switched: false,
        };
        let severe = class == SecondClass::Severe;
        let this = Pending { class, interval };
        if severe != self.unavailable {
            // A run that could switch availability is held back.
            if let Some(p) = self.pending.get_mut(self.pending_len) {
                *p = this;
                self.pending_len += 1;
            }
            if self.pending_len == AVAILABILITY_RUN {
                self.unavailable = !self.unavailable;
                out.switched = true;
                out.available = !self.unavailable;
                out.released[..AVAILABILITY_RUN].copy_from_slice(&self.pending);
                out.len = AVAILABILITY_RUN;
                self.pending_len = 0;
            }
        } else {
            // The run is broken: what was held keeps the current state.
            let n = self.pending_len;
            out.released[..n].copy_from_slice(&self.pending[..n]);
            out.released[n] = this;
            out.len = n + 1;
            self.pending_len = 0;
        }
        out
    }
}

/// The counters of one E1 receive side; see the module doc.
#[derive(Debug, Clone)]
pub struct E1Perf {
    cfg: PerfConfig,
    frames_in_second: u32,
    second: Anomalies,
    second_defect: bool,
    second_far_defect: bool,
    /// Number of the current interval since start.
    interval: u64,
    current: PerfCounts,
    history: [PerfCounts; HISTORY_INTERVALS],
    /// Closed intervals in `history` (up to 96); the newest at `newest`.
    history_len: usize,
    newest: usize,
    total: PerfCounts,
    near: Availability,
    far: Availability,
    /// Seconds the current interval started late (the first one only).
    interval_head_start_s: u32,
}

impl E1Perf {
    pub fn new(cfg: PerfConfig) -> Self {
        E1Perf {
            cfg,
            frames_in_second: 0,
            second: Anomalies::default(),
            second_defect: false,
            second_far_defect: false,
            interval: 0,
            current: PerfCounts::default(),
            history: [PerfCounts::default(); HISTORY_INTERVALS],
            history_len: 0,
            newest: HISTORY_INTERVALS - 1,
            total: PerfCounts::default(),
            near: Availability::new(),
            far: Availability::new(),
            interval_head_start_s: cfg.first_interval_elapsed_s.min(INTERVAL_SECONDS - 1),
        }
    }

    /// One frame period of line time with its anomalies; `defect` = LOS,
    /// AIS or LOF present in it; `far_defect` = RAI received in it (the far
    /// end's defect indication).
    pub fn handle_frame_period(&mut self, a: &Anomalies, defect: bool, far_defect: bool) {
        self.current.add(a);
        self.total.add(a);
        let s = &mut self.second;
        s.fas_errors += a.fas_errors;
        s.crc4_blocks += a.crc4_blocks;
        s.crc4_errors += a.crc4_errors;
        s.febe += a.febe;
        self.second_defect |= defect;
        self.second_far_defect |= far_defect;
        self.frames_in_second += 1;
        if self.frames_in_second >= FRAMES_PER_SECOND {
            let class = self.classify();
            let far = (!self.second_defect).then(|| self.classify_far());
            self.frames_in_second = 0;
            self.second = Anomalies::default();
            self.second_defect = false;
            self.second_far_defect = false;
            self.handle_seconds(class, far);
        }
    }

    /// Slips seen by the driver (they are not visible in the bit stream).
    pub fn add_slips(&mut self, n: u32) {
        let a = Anomalies {
            slips: n,
            ..Anomalies::default()
        };
        self.current.add(&a);
        self.total.add(&a);
    }

    fn classify(&self) -> SecondClass {
        let s = &self.second;
        let (errors, severe) = if s.crc4_blocks > 0 {
            let pct = u64::from(self.cfg.ses_crc4_percent);
            let severe = u64::from(s.crc4_errors) * 100 >= pct * u64::from(s.crc4_blocks);
            (s.crc4_errors, severe)
        } else {
            (s.fas_errors, s.fas_errors >= self.cfg.ses_fas_errors)
        };
        if self.second_defect || (errors > 0 && severe) {
            SecondClass::Severe
        } else if errors > 0 {
            SecondClass::Errored
        } else {
            SecondClass::Clean
        }
    }

    /// The far end's second, from the E bits and RAI it sent.
    fn classify_far(&self) -> SecondClass {
        let s = &self.second;
        let pct = u64::from(self.cfg.ses_crc4_percent);
        let severe_febe =
            s.crc4_blocks > 0 && u64::from(s.febe) * 100 >= pct * u64::from(s.crc4_blocks);
        if self.second_far_defect || (s.febe > 0 && severe_febe) {
            SecondClass::Severe
        } else if s.febe > 0 {
            SecondClass::Errored
        } else {
            SecondClass::Clean
        }
    }

    /// G.826 Annex A availability for one classified near-end second (the
    /// far end's second counted as clean).
    pub fn handle_second(&mut self, class: SecondClass) {
        self.handle_seconds(class, Some(SecondClass::Clean));
    }

    /// One second: the near end's class, and the far end's (`None` when a
    /// near-end defect hid it).
    pub fn handle_seconds(&mut self, near: SecondClass, far: Option<SecondClass>) {
        self.current.seconds += 1;
        self.total.seconds += 1;
        self.settle(End::Near, near);
        if let Some(far) = far {
            self.settle(End::Far, far);
        }
        if self.current.seconds + self.interval_head_start_s >= INTERVAL_SECONDS {
            self.interval_head_start_s = 0;
            self.close_interval();
        }
    }

    fn settle(&mut self, end: End, class: SecondClass) {
        let tracker = match end {
            End::Near => &mut self.near,
            End::Far => &mut self.far,
        };
        let settled = tracker.second(class, self.interval);
        if settled.switched {
            tracing::info!(
                span = self.cfg.span_id,
                end = ?end,
                unavailable = !settled.available,
                "E1 availability changed: ten consecutive {} (G.826 Annex A)",
                if settled.available { "non-SES" } else { "SES" }
            );
        }
        for p in &settled.released[..settled.len] {
            self.count(end, p.class, p.interval, settled.available);
        }
    }

    /// Counts a second in its interval (current, or the one just closed).
    fn count(&mut self, end: End, class: SecondClass, interval: u64, available: bool) {
        self.total.count_second(end, class, available);
        if interval == self.interval {
            self.current.count_second(end, class, available);
        } else if interval + 1 == self.interval && self.history_len > 0 {
            self.history[self.newest].count_second(end, class, available);
        }
    }

    fn close_interval(&mut self) {
        self.newest = (self.newest + 1) % HISTORY_INTERVALS;
        self.history[self.newest] = self.current;
        self.history_len = (self.history_len + 1).min(HISTORY_INTERVALS);
        self.current = PerfCounts::default();
        self.interval += 1;
    }

    /// The interval in progress.
    pub fn current(&self) -> &PerfCounts {
        &self.current
    }

    /// Closed interval `back` (1 = the previous one, up to 96).
    pub fn interval(&self, back: usize) -> Option<&PerfCounts> {
        if back == 0 || back > self.history_len {
            return None;
        }
        let i = (self.newest + HISTORY_INTERVALS + 1 - back) % HISTORY_INTERVALS;
        self.history.get(i)
    }

    /// Closed intervals held (0..=96).
    pub fn intervals(&self) -> usize {
        self.history_len
    }

    /// Everything since start.
    pub fn total(&self) -> &PerfCounts {
        &self.total
    }

    /// In unavailable time (G.826 Annex A).
    pub fn unavailable(&self) -> bool {
        self.near.unavailable
    }

    /// The far end in unavailable time, as its E bits and RAI tell.
    pub fn far_unavailable(&self) -> bool {
        self.far.unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecondClass::{Clean as C, Errored as E, Severe as S};

    fn seconds(p: &mut E1Perf, pattern: &[(SecondClass, usize)]) {
        for &(class, n) in pattern {
            for _ in 0..n {
                p.handle_second(class);
            }
        }
    }

    fn es_ses_uas(c: &PerfCounts) -> (u32, u32, u32) {
        (c.es, c.ses, c.uas)
    }

    #[test]
    fn errored_and_short_severe_runs_are_available_time() {
        let mut p = E1Perf::new(PerfConfig::default());
        seconds(&mut p, &[(E, 5), (C, 2), (S, 9), (C, 1), (S, 3), (E, 1)]);
        // ES includes SES; nine SES are not ten: still available.
        assert_eq!(es_ses_uas(p.current()), (18, 12, 0));
        assert_eq!(p.current().seconds, 21);
        assert!(!p.unavailable());
    }

    #[test]
    fn ten_severe_seconds_are_unavailable_retroactively_and_ten_good_end_it() {
        let mut p = E1Perf::new(PerfConfig::default());
        seconds(&mut p, &[(E, 1), (S, 9)]);
        // Held back: the ninth SES might be the start of unavailability.
        assert_eq!(es_ses_uas(p.current()), (1, 0, 0));
        seconds(&mut p, &[(S, 1)]);
        assert!(p.unavailable());
        assert_eq!(es_ses_uas(p.current()), (1, 0, 10));
        // In unavailable time: nine non-SES, then an SES: all unavailable.
        seconds(&mut p, &[(E, 4), (C, 5), (S, 1)]);
        assert_eq!(es_ses_uas(p.current()), (1, 0, 20));
        // Ten non-SES: available again from the first of them, whose ES count.
        seconds(&mut p, &[(E, 2), (C, 8)]);
        assert!(!p.unavailable());
        assert_eq!(es_ses_uas(p.current()), (3, 0, 20));
        seconds(&mut p, &[(S, 1), (C, 1)]);
        assert_eq!(es_ses_uas(p.current()), (4, 1, 20));
        assert_eq!(es_ses_uas(p.total()), (4, 1, 20));
    }

    #[test]
    fn unavailability_starting_before_an_interval_boundary_goes_back_into_it() {
        let mut p = E1Perf::new(PerfConfig::default());
        seconds(&mut p, &[(C, 895), (S, 10), (C, 20)]);
        assert_eq!(p.intervals(), 1);
        let prev = *p.interval(1).unwrap();
        assert_eq!(prev.seconds, 900);
        assert_eq!(es_ses_uas(&prev), (0, 0, 5));
        assert_eq!(es_ses_uas(p.current()), (0, 0, 5));
        assert_eq!(p.current().seconds, 25);
        assert_eq!(es_ses_uas(p.total()), (0, 0, 10));
    }

    #[test]
    fn first_interval_shortened_to_end_on_the_quarter_hour() {
        let mut p = E1Perf::new(PerfConfig {
            first_interval_elapsed_s: 600,
            ..PerfConfig::default()
        });
        seconds(&mut p, &[(E, 300), (C, 900), (C, 1)]);
        assert_eq!(p.intervals(), 2);
        assert_eq!(
            (p.interval(2).unwrap().seconds, p.interval(2).unwrap().es),
            (300, 300)
        );
        assert_eq!(p.interval(1).unwrap().seconds, 900);
        assert_eq!(p.current().seconds, 1);
    }

    #[test]
    fn history_keeps_96_intervals() {
        let mut p = E1Perf::new(PerfConfig::default());
        for i in 0..100u32 {
            // Interval i has i % 7 errored seconds.
            seconds(
                &mut p,
                &[(E, (i % 7) as usize), (C, 900 - (i % 7) as usize)],
            );
        }
        assert_eq!(p.intervals(), 96);
        assert_eq!(p.interval(1).unwrap().es, 99 % 7);
        // Interval 4 (the oldest kept) had 4 errored seconds.
        assert_eq!(p.interval(96).unwrap().es, 4);
        assert!(p.interval(97).is_none() && p.interval(0).is_none());
        assert_eq!(p.total().seconds, 90_000);
    }

    fn one_second(p: &mut E1Perf, a: Anomalies, defect_frame: Option<u32>) {
        for f in 0..FRAMES_PER_SECOND {
            let a = if f == 0 { a } else { Anomalies::default() };
            p.handle_frame_period(&a, defect_frame == Some(f), false);
        }
    }

    #[test]
    fn seconds_classified_from_frame_periods() {
        let mut p = E1Perf::new(PerfConfig::default());
        let crc = |errors| Anomalies {
            crc4_blocks: 1000,
            crc4_errors: errors,
            ..Anomalies::default()
        };
        let fas = |errors| Anomalies {
            fas_errors: errors,
            ..Anomalies::default()
        };
        one_second(&mut p, crc(0), None);
        one_second(&mut p, crc(299), None);
        one_second(&mut p, crc(300), None);
        one_second(&mut p, fas(27), None);
        one_second(&mut p, fas(28), None);
        one_second(&mut p, Anomalies::default(), Some(4000));
        one_second(&mut p, Anomalies::default(), None);
        assert_eq!(es_ses_uas(p.current()), (5, 3, 0));
        assert_eq!(p.current().crc4_errors, 599);
        assert_eq!(p.current().fas_errors, 55);
        assert_eq!(p.current().seconds, 7);
    }

    fn far(c: &PerfCounts) -> (u32, u32, u32) {
        (c.far_es, c.far_ses, c.far_uas)
    }

    fn second_with(p: &mut E1Perf, a: Anomalies, defect: bool, rai: bool) {
        for f in 0..FRAMES_PER_SECOND {
            let a = if f == 0 { a } else { Anomalies::default() };
            p.handle_frame_period(&a, defect && f == 100, rai && f == 200);
        }
    }

    #[test]
    fn far_end_seconds_from_e_bits_and_rai() {
        let mut p = E1Perf::new(PerfConfig::default());
        let febe = |n| Anomalies {
            crc4_blocks: 1000,
            febe: n,
            ..Anomalies::default()
        };
        second_with(&mut p, febe(0), false, false);
        second_with(&mut p, febe(1), false, false);
        second_with(&mut p, febe(299), false, false);
        second_with(&mut p, febe(300), false, false);
        // RAI: the far end is in a defect state, a far-end SES; our side is clean.
        second_with(&mut p, febe(0), false, true);
        // A near-end defect hides the far end: not a far-end second at all.
        second_with(&mut p, febe(1000), true, true);
        // The two far-end SES are held back (they might start unavailable
        // time) until a far-end second that is not severe.
        assert_eq!(far(p.current()), (2, 0, 0));
        second_with(&mut p, febe(0), false, false);
        assert_eq!(far(p.current()), (4, 2, 0));
        assert_eq!(es_ses_uas(p.current()), (1, 1, 0));
        assert_eq!(p.current().febe, 1600);
        assert_eq!(far(p.total()), (4, 2, 0));
    }

    #[test]
    fn far_end_unavailability_is_its_own_ten_second_run() {
        let mut p = E1Perf::new(PerfConfig::default());
        let clean = Anomalies {
            crc4_blocks: 1000,
            ..Anomalies::default()
        };
        for _ in 0..9 {
            second_with(&mut p, clean, false, true);
        }
        assert_eq!(far(p.current()), (0, 0, 0), "nine held back");
        // A near-end defect second neither breaks nor extends the run.
        second_with(&mut p, clean, true, false);
        assert!(!p.far_unavailable());
        second_with(&mut p, clean, false, true);
        assert!(p.far_unavailable());
        assert!(!p.unavailable());
        assert_eq!(far(p.current()), (0, 0, 10));
        // The near end saw one defect second: an SES in available time.
        assert_eq!(es_ses_uas(p.current()), (1, 1, 0));
        for _ in 0..10 {
            second_with(&mut p, clean, false, false);
        }
        assert!(!p.far_unavailable());
        assert_eq!(far(p.current()), (0, 0, 10));
        assert_eq!(p.current().seconds, 21);
    }
}
