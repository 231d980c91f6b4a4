//! Comparing the engine with llama.cpp's reference outputs (the fixtures' logits and greedy
//! continuations), shared by tests/model_fixtures.rs (the default model) and tests/archs.rs (the other
//! families).

use hearth::sampler::argmax;
use hearth::session::{Engine, Session};
use std::sync::Arc;

/// How last-position logits differ from llama.cpp's. Logits are defined up to a constant (softmax
/// ignores it), so they are compared centred.
pub struct LogitDiff {
    /// Mean of ours − theirs.
    pub shift: f64,
    /// Centred RMS and largest absolute difference.
    pub rms: f64,
    pub max: f64,
    /// How many of llama.cpp's top 10 are in ours.
    pub shared_top10: usize,
    /// Whether the best token is the same.
    pub same_top1: bool,
    /// The spread (standard deviation) of llama.cpp's logits.
    pub spread: f64,
}

impl std::fmt::Display for LogitDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logits vs llama.cpp: shift {:+.4}, centred rms {:.4}, max {:.4}; top-10 shared {}/10 (spread {:.2})",
            self.shift, self.rms, self.max, self.shared_top10, self.spread
        )
    }
}

pub fn compare_logits(ours: &[f32], reference: &[f32], top10: &[u32]) -> LogitDiff {
    assert_eq!(ours.len(), reference.len());
    let n = ours.len() as f64;
    let shift = ours.iter().zip(reference).map(|(a, b)| (a - b) as f64).sum::<f64>() / n;
    let d: Vec<f64> = ours.iter().zip(reference).map(|(a, b)| (a - b) as f64 - shift).collect();
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    let max = d.iter().fold(0f64, |m, x| m.max(x.abs()));
    let mut order: Vec<u32> = (0..ours.len() as u32).collect();
    order.sort_by(|&a, &b| ours[b as usize].total_cmp(&ours[a as usize]));
    let shared_top10 = order[..10].iter().filter(|t| top10.contains(t)).count();
    let mean = reference.iter().map(|&v| v as f64).sum::<f64>() / n;
    let spread = (reference.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    LogitDiff { shift, rms, max, shared_top10, same_top1: argmax(ours) == argmax(reference), spread }
}

/// A fixture's little-endian f32 logits file.
pub fn read_f32s(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The token ids of a fixture case's `top10` ([[id, logit], …]).
pub fn top10_ids(case: &serde_json::Value) -> Vec<u32> {
    case["top10"].as_array().unwrap().iter().map(|t| t[0].as_u64().unwrap() as u32).collect()
}

/// Up to `n` greedy tokens after `prompt` (stopping after an end-of-generation token, which is kept).
pub fn greedy(engine: &Arc<Engine>, prompt: &[u32], n: usize, n_ctx: usize) -> Vec<u32> {
    let mut s = Session::new(engine.clone(), n_ctx).unwrap();
    s.feed(prompt).unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let id = argmax(s.logits());
        got.push(id);
        if engine.tokenizer.is_eog(id) {
            break;
        }
        s.append(&[id]).unwrap();
    }
    got
}

/// The first step where `got` and `expected` differ (one ending early counts), or None.
pub fn first_divergence(got: &[u32], expected: &[u32]) -> Option<usize> {
    got.iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .or((got.len() != expected.len()).then_some(got.len().min(expected.len())))
}

/// Our logit margin between `ours` and `theirs` at `step`, given llama.cpp's own tokens before it.
pub fn margin_at(engine: &Arc<Engine>, prompt: &[u32], expected: &[u32], step: usize, ours: u32, theirs: u32, n_ctx: usize) -> f32 {
    let mut s = Session::new(engine.clone(), n_ctx).unwrap();
    let mut ctx = prompt.to_vec();
    ctx.extend_from_slice(&expected[..step]);
    s.feed(&ctx).unwrap();
    let l = s.logits();
    l[ours as usize] - l[theirs as usize]
}
