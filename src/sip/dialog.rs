//! INVITE dialogs (RFC 3261 §12): the state two user agents share after an
//! INVITE, and the requests sent inside it.
//!
//! # Contract
//!
//! - A UAC creates a [`Dialog`] with [`Dialog::uac`] from its INVITE and a
//!   response carrying a To tag (§12.1.2): a 1xx makes an early dialog, a
//!   2xx a confirmed one; [`Dialog::confirm`] moves an early dialog to
//!   confirmed with the 2xx (route set recomputed, §13.2.2.4).
//! - A UAS creates one with [`Dialog::uas`] from the INVITE and its own To
//!   tag (§12.1.1); it is early until the UAS sends a 2xx.
//! - [`Dialog::request`] builds the next request inside the dialog
//!   (§12.2.1.1: Request-URI and Route from the route set and remote target,
//!   loose and strict routing; From/To/Call-ID; CSeq one up), [`Dialog::ack`]
//!   the ACK for a 2xx (§13.2.2.4: the INVITE's CSeq number). The transaction
//!   layer puts the Via on.
//! - [`Dialog::check_remote_cseq`] applies §12.2.2 to a request received in
//!   the dialog (lower CSeq → 500), [`Dialog::refresh_target`] §12.2.1.2 /
//!   §12.2.2 target refresh (Contact of a re-INVITE, an UPDATE or their 2xx).
//! - [`DialogId::of_request`] / [`DialogId::of_response`] give the id a
//!   received message belongs to, seen from this side.
//!
//! In-dialog requests are sent to the dialog's `peer` (the core peer the
//! INVITE went to or came from): core peers are configured addresses, so the
//! Route / remote target are written into the request per §12.2.1.1 but not
//! resolved (§8.1.2's RFC 3263 lookup is not done).

use super::endpoint::Remote;
use super::error::SipError;
use super::header::{CSeq, Method, NameAddr};
use super::message::{Message, StartLine};
use super::uri::Uri;

/// §12: Call-ID, local tag and remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a received request belongs to (§12.2.2: local tag = To
    /// tag, remote tag = From tag). `None` without a To tag (out of dialog).
    pub fn of_request(request: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.call_id().ok()?.to_owned(),
            local_tag: request.to().ok()?.tag()?.to_owned(),
            remote_tag: request.from().ok()?.tag()?.to_owned(),
        })
    }

    /// The dialog a received response belongs to (local tag = From tag,
    /// remote tag = To tag).
    pub fn of_response(response: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: response.call_id().ok()?.to_owned(),
            local_tag: response.from().ok()?.tag()?.to_owned(),
            remote_tag: response.to().ok()?.tag()?.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Which side of the INVITE we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// One dialog (§12). Fields are the §12.1 dialog state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    pub state: DialogState,
    /// Our From (UAC) or To (UAS), with our tag.
    pub local: NameAddr,
    /// Theirs, with their tag.
    pub remote: NameAddr,
    /// The last CSeq number we used.
    pub local_seq: u32,
    /// The last CSeq number of theirs; `None` until they send a request (§12.1.1).
    pub remote_seq: Option<u32>,
    pub remote_target: Uri,
    /// Record-Route values in the order our requests take them (§12.1.1
    /// as received for a UAS, §12.1.2 reversed for a UAC).
    pub route_set: Vec<NameAddr>,
    /// Our Contact URI (sent in target-refresh requests).
    pub local_contact: Uri,
    /// §12.1: the request was sent over TLS with a sips Request-URI.
    pub secure: bool,
    /// Where our in-dialog requests go.
    pub peer: Remote,
}

fn record_routes(msg: &Message) -> Result<Vec<NameAddr>, SipError> {
    msg.list("Record-Route")?
        .into_iter()
        .map(NameAddr::parse)
        .collect()
}

