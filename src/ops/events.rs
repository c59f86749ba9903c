//! Events for the NOC: one structured log record per event that matters to
//! operations, each with a stable journald `MESSAGE_ID` and a fixed priority,
//! so a NOC can write alerting rules against them (`journalctl
//! MESSAGE_ID=...`). The table is in README.md; the IDs never change.
//!
//! Emit with [`noc_event!`](crate::noc_event): `noc_event!(NocEvent::PeerDown,
//! peer = %addr, "core peer down")`. Under journald the `message_id` field
//! becomes `MESSAGE_ID` (the journald layer runs without a field prefix).

use tracing::Level;

use crate::line::e1_alarm::{Alarm, LineEvent};
use crate::sip::peer::{PeerEvent, PeerTable};

macro_rules! noc_events {
    ($( $name:ident, $id:literal, $level:ident, $doc:literal; )*) => {
        /// Every NOC event tdmgw emits.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum NocEvent { $( #[doc = $doc] $name, )* }

        /// All events, for the README table and tests.
        pub const ALL: &[NocEvent] = &[ $( NocEvent::$name, )* ];

        impl NocEvent {
            /// The 128-bit journald MESSAGE_ID, as 32 lowercase hex digits.
            pub fn message_id(self) -> &'static str {
                match self { $( NocEvent::$name => $id, )* }
            }
            /// Log level (journald PRIORITY: ERROR=3, WARN=4, INFO=5).
            pub fn level(self) -> Level {
                match self { $( NocEvent::$name => Level::$level, )* }
            }
            pub fn name(self) -> &'static str {
                match self { $( NocEvent::$name => stringify!($name), )* }
            }
            pub fn description(self) -> &'static str {
                match self { $( NocEvent::$name => $doc, )* }
            }
        }
    };
}

noc_events! {
    Started,            "07d7e632854f4b37aeb9eddec1a9f74b", INFO,  "tdmgw started and is ready";
    Stopping,           "c332e10242784c50bb9f02e002d16def", WARN,  "tdmgw is stopping (drain begun)";
    AlarmRaised,        "1f1d9ac50e9b4da3ae661a133d1347e2", ERROR, "an E1 alarm (LOS, LOF, LOMF, AIS, RAI) was raised on a span";
    AlarmCleared,       "c8ce54f124f04f4e98b6afe9712e5e24", WARN,  "an E1 alarm cleared";
    Crc4Interworking,   "08aa25f6862e4978806c2cf134c89c7b", WARN,  "a span's far end sends no CRC-4 multiframe: the span runs on basic framing (G.706 Annex B), CRC-4 error monitoring is off";
    DchannelUp,         "c4a0315c2983408db54e51a265a0e0bd", WARN,  "a span's D-channel (Q.921 multiple-frame) came up";
    DchannelDown,       "a2961d72ad514593b5129ed5d7786a1d", ERROR, "a span's D-channel went down";
    PeerUp,             "3029b57cb17b43259829e93a47ba5a08", WARN,  "a core SIP peer came up";
    PeerDown,           "d4805e6c908e487bb7c14c5f31845c51", ERROR, "a core SIP peer went down";
    WatchdogWithheld,   "ec7b945fa780448080d3ff6e608a431a", ERROR, "a watchdog ping was withheld because a loop is stuck";
    WatchdogResumed,    "914885a9153c47d3b8b8aed3b1ef36d8", WARN,  "stuck loops progressed again; watchdog pings resumed";
    RestartSent,        "cb31bd9c4a8344cc9391b1f494fd75e3", WARN,  "a Q.931 RESTART was sent";
    RestartReceived,    "8577c72e450947c1b1bef4f3fec23174", WARN,  "a Q.931 RESTART was received";
    ChannelRecovered,   "876daf6e8aed46a79b0512d3a31b1448", WARN,  "the channel audit found and recovered a stuck B-channel";
    ConfigReloaded,     "a0124f83464b466690b51c72bb8adca0", INFO,  "the config was reloaded";
    ConfigRejected,     "4f9e1420408d484fb877f7ae1d0b16cb", ERROR, "a config reload was rejected; the previous config stays in force";
    Draining,           "f18288d8c80748f38574e0843f88ac87", WARN,  "an operator asked tdmgw to drain: new calls are refused";
}

/// Emits a NOC event at its fixed level with `message_id` and `noc_event` fields.
#[macro_export]
macro_rules! noc_event {
    ($ev:expr, $($rest:tt)+) => {{
        let ev: $crate::ops::events::NocEvent = $ev;
        match ev.level() {
            ::tracing::Level::ERROR => ::tracing::error!(message_id = ev.message_id(), noc_event = ev.name(), $($rest)+),
            ::tracing::Level::WARN => ::tracing::warn!(message_id = ev.message_id(), noc_event = ev.name(), $($rest)+),
            _ => ::tracing::info!(message_id = ev.message_id(), noc_event = ev.name(), $($rest)+),
        }
    }};
}

