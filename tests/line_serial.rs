//! The serial driver over a pty pair: the port sits on the slave (as it
//! would on a serial card's tty), the test plays the line on the master.
//! Time is simulated; readiness is waited for with a bound, never slept on.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::termios::{
    ControlFlags, InputFlags, LocalFlags, OutputFlags, SetArg, cfmakeraw, tcgetattr, tcsetattr,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use tdmgw::line::driver::serial::{SerialEvent, SerialParams, SerialPort, SerialTty};
use tdmgw::line::driver::timing::Timing;
use tdmgw::line::e1::{AlignState, E1Deframer, E1Framer, FRAME_OCTETS};
use tdmgw::line::hdlc::{HdlcDecoder, HdlcEncoder};

nix::ioctl_read_bad!(tcgets2, nix::libc::TCGETS2, nix::libc::termios2);

/// A pty pair: the master made raw and non-blocking for the test's side.
fn pty() -> (OwnedFd, OwnedFd, std::path::PathBuf) {
    let p = openpty(None, None).unwrap();
    let mut t = tcgetattr(&p.master).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&p.master, SetArg::TCSANOW, &t).unwrap();
    let fl = OFlag::from_bits_truncate(fcntl(&p.master, FcntlArg::F_GETFL).unwrap());
    fcntl(&p.master, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).unwrap();
    let name = nix::unistd::ttyname(&p.slave).unwrap();
    (p.master, p.slave, name)
}

fn wait(fd: &impl AsFd, flags: PollFlags) {
    let mut fds = [PollFd::new(fd.as_fd(), flags)];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(2000u16)).unwrap(),
        1,
        "pty not ready within the 2 s bound"
    );
}

/// Non-blocking read of the master: what is there.
fn read_master(master: &OwnedFd, out: &mut Vec<u8>) -> usize {
    let mut buf = [0u8; 4096];
    match nix::unistd::read(master, &mut buf) {
        Ok(n) => {
            out.extend_from_slice(&buf[..n]);
            n
        }
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => panic!("master read: {e}"),
    }
}

fn write_master(master: &OwnedFd, data: &[u8]) -> usize {
    match nix::unistd::write(master, data) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => panic!("master write: {e}"),
    }
}

/// Every octet value, including the ones a cooked tty would eat or map
/// (CR, LF, XON, XOFF, ^C, ^D, DEL).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn the_tty_is_raw_at_the_configured_baud() {
    let (_master, slave, name) = pty();
    let tty = SerialTty::open(&name, 2_048_000, 1024).unwrap();
    let t = tcgetattr(&slave).unwrap();
    assert!(
        !t.local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
    );
    assert!(
        !t.input_flags.intersects(
            InputFlags::IXON | InputFlags::IXOFF | InputFlags::ICRNL | InputFlags::ISTRIP
        )
    );
    assert!(!t.output_flags.contains(OutputFlags::OPOST));
    assert!(
        t.control_flags
            .contains(ControlFlags::CS8 | ControlFlags::CLOCAL | ControlFlags::CREAD)
    );
    assert!(!t.control_flags.contains(ControlFlags::CRTSCTS));
    // The E1 rate is no standard Bnnn: set through termios2 / BOTHER.
    let mut t2 = std::mem::MaybeUninit::<nix::libc::termios2>::zeroed();
    let t2 = unsafe {
        tcgets2(tty.as_raw_fd(), t2.as_mut_ptr()).unwrap();
        t2.assume_init()
    };
    assert_eq!(t2.c_ospeed, 2_048_000);
    assert_eq!(t2.c_cflag & nix::libc::CBAUD, nix::libc::BOTHER);
}

#[test]
fn opening_a_missing_device_names_it() {
    let params = SerialParams::new("/dev/tdmgw-no-such-tty", 2_048_000);
    let e = SerialPort::open(&params, 0).unwrap_err();
    assert!(e.to_string().contains("/dev/tdmgw-no-such-tty"), "{e}");
}

#[test]
fn a_stream_crosses_the_pty_intact_both_ways() {
    let (master, slave, name) = pty();
    let mut tty = SerialTty::from_fd(slave, &name, 2_048_000, 1 << 17).unwrap();
    let data = pattern(100_000);

    // tty -> master: one big write; the pty takes a few KiB at a time, the
    // rest waits in the remainder buffer and goes out as the master reads.
    tty.write(&data).unwrap();
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 10_000, "stream stalled at {}", got.len());
        if read_master(&master, &mut got) == 0 {
            if tty.pending() > 0 {
                tty.flush().unwrap();
            }
            wait(&master, PollFlags::POLLIN);
        }
    }
    assert_eq!(got, data);
    assert!(tty.stats().short_writes >= 1);
    assert_eq!(tty.stats().octets_sent, data.len() as u64);
    assert_eq!(tty.stats().tx_overrun_octets, 0);

    // master -> tty.
    let mut sent = 0;
    let mut back = Vec::new();
    let mut buf = [0u8; 1000];
    rounds = 0;
    while back.len() < data.len() {
        rounds += 1;
        assert!(rounds < 10_000, "stream stalled at {}", back.len());
        if sent < data.len() {
            sent += write_master(&master, &data[sent..]);
        }
        let n = tty.read(&mut buf).unwrap();
        back.extend_from_slice(&buf[..n]);
        if n == 0 {
            wait(&tty, PollFlags::POLLIN);
        }
    }
    assert_eq!(back, data);
}

