//! `satop`: an E1 carried unframed in RFC 4553 SAToP packets over UDP
//! (DESIGN.md §5), one socket per span.
//!
//! The far end (a TDM-over-IP gateway on the exchange's E1, or another
//! tdmgw) sends the E1 bit stream, `payload_octets` (256 = 8 frames = 1 ms by
//! default) per packet, behind the 4-octet control word (and an RTP header
//! when the board profile asks for one). tdmgw frames and deframes the line
//! itself: what goes in and out here are raw line octets, MSB first, with no
//! assumption that a packet starts on a frame boundary.
//!
//! - [`packet`]: the wire codec (control word, RTP header), checked once.
//! - [`playout`]: the CE-bound playout (jitter) buffer.
//! - [`pw`]: [`SatopPw`], both directions of the interworking function,
//!   sans-IO: parsing, playout, loop timing, L/R bits, loss-of-packets
//!   state, counters and events.
//! - [`SatopPort`] (here): the thin I/O shell on a non-blocking UDP socket.
//!
//! # Contract for the media thread
//!
//! [`SatopPort::open`] binds the socket and allocates every buffer; after
//! that nothing allocates, locks or blocks. Register [`SatopPort::as_fd`]
//! with mio for READABLE (e.g. `mio::unix::SourceFd`). Then:
//!
//! - on READABLE: [`SatopPort::recv_ready`]`(now_us, exchange)`;
//! - when [`SatopPort::poll_timeout`] (a `now_us` deadline) is reached:
//!   [`SatopPort::handle_timeout`]`(now_us, exchange)`;
//! - after either: drain [`SatopPort::poll_event`].
//!
//! `recv_ready` returns `Ok(false)` when it stopped at its read budget with
//! datagrams possibly left (call it again before waiting: mio is
//! edge-triggered), `Ok(true)` when the socket is drained.
//!
//! `exchange(rx, tx)` is called once per played payload: `rx` is one
//! payload of received line octets (or all ones for lost or L-marked
//! packets) to feed the span's receive side, and `tx` (same length, a
//! whole number of 32-octet frames) must be filled entirely with our line
//! octets, one `emit_frame` per 32 octets; the port sends it at once. That is the
//! loop timing of DESIGN.md §5 (one packet out per packet played), and with
//! no packets the free-run timer keeps both going at one packet per period.
//! [`SatopPort::set_local_fault`] sets L while our span is in LOS/AIS.
//! `now_us` is any monotonic microsecond clock.

pub mod packet;
pub mod playout;
pub mod pw;

pub use crate::line::driver::timing::Timing;
pub use packet::{ControlWord, RtpHeader, SatopPacket, SatopPacketError};
pub use playout::{PlayoutBuffer, PlayoutStats};
pub use pw::{SatopEvent, SatopParams, SatopPw, SatopStats};

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use tracing::warn;

/// Datagrams read per [`SatopPort::recv_ready`] before giving the loop back.
const READ_BUDGET: usize = 64;
/// Receive buffer: larger than any valid packet (RTP with CSRCs and
/// padding + control word + 1024 octets), so an oversized datagram shows as
/// a wrong payload size rather than being silently truncated to a valid one.
const RX_BUF_OCTETS: usize = 2048;

/// Why the port could not be opened or used.
#[derive(Debug)]
pub enum SatopError {
    /// The parameters are inconsistent (config validation should refuse).
    Params(&'static str),
    /// Binding `local` failed (address in use, not ours).
    Bind {
        local: SocketAddr,
        source: io::Error,
    },
    /// The socket failed in a way that is not the far end's doing.
    Io {
        local: SocketAddr,
        source: io::Error,
    },
}

impl fmt::Display for SatopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SatopError::Params(m) => write!(f, "SAToP span parameters: {m}"),
            SatopError::Bind { local, source } => {
                write!(f, "cannot bind SAToP socket {local}: {source}")
            }
            SatopError::Io { local, source } => write!(f, "SAToP socket {local}: {source}"),
        }
    }
}

impl std::error::Error for SatopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SatopError::Params(_) => None,
            SatopError::Bind { source, .. } | SatopError::Io { source, .. } => Some(source),
        }
    }
}

/// Socket-level counters (the pseudowire's are in [`SatopStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SatopSocketStats {
    /// Sends refused with EAGAIN (socket buffer full): packet dropped.
    pub send_would_block: u64,
    /// Sends or receives failing transiently (ICMP errors reported back as
    /// ECONNREFUSED and the like): counted, not fatal.
    pub send_errors: u64,
    pub recv_errors: u64,
    /// `recv_ready` calls that stopped at the read budget.
    pub read_budget_exhausted: u64,
}

