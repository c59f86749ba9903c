//! Call states of Q.931 §2.1 (user side) and §2.2 (network side), named as
//! the spec names them. [`State::number`] is the value of the call state
//! element (§4.5.7).

/// A call's state on our side of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    U0Null,
    U1CallInitiated,
    U2OverlapSending,
    U3OutgoingCallProceeding,
    U4CallDelivered,
    U6CallPresent,
    U7CallReceived,
    U8ConnectRequest,
    U9IncomingCallProceeding,
    U10Active,
    U11DisconnectRequest,
    U12DisconnectIndication,
    U19ReleaseRequest,
    U25OverlapReceiving,
    N0Null,
    N1CallInitiated,
    N2OverlapSending,
    N3OutgoingCallProceeding,
    N4CallDelivered,
    N6CallPresent,
    N7CallReceived,
    N8ConnectRequest,
    N9IncomingCallProceeding,
    N10Active,
    N11DisconnectRequest,
    N12DisconnectIndication,
    N19ReleaseRequest,
    N25OverlapReceiving,
}

impl State {
    /// The call state element value.
    pub fn number(self) -> u8 {
        use State::*;
        match self {
            U0Null | N0Null => 0,
            U1CallInitiated | N1CallInitiated => 1,
            U2OverlapSending | N2OverlapSending => 2,
            U3OutgoingCallProceeding | N3OutgoingCallProceeding => 3,
            U4CallDelivered | N4CallDelivered => 4,
            U6CallPresent | N6CallPresent => 6,
            U7CallReceived | N7CallReceived => 7,
            U8ConnectRequest | N8ConnectRequest => 8,
            U9IncomingCallProceeding | N9IncomingCallProceeding => 9,
            U10Active | N10Active => 10,
            U11DisconnectRequest | N11DisconnectRequest => 11,
            U12DisconnectIndication | N12DisconnectIndication => 12,
            U19ReleaseRequest | N19ReleaseRequest => 19,
            U25OverlapReceiving | N25OverlapReceiving => 25,
        }
    }

    /// `U10` / `N3` for log fields.
    pub fn short(self) -> String {
        let side = if format!("{self:?}").starts_with('U') {
            'U'
        } else {
            'N'
        };
        format!("{side}{}", self.number())
    }

    pub fn is_null(self) -> bool {
        self.number() == 0
    }

    pub fn is_active(self) -> bool {
        self.number() == 10
    }

    /// States in which the call is being cleared.
    pub fn is_clearing(self) -> bool {
        matches!(self.number(), 11 | 12 | 19)
    }
}
