//! Clearing causes across the gateway: Q.850 cause values to SIP final
//! responses (RFC 3398 §8.2.6.1) and SIP responses to Q.850 causes (RFC 3398
//! §7.2.4.1), each overridable per trunk, plus the RFC 3326 `Reason` header
//! that carries the Q.850 cause both ways.
//!
//! Every lookup returns the [`Rule`] that fired so the call log can say why a
//! 999 call was cleared with the cause it was.

use std::collections::BTreeMap;
use std::fmt;

/// Which rule produced a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A `Reason: Q.850;cause=N` received with the response: used as is.
    ReasonHeader,
    /// The site config's override for this trunk.
    Override,
    /// A row of the RFC 3398 table.
    Rfc3398,
    /// RFC 3398 has no row; tdmgw's default for the cause class or response class.
    ClassDefault,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::ReasonHeader => "Reason header",
            Rule::Override => "site override",
            Rule::Rfc3398 => "RFC 3398 table",
            Rule::ClassDefault => "class default",
        })
    }
}

/// RFC 3398 §8.2.6.1: Q.850 cause -> SIP status. Cause 16 (normal call
/// clearing) normally becomes a BYE/CANCEL; when a final response is needed
/// it is 480, the response for "normal, unspecified".
pub const Q850_TO_SIP: &[(u8, u16)] = &[
    (1, 404),
    (2, 404),
    (3, 404),
    (16, 480),
    (17, 486),
    (18, 408),
    (19, 480),
    (20, 480),
    (21, 403),
    (22, 410),
    (23, 410),
    (26, 404),
    (27, 502),
    (28, 484),
    (29, 501),
    (31, 480),
    (34, 503),
    (38, 503),
    (41, 503),
    (42, 503),
    (47, 503),
    (55, 403),
    (57, 403),
    (58, 503),
    (65, 488),
    (70, 488),
    (79, 501),
    (87, 403),
    (88, 503),
    (102, 504),
    (111, 500),
    (127, 500),
];

/// RFC 3398 §7.2.4.1: SIP status -> Q.850 cause. 487 has no mapping (it
/// answers our own CANCEL); 488 and 606 are mapped by the Warning code, see
/// [`CauseMap::sip_to_q850`].
pub const SIP_TO_Q850: &[(u16, u8)] = &[
    (400, 41),
    (401, 21),
    (402, 21),
    (403, 21),
    (404, 1),
    (405, 63),
    (406, 79),
    (407, 21),
    (408, 102),
    (410, 22),
    (413, 127),
    (414, 127),
    (415, 79),
    (416, 127),
    (420, 127),
    (421, 127),
    (423, 127),
    (480, 18),
    (481, 41),
    (482, 25),
    (483, 25),
    (484, 28),
    (485, 1),
    (486, 17),
    (500, 41),
    (501, 79),
    (502, 38),
    (503, 41),
    (504, 102),
    (505, 127),
    (513, 127),
    (600, 17),
    (603, 21),
    (604, 1),
];

/// Q.850 cause location (octet 3, bits 4-1): 0 = user.
pub const LOCATION_USER: u8 = 0;

/// The two tables with a trunk's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CauseMap {
    pub q850_to_sip: BTreeMap<u8, u16>,
    pub sip_to_q850: BTreeMap<u16, u8>,
}

impl CauseMap {
    /// The SIP final response for clearing an incoming (core -> exchange or
    /// exchange-side failure) INVITE with Q.850 `cause` at `location`.
    pub fn q850_to_sip(&self, cause: u8, location: u8) -> (u16, Rule) {
        if let Some(&s) = self.q850_to_sip.get(&cause) {
            return (s, Rule::Override);
        }
        // RFC 3398 §8.2.6.1 note (+): a rejection by the user itself may be
        // given as the 6xx rather than the 4xx.
        if cause == 21 && location == LOCATION_USER {
            return (603, Rule::Rfc3398);
        }
        if let Some(&(_, s)) = Q850_TO_SIP.iter().find(|(c, _)| *c == cause) {
            return (s, Rule::Rfc3398);
        }
        // Not in the table: by the cause's class (Q.850 Table 1).
        let s = match cause {
            0..=31 => 480,  // normal event
            32..=47 => 503, // resource unavailable
            48..=63 => 503, // service or option not available
            64..=79 => 501, // service or option not implemented
            _ => 500,       // invalid message, protocol error, interworking
        };
        (s, Rule::ClassDefault)
    }

    /// The Q.850 cause for a SIP final response to our INVITE. A `Reason:
    /// Q.850;cause=N` that came with it wins; `warning` is the first Warning
    /// code (RFC 3261 §20.43), used for 488 and 606. `None` for 487, which
    /// answers our own CANCEL and clears nothing on the ISDN side by itself.
    pub fn sip_to_q850(
        &self,
        status: u16,
        reason: Option<u8>,
        warning: Option<u16>,
    ) -> Option<(u8, Rule)> {
        if let Some(c) = reason.filter(|c| (1..=127).contains(c)) {
            return Some((c, Rule::ReasonHeader));
        }
        if let Some(&c) = self.sip_to_q850.get(&status) {
            return Some((c, Rule::Override));
        }
        if status == 487 {
            return None;
        }
        if status == 488 || status == 606 {
            // RFC 3398 §7.2.4.1: by the Warning code. 304/305 (media type or
            // format not available) mean a bearer we cannot offer.
            let c = match warning {
                Some(304..=306) => 65,
                Some(307 | 308) => 79,
                _ => 127,
            };
            return Some((c, Rule::Rfc3398));
        }
        if let Some(&(_, c)) = SIP_TO_Q850.iter().find(|(s, _)| *s == status) {
            return Some((c, Rule::Rfc3398));
        }
        let c = match status {
            500..=599 => 41,
            _ => 127,
        };
        Some((c, Rule::ClassDefault))
    }
}

