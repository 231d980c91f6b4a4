//! A one-thread memory read-bandwidth probe, for the benchmarks' "decode against the memory's
//! bound": a decoded token reads every weight once, so weight bytes ÷ this bandwidth is the least
//! time a token can take at one thread, whatever the kernels do.

/// Bytes per second one thread reads from a buffer of `bytes` (make it well past the caches), the
/// best of `rounds` passes; `now` is a clock in milliseconds (`Instant` natively,
/// `performance.now()` in the browser).
pub fn read_bandwidth(bytes: usize, rounds: usize, now: impl Fn() -> f64) -> f64 {
    let words = (bytes / 64).max(1) * 8;
    // written once, so every page is backed before the timed passes
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0u64;
    for _ in 0..rounds.max(1) {
        let t0 = now();
        // eight independent sums: the loop vectorizes (two 128-bit lanes per add in wasm)
        let mut acc = [0u64; 8];
        for c in buf.chunks_exact(8) {
            for i in 0..8 {
                acc[i] = acc[i].wrapping_add(c[i]);
            }
        }
        sink = sink.wrapping_add(acc.iter().fold(0, |a, &b| a.wrapping_add(b)));
        best = best.min(now() - t0);
    }
    std::hint::black_box(sink);
    (words * 8) as f64 / (best.max(1e-3) / 1000.0)
}
