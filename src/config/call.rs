//! The site config's `[call]` section: the call layer's knobs (refusal
//! causes, busy-out, digit limits, the channel audit, RTP timeouts, DTMF
//! over SIP INFO, number formats and cause-table overrides), validated
//! strictly and mapped onto [`CallManagerConfig`] by
//! `call::site_config::manager_config`.
//!
//! ```toml
//! [call]
//! group_down_cause = 34       # SETUP for a route whose peer group is down
//! busy_out = false            # also take the span's idle channels out of service
//! rtp_timeout = "30s"
//! rtp_timeout_action = "clear"
//! [call.sip_to_q850]          # overrides of RFC 3398 §7.2.4.1, every span
//! "486" = 17
//! [[call.trunk]]              # overrides for one span (trunk)
//! span = 2
//! q850_to_sip = { "34" = 480 }
//! ```
//!
//! [`CallManagerConfig`]: crate::call::manager::CallManagerConfig

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::duration::ConfigDuration;
use super::source::Source;

/// What an RTP timeout on an answered call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtpTimeoutAction {
    /// Clear the call both ways with `rtp_timeout_cause`.
    #[default]
    Clear,
    /// Log and count it only.
    Log,
}

/// `[call]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSection {
    /// Q.850 cause for a SETUP no route matches.
    #[serde(default = "default_no_route_cause")]
    pub no_route_cause: u8,
    /// Q.850 cause for a SETUP whose route's peer group has no peer up
    /// (refused at once, not after INVITE timeouts).
    #[serde(default = "default_group_down_cause")]
    pub group_down_cause: u8,
    /// Q.850 cause for a SETUP, and SIP status for an INVITE, refused while
    /// draining.
    #[serde(default = "default_drain_cause")]
    pub drain_cause: u8,
    #[serde(default = "default_drain_status")]
    pub drain_status: u16,
    /// While no peer of any group a span's routes use is up, take the
    /// span's idle B-channels out of service (and channels freed by ending
    /// calls); back in service when a peer comes up.
    #[serde(default)]
    pub busy_out: bool,
    /// An exchange -> core call not answered after this is cleared (cause 19).
    #[serde(default = "default_no_answer_timeout")]
    pub no_answer_timeout: ConfigDuration,
    /// Collect the digits of a SETUP without Sending Complete (SETUP
    /// ACKNOWLEDGE, INFORMATION, `T302` of `[span.timers]`) before routing,
    /// until the number is complete for the routes
    /// (`call::routing::Router::number_complete`).
    #[serde(default = "default_true")]
    pub overlap_receiving: bool,
    /// Routes without their own (`[[route]]` `min_digits`/`max_digits`):
    /// fewer called digits are refused with cause 28, more are cut to
    /// `max_digits` (and overlap receiving stops there).
    #[serde(default = "default_min_digits")]
    pub min_digits: usize,
    #[serde(default = "default_max_digits")]
    pub max_digits: usize,
    /// Channel audit period (a mismatch must be seen at two audits).
    #[serde(default = "default_audit_interval")]
    pub audit_interval: ConfigDuration,
    /// Answered calls older than this get a STATUS ENQUIRY at each audit.
    #[serde(default = "default_status_enquiry_after")]
    pub status_enquiry_after: ConfigDuration,
    /// No RTP from the core for this long is an RTP timeout...
    #[serde(default = "default_rtp_timeout")]
    pub rtp_timeout: ConfigDuration,
    /// ...which clears an answered call (`clear`) or is logged (`log`)...
    #[serde(default)]
    pub rtp_timeout_action: RtpTimeoutAction,
    /// ...with this Q.850 cause both ways.
    #[serde(default = "default_rtp_timeout_cause")]
    pub rtp_timeout_cause: u8,
    /// How long a CDR waits for the media engine's call summary.
    #[serde(default = "default_media_summary_wait")]
    pub media_summary_wait: ConfigDuration,
    /// DTMF heard in the E1 audio also goes to the core as SIP INFO.
    #[serde(default)]
    pub dtmf_info_to_core: bool,
    /// DTMF in SIP INFO from the core is played into the timeslot.
    #[serde(default = "default_true")]
    pub dtmf_info_from_core: bool,
    /// Numbers: country code (no `+`), national and international prefixes.
    #[serde(default = "default_country_code")]
    pub country_code: String,
    #[serde(default = "default_national_prefix")]
    pub national_prefix: String,
    #[serde(default = "default_international_prefix")]
    pub international_prefix: String,
    /// Overrides of RFC 3398 §7.2.4.1 (SIP status -> Q.850), every span.
    #[serde(default)]
    pub sip_to_q850: BTreeMap<String, u8>,
    /// Overrides of RFC 3398 §8.2.6.1 (Q.850 -> SIP status), every span.
    #[serde(default)]
    pub q850_to_sip: BTreeMap<String, u16>,
    /// Per-span overrides, on top of the ones above.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkCauses>,
}

