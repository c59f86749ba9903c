//! The simulated exchange's line side allocates nothing after
//! construction: two `ExchangeLine`s on the two ends of a pair wire, one
//! playing the test signal with DTMF and checking it, the other echoing,
//! D-channel frames crossing both ways, run for 3 simulated seconds under a
//! counting global allocator armed on this test's thread only.

use tdmgw::line::driver::pair::PairConfig;
use tdmgw::line::span::SpanConfig;
use tdmgw::sim::exchange_audio::{AudioMode, Digits};
use tdmgw::sim::exchange_line::{DFrame, ExchangeLine, LineCommand, LineReport};
use tdmgw::sim::pair_wire;

mod common;
use common::counting_alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn line_side_allocates_nothing_after_construction() {
    let (mut wire, mut pa, mut pb) = pair_wire(PairConfig::default());
    let (mut la, mut ra) = ExchangeLine::new(SpanConfig::default());
    let (mut lb, mut rb) = ExchangeLine::new(SpanConfig::default());
    let sabme = DFrame::new(&[0x00, 0x01, 0x7F]).unwrap();
    let mut dframes_b = 0;
    let mut digits = 0;
    let mut audio = None;

    counting_alloc::track(true);
    for ms in 0..3000u32 {
        for _ in 0..8 {
            wire.run_period();
            pa.poll(|rx, tx| la.exchange(rx, tx));
            pb.poll(|rx, tx| lb.exchange(rx, tx));
        }
        match ms {
            100 => {
                for (r, mode) in [(&mut ra, AudioMode::Test), (&mut rb, AudioMode::Echo)] {
                    let cmd = LineCommand::Start {
                        ts: 7,
                        tag: 99,
                        mode,
                        digits: Digits::new("59"),
                        dtmf_delay_frames: 800,
                    };
                    r.commands.try_push(cmd).unwrap();
                }
            }
            2900 => ra.commands.try_push(LineCommand::Stop { ts: 7 }).unwrap(),
            _ => {}
        }
        if ms % 50 == 0 {
            let _ = ra.dframes_out.try_push(sabme);
        }
        while rb.dframes_in.try_pop().is_some() {
            dframes_b += 1;
        }
        while ra.dframes_in.try_pop().is_some() {}
        while let Some(r) = ra.reports.try_pop() {
            match r {
                LineReport::Dtmf { .. } => digits += 1,
                LineReport::Audio { stats, .. } => audio = Some(stats),
                _ => {}
            }
        }
        while rb.reports.try_pop().is_some() {}
    }
    counting_alloc::track(false);

    assert_eq!(
        counting_alloc::counts(),
        (0, 0),
        "allocations on the line side"
    );
    assert!(dframes_b >= 50, "{dframes_b} D-channel frames crossed");
    assert_eq!(digits, 2, "the echoed 5 and 9");
    let s = audio.expect("an audio report");
    assert!(s.blocks_received > 500 && s.blocks_lost == 0, "{s:?}");
}
