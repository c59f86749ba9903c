//! The simulated exchange on an in-process [`PairLine`], each end driven
//! from its own thread.
//!
//! [`pair_wire`] builds a [`PairWire`] (the line, with all of `PairLine`'s
//! impairments) and two [`PairEndPort`]s, joined by SPSC rings: received
//! line octets to each end, 32-octet frames from each end. The wire is the
//! line clock (the exchange's clock, as on a real PRI): [`PairWire::run`]
//! makes 8 frame periods per millisecond of real time. It takes an end's
//! frames once 8 ms of them are queued (jitter between the threads); an
//! end that then runs dry sends all ones (AIS) until it has queued 8 ms
//! again (an underrun, counted: the far end sees a framing hit).
//! Each end is loop-timed like the raw drivers: [`PairEndPort::poll`]
//! hands what arrived to the same `exchange(rx, tx)` callback as
//! `SatopPort` and `SerialPort`, one frame out per 32 octets in, so the
//! exchange's [`super::exchange_line::ExchangeLine`] or a gateway's media
//! thread sits on either end unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::line::driver::pair::{End, PairConfig, PairLine, RX_OCTETS_MAX};
use crate::line::e1::FRAME_OCTETS;

use crate::media::ring::{Consumer, Producer, ring as spsc};

/// Received octets buffered per end (64 ms).
const RX_RING_OCTETS: usize = 64 * 256;
/// Frames buffered from each end (64 ms).
const TX_RING_FRAMES: usize = 512;
/// Octets handed to `exchange` at most per call (1 ms).
const CHUNK_OCTETS: usize = 256;
/// Frames an end must have queued before the wire starts (or, after an
/// underrun, restarts) taking them: 8 ms of jitter between the threads
/// (on a loaded machine a thread may be held off the CPU for a few ms).
const PREFILL_FRAMES: usize = 64;
/// Most frame periods [`PairWire::run`] catches up at once after a stall.
const MAX_CATCH_UP_PERIODS: u64 = 8 * 20;

/// Counters of the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames an end did not have ready in time (sent as all ones).
    pub underruns: [u64; 2],
    /// Octets an end did not read in time (dropped).
    pub overruns: [u64; 2],
    pub periods: u64,
}

struct WireEnd {
    /// Enough frames were queued: take one per tick.
    primed: bool,
    to_end: Producer<u8>,
    from_end: Consumer<[u8; FRAME_OCTETS]>,
}

/// The line between the two [`PairEndPort`]s; see the module doc.
pub struct PairWire {
    line: PairLine,
    ends: [WireEnd; 2],
    stats: WireStats,
}

/// One end of a [`PairWire`]; see the module doc.
pub struct PairEndPort {
    rx: Consumer<u8>,
    tx: Producer<[u8; FRAME_OCTETS]>,
    rx_buf: [u8; CHUNK_OCTETS],
    tx_buf: [u8; CHUNK_OCTETS + FRAME_OCTETS],
    /// Received octets not yet matched by a frame out.
    phase: usize,
    tx_dropped: u64,
}

/// The wire and its ends A and B.
pub fn pair_wire(cfg: PairConfig) -> (PairWire, PairEndPort, PairEndPort) {
    let end = || {
        let (to_end, rx) = spsc(RX_RING_OCTETS);
        let (tx, from_end) = spsc(TX_RING_FRAMES);
        (
            WireEnd {
                primed: false,
                to_end,
                from_end,
            },
            PairEndPort {
                rx,
                tx,
                rx_buf: [0; CHUNK_OCTETS],
                tx_buf: [0; CHUNK_OCTETS + FRAME_OCTETS],
                phase: 0,
                tx_dropped: 0,
            },
        )
    };
    let (wa, a) = end();
    let (wb, b) = end();
    let wire = PairWire {
        line: PairLine::new(cfg),
        ends: [wa, wb],
        stats: WireStats::default(),
    };
    (wire, a, b)
}

impl PairWire {
    /// The line, for impairments (LOS, AIS, bit errors, slips).
    pub fn line_mut(&mut self) -> &mut PairLine {
        &mut self.line
    }

    pub fn stats(&self) -> WireStats {
        self.stats
    }

    /// One nominal frame period (125 µs of line time).
    pub fn run_period(&mut self) {
        self.stats.periods += 1;
        let ticks = self.line.advance();
        for end in [End::A, End::B] {
            let i = end as usize;
            for _ in 0..ticks[i] {
                let e = &mut self.ends[i];
                if !e.primed && e.from_end.len() >= PREFILL_FRAMES {
                    e.primed = true;
                }
                let next = if e.primed { e.from_end.try_pop() } else { None };
                let f = match next {
                    Some(f) => f,
                    None => {
                        if e.primed {
                            e.primed = false;
                            self.stats.underruns[i] += 1;
                        }
                        [0xFF; FRAME_OCTETS]
                    }
                };
                self.line.transmit(end, &f);
            }
        }
        let mut buf = [0u8; RX_OCTETS_MAX];
        for end in [End::A, End::B] {
            let i = end as usize;
            for _ in 0..ticks[i] {
                let n = self.line.receive(end, &mut buf);
                for &o in &buf[..n] {
                    if self.ends[i].to_end.try_push(o).is_err() {
                        self.stats.overruns[i] += 1;
                    }
                }
            }
        }
    }

