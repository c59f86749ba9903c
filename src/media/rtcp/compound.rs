//! Compound RTCP packets (RFC 3550 §6.1) and their validity checks (A.2).
//!
//! Receive: [`Compound::parse`] checks the whole datagram once: version 2 in
//! every packet, the first packet an SR or RR without padding, padding only
//! in the last packet, the length fields adding up to the datagram, and each
//! known packet type's own layout. Any failure discards the whole datagram
//! (A.2). Unknown types (APP, feedback, XR) are passed over.
//!
//! Send: [`CompoundWriter`] appends SR or RR, SDES and BYE into a caller's
//! buffer (§6.1: the report first, then SDES with CNAME).

use super::bye::Bye;
use super::rr::{ReceiverReport, ReportBlock};
use super::sdes::Sdes;
use super::sr::{SenderInfo, SenderReport};
use super::{BufferTooSmall, HEADER_LEN, Header, PacketType, RtcpError};

/// One packet of a checked compound.
#[derive(Debug, Clone)]
pub enum RtcpPacket<'a> {
    Sr(SenderReport<'a>),
    Rr(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    /// A type tdmgw does not interpret (APP, RTPFB, PSFB, XR, unknown).
    Other {
        packet_type: PacketType,
        packet: &'a [u8],
    },
}

/// A compound RTCP datagram that passed the A.2 checks.
#[derive(Debug, Clone, Copy)]
pub struct Compound<'a> {
    buf: &'a [u8],
}

/// The packet at `pos`: its header, its octets without padding, and the
/// offset of the next packet.
fn packet_at(buf: &[u8], pos: usize) -> Result<(Header, &[u8], usize), RtcpError> {
    let rest = buf.get(pos..).ok_or(RtcpError::LengthMismatch)?;
    let h = Header::parse(rest)?;
    let len = h.packet_len();
    let packet = rest.get(..len).ok_or(RtcpError::LengthMismatch)?;
    let next = pos + len;
    if !h.padding {
        return Ok((h, packet, next));
    }
    if next != buf.len() {
        return Err(RtcpError::PaddingNotLast);
    }
    // §6.4.1: the last octet counts the padding octets, itself included.
    let pad = packet[len - 1] as usize;
    if pad == 0 || pad > len - HEADER_LEN {
        return Err(RtcpError::BadPadding);
    }
    Ok((h, &packet[..len - pad], next))
}

fn interpret<'a>(h: &Header, packet: &'a [u8]) -> Result<RtcpPacket<'a>, RtcpError> {
    Ok(match h.packet_type {
        PacketType::SR => RtcpPacket::Sr(SenderReport::parse(packet, h)?),
        PacketType::RR => RtcpPacket::Rr(ReceiverReport::parse(packet, h)?),
        PacketType::SDES => RtcpPacket::Sdes(Sdes::parse(packet, h)?),
        PacketType::BYE => RtcpPacket::Bye(Bye::parse(packet, h)?),
        packet_type => RtcpPacket::Other {
            packet_type,
            packet,
        },
    })
}

impl<'a> Compound<'a> {
    /// Checks `buf` (one UDP payload) per RFC 3550 A.2.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        let first = Header::parse(buf)?;
        if !matches!(first.packet_type, PacketType::SR | PacketType::RR) {
            return Err(RtcpError::FirstNotReport);
        }
        if first.padding {
            // A.2: RTCP_VALID_MASK includes the padding bit of the first packet.
            return Err(RtcpError::PaddingNotLast);
        }
        let mut pos = 0;
        while pos < buf.len() {
            let (h, packet, next) = packet_at(buf, pos)?;
            interpret(&h, packet)?;
            pos = next;
        }
        Ok(Compound { buf })
    }

    /// The packets, in order.
    pub fn packets(&self) -> impl Iterator<Item = RtcpPacket<'a>> + 'a {
        let buf = self.buf;
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= buf.len() {
                return None;
            }
            let (h, packet, next) = packet_at(buf, pos).ok()?;
            pos = next;
            interpret(&h, packet).ok()
        })
    }

    /// Octets of the datagram.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Appends packets of a compound into a caller's buffer.
