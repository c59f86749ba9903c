//! `serial`: the unframed E1 octet stream on a tty (DESIGN.md §5).
//!
//! A synchronous serial card (or a USB E1 adapter) presents the 2.048 Mbit/s
//! line as a character device: octets in line order, MSB first, with no
//! frame boundaries. tdmgw does the framing; this driver only moves octets.
//!
//! [`SerialTty`] is the device: opened with `O_NONBLOCK | O_NOCTTY`, raw
//! mode (`cfmakeraw`: no echo, no line editing, no CR/LF mapping, 8 bits),
//! receiver on, modem lines ignored (`CLOCAL`), no flow control (neither
//! `CRTSCTS` nor XON/XOFF: the line clock is the only pacing), `VMIN = 0`,
//! and the configured baud rate (a standard `Bnnn` rate, or any rate through
//! Linux `termios2` / `BOTHER`, e.g. 2 048 000). Reads and writes never
//! block; a write the driver cannot take whole keeps its remainder in a
//! fixed buffer that goes out first next time (short writes counted; what
//! does not fit is dropped and counted as a transmit overrun).
//!
//! [`SerialPort`] adds the line timing of DESIGN.md §5 on top, in the same
//! shape as the SAToP port so the media thread drives both alike:
//!
//! - on READABLE: [`SerialPort::recv_ready`]`(now_us, exchange)` until it
//!   returns `Ok(true)` (drained; mio is edge-triggered); on
//!   WRITABLE (register it only while [`SerialPort::has_pending`]):
//!   [`SerialPort::write_ready`]; at [`SerialPort::poll_timeout`]:
//!   [`SerialPort::handle_timeout`]`(now_us, exchange)`; then drain
//!   [`SerialPort::poll_event`].
//! - `exchange(rx, tx)`: `rx` is received line octets in any amount (feed
//!   them to the span's receive side), `tx` is a whole number of 32-octet
//!   frames to fill with `emit_frame`. In loop timing `tx` holds one frame
//!   for every 32 octets received (one frame out per frame in); in internal
//!   timing, 8 frames per millisecond of our timer. Either may be empty
//!   (a read shorter than a frame; frames held back by the pacer going out
//!   on the timer). `tx` must be filled entirely.
//! - When nothing has been received for 1.5 ms the port free-runs: every
//!   millisecond `exchange` gets 256 zero octets as `rx` (no pulses on the
//!   line, so the span's own LOS detector sees what a dead line gives) and
//!   256 octets of `tx` to fill. After `los_ms` without data
//!   [`SerialEvent::Los`]`(true)`; the first octets received clear it.
//!
//! [`SerialPort::open`] allocates every buffer; nothing allocates after.

use crate::line::driver::timing::{Pacer, Timing};
use crate::line::e1::FRAME_OCTETS;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::termios::{
    ControlFlags, InputFlags, SetArg, SpecialCharacterIndices, cfmakeraw, tcgetattr, tcsetattr,
};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The E1 line rate in octets per millisecond (2.048 Mbit/s).
pub const OCTETS_PER_MS: usize = 256;
const FRAME_US: u64 = 125;
const FREE_RUN_US: u64 = 1000;
/// Default: LOS after 10 ms without a single octet.
pub const DEFAULT_LOS_MS: u16 = 10;
/// Default receive chunk: 4 ms of line.
pub const DEFAULT_READ_OCTETS: usize = 1024;
/// Default transmit remainder buffer: 16 ms of line.
pub const DEFAULT_TX_BUFFER_OCTETS: usize = 4096;
/// Reads per `recv_ready` before giving the loop back.
const READ_BUDGET: usize = 16;
const EVENT_RING: usize = 8;

nix::ioctl_read_bad!(tcgets2, nix::libc::TCGETS2, nix::libc::termios2);
nix::ioctl_write_ptr_bad!(tcsets2, nix::libc::TCSETS2, nix::libc::termios2);

/// Why the tty could not be opened or used.
#[derive(Debug)]
pub enum SerialError {
    /// Inconsistent parameters (config validation should refuse them).
    Params(&'static str),
    /// open() failed: no such device, permissions, busy.
    Open { device: PathBuf, source: Errno },
    /// Setting raw mode or the baud rate failed: not a tty, or the driver
    /// refuses the rate.
    Termios {
        device: PathBuf,
        what: &'static str,
        source: Errno,
    },
    /// read/write failed (not EAGAIN): the device went away (EIO on a
    /// hung-up tty) or is broken.
    Io { device: PathBuf, source: Errno },
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialError::Params(m) => write!(f, "serial span parameters: {m}"),
            SerialError::Open { device, source } => {
                write!(f, "cannot open {}: {source}", device.display())
            }
            SerialError::Termios {
                device,
                what,
                source,
            } => write!(f, "{}: {what} failed: {source}", device.display()),
            SerialError::Io { device, source } => write!(f, "{}: {source}", device.display()),
        }
    }
}

