//! `tdmgw sim core`: the command-line face of [`super::core`]. The
//! arguments ([`SimCoreArgs`], clap), their translation into a
//! [`SimCoreConfig`] ([`SimCoreArgs::to_config`]), the human summary
//! ([`render_summary`]) and the command itself ([`main`]: exit 0 when every
//! check held, 1 when one failed, 2 on bad arguments or a bind failure).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::core::{
    AnswerPolicy, CallPlan, Expect, MediaChecks, Outcome, SimCore, SimCoreConfig, SimCoreReport,
    Transport,
};
use super::rtp_peer::MediaMode;

/// A simulated MCVP core on SIP/UDP: answers (optionally after ringing and
/// early media), rejects, echoes or generates RTP, places calls, and
/// reports JSON results. Exits 0 when every check held.
#[derive(Args, Debug, Clone)]
pub struct SimCoreArgs {
    /// SIP address to listen on (a concrete IP: it goes in Via, Contact and SDP).
    #[arg(long, default_value = "127.0.0.1:5070")]
    pub listen: SocketAddr,
    /// Also listen on TCP at the same address.
    #[arg(long)]
    pub tcp: bool,
    /// Accept SIP from this address too (loopback and the call target always are).
    #[arg(long = "allow", value_name = "IP")]
    pub allow: Vec<IpAddr>,
    /// Answer incoming calls after this many seconds.
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub answer_after: f64,
    /// Send 180 Ringing first.
    #[arg(long)]
    pub ring: bool,
    /// Send 183 with SDP first (early media).
    #[arg(long)]
    pub early_media: bool,
    /// Reject incoming calls with this status (with a Reason: Q.850 header).
    #[arg(long, value_name = "STATUS", conflicts_with = "no_answer")]
    pub reject: Option<u16>,
    /// Never answer incoming calls (the caller's timers run).
    #[arg(long)]
    pub no_answer: bool,
    /// Clear answered incoming calls after this many seconds.
    #[arg(long, value_name = "S")]
    pub hangup_after: Option<f64>,
    /// Rejections carry no `Reason: Q.850` header (the far end maps the
    /// status by its own table).
    #[arg(long)]
    pub no_reason: bool,
    /// Per called number: `NUMBER=answer[:S]`, `NUMBER=STATUS[:S]` (reject
    /// after S seconds) or `NUMBER=none` (never answer), then options
    /// `,ring`/`,no-ring`, `,early`/`,no-early`, `,hangup=S`, `,reason=CAUSE`
    /// (the Reason header's Q.850 cause), `,no-reason`, `,dtmf=DIGITS`.
    /// Repeatable.
    #[arg(long = "policy", value_name = "NUMBER=WHAT")]
    pub policies: Vec<String>,
    /// Echo what is received (the default).
    #[arg(long, conflicts_with_all = ["tone", "pattern"])]
    pub echo: bool,
    /// Send a tone of this frequency instead.
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f32>,
    /// Send a pseudo-random pattern with sequence markers instead.
    #[arg(long)]
    pub pattern: bool,
    /// Codecs in order of preference.
    #[arg(long = "codec", value_name = "NAME", default_values_t = ["PCMA".to_string(), "PCMU".to_string()])]
    pub codecs: Vec<String>,
    /// Place calls to this SIP address.
    #[arg(long, value_name = "ADDR")]
    pub call: Option<SocketAddr>,
    #[arg(long, value_enum, default_value_t = CliTransport::Udp)]
    pub call_transport: CliTransport,
    /// Number of calls to place.
    #[arg(long, default_value_t = 1)]
    pub calls: u32,
    /// New calls per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds an answered call is held before we clear it.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub hold: f64,
    /// Called numbers of placed calls, used in turn (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "999")]
    pub called: Vec<String>,
    #[arg(long, default_value = "01632960001")]
    pub calling: String,
    /// DTMF digits sent as RFC 4733 events on placed calls.
    #[arg(long, default_value = "")]
    pub dtmf: String,
    /// Send the DTMF on every Nth placed call.
    #[arg(long, default_value_t = 1)]
    pub dtmf_every: u32,
    /// What each placed call must get: `answer`, `no-answer` or a status.
    #[arg(long, default_value = "answer")]
    pub expect: String,
    /// Per called number: `NUMBER=answer|no-answer|STATUS`, instead of
    /// --expect. Repeatable.
    #[arg(long = "expect-for", value_name = "NUMBER=WHAT")]
    pub expect_for: Vec<String>,
    /// The far end clears placed calls (we wait hold + 5 s).
    #[arg(long)]
    pub far_end_clears: bool,
    /// CANCEL a placed call still ringing after this many seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub no_answer_timeout: f64,
    /// CANCEL a placed call this many seconds after its first 180 or 183
    /// if it is not answered by then.
    #[arg(long, value_name = "S")]
    pub cancel_after_ring: Option<f64>,
    /// At most this many placed calls in progress at once (0: no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_in_progress: u32,
    /// Check that what we generate (pattern, tone, DTMF) comes back.
    #[arg(long)]
    pub expect_echo: bool,
    /// RTP packets each answered call must receive.
    #[arg(long, default_value_t = 10)]
    pub min_packets: u64,
    /// Largest RTP loss per call, percent.
    #[arg(long, default_value_t = 5.0)]
    pub max_loss: f64,
    /// With --expect-echo: share of the pattern's markers (or of the audio
    /// packets carrying the tone) that must come back, percent.
    #[arg(long, default_value_t = 80.0, value_name = "P")]
    pub min_echo_percent: f64,
    /// Run this long; without it, until the placed calls are done (or
    /// Ctrl-C when no calls are placed).
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0x5EED_C0DE)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliTransport {
    Udp,
    Tcp,
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what}: {s} is not a duration in seconds"))
}

