//! Core peer health and selection: sans-IO.
//!
//! # Contract
//!
//! [`PeerTable::new`]`(groups, now, seed)` holds every peer group of the
//! site. Per peer a small machine (states [`PeerState::Up`] and
//! [`PeerState::Down`]; a peer starts Up, so calls can go out before the
//! first ping has come back):
//!
//! - [`PeerTable::poll_ping`]`(now)` names a peer whose OPTIONS ping is due
//!   (every `options_interval`, one outstanding at a time). The caller builds
//!   it ([`PeerTable::options_request`] or [`options_request`]), sends it
//!   through its transaction layer and reports the outcome with
//!   [`PeerTable::handle_ping_result`]`(now, peer, Ok(rtt) | Err(()))`. Any
//!   final response proves the peer alive (RFC 3261 §11.2: a UAS may answer
//!   OPTIONS with any status) except 503, which the caller reports as `Err`;
//!   a timeout or transport error is `Err`.
//! - A ping with no result within `ping_timeout` fails on
//!   [`PeerTable::handle_timeout`]`(now)`; a late result for it is ignored.
//!   [`PeerTable::poll_timeout`] says when the next ping or expiry is due.
//! - `down_after` consecutive failures take the peer Down, `up_after`
//!   consecutive successes bring it back; each change is a
//!   [`PeerEvent`] from [`PeerTable::poll_event`] and one log line.
//! - The ping round trip is smoothed as in RFC 6298 §2 (SRTT, α = 1/8).
//!
//! Selection for a new call: [`PeerTable::select`]`(group, now)` returns the
//! group's peers in the order to try: Up peers by priority (lower first),
//! equal priorities in a weighted random order (RFC 2782's weight rule, from
//! the table's seeded RNG); then the Down peers, in the same order, as a
//! last resort (an emergency call is tried everywhere before it fails). The
//! caller tries them in turn and reports a timeout, a 503 or a transport
//! error with [`PeerTable::report_failure`] (it counts toward `down_after`
//! and brings that peer's next ping forward) and a final answer other than
//! 503 with [`PeerTable::report_success`].
//!
//! Telemetry and `tdmgw status` read [`PeerTable::status`] and
//! [`PeerTable::peers`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::header::{MAGIC_COOKIE, Method};
use super::message::{Message, StartLine};
use super::text::Params;
use super::transport::Transport;
use super::uri::{SipUri, Uri};

/// Index of a peer in its [`PeerTable`] (stable for the table's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub usize);

/// Index of a group in its [`PeerTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub usize);

/// One core peer (`[[peer_group.peer]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerParams {
    pub address: SocketAddr,
    pub transport: Transport,
    /// Lower is preferred.
    pub priority: u16,
    /// Share among peers of equal priority; 0 is treated as 1.
    pub weight: u16,
    pub tls_name: Option<String>,
}

/// One peer group (`[[peer_group]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParams {
    pub name: String,
    pub options_interval: Duration,
    /// A ping with no result after this long has failed.
    pub ping_timeout: Duration,
    /// Consecutive failures that take a peer down (at least 1).
    pub down_after: u32,
    /// Consecutive successes that bring it back (at least 1).
    pub up_after: u32,
    pub peers: Vec<PeerParams>,
}

impl GroupParams {
    /// A group with `ping_timeout` equal to the interval: a ping still
    /// unanswered when the next is due has failed.
    pub fn new(
        name: &str,
        options_interval: Duration,
        down_after: u32,
        up_after: u32,
        peers: Vec<PeerParams>,
    ) -> GroupParams {
        GroupParams {
            name: name.to_owned(),
            options_interval,
            ping_timeout: options_interval,
            down_after,
            up_after,
            peers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Up,
    Down,
}

impl PeerState {
    pub fn name(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Down => "down",
        }
    }
}

/// A peer changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    PeerUp(PeerId),
    PeerDown(PeerId),
}