/// A parsed `Reason` header value (RFC 3326 §2): `Q.850;cause=16;text="..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub protocol: String,
    pub cause: u16,
    pub text: Option<String>,
}

impl Reason {
    /// Parses one reason-value; `None` if it is not of the form the RFC gives.
    pub fn parse(value: &str) -> Option<Reason> {
        let mut parts = split_params(value);
        let protocol = parts.next()?.trim().to_string();
        if protocol.is_empty()
            || !protocol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        {
            return None;
        }
        let mut cause = None;
        let mut text = None;
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .map_or((p, ""), |(k, v)| (k.trim(), v.trim()));
            if k.eq_ignore_ascii_case("cause") {
                cause = v.parse::<u16>().ok();
            } else if k.eq_ignore_ascii_case("text") {
                text = Some(unquote(v));
            }
        }
        Some(Reason {
            protocol,
            cause: cause?,
            text,
        })
    }

    /// The Q.850 cause if this is a Q.850 reason with a valid cause.
    pub fn q850(&self) -> Option<u8> {
        (self.protocol.eq_ignore_ascii_case("Q.850") && (1..=127).contains(&self.cause))
            .then_some(self.cause as u8)
    }

    /// `Q.850;cause=16;text="Normal call clearing"`.
    pub fn q850_value(cause: u8, text: &str) -> String {
        let clean: String = text
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        format!("Q.850;cause={cause};text=\"{clean}\"")
    }
}

/// The first Q.850 cause among several Reason header values (comma-separated
/// or repeated headers).
pub fn q850_from_reasons<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<u8> {
    values
        .into_iter()
        .flat_map(split_top_level_commas)
        .filter_map(|v| Reason::parse(&v))
        .find_map(|r| r.q850())
}

/// Splits at `;` outside quoted strings.
fn split_params(s: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
}

fn split_top_level_commas(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                cur.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::new();
    let mut esc = false;
    for c in inner.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_q850_table() {
        let m = CauseMap::default();
        for &(cause, status) in Q850_TO_SIP {
            // Location 2 (public network serving the local user), as an exchange sends.
            assert_eq!(
                m.q850_to_sip(cause, 2),
                (status, Rule::Rfc3398),
                "cause {cause}"
            );
        }
        assert_eq!(m.q850_to_sip(21, LOCATION_USER), (603, Rule::Rfc3398));
        assert_eq!(m.q850_to_sip(44, 2), (503, Rule::ClassDefault));
        assert_eq!(m.q850_to_sip(100, 2), (500, Rule::ClassDefault));
    }

    #[test]
    fn every_row_of_the_sip_table() {
        let m = CauseMap::default();
        for &(status, cause) in SIP_TO_Q850 {
            assert_eq!(
                m.sip_to_q850(status, None, None),
                Some((cause, Rule::Rfc3398)),
                "{status}"
            );
        }
        assert_eq!(m.sip_to_q850(487, None, None), None);
        assert_eq!(
            m.sip_to_q850(488, None, Some(305)),
            Some((65, Rule::Rfc3398))
        );
        assert_eq!(m.sip_to_q850(606, None, None), Some((127, Rule::Rfc3398)));
        assert_eq!(
            m.sip_to_q850(499, None, None),
            Some((127, Rule::ClassDefault))
        );
        assert_eq!(
            m.sip_to_q850(599, None, None),
            Some((41, Rule::ClassDefault))
        );
    }

    #[test]
    fn reason_header_wins_then_overrides() {
        let mut m = CauseMap::default();
        m.sip_to_q850.insert(503, 34);
        m.q850_to_sip.insert(34, 486);
        assert_eq!(
            m.sip_to_q850(503, Some(42), None),
            Some((42, Rule::ReasonHeader))
        );
        assert_eq!(m.sip_to_q850(503, None, None), Some((34, Rule::Override)));
        assert_eq!(m.q850_to_sip(34, 2), (486, Rule::Override));
    }

    #[test]
    fn reason_parse_and_format() {
        let r = Reason::parse("Q.850 ;cause=16 ;text=\"Terminated; \\\"ok\\\"\"").unwrap();
        assert_eq!(r.protocol, "Q.850");
        assert_eq!(r.q850(), Some(16));
        assert_eq!(r.text.as_deref(), Some("Terminated; \"ok\""));
        assert_eq!(
            Reason::parse("SIP;cause=200;text=\"Call completed elsewhere\"")
                .unwrap()
                .q850(),
            None
        );
        assert_eq!(Reason::parse("Q.850;text=\"x\""), None);
        assert_eq!(Reason::parse("Q.850;cause=999").unwrap().q850(), None);
        assert_eq!(
            q850_from_reasons(["SIP;cause=200;text=\"a,b\", Q.850;cause=17"]),
            Some(17)
        );
        let v = Reason::q850_value(16, "Normal \"call\" clearing");
        assert_eq!(v, "Q.850;cause=16;text=\"Normal call clearing\"");
        assert_eq!(Reason::parse(&v).unwrap().q850(), Some(16));
    }
}
