//! A whole Q.931 message: header plus elements, with `parse`, `buffer_len`
//! and `emit` into a caller's buffer.

use super::codepoints::{IeId, MessageType};
use super::header::{CallReference, Header, HeaderError, emit_header};
use super::ie::{Ie, IeBody, IeFinding, Ies, TooLong, emit_ies, parse_ies};
use super::ie_number::PartyNumber;
use super::ie_values::{BearerCapability, CauseIe, ChannelId, ProgressIndicator, RestartClass};

/// A decoded (or to-be-sent) message. Elements stay in wire order, shifts
/// and unknown elements included, so a received message re-encodes to the
/// same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub call_ref: CallReference,
    pub msg_type: MessageType,
    pub ies: Vec<Ie>,
}

/// A parsed message and what §5.8 checks found in its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub message: Message,
    pub findings: Vec<IeFinding>,
}

impl Message {
    pub fn new(call_ref: CallReference, msg_type: MessageType) -> Message {
        Message {
            call_ref,
            msg_type,
            ies: Vec::new(),
        }
    }

    /// Appends an element (codeset 0 unless shifts were pushed before).
    pub fn with(mut self, id: IeId, body: IeBody) -> Message {
        // Recompute the shift state from what is there.
        let mut rebuilt = Ies::default();
        for ie in std::mem::take(&mut self.ies) {
            rebuilt.push(ie.id, ie.body);
        }
        rebuilt.push(id, body);
        self.ies = rebuilt.list;
        self
    }

    pub fn parse(data: &[u8]) -> Result<Decoded, HeaderError> {
        let h = Header::parse(data)?;
        let mut findings = Vec::new();
        let ies = parse_ies(h.body(), &mut findings);
        Ok(Decoded {
            message: Message {
                call_ref: h.call_ref,
                msg_type: h.msg_type,
                ies,
            },
            findings,
        })
    }

    /// The encoded message.
    pub fn to_vec(&self) -> Result<Vec<u8>, TooLong> {
        let mut out = Vec::with_capacity(64);
        emit_header(self.call_ref, self.msg_type, &mut out);
        emit_ies(&self.ies, &mut out)?;
        Ok(out)
    }

    pub fn buffer_len(&self) -> Result<usize, TooLong> {
        self.to_vec().map(|v| v.len())
    }

    /// Writes the message into `buf`, returning its length; `None` if it
    /// does not fit or an element is too long.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let v = self.to_vec().ok()?;
        buf.get_mut(..v.len())?.copy_from_slice(&v);
        Some(v.len())
    }

    /// The first codeset 0 occurrence of `id` (§5.8.5.2: repetitions beyond
    /// the first are ignored where repetition is not allowed).
    pub fn ie(&self, id: IeId) -> Option<&IeBody> {
        self.ies
            .iter()
            .find(|i| i.codeset == 0 && i.id == id)
            .map(|i| &i.body)
    }

    pub fn has(&self, id: IeId) -> bool {
        self.ie(id).is_some()
    }

    pub fn cause(&self) -> Option<&CauseIe> {
        match self.ie(IeId::CAUSE) {
            Some(IeBody::Cause(c)) => Some(c),
            _ => None,
        }
    }

    pub fn channel_id(&self) -> Option<&ChannelId> {
        match self.ie(IeId::CHANNEL_IDENTIFICATION) {
            Some(IeBody::ChannelId(c)) => Some(c),
            _ => None,
        }
    }

    pub fn bearer(&self) -> Option<&BearerCapability> {
        match self.ie(IeId::BEARER_CAPABILITY) {
            Some(IeBody::BearerCapability(c)) => Some(c),
            _ => None,
        }
    }

    pub fn number(&self, id: IeId) -> Option<&PartyNumber> {
        match self.ie(id) {
            Some(IeBody::Number(n)) => Some(n),
            _ => None,
        }
    }

    pub fn progress(&self) -> impl Iterator<Item = &ProgressIndicator> {
        self.ies.iter().filter_map(|i| match &i.body {
            IeBody::ProgressIndicator(p) if i.codeset == 0 => Some(p),
            _ => None,
        })
    }

    pub fn restart_class(&self) -> Option<RestartClass> {
        match self.ie(IeId::RESTART_INDICATOR) {
            Some(IeBody::RestartIndicator(c)) => Some(*c),
            _ => None,
        }
    }

    pub fn call_state(&self) -> Option<u8> {
        match self.ie(IeId::CALL_STATE) {
            Some(IeBody::CallState(c)) => Some(c.value),
            _ => None,
        }
    }

    pub fn sending_complete(&self) -> bool {
        self.ies.iter().any(|i| i.body == IeBody::SendingComplete)
    }
}
