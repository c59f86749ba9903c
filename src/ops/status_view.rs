//! The layers' part of `tdmgw status` and `/readyz` (issue 8 §1, §3).
//!
//! # Contract
//!
//! - JSON producers (sections of `tdmgw status --json`, registered with
//!   `OpsBoard::add_status`): [`spans_json`] (`spans`: alarms, D-channel
//!   state, line counters), [`channels_json`] (`channels`: a grid per span),
//!   [`calls_json`] (`calls`: calls in progress, numbers redacted when the
//!   site asks), [`peers_json`] (`peers`: state and round trip),
//!   [`sip_json`] (`sip`: bound listeners, calls, dialogs and transactions
//!   in progress), [`gateway_json`] (`gateway`: its state and error). Each takes
//!   the same snapshots as the collectors in [`super::layer_metrics`].
//! - Readiness checks (for `OpsBoard::add_checks`): [`gateway_check`]
//!   fails while the gateway is not running as configured, [`span_checks`] fails a
//!   span in red or blue alarm, [`dchannel_checks`] a span whose D-channel
//!   is not established, [`peer_checks`] a peer group whose every peer is
//!   down. Each check names the span or group and says why.
//! - Text for the terminal: [`render_gateway`], [`render_spans`], [`render_calls`],
//!   [`render_peers`] read the JSON back (the CLI only has the document), so
//!   `--json` and the text always agree.
//!
//! The channel grid has one character per timeslot 1..31:
//! `.` idle, `r` reserved, `B` busy, `R` restarting, `X` out of service,
//! `-` not a B-channel (TS16 on a PRI).

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Value, json};

use super::board::Check;
use super::gateway::GatewayState;
use super::layer_metrics::{
    PeerRow, SipSnapshot, SpanSnapshot, channel_state_label, q921_state_name,
};
use crate::call::cdr::Direction;
use crate::isdn::q931::{ChannelState, ChannelTable};
use crate::isdn::task::DChannelStatus;
use crate::line::e1_alarm::{Alarm, Alarms};

/// A call in progress as the call module shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// The call's id in logs and CDRs.
    pub id: String,
    pub direction: Direction,
    /// Calling and called numbers as dialled (redacted on output if asked).
    pub calling: String,
    pub called: String,
    pub span: u8,
    pub timeslot: u8,
    /// The core peer's address, once one is chosen.
    pub peer: Option<String>,
    /// `setup`, `alerting`, `active`, `clearing` ...
    pub state: String,
    pub started: Instant,
}

/// `ok`, `red`, `blue` or `yellow` (G.775 colours; red wins over blue over yellow).
pub fn alarm_state(a: Alarms) -> &'static str {
    if a.red() {
        "red"
    } else if a.blue() {
        "blue"
    } else if a.yellow() {
        "yellow"
    } else {
        "ok"
    }
}

fn alarm_names(a: Alarms) -> Vec<&'static str> {
    Alarm::ALL
        .into_iter()
        .filter(|x| a.contains(*x))
        .map(Alarm::name)
        .collect()
}

/// The grid character of a channel state.
pub fn grid_char(s: ChannelState) -> char {
    match s {
        ChannelState::Idle => '.',
        ChannelState::Reserved => 'r',
        ChannelState::Busy => 'B',
        ChannelState::Restarting => 'R',
        ChannelState::OutOfService => 'X',
    }
}

/// 31 characters, timeslot 1 first (see the module doc).
pub fn channel_grid(t: &ChannelTable) -> String {
    (1..=31u8)
        .map(|ts| t.get(ts).map_or('-', grid_char))
        .collect()
}

