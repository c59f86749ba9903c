//! Two SAToP spans over loopback UDP carrying a real E1 stream (G.704
//! framing, with and without CRC-4, HDLC on TS16 both ways), through a
//! seeded shim that drops, duplicates and reorders packets.
//!
//! Time is simulated (`now_us` advances 1 ms per step); the sockets are
//! real. Each step waits, with a bound, for the datagrams it knows were
//! sent: there are no sleeps and no assertions on wall-clock time.

mod common;

use common::Rng;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use tdmgw::line::driver::satop::{SatopEvent, SatopParams, SatopPort, Timing};
use tdmgw::line::e1::{AlignState, E1Deframer, E1Framer, FRAME_OCTETS};
use tdmgw::line::hdlc::{HdlcDecoder, HdlcEncoder};

const MS: u64 = 1000;

/// One side's E1 stack: framer + HDLC encoder out, deframer + decoder in.
struct LineEnd {
    framer: E1Framer,
    enc: HdlcEncoder,
    deframer: E1Deframer,
    dec: HdlcDecoder,
    to_send: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    received: Vec<Vec<u8>>,
    /// Line frames sent so far: HDLC frames start after 50 ms, once the
    /// far end has had time to align.
    tx_frames: u64,
}

const WARM_UP_FRAMES: u64 = 400;

impl LineEnd {
    fn new(crc4: bool, tag: u8, frames: usize) -> LineEnd {
        // Q.921-sized frames with a sequence number, and octets that need
        // zero-bit insertion (0x7E, 0xFF) to make the HDLC layer work.
        let to_send = (0..frames)
            .map(|i| {
                let len = 6 + (i * 7) % 30;
                let mut f: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
                f[0] = tag;
                f[1] = (i >> 8) as u8;
                f[2] = i as u8;
                f[3] = 0x7E;
                f[4] = 0xFF;
                f
            })
            .collect();
        LineEnd {
            framer: E1Framer::with_crc4(crc4),
            enc: HdlcEncoder::new(),
            deframer: E1Deframer::with_crc4(crc4),
            dec: HdlcDecoder::new(),
            to_send,
            sent: Vec::new(),
            received: Vec::new(),
            tx_frames: 0,
        }
    }

    /// Fills `tx` (whole frames) with our line octets.
    fn fill_tx(&mut self, tx: &mut [u8]) {
        assert_eq!(tx.len() % FRAME_OCTETS, 0);
        for chunk in tx.chunks_exact_mut(FRAME_OCTETS) {
            self.tx_frames += 1;
            if self.tx_frames > WARM_UP_FRAMES
                && self.enc.can_load()
                && let Some(f) = self.to_send.pop_front()
            {
                self.enc.load(&f).unwrap();
                self.sent.push(f);
            }
            let mut frame = [0xD5u8; FRAME_OCTETS];
            frame[16] = self.enc.poll_octet();
            self.framer.emit_frame(&mut frame);
            chunk.copy_from_slice(&frame);
        }
    }

    /// Takes received line octets: deframer, then HDLC on TS16.
    fn take_rx(&mut self, rx: &[u8]) {
        for &o in rx {
            let ts16 = self.deframer.handle_octet(o).map(|f| f[16]);
            if let Some(t) = ts16
                && let Some(frame) = self.dec.handle_octet(t)
            {
                self.received.push(frame.to_vec());
            }
        }
    }

    fn alignment_losses(&self) -> u64 {
        let s = self.deframer.stats();
        s.alignment_losses + s.crc4_alignment_losses
    }
}

/// Impairments, per mille of packets, per direction.
#[derive(Clone, Copy)]
struct Impair {
    drop: u64,
    dup: u64,
    reorder: u64,
}

/// A UDP relay between the two ports: one socket faces each.
struct Shim {
    sock: [UdpSocket; 2],
    peer: [SocketAddr; 2],
    rng: Rng,
    impair: Impair,
    /// Datagrams received from side i, and forwarded to side i.
    from: [u64; 2],
    to: [u64; 2],
    dropped: [u64; 2],
    /// Held for reordering: released after the next datagram.
    held: [Option<Vec<u8>>; 2],
}

