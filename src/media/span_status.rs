//! Per-span line status published by the media thread for telemetry,
//! without locks (DESIGN.md §1: counters as atomics that telemetry reads).
//!
//! [`SpanTelemetry`] is a seqlock over atomic words: the media thread (the
//! only writer) calls [`SpanTelemetry::publish`] with a [`SpanStatus`]
//! (odd sequence, Relaxed word stores, even sequence with Release); a reader
//! ([`SpanTelemetry::read`]) loads the sequence with Acquire, the words,
//! then the sequence again after an Acquire fence, and retries on a change
//! or an odd value. Every access is atomic, so a torn read is detected and
//! retried, never undefined. The writer never waits.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::line::e1::{AlignState, DeframerStats, MultiframeState};
use crate::line::e1_alarm::{Alarm, Alarms};
use crate::line::hdlc::HdlcRxStats;
use crate::line::span::{RawSpan, SpanCounters};

/// What telemetry sees of one span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanStatus {
    /// Debounced alarms in force.
    pub alarms: Alarms,
    pub in_frame: bool,
    /// CRC-4 multiframe alignment held.
    pub in_multiframe: bool,
    pub counters: SpanCounters,
    /// G.826 since start: errored, severely errored, unavailable seconds.
    pub es: u32,
    pub ses: u32,
    pub uas: u32,
    pub slips: u64,
    /// The driver's loss of signal (SAToP LOPS, serial silence).
    pub driver_los: bool,
    /// Received D-channel frames dropped on a full ring to the control plane.
    pub dchannel_ring_overflows: u64,
    /// Transmit frames the line wanted with no B-channel frame from the
    /// engine ready (sent idle), and engine frames dropped for want of room.
    pub tx_idle_frames: u64,
    pub tx_backlog_drops: u64,
    /// Pair far end: frames the far end had not supplied in time.
    pub far_underruns: u64,
    /// Gaps in the received stream that the driver made, each a possible
    /// loss of alignment that is not the line's: SAToP packets played as
    /// idle, missing or dropped on overrun; pair underruns (near end), and
    /// dropped or free-run stretches (far end).
    pub driver_gaps: u64,
    /// G.826 current 15-minute interval: line seconds elapsed, errored,
    /// severely errored and unavailable seconds (each at most 900).
    pub interval: IntervalSeconds,
    /// In G.826 unavailable time (Annex A).
    pub unavailable: bool,
    /// Far-end G.826 since start, from the E bits (FEBE) and RAI the far end
    /// sends (`line::e1_perf`): errored, severely errored and unavailable
    /// seconds of our transmit direction as the far end receives it. Raw
    /// spans only; DAHDI spans leave them 0.
    pub far_es: u32,
    pub far_ses: u32,
    pub far_uas: u32,
    /// The far end's seconds in the current 15-minute interval (`elapsed`
    /// is the near end's).
    pub far_interval: IntervalSeconds,
    /// The far end in unavailable time (its own Annex A run).
    pub far_unavailable: bool,
}

/// The seconds of the current 15-minute interval (G.826).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalSeconds {
    pub elapsed: u16,
    pub es: u16,
    pub ses: u16,
    pub uas: u16,
}

impl IntervalSeconds {
    fn pack(self) -> u64 {
        u64::from(self.elapsed)
            | u64::from(self.es) << 16
            | u64::from(self.ses) << 32
            | u64::from(self.uas) << 48
    }

    fn unpack(w: u64) -> IntervalSeconds {
        IntervalSeconds {
            elapsed: w as u16,
            es: (w >> 16) as u16,
            ses: (w >> 32) as u16,
            uas: (w >> 48) as u16,
        }
    }
}

const WORDS: usize = 43;

impl SpanStatus {
    /// The span's view (everything but the driver and ring fields).
    pub fn of(span: &RawSpan) -> SpanStatus {
        let t = span.perf().total();
        let c = span.perf().current();
        let sat = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        SpanStatus {
            alarms: span.alarms(),
            in_frame: span.align_state() == AlignState::InFrame,
            in_multiframe: span.multiframe_state() == MultiframeState::InMultiframe,
            counters: span.counters(),
            es: t.es,
            ses: t.ses,
            uas: t.uas,
            slips: t.slips,
            interval: IntervalSeconds {
                elapsed: sat(c.seconds),
                es: sat(c.es),
                ses: sat(c.ses),
                uas: sat(c.uas),
            },
            unavailable: span.perf().unavailable(),
            far_es: t.far_es,
            far_ses: t.far_ses,
            far_uas: t.far_uas,
            far_interval: IntervalSeconds {
                elapsed: sat(c.seconds),
                es: sat(c.far_es),
                ses: sat(c.far_ses),
                uas: sat(c.far_uas),
            },
            far_unavailable: span.perf().far_unavailable(),
            ..SpanStatus::default()
        }
    }

