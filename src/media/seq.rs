//! RTP sequence-number and timestamp arithmetic (RFC 3550 Appendix A).
//!
//! Small named helpers, each citing the formula it implements, so that the
//! jitter buffer, the receiver statistics and RTCP all do wrap-around the same
//! way. Nothing here allocates.

/// RFC 3550 A.1: `RTP_SEQ_MOD = 1 << 16`.
pub const RTP_SEQ_MOD: u64 = 1 << 16;
/// RFC 3550 A.1: a jump forward larger than this is a restart or an error.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a jump backward larger than this is a restart or an error.
pub const MAX_MISORDER: u16 = 100;

/// Extends a 16-bit sequence number to 64 bits, choosing the value nearest to
/// `reference` (an already-extended number). RFC 3550 A.1 counts wraps with a
/// cycle counter; this is the same idea for any packet, including reordered
/// ones arriving just before or after a wrap.
pub fn extend_seq(reference: u64, seq: u16) -> u64 {
    let delta = seq.wrapping_sub(reference as u16) as i16 as i64;
    (reference as i64 + delta).max(0) as u64
}

/// Extends a 32-bit RTP timestamp to 64 bits, nearest to `reference`
/// (RFC 3550 §5.1: the timestamp wraps modulo 2^32).
pub fn extend_ts(reference: u64, ts: u32) -> u64 {
    let delta = ts.wrapping_sub(reference as u32) as i32 as i64;
    (reference as i64 + delta).max(0) as u64
}

/// `a - b` on the 16-bit sequence circle, as a signed distance.
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// `a - b` on the 32-bit timestamp circle, as a signed distance.
pub fn ts_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Outcome of [`SourceSeq::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence or within the reorder window: use it.
    Valid,
    /// Still on probation (RFC 3550 A.1 `MIN_SEQUENTIAL`): not yet valid.
    Probation,
    /// A very large jump; a second sequential packet after it restarts the
    /// source (A.1 "two sequential packets -- assume that the other side
    /// restarted without telling us").
    BadJump,
}

/// Per-source sequence state of RFC 3550 A.1 (`source` struct and
/// `update_seq`), plus the A.3 interval counters for RTCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceSeq {
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 2^16).
    cycles: u64,
    base_seq: u64,
    bad_seq: u64,
    probation: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl SourceSeq {
    /// A.1 `init_seq` after the first packet of a source, with `min_sequential`
    /// packets of probation (A.1 uses 2; a gateway carrying 999 calls uses 1 so
    /// the first packet is already heard, latching decides trust instead).
    pub fn new(seq: u16, min_sequential: u32) -> Self {
        let mut s = SourceSeq::default();
        s.init(seq);
        s.max_seq = seq.wrapping_sub(1);
        s.probation = min_sequential;
        s
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = seq as u64;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`, transcribed.
    pub fn update(&mut self, seq: u16, min_sequential: u32) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return SeqVerdict::Valid;
                }
            } else {
                self.probation = min_sequential.saturating_sub(1);
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        } else if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD;
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD as u32 - MAX_MISORDER as u32 {
            // The sequence number made a very large jump.
            if seq as u64 == self.bad_seq {
                self.init(seq);
            } else {
                self.bad_seq = (seq as u64 + 1) & (RTP_SEQ_MOD - 1);
                return SeqVerdict::BadJump;
            }
        }
        // else: duplicate or reordered packet.
        self.received += 1;
        SeqVerdict::Valid
    }

    /// The extended highest sequence number received (A.1: `cycles + max_seq`).
    pub fn extended_max(&self) -> u64 {
        self.cycles + self.max_seq as u64
    }

    /// Packets received (duplicates included, as A.3 notes).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// A.3: `expected = extended_max - base_seq + 1`.
    pub fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    /// A.3 cumulative number of packets lost, clamped to the signed 24-bit
    /// field of a report block (RFC 3550 §6.4.1).
    pub fn cumulative_lost(&self) -> i32 {
        let lost = self.expected() as i64 - self.received as i64;
        lost.clamp(-0x80_0000, 0x7F_FFFF) as i32
    }

    /// A.3 fraction lost since the previous call, in 1/256 units, and
    /// advances the interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        }
    }
}

/// RFC 3550 A.8 interarrival jitter estimator, in RTP timestamp units.
///
/// Arrival times are given in the same units as the RTP timestamp (8 kHz
/// samples of the E1 clock), so no conversion is needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    /// Jitter scaled by 16 (the A.8 integer form).
    jitter_q4: u32,
    transit_prev: Option<i64>,
}