/// Raises the NOC event of a line event of span `span`
/// (`line::e1_alarm::LineEvent` from `RawSpan::poll_event`); returns which.
/// Alarm records carry `alarm` (`LOS` ...) and `colour` (red, blue, yellow).
pub fn line_event(span: u16, event: LineEvent) -> NocEvent {
    match event {
        LineEvent::AlarmRaised(a) => {
            crate::noc_event!(
                NocEvent::AlarmRaised,
                span,
                alarm = a.name(),
                colour = alarm_colour(a),
                "E1 {a} ({}) alarm raised on span {span}",
                alarm_colour(a)
            );
            NocEvent::AlarmRaised
        }
        LineEvent::AlarmCleared(a) => {
            crate::noc_event!(
                NocEvent::AlarmCleared,
                span,
                alarm = a.name(),
                colour = alarm_colour(a),
                "E1 {a} alarm cleared on span {span}"
            );
            NocEvent::AlarmCleared
        }
        LineEvent::Crc4Interworking => {
            crate::noc_event!(
                NocEvent::Crc4Interworking,
                span,
                "span {span}: no CRC-4 multiframe from the far end within 400 ms; running on basic framing (G.706 Annex B)"
            );
            NocEvent::Crc4Interworking
        }
    }
}

/// G.775 colours: LOS/LOF/LOMF red, AIS blue, RAI yellow.
pub fn alarm_colour(a: Alarm) -> &'static str {
    match a {
        Alarm::Los | Alarm::Lof | Alarm::Lomf => "red",
        Alarm::Ais => "blue",
        Alarm::Rai => "yellow",
    }
}

/// Raises the NOC event of a core peer's change of state
/// (`sip::peer::PeerTable::poll_event`), naming the peer by group, address
/// and transport; returns which.
pub fn peer_event(table: &PeerTable, event: PeerEvent) -> NocEvent {
    let (id, up) = match event {
        PeerEvent::PeerUp(id) => (id, true),
        PeerEvent::PeerDown(id) => (id, false),
    };
    let params = table.params(id);
    let peer = params.map_or_else(|| format!("#{}", id.0), |p| p.address.to_string());
    let transport = params.map_or("?", |p| p.transport.name());
    let group = table
        .peers()
        .find(|(i, ..)| *i == id)
        .and_then(|(_, g, ..)| table.group(g))
        .map_or("?", |g| g.name.as_str());
    if up {
        crate::noc_event!(NocEvent::PeerUp, peer = %peer, transport, group, "core peer {peer} ({transport}, group {group}) is up");
        NocEvent::PeerUp
    } else {
        crate::noc_event!(NocEvent::PeerDown, peer = %peer, transport, group, "core peer {peer} ({transport}, group {group}) is down: calls go to the other peers of the group");
        NocEvent::PeerDown
    }
}

/// The channel audit found B-channel `span`/`timeslot` stuck in `was` (e.g.
/// `busy` with no call) and put it back to idle.
pub fn channel_recovered(span: u16, timeslot: u8, was: &str) -> NocEvent {
    crate::noc_event!(
        NocEvent::ChannelRecovered,
        span,
        ts = timeslot,
        was,
        "channel audit: span {span} ts {timeslot} was stuck {was}, returned to idle"
    );
    NocEvent::ChannelRecovered
}

/// The README table: `| MESSAGE_ID | event | priority | meaning |`.
pub fn markdown_table() -> String {
    let mut s = String::from("| MESSAGE_ID | event | priority | meaning |\n|---|---|---|---|\n");
    for e in ALL {
        let prio = match e.level() {
            Level::ERROR => "3 (err)",
            Level::WARN => "4 (warning)",
            _ => "5 (notice)",
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            e.message_id(),
            e.name(),
            prio,
            e.description()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_128_bit_hex() {
        let mut seen = std::collections::HashSet::new();
        for e in ALL {
            let id = e.message_id();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(id), "{id} twice");
        }
    }

    #[test]
    fn line_and_peer_events_map_to_noc_events() {
        use crate::line::e1_alarm::Alarm;
        assert_eq!(
            line_event(1, LineEvent::AlarmRaised(Alarm::Los)),
            NocEvent::AlarmRaised
        );
        assert_eq!(
            line_event(2, LineEvent::AlarmCleared(Alarm::Rai)),
            NocEvent::AlarmCleared
        );
        assert_eq!(
            line_event(1, LineEvent::Crc4Interworking),
            NocEvent::Crc4Interworking
        );
        assert_eq!(alarm_colour(Alarm::Ais), "blue");
        assert_eq!(alarm_colour(Alarm::Lomf), "red");
        let table = crate::ops::status_view::tests_support::peer_table();
        use crate::sip::peer::PeerId;
        assert_eq!(
            peer_event(&table, PeerEvent::PeerDown(PeerId(0))),
            NocEvent::PeerDown
        );
        assert_eq!(
            peer_event(&table, PeerEvent::PeerUp(PeerId(1))),
            NocEvent::PeerUp
        );
        assert_eq!(
            peer_event(&table, PeerEvent::PeerUp(PeerId(9))),
            NocEvent::PeerUp
        );
        assert_eq!(channel_recovered(1, 5, "busy"), NocEvent::ChannelRecovered);
    }

    #[test]
    fn readme_lists_every_event() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for e in ALL {
            assert!(
                readme.contains(e.message_id()),
                "README.md lacks {} ({}); paste ops::events::markdown_table()",
                e.name(),
                e.message_id()
            );
        }
    }
}
