//! The daemon's control loop: start-up, systemd notifications, SIGHUP reload,
//! SIGTERM drain, and the supervisor that feeds the watchdogs.
//!
//! Order at start-up: supervisor thread (so a hang during start-up is caught),
//! hardware watchdog, the layers, then `READY=1`. On SIGTERM: `STOPPING=1`,
//! refuse new work, wait up to `lifecycle.drain_timeout` for live work, exit 0.
//! On SIGHUP: `RELOADING=1`, re-read the config, apply what can change live,
//! log what needs a restart, keep the old config if the new one is invalid,
//! then `READY=1`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use super::board::OpsBoard;
use super::events::NocEvent;
use super::gateway::{Gateway, GatewayState};
use super::hwdog::HardwareWatchdog;
use super::logging::LogHandle;
use super::metrics::{Kind, collect_build_info, collect_process};
use super::notify::{Notifier, watchdog_period_from_env};
use super::supervisor::Supervisor;
use crate::config::Config;

/// The supervisor's period when systemd gives no `WATCHDOG_USEC`: stuck loops
/// are still logged.
const DEFAULT_SUPERVISOR_PERIOD: Duration = Duration::from_secs(1);

/// How often the control loop checks in.
const CONTROL_TICK: Duration = Duration::from_millis(100);

/// State the layers share with the lifecycle: the drain flag they obey and the
/// count of live work (calls) the drain waits for.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    live: AtomicUsize,
}

impl Lifecycle {
    /// Refuse new work from now on (SIGTERM, `tdmgw drain`).
    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// New work (calls) must be refused while this is true.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn work_started(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub fn work_ended(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Re-read on SIGHUP; `None` for the demo (nothing on disk to re-read).
    pub config_path: Option<PathBuf>,
    /// Stop by itself after this long (the demo).
    pub run_for: Option<Duration>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub watchdog_pings_sent: u64,
    pub watchdog_pings_withheld: u64,
    pub reloads_applied: u32,
    pub reloads_rejected: u32,
}

/// Runs the daemon until SIGTERM/SIGINT (or `run_for`), then drains and returns.
pub fn run(config: Config, opts: RunOptions, log: LogHandle) -> std::io::Result<RunReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tdmgw-control")
        .enable_all()
        .build()?;
    rt.block_on(control_loop(config, opts, log))
}

