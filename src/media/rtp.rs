//! RTP data packets (RFC 3550 §5.1): validation on receive, header writing on
//! send, into caller buffers.
//!
//! Parsing uses `rtp_rs::RtpReader` (a borrowed view, checked once: version,
//! CSRC list, extension and padding lengths against the buffer) and adds the
//! checks a telephony receiver needs on top (RFC 3550 A.1: payload type known,
//! non-empty payload; RFC 5761 §4: RTCP packet types refused on the RTP
//! path). Writing uses `rtp_rs::RtpPacketBuilder::build_into`, which writes
//! into a preallocated buffer and never allocates.

use std::fmt;

/// RTP payload type (RFC 3551 Table 4 for the static ones), open: unknown
/// and dynamic values are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(pub u8);

impl PayloadType {
    /// RFC 3551 §4.5.14: G.711 µ-law.
    pub const PCMU: PayloadType = PayloadType(0);
    /// RFC 3551 §4.5.14: G.711 A-law.
    pub const PCMA: PayloadType = PayloadType(8);
    /// RFC 3551 §4.5.3: comfort noise (RFC 3389).
    pub const CN: PayloadType = PayloadType(13);

    /// The RFC 3551 name of a static type, if it is one we know.
    pub fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("PCMU"),
            8 => Some("PCMA"),
            13 => Some("CN"),
            _ => None,
        }
    }
}

impl fmt::Debug for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "PayloadType({})", self.0),
        }
    }
}

/// The fixed header of RFC 3550 §5.1 that tdmgw reads and writes (CSRCs and
/// header extensions are skipped on receive and never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpRepr {
    pub marker: bool,
    pub payload_type: PayloadType,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Why a received datagram is not a usable RTP packet. Every variant is
/// counted separately in [`RtpErrorCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the 12-octet fixed header.
    TooShort,
    /// RFC 3550 §5.1: version must be 2.
    BadVersion,
    /// CSRC list or header extension runs past the end of the datagram.
    HeadersTruncated,
    /// RFC 3550 §5.1: padding count zero or longer than the payload.
    BadPadding,
    /// RFC 5761 §4: payload types 64-95 collide with RTCP packet types.
    RtcpOnRtpPort,
    /// A payload type not negotiated for this channel.
    UnknownPayloadType,
    /// No payload octets after header and padding.
    EmptyPayload,
    /// Payload larger than the channel's receive frame.
    TooLong,
    /// From a source other than the latched one (or outside the SDP address).
    WrongSource,
}

impl RtpError {
    /// Number of variants, for the counter array.
    pub const COUNT: usize = 9;

    fn index(self) -> usize {
        self as usize
    }
}

/// One counter per [`RtpError`] variant, plain fields the engine copies into
/// telemetry atomics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpErrorCounters {
    pub by_kind: [u64; RtpError::COUNT],
}

impl RtpErrorCounters {
    pub fn count(&mut self, e: RtpError) {
        self.by_kind[e.index()] += 1;
    }
    pub fn get(&self, e: RtpError) -> u64 {
        self.by_kind[e.index()]
    }
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

/// Length of the fixed RTP header we emit.
pub const RTP_HEADER_LEN: usize = 12;

/// A checked RTP packet: the header fields and the payload, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub repr: RtpRepr,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Checks `buf` once (RFC 3550 §5.1 and A.1 validity checks).
    /// Payload-type acceptance is the caller's (it knows what was negotiated).
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        use rtp_rs::RtpReaderError as E;
        // RFC 5761 §4: checked first, an RTCP header would otherwise be
        // misread as a CSRC count.
        if buf.len() >= 2 && buf[0] >> 6 == 2 && (64..96).contains(&(buf[1] & 0x7F)) {
            return Err(RtpError::RtcpOnRtpPort);
        }
        let r = rtp_rs::RtpReader::new(buf).map_err(|e| match e {
            E::BufferTooShort(_) => RtpError::TooShort,
            E::UnsupportedVersion(_) => RtpError::BadVersion,
            E::HeadersTruncated { .. } => RtpError::HeadersTruncated,
            E::PaddingLengthInvalid(_) => RtpError::BadPadding,
        })?;
        let pt = r.payload_type();
        let payload = r.payload();
        if payload.is_empty() {
            return Err(RtpError::EmptyPayload);
        }
        Ok(RtpPacket {
            repr: RtpRepr {
                marker: r.mark(),
                payload_type: PayloadType(pt),
                sequence_number: r.sequence_number().into(),
                timestamp: r.timestamp(),
                ssrc: r.ssrc(),
            },
            payload,
        })
    }
}

