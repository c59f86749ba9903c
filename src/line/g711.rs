//! ITU-T G.711 A-law and µ-law companding.
//!
//! Contract: pure functions over codes and 16-bit linear samples, no state,
//! no allocation. Decoding goes through 256-entry tables built at compile
//! time; encoding is a few integer operations (segment search by leading
//! zeros), and [`encode_alaw`] (the media thread's per-sample encode) looks
//! the code up in an 8 KiB table of [`linear_to_alaw`] built at compile
//! time (A-law only depends on the top 13 bits). The values are those of the ITU-T G.191 reference tools (and of
//! sox and spandsp): A-law decodes to the 13-bit G.711 decision midpoints
//! shifted left by 3 (±8 ..= ±32256), µ-law to the 14-bit midpoints shifted
//! left by 2 (0 ..= ±32124).
//!
//! Code words are the transmitted octets: A-law with the even bits inverted
//! (G.711 Table 1, note: XOR 0x55, idle 0xD5 = +8), µ-law with all bits
//! inverted (G.711 Table 2, 0xFF = +0, 0x7F = -0).
//!
//! A-law ⇄ µ-law conversion uses G.711 Tables 3 and 4 directly, which differ
//! from a round trip through linear near the segment edges (e.g. µ-law
//! 0x7F..0x70 map onto fewer A-law codes). The tables are the 1994-corrected
//! ones (µ-law position 80 -> A-law 80, A-law position 79 -> µ-law 80).
//!
//! The slice helpers (`decode_alaw`, `encode_alaw`, ...) never allocate and
//! convert `min(src.len(), dst.len())` samples, returning that count.

/// A-law code of positive zero-ish: the idle pattern on an E1 B-channel.
pub const ALAW_IDLE: u8 = 0xD5;
/// µ-law code of positive zero: the idle pattern on a T1 B-channel.
pub const ULAW_IDLE: u8 = 0xFF;

/// µ-law bias (G.711 §3.1: 33 in 14-bit units, 132 = 0x84 in 16-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Largest biased µ-law magnitude in 14-bit units (G.191: `absno` < 8192).
const ULAW_BIASED_MAX: i32 = 0x1FFF;

/// Decode one A-law code to linear (G.711 Table 1, column 7 × 8).
pub const fn alaw_decode_reference(code: u8) -> i16 {
    let a = code ^ 0x55;
    let quant = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    let mag = match seg {
        0 => quant + 8,
        1 => quant + 0x108,
        _ => (quant + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

/// Decode one µ-law code to linear (G.711 Table 2, column 7 × 4).
pub const fn ulaw_decode_reference(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_reference(i as u8)
        } else {
            ulaw_decode_reference(i as u8)
        };
        i += 1;
    }
    t
}

static ALAW_TO_LINEAR: [i16; 256] = build_decode(true);
static ULAW_TO_LINEAR: [i16; 256] = build_decode(false);

/// A-law code to 16-bit linear.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// µ-law code to 16-bit linear.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Segment (0..=7) of a magnitude whose segment 0 ends at `2^(first_bits)-1`,
/// or 8 when above the last segment: the position of the leading one.
#[inline]
const fn segment(mag: i32, first_bits: u32) -> u32 {
    let bits = 32 - (mag as u32).leading_zeros();
    bits.saturating_sub(first_bits)
}

/// 16-bit linear to A-law (G.711 Table 1; G.191 `alaw_compress`): the
/// sample is truncated to 13 bits, negative values are coded as `-x - 1` so
/// that the two halves of the characteristic are symmetrical.
#[inline]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment ends 0x1F, 0x3F, .., 0xFFF: segment 0 holds 5 bits.
    let seg = segment(pcm, 5);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let quant = if seg < 2 { pcm >> 1 } else { pcm >> seg } & 0x0F;
    (((seg << 4) as i32 | quant) as u8) ^ mask
}

