//! A DAHDI card played over `SOCK_SEQPACKET` socketpairs, for tests and
//! simulations of the DAHDI driver without hardware.
//!
//! Each channel is a socketpair: the driver end is handed out by
//! [`DahdiBackend::open`], the card end ([`CardEnd`]) stays with the test.
//! Message boundaries are kept, so one message is exactly what one DAHDI
//! read or write carries: a D-channel frame plus 2 FCS octets, or one
//! B-channel block. The control side emulates the ioctls the way
//! dahdi-base answers them: GET_PARAMS from the configured
//! `dahdi_params`, SET_BUFINFO / SET_BLOCKSIZE recorded, GETEVENT from a
//! per-channel queue, SPANSTAT from one shared `dahdi_spaninfo`; and, like
//! `dahdi_chan_read`, a read or write fails with `ELAST` while an event is
//! queued. The card's state sits behind one `Arc<Mutex<_>>`, so its
//! channels can be handed to other threads (a media thread takes the
//! B-channels, a tokio task the D-channel), as a real card's fds can.

use super::device::{DahdiBackend, DahdiChannel};
use super::sys::{self, DahdiBufferInfo, DahdiParams, DahdiSpanInfo};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct ChanState {
    params: DahdiParams,
    driver_end: Option<OwnedFd>,
    events: VecDeque<i32>,
    blocksize: Option<usize>,
    bufinfo: Option<DahdiBufferInfo>,
}

#[derive(Default)]
struct CardState {
    span: u16,
    channels: HashMap<u16, ChanState>,
    spaninfo: DahdiSpanInfo,
}

/// The simulated card: a [`DahdiBackend`] plus the knobs a test turns.
#[derive(Clone)]
pub struct SeqpacketCard {
    state: Arc<Mutex<CardState>>,
}

/// The card's state; a test that panicked while holding it leaves it
/// usable for the rest of the test's report.
fn lock(state: &Mutex<CardState>) -> MutexGuard<'_, CardState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The card's end of one channel.
#[derive(Debug)]
pub struct CardEnd {
    pub channo: u16,
    fd: OwnedFd,
}

/// The card ends of a whole E1 PRI span.
#[derive(Debug)]
pub struct CardSpan {
    pub d: CardEnd,
    /// (timeslot, card end) for each B-channel, in timeslot order.
    pub b: Vec<(u8, CardEnd)>,
}

impl SeqpacketCard {
    /// A card for DAHDI span `span` with no channels yet.
    pub fn new(span: u16) -> SeqpacketCard {
        let state = CardState {
            span,
            spaninfo: DahdiSpanInfo {
                spanno: span.into(),
                totalchans: 31,
                numchans: 31,
                ..Default::default()
            },
            ..Default::default()
        };
        SeqpacketCard {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// An E1 PRI span as `dahdi_cfg` would set it up: timeslot 16 is the
    /// D-channel (`sigtype`, normally DAHDI_SIG_HDLCFCS) on channel
    /// `base_channel + 15`, the first `b_channels` other timeslots are
    /// clear B-channels.
    pub fn e1_pri(
        span: u16,
        base_channel: u16,
        b_channels: u8,
        d_sigtype: i32,
    ) -> io::Result<(SeqpacketCard, CardSpan)> {
        let card = SeqpacketCard::new(span);
        let d = card.add_channel(base_channel + 15, 16, d_sigtype)?;
        let mut b = Vec::new();
        for ts in super::e1_b_timeslots().take(b_channels.into()) {
            let end =
                card.add_channel(base_channel + u16::from(ts) - 1, ts, sys::DAHDI_SIG_CLEAR)?;
            b.push((ts, end));
        }
        Ok((card, CardSpan { d, b }))
    }

    /// Add channel `channo` at position `chanpos` of the span.
    pub fn add_channel(&self, channo: u16, chanpos: u8, sigtype: i32) -> io::Result<CardEnd> {
        let (driver, card) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        let mut st = lock(&self.state);
        let params = DahdiParams {
            channo: channo.into(),
            spanno: st.span.into(),
            chanpos: chanpos.into(),
            sigtype,
            curlaw: 2, // DAHDI_LAW_ALAW
            ..Default::default()
        };
        st.channels.insert(
            channo,
            ChanState {
                params,
                driver_end: Some(driver),
                ..Default::default()
            },
        );
        Ok(CardEnd { channo, fd: card })
    }

    /// Change what GET_PARAMS answers for a channel.
    pub fn set_params(&self, channo: u16, params: DahdiParams) {
        if let Some(c) = lock(&self.state).channels.get_mut(&channo) {
            c.params = params;
        }
    }

    /// Set the `alarms` word SPANSTAT reports (DAHDI_ALARM_* bits).
    pub fn set_alarms(&self, alarms: i32) {
        lock(&self.state).spaninfo.alarms = alarms;
    }

    /// Replace the whole `dahdi_spaninfo` SPANSTAT reports.
    pub fn set_spaninfo(&self, info: DahdiSpanInfo) {
        lock(&self.state).spaninfo = info;
    }

    /// Queue a DAHDI_EVENT_* on a channel (reads fail with ELAST until
    /// GETEVENT has taken it).
    pub fn raise_event(&self, channo: u16, event: i32) {
        if let Some(c) = lock(&self.state).channels.get_mut(&channo) {
            c.events.push_back(event);
        }
    }

    /// Raise ALARM (or NOALARM when `alarms` is 0) on every open channel
    /// after setting the SPANSTAT alarms, as dahdi_alarm_notify does.
    pub fn alarm(&self, alarms: i32) {
        let mut st = lock(&self.state);
        st.spaninfo.alarms = alarms;
        let ev = if alarms == 0 { 5 } else { 4 };
        for c in st.channels.values_mut() {
            if c.driver_end.is_none() {
                c.events.push_back(ev);
            }
        }
    }

    /// Events still queued on a channel.
    pub fn pending_events(&self, channo: u16) -> usize {
        lock(&self.state)
            .channels
            .get(&channo)
            .map_or(0, |c| c.events.len())
    }

    /// The last DAHDI_SET_BLOCKSIZE on a channel.
    pub fn blocksize(&self, channo: u16) -> Option<usize> {
        lock(&self.state).channels.get(&channo)?.blocksize
    }

    /// The last DAHDI_SET_BUFINFO on a channel.
    pub fn bufinfo(&self, channo: u16) -> Option<DahdiBufferInfo> {
        lock(&self.state).channels.get(&channo)?.bufinfo
    }
}

impl CardEnd {
    /// Send one message (what one driver read will return).
    pub fn send(&self, msg: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(&self.fd, msg)?)
    }

    /// Send a D-channel frame as the card delivers it: frame + 2 FCS octets.
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        let mut msg = Vec::with_capacity(frame.len() + 2);
        msg.extend_from_slice(frame);
        msg.extend_from_slice(&[0xF0, 0xB8]); // FCS value is not checked.
        self.send(&msg).map(|_| ())
    }

