//! The site config's `[sip]` and `[[peer_group]]` sections mapped onto the
//! parameters of the SIP layer (DESIGN.md §3: `config` turns files into
//! the cores' parameters): [`TransportConfig`], the peer table's
//! [`GroupParams`], the user agent's [`UaConfig`], and all of them together
//! as a [`SipTaskConfig`]. Call after validation.

use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use super::site::{SiteConfig, Transport as CfgTransport};
use super::source::Source;
use crate::sip::Limits;
use crate::sip::Uri;
use crate::sip::peer::{GroupParams, PeerParams};
use crate::sip::task::SipTaskConfig;
use crate::sip::transaction::TimerValues;
use crate::sip::transport::{RateLimit, TlsError, TlsMaterial, Transport, TransportConfig};
use crate::sip::ua::UaConfig;

/// The SIP transport of a config transport.
pub fn transport(t: CfgTransport) -> Transport {
    match t {
        CfgTransport::Udp => Transport::Udp,
        CfgTransport::Tcp => Transport::Tcp,
        CfgTransport::Tls => Transport::Tls,
    }
}

impl SiteConfig {
    /// The transports: the `[sip]` listeners, signalling accepted from every
    /// configured peer's IP address, each TLS peer's `tls_name`, the TLS
    /// files (`tls_ca`, `tls_cert`, `tls_key`; relative paths are taken from
    /// `base_dir`, the site file's folder), keep-alives and the rate limit.
    pub fn sip_transport_config(&self, base_dir: &Path) -> Result<TransportConfig, TlsError> {
        let peers = || self.peer_groups.iter().flat_map(|g| &g.peers);
        let mut allowed: Vec<_> = peers().map(|p| p.address.ip()).collect();
        allowed.sort();
        allowed.dedup();
        let tls_names = peers()
            .filter_map(|p| Some((p.address, p.tls_name.clone()?)))
            .collect();
        let path = |p: &Path| base_dir.join(p);
        let tls = match &self.sip.tls_ca {
            Some(ca) => Some(TlsMaterial::load(
                &path(ca),
                self.sip.tls_cert.as_deref().map(path).as_deref(),
                self.sip.tls_key.as_deref().map(path).as_deref(),
            )?),
            None => None,
        };
        let keepalive = self.sip.keepalive_interval.get();
        Ok(TransportConfig {
            listen: self
                .sip
                .listen
                .iter()
                .map(|l| (transport(l.transport), l.address))
                .collect(),
            allowed_sources: allowed,
            tls_names,
            tls,
            tls_require_client_cert: self.sip.tls_require_client_cert,
            rate_limit: RateLimit {
                per_second: self.sip.rate_limit_per_second,
                burst: self.sip.rate_limit_burst,
            },
            keepalive_interval: (!keepalive.is_zero()).then_some(keepalive),
            keepalive_timeout: self.sip.keepalive_timeout.get(),
            ..TransportConfig::default()
        })
    }

    /// The peer table's groups, in config order.
    pub fn sip_peer_groups(&self) -> Vec<GroupParams> {
        self.peer_groups
            .iter()
            .map(|g| {
                let peers = g
                    .peers
                    .iter()
                    .map(|p| PeerParams {
                        address: p.address,
                        transport: transport(p.transport),
                        priority: p.priority,
                        weight: p.weight,
                        tls_name: p.tls_name.clone(),
                    })
                    .collect();
                GroupParams::new(
                    &g.name,
                    g.options_interval.get(),
                    g.down_after,
                    g.up_after,
                    peers,
                )
            })
            .collect()
    }

    /// RFC 3261 T1/T2/T4 from `[sip] timers` (the RFC's values if unset).
    pub fn sip_timer_values(&self) -> TimerValues {
        let mut t = TimerValues::default();
        for (name, d) in &self.sip.timers {
            let ms = d.get().as_millis() as u64;
            match name.as_str() {
                "T1" => t.t1_ms = ms,
                "T2" => t.t2_ms = ms,
                "T4" => t.t4_ms = ms,
                _ => {}
            }
        }
        t
    }

