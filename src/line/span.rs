//! A raw E1 span: the sans-IO join between a raw line driver (`pair`,
//! `satop`, `serial`) and the media thread.
//!
//! [`RawSpan`] owns the G.706 deframer, the G.704 framer, the TS16 HDLC
//! receiver and transmitter, the alarm monitor and the G.826 counters of one
//! E1. Everything is allocated in [`RawSpan::new`]; afterwards nothing is.
//!
//! # Contract
//!
//! - Receive: [`RawSpan::handle_rx`] takes received line octets in order, at
//!   any alignment and in any amount. For each aligned frame it calls
//!   `on_frame` with the 32 timeslots (TS1..TS15, TS17..TS31 carry the
//!   B-channels; TS16 has already gone to the HDLC receiver). Good D-channel
//!   frames (address..information, FCS checked and stripped) wait in a ring
//!   of [`SpanConfig::dchannel_rx_slots`] slots of
//!   [`MAX_FRAME_OCTETS`] octets until [`RawSpan::poll_dchannel_frame`]
//!   copies one out; a full ring drops the new frame and counts it
//!   ([`SpanCounters::dchannel_rx_overflows`]).
//! - Time is the received line: every 256 bits are one frame period for the
//!   alarms and the counters. A driver that has no signal calls
//!   [`RawSpan::handle_no_signal`] at line rate (from its 1 ms free-run
//!   timer) so that LOS is seen.
//! - Transmit: the caller fills the B-channel timeslots of a frame and
//!   calls [`RawSpan::emit_frame`], which writes TS16 (the HDLC
//!   transmitter's next octet, idle flags when nothing is queued) and TS0
//!   (FAS/NFAS, A = 1 while we are in red or blue alarm or RAI is forced,
//!   Sa bits, CRC-4 and E bits). Loop timing: one frame out per frame in.
//!   [`RawSpan::send_dchannel_frame`] queues a D-channel frame in a fixed
//!   queue of [`SpanConfig::dchannel_tx_slots`] slots.
//! - Reports: [`RawSpan::poll_event`] drains alarm raise/clear events;
//!   [`RawSpan::alarms`] is the debounced alarm set; [`RawSpan::counters`]
//!   and [`RawSpan::perf`] are the telemetry.
//! - E bits (G.704 §2.3.3.4): the result of our CRC-4 check of each
//!   received sub-multiframe; 0 while we are not in CRC-4 multiframe
//!   alignment, and 0 towards a non-CRC-4 far end (G.706 Annex B).

use core::fmt;

use super::e1::{AlignState, DeframerStats, E1Deframer, E1Framer, FRAME_OCTETS, MultiframeState};
use super::e1_alarm::AlarmMonitor;
pub use super::e1_alarm::{Alarm, AlarmConfig, Alarms, LineEvent};
use super::e1_perf::Anomalies;
pub use super::e1_perf::{E1Perf, PerfConfig, PerfCounts};
use super::hdlc::{HdlcDecoder, HdlcEncoder, HdlcRxStats, MAX_FRAME_OCTETS};

/// Timeslot of the D-channel.
pub const DCHANNEL_TS: usize = 16;

/// What a span is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanConfig {
    /// The span number, for the logs (copied into the alarm and counter
    /// configurations by [`RawSpan::new`]).
    pub span_id: u16,
    /// CRC-4 multiframe on transmit and required on receive.
    pub crc4: bool,
    /// G.706 Annex B interworking with a non-CRC-4 far end (with `crc4`).
    pub crc4_annex_b: bool,
    /// Sa4..Sa8 sent in NFAS (Sa4 in bit 4 of the low five); G.704: 1 if unused.
    pub sa_bits: u8,
    pub alarms: AlarmConfig,
    pub perf: PerfConfig,
    /// Received D-channel frames held for the control plane.
    pub dchannel_rx_slots: usize,
    /// D-channel frames queued for sending.
    pub dchannel_tx_slots: usize,
}

impl Default for SpanConfig {
    fn default() -> Self {
        SpanConfig {
            span_id: 0,
            crc4: true,
            crc4_annex_b: false,
            sa_bits: 0x1F,
            alarms: AlarmConfig::default(),
            perf: PerfConfig::default(),
            dchannel_rx_slots: 16,
            dchannel_tx_slots: 16,
        }
    }
}

/// Why [`RawSpan::send_dchannel_frame`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanTxError {
    /// The transmit queue is full; try again after some frames went out.
    QueueFull,
    /// Empty or longer than [`MAX_FRAME_OCTETS`].
    BadLength(usize),
}

