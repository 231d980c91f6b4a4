//! Every SIMD kernel against the plain scalar reference, on random blocks: bit-identical results
//! (the kernels share one canonical float order). Runs natively (AVX2 when the CPU has it) and in
//! wasm with simd128 (`cargo test --target wasm32-unknown-unknown --test kernels`, see build.sh).

use hearth::gguf::GgmlType;
use hearth::quant::{self, act_block_bytes, act_bytes, act_type, scalar, ActType};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Mostly small values with occasional outliers, like real weights and activations.
    fn value(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        if self.next() % 50 == 0 {
            u * 40.0
        } else {
            u * 2.0
        }
    }
}

const WEIGHT_TYPES: [GgmlType; 7] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::F32];

/// A quantized activation row as `quantize_act` lays it out; with `simd == false` its blocks come
/// from the scalar reference quantizer instead.
fn quantized_act(at: ActType, x: &[f32], simd: bool) -> Vec<u8> {
    let mut out = vec![0u8; act_bytes(at, x.len())];
    quant::quantize_act(at, x, &mut out);
    let blocks = act_block_bytes(at, x.len());
    match (at, simd) {
        (ActType::Q8_0, false) => scalar::quantize_q8_0(x, quant::as_blocks_mut(&mut out[..blocks])),
        (ActType::Q8_1, false) => scalar::quantize_q8_1(x, quant::as_blocks_mut(&mut out[..blocks])),
        _ => {}
    }
    out
}

/// The blocks of an activation row, for the scalar reference.
fn block_part(at: ActType, n: usize, a: &[u8]) -> &[u8] {
    &a[..act_block_bytes(at, n)]
}

#[test]
fn activation_quantizers_match_the_reference() {
    let mut rng = Rng(7);
    for at in [ActType::Q8_0, ActType::Q8_1] {
        for blocks in 1..=12 {
            let mut x: Vec<f32> = (0..blocks * 32).map(|_| rng.value()).collect();
            x[..32].fill(0.0); // an all-zero block
            let (fast, reference) = (quantized_act(at, &x, true), quantized_act(at, &x, false));
            assert_eq!(fast, reference, "{at:?}, {blocks} blocks");
            // the f32 scale arrays hold the blocks' f16 scales
            let nb = x.len() / 32;
            let b = act_block_bytes(at, x.len());
            let bs = b / nb;
            for i in 0..nb {
                let d = f32::from_le_bytes(fast[b + 4 * i..b + 4 * i + 4].try_into().unwrap());
                assert_eq!(d, hearth::quant::f16::le([fast[i * bs], fast[i * bs + 1]]));
            }
        }
    }
}

