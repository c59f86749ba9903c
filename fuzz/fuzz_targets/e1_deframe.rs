#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::line::e1::fuzz_e1_deframe(data));
