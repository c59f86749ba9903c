//! G.704 §2.3 E1 frame structure and G.706 §4.1 frame alignment (basic frame).
//!
//! An E1 frame is 32 octets (TS0..TS31), 8000 frames per second. TS0 carries,
//! in alternate frames, the frame alignment signal (FAS, bits 2-8 = `0011011`)
//! and the non-FAS word (bit 2 = 1, bit 3 = A, the remote alarm indication,
//! bits 4-8 = Sa4..Sa8). Bit 1 (the MSB, first on the line) is Si.
//!
//! Transmit does the CRC-4 multiframe too (G.704 §2.3.3: MFAS `001011`, C1..C4
//! of the previous sub-multiframe, E bits); with CRC-4 off Si is 1 (G.704
//! §2.3.2). Receive does G.706 §4.1 basic frame alignment and, with
//! [`E1Deframer::with_crc4`], G.706 §4.2 CRC-4 multiframe alignment, the
//! §4.3 CRC-4 check per sub-multiframe (E bits to send back, far-end E bits
//! counted) and the §4.3.2 false-alignment guard; with
//! [`E1Deframer::with_annex_b`], the G.706 Annex B interworking with
//! non-CRC-4 equipment. Alarms are in [`super::e1_alarm`], G.826 counters in
//! [`super::e1_perf`], and the span that joins them in [`super::span`].
//!
//! # Contract
//!
//! - [`E1Framer::emit_frame`] takes the 31 payload timeslots of one frame
//!   (TS0 ignored) and writes TS0, alternating FAS and NFAS.
//! - [`E1Deframer::handle_octet`] takes line octets in arrival order (bits
//!   MSB first) with no assumption that a frame, or even a timeslot, starts
//!   on an octet boundary. It returns the 32 octets of a frame (realigned to
//!   timeslot boundaries) each time one is complete while in frame alignment.
//!   The returned array borrows the deframer and is valid until the next call.
//!   At most one frame completes per octet.

/// FAS in bits 2-8 of TS0 (G.704 §2.3.1, Table 4a).
pub const FAS: u8 = 0b001_1011;
/// Mask of bits 2-8 of TS0.
const FAS_MASK: u8 = 0x7F;
/// NFAS bit 2 is always 1 (G.704 Table 4a), so NFAS can never look like FAS.
const NFAS_BIT2: u8 = 0x40;
/// NFAS bit 3: A, remote alarm indication.
const NFAS_A: u8 = 0x20;
/// Octets in an E1 frame.
pub const FRAME_OCTETS: usize = 32;
const FRAME_BITS: usize = FRAME_OCTETS * 8;
/// G.706 §4.1.1: alignment is lost after three consecutive errored FAS.
pub const FAS_ERRORS_TO_LOSE: u8 = 3;

/// CRC-4 multiframe alignment signal in the Si bits of NFAS frames 1, 3, 5,
/// 7, 9, 11 of the multiframe (G.704 Table 5b).
pub const CRC4_MFAS: [u8; 6] = [0, 0, 1, 0, 1, 1];

/// Frames in a CRC-4 multiframe and in one sub-multiframe.
pub const MULTIFRAME_FRAMES: u8 = 16;
const SMF_FRAMES: u8 = 8;
/// G.706 §4.2: multiframe alignment must be found within 8 ms (64 frames)
/// of basic frame alignment, else the basic alignment is taken as spurious.
pub const MF_SEARCH_FRAMES: u64 = 64;
/// G.706 Annex B.2.2: no CRC-4 multiframe alignment within 400 ms (100 to
/// 500 ms allowed) of basic alignment means a non-CRC-4 far end.
pub const ANNEX_B_SEARCH_FRAMES: u64 = 3200;
/// G.706 §4.3.2: out of this many CRC-4 blocks ...
pub const CRC4_BLOCK_WINDOW: u16 = 1000;
/// ... this many errored ones mean a false frame alignment: search again.
pub const CRC4_ERRORS_TO_LOSE: u16 = 915;
/// MFAS `001011` as the last six NFAS Si bits, oldest first.
const MFAS_WORD: u8 = 0b00_1011;

const CRC4_TABLE: [u8; 256] = crc4_table();

const fn crc4_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = crc4_bits(0, i as u8);
        i += 1;
    }
    table
}

/// Runs the CRC-4 register over the eight bits of `octet`, MSB first.
const fn crc4_bits(mut crc: u8, octet: u8) -> u8 {
    let mut i = 8;
    while i > 0 {
        i -= 1;
        let feedback = ((crc >> 3) ^ (octet >> i)) & 1;
        crc = (crc << 1) & 0x0F;
        if feedback != 0 {
            crc ^= 0x03; // x^4 = x + 1 (mod x^4 + x + 1)
        }
    }
    crc
}

/// G.704 §2.3.3.5: the CRC-4 remainder (C1 in bit 3) of a block multiplied
/// by x^4 and divided by x^4 + x + 1. `crc` is the running value (0 at the
/// start of a sub-multiframe); the caller zeroes the C-bit positions.
pub fn crc4(mut crc: u8, octets: &[u8]) -> u8 {
    for &o in octets {
        // The register is four bits wide: fold its top into the octet's top.
        crc = CRC4_TABLE[usize::from(o ^ (crc << 4))];
    }
    crc
}

