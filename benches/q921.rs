//! Q.921 throughput: a user and a network Link exchanging I frames (and
//! their acknowledgements) in memory, plus frame parsing. Run with
//! `cargo bench --bench q921`.

use std::time::{Duration, Instant};

use tdmgw::isdn::q921::{Event, FrameRepr, Link, LinkConfig, Role, State};
use tdmgw::isdn::timers::TimerValues;

fn main() {
    let t = TimerValues::default();
    let now = Instant::now();
    let mut user = Link::new(LinkConfig::pri(1, Role::User, &t, 3, 7), now);
    let mut net = Link::new(LinkConfig::pri(1, Role::Network, &t, 3, 7), now);
    user.handle_timeout(now);
    net.handle_timeout(now);
    let shuttle = |a: &mut Link, b: &mut Link| {
        let mut moved = 0;
        while let Some(f) = a.poll_transmit() {
            b.handle_frame(now, &f);
            moved += 1;
        }
        moved
    };
    while user.state() != State::MultipleFrameEstablished
        || net.state() != State::MultipleFrameEstablished
    {
        shuttle(&mut user, &mut net);
        shuttle(&mut net, &mut user);
    }
    let info = [0x08u8, 0x02, 0x00, 0x05, 0x7B, 0x28, 0x03, b'9', b'9', b'9'];
    let n = 1_000_000u32;
    let mut delivered = 0u32;
    let start = Instant::now();
    let mut sent = 0u32;
    while delivered < n {
        while sent < n && user.pending_requests() < 7 {
            user.dl_data(now, &info).unwrap();
            sent += 1;
        }
        shuttle(&mut user, &mut net);
        shuttle(&mut net, &mut user);
        while let Some(e) = net.poll_event() {
            if matches!(e, Event::Data(_)) {
                delivered += 1;
            }
        }
        while user.poll_event().is_some() {}
    }
    let el = start.elapsed();
    println!(
        "q921 link: {n} I frames user->network delivered and acknowledged in {:?}: {:.0} frames/s, {:.0} ns/frame",
        el,
        f64::from(n) / el.as_secs_f64(),
        el.as_nanos() as f64 / f64::from(n)
    );
    let frame = [0x00u8, 0x01, 0x02, 0x05, 0x08, 0x02, 0x00, 0x05, 0x05];
    let reps = 10_000_000u32;
    let start = Instant::now();
    let mut acc = 0usize;
    for _ in 0..reps {
        acc += FrameRepr::parse_bytes(std::hint::black_box(&frame))
            .map(|f| f.info.len())
            .unwrap_or(0);
    }
    let el = start.elapsed().max(Duration::from_nanos(1));
    println!(
        "q921 parse: {:.1} ns/frame ({acc})",
        el.as_nanos() as f64 / f64::from(reps)
    );
}
