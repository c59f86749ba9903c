//! The abstract data-link interface Q.931 sits on (Q.921 §4 primitives,
//! Q.931 §5.9). The D-channel task glues these to the LAPD core: it feeds
//! [`DlIndication`]s to `Q931` and carries out the [`DlRequest`]s it polls.

/// From layer 2 up to Q.931.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlIndication {
    /// DL-ESTABLISH indication or confirm: multiple-frame operation is up.
    Established,
    /// DL-RELEASE indication or confirm: the link is down (Q.931 §5.9).
    Released,
    /// DL-DATA indication: one Q.931 message (the I-frame's information field).
    Data(Vec<u8>),
}

/// From Q.931 down to layer 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlRequest {
    /// DL-ESTABLISH request (Q.931 §5.9: a message to send and no link).
    Establish,
    /// DL-DATA request: one encoded Q.931 message.
    Data(Vec<u8>),
}
