//! The device seam: what the DAHDI driver asks of a channel.
//!
//! [`DahdiBackend::open`] is "open `/dev/dahdi/channel` non-blocking and
//! DAHDI_SPECIFY the channel"; [`DahdiChannel`] is the handful of ioctls and
//! the read/write the driver uses. [`LinuxDahdi`] is the real kernel
//! interface; `seqpacket::SeqpacketCard` plays a card over socketpairs for
//! tests. Errors are `io::Error`s carrying the errno the kernel would give
//! (`ELAST` for a pending event, `EAGAIN` when nothing is ready).

use super::sys::{self, DahdiBufferInfo, DahdiParams, DahdiSpanInfo};
use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// One opened, specified DAHDI channel (non-blocking).
pub trait DahdiChannel: AsFd {
    /// DAHDI_GET_PARAMS for this channel.
    fn get_params(&mut self) -> io::Result<DahdiParams>;
    /// DAHDI_SET_BUFINFO.
    fn set_bufinfo(&mut self, info: &DahdiBufferInfo) -> io::Result<()>;
    /// DAHDI_SET_BLOCKSIZE (octets per read/write on a clear channel).
    fn set_blocksize(&mut self, octets: usize) -> io::Result<()>;
    /// DAHDI_GETEVENT: the oldest pending event code, 0 when none.
    fn get_event(&mut self) -> io::Result<i32>;
    /// DAHDI_SPANSTAT for `span` (0 = the span of this channel).
    fn span_stat(&mut self, span: u16) -> io::Result<DahdiSpanInfo>;
    /// read(2): one HDLC frame (+2 FCS octets) or one block.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// write(2): one HDLC frame (+2 spare octets) or one block.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
}

/// Opens channels: `/dev/dahdi/channel` + DAHDI_SPECIFY, O_NONBLOCK.
pub trait DahdiBackend {
    type Channel: DahdiChannel;
    fn open(&mut self, channo: u16) -> io::Result<Self::Channel>;
}

/// The Linux kernel DAHDI interface.
#[derive(Clone, Debug)]
pub struct LinuxDahdi {
    /// The generic channel selector device, `/dev/dahdi/channel`.
    pub path: PathBuf,
}

impl Default for LinuxDahdi {
    fn default() -> Self {
        LinuxDahdi {
            path: PathBuf::from("/dev/dahdi/channel"),
        }
    }
}

/// A channel of the kernel DAHDI interface.
#[derive(Debug)]
pub struct LinuxChannel {
    fd: OwnedFd,
}

impl DahdiBackend for LinuxDahdi {
    type Channel = LinuxChannel;

    fn open(&mut self, channo: u16) -> io::Result<LinuxChannel> {
        use nix::fcntl::OFlag;
        let fd = nix::fcntl::open(
            &self.path,
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let chan: c_int = channo.into();
        // SAFETY: fd is an open DAHDI channel selector we own; DAHDI_SPECIFY
        // reads one int from the pointer, which lives across the call.
        unsafe { sys::dahdi_specify(fd.as_raw_fd(), &chan) }?;
        Ok(LinuxChannel { fd })
    }
}

impl AsFd for LinuxChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DahdiChannel for LinuxChannel {
    fn get_params(&mut self) -> io::Result<DahdiParams> {
        // channo 0: "this fd's channel" (dahdi-base dahdi_ioctl_getparams).
        let mut p = DahdiParams::default();
        // SAFETY: p is a #[repr(C)] dahdi_params the kernel reads and fills.
        unsafe { sys::dahdi_get_params(self.fd.as_raw_fd(), &mut p) }?;
        Ok(p)
    }

    fn set_bufinfo(&mut self, info: &DahdiBufferInfo) -> io::Result<()> {
        // SAFETY: info is a #[repr(C)] dahdi_bufferinfo the kernel only reads.
        unsafe { sys::dahdi_set_bufinfo(self.fd.as_raw_fd(), info) }?;
        Ok(())
    }

    fn set_blocksize(&mut self, octets: usize) -> io::Result<()> {
        let n = c_int::try_from(octets).map_err(|_| io::Error::from_raw_os_error(libc_einval()))?;
        // SAFETY: the kernel reads one int from the pointer.
        unsafe { sys::dahdi_set_blocksize(self.fd.as_raw_fd(), &n) }?;
        Ok(())
    }

    fn get_event(&mut self) -> io::Result<i32> {
        let mut e: c_int = 0;
        // SAFETY: the kernel writes one int through the pointer.
        unsafe { sys::dahdi_getevent(self.fd.as_raw_fd(), &mut e) }?;
        Ok(e)
    }

    fn span_stat(&mut self, span: u16) -> io::Result<DahdiSpanInfo> {
        let mut info = DahdiSpanInfo {
            spanno: span.into(),
            ..Default::default()
        };
        // SAFETY: info is the packed dahdi_spaninfo (314 bytes) the kernel
        // reads spanno from and fills.
        unsafe { sys::dahdi_spanstat(self.fd.as_raw_fd(), &mut info) }?;
        Ok(info)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(&self.fd, buf)?)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(&self.fd, buf)?)
    }
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}
