//! Q.931 code points as open newtypes: message types (Q.931 Table 4-2) and
//! information element identifiers (Table 4-3). Unknown values are kept.

use crate::isdn::cause::open_code;

open_code! {
    /// The message type octet (Q.931 §4.4, Table 4-2).
    MessageType {
        ALERTING = 0x01, "ALERTING";
        CALL_PROCEEDING = 0x02, "CALL PROCEEDING";
        PROGRESS = 0x03, "PROGRESS";
        SETUP = 0x05, "SETUP";
        CONNECT = 0x07, "CONNECT";
        SETUP_ACKNOWLEDGE = 0x0D, "SETUP ACKNOWLEDGE";
        CONNECT_ACKNOWLEDGE = 0x0F, "CONNECT ACKNOWLEDGE";
        DISCONNECT = 0x45, "DISCONNECT";
        RESTART = 0x46, "RESTART";
        RELEASE = 0x4D, "RELEASE";
        RESTART_ACKNOWLEDGE = 0x4E, "RESTART ACKNOWLEDGE";
        RELEASE_COMPLETE = 0x5A, "RELEASE COMPLETE";
        FACILITY = 0x62, "FACILITY";
        NOTIFY = 0x6E, "NOTIFY";
        STATUS_ENQUIRY = 0x75, "STATUS ENQUIRY";
        INFORMATION = 0x7B, "INFORMATION";
        STATUS = 0x7D, "STATUS";
    }
}

open_code! {
    /// An information element identifier (Q.931 §4.5, Table 4-3). For the
    /// single-octet type 1 elements only the high nibble is the identifier;
    /// the low nibble is the element's contents.
    IeId {
        SHIFT = 0x90, "Shift";
        MORE_DATA = 0xA0, "More data";
        SENDING_COMPLETE = 0xA1, "Sending complete";
        CONGESTION_LEVEL = 0xB0, "Congestion level";
        REPEAT_INDICATOR = 0xD0, "Repeat indicator";
        BEARER_CAPABILITY = 0x04, "Bearer capability";
        CAUSE = 0x08, "Cause";
        CALL_IDENTITY = 0x10, "Call identity";
        CALL_STATE = 0x14, "Call state";
        CHANNEL_IDENTIFICATION = 0x18, "Channel identification";
        FACILITY = 0x1C, "Facility";
        PROGRESS_INDICATOR = 0x1E, "Progress indicator";
        NETWORK_SPECIFIC_FACILITIES = 0x20, "Network-specific facilities";
        NOTIFICATION_INDICATOR = 0x27, "Notification indicator";
        DISPLAY = 0x28, "Display";
        DATE_TIME = 0x29, "Date/time";
        KEYPAD_FACILITY = 0x2C, "Keypad facility";
        SIGNAL = 0x34, "Signal";
        CONNECTED_NUMBER = 0x4C, "Connected number";
        CONNECTED_SUBADDRESS = 0x4D, "Connected subaddress";
        CALLING_PARTY_NUMBER = 0x6C, "Calling party number";
        CALLING_PARTY_SUBADDRESS = 0x6D, "Calling party subaddress";
        CALLED_PARTY_NUMBER = 0x70, "Called party number";
        CALLED_PARTY_SUBADDRESS = 0x71, "Called party subaddress";
        REDIRECTING_NUMBER = 0x74, "Redirecting number";
        TRANSIT_NETWORK_SELECTION = 0x78, "Transit network selection";
        RESTART_INDICATOR = 0x79, "Restart indicator";
        LOW_LAYER_COMPATIBILITY = 0x7C, "Low layer compatibility";
        HIGH_LAYER_COMPATIBILITY = 0x7D, "High layer compatibility";
        USER_USER = 0x7E, "User-user";
    }
}

impl IeId {
    /// Single-octet elements have bit 8 set (Q.931 §4.5.1).
    pub fn is_single_octet(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// Q.931 §4.5.1 / §5.8.7.1: variable-length identifiers 0000xxxx in
    /// codeset 0 mean "comprehension required".
    pub fn comprehension_required(self) -> bool {
        self.0 & 0xF0 == 0
    }

    /// The identifier of a single-octet element from its octet: type 2
    /// (1010xxxx) elements use the whole octet, type 1 only the high nibble.
    pub fn of_single_octet(octet: u8) -> IeId {
        if octet & 0xF0 == 0xA0 {
            IeId(octet)
        } else {
            IeId(octet & 0xF0)
        }
    }
}
