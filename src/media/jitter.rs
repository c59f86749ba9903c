//! Adaptive, bounded jitter buffer with clock-drift compensation.
//!
//! # Contract
//!
//! - [`JitterBuffer::insert`] takes one decoded RTP audio packet (linear
//!   samples, its RTP timestamp, marker bit) with its arrival time `now` in
//!   samples of the E1 clock (8 kHz). It never allocates: the storage is a
//!   ring of samples indexed by the extended RTP timestamp, sized at
//!   construction from `max_depth_ms`.
//! - [`JitterBuffer::pull`] is called at the E1 cadence (one 8-sample frame
//!   per ms, or any length) and fills the caller's buffer with the samples
//!   due now, marking the missing ones for concealment.
//!
//! # Behaviour
//!
//! - Reordering is absorbed by the ring (a sample's slot is its timestamp);
//!   duplicates are detected by occupied slots and counted; packets whose
//!   audio is already past the playout point are *late*: counted, discarded.
//! - Depth: the delay between a packet's arrival and the start of its playout.
//!   The target is `clamp(3 * J, min, max)` with J the RFC 3550 A.8
//!   interarrival jitter. At the start of a talkspurt (marker bit, RFC 3551
//!   §4.1, or the first packet after the buffer ran dry) the playout point
//!   jumps to the target; within a talkspurt the measured depth is moved
//!   towards the target one sample at a time, and only in quiet passages
//!   (short-term envelope under `quiet_level`): a sample is dropped or
//!   repeated. The same mechanism compensates the drift between the sender's
//!   clock and the E1 clock (±100 ppm is 0.8 samples/s). Above `max_depth`
//!   samples are dropped even in loud passages. Every sample inserted or
//!   dropped is counted.

use super::seq::{Jitter, extend_ts};

/// Samples per millisecond at 8 kHz.
pub const SAMPLES_PER_MS: u32 = 8;
/// Largest packet the buffer takes (40 ms ptime).
pub const MAX_PACKET_SAMPLES: usize = 320;

/// Jitter-buffer settings (from the connect command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Smallest depth the buffer adapts to (default 20 ms).
    pub min_depth_ms: u16,
    /// Largest depth (default 200 ms); also sizes the ring.
    pub max_depth_ms: u16,
    /// Envelope under which a passage is quiet enough to insert or drop a
    /// sample unheard (linear 16-bit; 256 is about -42 dBm0).
    pub quiet_level: u16,
    /// Dead band around the target before samples are inserted or dropped.
    pub hysteresis_samples: u16,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_depth_ms: 20,
            max_depth_ms: 200,
            quiet_level: 256,
            hysteresis_samples: 16,
        }
    }
}

/// What happened to one inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored for playout.
    Stored,
    /// Stored, and the playout point moved to it (talkspurt start or resync).
    Anchored,
    /// Every sample already buffered: discarded.
    Duplicate,
    /// Its audio is already past the playout point: discarded.
    Late,
    /// Longer than [`MAX_PACKET_SAMPLES`] or empty: discarded.
    BadLength,
}

/// Plain counters; the channel copies them into telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterCounters {
    pub packets_stored: u64,
    pub duplicates: u64,
    pub late: u64,
    pub bad_length: u64,
    /// Playout point moved (talkspurt start, far-end jump, sustained lateness).
    pub anchors: u64,
    /// Samples repeated to let the depth grow (drift or adaptation).
    pub samples_inserted: u64,
    /// Samples skipped to let the depth shrink (drift or adaptation).
    pub samples_dropped: u64,
    /// Samples played out with no audio (a gap, to be concealed).
    pub samples_missing: u64,
}

/// Late packets in a row after which the stream is re-anchored (the far end
/// jumped back or the path delay grew beyond the buffer).
const LATE_STREAK_RESYNC: u32 = 4;
/// At most one sample inserted or dropped per this many played (10 ms), so a
/// correction is spread out and never audible as a step.
const ADJUST_SPACING_SAMPLES: u32 = 80;
/// The value of an empty ring slot.
const EMPTY: i16 = i16::MIN;
/// Extended timestamps start here so that extension never goes below zero.
const EXT_BASE: u64 = 1 << 32;

