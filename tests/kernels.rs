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
        if self.next().is_multiple_of(50) {
            u * 40.0
        } else {
            u * 2.0
        }
    }
}

const WEIGHT_TYPES: [GgmlType; 15] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4NL,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::IQ4XS,
    GgmlType::BF16,
    GgmlType::F16,
    GgmlType::F32,
];

/// Byte offsets of a block's f16 scale fields (d, and dmin or m where the format has one).
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
        Q4_0 | Q5_0 | Q8_0 | IQ4NL | IQ4XS => &[0],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
        _ => &[],
    }
}

/// `blocks` random blocks of `ty`: every byte random except the f16 scales, which are finite
/// (±2^-9 .. ±2^1), so every bit pattern of the quants and sub-block scales is met.
fn random_blocks(ty: GgmlType, blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut w: Vec<u8> = (0..blocks * bb).map(|_| rng.next() as u8).collect();
    for b in w.chunks_exact_mut(bb) {
        for &at in scale_fields(ty) {
            let v = rng.value().signum() * (0.002 + (rng.next() % 1000) as f32 / 500.0);
            b[at..at + 2].copy_from_slice(&quant::f16::to_le(v));
        }
    }
    w
}

/// Elements per block of a weight type's kernel (F32/F16 are tested in blocks of 32).
fn block_len(ty: GgmlType) -> usize {
    ty.block_len().max(32)
}

