//! The simulated exchange's E1 side: a [`RawSpan`] and one
//! [`AudioChannel`] per B-channel, run one frame at a time behind a raw
//! driver's `exchange(rx, tx)` callback (satop, serial, the pair ports of
//! [`super::exchange_pair`]). Everything is allocated in
//! [`ExchangeLine::new`]; [`ExchangeLine::exchange`] allocates nothing,
//! takes no lock and never blocks.
//!
//! It meets the control side ([`super::exchange::ExchangeControl`]) only
//! through the SPSC rings of [`ControlRings`]: D-channel frames both ways,
//! [`LineCommand`]s in, [`LineReport`]s out. A full ring drops and counts
//! ([`LineSideCounters`]); the line never waits.

use crate::line::e1::FRAME_OCTETS;
use crate::line::hdlc::MAX_FRAME_OCTETS;
use crate::line::span::{DCHANNEL_TS, LineEvent, RawSpan, SpanConfig, SpanCounters};

use super::exchange_audio::{AudioChannel, AudioMode, AudioStats, Digits};
use crate::media::ring::{Consumer, Producer, ring as spsc};

/// One D-channel frame (address..information, no FCS) in a ring slot.
#[derive(Clone, Copy)]
pub struct DFrame {
    len: u16,
    buf: [u8; MAX_FRAME_OCTETS],
}

