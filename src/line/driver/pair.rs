//! `pair`: an in-process virtual E1 line with both ends, A and B.
//!
//! Sans-IO and in simulated time: [`PairLine::advance`] is one nominal
//! frame period (125 µs) and says how many frames each end's clock made in
//! it (one, or two / none when the end's clock offset has gathered a whole
//! frame). Each end [`transmit`](PairLine::transmit)s one 32-octet frame and
//! [`receive`](PairLine::receive)s one frame's worth of octets per tick of
//! its own clock; what A sends B receives and the other way round.
//! [`PairLine::run_period`] does one period for two [`RawSpan`]s.
//!
//! # Line model, per direction
//!
//! - An elastic store between the sender's clock and the receiver's, of
//!   `2 × slip_frames` frames. When the sender is faster the store fills
//!   and `slip_frames` frames are deleted; when it is slower the store runs
//!   dry and the last `slip_frames` frames are repeated: controlled slips
//!   (G.822 §2), counted. The unit is a whole number of frames so that
//!   framing survives; the default, 16, is a CRC-4 multiframe, so the CRC-4
//!   multiframe survives too (2 keeps only the FAS/NFAS alternation). The
//!   store starts one frame short of the edge it drifts towards (the phase
//!   at switch-on is arbitrary in real equipment), so the first slip comes
//!   after one frame of drift: 2.5 s at 50 ppm.
//! - Then, on the bits as received: LOS (all zeros) or AIS (all ones)
//!   replacing the signal, seeded bit errors (a probability per bit, or one
//!   every N bits) and bit slips (one bit inserted or deleted per call
//!   unit, shifting everything after it: an uncontrolled slip).
//! - RAI is not a line impairment: force it on the sending span
//!   ([`RawSpan::set_force_rai`]).
//!
//! Everything is reproducible from [`PairConfig::seed`]. No allocation.

use crate::line::e1::FRAME_OCTETS;
use crate::line::span::RawSpan;

/// Largest slip unit in frames.
pub const MAX_SLIP_FRAMES: usize = 16;
const STORE_FRAMES: usize = 2 * MAX_SLIP_FRAMES;
/// Octets [`PairLine::receive`] may return for one frame (bit slips make
/// it vary around 32).
pub const RX_OCTETS_MAX: usize = FRAME_OCTETS + 8;
const PPM_SCALE: i64 = 1_000_000;

/// One end of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    A = 0,
    B = 1,
}

impl End {
    pub fn other(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }
}

/// What reaches a receiving end instead of (or as) the sent signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Normal,
    /// No signal: all zeros.
    Los,
    /// All ones.
    Ais,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairConfig {
    /// Seed of the bit-error generator (0 is taken as 1).
    pub seed: u64,
    /// Clock offset of each end's transmitter and receiver, in ppm of
    /// 2.048 MHz, `[A, B]`.
    pub ppm: [i32; 2],
    /// Frames deleted or repeated per controlled slip (1..=16).
    pub slip_frames: u8,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            seed: 1,
            ppm: [0, 0],
            slip_frames: 16,
        }
    }
}

/// What one direction did, seen from the receiving end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Controlled slips that deleted frames (sender faster).
    pub slips_deleted: u64,
    /// Controlled slips that repeated frames (sender slower).
    pub slips_repeated: u64,
    pub bit_errors: u64,
    pub bits_inserted: u64,
    pub bits_deleted: u64,
}

impl DirectionStats {
    pub fn slips(&self) -> u64 {
        self.slips_deleted + self.slips_repeated
    }
}

/// One direction of the line, named by its receiving end.
#[derive(Debug, Clone)]
struct Direction {
    store: [[u8; FRAME_OCTETS]; STORE_FRAMES],
    head: usize,
    fill: usize,
    cap: usize,
    unit: usize,
    /// The last `unit` frames read, for repetition; `hist_next` is the oldest.
    history: [[u8; FRAME_OCTETS]; MAX_SLIP_FRAMES],
    hist_next: usize,
    signal: Signal,
    error_per_million: u32,
    error_every_bits: u64,
    bits_to_error: u64,
    /// Bits still to insert (> 0) or delete (< 0).
    slip_bits: i32,
    acc: u32,
    acc_bits: u32,
    stats: DirectionStats,
}

