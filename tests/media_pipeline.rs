//! The media pieces wired into one B-channel's pipeline (issue 5): RFC 4733
//! generation from in-band DTMF and regeneration into the timeslot, G.711
//! Appendix I concealment at the loss edges, RTCP reports and round-trip
//! time between two channels, and the end-of-call E-model summary. All in
//! simulated E1 time: channels are ticked, datagrams handed across.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tdmgw::line::g711;
use tdmgw::media::channel::{Channel, ChannelParams, TICK_MS, TICK_SAMPLES};
use tdmgw::media::control::{CallSummary, ChannelId, Codec, Command, ConnectParams, Event};
use tdmgw::media::dtmf::{DtmfDetector, DtmfEvent};
use tdmgw::media::plc::OUTPUT_DELAY_SAMPLES;
use tdmgw::media::rfc4733::TelephoneEvent;
use tdmgw::media::rtcp::compound::{Compound, RtcpPacket};
use tdmgw::media::rtp::{PayloadType, RtpPacket, RtpRepr};
use tdmgw::media::tone::{ToneGenerator, ToneSpec};

const TE: PayloadType = PayloadType(101);

fn id(ts: u8) -> ChannelId {
    ChannelId {
        span: 1,
        timeslot: ts,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn channel(ts: u8, seed: u64) -> Channel {
    Channel::new(ChannelParams::new(id(ts), seed))
}

fn connect(ch: &mut Channel, remote: SocketAddr, f: impl FnOnce(&mut ConnectParams)) {
    let mut p = ConnectParams::new(remote, Codec::Pcma);
    f(&mut p);
    ch.command(Command::Connect {
        ch: ch.id(),
        params: p,
    });
    assert!(ch.is_connected());
}

fn events(ch: &mut Channel) -> Vec<Event> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

fn tick(ch: &mut Channel, rx: impl FnMut(u64) -> u8) -> [u8; TICK_SAMPLES] {
    let mut rx = rx;
    let t0 = ch.now();
    let r: [u8; TICK_SAMPLES] = core::array::from_fn(|i| rx(t0 + i as u64));
    let mut tx = [0u8; TICK_SAMPLES];
    ch.tick(&r, &mut tx);
    tx
}

/// A-law of DTMF `digit` for samples in `[on, off)`, a quiet 300 Hz tone
/// (speech stand-in) elsewhere.
fn dtmf_line(digit: u8, on: u64, off: u64) -> impl FnMut(u64) -> u8 {
    let mut g = ToneGenerator::new(ToneSpec::dtmf(digit).unwrap());
    move |t| {
        let mut x = [0i16; 1];
        g.fill(&mut x);
        if (on..off).contains(&t) {
            g711::linear_to_alaw(x[0])
        } else {
            let v = 300.0 * (t as f32 * 300.0 / 8000.0 * std::f32::consts::TAU).sin();
            g711::linear_to_alaw(v as i16)
        }
    }
}

fn detect(played: &[u8]) -> Vec<DtmfEvent> {
    let mut det = DtmfDetector::new();
    let lin: Vec<i16> = played.iter().map(|&a| g711::alaw_to_linear(a)).collect();
    let mut fed = 0;
    let mut out = Vec::new();
    while fed < lin.len() {
        fed += det.handle_samples(&lin[fed..]);
        out.extend(std::iter::from_fn(|| det.poll_event()));
    }
    out
}

#[test]
fn in_band_dtmf_becomes_rfc4733_events_sharing_the_voice_stream() {
    let mut ch = channel(1, 11);
    connect(&mut ch, addr(4000), |p| p.telephone_event_pt = Some(TE));
    let (ssrc, _, ts_start) = ch.tx_state().unwrap();
    let (on, off) = (4000u64, 4000 + 8 * 80);
    let mut line = dtmf_line(b'7', on, off);
    let mut pkts: Vec<RtpRepr> = Vec::new();
    let mut events_payload: Vec<TelephoneEvent> = Vec::new();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for _ in 0..1000 / TICK_MS {
        tick(&mut ch, &mut line);
        if let Some((buf, to)) = ch.poll_transmit() {
            assert_eq!(to, addr(4000));
            let p = RtpPacket::parse(buf).unwrap();
            if p.repr.payload_type == TE {
                events_payload.push(TelephoneEvent::parse(p.payload.try_into().unwrap()));
            }
            pkts.push(p.repr);
            payloads.push(p.payload.to_vec());
        }
    }
    // RFC 4733 §2.1: one SSRC and one sequence space for voice and events.
    assert!(pkts.iter().all(|r| r.ssrc == ssrc));
    for w in pkts.windows(2) {
        assert_eq!(w[1].sequence_number, w[0].sequence_number.wrapping_add(1));
    }
    let ev: Vec<&RtpRepr> = pkts.iter().filter(|r| r.payload_type == TE).collect();
    // Start (marker), updates every 20 ms, the end report three times.
    assert!(ev.len() >= 5, "{} event packets", ev.len());
    assert!(ev[0].marker);
    assert!(ev[1..].iter().all(|r| !r.marker));
    // §2.5.1.2: one timestamp, the digit's first sample, in the voice clock.
    let ts_on = ts_start.wrapping_add(on as u32);
    let ts = ev[0].timestamp;
    assert!(ev.iter().all(|r| r.timestamp == ts));
    let skew = ts.wrapping_sub(ts_on) as i32;
    assert!(
        skew.abs() <= 8 * 5,
        "event timestamp {skew} samples off the onset"
    );
    assert!(events_payload.iter().all(|e| e.event == 7));
    let ends: Vec<&TelephoneEvent> = events_payload.iter().filter(|e| e.end).collect();
    assert_eq!(ends.len(), 3, "§2.5.1.4: the final report three times");
    assert!(ends.windows(2).all(|w| w[0] == w[1]));
    assert!(
        (76 * 8..=84 * 8).contains(&ends[0].duration),
        "{:?}",
        ends[0]
    );
    // Updates grow (§2.5.1.3).
    let updates: Vec<u16> = events_payload
        .iter()
        .filter(|e| !e.end)
        .map(|e| e.duration)
        .collect();
    assert!(updates.windows(2).all(|w| w[1] > w[0]), "{updates:?}");
    // No voice packet carries the digit: the one it starts in has it
    // muted, the next ones are held until the events end.
    let mut voice_in_digit = 0;
    for (r, payload) in pkts.iter().zip(&payloads) {
        if r.payload_type != PayloadType::PCMA {
            continue;
        }
        let start = r.timestamp.wrapping_sub(ts_start) as u64;
        for (k, &o) in payload.iter().enumerate() {
            if (on..off).contains(&(start + k as u64)) {
                voice_in_digit += 1;
                assert_eq!(o, g711::ALAW_IDLE, "digit sample {} sent", start + k as u64);
            }
        }
    }
    assert!(
        voice_in_digit < 160,
        "at most the packet the digit starts in"
    );
    let c = ch.counters();
    assert_eq!(c.rfc4733_digits_sent, 1);
    assert!(c.voice_packets_held >= 4, "{c:?}");
    assert_eq!(c.telephone_events_sent, ev.len() as u64);
    let e = events(&mut ch);
    assert!(
        matches!(e[0], Event::DtmfStart { digit: b'7', .. }),
        "{e:?}"
    );
}

#[test]
fn without_telephone_event_the_digit_stays_in_band() {
    let mut ch = channel(1, 12);
    connect(&mut ch, addr(4000), |_| {});
    let (_, _, ts_start) = ch.tx_state().unwrap();
    let (on, off) = (4000u64, 4000 + 8 * 80);
    let mut line = dtmf_line(b'3', on, off);
    let mut stream = Vec::new();
    for _ in 0..1000 / TICK_MS {
        tick(&mut ch, &mut line);
        if let Some((buf, _)) = ch.poll_transmit() {
            let p = RtpPacket::parse(buf).unwrap();
            assert_eq!(p.repr.payload_type, PayloadType::PCMA);
            assert_eq!(
                p.repr.timestamp.wrapping_sub(ts_start) as usize,
                stream.len()
            );
            stream.extend_from_slice(p.payload);
        }
    }
    let want: Vec<u8> = (0..stream.len() as u64)
        .map(dtmf_line(b'3', on, off))
        .collect();
    assert_eq!(stream, want, "voice untouched: the digit goes in-band");
    assert!(
        detect(&stream)
            .iter()
            .any(|e| matches!(e, DtmfEvent::DigitStart { digit: b'3', .. })),
        "the far end can detect it"
    );
    assert_eq!(ch.counters().telephone_events_sent, 0);
    assert!(
        events(&mut ch)
            .iter()
            .any(|e| matches!(e, Event::DtmfStart { digit: b'3', .. }))
    );
}

/// Channel A hears DTMF on its timeslot and sends telephone-events; channel
/// B receives them and regenerates the digits into its timeslot, where a
/// DTMF detector hears them again, with their durations.
#[test]
fn rfc4733_events_are_regenerated_into_the_timeslot() {
    let mut a = channel(1, 21);
    let mut b = channel(2, 22);
    connect(&mut a, addr(5002), |p| p.telephone_event_pt = Some(TE));
    connect(&mut b, addr(5000), |p| p.telephone_event_pt = Some(TE));
    let digits = [(b'4', 4000u64, 4000 + 8 * 100), (b'#', 8000, 8000 + 8 * 60)];
    let mut gens: Vec<ToneGenerator> = digits
        .iter()
        .map(|d| ToneGenerator::new(ToneSpec::dtmf(d.0).unwrap()))
        .collect();
    let mut played = Vec::new();
    for _ in 0..2000 / TICK_MS {
        tick(&mut a, |t| {
            for (k, &(_, on, off)) in digits.iter().enumerate() {
                if (on..off).contains(&t) {
                    let mut x = [0i16; 1];
                    gens[k].fill(&mut x);
                    return g711::linear_to_alaw(x[0]);
                }
            }
            g711::ALAW_IDLE
        });
        if let Some((buf, _)) = a.poll_transmit() {
            b.handle_rtp(buf, addr(5000));
        }
        let tx = tick(&mut b, |_| g711::ALAW_IDLE);
        played.extend_from_slice(&tx);
        b.poll_transmit();
    }
    let heard: Vec<(u8, u64)> = {
        let ev = detect(&played);
        let mut out = Vec::new();
        for e in ev {
            if let DtmfEvent::DigitEnd {
                digit,
                duration_samples,
            } = e
            {
                out.push((digit, duration_samples / 8));
            }
        }
        out
    };
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!(heard[0].0, b'4');
    assert!((90..=110).contains(&heard[0].1), "{heard:?}");
    assert_eq!(heard[1].0, b'#');
    assert!((50..=70).contains(&heard[1].1), "{heard:?}");
    let ev = events(&mut b);
    let rx: Vec<Event> = ev
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::DtmfReceivedStart { .. } | Event::DtmfReceivedEnd { .. }
            )
        })
        .collect();
    assert_eq!(rx.len(), 4, "{rx:?}");
    assert_eq!(
        rx[0],
        Event::DtmfReceivedStart {
            ch: id(2),
            digit: b'4'
        }
    );
    assert!(
        matches!(
            rx[1],
            Event::DtmfReceivedEnd {
                digit: b'4',
                duration_ms: 96..=104,
                ..
            }
        ),
        "{rx:?}"
    );
    assert_eq!(
        rx[2],
        Event::DtmfReceivedStart {
            ch: id(2),
            digit: b'#'
        }
    );
    assert_eq!(b.counters().rfc4733_digits_received, 2);
    b.command(Command::Disconnect { ch: id(2) });
    let s = summary(&mut b);
    assert_eq!(s.dtmf_digits_received_rtp, 2);
}

