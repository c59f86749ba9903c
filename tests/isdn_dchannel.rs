//! The whole D-channel stack, two peers: our user side's Q.931 + Q.921 against
//! our network side's, over TS16 HDLC (the line layer's encoder and decoder)
//! with seeded bit errors on the wire, in simulated time.
//!
//! A bit error breaks the frame's FCS, so the HDLC decoder drops it and
//! Q.921 must recover it (T200, REJ); Q.931 above must never notice. Calls
//! go both ways at once, so glare on a channel happens too.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tdmgw::isdn::cause::Cause;
use tdmgw::isdn::dchannel::DChannel;
use tdmgw::isdn::q921::{self, LinkConfig};
use tdmgw::isdn::q931::{self, CallId, Event, PlaceCall};
use tdmgw::isdn::timers::TimerValues;
use tdmgw::line::hdlc::{HdlcDecoder, HdlcEncoder};

mod common;
use common::Rng;

/// One end: the stack, its HDLC on TS16, and the calls it knows.
struct End {
    dc: DChannel,
    enc: HdlcEncoder,
    dec: HdlcDecoder,
    tx: VecDeque<Vec<u8>>,
    /// Calls we placed that have not been released, and when to hang up.
    hang_up_at: HashMap<CallId, Option<Instant>>,
    placed: u32,
    connected: u32,
    released: u32,
}

impl End {
    fn new(role: q931::Role, now: Instant) -> End {
        let timers = TimerValues::default();
        let l2_role = match role {
            q931::Role::User => q921::Role::User,
            q931::Role::Network => q921::Role::Network,
        };
        End {
            dc: DChannel::new(
                LinkConfig::pri(1, l2_role, &timers, 3, 7),
                q931::Config::e1(1, role),
                now,
            ),
            enc: HdlcEncoder::new(),
            dec: HdlcDecoder::new(),
            tx: VecDeque::new(),
            hang_up_at: HashMap::new(),
            placed: 0,
            connected: 0,
            released: 0,
        }
    }

    /// Moves frames from Q.921 into the HDLC encoder's queue.
    fn collect(&mut self) {
        while let Some(f) = self.dc.poll_transmit() {
            self.tx.push_back(f);
        }
        while self.enc.can_load() {
            match self.tx.pop_front() {
                Some(f) => self.enc.load(&f).expect("frame within N201"),
                None => break,
            }
        }
    }

    /// Handles the call module's side of every event.
    fn events(&mut self, now: Instant, rng: &mut Rng) {
        while let Some(ev) = self.dc.poll_event() {
            match ev {
                Event::IncomingCall { id, .. } => {
                    let q = self.dc.q931_mut();
                    q.alerting(now, id).expect("alerting in U6/N6");
                    q.connect(now, id).expect("connect after alerting");
                }
                Event::Connected { id } => {
                    if let Some(at) = self.hang_up_at.get_mut(&id) {
                        self.connected += 1;
                        *at = Some(now + Duration::from_millis(rng.range(500, 3_000)));
                    }
                }
                Event::Released { id, .. } if self.hang_up_at.remove(&id).is_some() => {
                    self.released += 1;
                }
                _ => {}
            }
        }
        self.dc.pump(now);
    }

    /// Places a call when there is room, and hangs up calls whose hold ran out.
    fn drive_calls(&mut self, now: Instant, target: u32, concurrent: usize) {
        if self.placed < target && self.hang_up_at.len() < concurrent && self.dc.q931().link_up() {
            let req = PlaceCall::speech("999", Some("2079460000"));
            if let Ok(id) = self.dc.q931_mut().place_call(now, req) {
                self.placed += 1;
                self.hang_up_at.insert(id, None);
            }
        }
        let due: Vec<CallId> = self
            .hang_up_at
            .iter()
            .filter(|(_, at)| at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            // It may have been cleared by the peer in the same tick.
            let _ = self
                .dc
                .q931_mut()
                .disconnect(now, id, Cause::NORMAL_CLEARING);
            self.hang_up_at.insert(id, None);
        }
        self.dc.pump(now);
    }
}

/// Carries `octets` TS16 octets from `a` to `b`, flipping one bit in one
/// octet in `error_one_in`.
fn carry(a: &mut End, b: &mut End, now: Instant, octets: usize, rng: &mut Rng, error_one_in: u64) {
    for _ in 0..octets {
        a.collect();
        let mut o = a.enc.poll_octet();
        if error_one_in > 0 && rng.one_in(error_one_in) {
            o ^= 1 << rng.range(0, 8);
        }
        if let Some(frame) = b.dec.handle_octet(o) {
            let frame = frame.to_vec();
            b.dc.handle_frame(now, &frame);
        }
    }
}

