//! Q.931 / ETSI EN 300 403-1 for a primary rate interface: codec, call
//! control for the user and the network side, restart procedures.
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
//! # Call control: [`Q931`]
//!
//! One per span, sans-IO, built from a [`Config`] (role, [`TimerValues`]
//! table, hunting order, timeslots, restart on establishment, T316 retries,
//! overlap receiving); it logs the timer values in force when created.
//!
//! In: `handle_dl(now, DlIndication)` ([`DlIndication::Established`],
//! [`DlIndication::Released`], [`DlIndication::Data`] = one message) and
//! `handle_timeout(now)`. Out: `poll_dl()` -> [`DlRequest`] (establish,
//! data), `poll_event()` -> [`Event`], `poll_timeout()`.
//!
//! Commands (all `(now, ...) -> Result<_, CommandError>`):
//! `place_call(now, PlaceCall) -> CallId`, `information(id, digits,
//! sending_complete)` (overlap sending), `alerting(id)`, `progress(id,
//! description)`, `connect(id)`, `disconnect(id, cause)`, `release(id,
//! cause)`, `status_enquiry(id)`, `restart(class, timeslots)`.
//!
//! Events: `IncomingCall { id, called, calling, bearer, channel }`,
//! `SetupAcknowledged`, `Proceeding`, `ChannelSelected` (the channel of our
//! call when ALERTING or CONNECT answers its SETUP first), `Alerting`,
//! `Progress { description }`,
//! `Connected`, `Disconnected { cause, by }` (the peer started clearing),
//! `Released { cause, by }` (null state, channel free: exactly one per call),
//! `RestartSent { class, timeslots, attempt }`, `RestartReceived { class,
//! timeslots }`, `ChannelsRestarted`, `RestartFailed`, `LinkUp`, `LinkDown`.
//! [`CallId`]s are stable per call (a glare retry keeps its id) and are
//! never call references. [`Q931::channels`] is the span's
//! [`ChannelTable`] (idle, reserved, busy, restarting, out of service).
//!
//! Behaviour: en-bloc and overlap calls both ways; an incoming SETUP is
//! answered with CALL PROCEEDING at once (or SETUP ACKNOWLEDGE when it lacks
//! Sending Complete and overlap receiving is on); incoming clearing is
//! answered with RELEASE at once (no in-band tones kept after DISCONNECT).
//! Timers per call: T303 (SETUP retransmitted once, same bytes), T304,
//! T302, T310, T301, T313, T305, T308 (RELEASE once more, then the call
//! reference is released), T309 (link down: active calls survive, others
//! are cleared at once; STATUS ENQUIRY on re-establishment), T322; per span
//! T316. Glare: the network side wins; the user side retries once on
//! another channel after RELEASE COMPLETE cause 44, keeping the [`CallId`].
//!
//! # Layer 2
//!
//! [`DlIndication`] goes in, [`DlRequest`] comes out; the D-channel task
//! maps them to the Q.921 primitives. While the link is down messages are
//! queued (bounded) and one DL-ESTABLISH is requested.
//!
//! [`TimerValues`]: crate::isdn::timers::TimerValues

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
pub use call::{Config, Counters, NumberComplete, Q931};
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
