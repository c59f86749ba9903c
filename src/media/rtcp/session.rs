//! One channel's RTCP session: report scheduling (RFC 3550 §6.2, §6.3,
//! A.7), report contents (§6.4), round-trip time (§6.4.1) and BYE (§6.6).
//!
//! # Contract
//!
//! - Per RTP packet sent: [`RtcpSession::on_rtp_sent`] (sender counts).
//! - Per RTCP datagram received: [`RtcpSession::handle_rtcp`]`(now, ntp,
//!   datagram)`; `ntp` is the wallclock of arrival as a 64-bit NTP timestamp
//!   (the engine reads the clock once per poll wake-up, not this code).
//! - Timer: [`RtcpSession::poll_timeout`] gives the E1 sample at which the
//!   next report is due; at or after it, [`RtcpSession::handle_timeout`]
//!   writes the compound report (SR or RR, then SDES CNAME) into the caller's
//!   buffer and schedules the next one. [`ReceptionStats::take`] builds the
//!   reception numbers from the channel's [`SourceSeq`] and jitter; it
//!   advances the fraction-lost interval, so call it once per report. Pass
//!   `None` when no RTP arrived since the previous report (§6.4.2: blocks
//!   only for sources heard since then).
//! - Disconnect: [`RtcpSession::bye`] writes report + SDES + BYE (§6.6) and
//!   stops the timer.
//! - [`RtcpSession::poll_event`]: the far end's BYE.
//! - Results: [`RtcpSession::rtt`] (round-trip statistics) and
//!   [`RtcpSession::remote_report`] (what the far end says of our stream).
//!
//! The interval (§6.3.1, A.7 `rtcp_interval`): `T = max(Tmin, avg_size * n /
//! rtcp_bw)` with the §6.2 sender/receiver bandwidth split, then randomised
//! uniformly over `[0.5, 1.5] T` and divided by `e - 3/2` (the compensation
//! for timer reconsideration, A.7). `Tmin` is 5 s (configurable), halved for
//! the first report. Randomness comes from a seeded generator inside the
//! session (no OS randomness on the media thread).

use super::compound::{Compound, CompoundWriter, RtcpPacket};
use super::rr::{ReceiverReport, ReportBlock};
use super::sdes::{MAX_ITEM_LEN, Sdes};
use super::sr::{SenderInfo, SenderReport};
use super::{BufferTooSmall, RtcpError, RtcpErrorCounters, ntp_middle32};
use crate::media::seq::SourceSeq;

/// E1 samples per second.
const SAMPLES_PER_S: u64 = 8000;
/// RFC 3550 A.7: `COMPENSATION = e - 3/2`.
const COMPENSATION: f64 = core::f64::consts::E - 1.5;
/// UDP + IPv4 header octets counted in the average RTCP size (§6.2).
const UDP_IP_OVERHEAD: usize = 28;

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpConfig {
    /// §6.2 Tmin: smallest deterministic interval (default 5 s).
    pub min_interval_ms: u32,
    /// §6.2 session bandwidth, bits/s (default 80 000: G.711 at 20 ms with
    /// RTP, UDP and IPv4 headers).
    pub session_bandwidth_bps: u32,
    /// §6.2: the RTCP share of the session bandwidth, per mille (default 50).
    pub rtcp_fraction_permille: u16,
    /// Seed of the interval randomisation (the engine gives each channel its
    /// own).
    pub seed: u64,
}

impl Default for RtcpConfig {
    fn default() -> Self {
        RtcpConfig {
            min_interval_ms: 5000,
            session_bandwidth_bps: 80_000,
            rtcp_fraction_permille: 50,
            seed: 0x5EED,
        }
    }
}

/// The instant a report is written: E1 sample time, its wallclock as NTP,
/// and the RTP timestamp of the same instant (the SR pairs the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportTime {
    pub now: u64,
    pub ntp: u64,
    pub rtp_ts: u32,
}

