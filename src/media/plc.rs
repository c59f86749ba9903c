//! Packet loss concealment for G.711 per ITU-T G.711 Appendix I, over 16-bit
//! linear samples at 8 kHz.
//!
//! # Contract
//!
//! [`Plc::process`] takes the jitter buffer's output as it comes: any number
//! of samples (the engine passes one E1 tick of 8) with a `missing` flag per
//! sample ([`super::jitter::JitterBuffer::pull`] fills both). It rewrites the
//! block in place: good samples pass through, missing ones are synthesised.
//! The output is delayed by [`OUTPUT_DELAY_SAMPLES`] (30 samples, 3.75 ms),
//! exactly as in the Appendix: that delay is what lets the start of an
//! erasure be smoothed into audio that has not yet been played.
//!
//! Why per sample rather than per 10 ms frame: the jitter buffer plays out
//! per E1 tick and a gap can start and end on any sample (packets of 10, 20,
//! 30 or 40 ms, anchoring, drift). The Appendix's frame-level steps are kept
//! in samples counted from the start of the erasure: the pitch buffer grows
//! to 2 and 3 periods at 10 and 20 ms, the attenuation steps at every 10 ms,
//! and the end-of-erasure overlap length depends on how many 10 ms frames
//! the erasure touched. A loss that is a whole number of 10 ms frames
//! aligned on a frame gives the Appendix's output sample for sample
//! (up to float rounding).
//!
//! # Method (G.711 Appendix I, clause numbers of the Appendix)
//!
//! - I.2.1 history: the last [`HISTORY_LEN`] = 390 samples (3 longest pitch
//!   periods plus a quarter period).
//! - I.2.2 pitch: normalised cross-correlation of the last 20 ms against the
//!   history at lags 40..120 samples (200..66 Hz), coarse at 2:1 decimation
//!   then refined around the best lag.
//! - I.2.3 first 10 ms: the last pitch period repeated, its last quarter
//!   period overlap-added with the quarter period before it so the loop has
//!   no step; the same quarter period replaces the not-yet-played tail of the
//!   history so the transition into the synthetic signal has no step either.
//! - I.2.4 at 10 ms and 20 ms: the pitch buffer grows to 2 then 3 periods,
//!   with a quarter-period overlap-add between the old and new synthesis.
//! - I.2.5 from 10 ms on, the gain falls by 20 % per 10 ms (linearly per
//!   sample), reaching silence at 60 ms.
//! - I.2.6 first good audio after an erasure: overlap-add of the continued
//!   synthesis with the real signal over a quarter period plus 4 ms per
//!   extra erased 10 ms frame, at most 10 ms.
//!
//! No allocation after [`Plc::new`] (the buffers are arrays, the synthesis
//! ones in one box), no clock.

/// Shortest pitch period searched (200 Hz).
pub const PITCH_MIN: usize = 40;
/// Longest pitch period searched (66.7 Hz).
pub const PITCH_MAX: usize = 120;
const PITCH_DIFF: usize = PITCH_MAX - PITCH_MIN;
/// Longest overlap-add at the start of an erasure: a quarter of the longest
/// period.
const POVERLAP_MAX: usize = PITCH_MAX / 4;
/// History length: 3 x longest period + longest quarter period (390).
pub const HISTORY_LEN: usize = PITCH_MAX * 3 + POVERLAP_MAX;
/// The Appendix's frame: 10 ms. Its steps (pitch buffer growth, attenuation)
/// happen at multiples of this from the start of the erasure.
pub const FRAME_LEN: usize = 80;
/// Output delay, in samples (3.75 ms).
pub const OUTPUT_DELAY_SAMPLES: usize = POVERLAP_MAX;
/// Correlation window for the pitch search (20 ms).
const CORR_LEN: usize = 160;
const CORR_BUF_LEN: usize = CORR_LEN + PITCH_MAX;
/// Floor of the energy normalisation, so that silence gives no pitch.
const CORR_MIN_POWER: f32 = 250.0;
/// Coarse search decimation.
const NDEC: usize = 2;
/// Extra end overlap per further erased frame (4 ms).
const END_OVERLAP_INCR: usize = 32;
/// Attenuation per 10 ms frame after the first.
const ATTEN_PER_FRAME: f32 = 0.2;
const ATTEN_PER_SAMPLE: f32 = ATTEN_PER_FRAME / FRAME_LEN as f32;
/// Frames after which the output is silence (6 x 10 ms = 60 ms).
const SILENT_AFTER_FRAMES: usize = 6;

