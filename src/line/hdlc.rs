//! Bit-level HDLC on a 64 kbit/s timeslot (the ISDN PRI D-channel on TS16).
//!
//! ISO/IEC 13239 framing as used by Q.921 §2: frames are delimited by the flag
//! `0x7E`, a zero is inserted after five consecutive ones inside a frame (and
//! removed on receipt), the frame check sequence is FCS-16 (reflected
//! polynomial `0x8408`, initial value `0xFFFF`, sent complemented, low octet
//! first) and seven or more consecutive ones abort a frame.
//!
//! Bit order (DESIGN.md §5): HDLC octets are sent least significant bit first,
//! and the first HDLC bit of each TS16 octet is its most significant bit.
//!
//! # Buffering
//!
//! Both halves own one fixed buffer of [`MAX_FRAME_OCTETS`] + 2 octets, set
//! up at construction; nothing allocates afterwards.
//!
//! - [`HdlcDecoder`]: fed one TS16 octet at a time with
//!   [`HdlcDecoder::handle_octet`]. When a good frame closes, the call returns
//!   a slice of the decoder's buffer holding the frame without its FCS. The
//!   slice lives until the next call; the caller copies it into a ring slot.
//!   At most one frame can close per octet (a frame plus its closing flag is
//!   longer than eight bits), so nothing is lost by returning one.
//! - [`HdlcEncoder`]: a frame is copied in by [`HdlcEncoder::load`] and stays
//!   in the encoder until its last bit has been produced by
//!   [`HdlcEncoder::poll_octet`]. [`HdlcEncoder::can_load`] turns true as soon
//!   as the last data bit has gone, so the caller can load the next frame
//!   while the closing flag is still being sent: that flag then also opens the
//!   next frame (shared flag). With nothing loaded the encoder sends flags.

use core::fmt;

/// The HDLC flag sequence `01111110`.
pub const FLAG: u8 = 0x7E;

/// Largest frame carried, counted without the FCS: Q.921 §5.9.3 N201 = 260
/// information octets plus two address and two control octets.
pub const MAX_FRAME_OCTETS: usize = 264;

/// Smallest frame delivered, without FCS: one address octet pair is the least
/// any HDLC user puts there. Shorter frames are counted as `short`.
pub const MIN_FRAME_OCTETS: usize = 2;

/// FCS-16 initial value (ISO/IEC 13239 §4.2.5.2, RFC 1662 Appendix C.2).
pub const FCS_INIT: u16 = 0xFFFF;

/// The remainder FCS-16 leaves over a frame that includes its own good FCS
/// (RFC 1662 Appendix C.2 `PPPGOODFCS16`).
pub const FCS_GOOD: u16 = 0xF0B8;

/// Octets of FCS following every frame.
pub const FCS_OCTETS: usize = 2;

const BUF_OCTETS: usize = MAX_FRAME_OCTETS + FCS_OCTETS;

/// Table for the reflected polynomial `x^16 + x^12 + x^5 + 1` (0x8408).
const FCS_TABLE: [u16; 256] = fcs_table();

const fn fcs_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut v = i as u16;
        let mut b = 0;
        while b < 8 {
            v = if v & 1 != 0 {
                (v >> 1) ^ 0x8408
            } else {
                v >> 1
            };
            b += 1;
        }
        table[i] = v;
        i += 1;
    }
    table
}

/// Runs FCS-16 over `data` starting from `fcs` (RFC 1662 Appendix C.2).
pub fn fcs16(mut fcs: u16, data: &[u8]) -> u16 {
    for &octet in data {
        fcs = (fcs >> 8) ^ FCS_TABLE[usize::from((fcs ^ u16::from(octet)) as u8)];
    }
    fcs
}

/// The two FCS octets sent after `frame`: the complemented FCS, low octet first.
pub fn fcs_octets(frame: &[u8]) -> [u8; 2] {
    (!fcs16(FCS_INIT, frame)).to_le_bytes()
}

