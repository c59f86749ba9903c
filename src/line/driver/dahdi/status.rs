//! What a DAHDI span reports, as plain values the rest of tdmgw shows:
//! [`LineAlarms`] (from `dahdi_spaninfo.alarms`), [`LineCounters`] (the
//! SPANSTAT error counters) and [`DahdiEvent`] (GETEVENT codes).

use super::sys::{self, DahdiSpanInfo};
use std::fmt;

/// E1 line alarms as far as DAHDI reports them.
///
/// DAHDI gives the summary colours (RED, YELLOW, BLUE) and, on cards that
/// fill the verbose upper byte, LOS / LFA / LMFA. The mapping:
///
/// | flag | DAHDI bit | meaning (G.775 / G.706) |
/// |---|---|---|
/// | `LOS` | `DAHDI_ALARM_LOS` | loss of signal |
/// | `LOF` | `DAHDI_ALARM_LFA` | loss of frame alignment |
/// | `LOMF` | `DAHDI_ALARM_LMFA` | loss of CRC-4 multiframe alignment |
/// | `RED` | `DAHDI_ALARM_RED`, or any of LOS/LOF/LOMF | red alarm (local) |
/// | `AIS` | `DAHDI_ALARM_BLUE` | all-ones received (blue) |
/// | `RAI` | `DAHDI_ALARM_YELLOW` | remote alarm indication (yellow, A bit) |
/// | `LOOPBACK` | `DAHDI_ALARM_LOOPBACK` | span in a maintenance loop |
/// | `RECOVERING` | `DAHDI_ALARM_RECOVER` | alarm clearing, timer running |
/// | `NOT_OPEN` | `DAHDI_ALARM_NOTOPEN` | span not configured/started |
///
/// A card that reports only RED shows `RED` without a cause.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LineAlarms(u16);

impl LineAlarms {
    pub const NONE: LineAlarms = LineAlarms(0);
    pub const LOS: LineAlarms = LineAlarms(1 << 0);
    pub const LOF: LineAlarms = LineAlarms(1 << 1);
    pub const LOMF: LineAlarms = LineAlarms(1 << 2);
    pub const RED: LineAlarms = LineAlarms(1 << 3);
    pub const AIS: LineAlarms = LineAlarms(1 << 4);
    pub const RAI: LineAlarms = LineAlarms(1 << 5);
    pub const LOOPBACK: LineAlarms = LineAlarms(1 << 6);
    pub const RECOVERING: LineAlarms = LineAlarms(1 << 7);
    pub const NOT_OPEN: LineAlarms = LineAlarms(1 << 8);

    const NAMES: [(LineAlarms, &'static str); 9] = [
        (Self::LOS, "LOS"),
        (Self::LOF, "LOF"),
        (Self::LOMF, "LOMF"),
        (Self::RED, "RED"),
        (Self::AIS, "AIS"),
        (Self::RAI, "RAI"),
        (Self::LOOPBACK, "LOOPBACK"),
        (Self::RECOVERING, "RECOVERING"),
        (Self::NOT_OPEN, "NOT_OPEN"),
    ];

    /// Map `dahdi_spaninfo.alarms` (see the table in the type doc).
    pub fn from_dahdi(alarms: i32) -> LineAlarms {
        let map = [
            (sys::DAHDI_ALARM_LOS, Self::LOS),
            (sys::DAHDI_ALARM_LFA, Self::LOF),
            (sys::DAHDI_ALARM_LMFA, Self::LOMF),
            (sys::DAHDI_ALARM_RED, Self::RED),
            (sys::DAHDI_ALARM_BLUE, Self::AIS),
            (sys::DAHDI_ALARM_YELLOW, Self::RAI),
            (sys::DAHDI_ALARM_LOOPBACK, Self::LOOPBACK),
            (sys::DAHDI_ALARM_RECOVER, Self::RECOVERING),
            (sys::DAHDI_ALARM_NOTOPEN, Self::NOT_OPEN),
        ];
        let mut out = Self::NONE;
        for (bit, flag) in map {
            if alarms & bit != 0 {
                out = out | flag;
            }
        }
        // Red is LOS | LOF | LOMF (as the software framer defines it).
        if out.intersects(Self::LOS | Self::LOF | Self::LOMF) {
            out = out | Self::RED;
        }
        out
    }

    pub const fn bits(self) -> u16 {
        self.0
    }
    pub const fn contains(self, other: LineAlarms) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn intersects(self, other: LineAlarms) -> bool {
        self.0 & other.0 != 0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Red alarm: we cannot use the line (LOS, LOF, LOMF or card RED).
    pub const fn is_red(self) -> bool {
        self.intersects(Self::RED)
    }
    /// Blue alarm: AIS received.
    pub const fn is_blue(self) -> bool {
        self.intersects(Self::AIS)
    }
    /// Yellow alarm: the far end reports it cannot see us (RAI).
    pub const fn is_yellow(self) -> bool {
        self.intersects(Self::RAI)
    }
    /// Names of the set flags, in table order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for LineAlarms {
    type Output = LineAlarms;
    fn bitor(self, rhs: LineAlarms) -> LineAlarms {
        LineAlarms(self.0 | rhs.0)
    }
}

impl fmt::Display for LineAlarms {
    /// `OK`, or the flags joined by `|` (`RED|LOS`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("OK");
        }
        for (i, n) in self.names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl fmt::Debug for LineAlarms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LineAlarms({self})")
    }
}

