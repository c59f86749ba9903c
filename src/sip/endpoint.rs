//! The SIP transaction layer (RFC 3261 §17) for one endpoint, sans-IO: a
//! table of live transactions keyed by the matching keys of [`super::matching`],
//! the four transaction machines, and what the layer answers by itself.
//!
//! # Contract
//!
//! - Input: `handle_input(now, bytes, remote)` for each datagram, or each
//!   message cut by [`super::StreamFramer`] on a stream (the transport of
//!   `remote` picks the framing); `handle_transport_error(now, remote)` when
//!   a send to `remote` failed (§17.1.4, §17.2.4); `handle_timeout(now)`.
//! - From the TU (the user agent): `send_request` (starts a client
//!   transaction; the layer writes the top Via with a fresh branch), `cancel`
//!   (§9.1, built from the INVITE), `respond` (a response on a server
//!   transaction), `send_stateless` / `retransmit` (the ACK for a 2xx, which
//!   has no transaction, §13.2.2.4, §17.1.1.3).
//! - Output: `poll_transmit()` → [`Transmit`] (destination, transport,
//!   bytes), `poll_event()` → [`TxnEvent`], `poll_timeout()` (the earliest
//!   deadline of all transactions; a min-scan).
//!
//! What the layer does without its TU:
//! - retransmitted requests go to their server transaction (§17.2.3), which
//!   resends its last response or absorbs them; responses to client
//!   transactions are matched by branch and CSeq method (§17.1.3);
//! - a request that fails to parse but can be answered gets the
//!   [`super::Rejection`]'s status (400 with the fault as reason phrase, 505,
//!   513) statelessly; the [`super::uas_precheck`] answers (501/405/416/420)
//!   go through a server transaction, so that retransmissions are absorbed;
//! - INVITE server transactions answer 100 Trying at once (§17.2.1);
//! - CANCEL (§9.2): 481 when it matches no INVITE transaction, else 200, and
//!   [`TxnEvent::Cancelled`] when the INVITE has no final response yet (the
//!   TU then answers the INVITE with 487);
//! - a 2xx to an INVITE that matches no transaction goes to the TU as
//!   [`TxnEvent::Stray2xx`] (the dialog re-sends its ACK); every other
//!   unmatched response is dropped and counted;
//! - requests whose branch lacks the RFC 3261 magic cookie (RFC 2543 peers)
//!   are dropped and counted (§17.2.3's old matching is not supported).
//!
//! A transaction is removed from the tables as soon as its machine is
//! Terminated, and [`TxnEvent::Terminated`] tells the TU. Responses go to
//! the address and transport the request came from (§18.2.2 for streams;
//! RFC 3581 symmetric response for datagrams: the core peers are known
//! addresses, not DNS names).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::header::{MAGIC_COOKIE, Method};
use super::invite_client::{InviteClient, InviteClientState};
use super::invite_server::{InviteServer, InviteServerEvent, InviteServerState};
use super::matching::{TransactionKey, cancelled_invite_key, client_key, server_key};
use super::message::{Framing, Header, Limits, Message, StartLine};
use super::non_invite_server::{NonInviteServer, NonInviteServerState, ServerEvent};
use super::response::{UasCapabilities, response_to, uas_precheck};
use super::transaction::{ClientEvent, NonInviteClient, NonInviteClientState, TimerValues};

/// The transport protocols of RFC 3261 §18 (one type for the sans-IO core
/// and the socket shell in [`super::transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// Lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport token of a Via (§20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Reliable transports have no retransmission timers (§17.1.1.2, §17.2.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// How a message arrives on this transport (§18.3).
    pub fn framing(self) -> Framing {
        match self {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp | Transport::Tls => Framing::Stream,
        }
    }
}

/// The far end of a message: its socket address and transport. For streams
/// the shell keeps one connection per `Remote` (§18: connection reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Remote {
    pub address: SocketAddr,
    pub transport: Transport,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// A transaction's handle, unique for the life of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

