//! E1 alarms: defect detection (G.775), debounce, and raise/clear events.
//!
//! Sans-IO and clocked by the line itself: time is counted in received bits,
//! one *frame period* per 256 bits (125 µs), whether or not the receiver is
//! in frame alignment. A driver with no signal at all feeds zero octets (or
//! [`super::span::RawSpan::handle_no_signal`]) at line rate so that time
//! goes on and LOS is seen.
//!
//! # Contract
//!
//! - [`AlarmMonitor::handle_octet`] takes every received line octet, in
//!   order, before or after the deframer saw it; it returns `true` when a
//!   frame period (32 octets) has ended. The caller then calls
//!   [`AlarmMonitor::handle_frame_period`] with the deframer's view (LOF,
//!   LOMF, received A bit); it returns the defects seen in that period,
//!   which the G.826 counters ([`super::e1_perf`]) take.
//! - Defects (undebounced, per frame period): LOS = a run of at least
//!   [`AlarmConfig::los_zero_bits`] zeros (G.775 §3.1, 10 ≤ N ≤ 255); AIS =
//!   two consecutive 512-bit periods with at most two zeros each, cleared by
//!   two consecutive periods with three or more or by frame alignment
//!   (G.775 §3.3); LOF = out of
//!   G.706 §4.1 frame alignment; LOMF = CRC-4 multiframe lost (G.706 §4.2);
//!   RAI = A bit 1 in the received NFAS. LOS masks AIS, LOF, LOMF and RAI;
//!   AIS masks LOF, LOMF and RAI; LOF masks RAI (a consequence is not
//!   reported as its own alarm). LOF does not mask LOMF: without CRC-4 from
//!   the far end the deframer drops basic alignment every 8 ms (G.706 §4.2)
//!   and is out of frame only briefly each time, which must not reset the
//!   LOMF debounce.
//! - Alarms: a defect present for its raise time raises the alarm; the time
//!   is integrated, so short gaps (a flapping frame alignment on a garbled
//!   line) do not restart it, and it restarts only after the defect has been
//!   absent for the clear time. A raised alarm clears when the defect has
//!   been absent for the whole clear time (defaults as the DAHDI
//!   E1 drivers: 2.5 s to raise LOS/LOF/LOMF/AIS, 0.5 s for RAI; clear after
//!   `DAHDI_ALARMSETTLE_TIME`, 5 s, and 0.5 s for RAI). Each raise and clear
//!   is a [`LineEvent`], drained with [`AlarmMonitor::poll_event`] from a
//!   fixed ring; a full ring drops the event and counts it.
//! - Red = LOS | LOF | LOMF, blue = AIS, yellow = RAI. While red or blue the
//!   span sends A = 1 (G.732 §4.2.3: RAI towards the far end on loss of
//!   signal, AIS or loss of frame alignment).

use core::fmt;

/// Frame periods per second.
pub const FRAMES_PER_SECOND: u32 = 8000;
const FRAMES_PER_MS: u32 = FRAMES_PER_SECOND / 1000;
/// Octets in one frame period (256 bits).
const PERIOD_OCTETS: u8 = 32;
/// G.775 §3.3: AIS is judged over 512-bit periods (two frames).
const AIS_BLOCK_OCTETS: u8 = 64;
/// G.775 §3.3: at most this many zeros in a 512-bit period looks like AIS.
const AIS_MAX_ZEROS: u32 = 2;
/// Capacity of the event ring.
const EVENT_SLOTS: usize = 32;

/// One E1 alarm. The discriminant is its bit in [`Alarms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alarm {
    /// Loss of signal (red).
    Los = 0,
    /// Alarm indication signal, all ones (blue).
    Ais = 1,
    /// Loss of frame alignment (red).
    Lof = 2,
    /// Loss of CRC-4 multiframe alignment (red).
    Lomf = 3,
    /// Remote alarm indication, A bit from the far end (yellow).
    Rai = 4,
}

impl Alarm {
    pub const ALL: [Alarm; 5] = [Alarm::Los, Alarm::Ais, Alarm::Lof, Alarm::Lomf, Alarm::Rai];

