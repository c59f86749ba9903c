//! Prometheus collectors for each layer's telemetry (issue 8 §2).
//!
//! # Contract
//!
//! Every `collect_*` function takes a plain snapshot (a copy the caller made
//! from a `watch` channel, a table of atomics or a value the owning task
//! published) and writes whole families into an [`Exposition`]: each family
//! is written once with every span / peer / transport in it, because the text
//! format wants a family's samples together. None of them takes a lock; the
//! caller copies its snapshot out of whatever lock guards it *before*
//! calling (`rx.borrow().clone()`, never a guard held across the render).
//!
//! | layer | snapshot | collector |
//! |---|---|---|
//! | gateway | `ops::gateway::GatewayState` (its `watch`) | [`collect_gateway`] |
//! | line (per span) | [`SpanSnapshot`] (from `RawSpan`, `Copy`) | [`collect_spans`] |
//! | D-channel | `isdn::task::DChannelStatus` (its `watch`) | [`collect_dchannels`] |
//! | SIP transports | `sip::transport::Counters` (atomics) | [`collect_sip_transport`] |
//! | SIP peers | [`PeerRow`]s from `sip::peer::PeerTable::peers()` | [`collect_peers`] |
//! | SIP UA / transactions | `sip::ua::UaStats`, `sip::endpoint::EndpointStats` | [`collect_sip_stats`] |
//! | SIP messages | [`SipMessageMetrics`] (atomics the SIP task bumps) | [`SipMessageMetrics::collect`] |
//! | media channels | `media::engine::StatsTable` (atomics) | [`collect_media`] |
//! | media loops | [`MediaLoopMetrics`] (atomics the media thread bumps) | [`collect_media_loops`] |
//! | calls | [`CallMetrics`] (atomics the call module bumps) | [`CallMetrics::collect`] |
//!
//! Names follow the house rules ([`super::metrics`]): `tdmgw_` prefix, base
//! units (seconds, bytes) last, `_total` on counters only, HELP on every
//! family. Labels: `span="1"`, `transport="udp"`, `group`/`peer` (address)
//! for core peers, `thread` for media threads, `direction` for calls
//! (`exchange_to_core`, `core_to_exchange`) and SIP messages (`in`, `out`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::gateway::GatewayState;
use super::metrics::{AtomicHistogram, Exposition, Kind};
use crate::call::cdr::Direction;
use crate::isdn::q921::{self, MdlError};
use crate::isdn::q931::ChannelState;
use crate::isdn::task::DChannelStatus;
use crate::line::e1_alarm::{Alarm, Alarms};
use crate::line::e1_perf::PerfCounts;
use crate::line::span::{RawSpan, SpanCounters};
use crate::media::engine::{LoopCounters, MediaLoop, StatsTable};
use crate::media::rtp::RtpError;
use crate::sip::endpoint::EndpointStats;
use crate::sip::header::Method;
use crate::sip::peer::{PeerState, PeerTable};
use crate::sip::transport::{Counters as TransportCountersAll, DropReason, Transport};
use crate::sip::ua::UaStats;

/// G.711 sampling rate: media counters in samples become seconds.
const SAMPLES_PER_SECOND: f64 = 8000.0;

/// A family written from one field of a snapshot: name, HELP, accessor.
type FieldOf<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Writes one family with one sample per row, labelled by `label`.
fn rows<T>(
    out: &mut Exposition,
    name: &str,
    help: &str,
    kind: Kind,
    label: &str,
    rows: &[(String, T)],
    value: impl Fn(&T) -> f64,
) {
    out.family(name, help, kind);
    for (l, t) in rows {
        out.sample(name, &[(label, l)], value(t));
    }
}

// ---------------------------------------------------------------- gateway

/// The gateway's state as a state set: `tdmgw_gateway_state{state}` is 1
/// for the state it is in (`GatewayState::LABELS`), 0 for the others.
pub fn collect_gateway(out: &mut Exposition, g: &GatewayState) {
    let name = "tdmgw_gateway_state";
    out.family(
        name,
        "The gateway (media thread, D-channel, SIP and call tasks): 1 for the state it is in (running; failed to start; stopped: a part ended; starting; not_configured: operations only).",
        Kind::Gauge,
    );
    for label in GatewayState::LABELS {
        let v = f64::from(u8::from(g.label() == label));
        out.sample(name, &[("state", label)], v);
    }
}

// ---------------------------------------------------------------- spans

/// What telemetry reads of one span's line layer: `Copy`, built without
/// allocating ([`SpanSnapshot::of`]), so the media thread can publish it
/// (e.g. through a ring) as often as it likes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanSnapshot {
    /// The span number as configured (from 1).
    pub span: u16,
    /// Debounced alarms in force.
    pub alarms: Alarms,
    pub counters: SpanCounters,
    /// The current 15-minute interval (G.826 counts).
    pub current: PerfCounts,
    /// Since start.
    pub total: PerfCounts,
    /// G.826 Annex A unavailable state.
    pub unavailable: bool,
    /// The far end in unavailable time, as its E bits and RAI tell (its
    /// own Annex A run; `far_*` of `current` and `total` are its seconds).
    pub far_unavailable: bool,
}

impl SpanSnapshot {
    /// Copies a span's telemetry; no allocation.
    pub fn of(span: &RawSpan) -> SpanSnapshot {
        SpanSnapshot {
            span: span.config().span_id,
            alarms: span.alarms(),
            counters: span.counters(),
            current: *span.perf().current(),
            total: *span.perf().total(),
            unavailable: span.perf().unavailable(),
            far_unavailable: span.perf().far_unavailable(),
        }
    }
}

/// The line layer of every span: alarms (0/1 per alarm), G.826 counters for
/// the current interval and since start, framer and HDLC counters.
pub fn collect_spans(out: &mut Exposition, spans: &[SpanSnapshot]) {
    let r: Vec<(String, &SpanSnapshot)> = spans.iter().map(|s| (s.span.to_string(), s)).collect();
    let name = "tdmgw_span_alarm";
    out.family(
        name,
        "E1 alarm in force on a span (1) or not (0): LOS, LOF, LOMF (red), AIS (blue), RAI (yellow).",
        Kind::Gauge,
    );
    for (span, s) in &r {
        for a in Alarm::ALL {
            let v = f64::from(u8::from(s.alarms.contains(a)));
            out.sample(name, &[("span", span), ("alarm", a.name())], v);
        }
    }
    rows(
        out,
        "tdmgw_span_unavailable",
        "Span in G.826 unavailable time (1) or available (0).",
        Kind::Gauge,
        "span",
        &r,
        |s| f64::from(u8::from(s.unavailable)),
    );
    let totals: [FieldOf<PerfCounts, u64>; 6] = [
        (
            "tdmgw_span_fas_errors_total",
            "Errored frame alignment signals received (G.706 §4.1).",
            |p| p.fas_errors,
        ),
        (
            "tdmgw_span_crc4_blocks_total",
            "CRC-4 sub-multiframes checked.",
            |p| p.crc4_blocks,
        ),
        (
            "tdmgw_span_crc4_errors_total",
            "CRC-4 sub-multiframes in error (G.706 §4.3).",
            |p| p.crc4_errors,
        ),
        (
            "tdmgw_span_ebit_errors_total",
            "E bits received as 0: far-end block errors (G.704 §2.3.3.4).",
            |p| p.febe,
        ),
        (
            "tdmgw_span_slips_total",
            "Controlled slips on the span.",
            |p| p.slips,
        ),
        (
            "tdmgw_span_alignment_losses_total",
            "Frame alignment given up (G.706 §4.1.1, §4.2, §4.3.2).",
            |p| p.alignment_losses,
        ),
    ];
    for (name, help, f) in totals {
        rows(out, name, help, Kind::Counter, "span", &r, |s| {
            f(&s.total) as f64
        });
    }
    let seconds: [FieldOf<PerfCounts, u32>; 3] = [
        (
            "errored_seconds",
            "G.826 errored seconds (SES included), available time only",
            |p| p.es,
        ),
        (
            "severely_errored_seconds",
            "G.826 severely errored seconds, available time only",
            |p| p.ses,
        ),
        ("unavailable_seconds", "G.826 unavailable seconds", |p| {
            p.uas
        }),
    ];
    for (base, help, f) in seconds {
        rows(
            out,
            &format!("tdmgw_span_{base}_total"),
            &format!("{help}, since start."),
            Kind::Counter,
            "span",
            &r,
            |s| f64::from(f(&s.total)),
        );
        rows(
            out,
            &format!("tdmgw_span_interval_{base}"),
            &format!("{help}, in the current 15-minute interval (may lag by up to 10 s)."),
            Kind::Gauge,
            "span",
            &r,
            |s| f64::from(f(&s.current)),
        );
    }
    rows(
        out,
        "tdmgw_span_interval_elapsed_seconds",
        "Line time elapsed in the current 15-minute interval.",
        Kind::Gauge,
        "span",
        &r,
        |s| f64::from(s.current.seconds),
    );
    collect_span_far_end(out, &r);
    collect_span_counters(out, &r);
}

