//! The media thread's side of `tdmgw trace` (issue 8 §3): copies of the
//! RTP and RTCP datagrams of traced spans, handed to the control plane
//! through a preallocated SPSC ring (DESIGN.md §1).
//!
//! # Contract
//!
//! - [`trace_tap`] allocates everything once: the ring of
//!   [`TAP_RING_DEFAULT`] fixed-size [`TapPacket`] slots (each holds up to
//!   [`TAP_SNAP`] octets of a datagram and its length on the wire) and a
//!   flag per span number. It returns the media thread's [`TraceTap`] and
//!   the control plane's [`TapControl`].
//! - [`crate::media::engine::MediaLoop::set_trace_tap`] gives the loop its
//!   tap (before the thread starts) and fills the tap's per-channel table
//!   of span and local addresses.
//! - Untraced, the media path pays one branch per datagram
//!   ([`TraceTap::on`], a plain `bool`) and one relaxed atomic load per
//!   loop turn ([`TraceTap::refresh`]). Traced, a datagram of a traced span
//!   is copied into a slot on the stack and pushed; a full ring drops and
//!   counts it ([`TapControl::overflows`]), it never waits. Nothing
//!   allocates, locks or makes a system call except the vDSO clock read
//!   that timestamps the copy.
//! - The control plane turns spans on and off ([`TapControl::set_span`])
//!   and drains the ring ([`TapControl::try_pop`]) often enough: 1,024
//!   slots are about 170 ms of a full E1 (30 channels, 20 ms packets, both
//!   ways, RTCP), 40 ms of four.
//!
//! Memory: `TAP_RING_DEFAULT × size_of::<TapPacket>()` (about 560 KiB),
//! listed in the media thread's budget when the tap is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use super::ring::{Consumer, Producer, ring};

/// Octets of a datagram a slot keeps (RTP of G.711 at 60 ms is 492).
pub const TAP_SNAP: usize = 512;
/// Slots of the ring.
pub const TAP_RING_DEFAULT: usize = 1024;

/// One datagram copied by the media thread.
#[derive(Clone, Copy)]
pub struct TapPacket {
    pub at: SystemTime,
    /// The channel's span number.
    pub span: u16,
    /// We sent it (else received).
    pub sent: bool,
    /// On the RTCP socket (else RTP).
    pub rtcp: bool,
    /// Our socket's address.
    pub local: SocketAddr,
    /// The far end's (destination when sent, source when received).
    pub remote: SocketAddr,
    /// Octets kept in `data`.
    pub len: u16,
    /// The datagram's length on the wire (`> len` when cut).
    pub orig_len: u16,
    pub data: [u8; TAP_SNAP],
}

impl TapPacket {
    /// The octets kept.
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len).min(TAP_SNAP)]
    }
}

impl std::fmt::Debug for TapPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPacket")
            .field("span", &self.span)
            .field("sent", &self.sent)
            .field("rtcp", &self.rtcp)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("len", &self.len)
            .field("orig_len", &self.orig_len)
            .finish()
    }
}

struct Shared {
    /// Indexed by span number.
    spans: Box<[AtomicBool]>,
    /// Some span is on.
    any: AtomicBool,
}

/// The media thread's half (module doc).
pub struct TraceTap {
    shared: Arc<Shared>,
    tx: Option<Producer<TapPacket>>,
    on: bool,
    /// Per channel index: span number, RTP and RTCP socket addresses.
    channels: Box<[(u16, SocketAddr, SocketAddr)]>,
}

/// The control plane's half (module doc).
pub struct TapControl {
    shared: Arc<Shared>,
    rx: Consumer<TapPacket>,
}

/// A tap for span numbers up to `max_span` and its control (the only
/// allocations; module doc).
pub fn trace_tap(max_span: u16, capacity: usize) -> (TraceTap, TapControl) {
    let shared = Arc::new(Shared {
        spans: (0..=max_span).map(|_| AtomicBool::new(false)).collect(),
        any: AtomicBool::new(false),
    });
    let (tx, rx) = ring(capacity.max(1));
    (
        TraceTap {
            shared: shared.clone(),
            tx: Some(tx),
            on: false,
            channels: Box::new([]),
        },
        TapControl { shared, rx },
    )
}

impl TraceTap {
    /// A tap nothing can turn on (the loop's default).
    pub fn off() -> TraceTap {
        TraceTap {
            shared: Arc::new(Shared {
                spans: Box::new([]),
                any: AtomicBool::new(false),
            }),
            tx: None,
            on: false,
            channels: Box::new([]),
        }
    }

