//! The B-channel table of one span (what the call module and telemetry
//! read) and channel hunting.

use std::collections::BTreeMap;

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
        }
    }

    pub fn get(&self, ts: u8) -> Option<ChannelState> {
        self.states.get(&ts).copied()
    }

    pub fn set(&mut self, ts: u8, s: ChannelState) {
        if let Some(v) = self.states.get_mut(&ts) {
            *v = s;
        }
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
}