/// The SPANSTAT counters of a span, as the card keeps them (they count
/// since the span was configured or the counters were reset; DAHDI gives
/// no intervals). Negative C ints are clamped to 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounters {
    /// Bipolar (HDB3 code) violations: `bpvcount`.
    pub bipolar_violations: u32,
    /// CRC-4 errors: `crc4count`.
    pub crc4_errors: u32,
    /// Far-end block errors (E-bits received at 0): `ebitcount`.
    pub ebit_errors: u32,
    /// Errored frame alignment signals: `fascount`.
    pub fas_errors: u32,
    /// Framing errors: `fecount`.
    pub framing_errors: u32,
    /// Line code violations: `cvcount`.
    pub code_violations: u32,
    /// Bit errors (PRBS test): `becount`.
    pub bit_errors: u32,
    /// Errored seconds as the card counts them: `errsec`.
    pub errored_seconds: u32,
    /// Interrupts the card driver missed (a slip risk): `irqmisses`.
    pub irq_misses: u32,
}

/// Alarms, counters and identity of a span from one DAHDI_SPANSTAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanStatus {
    pub span: u16,
    pub alarms: LineAlarms,
    /// The raw `alarms` word, unknown bits kept.
    pub alarms_raw: i32,
    pub counters: LineCounters,
    /// Span number of the current timing source, 0 when free-running.
    pub sync_source: i32,
    /// Receive level as the card reports it (driver-specific units).
    pub rx_level: i32,
}

impl SpanStatus {
    /// Map one `dahdi_spaninfo`.
    pub fn from_spaninfo(info: &DahdiSpanInfo) -> SpanStatus {
        let clamp = |v: i32| v.max(0) as u32;
        // Copy out of the packed struct before use (no references into it).
        let (spanno, alarms) = (info.spanno, info.alarms);
        SpanStatus {
            span: u16::try_from(spanno).unwrap_or(0),
            alarms: LineAlarms::from_dahdi(alarms),
            alarms_raw: alarms,
            counters: LineCounters {
                bipolar_violations: clamp(info.bpvcount),
                crc4_errors: clamp(info.crc4count),
                ebit_errors: clamp(info.ebitcount),
                fas_errors: clamp(info.fascount),
                framing_errors: info.fecount,
                code_violations: info.cvcount,
                bit_errors: info.becount,
                errored_seconds: info.errsec,
                irq_misses: clamp(info.irqmisses),
            },
            sync_source: info.syncsrc,
            rx_level: info.rxlevel,
        }
    }
}

macro_rules! dahdi_events {
    ($($(#[$doc:meta])* $name:ident = $val:literal, $text:literal;)*) => {
        /// A DAHDI channel event code (DAHDI_GETEVENT), open: unknown codes
        /// are kept. DTMF and pulse-digit events carry the digit in the low
        /// bits, OR'd with a flag.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct DahdiEvent(pub i32);

        impl DahdiEvent {
            $($(#[$doc])* pub const $name: DahdiEvent = DahdiEvent($val);)*

            /// The `DAHDI_EVENT_*` name without the prefix, if known.
            pub fn name(self) -> Option<&'static str> {
                match self.0 & Self::DIGIT_FLAGS {
                    0 => match self.0 {
                        $($val => Some($text),)*
                        _ => None,
                    },
                    f if f == 1 << 16 => Some("PULSEDIGIT"),
                    f if f == 1 << 17 => Some("DTMFDOWN"),
                    f if f == 1 << 18 => Some("DTMFUP"),
                    _ => None,
                }
            }
        }
    };
}

dahdi_events! {
    /// No event pending.
    NONE = 0, "NONE";
    ONHOOK = 1, "ONHOOK";
    RINGOFFHOOK = 2, "RINGOFFHOOK";
    WINKFLASH = 3, "WINKFLASH";
    /// The span went into alarm: read SPANSTAT.
    ALARM = 4, "ALARM";
    /// The span left alarm.
    NOALARM = 5, "NOALARM";
    /// HDLC abort (seven or more ones) received.
    ABORT = 6, "ABORT";
    /// HDLC receive overrun: a frame was lost.
    OVERRUN = 7, "OVERRUN";
    /// HDLC frame with a bad FCS was dropped.
    BADFCS = 8, "BADFCS";
    DIALCOMPLETE = 9, "DIALCOMPLETE";
    RINGERON = 10, "RINGERON";
    RINGEROFF = 11, "RINGEROFF";
    HOOKCOMPLETE = 12, "HOOKCOMPLETE";
    BITSCHANGED = 13, "BITSCHANGED";
    PULSE_START = 14, "PULSE_START";
    TIMER_EXPIRED = 15, "TIMER_EXPIRED";
    TIMER_PING = 16, "TIMER_PING";
    POLARITY = 17, "POLARITY";
    RINGBEGIN = 18, "RINGBEGIN";
    EC_DISABLED = 19, "EC_DISABLED";
    /// The channel was unregistered (card removed): close it.
    REMOVED = 20, "REMOVED";
    NEONMWI_ACTIVE = 21, "NEONMWI_ACTIVE";
    NEONMWI_INACTIVE = 22, "NEONMWI_INACTIVE";
    TX_CED_DETECTED = 23, "TX_CED_DETECTED";
    RX_CED_DETECTED = 24, "RX_CED_DETECTED";
    TX_CNG_DETECTED = 25, "TX_CNG_DETECTED";
    RX_CNG_DETECTED = 26, "RX_CNG_DETECTED";
    EC_NLP_DISABLED = 27, "EC_NLP_DISABLED";
    EC_NLP_ENABLED = 28, "EC_NLP_ENABLED";
}

impl DahdiEvent {
    /// PULSEDIGIT | DTMFDOWN | DTMFUP flag bits.
    const DIGIT_FLAGS: i32 = (1 << 16) | (1 << 17) | (1 << 18);
}

impl fmt::Debug for DahdiEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "DAHDI_EVENT_{n}({})", self.0),
            None => write!(f, "DAHDI_EVENT_UNKNOWN({})", self.0),
        }
    }
}

