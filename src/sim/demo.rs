//! `tdmgw demo --full` (issue 7 §6): the whole gateway on the built-in
//! simulated board, facing both simulators, with a realistic call mix.
//!
//! - The gateway ([`crate::ops::gateway::Gateway`]) on `board/sim.toml`
//!   (one E1 on the in-process `pair` line) with `examples/demo.toml`;
//!   `/metrics`, `/livez`, `/readyz` on the demo's management address.
//! - The simulated exchange ([`super::exchange_run::run_pair_far_end`]) on
//!   the pair line's far end, network side: 999 and 101 calls, a call to
//!   a number with no route (refused, cause 1), every 4th call abandoned
//!   while ringing, DTMF in-band on every 3rd answered call (echoed back),
//!   and answering the core's call-backs after 300 ms of ringing.
//! - With `--busy NUMBER` ([`DemoOptions::busy`]) the core rejects calls to
//!   that number with 486 (the exchange expects cause 17 for them).
//! - The simulated core ([`super::core::SimCore`]) on loopback UDP (the
//!   `sim-core` peer of demo.toml): rings, answers and echoes RTP for 999,
//!   and places call-backs towards the exchange.
//!
//! Live progress every 2 s (calls up, completed, failed by cause, MOS),
//! then a summary. It passes only when the exchange's checks held (every
//! call's expected end, audio echo checks, DTMF), the core's checks held,
//! and at the end the gateway held no call, no busy B-channel and no SIP
//! dialog.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::core::{AnswerPolicy, CallPlan, Expect, Outcome, SimCore, SimCoreConfig};
use super::exchange::{ExchangeConfig, ExchangeReport, Incoming, RunControl, Scenario};
use super::exchange_run::run_pair_far_end;
use crate::config::Config;
use crate::ops::board::OpsBoard;
use crate::ops::daemon::Lifecycle;
use crate::ops::gateway::Gateway;
use crate::ops::metrics::{collect_build_info, collect_process};
use crate::ops::supervisor::Supervisor;

/// The number the exchange calls that no route matches.
const UNROUTED: &str = "102";
/// The exchange's number the core's call-backs go to.
const CALL_BACK: &str = "01632960999";

/// Digits the exchange sends in-band (reach the core as RFC 4733).
const EXCHANGE_DIGITS: &str = "123#";
/// Digits the core sends as RFC 4733 (reach the exchange in-band).
const CORE_DIGITS: &str = "456*";

/// Variants of the demo's call mix.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// The core rejects calls to this number with 486 Busy Here (the
    /// exchange then sees cause 17, RFC 3398 §7.2.4.1).
    pub busy: Option<String>,
}

/// What a demo run found.
#[derive(Debug, Clone, Default)]
pub struct DemoOutcome {
    pub ok: bool,
    pub failures: Vec<String>,
}

fn scenario(seconds: u64, opts: &DemoOptions) -> Scenario {
    let calls = (seconds as u32).saturating_sub(4).max(4);
    Scenario {
        calls,
        rate_per_s: 1.0,
        hold: Duration::from_millis(2500),
        called: vec![
            "999".into(),
            "101".into(),
            "999".into(),
            UNROUTED.into(),
            "101".into(),
        ],
        calling: Some("01632960123".into()),
        abandon_every: 3,
        abandon_after: Duration::from_millis(150),
        dtmf_every: 3,
        dtmf_digits: EXCHANGE_DIGITS.into(),
        // The digits are checked where they arrive (the core's RFC 4733
        // receiver), not by their echo: on a call-back, which also carries
        // the core's own digits, the core does not echo telephone-events
        // (`sim::rtp_peer`).
        dtmf_expect_echo: false,
        incoming: Incoming::Answer {
            ring: Duration::from_millis(300),
        },
        expect_incoming: core_calls(seconds),
        // Unallocated number (no route), and the abandoned calls' own
        // clearing (normal, 16) before an answer.
        expected_causes: if opts.busy.is_some() {
            vec![1, 16, 17]
        } else {
            vec![1, 16]
        },
        // The line aligns and both ends establish the data link at start-up
        // (a peer re-establishment, MDL-ERROR F, is seen now and then while
        // the pair line primes): start once it has settled.
        start_delay: Duration::from_secs(2),
        // Echo through RTP, the core and the jitter buffer: about 1% of the
        // blocks of a call are lost at its start and end (measured: 5-7 of
        // 486-607 blocks per call).
        max_loss_percent: 3.0,
        ..Scenario::default()
    }
}

