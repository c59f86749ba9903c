//! The whole gateway in one process (`ops::gateway`: media thread, D-channel
//! task, SIP task, call task) on the built-in simulated board, between the
//! simulated exchange on the pair line's far end and a core on loopback UDP
//! (a simulated core, or a socket that never answers). Issue 7's core
//! rejection bug: a 486 from the core must reach the exchange as cause 17
//! (RFC 3398 §7.2.4.1), an INVITE nobody answers as cause 102 (408), never
//! 34 from a second round of failover in the call layer, and nothing may be
//! left in the gateway afterwards.
//!
//! Ports: SIP and the core bind port 0; the RTP port base is probed (the
//! media plan's ports are base + 64 (span - 1) + 2 ts), so parallel tests do
//! not collide.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tdmgw::call::cdr::Direction;
use tdmgw::config::Config;
use tdmgw::ops::board::OpsBoard;
use tdmgw::ops::daemon::Lifecycle;
use tdmgw::ops::gateway::{Gateway, StopReport};
use tdmgw::ops::supervisor::Supervisor;
use tdmgw::sim::core::{AnswerPolicy, Outcome, SimCore, SimCoreConfig};
use tdmgw::sim::exchange::{ExchangeConfig, ExchangeReport, RunControl, Scenario};
use tdmgw::sim::exchange_run::run_pair_far_end;

