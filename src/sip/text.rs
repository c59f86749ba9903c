//! Lexical helpers of RFC 3261 §25.1: tokens, LWS, quoted strings, generic
//! parameters, and splitting a header value at top-level commas.

use super::error::SipError;

/// RFC 3261 §25.1 `token` character.
pub fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// A non-empty string of token characters.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Trim RFC 3261 LWS (SP / HTAB; folding is already undone) from both ends.
pub fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Parse a quoted-string at the start of `s` (§25.1: `"` *(qdtext / quoted-pair) `"`).
/// Returns the unescaped content and the rest after the closing quote.
pub fn parse_quoted(s: &str) -> Result<(String, &str), SipError> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '"')) => {}
        _ => return Err(SipError::Syntax("quoted string expected")),
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            // §25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F); CR and LF cannot be escaped.
            '\\' => match chars.next() {
                Some((_, e)) if e != '\r' && e != '\n' && e.is_ascii() => out.push(e),
                _ => return Err(SipError::Syntax("bad escape in quoted string")),
            },
            '\r' | '\n' => return Err(SipError::Syntax("line break in quoted string")),
            c => out.push(c),
        }
    }
    Err(SipError::Syntax("unterminated quoted string"))
}

/// Write `s` as a quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Split a header value at commas that are outside quoted strings and `<...>`
/// (RFC 3261 §7.3.1: a comma-separated list is equivalent to repeated headers).
pub fn split_commas(s: &str) -> Result<Vec<&str>, SipError> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i, mut in_quote, mut in_angle) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_quote && !in_angle => {
                parts.push(trim_lws(&s[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quote {
        return Err(SipError::Syntax("unterminated quoted string"));
    }
    if in_angle {
        return Err(SipError::Syntax("unterminated <"));
    }
    parts.push(trim_lws(&s[start..]));
    Ok(parts)
}

/// One `generic-param` (§25.1): a name and an optional value, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// An ordered list of parameters that keeps unknown ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The value of `name` (case-insensitive): `Some(None)` for a flag parameter.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value of `name` if present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Set `name` to `value`, replacing an existing one.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// Parse `;a=b;c;d="x y"` (the leading `;` already consumed or not).
    /// LWS is allowed around `;` and `=` (§7.3.1). Unquoted values are tokens
    /// plus the characters of IPv6 references (`[`, `]`, `:`).
    pub fn parse(s: &str) -> Result<Params, SipError> {
        let mut out = Vec::new();
        let mut rest = trim_lws(s);
        while !rest.is_empty() {
            rest = trim_lws(rest.strip_prefix(';').unwrap_or(rest));
            let end = rest.find(['=', ';', ' ', '\t']).unwrap_or(rest.len());
            let name = &rest[..end];
            if !is_token(name) {
                return Err(SipError::Syntax("bad parameter name"));
            }
            rest = trim_lws(&rest[end..]);
            let mut value = None;
            if let Some(v) = rest.strip_prefix('=') {
                let v = trim_lws(v);
                if v.starts_with('"') {
                    let (q, after) = parse_quoted(v)?;
                    value = Some(q);
                    rest = trim_lws(after);
                } else {
                    let end = v.find([';', ' ', '\t']).unwrap_or(v.len());
                    let tok = &v[..end];
                    if tok.is_empty()
                        || !tok
                            .bytes()
                            .all(|c| is_token_char(c) || matches!(c, b'[' | b']' | b':'))
                    {
                        return Err(SipError::Syntax("bad parameter value"));
                    }
                    value = Some(tok.to_owned());
                    rest = trim_lws(&v[end..]);
                }
            }
            if !rest.is_empty() && !rest.starts_with(';') {
                return Err(SipError::Syntax("junk after parameter"));
            }
            out.push(Param {
                name: name.to_owned(),
                value,
            });
        }
        Ok(Params(out))
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            match &p.value {
                None => write!(f, ";{}", p.name)?,
                Some(v)
                    if is_token(v)
                        || v.bytes().all(|c| is_token_char(c) || b"[]:".contains(&c))
                            && !v.is_empty() =>
                {
                    write!(f, ";{}={}", p.name, v)?
                }
                Some(v) => write!(f, ";{}={}", p.name, quote(v))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_string_escapes() {
        let (s, rest) = parse_quoted(r#""J Rosenberg \\\"" <sip:x>"#).unwrap();
        assert_eq!(s, r#"J Rosenberg \""#);
        assert_eq!(rest, " <sip:x>");
        assert!(parse_quoted("\"abc").is_err());
    }

    #[test]
    fn params_with_lws() {
        let p = Params::parse(" ; newparam =\t newvalue ;  secondparam ; q = 0.33").unwrap();
        assert_eq!(p.value("newparam"), Some("newvalue"));
        assert_eq!(p.get("secondparam"), Some(None));
        assert_eq!(p.value("Q"), Some("0.33"));
        assert!(Params::parse(";a=b c").is_err());
    }

    #[test]
    fn commas_outside_quotes() {
        let v = split_commas(r#""a,b" <sip:x,y>, <sip:z>"#).unwrap();
        assert_eq!(v, vec![r#""a,b" <sip:x,y>"#, "<sip:z>"]);
    }
}
