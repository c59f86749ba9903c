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
    /// dahdi: octets per B-channel read/write (DAHDI_SET_BLOCKSIZE): a
    /// multiple of 8 from 16 to 160 (2-20 ms); default 160. Smaller blocks
    /// cut the delay (two blocks each way) for more wakeups.
    pub block_octets: Option<u16>,
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

/// DAHDI_MAX_SPANS and DAHDI_MAX_CHANNELS of dahdi-linux `dahdi/kernel.h`.
const DAHDI_MAX_SPANS: u16 = 128;
const DAHDI_MAX_CHANNELS: u16 = 1024;

/// The DAHDI B-channel block when `block_octets` is not set: 20 ms.
pub const DAHDI_BLOCK_OCTETS_DEFAULT: u16 = 160;

/// `1-15,17-31` for a sorted list of numbers.
fn ranges(v: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
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
        self.base_channel.or_else(|| {
            self.dahdi_span
                .map(|s| s.saturating_sub(1).saturating_mul(31).saturating_add(1))
        })
    }

    /// Octets per DAHDI B-channel block (default 160: 20 ms).
    pub fn dahdi_block_octets(&self) -> u16 {
        self.block_octets.unwrap_or(DAHDI_BLOCK_OCTETS_DEFAULT)
    }

    /// The DAHDI channels a `dahdi` span opens, as `system.conf` would
    /// list them: (first B-channel timeslots, D-channel), e.g.
    /// (`1-15,17-31`, `16`) for span 1 of a card.
    pub fn dahdi_channels(&self) -> Option<(String, u16)> {
        let base = self.dahdi_base_channel()?;
        let chans: Vec<u16> = (1..=31u16)
            .filter(|&t| t != 16)
            .take(usize::from(self.channels))
            .map(|t| base.saturating_add(t - 1))
            .collect();
        Some((ranges(&chans), base.saturating_add(15)))
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
            Driver::Dahdi => {
                let (b, d) = self.dahdi_channels().unwrap_or_default();
                let block = self.dahdi_block_octets();
                format!(
                    "span {} (D-channel {d} by kernel HDLC, B-channels {b} in {block}-octet blocks = {} ms)",
                    self.dahdi_span.unwrap_or(0),
                    block / 8
                )
            }
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
        let dahdi = self
            .spans
            .iter()
            .filter(|s| s.driver == Driver::Dahdi)
            .count();
        if dahdi > 0 && dahdi < self.spans.len() {
            errs.push(src.error(
                "span",
                "a board's spans are all `dahdi` or none: the media thread serves DAHDI \
                 B-channels or raw E1 lines, not both",
            ));
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

impl BoardProfile {
    /// For a DAHDI board, what `check-config` says the system must
    /// provide: the `/etc/dahdi/system.conf` lines of its spans (loaded
    /// with `dahdi_cfg`) and the device; nothing for other boards.
    pub fn dahdi_setup(&self) -> Vec<String> {
        let spans: Vec<&BoardSpan> = self
            .spans
            .iter()
            .filter(|s| s.driver == Driver::Dahdi)
            .collect();
        if spans.is_empty() {
            return Vec::new();
        }
        let mut out = vec![
            "DAHDI: tdmgw opens /dev/dahdi/channel (read-write for the tdmgw user) and expects \
             /etc/dahdi/system.conf, loaded by `dahdi_cfg`, to have:"
                .to_string(),
        ];
        for s in spans {
            let (b, d) = s.dahdi_channels().unwrap_or_default();
            out.push(format!(
                "    span={},{},0,ccs,hdb3{}",
                s.dahdi_span.unwrap_or(0),
                s.clock_priority,
                if s.crc4 { ",crc4" } else { "" }
            ));
            out.push(format!("    bchan={b}"));
            out.push(format!(
                "    hardhdlc={d}    (or dchan={d} on a card without an HDLC controller)"
            ));
        }
        out.push(
            "  media thread: B-channels read and written a block per block (card clock); \
             D-channels by the kernel's HDLC, one task each"
                .to_string(),
        );
        out
    }
}

/// Each driver takes its own keys; a key meant for another driver is a mistake.
fn validate_driver_keys(s: &BoardSpan, p: &str, src: &Source, errs: &mut Vec<ConfigError>) {
    let present: [(&str, bool); 11] = [
        ("local", s.local.is_some()),
        ("remote", s.remote.is_some()),
        ("device", s.device.is_some()),
        ("baud", s.baud.is_some()),
        ("dahdi_span", s.dahdi_span.is_some()),
        ("base_channel", s.base_channel.is_some()),
        ("block_octets", s.block_octets.is_some()),
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
        Driver::Dahdi => (
            &["dahdi_span", "base_channel", "block_octets"],
            &["dahdi_span"],
        ),
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
        && !(1..=DAHDI_MAX_SPANS).contains(&d)
    {
        errs.push(src.error(
            &format!("{p}.dahdi_span"),
            format!("DAHDI spans are numbered 1-{DAHDI_MAX_SPANS}"),
        ));
    }
    if let Some(b) = s.base_channel
        && !(1..=DAHDI_MAX_CHANNELS - 30).contains(&b)
    {
        errs.push(src.error(
            &format!("{p}.base_channel"),
            format!(
                "DAHDI channels are numbered 1-{DAHDI_MAX_CHANNELS}: timeslot 1 of a span is at most {}",
                DAHDI_MAX_CHANNELS - 30
            ),
        ));
    }
    if let Some(n) = s.block_octets
        && (!(16..=160).contains(&n) || !n.is_multiple_of(8))
    {
        errs.push(src.error(
            &format!("{p}.block_octets"),
            "expected a multiple of 8 from 16 to 160 (2-20 ms of A-law)",
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn board(text: &str) -> (BoardProfile, Source) {
        let src = Source::from_text(Path::new("b.toml"), text.to_string()).unwrap();
        (src.deserialize().unwrap(), src)
    }

    fn keys(b: &BoardProfile, src: &Source) -> Vec<(String, String)> {
        b.validate(src)
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect()
    }

    #[test]
    fn dahdi_keys_are_range_checked() {
        let (b, src) = board(
            "name = \"x\"\n[[span]]\nid = 1\ndriver = \"dahdi\"\ndahdi_span = 129\n\
             base_channel = 1000\nblock_octets = 100\n[[span]]\nid = 2\ndriver = \"dahdi\"\n\
             dahdi_span = 2\nblock_octets = 8\n",
        );
        let errs = keys(&b, &src);
        let has = |k: &str, m: &str| errs.iter().any(|(key, msg)| key == k && msg.contains(m));
        assert!(has("span[0].dahdi_span", "1-128"), "{errs:?}");
        assert!(has("span[0].base_channel", "1-1024"), "{errs:?}");
        assert!(has("span[0].block_octets", "multiple of 8"), "{errs:?}");
        assert!(has("span[1].block_octets", "from 16 to 160"), "{errs:?}");
        let (b, src) = board(
            "name = \"x\"\n[[span]]\nid = 1\ndriver = \"dahdi\"\ndahdi_span = 1\nblock_octets = 40\n",
        );
        assert!(keys(&b, &src).is_empty());
        assert_eq!(b.spans[0].dahdi_block_octets(), 40);
        // block_octets belongs to dahdi.
        let (b, src) =
            board("name = \"x\"\n[[span]]\nid = 1\ndriver = \"pair\"\nblock_octets = 40\n");
        assert!(
            keys(&b, &src).iter().any(
                |(k, m)| k == "span[0].block_octets" && m.contains("not used by driver `pair`")
            )
        );
    }

    #[test]
    fn a_board_is_all_dahdi_or_none() {
        let (b, src) = board(
            "name = \"x\"\n[[span]]\nid = 1\ndriver = \"dahdi\"\ndahdi_span = 1\n\
             [[span]]\nid = 2\ndriver = \"pair\"\n",
        );
        assert!(
            keys(&b, &src)
                .iter()
                .any(|(k, m)| k == "span" && m.contains("all `dahdi` or none")),
            "{:?}",
            keys(&b, &src)
        );
    }

    #[test]
    fn the_shipped_dahdi_board_says_what_system_conf_needs() {
        let (b, src) = board(include_str!("../../board/dahdi-4e1.toml"));
        assert!(keys(&b, &src).is_empty());
        let lines = b.dahdi_setup();
        let has = |l: &str| lines.iter().any(|x| x.trim_start().starts_with(l));
        assert!(has("span=1,1,0,ccs,hdb3,crc4"), "{lines:#?}");
        assert!(has("bchan=1-15,17-31") && has("hardhdlc=16"), "{lines:#?}");
        // Span 2 of the card: channels 32-62, D-channel 47.
        assert!(has("bchan=32-46,48-62") && has("hardhdlc=47"), "{lines:#?}");
        // Span 4 never gives the clock.
        assert!(has("span=4,0,0,ccs,hdb3,crc4"), "{lines:#?}");
        assert!(b.spans[1].describe().contains("D-channel 47"));
        let (b, _) = board("name = \"x\"\n[[span]]\nid = 1\ndriver = \"pair\"\n");
        assert!(b.dahdi_setup().is_empty());
        // Fewer channels: the first B-channel timeslots only.
        let (b, _) = board(
            "name = \"x\"\n[[span]]\nid = 1\ndriver = \"dahdi\"\ndahdi_span = 1\nchannels = 20\ncrc4 = false\n",
        );
        let lines = b.dahdi_setup();
        assert!(
            lines.iter().any(|l| l.trim() == "bchan=1-15,17-21"),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.trim() == "span=1,0,0,ccs,hdb3"),
            "{lines:#?}"
        );
    }
}
