//! Fuzz target: see `skiff_fuzz::merge_patch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::merge_patch(data));
