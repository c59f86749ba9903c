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
//!   token, Result<CallId, TaskError>)`; every other command's refusal:
//!   `handle_isdn_refused(now, span, id, error)` (only "unknown call"
//!   matters: Q.931 has forgotten the call); the span's channel table
//!   whenever its `DChannelStatus` changes: `handle_channel_table(span,
//!   &table)`;
//! - every user-agent event: `handle_sip(now, UaEvent)`; the reply of each
//!   [`manager::SipAction::PlaceCall`]: `handle_sip_placed(now, token,
//!   Result<CallHandle, SipPlaceError>)`; the peer a SIP call went to or
//!   came from once the SIP layer names it: `handle_sip_peer(call, peer)`;
//!   peer health: `handle_peer(group, peer, up)`;
//! - every media event: `handle_media(now, media::control::Event)`;
//! - `handle_timeout(now)` at `poll_timeout()`; `set_draining(bool)`.
//!
//! After each input it drains `poll_action()` and executes each
//! [`manager::Action`] in order: `Isdn { span, command }` on that span's
//! `DChannelHandle` (one method per command), `Sip(..)` on the SIP task
//! (one `UserAgent` method per action; `PlaceCall` goes to the group, whose
//! peers the SIP task tries and fails over between by itself), `Media(cmd)`
//! into the media command ring, `Cdr(rec)` to the `CdrWriter`. The replies
//! of the two `PlaceCall`s are fed back whenever they come (events of the
//! new call that arrive first are held, and later events that depend on
//! them wait behind them, so what is applied is always in order); other
//! command results need not be fed back (terminal events drive clearing,
//! the audit catches the rest), but a refusal should be.
//!
//! What it does: routing by [`routing::Router`] with per-route digit limits,
//! refusals (no route cause 1, incomplete 28, every peer of the group down
//! cause 34, draining cause 42 / SIP 503, all configurable); INVITE with an
//! SDP offer for the channel's RTP port, From / P-Asserted-Identity /
//! Privacy from the calling number ([`identity`]); INVITE -> SETUP on the
//! route's spans in order (next span when a SETUP cannot be placed); 18x /
//! 200 / early media both ways with the media channel connected when the
//! remote SDP is known; clearing in every state both ways with
//! [`cause_map`] (rule logged, Reason header both ways; a SIP failure after
//! the SIP task's own failover is mapped, never retried here); clearing an
//! answered call on an RTP timeout (cause 41 by default); optional busy-out
//! of a span whose core groups are all down; a periodic channel audit that
//! restarts a channel stuck busy in Q.931 (single-channel RESTART), probes
//! a call Q.931 may have lost with STATUS ENQUIRY and sends STATUS ENQUIRY
//! on long calls; one CDR per call, naming the core peer, when all legs
//! are gone; the calls in progress for the status view.

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
