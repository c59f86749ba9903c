//! Logging: `tracing` to journald when stderr is the journal (`$JOURNAL_STREAM`
//! matches it), else readable text or JSON lines on stderr. The level comes from
//! `RUST_LOG` when set, else from the site config, and can be changed on reload.

use std::os::fd::AsFd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// Changes the level filter of the running subscriber (SIGHUP).
#[derive(Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Applies a config level unless `RUST_LOG` overrides it.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Ok(());
        }
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.filter.reload(f).map_err(|e| e.to_string())
    }
}

/// True when systemd connected our stderr to the journal (sd_journal_stream_fd
/// semantics: `$JOURNAL_STREAM` is `DEVICE:INODE` of that stream).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(level: &str, format: LogFormat) -> LogHandle {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => (EnvFilter::new(v), true),
        _ => (
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let (filter_layer, handle) = reload::Layer::new(filter);
    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok().map(|l| {
            l.with_field_prefix(None)
                .with_syslog_identifier("tdmgw".into())
        })
    } else {
        None
    };
    let use_stderr = journald.is_none();
    let text = (use_stderr && format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    let json = (use_stderr && format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .flatten_event(true)
    });
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(journald)
        .with(text)
        .with(json)
        .try_init();
    LogHandle {
        filter: handle,
        from_env,
    }
}