    /// The user agent: timers, 100rel and session timers from `[sip]`; Via
    /// and Contact from the first UDP or TCP listener (the TLS one for TLS
    /// Vias); `seed` for tags, branches and Call-IDs.
    pub fn sip_ua_config(&self, seed: u64) -> UaConfig {
        let plain = self
            .sip
            .listen
            .iter()
            .find(|l| l.transport != CfgTransport::Tls)
            .or_else(|| self.sip.listen.first());
        let tls = self
            .sip
            .listen
            .iter()
            .find(|l| l.transport == CfgTransport::Tls);
        let (sent_by, host, contact) = match plain {
            Some(l) => (
                l.address.to_string(),
                match l.address.ip() {
                    std::net::IpAddr::V4(a) => a.to_string(),
                    std::net::IpAddr::V6(a) => format!("[{a}]"),
                },
                Uri::parse(&format!("sip:tdmgw@{}", l.address)).ok(),
            ),
            // No listener: the task fills these from what it binds.
            None => (String::new(), String::new(), None),
        };
        UaConfig {
            timers: self.sip_timer_values(),
            limits: Limits::default(),
            sent_by,
            sent_by_tls: tls.map(|l| l.address.to_string()),
            contact: contact
                .unwrap_or_else(|| Uri::parse("sip:tdmgw@127.0.0.1").expect("a valid literal URI")),
            call_id_host: host,
            user_agent: format!("tdmgw/{}", env!("CARGO_PKG_VERSION")),
            seed,
            rel100: self.sip.rel100,
            session_expires_s: self
                .sip
                .session_expires
                .map(|d| d.get().as_secs().min(u64::from(u32::MAX)) as u32),
            min_se_s: self.sip.min_se.get().as_secs().min(u64::from(u32::MAX)) as u32,
        }
    }

    /// Everything the SIP task needs (`seed`: OS randomness in production).
    pub fn sip_task_config(&self, base_dir: &Path, seed: u64) -> Result<SipTaskConfig, TlsError> {
        let mut cfg = SipTaskConfig::new(
            self.sip_transport_config(base_dir)?,
            self.sip_ua_config(seed),
            self.sip_peer_groups(),
        );
        cfg.invite_timeout = self.sip.invite_timeout.get();
        Ok(cfg)
    }

