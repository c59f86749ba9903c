//! The operations side of a D-channel task: its supervisor check-in and its
//! NOC events.
//!
//! `isdn` knows nothing of `ops` (DESIGN.md §3), so the task takes an
//! [`Observer`]; [`DchannelOps`] is the one the daemon gives it: `beat()`
//! feeds the loop's [`Heartbeat`] (registered as `dchan-<span>`), and
//! `event()` raises the NOC events of the span's signalling:
//! [`NocEvent::DchannelUp`] / [`NocEvent::DchannelDown`] on Q.931's
//! `LinkUp` / `LinkDown`, [`NocEvent::RestartSent`] for every RESTART we
//! send (with its attempt number) and [`NocEvent::RestartReceived`] for
//! every valid RESTART from the peer.

use std::sync::Arc;

use super::events::NocEvent;
use super::supervisor::{Heartbeat, Supervisor};
use crate::isdn::q931::Event;
use crate::isdn::task::Observer;

/// The supervisor heartbeat and NOC events of one span's D-channel task.
#[derive(Debug)]
pub struct DchannelOps {
    heartbeat: Heartbeat,
}

impl DchannelOps {
    /// Registers span `span`'s D-channel task as loop `dchan-<span>`.
    pub fn register(supervisor: &Supervisor, span: u8) -> Arc<DchannelOps> {
        Arc::new(DchannelOps {
            heartbeat: supervisor.register(&loop_name(span)),
        })
    }
}

/// The supervisor's name for span `span`'s D-channel task.
pub fn loop_name(span: u8) -> String {
    format!("dchan-{span}")
}

impl Observer for DchannelOps {
    fn beat(&self) {
        self.heartbeat.beat();
    }

    fn event(&self, span: u8, event: &Event) {
        noc_event_for(span, event);
    }
}

/// Raises the NOC event `event` stands for, if any; returns which.
pub fn noc_event_for(span: u8, event: &Event) -> Option<NocEvent> {
    match event {
        Event::LinkUp => {
            crate::noc_event!(
                NocEvent::DchannelUp,
                span,
                "D-channel up (Q.921 multiple-frame established)"
            );
            Some(NocEvent::DchannelUp)
        }
        Event::LinkDown => {
            crate::noc_event!(
                NocEvent::DchannelDown,
                span,
                "D-channel down: calls not yet answered are cleared, answered calls survive for T309"
            );
            Some(NocEvent::DchannelDown)
        }
        Event::RestartSent {
            class,
            timeslots,
            attempt,
        } => {
            crate::noc_event!(NocEvent::RestartSent, span, class = class.0, channels = ?timeslots, attempt, "Q.931 RESTART sent");
            Some(NocEvent::RestartSent)
        }
        Event::RestartReceived { class, timeslots } => {
            crate::noc_event!(NocEvent::RestartReceived, span, class = class.0, channels = ?timeslots, "Q.931 RESTART received; calls on those channels cleared");
            Some(NocEvent::RestartReceived)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isdn::q931::RestartClass;

    #[test]
    fn signalling_events_map_to_noc_events() {
        let restart = Event::RestartSent {
            class: RestartClass::ALL_INTERFACES,
            timeslots: vec![1, 2],
            attempt: 1,
        };
        let received = Event::RestartReceived {
            class: RestartClass::INDICATED_CHANNELS,
            timeslots: vec![5],
        };
        assert_eq!(noc_event_for(1, &Event::LinkUp), Some(NocEvent::DchannelUp));
        assert_eq!(
            noc_event_for(1, &Event::LinkDown),
            Some(NocEvent::DchannelDown)
        );
        assert_eq!(noc_event_for(1, &restart), Some(NocEvent::RestartSent));
        assert_eq!(noc_event_for(1, &received), Some(NocEvent::RestartReceived));
        let alerting = Event::Alerting {
            id: crate::isdn::q931::CallId(1),
        };
        assert_eq!(noc_event_for(1, &alerting), None);
    }

    #[test]
    fn beats_reach_the_supervisor() {
        let sup = Supervisor::new();
        let ops = DchannelOps::register(&sup, 3);
        assert_eq!(sup.loop_names(), vec!["dchan-3".to_string()]);
        ops.beat();
        drop(ops);
    }
}