/// `answer`, `no-answer` or a 300-699 status.
fn parse_expect(s: &str) -> Result<Expect, String> {
    match s {
        "answer" => Ok(Expect::Answer),
        "no-answer" => Ok(Expect::NoAnswer),
        s => match s.parse::<u16>() {
            Ok(status) if (300..=699).contains(&status) => Ok(Expect::Status { status }),
            _ => Err(format!("--expect {s}: answer, no-answer or a status")),
        },
    }
}

/// `answer[:S]`, `STATUS[:S]`, `none`, then `,OPTION`s.
fn parse_policy(spec: &str, base: &AnswerPolicy) -> Result<(String, AnswerPolicy), String> {
    let (number, rest) = spec
        .split_once('=')
        .ok_or_else(|| format!("--policy {spec}: expected NUMBER=WHAT"))?;
    let mut parts = rest.split(',');
    let what = parts.next().unwrap_or_default();
    let (kind, delay) = match what.split_once(':') {
        Some((k, d)) => {
            let d: f64 = d
                .parse()
                .map_err(|_| format!("--policy {spec}: bad delay {d}"))?;
            (k, Some(secs(d, "--policy")?))
        }
        None => (what, None),
    };
    let mut outcome = match kind {
        "answer" => Outcome::Answer,
        "none" | "no-answer" => Outcome::NoAnswer,
        s => match s.parse::<u16>() {
            Ok(status) if (300..=699).contains(&status) => Outcome::Reject { status, q850: None },
            _ => return Err(format!("--policy {spec}: answer, none or a 300-699 status")),
        },
    };
    let mut p = AnswerPolicy {
        delay: delay.unwrap_or(base.delay),
        ..base.clone()
    };
    for opt in parts {
        match opt.split_once('=') {
            None => match opt {
                "ring" => p.ring = true,
                "no-ring" => p.ring = false,
                "early" => p.early_media = true,
                "no-early" => p.early_media = false,
                "no-reason" => p.reason_header = false,
                _ => return Err(format!("--policy {spec}: unknown option {opt:?}")),
            },
            Some(("hangup", v)) => {
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--policy {spec}: bad hangup {v}"))?;
                p.hangup_after = Some(secs(s, "--policy hangup")?);
            }
            Some(("reason", v)) => match (&mut outcome, v.parse::<u8>()) {
                (Outcome::Reject { q850, .. }, Ok(c)) if (1..=127).contains(&c) => {
                    *q850 = Some(c);
                    p.reason_header = true;
                }
                _ => {
                    return Err(format!(
                        "--policy {spec}: reason=CAUSE (1-127) goes with a rejection"
                    ));
                }
            },
            Some(("dtmf", v)) => {
                check_dtmf(v)?;
                p.dtmf = v.to_ascii_uppercase();
            }
            Some(_) => return Err(format!("--policy {spec}: unknown option {opt:?}")),
        }
    }
    p.outcome = outcome;
    Ok((number.to_owned(), p))
}