/// The far end's G.826 view of our transmit direction, from the E bits
/// (FEBE) and RAI it sends: its own families rather than an `end` label on
/// the near-end ones, so that a sum over a family stays meaningful and the
/// near-end series keep their labels. 0 on DAHDI spans.
fn collect_span_far_end(out: &mut Exposition, r: &[(String, &SpanSnapshot)]) {
    rows(
        out,
        "tdmgw_span_far_end_unavailable",
        "The far end in G.826 unavailable time as its E bits and RAI tell (1) or available (0).",
        Kind::Gauge,
        "span",
        r,
        |s| f64::from(u8::from(s.far_unavailable)),
    );
    let seconds: [FieldOf<PerfCounts, u32>; 3] = [
        (
            "errored_seconds",
            "Far-end G.826 errored seconds (FEBE or RAI received; SES included), far-end available time only",
            |p| p.far_es,
        ),
        (
            "severely_errored_seconds",
            "Far-end G.826 severely errored seconds (RAI or many FEBE received), far-end available time only",
            |p| p.far_ses,
        ),
        (
            "unavailable_seconds",
            "Far-end G.826 unavailable seconds",
            |p| p.far_uas,
        ),
    ];
    for (base, help, f) in seconds {
        rows(
            out,
            &format!("tdmgw_span_far_end_{base}_total"),
            &format!("{help}, since start."),
            Kind::Counter,
            "span",
            r,
            |s| f64::from(f(&s.total)),
        );
        rows(
            out,
            &format!("tdmgw_span_far_end_interval_{base}"),
            &format!("{help}, in the current 15-minute interval (may lag by up to 10 s)."),
            Kind::Gauge,
            "span",
            r,
            |s| f64::from(f(&s.current)),
        );
    }
}

fn collect_span_counters(out: &mut Exposition, r: &[(String, &SpanSnapshot)]) {
    let simple: [FieldOf<SpanCounters, u64>; 8] = [
        (
            "tdmgw_span_frames_received_total",
            "E1 frame periods received.",
            |c| c.frame_periods,
        ),
        ("tdmgw_span_frames_sent_total", "E1 frames sent.", |c| {
            c.frames_sent
        }),
        (
            "tdmgw_span_multiframe_losses_total",
            "Losses of CRC-4 multiframe alignment (G.706 §4.2).",
            |c| c.deframer.multiframe_losses,
        ),
        (
            "tdmgw_span_hdlc_frames_received_total",
            "Good D-channel (TS16 HDLC) frames received.",
            |c| c.hdlc_rx.frames,
        ),
        (
            "tdmgw_span_hdlc_frames_sent_total",
            "D-channel (TS16 HDLC) frames sent.",
            |c| c.hdlc_tx_frames,
        ),
        (
            "tdmgw_span_dchannel_ring_overflows_total",
            "Received D-channel frames dropped on a full ring to the control plane.",
            |c| c.dchannel_rx_overflows,
        ),
        (
            "tdmgw_span_dchannel_tx_queue_full_total",
            "D-channel frames refused by a full transmit queue.",
            |c| c.dchannel_tx_queue_full,
        ),
        (
            "tdmgw_span_events_dropped_total",
            "Line events (alarm raise/clear) dropped on a full event ring.",
            |c| c.events_dropped,
        ),
    ];
    for (name, help, f) in simple {
        rows(out, name, help, Kind::Counter, "span", r, |s| {
            f(&s.counters) as f64
        });
    }
    let name = "tdmgw_span_hdlc_errors_total";
    out.family(
        name,
        "D-channel (TS16 HDLC) frames discarded, by reason.",
        Kind::Counter,
    );
    for (span, s) in r {
        let h = &s.counters.hdlc_rx;
        for (kind, v) in [
            ("fcs", h.fcs_errors),
            ("abort", h.aborts),
            ("too_long", h.too_long),
            ("short", h.short),
            ("misaligned", h.misaligned),
        ] {
            out.sample(name, &[("span", span), ("reason", kind)], v as f64);
        }
    }
}

// ---------------------------------------------------------------- D-channel

/// The name of a Q.921 state as the NOC reads it (Q.921 §5 state names).
pub fn q921_state_name(s: q921::State) -> &'static str {
    match s {
        q921::State::TeiAssigned => "TEI assigned",
        q921::State::AwaitingEstablishment => "awaiting establishment",
        q921::State::AwaitingRelease => "awaiting release",
        q921::State::MultipleFrameEstablished => "multiple-frame established",
        q921::State::TimerRecovery => "timer recovery",
    }
}

const Q921_STATES: [(q921::State, &str); 5] = [
    (q921::State::TeiAssigned, "tei_assigned"),
    (q921::State::AwaitingEstablishment, "awaiting_establishment"),
    (q921::State::AwaitingRelease, "awaiting_release"),
    (
        q921::State::MultipleFrameEstablished,
        "multiple_frame_established",
    ),
    (q921::State::TimerRecovery, "timer_recovery"),
];

/// Label value of a B-channel state.
pub fn channel_state_label(s: ChannelState) -> &'static str {
    match s {
        ChannelState::Idle => "idle",
        ChannelState::Reserved => "reserved",
        ChannelState::Busy => "busy",
        ChannelState::Restarting => "restarting",
        ChannelState::OutOfService => "out_of_service",
    }
}

const CHANNEL_STATES: [ChannelState; 5] = [
    ChannelState::Idle,
    ChannelState::Reserved,
    ChannelState::Busy,
    ChannelState::Restarting,
    ChannelState::OutOfService,
];

/// Every span's D-channel: link up, Q.921 state (a state set), calls,
/// B-channels by state, Q.921 / Q.931 / glue counters.
pub fn collect_dchannels(out: &mut Exposition, dchannels: &[DChannelStatus]) {
    let r: Vec<(String, &DChannelStatus)> =
        dchannels.iter().map(|d| (d.span.to_string(), d)).collect();
    rows(
        out,
        "tdmgw_dchannel_up",
        "D-channel data link established (Q.921 multiple-frame operation) (1) or not (0).",
        Kind::Gauge,
        "span",
        &r,
        |d| f64::from(u8::from(d.link_up)),
    );
    let name = "tdmgw_dchannel_q921_state";
    out.family(
        name,
        "Q.921 data link state of the span's D-channel: 1 for the state it is in.",
        Kind::Gauge,
    );
    for (span, d) in &r {
        for (st, label) in Q921_STATES {
            let v = f64::from(u8::from(d.q921_state == st));
            out.sample(name, &[("span", span), ("state", label)], v);
        }
    }
    rows(
        out,
        "tdmgw_dchannel_calls",
        "Q.931 calls not in the null state on the span.",
        Kind::Gauge,
        "span",
        &r,
        |d| d.calls as f64,
    );
    let name = "tdmgw_channels";
    out.family(name, "B-channels of the span by state.", Kind::Gauge);
    for (span, d) in &r {
        let mut n = [0u32; CHANNEL_STATES.len()];
        for (_, st) in d.channels.iter() {
            if let Some(i) = CHANNEL_STATES.iter().position(|s| *s == st) {
                n[i] += 1;
            }
        }
        for (st, count) in CHANNEL_STATES.iter().zip(n) {
            let labels = [("span", span.as_str()), ("state", channel_state_label(*st))];
            out.sample(name, &labels, f64::from(count));
        }
    }
    collect_q921_counters(out, &r);
    collect_q931_counters(out, &r);
}

