//! The CE-bound playout (jitter) buffer of RFC 4553 §6.2.2, sans-IO.
//!
//! Fixed capacity: `2 × depth` slots of one payload each, allocated by
//! [`PlayoutBuffer::new`], indexed by sequence number relative to the slot
//! that plays next (so nothing depends on the capacity dividing 2^16).
//!
//! - **Intermediate state** (RFC 4553 §6.2.2): until the first packet, every
//!   play is the all-ones pattern. The first packet *primes* the buffer: it
//!   is placed `depth - 1` slots after the play position, so it plays out
//!   on the `depth`-th play after its arrival and up to `depth - 1` packets
//!   of reordering or delay are absorbed (the RFC's "half of the jitter
//!   buffer" before play-out starts).
//! - **Normal state**: packets are stored by sequence number; duplicates and
//!   packets behind the play position ("late": misordered beyond repair,
//!   RFC 4553 §6.2.2 discards them as lost) are counted and dropped. A
//!   packet too far ahead to fit is a buffer overrun (§6.3): the play
//!   position skips forward so that it lands `depth - 1` slots ahead again
//!   (a controlled slip; the skipped slots are dropped).
//! - Each [`PlayoutBuffer::play`] yields one payload: the packet's, or all
//!   ones (AIS) for a packet sent with L, a missing (lost) packet, or an
//!   underrun (§6.2.2: "the payload of each lost SAToP packet MUST be
//!   replaced with ... the all ones pattern"). An underrun (nothing at or
//!   after the play position has arrived) returns the buffer to the
//!   intermediate state, so the next packet primes it again.
//! - `capacity` packets in a row that are all late (the sender restarted its
//!   sequence, or we free-ran far ahead of it) re-prime the buffer.

/// `a - b` on the 16-bit sequence circle (RFC 3550 §5.1 / RFC 1982 serial
/// arithmetic): positive when `a` is after `b`, valid within ±2^15.
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// `a + n` on the 16-bit sequence circle.
pub fn seq_add(a: u16, n: i32) -> u16 {
    (i32::from(a) + n) as u16
}

/// The all-ones replacement pattern (RFC 4553 §6.2.2: AIS on the E1).
pub const AIS_OCTET: u8 = 0xFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Data,
    /// Received with L set: played as all ones (RFC 4553 §4.3.1).
    Ais,
}

/// What [`PlayoutBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored in order.
    Stored,
    /// Stored, but after a packet with a higher sequence number.
    Reordered,
    /// The first packet since start or an underrun: the buffer is primed.
    Primed,
    /// Already in the buffer: dropped.
    Duplicate,
    /// Behind the play position: dropped (counted as late).
    Late,
    /// Too far ahead: the play position skipped forward, then stored.
    Overrun,
    /// Too many late packets in a row: the buffer was re-primed on this one.
    Resync,
}

/// What one [`PlayoutBuffer::play`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    /// A received payload.
    Data,
    /// All ones for a packet received with L set.
    LBit,
    /// All ones for a packet that did not arrive although later ones did.
    Missing,
    /// All ones: nothing at or after this position has arrived.
    Underrun,
    /// All ones in the intermediate state (before the first packet, and the
    /// slots ahead of it after priming).
    Idle,
}

/// Counters of the playout buffer (RFC 4553 §6.4; the RFC 5604 PW-TDM-MIB
/// object each matches in parentheses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Packets stored for play-out.
    pub stored: u64,
    /// Stored after a later packet (successfully reordered) (pwTDMPerfCurrentPktsReOrder).
    pub reordered: u64,
    /// Already buffered: dropped.
    pub duplicates: u64,
    /// Arrived after their slot was played or skipped (pwTDMPerfCurrentMisOrderDropped).
    pub late: u64,
    /// Slots played as all ones because their packet was missing
    /// (pwTDMPerfCurrentMissingPkts).
    pub missing: u64,
    /// Plays with the buffer empty (pwTDMPerfCurrentJtrBfrUnderruns).
    pub underruns: u64,
    /// Packets that did not fit ahead of the play position.
    pub overruns: u64,
    /// Buffered packets dropped by overrun skips.
    pub overrun_dropped: u64,
    /// Re-primes after a run of late packets.
    pub resyncs: u64,
    /// Primes (first packet, and after each underrun or resync).
    pub primes: u64,
    /// Plays of received data, of L-bit packets, and of idle all-ones.
    pub played_data: u64,
    pub played_l_bit: u64,
    pub played_idle: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u16,
    state: SlotState,
}

