//! Peak memory of decoding hostile bodies, measured as the growth of this
//! process's peak resident set (Linux `VmHWM`, reset through
//! `/proc/self/clear_refs`). One test in this binary, so nothing else
//! allocates meanwhile.

mod common;

use common::{MAX_BODY, doubled_not_chain, empty_node_items, envelope_raw};
use protobuf_codec::{DecodeError, decode_to_json};

/// Resets the peak resident set to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("reset VmHWM through /proc/self/clear_refs");
}

/// The peak resident set since the last reset, in bytes.
fn peak() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

/// Runs `f` and returns its result with the growth of the peak resident set.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    reset_peak();
    let before = peak();
    let out = f();
    (out, peak().saturating_sub(before))
}

#[test]
fn hostile_bodies_take_memory_proportional_to_their_size() {
    // A singular message field repeated at each of 90 levels: merged by
    // copying each level's occurrences, this took 268 MB (89 times the body).
    let (chain, _) = doubled_not_chain(90, MAX_BODY);
    let (decoded, grew) = measure(|| decode_to_json(&chain));
    assert!(decoded.is_ok());
    eprintln!(
        "doubled not-chain, {} bytes: peak grew {} KiB",
        chain.len(),
        grew >> 10
    );
    assert!(grew < 8 * chain.len(), "peak grew {grew} bytes");
    drop(decoded);

    // 3 MiB of empty list items: 6.4 GB (2,126 times the body) and 38 s before
    // the budget; now refused once the values reach 65,536 plus one per two bytes.
    let list = envelope_raw("v1", "NodeList", empty_node_items(MAX_BODY - 64));
    let (decoded, grew) = measure(|| decode_to_json(&list));
    assert!(matches!(decoded, Err(DecodeError::TooLarge { .. })));
    eprintln!(
        "empty NodeList items, {} bytes: peak grew {} MiB",
        list.len(),
        grew >> 20
    );
    // ~125 times: about 1.6 million values of 100 to 250 bytes (src/budget.rs).
    assert!(grew < 160 * list.len(), "peak grew {grew} bytes");
}