/// The `spans` section: every span of either source, by number.
pub fn spans_json(spans: &[SpanSnapshot], dchannels: &[DChannelStatus]) -> Value {
    let mut ids: Vec<u16> = spans
        .iter()
        .map(|s| s.span)
        .chain(dchannels.iter().map(|d| u16::from(d.span)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let out: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            let line = spans.iter().find(|s| s.span == id);
            let dc = dchannels.iter().find(|d| u16::from(d.span) == id);
            let mut v = json!({ "span": id });
            if let Some(s) = line {
                v["state"] = json!(alarm_state(s.alarms));
                v["alarms"] = json!(alarm_names(s.alarms));
                v["unavailable"] = json!(s.unavailable);
                v["far_unavailable"] = json!(s.far_unavailable);
                let t = &s.total;
                v["counters"] = json!({
                    "fas_errors": t.fas_errors,
                    "crc4_errors": t.crc4_errors,
                    "ebit_errors": t.febe,
                    "slips": t.slips,
                    "alignment_losses": t.alignment_losses,
                    "es": t.es, "ses": t.ses, "uas": t.uas,
                    "far_es": t.far_es, "far_ses": t.far_ses, "far_uas": t.far_uas,
                    "hdlc_fcs_errors": s.counters.hdlc_rx.fcs_errors,
                });
                let c = &s.current;
                v["interval"] = json!({
                    "seconds": c.seconds,
                    "fas_errors": c.fas_errors,
                    "crc4_errors": c.crc4_errors,
                    "es": c.es, "ses": c.ses, "uas": c.uas,
                    "far_es": c.far_es, "far_ses": c.far_ses, "far_uas": c.far_uas,
                });
            }
            if let Some(d) = dc {
                v["dchannel"] = json!({
                    "up": d.link_up,
                    "q921_state": q921_state_name(d.q921_state),
                    "calls": d.calls,
                });
            }
            v
        })
        .collect();
    Value::Array(out)
}

/// The `channels` section: per span its grid and the count per state.
pub fn channels_json(dchannels: &[DChannelStatus]) -> Value {
    let mut v: Vec<Value> = dchannels
        .iter()
        .map(|d| {
            let mut m = serde_json::Map::new();
            m.insert("span".into(), json!(d.span));
            m.insert("grid".into(), json!(channel_grid(&d.channels)));
            for st in [
                ChannelState::Idle,
                ChannelState::Reserved,
                ChannelState::Busy,
                ChannelState::Restarting,
                ChannelState::OutOfService,
            ] {
                let n = d.channels.iter().filter(|(_, s)| *s == st).count();
                m.insert(channel_state_label(st).into(), json!(n));
            }
            Value::Object(m)
        })
        .collect();
    v.sort_by_key(|x| x["span"].as_u64());
    Value::Array(v)
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::ExchangeToCore => "exchange_to_core",
        Direction::CoreToExchange => "core_to_exchange",
    }
}

/// The `calls` section, oldest first; `redact`: the site's
/// number-redaction setting (`call::numbers::redact`).
pub fn calls_json(calls: &[CallView], now: Instant, redact: bool) -> Value {
    let mut v: Vec<&CallView> = calls.iter().collect();
    v.sort_by_key(|c| c.started);
    let num = |n: &str| {
        if redact {
            crate::call::numbers::redact(n)
        } else {
            n.to_string()
        }
    };
    Value::Array(
        v.into_iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "direction": direction_name(c.direction),
                    "calling": num(&c.calling),
                    "called": num(&c.called),
                    "span": c.span,
                    "ts": c.timeslot,
                    "peer": c.peer,
                    "state": c.state,
                    "age_s": now.saturating_duration_since(c.started).as_secs(),
                })
            })
            .collect(),
    )
}

/// The `sip` section: the listeners actually bound (a configured port 0
/// resolved), SIP calls not yet ended, dialogs and transactions.
pub fn sip_json(s: &SipSnapshot) -> Value {
    json!({
        "listeners": s
            .listeners
            .iter()
            .map(|(t, a)| json!({"transport": t.name(), "address": a.to_string()}))
            .collect::<Vec<_>>(),
        "calls": s.calls,
        "dialogs": s.dialogs,
        "transactions": s.transactions,
    })
}

/// The `peers` section.
pub fn peers_json(peers: &[PeerRow]) -> Value {
    Value::Array(
        peers
            .iter()
            .map(|p| {
                json!({
                    "group": p.group,
                    "address": p.address,
                    "transport": p.transport.name(),
                    "state": if p.up { "up" } else { "down" },
                    "in_state_s": p.in_state.as_secs(),
                    "rtt_ms": p.rtt.map(|r| (r.as_secs_f64() * 10_000.0).round() / 10.0),
                    "pings_sent": p.pings_sent,
                    "ping_failures": p.ping_failures,
                    "call_failures": p.call_failures,
                })
            })
            .collect(),
    )
}

