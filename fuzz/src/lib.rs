//! The checks behind Skiff's fuzz targets, one function per target: each takes
//! the fuzzer's bytes, calls the public entry points of the `api` and
//! `protobuf-codec` crates that see untrusted input, and panics when an
//! invariant does not hold (a panic inside the code under test is a finding
//! too). The binaries in `fuzz_targets/` only forward to these.
//!
//! Inputs with several parts (a definition name, a document, a patch) are split
//! at NUL bytes. A definition or resource named in the input is used when it
//! exists, else one is picked from the name's bytes, so that mutated names
//! still reach a real schema. Seeds live in `corpus/<target>/`, dictionaries
//! in `dict/`.
//!
//! Every target links [`alloc::CappedAllocator`], which aborts on a single
//! allocation larger than [`alloc::MAX_ALLOCATION`]: an input of a few KiB
//! that asks for that much is an unbounded allocation. libFuzzer's
//! `-rss_limit_mb` catches the cumulative kind.

pub mod alloc;
mod bodies;
mod objects;
mod patches;
mod quantity;
mod selectors;

pub use bodies::{json_body, protobuf_body};
pub use objects::stored_object;
pub use patches::{json_patch, merge_patch, strategic_merge_patch};
pub use quantity::quantity;
pub use selectors::{field_selector, label_selector};

#[global_allocator]
static ALLOCATOR: alloc::CappedAllocator = alloc::CappedAllocator;

/// Splits an input at its first NUL byte (the second part is empty without one).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The item of `items` named `name`, or else one picked by the sum of its bytes.
fn choose<'a>(items: &'a [String], name: &[u8]) -> Option<&'a String> {
    items
        .iter()
        .find(|item| item.as_bytes() == name)
        .or_else(|| {
            let sum = name.iter().map(|&b| usize::from(b)).sum::<usize>();
            items.get(sum % items.len().max(1))
        })
}
