//! The SAToP interworking function for one E1 (RFC 4553 §6.2), sans-IO.
//!
//! [`SatopPw`] is both directions of one pseudowire: the CE-bound side
//! (parse, playout buffer, loss-of-packets state) and the PSN-bound side
//! (sequence numbers, L and R bits, RTP header). It never touches a socket
//! or a clock; `now_us` is a monotonic time in microseconds from the caller.
//!
//! # Contract
//!
//! - [`SatopPw::handle_datagram`] for every datagram from the far end.
//! - [`SatopPw::handle_timeout`] when [`SatopPw::poll_timeout`] is reached.
//! - After either, [`SatopPw::poll_play`] until it returns `false`: each
//!   `true` is one payload of E1 octets to hand to the line side, and owes
//!   exactly one packet back: [`SatopPw::emit_header`] writes its header in
//!   front of one payload of our line octets (loop timing, "one out per one
//!   in", DESIGN.md §5).
//! - [`SatopPw::poll_event`] after that, for LOS / remote indications.
//!
//! # Timing
//!
//! - [`Timing::Loop`] (the default): the far end's packets are the clock.
//!   A packet with sequence number `s` makes every slot up to `s - depth`
//!   due, so the slot of `s` plays on the `depth`-th packet after it. When
//!   no packet has arrived for 1.5 packet periods the free-run timer plays
//!   one slot per period on our own clock; LOS (the loss-of-packets state)
//!   follows after [`SatopParams::lops_enter_packets`] missing ones. Plays are
//!   paced by a credit of `depth` periods refilled at our clock + 0.1 %, so
//!   two loop-timed ends facing each other (a misconfiguration: nobody has
//!   a clock) cannot spin up a packet storm.
//! - [`Timing::Internal`]: plays are our own 1-packet-period timer; the
//!   far end's packets only fill the buffer. For the end that is the clock
//!   master (a simulated exchange, a test peer).
//!
//! # Packet loss state (RFC 4553 §6.2.2)
//!
//! After `lops_enter_packets` consecutive plays without a packet (missing,
//! underrun, or nothing received at all) the pseudowire is in LOPS: that is
//! this span's LOS ([`SatopEvent::Los`]), and our packets carry R. After
//! `lops_exit_packets` consecutive plays of received packets it clears.
//! L is set on our packets while the caller says our line side is in
//! LOS/AIS ([`SatopPw::set_local_fault`]); a received L plays all ones.

use super::packet::{
    ControlWord, PACKET_ERROR_KINDS, RtpHeader, SatopPacket, SatopPacketError, emit_header,
    header_len, len_field,
};
use super::playout::{InsertOutcome, PlayOutcome, PlayoutBuffer, PlayoutStats, seq_diff};
use crate::line::driver::timing::{Pacer, Timing};
use std::fmt;
use tracing::{info, warn};

/// Octets per E1 frame and E1 frames per second.
const FRAME_OCTETS: usize = crate::line::e1::FRAME_OCTETS;
const FRAME_US: u64 = 125;
/// RFC 4553 §5.1: the E1 payload every implementation must support.
pub const DEFAULT_PAYLOAD_OCTETS: usize = 256;
/// Largest payload we accept in configuration (the board profile's limit).
pub const MAX_PAYLOAD_OCTETS: usize = 1024;
/// Default playout buffer depth.
pub const DEFAULT_PLAYOUT_MS: u16 = 4;
/// RFC 5604 pwTDMCfgConsecMissPktsOutSynch (range 1-15): consecutive
/// missing packets that enter the loss-of-packets state.
pub const DEFAULT_LOPS_ENTER: u16 = 10;
/// RFC 5604 pwTDMCfgConsecPktsInSynch: consecutive packets that leave it.
pub const DEFAULT_LOPS_EXIT: u16 = 32;
/// RTP payload type when the RTP header is used (dynamic range, RFC 3551).
pub const DEFAULT_RTP_PT: u8 = 96;
const EVENT_RING: usize = 8;

/// Everything one SAToP span needs: plain values (the board profile's
/// `local`, `remote`, `payload_octets`, `rtp_header`, `playout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SatopParams {
    /// Our UDP address (bind) and the far end's (send, and the only source
    /// accepted: other senders are stray packets, RFC 4553 §6.3).
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    /// TDM octets per packet: a whole number of E1 frames (RFC 4553 §5.1).
    pub payload_octets: usize,
    /// Playout delay (RFC 4553 §6.2.2 jitter buffer); rounded up to whole
    /// packets. The buffer holds twice this.
    pub playout_ms: u16,
    /// RTP header in front of the control word (RFC 4553 §4.3.2).
    pub rtp_header: bool,
    pub rtp_payload_type: u8,
    pub ssrc: u32,
    /// First sequence number we send (RFC 4553 §4.3.1: SHOULD be random).
    pub initial_seq: u16,
    pub timing: Timing,
    /// Consecutive missing packets entering LOPS / received leaving it.
    pub lops_enter_packets: u16,
    pub lops_exit_packets: u16,
}

