//! D-channel frame rings between a media thread's raw span and the control
//! plane's D-channel task (DESIGN.md §1: "rings of fixed-size D-channel
//! frame buffers").
//!
//! # Contract
//!
//! [`dchannel_rings`] allocates two SPSC rings of [`DFrameSlot`]s (264
//! octets + a length: a whole LAPD frame, address..information, no FCS) and
//! returns the two sides:
//!
//! - [`DChannelMedia`] stays on the media thread. [`DChannelMedia::pump`]
//!   moves frames the control plane pushed into
//!   [`RawSpan::send_dchannel_frame`] (a frame the span's transmit queue
//!   refuses waits in one held slot and is tried first next time: nothing
//!   is lost while the queue drains at line rate), and each frame
//!   [`RawSpan::poll_dchannel_frame`] yields into the receive ring; after
//!   pushing it calls [`FrameSignal::signal`] once (an eventfd write) if a
//!   task is attached. A full receive ring drops the frame and counts it
//!   ([`DChannelMedia::rx_overflows`]), never waits. No allocation, no lock.
//! - [`DChannelRings`] goes to the control plane and implements
//!   [`FrameRings`]; [`DChannelRings::into_port`] makes the [`RingPort`]
//!   that `isdn::task::spawn` runs on and hands its [`FrameSignal`] to the
//!   media side through a shared `OnceLock` (set once, read lock-free by an
//!   acquire load), so the media thread may be running already.
//!
//! Q.921 recovers lost frames (T200 retransmission, Q.921 §5.6), so a frame
//! dropped on a full ring costs a retransmission, not the link.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::ring::{Consumer, Producer, ring};
use crate::isdn::port::{FrameRings, FrameSignal, RingPort};
use crate::line::hdlc::MAX_FRAME_OCTETS;
use crate::line::span::{RawSpan, SpanTxError};

/// One D-channel frame in a ring slot.
#[derive(Clone, Copy)]
pub struct DFrameSlot {
    len: u16,
    octets: [u8; MAX_FRAME_OCTETS],
}

impl DFrameSlot {
    const EMPTY: DFrameSlot = DFrameSlot {
        len: 0,
        octets: [0; MAX_FRAME_OCTETS],
    };

    /// `None` when `frame` is empty or longer than a slot.
    pub fn new(frame: &[u8]) -> Option<DFrameSlot> {
        if frame.is_empty() || frame.len() > MAX_FRAME_OCTETS {
            return None;
        }
        let mut s = DFrameSlot::EMPTY;
        s.octets[..frame.len()].copy_from_slice(frame);
        s.len = frame.len() as u16;
        Some(s)
    }

    pub fn frame(&self) -> &[u8] {
        &self.octets[..usize::from(self.len).min(MAX_FRAME_OCTETS)]
    }
}

/// Counters shared by both sides (atomics; telemetry reads them).
#[derive(Debug, Default)]
pub struct DChannelRingStats {
    /// Frames moved into the span's transmit queue.
    pub tx_frames: AtomicU64,
    /// Frames pushed to the control plane.
    pub rx_frames: AtomicU64,
    /// Frames the control plane popped that were longer than its buffer.
    pub rx_oversize: AtomicU64,
    /// Frames refused by `push_transmit` on a full transmit ring.
    pub tx_ring_full: AtomicU64,
    /// Frames the span refused as malformed (empty / too long): dropped.
    pub tx_bad_length: AtomicU64,
}

/// The media thread's side; see the module doc.
pub struct DChannelMedia {
    to_control: Producer<DFrameSlot>,
    from_control: Consumer<DFrameSlot>,
    held: Option<DFrameSlot>,
    scratch: DFrameSlot,
    signal: Arc<OnceLock<FrameSignal>>,
    stats: Arc<DChannelRingStats>,
}

/// The control plane's side: [`FrameRings`] for a [`RingPort`].
pub struct DChannelRings {
    from_media: Consumer<DFrameSlot>,
    to_media: Producer<DFrameSlot>,
    signal: Arc<OnceLock<FrameSignal>>,
    stats: Arc<DChannelRingStats>,
}

/// Two rings of `slots` frames each (at least 1); the only allocation.
pub fn dchannel_rings(slots: usize) -> (DChannelMedia, DChannelRings) {
    let (to_control, from_media) = ring(slots.max(1));
    let (to_media, from_control) = ring(slots.max(1));
    let signal = Arc::new(OnceLock::new());
    let stats = Arc::new(DChannelRingStats::default());
    (
        DChannelMedia {
            to_control,
            from_control,
            held: None,
            scratch: DFrameSlot::EMPTY,
            signal: signal.clone(),
            stats: stats.clone(),
        },
        DChannelRings {
            from_media,
            to_media,
            signal,
            stats,
        },
    )
}

impl DChannelMedia {
    /// Control plane → span transmit queue, then span receive ring →
    /// control plane (and one signal if anything was pushed). Returns the
    /// number of frames pushed to the control plane.
    pub fn pump(&mut self, span: &mut RawSpan) -> usize {
        self.pump_tx(span);
        self.pump_rx(span)
    }

