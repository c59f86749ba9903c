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
//! every valid RESTART from the peer. With a [`TraceHub`]
//! ([`DchannelOps::register_traced`]), `frame()` publishes every frame both
//! ways as a [`TraceRecord::Lapd`] while a trace of the span runs (one
//! atomic load per frame otherwise).

use std::sync::Arc;

use super::board::{TraceHub, TraceRecord};
use super::events::NocEvent;
use super::supervisor::{Heartbeat, Supervisor};
use crate::isdn::q931::Event;
use crate::isdn::task::Observer;

/// The supervisor heartbeat and NOC events of one span's D-channel task.
#[derive(Debug)]
pub struct DchannelOps {
    heartbeat: Heartbeat,
    trace: Option<TraceHub>,
    /// Our Q.921 role: the LINUX_LAPD pseudo header says which side we
    /// are, so Wireshark reads the C/R bit right (Q.921 §3.3.2).
    we_are_network: bool,
}

impl DchannelOps {
    /// Registers span `span`'s D-channel task as loop `dchan-<span>`.
    pub fn register(supervisor: &Supervisor, span: u8) -> Arc<DchannelOps> {
        Arc::new(DchannelOps {
            heartbeat: supervisor.register(&loop_name(span)),
            trace: None,
            we_are_network: false,
        })
    }

    /// [`DchannelOps::register`], and its frames go to `trace` while a trace
    /// of the span runs.
    pub fn register_traced(
        supervisor: &Supervisor,
        span: u8,
        trace: TraceHub,
        we_are_network: bool,
    ) -> Arc<DchannelOps> {
        Arc::new(DchannelOps {
            heartbeat: supervisor.register(&loop_name(span)),
            trace: Some(trace),
            we_are_network,
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

    fn frame(&self, span: u8, sent: bool, frame: &[u8]) {
        if let Some(t) = &self.trace
            && t.span_active(span)
        {
            t.publish(TraceRecord::Lapd {
                span,
                at: std::time::SystemTime::now(),
                sent,
                we_are_network: self.we_are_network,
                frame: frame.to_vec(),
            });
        }
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
    fn frames_are_published_only_while_their_span_is_traced() {
        let sup = Supervisor::new();
        let hub = TraceHub::default();
        let ops = DchannelOps::register_traced(&sup, 2, hub.clone(), true);
        ops.frame(2, true, &[0x02, 0x01, 0x7f]);
        let mut sub = hub.subscribe_span(2);
        ops.frame(1, true, &[0x00, 0x01, 0x7f]);
        ops.frame(2, false, &[0x00, 0x01, 0x01, 0x02]);
        match sub.rx.try_recv() {
            Ok(TraceRecord::Lapd {
                span: 2,
                sent: false,
                we_are_network: true,
                frame,
                ..
            }) => assert_eq!(frame, vec![0x00, 0x01, 0x01, 0x02]),
            other => panic!("{other:?}"),
        }
        assert!(sub.rx.try_recv().is_err(), "span 1 and the untraced frame");
        drop(sub);
        assert!(!hub.is_active() && !hub.span_active(2));
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
