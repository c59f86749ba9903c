//! The site config (`/etc/tdmgw/tdmgw.toml`): everything that differs between
//! two gateways on the same board: addresses, core peers, routes, per-span
//! signalling, logging, CDRs.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::duration::ConfigDuration;
use super::source::Source;
use crate::isdn::timers::{TimerId, TimerValues};
use crate::isdn::{q921, q931};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Path of the board profile, relative to this file, or `builtin:sim`.
    pub board: String,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub cdr: Cdr,
    #[serde(default)]
    pub media: Media,
    #[serde(default)]
    pub sip: Sip,
    #[serde(default, rename = "peer_group")]
    pub peer_groups: Vec<PeerGroup>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "span")]
    pub spans: Vec<SpanSignalling>,
    /// The call layer's knobs (`config::call`).
    #[serde(default)]
    pub call: super::call::CallSection,
    #[serde(default)]
    pub debug: Debug,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// HTTP for /metrics, /livez, /readyz.
    #[serde(default = "default_management_listen")]
    pub listen: SocketAddr,
    /// Must be true to put the management listener on a non-loopback address.
    #[serde(default)]
    pub allow_non_loopback: bool,
    #[serde(default = "default_admin_socket")]
    pub admin_socket: PathBuf,
}

fn default_management_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100)
}

fn default_admin_socket() -> PathBuf {
    PathBuf::from("/run/tdmgw/admin.sock")
}

