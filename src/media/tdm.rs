//! The line side of a media thread: a [`TdmPort`] hands the engine every
//! received E1 frame of its spans and takes one frame to send back for each
//! (loop timing, DESIGN.md §5: one frame out per frame in). The line ports
//! implement it: `media::lines::LinePort` (raw spans over serial, SAToP or
//! the in-process pair) and `media::dahdi_lines::DahdiLinePort` (DAHDI
//! B-channels); [`SimE1`] is a simulated E1 source for tests and benches.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// One E1 frame: 32 timeslots (G.704 §2.3).
pub type E1Frame = [u8; 32];

/// E1 frames per second per span (G.704: 125 µs frames).
pub const FRAMES_PER_SECOND: u64 = 8000;

/// The line side of a media thread.
pub trait TdmPort {
    /// A file descriptor that becomes readable when frames are due; the
    /// engine registers it with its poll. `None`: the engine calls
    /// [`Self::service`] on every turn of its loop (synchronous tests).
    fn raw_fd(&self) -> Option<RawFd>;

    /// Hands over every frame available now: for each, `on_frame(span, rx,
    /// tx)` with `span` the index in the engine's span list; on return `tx`
    /// holds TS1..15 and TS17..31 to send (the span writes TS0 and TS16).
    /// Returns the number of frames handled. Must not block.
    fn service(
        &mut self,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    ) -> io::Result<usize>;
}

/// A boxed port is a port (the daemon picks the line side at start-up:
/// raw spans or DAHDI).
impl<T: TdmPort + ?Sized> TdmPort for Box<T> {
    fn raw_fd(&self) -> Option<RawFd> {
        (**self).raw_fd()
    }

    fn service(
        &mut self,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    ) -> io::Result<usize> {
        (**self).service(on_frame)
    }
}

/// What a [`SimE1`] line carries: it fills each received frame and sees
/// each frame sent back.
pub trait FrameSource {
    /// The frame "received" on `span` as frame number `frame_no`.
    fn rx_frame(&mut self, span: usize, frame_no: u64, rx: &mut E1Frame);
    /// The frame the engine sends back for it.
    fn tx_frame(&mut self, span: usize, frame_no: u64, tx: &E1Frame);
}

/// How a [`SimE1`] is clocked.
enum Clock {
    /// Each `service` call delivers this many frames per span.
    Manual { frames_per_service: u32 },
    /// A timerfd fires every millisecond; each expiry is 8 frames per span.
    Timer(TimerFd),
}

/// A simulated E1 line of `spans` spans; see [`FrameSource`].
pub struct SimE1<S> {
    spans: usize,
    frame_no: u64,
    clock: Clock,
    pub source: S,
}

/// The most a timer-clocked [`SimE1`] catches up in one service (100 ms):
/// after a longer stall the missed frames are lost, as on a real line.
const MAX_CATCH_UP_MS: u64 = 100;

impl<S: FrameSource> SimE1<S> {
    /// Driven synchronously: every `service` is `frames_per_service` frames.
    pub fn manual(spans: usize, frames_per_service: u32, source: S) -> Self {
        SimE1 {
            spans,
            frame_no: 0,
            clock: Clock::Manual { frames_per_service },
            source,
        }
    }

    /// Clocked in real time by a 1 ms timerfd (a stand-in for a line card's
    /// interrupt).
    pub fn timed(spans: usize, source: S) -> io::Result<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        fd.set(
            Expiration::Interval(TimeSpec::new(0, 1_000_000)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(SimE1 {
            spans,
            frame_no: 0,
            clock: Clock::Timer(fd),
            source,
        })
    }

    /// Frames delivered per span so far.
    pub fn frames(&self) -> u64 {
        self.frame_no
    }

    fn run(&mut self, frames: u64, on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame)) {
        let mut rx = [0u8; 32];
        let mut tx = [0u8; 32];
        for _ in 0..frames {
            for span in 0..self.spans {
                self.source.rx_frame(span, self.frame_no, &mut rx);
                on_frame(span, &rx, &mut tx);
                self.source.tx_frame(span, self.frame_no, &tx);
            }
            self.frame_no += 1;
        }
    }
}

impl<S: FrameSource> TdmPort for SimE1<S> {
    fn raw_fd(&self) -> Option<RawFd> {
        match &self.clock {
            Clock::Manual { .. } => None,
            Clock::Timer(fd) => Some(fd.as_fd().as_raw_fd()),
        }
    }

    fn service(
        &mut self,
        on_frame: &mut dyn FnMut(usize, &E1Frame, &mut E1Frame),
    ) -> io::Result<usize> {
        let frames = match &self.clock {
            Clock::Manual { frames_per_service } => *frames_per_service as u64,
            Clock::Timer(fd) => {
                let mut exp = [0u8; 8];
                match nix::unistd::read(fd.as_fd(), &mut exp) {
                    Ok(8) => u64::from_ne_bytes(exp).min(MAX_CATCH_UP_MS) * 8,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => 0,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.run(frames, on_frame);
        Ok(frames as usize * self.spans)
    }
}
