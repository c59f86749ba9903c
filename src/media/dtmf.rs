//! DTMF receiver (ITU-T Q.23 frequencies, Q.24 reception limits) over 16-bit
//! linear samples at 8 kHz.
//!
//! # Contract
//! Sans-IO and allocation free: feed samples in any block size with
//! [`DtmfDetector::handle_samples`] (it returns how many it consumed; it stops
//! early only when its small event queue is nearly full), then drain
//! [`DtmfDetector::poll_event`]. Time is the count of samples fed since
//! construction (the E1 8 kHz clock), so `at_sample` is in that clock.
//!
//! # Method
//! * Internal blocks of [`BLOCK_LEN`] = 102 samples (12.75 ms). At each block
//!   end the last two blocks (204 samples, 39.2 Hz bins) are Hann windowed and
//!   Goertzel evaluated at the 8 Q.23 frequencies, at each frequency +-5 % and
//!   at the 2nd harmonics. 102 is the usual choice (bins 78.4 Hz apart, close
//!   to the 73..89 Hz row spacing); the 2-block window gives the frequency
//!   resolution needed for the +-1.5 % / +-3.5 % limits at 697 Hz.
//! * A window is a valid digit when (Q.24 style limits): both tones at
//!   least [`MIN_TONE_DBM0`]; twist within limits; each tone 8 dB above the
//!   other tones of its group; each tone stronger than at its own frequency
//!   +-5 % (so the accept/reject edge is at +-2.5 %, between 1.5 % and 3.5 %);
//!   the two tones carry at least 60 % of the window energy and their 2nd
//!   harmonics are 10 dB below them (talk-off guards).
//! * Durations come from a 2 ms energy envelope, not from block counts, so the
//!   40 ms limits hold at any block alignment: a digit starts once a valid
//!   window lies wholly inside an envelope run of >= 36 ms ([`MIN_ON_SAMPLES`]);
//!   it ends after >= 36 ms of pause ([`MIN_OFF_SAMPLES`]), when a different
//!   digit is validated, or after two wholly-on windows that do not validate.
//!
//! Q.24: tones >= 40 ms and pauses >= 40 ms must be recognised. Here a tone of
//! < 36 ms is rejected, and a pause of < 36 ms inside the same digit is
//! bridged: the two bursts merge into one digit (one DigitStart/DigitEnd).
//!
//! Twist convention (as spandsp/Asterisk): *normal* twist = low (row) group
//! stronger than high group, 8 dB accepted (limit set at 9 dB, so 10 dB is
//! rejected); *reverse* twist = high group stronger, 4 dB accepted (limit
//! 5 dB, 6 dB rejected).

/// Samples per internal block.
pub const BLOCK_LEN: usize = 102;
const WIN_LEN: usize = 2 * BLOCK_LEN;
/// A quarter of the window ([`DtmfDetector::powers8`]).
const QUARTER: usize = WIN_LEN / 4;
const _: () = assert!(WIN_LEN.is_multiple_of(4));
/// Envelope sub-block (2 ms).
const SUB_LEN: usize = 16;
/// Minimum tone duration in samples (36 ms; Q.24: 40 ms accepted).
pub const MIN_ON_SAMPLES: u64 = 288;
/// Minimum pause in samples (36 ms; Q.24: 40 ms accepted).
pub const MIN_OFF_SAMPLES: u64 = 288;
/// Minimum level of each tone, dBm0.
pub const MIN_TONE_DBM0: f32 = -30.0;
/// Amplitude of a 0 dBm0 sine in 16-bit linear (G.711: +3.14 dBm0 is full scale).
pub const DBM0_PEAK: f32 = 22_827.0;
// Limits set 1 dB beyond the Q.24 figures (8 dB / 4 dB) so those are
// accepted despite estimation error, and 10 dB / 6 dB are rejected.
const NORMAL_TWIST: f32 = 7.94; // 9 dB, power ratio
const REVERSE_TWIST: f32 = 3.16; // 5 dB
const RELATIVE_PEAK: f32 = 6.31; // 8 dB
const TONE_ENERGY_RATIO: f32 = 0.6;
const HARMONIC_RATIO: f32 = 0.1; // 10 dB
const PROBE_OFFSET: f32 = 0.05;
const ENVELOPE_ON_DBM0: f32 = -36.0;
const EVENT_CAP: usize = 8;