/// `[[call.trunk]]`: one span's cause-table overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkCauses {
    pub span: u8,
    #[serde(default)]
    pub sip_to_q850: BTreeMap<String, u8>,
    #[serde(default)]
    pub q850_to_sip: BTreeMap<String, u16>,
}

fn default_true() -> bool {
    true
}
fn default_no_route_cause() -> u8 {
    1
}
fn default_group_down_cause() -> u8 {
    34
}
fn default_drain_cause() -> u8 {
    42
}
fn default_drain_status() -> u16 {
    503
}
fn default_no_answer_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
fn default_min_digits() -> usize {
    1
}
fn default_max_digits() -> usize {
    32
}
fn default_audit_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_status_enquiry_after() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(3600))
}
fn default_rtp_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_rtp_timeout_cause() -> u8 {
    41
}
fn default_media_summary_wait() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(2))
}
fn default_country_code() -> String {
    "44".into()
}
fn default_national_prefix() -> String {
    "0".into()
}
fn default_international_prefix() -> String {
    "00".into()
}

impl Default for CallSection {
    fn default() -> Self {
        CallSection {
            no_route_cause: default_no_route_cause(),
            group_down_cause: default_group_down_cause(),
            drain_cause: default_drain_cause(),
            drain_status: default_drain_status(),
            busy_out: false,
            no_answer_timeout: default_no_answer_timeout(),
            overlap_receiving: true,
            min_digits: default_min_digits(),
            max_digits: default_max_digits(),
            audit_interval: default_audit_interval(),
            status_enquiry_after: default_status_enquiry_after(),
            rtp_timeout: default_rtp_timeout(),
            rtp_timeout_action: RtpTimeoutAction::Clear,
            rtp_timeout_cause: default_rtp_timeout_cause(),
            media_summary_wait: default_media_summary_wait(),
            dtmf_info_to_core: false,
            dtmf_info_from_core: true,
            country_code: default_country_code(),
            national_prefix: default_national_prefix(),
            international_prefix: default_international_prefix(),
            sip_to_q850: BTreeMap::new(),
            q850_to_sip: BTreeMap::new(),
            trunks: Vec::new(),
        }
    }
}

/// The overrides of one cause table, parsed (call after validation).
pub fn sip_to_q850_overrides(m: &BTreeMap<String, u8>) -> BTreeMap<u16, u8> {
    m.iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
        .collect()
}

/// See [`sip_to_q850_overrides`].
pub fn q850_to_sip_overrides(m: &BTreeMap<String, u16>) -> BTreeMap<u8, u16> {
    m.iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
        .collect()
}

/// A Q.850 cause value (Q.850 §2.2.5: 1-127).
fn cause_ok(c: u8) -> bool {
    (1..=127).contains(&c)
}

