//! The simulated exchange's per-B-channel audio: a test signal out, a
//! checker and a DTMF receiver in. Runs on the line side, one octet per E1
//! frame per channel; sized at construction, no allocation afterwards.
//!
//! # Test signal
//!
//! Blocks of [`BLOCK_OCTETS`] A-law octets (4 ms): a 4-octet sync pattern,
//! the block number (16 bits, big-endian), the low 8 bits of the call's tag,
//! a check octet, then 24 pseudo-random octets that depend on (tag, block).
//! A far end that echoes the channel returns the blocks; the checker finds
//! them at any offset, so it needs no alignment and sees a slip as a gap.
//! Per call it counts blocks sent, received, lost (gaps in the block
//! numbers between the first and the last received), mismatched (header
//! right, payload wrong, and a good block after it: corrupted audio; a
//! wrong block after the last good one is only `truncated`, the far end
//! having stopped its echo mid-block) and the round trip of each block
//! in E1 frames (1 frame = 125 µs), from the frame its last octet went out
//! to the frame it came back.
//!
//! # DTMF
//!
//! Digits queued with [`AudioChannel::start`] go out in-band after
//! `dtmf_delay_frames`, each a Q.23 digit from [`ToneGenerator`] for
//! [`DTMF_ON_FRAMES`] then silence for [`DTMF_OFF_FRAMES`] (Q.24: 40 ms on
//! and off are enough); the test blocks pause meanwhile, so the far end's
//! receiver hears clean tones. Everything received goes through a
//! [`DtmfDetector`]; each digit it finds is reported.
//!
//! In [`AudioMode::Echo`] (the test peer's side) nothing is generated: the
//! received octets go back in order through a delay line (a driver hands
//! over several frames received before it asks for as many to send), and
//! DTMF is detected.

use serde::Serialize;

use crate::line::g711::alaw_to_linear;
use crate::media::dtmf::{DtmfDetector, DtmfEvent};
use crate::media::tone::{ToneGenerator, ToneSpec};

/// Octets per test block (4 ms at one octet per frame).
pub const BLOCK_OCTETS: usize = 32;
const HEADER_OCTETS: usize = 8;
const SYNC: [u8; 4] = [0x1B, 0xE4, 0x72, 0x8D];
/// Blocks whose send time is remembered for the round trip.
const SENT_HISTORY: usize = 128;
/// DTMF tone and pause, in frames (60 ms each).
pub const DTMF_ON_FRAMES: u32 = 480;
pub const DTMF_OFF_FRAMES: u32 = 480;
/// Most digits queued per call.
pub const MAX_DIGITS: usize = 16;
const IDLE: u8 = 0xD5;
const DETECT_CHUNK: usize = 16;
/// Echo delay line: 64 ms, far more than any driver hands over at once.
const ECHO_OCTETS: usize = 512;

/// What a channel does with its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioMode {
    /// Play the test signal and check its echo.
    Test,
    /// Send back what arrives (the far end's echo for the other side's test).
    Echo,
}

/// A short digit string, `Copy` so that it crosses a ring.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Digits {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl Digits {
    /// The DTMF digits of `s` (others dropped), at most [`MAX_DIGITS`].
    pub fn new(s: &str) -> Digits {
        let mut d = Digits::default();
        for b in s.bytes() {
            if crate::media::dtmf::digit_position(b).is_some() {
                d.push(b.to_ascii_uppercase());
            }
        }
        d
    }

    /// Appends one digit; `false` when full.
    pub fn push(&mut self, b: u8) -> bool {
        let i = usize::from(self.len);
        if i >= MAX_DIGITS {
            return false;
        }
        self.buf[i] = b;
        self.len += 1;
        true
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_str(&self) -> &str {
        // Only DTMF ASCII digits are ever pushed.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl core::fmt::Debug for Digits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What the checker measured on one call (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AudioStats {
    pub blocks_sent: u64,
    pub blocks_received: u64,
    pub blocks_lost: u64,
    pub blocks_mismatched: u64,
    /// Blocks that came back out of order or twice.
    pub blocks_out_of_order: u64,
    /// Wrong blocks after the last good one: the far end stopped echoing
    /// mid-block (it cleared first). Not counted as mismatched.
    pub blocks_truncated: u64,
    /// Blocks missing or garbled across a DTMF digit heard on the channel:
    /// a far end sending RFC 4733 events holds its voice (RFC 4733 §2.5.1.1)
    /// and the digit is regenerated in their place, so these are not loss.
    pub blocks_excused_dtmf: u64,
    pub rtt_frames_min: u32,
    pub rtt_frames_max: u32,
    pub rtt_frames_sum: u64,
    /// Frames the call's audio ran for.
    pub frames: u64,
}

impl AudioStats {
    /// Mean round trip in frames, if any block came back.
    pub fn rtt_frames_mean(&self) -> Option<f64> {
        (self.blocks_received > 0).then(|| self.rtt_frames_sum as f64 / self.blocks_received as f64)
    }
}

/// Splitmix64: the payload generator (any good mix will do; fixed forever
/// so that both ends agree).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn check_octet(idx: u16, tag8: u8) -> u8 {
    let [a, b] = idx.to_be_bytes();
    a ^ b ^ tag8 ^ 0x5A
}

