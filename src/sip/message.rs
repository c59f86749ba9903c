//! SIP messages (RFC 3261 §7, §20, §25): parse from bytes, emit into a
//! caller's buffer.
//!
//! Parsing happens in two steps. [`Message::parse`] frames the message (start
//! line, unfolded header lines, body by Content-Length) and checks the
//! headers every transaction needs (Via, From, To, Call-ID, CSeq,
//! Content-Length, Max-Forwards). Other headers are kept as received, raw
//! bytes included: a non-UTF-8 value is an error only when that header is
//! asked for. A failure carries a [`Rejection`] that says whether the request
//! can be answered (400/505/513) or must be dropped.

use super::error::SipError;
use super::header::{CSeq, Method, NameAddr, Via};
use super::text::{is_token, split_commas, trim_lws};
use super::uri::Uri;

/// Default message size limit in octets (RFC 3261 §18.1.1 path MTU reasoning
/// does not cap TCP; 64 KiB bounds a single message on any transport).
pub const MAX_MESSAGE_LEN_DEFAULT: usize = 65_535;

/// RFC 3261 §7.3.3 compact forms and the full names they stand for.
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'e', "Content-Encoding"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'f', "From"),
    (b's', "Subject"),
    (b'k', "Supported"),
    (b't', "To"),
    (b'v', "Via"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'u', "Allow-Events"),
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'x', "Session-Expires"),
];

/// The full name for a (possibly compact) header name.
pub fn canonical_name(name: &str) -> &str {
    if name.len() == 1 {
        let c = name.as_bytes()[0].to_ascii_lowercase();
        if let Some((_, full)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return full;
        }
    }
    name
}

/// One header line as received (folding undone), or as built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (compact or full); compare with [`Header::is`].
    pub name: String,
    /// The value, trimmed, folding replaced by a single SP, raw bytes.
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: &str, value: impl Into<String>) -> Header {
        Header {
            name: name.to_owned(),
            value: value.into().into_bytes(),
        }
    }

    /// Whether this header is `full_name` (case-insensitive, compact forms resolved).
    pub fn is(&self, full_name: &str) -> bool {
        canonical_name(&self.name).eq_ignore_ascii_case(full_name)
    }

    /// The value as UTF-8 (§25: header values are UTF-8 text).
    pub fn value_str(&self) -> Result<&str, SipError> {
        std::str::from_utf8(&self.value).map_err(|_| SipError::NotUtf8("header value not UTF-8"))
    }
}

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// A parsed or built SIP message. Headers keep their order and repetitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// What to do with input that did not parse (RFC 3261 §8.2, §16.3, §18.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The fault, for the reason phrase and the log.
    pub fault: &'static str,
    /// `Some((status, request headers))` when the input is a request whose
    /// Via, From, To, Call-ID and CSeq are intact, so a response can be built
    /// (§8.2.6); `None`: drop and count (responses, and requests too broken to answer).
    pub answer: Option<(u16, Box<Message>)>,
}

/// How the message arrived: datagrams carry one message each; on streams the
/// framer has already cut the message by Content-Length (§18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

/// Parser limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: MAX_MESSAGE_LEN_DEFAULT,
        }
    }
}

/// Find `\r\n\r\n`: the end of the header section.
pub(crate) fn find_header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

impl Message {
    /// Parse one message. Leading CRLFs are skipped (§7.5).
    pub fn parse(input: &[u8], framing: Framing, limits: Limits) -> Result<Message, Rejection> {
        let start = input
            .iter()
            .take_while(|c| **c == b'\r' || **c == b'\n')
            .count();
        let input = &input[start..];
        let head_end = find_header_end(input).ok_or_else(|| drop_("no end of headers"))?;
        let head = &input[..head_end + 2];
        let rest = &input[head_end + 4..];
        let mut lines = unfold(head);
        if lines.is_empty() {
            return Err(drop_("empty message"));
        }
        let first = lines.remove(0);
        let start = parse_start_line(&first);
        let mut headers = Vec::with_capacity(lines.len());
        let mut header_fault = None;
        for line in lines {
            match split_header_line(&line) {
                Ok(h) => headers.push(h),
                Err(e) => {
                    header_fault.get_or_insert(e.what());
                }
            }
        }
        let mut msg = Message {
            start: StartLine::Response {
                status: 0,
                reason: String::new(),
            },
            headers,
            body: Vec::new(),
        };
        // From here on `msg.headers` is what a 400 would be built from.
        let start = match start {
            Ok(s) => s,
            Err((fault, status)) => return Err(msg.reject_with(fault, status, &first)),
        };
        msg.start = start;
        if let Some(f) = header_fault {
            return Err(msg.reject(f, 400));
        }
        if input.len() > limits.max_message_len {
            // §21.5.14 513 Message Too Large.
            return Err(msg.reject("Message Too Large", 513));
        }
        msg.check_mandatory()
            .map_err(|e| msg.reject(e.what(), 400))?;
        let body_len = match msg
            .content_length()
            .map_err(|e| msg.reject(e.what(), 400))?
        {
            Some(n) if n > rest.len() => {
                // §18.3: a datagram shorter than Content-Length is discarded
                // (we answer 400 when it is an answerable request).
                return Err(msg.reject("Content-Length larger than message", 400));
            }
            Some(n) => n,
            None if framing == Framing::Stream => {
                return Err(msg.reject("Missing Content-Length on stream", 400));
            }
            // §18.3: without Content-Length on a datagram the body is the rest.
            None => rest.len(),
        };
        msg.body = rest[..body_len].to_vec();
        Ok(msg)
    }