/// BF16 activations back to f32.
fn dequantize_bf16(a: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(a.chunks_exact(2)) {
        *o = quant::bf16::to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Q8_K activations back to f32 (q·d per super-block).
fn dequantize_q8_k(a: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(256).zip(a.chunks_exact(292)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        o.iter_mut().zip(&b[4..260]).for_each(|(o, &q)| *o = q as i8 as f32 * d);
    }
}

/// A quantized activation row as `quantize_act` lays it out; with `simd == false` its blocks come
/// from the scalar reference quantizer instead.
fn quantized_act(at: ActType, x: &[f32], simd: bool) -> Vec<u8> {
    let mut out = vec![0u8; act_bytes(at, x.len())];
    quant::quantize_act(at, x, &mut out);
    let blocks = act_block_bytes(at, x.len());
    match (at, simd) {
        (ActType::Q8_0, false) => scalar::quantize_q8_0(x, quant::as_blocks_mut(&mut out[..blocks])),
        (ActType::Q8_1, false) => scalar::quantize_q8_1(x, quant::as_blocks_mut(&mut out[..blocks])),
        (ActType::Q8K, false) => scalar::quantize_q8_k(x, quant::as_blocks_mut(&mut out[..blocks])),
        _ => {}
    }
    out
}

/// The blocks of an activation row, for the scalar reference.
fn block_part(at: ActType, n: usize, a: &[u8]) -> &[u8] {
    &a[..act_block_bytes(at, n)]
}

/// Runs `f` for each form of the kernels' one-activation-row (decode) path: in wasm without and
/// with `touch` reads (`simd128::set_touch`, chosen per machine when a model loads; left on, the
/// default), elsewhere once.
fn each_touch_form(f: impl Fn()) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    for on in [false, true] {
        hearth::quant::simd128::set_touch(on);
        f();
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    f();
}

#[test]
fn activation_quantizers_match_the_reference() {
    let mut rng = Rng(7);
    for at in [ActType::Q8_0, ActType::Q8_1] {
        for blocks in 1..=12 {
            let mut x: Vec<f32> = (0..blocks * 32).map(|_| rng.value()).collect();
            x[..32].fill(0.0); // an all-zero block
            if blocks >= 4 {
                // ties (id = 1: round to even), a NaN (skipped by the max, quantized to 0), an inf
                x[32..40].copy_from_slice(&[127.0, 2.5, -3.5, 0.5, -0.5, 1.5, -126.5, 3.0]);
                x[64 + 5] = f32::NAN;
                x[96 + 9] = f32::INFINITY;
            }
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
fn q8_k_activations_are_ggml_s() {
    let mut rng = Rng(5);
    for blocks in 1..=6 {
        let n = blocks * 256;
        let mut x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        x[..256].fill(0.0); // an all-zero block
        let a = quantized_act(ActType::Q8K, &x, true);
        assert_eq!(a.len(), blocks * 292);
        assert_eq!(a, quantized_act(ActType::Q8K, &x, false));
        for (xb, b) in x.chunks_exact(256).zip(quant::as_blocks::<quant::BlockQ8K>(&a)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = b.d();
            if amax == 0.0 {
                assert_eq!(d, 0.0);
                assert!(b.qs.iter().all(|&q| q == 0) && (0..16).all(|j| b.bsum(j) == 0));
                continue;
            }
            // the largest magnitude maps to −127 (ggml's iscale = −127/max)
            let i = xb.iter().position(|v| v.abs() == amax).unwrap();
            assert_eq!(b.qs[i], -127);
            for (j, (&v, &q)) in xb.iter().zip(&b.qs).enumerate() {
                assert!((q as f32 * d - v).abs() <= d.abs() * 0.5001, "element {j}: {v} → {q}·{d}");
            }
            for j in 0..16 {
                assert_eq!(b.bsum(j), b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum::<i32>());
            }
        }
    }
}

/// The SIMD Q8_K quantizer at its edges: NaN (skipped by the max, quantized to 0), ±inf, ties,
/// the largest magnitude met twice with both signs (the first decides the scale's sign).
#[test]
fn q8_k_quantizer_matches_the_reference_at_the_edges() {
    let mut rng = Rng(23);
    let mut cases: Vec<Vec<f32>> = vec![];
    for k in 0..8 {
        let mut x: Vec<f32> = (0..512).map(|_| rng.value()).collect();
        match k {
            0 => x[7] = f32::NAN,
            1 => x[300] = f32::INFINITY,
            2 => x[5] = f32::NEG_INFINITY,
            3 => (x[10], x[11]) = (-30.0, 30.0),
            4 => (x[10], x[11]) = (30.0, -30.0),
            5 => x[..256].iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32 - 127.0) * 0.5), // ties
            6 => x[256..].fill(-0.0),
            _ => x[100] = 1e-40,
        }
        cases.push(x);
    }
    for x in cases {
        let (fast, reference) = (quantized_act(ActType::Q8K, &x, true), quantized_act(ActType::Q8K, &x, false));
        assert_eq!(fast, reference, "{:?}", &x[..12]);
    }
}

#[test]
fn dot_kernels_are_bit_identical_to_the_reference() {
    each_touch_form(|| {
        let mut rng = Rng(42);
        let mut checked = 0;
        for ty in WEIGHT_TYPES {
            let at = act_type(ty).unwrap();
            for blocks in 1..=13 {
                for _ in 0..20 {
                    let n = blocks * block_len(ty);
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
                        ActType::BF16 => dequantize_bf16(&xq, &mut xd),
                        ActType::Q8_0 => quant::dequantize_row(GgmlType::Q8_0, block_part(at, n, &xq), &mut xd),
                        ActType::Q8_1 => {
                            // Q8_1 = d, s, 32 × i8: dequantize the values by hand
                            for (o, b) in xd.chunks_exact_mut(32).zip(block_part(at, n, &xq).chunks_exact(36)) {
                                let d = hearth::quant::f16::le([b[0], b[1]]);
                                o.iter_mut().zip(&b[4..]).for_each(|(o, &q)| *o = q as i8 as f32 * d);
                            }
                        }
                        ActType::Q8K => dequantize_q8_k(block_part(at, n, &xq), &mut xd),
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
    });
}

/// Random blocks (every byte random but the scales; see `random_blocks`) against random
/// activations: the kernels meet every bit pattern of quants, high bits and sub-block scales.
#[test]
fn kernels_are_bit_identical_to_the_reference_on_random_blocks() {
    each_touch_form(|| {
        let mut rng = Rng(77);
        for ty in WEIGHT_TYPES.into_iter().filter(|t| !scale_fields(*t).is_empty()) {
            let at = act_type(ty).unwrap();
            for blocks in [1, 2, 3, 4, 5, 7, 8, 9, 16] {
                for _ in 0..10 {
                    let n = blocks * ty.block_len();
                    let wq = random_blocks(ty, blocks, &mut rng);
                    let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                    let xq = quantized_act(at, &x, false);
                    let reference = scalar::vec_dot(ty, n, &wq, block_part(at, n, &xq));
                    assert!(reference.is_finite(), "{ty:?}");
                    let fast = quant::vec_dot(ty, n, &wq, &xq);
                    assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?}, {blocks} blocks: {fast} vs {reference}");
                }
            }
        }
    });
}

/// BF16 rows of every length 1..=100 (whole 32-lane steps and every tail), with values whose
/// products underflow or overflow f32, give the reference's bits.
#[test]
fn bf16_kernel_matches_the_reference_at_every_length() {
    let mut rng = Rng(31);
    for n in 1..=100 {
        let mut w: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        if n > 40 {
            w[3] = 1e-30; // × activation: an f32 subnormal product
            w[37] = 1e30;
        }
        let wq = quant::quantize::quantize(GgmlType::BF16, &w).unwrap();
        let xq = quantized_act(ActType::BF16, &x, false);
        assert_eq!(xq.len(), 2 * n);
        let reference = scalar::vec_dot(GgmlType::BF16, n, &wq, &xq);
        let fast = quant::vec_dot(GgmlType::BF16, n, &wq, &xq);
        assert_eq!(fast.to_bits(), reference.to_bits(), "n {n}: {fast} vs {reference}");
        // and the reference is the product of the bf16-rounded values
        let exact: f64 = (0..n).map(|i| quant::bf16::to_f32(quant::bf16::from_f32(w[i])) as f64 * quant::bf16::to_f32(quant::bf16::from_f32(x[i])) as f64).sum();
        assert!((reference as f64 - exact).abs() <= 1e-5 * exact.abs().max(1.0), "n {n}: {reference} vs {exact}");
    }
}

/// Weight blocks whose scale or minimum is inf, NaN or subnormal (a hostile or odd file) still give
/// the reference's result: the kernels' short scale conversions hand such blocks to the general one.
#[test]
fn kernels_handle_special_scales_like_the_reference() {
    let mut rng = Rng(99);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::IQ4NL] {
        let at = act_type(ty).unwrap();
        let bb = ty.block_bytes();
        for special in [0x7c00u16, 0xfc00, 0x7e01, 0x0001, 0x83ff, 0x0000] {
            for (which, at_block) in [(0usize, 0usize), (0, 5), (2, 3)] {
                if which == 2 && !matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    continue; // only these have a minimum (bytes 2..4)
                }
                let n = 8 * 32;
                let w: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                let mut wq = quant::quantize::quantize(ty, &w).unwrap();
                wq[at_block * bb + which..at_block * bb + which + 2].copy_from_slice(&special.to_le_bytes());
                let xq = quantized_act(at, &x, false);
                let reference = scalar::vec_dot(ty, n, &wq, block_part(at, n, &xq));
                let fast = quant::vec_dot(ty, n, &wq, &xq);
                assert!(
                    fast.to_bits() == reference.to_bits() || (fast.is_nan() && reference.is_nan()),
                    "{ty:?} scale {special:#06x} at byte {which} of block {at_block}: {fast} vs {reference}"
                );
            }
        }
    }
}

/// The batched entry point (several weight rows against up to MAX_ROWS activation rows, the
/// prefill path) gives, row for row, exactly the single-row reference.
#[test]
fn batched_kernels_equal_the_reference_row_by_row() {
    each_touch_form(|| {
        let mut rng = Rng(5);
        for ty in WEIGHT_TYPES {
            let at = act_type(ty).unwrap();
            for blocks in [1, 3, 4, 5, 8, 18] {
                let n = blocks * block_len(ty);
                // wasm's K-quant kernels take weight rows four at a time: a whole group and 3 left over
                let weight_rows = 7;
                let w: Vec<f32> = (0..n * weight_rows).map(|_| rng.value()).collect();
                let wq = quant::quantize::quantize(ty, &w).unwrap();
                let rb = wq.len() / weight_rows;
                for k in (1..=quant::MAX_ROWS).chain([6, 11]) {
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
    });
}

/// Random K-quant weights — `weight_rows` rows of `nb` super-blocks, every bit pattern of quants
/// and sub-block scales; with `nb == 6` special f16 scales (inf, NaN, subnormal, zero, −inf, a
/// negative subnormal) in some blocks — and 8 Q8_K activation rows.
fn k_case(ty: GgmlType, nb: usize, weight_rows: usize, rng: &mut Rng) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bb = ty.block_bytes();
    let mut w = random_blocks(ty, nb * weight_rows, rng);
    if nb == 6 {
        for (b, sp) in [(1usize, 0x7c00u16), (5, 0x7e01), (7, 0x0001), (9, 0x0000), (16, 0xfc00), (40, 0x83ff)] {
            for &f in scale_fields(ty) {
                w[b * bb + f..b * bb + f + 2].copy_from_slice(&sp.to_le_bytes());
            }
        }
    }
    let n = nb * 256;
    let acts = (0..8).map(|_| quantized_act(ActType::Q8K, &(0..n).map(|_| rng.value()).collect::<Vec<_>>(), false)).collect();
    (w, acts)
}

/// `out[t * weight_rows + r]` is row r of `w` · `acts[t]` as the scalar reference computes it, bit
/// for bit (a NaN for a NaN), for the first `k` activation rows.
fn assert_k_rows(what: &str, ty: GgmlType, nb: usize, w: &[u8], acts: &[Vec<u8>], k: usize, out: &[f32]) {
    let rb = nb * ty.block_bytes();
    let weight_rows = w.len() / rb;
    for t in 0..k {
        for r in 0..weight_rows {
            let reference = scalar::vec_dot(ty, nb * 256, &w[r * rb..(r + 1) * rb], &acts[t]);
            let got = out[t * weight_rows + r];
            assert!(
                got.to_bits() == reference.to_bits() || (got.is_nan() && reference.is_nan()),
                "{what} {ty:?}, {nb} super-blocks, weight row {r}, act row {t} of {k}: {got} vs {reference}"
            );
        }
    }
}

/// The K-quant kernels as the engine calls them (`dot_rows`, whichever SIMD the target has: wasm's
/// four-row tiles, AVX2, AVX-512): random super-blocks, 9 weight rows (whole groups of four and one
/// left over), 1..8 activation rows, and special f16 scales in some blocks (`k_case`), each equal
/// bit for bit to the scalar reference row by row.
#[test]
fn k_kernels_equal_the_reference_on_random_and_special_blocks() {
    each_touch_form(|| {
        let mut rng = Rng(77);
        for ty in [GgmlType::Q2K, GgmlType::Q3K, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::IQ4XS] {
            for nb in [1usize, 3, 6] {
                let weight_rows = 9;
                let (w, acts) = k_case(ty, nb, weight_rows, &mut rng);
                for k in [1usize, 2, 3, 4, 5, 8] {
                    let refs: Vec<&[u8]> = acts[..k].iter().map(|a| a.as_slice()).collect();
                    let mut out = vec![f32::NAN; k * weight_rows];
                    let ptrs: Vec<*mut f32> = (0..k).map(|t| out[t * weight_rows..].as_mut_ptr()).collect();
                    // SAFETY: each pointer has room for `weight_rows` floats.
                    unsafe { quant::dot_rows(ty, nb * 256, &w, &refs, &ptrs) };
                    assert_k_rows("dot_rows", ty, nb, &w, &acts, k, &out);
                }
            }
        }
    });
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
        // the K-quants over `blocks` super-blocks of 256
        let nk = blocks * 256;
        let wk: Vec<f32> = (0..nk).map(|_| rng.value()).collect();
        let xk: Vec<f32> = (0..nk).map(|_| rng.value()).collect();
        let q8k = quantized_act(ActType::Q8K, &xk, false);
        let qk = |t| quant::quantize::quantize(t, &wk).unwrap();
        let q = |t| quant::quantize::quantize(t, &w).unwrap();
        // SAFETY: AVX2 is available (checked above).
        unsafe {
            let cases = [
                (GgmlType::Q4_0, avx2::dot_q4_0(as_blocks(&q(GgmlType::Q4_0)), &q8_0), &q8_0),
                (GgmlType::Q4_1, avx2::dot_q4_1(as_blocks(&q(GgmlType::Q4_1)), &q8_1), &q8_1),
                (GgmlType::Q5_0, avx2::dot_q5_0(as_blocks(&q(GgmlType::Q5_0)), &q8_0), &q8_0),
                (GgmlType::Q5_1, avx2::dot_q5_1(as_blocks(&q(GgmlType::Q5_1)), &q8_1), &q8_1),
                (GgmlType::Q8_0, avx2::dot_q8_0(as_blocks(&q(GgmlType::Q8_0)), &q8_0), &q8_0),
                (GgmlType::IQ4NL, avx2::dot_iq4_nl(as_blocks(&q(GgmlType::IQ4NL)), &q8_0), &q8_0),
            ];
            for (ty, fast, act) in cases {
                let at = act_type(ty).unwrap();
                let reference = scalar::vec_dot(ty, n, &q(ty), block_part(at, n, act));
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?}, {blocks} blocks");
            }
            let cases = [
                (GgmlType::Q4K, avx2::dot_q4_k(as_blocks(&qk(GgmlType::Q4K)), as_blocks(&q8k))),
                (GgmlType::Q5K, avx2::dot_q5_k(as_blocks(&qk(GgmlType::Q5K)), as_blocks(&q8k))),
                (GgmlType::Q6K, avx2::dot_q6_k(as_blocks(&qk(GgmlType::Q6K)), as_blocks(&q8k))),
                (GgmlType::Q2K, avx2::dot_q2_k(as_blocks(&qk(GgmlType::Q2K)), as_blocks(&q8k))),
                (GgmlType::Q3K, avx2::dot_q3_k(as_blocks(&qk(GgmlType::Q3K)), as_blocks(&q8k))),
                (GgmlType::IQ4XS, avx2::dot_iq4_xs(as_blocks(&qk(GgmlType::IQ4XS)), as_blocks(&q8k))),
            ];
            for (ty, fast) in cases {
                let reference = scalar::vec_dot(ty, nk, &qk(ty), &q8k);
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?}, {blocks} super-blocks");
            }
            let bf = |v: &[f32]| quant::quantize::quantize(GgmlType::BF16, v).unwrap();
            let (wb, xb) = (bf(&w), bf(&x));
            let fast = avx2::dot_bf16(n, &wb, &xb);
            assert_eq!(fast.to_bits(), scalar::vec_dot(GgmlType::BF16, n, &wb, &xb).to_bits(), "BF16, {n} values");
        }
    }
}

/// The x86 K-quant kernels called directly (not through the dispatch, which prefers AVX-512 where the
/// CPU has it): random super-blocks (every bit pattern of quants and sub-block scales), rows of 1..13
/// super-blocks (whole groups of four and every tail), 19 weight rows (16-row tiles and the rest),
/// 1..8 activation rows at once, and special
/// f16 scales (inf, NaN, subnormal), each equal bit for bit to the scalar reference.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_k_kernels_are_bit_identical_to_the_reference_batched() {
    use hearth::quant::{as_blocks, avx2, avx512, BlockQ4K, BlockQ6K};
    if !avx2::available() {
        eprintln!("skipped: no AVX2 on this CPU");
        return;
    }
    let has512 = avx512::available();
    if !has512 {
        eprintln!("AVX-512 kernels skipped: no AVX-512 BW/VL/VNNI on this CPU (or HEARTH_NO_AVX512 set)");
    }
    type Rows = unsafe fn(GgmlType, &[u8], usize, &[&[u8]], &mut [f32]);
    /// A `rows_*` kernel for `N` activation rows.
    type Kernel<B, const N: usize> = unsafe fn(&[B], usize, [&[u8]; N], [*mut f32; N]);
    // (kernel, weights, super-blocks per row, activation rows, out: t * weight_rows + r)
    unsafe fn run<B: hearth::quant::Block, const N: usize>(
        f: Kernel<B, N>,
        w: &[u8],
        nb: usize,
        acts: &[&[u8]],
        out: &mut [f32],
    ) {
        let rows = w.len() / (nb * std::mem::size_of::<B>());
        let a: [&[u8]; N] = std::array::from_fn(|t| acts[t]);
        let o: [*mut f32; N] = std::array::from_fn(|t| out[t * rows..].as_mut_ptr());
        f(as_blocks(w), nb, a, o)
    }
    macro_rules! rows_fn {
        ($m:ident) => {{
            unsafe fn go(ty: GgmlType, w: &[u8], nb: usize, acts: &[&[u8]], out: &mut [f32]) {
                macro_rules! n {
                    ($B:ty, $f:ident) => {
                        match acts.len() {
                            1 => run::<$B, 1>($m::$f::<1>, w, nb, acts, out),
                            2 => run::<$B, 2>($m::$f::<2>, w, nb, acts, out),
                            3 => run::<$B, 3>($m::$f::<3>, w, nb, acts, out),
                            4 => run::<$B, 4>($m::$f::<4>, w, nb, acts, out),
                            8 => run::<$B, 8>($m::$f::<8>, w, nb, acts, out),
                            k => panic!("{k} rows"),
                        }
                    };
                }
                match ty {
                    GgmlType::Q4K => n!(BlockQ4K, rows_q4_k),
                    GgmlType::Q6K => n!(BlockQ6K, rows_q6_k),
                    _ => unreachable!(),
                }
            }
            go as Rows
        }};
    }
    let mut kernels: Vec<(&str, Rows)> = vec![("avx2", rows_fn!(avx2))];
    if has512 {
        kernels.push(("avx512", rows_fn!(avx512)));
    }
    let mut rng = Rng(2024);
    for ty in [GgmlType::Q4K, GgmlType::Q6K] {
        for nb in 1..=13 {
            // 19 rows: a group of 16 (the 16-row tiles) and 3 left over
            let weight_rows = 19;
            let (w, acts) = k_case(ty, nb, weight_rows, &mut rng);
            for k in [1usize, 2, 3, 4, 8] {
                let refs: Vec<&[u8]> = acts[..k].iter().map(|a| a.as_slice()).collect();
                for (name, f) in &kernels {
                    let mut out = vec![f32::NAN; k * weight_rows];
                    // SAFETY: the kernel's CPU features were checked; out has k × weight_rows floats.
                    unsafe { f(ty, &w, nb, &refs, &mut out) };
                    assert_k_rows(name, ty, nb, &w, &acts, k, &out);
                }
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

/// Extreme blocks for the K-quant kernels: every bit pattern of quants and scales at its limits
/// (all-ones nibbles and high bits, scales 63 / ±127/−128, activations ±127), where an overflow or
/// a sign slip in a SIMD kernel would show.
#[test]
fn k_kernels_are_exact_at_the_extremes() {
    let mut rng = Rng(99);
    for ty in [GgmlType::Q2K, GgmlType::Q3K, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::IQ4XS] {
        let bytes = ty.block_bytes();
        for fill in [0x00u8, 0xff, 0x55, 0xaa, 0x80, 0x7f] {
            for act in [127i8, -127, 0] {
                let n = 4 * 256 + 256; // five super-blocks: one past the groups of four
                let mut w = vec![fill; n / 256 * bytes];
                for b in w.chunks_exact_mut(bytes) {
                    // finite f16 scales
                    for (i, &at) in scale_fields(ty).iter().enumerate() {
                        b[at..at + 2].copy_from_slice(&hearth::quant::f16::to_le(0.01 * (i + 1) as f32));
                    }
                }
                let mut x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
                let mut a = quantized_act(ActType::Q8K, &x, false);
                for blk in quant::as_blocks_mut::<quant::BlockQ8K>(&mut a) {
                    blk.qs = [act; 256];
                    for s in blk.bsums.iter_mut() {
                        *s = (16 * act as i16).to_le_bytes();
                    }
                }
                let reference = scalar::vec_dot(ty, n, &w, &a);
                let fast = quant::vec_dot(ty, n, &w, &a);
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?} fill {fill:#x} act {act}: {fast} vs {reference}");
                // and against the dequantized weights
                let mut wd = vec![0f32; n];
                quant::dequantize_row(ty, &w, &mut wd);
                dequantize_q8_k(&a, &mut x);
                let exact: f64 = wd.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = wd.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>() + 1e-6;
                assert!(((reference as f64) - exact).abs() / scale < 1e-5, "{ty:?} fill {fill:#x}: {reference} vs {exact}");
            }
        }
    }
}

/// The block layouts are ggml's: random super-blocks dequantize to exactly the floats llama.cpp's
/// own gguf-py computes for them (tests/fixtures/kquants_ggml.py writes the fixture).
#[test]
fn k_dequantization_matches_ggml_to_the_float() {
    let hex = |s: &str| -> Vec<u8> { (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect() };
    let mut seen = 0;
    for line in include_str!("fixtures/kquants_ggml.txt").lines() {
        let mut f = line.split_whitespace();
        let ty = GgmlType::from_name(f.next().unwrap()).unwrap();
        let blocks = hex(f.next().unwrap());
        let expected: Vec<f32> = hex(f.next().unwrap()).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(blocks.len() / ty.block_bytes() * 256, expected.len());
        let mut out = vec![0f32; expected.len()];
        quant::dequantize_row(ty, &blocks, &mut out);
        for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty:?} element {i}: {a} vs ggml {b}");
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn k_weight_quantizers_round_trip() {
    let mut rng = Rng(13);
    let x: Vec<f32> = (0..256 * 32).map(|_| rng.value()).collect();
    let rms = |a: &[f32], b: &[f32]| (a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    let x_rms = rms(&x, &vec![0.0; x.len()]);
    let mut errors = vec![];
    // (type, bound on the rms error relative to the data's, levels per sub-block for the max bound)
    let legacy: Vec<f64> = [GgmlType::Q4_1, GgmlType::Q5_1]
        .into_iter()
        .map(|ty| {
            let mut y = vec![0f32; x.len()];
            quant::dequantize_row(ty, &quant::quantize::quantize(ty, &x).unwrap(), &mut y);
            rms(&x, &y) / x_rms
        })
        .collect();
    for (ty, rel, levels) in [(GgmlType::Q4K, 0.12, 15.0), (GgmlType::Q5K, 0.06, 31.0), (GgmlType::Q6K, 0.04, 63.0)] {
        let q = quant::quantize::quantize(ty, &x).unwrap();
        assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
        let mut y = vec![0f32; x.len()];
        quant::dequantize_row(ty, &q, &mut y);
        let e = rms(&x, &y) / x_rms;
        eprintln!("{ty:?}: relative rms error {e:.4}");
        assert!(e < rel, "{ty:?}: relative rms error {e}");
        // no element off by more than about a step of its super-block's widest sub-block
        for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
            let range = xb.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= 1.5 * range / levels, "{ty:?}: {a} → {b}");
            }
        }
        errors.push(e);
    }
    // more bits, less error; and with the scale search, 6-bit sub-block scales beat Q4_1/Q5_1's f16 ones
    // (measured: Q4_K 0.105 vs Q4_1 0.114, Q5_K 0.052 vs Q5_1 0.055, Q6_K 0.032)
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    assert!(errors[0] < legacy[0] && errors[1] < legacy[1], "{errors:?} vs Q4_1, Q5_1 {legacy:?}");
    // an all-zero and a constant super-block are exact
    for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        for c in [0.0f32, -0.5] {
            let x = vec![c; 256];
            let mut y = vec![1f32; 256];
            quant::dequantize_row(ty, &quant::quantize::quantize(ty, &x).unwrap(), &mut y);
            assert!(y.iter().all(|&v| (v - c).abs() <= 1e-3), "{ty:?} constant {c}: {:?}", &y[..4]);
        }
    }
}

/// Random attention data: queries, and one KV head's f16 cache of `len` rows of `hd` values (with
/// some f16 subnormals, zeros and a dead channel, so the vector versions' special paths run too).
fn attention_case(rng: &mut Rng, heads: usize, hd: usize, len: usize) -> (Vec<f32>, Vec<u16>, Vec<u16>) {
    let q: Vec<f32> = (0..heads * hd).map(|_| rng.value()).collect();
    let mut cache = |dead: usize| -> Vec<u16> {
        (0..len * hd)
            .map(|i| {
                let x = match rng.next() % 40 {
                    0 => rng.value() * 1e-6,
                    1 => 0.0,
                    _ => rng.value() * 3.0,
                };
                quant::f16::from_f32(if i % hd == dead { 0.0 } else { x })
            })
            .collect()
    };
    let (k, v) = (cache(usize::MAX), cache(3));
    (q, k, v)
}

/// The attention loop (f16 value accumulator rounded every step) in vectors — AVX2+F16C natively,
/// simd128 in wasm — gives exactly the scalar reference's outputs, for units of several tokens and
/// heads over a cache split in two runs (a ring that wraps) and with a sliding window; and every
/// lane of such a unit equals that lane alone (one token, one head) over a contiguous copy of just
/// the rows it sees, so the shared blocks, spans and runs change nothing.
#[test]
fn attention_is_bit_identical_to_the_reference() {
    use hearth::attn::{attend, attend_scalar, State, Unit};
    let mut rng = Rng(0x5eed_a77e);
    const ALL: usize = usize::MAX;
    // (heads, hd, tokens, end, window, rows in the first run, value scale); the two smallest
    // scales put the accumulator in f16's subnormal range, where wasm's short rounding path does
    // not hold and each step is redone the general way
    let cases = [
        (3usize, 64usize, 1usize, 1usize, ALL, ALL, 1f32),
        (3, 64, 1, 37, ALL, ALL, 1.0),
        (1, 64, 1, 200, ALL, 77, 1.0),
        (2, 128, 5, 65, ALL, ALL, 1.0),
        (4, 8, 3, 9, ALL, 4, 1.0),
        (3, 24, 8, 17, 6, 10, 1.0),
        (2, 12, 1, 5, ALL, ALL, 1.0),
        (4, 64, 8, 20, 16, 13, 1.0),
        (2, 64, 1, 40, ALL, ALL, 1e-5),
        (1, 64, 2, 30, ALL, 9, 3e-3),
    ];
    for &(heads, hd, tokens, end, window, split, v_scale) in &cases {
        let what = format!("heads {heads} hd {hd} tokens {tokens} end {end} window {window} split {split}");
        let rows = end + tokens - 1;
        let q_stride = heads * hd + 5;
        let (q, k, mut v) = attention_case(&mut rng, tokens * q_stride / hd + 1, hd, rows);
        if v_scale != 1.0 {
            v.iter_mut().for_each(|h| *h = quant::f16::from_f32(quant::f16::to_f32(*h) * v_scale));
        }
        // two separate allocations when split, as a wrapped ring's runs are
        let at = split.min(rows) * hd;
        let (k0, k1, v0, v1) = (k[..at].to_vec(), k[at..].to_vec(), v[..at].to_vec(), v[at..].to_vec());
        let unit = Unit { q: &q, q_stride, tokens, heads, keys: [&k0, &k1], values: [&v0, &v1], end, window, scale: 1.0 / (hd as f32).sqrt() };
        let lanes = tokens * heads;
        let (mut a, mut b, mut one) = (State::new(lanes, hd), State::new(lanes, hd), State::new(1, hd));
        attend(&mut a, &unit);
        attend_scalar(&mut b, &unit);
        for l in 0..lanes {
            let (t, j) = (l / heads, l % heads);
            let (mut x, mut y, mut z) = (vec![0f32; hd], vec![0f32; hd], vec![0f32; hd]);
            a.write_out(l, &mut x);
            b.write_out(l, &mut y);
            // the lane alone: its query, the rows it sees copied out
            let seen = (end + t).saturating_sub(window)..end + t;
            let (ks, vs) = (k[seen.start * hd..seen.end * hd].to_vec(), v[seen.start * hd..seen.end * hd].to_vec());
            let q1 = &q[t * q_stride + j * hd..][..hd];
            let alone = Unit { q: q1, q_stride: hd, tokens: 1, heads: 1, keys: [&ks, &[]], values: [&vs, &[]], end: seen.len(), window: ALL, scale: unit.scale };
            attend_scalar(&mut one, &alone);
            one.write_out(0, &mut z);
            assert!(x.iter().all(|v| v.is_finite()), "{what}: not finite");
            for (d, ((p, r), s)) in x.iter().zip(&y).zip(&z).enumerate() {
                assert_eq!(p.to_bits(), r.to_bits(), "{what} lane {l} dim {d}: {p} vs the reference's {r}");
                assert_eq!(r.to_bits(), s.to_bits(), "{what} lane {l} dim {d}: {r} vs the lane alone's {s}");
            }
        }
    }
}

/// wasm's vector f16 helpers of the attention loop are `f16::round` / `f16::to_f32` lane for lane.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn simd_f16_helpers_match_the_scalar_ones() {
    use core::arch::wasm32::*;
    use hearth::quant::{f16, simd128};
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let mut xs: Vec<f32> = vec![0.0, -0.0, 65504.0, 65519.99, 65520.0, -1e9, f32::INFINITY, f32::NAN, 5.96e-8, 2.98e-8, 6.1e-5];
    let mut bits = 0u32;
    while let Some(b) = bits.checked_add(40_009) {
        xs.push(f32::from_bits(b));
        bits = b;
    }
    // ordinary-range groups (the short path) as well as mixed ones
    let mut normal: Vec<f32> = xs.iter().copied().filter(|x| x.abs() >= 6.2e-5 && x.abs() <= 65504.0).collect();
    normal.extend(xs);
    for chunk in normal.chunks(8) {
        let mut c = [0f32; 8];
        c[..chunk.len()].copy_from_slice(chunk);
        let want = c.map(f16::round);
        simd128::round8_f16(&mut c);
        for (a, b) in c.iter().zip(want) {
            assert!(same(*a, b), "round8 {b:e} vs {a:e}");
        }
        for half in c.chunks(4) {
            let got = simd128::round4_f16_fast(f32x4(half[0], half[1], half[2], half[3]));
            let got = [f32x4_extract_lane::<0>(got), f32x4_extract_lane::<1>(got), f32x4_extract_lane::<2>(got), f32x4_extract_lane::<3>(got)];
            for (a, x) in got.iter().zip(half) {
                assert!(same(*a, f16::round(*x)), "round4 fast {x:e}: {a:e}");
            }
        }
    }
    // every f16 bit pattern, eight at a time (finite-only groups take the short path)
    for base in (0..=u16::MAX as u32).step_by(8) {
        let h: [u16; 8] = std::array::from_fn(|i| (base + i as u32) as u16);
        let v = u16x8(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
        let (lo, hi) = simd128::f16x8_to_f32(v, &simd128::F16Consts::new());
        let got = [
            f32x4_extract_lane::<0>(lo), f32x4_extract_lane::<1>(lo), f32x4_extract_lane::<2>(lo), f32x4_extract_lane::<3>(lo),
            f32x4_extract_lane::<0>(hi), f32x4_extract_lane::<1>(hi), f32x4_extract_lane::<2>(hi), f32x4_extract_lane::<3>(hi),
        ];
        for (a, &b) in got.iter().zip(&h) {
            assert!(same(*a, f16::to_f32(b)), "{b:#06x}: {a:e}");
        }
    }
}

/// The vector SwiGLU (AVX2 natively, simd128 in wasm) is its scalar definition — with
/// `libm::expf` — bit for bit: every f32 exponent, both signs, expf's branch thresholds ± 1 ulp,
/// and the special values.
#[test]
fn silu_is_bit_identical_to_the_reference() {
    use hearth::vmath::{silu_mul, silu_mul_scalar};
    let mut rng = Rng(0x517u64);
    let mut g: Vec<f32> = Vec::new();
    for e in 0..=255u32 {
        for _ in 0..6 {
            let bits = (e << 23) | (rng.next() as u32 & 0x007f_ffff) | (rng.next() as u32 & 0x8000_0000);
            g.push(f32::from_bits(bits));
        }
    }
    for t in [0x3900_0000u32, 0x3eb1_7218, 0x3f85_1592, 0x42ae_ac50, 0x42b1_7218, 0x42cf_f1b5, 0x7f80_0000] {
        for d in [-2i32, -1, 0, 1, 2] {
            let b = (t as i32 + d) as u32;
            g.extend([f32::from_bits(b), f32::from_bits(b | 0x8000_0000)]);
        }
    }
    g.extend((0..2000).map(|_| rng.value() * 8.0));
    g.extend([0.0, -0.0, 87.5, -87.5, 88.5, -88.5, 100.0, -100.0, 103.9, -103.9, 104.0, -104.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    let u: Vec<f32> = (0..g.len()).map(|_| rng.value()).collect();
    let (mut a, mut b) = (g.clone(), g.clone());
    silu_mul(&mut a, &u);
    silu_mul_scalar(&mut b, &u);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "g = {:e} ({:#x}): {x:e} vs {y:e}", g[i], g[i].to_bits());
    }
}

/// The quantizers of the newer formats: each round-trips within a bound set from its bits, in
/// the order their bits promise, and IQ4_NL's non-linear levels beat Q4_0's linear ones.
#[test]
fn iq_and_low_bit_quantizers_round_trip() {
    let mut rng = Rng(17);
    let x: Vec<f32> = (0..256 * 32).map(|_| rng.value()).collect();
    let rms = |a: &[f32], b: &[f32]| (a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    let x_rms = rms(&x, &vec![0.0; x.len()]);
    let error = |ty: GgmlType| {
        let q = quant::quantize::quantize(ty, &x).unwrap();
        assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap(), "{ty:?}");
        let mut y = vec![0f32; x.len()];
        quant::dequantize_row(ty, &q, &mut y);
        let e = rms(&x, &y) / x_rms;
        eprintln!("{ty:?}: relative rms error {e:.4}");
        e
    };
    let [bf16, iq4_nl, iq4_xs, q2_k, q3_k, q4_0, q4_k] =
        [GgmlType::BF16, GgmlType::IQ4NL, GgmlType::IQ4XS, GgmlType::Q2K, GgmlType::Q3K, GgmlType::Q4_0, GgmlType::Q4K].map(error);
    assert!(bf16 < 0.004, "BF16 {bf16}");
    assert!(iq4_nl < q4_0, "IQ4_NL {iq4_nl} vs Q4_0 {q4_0}");
    assert!(iq4_xs < 0.15 && iq4_nl < 0.15, "IQ4_XS {iq4_xs}, IQ4_NL {iq4_nl}");
    assert!(q4_k < q3_k && q3_k < q2_k, "Q4_K {q4_k}, Q3_K {q3_k}, Q2_K {q2_k}");
    // (measured: BF16 0.0016, IQ4_NL 0.133, IQ4_XS 0.134, Q4_0 0.172, Q2_K 0.229, Q3_K 0.158, Q4_K 0.101)
    assert!(q3_k < 0.2 && q2_k < 0.3, "Q3_K {q3_k}, Q2_K {q2_k}");
    // an all-zero and a constant block are (near) exact
    for ty in [GgmlType::IQ4NL, GgmlType::IQ4XS, GgmlType::Q2K, GgmlType::Q3K] {
        for c in [0.0f32, -0.5] {
            let x = vec![c; 256];
            let mut y = vec![1f32; 256];
            quant::dequantize_row(ty, &quant::quantize::quantize(ty, &x).unwrap(), &mut y);
            assert!(y.iter().all(|&v| (v - c).abs() <= 0.01), "{ty:?} constant {c}: {:?}", &y[..4]);
        }
    }
}

/// Q4_1, Q8_0, Q4_K and Q6_K in four-row groups (`layout::Layout::Groups4`, what wasm's
/// relaxed-SIMD build loads): the rearrangement gives back every row as the file stores it, and the
/// kernel for it (in the relaxed wasm build `simd128::rows_q4_1_x4`, `rows_q8_0_x4`,
/// `rows_q4_k_x4` and `rows_q6_k_x4`, elsewhere the reference row by row) gives, row for row and for every batch size, exactly the reference's bits — special
/// scales and minimums included.
#[test]
fn formats_in_groups_of_four_rows_equal_the_reference() {
    each_touch_form(|| {
        use hearth::quant::layout::{self, Layout};
        assert!(!layout::fits(Layout::Groups4, GgmlType::Q4_1, 6) && !layout::fits(Layout::Groups4, GgmlType::Q4_0, 8));
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            grouped_equals_the_reference(ty);
        }
        // rows_q4_k_x4's and rows_q6_k_x4's two forms (`calibrate` picks one per CPU), the other too
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        for i16_dots in [true, false] {
            hearth::quant::simd128::set_i16_dots(i16_dots);
            grouped_equals_the_reference(GgmlType::Q4K);
            grouped_equals_the_reference(GgmlType::Q6K);
        }
    });
}

fn grouped_equals_the_reference(ty: GgmlType) {
    use hearth::quant::layout::{self, Layout};
    let at = act_type(ty).unwrap();
    let mut rng = Rng(41);
    let (len, block) = (block_len(ty), ty.block_bytes());
    for blocks in [1, 3, 4, 5, 18] {
        let n = blocks * len;
        let weight_rows = 8;
        let mut wq = random_blocks(ty, blocks * weight_rows, &mut rng);
        // the extremes: every quant bit set, activations all −1 (Q8_K's qs all −127, its largest
        // magnitude), so the integer sums are as large as they get (where an i16 partial sum
        // would overflow first)
        let extreme = blocks == 3;
        if extreme {
            for b in wq.chunks_exact_mut(block) {
                b.fill(0xff);
                for (i, &at) in scale_fields(ty).iter().enumerate() {
                    b[at..at + 2].copy_from_slice(&hearth::quant::f16::to_le(0.01 * (i + 1) as f32));
                }
            }
        }
        if blocks == 5 {
            // inf, NaN and subnormal scales (and minimums, where the format has them) in some blocks
            for (blk, at_byte, v) in [(1usize, 0usize, 0x7c00u16), (7, 2, 0x7e01), (12, 0, 0x0001), (33, 2, 0xfc00), (20, 0, 0xfe00)] {
                // (byte 0: the scale's field, byte 2: the minimum's where the format has one)
                let fields = scale_fields(ty);
                let at_byte = if at_byte == 0 { fields[0] } else { *fields.get(1).unwrap_or(&fields[0]) };
                wq[blk * block + at_byte..blk * block + at_byte + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        let rb = wq.len() / weight_rows;
        let mut grouped = wq.clone();
        layout::arrange(Layout::Groups4, ty, n, &mut grouped);
        assert_ne!(grouped, wq, "{ty:?}, {blocks} blocks: rearranged");
        for r in 0..weight_rows {
            assert_eq!(&*layout::row(Layout::Groups4, ty, n, &grouped, r), &wq[r * rb..(r + 1) * rb], "{ty:?}, {blocks} blocks, row {r}");
        }
        for k in (1..=quant::MAX_ROWS).chain([11]) {
            let rows: Vec<Vec<u8>> =
                (0..k).map(|_| quantized_act(at, &(0..n).map(|_| if extreme { -1.0 } else { rng.value() }).collect::<Vec<_>>(), true)).collect();
            if extreme && at == ActType::Q8K {
                let qs = &quant::as_blocks::<quant::BlockQ8K>(block_part(at, n, &rows[0]))[0].qs;
                assert!(qs.iter().all(|&q| q == -127), "{ty:?}: the extreme activations are Q8_K's −127");
            }
            let refs: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
            let mut out = vec![f32::NAN; k * weight_rows];
            let ptrs: Vec<*mut f32> = (0..k).map(|t| out[t * weight_rows..].as_mut_ptr()).collect();
            // SAFETY: each pointer has room for `weight_rows` floats.
            unsafe { layout::dot_rows_in(Layout::Groups4, ty, n, &grouped, &refs, &ptrs) };
            for (t, row) in rows.iter().enumerate() {
                for r in 0..weight_rows {
                    let reference = scalar::vec_dot(ty, n, &wq[r * rb..(r + 1) * rb], block_part(at, n, row));
                    let got = out[t * weight_rows + r];
                    assert!(
                        got.to_bits() == reference.to_bits() || (got.is_nan() && reference.is_nan()),
                        "{ty:?}, {blocks} blocks, weight row {r}, act row {t} of {k}: {got} vs {reference}"
                    );
                }
            }
        }
    }
}
