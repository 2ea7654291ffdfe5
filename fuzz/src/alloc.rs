//! A global allocator that aborts on oversized single allocations.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, which a
//! `--sanitizer none` build does not have; this allocator gives the same
//! check without them. The abort is a crash to libFuzzer, which saves the input.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation allowed: far beyond what any input of the
/// sizes the fuzzer makes (a few KiB) needs, far below the machine's memory.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// [`System`], aborting on an allocation larger than [`MAX_ALLOCATION`].
pub struct CappedAllocator;

impl CappedAllocator {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            // No formatting machinery here: it could allocate while we are failing.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"==skiff-fuzz== single allocation above the fuzzing limit (MAX_ALLOCATION)\n",
            );
            std::process::abort();
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; `check` only aborts the process before forwarding.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