pub struct CompoundWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> CompoundWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        CompoundWriter { buf, len: 0 }
    }

    fn rest(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    pub fn sr(
        &mut self,
        ssrc: u32,
        info: &SenderInfo,
        blocks: &[ReportBlock],
    ) -> Result<&mut Self, BufferTooSmall> {
        self.len += SenderReport::emit(ssrc, info, blocks, self.rest())?;
        Ok(self)
    }

    pub fn rr(&mut self, ssrc: u32, blocks: &[ReportBlock]) -> Result<&mut Self, BufferTooSmall> {
        self.len += ReceiverReport::emit(ssrc, blocks, self.rest())?;
        Ok(self)
    }

    pub fn sdes_cname(&mut self, ssrc: u32, cname: &[u8]) -> Result<&mut Self, BufferTooSmall> {
        self.len += Sdes::emit_cname(ssrc, cname, self.rest())?;
        Ok(self)
    }

    pub fn bye(&mut self, ssrcs: &[u32], reason: &[u8]) -> Result<&mut Self, BufferTooSmall> {
        self.len += Bye::emit(ssrcs, reason, self.rest())?;
        Ok(self)
    }

    /// Octets written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::RtcpErrorCounters;
    use super::*;

    fn rr_sdes_bye() -> Vec<u8> {
        let mut buf = [0u8; 256];
        let mut w = CompoundWriter::new(&mut buf);
        w.rr(
            0x1111,
            &[ReportBlock {
                ssrc: 0x2222,
                fraction_lost: 3,
                ..Default::default()
            }],
        )
        .unwrap()
        .sdes_cname(0x1111, b"gw@192.0.2.1")
        .unwrap()
        .bye(&[0x1111], b"")
        .unwrap();
        let n = w.len();
        buf[..n].to_vec()
    }

    #[test]
    fn compound_round_trip() {
        let b = rr_sdes_bye();
        let c = Compound::parse(&b).unwrap();
        let p: Vec<_> = c.packets().collect();
        assert_eq!(p.len(), 3);
        match &p[0] {
            RtcpPacket::Rr(rr) => {
                assert_eq!(rr.ssrc, 0x1111);
                assert_eq!(rr.blocks().next().unwrap().fraction_lost, 3);
            }
            o => panic!("{o:?}"),
        }
        match &p[1] {
            RtcpPacket::Sdes(s) => {
                assert_eq!(s.chunks().next().unwrap().cname, Some(&b"gw@192.0.2.1"[..]))
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(&p[2], RtcpPacket::Bye(b) if b.sources().eq([0x1111])));
    }

    #[test]
    fn unknown_types_are_passed_over_and_padding_on_last_is_accepted() {
        let mut b = rr_sdes_bye();
        // Append an APP packet (PT 204, 12 octets) with 4 octets of padding.
        b.extend_from_slice(&[
            0xA0, 204, 0, 3, 0, 0, 0, 1, b'n', b'a', b'm', b'e', 0, 0, 0, 4,
        ]);
        let c = Compound::parse(&b).unwrap();
        let p: Vec<_> = c.packets().collect();
        assert_eq!(p.len(), 4);
        match &p[3] {
            RtcpPacket::Other {
                packet_type,
                packet,
            } => {
                assert_eq!(*packet_type, PacketType::APP);
                assert_eq!(packet.len(), 12, "padding removed");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn malformed_of_every_kind() {
        let good = rr_sdes_bye();
        let rr_len = 32;
        let sdes_at = rr_len;
        let mut cases: Vec<(Vec<u8>, RtcpError)> = Vec::new();
        cases.push((vec![], RtcpError::TooShort));
        cases.push((good[..3].to_vec(), RtcpError::TooShort));
        let mut v = good.clone();
        v[0] = 0x41;
        cases.push((v, RtcpError::BadVersion));
        let mut v = good.clone();
        v[sdes_at] = 0x41; // second packet version 1
        cases.push((v, RtcpError::BadVersion));
        cases.push((good[sdes_at..].to_vec(), RtcpError::FirstNotReport));
        let mut v = good.clone();
        v[0] |= 0x20; // padding on the first packet
        cases.push((v, RtcpError::PaddingNotLast));
        let mut v = good.clone();
        v[sdes_at] |= 0x20; // padding on a middle packet
        cases.push((v, RtcpError::PaddingNotLast));
        let mut v = good.clone();
        let last = v.len() - 8;
        v[last] |= 0x20; // BYE padded with count 0 (last octet of SSRC is 0x11... set 0)
        let n = v.len();
        v[n - 1] = 0;
        cases.push((v.clone(), RtcpError::BadPadding));
        v[n - 1] = 9; // more than the 4 octets after the header
        cases.push((v, RtcpError::BadPadding));
        cases.push((good[..good.len() - 1].to_vec(), RtcpError::LengthMismatch));
        let mut v = good.clone();
        v.extend_from_slice(&[0x81]);
        cases.push((v, RtcpError::TooShort));
        let mut v = good.clone();
        v[3] = 200; // RR length far past the end
        cases.push((v, RtcpError::LengthMismatch));
        let mut v = good.clone();
        v[0] = 0x83; // RC 3 in a 1-block RR
        cases.push((v, RtcpError::BadCount));
        let mut v = good.clone();
        v[3] = 0; // RR of 4 octets: no SSRC
        cases.push((v[..4].to_vec(), RtcpError::TooShort));
        let mut v = good.clone();
        v[sdes_at + 9] = 60; // CNAME length past the chunk
        cases.push((v, RtcpError::BadSdes));
        // BYE with a reason length past the packet.
        let mut v = good[..rr_len].to_vec();
        v.extend_from_slice(&[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0]);
        cases.push((v, RtcpError::BadBye));
        let mut counters = RtcpErrorCounters::default();
        for (bytes, want) in &cases {
            let got = Compound::parse(bytes).unwrap_err();
            assert_eq!(got, *want, "{bytes:02x?}");
            counters.count(got);
        }
        assert_eq!(counters.total(), cases.len() as u64);
        // Every kind is exercised.
        assert!(counters.by_kind.iter().all(|&n| n > 0), "{counters:?}");
    }

    #[test]
    fn writer_reports_small_buffers() {
        let mut buf = [0u8; 40];
        let mut w = CompoundWriter::new(&mut buf);
        w.rr(1, &[ReportBlock::default()]).unwrap();
        assert!(w.sdes_cname(1, b"0123456789").is_err());
        assert_eq!(w.len(), 32);
    }

    proptest::proptest! {
        /// emit then parse is the identity for SR + SDES + BYE compounds.
        #[test]
        fn sr_sdes_bye_round_trip(
            ssrc: u32, ntp: u64, rtp_ts: u32, packet_count: u32, octet_count: u32,
            blocks in proptest::collection::vec(
                (proptest::num::u32::ANY, proptest::num::u8::ANY, -0x80_0000i32..=0x7F_FFFF,
                 proptest::num::u32::ANY, proptest::num::u32::ANY, proptest::num::u32::ANY,
                 proptest::num::u32::ANY), 0..31),
            cname in proptest::collection::vec(proptest::num::u8::ANY, 0..255),
            reason in proptest::collection::vec(proptest::num::u8::ANY, 0..255),
        ) {
            let blocks: Vec<ReportBlock> = blocks.into_iter().map(|(ssrc, fraction_lost, cumulative_lost, extended_highest_seq, jitter, lsr, dlsr)| ReportBlock {
                ssrc, fraction_lost, cumulative_lost, extended_highest_seq, jitter, lsr, dlsr,
            }).collect();
            let info = SenderInfo { ntp, rtp_ts, packet_count, octet_count };
            let mut buf = [0u8; 2048];
            let mut w = CompoundWriter::new(&mut buf);
            w.sr(ssrc, &info, &blocks).unwrap().sdes_cname(ssrc, &cname).unwrap().bye(&[ssrc], &reason).unwrap();
            let n = w.len();
            let c = Compound::parse(&buf[..n]).unwrap();
            let p: Vec<_> = c.packets().collect();
            proptest::prop_assert_eq!(p.len(), 3);
            match &p[0] {
                RtcpPacket::Sr(sr) => {
                    proptest::prop_assert_eq!((sr.ssrc, sr.info), (ssrc, info));
                    proptest::prop_assert_eq!(sr.blocks().collect::<Vec<_>>(), blocks);
                }
                _ => proptest::prop_assert!(false),
            }
            match &p[1] {
                RtcpPacket::Sdes(s) => proptest::prop_assert_eq!(s.chunks().next().unwrap().cname, Some(&cname[..])),
                _ => proptest::prop_assert!(false),
            }
            match &p[2] {
                RtcpPacket::Bye(b) => {
                    proptest::prop_assert!(b.sources().eq([ssrc]));
                    let want = if reason.is_empty() { None } else { Some(&reason[..]) };
                    proptest::prop_assert_eq!(b.reason, want);
                }
                _ => proptest::prop_assert!(false),
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            if let Ok(c) = Compound::parse(&bytes) {
                for p in c.packets() {
                    if let RtcpPacket::Sdes(s) = p { s.chunks().count(); }
                }
            }
        }

        #[test]
        fn parse_never_panics_on_mutated_good(i in 0usize..64, v: u8) {
            let mut b = rr_sdes_bye();
            let n = b.len();
            b[i % n] = v;
            let _ = Compound::parse(&b).map(|c| c.packets().count());
        }
    }
}