/// Row (low group) frequencies, Hz (Q.23).
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies, Hz (Q.23).
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Digits by `[row][col]`.
pub const DIGITS: [[u8; 4]; 4] = [
    [b'1', b'2', b'3', b'A'],
    [b'4', b'5', b'6', b'B'],
    [b'7', b'8', b'9', b'C'],
    [b'*', b'0', b'#', b'D'],
];

/// (row, column) indices of an ASCII digit, if it is a DTMF digit.
pub fn digit_position(d: u8) -> Option<(usize, usize)> {
    for (r, row) in DIGITS.iter().enumerate() {
        for (c, &x) in row.iter().enumerate() {
            if x == d.to_ascii_uppercase() {
                return Some((r, c));
            }
        }
    }
    None
}

/// What the detector reports. Digits are ASCII (`b'0'..=b'9'`, `*`, `#`, `A..D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit began at this sample (start of its tone).
    DigitStart { digit: u8, at_sample: u64 },
    /// The digit ended; its tone lasted this many samples.
    DigitEnd { digit: u8, duration_samples: u64 },
}

const N_FREQ: usize = 8;
// Per tone: f, f*(1-d), f*(1+d), 2f.
const N_COEF: usize = N_FREQ * 4;

/// Goertzel DTMF detector; see the module doc for the contract.
pub struct DtmfDetector {
    /// The constants, shared by every detector (one copy in cache for a
    /// thousand channels, and no per-channel lines for them).
    t: &'static Tables,
    buf: [i16; WIN_LEN],
    buf_pos: usize,
    block_fill: usize,
    samples: u64,
    tone_min_pow: f32,
    env_on_pow: f32,
    /// Sum of squares of the sub-block so far (exact: integers).
    sub_acc: u64,
    sub_fill: usize,
    /// Envelope: start of the current on-run, end of the last on sub-block.
    run_start: Option<u64>,
    last_on_end: u64,
    /// Candidate digit validated by a window wholly inside the current run.
    candidate: Option<u8>,
    /// Digit in progress: digit, start sample, reference power.
    current: Option<(u8, u64, f32)>,
    ref_pow: f32,
    misses: u8,
    events: [Option<DtmfEvent>; EVENT_CAP],
    ev_head: usize,
    ev_len: usize,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn dbm0_to_pow(dbm0: f32) -> f32 {
    let a = DBM0_PEAK * 10f32.powf(dbm0 / 20.0);
    a * a / 2.0
}

/// The detector's constants (see [`DtmfDetector::t`]).
struct Tables {
    coef: [f32; N_COEF],
    /// Per Q.23 frequency, `M^(QUARTER j)` for j = 3, 2, 1 of its Goertzel
    /// recurrence as `[m11, m12, m21, m22]` (see [`DtmfDetector::powers8`]).
    quarter_steps: [[[f32; 4]; N_FREQ]; 3],
    /// The Hann window.
    window: [f32; WIN_LEN],
    win_sum: f32,
    win_sq_sum: f32,
}

impl Tables {
    fn get() -> &'static Tables {
        static T: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
        T.get_or_init(Tables::new)
    }

    fn new() -> Tables {
        let mut coef = [0.0; N_COEF];
        let freqs = ROW_HZ.iter().chain(COL_HZ.iter());
        for (i, &f) in freqs.enumerate() {
            let set = [
                f,
                f * (1.0 - PROBE_OFFSET),
                f * (1.0 + PROBE_OFFSET),
                2.0 * f,
            ];
            for (j, g) in set.iter().enumerate() {
                coef[i * 4 + j] = 2.0 * (2.0 * core::f32::consts::PI * g / 8000.0).cos();
            }
        }
        let window: [f32; WIN_LEN] = core::array::from_fn(|i| {
            0.5 - 0.5 * (2.0 * core::f32::consts::PI * (i as f32 + 0.5) / WIN_LEN as f32).cos()
        });
        let (mut s, mut s2) = (0.0, 0.0);
        for w in &window {
            s += *w;
            s2 += *w * *w;
        }
        let quarter_steps = core::array::from_fn(|j| {
            core::array::from_fn(|i| {
                // The lanes' own (f32) coefficient, so the quarters agree.
                let c = coef[i * 4] as f64;
                // M^((3 - j) QUARTER) by repeated multiplication, in f64.
                let mut m = [1.0f64, 0.0, 0.0, 1.0];
                for _ in 0..(3 - j) * QUARTER {
                    m = [c * m[0] - m[2], c * m[1] - m[3], m[0], m[1]];
                }
                m.map(|v| v as f32)
            })
        });
        Tables {
            coef,
            quarter_steps,
            window,
            win_sum: s,
            win_sq_sum: s2,
        }
    }
}