fn check_dtmf(digits: &str) -> Result<(), String> {
    match digits
        .chars()
        .find(|c| !"0123456789*#ABCDabcd".contains(*c))
    {
        Some(d) => Err(format!("--dtmf: {d:?} is not a DTMF digit")),
        None => Ok(()),
    }
}

impl SimCoreArgs {
    /// The core's configuration, or what is wrong with the arguments.
    pub fn to_config(&self) -> Result<SimCoreConfig, String> {
        let mut cfg = SimCoreConfig::new(self.listen);
        cfg.tcp = self.tcp || self.call_transport == CliTransport::Tcp;
        cfg.allowed_sources = self.allow.clone();
        let outcome = match (self.reject, self.no_answer) {
            (Some(s), _) if !(300..=699).contains(&s) => {
                return Err(format!("--reject {s}: a 300-699 status"));
            }
            (Some(status), _) => Outcome::Reject { status, q850: None },
            (None, true) => Outcome::NoAnswer,
            (None, false) => Outcome::Answer,
        };
        cfg.answer = AnswerPolicy {
            ring: self.ring,
            early_media: self.early_media,
            delay: secs(self.answer_after, "--answer-after")?,
            outcome,
            hangup_after: self
                .hangup_after
                .map(|s| secs(s, "--hangup-after"))
                .transpose()?,
            dtmf: String::new(),
            reason_header: !self.no_reason,
        };
        cfg.answer_by_number = self
            .policies
            .iter()
            .map(|p| parse_policy(p, &cfg.answer))
            .collect::<Result<_, _>>()?;
        cfg.media = match (self.tone, self.pattern) {
            (Some(hz), _) if !(50.0..=3800.0).contains(&hz) => {
                return Err(format!("--tone {hz}: 50-3800 Hz"));
            }
            (Some(hz), _) => MediaMode::Tone { hz },
            (None, true) => MediaMode::Pattern,
            (None, false) => MediaMode::Echo,
        };
        cfg.codecs = self.codecs.clone();
        check_dtmf(&self.dtmf)?;
        if let Some(target) = self.call {
            if self.rate <= 0.0 {
                return Err("--rate must be above 0".into());
            }
            let expect = parse_expect(&self.expect)?;
            let expect_by_number = self
                .expect_for
                .iter()
                .map(|spec| {
                    let (n, w) = spec
                        .split_once('=')
                        .ok_or_else(|| format!("--expect-for {spec}: expected NUMBER=WHAT"))?;
                    Ok((n.to_owned(), parse_expect(w)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if self.called.is_empty() || self.called.iter().any(String::is_empty) {
                return Err("--called: at least one number, none empty".into());
            }
            cfg.plan = Some(CallPlan {
                target,
                transport: match self.call_transport {
                    CliTransport::Udp => Transport::Udp,
                    CliTransport::Tcp => Transport::Tcp,
                },
                calls: self.calls,
                rate_per_s: self.rate,
                hold: secs(self.hold, "--hold")?,
                called: self.called[0].clone(),
                called_in_turn: if self.called.len() > 1 {
                    self.called.clone()
                } else {
                    Vec::new()
                },
                expect_by_number,
                cancel_after_ring: self
                    .cancel_after_ring
                    .map(|s| secs(s, "--cancel-after-ring"))
                    .transpose()?,
                max_in_progress: self.max_in_progress,
                calling: self.calling.clone(),
                dtmf: self.dtmf.to_ascii_uppercase(),
                dtmf_every: if self.dtmf.is_empty() {
                    0
                } else {
                    self.dtmf_every
                },
                expect,
                far_end_clears: self.far_end_clears,
                no_answer_timeout: secs(self.no_answer_timeout, "--no-answer-timeout")?,
            });
        }
        cfg.run_for = self.seconds.map(|s| secs(s, "--seconds")).transpose()?;
        cfg.checks = MediaChecks {
            min_packets: self.min_packets,
            max_loss_percent: self.max_loss,
            expect_echo: self.expect_echo,
            min_echo_percent: self.min_echo_percent,
        };
        cfg.seed = self.seed;
        Ok(cfg)
    }
}

/// A few lines for a person: counts, failures by status, failed checks.
pub fn render_summary(r: &SimCoreReport) -> String {
    let mut s = format!(
        "sim core {} after {:.1} s\n  received {}, answered {}, rejected {}, cancelled {}\n  placed {}, completed {}, failed {}",
        r.sip_addr,
        r.elapsed_ms / 1000.0,
        r.calls_received,
        r.calls_answered,
        r.calls_rejected,
        r.calls_cancelled,
        r.calls_placed,
        r.calls_completed,
        r.calls_failed,
    );
    for (status, n) in &r.failed_by_status {
        s.push_str(&format!("\n  failed with {status}: {n}"));
    }
    if !r.dtmf_received.is_empty() {
        s.push_str(&format!("\n  DTMF received: {}", r.dtmf_received));
    }
    let failed: Vec<_> = r.checks.iter().filter(|c| !c.passed).collect();
    if failed.is_empty() {
        s.push_str(&format!("\n  all {} checks passed\n", r.checks.len()));
    } else {
        for c in &failed {
            s.push_str(&format!("\n  FAILED {}: {}", c.name, c.detail));
        }
        s.push_str(&format!(
            "\n  {} of {} checks failed\n",
            failed.len(),
            r.checks.len()
        ));
    }
    s
}

/// The command: run, print, exit 0 when every check held.
pub fn main(args: &SimCoreArgs) -> ExitCode {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tdmgw sim core: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tdmgw sim core: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = rt.block_on(async {
        let core = SimCore::start(cfg).await?;
        let stop = core.stop_handle();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.stop();
            }
        });
        eprintln!("sim core listening on {} (SIP/UDP)", core.sip_addr());
        Ok::<_, super::core::SimCoreError>(core.finish().await)
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tdmgw sim core: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render_summary(&report));
    }
    if report.all_checks_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SimCoreArgs,
    }