/// Transmit side: writes TS0 of each outgoing frame.
#[derive(Debug, Clone)]
pub struct E1Framer {
    /// Send the CRC-4 multiframe (G.704 §2.3.3).
    crc4: bool,
    /// Frame number within the CRC-4 multiframe, 0..16.
    mf_frame: u8,
    /// CRC-4 of the sub-multiframe being sent, C bits counted as zero.
    crc_acc: u8,
    /// C1..C4 being sent in this sub-multiframe: the previous one's CRC.
    crc_out: u8,
    /// E1, E2 (frames 13 and 15): 1 = no CRC error received (G.704 §2.3.3.4).
    e_bits: [bool; 2],
    /// The next frame carries the FAS.
    fas_next: bool,
    /// A bit: set while we are in red alarm (G.704 Table 4a note).
    rai: bool,
    /// Sa4..Sa8 in bits 4-8 of NFAS; G.704 recommends 1 where unused.
    sa_bits: u8,
}

impl Default for E1Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl E1Framer {
    /// A framer without CRC-4 (Si = 1 everywhere).
    pub fn new() -> Self {
        Self::with_crc4(false)
    }

    /// A framer sending the CRC-4 multiframe when `crc4`.
    pub fn with_crc4(crc4: bool) -> Self {
        E1Framer {
            crc4,
            mf_frame: 0,
            crc_acc: 0,
            crc_out: 0,
            e_bits: [true, true],
            fas_next: true,
            rai: false,
            sa_bits: 0x1F,
        }
    }

    /// Sends A = 1 in NFAS while `rai`.
    pub fn set_rai(&mut self, rai: bool) {
        self.rai = rai;
    }

    /// Sa4..Sa8, Sa4 in bit 4 of the low five bits.
    pub fn set_sa_bits(&mut self, sa: u8) {
        self.sa_bits = sa & 0x1F;
    }

    /// E bit `index` (0 = frame 13, 1 = frame 15): `false` reports a received
    /// sub-multiframe whose CRC-4 failed (G.704 §2.3.3.4); stays until changed.
    pub fn set_e_bit(&mut self, index: usize, crc_ok: bool) {
        self.e_bits[index & 1] = crc_ok;
    }

    /// Writes TS0 of `frame` and advances to the next frame.
    pub fn emit_frame(&mut self, frame: &mut [u8; FRAME_OCTETS]) {
        let si = self.si_bit();
        frame[0] = if self.fas_next {
            si | FAS
        } else {
            si | NFAS_BIT2 | if self.rai { NFAS_A } else { 0 } | self.sa_bits
        };
        self.fas_next = !self.fas_next;
        if self.crc4 {
            self.crc4_advance(frame);
        }
    }

    /// Si (bit 1 of TS0): 1 without CRC-4 (G.704 §2.3.2); with CRC-4 the C
    /// bits in FAS frames, the MFAS or E bits in NFAS frames (Table 5b).
    fn si_bit(&self) -> u8 {
        if !self.crc4 {
            return 0x80;
        }
        let f = self.mf_frame;
        let bit = if f.is_multiple_of(2) {
            // C1..C4 in frames 0, 2, 4, 6 (and 8, 10, 12, 14).
            (self.crc_out >> (3 - (f % SMF_FRAMES) / 2)) & 1
        } else if f < 12 {
            CRC4_MFAS[usize::from(f / 2)]
        } else {
            u8::from(self.e_bits[usize::from(f == 15)])
        };
        bit << 7
    }

    fn crc4_advance(&mut self, frame: &[u8; FRAME_OCTETS]) {
        // The C bits count as zero in the CRC (G.704 §2.3.3.5.2).
        let first = if self.mf_frame.is_multiple_of(2) {
            frame[0] & 0x7F
        } else {
            frame[0]
        };
        self.crc_acc = crc4(self.crc_acc, &[first]);
        self.crc_acc = crc4(self.crc_acc, &frame[1..]);
        self.mf_frame = (self.mf_frame + 1) % MULTIFRAME_FRAMES;
        if self.mf_frame.is_multiple_of(SMF_FRAMES) {
            self.crc_out = self.crc_acc;
            self.crc_acc = 0;
        }
    }
}

/// Frame alignment state (G.706 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignState {
    /// Searching for FAS, NFAS, FAS at every bit position.
    Search,
    /// In frame alignment.
    InFrame,
}

/// What the deframer counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeframerStats {
    pub frames: u64,
    pub fas_errors: u64,
    pub alignment_losses: u64,
    /// Frames in which alignment was (re)gained.
    pub alignments: u64,
    /// CRC-4 multiframe alignments gained (G.706 §4.2).
    pub multiframe_alignments: u64,
    /// Losses of multiframe alignment: no MFAS within 8 ms (G.706 §4.2).
    pub multiframe_losses: u64,
    /// Sub-multiframes whose CRC-4 was checked.
    pub crc4_blocks: u64,
    /// Sub-multiframes whose CRC-4 did not match C1..C4 (G.706 §4.3).
    pub crc4_errors: u64,
    /// Received E bits = 0: far-end block errors (G.704 §2.3.3.4).
    pub febe: u64,
    /// Frame alignment dropped by the G.706 §4.3.2 ≥915/1000 rule.
    pub crc4_alignment_losses: u64,
    /// G.706 Annex B: times the far end was taken as non-CRC-4.
    pub crc4_interworking: u64,
}

/// CRC-4 multiframe alignment state (G.706 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiframeState {
    /// CRC-4 not in use on this line.
    Off,
    /// Looking for two MFAS 2 ms (or a multiple) apart within 8 ms.
    Search,
    /// In CRC-4 multiframe alignment.
    InMultiframe,
    /// G.706 Annex B.2.2: no multiframe within 400 ms, the far end is taken
    /// as non-CRC-4: basic framing only, no CRC-4 check, until frame
    /// alignment is lost. The E bits we send should then be 0.
    Interworking,
}

