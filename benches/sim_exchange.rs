//! The simulated exchange's line side: the cost of one E1 frame with all
//! 30 B-channels in a call, playing the test signal and checking its echo
//! (and running the DTMF receiver on each), against a far end that echoes
//! all 30: both line sides back to back, one frame each way per step.
//!
//! `cargo bench --bench sim_exchange` prints frames per second for the pair
//! and that ÷ 8000 (how many real-time exchange+peer spans one core runs).

use std::hint::black_box;
use std::time::Instant;

use tdmgw::line::e1::FRAME_OCTETS;
use tdmgw::line::span::SpanConfig;
use tdmgw::sim::exchange_audio::{AudioMode, Digits};
use tdmgw::sim::exchange_line::{ExchangeLine, LineCommand, LineReport};

fn main() {
    let (mut a, mut ra) = ExchangeLine::new(SpanConfig::default());
    let (mut b, mut rb) = ExchangeLine::new(SpanConfig::default());
    for ts in (1..=31u8).filter(|&t| t != 16) {
        for (r, mode) in [(&mut ra, AudioMode::Test), (&mut rb, AudioMode::Echo)] {
            let cmd = LineCommand::Start {
                ts,
                tag: u32::from(ts),
                mode,
                digits: Digits::default(),
                dtmf_delay_frames: 0,
            };
            while r.commands.try_push(cmd).is_err() {}
        }
    }
    let mut fa = [0xFFu8; FRAME_OCTETS];
    let mut fb = [0xFFu8; FRAME_OCTETS];
    let frames = 400_000u64;
    let start = Instant::now();
    for _ in 0..frames {
        let (ina, inb) = (fb, fa);
        a.exchange(&ina, &mut fa);
        b.exchange(&inb, &mut fb);
        while ra.reports.try_pop().is_some() {}
        while rb.reports.try_pop().is_some() {}
    }
    let secs = start.elapsed().as_secs_f64();
    for ts in (1..=31u8).filter(|&t| t != 16) {
        while ra.commands.try_push(LineCommand::Stop { ts }).is_err() {}
    }
    a.exchange(&fb.clone(), &mut fa);
    let mut received = 0;
    while let Some(r) = ra.reports.try_pop() {
        if let LineReport::Audio { stats, .. } = r {
            received += stats.blocks_received;
        }
    }
    assert!(received > 0, "the echo came back");
    let fps = frames as f64 / secs;
    println!(
        "sim exchange line side, 30 channels test+check vs 30 echoing: {:.0} frame pairs/s = {:.1}x real time ({} blocks checked)",
        fps,
        fps / 8000.0,
        black_box(received)
    );
}
