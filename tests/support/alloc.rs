//! A counting global allocator, per thread, so a test (or bench) can assert "0 heap
//! allocations per admitted request" while other tests run on other threads.
//!
//! Include it in a test binary with `mod support;` (it registers itself as the binary's
//! `#[global_allocator]`), or in a bench with
//! `#[path = "../tests/support/alloc.rs"] mod alloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

/// Forwards to the system allocator and counts allocations on the calling thread.
pub struct Counting;

fn bump(bytes: usize) {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    grow(bytes as i64);
}

fn grow(bytes: i64) {
    let _ = LIVE_BYTES.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter is a plain thread-local `Cell` that never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(new_size);
        grow(-(layout.size() as i64));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grow(-(layout.size() as i64));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the number of heap allocations (including
/// reallocations) it made on this thread.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    let after = ALLOCATIONS.with(Cell::get);
    (out, after - before)
}

/// Runs `f` and returns its result with the net bytes it left allocated, as seen by this
/// thread (memory freed on other threads is not subtracted).
pub fn live_bytes<R>(f: impl FnOnce() -> R) -> (R, i64) {
    let before = LIVE_BYTES.with(Cell::get);
    let out = f();
    let after = LIVE_BYTES.with(Cell::get);
    (out, after - before)
}

/// Net bytes allocated so far by this thread (allocations minus frees), for measuring
/// across `await` points where [`live_bytes`] cannot wrap the work.
pub fn live_now() -> i64 {
    LIVE_BYTES.with(Cell::get)
}