    fn args(v: &[&str]) -> SimCoreArgs {
        let mut all = vec!["x"];
        all.extend_from_slice(v);
        T::try_parse_from(all).unwrap().a
    }

    #[test]
    fn policies_per_number() {
        let c = args(&["--ring", "--policy", "999=answer:1", "--policy", "101=486"])
            .to_config()
            .unwrap();
        assert_eq!(c.answer_by_number[0].0, "999");
        assert_eq!(c.answer_by_number[0].1.delay, Duration::from_secs(1));
        assert!(c.answer_by_number[0].1.ring);
        assert_eq!(
            c.answer_by_number[1].1.outcome,
            Outcome::Reject {
                status: 486,
                q850: None
            }
        );
        assert!(
            args(&["--policy", "101=200"]).to_config().is_err(),
            "200 is no rejection"
        );
        assert!(args(&["--policy", "101"]).to_config().is_err());
    }

    #[test]
    fn policy_options_and_reason_headers() {
        let c = args(&[
            "--no-reason",
            "--policy",
            "6001=none,no-ring",
            "--policy",
            "6002=486:0.5,early,reason=21",
            "--policy",
            "6003=answer,hangup=1,dtmf=12#",
        ])
        .to_config()
        .unwrap();
        assert!(!c.answer.reason_header);
        let p = |n: &str| {
            c.answer_by_number
                .iter()
                .find(|(k, _)| k == n)
                .unwrap()
                .1
                .clone()
        };
        assert!(!p("6001").ring);
        assert_eq!(p("6001").outcome, Outcome::NoAnswer);
        let r = p("6002");
        assert_eq!(
            r.outcome,
            Outcome::Reject {
                status: 486,
                q850: Some(21)
            }
        );
        assert!(r.early_media && r.reason_header);
        assert_eq!(r.delay, Duration::from_millis(500));
        let a = p("6003");
        assert_eq!(a.hangup_after, Some(Duration::from_secs(1)));
        assert_eq!(a.dtmf, "12#");
        for bad in [
            "1=answer,reason=21",
            "1=486,reason=0",
            "1=486,loud",
            "1=answer,dtmf=x",
        ] {
            assert!(args(&["--policy", bad]).to_config().is_err(), "{bad}");
        }
        assert!(args(&[]).to_config().unwrap().answer.reason_header);
    }

