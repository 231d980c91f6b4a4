//! hearth's global allocator: the system's, plus two things the engine needs from it.
//!
//! - **Failed allocations are counted.** In wasm a failed allocation that Rust does not handle aborts the
//!   instance (a trap); the worker compares the count from before a call with the one after its trap to
//!   report `out_of_memory` instead of a crash (`wasm::failed_allocations`).
//! - **A memory budget for work driven by untrusted input.** A chat template is a program from the GGUF:
//!   minijinja's fuel bounds its instructions, not its memory — `{% set s = s ~ s %}` thirty times in a
//!   loop asks for gigabytes in thirty steps. [`with_budget`] runs a closure with a cap on the bytes the
//!   calling thread may newly hold; an allocation past it is refused. Rust cannot turn a refused
//!   allocation into an error (allocation failure aborts), so the process ends — but at once, holding
//!   little, with the cause said: natively a message on stderr, in wasm the worker reads
//!   [`budget_refusals`] after the trap and reports a typed `template_error`. Without the cap the same
//!   template would grow until the device ran out (a tab killed, or a machine swapping).
//! - **What is held**: in the whole process ([`live_bytes`]) and a per-thread peak ([`peak_of`]), for tests that bound what a piece of work holds (the GGUF
//!   reader's memory against its input: tests/gguf_memory.rs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Allocations that failed so far, and the size of the last one.
static FAILED: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
/// Allocations refused because a [`with_budget`] cap was reached.
static REFUSED: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed, by the whole process.
static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// Bytes allocated and not yet freed, by the whole process (a soak test's flat-memory check).
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations that failed so far (for any reason), and the size of the last one.
pub fn failed_allocations() -> (usize, usize) {
    (
        FAILED.0.load(Ordering::Relaxed),
        FAILED.1.load(Ordering::Relaxed),
    )
}

/// Allocations refused so far because a [`with_budget`] cap was reached.
pub fn budget_refusals() -> usize {
    REFUSED.load(Ordering::Relaxed)
}

/// The calling thread's budget while a [`with_budget`] closure runs.
#[derive(Clone, Copy)]
struct Budget {
    /// What the closure is doing, for the message when the cap is reached (natively).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    what: &'static str,
    /// Bytes the closure may newly hold.
    limit: usize,
    /// Bytes allocated minus bytes freed since the closure started (frees of older memory count too,
    /// so this can only understate; it saturates at 0).
    live: usize,
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
    /// While a [`peak_of`] closure runs: bytes held now (since it started) and the most held.
    static PEAK: Cell<Option<(isize, isize)>> = const { Cell::new(None) };
}

/// Runs `f`; returns the most bytes this thread held at once while it ran, counted from its start (what `f`
/// returns included; a `realloc` counts old and new at once, as a copy holds both), and `f`'s result.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    PEAK.with(|p| p.set(Some((0, 0))));
    let out = f();
    let peak = PEAK.with(|p| p.take()).map_or(0, |(_, peak)| peak.max(0) as usize);
    (peak, out)
}

fn track(delta: isize) {
    LIVE.fetch_add(delta, Ordering::Relaxed);
    let _ = PEAK.try_with(|p| {
        if let Some((now, peak)) = p.get() {
            let now = now + delta;
            p.set(Some((now, peak.max(now))));
        }
    });
}

/// Runs `f` with a cap of `limit` bytes on the memory this thread newly holds while it runs (see the module
/// docs: reaching the cap ends the process). `what` names the work in the message, e.g. "the chat template".
/// Budgets do not nest: an inner call replaces the outer cap until it returns.
pub fn with_budget<R>(what: &'static str, limit: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = BUDGET.try_with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUDGET.with(|b| {
        b.replace(Some(Budget {
            what,
            limit,
            live: 0,
        }))
    }));
    f()
}

/// Accounts for `grow` more bytes on this thread; false when that would pass its budget's cap.
fn admit(grow: usize) -> bool {
    BUDGET
        .try_with(|cell| match cell.get() {
            None => true,
            Some(mut b) => {
                let live = b.live.saturating_add(grow);
                if live > b.limit {
                    cell.set(None); // the message below must not be refused in turn
                    refuse(b);
                    return false;
                }
                b.live = live;
                cell.set(Some(b));
                true
            }
        })
        .unwrap_or(true)
}

fn release(shrink: usize) {
    let _ = BUDGET.try_with(|cell| {
        if let Some(mut b) = cell.get() {
            b.live = b.live.saturating_sub(shrink);
            cell.set(Some(b));
        }
    });
}

fn refuse(b: Budget) {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        // No allocation: a fixed buffer, written in one call.
        let mut buf = [0u8; 256];
        let mut w = &mut buf[..];
        let _ = writeln!(
            w,
            "hearth: {} needs more than {} MiB of memory (a broken or hostile file); stopping",
            b.what,
            b.limit >> 20
        );
        let n = 256 - w.len();
        let _ = std::io::stderr().write_all(&buf[..n]);
    }
    #[cfg(target_arch = "wasm32")]
    let _ = b;
}

fn counted(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        FAILED.0.fetch_add(1, Ordering::Relaxed);
        FAILED.1.store(size, Ordering::Relaxed);
    }
    p
}

/// The system allocator, counting failures and keeping [`with_budget`] caps.
pub struct Hearth;

// SAFETY: every allocation that is admitted is passed straight to `System`, which upholds GlobalAlloc's
// contract; a refused one returns null, which the contract allows.
unsafe impl GlobalAlloc for Hearth {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return counted(std::ptr::null_mut(), layout.size());
        }
        let p = counted(System.alloc(layout), layout.size());
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        release(layout.size());
        track(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return counted(std::ptr::null_mut(), layout.size());
        }
        let p = counted(System.alloc_zeroed(layout), layout.size());
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            if !admit(new_size - layout.size()) {
                return counted(std::ptr::null_mut(), new_size);
            }
        } else {
            release(layout.size() - new_size);
        }
        let q = counted(System.realloc(ptr, layout, new_size), new_size);
        if !q.is_null() {
            track(new_size as isize);
            track(-(layout.size() as isize));
        }
        q
    }
}

#[global_allocator]
static ALLOC: Hearth = Hearth;
