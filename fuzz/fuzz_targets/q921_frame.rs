#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::isdn::q921::fuzz_q921_frame(data));
