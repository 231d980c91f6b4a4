//! Splitting work across threads: rayon natively, a plain loop in the (single-threaded) wasm
//! build. Kernels only call `for_each_range`; the session wraps a whole forward pass in `run` so
//! the nested splits are cheap.

use std::ops::Range;

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

    pub fn for_each_chunk(n_chunks: usize, f: impl Fn(usize) + Sync + Send) {
        use rayon::prelude::*;
        if n_chunks <= 1 {
            (0..n_chunks).for_each(f)
        } else {
            (0..n_chunks).into_par_iter().for_each(f)
        }
    }

    /// Threads in the pool the caller runs in.
    pub fn current() -> usize {
        rayon::current_num_threads()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    pub fn set_threads(_n: usize) {}
    pub fn threads() -> usize {
        1
    }
    pub fn run<T>(f: impl FnOnce() -> T) -> T {
        f()
    }
    pub fn for_each_chunk(n_chunks: usize, f: impl Fn(usize)) {
        (0..n_chunks).for_each(f)
    }
    pub fn current() -> usize {
        1
    }
}

pub use imp::{run, set_threads, threads};

/// Calls `f` on disjoint ranges covering `0..n`, in parallel where threads exist. Ranges are
/// multiples of `align` (except the last) so SIMD row groups stay whole.
pub fn for_each_range(n: usize, align: usize, f: impl Fn(Range<usize>) + Sync + Send) {
    let threads = imp::current().max(1);
    let units = n.div_ceil(align.max(1));
    let chunks = threads.min(units).max(1);
    if chunks == 1 {
        return f(0..n);
    }
    let per = units.div_ceil(chunks) * align.max(1);
    imp::for_each_chunk(chunks, |i| {
        let start = (i * per).min(n);
        let end = ((i + 1) * per).min(n);
        if start < end {
            f(start..end)
        }
    });
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