impl fmt::Display for SpanTxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpanTxError::QueueFull => f.write_str("D-channel transmit queue full"),
            SpanTxError::BadLength(n) => {
                write!(f, "D-channel frame of {n} octets (1..={MAX_FRAME_OCTETS})")
            }
        }
    }
}

impl std::error::Error for SpanTxError {}

/// Telemetry of one span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounters {
    pub deframer: DeframerStats,
    pub hdlc_rx: HdlcRxStats,
    /// D-channel frames completely sent.
    pub hdlc_tx_frames: u64,
    /// Received D-channel frames dropped on a full ring.
    pub dchannel_rx_overflows: u64,
    /// Frames refused by a full transmit queue.
    pub dchannel_tx_queue_full: u64,
    /// Events dropped on a full event ring.
    pub events_dropped: u64,
    /// Frame periods of line time received.
    pub frame_periods: u64,
    /// Frames sent.
    pub frames_sent: u64,
}

/// A fixed ring of fixed-size frame slots.
#[derive(Debug)]
struct FrameRing {
    slots: Vec<[u8; MAX_FRAME_OCTETS]>,
    lens: Vec<usize>,
    head: usize,
    len: usize,
}

impl FrameRing {
    fn new(n: usize) -> Self {
        let n = n.max(1);
        FrameRing {
            slots: vec![[0; MAX_FRAME_OCTETS]; n],
            lens: vec![0; n],
            head: 0,
            len: 0,
        }
    }

    /// Copies `frame` in; `false` if full (or too long).
    fn push(&mut self, frame: &[u8]) -> bool {
        let n = self.slots.len();
        if self.len == n || frame.len() > MAX_FRAME_OCTETS {
            return false;
        }
        let i = (self.head + self.len) % n;
        self.slots[i][..frame.len()].copy_from_slice(frame);
        self.lens[i] = frame.len();
        self.len += 1;
        true
    }

    fn front(&self) -> Option<&[u8]> {
        (self.len > 0).then(|| &self.slots[self.head][..self.lens[self.head]])
    }

    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % self.slots.len();
            self.len -= 1;
        }
    }
}

/// One raw E1 span; see the module contract.
pub struct RawSpan {
    cfg: SpanConfig,
    deframer: E1Deframer,
    framer: E1Framer,
    hdlc_rx: HdlcDecoder,
    hdlc_tx: HdlcEncoder,
    alarms: AlarmMonitor,
    perf: E1Perf,
    rx_ring: FrameRing,
    tx_queue: FrameRing,
    /// Deframer stats at the end of the last frame period.
    last_stats: DeframerStats,
    last_mf_state: MultiframeState,
    force_rai: bool,
    dchannel_rx_overflows: u64,
    dchannel_tx_queue_full: u64,
    frames_sent: u64,
}

impl fmt::Debug for RawSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSpan")
            .field("span_id", &self.cfg.span_id)
            .field("alarms", &self.alarms.alarms())
            .field("deframer", &self.deframer)
            .finish()
    }
}

impl RawSpan {
    /// Builds the span and allocates all its buffers.
    pub fn new(mut cfg: SpanConfig) -> Self {
        cfg.alarms.span_id = cfg.span_id;
        cfg.perf.span_id = cfg.span_id;
        let mut framer = E1Framer::with_crc4(cfg.crc4);
        framer.set_sa_bits(cfg.sa_bits);
        let deframer = E1Deframer::with_crc4(cfg.crc4).with_annex_b(cfg.crc4_annex_b);
        RawSpan {
            last_mf_state: deframer.multiframe_state(),
            deframer,
            framer,
            hdlc_rx: HdlcDecoder::new(),
            hdlc_tx: HdlcEncoder::new(),
            alarms: AlarmMonitor::new(cfg.alarms),
            perf: E1Perf::new(cfg.perf),
            rx_ring: FrameRing::new(cfg.dchannel_rx_slots),
            tx_queue: FrameRing::new(cfg.dchannel_tx_slots),
            last_stats: DeframerStats::default(),
            force_rai: false,
            dchannel_rx_overflows: 0,
            dchannel_tx_queue_full: 0,
            frames_sent: 0,
            cfg,
        }
    }

    pub fn config(&self) -> &SpanConfig {
        &self.cfg
    }

