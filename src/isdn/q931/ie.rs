//! Information elements: one table of every codeset 0 element this stack
//! knows (id, name, max repeat, length bounds, decode, encode), the element
//! list of a message with locking / non-locking shifts kept in place, and
//! the findings of §5.8.5-5.8.7 raised while reading it.

use super::codepoints::IeId;
use super::ie_number::{PartyNumber, Subaddress};
use super::ie_values::*;

/// The contents of one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IeBody {
    /// Shift (§4.5.3): locking or non-locking to `codeset`.
    Shift {
        locking: bool,
        codeset: u8,
    },
    SendingComplete,
    /// Another single-octet element (more data, congestion level, repeat
    /// indicator ...): its low nibble (0 for type 2).
    Single(u8),
    BearerCapability(BearerCapability),
    Cause(CauseIe),
    CallState(CallStateIe),
    ChannelId(ChannelId),
    ProgressIndicator(ProgressIndicator),
    NotificationIndicator(NotificationIndicator),
    Display(Vec<u8>),
    DateTime(DateTime),
    Keypad(Vec<u8>),
    Signal(u8),
    Number(PartyNumber),
    Subaddress(Subaddress),
    RestartIndicator(RestartClass),
    UserUser(UserUser),
    /// Known element kept as octets (facility, LLC, HLC, call identity ...).
    Opaque(Vec<u8>),
    /// Element of another codeset or an unknown identifier, kept as it came.
    Raw(Vec<u8>),
    /// Known element whose contents failed to decode (§5.8.6.2 / §5.8.7.2).
    Invalid(Vec<u8>),
}

/// One element, with the codeset it was read in (derived from the shifts
/// before it; [`Ies::push`] computes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ie {
    pub codeset: u8,
    pub id: IeId,
    pub body: IeBody,
}

type Decode = fn(&[u8]) -> Option<IeBody>;
type Encode = fn(&IeBody, &mut Vec<u8>);

/// One row of the element table.
pub struct IeSpec {
    pub id: IeId,
    pub name: &'static str,
    /// Occurrences allowed in one message (§5.8.5: further ones are ignored).
    pub max_repeat: u8,
    pub min_len: u8,
    pub max_len: u8,
    pub decode: Decode,
    pub encode: Encode,
}

fn enc(body: &IeBody, out: &mut Vec<u8>) {
    match body {
        IeBody::BearerCapability(v) => v.encode(out),
        IeBody::Cause(v) => v.encode(out),
        IeBody::CallState(v) => v.encode(out),
        IeBody::ChannelId(v) => v.encode(out),
        IeBody::ProgressIndicator(v) => v.encode(out),
        IeBody::NotificationIndicator(v) => v.encode(out),
        IeBody::DateTime(v) => v.encode(out),
        IeBody::Number(v) => v.encode(out),
        IeBody::Subaddress(v) => v.encode(out),
        IeBody::RestartIndicator(v) => v.encode(out),
        IeBody::UserUser(v) => v.encode(out),
        IeBody::Signal(v) => out.push(*v),
        IeBody::Display(b)
        | IeBody::Keypad(b)
        | IeBody::Opaque(b)
        | IeBody::Raw(b)
        | IeBody::Invalid(b) => out.extend_from_slice(b),
        IeBody::Shift { .. } | IeBody::SendingComplete | IeBody::Single(_) => {}
    }
}

fn opaque(c: &[u8]) -> Option<IeBody> {
    Some(IeBody::Opaque(c.to_vec()))
}

