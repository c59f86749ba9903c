//! `tdmgw`: the command line of the E1 PRI to SIP gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use tdmgw::config::{Config, LogFormat};
use tdmgw::ops::{admin, daemon, logging};

const DEFAULT_CONFIG: &str = "/etc/tdmgw/tdmgw.toml";

/// tdmgw bridges E1 ISDN PRI trunks to the SIP/RTP voice core.
///
/// Configuration is two files: the board profile (the hardware: spans and
/// their drivers) and the site config (addresses, core peers, routes, per-span
/// signalling). Run `tdmgw demo` to see the gateway work on its built-in
/// simulated board, and `tdmgw check-config` before every change on a live box.
#[derive(Parser, Debug)]
#[command(name = "tdmgw", version = tdmgw::VERSION, about, long_about)]
struct Cli {
    /// Log output on stderr (journald is used by itself under systemd).
    #[arg(long, global = true, value_enum)]
    log_format: Option<CliLogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliLogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (what systemd starts). SIGTERM drains and stops,
    /// SIGHUP re-reads the config.
    Run {
        /// Site config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the site config and its board profile, print what would run,
    /// and exit 0 if they are valid, 1 if not.
    CheckConfig {
        /// Site config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run the gateway on the built-in simulated board for a while, then stop
    /// and print a summary. Exits 0 when every check held.
    Demo {
        /// How long to run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Only the daemon's lifecycle (supervisor, watchdog, drain) with no
        /// calls: the demo before the gateway was wired. By default the
        /// demo runs the gateway (media thread, D-channel, SIP and call
        /// tasks) between the simulated exchange on the pair line and the
        /// simulated core on loopback UDP, with a realistic call mix.
        #[arg(long)]
        lifecycle_only: bool,
        /// The simulated core rejects calls to this number with 486 Busy
        /// Here (the exchange expects cause 17 for them), e.g. `--busy 101`.
        #[arg(long, value_name = "NUMBER")]
        busy: Option<String>,
    },
    /// Show a running gateway: spans and alarms, D-channels, channels, calls,
    /// core peers, loops and readiness.
    Status {
        /// Print the JSON document instead (for tools).
        #[arg(long)]
        json: bool,
        /// The daemon's admin socket.
        #[arg(long, default_value = DEFAULT_ADMIN_SOCKET)]
        socket: PathBuf,
    },
    /// Stop taking new calls and wait (bounded) for live ones to finish. The
    /// gateway stays up but not ready; restart it to take calls again.
    Drain {
        /// Longest wait for live calls, in seconds.
        #[arg(long, default_value_t = 300)]
        wait: u64,
        #[arg(long, default_value = DEFAULT_ADMIN_SOCKET)]
        socket: PathBuf,
    },
    /// Capture a span's D-channel frames and its calls' SIP and RTP packets
    /// into a pcapng file that Wireshark/tshark open.
    Trace {
        #[arg(long)]
        span: u8,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = DEFAULT_ADMIN_SOCKET)]
        socket: PathBuf,
    },
    /// Simulators that face a real tdmgw process or a real peer: exit 0
    /// when every check held.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// A simulated exchange: the network side of a PRI on a raw E1 (SAToP
    /// or serial) that places, answers or rejects calls, checks the audio
    /// of each and prints the results.
    Exchange(Box<tdmgw::sim::exchange_cli::SimExchangeArgs>),
    /// A simulated MCVP core on SIP/UDP: answers (optionally after ringing
    /// and early media), rejects, echoes or generates RTP, places calls, and
    /// reports JSON results. Exits 0 when every check held.
    Core(Box<tdmgw::sim::core_cli::SimCoreArgs>),
}

const DEFAULT_ADMIN_SOCKET: &str = "/run/tdmgw/admin.sock";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run { config } => run(&config, cli.log_format),
        Command::Demo {
            seconds,
            lifecycle_only,
            busy,
        } => {
            if lifecycle_only {
                demo(seconds, cli.log_format)
            } else {
                demo_full(seconds, busy, cli.log_format)
            }
        }
        Command::Status { json, socket } => status(&socket, json),
        Command::Drain { wait, socket } => drain(&socket, wait),
        Command::Trace {
            span,
            seconds,
            out,
            socket,
        } => trace(&socket, span, seconds, &out),
        Command::Sim {
            what: SimCommand::Exchange(args),
        } => {
            let _log = logging::init("warn", log_format_or_text(cli.log_format));
            tdmgw::sim::exchange_cli::run_cli(&args)
        }
        Command::Sim {
            what: SimCommand::Core(args),
        } => {
            let _log = logging::init("warn", log_format_or_text(cli.log_format));
            tdmgw::sim::core_cli::main(&args)
        }
    }
}