fn summary(ch: &mut Channel) -> CallSummary {
    events(ch)
        .into_iter()
        .find_map(|e| match e {
            Event::CallSummary { summary, .. } => Some(summary),
            _ => None,
        })
        .expect("a call summary")
}

/// 200 Hz voiced-like audio, A-law, sample `t`.
fn voiced(t: u64) -> u8 {
    let x = 6000.0 * (t as f64 * 200.0 / 8000.0 * std::f64::consts::TAU).sin()
        + 2000.0 * (t as f64 * 400.0 / 8000.0 * std::f64::consts::TAU).sin();
    g711::linear_to_alaw(x as i16)
}

#[test]
#[allow(clippy::needless_range_loop)] // sample indices are the point
fn plc_conceals_a_loss_without_steps_at_its_edges() {
    let mut ch = channel(1, 31);
    connect(&mut ch, addr(4000), |p| p.dtmf_detect = false);
    let lost = 30u64..32; // packets 30 and 31: 40 ms
    let mut played = Vec::new();
    for k in 0..60u64 {
        if !lost.contains(&k) {
            let payload: Vec<u8> = (0..160).map(|i| voiced(k * 160 + i)).collect();
            let mut b = vec![0u8; 12 + 160];
            RtpRepr {
                marker: k == 0,
                payload_type: PayloadType::PCMA,
                sequence_number: k as u16,
                timestamp: k as u32 * 160,
                ssrc: 77,
            }
            .emit(&payload, &mut b)
            .unwrap();
            ch.handle_rtp(&b, addr(4000));
        }
        for _ in 0..20 / TICK_MS {
            played.extend_from_slice(&tick(&mut ch, |_| g711::ALAW_IDLE));
        }
    }
    let lin: Vec<i32> = played
        .iter()
        .map(|&a| g711::alaw_to_linear(a) as i32)
        .collect();
    // Playout: 20 ms jitter depth + the PLC's 30-sample look-back.
    let delay = 160 + OUTPUT_DELAY_SAMPLES;
    let gap = (delay + 30 * 160, delay + 32 * 160);
    // Audio before the loss comes out exactly.
    for t in delay..gap.0 - OUTPUT_DELAY_SAMPLES {
        assert_eq!(played[t], voiced((t - delay) as u64), "sample {t}");
    }
    // The largest step of the real signal, and of the output at the edges.
    let natural = (1..8000)
        .map(|t| {
            (g711::alaw_to_linear(voiced(t)) as i32 - g711::alaw_to_linear(voiced(t - 1)) as i32)
                .abs()
        })
        .max()
        .unwrap();
    for edge in [gap.0, gap.1] {
        let worst = (edge - 40..edge + 120)
            .map(|t| (lin[t] - lin[t - 1]).abs())
            .max()
            .unwrap();
        assert!(
            worst <= natural * 3 / 2,
            "step {worst} at edge {edge} (signal's own {natural})"
        );
    }
    // The erasure is filled with the pitch, not faded to silence: the first
    // 10 ms keep most of the energy.
    let energy = |r: std::ops::Range<usize>| {
        r.clone().map(|t| (lin[t] as i64).pow(2)).sum::<i64>() / r.len() as i64
    };
    let before = energy(gap.0 - 400..gap.0 - 80);
    let first10 = energy(gap.0..gap.0 + 80);
    assert!(first10 * 2 > before, "concealed {first10} vs {before}");
    // And the audio after the loss returns to the received signal.
    let back = gap.1 + 160;
    for t in back..back + 320 {
        assert_eq!(played[t], voiced((t - delay) as u64), "sample {t}");
    }
    let c = ch.counters();
    assert_eq!(c.plc.erasures, 1);
    assert_eq!(c.plc.concealed_samples, 320);
    ch.command(Command::Disconnect { ch: id(1) });
    let s = summary(&mut ch);
    assert_eq!(s.concealed_ms, 40);
    assert_eq!(s.packets_expected, 60);
    assert_eq!(s.packets_lost, 2);
}