fn core_calls(seconds: u64) -> u32 {
    ((seconds / 5) as u32).max(1)
}

fn core_config(
    listen: SocketAddr,
    gateway: SocketAddr,
    seconds: u64,
    opts: &DemoOptions,
) -> SimCoreConfig {
    let mut c = SimCoreConfig::new(listen);
    // 999 rings for 400 ms (long enough for the exchange to abandon some),
    // 101 answers after 200 ms.
    c.answer = AnswerPolicy {
        delay: Duration::from_millis(200),
        ..AnswerPolicy::default()
    };
    c.answer_by_number = vec![(
        "999".into(),
        AnswerPolicy {
            delay: Duration::from_millis(400),
            ..AnswerPolicy::default()
        },
    )];
    if let Some(busy) = &opts.busy {
        c.answer_by_number.insert(
            0,
            (
                busy.clone(),
                AnswerPolicy {
                    outcome: Outcome::Reject {
                        status: 486,
                        q850: None,
                    },
                    ..AnswerPolicy::default()
                },
            ),
        );
    }
    let mut plan = CallPlan::new(gateway, CALL_BACK);
    plan.calls = core_calls(seconds);
    plan.rate_per_s = 0.25;
    plan.hold = Duration::from_secs(2);
    plan.expect = Expect::Answer;
    plan.no_answer_timeout = Duration::from_secs(10);
    plan.dtmf = CORE_DIGITS.into();
    plan.dtmf_every = 1;
    c.plan = Some(plan);
    // Serve the gateway until the demo stops us: without a run time the core
    // ends once its call-backs are done and no call is up, and every later
    // INVITE goes unanswered (issue 7: the exchange then saw cause 34).
    c.run_for = Some(Duration::from_secs(seconds + 60));
    c.drain = Duration::from_secs(3);
    c
}

fn progress(gw: &Gateway, core: &SimCore, t: u64) {
    let s = &gw.stats;
    let failed: Vec<String> = s
        .failed()
        .iter()
        .map(|(c, n)| format!("cause {c}: {n}"))
        .collect();
    let p = core.progress();
    println!(
        "[{t:>3} s] calls up {:>2}, ended {:>3} (completed {}, not completed: {}), core: received {} answered {} placed {} completed {}, MOS {}",
        s.live.load(Ordering::Relaxed),
        s.ended.load(Ordering::Relaxed),
        s.completed.load(Ordering::Relaxed),
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        },
        p.calls_received,
        p.calls_answered,
        p.calls_placed,
        p.calls_completed,
        s.mean_mos().map_or("-".into(), |m| format!("{m:.2}")),
    );
}

/// Runs the demo for about `seconds` (plus the wind-down) on a fresh
/// runtime; see the module doc.
pub fn run(config: Config, seconds: u64, opts: &DemoOptions) -> std::io::Result<DemoOutcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tdmgw-control")
        .enable_all()
        .build()?;
    rt.block_on(run_async(config, seconds, opts))
}

