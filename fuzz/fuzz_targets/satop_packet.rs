#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::line::driver::satop::fuzz_satop_packet(data));
