//! Modulo-128 sequence arithmetic for N(S), N(R), V(S), V(A), V(R)
//! (Q.921 §3.5.2: "the sequence numbers cycle through the entire range
//! 0 through 127").

/// `(a + n) mod 128`.
pub fn add(a: u8, n: u8) -> u8 {
    (a.wrapping_add(n)) & 0x7F
}

/// `(a + 1) mod 128`.
pub fn next(a: u8) -> u8 {
    add(a, 1)
}

/// `(a - 1) mod 128`.
pub fn prev(a: u8) -> u8 {
    a.wrapping_sub(1) & 0x7F
}

/// `(a - b) mod 128`: how far `a` is ahead of `b`.
pub fn diff(a: u8, b: u8) -> u8 {
    a.wrapping_sub(b) & 0x7F
}

/// Q.921 §5.8.2: N(R) is valid when `V(A) <= N(R) <= V(S)` in modulo-128
/// order, i.e. it acknowledges nothing beyond what was sent.
pub fn nr_valid(va: u8, nr: u8, vs: u8) -> bool {
    diff(nr, va) <= diff(vs, va)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_128() {
        assert_eq!(next(127), 0);
        assert_eq!(prev(0), 127);
        assert_eq!(add(125, 7), 4);
        assert_eq!(diff(4, 125), 7);
        assert_eq!(diff(125, 4), 121);
        assert_eq!(diff(9, 9), 0);
    }

    #[test]
    fn nr_window_across_the_wrap() {
        // V(A) = 124, V(S) = 3: outstanding 124..=2.
        assert!(nr_valid(124, 124, 3));
        assert!(nr_valid(124, 127, 3));
        assert!(nr_valid(124, 0, 3));
        assert!(nr_valid(124, 3, 3));
        assert!(!nr_valid(124, 4, 3));
        assert!(!nr_valid(124, 123, 3));
        // Nothing outstanding: only N(R) = V(S) is valid.
        assert!(nr_valid(10, 10, 10));
        assert!(!nr_valid(10, 11, 10));
    }

    #[test]
    fn exhaustive_against_integer_model() {
        for va in 0..128u16 {
            for out in 0..8u16 {
                let vs = ((va + out) % 128) as u8;
                for nr in 0..128u16 {
                    let ahead = (nr + 128 - va) % 128;
                    assert_eq!(nr_valid(va as u8, nr as u8, vs), ahead <= out);
                }
            }
        }
    }
}