/// See the module documentation.
pub struct JitterBuffer {
    cfg: JitterConfig,
    samples: Box<[i16]>,
    mask: u64,
    anchored: bool,
    /// Extended timestamp of the next sample to play.
    playout: u64,
    /// Extended timestamp one past the newest buffered sample.
    newest_end: u64,
    /// Last extended timestamp seen, the reference for extending the next.
    ext_ref: u64,
    jitter: Jitter,
    /// Measured depth (samples, Q4 fixed point, exponential average).
    depth_q4: i64,
    envelope: i32,
    last_played: i16,
    since_adjust: u32,
    late_streak: u32,
    pub counters: JitterCounters,
}

impl JitterBuffer {
    /// Allocates the ring (the only allocation, at channel set-up).
    pub fn new(cfg: JitterConfig) -> Self {
        let max = cfg.max_depth_ms.max(cfg.min_depth_ms) as usize * SAMPLES_PER_MS as usize;
        let cap = (max + 3 * MAX_PACKET_SAMPLES).next_power_of_two();
        JitterBuffer {
            cfg,
            samples: vec![EMPTY; cap].into_boxed_slice(),
            mask: cap as u64 - 1,
            anchored: false,
            playout: 0,
            newest_end: 0,
            ext_ref: EXT_BASE,
            jitter: Jitter::default(),
            depth_q4: 0,
            envelope: 0,
            last_played: 0,
            since_adjust: 0,
            late_streak: 0,
            counters: JitterCounters::default(),
        }
    }

    /// Forgets the stream (new remote or SSRC), keeps the counters.
    pub fn reset(&mut self) {
        self.samples.fill(EMPTY);
        self.anchored = false;
        self.ext_ref = EXT_BASE;
        self.jitter.reset();
        self.late_streak = 0;
    }

    /// New settings for the next stream, keeping the ring (no allocation):
    /// `max_depth_ms` is capped at what the ring was sized for by
    /// [`Self::new`]. Resets the stream; returns the settings applied.
    pub fn reconfigure(&mut self, cfg: JitterConfig) -> JitterConfig {
        let ring_ms = (self.capacity() as usize - 3 * MAX_PACKET_SAMPLES) / SAMPLES_PER_MS as usize;
        let max_depth_ms = cfg.max_depth_ms.min(ring_ms.min(u16::MAX as usize) as u16);
        self.cfg = JitterConfig {
            max_depth_ms,
            min_depth_ms: cfg.min_depth_ms.min(max_depth_ms),
            ..cfg
        };
        self.reset();
        self.cfg
    }

    /// Heap bytes of the ring (for the media memory budget).
    pub fn heap_bytes(&self) -> usize {
        self.samples.len() * std::mem::size_of::<i16>()
    }

    /// RFC 3550 A.8 jitter of the stream, in samples.
    pub fn jitter_samples(&self) -> u32 {
        self.jitter.value()
    }

    /// The depth the buffer steers to, in samples.
    pub fn target_depth_samples(&self) -> u32 {
        let min = self.cfg.min_depth_ms as u32 * SAMPLES_PER_MS;
        let max = (self.cfg.max_depth_ms as u32 * SAMPLES_PER_MS).max(min);
        (3 * self.jitter.value()).clamp(min, max)
    }

    /// The measured depth (averaged), in samples.
    pub fn depth_samples(&self) -> i64 {
        self.depth_q4 >> 4
    }

