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
use super::transport::Transport;
use super::text::Params;
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
                let end = start + priorities[start..].iter().take_while(|q| **q == prio).count();
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
        let ids = PingIds { cseq: p.cseq, ..ids };
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
