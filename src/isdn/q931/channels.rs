//! The B-channel table of one span (what the call module and telemetry
//! read) and channel hunting.

use std::collections::{BTreeMap, BTreeSet};

/// One B-channel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Idle,
    /// Chosen for a call not yet confirmed by the peer.
    Reserved,
    Busy,
    /// A RESTART for it is outstanding (T316).
    Restarting,
    OutOfService,
}

/// Which end of the span hunting starts from (EN 300 403 §5.1.2: the user
/// side hunts from the top, the network from the bottom, to make glare rare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hunt {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTable {
    states: BTreeMap<u8, ChannelState>,
    /// Busy-out (asked by the call module): a channel that goes idle goes
    /// out of service instead, until busy-out ends.
    busy_out: bool,
    /// The channels busy-out took out of service (given back when it ends;
    /// a channel out of service for another reason, a failed RESTART, is not).
    busied: BTreeSet<u8>,
}

impl ChannelTable {
    /// An E1 PRI: timeslots 1-15 and 17-31.
    pub fn e1() -> ChannelTable {
        ChannelTable::new((1..=31).filter(|t| *t != 16))
    }

    pub fn new(timeslots: impl IntoIterator<Item = u8>) -> ChannelTable {
        ChannelTable {
            states: timeslots
                .into_iter()
                .map(|t| (t, ChannelState::Idle))
                .collect(),
            busy_out: false,
            busied: BTreeSet::new(),
        }
    }

    pub fn get(&self, ts: u8) -> Option<ChannelState> {
        self.states.get(&ts).copied()
    }

    /// Sets a channel's state; while busied out, idle means out of service.
    pub fn set(&mut self, ts: u8, s: ChannelState) {
        if let Some(v) = self.states.get_mut(&ts) {
            if s == ChannelState::Idle && self.busy_out {
                *v = ChannelState::OutOfService;
                self.busied.insert(ts);
            } else {
                *v = s;
                self.busied.remove(&ts);
            }
        }
    }

    /// Busy-out on: every idle channel, and each channel that goes idle
    /// later, is out of service. Off: those channels are idle again.
    /// Returns how many channels changed state.
    pub fn set_busy_out(&mut self, on: bool) -> usize {
        self.busy_out = on;
        let mut changed = 0;
        if on {
            for (t, s) in self.states.iter_mut() {
                if *s == ChannelState::Idle {
                    *s = ChannelState::OutOfService;
                    self.busied.insert(*t);
                    changed += 1;
                }
            }
        } else {
            for t in std::mem::take(&mut self.busied) {
                if let Some(s) = self.states.get_mut(&t)
                    && *s == ChannelState::OutOfService
                {
                    *s = ChannelState::Idle;
                    changed += 1;
                }
            }
        }
        changed
    }

    /// Whether busy-out is on.
    pub fn busy_out(&self) -> bool {
        self.busy_out
    }

    pub fn exists(&self, ts: u8) -> bool {
        self.states.contains_key(&ts)
    }

    pub fn is_idle(&self, ts: u8) -> bool {
        self.get(ts) == Some(ChannelState::Idle)
    }

    /// The first idle channel in hunting order.
    pub fn hunt(&self, order: Hunt) -> Option<u8> {
        let idle = |(&t, &s): (&u8, &ChannelState)| (s == ChannelState::Idle).then_some(t);
        match order {
            Hunt::Ascending => self.states.iter().find_map(idle),
            Hunt::Descending => self.states.iter().rev().find_map(idle),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, ChannelState)> + '_ {
        self.states.iter().map(|(t, s)| (*t, *s))
    }

    pub fn timeslots(&self) -> Vec<u8> {
        self.states.keys().copied().collect()
    }

    pub fn all_idle(&self) -> bool {
        self.states.values().all(|s| *s == ChannelState::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunting_from_either_end() {
        let mut t = ChannelTable::e1();
        assert_eq!(t.hunt(Hunt::Descending), Some(31));
        assert_eq!(t.hunt(Hunt::Ascending), Some(1));
        t.set(31, ChannelState::Busy);
        t.set(1, ChannelState::Reserved);
        assert_eq!(t.hunt(Hunt::Descending), Some(30));
        assert_eq!(t.hunt(Hunt::Ascending), Some(2));
        assert!(!t.exists(16));
    }

    #[test]
    fn busy_out_takes_idle_channels_and_gives_back_only_its_own() {
        let mut t = ChannelTable::new([1, 2, 3, 4]);
        t.set(1, ChannelState::Busy);
        t.set(4, ChannelState::OutOfService); // a failed RESTART
        assert_eq!(t.set_busy_out(true), 2);
        assert_eq!(t.hunt(Hunt::Ascending), None);
        assert_eq!(t.get(2), Some(ChannelState::OutOfService));
        // The call on 1 ends: its channel stays out of service.
        t.set(1, ChannelState::Idle);
        assert_eq!(t.get(1), Some(ChannelState::OutOfService));
        assert_eq!(t.set_busy_out(false), 3);
        assert_eq!(t.get(1), Some(ChannelState::Idle));
        assert_eq!(t.get(4), Some(ChannelState::OutOfService));
        t.set(2, ChannelState::Idle);
        assert_eq!(t.get(2), Some(ChannelState::Idle));
    }
}