/// See the module doc.
pub struct PlayoutBuffer {
    payload_octets: usize,
    depth: u16,
    capacity: u16,
    octets: Vec<u8>,
    slots: Vec<Slot>,
    primed: bool,
    /// Sequence number of the next slot to play, and its index.
    head: u16,
    head_slot: usize,
    /// Highest sequence number stored since priming.
    highest: u16,
    /// The packet that primed the buffer: slots before it are idle fill.
    start_seq: u16,
    consecutive_late: u16,
    stats: PlayoutStats,
}

impl std::fmt::Debug for PlayoutBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayoutBuffer")
            .field("depth", &self.depth)
            .field("capacity", &self.capacity)
            .field("primed", &self.primed)
            .field("head", &self.head)
            .field("highest", &self.highest)
            .field("stats", &self.stats)
            .finish()
    }
}

impl PlayoutBuffer {
    /// A buffer for payloads of `payload_octets` that delays play-out by
    /// `depth` packets (at least 1) and holds `2 × depth`. Allocates here
    /// and nowhere else.
    pub fn new(payload_octets: usize, depth: u16) -> PlayoutBuffer {
        let depth = depth.clamp(1, i16::MAX as u16 / 2);
        let capacity = depth * 2;
        PlayoutBuffer {
            payload_octets,
            depth,
            capacity,
            octets: vec![AIS_OCTET; payload_octets * usize::from(capacity)],
            slots: vec![
                Slot {
                    seq: 0,
                    state: SlotState::Empty,
                };
                usize::from(capacity)
            ],
            primed: false,
            head: 0,
            head_slot: 0,
            highest: 0,
            start_seq: 0,
            consecutive_late: 0,
            stats: PlayoutStats::default(),
        }
    }