/// What the transaction layer tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEvent {
    /// A new request on server transaction `txn` (an INVITE has had its 100
    /// Trying). The TU answers with [`Endpoint::respond`].
    Request {
        txn: TxnId,
        request: Box<Message>,
        from: Remote,
    },
    /// An ACK that matched no INVITE server transaction awaiting it: the ACK
    /// for a 2xx (§13.3.1.4, §17.2.3; RFC 6026 §7.1 for one that matched in
    /// Accepted). For the dialog layer.
    Ack { request: Box<Message>, from: Remote },
    /// §9.2: a CANCEL matched INVITE server transaction `invite`, which has
    /// no final response yet. The CANCEL was answered 200; the TU answers
    /// the INVITE with 487.
    Cancelled { invite: TxnId, cancel: Box<Message> },
    /// A provisional or final response on client transaction `txn` (2xx
    /// retransmissions included, RFC 6026 Accepted).
    Response { txn: TxnId, response: Box<Message> },
    /// A 2xx to an INVITE with no client transaction (§13.2.2.4): the dialog
    /// re-sends its ACK.
    Stray2xx {
        response: Box<Message>,
        from: Remote,
    },
    /// Client transaction `txn` got no final response (Timer B or F; the TU
    /// treats it as 408, §8.1.3.1).
    Timeout { txn: TxnId },
    /// Sending on `txn` failed (§17.1.4, §17.2.4; a client TU treats it as 503).
    TransportError { txn: TxnId },
    /// INVITE server transaction `txn`: Timer H fired, no ACK for its
    /// non-2xx final response (§17.2.1).
    AckTimeout { txn: TxnId },
    /// Transaction `txn` ended and left the tables.
    Terminated { txn: TxnId },
}

/// Counters of what the layer handled by itself (for telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Unparsable requests answered (400/505/513).
    pub rejected_answered: u64,
    /// Unparsable input dropped (responses, requests too broken to answer).
    pub rejected_dropped: u64,
    /// Requests answered by [`uas_precheck`] (501/405/416/420).
    pub prechecked: u64,
    /// Request retransmissions given to their server transaction.
    pub request_retransmissions: u64,
    /// Responses that matched no client transaction and were dropped.
    pub stray_responses: u64,
    /// Requests without the magic cookie in their branch (RFC 2543), dropped.
    pub rfc2543_dropped: u64,
    /// CANCELs that matched no transaction (answered 481).
    pub cancel_unmatched: u64,
}

/// Configuration of the transaction layer.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerValues,
    pub limits: Limits,
    /// For the UAS prechecks of §8.2.1-§8.2.2.3.
    pub capabilities: UasCapabilities,
    /// `host[:port]` written as sent-by in our Via headers for UDP and TCP.
    pub sent_by: String,
    /// sent-by for TLS (e.g. port 5061); `None` = `sent_by`.
    pub sent_by_tls: Option<String>,
    /// Seed for branches, tags and Call-IDs; the shell passes OS randomness
    /// (§8.1.1.4, §8.1.1.7, §19.3 want them unguessable and unique).
    pub seed: u64,
}

/// xorshift64*: branches, tags and Call-IDs, reproducible from the seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: any seed, 0 included, gives a good state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 16 hex digits.
    pub(crate) fn token(&mut self) -> String {
        format!("{:016x}", self.next())
    }
}

enum Machine {
    InviteClient(Box<InviteClient>),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

struct Txn {
    key: TransactionKey,
    remote: Remote,
    machine: Machine,
    /// Client INVITE: the request as sent, for its CANCEL (§9.1).
    request: Option<Message>,
}

impl Txn {
    fn is_server(&self) -> bool {
        matches!(
            self.machine,
            Machine::InviteServer(_) | Machine::NonInviteServer(_)
        )
    }