/// The ports of `examples/demo.toml` (metrics 9100, SIP 5070, core 5080,
/// RTP 30000 up)
/// where they are free, else free ones: another demo, a daemon or a test
/// on the box does not stop the demo. Says what moved. `attempt` (from 1)
/// varies where a free RTP range is looked for. (A port found free here
/// may be taken before it is bound: the demo's start then tries again.)
pub fn choose_ports(config: &mut Config, attempt: u32) -> std::io::Result<Vec<String>> {
    let mut moved = Vec::new();
    let mgmt = &mut config.site.management.listen;
    if mgmt.port() != 0 && TcpListener::bind(*mgmt).is_err() {
        moved.push(format!("metrics port {} in use", mgmt.port()));
        mgmt.set_port(0);
    }
    for l in config.site.sip.listen.iter_mut() {
        if l.address.port() != 0 && UdpSocket::bind(l.address).is_err() {
            moved.push(format!("SIP port {} in use", l.address.port()));
            l.address.set_port(0);
        }
    }
    if let Some(peer) = config
        .site
        .peer_groups
        .first_mut()
        .and_then(|g| g.peers.first_mut())
        && UdpSocket::bind(peer.address).is_err()
    {
        let free = UdpSocket::bind(SocketAddr::new(peer.address.ip(), 0))?.local_addr()?;
        moved.push(format!(
            "simulated core port {} in use: {}",
            peer.address.port(),
            free.port()
        ));
        peer.address = free;
    }
    let media = &mut config.site.media;
    let ip = media.rtp_address;
    let range_free =
        |base: u16| (0..RTP_PORTS_PER_SPAN).all(|i| UdpSocket::bind((ip, base + i)).is_ok());
    if !range_free(media.rtp_port_base) {
        let first = media.rtp_port_base;
        // Ranges of 64 ports in 20000-59999, searched from a point that
        // differs per process and attempt, so that demos starting together
        // do not all pick the same one.
        let ranges: u16 = 625;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let from = (std::process::id() ^ nanos ^ attempt.wrapping_mul(40_503)) % u32::from(ranges);
        let base = (0..ranges)
            .map(|k| 20_000 + ((k + from as u16) % ranges) * RTP_PORTS_PER_SPAN)
            .find(|b| *b != first && range_free(*b))
            .ok_or_else(|| std::io::Error::other("no free range of 64 RTP ports"))?;
        moved.push(format!("RTP ports {first}+ in use: {base}+"));
        media.rtp_port_base = base;
    }
    Ok(moved)
}

/// RTP and RTCP ports of one span (`config::media_plan`: base + 64 (span
/// - 1) + 2 ts); the demo board has one span.
const RTP_PORTS_PER_SPAN: u16 = 64;

/// What [`start`] brought up.
struct Started {
    config: Config,
    moved: Vec<String>,
    gw: Gateway,
    gw_sip: SocketAddr,
    core: SimCore,
    core_addr: SocketAddr,
    mgmt: SocketAddr,
    http: tokio::task::JoinHandle<()>,
}

/// Attempts at [`start`]: a port found free by [`choose_ports`] can be taken
/// before it is bound (by another demo starting at the same moment).
const START_ATTEMPTS: u32 = 5;

/// The management listener, the gateway and the simulated core on the
/// ports [`choose_ports`] picks; on a failure to bind, everything started
/// is stopped and the ports are picked again.
async fn start(config: &Config, seconds: u64, opts: &DemoOptions) -> std::io::Result<Started> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt == START_ATTEMPTS;
        let mut config = config.clone();
        let moved = choose_ports(&mut config, attempt)?;
        match start_once(config, moved, seconds, opts).await {
            Ok(s) => return Ok(s),
            Err(e) if !last => {
                tracing::info!(error = %e, attempt, "demo start failed: ports picked again");
            }
            Err(e) => return Err(e),
        }
    }
}

async fn start_once(
    config: Config,
    moved: Vec<String>,
    seconds: u64,
    opts: &DemoOptions,
) -> std::io::Result<Started> {
    let supervisor = Supervisor::new();
    let lifecycle = Arc::new(Lifecycle::default());
    let board = Arc::new(OpsBoard::new(supervisor.clone(), lifecycle.clone()));
    board.metrics.register(Arc::new(collect_build_info));
    board.metrics.register(Arc::new(collect_process));
    let listener = tokio::net::TcpListener::bind(config.site.management.listen).await?;
    let mgmt = listener.local_addr()?;
    let gw = Gateway::start(&config, &board, &supervisor, lifecycle.clone(), 0x0de0)
        .await
        .map_err(std::io::Error::other)?;
    let Some(gw_sip) = gw.sip_addr() else {
        gw.stop().await;
        return Err(std::io::Error::other("the gateway bound no SIP listener"));
    };
    let Some(core_addr) = config
        .site
        .peer_groups
        .first()
        .and_then(|g| g.peers.first())
        .map(|p| p.address)
    else {
        gw.stop().await;
        return Err(std::io::Error::other("demo.toml has no core peer"));
    };
    let core = match SimCore::start(core_config(core_addr, gw_sip, seconds, opts)).await {
        Ok(c) => c,
        Err(e) => {
            gw.stop().await;
            return Err(std::io::Error::other(format!("simulated core: {e}")));
        }
    };
    let http = tokio::spawn(crate::ops::http::serve(listener, board));
    Ok(Started {
        config,
        moved,
        gw,
        gw_sip,
        core,
        core_addr,
        mgmt,
        http,
    })
}

