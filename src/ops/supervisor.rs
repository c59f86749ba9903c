//! The supervisor: a progress-fed watchdog.
//!
//! Every critical loop (each media thread, each D-channel task, the SIP task,
//! the control loop) registers and gets a [`Heartbeat`]; it calls
//! [`Heartbeat::beat`] each time round its loop (one relaxed atomic add: safe on
//! the media thread, no allocation, no lock). The supervisor runs on its own OS
//! thread, so a wedged async runtime cannot hide from it. Every period (half of
//! `WATCHDOG_USEC`) it pings systemd (`WATCHDOG=1`) and the hardware watchdog
//! only if every registered loop has beaten since the previous check. If one
//! has not, it withholds the ping and logs which loop is stuck, so systemd (or
//! the hardware) restarts the gateway.
//!
//! Fault injection, for tests only: [`Supervisor::stall`] makes a named loop's
//! heartbeat stop counting, as if that loop had hung. The daemon only calls it
//! when the site config says `[debug] allow_fault_injection = true`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::events::NocEvent;
use super::hwdog::HardwareWatchdog;
use super::notify::Notifier;

#[derive(Debug)]
struct LoopState {
    name: String,
    beats: AtomicU64,
    stalled: AtomicBool,
    retired: AtomicBool,
}

/// A loop's check-in handle. Dropping it unregisters the loop.
#[derive(Debug)]
pub struct Heartbeat(Arc<LoopState>);

impl Heartbeat {
    /// "I went round my loop." Lock-free and allocation-free.
    #[inline]
    pub fn beat(&self) {
        if !self.0.stalled.load(Ordering::Relaxed) {
            self.0.beats.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.retired.store(true, Ordering::Relaxed);
    }
}

/// Counters the telemetry layer reads.
#[derive(Debug, Default)]
pub struct SupervisorStats {
    pub pings_sent: AtomicU64,
    pub pings_withheld: AtomicU64,
    /// Loops that made no progress at the last check (empty when healthy).
    stuck: Mutex<Vec<String>>,
}

/// The registry of loops; cheap to clone a handle to (it is an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    loops: Arc<Mutex<Vec<Arc<LoopState>>>>,
    pub stats: Arc<SupervisorStats>,
}

