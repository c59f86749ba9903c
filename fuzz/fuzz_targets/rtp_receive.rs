#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tdmgw::media::fuzz_rtp_receive(data));