impl Direction {
    fn new(unit: usize, sender_ppm: i32, receiver_ppm: i32) -> Self {
        let cap = 2 * unit;
        // Reads of a period follow its writes: empty is fine when the
        // sender is slower, one short of full when it is faster.
        let fill = match sender_ppm.cmp(&receiver_ppm) {
            core::cmp::Ordering::Greater => cap - 1,
            core::cmp::Ordering::Less => 0,
            core::cmp::Ordering::Equal => unit,
        };
        Direction {
            store: [[0xFF; FRAME_OCTETS]; STORE_FRAMES],
            head: 0,
            fill,
            cap,
            unit,
            history: [[0xFF; FRAME_OCTETS]; MAX_SLIP_FRAMES],
            hist_next: 0,
            signal: Signal::Normal,
            error_per_million: 0,
            error_every_bits: 0,
            bits_to_error: 0,
            slip_bits: 0,
            acc: 0,
            acc_bits: 0,
            stats: DirectionStats::default(),
        }
    }

    fn write(&mut self, frame: &[u8; FRAME_OCTETS]) {
        if self.fill == self.cap {
            // G.822 controlled slip: the sender is ahead, drop a unit.
            self.head = (self.head + self.unit) % STORE_FRAMES;
            self.fill -= self.unit;
            self.stats.slips_deleted += 1;
        }
        self.store[(self.head + self.fill) % STORE_FRAMES] = *frame;
        self.fill += 1;
        self.stats.frames_sent += 1;
    }

    fn read(&mut self) -> [u8; FRAME_OCTETS] {
        if self.fill == 0 {
            // Controlled slip: the sender is behind, play the last unit again.
            for k in 0..self.unit {
                let h = self.history[(self.hist_next + k) % self.unit];
                self.store[(self.head + k) % STORE_FRAMES] = h;
            }
            self.fill = self.unit;
            self.stats.slips_repeated += 1;
        }
        let f = self.store[self.head];
        self.head = (self.head + 1) % STORE_FRAMES;
        self.fill -= 1;
        self.history[self.hist_next] = f;
        self.hist_next = (self.hist_next + 1) % self.unit;
        self.stats.frames_received += 1;
        f
    }
}

/// The virtual line; see the module doc.
#[derive(Debug, Clone)]
pub struct PairLine {
    /// Indexed by the receiving end.
    dirs: [Direction; 2],
    ppm: [i32; 2],
    /// Clock phase of each end, in millionths of a frame.
    phase: [i64; 2],
    rng: u64,
}

impl PairLine {
    pub fn new(cfg: PairConfig) -> Self {
        let unit = usize::from(cfg.slip_frames).clamp(1, MAX_SLIP_FRAMES);
        let [a, b] = cfg.ppm;
        PairLine {
            dirs: [Direction::new(unit, b, a), Direction::new(unit, a, b)],
            ppm: cfg.ppm,
            // Half a frame in, so that an offset shows up after half a
            // frame of drift either way.
            phase: [PPM_SCALE / 2; 2],
            rng: cfg.seed.max(1),
        }
    }

    /// One nominal frame period: the frames each end's clock makes in it.
    pub fn advance(&mut self) -> [u32; 2] {
        let mut ticks = [0; 2];
        for (i, t) in ticks.iter_mut().enumerate() {
            self.phase[i] += PPM_SCALE + i64::from(self.ppm[i]);
            let whole = self.phase[i] / PPM_SCALE;
            self.phase[i] -= whole * PPM_SCALE;
            *t = u32::try_from(whole).unwrap_or(0);
        }
        ticks
    }

    /// End `from` sends one frame.
    pub fn transmit(&mut self, from: End, frame: &[u8; FRAME_OCTETS]) {
        self.dirs[from.other() as usize].write(frame);
    }

    /// End `to` receives one frame's worth of line octets into `out`;
    /// returns how many (32, give or take bit slips).
    pub fn receive(&mut self, to: End, out: &mut [u8; RX_OCTETS_MAX]) -> usize {
        let frame = self.dirs[to as usize].read();
        let mut n = 0;
        for o in frame {
            let o = self.impair(to, o);
            let d = &mut self.dirs[to as usize];
            d.acc = (d.acc << 8) | u32::from(o);
            d.acc_bits += 8;
            if d.slip_bits > 0 {
                d.slip_bits -= 1;
                d.acc = (d.acc << 1) | 1;
                d.acc_bits += 1;
                d.stats.bits_inserted += 1;
            } else if d.slip_bits < 0 {
                d.slip_bits += 1;
                d.acc >>= 1;
                d.acc_bits -= 1;
                d.stats.bits_deleted += 1;
            }
            while d.acc_bits >= 8 && n < RX_OCTETS_MAX {
                out[n] = (d.acc >> (d.acc_bits - 8)) as u8;
                d.acc_bits -= 8;
                n += 1;
            }
            d.acc &= (1 << d.acc_bits) - 1;
        }
        n
    }