    /// Samples buffered ahead of the playout point (including gaps).
    pub fn buffered_samples(&self) -> u64 {
        self.newest_end.saturating_sub(self.playout)
    }

    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// Takes one packet; see [`InsertOutcome`].
    pub fn insert(&mut self, now: u64, ts: u32, marker: bool, audio: &[i16]) -> InsertOutcome {
        if audio.is_empty() || audio.len() > MAX_PACKET_SAMPLES {
            self.counters.bad_length += 1;
            return InsertOutcome::BadLength;
        }
        let ext = extend_ts(self.ext_ref, ts);
        self.ext_ref = ext;
        self.jitter.update(now, ts);
        let end = ext + audio.len() as u64;
        let dry = self.playout >= self.newest_end;
        let too_early = end > self.playout + self.capacity();
        let late = ext < self.playout;
        let mut outcome = InsertOutcome::Stored;
        if !self.anchored
            || too_early
            || (dry && (marker || !late))
            || (late && self.late_streak + 1 >= LATE_STREAK_RESYNC)
        {
            self.anchor(ext);
            outcome = InsertOutcome::Anchored;
        } else if late {
            self.late_streak += 1;
            self.counters.late += 1;
            return InsertOutcome::Late;
        }
        self.late_streak = 0;
        if outcome == InsertOutcome::Stored && self.samples[(ext & self.mask) as usize] != EMPTY {
            let last = ((end - 1) & self.mask) as usize;
            if self.samples[last] != EMPTY {
                self.counters.duplicates += 1;
                return InsertOutcome::Duplicate;
            }
        }
        // In ring runs (the packet may wrap): -32768 marks an empty slot;
        // G.711 never decodes to it, other sources lose 1/32768 of full
        // scale.
        let start = (ext & self.mask) as usize;
        let first = audio.len().min(self.samples.len() - start);
        let (a, b) = audio.split_at(first);
        for (d, &s) in self.samples[start..start + first].iter_mut().zip(a) {
            *d = s.max(EMPTY + 1);
        }
        for (d, &s) in self.samples[..b.len()].iter_mut().zip(b) {
            *d = s.max(EMPTY + 1);
        }
        self.newest_end = self.newest_end.max(end);
        self.counters.packets_stored += 1;
        // Depth seen by this packet: how long it waits before playing.
        let depth = ext as i64 - self.playout as i64;
        self.depth_q4 += depth - (self.depth_q4 >> 4);
        outcome
    }

    /// Moves the playout point so that a packet starting at `ext` waits the
    /// target depth.
    fn anchor(&mut self, ext: u64) {
        self.samples.fill(EMPTY);
        let target = self.target_depth_samples() as u64;
        self.playout = ext.saturating_sub(target);
        self.newest_end = ext;
        self.depth_q4 = (target as i64) << 4;
        self.anchored = true;
        self.counters.anchors += 1;
    }

    /// Plays `out.len()` samples; `missing[i]` is set where there was no audio
    /// (the caller conceals those). `out` and `missing` have the same length.
    /// Returns the number of samples missing.
    pub fn pull(&mut self, out: &mut [i16], missing: &mut [bool]) -> u32 {
        let n = out.len().min(missing.len()) as u32;
        if self.anchored
            && n as usize <= self.samples.len()
            && (self.since_adjust.saturating_add(n) < ADJUST_SPACING_SAMPLES || !self.may_adjust())
        {
            // No sample of this call can be inserted or dropped: depth and
            // target only change on an adjustment (or an insert, which does
            // not happen during a pull), so the per-sample decision below
            // would say "play" every time.
            self.since_adjust = self.since_adjust.saturating_add(n);
            // The same as take_slot + played per sample, in two passes:
            // the ring run(s) taken into `out`/`missing` (no wrap inside a
            // run, so the compiler vectorises it), then the envelope over
            // the good samples, with the state in locals.
            let n = n as usize;
            let start = (self.playout & self.mask) as usize;
            let first = n.min(self.samples.len().saturating_sub(start));
            let mut lost_n = take_run(
                &mut self.samples[start..start + first],
                &mut out[..first],
                &mut missing[..first],
            );
            if first < n {
                lost_n += take_run(
                    &mut self.samples[..n - first],
                    &mut out[first..n],
                    &mut missing[first..n],
                );
            }
            self.playout += n as u64;
            let (mut envelope, mut last) = (self.envelope, self.last_played);
            for (&s, &lost) in out[..n].iter().zip(&missing[..n]) {
                if !lost {
                    last = s;
                    // `envelope` is never negative, so `/ 32` is `>> 5`.
                    envelope = (envelope + (s as i32).abs() - (envelope >> 5)).max(0);
                }
            }
            self.envelope = envelope;
            self.last_played = last;
            self.counters.samples_missing += lost_n;
            return lost_n as u32;
        }
        let mut lost_n = 0;
        for (o, m) in out.iter_mut().zip(missing.iter_mut()) {
            let (s, lost) = self.next_sample();
            *o = s;
            *m = lost;
            lost_n += u32::from(lost);
        }
        lost_n
    }

