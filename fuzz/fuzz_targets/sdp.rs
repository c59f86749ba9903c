#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::sip::sdp::fuzz_sdp(data));
