//! G.711 throughput: A-law blocks decoded, encoded and converted to µ-law
//! per second, shown as E1 B-channels (8000 octets/s each) one core keeps up
//! with. Run: `cargo bench --bench g711`.

use std::hint::black_box;
use std::time::Instant;
use tdmgw::line::g711;

fn main() {
    const BLOCK: usize = 160;
    const ROUNDS: usize = 200_000;
    let codes: Vec<u8> = (0..BLOCK).map(|i| (i * 37) as u8).collect();
    let mut lin = [0i16; BLOCK];
    let mut out = [0u8; BLOCK];
    let t = Instant::now();
    for _ in 0..ROUNDS {
        g711::decode_alaw(black_box(&codes), &mut lin);
        g711::encode_alaw(black_box(&lin), &mut out);
        g711::alaw_to_ulaw_in_place(black_box(&mut out));
    }
    let secs = t.elapsed().as_secs_f64();
    let samples = (ROUNDS * BLOCK) as f64;
    println!(
        "g711: decode+encode+A->µ {:.1} Msamples/s = {:.0} B-channels in real time on one core",
        samples / secs / 1e6,
        samples / secs / 8000.0
    );
    black_box(out);
}
