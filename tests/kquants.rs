//! K-quant models end to end: a tiny llama whose matrices are Q4_K/Q5_K/Q6_K loads, runs, and
//! gives logits close to the same model in F32; rows that are not whole super-blocks are a typed
//! error at load; `hearth quantize` to a K type falls back to a 32-block format where it must.

mod common;

use common::tiny::*;
use hearth::gguf::{GgmlType, Gguf};
use hearth::session::{Engine, Session};
use hearth::Error;
use std::sync::Arc;

/// Dims that are whole super-blocks: every matrix's rows (n_embd, n_head·head_dim, n_ff) are
/// multiples of 256.
fn spec(ty: GgmlType, seed: u64) -> TinySpec {
    TinySpec { n_embd: 256, n_ff: 512, n_head: 4, n_head_kv: 2, weight_type: ty, seed, ..Default::default() }
}

fn load(bytes: &[u8]) -> Result<Engine, Error> {
    Engine::load(&mut &bytes[..])
}

const PROMPT: [u32; 12] = [5, 70, 71, 72, 9, 100, 101, 102, 200, 201, 3, 150];

/// The logits at every position of PROMPT.
fn logits(bytes: &[u8]) -> Vec<f32> {
    let mut s = Session::new(Arc::new(load(bytes).expect("loads")), 64).unwrap();
    s.all_logits(&PROMPT, 0).unwrap()
}

/// rms(a − b) / rms(b).
fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

fn argmaxes(l: &[f32], vocab: usize) -> Vec<usize> {
    l.chunks_exact(vocab)
        .map(|r| r.iter().enumerate().fold(0, |best, (i, v)| if *v > r[best] { i } else { best }))
        .collect()
}

#[test]
fn k_quantized_models_run_close_to_f32() {
    let vocab = vocab().0.len();
    let reference = logits(&tiny_gguf(&spec(GgmlType::F32, 1)));
    assert_eq!(reference.len(), PROMPT.len() * vocab);
    let error = |ty| rel_rms(&logits(&tiny_gguf(&spec(ty, 1))), &reference);
    // Yardsticks: this random tiny model amplifies weight rounding (Q8_0: 0.047 already), so each
    // K-quant is held to the legacy format of its bits, and far from an unrelated model.
    let unrelated = rel_rms(&logits(&tiny_gguf(&spec(GgmlType::F32, 2))), &reference);
    let (q4_1, q5_1) = (error(GgmlType::Q4_1), error(GgmlType::Q5_1));
    let mut errors = vec![];
    // (type, absolute bound, legacy bound; measured: Q4_K 0.439 (Q4_1 0.413), Q5_K 0.208 (Q5_1
    // 0.356), Q6_K 0.186, unrelated 1.41)
    for (ty, bound, legacy) in [(GgmlType::Q4K, 0.6, 1.25 * q4_1), (GgmlType::Q5K, 0.3, 1.25 * q5_1), (GgmlType::Q6K, 0.25, q5_1)] {
        let bytes = tiny_gguf(&spec(ty, 1));
        let g = Gguf::from_bytes(&bytes).unwrap();
        assert_eq!(g.tensor("blk.0.ffn_down.weight").unwrap().ty, ty);
        let l = logits(&bytes);
        assert!(l.iter().all(|v| v.is_finite()), "{ty:?}");
        let e = rel_rms(&l, &reference);
        let same = argmaxes(&l, vocab).iter().zip(argmaxes(&reference, vocab)).filter(|(a, b)| **a == *b).count();
        eprintln!("{ty:?}: logits' relative rms error vs F32 {e:.4}, top-1 agree {same}/{} (Q4_1 {q4_1:.3}, Q5_1 {q5_1:.3}, another model {unrelated:.3})", PROMPT.len());
        assert!(e < bound && e < legacy, "{ty:?}: relative rms error {e} (bounds {bound}, {legacy})");
        assert!(e < unrelated / 2.5, "{ty:?}: {e} is not far below an unrelated model's {unrelated}");
        errors.push(e);
    }
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "more bits, less error: {errors:?}");
}

