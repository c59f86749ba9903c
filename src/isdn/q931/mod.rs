//! Q.931 / ETSI EN 300 403-1 for a primary rate interface.
//!
//! # Codec
//!
//! [`Message::parse`] reads one layer-3 message (the information field of a
//! LAPD I-frame) into a [`Decoded`]: the [`Message`] (call reference,
//! [`MessageType`], elements in wire order as [`Ie`]s, shifts and codeset
//! 5/6/7 elements kept raw) and the [`IeFinding`]s of the element checks.
//! Header errors ([`HeaderError`]: too short, other protocol discriminator,
//! bad call reference length) mean "ignore the message" (§5.8.1-5.8.3).
//! [`check`] classifies a decoded message per §5.8.4-5.8.7 into a
//! [`Verdict`] with the cause (96, 97, 99, 100) call control answers with.
//! [`Message::to_vec`] / [`Message::emit`] encode; for every message `m`
//! that encodes, `parse(encode(m)).message == m`.
//!
//! Elements are table-driven: [`ie::IE_TABLE`] (id, name, max repeat,
//! length bounds, decode, encode) and [`rules::MESSAGE_TABLE`] (mandatory
//! elements each way, optional elements, per message type).
//!
//! # Layer 2
//!
//! [`DlIndication`] (established, released, data) goes in; [`DlRequest`]
//! (establish, data) comes out. The D-channel task maps them to Q.921.

pub mod api;
pub mod call;
pub mod channels;
pub mod codepoints;
pub mod header;
pub mod ie;
pub mod ie_number;
pub mod ie_values;
pub mod layer2;
pub mod message;
pub mod rules;
pub mod state;

pub use api::{CallId, ClearedBy, CommandError, Event, PlaceCall, Role};
pub use call::{Config, Counters, Q931};
pub use channels::{ChannelState, ChannelTable, Hunt};
pub use codepoints::{IeId, MessageType};
pub use header::{CallReference, Header, HeaderError, PROTOCOL_DISCRIMINATOR};
pub use ie::{Ie, IeBody, IeFinding, Ies};
pub use ie_number::{PartyNumber, Subaddress};
pub use ie_values::{
    BearerCapability, CallStateIe, CauseIe, ChannelId, ChannelList, DateTime,
    NotificationIndicator, ProgressIndicator, RestartClass, UserUser,
};
pub use layer2::{DlIndication, DlRequest};
pub use message::{Decoded, Message};
pub use rules::{Direction, Problem, Verdict, check};
pub use state::State;

/// Fuzz entry point for `fuzz/fuzz_targets/q931_message.rs`: decode, check
/// both ways, re-encode and check that the value survives. Never panics on
/// any input; the assertion is an invariant of the codec, not of the input.
#[doc(hidden)]
pub fn fuzz_q931_message(data: &[u8]) {
    let Ok(d) = Message::parse(data) else {
        return;
    };
    let _ = check(&d, Direction::NetworkToUser);
    let _ = check(&d, Direction::UserToNetwork);
    if let Ok(bytes) = d.message.to_vec() {
        let again = Message::parse(&bytes).map(|d| d.message);
        assert_eq!(
            again.as_ref(),
            Ok(&d.message),
            "re-encode changed the message"
        );
    }
}