impl Shim {
    fn new(seed: u64, impair: Impair) -> Shim {
        let bind = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let unset: SocketAddr = ([127, 0, 0, 1], 9).into();
        Shim {
            sock: [bind(), bind()],
            peer: [unset, unset],
            rng: Rng(seed),
            impair,
            from: [0; 2],
            to: [0; 2],
            dropped: [0; 2],
            held: [None, None],
        }
    }

    fn addr(&self, side: usize) -> SocketAddr {
        self.sock[side].local_addr().unwrap()
    }

    /// Relays everything side `i` sent (it said `sent_total` so far) to
    /// the other side, impaired.
    fn relay(&mut self, i: usize, sent_total: u64) {
        let mut buf = [0u8; 2048];
        let mut polls = 0;
        while self.from[i] < sent_total {
            match self.sock[i].recv_from(&mut buf) {
                Ok((n, _)) => {
                    self.from[i] += 1;
                    self.impaired_send(i, &buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    polls += 1;
                    assert!(polls < 100, "shim: datagrams from side {i} never came");
                    wait_readable(&self.sock[i]);
                }
                Err(e) => panic!("shim recv: {e}"),
            }
        }
    }

    fn impaired_send(&mut self, i: usize, d: &[u8]) {
        let o = 1 - i;
        if self.rng.chance(self.impair.drop) {
            self.dropped[i] += 1;
            return;
        }
        if self.held[i].is_none() && self.rng.chance(self.impair.reorder) {
            self.held[i] = Some(d.to_vec());
            return;
        }
        self.send(o, d);
        if self.rng.chance(self.impair.dup) {
            self.send(o, d);
        }
        if let Some(h) = self.held[i].take() {
            self.send(o, &h);
        }
    }

    fn send(&mut self, o: usize, d: &[u8]) {
        self.sock[o].send_to(d, self.peer[o]).unwrap();
        self.to[o] += 1;
    }
}

fn wait_readable(fd: &impl AsFd) {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(2000u16)).unwrap();
    assert_eq!(n, 1, "no datagram within the 2 s bound");
}

/// Reads at `port` until it has seen `expected` datagrams from the shim.
fn receive(port: &mut SatopPort, end: &mut LineEnd, now: u64, expected: u64) {
    let seen = |p: &SatopPort| {
        let s = p.stats();
        s.packets_received + s.malformed_total() + s.stray
    };
    let mut polls = 0;
    loop {
        port.recv_ready(now, |rx, tx| {
            end.take_rx(rx);
            end.fill_tx(tx);
        })
        .unwrap();
        if seen(port) >= expected {
            return;
        }
        polls += 1;
        assert!(polls < 100, "port never got its datagrams");
        wait_readable(port);
    }
}

fn timeout(port: &mut SatopPort, end: &mut LineEnd, now: u64) {
    if now >= port.poll_timeout() {
        port.handle_timeout(now, |rx, tx| {
            end.take_rx(rx);
            end.fill_tx(tx);
        })
        .unwrap();
    }
}

/// Side 0 ("a") is the clock master (internal timing, like the exchange's
/// side of a SAToP gateway); side 1 ("b") is loop-timed, as tdmgw is
/// against a real far end.
struct Rig {
    ports: [SatopPort; 2],
    ends: [LineEnd; 2],
    shim: Shim,
    now: u64,
}

impl Rig {
    fn new(crc4: bool, seed: u64, impair: Impair, frames: usize) -> Rig {
        Rig::with_params(crc4, seed, impair, frames, |_| {})
    }

    fn with_params(
        crc4: bool,
        seed: u64,
        impair: Impair,
        frames: usize,
        tweak: fn(&mut SatopParams),
    ) -> Rig {
        let mut shim = Shim::new(seed, impair);
        let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
        let open = |side: usize, timing: Timing| {
            let mut p = SatopParams::new(lo, shim.addr(side));
            p.timing = timing;
            p.initial_seq = 65000 + side as u16 * 300; // both cross the wrap
            tweak(&mut p);
            SatopPort::open(p, 0).unwrap()
        };
        let ports = [open(0, Timing::Internal), open(1, Timing::Loop)];
        shim.peer = [ports[0].local_addr(), ports[1].local_addr()];
        Rig {
            ports,
            ends: [
                LineEnd::new(crc4, 0xA0, frames),
                LineEnd::new(crc4, 0xB0, frames),
            ],
            shim,
            now: 0,
        }
    }