/// Receive side: finds and keeps frame alignment; see the module contract.
pub struct E1Deframer {
    state: AlignState,
    /// The last eight line bits, newest in bit 0.
    window: u8,
    /// Bits seen modulo one frame, in search.
    bit_index: usize,
    /// Per bit phase of the frame, G.706 §4.1.2 steps: 0 nothing, 1 FAS seen
    /// one frame ago, 2 FAS then NFAS seen. All 256 phases are searched at
    /// once, which is the same as restarting the search one bit after a
    /// failed candidate.
    search: [u8; FRAME_BITS],
    /// In frame: bits of the current frame received so far.
    frame_bit: usize,
    /// In frame: whether the current frame should carry the FAS.
    fas_frame: bool,
    consecutive_fas_errors: u8,
    frame: [u8; FRAME_OCTETS],
    /// NFAS A bit of the last NFAS received.
    remote_alarm: bool,
    /// Expect the CRC-4 multiframe (G.706 §4.2).
    crc4: bool,
    mf_state: MultiframeState,
    /// Set on a G.706 §4.2 loss of multiframe alignment, cleared on gain.
    lomf: bool,
    /// G.706 Annex B automatic interworking with non-CRC-4 equipment.
    annex_b: bool,
    /// Annex B: frames since basic alignment without multiframe alignment.
    annex_b_frames: u64,
    /// Frames delivered since basic frame alignment was gained.
    frames_in_frame: u64,
    /// Si bits of the NFAS frames, newest in bit 0.
    mfas_shift: u8,
    /// Bit per frame phase mod 16 where an MFAS has ended since alignment.
    mfas_phases: u16,
    /// In multiframe: number (0..16) of the frame being delivered.
    mf_frame: u8,
    /// CRC-4 of the sub-multiframe being received, C bits as zero.
    crc_acc: u8,
    /// C1..C4 received in this sub-multiframe, C1 in bit 3.
    crc_received: u8,
    /// CRC-4 computed over the previous sub-multiframe, if it was whole.
    crc_prev: Option<u8>,
    /// The sub-multiframe being received began before multiframe alignment.
    smf_partial: bool,
    /// Result of the last check of SMF I and SMF II: `true` = no error.
    e_bits: [bool; 2],
    /// G.706 §4.3.2 window: blocks checked and errored in it.
    window_blocks: u16,
    window_errors: u16,
    stats: DeframerStats,
}

impl Default for E1Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for E1Deframer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("E1Deframer")
            .field("state", &self.state)
            .field("mf_state", &self.mf_state)
            .field("stats", &self.stats)
            .finish()
    }
}

impl E1Deframer {
    /// A deframer for a line without CRC-4.
    pub fn new() -> Self {
        Self::with_crc4(false)
    }

    /// A deframer that, when `crc4`, also needs CRC-4 multiframe alignment
    /// (G.706 §4.2) and checks CRC-4 (§4.3).
    pub fn with_crc4(crc4: bool) -> Self {
        E1Deframer {
            state: AlignState::Search,
            window: 0,
            bit_index: 0,
            search: [0; FRAME_BITS],
            frame_bit: 0,
            fas_frame: true,
            consecutive_fas_errors: 0,
            frame: [0; FRAME_OCTETS],
            remote_alarm: false,
            crc4,
            mf_state: if crc4 {
                MultiframeState::Search
            } else {
                MultiframeState::Off
            },
            lomf: false,
            annex_b: false,
            annex_b_frames: 0,
            frames_in_frame: 0,
            mfas_shift: 0,
            mfas_phases: 0,
            mf_frame: 0,
            crc_acc: 0,
            crc_received: 0,
            crc_prev: None,
            smf_partial: true,
            e_bits: [true, true],
            window_blocks: 0,
            window_errors: 0,
            stats: DeframerStats::default(),
        }
    }

    /// With `on` (and CRC-4), G.706 Annex B: when 8 ms pass without the
    /// MFAS the basic frame alignment is kept and the MFAS search starts
    /// again (a simplification of B.2.1's parallel basic-frame re-search),
    /// and after [`ANNEX_B_SEARCH_FRAMES`] the deframer settles in
    /// [`MultiframeState::Interworking`].
    pub fn with_annex_b(mut self, on: bool) -> Self {
        self.annex_b = on;
        self
    }

    pub fn multiframe_state(&self) -> MultiframeState {
        self.mf_state
    }

    /// Loss of CRC-4 multiframe alignment (G.706 §4.2): set when no MFAS
    /// was found within 8 ms of basic alignment, until multiframe alignment.
    pub fn loss_of_multiframe(&self) -> bool {
        self.lomf
    }

    /// The E bits to send back (G.704 §2.3.3.4), for
    /// [`E1Framer::set_e_bit`]: index 0 (frame 13) is the result of the
    /// last CRC-4 check of sub-multiframe I, index 1 (frame 15) of
    /// sub-multiframe II; `false` = that block was errored.
    pub fn e_bits(&self) -> [bool; 2] {
        self.e_bits
    }

    pub fn state(&self) -> AlignState {
        self.state
    }

    pub fn stats(&self) -> DeframerStats {
        self.stats
    }

    /// The A bit of the last NFAS received in frame alignment.
    pub fn remote_alarm(&self) -> bool {
        self.remote_alarm
    }

    /// Feeds one line octet, MSB first; returns a frame when one completes.
    pub fn handle_octet(&mut self, octet: u8) -> Option<&[u8; FRAME_OCTETS]> {
        let mut done = false;
        for i in (0..8).rev() {
            done |= self.handle_bit((octet >> i) & 1);
        }
        done.then_some(&self.frame)
    }

    fn handle_bit(&mut self, bit: u8) -> bool {
        self.window = (self.window << 1) | bit;
        match self.state {
            AlignState::Search => {
                self.search_bit();
                false
            }
            AlignState::InFrame => self.frame_bit_in(),
        }
    }

