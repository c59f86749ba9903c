//! The simulated exchange's run shells: the line side
//! ([`ExchangeLine`]) on its own thread behind a raw driver, the control
//! side ([`ExchangeControl`]) in a loop on the caller's thread.
//!
//! [`run_satop`], [`run_serial`], [`run_serial_port`] and [`run_pair_end`]
//! run until the scenario is done (or, with [`RunControl::wait_for_stop`],
//! until [`RunControl::stop`] is set; [`RunControl::done`] says when the
//! scenario is), or `run_for` has passed; they then linger 300 ms so that
//! the last messages cross, clear what is still live (up to 2 s) and return
//! the [`ExchangeReport`]. A driver failure becomes a failure in the report
//! (unless the caller was stopping us: the far end may close first).
//!
//! [`run_pair_simulated`] runs two of them on a pair line in one thread in
//! simulated time: what tests that must not depend on the machine's load
//! use.
//!
//! The line thread waits on the port's fd with `poll(2)` until the port's
//! next deadline (at most 5 ms), then drives it; the pair port, which has
//! no fd, is polled every millisecond.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::info;

use crate::isdn::q931::Role;
use crate::line::driver::satop::{SatopParams, SatopPort};
use crate::line::driver::serial::{SerialParams, SerialPort};
use crate::line::driver::timing::Timing;

use super::exchange::{DriverSummary, ExchangeConfig, ExchangeControl, ExchangeReport, RunControl};
use super::exchange_line::ExchangeLine;
use super::exchange_pair::{PairEndPort, pair_wire};
use crate::line::driver::pair::PairConfig;

/// How long a run keeps its line going after it is done.
const LINGER: Duration = Duration::from_millis(300);

/// Why a run could not start or went wrong locally.
#[derive(Debug)]
pub enum SimError {
    Satop(crate::line::driver::satop::SatopError),
    Serial(crate::line::driver::serial::SerialError),
    Io(std::io::Error),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Satop(e) => write!(f, "{e}"),
            SimError::Serial(e) => write!(f, "{e}"),
            SimError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SimError {}

/// A raw port the line thread drives.
trait LinePort: Send {
    /// Readable fd to wait on, if any.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// Next deadline in the port's microseconds (`None`: poll every ms).
    fn deadline_us(&self) -> Option<u64>;
    /// Reads what is there and handles timeouts.
    fn drive(&mut self, now_us: u64, line: &mut ExchangeLine) -> Result<(), SimError>;
    fn summary(&self) -> DriverSummary {
        DriverSummary::default()
    }
}

impl LinePort for SatopPort {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
    fn deadline_us(&self) -> Option<u64> {
        Some(self.poll_timeout())
    }
    fn drive(&mut self, now_us: u64, line: &mut ExchangeLine) -> Result<(), SimError> {
        while !self
            .recv_ready(now_us, |rx, tx| line.exchange(rx, tx))
            .map_err(SimError::Satop)?
        {}
        if now_us >= self.poll_timeout() {
            self.handle_timeout(now_us, |rx, tx| line.exchange(rx, tx))
                .map_err(SimError::Satop)?;
        }
        while self.poll_event().is_some() {}
        Ok(())
    }
    fn summary(&self) -> DriverSummary {
        let s = self.stats();
        DriverSummary {
            missing: s.playout.missing,
            underruns: s.playout.underruns,
            late: s.playout.late,
            timer_slips: s.timer_slips,
            tx_overrun_octets: 0,
        }
    }
}

impl LinePort for SerialPort {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
    fn deadline_us(&self) -> Option<u64> {
        Some(self.poll_timeout())
    }
    fn drive(&mut self, now_us: u64, line: &mut ExchangeLine) -> Result<(), SimError> {
        while !self
            .recv_ready(now_us, |rx, tx| line.exchange(rx, tx))
            .map_err(SimError::Serial)?
        {}
        if now_us >= self.poll_timeout() {
            self.handle_timeout(now_us, |rx, tx| line.exchange(rx, tx))
                .map_err(SimError::Serial)?;
        }
        if self.has_pending() {
            self.write_ready().map_err(SimError::Serial)?;
        }
        while self.poll_event().is_some() {}
        Ok(())
    }
    fn summary(&self) -> DriverSummary {
        let s = self.stats();
        DriverSummary {
            timer_slips: s.timer_slips,
            tx_overrun_octets: s.tx_overrun_octets,
            ..DriverSummary::default()
        }
    }
}

impl LinePort for PairEndPort {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn deadline_us(&self) -> Option<u64> {
        None
    }
    fn drive(&mut self, _now_us: u64, line: &mut ExchangeLine) -> Result<(), SimError> {
        self.poll(|rx, tx| line.exchange(rx, tx));
        Ok(())
    }
}

impl LinePort for crate::media::lines::PairFarDriver {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(crate::media::lines::PairFarDriver::fd(self))
    }
    fn deadline_us(&self) -> Option<u64> {
        Some(self.poll_timeout())
    }
    fn drive(&mut self, now_us: u64, line: &mut ExchangeLine) -> Result<(), SimError> {
        self.recv_ready(now_us, |rx, tx| line.exchange(rx, tx));
        if now_us >= self.poll_timeout() {
            self.handle_timeout(now_us, |rx, tx| line.exchange(rx, tx));
        }
        Ok(())
    }
    fn summary(&self) -> DriverSummary {
        DriverSummary {
            missing: self.gaps(),
            ..DriverSummary::default()
        }
    }
}

