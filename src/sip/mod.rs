//! SIP (RFC 3261) for the core side: sans-IO message layer.
//!
//! # Contract for other layers
//!
//! - [`Message::parse`]`(bytes, Framing, Limits)` returns a [`Message`] or a
//!   [`Rejection`]. A rejection's `answer` is `Some((status, request))` when
//!   the input was a request that can be answered (400 with the fault as
//!   reason phrase, 505, 513): build the reply with
//!   [`response_to`]`(&request, status, Some(fault), None)`. `None` means drop
//!   and count (responses never get answers; §16.7, §18.1.2).
//! - [`uas_precheck`] gives the 501/405/416/420 a UAS sends before its TU.
//! - [`response_to`] builds any response to a request (§8.2.6).
//! - [`sdp`]: `Sdp::parse` / `Sdp::to_text`, `sdp::offer(&LocalMedia)`,
//!   `sdp::answer(&offer, &LocalMedia)` (RFC 3264 §6, one audio stream,
//!   PCMA/PCMU/telephone-event, port 0 when nothing matches),
//!   `Sdp::audio_address()` for the media plane, `Origin::next_version()`.
//! - [`transaction::NonInviteClient`]: RFC 3261 §17.1.2 (Figure 6) with
//!   timers E/F/K from [`transaction::TimerValues`] (T1/T2/T4); sans-IO
//!   `handle_response`/`handle_transport_error`/`handle_timeout(now)`,
//!   `poll_transmit`/`poll_event`/`poll_timeout`.
//! - [`invite_client::InviteClient`]: RFC 3261 §17.1.1 (Figure 5) + RFC 6026
//!   Accepted; timers A/B/D/M; ACK for non-2xx built inside
//!   ([`invite_client::build_ack`]); 2xx and its retransmissions go to the TU.
//! - [`invite_server::InviteServer`]: RFC 3261 §17.2.1 (Figure 7) + RFC 6026
//!   Accepted; timers G/H/I/L; ACK in Accepted is handed to the TU.
//! - [`non_invite_server::NonInviteServer`]: RFC 3261 §17.2.2 (Figure 8),
//!   timer J; `handle_request` for retransmissions, `send_response` for the TU.
//! - [`matching`]: `server_key`, `client_key`, `cancelled_invite_key`
//!   (§17.1.3, §17.2.3, §9.2) to find the transaction for a message.
//! - [`endpoint::Endpoint`]: the transaction layer (§17) over those
//!   machines: `handle_input(now, bytes, Remote)`, `send_request`, `cancel`,
//!   `respond`, `send_stateless`; out come [`endpoint::Transmit`]
//!   (destination, transport, bytes) and [`endpoint::TxnEvent`]s; one
//!   `poll_timeout`/`handle_timeout` for all transactions. Answers parse
//!   rejections, prechecks, 100 Trying and CANCEL (§9.2) itself.
//! - [`dialog::Dialog`]: §12 UAC/UAS INVITE dialogs (route set, remote
//!   target, CSeq, in-dialog requests, ACK for 2xx).
//! - [`ua::UserAgent`]: calls for the call module by [`ua::CallHandle`]
//!   (`place_call`, `send_provisional`, `accept`, `reject`, `hangup`,
//!   `reinvite`, `send_dtmf_info`, `send_options`) and [`ua::UaEvent`]s;
//!   the SIP task feeds it bytes and time and sends its transmits. Options:
//!   RFC 3262 100rel/PRACK and RFC 4028 session timers ([`ua::UaConfig`]).
//! - [`StreamFramer`] cuts TCP/TLS byte streams into messages and keep-alives.
//! - [`Message::emit`] / [`Message::to_bytes`] write a message; Content-Length
//!   is always computed from the body.
//! - Typed accessors: [`Message::vias`], [`Message::from`], [`Message::to`],
//!   [`Message::call_id`], [`Message::cseq`], [`Message::contacts`],
//!   [`Message::list`] for any comma-list header, [`Header::value_str`] for
//!   one header's UTF-8 text (an error only for that header).
//!
//! - [`transport::Transports`] (tokio I/O shell, RFC 3261 §18): binds the
//!   UDP/TCP/TLS listeners, yields [`transport::TransportEvent`]s (an
//!   [`transport::Inbound`] with one whole message's bytes, or a
//!   [`transport::TransportError`] for a destination) and sends
//!   [`transport::Outbound`]s (connection reuse, responses on the incoming
//!   connection, §18.1.1 UDP→TCP size rule, RFC 5626 CRLF keep-alives,
//!   source allow-list, per-source rate limit, counters). It does not parse:
//!   the endpoint calls `Inbound::parse` and sends
//!   [`transport::answer_rejection`] for an answerable [`Rejection`].
//! - [`peer::PeerTable`] (sans-IO): core peer groups, OPTIONS ping health
//!   (`poll_ping`/`handle_ping_result`/`poll_timeout`/`handle_timeout`,
//!   `PeerUp`/`PeerDown` events), `select(group, now)` for a new call's
//!   ordered candidates, `report_failure`/`report_success` from calls;
//!   [`peer::options_request`] builds the ping.
//! - [`task`] (tokio): the SIP task owning the [`transport::Transports`],
//!   one [`ua::UserAgent`] and the [`peer::PeerTable`]. [`task::spawn`]`(
//!   SipTaskConfig, events, observer)` binds and returns a cloneable
//!   [`task::SipHandle`] (`place_call` to a peer group with failover to the
//!   next candidate on no response within `invite_timeout`, 503 or a
//!   transport error; `send_provisional`, `accept`, `reject`, `hangup` with
//!   a Reason, `reinvite`, `send_dtmf_info`, `set_draining`, `shutdown`;
//!   each answered by a oneshot) and a `JoinHandle<Stopped>`. Calls are
//!   named by [`task::SipCallId`]; [`task::SipEvent`]s (the user agent's
//!   call events plus `PeerUp`/`PeerDown`) go to an unbounded channel; a
//!   `watch` of [`task::SipStatus`] (peers with state and RTT, calls,
//!   dialogs, transactions, counters); the [`task::Observer`] gets `beat()`
//!   and `peer_event()` (`ops::sip` maps them to the supervisor and NOC).
//!   `config::SiteConfig::sip_task_config` builds its config.
//!
//! Messages are owned values (control plane, DESIGN §1); headers keep their
//! order, names as written and raw value bytes, so unknown headers pass
//! through unchanged. The `Reason` header is parsed by
//! `crate::call::cause_map::Reason`, not here.

