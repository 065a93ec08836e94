//! The system allocator with an optional heap cap, for `mailbrake pdf-text`.
//!
//! Until [`cap`] is called the only cost is one relaxed atomic load per allocation. After it,
//! live heap bytes are counted and an allocation that would pass the cap fails, which makes
//! Rust abort the process (`handle_alloc_error`): the parent sees a signal and reports the
//! PDF as uninspectable. A heap cap, unlike `RLIMIT_AS`/`RLIMIT_DATA`, needs no system call
//! (the systemd unit's seccomp filter denies `@resources`) and ignores mapped code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// The allocator; see the module documentation.
pub struct Capped;

/// The cap in bytes; 0 = none.
static CAP: AtomicUsize = AtomicUsize::new(0);
/// Live bytes allocated since the cap was set (negative after freeing older blocks).
static USED: AtomicIsize = AtomicIsize::new(0);

/// Caps the heap at `bytes` (at least 1) from now on.
pub fn cap(bytes: u64) {
    let bytes = usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .clamp(1, isize::MAX as usize);
    CAP.store(bytes, Relaxed);
}

/// Accounts `n` more bytes; false (and nothing accounted) if that passes the cap.
fn reserve(n: usize) -> bool {
    let cap = CAP.load(Relaxed);
    if cap == 0 {
        return true;
    }
    // Layout sizes never exceed isize::MAX.
    let n = n as isize;
    let before = USED.fetch_add(n, Relaxed);
    if before.saturating_add(n) > cap as isize {
        USED.fetch_sub(n, Relaxed);
        return false;
    }
    true
}

fn release(n: usize) {
    if CAP.load(Relaxed) != 0 {
        USED.fetch_sub(n as isize, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// accounting around it never touches the memory.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) };
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                release(new_size - old);
            }
        } else if new_size < old {
            release(old - new_size);
        }
        p
    }
}