/// What telemetry reads of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub state: PeerState,
    /// When the state last changed (or the table was made).
    pub since: std::time::Instant,
    /// Smoothed ping round trip (RFC 6298 SRTT); `None` before the first.
    pub srtt: Option<Duration>,
    pub last_rtt: Option<Duration>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub pings_sent: u64,
    pub ping_failures: u64,
    /// Calls that failed over from this peer (timeout, 503, transport error).
    pub call_failures: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    params: PeerParams,
    group: GroupId,
    status: PeerStatus,
    next_ping: std::time::Instant,
    /// Deadline of the outstanding ping.
    ping_deadline: Option<std::time::Instant>,
    cseq: u32,
}

type Instant = std::time::Instant;

/// Every peer group, its peers' health, and selection.
#[derive(Debug, Clone)]
pub struct PeerTable {
    groups: Vec<GroupParams>,
    peers: Vec<Peer>,
    events: VecDeque<PeerEvent>,
    rng: SplitMix64,
}

impl PeerTable {
    /// Peers start Up; their first pings are spread over the first interval
    /// (by position in the group) so that a large table does not ping all at once.
    pub fn new(groups: Vec<GroupParams>, now: Instant, seed: u64) -> PeerTable {
        let mut peers = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let n = group.peers.len().max(1) as u32;
            for (i, p) in group.peers.iter().enumerate() {
                peers.push(Peer {
                    params: p.clone(),
                    group: GroupId(g),
                    status: PeerStatus {
                        state: PeerState::Up,
                        since: now,
                        srtt: None,
                        last_rtt: None,
                        consecutive_failures: 0,
                        consecutive_successes: 0,
                        pings_sent: 0,
                        ping_failures: 0,
                        call_failures: 0,
                    },
                    next_ping: now + group.options_interval * i as u32 / n,
                    ping_deadline: None,
                    cseq: 0,
                });
            }
        }
        PeerTable {
            groups,
            peers,
            events: VecDeque::new(),
            rng: SplitMix64(seed),
        }
    }

    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.groups.iter().position(|g| g.name == name).map(GroupId)
    }

    pub fn group(&self, id: GroupId) -> Option<&GroupParams> {
        self.groups.get(id.0)
    }

    pub fn params(&self, peer: PeerId) -> Option<&PeerParams> {
        self.peers.get(peer.0).map(|p| &p.params)
    }

    pub fn status(&self, peer: PeerId) -> Option<PeerStatus> {
        self.peers.get(peer.0).map(|p| p.status)
    }

    /// Every peer with its group, parameters and status.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, GroupId, &PeerParams, PeerStatus)> {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| (PeerId(i), p.group, &p.params, p.status))
    }

    /// The peer with this address and transport (to attribute responses).
    pub fn find(&self, address: SocketAddr, transport: Transport) -> Option<PeerId> {
        self.peers
            .iter()
            .position(|p| p.params.address == address && p.params.transport == transport)
            .map(PeerId)
    }

    /// A peer whose ping is due; call until `None`.
    pub fn poll_ping(&mut self, now: Instant) -> Option<PeerId> {
        let (i, peer) = self
            .peers
            .iter_mut()
            .enumerate()
            .find(|(_, p)| p.ping_deadline.is_none() && p.next_ping <= now)?;
        let group = &self.groups[peer.group.0];
        peer.ping_deadline = Some(now + group.ping_timeout);
        peer.next_ping = now + group.options_interval;
        peer.status.pings_sent += 1;
        Some(PeerId(i))
    }

    /// The outcome of the outstanding ping to `peer`: `Ok(rtt)` for a final
    /// response other than 503, `Err(())` for 503, timeout or transport
    /// error. Ignored when no ping is outstanding (a late result).
    pub fn handle_ping_result(&mut self, now: Instant, peer: PeerId, result: Result<Duration, ()>) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        if p.ping_deadline.take().is_none() {
            return;
        }
        match result {
            Ok(rtt) => {
                p.status.last_rtt = Some(rtt);
                // RFC 6298 §2.3: SRTT <- (1 - 1/8) SRTT + 1/8 R'.
                p.status.srtt = Some(match p.status.srtt {
                    None => rtt,
                    Some(s) => s * 7 / 8 + rtt / 8,
                });
                self.success(now, peer);
            }
            Err(()) => {
                if let Some(p) = self.peers.get_mut(peer.0) {
                    p.status.ping_failures += 1;
                }
                self.failure(now, peer);
            }
        }
    }

    /// A call to `peer` failed over (timeout, 503, transport error).
    pub fn report_failure(&mut self, now: Instant, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        p.status.call_failures += 1;
        // Confirm with a ping now rather than at the next interval.
        if p.ping_deadline.is_none() {
            p.next_ping = p.next_ping.min(now);
        }
        self.failure(now, peer);
    }

    /// A call to `peer` got a final answer other than 503: it is alive.
    pub fn report_success(&mut self, now: Instant, peer: PeerId) {
        self.success(now, peer);
    }

    /// The next ping or ping expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .iter()
            .map(|p| p.ping_deadline.unwrap_or(p.next_ping))
            .min()
    }

    /// Fail the pings that have had no result in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let expired = self.peers[i].ping_deadline.is_some_and(|d| d <= now);
            if expired {
                self.handle_ping_result(now, PeerId(i), Err(()));
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// The group's peers in the order a new call tries them (module doc).
    pub fn select(&mut self, group: GroupId, _now: Instant) -> Vec<PeerId> {
        let mut out = Vec::new();
        for state in [PeerState::Up, PeerState::Down] {
            let mut members: Vec<PeerId> = (0..self.peers.len())
                .filter(|i| self.peers[*i].group == group && self.peers[*i].status.state == state)
                .map(PeerId)
                .collect();
            members.sort_by_key(|p| self.peers[p.0].params.priority);
            let priorities: Vec<u16> = members
                .iter()
                .map(|p| self.peers[p.0].params.priority)
                .collect();
            let mut start = 0;
            while start < members.len() {
                let prio = priorities[start];
                let end = start
                    + priorities[start..]
                        .iter()
                        .take_while(|q| **q == prio)
                        .count();
                self.weighted_order(&members[start..end], &mut out);
                start = end;
            }
        }
        out
    }

    /// RFC 2782 (SRV) weight rule: pick among the remaining peers with
    /// probability proportional to weight, repeatedly.
    fn weighted_order(&mut self, level: &[PeerId], out: &mut Vec<PeerId>) {
        let mut left: Vec<PeerId> = level.to_vec();
        while !left.is_empty() {
            let weight = |p: &PeerId| u64::from(self.peers[p.0].params.weight.max(1));
            let total: u64 = left.iter().map(weight).sum();
            let mut pick = self.rng.next_u64() % total;
            let mut chosen = left.len() - 1;
            for (i, p) in left.iter().enumerate() {
                let w = weight(p);
                if pick < w {
                    chosen = i;
                    break;
                }
                pick -= w;
            }
            out.push(left.remove(chosen));
        }
    }

    fn success(&mut self, now: Instant, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        let up_after = self.groups[p.group.0].up_after.max(1);
        p.status.consecutive_failures = 0;
        p.status.consecutive_successes = p.status.consecutive_successes.saturating_add(1);
        if p.status.state == PeerState::Down && p.status.consecutive_successes >= up_after {
            self.set_state(now, peer, PeerState::Up);
        }
    }

    fn failure(&mut self, now: Instant, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer.0) else {
            return;
        };
        let down_after = self.groups[p.group.0].down_after.max(1);
        p.status.consecutive_successes = 0;
        p.status.consecutive_failures = p.status.consecutive_failures.saturating_add(1);
        if p.status.state == PeerState::Up && p.status.consecutive_failures >= down_after {
            self.set_state(now, peer, PeerState::Down);
        }
    }

    fn set_state(&mut self, now: Instant, peer: PeerId, state: PeerState) {
        let p = &mut self.peers[peer.0];
        let group = &self.groups[p.group.0].name;
        tracing::warn!(
            peer_group = %group,
            peer = %p.params.address,
            transport = p.params.transport.name(),
            old = p.status.state.name(),
            new = state.name(),
            "core peer state change"
        );
        p.status.state = state;
        p.status.since = now;
        self.events.push_back(match state {
            PeerState::Up => PeerEvent::PeerUp(peer),
            PeerState::Down => PeerEvent::PeerDown(peer),
        });
    }

    /// An OPTIONS ping to `peer` from `local` (our address on that
    /// transport), with a fresh branch, Call-ID and From tag from the
    /// table's RNG and the peer's next CSeq.
    pub fn options_request(&mut self, peer: PeerId, local: SocketAddr) -> Option<Message> {
        let ids = PingIds {
            branch: format!("{MAGIC_COOKIE}{:016x}", self.rng.next_u64()),
            call_id: format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64()),
            from_tag: format!("{:08x}", self.rng.next_u64() as u32),
            cseq: 0,
        };
        let p = self.peers.get_mut(peer.0)?;
        p.cseq = p.cseq.wrapping_add(1).max(1);
        let ids = PingIds {
            cseq: p.cseq,
            ..ids
        };
        Some(options_request(
            p.params.address,
            p.params.transport,
            local,
            &ids,
        ))
    }
}

