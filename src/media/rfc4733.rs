//! RFC 4733 telephone-events: the payload codec, a sender that turns a
//! detected DTMF digit into the event packet sequence, and a receiver that
//! turns received packets (lost, duplicated, reordered) into one start and
//! one end per digit and regenerates the tone into the timeslot.
//!
//! # Contract
//!
//! Time is the E1 sample count (8 kHz, `u64`); telephone-event timestamps
//! use the audio clock of the stream (8 kHz for G.711), so one sample is one
//! timestamp unit. Nothing allocates after construction.
//!
//! Sender ([`EventSender`]), per channel, TDM → RTP:
//! - [`EventSender::start`] when the DTMF detector reports `DigitStart`
//!   (its `at_sample` is the event's start time), [`EventSender::end`] on
//!   `DigitEnd`;
//! - [`EventSender::poll_packet`] on every E1 tick: at most one
//!   [`EventPacket`] (marker, timestamp, 4-octet payload) when one is due;
//!   the engine adds sequence number and SSRC of the audio stream
//!   (RFC 4733 §2.1: same SSRC and sequence space) and sends it;
//! - [`EventSender::is_active`] while the digit is being signalled: the
//!   engine sends no voice packets then (§2.5.1.2 / issue: the digit's audio
//!   is suppressed).
//!
//! Receiver ([`EventReceiver`]), per channel, RTP → TDM:
//! - [`EventReceiver::handle_packet`] per received packet of the
//!   negotiated telephone-event payload type (after RTP validation and
//!   latching);
//! - [`EventReceiver::fill`] per E1 tick after the PLC: overwrites the
//!   block with the regenerated DTMF tone while a digit plays and returns
//!   whether it did;
//! - [`EventReceiver::poll_event`] drains [`DtmfEvent`]s for the control
//!   plane (one `DigitStart` and one `DigitEnd` per digit).

use super::dtmf::DtmfEvent;
use super::seq::ts_diff;
use super::tone::{ToneGenerator, ToneSpec};

/// Octets of one event report (§2.3).
pub const EVENT_LEN: usize = 4;
/// Longest duration one report carries (§2.5.1.3: 16-bit field).
pub const MAX_DURATION: u16 = 0xFFFF;
/// §2.3.5 / §3.2: DTMF events 0-9, `*`=10, `#`=11, A-D=12-15.
const DTMF_EVENTS: &[u8; 16] = b"0123456789*#ABCD";

/// The event code of an ASCII DTMF digit (§3.2 Table 7).
pub fn event_code(digit: u8) -> Option<u8> {
    let d = digit.to_ascii_uppercase();
    DTMF_EVENTS.iter().position(|&c| c == d).map(|p| p as u8)
}

/// The ASCII digit of a DTMF event code, if it is one.
pub fn event_digit(code: u8) -> Option<u8> {
    DTMF_EVENTS.get(code as usize).copied()
}

/// One event report (§2.3):
///
/// ```text
///  0                   1                   2                   3
/// |     event     |E|R| volume    |          duration             |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// §2.3.3: the E bit, this report ends the event.
    pub end: bool,
    /// §2.3.4: power level in -dBm0 (0..=63).
    pub volume: u8,
    /// §2.3.5: duration so far, in timestamp units from the packet's
    /// timestamp.
    pub duration: u16,
}

/// Why a telephone-event payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventError {
    /// Empty, or not a whole number of 4-octet reports (§2.3).
    BadLength,
}

impl TelephoneEvent {
    /// Reads one report; the R bit is ignored as §2.3.4 requires.
    pub fn parse(b: &[u8; EVENT_LEN]) -> Self {
        TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        }
    }

    /// The 4 octets of this report (R bit zero, volume masked to 6 bits).
    pub fn to_bytes(&self) -> [u8; EVENT_LEN] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Checks a payload and iterates over its reports (§2.5.1.5: several
/// reports in one packet, in time order).
pub fn parse_payload(
    payload: &[u8],
) -> Result<impl Iterator<Item = TelephoneEvent> + '_, EventError> {
    if payload.is_empty() || !payload.len().is_multiple_of(EVENT_LEN) {
        return Err(EventError::BadLength);
    }
    Ok(payload
        .chunks_exact(EVENT_LEN)
        .filter_map(|c| <&[u8; EVENT_LEN]>::try_from(c).ok())
        .map(TelephoneEvent::parse))
}

/// One telephone-event packet for the engine to send: it adds the audio
/// stream's sequence number and SSRC and the negotiated payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// §2.5.1.2: set on the first packet of an event.
    pub marker: bool,
    /// The event's (or segment's) start, in the stream's RTP timestamp.
    pub timestamp: u32,
    pub payload: [u8; EVENT_LEN],
}