    /// Feeds received line octets; `on_frame` gets each aligned frame.
    pub fn handle_rx(&mut self, octets: &[u8], mut on_frame: impl FnMut(&[u8; FRAME_OCTETS])) {
        for &o in octets {
            if let Some(frame) = self.deframer.handle_octet(o) {
                let frame = *frame;
                if let Some(d) = self.hdlc_rx.handle_octet(frame[DCHANNEL_TS])
                    && !self.rx_ring.push(d)
                {
                    self.dchannel_rx_overflows += 1;
                    if self.dchannel_rx_overflows == 1 {
                        tracing::warn!(
                            span = self.cfg.span_id,
                            "D-channel receive ring full: frame dropped (logged once)"
                        );
                    }
                }
                on_frame(&frame);
            }
            if self.alarms.handle_octet(o) {
                self.frame_period();
            }
        }
    }

    /// `octets` of line time with no signal at all (LOS): the driver's
    /// free-run timer calls this, 256 octets per millisecond.
    pub fn handle_no_signal(&mut self, mut octets: usize) {
        const ZEROS: [u8; 256] = [0; 256];
        while octets > 0 {
            let n = octets.min(ZEROS.len());
            self.handle_rx(&ZEROS[..n], |_| {});
            octets -= n;
        }
    }

    /// End of a frame period: alarms, counters, Annex B event.
    fn frame_period(&mut self) {
        let d = &self.deframer;
        let lof = d.state() == AlignState::Search;
        let lomf = self.cfg.crc4 && d.loss_of_multiframe();
        let rai = !lof && d.remote_alarm();
        let defects = self.alarms.handle_frame_period(lof, lomf, rai);
        let s = self.deframer.stats();
        let l = self.last_stats;
        let delta = |a: u64, b: u64| u32::try_from(a - b).unwrap_or(u32::MAX);
        let anomalies = Anomalies {
            fas_errors: delta(s.fas_errors, l.fas_errors),
            crc4_blocks: delta(s.crc4_blocks, l.crc4_blocks),
            crc4_errors: delta(s.crc4_errors, l.crc4_errors),
            febe: delta(s.febe, l.febe),
            alignment_losses: delta(
                s.alignment_losses + s.crc4_alignment_losses + s.multiframe_losses,
                l.alignment_losses + l.crc4_alignment_losses + l.multiframe_losses,
            ),
            slips: 0,
        };
        self.last_stats = s;
        // G.826 Annex B: LOS, AIS and LOF make a second severely errored.
        let g826_defect = [Alarm::Los, Alarm::Ais, Alarm::Lof]
            .iter()
            .any(|&a| defects.contains(a));
        self.perf.handle_frame_period(&anomalies, g826_defect, rai);
        let mf = self.deframer.multiframe_state();
        if mf != self.last_mf_state {
            if mf == MultiframeState::Interworking {
                self.alarms.push_event(LineEvent::Crc4Interworking);
            }
            self.last_mf_state = mf;
        }
    }

    /// Copies the oldest received D-channel frame into `out` and returns its
    /// length. A frame longer than `out` is dropped (counted as an overflow).
    pub fn poll_dchannel_frame(&mut self, out: &mut [u8]) -> Option<usize> {
        loop {
            let frame = self.rx_ring.front()?;
            let n = frame.len();
            if let Some(dst) = out.get_mut(..n) {
                dst.copy_from_slice(frame);
                self.rx_ring.pop();
                return Some(n);
            }
            self.rx_ring.pop();
            self.dchannel_rx_overflows += 1;
        }
    }

    /// Queues a D-channel frame (address..information, no FCS).
    pub fn send_dchannel_frame(&mut self, frame: &[u8]) -> Result<(), SpanTxError> {
        if frame.is_empty() || frame.len() > MAX_FRAME_OCTETS {
            return Err(SpanTxError::BadLength(frame.len()));
        }
        if !self.tx_queue.push(frame) {
            self.dchannel_tx_queue_full += 1;
            return Err(SpanTxError::QueueFull);
        }
        Ok(())
    }

    /// Writes TS0 and TS16 of a frame whose B-channels the caller filled.
    pub fn emit_frame(&mut self, frame: &mut [u8; FRAME_OCTETS]) {
        if self.hdlc_tx.can_load()
            && let Some(next) = self.tx_queue.front()
        {
            // Lengths were checked on queueing: load cannot fail.
            let loaded = self.hdlc_tx.load(next).is_ok();
            debug_assert!(loaded);
            self.tx_queue.pop();
        }
        frame[DCHANNEL_TS] = self.hdlc_tx.poll_octet();
        self.framer
            .set_rai(self.force_rai || self.alarms.send_rai());
        if self.cfg.crc4 {
            let e = if self.deframer.multiframe_state() == MultiframeState::InMultiframe {
                self.deframer.e_bits()
            } else {
                [false, false]
            };
            self.framer.set_e_bit(0, e[0]);
            self.framer.set_e_bit(1, e[1]);
        }
        self.framer.emit_frame(frame);
        self.frames_sent += 1;
    }

