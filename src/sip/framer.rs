//! Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1): cut a TCP/TLS byte
//! stream into messages by Content-Length, and recognise CRLF keep-alives.
//!
//! Contract: feed received bytes with [`StreamFramer::handle_input`], then
//! drain [`StreamFramer::poll_frame`] until it returns `None`. The framer owns
//! its buffer; frames are handed out as owned vectors to [`super::Message::parse`]
//! with [`super::Framing::Stream`]. An error is fatal for the connection
//! (§18.3: the stream cannot be resynchronised), and the caller closes it.

use super::message::find_header_end;

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: header section plus Content-Length octets of body.
    Message(Vec<u8>),
    /// `CRLFCRLF` ping (RFC 5626 §3.5.1): answer with a [`Frame::Pong`]'s bytes.
    Ping,
    /// A single `CRLF` pong, or stray CRLF between messages (§7.5).
    Pong,
}

/// Why a stream had to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Header section or body larger than the limit (would be 513).
    TooLarge,
    /// Content-Length missing or unparseable: the stream cannot be framed.
    BadContentLength,
}

/// Incremental framer for one stream connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_message_len: usize,
}

impl StreamFramer {
    pub fn new(max_message_len: usize) -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            max_message_len,
        }
    }

    /// Append received bytes.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Octets buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// RFC 5626 §4.4.1: a lone CRLF is ambiguous until more arrives (a pong,
    /// or the first half of a ping), so [`StreamFramer::poll_frame`] waits.
    /// The client of a flow that is waiting for its pong calls this: it
    /// consumes a buffered lone CRLF and returns true.
    pub fn take_pong(&mut self) -> bool {
        if self.buf == b"\r\n" {
            self.buf.clear();
            true
        } else {
            false
        }
    }

    /// The next complete frame, `Ok(None)` when more input is needed.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(Frame::Ping));
        }
        if self.buf.starts_with(b"\r\n") {
            // Could be the start of a CRLFCRLF ping: wait for more unless
            // something else follows.
            if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                return Ok(None);
            }
            self.buf.drain(..2);
            return Ok(Some(Frame::Pong));
        }
        let Some(head_end) = find_header_end(&self.buf) else {
            if self.buf.len() > self.max_message_len {
                return Err(FrameError::TooLarge);
            }
            return Ok(None);
        };
        let body_len =
            content_length(&self.buf[..head_end + 2]).ok_or(FrameError::BadContentLength)?;
        let total = head_end + 4 + body_len;
        if total > self.max_message_len {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(Frame::Message(msg)))
    }
}

/// Content-Length (or `l`) from a header section; folding is not expected in
/// this one header, but LWS around the colon is.
fn content_length(head: &[u8]) -> Option<usize> {
    let mut found = None;
    for line in head.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            continue;
        };
        let name = std::str::from_utf8(&line[..colon]).ok()?.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let v = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
            if v.is_empty()
                || v.len() > 9
                || !v.bytes().all(|c| c.is_ascii_digit())
                || found.is_some()
            {
                return None;
            }
            found = Some(v.parse().ok()?);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn partial_input_and_keepalives() {
        let mut f = StreamFramer::new(1000);
        f.handle_input(b"\r\n\r\n\r\n");
        assert_eq!(f.poll_frame(), Ok(Some(Frame::Ping)));
        assert_eq!(f.poll_frame(), Ok(None));
        for chunk in MSG.chunks(5) {
            assert!(matches!(f.poll_frame(), Ok(None | Some(Frame::Pong))));
            f.handle_input(chunk);
        }
        assert_eq!(f.poll_frame(), Ok(Some(Frame::Message(MSG.to_vec()))));
        assert_eq!((f.poll_frame(), f.buffered()), (Ok(None), 0));
        // A lone CRLF waits in poll_frame, and a waiting client takes it as pong.
        f.handle_input(b"\r\n");
        assert_eq!(f.poll_frame(), Ok(None));
        assert!(f.take_pong());
        assert!(!f.take_pong());
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn two_messages_in_one_read_and_errors() {
        let mut f = StreamFramer::new(1000);
        f.handle_input(&[MSG, MSG].concat());
        assert!(matches!(f.poll_frame(), Ok(Some(Frame::Message(_)))));
        assert!(matches!(f.poll_frame(), Ok(Some(Frame::Message(_)))));
        let mut f = StreamFramer::new(1000);
        f.handle_input(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(f.poll_frame(), Err(FrameError::BadContentLength));
        let mut f = StreamFramer::new(20);
        f.handle_input(MSG);
        assert_eq!(f.poll_frame(), Err(FrameError::TooLarge));
    }
}
