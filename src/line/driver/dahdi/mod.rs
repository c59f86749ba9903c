//! `dahdi`: E1 PRI spans on Linux DAHDI cards (DESIGN.md §5).
//!
//! The card frames the line and runs HDLC on timeslot 16; tdmgw sees one
//! file descriptor per channel, each opened as `/dev/dahdi/channel` and
//! bound with DAHDI_SPECIFY, all non-blocking:
//!
//! - **D-channel** (timeslot 16, channel `base_channel + 15`), which must be
//!   configured HDLC-with-FCS (`dchan`: DAHDI_SIG_HDLCFCS, or `hardhdlc`:
//!   DAHDI_SIG_HARDHDLC, which chan_dahdi also accepts); anything else is
//!   refused at open. One read returns one frame followed by 2 FCS octets,
//!   which we strip; a read shorter than 3 octets is counted and dropped.
//!   One write carries one frame plus 2 spare octets that the card
//!   overwrites with the FCS. Frames longer than 264 octets (Q.921 N201 =
//!   260 + address + control) are discarded and counted.
//! - **B-channels** (clear channels, DAHDI_SIG_CLEAR), blocksize 160: one
//!   read or write is 20 ms of A-law for one timeslot. Timeslot N is
//!   channel `base_channel + N - 1`.
//!
//! A read or write that fails with `ELAST` means an event is pending: the
//! driver fetches it with DAHDI_GETEVENT (until DAHDI_EVENT_NONE), counts
//! HDLC ABORT / OVERRUN / BADFCS, re-reads DAHDI_SPANSTAT on ALARM and
//! NOALARM, and queues a [`SpanEvent`]. Alarms and line counters come from
//! SPANSTAT as a [`SpanStatus`] ([`LineAlarms`]: LOS, LOF, LOMF, RED, AIS,
//! RAI, LOOPBACK, RECOVERING, NOT_OPEN; [`LineCounters`]: BPV, CRC-4, E-bit,
//! FAS, framing, code violations, errored seconds, IRQ misses); what the
//! driver itself counts is in [`DahdiCounters`].
//!
//! Contract for the media thread: [`DahdiSpan::open`] does all allocation
//! (the D-channel buffers, one block buffer per B-channel, a fixed event
//! ring); after that no call allocates, locks or blocks. Register
//! [`DahdiSpan::d_channel_fd`] and every [`DahdiSpan::b_channel_fd`] with
//! mio (READABLE | PRIORITY: DAHDI signals events as POLLPRI), and on
//! readiness call `recv_d_frame` / `recv_b_block` until they return
//! `Ok(None)`. Returned slices borrow the driver's buffers until the next
//! call. `send_*` return `Ok(false)` when the card's buffers are full: keep
//! the frame and retry on WRITABLE. Call `refresh_status` about once a
//! second for the counters and drain `poll_event` after every call.
//!
//! The device is behind [`DahdiBackend`] / [`DahdiChannel`]: [`LinuxDahdi`]
//! for the kernel, [`seqpacket::SeqpacketCard`] for tests.

mod device;
pub mod seqpacket;
pub mod status;
pub mod sys;

pub use device::{DahdiBackend, DahdiChannel, LinuxChannel, LinuxDahdi};
pub use status::{DahdiEvent, LineAlarms, LineCounters, SpanStatus};

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use tracing::{debug, error, info, warn};

/// Octets per B-channel block: 20 ms at 8000 samples/s.
pub const B_BLOCK_OCTETS: usize = 160;
/// Longest D-channel frame: Q.921 §5.9.3 N201 = 260 + 2 address + 2 control.
pub const D_FRAME_MAX: usize = 264;
/// FCS octets DAHDI appends on read and expects as spare room on write.
pub const D_FCS_OCTETS: usize = 2;
/// Capacity of the event ring between two `poll_event` drains.
pub const EVENT_RING: usize = 32;
/// Reads (or events) handled per `recv_*` call before giving the loop back.
const READ_BUDGET: usize = 64;