fn collect_q921_counters(out: &mut Exposition, r: &[(String, &DChannelStatus)]) {
    let simple: [FieldOf<q921::Counters, u64>; 9] = [
        (
            "tdmgw_q921_frames_received_total",
            "Q.921 frames received.",
            |c| c.frames_in,
        ),
        ("tdmgw_q921_frames_sent_total", "Q.921 frames sent.", |c| {
            c.frames_out
        }),
        (
            "tdmgw_q921_i_frames_sent_total",
            "Q.921 I frames sent (first transmissions).",
            |c| c.i_frames_sent,
        ),
        (
            "tdmgw_q921_i_frames_retransmitted_total",
            "Q.921 I frames retransmitted.",
            |c| c.i_frames_retransmitted,
        ),
        (
            "tdmgw_q921_i_frames_received_total",
            "Q.921 I frames received in sequence.",
            |c| c.i_frames_received,
        ),
        (
            "tdmgw_q921_rej_sent_total",
            "Q.921 REJ frames sent (out-of-sequence I frames).",
            |c| c.rej_sent,
        ),
        (
            "tdmgw_q921_rnr_received_total",
            "Q.921 RNR frames received (peer busy).",
            |c| c.rnr_received,
        ),
        (
            "tdmgw_q921_establishments_total",
            "Q.921 multiple-frame establishments.",
            |c| c.establishments,
        ),
        (
            "tdmgw_q921_discarded_requests_total",
            "Layer 3 requests Q.921 discarded (link down or releasing).",
            |c| c.discarded_requests,
        ),
    ];
    for (name, help, f) in simple {
        rows(out, name, help, Kind::Counter, "span", r, |d| {
            f(&d.q921) as f64
        });
    }
    let name = "tdmgw_q921_frames_discarded_total";
    out.family(
        name,
        "Q.921 frames received and discarded, by reason (§2.9 invalid, for another SAPI/TEI, not allowed in the state, out of sequence).",
        Kind::Counter,
    );
    for (span, d) in r {
        let c = &d.q921;
        for (reason, v) in [
            ("invalid", c.invalid_frames),
            ("ignored", c.ignored_frames),
            ("unexpected", c.unexpected_frames),
            ("out_of_sequence", c.i_frames_out_of_sequence),
        ] {
            out.sample(name, &[("span", span), ("reason", reason)], v as f64);
        }
    }
    let name = "tdmgw_q921_timer_expiries_total";
    out.family(name, "Q.921 timer expiries, by timer.", Kind::Counter);
    for (span, d) in r {
        for (timer, v) in [
            ("T200", d.q921.t200_expiries),
            ("T203", d.q921.t203_expiries),
        ] {
            out.sample(name, &[("span", span), ("timer", timer)], v as f64);
        }
    }
    let name = "tdmgw_q921_mdl_errors_total";
    out.family(
        name,
        "Q.921 MDL-ERROR indications, by Appendix II code (A..O).",
        Kind::Counter,
    );
    for (span, d) in r {
        for e in MdlError::ALL {
            let code = format!("{e:?}");
            out.sample(
                name,
                &[("span", span), ("code", &code)],
                d.q921.mdl(e) as f64,
            );
        }
    }
}

fn collect_q931_counters(out: &mut Exposition, r: &[(String, &DChannelStatus)]) {
    let name = "tdmgw_q931_errors_total";
    out.family(
        name,
        "Q.931 messages from the peer that were in error, by kind (header, rejected, reported with STATUS, unknown call reference, unexpected in the call state, call queue overflow).",
        Kind::Counter,
    );
    for (span, d) in r {
        let c = &d.q931;
        for (kind, v) in [
            ("header", c.header_errors),
            ("rejected", c.rejected),
            ("reported", c.reported),
            ("unknown_call_reference", c.unknown_call_reference),
            ("unexpected_in_state", c.unexpected_in_state),
            ("queue_overflow", c.queue_overflow),
        ] {
            out.sample(name, &[("span", span), ("kind", kind)], v as f64);
        }
    }
    rows(
        out,
        "tdmgw_dchannel_data_refused_total",
        "Q.931 messages Q.921 refused (I queue full or link releasing); Q.931 timers recover.",
        Kind::Counter,
        "span",
        r,
        |d| d.dchannel.data_refused as f64,
    );
    rows(
        out,
        "tdmgw_dchannel_reestablishments_total",
        "Q.921 re-establishments without a release.",
        Kind::Counter,
        "span",
        r,
        |d| d.dchannel.reestablishments as f64,
    );
}

// ---------------------------------------------------------------- SIP

/// Every SIP transport: messages received, sent and dropped by reason,
/// connections and keep-alives.
pub fn collect_sip_transport(out: &mut Exposition, c: &TransportCountersAll) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let r: Vec<(String, Transport)> = Transport::ALL
        .iter()
        .map(|t| (t.name().to_string(), *t))
        .collect();
    type Field = fn(&crate::sip::transport::TransportCounters) -> &AtomicU64;
    let simple: [(&str, &str, Field); 12] = [
        (
            "tdmgw_sip_messages_received_total",
            "SIP messages received and handed up.",
            |t| &t.received,
        ),
        (
            "tdmgw_sip_messages_sent_total",
            "SIP messages written to a socket.",
            |t| &t.sent,
        ),
        (
            "tdmgw_sip_oversize_datagrams_total",
            "SIP datagrams larger than the message limit (answered 513 when possible).",
            |t| &t.oversize,
        ),
        (
            "tdmgw_sip_connections_opened_total",
            "SIP connections opened (accepted or connected).",
            |t| &t.connections_opened,
        ),
        (
            "tdmgw_sip_connections_closed_total",
            "SIP connections closed.",
            |t| &t.connections_closed,
        ),
        (
            "tdmgw_sip_connections_reaped_total",
            "SIP connections closed for idleness.",
            |t| &t.connections_reaped,
        ),
        (
            "tdmgw_sip_connect_failures_total",
            "SIP connection attempts that failed or timed out.",
            |t| &t.connect_failures,
        ),
        (
            "tdmgw_sip_tls_handshake_failures_total",
            "TLS handshakes that failed.",
            |t| &t.tls_handshake_failures,
        ),
        (
            "tdmgw_sip_keepalive_pings_sent_total",
            "RFC 5626 CRLF keep-alive pings sent.",
            |t| &t.keepalive_pings_sent,
        ),
        (
            "tdmgw_sip_keepalive_pongs_received_total",
            "RFC 5626 CRLF keep-alive pongs received.",
            |t| &t.keepalive_pongs_received,
        ),
        (
            "tdmgw_sip_keepalive_pings_answered_total",
            "RFC 5626 keep-alive pings from the other side answered.",
            |t| &t.keepalive_pings_answered,
        ),
        (
            "tdmgw_sip_keepalive_failures_total",
            "RFC 5626 keep-alives unanswered in time (connection closed).",
            |t| &t.keepalive_failures,
        ),
    ];
    for (name, help, f) in simple {
        rows(out, name, help, Kind::Counter, "transport", &r, |t| {
            load(f(c.get(*t)))
        });
    }
    rows(
        out,
        "tdmgw_sip_connections_open",
        "SIP connections open now.",
        Kind::Gauge,
        "transport",
        &r,
        |t| {
            let t = c.get(*t);
            let opened = t.connections_opened.load(Ordering::Relaxed);
            opened.saturating_sub(t.connections_closed.load(Ordering::Relaxed)) as f64
        },
    );
    let name = "tdmgw_sip_messages_dropped_total";
    out.family(name, "SIP messages dropped, by reason.", Kind::Counter);
    for (tname, t) in &r {
        for reason in DropReason::ALL {
            let v = c.get(*t).dropped(reason) as f64;
            out.sample(name, &[("transport", tname), ("reason", reason.name())], v);
        }
    }
}

/// One core peer as telemetry and `tdmgw status` see it (copied from
/// [`PeerTable::peers`] by [`PeerRow::all`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// The peer group's name (`[[peer_group]] name`).
    pub group: String,
    /// `192.0.2.10:5060`.
    pub address: String,
    pub transport: Transport,
    pub up: bool,
    /// Time in the current state.
    pub in_state: Duration,
    /// Smoothed OPTIONS round trip (RFC 6298 SRTT), if any ping came back.
    pub rtt: Option<Duration>,
    pub pings_sent: u64,
    pub ping_failures: u64,
    pub call_failures: u64,
}

