//! Caller and called identities between Q.931 party numbers and SIP
//! headers: From, P-Asserted-Identity and Privacy (RFC 3323, RFC 3325, with
//! the mapping of RFC 3398 §7.2.1 / §8.2.1 for presentation and screening),
//! and the called number in the Request-URI.
//!
//! Q.931 octet 3a (§4.5.10): presentation 0 allowed, 1 restricted, 2 not
//! available due to interworking; screening 0 user-provided not screened,
//! 1 user-provided verified and passed, 2 user-provided verified and failed,
//! 3 network provided. Without octet 3a, "presentation allowed, user-provided
//! not screened" applies.

use super::numbers::{IsdnNumber, NumberFormat, NumberingPlan, TypeOfNumber};
use crate::isdn::q931::PartyNumber;
use crate::sip::header::NameAddr;
use crate::sip::message::{Header, Message};
use crate::sip::text::Params;
use crate::sip::uri::{SipUri, Uri};

/// Presentation indicator values (Q.931 §4.5.10 octet 3a bits 7-6).
pub const PRESENTATION_ALLOWED: u8 = 0;
pub const PRESENTATION_RESTRICTED: u8 = 1;
pub const PRESENTATION_NOT_AVAILABLE: u8 = 2;
/// Screening indicator values (octet 3a bits 2-1).
pub const SCREENING_NOT_SCREENED: u8 = 0;
pub const SCREENING_PASSED: u8 = 1;
pub const SCREENING_FAILED: u8 = 2;
pub const SCREENING_NETWORK: u8 = 3;

/// The anonymous From of RFC 3323 §4.1.1.3.
pub const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

/// How identities are written on the core side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPolicy {
    /// Host of the From / P-Asserted-Identity URIs (the gateway's domain).
    pub host: String,
    /// Assert (P-Asserted-Identity) a calling number the exchange marked
    /// "user-provided, not screened" (or sent without octet 3a). A PSTN
    /// trunk is inside the core's trust domain (RFC 3325 §2.3), so on by
    /// default; "verified and failed" is never asserted.
    pub assert_unscreened: bool,
}

/// A SIP URI `sip:user@host;user=phone` for a telephone-number user part.
pub fn phone_uri(user: &str, host: &str) -> Uri {
    let mut params = Params::default();
    params.set("user", Some("phone"));
    Uri::Sip(SipUri {
        secure: false,
        user: Some(escape_user(user)),
        password: None,
        host: host.to_owned(),
        port: None,
        params,
        headers: None,
    })
}

/// RFC 3261 §25.1: `#` is not allowed unescaped in a user part.
fn escape_user(user: &str) -> String {
    user.replace('#', "%23")
}

fn unescape_user(user: &str) -> String {
    user.replace("%23", "#")
        .replace("%2A", "*")
        .replace("%2a", "*")
}

/// The user part (or tel number) of a URI, unescaped.
pub fn uri_user(uri: &Uri) -> Option<String> {
    match uri {
        Uri::Sip(s) => s.user.as_deref().map(unescape_user),
        Uri::Tel(t) => Some(t.number.clone()),
        Uri::Other { .. } => None,
    }
}

/// Q.931 party number -> the numbers module's view.
pub fn isdn_number(n: &PartyNumber) -> IsdnNumber {
    IsdnNumber {
        ton: TypeOfNumber::from_bits(n.type_of_number),
        npi: if n.numbering_plan == 9 {
            NumberingPlan::Private
        } else if n.numbering_plan == 1 {
            NumberingPlan::Isdn
        } else {
            NumberingPlan::Unknown
        },
        digits: n.digits_str(),
    }
}

/// The numbers module's view -> a Q.931 party number (no octet 3a).
pub fn party_number(n: &IsdnNumber) -> PartyNumber {
    PartyNumber::new(n.ton as u8, n.npi as u8, &n.digits)
}

/// What the INVITE says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipCaller {
    pub from: NameAddr,
    /// P-Asserted-Identity and Privacy, when they apply.
    pub headers: Vec<Header>,
    /// The caller's user part as written (for logs and CDRs), "" if none.
    pub user: String,
}

/// RFC 3398 §7.2.1 / RFC 3325 §9.1, §9.3: the caller's From and
/// P-Asserted-Identity for a calling party number from the exchange.
/// Presentation restricted: From anonymous (RFC 3323 §4.1.1.3), the real
/// identity in P-Asserted-Identity with `Privacy: id`. Not available (or no
/// number): From anonymous and no P-Asserted-Identity.
pub fn caller_to_sip(
    calling: Option<&PartyNumber>,
    format: &NumberFormat,
    policy: &IdentityPolicy,
) -> SipCaller {
    let anonymous = || NameAddr::parse(ANONYMOUS_FROM).expect("constant name-addr parses");
    let Some(n) = calling.filter(|n| !n.digits.is_empty()) else {
        return SipCaller {
            from: anonymous(),
            headers: Vec::new(),
            user: String::new(),
        };
    };
    let (presentation, screening) = n
        .presentation
        .unwrap_or((PRESENTATION_ALLOWED, SCREENING_NOT_SCREENED));
    let user = format.to_sip_user(&isdn_number(n));
    let identity = NameAddr {
        display_name: None,
        uri: phone_uri(&user, &policy.host),
        params: Params::default(),
    };
    let asserted = match screening {
        SCREENING_PASSED | SCREENING_NETWORK => true,
        SCREENING_NOT_SCREENED => policy.assert_unscreened,
        _ => false,
    };
    let mut headers = Vec::new();
    let from = match presentation {
        PRESENTATION_ALLOWED => identity.clone(),
        PRESENTATION_RESTRICTED => {
            if asserted {
                headers.push(Header::new("Privacy", "id"));
            }
            anonymous()
        }
        _ => {
            return SipCaller {
                from: anonymous(),
                headers,
                user,
            };
        }
    };
    if asserted {
        headers.insert(
            0,
            Header::new("P-Asserted-Identity", format!("<{}>", identity.uri)),
        );
    }
    SipCaller {
        from,
        headers,
        user,
    }
}

