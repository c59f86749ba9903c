//! The per-span signalling timer table.
//!
//! Every Q.921 and Q.931 timer the stack runs is named here once, with the
//! spec's default, the range an operator may set it to and what its expiry
//! does. Call sites index a [`TimerValues`] by [`TimerId`]; no timer value is
//! ever a literal elsewhere. Sources: Q.921 §5.9, Q.931 Tables 9-1 and 9-2,
//! ETSI EN 300 403-1 §9.1 (which sets T309 to 90 s).

use std::time::Duration;

/// Which side of the interface a timer runs on (Q.931 Tables 9-1 and 9-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Both,
    User,
    Network,
}

/// A timer's entry in the table.
#[derive(Debug, Clone, Copy)]
pub struct TimerSpec {
    pub id: TimerId,
    pub name: &'static str,
    pub default: Duration,
    pub min: Duration,
    pub max: Duration,
    pub side: Side,
    /// What the stack does when it expires, for logs and `check-config`.
    pub on_expiry: &'static str,
}

macro_rules! timers {
    ($( $id:ident, $default_ms:expr, $min_ms:expr, $max_ms:expr, $side:ident, $what:expr; )*) => {
        /// Every signalling timer of a span.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum TimerId { $( $id, )* }

        /// The table, in [`TimerId`] order.
        pub const TIMERS: &[TimerSpec] = &[
            $( TimerSpec {
                id: TimerId::$id,
                name: stringify!($id),
                default: Duration::from_millis($default_ms),
                min: Duration::from_millis($min_ms),
                max: Duration::from_millis($max_ms),
                side: Side::$side,
                on_expiry: $what,
            }, )*
        ];
    };
}

timers! {
    // Q.921 §5.9.1 / §5.9.8: retransmission timer and idle-link supervision.
    T200,    1_000,    100,  10_000, Both, "retransmit the unacknowledged frame or poll the peer (up to N200 times)";
    T203,   10_000,  1_000, 300_000, Both, "poll the idle link with RR/RNR and enter timer recovery";
    // Q.931 Tables 9-1 / 9-2.
    T301,  180_000, 180_000, 1_800_000, Both, "clear the call: no answer after ALERTING (cause 102)";
    T302,   15_000,  1_000,  60_000, Both, "overlap receiving: take the digits collected as complete, or clear (cause 28)";
    T303,    4_000,  1_000,  30_000, Both, "retransmit SETUP once, then clear the call (cause 102)";
    T304,   30_000, 10_000, 120_000, Both, "overlap sending: clear the call (cause 102)";
    T305,   30_000,  4_000, 120_000, Both, "send RELEASE with the cause of the DISCONNECT";
    T306,   30_000,  4_000, 120_000, Network, "stop in-band tones after DISCONNECT with progress indicator 8 and send RELEASE";
    T308,    4_000,  1_000,  30_000, Both, "retransmit RELEASE once, then release the call reference and channel";
    T309,   90_000,  6_000,  90_000, Both, "data link still down: clear the calls that survived the link failure";
    T310,   30_000, 10_000, 120_000, Both, "no ALERTING/CONNECT after CALL PROCEEDING: clear the call (cause 102)";
    T313,    4_000,  1_000,  30_000, User, "no CONNECT ACKNOWLEDGE: clear the call (cause 102)";
    T316,  120_000, 10_000, 600_000, Both, "no RESTART ACKNOWLEDGE: retransmit RESTART (bounded number of times)";
    T322,    4_000,  1_000,  30_000, Both, "no answer to STATUS ENQUIRY: retransmit it, then clear the call (cause 41)";
}

impl TimerId {
    /// This timer's table entry.
    pub fn spec(self) -> &'static TimerSpec {
        &TIMERS[self as usize]
    }

    /// Finds a timer by its spec name (`"T309"`), case-insensitively.
    pub fn from_name(name: &str) -> Option<TimerId> {
        TIMERS
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| t.id)
    }
}

/// The timer values in force on one span: the defaults with the site's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerValues {
    values: [Duration; TIMERS.len()],
}

impl Default for TimerValues {
    fn default() -> Self {
        let mut values = [Duration::ZERO; TIMERS.len()];
        for t in TIMERS {
            values[t.id as usize] = t.default;
        }
        TimerValues { values }
    }
}

/// An override outside the range the spec allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub id: TimerId,
    pub value: Duration,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.id.spec();
        write!(
            f,
            "{} = {:?} is outside {:?}..={:?} (default {:?})",
            s.name, self.value, s.min, s.max, s.default
        )
    }
}

impl TimerValues {
    pub fn get(&self, id: TimerId) -> Duration {
        self.values[id as usize]
    }

    /// Sets a timer, refusing values outside the table's range.
    pub fn set(&mut self, id: TimerId, value: Duration) -> Result<(), OutOfRange> {
        let s = id.spec();
        if value < s.min || value > s.max {
            return Err(OutOfRange { id, value });
        }
        self.values[id as usize] = value;
        Ok(())
    }

    /// `T200=1s T203=10s ...` for the start-up log line.
    pub fn summary(&self) -> String {
        TIMERS
            .iter()
            .map(|t| {
                format!(
                    "{}={}",
                    t.name,
                    crate::config::format_duration(self.get(t.id))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_id() {
        for (i, t) in TIMERS.iter().enumerate() {
            assert_eq!(t.id as usize, i);
            assert!(t.min <= t.default && t.default <= t.max, "{}", t.name);
        }
    }

    #[test]
    fn en_300_403_defaults() {
        let v = TimerValues::default();
        assert_eq!(v.get(TimerId::T309), Duration::from_secs(90));
        assert_eq!(v.get(TimerId::T303), Duration::from_secs(4));
        assert_eq!(v.get(TimerId::T200), Duration::from_secs(1));
    }

    #[test]
    fn overrides_are_range_checked() {
        let mut v = TimerValues::default();
        assert!(v.set(TimerId::T309, Duration::from_secs(30)).is_ok());
        assert_eq!(v.get(TimerId::T309), Duration::from_secs(30));
        assert!(v.set(TimerId::T309, Duration::from_secs(5)).is_err());
        assert!(v.set(TimerId::T301, Duration::from_secs(60)).is_err());
        assert_eq!(TimerId::from_name("t309"), Some(TimerId::T309));
        assert_eq!(TimerId::from_name("T999"), None);
    }
}