/// Every codeset 0 variable-length element (Q.931 Table 4-3, EN 300 403
/// §4.5), in identifier order.
pub const IE_TABLE: &[IeSpec] = &[
    IeSpec {
        id: IeId::BEARER_CAPABILITY,
        name: "Bearer capability",
        max_repeat: 3,
        min_len: 2,
        max_len: 12,
        decode: |c| BearerCapability::decode(c).map(IeBody::BearerCapability),
        encode: enc,
    },
    IeSpec {
        id: IeId::CAUSE,
        name: "Cause",
        max_repeat: 2,
        min_len: 2,
        max_len: 30,
        decode: |c| CauseIe::decode(c).map(IeBody::Cause),
        encode: enc,
    },
    IeSpec {
        id: IeId::CALL_IDENTITY,
        name: "Call identity",
        max_repeat: 1,
        min_len: 0,
        max_len: 8,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::CALL_STATE,
        name: "Call state",
        max_repeat: 1,
        min_len: 1,
        max_len: 1,
        decode: |c| CallStateIe::decode(c).map(IeBody::CallState),
        encode: enc,
    },
    IeSpec {
        id: IeId::CHANNEL_IDENTIFICATION,
        name: "Channel identification",
        max_repeat: 1,
        min_len: 1,
        max_len: 34,
        decode: |c| ChannelId::decode(c).map(IeBody::ChannelId),
        encode: enc,
    },
    IeSpec {
        id: IeId::FACILITY,
        name: "Facility",
        max_repeat: 255,
        min_len: 1,
        max_len: 255,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::PROGRESS_INDICATOR,
        name: "Progress indicator",
        max_repeat: 2,
        min_len: 2,
        max_len: 2,
        decode: |c| ProgressIndicator::decode(c).map(IeBody::ProgressIndicator),
        encode: enc,
    },
    IeSpec {
        id: IeId::NETWORK_SPECIFIC_FACILITIES,
        name: "Network-specific facilities",
        max_repeat: 4,
        min_len: 1,
        max_len: 255,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::NOTIFICATION_INDICATOR,
        name: "Notification indicator",
        max_repeat: 1,
        min_len: 1,
        max_len: 255,
        decode: |c| NotificationIndicator::decode(c).map(IeBody::NotificationIndicator),
        encode: enc,
    },
    IeSpec {
        id: IeId::DISPLAY,
        name: "Display",
        max_repeat: 1,
        min_len: 1,
        max_len: 82,
        decode: |c| decode_ia5(c).map(IeBody::Display),
        encode: enc,
    },
    IeSpec {
        id: IeId::DATE_TIME,
        name: "Date/time",
        max_repeat: 1,
        min_len: 3,
        max_len: 6,
        decode: |c| DateTime::decode(c).map(IeBody::DateTime),
        encode: enc,
    },
    IeSpec {
        id: IeId::KEYPAD_FACILITY,
        name: "Keypad facility",
        max_repeat: 1,
        min_len: 1,
        max_len: 32,
        decode: |c| decode_ia5(c).map(IeBody::Keypad),
        encode: enc,
    },
    IeSpec {
        id: IeId::SIGNAL,
        name: "Signal",
        max_repeat: 1,
        min_len: 1,
        max_len: 1,
        decode: |c| c.first().map(|s| IeBody::Signal(*s)),
        encode: enc,
    },
    IeSpec {
        id: IeId::CONNECTED_NUMBER,
        name: "Connected number",
        max_repeat: 1,
        min_len: 1,
        max_len: 24,
        decode: |c| PartyNumber::decode(c, true, false).map(IeBody::Number),
        encode: enc,
    },
    IeSpec {
        id: IeId::CONNECTED_SUBADDRESS,
        name: "Connected subaddress",
        max_repeat: 1,
        min_len: 1,
        max_len: 21,
        decode: |c| Subaddress::decode(c).map(IeBody::Subaddress),
        encode: enc,
    },
    IeSpec {
        id: IeId::CALLING_PARTY_NUMBER,
        name: "Calling party number",
        max_repeat: 2,
        min_len: 1,
        max_len: 24,
        decode: |c| PartyNumber::decode(c, true, false).map(IeBody::Number),
        encode: enc,
    },
    IeSpec {
        id: IeId::CALLING_PARTY_SUBADDRESS,
        name: "Calling party subaddress",
        max_repeat: 1,
        min_len: 1,
        max_len: 21,
        decode: |c| Subaddress::decode(c).map(IeBody::Subaddress),
        encode: enc,
    },
    IeSpec {
        id: IeId::CALLED_PARTY_NUMBER,
        name: "Called party number",
        max_repeat: 1,
        min_len: 1,
        max_len: 34,
        decode: |c| PartyNumber::decode(c, false, false).map(IeBody::Number),
        encode: enc,
    },
    IeSpec {
        id: IeId::CALLED_PARTY_SUBADDRESS,
        name: "Called party subaddress",
        max_repeat: 1,
        min_len: 1,
        max_len: 21,
        decode: |c| Subaddress::decode(c).map(IeBody::Subaddress),
        encode: enc,
    },
    IeSpec {
        id: IeId::REDIRECTING_NUMBER,
        name: "Redirecting number",
        max_repeat: 2,
        min_len: 1,
        max_len: 24,
        decode: |c| PartyNumber::decode(c, true, true).map(IeBody::Number),
        encode: enc,
    },
    IeSpec {
        id: IeId::TRANSIT_NETWORK_SELECTION,
        name: "Transit network selection",
        max_repeat: 4,
        min_len: 1,
        max_len: 255,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::RESTART_INDICATOR,
        name: "Restart indicator",
        max_repeat: 1,
        min_len: 1,
        max_len: 1,
        decode: |c| RestartClass::decode(c).map(IeBody::RestartIndicator),
        encode: enc,
    },
    IeSpec {
        id: IeId::LOW_LAYER_COMPATIBILITY,
        name: "Low layer compatibility",
        max_repeat: 2,
        min_len: 2,
        max_len: 16,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::HIGH_LAYER_COMPATIBILITY,
        name: "High layer compatibility",
        max_repeat: 2,
        min_len: 2,
        max_len: 3,
        decode: opaque,
        encode: enc,
    },
    IeSpec {
        id: IeId::USER_USER,
        name: "User-user",
        max_repeat: 1,
        min_len: 1,
        max_len: 131,
        decode: |c| UserUser::decode(c).map(IeBody::UserUser),
        encode: enc,
    },
];