/// E1 B-channel timeslots in order: 1-15, 17-31 (TS0 framing, TS16 D).
pub fn e1_b_timeslots() -> impl Iterator<Item = u8> {
    (1..=15).chain(17..=31)
}

/// What the driver needs to open one span: plain numbers, no config types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DahdiSpanParams {
    /// DAHDI span number (1-based).
    pub span: u16,
    /// DAHDI channel number of timeslot 1.
    pub base_channel: u16,
    /// B-channels in use: the first `b_channels` of TS1-15, TS17-31.
    pub b_channels: u8,
    /// DAHDI channel number of the D-channel.
    pub d_channel: u16,
    /// Octets per B-channel read/write.
    pub block_octets: usize,
    /// B-channel kernel buffers of `block_octets` each (jitter on the card).
    pub b_numbufs: i32,
    /// D-channel kernel buffers and their size (chan_dahdi: 32 × 1024).
    pub d_numbufs: i32,
    pub d_bufsize: i32,
}

impl DahdiSpanParams {
    /// E1 PRI: D-channel in timeslot 16 (`base_channel + 15`).
    pub fn e1_pri(span: u16, base_channel: u16, b_channels: u8) -> DahdiSpanParams {
        DahdiSpanParams {
            span,
            base_channel,
            b_channels,
            d_channel: base_channel + 15,
            block_octets: B_BLOCK_OCTETS,
            b_numbufs: 4,
            d_numbufs: 32,
            d_bufsize: 1024,
        }
    }

    /// DAHDI channel number of B-channel timeslot `ts`.
    pub fn b_channo(&self, ts: u8) -> u16 {
        self.base_channel + u16::from(ts) - 1
    }

    fn check(&self) -> Result<(), DahdiError> {
        if self.span == 0 || self.base_channel == 0 {
            return Err(DahdiError::Params("DAHDI spans and channels start at 1"));
        }
        if !(1..=30).contains(&self.b_channels) {
            return Err(DahdiError::Params("an E1 carries 1-30 B-channels"));
        }
        if !(16..=8192).contains(&self.block_octets) {
            return Err(DahdiError::Params("block size must be 16-8192 octets"));
        }
        if self.d_bufsize < (D_FRAME_MAX + D_FCS_OCTETS) as i32 {
            return Err(DahdiError::Params(
                "D-channel buffers must hold a 264-octet frame",
            ));
        }
        Ok(())
    }
}

/// Why a DAHDI span could not be opened or used, by who is at fault.
#[derive(Debug)]
pub enum DahdiError {
    /// Our parameters are inconsistent (a bug in config validation).
    Params(&'static str),
    /// Opening `/dev/dahdi/channel` or DAHDI_SPECIFY failed: DAHDI not
    /// loaded, channel not configured by `dahdi_cfg`, or busy.
    Open { channo: u16, source: io::Error },
    /// An ioctl failed.
    Ioctl {
        channo: u16,
        request: &'static str,
        source: io::Error,
    },
    /// system.conf: the D-channel is not `dchan` / `hardhdlc`.
    NotHdlcFcs { channo: u16, sigtype: i32 },
    /// system.conf: a B-channel is not a clear channel (`bchan`).
    NotClear { channo: u16, sigtype: i32 },
    /// The channel belongs to another span than the board profile says.
    WrongSpan {
        channo: u16,
        expected: u16,
        found: i32,
    },
    /// A D-channel frame to send is longer than [`D_FRAME_MAX`] (caller bug).
    FrameTooLong { len: usize },
    /// No B-channel on this timeslot (caller bug).
    NoSuchTimeslot(u8),
    /// read/write failed (not EAGAIN/ELAST): the card is gone or broken.
    Io { channo: u16, source: io::Error },
    /// The channel returned end of file: the device went away.
    Closed { channo: u16 },
}

impl fmt::Display for DahdiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DahdiError::Params(m) => write!(f, "DAHDI span parameters: {m}"),
            DahdiError::Open { channo, source } => {
                write!(f, "cannot open DAHDI channel {channo}: {source}")
            }
            DahdiError::Ioctl {
                channo,
                request,
                source,
            } => {
                write!(f, "DAHDI channel {channo}: {request} failed: {source}")
            }
            DahdiError::NotHdlcFcs { channo, sigtype } => write!(
                f,
                "DAHDI channel {channo} is not a D-channel in HDLC/FCS mode \
                 (sigtype {sigtype:#x}); set dchan= in /etc/dahdi/system.conf"
            ),
            DahdiError::NotClear { channo, sigtype } => write!(
                f,
                "DAHDI channel {channo} is not a clear B-channel (sigtype {sigtype:#x}); \
                 set bchan= in /etc/dahdi/system.conf"
            ),
            DahdiError::WrongSpan {
                channo,
                expected,
                found,
            } => write!(
                f,
                "DAHDI channel {channo} is on span {found}, the board profile says span {expected}"
            ),
            DahdiError::FrameTooLong { len } => {
                write!(f, "D-channel frame of {len} octets exceeds {D_FRAME_MAX}")
            }
            DahdiError::NoSuchTimeslot(ts) => write!(f, "no B-channel on timeslot {ts}"),
            DahdiError::Io { channo, source } => write!(f, "DAHDI channel {channo}: {source}"),
            DahdiError::Closed { channo } => write!(f, "DAHDI channel {channo} closed"),
        }
    }
}

