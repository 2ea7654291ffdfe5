//! Fuzz target: see `skiff_fuzz::stored_object`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::stored_object(data));
