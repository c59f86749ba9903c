//! The media DSP pieces allocate nothing after construction: PLC, RFC 4733
//! sender and receiver (with tone regeneration), the RTCP session (receive,
//! reports, BYE) and the quality summary, run for 20 simulated seconds with
//! loss, under a counting global allocator armed on this test's thread only.

use tdmgw::media::plc::Plc;
use tdmgw::media::quality::{CallQuality, CallStats, EModel};
use tdmgw::media::rfc4733::{EventReceiver, EventReceiverConfig, EventSender, EventSenderConfig};
use tdmgw::media::rtcp::compound::CompoundWriter;
use tdmgw::media::rtcp::rr::ReportBlock;
use tdmgw::media::rtcp::session::{ReceptionStats, ReportTime, RtcpConfig, RtcpSession};
use tdmgw::media::seq::SourceSeq;

mod common;
use common::counting_alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn media_dsp_allocates_nothing_after_construction() {
    // Construction (allowed to allocate, though none of these do).
    let mut plc = Plc::new();
    let mut tx = EventSender::new(EventSenderConfig::default(), 0x1234_0000);
    let mut rx = EventReceiver::new(EventReceiverConfig::default());
    let mut rtcp = RtcpSession::new(RtcpConfig::default(), 0x1111, b"gw@192.0.2.1", 0);
    let mut seq = SourceSeq::new(0, 1);
    let mut far = [0u8; 128];
    let far_len = {
        let mut w = CompoundWriter::new(&mut far);
        w.rr(
            0x2222,
            &[ReportBlock {
                ssrc: 0x1111,
                fraction_lost: 3,
                ..Default::default()
            }],
        )
        .unwrap()
        .sdes_cname(0x2222, b"core")
        .unwrap();
        w.len()
    };
    let mut report = [0u8; 512];
    let audio: Vec<i16> = (0..8000)
        .map(|i| ((i * 131) % 6000) as i16 - 3000)
        .collect();

    counting_alloc::track(true);
    let mut pkt = 0u16;
    for tick in 0..20_000u64 {
        let now = tick * 8;
        // RTP → TDM: 20 ms packets, every 9th lost; PLC per tick.
        let mut buf = [0i16; 8];
        let off = (now % 8000) as usize;
        buf.copy_from_slice(&audio[off..off + 8]);
        let lost = (tick / 20) % 9 == 4;
        plc.process(&mut buf, &[lost; 8]);
        if tick % 20 == 0 {
            if !lost {
                seq.update(pkt, 1);
            }
            pkt = pkt.wrapping_add(1);
            rtcp.on_rtp_sent(160);
        }
        // DTMF both ways: a digit every second, 100 ms long.
        match tick % 1000 {
            40 => {
                tx.start(now, b'9', now - 320);
            }
            140 => tx.end(now, 800),
            _ => {}
        }
        if let Some(p) = tx.poll_packet(now) {
            rx.handle_packet(now, p.timestamp, &p.payload).unwrap();
        }
        rx.fill(now, &mut buf);
        while rx.poll_event().is_some() {}
        // RTCP: the far end's report every 5 s, ours when due.
        if tick % 5000 == 2500 {
            rtcp.handle_rtcp(now, now << 16, &far[..far_len]).unwrap();
        }
        if rtcp.poll_timeout().is_some_and(|t| t <= now) {
            let t = ReportTime {
                now,
                ntp: now << 16,
                rtp_ts: now as u32,
            };
            let r = ReceptionStats::take(0x2222, &mut seq, 12);
            rtcp.handle_timeout(t, Some(r), &mut report).unwrap();
        }
    }
    let t = ReportTime {
        now: 160_000,
        ntp: 1 << 40,
        rtp_ts: 0,
    };
    rtcp.bye(t, None, &mut report).unwrap();
    let q = CallQuality::from_stats(
        &CallStats {
            packets_sent: rtcp.sent().0 as u64,
            packets_received: seq.received(),
            packets_expected: seq.expected(),
            jitter_samples: 12,
            rtt_ms: rtcp.rtt().mean_ms(),
            jitter_buffer_ms: 40.0,
            ptime_ms: 20.0,
            concealed_samples: plc.counters.concealed_samples,
            loss_bursts: plc.counters.erasures,
            plc: true,
        },
        &EModel::default(),
    );
    counting_alloc::track(false);

    assert_eq!(
        counting_alloc::counts(),
        (0, 0),
        "allocations or frees on the media path"
    );
    // The run did what it says.
    assert!(plc.counters.erasures >= 100, "{:?}", plc.counters);
    assert_eq!(rx.counters.digits, 20);
    assert!(rtcp.counters.reports_sent >= 4);
    assert!(q.loss_percent > 10.0 && q.loss_percent < 12.0, "{q:?}");
    // 11.1 % random loss with PLC: Ie,eff = 95 * 11.1 / 36.2 = 29.1.
    assert!(q.r_factor > 60.0 && q.r_factor < 64.0, "{q:?}");
    assert_eq!(rtcp.remote_report().map(|b| b.fraction_lost), Some(3));
}