fn run(seed: u64, calls_each_way: u32, error_one_in: u64) -> (End, End) {
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut user = End::new(q931::Role::User, start);
    let mut net = End::new(q931::Role::Network, start);
    let tick = Duration::from_millis(1);
    // TS16 is 64 kbit/s: 8 octets per millisecond each way.
    let octets_per_tick = 8;
    let limit_ms = 2_000_000u64;
    for ms in 0..limit_ms {
        let now = start + tick * ms as u32;
        for end in [&mut user, &mut net] {
            if end.dc.poll_timeout().is_some_and(|t| t <= now) {
                end.dc.handle_timeout(now);
            }
            end.drive_calls(now, calls_each_way, 12);
        }
        carry(
            &mut user,
            &mut net,
            now,
            octets_per_tick,
            &mut rng,
            error_one_in,
        );
        carry(
            &mut net,
            &mut user,
            now,
            octets_per_tick,
            &mut rng,
            error_one_in,
        );
        user.events(now, &mut rng);
        net.events(now, &mut rng);
        let done = |e: &End| e.placed == calls_each_way && e.hang_up_at.is_empty();
        if done(&user) && done(&net) && user.dc.q931().call_count() == 0 {
            // Let the last RELEASE COMPLETE and acknowledgements cross.
            if net.dc.q931().call_count() == 0 && user.tx.is_empty() && net.tx.is_empty() {
                return (user, net);
            }
        }
    }
    panic!(
        "not quiescent after {limit_ms} ms: user placed {} released {} live {}, net placed {} released {} live {}",
        user.placed,
        user.released,
        user.dc.q931().call_count(),
        net.placed,
        net.released,
        net.dc.q931().call_count()
    );
}

fn assert_clean(user: &End, net: &End, calls: u32) {
    for (name, e) in [("user", user), ("network", net)] {
        assert_eq!(e.placed, calls, "{name} placed");
        assert_eq!(
            e.released, calls,
            "{name}: every call placed reached null once"
        );
        assert_eq!(e.dc.q931().call_count(), 0, "{name}: call references left");
        assert!(
            e.dc.q931().channels().all_idle(),
            "{name}: channels not idle"
        );
        assert!(
            e.dc.link().state().is_established(),
            "{name}: link in {:?}, counters {:?}",
            e.dc.link().state(),
            e.dc.link().counters()
        );
    }
}

#[test]
fn calls_both_ways_over_a_clean_hdlc_line() {
    let (user, net) = run(1, 300, 0);
    assert_clean(&user, &net, 300);
    // With a clean wire only glare can stop a call connecting, and the user
    // side retries those on another channel (cause 44).
    assert_eq!(user.connected, 300, "user calls connected");
    assert_eq!(net.connected, 300, "network calls connected");
    assert_eq!(user.dc.link().counters().mdl(q921::MdlError::J), 0);
    assert_eq!(user.dc.counters().reestablishments, 0);
}

#[test]
fn calls_both_ways_through_bit_errors() {
    for seed in [7, 42, 1_000_003] {
        // One errored octet in 400: about one LAPD frame in 15 is lost.
        let (user, net) = run(seed, 300, 400);
        assert_clean(&user, &net, 300);
        let lost = |e: &End| {
            let s = e.dec.stats();
            s.fcs_errors + s.aborts + s.misaligned + s.short
        };
        let dropped = lost(&user) + lost(&net);
        assert!(
            dropped > 100,
            "seed {seed}: the wire lost only {dropped} frames"
        );
        let recovered = |e: &End| {
            let c = e.dc.link().counters();
            c.i_frames_retransmitted + c.t200_expiries + c.rej_sent
        };
        let retransmitted = recovered(&user) + recovered(&net);
        assert!(retransmitted > 0, "seed {seed}: Q.921 never retransmitted");
        // Q.921 hides the losses: nearly every call still connects. Not all:
        // when a loss burst exhausts N200 the link re-establishes and
        // discards its I queues (Q.921 5.7.1), and the calls then in setup
        // are cleared (Q.931 5.9), reaching null like every other call.
        for (name, e) in [("user", &user), ("network", &net)] {
            assert!(
                e.dc.counters().reestablishments <= 3,
                "seed {seed}: {name} re-established {} times",
                e.dc.counters().reestablishments
            );
            assert!(
                e.connected >= 270,
                "seed {seed}: only {} of 300 {name} calls connected; glue {:?}, link {:?}",
                e.connected,
                e.dc.counters(),
                e.dc.link().counters()
            );
        }
    }
}