/// Sender settings (from the connect command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSenderConfig {
    /// Interval between updates (§2.5.1.3: the audio packetisation
    /// interval), in samples; 160 for 20 ms.
    pub interval_samples: u32,
    /// Volume reported, in -dBm0 (§2.3.4); our generator sends -7/-5 dBm0.
    pub volume: u8,
    /// Times the final packet of an event or segment is sent (§2.5.1.4:
    /// three).
    pub end_repeats: u8,
}

impl Default for EventSenderConfig {
    fn default() -> Self {
        EventSenderConfig {
            interval_samples: 160,
            volume: 10,
            end_repeats: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    /// Sending start / updates for the segment starting at `seg_start`.
    Active {
        code: u8,
        event_start: u64,
        seg_start: u64,
        marker: bool,
        due: u64,
    },
    /// §2.5.1.3: the segment reached 0xFFFF; its last report is repeated,
    /// then a new segment starts at `seg_start + 0xFFFF`.
    SegmentEnd {
        code: u8,
        event_start: u64,
        seg_start: u64,
        left: u8,
        due: u64,
    },
    /// §2.5.1.4: the final report (E bit) sent `left` more times.
    Ending {
        code: u8,
        seg_start: u64,
        duration: u16,
        left: u8,
        due: u64,
    },
}

/// Sender counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSenderCounters {
    pub digits: u64,
    pub packets: u64,
    /// Long events split into segments (§2.5.1.3).
    pub segments: u64,
}

/// Telephone-event sender; see the module doc.
pub struct EventSender {
    cfg: EventSenderConfig,
    ts_offset: u32,
    state: SendState,
    /// A digit detected while the previous one's end is still being
    /// repeated: (code, start).
    pending: Option<(u8, u64)>,
    pub counters: EventSenderCounters,
}

impl EventSender {
    /// `ts_offset`: the stream's RTP timestamp is `sample as u32 +
    /// ts_offset` (the same mapping the engine uses for audio packets).
    pub fn new(cfg: EventSenderConfig, ts_offset: u32) -> Self {
        EventSender {
            cfg: EventSenderConfig {
                interval_samples: cfg.interval_samples.max(1),
                end_repeats: cfg.end_repeats.max(1),
                ..cfg
            },
            ts_offset,
            state: SendState::Idle,
            pending: None,
            counters: EventSenderCounters::default(),
        }
    }

    /// Drops any event in progress (disconnect, new remote).
    pub fn reset(&mut self, ts_offset: u32) {
        self.ts_offset = ts_offset;
        self.state = SendState::Idle;
        self.pending = None;
    }

    /// True while an event is being signalled (voice packets held back).
    pub fn is_active(&self) -> bool {
        self.state != SendState::Idle
    }

    /// A digit started at sample `started_at` (ASCII `0-9 * # A-D`).
    /// Returns false for anything else. A start while the previous digit
    /// is still open ends that digit at `started_at`.
    pub fn start(&mut self, now: u64, digit: u8, started_at: u64) -> bool {
        let Some(code) = event_code(digit) else {
            return false;
        };
        let started_at = started_at.min(now);
        if let SendState::Active { event_start, .. } | SendState::SegmentEnd { event_start, .. } =
            self.state
        {
            self.end(now, started_at.saturating_sub(event_start));
        }
        self.counters.digits += 1;
        match self.state {
            SendState::Idle => self.begin(now, code, started_at),
            _ => self.pending = Some((code, started_at)),
        }
        true
    }

    fn begin(&mut self, now: u64, code: u8, started_at: u64) {
        self.state = SendState::Active {
            code,
            event_start: started_at,
            seg_start: started_at,
            marker: true,
            due: now,
        };
    }

    /// The digit ended after `duration_samples` of tone (from its start).
    pub fn end(&mut self, now: u64, duration_samples: u64) {
        let (code, event_start, seg_start) = match self.state {
            SendState::Active {
                code,
                event_start,
                seg_start,
                ..
            }
            | SendState::SegmentEnd {
                code,
                event_start,
                seg_start,
                ..
            } => (code, event_start, seg_start),
            _ => return,
        };
        // In a segment end the new segment has not started yet.
        let seg_start = match self.state {
            SendState::SegmentEnd { .. } => seg_start + MAX_DURATION as u64,
            _ => seg_start,
        };
        let end_at = event_start + duration_samples;
        let duration = end_at.saturating_sub(seg_start).min(MAX_DURATION as u64) as u16;
        self.state = SendState::Ending {
            code,
            seg_start,
            duration,
            left: self.cfg.end_repeats,
            due: now,
        };
    }