impl std::error::Error for DahdiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DahdiError::Open { source, .. }
            | DahdiError::Ioctl { source, .. }
            | DahdiError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Something the span reports besides frames and blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanEvent {
    /// The line alarms changed (after ALARM/NOALARM or a refresh).
    Alarms { old: LineAlarms, new: LineAlarms },
    /// Any other channel event: HDLC ABORT/OVERRUN/BADFCS on the D-channel,
    /// REMOVED, ... `timeslot` is 16 for the D-channel.
    Channel {
        channo: u16,
        timeslot: u8,
        event: DahdiEvent,
    },
}

/// What the driver counts itself (SPANSTAT counters are in [`SpanStatus`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DahdiCounters {
    pub d_frames_rx: u64,
    pub d_frames_tx: u64,
    pub d_octets_rx: u64,
    pub d_octets_tx: u64,
    /// D-channel reads shorter than one octet + FCS.
    pub d_short_reads: u64,
    /// Received frames over [`D_FRAME_MAX`], discarded.
    pub d_oversize: u64,
    /// D-channel writes refused because the card's buffers were full.
    pub d_tx_busy: u64,
    /// DAHDI_EVENT_ABORT / OVERRUN / BADFCS on the D-channel.
    pub hdlc_aborts: u64,
    pub hdlc_overruns: u64,
    pub hdlc_bad_fcs: u64,
    pub b_blocks_rx: u64,
    pub b_blocks_tx: u64,
    /// B-channel reads or writes of another size than the block size.
    pub b_short_blocks: u64,
    pub b_tx_busy: u64,
    /// Events fetched with GETEVENT, and events lost to a full ring.
    pub events: u64,
    pub events_dropped: u64,
    /// `recv_*` calls that stopped after `READ_BUDGET` reads without data.
    pub read_budget_exhausted: u64,
}

struct BChannel<C> {
    timeslot: u8,
    channo: u16,
    chan: C,
    rx: Box<[u8]>,
}

/// One DAHDI E1 span: the D-channel and the B-channel fds (see module doc).
pub struct DahdiSpan<C: DahdiChannel> {
    params: DahdiSpanParams,
    d: C,
    d_rx: Box<[u8]>,
    d_tx: Box<[u8]>,
    b: Vec<BChannel<C>>,
    /// Timeslot -> index into `b`, `u8::MAX` when none.
    ts_index: [u8; 32],
    status: SpanStatus,
    counters: DahdiCounters,
    events: [Option<SpanEvent>; EVENT_RING],
    ev_head: usize,
    ev_len: usize,
    /// One bit per DahdiEvent code already logged at warn (then debug).
    logged: u64,
}