/// The newer weight types run a model end to end: each loads, and its logits sit far nearer the
/// F32 model's than an unrelated model's do, in the order their bits promise.
#[test]
fn newer_weight_types_run_close_to_f32() {
    let reference = logits(&tiny_gguf(&spec(GgmlType::F32, 1)));
    let unrelated = rel_rms(&logits(&tiny_gguf(&spec(GgmlType::F32, 2))), &reference);
    let mut errors = vec![];
    for ty in [GgmlType::BF16, GgmlType::IQ4NL, GgmlType::IQ4XS, GgmlType::Q3K, GgmlType::Q2K] {
        let bytes = tiny_gguf(&spec(ty, 1));
        assert_eq!(Gguf::from_bytes(&bytes).unwrap().tensor("blk.0.ffn_down.weight").unwrap().ty, ty);
        let l = logits(&bytes);
        assert!(l.iter().all(|v| v.is_finite()), "{ty:?}");
        let e = rel_rms(&l, &reference);
        eprintln!("{ty:?}: logits' relative rms error vs F32 {e:.4} (another model {unrelated:.3})");
        errors.push(e);
    }
    let [bf16, iq4_nl, iq4_xs, q3_k, q2_k] = errors[..] else { unreachable!() };
    assert!(bf16 < 0.05, "BF16 {bf16}");
    assert!(iq4_nl < unrelated / 2.0 && iq4_xs < unrelated / 2.0, "IQ4_NL {iq4_nl}, IQ4_XS {iq4_xs}");
    assert!(q3_k < unrelated / 1.5 && q2_k < unrelated, "Q3_K {q3_k}, Q2_K {q2_k}");
    assert!(bf16 < iq4_nl && iq4_xs < q3_k && q3_k < q2_k, "{errors:?}");
}

#[test]
fn k_quantized_prefill_is_batch_independent() {
    // the Q8_K activations of a batch are quantized row by row: batching changes nothing
    let e = Arc::new(load(&tiny_gguf(&spec(GgmlType::Q4K, 3))).unwrap());
    let mut whole = Session::new(e.clone(), 64).unwrap();
    whole.feed(&PROMPT).unwrap();
    let mut one = Session::with_batch(e, 64, 1).unwrap();
    one.feed(&PROMPT).unwrap();
    assert_eq!(whole.logits(), one.logits());
}

#[test]
fn rows_that_are_not_whole_super_blocks_are_a_typed_error() {
    for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        // n_embd 64: attn_q has 64×64 = 4096 elements (16 super-blocks' worth) but rows of 64
        let bytes = tiny_gguf(&TinySpec { weight_type: ty, ..Default::default() });
        match load(&bytes) {
            Err(Error::TensorShape { name, .. }) => assert!(name.starts_with("blk.0."), "{ty:?}: {name}"),
            Err(e) => panic!("{ty:?}: unexpected error {e}"),
            Ok(_) => panic!("{ty:?}: loaded"),
        }
    }
}

#[test]
fn quantizing_to_k_types_falls_back_for_short_rows() {
    // n_ff 384: ffn_down's rows (384) are not whole super-blocks; everything else is
    let f32_model = tiny_gguf(&TinySpec { n_ff: 384, ..spec(GgmlType::F32, 4) });
    let reference = logits(&f32_model);
    for (ty, fallback) in [(GgmlType::Q4K, GgmlType::Q5_0), (GgmlType::Q5K, GgmlType::Q5_1), (GgmlType::Q6K, GgmlType::Q8_0)] {
        let mut out = Vec::new();
        let summary = hearth::quantize::quantize_gguf(&mut &f32_model[..], ty, &mut out).unwrap();
        let g = Gguf::from_bytes(&out).unwrap();
        assert_eq!(g.tensor("blk.0.ffn_up.weight").unwrap().ty, ty);
        assert_eq!(g.tensor("token_embd.weight").unwrap().ty, ty);
        assert_eq!(g.tensor("blk.1.ffn_down.weight").unwrap().ty, fallback);
        assert_eq!(g.tensor("blk.0.attn_norm.weight").unwrap().ty, GgmlType::F32);
        assert!(summary.contains(&format!("2 matrices in {} instead", fallback.name())), "{summary}");
        let e = rel_rms(&logits(&out), &reference);
        eprintln!("{ty:?} with {fallback:?} fallback: {e:.4}");
        assert!(e < 1.0, "{ty:?}: {e}");
    }
}