    /// Build the rejection for `fault` with `status`, answerable only for requests
    /// whose transaction headers survived.
    fn reject(&self, fault: &'static str, status: u16) -> Rejection {
        let answerable = matches!(self.start, StartLine::Request { .. })
            && !matches!(
                self.start,
                StartLine::Request {
                    method: Method::Ack,
                    ..
                }
            )
            && self.transaction_headers_ok();
        Rejection {
            fault,
            answer: answerable.then(|| (status, Box::new(self.clone()))),
        }
    }

    /// Like `reject` but when the start line failed: a request line whose
    /// method parsed is still answerable.
    fn reject_with(&mut self, fault: &'static str, status: Option<u16>, line: &[u8]) -> Rejection {
        let method = line
            .split(|c| *c == b' ')
            .next()
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(|m| Method::parse(m).ok());
        match (status, method) {
            (Some(status), Some(method)) if method != Method::Ack => {
                self.start = StartLine::Request {
                    method,
                    uri: Uri::Other {
                        scheme: "invalid".into(),
                        rest: String::new(),
                    },
                };
                self.reject(fault, status)
            }
            _ => drop_(fault),
        }
    }

    /// A response needs somewhere to go and a transaction to match: a Via
    /// header (the transport answers to the source address, §18.2.2) and a
    /// CSeq (the first is copied when there are several, RFC 4475 multi01). The others are copied as received, or left out if missing
    /// (RFC 4475 §3.3.1 insuf: answer 400 even without From/To/Call-ID).
    fn transaction_headers_ok(&self) -> bool {
        self.headers_named("Via").next().is_some() && self.headers_named("CSeq").next().is_some()
    }

    /// RFC 3261 §8.1.1: To, From, CSeq, Call-ID, Via are mandatory (Max-Forwards
    /// too for requests, but §16.6 lets a UAS accept its absence).
    fn check_mandatory(&self) -> Result<(), SipError> {
        if self.vias()?.is_empty() {
            return Err(SipError::Syntax("Missing Via"));
        }
        self.from().map_err(|e| bad_or_missing(e, "Bad From"))?;
        self.to().map_err(|e| bad_or_missing(e, "Bad To"))?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if let StartLine::Request { method, .. } = &self.start {
            // §8.2.3 / RFC 4475 §3.1.2.17 mismatch01: CSeq method must match the request's.
            if *method != cseq.method {
                return Err(SipError::Syntax(
                    "CSeq method does not match request method",
                ));
            }
        }
        self.max_forwards()?;
        Ok(())
    }

    /// All headers named `full_name`, in order.
    pub fn headers_named<'a>(&'a self, full_name: &'a str) -> impl Iterator<Item = &'a Header> {
        self.headers.iter().filter(move |h| h.is(full_name))
    }

    /// The single value of a header that must appear at most once.
    pub fn single(&self, full_name: &'static str) -> Result<Option<&str>, SipError> {
        let mut it = self.headers_named(full_name);
        let first = it.next();
        if it.next().is_some() {
            return Err(SipError::Syntax(multiple(full_name)));
        }
        first.map(|h| h.value_str()).transpose()
    }

    fn required(&self, full_name: &'static str) -> Result<&str, SipError> {
        self.single(full_name)?
            .ok_or(SipError::Syntax(missing(full_name)))
    }

    /// The values of a list header (§7.3.1), comma-split across all its lines.
    pub fn list<'a>(&'a self, full_name: &'a str) -> Result<Vec<&'a str>, SipError> {
        let mut out = Vec::new();
        for h in self.headers_named(full_name) {
            out.extend(
                split_commas(h.value_str()?)?
                    .into_iter()
                    .filter(|v| !v.is_empty()),
            );
        }
        Ok(out)
    }

    pub fn vias(&self) -> Result<Vec<Via>, SipError> {
        self.list("Via")?
            .into_iter()
            .map(|v| Via::parse(v).map_err(|_| SipError::Syntax("Bad Via")))
            .collect()
    }

    pub fn from(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse(self.required("From")?)
    }

