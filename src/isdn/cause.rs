//! Q.850 cause values and locations as open newtypes (ITU-T Q.850 Table 1 and
//! §2.2.3). The call module's maps (`call::cause_map`) work on the raw `u8`
//! value ([`Cause::value`]); the ISDN layers carry a [`Cause`] so logs name it.

macro_rules! open_code {
    ($(#[$m:meta])* $ty:ident { $( $name:ident = $v:expr, $text:expr; )* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(pub u8);

        #[allow(non_upper_case_globals)]
        impl $ty {
            $( pub const $name: $ty = $ty($v); )*

            /// The spec's name, or `None` for a value the table does not hold.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $v => Some($text), )*
                    _ => None,
                }
            }

            pub fn value(self) -> u8 {
                self.0
            }
        }

        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({} {})", stringify!($ty), self.0, n),
                    None => write!(f, "{}({})", stringify!($ty), self.0),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{} ({})", self.0, n),
                    None => write!(f, "{}", self.0),
                }
            }
        }
    };
}
pub(crate) use open_code;

open_code! {
    /// A Q.850 cause value (7 bits).
    Cause {
        UNALLOCATED_NUMBER = 1, "unallocated (unassigned) number";
        NO_ROUTE_TO_NETWORK = 2, "no route to specified transit network";
        NO_ROUTE_TO_DESTINATION = 3, "no route to destination";
        CHANNEL_UNACCEPTABLE = 6, "channel unacceptable";
        NORMAL_CLEARING = 16, "normal call clearing";
        USER_BUSY = 17, "user busy";
        NO_USER_RESPONDING = 18, "no user responding";
        NO_ANSWER = 19, "no answer from user (user alerted)";
        CALL_REJECTED = 21, "call rejected";
        NUMBER_CHANGED = 22, "number changed";
        DESTINATION_OUT_OF_ORDER = 27, "destination out of order";
        INVALID_NUMBER_FORMAT = 28, "invalid number format (address incomplete)";
        FACILITY_REJECTED = 29, "facility rejected";
        STATUS_ENQUIRY_RESPONSE = 30, "response to STATUS ENQUIRY";
        NORMAL_UNSPECIFIED = 31, "normal, unspecified";
        NO_CIRCUIT_AVAILABLE = 34, "no circuit/channel available";
        NETWORK_OUT_OF_ORDER = 38, "network out of order";
        TEMPORARY_FAILURE = 41, "temporary failure";
        SWITCHING_EQUIPMENT_CONGESTION = 42, "switching equipment congestion";
        REQUESTED_CHANNEL_NOT_AVAILABLE = 44, "requested circuit/channel not available";
        RESOURCE_UNAVAILABLE = 47, "resource unavailable, unspecified";
        BEARER_NOT_AVAILABLE = 58, "bearer capability not presently available";
        BEARER_NOT_IMPLEMENTED = 65, "bearer capability not implemented";
        CHANNEL_TYPE_NOT_IMPLEMENTED = 66, "channel type not implemented";
        INVALID_CALL_REFERENCE = 81, "invalid call reference value";
        IDENTIFIED_CHANNEL_DOES_NOT_EXIST = 82, "identified channel does not exist";
        INCOMPATIBLE_DESTINATION = 88, "incompatible destination";
        INVALID_MESSAGE = 95, "invalid message, unspecified";
        MANDATORY_IE_MISSING = 96, "mandatory information element is missing";
        MESSAGE_TYPE_NON_EXISTENT = 97, "message type non-existent or not implemented";
        MESSAGE_NOT_COMPATIBLE = 98, "message not compatible with call state or message type non-existent or not implemented";
        IE_NON_EXISTENT = 99, "information element/parameter non-existent or not implemented";
        INVALID_IE_CONTENTS = 100, "invalid information element contents";
        MESSAGE_NOT_COMPATIBLE_WITH_STATE = 101, "message not compatible with call state";
        RECOVERY_ON_TIMER_EXPIRY = 102, "recovery on timer expiry";
        PROTOCOL_ERROR = 111, "protocol error, unspecified";
        INTERWORKING = 127, "interworking, unspecified";
    }
}

open_code! {
    /// Q.850 §2.2.3 location (4 bits), also used by the progress indicator.
    Location {
        USER = 0, "user";
        PRIVATE_LOCAL = 1, "private network serving the local user";
        PUBLIC_LOCAL = 2, "public network serving the local user";
        TRANSIT = 3, "transit network";
        PUBLIC_REMOTE = 4, "public network serving the remote user";
        PRIVATE_REMOTE = 5, "private network serving the remote user";
        INTERNATIONAL = 7, "international network";
        BEYOND_INTERWORKING = 10, "network beyond interworking point";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_values() {
        assert_eq!(Cause::NORMAL_CLEARING.value(), 16);
        assert_eq!(
            Cause(44).name(),
            Some("requested circuit/channel not available")
        );
        assert_eq!(Cause(120).name(), None);
        assert_eq!(format!("{:?}", Cause(120)), "Cause(120)");
        assert_eq!(
            format!("{}", Location::PUBLIC_LOCAL),
            "2 (public network serving the local user)"
        );
    }
}
