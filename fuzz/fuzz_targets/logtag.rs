#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vfc_monitor::fuzz_targets::logtag(data));
