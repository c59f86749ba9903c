//! SIP message parse/emit throughput on RFC 4475 wsinv and a plain INVITE.
//! Run: `cargo bench --bench sip`.

use std::time::Instant;
use tdmgw::sip::{Framing, Limits, Message};

fn bench(name: &str, data: &[u8], iterations: u32) {
    let start = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..iterations {
        let m = Message::parse(
            std::hint::black_box(data),
            Framing::Datagram,
            Limits::default(),
        )
        .expect("parses");
        let _ = std::hint::black_box((m.vias(), m.from(), m.to(), m.cseq(), m.call_id()));
        bytes += m.to_bytes().len();
    }
    let per = start.elapsed() / iterations;
    println!("{name}: parse + typed headers + emit {per:?} per message ({bytes} bytes emitted)");
}

fn main() {
    let wsinv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc4475/wsinv.dat"
    ))
    .expect("wsinv.dat");
    let invite = b"INVITE sip:999@core.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\nTo: <sip:999@core.example>\r\nFrom: \"Gateway\" <sip:02079460000@gw.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@gw.example\r\nCSeq: 314159 INVITE\r\nContact: <sip:gw@192.0.2.10:5060>\r\n\
Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n";
    bench("rfc4475 wsinv", &wsinv, 20_000);
    bench("plain INVITE", invite, 20_000);
}