impl CallSection {
    /// Range and consistency checks; `spans` are the site's span ids.
    pub fn validate(&self, src: &Source, spans: &[u8], errs: &mut Vec<ConfigError>) {
        let mut err = |key: &str, msg: &str| errs.push(src.error(&format!("call.{key}"), msg));
        for (key, c) in [
            ("no_route_cause", self.no_route_cause),
            ("group_down_cause", self.group_down_cause),
            ("drain_cause", self.drain_cause),
            ("rtp_timeout_cause", self.rtp_timeout_cause),
        ] {
            if !cause_ok(c) {
                err(key, "expected a Q.850 cause 1-127");
            }
        }
        if !(400..=699).contains(&self.drain_status) {
            err("drain_status", "expected a SIP failure status 400-699");
        }
        let ranges: [(&str, ConfigDuration, u64, u64); 5] = [
            (
                "no_answer_timeout",
                self.no_answer_timeout,
                10_000,
                3_600_000,
            ),
            ("audit_interval", self.audit_interval, 5_000, 3_600_000),
            (
                "status_enquiry_after",
                self.status_enquiry_after,
                60_000,
                86_400_000,
            ),
            ("rtp_timeout", self.rtp_timeout, 1_000, 600_000),
            ("media_summary_wait", self.media_summary_wait, 100, 30_000),
        ];
        for (key, d, min, max) in ranges {
            let ms = d.get().as_millis() as u64;
            if ms < min || ms > max {
                err(
                    key,
                    &format!(
                        "expected {}..={}",
                        super::format_duration(Duration::from_millis(min)),
                        super::format_duration(Duration::from_millis(max))
                    ),
                );
            }
        }
        if !(1..=32).contains(&self.max_digits) {
            err("max_digits", "expected 1-32 digits");
        }
        if self.min_digits == 0 || self.min_digits > self.max_digits {
            err("min_digits", "expected 1..=max_digits");
        }
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.country_code) {
            err("country_code", "expected 1-4 digits, no `+`");
        }
        if !digits(&self.national_prefix) {
            err("national_prefix", "expected 1-4 digits");
        }
        if !digits(&self.international_prefix) {
            err("international_prefix", "expected 1-4 digits");
        }
        validate_tables(src, "call", &self.sip_to_q850, &self.q850_to_sip, errs);
        let mut seen = HashSet::new();
        for (i, t) in self.trunks.iter().enumerate() {
            let p = format!("call.trunk[{i}]");
            if !spans.contains(&t.span) {
                errs.push(src.error(
                    &format!("{p}.span"),
                    format!("no [[span]] with id {}", t.span),
                ));
            } else if !seen.insert(t.span) {
                errs.push(src.error(
                    &format!("{p}.span"),
                    format!("span {} has two [[call.trunk]] entries", t.span),
                ));
            }
            validate_tables(src, &p, &t.sip_to_q850, &t.q850_to_sip, errs);
        }
    }
}

fn validate_tables(
    src: &Source,
    prefix: &str,
    sip_to_q850: &BTreeMap<String, u8>,
    q850_to_sip: &BTreeMap<String, u16>,
    errs: &mut Vec<ConfigError>,
) {
    for (k, c) in sip_to_q850 {
        let key = format!("{prefix}.sip_to_q850.{k}");
        if !k.parse::<u16>().is_ok_and(|s| (300..=699).contains(&s)) {
            errs.push(src.error(&key, "expected a SIP final status 300-699 as the key"));
        }
        if !cause_ok(*c) {
            errs.push(src.error(&key, "expected a Q.850 cause 1-127"));
        }
    }
    for (k, s) in q850_to_sip {
        let key = format!("{prefix}.q850_to_sip.{k}");
        if !k.parse::<u8>().is_ok_and(cause_ok) {
            errs.push(src.error(&key, "expected a Q.850 cause 1-127 as the key"));
        }
        if !(300..=699).contains(s) {
            errs.push(src.error(&key, "expected a SIP final status 300-699"));
        }
    }
}
