//! Tone generator: call-progress tones with cadences and DTMF digits, into
//! 16-bit linear samples at 8 kHz, without allocation.
//!
//! # Contract
//! [`ToneGenerator::fill`] writes the next `out.len()` samples; phase and
//! cadence position are continuous across calls, so any block size (an E1
//! frame of 8, an RTP packet of 160) gives the same signal. Cadence steps are
//! exact sample counts.
//!
//! Levels: [`DBM0_PEAK`] is the 0 dBm0 sine amplitude (G.711 full scale is
//! +3.14 dBm0). UK defaults (BT SIN 350 style): ringback 400+450 Hz at
//! -19 dBm0 per tone, busy / congestion / number unobtainable 400 Hz at
//! -11 dBm0. DTMF: low (row) group -7 dBm0, high (column) group -5 dBm0
//! (2 dB high-group pre-emphasis, within the 4 dB reverse twist limit).

pub use super::dtmf::DBM0_PEAK;
use super::dtmf::{COL_HZ, ROW_HZ, digit_position};

/// DTMF low (row) group level, dBm0.
pub const DTMF_LOW_DBM0: f32 = -7.0;
/// DTMF high (column) group level, dBm0.
pub const DTMF_HIGH_DBM0: f32 = -5.0;

/// One cadence step: tone on or off for an exact number of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CadenceStep {
    pub on: bool,
    pub samples: u32,
}

impl CadenceStep {
    /// On for `ms` milliseconds (8 samples per ms).
    pub const fn on_ms(ms: u32) -> Self {
        Self {
            on: true,
            samples: ms * 8,
        }
    }
    /// Off for `ms` milliseconds.
    pub const fn off_ms(ms: u32) -> Self {
        Self {
            on: false,
            samples: ms * 8,
        }
    }
}

const OFF: CadenceStep = CadenceStep {
    on: false,
    samples: 0,
};

/// A tone: up to 2 frequencies (0 Hz = unused), their levels, and up to 4
/// cadence steps repeated forever (`n_steps == 0`: continuous).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSpec {
    pub freqs_hz: [f32; 2],
    pub levels_dbm0: [f32; 2],
    pub cadence: [CadenceStep; 4],
    pub n_steps: usize,
}

impl ToneSpec {
    /// UK ringback: 400+450 Hz, 0.4 on 0.2 off 0.4 on 2.0 off.
    pub const UK_RINGBACK: ToneSpec = ToneSpec {
        freqs_hz: [400.0, 450.0],
        levels_dbm0: [-19.0, -19.0],
        cadence: [
            CadenceStep::on_ms(400),
            CadenceStep::off_ms(200),
            CadenceStep::on_ms(400),
            CadenceStep::off_ms(2000),
        ],
        n_steps: 4,
    };
    /// UK busy: 400 Hz, 0.375 on 0.375 off.
    pub const UK_BUSY: ToneSpec = ToneSpec {
        freqs_hz: [400.0, 0.0],
        levels_dbm0: [-11.0, -99.0],
        cadence: [CadenceStep::on_ms(375), CadenceStep::off_ms(375), OFF, OFF],
        n_steps: 2,
    };
    /// UK congestion: 400 Hz, 0.4 on 0.35 off 0.225 on 0.525 off.
    pub const UK_CONGESTION: ToneSpec = ToneSpec {
        freqs_hz: [400.0, 0.0],
        levels_dbm0: [-11.0, -99.0],
        cadence: [
            CadenceStep::on_ms(400),
            CadenceStep::off_ms(350),
            CadenceStep::on_ms(225),
            CadenceStep::off_ms(525),
        ],
        n_steps: 4,
    };
    /// UK number unobtainable: 400 Hz continuous.
    pub const UK_NUMBER_UNOBTAINABLE: ToneSpec = ToneSpec {
        freqs_hz: [400.0, 0.0],
        levels_dbm0: [-11.0, -99.0],
        cadence: [OFF; 4],
        n_steps: 0,
    };

