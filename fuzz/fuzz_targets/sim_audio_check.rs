#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::sim::exchange_audio::fuzz_sim_audio(data));