impl SatopParams {
    /// The defaults of RFC 4553 for E1 (256 octets, no RTP), a 4 ms
    /// playout buffer, loop timing, and a random initial sequence number
    /// and SSRC.
    pub fn new(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> SatopParams {
        let r = random_u64();
        SatopParams {
            local,
            remote,
            payload_octets: DEFAULT_PAYLOAD_OCTETS,
            playout_ms: DEFAULT_PLAYOUT_MS,
            rtp_header: false,
            rtp_payload_type: DEFAULT_RTP_PT,
            ssrc: (r >> 16) as u32,
            initial_seq: r as u16,
            timing: Timing::Loop,
            lops_enter_packets: DEFAULT_LOPS_ENTER,
            lops_exit_packets: DEFAULT_LOPS_EXIT,
        }
    }

    /// One packet's worth of line time.
    pub fn packet_period_us(&self) -> u64 {
        (self.payload_octets / FRAME_OCTETS) as u64 * FRAME_US
    }

    /// Playout delay in packets (at least 1).
    pub fn depth_packets(&self) -> u16 {
        let us = u64::from(self.playout_ms) * 1000;
        let period = self.packet_period_us().max(1);
        us.div_ceil(period).clamp(1, 1024) as u16
    }

    /// Checks what config validation should already have refused.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.payload_octets == 0
            || !self.payload_octets.is_multiple_of(FRAME_OCTETS)
            || self.payload_octets > MAX_PAYLOAD_OCTETS
        {
            return Err("payload_octets must be a multiple of 32, at most 1024");
        }
        if !(1..=64).contains(&self.playout_ms) {
            return Err("playout_ms must be 1-64");
        }
        if self.rtp_payload_type > 127 {
            return Err("RTP payload type must be 0-127");
        }
        if self.lops_enter_packets == 0 || self.lops_exit_packets == 0 {
            return Err("LOPS thresholds must be at least 1 packet");
        }
        if self.remote.port() == 0 {
            return Err("the far end needs a port");
        }
        Ok(())
    }
}

/// A random 64-bit value without a crate: std seeds every `RandomState`
/// from the OS's random source.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5a70_5e4c);
    h.finish()
}

/// State changes the media thread reports (DESIGN.md §6: every fault seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatopEvent {
    /// Loss-of-packets state entered (`true`) or left: the span's LOS.
    Los(bool),
    /// The far end's R bit: it is losing our packets.
    RemoteLoss(bool),
    /// The far end's L bit: its E1 attachment circuit is in fault.
    RemoteFault(bool),
}

/// What the pseudowire counted (RFC 4553 §6.4 / RFC 5604 performance
/// monitoring), plus the playout buffer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SatopStats {
    /// Well-formed packets from `remote` (duplicates and late ones too).
    pub packets_received: u64,
    /// Packets we built, one per play (socket failures are counted by the
    /// port).
    pub packets_sent: u64,
    /// Malformed datagrams by [`SatopPacketError::kind`] (RFC 4553 §6.3).
    pub malformed: [u64; PACKET_ERROR_KINDS],
    /// From another source than `remote` (RFC 4553 §6.3 stray packets).
    pub stray: u64,
    /// Received with RSV or FRG not zero (ignored, RFC 4553 §4.3.1).
    pub reserved_bits_set: u64,
    pub l_bit_received: u64,
    pub r_bit_received: u64,
    /// Plays made by the free-run / internal timer.
    pub timer_plays: u64,
    /// Timer ticks given up because the caller was late by more than the
    /// buffer (the thread stalled).
    pub timer_slips: u64,
    /// Transitions into the loss-of-packets state.
    pub lops_entries: u64,
    /// Events lost because the ring was full between drains.
    pub events_dropped: u64,
    pub playout: PlayoutStats,
}

