#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::isdn::q931::fuzz_q931_message(data));