#[test]
fn a_full_remainder_buffer_drops_and_counts() {
    let (_master, slave, name) = pty();
    let mut tty = SerialTty::from_fd(slave, &name, 2_048_000, 64).unwrap();
    // Nobody reads the master: the pty fills, then the 64-octet remainder.
    let chunk = [0x55u8; 1024];
    for _ in 0..200 {
        tty.write(&chunk).unwrap();
    }
    let s = tty.stats();
    assert!(s.tx_overrun_octets > 0);
    assert_eq!(tty.pending(), 64);
    assert_eq!(
        s.octets_sent + 64 + s.tx_overrun_octets,
        200 * chunk.len() as u64
    );
}

/// One side's E1: framer + HDLC encoder on TS16 out, deframer + decoder in.
struct Line {
    framer: E1Framer,
    enc: HdlcEncoder,
    deframer: E1Deframer,
    dec: HdlcDecoder,
    frames: Vec<Vec<u8>>,
    next: usize,
    received: Vec<Vec<u8>>,
    tx_frames: u64,
}

/// HDLC frames start after 50 ms of line, once the far end is aligned.
const WARM_UP_FRAMES: u64 = 400;

impl Line {
    fn new(crc4: bool, tag: u8) -> Line {
        let frames = (0..40)
            .map(|i: usize| {
                let mut f: Vec<u8> = (0..(8 + i % 20)).map(|k| (k * 13 + i) as u8).collect();
                f[0] = tag;
                f[1] = i as u8;
                f[2] = 0x7E;
                f
            })
            .collect();
        Line {
            framer: E1Framer::with_crc4(crc4),
            enc: HdlcEncoder::new(),
            deframer: E1Deframer::with_crc4(crc4),
            dec: HdlcDecoder::new(),
            frames,
            next: 0,
            received: Vec::new(),
            tx_frames: 0,
        }
    }

    /// Fills `tx`, a whole number of frames.
    fn fill(&mut self, tx: &mut [u8]) {
        assert_eq!(tx.len() % FRAME_OCTETS, 0, "whole frames only");
        for chunk in tx.chunks_exact_mut(FRAME_OCTETS) {
            self.tx_frames += 1;
            if self.tx_frames > WARM_UP_FRAMES
                && self.enc.can_load()
                && self.next < self.frames.len()
            {
                self.enc.load(&self.frames[self.next]).unwrap();
                self.next += 1;
            }
            let mut f = [0xD5u8; FRAME_OCTETS];
            f[16] = self.enc.poll_octet();
            self.framer.emit_frame(&mut f);
            chunk.copy_from_slice(&f);
        }
    }

    fn take(&mut self, rx: &[u8]) {
        for &o in rx {
            let ts16 = self.deframer.handle_octet(o).map(|f| f[16]);
            if let Some(t) = ts16
                && let Some(fr) = self.dec.handle_octet(t)
            {
                self.received.push(fr.to_vec());
            }
        }
    }
}