/// One SAToP span on a UDP socket; see the module contract.
pub struct SatopPort {
    socket: UdpSocket,
    local: SocketAddr,
    remote: SocketAddr,
    pw: SatopPw,
    rx_buf: Vec<u8>,
    play_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    socket_stats: SatopSocketStats,
    logged_send_error: bool,
}

impl fmt::Debug for SatopPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SatopPort")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("pw", &self.pw)
            .finish()
    }
}

impl SatopPort {
    /// Binds `params.local` (port 0 picks one: see [`local_addr`]) as a
    /// non-blocking socket and allocates every buffer. The free-run timer
    /// starts at `now_us`.
    ///
    /// [`local_addr`]: SatopPort::local_addr
    pub fn open(params: SatopParams, now_us: u64) -> Result<SatopPort, SatopError> {
        let pw = SatopPw::new(params, now_us).map_err(SatopError::Params)?;
        let socket = UdpSocket::bind(params.local).map_err(|source| SatopError::Bind {
            local: params.local,
            source,
        })?;
        let local = socket.local_addr().map_err(|source| SatopError::Io {
            local: params.local,
            source,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| SatopError::Io { local, source })?;
        let payload = params.payload_octets;
        Ok(SatopPort {
            socket,
            local,
            remote: params.remote,
            rx_buf: vec![0; RX_BUF_OCTETS],
            play_buf: vec![0; payload],
            tx_buf: vec![0; pw.header_len() + payload],
            pw,
            socket_stats: SatopSocketStats::default(),
            logged_send_error: false,
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Payload octets per packet: the length of `rx` and `tx` in `exchange`.
    pub fn payload_octets(&self) -> usize {
        self.pw.payload_octets()
    }

    /// The socket is readable: reads what is there (up to a budget), feeds
    /// the pseudowire and plays what became due. Returns `true` when the
    /// socket is drained (EAGAIN seen), `false` when the budget ran out with
    /// datagrams possibly left: with edge-triggered mio, call again (after
    /// other work) before waiting for the next READABLE. Errors are only
    /// local faults of the socket; everything the far end does is counted.
    pub fn recv_ready(
        &mut self,
        now_us: u64,
        mut exchange: impl FnMut(&[u8], &mut [u8]),
    ) -> Result<bool, SatopError> {
        for _ in 0..READ_BUDGET {
            match self.socket.recv_from(&mut self.rx_buf) {
                Ok((n, from)) => {
                    if from != self.remote {
                        self.pw.handle_stray(from);
                        continue;
                    }
                    // Malformed packets are counted and logged inside.
                    let _ = self.pw.handle_datagram(now_us, &self.rx_buf[..n]);
                    // Play after every packet: in loop timing the play
                    // position must move before the next one is stored.
                    self.play_due(now_us, &mut exchange)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if transient(&e) => {
                    self.socket_stats.recv_errors += 1;
                }
                Err(source) => {
                    return Err(SatopError::Io {
                        local: self.local,
                        source,
                    });
                }
            }
        }
        self.socket_stats.read_budget_exhausted += 1;
        Ok(false)
    }

    /// The deadline from [`poll_timeout`](Self::poll_timeout) is reached:
    /// free-run (or internal clock) plays.
    pub fn handle_timeout(
        &mut self,
        now_us: u64,
        mut exchange: impl FnMut(&[u8], &mut [u8]),
    ) -> Result<(), SatopError> {
        self.pw.handle_timeout(now_us);
        self.play_due(now_us, &mut exchange)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout), in the same
    /// microseconds as `now_us`. There always is one (the free-run timer).
    pub fn poll_timeout(&self) -> u64 {
        self.pw.poll_timeout()
    }

    /// Set L on our packets while our span is in LOS/AIS (RFC 4553 §4.3.1).
    pub fn set_local_fault(&mut self, fault: bool) {
        self.pw.set_local_fault(fault);
    }

    /// In the loss-of-packets state: the span's LOS.
    pub fn los(&self) -> bool {
        self.pw.los()
    }

    pub fn poll_event(&mut self) -> Option<SatopEvent> {
        self.pw.poll_event()
    }

    pub fn stats(&self) -> SatopStats {
        self.pw.stats()
    }

    pub fn socket_stats(&self) -> SatopSocketStats {
        self.socket_stats
    }

    /// The pseudowire core (read-only: state, playout buffer).
    pub fn pw(&self) -> &SatopPw {
        &self.pw
    }

    fn play_due(
        &mut self,
        now_us: u64,
        exchange: &mut impl FnMut(&[u8], &mut [u8]),
    ) -> Result<(), SatopError> {
        while self.pw.poll_play(now_us, &mut self.play_buf) {
            let header = self.pw.header_len();
            exchange(&self.play_buf, &mut self.tx_buf[header..]);
            self.pw.emit_header(&mut self.tx_buf[..header]);
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), SatopError> {
        loop {
            match self.socket.send_to(&self.tx_buf, self.remote) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The packet is lost to the far end (it plays AIS for
                    // it); waiting would stall the line.
                    self.socket_stats.send_would_block += 1;
                    return Ok(());
                }
                Err(e) if transient(&e) => {
                    self.socket_stats.send_errors += 1;
                    if !std::mem::replace(&mut self.logged_send_error, true) {
                        warn!(local = %self.local, remote = %self.remote, error = %e,
                            "SAToP: send failed, carrying on (logged once)");
                    }
                    return Ok(());
                }
                Err(source) => {
                    return Err(SatopError::Io {
                        local: self.local,
                        source,
                    });
                }
            }
        }
    }
}

/// Errors a UDP socket reports for the network's or the far end's state
/// (ICMP unreachable, no route, buffer pressure), not for our own bug.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::OutOfMemory
    ) || e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

impl AsRawFd for SatopPort {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for SatopPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/satop_packet.rs`): the datagram
/// through the codec with and without RTP, then through a pseudowire (which
/// must count, never panic), then a round trip of what parsed.
#[doc(hidden)]
pub fn fuzz_satop_packet(data: &[u8]) {
    for rtp in [false, true] {
        if let Ok(p) = SatopPacket::parse(data, rtp) {
            let mut out = [0u8; packet::RTP_OCTETS + packet::CW_OCTETS];
            let n = packet::emit_header(&p.cw, p.rtp.as_ref(), &mut out);
            let cw = ControlWord::parse([out[n - 4], out[n - 3], out[n - 2], out[n - 1]])
                .expect("emitted control word parses");
            assert_eq!(cw, p.cw);
        }
    }
    let addr: SocketAddr = ([127, 0, 0, 1], 5000).into();
    for rtp_header in [false, true] {
        let mut params = SatopParams::new(addr, addr);
        params.rtp_header = rtp_header;
        params.payload_octets = 32;
        params.playout_ms = 1;
        let mut pw = SatopPw::new(params, 0).expect("valid params");
        let mut play = [0u8; 32];
        let mut now = 0;
        // The datagram itself, then chunks of it as separate datagrams.
        let _ = pw.handle_datagram(now, data);
        for chunk in data.chunks(36 + if rtp_header { 12 } else { 0 }) {
            now += 125;
            let _ = pw.handle_datagram(now, chunk);
            pw.handle_timeout(now);
            while pw.poll_play(now, &mut play) {
                let mut hdr = [0u8; 16];
                let h = pw.header_len();
                pw.emit_header(&mut hdr[..h]);
            }
        }
        while pw.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(d in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_satop_packet(&d);
        }
    }

    #[test]
    fn fuzz_corpus_seeds_run_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/satop_packet");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("seed corpus exists") {
            fuzz_satop_packet(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 10, "seed corpus has {n} files");
    }

    #[test]
    fn seeds_parse_as_their_names_say() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/satop_packet");
        let read = |name: &str| std::fs::read(format!("{dir}/{name}")).unwrap();
        assert!(SatopPacket::parse(&read("e1_256"), false).is_ok());
        assert!(SatopPacket::parse(&read("rtp_then_cw"), true).is_ok());
        assert_eq!(
            SatopPacket::parse(&read("not_control_word"), false),
            Err(SatopPacketError::NotControlWord)
        );
        assert_eq!(
            SatopPacket::parse(&read("len_padded_32"), false)
                .unwrap()
                .payload
                .len(),
            32
        );
    }

    #[test]
    fn open_refuses_bad_params_and_binds_an_ephemeral_port() {
        let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
        let far: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut p = SatopParams::new(lo, far);
        p.payload_octets = 33;
        assert!(matches!(SatopPort::open(p, 0), Err(SatopError::Params(_))));
        let port = SatopPort::open(SatopParams::new(lo, far), 0).unwrap();
        assert_ne!(port.local_addr().port(), 0);
        assert_eq!(port.payload_octets(), 256);
        // A second bind of the same address fails with the address named.
        let mut again = SatopParams::new(port.local_addr(), far);
        again.local = port.local_addr();
        let e = SatopPort::open(again, 0).unwrap_err();
        assert!(
            e.to_string().contains(&port.local_addr().to_string()),
            "{e}"
        );
    }
}