    /// Receive one message the driver wrote, `None` if none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match nix::unistd::read(&self.fd, buf) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for CardEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The driver's end of one simulated channel.
pub struct SeqpacketChannel {
    channo: u16,
    fd: OwnedFd,
    state: Arc<Mutex<CardState>>,
}

impl DahdiBackend for SeqpacketCard {
    type Channel = SeqpacketChannel;

    fn open(&mut self, channo: u16) -> io::Result<SeqpacketChannel> {
        let mut st = lock(&self.state);
        // DAHDI_SPECIFY of an unknown channel: ENXIO; already open: EBUSY.
        let c = st
            .channels
            .get_mut(&channo)
            .ok_or(io::Error::from(Errno::ENXIO))?;
        let fd = c.driver_end.take().ok_or(io::Error::from(Errno::EBUSY))?;
        Ok(SeqpacketChannel {
            channo,
            fd,
            state: Arc::clone(&self.state),
        })
    }
}

impl SeqpacketChannel {
    fn with<R>(&self, f: impl FnOnce(&mut ChanState) -> R) -> io::Result<R> {
        let mut st = lock(&self.state);
        let c = st
            .channels
            .get_mut(&self.channo)
            .ok_or(io::Error::from(Errno::ENXIO))?;
        Ok(f(c))
    }

    fn event_pending(&self) -> io::Result<bool> {
        self.with(|c| !c.events.is_empty())
    }
}

impl AsFd for SeqpacketChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DahdiChannel for SeqpacketChannel {
    fn get_params(&mut self) -> io::Result<DahdiParams> {
        self.with(|c| c.params)
    }

    fn set_bufinfo(&mut self, info: &DahdiBufferInfo) -> io::Result<()> {
        // dahdi-base refuses numbufs × bufsize over DAHDI_MAX_BUF_SPACE.
        if info.numbufs < 1
            || info.bufsize < 16
            || info.numbufs * info.bufsize > sys::DAHDI_MAX_BUF_SPACE
        {
            return Err(Errno::EINVAL.into());
        }
        self.with(|c| c.bufinfo = Some(*info))
    }

    fn set_blocksize(&mut self, octets: usize) -> io::Result<()> {
        if !(16..=8192).contains(&octets) {
            return Err(Errno::EINVAL.into());
        }
        self.with(|c| c.blocksize = Some(octets))
    }

    fn get_event(&mut self) -> io::Result<i32> {
        self.with(|c| c.events.pop_front().unwrap_or(0))
    }

    fn span_stat(&mut self, span: u16) -> io::Result<DahdiSpanInfo> {
        let st = lock(&self.state);
        if span != 0 && span != st.span {
            return Err(Errno::EINVAL.into());
        }
        Ok(st.spaninfo)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.event_pending()? {
            return Err(io::Error::from_raw_os_error(sys::ELAST));
        }
        Ok(nix::unistd::read(&self.fd, buf)?)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.event_pending()? {
            return Err(io::Error::from_raw_os_error(sys::ELAST));
        }
        Ok(nix::unistd::write(&self.fd, buf)?)
    }
}