/// The table row of a codeset 0 variable-length element.
pub fn spec(id: IeId) -> Option<&'static IeSpec> {
    IE_TABLE.iter().find(|s| s.id == id)
}

/// Decodes one element's contents with the table; unknown ids become `Raw`,
/// contents that fail or break the length bounds become `Invalid`.
pub fn decode_contents(codeset: u8, id: IeId, c: &[u8]) -> IeBody {
    if codeset != 0 {
        return IeBody::Raw(c.to_vec());
    }
    match spec(id) {
        None => IeBody::Raw(c.to_vec()),
        Some(s) if c.len() < s.min_len as usize || c.len() > s.max_len as usize => {
            IeBody::Invalid(c.to_vec())
        }
        Some(s) => (s.decode)(c).unwrap_or_else(|| IeBody::Invalid(c.to_vec())),
    }
}

/// A problem found while reading the elements of a message (§5.8.5-5.8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IeFinding {
    /// §5.8.5.1: a variable-length element after one with a higher id.
    OutOfSequence(IeId),
    /// §5.8.5.2: more occurrences than allowed; the extra ones are ignored.
    Repeated(IeId),
    /// §5.8.7.1: an element this stack does not know (codeset 0).
    Unrecognized(IeId),
    /// §5.8.6.2 / §5.8.7.2: contents that do not decode.
    InvalidContents(IeId),
    /// The last element's length runs past the end of the message; its
    /// octets are dropped.
    Truncated(IeId),
    /// §4.5.2: a locking shift to a lower codeset.
    ShiftBackwards(u8),
}

