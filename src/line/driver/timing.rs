//! Line timing for the raw-E1 drivers (DESIGN.md §5: transmit follows
//! receive; with no signal, free-run on our own clock).

/// Who clocks what a raw driver sends (board profile key `timing`:
/// `"loop"` or `"internal"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    /// Loop timing (the default): one unit out per unit received; our own
    /// timer only free-runs while nothing arrives. The far end must have a
    /// clock (the exchange, a TDM-over-IP gateway on its E1).
    #[default]
    Loop,
    /// Our own timer clocks everything we send; what arrives only fills
    /// the receive side. For the end that is the clock master (simulated
    /// exchange, a test peer, two tdmgw facing each other: one of them).
    Internal,
}

/// Caps loop-timed sending at our clock + 1/1024 (~0.1 %, far above the
/// ±50 ppm of G.703 E1 clocks) with bursts of `burst` units: a far end that
/// sends faster than any E1 clock (or two loop-timed ends bouncing packets
/// between them, which have no clock at all) cannot make us spin.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Credit is kept in 1/1024 µs so that the 1025/1024 refill rate is
    /// exact however often it is refilled.
    unit: u64,
    cap: u64,
    credit: u64,
    at_us: u64,
}

/// Refill rate: 1025/1024 of our clock.
const SCALE: u64 = 1024;

impl Pacer {
    /// Starts full: `burst` units may go at once.
    pub fn new(unit_us: u64, burst: u64, now_us: u64) -> Pacer {
        let cap = unit_us * SCALE * burst.max(1);
        Pacer {
            unit: unit_us * SCALE,
            cap,
            credit: cap,
            at_us: now_us,
        }
    }

    fn refill(&mut self, now_us: u64) {
        let elapsed = now_us.saturating_sub(self.at_us);
        self.at_us = self.at_us.max(now_us);
        self.credit = (self.credit + elapsed * (SCALE + 1)).min(self.cap);
    }

    /// Takes one unit of credit if there is one.
    pub fn take(&mut self, now_us: u64) -> bool {
        self.refill(now_us);
        if self.credit < self.unit {
            return false;
        }
        self.credit -= self.unit;
        true
    }

    /// When one unit of credit will be there again (now if it is).
    pub fn ready_at(&self) -> u64 {
        let missing = self.unit.saturating_sub(self.credit);
        self.at_us + missing.div_ceil(SCALE + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_allows_a_burst_then_the_clock_rate() {
        let mut p = Pacer::new(1000, 4, 0);
        for _ in 0..4 {
            assert!(p.take(0));
        }
        assert!(!p.take(0));
        assert_eq!(p.ready_at(), 1000);
        assert!(!p.take(990));
        assert!(p.take(1000));
        // Over 1000 units the rate stays within 0.1 % of the clock.
        let mut sent = 0;
        for t in 0..1_000_000u64 {
            if p.take(1000 + t) {
                sent += 1;
            }
        }
        assert!((1000..=1002).contains(&sent), "{sent}");
    }
}