    /// Whether the depth is outside the dead band or over the maximum, the
    /// only states in which [`Self::next_sample`] inserts or drops.
    fn may_adjust(&self) -> bool {
        let excess = self.depth_samples() - self.target_depth_samples() as i64;
        let hyst = self.cfg.hysteresis_samples as i64;
        excess > hyst || excess < -hyst || self.over_max()
    }

    fn over_max(&self) -> bool {
        self.depth_samples()
            > self.cfg.max_depth_ms as i64 * SAMPLES_PER_MS as i64 + MAX_PACKET_SAMPLES as i64
    }

    /// Accounts one sample played from the ring.
    fn played(&mut self, s: i16, lost: bool) {
        if lost {
            self.counters.samples_missing += 1;
        } else {
            self.last_played = s;
            self.envelope += (s as i32).abs() - self.envelope / 32;
            self.envelope = self.envelope.max(0);
        }
    }

    fn next_sample(&mut self) -> (i16, bool) {
        if !self.anchored {
            return (0, true);
        }
        self.since_adjust = self.since_adjust.saturating_add(1);
        let excess = self.depth_samples() - self.target_depth_samples() as i64;
        let hyst = self.cfg.hysteresis_samples as i64;
        let quiet = self.envelope() < self.cfg.quiet_level as i32;
        let spaced = self.since_adjust >= ADJUST_SPACING_SAMPLES;
        let over_max = self.over_max();
        let buffered = self.playout < self.newest_end;
        if spaced && buffered && ((excess > hyst && quiet) || over_max) {
            // Drop: skip one sample, the depth shrinks by one.
            self.take_slot();
            self.depth_q4 -= 16;
            self.since_adjust = 0;
            self.counters.samples_dropped += 1;
        } else if spaced && buffered && excess < -hyst && quiet {
            // Insert: repeat the last sample, the depth grows by one.
            self.depth_q4 += 16;
            self.since_adjust = 0;
            self.counters.samples_inserted += 1;
            return (self.last_played, false);
        }
        let (s, lost) = self.take_slot();
        self.played(s, lost);
        (s, lost)
    }

    /// Takes the sample at the playout point and advances it.
    fn take_slot(&mut self) -> (i16, bool) {
        let slot = (self.playout & self.mask) as usize;
        self.playout += 1;
        let s = std::mem::replace(&mut self.samples[slot], EMPTY);
        if s == EMPTY { (0, true) } else { (s, false) }
    }

    /// Asks the CPU to fetch the next samples to play into cache (the
    /// engine calls it for the next channel while it works on this one:
    /// with a thousand channels the ring lines are otherwise a DRAM miss
    /// per pull). Reads the playout point: call [`Self::prefetch_state`]
    /// a step earlier.
    #[inline]
    pub fn prefetch(&self) {
        // A tick's pull: TICK_SAMPLES samples from the playout point.
        let start = (self.playout & self.mask) as usize;
        super::prefetch_ring(&self.samples, start, super::channel::TICK_SAMPLES);
    }

