//! RFC 4553 §4 SAToP packet codec: control word, optional RTP header, payload.
//!
//! Over UDP (RFC 4553 §4.3, Figure 3) a SAToP packet is the optional RTP
//! fixed header, then the 4-octet control word, then the TDM payload:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0 0 0|L|R|RSV|FRG|    LEN    |       Sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`SatopPacket::parse`] checks a received datagram once and borrows its
//! payload; [`emit_header`] writes the header of an outgoing packet into a
//! caller's buffer. Nothing here allocates. The payload length expected for
//! the pseudowire is checked by the caller ([`super::SatopPw`]), which knows
//! the configured size and whether L allows it to be omitted.

use std::fmt;

/// Octets in the SAToP control word (RFC 4553 §4.3.1).
pub const CW_OCTETS: usize = 4;
/// Octets in the RTP fixed header (RFC 3550 §5.1).
pub const RTP_OCTETS: usize = 12;
/// RFC 4553 §4.3.1: LEN carries the packet length only below 64 octets.
pub const LEN_LIMIT: usize = 64;
/// RFC 3550 §5.1: the RTP version.
pub const RTP_VERSION: u8 = 2;

/// The SAToP control word (RFC 4553 §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControlWord {
    /// L: the TDM data is invalid because of a fault on the sender's
    /// attachment circuit (its E1 is in LOS/AIS); the payload may be omitted.
    pub l: bool,
    /// R: the sender's CE-bound side is in the loss-of-packets state.
    pub r: bool,
    /// RSV (bits 6-7): sent as 0, ignored on receipt (RFC 4553 §4.3.1).
    pub rsv: u8,
    /// FRG (bits 8-9): sent as 0, ignored on receipt (RFC 4553 §4.3.1).
    pub frg: u8,
    /// LEN (bits 10-15): SAToP header + payload length when below 64
    /// octets, else 0. A non-zero value shorter than the datagram means the
    /// rest is padding.
    pub len: u8,
    /// Sequence number (RFC 3550 §5.1 rules: 16-bit circular, random start).
    pub seq: u16,
}

impl ControlWord {
    /// Decodes the four octets. Only bits 0-3 decide validity: a non-zero
    /// first nibble is not a PW control word (RFC 4385 §3).
    pub fn parse(octets: [u8; CW_OCTETS]) -> Result<ControlWord, SatopPacketError> {
        if octets[0] & 0xF0 != 0 {
            return Err(SatopPacketError::NotControlWord);
        }
        Ok(ControlWord {
            l: octets[0] & 0x08 != 0,
            r: octets[0] & 0x04 != 0,
            rsv: octets[0] & 0x03,
            frg: octets[1] >> 6,
            len: octets[1] & 0x3F,
            seq: u16::from_be_bytes([octets[2], octets[3]]),
        })
    }

    /// Encodes in network order. RSV and FRG are written as given (0 when
    /// we send); `len` is masked to six bits.
    pub fn emit(&self) -> [u8; CW_OCTETS] {
        let b0 = (u8::from(self.l) << 3) | (u8::from(self.r) << 2) | (self.rsv & 0x03);
        let b1 = ((self.frg & 0x03) << 6) | (self.len & 0x3F);
        let [s0, s1] = self.seq.to_be_bytes();
        [b0, b1, s0, s1]
    }
}

/// The RTP fixed header fields SAToP uses (RFC 4553 §4.3.2): V = 2, P = X =
/// CC = M = 0 when we send; PT from the dynamic range; SN equal to the
/// control word's; timestamp in units of the 8 kHz E1 frame clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parses the RTP header at the start of `datagram` (RFC 3550 §5.1,
    /// §5.3.1). Returns the header, its length including CSRCs and any
    /// extension, and the number of padding octets at the end of the
    /// datagram (P bit).
    pub fn parse(datagram: &[u8]) -> Result<(RtpHeader, usize, usize), SatopPacketError> {
        let Some(fixed) = datagram.get(..RTP_OCTETS) else {
            return Err(SatopPacketError::Truncated);
        };
        if fixed[0] >> 6 != RTP_VERSION {
            return Err(SatopPacketError::RtpVersion(fixed[0] >> 6));
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0F);
        let mut len = RTP_OCTETS + 4 * csrc_count;
        if extension {
            // RFC 3550 §5.3.1: 16-bit profile word, 16-bit length in words.
            let Some(ext) = datagram.get(len..len + 4) else {
                return Err(SatopPacketError::Truncated);
            };
            len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        if datagram.len() < len {
            return Err(SatopPacketError::Truncated);
        }
        let pad = if padding {
            // RFC 3550 §5.1: the last octet counts the padding, itself included.
            let n = usize::from(datagram[datagram.len() - 1]);
            if n == 0 || len + n > datagram.len() {
                return Err(SatopPacketError::BadPadding);
            }
            n
        } else {
            0
        };
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            seq: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };
        Ok((header, len, pad))
    }

    /// Writes the 12-octet fixed header (V = 2, P = X = CC = 0).
    pub fn emit(&self) -> [u8; RTP_OCTETS] {
        let mut out = [0u8; RTP_OCTETS];
        out[0] = RTP_VERSION << 6;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        out
    }
}

