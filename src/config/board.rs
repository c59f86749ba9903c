//! The board profile: the hardware a gateway runs on.
//!
//! One file per kind of board (`board/*.toml`). It says which spans exist,
//! which driver carries each, how the media thread is placed and whether a
//! hardware watchdog is fitted. Nothing site-specific lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;
use crate::line::driver::timing::Timing;

/// The embedded default profile: one span on the in-process `pair` line.
pub const BUILTIN_SIM: &str = include_str!("../../board/sim.toml");

/// `board = "builtin:sim"` in a site config selects [`BUILTIN_SIM`].
pub const BUILTIN_SIM_NAME: &str = "builtin:sim";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    /// A short name for logs and `check-config`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub media: MediaThread,
    pub watchdog: Option<HardwareWatchdog>,
    #[serde(rename = "span")]
    pub spans: Vec<BoardSpan>,
}

/// Placement of the media thread (DESIGN.md §1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaThread {
    /// CPU to pin the media thread to; none = let the scheduler choose.
    pub cpu: Option<usize>,
    /// SCHED_FIFO priority 1-99; 0 = ordinary scheduling.
    #[serde(default)]
    pub realtime_priority: u8,
    /// mlockall(MCL_CURRENT | MCL_FUTURE) at start-up.
    #[serde(default)]
    pub lock_memory: bool,
}

/// A hardware watchdog device, fed by the same progress rule as systemd's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareWatchdog {
    pub device: PathBuf,
    pub timeout_s: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Dahdi,
    Satop,
    Serial,
    Pair,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Dahdi => "dahdi",
            Driver::Satop => "satop",
            Driver::Serial => "serial",
            Driver::Pair => "pair",
        }
    }
}

/// One E1 span. Driver settings sit flat in the span table; keys that the
/// chosen driver does not use are rejected by validation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSpan {
    pub id: u8,
    pub driver: Driver,
    /// B-channels in use (TS1-15 and TS17-31 of an E1 carry up to 30).
    #[serde(default = "default_channels")]
    pub channels: u8,
    /// CRC-4 multiframe on TS0 (G.704 §2.3.3).
    #[serde(default = "default_true")]
    pub crc4: bool,
    /// Clock source priority: 1 is the first choice; 0 = never take clock from this span.
    #[serde(default)]
    pub clock_priority: u8,
    /// satop: local UDP address to bind.
    pub local: Option<SocketAddr>,
    /// satop: the far end's UDP address.
    pub remote: Option<SocketAddr>,
    /// serial: the tty carrying the unframed E1 octet stream.
    pub device: Option<PathBuf>,
    /// serial: line rate of the tty.
    pub baud: Option<u32>,
    /// dahdi: the DAHDI span number.
    pub dahdi_span: Option<u16>,
    /// dahdi: the DAHDI channel number of timeslot 1 (default (dahdi_span-1)*31+1).
    pub base_channel: Option<u16>,
    /// satop: payload octets per packet (RFC 4553 §5.1), a multiple of 32.
    pub payload_octets: Option<u16>,
    /// satop: prepend an RTP header (RFC 4553 §4.3).
    pub rtp_header: Option<bool>,
    /// satop: playout buffer depth.
    pub playout_ms: Option<u16>,
    /// satop, serial: who clocks what we send. `loop` (the default) follows
    /// the far end's clock; `internal` runs on our own timer, for the end
    /// that is the clock master (two tdmgw facing each other: one of them).
    pub timing: Option<Timing>,
}

fn default_channels() -> u8 {
    30
}

fn default_true() -> bool {
    true
}

impl BoardSpan {
    /// The DAHDI channel number of timeslot 1.
    pub fn dahdi_base_channel(&self) -> Option<u16> {
        self.base_channel
            .or_else(|| self.dahdi_span.map(|s| (s - 1) * 31 + 1))
    }

    fn timing_name(&self) -> &'static str {
        match self.timing.unwrap_or_default() {
            Timing::Loop => "loop",
            Timing::Internal => "internal",
        }
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        let where_ = match self.driver {
            Driver::Dahdi => format!(
                "DAHDI span {} (channels {}..)",
                self.dahdi_span.unwrap_or(0),
                self.dahdi_base_channel().unwrap_or(0)
            ),
            Driver::Satop => format!(
                "SAToP {} -> {} ({} timing)",
                self.local.map(|a| a.to_string()).unwrap_or_default(),
                self.remote.map(|a| a.to_string()).unwrap_or_default(),
                self.timing_name()
            ),
            Driver::Serial => format!(
                "{} at {} baud",
                self.device
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                self.baud.unwrap_or(0)
            ),
            Driver::Pair => "in-process virtual E1 line".to_string(),
        };
        format!(
            "span {}: {} {}, {} B-channels, CRC-4 {}, clock priority {}",
            self.id,
            self.driver.name(),
            where_,
            self.channels,
            if self.crc4 { "on" } else { "off" },
            self.clock_priority
        )
    }
}