/// Counters for telemetry and the call's quality summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlcCounters {
    /// Missing samples replaced (synthesised or faded to silence), counted
    /// once the stream has delivered audio (the silence before the first
    /// packet is not concealment).
    pub concealed_samples: u64,
    /// Of those, samples past 60 ms of an erasure (silence).
    pub silenced_samples: u64,
    /// Erasures (runs of missing samples) concealed.
    pub erasures: u64,
}

/// End-of-erasure overlap-add in progress (I.2.6).
#[derive(Debug, Clone, Copy)]
struct EndOverlap {
    done: usize,
    len: usize,
    gain: f32,
}

/// See [`Plc::s`]. Every field is written before it is read in an
/// erasure, so a reset leaves them as they are.
struct Scratch {
    /// History snapshot at the start of an erasure, as floats.
    pitch_buf: [f32; HISTORY_LEN],
    /// The original last quarter period before the loop overlap.
    last_q: [f32; POVERLAP_MAX],
    /// Old synthesis when the pitch buffer grows (I.2.4).
    tail: [f32; POVERLAP_MAX],
}

/// G.711 Appendix I concealment state for one channel; see the module doc.
pub struct Plc {
    /// Ring of the last HISTORY_LEN samples written (good or synthesised).
    history: [i16; HISTORY_LEN],
    /// Next write position in `history` (oldest sample is here).
    pos: usize,
    /// The synthesis buffers, only used in and just after an erasure: out
    /// of line, so a channel's per-tick state stays small.
    s: Box<Scratch>,
    tail_left: usize,
    pitch: usize,
    poverlap: usize,
    /// Read offset into the pitch buffer, and the buffer length in use.
    poffset: usize,
    pitch_blen: usize,
    /// Samples into the current erasure (0: not in an erasure).
    erased: usize,
    end: Option<EndOverlap>,
    /// Good audio has been seen since construction or reset.
    primed: bool,
    pub counters: PlcCounters,
}

impl Default for Plc {
    fn default() -> Self {
        Self::new()
    }
}

impl Plc {
    pub fn new() -> Self {
        Plc {
            history: [0; HISTORY_LEN],
            pos: 0,
            s: Box::new(Scratch {
                pitch_buf: [0.0; HISTORY_LEN],
                last_q: [0.0; POVERLAP_MAX],
                tail: [0.0; POVERLAP_MAX],
            }),
            tail_left: 0,
            pitch: PITCH_MAX,
            poverlap: POVERLAP_MAX,
            poffset: 0,
            pitch_blen: PITCH_MAX,
            erased: 0,
            end: None,
            primed: false,
            counters: PlcCounters::default(),
        }
    }

    /// Forgets the audio (new call or new source); keeps the counters.
    /// No allocation: the synthesis buffers are kept (see [`Scratch`]).
    pub fn reset(&mut self) {
        self.history = [0; HISTORY_LEN];
        self.pos = 0;
        self.tail_left = 0;
        self.pitch = PITCH_MAX;
        self.poverlap = POVERLAP_MAX;
        self.poffset = 0;
        self.pitch_blen = PITCH_MAX;
        self.erased = 0;
        self.end = None;
        self.primed = false;
    }

