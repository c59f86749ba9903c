//! Media engine capacity: how many full-duplex B-channels one core carries
//! in real time, and the media thread's CPU per RTP packet against a bare
//! `recv` + `send` loop over the same number of sockets, in the same run.
//!
//! Set-up: `N` channels (30 per span) on one `MediaLoop`, every channel
//! connected at 20 ms ptime, PCMA, DTMF detection and the jitter buffer on.
//! Channel 2i sends to channel 2i+1's RTP socket and back, over real UDP on
//! 127.0.0.1, so every channel sends and receives 50 packets/s. A simulated
//! E1 source ([`SimE1`], driven synchronously: 8 frames per span per turn)
//! clocks the TDM side with speech-like A-law from a table. The loop runs
//! flat out; its thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) per simulated
//! second gives the channels one core carries in real time:
//! `N × simulated s / CPU s`.
//!
//! The bare loop: the same number of sockets, paired the same way, one mio
//! poll per simulated ms; it reads every datagram and sends each socket's
//! 172-octet packet every 20 ms (staggered as the engine's are).
//!
//! Both loops run five times, alternating; each one's least disturbed
//! round is reported (the machine may be shared), and the median of the
//! rounds' own ratios.
//!
//! The engine binds its ports from a base, as in production, so it
//! connects each socket to its latched source (see `engine::Peer`); the
//! bare loop's sockets are unconnected (`recv_from` + `send_to`), unless
//! `BARE_CONNECT=1` connects them too (a stricter baseline).
//!
//! Run: `cargo bench --bench media` (`MEDIA_BENCH_CHANNELS=N` to change N,
//! default 1020; `MEDIA_BENCH_ROUNDS=R`, default 5; `MEDIA_BENCH_MS`,
//! simulated ms per round, default 5000;
//! `MEDIA_BENCH_ONLY=engine` or `bare` runs one loop alone, for a profiler).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::time::{ClockId, clock_gettime};
use tdmgw::line::g711;
use tdmgw::media::control::{Codec, Command, ConnectParams};
use tdmgw::media::engine::{EngineParams, MediaLoop, SpanParams};
use tdmgw::media::tdm::{E1Frame, FrameSource, SimE1};

const WARMUP_MS: u64 = 1000;

/// Simulated ms measured per round (`MEDIA_BENCH_MS`, default 5000).
fn measure_ms() -> u64 {
    std::env::var("MEDIA_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Speech-like A-law: two drifting formant-ish tones under a syllabic
/// envelope with pauses, precomputed as whole frames (each timeslot at
/// its own point of the signal) so the source costs the media thread what
/// a driver's copy does: 32 octets per frame, read in sequence.
struct Speech {
    /// `FRAMES` frames of 32 timeslots.
    frames: Vec<E1Frame>,
    /// Per span: where in the frames the span starts.
    offset: Vec<u64>,
}

/// 1 s of frames (256 KiB).
const FRAMES: u64 = 8000;

/// 4 s of audio (a power of two of samples, so indexing is a mask).
const SPEECH_LEN: usize = 1 << 15;

impl Speech {
    fn new(spans: usize) -> Self {
        let table: Vec<u8> = (0..SPEECH_LEN)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let env = (t * 2.0 * std::f64::consts::PI * 3.0).sin().max(0.0);
                let f1 = 300.0 + 200.0 * (t * 0.7).sin();
                let f2 = 1100.0 + 500.0 * (t * 1.3).cos();
                let x = env
                    * (3000.0 * (t * f1 * std::f64::consts::TAU).sin()
                        + 1500.0 * (t * f2 * std::f64::consts::TAU).sin());
                g711::linear_to_alaw(x as i16)
            })
            .collect();
        let mask = SPEECH_LEN as u64 - 1;
        let frames = (0..FRAMES)
            .map(|f| core::array::from_fn(|ts| table[((f + ts as u64 * 977) & mask) as usize]))
            .collect();
        let offset = (0..spans).map(|s| s as u64 * 1_009).collect();
        Speech { frames, offset }
    }
}