/// The calling party number for an INVITE from the core (RFC 3398 §8.2.1):
/// the P-Asserted-Identity if there is one (screening "verified and
/// passed"), else the From user (screening "not screened"); presentation
/// restricted when `Privacy` lists `id` or `user`, or the From is
/// anonymous. `None` when there is no dialable number.
pub fn caller_from_sip(request: &Message, format: &NumberFormat) -> Option<PartyNumber> {
    let privacy = request
        .list("Privacy")
        .unwrap_or_default()
        .iter()
        .any(|p| p.eq_ignore_ascii_case("id") || p.eq_ignore_ascii_case("user"));
    let pai = request
        .headers_named("P-Asserted-Identity")
        .filter_map(|h| h.value_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| NameAddr::parse(v.trim()).ok())
        .find_map(|na| uri_user(&na.uri).and_then(|u| format.to_isdn(&u)));
    let from = request.from().ok();
    let from_anonymous = from
        .as_ref()
        .is_some_and(|f| uri_user(&f.uri).is_some_and(|u| u.eq_ignore_ascii_case("anonymous")));
    let (number, screening) = match pai {
        Some(n) => (n, SCREENING_PASSED),
        None => (
            from.as_ref()
                .and_then(|f| uri_user(&f.uri))
                .and_then(|u| format.to_isdn(&u))?,
            SCREENING_NOT_SCREENED,
        ),
    };
    let presentation = if privacy || from_anonymous {
        PRESENTATION_RESTRICTED
    } else {
        PRESENTATION_ALLOWED
    };
    let mut p = party_number(&number);
    p.presentation = Some((presentation, screening));
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    fn policy() -> IdentityPolicy {
        IdentityPolicy {
            host: "gw.example".into(),
            assert_unscreened: true,
        }
    }

    fn calling(pres: Option<(u8, u8)>) -> PartyNumber {
        let mut n = PartyNumber::new(2, 1, "2079460123");
        n.presentation = pres;
        n
    }

    fn header<'a>(c: &'a SipCaller, name: &str) -> Option<&'a str> {
        c.headers
            .iter()
            .find(|h| h.is(name))
            .and_then(|h| h.value_str().ok())
    }

    #[test]
    fn allowed_number_in_from_and_pai() {
        let c = caller_to_sip(
            Some(&calling(Some((0, 3)))),
            &NumberFormat::default(),
            &policy(),
        );
        assert_eq!(
            c.from.uri.to_string(),
            "sip:+442079460123@gw.example;user=phone"
        );
        assert_eq!(
            header(&c, "P-Asserted-Identity"),
            Some("<sip:+442079460123@gw.example;user=phone>")
        );
        assert_eq!(header(&c, "Privacy"), None);
    }

    #[test]
    fn restricted_is_anonymous_with_privacy_id() {
        let c = caller_to_sip(
            Some(&calling(Some((1, 3)))),
            &NumberFormat::default(),
            &policy(),
        );
        assert_eq!(c.from.uri.to_string(), "sip:anonymous@anonymous.invalid");
        assert_eq!(header(&c, "Privacy"), Some("id"));
        assert!(header(&c, "P-Asserted-Identity").is_some());
    }

    #[test]
    fn unavailable_failed_and_unscreened() {
        let f = NumberFormat::default();
        let c = caller_to_sip(Some(&calling(Some((2, 0)))), &f, &policy());
        assert!(c.headers.is_empty());
        assert_eq!(c.from.uri.to_string(), "sip:anonymous@anonymous.invalid");
        let c = caller_to_sip(Some(&calling(Some((0, 2)))), &f, &policy());
        assert!(header(&c, "P-Asserted-Identity").is_none());
        let strict = IdentityPolicy {
            assert_unscreened: false,
            ..policy()
        };
        let c = caller_to_sip(Some(&calling(None)), &f, &strict);
        assert!(header(&c, "P-Asserted-Identity").is_none());
        assert!(c.from.uri.to_string().contains("+442079460123"));
        assert!(caller_to_sip(None, &f, &policy()).headers.is_empty());
    }

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK1\r\n\
             From: <sip:+441632960001@core>;tag=a\r\nTo: <sip:999@gw>\r\nCall-ID: x\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes(), Framing::Datagram, Limits::default()).unwrap()
    }

    #[test]
    fn caller_from_core() {
        let f = NumberFormat::default();
        let n = caller_from_sip(&invite(""), &f).unwrap();
        assert_eq!(n.digits_str(), "1632960001");
        assert_eq!(n.type_of_number, 2);
        assert_eq!(n.presentation, Some((0, 0)));
        let n = caller_from_sip(
            &invite("P-Asserted-Identity: <sip:+33140000000@core>\r\nPrivacy: id\r\n"),
            &f,
        )
        .unwrap();
        assert_eq!(n.digits_str(), "33140000000");
        assert_eq!(n.type_of_number, 1);
        assert_eq!(n.presentation, Some((1, 1)));
    }

    #[test]
    fn hash_is_escaped_in_uris() {
        let u = phone_uri("*31#", "h");
        assert_eq!(u.to_string(), "sip:*31%23@h;user=phone");
        assert_eq!(uri_user(&u).as_deref(), Some("*31#"));
    }
}
