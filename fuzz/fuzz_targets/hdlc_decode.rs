#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::line::hdlc::fuzz_hdlc_decode(data));
