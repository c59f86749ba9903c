//! Q.931 codec: decoding from trace bytes, the §5.8 error procedures, the
//! fuzz seeds and decode(encode(m)) == m for generated messages.

use proptest::prelude::*;
use tdmgw::isdn::cause::{Cause, Location};
use tdmgw::isdn::q931::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A EuroISDN SETUP as an exchange sends it on a PRI (network to user).
const SETUP: &str = "08 02 00 0b 05 \
    04 03 80 90 a3 \
    18 03 a9 83 81 \
    6c 0c 21 83 30 32 30 37 39 34 36 30 30 30 \
    70 04 81 39 39 39 \
    a1";
// 08          protocol discriminator: Q.931
// 02 00 0b    call reference length 2, flag 0 (from the originator), value 11
// 05          SETUP
// 04 03       bearer capability, 3 octets
//   80        ext, ITU-T coding, speech
//   90        ext, circuit mode, 64 kbit/s
//   a3        ext, layer 1, G.711 A-law
// 18 03       channel identification, 3 octets
//   a9        ext, no interface id, PRI, exclusive, not D, as indicated
//   83        ext, ITU-T, channel number, B-channel units
//   81        ext (last), timeslot 1
// 6c 0c       calling party number, 12 octets
//   21        no ext: national number, ISDN/telephony plan
//   83        ext, presentation allowed, network provided
//   30..30    "0207946000"
// 70 04       called party number, 4 octets
//   81        ext, unknown type, ISDN/telephony plan
//   39 39 39  "999"
// a1          sending complete (single octet)

#[test]
fn euroisdn_setup_from_a_trace() {
    let d = Message::parse(&hex(SETUP)).unwrap();
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    let m = &d.message;
    assert_eq!(m.call_ref, CallReference::pri(11, false));
    assert_eq!(m.msg_type, MessageType::SETUP);
    assert_eq!(m.bearer(), Some(&BearerCapability::speech_alaw()));
    assert_eq!(m.channel_id().unwrap().timeslot(), Some(1));
    assert!(m.channel_id().unwrap().exclusive);
    let calling = m.number(IeId::CALLING_PARTY_NUMBER).unwrap();
    assert_eq!(calling.digits_str(), "0207946000");
    assert_eq!(calling.type_of_number, PartyNumber::TON_NATIONAL);
    assert_eq!(calling.presentation, Some((0, 3)));
    assert_eq!(
        m.number(IeId::CALLED_PARTY_NUMBER).unwrap().digits_str(),
        "999"
    );
    assert!(m.sending_complete());
    assert_eq!(check(&d, Direction::NetworkToUser), Verdict::Accept);
    assert_eq!(m.to_vec().unwrap(), hex(SETUP));
}

#[test]
fn disconnect_and_status_from_traces() {
    // DISCONNECT from the answering side (flag 1), cause 16 at the public
    // network serving the local user, with progress indicator 8.
    let d = Message::parse(&hex("08 02 80 0b 45 08 02 82 90 1e 02 82 88")).unwrap();
    let m = &d.message;
    assert_eq!(m.cause().unwrap().cause, Cause::NORMAL_CLEARING);
    assert_eq!(m.cause().unwrap().location, Location::PUBLIC_LOCAL);
    assert_eq!(m.progress().next().unwrap().description, 8);
    // STATUS: cause 98 with diagnostic (message type 0x45), call state 10.
    let d = Message::parse(&hex("08 02 80 0b 7d 08 03 82 e2 45 14 01 0a")).unwrap();
    assert_eq!(d.message.cause().unwrap().diagnostics, [0x45]);
    assert_eq!(d.message.call_state(), Some(10));
    assert_eq!(check(&d, Direction::UserToNetwork), Verdict::Accept);
}

#[test]
fn restart_all_interfaces_on_the_global_call_reference() {
    let d = Message::parse(&hex("08 02 00 00 46 79 01 87")).unwrap();
    assert!(d.message.call_ref.is_global());
    assert_eq!(
        d.message.restart_class(),
        Some(RestartClass::ALL_INTERFACES)
    );
}

#[test]
fn codeset_6_elements_are_kept_raw_after_a_locking_shift() {
    // ... 96 = locking shift to codeset 6, then element 01 (2 octets), then
    // 9e = non-locking shift to 6 ... all after the codeset 0 elements.
    let b = hex("08 02 00 01 05 04 03 80 90 a3 18 03 a9 83 85 96 01 02 aa bb");
    let d = Message::parse(&b).unwrap();
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    let last = d.message.ies.last().unwrap();
    assert_eq!(last.codeset, 6);
    assert_eq!(last.body, IeBody::Raw(vec![0xAA, 0xBB]));
    assert_eq!(check(&d, Direction::NetworkToUser), Verdict::Accept);
    assert_eq!(d.message.to_vec().unwrap(), b);
    // Non-locking: only the next element is in codeset 7.
    let b = hex("08 02 00 01 7b 9f 70 01 00 2c 01 35");
    let d = Message::parse(&b).unwrap();
    assert_eq!(d.message.ies[1].codeset, 7);
    assert_eq!(d.message.ies[2].codeset, 0);
    assert_eq!(
        d.message.ie(IeId::KEYPAD_FACILITY),
        Some(&IeBody::Keypad(b"5".to_vec()))
    );
}