/// The identifiers of one OPTIONS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingIds {
    /// Whole branch, starting with `z9hG4bK` (§8.1.1.7).
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
}

/// An OPTIONS request (RFC 3261 §11.1) to a core peer: Request-URI and To
/// are the peer's address (with `transport=` for TCP/TLS, §19.1.4), Via
/// names our address and transport with the branch (§8.1.1.7),
/// Max-Forwards 70 (§8.1.1.6), Accept application/sdp (§11.1).
pub fn options_request(
    peer: SocketAddr,
    transport: Transport,
    local: SocketAddr,
    ids: &PingIds,
) -> Message {
    let mut params = Params::default();
    if transport != Transport::Udp {
        params.set("transport", Some(transport.name()));
    }
    let host = match peer.ip() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let uri = Uri::Sip(SipUri {
        secure: false,
        user: None,
        password: None,
        host,
        port: Some(peer.port()),
        params,
        headers: None,
    });
    let mut m = Message {
        start: StartLine::Request {
            method: Method::Options,
            uri,
        },
        headers: Vec::new(),
        body: Vec::new(),
    };
    m.push(
        "Via",
        format!(
            "SIP/2.0/{} {local};branch={}",
            transport.via_token(),
            ids.branch
        ),
    );
    m.push("Max-Forwards", "70");
    m.push("From", format!("<sip:{local}>;tag={}", ids.from_tag));
    m.push("To", format!("<sip:{peer}>"));
    m.push("Call-ID", ids.call_id.clone());
    m.push("CSeq", format!("{} OPTIONS", ids.cseq));
    m.push("Accept", "application/sdp");
    m
}

