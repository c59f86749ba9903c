//! The site config turned into the call manager's parameters
//! (`config` -> `call`, DESIGN.md §3).
//!
//! From the site file: the exchange -> core routes, the RTP address and
//! port base, the spans (core -> exchange calls try them in the order
//! written), the SIP listen address (the host of our From and
//! P-Asserted-Identity URIs), the peer groups (each group's name is its
//! Request-URI host unless the group has one peer, whose address is used)
//! and the `[call]` section (`config::call`): refusal causes, busy-out,
//! digit limits (each route's own `min_digits` / `max_digits` over the
//! site's), the audit, RTP timeouts, SIP INFO DTMF,
//! number formats and the cause-table overrides, every span's and each
//! `[[call.trunk]]`'s (a trunk's table is the site's plus its own).

use super::cause_map::CauseMap;
use super::manager::{CallManagerConfig, CoreRoute, DigitLimits, RtpTimeoutAction};
use super::numbers::NumberFormat;
use super::routing::Router;
use crate::config::SiteConfig;
use crate::config::call::{
    RtpTimeoutAction as CfgRtpAction, q850_to_sip_overrides, sip_to_q850_overrides,
};
use crate::isdn::cause::Cause;
use crate::isdn::q931::NumberComplete;

/// Overlap receiving on `span`: Q.931's test of a complete called number
/// ([`Router::number_complete`] over the site's routes and digit limits,
/// the same the manager routes by).
pub fn number_complete(site: &SiteConfig, span: u8) -> NumberComplete {
    let router = Router::with_limits(site.routes.clone(), route_digits(site));
    NumberComplete::new(move |called, calling| router.number_complete(called, calling, span))
}

/// Each route's digit limits: its own, else `[call]`'s.
fn route_digits(site: &SiteConfig) -> Vec<DigitLimits> {
    let c = &site.call;
    site.routes
        .iter()
        .map(|r| DigitLimits {
            min_digits: r.min_digits.unwrap_or(c.min_digits),
            max_digits: r.max_digits.unwrap_or(c.max_digits),
        })
        .collect()
}

/// The manager's parameters for `site`; `seed` seeds the SDP session ids.
pub fn manager_config(site: &SiteConfig, seed: u64) -> CallManagerConfig {
    let host = site
        .sip
        .listen
        .first()
        .map(|l| l.address.ip().to_string())
        .unwrap_or_else(|| site.media.rtp_address.to_string());
    let mut cfg = CallManagerConfig::new(
        site.routes.clone(),
        site.media.rtp_address,
        site.media.rtp_port_base,
        &host,
    );
    cfg.core_routes = vec![CoreRoute {
        called: "*".into(),
        spans: site.spans.iter().map(|s| s.id).collect(),
    }];
    for g in &site.peer_groups {
        if let [only] = g.peers.as_slice() {
            cfg.group_domains
                .insert(g.name.clone(), only.address.to_string());
        }
    }
    let c = &site.call;
    cfg.no_route_cause = Cause(c.no_route_cause);
    cfg.group_down_cause = Cause(c.group_down_cause);
    cfg.drain_cause = Cause(c.drain_cause);
    cfg.drain_status = c.drain_status;
    cfg.busy_out = c.busy_out;
    cfg.no_answer_timeout = c.no_answer_timeout.get();
    cfg.route_digits = route_digits(site);
    cfg.audit_interval = c.audit_interval.get();
    cfg.long_call_check = c.status_enquiry_after.get();
    cfg.rtp_timeout = c.rtp_timeout.get();
    cfg.rtp_timeout_action = match c.rtp_timeout_action {
        CfgRtpAction::Clear => RtpTimeoutAction::Clear,
        CfgRtpAction::Log => RtpTimeoutAction::Log,
    };
    cfg.rtp_timeout_cause = Cause(c.rtp_timeout_cause);
    cfg.summary_wait = c.media_summary_wait.get();
    cfg.dtmf_to_info = c.dtmf_info_to_core;
    cfg.dtmf_from_info = c.dtmf_info_from_core;
    cfg.numbers = NumberFormat {
        country_code: c.country_code.clone(),
        national_prefix: c.national_prefix.clone(),
        international_prefix: c.international_prefix.clone(),
    };
    cfg.cause_map = CauseMap {
        q850_to_sip: q850_to_sip_overrides(&c.q850_to_sip),
        sip_to_q850: sip_to_q850_overrides(&c.sip_to_q850),
    };
    for t in &c.trunks {
        let mut m = cfg.cause_map.clone();
        m.q850_to_sip.extend(q850_to_sip_overrides(&t.q850_to_sip));
        m.sip_to_q850.extend(sip_to_q850_overrides(&t.sip_to_q850));
        cfg.trunk_cause_maps.insert(t.span, m);
    }
    cfg.seed = seed;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn demo_site_maps() {
        let c = Config::demo().expect("demo config");
        let m = manager_config(&c.site, 7);
        assert_eq!(m.routes, c.site.routes);
        assert_eq!(m.rtp_port_base, c.site.media.rtp_port_base);
        assert_eq!(
            m.core_routes[0].spans,
            c.site.spans.iter().map(|s| s.id).collect::<Vec<_>>()
        );
        assert_eq!(m.no_route_cause.0, 1);
        assert_eq!(m.group_down_cause.0, 34);
        assert_eq!(m.rtp_timeout_cause.0, 41);
        assert_eq!(m.rtp_timeout_action, RtpTimeoutAction::Clear);
        assert!(!m.busy_out);
        assert_eq!(m.route_digits.len(), m.routes.len());
        assert_eq!(m.seed, 7);
    }
}