    /// Range checks of the `[sip]` options the SIP task uses.
    pub(super) fn validate_sip_options(&self, src: &Source, errs: &mut Vec<ConfigError>) {
        let s = &self.sip;
        let it = s.invite_timeout.get();
        if it < Duration::from_millis(200) || it > Duration::from_secs(32) {
            errs.push(src.error("sip.invite_timeout", "expected 200ms..=32s"));
        }
        let ka = s.keepalive_interval.get();
        if !ka.is_zero() && (ka < Duration::from_secs(5) || ka > Duration::from_secs(600)) {
            errs.push(src.error(
                "sip.keepalive_interval",
                "expected 5s..=10m, or 0s for no keep-alives",
            ));
        }
        let kt = s.keepalive_timeout.get();
        if kt < Duration::from_secs(1) || kt > Duration::from_secs(60) {
            errs.push(src.error("sip.keepalive_timeout", "expected 1s..=60s"));
        }
        if !(1..=100_000).contains(&s.rate_limit_per_second) {
            errs.push(src.error("sip.rate_limit_per_second", "expected 1-100000"));
        }
        if s.rate_limit_burst < s.rate_limit_per_second.max(1) || s.rate_limit_burst > 1_000_000 {
            errs.push(src.error(
                "sip.rate_limit_burst",
                "expected at least rate_limit_per_second, at most 1000000",
            ));
        }
        // RFC 4028 §4: Min-SE is at least 90 s.
        let min_se = s.min_se.get();
        if min_se < Duration::from_secs(90) || min_se > Duration::from_secs(86_400) {
            errs.push(src.error("sip.min_se", "expected 90s..=24h (RFC 4028 §4)"));
        }
        if let Some(se) = s.session_expires
            && (se.get() < min_se || se.get() > Duration::from_secs(86_400))
        {
            errs.push(src.error(
                "sip.session_expires",
                "expected at least min_se (90s by default), at most 24h",
            ));
        }
        for (i, l) in s.listen.iter().enumerate() {
            if l.address.ip().is_unspecified() {
                errs.push(src.error(
                    &format!("sip.listen[{i}].address"),
                    "a SIP listener needs a concrete address: it is advertised in Via and Contact",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(text: &str) -> SiteConfig {
        toml::from_str(text).unwrap()
    }

    const SITE: &str = r#"
board = "builtin:sim"
[sip]
listen = [
  { transport = "udp", address = "192.0.2.4:5060" },
  { transport = "tls", address = "192.0.2.4:5061" },
]
timers = { T1 = "250ms", T4 = "3s" }
keepalive_interval = "0s"
rate_limit_per_second = 50
rate_limit_burst = 80
rel100 = false
session_expires = "30m"
invite_timeout = "1500ms"
[[peer_group]]
name = "mcvp"
options_interval = "5s"
down_after = 4
up_after = 3
[[peer_group.peer]]
address = "192.0.2.10:5061"
transport = "tls"
tls_name = "sbc-a.test"
priority = 1
[[peer_group.peer]]
address = "192.0.2.11:5060"
priority = 2
weight = 10
[[peer_group]]
name = "other"
[[peer_group.peer]]
address = "192.0.2.10:5070"
transport = "tcp"
"#;

    #[test]
    fn transport_config_from_the_site() {
        let t = site(SITE).sip_transport_config(Path::new("/")).unwrap();
        assert_eq!(
            t.listen,
            vec![
                (Transport::Udp, "192.0.2.4:5060".parse().unwrap()),
                (Transport::Tls, "192.0.2.4:5061".parse().unwrap()),
            ]
        );
        // Every peer's IP, once.
        assert_eq!(
            t.allowed_sources,
            vec![
                "192.0.2.10".parse::<std::net::IpAddr>().unwrap(),
                "192.0.2.11".parse().unwrap()
            ]
        );
        assert_eq!(
            t.tls_names,
            vec![("192.0.2.10:5061".parse().unwrap(), "sbc-a.test".to_string())]
        );
        assert!(t.tls.is_none());
        assert_eq!(t.keepalive_interval, None);
        assert_eq!(
            t.rate_limit,
            RateLimit {
                per_second: 50,
                burst: 80
            }
        );
    }

    #[test]
    fn tls_files_are_read_relative_to_the_site_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), b"CA").unwrap();
        let mut s = site(SITE);
        s.sip.tls_ca = Some("ca.pem".into());
        let t = s.sip_transport_config(dir.path()).unwrap();
        assert_eq!(t.tls.unwrap().ca_pem, b"CA".to_vec());
        s.sip.tls_ca = Some("missing.pem".into());
        assert!(s.sip_transport_config(dir.path()).is_err());
    }

    #[test]
    fn peer_groups_and_user_agent_from_the_site() {
        let s = site(SITE);
        let g = s.sip_peer_groups();
        assert_eq!(g.len(), 2);
        assert_eq!(
            (
                g[0].name.as_str(),
                g[0].options_interval,
                g[0].down_after,
                g[0].up_after
            ),
            ("mcvp", Duration::from_secs(5), 4, 3)
        );
        assert_eq!(g[0].peers[0].transport, Transport::Tls);
        assert_eq!(g[0].peers[0].tls_name.as_deref(), Some("sbc-a.test"));
        assert_eq!((g[0].peers[1].priority, g[0].peers[1].weight), (2, 10));
        assert_eq!(g[1].peers[0].transport, Transport::Tcp);
        let ua = s.sip_ua_config(7);
        assert_eq!(
            (ua.timers.t1_ms, ua.timers.t2_ms, ua.timers.t4_ms),
            (250, 4_000, 3_000)
        );
        assert_eq!(ua.sent_by, "192.0.2.4:5060");
        assert_eq!(ua.sent_by_tls.as_deref(), Some("192.0.2.4:5061"));
        assert_eq!(ua.contact.to_string(), "sip:tdmgw@192.0.2.4:5060");
        assert_eq!(ua.call_id_host, "192.0.2.4");
        assert!(!ua.rel100);
        assert_eq!((ua.session_expires_s, ua.min_se_s), (Some(1800), 90));
        let task = s.sip_task_config(Path::new("/"), 7).unwrap();
        assert_eq!(task.invite_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn defaults_when_unset() {
        let s = site("board = \"builtin:sim\"\n");
        let t = s.sip_transport_config(Path::new("/")).unwrap();
        assert_eq!(t.keepalive_interval, Some(Duration::from_secs(30)));
        assert_eq!(t.rate_limit, RateLimit::default());
        assert!(t.allowed_sources.is_empty());
        let ua = s.sip_ua_config(1);
        assert_eq!(ua.timers, TimerValues::default());
        assert!(ua.rel100);
        assert_eq!(ua.session_expires_s, None);
        assert!(
            ua.sent_by.is_empty(),
            "filled by the task from what it binds"
        );
    }
}
