//! Which elements each message carries (EN 300 403-1 §3 / Q.931 §3.1, for
//! the primary rate interface) and the message-level error checks of Q.931
//! §5.8.4-5.8.7. The result is a [`Verdict`] call control acts on; what to
//! send back depends on the message and state (§5.8.6.1: RELEASE COMPLETE
//! for SETUP, RELEASE for DISCONNECT, STATUS otherwise ...).

use super::codepoints::{IeId, MessageType};
use super::ie::IeFinding;
use super::message::Decoded;
use crate::isdn::cause::Cause;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    NetworkToUser,
    UserToNetwork,
}

/// One row: mandatory elements each way, then the optional ones.
pub struct MessageSpec {
    pub msg_type: MessageType,
    pub mandatory_n_to_u: &'static [IeId],
    pub mandatory_u_to_n: &'static [IeId],
    pub optional: &'static [IeId],
}

use IeId as I;
const CLEARING_OPT: &[IeId] = &[
    I::CAUSE,
    I::FACILITY,
    I::PROGRESS_INDICATOR,
    I::DISPLAY,
    I::SIGNAL,
    I::USER_USER,
];

/// The per-message table. Elements "mandatory in the first response" (the
/// channel identification of the first answer to SETUP) are optional here
/// and checked by call control, which knows which answer is first.
pub const MESSAGE_TABLE: &[MessageSpec] = &[
    MessageSpec {
        msg_type: MessageType::ALERTING,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[
            I::BEARER_CAPABILITY,
            I::CHANNEL_IDENTIFICATION,
            I::FACILITY,
            I::PROGRESS_INDICATOR,
            I::DISPLAY,
            I::SIGNAL,
            I::HIGH_LAYER_COMPATIBILITY,
            I::USER_USER,
        ],
    },
    MessageSpec {
        msg_type: MessageType::CALL_PROCEEDING,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[
            I::BEARER_CAPABILITY,
            I::CHANNEL_IDENTIFICATION,
            I::FACILITY,
            I::PROGRESS_INDICATOR,
            I::DISPLAY,
            I::HIGH_LAYER_COMPATIBILITY,
        ],
    },
    MessageSpec {
        msg_type: MessageType::CONNECT,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[
            I::BEARER_CAPABILITY,
            I::CHANNEL_IDENTIFICATION,
            I::FACILITY,
            I::PROGRESS_INDICATOR,
            I::DISPLAY,
            I::DATE_TIME,
            I::SIGNAL,
            I::CONNECTED_NUMBER,
            I::CONNECTED_SUBADDRESS,
            I::LOW_LAYER_COMPATIBILITY,
            I::HIGH_LAYER_COMPATIBILITY,
            I::USER_USER,
        ],
    },
    MessageSpec {
        msg_type: MessageType::CONNECT_ACKNOWLEDGE,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[I::CHANNEL_IDENTIFICATION, I::DISPLAY, I::SIGNAL],
    },
    MessageSpec {
        msg_type: MessageType::DISCONNECT,
        mandatory_n_to_u: &[I::CAUSE],
        mandatory_u_to_n: &[I::CAUSE],
        optional: CLEARING_OPT,
    },
    MessageSpec {
        msg_type: MessageType::RELEASE,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: CLEARING_OPT,
    },
    MessageSpec {
        msg_type: MessageType::RELEASE_COMPLETE,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: CLEARING_OPT,
    },
    MessageSpec {
        msg_type: MessageType::PROGRESS,
        mandatory_n_to_u: &[I::PROGRESS_INDICATOR],
        mandatory_u_to_n: &[I::PROGRESS_INDICATOR],
        optional: &[
            I::BEARER_CAPABILITY,
            I::CAUSE,
            I::FACILITY,
            I::DISPLAY,
            I::HIGH_LAYER_COMPATIBILITY,
            I::USER_USER,
        ],
    },
    MessageSpec {
        msg_type: MessageType::SETUP,
        mandatory_n_to_u: &[I::BEARER_CAPABILITY, I::CHANNEL_IDENTIFICATION],
        mandatory_u_to_n: &[I::BEARER_CAPABILITY],
        optional: &[
            I::CHANNEL_IDENTIFICATION,
            I::FACILITY,
            I::PROGRESS_INDICATOR,
            I::NETWORK_SPECIFIC_FACILITIES,
            I::NOTIFICATION_INDICATOR,
            I::DISPLAY,
            I::DATE_TIME,
            I::KEYPAD_FACILITY,
            I::SIGNAL,
            I::CALLING_PARTY_NUMBER,
            I::CALLING_PARTY_SUBADDRESS,
            I::CALLED_PARTY_NUMBER,
            I::CALLED_PARTY_SUBADDRESS,
            I::REDIRECTING_NUMBER,
            I::TRANSIT_NETWORK_SELECTION,
            I::LOW_LAYER_COMPATIBILITY,
            I::HIGH_LAYER_COMPATIBILITY,
            I::USER_USER,
        ],
    },
    MessageSpec {
        msg_type: MessageType::SETUP_ACKNOWLEDGE,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[
            I::CHANNEL_IDENTIFICATION,
            I::FACILITY,
            I::PROGRESS_INDICATOR,
            I::DISPLAY,
            I::SIGNAL,
        ],
    },
    MessageSpec {
        msg_type: MessageType::STATUS,
        mandatory_n_to_u: &[I::CAUSE, I::CALL_STATE],
        mandatory_u_to_n: &[I::CAUSE, I::CALL_STATE],
        optional: &[I::DISPLAY],
    },
    MessageSpec {
        msg_type: MessageType::STATUS_ENQUIRY,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[I::DISPLAY],
    },
    MessageSpec {
        msg_type: MessageType::INFORMATION,
        mandatory_n_to_u: &[],
        mandatory_u_to_n: &[],
        optional: &[
            I::CAUSE,
            I::DISPLAY,
            I::KEYPAD_FACILITY,
            I::SIGNAL,
            I::CALLED_PARTY_NUMBER,
        ],
    },
    MessageSpec {
        msg_type: MessageType::NOTIFY,
        mandatory_n_to_u: &[I::NOTIFICATION_INDICATOR],
        mandatory_u_to_n: &[I::NOTIFICATION_INDICATOR],
        optional: &[I::BEARER_CAPABILITY, I::DISPLAY],
    },
    MessageSpec {
        msg_type: MessageType::FACILITY,
        mandatory_n_to_u: &[I::FACILITY],
        mandatory_u_to_n: &[I::FACILITY],
        optional: &[I::DISPLAY, I::CALLED_PARTY_NUMBER],
    },
    MessageSpec {
        msg_type: MessageType::RESTART,
        mandatory_n_to_u: &[I::RESTART_INDICATOR],
        mandatory_u_to_n: &[I::RESTART_INDICATOR],
        optional: &[I::CHANNEL_IDENTIFICATION, I::DISPLAY],
    },
    MessageSpec {
        msg_type: MessageType::RESTART_ACKNOWLEDGE,
        mandatory_n_to_u: &[I::RESTART_INDICATOR],
        mandatory_u_to_n: &[I::RESTART_INDICATOR],
        optional: &[I::CHANNEL_IDENTIFICATION, I::DISPLAY],
    },
];