impl PeerRow {
    /// Every peer of the table, in table order.
    pub fn all(table: &PeerTable, now: std::time::Instant) -> Vec<PeerRow> {
        table
            .peers()
            .map(|(_, g, p, s)| PeerRow {
                group: table.group(g).map_or_else(String::new, |g| g.name.clone()),
                address: p.address.to_string(),
                transport: p.transport,
                up: s.state == PeerState::Up,
                in_state: now.saturating_duration_since(s.since),
                rtt: s.srtt,
                pings_sent: s.pings_sent,
                ping_failures: s.ping_failures,
                call_failures: s.call_failures,
            })
            .collect()
    }
}

/// What the SIP task publishes for telemetry and `tdmgw status` (through a
/// `tokio::sync::watch`, replaced after each peer change or ping result and
/// at least every few seconds): its peers, the counters of its user agent
/// and transaction layer, the sizes of its tables and its bound listeners.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SipSnapshot {
    pub peers: Vec<PeerRow>,
    pub ua: UaStats,
    pub endpoint: EndpointStats,
    /// SIP calls not yet ended (the call module's; a leak shows here).
    pub calls: usize,
    /// Dialogs the user agent holds (an ended call's dialog stays until its
    /// transactions end: RFC 3261 Timer J/K).
    pub dialogs: usize,
    pub transactions: usize,
    /// The listeners actually bound (a configured port 0 is resolved).
    pub listeners: Vec<(Transport, std::net::SocketAddr)>,
}

/// The SIP task's tables: calls, dialogs and transactions in progress.
pub fn collect_sip_tables(out: &mut Exposition, s: &SipSnapshot) {
    out.single(
        "tdmgw_sip_calls",
        "SIP calls not yet ended.",
        Kind::Gauge,
        s.calls as f64,
    );
    out.single(
        "tdmgw_sip_dialogs",
        "SIP dialogs held by the user agent (an ended call's dialog stays until its transactions end).",
        Kind::Gauge,
        s.dialogs as f64,
    );
    out.single(
        "tdmgw_sip_transactions",
        "SIP transactions in progress.",
        Kind::Gauge,
        s.transactions as f64,
    );
}

/// Core peers: up/down, OPTIONS round trip, ping and call failure counters.
pub fn collect_peers(out: &mut Exposition, peers: &[PeerRow]) {
    let labelled = |out: &mut Exposition,
                    name: &str,
                    help: &str,
                    kind: Kind,
                    v: &dyn Fn(&PeerRow) -> Option<f64>| {
        out.family(name, help, kind);
        for p in peers {
            if let Some(v) = v(p) {
                let labels = [
                    ("group", p.group.as_str()),
                    ("peer", p.address.as_str()),
                    ("transport", p.transport.name()),
                ];
                out.sample(name, &labels, v);
            }
        }
    };
    labelled(
        out,
        "tdmgw_sip_peer_up",
        "Core SIP peer up (1) or down (0) by its OPTIONS pings and call outcomes.",
        Kind::Gauge,
        &|p| Some(f64::from(u8::from(p.up))),
    );
    labelled(
        out,
        "tdmgw_sip_peer_rtt_seconds",
        "Smoothed OPTIONS round trip to the core peer (RFC 6298 SRTT); absent before the first answer.",
        Kind::Gauge,
        &|p| p.rtt.map(|d| d.as_secs_f64()),
    );
    labelled(
        out,
        "tdmgw_sip_peer_state_duration_seconds",
        "Time the core peer has been in its current state (up or down).",
        Kind::Gauge,
        &|p| Some(p.in_state.as_secs_f64()),
    );
    labelled(
        out,
        "tdmgw_sip_peer_pings_sent_total",
        "OPTIONS pings sent to the core peer.",
        Kind::Counter,
        &|p| Some(p.pings_sent as f64),
    );
    labelled(
        out,
        "tdmgw_sip_peer_ping_failures_total",
        "OPTIONS pings to the core peer that failed (timeout, 503, transport error).",
        Kind::Counter,
        &|p| Some(p.ping_failures as f64),
    );
    labelled(
        out,
        "tdmgw_sip_peer_call_failures_total",
        "Calls that failed over from the core peer (timeout, 503, transport error).",
        Kind::Counter,
        &|p| Some(p.call_failures as f64),
    );
}

/// What the user agent and the transaction layer handled by themselves.
pub fn collect_sip_stats(out: &mut Exposition, ua: &UaStats, endpoint: &EndpointStats) {
    let name = "tdmgw_sip_transaction_anomalies_total";
    out.family(
        name,
        "SIP input the transaction layer handled itself, by kind: unparsable answered (400/505/513) or dropped, answered by UAS prechecks (501/405/416/420), stray responses, RFC 2543 branches, unmatched CANCEL.",
        Kind::Counter,
    );
    for (kind, v) in [
        ("unparsable_answered", endpoint.rejected_answered),
        ("unparsable_dropped", endpoint.rejected_dropped),
        ("precheck_answered", endpoint.prechecked),
        ("stray_response", endpoint.stray_responses),
        ("rfc2543_dropped", endpoint.rfc2543_dropped),
        ("cancel_unmatched", endpoint.cancel_unmatched),
    ] {
        out.sample(name, &[("kind", kind)], v as f64);
    }
    out.single(
        "tdmgw_sip_request_retransmissions_total",
        "SIP request retransmissions absorbed by their server transaction.",
        Kind::Counter,
        endpoint.request_retransmissions as f64,
    );
    let name = "tdmgw_sip_dialog_anomalies_total";
    out.family(
        name,
        "SIP dialog-level anomalies, by kind: request outside any dialog (481), 2xx with no call, forked 2xx released, offer rejected (488).",
        Kind::Counter,
    );
    for (kind, v) in [
        ("no_dialog", ua.no_dialog),
        ("stray_2xx", ua.stray_2xx),
        ("fork_released", ua.forks_released),
        ("offer_rejected", ua.offers_rejected),
    ] {
        out.sample(name, &[("kind", kind)], v as f64);
    }
}

/// Which way a SIP message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageDirection {
    /// Received from a peer.
    In,
    /// Sent by us.
    Out,
}

impl MessageDirection {
    fn name(self) -> &'static str {
        match self {
            MessageDirection::In => "in",
            MessageDirection::Out => "out",
        }
    }
}

/// The methods counted by name; anything else is `other` (bounded labels).
const METHODS: [&str; 13] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
];

fn method_index(m: &Method) -> usize {
    METHODS
        .iter()
        .position(|n| *n == m.as_str())
        .unwrap_or(METHODS.len())
}

fn method_label(i: usize) -> &'static str {
    METHODS.get(i).copied().unwrap_or("other")
}

/// SIP requests by method and responses by method and status code, in and
/// out. The SIP task calls [`SipMessageMetrics::request`] and
/// [`SipMessageMetrics::response`] for every message it sends or accepts
/// (after parsing; retransmissions included, as they are on the wire).
/// Requests are relaxed atomics; responses (method × code) go into a small
/// map behind a mutex held for one insert, never across a render.
#[derive(Debug, Default)]
pub struct SipMessageMetrics {
    requests: [[AtomicU64; METHODS.len() + 1]; 2],
    responses: Mutex<BTreeMap<(MessageDirection, usize, u16), u64>>,
}

impl SipMessageMetrics {
    pub fn new() -> SipMessageMetrics {
        SipMessageMetrics::default()
    }

    pub fn request(&self, dir: MessageDirection, method: &Method) {
        self.requests[dir as usize][method_index(method)].fetch_add(1, Ordering::Relaxed);
    }

    /// `code` outside 100..=699 is counted as 0 (cannot happen after parsing).
    pub fn response(&self, dir: MessageDirection, method: &Method, code: u16) {
        let code = if (100..=699).contains(&code) { code } else { 0 };
        let mut m = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((dir, method_index(method), code)).or_default() += 1;
    }