async fn run_async(
    config: Config,
    seconds: u64,
    opts: &DemoOptions,
) -> std::io::Result<DemoOutcome> {
    let mut out = DemoOutcome::default();
    let Started {
        config,
        moved,
        mut gw,
        gw_sip,
        core,
        core_addr,
        mgmt,
        http,
    } = start(&config, seconds, opts).await?;

    let Some((_, far)) = gw.take_pair_far_ends().into_iter().next() else {
        return Err(std::io::Error::other("the demo board has no pair span"));
    };
    let mut ex_cfg = ExchangeConfig::network(scenario(seconds, opts));
    ex_cfg.run_for = Duration::from_secs(seconds + 20);
    let ctl = RunControl::default();
    let ex_ctl = ctl.clone();
    let exchange = std::thread::Builder::new()
        .name("sim-exchange".into())
        .spawn(move || run_pair_far_end(&ex_cfg, far, &ex_ctl))?;

    if !moved.is_empty() {
        println!("tdmgw demo: {}; free ports taken instead", moved.join(", "));
    }
    let rtp = config.site.media.rtp_port_base;
    println!(
        "tdmgw demo: gateway up (E1 span 1 on the pair line, SIP {gw_sip}, RTP {}:{rtp}-{}), simulated core at {core_addr}, metrics at http://{mgmt}/metrics",
        config.site.media.rtp_address,
        rtp + RTP_PORTS_PER_SPAN - 1
    );
    let started = Instant::now();
    let mut next = started + Duration::from_secs(2);
    let limit = started + Duration::from_secs(seconds + 25);
    while !exchange.is_finished() && Instant::now() < limit {
        sleep(Duration::from_millis(100)).await;
        if Instant::now() >= next {
            progress(&gw, &core, started.elapsed().as_secs());
            next += Duration::from_secs(2);
        }
    }
    ctl.stop.store(true, Ordering::Relaxed);
    let ex_report = match tokio::task::spawn_blocking(move || exchange.join()).await {
        Ok(Ok(Ok(r))) => Some(r),
        Ok(Ok(Err(e))) => {
            out.failures.push(format!("simulated exchange: {e}"));
            None
        }
        _ => {
            out.failures
                .push("simulated exchange thread failed".to_string());
            None
        }
    };
    let core_report = core.stop_and_report().await;
    // Let the last clearing (CDRs, media summaries, SIP transactions) end.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle
        && !(gw.stats.idle.load(Ordering::Relaxed)
            && gw.channels_busy() == 0
            && gw.sip_calls() == 0)
    {
        sleep(Duration::from_millis(100)).await;
    }
    progress_final(&gw);
    let stop = gw.stop().await;
    http.abort();

    if let Some(r) = &ex_report {
        summarise_exchange(r);
        if !r.ok {
            out.failures
                .extend(r.failures.iter().map(|f| format!("exchange: {f}")));
        }
    }
    println!(
        "core: received {} answered {} rejected {} cancelled {}; placed {} completed {} failed {}",
        core_report.calls_received,
        core_report.calls_answered,
        core_report.calls_rejected,
        core_report.calls_cancelled,
        core_report.calls_placed,
        core_report.calls_completed,
        core_report.calls_failed
    );
    if let Some(r) = &ex_report {
        let mut dtmf = Vec::new();
        dtmf_checks(r, &core_report.dtmf_received, &mut dtmf);
        out.failures.extend(dtmf);
    }
    for c in core_report.checks.iter().filter(|c| !c.passed) {
        out.failures
            .push(format!("core check {}: {}", c.name, c.detail));
    }
    if !core_report.all_checks_passed && core_report.checks.iter().all(|c| c.passed) {
        out.failures.push("core: checks did not pass".into());
    }
    if stop.calls_left != 0 || !stop.manager_idle {
        out.failures.push(format!(
            "gateway: {} call(s) left at the end",
            stop.calls_left
        ));
    }
    if stop.channels_busy != 0 {
        out.failures.push(format!(
            "gateway: {} B-channel(s) not idle at the end",
            stop.channels_busy
        ));
    }
    if stop.sip_calls_left != 0 {
        out.failures.push(format!(
            "gateway: {} SIP call(s) left at the end",
            stop.sip_calls_left
        ));
    }
    out.ok = out.failures.is_empty();
    println!(
        "gateway at the end: calls {}, busy B-channels {}, SIP calls {} (dialogs still in their transactions' wait, RFC 3261 Timer J/K: {})",
        stop.calls_left, stop.channels_busy, stop.sip_calls_left, stop.dialogs_left
    );
    println!("metrics were served at http://{mgmt}/metrics");
    Ok(out)
}