/// What the decoder dropped and why; telemetry reads these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HdlcRxStats {
    /// Good frames delivered.
    pub frames: u64,
    /// Frames whose FCS did not check.
    pub fcs_errors: u64,
    /// Frames cut by seven or more ones.
    pub aborts: u64,
    /// Frames longer than [`MAX_FRAME_OCTETS`] (plus FCS), discarded.
    pub too_long: u64,
    /// Frames shorter than [`MIN_FRAME_OCTETS`] plus the FCS.
    pub short: u64,
    /// Frames that did not end on an octet boundary.
    pub misaligned: u64,
}

/// Receives HDLC frames from TS16 octets; see the module doc for buffering.
pub struct HdlcDecoder {
    buf: [u8; BUF_OCTETS],
    /// Octets of the current frame stored in `buf`.
    len: usize,
    /// Bits of the current frame received since the opening flag,
    /// including the (up to six) bits that may turn out to be the closing flag.
    nbits: usize,
    /// The partial octet, filled from the top (bits arrive LSB first).
    shift: u8,
    /// Consecutive ones seen.
    ones: u8,
    /// A flag has been seen and no abort or overflow since.
    in_frame: bool,
    stats: HdlcRxStats,
}

impl Default for HdlcDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HdlcDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdlcDecoder")
            .field("in_frame", &self.in_frame)
            .field("len", &self.len)
            .field("stats", &self.stats)
            .finish()
    }
}

impl HdlcDecoder {
    /// A decoder hunting for the first flag.
    pub fn new() -> Self {
        HdlcDecoder {
            buf: [0; BUF_OCTETS],
            len: 0,
            nbits: 0,
            shift: 0,
            ones: 0,
            in_frame: false,
            stats: HdlcRxStats::default(),
        }
    }

    pub fn stats(&self) -> HdlcRxStats {
        self.stats
    }

    /// Feeds one TS16 octet (first HDLC bit in the MSB). Returns the frame,
    /// FCS removed, if a good frame closed within this octet.
    pub fn handle_octet(&mut self, octet: u8) -> Option<&[u8]> {
        let mut closed = None;
        for i in (0..8).rev() {
            if let Some(n) = self.handle_bit((octet >> i) & 1) {
                closed = Some(n);
            }
        }
        closed.map(|n| &self.buf[..n])
    }

    /// Feeds a run of TS16 octets, handing each good frame to `on_frame`.
    pub fn handle_octets(&mut self, octets: &[u8], mut on_frame: impl FnMut(&[u8])) {
        for &octet in octets {
            if let Some(frame) = self.handle_octet(octet) {
                on_frame(frame);
            }
        }
    }

    /// One line bit. Returns the length of a good frame that just closed.
    fn handle_bit(&mut self, bit: u8) -> Option<usize> {
        if bit == 1 {
            self.ones += 1;
            match self.ones {
                // The sixth one is either part of a flag or the start of an
                // abort; it is not data. The five before it are already in the
                // frame and are discounted when the flag completes.
                6 => {}
                7 => self.abort(),
                8.. => self.ones = 7,
                _ => self.push(1),
            }
            return None;
        }
        let ones = self.ones;
        self.ones = 0;
        match ones {
            // A zero after five ones was inserted by the sender: delete it.
            5 => None,
            6 => self.flag(),
            _ => {
                self.push(0);
                None
            }
        }
    }

    fn push(&mut self, bit: u8) {
        if !self.in_frame {
            return;
        }
        self.shift = (self.shift >> 1) | (bit << 7);
        self.nbits += 1;
        if self.nbits.is_multiple_of(8) {
            if self.len == BUF_OCTETS {
                // Too long: discard and hunt for the next flag.
                self.stats.too_long += 1;
                self.in_frame = false;
                return;
            }
            self.buf[self.len] = self.shift;
            self.len += 1;
        }
    }

    fn abort(&mut self) {
        // Seven ones end whatever was in progress; the line is idle (mark)
        // or aborting. Only a frame with data in it counts as aborted.
        if self.in_frame && self.nbits > 6 {
            self.stats.aborts += 1;
        }
        self.in_frame = false;
    }