/// Result of one check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every loop made progress: ping.
    Healthy,
    /// These loops made none: withhold the ping.
    Stuck(Vec<String>),
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Registers a critical loop. Names are shown in logs (`media-0`, `dchan-1`, `sip`).
    pub fn register(&self, name: &str) -> Heartbeat {
        let state = Arc::new(LoopState {
            name: name.to_string(),
            beats: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        });
        self.lock().push(state.clone());
        tracing::debug!(loop_name = name, "loop registered with the supervisor");
        Heartbeat(state)
    }

    /// Test-only fault: the named loop's heartbeat stops counting. Returns
    /// false if no such loop is registered.
    pub fn stall(&self, name: &str) -> bool {
        let loops = self.lock();
        let mut found = false;
        for l in loops.iter().filter(|l| l.name == name) {
            l.stalled.store(true, Ordering::Relaxed);
            found = true;
        }
        found
    }

    /// Loops found stuck at the last check; empty when all progressed.
    pub fn stuck_loops(&self) -> Vec<String> {
        self.stats
            .stuck
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Names of the registered loops.
    pub fn loop_names(&self) -> Vec<String> {
        self.lock().iter().map(|l| l.name.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<LoopState>>> {
        // A poisoned registry still holds valid atomics; keep supervising.
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the supervisor thread. `period` is the ping interval.
    pub fn spawn(
        &self,
        period: Duration,
        notifier: Arc<Notifier>,
        hw: Option<HardwareWatchdog>,
    ) -> std::io::Result<SupervisorThread> {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let sup = self.clone();
        let handle = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || supervise(sup, period, notifier, hw, stop_rx))?;
        Ok(SupervisorThread {
            stop: stop_tx,
            handle: Some(handle),
        })
    }
}

/// Checks loop progress since the previous check; `seen` keeps the last counts.
fn check(sup: &Supervisor, seen: &mut Vec<(Arc<LoopState>, u64)>) -> Verdict {
    let mut loops = sup.lock();
    loops.retain(|l| !l.retired.load(Ordering::Relaxed));
    let mut stuck = Vec::new();
    let mut next = Vec::with_capacity(loops.len());
    for l in loops.iter() {
        let now = l.beats.load(Ordering::Relaxed);
        let before = seen
            .iter()
            .find(|(s, _)| Arc::ptr_eq(s, l))
            .map(|(_, b)| *b)
            .unwrap_or(0);
        if now == before {
            stuck.push(l.name.clone());
        }
        next.push((l.clone(), now));
    }
    *seen = next;
    if stuck.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Stuck(stuck)
    }
}

fn supervise(
    sup: Supervisor,
    period: Duration,
    notifier: Arc<Notifier>,
    mut hw: Option<HardwareWatchdog>,
    stop: mpsc::Receiver<()>,
) -> Option<HardwareWatchdog> {
    let mut seen = Vec::new();
    let mut was_stuck: Vec<String> = Vec::new();
    loop {
        match stop.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return hw,
        }
        match check(&sup, &mut seen) {
            Verdict::Healthy => {
                if let Err(e) = notifier.watchdog() {
                    tracing::warn!(error = %e, "WATCHDOG=1 could not be sent");
                }
                if let Some(h) = hw.as_mut()
                    && let Err(e) = h.keepalive()
                {
                    tracing::warn!(error = %e, "hardware watchdog keepalive failed");
                }
                sup.stats.pings_sent.fetch_add(1, Ordering::Relaxed);
                if !was_stuck.is_empty() {
                    crate::noc_event!(NocEvent::WatchdogResumed, loops = %was_stuck.join(","), "stuck loops made progress again; watchdog pings resume");
                    was_stuck.clear();
                    sup.stats
                        .stuck
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                }
            }
            Verdict::Stuck(names) => {
                sup.stats.pings_withheld.fetch_add(1, Ordering::Relaxed);
                if names != was_stuck {
                    *sup.stats.stuck.lock().unwrap_or_else(|p| p.into_inner()) = names.clone();
                    crate::noc_event!(
                        NocEvent::WatchdogWithheld,
                        loops = %names.join(","),
                        "loop made no progress in {period:?}: watchdog ping withheld, systemd will restart tdmgw if this lasts"
                    );
                    notifier.status(&format!(
                        "watchdog withheld: stuck loop(s) {}",
                        names.join(",")
                    ));
                    was_stuck = names;
                }
            }
        }
    }
}

/// The running supervisor thread; [`SupervisorThread::stop`] ends it and hands
/// back the hardware watchdog so it can be closed cleanly.
#[derive(Debug)]
pub struct SupervisorThread {
    stop: mpsc::Sender<()>,
    handle: Option<JoinHandle<Option<HardwareWatchdog>>>,
}

impl SupervisorThread {
    pub fn stop(mut self) -> Option<HardwareWatchdog> {
        let _ = self.stop.send(());
        self.handle.take().and_then(|h| h.join().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_when_every_loop_progressed() {
        let sup = Supervisor::new();
        let a = sup.register("media-0");
        let b = sup.register("control");
        let mut seen = Vec::new();
        a.beat();
        b.beat();
        assert_eq!(check(&sup, &mut seen), Verdict::Healthy);
        a.beat();
        assert_eq!(
            check(&sup, &mut seen),
            Verdict::Stuck(vec!["control".into()])
        );
        a.beat();
        b.beat();
        assert_eq!(check(&sup, &mut seen), Verdict::Healthy);
    }

    #[test]
    fn stalled_loop_stops_counting() {
        let sup = Supervisor::new();
        let a = sup.register("dchan-1");
        let mut seen = Vec::new();
        a.beat();
        assert_eq!(check(&sup, &mut seen), Verdict::Healthy);
        assert!(sup.stall("dchan-1"));
        assert!(!sup.stall("nonexistent"));
        a.beat();
        assert_eq!(
            check(&sup, &mut seen),
            Verdict::Stuck(vec!["dchan-1".into()])
        );
    }

    #[test]
    fn retired_loops_are_forgotten() {
        let sup = Supervisor::new();
        let a = sup.register("sip");
        let mut seen = Vec::new();
        drop(a);
        assert_eq!(check(&sup, &mut seen), Verdict::Healthy);
        assert!(sup.loop_names().is_empty());
    }
}