/// What we report about the source we receive (A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionStats {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// A.8 jitter, timestamp units.
    pub jitter: u32,
}

impl ReceptionStats {
    /// From the channel's sequence state and jitter estimate; advances the
    /// fraction-lost interval (A.3).
    pub fn take(ssrc: u32, seq: &mut SourceSeq, jitter: u32) -> Self {
        ReceptionStats {
            ssrc,
            fraction_lost: seq.take_fraction_lost(),
            cumulative_lost: seq.cumulative_lost(),
            extended_highest_seq: seq.extended_max() as u32,
            jitter,
        }
    }
}

/// Round-trip times from the far end's report blocks, in 1/65536 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttStats {
    pub samples: u64,
    pub last: u32,
    pub min: u32,
    pub max: u32,
    sum: u64,
}

impl RttStats {
    fn add(&mut self, rtt: u32) {
        self.min = if self.samples == 0 {
            rtt
        } else {
            self.min.min(rtt)
        };
        self.max = self.max.max(rtt);
        self.last = rtt;
        self.sum += rtt as u64;
        self.samples += 1;
    }

    /// Mean round-trip time in milliseconds, if any was measured.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum as f64 / self.samples as f64 * 1000.0 / 65536.0)
    }

    /// The latest round-trip time in milliseconds.
    pub fn last_ms(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.last as f64 * 1000.0 / 65536.0)
    }
}

/// What the session reports to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpEvent {
    /// §6.6: the far end's source left.
    Bye { ssrc: u32 },
}

/// Session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpCounters {
    pub reports_sent: u64,
    pub received: u64,
    pub errors: RtcpErrorCounters,
    /// Report blocks whose LSR/DLSR gave a negative round trip.
    pub rtt_rejected: u64,
}

/// See the module doc.
pub struct RtcpSession {
    cfg: RtcpConfig,
    local_ssrc: u32,
    cname: [u8; MAX_ITEM_LEN],
    cname_len: usize,
    rng: u64,
    next_report: u64,
    initial: bool,
    closed: bool,
    /// A.7 `avg_rtcp_size`, octets including UDP/IP.
    avg_rtcp_size: f64,
    packets_sent: u32,
    octets_sent: u32,
    sent_this_interval: bool,
    sent_prev_interval: bool,
    remote_ssrc: Option<u32>,
    remote_sender: bool,
    /// LSR of the last SR from the remote and its arrival (E1 samples).
    last_sr: Option<(u32, u64)>,
    remote_report: Option<ReportBlock>,
    rtt: RttStats,
    event: Option<RtcpEvent>,
    pub counters: RtcpCounters,
}

impl RtcpSession {
    /// A session for our source `local_ssrc` with CNAME `cname` (truncated
    /// to 255 octets), the first report scheduled from `now` (§6.3.2).
    pub fn new(cfg: RtcpConfig, local_ssrc: u32, cname: &[u8], now: u64) -> Self {
        let mut c = [0u8; MAX_ITEM_LEN];
        let cname_len = cname.len().min(MAX_ITEM_LEN);
        c[..cname_len].copy_from_slice(&cname[..cname_len]);
        let first_size = ReceiverReport::buffer_len(1) + Sdes::buffer_len(cname_len);
        let mut s = RtcpSession {
            cfg,
            local_ssrc,
            cname: c,
            cname_len,
            rng: cfg.seed,
            next_report: now,
            initial: true,
            closed: false,
            avg_rtcp_size: (first_size + UDP_IP_OVERHEAD) as f64,
            packets_sent: 0,
            octets_sent: 0,
            sent_this_interval: false,
            sent_prev_interval: false,
            remote_ssrc: None,
            remote_sender: false,
            last_sr: None,
            remote_report: None,
            rtt: RttStats::default(),
            event: None,
            counters: RtcpCounters::default(),
        };
        s.next_report = now + s.interval_samples();
        s
    }

