//! The D-channel task: the control plane's thin tokio shell around one
//! span's [`DChannel`] (DESIGN.md §4).
//!
//! Each time round its loop the task waits for the first of: a command from
//! the call module, a received frame from its [`FramePort`], the stack's
//! deadline (`poll_timeout`) or the heartbeat interval. It feeds the input
//! (`handle_frame` / a `Q931` command / `handle_timeout`), then drains
//! `poll_transmit()` to the port and `poll_event()` to the call module,
//! publishes the span's [`DChannelStatus`] if it changed, and checks in
//! with the supervisor through its [`Observer`].
//!
//! - **Commands** ([`Command`], usually through a [`DChannelHandle`]) go
//!   over a bounded tokio mpsc channel; each carries a oneshot for the
//!   result, so a refused command ([`CommandError`]) is answered, never
//!   dropped.
//! - **Events** go out as [`SpanEvent`]s on an unbounded channel the caller
//!   gives (one channel may collect every span's). Unbounded on purpose:
//!   the call module awaits command replies from this task, so a bounded
//!   event channel could deadlock the two; the stack emits events only in
//!   answer to input, which bounds the queue by the peer's message rate.
//! - **Status**: a `watch` channel of [`DChannelStatus`] (link, Q.921
//!   state, calls, the channel table idle / reserved / busy / restarting /
//!   out of service, counters), replaced only when something changed;
//!   readers (telemetry, the call module) never hold the task up.
//! - **Observer**: `beat()` at least every `heartbeat_interval` (the
//!   supervisor's check-in), `frame()` for every frame received or sent
//!   (`tdmgw trace`), `event()` for every event before it is sent
//!   (NOC events: `ops::dchannel` maps D-channel up/down and RESTART sent
//!   and received to them, so `isdn` stays independent of `ops`).
//!
//! The task stops on [`Command::Shutdown`], when every [`DChannelHandle`]
//! (the command sender) is dropped, when the port closes or fails; it
//! returns the stack ([`Stopped`]) so its final state can be inspected. It
//! does not clear calls on the way out: drain them first.
//!
//! Logging: the cores log every state change (Q.921 `q921: state a -> b`,
//! Q.931 `q931 state U3 -> U10` with span, call reference, call id and
//! timeslot) and the timer values in force when the stack is built (one
//! line per span, `q931 timers in force`); the task logs start, stop and
//! port failures.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{error, info, warn};

use super::cause::Cause;
use super::dchannel::{DChannel, DChannelCounters};
use super::port::{FRAME_MAX, FramePort};
use super::q921::{self, LinkConfig};
use super::q931::{self, CallId, ChannelTable, CommandError, PlaceCall, RestartClass};

/// What a D-channel task is built from.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub link: LinkConfig,
    pub q931: q931::Config,
    /// The longest the task goes without checking in with the supervisor.
    pub heartbeat_interval: Duration,
    /// Commands queued before senders wait.
    pub command_queue: usize,
}

impl TaskConfig {
    /// The stack's parameters (from `SpanSignalling::dchannel_params`) with
    /// a 1 s heartbeat and a queue of 64 commands.
    pub fn new(link: LinkConfig, q931: q931::Config) -> TaskConfig {
        TaskConfig {
            link,
            q931,
            heartbeat_interval: Duration::from_secs(1),
            command_queue: 64,
        }
    }
}

/// Where a command's result goes.
pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// What the call module asks a span's D-channel to do (Q.931 §5 commands).
#[derive(Debug)]
pub enum Command {
    PlaceCall {
        call: PlaceCall,
        reply: Reply<CallId>,
    },
    /// Overlap sending: more digits for a call in U2/N25.
    Information {
        id: CallId,
        digits: String,
        sending_complete: bool,
        reply: Reply<()>,
    },
    Alerting {
        id: CallId,
        reply: Reply<()>,
    },
    /// PROGRESS with this progress description (1 or 8 for early media).
    Progress {
        id: CallId,
        description: u8,
        reply: Reply<()>,
    },
    Connect {
        id: CallId,
        reply: Reply<()>,
    },
    /// Start clearing with DISCONNECT.
    Disconnect {
        id: CallId,
        cause: Cause,
        reply: Reply<()>,
    },
    /// Clear with RELEASE (or RELEASE COMPLETE before the call is answered).
    Release {
        id: CallId,
        cause: Cause,
        reply: Reply<()>,
    },
    StatusEnquiry {
        id: CallId,
        reply: Reply<()>,
    },
    /// RESTART of `class` (`timeslots` for class 0, indicated channels).
    Restart {
        class: RestartClass,
        timeslots: Vec<u8>,
        reply: Reply<()>,
    },
    /// Stop the task after sending what is queued.
    Shutdown,
}