/// Writes test block `idx` of call `tag`.
pub fn make_block(tag: u32, idx: u16, out: &mut [u8; BLOCK_OCTETS]) {
    out[..4].copy_from_slice(&SYNC);
    out[4..6].copy_from_slice(&idx.to_be_bytes());
    out[6] = tag as u8;
    out[7] = check_octet(idx, tag as u8);
    let mut r = mix((u64::from(tag) << 16) | u64::from(idx));
    for (i, o) in out[HEADER_OCTETS..].iter_mut().enumerate() {
        if i % 8 == 0 {
            r = mix(r);
        }
        *o = (r >> ((i % 8) * 8)) as u8;
    }
}

/// A DTMF digit in progress on the transmit side.
struct DtmfTx {
    tone: ToneGenerator,
    left_frames: u32,
    on: bool,
}

/// One B-channel's audio; see the module doc.
pub struct AudioChannel {
    active: bool,
    mode: AudioMode,
    tag: u32,
    /// Frames since `start`.
    now: u64,
    // Transmit.
    block: [u8; BLOCK_OCTETS],
    block_pos: usize,
    next_idx: u16,
    sent_at: [(u16, u64); SENT_HISTORY],
    digits: Digits,
    digit_next: usize,
    dtmf_delay_frames: u32,
    dtmf: Option<DtmfTx>,
    /// Echo mode: received octets waiting to go back (drivers hand over
    /// several frames at once, received before they are sent).
    echo: [u8; ECHO_OCTETS],
    echo_head: usize,
    echo_len: usize,
    // Receive.
    hist: [u8; BLOCK_OCTETS],
    hist_pos: usize,
    hist_fill: usize,
    expect: [u8; BLOCK_OCTETS],
    last_idx: Option<u16>,
    detector: DtmfDetector,
    pcm: [i16; DETECT_CHUNK],
    pcm_len: usize,
    /// A digit was heard since the last good block (see `blocks_excused_dtmf`).
    dtmf_heard: bool,
    stats: AudioStats,
}