// ---- Q.931 §5.8, one test per procedure ----

#[test]
fn s5_8_1_message_too_short_is_ignored() {
    assert_eq!(
        Message::parse(&hex("08 02 00")).unwrap_err(),
        HeaderError::TooShort
    );
    assert_eq!(Message::parse(&[0x08]).unwrap_err(), HeaderError::TooShort);
}

#[test]
fn s5_8_2_other_protocol_discriminator_is_ignored() {
    assert_eq!(
        Message::parse(&hex("41 02 00 01 05")).unwrap_err(),
        HeaderError::ProtocolDiscriminator(0x41)
    );
}

#[test]
fn s5_8_3_invalid_call_reference_length_is_ignored() {
    assert_eq!(
        Message::parse(&hex("08 03 00 00 01 05")).unwrap_err(),
        HeaderError::CallReferenceLength(3)
    );
    assert_eq!(
        Message::parse(&hex("08 22 00 01 05")).unwrap_err(),
        HeaderError::CallReferenceLength(0x22)
    );
}

#[test]
fn s5_8_4_unknown_message_type_is_cause_97() {
    let d = Message::parse(&hex("08 02 00 01 30")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::Reject(Problem {
            cause: Cause::MESSAGE_TYPE_NON_EXISTENT,
            diagnostic: vec![0x30]
        })
    );
}

#[test]
fn s5_8_5_out_of_sequence_and_repeated_elements_are_processed() {
    // Called number (70) before channel id (18); display repeated.
    let d = Message::parse(&hex(
        "08 02 80 01 01 70 01 81 18 03 a9 83 81 28 01 41 28 01 42",
    ))
    .unwrap();
    assert!(
        d.findings
            .contains(&IeFinding::OutOfSequence(IeId::CHANNEL_IDENTIFICATION))
    );
    assert!(d.findings.contains(&IeFinding::Repeated(IeId::DISPLAY)));
    // Only the first display counts.
    assert_eq!(
        d.message.ie(IeId::DISPLAY),
        Some(&IeBody::Display(b"A".to_vec()))
    );
}

#[test]
fn s5_8_6_1_mandatory_element_missing_is_cause_96() {
    // DISCONNECT without cause.
    let d = Message::parse(&hex("08 02 80 01 45")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::Reject(Problem {
            cause: Cause::MANDATORY_IE_MISSING,
            diagnostic: vec![0x08]
        })
    );
    // SETUP towards the user without channel identification (PRI).
    let d = Message::parse(&hex("08 02 00 01 05 04 03 80 90 a3")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::Reject(Problem {
            cause: Cause::MANDATORY_IE_MISSING,
            diagnostic: vec![0x18]
        })
    );
    assert_eq!(check(&d, Direction::UserToNetwork), Verdict::Accept);
}

#[test]
fn s5_8_6_2_mandatory_element_content_error_is_cause_100() {
    // DISCONNECT with a one-octet cause.
    let d = Message::parse(&hex("08 02 80 01 45 08 01 82")).unwrap();
    assert!(
        d.findings
            .contains(&IeFinding::InvalidContents(IeId::CAUSE))
    );
    assert_eq!(
        check(&d, Direction::UserToNetwork),
        Verdict::Reject(Problem {
            cause: Cause::INVALID_IE_CONTENTS,
            diagnostic: vec![0x08]
        })
    );
}

#[test]
fn s5_8_7_1_unrecognized_element_is_cause_99_or_96_when_comprehension_required() {
    // ALERTING with unknown element 0x3F: report 99, process.
    let d = Message::parse(&hex("08 02 80 01 01 3f 01 00")).unwrap();
    assert!(d.findings.contains(&IeFinding::Unrecognized(IeId(0x3F))));
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::AcceptAndReport(Problem {
            cause: Cause::IE_NON_EXISTENT,
            diagnostic: vec![0x3F]
        })
    );
    // Unknown 0x0F (0000xxxx): comprehension required, as if mandatory missing.
    let d = Message::parse(&hex("08 02 80 01 01 0f 01 00")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::Reject(Problem {
            cause: Cause::MANDATORY_IE_MISSING,
            diagnostic: vec![0x0F]
        })
    );
    // A known element not defined for the message (restart indicator in ALERTING).
    let d = Message::parse(&hex("08 02 80 01 01 79 01 87")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::AcceptAndReport(Problem {
            cause: Cause::IE_NON_EXISTENT,
            diagnostic: vec![0x79]
        })
    );
}