    fn terminated(&self) -> bool {
        match &self.machine {
            Machine::InviteClient(m) => m.state() == InviteClientState::Terminated,
            Machine::NonInviteClient(m) => m.state() == NonInviteClientState::Terminated,
            Machine::InviteServer(m) => m.state() == InviteServerState::Terminated,
            Machine::NonInviteServer(m) => m.state() == NonInviteServerState::Terminated,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.machine {
            Machine::InviteClient(m) => m.poll_timeout(),
            Machine::NonInviteClient(m) => m.poll_timeout(),
            Machine::InviteServer(m) => m.poll_timeout(),
            Machine::NonInviteServer(m) => m.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match &mut self.machine {
            Machine::InviteClient(m) => m.handle_timeout(now),
            Machine::NonInviteClient(m) => m.handle_timeout(now),
            Machine::InviteServer(m) => m.handle_timeout(now),
            Machine::NonInviteServer(m) => m.handle_timeout(now),
        }
    }

    fn handle_transport_error(&mut self, now: Instant) {
        match &mut self.machine {
            Machine::InviteClient(m) => m.handle_transport_error(now),
            Machine::NonInviteClient(m) => m.handle_transport_error(now),
            Machine::InviteServer(m) => m.handle_transport_error(now),
            Machine::NonInviteServer(m) => m.handle_transport_error(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        match &mut self.machine {
            Machine::InviteClient(m) => m.poll_transmit(),
            Machine::NonInviteClient(m) => m.poll_transmit(),
            Machine::InviteServer(m) => m.poll_transmit(),
            Machine::NonInviteServer(m) => m.poll_transmit(),
        }
    }
}

/// Client transaction events and server transaction events, one type.
enum MachineEvent {
    Client(ClientEvent),
    InviteServer(InviteServerEvent),
    Server(ServerEvent),
}

fn poll_machine_event(m: &mut Machine) -> Option<MachineEvent> {
    match m {
        Machine::InviteClient(m) => m.poll_event().map(MachineEvent::Client),
        Machine::NonInviteClient(m) => m.poll_event().map(MachineEvent::Client),
        Machine::InviteServer(m) => m.poll_event().map(MachineEvent::InviteServer),
        Machine::NonInviteServer(m) => m.poll_event().map(MachineEvent::Server),
    }
}

/// The transaction layer of one endpoint. See the module doc for the contract.
pub struct Endpoint {
    config: EndpointConfig,
    rng: Rng,
    next_id: u64,
    txns: BTreeMap<TxnId, Txn>,
    client_index: HashMap<TransactionKey, TxnId>,
    server_index: HashMap<TransactionKey, TxnId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxnEvent>,
    stats: EndpointStats,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            rng: Rng::new(config.seed),
            config,
            next_id: 1,
            txns: BTreeMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty() && self.client_index.is_empty() && self.server_index.is_empty()
    }

    /// A fresh random number (e.g. the first RSeq, RFC 3262 §3).
    pub fn random(&mut self) -> u64 {
        self.rng.next()
    }

    /// A fresh random token (16 hex digits) for tags and Call-IDs.
    pub fn random_token(&mut self) -> String {
        self.rng.token()
    }

    fn sent_by(&self, transport: Transport) -> &str {
        match (transport, &self.config.sent_by_tls) {
            (Transport::Tls, Some(s)) => s,
            _ => &self.config.sent_by,
        }
    }

    /// Put our Via with a fresh branch (§8.1.1.7) on top of `request` and
    /// return the branch.
    fn push_via(&mut self, request: &mut Message, transport: Transport) -> String {
        let branch = format!("{MAGIC_COOKIE}{}", self.rng.token());
        // RFC 3581 rport: ask for responses to our source port.
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_token(),
            self.sent_by(transport)
        );
        request.headers.insert(0, Header::new("Via", via));
        branch
    }

    fn new_id(&mut self) -> TxnId {
        let id = TxnId(self.next_id);
        self.next_id += 1;
        id
    }

    // ----- input ---------------------------------------------------------

    /// One message's bytes from `from` (a datagram, or a message the stream
    /// framer cut).
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8], from: Remote) {
        match Message::parse(bytes, from.transport.framing(), self.config.limits) {
            Ok(m) => self.handle_message(now, m, from),
            Err(rejection) => match rejection.answer {
                Some((status, request)) => {
                    self.stats.rejected_answered += 1;
                    tracing::info!(%status, fault = rejection.fault, remote = %from.address, "sip request rejected");
                    let r = response_to(&request, status, Some(rejection.fault), None);
                    self.push_transmit(from, r.to_bytes());
                }
                None => {
                    self.stats.rejected_dropped += 1;
                    tracing::debug!(fault = rejection.fault, remote = %from.address, "sip message dropped");
                }
            },
        }
    }