    /// G.706 §4.1.2: (a) FAS, (b) one frame later NFAS bit 2 = 1, (c) one
    /// frame later FAS again. Evaluated for the phase ending at this bit.
    fn search_bit(&mut self) {
        let phase = self.bit_index;
        self.bit_index = (self.bit_index + 1) % FRAME_BITS;
        let ts0 = self.window;
        let is_fas = ts0 & FAS_MASK == FAS;
        self.search[phase] = match self.search[phase] {
            1 if ts0 & NFAS_BIT2 != 0 => 2,
            2 if is_fas => {
                self.gain_alignment();
                return;
            }
            _ if is_fas => 1,
            _ => 0,
        };
    }

    fn gain_alignment(&mut self) {
        tracing::debug!(state = ?AlignState::InFrame, "E1 frame alignment gained");
        self.state = AlignState::InFrame;
        self.stats.alignments += 1;
        // The FAS frame whose TS0 just ended: keep its TS0, next comes TS1.
        self.frame[0] = self.window;
        self.frame_bit = 8;
        self.fas_frame = true;
        self.consecutive_fas_errors = 0;
        self.reset_multiframe();
    }

    fn frame_bit_in(&mut self) -> bool {
        self.frame_bit += 1;
        if self.frame_bit.is_multiple_of(8) {
            self.frame[self.frame_bit / 8 - 1] = self.window;
        }
        if self.frame_bit < FRAME_BITS {
            return false;
        }
        self.frame_bit = 0;
        let delivered = self.check_ts0();
        self.fas_frame = !self.fas_frame;
        delivered
    }

    /// Checks TS0 of the frame just completed; returns whether to deliver it.
    fn check_ts0(&mut self) -> bool {
        let ts0 = self.frame[0];
        if self.fas_frame {
            if ts0 & FAS_MASK == FAS {
                self.consecutive_fas_errors = 0;
            } else {
                self.stats.fas_errors += 1;
                self.consecutive_fas_errors += 1;
                if self.consecutive_fas_errors >= FAS_ERRORS_TO_LOSE {
                    self.lose_alignment();
                    return false;
                }
            }
        } else {
            self.remote_alarm = ts0 & NFAS_A != 0;
        }
        if self.crc4 && !self.crc4_frame() {
            return false;
        }
        self.stats.frames += 1;
        true
    }

    fn set_mf_state(&mut self, new: MultiframeState, why: &'static str) {
        if new != self.mf_state {
            tracing::debug!(old = ?self.mf_state, state = ?new, "E1 CRC-4 multiframe: {why}");
            self.mf_state = new;
        }
    }

    /// CRC-4 receive work for the frame just completed; returns `false` if
    /// frame alignment was dropped (the frame is then not delivered).
    fn crc4_frame(&mut self) -> bool {
        self.frames_in_frame += 1;
        match self.mf_state {
            MultiframeState::InMultiframe => self.crc4_check_frame(),
            MultiframeState::Interworking => true,
            _ => self.mfas_search_frame(),
        }
    }

    /// G.706 §4.2: the MFAS sits in the Si bits of NFAS frames 1..11;
    /// alignment needs two of them found at the same phase modulo 16
    /// frames (2 ms apart, or a multiple) within 8 ms of basic alignment.
    fn mfas_search_frame(&mut self) -> bool {
        let phase = (self.frames_in_frame % u64::from(MULTIFRAME_FRAMES)) as u16;
        if !self.fas_frame {
            self.mfas_shift = (self.mfas_shift << 1) | (self.frame[0] >> 7);
            if self.mfas_shift & 0x3F == MFAS_WORD {
                if self.mfas_phases & (1 << phase) != 0 {
                    self.set_mf_state(MultiframeState::InMultiframe, "alignment gained");
                    self.stats.multiframe_alignments += 1;
                    self.lomf = false;
                    // The frame just delivered was frame 11; frames 12..15
                    // end a sub-multiframe we saw only in part.
                    self.mf_frame = 12;
                    self.crc_acc = 0;
                    self.crc_received = 0;
                    self.crc_prev = None;
                    self.smf_partial = true;
                    return true;
                }
                self.mfas_phases |= 1 << phase;
            }
        }
        if self.frames_in_frame >= MF_SEARCH_FRAMES && self.annex_b {
            return self.annex_b_frame();
        }
        if self.frames_in_frame >= MF_SEARCH_FRAMES {
            tracing::info!(
                "E1 loss of CRC-4 multiframe alignment: no MFAS within 8 ms, \
                 frame alignment taken as spurious (G.706 4.2)"
            );
            self.lomf = true;
            self.stats.multiframe_losses += 1;
            self.restart_search();
            return false;
        }
        true
    }

    /// G.706 Annex B.2: 8 ms without MFAS keeps the basic alignment and
    /// restarts the MFAS search; 400 ms without it means a non-CRC-4 far end.
    fn annex_b_frame(&mut self) -> bool {
        self.annex_b_frames += self.frames_in_frame;
        self.lomf = true;
        self.frames_in_frame = 0;
        self.mfas_shift = 0;
        self.mfas_phases = 0;
        if self.annex_b_frames >= ANNEX_B_SEARCH_FRAMES {
            tracing::warn!(
                "E1 no CRC-4 multiframe within 400 ms: far end taken as non-CRC-4, \
                 basic framing kept (G.706 Annex B)"
            );
            self.set_mf_state(MultiframeState::Interworking, "non-CRC-4 far end");
            self.stats.crc4_interworking += 1;
            self.lomf = false;
        }
        true
    }

