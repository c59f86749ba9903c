//! Sender reports (RFC 3550 §6.4.1).

use super::rr::{MAX_REPORT_BLOCKS, REPORT_BLOCK_LEN, ReportBlock, ReportBlocks, blocks};
use super::{BufferTooSmall, HEADER_LEN, Header, PacketType, RtcpError, be32, put32};

/// Octets of the sender info section.
pub const SENDER_INFO_LEN: usize = 20;

/// The sender info of an SR (§6.4.1):
///
/// ```text
/// |              NTP timestamp, most significant word             |
/// |             NTP timestamp, least significant word             |
/// |                         RTP timestamp                         |
/// |                     sender's packet count                     |
/// |                      sender's octet count                     |
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (seconds since 1900 in the high word).
    pub ntp: u64,
    /// The RTP timestamp of the same instant as `ntp`.
    pub rtp_ts: u32,
    /// RTP data packets sent since the start (wraps at 2^32).
    pub packet_count: u32,
    /// Payload octets sent since the start (wraps at 2^32).
    pub octet_count: u32,
}

/// A checked sender report: reporter, sender info and report blocks.
#[derive(Debug, Clone)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    pub info: SenderInfo,
    blocks: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// Parses the packet (header included, padding removed).
    pub fn parse(packet: &'a [u8], header: &Header) -> Result<Self, RtcpError> {
        let field = |i: usize| be32(packet, HEADER_LEN + 4 * i).ok_or(RtcpError::TooShort);
        let ssrc = field(0)?;
        let info = SenderInfo {
            ntp: (field(1)? as u64) << 32 | field(2)? as u64,
            rtp_ts: field(3)?,
            packet_count: field(4)?,
            octet_count: field(5)?,
        };
        let body = &packet[HEADER_LEN + 4 + SENDER_INFO_LEN..];
        let blocks = blocks(body, header.count)?;
        Ok(SenderReport { ssrc, info, blocks })
    }

    pub fn blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks::new(self.blocks)
    }

    /// Octets an SR with `n_blocks` blocks takes.
    pub fn buffer_len(n_blocks: usize) -> usize {
        HEADER_LEN + 4 + SENDER_INFO_LEN + n_blocks * REPORT_BLOCK_LEN
    }

    /// Writes an SR into `buf`; returns its length.
    pub fn emit(
        ssrc: u32,
        info: &SenderInfo,
        blocks: &[ReportBlock],
        buf: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        if blocks.len() > MAX_REPORT_BLOCKS {
            return Err(BufferTooSmall);
        }
        let len = Self::buffer_len(blocks.len());
        let out = buf.get_mut(..len).ok_or(BufferTooSmall)?;
        Header::emit(blocks.len() as u8, PacketType::SR, len, out)?;
        put32(out, 4, ssrc)?;
        put32(out, 8, (info.ntp >> 32) as u32)?;
        put32(out, 12, info.ntp as u32)?;
        put32(out, 16, info.rtp_ts)?;
        put32(out, 20, info.packet_count)?;
        put32(out, 24, info.octet_count)?;
        for (i, b) in blocks.iter().enumerate() {
            b.emit(&mut out[HEADER_LEN + 4 + SENDER_INFO_LEN + i * REPORT_BLOCK_LEN..])?;
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_layout_and_round_trip() {
        let info = SenderInfo {
            ntp: 0xE5A1_2B3C_8000_0000,
            rtp_ts: 160_000,
            packet_count: 1000,
            octet_count: 160_000,
        };
        let blk = ReportBlock {
            ssrc: 0xBEEF,
            fraction_lost: 1,
            cumulative_lost: 2,
            extended_highest_seq: 3,
            jitter: 4,
            lsr: 5,
            dlsr: 6,
        };
        let mut buf = [0u8; 64];
        let n = SenderReport::emit(0xCAFE, &info, &[blk], &mut buf).unwrap();
        assert_eq!(n, 52);
        #[rustfmt::skip]
        let want: [u8; 28] = [
            0x81, 200, 0, 12,
            0, 0, 0xCA, 0xFE,
            0xE5, 0xA1, 0x2B, 0x3C, 0x80, 0, 0, 0,
            0, 2, 0x71, 0,
            0, 0, 0x03, 0xE8,
            0, 2, 0x71, 0,
        ];
        assert_eq!(&buf[..28], &want);
        let h = Header::parse(&buf).unwrap();
        let sr = SenderReport::parse(&buf[..n], &h).unwrap();
        assert_eq!((sr.ssrc, sr.info), (0xCAFE, info));
        assert_eq!(sr.blocks().collect::<Vec<_>>(), vec![blk]);
        // RC says 2 blocks, only one present.
        buf[0] = 0x82;
        let h = Header::parse(&buf).unwrap();
        assert_eq!(
            SenderReport::parse(&buf[..n], &h).err(),
            Some(RtcpError::BadCount)
        );
        assert_eq!(
            SenderReport::parse(&buf[..24], &h).err(),
            Some(RtcpError::TooShort)
        );
    }
}
