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
//! In the daemon the two kinds of channel have different owners:
//! [`DahdiSpan::split`] keeps the D-channel in the span (driven by the
//! D-channel task through `isdn::port::DahdiPort`, kernel HDLC, no rings)
//! and hands the B-channels to the media thread as [`DahdiBChannels`]
//! (`media::dahdi_lines`). Both halves see the span's ALARM / NOALARM
//! events (DAHDI queues them on every open channel); the B-channel half
//! reports them.
//!
//! The device is behind [`DahdiBackend`] / [`DahdiChannel`]: [`LinuxDahdi`]
//! for the kernel, [`seqpacket::SeqpacketCard`] for tests.

mod device;
pub mod seqpacket;
mod span;
pub mod status;
pub mod sys;

pub use device::{DahdiBackend, DahdiChannel, LinuxChannel, LinuxDahdi};
pub use span::{DahdiBChannels, DahdiSpan};
pub use status::{DahdiEvent, LineAlarms, LineCounters, SpanStatus};

use std::fmt;
use std::io;
use tracing::error;

/// Octets per B-channel block: 20 ms at 8000 samples/s.
pub const B_BLOCK_OCTETS: usize = 160;
/// Longest D-channel frame: Q.921 §5.9.3 N201 = 260 + 2 address + 2 control.
pub const D_FRAME_MAX: usize = 264;
/// FCS octets DAHDI appends on read and expects as spare room on write.
pub const D_FCS_OCTETS: usize = 2;
/// Capacity of the event ring between two `poll_event` drains.
pub const EVENT_RING: usize = 32;
/// Reads (or events) handled per `recv_*` call before giving the loop back.
pub(crate) const READ_BUDGET: usize = 64;

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

    pub(crate) fn check(&self) -> Result<(), DahdiError> {
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
                write!(f, "cannot open DAHDI channel {channo}: {source}")?;
                let hint = match source.raw_os_error().map(nix::errno::Errno::from_raw) {
                    Some(nix::errno::Errno::ENOENT) => {
                        " (no /dev/dahdi/channel: is DAHDI loaded for the card?)"
                    }
                    Some(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => {
                        " (the tdmgw user may not open /dev/dahdi/channel: see the udev rule in README)"
                    }
                    Some(nix::errno::Errno::ENXIO | nix::errno::Errno::EINVAL) => {
                        " (not configured: check /etc/dahdi/system.conf and run dahdi_cfg)"
                    }
                    Some(nix::errno::Errno::EBUSY) => " (another program has it open)",
                    _ => "",
                };
                f.write_str(hint)
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

pub(crate) fn open_d_channel<B: DahdiBackend>(
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

pub(crate) fn open_b_channel<B: DahdiBackend>(
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