    /// The remote source to report on (from the latch); a new SSRC forgets
    /// the previous one's SR (§8.2).
    pub fn set_remote_ssrc(&mut self, ssrc: u32) {
        if self.remote_ssrc != Some(ssrc) {
            self.remote_ssrc = Some(ssrc);
            self.last_sr = None;
            self.remote_sender = false;
        }
    }

    /// One RTP packet of `payload_len` octets was sent (§6.4.1 counts).
    pub fn on_rtp_sent(&mut self, payload_len: usize) {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
        self.sent_this_interval = true;
    }

    /// `packets` RTP packets with `octets` payload octets in all were sent
    /// since the last call: the same as that many
    /// [`on_rtp_sent`](Self::on_rtp_sent) calls, for an engine that keeps
    /// its own counts and syncs them before each report (so the session's
    /// memory is touched every ~5 s, not per packet).
    pub fn on_rtp_sent_batch(&mut self, packets: u32, octets: u32) {
        if packets == 0 {
            return;
        }
        self.packets_sent = self.packets_sent.wrapping_add(packets);
        self.octets_sent = self.octets_sent.wrapping_add(octets);
        self.sent_this_interval = true;
    }

    /// SplitMix64, uniform in [0, 1).
    fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The deterministic interval of §6.3.1 / A.7, in seconds.
    pub fn deterministic_interval_s(&self) -> f64 {
        let we_sent = self.sent_this_interval || self.sent_prev_interval;
        let members = 1.0 + f64::from(self.remote_ssrc.is_some() as u8);
        let senders = f64::from(we_sent as u8) + f64::from(self.remote_sender as u8);
        let mut bw = self.cfg.session_bandwidth_bps as f64 / 8.0
            * self.cfg.rtcp_fraction_permille as f64
            / 1000.0;
        let mut n = members;
        // §6.2: senders get a quarter of the RTCP bandwidth when they are a
        // quarter or less of the members.
        if senders > 0.0 && senders <= members * 0.25 {
            if we_sent {
                bw *= 0.25;
                n = senders;
            } else {
                bw *= 0.75;
                n -= senders;
            }
        }
        let mut t_min = self.cfg.min_interval_ms as f64 / 1000.0;
        if self.initial {
            t_min /= 2.0;
        }
        let t = if bw > 0.0 {
            self.avg_rtcp_size * n / bw
        } else {
            t_min
        };
        t.max(t_min)
    }

    /// A.7 `rtcp_interval`: randomised and compensated, in E1 samples.
    fn interval_samples(&mut self) -> u64 {
        let t = self.deterministic_interval_s() * (self.random() + 0.5) / COMPENSATION;
        (t * SAMPLES_PER_S as f64).max(1.0) as u64
    }

    /// When the next report is due (E1 samples); `None` after BYE.
    pub fn poll_timeout(&self) -> Option<u64> {
        (!self.closed).then_some(self.next_report)
    }

    /// Writes the report due at `time.now` into `buf` and schedules the
    /// next; `Ok(None)` if none is due.
    pub fn handle_timeout(
        &mut self,
        time: ReportTime,
        reception: Option<ReceptionStats>,
        buf: &mut [u8],
    ) -> Result<Option<usize>, BufferTooSmall> {
        if self.closed || time.now < self.next_report {
            return Ok(None);
        }
        let r = self.write_report(time, reception, buf, false);
        self.initial = false;
        self.next_report = time.now + self.interval_samples();
        r.map(Some)
    }

    /// §6.6: report + SDES + BYE for our source; the session stops.
    pub fn bye(
        &mut self,
        time: ReportTime,
        reception: Option<ReceptionStats>,
        buf: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        self.closed = true;
        self.write_report(time, reception, buf, true)
    }