    /// Slots of the ring (0 for [`TraceTap::off`]).
    pub fn capacity(&self) -> usize {
        self.tx.as_ref().map_or(0, Producer::capacity)
    }

    /// Sets the per-channel table: channel index → (span number, RTP
    /// address, RTCP address). Start-up only (allocates).
    pub fn set_channels(&mut self, channels: Vec<(u16, SocketAddr, SocketAddr)>) {
        self.channels = channels.into_boxed_slice();
    }

    /// Once per loop turn: is any span traced?
    #[inline]
    pub fn refresh(&mut self) {
        self.on = self.tx.is_some() && self.shared.any.load(Ordering::Relaxed);
    }

    /// The branch the media path takes per datagram.
    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Copies a datagram of channel `index` if its span is traced (call
    /// only when [`TraceTap::on`]).
    #[cold]
    pub fn packet(
        &mut self,
        index: usize,
        rtcp: bool,
        sent: bool,
        remote: SocketAddr,
        datagram: &[u8],
    ) {
        let Some(&(span, rtp_addr, rtcp_addr)) = self.channels.get(index) else {
            return;
        };
        let traced = self
            .shared
            .spans
            .get(usize::from(span))
            .is_some_and(|f| f.load(Ordering::Relaxed));
        let Some(tx) = self.tx.as_mut().filter(|_| traced) else {
            return;
        };
        let len = datagram.len().min(TAP_SNAP);
        let mut p = TapPacket {
            at: SystemTime::now(),
            span,
            sent,
            rtcp,
            local: if rtcp { rtcp_addr } else { rtp_addr },
            remote,
            len: len as u16,
            orig_len: datagram.len().min(usize::from(u16::MAX)) as u16,
            data: [0; TAP_SNAP],
        };
        p.data[..len].copy_from_slice(&datagram[..len]);
        tx.push_or_count(p);
    }
}

impl TapControl {
    /// Traces span `span` (`on`) or stops.
    pub fn set_span(&self, span: u16, on: bool) {
        if let Some(f) = self.shared.spans.get(usize::from(span)) {
            f.store(on, Ordering::Relaxed);
        }
        let any = self.shared.spans.iter().any(|f| f.load(Ordering::Relaxed));
        self.shared.any.store(any, Ordering::Relaxed);
    }

    /// Whether span `span` is traced.
    pub fn span_on(&self, span: u16) -> bool {
        self.shared
            .spans
            .get(usize::from(span))
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// The next copied datagram.
    pub fn try_pop(&mut self) -> Option<TapPacket> {
        self.rx.try_pop()
    }

    /// Datagrams dropped on a full ring so far.
    pub fn overflows(&self) -> u64 {
        self.rx.overflows()
    }
}

impl Default for TraceTap {
    fn default() -> Self {
        TraceTap::off()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const UNBOUND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

    fn tap() -> (TraceTap, TapControl) {
        let (mut t, c) = trace_tap(3, 4);
        let a = |p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
        t.set_channels(vec![(1, a(30002), a(30003)), (3, a(30130), a(30131))]);
        (t, c)
    }

    #[test]
    fn nothing_is_copied_until_a_span_is_on() {
        let (mut t, mut c) = tap();
        t.refresh();
        assert!(!t.on());
        c.set_span(3, true);
        t.refresh();
        assert!(t.on());
        let far: SocketAddr = "127.0.0.1:9".parse().unwrap();
        t.packet(0, false, true, far, &[0x80; 172]);
        t.packet(1, true, false, far, &[0x81; 600]);
        let p = c.try_pop().expect("span 3 is traced");
        assert_eq!((p.span, p.rtcp, p.sent, p.remote), (3, true, false, far));
        assert_eq!(p.local.port(), 30131);
        assert_eq!((p.len, p.orig_len), (TAP_SNAP as u16, 600));
        assert!(p.payload().iter().all(|&o| o == 0x81));
        assert!(c.try_pop().is_none(), "span 1 is not traced");
        c.set_span(3, false);
        t.refresh();
        assert!(!t.on());
    }

    #[test]
    fn a_full_ring_is_counted_not_waited_on() {
        let (mut t, c) = tap();
        c.set_span(1, true);
        t.refresh();
        for _ in 0..10 {
            t.packet(0, false, true, UNBOUND, &[1, 2, 3]);
        }
        assert_eq!(c.overflows(), 6);
        assert!(c.span_on(1) && !c.span_on(2) && !c.span_on(200));
    }

    #[test]
    fn the_off_tap_never_turns_on() {
        let mut t = TraceTap::off();
        t.refresh();
        assert!(!t.on());
        assert_eq!(t.capacity(), 0);
        t.packet(0, false, true, UNBOUND, &[1]);
    }
}
