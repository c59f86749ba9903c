//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966). Any other scheme
//! is kept opaque, so that a TU can answer 416 (RFC 3261 §8.2.2.1).

use super::error::SipError;
use super::text::Params;

/// A Request-URI or the URI of a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// `scheme:rest`, any scheme we do not interpret.
    Other {
        scheme: String,
        rest: String,
    },
}

/// `sip:` or `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The user part, still %-escaped as received.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host name, IPv4 address or IPv6 reference with its brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?h=v&...` part without the `?`, kept as received.
    pub headers: Option<String>,
}

/// `tel:` URI (RFC 3966): the number and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Params,
}

impl Uri {
    /// Parse a URI. `s` must carry no surrounding whitespace.
    pub fn parse(s: &str) -> Result<Uri, SipError> {
        let colon = s.find(':').ok_or(SipError::Syntax("URI without scheme"))?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        // RFC 3986 §3.1 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let mut sc = scheme.bytes();
        if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !sc.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return Err(SipError::Syntax("bad URI scheme"));
        }
        if s.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(SipError::Syntax("whitespace in URI"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_after_scheme(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            TelUri::parse_after_scheme(rest).map(Uri::Tel)
        } else {
            Ok(Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            })
        }
    }

    /// The scheme in lower case.
    pub fn scheme(&self) -> String {
        match self {
            Uri::Sip(u) if u.secure => "sips".into(),
            Uri::Sip(_) => "sip".into(),
            Uri::Tel(_) => "tel".into(),
            Uri::Other { scheme, .. } => scheme.to_ascii_lowercase(),
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl SipUri {
    fn parse_after_scheme(s: &str, secure: bool) -> Result<SipUri, SipError> {
        // §25.1: neither user, password, params nor headers may hold an
        // unescaped '@', so the first '@' ends the userinfo.
        let (userinfo, hostpart) = match s.find('@') {
            Some(i) => (Some(&s[..i]), &s[i + 1..]),
            None => (None, s),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some("") => return Err(SipError::Syntax("empty user in URI")),
            Some(ui) => match ui.find(':') {
                Some(i) => (Some(ui[..i].to_owned()), Some(ui[i + 1..].to_owned())),
                None => (Some(ui.to_owned()), None),
            },
        };
        if let Some(u) = &user {
            check_escapes(u)?;
        }
        let (hostport, after) = match hostpart.find([';', '?']) {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = split_hostport(hostport)?;
        let (params, headers) = match after.find('?') {
            Some(i) => (&after[..i], Some(after[i + 1..].to_owned())),
            None => (after, None),
        };
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params: Params::parse(params)?,
            headers,
        })
    }
}

impl TelUri {
    fn parse_after_scheme(s: &str) -> Result<TelUri, SipError> {
        let (number, params) = match s.find(';') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        // RFC 3966 §3: global-number "+" digits or local-number, with visual separators.
        if number.is_empty()
            || !number
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || b"+-.()*#".contains(&c))
        {
            return Err(SipError::Syntax("bad tel number"));
        }
        Ok(TelUri {
            number: number.to_owned(),
            params: Params::parse(params)?,
        })
    }
}

/// `%HH` escapes must be complete (RFC 3261 §25.1 `escaped`).
fn check_escapes(s: &str) -> Result<(), SipError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(SipError::Syntax("bad escape in URI"));
            }
            i += 2;
        }
        i += 1;
    }
    Ok(())
}

/// Split `host[:port]`, with IPv6 references in brackets (§25.1 `hostport`).
pub fn split_hostport(s: &str) -> Result<(String, Option<u16>), SipError> {
    let (host, port) = if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or(SipError::Syntax("unterminated IPv6 reference"))?;
        let inner = &s[1..end];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SipError::Syntax("bad IPv6 reference"));
        }
        let rest = &s[end + 1..];
        match rest.strip_prefix(':') {
            Some(p) => (&s[..=end], Some(p)),
            None if rest.is_empty() => (&s[..=end], None),
            None => return Err(SipError::Syntax("junk after IPv6 reference")),
        }
    } else {
        match s.find(':') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'))
    {
        return Err(SipError::Syntax("bad host"));
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| SipError::Syntax("bad port"))?)
        }
        Some(_) => return Err(SipError::Syntax("bad port")),
    };
    Ok((host.to_owned(), port))
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Tel(t) => write!(f, "tel:{}{}", t.number, t.params),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_with_params_and_headers() {
        let u = Uri::parse("sip:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=x").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, "[2001:db8::10]");
        assert_eq!(s.port, Some(5070));
        assert_eq!(s.params.value("transport"), Some("tcp"));
        assert_eq!(s.params.get("lr"), Some(None));
        assert_eq!(s.headers.as_deref(), Some("Subject=x"));
        assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn tel_and_opaque() {
        let t = Uri::parse("tel:+44-20-7946-0999;phone-context=example.com").unwrap();
        assert!(matches!(&t, Uri::Tel(n) if n.number == "+44-20-7946-0999"));
        let o = Uri::parse("nobodyknowsthisscheme:totallyopaquecontent").unwrap();
        assert_eq!(o.scheme(), "nobodyknowsthisscheme");
        assert_eq!(o.to_string(), "nobodyknowsthisscheme:totallyopaquecontent");
    }

    #[test]
    fn bad_uris() {
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
        assert!(Uri::parse("sip:host:99999").is_err());
        assert!(Uri::parse("sip:user%4@host").is_err());
        assert!(Uri::parse("sip:a b@host").is_err());
        assert!(Uri::parse("nocolon").is_err());
    }
}