    /// G.706 §4.3: CRC-4 of each sub-multiframe (C-bit positions as zero,
    /// G.704 §2.3.3.5.2) against the C1..C4 of the next one; far-end E bits.
    fn crc4_check_frame(&mut self) -> bool {
        let f = self.mf_frame;
        self.mf_frame = (f + 1) % MULTIFRAME_FRAMES;
        let si = self.frame[0] >> 7;
        let first = if f.is_multiple_of(2) {
            // C1..C4 in frames 0, 2, 4, 6 of each sub-multiframe.
            self.crc_received = (self.crc_received << 1) | si;
            self.frame[0] & 0x7F
        } else {
            if f >= 12 && si == 0 {
                // E bits in frames 13 and 15 (G.704 §2.3.3.4).
                self.stats.febe += 1;
            }
            self.frame[0]
        };
        self.crc_acc = crc4(self.crc_acc, &[first]);
        self.crc_acc = crc4(self.crc_acc, &self.frame[1..]);
        if !self.mf_frame.is_multiple_of(SMF_FRAMES) {
            return true;
        }
        // A sub-multiframe ended: its C bits carry the previous one's CRC.
        let received = self.crc_received & 0x0F;
        let this = (!self.smf_partial).then_some(self.crc_acc);
        self.smf_partial = false;
        let computed = core::mem::replace(&mut self.crc_prev, this);
        self.crc_acc = 0;
        self.crc_received = 0;
        let Some(computed) = computed else {
            return true;
        };
        let ok = computed == received;
        // The block checked is the other sub-multiframe: II when I ends.
        let checked = usize::from(f < SMF_FRAMES);
        self.e_bits[checked] = ok;
        self.stats.crc4_blocks += 1;
        self.window_blocks += 1;
        if !ok {
            self.stats.crc4_errors += 1;
            self.window_errors += 1;
            tracing::trace!(smf = checked, computed, received, "E1 CRC-4 block error");
        }
        if self.window_errors >= CRC4_ERRORS_TO_LOSE {
            tracing::info!(
                errors = self.window_errors,
                blocks = self.window_blocks,
                "E1 frame alignment lost: >= {CRC4_ERRORS_TO_LOSE} of \
                 {CRC4_BLOCK_WINDOW} CRC-4 blocks errored (G.706 4.3.2)"
            );
            self.stats.crc4_alignment_losses += 1;
            self.restart_search();
            return false;
        }
        if self.window_blocks >= CRC4_BLOCK_WINDOW {
            self.window_blocks = 0;
            self.window_errors = 0;
        }
        true
    }

    fn lose_alignment(&mut self) {
        tracing::info!(
            state = ?AlignState::Search,
            "E1 frame alignment lost: {FAS_ERRORS_TO_LOSE} consecutive errored FAS (G.706 4.1.1)"
        );
        self.stats.alignment_losses += 1;
        self.restart_search();
    }

    /// Back to G.706 §4.1.2 frame search at every bit phase.
    fn restart_search(&mut self) {
        self.state = AlignState::Search;
        self.search = [0; FRAME_BITS];
        self.bit_index = 0;
        self.reset_multiframe();
    }