    /// One millisecond: a's clock ticks, the shim relays, b answers in
    /// loop timing, the shim relays back, a takes it in.
    fn step(&mut self) {
        self.now += MS;
        let now = self.now;
        let [a, b] = &mut self.ports;
        let [ea, eb] = &mut self.ends;
        timeout(a, ea, now);
        self.shim.relay(0, a.stats().packets_sent);
        self.shim.relay(0, a.stats().packets_sent);
        receive(b, eb, now, self.shim.to[1]);
        timeout(b, eb, now);
        self.shim.relay(1, b.stats().packets_sent);
        receive(a, ea, now, self.shim.to[0]);
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }
}

fn check_intact(rig: &Rig, lossy: bool) {
    for (i, end) in rig.ends.iter().enumerate() {
        let other = &rig.ends[1 - i];
        assert_eq!(
            end.deframer.state(),
            AlignState::InFrame,
            "side {i} aligned at the end"
        );
        // Every frame that crossed is one that was sent, in order, intact.
        let mut it = other.sent.iter();
        for f in &end.received {
            assert!(
                it.any(|s| s == f),
                "side {i} got a frame that was not sent (or out of order): {f:02x?}"
            );
        }
        if !lossy {
            let (got, sent) = (end.received.len(), other.sent.len());
            let first_diff = end
                .received
                .iter()
                .zip(&other.sent)
                .position(|(r, s)| r != s);
            assert!(
                got == sent && first_diff.is_none(),
                "side {i}: {got} of {sent} frames, first difference at {first_diff:?}"
            );
            assert!(other.to_send.is_empty(), "side {i}: the run was too short");
        }
    }
}

fn clean_run(crc4: bool, tweak: fn(&mut SatopParams)) {
    let impair = Impair {
        drop: 0,
        dup: 30,
        reorder: 50,
    };
    let mut rig = Rig::with_params(crc4, 0x5A70_0001 + u64::from(crc4), impair, 200, tweak);
    rig.run(1200);
    // Let the last frames through with nothing new loaded.
    check_intact(&rig, false);
    for (i, end) in rig.ends.iter().enumerate() {
        // Aligned once, when the stream started, and never lost: reordering
        // and duplication are inside what the playout buffer absorbs.
        assert_eq!(end.deframer.stats().alignments, 1, "side {i}");
        assert_eq!(end.alignment_losses(), 0, "side {i}");
        if crc4 {
            assert_eq!(end.deframer.stats().crc4_errors, 0, "side {i}");
            assert!(end.deframer.stats().crc4_blocks > 1000, "side {i}");
        }
        let s = rig.ports[i].stats();
        assert_eq!(
            s.playout.missing + s.playout.late + s.playout.overruns,
            0,
            "side {i}: {s:?}"
        );
        assert!(
            s.playout.duplicates > 0 && s.playout.reordered > 0,
            "side {i}: {s:?}"
        );
        assert!(!rig.ports[i].los());
    }
    // Loop timing: b sent exactly one packet per packet it played.
    let b = rig.ports[1].stats();
    assert_eq!(
        b.packets_sent,
        b.playout.played_data + b.playout.played_idle
    );
}

#[test]
fn e1_over_satop_with_reordering_and_duplicates_no_crc4() {
    clean_run(false, |_| {});
}

#[test]
fn e1_over_satop_with_reordering_and_duplicates_crc4() {
    clean_run(true, |_| {});
}

/// RTP header in front of the control word, 4 frames (500 µs) per packet:
/// two packets per step, LEN = 0 (4 + 12 + 128 > 64).
#[test]
fn e1_over_satop_with_rtp_and_128_octet_payload() {
    clean_run(true, |p| {
        p.rtp_header = true;
        p.payload_octets = 128;
    });
}