    /// A parsed message from `from`.
    pub fn handle_message(&mut self, now: Instant, msg: Message, from: Remote) {
        match msg.start {
            StartLine::Response { .. } => self.on_response(now, msg, from),
            StartLine::Request { .. } => self.on_request(now, msg, from),
        }
    }

    fn on_response(&mut self, now: Instant, response: Message, from: Remote) {
        // §8.1.3.3: a response with more than one Via was not meant for us.
        if response.vias().map_or(true, |v| v.len() != 1) {
            self.stats.stray_responses += 1;
            tracing::debug!(remote = %from.address, "sip response with several Vias dropped");
            return;
        }
        let key = client_key(&response);
        if let Some(id) = key.and_then(|k| self.client_index.get(&k).copied()) {
            if let Some(t) = self.txns.get_mut(&id) {
                match &mut t.machine {
                    Machine::InviteClient(m) => m.handle_response(now, response),
                    Machine::NonInviteClient(m) => m.handle_response(now, response),
                    _ => {}
                }
            }
            self.drain(id);
            return;
        }
        let invite_2xx = matches!(response.status(), Some(200..=299))
            && response.cseq().is_ok_and(|c| c.method == Method::Invite);
        if invite_2xx {
            self.events.push_back(TxnEvent::Stray2xx {
                response: Box::new(response),
                from,
            });
        } else {
            self.stats.stray_responses += 1;
            tracing::debug!(remote = %from.address, status = ?response.status(), "sip stray response dropped");
        }
    }

    fn on_request(&mut self, now: Instant, request: Message, from: Remote) {
        let Some(key) = server_key(&request) else {
            self.stats.rfc2543_dropped += 1;
            tracing::debug!(remote = %from.address, "sip request without RFC 3261 branch dropped");
            return;
        };
        let is_ack = request.method() == Some(&Method::Ack);
        if let Some(&id) = self.server_index.get(&key) {
            self.on_matched_request(now, id, request, from, is_ack);
            return;
        }
        if is_ack {
            // §17.2.3: no INVITE transaction: the ACK for a 2xx, for the TU.
            self.events.push_back(TxnEvent::Ack {
                request: Box::new(request),
                from,
            });
            return;
        }
        if let Some(r) = uas_precheck(&request, &self.config.capabilities) {
            self.stats.prechecked += 1;
            let id = self.new_server(key, &request, from);
            self.respond(now, id, r);
            return;
        }
        if request.method() == Some(&Method::Cancel) {
            self.on_cancel(now, key, request, from);
            return;
        }
        let id = self.new_server(key, &request, from);
        if request.method() == Some(&Method::Invite) {
            // §17.2.1: 100 Trying at once, the TU may take longer than 200 ms.
            let trying = response_to(&request, 100, None, None);
            self.respond(now, id, trying);
        }
        self.events.push_back(TxnEvent::Request {
            txn: id,
            request: Box::new(request),
            from,
        });
    }

    fn on_matched_request(
        &mut self,
        now: Instant,
        id: TxnId,
        request: Message,
        from: Remote,
        is_ack: bool,
    ) {
        let Some(t) = self.txns.get_mut(&id) else {
            return;
        };
        match &mut t.machine {
            Machine::InviteServer(m) if is_ack => m.handle_ack(now),
            Machine::InviteServer(m) => {
                self.stats.request_retransmissions += 1;
                m.handle_request(now);
            }
            Machine::NonInviteServer(m) => {
                self.stats.request_retransmissions += 1;
                m.handle_request(now);
            }
            _ => {}
        }
        // RFC 6026 §7.1: an ACK matched in Accepted goes to the TU.
        let mut ack_for_tu = false;
        if let Some(Machine::InviteServer(m)) = self.txns.get_mut(&id).map(|t| &mut t.machine) {
            while let Some(ev) = m.poll_event() {
                match ev {
                    InviteServerEvent::Ack => ack_for_tu = true,
                    InviteServerEvent::AckTimeout => {
                        self.events.push_back(TxnEvent::AckTimeout { txn: id })
                    }
                    InviteServerEvent::TransportError => {
                        self.events.push_back(TxnEvent::TransportError { txn: id })
                    }
                }
            }
        }
        if ack_for_tu {
            self.events.push_back(TxnEvent::Ack {
                request: Box::new(request),
                from,
            });
        }
        self.drain(id);
    }

