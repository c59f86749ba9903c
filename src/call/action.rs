//! What the call manager asks its shell to do ([`Action`]) and the replies
//! it takes back: one variant per D-channel command, `UserAgent` method,
//! media command and CDR, so the shell maps each 1:1.

use crate::call::cdr::CdrRecord;
use crate::isdn::cause::Cause;
use crate::isdn::q931::{CallId, PlaceCall, RestartClass};
use crate::media::control as media;
use crate::sip::endpoint::Remote;
use crate::sip::header::NameAddr;
use crate::sip::message::Header;
use crate::sip::sdp::Sdp;
use crate::sip::ua::{CallHandle, OutgoingCall};
use crate::sip::uri::Uri;

/// Ties a command that creates an id (an ISDN `PlaceCall`, a SIP
/// `PlaceCall`) to its reply. Chosen by the manager, never reused.
pub type Token = u64;

/// A span's D-channel command: [`crate::isdn::task::Command`] without the
/// reply channels (the shell adds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsdnCommand {
    /// Reply with [`CallManager::handle_isdn_placed`](super::manager::CallManager::handle_isdn_placed)`(token, result)`.
    PlaceCall {
        token: Token,
        call: PlaceCall,
    },
    Information {
        id: CallId,
        digits: String,
        sending_complete: bool,
    },
    Alerting {
        id: CallId,
    },
    Progress {
        id: CallId,
        description: u8,
    },
    Connect {
        id: CallId,
    },
    Disconnect {
        id: CallId,
        cause: Cause,
    },
    Release {
        id: CallId,
        cause: Cause,
    },
    StatusEnquiry {
        id: CallId,
    },
    Restart {
        class: RestartClass,
        timeslots: Vec<u8>,
    },
    /// Busy-out of the span's B-channels on or off.
    BusyOut {
        on: bool,
    },
}

/// An INVITE to send: [`OutgoingCall`] without the next hop, which the SIP
/// task picks from the peer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteParams {
    pub request_uri: Uri,
    pub from: NameAddr,
    pub to: NameAddr,
    /// P-Asserted-Identity, Privacy.
    pub headers: Vec<Header>,
    pub sdp: Sdp,
}

impl InviteParams {
    /// The user agent's parameters for `peer`.
    pub fn into_outgoing(self, peer: Remote) -> OutgoingCall {
        OutgoingCall {
            request_uri: self.request_uri,
            from: self.from,
            to: self.to,
            headers: self.headers,
            sdp: self.sdp,
            peer,
        }
    }
}

/// What the SIP task does for the manager; each maps to one `UserAgent`
/// method of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipAction {
    /// Place the call to `group`: the SIP task tries the group's peers in
    /// turn (`PeerTable::select`) and fails over between them by itself;
    /// reply with [`CallManager::handle_sip_placed`](super::manager::CallManager::handle_sip_placed).
    PlaceCall {
        token: Token,
        group: String,
        invite: Box<InviteParams>,
    },
    Provisional {
        call: CallHandle,
        status: u16,
        sdp: Option<Sdp>,
    },
    Accept {
        call: CallHandle,
        sdp: Option<Sdp>,
    },
    Reject {
        call: CallHandle,
        status: u16,
        reason: Option<String>,
    },
    Hangup {
        call: CallHandle,
        reason: Option<String>,
    },
    Reinvite {
        call: CallHandle,
        sdp: Sdp,
    },
    DtmfInfo {
        call: CallHandle,
        digit: char,
        duration_ms: u32,
    },
}

/// Everything the manager wants done. Execute in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Isdn {
        span: u8,
        command: IsdnCommand,
    },
    Sip(SipAction),
    Media(media::Command),
    /// Write with the `CdrWriter` (which redacts).
    Cdr(CdrRecord),
}

/// Why the SIP task could not place a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipPlaceError {
    /// The group has no peer or is unknown.
    NoPeer,
    /// The SIP task has stopped.
    Stopped,
}