    /// Heap bytes (the synthesis buffers; for the media memory budget).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Scratch>()
    }

    /// True while synthesising (an erasure is in progress).
    pub fn in_erasure(&self) -> bool {
        self.erased > 0
    }

    /// Conceals in place: `samples[i]` is replaced where `missing[i]`, and
    /// the whole block comes out delayed by [`OUTPUT_DELAY_SAMPLES`]. Only
    /// the common prefix of the two slices is processed.
    pub fn process(&mut self, samples: &mut [i16], missing: &[bool]) {
        let n = samples.len().min(missing.len());
        self.process_n(&mut samples[..n], missing, missing[..n].contains(&true));
    }

    /// [`Self::process`] of a block with no sample missing (the caller
    /// knows, e.g. from [`super::jitter::JitterBuffer::pull`]'s count).
    pub fn process_good(&mut self, samples: &mut [i16]) {
        const NONE: [bool; OUTPUT_DELAY_SAMPLES] = [false; OUTPUT_DELAY_SAMPLES];
        for block in samples.chunks_mut(NONE.len()) {
            self.process_n(block, &NONE, false);
        }
    }

    /// `samples` and the first `samples.len()` flags of `missing`
    /// (`any_missing`: one of those is set).
    fn process_n(&mut self, samples: &mut [i16], missing: &[bool], any_missing: bool) {
        let n = samples.len();
        if self.erased == 0 && self.end.is_none() && !any_missing {
            // Fast path: good audio, no erasure to finish: a delay line.
            self.primed |= n > 0;
            if n <= OUTPUT_DELAY_SAMPLES {
                // The block's outputs were all written before it: read them
                // out, then write the block (ring runs, no per-sample wrap).
                let mut out = [0i16; OUTPUT_DELAY_SAMPLES];
                let rd = (self.pos + HISTORY_LEN - OUTPUT_DELAY_SAMPLES) % HISTORY_LEN;
                ring_read(&self.history, rd, &mut out[..n]);
                ring_write(&mut self.history, self.pos, &samples[..n]);
                self.pos = (self.pos + n) % HISTORY_LEN;
                super::copy_short(&mut samples[..n], &out[..n]);
            } else {
                for s in &mut samples[..n] {
                    *s = self.push(*s);
                }
            }
            return;
        }
        for (s, &m) in samples.iter_mut().zip(missing) {
            let v = if m {
                self.conceal_sample()
            } else {
                self.good_sample(*s)
            };
            *s = self.push(v);
        }
    }

    /// Prefetch hint (for an engine ticking many channels): the state a
    /// [`process`](Self::process) call reads first.
    #[inline]
    pub fn prefetch_state(&self) {
        crate::media::prefetch(&self.pos);
        crate::media::prefetch(&self.erased);
        crate::media::prefetch(&self.end);
        crate::media::prefetch(&self.primed);
    }

    /// Prefetch hint, second step: the history lines the next block writes
    /// and the delayed samples it reads back.
    #[inline]
    pub fn prefetch_data(&self) {
        let n = crate::media::channel::TICK_SAMPLES;
        let pos = self.pos;
        let out = (pos + HISTORY_LEN - OUTPUT_DELAY_SAMPLES) % HISTORY_LEN;
        crate::media::prefetch_ring(&self.history, pos, n);
        crate::media::prefetch_ring(&self.history, out, n);
    }

    /// Writes `v` into the history and returns the sample written
    /// [`OUTPUT_DELAY_SAMPLES`] earlier.
    #[inline]
    fn push(&mut self, v: i16) -> i16 {
        let pos = self.pos;
        self.history[pos] = v;
        self.pos = if pos + 1 == HISTORY_LEN { 0 } else { pos + 1 };
        let out = if pos >= OUTPUT_DELAY_SAMPLES {
            pos - OUTPUT_DELAY_SAMPLES
        } else {
            pos + HISTORY_LEN - OUTPUT_DELAY_SAMPLES
        };
        self.history[out]
    }

    fn good_sample(&mut self, x: i16) -> i16 {
        self.primed = true;
        if self.erased > 0 {
            self.start_end_overlap();
        }
        let Some(mut e) = self.end else {
            return x;
        };
        // I.2.6 overlapaddatend: synthetic weight falls from gain to 0, real
        // weight rises from 0 to 1 over `len` samples.
        let incr = 1.0 / e.len as f32;
        let w = (e.done + 1) as f32 * incr;
        let f = self.next_synth();
        let v = (1.0 - w) * e.gain * f + w * x as f32;
        e.done += 1;
        self.end = (e.done < e.len).then_some(e);
        to_i16(v)
    }

    /// I.2.6: the first good sample after an erasure.
    fn start_end_overlap(&mut self) {
        let frames = self.erased.div_ceil(FRAME_LEN);
        let len = (self.poverlap + (frames - 1) * END_OVERLAP_INCR).min(FRAME_LEN);
        let gain = (1.0 - (frames - 1) as f32 * ATTEN_PER_FRAME).max(0.0);
        self.erased = 0;
        self.tail_left = 0;
        self.end = Some(EndOverlap { done: 0, len, gain });
    }

    fn conceal_sample(&mut self) -> i16 {
        if !self.primed {
            return 0;
        }
        self.end = None;
        match self.erased {
            0 => self.start_erasure(),
            n if n == FRAME_LEN || n == 2 * FRAME_LEN => self.add_period(),
            _ => {}
        }
        let n = self.erased;
        self.erased += 1;
        self.counters.concealed_samples += 1;
        let frame = n / FRAME_LEN;
        if frame >= SILENT_AFTER_FRAMES {
            self.counters.silenced_samples += 1;
            return 0;
        }
        let mut v = self.next_synth();
        if self.tail_left > 0 {
            // I.2.4 overlapadds: old synthesis into the new, quarter period.
            let i = self.poverlap - self.tail_left;
            let w = (i + 1) as f32 / self.poverlap as f32;
            v = (1.0 - w) * self.s.tail[i] + w * v;
            self.tail_left -= 1;
        }
        if frame >= 1 {
            // I.2.5 scalespeech: 1 - 0.2 (k - 1) at the start of frame k,
            // falling by 0.2 / 80 per sample.
            let g = 1.0
                - (frame - 1) as f32 * ATTEN_PER_FRAME
                - (n % FRAME_LEN) as f32 * ATTEN_PER_SAMPLE;
            v *= g.max(0.0);
        }
        to_i16(v)
    }

    /// I.2.3: first missing sample: find the pitch, build a one-period
    /// pitch buffer whose loop is smoothed, and smooth the history's unplayed
    /// tail into it.
    fn start_erasure(&mut self) {
        self.counters.erasures += 1;
        for i in 0..HISTORY_LEN {
            self.s.pitch_buf[i] = self.history[(self.pos + i) % HISTORY_LEN] as f32;
        }
        self.pitch = find_pitch(&self.s.pitch_buf);
        self.poverlap = self.pitch / 4;
        let po = self.poverlap;
        self.s.last_q[..po].copy_from_slice(&self.s.pitch_buf[HISTORY_LEN - po..]);
        self.poffset = 0;
        self.pitch_blen = self.pitch;
        self.tail_left = 0;
        self.overlap_loop();
        // The last `po` samples written are not yet played (po <= delay).
        for i in 0..po {
            let slot = (self.pos + HISTORY_LEN - po + i) % HISTORY_LEN;
            self.history[slot] = to_i16(self.s.pitch_buf[HISTORY_LEN - po + i]);
        }
    }

    /// I.2.4: at 10 and 20 ms the pitch buffer grows by one period.
    fn add_period(&mut self) {
        let po = self.poverlap;
        let save = self.poffset;
        for i in 0..po {
            self.s.tail[i] = self.next_synth();
        }
        self.poffset = save;
        while self.poffset > self.pitch {
            self.poffset -= self.pitch;
        }
        self.pitch_blen += self.pitch;
        self.overlap_loop();
        self.tail_left = po;
    }

    /// Overlap-adds the original last quarter period with the quarter period
    /// before the pitch buffer's start, into the buffer's end, so that the
    /// loop end -> start is smooth (I.2.3 `overlapadd`).
    fn overlap_loop(&mut self) {
        let po = self.poverlap;
        let start = HISTORY_LEN - self.pitch_blen;
        let incr = 1.0 / po as f32;
        for i in 0..po {
            let rw = (i + 1) as f32 * incr;
            let t = (1.0 - rw) * self.s.last_q[i] + rw * self.s.pitch_buf[start - po + i];
            self.s.pitch_buf[HISTORY_LEN - po + i] = t.clamp(-32768.0, 32767.0);
        }
    }

    /// Next sample of the periodic synthesis (I.2.3 `getfespeech`).
    fn next_synth(&mut self) -> f32 {
        let start = HISTORY_LEN - self.pitch_blen;
        let v = self.s.pitch_buf[start + self.poffset];
        self.poffset += 1;
        if self.poffset >= self.pitch_blen {
            self.poffset = 0;
        }
        v
    }
}