    /// When the next packet is due, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            SendState::Idle => None,
            SendState::Active { due, .. }
            | SendState::SegmentEnd { due, .. }
            | SendState::Ending { due, .. } => Some(due),
        }
    }

    /// The packet due at `now`, if any (at most one per call).
    pub fn poll_packet(&mut self, now: u64) -> Option<EventPacket> {
        if self.poll_timeout()? > now {
            return None;
        }
        let iv = self.cfg.interval_samples as u64;
        let (marker, seg_start, report) = match self.state {
            SendState::Idle => return None,
            SendState::Active {
                code,
                event_start,
                seg_start,
                marker,
                ..
            } => {
                let elapsed = now.saturating_sub(seg_start);
                if elapsed >= MAX_DURATION as u64 {
                    self.counters.segments += 1;
                    self.state = SendState::SegmentEnd {
                        code,
                        event_start,
                        seg_start,
                        left: self.cfg.end_repeats,
                        due: now,
                    };
                    return self.poll_packet(now);
                }
                self.state = SendState::Active {
                    code,
                    event_start,
                    seg_start,
                    marker: false,
                    due: now + iv,
                };
                (marker, seg_start, self.report(code, false, elapsed as u16))
            }
            SendState::SegmentEnd {
                code,
                event_start,
                seg_start,
                left,
                ..
            } => {
                self.state = if left > 1 {
                    SendState::SegmentEnd {
                        code,
                        event_start,
                        seg_start,
                        left: left - 1,
                        due: now + iv,
                    }
                } else {
                    // §2.5.1.3: the next segment starts where this one ends,
                    // without the marker bit.
                    SendState::Active {
                        code,
                        event_start,
                        seg_start: seg_start + MAX_DURATION as u64,
                        marker: false,
                        due: now + iv,
                    }
                };
                (false, seg_start, self.report(code, false, MAX_DURATION))
            }
            SendState::Ending {
                code,
                seg_start,
                duration,
                left,
                ..
            } => {
                self.state = if left > 1 {
                    SendState::Ending {
                        code,
                        seg_start,
                        duration,
                        left: left - 1,
                        due: now + iv,
                    }
                } else {
                    SendState::Idle
                };
                if self.state == SendState::Idle
                    && let Some((c, s)) = self.pending.take()
                {
                    self.begin(now + iv, c, s);
                }
                (false, seg_start, self.report(code, true, duration))
            }
        };
        self.counters.packets += 1;
        Some(EventPacket {
            marker,
            timestamp: (seg_start as u32).wrapping_add(self.ts_offset),
            payload: report.to_bytes(),
        })
    }

    fn report(&self, code: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event: code,
            end,
            volume: self.cfg.volume,
            duration,
        }
    }
}

/// Receiver settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReceiverConfig {
    /// With no report for this long and no end seen, the event is ended at
    /// its last reported duration (all end packets lost). Default 100 ms.
    pub hold_samples: u32,
    /// Shortest regenerated tone (Q.24: 40 ms is recognised).
    pub min_tone_samples: u32,
    /// Shortest pause between two regenerated digits (Q.24: 40 ms).
    pub min_gap_samples: u32,
}

impl Default for EventReceiverConfig {
    fn default() -> Self {
        EventReceiverConfig {
            hold_samples: 800,
            min_tone_samples: 320,
            min_gap_samples: 320,
        }
    }
}

/// Receiver counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventReceiverCounters {
    pub packets: u64,
    pub malformed: u64,
    pub digits: u64,
    /// Reports for an event already ended (the end retransmissions,
    /// duplicates).
    pub duplicates: u64,
    /// Reports older than the current event (reordered past its end).
    pub late: u64,
    /// Events other than DTMF 0-15 (ignored, §2.5.2).
    pub unsupported: u64,
    /// Events ended without an end report (lost, replaced, or timed out).
    pub ends_inferred: u64,
    /// Control-plane events dropped because the queue was full.
    pub queue_full: u64,
}

#[derive(Debug, Clone, Copy)]
struct RxEvent {
    code: u8,
    /// Timestamp of the current segment.
    seg_ts: u32,
    /// Duration of the segments before the current one.
    seg_base: u64,
    /// Total duration reported so far.
    duration: u64,
    last_report: u64,
}

/// Tone playout of one regenerated digit.
struct Play {
    tone: ToneGenerator,
    start_at: u64,
    stop_at: Option<u64>,
}

const QUEUE: usize = 8;