#[test]
fn s5_8_7_2_optional_element_content_error_is_cause_100_and_processed() {
    // CONNECT with a channel id whose channel list has no last octet.
    let d = Message::parse(&hex("08 02 80 01 07 18 03 a9 83 01")).unwrap();
    assert_eq!(
        check(&d, Direction::NetworkToUser),
        Verdict::AcceptAndReport(Problem {
            cause: Cause::INVALID_IE_CONTENTS,
            diagnostic: vec![0x18]
        })
    );
}

#[test]
fn truncated_last_element_is_a_finding_not_a_panic() {
    let d = Message::parse(&hex("08 02 00 01 05 04 09 80")).unwrap();
    assert_eq!(d.findings, [IeFinding::Truncated(IeId::BEARER_CAPABILITY)]);
}

#[test]
fn fuzz_seeds_run_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/q931_message");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        tdmgw::isdn::q931::fuzz_q931_message(&data);
        n += 1;
    }
    assert!(n >= 5);
}

// ---- property test ----

fn digits() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"0123456789*#".to_vec()), 0..20)
}

fn ie_strategy() -> impl Strategy<Value = (IeId, IeBody)> {
    prop_oneof![
        (
            0u8..4,
            0u8..32,
            0u8..4,
            0u8..32,
            0u8..128,
            0u8..32,
            prop::collection::vec(any::<u8>(), 0..3),
            any::<bool>()
        )
            .prop_map(|(cs, cap, mode, rate, mult, l1, more, has_l1)| {
                let protocol_octets = if has_l1 {
                    let mut v = vec![0xA0 | l1];
                    v.extend(more);
                    v
                } else {
                    vec![]
                };
                (
                    IeId::BEARER_CAPABILITY,
                    IeBody::BearerCapability(BearerCapability {
                        coding_standard: cs,
                        transfer_capability: cap,
                        transfer_mode: mode,
                        transfer_rate: rate,
                        rate_multiplier: (rate == BearerCapability::RATE_MULTI).then_some(mult),
                        protocol_octets,
                    }),
                )
            }),
        (
            0u8..4,
            0u8..16,
            prop::option::of(0u8..128),
            0u8..128,
            prop::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(cs, loc, rec, c, diag)| (
                IeId::CAUSE,
                IeBody::Cause(CauseIe {
                    coding_standard: cs,
                    location: Location(loc),
                    recommendation: rec,
                    cause: Cause(c),
                    diagnostics: diag,
                })
            )),
        (0u8..4, 0u8..64).prop_map(|(c, v)| (
            IeId::CALL_STATE,
            IeBody::CallState(CallStateIe {
                coding_standard: c,
                value: v
            })
        )),
        (
            any::<bool>(),
            any::<bool>(),
            0u8..4,
            prop::collection::vec(0u8..128, 1..4),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(excl, d, sel, chans, map, pri)| (
                IeId::CHANNEL_IDENTIFICATION,
                IeBody::ChannelId(ChannelId {
                    interface_id: None,
                    primary_rate: pri,
                    exclusive: excl,
                    d_channel: d,
                    selection: sel,
                    list: pri.then_some(ChannelList {
                        coding_standard: 0,
                        channel_type: 3,
                        channels: chans,
                        map
                    }),
                })
            )),
        (0u8..4, 0u8..16, 0u8..128).prop_map(|(c, l, p)| (
            IeId::PROGRESS_INDICATOR,
            IeBody::ProgressIndicator(ProgressIndicator {
                coding_standard: c,
                location: Location(l),
                description: p
            })
        )),
        (0u8..8, 0u8..16, digits()).prop_map(|(t, n, d)| (
            IeId::CALLED_PARTY_NUMBER,
            IeBody::Number(PartyNumber {
                type_of_number: t,
                numbering_plan: n,
                presentation: None,
                reason: None,
                digits: d
            })
        )),
        (
            0u8..8,
            0u8..16,
            prop::option::of((0u8..4, 0u8..4)),
            digits()
        )
            .prop_map(|(t, n, p, d)| (
                IeId::CALLING_PARTY_NUMBER,
                IeBody::Number(PartyNumber {
                    type_of_number: t,
                    numbering_plan: n,
                    presentation: p,
                    reason: None,
                    digits: d
                })
            )),
        (
            0u8..8,
            0u8..16,
            (0u8..4, 0u8..4),
            prop::option::of(0u8..16),
            digits()
        )
            .prop_map(|(t, n, p, r, d)| (
                IeId::REDIRECTING_NUMBER,
                IeBody::Number(PartyNumber {
                    type_of_number: t,
                    numbering_plan: n,
                    presentation: Some(p),
                    reason: r,
                    digits: d
                })
            )),
        (
            0u8..8,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(k, o, i)| (
                IeId::CALLED_PARTY_SUBADDRESS,
                IeBody::Subaddress(Subaddress {
                    kind: k,
                    odd: o,
                    info: i
                })
            )),
        prop::sample::select(vec![0u8, 6, 7]).prop_map(|c| (
            IeId::RESTART_INDICATOR,
            IeBody::RestartIndicator(RestartClass(c))
        )),
        prop::collection::vec(0x20u8..0x7F, 1..30)
            .prop_map(|t| (IeId::DISPLAY, IeBody::Display(t))),
        prop::collection::vec(0x20u8..0x7F, 1..10)
            .prop_map(|t| (IeId::KEYPAD_FACILITY, IeBody::Keypad(t))),
        any::<u8>().prop_map(|s| (IeId::SIGNAL, IeBody::Signal(s))),
        (
            0u8..100,
            1u8..13,
            1u8..32,
            prop::option::of(0u8..24),
            prop::option::of(0u8..60),
            prop::option::of(0u8..60)
        )
            .prop_map(|(y, mo, d, h, mi, s)| {
                let (mi, s) = (h.and(mi), h.and(mi).and(s));
                (
                    IeId::DATE_TIME,
                    IeBody::DateTime(DateTime {
                        year: y,
                        month: mo,
                        day: d,
                        hour: h,
                        minute: mi,
                        second: s,
                    }),
                )
            }),
        (0u8..128, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(d, e)| (
            IeId::NOTIFICATION_INDICATOR,
            IeBody::NotificationIndicator(NotificationIndicator {
                description: d,
                extra: e
            })
        )),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|f| (IeId::FACILITY, IeBody::Opaque(f))),
        prop::collection::vec(any::<u8>(), 2..4)
            .prop_map(|f| (IeId::HIGH_LAYER_COMPATIBILITY, IeBody::Opaque(f))),
        prop::collection::vec(any::<u8>(), 2..10)
            .prop_map(|f| (IeId::LOW_LAYER_COMPATIBILITY, IeBody::Opaque(f))),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(p, i)| (
            IeId::USER_USER,
            IeBody::UserUser(UserUser {
                protocol: p,
                info: i
            })
        )),
        Just((IeId::SENDING_COMPLETE, IeBody::SendingComplete)),
        (0x21u8..0x7F, prop::collection::vec(any::<u8>(), 0..6))
            .prop_filter("unknown id", |(id, _)| tdmgw::isdn::q931::ie::spec(IeId(
                *id
            ))
            .is_none())
            .prop_map(|(id, b)| (IeId(id), IeBody::Raw(b))),
    ]
}