    /// Sends A = 1 regardless of our alarms (maintenance, tests).
    pub fn set_force_rai(&mut self, on: bool) {
        self.force_rai = on;
    }

    /// Slips the driver made (elastic store, SAToP playout); counted.
    pub fn count_slips(&mut self, n: u32) {
        self.perf.add_slips(n);
    }

    pub fn poll_event(&mut self) -> Option<LineEvent> {
        self.alarms.poll_event()
    }

    /// Debounced alarms in force.
    pub fn alarms(&self) -> Alarms {
        self.alarms.alarms()
    }

    /// Defects of the last frame period (undebounced).
    pub fn defects(&self) -> Alarms {
        self.alarms.defects()
    }

    pub fn align_state(&self) -> AlignState {
        self.deframer.state()
    }

    pub fn multiframe_state(&self) -> MultiframeState {
        self.deframer.multiframe_state()
    }

    pub fn counters(&self) -> SpanCounters {
        SpanCounters {
            deframer: self.deframer.stats(),
            hdlc_rx: self.hdlc_rx.stats(),
            hdlc_tx_frames: self.hdlc_tx.frames_sent(),
            dchannel_rx_overflows: self.dchannel_rx_overflows,
            dchannel_tx_queue_full: self.dchannel_tx_queue_full,
            events_dropped: self.alarms.events_dropped(),
            frame_periods: self.alarms.frame_periods(),
            frames_sent: self.frames_sent,
        }
    }

    /// G.826 counters per 15-minute interval.
    pub fn perf(&self) -> &E1Perf {
        &self.perf
    }
}