impl fmt::Display for DahdiEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_from_dahdi_bits() {
        assert_eq!(LineAlarms::from_dahdi(0), LineAlarms::NONE);
        assert_eq!(LineAlarms::from_dahdi(0).to_string(), "OK");
        let a = LineAlarms::from_dahdi(sys::DAHDI_ALARM_RED | sys::DAHDI_ALARM_LOS);
        assert!(a.is_red() && a.contains(LineAlarms::LOS) && !a.is_blue());
        assert_eq!(a.to_string(), "LOS|RED");
        // Verbose LFA alone still means red.
        assert!(LineAlarms::from_dahdi(sys::DAHDI_ALARM_LFA).is_red());
        assert!(LineAlarms::from_dahdi(sys::DAHDI_ALARM_LMFA).contains(LineAlarms::LOMF));
        let b = LineAlarms::from_dahdi(sys::DAHDI_ALARM_BLUE);
        assert!(b.is_blue() && !b.is_red() && b.contains(LineAlarms::AIS));
        let y = LineAlarms::from_dahdi(sys::DAHDI_ALARM_YELLOW);
        assert!(y.is_yellow() && y.contains(LineAlarms::RAI));
        let m = LineAlarms::from_dahdi(
            sys::DAHDI_ALARM_LOOPBACK | sys::DAHDI_ALARM_RECOVER | sys::DAHDI_ALARM_NOTOPEN,
        );
        assert_eq!(m.to_string(), "LOOPBACK|RECOVERING|NOT_OPEN");
        // Unknown bits are dropped from the flags (kept in alarms_raw).
        assert_eq!(LineAlarms::from_dahdi(1 << 20), LineAlarms::NONE);
    }

    #[test]
    fn status_from_spaninfo() {
        let info = DahdiSpanInfo {
            spanno: 2,
            alarms: sys::DAHDI_ALARM_YELLOW,
            bpvcount: 7,
            crc4count: 3,
            ebitcount: 2,
            fascount: 1,
            fecount: 5,
            errsec: 9,
            irqmisses: -1,
            syncsrc: 1,
            ..Default::default()
        };
        let s = SpanStatus::from_spaninfo(&info);
        assert_eq!(s.span, 2);
        assert!(s.alarms.is_yellow());
        assert_eq!(s.counters.bipolar_violations, 7);
        assert_eq!(s.counters.crc4_errors, 3);
        assert_eq!(s.counters.ebit_errors, 2);
        assert_eq!(s.counters.fas_errors, 1);
        assert_eq!(s.counters.framing_errors, 5);
        assert_eq!(s.counters.errored_seconds, 9);
        assert_eq!(s.counters.irq_misses, 0);
        assert_eq!(s.sync_source, 1);
    }

    #[test]
    fn event_names() {
        assert_eq!(format!("{:?}", DahdiEvent::BADFCS), "DAHDI_EVENT_BADFCS(8)");
        assert_eq!(DahdiEvent(4).name(), Some("ALARM"));
        assert_eq!(DahdiEvent(99).name(), None);
        assert_eq!(format!("{}", DahdiEvent(99)), "DAHDI_EVENT_UNKNOWN(99)");
        assert_eq!(DahdiEvent((1 << 17) | b'5' as i32).name(), Some("DTMFDOWN"));
    }
}