/// The `gateway` section: its state, and the error or the part that
/// ended when it failed or stopped.
pub fn gateway_json(g: &GatewayState) -> Value {
    let mut v = json!({ "state": g.label() });
    if let GatewayState::Failed(e) | GatewayState::Stopped(e) = g {
        v["error"] = json!(e);
    }
    v
}

// ---------------------------------------------------------------- readiness

/// `gateway`: failing unless the gateway runs as configured (or the site
/// asks for none): while it starts, when it could not be started, when a
/// part of it has ended. The detail says why (`failed to start: span 1:
/// ...`).
pub fn gateway_check(out: &mut Vec<Check>, g: &GatewayState) {
    out.push(Check {
        name: "gateway".into(),
        ok: g.is_ready(),
        detail: g.detail(),
    });
}

/// `span N alarms`: failing while the span is in red (LOS, LOF, LOMF) or blue
/// (AIS) alarm: no usable signal from the exchange. RAI alone (yellow: the
/// far end does not hear us) passes but is named in the detail.
pub fn span_checks(out: &mut Vec<Check>, spans: &[SpanSnapshot]) {
    for s in spans {
        let a = s.alarms;
        let detail = if a.is_empty() {
            String::new()
        } else {
            format!("{a} ({})", alarm_state(a))
        };
        out.push(Check {
            name: format!("span {} alarms", s.span),
            ok: !a.red() && !a.blue(),
            detail,
        });
    }
}

/// `span N D-channel`: failing while the data link is not established.
pub fn dchannel_checks(out: &mut Vec<Check>, dchannels: &[DChannelStatus]) {
    for d in dchannels {
        out.push(Check {
            name: format!("span {} D-channel", d.span),
            ok: d.link_up,
            detail: if d.link_up {
                String::new()
            } else {
                format!("down (Q.921 {})", q921_state_name(d.q921_state))
            },
        });
    }
}

/// `core peers <group>`: failing when every peer of the group is down (calls
/// for it cannot be placed); with no peers at all, one failing `core peers`
/// check (nothing to send calls to).
pub fn peer_checks(out: &mut Vec<Check>, peers: &[PeerRow]) {
    if peers.is_empty() {
        out.push(Check {
            name: "core peers".into(),
            ok: false,
            detail: "no core peer configured".into(),
        });
        return;
    }
    let mut groups: Vec<&str> = peers.iter().map(|p| p.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let members: Vec<&PeerRow> = peers.iter().filter(|p| p.group == g).collect();
        let up = members.iter().filter(|p| p.up).count();
        out.push(Check {
            name: format!("core peers {g}"),
            ok: up > 0,
            detail: if up > 0 {
                String::new()
            } else {
                let names: Vec<&str> = members.iter().map(|p| p.address.as_str()).collect();
                format!("every peer down: {}", names.join(", "))
            },
        });
    }
}

// ---------------------------------------------------------------- text