    /// Asks the CPU to fetch what the next [`Self::insert`] of `samples`
    /// samples most likely touches: the buffer's state and the ring from
    /// the newest buffered sample on (where the next packet in sequence
    /// goes). Reads the state: a step of its own, for the engine to issue
    /// before a system call whose time hides the misses.
    #[inline]
    pub fn prefetch_insert(&self, samples: usize) {
        super::prefetch_bytes(self, usize::MAX);
        let n = samples.min(MAX_PACKET_SAMPLES) as u64;
        // Every 32 samples (a 64-byte line) and the last one.
        let offsets = (0..n).step_by(32).chain(n.checked_sub(1));
        for k in offsets {
            let slot = ((self.newest_end + k) & self.mask) as usize;
            if let Some(p) = self.samples.get(slot) {
                super::prefetch(p);
            }
        }
    }

    /// Fetches the lines of the fields a pull reads (addresses only, no
    /// loads).
    #[inline]
    pub fn prefetch_state(&self) {
        use super::prefetch;
        prefetch(&self.playout);
        prefetch(&self.mask);
        prefetch(&self.samples);
        prefetch(&self.depth_q4);
        prefetch(&self.since_adjust);
        prefetch(&self.counters.samples_missing);
        prefetch(&self.jitter);
        prefetch(&self.cfg);
    }

    /// The envelope is kept scaled by 32; this is its value in sample units.
    pub fn envelope(&self) -> i32 {
        self.envelope / 32
    }
}

/// Takes a run of ring slots (no wrap) into `out`, 0 and `missing` where a
/// slot was empty, and empties the slots; returns the number missing.
/// Whole blocks of [`RUN_BLOCK`] go through fixed-size arrays (the
/// compiler vectorises those), the remainder sample by sample.
#[inline]
fn take_run(ring: &mut [i16], out: &mut [i16], missing: &mut [bool]) -> u64 {
    let mut lost_n = 0;
    let mut rc = ring.chunks_exact_mut(RUN_BLOCK);
    let mut oc = out.chunks_exact_mut(RUN_BLOCK);
    let mut mc = missing.chunks_exact_mut(RUN_BLOCK);
    for ((r, o), m) in (&mut rc).zip(&mut oc).zip(&mut mc) {
        if let (Ok(r), Ok(o), Ok(m)) = (
            <&mut [i16; RUN_BLOCK]>::try_from(r),
            <&mut [i16; RUN_BLOCK]>::try_from(o),
            <&mut [bool; RUN_BLOCK]>::try_from(m),
        ) {
            lost_n += take_block(r, o, m) as u64;
        }
    }
    let rest = rc
        .into_remainder()
        .iter_mut()
        .zip(oc.into_remainder().iter_mut())
        .zip(mc.into_remainder().iter_mut());
    for ((r, o), m) in rest {
        let s = std::mem::replace(r, EMPTY);
        let lost = s == EMPTY;
        *o = if lost { 0 } else { s };
        *m = lost;
        lost_n += lost as u64;
    }
    lost_n
}

const RUN_BLOCK: usize = 8;

