//! Fuzz target: see `skiff_fuzz::quantity`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::quantity(data));