fn progress_final(gw: &Gateway) {
    let s = &gw.stats;
    println!(
        "gateway: {} calls ended, {} completed, failed by cause {:?}, mean MOS {}",
        s.ended.load(Ordering::Relaxed),
        s.completed.load(Ordering::Relaxed),
        s.failed(),
        s.mean_mos().map_or("-".into(), |m| format!("{m:.2}"))
    );
}

fn summarise_exchange(r: &ExchangeReport) {
    println!(
        "exchange: placed {} (answered {}, completed {}, abandoned {}, failed {:?}); received {} (answered {}, completed {})",
        r.outgoing.calls,
        r.outgoing.answered,
        r.outgoing.completed,
        r.outgoing.abandoned,
        r.outgoing.failed_by_cause,
        r.incoming.calls,
        r.incoming.answered,
        r.incoming.completed
    );
    // Matched/mismatched are the exchange's own echo checks; the demo
    // checks the digits at the core and per call below instead.
    let echo_checked = r.dtmf.calls_matched + r.dtmf.calls_mismatched > 0;
    println!(
        "audio checks: {} passed of {} (rtt mean {} ms); DTMF: {} call(s) sending{}; channels idle at the end: {}",
        r.audio.passed,
        r.audio.checks,
        r.audio
            .rtt_ms_mean
            .map_or("-".into(), |m| format!("{m:.1}")),
        r.dtmf.calls_sending,
        if echo_checked {
            format!(
                ", {} matched, {} mismatched",
                r.dtmf.calls_matched, r.dtmf.calls_mismatched
            )
        } else {
            String::new()
        },
        r.channels_idle_at_end
    );
    for c in r.calls.iter().filter(|c| !c.dtmf_sent.is_empty()) {
        println!(
            "  DTMF call {:#x} ts {:?}: sent {:?}, came back {:?}",
            c.tag, c.ts, c.dtmf_sent, c.dtmf_received
        );
    }
}

/// DTMF both ways: the exchange's in-band digits arrived at the core as
/// RFC 4733 events (every digit of every sending call, in any interleaving),
/// and the core's events arrived in-band at the exchange on every answered
/// call-back.
fn dtmf_checks(r: &ExchangeReport, at_core: &str, failures: &mut Vec<String>) {
    let n = r.dtmf.calls_sending as usize;
    for d in EXCHANGE_DIGITS.chars() {
        let got = at_core.chars().filter(|c| *c == d).count();
        if got != n {
            failures.push(format!(
                "DTMF exchange -> core: digit {d} arrived {got} time(s), sent on {n} call(s)"
            ));
        }
    }
    println!(
        "DTMF exchange -> core: {n} call(s) sent {EXCHANGE_DIGITS:?}, the core received {at_core:?}"
    );
    for c in r
        .calls
        .iter()
        .filter(|c| c.direction == "incoming" && c.answered)
    {
        if c.dtmf_received != CORE_DIGITS {
            failures.push(format!(
                "DTMF core -> exchange: call {:#x} received {:?}, expected {CORE_DIGITS:?}",
                c.tag, c.dtmf_received
            ));
        }
    }
}
