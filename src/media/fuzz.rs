//! Fuzz entry points of the media plane (see `fuzz/README.md`).

use super::channel::{Channel, ChannelParams, TICK_SAMPLES};
use super::control::{ChannelId, Codec, Command, ConnectParams};
use super::latch::{Latch, LatchVerdict};
use super::rfc4733::EventReceiver;
use super::rtcp::session::{ReceptionStats, ReportTime, RtcpConfig, RtcpSession};
use super::rtp::PayloadType;
use super::rtp::{RtpError, RtpErrorCounters, RtpPacket};
use super::seq::{Jitter, SourceSeq};
use std::net::SocketAddr;

/// Payload type the fuzz channel negotiated for telephone-events.
const TELEPHONE_EVENT_PT: u8 = 101;

/// The RTP/RTCP receive path fed with arbitrary datagrams. The first octet
/// of `data` picks the source port, the rest is split into datagrams at
/// every `0xFF 0xFE` pair; must never panic. RTCP (RFC 5761 multiplexed,
/// refused by the RTP parser) goes to an [`RtcpSession`], which then writes
/// a report; payload type 101 goes to the RFC 4733 receiver and its tone
/// regeneration. The same datagrams also go through a connected
/// [`Channel`] (RTP socket, or RTCP socket for RTCP), ticked between them,
/// so the wired pipeline (latch, jitter buffer, PLC, RFC 4733 receiver,
/// RTCP session, reports and BYE) sees them too.
#[doc(hidden)]
pub fn fuzz_rtp_receive(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let sdp = SocketAddr::from(([127, 0, 0, 1], 4000));
    let mut latch = Latch::new(sdp, sel & 1 == 1);
    let mut errors = RtpErrorCounters::default();
    let mut seq: Option<SourceSeq> = None;
    let mut jitter = Jitter::default();
    let mut rtcp = RtcpSession::new(RtcpConfig::default(), 0x1111_1111, b"fuzz", 0);
    let mut events = EventReceiver::default();
    let mut tone = [0i16; 8];
    let mut report = [0u8; 512];
    let id = ChannelId {
        span: 1,
        timeslot: 1,
    };
    let mut ch = Channel::new(ChannelParams::new(id, sel as u64));
    let mut params = ConnectParams::new(sdp, Codec::Pcma);
    params.telephone_event_pt = Some(PayloadType(TELEPHONE_EVENT_PT));
    params.restrict_to_sdp = sel & 1 == 1;
    ch.command(Command::Connect { ch: id, params });
    for (i, dgram) in split(rest).enumerate() {
        let now = i as u64 * 160;
        let from = SocketAddr::from(([127, 0, 0, 1 + (sel >> 1) % 2], 4000 + (i as u16 % 2)));
        if dgram.get(1).is_some_and(|&pt| (200..=207).contains(&pt)) {
            ch.handle_rtcp(dgram, from);
        } else {
            ch.handle_rtp(dgram, from);
        }
        let mut tx = [0u8; TICK_SAMPLES];
        ch.tick(&[0xD5; TICK_SAMPLES], &mut tx);
        let _ = ch.poll_transmit();
        let _ = ch.poll_transmit_rtcp();
        while ch.poll_event().is_some() {}
        events.fill(now, &mut tone);
        while events.poll_event().is_some() {}
        match RtpPacket::parse(dgram) {
            Err(RtpError::RtcpOnRtpPort) => {
                let _ = rtcp.handle_rtcp(now, now << 20, dgram);
                let _ = rtcp.poll_event();
                let rx = seq
                    .as_mut()
                    .map(|s| ReceptionStats::take(0x2222_2222, s, jitter.value()));
                let t = ReportTime {
                    now: rtcp.poll_timeout().unwrap_or(now).max(now),
                    ntp: now << 20,
                    rtp_ts: now as u32,
                };
                let _ = rtcp.handle_timeout(t, rx, &mut report);
            }
            Ok(p) if p.repr.payload_type.0 == TELEPHONE_EVENT_PT => {
                let _ = events.handle_packet(now, p.repr.timestamp, p.payload);
            }
            Ok(p) => match latch.check(from, p.repr.ssrc) {
                LatchVerdict::Reject => errors.count(super::rtp::RtpError::WrongSource),
                LatchVerdict::Latched | LatchVerdict::SsrcChanged { .. } => {
                    seq = Some(SourceSeq::new(p.repr.sequence_number, 1));
                    jitter.reset();
                }
                LatchVerdict::Accept => {
                    if let Some(s) = seq.as_mut() {
                        s.update(p.repr.sequence_number, 1);
                        let _ = (s.cumulative_lost(), s.take_fraction_lost());
                    }
                    jitter.update(i as u64 * 160, p.repr.timestamp);
                }
            },
            Err(e) => errors.count(e),
        }
    }
    ch.command(Command::Disconnect { ch: id });
    let _ = ch.poll_transmit_rtcp();
    while ch.poll_event().is_some() {}
}

/// Splits at `0xFF 0xFE` separators (without allocating).
fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        match d.windows(2).position(|w| w == [0xFF, 0xFE]) {
            Some(i) => {
                rest = Some(&d[i + 2..]);
                Some(&d[..i])
            }
            None => {
                rest = None;
                Some(d)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_seed_file_runs_through_fuzz_rtp_receive() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/rtp_receive");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("seed corpus exists") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            super::fuzz_rtp_receive(&data);
            n += 1;
        }
        assert!(n >= 4, "only {n} seeds");
    }
}