    /// Continuous DTMF tone for an ASCII digit (`0-9 * # A-D`).
    pub fn dtmf(digit: u8) -> Option<ToneSpec> {
        let (r, c) = digit_position(digit)?;
        Some(ToneSpec {
            freqs_hz: [ROW_HZ[r], COL_HZ[c]],
            levels_dbm0: [DTMF_LOW_DBM0, DTMF_HIGH_DBM0],
            cadence: [OFF; 4],
            n_steps: 0,
        })
    }

    /// DTMF digit `on_ms` on then `off_ms` off, repeated.
    pub fn dtmf_burst(digit: u8, on_ms: u32, off_ms: u32) -> Option<ToneSpec> {
        let mut s = Self::dtmf(digit)?;
        s.cadence[0] = CadenceStep::on_ms(on_ms);
        s.cadence[1] = CadenceStep::off_ms(off_ms);
        s.n_steps = 2;
        Some(s)
    }
}

/// Generates a [`ToneSpec`]; see the module doc.
pub struct ToneGenerator {
    spec: ToneSpec,
    amp: [f32; 2],
    step_cycles: [f64; 2],
    phase: [f64; 2],
    step: usize,
    left: u32,
}

impl ToneGenerator {
    /// A generator at the start of the first cadence step, phase 0.
    pub fn new(spec: ToneSpec) -> Self {
        let mut amp = [0.0; 2];
        let mut step_cycles = [0.0; 2];
        for i in 0..2 {
            if spec.freqs_hz[i] > 0.0 {
                amp[i] = DBM0_PEAK * 10f32.powf(spec.levels_dbm0[i] / 20.0);
                step_cycles[i] = spec.freqs_hz[i] as f64 / 8000.0;
            }
        }
        let n = spec.n_steps.min(4);
        let spec = ToneSpec { n_steps: n, ..spec };
        let left = if n == 0 { 0 } else { spec.cadence[0].samples };
        Self {
            spec,
            amp,
            step_cycles,
            phase: [0.0; 2],
            step: 0,
            left,
        }
    }