    fn write_report(
        &mut self,
        time: ReportTime,
        reception: Option<ReceptionStats>,
        buf: &mut [u8],
        bye: bool,
    ) -> Result<usize, BufferTooSmall> {
        let block = reception.map(|r| self.report_block(time.now, r));
        let blocks = block.as_slice();
        // §6.4: an SR if we sent data since the report before last.
        let we_sent = self.sent_this_interval || self.sent_prev_interval;
        let mut w = CompoundWriter::new(buf);
        if we_sent {
            let info = SenderInfo {
                ntp: time.ntp,
                rtp_ts: time.rtp_ts,
                packet_count: self.packets_sent,
                octet_count: self.octets_sent,
            };
            w.sr(self.local_ssrc, &info, blocks)?;
        } else {
            w.rr(self.local_ssrc, blocks)?;
        }
        w.sdes_cname(self.local_ssrc, &self.cname[..self.cname_len])?;
        if bye {
            w.bye(&[self.local_ssrc], b"")?;
        }
        let len = w.len();
        self.sent_prev_interval = self.sent_this_interval;
        self.sent_this_interval = false;
        self.counters.reports_sent += 1;
        self.update_avg_size(len);
        Ok(len)
    }

    /// §6.4.1 report block: reception numbers plus LSR and DLSR.
    pub fn report_block(&self, now: u64, r: ReceptionStats) -> ReportBlock {
        let (lsr, dlsr) = match self.last_sr {
            // DLSR in 1/65536 s: samples * 65536 / 8000.
            Some((lsr, at)) => (
                lsr,
                (now.saturating_sub(at) * 65536 / SAMPLES_PER_S).min(u32::MAX as u64) as u32,
            ),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            cumulative_lost: r.cumulative_lost,
            extended_highest_seq: r.extended_highest_seq,
            jitter: r.jitter,
            lsr,
            dlsr,
        }
    }

    /// A.7: `avg_rtcp_size = 1/16 * size + 15/16 * avg_rtcp_size`.
    fn update_avg_size(&mut self, len: usize) {
        self.avg_rtcp_size += ((len + UDP_IP_OVERHEAD) as f64 - self.avg_rtcp_size) / 16.0;
    }

    /// One received RTCP datagram, arrived at `now` (E1 samples) and
    /// wallclock `ntp`. Malformed datagrams are counted and discarded whole.
    pub fn handle_rtcp(&mut self, now: u64, ntp: u64, datagram: &[u8]) -> Result<(), RtcpError> {
        self.counters.received += 1;
        let c = match Compound::parse(datagram) {
            Ok(c) => c,
            Err(e) => {
                self.counters.errors.count(e);
                return Err(e);
            }
        };
        self.update_avg_size(datagram.len());
        for p in c.packets() {
            match p {
                RtcpPacket::Sr(sr) => self.on_sr(now, ntp, &sr),
                RtcpPacket::Rr(rr) => {
                    if rr.ssrc != self.local_ssrc {
                        self.note_remote(rr.ssrc);
                        rr.blocks().for_each(|b| self.on_block(ntp, b));
                    }
                }
                RtcpPacket::Bye(bye) => {
                    if bye.sources().any(|s| Some(s) == self.remote_ssrc) {
                        self.event = self.remote_ssrc.map(|ssrc| RtcpEvent::Bye { ssrc });
                    }
                }
                RtcpPacket::Sdes(_) | RtcpPacket::Other { .. } => {}
            }
        }
        Ok(())
    }

    fn note_remote(&mut self, ssrc: u32) {
        if self.remote_ssrc.is_none() {
            self.remote_ssrc = Some(ssrc);
        }
    }

    fn on_sr(&mut self, now: u64, ntp: u64, sr: &SenderReport<'_>) {
        if sr.ssrc == self.local_ssrc {
            return; // our own report looped back
        }
        self.note_remote(sr.ssrc);
        if Some(sr.ssrc) == self.remote_ssrc {
            self.remote_sender = true;
            self.last_sr = Some((ntp_middle32(sr.info.ntp), now));
        }
        sr.blocks().for_each(|b| self.on_block(ntp, b));
    }