    pub fn collect(&self, out: &mut Exposition) {
        let name = "tdmgw_sip_requests_total";
        out.family(
            name,
            "SIP requests received (in) and sent (out), by method.",
            Kind::Counter,
        );
        for dir in [MessageDirection::In, MessageDirection::Out] {
            for (i, c) in self.requests[dir as usize].iter().enumerate() {
                let labels = [("direction", dir.name()), ("method", method_label(i))];
                out.sample(name, &labels, c.load(Ordering::Relaxed) as f64);
            }
        }
        let responses = self
            .responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let name = "tdmgw_sip_responses_total";
        out.family(
            name,
            "SIP responses received (in) and sent (out), by method (CSeq) and status code.",
            Kind::Counter,
        );
        for ((dir, m, code), n) in responses {
            let code = code.to_string();
            let labels = [
                ("direction", dir.name()),
                ("method", method_label(m)),
                ("code", code.as_str()),
            ];
            out.sample(name, &labels, n as f64);
        }
    }
}

// ---------------------------------------------------------------- media

/// Label of an RTP error, in [`RtpError`] order (`RtpError::X as usize`).
fn rtp_error_label(i: usize) -> &'static str {
    const LABELS: [(RtpError, &str); RtpError::COUNT] = [
        (RtpError::TooShort, "too_short"),
        (RtpError::BadVersion, "bad_version"),
        (RtpError::HeadersTruncated, "headers_truncated"),
        (RtpError::BadPadding, "bad_padding"),
        (RtpError::RtcpOnRtpPort, "rtcp_on_rtp_port"),
        (RtpError::UnknownPayloadType, "unknown_payload_type"),
        (RtpError::EmptyPayload, "empty_payload"),
        (RtpError::TooLong, "too_long"),
        (RtpError::WrongSource, "wrong_source"),
    ];
    LABELS
        .iter()
        .find(|(e, _)| *e as usize == i)
        .map_or("other", |(_, l)| l)
}

/// Per-span sums of the media channels' counters.
#[derive(Debug, Clone, Copy, Default)]
struct MediaSums {
    packets_sent: u64,
    octets_sent: u64,
    packets_received: u64,
    octets_received: u64,
    rtp_errors: [u64; RtpError::COUNT],
    seq_rejected: u64,
    rtp_while_idle: u64,
    duplicates: u64,
    late: u64,
    samples_concealed: u64,
    samples_inserted: u64,
    samples_dropped: u64,
    telephone_event_packets: u64,
    dtmf_digits: u64,
    rtp_timeouts: u64,
    ssrc_changes: u64,
    sessions: u64,
    tx_overruns: u64,
    events_dropped: u64,
    connected: u64,
    jitter_max: u64,
    jitter_sum: u64,
    lost: u64,
    jb_depth_max: u64,
    jb_depth_sum: u64,
}

fn media_sums(tables: &[&StatsTable]) -> Vec<(String, MediaSums)> {
    let mut by_span: BTreeMap<u16, MediaSums> = BTreeMap::new();
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for t in tables {
        for (id, s) in t.ids.iter().zip(t.stats.iter()) {
            let m = by_span.entry(id.span).or_default();
            m.packets_sent += l(&s.packets_sent);
            m.octets_sent += l(&s.octets_sent);
            m.packets_received += l(&s.packets_received);
            m.octets_received += l(&s.octets_received);
            for (sum, e) in m.rtp_errors.iter_mut().zip(s.rtp_errors.iter()) {
                *sum += l(e);
            }
            m.seq_rejected += l(&s.seq_rejected);
            m.rtp_while_idle += l(&s.rtp_while_idle);
            m.duplicates += l(&s.duplicates);
            m.late += l(&s.late);
            m.samples_concealed += l(&s.samples_concealed);
            m.samples_inserted += l(&s.samples_inserted);
            m.samples_dropped += l(&s.samples_dropped);
            m.telephone_event_packets += l(&s.telephone_event_packets);
            m.dtmf_digits += l(&s.dtmf_digits);
            m.rtp_timeouts += l(&s.rtp_timeouts);
            m.ssrc_changes += l(&s.ssrc_changes);
            m.sessions += l(&s.sessions);
            m.tx_overruns += l(&s.tx_overruns);
            m.events_dropped += l(&s.events_dropped);
            m.lost += l(&s.packets_lost);
            if s.connected.load(Ordering::Relaxed) {
                let j = l(&s.jitter_samples);
                m.connected += 1;
                m.jitter_max = m.jitter_max.max(j);
                m.jitter_sum += j;
                let d = l(&s.jitter_buffer_depth_samples);
                m.jb_depth_max = m.jb_depth_max.max(d);
                m.jb_depth_sum += d;
            }
        }
    }
    by_span
        .into_iter()
        .map(|(span, m)| (span.to_string(), m))
        .collect()
}

/// The media channels of every media thread, summed per span: RTP packets
/// and bytes, discarded by reason, late, duplicates, concealed audio,
/// jitter of the connected channels, DTMF, timeouts. Per-channel series are
/// left out on purpose (30 per span × 20 families); `tdmgw status` and the
/// CDRs carry per-call quality.
pub fn collect_media(out: &mut Exposition, tables: &[&StatsTable]) {
    let r = media_sums(tables);
    let counters: [FieldOf<MediaSums, f64>; 15] = [
        ("tdmgw_rtp_packets_sent_total", "RTP packets sent.", |m| {
            m.packets_sent as f64
        }),
        (
            "tdmgw_rtp_packets_lost_total",
            "RTP packets lost (RFC 3550 A.3 expected minus received, per session, never decreasing).",
            |m| m.lost as f64,
        ),
        (
            "tdmgw_rtp_sent_bytes_total",
            "RTP payload and header octets sent.",
            |m| m.octets_sent as f64,
        ),
        (
            "tdmgw_rtp_packets_received_total",
            "RTP packets received and accepted.",
            |m| m.packets_received as f64,
        ),
        (
            "tdmgw_rtp_received_bytes_total",
            "RTP octets received and accepted.",
            |m| m.octets_received as f64,
        ),
        (
            "tdmgw_rtp_packets_late_total",
            "RTP packets that arrived after their playout time (discarded).",
            |m| m.late as f64,
        ),
        (
            "tdmgw_rtp_concealed_seconds_total",
            "Audio played out with no packet for it, concealed by PLC (G.711 Appendix I).",
            |m| m.samples_concealed as f64 / SAMPLES_PER_SECOND,
        ),
        (
            "tdmgw_jitter_buffer_inserted_seconds_total",
            "Audio repeated by the jitter buffer to let its depth grow.",
            |m| m.samples_inserted as f64 / SAMPLES_PER_SECOND,
        ),
        (
            "tdmgw_jitter_buffer_dropped_seconds_total",
            "Audio skipped by the jitter buffer to let its depth shrink.",
            |m| m.samples_dropped as f64 / SAMPLES_PER_SECOND,
        ),
        (
            "tdmgw_rtp_telephone_event_packets_total",
            "RFC 4733 telephone-event packets received.",
            |m| m.telephone_event_packets as f64,
        ),
        (
            "tdmgw_dtmf_digits_total",
            "DTMF digits detected or received.",
            |m| m.dtmf_digits as f64,
        ),
        (
            "tdmgw_rtp_timeouts_total",
            "RTP sessions that went silent past the timeout.",
            |m| m.rtp_timeouts as f64,
        ),
        (
            "tdmgw_rtp_ssrc_changes_total",
            "Changes of the far end's SSRC.",
            |m| m.ssrc_changes as f64,
        ),
        ("tdmgw_rtp_sessions_total", "RTP sessions started.", |m| {
            m.sessions as f64
        }),
        (
            "tdmgw_rtp_tx_overruns_total",
            "RTP packets built before the previous one was sent (the earlier one lost).",
            |m| m.tx_overruns as f64,
        ),
    ];
    for (name, help, f) in counters {
        rows(out, name, help, Kind::Counter, "span", &r, f);
    }
    rows(
        out,
        "tdmgw_media_channel_events_dropped_total",
        "Channel events lost to a full per-channel queue.",
        Kind::Counter,
        "span",
        &r,
        |m| m.events_dropped as f64,
    );
    let name = "tdmgw_rtp_packets_discarded_total";
    out.family(
        name,
        "RTP datagrams discarded, by reason (malformed kinds, wrong source, RFC 3550 A.1 sequence probation, while idle, duplicate).",
        Kind::Counter,
    );
    for (span, m) in &r {
        for (i, v) in m.rtp_errors.iter().enumerate() {
            out.sample(
                name,
                &[("span", span), ("reason", rtp_error_label(i))],
                *v as f64,
            );
        }
        for (reason, v) in [
            ("sequence", m.seq_rejected),
            ("while_idle", m.rtp_while_idle),
            ("duplicate", m.duplicates),
        ] {
            out.sample(name, &[("span", span), ("reason", reason)], v as f64);
        }
    }
    rows(
        out,
        "tdmgw_rtp_sessions_active",
        "B-channels with an RTP session up.",
        Kind::Gauge,
        "span",
        &r,
        |m| m.connected as f64,
    );
    rows(
        out,
        "tdmgw_rtp_jitter_max_seconds",
        "Largest RFC 3550 A.8 interarrival jitter among the span's connected channels.",
        Kind::Gauge,
        "span",
        &r,
        |m| m.jitter_max as f64 / SAMPLES_PER_SECOND,
    );
    rows(
        out,
        "tdmgw_rtp_jitter_mean_seconds",
        "Mean RFC 3550 A.8 interarrival jitter of the span's connected channels (0 with none).",
        Kind::Gauge,
        "span",
        &r,
        |m| {
            if m.connected == 0 {
                0.0
            } else {
                m.jitter_sum as f64 / m.connected as f64 / SAMPLES_PER_SECOND
            }
        },
    );
    rows(
        out,
        "tdmgw_jitter_buffer_depth_max_seconds",
        "Deepest jitter buffer (measured playout depth) among the span's connected channels.",
        Kind::Gauge,
        "span",
        &r,
        |m| m.jb_depth_max as f64 / SAMPLES_PER_SECOND,
    );
    rows(
        out,
        "tdmgw_jitter_buffer_depth_mean_seconds",
        "Mean jitter buffer depth (measured playout depth) of the span's connected channels (0 with none).",
        Kind::Gauge,
        "span",
        &r,
        |m| {
            if m.connected == 0 {
                0.0
            } else {
                m.jb_depth_sum as f64 / m.connected as f64 / SAMPLES_PER_SECOND
            }
        },
    );
}

