//! Errors of the SIP message layer, sorted by what goes on the wire.

/// Why a message or a header could not be parsed. The `&'static str` names
/// the fault; it becomes the reason phrase of a 400 (RFC 3261 §21.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipError {
    /// A grammar violation in a header or URI.
    Syntax(&'static str),
    /// A header value that is not UTF-8 (RFC 3261 §25: TEXT-UTF8).
    NotUtf8(&'static str),
}

impl SipError {
    /// The fault, for a reason phrase or a log line.
    pub fn what(&self) -> &'static str {
        match self {
            SipError::Syntax(s) | SipError::NotUtf8(s) => s,
        }
    }
}

impl std::fmt::Display for SipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what())
    }
}

impl std::error::Error for SipError {}
