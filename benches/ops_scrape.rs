//! Cost of a /metrics scrape of a large gateway's layers: 8 spans (240
//! B-channels, every one connected), 8 D-channels, 3 transports, 4 core
//! peers, 2 media threads and the call counters, rendered into the text
//! format. Run: `cargo bench --bench ops_scrape`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tdmgw::call::cdr::Direction;
use tdmgw::isdn::q921;
use tdmgw::isdn::q931::ChannelTable;
use tdmgw::isdn::task::DChannelStatus;
use tdmgw::media::channel::ChannelStats;
use tdmgw::media::control::ChannelId;
use tdmgw::media::engine::StatsTable;
use tdmgw::ops::layer_metrics::*;
use tdmgw::ops::metrics::Exposition;
use tdmgw::sip::transport::{Counters, Transport};

const SPANS: u16 = 8;

fn main() {
    let spans: Vec<SpanSnapshot> = (1..=SPANS)
        .map(|span| SpanSnapshot {
            span,
            ..SpanSnapshot::default()
        })
        .collect();
    let dchannels: Vec<DChannelStatus> = (1..=SPANS as u8)
        .map(|span| DChannelStatus {
            span,
            link_up: true,
            q921_state: q921::State::MultipleFrameEstablished,
            calls: 20,
            channels: ChannelTable::e1(),
            q921: q921::Counters::default(),
            q931: Default::default(),
            dchannel: Default::default(),
        })
        .collect();
    let tables: Vec<StatsTable> = (0..2u16)
        .map(|thread| {
            let ids: Vec<ChannelId> = (1..=SPANS / 2)
                .flat_map(|s| {
                    (1..=31u8)
                        .filter(|t| *t != 16)
                        .map(move |timeslot| ChannelId {
                            span: thread * (SPANS / 2) + s,
                            timeslot,
                        })
                })
                .collect();
            let stats: Vec<ChannelStats> = ids
                .iter()
                .map(|_| {
                    let s = ChannelStats::default();
                    s.packets_received.store(123_456, Ordering::Relaxed);
                    s.jitter_samples.store(40, Ordering::Relaxed);
                    s.connected.store(true, Ordering::Relaxed);
                    s
                })
                .collect();
            StatsTable {
                ids: ids.into(),
                stats: stats.into(),
            }
        })
        .collect();
    let table_refs: Vec<&StatsTable> = tables.iter().collect();
    let peers: Vec<PeerRow> = (0..4)
        .map(|i| PeerRow {
            group: "core".into(),
            address: format!("192.0.2.{}:5060", 10 + i),
            transport: Transport::Udp,
            up: true,
            in_state: Duration::from_secs(3600),
            rtt: Some(Duration::from_millis(4)),
            pings_sent: 1000,
            ping_failures: 0,
            call_failures: 0,
        })
        .collect();
    let transport = Counters::default();
    let messages = SipMessageMetrics::new();
    let loops: Vec<MediaLoopMetrics> = (0..2)
        .map(|i| MediaLoopMetrics::new(&format!("media-{i}"), LOOP_OVERRUN_DEFAULT_US))
        .collect();
    let loop_refs: Vec<&MediaLoopMetrics> = loops.iter().collect();
    let calls = CallMetrics::new();
    for cause in [16, 17, 18, 19, 21, 31, 34, 41] {
        calls.started(Direction::ExchangeToCore);
        calls.ended(Direction::ExchangeToCore, cause == 16, cause);
    }
    let bytes = AtomicU64::new(0);
    let rounds = 2_000;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut e = Exposition::new();
        collect_spans(&mut e, black_box(&spans));
        collect_dchannels(&mut e, black_box(&dchannels));
        collect_sip_transport(&mut e, &transport);
        messages.collect(&mut e);
        collect_peers(&mut e, &peers);
        collect_media(&mut e, &table_refs);
        collect_media_loops(&mut e, &loop_refs);
        calls.collect(&mut e);
        bytes.store(e.finish().len() as u64, Ordering::Relaxed);
    }
    let per = t.elapsed() / rounds;
    println!(
        "ops scrape: {SPANS} spans, 240 channels: {:.0} µs per scrape, {} bytes",
        per.as_secs_f64() * 1e6,
        bytes.load(Ordering::Relaxed)
    );
}
