//! Q.931 codec throughput: parse + check + encode of a EuroISDN SETUP.
//! Run with `cargo bench --bench q931_codec`.

use std::hint::black_box;
use std::time::Instant;

use tdmgw::isdn::q931::{Direction, Message, check};

const SETUP: &[u8] = &[
    0x08, 0x02, 0x00, 0x0b, 0x05, 0x04, 0x03, 0x80, 0x90, 0xa3, 0x18, 0x03, 0xa9, 0x83, 0x81, 0x6c,
    0x0c, 0x21, 0x83, 0x30, 0x32, 0x30, 0x37, 0x39, 0x34, 0x36, 0x30, 0x30, 0x30, 0x70, 0x04, 0x81,
    0x39, 0x39, 0x39, 0xa1,
];

fn main() {
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let d = Message::parse(black_box(SETUP)).unwrap();
        black_box(check(&d, Direction::NetworkToUser));
    }
    let parse = t.elapsed();
    let m = Message::parse(SETUP).unwrap().message;
    let t = Instant::now();
    for _ in 0..n {
        black_box(black_box(&m).to_vec().unwrap());
    }
    let emit = t.elapsed();
    println!(
        "q931 SETUP ({} octets): parse+check {:.0} ns/msg, encode {:.0} ns/msg",
        SETUP.len(),
        parse.as_nanos() as f64 / f64::from(n),
        emit.as_nanos() as f64 / f64::from(n)
    );
}
