//! Goodbye (RFC 3550 §6.6).

use super::{BufferTooSmall, HEADER_LEN, Header, PacketType, RtcpError, be32, put32};

/// A checked BYE: the sources leaving and the optional reason.
#[derive(Debug, Clone)]
pub struct Bye<'a> {
    sources: &'a [u8],
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// Parses the packet (header included, padding removed).
    pub fn parse(packet: &'a [u8], header: &Header) -> Result<Self, RtcpError> {
        let body = packet.get(HEADER_LEN..).ok_or(RtcpError::TooShort)?;
        let n = header.count as usize * 4;
        let sources = body.get(..n).ok_or(RtcpError::BadCount)?;
        let rest = &body[n..];
        // §6.6: an optional length octet and text, padded to 32 bits.
        let reason = match rest.split_first() {
            None => None,
            Some((&len, text)) => Some(text.get(..len as usize).ok_or(RtcpError::BadBye)?),
        };
        Ok(Bye { sources, reason })
    }

    /// The SSRCs (and CSRCs) that leave.
    pub fn sources(&self) -> impl Iterator<Item = u32> + 'a {
        let s = self.sources;
        (0..s.len() / 4).filter_map(move |i| be32(s, i * 4))
    }

    /// Octets of a BYE for `n` sources and a reason of `reason_len` (0: none).
    pub fn buffer_len(n: usize, reason_len: usize) -> usize {
        let reason = if reason_len == 0 { 0 } else { 1 + reason_len };
        (HEADER_LEN + 4 * n + reason).next_multiple_of(4)
    }

    /// Writes a BYE for `ssrcs` (at most 31) with an optional reason.
    pub fn emit(ssrcs: &[u32], reason: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        if ssrcs.len() > 31 || reason.len() > 255 {
            return Err(BufferTooSmall);
        }
        let len = Self::buffer_len(ssrcs.len(), reason.len());
        let out = buf.get_mut(..len).ok_or(BufferTooSmall)?;
        Header::emit(ssrcs.len() as u8, PacketType::BYE, len, out)?;
        for (i, &s) in ssrcs.iter().enumerate() {
            put32(out, HEADER_LEN + 4 * i, s)?;
        }
        let r = HEADER_LEN + 4 * ssrcs.len();
        out[r..].fill(0);
        if !reason.is_empty() {
            out[r] = reason.len() as u8;
            out[r + 1..r + 1 + reason.len()].copy_from_slice(reason);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_round_trip_with_and_without_reason() {
        let mut buf = [0u8; 64];
        let n = Bye::emit(&[0xABCD], b"", &mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x81, 203, 0, 1, 0, 0, 0xAB, 0xCD]);
        let n = Bye::emit(&[1, 2], b"hangup", &mut buf).unwrap();
        assert_eq!(n, 20);
        let h = Header::parse(&buf).unwrap();
        let b = Bye::parse(&buf[..n], &h).unwrap();
        assert_eq!(b.sources().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b.reason, Some(&b"hangup"[..]));
        // Reason length past the end.
        buf[12] = 20;
        assert_eq!(Bye::parse(&buf[..n], &h).err(), Some(RtcpError::BadBye));
        // SC past the end.
        let mut p = [0x85u8, 203, 0, 1, 0, 0, 0, 1];
        let h = Header::parse(&p).unwrap();
        assert_eq!(Bye::parse(&p, &h).err(), Some(RtcpError::BadCount));
        p[0] = 0x80;
        let h = Header::parse(&p).unwrap();
        // SC 0 and 4 octets of "reason": length octet 0 is an empty reason.
        assert_eq!(Bye::parse(&p, &h).unwrap().reason, Some(&b""[..]));
    }
}