/// Kernel throughput, for the record: `cargo test --release --test kquants -- --ignored --nocapture`.
#[test]
#[ignore]
fn kernel_throughput() {
    use hearth::quant::{self, act_bytes, act_type};
    let (rows, cols) = (1024, 2048);
    let mut rng = Rng::new(9);
    let x: Vec<f32> = (0..cols).map(|_| rng.normal(1.0)).collect();
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.1)).collect();
    let types = [
        GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::IQ4NL, GgmlType::Q2K, GgmlType::Q3K,
        GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::IQ4XS, GgmlType::BF16,
    ];
    for ty in types {
        let at = act_type(ty).unwrap();
        let wq = hearth::quant::quantize::quantize(ty, &w).unwrap();
        let mut a = vec![0u8; act_bytes(at, cols)];
        quant::quantize_act(at, &x, &mut a);
        // one activation row (decode) and eight (a prefill tile): the best of 10 passes each
        let mut line = format!("{:6}", ty.name());
        for k in [1usize, 8] {
            let acts = vec![a.as_slice(); k];
            let mut best = f64::MAX;
            let mut out = vec![0f32; rows * k];
            for _ in 0..10 {
                let t = std::time::Instant::now();
                let ptrs: Vec<*mut f32> = (0..k).map(|i| out[i * rows..].as_mut_ptr()).collect();
                // SAFETY: each pointer has room for every row.
                unsafe { quant::dot_rows(ty, cols, &wq, &acts, &ptrs) };
                best = best.min(t.elapsed().as_secs_f64());
            }
            assert!(out.iter().all(|v| v.is_finite()), "{ty:?}");
            let elems = (rows * cols * k) as f64;
            line += &format!("  {k} row(s): {:6.2} Gelem/s ({:5.2} GB/s of weights)", elems / best / 1e9, wq.len() as f64 / best / 1e9);
        }
        println!("{line}");
    }
}

/// An independent reference for the block layouts: random blocks of every weight type candle
/// knows, dequantized by candle-core and by hearth, give the same floats. (Random bytes, with the
/// f16 scales set to finite values, so every bit pattern of the quants and sub-block scales is met.)
#[test]
fn dequantization_matches_candle_for_every_type_it_knows() {
    use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
    use candle_core::Device;
    use hearth::quant;
    let mut rng = Rng::new(21);
    // (type, candle's name for it, byte offsets of its f16 scales)
    let types: [(GgmlType, GgmlDType, &[usize]); 13] = [
        (GgmlType::F32, GgmlDType::F32, &[]),
        (GgmlType::F16, GgmlDType::F16, &[]),
        (GgmlType::BF16, GgmlDType::BF16, &[]),
        (GgmlType::Q4_0, GgmlDType::Q4_0, &[0]),
        (GgmlType::Q4_1, GgmlDType::Q4_1, &[0, 2]),
        (GgmlType::Q5_0, GgmlDType::Q5_0, &[0]),
        (GgmlType::Q5_1, GgmlDType::Q5_1, &[0, 2]),
        (GgmlType::Q8_0, GgmlDType::Q8_0, &[0]),
        (GgmlType::Q2K, GgmlDType::Q2K, &[80, 82]),
        (GgmlType::Q3K, GgmlDType::Q3K, &[108]),
        (GgmlType::Q4K, GgmlDType::Q4K, &[0, 2]),
        (GgmlType::Q5K, GgmlDType::Q5K, &[0, 2]),
        (GgmlType::Q6K, GgmlDType::Q6K, &[208]),
    ];
    for (ty, cty, scales) in types {
        assert_eq!((ty.block_len(), ty.block_bytes()), (cty.block_size(), cty.type_size()), "{ty:?}");
        let n = 4 * 256;
        let bb = ty.block_bytes();
        let mut raw: Vec<u8> = (0..n / ty.block_len() * bb).map(|_| rng.next() as u8).collect();
        for b in raw.chunks_exact_mut(bb) {
            for &at in scales {
                let v = rng.normal(0.5);
                b[at..at + 2].copy_from_slice(&quant::f16::to_le(v));
            }
        }
        if ty == GgmlType::F32 || ty == GgmlType::F16 || ty == GgmlType::BF16 {
            // finite values: random bits would hold NaNs with payloads
            let v: Vec<f32> = (0..n).map(|_| rng.normal(2.0)).collect();
            raw = quant::quantize::quantize(ty, &v).unwrap();
        }
        // candle reads the blocks in place: give it an 8-aligned copy
        let mut aligned = vec![0u64; raw.len().div_ceil(8)];
        // SAFETY: the u64 buffer holds at least raw.len() bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(aligned.as_mut_ptr() as *mut u8, raw.len()) };
        bytes.copy_from_slice(&raw);
        let theirs: Vec<f32> = qtensor_from_ggml(cty, bytes, vec![n], &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{ty:?}: candle: {e}"));
        let mut ours = vec![0f32; n];
        quant::dequantize_row(ty, &raw, &mut ours);
        assert_eq!(theirs.len(), n, "{ty:?}");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(a.is_finite(), "{ty:?} element {i}");
            // the same formulas in the same float order: the same bits
            assert_eq!(a.to_bits(), b.to_bits(), "{ty:?} element {i}: hearth {a} vs candle {b}");
        }
    }
}
