//! The span objects: [`DahdiSpan`] (the D-channel and the B-channels of
//! one span) and [`DahdiBChannels`] (the B-channels alone, what
//! [`DahdiSpan::split`] hands to a media thread while the D-channel stays
//! with the signalling task).
//!
//! Both are built on what a span's channels share, [`SpanCore`]: the
//! parameters, the last SPANSTAT, the counters, the event ring and the
//! ELAST / GETEVENT handling, which takes the channel it runs on as an
//! argument so that the D-channel and each B-channel go through one path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use tracing::{debug, error, info, warn};

use super::device::{DahdiBackend, DahdiChannel};
use super::status::{DahdiEvent, LineAlarms, SpanStatus};
use super::{
    D_FCS_OCTETS, D_FRAME_MAX, DahdiCounters, DahdiError, DahdiSpanParams, EVENT_RING, READ_BUDGET,
    SpanEvent, e1_b_timeslots, open_b_channel, open_d_channel, sys,
};

struct BChannel<C> {
    timeslot: u8,
    channo: u16,
    chan: C,
    rx: Box<[u8]>,
}

/// What every part of a span shares; see the module doc.
struct SpanCore {
    params: DahdiSpanParams,
    status: SpanStatus,
    counters: DahdiCounters,
    events: [Option<SpanEvent>; EVENT_RING],
    ev_head: usize,
    ev_len: usize,
    /// One bit per DahdiEvent code already logged at warn (then debug).
    logged: u64,
    /// Alarm changes are logged at warn/info. Off for the halves of a
    /// split span: the owner of the B-channels reports alarms (the media
    /// thread's line events), and the D-channel half would say it twice.
    log_alarms: bool,
}

enum Retry {
    Again,
    Stop,
}

impl SpanCore {
    fn new(params: DahdiSpanParams, log_alarms: bool) -> SpanCore {
        SpanCore {
            params,
            status: SpanStatus::default(),
            counters: DahdiCounters::default(),
            events: [None; EVENT_RING],
            ev_head: 0,
            ev_len: 0,
            logged: 0,
            log_alarms,
        }
    }

