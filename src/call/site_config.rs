//! The site config turned into the call manager's parameters
//! (`config` -> `call`, DESIGN.md §3).
//!
//! What the site file gives today: the exchange -> core routes, the RTP
//! address and port base, the spans (core -> exchange calls try them in the
//! order written), the SIP listen address (the host of our From and
//! P-Asserted-Identity URIs) and the peer groups (each group's name is its
//! Request-URI host unless the group has one peer, whose address is used).
//! Cause overrides, digit limits and timers have no section in the site file
//! yet and keep [`CallManagerConfig::new`]'s defaults.

use super::manager::{CallManagerConfig, CoreRoute};
use crate::config::SiteConfig;

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
        assert_eq!(m.seed, 7);
    }
}