    /// Moves what the control plane queued into the span's transmit queue.
    pub fn pump_tx(&mut self, span: &mut RawSpan) {
        loop {
            let Some(slot) = self.held.take().or_else(|| self.from_control.try_pop()) else {
                return;
            };
            match span.send_dchannel_frame(slot.frame()) {
                Ok(()) => {
                    self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                }
                Err(SpanTxError::QueueFull) => {
                    self.held = Some(slot);
                    return;
                }
                Err(SpanTxError::BadLength(_)) => {
                    self.stats.tx_bad_length.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Moves received frames to the control plane; signals once if any.
    pub fn pump_rx(&mut self, span: &mut RawSpan) -> usize {
        let mut pushed = 0;
        while let Some(n) = span.poll_dchannel_frame(&mut self.scratch.octets) {
            self.scratch.len = n as u16;
            if self.to_control.push_or_count(self.scratch) {
                pushed += 1;
            }
        }
        if pushed > 0 {
            self.stats
                .rx_frames
                .fetch_add(pushed as u64, Ordering::Relaxed);
            if let Some(s) = self.signal.get() {
                s.signal();
            }
        }
        pushed
    }

    /// Received frames dropped on a full receive ring.
    pub fn rx_overflows(&self) -> u64 {
        self.to_control.overflows()
    }

    pub fn stats(&self) -> &Arc<DChannelRingStats> {
        &self.stats
    }
}

impl DChannelRings {
    /// The frame port for `isdn::task::spawn`; its wakeup is handed to the
    /// media side. Needs a tokio runtime (the eventfd is registered).
    pub fn into_port(self) -> io::Result<RingPort<DChannelRings>> {
        let signal = self.signal.clone();
        let (port, s) = RingPort::new(self)?;
        // A DChannelRings exists once per span and is consumed here, so the
        // cell is empty; a second set could only fail harmlessly.
        let _ = signal.set(s.clone());
        // Frames received before the task existed: wake it once.
        s.signal();
        Ok(port)
    }

    pub fn stats(&self) -> &Arc<DChannelRingStats> {
        &self.stats
    }

    /// Received frames the media side dropped on a full ring.
    pub fn rx_overflows(&self) -> u64 {
        self.from_media.overflows()
    }
}

impl FrameRings for DChannelRings {
    fn pop_received(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let slot = self.from_media.try_pop()?;
            let f = slot.frame();
            if let Some(dst) = buf.get_mut(..f.len()) {
                dst.copy_from_slice(f);
                return Some(f.len());
            }
            self.stats.rx_oversize.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn push_transmit(&mut self, frame: &[u8]) -> bool {
        let Some(slot) = DFrameSlot::new(frame) else {
            self.stats.tx_bad_length.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if self.to_media.try_push(slot).is_err() {
            self.stats.tx_ring_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::span::SpanConfig;

    fn pump_line(a: &mut RawSpan, b: &mut RawSpan, frames: usize) {
        for _ in 0..frames {
            let mut f = [0xD5; 32];
            a.emit_frame(&mut f);
            b.handle_rx(&f, |_| {});
            let mut g = [0xD5; 32];
            b.emit_frame(&mut g);
            a.handle_rx(&g, |_| {});
        }
    }

    #[test]
    fn frames_cross_a_line_through_both_rings_and_full_rings_count() {
        let cfg = SpanConfig {
            crc4: false,
            dchannel_tx_slots: 2,
            ..SpanConfig::default()
        };
        let (mut a, mut b) = (RawSpan::new(cfg), RawSpan::new(cfg));
        let (mut am, mut ac) = dchannel_rings(4);
        let (mut bm, mut bc) = dchannel_rings(2);
        pump_line(&mut a, &mut b, 16);
        for i in 0..4u8 {
            assert!(ac.push_transmit(&[0x02, 0x01, i, 0x55]));
        }
        assert!(!ac.push_transmit(&[0x02, 0x01, 9]), "transmit ring full");
        assert!(!ac.push_transmit(&[]), "empty frame refused");
        // The span's queue takes 2, the rest wait (held and in the ring).
        am.pump(&mut a);
        assert_eq!(ac.stats().tx_frames.load(Ordering::Relaxed), 2);
        for _ in 0..20 {
            pump_line(&mut a, &mut b, 8);
            am.pump(&mut a);
            bm.pump(&mut b);
        }
        assert_eq!(ac.stats().tx_frames.load(Ordering::Relaxed), 4);
        assert_eq!(ac.stats().tx_ring_full.load(Ordering::Relaxed), 1);
        // B's receive ring holds 2: two frames were dropped and counted.
        let mut buf = [0u8; 260];
        assert_eq!(bc.pop_received(&mut buf), Some(4));
        assert_eq!(buf[..4], [0x02, 0x01, 0, 0x55]);
        assert_eq!(bc.pop_received(&mut buf), Some(4));
        assert_eq!(buf[2], 1);
        assert_eq!(bc.pop_received(&mut buf), None);
        assert_eq!(bc.rx_overflows(), 2);
        // A buffer too short for the frame: dropped and counted.
        ac.push_transmit(&[7; 10]);
        for _ in 0..10 {
            am.pump(&mut a);
            pump_line(&mut a, &mut b, 8);
            bm.pump(&mut b);
        }
        assert_eq!(bc.pop_received(&mut buf[..5]), None);
        assert_eq!(bc.stats().rx_oversize.load(Ordering::Relaxed), 1);
    }
}