impl SatopStats {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

/// One SAToP pseudowire, both directions; see the module doc.
pub struct SatopPw {
    params: SatopParams,
    period_us: u64,
    playout: PlayoutBuffer,
    /// Loop timing: plays owed to received packets end when the play
    /// position reaches this sequence number.
    loop_target: u16,
    /// Plays owed to the timer.
    timer_owed: u32,
    /// Next timer deadline (free-run in loop timing, the clock in internal).
    next_tick_us: u64,
    /// Loop timing: at most our clock + 0.1 %, bursts of `depth`.
    pacer: Pacer,
    tx_seq: u16,
    tx_timestamp: u32,
    local_fault: bool,
    lops: bool,
    remote_loss: bool,
    remote_fault: bool,
    consecutive_missing: u32,
    consecutive_received: u32,
    events: [Option<SatopEvent>; EVENT_RING],
    ev_head: usize,
    ev_len: usize,
    /// Log-once masks: malformed kinds, stray, reserved bits.
    logged_malformed: u8,
    logged_stray: bool,
    logged_reserved: bool,
    stats: SatopStats,
}

impl fmt::Debug for SatopPw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SatopPw")
            .field("remote", &self.params.remote)
            .field("timing", &self.params.timing)
            .field("lops", &self.lops)
            .field("playout", &self.playout)
            .finish()
    }
}