impl Default for Management {
    fn default() -> Self {
        Management {
            listen: default_management_listen(),
            allow_non_loopback: false,
            admin_socket: default_admin_socket(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// A tracing filter: `info`, `debug`, `info,tdmgw::isdn=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
    /// Replace all but the last 3 digits of phone numbers in logs and CDRs.
    #[serde(default)]
    pub redact_numbers: bool,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: default_log_level(),
            format: LogFormat::Text,
            redact_numbers: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// On SIGTERM: how long live calls may run on before the daemon exits.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: ConfigDuration,
}

fn default_drain_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            drain_timeout: default_drain_timeout(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdr {
    /// JSON-lines file; none = no CDRs written.
    pub path: Option<PathBuf>,
    #[serde(default = "default_cdr_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`cdr.jsonl.1` ...).
    #[serde(default = "default_cdr_keep")]
    pub keep: u32,
}

fn default_cdr_max_bytes() -> u64 {
    64 << 20
}

fn default_cdr_keep() -> u32 {
    10
}

impl Default for Cdr {
    fn default() -> Self {
        Cdr {
            path: None,
            max_bytes: default_cdr_max_bytes(),
            keep: default_cdr_keep(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Address the RTP sockets bind to.
    #[serde(default = "default_rtp_address")]
    pub rtp_address: IpAddr,
    /// RTP port of span 1 / timeslot 1; each B-channel gets base + 2 * index
    /// (RTCP on the next port), so firewall rules can be written from the board.
    #[serde(default = "default_rtp_port_base")]
    pub rtp_port_base: u16,
}

fn default_rtp_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn default_rtp_port_base() -> u16 {
    20_000
}

impl Default for Media {
    fn default() -> Self {
        Media {
            rtp_address: default_rtp_address(),
            rtp_port_base: default_rtp_port_base(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipListen {
    pub transport: Transport,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    #[serde(default)]
    pub listen: Vec<SipListen>,
    /// RFC 3261 §17.1.1.1 timers; unset = the RFC's values.
    #[serde(default)]
    pub timers: BTreeMap<String, ConfigDuration>,
    /// TLS: PEM file of CAs that sign the core's certificates.
    pub tls_ca: Option<PathBuf>,
    /// TLS: our certificate chain and key, for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A TLS listener demands a client certificate signed by `tls_ca`.
    #[serde(default = "default_true")]
    pub tls_require_client_cert: bool,
    /// Fail a new call over to the next peer when the peer sends nothing
    /// at all (not even 100 Trying) to the INVITE for this long.
    #[serde(default = "default_invite_timeout")]
    pub invite_timeout: ConfigDuration,
    /// RFC 5626 CRLF keep-alive ping on connections we open; "0s" = none.
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval: ConfigDuration,
    /// No pong within this long: the connection has failed.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: ConfigDuration,
    /// Messages per second accepted from one source on average...
    #[serde(default = "default_rate_limit_per_second")]
    pub rate_limit_per_second: u32,
    /// ...and in a burst.
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// RFC 3262: support 100rel (PRACK) when the core requires it.
    #[serde(default = "default_true")]
    pub rel100: bool,
    /// RFC 4028 session timers: the interval we ask for; unset = off.
    pub session_expires: Option<ConfigDuration>,
    /// RFC 4028 Min-SE: the shortest interval we accept.
    #[serde(default = "default_min_se")]
    pub min_se: ConfigDuration,
}

fn default_true() -> bool {
    true
}
fn default_invite_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(2))
}
fn default_keepalive_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_keepalive_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_rate_limit_per_second() -> u32 {
    200
}
fn default_rate_limit_burst() -> u32 {
    400
}
fn default_min_se() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(90))
}

impl Default for Sip {
    fn default() -> Self {
        Sip {
            listen: Vec::new(),
            timers: BTreeMap::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_require_client_cert: true,
            invite_timeout: default_invite_timeout(),
            keepalive_interval: default_keepalive_interval(),
            keepalive_timeout: default_keepalive_timeout(),
            rate_limit_per_second: default_rate_limit_per_second(),
            rate_limit_burst: default_rate_limit_burst(),
            rel100: true,
            session_expires: None,
            min_se: default_min_se(),
        }
    }
}

/// RFC 3261 timer names with the RFC's value and the range we accept.
pub const SIP_TIMERS: &[(&str, u64, u64, u64)] = &[
    ("T1", 500, 100, 10_000),
    ("T2", 4_000, 1_000, 64_000),
    ("T4", 5_000, 1_000, 64_000),
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerGroup {
    pub name: String,
    /// OPTIONS ping interval to each peer.
    #[serde(default = "default_options_interval")]
    pub options_interval: ConfigDuration,
    /// Consecutive failed pings that mark a peer down.
    #[serde(default = "default_failures")]
    pub down_after: u32,
    /// Consecutive good pings that bring a peer back.
    #[serde(default = "default_successes")]
    pub up_after: u32,
    #[serde(rename = "peer")]
    pub peers: Vec<Peer>,
}

fn default_options_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_failures() -> u32 {
    3
}
fn default_successes() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// `IP:PORT` of the core's SIP interface.
    pub address: SocketAddr,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Lower is preferred.
    #[serde(default = "default_priority")]
    pub priority: u16,
    /// Share among peers of the same priority.
    #[serde(default = "default_weight")]
    pub weight: u16,
    /// TLS: the name the peer's certificate must carry.
    pub tls_name: Option<String>,
}

fn default_transport() -> Transport {
    Transport::Udp
}
fn default_priority() -> u16 {
    1
}
fn default_weight() -> u16 {
    100
}

/// A called-number pattern: digits, `X` for any one digit and an optional
/// trailing `*` for any further digits. `"999"`, `"101"`, `"0207XXXXXXX"`, `"*"`.
///
/// `min_digits` / `max_digits` override `[call]`'s for this route: fewer
/// digits are refused with cause 28, and with overlap receiving the number
/// is complete (routed without waiting for T302) once it has `max_digits`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub called: String,
    pub calling: Option<String>,
    pub span: Option<u8>,
    pub peer_group: String,
    #[serde(default)]
    pub min_digits: Option<usize>,
    #[serde(default)]
    pub max_digits: Option<usize>,
}

impl Route {
    /// A route to `peer_group` for called numbers matching `called`, with
    /// no other condition and the site's digit limits.
    pub fn new(called: &str, peer_group: &str) -> Route {
        Route {
            called: called.into(),
            calling: None,
            span: None,
            peer_group: peer_group.into(),
            min_digits: None,
            max_digits: None,
        }
    }
}

/// The length of every number a pattern matches, when it has one (no
/// trailing `*`); else `None`.
pub fn pattern_fixed_len(pattern: &str) -> Option<usize> {
    (!pattern.ends_with('*')).then_some(pattern.len())
}

/// Whether `number` matches a route pattern (see [`Route`]).
pub fn pattern_matches(pattern: &str, number: &str) -> bool {
    let (body, open) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let (nb, pb) = (number.as_bytes(), body.as_bytes());
    if nb.len() < pb.len() || (!open && nb.len() != pb.len()) {
        return false;
    }
    pb.iter()
        .zip(nb)
        .all(|(&p, &n)| (p == b'X' && n.is_ascii_digit()) || p == n)
}

fn pattern_is_valid(pattern: &str) -> bool {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    (!body.is_empty() || pattern == "*")
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'X' | b'#' | b'+'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Network,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Switchtype {
    #[serde(rename = "euro-isdn")]
    EuroIsdn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelHunt {
    /// From the highest timeslot down (user side default, avoids glare with a
    /// network side hunting upwards).
    #[default]
    Descending,
    Ascending,
}

/// Signalling on one span of the board.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanSignalling {
    pub id: u8,
    pub role: Role,
    #[serde(default = "default_switchtype")]
    pub switchtype: Switchtype,
    /// Overrides of Q.921/Q.931 timers: `T309 = "90s"`.
    #[serde(default)]
    pub timers: BTreeMap<String, ConfigDuration>,
    /// Q.921 N200 (retransmissions) and k (window).
    #[serde(default = "default_n200")]
    pub n200: u8,
    #[serde(default = "default_k")]
    pub k: u8,
    /// Send RESTART (all interfaces) after each D-channel establishment.
    #[serde(default)]
    pub restart_on_establish: bool,
    #[serde(default)]
    pub channel_hunt: ChannelHunt,
}

fn default_switchtype() -> Switchtype {
    Switchtype::EuroIsdn
}
fn default_n200() -> u8 {
    3
}
fn default_k() -> u8 {
    7
}

impl SpanSignalling {
    /// The timer table in force on this span. Call after validation.
    pub fn timer_values(&self) -> TimerValues {
        let mut v = TimerValues::default();
        for (name, d) in &self.timers {
            if let Some(id) = TimerId::from_name(name) {
                let _ = v.set(id, d.get());
            }
        }
        v
    }

    /// The parameters of this span's D-channel stack ([`DChannel::new`]):
    /// Q.921 with this span's N200, k, T200 and T203, and Q.931 with its role,
    /// timers, hunting order and restart rule, on the first `b_channels` of
    /// the E1 B-channel timeslots (1-15, 17-31). Call after validation.
    ///
    /// [`DChannel::new`]: crate::isdn::dchannel::DChannel::new
    pub fn dchannel_params(&self, b_channels: u8) -> (q921::LinkConfig, q931::Config) {
        let timers = self.timer_values();
        let (l2_role, l3_role) = match self.role {
            Role::User => (q921::Role::User, q931::Role::User),
            Role::Network => (q921::Role::Network, q931::Role::Network),
        };
        let link = q921::LinkConfig::pri(self.id, l2_role, &timers, self.n200, self.k);
        let mut l3 = q931::Config::e1(self.id, l3_role);
        l3.timers = timers;
        l3.hunt = match self.channel_hunt {
            ChannelHunt::Descending => q931::Hunt::Descending,
            ChannelHunt::Ascending => q931::Hunt::Ascending,
        };
        l3.restart_on_establish = self.restart_on_establish;
        l3.timeslots.truncate(usize::from(b_channels));
        (link, l3)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// Test-only. Must be true for any fault below to be honoured. Never set
    /// this on a production gateway.
    #[serde(default)]
    pub allow_fault_injection: bool,
    /// Test-only: the named loop stops checking in with the supervisor...
    pub stall_loop: Option<String>,
    /// ...this long after start-up.
    pub stall_after: Option<ConfigDuration>,
}

impl SiteConfig {
    /// Range and consistency checks against the board the site runs on.
    pub fn validate(&self, src: &Source, board: &super::BoardProfile) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        self.validate_management(src, &mut errs);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errs.push(src.error("log.level", format!("not a log filter: {e}")));
        }
        if self.lifecycle.drain_timeout.get() > Duration::from_secs(3600) {
            errs.push(src.error("lifecycle.drain_timeout", "expected at most 1h"));
        }
        if self.cdr.max_bytes < 4096 {
            errs.push(src.error("cdr.max_bytes", "expected at least 4096 bytes"));
        }
        // Span s, timeslot t has RTP port base + 64 (s - 1) + 2 t and RTCP one
        // above (media::engine::rtp_port); the highest is the last span's
        // last B-channel's RTCP port.
        let base = self.media.rtp_port_base;
        let highest = board
            .spans
            .iter()
            .map(|s| {
                let last_ts = (1..=31u8)
                    .filter(|&t| t != 16)
                    .take(usize::from(s.channels))
                    .last()
                    .unwrap_or(1);
                u32::from(base) + 64 * u32::from(s.id.max(1) - 1) + 2 * u32::from(last_ts) + 1
            })
            .max()
            .unwrap_or(u32::from(base));
        if highest > 65_535 || base < 1024 {
            errs.push(src.error(
                "media.rtp_port_base",
                format!(
                    "the board's channels need RTP/RTCP ports {base}..{highest} \
                     (base + 64 (span - 1) + 2 timeslot, RTCP + 1) within 1024-65535"
                ),
            ));
        }
        self.validate_sip(src, &mut errs);
        self.validate_routes(src, &mut errs);
        self.validate_spans(src, board, &mut errs);
        let span_ids: Vec<u8> = self.spans.iter().map(|s| s.id).collect();
        self.call.validate(src, &span_ids, &mut errs);
        self.validate_debug(src, &mut errs);
        errs
    }

    fn validate_management(&self, src: &Source, errs: &mut Vec<ConfigError>) {
        if !self.management.listen.ip().is_loopback() && !self.management.allow_non_loopback {
            errs.push(src.error(
                "management.listen",
                "metrics and health on a non-loopback address must be asked for: add allow_non_loopback = true",
            ));
        }
    }

    fn validate_sip(&self, src: &Source, errs: &mut Vec<ConfigError>) {
        for name in self.sip.timers.keys() {
            let key = format!("sip.timers.{name}");
            match SIP_TIMERS.iter().find(|t| t.0 == name) {
                None => errs.push(src.error(&key, "unknown SIP timer: expected T1, T2 or T4")),
                Some(&(_, _, min, max)) => {
                    let ms = self.sip.timers[name].get().as_millis() as u64;
                    if ms < min || ms > max {
                        errs.push(src.error(&key, format!("expected {min}ms..={max}ms")));
                    }
                }
            }
        }
        let uses_tls = self
            .sip
            .listen
            .iter()
            .any(|l| l.transport == Transport::Tls)
            || self
                .peer_groups
                .iter()
                .flat_map(|g| &g.peers)
                .any(|p| p.transport == Transport::Tls);
        if uses_tls && self.sip.tls_ca.is_none() {
            errs.push(src.error("sip.tls_ca", "TLS is used, so the core's CA file is needed"));
        }
        if self.sip.tls_cert.is_some() != self.sip.tls_key.is_some() {
            errs.push(src.error("sip.tls_key", "tls_cert and tls_key go together"));
        }
        self.validate_sip_options(src, errs);
        let mut names = HashSet::new();
        for (i, g) in self.peer_groups.iter().enumerate() {
            let p = format!("peer_group[{i}]");
            if !names.insert(g.name.as_str()) {
                errs.push(src.error(
                    &format!("{p}.name"),
                    format!("peer group `{}` is defined twice", g.name),
                ));
            }
            if g.peers.is_empty() {
                errs.push(src.error(
                    &format!("{p}.peer"),
                    "a peer group needs at least one [[peer_group.peer]]",
                ));
            }
            let iv = g.options_interval.get();
            if iv < Duration::from_secs(1) || iv > Duration::from_secs(300) {
                errs.push(src.error(&format!("{p}.options_interval"), "expected 1s..=5m"));
            }
            if !(1..=100).contains(&g.down_after) {
                errs.push(src.error(&format!("{p}.down_after"), "expected 1-100 pings"));
            }
            if !(1..=100).contains(&g.up_after) {
                errs.push(src.error(&format!("{p}.up_after"), "expected 1-100 pings"));
            }
            for (j, peer) in g.peers.iter().enumerate() {
                if peer.address.port() == 0 {
                    errs.push(src.error(&format!("{p}.peer[{j}].address"), "a peer needs a port"));
                }
                if peer.weight == 0 {
                    errs.push(src.error(&format!("{p}.peer[{j}].weight"), "expected 1-65535"));
                }
            }
        }
    }

    fn validate_routes(&self, src: &Source, errs: &mut Vec<ConfigError>) {
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("route[{i}]");
            if !pattern_is_valid(&r.called) {
                errs.push(src.error(
                    &format!("{p}.called"),
                    "expected digits, X for any digit and an optional trailing *",
                ));
            }
            if let Some(c) = &r.calling
                && !pattern_is_valid(c)
            {
                errs.push(src.error(
                    &format!("{p}.calling"),
                    "expected digits, X for any digit and an optional trailing *",
                ));
            }
            if !self.peer_groups.iter().any(|g| g.name == r.peer_group) {
                errs.push(src.error(
                    &format!("{p}.peer_group"),
                    format!("no [[peer_group]] named `{}`", r.peer_group),
                ));
            }
            if let Some(s) = r.span
                && !self.spans.iter().any(|sp| sp.id == s)
            {
                errs.push(src.error(&format!("{p}.span"), format!("no span {s}")));
            }
            self.validate_route_digits(src, &p, r, errs);
        }
    }

    /// A route's `min_digits` / `max_digits`: in range, consistent with
    /// each other (the site's value standing in for the one not given) and
    /// with the numbers the route's pattern can match.
    fn validate_route_digits(&self, src: &Source, p: &str, r: &Route, errs: &mut Vec<ConfigError>) {
        if r.min_digits.is_none() && r.max_digits.is_none() {
            // The site's limits, checked with `[call]`.
            return;
        }
        let mut err = |key: &str, msg: String| errs.push(src.error(&format!("{p}.{key}"), msg));
        if let Some(max) = r.max_digits
            && !(1..=32).contains(&max)
        {
            return err("max_digits", "expected 1-32 digits".into());
        }
        if r.min_digits == Some(0) {
            return err("min_digits", "expected 1..=max_digits".into());
        }
        let min = r.min_digits.unwrap_or(self.call.min_digits);
        let max = r.max_digits.unwrap_or(self.call.max_digits);
        if min > max {
            return match r.min_digits {
                Some(_) => err("min_digits", format!("expected 1..=max_digits ({max})")),
                None => err(
                    "max_digits",
                    format!("below [call] min_digits ({min}): no number could be routed"),
                ),
            };
        }
        let body = r.called.strip_suffix('*').unwrap_or(&r.called).len();
        match pattern_fixed_len(&r.called) {
            Some(len) if r.min_digits.is_some_and(|m| m > len) => err(
                "min_digits",
                format!(
                    "the pattern `{}` matches {len}-digit numbers only",
                    r.called
                ),
            ),
            Some(len) if r.max_digits.is_some_and(|m| m < len) => err(
                "max_digits",
                format!(
                    "the pattern `{}` matches {len}-digit numbers only",
                    r.called
                ),
            ),
            None if r.max_digits.is_some_and(|m| m < body) => err(
                "max_digits",
                format!(
                    "the pattern `{}` matches numbers of {body} digits or more",
                    r.called
                ),
            ),
            _ => {}
        }
    }

    fn validate_spans(
        &self,
        src: &Source,
        board: &super::BoardProfile,
        errs: &mut Vec<ConfigError>,
    ) {
        let mut seen = HashSet::new();
        for (i, s) in self.spans.iter().enumerate() {
            let p = format!("span[{i}]");
            if !seen.insert(s.id) {
                errs.push(src.error(
                    &format!("{p}.id"),
                    format!("span {} is configured twice", s.id),
                ));
            }
            if !board.spans.iter().any(|b| b.id == s.id) {
                errs.push(src.error(
                    &format!("{p}.id"),
                    format!("board `{}` has no span {}", board.name, s.id),
                ));
            }
            for (name, d) in &s.timers {
                let key = format!("{p}.timers.{name}");
                match TimerId::from_name(name) {
                    None => errs.push(src.error(
                        &key,
                        format!(
                                "unknown timer; expected one of {}",
                                crate::isdn::timers::TIMERS
                                    .iter()
                                    .map(|t| t.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                    )),
                    Some(id) => {
                        if let Err(e) = TimerValues::default().set(id, d.get()) {
                            errs.push(src.error(&key, e.to_string()));
                        }
                    }
                }
            }
            if !(1..=10).contains(&s.n200) {
                errs.push(src.error(&format!("{p}.n200"), "expected 1-10 retransmissions"));
            }
            if !(1..=127).contains(&s.k) {
                errs.push(src.error(&format!("{p}.k"), "expected a window of 1-127 frames"));
            }
        }
        for b in &board.spans {
            if !self.spans.iter().any(|s| s.id == b.id) {
                errs.push(src.error(
                    "span",
                    format!(
                        "board span {} has no [[span]] signalling here (role, switchtype)",
                        b.id
                    ),
                ));
            }
        }
    }

    fn validate_debug(&self, src: &Source, errs: &mut Vec<ConfigError>) {
        let d = &self.debug;
        if (d.stall_loop.is_some() || d.stall_after.is_some()) && !d.allow_fault_injection {
            errs.push(src.error(
                "debug.stall_loop",
                "fault injection is off: set [debug] allow_fault_injection = true (tests only)",
            ));
        }
        if d.stall_loop.is_some() != d.stall_after.is_some() {
            errs.push(src.error(
                "debug.stall_after",
                "stall_loop and stall_after go together",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dchannel_params_carry_the_span_settings() {
        use std::time::Duration;
        let span = SpanSignalling {
            id: 2,
            role: Role::Network,
            switchtype: Switchtype::EuroIsdn,
            timers: [
                ("T309".to_string(), ConfigDuration(Duration::from_secs(30))),
                (
                    "T200".to_string(),
                    ConfigDuration(Duration::from_millis(500)),
                ),
            ]
            .into_iter()
            .collect(),
            n200: 5,
            k: 3,
            restart_on_establish: true,
            channel_hunt: ChannelHunt::Ascending,
        };
        let (link, l3) = span.dchannel_params(20);
        assert_eq!(link.span, 2);
        assert_eq!(link.role, q921::Role::Network);
        assert_eq!((link.n200, link.k), (5, 3));
        assert_eq!(link.t200, Duration::from_millis(500));
        assert_eq!(l3.role, q931::Role::Network);
        assert_eq!(l3.timers.get(TimerId::T309), Duration::from_secs(30));
        assert_eq!(l3.timers.get(TimerId::T303), TimerId::T303.spec().default);
        assert_eq!(l3.hunt, q931::Hunt::Ascending);
        assert!(l3.restart_on_establish);
        // Fractional E1: the first 20 B-channel timeslots, skipping TS16.
        assert_eq!(l3.timeslots.len(), 20);
        assert_eq!(l3.timeslots.last(), Some(&21));
        assert!(!l3.timeslots.contains(&16));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("999", "999"));
        assert!(!pattern_matches("999", "9999"));
        assert!(pattern_matches("0207XXX", "0207123"));
        assert!(!pattern_matches("0207XXX", "020712"));
        assert!(pattern_matches("01*", "0123456"));
        assert!(pattern_matches("01*", "01"));
        assert!(pattern_matches("*", ""));
        assert!(!pattern_matches("X", "#"));
        assert!(pattern_is_valid("*"));
        assert!(pattern_is_valid("0207XXX*"));
        assert!(!pattern_is_valid("9*9"));
        assert!(!pattern_is_valid(""));
    }
}
