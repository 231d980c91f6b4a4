//! Choices of the kernels that depend on the machine, never on the model's numbers: made at load
//! by timing both ways, and never changing a result, only its speed.

use crate::error::Result;
use crate::session::Engine;

/// A setting timed on and off, and what was kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    /// The best time of a pass with the setting on, and off (the clock's unit).
    pub on: f64,
    pub off: f64,
    /// Kept on: it was faster (or as fast; on is the default).
    pub kept: bool,
}

/// Passes of each kind timed by `choose`: two, or one when a pass takes longer than `LONG_PASS`
/// (a big model on a slow device: the choice then costs three passes in all, not five).
const ROUNDS: usize = 2;
const LONG_PASS: f64 = 150.0;

/// Times one decoded token's forward pass (`Engine::time_passes`: the real model, because what a
/// setting such as the wasm kernels' `touch` reads changes — how memory reads overlap — depends on
/// the weights' sizes against the caches and on the CPU's prefetchers) with the setting on and off
/// (`set`), alternately after one warm-up pass with it on, and leaves it set to the faster: the
/// best of `ROUNDS` passes each (one each after a warm-up longer than `LONG_PASS`; `clock` in
/// milliseconds), on kept on a tie. A pass of a 1B model takes ~0.1 s at one thread.
pub fn choose(engine: &Engine, set: impl Fn(bool), clock: impl Fn() -> f64) -> Result<Timed> {
    let run = || -> Result<Vec<f64>> {
        set(true);
        let warm = engine.time_passes(1, |_| {}, &clock)?[0];
        let rounds = if warm > LONG_PASS { 1 } else { ROUNDS };
        // off, on, off, on, …
        engine.time_passes(2 * rounds, |i| set(i % 2 == 1), &clock)
    };
    let times = match run() {
        Ok(t) => t,
        Err(e) => {
            set(true);
            return Err(e);
        }
    };
    let best = |on: bool| times.iter().enumerate().filter(|&(i, _)| (i % 2 == 1) == on).map(|(_, &t)| t).fold(f64::INFINITY, f64::min);
    let (on, off) = (best(true), best(false));
    let kept = on <= off;
    set(kept);
    Ok(Timed { on, off, kept })
}