impl SatopPw {
    /// Allocates the playout buffer; nothing allocates afterwards. The
    /// pseudowire starts in the intermediate state, free-running from
    /// `now_us`, not yet in LOS (it enters it after `lops_enter_packets`
    /// periods without packets).
    pub fn new(params: SatopParams, now_us: u64) -> Result<SatopPw, &'static str> {
        params.check()?;
        let period_us = params.packet_period_us();
        let depth = params.depth_packets();
        Ok(SatopPw {
            params,
            period_us,
            playout: PlayoutBuffer::new(params.payload_octets, depth),
            loop_target: 0,
            timer_owed: 0,
            next_tick_us: now_us + period_us,
            pacer: Pacer::new(period_us, u64::from(depth), now_us),
            tx_seq: params.initial_seq,
            tx_timestamp: 0,
            local_fault: false,
            lops: false,
            remote_loss: false,
            remote_fault: false,
            consecutive_missing: 0,
            consecutive_received: 0,
            events: [None; EVENT_RING],
            ev_head: 0,
            ev_len: 0,
            logged_malformed: 0,
            logged_stray: false,
            logged_reserved: false,
            stats: SatopStats::default(),
        })
    }

    pub fn params(&self) -> &SatopParams {
        &self.params
    }

    pub fn payload_octets(&self) -> usize {
        self.params.payload_octets
    }

    /// Octets of the SAToP header in front of each payload we send.
    pub fn header_len(&self) -> usize {
        header_len(self.params.rtp_header)
    }

    pub fn stats(&self) -> SatopStats {
        let mut s = self.stats;
        s.playout = self.playout.stats();
        s
    }

    /// In the loss-of-packets state: the span's LOS.
    pub fn los(&self) -> bool {
        self.lops
    }

    /// The far end's last R bit.
    pub fn remote_loss(&self) -> bool {
        self.remote_loss
    }

    /// The far end's last L bit.
    pub fn remote_fault(&self) -> bool {
        self.remote_fault
    }

    pub fn playout(&self) -> &PlayoutBuffer {
        &self.playout
    }

    /// Our line side is in LOS or AIS: send L (RFC 4553 §4.3.1) until
    /// cleared.
    pub fn set_local_fault(&mut self, fault: bool) {
        if fault != self.local_fault {
            info!(remote = %self.params.remote, fault, "SAToP: L bit {}", if fault { "set" } else { "cleared" });
        }
        self.local_fault = fault;
    }

    /// A datagram from the far end. Malformed ones are counted, logged once
    /// per kind and returned as the error; they are otherwise ignored (their
    /// slot plays as missing, RFC 4553 §6.3).
    pub fn handle_datagram(
        &mut self,
        now_us: u64,
        datagram: &[u8],
    ) -> Result<(), SatopPacketError> {
        let packet = match self.parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.malformed(e);
                return Err(e);
            }
        };
        self.stats.packets_received += 1;
        let cw = packet.cw;
        if (cw.rsv != 0 || cw.frg != 0) && !std::mem::replace(&mut self.logged_reserved, true) {
            warn!(remote = %self.params.remote, rsv = cw.rsv, frg = cw.frg,
                "SAToP: control word RSV/FRG not zero; ignored (RFC 4553 §4.3.1), logged once");
        }
        if cw.rsv != 0 || cw.frg != 0 {
            self.stats.reserved_bits_set += 1;
        }
        self.stats.l_bit_received += u64::from(cw.l);
        self.stats.r_bit_received += u64::from(cw.r);
        // RFC 4553 §4.3.1 / §6.2.2: an L packet plays all ones even when
        // its payload is present.
        let payload = if cw.l { None } else { Some(packet.payload) };
        let outcome = self.playout.insert(cw.seq, payload);
        match outcome {
            InsertOutcome::Late | InsertOutcome::Duplicate => return Ok(()),
            InsertOutcome::Primed | InsertOutcome::Resync | InsertOutcome::Overrun => {
                self.loop_target = self.playout.head();
            }
            InsertOutcome::Stored | InsertOutcome::Reordered => {}
        }
        self.set_remote(cw.l, cw.r);
        if self.params.timing == Timing::Loop {
            // The far end is alive: its packets are the clock, the free-run
            // timer waits 1.5 periods for the next one.
            self.next_tick_us = now_us + self.period_us * 3 / 2;
            let due = self.playout.plays_until_due(cw.seq);
            let target = self.playout.head().wrapping_add(due);
            if seq_diff(target, self.loop_target) > 0 {
                self.loop_target = target;
            }
        }
        Ok(())
    }

    /// A datagram from another address than `remote` (RFC 4553 §6.3:
    /// discarded, and not a loss).
    pub fn handle_stray(&mut self, from: std::net::SocketAddr) {
        self.stats.stray += 1;
        if !std::mem::replace(&mut self.logged_stray, true) {
            warn!(remote = %self.params.remote, %from, "SAToP: packet from a stray source dropped (logged once)");
        }
    }

    /// The timer: owes one play per elapsed packet period.
    pub fn handle_timeout(&mut self, now_us: u64) {
        let mut ticks = 0u32;
        while now_us >= self.next_tick_us {
            ticks += 1;
            self.next_tick_us += self.period_us;
            if ticks > u32::from(self.playout.capacity()) {
                // We were away longer than the buffer: start the clock again
                // rather than burst.
                self.stats.timer_slips += 1;
                self.next_tick_us = now_us + self.period_us;
                break;
            }
        }
        self.timer_owed = (self.timer_owed + ticks).min(u32::from(self.playout.capacity()));
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> u64 {
        if self.params.timing == Timing::Loop && self.owed() {
            return self.next_tick_us.min(self.pacer.ready_at());
        }
        self.next_tick_us
    }

    /// Plays the next due slot into `out` (one payload long). Returns
    /// `false` when nothing is due; each `true` owes one packet:
    /// [`emit_header`](Self::emit_header) it.
    pub fn poll_play(&mut self, now_us: u64, out: &mut [u8]) -> bool {
        if !self.owed() {
            return false;
        }
        if self.params.timing == Timing::Loop && !self.pacer.take(now_us) {
            return false;
        }
        if self.timer_owed > 0 {
            self.timer_owed -= 1;
            self.stats.timer_plays += 1;
        }
        let outcome = self.playout.play(out);
        self.after_play(outcome);
        true
    }

    /// Writes the header of our next packet into `out[..header_len()]`;
    /// the payload (one payload of our line octets) follows it. Returns the
    /// header length.
    pub fn emit_header(&mut self, out: &mut [u8]) -> usize {
        let header = self.header_len();
        let cw = ControlWord {
            l: self.local_fault,
            r: self.lops,
            rsv: 0,
            frg: 0,
            len: len_field(header, self.params.payload_octets),
            seq: self.tx_seq,
        };
        let rtp = self.params.rtp_header.then_some(RtpHeader {
            marker: false,
            payload_type: self.params.rtp_payload_type,
            seq: self.tx_seq,
            timestamp: self.tx_timestamp,
            ssrc: self.params.ssrc,
        });
        let n = emit_header(&cw, rtp.as_ref(), out);
        self.tx_seq = self.tx_seq.wrapping_add(1);
        // RFC 4553 §4.3.2: timestamp in units of the 8 kHz frame clock.
        self.tx_timestamp = self
            .tx_timestamp
            .wrapping_add((self.params.payload_octets / FRAME_OCTETS) as u32);
        self.stats.packets_sent += 1;
        n
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<SatopEvent> {
        if self.ev_len == 0 {
            return None;
        }
        let e = self.events[self.ev_head].take();
        self.ev_head = (self.ev_head + 1) % EVENT_RING;
        self.ev_len -= 1;
        e
    }

    fn owed(&self) -> bool {
        self.timer_owed > 0
            || (self.params.timing == Timing::Loop
                && self.playout.is_primed()
                && seq_diff(self.loop_target, self.playout.head()) > 0)
    }

    fn parse<'a>(&self, datagram: &'a [u8]) -> Result<SatopPacket<'a>, SatopPacketError> {
        let packet = SatopPacket::parse(datagram, self.params.rtp_header)?;
        let expected = self.params.payload_octets;
        let got = packet.payload.len();
        // RFC 4553 §6.3: malformed = size other than expected, taking L into
        // account (the payload MAY be omitted under L, §4.3.1).
        if got != expected && !(packet.cw.l && got == 0) {
            return Err(SatopPacketError::PayloadSize { got, expected });
        }
        Ok(packet)
    }

    fn malformed(&mut self, e: SatopPacketError) {
        let k = e.kind();
        self.stats.malformed[k] += 1;
        let bit = 1u8 << k;
        if self.logged_malformed & bit == 0 {
            self.logged_malformed |= bit;
            warn!(remote = %self.params.remote, error = %e, "SAToP: malformed packet dropped (logged once per kind)");
        }
    }

    fn after_play(&mut self, outcome: PlayOutcome) {
        match outcome {
            PlayOutcome::Data | PlayOutcome::LBit => {
                self.consecutive_missing = 0;
                self.consecutive_received += 1;
                if self.lops
                    && self.consecutive_received >= u32::from(self.params.lops_exit_packets)
                {
                    self.set_lops(false);
                }
            }
            PlayOutcome::Missing | PlayOutcome::Underrun => self.count_missing(),
            // Idle fill before the first packet counts as missing (no
            // signal at all); the fill right after priming does not.
            PlayOutcome::Idle if !self.playout.is_primed() => self.count_missing(),
            PlayOutcome::Idle => {}
        }
    }

    fn count_missing(&mut self) {
        self.consecutive_received = 0;
        self.consecutive_missing += 1;
        if !self.lops && self.consecutive_missing >= u32::from(self.params.lops_enter_packets) {
            self.set_lops(true);
        }
    }

    fn set_lops(&mut self, on: bool) {
        self.lops = on;
        if on {
            self.stats.lops_entries += 1;
            warn!(remote = %self.params.remote, "SAToP: loss of packets (LOS), sending R");
        } else {
            info!(remote = %self.params.remote, "SAToP: packets flowing again, LOS cleared");
        }
        self.push_event(SatopEvent::Los(on));
    }

    fn set_remote(&mut self, l: bool, r: bool) {
        if l != self.remote_fault {
            self.remote_fault = l;
            info!(remote = %self.params.remote, l, "SAToP: far end L bit changed");
            self.push_event(SatopEvent::RemoteFault(l));
        }
        if r != self.remote_loss {
            self.remote_loss = r;
            info!(remote = %self.params.remote, r, "SAToP: far end R bit changed");
            self.push_event(SatopEvent::RemoteLoss(r));
        }
    }

    fn push_event(&mut self, e: SatopEvent) {
        if self.ev_len == EVENT_RING {
            self.stats.events_dropped += 1;
            return;
        }
        self.events[(self.ev_head + self.ev_len) % EVENT_RING] = Some(e);
        self.ev_len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::driver::satop::packet::CW_OCTETS;
    use crate::line::driver::satop::playout::AIS_OCTET;
    use proptest::prelude::*;

    const MS: u64 = 1000;

    fn params(timing: Timing) -> SatopParams {
        let a: std::net::SocketAddr = ([127, 0, 0, 1], 7000).into();
        let mut p = SatopParams::new(a, a);
        p.timing = timing;
        p.initial_seq = 65530;
        p
    }

    fn datagram(seq: u16, l: bool, r: bool, fill: u8) -> Vec<u8> {
        let cw = ControlWord {
            l,
            r,
            seq,
            ..ControlWord::default()
        };
        let mut d = cw.emit().to_vec();
        d.extend([fill; DEFAULT_PAYLOAD_OCTETS]);
        d
    }

    /// What one drain of `poll_play` produced: the first octet of each
    /// played payload and the control word of each packet sent.
    fn drain(pw: &mut SatopPw, now: u64) -> Vec<(u8, ControlWord)> {
        let mut out = Vec::new();
        let mut play = [0u8; DEFAULT_PAYLOAD_OCTETS];
        while pw.poll_play(now, &mut play) {
            let mut hdr = [0u8; 16];
            let h = pw.header_len();
            assert_eq!(pw.emit_header(&mut hdr[..h]), h);
            let cw = ControlWord::parse([hdr[h - 4], hdr[h - 3], hdr[h - 2], hdr[h - 1]]).unwrap();
            out.push((play[0], cw));
        }
        out
    }

    fn events(pw: &mut SatopPw) -> Vec<SatopEvent> {
        std::iter::from_fn(|| pw.poll_event()).collect()
    }

    #[test]
    fn loop_timing_sends_one_packet_per_packet_received() {
        let mut pw = SatopPw::new(params(Timing::Loop), 0).unwrap();
        assert_eq!(pw.params().depth_packets(), 4);
        let mut played = Vec::new();
        for k in 0..50u16 {
            let now = u64::from(k) * MS + 3; // a little jitter-free offset
            pw.handle_datagram(now, &datagram(k, false, false, k as u8))
                .unwrap();
            pw.handle_timeout(now);
            played.extend(drain(&mut pw, now));
        }
        // The first packet primes, each later one plays one slot and sends
        // one packet: 3 slots of fill, then the stream 4 packets behind.
        assert_eq!(played.len(), 49);
        let first: Vec<u8> = played.iter().map(|p| p.0).collect();
        assert_eq!(&first[..3], &[AIS_OCTET; 3]);
        assert_eq!(&first[3..], &(0..46).collect::<Vec<u8>>()[..]);
        // Our sequence numbers run on from the initial one, across the wrap.
        let seqs: Vec<u16> = played.iter().map(|p| p.1.seq).collect();
        assert_eq!(seqs[..8], [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]);
        assert!(played.iter().all(|p| !p.1.l && !p.1.r && p.1.len == 0));
        let s = pw.stats();
        assert_eq!(
            (s.timer_plays, s.packets_sent, s.packets_received),
            (0, 49, 50)
        );
        assert!(!pw.los());
        assert!(events(&mut pw).is_empty());
    }

    #[test]
    fn free_runs_without_packets_and_reports_los_with_r() {
        let mut pw = SatopPw::new(params(Timing::Loop), 0).unwrap();
        let mut sent = Vec::new();
        let mut now = 0;
        for _ in 0..20 {
            now = pw.poll_timeout();
            pw.handle_timeout(now);
            sent.extend(drain(&mut pw, now));
        }
        assert_eq!(now, 20 * MS, "one play per millisecond on our clock");
        assert_eq!(sent.len(), 20);
        assert!(sent.iter().all(|p| p.0 == AIS_OCTET));
        // LOS (LOPS) on the 10th missing packet; R from the packet sent
        // for that play on.
        assert!(pw.los());
        assert_eq!(events(&mut pw), [SatopEvent::Los(true)]);
        assert!(sent[..9].iter().all(|p| !p.1.r));
        assert!(sent[9..].iter().all(|p| p.1.r));
        // Packets again: LOS clears after 32 consecutive ones played.
        let mut after = Vec::new();
        for k in 0..40u16 {
            now += MS;
            pw.handle_datagram(now, &datagram(k, false, false, 0x11))
                .unwrap();
            pw.handle_timeout(now);
            after.extend(drain(&mut pw, now));
        }
        assert!(!pw.los());
        assert_eq!(events(&mut pw), [SatopEvent::Los(false)]);
        let cleared_at = after.iter().position(|p| !p.1.r).unwrap();
        assert_eq!(after[cleared_at - 1].0, 0x11);
        assert!(after[cleared_at..].iter().all(|p| !p.1.r));
        assert_eq!(pw.stats().lops_entries, 1);
    }

    #[test]
    fn a_single_lost_packet_is_covered_by_the_free_run_timer() {
        let mut pw = SatopPw::new(params(Timing::Loop), 0).unwrap();
        let mut played = Vec::new();
        for k in 0..30u16 {
            let now = u64::from(k) * MS;
            if k != 12 {
                pw.handle_datagram(now, &datagram(k, false, false, k as u8))
                    .unwrap();
            }
            pw.handle_timeout(now);
            played.extend(drain(&mut pw, now));
            // The timer fires 1.5 periods after the last packet.
            pw.handle_timeout(now + MS / 2);
            played.extend(drain(&mut pw, now + MS / 2));
        }
        // Still one packet out per period: 29 (the first primes).
        assert_eq!(played.len(), 29);
        let data: Vec<u8> = played.iter().map(|p| p.0).skip(3).collect();
        let mut want: Vec<u8> = (0..26).collect();
        want[12] = AIS_OCTET;
        assert_eq!(data, want);
        let s = pw.stats();
        assert_eq!((s.timer_plays, s.playout.missing), (1, 1));
    }

    #[test]
    fn internal_timing_plays_on_our_clock_whatever_the_arrivals() {
        let mut pw = SatopPw::new(params(Timing::Internal), 0).unwrap();
        let mut played = Vec::new();
        let mut seq = 0u16;
        for ms in 1..=40u64 {
            let now = ms * MS;
            // The far end's packets come in bursts of four every 4 ms.
            if ms % 4 == 0 {
                for _ in 0..4 {
                    pw.handle_datagram(now, &datagram(seq, false, false, seq as u8))
                        .unwrap();
                    seq += 1;
                }
            }
            pw.handle_timeout(now);
            played.extend(drain(&mut pw, now));
        }
        assert_eq!(played.len(), 40);
        let data: Vec<u8> = played
            .iter()
            .map(|p| p.0)
            .filter(|&o| o != AIS_OCTET)
            .collect();
        assert_eq!(data, (0..data.len() as u8).collect::<Vec<u8>>());
        assert!(data.len() >= 30);
    }

    #[test]
    fn far_end_l_and_r_bits() {
        let mut pw = SatopPw::new(params(Timing::Internal), 0).unwrap();
        // L with the payload omitted: valid, plays all ones.
        let mut d = ControlWord {
            l: true,
            len: 4,
            seq: 1,
            ..ControlWord::default()
        }
        .emit()
        .to_vec();
        pw.handle_datagram(0, &d).unwrap();
        assert!(pw.remote_fault());
        assert_eq!(events(&mut pw), [SatopEvent::RemoteFault(true)]);
        // L with a payload: still all ones (RFC 4553 §6.2.2).
        pw.handle_datagram(0, &datagram(2, true, true, 0x22))
            .unwrap();
        assert_eq!(events(&mut pw), [SatopEvent::RemoteLoss(true)]);
        pw.handle_datagram(0, &datagram(3, false, false, 0x33))
            .unwrap();
        assert_eq!(
            events(&mut pw),
            [
                SatopEvent::RemoteFault(false),
                SatopEvent::RemoteLoss(false)
            ]
        );
        let mut out = Vec::new();
        for ms in 1..=6 {
            pw.handle_timeout(ms * MS);
            out.extend(drain(&mut pw, ms * MS));
        }
        let firsts: Vec<u8> = out.iter().map(|p| p.0).collect();
        assert_eq!(firsts, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x33]);
        assert_eq!(pw.stats().playout.played_l_bit, 2);
        assert_eq!(pw.stats().l_bit_received, 2);
        // A payload of the wrong size without L is malformed.
        d.extend([0u8; 10]);
        d[0] = 0;
        d[1] = 0;
        assert_eq!(
            pw.handle_datagram(0, &d),
            Err(SatopPacketError::PayloadSize {
                got: 10,
                expected: 256
            })
        );
    }

    #[test]
    fn local_fault_sets_l_on_our_packets() {
        let mut pw = SatopPw::new(params(Timing::Internal), 0).unwrap();
        pw.set_local_fault(true);
        pw.handle_timeout(MS);
        assert!(drain(&mut pw, MS)[0].1.l);
        pw.set_local_fault(false);
        pw.handle_timeout(2 * MS);
        assert!(!drain(&mut pw, 2 * MS)[0].1.l);
    }

    #[test]
    fn malformed_packets_are_counted_by_kind_and_never_stored() {
        let mut pw = SatopPw::new(params(Timing::Loop), 0).unwrap();
        let bad: [&[u8]; 4] = [&[], &[0, 0, 0], &[0x40, 0, 0, 0, 1], &[0, 0, 0, 1, 9, 9]];
        for d in bad {
            assert!(pw.handle_datagram(0, d).is_err());
        }
        let s = pw.stats();
        assert_eq!(s.malformed_total(), 4);
        assert_eq!(s.malformed[SatopPacketError::Truncated.kind()], 2);
        assert_eq!(s.malformed[SatopPacketError::NotControlWord.kind()], 1);
        assert_eq!(s.packets_received, 0);
        assert!(!pw.playout().is_primed());
    }

    #[test]
    fn reserved_and_fragment_bits_are_ignored_but_counted() {
        let mut pw = SatopPw::new(params(Timing::Loop), 0).unwrap();
        let mut d = datagram(5, false, false, 0);
        d[0] |= 0x03;
        d[1] |= 0xC0;
        pw.handle_datagram(0, &d).unwrap();
        assert_eq!(pw.stats().reserved_bits_set, 1);
        assert_eq!(pw.stats().packets_received, 1);
    }

    #[test]
    fn rtp_header_carries_the_sequence_and_an_8khz_timestamp() {
        let mut p = params(Timing::Internal);
        p.rtp_header = true;
        p.ssrc = 0x0102_0304;
        let mut pw = SatopPw::new(p, 0).unwrap();
        assert_eq!(pw.header_len(), 16);
        let mut hdrs = Vec::new();
        for ms in 1..=2 {
            pw.handle_timeout(ms * MS);
            let mut play = [0u8; 256];
            while pw.poll_play(ms * MS, &mut play) {
                let mut hdr = [0u8; 16];
                pw.emit_header(&mut hdr);
                hdrs.push(hdr);
            }
        }
        let (h0, n, _) = RtpHeader::parse(&hdrs[0]).unwrap();
        let (h1, _, _) = RtpHeader::parse(&hdrs[1]).unwrap();
        assert_eq!(n, 12);
        assert_eq!((h0.payload_type, h0.ssrc, h0.seq), (96, 0x0102_0304, 65530));
        assert_eq!(h1.timestamp - h0.timestamp, 8, "8 frames per 1 ms packet");
        assert_eq!(h1.seq, 65531);
        let cw = ControlWord::parse(hdrs[1][12..16].try_into().unwrap()).unwrap();
        assert_eq!(cw.seq, 65531);
        // Our own packets parse as RTP + control word.
        let mut d = hdrs[0].to_vec();
        d.extend([0u8; 256]);
        let mut rx = SatopPw::new(p, 0).unwrap();
        rx.handle_datagram(0, &d).unwrap();
        assert_eq!(rx.stats().packets_received, 1);
        assert_eq!(d.len(), 12 + CW_OCTETS + 256);
    }

    #[test]
    fn two_loop_timed_ends_cannot_storm() {
        // Misconfiguration: nobody has a clock, packets bounce at once.
        let mut a = SatopPw::new(params(Timing::Loop), 0).unwrap();
        let mut b = SatopPw::new(params(Timing::Loop), 0).unwrap();
        // wires[0]: a to b, wires[1]: b to a.
        let mut wires: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut play = [0u8; 256];
        for t in (0..200 * MS).step_by(50) {
            for (i, me) in [&mut a, &mut b].into_iter().enumerate() {
                for d in std::mem::take(&mut wires[1 - i]) {
                    me.handle_datagram(t, &d).unwrap();
                }
                me.handle_timeout(t);
                while me.poll_play(t, &mut play) {
                    let mut d = vec![0u8; 4 + 256];
                    me.emit_header(&mut d[..4]);
                    wires[i].push(d);
                }
            }
        }
        // 200 ms of line is 200 packets; the pacer allows 0.1 % + a burst.
        for pw in [&a, &b] {
            let sent = pw.stats().packets_sent;
            assert!(sent <= 200 + 4 + 1, "sent {sent}");
        }
    }

    #[test]
    fn a_stalled_caller_gets_no_burst_beyond_the_buffer() {
        let mut pw = SatopPw::new(params(Timing::Internal), 0).unwrap();
        pw.handle_timeout(1000 * MS);
        let n = drain(&mut pw, 1000 * MS).len();
        assert!(n <= usize::from(pw.playout().capacity()), "{n}");
        assert_eq!(pw.stats().timer_slips, 1);
        assert!(pw.poll_timeout() > 1000 * MS);
    }

    #[test]
    fn params_are_checked() {
        let mut p = params(Timing::Loop);
        p.payload_octets = 100;
        assert!(SatopPw::new(p, 0).is_err());
        p.payload_octets = 64;
        p.playout_ms = 3;
        // 64 octets = 2 frames = 250 µs per packet: 12 packets of delay.
        assert_eq!(p.packet_period_us(), 250);
        assert_eq!(p.depth_packets(), 12);
        p.playout_ms = 0;
        assert!(SatopPw::new(p, 0).is_err());
    }

    proptest! {
        /// Any mix of packets (near, far, repeated, L set) and time steps:
        /// one packet out per play, bounded bursts, a deadline in the future.
        #[test]
        fn any_arrival_pattern_keeps_one_out_per_play(
            internal: bool,
            steps in proptest::collection::vec((0u16..40, any::<bool>(), 0u64..3000, any::<bool>()), 1..300),
        ) {
            let timing = if internal { Timing::Internal } else { Timing::Loop };
            let mut pw = SatopPw::new(params(timing), 0).unwrap();
            let mut now = 0;
            let mut base = 1000u16;
            let mut plays = 0u64;
            for (offset, far, dt, l) in steps {
                now += dt;
                let seq = if far { base.wrapping_add(offset.wrapping_mul(2000)) } else { base.wrapping_add(offset) };
                base = base.wrapping_add(1);
                pw.handle_datagram(now, &datagram(seq, l, false, 0)).unwrap();
                pw.handle_timeout(now);
                let n = drain(&mut pw, now).len();
                prop_assert!(n <= usize::from(pw.playout().capacity()) + 1, "burst of {}", n);
                plays += n as u64;
                prop_assert!(pw.poll_timeout() > now || pw.owed());
                prop_assert!(pw.playout().level() <= pw.playout().capacity());
            }
            prop_assert_eq!(pw.stats().packets_sent, plays);
        }
    }
}
