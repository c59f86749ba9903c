//! Configuration: the board profile (hardware) and the site config (everything
//! site-specific), read from TOML and validated strictly.
//!
//! Every error names the file, the line and the key, and says what is expected.
//! Unknown keys are errors. The loader reports all problems it finds in one go.

mod board;
pub mod call;
mod duration;
mod media_plan;
pub mod sip;
mod site;
mod source;

use std::fmt;
use std::path::{Path, PathBuf};

pub use board::{
    BUILTIN_SIM, BUILTIN_SIM_NAME, BoardProfile, BoardSpan, Driver, HardwareWatchdog, MediaThread,
};
pub use call::{CallSection, TrunkCauses};
pub use duration::{ConfigDuration, format_duration, parse_duration};
pub use media_plan::{DahdiSpanPlan, MediaPlan, MediaPlanError, media_plan};
pub use site::{
    ChannelHunt, LogFormat, Peer, PeerGroup, Role, Route, SIP_TIMERS, SiteConfig, SpanSignalling,
    Transport, pattern_fixed_len, pattern_matches,
};
pub use source::Source;

/// The site config shipped for `tdmgw demo`.
pub const DEMO_SITE: &str = include_str!("../../examples/demo.toml");

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// Key path (`span[0].timers.T309`); empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found while loading, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A validated site config with its board profile.
#[derive(Debug, Clone)]
pub struct Config {
    pub site: SiteConfig,
    pub site_path: PathBuf,
    pub board: BoardProfile,
    /// Where the board came from (a path, or `builtin:sim`).
    pub board_path: PathBuf,
}

impl Config {
    /// Reads and validates a site config and the board profile it names.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let site_src = Source::read(path)?;
        Config::from_site_source(site_src)
    }

    /// The demo: the shipped demo site config on the embedded board profile.
    pub fn demo() -> Result<Config, ConfigErrors> {
        let src = Source::from_text(Path::new("examples/demo.toml"), DEMO_SITE.to_string())?;
        Config::from_site_source(src)
    }

    fn from_site_source(site_src: Source) -> Result<Config, ConfigErrors> {
        let site: SiteConfig = site_src.deserialize()?;
        let (board_src, board_path) = if site.board == BUILTIN_SIM_NAME {
            let p = PathBuf::from(BUILTIN_SIM_NAME);
            (Source::from_text(&p, BUILTIN_SIM.to_string()), p)
        } else {
            let base = site_src.path.parent().unwrap_or(Path::new("."));
            let p = base.join(&site.board);
            if !p.exists() {
                return Err(site_src
                    .error(
                        "board",
                        format!("board profile {} does not exist", p.display()),
                    )
                    .into());
            }
            (Source::read(&p), p)
        };
        let board_src = board_src?;
        let board: BoardProfile = board_src.deserialize()?;
        let mut errs = board.validate(&board_src);
        errs.extend(site.validate(&site_src, &board));
        if !errs.is_empty() {
            errs.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(ConfigErrors(errs));
        }
        Ok(Config {
            site,
            site_path: site_src.path,
            board,
            board_path,
        })
    }

    /// What would run, in a few lines, for `check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let mut out = Vec::new();
        out.push(format!(
            "board `{}` ({}), {} span(s)",
            self.board.name,
            self.board_path.display(),
            self.board.spans.len()
        ));
        for b in &self.board.spans {
            let sig = self.site.spans.iter().find(|s| s.id == b.id);
            let role = sig.map_or("?", |s| match s.role {
                Role::User => "user side",
                Role::Network => "network side",
            });
            out.push(format!("  {}; {role}, EuroISDN", b.describe()));
            if let Some(s) = sig
                && !s.timers.is_empty()
            {
                let o: Vec<String> = s.timers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push(format!("    timer overrides: {}", o.join(" ")));
            }
        }
        out.extend(self.board.dahdi_setup());
        let m = &self.board.media;
        out.push(format!(
            "media thread: cpu {}, realtime priority {}, lock memory {}",
            m.cpu.map_or("any".into(), |c| c.to_string()),
            m.realtime_priority,
            m.lock_memory
        ));
        if let Some(w) = &self.board.watchdog {
            out.push(format!(
                "hardware watchdog: {} ({} s)",
                w.device.display(),
                w.timeout_s
            ));
        }
        out.push(format!(
            "management: http://{}",
            self.site.management.listen
        ));
        for l in &self.site.sip.listen {
            out.push(format!("SIP listen: {} {}", l.transport.name(), l.address));
        }
        for g in &self.site.peer_groups {
            let peers: Vec<String> = g
                .peers
                .iter()
                .map(|p| {
                    format!(
                        "{}:{} (prio {}, weight {})",
                        p.transport.name(),
                        p.address,
                        p.priority,
                        p.weight
                    )
                })
                .collect();
            out.push(format!("peer group `{}`: {}", g.name, peers.join(", ")));
        }
        for r in &self.site.routes {
            let mut cond = format!("called {}", r.called);
            if let Some(c) = &r.calling {
                cond.push_str(&format!(" calling {c}"));
            }
            if let Some(s) = r.span {
                cond.push_str(&format!(" on span {s}"));
            }
            out.push(format!("route: {cond} -> {}", r.peer_group));
        }
        out.join("\n")
    }
}