    /// §9.2: answer the CANCEL, and tell the TU if the INVITE is still pending.
    fn on_cancel(&mut self, now: Instant, key: TransactionKey, cancel: Message, from: Remote) {
        let invite = cancelled_invite_key(&cancel).and_then(|k| self.server_index.get(&k).copied());
        let id = self.new_server(key, &cancel, from);
        let Some(invite) = invite else {
            self.stats.cancel_unmatched += 1;
            self.respond(now, id, response_to(&cancel, 481, None, None));
            return;
        };
        let pending = matches!(
            self.txns.get(&invite).map(|t| &t.machine),
            Some(Machine::InviteServer(m)) if m.state() == InviteServerState::Proceeding
        );
        // §9.2: the To tag of the 200 to a CANCEL should equal that of the
        // INVITE's responses; the TU has not told us that tag, and the CANCEL
        // transaction is hop-by-hop, so the CANCEL's To is copied as it came.
        self.respond(now, id, response_to(&cancel, 200, None, None));
        if pending {
            self.events.push_back(TxnEvent::Cancelled {
                invite,
                cancel: Box::new(cancel),
            });
        }
    }

    fn new_server(&mut self, key: TransactionKey, request: &Message, from: Remote) -> TxnId {
        let id = self.new_id();
        let reliable = from.transport.is_reliable();
        let machine = if request.method() == Some(&Method::Invite) {
            Machine::InviteServer(InviteServer::new(reliable, self.config.timers))
        } else {
            Machine::NonInviteServer(NonInviteServer::new(reliable, self.config.timers))
        };
        self.server_index.insert(key.clone(), id);
        self.txns.insert(
            id,
            Txn {
                key,
                remote: from,
                machine,
                request: None,
            },
        );
        id
    }

    // ----- from the TU ---------------------------------------------------

    /// Start a client transaction for `request` (not ACK, see
    /// [`Endpoint::send_stateless`]; not CANCEL, see [`Endpoint::cancel`]):
    /// our Via with a fresh branch goes on top and the request is sent to `to`.
    pub fn send_request(&mut self, now: Instant, mut request: Message, to: Remote) -> TxnId {
        let branch = self.push_via(&mut request, to.transport);
        self.start_client(now, request, branch, to)
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: Message,
        branch: String,
        to: Remote,
    ) -> TxnId {
        let method = request.method().cloned().unwrap_or(Method::Options);
        let key = TransactionKey {
            branch,
            sent_by: String::new(),
            method: method.clone(),
        };
        let id = self.new_id();
        let reliable = to.transport.is_reliable();
        let (machine, stored) = if method == Method::Invite {
            let m = InviteClient::new(now, request.clone(), reliable, self.config.timers);
            (Machine::InviteClient(Box::new(m)), Some(request))
        } else {
            let m = NonInviteClient::new(now, request.to_bytes(), reliable, self.config.timers);
            (Machine::NonInviteClient(m), None)
        };
        self.client_index.insert(key.clone(), id);
        self.txns.insert(
            id,
            Txn {
                key,
                remote: to,
                machine,
                request: stored,
            },
        );
        self.drain(id);
        id
    }

