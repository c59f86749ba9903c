//! E1 line layer throughput: how many spans one core frames, deframes and
//! HDLC-codes in real time. One span = both directions: per 125 µs frame,
//! each direction runs the HDLC encoder for TS16, the G.704 framer, the
//! G.706 deframer over the line octets and the HDLC decoder on TS16.
//!
//! The second figure is the same through [`RawSpan`], which adds the alarm
//! monitor (per octet) and the G.826 counters (per frame) to that work.
//!
//! `cargo bench --bench line` prints frames per second and that ÷ 8000.

use std::hint::black_box;
use std::time::Instant;

use tdmgw::line::e1::{E1Deframer, E1Framer, FRAME_OCTETS};
use tdmgw::line::hdlc::{HdlcDecoder, HdlcEncoder, MAX_FRAME_OCTETS};
use tdmgw::line::span::{RawSpan, SpanConfig};

struct Direction {
    enc: HdlcEncoder,
    framer: E1Framer,
    deframer: E1Deframer,
    dec: HdlcDecoder,
    frame: [u8; FRAME_OCTETS],
    received: u64,
}

impl Direction {
    fn new() -> Self {
        Direction {
            enc: HdlcEncoder::new(),
            framer: E1Framer::with_crc4(true),
            deframer: E1Deframer::new(),
            dec: HdlcDecoder::new(),
            frame: [0xD5; FRAME_OCTETS],
            received: 0,
        }
    }

    fn one_frame(&mut self, payload: &[u8]) {
        if self.enc.can_load() {
            // A D-channel kept busy: one Q.931-sized I-frame after another.
            let _ = self.enc.load(payload);
        }
        self.frame[16] = self.enc.poll_octet();
        self.framer.emit_frame(&mut self.frame);
        let mut ts16 = None;
        for &o in &self.frame {
            if let Some(f) = self.deframer.handle_octet(o) {
                ts16 = Some(f[16]);
            }
        }
        if let Some(o) = ts16
            && self.dec.handle_octet(o).is_some()
        {
            self.received += 1;
        }
    }
}

/// One span end: sends to the other's receive, both through `RawSpan`.
fn span_frame(tx: &mut RawSpan, rx: &mut RawSpan, payload: &[u8], buf: &mut [u8]) -> u64 {
    // Keep the D-channel busy; a full queue is fine.
    let _ = tx.send_dchannel_frame(payload);
    let mut f = [0xD5; FRAME_OCTETS];
    tx.emit_frame(&mut f);
    let mut b_octets = 0u64;
    rx.handle_rx(&f, |g| b_octets += u64::from(g[5]));
    let mut got = 0;
    while rx.poll_dchannel_frame(buf).is_some() {
        got += 1;
    }
    black_box(b_octets);
    got
}

fn bench_span(payload: &[u8], frames: u64) {
    let mut a = RawSpan::new(SpanConfig::default());
    let mut b = RawSpan::new(SpanConfig::default());
    let mut buf = [0u8; MAX_FRAME_OCTETS];
    let mut received = 0;
    for _ in 0..10_000 {
        span_frame(&mut a, &mut b, payload, &mut buf);
        span_frame(&mut b, &mut a, payload, &mut buf);
    }
    let start = Instant::now();
    for _ in 0..frames {
        received += span_frame(&mut a, &mut b, black_box(payload), &mut buf);
        received += span_frame(&mut b, &mut a, black_box(payload), &mut buf);
    }
    let secs = start.elapsed().as_secs_f64();
    let fps = frames as f64 / secs;
    assert!(received > 0, "no D-channel frames crossed");
    assert!(a.alarms().is_empty() && b.alarms().is_empty());
    println!(
        "span: {frames} frames per direction in {secs:.3} s through RawSpan (CRC-4, alarms, G.826): {fps:.0} span-frames/s = {:.1} E1 spans per core (D-channel frames received {received})",
        fps / 8000.0
    );
}

fn main() {
    let payload: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
    let mut ab = Direction::new();
    let mut ba = Direction::new();
    let frames: u64 = 2_000_000;
    // Warm up, then measure.
    for _ in 0..10_000 {
        ab.one_frame(&payload);
        ba.one_frame(&payload);
    }
    let start = Instant::now();
    for _ in 0..frames {
        ab.one_frame(black_box(&payload));
        ba.one_frame(black_box(&payload));
    }
    let secs = start.elapsed().as_secs_f64();
    let fps = frames as f64 / secs;
    assert!(ab.received > 0 && ba.received > 0, "no HDLC frames crossed");
    println!(
        "line: {frames} frames per direction in {secs:.3} s: {fps:.0} span-frames/s (both directions) = {:.1} E1 spans per core (HDLC frames received {}+{})",
        fps / 8000.0,
        ab.received,
        ba.received
    );
    bench_span(&payload, frames);
}
