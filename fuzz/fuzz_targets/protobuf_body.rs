//! Fuzz target: see `skiff_fuzz::protobuf_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::protobuf_body(data));