    fn encode(&self) -> [u64; WORDS] {
        let c = &self.counters;
        let d = &c.deframer;
        let h = &c.hdlc_rx;
        [
            u64::from(self.alarms.bits()),
            u64::from(self.in_frame),
            u64::from(self.in_multiframe),
            d.frames,
            d.fas_errors,
            d.alignment_losses,
            d.alignments,
            d.multiframe_alignments,
            d.multiframe_losses,
            d.crc4_blocks,
            d.crc4_errors,
            d.febe,
            d.crc4_alignment_losses,
            d.crc4_interworking,
            h.frames,
            h.fcs_errors,
            h.aborts,
            h.too_long,
            h.short,
            h.misaligned,
            c.hdlc_tx_frames,
            c.dchannel_rx_overflows,
            c.dchannel_tx_queue_full,
            c.events_dropped,
            c.frame_periods,
            c.frames_sent,
            u64::from(self.es),
            u64::from(self.ses),
            u64::from(self.uas),
            self.slips,
            u64::from(self.driver_los),
            self.dchannel_ring_overflows,
            self.tx_idle_frames,
            self.tx_backlog_drops,
            self.far_underruns,
            self.driver_gaps,
            self.interval.pack(),
            u64::from(self.unavailable),
            u64::from(self.far_es),
            u64::from(self.far_ses),
            u64::from(self.far_uas),
            self.far_interval.pack(),
            u64::from(self.far_unavailable),
        ]
    }

    fn decode(w: &[u64; WORDS]) -> SpanStatus {
        let alarms = Alarm::ALL.iter().fold(Alarms::default(), |a, &x| {
            a.with(x, w[0] & (1 << x as u8) != 0)
        });
        SpanStatus {
            alarms,
            in_frame: w[1] != 0,
            in_multiframe: w[2] != 0,
            counters: SpanCounters {
                deframer: DeframerStats {
                    frames: w[3],
                    fas_errors: w[4],
                    alignment_losses: w[5],
                    alignments: w[6],
                    multiframe_alignments: w[7],
                    multiframe_losses: w[8],
                    crc4_blocks: w[9],
                    crc4_errors: w[10],
                    febe: w[11],
                    crc4_alignment_losses: w[12],
                    crc4_interworking: w[13],
                },
                hdlc_rx: HdlcRxStats {
                    frames: w[14],
                    fcs_errors: w[15],
                    aborts: w[16],
                    too_long: w[17],
                    short: w[18],
                    misaligned: w[19],
                },
                hdlc_tx_frames: w[20],
                dchannel_rx_overflows: w[21],
                dchannel_tx_queue_full: w[22],
                events_dropped: w[23],
                frame_periods: w[24],
                frames_sent: w[25],
            },
            es: w[26] as u32,
            ses: w[27] as u32,
            uas: w[28] as u32,
            slips: w[29],
            driver_los: w[30] != 0,
            dchannel_ring_overflows: w[31],
            tx_idle_frames: w[32],
            tx_backlog_drops: w[33],
            far_underruns: w[34],
            driver_gaps: w[35],
            interval: IntervalSeconds::unpack(w[36]),
            unavailable: w[37] != 0,
            far_es: w[38] as u32,
            far_ses: w[39] as u32,
            far_uas: w[40] as u32,
            far_interval: IntervalSeconds::unpack(w[41]),
            far_unavailable: w[42] != 0,
        }
    }
}

