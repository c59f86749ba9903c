//! Every seed of the `sip_message` fuzz target through its entry point.

#[test]
fn sip_message_seeds_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sip_message");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        tdmgw::sip::fuzz_sip_message(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds in {dir}");
}

#[test]
fn sdp_seeds_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sdp");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("corpus dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        tdmgw::sip::sdp::fuzz_sdp(&data);
        assert!(tdmgw::sip::sdp::Sdp::parse(&data).is_ok());
        n += 1;
    }
    assert!(n > 0, "no seeds in {dir}");
}