    fn impair(&mut self, to: End, octet: u8) -> u8 {
        let d = &self.dirs[to as usize];
        let mut o = match d.signal {
            Signal::Normal => octet,
            Signal::Los => 0x00,
            Signal::Ais => 0xFF,
        };
        let (per_million, every) = (d.error_per_million, d.error_every_bits);
        if per_million == 0 && every == 0 {
            return o;
        }
        for bit in 0..8 {
            let mut hit = per_million > 0 && self.next_rand() % 1_000_000 < u64::from(per_million);
            let d = &mut self.dirs[to as usize];
            if every > 0 {
                d.bits_to_error = d.bits_to_error.saturating_sub(1);
                if d.bits_to_error == 0 {
                    d.bits_to_error = every;
                    hit = true;
                }
            }
            if hit {
                o ^= 0x80 >> bit;
                d.stats.bit_errors += 1;
            }
        }
        o
    }

    /// xorshift64*, so every run is reproducible from the seed.
    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// What end `to` receives: the signal, or LOS / AIS in its place.
    pub fn set_signal(&mut self, to: End, signal: Signal) {
        self.dirs[to as usize].signal = signal;
    }

    /// Bit errors towards `to` with probability `per_million` per bit.
    pub fn set_bit_error_rate(&mut self, to: End, per_million: u32) {
        self.dirs[to as usize].error_per_million = per_million;
    }

    /// One bit error towards `to` every `bits` bits (0 = off).
    pub fn set_bit_error_every(&mut self, to: End, bits: u64) {
        let d = &mut self.dirs[to as usize];
        d.error_every_bits = bits;
        d.bits_to_error = bits;
    }

    /// Inserts (`bits > 0`) or deletes (`bits < 0`) that many bits in the
    /// stream towards `to`, one per received octet from now on.
    pub fn slip_bits(&mut self, to: End, bits: i32) {
        self.dirs[to as usize].slip_bits += bits;
    }

    /// The direction received by `to`.
    pub fn stats(&self, to: End) -> DirectionStats {
        self.dirs[to as usize].stats
    }