    /// §9.1: CANCEL the INVITE of client transaction `invite`: same
    /// Request-URI, Call-ID, To, From, CSeq number, top Via (so the same
    /// branch) and Route headers, plus `extra` (e.g. `Reason`, RFC 3326).
    /// `None` when `invite` is not an INVITE client transaction that may
    /// still be cancelled (it must have had a provisional response and no
    /// final one; §9.1 forbids a CANCEL before a provisional).
    pub fn cancel(&mut self, now: Instant, invite: TxnId, extra: Vec<Header>) -> Option<TxnId> {
        let t = self.txns.get(&invite)?;
        let Machine::InviteClient(m) = &t.machine else {
            return None;
        };
        if m.state() != InviteClientState::Proceeding {
            return None;
        }
        let inv = t.request.as_ref()?;
        let to = t.remote;
        let branch = t.key.branch.clone();
        let mut cancel = Message {
            start: StartLine::Request {
                method: Method::Cancel,
                uri: inv.start_uri()?.clone(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        cancel
            .headers
            .extend(inv.headers_named("Via").take(1).cloned());
        cancel.headers.extend(inv.headers_named("Route").cloned());
        cancel.push("Max-Forwards", "70");
        for name in ["From", "To", "Call-ID"] {
            cancel.headers.extend(inv.headers_named(name).cloned());
        }
        cancel.push("CSeq", format!("{} CANCEL", inv.cseq().ok()?.seq));
        cancel.headers.extend(extra);
        Some(self.start_client(now, cancel, branch, to))
    }

    /// Send a request that has no transaction (the ACK for a 2xx,
    /// §13.2.2.4): our Via with a fresh branch goes on top. Returns the
    /// bytes, so the dialog can [`Endpoint::retransmit`] them.
    pub fn send_stateless(&mut self, mut request: Message, to: Remote) -> Vec<u8> {
        self.push_via(&mut request, to.transport);
        let bytes = request.to_bytes();
        self.push_transmit(to, bytes.clone());
        bytes
    }

    /// Send `bytes` again (an ACK for a retransmitted 2xx, or the TU's own
    /// 2xx retransmission, §13.3.1.4).
    pub fn retransmit(&mut self, bytes: Vec<u8>, to: Remote) {
        self.push_transmit(to, bytes);
    }

    /// The TU's response on server transaction `txn`. Returns false when
    /// the transaction is gone (its response is then not sent).
    pub fn respond(&mut self, now: Instant, txn: TxnId, response: Message) -> bool {
        let Some(status) = response.status() else {
            return false;
        };
        let Some(t) = self.txns.get_mut(&txn) else {
            return false;
        };
        let bytes = response.to_bytes();
        match &mut t.machine {
            Machine::InviteServer(m) => m.send_response(now, status, bytes),
            Machine::NonInviteServer(m) => m.send_response(now, status, bytes),
            _ => return false,
        }
        self.drain(txn);
        true
    }

    /// §9.1: destroy INVITE client transaction `txn` if it still waits for
    /// a final response (64*T1 after its CANCEL). True if it was removed;
    /// [`TxnEvent::Terminated`] follows.
    pub fn abandon_invite(&mut self, txn: TxnId) -> bool {
        let pending = matches!(
            self.txns.get(&txn).map(|t| &t.machine),
            Some(Machine::InviteClient(m))
                if matches!(m.state(), InviteClientState::Calling | InviteClientState::Proceeding)
        );
        if !pending {
            return false;
        }
        if let Some(t) = self.txns.remove(&txn) {
            self.client_index.remove(&t.key);
            self.events.push_back(TxnEvent::Terminated { txn });
        }
        true
    }

    /// Whether server transaction `txn` is an INVITE still waiting for its
    /// final response.
    pub fn invite_pending(&self, txn: TxnId) -> bool {
        matches!(
            self.txns.get(&txn).map(|t| &t.machine),
            Some(Machine::InviteServer(m)) if m.state() == InviteServerState::Proceeding
        )
    }

    /// A send to `remote` failed: every transaction talking to it learns it.
    pub fn handle_transport_error(&mut self, now: Instant, remote: Remote) {
        let ids: Vec<TxnId> = self
            .txns
            .iter()
            .filter(|(_, t)| t.remote == remote)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(t) = self.txns.get_mut(&id) {
                t.handle_transport_error(now);
            }
            self.drain(id);
        }
    }

    // ----- timers and output ---------------------------------------------

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txns.values().filter_map(Txn::poll_timeout).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TxnId> = self
            .txns
            .iter()
            .filter(|(_, t)| t.poll_timeout().is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(t) = self.txns.get_mut(&id) {
                t.handle_timeout(now);
            }
            self.drain(id);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    fn push_transmit(&mut self, to: Remote, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            destination: to.address,
            transport: to.transport,
            bytes,
        });
    }

    /// Move a transaction's output to ours; remove it when Terminated.
    fn drain(&mut self, id: TxnId) {
        let Some(t) = self.txns.get_mut(&id) else {
            return;
        };
        let remote = t.remote;
        while let Some(bytes) = t.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination: remote.address,
                transport: remote.transport,
                bytes,
            });
        }
        while let Some(ev) = poll_machine_event(&mut t.machine) {
            self.events.push_back(match ev {
                MachineEvent::Client(ClientEvent::Response(response)) => {
                    TxnEvent::Response { txn: id, response }
                }
                MachineEvent::Client(ClientEvent::Timeout) => TxnEvent::Timeout { txn: id },
                MachineEvent::Client(ClientEvent::TransportError)
                | MachineEvent::InviteServer(InviteServerEvent::TransportError)
                | MachineEvent::Server(ServerEvent::TransportError) => {
                    TxnEvent::TransportError { txn: id }
                }
                MachineEvent::InviteServer(InviteServerEvent::AckTimeout) => {
                    TxnEvent::AckTimeout { txn: id }
                }
                // Only produced on ACK input, handled in on_matched_request.
                MachineEvent::InviteServer(InviteServerEvent::Ack) => continue,
            });
        }
        if t.terminated() {
            let index = if t.is_server() {
                &mut self.server_index
            } else {
                &mut self.client_index
            };
            index.remove(&t.key);
            self.txns.remove(&id);
            self.events.push_back(TxnEvent::Terminated { txn: id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> EndpointConfig {
        EndpointConfig {
            timers: TimerValues::default(),
            limits: Limits::default(),
            capabilities: UasCapabilities {
                allow: vec![
                    Method::Invite,
                    Method::Ack,
                    Method::Cancel,
                    Method::Bye,
                    Method::Options,
                ],
                supported: vec![],
            },
            sent_by: "192.0.2.1:5060".into(),
            sent_by_tls: None,
            seed: 7,
        }
    }

    fn remote() -> Remote {
        Remote {
            address: "192.0.2.9:5060".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    fn request(method: &str, branch: &str) -> Vec<u8> {
        format!(
            "{method} sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@192.0.2.9>;tag=c1\r\nTo: <sip:gw@192.0.2.1>\r\n\
Call-ID: e1@core\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn statuses(e: &mut Endpoint) -> Vec<u16> {
        std::iter::from_fn(|| e.poll_transmit())
            .filter_map(|t| {
                Message::parse(&t.bytes, Framing::Datagram, Limits::default())
                    .ok()?
                    .status()
            })
            .collect()
    }

    fn events(e: &mut Endpoint) -> Vec<TxnEvent> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    fn run_out(e: &mut Endpoint, mut now: Instant) {
        for _ in 0..1000 {
            let Some(d) = e.poll_timeout() else { return };
            now = now.max(d);
            e.handle_timeout(now);
        }
        panic!("timers never ran out");
    }

    #[test]
    fn invite_gets_trying_then_retransmission_resends_it() {
        let now = Instant::now();
        let mut e = Endpoint::new(config());
        e.handle_input(now, &request("INVITE", "z9hG4bKa"), remote());
        assert_eq!(statuses(&mut e), [100]);
        let ev = events(&mut e);
        let [TxnEvent::Request { txn, .. }] = ev[..] else {
            panic!("{ev:?}")
        };
        e.handle_input(now, &request("INVITE", "z9hG4bKa"), remote());
        assert_eq!(statuses(&mut e), [100]);
        assert!(events(&mut e).is_empty());
        assert_eq!(e.stats().request_retransmissions, 1);
        // A non-2xx final: ACK matches the transaction and is absorbed.
        let req = Message::parse(
            &request("INVITE", "z9hG4bKa"),
            Framing::Datagram,
            Limits::default(),
        )
        .unwrap();
        assert!(e.respond(now, txn, response_to(&req, 486, None, Some("g1"))));
        assert_eq!(statuses(&mut e), [486]);
        e.handle_input(now, &request("ACK", "z9hG4bKa"), remote());
        assert!(events(&mut e).is_empty());
        run_out(&mut e, now);
        assert_eq!(events(&mut e), [TxnEvent::Terminated { txn }]);
        assert!(e.is_empty());
    }

    #[test]
    fn cancel_answers_200_and_tells_the_tu_or_481() {
        let now = Instant::now();
        let mut e = Endpoint::new(config());
        e.handle_input(now, &request("CANCEL", "z9hG4bKx"), remote());
        assert_eq!(statuses(&mut e), [481]);
        e.handle_input(now, &request("INVITE", "z9hG4bKb"), remote());
        statuses(&mut e);
        let ev = events(&mut e);
        let [TxnEvent::Request { txn, .. }] = ev[..] else {
            panic!("{ev:?}")
        };
        e.handle_input(now, &request("CANCEL", "z9hG4bKb"), remote());
        assert_eq!(statuses(&mut e), [200]);
        assert!(
            matches!(&events(&mut e)[..], [TxnEvent::Cancelled { invite, .. }] if *invite == txn)
        );
        run_out(&mut e, now);
        // The INVITE transaction still waits for the TU's 487; the CANCEL's ended.
        assert_eq!(e.len(), 1);
        assert!(e.invite_pending(txn));
    }

    #[test]
    fn precheck_and_parse_rejections_are_answered() {
        let now = Instant::now();
        let mut e = Endpoint::new(config());
        e.handle_input(now, &request("SUBSCRIBE", "z9hG4bKs"), remote());
        e.handle_input(now, &request("FOO", "z9hG4bKf"), remote());
        assert_eq!(statuses(&mut e), [405, 501]);
        let bad = String::from_utf8(request("OPTIONS", "z9hG4bKo"))
            .unwrap()
            .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        e.handle_input(now, bad.as_bytes(), remote());
        assert_eq!(statuses(&mut e), [400]);
        e.handle_input(now, &request("OPTIONS", "1234"), remote());
        e.handle_input(now, b"SIP/2.0 200 OK\r\n\r\n", remote());
        assert_eq!(statuses(&mut e), Vec::<u16>::new());
        let s = e.stats();
        assert_eq!(
            (
                s.prechecked,
                s.rejected_answered,
                s.rfc2543_dropped,
                s.rejected_dropped
            ),
            (2, 1, 1, 1)
        );
        run_out(&mut e, now);
        assert!(e.is_empty());
    }

    #[test]
    fn client_transaction_matches_responses_and_drops_strays() {
        let now = Instant::now();
        let mut e = Endpoint::new(config());
        let opts = Message::parse(
            &request("OPTIONS", "z9hG4bKignored"),
            Framing::Datagram,
            Limits::default(),
        )
        .unwrap();
        let mut opts_out = opts.clone();
        opts_out.headers.retain(|h| !h.is("Via"));
        let txn = e.send_request(now, opts_out, remote());
        let sent = e.poll_transmit().unwrap();
        let sent = Message::parse(&sent.bytes, Framing::Datagram, Limits::default()).unwrap();
        let via = &sent.vias().unwrap()[0];
        assert!(via.branch().unwrap().starts_with(MAGIC_COOKIE));
        assert_eq!(via.sent_by(), "192.0.2.1:5060");
        let ok = response_to(&sent, 200, None, Some("t"));
        e.handle_input(now, &ok.to_bytes(), remote());
        assert!(matches!(&events(&mut e)[..], [TxnEvent::Response { txn: t, .. }] if *t == txn));
        // A response for no transaction: dropped and counted.
        e.handle_input(
            now,
            &response_to(&opts, 200, None, None).to_bytes(),
            remote(),
        );
        assert_eq!(e.stats().stray_responses, 1);
        // §8.1.3.3: one with two Vias too, even if its top Via matches.
        let mut two = response_to(&sent, 200, None, Some("t"));
        two.headers.insert(
            1,
            Header::new("Via", "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKz"),
        );
        e.handle_input(now, &two.to_bytes(), remote());
        assert_eq!(e.stats().stray_responses, 2);
        assert!(events(&mut e).is_empty());
        e.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(events(&mut e), [TxnEvent::Terminated { txn }]);
        assert!(e.is_empty());
    }
}
