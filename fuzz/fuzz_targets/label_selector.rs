//! Fuzz target: see `skiff_fuzz::label_selector`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::label_selector(data));