/// Which channel an operation is on: the D-channel or B-channel index.
#[derive(Clone, Copy)]
enum Which {
    D,
    B(usize),
}

impl<C: DahdiChannel> DahdiSpan<C> {
    /// Open, check and configure every channel of the span, then read its
    /// status once. All of the span's memory is allocated here.
    pub fn open<B>(backend: &mut B, params: DahdiSpanParams) -> Result<Self, DahdiError>
    where
        B: DahdiBackend<Channel = C>,
    {
        params.check()?;
        let d = open_d_channel(backend, &params)?;
        let mut b = Vec::with_capacity(params.b_channels.into());
        let mut ts_index = [u8::MAX; 32];
        for ts in e1_b_timeslots().take(params.b_channels.into()) {
            let channo = params.b_channo(ts);
            let chan = open_b_channel(backend, &params, channo)?;
            ts_index[usize::from(ts)] = b.len() as u8;
            b.push(BChannel {
                timeslot: ts,
                channo,
                chan,
                rx: vec![0; params.block_octets].into_boxed_slice(),
            });
        }
        let bufsize = usize::try_from(params.d_bufsize).unwrap_or(1024);
        let mut span = DahdiSpan {
            params,
            d,
            d_rx: vec![0; bufsize].into_boxed_slice(),
            d_tx: vec![0; D_FRAME_MAX + D_FCS_OCTETS].into_boxed_slice(),
            b,
            ts_index,
            status: SpanStatus::default(),
            counters: DahdiCounters::default(),
            events: [None; EVENT_RING],
            ev_head: 0,
            ev_len: 0,
            logged: 0,
        };
        span.status = span.span_stat()?;
        info!(
            span = params.span,
            d_channel = params.d_channel,
            b_channels = params.b_channels,
            alarms = %span.status.alarms,
            "dahdi span opened"
        );
        Ok(span)
    }

    pub fn params(&self) -> &DahdiSpanParams {
        &self.params
    }

    /// Alarms and counters from the last SPANSTAT.
    pub fn status(&self) -> SpanStatus {
        self.status
    }

    pub fn counters(&self) -> DahdiCounters {
        self.counters
    }