    /// One nominal frame period for two spans: each end sends and receives
    /// as many frames as its clock made. `fill` writes the B-channels of
    /// each frame sent, `on_frame` gets each aligned frame received.
    /// Controlled slips are counted into the receiving span's counters.
    pub fn run_period(
        &mut self,
        spans: [&mut RawSpan; 2],
        mut fill: impl FnMut(End, &mut [u8; FRAME_OCTETS]),
        mut on_frame: impl FnMut(End, &[u8; FRAME_OCTETS]),
    ) {
        let ticks = self.advance();
        let pair = spans;
        let slips_before = [self.stats(End::A).slips(), self.stats(End::B).slips()];
        for end in [End::A, End::B] {
            for _ in 0..ticks[end as usize] {
                let mut f = [0xD5; FRAME_OCTETS];
                fill(end, &mut f);
                pair[end as usize].emit_frame(&mut f);
                self.transmit(end, &f);
            }
        }
        let mut buf = [0u8; RX_OCTETS_MAX];
        for end in [End::A, End::B] {
            for _ in 0..ticks[end as usize] {
                let n = self.receive(end, &mut buf);
                pair[end as usize].handle_rx(&buf[..n], |f| on_frame(end, f));
            }
            let new_slips = self.stats(end).slips() - slips_before[end as usize];
            if new_slips > 0 {
                let n = u32::try_from(new_slips).unwrap_or(u32::MAX);
                pair[end as usize].count_slips(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `periods` with numbered frames (TS1 = sender's count) and
    /// returns what each end received, octets concatenated.
    fn drive(p: &mut PairLine, periods: usize) -> [Vec<u8>; 2] {
        let mut count = [0u8; 2];
        let mut got = [Vec::new(), Vec::new()];
        let mut buf = [0u8; RX_OCTETS_MAX];
        for _ in 0..periods {
            let t = p.advance();
            for e in [End::A, End::B] {
                for _ in 0..t[e as usize] {
                    let c = &mut count[e as usize];
                    *c = c.wrapping_add(1);
                    p.transmit(e, &[*c; FRAME_OCTETS]);
                }
            }
            for e in [End::A, End::B] {
                for _ in 0..t[e as usize] {
                    let n = p.receive(e, &mut buf);
                    got[e as usize].extend_from_slice(&buf[..n]);
                }
            }
        }
        got
    }

    #[test]
    fn equal_clocks_deliver_every_frame_in_order_after_the_store_delay() {
        let mut p = PairLine::new(PairConfig::default());
        let got = drive(&mut p, 100);
        for rx in &got {
            assert_eq!(rx.len(), 100 * FRAME_OCTETS);
            // The store starts half full of all-ones frames: 16 of them.
            assert!(rx[..16 * FRAME_OCTETS].iter().all(|&o| o == 0xFF));
            let frames: Vec<u8> = rx[16 * FRAME_OCTETS..]
                .iter()
                .step_by(32)
                .copied()
                .collect();
            assert_eq!(frames, (1..=84).collect::<Vec<u8>>());
        }
        assert_eq!(p.stats(End::A).slips() + p.stats(End::B).slips(), 0);
    }

    #[test]
    fn a_faster_clock_deletes_and_a_slower_one_repeats_whole_units() {
        let cfg = PairConfig {
            ppm: [10_000, 0],
            slip_frames: 2,
            ..PairConfig::default()
        };
        let mut p = PairLine::new(cfg);
        // 1 %: A makes one extra frame every 100 periods.
        let got = drive(&mut p, 1000);
        let (a, b) = (p.stats(End::A), p.stats(End::B));
        assert_eq!(b.frames_sent, 1010);
        assert_eq!(a.frames_received, 1010);
        // Into B: the store overflows on the first extra frame, then every
        // second one (a unit of 2 deleted each time).
        assert_eq!((b.slips_deleted, b.slips_repeated), (5, 0));
        assert_eq!((a.slips_deleted, a.slips_repeated), (0, 5));
        // Deletions skip exactly two frames, never break a frame apart.
        let into_b: Vec<u8> = got[1].iter().step_by(32).copied().collect();
        let jumps = into_b
            .windows(2)
            .filter(|w| w[0] != 0xFF && w[1] != w[0].wrapping_add(1))
            .map(|w| w[1].wrapping_sub(w[0]))
            .collect::<Vec<_>>();
        assert_eq!(jumps, [3, 3, 3, 3, 3]);
        // Repeats go back two frames.
        let into_a: Vec<u8> = got[0].iter().step_by(32).copied().collect();
        let backs = into_a
            .windows(2)
            .filter(|w| w[0] != 0xFF && w[1] != 0xFF && w[1] != w[0].wrapping_add(1))
            .map(|w| w[0].wrapping_sub(w[1]))
            .collect::<Vec<_>>();
        assert_eq!(backs, [1, 1, 1, 1, 1]);
        assert!(got[0].chunks(32).all(|f| f.iter().all(|&o| o == f[0])));
    }

    #[test]
    fn los_ais_and_bit_errors_every_n_bits() {
        let mut p = PairLine::new(PairConfig::default());
        drive(&mut p, 20);
        p.set_signal(End::A, Signal::Los);
        p.set_signal(End::B, Signal::Ais);
        let got = drive(&mut p, 4);
        assert!(got[0].iter().all(|&o| o == 0x00));
        assert!(got[1].iter().all(|&o| o == 0xFF));
        p.set_signal(End::B, Signal::Normal);
        p.set_bit_error_every(End::B, 100);
        drive(&mut p, 25);
        // 25 frames of 256 bits: one error per 100 bits.
        assert_eq!(p.stats(End::B).bit_errors, 64);
        assert_eq!(p.stats(End::A).bit_errors, 0);
    }

    #[test]
    fn bit_errors_reproducible_from_the_seed() {
        let run = |seed| {
            let mut p = PairLine::new(PairConfig {
                seed,
                ..PairConfig::default()
            });
            p.set_bit_error_rate(End::A, 1000);
            let got = drive(&mut p, 200);
            (got, p.stats(End::A).bit_errors)
        };
        let (g1, e1) = run(7);
        assert_eq!(run(7), (g1.clone(), e1));
        assert_ne!(run(8).0, g1);
        // 200 frames of 256 bits at 10⁻³.
        assert!((25..=80).contains(&e1), "{e1}");
    }

    #[test]
    fn bit_slips_shift_the_stream_by_one_bit_each() {
        let mut p = PairLine::new(PairConfig::default());
        drive(&mut p, 20);
        p.slip_bits(End::B, 8);
        p.slip_bits(End::A, -8);
        let got = drive(&mut p, 2);
        // Eight bits more / fewer: one octet more / fewer over two frames.
        assert_eq!(got[1].len(), 2 * FRAME_OCTETS + 1);
        assert_eq!(got[0].len(), 2 * FRAME_OCTETS - 1);
        assert_eq!(p.stats(End::B).bits_inserted, 8);
        assert_eq!(p.stats(End::A).bits_deleted, 8);
    }
}