    /// The name the NOC sees (`LOS`, `AIS`, `LOF`, `LOMF`, `RAI`).
    pub fn name(self) -> &'static str {
        match self {
            Alarm::Los => "LOS",
            Alarm::Ais => "AIS",
            Alarm::Lof => "LOF",
            Alarm::Lomf => "LOMF",
            Alarm::Rai => "RAI",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of alarms (or of defects). Shown as `LOS|LOF`, or `none`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Alarms(u8);

impl fmt::Display for Alarms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut sep = "";
        for a in Alarm::ALL.into_iter().filter(|&a| self.contains(a)) {
            write!(f, "{sep}{a}")?;
            sep = "|";
        }
        Ok(())
    }
}

impl fmt::Debug for Alarms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alarms({self})")
    }
}

impl Alarms {
    pub const NONE: Alarms = Alarms(0);
    const RED: u8 = 1 << Alarm::Los as u8 | 1 << Alarm::Lof as u8 | 1 << Alarm::Lomf as u8;

    pub fn contains(self, alarm: Alarm) -> bool {
        self.0 & alarm.bit() != 0
    }

    pub fn with(self, alarm: Alarm, on: bool) -> Alarms {
        if on {
            Alarms(self.0 | alarm.bit())
        } else {
            Alarms(self.0 & !alarm.bit())
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Red alarm: LOS, LOF or LOMF.
    pub fn red(self) -> bool {
        self.0 & Self::RED != 0
    }

    /// Blue alarm: AIS.
    pub fn blue(self) -> bool {
        self.contains(Alarm::Ais)
    }

    /// Yellow alarm: RAI.
    pub fn yellow(self) -> bool {
        self.contains(Alarm::Rai)
    }

    /// Bit `Alarm as u8` set per alarm.
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// What the line layer reports to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEvent {
    AlarmRaised(Alarm),
    AlarmCleared(Alarm),
    /// G.706 Annex B: no CRC-4 multiframe within 400 ms; the far end is
    /// taken as non-CRC-4 and the span runs on basic framing.
    Crc4Interworking,
}

/// Defect thresholds and debounce times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmConfig {
    /// The span number, for the logs.
    pub span_id: u16,
    /// G.775 §3.1: LOS after this many consecutive zeros (10..=255).
    pub los_zero_bits: u16,
    pub los_raise_ms: u32,
    pub ais_raise_ms: u32,
    pub lof_raise_ms: u32,
    pub lomf_raise_ms: u32,
    pub rai_raise_ms: u32,
    /// Clear time of LOS, AIS, LOF and LOMF.
    pub clear_ms: u32,
    pub rai_clear_ms: u32,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            span_id: 0,
            los_zero_bits: 255,
            los_raise_ms: 2500,
            ais_raise_ms: 2500,
            lof_raise_ms: 2500,
            lomf_raise_ms: 2500,
            rai_raise_ms: 500,
            clear_ms: 5000,
            rai_clear_ms: 500,
        }
    }
}

impl AlarmConfig {
    fn raise_frames(&self, alarm: Alarm) -> u32 {
        let ms = match alarm {
            Alarm::Los => self.los_raise_ms,
            Alarm::Ais => self.ais_raise_ms,
            Alarm::Lof => self.lof_raise_ms,
            Alarm::Lomf => self.lomf_raise_ms,
            Alarm::Rai => self.rai_raise_ms,
        };
        ms.saturating_mul(FRAMES_PER_MS).max(1)
    }

    fn clear_frames(&self, alarm: Alarm) -> u32 {
        let ms = match alarm {
            Alarm::Rai => self.rai_clear_ms,
            _ => self.clear_ms,
        };
        ms.saturating_mul(FRAMES_PER_MS).max(1)
    }
}

/// G.775 LOS and AIS detection on the raw bit stream (no alignment needed).
#[derive(Debug, Clone)]
struct SignalMonitor {
    los_zero_bits: u32,
    /// Zeros since the last one.
    zero_run: u32,
    /// A run of `los_zero_bits` zeros was seen in this frame period.
    los_seen: bool,
    block_octets: u8,
    block_zeros: u32,
    /// Consecutive 512-bit periods with at most / more than two zeros.
    ais_like_blocks: u8,
    live_blocks: u8,
    ais: bool,
}

impl SignalMonitor {
    fn new(los_zero_bits: u16) -> Self {
        SignalMonitor {
            los_zero_bits: u32::from(los_zero_bits.max(1)),
            zero_run: 0,
            los_seen: false,
            block_octets: 0,
            block_zeros: 0,
            ais_like_blocks: 0,
            live_blocks: 0,
            ais: false,
        }
    }