    /// The D-channel fd, to register with mio.
    pub fn d_channel_fd(&self) -> BorrowedFd<'_> {
        self.d.as_fd()
    }

    /// The D-channel raw fd (for `mio::unix::SourceFd`).
    pub fn d_channel_raw_fd(&self) -> RawFd {
        self.d.as_fd().as_raw_fd()
    }

    /// The fd of B-channel timeslot `ts`, to register with mio.
    pub fn b_channel_fd(&self, ts: u8) -> Option<BorrowedFd<'_>> {
        self.b_index(ts).ok().map(|i| self.b[i].chan.as_fd())
    }

    /// Raw fds of the B-channels with their timeslots, in timeslot order.
    pub fn b_channel_raw_fds(&self) -> impl Iterator<Item = (u8, RawFd)> + '_ {
        self.b
            .iter()
            .map(|b| (b.timeslot, b.chan.as_fd().as_raw_fd()))
    }

    /// The B-channel timeslots of this span, in order.
    pub fn b_timeslots(&self) -> impl Iterator<Item = u8> + '_ {
        self.b.iter().map(|b| b.timeslot)
    }

    /// The next queued event, oldest first.
    pub fn poll_event(&mut self) -> Option<SpanEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENT_RING;
        self.ev_len -= 1;
        e
    }

    /// Read one D-channel frame (FCS stripped), `Ok(None)` when nothing
    /// more is ready. Short reads, oversize frames and events are counted
    /// and skipped.
    pub fn recv_d_frame(&mut self) -> Result<Option<&[u8]>, DahdiError> {
        for _ in 0..READ_BUDGET {
            let r = self.d.read(&mut self.d_rx);
            match r {
                Ok(0) => {
                    return Err(DahdiError::Closed {
                        channo: self.params.d_channel,
                    });
                }
                Ok(n) if n <= D_FCS_OCTETS => {
                    self.counters.d_short_reads += 1;
                    debug!(
                        span = self.params.span,
                        ts = 16,
                        octets = n,
                        "short D-channel read"
                    );
                    // dahdi-base reports why with an event, if it has one.
                    self.drain_events(Which::D)?;
                }
                Ok(n) if n - D_FCS_OCTETS > D_FRAME_MAX => {
                    self.counters.d_oversize += 1;
                    debug!(
                        span = self.params.span,
                        ts = 16,
                        octets = n,
                        "oversize D-channel frame"
                    );
                }
                Ok(n) => {
                    let len = n - D_FCS_OCTETS;
                    self.counters.d_frames_rx += 1;
                    self.counters.d_octets_rx += len as u64;
                    return Ok(Some(&self.d_rx[..len]));
                }
                Err(e) => match self.on_io_error(Which::D, e)? {
                    Retry::Again => {}
                    Retry::Stop => return Ok(None),
                },
            }
        }
        self.counters.read_budget_exhausted += 1;
        Ok(None)
    }

    /// Send one D-channel frame (2 spare octets are appended for the FCS).
    /// `Ok(false)`: the card's buffers are full, retry when writable.
    pub fn send_d_frame(&mut self, frame: &[u8]) -> Result<bool, DahdiError> {
        if frame.len() > D_FRAME_MAX {
            return Err(DahdiError::FrameTooLong { len: frame.len() });
        }
        let n = frame.len() + D_FCS_OCTETS;
        self.d_tx[..frame.len()].copy_from_slice(frame);
        self.d_tx[frame.len()..n].fill(0);
        for _ in 0..2 {
            match self.d.write(&self.d_tx[..n]) {
                Ok(w) if w == n => {
                    self.counters.d_frames_tx += 1;
                    self.counters.d_octets_tx += frame.len() as u64;
                    return Ok(true);
                }
                Ok(_) => {
                    // A DAHDI write takes a whole frame or fails.
                    let source = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(DahdiError::Io {
                        channo: self.params.d_channel,
                        source,
                    });
                }
                Err(e) => match self.on_io_error(Which::D, e)? {
                    Retry::Again => {}
                    Retry::Stop => break,
                },
            }
        }
        self.counters.d_tx_busy += 1;
        Ok(false)
    }

    /// Read one block of B-channel timeslot `ts`, `Ok(None)` when none is
    /// ready.
    pub fn recv_b_block(&mut self, ts: u8) -> Result<Option<&[u8]>, DahdiError> {
        let i = self.b_index(ts)?;
        for _ in 0..READ_BUDGET {
            let b = &mut self.b[i];
            match b.chan.read(&mut b.rx) {
                Ok(0) => return Err(DahdiError::Closed { channo: b.channo }),
                Ok(n) => {
                    self.counters.b_blocks_rx += 1;
                    if n != self.params.block_octets {
                        self.counters.b_short_blocks += 1;
                    }
                    return Ok(Some(&self.b[i].rx[..n]));
                }
                Err(e) => match self.on_io_error(Which::B(i), e)? {
                    Retry::Again => {}
                    Retry::Stop => return Ok(None),
                },
            }
        }
        self.counters.read_budget_exhausted += 1;
        Ok(None)
    }

    /// Write one block to B-channel timeslot `ts`; `Ok(false)` when the
    /// card's buffers are full.
    pub fn send_b_block(&mut self, ts: u8, block: &[u8]) -> Result<bool, DahdiError> {
        let i = self.b_index(ts)?;
        if block.len() != self.params.block_octets {
            self.counters.b_short_blocks += 1;
        }
        for _ in 0..2 {
            match self.b[i].chan.write(block) {
                Ok(_) => {
                    self.counters.b_blocks_tx += 1;
                    return Ok(true);
                }
                Err(e) => match self.on_io_error(Which::B(i), e)? {
                    Retry::Again => {}
                    Retry::Stop => break,
                },
            }
        }
        self.counters.b_tx_busy += 1;
        Ok(false)
    }

    /// DAHDI_SPANSTAT now: update the status, queue `SpanEvent::Alarms` if
    /// the alarms changed.
    pub fn refresh_status(&mut self) -> Result<SpanStatus, DahdiError> {
        let new = self.span_stat()?;
        let old = self.status.alarms;
        self.status = new;
        if old != new.alarms {
            self.on_alarms_changed(old, new.alarms);
        }
        Ok(new)
    }

    fn on_alarms_changed(&mut self, old: LineAlarms, new: LineAlarms) {
        if new.is_empty() {
            info!(span = self.params.span, old = %old, "dahdi span alarms cleared");
        } else {
            warn!(span = self.params.span, old = %old, new = %new, "dahdi span alarm");
        }
        self.push_event(SpanEvent::Alarms { old, new });
    }

    fn span_stat(&mut self) -> Result<SpanStatus, DahdiError> {
        let info = self
            .d
            .span_stat(self.params.span)
            .map_err(|source| DahdiError::Ioctl {
                channo: self.params.d_channel,
                request: "DAHDI_SPANSTAT",
                source,
            })?;
        Ok(SpanStatus::from_spaninfo(&info))
    }

    fn b_index(&self, ts: u8) -> Result<usize, DahdiError> {
        match self.ts_index.get(usize::from(ts)) {
            Some(&i) if i != u8::MAX => Ok(usize::from(i)),
            _ => Err(DahdiError::NoSuchTimeslot(ts)),
        }
    }

    fn channel(&mut self, which: Which) -> (&mut C, u16, u8) {
        match which {
            Which::D => (&mut self.d, self.params.d_channel, 16),
            Which::B(i) => {
                let b = &mut self.b[i];
                (&mut b.chan, b.channo, b.timeslot)
            }
        }
    }

    /// EAGAIN: stop; EINTR: retry; ELAST: fetch the events, retry; else fail.
    fn on_io_error(&mut self, which: Which, e: io::Error) -> Result<Retry, DahdiError> {
        match e.raw_os_error() {
            Some(sys::ELAST) => {
                self.drain_events(which)?;
                Ok(Retry::Again)
            }
            _ if e.kind() == io::ErrorKind::WouldBlock => Ok(Retry::Stop),
            _ if e.kind() == io::ErrorKind::Interrupted => Ok(Retry::Again),
            _ => {
                let (_, channo, ts) = self.channel(which);
                error!(span = self.params.span, ts, channo, error = %e, "dahdi channel I/O failed");
                Err(DahdiError::Io { channo, source: e })
            }
        }
    }

    /// DAHDI_GETEVENT until DAHDI_EVENT_NONE (bounded by the event ring).
    fn drain_events(&mut self, which: Which) -> Result<(), DahdiError> {
        for _ in 0..EVENT_RING {
            let (chan, channo, ts) = self.channel(which);
            let code = chan.get_event().map_err(|source| DahdiError::Ioctl {
                channo,
                request: "DAHDI_GETEVENT",
                source,
            })?;
            let event = DahdiEvent(code);
            if event == DahdiEvent::NONE {
                return Ok(());
            }
            self.on_event(channo, ts, event)?;
        }
        Ok(())
    }

    fn on_event(&mut self, channo: u16, ts: u8, event: DahdiEvent) -> Result<(), DahdiError> {
        self.counters.events += 1;
        match event {
            DahdiEvent::ALARM | DahdiEvent::NOALARM => {
                self.refresh_status()?;
                return Ok(());
            }
            DahdiEvent::ABORT => self.counters.hdlc_aborts += 1,
            DahdiEvent::OVERRUN => self.counters.hdlc_overruns += 1,
            DahdiEvent::BADFCS => self.counters.hdlc_bad_fcs += 1,
            _ => {}
        }
        self.log_event_once(channo, ts, event);
        self.push_event(SpanEvent::Channel {
            channo,
            timeslot: ts,
            event,
        });
        Ok(())
    }

    /// The first event of each code is logged at warn, later ones at debug
    /// (BADFCS on a noisy line would otherwise flood the journal).
    fn log_event_once(&mut self, channo: u16, ts: u8, event: DahdiEvent) {
        let bit = 1u64 << (event.0.clamp(0, 63) as u32);
        if self.logged & bit == 0 {
            self.logged |= bit;
            warn!(span = self.params.span, ts, channo, event = %event, "dahdi channel event (first of its kind)");
        } else {
            debug!(span = self.params.span, ts, channo, event = %event, "dahdi channel event");
        }
    }

    fn push_event(&mut self, e: SpanEvent) {
        if self.ev_len == EVENT_RING {
            self.counters.events_dropped += 1;
            return;
        }
        self.events[(self.ev_head + self.ev_len) % EVENT_RING] = Some(e);
        self.ev_len += 1;
    }
}