fn log_format_or_text(cli: Option<CliLogFormat>) -> LogFormat {
    match cli {
        Some(CliLogFormat::Json) => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

fn status(socket: &std::path::Path, json: bool) -> ExitCode {
    match admin::client_status(socket) {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", admin::render_status(&v));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tdmgw status: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drain(socket: &std::path::Path, wait: u64) -> ExitCode {
    let r = admin::client_drain(socket, wait, |v| {
        println!("draining: {} live call(s)", v["live_calls"]);
    });
    match r {
        Ok(last) if last["live_calls"].as_u64() == Some(0) => {
            println!("drained: no live calls; new calls are refused");
            ExitCode::SUCCESS
        }
        Ok(last) => {
            println!(
                "wait over with {} live call(s); new calls stay refused",
                last["live_calls"]
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tdmgw drain: {e}");
            ExitCode::FAILURE
        }
    }
}

fn trace(socket: &std::path::Path, span: u8, seconds: u64, out: &std::path::Path) -> ExitCode {
    eprintln!("tracing span {span} for {seconds} s into {}", out.display());
    match admin::client_trace(socket, span, seconds, &out.to_path_buf()) {
        Ok(n) => {
            eprintln!("wrote {n} bytes to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tdmgw trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn missing_config(path: &std::path::Path) -> ExitCode {
    eprintln!(
        "tdmgw: no config at {}: try `tdmgw demo`, or start from examples/production.toml and board/*.toml",
        path.display()
    );
    ExitCode::from(2)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    if !path.exists() {
        return missing_config(path);
    }
    match Config::load(path) {
        Ok(c) => {
            println!("{}: OK", path.display());
            println!("{}", c.summary());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            eprintln!(
                "{}: {} problem(s); nothing would run",
                path.display(),
                errs.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

fn log_format(cli: Option<CliLogFormat>, config: &Config) -> LogFormat {
    match cli {
        Some(CliLogFormat::Text) => LogFormat::Text,
        Some(CliLogFormat::Json) => LogFormat::Json,
        None => config.site.log.format,
    }
}

fn run(path: &std::path::Path, fmt: Option<CliLogFormat>) -> ExitCode {
    if !path.exists() {
        return missing_config(path);
    }
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    let log = logging::init(&config.site.log.level, log_format(fmt, &config));
    let opts = daemon::RunOptions {
        config_path: Some(path.to_path_buf()),
        run_for: None,
    };
    match daemon::run(config, opts, log) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tdmgw failed");
            ExitCode::FAILURE
        }
    }
}

fn demo_full(seconds: u64, busy: Option<String>, fmt: Option<CliLogFormat>) -> ExitCode {
    let config = match Config::demo() {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("the built-in demo config is invalid (a bug):\n{errs}");
            return ExitCode::FAILURE;
        }
    };
    // The demo's own lines go to stdout; the log only says what went wrong.
    let _log = logging::init("warn", log_format_or_text(fmt));
    let opts = tdmgw::sim::demo::DemoOptions { busy };
    match tdmgw::sim::demo::run(config, seconds, &opts) {
        Ok(o) if o.ok => {
            println!("demo PASSED: every check held");
            ExitCode::SUCCESS
        }
        Ok(o) => {
            println!("demo FAILED:");
            for f in &o.failures {
                println!("  - {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(seconds: u64, fmt: Option<CliLogFormat>) -> ExitCode {
    let mut config = match Config::demo() {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("the built-in demo config is invalid (a bug):\n{errs}");
            return ExitCode::FAILURE;
        }
    };
    match tdmgw::sim::demo::choose_ports(&mut config, 1) {
        Ok(moved) if !moved.is_empty() => {
            println!("tdmgw demo: {}; free ports taken instead", moved.join(", "))
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("demo failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let log = logging::init(&config.site.log.level, log_format(fmt, &config));
    let opts = daemon::RunOptions {
        config_path: None,
        run_for: Some(Duration::from_secs(seconds)),
    };
    match daemon::run(config, opts, log) {
        Ok(report) => {
            println!(
                "demo finished after {seconds} s: watchdog pings sent {}, withheld {}",
                report.watchdog_pings_sent, report.watchdog_pings_withheld
            );
            if report.watchdog_pings_withheld == 0 {
                ExitCode::SUCCESS
            } else {
                println!("demo FAILED: a loop stalled");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