fn site(core: SocketAddr, rtp_port_base: u16, dir: &std::path::Path) -> PathBuf {
    let text = format!(
        "board = \"builtin:sim\"
[media]
rtp_address = \"127.0.0.1\"
rtp_port_base = {rtp_port_base}
[sip]
listen = [{{ transport = \"udp\", address = \"127.0.0.1:0\" }}]
[[peer_group]]
name = \"core\"
options_interval = \"5s\"
[[peer_group.peer]]
address = \"{core}\"
[[route]]
called = \"999\"
peer_group = \"core\"
[[route]]
called = \"101\"
peer_group = \"core\"
[[span]]
id = 1
role = \"user\"
"
    );
    let p = dir.join("site.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A free-looking RTP port range (64 ports), different per attempt.
fn rtp_base(attempt: u32) -> u16 {
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ attempt.wrapping_mul(40_503);
    20_000 + ((seed % 600) as u16) * 64
}

/// The gateway facing `core` and its operations board, retrying on an RTP
/// port range in use.
async fn start_gateway(core: SocketAddr, dir: &std::path::Path) -> (Gateway, Arc<OpsBoard>) {
    let supervisor = Supervisor::new();
    let lifecycle = Arc::new(Lifecycle::default());
    let board = Arc::new(OpsBoard::new(supervisor.clone(), lifecycle.clone()));
    let mut last = String::new();
    for attempt in 0..20 {
        let base = rtp_base(attempt);
        let free = (0..32).all(|i| UdpSocket::bind(("127.0.0.1", base + 2 * i)).is_ok());
        if !free {
            continue;
        }
        let config = Config::load(&site(core, base, dir)).expect("site config");
        match Gateway::start(&config, &board, &supervisor, lifecycle.clone(), 7).await {
            Ok(gw) => return (gw, board),
            Err(e) => last = e.to_string(),
        }
    }
    panic!("no gateway: {last}");
}

/// The exchange places `calls` calls to `called` on the pair line and
/// expects each to end with `cause`; its report once done.
fn exchange_run(
    gw: &mut Gateway,
    called: &str,
    calls: u32,
    cause: u8,
) -> tokio::task::JoinHandle<ExchangeReport> {
    let (_, far) = gw
        .take_pair_far_ends()
        .into_iter()
        .next()
        .expect("pair span");
    let scenario = Scenario {
        calls,
        rate_per_s: 2.0,
        called: vec![called.into()],
        calling: Some("01632960123".into()),
        expected_causes: vec![cause],
        // After the line aligns, the ends' data links come up within one
        // T200 (1 s) of each other when the first SABMEs were lost (Q.921
        // §5.5.4.1; a SETUP sent in between is lost with the link reset):
        // start once both are up.
        start_delay: Duration::from_secs(2),
        ..Scenario::default()
    };
    let mut cfg = ExchangeConfig::network(scenario);
    cfg.run_for = Duration::from_secs(40);
    let ctl = RunControl::default();
    tokio::task::spawn_blocking(move || run_pair_far_end(&cfg, far, &ctl).expect("exchange run"))
}

/// Waits (bounded) until the gateway holds nothing, then stops it.
async fn stop_when_idle(gw: Gateway) -> StopReport {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end
        && !(gw.stats.idle.load(Ordering::Relaxed)
            && gw.channels_busy() == 0
            && gw.sip_calls() == 0)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await
}

fn assert_nothing_left(r: &StopReport) {
    assert_eq!(r.calls_left, 0, "{r:?}");
    assert!(r.manager_idle, "{r:?}");
    assert_eq!(r.channels_busy, 0, "{r:?}");
    assert_eq!(r.sip_calls_left, 0, "{r:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Issue 7: the core rejects 101 with 486 (after 180, as a busy desk does):
/// the exchange sees cause 17 on every call, the CDRs say 17 / 486, and
/// nothing is left.
#[test]
fn busy_core_reaches_the_exchange_as_cause_17_and_leaves_nothing() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cc = SimCoreConfig::new("127.0.0.1:0".parse().unwrap());
        cc.answer_by_number = vec![(
            "101".into(),
            AnswerPolicy {
                delay: Duration::from_millis(100),
                outcome: Outcome::Reject {
                    status: 486,
                    q850: None,
                },
                ..AnswerPolicy::default()
            },
        )];
        let core = SimCore::start(cc).await.expect("sim core");
        let (mut gw, _board) = start_gateway(core.sip_addr(), dir.path()).await;
        let report = exchange_run(&mut gw, "101", 4, 17).await.expect("exchange");
        let causes: Vec<u8> = report.calls.iter().map(|c| c.cause).collect();
        assert_eq!(causes, [17, 17, 17, 17], "{:?}", report.failures);
        assert!(report.ok, "{:?}", report.failures);
        assert_eq!(gw.stats.failed(), [(17, 4)]);
        let core_report = core.stop_and_report().await;
        assert_eq!(core_report.rejected_by_status.get(&486), Some(&4));
        assert_nothing_left(&stop_when_idle(gw).await);
    });
}

/// A core that never answers (the demo's once: the simulated core had
/// stopped): the SIP task fails over on its own and reports 408; the call
/// layer maps it to cause 102 (RFC 3398 §7.2.4.1) at once, with no second
/// round of attempts that would end in cause 34, and nothing is left.
#[test]
fn silent_core_reaches_the_exchange_as_cause_102_not_34() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut gw, board) = start_gateway(silent.local_addr().unwrap(), dir.path()).await;
        let run = exchange_run(&mut gw, "999", 1, 102);
        // While the INVITE waits, the status lists the call.
        let end = Instant::now() + Duration::from_secs(20);
        let call = loop {
            if let Some(c) = gw.stats.calls().first() {
                break c.clone();
            }
            assert!(Instant::now() < end, "no call in the status");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!((call.span, call.direction), (1, Direction::ExchangeToCore));
        assert_eq!(
            (call.called.as_str(), call.calling.as_str()),
            ("999", "01632960123")
        );
        assert_eq!(call.state, "setup");
        assert!((1..=31).contains(&call.timeslot) && call.timeslot != 16);
        // The board serves it: the status section and the gauge.
        let status = board.status_json();
        assert_eq!(status["calls"][0]["state"], "setup", "{status:?}");
        assert_eq!(status["calls"][0]["direction"], "exchange_to_core");
        let in_progress = "tdmgw_calls_in_progress{direction=\"exchange_to_core\"}";
        assert!(
            board
                .metrics
                .render()
                .contains(&format!("{in_progress} 1\n"))
        );
        let report = run.await.expect("exchange");
        let causes: Vec<u8> = report.calls.iter().map(|c| c.cause).collect();
        assert_eq!(causes, [102], "{:?}", report.failures);
        assert!(report.ok, "{:?}", report.failures);
        assert_nothing_left(&stop_when_idle(gw).await);
        assert!(
            board
                .metrics
                .render()
                .contains(&format!("{in_progress} 0\n"))
        );
        drop(silent);
    });
}