    fn is_on(&mut self) -> bool {
        if self.spec.n_steps == 0 {
            return true;
        }
        // Skip zero-length steps (bounded: at most n_steps tries).
        let mut tries = 0;
        while self.left == 0 && tries <= self.spec.n_steps {
            self.step = (self.step + 1) % self.spec.n_steps;
            self.left = self.spec.cadence[self.step].samples;
            tries += 1;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.spec.cadence[self.step].on
    }

    /// Write the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out.iter_mut() {
            let on = self.is_on();
            let mut v = 0.0f32;
            for i in 0..2 {
                if on {
                    v += self.amp[i] * (self.phase[i] * core::f64::consts::TAU).sin() as f32;
                }
                self.phase[i] = (self.phase[i] + self.step_cycles[i]).fract();
            }
            *o = v.clamp(-32768.0, 32767.0) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::{DtmfDetector, DtmfEvent};

    /// Power at `f` Hz (Goertzel over the whole slice), normalised so a
    /// sine of amplitude A at `f` reads A^2/2.
    fn goertzel(x: &[i16], f: f64) -> f64 {
        let c = 2.0 * (core::f64::consts::TAU * f / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = v as f64 + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let n = x.len() as f64;
        2.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * n)
    }

    fn gen_in_chunks(spec: ToneSpec, n: usize, chunk: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(spec);
        let mut v = vec![0i16; n];
        for c in v.chunks_mut(chunk) {
            g.fill(c);
        }
        v
    }

    /// (on, length) runs of non-zero / zero samples.
    fn runs(v: &[i16]) -> Vec<(bool, usize)> {
        let mut out: Vec<(bool, usize)> = Vec::new();
        let mut i = 0;
        while i < v.len() {
            // A sine can hit 0 on a sample: look 3 samples ahead for "on".
            let on = v[i..(i + 3).min(v.len())].iter().any(|&x| x != 0);
            match out.last_mut() {
                Some((o, n)) if *o == on => *n += 1,
                _ => out.push((on, 1)),
            }
            i += 1;
        }
        out
    }

    #[test]
    fn cadences_exact_in_samples() {
        let cases = [
            (ToneSpec::UK_RINGBACK, vec![3200, 1600, 3200, 16000]),
            (ToneSpec::UK_BUSY, vec![3000, 3000]),
            (ToneSpec::UK_CONGESTION, vec![3200, 2800, 1800, 4200]),
        ];
        for (spec, steps) in cases {
            let period: usize = steps.iter().sum();
            let v = gen_in_chunks(spec, 2 * period, 7);
            let r = runs(&v);
            let mut want = Vec::new();
            for _ in 0..2 {
                for (i, &s) in steps.iter().enumerate() {
                    want.push((i % 2 == 0, s));
                }
            }
            // The "look ahead" shifts each on/off edge by up to 2 samples.
            assert_eq!(r.len(), want.len(), "{r:?}");
            for ((on, n), (won, wn)) in r.iter().zip(&want) {
                assert_eq!(on, won);
                assert!(n.abs_diff(*wn) <= 2, "{n} vs {wn}");
            }
        }
        // Exact: busy is on up to sample 2999, samples 3000..6000 are all zero.
        let v = gen_in_chunks(ToneSpec::UK_BUSY, 6001, 8);
        assert!(v[3000..6000].iter().all(|&x| x == 0));
        assert!(v[2990..3000].iter().any(|&x| x != 0));
        let nu = gen_in_chunks(ToneSpec::UK_NUMBER_UNOBTAINABLE, 8000, 160);
        assert!(runs(&nu) == vec![(true, 8000)]);
    }

    #[test]
    fn frequencies_and_levels() {
        // 400+450 Hz ringback, first 0.4 s burst.
        let v = gen_in_chunks(ToneSpec::UK_RINGBACK, 3200, 8);
        let want = (DBM0_PEAK as f64 * 10f64.powf(-19.0 / 20.0)).powi(2) / 2.0;
        for f in [400.0, 450.0] {
            let p = goertzel(&v, f);
            assert!((p / want - 1.0).abs() < 0.05, "{f}: {p} vs {want}");
        }
        for f in [350.0, 425.0, 500.0, 800.0] {
            assert!(goertzel(&v, f) < want * 0.01, "{f}");
        }
        // Busy 400 Hz by zero crossings over the 375 ms burst.
        let v = gen_in_chunks(ToneSpec::UK_BUSY, 3000, 8);
        let zc = v.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((299..=301).contains(&zc), "{zc}"); // 2 x 400 x 0.375
        // DTMF levels: -7 / -5 dBm0.
        let v = gen_in_chunks(ToneSpec::dtmf(b'5').unwrap(), 8000, 8);
        let lo = (DBM0_PEAK as f64 * 10f64.powf(-7.0 / 20.0)).powi(2) / 2.0;
        let hi = (DBM0_PEAK as f64 * 10f64.powf(-5.0 / 20.0)).powi(2) / 2.0;
        assert!((goertzel(&v, 770.0) / lo - 1.0).abs() < 0.02);
        assert!((goertzel(&v, 1336.0) / hi - 1.0).abs() < 0.02);
    }

    #[test]
    fn phase_continuous_across_calls() {
        let a = gen_in_chunks(ToneSpec::UK_RINGBACK, 30_000, 30_000);
        for chunk in [1, 8, 160, 333] {
            assert_eq!(gen_in_chunks(ToneSpec::UK_RINGBACK, 30_000, chunk), a);
        }
    }

    #[test]
    fn detector_detects_every_generated_digit() {
        let digits = b"0123456789*#ABCD";
        let mut det = DtmfDetector::new();
        let mut got = Vec::new();
        let mut buf = [0i16; 8];
        for &d in digits {
            // 50 ms on, 50 ms off, generated per E1 frame.
            let mut g = ToneGenerator::new(ToneSpec::dtmf_burst(d, 50, 50).unwrap());
            for _ in 0..100 {
                g.fill(&mut buf);
                let mut off = 0;
                while off < buf.len() {
                    off += det.handle_samples(&buf[off..]);
                    while let Some(e) = det.poll_event() {
                        if let DtmfEvent::DigitStart { digit, .. } = e {
                            got.push(digit);
                        }
                    }
                }
            }
        }
        assert_eq!(got, digits.to_vec());
        assert_eq!(ToneSpec::dtmf(b'x'), None);
    }
}
