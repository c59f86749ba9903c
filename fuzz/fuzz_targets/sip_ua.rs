#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::sip::ua::fuzz_sip_ua(data));