/// Media loop turn durations, in microseconds: 50 µs .. 50 ms.
pub static LOOP_DURATION_BOUNDS_US: [u64; 12] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
];

/// Turns between two copies of a media loop's counters into its metrics.
pub const LOOP_PUBLISH_EVERY_TURNS: u64 = 256;

/// A turn longer than this is an overrun unless the thread says otherwise:
/// the line delivers a block of frames every millisecond, and a turn of
/// 2 ms means a block waited a whole extra period.
pub const LOOP_OVERRUN_DEFAULT_US: u64 = 2_000;

/// What one media thread publishes for telemetry: turn durations, overruns,
/// its [`LoopCounters`] and its rings' overflow counts. Relaxed atomics; the
/// media thread updates them without allocating or locking.
#[derive(Debug)]
pub struct MediaLoopMetrics {
    /// The thread's name (`media-0`), the `thread` label.
    pub thread: String,
    overrun_us: u64,
    duration: AtomicHistogram,
    overruns: AtomicU64,
    turns: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    rtcp_datagrams_in: AtomicU64,
    recv_errors: AtomicU64,
    send_errors: AtomicU64,
    port_unreachable: AtomicU64,
    tdm_frames: AtomicU64,
    command_ring_overflows: AtomicU64,
    event_ring_overflows: AtomicU64,
}

impl MediaLoopMetrics {
    /// `overrun_us`: a turn longer than this counts as an overrun
    /// ([`LOOP_OVERRUN_DEFAULT_US`] unless configured).
    pub fn new(thread: &str, overrun_us: u64) -> MediaLoopMetrics {
        MediaLoopMetrics {
            thread: thread.to_string(),
            overrun_us,
            duration: AtomicHistogram::new(&LOOP_DURATION_BOUNDS_US),
            overruns: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            datagrams_in: AtomicU64::new(0),
            datagrams_out: AtomicU64::new(0),
            rtcp_datagrams_in: AtomicU64::new(0),
            recv_errors: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            port_unreachable: AtomicU64::new(0),
            tdm_frames: AtomicU64::new(0),
            command_ring_overflows: AtomicU64::new(0),
            event_ring_overflows: AtomicU64::new(0),
        }
    }

    /// One turn of the loop took `busy_us` (time spent outside `poll`).
    #[inline]
    pub fn record_turn(&self, busy_us: u64) {
        self.duration.record(busy_us);
        if busy_us > self.overrun_us {
            self.overruns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Copies the loop's own counters (call every few hundred turns).
    pub fn publish(&self, c: &LoopCounters) {
        let s = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        s(&self.turns, c.turns);
        s(&self.datagrams_in, c.datagrams_in);
        s(&self.datagrams_out, c.datagrams_out);
        s(&self.rtcp_datagrams_in, c.rtcp_datagrams_in);
        s(&self.recv_errors, c.recv_errors);
        s(&self.send_errors, c.send_errors);
        s(&self.port_unreachable, c.port_unreachable);
        s(&self.tdm_frames, c.tdm_frames);
    }

    /// On the media thread, once per turn (the `check_in` of
    /// `engine::spawn`): the turn's duration into the histogram, and every
    /// [`LOOP_PUBLISH_EVERY_TURNS`] turns the loop's counters and its
    /// rings' overflows. Relaxed atomics only: no allocation, no lock.
    #[inline]
    pub fn observe_turn(&self, lp: &MediaLoop) {
        self.record_turn(lp.last_turn_busy().as_micros() as u64);
        if lp.counters.turns.is_multiple_of(LOOP_PUBLISH_EVERY_TURNS) {
            self.publish(&lp.counters);
            let (commands, events) = lp.core().ring_overflows();
            self.store_ring_overflows(commands, events);
        }
    }

    /// The overflow counts of the thread's command and event rings
    /// (`Producer::overflows` / `Consumer::overflows`, from either half).
    pub fn store_ring_overflows(&self, commands: u64, events: u64) {
        self.command_ring_overflows
            .store(commands, Ordering::Relaxed);
        self.event_ring_overflows.store(events, Ordering::Relaxed);
    }
}

/// Every media thread's loop metrics.
pub fn collect_media_loops(out: &mut Exposition, loops: &[&MediaLoopMetrics]) {
    let name = "tdmgw_media_loop_duration_seconds";
    out.family(
        name,
        "Time a media loop turn spent working (outside poll).",
        Kind::Histogram,
    );
    for l in loops {
        l.duration.expose(out, name, &[("thread", &l.thread)], 1e6);
    }
    let r: Vec<(String, &&MediaLoopMetrics)> =
        loops.iter().map(|l| (l.thread.clone(), l)).collect();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    type Field = fn(&MediaLoopMetrics) -> &AtomicU64;
    let counters: [(&str, &str, Field); 9] = [
        (
            "tdmgw_media_loop_overruns_total",
            "Media loop turns longer than the overrun threshold.",
            |l| &l.overruns,
        ),
        ("tdmgw_media_loop_turns_total", "Media loop turns.", |l| {
            &l.turns
        }),
        (
            "tdmgw_media_datagrams_received_total",
            "RTP datagrams read by the media thread.",
            |l| &l.datagrams_in,
        ),
        (
            "tdmgw_media_datagrams_sent_total",
            "RTP datagrams sent by the media thread.",
            |l| &l.datagrams_out,
        ),
        (
            "tdmgw_media_rtcp_datagrams_received_total",
            "RTCP datagrams read by the media thread.",
            |l| &l.rtcp_datagrams_in,
        ),
        (
            "tdmgw_media_receive_errors_total",
            "Socket receive errors on media sockets (ICMP errors).",
            |l| &l.recv_errors,
        ),
        (
            "tdmgw_media_send_errors_total",
            "RTP sends the kernel refused (dropped).",
            |l| &l.send_errors,
        ),
        (
            "tdmgw_media_port_unreachable_total",
            "RTP sends and reads on a socket connected to its latched source that found the far end's port closed (ICMP port unreachable; usual for a moment when the far end ends a call first).",
            |l| &l.port_unreachable,
        ),
        (
            "tdmgw_media_tdm_frames_total",
            "E1 frames serviced by the media thread.",
            |l| &l.tdm_frames,
        ),
    ];
    for (name, help, f) in counters {
        rows(out, name, help, Kind::Counter, "thread", &r, |l| load(f(l)));
    }
    let name = "tdmgw_media_ring_overflows_total";
    out.family(
        name,
        "Values dropped on a full ring between the control plane and a media thread.",
        Kind::Counter,
    );
    for (thread, l) in &r {
        for (ring, a) in [
            ("commands", &l.command_ring_overflows),
            ("events", &l.event_ring_overflows),
        ] {
            out.sample(name, &[("thread", thread), ("ring", ring)], load(a));
        }
    }
}

// ---------------------------------------------------------------- calls

/// Call setup latency bounds, in milliseconds: 20 ms .. 30 s.
pub static CALL_SETUP_BOUNDS_MS: [u64; 12] = [
    20, 50, 100, 200, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 30_000,
];

/// Q.850 cause values run 0..=127.
const CAUSES: usize = 128;
const DIRECTIONS: [Direction; 2] = [Direction::ExchangeToCore, Direction::CoreToExchange];

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::ExchangeToCore => "exchange_to_core",
        Direction::CoreToExchange => "core_to_exchange",
    }
}