impl std::error::Error for SerialError {}

/// What the tty layer counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SerialStats {
    pub octets_received: u64,
    pub octets_sent: u64,
    /// Writes the driver took only part of (the rest was kept).
    pub short_writes: u64,
    /// Octets dropped because the remainder buffer was full.
    pub tx_overrun_octets: u64,
    /// Frames handed to `exchange` for filling.
    pub frames_out: u64,
    /// Free-run ticks (no data for 1.5 ms) and internal-timing ticks.
    pub timer_ticks: u64,
    /// Timer ticks given up after a stall of the caller.
    pub timer_slips: u64,
    /// Loop-timed frames held back by the pacer (far end too fast).
    pub frames_paced: u64,
    pub los_entries: u64,
    pub events_dropped: u64,
}

/// A raw, non-blocking tty with a fixed transmit remainder buffer.
pub struct SerialTty {
    fd: OwnedFd,
    device: PathBuf,
    pending: Vec<u8>,
    pending_start: usize,
    pending_len: usize,
    stats: SerialStats,
}

impl fmt::Debug for SerialTty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialTty")
            .field("device", &self.device)
            .field("pending", &self.pending_len)
            .finish()
    }
}

impl SerialTty {
    /// Opens `device` non-blocking and sets raw mode at `baud`.
    pub fn open(
        device: &Path,
        baud: u32,
        tx_buffer_octets: usize,
    ) -> Result<SerialTty, SerialError> {
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = open(device, flags, Mode::empty()).map_err(|source| SerialError::Open {
            device: device.to_path_buf(),
            source,
        })?;
        SerialTty::from_fd(fd, device, baud, tx_buffer_octets)
    }

