//! Fuzz entry points of the media plane (see `fuzz/README.md`).

use super::latch::{Latch, LatchVerdict};
use super::rtp::{RtpErrorCounters, RtpPacket};
use super::seq::{Jitter, SourceSeq};
use std::net::SocketAddr;

/// The RTP/RTCP receive path fed with arbitrary datagrams. The first octet
/// of `data` picks the source port, the rest is split into datagrams at
/// every `0xFF 0xFE` pair; must never panic.
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
    for (i, dgram) in split(rest).enumerate() {
        let from = SocketAddr::from(([127, 0, 0, 1 + (sel >> 1) % 2], 4000 + (i as u16 % 2)));
        match RtpPacket::parse(dgram) {
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
