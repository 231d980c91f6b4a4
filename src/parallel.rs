//! Splitting work across threads: rayon natively, a small pool of Web Workers in the threaded wasm
//! build, a plain loop in the single-threaded one. Kernels only call `for_each_range`; the session wraps a whole forward pass in `run` so
//! the nested splits are cheap.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::{Arc, Mutex, OnceLock};

    static POOL: OnceLock<Mutex<Option<Arc<rayon::ThreadPool>>>> = OnceLock::new();

    fn slot() -> &'static Mutex<Option<Arc<rayon::ThreadPool>>> {
        POOL.get_or_init(|| Mutex::new(None))
    }

    /// Uses `n` threads from now on (0: rayon's default, the available parallelism).
    pub fn set_threads(n: usize) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().ok().map(Arc::new);
        if let Ok(mut s) = slot().lock() {
            *s = pool;
        }
    }

    fn pool() -> Option<Arc<rayon::ThreadPool>> {
        slot().lock().ok().and_then(|s| s.clone())
    }

    pub fn threads() -> usize {
        pool().map(|p| p.current_num_threads()).unwrap_or_else(rayon::current_num_threads)
    }

    pub fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        match pool() {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// `f` on ranges covering `0..units`: a few even chunks per thread (`even_chunks`). rayon runs
    /// each chunk as a task split by work stealing, each with its own cost: there few even chunks
    /// were faster than guided ones (SmolLM2 decode at 2 threads on the 3 December host, builds
    /// alternated: 69-78 tok/s even, 58-66 guided).
    pub fn for_each_units(units: usize, threads: usize, f: impl Fn(std::ops::Range<usize>) + Sync + Send) {
        use rayon::prelude::*;
        let (ends, chunks) = super::even_chunks(units, threads);
        let ends = &ends[..chunks];
        let range = |i: usize| if i == 0 { 0 } else { ends[i - 1] }..ends[i];
        (0..chunks).into_par_iter().for_each(|i| f(range(i)));
    }

    /// Threads in the pool the caller runs in.
    pub fn current() -> usize {
        rayon::current_num_threads()
    }
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod imp {
    pub fn set_threads(_n: usize) {}
    pub fn threads() -> usize {
        1
    }
    pub fn run<T>(f: impl FnOnce() -> T) -> T {
        f()
    }
    pub fn for_each_units(units: usize, _threads: usize, f: impl Fn(std::ops::Range<usize>)) {
        f(0..units)
    }
    pub fn current() -> usize {
        1
    }
}

/// The threaded wasm build's pool: helper threads are Web Workers that the JS side starts on the
/// same module and shared memory, each calling `thread_main` (which never returns). A parallel
/// call publishes one job; helpers claim chunks from a shared counter (so a slow or
/// descheduled thread leaves its chunks to the others) and check out when none are left. Waiting
/// spins briefly (the next matmul is microseconds away) and then sleeps in `memory.atomic.wait32`.
/// The caller is the engine's own worker, which may block; a call made while a job runs (nested,
/// or from a helper) runs on its own thread.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
mod imp {
    use core::arch::wasm32::{memory_atomic_notify, memory_atomic_wait32};
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering::*};

    struct Job<'a> {
        f: &'a (dyn Fn(core::ops::Range<usize>) + Sync),
        n: usize,
        div: usize,
        next: AtomicUsize,
    }

    /// Helper threads running `thread_main`.
    static HELPERS: AtomicUsize = AtomicUsize::new(0);
    /// Threads a parallel call uses, the caller included.
    static WANT: AtomicUsize = AtomicUsize::new(1);
    /// Bumped for each job; helpers sleep on it.
    static EPOCH: AtomicI32 = AtomicI32::new(0);
    /// Helpers still inside the current job; the caller sleeps on it.
    static ACTIVE: AtomicI32 = AtomicI32::new(0);
    static JOB: AtomicPtr<Job<'static>> = AtomicPtr::new(core::ptr::null_mut());
    static BUSY: AtomicBool = AtomicBool::new(false);
    /// Threads asleep in `memory.atomic.wait32` (a notify is only needed when some are).
    static SLEEPERS: AtomicI32 = AtomicI32::new(0);

    const SPIN: u32 = 1 << 16;
    /// A sleeper re-checks this often even without a notify (belt and braces; ns).
    const NAP_NS: i64 = 50_000_000;
    /// A job whose helpers make no progress for this long means a helper is gone.
    const STUCK_MS: u32 = 30_000;

    fn as_ptr(a: &AtomicI32) -> *mut i32 {
        a.as_ptr()
    }

    /// Waits until `a` is no longer `old`: spins, then sleeps; gives up after `naps` sleeps
    /// (`u32::MAX`: never).
    fn wait_while(a: &AtomicI32, old: i32, naps: u32) {
        for _ in 0..SPIN {
            if a.load(Acquire) != old {
                return;
            }
            core::hint::spin_loop();
        }
        let mut n = 0;
        while a.load(SeqCst) == old && n < naps {
            SLEEPERS.fetch_add(1, SeqCst);
            // SAFETY: a valid, aligned i32 in shared memory; returns at once if `*a != old`, else on
            // notify or timeout. A store seen as "no sleepers" comes before this check, so no
            // wakeup is lost.
            unsafe { memory_atomic_wait32(as_ptr(a), old, NAP_NS) };
            SLEEPERS.fetch_sub(1, SeqCst);
            n = n.saturating_add(1);
        }
    }

    /// Wakes the sleepers on `a` (after a SeqCst change of it).
    fn wake(a: &AtomicI32) {
        if SLEEPERS.load(SeqCst) > 0 {
            // SAFETY: as in `wait_while`.
            unsafe { memory_atomic_notify(as_ptr(a), u32::MAX) };
        }
    }

    fn work(job: &Job<'_>) {
        while let Some(r) = super::guided_claim(&job.next, job.n, job.div) {
            (job.f)(r);
        }
    }

    /// A helper thread's whole life.
    /// The JS side waits until every helper has registered here before the pool is used, so a job
    /// never starts while a helper is joining.
    pub fn thread_main() -> ! {
        let mut seen = EPOCH.load(SeqCst);
        HELPERS.fetch_add(1, SeqCst);
        loop {
            wait_while(&EPOCH, seen, u32::MAX);
            seen = EPOCH.load(Acquire);
            let job = JOB.load(Acquire);
            if !job.is_null() {
                // SAFETY: the caller keeps the job alive until every helper has checked out.
                work(unsafe { &*job });
            }
            if ACTIVE.fetch_sub(1, SeqCst) == 1 {
                wake(&ACTIVE);
            }
        }
    }

    pub fn helpers() -> usize {
        HELPERS.load(Acquire)
    }

    pub fn set_threads(n: usize) {
        WANT.store(if n == 0 { usize::MAX } else { n }, Release);
    }

    pub fn threads() -> usize {
        WANT.load(Acquire).min(helpers() + 1).max(1)
    }

    pub fn run<T>(f: impl FnOnce() -> T) -> T {
        f()
    }

    pub fn current() -> usize {
        if BUSY.load(Relaxed) {
            1
        } else {
            threads()
        }
    }

    /// `f` on ranges covering `0..units`, claimed by the threads as they come free, guided
    /// (`guided_claim`): big at first, single units at the end.
    pub fn for_each_units(units: usize, threads: usize, f: impl Fn(core::ops::Range<usize>) + Sync) {
        let helpers = helpers();
        if units <= 1 || helpers == 0 || threads <= 1 || BUSY.swap(true, AcqRel) {
            return f(0..units);
        }
        let job = Job { f: &f, n: units, div: 2 * threads, next: AtomicUsize::new(0) };
        // Every helper wakes and checks out, so the job outlives all of its readers.
        ACTIVE.store(helpers as i32, Release);
        // SAFETY: only the lifetime is erased; `job` lives until ACTIVE is back to 0 below.
        JOB.store(&job as *const Job<'_> as *mut Job<'static>, Release);
        EPOCH.fetch_add(1, SeqCst);
        wake(&EPOCH);
        work(&job);
        // A helper that died (a trap in its worker) would leave this wait forever: after
        // STUCK_MS without progress, trap here too, so the worker reports a crash instead of
        // hanging (the page then starts a new one).
        let mut naps = 0u32;
        loop {
            let left = ACTIVE.load(SeqCst);
            if left == 0 {
                break;
            }
            wait_while(&ACTIVE, left, 1);
            if ACTIVE.load(SeqCst) == left {
                naps += 1;
                assert!(naps < STUCK_MS / (NAP_NS / 1_000_000) as u32 + 1, "a helper thread stopped responding");
            } else {
                naps = 0;
            }
        }
        JOB.store(core::ptr::null_mut(), Release);
        BUSY.store(false, Release);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub use imp::{helpers, thread_main};

pub use imp::{run, set_threads, threads};

/// Most chunks one even split makes (its chunk bounds live on the stack).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
const MAX_CHUNKS: usize = 64;

/// Calls `f` on disjoint ranges covering `0..n`, in parallel where threads exist. Ranges are
/// multiples of `align` (except the last) so SIMD row groups stay whole.
///
/// Chunks are taken as threads come free (on a shared machine one thread is often late, and
/// equal shares would make every call wait for it). In the wasm pool they shrink as the work runs
/// out (guided scheduling, `guided_claim`): the first are big (few claims on the shared counter)
/// and the last single units, so a thread that finished early waits for at most one small chunk
/// at the end of the call (in Chromium on SmolLM2 at 2 threads that wait was 6% of a decoded
/// token with 8 even chunks). With rayon, `even_chunks`.
pub fn for_each_range(n: usize, align: usize, f: impl Fn(Range<usize>) + Sync + Send) {
    let threads = imp::current().max(1);
    let align = align.max(1);
    let units = n.div_ceil(align);
    if threads == 1 || units <= 1 {
        return f(0..n);
    }
    imp::for_each_units(units, threads, |u| {
        let (start, end) = (u.start * align, (u.end * align).min(n));
        if start < end {
            f(start..end)
        }
    });
}

/// The end (in units) of each chunk of an even split: a few chunks per thread (16 for big calls,
/// such as a vocabulary's output projection), each of the same whole number of units.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn even_chunks(units: usize, threads: usize) -> ([usize; MAX_CHUNKS], usize) {
    let per_thread = if units >= 1024 { 16 } else { 4 };
    // at most MAX_CHUNKS / 2 wanted: rounding `per` down below at most doubles the count
    let want = (threads * per_thread).clamp(1, MAX_CHUNKS / 2).min(units);
    // units per chunk rounded down, so every chunk has work (9 units in 8 chunks: 9 chunks of 1)
    let per = (units / want).max(1);
    let chunks = units.div_ceil(per);
    let mut ends = [0; MAX_CHUNKS];
    for (i, e) in ends.iter_mut().enumerate().take(chunks) {
        *e = ((i + 1) * per).min(units);
    }
    (ends, chunks)
}