/// `42s`, `12m05s`, `3h12m`.
pub fn fmt_age(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("?")
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The gateway's line (`gateway` section), when it is not running.
pub fn render_gateway(v: &Value, out: &mut String) {
    let g = &v["gateway"];
    let text = match s(g, "state") {
        "running" | "?" => return,
        "not_configured" => "operations only (no routes and no core peers configured)".into(),
        "starting" => "STARTING".into(),
        "failed" => format!(
            "FAILED to start: {} (no calls; fix it and restart tdmgw)",
            s(g, "error")
        ),
        "stopped" => format!("STOPPED: {} (no calls; restart tdmgw)", s(g, "error")),
        other => other.to_uppercase(),
    };
    let _ = writeln!(out, "gateway: {text}");
}

/// The spans with their channel grids (`spans` and `channels` sections).
pub fn render_spans(v: &Value, out: &mut String) {
    let Some(spans) = v["spans"].as_array() else {
        return;
    };
    let empty = Vec::new();
    let grids = v["channels"].as_array().unwrap_or(&empty);
    out.push('\n');
    for sp in spans {
        let id = n(sp, "span");
        let state = sp["state"].as_str().map_or("-".into(), str::to_uppercase);
        let alarms: Vec<&str> = sp["alarms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let dc = &sp["dchannel"];
        let dtext = if dc.is_null() {
            "D-channel -".to_string()
        } else {
            format!(
                "D-channel {} ({})",
                if dc["up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "DOWN"
                },
                s(dc, "q921_state")
            )
        };
        let _ = writeln!(
            out,
            "span {id:<2} {state:<6} {:<14} {dtext:<44} calls {}",
            alarms.join("|"),
            dc["calls"].as_u64().map_or("-".into(), |c| c.to_string())
        );
        if let Some(g) = grids
            .iter()
            .find(|g| g["span"].as_u64() == Some(id))
            .and_then(|g| g["grid"].as_str())
        {
            let cells: Vec<char> = g.chars().collect();
            let part = |from: usize, to: usize| -> String {
                cells
                    .get(from - 1..to)
                    .map_or(String::new(), |c| c.iter().collect())
            };
            let _ = writeln!(
                out,
                "        ts  1-15 |{}|  17-31 |{}|",
                part(1, 15),
                part(17, 31)
            );
        }
        let c = &sp["counters"];
        let i = &sp["interval"];
        if !c.is_null() {
            let flag = |key: &str, text: &'static str| {
                if sp[key].as_bool() == Some(true) {
                    text
                } else {
                    ""
                }
            };
            let _ = writeln!(
                out,
                "        errors FAS {}  CRC-4 {}  E-bit {}  slips {}  |  this 15 min ({}): ES {}  SES {}  UAS {}{}",
                n(c, "fas_errors"),
                n(c, "crc4_errors"),
                n(c, "ebit_errors"),
                n(c, "slips"),
                fmt_age(n(i, "seconds")),
                n(i, "es"),
                n(i, "ses"),
                n(i, "uas"),
                flag("unavailable", "  UNAVAILABLE"),
            );
            let _ = writeln!(
                out,
                "        far end (its E bits, RAI)                  |  this 15 min: ES {}  SES {}  UAS {}{}",
                n(i, "far_es"),
                n(i, "far_ses"),
                n(i, "far_uas"),
                flag("far_unavailable", "  UNAVAILABLE"),
            );
        }
    }
    if !grids.is_empty() {
        out.push_str("        (. idle  r reserved  B busy  R restarting  X out of service)\n");
    }
}

/// The calls in progress (`calls` section).
pub fn render_calls(v: &Value, out: &mut String) {
    let Some(calls) = v["calls"].as_array() else {
        return;
    };
    let _ = writeln!(out, "\ncalls in progress: {}", calls.len());
    for c in calls {
        let dir = match s(c, "direction") {
            "exchange_to_core" => "exchange->core",
            "core_to_exchange" => "core->exchange",
            other => other,
        };
        let _ = writeln!(
            out,
            "  span {} ts {:<2} {dir}  {} -> {}  {:<9} age {:<7} peer {}  [{}]",
            n(c, "span"),
            n(c, "ts"),
            s(c, "calling"),
            s(c, "called"),
            s(c, "state"),
            fmt_age(n(c, "age_s")),
            c["peer"].as_str().unwrap_or("-"),
            s(c, "id"),
        );
    }
}

/// The core peers (`peers` section).
pub fn render_peers(v: &Value, out: &mut String) {
    let Some(peers) = v["peers"].as_array() else {
        return;
    };
    out.push('\n');
    for p in peers {
        let up = s(p, "state") == "up";
        let _ = writeln!(
            out,
            "peer {} {} {}  {:<5} rtt {:<9} ({} {}, {} ping failures, {} call failures)",
            s(p, "group"),
            s(p, "address"),
            s(p, "transport"),
            if up { "UP" } else { "DOWN" },
            p["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.1} ms")),
            if up { "up" } else { "down" },
            fmt_age(n(p, "in_state_s")),
            n(p, "ping_failures"),
            n(p, "call_failures"),
        );
    }
    let sip = &v["sip"];
    if let Some(l) = sip["listeners"].as_array() {
        let listening: Vec<String> = l
            .iter()
            .map(|x| format!("{} {}", s(x, "transport"), s(x, "address")))
            .collect();
        let _ = writeln!(
            out,
            "sip {}  calls {}  dialogs {}  transactions {}",
            listening.join(", "),
            n(sip, "calls"),
            n(sip, "dialogs"),
            n(sip, "transactions"),
        );
    }
}