/// The first Contact's URI (§12.1.1, §12.1.2: the remote target).
fn contact_uri(msg: &Message) -> Result<Uri, SipError> {
    msg.contacts()?
        .into_iter()
        .next()
        .map(|c| c.uri)
        .ok_or(SipError::Syntax("Missing Contact"))
}

fn is_sips(uri: Option<&Uri>) -> bool {
    uri.and_then(Uri::as_sip).is_some_and(|u| u.secure)
}

impl Dialog {
    /// §12.1.2: the UAC's dialog from its INVITE and a 1xx/2xx with a To tag.
    pub fn uac(
        invite: &Message,
        response: &Message,
        local_contact: Uri,
        peer: Remote,
    ) -> Result<Dialog, SipError> {
        let id = DialogId::of_response(response).ok_or(SipError::Syntax("no dialog tags"))?;
        let mut route_set = record_routes(response)?;
        route_set.reverse();
        let state = match response.status() {
            Some(200..=299) => DialogState::Confirmed,
            _ => DialogState::Early,
        };
        Ok(Dialog {
            id,
            role: Role::Uac,
            state,
            local: invite.from()?,
            remote: response.to()?,
            local_seq: invite.cseq()?.seq,
            remote_seq: None,
            // §12.1.2: a 1xx without Contact leaves the target as the Request-URI.
            remote_target: contact_uri(response).or_else(|_| {
                invite
                    .start_uri()
                    .cloned()
                    .ok_or(SipError::Syntax("no URI"))
            })?,
            route_set,
            local_contact,
            secure: is_sips(invite.start_uri())
                && peer.transport == super::endpoint::Transport::Tls,
            peer,
        })
    }

    /// §12.1.1: the UAS's dialog from the INVITE and our To tag.
    pub fn uas(
        invite: &Message,
        local_tag: &str,
        local_contact: Uri,
        peer: Remote,
    ) -> Result<Dialog, SipError> {
        let remote = invite.from()?;
        let mut local = invite.to()?;
        local.params.set("tag", Some(local_tag));
        let id = DialogId {
            call_id: invite.call_id()?.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: remote
                .tag()
                .ok_or(SipError::Syntax("From without tag"))?
                .to_owned(),
        };
        Ok(Dialog {
            id,
            role: Role::Uas,
            state: DialogState::Early,
            local,
            remote,
            // §12.1.1: the local sequence number starts empty; ours is
            // chosen when we first send (§8.1.1.5), 1 here.
            local_seq: 0,
            remote_seq: Some(invite.cseq()?.seq),
            remote_target: contact_uri(invite)?,
            route_set: record_routes(invite)?,
            local_contact,
            secure: is_sips(invite.start_uri())
                && peer.transport == super::endpoint::Transport::Tls,
            peer,
        })
    }

    /// §13.2.2.4 (UAC): the 2xx confirms an early dialog; its Record-Route
    /// and Contact replace the route set and remote target.
    pub fn confirm(&mut self, response: &Message) -> Result<(), SipError> {
        if self.role == Role::Uac {
            let mut rr = record_routes(response)?;
            rr.reverse();
            self.route_set = rr;
            self.remote_target = contact_uri(response)?;
            self.remote = response.to()?;
        }
        self.state = DialogState::Confirmed;
        Ok(())
    }