/// Fuzz entry point, run from `fuzz_e1_deframe`: arbitrary line octets
/// through a span (deframer, TS16 HDLC, alarms, G.826) in odd-sized reads,
/// sending a frame per frame received. Never panics; time advances exactly
/// with the octets fed.
#[doc(hidden)]
pub fn fuzz_raw_span(data: &[u8], crc4: bool) {
    let mut span = RawSpan::new(SpanConfig {
        crc4,
        crc4_annex_b: crc4 && data.first().is_some_and(|o| o & 1 == 1),
        ..SpanConfig::default()
    });
    let mut out = [0u8; MAX_FRAME_OCTETS];
    let mut fed = 0;
    for chunk in data.chunks(37) {
        let mut frames = 0;
        span.handle_rx(chunk, |_| frames += 1);
        fed += chunk.len();
        for _ in 0..frames {
            let mut f = [0xD5; FRAME_OCTETS];
            span.emit_frame(&mut f);
        }
        while span.poll_dchannel_frame(&mut out).is_some() {}
        while span.poll_event().is_some() {}
        let _ = span.send_dchannel_frame(chunk);
    }
    let c = span.counters();
    assert_eq!(c.frame_periods, (fed / FRAME_OCTETS) as u64);
    assert_eq!(c.frames_sent, c.deframer.frames);
    assert!(span.perf().total().seconds <= (c.frame_periods / 8000) as u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` frames from `tx` (B-channels idle) straight into `rx`.
    fn pump(tx: &mut RawSpan, rx: &mut RawSpan, n: usize) -> Vec<[u8; FRAME_OCTETS]> {
        let mut got = Vec::new();
        for _ in 0..n {
            let mut f = [0xD5; FRAME_OCTETS];
            tx.emit_frame(&mut f);
            rx.handle_rx(&f, |g| got.push(*g));
        }
        got
    }

    #[test]
    fn dchannel_ring_overflow_counted_and_short_buffers_refused() {
        let cfg = SpanConfig {
            crc4: false,
            dchannel_rx_slots: 2,
            dchannel_tx_slots: 3,
            ..SpanConfig::default()
        };
        let (mut a, mut b) = (RawSpan::new(cfg), RawSpan::new(cfg));
        pump(&mut a, &mut b, 8);
        for i in 0..3u8 {
            a.send_dchannel_frame(&[0x02, 0x01, i, 0x7E]).unwrap();
        }
        assert_eq!(a.send_dchannel_frame(&[1]), Err(SpanTxError::QueueFull));
        assert_eq!(a.send_dchannel_frame(&[]), Err(SpanTxError::BadLength(0)));
        let long = [0u8; MAX_FRAME_OCTETS + 1];
        assert_eq!(
            a.send_dchannel_frame(&long),
            Err(SpanTxError::BadLength(MAX_FRAME_OCTETS + 1))
        );
        pump(&mut a, &mut b, 40);
        let c = b.counters();
        assert_eq!(c.hdlc_rx.frames, 3);
        assert_eq!(c.dchannel_rx_overflows, 1);
        assert_eq!(a.counters().dchannel_tx_queue_full, 1);
        // Too short an output buffer: that frame is dropped and counted.
        let mut small = [0u8; 3];
        assert_eq!(b.poll_dchannel_frame(&mut small), None);
        assert_eq!(b.counters().dchannel_rx_overflows, 3);
        pump(&mut a, &mut b, 1);
        a.send_dchannel_frame(&[0x02, 0x01, 9]).unwrap();
        pump(&mut a, &mut b, 10);
        let mut out = [0u8; MAX_FRAME_OCTETS];
        assert_eq!(b.poll_dchannel_frame(&mut out), Some(3));
        assert_eq!(out[..3], [0x02, 0x01, 9]);
        assert_eq!(b.poll_dchannel_frame(&mut out), None);
    }

    #[test]
    fn ts16_is_hdlc_and_b_channels_pass_untouched() {
        let cfg = SpanConfig::default();
        let mut a = RawSpan::new(cfg);
        let mut f = [0x11; FRAME_OCTETS];
        a.emit_frame(&mut f);
        // Idle flags on TS16, FAS in TS0 (Si = C1 of a CRC-4 line), rest ours.
        assert_eq!(f[DCHANNEL_TS], 0x7E);
        assert_eq!(f[0] & 0x7F, 0x1B);
        assert!(
            f.iter()
                .enumerate()
                .all(|(i, &o)| i == 0 || i == 16 || o == 0x11)
        );
    }

    #[test]
    fn e_bits_zero_until_multiframe_alignment_then_crc_results() {
        let cfg = SpanConfig::default();
        let (mut a, mut b) = (RawSpan::new(cfg), RawSpan::new(cfg));
        // E bits are the Si bits of frames 13 and 15 of each multiframe.
        let e_bits = |frames: &[[u8; FRAME_OCTETS]]| -> Vec<u8> {
            frames
                .iter()
                .skip(13)
                .step_by(2)
                .take(2)
                .map(|f| f[0] >> 7)
                .collect()
        };
        let mut sent_by_b = Vec::new();
        for _ in 0..16 {
            let mut f = [0xD5; FRAME_OCTETS];
            b.emit_frame(&mut f);
            sent_by_b.push(f);
        }
        assert_eq!(e_bits(&sent_by_b), [0, 0]);
        // Bring B into multiframe alignment on A's signal.
        pump(&mut a, &mut b, 16 * 8);
        assert_eq!(b.multiframe_state(), MultiframeState::InMultiframe);
        // B's framer started at frame 0 of a multiframe: after 64 frames
        // sent, the last 16 are a whole multiframe.
        let mut out = Vec::new();
        for _ in 0..48 {
            let mut f = [0xD5; FRAME_OCTETS];
            b.emit_frame(&mut f);
            out.push(f);
        }
        assert_eq!(b.counters().frames_sent % 16, 0);
        let last_mf = &out[out.len() - 16..];
        // In multiframe alignment with no CRC-4 error: both E bits 1.
        assert_eq!(e_bits(last_mf), [1, 1]);
    }

    #[test]
    fn red_alarm_sets_our_a_bit() {
        let cfg = SpanConfig {
            crc4: false,
            ..SpanConfig::default()
        };
        let mut a = RawSpan::new(cfg);
        a.handle_no_signal(256 * 2600); // 2.6 s of LOS
        assert!(a.alarms().red());
        assert_eq!(
            a.poll_event(),
            Some(LineEvent::AlarmRaised(super::super::e1_alarm::Alarm::Los))
        );
        let mut f = [0xD5; FRAME_OCTETS];
        a.emit_frame(&mut f);
        a.emit_frame(&mut f);
        assert_eq!(f[0] & 0x60, 0x60, "NFAS with A = 1");
        // The G.826 second was severely errored (held back until a run
        // decides availability: two seconds so far, both SES).
        assert_eq!(a.perf().total().seconds, 2);
        assert_eq!(a.counters().frame_periods, 8000 * 26 / 10);
    }
}