#[doc(hidden)]
#[cfg(test)]
pub(crate) mod tests_support {
    //! Realistic snapshots for the tests of this module, the collectors and events.
    use std::time::Duration;

    use super::*;
    use crate::isdn::q921;
    use crate::line::e1_perf::PerfCounts;
    use crate::line::span::SpanCounters;
    use crate::sip::peer::{GroupParams, PeerParams, PeerTable};
    use crate::sip::transport::Transport;

    pub fn spans() -> Vec<SpanSnapshot> {
        let mut counters = SpanCounters {
            frame_periods: 8000 * 420,
            frames_sent: 8000 * 420,
            hdlc_tx_frames: 1230,
            ..SpanCounters::default()
        };
        counters.hdlc_rx.frames = 1234;
        counters.hdlc_rx.fcs_errors = 2;
        let ok = SpanSnapshot {
            span: 1,
            alarms: Alarms::NONE,
            counters,
            current: PerfCounts {
                seconds: 420,
                crc4_blocks: 420 * 1000,
                crc4_errors: 12,
                febe: 3,
                es: 1,
                far_es: 3,
                far_ses: 1,
                ..PerfCounts::default()
            },
            total: PerfCounts {
                seconds: 3 * 900 + 420,
                crc4_blocks: 3_120_000,
                crc4_errors: 40,
                febe: 9,
                fas_errors: 7,
                slips: 1,
                alignment_losses: 1,
                es: 4,
                ses: 1,
                uas: 12,
                far_es: 6,
                far_ses: 2,
                far_uas: 15,
            },
            unavailable: false,
            far_unavailable: false,
        };
        let red = SpanSnapshot {
            span: 2,
            alarms: Alarms::NONE.with(Alarm::Los, true).with(Alarm::Lof, true),
            unavailable: true,
            // Its far end sent RAI for ten seconds before the LOS.
            far_unavailable: true,
            total: PerfCounts {
                far_uas: 10,
                ..PerfCounts::default()
            },
            ..SpanSnapshot::default()
        };
        vec![ok, red]
    }

    pub fn dchannels() -> Vec<DChannelStatus> {
        let mut t1 = ChannelTable::e1();
        t1.set(3, ChannelState::Busy);
        t1.set(6, ChannelState::Busy);
        t1.set(20, ChannelState::Restarting);
        t1.set(31, ChannelState::Reserved);
        let mut q921c = q921::Counters {
            frames_in: 500,
            frames_out: 498,
            i_frames_sent: 40,
            i_frames_received: 41,
            t200_expiries: 2,
            establishments: 1,
            ..q921::Counters::default()
        };
        q921c.mdl_errors[q921::MdlError::F as usize] = 1;
        let up = DChannelStatus {
            span: 1,
            link_up: true,
            q921_state: q921::State::MultipleFrameEstablished,
            calls: 3,
            channels: t1,
            q921: q921c,
            q931: crate::isdn::q931::Counters {
                unexpected_in_state: 1,
                ..Default::default()
            },
            dchannel: Default::default(),
        };
        let down = DChannelStatus {
            span: 2,
            link_up: false,
            q921_state: q921::State::AwaitingEstablishment,
            calls: 0,
            channels: ChannelTable::e1(),
            q921: q921::Counters::default(),
            q931: Default::default(),
            dchannel: Default::default(),
        };
        vec![up, down]
    }

    pub fn peer_table() -> PeerTable {
        let peer = |a: &str| PeerParams {
            address: a.parse().unwrap(),
            transport: Transport::Udp,
            priority: 1,
            weight: 1,
            tls_name: None,
        };
        let g = GroupParams::new(
            "core",
            Duration::from_secs(5),
            2,
            2,
            vec![peer("192.0.2.10:5060"), peer("192.0.2.11:5060")],
        );
        PeerTable::new(vec![g], Instant::now(), 1)
    }

