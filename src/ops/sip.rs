//! The operations side of the SIP task: its supervisor check-in and the NOC
//! events of core peers.
//!
//! `sip` knows nothing of `ops` (DESIGN.md §3), so the task takes an
//! [`Observer`]; [`SipOps`] is the one the daemon gives it: `beat()` feeds
//! the loop's [`Heartbeat`] (registered as [`LOOP_NAME`]), and
//! `peer_event()` raises [`NocEvent::PeerUp`] / [`NocEvent::PeerDown`] with
//! the peer's group, address and transport.

use std::sync::Arc;

use super::events::NocEvent;
use super::supervisor::{Heartbeat, Supervisor};
use crate::sip::peer::PeerState;
use crate::sip::task::{Observer, PeerInfo};

/// The supervisor's name for the SIP task.
pub const LOOP_NAME: &str = "sip";

/// The supervisor heartbeat and NOC events of the SIP task.
#[derive(Debug)]
pub struct SipOps {
    heartbeat: Heartbeat,
}

impl SipOps {
    /// Registers the SIP task as loop [`LOOP_NAME`].
    pub fn register(supervisor: &Supervisor) -> Arc<SipOps> {
        Arc::new(SipOps {
            heartbeat: supervisor.register(LOOP_NAME),
        })
    }
}

impl Observer for SipOps {
    fn beat(&self) {
        self.heartbeat.beat();
    }

    fn peer_event(&self, peer: &PeerInfo, state: PeerState) {
        noc_event_for(peer, state);
    }
}

/// Raises the NOC event of a peer state change; returns which.
pub fn noc_event_for(peer: &PeerInfo, state: PeerState) -> NocEvent {
    match state {
        PeerState::Up => {
            crate::noc_event!(
                NocEvent::PeerUp,
                group = %peer.group,
                peer = %peer.address,
                transport = peer.transport.name(),
                "core SIP peer up (OPTIONS answered)"
            );
            NocEvent::PeerUp
        }
        PeerState::Down => {
            crate::noc_event!(
                NocEvent::PeerDown,
                group = %peer.group,
                peer = %peer.address,
                transport = peer.transport.name(),
                "core SIP peer down: new calls go to the next peer of the group"
            );
            NocEvent::PeerDown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::peer::PeerId;
    use crate::sip::transport::Transport;

    #[test]
    fn peer_changes_map_to_noc_events() {
        let p = PeerInfo {
            id: PeerId(0),
            group: "mcvp".into(),
            address: "192.0.2.7:5061".parse().unwrap(),
            transport: Transport::Tls,
        };
        assert_eq!(noc_event_for(&p, PeerState::Up), NocEvent::PeerUp);
        assert_eq!(noc_event_for(&p, PeerState::Down), NocEvent::PeerDown);
    }

    #[test]
    fn beats_reach_the_supervisor() {
        let sup = Supervisor::new();
        let ops = SipOps::register(&sup);
        assert_eq!(sup.loop_names(), vec![LOOP_NAME.to_string()]);
        ops.beat();
    }
}