fn lossy_run(crc4: bool) {
    let impair = Impair {
        drop: 8,
        dup: 20,
        reorder: 40,
    };
    let mut rig = Rig::new(crc4, 0x5A70_0100 + u64::from(crc4), impair, 300);
    rig.run(1500);
    check_intact(&rig, true);
    for (i, end) in rig.ends.iter().enumerate() {
        let dropped = rig.shim.dropped[1 - i];
        assert!(
            dropped > 3,
            "the seed should drop some packets towards side {i}"
        );
        // Each lost packet plays 1 ms of AIS: at most one alignment loss
        // each, regained every time.
        assert!(end.alignment_losses() <= dropped, "side {i}");
        assert!(end.alignment_losses() >= 1, "side {i}");
        let sent = rig.ends[1 - i].sent.len();
        // A lost packet is 8 frames of AIS: it kills the HDLC frame it
        // hits, and alignment is back within a few frames.
        assert!(
            end.received.len() as u64 + 2 * dropped >= sent as u64,
            "side {i}: {} of {sent} frames crossed",
            end.received.len()
        );
        let s = rig.ports[i].stats();
        eprintln!(
            "crc4={crc4} side {i}: {} of {sent} HDLC frames, {dropped} packets dropped, {} alignment losses, missing {} late {} dup {} reordered {}",
            end.received.len(),
            end.alignment_losses(),
            s.playout.missing,
            s.playout.late,
            s.playout.duplicates,
            s.playout.reordered
        );
        assert!(s.playout.missing >= 1, "side {i}: {s:?}");
    }
}

#[test]
fn e1_over_satop_with_loss_no_crc4() {
    lossy_run(false);
}

#[test]
fn e1_over_satop_with_loss_crc4() {
    lossy_run(true);
}

#[test]
fn los_l_and_r_cross_the_pseudowire() {
    let none = Impair {
        drop: 0,
        dup: 0,
        reorder: 0,
    };
    let mut rig = Rig::new(false, 7, none, 0);
    rig.run(60);
    for p in &mut rig.ports {
        while p.poll_event().is_some() {}
        assert!(!p.los());
    }
    // Our line side (a) goes into AIS: a sets L, b plays all ones and
    // reports the far end's fault.
    rig.ports[0].set_local_fault(true);
    rig.run(5);
    let ev: Vec<_> = std::iter::from_fn(|| rig.ports[1].poll_event()).collect();
    assert_eq!(ev, [SatopEvent::RemoteFault(true)]);
    assert!(rig.ports[1].stats().playout.played_l_bit > 0);
    rig.ports[0].set_local_fault(false);
    rig.run(5);
    let ev: Vec<_> = std::iter::from_fn(|| rig.ports[1].poll_event()).collect();
    assert_eq!(ev, [SatopEvent::RemoteFault(false)]);

    // a goes silent (its clock stops): b free-runs, enters LOS, sets R.
    let [a, b] = &mut rig.ports;
    let [_, eb] = &mut rig.ends;
    let mut now = rig.now;
    for _ in 0..20 {
        now += MS;
        timeout(b, eb, now);
    }
    assert!(b.los());
    assert_eq!(b.poll_event(), Some(SatopEvent::Los(true)));
    rig.shim.relay(1, b.stats().packets_sent);
    let mut ea = LineEnd::new(false, 0, 0);
    receive(a, &mut ea, now, rig.shim.to[0]);
    let ev: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(ev.contains(&SatopEvent::RemoteLoss(true)), "{ev:?}");
}

#[test]
fn stray_datagrams_are_dropped_and_counted() {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let far = UdpSocket::bind(lo).unwrap();
    let mut port = SatopPort::open(SatopParams::new(lo, far.local_addr().unwrap()), 0).unwrap();
    let stranger = UdpSocket::bind(lo).unwrap();
    let mut d = vec![0u8, 0, 0, 1];
    d.extend([0x55; 256]);
    stranger.send_to(&d, port.local_addr()).unwrap();
    let mut end = LineEnd::new(false, 0, 0);
    receive(&mut port, &mut end, 0, 1);
    let s = port.stats();
    assert_eq!((s.stray, s.packets_received), (1, 0));
}