    fn poll_event(&mut self) -> Option<SpanEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENT_RING;
        self.ev_len -= 1;
        e
    }

    fn push_event(&mut self, e: SpanEvent) {
        if self.ev_len == EVENT_RING {
            self.counters.events_dropped += 1;
            return;
        }
        self.events[(self.ev_head + self.ev_len) % EVENT_RING] = Some(e);
        self.ev_len += 1;
    }

    /// DAHDI_SPANSTAT through `chan` (any channel of the span answers it).
    fn span_stat<C: DahdiChannel>(
        &self,
        chan: &mut C,
        channo: u16,
    ) -> Result<SpanStatus, DahdiError> {
        let info = chan
            .span_stat(self.params.span)
            .map_err(|source| DahdiError::Ioctl {
                channo,
                request: "DAHDI_SPANSTAT",
                source,
            })?;
        Ok(SpanStatus::from_spaninfo(&info))
    }

    fn refresh_status<C: DahdiChannel>(
        &mut self,
        chan: &mut C,
        channo: u16,
    ) -> Result<SpanStatus, DahdiError> {
        let new = self.span_stat(chan, channo)?;
        let old = self.status.alarms;
        self.status = new;
        if old != new.alarms {
            self.on_alarms_changed(old, new.alarms);
        }
        Ok(new)
    }

    fn on_alarms_changed(&mut self, old: LineAlarms, new: LineAlarms) {
        let span = self.params.span;
        match (self.log_alarms, new.is_empty()) {
            (true, true) => info!(span, old = %old, "dahdi span alarms cleared"),
            (true, false) => warn!(span, old = %old, new = %new, "dahdi span alarm"),
            (false, _) => debug!(span, old = %old, new = %new, "dahdi span alarms changed"),
        }
        self.push_event(SpanEvent::Alarms { old, new });
    }

    /// EAGAIN: stop; EINTR: retry; ELAST: fetch the events, retry; else fail.
    fn on_io_error<C: DahdiChannel>(
        &mut self,
        chan: &mut C,
        channo: u16,
        ts: u8,
        e: io::Error,
    ) -> Result<Retry, DahdiError> {
        match e.raw_os_error() {
            Some(sys::ELAST) => {
                self.drain_events(chan, channo, ts)?;
                Ok(Retry::Again)
            }
            _ if e.kind() == io::ErrorKind::WouldBlock => Ok(Retry::Stop),
            _ if e.kind() == io::ErrorKind::Interrupted => Ok(Retry::Again),
            _ => {
                error!(span = self.params.span, ts, channo, error = %e, "dahdi channel I/O failed");
                Err(DahdiError::Io { channo, source: e })
            }
        }
    }

    /// DAHDI_GETEVENT until DAHDI_EVENT_NONE (bounded by the event ring).
    fn drain_events<C: DahdiChannel>(
        &mut self,
        chan: &mut C,
        channo: u16,
        ts: u8,
    ) -> Result<(), DahdiError> {
        for _ in 0..EVENT_RING {
            let code = chan.get_event().map_err(|source| DahdiError::Ioctl {
                channo,
                request: "DAHDI_GETEVENT",
                source,
            })?;
            let event = DahdiEvent(code);
            if event == DahdiEvent::NONE {
                return Ok(());
            }
            self.on_event(chan, channo, ts, event)?;
        }
        Ok(())
    }

    fn on_event<C: DahdiChannel>(
        &mut self,
        chan: &mut C,
        channo: u16,
        ts: u8,
        event: DahdiEvent,
    ) -> Result<(), DahdiError> {
        self.counters.events += 1;
        match event {
            DahdiEvent::ALARM | DahdiEvent::NOALARM => {
                self.refresh_status(chan, channo)?;
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
}

/// The B-channels of a span in timeslot order, and the timeslot index.
struct BSet<C> {
    chans: Vec<BChannel<C>>,
    /// Timeslot -> index into `chans`, `u8::MAX` when none.
    ts_index: [u8; 32],
}

impl<C: DahdiChannel> BSet<C> {
    fn empty() -> BSet<C> {
        BSet {
            chans: Vec::new(),
            ts_index: [u8::MAX; 32],
        }
    }

    fn open<B>(backend: &mut B, params: &DahdiSpanParams) -> Result<BSet<C>, DahdiError>
    where
        B: DahdiBackend<Channel = C>,
    {
        let mut set = BSet {
            chans: Vec::with_capacity(params.b_channels.into()),
            ts_index: [u8::MAX; 32],
        };
        for ts in e1_b_timeslots().take(params.b_channels.into()) {
            let channo = params.b_channo(ts);
            let chan = open_b_channel(backend, params, channo)?;
            set.ts_index[usize::from(ts)] = set.chans.len() as u8;
            set.chans.push(BChannel {
                timeslot: ts,
                channo,
                chan,
                rx: vec![0; params.block_octets].into_boxed_slice(),
            });
        }
        Ok(set)
    }

    fn index(&self, ts: u8) -> Result<usize, DahdiError> {
        match self.ts_index.get(usize::from(ts)) {
            Some(&i) if i != u8::MAX => Ok(usize::from(i)),
            _ => Err(DahdiError::NoSuchTimeslot(ts)),
        }
    }

    fn fd(&self, ts: u8) -> Option<BorrowedFd<'_>> {
        self.index(ts).ok().map(|i| self.chans[i].chan.as_fd())
    }

    fn raw_fds(&self) -> impl Iterator<Item = (u8, RawFd)> + '_ {
        self.chans
            .iter()
            .map(|b| (b.timeslot, b.chan.as_fd().as_raw_fd()))
    }

    fn timeslots(&self) -> impl Iterator<Item = u8> + '_ {
        self.chans.iter().map(|b| b.timeslot)
    }

    fn recv(&mut self, core: &mut SpanCore, ts: u8) -> Result<Option<&[u8]>, DahdiError> {
        let i = self.index(ts)?;
        for _ in 0..READ_BUDGET {
            let b = &mut self.chans[i];
            match b.chan.read(&mut b.rx) {
                Ok(0) => return Err(DahdiError::Closed { channo: b.channo }),
                Ok(n) => {
                    core.counters.b_blocks_rx += 1;
                    if n != core.params.block_octets {
                        core.counters.b_short_blocks += 1;
                    }
                    return Ok(Some(&self.chans[i].rx[..n]));
                }
                Err(e) => match core.on_io_error(&mut b.chan, b.channo, b.timeslot, e)? {
                    Retry::Again => {}
                    Retry::Stop => return Ok(None),
                },
            }
        }
        core.counters.read_budget_exhausted += 1;
        Ok(None)
    }

    fn send(&mut self, core: &mut SpanCore, ts: u8, block: &[u8]) -> Result<bool, DahdiError> {
        let i = self.index(ts)?;
        if block.len() != core.params.block_octets {
            core.counters.b_short_blocks += 1;
        }
        let b = &mut self.chans[i];
        for _ in 0..2 {
            match b.chan.write(block) {
                Ok(_) => {
                    core.counters.b_blocks_tx += 1;
                    return Ok(true);
                }
                Err(e) => match core.on_io_error(&mut b.chan, b.channo, b.timeslot, e)? {
                    Retry::Again => {}
                    Retry::Stop => break,
                },
            }
        }
        core.counters.b_tx_busy += 1;
        Ok(false)
    }
}

