//! The call manager's parameters and counters (plain values; the site
//! config is mapped by [`super::site_config`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::cause_map::CauseMap;
use super::identity::IdentityPolicy;
use super::numbers::NumberFormat;
use crate::config::Route;
use crate::isdn::cause::Cause;

/// Digit limits of an exchange -> core route (overlap receiving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitLimits {
    /// Fewer digits: cleared with cause 28 (address incomplete).
    pub min_digits: usize,
    /// More digits are dropped before routing (digit collection stops at
    /// the route's maximum, as an exchange register does).
    pub max_digits: usize,
}

impl Default for DigitLimits {
    fn default() -> Self {
        DigitLimits {
            min_digits: 1,
            max_digits: 32,
        }
    }
}

/// A core -> exchange route: called numbers matching `called` (a route
/// pattern, `*` for any) go out on `spans`, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreRoute {
    pub called: String,
    pub spans: Vec<u8>,
}

/// The manager's parameters (plain values; `config` maps the site file).
#[derive(Debug, Clone)]
pub struct CallManagerConfig {
    /// Exchange -> core routing rules, first match wins.
    pub routes: Vec<Route>,
    /// Per route (same index as `routes`); missing entries use the default.
    pub route_digits: Vec<DigitLimits>,
    /// Core -> exchange: the spans to try per called number.
    pub core_routes: Vec<CoreRoute>,
    /// Request-URI host per peer group; the group name when absent.
    pub group_domains: HashMap<String, String>,
    pub identity: IdentityPolicy,
    pub numbers: NumberFormat,
    /// The RFC 3398 tables with the site's overrides.
    pub cause_map: CauseMap,
    /// Per-trunk (span) tables, replacing `cause_map` for that span.
    pub trunk_cause_maps: HashMap<u8, CauseMap>,
    /// Our RTP address and the media engine's port base (`rtp_port`).
    pub media_ip: IpAddr,
    pub rtp_port_base: u16,
    /// Codecs in preference order (`PCMA`, `PCMU`), and telephone-event.
    pub codecs: Vec<String>,
    pub telephone_event: bool,
    pub ptime_ms: u32,
    /// Q.850 causes for refusals.
    pub no_route_cause: Cause,
    pub group_down_cause: Cause,
    pub drain_cause: Cause,
    /// SIP status for INVITEs refused while draining.
    pub drain_status: u16,
    /// Take the channels of a span out of service while every peer group
    /// its routes use is down (see `CallManager::busy_out`).
    pub busy_out: bool,
    /// An exchange -> core call not answered after this is cleared with
    /// cause 19 (the user agent does not time out a ringing call).
    pub no_answer_timeout: Duration,
    /// How long to wait for the media engine's end-of-call summary.
    pub summary_wait: Duration,
    /// Channel audit period; a mismatch must persist over two audits.
    pub audit_interval: Duration,
    /// Active calls older than this get a STATUS ENQUIRY at each audit.
    pub long_call_check: Duration,
    /// Send DTMF detected in the E1 audio as SIP INFO (else RFC 4733 only).
    pub dtmf_to_info: bool,
    /// Play DTMF from SIP INFO into the timeslot.
    pub dtmf_from_info: bool,
    /// No RTP from the core for this long raises the media engine's RTP
    /// timeout.
    pub rtp_timeout: Duration,
    /// What an RTP timeout on an answered call does.
    pub rtp_timeout_action: RtpTimeoutAction,
    /// The Q.850 cause an RTP timeout clears with (both ways).
    pub rtp_timeout_cause: Cause,
    /// Seed of SDP session ids.
    pub seed: u64,
}

/// What an RTP timeout on an answered call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpTimeoutAction {
    /// Clear the call with `rtp_timeout_cause` both ways.
    Clear,
    /// Log it (and count it) only.
    Log,
}

impl CallManagerConfig {
    /// Defaults: PCMA, PCMU, telephone-event, 20 ms; causes 1 / 34 / 42 and
    /// 503; no busy-out; 300 s no-answer; 2 s summary wait; audit every
    /// 60 s; STATUS ENQUIRY on calls over 1 h; INFO DTMF to the core off,
    /// from the core on; RTP timeout 30 s clears with cause 41.
    pub fn new(routes: Vec<Route>, media_ip: IpAddr, rtp_port_base: u16, host: &str) -> Self {
        CallManagerConfig {
            routes,
            route_digits: Vec::new(),
            core_routes: Vec::new(),
            group_domains: HashMap::new(),
            identity: IdentityPolicy {
                host: host.to_owned(),
                assert_unscreened: true,
            },
            numbers: NumberFormat::default(),
            cause_map: CauseMap::default(),
            trunk_cause_maps: HashMap::new(),
            media_ip,
            rtp_port_base,
            codecs: vec!["PCMA".into(), "PCMU".into()],
            telephone_event: true,
            ptime_ms: 20,
            no_route_cause: Cause::UNALLOCATED_NUMBER,
            group_down_cause: Cause::NO_CIRCUIT_AVAILABLE,
            drain_cause: Cause::SWITCHING_EQUIPMENT_CONGESTION,
            drain_status: 503,
            busy_out: false,
            no_answer_timeout: Duration::from_secs(300),
            summary_wait: Duration::from_secs(2),
            audit_interval: Duration::from_secs(60),
            long_call_check: Duration::from_secs(3600),
            dtmf_to_info: false,
            dtmf_from_info: true,
            rtp_timeout: Duration::from_secs(30),
            rtp_timeout_action: RtpTimeoutAction::Clear,
            rtp_timeout_cause: Cause::TEMPORARY_FAILURE,
            seed: 0,
        }
    }
}

/// Counters for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounters {
    /// SETUPs and INVITEs received (refused ones included).
    pub exchange_to_core: u64,
    pub core_to_exchange: u64,
    /// Calls the manager took on, by direction: each ends with one CDR.
    pub created_exchange_to_core: u64,
    pub created_core_to_exchange: u64,
    pub answered: u64,
    pub refused_no_route: u64,
    pub refused_incomplete: u64,
    pub refused_group_down: u64,
    pub refused_draining: u64,
    pub refused_no_channel: u64,
    pub no_answer_timeouts: u64,
    /// Events for calls the manager does not know (late or stray).
    pub stray_events: u64,
    pub audit_mismatches: u64,
    pub audit_restarts: u64,
    /// STATUS ENQUIRYs the audit sent to probe a call Q.931 may have lost.
    pub audit_probes: u64,
    /// Events applied unmatched because the held queue was full.
    pub held_overflows: u64,
    /// Answered calls cleared on an RTP timeout.
    pub rtp_timeout_clears: u64,
    /// Times a span was busied out.
    pub busy_outs: u64,
    pub status_enquiries: u64,
    pub summaries_missing: u64,
    pub media_rejects: u64,
    pub rtp_timeouts: u64,
}