async fn control_loop(
    mut config: Config,
    opts: RunOptions,
    log: LogHandle,
) -> std::io::Result<RunReport> {
    let notifier = Arc::new(Notifier::from_env());
    notifier.status("starting");
    let supervisor = Supervisor::new();
    let hw = open_hardware_watchdog(&config);
    let period = supervisor_period(hw.as_ref());
    tracing::info!(
        period_ms = period.as_millis() as u64,
        systemd = notifier.is_enabled(),
        "supervisor started: watchdog pings only while every loop makes progress"
    );
    let sup_thread = supervisor.spawn(period, notifier.clone(), hw)?;
    let control = supervisor.register("control");
    control.beat();
    let lifecycle = Arc::new(Lifecycle::default());
    let board = Arc::new(OpsBoard::new(supervisor.clone(), lifecycle.clone()));
    register_base_metrics(&board);
    let http = bind_management(&config, &board).await?;
    let admin = bind_admin(&config, &board, http.1)?;
    let (gateway_state, gateway_rx) = tokio::sync::watch::channel(GatewayState::Starting);
    super::layers::register_gateway(&board, gateway_rx);
    let gateway = start_gateway(&config, &board, &supervisor, &lifecycle, &gateway_state).await;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let started = Instant::now();
    let stall_at = fault_injection(&config).map(|(name, after)| (name, started + after));
    let mut stalled = false;
    let deadline = opts.run_for.map(|d| started + d);

    for line in config.summary().lines() {
        tracing::info!("{line}");
    }
    notifier.ready();
    notifier.status(&running_status(&config, &gateway_state.borrow()));
    tracing::info!(version = crate::VERSION, "tdmgw ready");

    let mut report = RunReport::default();
    let mut tick = interval(CONTROL_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let far_future = started + Duration::from_secs(86_400 * 365 * 30);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = sighup.recv() => reload(&mut config, &opts, &notifier, &log, &mut report),
            _ = sleep_until(deadline.unwrap_or(far_future)) => {
                tracing::info!("run time over: draining");
                break;
            }
            _ = tick.tick() => {
                control.beat();
                if let Some(gw) = &gateway {
                    watch_gateway(gw, &gateway_state, &notifier);
                }
                if let Some((name, at)) = &stall_at
                    && !stalled && Instant::now() >= *at
                {
                    stalled = true;
                    let found = supervisor.stall(name);
                    tracing::warn!(loop_name = %name, found, "FAULT INJECTION: loop stalled on purpose ([debug] allow_fault_injection)");
                }
            }
        }
    }

    notifier.stopping();
    notifier.status("draining: refusing new calls");
    crate::noc_event!(
        NocEvent::Stopping,
        live_calls = lifecycle.live(),
        "tdmgw stopping: draining"
    );
    drain(
        &lifecycle,
        config.site.lifecycle.drain_timeout.get(),
        &control,
    )
    .await;
    if let Some(gw) = gateway {
        let rep = gw.stop().await;
        tracing::info!(
            calls_left = rep.calls_left,
            channels_busy = rep.channels_busy,
            "gateway stopped"
        );
    }
    http.0.abort();
    admin.0.abort();
    if let Some(p) = &admin.1 {
        let _ = std::fs::remove_file(p);
    }
    drop(control);
    if let Some(hw) = sup_thread.stop()
        && let Err(e) = hw.close()
    {
        tracing::warn!(error = %e, "hardware watchdog magic close failed; the box may reboot");
    }
    report.watchdog_pings_sent = supervisor.stats.pings_sent.load(Ordering::Relaxed);
    report.watchdog_pings_withheld = supervisor.stats.pings_withheld.load(Ordering::Relaxed);
    tracing::info!(
        pings_sent = report.watchdog_pings_sent,
        pings_withheld = report.watchdog_pings_withheld,
        "tdmgw stopped"
    );
    Ok(report)
}