impl Jitter {
    /// A.8: `transit = arrival - r->ts; d = |transit - transit_prev|;
    /// jitter += (1/16) * (d - jitter)`, in the integer form
    /// `jitter += d - ((jitter + 8) >> 4)`.
    pub fn update(&mut self, arrival: u64, rtp_ts: u32) {
        let transit = (arrival as u32).wrapping_sub(rtp_ts) as i32 as i64;
        if let Some(prev) = self.transit_prev {
            let d = (transit - prev).unsigned_abs().min(u32::MAX as u64 >> 5) as u32;
            self.jitter_q4 = self
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
        self.transit_prev = Some(transit);
    }

    /// The current estimate in timestamp units (the report block value).
    pub fn value(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Forgets the previous transit time (new source or SSRC).
    pub fn reset(&mut self) {
        *self = Jitter::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_seq_across_wrap_both_ways() {
        assert_eq!(extend_seq(0xFFFF, 0x0000), 0x1_0000);
        assert_eq!(extend_seq(0x1_0000, 0xFFFF), 0xFFFF);
        assert_eq!(extend_seq(0x1_0005, 0x0003), 0x1_0003);
        assert_eq!(extend_seq(5, 0xFFFE), 0, "never below zero");
        assert_eq!(seq_diff(0x0001, 0xFFFF), 2);
        assert_eq!(seq_diff(0xFFFF, 0x0001), -2);
    }

    #[test]
    fn extend_ts_across_wrap() {
        assert_eq!(extend_ts(0xFFFF_FF60, 0x0000_0000), 0x1_0000_0000);
        assert_eq!(extend_ts(0x1_0000_0000, 0xFFFF_FF60), 0xFFFF_FF60);
        assert_eq!(ts_diff(80, 0xFFFF_FFB0), 160);
    }

    #[test]
    fn update_seq_counts_cycles_at_wrap() {
        let mut s = SourceSeq::new(0xFFFD, 1);
        for seq in [0xFFFDu16, 0xFFFE, 0xFFFF, 0x0000, 0x0001] {
            assert_eq!(s.update(seq, 1), SeqVerdict::Valid);
        }
        assert_eq!(s.extended_max(), 0x1_0001);
        assert_eq!(s.expected(), 5);
        assert_eq!(s.cumulative_lost(), 0);
    }

    #[test]
    fn update_seq_probation_of_two_as_in_a1() {
        let mut s = SourceSeq::new(100, 2);
        assert_eq!(s.update(100, 2), SeqVerdict::Probation);
        assert_eq!(s.update(101, 2), SeqVerdict::Valid);
        assert_eq!(s.received(), 1);
    }

    #[test]
    fn update_seq_large_jump_then_restart() {
        let mut s = SourceSeq::new(10, 1);
        assert_eq!(s.update(10, 1), SeqVerdict::Valid);
        assert_eq!(s.update(20_000, 1), SeqVerdict::BadJump);
        // A.1: the next sequential packet confirms a restart.
        assert_eq!(s.update(20_001, 1), SeqVerdict::Valid);
        assert_eq!(s.extended_max(), 20_001);
        assert_eq!(s.expected(), 1);
    }

    #[test]
    fn loss_counters_per_a3() {
        let mut s = SourceSeq::new(0, 1);
        for seq in 0u16..100 {
            if seq % 10 != 3 {
                s.update(seq, 1);
            }
        }
        assert_eq!(s.expected(), 100);
        assert_eq!(s.cumulative_lost(), 10);
        // 10 of 100 lost: 10 * 256 / 100 = 25.
        assert_eq!(s.take_fraction_lost(), 25);
        assert_eq!(s.take_fraction_lost(), 0, "new interval is empty");
    }

    #[test]
    fn duplicates_make_loss_negative_as_a3_allows() {
        let mut s = SourceSeq::new(0, 1);
        for seq in [0u16, 1, 1, 2] {
            s.update(seq, 1);
        }
        assert_eq!(s.cumulative_lost(), -1);
        assert_eq!(s.take_fraction_lost(), 0);
    }

    #[test]
    fn jitter_of_steady_stream_is_zero_and_of_alternating_is_d() {
        let mut j = Jitter::default();
        for i in 0..50u64 {
            j.update(1000 + i * 160, (i * 160) as u32);
        }
        assert_eq!(j.value(), 0);
        // Alternate 40 samples late and on time: |D| = 40 each packet, the
        // estimate converges to 40 (A.8 with a constant |D|).
        let mut j = Jitter::default();
        for i in 0..500u64 {
            let late = if i % 2 == 1 { 40 } else { 0 };
            j.update(1000 + i * 160 + late, (i * 160) as u32);
        }
        assert!((38..=40).contains(&j.value()), "{}", j.value());
    }

    #[test]
    fn jitter_survives_timestamp_wrap() {
        let mut j = Jitter::default();
        let base = 0xFFFF_FF00u32;
        for i in 0..10u32 {
            j.update(5_000 + i as u64 * 160, base.wrapping_add(i * 160));
        }
        assert_eq!(j.value(), 0);
    }
}
