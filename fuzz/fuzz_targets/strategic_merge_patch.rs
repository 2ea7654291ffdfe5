//! Fuzz target: see `skiff_fuzz::strategic_merge_patch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::strategic_merge_patch(data));