/// One span's published status; see the module doc.
#[derive(Debug)]
pub struct SpanTelemetry {
    /// The span number (from 1), as configured.
    pub span: u16,
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl SpanTelemetry {
    pub fn new(span: u16) -> SpanTelemetry {
        SpanTelemetry {
            span,
            seq: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writer side (the media thread only): never waits.
    pub fn publish(&self, s: &SpanStatus) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // The odd sequence is ordered before the word stores.
        fence(Ordering::Release);
        for (a, v) in self.words.iter().zip(s.encode()) {
            a.store(v, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A consistent snapshot (retries while the writer is mid-publish).
    pub fn read(&self) -> SpanStatus {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [0u64; WORDS];
            for (o, a) in w.iter_mut().zip(&self.words) {
                *o = a.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return SpanStatus::decode(&w);
            }
        }
    }

    /// Snapshots published so far.
    pub fn generation(&self) -> u64 {
        self.seq.load(Ordering::Acquire) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Two raw spans back to back for `seconds` of line time, `b` sending
    /// RAI while `rai`.
    fn run(a: &mut RawSpan, b: &mut RawSpan, seconds: u32, rai: bool) {
        use crate::line::e1::FRAME_OCTETS;
        b.set_force_rai(rai);
        let (mut fa, mut fb) = ([0u8; FRAME_OCTETS], [0u8; FRAME_OCTETS]);
        for _ in 0..seconds * 8000 {
            a.emit_frame(&mut fa);
            b.emit_frame(&mut fb);
            a.handle_rx(&fb, |_| {});
            b.handle_rx(&fa, |_| {});
        }
    }

    /// The far end's G.826 seconds reach the status: RAI from the far end
    /// while our receive side is clean is a far-end SES (and ES) per
    /// second, settled once a clean far-end second follows.
    #[test]
    fn status_of_a_span_carries_the_far_end_seconds() {
        use crate::line::span::SpanConfig;
        let cfg = |id| SpanConfig {
            span_id: id,
            ..SpanConfig::default()
        };
        let (mut a, mut b) = (RawSpan::new(cfg(1)), RawSpan::new(cfg(2)));
        run(&mut a, &mut b, 2, false);
        let clean = SpanStatus::of(&a);
        assert_eq!(
            (clean.far_es, clean.far_ses, clean.far_uas),
            (0, 0, 0),
            "{clean:?}"
        );
        run(&mut a, &mut b, 3, true);
        run(&mut a, &mut b, 2, false);
        let s = SpanStatus::of(&a);
        let t = a.perf().total();
        let c = a.perf().current();
        assert!(s.far_ses >= 3 && s.far_es >= s.far_ses, "{s:?}");
        assert_eq!(
            (s.far_es, s.far_ses, s.far_uas),
            (t.far_es, t.far_ses, t.far_uas)
        );
        assert_eq!(
            (s.far_interval.es, s.far_interval.ses, s.far_interval.uas),
            (c.far_es as u16, c.far_ses as u16, c.far_uas as u16)
        );
        assert_eq!(s.far_interval.elapsed, s.interval.elapsed);
        assert!(!s.far_unavailable);
        // Our receive side was clean since alignment (the start-up
        // second, before it, is a near-end SES).
        assert_eq!(
            (s.es, s.ses, s.uas),
            (clean.es, clean.ses, clean.uas),
            "{s:?}"
        );
        // Ten seconds of RAI: far-end unavailable time.
        run(&mut a, &mut b, 11, true);
        let s = SpanStatus::of(&a);
        assert!(s.far_unavailable && s.far_uas >= 10, "{s:?}");
        assert!(!s.unavailable);
    }

    #[test]
    fn round_trip_and_no_torn_reads_under_a_racing_writer() {
        let t = Arc::new(SpanTelemetry::new(3));
        let mut s = SpanStatus {
            alarms: Alarms::default()
                .with(Alarm::Los, true)
                .with(Alarm::Rai, true),
            in_frame: true,
            es: 7,
            far_underruns: 9,
            interval: IntervalSeconds {
                elapsed: 900,
                es: 3,
                ses: 2,
                uas: 1,
            },
            unavailable: true,
            far_es: 12,
            far_ses: 4,
            far_uas: 30,
            far_interval: IntervalSeconds {
                elapsed: 900,
                es: 6,
                ses: 5,
                uas: 10,
            },
            far_unavailable: true,
            ..SpanStatus::default()
        };
        s.counters.deframer.crc4_interworking = 5;
        s.counters.frames_sent = 11;
        t.publish(&s);
        assert_eq!(t.read(), s);
        assert_eq!(t.generation(), 1);
        t.publish(&SpanStatus::default());
        let w = t.clone();
        let writer = std::thread::spawn(move || {
            for n in 0..200_000u64 {
                let mut s = SpanStatus::default();
                s.counters.frames_sent = n;
                s.counters.deframer.frames = n;
                s.slips = n;
                w.publish(&s);
            }
        });
        let mut last = 0;
        while !writer.is_finished() {
            let r = t.read();
            let n = r.counters.frames_sent;
            assert!(
                n == r.counters.deframer.frames && n == r.slips,
                "torn: {r:?}"
            );
            assert!(n >= last);
            last = n;
        }
        writer.join().unwrap();
        assert_eq!(t.read().slips, 199_999);
    }
}