impl BoardProfile {
    /// Range and consistency checks; every problem is reported, not just the first.
    pub fn validate(&self, src: &Source) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.name.trim().is_empty() {
            errs.push(src.error("name", "must not be empty"));
        }
        if self.spans.is_empty() {
            errs.push(src.error("span", "a board needs at least one [[span]]"));
        }
        if let Some(cpu) = self.media.cpu {
            let n = std::thread::available_parallelism().map_or(1024, |n| n.get().max(1024));
            if cpu >= n {
                errs.push(src.error("media.cpu", format!("CPU {cpu} is out of range")));
            }
        }
        if self.media.realtime_priority > 99 {
            errs.push(src.error(
                "media.realtime_priority",
                "expected 0 (none) or a SCHED_FIFO priority 1-99",
            ));
        }
        if let Some(w) = &self.watchdog
            && !(1..=3600).contains(&w.timeout_s)
        {
            errs.push(src.error("watchdog.timeout_s", "expected 1-3600 seconds"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.spans.iter().enumerate() {
            let p = format!("span[{i}]");
            if s.id == 0 {
                errs.push(src.error(&format!("{p}.id"), "span ids start at 1"));
            }
            if !seen.insert(s.id) {
                errs.push(src.error(
                    &format!("{p}.id"),
                    format!("span {} is defined twice", s.id),
                ));
            }
            if !(1..=30).contains(&s.channels) {
                errs.push(src.error(&format!("{p}.channels"), "an E1 carries 1-30 B-channels"));
            }
            validate_driver_keys(s, &p, src, &mut errs);
        }
        let mut clocks: Vec<u8> = self
            .spans
            .iter()
            .map(|s| s.clock_priority)
            .filter(|&c| c > 0)
            .collect();
        clocks.sort_unstable();
        if clocks.windows(2).any(|w| w[0] == w[1]) {
            errs.push(src.error(
                "span",
                "two spans have the same clock_priority; each priority above 0 must be unique",
            ));
        }
        errs
    }
}

/// Each driver takes its own keys; a key meant for another driver is a mistake.
fn validate_driver_keys(s: &BoardSpan, p: &str, src: &Source, errs: &mut Vec<ConfigError>) {
    let present: [(&str, bool); 10] = [
        ("local", s.local.is_some()),
        ("remote", s.remote.is_some()),
        ("device", s.device.is_some()),
        ("baud", s.baud.is_some()),
        ("dahdi_span", s.dahdi_span.is_some()),
        ("base_channel", s.base_channel.is_some()),
        ("payload_octets", s.payload_octets.is_some()),
        ("rtp_header", s.rtp_header.is_some()),
        ("playout_ms", s.playout_ms.is_some()),
        ("timing", s.timing.is_some()),
    ];
    let (allowed, required): (&[&str], &[&str]) = match s.driver {
        Driver::Pair => (&[], &[]),
        Driver::Satop => (
            &[
                "local",
                "remote",
                "payload_octets",
                "rtp_header",
                "playout_ms",
                "timing",
            ],
            &["local", "remote"],
        ),
        Driver::Serial => (&["device", "baud", "timing"], &["device", "baud"]),
        Driver::Dahdi => (&["dahdi_span", "base_channel"], &["dahdi_span"]),
    };
    for (key, is_set) in present {
        if is_set && !allowed.contains(&key) {
            errs.push(src.error(
                &format!("{p}.{key}"),
                format!("not used by driver `{}`", s.driver.name()),
            ));
        }
    }
    for key in required {
        if !present.iter().any(|(k, set)| k == key && *set) {
            errs.push(src.error(
                &format!("{p}.{key}"),
                format!("driver `{}` needs `{key}`", s.driver.name()),
            ));
        }
    }
    if let Some(n) = s.payload_octets
        && (n == 0 || !n.is_multiple_of(32) || n > 1024)
    {
        errs.push(src.error(
            &format!("{p}.payload_octets"),
            "expected a whole number of E1 frames: a multiple of 32, at most 1024",
        ));
    }
    if let Some(ms) = s.playout_ms
        && !(1..=64).contains(&ms)
    {
        errs.push(src.error(&format!("{p}.playout_ms"), "expected 1-64 ms"));
    }
    if let Some(b) = s.baud
        && !(9_600..=16_000_000).contains(&b)
    {
        errs.push(src.error(&format!("{p}.baud"), "expected 9600-16000000"));
    }
    if let Some(d) = s.dahdi_span
        && d == 0
    {
        errs.push(src.error(&format!("{p}.dahdi_span"), "DAHDI spans start at 1"));
    }
    if let Some(b) = s.base_channel
        && b == 0
    {
        errs.push(src.error(&format!("{p}.base_channel"), "DAHDI channels start at 1"));
    }
    for key in ["local", "remote"] {
        let addr = if key == "local" { s.local } else { s.remote };
        if let Some(a) = addr
            && key == "remote"
            && a.port() == 0
        {
            errs.push(src.error(&format!("{p}.{key}"), "the far end needs a port"));
        }
    }
}