/// The line thread: waits on the port's fd (or 1 ms) until its deadline,
/// drives the port, until `stop`.
fn line_thread<P: LinePort>(
    mut port: P,
    mut line: ExchangeLine,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> (ExchangeLine, DriverSummary, Option<SimError>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !stop.load(Ordering::Relaxed) {
        let now_us = epoch.elapsed().as_micros() as u64;
        let wait_us = port
            .deadline_us()
            .map_or(1000, |d| d.saturating_sub(now_us))
            .min(5000);
        let wait_ms = u16::try_from(wait_us.div_ceil(1000)).unwrap_or(5);
        match port.fd() {
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(wait_ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return (line, port.summary(), Some(SimError::Io(e.into()))),
                }
            }
            None => std::thread::sleep(Duration::from_micros(wait_us.max(200))),
        }
        let now_us = epoch.elapsed().as_micros() as u64;
        if let Err(e) = port.drive(now_us, &mut line) {
            return (line, port.summary(), Some(e));
        }
    }
    (line, port.summary(), None)
}

/// Runs the control loop on this thread with the line on its own.
fn run_with<P: LinePort + 'static>(
    cfg: &ExchangeConfig,
    ctl: &RunControl,
    epoch: Instant,
    make_port: impl FnOnce() -> Result<P, SimError>,
) -> Result<ExchangeReport, SimError> {
    let port = make_port()?;
    let (line, rings) = ExchangeLine::new(cfg.span_config());
    let stop_line = Arc::new(AtomicBool::new(false));
    let s = stop_line.clone();
    let handle = std::thread::Builder::new()
        .name(format!("sim-e1-{}", cfg.span))
        .spawn(move || line_thread(port, line, epoch, s))
        .map_err(SimError::Io)?;
    let started = Instant::now();
    let mut control = ExchangeControl::new(cfg.clone(), rings, started);
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        control.step(now);
        if control.is_done() {
            ctl.done.store(true, Ordering::Relaxed);
        }
        let done = control.is_done() && !ctl.wait_for_stop;
        if done || ctl.stop.load(Ordering::Relaxed) {
            break;
        }
        if now - started >= cfg.run_for {
            timed_out = !control.is_done();
            break;
        }
        if handle.is_finished() {
            break;
        }
        let next = control.poll_timeout(now);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Linger a little so that our last messages (a RELEASE COMPLETE) and
    // their acknowledgements cross before the line stops.
    let linger = Instant::now() + LINGER;
    while Instant::now() < linger && !handle.is_finished() {
        control.step(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    // Wind down: clear what is live and give it up to 2 s to end.
    control.shut_down(Instant::now());
    let wind_down = Instant::now() + Duration::from_secs(2);
    while control.live_calls() > 0 && Instant::now() < wind_down && !handle.is_finished() {
        control.step(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    stop_line.store(true, Ordering::Relaxed);
    let (line, driver, error) = handle
        .join()
        .map_err(|_| SimError::Io(std::io::Error::other("line thread panicked")))?;
    let mut rep = control.finish(Instant::now(), timed_out);
    ExchangeControl::add_line_counters(&mut rep, &line);
    rep.line.driver = driver;
    if let Some(e) = error {
        // A far end that closes its side first (a pty's other end, at the
        // end of a test) is not a failure once we were told to stop.
        if ctl.stop.load(Ordering::Relaxed) {
            info!(error = %e, "sim exchange: line driver ended after stop");
        } else {
            rep.ok = false;
            rep.failures.push(format!("line driver failed: {e}"));
        }
    }
    Ok(rep)
}

/// Runs the simulated exchange on a SAToP pseudowire. The exchange is the
/// clock master, so `params.timing` is forced to [`Timing::Internal`] for
/// the network role (the gateway end stays loop-timed).
pub fn run_satop(
    cfg: &ExchangeConfig,
    mut params: SatopParams,
    ctl: &RunControl,
) -> Result<ExchangeReport, SimError> {
    if cfg.role == Role::Network {
        params.timing = Timing::Internal;
    }
    let epoch = Instant::now();
    run_with(cfg, ctl, epoch, || {
        SatopPort::open(params, 0).map_err(SimError::Satop)
    })
}

/// Runs it on a serial tty carrying the raw E1 (internal timing for the
/// network role, as for satop).
pub fn run_serial(
    cfg: &ExchangeConfig,
    mut params: SerialParams,
    ctl: &RunControl,
) -> Result<ExchangeReport, SimError> {
    if cfg.role == Role::Network {
        params.timing = Timing::Internal;
    }
    let epoch = Instant::now();
    run_with(cfg, ctl, epoch, || {
        SerialPort::open(&params, 0).map_err(SimError::Serial)
    })
}

/// Runs it on a serial port the caller opened (e.g. with
/// [`SerialPort::from_fd`] on one end of a pty); its timing is the
/// caller's choice (the exchange should be [`Timing::Internal`]).
pub fn run_serial_port(
    cfg: &ExchangeConfig,
    port: SerialPort,
    ctl: &RunControl,
) -> Result<ExchangeReport, SimError> {
    run_with(cfg, ctl, Instant::now(), || Ok(port))
}

/// Runs it on one end of a [`super::exchange_pair::PairWire`] (the wire
/// runs on its own thread, the far end on another).
pub fn run_pair_end(
    cfg: &ExchangeConfig,
    port: PairEndPort,
    ctl: &RunControl,
) -> Result<ExchangeReport, SimError> {
    run_with(cfg, ctl, Instant::now(), || Ok(port))
}

/// Two simulated exchanges (typically the exchange and a user-side peer)
/// on the two ends of an in-process [`PairLine`], in one thread and in
/// simulated time: each millisecond of line time runs 8 frame periods of
/// the wire, both line sides, then both control sides at that instant.
/// Reproducible from `pair.seed` and independent of the machine's load;
/// the run stops when both scenarios are done (then lingers 300 ms, clears
/// what is live) or after `limit` of simulated time.
///
/// [`PairLine`]: crate::line::driver::pair::PairLine
pub fn run_pair_simulated(
    a: &ExchangeConfig,
    b: &ExchangeConfig,
    pair: PairConfig,
    limit: Duration,
) -> (ExchangeReport, ExchangeReport) {
    let (mut wire, mut pa, mut pb) = pair_wire(pair);
    let (mut la, ra) = ExchangeLine::new(a.span_config());
    let (mut lb, rb) = ExchangeLine::new(b.span_config());
    let t0 = Instant::now();
    let mut ca = ExchangeControl::new(a.clone(), ra, t0);
    let mut cb = ExchangeControl::new(b.clone(), rb, t0);
    let mut ms = 0u64;
    let mut tick = |ms: &mut u64, ca: &mut ExchangeControl, cb: &mut ExchangeControl| {
        for _ in 0..8 {
            wire.run_period();
            pa.poll(|rx, tx| la.exchange(rx, tx));
            pb.poll(|rx, tx| lb.exchange(rx, tx));
        }
        *ms += 1;
        let now = t0 + Duration::from_millis(*ms);
        ca.step(now);
        cb.step(now);
        now
    };
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    while ms < limit_ms && !(ca.is_done() && cb.is_done()) {
        tick(&mut ms, &mut ca, &mut cb);
    }
    let timed_out = (!ca.is_done(), !cb.is_done());
    let linger_ms = u64::try_from(LINGER.as_millis()).unwrap_or(0);
    for _ in 0..linger_ms {
        tick(&mut ms, &mut ca, &mut cb);
    }
    let now = t0 + Duration::from_millis(ms);
    ca.shut_down(now);
    cb.shut_down(now);
    for _ in 0..2000 {
        if ca.live_calls() == 0 && cb.live_calls() == 0 {
            break;
        }
        tick(&mut ms, &mut ca, &mut cb);
    }
    let now = t0 + Duration::from_millis(ms);
    let mut rep_a = ca.finish(now, timed_out.0);
    let mut rep_b = cb.finish(now, timed_out.1);
    ExchangeControl::add_line_counters(&mut rep_a, &la);
    ExchangeControl::add_line_counters(&mut rep_b, &lb);
    let w = wire.stats();
    rep_a.line.driver.underruns = w.underruns[0];
    rep_b.line.driver.underruns = w.underruns[1];
    (rep_a, rep_b)
}

/// Runs it on the far end of a gateway's `pair` span
/// (`config::MediaPlan::pair_far_ends`): the gateway's media thread is
/// the clock, the exchange answers each frame with one frame.
pub fn run_pair_far_end(
    cfg: &ExchangeConfig,
    far: crate::media::lines::PairFarEnd,
    ctl: &RunControl,
) -> Result<ExchangeReport, SimError> {
    run_with(cfg, ctl, Instant::now(), || Ok(far.into_driver(0)))
}