    pub fn to(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse(self.required("To")?)
    }

    pub fn call_id(&self) -> Result<&str, SipError> {
        let v = self.required("Call-ID")?;
        // §25.1 callid = word [ "@" word ]: no whitespace.
        if v.is_empty() || v.contains([' ', '\t']) {
            return Err(SipError::Syntax("Bad Call-ID"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, SipError> {
        CSeq::parse(self.required("CSeq")?).map_err(|_| SipError::Syntax("Bad CSeq"))
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, SipError> {
        self.single("Max-Forwards")?
            .map(|v| {
                let v = trim_lws(v);
                if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(SipError::Syntax("Bad Max-Forwards"));
                }
                // §20.22: 0-255; leading zeros allowed (RFC 4475 §3.1.1.1).
                v.trim_start_matches('0')
                    .parse::<u8>()
                    .or_else(|e| {
                        if v.bytes().all(|c| c == b'0') {
                            Ok(0)
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|_| SipError::Syntax("Bad Max-Forwards"))
            })
            .transpose()
    }

    pub fn content_length(&self) -> Result<Option<usize>, SipError> {
        self.single("Content-Length")?
            .map(|v| {
                let v = trim_lws(v);
                if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(SipError::Syntax("Bad Content-Length"));
                }
                v.parse::<usize>()
                    .map_err(|_| SipError::Syntax("Bad Content-Length"))
            })
            .transpose()
    }

    pub fn contacts(&self) -> Result<Vec<NameAddr>, SipError> {
        self.list("Contact")?
            .into_iter()
            .filter(|v| *v != "*")
            .map(NameAddr::parse)
            .collect()
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request.
    pub fn start_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// Append a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header::new(name, value));
    }

    /// Octets [`Message::emit`] writes. Content-Length is written from the body
    /// (existing Content-Length headers are replaced).
    pub fn buffer_len(&self) -> usize {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v.len()
    }

    /// Write the message into `buf`; returns the length, or `None` if it does not fit.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.write_to(&mut v);
        buf.get_mut(..v.len())?.copy_from_slice(&v);
        Some(v.len())
    }

    /// The message as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Response { status, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {status:03} {reason}\r\n").as_bytes())
            }
        }
        for h in self.headers.iter().filter(|h| !h.is("Content-Length")) {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
    }
}

fn multiple(name: &'static str) -> &'static str {
    match name {
        "From" => "Multiple From",
        "To" => "Multiple To",
        "Call-ID" => "Multiple Call-ID",
        "CSeq" => "Multiple CSeq",
        "Content-Length" => "Multiple Content-Length",
        "Max-Forwards" => "Multiple Max-Forwards",
        _ => "Header repeated",
    }
}

fn missing(name: &'static str) -> &'static str {
    match name {
        "From" => "Missing From",
        "To" => "Missing To",
        "Call-ID" => "Missing Call-ID",
        "CSeq" => "Missing CSeq",
        _ => "Missing header",
    }
}

/// Keep "Missing X" / "Multiple X" faults; anything else becomes `bad`.
fn bad_or_missing(e: SipError, bad: &'static str) -> SipError {
    match e.what() {
        w if w.starts_with("Missing") || w.starts_with("Multiple") => e,
        _ => SipError::Syntax(bad),
    }
}

fn drop_(fault: &'static str) -> Rejection {
    Rejection {
        fault,
        answer: None,
    }
}

/// Split the header section into logical lines, undoing folding
/// (§7.3.1: CRLF followed by SP/HT is LWS; replaced by one SP).
fn unfold(head: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for raw in head.split(|c| *c == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        match (raw[0], lines.last_mut()) {
            (b' ' | b'\t', Some(prev)) => {
                let cont = raw.iter().position(|c| *c != b' ' && *c != b'\t');
                if let Some(i) = cont {
                    while prev.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                        prev.pop();
                    }
                    prev.push(b' ');
                    prev.extend_from_slice(&raw[i..]);
                }
            }
            _ => lines.push(raw.to_vec()),
        }
    }
    lines
}

/// `name HCOLON value`: LWS allowed before the colon (§7.3.1).
fn split_header_line(line: &[u8]) -> Result<Header, SipError> {
    let colon = line
        .iter()
        .position(|c| *c == b':')
        .ok_or(SipError::Syntax("Header line without colon"))?;
    let name =
        std::str::from_utf8(&line[..colon]).map_err(|_| SipError::Syntax("Bad header name"))?;
    let name = trim_lws(name);
    if !is_token(name) {
        return Err(SipError::Syntax("Bad header name"));
    }
    let mut value = &line[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    Ok(Header {
        name: name.to_owned(),
        value: value.to_vec(),
    })
}

/// The start line; the error carries the fault and the status to answer
/// with when the line is a request (`None`: drop).
fn parse_start_line(line: &[u8]) -> Result<StartLine, (&'static str, Option<u16>)> {
    let line = std::str::from_utf8(line).map_err(|_| ("Start line not UTF-8", Some(400)))?;
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2).
        let mut p = rest.splitn(3, ' ');
        let version = p.next().unwrap_or("");
        let code = p.next().ok_or(("Bad status line", None))?;
        let reason = p.next().unwrap_or("");
        if version != "2.0" {
            return Err(("Unsupported SIP version", None));
        }
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(("Bad status code", None));
        }
        let status: u16 = code.parse().map_err(|_| ("Bad status code", None))?;
        if !(100..=699).contains(&status) {
            return Err(("Bad status code", None));
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF (§7.1): single
    // spaces, no LWS inside the URI (RFC 4475 §3.1.2.11, §3.1.2.12).
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(("Malformed request line", Some(400)));
    }
    let method = Method::parse(parts[0]).map_err(|_| ("Bad method", None))?;
    let version = parts[2];
    if !version.starts_with("SIP/")
        || !version[4..]
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.')
    {
        return Err(("Malformed request line", Some(400)));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        // §8.2: 505 Version Not Supported.
        return Err(("Version Not Supported", Some(505)));
    }
    let uri_s = parts[1];
    if uri_s.starts_with('<') {
        return Err(("Request-URI in angle brackets", Some(400)));
    }
    let uri = Uri::parse(uri_s).map_err(|e| (e.what(), Some(400)))?;
    Ok(StartLine::Request { method, uri })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn non_utf8_header_is_an_error_for_that_header_only() {
        let mut m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
            .to_vec();
        m.extend_from_slice(b"X-Odd: \xff\xfe\r\nContent-Length: 0\r\n\r\n");
        let msg = Message::parse(&m, Framing::Datagram, Limits::default()).unwrap();
        let odd = msg.headers_named("X-Odd").next().unwrap();
        assert!(odd.value_str().is_err());
        assert_eq!(msg.call_id(), Ok("c"));
        // Re-emitted unchanged.
        assert!(msg.to_bytes().windows(2).any(|w| w == b"\xff\xfe"));
    }

    #[test]
    fn stream_needs_content_length_and_emit_fits_buffer() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = Message::parse(m, Framing::Stream, Limits::default()).unwrap_err();
        assert_eq!(r.answer.map(|a| a.0), Some(400));
        let msg = Message::parse(m, Framing::Datagram, Limits::default()).unwrap();
        let mut buf = [0u8; 512];
        let n = msg.emit(&mut buf).unwrap();
        assert_eq!(n, msg.buffer_len());
        assert!(msg.emit(&mut buf[..n - 1]).is_none());
    }

    #[test]
    fn responses_with_bad_status_are_dropped() {
        for line in ["SIP/2.0 99 Low", "SIP/2.0 700 High", "SIP/3.0 200 OK"] {
            let m =
                format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n");
            let r = Message::parse(m.as_bytes(), Framing::Datagram, Limits::default()).unwrap_err();
            assert_eq!(r.answer, None, "{line}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_identity(
            user in "[a-z0-9]{1,8}",
            host in "[a-z]{1,8}\\.example",
            port in proptest::option::of(1u16..),
            tag in token(),
            branch in "[a-zA-Z0-9]{1,12}",
            seq in 0u32..,
            display in "[ -~\u{e9}\u{5927}]{0,10}",
            reason in "[ -~\u{430}-\u{44f}]{0,20}",
            ext_value in "[!-~][ -~]{0,20}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            request in any::<bool>(),
        ) {
            let uri = Uri::Sip(crate::sip::SipUri {
                secure: false, user: Some(user), password: None, host, port,
                params: Default::default(), headers: None,
            });
            let from = NameAddr { display_name: Some(display), uri: uri.clone(),
                params: crate::sip::Params::parse(&format!(";tag={tag}")).unwrap() };
            let start = if request {
                StartLine::Request { method: Method::Invite, uri: uri.clone() }
            } else {
                StartLine::Response { status: 183, reason: reason.trim_end().to_owned() }
            };
            let mut m = Message { start, headers: vec![], body };
            m.push("Via", format!("SIP/2.0/UDP gw.example;branch=z9hG4bK{branch}"));
            m.push("From", from.to_string());
            m.push("To", format!("<{uri}>"));
            m.push("Call-ID", "abc@gw");
            m.push("CSeq", format!("{seq} INVITE"));
            m.push("X-Ext", ext_value.trim_end().to_owned());
            let bytes = m.to_bytes();
            let back = Message::parse(&bytes, Framing::Stream, Limits::default()).unwrap();
            prop_assert_eq!(back.from().unwrap(), from);
            prop_assert_eq!(&back.body, &m.body);
            m.push("Content-Length", m.body.len().to_string());
            prop_assert_eq!(back, m);
        }
    }
}
