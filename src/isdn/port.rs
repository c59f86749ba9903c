//! Frame ports: where a D-channel task gets its LAPD frames from and sends
//! them to.
//!
//! A frame runs from the Q.921 address field to the end of the information
//! field: no flags, no FCS (whatever carries it adds and checks those).
//!
//! [`FramePort`] is poll-style so that a task over a `Send` port is a `Send`
//! future (and one over a single-threaded test device still runs on a
//! `LocalSet`):
//!
//! - `poll_recv(cx, buf)`: `Ready(Ok(Some(n)))` hands over one received
//!   frame in `buf[..n]`; `Ready(Ok(None))`: the port is closed for good
//!   (the task stops); `Pending` registers `cx` for a wakeup. A frame is
//!   consumed only when `Ready(Ok(Some))` is returned, so dropping the
//!   caller's future between polls loses nothing. Frames longer than `buf`
//!   ([`FRAME_MAX`]) are dropped and counted by the port.
//! - `poll_send(cx, frame)`: `Ready(Ok(()))` once the frame is handed to
//!   the device, `Pending` while the device's buffers are full.
//!
//! Implementations: [`MemoryPort`] (an in-process pair with a switch to cut
//! the link, for tests and simulations) and [`DahdiPort`] (the HDLC-with-FCS
//! D-channel of a DAHDI span through tokio's `AsyncFd`). A port over the
//! line layer's SPSC rings of fixed-size frame slots polls the receive ring
//! and, when empty, polls an `Arc<Notify>`'s `notified_owned()` future kept
//! in the port (or an eventfd through `AsyncFd`) that the media thread
//! signals after pushing; `poll_send` pushes into the transmit ring and
//! counts a full ring (it must not wait on the media thread forever).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::debug;

use super::q921::N201_DEFAULT;
use crate::line::driver::dahdi::{DahdiChannel, DahdiSpan};

/// Longest frame a port hands over: address (2) + control (2) + N201.
pub const FRAME_MAX: usize = 4 + N201_DEFAULT;

/// Where a D-channel task's frames come from and go to (module doc).
pub trait FramePort {
    /// One received frame into `buf` (at least [`FRAME_MAX`] long).
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>>;

    /// Hands one frame (at most [`FRAME_MAX`] octets) to the device.
    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>>;
}

/// What a [`MemoryPort`] counts.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    pub sent: AtomicU64,
    /// Frames sent while the link was cut, or to a closed peer.
    pub dropped: AtomicU64,
    /// Received frames longer than the caller's buffer.
    pub oversize: AtomicU64,
}

/// One end of an in-process D-channel: what one end sends the other
/// receives, in order, unless the link is cut ([`MemoryLink::set_up`]).
#[derive(Debug)]
pub struct MemoryPort {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    link: MemoryLink,
}

/// The switch and counters of a [`MemoryPort`] pair (cheap to clone).
#[derive(Debug, Clone)]
pub struct MemoryLink {
    up: Arc<AtomicBool>,
    pub counters: Arc<MemoryCounters>,
}