enum Retry {
    Again,
    Stop,
}

fn open_channel<B: DahdiBackend>(
    backend: &mut B,
    params: &DahdiSpanParams,
    channo: u16,
) -> Result<(B::Channel, sys::DahdiParams), DahdiError> {
    let mut chan = backend
        .open(channo)
        .map_err(|source| DahdiError::Open { channo, source })?;
    let p = chan.get_params().map_err(|source| DahdiError::Ioctl {
        channo,
        request: "DAHDI_GET_PARAMS",
        source,
    })?;
    if p.spanno != i32::from(params.span) {
        return Err(DahdiError::WrongSpan {
            channo,
            expected: params.span,
            found: p.spanno,
        });
    }
    Ok((chan, p))
}

fn open_d_channel<B: DahdiBackend>(
    backend: &mut B,
    params: &DahdiSpanParams,
) -> Result<B::Channel, DahdiError> {
    let channo = params.d_channel;
    let (mut chan, p) = open_channel(backend, params, channo)?;
    // chan_dahdi accepts exactly these two for a PRI D-channel.
    if p.sigtype != sys::DAHDI_SIG_HDLCFCS && p.sigtype != sys::DAHDI_SIG_HARDHDLC {
        error!(
            span = params.span,
            channo,
            sigtype = p.sigtype,
            "D-channel not in HDLC/FCS mode"
        );
        return Err(DahdiError::NotHdlcFcs {
            channo,
            sigtype: p.sigtype,
        });
    }
    let bi = sys::DahdiBufferInfo {
        txbufpolicy: sys::DAHDI_POLICY_IMMEDIATE,
        rxbufpolicy: sys::DAHDI_POLICY_IMMEDIATE,
        numbufs: params.d_numbufs,
        bufsize: params.d_bufsize,
        ..Default::default()
    };
    chan.set_bufinfo(&bi).map_err(|source| DahdiError::Ioctl {
        channo,
        request: "DAHDI_SET_BUFINFO",
        source,
    })?;
    Ok(chan)
}