/// One DAHDI E1 span: the D-channel and the B-channel fds (see the
/// module doc of `line::driver::dahdi`).
pub struct DahdiSpan<C: DahdiChannel> {
    core: SpanCore,
    d: C,
    d_rx: Box<[u8]>,
    d_tx: Box<[u8]>,
    b: BSet<C>,
}

impl<C: DahdiChannel> DahdiSpan<C> {
    /// Open, check and configure every channel of the span, then read its
    /// status once. All of the span's memory is allocated here.
    pub fn open<B>(backend: &mut B, params: DahdiSpanParams) -> Result<Self, DahdiError>
    where
        B: DahdiBackend<Channel = C>,
    {
        params.check()?;
        let mut d = open_d_channel(backend, &params)?;
        let b = BSet::open(backend, &params)?;
        let bufsize = usize::try_from(params.d_bufsize).unwrap_or(1024);
        let mut core = SpanCore::new(params, true);
        core.status = core.span_stat(&mut d, params.d_channel)?;
        info!(
            span = params.span,
            d_channel = params.d_channel,
            b_channels = params.b_channels,
            alarms = %core.status.alarms,
            "dahdi span opened"
        );
        Ok(DahdiSpan {
            core,
            d,
            d_rx: vec![0; bufsize].into_boxed_slice(),
            d_tx: vec![0; D_FRAME_MAX + D_FCS_OCTETS].into_boxed_slice(),
            b,
        })
    }

    /// Hands the B-channels over: the span keeps its D-channel (and no
    /// B-channel), the [`DahdiBChannels`] get the B-channels, the status
    /// and an event ring and counters of their own. Both halves log alarm
    /// changes at debug only (the B-channels' owner reports them).
    pub fn split(self) -> (DahdiSpan<C>, DahdiBChannels<C>) {
        let DahdiSpan {
            mut core,
            d,
            d_rx,
            d_tx,
            b,
        } = self;
        core.log_alarms = false;
        let mut b_core = SpanCore::new(core.params, false);
        b_core.status = core.status;
        let d_half = DahdiSpan {
            core,
            d,
            d_rx,
            d_tx,
            b: BSet::empty(),
        };
        (d_half, DahdiBChannels { core: b_core, b })
    }

    pub fn params(&self) -> &DahdiSpanParams {
        &self.core.params
    }

    /// Alarms and counters from the last SPANSTAT.
    pub fn status(&self) -> SpanStatus {
        self.core.status
    }

    pub fn counters(&self) -> DahdiCounters {
        self.core.counters
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
        self.b.fd(ts)
    }

    /// Raw fds of the B-channels with their timeslots, in timeslot order.
    pub fn b_channel_raw_fds(&self) -> impl Iterator<Item = (u8, RawFd)> + '_ {
        self.b.raw_fds()
    }

    /// The B-channel timeslots of this span, in order (none after `split`).
    pub fn b_timeslots(&self) -> impl Iterator<Item = u8> + '_ {
        self.b.timeslots()
    }

    /// The next queued event, oldest first.
    pub fn poll_event(&mut self) -> Option<SpanEvent> {
        self.core.poll_event()
    }

    /// Read one D-channel frame (FCS stripped), `Ok(None)` when nothing
    /// more is ready. Short reads, oversize frames and events are counted
    /// and skipped.
    pub fn recv_d_frame(&mut self) -> Result<Option<&[u8]>, DahdiError> {
        let (span, channo) = (self.core.params.span, self.core.params.d_channel);
        for _ in 0..READ_BUDGET {
            let r = self.d.read(&mut self.d_rx);
            match r {
                Ok(0) => return Err(DahdiError::Closed { channo }),
                Ok(n) if n <= D_FCS_OCTETS => {
                    self.core.counters.d_short_reads += 1;
                    debug!(span, ts = 16, octets = n, "short D-channel read");
                    // dahdi-base reports why with an event, if it has one.
                    self.core.drain_events(&mut self.d, channo, 16)?;
                }
                Ok(n) if n - D_FCS_OCTETS > D_FRAME_MAX => {
                    self.core.counters.d_oversize += 1;
                    debug!(span, ts = 16, octets = n, "oversize D-channel frame");
                }
                Ok(n) => {
                    let len = n - D_FCS_OCTETS;
                    self.core.counters.d_frames_rx += 1;
                    self.core.counters.d_octets_rx += len as u64;
                    return Ok(Some(&self.d_rx[..len]));
                }
                Err(e) => match self.core.on_io_error(&mut self.d, channo, 16, e)? {
                    Retry::Again => {}
                    Retry::Stop => return Ok(None),
                },
            }
        }
        self.core.counters.read_budget_exhausted += 1;
        Ok(None)
    }

    /// Send one D-channel frame (2 spare octets are appended for the FCS).
    /// `Ok(false)`: the card's buffers are full, retry when writable.
    pub fn send_d_frame(&mut self, frame: &[u8]) -> Result<bool, DahdiError> {
        if frame.len() > D_FRAME_MAX {
            return Err(DahdiError::FrameTooLong { len: frame.len() });
        }
        let channo = self.core.params.d_channel;
        let n = frame.len() + D_FCS_OCTETS;
        self.d_tx[..frame.len()].copy_from_slice(frame);
        self.d_tx[frame.len()..n].fill(0);
        for _ in 0..2 {
            match self.d.write(&self.d_tx[..n]) {
                Ok(w) if w == n => {
                    self.core.counters.d_frames_tx += 1;
                    self.core.counters.d_octets_tx += frame.len() as u64;
                    return Ok(true);
                }
                Ok(_) => {
                    // A DAHDI write takes a whole frame or fails.
                    let source = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(DahdiError::Io { channo, source });
                }
                Err(e) => match self.core.on_io_error(&mut self.d, channo, 16, e)? {
                    Retry::Again => {}
                    Retry::Stop => break,
                },
            }
        }
        self.core.counters.d_tx_busy += 1;
        Ok(false)
    }

    /// Read one block of B-channel timeslot `ts`, `Ok(None)` when none is
    /// ready.
    pub fn recv_b_block(&mut self, ts: u8) -> Result<Option<&[u8]>, DahdiError> {
        self.b.recv(&mut self.core, ts)
    }

    /// Write one block to B-channel timeslot `ts`; `Ok(false)` when the
    /// card's buffers are full.
    pub fn send_b_block(&mut self, ts: u8, block: &[u8]) -> Result<bool, DahdiError> {
        self.b.send(&mut self.core, ts, block)
    }

    /// DAHDI_SPANSTAT now: update the status, queue `SpanEvent::Alarms` if
    /// the alarms changed.
    pub fn refresh_status(&mut self) -> Result<SpanStatus, DahdiError> {
        let channo = self.core.params.d_channel;
        self.core.refresh_status(&mut self.d, channo)
    }
}