pub fn message_spec(t: MessageType) -> Option<&'static MessageSpec> {
    MESSAGE_TABLE.iter().find(|s| s.msg_type == t)
}

/// A §5.8 error: the cause to answer with and its diagnostic octets (the
/// element or message type concerned, Q.850 Table 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub cause: Cause,
    pub diagnostic: Vec<u8>,
}

/// What call control does with a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Process it as it is.
    Accept,
    /// Process what was understood and report the problem (§5.8.7.1 cause
    /// 99, §5.8.7.2 cause 100 for optional elements).
    AcceptAndReport(Problem),
    /// Do not process it (§5.8.4 cause 97, §5.8.6.1 cause 96, §5.8.6.2
    /// cause 100 for mandatory elements); answer as §5.8.6 says for the
    /// message type.
    Reject(Problem),
}

/// Classifies a decoded message arriving in direction `dir`.
pub fn check(d: &Decoded, dir: Direction) -> Verdict {
    let m = &d.message;
    let Some(spec) = message_spec(m.msg_type) else {
        // §5.8.4: message type non-existent or not implemented.
        return Verdict::Reject(Problem {
            cause: Cause::MESSAGE_TYPE_NON_EXISTENT,
            diagnostic: vec![m.msg_type.0],
        });
    };
    let mandatory = match dir {
        Direction::NetworkToUser => spec.mandatory_n_to_u,
        Direction::UserToNetwork => spec.mandatory_u_to_n,
    };
    let invalid = |id: IeId| d.findings.contains(&IeFinding::InvalidContents(id));
    // §5.8.6.1: mandatory element missing.
    let missing: Vec<u8> = mandatory
        .iter()
        .filter(|id| !m.has(**id))
        .map(|id| id.0)
        .collect();
    if !missing.is_empty() {
        return reject(Cause::MANDATORY_IE_MISSING, missing);
    }
    // §5.8.6.2: mandatory element with invalid contents (the first
    // occurrence is the one that counts).
    let bad: Vec<u8> = mandatory
        .iter()
        .filter(|id| matches!(m.ie(**id), Some(super::ie::IeBody::Invalid(_))))
        .map(|id| id.0)
        .collect();
    if !bad.is_empty() {
        return reject(Cause::INVALID_IE_CONTENTS, bad);
    }
    // §5.8.7.1: unrecognized elements (unknown, or not defined for this
    // message); any with "comprehension required" is handled as a
    // missing mandatory element.
    let unrecognized: Vec<IeId> = m
        .ies
        .iter()
        .filter(|i| i.codeset == 0 && !i.id.is_single_octet())
        .map(|i| i.id)
        .filter(|id| !mandatory.contains(id) && !spec.optional.contains(id))
        .collect();
    if let Some(id) = unrecognized.iter().find(|id| id.comprehension_required()) {
        return reject(Cause::MANDATORY_IE_MISSING, vec![id.0]);
    }
    if !unrecognized.is_empty() {
        return Verdict::AcceptAndReport(Problem {
            cause: Cause::IE_NON_EXISTENT,
            diagnostic: unrecognized.iter().map(|i| i.0).collect(),
        });
    }
    // §5.8.7.2: optional element with invalid contents: ignore it, report.
    let bad_opt: Vec<u8> = spec
        .optional
        .iter()
        .filter(|id| invalid(**id))
        .map(|id| id.0)
        .collect();
    if !bad_opt.is_empty() {
        return Verdict::AcceptAndReport(Problem {
            cause: Cause::INVALID_IE_CONTENTS,
            diagnostic: bad_opt,
        });
    }
    // §5.8.5: out-of-sequence and repeated elements are processed / ignored
    // without an answer.
    Verdict::Accept
}

fn reject(cause: Cause, diagnostic: Vec<u8>) -> Verdict {
    Verdict::Reject(Problem { cause, diagnostic })
}