/// A simulated network: datagrams arrive `delay_ms` after they were sent.
struct Wire {
    delay_ms: u64,
    q: VecDeque<(u64, Vec<u8>)>,
}

impl Wire {
    fn new(delay_ms: u64) -> Self {
        Wire {
            delay_ms,
            q: VecDeque::new(),
        }
    }
    fn send(&mut self, now_ms: u64, d: &[u8]) {
        self.q.push_back((now_ms + self.delay_ms, d.to_vec()));
    }
    fn due(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.q.front().is_some_and(|x| x.0 <= now_ms) {
            out.push(self.q.pop_front().unwrap().1);
        }
        out
    }
}

/// Two channels talk for `secs` with RTCP both ways over a wire of
/// `delay_ms` each way; every `lose_every`-th RTP packet A → B is lost.
/// Returns the RTCP compounds B sent.
fn talk(
    a: &mut Channel,
    b: &mut Channel,
    secs: u64,
    delay_ms: u64,
    lose_every: u64,
) -> Vec<Vec<u8>> {
    let (a_rtp, b_rtp) = (addr(6000), addr(6002));
    let (a_rtcp, b_rtcp) = (addr(6001), addr(6003));
    let mut rtcp_ab = Wire::new(delay_ms);
    let mut rtcp_ba = Wire::new(delay_ms);
    let mut rtp_ab = Wire::new(delay_ms);
    let mut rtp_ba = Wire::new(delay_ms);
    let mut from_b = Vec::new();
    let mut sent_ab = 0u64;
    for step in 0..secs * 1000 / TICK_MS as u64 {
        let ms = step * TICK_MS as u64;
        tick(a, voiced);
        tick(b, voiced);
        if let Some((p, to)) = a.poll_transmit() {
            assert_eq!(to, b_rtp);
            sent_ab += 1;
            if lose_every == 0 || !sent_ab.is_multiple_of(lose_every) {
                rtp_ab.send(ms, p);
            }
        }
        if let Some((p, _)) = b.poll_transmit() {
            rtp_ba.send(ms, p);
        }
        if let Some((p, to)) = a.poll_transmit_rtcp() {
            assert_eq!(to, b_rtcp, "RTP port + 1 (RFC 3550 §11)");
            rtcp_ab.send(ms, p);
        }
        if let Some((p, to)) = b.poll_transmit_rtcp() {
            assert_eq!(to, a_rtcp);
            from_b.push(p.to_vec());
            rtcp_ba.send(ms, p);
        }
        for d in rtp_ab.due(ms) {
            b.handle_rtp(&d, a_rtp);
        }
        for d in rtp_ba.due(ms) {
            a.handle_rtp(&d, b_rtp);
        }
        for d in rtcp_ab.due(ms) {
            b.handle_rtcp(&d, a_rtcp);
        }
        for d in rtcp_ba.due(ms) {
            a.handle_rtcp(&d, b_rtcp);
        }
    }
    from_b
}

