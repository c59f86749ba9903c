//! The message header (Q.931 §4.2-4.4): protocol discriminator, call
//! reference and message type.

use super::codepoints::MessageType;

/// Q.931 §4.2: the protocol discriminator of Q.931 user-network call control.
pub const PROTOCOL_DISCRIMINATOR: u8 = 0x08;

/// A call reference (Q.931 §4.3). `len` is the length octet's value: 0 for
/// the dummy call reference, 2 on a primary rate interface (1 is accepted
/// for basic access). `flag` is bit 8 of the first octet: false on the side
/// that allocated the value, true on messages sent by the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallReference {
    pub len: u8,
    pub value: u16,
    pub flag: bool,
}

impl CallReference {
    /// The dummy call reference (length 0).
    pub const DUMMY: CallReference = CallReference {
        len: 0,
        value: 0,
        flag: false,
    };

    /// A 2-octet PRI call reference.
    pub fn pri(value: u16, flag: bool) -> CallReference {
        CallReference {
            len: 2,
            value: value & 0x7FFF,
            flag,
        }
    }

    /// The global call reference (value 0, Q.931 §4.3) used by RESTART.
    pub fn global(flag: bool) -> CallReference {
        CallReference::pri(0, flag)
    }

    pub fn is_dummy(self) -> bool {
        self.len == 0
    }

    pub fn is_global(self) -> bool {
        self.len > 0 && self.value == 0
    }

    /// The same reference as the other side sees it (flag inverted).
    pub fn peer(self) -> CallReference {
        CallReference {
            flag: !self.flag,
            ..self
        }
    }

    pub fn buffer_len(self) -> usize {
        1 + self.len as usize
    }
}

/// Why a message could not even be given to call control: Q.931 §5.8.1-5.8.3
/// say such a message is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// §5.8.1: shorter than a complete header.
    TooShort,
    /// §5.8.2: another protocol discriminator.
    ProtocolDiscriminator(u8),
    /// §5.8.3.1: bits 8-5 of the length octet not 0000, or a length this
    /// interface does not use.
    CallReferenceLength(u8),
    /// §5.8.3.1: a message type octet with bit 8 set (extension not used).
    MessageTypeExtension(u8),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::TooShort => f.write_str("message too short"),
            HeaderError::ProtocolDiscriminator(p) => write!(f, "protocol discriminator {p:#04x}"),
            HeaderError::CallReferenceLength(l) => {
                write!(f, "call reference length octet {l:#04x}")
            }
            HeaderError::MessageTypeExtension(t) => write!(f, "message type octet {t:#04x}"),
        }
    }
}

/// A borrowed view of a message checked once: the header is valid and
/// `body()` is the information element part.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub call_ref: CallReference,
    pub msg_type: MessageType,
    body: &'a [u8],
}

impl<'a> Header<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        let (&pd, rest) = data.split_first().ok_or(HeaderError::TooShort)?;
        if pd != PROTOCOL_DISCRIMINATOR {
            return Err(HeaderError::ProtocolDiscriminator(pd));
        }
        let (&len_octet, rest) = rest.split_first().ok_or(HeaderError::TooShort)?;
        if len_octet & 0xF0 != 0 || len_octet > 2 {
            return Err(HeaderError::CallReferenceLength(len_octet));
        }
        let len = len_octet as usize;
        if rest.len() < len + 1 {
            return Err(HeaderError::TooShort);
        }
        let call_ref = match len {
            0 => CallReference::DUMMY,
            1 => CallReference {
                len: 1,
                value: u16::from(rest[0] & 0x7F),
                flag: rest[0] & 0x80 != 0,
            },
            _ => CallReference {
                len: 2,
                value: u16::from_be_bytes([rest[0] & 0x7F, rest[1]]),
                flag: rest[0] & 0x80 != 0,
            },
        };
        let mt = rest[len];
        if mt & 0x80 != 0 {
            return Err(HeaderError::MessageTypeExtension(mt));
        }
        Ok(Header {
            call_ref,
            msg_type: MessageType(mt),
            body: &rest[len + 1..],
        })
    }

    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

/// Writes the header into `out`.
pub fn emit_header(call_ref: CallReference, msg_type: MessageType, out: &mut Vec<u8>) {
    out.push(PROTOCOL_DISCRIMINATOR);
    out.push(call_ref.len);
    let flag = if call_ref.flag { 0x80 } else { 0 };
    match call_ref.len {
        0 => {}
        1 => out.push(flag | (call_ref.value as u8 & 0x7F)),
        _ => {
            let [hi, lo] = (call_ref.value & 0x7FFF).to_be_bytes();
            out.push(flag | hi);
            out.push(lo);
        }
    }
    out.push(msg_type.0 & 0x7F);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_reference_flag_and_value() {
        let h = Header::parse(&[0x08, 0x02, 0x80, 0x05, 0x07]).unwrap();
        assert_eq!(h.call_ref, CallReference::pri(5, true));
        assert_eq!(h.msg_type, MessageType::CONNECT);
        let h = Header::parse(&[0x08, 0x00, 0x7B]).unwrap();
        assert!(h.call_ref.is_dummy());
        let h = Header::parse(&[0x08, 0x02, 0x00, 0x00, 0x46]).unwrap();
        assert!(h.call_ref.is_global());
        let mut v = Vec::new();
        emit_header(CallReference::pri(0x1234, true), MessageType::SETUP, &mut v);
        assert_eq!(v, [0x08, 0x02, 0x92, 0x34, 0x05]);
    }

    #[test]
    fn header_errors_are_values() {
        assert_eq!(Header::parse(&[]).unwrap_err(), HeaderError::TooShort);
        assert_eq!(
            Header::parse(&[0x08, 0x02, 0x00]).unwrap_err(),
            HeaderError::TooShort
        );
        assert_eq!(
            Header::parse(&[0x09, 0x02, 0, 1, 5]).unwrap_err(),
            HeaderError::ProtocolDiscriminator(9)
        );
        assert_eq!(
            Header::parse(&[0x08, 0x12, 0, 1, 5]).unwrap_err(),
            HeaderError::CallReferenceLength(0x12)
        );
        assert_eq!(
            Header::parse(&[0x08, 0x03, 0, 1, 5, 5]).unwrap_err(),
            HeaderError::CallReferenceLength(3)
        );
    }
}