    pub fn peers() -> Vec<PeerRow> {
        let up = PeerRow {
            group: "core".into(),
            address: "192.0.2.10:5060".into(),
            transport: Transport::Udp,
            up: true,
            in_state: Duration::from_secs(11_520),
            rtt: Some(Duration::from_micros(4_200)),
            pings_sent: 2304,
            ping_failures: 1,
            call_failures: 0,
        };
        let down = PeerRow {
            address: "192.0.2.11:5060".into(),
            up: false,
            in_state: Duration::from_secs(75),
            rtt: None,
            pings_sent: 2300,
            ping_failures: 17,
            call_failures: 2,
            ..up.clone()
        };
        vec![up, down]
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn grid_has_one_char_per_timeslot() {
        let d = dchannels();
        assert_eq!(
            channel_grid(&d[0].channels),
            "..B..B.........-...R..........r"
        );
        let v = channels_json(&d);
        assert_eq!(v[0]["busy"], 2);
        assert_eq!(v[0]["idle"], 26);
        assert_eq!(v[1]["idle"], 30);
    }

    #[test]
    fn checks_name_the_failing_span_alarm_dchannel_and_group() {
        let mut c = Vec::new();
        span_checks(&mut c, &spans());
        dchannel_checks(&mut c, &dchannels());
        let mut p = peers();
        peer_checks(&mut c, &p);
        let failing: Vec<(&str, &str)> = c
            .iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name.as_str(), c.detail.as_str()))
            .collect();
        assert_eq!(
            failing,
            vec![
                ("span 2 alarms", "LOS|LOF (red)"),
                ("span 2 D-channel", "down (Q.921 awaiting establishment)")
            ]
        );
        p[0].up = false;
        let mut c = Vec::new();
        peer_checks(&mut c, &p);
        assert!(!c[0].ok);
        assert_eq!(c[0].name, "core peers core");
        assert!(c[0].detail.contains("192.0.2.10:5060, 192.0.2.11:5060"));
        let mut c = Vec::new();
        peer_checks(&mut c, &[]);
        assert!(!c[0].ok);
        // Yellow alone passes.
        let mut y = spans();
        y[1].alarms = Alarms::NONE.with(Alarm::Rai, true);
        let mut c = Vec::new();
        span_checks(&mut c, &y);
        assert!(c.iter().all(|c| c.ok));
        assert_eq!(c[1].detail, "RAI (yellow)");
    }

    #[test]
    fn calls_are_redacted_when_asked() {
        let now = Instant::now();
        let call = CallView {
            id: "c-0012".into(),
            direction: Direction::ExchangeToCore,
            calling: "02079460123".into(),
            called: "999".into(),
            span: 1,
            timeslot: 5,
            peer: Some("192.0.2.10:5060".into()),
            state: "active".into(),
            started: now - Duration::from_secs(62),
        };
        let v = calls_json(std::slice::from_ref(&call), now, true);
        assert_eq!(v[0]["calling"], "********123");
        assert_eq!(v[0]["called"], "999");
        assert_eq!(v[0]["age_s"], 62);
        let v = calls_json(&[call], now, false);
        assert_eq!(v[0]["calling"], "02079460123");
    }

    /// The text rendering from a fixed document (what an operator sees).
    #[test]
    fn renders_spans_calls_and_peers_from_fixed_json() {
        let v: Value = serde_json::from_str(
            r#"{
            "spans": [
              {"span":1,"state":"ok","alarms":[],"unavailable":false,
               "counters":{"fas_errors":7,"crc4_errors":40,"ebit_errors":9,"slips":1,"alignment_losses":1,"es":4,"ses":1,"uas":12},
               "interval":{"seconds":420,"es":1,"ses":0,"uas":0,"far_es":3,"far_ses":1,"far_uas":0},
               "dchannel":{"up":true,"q921_state":"multiple-frame established","calls":3}},
              {"span":2,"state":"red","alarms":["LOS","LOF"],"unavailable":true,"far_unavailable":true,
               "counters":{"fas_errors":0,"crc4_errors":0,"ebit_errors":0,"slips":0,"es":0,"ses":0,"uas":30},
               "interval":{"seconds":30,"es":0,"ses":0,"uas":30,"far_es":0,"far_ses":0,"far_uas":10},
               "dchannel":{"up":false,"q921_state":"awaiting establishment","calls":0}}
            ],
            "channels": [
              {"span":1,"grid":"..B..B.........-...R..........r"},
              {"span":2,"grid":"...............-..............."}
            ],
            "calls": [
              {"id":"c-0012","direction":"exchange_to_core","calling":"********123","called":"999",
               "span":1,"ts":3,"peer":"192.0.2.10:5060","state":"active","age_s":62}
            ],
            "peers": [
              {"group":"core","address":"192.0.2.10:5060","transport":"udp","state":"up","in_state_s":11520,"rtt_ms":4.2,"ping_failures":1,"call_failures":0},
              {"group":"core","address":"192.0.2.11:5060","transport":"udp","state":"down","in_state_s":75,"rtt_ms":null,"ping_failures":17,"call_failures":2}
            ]}"#,
        )
        .unwrap();
        let mut out = String::new();
        render_spans(&v, &mut out);
        render_calls(&v, &mut out);
        render_peers(&v, &mut out);
        let expected = "