pub mod dialog;
pub mod endpoint;
pub mod error;
pub mod framer;
pub mod header;
pub mod invite_client;
pub mod invite_server;
pub mod matching;
pub mod message;
pub mod non_invite_server;
pub mod peer;
pub mod response;
pub mod sdp;
pub mod task;
pub mod text;
pub mod transaction;
pub mod transport;
pub mod ua;
pub mod uri;

pub use error::SipError;
pub use framer::{Frame, FrameError, StreamFramer};
pub use header::{CSeq, MAGIC_COOKIE, Method, NameAddr, Via};
pub use message::{Framing, Header, Limits, Message, Rejection, StartLine};
pub use response::{UasCapabilities, reason_phrase, response_to, uas_precheck};
pub use text::{Param, Params};
pub use uri::{SipUri, TelUri, Uri};

/// Fuzz entry point: parse as a datagram and as a stream, answer what can be
/// answered, re-emit and re-parse what parsed. Must never panic.
#[doc(hidden)]
pub fn fuzz_sip_message(data: &[u8]) {
    for framing in [Framing::Datagram, Framing::Stream] {
        match Message::parse(data, framing, Limits::default()) {
            Ok(m) => {
                let _ = (
                    m.vias(),
                    m.from(),
                    m.to(),
                    m.cseq(),
                    m.contacts(),
                    m.call_id(),
                );
                let caps = UasCapabilities {
                    allow: vec![
                        Method::Invite,
                        Method::Ack,
                        Method::Bye,
                        Method::Cancel,
                        Method::Options,
                    ],
                    supported: vec![],
                };
                let _ = uas_precheck(&m, &caps);
                let again = Message::parse(&m.to_bytes(), framing, Limits::default());
                if framing == Framing::Datagram {
                    let _ = again;
                }
                let _ = response_to(&m, 200, None, Some("x"));
            }
            Err(r) => {
                if let Some((status, req)) = r.answer {
                    let _ = response_to(&req, status, Some(r.fault), None).to_bytes();
                }
            }
        }
    }
    let mut f = StreamFramer::new(4096);
    f.handle_input(data);
    while let Ok(Some(_)) = f.poll_frame() {}
}
