//! Per-channel cost of the media DSP pieces on the media thread, per E1 tick
//! (8 samples) or per packet, and the channels one core could carry for each
//! piece alone. Run: `cargo bench --bench media_dsp`.

use std::hint::black_box;
use std::time::Instant;
use tdmgw::media::dtmf::DtmfDetector;
use tdmgw::media::plc::Plc;
use tdmgw::media::rfc4733::{EventReceiver, EventSender, EventSenderConfig};
use tdmgw::media::rtcp::compound::{Compound, CompoundWriter};
use tdmgw::media::rtcp::rr::ReportBlock;
use tdmgw::media::rtcp::session::{RtcpConfig, RtcpSession};

/// Ticks per second of one channel (one tick = 1 ms = 8 samples).
const TICKS_PER_S: f64 = 1000.0;

fn report(name: &str, per_s: f64, unit: &str, per_channel_s: f64) {
    println!(
        "{name:<44} {:>8.1} ns/{unit}  ({:>9.0} channels/core for this alone)",
        1e9 / per_s,
        per_s / per_channel_s
    );
}

fn plc(lossy: bool) {
    const TICKS: usize = 2_000_000;
    let mut p = Plc::new();
    let audio: Vec<i16> = (0..8000).map(|i| ((i * 97) % 4000) as i16 - 2000).collect();
    let mut buf = [0i16; 8];
    let t = Instant::now();
    for k in 0..TICKS {
        let off = (k * 8) % 8000;
        buf.copy_from_slice(&audio[off..off + 8]);
        // Lossy: 20 ms lost out of every 100 ms (20 % loss).
        let lost = lossy && (k % 100) < 20;
        p.process(black_box(&mut buf), &[lost; 8]);
    }
    let s = t.elapsed().as_secs_f64();
    let name = if lossy {
        "plc: process per tick, 20 % loss"
    } else {
        "plc: process per tick, no loss"
    };
    report(name, TICKS as f64 / s, "tick", TICKS_PER_S);
    black_box(p.counters);
}

fn events() {
    const TICKS: u64 = 2_000_000;
    let mut rx = EventReceiver::default();
    let mut tx = EventSender::new(EventSenderConfig::default(), 0);
    let mut buf = [0i16; 8];
    let t = Instant::now();
    for k in 0..TICKS {
        let now = k * 8;
        // A digit every 500 ms, 100 ms long.
        match k % 500 {
            50 => {
                tx.start(now, b'5', now - 320);
            }
            130 => tx.end(now, 800),
            _ => {}
        }
        if let Some(p) = tx.poll_packet(now) {
            rx.handle_packet(now, p.timestamp, &p.payload).ok();
        }
        rx.fill(now, black_box(&mut buf));
        while rx.poll_event().is_some() {}
    }
    let s = t.elapsed().as_secs_f64();
    report(
        "rfc4733: sender + receiver + fill per tick",
        TICKS as f64 / s,
        "tick",
        TICKS_PER_S,
    );
}

fn rtcp() {
    const N: usize = 1_000_000;
    let mut buf = [0u8; 256];
    let mut w = CompoundWriter::new(&mut buf);
    w.rr(1, &[ReportBlock::default()])
        .unwrap()
        .sdes_cname(1, b"core@192.0.2.7")
        .unwrap();
    let len = w.len();
    let mut s = RtcpSession::new(RtcpConfig::default(), 2, b"gw", 0);
    let t = Instant::now();
    for i in 0..N {
        s.handle_rtcp(i as u64, i as u64, black_box(&buf[..len]))
            .ok();
        black_box(Compound::parse(&buf[..len]).is_ok());
    }
    let secs = t.elapsed().as_secs_f64();
    // One RTCP datagram per channel every ~4 s.
    report(
        "rtcp: handle_rtcp (RR+SDES) + parse",
        N as f64 / secs,
        "datagram",
        0.25,
    );
}

/// The DTMF detector on speech-like audio (two drifting tones under a
/// syllabic envelope: windows inside talkspurts are analysed), per 1 ms of
/// samples.
fn dtmf() {
    const MS: usize = 2_000_000;
    let audio: Vec<i16> = (0..8000 * 4)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let env = (t * std::f64::consts::TAU * 3.0).sin().max(0.0);
            let f1 = 300.0 + 200.0 * (t * 0.7).sin();
            let f2 = 1100.0 + 500.0 * (t * 1.3).cos();
            (env * (3000.0 * (t * f1 * std::f64::consts::TAU).sin()
                + 1500.0 * (t * f2 * std::f64::consts::TAU).sin())) as i16
        })
        .collect();
    let mut d = DtmfDetector::new();
    let t = Instant::now();
    for k in 0..MS {
        let off = (k * 8) % audio.len();
        let mut fed = 0;
        while fed < 8 {
            fed += d.handle_samples(black_box(&audio[off + fed..off + 8]));
            while d.poll_event().is_some() {}
        }
    }
    let s = t.elapsed().as_secs_f64();
    report(
        "dtmf: detector per ms, speech-like",
        MS as f64 / s,
        "ms",
        1000.0,
    );
}

fn main() {
    dtmf();
    plc(false);
    plc(true);
    events();
    rtcp();
}