impl MemoryLink {
    /// Cuts (`false`) or restores (`true`) the link: while cut, frames
    /// sent either way are lost, as on a line in alarm.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

impl MemoryPort {
    /// Two connected ends and the link's switch (up).
    pub fn pair() -> (MemoryPort, MemoryPort, MemoryLink) {
        let (a_tx, b_rx) = mpsc::unbounded_channel();
        let (b_tx, a_rx) = mpsc::unbounded_channel();
        let link = MemoryLink {
            up: Arc::new(AtomicBool::new(true)),
            counters: Arc::default(),
        };
        let a = MemoryPort {
            tx: a_tx,
            rx: a_rx,
            link: link.clone(),
        };
        let b = MemoryPort {
            tx: b_tx,
            rx: b_rx,
            link: link.clone(),
        };
        (a, b, link)
    }
}

impl FramePort for MemoryPort {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            let Some(frame) = ready!(self.rx.poll_recv(cx)) else {
                return Poll::Ready(Ok(None));
            };
            if let Some(dst) = buf.get_mut(..frame.len()) {
                dst.copy_from_slice(&frame);
                return Poll::Ready(Ok(Some(frame.len())));
            }
            self.link.counters.oversize.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll_send(&mut self, _cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        let c = &self.link.counters;
        if self.link.is_up() && self.tx.send(frame.to_vec()).is_ok() {
            c.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

/// The D-channel fd of a DAHDI span as a frame port: [`DahdiSpan`]'s
/// `recv_d_frame` / `send_d_frame` (FCS stripped on read, 2 spare octets on
/// write, events fetched on `ELAST`) driven by tokio's `AsyncFd` on
/// READABLE and WRITABLE. An event alone (POLLPRI) does not wake the port;
/// the driver fetches it at the next read or write, which fails with
/// `ELAST` until it has (line alarms are the span's business, not Q.921's).
///
/// The port owns the span, so this suits a span whose B-channels are not
/// served by a media thread of their own; the span's driver counters and
/// events stay readable through [`DahdiPort::span_mut`].
pub struct DahdiPort<C: DahdiChannel> {
    fd: AsyncFd<DFd<C>>,
}

/// `AsRawFd` for `AsyncFd`: the span's D-channel.
struct DFd<C: DahdiChannel>(DahdiSpan<C>);

impl<C: DahdiChannel> AsRawFd for DFd<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.d_channel_raw_fd()
    }
}

impl<C: DahdiChannel> DahdiPort<C> {
    /// Registers the span's D-channel with the current tokio runtime.
    pub fn new(span: DahdiSpan<C>) -> io::Result<DahdiPort<C>> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        // SAFETY: the fd is the span's D-channel, owned by the `DahdiSpan`
        // that the `AsyncFd` owns: it stays open and the same for the
        // AsyncFd's whole life, and `as_raw_fd` always returns it.
        let fd = unsafe { AsyncFd::register_with_interest(DFd(span), interest) };
        Ok(DahdiPort {
            fd: fd.map_err(|e| e.into_parts().1)?,
        })
    }

    pub fn span(&self) -> &DahdiSpan<C> {
        &self.fd.get_ref().0
    }

    /// The span, to drain its events and refresh its status.
    pub fn span_mut(&mut self) -> &mut DahdiSpan<C> {
        &mut self.fd.get_mut().0
    }
}

impl<C: DahdiChannel> FramePort for DahdiPort<C> {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready_mut(cx))?;
            let span = &mut guard.get_inner_mut().0;
            // Some(None): a frame longer than `buf` (the driver already
            // drops frames over D_FRAME_MAX = FRAME_MAX), skipped.
            let got = match span.recv_d_frame() {
                Ok(Some(frame)) => Some(buf.get_mut(..frame.len()).map(|dst| {
                    dst.copy_from_slice(frame);
                    frame.len()
                })),
                Ok(None) => None,
                Err(e) => return Poll::Ready(Err(io::Error::other(e))),
            };
            drain_span_events(span);
            match got {
                Some(Some(n)) => return Poll::Ready(Ok(Some(n))),
                Some(None) => {}
                // Nothing more to read: wait for the next readiness.
                None => guard.clear_ready(),
            }
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready_mut(cx))?;
            let span = &mut guard.get_inner_mut().0;
            let sent = span.send_d_frame(frame).map_err(io::Error::other)?;
            drain_span_events(span);
            if sent {
                return Poll::Ready(Ok(()));
            }
            guard.clear_ready();
        }
    }
}

/// The driver logs and counts its events itself; the D-channel task only
/// keeps its event ring from filling.
fn drain_span_events<C: DahdiChannel>(span: &mut DahdiSpan<C>) {
    while let Some(e) = span.poll_event() {
        debug!(span = span.params().span, event = ?e, "dahdi span event");
    }
}
