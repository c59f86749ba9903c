//! Transaction matching keys (RFC 3261 §17.1.3 client side, §17.2.3 server side).
//!
//! A TransactionLayer keeps its transactions in a map by [`TransactionKey`]:
//! - client side: a response matches by the top Via branch and the CSeq method;
//! - server side: a request matches by top Via branch (with the magic
//!   cookie), sent-by, and method, where ACK matches the INVITE it acknowledges
//!   and CANCEL is a transaction of its own (§9.2).
//!
//! Requests whose branch lacks the `z9hG4bK` cookie (RFC 2543 peers) have no
//! key here (`None`): §17.2.3's RFC 2543 matching is not supported.

use super::header::{MAGIC_COOKIE, Method};
use super::message::Message;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    pub branch: String,
    /// Server side only (§17.2.3); empty on the client side.
    pub sent_by: String,
    pub method: Method,
}

/// §17.1.3: the key a response is matched with on the client side.
pub fn client_key(response: &Message) -> Option<TransactionKey> {
    let via = response.vias().ok()?.into_iter().next()?;
    let method = response.cseq().ok()?.method;
    Some(TransactionKey {
        branch: via.branch()?.to_owned(),
        sent_by: String::new(),
        method,
    })
}

/// §17.2.3: the key a request is matched with on the server side.
pub fn server_key(request: &Message) -> Option<TransactionKey> {
    let via = request.vias().ok()?.into_iter().next()?;
    let branch = via.branch()?;
    if !branch.starts_with(MAGIC_COOKIE) {
        return None;
    }
    let method = match request.method()? {
        // An ACK for a non-2xx matches the INVITE transaction.
        Method::Ack => Method::Invite,
        m => m.clone(),
    };
    Some(TransactionKey {
        branch: branch.to_owned(),
        sent_by: via.sent_by().to_ascii_lowercase(),
        method,
    })
}

/// §9.2: the INVITE server transaction a CANCEL refers to: same key with
/// method INVITE.
pub fn cancelled_invite_key(cancel: &Message) -> Option<TransactionKey> {
    if cancel.method() != Some(&Method::Cancel) {
        return None;
    }
    server_key(cancel).map(|k| TransactionKey {
        method: Method::Invite,
        ..k
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    fn req(method: &str, branch: &str) -> Message {
        let m = format!(
            "{method} sip:999@core SIP/2.0\r\nVia: SIP/2.0/UDP GW:5060;branch={branch}\r\n\
From: <sip:gw>;tag=1\r\nTo: <sip:999@core>\r\nCall-ID: k1\r\nCSeq: 1 {method}\r\n\r\n"
        );
        Message::parse(m.as_bytes(), Framing::Datagram, Limits::default()).unwrap()
    }

    #[test]
    fn ack_matches_invite_cancel_does_not() {
        let invite = server_key(&req("INVITE", "z9hG4bKx")).unwrap();
        assert_eq!(server_key(&req("ACK", "z9hG4bKx")), Some(invite.clone()));
        let cancel = server_key(&req("CANCEL", "z9hG4bKx")).unwrap();
        assert_ne!(cancel, invite);
        assert_eq!(
            cancelled_invite_key(&req("CANCEL", "z9hG4bKx")),
            Some(invite.clone())
        );
        assert_ne!(server_key(&req("INVITE", "z9hG4bKy")), Some(invite));
        assert_eq!(server_key(&req("INVITE", "1234")), None);
    }

    #[test]
    fn response_matches_by_branch_and_cseq_method() {
        let invite = req("INVITE", "z9hG4bKx");
        let r = crate::sip::response_to(&invite, 200, None, Some("t"));
        let k = client_key(&r).unwrap();
        assert_eq!(
            (k.branch.as_str(), &k.method),
            ("z9hG4bKx", &Method::Invite)
        );
        let c = crate::sip::response_to(&req("CANCEL", "z9hG4bKx"), 200, None, None);
        assert_ne!(client_key(&c), Some(k));
    }
}