/// Reads the element part of a message. Never panics; everything odd
/// becomes a finding.
pub fn parse_ies(mut data: &[u8], findings: &mut Vec<IeFinding>) -> Vec<Ie> {
    let mut ies: Vec<Ie> = Vec::new();
    let mut locked = 0u8;
    let mut next_only: Option<u8> = None;
    let mut last_id: [u8; 8] = [0; 8];
    while let Some((&octet, rest)) = data.split_first() {
        let codeset = next_only.take().unwrap_or(locked);
        if octet & 0x80 != 0 {
            data = rest;
            let id = IeId::of_single_octet(octet);
            let body = match id {
                IeId::SHIFT => {
                    let locking = octet & 0x08 == 0;
                    let cs = octet & 0x07;
                    if locking {
                        if cs < locked {
                            findings.push(IeFinding::ShiftBackwards(cs));
                        }
                        locked = cs;
                    } else {
                        next_only = Some(cs);
                    }
                    IeBody::Shift {
                        locking,
                        codeset: cs,
                    }
                }
                IeId::SENDING_COMPLETE => IeBody::SendingComplete,
                _ => IeBody::Single(if octet & 0xF0 == 0xA0 {
                    0
                } else {
                    octet & 0x0F
                }),
            };
            ies.push(Ie { codeset, id, body });
            continue;
        }
        let id = IeId(octet);
        let Some((&len, rest)) = rest.split_first() else {
            findings.push(IeFinding::Truncated(id));
            break;
        };
        if rest.len() < len as usize {
            findings.push(IeFinding::Truncated(id));
            break;
        }
        let (contents, rest) = rest.split_at(len as usize);
        data = rest;
        let cs = codeset as usize & 7;
        if octet < last_id[cs] {
            findings.push(IeFinding::OutOfSequence(id));
        }
        last_id[cs] = last_id[cs].max(octet);
        let body = decode_contents(codeset, id, contents);
        if codeset == 0 {
            match &body {
                IeBody::Raw(_) => findings.push(IeFinding::Unrecognized(id)),
                IeBody::Invalid(_) => findings.push(IeFinding::InvalidContents(id)),
                _ => {}
            }
            if let Some(s) = spec(id) {
                let seen = ies.iter().filter(|i| i.codeset == 0 && i.id == id).count();
                if seen >= s.max_repeat as usize {
                    findings.push(IeFinding::Repeated(id));
                }
            }
        }
        ies.push(Ie { codeset, id, body });
    }
    ies
}

/// An element too long to encode (contents over 255 octets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub IeId);

/// Encodes elements in order, shifts included.
pub fn emit_ies(ies: &[Ie], out: &mut Vec<u8>) -> Result<(), TooLong> {
    for ie in ies {
        match &ie.body {
            IeBody::Shift { locking, codeset } => {
                out.push(0x90 | if *locking { 0 } else { 0x08 } | (codeset & 7));
            }
            IeBody::SendingComplete => out.push(0xA1),
            IeBody::Single(v) => out.push(if ie.id.0 & 0xF0 == 0xA0 {
                ie.id.0
            } else {
                ie.id.0 & 0xF0 | (v & 0x0F)
            }),
            body => {
                out.push(ie.id.0 & 0x7F);
                let at = out.len();
                out.push(0);
                enc(body, out);
                let n = out.len() - at - 1;
                if n > 255 {
                    return Err(TooLong(ie.id));
                }
                out[at] = n as u8;
            }
        }
    }
    Ok(())
}

/// A builder that tracks the codeset as shifts are pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ies {
    pub list: Vec<Ie>,
    locked: u8,
    next_only: Option<u8>,
}

impl Ies {
    pub fn push(&mut self, id: IeId, body: IeBody) -> &mut Self {
        let codeset = self.next_only.take().unwrap_or(self.locked);
        if let IeBody::Shift {
            locking,
            codeset: cs,
        } = body
        {
            if locking {
                self.locked = cs;
            } else {
                self.next_only = Some(cs);
            }
        }
        self.list.push(Ie { codeset, id, body });
        self
    }
}