/// A checked SAToP packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SatopPacket<'a> {
    pub cw: ControlWord,
    pub rtp: Option<RtpHeader>,
    /// The TDM payload, padding (LEN, RTP P bit) removed. Empty when the
    /// sender omitted it under L (RFC 4553 §4.3.1).
    pub payload: &'a [u8],
}

impl<'a> SatopPacket<'a> {
    /// Parses one datagram; `rtp` says whether the pseudowire carries the
    /// RTP header (configured, RFC 4553 §4.3.2: not signalled in-band).
    pub fn parse(datagram: &'a [u8], rtp: bool) -> Result<SatopPacket<'a>, SatopPacketError> {
        let (rtp_header, start, end) = if rtp {
            let (h, len, pad) = RtpHeader::parse(datagram)?;
            (Some(h), len, datagram.len() - pad)
        } else {
            (None, 0, datagram.len())
        };
        let Some(cw_octets) = datagram.get(start..start + CW_OCTETS) else {
            return Err(SatopPacketError::Truncated);
        };
        let mut cw_raw = [0u8; CW_OCTETS];
        cw_raw.copy_from_slice(cw_octets);
        let cw = ControlWord::parse(cw_raw)?;
        let payload_start = start + CW_OCTETS;
        if payload_start > end {
            return Err(SatopPacketError::Truncated);
        }
        let payload_end = if cw.len == 0 {
            end
        } else {
            // RFC 4553 §4.3.1: LEN is the SAToP header (RTP included) plus
            // payload; what follows up to the datagram's end is padding.
            let len = usize::from(cw.len);
            if len < payload_start || len > end {
                return Err(SatopPacketError::BadLength {
                    len: cw.len,
                    datagram: datagram.len(),
                });
            }
            len
        };
        Ok(SatopPacket {
            cw,
            rtp: rtp_header,
            payload: &datagram[payload_start..payload_end],
        })
    }
}

/// Length of the SAToP header: the control word and, if used, RTP.
pub fn header_len(rtp: bool) -> usize {
    CW_OCTETS + if rtp { RTP_OCTETS } else { 0 }
}

/// The LEN value for a packet of `header + payload` octets (RFC 4553
/// §4.3.1: the length when below 64 octets, else 0).
pub fn len_field(header: usize, payload: usize) -> u8 {
    let total = header + payload;
    if total < LEN_LIMIT { total as u8 } else { 0 }
}

/// Writes the SAToP header (RTP first when given, RFC 4553 §4.3 Figure 3 for UDP, then
/// the control word) into `out` and returns its length. `out` must hold
/// [`header_len`] octets (caller bug otherwise: asserts).
pub fn emit_header(cw: &ControlWord, rtp: Option<&RtpHeader>, out: &mut [u8]) -> usize {
    let mut n = 0;
    if let Some(h) = rtp {
        out[..RTP_OCTETS].copy_from_slice(&h.emit());
        n = RTP_OCTETS;
    }
    out[n..n + CW_OCTETS].copy_from_slice(&cw.emit());
    n + CW_OCTETS
}

/// Why a received datagram is not a SAToP packet we can use. Every case is
/// the peer's fault (or a stray sender's); each is counted and the packet
/// is treated as lost (RFC 4553 §6.3: malformed packets are discarded and
/// replaced as lost ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatopPacketError {
    /// Shorter than the headers it announces.
    Truncated,
    /// Bits 0-3 of the control word are not 0000 (RFC 4385 §3).
    NotControlWord,
    /// RTP version is not 2.
    RtpVersion(u8),
    /// RTP padding count is 0 or longer than the packet.
    BadPadding,
    /// LEN is shorter than the headers or longer than the datagram.
    BadLength { len: u8, datagram: usize },
    /// The payload is not the configured size (nor empty under L):
    /// RFC 4553 §6.3 "malformed packet".
    PayloadSize { got: usize, expected: usize },
}

impl SatopPacketError {
    /// A small index per kind, for per-kind counters and log-once masks.
    pub fn kind(&self) -> usize {
        match self {
            SatopPacketError::Truncated => 0,
            SatopPacketError::NotControlWord => 1,
            SatopPacketError::RtpVersion(_) => 2,
            SatopPacketError::BadPadding => 3,
            SatopPacketError::BadLength { .. } => 4,
            SatopPacketError::PayloadSize { .. } => 5,
        }
    }
}