    /// Back to G.706 §4.2 multiframe search, as on each basic alignment.
    fn reset_multiframe(&mut self) {
        if self.crc4 {
            self.set_mf_state(MultiframeState::Search, "search (re)started");
        }
        self.frames_in_frame = 0;
        self.annex_b_frames = 0;
        self.mfas_shift = 0;
        self.mfas_phases = 0;
        self.window_blocks = 0;
        self.window_errors = 0;
        self.crc_prev = None;
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/e1_deframe.rs`): arbitrary line
/// octets through the deframer (without CRC-4, with it, with Annex B) and
/// through a whole [`super::span::RawSpan`]. Never panics; every delivered
/// frame is counted, and alignment is never lost more often than it was
/// gained.
#[doc(hidden)]
pub fn fuzz_e1_deframe(data: &[u8]) {
    for (crc4, annex_b) in [(false, false), (true, false), (true, true)] {
        let mut d = E1Deframer::with_crc4(crc4).with_annex_b(annex_b);
        let mut delivered = 0u64;
        for &o in data {
            if d.handle_octet(o).is_some() {
                delivered += 1;
            }
        }
        let s = d.stats();
        assert_eq!(delivered, s.frames);
        let losses = s.alignment_losses + s.multiframe_losses + s.crc4_alignment_losses;
        assert!(losses <= s.alignments);
        assert!(s.crc4_errors <= s.crc4_blocks);
    }
    super::span::fuzz_raw_span(data, false);
    super::span::fuzz_raw_span(data, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frames with idle A-law in the B-channels, flags in TS16 and a frame
    /// counter in TS1 so that frames can be told apart.
    fn line_frames(n: usize) -> Vec<[u8; FRAME_OCTETS]> {
        let mut tx = E1Framer::new();
        (0..n)
            .map(|i| {
                let mut f = [0xD5; FRAME_OCTETS];
                f[16] = 0x7E;
                f[1] = 0xD5 ^ ((i as u8) & 0x0A);
                tx.emit_frame(&mut f);
                f
            })
            .collect()
    }

    /// The line octets, shifted by `offset_bits` leading bits of `fill`.
    fn shifted(frames: &[[u8; FRAME_OCTETS]], offset_bits: usize, fill: u8) -> Vec<u8> {
        let mut bits: Vec<u8> = (0..offset_bits).map(|i| (fill >> (i % 8)) & 1).collect();
        for f in frames {
            for &o in f {
                bits.extend((0..8).rev().map(|i| (o >> i) & 1));
            }
        }
        bits.chunks(8)
            .filter(|c| c.len() == 8)
            .map(|c| c.iter().fold(0, |o, &b| (o << 1) | b))
            .collect()
    }

    fn deframe(d: &mut E1Deframer, octets: &[u8]) -> Vec<[u8; FRAME_OCTETS]> {
        octets
            .iter()
            .filter_map(|&o| d.handle_octet(o).copied())
            .collect()
    }

    #[test]
    fn framer_alternates_fas_and_nfas() {
        let f = line_frames(4);
        assert_eq!(f[0][0], 0x9B); // Si=1, 0011011
        assert_eq!(f[1][0], 0xDF); // Si=1, 1, A=0, Sa4-8 = 1
        assert_eq!(f[2][0], 0x9B);
        let mut tx = E1Framer::new();
        tx.set_rai(true);
        tx.set_sa_bits(0);
        let mut g = [0; FRAME_OCTETS];
        tx.emit_frame(&mut g);
        tx.emit_frame(&mut g);
        assert_eq!(g[0], 0xE0);
    }

    #[test]
    fn crc4_hand_computed_vectors() {
        // All zeros divide evenly.
        assert_eq!(crc4(0, &[0; 256]), 0);
        // A lone 1 as the last bit: x^4 mod (x^4+x+1) = x + 1.
        assert_eq!(crc4(0, &[0x01]), 0b0011);
        // One bit earlier: x^5 = x^2 + x.
        assert_eq!(crc4(0, &[0x02]), 0b0110);
        // The MSB of a one-octet block is x^7, times x^4 is x^11:
        // x^4=x+1, x^8=x^2+1, x^11=x^5+x^3=x^3+x^2+x.
        assert_eq!(crc4(0, &[0x80]), 0b1110);
        // Linearity and running value: two halves equal the whole.
        let block: Vec<u8> = (0..=255).collect();
        assert_eq!(crc4(crc4(0, &block[..100]), &block[100..]), crc4(0, &block));
        // The table matches the bitwise register.
        let bitwise = block.iter().fold(0, |c, &o| crc4_bits(c, o));
        assert_eq!(crc4(0, &block), bitwise);
    }

    #[test]
    fn crc4_multiframe_transmitted() {
        let mut tx = E1Framer::with_crc4(true);
        tx.set_e_bit(1, false);
        let frames: Vec<[u8; FRAME_OCTETS]> = (0..48)
            .map(|i| {
                let mut f = [(i * 7) as u8; FRAME_OCTETS];
                tx.emit_frame(&mut f);
                f
            })
            .collect();
        let si = |f: &[u8; FRAME_OCTETS]| f[0] >> 7;
        for mf in 0..3 {
            let m = &frames[mf * 16..mf * 16 + 16];
            let mfas: Vec<u8> = [1, 3, 5, 7, 9, 11].iter().map(|&i| si(&m[i])).collect();
            assert_eq!(mfas, CRC4_MFAS);
            assert_eq!((si(&m[13]), si(&m[15])), (1, 0));
        }
        // C1..C4 of each sub-multiframe equal the CRC-4 of the one before,
        // computed here bitwise with the C bits zeroed.
        for smf in 1..6 {
            let mut crc = 0;
            for (j, f) in frames[(smf - 1) * 8..smf * 8].iter().enumerate() {
                let mut f = *f;
                if j % 2 == 0 {
                    f[0] &= 0x7F;
                }
                crc = f.iter().fold(crc, |c, &o| crc4_bits(c, o));
            }
            let sent: u8 = (0..4).fold(0, |c, k| (c << 1) | si(&frames[smf * 8 + 2 * k]));
            assert_eq!(sent, crc, "sub-multiframe {smf}");
        }
        // The basic-frame deframer aligns on a CRC-4 line (Si is not FAS).
        let mut d = E1Deframer::new();
        let out = deframe(&mut d, &shifted(&frames, 77, 0));
        assert_eq!(d.state(), AlignState::InFrame);
        assert_eq!(out[0], frames[2]);
    }

    #[test]
    fn alignment_lost_after_three_errored_fas_then_regained() {
        let mut frames = line_frames(40);
        let mut d = E1Deframer::new();
        // Two errored FAS in a row: alignment kept (G.706 4.1.1).
        frames[10][0] ^= 0x01;
        frames[12][0] ^= 0x01;
        // Three in a row: lost.
        for i in [20, 22, 24] {
            frames[i][0] ^= 0x04;
        }
        let out = deframe(&mut d, &shifted(&frames, 0, 0));
        let s = d.stats();
        assert_eq!(s.fas_errors, 5);
        assert_eq!(s.alignment_losses, 1);
        assert_eq!(s.alignments, 2);
        assert_eq!(d.state(), AlignState::InFrame);
        assert!(out.contains(&frames[12]) && out.contains(&frames[39]));
    }

    #[test]
    fn remote_alarm_bit_read_from_nfas() {
        let mut tx = E1Framer::new();
        tx.set_rai(true);
        let mut line = Vec::new();
        for _ in 0..6 {
            let mut f = [0xD5; FRAME_OCTETS];
            tx.emit_frame(&mut f);
            line.extend(f);
        }
        let mut d = E1Deframer::new();
        deframe(&mut d, &line);
        assert!(d.remote_alarm());
    }

    #[test]
    fn fuzz_corpus_seeds_run_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/e1_deframe");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            fuzz_e1_deframe(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0);
    }

    /// `n` frames from a CRC-4 framer, payload varying per frame so the
    /// CRC-4 of each sub-multiframe differs.
    fn crc4_line(tx: &mut E1Framer, n: usize) -> Vec<[u8; FRAME_OCTETS]> {
        (0..n)
            .map(|i| {
                let mut f = [0xD5; FRAME_OCTETS];
                f[1] = i as u8;
                f[2] = (i >> 8) as u8;
                f[16] = 0x7E;
                tx.emit_frame(&mut f);
                f
            })
            .collect()
    }

    #[test]
    fn crc4_round_trip_aligns_and_counts_no_errors() {
        let mut tx = E1Framer::with_crc4(true);
        let frames = crc4_line(&mut tx, 104 * 16);
        let mut d = E1Deframer::with_crc4(true);
        assert_eq!(d.multiframe_state(), MultiframeState::Search);
        let out = deframe(&mut d, &shifted(&frames, 77, 0xA5));
        assert_eq!(d.state(), AlignState::InFrame);
        assert_eq!(d.multiframe_state(), MultiframeState::InMultiframe);
        assert!(!d.loss_of_multiframe());
        let s = d.stats();
        assert_eq!(s.multiframe_alignments, 1);
        assert_eq!(s.multiframe_losses, 0);
        assert_eq!(s.alignments, 1);
        // 100 multiframes and more: two blocks each, all good.
        assert!(s.crc4_blocks >= 200, "{s:?}");
        assert_eq!(s.crc4_errors, 0);
        assert_eq!(s.febe, 0);
        assert_eq!(d.e_bits(), [true, true]);
        assert_eq!(&out[..], &frames[2..2 + out.len()]);
    }

    #[test]
    fn crc4_non_crc4_line_loses_multiframe_and_searches_again() {
        // Si = 1 everywhere: no MFAS, so no multiframe alignment within
        // 8 ms of each basic alignment (G.706 4.2).
        let frames = line_frames(400);
        let mut d = E1Deframer::with_crc4(true);
        let mut states = Vec::new();
        for o in shifted(&frames, 13, 0) {
            d.handle_octet(o);
            states.push(d.multiframe_state());
        }
        let s = d.stats();
        assert!(!states.contains(&MultiframeState::InMultiframe));
        assert!(d.loss_of_multiframe());
        assert_eq!(s.multiframe_alignments, 0);
        // 400 frames: one loss per 64 frames in frame plus the 3-frame search.
        assert!((5..=6).contains(&s.multiframe_losses), "{s:?}");
        assert_eq!(s.alignments, s.multiframe_losses + 1);
        assert_eq!(s.alignment_losses, 0);
        assert_eq!(s.crc4_blocks, 0);
        // The same line on a deframer without CRC-4 is simply in frame.
        let mut plain = E1Deframer::new();
        deframe(&mut plain, &shifted(&frames, 13, 0));
        assert_eq!(plain.multiframe_state(), MultiframeState::Off);
        assert_eq!(plain.stats().alignments, 1);
    }

    #[test]
    fn annex_b_keeps_basic_framing_and_settles_on_interworking_after_400_ms() {
        let frames = line_frames(3400);
        let mut d = E1Deframer::with_crc4(true).with_annex_b(true);
        let mut states = Vec::new();
        let out = deframe_with(&mut d, &shifted(&frames, 5, 0), |d| {
            states.push((d.multiframe_state(), d.loss_of_multiframe()));
        });
        let s = d.stats();
        // Aligned once on the third frame, never dropped (unlike plain
        // G.706 4.2, which gives up on the basic alignment every 8 ms).
        assert_eq!((s.alignments, s.multiframe_losses), (1, 0));
        assert_eq!(d.multiframe_state(), MultiframeState::Interworking);
        assert_eq!(s.crc4_interworking, 1);
        assert!(!d.loss_of_multiframe());
        // LOMF from 8 ms after alignment until the 400 ms timer ran out.
        let first_interworking = states
            .iter()
            .position(|&(m, _)| m == MultiframeState::Interworking)
            .unwrap();
        // On the 3200th frame in alignment: 400 ms.
        assert_eq!(first_interworking + 1, ANNEX_B_SEARCH_FRAMES as usize);
        assert!(
            states[100..first_interworking]
                .iter()
                .all(|&(_, lomf)| lomf)
        );
        assert_eq!(&out[..], &frames[2..2 + out.len()]);
        assert_eq!(s.crc4_blocks, 0);
        // A CRC-4 far end is still found as usual with Annex B on.
        let mut tx = E1Framer::with_crc4(true);
        let frames = crc4_line(&mut tx, 20 * 16);
        let mut d = E1Deframer::with_crc4(true).with_annex_b(true);
        deframe(&mut d, &shifted(&frames, 200, 0x3C));
        assert_eq!(d.multiframe_state(), MultiframeState::InMultiframe);
        assert_eq!(d.stats().crc4_errors, 0);
    }

    /// Like `deframe`, calling `each` after every delivered frame.
    fn deframe_with(
        d: &mut E1Deframer,
        octets: &[u8],
        mut each: impl FnMut(&E1Deframer),
    ) -> Vec<[u8; FRAME_OCTETS]> {
        let mut out = Vec::new();
        for &o in octets {
            if let Some(f) = d.handle_octet(o) {
                out.push(*f);
                each(d);
            }
        }
        out
    }

    #[test]
    fn crc4_one_flipped_bit_is_one_error_and_one_e_bit_back() {
        let mut tx = E1Framer::with_crc4(true);
        let mut frames = crc4_line(&mut tx, 64 * 16);
        // Frame 500 is frame 4 of its multiframe: sub-multiframe I.
        frames[500][5] ^= 0x10;
        let mut rx = E1Deframer::with_crc4(true);
        // The far end: our framer loops the E bits back to its deframer.
        let mut back_tx = E1Framer::with_crc4(true);
        let mut far = E1Deframer::with_crc4(true);
        let mut e0_false_frames = 0;
        for o in shifted(&frames, 3, 0) {
            if rx.handle_octet(o).is_some() {
                let e = rx.e_bits();
                assert!(e[1], "sub-multiframe II was never errored");
                e0_false_frames += usize::from(!e[0]);
                back_tx.set_e_bit(0, e[0]);
                back_tx.set_e_bit(1, e[1]);
                let mut f = [0x55; FRAME_OCTETS];
                back_tx.emit_frame(&mut f);
                for b in f {
                    far.handle_octet(b);
                }
            }
        }
        let s = rx.stats();
        assert_eq!(s.crc4_errors, 1, "{s:?}");
        assert!(s.crc4_blocks > 100);
        // E1 = 0 stands until the next check of sub-multiframe I, one
        // multiframe later: exactly one E bit = 0 goes back.
        assert_eq!(e0_false_frames, 16);
        let f = far.stats();
        assert_eq!(far.multiframe_state(), MultiframeState::InMultiframe);
        assert_eq!(f.febe, 1, "{f:?}");
        assert_eq!(f.crc4_errors, 0);
    }

    #[test]
    fn crc4_far_end_e_bits_counted() {
        let mut tx = E1Framer::with_crc4(true);
        tx.set_e_bit(1, false);
        let frames = crc4_line(&mut tx, 100 * 16);
        let mut d = E1Deframer::with_crc4(true);
        let mut multiframes = 0;
        for o in shifted(&frames, 0, 0) {
            let in_mf = d.multiframe_state() == MultiframeState::InMultiframe;
            if d.handle_octet(o).is_some() && in_mf && d.mf_frame == 0 {
                multiframes += 1;
            }
        }
        let s = d.stats();
        assert_eq!(d.multiframe_state(), MultiframeState::InMultiframe);
        // One E2 = 0 per multiframe received in multiframe alignment.
        assert!(multiframes >= 95, "{multiframes}");
        assert!((multiframes..=multiframes + 1).contains(&s.febe), "{s:?}");
        assert_eq!(s.crc4_errors, 0);
    }

    #[test]
    fn crc4_915_of_1000_errored_blocks_lose_frame_alignment() {
        let run = |every_smf: usize| {
            let mut tx = E1Framer::with_crc4(true);
            let mut frames = crc4_line(&mut tx, 1100 * 8);
            for smf in (0..frames.len() / 8).step_by(every_smf) {
                frames[smf * 8 + 3][9] ^= 0x01;
            }
            let mut d = E1Deframer::with_crc4(true);
            let mut errors_at_loss = None;
            for o in shifted(&frames, 0, 0) {
                d.handle_octet(o);
                if errors_at_loss.is_none() && d.stats().crc4_alignment_losses > 0 {
                    errors_at_loss = Some(d.stats().crc4_errors);
                    assert_eq!(d.state(), AlignState::Search);
                }
            }
            (d, errors_at_loss)
        };
        // Every block errored: lost at the 915th (G.706 4.3.2), then found again.
        let (d, at) = run(1);
        assert_eq!(at, Some(u64::from(CRC4_ERRORS_TO_LOSE)));
        assert_eq!(d.stats().alignments, 2);
        assert_eq!(d.state(), AlignState::InFrame);
        // Every other block errored: far below the threshold, kept.
        let (d, at) = run(2);
        assert_eq!(at, None);
        assert!(d.stats().crc4_errors > 500);
        assert_eq!(d.stats().alignments, 1);
    }

    proptest! {
        #[test]
        fn alignment_found_from_every_bit_offset(offset in 0usize..256, fill in any::<u8>()) {
            let frames = line_frames(8);
            let mut d = E1Deframer::new();
            let out = deframe(&mut d, &shifted(&frames, offset, fill));
            prop_assert_eq!(d.state(), AlignState::InFrame);
            // Aligned on the third TS0 seen (FAS, NFAS, FAS): frames 2.. out,
            // bit-exact, whatever the offset (the last may be cut short).
            prop_assert!(out.len() >= 4);
            prop_assert_eq!(&out[..], &frames[2..2 + out.len()]);
        }

        #[test]
        fn crc4_multiframe_found_from_every_bit_offset(offset in 0usize..256, fill in any::<u8>()) {
            let mut tx = E1Framer::with_crc4(true);
            let frames = crc4_line(&mut tx, 12 * 16);
            let mut d = E1Deframer::with_crc4(true);
            let out = deframe(&mut d, &shifted(&frames, offset, fill));
            prop_assert_eq!(d.multiframe_state(), MultiframeState::InMultiframe);
            prop_assert!(d.stats().crc4_blocks >= 14);
            prop_assert_eq!(d.stats().crc4_errors, 0);
            prop_assert_eq!(&out[..], &frames[2..2 + out.len()]);
        }

        #[test]
        fn alignment_kept_through_isolated_bit_errors(
            offset in 0usize..256, errs in prop::collection::vec((4usize..60, 0usize..256), 1..6)
        ) {
            let frames = line_frames(64);
            let mut line = shifted(&frames, offset, 0xFF);
            // Hit one bit in each of a few distinct frames: at most one FAS
            // error in a row, which G.706 4.1.1 rides through.
            let mut seen = std::collections::BTreeSet::new();
            for (frame, bit) in errs {
                if seen.insert(frame / 2) {
                    let pos = offset + frame / 2 * 2 * FRAME_BITS + bit;
                    line[pos / 8] ^= 0x80 >> (pos % 8);
                }
            }
            let mut d = E1Deframer::new();
            let _ = deframe(&mut d, &line);
            prop_assert_eq!(d.stats().alignment_losses, 0);
            prop_assert_eq!(d.state(), AlignState::InFrame);
        }
    }
}