impl Default for AudioChannel {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioChannel {
    pub fn new() -> AudioChannel {
        AudioChannel {
            active: false,
            mode: AudioMode::Test,
            tag: 0,
            now: 0,
            block: [IDLE; BLOCK_OCTETS],
            block_pos: BLOCK_OCTETS,
            next_idx: 0,
            sent_at: [(0, 0); SENT_HISTORY],
            digits: Digits::default(),
            digit_next: 0,
            dtmf_delay_frames: 0,
            dtmf: None,
            echo: [IDLE; ECHO_OCTETS],
            echo_head: 0,
            echo_len: 0,
            hist: [IDLE; BLOCK_OCTETS],
            hist_pos: 0,
            hist_fill: 0,
            expect: [0; BLOCK_OCTETS],
            last_idx: None,
            detector: DtmfDetector::new(),
            pcm: [0; DETECT_CHUNK],
            pcm_len: 0,
            dtmf_heard: false,
            stats: AudioStats::default(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// Starts the call's audio: `digits` go out `dtmf_delay_frames` in.
    pub fn start(&mut self, tag: u32, mode: AudioMode, digits: Digits, dtmf_delay_frames: u32) {
        *self = AudioChannel::new();
        self.active = true;
        self.tag = tag;
        self.mode = mode;
        self.digits = digits;
        self.dtmf_delay_frames = dtmf_delay_frames;
    }

    /// Stops and returns what was measured.
    pub fn stop(&mut self) -> AudioStats {
        self.active = false;
        self.stats.frames = self.now;
        self.stats
    }

    /// The octet to send in this frame.
    pub fn tx_octet(&mut self) -> u8 {
        if !self.active {
            return IDLE;
        }
        self.now += 1;
        if self.mode == AudioMode::Echo {
            if self.echo_len == 0 {
                return IDLE;
            }
            let o = self.echo[self.echo_head];
            self.echo_head = (self.echo_head + 1) % ECHO_OCTETS;
            self.echo_len -= 1;
            return o;
        }
        if let Some(o) = self.dtmf_octet() {
            return o;
        }
        if self.block_pos == BLOCK_OCTETS {
            make_block(self.tag, self.next_idx, &mut self.block);
            self.block_pos = 0;
        }
        let o = self.block[self.block_pos];
        self.block_pos += 1;
        if self.block_pos == BLOCK_OCTETS {
            let i = usize::from(self.next_idx) % SENT_HISTORY;
            self.sent_at[i] = (self.next_idx, self.now);
            self.next_idx = self.next_idx.wrapping_add(1);
            self.stats.blocks_sent += 1;
        }
        o
    }

    /// The DTMF octet of this frame, if a digit (or its pause) is going out.
    /// Digits start only on a block boundary so no block is cut.
    fn dtmf_octet(&mut self) -> Option<u8> {
        if self.dtmf.is_none() {
            let due = self.now > u64::from(self.dtmf_delay_frames);
            let d = *self.digits.as_bytes().get(self.digit_next)?;
            if !due || self.block_pos != BLOCK_OCTETS {
                return None;
            }
            self.digit_next += 1;
            let spec = ToneSpec::dtmf(d)?;
            self.dtmf = Some(DtmfTx {
                tone: ToneGenerator::new(spec),
                left_frames: DTMF_ON_FRAMES,
                on: true,
            });
        }
        let t = self.dtmf.as_mut()?;
        let o = if t.on {
            let mut s = [0i16; 1];
            t.tone.fill(&mut s);
            crate::line::g711::linear_to_alaw(s[0])
        } else {
            IDLE
        };
        t.left_frames -= 1;
        if t.left_frames == 0 {
            if t.on {
                t.on = false;
                t.left_frames = DTMF_OFF_FRAMES;
            } else {
                self.dtmf = None;
            }
        }
        Some(o)
    }

    /// One received octet; a detected DTMF digit is returned.
    pub fn rx_octet(&mut self, o: u8) -> Option<u8> {
        if !self.active {
            return None;
        }
        match self.mode {
            AudioMode::Test => self.check(o),
            AudioMode::Echo => {
                if self.echo_len == ECHO_OCTETS {
                    // Sending stopped keeping up: drop the oldest.
                    self.echo_head = (self.echo_head + 1) % ECHO_OCTETS;
                    self.echo_len -= 1;
                }
                self.echo[(self.echo_head + self.echo_len) % ECHO_OCTETS] = o;
                self.echo_len += 1;
            }
        }
        self.pcm[self.pcm_len] = alaw_to_linear(o);
        self.pcm_len += 1;
        if self.pcm_len < DETECT_CHUNK {
            return None;
        }
        self.pcm_len = 0;
        // The detector stops early only when its events are not drained:
        // they are, right below, so it takes the whole chunk.
        self.detector.handle_samples(&self.pcm);
        let mut digit = None;
        while let Some(ev) = self.detector.poll_event() {
            self.dtmf_heard = true;
            if let DtmfEvent::DigitStart { digit: d, .. } = ev {
                digit = Some(d);
            }
        }
        digit
    }

    fn hist_at(&self, k: usize) -> u8 {
        self.hist[(self.hist_pos + k) % BLOCK_OCTETS]
    }

    /// Is the last [`BLOCK_OCTETS`] received a block of ours?
    fn check(&mut self, o: u8) {
        self.hist[self.hist_pos] = o;
        self.hist_pos = (self.hist_pos + 1) % BLOCK_OCTETS;
        self.hist_fill = (self.hist_fill + 1).min(BLOCK_OCTETS);
        if self.hist_fill < BLOCK_OCTETS || (0..4).any(|k| self.hist_at(k) != SYNC[k]) {
            return;
        }
        let idx = u16::from_be_bytes([self.hist_at(4), self.hist_at(5)]);
        let tag8 = self.hist_at(6);
        if tag8 != self.tag as u8 || self.hist_at(7) != check_octet(idx, tag8) {
            return;
        }
        make_block(self.tag, idx, &mut self.expect);
        let good = (HEADER_OCTETS..BLOCK_OCTETS).all(|k| self.hist_at(k) == self.expect[k]);
        if !good {
            // Judged when the next good block shows the echo went on.
            self.stats.blocks_truncated += 1;
            return;
        }
        if self.dtmf_heard {
            self.stats.blocks_excused_dtmf += self.stats.blocks_truncated;
        } else {
            self.stats.blocks_mismatched += self.stats.blocks_truncated;
        }
        self.stats.blocks_truncated = 0;
        self.block_received(idx);
    }

    fn block_received(&mut self, idx: u16) {
        if let Some(last) = self.last_idx {
            let step = idx.wrapping_sub(last);
            if step == 0 || step > u16::MAX / 2 {
                self.stats.blocks_out_of_order += 1;
                return;
            }
            if self.dtmf_heard {
                self.stats.blocks_excused_dtmf += u64::from(step - 1);
            } else {
                self.stats.blocks_lost += u64::from(step - 1);
            }
        }
        self.dtmf_heard = false;
        self.last_idx = Some(idx);
        self.stats.blocks_received += 1;
        let (sent_idx, at) = self.sent_at[usize::from(idx) % SENT_HISTORY];
        if sent_idx == idx && at <= self.now {
            let rtt = u32::try_from(self.now - at).unwrap_or(u32::MAX);
            let s = &mut self.stats;
            s.rtt_frames_min = if s.blocks_received == 1 {
                rtt
            } else {
                s.rtt_frames_min.min(rtt)
            };
            s.rtt_frames_max = s.rtt_frames_max.max(rtt);
            s.rtt_frames_sum += u64::from(rtt);
        }
    }
}

/// Fuzz entry point for `fuzz/fuzz_targets/sim_audio_check.rs`: arbitrary
/// received octets (the far end's audio, which we do not control) into a
/// test-mode and an echo-mode channel, with our own blocks spliced in by
/// the first octet so that the checker's header and payload paths run.
/// Never panics; the counts stay consistent.
#[doc(hidden)]
pub fn fuzz_sim_audio(data: &[u8]) {
    let Some((&tag, rest)) = data.split_first() else {
        return;
    };
    let mut t = AudioChannel::new();
    let mut e = AudioChannel::new();
    t.start(u32::from(tag), AudioMode::Test, Digits::new("1#"), 0);
    e.start(0, AudioMode::Echo, Digits::default(), 0);
    let mut block = [0u8; BLOCK_OCTETS];
    for (i, &o) in rest.iter().enumerate() {
        let ours = t.tx_octet();
        // Octets below 0x20 splice in block `o` of our call instead.
        if o < 0x20 {
            make_block(u32::from(tag), u16::from(o), &mut block);
            for &b in &block {
                t.rx_octet(b);
            }
        }
        t.rx_octet(if i % 3 == 0 { ours } else { o });
        e.rx_octet(o);
        e.tx_octet();
    }
    let s = t.stop();
    assert!(s.rtt_frames_min <= s.rtt_frames_max || s.blocks_received == 0);
    assert!(s.blocks_sent <= rest.len() as u64 / BLOCK_OCTETS as u64 + 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_received_audio_is_taken_without_panic(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
            fuzz_sim_audio(&data);
        }

        #[test]
        fn an_echo_returns_every_octet_in_order(data in proptest::collection::vec(any::<u8>(), 1..600)) {
            let mut e = AudioChannel::new();
            e.start(0, AudioMode::Echo, Digits::default(), 0);
            // Receive in bursts, send as many: what a driver does.
            let mut out = Vec::new();
            for chunk in data.chunks(7) {
                for &o in chunk {
                    e.rx_octet(o);
                }
                for _ in chunk {
                    out.push(e.tx_octet());
                }
            }
            prop_assert_eq!(out, data);
        }
    }

    #[test]
    fn fuzz_seeds_run() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sim_audio_check");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            fuzz_sim_audio(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no seeds in {dir}");
    }

    /// Runs `a` (test) against `b` (echo) through a delay of `delay` frames
    /// each way for `frames`; returns a's stats and the digits each heard.
    fn run(
        frames: usize,
        delay: usize,
        corrupt_at: Option<usize>,
    ) -> (AudioStats, Vec<u8>, Vec<u8>) {
        let mut a = AudioChannel::new();
        let mut b = AudioChannel::new();
        a.start(0x1234_5678, AudioMode::Test, Digits::new("19#"), 400);
        b.start(0, AudioMode::Echo, Digits::default(), 0);
        let mut ab = std::collections::VecDeque::from(vec![IDLE; delay]);
        let mut ba = std::collections::VecDeque::from(vec![IDLE; delay]);
        let (mut da, mut db) = (Vec::new(), Vec::new());
        for i in 0..frames {
            let mut x = a.tx_octet();
            if corrupt_at == Some(i) {
                x ^= 0x01;
            }
            ab.push_back(x);
            ba.push_back(b.tx_octet());
            if let Some(d) = b.rx_octet(ab.pop_front().unwrap()) {
                db.push(d);
            }
            if let Some(d) = a.rx_octet(ba.pop_front().unwrap()) {
                da.push(d);
            }
        }
        (a.stop(), da, db)
    }

    #[test]
    fn echo_returns_every_block_with_the_round_trip_and_the_digits() {
        let (s, da, db) = run(16_000, 10, None);
        assert_eq!(db, b"19#");
        assert_eq!(da, b"19#");
        assert!(s.blocks_received > 0 && s.blocks_sent >= s.blocks_received);
        assert_eq!(s.blocks_lost, 0);
        assert_eq!(s.blocks_mismatched, 0);
        // Delay 10 each way plus the echo's one frame.
        assert_eq!((s.rtt_frames_min, s.rtt_frames_max), (21, 21));
        // Every block but those still in flight came back.
        assert!(s.blocks_sent - s.blocks_received <= 1, "{s:?}");
    }

    #[test]
    fn a_corrupted_octet_is_a_mismatch() {
        // Frame 110 is octet 14 of block 3, in its payload (no DTMF before
        // frame 400).
        let (s, _, _) = run(2_000, 3, Some(110));
        assert_eq!(s.blocks_mismatched, 1);
        assert_eq!(s.blocks_lost, 1, "the mismatched block is a gap too");
    }

    #[test]
    fn an_echo_stopping_mid_block_is_a_truncation_not_a_mismatch() {
        let mut a = AudioChannel::new();
        a.start(9, AudioMode::Test, Digits::default(), 0);
        for i in 0..(3 * BLOCK_OCTETS + 20) {
            let o = a.tx_octet();
            a.rx_octet(if i < 3 * BLOCK_OCTETS + 12 { o } else { IDLE });
        }
        for _ in 0..BLOCK_OCTETS {
            a.tx_octet();
            a.rx_octet(IDLE);
        }
        let s = a.stop();
        assert_eq!(
            (s.blocks_received, s.blocks_mismatched, s.blocks_truncated),
            (3, 0, 1)
        );
    }

    #[test]
    fn silence_is_no_digit_and_no_block() {
        let mut a = AudioChannel::new();
        a.start(7, AudioMode::Test, Digits::default(), 0);
        for i in 0..8000u32 {
            a.tx_octet();
            // Noise that is not ours: the other tag's blocks.
            assert_eq!(
                a.rx_octet((i.wrapping_mul(2_654_435_761) >> 24) as u8),
                None
            );
        }
        let s = a.stop();
        assert_eq!(s.blocks_received + s.blocks_mismatched, 0);
    }

    #[test]
    fn digits_keep_only_dtmf() {
        assert_eq!(Digits::new("12a#x*").as_str(), "12A#*");
        let long = Digits::new(&"1".repeat(40));
        assert_eq!(long.as_bytes().len(), MAX_DIGITS);
    }
}