/// Claims the next chunk of `0..units` from the shared counter `next`: 1/`div` of the units left
/// (`div` = 2 × threads), at least one; `None` once all are taken. A compare-and-swap, as the size
/// depends on what is left: with two threads a retry is rare.
#[cfg_attr(not(all(target_arch = "wasm32", target_feature = "atomics")), allow(dead_code))]
fn guided_claim(next: &AtomicUsize, units: usize, div: usize) -> Option<Range<usize>> {
    let mut start = next.load(Ordering::Relaxed);
    loop {
        if start >= units {
            return None;
        }
        let end = start + ((units - start) / div).max(1);
        match next.compare_exchange_weak(start, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(start..end),
            Err(now) => start = now,
        }
    }
}

/// A raw pointer that may be shared across threads, for writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub struct SyncPtr<T>(pub *mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Guided claims cover every unit once, never exceed 1/div of what is left, shrink to single
    /// units at the end and stay few (about div·ln(units)).
    #[test]
    fn guided_claims_shrink_to_single_units() {
        for threads in [2, 3, 4, 8, 16, 64, 256] {
            let div = 2 * threads;
            for units in [2, 9, 36, 60, 96, 1000, 3072, 49152, 1 << 20] {
                let next = AtomicUsize::new(0);
                let mut got = Vec::new();
                while let Some(r) = guided_claim(&next, units, div) {
                    let left = units - r.start;
                    assert!(!r.is_empty() && r.len() <= (left / div).max(1), "{units}/{threads}: {r:?}");
                    got.push(r);
                }
                assert_eq!(got.iter().flat_map(|r| r.clone()).collect::<Vec<_>>(), (0..units).collect::<Vec<_>>());
                if units >= div {
                    assert!(got[got.len() - div..].iter().all(|r| r.len() == 1), "{units}/{threads}: ends {:?}", &got[got.len() - div..]);
                }
                let bound = (div as f64 * (units as f64).ln()).ceil() as usize + div;
                assert!(got.len() <= bound, "{units}/{threads}: {} claims > {bound}", got.len());
            }
        }
    }

    /// Even chunks are all of one size (the last may be smaller), cover every unit and stay
    /// within MAX_CHUNKS, for any thread count (with 16 threads or more the wanted count is capped).
    #[test]
    fn even_chunks_are_even_and_fit() {
        for threads in [1, 2, 3, 4, 8, 16, 64, 256] {
            for units in [1, 2, 9, 36, 63, 64, 127, 1000, 1023, 1024, 3072, 49152, 1 << 20] {
                let (ends, k) = even_chunks(units, threads);
                assert!((1..=MAX_CHUNKS).contains(&k) && ends[k - 1] == units, "{units} units, {threads} threads: {k} chunks");
                let per = ends[0];
                let mut start = 0;
                for (i, &end) in ends[..k].iter().enumerate() {
                    let size = end - start;
                    assert!(size >= 1 && (size == per || (i + 1 == k && size < per)), "{units}/{threads}: {:?}", &ends[..k]);
                    start = end;
                }
            }
        }
    }

    /// Every index of 0..n lands in exactly one range, ranges start on `align`, and none is empty
    /// (but the one call for n = 0).
    #[test]
    fn ranges_cover_each_index_once() {
        set_threads(2);
        for &(n, align) in &[(9usize, 1usize), (1, 1), (0, 4), (576, 4), (577, 4), (49152, 4), (17, 16), (100, 3)] {
            let seen = Mutex::new(Vec::new());
            run(|| for_each_range(n, align, |r| seen.lock().unwrap().push(r)));
            let mut rs = seen.into_inner().unwrap();
            rs.sort_by_key(|r| r.start);
            assert!(rs.iter().all(|r| (n == 0 || !r.is_empty()) && r.start % align == 0), "n {n} align {align}: {rs:?}");
            let flat: Vec<usize> = rs.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n {n} align {align}");
            if n == 9 {
                // even chunks (rayon): one unit each, so two threads share them 5 to 4
                assert_eq!(rs.len(), 9, "{rs:?}");
            }
        }
        set_threads(0);
    }
}