impl DtmfDetector {
    /// A detector at sample 0.
    pub fn new() -> Self {
        Self {
            t: Tables::get(),
            buf: [0; WIN_LEN],
            buf_pos: 0,
            block_fill: 0,
            samples: 0,
            tone_min_pow: dbm0_to_pow(MIN_TONE_DBM0),
            env_on_pow: dbm0_to_pow(ENVELOPE_ON_DBM0),
            sub_acc: 0,
            sub_fill: 0,
            run_start: None,
            last_on_end: 0,
            candidate: None,
            current: None,
            ref_pow: 0.0,
            misses: 0,
            events: [None; EVENT_CAP],
            ev_head: 0,
            ev_len: 0,
        }
    }

    /// Samples fed so far.
    pub fn sample_count(&self) -> u64 {
        self.samples
    }

    /// Feed samples; returns how many were consumed (all of them unless the
    /// event queue needs draining with [`Self::poll_event`]).
    ///
    /// Works in runs up to the next sub-block, block or ring boundary, and
    /// analyses a window only when its result can matter (see
    /// `window_matters`); the events are those of doing it sample by
    /// sample and analysing every window (the split Goertzel differs from
    /// the sequential one only by float rounding).
    pub fn handle_samples(&mut self, samples: &[i16]) -> usize {
        let mut i = 0;
        while i < samples.len() {
            // Events are only pushed at boundaries, which end a run.
            if self.ev_len + 2 > EVENT_CAP {
                return i;
            }
            let n = (samples.len() - i)
                .min(SUB_LEN - self.sub_fill)
                .min(BLOCK_LEN - self.block_fill)
                .min(WIN_LEN - self.buf_pos);
            let run = &samples[i..i + n];
            super::copy_short(&mut self.buf[self.buf_pos..self.buf_pos + n], run);
            self.buf_pos = (self.buf_pos + n) % WIN_LEN;
            self.sub_acc += run
                .iter()
                .map(|&x| (x as i32 * x as i32) as u32 as u64)
                .sum::<u64>();
            self.samples += n as u64;
            self.sub_fill += n;
            self.block_fill += n;
            i += n;
            if self.sub_fill == SUB_LEN {
                let p = self.sub_acc as f32 / SUB_LEN as f32;
                self.sub_acc = 0;
                self.sub_fill = 0;
                self.envelope(p);
            }
            if self.block_fill == BLOCK_LEN {
                self.block_fill = 0;
                if self.samples >= WIN_LEN as u64 {
                    let v = if self.window_matters() {
                        self.analyse()
                    } else {
                        None
                    };
                    self.on_window(v);
                }
            }
        }
        samples.len()
    }

    /// Whether [`Self::on_window`] can act on this window's analysis: only
    /// when the window lies wholly inside an envelope run, or a digit is in
    /// progress (a confirming window resets its miss count). Otherwise the
    /// Goertzel work is skipped: in speech pauses and at the start of each
    /// talkspurt the detector costs only the envelope.
    fn window_matters(&self) -> bool {
        let win_start = self.samples - WIN_LEN as u64;
        self.current.is_some() || matches!(self.run_start, Some(s) if s <= win_start)
    }

