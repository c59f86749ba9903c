//! RFC 4475 torture messages through the SIP message layer: every valid
//! message parses with the fields the RFC text describes, every invalid one
//! gets the treatment the RFC asks for, none panics.

use tdmgw::sip::{
    Framing, Limits, Message, Method, UasCapabilities, Uri, fuzz_sip_message, response_to,
    uas_precheck,
};

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn valid(name: &str) -> Message {
    Message::parse(&load(name), Framing::Datagram, Limits::default())
        .unwrap_or_else(|r| panic!("{name} rejected: {}", r.fault))
}

/// The status a UAS answers an invalid message with (`None` = dropped).
fn rejected(name: &str) -> Option<u16> {
    let r = Message::parse(&load(name), Framing::Datagram, Limits::default())
        .err()
        .unwrap_or_else(|| panic!("{name} accepted"));
    r.answer.map(|(status, req)| {
        // The answer names the fault and carries the request's Via and CSeq
        // as received (§8.2.6.2), even when they are what is broken.
        let resp = response_to(&req, status, Some(r.fault), None);
        let bytes = resp.to_bytes();
        let line = format!("SIP/2.0 {status} {}\r\n", r.fault);
        assert!(bytes.starts_with(line.as_bytes()), "{name}");
        assert_eq!(
            resp.headers_named("Via").count(),
            req.headers_named("Via").count()
        );
        assert!(resp.headers_named("CSeq").next().is_some(), "{name}");
        status
    })
}

fn caps() -> UasCapabilities {
    UasCapabilities {
        allow: vec![
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Register,
        ],
        supported: vec!["timer".into()],
    }
}

#[test]
fn wsinv_short_tortuous_invite() {
    // §3.1.1.1
    let m = valid("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    let Some(Uri::Sip(ruri)) = m.start_uri() else {
        panic!("request URI")
    };
    assert_eq!(ruri.user.as_deref(), Some("vivekg"));
    assert_eq!(ruri.host, "chair-dnrc.example.com");
    assert_eq!(ruri.params.get("unknownparam"), Some(None));
    let to = m.to().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(to.display_name, None);
    let from = m.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards(), Ok(Some(68)));
    assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].transport.as_str(), vias[0].host.as_str()),
        ("UDP", "192.0.2.2")
    );
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(
        (vias[1].transport.as_str(), vias[1].branch()),
        ("TCP", Some("z9hG4bK9ikj8"))
    );
    assert_eq!(
        (vias[2].host.as_str(), vias[2].branch()),
        ("192.168.255.111", Some("z9hG4bK30239"))
    );
    assert_eq!(m.single("Subject"), Ok(Some("")));
    let nf = m.headers_named("NewFangledHeader").next().unwrap();
    assert_eq!(
        nf.value_str(),
        Ok("newfangled value continued newfangled value")
    );
    let odd = m
        .headers_named("UnknownHeaderWithUnusualValue")
        .next()
        .unwrap();
    assert_eq!(odd.value_str(), Ok(";;,,;;,;"));
    let contacts = m.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].display_name.as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(contacts[0].params.value("newparam"), Some("newvalue"));
    assert_eq!(contacts[0].params.get("secondparam"), Some(None));
    assert_eq!(contacts[0].params.value("q"), Some("0.33"));
    assert_eq!(m.body.len(), 150);
    assert!(m.body.starts_with(b"v=0\r\n"));
}