    fn octet(&mut self, o: u8) {
        if o == 0 {
            self.zero_run = self.zero_run.saturating_add(8);
        } else {
            self.zero_run += o.leading_zeros();
            self.los_seen |= self.zero_run >= self.los_zero_bits;
            self.zero_run = o.trailing_zeros();
        }
        self.los_seen |= self.zero_run >= self.los_zero_bits;
        self.block_zeros += o.count_zeros();
        self.block_octets += 1;
        if self.block_octets == AIS_BLOCK_OCTETS {
            self.ais_block();
        }
    }

    /// G.775 §3.3: two periods of ≤ 2 zeros detect AIS; two periods of
    /// ≥ 3 zeros clear it.
    fn ais_block(&mut self) {
        if self.block_zeros <= AIS_MAX_ZEROS {
            self.ais_like_blocks = self.ais_like_blocks.saturating_add(1);
            self.live_blocks = 0;
        } else {
            self.live_blocks = self.live_blocks.saturating_add(1);
            self.ais_like_blocks = 0;
        }
        if self.ais_like_blocks >= 2 {
            self.ais = true;
        } else if self.live_blocks >= 2 {
            self.ais = false;
        }
        self.block_octets = 0;
        self.block_zeros = 0;
    }

    /// LOS defect for the period that just ended.
    fn take_los(&mut self) -> bool {
        let los = self.los_seen;
        self.los_seen = self.zero_run >= self.los_zero_bits;
        los
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Debounce {
    /// Frame periods with the defect since the integration (re)started.
    present: u32,
    /// Consecutive frame periods without the defect.
    absent: u32,
}

/// Defects, debounced alarms and the event ring of one E1 receive side.
#[derive(Debug, Clone)]
pub struct AlarmMonitor {
    cfg: AlarmConfig,
    signal: SignalMonitor,
    period_octets: u8,
    debounce: [Debounce; 5],
    alarms: Alarms,
    defects: Alarms,
    events: [LineEvent; EVENT_SLOTS],
    event_head: usize,
    event_len: usize,
    events_dropped: u64,
    frame_periods: u64,
}

impl AlarmMonitor {
    pub fn new(cfg: AlarmConfig) -> Self {
        AlarmMonitor {
            cfg,
            signal: SignalMonitor::new(cfg.los_zero_bits),
            period_octets: 0,
            debounce: [Debounce::default(); 5],
            alarms: Alarms::NONE,
            defects: Alarms::NONE,
            events: [LineEvent::Crc4Interworking; EVENT_SLOTS],
            event_head: 0,
            event_len: 0,
            events_dropped: 0,
            frame_periods: 0,
        }
    }

    /// One received line octet; `true` when a frame period has just ended
    /// and [`handle_frame_period`](Self::handle_frame_period) is due.
    pub fn handle_octet(&mut self, octet: u8) -> bool {
        self.signal.octet(octet);
        self.period_octets += 1;
        if self.period_octets == PERIOD_OCTETS {
            self.period_octets = 0;
            return true;
        }
        false
    }

    /// Ends a frame period with the deframer's state; returns the (masked)
    /// defects of the period.
    pub fn handle_frame_period(&mut self, lof: bool, lomf: bool, rai: bool) -> Alarms {
        self.frame_periods += 1;
        let los = self.signal.take_los();
        // G.775 §3.3: AIS also clears once the FAS is found.
        let ais = self.signal.ais && !los && lof;
        let lof = lof && !los && !ais;
        let d = Alarms::NONE
            .with(Alarm::Los, los)
            .with(Alarm::Ais, ais)
            .with(Alarm::Lof, lof)
            .with(Alarm::Lomf, lomf && !los && !ais)
            .with(Alarm::Rai, rai && !los && !ais && !lof);
        self.defects = d;
        for alarm in Alarm::ALL {
            self.debounce_one(alarm, d.contains(alarm));
        }
        d
    }

    fn debounce_one(&mut self, alarm: Alarm, defect: bool) {
        let active = self.alarms.contains(alarm);
        let clear = self.cfg.clear_frames(alarm);
        let slot = &mut self.debounce[alarm as usize];
        if defect {
            slot.present = slot.present.saturating_add(1);
            slot.absent = 0;
        } else {
            slot.absent = slot.absent.saturating_add(1);
            if slot.absent >= clear {
                slot.present = 0;
            }
        }
        let change = if active {
            slot.absent >= clear
        } else {
            slot.present >= self.cfg.raise_frames(alarm)
        };
        if !change {
            return;
        }
        *slot = Debounce::default();
        self.alarms = self.alarms.with(alarm, defect);
        if defect {
            let alarms = tracing::field::display(self.alarms);
            tracing::warn!(
                span = self.cfg.span_id,
                alarm = alarm.name(),
                alarms,
                "E1 alarm raised"
            );
            self.push_event(LineEvent::AlarmRaised(alarm));
        } else {
            let alarms = tracing::field::display(self.alarms);
            tracing::info!(
                span = self.cfg.span_id,
                alarm = alarm.name(),
                alarms,
                "E1 alarm cleared"
            );
            self.push_event(LineEvent::AlarmCleared(alarm));
        }
    }

    /// Queues an event; a full ring drops it and counts.
    pub fn push_event(&mut self, event: LineEvent) {
        if self.event_len == EVENT_SLOTS {
            self.events_dropped += 1;
            return;
        }
        self.events[(self.event_head + self.event_len) % EVENT_SLOTS] = event;
        self.event_len += 1;
    }

    pub fn poll_event(&mut self) -> Option<LineEvent> {
        if self.event_len == 0 {
            return None;
        }
        let e = self.events[self.event_head];
        self.event_head = (self.event_head + 1) % EVENT_SLOTS;
        self.event_len -= 1;
        Some(e)
    }

    /// The debounced alarms in force.
    pub fn alarms(&self) -> Alarms {
        self.alarms
    }

    /// The defects of the last frame period (undebounced).
    pub fn defects(&self) -> Alarms {
        self.defects
    }

    /// We should send A = 1: red or blue alarm in force (G.732 §4.2.3).
    pub fn send_rai(&self) -> bool {
        self.alarms.red() || self.alarms.blue()
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Frame periods seen: received bits ÷ 256.
    pub fn frame_periods(&self) -> u64 {
        self.frame_periods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut AlarmMonitor, octet: u8, frames: u32, lof: bool, lomf: bool, rai: bool) {
        for _ in 0..frames * u32::from(PERIOD_OCTETS) {
            if m.handle_octet(octet) {
                m.handle_frame_period(lof, lomf, rai);
            }
        }
    }

    fn events(m: &mut AlarmMonitor) -> Vec<LineEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    const MS: u32 = FRAMES_PER_MS;

    #[test]
    fn los_raised_after_debounce_and_cleared_after_clear_time() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        // Zeros (LOF would be true too, but LOS masks it).
        run(&mut m, 0x00, 2499 * MS, true, false, false);
        assert!(m.alarms().is_empty());
        assert_eq!(m.defects(), Alarms::NONE.with(Alarm::Los, true));
        run(&mut m, 0x00, MS, true, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Los)]);
        assert!(m.alarms().red() && m.send_rai());
        // Signal back and in frame: clears after 5 s, not before (the first
        // period still ends the zero run: one more frame).
        run(&mut m, 0xD5, 4999 * MS + 1, false, false, false);
        assert!(m.alarms().contains(Alarm::Los));
        run(&mut m, 0xD5, MS, false, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmCleared(Alarm::Los)]);
        assert!(!m.send_rai());
    }

    #[test]
    fn intermittent_defect_time_is_integrated_until_absent_for_the_clear_time() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        // 2 s of LOF, a gap, 0.5 s more: 2.5 s in all, raised.
        run(&mut m, 0xD5, 2000 * MS, true, false, false);
        run(&mut m, 0xD5, 1000 * MS, false, false, false);
        run(&mut m, 0xD5, 500 * MS - 1, true, false, false);
        assert!(m.alarms().is_empty());
        run(&mut m, 0xD5, 1, true, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Lof)]);
        run(&mut m, 0xD5, 5000 * MS, false, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmCleared(Alarm::Lof)]);
        // A gap as long as the clear time starts the integration again.
        run(&mut m, 0xD5, 2000 * MS, true, false, false);
        run(&mut m, 0xD5, 5000 * MS, false, false, false);
        run(&mut m, 0xD5, 2000 * MS, true, false, false);
        assert!(m.alarms().is_empty());
        // Flapping: 3 periods out of frame in every 67 (a spurious
        // alignment that lasts 8 ms) still adds up.
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        for _ in 0..(2500 * MS / 3 + 1) {
            run(&mut m, 0xD5, 3, true, false, false);
            run(&mut m, 0xD5, 64, false, false, false);
        }
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Lof)]);
    }

    #[test]
    fn los_needs_the_configured_zero_run() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        // 0x01, 31 zero octets, 0x01 ...: runs of 248 + 7 = 255 zeros, LOS
        // from the second frame period on.
        let mut n = 0;
        for i in 0..32 * 10 {
            let o = if i % 32 == 0 { 0x01 } else { 0x00 };
            if m.handle_octet(o)
                && m.handle_frame_period(true, false, false)
                    .contains(Alarm::Los)
            {
                n += 1;
            }
        }
        assert_eq!(n, 9);
        // With 0x81 the runs are 248 zeros: no LOS.
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        for i in 0..32 * 10 {
            let o = if i % 32 == 0 { 0x81 } else { 0x00 };
            if m.handle_octet(o) {
                assert!(
                    !m.handle_frame_period(false, false, false)
                        .contains(Alarm::Los)
                );
            }
        }
    }

    #[test]
    fn ais_two_zeros_per_512_bits_is_ais_three_is_not() {
        let line = |zeros_per_block: usize| {
            let mut m = AlarmMonitor::new(AlarmConfig::default());
            let mut ais = 0;
            for i in 0..64 * 20 {
                let o = if i % 64 < zeros_per_block { 0xFE } else { 0xFF };
                if m.handle_octet(o) && m.handle_frame_period(true, false, false).blue() {
                    ais += 1;
                }
            }
            (ais, m.defects())
        };
        let (n, d) = line(2);
        // Detected at the end of the second 512-bit period (frame 4).
        assert_eq!(n, 37);
        assert_eq!(d, Alarms::NONE.with(Alarm::Ais, true)); // masks LOF
        assert_eq!(line(3).0, 0);
    }

    #[test]
    fn ais_raised_and_cleared() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        run(&mut m, 0xFF, 2500 * MS + 4, true, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Ais)]);
        assert!(m.alarms().blue() && !m.alarms().red() && m.send_rai());
        run(&mut m, 0xD5, 5000 * MS + 4, false, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmCleared(Alarm::Ais)]);
    }

    #[test]
    fn lof_lomf_and_rai_debounced_each_with_its_own_times() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        run(&mut m, 0xD5, 2500 * MS, true, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Lof)]);
        run(&mut m, 0xD5, 5000 * MS, false, true, false);
        // LOF clears after 5 s; LOMF is due 2.5 s after it began, so it
        // came first.
        assert_eq!(
            events(&mut m),
            [
                LineEvent::AlarmRaised(Alarm::Lomf),
                LineEvent::AlarmCleared(Alarm::Lof)
            ]
        );
        run(&mut m, 0xD5, 5000 * MS, false, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmCleared(Alarm::Lomf)]);
        run(&mut m, 0xD5, 499 * MS, false, false, true);
        assert!(m.alarms().is_empty());
        run(&mut m, 0xD5, MS, false, false, true);
        assert_eq!(events(&mut m), [LineEvent::AlarmRaised(Alarm::Rai)]);
        // Yellow alone: we do not send RAI back.
        assert!(m.alarms().yellow() && !m.send_rai());
        run(&mut m, 0xD5, 500 * MS, false, false, false);
        assert_eq!(events(&mut m), [LineEvent::AlarmCleared(Alarm::Rai)]);
    }

    #[test]
    fn alarm_sets_print_their_names() {
        let a = Alarms::NONE.with(Alarm::Los, true).with(Alarm::Rai, true);
        assert_eq!(a.to_string(), "LOS|RAI");
        assert_eq!(format!("{:?}", Alarms::NONE), "Alarms(none)");
        assert!(a.red() && a.yellow() && !a.blue());
        assert_eq!(a.with(Alarm::Los, false).bits(), 1 << 4);
    }

    #[test]
    fn event_ring_full_drops_and_counts() {
        let mut m = AlarmMonitor::new(AlarmConfig::default());
        for _ in 0..EVENT_SLOTS + 3 {
            m.push_event(LineEvent::Crc4Interworking);
        }
        assert_eq!(m.events_dropped(), 3);
        assert_eq!(events(&mut m).len(), EVENT_SLOTS);
        assert_eq!(m.poll_event(), None);
    }
}