    /// §6.4.1: `RTT = A - LSR - DLSR`, A the arrival time's middle 32 bits.
    fn on_block(&mut self, arrival_ntp: u64, b: ReportBlock) {
        if b.ssrc != self.local_ssrc {
            return;
        }
        self.remote_report = Some(b);
        if b.lsr == 0 {
            return; // no SR received by the far end yet
        }
        let since_sr = ntp_middle32(arrival_ntp).wrapping_sub(b.lsr);
        match since_sr.checked_sub(b.dlsr) {
            Some(rtt) if since_sr < 0x8000_0000 => self.rtt.add(rtt),
            _ => self.counters.rtt_rejected += 1,
        }
    }

    /// The far end's BYE, once.
    pub fn poll_event(&mut self) -> Option<RtcpEvent> {
        self.event.take()
    }

    pub fn rtt(&self) -> RttStats {
        self.rtt
    }

    /// The far end's latest report block about our stream.
    pub fn remote_report(&self) -> Option<ReportBlock> {
        self.remote_report
    }

    /// RTP packets and payload octets sent (the SR counts).
    pub fn sent(&self) -> (u32, u32) {
        (self.packets_sent, self.octets_sent)
    }

    /// Largest datagram [`handle_timeout`](Self::handle_timeout) or
    /// [`bye`](Self::bye) writes (SR with one block, SDES, BYE).
    pub fn max_report_len(&self) -> usize {
        SenderReport::buffer_len(1) + Sdes::buffer_len(self.cname_len) + 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtcp::Header;

    const LOCAL: u32 = 0x1111_1111;
    const REMOTE: u32 = 0x2222_2222;

    fn time(now: u64, ntp: u64) -> ReportTime {
        ReportTime {
            now,
            ntp,
            rtp_ts: now as u32,
        }
    }

    /// The far end's SR (no blocks) carrying `ntp`.
    fn remote_sr(ntp: u64, blocks: &[ReportBlock]) -> Vec<u8> {
        let mut buf = [0u8; 128];
        let info = SenderInfo {
            ntp,
            rtp_ts: 0,
            packet_count: 10,
            octet_count: 1600,
        };
        let mut w = CompoundWriter::new(&mut buf);
        w.sr(REMOTE, &info, blocks).unwrap();
        let n = w.len();
        buf[..n].to_vec()
    }

    #[test]
    fn report_contents_against_a_hand_computation() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"gw@192.0.2.1", 0);
        // Remote packets 0..100 with every tenth (seq % 10 == 3) lost.
        let mut seq = SourceSeq::new(0, 1);
        for q in 0u16..100 {
            if q % 10 != 3 {
                seq.update(q, 1);
            }
        }
        // The far end's SR (NTP 0x0000_1234_5678_9ABC) arrives 0.5 s before
        // our report is due; we have sent nothing: an RR.
        let due = s.poll_timeout().unwrap();
        assert!(due > 4000);
        s.handle_rtcp(due - 4000, 0, &remote_sr(0x0000_1234_5678_9ABC, &[]))
            .unwrap();
        let mut buf = [0u8; 256];
        let rx = ReceptionStats::take(REMOTE, &mut seq, 37);
        assert_eq!(
            s.handle_timeout(time(due - 1, 0), Some(rx), &mut buf),
            Ok(None)
        );
        let n = s
            .handle_timeout(time(due, 0), Some(rx), &mut buf)
            .unwrap()
            .unwrap();
        // Hand computation: 10 of 100 lost -> fraction 10*256/100 = 25,
        // cumulative 10, highest 99, LSR = middle 32 bits = 0x12345678,
        // DLSR = 0.5 s = 32768 / 65536 s.
        #[rustfmt::skip]
        let mut want = vec![
            0x81, 201, 0, 7,
            0x11, 0x11, 0x11, 0x11,
            0x22, 0x22, 0x22, 0x22,
            25, 0, 0, 10,
            0, 0, 0, 99,
            0, 0, 0, 37,
            0x12, 0x34, 0x56, 0x78,
        ];
        want.extend_from_slice(&32768u32.to_be_bytes());
        assert_eq!(&buf[..32], &want[..]);
        // Then SDES CNAME.
        assert_eq!(&buf[32..36], &[0x81, 202, 0, 5]);
        assert_eq!(&buf[40..42], &[1, 12]);
        assert_eq!(&buf[42..54], b"gw@192.0.2.1");
        assert_eq!(n, 32 + 24);
        assert!(Compound::parse(&buf[..n]).is_ok());
    }

    #[test]
    fn sender_sends_sr_with_counts_and_rtp_ntp_pair() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"x", 0);
        for _ in 0..50 {
            s.on_rtp_sent(160);
        }
        let due = s.poll_timeout().unwrap();
        let mut buf = [0u8; 128];
        let t = ReportTime {
            now: due,
            ntp: 0xAAAA_BBBB_CCCC_DDDD,
            rtp_ts: 123_456,
        };
        let n = s.handle_timeout(t, None, &mut buf).unwrap().unwrap();
        let h = Header::parse(&buf).unwrap();
        let sr = SenderReport::parse(&buf[..h.packet_len()], &h).unwrap();
        assert_eq!(sr.ssrc, LOCAL);
        assert_eq!(
            sr.info,
            SenderInfo {
                ntp: 0xAAAA_BBBB_CCCC_DDDD,
                rtp_ts: 123_456,
                packet_count: 50,
                octet_count: 8000,
            }
        );
        assert_eq!(sr.blocks().count(), 0);
        assert!(n <= s.max_report_len());
        // §6.4: still an SR in the next interval (sent in the one before).
        let due = s.poll_timeout().unwrap();
        s.handle_timeout(time(due, 0), None, &mut buf).unwrap();
        assert_eq!(buf[1], 200);
        // Two intervals without sending: RR.
        let due = s.poll_timeout().unwrap();
        s.handle_timeout(time(due, 0), None, &mut buf).unwrap();
        assert_eq!(buf[1], 201);
    }

    #[test]
    fn interval_bounds_per_a7() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"x", 0);
        s.set_remote_ssrc(REMOTE);
        let first = s.poll_timeout().unwrap();
        // Initial: Tmin/2 = 2.5 s, times [0.5, 1.5], / (e - 1.5).
        let lo0 = (2.5 * 0.5 / COMPENSATION * 8000.0) as u64;
        let hi0 = (2.5 * 1.5 / COMPENSATION * 8000.0) as u64;
        assert!((lo0..=hi0).contains(&first), "{first}");
        let (lo, hi) = (
            (5.0 * 0.5 / COMPENSATION * 8000.0) as u64,
            (5.0 * 1.5 / COMPENSATION * 8000.0) as u64,
        );
        let mut buf = [0u8; 128];
        let mut now = first;
        let (mut min, mut max, mut sum) = (u64::MAX, 0u64, 0u64);
        let n = 2000;
        for _ in 0..n {
            s.handle_timeout(time(now, 0), None, &mut buf)
                .unwrap()
                .unwrap();
            let next = s.poll_timeout().unwrap();
            let iv = next - now;
            assert!((lo..=hi).contains(&iv), "{iv} not in {lo}..={hi}");
            (min, max, sum) = (min.min(iv), max.max(iv), sum + iv);
            now = next;
        }
        // Uniform over the range: the extremes are reached and the mean is
        // 5 s / (e - 1.5) = 4.10 s.
        assert!(min < lo + (hi - lo) / 50 && max > hi - (hi - lo) / 50);
        let mean_s = sum as f64 / n as f64 / 8000.0;
        assert!((mean_s - 5.0 / COMPENSATION).abs() < 0.1, "{mean_s}");
    }

    #[test]
    fn bandwidth_term_wins_at_low_bandwidth_and_min_is_configurable() {
        let cfg = RtcpConfig {
            session_bandwidth_bps: 2_000,
            ..RtcpConfig::default()
        };
        let mut s = RtcpSession::new(cfg, LOCAL, b"x", 0);
        s.set_remote_ssrc(REMOTE);
        s.initial = false;
        // 5 % of 2000 bit/s = 12.5 octets/s; 2 members, no senders.
        let t = s.deterministic_interval_s();
        assert!(
            (t - s.avg_rtcp_size * 2.0 / 12.5).abs() < 1e-9 && t > 5.0,
            "{t}"
        );
        let cfg = RtcpConfig {
            min_interval_ms: 1000,
            ..RtcpConfig::default()
        };
        let mut s = RtcpSession::new(cfg, LOCAL, b"x", 0);
        s.initial = false;
        assert_eq!(s.deterministic_interval_s(), 1.0);
    }

    #[test]
    fn round_trip_from_the_far_end_report() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"x", 0);
        s.on_rtp_sent(160);
        let mut buf = [0u8; 128];
        // Our SR at NTP second 1000.0.
        let t1: u64 = 1000 << 32;
        let due = s.poll_timeout().unwrap();
        s.handle_timeout(
            ReportTime {
                now: due,
                ntp: t1,
                rtp_ts: 0,
            },
            None,
            &mut buf,
        )
        .unwrap();
        // The far end holds it 0.25 s and its RR arrives 0.35 s after our
        // SR left: RTT 0.1 s.
        let block = ReportBlock {
            ssrc: LOCAL,
            fraction_lost: 12,
            cumulative_lost: 3,
            extended_highest_seq: 500,
            jitter: 20,
            lsr: ntp_middle32(t1),
            dlsr: 16384,
        };
        let mut rr = [0u8; 64];
        let n = ReceiverReport::emit(REMOTE, &[block], &mut rr).unwrap();
        let arrival = t1 + (35 * (1u64 << 32)) / 100;
        s.handle_rtcp(due + 2800, arrival, &rr[..n]).unwrap();
        let rtt = s.rtt();
        assert_eq!(rtt.samples, 1);
        assert!((rtt.last_ms().unwrap() - 100.0).abs() < 0.1, "{rtt:?}");
        assert_eq!(s.remote_report(), Some(block));
        // LSR 0 (no SR seen by the far end): no RTT.
        let n = ReceiverReport::emit(REMOTE, &[ReportBlock { lsr: 0, ..block }], &mut rr).unwrap();
        s.handle_rtcp(due + 3000, arrival, &rr[..n]).unwrap();
        assert_eq!(s.rtt().samples, 1);
        // DLSR larger than the time since the SR: rejected, counted.
        let n = ReceiverReport::emit(
            REMOTE,
            &[ReportBlock {
                dlsr: 65536,
                ..block
            }],
            &mut rr,
        )
        .unwrap();
        s.handle_rtcp(due + 3000, arrival, &rr[..n]).unwrap();
        assert_eq!(s.counters.rtt_rejected, 1);
        assert_eq!(s.rtt().mean_ms().map(|m| m.round()), Some(100.0));
    }

    #[test]
    fn bye_on_disconnect_and_from_the_far_end() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"gw", 0);
        s.set_remote_ssrc(REMOTE);
        let mut buf = [0u8; 128];
        let n = s.bye(time(100, 0), None, &mut buf).unwrap();
        let c = Compound::parse(&buf[..n]).unwrap();
        let kinds: Vec<_> = c
            .packets()
            .map(|p| match p {
                RtcpPacket::Rr(_) => "RR",
                RtcpPacket::Sdes(_) => "SDES",
                RtcpPacket::Bye(b) if b.sources().eq([LOCAL]) => "BYE",
                _ => "?",
            })
            .collect();
        assert_eq!(kinds, ["RR", "SDES", "BYE"]);
        assert_eq!(s.poll_timeout(), None);
        // The far end's BYE.
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"gw", 0);
        let mut far = [0u8; 64];
        let mut w = CompoundWriter::new(&mut far);
        w.rr(REMOTE, &[]).unwrap().bye(&[REMOTE], b"bye").unwrap();
        let n = w.len();
        s.handle_rtcp(0, 0, &far[..n]).unwrap();
        assert_eq!(s.poll_event(), Some(RtcpEvent::Bye { ssrc: REMOTE }));
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn two_sessions_measure_the_round_trip_of_the_path() {
        // A and B both send audio; the path delays each datagram 40 ms
        // (320 samples, two steps of this loop); the wallclocks differ by an
        // arbitrary offset, which RTT = A - LSR - DLSR does not depend on.
        const DELAY: u64 = 320;
        let ntp_of = |now: u64, offset: u64| offset + (now << 32) / 8000;
        let (oa, ob) = (3_900_000_000u64 << 32, 3_800_000_000u64 << 32);
        let mut a = RtcpSession::new(
            RtcpConfig {
                seed: 1,
                ..Default::default()
            },
            LOCAL,
            b"a",
            0,
        );
        let mut b = RtcpSession::new(
            RtcpConfig {
                seed: 2,
                ..Default::default()
            },
            REMOTE,
            b"b",
            0,
        );
        a.set_remote_ssrc(REMOTE);
        b.set_remote_ssrc(LOCAL);
        let mut seq_a = SourceSeq::new(0, 1);
        let mut seq_b = SourceSeq::new(0, 1);
        let mut in_flight: Vec<(u64, bool, Vec<u8>)> = Vec::new();
        let mut buf = [0u8; 256];
        for now in (0..8000 * 60u64).step_by(160) {
            let q = (now / 160) as u16;
            a.on_rtp_sent(160);
            b.on_rtp_sent(160);
            seq_a.update(q, 1);
            seq_b.update(q, 1);
            for (sess, seq, to_a, off, peer) in [
                (&mut a, &mut seq_a, false, oa, REMOTE),
                (&mut b, &mut seq_b, true, ob, LOCAL),
            ] {
                if sess.poll_timeout().is_some_and(|t| t <= now) {
                    let t = ReportTime {
                        now,
                        ntp: ntp_of(now, off),
                        rtp_ts: now as u32,
                    };
                    let rx = ReceptionStats::take(peer, seq, 0);
                    let n = sess.handle_timeout(t, Some(rx), &mut buf).unwrap().unwrap();
                    in_flight.push((now + DELAY, to_a, buf[..n].to_vec()));
                }
            }
            in_flight.retain(|(at, to_a, d)| {
                if *at > now {
                    return true;
                }
                let (sess, off) = if *to_a { (&mut a, oa) } else { (&mut b, ob) };
                sess.handle_rtcp(now, ntp_of(now, off), d).unwrap();
                false
            });
        }
        for s in [&a, &b] {
            let rtt = s.rtt();
            assert!(rtt.samples >= 8, "{rtt:?}");
            // 60 ms, within the 20 ms granularity of this loop.
            let (lo, hi) = (
                rtt.min as f64 * 1000.0 / 65536.0,
                rtt.max as f64 * 1000.0 / 65536.0,
            );
            assert!(lo >= 59.0 && hi <= 81.0, "{lo}..{hi} ms");
            assert_eq!(s.remote_report().map(|r| r.fraction_lost), Some(0));
        }
    }

    #[test]
    fn malformed_datagrams_are_counted_by_kind() {
        let mut s = RtcpSession::new(RtcpConfig::default(), LOCAL, b"gw", 0);
        assert_eq!(s.handle_rtcp(0, 0, &[0x80]), Err(RtcpError::TooShort));
        assert_eq!(
            s.handle_rtcp(0, 0, &[0x81, 202, 0, 0]),
            Err(RtcpError::FirstNotReport)
        );
        assert_eq!(s.counters.errors.total(), 2);
        assert_eq!(s.counters.errors.get(RtcpError::TooShort), 1);
        assert_eq!(s.counters.received, 2);
    }
}