/// Starts the gateway (`ops::gateway`) when the site config carries calls
/// (it has routes or core peer groups); an operations-only config runs the
/// lifecycle and telemetry alone (state `NotConfigured`, ready).
///
/// A gateway that cannot be built (a DAHDI span `dahdi_cfg` did not
/// configure, a device that is missing or tdmgw may not open; a SIP address
/// in use) is logged as an error and the daemon stays up, not ready: state
/// `Failed` fails `/readyz` with the error, shows in `tdmgw status`, in
/// `tdmgw_gateway_state` and in systemd's `STATUS=`. Staying up, rather
/// than exiting, keeps the reason in front of the NOC: an exit would have
/// systemd restart tdmgw into the same failure until its start limit, with
/// no `/metrics` or `/readyz` to scrape meanwhile. A restart after the fix
/// starts the gateway.
async fn start_gateway(
    config: &Config,
    board: &Arc<OpsBoard>,
    supervisor: &Supervisor,
    lifecycle: &Arc<Lifecycle>,
    state: &tokio::sync::watch::Sender<GatewayState>,
) -> Option<Gateway> {
    if config.site.routes.is_empty() && config.site.peer_groups.is_empty() {
        tracing::info!("no routes and no core peers configured: operations only, no gateway");
        state.send_replace(GatewayState::NotConfigured);
        return None;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    match Gateway::start(config, board, supervisor, lifecycle.clone(), seed).await {
        Ok(gw) => {
            state.send_replace(GatewayState::Running);
            Some(gw)
        }
        Err(e) => {
            tracing::error!(error = %e, "the gateway could not be started: running operations only, no calls; /readyz fails until tdmgw is restarted with this fixed");
            state.send_replace(GatewayState::Failed(e.to_string()));
            None
        }
    }
}

/// A running gateway one of whose parts has ended by itself is no longer
/// the gateway configured: state `Stopped` (not ready), logged once.
fn watch_gateway(
    gw: &Gateway,
    state: &tokio::sync::watch::Sender<GatewayState>,
    notifier: &Notifier,
) {
    if *state.borrow() != GatewayState::Running {
        return;
    }
    let ended = gw.ended_parts();
    if ended.is_empty() {
        return;
    }
    let what = format!("{} ended", ended.join(", "));
    tracing::error!(parts = %what, "a part of the gateway has ended: calls are not carried as configured; restart tdmgw");
    notifier.status(&format!("not ready: gateway stopped: {what}"));
    state.send_replace(GatewayState::Stopped(what));
}

/// systemd's `STATUS=` once started.
fn running_status(config: &Config, g: &GatewayState) -> String {
    let spans = config.board.spans.len();
    match g {
        GatewayState::Failed(e) => {
            format!("running operations only, not ready: gateway failed to start: {e}")
        }
        GatewayState::NotConfigured => {
            format!("running operations only: {spans} span(s) configured, no routes or core peers")
        }
        _ => format!("running: {spans} span(s) configured"),
    }
}

fn open_hardware_watchdog(config: &Config) -> Option<HardwareWatchdog> {
    let w = config.board.watchdog.as_ref()?;
    match HardwareWatchdog::open(&w.device, w.timeout_s) {
        Ok(h) => {
            if h.last_boot_by_watchdog {
                tracing::error!(device = %w.device.display(), "the last reboot was caused by the hardware watchdog");
            }
            tracing::info!(device = %w.device.display(), identity = %h.identity, timeout_s = h.timeout_s, "hardware watchdog armed");
            Some(h)
        }
        Err(e) => {
            tracing::error!(device = %w.device.display(), error = %e, "hardware watchdog not armed");
            None
        }
    }
}

/// Half of systemd's period, and at most a third of the hardware timeout.
fn supervisor_period(hw: Option<&HardwareWatchdog>) -> Duration {
    let mut p = watchdog_period_from_env()
        .map(|d| d / 2)
        .unwrap_or(DEFAULT_SUPERVISOR_PERIOD);
    if let Some(h) = hw {
        p = p.min(Duration::from_secs(u64::from(h.timeout_s.max(1))) / 3);
    }
    p.max(Duration::from_millis(10))
}

fn fault_injection(config: &Config) -> Option<(String, Duration)> {
    let d = &config.site.debug;
    if !d.allow_fault_injection {
        return None;
    }
    Some((d.stall_loop.clone()?, d.stall_after?.get()))
}

/// SIGTERM: refuse new work and wait, bounded, for live work to finish.
async fn drain(lifecycle: &Lifecycle, limit: Duration, control: &super::supervisor::Heartbeat) {
    lifecycle.start_drain();
    let until = Instant::now() + limit;
    while lifecycle.live() > 0 && Instant::now() < until {
        control.beat();
        tokio::time::sleep(CONTROL_TICK).await;
    }
    if lifecycle.live() > 0 {
        tracing::warn!(
            live = lifecycle.live(),
            "drain time over; remaining calls are cut"
        );
    }
}

/// SIGHUP: re-read, validate, apply what can change live.
fn reload(
    config: &mut Config,
    opts: &RunOptions,
    notifier: &Notifier,
    log: &LogHandle,
    report: &mut RunReport,
) {
    notifier.reloading();
    let Some(path) = &opts.config_path else {
        tracing::info!("SIGHUP: the demo has no config file to re-read");
        notifier.ready();
        return;
    };
    match Config::load(path) {
        Err(errs) => {
            report.reloads_rejected += 1;
            for e in &errs.0 {
                crate::noc_event!(NocEvent::ConfigRejected, "config reload rejected: {e}");
            }
            notifier.status("running on the previous config: reload rejected (see log)");
        }
        Ok(new) => {
            report.reloads_applied += 1;
            let needs_restart = restart_needed(config, &new);
            if new.site.log.level != config.site.log.level
                && let Err(e) = log.set_level(&new.site.log.level)
            {
                tracing::warn!(error = %e, "log level not changed");
            }
            for what in &needs_restart {
                tracing::warn!(
                    "config reload: {what} changed; it takes effect at the next restart"
                );
            }
            let kept = keep_restart_only(config, new);
            *config = kept;
            crate::noc_event!(
                NocEvent::ConfigReloaded,
                restart_pending = needs_restart.len(),
                "config reloaded from {}",
                path.display()
            );
            notifier.status(&format!(
                "running: config reloaded ({} change(s) wait for a restart)",
                needs_restart.len()
            ));
        }
    }
    notifier.ready();
}

/// What differs between two configs that cannot change while running.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.board != new.board || old.board_path != new.board_path {
        v.push("the board profile");
    }
    if old.site.spans != new.site.spans {
        v.push("span signalling");
    }
    if old.site.management != new.site.management {
        v.push("the management listener");
    }
    if old.site.sip.listen != new.site.sip.listen {
        v.push("the SIP listeners");
    }
    if old.site.media != new.site.media {
        v.push("the RTP address and ports");
    }
    if old.site.debug != new.site.debug {
        v.push("the debug settings");
    }
    if old.site.log.format != new.site.log.format {
        v.push("the log format");
    }
    v
}