/// `out.len()` samples of the ring from `at` on, wrapping.
fn ring_read(ring: &[i16; HISTORY_LEN], at: usize, out: &mut [i16]) {
    let first = out.len().min(HISTORY_LEN - at);
    super::copy_short(&mut out[..first], &ring[at..at + first]);
    let rest = out.len() - first;
    super::copy_short(&mut out[first..], &ring[..rest]);
}

/// Writes `src` into the ring from `at` on, wrapping.
fn ring_write(ring: &mut [i16; HISTORY_LEN], at: usize, src: &[i16]) {
    let first = src.len().min(HISTORY_LEN - at);
    super::copy_short(&mut ring[at..at + first], &src[..first]);
    let rest = src.len() - first;
    super::copy_short(&mut ring[..rest], &src[first..]);
}

fn to_i16(v: f32) -> i16 {
    v.clamp(-32768.0, 32767.0) as i16
}

/// I.2.2 `findpitch`: the lag in PITCH_MIN..=PITCH_MAX whose 20 ms segment
/// best matches the last 20 ms of `buf`, by cross-correlation normalised by
/// the candidate's energy (floored at CORR_MIN_POWER).
fn find_pitch(buf: &[f32; HISTORY_LEN]) -> usize {
    let l = &buf[HISTORY_LEN - CORR_LEN..];
    let r = &buf[HISTORY_LEN - CORR_BUF_LEN..];
    let score = |j: usize, step: usize| {
        let (mut energy, mut corr) = (0.0f32, 0.0f32);
        for i in (0..CORR_LEN).step_by(step) {
            energy += r[j + i] * r[j + i];
            corr += r[j + i] * l[i];
        }
        corr / energy.max(CORR_MIN_POWER).sqrt()
    };
    // Coarse search at 2:1 decimation over every other lag.
    let mut best = 0;
    let mut best_corr = score(0, NDEC);
    for j in (NDEC..=PITCH_DIFF).step_by(NDEC) {
        let c = score(j, NDEC);
        if c >= best_corr {
            best_corr = c;
            best = j;
        }
    }
    // Fine search around it at full rate.
    let lo = best.saturating_sub(NDEC - 1);
    let hi = (best + NDEC - 1).min(PITCH_DIFF);
    let mut fine = lo;
    let mut fine_corr = score(lo, 1);
    for j in lo + 1..=hi {
        let c = score(j, 1);
        if c > fine_corr {
            fine_corr = c;
            fine = j;
        }
    }
    PITCH_MAX - fine
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced-speech-like periodic signal: fundamental `f0` with two
    /// harmonics, peak about 12000.
    fn voiced(n: usize, f0: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 * f0 / 8000.0 * core::f64::consts::TAU;
                (7000.0 * t.sin() + 3500.0 * (2.0 * t + 0.5).sin() + 1500.0 * (3.0 * t + 1.0).sin())
                    as i16
            })
            .collect()
    }

    /// Runs `x` through the PLC in 8-sample ticks with `lost(i)` marking
    /// missing samples; returns the output re-aligned (delay removed).
    fn run(x: &[i16], lost: impl Fn(usize) -> bool) -> (Vec<i16>, Plc) {
        let mut plc = Plc::new();
        let mut out = Vec::with_capacity(x.len());
        let padded: Vec<i16> = x
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, OUTPUT_DELAY_SAMPLES + 8))
            .collect();
        for (t, chunk) in padded.chunks(8).enumerate() {
            let mut buf = [0i16; 8];
            let mut miss = [false; 8];
            for (k, &s) in chunk.iter().enumerate() {
                let i = t * 8 + k;
                buf[k] = s;
                miss[k] = i < x.len() && lost(i);
            }
            plc.process(&mut buf[..chunk.len()], &miss[..chunk.len()]);
            out.extend_from_slice(&buf[..chunk.len()]);
        }
        (
            out[OUTPUT_DELAY_SAMPLES..OUTPUT_DELAY_SAMPLES + x.len()].to_vec(),
            plc,
        )
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (w[1] as i32 - w[0] as i32).abs())
            .max()
            .unwrap_or(0)
    }

    fn snr_db(reference: &[i16], got: &[i16]) -> f64 {
        let sig: f64 = reference.iter().map(|&v| (v as f64).powi(2)).sum();
        let err: f64 = reference
            .iter()
            .zip(got)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        10.0 * (sig / err.max(1.0)).log10()
    }

    /// The good-block entry gives what `process` gives for the same block
    /// flagged all present, around erasures (their end overlap included)
    /// and for blocks longer than the output delay.
    #[test]
    fn process_good_is_process_without_missing_flags() {
        let x = voiced(4000, 140.0);
        let (mut a, mut b) = (Plc::new(), Plc::new());
        let mut at = 0;
        for (k, len) in [16usize, 16, 7, 45, 16, 16, 16, 3, 16]
            .iter()
            .cycle()
            .enumerate()
        {
            if at + len > x.len() {
                break;
            }
            let lost = k % 11 == 5;
            let mut sa = x[at..at + len].to_vec();
            let mut sb = sa.clone();
            let flags = vec![lost; *len];
            a.process(&mut sa, &flags);
            if lost {
                b.process(&mut sb, &flags);
            } else {
                b.process_good(&mut sb);
            }
            assert_eq!(sa, sb, "block {k} at {at}");
            at += len;
        }
        assert!(a.counters.erasures > 0);
        assert_eq!(a.counters, b.counters);
    }

    #[test]
    fn no_loss_is_the_input_delayed() {
        let x = voiced(2000, 150.0);
        let (y, plc) = run(&x, |_| false);
        assert_eq!(y, x);
        assert_eq!(plc.counters, PlcCounters::default());
    }

    #[test]
    fn pitch_of_periodic_signals_is_found() {
        for period in [40usize, 57, 80, 100, 120] {
            let x = voiced(HISTORY_LEN, 8000.0 / period as f64);
            let mut buf = [0f32; HISTORY_LEN];
            for (b, &v) in buf.iter_mut().zip(&x) {
                *b = v as f32;
            }
            // Any whole number of periods repeats the waveform (the
            // Appendix search may pick 2 periods when both fit).
            let p = find_pitch(&buf);
            let k = (p as f64 / period as f64).round().max(1.0) as usize;
            assert!(p.abs_diff(k * period) <= k, "period {period}: found {p}");
        }
    }

    #[test]
    fn periodic_signal_concealed_closely_for_the_first_10_ms() {
        // Period 64 samples (125 Hz): a 20 ms packet lost at sample 1600.
        let x = voiced(3200, 125.0);
        let (y, plc) = run(&x, |i| (1600..1760).contains(&i));
        let snr = snr_db(&x[1600..1680], &y[1600..1680]);
        assert!(snr > 20.0, "first 10 ms SNR {snr:.1} dB");
        // Second 10 ms: same waveform, attenuated from 1.0 to 0.8.
        let ratio: f64 = y[1680..1760]
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            / x[1680..1760]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>();
        assert!((0.7..0.9).contains(&ratio), "power ratio {ratio}");
        assert_eq!(plc.counters.concealed_samples, 160);
        assert_eq!(plc.counters.erasures, 1);
        assert_eq!(plc.counters.silenced_samples, 0);
    }

    #[test]
    fn no_step_at_either_edge_of_an_erasure() {
        // A pitch that is not a whole number of samples, and losses of
        // different lengths and phases: the largest jump around each edge
        // stays within the signal's own largest jump.
        let x = voiced(8000, 133.3);
        let own = max_step(&x);
        for (start, len) in [(1000usize, 80usize), (2003, 160), (3111, 240), (5005, 480)] {
            let (y, _) = run(&x, |i| (start..start + len).contains(&i));
            for edge in [start, start + len] {
                let w = &y[edge - 40..edge + 40];
                let step = max_step(w);
                assert!(
                    step as f64 <= own as f64 * 1.1,
                    "loss {start}+{len} edge {edge}: step {step} vs own {own}"
                );
            }
        }
    }

    #[test]
    fn silence_by_60_ms_and_counters() {
        let x = voiced(4000, 140.0);
        let (y, plc) = run(&x, |i| (1000..1800).contains(&i));
        // Attenuation: each 10 ms after the first is quieter than the last.
        let pow = |a: usize| {
            y[a..a + 80]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
        };
        for k in 1..5 {
            let (p0, p1) = (pow(1000 + k * 80), pow(1000 + (k + 1) * 80));
            assert!(p1 < p0, "frame {k}: {p1} !< {p0}");
        }
        assert!(y[1000 + 470..1000 + 480].iter().all(|v| v.abs() < 300));
        assert!(y[1480..1800].iter().all(|&v| v == 0), "silent from 60 ms");
        assert_eq!(plc.counters.concealed_samples, 800);
        assert_eq!(plc.counters.silenced_samples, 320);
        assert_eq!(plc.counters.erasures, 1);
        // Audio comes back: faded in over 10 ms, then exact.
        assert_eq!(&y[1880..2000], &x[1880..2000]);
        assert!(max_step(&y[1790..1900]) <= max_step(&x));
    }

    #[test]
    fn missing_before_any_audio_is_silence_and_not_counted() {
        let mut plc = Plc::new();
        let mut buf = [123i16; 8];
        plc.process(&mut buf, &[true; 8]);
        assert_eq!(buf, [0; 8]);
        assert_eq!(plc.counters.concealed_samples, 0);
    }

    #[test]
    fn consecutive_erasures_count_separately() {
        let x = voiced(4000, 110.0);
        let (_, plc) = run(&x, |i| (800..960).contains(&i) || (1200..1210).contains(&i));
        assert_eq!(plc.counters.erasures, 2);
        assert_eq!(plc.counters.concealed_samples, 170);
    }

    #[test]
    fn conceals_the_jitter_buffer_gaps_tick_by_tick() {
        use crate::media::jitter::{JitterBuffer, JitterConfig};
        // 20 ms packets of a voiced signal, every 7th lost, played per E1
        // tick through the jitter buffer and the PLC as the engine does.
        let x = voiced(160 * 70, 118.0);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut plc = Plc::new();
        let mut out = Vec::new();
        for (k, pkt) in x.chunks(160).enumerate() {
            if k % 7 != 3 {
                jb.insert(k as u64 * 160, k as u32 * 160, k == 0, pkt);
            }
            for _ in 0..20 {
                let mut s = [0i16; 8];
                let mut m = [false; 8];
                jb.pull(&mut s, &mut m);
                plc.process(&mut s, &m);
                out.extend_from_slice(&s);
            }
        }
        // 10 packets lost inside the stream (k = 3, 10, ... 66).
        assert_eq!(plc.counters.erasures, 10);
        assert_eq!(plc.counters.concealed_samples, 10 * 160);
        assert_eq!(
            jb.counters.samples_missing,
            10 * 160 + 160,
            "plus the initial depth"
        );
        // Nowhere a step larger than the signal's own (10 % margin).
        let own = max_step(&x);
        let step = max_step(&out[400..]);
        assert!(step as f64 <= own as f64 * 1.1, "{step} vs {own}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics_on_any_pattern(
            samples in proptest::collection::vec(proptest::num::i16::ANY, 1..2000),
            mask in proptest::collection::vec(proptest::bool::ANY, 1..2000),
        ) {
            let mut plc = Plc::new();
            let mut s = samples.clone();
            for (c, m) in s.chunks_mut(8).zip(mask.chunks(8).cycle()) {
                plc.process(c, m);
            }
        }
    }
}
