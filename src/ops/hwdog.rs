//! A Linux hardware watchdog (`/dev/watchdog`), driven through the ioctls of
//! `include/uapi/linux/watchdog.h` via nix.
//!
//! Opening arms it; [`HardwareWatchdog::keepalive`] feeds it (the supervisor
//! does so only when every loop progressed); [`HardwareWatchdog::close`] writes
//! the magic 'V' so a clean shutdown does not reboot the box.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::libc::c_int;

/// `struct watchdog_info` from linux/watchdog.h.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchdogInfo {
    pub options: u32,
    pub firmware_version: u32,
    pub identity: [u8; 32],
}

/// The last reboot was caused by the watchdog.
pub const WDIOF_CARDRESET: c_int = 0x0020;
/// The driver honours the magic close character.
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;

nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);

#[derive(Debug)]
pub struct HardwareWatchdog {
    file: Option<File>,
    /// The timeout the driver actually set (it may round).
    pub timeout_s: u32,
    /// WDIOF_CARDRESET was set in the boot status.
    pub last_boot_by_watchdog: bool,
    pub identity: String,
}

fn nix_err(what: &str, e: nix::Error) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl HardwareWatchdog {
    /// Opens and arms the device and sets its timeout.
    pub fn open(device: &Path, timeout_s: u32) -> io::Result<HardwareWatchdog> {
        let file = OpenOptions::new().write(true).open(device)?;
        let fd = file.as_raw_fd();
        let mut info = WatchdogInfo::default();
        // SAFETY: fd is an open watchdog device; `info` is a valid, writable
        // `struct watchdog_info` that outlives the call.
        unsafe { wdioc_getsupport(fd, &mut info) }.map_err(|e| nix_err("WDIOC_GETSUPPORT", e))?;
        let mut t: c_int = timeout_s as c_int;
        // SAFETY: as above; `t` is a valid c_int in and out.
        unsafe { wdioc_settimeout(fd, &mut t) }.map_err(|e| nix_err("WDIOC_SETTIMEOUT", e))?;
        let mut status: c_int = 0;
        // SAFETY: as above; `status` is a valid c_int out-parameter.
        unsafe { wdioc_getbootstatus(fd, &mut status) }
            .map_err(|e| nix_err("WDIOC_GETBOOTSTATUS", e))?;
        let end = info.identity.iter().position(|&b| b == 0).unwrap_or(32);
        Ok(HardwareWatchdog {
            file: Some(file),
            timeout_s: t.max(0) as u32,
            last_boot_by_watchdog: status & WDIOF_CARDRESET != 0,
            identity: String::from_utf8_lossy(&info.identity[..end]).into_owned(),
        })
    }

    pub fn keepalive(&mut self) -> io::Result<()> {
        let Some(f) = &self.file else { return Ok(()) };
        let mut dummy: c_int = 0;
        // SAFETY: fd is the open watchdog device; `dummy` is a valid c_int.
        unsafe { wdioc_keepalive(f.as_raw_fd(), &mut dummy) }
            .map_err(|e| nix_err("WDIOC_KEEPALIVE", e))?;
        Ok(())
    }

    /// Clean shutdown: magic close, so the device disarms.
    pub fn close(mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.write_all(b"V")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers of linux/watchdog.h on x86-64 and arm64.
    #[test]
    fn ioctl_numbers_match_the_header() {
        use nix::{request_code_read, request_code_readwrite};
        assert_eq!(
            request_code_read!(b'W', 0, std::mem::size_of::<WatchdogInfo>()) as u32,
            0x8028_5700
        );
        assert_eq!(
            request_code_read!(b'W', 2, std::mem::size_of::<c_int>()) as u32,
            0x8004_5702
        );
        assert_eq!(
            request_code_read!(b'W', 5, std::mem::size_of::<c_int>()) as u32,
            0x8004_5705
        );
        assert_eq!(
            request_code_readwrite!(b'W', 6, std::mem::size_of::<c_int>()) as u32,
            0xC004_5706
        );
    }

    #[test]
    fn a_file_that_is_not_a_watchdog_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = HardwareWatchdog::open(f.path(), 30).unwrap_err();
        assert!(e.to_string().contains("WDIOC_GETSUPPORT"), "{e}");
    }
}