/// 16-bit linear to µ-law (G.711 Table 2; G.191 `ulaw_compress`): the
/// magnitude is taken as the one's complement for negative samples (so the
/// characteristic is symmetrical and -1 codes as -0), truncated to 14 bits,
/// biased by 33 and limited to 0x1FFF, then coded as segment and 4 bits.
#[inline]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let s = sample as i32;
    let (mag, mask) = if s < 0 {
        (!s >> 2, 0x7F)
    } else {
        (s >> 2, 0xFF)
    };
    let mut biased = mag + (ULAW_BIAS >> 2);
    if biased > ULAW_BIASED_MAX {
        biased = ULAW_BIASED_MAX;
    }
    // Segment ends 0x3F, 0x7F, .., 0x1FFF: segment 0 holds 6 bits.
    let seg = segment(biased, 6);
    let quant = (biased >> (seg + 1)) & 0x0F;
    (((seg << 4) as i32 | quant) as u8) ^ mask
}

/// G.711 Table 3: µ-law decision value number (1..=128, index = magnitude
/// position 0..=127) to A-law value number (1..=128).
pub const ULAW_TO_ALAW_POSITION: [u8; 128] = [
    1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, //
    9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, //
    25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, //
    46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, //
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, //
    80, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, //
    97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, //
    113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
];

/// G.711 Table 4: A-law value number (index 0..=127) to µ-law value number.
pub const ALAW_TO_ULAW_POSITION: [u8; 128] = [
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, //
    24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35, //
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49, //
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64, //
    65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, //
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, //
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, //
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
];

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut u = 0;
    while u < 256 {
        let code = u as u8;
        // Positive µ-law codes have bit 8 set; the magnitude position is the
        // complement of the low 7 bits. A-law position p is code (p-1)^0x55
        // (negative) or (p-1)^0xD5 (positive).
        t[u] = if code & 0x80 != 0 {
            0xD5 ^ (ULAW_TO_ALAW_POSITION[(0xFF ^ code) as usize] - 1)
        } else {
            0x55 ^ (ULAW_TO_ALAW_POSITION[(0x7F ^ code) as usize] - 1)
        };
        u += 1;
    }
    t
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut a = 0;
    while a < 256 {
        let code = a as u8;
        t[a] = if code & 0x80 != 0 {
            0xFF ^ ALAW_TO_ULAW_POSITION[(code ^ 0xD5) as usize]
        } else {
            0x7F ^ ALAW_TO_ULAW_POSITION[(code ^ 0x55) as usize]
        };
        a += 1;
    }
    t
}

static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// µ-law code to A-law code by G.711 Table 3.
#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[code as usize]
}

/// A-law code to µ-law code by G.711 Table 4.
#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[code as usize]
}

/// Convert a block of A-law codes to µ-law in place.
pub fn alaw_to_ulaw_in_place(buf: &mut [u8]) {
    for c in buf {
        *c = ALAW_TO_ULAW[*c as usize];
    }
}

/// Convert a block of µ-law codes to A-law in place.
pub fn ulaw_to_alaw_in_place(buf: &mut [u8]) {
    for c in buf {
        *c = ULAW_TO_ALAW[*c as usize];
    }
}

/// Decode A-law codes into `dst`; returns the number of samples written.
pub fn decode_alaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = ALAW_TO_LINEAR[*s as usize];
    }
    n
}

/// Decode µ-law codes into `dst`; returns the number of samples written.
pub fn decode_ulaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = ULAW_TO_LINEAR[*s as usize];
    }
    n
}

/// [`linear_to_alaw`] of every 13-bit value (`sample >> 3` as an unsigned
/// index, so negative samples are in the upper half).
static LINEAR13_TO_ALAW: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = linear_to_alaw(((i as u16) << 3) as i16);
        i += 1;
    }
    t
};

/// [`linear_to_alaw`] by table (the same codes; see the module doc).
#[inline]
pub fn linear_to_alaw_fast(sample: i16) -> u8 {
    LINEAR13_TO_ALAW[(sample as u16 >> 3) as usize]
}

/// Encode linear samples to A-law into `dst`; returns the number written.
pub fn encode_alaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = linear_to_alaw_fast(*s);
    }
    n
}