/// The exchange on the master clocks the line; tdmgw's span on the port
/// answers in loop timing. Both deframers must align on streams that were
/// cut into reads at arbitrary places, and every HDLC frame must cross.
fn framed_e1_both_ways(crc4: bool) {
    let (master, slave, name) = pty();
    let params = SerialParams::new(&name, 2_048_000);
    let mut port = SerialPort::from_fd(slave, &params, 0).unwrap();
    let mut exchange = Line::new(crc4, 0xE0);
    let mut ours = Line::new(crc4, 0x70);

    // The exchange's stream starts mid-frame: 13 octets of junk first.
    let mut line = vec![0x0Fu8; 13];
    let mut written = 0;
    let mut from_port = Vec::new();
    let mut from_port_total = 0u64;
    let mut bound = 0;
    for ms in 1..=300u64 {
        let now = ms * 1000;
        let start = line.len();
        line.resize(start + 8 * FRAME_OCTETS, 0);
        exchange.fill(&mut line[start..]);
        // Written in 100-octet pieces, so reads never line up with frames.
        while written < line.len() {
            let end = (written + 100).min(line.len());
            written += write_master(&master, &line[written..end]);
            while port.stats().octets_received < written as u64 {
                bound += 1;
                assert!(bound < 100_000, "port starved");
                port.recv_ready(now, |rx, tx| {
                    ours.take(rx);
                    ours.fill(tx);
                })
                .unwrap();
                if port.stats().octets_received < written as u64 {
                    wait(&port, PollFlags::POLLIN);
                }
            }
            if port.has_pending() {
                port.write_ready().unwrap();
            }
            while from_port_total < port.stats().octets_sent {
                let n = read_master(&master, &mut from_port);
                from_port_total += n as u64;
                if n == 0 {
                    wait(&master, PollFlags::POLLIN);
                }
            }
        }
        if now >= port.poll_timeout() {
            port.handle_timeout(now, |rx, tx| {
                ours.take(rx);
                ours.fill(tx);
            })
            .unwrap();
        }
        exchange.take(&from_port);
        from_port.clear();
    }

    for (who, side, other) in [("tdmgw", &ours, &exchange), ("exchange", &exchange, &ours)] {
        assert_eq!(side.deframer.state(), AlignState::InFrame, "{who}");
        assert_eq!(side.deframer.stats().alignments, 1, "{who}");
        assert_eq!(side.deframer.stats().alignment_losses, 0, "{who}");
        assert_eq!(side.deframer.stats().crc4_errors, 0, "{who}");
        assert_eq!(other.next, other.frames.len(), "{who}: run too short");
        assert!(
            side.received == other.frames,
            "{who} received {} of {} frames intact",
            side.received.len(),
            other.frames.len()
        );
    }
    // Loop timing: one frame out per frame in, no free-running.
    let s = port.stats();
    assert_eq!(s.frames_out, s.octets_received / FRAME_OCTETS as u64);
    assert_eq!(s.octets_sent, s.frames_out * FRAME_OCTETS as u64);
    assert_eq!(s.timer_ticks, 0);
    assert!(!port.los());
}

#[test]
fn framed_e1_over_a_pty_no_crc4() {
    framed_e1_both_ways(false);
}

#[test]
fn framed_e1_over_a_pty_crc4() {
    framed_e1_both_ways(true);
}

#[test]
fn free_runs_with_zeros_and_reports_los_without_data() {
    let (master, slave, name) = pty();
    let mut params = SerialParams::new(&name, 2_048_000);
    params.timing = Timing::Loop;
    let mut port = SerialPort::from_fd(slave, &params, 0).unwrap();
    let mut rx_seen = Vec::new();
    let mut tx_octets = 0;
    let mut now = 0;
    for _ in 0..10 {
        now = port.poll_timeout();
        port.handle_timeout(now, |rx, tx| {
            rx_seen.push(rx.to_vec());
            tx.fill(0xFF);
            tx_octets += tx.len();
        })
        .unwrap();
    }
    // One 256-octet tick per millisecond; zeros in (a dead line has no
    // pulses) once 1.5 ms passed without data.
    assert_eq!(now, 10_000, "ticks at 1..=10 ms, LOS check at 10 ms");
    assert_eq!(tx_octets, 10 * 256);
    assert!(
        rx_seen[1..]
            .iter()
            .all(|r| r.len() == 256 && r.iter().all(|&o| o == 0))
    );
    assert!(port.los());
    assert_eq!(port.poll_event(), Some(SerialEvent::Los(true)));
    let mut out = Vec::new();
    while (out.len() as u64) < port.stats().octets_sent {
        if read_master(&master, &mut out) == 0 {
            wait(&master, PollFlags::POLLIN);
        }
    }
    assert!(out.iter().all(|&o| o == 0xFF));
    // Data again: LOS clears at once.
    write_master(&master, &[0x1B; 64]);
    wait(&port, PollFlags::POLLIN);
    port.recv_ready(now + 100, |rx, tx| {
        assert!(!rx.is_empty());
        tx.fill(0);
    })
    .unwrap();
    assert!(!port.los());
    assert_eq!(port.poll_event(), Some(SerialEvent::Los(false)));
}

#[test]
fn internal_timing_sends_on_our_clock_only() {
    let (master, slave, name) = pty();
    let mut params = SerialParams::new(&name, 2_048_000);
    params.timing = Timing::Internal;
    let mut port = SerialPort::from_fd(slave, &params, 0).unwrap();
    write_master(&master, &[0x33; 500]);
    let mut got = 0;
    while got < 500 {
        wait(&port, PollFlags::POLLIN);
        port.recv_ready(100, |rx, tx| {
            got += rx.len();
            assert!(tx.is_empty(), "internal timing: nothing sent on receipt");
        })
        .unwrap();
    }
    let mut sent = 0;
    for ms in 1..=5u64 {
        port.handle_timeout(ms * 1000, |_, tx| sent += tx.len())
            .unwrap();
    }
    assert_eq!(sent, 5 * 256);
}