impl FrameSource for Speech {
    fn rx_frame(&mut self, span: usize, frame_no: u64, rx: &mut E1Frame) {
        *rx = self.frames[((frame_no + self.offset[span]) % FRAMES) as usize];
    }
    fn tx_frame(&mut self, _span: usize, _frame_no: u64, tx: &E1Frame) {
        black_box(tx);
    }
}

/// This thread's user and system CPU time (getrusage RUSAGE_THREAD).
fn thread_user_sys() -> (Duration, Duration) {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_THREAD is the
    // calling thread.
    let ru = unsafe {
        let mut ru: nix::libc::rusage = std::mem::zeroed();
        nix::libc::getrusage(nix::libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let d = |t: nix::libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (d(ru.ru_utime), d(ru.ru_stime))
}

struct Measured {
    /// User-space share of `cpu`.
    user: Duration,
    cpu: Duration,
    packets_sent: u64,
    packets_received: u64,
}

fn engine_run(spans: usize) -> (Measured, usize) {
    // Deterministic ports as in production (a port base; the engine
    // connects a socket to its latched source only when its port was
    // bound explicitly): the first base whose whole plan binds.
    let params = EngineParams::new(
        (1..=spans as u16).map(SpanParams::pri).collect(),
        "127.0.0.1".parse().unwrap(),
        0,
        1,
    );
    let bases = (20_000u16..)
        .step_by(3_000)
        .take_while(|&base| base as usize + 64 * spans < 65_000);
    let (mut lp, mut ctl) = MediaLoop::bind_first_free(&params, bases)
        .expect("a free port range for the engine's sockets");
    let n = lp.core().channel_count();
    let addrs: Vec<SocketAddr> = (0..n).map(|i| lp.rtp_addr(i).unwrap().0).collect();
    let mut port = SimE1::manual(spans, 8, Speech::new(spans));
    let ids = ctl.stats.ids.clone();
    let mut measured = None;
    let (mut cpu0, mut out0, mut in0) = (Duration::ZERO, 0, 0);
    let mut user0 = Duration::ZERO;
    for ms in 0..WARMUP_MS + measure_ms() {
        // Connect one twentieth of the channels per ms so the 20 ms
        // packets are spread evenly.
        if ms < 20 {
            for i in (ms as usize..n).step_by(20) {
                let peer = addrs[i ^ 1];
                let p = ConnectParams::new(peer, Codec::Pcma);
                ctl.commands
                    .try_push(Command::Connect {
                        ch: ids[i],
                        params: p,
                    })
                    .unwrap();
            }
        }
        if ms == WARMUP_MS {
            cpu0 = thread_cpu();
            user0 = thread_user_sys().0;
            out0 = lp.counters.datagrams_out;
            in0 = lp.counters.datagrams_in;
        }
        lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
        while ctl.events.try_pop().is_some() {}
    }
    let cpu = thread_cpu() - cpu0;
    let user = thread_user_sys().0 - user0;
    let c = lp.counters;
    assert_eq!(c.send_errors, 0, "send errors");
    if measured.is_none() {
        measured = Some(Measured {
            user,
            cpu,
            packets_sent: c.datagrams_out - out0,
            packets_received: c.datagrams_in - in0,
        });
    }
    let concealed: u64 = ctl
        .stats
        .stats
        .iter()
        .map(|s| {
            s.samples_concealed
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    println!(
        "  engine: concealed samples over the run {} (start-up only expected), rtp errors {}",
        concealed,
        ctl.stats
            .stats
            .iter()
            .flat_map(|s| s.rtp_errors.iter())
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<u64>()
    );
    (measured.unwrap(), n)
}

fn bare_run(n: usize) -> Measured {
    let mut poll = Poll::new().unwrap();
    let mut socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    for (i, s) in socks.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
    }
    let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let connected = std::env::var("BARE_CONNECT").is_ok();
    if connected {
        for (i, s) in socks.iter().enumerate() {
            s.connect(addrs[i ^ 1]).unwrap();
        }
    }
    let mut events = Events::with_capacity(n + 1);
    let mut buf = [0u8; 2048];
    let pkt = [0x80u8; 172];
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut cpu0, mut sent0, mut recv0) = (Duration::ZERO, 0, 0);
    let mut user0 = Duration::ZERO;
    for ms in 0..WARMUP_MS + measure_ms() {
        if ms == WARMUP_MS {
            cpu0 = thread_cpu();
            user0 = thread_user_sys().0;
            sent0 = sent;
            recv0 = received;
        }
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        for ev in events.iter() {
            let s = &socks[ev.token().0];
            while let Ok((len, from)) = s.recv_from(&mut buf) {
                black_box((len, from));
                received += 1;
            }
        }
        for i in (ms as usize % 20..n).step_by(20) {
            if connected {
                socks[i].send(&pkt).unwrap();
            } else {
                socks[i].send_to(&pkt, addrs[i ^ 1]).unwrap();
            }
            sent += 1;
        }
    }
    Measured {
        user: thread_user_sys().0 - user0,
        cpu: thread_cpu() - cpu0,
        packets_sent: sent - sent0,
        packets_received: received - recv0,
    }
}

fn main() {
    let n: usize = std::env::var("MEDIA_BENCH_CHANNELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1020);
    let spans = n.div_ceil(30).max(1);
    let sim_s = measure_ms() as f64 / 1000.0;
    println!(
        "media engine bench: {spans} spans, {} channels, 20 ms PCMA, DTMF detection + jitter buffer on, {sim_s} simulated s",
        spans * 30
    );
    // Alternate the two loops and keep each one's best round: the machine
    // is shared, and the least disturbed round is the closest to its cost.
    let rounds: usize = std::env::var("MEDIA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let per_pkt = |m: &Measured| m.cpu.as_secs_f64() / m.packets_sent as f64 * 1e6;
    let mut best_e: Option<Measured> = None;
    let mut best_b: Option<Measured> = None;
    let mut n = 0;
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // `MEDIA_BENCH_ONLY=engine|bare` runs one loop only (for a profiler).
        let only = std::env::var("MEDIA_BENCH_ONLY").unwrap_or_default();
        if only == "bare" {
            let b = bare_run(spans * 30);
            println!("  round {round}: bare {:.2} µs/packet", per_pkt(&b));
            continue;
        }
        let (e, channels) = engine_run(spans);
        n = channels;
        if only == "engine" {
            println!("  round {round}: engine {:.2} µs/packet", per_pkt(&e));
            continue;
        }
        let b = bare_run(n);
        println!(
            "  round {round}: engine {:.3} s CPU ({:.3} user), {} packets sent, {} received, {:.2} µs/packet; bare {:.3} s CPU ({:.3} user), {} sent, {} received, {:.2} µs/packet",
            e.cpu.as_secs_f64(),
            e.user.as_secs_f64(),
            e.packets_sent,
            e.packets_received,
            per_pkt(&e),
            b.cpu.as_secs_f64(),
            b.user.as_secs_f64(),
            b.packets_sent,
            b.packets_received,
            per_pkt(&b)
        );
        ratios.push(per_pkt(&e) / per_pkt(&b));
        if best_e.as_ref().is_none_or(|x| e.cpu < x.cpu) {
            best_e = Some(e);
        }
        if best_b.as_ref().is_none_or(|x| b.cpu < x.cpu) {
            best_b = Some(b);
        }
    }
    let (Some(e), Some(b)) = (best_e, best_b) else {
        return;
    };
    let capacity = n as f64 * sim_s / e.cpu.as_secs_f64();
    println!(
        "  best engine: {:.3} s CPU for {sim_s} s of {n} channels: {:.2} µs CPU per packet",
        e.cpu.as_secs_f64(),
        per_pkt(&e)
    );
    println!(
        "  best bare recv+send: {:.3} s CPU: {:.2} µs CPU per packet",
        b.cpu.as_secs_f64(),
        per_pkt(&b)
    );
    println!("  full-duplex channels one core carries in real time: {capacity:.0}");
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  media thread CPU per RTP packet / bare recv+send: {:.2} (best of each); median of rounds {:.2}; per round {:.2?}",
        per_pkt(&e) / per_pkt(&b),
        sorted[sorted.len() / 2],
        ratios
    );
}