fn open_b_channel<B: DahdiBackend>(
    backend: &mut B,
    params: &DahdiSpanParams,
    channo: u16,
) -> Result<B::Channel, DahdiError> {
    let (mut chan, p) = open_channel(backend, params, channo)?;
    if p.sigtype != sys::DAHDI_SIG_CLEAR {
        error!(
            span = params.span,
            channo,
            sigtype = p.sigtype,
            "B-channel not a clear channel"
        );
        return Err(DahdiError::NotClear {
            channo,
            sigtype: p.sigtype,
        });
    }
    let bi = sys::DahdiBufferInfo {
        txbufpolicy: sys::DAHDI_POLICY_IMMEDIATE,
        rxbufpolicy: sys::DAHDI_POLICY_IMMEDIATE,
        numbufs: params.b_numbufs,
        bufsize: params.block_octets as i32,
        ..Default::default()
    };
    chan.set_bufinfo(&bi).map_err(|source| DahdiError::Ioctl {
        channo,
        request: "DAHDI_SET_BUFINFO",
        source,
    })?;
    chan.set_blocksize(params.block_octets)
        .map_err(|source| DahdiError::Ioctl {
            channo,
            request: "DAHDI_SET_BLOCKSIZE",
            source,
        })?;
    Ok(chan)
}
