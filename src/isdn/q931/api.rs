//! What the call module gives a span's Q.931 (commands, as methods on
//! [`super::Q931`]) and gets back ([`Event`]s), with stable per-call ids.

use super::ie_number::PartyNumber;
use super::ie_values::{BearerCapability, RestartClass};
use crate::isdn::cause::Cause;
use crate::isdn::timers::TimerId;

/// A call's id on a span: stable for the call's life (a retry on another
/// channel after glare keeps it), never a call reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

/// Which side of the interface we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Network,
}

/// An outgoing call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceCall {
    pub called: PartyNumber,
    pub calling: Option<PartyNumber>,
    pub bearer: BearerCapability,
    /// A timeslot, or `None` to hunt.
    pub channel: Option<u8>,
    /// Channel identification exclusive (true) or preferred.
    pub exclusive: bool,
    /// En bloc (Sending Complete in SETUP) or overlap sending: more digits
    /// follow with [`super::Q931::information`].
    pub sending_complete: bool,
}

impl PlaceCall {
    /// A speech call to `called` on any channel, preferred.
    pub fn speech(called: &str, calling: Option<&str>) -> PlaceCall {
        PlaceCall {
            called: PartyNumber::new(PartyNumber::TON_UNKNOWN, PartyNumber::NPI_E164, called),
            calling: calling
                .map(|c| PartyNumber::new(PartyNumber::TON_NATIONAL, PartyNumber::NPI_E164, c)),
            bearer: BearerCapability::speech_alaw(),
            channel: None,
            exclusive: false,
            sending_complete: true,
        }
    }
}

/// Who or what ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearedBy {
    /// Our call module (a command).
    Local,
    /// The peer's clearing message.
    Remote,
    /// A timer's expiry (T303, T308, T309 ...).
    Timer(TimerId),
    /// The data link failed while the call was not active.
    Link,
    /// A RESTART covering its channel.
    Restart,
    /// A protocol error (§5.8) or state mismatch (§5.8.11).
    Protocol,
}

/// What a span's Q.931 reports to the call module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    IncomingCall {
        id: CallId,
        called: Option<PartyNumber>,
        calling: Option<PartyNumber>,
        bearer: Option<BearerCapability>,
        channel: u8,
    },
    /// SETUP ACKNOWLEDGE for our overlap call: send the rest of the digits.
    SetupAcknowledged {
        id: CallId,
        channel: u8,
    },
    /// CALL PROCEEDING for our call; `channel` is the one in use.
    Proceeding {
        id: CallId,
        channel: u8,
    },
    /// The channel of our call, when the peer's first answer is ALERTING
    /// or CONNECT (no CALL PROCEEDING, which would carry it) or an answer
    /// names another channel. Comes before that answer's own event.
    ChannelSelected {
        id: CallId,
        channel: u8,
    },
    Alerting {
        id: CallId,
    },
    /// Progress indicator (1 or 8: in-band information, early media).
    Progress {
        id: CallId,
        description: u8,
    },
    Connected {
        id: CallId,
    },
    /// The peer started clearing (DISCONNECT or RELEASE).
    Disconnected {
        id: CallId,
        cause: Cause,
        by: ClearedBy,
    },
    /// The call reached the null state; its channel is free.
    Released {
        id: CallId,
        cause: Cause,
        by: ClearedBy,
    },
    /// We sent RESTART (§5.5.1) for these channels; `attempt` is 1 for the
    /// first message and counts the retransmissions after T316.
    RestartSent {
        class: RestartClass,
        timeslots: Vec<u8>,
        attempt: u8,
    },
    /// The peer sent a valid RESTART (§5.5.2) for these channels; their
    /// calls were cleared and RESTART ACKNOWLEDGE is on its way
    /// (`ChannelsRestarted` follows).
    RestartReceived {
        class: RestartClass,
        timeslots: Vec<u8>,
    },
    /// These channels were restarted (either direction) and are idle.
    ChannelsRestarted {
        timeslots: Vec<u8>,
    },
    /// A RESTART of ours got no RESTART ACKNOWLEDGE after every retry; its
    /// channels are out of service.
    RestartFailed {
        timeslots: Vec<u8>,
    },
    LinkUp,
    LinkDown,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    UnknownCall,
    /// Not allowed in the call's state.
    WrongState,
    /// No idle channel (or the one asked for is not idle).
    NoChannel,
    /// A RESTART is already outstanding (one at a time: no storms).
    RestartPending,
}