    pub fn depth(&self) -> u16 {
        self.depth
    }

    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    pub fn payload_octets(&self) -> usize {
        self.payload_octets
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// False in the intermediate state (nothing received since start or
    /// the last underrun).
    pub fn is_primed(&self) -> bool {
        self.primed
    }

    /// Sequence number of the slot that plays next.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Packets between the play position and the newest one stored
    /// (0 when unprimed or drained).
    pub fn level(&self) -> u16 {
        if !self.primed {
            return 0;
        }
        (i32::from(seq_diff(self.highest, self.head)) + 1).max(0) as u16
    }

    /// Stores one packet's payload (`None`: sent with L, play all ones).
    /// A payload of the wrong size is the caller's bug: it must have been
    /// rejected as malformed before (asserts in debug builds).
    pub fn insert(&mut self, seq: u16, payload: Option<&[u8]>) -> InsertOutcome {
        debug_assert!(payload.is_none_or(|p| p.len() == self.payload_octets));
        if !self.primed {
            self.prime(seq);
            self.store(seq, payload);
            return InsertOutcome::Primed;
        }
        let d = seq_diff(seq, self.head);
        if d < 0 {
            self.stats.late += 1;
            self.consecutive_late += 1;
            if self.consecutive_late >= self.capacity {
                self.stats.resyncs += 1;
                self.prime(seq);
                self.store(seq, payload);
                return InsertOutcome::Resync;
            }
            return InsertOutcome::Late;
        }
        self.consecutive_late = 0;
        let mut outcome = InsertOutcome::Stored;
        if d as u16 >= self.capacity {
            self.stats.overruns += 1;
            self.skip_to(seq_add(seq, 1 - i32::from(self.depth)));
            outcome = InsertOutcome::Overrun;
        }
        let slot = self.slot_of(seq);
        if self.slots[slot].state != SlotState::Empty {
            debug_assert_eq!(self.slots[slot].seq, seq);
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        if seq_diff(seq, self.highest) < 0 {
            self.stats.reordered += 1;
            outcome = InsertOutcome::Reordered;
        } else {
            self.highest = seq;
        }
        self.store(seq, payload);
        outcome
    }

    /// Plays the next slot into `out` (exactly one payload long).
    pub fn play(&mut self, out: &mut [u8]) -> PlayOutcome {
        debug_assert_eq!(out.len(), self.payload_octets);
        if !self.primed {
            out.fill(AIS_OCTET);
            self.stats.played_idle += 1;
            return PlayOutcome::Idle;
        }
        let slot = self.head_slot;
        let outcome = match self.slots[slot].state {
            SlotState::Data => {
                let start = slot * self.payload_octets;
                out.copy_from_slice(&self.octets[start..start + self.payload_octets]);
                self.stats.played_data += 1;
                PlayOutcome::Data
            }
            SlotState::Ais => {
                out.fill(AIS_OCTET);
                self.stats.played_l_bit += 1;
                PlayOutcome::LBit
            }
            SlotState::Empty => {
                out.fill(AIS_OCTET);
                if seq_diff(self.head, self.start_seq) < 0 {
                    self.stats.played_idle += 1;
                    PlayOutcome::Idle
                } else if seq_diff(self.highest, self.head) > 0 {
                    self.stats.missing += 1;
                    PlayOutcome::Missing
                } else {
                    self.stats.underruns += 1;
                    PlayOutcome::Underrun
                }
            }
        };
        self.slots[slot].state = SlotState::Empty;
        self.head = self.head.wrapping_add(1);
        self.head_slot = (self.head_slot + 1) % usize::from(self.capacity);
        if outcome == PlayOutcome::Underrun {
            // RFC 4553 §6.2.2: back to the intermediate state; the next
            // packet rebuilds the delay.
            self.primed = false;
        }
        outcome
    }

    /// Plays owed so that the packet `seq` (just received) plays `depth`
    /// plays after its arrival: the loop-timing rule, where the far end's
    /// packets are the clock. 0 when unprimed or when `seq` is not ahead.
    pub fn plays_until_due(&self, seq: u16) -> u16 {
        if !self.primed {
            return 0;
        }
        let ahead = i32::from(seq_diff(seq, self.head)) - (i32::from(self.depth) - 1);
        ahead.clamp(0, i32::from(self.capacity)) as u16
    }

    /// Back to the intermediate state, everything dropped.
    pub fn reset(&mut self) {
        self.primed = false;
        for s in &mut self.slots {
            s.state = SlotState::Empty;
        }
    }

    fn prime(&mut self, seq: u16) {
        self.reset();
        self.stats.primes += 1;
        self.primed = true;
        self.head = seq_add(seq, 1 - i32::from(self.depth));
        self.head_slot = 0;
        self.highest = seq;
        self.start_seq = seq;
        self.consecutive_late = 0;
    }

    /// Moves the play position forward to `new_head` without playing,
    /// dropping what the skipped slots hold.
    fn skip_to(&mut self, new_head: u16) {
        let n = seq_diff(new_head, self.head).max(0) as usize;
        for _ in 0..n.min(usize::from(self.capacity)) {
            let s = &mut self.slots[self.head_slot];
            if s.state != SlotState::Empty {
                self.stats.overrun_dropped += 1;
                s.state = SlotState::Empty;
            }
            self.head_slot = (self.head_slot + 1) % usize::from(self.capacity);
        }
        // Beyond a full turn every slot is already empty; only the index
        // moves, and any index is as good as another for an empty ring.
        self.head = new_head;
        if seq_diff(self.start_seq, new_head) < 0 {
            self.start_seq = new_head;
        }
    }

    fn slot_of(&self, seq: u16) -> usize {
        let d = seq_diff(seq, self.head) as usize;
        (self.head_slot + d) % usize::from(self.capacity)
    }

    fn store(&mut self, seq: u16, payload: Option<&[u8]>) {
        let slot = self.slot_of(seq);
        self.stats.stored += 1;
        self.slots[slot] = Slot {
            seq,
            state: match payload {
                Some(p) => {
                    let start = slot * self.payload_octets;
                    self.octets[start..start + self.payload_octets].copy_from_slice(p);
                    SlotState::Data
                }
                None => SlotState::Ais,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: usize = 32;

    fn payload(seq: u16) -> [u8; P] {
        let [a, b] = seq.to_be_bytes();
        let mut p = [0x55; P];
        p[0] = a;
        p[1] = b;
        p
    }

    /// Plays one slot; returns the outcome and the sequence number found in
    /// the payload (None for all ones).
    fn play(b: &mut PlayoutBuffer) -> (PlayOutcome, Option<u16>) {
        let mut out = [0u8; P];
        let o = b.play(&mut out);
        if out == [AIS_OCTET; P] {
            (o, None)
        } else {
            (o, Some(u16::from_be_bytes([out[0], out[1]])))
        }
    }

    fn insert(b: &mut PlayoutBuffer, seq: u16) -> InsertOutcome {
        b.insert(seq, Some(&payload(seq)))
    }

    #[test]
    fn seq_helpers_at_the_wrap() {
        assert_eq!(seq_diff(0, 65535), 1);
        assert_eq!(seq_diff(65535, 0), -1);
        assert_eq!(seq_diff(5, 65530), 11);
        assert_eq!(seq_diff(0x8000, 0), i16::MIN);
        assert_eq!(seq_add(65535, 1), 0);
        assert_eq!(seq_add(0, -1), 65535);
        assert_eq!(seq_add(65534, 3), 1);
    }

    #[test]
    fn all_ones_until_the_first_packet_then_delayed_by_depth() {
        let mut b = PlayoutBuffer::new(P, 4);
        assert_eq!(b.capacity(), 8);
        assert_eq!(play(&mut b), (PlayOutcome::Idle, None));
        assert_eq!(insert(&mut b, 100), InsertOutcome::Primed);
        assert_eq!(b.plays_until_due(100), 0);
        for s in 101..104 {
            assert_eq!(insert(&mut b, s), InsertOutcome::Stored);
            assert_eq!(b.plays_until_due(s), 1);
            // The slots ahead of the first packet are idle fill.
            assert_eq!(play(&mut b), (PlayOutcome::Idle, None));
        }
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(100)));
        let s = b.stats();
        assert_eq!((s.stored, s.missing, s.underruns), (4, 0, 0));
    }

    /// Loop timing: each arrival plays what it makes due.
    fn arrive(b: &mut PlayoutBuffer, seq: u16, played: &mut Vec<(PlayOutcome, Option<u16>)>) {
        insert(b, seq);
        for _ in 0..b.plays_until_due(seq) {
            played.push(play(b));
        }
    }

    #[test]
    fn reordering_within_the_depth_is_absorbed() {
        let mut b = PlayoutBuffer::new(P, 4);
        let mut played = Vec::new();
        for s in [10, 12, 11, 14, 13, 15, 16, 17, 18, 19, 20] {
            arrive(&mut b, s, &mut played);
        }
        let data: Vec<u16> = played.iter().filter_map(|p| p.1).collect();
        assert_eq!(data, (10..17).collect::<Vec<u16>>());
        assert!(played[..3].iter().all(|p| *p == (PlayOutcome::Idle, None)));
        assert_eq!(b.stats().reordered, 2);
        assert_eq!(b.stats().missing, 0);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut b = PlayoutBuffer::new(P, 4);
        insert(&mut b, 7);
        assert_eq!(insert(&mut b, 7), InsertOutcome::Duplicate);
        insert(&mut b, 8);
        assert_eq!(insert(&mut b, 8), InsertOutcome::Duplicate);
        assert_eq!(b.stats().duplicates, 2);
        assert_eq!(b.stats().stored, 2);
    }

    #[test]
    fn lost_packets_play_all_ones_and_late_ones_are_dropped() {
        let mut b = PlayoutBuffer::new(P, 4);
        for s in [0, 1, 3, 4] {
            insert(&mut b, s);
        }
        for _ in 0..3 {
            assert_eq!(play(&mut b), (PlayOutcome::Idle, None));
        }
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(0)));
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(1)));
        assert_eq!(play(&mut b), (PlayOutcome::Missing, None));
        assert_eq!(insert(&mut b, 2), InsertOutcome::Late);
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(3)));
        let s = b.stats();
        assert_eq!((s.missing, s.late), (1, 1));
    }

    #[test]
    fn an_l_bit_packet_plays_all_ones() {
        let mut b = PlayoutBuffer::new(P, 1);
        b.insert(9, None);
        assert_eq!(play(&mut b), (PlayOutcome::LBit, None));
    }

    #[test]
    fn underrun_returns_to_the_intermediate_state() {
        let mut b = PlayoutBuffer::new(P, 2);
        insert(&mut b, 50);
        insert(&mut b, 51);
        play(&mut b);
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(50)));
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(51)));
        assert_eq!(play(&mut b), (PlayOutcome::Underrun, None));
        assert!(!b.is_primed());
        assert_eq!(play(&mut b), (PlayOutcome::Idle, None));
        // The far end carries on: the next packet rebuilds the delay.
        assert_eq!(insert(&mut b, 60), InsertOutcome::Primed);
        assert_eq!(play(&mut b), (PlayOutcome::Idle, None));
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(60)));
        assert_eq!(b.stats().underruns, 1);
        assert_eq!(b.stats().primes, 2);
    }

    #[test]
    fn overrun_skips_forward_keeping_the_newest() {
        let mut b = PlayoutBuffer::new(P, 2);
        insert(&mut b, 0); // head = -1
        insert(&mut b, 1);
        assert_eq!(insert(&mut b, 20), InsertOutcome::Overrun);
        let s = b.stats();
        assert_eq!((s.overruns, s.overrun_dropped), (1, 2));
        assert_eq!(b.head(), 19);
        // 2..=19 never came: the slot before 20 is missing, not idle fill.
        assert_eq!(play(&mut b), (PlayOutcome::Missing, None));
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(20)));
    }

    #[test]
    fn a_run_of_late_packets_resyncs() {
        let mut b = PlayoutBuffer::new(P, 2);
        insert(&mut b, 40_000);
        // The far end restarted with a sequence number "behind" us.
        for s in 0..3 {
            assert_eq!(insert(&mut b, 39_000 + s), InsertOutcome::Late);
        }
        assert_eq!(insert(&mut b, 39_003), InsertOutcome::Resync);
        play(&mut b);
        assert_eq!(play(&mut b), (PlayOutcome::Data, Some(39_003)));
        assert_eq!(b.stats().resyncs, 1);
    }

    #[test]
    fn sequence_wrap_with_reordering() {
        let mut b = PlayoutBuffer::new(P, 4);
        let mut played = Vec::new();
        for s in [65533, 65535, 65534, 1, 0, 2, 3, 4, 5, 6, 7] {
            arrive(&mut b, s, &mut played);
        }
        let data: Vec<u16> = played.iter().filter_map(|p| p.1).collect();
        assert_eq!(data, [65533, 65534, 65535, 0, 1, 2, 3]);
        assert_eq!(b.stats().reordered, 2);
        assert_eq!(b.stats().missing, 0);
    }

    #[test]
    fn level_counts_from_the_play_position_to_the_newest() {
        let mut b = PlayoutBuffer::new(P, 4);
        assert_eq!(b.level(), 0);
        insert(&mut b, 10);
        assert_eq!(b.level(), 4);
        insert(&mut b, 12);
        assert_eq!(b.level(), 6);
    }

    proptest! {
        /// Loop timing over a stream with duplicates and reordering within
        /// `depth - 1` places: each packet plays exactly once, in order, and
        /// nothing is counted missing or late.
        #[test]
        fn reorder_and_duplicates_within_depth_lose_nothing(
            base: u16,
            depth in 3u16..9,
            swaps in proptest::collection::vec(any::<bool>(), 200),
            dups in proptest::collection::vec(any::<bool>(), 200),
        ) {
            let n = 200u16;
            let mut order: Vec<u16> = (0..n).collect();
            // Adjacent swaps, each packet moved at most one place per pass;
            // `(depth - 1) / 2` passes keep any two packets within
            // `depth - 1` places of their order.
            for pass in 0..usize::from((depth - 1) / 2) {
                let mut i = pass % 2;
                while i + 1 < order.len() {
                    if swaps[(i + pass) % swaps.len()] {
                        order.swap(i, i + 1);
                    }
                    i += 2;
                }
            }
            let mut b = PlayoutBuffer::new(P, depth);
            let mut played = Vec::new();
            for (i, k) in order.iter().enumerate() {
                let s = base.wrapping_add(*k);
                insert(&mut b, s);
                if dups[i] {
                    insert(&mut b, s);
                }
                for _ in 0..b.plays_until_due(s) {
                    if let (PlayOutcome::Data, Some(p)) = play(&mut b) {
                        played.push(p);
                    }
                }
            }
            while b.is_primed() {
                if let (PlayOutcome::Data, Some(p)) = play(&mut b) {
                    played.push(p);
                }
            }
            let want: Vec<u16> = (0..n).map(|k| base.wrapping_add(k)).collect();
            prop_assert_eq!(played, want);
            let s = b.stats();
            prop_assert_eq!((s.missing, s.late, s.overruns), (0, 0, 0));
        }
    }
}
