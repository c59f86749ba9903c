//! The media thread's parameters from a validated config (DESIGN.md §3:
//! `config` turns files into the cores' plain parameters).
//!
//! [`media_plan`] turns the board profile's `[[span]]` entries (drivers
//! `pair`, `satop`, `serial`) into one [`LineSpanParams`] each, in board
//! order, the engine's [`EngineParams`] (the same spans, their first
//! `channels` B-channel timeslots, RTP on the site's `[media]` address and
//! port base) and the thread placement from the board's `[media]`.
//! `pair` spans also yield the line's far end for the simulated exchange.

use std::fmt;
use std::io;

use super::{BoardProfile, Driver, SiteConfig};
use crate::line::driver::satop::SatopParams;
use crate::line::driver::serial::SerialParams;
use crate::line::span::SpanConfig;
use crate::media::engine::{EngineParams, SpanParams, ThreadParams};
use crate::media::lines::{
    LineDriverParams, LinePortParams, LineSpanParams, PairFarEnd, PairParams, pair_line,
};

/// What the daemon needs to start one media thread over raw spans.
pub struct MediaPlan {
    pub engine: EngineParams,
    pub lines: LinePortParams,
    pub thread: ThreadParams,
    /// The far ends of the `pair` spans, by span id, for the simulated
    /// exchange (each goes into its own `LinePort` as
    /// `LineDriverParams::PairFar`).
    pub pair_far_ends: Vec<(u8, PairFarEnd)>,
}

/// Why the plan cannot be made.
#[derive(Debug)]
pub enum MediaPlanError {
    /// DAHDI spans are framed by the card and served per channel, not by
    /// the raw line port.
    DahdiSpan(u8),
    /// A key validation should have required is missing.
    Missing { span: u8, key: &'static str },
    /// An eventfd for a pair line could not be made.
    Io(io::Error),
}

impl fmt::Display for MediaPlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaPlanError::DahdiSpan(s) => write!(
                f,
                "span {s}: dahdi spans are not carried by the raw-E1 media thread"
            ),
            MediaPlanError::Missing { span, key } => write!(f, "span {span}: `{key}` is missing"),
            MediaPlanError::Io(e) => write!(f, "media plan: {e}"),
        }
    }
}

impl std::error::Error for MediaPlanError {}

/// The E1 B-channel timeslots in order (TS1-15, TS17-31).
fn b_timeslots(channels: u8) -> Vec<u8> {
    (1..=31u8)
        .filter(|&t| t != 16)
        .take(usize::from(channels))
        .collect()
}