/// Number of [`SatopPacketError`] kinds.
pub const PACKET_ERROR_KINDS: usize = 6;

impl fmt::Display for SatopPacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SatopPacketError::Truncated => write!(f, "SAToP packet truncated"),
            SatopPacketError::NotControlWord => {
                write!(f, "first nibble of the control word is not 0")
            }
            SatopPacketError::RtpVersion(v) => write!(f, "RTP version {v}, expected 2"),
            SatopPacketError::BadPadding => write!(f, "RTP padding count invalid"),
            SatopPacketError::BadLength { len, datagram } => write!(
                f,
                "control word LEN {len} does not fit a {datagram}-octet datagram"
            ),
            SatopPacketError::PayloadSize { got, expected } => {
                write!(f, "payload of {got} octets, expected {expected}")
            }
        }
    }
}

impl std::error::Error for SatopPacketError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 4553 §4.3.1 control word: `0000 L R RSV FRG LEN | SN`.
    #[test]
    fn control_word_fields_by_hand() {
        let cw = ControlWord::parse([0x00, 0x00, 0x12, 0x34]).unwrap();
        assert_eq!(
            cw,
            ControlWord {
                seq: 0x1234,
                ..ControlWord::default()
            }
        );
        // L is bit 4, R bit 5 (0x08 and 0x04 of the first octet).
        let cw = ControlWord::parse([0x08, 0x00, 0xFF, 0xFF]).unwrap();
        assert!(cw.l && !cw.r);
        assert_eq!(cw.seq, 0xFFFF);
        let cw = ControlWord::parse([0x04, 0x00, 0, 1]).unwrap();
        assert!(!cw.l && cw.r);
        // RSV bits 6-7, FRG bits 8-9, LEN bits 10-15.
        let cw = ControlWord::parse([0x03, 0xE4, 0, 0]).unwrap();
        assert_eq!((cw.rsv, cw.frg, cw.len), (3, 3, 0x24));
        assert_eq!(cw.emit(), [0x03, 0xE4, 0, 0]);
        let ours = ControlWord {
            l: true,
            r: true,
            len: 36,
            seq: 0xBEEF,
            ..ControlWord::default()
        };
        assert_eq!(ours.emit(), [0x0C, 0x24, 0xBE, 0xEF]);
    }

    #[test]
    fn a_first_nibble_other_than_zero_is_not_a_control_word() {
        // 0x45: what an IPv4 header would look like (RFC 4385 §3).
        for b0 in [0x10, 0x45, 0x60, 0xF0] {
            assert_eq!(
                ControlWord::parse([b0, 0, 0, 0]),
                Err(SatopPacketError::NotControlWord)
            );
        }
    }

    fn packet(cw: [u8; 4], payload_len: usize, padding: usize) -> Vec<u8> {
        let mut p = cw.to_vec();
        p.extend((0..payload_len).map(|i| i as u8));
        p.extend(std::iter::repeat_n(0, padding));
        p
    }

    #[test]
    fn default_e1_packet_is_control_word_and_256_octets() {
        let d = packet([0, 0, 0, 7], 256, 0);
        let p = SatopPacket::parse(&d, false).unwrap();
        assert_eq!(p.cw.seq, 7);
        assert_eq!(p.payload.len(), 256);
        assert_eq!(p.payload[255], 255);
        assert!(p.rtp.is_none());
    }

    #[test]
    fn len_marks_padding_of_short_packets() {
        // 4 + 32 = 36 octets, padded to 64 (an Ethernet minimum frame).
        let d = packet([0, 36, 0, 1], 32, 28);
        let p = SatopPacket::parse(&d, false).unwrap();
        assert_eq!(p.payload.len(), 32);
        // LEN = 0 on a short packet is allowed (LEN "MAY" be used).
        let d = packet([0, 0, 0, 1], 32, 0);
        assert_eq!(SatopPacket::parse(&d, false).unwrap().payload.len(), 32);
        // L with the payload omitted: LEN = 4, or 0.
        let d = packet([0x08, 4, 0, 1], 0, 0);
        assert!(SatopPacket::parse(&d, false).unwrap().payload.is_empty());
        let d = packet([0x08, 0, 0, 1], 0, 0);
        assert!(SatopPacket::parse(&d, false).unwrap().payload.is_empty());
    }

    #[test]
    fn len_inconsistent_with_the_datagram_is_malformed() {
        let d = packet([0, 40, 0, 1], 32, 0);
        assert_eq!(
            SatopPacket::parse(&d, false),
            Err(SatopPacketError::BadLength {
                len: 40,
                datagram: 36
            })
        );
        let d = packet([0, 3, 0, 1], 32, 0);
        assert!(matches!(
            SatopPacket::parse(&d, false),
            Err(SatopPacketError::BadLength { len: 3, .. })
        ));
    }

    #[test]
    fn truncated_packets_are_errors() {
        for d in [&[][..], &[0], &[0, 0, 0]] {
            assert_eq!(
                SatopPacket::parse(d, false),
                Err(SatopPacketError::Truncated)
            );
        }
        // RTP expected: 12 octets of it, then the control word.
        assert_eq!(
            SatopPacket::parse(&[0x80; 14], true),
            Err(SatopPacketError::Truncated)
        );
    }

    /// RFC 4553 §4.3: over UDP the RTP header precedes the control word.
    #[test]
    fn rtp_header_then_control_word() {
        let mut d = vec![
            0x80, 0x60, 0x12, 0x34, // V=2, PT=96, SN
            0x00, 0x00, 0x01, 0x00, // timestamp 256
            0xDE, 0xAD, 0xBE, 0xEF, // SSRC
            0x00, 0x00, 0x12, 0x34, // control word, same SN
        ];
        d.extend([0xD5; 256]);
        let p = SatopPacket::parse(&d, true).unwrap();
        assert_eq!(
            p.rtp,
            Some(RtpHeader {
                marker: false,
                payload_type: 96,
                seq: 0x1234,
                timestamp: 256,
                ssrc: 0xDEAD_BEEF,
            })
        );
        assert_eq!(p.cw.seq, 0x1234);
        assert_eq!(p.payload.len(), 256);
        let mut out = [0u8; 16];
        let n = emit_header(&p.cw, p.rtp.as_ref(), &mut out);
        assert_eq!(n, 16);
        assert_eq!(&out[..], &d[..16]);
        // Version 1 is refused.
        d[0] = 0x40;
        assert_eq!(
            SatopPacket::parse(&d, true),
            Err(SatopPacketError::RtpVersion(1))
        );
    }

    #[test]
    fn rtp_csrc_extension_and_padding_are_skipped() {
        // CC = 1, X = 1 (one word of extension), P = 1 (4 octets of padding).
        let mut d = vec![0xB1, 0x60, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1];
        d.extend([0, 0, 0, 9]); // CSRC
        d.extend([0xBE, 0xDE, 0x00, 0x01, 1, 2, 3, 4]); // extension
        d.extend([0, 0, 0, 5]); // control word
        d.extend([0x11; 32]);
        d.extend([0, 0, 0, 4]); // padding, count in the last octet
        let p = SatopPacket::parse(&d, true).unwrap();
        assert_eq!(p.cw.seq, 5);
        assert_eq!(p.payload, &[0x11; 32][..]);
        // Padding count 0, or longer than the packet.
        let n = d.len();
        d[n - 1] = 0;
        assert_eq!(
            SatopPacket::parse(&d, true),
            Err(SatopPacketError::BadPadding)
        );
        d[n - 1] = 255;
        assert_eq!(
            SatopPacket::parse(&d, true),
            Err(SatopPacketError::BadPadding)
        );
    }

    #[test]
    fn len_field_follows_the_64_octet_rule() {
        assert_eq!(len_field(4, 32), 36);
        assert_eq!(len_field(16, 32), 48);
        assert_eq!(len_field(4, 256), 0);
        assert_eq!(len_field(16, 48), 0);
        assert_eq!(len_field(4, 0), 4);
    }

    proptest! {
        #[test]
        fn control_word_round_trips(l: bool, r: bool, rsv in 0u8..4, frg in 0u8..4, len in 0u8..64, seq: u16) {
            let cw = ControlWord { l, r, rsv, frg, len, seq };
            prop_assert_eq!(ControlWord::parse(cw.emit()), Ok(cw));
        }

        #[test]
        fn packets_round_trip(rtp: bool, l: bool, r: bool, seq: u16, ts: u32, ssrc: u32,
                              pt in 0u8..128, frames in 0usize..5) {
            let payload: Vec<u8> = (0..frames * 32).map(|i| (i * 7) as u8).collect();
            let h = header_len(rtp);
            let cw = ControlWord { l, r, len: len_field(h, payload.len()), seq, ..ControlWord::default() };
            let rh = RtpHeader { marker: false, payload_type: pt, seq, timestamp: ts, ssrc };
            let mut d = vec![0u8; h + payload.len()];
            let n = emit_header(&cw, rtp.then_some(&rh), &mut d);
            prop_assert_eq!(n, h);
            d[h..].copy_from_slice(&payload);
            let p = SatopPacket::parse(&d, rtp).unwrap();
            prop_assert_eq!(p.cw, cw);
            prop_assert_eq!(p.rtp, rtp.then_some(rh));
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..300), rtp: bool) {
            let _ = SatopPacket::parse(&d, rtp);
        }
    }
}