fn message_strategy() -> impl Strategy<Value = Message> {
    let types: Vec<MessageType> = tdmgw::isdn::q931::rules::MESSAGE_TABLE
        .iter()
        .map(|s| s.msg_type)
        .collect();
    (
        prop::sample::select(types),
        0u16..0x8000,
        any::<bool>(),
        prop::collection::vec(ie_strategy(), 0..8),
        prop::option::of((
            5u8..8,
            prop::collection::vec((0u8..0x7F, prop::collection::vec(any::<u8>(), 0..5)), 1..3),
        )),
    )
        .prop_map(|(t, cr, flag, mut ies, national)| {
            // Variable-length codeset 0 elements in ascending order (§4.5.1).
            ies.sort_by_key(|(id, _)| if id.is_single_octet() { 0 } else { id.0 });
            let mut m = Message::new(CallReference::pri(cr, flag), t);
            for (id, body) in ies {
                m = m.with(id, body);
            }
            if let Some((cs, raws)) = national {
                m = m.with(
                    IeId::SHIFT,
                    IeBody::Shift {
                        locking: true,
                        codeset: cs,
                    },
                );
                for (id, b) in raws {
                    m = m.with(IeId(id), IeBody::Raw(b));
                }
            }
            m
        })
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(m in message_strategy()) {
        let bytes = m.to_vec().unwrap();
        let d = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&d.message, &m);
        prop_assert!(!d.findings.iter().any(|f| matches!(f, IeFinding::InvalidContents(_) | IeFinding::Truncated(_))), "{:?}", d.findings);
        let mut buf = [0u8; 512];
        prop_assert_eq!(m.emit(&mut buf), Some(bytes.len()));
    }

    #[test]
    fn decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..64)) {
        tdmgw::isdn::q931::fuzz_q931_message(&data);
        let mut framed = vec![0x08, 0x02, 0x00, 0x01];
        framed.extend(&data);
        tdmgw::isdn::q931::fuzz_q931_message(&framed);
    }
}