/// See the module doc. `seed` seeds the engine's channels (SSRCs etc.).
pub fn media_plan(
    site: &SiteConfig,
    board: &BoardProfile,
    seed: u64,
) -> Result<MediaPlan, MediaPlanError> {
    let mut engine_spans = Vec::new();
    let mut lines = Vec::new();
    let mut far_ends = Vec::new();
    for b in &board.spans {
        let missing = |key| MediaPlanError::Missing { span: b.id, key };
        let driver = match b.driver {
            Driver::Dahdi => return Err(MediaPlanError::DahdiSpan(b.id)),
            Driver::Pair => {
                let (near, far) = pair_line(PairParams::default()).map_err(MediaPlanError::Io)?;
                far_ends.push((b.id, far));
                LineDriverParams::Pair(near)
            }
            Driver::Satop => {
                let local = b.local.ok_or_else(|| missing("local"))?;
                let remote = b.remote.ok_or_else(|| missing("remote"))?;
                let mut p = SatopParams::new(local, remote);
                if let Some(n) = b.payload_octets {
                    p.payload_octets = usize::from(n);
                }
                if let Some(r) = b.rtp_header {
                    p.rtp_header = r;
                }
                if let Some(ms) = b.playout_ms {
                    p.playout_ms = ms;
                }
                if let Some(t) = b.timing {
                    p.timing = t;
                }
                LineDriverParams::Satop(p)
            }
            Driver::Serial => {
                let device = b.device.clone().ok_or_else(|| missing("device"))?;
                let baud = b.baud.ok_or_else(|| missing("baud"))?;
                let mut p = SerialParams::new(device, baud);
                if let Some(t) = b.timing {
                    p.timing = t;
                }
                LineDriverParams::Serial(p)
            }
        };
        let span = SpanConfig {
            span_id: u16::from(b.id),
            crc4: b.crc4,
            ..SpanConfig::default()
        };
        lines.push(LineSpanParams::new(span, driver));
        engine_spans.push(SpanParams {
            number: u16::from(b.id),
            timeslots: b_timeslots(b.channels),
        });
    }
    let engine = EngineParams::new(
        engine_spans,
        site.media.rtp_address,
        site.media.rtp_port_base,
        seed,
    );
    let m = &board.media;
    let thread = ThreadParams {
        name: "tdmgw-media".to_string(),
        cpu: m.cpu,
        sched_fifo_priority: (m.realtime_priority > 0).then_some(i32::from(m.realtime_priority)),
        mlockall: m.lock_memory,
    };
    Ok(MediaPlan {
        engine,
        lines: LinePortParams::new(lines),
        thread,
        pair_far_ends: far_ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};
    use crate::line::driver::timing::Timing;
    use std::path::Path;

    #[test]
    fn the_demo_board_is_one_pair_span_of_thirty_channels() {
        let c = Config::demo().unwrap();
        let plan = media_plan(&c.site, &c.board, 1).unwrap();
        assert_eq!(plan.engine.spans.len(), 1);
        assert_eq!(plan.engine.spans[0].number, 1);
        assert_eq!(plan.engine.spans[0].timeslots.len(), 30);
        assert!(!plan.engine.spans[0].timeslots.contains(&16));
        assert_eq!(plan.engine.rtp_port_base, c.site.media.rtp_port_base);
        assert_eq!(plan.lines.spans.len(), 1);
        assert!(matches!(
            plan.lines.spans[0].driver,
            LineDriverParams::Pair(_)
        ));
        assert_eq!(plan.pair_far_ends.len(), 1);
        assert_eq!(plan.pair_far_ends[0].0, 1);
        assert_eq!(plan.thread.sched_fifo_priority, None);
    }

    #[test]
    fn satop_and_serial_keys_carry_over_and_dahdi_is_refused() {
        let text = r#"
name = "t"
[media]
realtime_priority = 10
lock_memory = true
[[span]]
id = 2
driver = "satop"
channels = 4
crc4 = false
local = "127.0.0.1:5000"
remote = "127.0.0.1:5001"
payload_octets = 128
rtp_header = true
playout_ms = 6
timing = "internal"
[[span]]
id = 3
driver = "serial"
device = "/dev/ttyS4"
baud = 2048000
"#;
        let src = Source::from_text(Path::new("b.toml"), text.to_string()).unwrap();
        let board: BoardProfile = src.deserialize().unwrap();
        let site = Config::demo().unwrap().site;
        let plan = media_plan(&site, &board, 1).unwrap();
        assert_eq!(plan.engine.spans[0].timeslots, [1, 2, 3, 4]);
        assert_eq!(plan.engine.spans[1].number, 3);
        assert_eq!(plan.thread.sched_fifo_priority, Some(10));
        assert!(plan.thread.mlockall);
        let s = &plan.lines.spans[0];
        assert!(!s.span.crc4);
        assert_eq!(s.span.span_id, 2);
        match &s.driver {
            LineDriverParams::Satop(p) => {
                assert_eq!(p.payload_octets, 128);
                assert!(p.rtp_header);
                assert_eq!(p.playout_ms, 6);
                assert_eq!(p.remote.port(), 5001);
                assert_eq!(p.timing, Timing::Internal);
            }
            d => panic!("{d:?}"),
        }
        match &plan.lines.spans[1].driver {
            LineDriverParams::Serial(p) => {
                assert_eq!(p.baud, 2_048_000);
                assert_eq!(p.timing, Timing::Loop);
            }
            d => panic!("{d:?}"),
        }
        let dahdi = text.replace("driver = \"serial\"", "driver = \"dahdi\"");
        let src = Source::from_text(Path::new("b.toml"), dahdi).unwrap();
        let board: BoardProfile = src.deserialize().unwrap();
        assert!(matches!(
            media_plan(&site, &board, 1),
            Err(MediaPlanError::DahdiSpan(3))
        ));
    }
}
