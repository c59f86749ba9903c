//! Responses to requests (RFC 3261 §8.2.6) and the checks a UAS makes
//! before a request reaches its TU (§8.2.1 method, §8.2.2.1 URI scheme,
//! §8.2.2.3 Require).

use super::header::Method;
use super::message::{Message, StartLine};
use super::uri::Uri;

/// Default reason phrases (RFC 3261 §21).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "",
    }
}

/// A response to `request` per §8.2.6.2: Via (all, in order), From, To,
/// Call-ID and CSeq copied; a To tag added when `to_tag` is given and the
/// To has none (never for 100, §8.2.6.1). `reason` `None` = the default phrase.
pub fn response_to(
    request: &Message,
    status: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
) -> Message {
    let mut headers: Vec<super::message::Header> = Vec::new();
    for h in &request.headers {
        // Single-valued headers: the first copy only (a repeated one is
        // what a 400 complains about).
        let single = ["From", "To", "Call-ID", "CSeq"].iter().find(|n| h.is(n));
        if single.is_some_and(|n| headers.iter().any(|o| o.is(n))) {
            continue;
        }
        if h.is("Via") || h.is("From") || h.is("Call-ID") || h.is("CSeq") {
            headers.push(h.clone());
        } else if h.is("To") {
            let mut h = h.clone();
            let has_tag = request.to().is_ok_and(|t| t.tag().is_some());
            if let (Some(tag), false, false) = (to_tag, has_tag, status == 100) {
                h.value.extend_from_slice(format!(";tag={tag}").as_bytes());
            }
            headers.push(h);
        }
    }
    // §8.2.6.1: a 100 copies any Timestamp header.
    if status == 100 {
        headers.extend(request.headers_named("Timestamp").cloned());
    }
    Message {
        start: StartLine::Response {
            status,
            reason: reason.unwrap_or(reason_phrase(status)).to_owned(),
        },
        headers,
        body: Vec::new(),
    }
}

/// What a UAS supports, for the checks of §8.2.1 to §8.2.2.3.
#[derive(Debug, Clone)]
pub struct UasCapabilities {
    pub allow: Vec<Method>,
    /// Option tags we support (`Supported`), e.g. `timer`, `100rel`.
    pub supported: Vec<String>,
}

/// The error response a UAS sends before its TU sees `request`, if any:
/// 501 (unknown method, with Allow), 405 (known but not allowed), 416
/// (scheme other than sip/sips/tel, §8.2.2.1), 420 (Require with an option
/// tag we lack, listed in Unsupported, §8.2.2.3; never for ACK/CANCEL).
pub fn uas_precheck(request: &Message, caps: &UasCapabilities) -> Option<Message> {
    let StartLine::Request { method, uri } = &request.start else {
        return None;
    };
    if !caps.allow.contains(method) && *method != Method::Ack {
        let status = if matches!(method, Method::Extension(_)) {
            501
        } else {
            405
        };
        let mut r = response_to(request, status, None, None);
        r.push("Allow", allow_value(caps));
        return Some(r);
    }
    if matches!(uri, Uri::Other { .. }) {
        return Some(response_to(request, 416, None, None));
    }
    if !matches!(method, Method::Ack | Method::Cancel) {
        let unsupported: Vec<&str> = request
            .list("Require")
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !caps.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let mut r = response_to(request, 420, None, None);
            r.push("Unsupported", unsupported.join(", "));
            return Some(r);
        }
    }
    None
}

/// `Allow:` value for `caps`.
pub fn allow_value(caps: &UasCapabilities) -> String {
    caps.allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    const INVITE: &[u8] = b"INVITE sip:999@core.example SIP/2.0\r\n\
Via: SIP/2.0/UDP gw.example:5060;branch=z9hG4bKa1\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb2\r\n\
Max-Forwards: 70\r\n\
From: \"Gateway\" <sip:0207@gw.example>;tag=f1\r\n\
To: <sip:999@core.example>\r\n\
Call-ID: c1@gw.example\r\n\
CSeq: 1 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn response_copies_8_2_6_2_headers_and_adds_to_tag() {
        let req = Message::parse(INVITE, Framing::Datagram, Limits::default()).unwrap();
        let r = response_to(&req, 180, None, Some("t9"));
        let back = Message::parse(&r.to_bytes(), Framing::Stream, Limits::default()).unwrap();
        assert_eq!(back.status(), Some(180));
        assert_eq!(back.vias().unwrap().len(), 2);
        assert_eq!(back.to().unwrap().tag(), Some("t9"));
        assert_eq!(back.from().unwrap().tag(), Some("f1"));
        assert_eq!(back.call_id(), Ok("c1@gw.example"));
        assert_eq!(back.cseq().unwrap(), req.cseq().unwrap());
        assert!(back.headers_named("Timestamp").next().is_none());
        // §8.2.6.1: 100 carries no tag but copies Timestamp.
        let t = response_to(&req, 100, None, Some("t9"));
        assert_eq!(t.to().unwrap().tag(), None);
        assert_eq!(t.single("Timestamp"), Ok(Some("54")));
        assert!(t.to_bytes().starts_with(b"SIP/2.0 100 Trying\r\n"));
    }

    #[test]
    fn precheck_passes_known_request() {
        let req = Message::parse(INVITE, Framing::Datagram, Limits::default()).unwrap();
        let caps = UasCapabilities {
            allow: vec![Method::Invite, Method::Options],
            supported: vec![],
        };
        assert_eq!(uas_precheck(&req, &caps), None);
        let caps = UasCapabilities {
            allow: vec![Method::Options],
            supported: vec![],
        };
        let r = uas_precheck(&req, &caps).unwrap();
        assert_eq!(
            (r.status(), r.single("Allow")),
            (Some(405), Ok(Some("OPTIONS")))
        );
    }
}