/// SplitMix64: a small seeded generator, so selection is reproducible from
/// the seed in tests and simulations.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Limits};

    const SEC: Duration = Duration::from_secs(1);

    fn peer(last_octet: u8, priority: u16, weight: u16) -> PeerParams {
        PeerParams {
            address: SocketAddr::from(([192, 0, 2, last_octet], 5060)),
            transport: Transport::Udp,
            priority,
            weight,
            tls_name: None,
        }
    }

    /// One group "core": interval 10 s, down after 3, up after 2.
    fn table(peers: Vec<PeerParams>, t0: Instant) -> PeerTable {
        let g = GroupParams::new("core", 10 * SEC, 3, 2, peers);
        PeerTable::new(vec![g], t0, 7)
    }

    /// Drive one ping round for every due peer with `result`.
    fn ping_all(t: &mut PeerTable, now: Instant, result: Result<Duration, ()>) -> Vec<PeerId> {
        let mut pinged = Vec::new();
        while let Some(p) = t.poll_ping(now) {
            pinged.push(p);
        }
        for p in &pinged {
            t.handle_ping_result(now, *p, result);
        }
        pinged
    }

    #[test]
    fn down_after_n_failures_and_up_after_m_successes() {
        let t0 = Instant::now();
        let mut t = table(vec![peer(1, 1, 100)], t0);
        let p = PeerId(0);
        assert_eq!(t.status(p).unwrap().state, PeerState::Up);
        let mut now = t0;
        for round in 1..=3 {
            assert_eq!(ping_all(&mut t, now, Err(())), vec![p], "round {round}");
            let expect_down = round == 3;
            assert_eq!(t.status(p).unwrap().state == PeerState::Down, expect_down);
            now += 10 * SEC;
        }
        assert_eq!(t.poll_event(), Some(PeerEvent::PeerDown(p)));
        assert_eq!(t.poll_event(), None);
        // One success is not enough, and a failure in between restarts the count.
        ping_all(&mut t, now, Ok(SEC / 10));
        now += 10 * SEC;
        ping_all(&mut t, now, Err(()));
        now += 10 * SEC;
        ping_all(&mut t, now, Ok(SEC / 10));
        assert_eq!(t.status(p).unwrap().state, PeerState::Down);
        now += 10 * SEC;
        ping_all(&mut t, now, Ok(SEC / 10));
        assert_eq!(t.status(p).unwrap().state, PeerState::Up);
        assert_eq!(t.status(p).unwrap().since, now);
        assert_eq!(t.poll_event(), Some(PeerEvent::PeerUp(p)));
        let s = t.status(p).unwrap();
        assert_eq!((s.pings_sent, s.ping_failures), (7, 4));
    }

    #[test]
    fn pings_follow_the_interval_one_outstanding_and_expire() {
        let t0 = Instant::now();
        let mut t = table(vec![peer(1, 1, 100), peer(2, 1, 100)], t0);
        // First pings spread over the interval by position.
        assert_eq!(t.poll_ping(t0), Some(PeerId(0)));
        assert_eq!(t.poll_ping(t0), None);
        assert_eq!(t.poll_timeout(), Some(t0 + 5 * SEC));
        assert_eq!(t.poll_ping(t0 + 5 * SEC), Some(PeerId(1)));
        // Peer 0's ping unanswered: it fails at its deadline (= interval),
        // and its next ping is due at the same moment.
        assert_eq!(t.poll_timeout(), Some(t0 + 10 * SEC));
        t.handle_timeout(t0 + 10 * SEC);
        assert_eq!(t.status(PeerId(0)).unwrap().consecutive_failures, 1);
        // A late answer to the expired ping is ignored.
        t.handle_ping_result(t0 + 10 * SEC, PeerId(0), Ok(SEC));
        assert_eq!(t.status(PeerId(0)).unwrap().consecutive_failures, 1);
        assert_eq!(t.status(PeerId(0)).unwrap().last_rtt, None);
        assert_eq!(t.poll_ping(t0 + 10 * SEC), Some(PeerId(0)));
    }

    #[test]
    fn rtt_is_smoothed_per_rfc_6298() {
        let t0 = Instant::now();
        let mut t = table(vec![peer(1, 1, 100)], t0);
        let ms = Duration::from_millis;
        ping_all(&mut t, t0, Ok(ms(80)));
        assert_eq!(t.status(PeerId(0)).unwrap().srtt, Some(ms(80)));
        ping_all(&mut t, t0 + 10 * SEC, Ok(ms(160)));
        let s = t.status(PeerId(0)).unwrap();
        assert_eq!((s.srtt, s.last_rtt), (Some(ms(90)), Some(ms(160))));
    }

    #[test]
    fn selection_best_priority_up_first_then_down_as_last_resort() {
        let t0 = Instant::now();
        let peers = vec![peer(1, 2, 100), peer(2, 1, 100), peer(3, 3, 100)];
        let mut t = table(peers, t0);
        let g = t.group_id("core").unwrap();
        assert_eq!(t.select(g, t0), vec![PeerId(1), PeerId(0), PeerId(2)]);
        // The primary fails three calls: down, tried last.
        for _ in 0..3 {
            t.report_failure(t0, PeerId(1));
        }
        assert_eq!(t.poll_event(), Some(PeerEvent::PeerDown(PeerId(1))));
        assert_eq!(t.select(g, t0), vec![PeerId(0), PeerId(2), PeerId(1)]);
        // A call failure brings the ping forward (peer 0's first is due at
        // t0 anyway; peer 2's, a third of the interval later, is not).
        assert_eq!(t.poll_ping(t0), Some(PeerId(0)));
        assert_eq!(t.poll_ping(t0), Some(PeerId(1)));
        assert_eq!(t.poll_ping(t0), None);
        assert_eq!(t.status(PeerId(1)).unwrap().call_failures, 3);
        assert_eq!(t.group_id("nope"), None);
    }

    #[test]
    fn failover_walks_the_candidates_and_success_resets_failures() {
        let t0 = Instant::now();
        let mut t = table(vec![peer(1, 1, 100), peer(2, 2, 100)], t0);
        let g = GroupId(0);
        let order = t.select(g, t0);
        assert_eq!(order, vec![PeerId(0), PeerId(1)]);
        // The call module: 503 from the first, 200 from the second.
        t.report_failure(t0, order[0]);
        t.report_success(t0, order[1]);
        assert_eq!(t.status(PeerId(0)).unwrap().consecutive_failures, 1);
        t.report_success(t0, PeerId(0));
        assert_eq!(t.status(PeerId(0)).unwrap().consecutive_failures, 0);
        assert_eq!(t.status(PeerId(0)).unwrap().state, PeerState::Up);
    }

    #[test]
    fn weighted_choice_follows_the_weights_reproducibly() {
        let t0 = Instant::now();
        let peers = vec![peer(1, 1, 300), peer(2, 1, 100), peer(3, 5, 100)];
        let mut t = table(peers.clone(), t0);
        let mut first = [0u32; 3];
        for _ in 0..4000 {
            let order = t.select(GroupId(0), t0);
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], PeerId(2), "lower priority always last");
            first[order[0].0] += 1;
        }
        // Expected 3000 : 1000; a seeded run, checked with a wide margin.
        assert!((2800..=3200).contains(&first[0]), "{first:?}");
        assert_eq!(first[0] + first[1], 4000);
        // Same seed, same sequence.
        let mut a = table(peers.clone(), t0);
        let mut b = table(peers, t0);
        let sa: Vec<_> = (0..20).map(|_| a.select(GroupId(0), t0)).collect();
        let sb: Vec<_> = (0..20).map(|_| b.select(GroupId(0), t0)).collect();
        assert_eq!(sa, sb);
    }

    #[test]
    fn options_request_is_a_valid_sip_request() {
        let t0 = Instant::now();
        let mut p = peer(9, 1, 1);
        p.transport = Transport::Tcp;
        p.address = "[2001:db8::9]:5061".parse().unwrap();
        let mut t = table(vec![p], t0);
        let local: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let m1 = t.options_request(PeerId(0), local).unwrap();
        let m2 = t.options_request(PeerId(0), local).unwrap();
        let bytes = m1.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:[2001:db8::9]:5061;transport=tcp SIP/2.0\r\n"),
            "{text}"
        );
        let m = Message::parse(&bytes, Framing::Stream, Limits::default()).unwrap();
        assert_eq!(m.method(), Some(&Method::Options));
        let via = &m.vias().unwrap()[0];
        assert_eq!(
            (via.transport.as_str(), via.sent_by()),
            ("TCP", "[2001:db8::1]:5060".to_owned())
        );
        assert!(via.branch().unwrap().starts_with(MAGIC_COOKIE));
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert!(m.from().unwrap().tag().is_some());
        assert_eq!(m.cseq().unwrap().seq, 1);
        assert_eq!(m2.cseq().unwrap().seq, 2);
        assert_ne!(m.call_id().unwrap(), m2.call_id().unwrap());
        assert_ne!(m2.vias().unwrap()[0].branch(), via.branch());
    }

    proptest::proptest! {
        /// Whatever the priorities, weights, states and seed: `select` is a
        /// permutation of the group, Up before Down, priorities ascending
        /// within each.
        #[test]
        fn select_orders_every_peer_once(
            spec in proptest::collection::vec((0u16..4, 0u16..500, proptest::bool::ANY), 1..12),
            seed in proptest::num::u64::ANY,
        ) {
            let t0 = Instant::now();
            let peers: Vec<PeerParams> = spec
                .iter()
                .enumerate()
                .map(|(i, (prio, w, _))| peer(i as u8, *prio, *w))
                .collect();
            let g = GroupParams::new("core", 10 * SEC, 1, 1, peers);
            let mut t = PeerTable::new(vec![g], t0, seed);
            for (i, (_, _, down)) in spec.iter().enumerate() {
                if *down {
                    t.report_failure(t0, PeerId(i));
                }
            }
            let order = t.select(GroupId(0), t0);
            let mut sorted = order.clone();
            sorted.sort();
            proptest::prop_assert_eq!(sorted, (0..spec.len()).map(PeerId).collect::<Vec<_>>());
            let keys: Vec<(bool, u16)> = order
                .iter()
                .map(|p| (spec[p.0].2, spec[p.0].0))
                .collect();
            proptest::prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{:?}", keys);
        }
    }
}