span 1  OK                    D-channel up (multiple-frame established)    calls 3
        ts  1-15 |..B..B.........|  17-31 |...R..........r|
        errors FAS 7  CRC-4 40  E-bit 9  slips 1  |  this 15 min (7m00s): ES 1  SES 0  UAS 0
        far end (its E bits, RAI)                  |  this 15 min: ES 3  SES 1  UAS 0
span 2  RED    LOS|LOF        D-channel DOWN (awaiting establishment)      calls 0
        ts  1-15 |...............|  17-31 |...............|
        errors FAS 0  CRC-4 0  E-bit 0  slips 0  |  this 15 min (30s): ES 0  SES 0  UAS 30  UNAVAILABLE
        far end (its E bits, RAI)                  |  this 15 min: ES 0  SES 0  UAS 10  UNAVAILABLE
        (. idle  r reserved  B busy  R restarting  X out of service)

calls in progress: 1
  span 1 ts 3  exchange->core  ********123 -> 999  active    age 1m02s   peer 192.0.2.10:5060  [c-0012]

peer core 192.0.2.10:5060 udp  UP    rtt 4.2 ms    (up 3h12m, 1 ping failures, 0 call failures)
peer core 192.0.2.11:5060 udp  DOWN  rtt -         (down 1m15s, 17 ping failures, 2 call failures)
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn json_sections_from_snapshots() {
        let v = spans_json(&spans(), &dchannels());
        assert_eq!(v[0]["state"], "ok");
        assert_eq!(v[0]["dchannel"]["q921_state"], "multiple-frame established");
        assert_eq!(v[0]["counters"]["crc4_errors"], 40);
        assert_eq!(v[0]["interval"]["es"], 1);
        assert_eq!(v[0]["interval"]["far_es"], 3);
        assert_eq!(v[0]["interval"]["far_ses"], 1);
        assert_eq!(v[0]["counters"]["far_es"], 6);
        assert_eq!(v[0]["counters"]["far_ses"], 2);
        assert_eq!(v[0]["counters"]["far_uas"], 15);
        assert_eq!(v[0]["far_unavailable"], false);
        assert_eq!(v[1]["far_unavailable"], true);
        assert_eq!(v[1]["counters"]["far_uas"], 10);
        assert_eq!(v[1]["state"], "red");
        assert_eq!(v[1]["alarms"], json!(["LOS", "LOF"]));
        assert_eq!(v[1]["dchannel"]["up"], false);
        let p = peers_json(&peers());
        assert_eq!(p[0]["rtt_ms"], 4.2);
        assert_eq!(p[1]["state"], "down");
        assert!(p[1]["rtt_ms"].is_null());
        // A span known only to its D-channel still shows.
        let v = spans_json(&[], &dchannels());
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert!(v[0]["state"].is_null());
    }
}
