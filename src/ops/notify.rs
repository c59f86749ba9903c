//! sd_notify(3) over `$NOTIFY_SOCKET`: a few lines over a Unix datagram socket.
//!
//! Nothing is sent when `NOTIFY_SOCKET` is unset. Abstract socket names
//! (`@name`) are supported as systemd uses them.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A handle on the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a disabled notifier when it is unset or unusable.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let path = path.to_string_lossy().into_owned();
        let addr = if let Some(name) = path.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            SocketAddr::from_pathname(&path)
        };
        match (UnixDatagram::unbound(), addr) {
            (Ok(sock), Ok(addr)) => Notifier {
                target: Some((sock, addr)),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(notify_socket = %path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from us");
                Notifier::disabled()
            }
        }
    }

    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=VALUE` lines).
    pub fn send(&self, state: &str) -> io::Result<()> {
        if let Some((sock, addr)) = &self.target {
            sock.send_to_addr(state.as_bytes(), addr)?;
        }
        Ok(())
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(error = %e, state = state.lines().next().unwrap_or(""), "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// One line for `systemctl status`.
    pub fn status(&self, line: &str) {
        let clean: String = line
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        self.send_logged(&format!("STATUS={clean}"));
    }

    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// `RELOADING=1` with the monotonic timestamp systemd 253+ expects.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }
}

/// CLOCK_MONOTONIC in microseconds.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1_000,
        Err(_) => 0,
    }
}

/// The systemd watchdog period from `$WATCHDOG_USEC`, if it is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_period_from_env() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
        };
        n.ready();
        n.status("line one\nline two");
        let mut buf = [0u8; 128];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STATUS=line one line two");
    }

    #[test]
    fn disabled_sends_nothing() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.send("READY=1").unwrap();
    }
}
