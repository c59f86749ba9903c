//! Receiver reports and report blocks (RFC 3550 §6.4.2, §6.4.1).

use super::{BufferTooSmall, HEADER_LEN, Header, PacketType, RtcpError, be32, put32};

/// Octets of one report block.
pub const REPORT_BLOCK_LEN: usize = 24;
/// Most report blocks one SR/RR carries (5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// One reception report block (§6.4.1):
///
/// ```text
/// |                 SSRC_1 (SSRC of first source)                 |
/// | fraction lost |       cumulative number of packets lost       |
/// |           extended highest sequence number received           |
/// |                      interarrival jitter                      |
/// |                         last SR (LSR)                         |
/// |                   delay since last SR (DLSR)                  |
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a 24-bit signed field (§6.4.1: duplicates
    /// can make it negative); clamped on emit.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received, 0 if none.
    pub lsr: u32,
    /// Delay since that SR was received, in 1/65536 s, 0 if none.
    pub dlsr: u32,
}

/// §6.4.1: the largest and smallest values the 24-bit field holds.
pub const CUMULATIVE_LOST_MAX: i32 = 0x7F_FFFF;
pub const CUMULATIVE_LOST_MIN: i32 = -0x80_0000;

impl ReportBlock {
    /// Reads a block from exactly [`REPORT_BLOCK_LEN`] octets.
    pub fn parse(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative count.
        let lost = ((word(4) << 8) as i32) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            extended_highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        }
    }

    /// Writes the block into the first 24 octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), BufferTooSmall> {
        let out = buf.get_mut(..REPORT_BLOCK_LEN).ok_or(BufferTooSmall)?;
        let lost = self
            .cumulative_lost
            .clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX) as u32
            & 0x00FF_FFFF;
        put32(out, 0, self.ssrc)?;
        put32(out, 4, (self.fraction_lost as u32) << 24 | lost)?;
        put32(out, 8, self.extended_highest_seq)?;
        put32(out, 12, self.jitter)?;
        put32(out, 16, self.lsr)?;
        put32(out, 20, self.dlsr)
    }
}

/// Iterates over the report blocks of a checked SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    /// `bytes` holds whole blocks (the parser has checked `count * 24`).
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        ReportBlocks { bytes }
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        let (head, rest) = self.bytes.split_first_chunk::<REPORT_BLOCK_LEN>()?;
        self.bytes = rest;
        Some(ReportBlock::parse(head))
    }
}

/// Takes `count` report blocks from `body` (profile extensions after them
/// are allowed, §6.4.1, and ignored).
pub(crate) fn blocks(body: &[u8], count: u8) -> Result<&[u8], RtcpError> {
    body.get(..count as usize * REPORT_BLOCK_LEN)
        .ok_or(RtcpError::BadCount)
}

/// A checked receiver report (§6.4.2): the reporter and its blocks.
#[derive(Debug, Clone)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    blocks: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// Parses the packet (header included, padding removed).
    pub fn parse(packet: &'a [u8], header: &Header) -> Result<Self, RtcpError> {
        let ssrc = be32(packet, HEADER_LEN).ok_or(RtcpError::TooShort)?;
        let body = &packet[HEADER_LEN + 4..];
        let blocks = blocks(body, header.count)?;
        Ok(ReceiverReport { ssrc, blocks })
    }

    pub fn blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }

    /// Octets an RR with `n_blocks` blocks takes.
    pub fn buffer_len(n_blocks: usize) -> usize {
        HEADER_LEN + 4 + n_blocks * REPORT_BLOCK_LEN
    }

    /// Writes an RR into `buf`; returns its length.
    pub fn emit(
        ssrc: u32,
        blocks: &[ReportBlock],
        buf: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        if blocks.len() > MAX_REPORT_BLOCKS {
            return Err(BufferTooSmall);
        }
        let len = Self::buffer_len(blocks.len());
        let out = buf.get_mut(..len).ok_or(BufferTooSmall)?;
        Header::emit(blocks.len() as u8, PacketType::RR, len, out)?;
        put32(out, HEADER_LEN, ssrc)?;
        for (i, b) in blocks.iter().enumerate() {
            b.emit(&mut out[HEADER_LEN + 4 + i * REPORT_BLOCK_LEN..])?;
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trip_and_negative_loss() {
        let b = ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 40,
            lsr: 0xAABB_CCDD,
            dlsr: 0x0001_8000,
        };
        let mut buf = [0u8; 24];
        b.emit(&mut buf).unwrap();
        assert_eq!(&buf[4..8], &[25, 0xFF, 0xFF, 0xFD]);
        assert_eq!(ReportBlock::parse(&buf), b);
    }

    #[test]
    fn cumulative_lost_clamps_to_24_bits() {
        let mut buf = [0u8; 24];
        let big = ReportBlock {
            cumulative_lost: 0x0100_0000,
            ..Default::default()
        };
        big.emit(&mut buf).unwrap();
        assert_eq!(&buf[5..8], &[0x7F, 0xFF, 0xFF]);
        assert_eq!(
            ReportBlock::parse(&buf).cumulative_lost,
            CUMULATIVE_LOST_MAX
        );
        let small = ReportBlock {
            cumulative_lost: -0x0100_0000,
            ..Default::default()
        };
        small.emit(&mut buf).unwrap();
        assert_eq!(&buf[5..8], &[0x80, 0, 0]);
        assert_eq!(
            ReportBlock::parse(&buf).cumulative_lost,
            CUMULATIVE_LOST_MIN
        );
    }

    #[test]
    fn rr_emit_parse() {
        let blocks = [ReportBlock {
            ssrc: 7,
            jitter: 9,
            ..Default::default()
        }];
        let mut buf = [0u8; 64];
        let n = ReceiverReport::emit(0x1234, &blocks, &mut buf).unwrap();
        assert_eq!(n, 32);
        assert_eq!(&buf[..4], &[0x81, 201, 0, 7]);
        let h = Header::parse(&buf).unwrap();
        let rr = ReceiverReport::parse(&buf[..n], &h).unwrap();
        assert_eq!(rr.ssrc, 0x1234);
        assert_eq!(rr.blocks().collect::<Vec<_>>(), blocks);
        assert_eq!(
            ReceiverReport::emit(1, &blocks, &mut buf[..31]),
            Err(BufferTooSmall)
        );
    }
}
