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

/// Passes of each kind timed by `choose`.
const ROUNDS: usize = 2;

/// Times one decoded token's forward pass (`Engine::time_passes`: the real model, because what a
/// setting such as the wasm kernels' `touch` reads changes — how memory reads overlap — depends on
/// the weights' sizes against the caches and on the CPU's prefetchers) with the setting on and off
/// (`set`), alternately after one warm-up pass with it on, and leaves it set to the faster: the
/// best of `ROUNDS` passes each, on kept on a tie. A pass of a 1B model takes ~0.1 s at one thread.
pub fn choose(engine: &Engine, set: impl Fn(bool), clock: impl Fn() -> f64) -> Result<Timed> {
    // pass 0: warm-up (on); then off, on, off, on, …
    let on_at = |i: usize| i.is_multiple_of(2);
    let times = engine.time_passes(1 + 2 * ROUNDS, |i| set(on_at(i)), clock);
    let times = match times {
        Ok(t) => t,
        Err(e) => {
            set(true);
            return Err(e);
        }
    };
    let best = |on: bool| times.iter().enumerate().skip(1).filter(|&(i, _)| on_at(i) == on).map(|(_, &t)| t).fold(f64::INFINITY, f64::min);
    let (on, off) = (best(true), best(false));
    let kept = on <= off;
    set(kept);
    Ok(Timed { on, off, kept })
}
