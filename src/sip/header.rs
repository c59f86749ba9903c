//! Typed views of the headers a transaction and dialog layer needs
//! (RFC 3261 §20): name-addr (From, To, Contact, Route), Via, CSeq, Method.

use super::error::SipError;
use super::text::{Params, is_token, parse_quoted, trim_lws};
use super::uri::{Uri, split_hostport};

/// A SIP method (RFC 3261 §7.1, §27.4). Unknown methods keep their name so
/// that a TU can answer 501 (§8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Extension(String),
}

const METHODS: &[(Method, &str)] = &[
    (Method::Invite, "INVITE"),
    (Method::Ack, "ACK"),
    (Method::Bye, "BYE"),
    (Method::Cancel, "CANCEL"),
    (Method::Options, "OPTIONS"),
    (Method::Register, "REGISTER"),
    (Method::Prack, "PRACK"),
    (Method::Update, "UPDATE"),
    (Method::Info, "INFO"),
    (Method::Subscribe, "SUBSCRIBE"),
    (Method::Notify, "NOTIFY"),
    (Method::Refer, "REFER"),
    (Method::Message, "MESSAGE"),
];

impl Method {
    /// Parse a method token; method names are case-sensitive (§7.1).
    pub fn parse(s: &str) -> Result<Method, SipError> {
        if !is_token(s) {
            return Err(SipError::Syntax("bad method"));
        }
        Ok(METHODS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| Method::Extension(s.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(s) => s,
            m => METHODS
                .iter()
                .find(|(k, _)| k == m)
                .map(|(_, n)| *n)
                .unwrap_or(""),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `name-addr` or `addr-spec` with header parameters (§20.10, §20.20, §20.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped (may be UTF-8).
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, SipError> {
        let s = trim_lws(s);
        let (display_name, after_name) = if s.starts_with('"') {
            let (d, rest) = parse_quoted(s)?;
            (Some(d), trim_lws(rest))
        } else if let Some(lt) = s.find('<') {
            // display-name as *(token LWS): tokens only, joined by single spaces.
            let raw = trim_lws(&s[..lt]);
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            if words.iter().any(|w| !is_token(w)) {
                return Err(SipError::Syntax("bad display name"));
            }
            let d = (!words.is_empty()).then(|| words.join(" "));
            (d, &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = after_name.strip_prefix('<') {
            let gt = inner.find('>').ok_or(SipError::Syntax("unterminated <"))?;
            let uri = Uri::parse(&inner[..gt])?;
            Ok(NameAddr {
                display_name,
                uri,
                params: Params::parse(&inner[gt + 1..])?,
            })
        } else if display_name.is_some() {
            Err(SipError::Syntax("display name without <URI>"))
        } else {
            // §20.10: in addr-spec form, parameters after the URI belong to the
            // header, so the URI ends at the first ';' (and cannot carry '?' or ',').
            let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
            let uri_s = &s[..end];
            if uri_s.contains(['?', ',']) {
                return Err(SipError::Syntax("addr-spec with ? or , needs <>"));
            }
            Ok(NameAddr {
                display_name: None,
                uri: Uri::parse(uri_s)?,
                params: Params::parse(&s[end..])?,
            })
        }
    }

    /// The `tag` parameter (§19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "{} ", super::text::quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// RFC 3261 §8.1.1.7: branches of RFC 3261 transactions start with this.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One `via-parm` (§20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0/UDP` split: protocol name, version, transport (upper-cased as received).
    pub protocol: String,
    pub version: String,
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    /// Parse one via-parm; LWS is allowed around the slashes (§25.1 SLASH).
    pub fn parse(s: &str) -> Result<Via, SipError> {
        let s = trim_lws(s);
        let mut parts = s.splitn(3, '/');
        let protocol = trim_lws(parts.next().unwrap_or(""));
        let version = trim_lws(parts.next().ok_or(SipError::Syntax("bad Via"))?);
        let rest = trim_lws(parts.next().ok_or(SipError::Syntax("bad Via"))?);
        let t_end = rest
            .find([' ', '\t'])
            .ok_or(SipError::Syntax("Via without sent-by"))?;
        let transport = &rest[..t_end];
        let rest = trim_lws(&rest[t_end..]);
        if !is_token(protocol) || !is_token(version) || !is_token(transport) {
            return Err(SipError::Syntax("bad Via sent-protocol"));
        }
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // sent-by = host [ COLON port ]; COLON may carry LWS.
        let sent_by: String = sent_by
            .chars()
            .filter(|c| *c != ' ' && *c != '\t')
            .collect();
        let (host, port) = split_hostport(&sent_by)?;
        Ok(Via {
            protocol: protocol.to_owned(),
            version: version.to_owned(),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params: Params::parse(params)?,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// `sent-by` as `host[:port]`, for transaction matching (§17.2.3).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} {}{}",
            self.protocol,
            self.version,
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}

/// `CSeq: 4711 INVITE` (§20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, SipError> {
        let s = trim_lws(s);
        let i = s.find([' ', '\t']).ok_or(SipError::Syntax("bad CSeq"))?;
        let num = &s[..i];
        // §8.1.1.5: the sequence number is a 32-bit unsigned integer (< 2**31 when chosen).
        if num.is_empty() || num.len() > 10 || !num.bytes().all(|c| c.is_ascii_digit()) {
            return Err(SipError::Syntax("bad CSeq number"));
        }
        let seq = num
            .parse::<u32>()
            .map_err(|_| SipError::Syntax("CSeq number too large"))?;
        Ok(CSeq {
            seq,
            method: Method::parse(trim_lws(&s[i..]))?,
        })
    }
}

impl std::fmt::Display for CSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_everywhere() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.transport.as_str(), v.host.as_str()),
            ("UDP", "192.0.2.2")
        );
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5060 ; branch = z9hG4bKx").unwrap();
        assert_eq!(v.sent_by(), "[2001:db8::9]:5060");
        assert!(Via::parse("SIP/2.0/UDP").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Quoted string \"\""));
        assert_eq!(n.params.value("q"), Some("0.33"));
        let n = NameAddr::parse("sip:u@h;tag=abc").unwrap();
        assert_eq!(n.tag(), Some("abc"));
        assert!(n.uri.as_sip().unwrap().params.0.is_empty());
        let n = NameAddr::parse("Bob Smith <tel:+441234>").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Bob Smith"));
        assert!(NameAddr::parse("<sip:u@h").is_err());
    }

    #[test]
    fn cseq_and_methods() {
        let c = CSeq::parse("0009\r\n  INVITE".replace("\r\n", " ").as_str()).unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(
            Method::parse("NEWMETHOD").unwrap(),
            Method::Extension("NEWMETHOD".into())
        );
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("99999999999 INVITE").is_err());
    }
}