    #[test]
    fn numbers_in_turn_with_their_expectations() {
        let c = args(&[
            "--call",
            "127.0.0.1:5060",
            "--called",
            "7001,7002,7003",
            "--expect-for",
            "7002=486",
            "--expect-for",
            "7003=no-answer",
            "--cancel-after-ring",
            "0.5",
            "--max-in-progress",
            "8",
            "--min-echo-percent",
            "60",
        ])
        .to_config()
        .unwrap();
        let p = c.plan.unwrap();
        assert_eq!(
            (p.called_for(0), p.called_for(1), p.called_for(5)),
            ("7001", "7002", "7003")
        );
        assert_eq!(p.expect_for("7001"), Expect::Answer);
        assert_eq!(p.expect_for("7002"), Expect::Status { status: 486 });
        assert_eq!(p.expect_for("7003"), Expect::NoAnswer);
        assert_eq!(p.cancel_after_ring, Some(Duration::from_millis(500)));
        assert_eq!(p.max_in_progress, 8);
        assert_eq!(c.checks.min_echo_percent, 60.0);
        let one = args(&["--call", "127.0.0.1:5060", "--called", "101"])
            .to_config()
            .unwrap()
            .plan
            .unwrap();
        assert_eq!((one.called.as_str(), one.called_for(3)), ("101", "101"));
        assert!(
            args(&["--call", "127.0.0.1:1", "--expect-for", "7001"])
                .to_config()
                .is_err()
        );
    }

    #[test]
    fn a_call_plan_from_flags() {
        let c = args(&[
            "--call",
            "127.0.0.1:5060",
            "--calls",
            "5",
            "--rate",
            "2",
            "--hold",
            "3",
            "--dtmf",
            "12#",
            "--expect",
            "486",
            "--tone",
            "1004",
        ])
        .to_config()
        .unwrap();
        let p = c.plan.unwrap();
        assert_eq!((p.calls, p.rate_per_s, p.dtmf_every), (5, 2.0, 1));
        assert_eq!(p.expect, Expect::Status { status: 486 });
        assert_eq!(c.media, MediaMode::Tone { hz: 1004.0 });
        assert!(args(&["--reject", "200"]).to_config().is_err());
        assert!(args(&["--dtmf", "9x"]).to_config().is_err());
        assert!(
            args(&["--call", "127.0.0.1:1", "--rate", "0"])
                .to_config()
                .is_err()
        );
    }
}