/// The B-channels of a span without its D-channel ([`DahdiSpan::split`]):
/// what a media thread owns. The same contract as the span's B-channel
/// calls: no allocation, no lock, no blocking; ELAST events fetched on
/// the way (ALARM / NOALARM re-read SPANSTAT and queue
/// [`SpanEvent::Alarms`]).
pub struct DahdiBChannels<C: DahdiChannel> {
    core: SpanCore,
    b: BSet<C>,
}

impl<C: DahdiChannel> DahdiBChannels<C> {
    pub fn params(&self) -> &DahdiSpanParams {
        &self.core.params
    }

    /// Alarms and counters from the last SPANSTAT.
    pub fn status(&self) -> SpanStatus {
        self.core.status
    }

    /// The B-channel counters (the D-channel's stay with the span).
    pub fn counters(&self) -> DahdiCounters {
        self.core.counters
    }

    /// Number of B-channels.
    pub fn len(&self) -> usize {
        self.b.chans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.b.chans.is_empty()
    }

    /// The fd of B-channel timeslot `ts`, to register with mio.
    pub fn b_channel_fd(&self, ts: u8) -> Option<BorrowedFd<'_>> {
        self.b.fd(ts)
    }

    /// Raw fds of the B-channels with their timeslots, in timeslot order.
    pub fn b_channel_raw_fds(&self) -> impl Iterator<Item = (u8, RawFd)> + '_ {
        self.b.raw_fds()
    }

    /// The B-channel timeslots, in order.
    pub fn b_timeslots(&self) -> impl Iterator<Item = u8> + '_ {
        self.b.timeslots()
    }

    /// The next queued event, oldest first.
    pub fn poll_event(&mut self) -> Option<SpanEvent> {
        self.core.poll_event()
    }

    /// Read one block of B-channel timeslot `ts`, `Ok(None)` when none is
    /// ready.
    pub fn recv_b_block(&mut self, ts: u8) -> Result<Option<&[u8]>, DahdiError> {
        self.b.recv(&mut self.core, ts)
    }

    /// Write one block to B-channel timeslot `ts`; `Ok(false)` when the
    /// card's buffers are full.
    pub fn send_b_block(&mut self, ts: u8, block: &[u8]) -> Result<bool, DahdiError> {
        self.b.send(&mut self.core, ts, block)
    }

    /// DAHDI_SPANSTAT (on the first B-channel) now: update the status,
    /// queue `SpanEvent::Alarms` if the alarms changed.
    pub fn refresh_status(&mut self) -> Result<SpanStatus, DahdiError> {
        let Some(b) = self.b.chans.first_mut() else {
            return Ok(self.core.status);
        };
        self.core.refresh_status(&mut b.chan, b.channo)
    }
}