#[inline(always)]
fn take_block(
    ring: &mut [i16; RUN_BLOCK],
    out: &mut [i16; RUN_BLOCK],
    missing: &mut [bool; RUN_BLOCK],
) -> u32 {
    let mut lost_n = 0u32;
    for i in 0..RUN_BLOCK {
        let s = ring[i];
        let lost = s == EMPTY;
        out[i] = if lost { 0 } else { s };
        missing[i] = lost;
        lost_n += lost as u32;
    }
    *ring = [EMPTY; RUN_BLOCK];
    lost_n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32) -> [i16; 160] {
        core::array::from_fn(|i| ((seq * 160 + i as u32) % 1000) as i16)
    }

    /// Pulls `n` samples and returns how many were missing.
    fn play(jb: &mut JitterBuffer, n: usize, sink: &mut Vec<i16>) -> usize {
        let mut out = [0i16; 8];
        let mut miss = [false; 8];
        let mut lost = 0;
        for _ in 0..n / 8 {
            jb.pull(&mut out, &mut miss);
            sink.extend_from_slice(&out);
            lost += miss.iter().filter(|m| **m).count();
        }
        lost
    }

    #[test]
    fn in_order_stream_plays_after_min_depth_without_gaps() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        let mut now = 0u64;
        for seq in 0..50u32 {
            let o = jb.insert(now, seq * 160, seq == 0, &frame(seq));
            assert_eq!(
                o,
                if seq == 0 {
                    InsertOutcome::Anchored
                } else {
                    InsertOutcome::Stored
                }
            );
            let lost = play(&mut jb, 160, &mut sink);
            assert_eq!(lost, if seq == 0 { 160 } else { 0 }, "seq {seq}");
            now += 160;
        }
        // First 160 samples are the 20 ms of depth, then the audio in order.
        assert_eq!(&sink[160..320], &frame(0));
        assert_eq!(&sink[320..480], &frame(1));
        assert_eq!(
            jb.counters.samples_inserted + jb.counters.samples_dropped,
            0
        );
    }

    #[test]
    fn reordered_and_duplicated_packets_play_in_order() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        jb.insert(0, 0, true, &frame(0));
        assert_eq!(play(&mut jb, 160, &mut sink), 160, "20 ms of depth first");
        assert_eq!(play(&mut jb, 160, &mut sink), 0);
        // Packet 1 is overtaken by packet 2 and arrives just in time, twice.
        jb.insert(320, 160 * 2, false, &frame(2));
        jb.insert(320, 160, false, &frame(1));
        assert_eq!(
            jb.insert(320, 160, false, &frame(1)),
            InsertOutcome::Duplicate
        );
        assert_eq!(play(&mut jb, 160, &mut sink), 0);
        jb.insert(480, 160 * 3, false, &frame(3));
        assert_eq!(play(&mut jb, 320, &mut sink), 0);
        for i in 0..4 {
            assert_eq!(&sink[160 * (i + 1)..160 * (i + 2)], &frame(i as u32));
        }
        assert_eq!(jb.counters.duplicates, 1);
        assert_eq!(
            jb.counters.samples_dropped + jb.counters.samples_inserted,
            0
        );
    }

    #[test]
    fn loss_leaves_a_marked_gap() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        jb.insert(0, 0, true, &frame(0));
        play(&mut jb, 160, &mut sink);
        assert_eq!(play(&mut jb, 160, &mut sink), 0);
        jb.insert(320, 320, false, &frame(2));
        assert_eq!(play(&mut jb, 160, &mut sink), 160, "packet 1 lost");
        jb.insert(480, 480, false, &frame(3));
        assert_eq!(play(&mut jb, 160, &mut sink), 0);
        assert_eq!(&sink[480..640], &frame(2));
        assert_eq!(jb.counters.samples_missing, 320);
    }

    #[test]
    fn late_packet_counted_and_discarded() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        jb.insert(0, 0, true, &frame(0));
        play(&mut jb, 320, &mut sink);
        jb.insert(320, 320, false, &frame(2));
        play(&mut jb, 160, &mut sink); // packet 1's slot plays as missing
        assert_eq!(jb.insert(480, 160, false, &frame(1)), InsertOutcome::Late);
        assert_eq!(jb.counters.late, 1);
        jb.insert(480, 480, false, &frame(3));
        assert_eq!(play(&mut jb, 160, &mut sink), 0);
        assert_eq!(&sink[480..640], &frame(2));
    }

    #[test]
    fn sustained_lateness_reanchors() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        jb.insert(0, 0, true, &frame(0));
        jb.insert(0, 160, false, &frame(1));
        play(&mut jb, 8000, &mut sink);
        // The far end jumps back in time by 10 s: everything is "late".
        let mut outcomes = Vec::new();
        for i in 0..LATE_STREAK_RESYNC {
            outcomes.push(jb.insert(8000, 320 + i * 160, false, &frame(i)));
        }
        assert_eq!(outcomes.last(), Some(&InsertOutcome::Anchored));
        assert_eq!(jb.counters.anchors, 2);
    }

    #[test]
    fn bad_length_refused() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.insert(0, 0, false, &[]), InsertOutcome::BadLength);
        assert_eq!(jb.insert(0, 0, false, &[0; 400]), InsertOutcome::BadLength);
    }

    /// Sends a 20 ms stream with delays drawn from a seeded generator spread
    /// over `spread` samples; returns the buffer after `secs` seconds.
    fn jittery_stream(spread: u64, secs: u64) -> (JitterBuffer, usize) {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut rng = 0x1234_5678u64;
        let mut arrivals: Vec<(u64, u32)> = (0..secs as u32 * 50)
            .map(|seq| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (seq as u64 * 160 + rng % spread.max(1), seq)
            })
            .collect();
        arrivals.sort();
        let mut sink = Vec::new();
        let mut lost_late = 0;
        let mut it = arrivals.into_iter().peekable();
        for now in (0..secs * 8000).step_by(8) {
            while let Some(&(t, seq)) = it.peek() {
                if t > now {
                    break;
                }
                it.next();
                jb.insert(now, seq * 160, seq == 0, &[100; 160]);
            }
            let l = play(&mut jb, 8, &mut sink);
            if now > 4 * 8000 {
                lost_late += l;
            }
        }
        (jb, lost_late)
    }

    #[test]
    fn depth_adapts_to_jitter_within_bounds() {
        let (calm, _) = jittery_stream(1, 6);
        assert_eq!(calm.target_depth_samples(), 160, "no jitter: minimum 20 ms");
        let (rough, missing) = jittery_stream(480, 12);
        let target = rough.target_depth_samples();
        assert!(target > 320 && target <= 1600, "target {target}");
        // After adaptation the 60 ms delay spread plays without gaps.
        assert!(missing < 160, "missing {missing} samples after adapting");
        assert!(rough.counters.samples_inserted > 0);
        let (wild, _) = jittery_stream(8000, 6);
        assert_eq!(wild.target_depth_samples(), 1600, "bounded at 200 ms");
    }

    /// Sender clock off by `ppm`; quiet passages every other second.
    fn drift(ppm: i64, secs: u64) -> JitterBuffer {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        let mut seq = 0u32;
        // Sender emits packet n at n*160*(1 - ppm/1e6) on the E1 clock.
        let mut next_send = 0f64;
        let period = 160.0 * (1.0 - ppm as f64 / 1e6);
        for now in (0..secs * 8000).step_by(8) {
            while next_send <= now as f64 {
                let loud = (seq / 50).is_multiple_of(2);
                let audio: [i16; 160] = core::array::from_fn(|i| {
                    if loud {
                        if i % 20 < 10 { 8000 } else { -8000 }
                    } else {
                        3
                    }
                });
                jb.insert(now, seq.wrapping_mul(160), seq == 0, &audio);
                seq += 1;
                next_send += period;
            }
            play(&mut jb, 8, &mut sink);
            let depth = jb.depth_samples();
            if now > 8000 {
                assert!(
                    (100..=260).contains(&depth),
                    "depth {depth} at {now} ({ppm} ppm)"
                );
            }
        }
        jb
    }

    #[test]
    fn drift_plus_100_ppm_over_five_minutes_drops_samples() {
        let jb = drift(100, 300);
        // 300 s * 8000 * 1e-4 = 240 extra samples, minus the dead band.
        let d = jb.counters.samples_dropped;
        assert!((200..=260).contains(&d), "dropped {d}");
        assert_eq!(jb.counters.late, 0);
    }

    #[test]
    fn drift_minus_100_ppm_over_five_minutes_inserts_samples() {
        let jb = drift(-100, 300);
        let n = jb.counters.samples_inserted;
        assert!((200..=260).contains(&n), "inserted {n}");
        assert_eq!(jb.counters.late, 0);
    }

    #[test]
    fn timestamps_wrap_without_a_glitch() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut sink = Vec::new();
        let base = u32::MAX - 800;
        for i in 0..20u32 {
            jb.insert(
                i as u64 * 160,
                base.wrapping_add(i * 160),
                i == 0,
                &frame(i),
            );
            let lost = play(&mut jb, 160, &mut sink);
            assert_eq!(lost, if i == 0 { 160 } else { 0 });
        }
        assert_eq!(jb.counters.anchors, 1);
    }
}