    /// Takes an open tty (e.g. one end of a pty pair), sets it
    /// non-blocking and raw at `baud`. `device` names it in logs.
    pub fn from_fd(
        fd: OwnedFd,
        device: &Path,
        baud: u32,
        tx_buffer_octets: usize,
    ) -> Result<SerialTty, SerialError> {
        if tx_buffer_octets == 0 {
            return Err(SerialError::Params("the transmit buffer needs room"));
        }
        let device = device.to_path_buf();
        let termios_err = |what, source| SerialError::Termios {
            device: device.clone(),
            what,
            source,
        };
        let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| termios_err("F_GETFL", e))?;
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(|e| termios_err("F_SETFL O_NONBLOCK", e))?;
        let mut t = tcgetattr(&fd).map_err(|e| termios_err("tcgetattr", e))?;
        cfmakeraw(&mut t);
        // cfmakeraw leaves these: no flow control of any kind, modem lines
        // ignored, receiver on; reads return what is there.
        t.input_flags &= !(InputFlags::IXOFF | InputFlags::IXANY | InputFlags::IXON);
        t.control_flags &= !ControlFlags::CRTSCTS;
        t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD;
        t.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
        t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        tcsetattr(&fd, SetArg::TCSANOW, &t).map_err(|e| termios_err("tcsetattr raw", e))?;
        set_baud(&fd, baud).map_err(|e| termios_err("setting the baud rate (termios2)", e))?;
        Ok(SerialTty {
            fd,
            device,
            pending: vec![0; tx_buffer_octets],
            pending_start: 0,
            pending_len: 0,
            stats: SerialStats::default(),
        })
    }

    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Reads what is there into `buf`; `Ok(0)` when nothing is (EAGAIN).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, SerialError> {
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(n) => {
                    self.stats.octets_received += n as u64;
                    return Ok(n);
                }
                Err(Errno::EAGAIN) => return Ok(0),
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(SerialError::Io {
                        device: self.device.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Queues `octets` behind any remainder and writes as much as the tty
    /// takes; the rest is kept (up to the buffer) for [`flush`](Self::flush).
    pub fn write(&mut self, octets: &[u8]) -> Result<(), SerialError> {
        let mut rest = octets;
        if self.pending_len == 0 {
            let n = self.write_some(rest)?;
            if n == rest.len() {
                return Ok(());
            }
            self.stats.short_writes += 1;
            rest = &rest[n..];
        }
        self.keep(rest);
        self.flush().map(|_| ())
    }

    /// Writes the kept remainder; true when nothing is left.
    pub fn flush(&mut self) -> Result<bool, SerialError> {
        while self.pending_len > 0 {
            let cap = self.pending.len();
            let end = (self.pending_start + self.pending_len).min(cap);
            let chunk_len = end - self.pending_start;
            let n = {
                let chunk = &self.pending[self.pending_start..end];
                write_fd(&self.fd, chunk).map_err(|source| SerialError::Io {
                    device: self.device.clone(),
                    source,
                })?
            };
            self.stats.octets_sent += n as u64;
            self.pending_start = (self.pending_start + n) % cap;
            self.pending_len -= n;
            if n < chunk_len {
                return Ok(false);
            }
        }
        self.pending_start = 0;
        Ok(true)
    }

    /// Octets waiting for the tty to take them.
    pub fn pending(&self) -> usize {
        self.pending_len
    }

    pub fn stats(&self) -> SerialStats {
        self.stats
    }

    fn write_some(&mut self, octets: &[u8]) -> Result<usize, SerialError> {
        let n = write_fd(&self.fd, octets).map_err(|source| SerialError::Io {
            device: self.device.clone(),
            source,
        })?;
        self.stats.octets_sent += n as u64;
        Ok(n)
    }

    fn keep(&mut self, octets: &[u8]) {
        let cap = self.pending.len();
        let room = cap - self.pending_len;
        let take = octets.len().min(room);
        if take < octets.len() {
            // The tty is not keeping up with the line: drop the newest.
            if self.stats.tx_overrun_octets == 0 {
                warn!(device = %self.device.display(), "serial: transmit buffer full, dropping octets (logged once)");
            }
            self.stats.tx_overrun_octets += (octets.len() - take) as u64;
        }
        for &o in &octets[..take] {
            self.pending[(self.pending_start + self.pending_len) % cap] = o;
            self.pending_len += 1;
        }
    }
}

/// write(2), EAGAIN as 0 octets, EINTR retried.
fn write_fd(fd: &OwnedFd, octets: &[u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::write(fd, octets) {
            Ok(n) => return Ok(n),
            Err(Errno::EAGAIN) => return Ok(0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Any baud rate on Linux: `termios2` with `BOTHER` (the rate in
/// `c_ispeed`/`c_ospeed`), which also covers the standard ones.
fn set_baud(fd: &OwnedFd, baud: u32) -> Result<(), Errno> {
    let mut t2 = std::mem::MaybeUninit::<nix::libc::termios2>::zeroed();
    // SAFETY: TCGETS2 fills a termios2 the kernel defines with the same
    // layout as libc's; the fd is a tty we own.
    let mut t2 = unsafe {
        tcgets2(fd.as_raw_fd(), t2.as_mut_ptr())?;
        t2.assume_init()
    };
    t2.c_cflag &= !nix::libc::CBAUD;
    t2.c_cflag |= nix::libc::BOTHER;
    t2.c_ispeed = baud;
    t2.c_ospeed = baud;
    // SAFETY: as above; the struct was filled by TCGETS2 and only the
    // speed fields changed.
    unsafe { tcsets2(fd.as_raw_fd(), &t2) }?;
    Ok(())
}

impl AsRawFd for SerialTty {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SerialTty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What a serial span needs: plain values from the board profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialParams {
    pub device: PathBuf,
    pub baud: u32,
    pub timing: Timing,
    /// No octet for this long is LOS.
    pub los_ms: u16,
    /// Largest read per call (and so the most `rx` in one `exchange`).
    pub read_octets: usize,
    /// Transmit remainder buffer.
    pub tx_buffer_octets: usize,
}

impl SerialParams {
    /// Loop timing, LOS after 10 ms, 4 ms reads, 16 ms transmit buffer.
    pub fn new(device: impl Into<PathBuf>, baud: u32) -> SerialParams {
        SerialParams {
            device: device.into(),
            baud,
            timing: Timing::Loop,
            los_ms: DEFAULT_LOS_MS,
            read_octets: DEFAULT_READ_OCTETS,
            tx_buffer_octets: DEFAULT_TX_BUFFER_OCTETS,
        }
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.baud == 0 {
            return Err("baud must not be 0");
        }
        if self.los_ms == 0 {
            return Err("los_ms must be at least 1");
        }
        if self.read_octets < FRAME_OCTETS || self.tx_buffer_octets < FRAME_OCTETS {
            return Err("buffers must hold at least one E1 frame");
        }
        Ok(())
    }
}

/// State changes of a serial span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialEvent {
    /// No octets for `los_ms` (`true`), or octets again (`false`).
    Los(bool),
}

/// A serial E1 span with line timing; see the module doc.
pub struct SerialPort {
    tty: SerialTty,
    timing: Timing,
    los_us: u64,
    rx_buf: Vec<u8>,
    /// Frames to fill: room for one read's worth plus the free-run tick.
    tx_buf: Vec<u8>,
    zeros: [u8; OCTETS_PER_MS],
    /// Received octets not yet matched by a frame out (loop timing).
    rx_phase: usize,
    /// Frames owed to the far end but held back by the pacer.
    frames_owed: u64,
    pacer: Pacer,
    last_rx_us: u64,
    next_tick_us: u64,
    los: bool,
    events: [Option<SerialEvent>; EVENT_RING],
    ev_head: usize,
    ev_len: usize,
    stats: SerialStats,
}

impl fmt::Debug for SerialPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialPort")
            .field("tty", &self.tty)
            .field("timing", &self.timing)
            .field("los", &self.los)
            .finish()
    }
}

impl SerialPort {
    /// Opens `params.device`; the free-run timer starts at `now_us`.
    pub fn open(params: &SerialParams, now_us: u64) -> Result<SerialPort, SerialError> {
        params.check().map_err(SerialError::Params)?;
        let tty = SerialTty::open(&params.device, params.baud, params.tx_buffer_octets)?;
        Ok(SerialPort::with_tty(tty, params, now_us))
    }

    /// Wraps an already open tty (e.g. a pty from `openpty`), setting it
    /// up as [`open`](Self::open) does.
    pub fn from_fd(
        fd: OwnedFd,
        params: &SerialParams,
        now_us: u64,
    ) -> Result<SerialPort, SerialError> {
        params.check().map_err(SerialError::Params)?;
        let tty = SerialTty::from_fd(fd, &params.device, params.baud, params.tx_buffer_octets)?;
        Ok(SerialPort::with_tty(tty, params, now_us))
    }

    fn with_tty(tty: SerialTty, params: &SerialParams, now_us: u64) -> SerialPort {
        let read = params.read_octets;
        let tx_frames = read.div_ceil(FRAME_OCTETS) + OCTETS_PER_MS / FRAME_OCTETS;
        SerialPort {
            tty,
            timing: params.timing,
            los_us: u64::from(params.los_ms) * 1000,
            rx_buf: vec![0; read],
            tx_buf: vec![0; tx_frames * FRAME_OCTETS],
            zeros: [0; OCTETS_PER_MS],
            rx_phase: 0,
            frames_owed: 0,
            // Bursts of up to 8 ms of frames, as the transmit buffer allows.
            pacer: Pacer::new(FRAME_US, 64, now_us),
            last_rx_us: now_us,
            next_tick_us: now_us + FREE_RUN_US,
            los: false,
            events: [None; EVENT_RING],
            ev_head: 0,
            ev_len: 0,
            stats: SerialStats::default(),
        }
    }

    /// The tty is readable: reads (up to a budget) and exchanges. Returns
    /// `true` when the tty is drained (EAGAIN seen), `false` when the budget
    /// ran out: with edge-triggered mio, call again before waiting.
    pub fn recv_ready(
        &mut self,
        now_us: u64,
        mut exchange: impl FnMut(&[u8], &mut [u8]),
    ) -> Result<bool, SerialError> {
        for _ in 0..READ_BUDGET {
            let n = self.tty.read(&mut self.rx_buf)?;
            if n == 0 {
                return Ok(true);
            }
            self.last_rx_us = now_us;
            if self.los {
                self.set_los(false);
            }
            let frames = match self.timing {
                Timing::Loop => {
                    // One frame out per frame in; the free-run timer waits.
                    self.next_tick_us = now_us + FREE_RUN_US * 3 / 2;
                    let total = self.rx_phase + n;
                    self.rx_phase = total % FRAME_OCTETS;
                    self.frames_owed += (total / FRAME_OCTETS) as u64;
                    self.paced_frames(now_us)
                }
                Timing::Internal => 0,
            };
            let len = frames * FRAME_OCTETS;
            exchange(&self.rx_buf[..n], &mut self.tx_buf[..len]);
            self.send(len)?;
        }
        Ok(false)
    }

    /// The timer: free-run ticks (or internal timing), held-back frames.
    pub fn handle_timeout(
        &mut self,
        now_us: u64,
        mut exchange: impl FnMut(&[u8], &mut [u8]),
    ) -> Result<(), SerialError> {
        let mut ticks = 0u32;
        while now_us >= self.next_tick_us {
            ticks += 1;
            self.next_tick_us += FREE_RUN_US;
            if ticks > 64 {
                self.stats.timer_slips += 1;
                self.next_tick_us = now_us + FREE_RUN_US;
                break;
            }
        }
        if !self.los && now_us.saturating_sub(self.last_rx_us) >= self.los_us {
            self.set_los(true);
        }
        let silent = now_us.saturating_sub(self.last_rx_us) >= FREE_RUN_US * 3 / 2;
        for _ in 0..ticks.min(64) {
            self.stats.timer_ticks += 1;
            let rx: &[u8] = if silent { &self.zeros } else { &[] };
            exchange(rx, &mut self.tx_buf[..OCTETS_PER_MS]);
            self.send(OCTETS_PER_MS)?;
        }
        if self.timing == Timing::Loop && self.frames_owed > 0 {
            let frames = self.paced_frames(now_us);
            let len = frames * FRAME_OCTETS;
            if len > 0 {
                exchange(&[], &mut self.tx_buf[..len]);
                self.send(len)?;
            }
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_tick_us;
        if self.timing == Timing::Loop && self.frames_owed > 0 {
            t = t.min(self.pacer.ready_at());
        }
        if !self.los {
            t = t.min(self.last_rx_us + self.los_us);
        }
        t
    }

    /// The tty is writable again: sends the kept remainder.
    pub fn write_ready(&mut self) -> Result<(), SerialError> {
        self.tty.flush().map(|_| ())
    }

    /// Octets kept from short writes: register WRITABLE while non-zero.
    pub fn has_pending(&self) -> bool {
        self.tty.pending() > 0
    }

    pub fn los(&self) -> bool {
        self.los
    }

    pub fn poll_event(&mut self) -> Option<SerialEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENT_RING;
        self.ev_len -= 1;
        e
    }

    /// The tty's counters merged with the port's.
    pub fn stats(&self) -> SerialStats {
        let t = self.tty.stats();
        SerialStats {
            octets_received: t.octets_received,
            octets_sent: t.octets_sent,
            short_writes: t.short_writes,
            tx_overrun_octets: t.tx_overrun_octets,
            ..self.stats
        }
    }

    pub fn tty(&self) -> &SerialTty {
        &self.tty
    }

    /// Frames the pacer lets go now, at most what `tx_buf` holds.
    fn paced_frames(&mut self, now_us: u64) -> usize {
        let room = (self.tx_buf.len() / FRAME_OCTETS) as u64;
        let mut n = 0;
        while n < self.frames_owed.min(room) && self.pacer.take(now_us) {
            n += 1;
        }
        self.frames_owed -= n;
        if self.frames_owed > 0 {
            self.stats.frames_paced += 1;
        }
        // More owed than the buffer of 8 ms holds means the far end runs
        // far faster than any E1 clock: forget the excess.
        self.frames_owed = self.frames_owed.min(64);
        n as usize
    }

    fn send(&mut self, len: usize) -> Result<(), SerialError> {
        if len == 0 {
            return Ok(());
        }
        self.stats.frames_out += (len / FRAME_OCTETS) as u64;
        self.tty.write(&self.tx_buf[..len])
    }

    fn set_los(&mut self, on: bool) {
        self.los = on;
        if on {
            self.stats.los_entries += 1;
            warn!(device = %self.tty.device.display(), "serial: no octets from the line (LOS), free-running");
        } else {
            info!(device = %self.tty.device.display(), "serial: octets from the line again, LOS cleared");
        }
        if self.ev_len == EVENT_RING {
            self.stats.events_dropped += 1;
            return;
        }
        self.events[(self.ev_head + self.ev_len) % EVENT_RING] = Some(SerialEvent::Los(on));
        self.ev_len += 1;
    }
}

impl AsRawFd for SerialPort {
    fn as_raw_fd(&self) -> RawFd {
        self.tty.as_raw_fd()
    }
}

impl AsFd for SerialPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tty.as_fd()
    }
}