/// Telephone-event receiver and DTMF regenerator; see the module doc.
pub struct EventReceiver {
    cfg: EventReceiverConfig,
    cur: Option<RxEvent>,
    /// (code, segment timestamp) of the last finished event.
    last_ended: Option<(u8, u32)>,
    play: Option<Play>,
    /// The next digit's tone, when it began before `play` finished (it
    /// starts after `play` stops plus the minimum pause).
    next: Option<Play>,
    /// No new tone before this sample (pause after the previous tone).
    quiet_until: u64,
    queue: [Option<DtmfEvent>; QUEUE],
    q_head: usize,
    q_len: usize,
    pub counters: EventReceiverCounters,
}

impl Default for EventReceiver {
    fn default() -> Self {
        Self::new(EventReceiverConfig::default())
    }
}

impl EventReceiver {
    pub fn new(cfg: EventReceiverConfig) -> Self {
        EventReceiver {
            cfg,
            cur: None,
            last_ended: None,
            play: None,
            next: None,
            quiet_until: 0,
            queue: [None; QUEUE],
            q_head: 0,
            q_len: 0,
            counters: EventReceiverCounters::default(),
        }
    }

    /// Forgets the stream (new remote or SSRC); keeps the counters.
    pub fn reset(&mut self) {
        let c = self.counters;
        *self = EventReceiver::new(self.cfg);
        self.counters = c;
    }

    /// One received telephone-event packet: its RTP timestamp and payload.
    /// Several reports in one payload follow each other in time
    /// (§2.5.1.5): each starts where the previous one ends.
    pub fn handle_packet(&mut self, now: u64, ts: u32, payload: &[u8]) -> Result<(), EventError> {
        self.counters.packets += 1;
        let reports = match parse_payload(payload) {
            Ok(r) => r,
            Err(e) => {
                self.counters.malformed += 1;
                return Err(e);
            }
        };
        let n = payload.len() / EVENT_LEN;
        let mut at = ts;
        for (i, mut ev) in reports.enumerate() {
            // §2.5.1.5: every report but the last is of a finished event.
            ev.end |= i + 1 < n;
            self.handle_report(now, at, ev);
            at = at.wrapping_add(ev.duration as u32);
        }
        Ok(())
    }

    fn handle_report(&mut self, now: u64, ts: u32, ev: TelephoneEvent) {
        if event_digit(ev.event).is_none() {
            self.counters.unsupported += 1;
            return;
        }
        if let Some((code, t)) = self.last_ended {
            let d = ts_diff(ts, t);
            if d < 0 || (d == 0 && code == ev.event) {
                // §2.5.2.1: the end retransmissions and anything older.
                if d == 0 {
                    self.counters.duplicates += 1;
                } else {
                    self.counters.late += 1;
                }
                return;
            }
        }
        let Some(mut c) = self.cur else {
            self.begin(now, ts, ev);
            return;
        };
        let d = ts_diff(ts, c.seg_ts);
        if d < 0 {
            self.counters.late += 1;
            return;
        }
        if c.code == ev.event && (d == 0 || d == MAX_DURATION as i32) {
            if d != 0 {
                // §2.5.2.3: the next segment of a long event.
                c.seg_base += MAX_DURATION as u64;
                c.seg_ts = ts;
            }
            // §2.5.2.1: updates only grow the duration; the final report's
            // duration is the event's (the detector's end comes after a
            // pause, so updates may have run past it).
            let reported = c.seg_base + ev.duration as u64;
            c.duration = if ev.end {
                reported
            } else {
                c.duration.max(reported)
            };
            c.last_report = now;
            self.cur = Some(c);
            if ev.end {
                self.finish(false);
            }
            return;
        }
        // A newer event while this one is open: its end was lost.
        self.finish(true);
        self.begin(now, ts, ev);
    }

    fn begin(&mut self, now: u64, ts: u32, ev: TelephoneEvent) {
        let digit = event_digit(ev.event).unwrap_or(b'0');
        self.counters.digits += 1;
        self.cur = Some(RxEvent {
            code: ev.event,
            seg_ts: ts,
            seg_base: 0,
            duration: ev.duration as u64,
            last_report: now,
        });
        self.push(DtmfEvent::DigitStart {
            digit,
            at_sample: now,
        });
        if let Some(spec) = ToneSpec::dtmf(digit) {
            let p = Play {
                tone: ToneGenerator::new(spec),
                start_at: now.max(self.quiet_until),
                stop_at: None,
            };
            // The previous tone keeps its full length; a third digit
            // arriving meanwhile replaces the waiting one.
            match self.play {
                Some(_) => self.next = Some(p),
                None => self.play = Some(p),
            }
        }
        if ev.end {
            self.finish(false);
        }
    }