impl RtpRepr {
    /// Octets [`emit`](Self::emit) writes for `payload_len` payload octets.
    pub fn buffer_len(payload_len: usize) -> usize {
        RTP_HEADER_LEN + payload_len
    }

    /// Writes header and payload into `buf`; returns the datagram length.
    /// `None` if `buf` is too small or the payload type is over 127.
    pub fn emit(&self, payload: &[u8], buf: &mut [u8]) -> Option<usize> {
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(self.payload_type.0)
            .marked(self.marker)
            .sequence(self.sequence_number.into())
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            .payload(payload)
            .build_into(buf)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMA packet: V=2, M=1, PT=8, seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304.
    const PCMA: [u8; 16] = [
        0x80, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xD5, 0xD5, 0xD5,
        0xD5,
    ];

    #[test]
    fn parses_spec_header() {
        let p = RtpPacket::parse(&PCMA).unwrap();
        assert_eq!(
            p.repr,
            RtpRepr {
                marker: true,
                payload_type: PayloadType::PCMA,
                sequence_number: 0x1234,
                timestamp: 0xDEAD_BEEF,
                ssrc: 0x0102_0304
            }
        );
        assert_eq!(p.payload, &[0xD5; 4]);
    }

    #[test]
    fn emit_round_trips() {
        let p = RtpPacket::parse(&PCMA).unwrap();
        let mut buf = [0u8; 64];
        let n = p.repr.emit(p.payload, &mut buf).unwrap();
        assert_eq!(&buf[..n], &PCMA);
        assert_eq!(n, RtpRepr::buffer_len(4));
        assert_eq!(p.repr.emit(p.payload, &mut buf[..10]), None);
    }

    #[test]
    fn skips_csrc_and_extension_and_padding() {
        // CC=1, X=1, P=1: header, one CSRC, ext header (len 1 word) + 1 word,
        // payload 2 octets, padding 2 (last octet = 2).
        let mut b = vec![0xB1, 0x08, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        b.extend_from_slice(&[0, 0, 0, 7]); // CSRC
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension
        b.extend_from_slice(&[0xAA, 0xBB, 0x00, 0x02]);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.payload, &[0xAA, 0xBB]);
        assert_eq!(p.repr.ssrc, 9);
    }

    #[test]
    fn every_malformation_is_an_error_value() {
        let cases: &[(&[u8], RtpError)] = &[
            (&[], RtpError::TooShort),
            (&PCMA[..11], RtpError::TooShort),
            (
                &[0x40, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::BadVersion,
            ),
            // CC=3 but no CSRCs.
            (
                &[0x83, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::HeadersTruncated,
            ),
            // X=1, extension header missing.
            (
                &[0x90, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                RtpError::HeadersTruncated,
            ),
            // X=1, extension says 2 words, has none.
            (
                &[0x90, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                RtpError::HeadersTruncated,
            ),
            // P=1, padding count 0.
            (
                &[0xA0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                RtpError::BadPadding,
            ),
            // P=1, padding count 9 > 2 octets after header.
            (
                &[0xA0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9],
                RtpError::BadPadding,
            ),
            // P=1, padding eats the whole payload.
            (
                &[0xA0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2],
                RtpError::EmptyPayload,
            ),
            (&PCMA[..12], RtpError::EmptyPayload),
            // An RTCP RR (PT 201 -> second octet 0xC9, PT field 73).
            (
                &[0x81, 0xC9, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 1],
                RtpError::RtcpOnRtpPort,
            ),
        ];
        let mut counters = RtpErrorCounters::default();
        for (bytes, want) in cases {
            let got = RtpPacket::parse(bytes).unwrap_err();
            assert_eq!(got, *want, "{bytes:02x?}");
            counters.count(got);
        }
        assert_eq!(counters.total(), cases.len() as u64);
        assert_eq!(counters.get(RtpError::HeadersTruncated), 3);
    }

    proptest::proptest! {
        #[test]
        fn parse_emit_round_trip(marker: bool, pt in 0u8..64, seq: u16, ts: u32, ssrc: u32,
                                 payload in proptest::collection::vec(proptest::num::u8::ANY, 1..200)) {
            let repr = RtpRepr { marker, payload_type: PayloadType(pt), sequence_number: seq, timestamp: ts, ssrc };
            let mut buf = [0u8; 256];
            let n = repr.emit(&payload, &mut buf).unwrap();
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            proptest::prop_assert_eq!(p.repr, repr);
            proptest::prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = RtpPacket::parse(&bytes);
        }
    }
}