impl DFrame {
    /// `None` if `frame` is longer than a slot.
    pub fn new(frame: &[u8]) -> Option<DFrame> {
        let mut buf = [0; MAX_FRAME_OCTETS];
        buf.get_mut(..frame.len())?.copy_from_slice(frame);
        Some(DFrame {
            len: frame.len() as u16,
            buf,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Control side -> line side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCommand {
    /// The call `tag` on `ts` is connected: start its audio.
    Start {
        ts: u8,
        tag: u32,
        mode: AudioMode,
        digits: Digits,
        dtmf_delay_frames: u32,
    },
    /// The call on `ts` is over: stop, and report its [`AudioStats`].
    Stop { ts: u8 },
}

/// Line side -> control side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineReport {
    Audio {
        ts: u8,
        tag: u32,
        stats: AudioStats,
    },
    Dtmf {
        ts: u8,
        tag: u32,
        digit: u8,
    },
    Line(LineEvent),
    /// The line is free of defects (LOS, AIS, LOF, LOMF, RAI) both ways
    /// (`true`), or no longer is; sent on each change.
    LineUp(bool),
}

/// Drops on full rings, counted on the line side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineSideCounters {
    pub dframes_dropped: u64,
    pub reports_dropped: u64,
    pub bad_commands: u64,
}

/// The control side's ends of the rings.
pub struct ControlRings {
    pub dframes_in: Consumer<DFrame>,
    pub dframes_out: Producer<DFrame>,
    pub commands: Producer<LineCommand>,
    pub reports: Consumer<LineReport>,
}

/// Ring sizes: D-channel frames each way, commands, reports.
const DFRAME_SLOTS: usize = 64;
const COMMAND_SLOTS: usize = 64;
const REPORT_SLOTS: usize = 256;

/// See the module doc.
pub struct ExchangeLine {
    span: RawSpan,
    channels: Vec<AudioChannel>,
    d_rx: Producer<DFrame>,
    d_tx: Consumer<DFrame>,
    pending_tx: Option<DFrame>,
    commands: Consumer<LineCommand>,
    reports: Producer<LineReport>,
    counters: LineSideCounters,
    scratch: [u8; MAX_FRAME_OCTETS],
    line_up: bool,
}

impl ExchangeLine {
    /// The line side and the control side's ring ends.
    pub fn new(span: SpanConfig) -> (ExchangeLine, ControlRings) {
        let (d_rx, dframes_in) = spsc(DFRAME_SLOTS);
        let (dframes_out, d_tx) = spsc(DFRAME_SLOTS);
        let (commands, cmd_rx) = spsc(COMMAND_SLOTS);
        let (rep_tx, reports) = spsc(REPORT_SLOTS);
        let line = ExchangeLine {
            span: RawSpan::new(span),
            channels: (0..FRAME_OCTETS).map(|_| AudioChannel::new()).collect(),
            d_rx,
            d_tx,
            pending_tx: None,
            commands: cmd_rx,
            reports: rep_tx,
            counters: LineSideCounters::default(),
            scratch: [0; MAX_FRAME_OCTETS],
            line_up: false,
        };
        let rings = ControlRings {
            dframes_in,
            dframes_out,
            commands,
            reports,
        };
        (line, rings)
    }

    pub fn span(&self) -> &RawSpan {
        &self.span
    }

    pub fn span_counters(&self) -> SpanCounters {
        self.span.counters()
    }

    pub fn counters(&self) -> LineSideCounters {
        self.counters
    }

    /// The raw drivers' callback: `rx` received line octets, `tx` whole
    /// frames to fill (one `emit_frame` per 32 octets).
    pub fn exchange(&mut self, rx: &[u8], tx: &mut [u8]) {
        self.receive(rx);
        self.service();
        for chunk in tx.chunks_exact_mut(FRAME_OCTETS) {
            let mut f = [0xD5; FRAME_OCTETS];
            self.fill_frame(&mut f);
            chunk.copy_from_slice(&f);
        }
    }

    /// Received line octets only (a driver whose transmit is clocked apart).
    pub fn receive(&mut self, rx: &[u8]) {
        let ExchangeLine {
            span,
            channels,
            reports,
            counters,
            ..
        } = self;
        span.handle_rx(rx, |frame| {
            for (ts, ch) in channels.iter_mut().enumerate() {
                if ts == 0 || ts == DCHANNEL_TS || !ch.is_active() {
                    continue;
                }
                if let Some(digit) = ch.rx_octet(frame[ts]) {
                    let r = LineReport::Dtmf {
                        ts: ts as u8,
                        tag: ch.tag(),
                        digit,
                    };
                    if reports.try_push(r).is_err() {
                        counters.reports_dropped += 1;
                    }
                }
            }
        });
    }

    /// Fills the B-channels of one frame and lets the span write TS0/TS16.
    pub fn fill_frame(&mut self, f: &mut [u8; FRAME_OCTETS]) {
        for (ts, ch) in self.channels.iter_mut().enumerate() {
            if ts != 0 && ts != DCHANNEL_TS && ch.is_active() {
                f[ts] = ch.tx_octet();
            }
        }
        self.span.emit_frame(f);
    }

    /// Moves D-channel frames, commands and line events across the rings.
    pub fn service(&mut self) {
        while let Some(n) = self.span.poll_dchannel_frame(&mut self.scratch) {
            let pushed =
                DFrame::new(&self.scratch[..n]).is_some_and(|d| self.d_rx.try_push(d).is_ok());
            if !pushed {
                self.counters.dframes_dropped += 1;
            }
        }
        while let Some(d) = self.pending_tx.take().or_else(|| self.d_tx.try_pop()) {
            if self.span.send_dchannel_frame(d.as_bytes()).is_err() {
                // The span's queue is full: keep it for the next frame.
                self.pending_tx = Some(d);
                break;
            }
        }
        while let Some(c) = self.commands.try_pop() {
            self.command(c);
        }
        while let Some(ev) = self.span.poll_event() {
            self.report(LineReport::Line(ev));
        }
        // RAI in the defects means the far end does not see us yet.
        let up = self.span.defects().is_empty();
        if up != self.line_up {
            self.line_up = up;
            self.report(LineReport::LineUp(up));
        }
    }

    fn command(&mut self, c: LineCommand) {
        let ts = match c {
            LineCommand::Start { ts, .. } | LineCommand::Stop { ts } => usize::from(ts),
        };
        if ts == 0 || ts == DCHANNEL_TS || ts >= FRAME_OCTETS {
            self.counters.bad_commands += 1;
            return;
        }
        let ch = &mut self.channels[ts];
        match c {
            LineCommand::Start {
                tag,
                mode,
                digits,
                dtmf_delay_frames,
                ..
            } => ch.start(tag, mode, digits, dtmf_delay_frames),
            LineCommand::Stop { .. } => {
                if ch.is_active() {
                    let tag = ch.tag();
                    let stats = ch.stop();
                    self.report(LineReport::Audio {
                        ts: ts as u8,
                        tag,
                        stats,
                    });
                }
            }
        }
    }

    fn report(&mut self, r: LineReport) {
        if self.reports.try_push(r).is_err() {
            self.counters.reports_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two line sides back to back, one frame each way per step.
    fn back_to_back(
        frames: usize,
        a_cmds: &[LineCommand],
        b_cmds: &[LineCommand],
    ) -> Vec<LineReport> {
        let (mut a, mut ra) = ExchangeLine::new(SpanConfig::default());
        let (mut b, mut rb) = ExchangeLine::new(SpanConfig::default());
        let mut fa = [0xFFu8; FRAME_OCTETS];
        let mut fb = [0xFFu8; FRAME_OCTETS];
        for i in 0..frames {
            if i == 4000 {
                for c in a_cmds {
                    ra.commands.try_push(*c).unwrap();
                }
                for c in b_cmds {
                    rb.commands.try_push(*c).unwrap();
                }
            }
            let (ina, inb) = (fb, fa);
            a.exchange(&ina, &mut fa);
            b.exchange(&inb, &mut fb);
        }
        ra.commands.try_push(LineCommand::Stop { ts: 5 }).unwrap();
        a.exchange(&fb.clone(), &mut fa);
        let mut out = Vec::new();
        while let Some(r) = ra.reports.try_pop() {
            out.push(r);
        }
        out
    }

    #[test]
    fn test_signal_comes_back_from_an_echoing_line_side() {
        let start = |mode, digits| LineCommand::Start {
            ts: 5,
            tag: 42,
            mode,
            digits,
            dtmf_delay_frames: 800,
        };
        let reps = back_to_back(
            16_000,
            &[start(AudioMode::Test, Digits::new("5"))],
            &[start(AudioMode::Echo, Digits::default())],
        );
        let audio = reps.iter().find_map(|r| match r {
            LineReport::Audio { stats, .. } => Some(*stats),
            _ => None,
        });
        let s = audio.expect("an audio report");
        assert!(s.blocks_received > 0, "{s:?}");
        assert_eq!((s.blocks_lost, s.blocks_mismatched), (0, 0), "{s:?}");
        assert!(
            reps.iter().any(|r| matches!(
                r,
                LineReport::Dtmf {
                    digit: b'5',
                    tag: 42,
                    ..
                }
            )),
            "{reps:?}"
        );
    }
}
