//! RTCP (RFC 3550 §6): packet codecs, one file per packet type, the compound
//! packet rules, and the per-channel session that schedules reports.
//!
//! # Contract
//!
//! - Codecs follow the crate's wire style: a checked, borrowed view per
//!   packet type (`SenderReport<'a>`, `ReceiverReport<'a>`, `Sdes<'a>`,
//!   `Bye<'a>`), parsed once by [`compound::Compound::parse`] which applies
//!   the RFC 3550 §6.1 / A.2 validity checks to the whole datagram; writing
//!   goes through [`compound::CompoundWriter`] into a caller's buffer.
//!   Nothing allocates; every malformation is an [`RtcpError`] counted in
//!   [`RtcpErrorCounters`].
//! - [`session::RtcpSession`] is the sans-IO machine of one channel:
//!   `handle_rtcp(now, ntp, datagram)` per received RTCP datagram,
//!   `poll_timeout()` / `handle_timeout(time, reception, buf)` for the
//!   randomised report interval (§6.3), `on_rtp_sent` per RTP packet sent,
//!   `bye(...)` on disconnect, `poll_event()` for the far end's BYE.
//!   Time is the E1 sample count (8 kHz) for scheduling and an explicit
//!   64-bit NTP timestamp for report contents and round-trip times.

pub mod bye;
pub mod compound;
pub mod rr;
pub mod sdes;
pub mod session;
pub mod sr;

use std::fmt;

/// RTCP packet type (RFC 3550 §12.1, RFC 4585, RFC 3611), open: unknown
/// values are kept and skipped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketType(pub u8);

impl PacketType {
    pub const SR: PacketType = PacketType(200);
    pub const RR: PacketType = PacketType(201);
    pub const SDES: PacketType = PacketType(202);
    pub const BYE: PacketType = PacketType(203);
    pub const APP: PacketType = PacketType(204);
    /// RFC 4585 transport-layer feedback.
    pub const RTPFB: PacketType = PacketType(205);
    /// RFC 4585 payload-specific feedback.
    pub const PSFB: PacketType = PacketType(206);
    /// RFC 3611 extended reports.
    pub const XR: PacketType = PacketType(207);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            200 => "SR",
            201 => "RR",
            202 => "SDES",
            203 => "BYE",
            204 => "APP",
            205 => "RTPFB",
            206 => "PSFB",
            207 => "XR",
            _ => return None,
        })
    }
}

impl fmt::Debug for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "PacketType({})", self.0),
        }
    }
}

/// Why a received RTCP datagram was refused (RFC 3550 A.2: the whole
/// compound packet is discarded). Each variant has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// Shorter than a header, or than its packet type's fixed part.
    TooShort,
    /// §6.4.1: version must be 2.
    BadVersion,
    /// A.2: the first packet of a compound must be SR or RR.
    FirstNotReport,
    /// A.2: only the last packet of a compound may be padded.
    PaddingNotLast,
    /// §6.4.1: padding count zero or longer than the packet.
    BadPadding,
    /// A.2: the length fields must add up to the datagram length.
    LengthMismatch,
    /// Report count / source count needs more octets than the packet has.
    BadCount,
    /// §6.5: an SDES item runs past its packet, or a chunk is unterminated.
    BadSdes,
    /// §6.6: the BYE reason runs past its packet.
    BadBye,
}

impl RtcpError {
    pub const COUNT: usize = 9;
}

/// One counter per [`RtcpError`] variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpErrorCounters {
    pub by_kind: [u64; RtcpError::COUNT],
}

impl RtcpErrorCounters {
    pub fn count(&mut self, e: RtcpError) {
        self.by_kind[e as usize] += 1;
    }
    pub fn get(&self, e: RtcpError) -> u64 {
        self.by_kind[e as usize]
    }
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

/// The caller's buffer is too small for what was to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

/// Octets of the common header (§6.4.1).
pub const HEADER_LEN: usize = 4;

/// The common RTCP header (§6.4.1):
///
/// ```text
/// |V=2|P|    RC   |   PT=SR=200   |             length            |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub padding: bool,
    /// Report count, source count or subtype (5 bits).
    pub count: u8,
    pub packet_type: PacketType,
    /// Length in 32-bit words minus one.
    pub length_words: u16,
}

impl Header {
    /// Reads the header at the start of `buf` (version checked).
    pub fn parse(buf: &[u8]) -> Result<Header, RtcpError> {
        let [b0, b1, l0, l1, ..] = *buf else {
            return Err(RtcpError::TooShort);
        };
        if b0 >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        Ok(Header {
            padding: b0 & 0x20 != 0,
            count: b0 & 0x1F,
            packet_type: PacketType(b1),
            length_words: u16::from_be_bytes([l0, l1]),
        })
    }

    /// Octets of the whole packet, header included.
    pub fn packet_len(&self) -> usize {
        (self.length_words as usize + 1) * 4
    }

    /// Writes the header for a packet of `packet_len` octets (a multiple of
    /// 4, at least 4) into `buf`.
    pub fn emit(
        count: u8,
        packet_type: PacketType,
        packet_len: usize,
        buf: &mut [u8],
    ) -> Result<(), BufferTooSmall> {
        let words = (packet_len / 4).checked_sub(1).ok_or(BufferTooSmall)?;
        let words = u16::try_from(words).map_err(|_| BufferTooSmall)?;
        let out = buf.get_mut(..HEADER_LEN).ok_or(BufferTooSmall)?;
        out[0] = 0x80 | (count & 0x1F);
        out[1] = packet_type.0;
        out[2..4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (§6.4.1: LSR, and the
/// arrival time A of the round-trip computation), in 1/65536 s.
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Reads a big-endian u32 at `off`, if the slice has it.
pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Writes a big-endian u32 at `off`.
pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) -> Result<(), BufferTooSmall> {
    b.get_mut(off..off + 4)
        .ok_or(BufferTooSmall)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}
