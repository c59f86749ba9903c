//! Symmetric RTP latching and SSRC change detection.
//!
//! The core's media may come from behind NAT or from a different port than
//! the SDP says; symmetric RTP (RFC 4961) sends to where the media comes
//! from. The latch takes the first valid packet's source address (optionally
//! only if its IP address is the SDP connection address), then refuses
//! packets from any other source until [`Latch::reset`] (a new remote from the
//! control plane). Within the latched source a new SSRC is reported once.
//!
//! On a socket bound from the configured port base the engine then
//! connects the socket to the latched source (`engine::Peer`), so the
//! kernel refuses the other sources itself (they get ICMP port
//! unreachable, and are not counted here); `WrongSource` counts only what
//! was queued before the connect, or every stranger on an ephemeral port.

use std::net::SocketAddr;

/// What the latch says about one valid packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchVerdict {
    /// The first packet: the latch is now on this source and SSRC.
    Latched,
    /// From the latched source, same SSRC.
    Accept,
    /// From the latched source with a new SSRC (RFC 3550 §8.2: treat as a new
    /// source; the receiver resets its sequence and jitter state).
    SsrcChanged { old: u32, new: u32 },
    /// From another source, or outside the SDP address: drop and count.
    Reject,
}

/// Latch state for one channel.
#[derive(Debug, Clone, Copy)]
pub struct Latch {
    /// SDP connection address of the remote.
    sdp: SocketAddr,
    /// Accept only sources whose IP address is the SDP address's.
    restrict_to_sdp: bool,
    latched: Option<(SocketAddr, u32)>,
}

impl Latch {
    pub fn new(sdp: SocketAddr, restrict_to_sdp: bool) -> Self {
        Latch {
            sdp,
            restrict_to_sdp,
            latched: None,
        }
    }

    /// Forget the latched source (the remote was updated by a re-INVITE).
    pub fn reset(&mut self, sdp: SocketAddr, restrict_to_sdp: bool) {
        *self = Latch::new(sdp, restrict_to_sdp);
    }

    /// Where to send: the latched source if any, else the SDP address.
    pub fn send_to(&self) -> SocketAddr {
        self.latched.map(|(a, _)| a).unwrap_or(self.sdp)
    }

    pub fn latched(&self) -> Option<(SocketAddr, u32)> {
        self.latched
    }

    /// Judges a packet that passed header validation.
    pub fn check(&mut self, from: SocketAddr, ssrc: u32) -> LatchVerdict {
        match self.latched {
            None => {
                if self.restrict_to_sdp && from.ip() != self.sdp.ip() {
                    return LatchVerdict::Reject;
                }
                self.latched = Some((from, ssrc));
                LatchVerdict::Latched
            }
            Some((addr, _)) if addr != from => LatchVerdict::Reject,
            Some((_, old)) if old != ssrc => {
                self.latched = Some((from, ssrc));
                LatchVerdict::SsrcChanged { old, new: ssrc }
            }
            Some(_) => LatchVerdict::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn latches_first_source_then_rejects_others() {
        let mut l = Latch::new(a("192.0.2.7:40002"), false);
        assert_eq!(l.send_to(), a("192.0.2.7:40002"));
        assert_eq!(l.check(a("198.51.100.1:5000"), 1), LatchVerdict::Latched);
        assert_eq!(l.send_to(), a("198.51.100.1:5000"));
        assert_eq!(l.check(a("198.51.100.1:5000"), 1), LatchVerdict::Accept);
        assert_eq!(l.check(a("198.51.100.1:5001"), 1), LatchVerdict::Reject);
        assert_eq!(l.check(a("192.0.2.7:40002"), 1), LatchVerdict::Reject);
    }

    #[test]
    fn restriction_to_sdp_address_allows_other_port_only() {
        let mut l = Latch::new(a("192.0.2.7:40002"), true);
        assert_eq!(l.check(a("198.51.100.1:5000"), 1), LatchVerdict::Reject);
        assert_eq!(l.check(a("192.0.2.7:41000"), 1), LatchVerdict::Latched);
    }

    #[test]
    fn ssrc_change_reported_once() {
        let mut l = Latch::new(a("[::1]:4000"), false);
        l.check(a("[::1]:4000"), 7);
        assert_eq!(
            l.check(a("[::1]:4000"), 8),
            LatchVerdict::SsrcChanged { old: 7, new: 8 }
        );
        assert_eq!(l.check(a("[::1]:4000"), 8), LatchVerdict::Accept);
        l.reset(a("[::1]:5000"), false);
        assert_eq!(l.check(a("[::1]:4000"), 8), LatchVerdict::Latched);
    }
}