    /// §12.2.1.2 / §12.2.2: a target refresh request (re-INVITE, UPDATE)
    /// or its 2xx replaces the remote target with its Contact.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Ok(uri) = contact_uri(msg) {
            self.remote_target = uri;
        }
    }

    /// §12.2.2: a request in the dialog with a CSeq lower than the last one
    /// is out of order (answer 500); otherwise remember its CSeq.
    /// ACK and CANCEL carry the CSeq of the request they belong to.
    pub fn check_remote_cseq(&mut self, request: &Message) -> Result<(), u16> {
        let cseq = request.cseq().map_err(|_| 400u16)?;
        if matches!(cseq.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq {
            if cseq.seq < last {
                return Err(500);
            }
            if cseq.seq == last && cseq.method != Method::Invite {
                // The same number again for a new request is out of order too.
                return Err(500);
            }
        }
        self.remote_seq = Some(cseq.seq);
        Ok(())
    }

    /// §12.2.1.1: Request-URI and Route headers. Loose routing: the remote
    /// target and the route set; strict routing (first route without `lr`):
    /// the first route as Request-URI, then the rest and the remote target.
    fn uri_and_routes(&self) -> (Uri, Vec<String>) {
        let Some(first) = self.route_set.first() else {
            return (self.remote_target.clone(), Vec::new());
        };
        let lr = first
            .uri
            .as_sip()
            .is_some_and(|u| u.params.get("lr").is_some());
        if lr {
            let routes = self.route_set.iter().map(NameAddr::to_string).collect();
            return (self.remote_target.clone(), routes);
        }
        let mut uri = first.uri.clone();
        if let Uri::Sip(u) = &mut uri {
            // §19.1.1 Table 1: method and header components are not allowed
            // in a Request-URI.
            u.headers = None;
            u.params
                .0
                .retain(|p| !p.name.eq_ignore_ascii_case("method"));
        }
        let mut routes: Vec<String> = self.route_set[1..]
            .iter()
            .map(NameAddr::to_string)
            .collect();
        routes.push(format!("<{}>", self.remote_target));
        (uri, routes)
    }

    fn build(&self, method: Method, seq: u32) -> Message {
        let (uri, routes) = self.uri_and_routes();
        let mut m = Message {
            start: StartLine::Request {
                method: method.clone(),
                uri,
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for r in routes {
            m.push("Route", r);
        }
        m.push("Max-Forwards", "70");
        m.push("From", self.local.to_string());
        m.push("To", self.remote.to_string());
        m.push("Call-ID", self.id.call_id.clone());
        m.push(
            "CSeq",
            CSeq {
                seq,
                method: method.clone(),
            }
            .to_string(),
        );
        if matches!(method, Method::Invite | Method::Update | Method::Ack) {
            // §12.2.1.1: target refresh requests carry our Contact
            // (§13.2.2.4: the ACK may too).
            m.push("Contact", format!("<{}>", self.local_contact));
        }
        m
    }

    /// §12.2.1.1: the next request in the dialog (not ACK or CANCEL): the
    /// local CSeq goes up by one. Via is the transaction layer's.
    pub fn request(&mut self, method: Method) -> Message {
        // §8.1.1.5: the first number we pick as UAS; 1 is allowed.
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        self.build(method, self.local_seq)
    }

    /// §13.2.2.4: the ACK for a 2xx to the INVITE with CSeq `invite_seq`.
    pub fn ack(&self, invite_seq: u32) -> Message {
        self.build(Method::Ack, invite_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::Transport;
    use crate::sip::message::{Framing, Limits};

    fn parse(s: &str) -> Message {
        Message::parse(s.as_bytes(), Framing::Datagram, Limits::default()).unwrap()
    }

    fn peer() -> Remote {
        Remote {
            address: "192.0.2.9:5060".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    const INVITE: &str = "INVITE sip:999@core SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKi\r\n\
Max-Forwards: 70\r\nFrom: \"GW\" <sip:0207@gw>;tag=L1\r\nTo: <sip:999@core>\r\nCall-ID: d1@gw\r\n\
CSeq: 10 INVITE\r\nContact: <sip:gw@192.0.2.1:5060>\r\n\
Record-Route: <sip:p1.core;lr>, <sip:p2.core;lr>\r\nContent-Length: 0\r\n\r\n";

    fn response(status: u16, rr: &str) -> Message {
        let mut r = crate::sip::response_to(&parse(INVITE), status, None, Some("R1"));
        r.push("Contact", "<sip:ua@192.0.2.9:5070>");
        if !rr.is_empty() {
            r.push("Record-Route", rr);
        }
        r
    }

    fn contact() -> Uri {
        Uri::parse("sip:gw@192.0.2.1:5060").unwrap()
    }

    #[test]
    fn uac_route_set_is_reversed_and_requests_loose_route() {
        let mut d = Dialog::uac(
            &parse(INVITE),
            &response(200, "<sip:p1.core;lr>, <sip:p2.core;lr>"),
            contact(),
            peer(),
        )
        .unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.id.local_tag, "L1");
        assert_eq!(d.id.remote_tag, "R1");
        let bye = d.request(Method::Bye);
        assert_eq!(
            bye.start_uri().unwrap().to_string(),
            "sip:ua@192.0.2.9:5070"
        );
        let routes: Vec<_> = bye.list("Route").unwrap();
        assert_eq!(routes, ["<sip:p2.core;lr>", "<sip:p1.core;lr>"]);
        assert_eq!(bye.cseq().unwrap().seq, 11);
        assert_eq!(bye.to().unwrap().tag(), Some("R1"));
        assert_eq!(bye.from().unwrap().tag(), Some("L1"));
        let ack = d.ack(10);
        assert_eq!(
            ack.cseq().unwrap(),
            CSeq {
                seq: 10,
                method: Method::Ack
            }
        );
        assert_eq!(
            DialogId::of_response(&response(180, "")),
            Some(d.id.clone())
        );
    }

    #[test]
    fn strict_route_puts_first_route_in_request_uri() {
        let mut d = Dialog::uac(
            &parse(INVITE),
            &response(200, "<sip:strict.core>"),
            contact(),
            peer(),
        )
        .unwrap();
        let bye = d.request(Method::Bye);
        assert_eq!(bye.start_uri().unwrap().to_string(), "sip:strict.core");
        assert_eq!(bye.list("Route").unwrap(), ["<sip:ua@192.0.2.9:5070>"]);
    }

    #[test]
    fn early_dialog_confirmed_by_2xx_recomputes_route_and_target() {
        let mut early = response(180, "<sip:old;lr>");
        early.headers.retain(|h| !h.is("Contact"));
        let mut d = Dialog::uac(&parse(INVITE), &early, contact(), peer()).unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(d.remote_target.to_string(), "sip:999@core");
        d.confirm(&response(200, "<sip:new;lr>")).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set[0].uri.to_string(), "sip:new;lr");
        assert_eq!(d.remote_target.to_string(), "sip:ua@192.0.2.9:5070");
    }

    #[test]
    fn uas_dialog_and_remote_cseq_order() {
        let inv = parse(INVITE);
        let mut d = Dialog::uas(&inv, "T9", contact(), peer()).unwrap();
        assert_eq!(d.id.remote_tag, "L1");
        assert_eq!(d.route_set.len(), 2);
        assert_eq!(d.remote_target.to_string(), "sip:gw@192.0.2.1:5060");
        let bye = d.request(Method::Bye);
        assert_eq!(bye.cseq().unwrap().seq, 1);
        assert_eq!(bye.to().unwrap().tag(), Some("L1"));
        assert_eq!(bye.from().unwrap().tag(), Some("T9"));
        // UAS keeps Record-Route order.
        assert_eq!(bye.list("Route").unwrap()[0], "<sip:p1.core;lr>");
        let mk = |seq: u32, m: &str| {
            parse(
                &INVITE
                    .replace("CSeq: 10 INVITE", &format!("CSeq: {seq} {m}"))
                    .replace("INVITE sip", &format!("{m} sip")),
            )
        };
        assert_eq!(d.check_remote_cseq(&mk(11, "BYE")), Ok(()));
        assert_eq!(d.check_remote_cseq(&mk(9, "INFO")), Err(500));
        assert_eq!(d.check_remote_cseq(&mk(11, "ACK")), Ok(()));
        assert_eq!(d.remote_seq, Some(11));
    }
}