/// The new config, with the parts that need a restart kept as they run now.
fn keep_restart_only(old: &Config, mut new: Config) -> Config {
    new.board = old.board.clone();
    new.board_path = old.board_path.clone();
    new.site.spans = old.site.spans.clone();
    new.site.management = old.site.management.clone();
    new.site.sip.listen = old.site.sip.listen.clone();
    new.site.media = old.site.media.clone();
    new.site.debug = old.site.debug.clone();
    new.site.log.format = old.site.log.format;
    new
}

/// Metrics every process has: build info, process, watchdog.
fn register_base_metrics(board: &OpsBoard) {
    board.metrics.register(Arc::new(collect_build_info));
    board.metrics.register(Arc::new(collect_process));
    let sup = board.supervisor.clone();
    board
        .metrics
        .register(Arc::new(move |out: &mut super::metrics::Exposition| {
            out.single(
                "tdmgw_watchdog_pings_sent_total",
                "Watchdog pings sent (systemd and hardware): every loop had progressed.",
                Kind::Counter,
                sup.stats.pings_sent.load(Ordering::Relaxed) as f64,
            );
            out.single(
                "tdmgw_watchdog_pings_withheld_total",
                "Watchdog pings withheld because a loop made no progress.",
                Kind::Counter,
                sup.stats.pings_withheld.load(Ordering::Relaxed) as f64,
            );
            out.single(
                "tdmgw_loops_stuck",
                "Critical loops that made no progress at the last supervisor check.",
                Kind::Gauge,
                sup.stuck_loops().len() as f64,
            );
        }));
    let lc = board.lifecycle.clone();
    board
        .metrics
        .register(Arc::new(move |out: &mut super::metrics::Exposition| {
            out.single(
                "tdmgw_draining",
                "1 while tdmgw refuses new calls (stopping or drained by an operator).",
                Kind::Gauge,
                if lc.is_draining() { 1.0 } else { 0.0 },
            );
        }));
}

/// Binds /metrics, /livez, /readyz before READY=1.
async fn bind_management(
    config: &Config,
    board: &Arc<OpsBoard>,
) -> std::io::Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr)> {
    let want = config.site.management.listen;
    let listener = tokio::net::TcpListener::bind(want)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("management listener {want}: {e}")))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "management HTTP: /metrics /livez /readyz");
    Ok((
        tokio::spawn(super::http::serve(listener, board.clone())),
        addr,
    ))
}

/// Binds the admin socket; a failure is logged, not fatal (calls matter more).
fn bind_admin(
    config: &Config,
    board: &Arc<OpsBoard>,
    management: std::net::SocketAddr,
) -> std::io::Result<(tokio::task::JoinHandle<()>, Option<PathBuf>)> {
    let path = config.site.management.admin_socket.clone();
    let context = Arc::new(serde_json::json!({
        "version": crate::VERSION,
        "pid": std::process::id(),
        "started_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "board": config.board.name,
        "management": management.to_string(),
        "config": config.site_path.display().to_string(),
    }));
    match super::admin::bind(&path) {
        Ok(l) => {
            tracing::info!(path = %path.display(), "admin socket: tdmgw status | drain | trace");
            Ok((
                tokio::spawn(super::admin::serve(l, board.clone(), context)),
                Some(path),
            ))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "admin socket not available; tdmgw status will not work");
            Ok((tokio::spawn(async {}), None))
        }
    }
}