    /// A complete flag was seen: close the frame in progress and open the next.
    fn flag(&mut self) -> Option<usize> {
        let was_in_frame = self.in_frame;
        // The flag's leading zero and five ones were pushed as data.
        let data_bits = self.nbits.saturating_sub(6);
        let octets = self.len;
        self.in_frame = true;
        self.len = 0;
        self.nbits = 0;
        if !was_in_frame || data_bits == 0 {
            return None; // idle flags, or the first flag after hunting
        }
        if !data_bits.is_multiple_of(8) {
            self.stats.misaligned += 1;
            return None;
        }
        if octets < MIN_FRAME_OCTETS + FCS_OCTETS {
            self.stats.short += 1;
            return None;
        }
        if fcs16(FCS_INIT, &self.buf[..octets]) != FCS_GOOD {
            self.stats.fcs_errors += 1;
            return None;
        }
        self.stats.frames += 1;
        Some(octets - FCS_OCTETS)
    }
}

/// Why a frame was refused by [`HdlcEncoder::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdlcTxError {
    /// A frame is already loaded and has not started.
    Busy,
    /// Empty or longer than [`MAX_FRAME_OCTETS`].
    BadLength(usize),
}

impl fmt::Display for HdlcTxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HdlcTxError::Busy => f.write_str("HDLC encoder busy"),
            HdlcTxError::BadLength(n) => {
                write!(f, "HDLC frame of {n} octets (1..={MAX_FRAME_OCTETS})")
            }
        }
    }
}

impl std::error::Error for HdlcTxError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxPhase {
    /// Sending flag bit `n` (0..8).
    Flag(u8),
    /// Sending data bit `bit` of octet `pos`.
    Data { pos: usize, bit: u8 },
}

/// Produces TS16 octets carrying HDLC frames; see the module doc for buffering.
pub struct HdlcEncoder {
    buf: [u8; BUF_OCTETS],
    /// Octets in `buf` (frame + FCS); 0 = nothing loaded.
    len: usize,
    phase: TxPhase,
    ones: u8,
    /// Frames completely sent.
    frames_sent: u64,
}

impl Default for HdlcEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HdlcEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HdlcEncoder")
            .field("len", &self.len)
            .field("phase", &self.phase)
            .field("frames_sent", &self.frames_sent)
            .finish()
    }
}

impl HdlcEncoder {
    /// An encoder sending idle flags.
    pub fn new() -> Self {
        HdlcEncoder {
            buf: [0; BUF_OCTETS],
            len: 0,
            phase: TxPhase::Flag(0),
            ones: 0,
            frames_sent: 0,
        }
    }

    /// True when [`load`](Self::load) would take a frame.
    pub fn can_load(&self) -> bool {
        self.len == 0
    }

    /// Nothing loaded and nothing in flight: the line carries idle flags.
    pub fn is_idle(&self) -> bool {
        self.len == 0 && matches!(self.phase, TxPhase::Flag(_))
    }

    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    /// Copies `frame` (address..information, no FCS) in for sending and
    /// appends its FCS.
    pub fn load(&mut self, frame: &[u8]) -> Result<(), HdlcTxError> {
        if frame.is_empty() || frame.len() > MAX_FRAME_OCTETS {
            return Err(HdlcTxError::BadLength(frame.len()));
        }
        if !self.can_load() {
            return Err(HdlcTxError::Busy);
        }
        let n = frame.len();
        self.buf[..n].copy_from_slice(frame);
        self.buf[n..n + FCS_OCTETS].copy_from_slice(&fcs_octets(frame));
        self.len = n + FCS_OCTETS;
        Ok(())
    }

    /// The next TS16 octet to send, first HDLC bit in the MSB.
    pub fn poll_octet(&mut self) -> u8 {
        let mut octet = 0u8;
        for _ in 0..8 {
            octet = (octet << 1) | self.next_bit();
        }
        octet
    }

