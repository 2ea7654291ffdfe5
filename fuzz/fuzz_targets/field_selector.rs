//! Fuzz target: see `skiff_fuzz::field_selector`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::field_selector(data));
