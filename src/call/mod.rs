//! Calls: where ISDN and SIP meet. Routing, cause and number mapping between
//! Q.931 and SIP, the interworking core, and call detail records.
//!
//! # Contract
//!
//! [`manager::CallManager`] is the sans-IO interworking core (DESIGN.md §4).
//! It never touches a socket, a ring or the clock. Its shell (the daemon's
//! call task) feeds it, each with `now`:
//!
//! - every span's Q.931 event: `handle_isdn(now, span, event)`; the reply of
//!   each [`manager::IsdnCommand::PlaceCall`]: `handle_isdn_placed(now,
//!   token, Result<CallId, TaskError>)`; the span's channel table whenever
//!   its `DChannelStatus` changes: `handle_channel_table(span, &table)`;
//! - every user-agent event: `handle_sip(now, UaEvent)`; the reply of each
//!   [`manager::SipAction::PlaceCall`]: `handle_sip_placed(now, token,
//!   Result<(CallHandle, peer), SipPlaceError>)`; peer health:
//!   `handle_peer(group, peer, up)`;
//! - every media event: `handle_media(now, media::control::Event)`;
//! - `handle_timeout(now)` at `poll_timeout()`; `set_draining(bool)`.
//!
//! After each input it drains `poll_action()` and executes each
//! [`manager::Action`] in order: `Isdn { span, command }` on that span's
//! `DChannelHandle` (one method per command), `Sip(..)` on the SIP task
//! (one `UserAgent` method per action; `PlaceCall` picks a peer of the group
//! not in `exclude`), `Media(cmd)` into the media command ring, `Cdr(rec)`
//! to the `CdrWriter`. The replies of the two `PlaceCall`s are fed back
//! whenever they come (events of the new call that arrive first are held and
//! replayed); other command results need not be fed back (terminal events
//! drive clearing, the audit catches the rest).
//!
//! What it does: routing by [`routing::Router`] with per-route digit limits,
//! refusals (no route cause 1, incomplete 28, every peer of the group down
//! cause 34, draining cause 42 / SIP 503, all configurable); INVITE with an
//! SDP offer for the channel's RTP port, From / P-Asserted-Identity /
//! Privacy from the calling number ([`identity`]); INVITE -> SETUP on the
//! route's spans in order (next span when a SETUP cannot be placed); 18x /
//! 200 / early media both ways with the media channel connected when the
//! remote SDP is known; clearing in every state both ways with
//! [`cause_map`] (rule logged, Reason header both ways); SIP failover to the
//! next peer on 408/503 before any provisional; a periodic channel audit
//! that recovers mismatches with single-channel RESTARTs and sends STATUS
//! ENQUIRY on long calls; one CDR per call when all legs are gone.

pub mod action;
pub mod cause_map;
pub mod cdr;
pub mod identity;
pub mod manager;
pub mod manager_config;
pub mod numbers;
pub mod routing;
pub mod site_config;
pub mod task;
