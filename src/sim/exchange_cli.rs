//! `tdmgw sim exchange`: the command line of the simulated exchange.
//!
//! The arguments ([`SimExchangeArgs`], a clap `Args` the binary mounts
//! under `sim exchange`) become an [`ExchangeConfig`]; the run goes on
//! a SAToP pseudowire (`--satop-local/--satop-remote`) or a serial tty
//! (`--serial/--baud`) until the call mix is done or `--seconds` passed.
//! The report goes to stdout (JSON with `--json`, else a summary) and the
//! exit status is 0 only when every check held.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::line::driver::satop::SatopParams;
use crate::line::driver::serial::SerialParams;

use super::exchange::{
    ClearOn, ClearPlan, ExchangeConfig, ExchangeReport, Incoming, IncomingPolicy, RunControl,
    Scenario,
};
use super::exchange_audio::AudioMode;
use super::exchange_run::{run_satop, run_serial};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliRole {
    /// The exchange (clock master).
    Network,
    /// A user-side test peer (to face another simulated exchange).
    User,
}

/// Run a simulated exchange (network side of a PRI on a raw E1) against
/// a gateway: place and answer calls, check the audio, print the results.
#[derive(Args, Debug, Clone)]
pub struct SimExchangeArgs {
    /// Our SAToP UDP address (with --satop-remote).
    #[arg(long, requires = "satop_remote", conflicts_with = "serial")]
    pub satop_local: Option<SocketAddr>,
    /// The gateway's SAToP UDP address.
    #[arg(long, requires = "satop_local")]
    pub satop_remote: Option<SocketAddr>,
    /// A serial tty carrying the raw E1 instead of SAToP.
    #[arg(long)]
    pub serial: Option<PathBuf>,
    #[arg(long, default_value_t = 2_048_000)]
    pub baud: u32,
    /// SAToP playout buffer (RFC 4553 §6.2.2), ms: deeper than the
    /// gateway's default 4 so that a loaded test box does not slip.
    #[arg(long, default_value_t = 16)]
    pub playout_ms: u16,
    /// CRC-4 multiframe on the E1.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub crc4: OnOff,
    /// Calls to place.
    #[arg(long, default_value_t = 10)]
    pub calls: u32,
    /// Calls placed per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// At most this many placed calls in progress at once (0: no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_in_progress: u32,
    /// Seconds from the D-channel's establishment (the last one before the
    /// first call) to the first call.
    #[arg(long, default_value_t = 0.1, value_name = "S")]
    pub start_delay: f64,
    /// Seconds each call is held after answer.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Called numbers, used in turn (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "999")]
    pub called: Vec<String>,
    /// Calling number.
    #[arg(long)]
    pub calling: Option<String>,
    /// Answer incoming calls, after this many seconds of ringing (default:
    /// at once).
    #[arg(long, conflicts_with_all = ["reject", "no_answer"], num_args = 0..=1, default_missing_value = "0")]
    pub answer: Option<f64>,
    /// Reject incoming calls with this Q.850 cause.
    #[arg(long, conflicts_with = "no_answer")]
    pub reject: Option<u8>,
    /// Ring incoming calls and never answer them.
    #[arg(long)]
    pub no_answer: bool,
    /// Rejections (--reject, --policy N=CAUSE) send ALERTING first and
    /// DISCONNECT after this many seconds.
    #[arg(long, value_name = "S")]
    pub reject_after: Option<f64>,
    /// Early media: placed calls start their audio at the far end's
    /// progress indicator 1 or 8 (PROGRESS, ALERTING) instead of CONNECT;
    /// incoming calls get PROGRESS with indicator 8 after ALERTING and
    /// their audio from then.
    #[arg(long)]
    pub early_media: bool,
    /// Audio of incoming calls (default: as the placed calls', see --echo).
    #[arg(long, value_enum, value_name = "MODE")]
    pub incoming_audio: Option<CliAudio>,
    /// Per called number of incoming calls: `NUMBER=answer[:S]` (ring S
    /// seconds), `NUMBER=none` (ring for ever) or `NUMBER=CAUSE[:S]` (reject,
    /// after S seconds of ringing), then options `,early` (PROGRESS with
    /// indicator 8 and audio before the answer), `,hold=S` (clear S after
    /// answering), `,echo` or `,test` (audio). Repeatable.
    #[arg(long = "policy", value_name = "NUMBER=WHAT")]
    pub policies: Vec<String>,
    /// Per called number of placed calls: clear it S seconds (default 0)
    /// after it reaches STATE: `setup`, `proceeding`, `alerting`,
    /// `progress` (indicator 1 or 8), `active` (the hold); or `far`: the
    /// far end must clear it. `NUMBER=STATE[:S]`, repeatable.
    #[arg(long = "clear", value_name = "NUMBER=STATE[:S]")]
    pub clears: Vec<String>,
    /// Clear answered incoming calls after this many seconds (else the
    /// caller clears).
    #[arg(long)]
    pub incoming_hold: Option<f64>,
    /// Every Nth call is left for the far end to clear.
    #[arg(long, default_value_t = 0)]
    pub far_clear_every: u32,
    /// Every Nth call is abandoned while ringing after --abandon-after s.
    #[arg(long, default_value_t = 0)]
    pub abandon_every: u32,
    #[arg(long, default_value_t = 0.5)]
    pub abandon_after: f64,
    /// Every Nth connected call sends --dtmf in-band and expects it back.
    #[arg(long, default_value_t = 0)]
    pub dtmf_every: u32,
    #[arg(long, default_value = "123#")]
    pub dtmf: String,
    /// The far end does not send the digits back (they are checked where
    /// they arrive, e.g. as RFC 4733 events at a core).
    #[arg(long)]
    pub no_dtmf_echo: bool,
    /// Do not end before this many incoming calls were seen.
    #[arg(long, default_value_t = 0)]
    pub expect_incoming: u32,
    /// Q.850 causes of unanswered calls that are expected (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub expect_cause: Vec<u8>,
    /// Audio check: most blocks lost, in % of those that came back.
    #[arg(long, default_value_t = 1.0)]
    pub max_loss_percent: f64,
    /// Echo the B-channels instead of playing and checking the test signal.
    #[arg(long)]
    pub echo: bool,
    #[arg(long, value_enum, default_value_t = CliRole::Network)]
    pub role: CliRole,
    /// Longest run, in seconds; live calls are then cleared.
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Print the JSON report (else a summary).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliAudio {
    /// Play the test signal and check its echo.
    Test,
    /// Send back what arrives.
    Echo,
}

impl From<CliAudio> for AudioMode {
    fn from(a: CliAudio) -> AudioMode {
        match a {
            CliAudio::Test => AudioMode::Test,
            CliAudio::Echo => AudioMode::Echo,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn parse_secs(v: &str, what: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{what}: {v:?} is not a duration in seconds"))
}

/// `NUMBER=answer[:S]|none|CAUSE[:S]` then `,early`, `,hold=S`, `,echo`, `,test`.
fn parse_policy(spec: &str, base: IncomingPolicy) -> Result<(String, IncomingPolicy), String> {
    let what = |m: &str| format!("--policy {spec}: {m}");
    let (number, rest) = spec
        .split_once('=')
        .ok_or_else(|| what("expected NUMBER=WHAT"))?;
    let mut parts = rest.split(',');
    let head = parts.next().unwrap_or_default();
    let (kind, delay) = match head.split_once(':') {
        Some((k, d)) => (k, Some(parse_secs(d, &what("delay"))?)),
        None => (head, None),
    };
    let mut p = base;
    match kind {
        "answer" => {
            p.action = Incoming::Answer {
                ring: delay.unwrap_or(Duration::ZERO),
            }
        }
        "none" | "no-answer" => p.action = Incoming::NoAnswer,
        c => match c.parse::<u8>() {
            Ok(cause) if (1..=127).contains(&cause) => {
                p.action = Incoming::Reject { cause };
                p.reject_after = delay.or(base.reject_after);
            }
            _ => return Err(what("answer[:S], none or a Q.850 cause 1-127")),
        },
    }
    for opt in parts {
        match opt.split_once('=') {
            None if opt == "early" => p.early_media = true,
            None if opt == "echo" => p.audio = AudioMode::Echo,
            None if opt == "test" => p.audio = AudioMode::Test,
            Some(("hold", s)) => p.hold = Some(parse_secs(s, &what("hold"))?),
            _ => return Err(what(&format!("unknown option {opt:?}"))),
        }
    }
    if number.is_empty() {
        return Err(what("no number"));
    }
    Ok((number.to_owned(), p))
}

/// `NUMBER=STATE[:S]`.
fn parse_clear(spec: &str) -> Result<(String, ClearPlan), String> {
    let what = |m: &str| format!("--clear {spec}: {m}");
    let (number, rest) = spec
        .split_once('=')
        .ok_or_else(|| what("expected NUMBER=STATE[:S]"))?;
    let (state, after) = match rest.split_once(':') {
        Some((st, d)) => (st, parse_secs(d, &what("delay"))?),
        None => (rest, Duration::ZERO),
    };
    let on = match state {
        "setup" => ClearOn::Setup,
        "proceeding" => ClearOn::Proceeding,
        "alerting" => ClearOn::Alerting,
        "progress" => ClearOn::Progress,
        "active" => ClearOn::Active,
        "far" => ClearOn::Far,
        _ => {
            return Err(what(
                "STATE is setup, proceeding, alerting, progress, active or far",
            ));
        }
    };
    if number.is_empty() {
        return Err(what("no number"));
    }
    Ok((number.to_owned(), ClearPlan { on, after }))
}

impl SimExchangeArgs {
    /// The run's configuration, or what is wrong with the arguments.
    pub fn config(&self) -> Result<ExchangeConfig, String> {
        let incoming = match (self.reject, self.answer, self.no_answer) {
            (Some(cause), _, _) => Incoming::Reject { cause },
            (None, _, true) => Incoming::NoAnswer,
            (None, ring, false) => Incoming::Answer {
                ring: secs(ring.unwrap_or(0.0)),
            },
        };
        let audio = if self.echo {
            AudioMode::Echo
        } else {
            AudioMode::Test
        };
        let scenario = Scenario {
            calls: self.calls,
            rate_per_s: self.rate,
            hold: secs(self.hold),
            called: self.called.clone(),
            calling: self.calling.clone(),
            far_clear_every: self.far_clear_every,
            abandon_every: self.abandon_every,
            abandon_after: secs(self.abandon_after),
            dtmf_every: self.dtmf_every,
            dtmf_digits: self.dtmf.clone(),
            dtmf_expect_echo: !self.no_dtmf_echo,
            incoming,
            incoming_hold: self.incoming_hold.map(secs),
            expect_incoming: self.expect_incoming,
            expected_causes: self.expect_cause.clone(),
            audio,
            max_loss_percent: self.max_loss_percent,
            start_delay: secs(self.start_delay),
            max_in_progress: self.max_in_progress,
            early_media: self.early_media,
            incoming_audio: self.incoming_audio.map(AudioMode::from),
            reject_after: self.reject_after.map(secs),
            ..Scenario::default()
        };
        let mut scenario = scenario;
        let base = scenario.incoming_policy("");
        scenario.incoming_by_number = self
            .policies
            .iter()
            .map(|p| parse_policy(p, base))
            .collect::<Result<_, _>>()?;
        scenario.clear_by_number = self
            .clears
            .iter()
            .map(|c| parse_clear(c))
            .collect::<Result<_, _>>()?;
        let mut cfg = match self.role {
            CliRole::Network => ExchangeConfig::network(scenario),
            CliRole::User => ExchangeConfig::user(scenario),
        };
        cfg.crc4 = self.crc4 == OnOff::On;
        cfg.run_for = Duration::from_secs(self.seconds);
        Ok(cfg)
    }
}

/// Runs `tdmgw sim exchange`.
pub fn run_cli(args: &SimExchangeArgs) -> ExitCode {
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tdmgw sim exchange: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg.scenario.called.is_empty() && cfg.scenario.calls > 0 {
        eprintln!("tdmgw sim exchange: --called needs at least one number");
        return ExitCode::from(2);
    }
    let ctl = RunControl::default();
    let result = match (&args.satop_local, &args.satop_remote, &args.serial) {
        (Some(local), Some(remote), None) => {
            let mut p = SatopParams::new(*local, *remote);
            p.playout_ms = args.playout_ms;
            run_satop(&cfg, p, &ctl)
        }
        (None, None, Some(dev)) => {
            run_serial(&cfg, SerialParams::new(dev.clone(), args.baud), &ctl)
        }
        _ => {
            eprintln!("tdmgw sim exchange: give --satop-local and --satop-remote, or --serial");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(rep) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default());
            } else {
                print!("{}", summary(&rep));
            }
            if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("tdmgw sim exchange: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A few lines for a person.
pub fn summary(r: &ExchangeReport) -> String {
    let o = &r.outgoing;
    let i = &r.incoming;
    let a = &r.audio;
    let mut s = format!(
        "sim exchange ({}): link {} after {:?} ms, {} s\n\
         outgoing: {} placed, {} answered, {} completed, {} abandoned, failed {:?}\n\
         incoming: {} received, {} answered, {} completed, {} rejected, failed {:?}\n\
         audio: {}/{} checks passed, {} blocks lost, {} mismatched, round trip {:.1} ms mean\n\
         dtmf: {} digits sent, {} received, {} calls matched, {} mismatched\n",
        r.role,
        if r.link_up { "up" } else { "DOWN" },
        r.link_up_after_ms,
        r.elapsed_ms / 1000,
        o.calls,
        o.answered,
        o.completed,
        o.abandoned,
        o.failed_by_cause,
        i.calls,
        i.answered,
        i.completed,
        i.rejected,
        i.failed_by_cause,
        a.passed,
        a.checks,
        a.blocks_lost,
        a.blocks_mismatched,
        a.rtt_ms_mean.unwrap_or(0.0),
        r.dtmf.digits_sent,
        r.dtmf.digits_received,
        r.dtmf.calls_matched,
        r.dtmf.calls_mismatched,
    );
    if r.ok {
        s.push_str("every check held\n");
    } else {
        for f in &r.failures {
            s.push_str(&format!("FAILED: {f}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SimExchangeArgs,
    }

    fn config(v: &[&str]) -> Result<ExchangeConfig, String> {
        let mut all = vec![
            "x",
            "--satop-local",
            "127.0.0.1:1",
            "--satop-remote",
            "127.0.0.1:2",
        ];
        all.extend_from_slice(v);
        T::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .a
            .config()
    }

    #[test]
    fn defaults_are_unchanged() {
        let c = config(&[]).unwrap();
        let s = &c.scenario;
        assert_eq!(
            s.incoming,
            Incoming::Answer {
                ring: Duration::ZERO
            }
        );
        assert!(s.dtmf_expect_echo && !s.early_media);
        assert_eq!(s.start_delay, Duration::from_millis(100));
        let p = s.incoming_policy("999");
        assert_eq!(p.audio, AudioMode::Test);
        assert_eq!((p.reject_after, p.hold, p.early_media), (None, None, false));
        assert_eq!(s.clear_plan("999"), None);
    }

    #[test]
    fn incoming_policies_per_number_over_the_defaults() {
        let c = config(&[
            "--reject",
            "21",
            "--reject-after",
            "0.5",
            "--incoming-audio",
            "echo",
            "--policy",
            "101=answer:1.5,early,hold=2,test",
            "--policy",
            "102=none",
            "--policy",
            "103=17",
        ])
        .unwrap();
        let s = &c.scenario;
        let d = s.incoming_policy("999");
        assert_eq!(d.action, Incoming::Reject { cause: 21 });
        assert_eq!(d.reject_after, Some(Duration::from_millis(500)));
        assert_eq!(d.audio, AudioMode::Echo);
        let p = s.incoming_policy("101");
        assert_eq!(
            p.action,
            Incoming::Answer {
                ring: Duration::from_millis(1500)
            }
        );
        assert!(p.early_media);
        assert_eq!(p.hold, Some(Duration::from_secs(2)));
        assert_eq!(p.audio, AudioMode::Test);
        assert_eq!(s.incoming_policy("102").action, Incoming::NoAnswer);
        let r = s.incoming_policy("103");
        assert_eq!(r.action, Incoming::Reject { cause: 17 });
        assert_eq!(
            r.reject_after,
            Some(Duration::from_millis(500)),
            "the default delay"
        );
        assert_eq!(
            config(&["--no-answer"]).unwrap().scenario.incoming,
            Incoming::NoAnswer
        );
        for bad in [
            "101",
            "101=200",
            "101=answer,loud",
            "=answer",
            "101=answer:x",
        ] {
            assert!(config(&["--policy", bad]).is_err(), "{bad}");
        }
        assert!(config(&["--no-answer", "--reject", "17"]).is_err());
    }

    #[test]
    fn clear_plans_per_number() {
        let c = config(&[
            "--clear",
            "6001=proceeding:1",
            "--clear",
            "6002=alerting",
            "--clear",
            "6003=far",
            "--no-dtmf-echo",
            "--start-delay",
            "1.5",
            "--max-in-progress",
            "16",
        ])
        .unwrap();
        let s = &c.scenario;
        assert_eq!(
            s.clear_plan("6001"),
            Some(ClearPlan {
                on: ClearOn::Proceeding,
                after: Duration::from_secs(1)
            })
        );
        assert_eq!(s.clear_plan("6002").map(|p| p.on), Some(ClearOn::Alerting));
        assert_eq!(s.clear_plan("6003").map(|p| p.on), Some(ClearOn::Far));
        assert!(!s.dtmf_expect_echo);
        assert_eq!(s.start_delay, Duration::from_millis(1500));
        assert_eq!(s.max_in_progress, 16);
        for bad in ["6001", "6001=ringing", "6001=active:-"] {
            assert!(config(&["--clear", bad]).is_err(), "{bad}");
        }
    }
}