    fn next_bit(&mut self) -> u8 {
        if self.ones == 5 {
            // Zero-bit insertion after five data ones (ISO/IEC 13239 §4.3.1).
            self.ones = 0;
            return 0;
        }
        match self.phase {
            TxPhase::Flag(n) => {
                // Flag bits are never stuffed and end any run of data ones.
                self.ones = 0;
                let bit = (FLAG >> n) & 1;
                self.phase = if n < 7 {
                    TxPhase::Flag(n + 1)
                } else if self.len > 0 {
                    TxPhase::Data { pos: 0, bit: 0 }
                } else {
                    TxPhase::Flag(0)
                };
                bit
            }
            TxPhase::Data { pos, bit } => {
                let b = (self.buf[pos] >> bit) & 1;
                self.ones = if b == 1 { self.ones + 1 } else { 0 };
                self.phase = if bit < 7 {
                    TxPhase::Data { pos, bit: bit + 1 }
                } else if pos + 1 < self.len {
                    TxPhase::Data {
                        pos: pos + 1,
                        bit: 0,
                    }
                } else {
                    // Last data bit: the buffer is free for the next frame,
                    // which the closing flag will open.
                    self.len = 0;
                    self.frames_sent += 1;
                    TxPhase::Flag(0)
                };
                b
            }
        }
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/hdlc_decode.rs`): arbitrary TS16
/// octets through the decoder, then the first bytes as a frame through the
/// encoder and back. Never panics unless the codec is wrong.
#[doc(hidden)]
pub fn fuzz_hdlc_decode(data: &[u8]) {
    let mut dec = HdlcDecoder::new();
    dec.handle_octets(data, |frame| {
        assert!((MIN_FRAME_OCTETS..=MAX_FRAME_OCTETS).contains(&frame.len()));
    });
    let n = data.len().min(MAX_FRAME_OCTETS);
    if n == 0 {
        return;
    }
    let frame = &data[..n];
    let mut enc = HdlcEncoder::new();
    let mut dec = HdlcDecoder::new();
    enc.load(frame).expect("fresh encoder takes a frame");
    let mut got = false;
    // Worst case: (n + 2) octets, each stuffed to 9.6 bits, plus flags.
    for _ in 0..(2 * n + 16) {
        if let Some(out) = dec.handle_octet(enc.poll_octet()) {
            assert_eq!(out, frame);
            got = true;
        }
    }
    assert!(got || n < MIN_FRAME_OCTETS);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Packs a string of `0`/`1` (spaces ignored) into octets, first bit in
    /// the MSB; the tail is padded with flag bits.
    fn pack(bits: &str) -> Vec<u8> {
        let mut bits: Vec<u8> = bits
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b - b'0')
            .collect();
        let mut i = 0;
        while !bits.len().is_multiple_of(8) {
            bits.push((FLAG >> (i % 8)) & 1);
            i += 1;
        }
        bits.chunks(8)
            .map(|c| c.iter().fold(0, |o, &b| (o << 1) | b))
            .collect()
    }

    fn decode_all(octets: &[u8]) -> (Vec<Vec<u8>>, HdlcRxStats) {
        let mut dec = HdlcDecoder::new();
        let mut out = Vec::new();
        dec.handle_octets(octets, |f| out.push(f.to_vec()));
        (out, dec.stats())
    }

    /// Encodes `frames` back to back (loading each as soon as the encoder
    /// takes it) and returns the TS16 octets, with idle flags around.
    fn encode_all(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut enc = HdlcEncoder::new();
        let mut out = vec![enc.poll_octet()];
        let mut next = frames.iter();
        let mut pending = next.next();
        while pending.is_some() || !enc.is_idle() {
            if let Some(f) = pending
                && enc.can_load()
            {
                enc.load(f).unwrap();
                pending = next.next();
            }
            out.push(enc.poll_octet());
        }
        out.extend([enc.poll_octet(), enc.poll_octet()]);
        out
    }

    #[test]
    fn fcs_check_value_and_good_residue() {
        // CRC-16/X-25 (the HDLC FCS) check value over "123456789" is 0x906E.
        assert_eq!(!fcs16(FCS_INIT, b"123456789"), 0x906E);
        let mut framed = b"123456789".to_vec();
        framed.extend(fcs_octets(b"123456789"));
        assert_eq!(framed[9..], [0x6E, 0x90]);
        // RFC 1662 C.2: a frame followed by its FCS leaves 0xF0B8.
        assert_eq!(fcs16(FCS_INIT, &framed), FCS_GOOD);
    }

    #[test]
    fn fcs_of_q921_sabme() {
        // SABME, SAPI 0, TEI 0, user side: 00 01 7F. FCS from the bitwise
        // definition (ISO/IEC 13239 §4.2.5.2), computed independently here.
        let frame = [0x00, 0x01, 0x7F];
        let mut fcs: u16 = 0xFFFF;
        for &o in &frame {
            let mut v = o as u16;
            for _ in 0..8 {
                let x = (fcs ^ v) & 1;
                fcs >>= 1;
                if x != 0 {
                    fcs ^= 0x8408;
                }
                v >>= 1;
            }
        }
        assert_eq!(fcs16(FCS_INIT, &frame), fcs);
        assert_eq!(fcs_octets(&frame), (!fcs).to_le_bytes());
    }

    #[test]
    fn hand_built_bitstream_decodes() {
        // Frame 0x7E 0xFF; FCS 0xEB 0x6A (complemented, low octet first),
        // worked out by hand with the bitwise loop of `fcs_of_q921_sabme`.
        assert_eq!(fcs_octets(&[0x7E, 0xFF]), [0xEB, 0x6A]);
        // Each octet LSB first; the lone `0` groups are the inserted zeros,
        // one of them straddling the 0xFF / 0xEB boundary.
        let bits = "01111110 \
                    011111 0 10 \
                    11111 0 111 \
                    11 0 010111 \
                    01010110 \
                    01111110";
        let (frames, stats) = decode_all(&pack(bits));
        assert_eq!(frames, vec![vec![0x7E, 0xFF]], "{stats:?}");
        assert_eq!(stats.frames, 1);
    }

    #[test]
    fn back_to_back_frames_share_one_flag() {
        let a = [0x02u8, 0x01, 0x7F];
        let b = [0x00u8, 0x01, 0x01, 0x05];
        let mut bits = String::from("01111110");
        for frame in [&a[..], &b[..]] {
            let mut f = frame.to_vec();
            f.extend(fcs_octets(frame));
            let mut ones = 0;
            for o in f {
                for i in 0..8 {
                    let bit = (o >> i) & 1;
                    bits.push(if bit == 1 { '1' } else { '0' });
                    ones = if bit == 1 { ones + 1 } else { 0 };
                    if ones == 5 {
                        bits.push('0');
                        ones = 0;
                    }
                }
            }
            bits.push_str("01111110"); // closes this frame, opens the next
        }
        let (frames, stats) = decode_all(&pack(&bits));
        assert_eq!(frames, vec![a.to_vec(), b.to_vec()]);
        assert_eq!(
            stats,
            HdlcRxStats {
                frames: 2,
                ..Default::default()
            }
        );
        // The encoder, loaded as soon as it can take the second frame, makes
        // a stream the decoder splits into the same two frames.
        let enc = encode_all(&[a.to_vec(), b.to_vec()]);
        assert_eq!(decode_all(&enc).0, vec![a.to_vec(), b.to_vec()]);
    }

    #[test]
    fn bad_fcs_counted_and_next_frame_kept() {
        let mut enc = encode_all(&[vec![0x00, 0x01, 0x7F]]);
        let good = enc.clone();
        // Flip one bit inside the frame (octets 1.. are data after the idle flag).
        enc[2] ^= 0x10;
        enc.extend(&good);
        let (frames, stats) = decode_all(&enc);
        assert_eq!(frames, vec![vec![0x00, 0x01, 0x7F]]);
        assert_eq!(stats.frames, 1);
        assert_eq!(
            stats.fcs_errors + stats.misaligned + stats.aborts + stats.short,
            1
        );
    }

    #[test]
    fn fcs_error_counted_exactly() {
        // A frame whose FCS octets are wrong but which is otherwise well formed.
        let bits = "01111110 00000000 10000000 11000000 00000000 00000000 01111110";
        let (frames, stats) = decode_all(&pack(bits));
        assert!(frames.is_empty());
        assert_eq!(stats.fcs_errors, 1);
    }

    #[test]
    fn abort_on_seven_ones() {
        let bits = "01111110 00000000 10000000 1111111 01111110";
        let mut stream = pack(bits);
        stream.extend(encode_all(&[vec![0x00, 0x01, 0x7F]]));
        let (frames, stats) = decode_all(&stream);
        assert_eq!(frames, vec![vec![0x00, 0x01, 0x7F]]);
        assert_eq!(stats.aborts, 1);
        // Mark idle (all ones) between frames is not an abort.
        let mut idle = vec![0xFF; 4];
        idle.extend(encode_all(&[vec![0x00, 0x01, 0x7F]]));
        idle.extend([0xFF; 4]);
        let (frames, stats) = decode_all(&idle);
        assert_eq!(frames.len(), 1);
        assert_eq!(stats.aborts, 0);
    }

    #[test]
    fn over_long_frame_discarded_and_counted() {
        let long = vec![0x55u8; MAX_FRAME_OCTETS + 1];
        let mut bits = String::from("01111110");
        let mut f = long.clone();
        f.extend(fcs_octets(&long));
        for o in f {
            for i in 0..8 {
                bits.push(if (o >> i) & 1 == 1 { '1' } else { '0' });
            }
        }
        bits.push_str("01111110");
        let mut stream = pack(&bits);
        stream.extend(encode_all(&[vec![0x00, 0x01, 0x7F]]));
        let (frames, stats) = decode_all(&stream);
        assert_eq!(frames, vec![vec![0x00, 0x01, 0x7F]]);
        assert_eq!(stats.too_long, 1);
        // A frame of exactly the maximum passes.
        let max = vec![0xA5u8; MAX_FRAME_OCTETS];
        assert_eq!(
            decode_all(&encode_all(std::slice::from_ref(&max))).0,
            vec![max]
        );
        assert_eq!(
            HdlcEncoder::new().load(&long),
            Err(HdlcTxError::BadLength(MAX_FRAME_OCTETS + 1))
        );
    }

    #[test]
    fn short_frame_counted() {
        let bits = "01111110 00000000 01111110";
        let (_, stats) = decode_all(&pack(bits));
        assert_eq!(stats.short, 1);
    }

    #[test]
    fn encoder_refuses_second_frame_until_first_has_gone() {
        let mut enc = HdlcEncoder::new();
        enc.load(&[1, 2, 3]).unwrap();
        assert_eq!(enc.load(&[4, 5, 6]), Err(HdlcTxError::Busy));
        while !enc.can_load() {
            enc.poll_octet();
        }
        assert!(enc.load(&[4, 5, 6]).is_ok());
    }

    #[test]
    fn idle_encoder_sends_flags() {
        let mut enc = HdlcEncoder::new();
        assert!((0..8).all(|_| enc.poll_octet() == FLAG));
    }

    #[test]
    fn fuzz_corpus_seeds_run_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/hdlc_decode");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            fuzz_hdlc_decode(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no seeds in {dir}");
    }

    fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        let octet = prop_oneof![
            Just(0x7Eu8),
            Just(0x7D),
            Just(0xFF),
            Just(0x00),
            any::<u8>()
        ];
        prop::collection::vec(octet, MIN_FRAME_OCTETS..=MAX_FRAME_OCTETS)
    }

    proptest! {
        #[test]
        fn round_trip_random_frames(frames in prop::collection::vec(frame_strategy(), 1..6)) {
            let (got, stats) = decode_all(&encode_all(&frames));
            prop_assert_eq!(&got, &frames);
            prop_assert_eq!(stats.frames, frames.len() as u64);
        }

        #[test]
        fn round_trip_payloads_of_flag_escape_and_ones(
            which in 0usize..3, n in MIN_FRAME_OCTETS..=MAX_FRAME_OCTETS
        ) {
            let frame = vec![[0x7Eu8, 0x7D, 0xFF][which]; n];
            let frames = vec![frame.clone(), frame];
            prop_assert_eq!(decode_all(&encode_all(&frames)).0, frames);
        }

        #[test]
        fn decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
            fuzz_hdlc_decode(&data);
        }
    }
}