/// Encode linear samples to µ-law into `dst`; returns the number written.
pub fn encode_ulaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = linear_to_ulaw(*s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Codes in increasing order of the value they represent: negative
    /// magnitudes from largest to smallest, then positive ones.
    fn alaw_codes_ascending() -> Vec<u8> {
        // A-law position p (0..=127, 0 = smallest magnitude) has code p^0x55
        // for negative and p^0xD5 for positive values.
        let mut v: Vec<u8> = (0..128u8).rev().map(|p| p ^ 0x55).collect();
        v.extend((0..128u8).map(|p| p ^ 0xD5));
        v
    }

    fn ulaw_codes_ascending() -> Vec<u8> {
        // µ-law negative codes 0x00 (largest) ..= 0x7F (-0), positive 0xFF
        // (+0) down to 0x80 (largest).
        let mut v: Vec<u8> = (0x00..=0x7Fu8).collect();
        v.extend((0x80..=0xFFu8).rev());
        v
    }

    #[test]
    fn alaw_known_points() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        // Segment 1, step 0 (position 16): 0x108 = 264.
        assert_eq!(alaw_to_linear(16 ^ 0xD5), 264);
        // Table 1: position 32 (segment 2 start) decodes to 528.
        assert_eq!(alaw_to_linear(32 ^ 0xD5), 528);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn ulaw_known_points() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        // Segment 1 start: (0x84 << 1) - 0x84 = 132.
        assert_eq!(ulaw_to_linear(!0x10u8), 132);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        // G.191: one's complement magnitude, so -1..=-4 code as -0.
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(-4), 0x7F);
        assert_eq!(linear_to_ulaw(-5), 0x7E);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_round_trip_every_code() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn ulaw_round_trip_every_code() {
        for c in 0..=255u8 {
            // -0 (0x7F) decodes to 0, which encodes as +0 (0xFF).
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), want, "code {c:#04x}");
        }
    }

    #[test]
    fn decode_is_monotonic_and_symmetric() {
        let a = alaw_codes_ascending();
        assert!(
            a.windows(2)
                .all(|w| alaw_to_linear(w[0]) < alaw_to_linear(w[1]))
        );
        let u = ulaw_codes_ascending();
        // Strict except -0 -> +0.
        for w in u.windows(2) {
            let (x, y) = (ulaw_to_linear(w[0]), ulaw_to_linear(w[1]));
            assert!(x < y || (w == [0x7F, 0xFF] && x == y), "{w:?}");
        }
        for c in 0..128u8 {
            assert_eq!(alaw_to_linear(c), -alaw_to_linear(c | 0x80));
            assert_eq!(ulaw_to_linear(c), -ulaw_to_linear(c | 0x80));
        }
    }

    #[test]
    fn encode_is_monotonic_over_all_samples() {
        let rank_a: Vec<usize> = {
            let mut r = vec![0; 256];
            for (i, c) in alaw_codes_ascending().into_iter().enumerate() {
                r[c as usize] = i;
            }
            r
        };
        let mut prev = 0;
        for s in i16::MIN..=i16::MAX {
            let r = rank_a[linear_to_alaw(s) as usize];
            assert!(r >= prev, "sample {s}");
            prev = r;
        }
    }

    #[test]
    fn encode_error_within_half_a_step() {
        // G.711 quantises into intervals whose reconstruction value is the
        // interval midpoint: the error is at most half the step of the
        // segment the code lies in (beyond the last level: overload).
        for s in i16::MIN..=i16::MAX {
            let x = s as i32;
            let a = linear_to_alaw(s);
            let seg = ((a ^ 0x55) & 0x70) >> 4;
            let step = if seg <= 1 { 16 } else { 16 << (seg - 1) };
            let err = (alaw_to_linear(a) as i32 - x).abs();
            assert!(err <= step / 2 || x.abs() > 32256, "A-law {s}: {err}");
            let u = linear_to_ulaw(s);
            let seg = ((!u) & 0x70) >> 4;
            let err = (ulaw_to_linear(u) as i32 - x).abs();
            assert!(err <= (8 << seg) / 2 || x.abs() > 32124, "µ-law {s}: {err}");
        }
    }

    #[test]
    fn alaw_encode_table_is_the_computed_encoder() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_alaw_fast(s), linear_to_alaw(s), "sample {s}");
        }
        let src: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
        let mut out = vec![0u8; src.len()];
        assert_eq!(encode_alaw(&src, &mut out), src.len());
        assert!(src.iter().zip(&out).all(|(&s, &c)| c == linear_to_alaw(s)));
    }

    #[test]
    fn conversion_tables_match_g711_tables_3_and_4() {
        // Spot values of G.711 Table 3 (µ -> A), in value numbers 1..=128.
        assert_eq!(ULAW_TO_ALAW_POSITION[0], 1);
        assert_eq!(ULAW_TO_ALAW_POSITION[1], 1);
        assert_eq!(ULAW_TO_ALAW_POSITION[32], 25);
        assert_eq!(ULAW_TO_ALAW_POSITION[33], 27);
        assert_eq!(ULAW_TO_ALAW_POSITION[48], 46);
        assert_eq!(ULAW_TO_ALAW_POSITION[80], 80);
        assert_eq!(ULAW_TO_ALAW_POSITION[81], 82);
        assert_eq!(ULAW_TO_ALAW_POSITION[127], 128);
        // Table 4 (A -> µ).
        assert_eq!(ALAW_TO_ULAW_POSITION[0], 1);
        assert_eq!(ALAW_TO_ULAW_POSITION[7], 15);
        assert_eq!(ALAW_TO_ULAW_POSITION[24], 32);
        assert_eq!(ALAW_TO_ULAW_POSITION[25], 32);
        assert_eq!(ALAW_TO_ULAW_POSITION[79], 80);
        assert_eq!(ALAW_TO_ULAW_POSITION[80], 80);
        assert_eq!(ALAW_TO_ULAW_POSITION[127], 127);
        // Both tables are non-decreasing.
        assert!(ULAW_TO_ALAW_POSITION.windows(2).all(|w| w[0] <= w[1]));
        assert!(ALAW_TO_ULAW_POSITION.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn conversion_codes() {
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5);
        assert_eq!(ulaw_to_alaw(0x7F), 0x55);
        assert_eq!(alaw_to_ulaw(0xD5), 0xFE);
        assert_eq!(alaw_to_ulaw(0x55), 0x7E);
        assert_eq!(ulaw_to_alaw(0x80), 0xAA);
        assert_eq!(alaw_to_ulaw(0xAA), 0x80);
        for c in 0..=255u8 {
            // Sign is kept.
            assert_eq!(ulaw_to_alaw(c) & 0x80, c & 0x80);
            assert_eq!(alaw_to_ulaw(c) & 0x80, c & 0x80);
            // The tables stay within one quantisation step of the linear
            // value (the largest A-law step is 1024, µ-law 1024).
            let d = (ulaw_to_linear(c) as i32 - alaw_to_linear(ulaw_to_alaw(c)) as i32).abs();
            assert!(d <= 1024, "µ {c:#04x}: {d}");
            let d = (alaw_to_linear(c) as i32 - ulaw_to_linear(alaw_to_ulaw(c)) as i32).abs();
            assert!(d <= 1024, "A {c:#04x}: {d}");
        }
        // A -> µ -> A is the identity for codes that Table 4 does not merge.
        let mut kept = 0;
        for c in 0..=255u8 {
            if ulaw_to_alaw(alaw_to_ulaw(c)) == c {
                kept += 1;
            }
        }
        assert!(kept >= 200, "{kept}");
    }

    #[test]
    fn slice_helpers() {
        let codes: Vec<u8> = (0..=255).collect();
        let mut lin = [0i16; 256];
        assert_eq!(decode_alaw(&codes, &mut lin), 256);
        let mut back = [0u8; 256];
        assert_eq!(encode_alaw(&lin, &mut back), 256);
        assert_eq!(&back[..], &codes[..]);
        assert_eq!(decode_ulaw(&codes, &mut lin[..10]), 10);
        assert_eq!(lin[0], -32124);
        assert_eq!(encode_ulaw(&lin[..3], &mut back), 3);
        assert_eq!(back[0], 0x00);
        let mut buf = codes.clone();
        alaw_to_ulaw_in_place(&mut buf);
        assert!(buf.iter().zip(&codes).all(|(u, a)| *u == alaw_to_ulaw(*a)));
        ulaw_to_alaw_in_place(&mut buf);
        assert!(
            buf.iter()
                .zip(&codes)
                .all(|(x, a)| *x == ulaw_to_alaw(alaw_to_ulaw(*a)))
        );
    }

    proptest! {
        #[test]
        fn prop_encode_decode_stable(s: i16) {
            // Re-encoding a decoded sample gives back the same code.
            let a = linear_to_alaw(s);
            prop_assert_eq!(linear_to_alaw(alaw_to_linear(a)), a);
            let u = linear_to_ulaw(s);
            let u2 = linear_to_ulaw(ulaw_to_linear(u));
            prop_assert!(u2 == u || (u == 0x7F && u2 == 0xFF));
        }
    }
}
