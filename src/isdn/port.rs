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
//!   the device, `Pending` while the device's buffers are full (the task
//!   waits, and stops checking in with the supervisor if that lasts).
//! - `Ready(Err(_))` from either means the device is gone: the task stops
//!   with `StopReason::PortFailed`.
//!
//! Implementations: [`MemoryPort`] (an in-process pair with a switch to cut
//! the link, for tests and simulations), [`DahdiPort`] (the HDLC-with-FCS
//! D-channel of a DAHDI span through tokio's `AsyncFd`) and [`RingPort`]
//! (the line layer's SPSC rings of fixed-size frame slots, behind the
//! two-method [`FrameRings`] trait, woken by an eventfd the media thread
//! signals with [`FrameSignal::signal`]: one `write(2)`, no lock, no
//! allocation).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use nix::errno::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, warn};

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
/// The port owns the span. In the daemon that is the D-channel half of a
/// split span (`DahdiSpan::split`: the media thread's `DahdiLinePort` has
/// the B-channels and reports the span's alarms); the span's D-channel
/// counters and events stay readable through [`DahdiPort::span_mut`].
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

/// The control plane's side of one span's D-channel rings (the media
/// thread owns the other side).
pub trait FrameRings {
    /// Pops the oldest received frame into `buf`; `None` when the ring is
    /// empty. A slot longer than `buf` is the implementation's to drop and
    /// count (slots are at most [`FRAME_MAX`] octets).
    fn pop_received(&mut self, buf: &mut [u8]) -> Option<usize>;
    /// Pushes one frame to send; `false` when the ring is full.
    fn push_transmit(&mut self, frame: &[u8]) -> bool;
}

/// The media thread's handle on a [`RingPort`]'s wakeup (an eventfd).
#[derive(Debug, Clone)]
pub struct FrameSignal(Arc<OwnedFd>);

impl FrameSignal {
    /// "Frames were pushed": one non-blocking `write(2)` of 1 to the
    /// eventfd; no lock, no allocation, never blocks (a saturated counter
    /// is already a pending wakeup).
    pub fn signal(&self) {
        let _ = nix::unistd::write(&*self.0, &1u64.to_ne_bytes());
    }
}

/// A frame port over [`FrameRings`]: receive pops until empty, then waits
/// for the eventfd; send pushes and counts (and drops) a frame when the
/// transmit ring is full; Q.921 recovers it like a frame lost on the line
/// (DESIGN.md §1: a full ring is counted, never waited on).
pub struct RingPort<R: FrameRings> {
    rings: R,
    wake: AsyncFd<Arc<OwnedFd>>,
    tx_full: u64,
}

impl<R: FrameRings> RingPort<R> {
    /// The port and the signal to hand to the media thread. Needs a tokio
    /// runtime (the eventfd is registered with it).
    pub fn new(rings: R) -> io::Result<(RingPort<R>, FrameSignal)> {
        // SAFETY: eventfd(2) with constant flags; a non-negative result is
        // a new descriptor that nothing else owns.
        let raw =
            unsafe { nix::libc::eventfd(0, nix::libc::EFD_NONBLOCK | nix::libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is the new eventfd (checked above), owned from here.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        // SAFETY: the AsyncFd holds an `Arc` of the eventfd, so it stays
        // open and the same for the AsyncFd's whole life.
        let wake = unsafe { AsyncFd::register_with_interest(fd.clone(), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let port = RingPort {
            rings,
            wake,
            tx_full: 0,
        };
        Ok((port, FrameSignal(fd)))
    }

    pub fn rings(&self) -> &R {
        &self.rings
    }

    /// Frames dropped because the transmit ring was full.
    pub fn tx_full(&self) -> u64 {
        self.tx_full
    }
}

impl<R: FrameRings> FramePort for RingPort<R> {
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        loop {
            if let Some(n) = self.rings.pop_received(buf) {
                return Poll::Ready(Ok(Some(n)));
            }
            let mut guard = ready!(self.wake.poll_read_ready(cx))?;
            // Reset the counter, then look at the ring again: a push after
            // this read signals anew, so no wakeup is lost.
            let mut count = [0u8; 8];
            match nix::unistd::read(&**guard.get_inner(), &mut count) {
                Ok(_) => {}
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn poll_send(&mut self, _cx: &mut Context<'_>, frame: &[u8]) -> Poll<io::Result<()>> {
        if !self.rings.push_transmit(frame) {
            self.tx_full += 1;
            if self.tx_full.is_power_of_two() {
                warn!(
                    dropped = self.tx_full,
                    "D-channel transmit ring full; frame dropped"
                );
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::future::poll_fn;
    use std::sync::Mutex;

    /// Rings as a test double: two bounded queues behind a lock.
    #[derive(Clone, Default)]
    struct TestRings {
        rx: Arc<Mutex<VecDeque<Vec<u8>>>>,
        tx: Arc<Mutex<VecDeque<Vec<u8>>>>,
    }

    impl FrameRings for TestRings {
        fn pop_received(&mut self, buf: &mut [u8]) -> Option<usize> {
            let f = self.rx.lock().unwrap().pop_front()?;
            buf[..f.len()].copy_from_slice(&f);
            Some(f.len())
        }

        fn push_transmit(&mut self, frame: &[u8]) -> bool {
            let mut tx = self.tx.lock().unwrap();
            if tx.len() == 2 {
                return false;
            }
            tx.push_back(frame.to_vec());
            true
        }
    }

    /// `task::spawn` needs `Send` ports; the kernel DAHDI port is one.
    #[test]
    fn production_ports_are_send() {
        fn send<T: Send + 'static>() {}
        send::<MemoryPort>();
        send::<DahdiPort<crate::line::driver::dahdi::LinuxChannel>>();
        send::<RingPort<TestRings>>();
        send::<FrameSignal>();
    }

    #[tokio::test]
    async fn ring_port_wakes_on_the_signal_and_counts_a_full_ring() {
        let rings = TestRings::default();
        let (mut port, signal) = RingPort::new(rings.clone()).unwrap();
        let producer = {
            let rx = rings.rx.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    rx.lock().unwrap().push_back(vec![0x02, 0x01, i]);
                    signal.signal();
                    if i % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            })
        };
        let mut buf = [0u8; FRAME_MAX];
        for i in 0..50u8 {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                poll_fn(|cx| port.poll_recv(cx, &mut buf)),
            )
            .await
            .expect("woken by the signal");
            assert_eq!(r.unwrap(), Some(3));
            assert_eq!(buf[2], i);
        }
        producer.join().unwrap();
        for _ in 0..3 {
            poll_fn(|cx| port.poll_send(cx, &[1, 2, 3])).await.unwrap();
        }
        assert_eq!(rings.tx.lock().unwrap().len(), 2);
        assert_eq!(port.tx_full(), 1);
    }
}