#[test]
fn rtcp_reports_and_round_trip_between_two_channels() {
    let mut a = channel(1, 41);
    let mut b = channel(2, 42);
    a.set_cname(b"a@192.0.2.1");
    b.set_cname(b"b@192.0.2.1");
    // Different wallclocks: only each side's own clock enters its RTT.
    a.set_ntp_base(0xE000_0000_0000_0000);
    b.set_ntp_base(0xE123_4567_89AB_CDEF);
    connect(&mut a, addr(6002), |p| p.dtmf_detect = false);
    connect(&mut b, addr(6000), |p| p.dtmf_detect = false);
    let (a_ssrc, a_seq0, _) = a.tx_state().unwrap();
    let (b_ssrc, ..) = b.tx_state().unwrap();
    let reports = talk(&mut a, &mut b, 21, 40, 10);
    // RFC 3550 §6.2: Tmin 5 s (2.5 s first), randomised over [0.5, 1.5]
    // and divided by e - 3/2: 21 s give 3..8 reports.
    assert!(
        (3..=8).contains(&reports.len()),
        "{} reports",
        reports.len()
    );
    // The last report of B: an SR (B sends) with one block about A.
    let last = Compound::parse(reports.last().unwrap()).unwrap();
    let mut saw_block = false;
    for p in last.packets() {
        match p {
            RtcpPacket::Sr(sr) => {
                assert_eq!(sr.ssrc, b_ssrc);
                let blocks: Vec<_> = sr.blocks().collect();
                assert_eq!(blocks.len(), 1);
                let bl = blocks[0];
                assert_eq!(bl.ssrc, a_ssrc);
                // Every tenth packet lost: 10 % = 25.6/256.
                assert!((24..=27).contains(&bl.fraction_lost), "{bl:?}");
                // RFC 3550 A.3 by hand: expected = highest - first + 1.
                let expected =
                    (bl.extended_highest_seq & 0xFFFF).wrapping_sub(a_seq0 as u32) & 0xFFFF;
                let expected = expected as u64 + 1;
                assert!(
                    (bl.cumulative_lost as u64).abs_diff(expected / 10) <= 1,
                    "{bl:?} of {expected}"
                );
                assert!(bl.lsr != 0 && bl.dlsr != 0, "{bl:?}");
                assert!(bl.jitter <= 16, "{bl:?}");
                saw_block = true;
            }
            RtcpPacket::Sdes(_) => {}
            p => panic!("{p:?}"),
        }
    }
    assert!(saw_block);
    // RTT from B's reports: 2 × 40 ms, to the 2 ms tick (§6.4.1).
    let rtt = a.rtcp().rtt();
    assert!(rtt.samples >= 2, "{rtt:?}");
    let ms = rtt.last_ms().unwrap();
    assert!((78.0..=84.0).contains(&ms), "RTT {ms} ms");
    let brtt = b.rtcp().rtt().last_ms().unwrap();
    assert!((78.0..=84.0).contains(&brtt), "RTT {brtt} ms");
    // What B says of A's stream arrives at A.
    let rr = a.rtcp().remote_report().unwrap();
    assert_eq!(rr.ssrc, a_ssrc);
    assert_eq!(a.counters().rtcp_malformed, 0);

    // Disconnect: a BYE (RFC 3550 §6.6) goes to B, which reports it.
    a.command(Command::Disconnect { ch: id(1) });
    let (bye, to) = a.poll_transmit_rtcp().expect("BYE");
    assert_eq!(to, addr(6003));
    let bye = bye.to_vec();
    assert!(
        Compound::parse(&bye)
            .unwrap()
            .packets()
            .any(|p| matches!(p, RtcpPacket::Bye(_)))
    );
    b.handle_rtcp(&bye, addr(6001));
    assert!(events(&mut b).contains(&Event::RtcpBye {
        ch: id(2),
        ssrc: a_ssrc
    }));
    let s = summary(&mut a);
    assert!(s.rtt_samples >= 2);
    assert!((78_000..=84_000).contains(&s.rtt_us), "{s:?}");
    assert!(s.rtcp_sent >= 3 && s.rtcp_received >= 3, "{s:?}");

    // Malformed RTCP is counted, never a panic.
    b.handle_rtcp(&[0x80, 200, 0, 1], addr(6001));
    b.handle_rtcp(&[], addr(6001));
    assert_eq!(b.counters().rtcp_malformed, 2);
    let before = b.counters().rtcp_wrong_source;
    b.handle_rtcp(&bye, SocketAddr::from(([198, 51, 100, 9], 6001)));
    assert_eq!(b.counters().rtcp_wrong_source, before + 1);
}