    /// Fetches the lines of the fields every call reads (addresses only, no
    /// loads; for the engine's one-channel-ahead prefetch).
    #[inline]
    pub fn prefetch_state(&self) {
        use super::prefetch;
        prefetch(&self.samples);
        prefetch(&self.buf_pos);
        prefetch(&self.sub_acc);
        prefetch(&self.block_fill);
        prefetch(&self.ev_len);
        prefetch(&self.current);
        prefetch(&self.run_start);
    }

    /// Fetches the part of the sample ring the next call writes.
    #[inline]
    pub fn prefetch_data(&self) {
        super::prefetch_ring(&self.buf, self.buf_pos, super::channel::TICK_SAMPLES);
    }

    /// Next event, oldest first.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENT_CAP;
        self.ev_len -= 1;
        e
    }

    fn push(&mut self, e: DtmfEvent) {
        let i = (self.ev_head + self.ev_len) % EVENT_CAP;
        self.events[i] = Some(e);
        self.ev_len += 1;
    }

    fn end_current(&mut self) {
        if let Some((d, start, _)) = self.current.take() {
            let duration_samples = self.last_on_end.saturating_sub(start);
            self.push(DtmfEvent::DigitEnd {
                digit: d,
                duration_samples,
            });
        }
        self.misses = 0;
    }

    /// One 2 ms envelope sub-block of mean power `p` ended at `self.samples`.
    fn envelope(&mut self, p: f32) {
        let threshold = match self.current {
            Some((_, _, reference)) => self.env_on_pow.max(reference / 16.0),
            None => self.env_on_pow,
        };
        let now = self.samples;
        if p >= threshold {
            if self.run_start.is_none() {
                self.run_start = Some(now - SUB_LEN as u64);
                self.candidate = None;
            }
            self.last_on_end = now;
            self.try_start();
        } else {
            self.run_start = None;
            self.candidate = None;
            if self.current.is_some() && now - self.last_on_end >= MIN_OFF_SAMPLES {
                self.end_current();
            }
        }
    }

    fn try_start(&mut self) {
        let (Some(run_start), Some(d)) = (self.run_start, self.candidate) else {
            return;
        };
        if self.current.is_some() {
            return;
        }
        if self.last_on_end - run_start >= MIN_ON_SAMPLES {
            self.current = Some((d, run_start, self.ref_pow));
            self.misses = 0;
            self.push(DtmfEvent::DigitStart {
                digit: d,
                at_sample: run_start,
            });
        }
    }

    fn on_window(&mut self, v: Option<(u8, f32)>) {
        let win_start = self.samples - WIN_LEN as u64;
        let inside = matches!(self.run_start, Some(s) if s <= win_start);
        match (v, self.current) {
            (Some((d, _)), Some((cur, _, _))) if d == cur => {
                self.misses = 0;
            }
            (Some((d, p)), Some(_)) => {
                if inside {
                    // A different digit without a pause: end the old one.
                    self.end_current();
                    self.candidate = Some(d);
                    self.ref_pow = p;
                    // The new digit's duration counts from this window.
                    self.run_start = Some(win_start);
                }
            }
            (Some((d, p)), None) => {
                if inside {
                    if self.candidate.is_some_and(|c| c != d) {
                        // Inconsistent within one run: restart the run here.
                        self.run_start = Some(win_start);
                    }
                    self.candidate = Some(d);
                    self.ref_pow = p;
                    self.try_start();
                }
            }
            (None, Some(_)) => {
                if inside {
                    self.misses += 1;
                    if self.misses >= 2 {
                        self.end_current();
                        self.run_start = None;
                        self.candidate = None;
                    }
                }
            }
            (None, None) => {
                if inside {
                    self.candidate = None;
                }
            }
        }
    }

    fn power(&self, frame: &[f32; WIN_LEN], k: usize) -> f32 {
        let c = self.t.coef[k];
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in frame {
            let s = x + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let m2 = s1 * s1 + s2 * s2 - c * s1 * s2;
        2.0 * m2 / (self.t.win_sum * self.t.win_sum)
    }

    /// [`Self::power`] at the eight Q.23 frequencies in one pass: eight
    /// independent Goertzel recurrences side by side (SIMD lanes), and the
    /// window cut in four quarters run at the same time from a zero state,
    /// so eight vector chains are in flight instead of two (the recurrence's
    /// latency, not the arithmetic, bounds one chain). The recurrence is
    /// linear, `v_n = M v_(n-1) + (x_n, 0)` with `M = [[c, -1], [1, 0]]`, so
    /// the state after the whole window is
    /// `M^3Q v_1 + M^2Q v_2 + M^Q v_3 + v_4` ([`Tables::quarter_steps`]).
    /// Equal to the sequential Goertzel up to float rounding.
    fn powers8(&self, frame: &[f32; WIN_LEN]) -> [f32; N_FREQ] {
        let c: [f32; N_FREQ] = core::array::from_fn(|i| self.t.coef[i * 4]);
        // Per quarter: (s[n-1], s[n-2]) of each lane.
        let mut v1 = [[0.0f32; N_FREQ]; 4];
        let mut v2 = [[0.0f32; N_FREQ]; 4];
        for n in 0..QUARTER {
            let x = [
                frame[n],
                frame[QUARTER + n],
                frame[2 * QUARTER + n],
                frame[3 * QUARTER + n],
            ];
            for q in 0..4 {
                for k in 0..N_FREQ {
                    let s = x[q] + c[k] * v1[q][k] - v2[q][k];
                    v2[q][k] = v1[q][k];
                    v1[q][k] = s;
                }
            }
        }
        let m = &self.t.quarter_steps;
        let norm = self.t.win_sum * self.t.win_sum;
        core::array::from_fn(|k| {
            let (mut s1, mut s2) = (v1[3][k], v2[3][k]);
            for (q, mq) in m.iter().enumerate() {
                let mk = &mq[k];
                s1 += mk[0] * v1[q][k] + mk[1] * v2[q][k];
                s2 += mk[2] * v1[q][k] + mk[3] * v2[q][k];
            }
            let m2 = s1 * s1 + s2 * s2 - c[k] * s1 * s2;
            2.0 * m2 / norm
        })
    }

    /// Analyse the last 204 samples; `Some((digit, total power))` if valid.
    fn analyse(&mut self) -> Option<(u8, f32)> {
        // Scratch on the stack: hot in L1, not per-channel memory.
        let mut frame = [0.0f32; WIN_LEN];
        // The ring's two runs, oldest first, windowed (two plain loops, so
        // the compiler vectorises them).
        let (newer, older) = self.buf.split_at(self.buf_pos);
        let (f_old, f_new) = frame.split_at_mut(older.len());
        let (w_old, w_new) = self.t.window.split_at(older.len());
        for ((f, &x), &w) in f_old.iter_mut().zip(older).zip(w_old) {
            *f = x as f32 * w;
        }
        for ((f, &x), &w) in f_new.iter_mut().zip(newer).zip(w_new) {
            *f = x as f32 * w;
        }
        // Energy in eight partial sums (vector lanes; the order of the
        // additions differs from a running sum only by float rounding).
        let mut lanes = [0.0f32; 8];
        let mut chunks = frame.chunks_exact(8);
        for c in &mut chunks {
            for (l, &y) in lanes.iter_mut().zip(c) {
                *l += y * y;
            }
        }
        let mut total: f32 = chunks.remainder().iter().map(|&y| y * y).sum();
        total += lanes.iter().sum::<f32>();
        let total = total / self.t.win_sq_sum;
        // Cauchy-Schwarz: a bin's power is at most `total` times
        // 2 N sum(w^2) / sum(w)^2 (3 for this window); below that no tone
        // can reach the minimum level.
        let bound = 2.0 * WIN_LEN as f32 * self.t.win_sq_sum / (self.t.win_sum * self.t.win_sum);
        if total * bound * 1.01 < self.tone_min_pow {
            return None;
        }
        let p = self.powers8(&frame);
        let best = |range: core::ops::Range<usize>| {
            let mut b = range.start;
            for i in range {
                if p[i] > p[b] {
                    b = i;
                }
            }
            b
        };
        let r = best(0..4);
        let c = best(4..8);
        let (pr, pc) = (p[r], p[c]);
        if pr < self.tone_min_pow || pc < self.tone_min_pow {
            return None;
        }
        // Twist: normal (row stronger) <= 8 dB, reverse (column stronger) <= 4 dB.
        if pr > pc * NORMAL_TWIST || pc > pr * REVERSE_TWIST {
            return None;
        }
        for (i, &pi) in p.iter().enumerate() {
            if i != r && i != c && i / 4 == r / 4 && pi * RELATIVE_PEAK > pr {
                return None;
            }
            if i != r && i != c && i / 4 == c / 4 && pi * RELATIVE_PEAK > pc {
                return None;
            }
        }
        // Frequency deviation: each tone nearer its nominal than +-5 %.
        for (t, pt) in [(r, pr), (c, pc)] {
            if self.power(&frame, t * 4 + 1) > pt || self.power(&frame, t * 4 + 2) > pt {
                return None;
            }
        }
        // Talk-off: the pair carries most of the energy, little 2nd harmonic.
        if pr + pc < TONE_ENERGY_RATIO * total {
            return None;
        }
        // A row's 2nd harmonic lies 58..71 Hz from some column tones
        // (2 x 697 = 1394 vs 1336 Hz): skip it when the detected column is
        // that close, or its leakage would read as harmonic.
        let mut h = self.power(&frame, c * 4 + 3);
        if (2.0 * ROW_HZ[r] - COL_HZ[c - 4]).abs() > 150.0 {
            h += self.power(&frame, r * 4 + 3);
        }
        if h > HARMONIC_RATIO * (pr + pc) {
            return None;
        }
        Some((DIGITS[r][c - 4], total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::g711::{alaw_to_linear, linear_to_alaw};

    const ALL: &[u8] = b"123A456B789C*0#D";

    fn amp(dbm0: f32) -> f32 {
        DBM0_PEAK * 10f32.powf(dbm0 / 20.0)
    }

    /// Append `ms` of row/col tones (`fr`, `fc` Hz) at the given levels.
    fn push_tone(v: &mut Vec<i16>, fr: f32, fc: f32, lr: f32, lc: f32, samples: usize) {
        let (ar, ac) = (amp(lr), amp(lc));
        for n in 0..samples {
            let t = n as f32 / 8000.0;
            let x = ar * (core::f32::consts::TAU * fr * t).sin()
                + ac * (core::f32::consts::TAU * fc * t + 1.0).sin();
            v.push(x as i16);
        }
    }

    fn push_digit(v: &mut Vec<i16>, d: u8, dev: f32, lr: f32, lc: f32, ms: usize) {
        let (r, c) = digit_position(d).unwrap();
        push_tone(
            v,
            ROW_HZ[r] * (1.0 + dev),
            COL_HZ[c] * (1.0 + dev),
            lr,
            lc,
            ms * 8,
        );
    }

    fn silence(v: &mut Vec<i16>, ms: usize) {
        v.extend(std::iter::repeat_n(0i16, ms * 8));
    }

    /// Run in 8-sample frames (E1) starting at `offset` samples of silence.
    fn run(sig: &[i16]) -> Vec<DtmfEvent> {
        let mut det = DtmfDetector::new();
        let mut ev = Vec::new();
        for frame in sig.chunks(8) {
            let mut off = 0;
            while off < frame.len() {
                off += det.handle_samples(&frame[off..]);
                while let Some(e) = det.poll_event() {
                    ev.push(e);
                }
            }
        }
        ev
    }

    fn digits(ev: &[DtmfEvent]) -> Vec<u8> {
        ev.iter()
            .filter_map(|e| match e {
                DtmfEvent::DigitStart { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect()
    }

    fn one(d: u8, dev: f32, lr: f32, lc: f32, ms: usize, lead_ms: usize) -> Vec<u8> {
        let mut v = Vec::new();
        silence(&mut v, lead_ms);
        push_digit(&mut v, d, dev, lr, lc, ms);
        silence(&mut v, 100);
        digits(&run(&v))
    }

    #[test]
    fn split_goertzel_matches_the_sequential_one() {
        let det = DtmfDetector::new();
        let mut x = 99u32;
        for _ in 0..50 {
            let frame: [f32; WIN_LEN] = core::array::from_fn(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((x >> 16) as i16 / 2) as f32
            });
            let p = det.powers8(&frame);
            for (k, &pk) in p.iter().enumerate() {
                let q = det.power(&frame, k * 4);
                assert!((pk - q).abs() <= 1e-3 * q.max(1.0), "lane {k}: {pk} vs {q}");
            }
        }
        // Full-scale windowed tones at and around each lane's frequency:
        // the quarters' steps M^Q.. M^3Q must not lose the large values.
        for &f in ROW_HZ.iter().chain(&COL_HZ) {
            for dev in [-0.035f32, -0.015, 0.0, 0.015, 0.035] {
                let w = 2.0 * core::f32::consts::PI * f * (1.0 + dev) / 8000.0;
                let frame: [f32; WIN_LEN] =
                    core::array::from_fn(|n| 32_000.0 * (w * n as f32).sin() * det.t.window[n]);
                let p = det.powers8(&frame);
                let q: [f32; N_FREQ] = core::array::from_fn(|k| det.power(&frame, k * 4));
                // Rounding scales with the largest lane (the tone's): far
                // lanes' leakage is held to a millionth of it.
                let top = q.iter().fold(0.0f32, |a, &b| a.max(b));
                for (k, (&pk, &qk)) in p.iter().zip(&q).enumerate() {
                    assert!(
                        (pk - qk).abs() <= 1e-3 * qk + 1e-6 * top,
                        "{f} Hz {dev:+}: lane {k}: {pk} vs {qk} (top {top})"
                    );
                }
            }
        }
    }

    #[test]
    fn all_sixteen_digits() {
        let mut v = Vec::new();
        silence(&mut v, 20);
        for &d in ALL {
            push_digit(&mut v, d, 0.0, -7.0, -5.0, 60);
            silence(&mut v, 60);
        }
        let ev = run(&v);
        assert_eq!(digits(&ev), ALL.to_vec());
        // Events pair up and report plausible timing.
        let mut start = 0;
        for e in &ev {
            match *e {
                DtmfEvent::DigitStart { at_sample, .. } => start = at_sample,
                DtmfEvent::DigitEnd {
                    duration_samples, ..
                } => {
                    assert!(
                        (460..=500).contains(&duration_samples),
                        "{duration_samples}"
                    );
                    assert!(start > 0);
                }
            }
        }
        assert_eq!(ev.len(), 32);
    }

    #[test]
    fn frequency_deviation() {
        for &d in ALL {
            for dev in [0.015, -0.015] {
                assert_eq!(
                    one(d, dev, -7.0, -5.0, 60, 13),
                    vec![d],
                    "{} {dev}",
                    d as char
                );
            }
            for dev in [0.035, -0.035] {
                assert!(
                    one(d, dev, -7.0, -5.0, 60, 13).is_empty(),
                    "{} {dev}",
                    d as char
                );
            }
        }
    }

    #[test]
    fn twist_limits() {
        for &d in ALL {
            // Normal twist: low group stronger.
            assert_eq!(one(d, 0.0, -4.0, -12.0, 60, 5), vec![d]);
            assert!(one(d, 0.0, -4.0, -14.0, 60, 5).is_empty());
            // Reverse twist: high group stronger.
            assert_eq!(one(d, 0.0, -10.0, -6.0, 60, 5), vec![d]);
            assert!(one(d, 0.0, -10.0, -4.0, 60, 5).is_empty());
        }
    }

    #[test]
    fn minimum_duration() {
        for lead in 0..13 {
            let lead_samples = lead * 8;
            for &d in b"1D*5" {
                let mut v = vec![0i16; lead_samples];
                push_digit(&mut v, d, 0.0, -7.0, -5.0, 30);
                silence(&mut v, 100);
                assert!(digits(&run(&v)).is_empty(), "30 ms lead {lead}");
                let mut v = vec![0i16; lead_samples];
                push_digit(&mut v, d, 0.0, -7.0, -5.0, 45);
                silence(&mut v, 100);
                assert_eq!(digits(&run(&v)), vec![d], "45 ms lead {lead}");
            }
        }
    }

    #[test]
    fn pause_between_digits() {
        // 30 ms pause between two equal digits: bridged into one digit.
        let mut v = Vec::new();
        silence(&mut v, 10);
        push_digit(&mut v, b'5', 0.0, -7.0, -5.0, 50);
        silence(&mut v, 30);
        push_digit(&mut v, b'5', 0.0, -7.0, -5.0, 50);
        silence(&mut v, 100);
        let ev = run(&v);
        assert_eq!(digits(&ev), b"5".to_vec());
        // 45 ms pause: two digits.
        let mut v = Vec::new();
        silence(&mut v, 10);
        push_digit(&mut v, b'5', 0.0, -7.0, -5.0, 50);
        silence(&mut v, 45);
        push_digit(&mut v, b'5', 0.0, -7.0, -5.0, 50);
        silence(&mut v, 100);
        assert_eq!(digits(&run(&v)), b"55".to_vec());
    }

    #[test]
    fn talk_off_speech_like() {
        // Harmonic series with gliding pitch and formant-ish AM, 6 s.
        let mut v = Vec::new();
        let mut phase = 0.0f32;
        for n in 0..48_000 {
            let t = n as f32 / 8000.0;
            let f0 = 120.0 + 60.0 * (core::f32::consts::TAU * 0.7 * t).sin();
            phase += f0 / 8000.0;
            let mut x = 0.0;
            for h in 1..30 {
                let fh = f0 * h as f32;
                if fh > 3800.0 {
                    break;
                }
                // Formants moving around 500..2500 Hz.
                let f1 = 600.0 + 300.0 * (core::f32::consts::TAU * 1.3 * t).sin();
                let f2 = 1700.0 + 600.0 * (core::f32::consts::TAU * 0.9 * t).sin();
                let g = 1.0 / (1.0 + ((fh - f1) / 150.0).powi(2))
                    + 0.7 / (1.0 + ((fh - f2) / 200.0).powi(2));
                x += g * (core::f32::consts::TAU * phase * h as f32).sin();
            }
            let am = 0.5 + 0.5 * (core::f32::consts::TAU * 4.0 * t).sin().abs();
            v.push((x * am * 4000.0).clamp(-32000.0, 32000.0) as i16);
        }
        assert!(digits(&run(&v)).is_empty());
    }

    #[test]
    fn talk_off_music_like() {
        // Three-tone chords changing every 250 ms, 6 s, including chords
        // whose notes lie near DTMF frequencies.
        let chords: [[f32; 3]; 8] = [
            [261.6, 329.6, 392.0],
            [698.5, 880.0, 1046.5],
            [784.0, 987.8, 1174.7],
            [659.3, 830.6, 987.8],
            [932.3, 1174.7, 1396.9],
            [440.0, 554.4, 659.3],
            [1046.5, 1318.5, 1568.0],
            [587.3, 740.0, 880.0],
        ];
        let mut v = Vec::new();
        for n in 0..48_000 {
            let t = n as f32 / 8000.0;
            let ch = chords[(n / 2000) % chords.len()];
            let x: f32 = ch
                .iter()
                .map(|f| (core::f32::consts::TAU * f * t).sin())
                .sum();
            v.push((x * 5000.0) as i16);
        }
        assert!(digits(&run(&v)).is_empty());
    }

    #[test]
    fn after_alaw_round_trip() {
        let mut v = Vec::new();
        silence(&mut v, 20);
        for &d in ALL {
            push_digit(&mut v, d, 0.0, -7.0, -5.0, 50);
            silence(&mut v, 50);
        }
        let v: Vec<i16> = v
            .iter()
            .map(|&x| alaw_to_linear(linear_to_alaw(x)))
            .collect();
        assert_eq!(digits(&run(&v)), ALL.to_vec());
        // Low level too: -22 dBm0 per tone.
        let mut v = Vec::new();
        push_digit(&mut v, b'9', 0.0, -22.0, -22.0, 50);
        silence(&mut v, 60);
        let v: Vec<i16> = v
            .iter()
            .map(|&x| alaw_to_linear(linear_to_alaw(x)))
            .collect();
        assert_eq!(digits(&run(&v)), b"9".to_vec());
    }

    #[test]
    fn too_weak_rejected() {
        assert!(one(b'5', 0.0, -40.0, -40.0, 80, 0).is_empty());
    }
}