/// One event of one span, for the call module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEvent {
    pub span: u8,
    pub event: q931::Event,
}

/// A span's D-channel as telemetry and the call module read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DChannelStatus {
    pub span: u8,
    /// Q.931's view: the data link is established.
    pub link_up: bool,
    pub q921_state: q921::State,
    /// Calls not in the null state.
    pub calls: usize,
    /// Idle, reserved, busy, restarting, out of service per timeslot.
    pub channels: ChannelTable,
    pub q921: q921::Counters,
    pub q931: q931::Counters,
    pub dchannel: DChannelCounters,
}

impl DChannelStatus {
    fn of(dc: &DChannel, span: u8) -> DChannelStatus {
        DChannelStatus {
            span,
            link_up: dc.q931().link_up(),
            q921_state: dc.link().state(),
            calls: dc.q931().call_count(),
            channels: dc.q931().channels().clone(),
            q921: dc.link().counters().clone(),
            q931: dc.q931().counters,
            dchannel: *dc.counters(),
        }
    }
}

/// What the task tells the world besides the call module (module doc).
pub trait Observer: Send + Sync + 'static {
    /// The task went round its loop (the supervisor's check-in).
    fn beat(&self) {}
    /// An event of `span`, before it goes to the call module.
    fn event(&self, _span: u8, _event: &q931::Event) {}
    /// A frame of `span` (address field onwards, no FCS), `sent` by us or
    /// received, before it goes to the port or the stack (`tdmgw trace`).
    fn frame(&self, _span: u8, _sent: bool, _frame: &[u8]) {}
}

/// No supervisor, no NOC (tests, tools).
impl Observer for () {}

