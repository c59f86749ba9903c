#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::sip::fuzz_sip_message(data));
