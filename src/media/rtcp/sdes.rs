//! Source description (RFC 3550 §6.5); tdmgw sends and reads CNAME only.

use super::{BufferTooSmall, HEADER_LEN, Header, PacketType, RtcpError, be32, put32};

/// §6.5.1: the CNAME item type.
pub const SDES_CNAME: u8 = 1;
/// Longest item text (8-bit length).
pub const MAX_ITEM_LEN: usize = 255;

/// One chunk: a source and its CNAME if it carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    pub cname: Option<&'a [u8]>,
}

/// A checked SDES packet (every chunk walked once at parse).
#[derive(Debug, Clone)]
pub struct Sdes<'a> {
    body: &'a [u8],
    count: u8,
}

/// Reads the chunk at `pos` of `body`; returns it and the next chunk's
/// offset. §6.5: items until a null type octet, then null padding to the
/// next 32-bit boundary.
fn chunk_at(body: &[u8], pos: usize) -> Result<(SdesChunk<'_>, usize), RtcpError> {
    let ssrc = be32(body, pos).ok_or(RtcpError::BadSdes)?;
    let mut i = pos + 4;
    let mut cname = None;
    loop {
        let &kind = body.get(i).ok_or(RtcpError::BadSdes)?;
        if kind == 0 {
            // End of list: skip to the next 32-bit boundary (the chunk
            // started on one; the body starts 4 octets into the packet).
            let next = (i + 1).next_multiple_of(4);
            if next > body.len() {
                return Err(RtcpError::BadSdes);
            }
            return Ok((SdesChunk { ssrc, cname }, next));
        }
        let &len = body.get(i + 1).ok_or(RtcpError::BadSdes)?;
        let text = body
            .get(i + 2..i + 2 + len as usize)
            .ok_or(RtcpError::BadSdes)?;
        if kind == SDES_CNAME && cname.is_none() {
            cname = Some(text);
        }
        i += 2 + len as usize;
    }
}

impl<'a> Sdes<'a> {
    /// Parses the packet (header included, padding removed).
    pub fn parse(packet: &'a [u8], header: &Header) -> Result<Self, RtcpError> {
        let body = packet.get(HEADER_LEN..).ok_or(RtcpError::TooShort)?;
        let mut pos = 0;
        for _ in 0..header.count {
            pos = chunk_at(body, pos)?.1;
        }
        Ok(Sdes {
            body,
            count: header.count,
        })
    }

    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let body = self.body;
        let mut pos = 0;
        (0..self.count).map_while(move |_| {
            let (c, next) = chunk_at(body, pos).ok()?;
            pos = next;
            Some(c)
        })
    }

    /// Octets of an SDES packet with one chunk carrying a CNAME of `len`.
    pub fn buffer_len(cname_len: usize) -> usize {
        (HEADER_LEN + 4 + 2 + cname_len + 1).next_multiple_of(4)
    }

    /// Writes an SDES packet with one chunk: `ssrc` and its CNAME (§6.5.1,
    /// at most 255 octets).
    pub fn emit_cname(ssrc: u32, cname: &[u8], buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        if cname.len() > MAX_ITEM_LEN {
            return Err(BufferTooSmall);
        }
        let len = Self::buffer_len(cname.len());
        let out = buf.get_mut(..len).ok_or(BufferTooSmall)?;
        Header::emit(1, PacketType::SDES, len, out)?;
        put32(out, 4, ssrc)?;
        out[8] = SDES_CNAME;
        out[9] = cname.len() as u8;
        out[10..10 + cname.len()].copy_from_slice(cname);
        out[10 + cname.len()..].fill(0);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cname_round_trip_and_padding() {
        for name in [&b""[..], b"a", b"tdmgw", b"tdmgw@192.0.2.10"] {
            let mut buf = [0xEEu8; 64];
            let n = Sdes::emit_cname(0x55, name, &mut buf).unwrap();
            assert_eq!(n % 4, 0);
            assert!(
                buf[10 + name.len()..n].iter().all(|&b| b == 0),
                "null terminated"
            );
            let h = Header::parse(&buf).unwrap();
            assert_eq!(h.packet_len(), n);
            let s = Sdes::parse(&buf[..n], &h).unwrap();
            let c: Vec<_> = s.chunks().collect();
            assert_eq!(
                c,
                vec![SdesChunk {
                    ssrc: 0x55,
                    cname: Some(name)
                }]
            );
        }
    }

    #[test]
    fn two_chunks_other_items_and_malformed() {
        // Chunk 1: NAME "x" then CNAME "ab"; chunk 2: no items.
        #[rustfmt::skip]
        let p = [
            0x82, 202, 0, 4,
            0, 0, 0, 1, 2, 1, b'x', 1, 2, b'a', b'b', 0,
            0, 0, 0, 2, 0, 0, 0, 0,
        ];
        let h = Header::parse(&p).unwrap();
        let s = Sdes::parse(&p, &h).unwrap();
        let c: Vec<_> = s.chunks().collect();
        assert_eq!(
            c[0],
            SdesChunk {
                ssrc: 1,
                cname: Some(&b"ab"[..])
            }
        );
        assert_eq!(
            c[1],
            SdesChunk {
                ssrc: 2,
                cname: None
            }
        );
        // Item length past the end.
        let mut bad = p;
        bad[9] = 40;
        assert_eq!(Sdes::parse(&bad, &h).err(), Some(RtcpError::BadSdes));
        // No terminator in the last chunk.
        let mut bad = p;
        bad[20..24].copy_from_slice(&[1, 2, b'q', b'q']);
        assert_eq!(Sdes::parse(&bad, &h).err(), Some(RtcpError::BadSdes));
        // SC larger than the chunks present.
        let mut bad = p;
        bad[0] = 0x83;
        let h3 = Header::parse(&bad).unwrap();
        assert_eq!(Sdes::parse(&bad, &h3).err(), Some(RtcpError::BadSdes));
    }
}