    /// Ends the current event with its reported duration.
    fn finish(&mut self, inferred: bool) {
        let Some(c) = self.cur.take() else {
            return;
        };
        if inferred {
            self.counters.ends_inferred += 1;
        }
        self.last_ended = Some((c.code, c.seg_ts));
        let digit = event_digit(c.code).unwrap_or(b'0');
        self.push(DtmfEvent::DigitEnd {
            digit,
            duration_samples: c.duration,
        });
        // The tone of the event being finished is the latest begun one.
        let latest = match self.next.as_mut() {
            Some(n) => Some(n),
            None => self.play.as_mut(),
        };
        if let Some(p) = latest
            && p.stop_at.is_none()
        {
            let len = c.duration.max(self.cfg.min_tone_samples as u64);
            // Ended late (inferred) and already played longer: stops at once.
            let stop = p.start_at + len;
            p.stop_at = Some(stop);
            self.quiet_until = stop + self.cfg.min_gap_samples as u64;
        }
    }

    /// When the receiver next needs [`handle_timeout`](Self::handle_timeout)
    /// (an open event whose end may be lost).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.cur
            .map(|c| c.last_report + self.cfg.hold_samples as u64)
    }

    /// Ends an event whose reports stopped (every end packet lost).
    pub fn handle_timeout(&mut self, now: u64) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.finish(true);
        }
    }

    /// Writes the regenerated tone over `out` (the samples from `now` on)
    /// while a digit plays; returns true if any sample was written. Calls
    /// [`handle_timeout`](Self::handle_timeout) itself.
    pub fn fill(&mut self, now: u64, out: &mut [i16]) -> bool {
        self.handle_timeout(now);
        let mut wrote = false;
        for (i, o) in out.iter_mut().enumerate() {
            let t = now + i as u64;
            let Some(p) = self.play.as_mut() else {
                break;
            };
            if p.stop_at.is_some_and(|s| t >= s) {
                self.play = self.next.take();
                continue;
            }
            if t >= p.start_at {
                p.tone.fill(core::slice::from_mut(o));
                wrote = true;
            }
        }
        wrote
    }

    /// True while a regenerated tone is playing or due.
    pub fn is_playing(&self) -> bool {
        self.play.is_some() || self.next.is_some()
    }

    fn push(&mut self, e: DtmfEvent) {
        if self.q_len == QUEUE {
            self.counters.queue_full += 1;
            return;
        }
        self.queue[(self.q_head + self.q_len) % QUEUE] = Some(e);
        self.q_len += 1;
    }

    /// The next digit start or end for the control plane.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        if self.q_len == 0 {
            return None;
        }
        let e = self.queue[self.q_head].take();
        self.q_head = (self.q_head + 1) % QUEUE;
        self.q_len -= 1;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::DtmfDetector;

    #[test]
    fn report_layout_per_section_2_3() {
        // Digit 5, E=1, volume 10 (-10 dBm0), duration 800 (100 ms).
        let e = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [0x05, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&[0x05, 0x8A, 0x03, 0x20]), e);
        // §2.3.4: R is ignored on receive.
        assert_eq!(TelephoneEvent::parse(&[0x05, 0xCA, 0x03, 0x20]), e);
        assert_eq!(event_code(b'#'), Some(11));
        assert_eq!(event_code(b'd'), Some(15));
        assert_eq!(event_digit(10), Some(b'*'));
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn malformed_payloads_refused() {
        for p in [&[][..], &[1, 2, 3], &[1, 2, 3, 4, 5]] {
            assert_eq!(parse_payload(p).err(), Some(EventError::BadLength));
        }
        let mut r = EventReceiver::default();
        assert_eq!(r.handle_packet(0, 0, &[1, 2]), Err(EventError::BadLength));
        assert_eq!(r.counters.malformed, 1);
        assert_eq!(r.poll_event(), None);
    }

    /// Drives a sender for a digit from `start` lasting `len` samples,
    /// detected `detect_delay` after its start, polled per E1 tick.
    fn send_digit(
        s: &mut EventSender,
        digit: u8,
        start: u64,
        len: u64,
        detect_delay: u64,
    ) -> Vec<(u64, EventPacket)> {
        let mut out = Vec::new();
        let mut now = start;
        while now < start + len + 2000 {
            if now == start + detect_delay {
                assert!(s.start(now, digit, start));
            }
            if now == start + len + detect_delay {
                s.end(now, len);
            }
            if let Some(p) = s.poll_packet(now) {
                out.push((now, p));
            }
            now += 8;
        }
        out
    }

    #[test]
    fn sender_start_updates_and_three_ends() {
        // Digit 1 from sample 8000 for 100 ms, detected 40 ms in, 20 ms
        // updates, stream timestamp = sample + 1000.
        let mut s = EventSender::new(EventSenderConfig::default(), 1000);
        let pk = send_digit(&mut s, b'1', 8000, 800, 320);
        let ev: Vec<(u64, bool, u32, TelephoneEvent)> = pk
            .iter()
            .map(|(t, p)| (*t, p.marker, p.timestamp, TelephoneEvent::parse(&p.payload)))
            .collect();
        // Start at detection: marker, timestamp of the tone's start, the
        // duration so far.
        assert_eq!(ev[0].0, 8320);
        assert!(ev[0].1);
        assert_eq!(ev[0].2, 9000);
        assert_eq!(ev[0].3.duration, 320);
        assert!(!ev[0].3.end);
        // Updates every 160 samples with growing durations, same timestamp.
        let durs: Vec<u16> = ev.iter().map(|e| e.3.duration).collect();
        // The update at 960 runs past the tone: the detector reports the end
        // only after the pause; the final report carries the true 800.
        assert_eq!(durs, vec![320, 480, 640, 800, 960, 800, 800, 800]);
        assert!(
            ev[1..]
                .iter()
                .all(|e| !e.1 && e.2 == 9000 && e.3.event == 1)
        );
        // The end (E bit, final duration 800) three times, 20 ms apart.
        let ends: Vec<u64> = ev.iter().filter(|e| e.3.end).map(|e| e.0).collect();
        assert_eq!(ends, vec![9120, 9280, 9440]);
        assert!(!s.is_active());
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.counters.packets, 8);
    }

    #[test]
    fn sender_queues_a_digit_detected_during_the_end_repeats() {
        let mut s = EventSender::new(EventSenderConfig::default(), 0);
        s.start(0, b'4', 0);
        assert!(s.poll_packet(0).unwrap().marker);
        s.end(400, 400);
        let e = s.poll_packet(400).unwrap();
        assert!(TelephoneEvent::parse(&e.payload).end);
        s.start(420, b'7', 410);
        let mut got = Vec::new();
        for now in (408..2000).step_by(8) {
            if let Some(p) = s.poll_packet(now) {
                got.push((p.marker, p.timestamp, TelephoneEvent::parse(&p.payload)));
            }
        }
        // Two more ends of '4', then '7' with its own start timestamp.
        assert!(got[0].2.end && got[1].2.end && got[0].2.event == 4);
        assert!(got[2].0);
        assert_eq!((got[2].1, got[2].2.event), (410, 7));
    }

    #[test]
    fn a_new_digit_ends_the_open_one_at_its_start() {
        // '2' detected while '1' (no end reported) is still open: '1' ends
        // where '2' began, then '2' follows its three end repeats.
        let mut s = EventSender::new(EventSenderConfig::default(), 0);
        s.start(0, b'1', 0);
        let mut got = Vec::new();
        for now in (0..3000u64).step_by(8) {
            if now == 1000 {
                s.start(now, b'2', 960);
            }
            if let Some(p) = s.poll_packet(now) {
                got.push((p.marker, p.timestamp, TelephoneEvent::parse(&p.payload)));
            }
        }
        let ends: Vec<_> = got.iter().filter(|g| g.2.end && g.2.event == 1).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|e| e.2.duration == 960 && e.1 == 0));
        let two = got.iter().position(|g| g.2.event == 2).unwrap();
        assert!(got[two].0 && got[two].1 == 960);
        assert!(got[..two].iter().all(|g| g.2.event == 1));
    }

    #[test]
    fn sender_long_event_segments_at_0xffff() {
        // A 10 s digit: the first segment ends at 0xFFFF (8.19 s), sent
        // three times without E, the next segment starts at +0xFFFF.
        let mut s = EventSender::new(EventSenderConfig::default(), 0);
        let pk = send_digit(&mut s, b'0', 0, 80_000, 320);
        let ev: Vec<(bool, u32, TelephoneEvent)> = pk
            .iter()
            .map(|(_, p)| (p.marker, p.timestamp, TelephoneEvent::parse(&p.payload)))
            .collect();
        let seg_end: Vec<_> = ev.iter().filter(|e| e.2.duration == 0xFFFF).collect();
        assert_eq!(seg_end.len(), 3);
        assert!(seg_end.iter().all(|e| e.1 == 0 && !e.2.end));
        let second: Vec<_> = ev.iter().filter(|e| e.1 == 0xFFFF).collect();
        assert!(!second[0].0, "no marker on a new segment");
        let last = ev.last().unwrap();
        assert!(last.2.end);
        assert_eq!(last.1, 0xFFFF);
        assert_eq!(last.2.duration as u64, 80_000 - 0xFFFF);
        assert_eq!(s.counters.segments, 1);
        // The receiver puts the segments back together.
        let mut r = EventReceiver::default();
        for (t, p) in &pk {
            r.handle_packet(*t, p.timestamp, &p.payload).unwrap();
        }
        assert!(matches!(
            r.poll_event(),
            Some(DtmfEvent::DigitStart { digit: b'0', .. })
        ));
        assert_eq!(
            r.poll_event(),
            Some(DtmfEvent::DigitEnd {
                digit: b'0',
                duration_samples: 80_000
            })
        );
        assert_eq!(r.poll_event(), None);
    }

    /// Small seeded generator for the lossy tests.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn receiver_one_start_one_end_per_digit_through_loss_dups_reorder() {
        let digits = b"999123#";
        for seed in 0..40u64 {
            let mut s = EventSender::new(EventSenderConfig::default(), 0x7000_0000);
            let mut pk = Vec::new();
            let mut t = 1000u64;
            for &d in digits {
                pk.extend(send_digit(&mut s, d, t, 640, 320));
                t += 640 + 2000 + 320;
            }
            // 15 % loss, 10 % duplicates, neighbours swapped 10 %.
            let mut rng = Lcg(seed);
            let mut wire = Vec::new();
            for p in pk {
                let r = rng.next() % 100;
                if r < 15 {
                    continue;
                }
                wire.push(p);
                if r >= 90 {
                    wire.push(p);
                }
            }
            for i in 1..wire.len() {
                if rng.next().is_multiple_of(10) {
                    wire.swap(i - 1, i);
                }
            }
            let mut r = EventReceiver::default();
            let mut events = Vec::new();
            let mut now_max = 0;
            for (now, p) in &wire {
                now_max = now_max.max(*now);
                r.handle_timeout(now_max);
                r.handle_packet(now_max, p.timestamp, &p.payload).unwrap();
                while let Some(e) = r.poll_event() {
                    events.push(e);
                }
            }
            r.handle_timeout(now_max + 10_000);
            while let Some(e) = r.poll_event() {
                events.push(e);
            }
            let starts: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    DtmfEvent::DigitStart { digit, .. } => Some(*digit),
                    _ => None,
                })
                .collect();
            let ends: Vec<(u8, u64)> = events
                .iter()
                .filter_map(|e| match e {
                    DtmfEvent::DigitEnd {
                        digit,
                        duration_samples,
                    } => Some((*digit, *duration_samples)),
                    _ => None,
                })
                .collect();
            // A digit whose every packet was lost cannot be heard; with 15 %
            // loss and 7+ packets per digit that does not happen here.
            assert_eq!(starts, digits.to_vec(), "seed {seed}: {events:?}");
            assert_eq!(ends.len(), digits.len(), "seed {seed}");
            for (d, dur) in ends {
                // Reported duration: exact if an end arrived, otherwise the
                // largest update seen (320..=960: updates run until the
                // detector's end, 40 ms after the tone).
                assert!((320..=960).contains(&dur), "seed {seed} {d}: {dur}");
            }
        }
    }

    #[test]
    fn every_end_lost_is_ended_by_the_hold_timer() {
        let mut r = EventReceiver::default();
        let p = |d: u16| {
            TelephoneEvent {
                event: 3,
                end: false,
                volume: 10,
                duration: d,
            }
            .to_bytes()
        };
        r.handle_packet(0, 500, &p(320)).unwrap();
        r.handle_packet(160, 500, &p(480)).unwrap();
        assert_eq!(r.poll_timeout(), Some(160 + 800));
        r.handle_timeout(900);
        assert!(matches!(r.poll_event(), Some(DtmfEvent::DigitStart { .. })));
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(960);
        assert_eq!(
            r.poll_event(),
            Some(DtmfEvent::DigitEnd {
                digit: b'3',
                duration_samples: 480
            })
        );
        assert_eq!(r.counters.ends_inferred, 1);
        // A straggler of the same event changes nothing.
        r.handle_packet(970, 500, &p(640)).unwrap();
        assert_eq!(r.poll_event(), None);
        assert_eq!(r.counters.duplicates, 1);
    }

    #[test]
    fn packed_reports_are_consecutive_events() {
        // §2.5.1.5: the end of '1' (400 samples) and the start of '2' in one
        // packet; '2' starts at ts + 400.
        let mut payload = [0u8; 8];
        payload[..4].copy_from_slice(
            &TelephoneEvent {
                event: 1,
                end: true,
                volume: 10,
                duration: 400,
            }
            .to_bytes(),
        );
        payload[4..].copy_from_slice(
            &TelephoneEvent {
                event: 2,
                end: false,
                volume: 10,
                duration: 160,
            }
            .to_bytes(),
        );
        let mut r = EventReceiver::default();
        r.handle_packet(0, 1000, &payload).unwrap();
        let mut ev = Vec::new();
        while let Some(e) = r.poll_event() {
            ev.push(e);
        }
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert_eq!(
            ev[1],
            DtmfEvent::DigitEnd {
                digit: b'1',
                duration_samples: 400
            }
        );
        // The update of '2' at its own timestamp continues it.
        let upd = TelephoneEvent {
            event: 2,
            end: true,
            volume: 10,
            duration: 480,
        };
        r.handle_packet(320, 1400, &upd.to_bytes()).unwrap();
        assert_eq!(
            r.poll_event(),
            Some(DtmfEvent::DigitEnd {
                digit: b'2',
                duration_samples: 480
            })
        );
    }

    #[test]
    fn regenerated_tone_lasts_the_reported_duration_and_is_detected() {
        let mut s = EventSender::new(EventSenderConfig::default(), 0);
        let pk = send_digit(&mut s, b'8', 0, 800, 320);
        let mut r = EventReceiver::default();
        let mut det = DtmfDetector::new();
        let mut tone_samples = 0u64;
        let mut got = Vec::new();
        let mut next = 0;
        for now in (0..8000u64).step_by(8) {
            while next < pk.len() && pk[next].0 <= now {
                r.handle_packet(now, pk[next].1.timestamp, &pk[next].1.payload)
                    .unwrap();
                next += 1;
            }
            let mut buf = [0i16; 8];
            r.fill(now, &mut buf);
            tone_samples += buf.iter().filter(|&&v| v != 0).count() as u64;
            let mut off = 0;
            while off < 8 {
                off += det.handle_samples(&buf[off..]);
            }
            while let Some(e) = det.poll_event() {
                got.push(e);
            }
        }
        assert!(
            (790..=800).contains(&tone_samples),
            "{tone_samples} samples of tone"
        );
        assert!(matches!(got[0], DtmfEvent::DigitStart { digit: b'8', .. }));
        match got[1] {
            DtmfEvent::DigitEnd {
                digit: b'8',
                duration_samples,
            } => assert!(duration_samples.abs_diff(800) <= 40, "{duration_samples}"),
            e => panic!("{e:?}"),
        }
        assert!(!r.is_playing());
    }

    #[test]
    fn a_digit_arriving_during_the_previous_tone_waits_for_it() {
        // '1' ends (100 ms) while its tone still has 60 ms to play, and '2'
        // starts at once: '1' plays in full, then 40 ms of pause, then '2'.
        let rep = |event, end, duration| {
            TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            }
            .to_bytes()
        };
        let mut r = EventReceiver::default();
        let mut tone = Vec::new();
        for now in (0..4000u64).step_by(8) {
            match now {
                0 => r.handle_packet(now, 0, &rep(1, false, 320)).unwrap(),
                320 => r.handle_packet(now, 0, &rep(1, true, 800)).unwrap(),
                328 => r.handle_packet(now, 1200, &rep(2, true, 400)).unwrap(),
                _ => {}
            }
            let mut b = [0i16; 8];
            r.fill(now, &mut b);
            tone.extend(b.iter().map(|&v| v != 0));
        }
        let on: Vec<usize> = tone
            .iter()
            .enumerate()
            .filter(|(_, on)| **on)
            .map(|(i, _)| i)
            .collect();
        // Tone 1: samples 0..800; pause 800..1120; tone 2: 1120..1520.
        assert!(on.iter().all(|&i| i < 800 || (1120..1520).contains(&i)));
        assert!(on.iter().filter(|&&i| i < 800).count() > 790);
        assert!(on.iter().filter(|&&i| i >= 1120).count() > 390);
        assert!(!r.is_playing());
    }

    proptest::proptest! {
        #[test]
        fn report_round_trip(event: u8, end: bool, volume in 0u8..64, duration: u16) {
            let e = TelephoneEvent { event, end, volume, duration };
            proptest::prop_assert_eq!(TelephoneEvent::parse(&e.to_bytes()), e);
        }

        #[test]
        fn receiver_never_panics(
            pkts in proptest::collection::vec(
                (proptest::num::u32::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..13)),
                0..40)
        ) {
            let mut r = EventReceiver::default();
            let mut buf = [0i16; 8];
            for (i, (ts, p)) in pkts.iter().enumerate() {
                let now = i as u64 * 160;
                let _ = r.handle_packet(now, *ts, p);
                r.fill(now, &mut buf);
                while r.poll_event().is_some() {}
            }
        }
    }
}