#[test]
fn intmeth_wide_range_of_characters() {
    // §3.1.1.2: an unknown method; a UAS answers 501 with Allow.
    let m = valid("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(&Method::Extension(method.into())));
    let Some(Uri::Sip(ruri)) = m.start_uri() else {
        panic!("request URI")
    };
    assert_eq!(
        ruri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(m.vias().unwrap()[0].branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        m.to().unwrap().display_name.as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );
    let from = m.from().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.params.value("fromParam''~+*_!.-%"), Some("работающий"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.cseq().unwrap().method, Method::Extension(method.into()));
    assert_eq!(m.max_forwards(), Ok(Some(255)));
    let ext = m.headers_named("extensionHeader-!.%*+_`'~").next().unwrap();
    assert_eq!(ext.value_str(), Ok("\u{feff}大停電"));
    let r = uas_precheck(&m, &caps()).unwrap();
    assert_eq!(r.status(), Some(501));
    assert!(r.single("Allow").unwrap().unwrap().contains("INVITE"));
}

#[test]
fn escapes_nulls_and_compact_forms() {
    // §3.1.1.3 esc01: escapes kept as received, compact i/C.
    let m = valid("esc01");
    assert_eq!(m.call_id(), Ok("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.single("Content-Type"), Ok(Some("application/sdp")));
    let c = &m.contacts().unwrap()[0];
    assert_eq!(c.uri.as_sip().unwrap().user.as_deref(), Some("cal%6Cer"));
    assert_eq!(m.body.len(), 150);
    // §3.1.1.4 escnull: %00 in user parts, two Contact lines.
    let m = valid("escnull");
    assert_eq!(m.contacts().unwrap().len(), 2);
    assert_eq!(m.content_length(), Ok(Some(0)));
    // lwsdisp: no LWS between display name and <.
    let m = valid("lwsdisp");
    assert_eq!(m.from().unwrap().display_name.as_deref(), Some("caller"));
    // semiuri: ';' in the user part; folded Accept list.
    let m = valid("semiuri");
    assert_eq!(
        m.start_uri().unwrap().as_sip().unwrap().user.as_deref(),
        Some("user;par=u%40example.net")
    );
    assert_eq!(m.list("Accept").unwrap().len(), 6);
    // transports: unknown transports kept.
    let vias = valid("transports").vias().unwrap();
    let t: Vec<&str> = vias.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn datagram_with_trailing_octets_and_odd_responses() {
    // dblreq: the INVITE after the REGISTER's empty body is noise.
    let m = valid("dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body.is_empty());
    // unreason: UTF-8 reason phrase; noreason: empty one.
    let m = valid("unreason");
    assert_eq!(
        m.start,
        tdmgw::sip::StartLine::Response {
            status: 200,
            reason: "= 2**3 * 5**2 но сто девяносто девять - простое".into()
        }
    );
    assert_eq!(m.body.len(), 154);
    assert_eq!(valid("noreason").status(), Some(100));
    // zeromf: Max-Forwards 0 is valid syntax.
    assert_eq!(valid("zeromf").max_forwards(), Ok(Some(0)));
    // inv2543: an RFC 2543 INVITE without branch or Content-Length.
    let m = valid("inv2543");
    assert_eq!(m.vias().unwrap()[0].branch(), None);
    assert!(m.body.ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
}

#[test]
fn contact_parameters_and_escaped_headers() {
    // cparam01: without <>, ;unknownparam belongs to the header.
    let c = &valid("cparam01").contacts().unwrap()[0];
    assert_eq!(c.params.get("unknownparam"), Some(None));
    assert!(c.uri.as_sip().unwrap().params.0.is_empty());
    // cparam02: inside <>, it belongs to the URI.
    let c = &valid("cparam02").contacts().unwrap()[0];
    assert!(c.params.0.is_empty());
    assert_eq!(
        c.uri.as_sip().unwrap().params.get("unknownparam"),
        Some(None)
    );
    // regescrt: URI headers allowed inside <>.
    let c = &valid("regescrt").contacts().unwrap()[0];
    assert_eq!(
        c.uri.as_sip().unwrap().headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );
    // regbadct: the same without <> is invalid; the TU answers 400.
    assert!(valid("regbadct").contacts().is_err());
}

#[test]
fn application_layer_answers() {
    // unkscm, novelsc: 416 Unsupported URI Scheme.
    for name in ["unkscm", "novelsc"] {
        let m = valid(name);
        assert!(matches!(m.start_uri(), Some(Uri::Other { .. })));
        assert_eq!(
            uas_precheck(&m, &caps()).and_then(|r| r.status()),
            Some(416),
            "{name}"
        );
    }
    // unksm2: non-SIP URIs in To/From/Contact are kept opaque.
    let m = valid("unksm2");
    assert_eq!(m.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(m.contacts().unwrap()[0].uri.scheme(), "name");
    // bext01: 420 with the unsupported tags in Unsupported.
    let r = uas_precheck(&valid("bext01"), &caps()).unwrap();
    assert_eq!(r.status(), Some(420));
    assert_eq!(
        r.single("Unsupported"),
        Ok(Some("nothingSupportsThis, nothingSupportsThisEither"))
    );
}

#[test]
fn invalid_messages_rejected_as_rfc_describes() {
    // §3.1.2: each "should be rejected with 400" unless said otherwise.
    for name in [
        "badinv01",
        "clerr",
        "ncl",
        "scalar02",
        "quotbal",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        "mcl01",
        "baddn",
        "mismatch01",
        "mismatch02",
        "multi01",
        "insuf",
    ] {
        assert_eq!(rejected(name), Some(400), "{name}");
    }
    // §3.1.2.16 badvers: 505 Version Not Supported.
    assert_eq!(rejected("badvers"), Some(505));
    // Invalid responses are dropped: bigcode, scalarlg.
    assert_eq!(rejected("bigcode"), None);
    assert_eq!(rejected("scalarlg"), None);
}

#[test]
fn faults_are_named_in_the_reason_phrase() {
    let fault = |name: &str| {
        Message::parse(&load(name), Framing::Datagram, Limits::default())
            .err()
            .map(|r| r.fault)
    };
    assert_eq!(fault("mcl01"), Some("Multiple Content-Length"));
    assert_eq!(fault("insuf"), Some("Missing From"));
    assert_eq!(fault("ncl"), Some("Bad Content-Length"));
    assert_eq!(
        fault("mismatch01"),
        Some("CSeq method does not match request method")
    );
}

#[test]
fn every_message_survives_fuzz_entry_and_size_limit() {
    let dir = format!("{}/tests/data/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "dat") {
            let bytes = std::fs::read(&path).unwrap();
            fuzz_sip_message(&bytes);
            for cut in [1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                fuzz_sip_message(&bytes[..cut.min(bytes.len())]);
            }
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} torture messages");
    // §21.5.14: a request over the limit gets 513.
    let r = Message::parse(
        &load("wsinv"),
        Framing::Datagram,
        Limits {
            max_message_len: 200,
        },
    )
    .unwrap_err();
    assert_eq!(r.answer.map(|a| a.0), Some(513));
}