#[test]
fn summary_gives_r_factor_and_mos_for_a_lossy_call() {
    let run = |lose_every: u64| {
        let mut a = channel(1, 51);
        let mut b = channel(2, 52);
        connect(&mut a, addr(6002), |p| p.dtmf_detect = false);
        connect(&mut b, addr(6000), |p| p.dtmf_detect = false);
        talk(&mut a, &mut b, 12, 20, lose_every);
        b.command(Command::Disconnect { ch: id(2) });
        summary(&mut b)
    };
    let clean = run(0);
    let lossy = run(20); // 5 % random-ish (periodic) loss
    assert_eq!(clean.loss_percent_x100, 0);
    assert!((480..=520).contains(&lossy.loss_percent_x100), "{lossy:?}");
    assert!(clean.rtt_samples > 0 && lossy.rtt_samples > 0);
    // G.107: no loss, ~64 ms mouth-to-ear: R ≈ 91.4, MOS ≈ 4.37.
    assert!(clean.r_factor() > 91.0, "{clean:?}");
    assert!(clean.mos() > 4.3, "{clean:?}");
    // 5 % isolated losses with Appendix I PLC (Bpl 25.1, BurstR 1):
    // Ie,eff = 95 · 5 / (5 + 25.1) ≈ 15.8, so R ≈ 77, MOS ≈ 3.9.
    assert!((75.0..=79.0).contains(&lossy.r_factor()), "{lossy:?}");
    assert!((3.8..=4.05).contains(&lossy.mos()), "{lossy:?}");
    assert!(
        lossy.concealed_ms > 0 && clean.concealed_ms == 0,
        "{lossy:?} {clean:?}"
    );
    assert!(lossy.one_way_delay_ms >= 20 + 20, "{lossy:?}");
}