fn direction_index(d: Direction) -> usize {
    match d {
        Direction::ExchangeToCore => 0,
        Direction::CoreToExchange => 1,
    }
}

/// Call counters the call module bumps (relaxed atomics, no locks):
/// [`CallMetrics::started`] when a call arrives (SETUP from the exchange,
/// INVITE from the core), [`CallMetrics::setup_latency`] once, when the far
/// side first answers the attempt with ALERTING / PROGRESS / CONNECT or
/// 180 / 183 / 200 (the post-dial delay the caller hears), and
/// [`CallMetrics::ended`] once when it is cleared, with whether it was
/// answered and the Q.850 cause it was cleared with.
#[derive(Debug)]
pub struct CallMetrics {
    started: [AtomicU64; 2],
    /// direction × answered × cause.
    ended: Box<[AtomicU64]>,
    setup: [AtomicHistogram; 2],
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics::new()
    }
}

impl CallMetrics {
    pub fn new() -> CallMetrics {
        CallMetrics {
            started: Default::default(),
            ended: (0..2 * 2 * CAUSES).map(|_| AtomicU64::new(0)).collect(),
            setup: [
                AtomicHistogram::new(&CALL_SETUP_BOUNDS_MS),
                AtomicHistogram::new(&CALL_SETUP_BOUNDS_MS),
            ],
        }
    }