/// Why a command could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskError {
    /// Q.931 refused it.
    Refused(CommandError),
    /// The task has stopped.
    Stopped,
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Refused(e) => write!(f, "refused by Q.931: {e:?}"),
            TaskError::Stopped => write!(f, "the D-channel task has stopped"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why the task stopped.
#[derive(Debug)]
pub enum StopReason {
    Shutdown,
    /// Every command sender was dropped.
    HandlesDropped,
    /// The port reported end of stream.
    PortClosed,
    PortFailed(io::Error),
}

/// The stopped task's stack, for inspection.
pub struct Stopped {
    pub reason: StopReason,
    pub dchannel: DChannel,
}

/// The call module's end of a D-channel task (cheap to clone).
#[derive(Debug, Clone)]
pub struct DChannelHandle {
    span: u8,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<DChannelStatus>,
}

impl DChannelHandle {
    pub fn span(&self) -> u8 {
        self.span
    }

    /// The status channel (`borrow()` for now, `changed()` to wait).
    pub fn status(&self) -> watch::Receiver<DChannelStatus> {
        self.status.clone()
    }

    /// Sends a raw command (the reply is the caller's).
    pub async fn send(&self, c: Command) -> Result<(), TaskError> {
        self.commands.send(c).await.map_err(|_| TaskError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, TaskError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        match rx.await {
            Ok(r) => r.map_err(TaskError::Refused),
            Err(_) => Err(TaskError::Stopped),
        }
    }

    pub async fn place_call(&self, call: PlaceCall) -> Result<CallId, TaskError> {
        self.ask(|reply| Command::PlaceCall { call, reply }).await
    }

    pub async fn information(
        &self,
        id: CallId,
        digits: &str,
        sending_complete: bool,
    ) -> Result<(), TaskError> {
        let digits = digits.to_string();
        self.ask(|reply| Command::Information {
            id,
            digits,
            sending_complete,
            reply,
        })
        .await
    }

    pub async fn alerting(&self, id: CallId) -> Result<(), TaskError> {
        self.ask(|reply| Command::Alerting { id, reply }).await
    }

    pub async fn progress(&self, id: CallId, description: u8) -> Result<(), TaskError> {
        self.ask(|reply| Command::Progress {
            id,
            description,
            reply,
        })
        .await
    }

    pub async fn connect(&self, id: CallId) -> Result<(), TaskError> {
        self.ask(|reply| Command::Connect { id, reply }).await
    }

    pub async fn disconnect(&self, id: CallId, cause: Cause) -> Result<(), TaskError> {
        self.ask(|reply| Command::Disconnect { id, cause, reply })
            .await
    }

    pub async fn release(&self, id: CallId, cause: Cause) -> Result<(), TaskError> {
        self.ask(|reply| Command::Release { id, cause, reply })
            .await
    }

    pub async fn status_enquiry(&self, id: CallId) -> Result<(), TaskError> {
        self.ask(|reply| Command::StatusEnquiry { id, reply }).await
    }

    pub async fn restart(&self, class: RestartClass, timeslots: &[u8]) -> Result<(), TaskError> {
        let timeslots = timeslots.to_vec();
        self.ask(|reply| Command::Restart {
            class,
            timeslots,
            reply,
        })
        .await
    }

    /// Asks the task to stop; its `JoinHandle` says when it has.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

/// Builds the stack (logging the timers in force) and returns the handle
/// and the task's future, to run where the port can live (`spawn_local`
/// for a single-threaded port). Use [`spawn`] otherwise.
pub fn start<P: FramePort>(
    cfg: TaskConfig,
    port: P,
    events: mpsc::UnboundedSender<SpanEvent>,
    observer: Arc<dyn Observer>,
) -> (DChannelHandle, impl Future<Output = Stopped>) {
    let span = cfg.q931.span;
    let now = Instant::now();
    info!(
        span,
        role = ?cfg.q931.role,
        n200 = cfg.link.n200,
        k = cfg.link.k,
        n201 = cfg.link.n201,
        t200 = ?cfg.link.t200,
        t203 = ?cfg.link.t203,
        channels = cfg.q931.timeslots.len(),
        "dchannel task starting (Q.931 logs its timers in force next)"
    );
    let dc = DChannel::new(cfg.link, cfg.q931, now.into_std());
    let (cmd_tx, cmd_rx) = mpsc::channel(cfg.command_queue.max(1));
    let (status_tx, status_rx) = watch::channel(DChannelStatus::of(&dc, span));
    let task = Task {
        span,
        dc,
        port,
        commands: cmd_rx,
        events,
        status: status_tx,
        observer,
        heartbeat: cfg.heartbeat_interval,
        events_closed: false,
    };
    let handle = DChannelHandle {
        span,
        commands: cmd_tx,
        status: status_rx,
    };
    (handle, task.run())
}

/// [`start`] on the current tokio runtime.
pub fn spawn<P: FramePort + Send + 'static>(
    cfg: TaskConfig,
    port: P,
    events: mpsc::UnboundedSender<SpanEvent>,
    observer: Arc<dyn Observer>,
) -> (DChannelHandle, JoinHandle<Stopped>) {
    let (handle, fut) = start(cfg, port, events, observer);
    (handle, tokio::spawn(fut))
}

struct Task<P> {
    span: u8,
    dc: DChannel,
    port: P,
    commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SpanEvent>,
    status: watch::Sender<DChannelStatus>,
    observer: Arc<dyn Observer>,
    heartbeat: Duration,
    events_closed: bool,
}

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Frame(io::Result<Option<usize>>),
    Timer,
}

impl<P: FramePort> Task<P> {
    async fn run(mut self) -> Stopped {
        let mut buf = vec![0u8; FRAME_MAX];
        let reason = loop {
            if let Err(e) = self.flush().await {
                break StopReason::PortFailed(e);
            }
            self.observer.beat();
            let beat_at = Instant::now() + self.heartbeat;
            let deadline = self
                .dc
                .poll_timeout()
                .map(Instant::from_std)
                .map_or(beat_at, |d| d.min(beat_at));
            let wake = {
                let port = &mut self.port;
                tokio::select! {
                    biased;
                    c = self.commands.recv() => Wake::Command(c),
                    r = poll_fn(|cx| port.poll_recv(cx, &mut buf)) => Wake::Frame(r),
                    () = sleep_until(deadline) => Wake::Timer,
                }
            };
            let now = Instant::now().into_std();
            match wake {
                Wake::Command(Some(Command::Shutdown)) => break StopReason::Shutdown,
                Wake::Command(None) => break StopReason::HandlesDropped,
                Wake::Command(Some(c)) => self.execute(c),
                Wake::Frame(Ok(Some(n))) => match buf.get(..n) {
                    Some(frame) => {
                        self.observer.frame(self.span, false, frame);
                        self.dc.handle_frame(now, frame);
                    }
                    None => warn!(
                        span = self.span,
                        len = n,
                        "port reported a frame longer than its buffer"
                    ),
                },
                Wake::Frame(Ok(None)) => break StopReason::PortClosed,
                Wake::Frame(Err(e)) => break StopReason::PortFailed(e),
                Wake::Timer => {
                    if self.dc.poll_timeout().is_some_and(|d| d <= now) {
                        self.dc.handle_timeout(now);
                    }
                }
            }
        };
        // What the last input produced still goes out (best effort).
        let _ = self.flush().await;
        match &reason {
            StopReason::PortFailed(e) => {
                error!(span = self.span, error = %e, "dchannel task stopped: frame port failed")
            }
            r => {
                info!(span = self.span, reason = ?r, calls = self.dc.q931().call_count(), "dchannel task stopped")
            }
        }
        Stopped {
            reason,
            dchannel: self.dc,
        }
    }

    /// Drains frames to the port and events to the call module, then
    /// publishes the status if it changed.
    async fn flush(&mut self) -> io::Result<()> {
        while let Some(frame) = self.dc.poll_transmit() {
            self.observer.frame(self.span, true, &frame);
            let port = &mut self.port;
            poll_fn(|cx| port.poll_send(cx, &frame)).await?;
        }
        while let Some(event) = self.dc.poll_event() {
            self.observer.event(self.span, &event);
            let ev = SpanEvent {
                span: self.span,
                event,
            };
            if self.events.send(ev).is_err() && !self.events_closed {
                self.events_closed = true;
                warn!(
                    span = self.span,
                    "call module's event channel closed; events are dropped"
                );
            }
        }
        let new = DChannelStatus::of(&self.dc, self.span);
        self.status.send_if_modified(|s| {
            let changed = *s != new;
            if changed {
                *s = new;
            }
            changed
        });
        Ok(())
    }

    fn execute(&mut self, c: Command) {
        let now = Instant::now().into_std();
        let q = self.dc.q931_mut();
        // A caller that stopped waiting for the reply is no reason to fail.
        let _ = match c {
            Command::PlaceCall { call, reply } => reply.send(q.place_call(now, call)).is_ok(),
            Command::Information {
                id,
                digits,
                sending_complete,
                reply,
            } => reply
                .send(q.information(now, id, &digits, sending_complete))
                .is_ok(),
            Command::Alerting { id, reply } => reply.send(q.alerting(now, id)).is_ok(),
            Command::Progress {
                id,
                description,
                reply,
            } => reply.send(q.progress(now, id, description)).is_ok(),
            Command::Connect { id, reply } => reply.send(q.connect(now, id)).is_ok(),
            Command::Disconnect { id, cause, reply } => {
                reply.send(q.disconnect(now, id, cause)).is_ok()
            }
            Command::Release { id, cause, reply } => reply.send(q.release(now, id, cause)).is_ok(),
            Command::StatusEnquiry { id, reply } => reply.send(q.status_enquiry(now, id)).is_ok(),
            Command::Restart {
                class,
                timeslots,
                reply,
            } => reply.send(q.restart(now, class, &timeslots)).is_ok(),
            Command::Shutdown => true,
        };
        self.dc.pump(now);
    }
}
