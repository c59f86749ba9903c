//! The DAHDI line side's cost: how much of a core the media thread spends
//! on DAHDI spans' B-channels, per block of line time.
//!
//! Four spans of 30 B-channels on simulated cards (one SOCK_SEQPACKET
//! socketpair per channel: a read and a write per channel per block, as
//! on `/dev/dahdi/channel`, though a socketpair is not the kernel's DAHDI
//! code). Each round the card side (not timed) writes one block on every
//! channel; the timed part is:
//!
//! 1. `DahdiLinePort::service` alone (inner epoll, 120 reads, frames
//!    assembled and split back, 120 writes), a no-op engine;
//! 2. a whole `MediaLoop::turn` with all 120 channels connected: the same
//!    plus the engine's channels and one RTP packet out per channel.
//!
//! `cargo bench --bench media_dahdi` prints µs per round and that as a
//! share of the block's line time (20 ms at 160 octets, 5 ms at 40).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tdmgw::line::driver::dahdi::seqpacket::{CardSpan, SeqpacketCard, SeqpacketChannel};
use tdmgw::line::driver::dahdi::{DahdiSpan, DahdiSpanParams, sys};
use tdmgw::media::control::{ChannelId, Codec, Command, ConnectParams};
use tdmgw::media::dahdi_lines::{DahdiLinePort, DahdiLinePortParams, DahdiLineSpanParams};
use tdmgw::media::engine::{EngineParams, MediaCore, MediaLoop, SpanParams};
use tdmgw::media::tdm::TdmPort;

const SPANS: u16 = 4;
const ROUNDS: u32 = 1500;

fn open(
    block: usize,
) -> (
    Vec<SeqpacketCard>,
    Vec<CardSpan>,
    DahdiLinePort<SeqpacketChannel>,
) {
    let mut cards = Vec::new();
    let mut ends = Vec::new();
    let mut spans = Vec::new();
    for span in 1..=SPANS {
        let base = (span - 1) * 31 + 1;
        let (mut card, e) = SeqpacketCard::e1_pri(span, base, 30, sys::DAHDI_SIG_HDLCFCS).unwrap();
        let mut p = DahdiSpanParams::e1_pri(span, base, 30);
        p.block_octets = block;
        let (_d, channels) = DahdiSpan::open(&mut card, p).unwrap().split();
        spans.push(DahdiLineSpanParams {
            number: span,
            channels,
            crc4: true,
        });
        cards.push(card);
        ends.push(e);
    }
    let (port, _h) = DahdiLinePort::open(DahdiLinePortParams::new(spans)).unwrap();
    (cards, ends, port)
}

fn card_round(ends: &[CardSpan], block: &[u8]) {
    for s in ends {
        for (_, e) in &s.b {
            e.send(block).unwrap();
        }
    }
}

fn card_drain(ends: &[CardSpan]) {
    let mut buf = [0u8; 512];
    for s in ends {
        for (_, e) in &s.b {
            while e.recv(&mut buf).unwrap().is_some() {}
        }
    }
}

fn port_alone(block: usize) -> Duration {
    let (_cards, ends, mut port) = open(block);
    let data = vec![0x2Au8; block];
    let mut total = Duration::ZERO;
    let mut frames = 0;
    for _ in 0..ROUNDS {
        card_round(&ends, &data);
        let t = Instant::now();
        frames += port.service(&mut |_, rx, tx| *tx = *rx).unwrap();
        total += t.elapsed();
        card_drain(&ends);
    }
    assert_eq!(frames, ROUNDS as usize * SPANS as usize * block);
    total / ROUNDS
}

fn with_engine(block: usize) -> Duration {
    let (_cards, ends, mut port) = open(block);
    let ep = EngineParams::new(
        (1..=SPANS).map(SpanParams::pri).collect(),
        "127.0.0.1".parse().unwrap(),
        0,
        1,
    );
    let (core, mut ctl) = MediaCore::new(&ep).unwrap();
    let mut lp = MediaLoop::new(core).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_nonblocking(true).unwrap();
    for span in 1..=SPANS {
        for timeslot in (1..=31).filter(|&t| t != 16) {
            let mut p = ConnectParams::new(sink.local_addr().unwrap(), Codec::Pcma);
            p.dtmf_detect = true;
            let ch = ChannelId { span, timeslot };
            ctl.commands
                .try_push(Command::Connect { ch, params: p })
                .unwrap();
        }
    }
    lp.turn(&mut port, Some(Duration::ZERO)).unwrap();
    let data = vec![0x2Au8; block];
    let mut total = Duration::ZERO;
    let mut buf = [0u8; 1500];
    for r in 0..u64::from(ROUNDS) {
        card_round(&ends, &data);
        let want = (r + 1) * u64::from(SPANS) * block as u64;
        let t = Instant::now();
        while lp.counters.tdm_frames < want {
            lp.turn(&mut port, Some(Duration::from_millis(50))).unwrap();
        }
        total += t.elapsed();
        card_drain(&ends);
        while sink.recv_from(&mut buf).is_ok() {}
        while ctl.events.try_pop().is_some() {}
    }
    total / ROUNDS
}

fn main() {
    for block in [160usize, 40] {
        let line_time = Duration::from_micros(block as u64 * 125);
        let share = |d: Duration| 100.0 * d.as_secs_f64() / line_time.as_secs_f64();
        let a = port_alone(block);
        let b = with_engine(block);
        println!(
            "{SPANS} DAHDI spans x 30 B-channels, {block}-octet blocks ({} ms): \
             port alone {:.1} us per block ({:.2} % of a core), \
             with the engine and 120 connected channels {:.1} us ({:.2} %)",
            block / 8,
            a.as_secs_f64() * 1e6,
            share(a),
            b.as_secs_f64() * 1e6,
            share(b),
        );
    }
}