    pub fn started(&self, dir: Direction) {
        self.started[direction_index(dir)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn setup_latency(&self, dir: Direction, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.setup[direction_index(dir)].record(ms);
    }

    /// `cause`: the Q.850 cause value the call was cleared with (16 for a
    /// normal clearing); values above 127 are counted as 127 (interworking).
    pub fn ended(&self, dir: Direction, answered: bool, cause: u8) {
        let i = Self::ended_index(direction_index(dir), answered, cause);
        self.ended[i].fetch_add(1, Ordering::Relaxed);
    }

    fn ended_index(dir: usize, answered: bool, cause: u8) -> usize {
        let cause = usize::from(cause).min(CAUSES - 1);
        (dir * 2 + usize::from(answered)) * CAUSES + cause
    }

    /// Calls started and not yet ended, by direction.
    pub fn in_progress(&self, dir: Direction) -> u64 {
        let d = direction_index(dir);
        let started = self.started[d].load(Ordering::Relaxed);
        let ended: u64 = (0..2 * CAUSES)
            .map(|i| self.ended[d * 2 * CAUSES + i].load(Ordering::Relaxed))
            .sum();
        started.saturating_sub(ended)
    }

    pub fn collect(&self, out: &mut Exposition) {
        let name = "tdmgw_calls_started_total";
        out.family(
            name,
            "Calls that arrived at the gateway, by direction.",
            Kind::Counter,
        );
        for d in DIRECTIONS {
            let v = self.started[direction_index(d)].load(Ordering::Relaxed);
            out.sample(name, &[("direction", direction_label(d))], v as f64);
        }
        let name = "tdmgw_calls_in_progress";
        out.family(name, "Calls in progress, by direction.", Kind::Gauge);
        for d in DIRECTIONS {
            out.sample(
                name,
                &[("direction", direction_label(d))],
                self.in_progress(d) as f64,
            );
        }
        let name = "tdmgw_calls_ended_total";
        out.family(
            name,
            "Calls cleared, by direction, result (answered or not) and Q.850 cause (16 normal, 17 busy, 34 no circuit ...).",
            Kind::Counter,
        );
        for d in DIRECTIONS {
            for answered in [true, false] {
                for cause in 0..CAUSES {
                    let i = Self::ended_index(direction_index(d), answered, cause as u8);
                    let v = self.ended[i].load(Ordering::Relaxed);
                    if v == 0 {
                        continue;
                    }
                    let c = cause.to_string();
                    let labels = [
                        ("direction", direction_label(d)),
                        ("result", if answered { "answered" } else { "unanswered" }),
                        ("cause", c.as_str()),
                    ];
                    out.sample(name, &labels, v as f64);
                }
            }
        }
        let name = "tdmgw_call_setup_seconds";
        out.family(
            name,
            "Post-dial delay: from a call's arrival to the far side's first ALERTING/PROGRESS/CONNECT (180/183/200).",
            Kind::Histogram,
        );
        for d in DIRECTIONS {
            self.setup[direction_index(d)].expose(
                out,
                name,
                &[("direction", direction_label(d))],
                1e3,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::channel::ChannelStats;
    use crate::media::control::ChannelId;
    use crate::ops::status_view::tests_support::{dchannels, peer_table, peers, spans};

    /// `promtool check metrics` on `text`: None when promtool is missing.
    fn promtool(text: &str) -> Option<(bool, String)> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut c = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        c.stdin.take()?.write_all(text.as_bytes()).ok()?;
        let out = c.wait_with_output().ok()?;
        Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    fn assert_lint_clean(text: &str) {
        match promtool(text) {
            Some((ok, msg)) => assert!(ok && msg.trim().is_empty(), "promtool:\n{msg}\n{text}"),
            None => eprintln!("SKIPPED promtool: not installed; .ci/run installs prometheus"),
        }
    }

    /// Every family has HELP and TYPE; no family appears twice.
    fn assert_families_whole(text: &str) {
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice:\n{text}");
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "{name} without HELP"
                );
                current = name;
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(current.as_str()),
                    "{line} outside its family {current}"
                );
            }
        }
    }

    fn media_table() -> StatsTable {
        let ids: Vec<ChannelId> = [(1, 1), (1, 2), (2, 1)]
            .iter()
            .map(|&(span, timeslot)| ChannelId { span, timeslot })
            .collect();
        let stats: Vec<ChannelStats> = ids.iter().map(|_| ChannelStats::default()).collect();
        let set = |a: &AtomicU64, v| a.store(v, Ordering::Relaxed);
        set(&stats[0].packets_received, 3000);
        set(&stats[0].octets_received, 3000 * 172);
        set(&stats[0].packets_sent, 3001);
        set(&stats[0].jitter_samples, 80);
        set(&stats[0].samples_concealed, 1600);
        set(&stats[0].late, 4);
        set(&stats[0].rtp_errors[RtpError::WrongSource as usize], 7);
        set(&stats[0].packets_lost, 12);
        set(&stats[0].jitter_buffer_depth_samples, 320);
        stats[0].connected.store(true, Ordering::Relaxed);
        set(&stats[1].jitter_samples, 240);
        set(&stats[1].packets_lost, 3);
        set(&stats[1].jitter_buffer_depth_samples, 480);
        stats[1].connected.store(true, Ordering::Relaxed);
        set(&stats[2].jitter_samples, 999);
        StatsTable {
            ids: ids.into(),
            stats: stats.into(),
        }
    }

    fn render_all() -> String {
        let mut e = Exposition::new();
        collect_gateway(
            &mut e,
            &GatewayState::Failed("span 1: no such device".into()),
        );
        collect_spans(&mut e, &spans());
        collect_dchannels(&mut e, &dchannels());
        let transport = TransportCountersAll::default();
        transport.udp.received.store(120, Ordering::Relaxed);
        transport.udp.sent.store(118, Ordering::Relaxed);
        transport.tcp.connections_opened.store(3, Ordering::Relaxed);
        transport.tcp.connections_closed.store(1, Ordering::Relaxed);
        collect_sip_transport(&mut e, &transport);
        collect_peers(&mut e, &peers());
        collect_peers(&mut e, &[]);
        let ua = UaStats {
            no_dialog: 2,
            ..UaStats::default()
        };
        let ep = EndpointStats {
            request_retransmissions: 5,
            ..EndpointStats::default()
        };
        collect_sip_stats(&mut e, &ua, &ep);
        let m = SipMessageMetrics::new();
        m.request(MessageDirection::Out, &Method::Invite);
        m.request(MessageDirection::In, &Method::Extension("FOO".into()));
        m.response(MessageDirection::In, &Method::Invite, 180);
        m.response(MessageDirection::In, &Method::Invite, 200);
        m.response(MessageDirection::Out, &Method::Options, 200);
        m.collect(&mut e);
        let table = media_table();
        collect_media(&mut e, &[&table]);
        let l = MediaLoopMetrics::new("media-0", LOOP_OVERRUN_DEFAULT_US);
        for us in [30, 120, 900, 2_500] {
            l.record_turn(us);
        }
        l.publish(&LoopCounters {
            turns: 4,
            datagrams_in: 10,
            ..LoopCounters::default()
        });
        l.store_ring_overflows(0, 3);
        collect_media_loops(&mut e, &[&l]);
        let c = CallMetrics::new();
        c.started(Direction::ExchangeToCore);
        c.started(Direction::ExchangeToCore);
        c.started(Direction::CoreToExchange);
        c.setup_latency(Direction::ExchangeToCore, Duration::from_millis(340));
        c.ended(Direction::ExchangeToCore, true, 16);
        c.ended(Direction::CoreToExchange, false, 17);
        c.collect(&mut e);
        e.finish()
    }

    #[test]
    fn every_collector_passes_promtool() {
        let text = render_all();
        assert_families_whole(&text);
        assert_lint_clean(&text);
    }

    #[test]
    fn samples_carry_the_snapshot_values() {
        let text = render_all();
        for line in [
            "tdmgw_gateway_state{state=\"failed\"} 1\n",
            "tdmgw_gateway_state{state=\"running\"} 0\n",
            "tdmgw_span_alarm{span=\"2\",alarm=\"LOS\"} 1\n",
            "tdmgw_span_alarm{span=\"1\",alarm=\"LOS\"} 0\n",
            "tdmgw_span_crc4_errors_total{span=\"1\"} 40\n",
            "tdmgw_span_interval_errored_seconds{span=\"1\"} 1\n",
            "tdmgw_span_unavailable_seconds_total{span=\"1\"} 12\n",
            "tdmgw_span_far_end_errored_seconds_total{span=\"1\"} 6\n",
            "tdmgw_span_far_end_severely_errored_seconds_total{span=\"1\"} 2\n",
            "tdmgw_span_far_end_unavailable_seconds_total{span=\"1\"} 15\n",
            "tdmgw_span_far_end_interval_errored_seconds{span=\"1\"} 3\n",
            "tdmgw_span_far_end_interval_severely_errored_seconds{span=\"1\"} 1\n",
            "tdmgw_span_far_end_interval_unavailable_seconds{span=\"1\"} 0\n",
            "tdmgw_span_far_end_unavailable{span=\"1\"} 0\n",
            "tdmgw_span_far_end_unavailable{span=\"2\"} 1\n",
            "tdmgw_span_far_end_unavailable_seconds_total{span=\"2\"} 10\n",
            "tdmgw_span_hdlc_errors_total{span=\"1\",reason=\"fcs\"} 2\n",
            "tdmgw_dchannel_up{span=\"2\"} 0\n",
            "tdmgw_dchannel_q921_state{span=\"1\",state=\"multiple_frame_established\"} 1\n",
            "tdmgw_channels{span=\"1\",state=\"busy\"} 2\n",
            "tdmgw_channels{span=\"1\",state=\"idle\"} 26\n",
            "tdmgw_q921_mdl_errors_total{span=\"1\",code=\"F\"} 1\n",
            "tdmgw_q921_timer_expiries_total{span=\"1\",timer=\"T200\"} 2\n",
            "tdmgw_sip_messages_received_total{transport=\"udp\"} 120\n",
            "tdmgw_sip_connections_open{transport=\"tcp\"} 2\n",
            "tdmgw_sip_peer_up{group=\"core\",peer=\"192.0.2.11:5060\",transport=\"udp\"} 0\n",
            "tdmgw_sip_peer_rtt_seconds{group=\"core\",peer=\"192.0.2.10:5060\",transport=\"udp\"} 0.0042\n",
            "tdmgw_sip_request_retransmissions_total 5\n",
            "tdmgw_sip_requests_total{direction=\"in\",method=\"other\"} 1\n",
            "tdmgw_sip_responses_total{direction=\"in\",method=\"INVITE\",code=\"180\"} 1\n",
            "tdmgw_rtp_packets_received_total{span=\"1\"} 3000\n",
            "tdmgw_rtp_concealed_seconds_total{span=\"1\"} 0.2\n",
            "tdmgw_rtp_packets_discarded_total{span=\"1\",reason=\"wrong_source\"} 7\n",
            "tdmgw_rtp_sessions_active{span=\"1\"} 2\n",
            "tdmgw_rtp_jitter_max_seconds{span=\"1\"} 0.03\n",
            "tdmgw_rtp_jitter_mean_seconds{span=\"1\"} 0.02\n",
            "tdmgw_rtp_jitter_max_seconds{span=\"2\"} 0\n",
            "tdmgw_rtp_packets_lost_total{span=\"1\"} 15\n",
            "tdmgw_jitter_buffer_depth_max_seconds{span=\"1\"} 0.06\n",
            "tdmgw_jitter_buffer_depth_mean_seconds{span=\"1\"} 0.05\n",
            "tdmgw_media_loop_duration_seconds_bucket{thread=\"media-0\",le=\"0.001\"} 3\n",
            "tdmgw_media_loop_overruns_total{thread=\"media-0\"} 1\n",
            "tdmgw_media_ring_overflows_total{thread=\"media-0\",ring=\"events\"} 3\n",
            "tdmgw_calls_started_total{direction=\"exchange_to_core\"} 2\n",
            "tdmgw_calls_in_progress{direction=\"exchange_to_core\"} 1\n",
            "tdmgw_calls_in_progress{direction=\"core_to_exchange\"} 0\n",
            "tdmgw_calls_ended_total{direction=\"core_to_exchange\",result=\"unanswered\",cause=\"17\"} 1\n",
            "tdmgw_call_setup_seconds_bucket{direction=\"exchange_to_core\",le=\"0.5\"} 1\n",
            "tdmgw_call_setup_seconds_bucket{direction=\"exchange_to_core\",le=\"0.2\"} 0\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn peer_rows_come_from_the_table() {
        let t = peer_table();
        let rows = PeerRow::all(&t, std::time::Instant::now());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].group, "core");
        assert_eq!(rows[1].address, "192.0.2.11:5060");
        assert!(rows.iter().all(|r| r.up && r.rtt.is_none()));
    }

    #[test]
    fn span_snapshot_of_a_raw_span() {
        use crate::line::span::SpanConfig;
        let span = RawSpan::new(SpanConfig {
            span_id: 4,
            ..SpanConfig::default()
        });
        let s = SpanSnapshot::of(&span);
        assert_eq!(s.span, 4);
        assert_eq!(s.counters, span.counters());
    }

    #[test]
    fn causes_above_127_count_as_127() {
        let c = CallMetrics::new();
        c.started(Direction::ExchangeToCore);
        c.ended(Direction::ExchangeToCore, false, 200);
        let mut e = Exposition::new();
        c.collect(&mut e);
        assert!(
            e.finish()
                .contains("result=\"unanswered\",cause=\"127\"} 1\n")
        );
        assert_eq!(c.in_progress(Direction::ExchangeToCore), 0);
    }
}