#[test]
fn dot_kernels_are_bit_identical_to_the_reference() {
    let mut rng = Rng(42);
    let mut checked = 0;
    for ty in WEIGHT_TYPES {
        let at = act_type(ty).unwrap();
        for blocks in 1..=13 {
            for _ in 0..20 {
                let n = blocks * 32;
                let w: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                let wq = quant::quantize::quantize(ty, &w).unwrap();
                let xq = quantized_act(at, &x, false);
                let reference = scalar::vec_dot(ty, n, &wq, block_part(at, n, &xq));
                let fast = quant::vec_dot(ty, n, &wq, &xq);
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?}, {blocks} blocks: {fast} vs {reference}");
                // and the reference means what it should: close to the dequantized product
                let mut wd = vec![0f32; n];
                let mut xd = vec![0f32; n];
                quant::dequantize_row(ty, &wq, &mut wd);
                match at {
                    ActType::F32 => xd.copy_from_slice(&x),
                    ActType::Q8_0 => quant::dequantize_row(GgmlType::Q8_0, block_part(at, n, &xq), &mut xd),
                    ActType::Q8_1 => {
                        // Q8_1 = d, s, 32 × i8: dequantize the values by hand
                        for (o, b) in xd.chunks_exact_mut(32).zip(block_part(at, n, &xq).chunks_exact(36)) {
                            let d = hearth::quant::f16::le([b[0], b[1]]);
                            o.iter_mut().zip(&b[4..]).for_each(|(o, &q)| *o = q as i8 as f32 * d);
                        }
                    }
                }
                let exact: f64 = wd.iter().zip(&xd).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = wd.iter().zip(&xd).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>() + 1e-6;
                // (the activation sum `s` of Q8_1 is stored as f16: allow for its rounding)
                assert!(((reference as f64) - exact).abs() / scale < 1e-2, "{ty:?}: {reference} vs {exact}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, WEIGHT_TYPES.len() * 13 * 20);
}

/// The batched entry point (several weight rows against up to MAX_ROWS activation rows, the
/// prefill path) gives, row for row, exactly the single-row reference.
#[test]
fn batched_kernels_equal_the_reference_row_by_row() {
    let mut rng = Rng(5);
    for ty in WEIGHT_TYPES {
        let at = act_type(ty).unwrap();
        for blocks in [1, 3, 4, 5, 8, 18] {
            let n = blocks * 32;
            let weight_rows = 3;
            let w: Vec<f32> = (0..n * weight_rows).map(|_| rng.value()).collect();
            let wq = quant::quantize::quantize(ty, &w).unwrap();
            let rb = wq.len() / weight_rows;
            for k in 1..=quant::MAX_ROWS {
                let rows: Vec<Vec<u8>> =
                    (0..k).map(|_| quantized_act(at, &(0..n).map(|_| rng.value()).collect::<Vec<_>>(), false)).collect();
                let refs: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
                let mut out = vec![f32::NAN; k * weight_rows];
                let ptrs: Vec<*mut f32> = (0..k).map(|t| out[t * weight_rows..].as_mut_ptr()).collect();
                // SAFETY: each pointer has room for `weight_rows` floats.
                unsafe { quant::dot_rows(ty, n, &wq, &refs, &ptrs) };
                for (t, row) in rows.iter().enumerate() {
                    for r in 0..weight_rows {
                        let reference = scalar::vec_dot(ty, n, &wq[r * rb..(r + 1) * rb], block_part(at, n, row));
                        let got = out[t * weight_rows + r];
                        assert_eq!(got.to_bits(), reference.to_bits(), "{ty:?}, {blocks} blocks, weight row {r}, act row {t} of {k}");
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_kernels_are_bit_identical_to_the_reference() {
    use hearth::quant::{as_blocks, avx2};
    if !avx2::available() {
        eprintln!("skipped: no AVX2 on this CPU");
        return;
    }
    let mut rng = Rng(3);
    for blocks in 1..=13 {
        let n = blocks * 32;
        let w: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        let q8_0 = quantized_act(ActType::Q8_0, &x, false);
        let q8_1 = quantized_act(ActType::Q8_1, &x, false);
        let q = |t| quant::quantize::quantize(t, &w).unwrap();
        // SAFETY: AVX2 is available (checked above).
        unsafe {
            let cases = [
                (GgmlType::Q4_0, avx2::dot_q4_0(as_blocks(&q(GgmlType::Q4_0)), &q8_0), &q8_0),
                (GgmlType::Q4_1, avx2::dot_q4_1(as_blocks(&q(GgmlType::Q4_1)), &q8_1), &q8_1),
                (GgmlType::Q5_0, avx2::dot_q5_0(as_blocks(&q(GgmlType::Q5_0)), &q8_0), &q8_0),
                (GgmlType::Q5_1, avx2::dot_q5_1(as_blocks(&q(GgmlType::Q5_1)), &q8_1), &q8_1),
                (GgmlType::Q8_0, avx2::dot_q8_0(as_blocks(&q(GgmlType::Q8_0)), &q8_0), &q8_0),
            ];
            for (ty, fast, act) in cases {
                let at = act_type(ty).unwrap();
                let reference = scalar::vec_dot(ty, n, &q(ty), block_part(at, n, act));
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?}, {blocks} blocks");
            }
        }
    }
}

#[test]
fn weight_quantizers_round_trip_within_their_step() {
    let mut rng = Rng(11);
    let x: Vec<f32> = (0..32 * 64).map(|_| rng.value()).collect();
    for (ty, levels) in [(GgmlType::Q4_0, 16.0), (GgmlType::Q4_1, 15.0), (GgmlType::Q5_0, 32.0), (GgmlType::Q5_1, 31.0), (GgmlType::Q8_0, 254.0)] {
        let q = quant::quantize::quantize(ty, &x).unwrap();
        assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
        let mut y = vec![0f32; x.len()];
        quant::dequantize_row(ty, &q, &mut y);
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let range = xb.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
            let step = range / levels;
            for (a, b) in xb.iter().zip(yb) {
                // within one step (the symmetric formats clamp the largest positive value one step short)
                assert!((a - b).abs() <= step * 1.01 + 1e-3 * range, "{ty:?}: {a} → {b} (step {step})");
            }
        }
    }
}