    /// Runs in real time (8 periods per ms) until `stop` is set; returns the
    /// wire's counters. Meant for its own thread.
    pub fn run(mut self, stop: &AtomicBool) -> WireStats {
        let start = Instant::now();
        let mut done: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = start.elapsed().as_micros() as u64 / 125;
            // After a stall (a loaded machine) catch up a bounded amount and
            // let the rest go, as a line would have slipped.
            if due > done + MAX_CATCH_UP_PERIODS {
                done = due - MAX_CATCH_UP_PERIODS;
            }
            while done < due {
                self.run_period();
                done += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.stats
    }

    /// [`run`](Self::run) on a new thread; set the flag to stop it.
    pub fn spawn(self) -> (Arc<AtomicBool>, std::thread::JoinHandle<WireStats>) {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::Builder::new()
            .name("pair-wire".into())
            .spawn(move || self.run(&s))
            .expect("spawning the pair wire thread");
        (stop, h)
    }
}

impl PairEndPort {
    /// Hands what arrived to `exchange(rx, tx)` in chunks of up to 1 ms,
    /// `tx` being one frame per 32 octets received (loop timing), and
    /// queues the frames for the wire. Returns the octets taken.
    pub fn poll(&mut self, mut exchange: impl FnMut(&[u8], &mut [u8])) -> usize {
        let mut total = 0;
        loop {
            let mut n = 0;
            while n < CHUNK_OCTETS {
                match self.rx.try_pop() {
                    Some(o) => {
                        self.rx_buf[n] = o;
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                return total;
            }
            total += n;
            let frames = (self.phase + n) / FRAME_OCTETS;
            self.phase = (self.phase + n) % FRAME_OCTETS;
            let tx = &mut self.tx_buf[..frames * FRAME_OCTETS];
            exchange(&self.rx_buf[..n], tx);
            for f in tx.chunks_exact(FRAME_OCTETS) {
                let mut frame = [0u8; FRAME_OCTETS];
                frame.copy_from_slice(f);
                if self.tx.try_push(frame).is_err() {
                    self.tx_dropped += 1;
                }
            }
        }
    }

    /// Frames dropped because the wire did not take them in time.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::span::{RawSpan, SpanConfig};

    #[test]
    fn two_loop_timed_spans_align_across_the_wire() {
        let (mut wire, mut a, mut b) = pair_wire(PairConfig::default());
        let mut sa = RawSpan::new(SpanConfig::default());
        let mut sb = RawSpan::new(SpanConfig::default());
        let drive = |span: &mut RawSpan, rx: &[u8], tx: &mut [u8]| {
            span.handle_rx(rx, |_| {});
            for f in tx.chunks_exact_mut(FRAME_OCTETS) {
                let mut fr = [0xD5; FRAME_OCTETS];
                span.emit_frame(&mut fr);
                f.copy_from_slice(&fr);
            }
        };
        for _ in 0..8 * 1000 {
            wire.run_period();
            a.poll(|rx, tx| drive(&mut sa, rx, tx));
            b.poll(|rx, tx| drive(&mut sb, rx, tx));
        }
        assert!(sa.alarms().is_empty(), "{:?}", sa.alarms());
        assert!(sb.alarms().is_empty(), "{:?}", sb.alarms());
        assert_eq!(wire.stats().underruns, [0, 0]);
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;
    use crate::line::span::SpanConfig;
    use crate::sim::exchange_audio::{AudioMode, Digits};
    use crate::sim::exchange_line::{ExchangeLine, LineCommand, LineReport};

    #[test]
    fn echo_across_the_wire() {
        let (mut wire, mut a, mut b) = pair_wire(PairConfig::default());
        let (mut la, mut ra) = ExchangeLine::new(SpanConfig::default());
        let (mut lb, mut rb) = ExchangeLine::new(SpanConfig::default());
        for i in 0..16_000 {
            if i == 4000 {
                let st = |mode| LineCommand::Start {
                    ts: 5,
                    tag: 42,
                    mode,
                    digits: Digits::default(),
                    dtmf_delay_frames: 0,
                };
                ra.commands.try_push(st(AudioMode::Test)).unwrap();
                rb.commands.try_push(st(AudioMode::Echo)).unwrap();
            }
            wire.run_period();
            a.poll(|rx, tx| la.exchange(rx, tx));
            b.poll(|rx, tx| lb.exchange(rx, tx));
        }
        ra.commands.try_push(LineCommand::Stop { ts: 5 }).unwrap();
        wire.run_period();
        a.poll(|rx, tx| la.exchange(rx, tx));
        let mut audio = None;
        while let Some(r) = ra.reports.try_pop() {
            if let LineReport::Audio { stats, .. } = r {
                audio = Some(stats);
            }
        }
        let s = audio.expect("an audio report");
        assert!(s.blocks_received > 0, "{s:?}");
        assert_eq!((s.blocks_lost, s.blocks_mismatched), (0, 0), "{s:?}");
        // 8 ms of prefill each way plus the echo's delay line.
        assert!(s.rtt_frames_min >= 128, "{s:?}");
    }
}
