//! Elementwise math of the forward pass in vectors: the SwiGLU activation `silu(g)·u`. Its
//! exponential is libm's `expf` (FreeBSD's float algorithm: reduction by k·ln2 in two parts, a
//! rational approximation, scaling by 2^k) done lane by lane in vectors with the same operations
//! in the same order — no fused multiply-add, the same branch choices as masks — so results are
//! bit-identical to the scalar `libm::expf` the engine used before, on every target
//! (tests/kernels.rs checks every f32 exponent and the special values). Scalar `expf` was 6% of
//! the wasm build's time.

const LN2_HI: f32 = 6.931_457_5e-1; // 0x3f317200
const LN2_LO: f32 = 1.428_606_8e-6; // 0x35bfbe8e
const INV_LN2: f32 = std::f32::consts::LOG2_E; // 0x3fb8aa3b, libm's INV_LN2
const _: () = assert!(INV_LN2.to_bits() == 0x3fb8_aa3b);
const P1: f32 = 1.666_662_5e-1; // 0x3e2aaa8f
const P2: f32 = -2.766_733_3e-3; // 0xbb355215

/// e^x: `libm::expf` (the definition the vector versions match).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// gate[i] = silu(gate[i]) · up[i] = gate / (1 + e^-gate) · up.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert!(up.len() >= gate.len());
    // (in wasm the SIMD part always runs and sets it)
    #[allow(unused_assignments)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::quant::avx2::available() {
        // SAFETY: AVX2 is available (checked).
        done = unsafe { silu_mul_avx2(gate, up) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        done = silu_mul_simd128(gate, up);
    }
    for (g, &u) in gate[done..].iter_mut().zip(&up[done..]) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// gate[i] = gelu(gate[i]) · up[i] with GELU's tanh approximation, as ggml's CPU `geglu` computes
/// it: 0 at or below -10, the input itself at or above 10, otherwise looked up in a table of
/// `gelu(h)` rounded to f16 for the input rounded to f16 (`h`).
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            crate::quant::f16::to_f32(table[crate::quant::f16::from_f32(x) as usize]) * u
        };
    }
}

/// gelu(x) = 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), in ggml's order of operations.
#[allow(clippy::excessive_precision)]
pub fn gelu_tanh(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_355_879_892_119_868_76;
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)))
}

/// f16 bits → f16 bits of `gelu_tanh`, all 65536 of them, built on first use.
fn gelu_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|h| crate::quant::f16::from_f32(gelu_tanh(crate::quant::f16::to_f32(h)))).collect())
}

/// The scalar version alone (the reference of the tests).
pub fn silu_mul_scalar(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// `libm::expf` on 8 lanes, bit for bit.
///
/// # Safety
/// AVX2 available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub unsafe fn expf8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let s = |v: f32| _mm256_set1_ps(v);
    let si = |v: u32| _mm256_set1_epi32(v as i32);
    let f = _mm256_castsi256_ps;
    let ii = _mm256_castps_si256;
    // unsigned a > b on 31-bit values (the sign cleared): signed compare is the same
    let gt = |a: __m256i, b: u32| _mm256_cmpgt_epi32(a, si(b));
    let hx = _mm256_and_si256(ii(x), si(0x7fff_ffff));
    let neg = _mm256_srai_epi32::<31>(ii(x));
    // k: round(x/ln2) for |x| > 1.5 ln2 (truncating x/ln2 ± 0.5), ±1 above 0.5 ln2, else 0
    let half = _mm256_blendv_ps(s(0.5), s(-0.5), f(neg));
    let k_big = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(s(INV_LN2), x), half));
    let k_mid = _mm256_or_si256(neg, si(1));
    let k = f(_mm256_and_si256(gt(hx, 0x3eb1_7218), k_mid));
    let k = ii(_mm256_blendv_ps(k, f(k_big), f(gt(hx, 0x3f85_1592))));
    let kf = _mm256_cvtepi32_ps(k);
    let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, s(LN2_HI)));
    let lo = _mm256_mul_ps(kf, s(LN2_LO));
    let r = _mm256_sub_ps(hi, lo);
    let xx = _mm256_mul_ps(r, r);
    let c = _mm256_sub_ps(r, _mm256_mul_ps(xx, _mm256_add_ps(s(P1), _mm256_mul_ps(xx, s(P2)))));
    let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(s(2.0), c));
    let y = _mm256_add_ps(s(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
    // scalbnf(y, k): prescale when 2^k is not a normal float
    let over = f(_mm256_cmpgt_epi32(k, si(127)));
    let under = f(_mm256_cmpgt_epi32(si(-126i32 as u32), k));
    let y = _mm256_blendv_ps(_mm256_blendv_ps(y, _mm256_mul_ps(y, s(f32::from_bits(0x7f00_0000))), over), _mm256_mul_ps(y, s(f32::from_bits(0x0c80_0000))), under);
    let k = ii(_mm256_blendv_ps(_mm256_blendv_ps(f(k), f(_mm256_sub_epi32(k, si(127))), over), f(_mm256_add_epi32(k, si(102))), under));
    let e = _mm256_mul_ps(y, f(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, si(127)))));
    // the special cases, in expf's order of precedence (last blend wins)
    let e = _mm256_blendv_ps(e, _mm256_add_ps(s(1.0), x), f(_mm256_cmpgt_epi32(si(0x3900_0001), hx)));
    let e = _mm256_blendv_ps(e, _mm256_setzero_ps(), f(_mm256_and_si256(neg, gt(hx, 0x42cf_f1b4))));
    let e = _mm256_blendv_ps(e, s(f32::INFINITY), f(_mm256_andnot_si256(neg, gt(hx, 0x42b1_7217))));
    _mm256_blendv_ps(e, x, f(gt(hx, 0x7f80_0000)))
}

/// Whole groups of 8 with AVX2; returns how many were done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) -> usize {
    use std::arch::x86_64::*;
    let n8 = gate.len() / 8 * 8;
    let one = _mm256_set1_ps(1.0);
    for i in (0..n8).step_by(8) {
        let g = _mm256_loadu_ps(gate.as_ptr().add(i));
        let e = expf8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0)));
        let u = _mm256_loadu_ps(up.as_ptr().add(i));
        _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u));
    }
    n8
}

/// `libm::expf` on 4 lanes, bit for bit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
pub fn expf4(x: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let s = f32x4_splat;
    let si = |v: u32| u32x4_splat(v);
    let sel = |a: v128, b: v128, m: v128| v128_bitselect(b, a, m); // m ? b : a
    let hx = v128_and(x, si(0x7fff_ffff));
    let neg = i32x4_shr(x, 31);
    let half = sel(s(0.5), s(-0.5), neg);
    let k_big = i32x4_trunc_sat_f32x4(f32x4_add(f32x4_mul(s(INV_LN2), x), half));
    let k_mid = v128_or(neg, si(1));
    let k = v128_and(u32x4_gt(hx, si(0x3eb1_7218)), k_mid);
    let k = sel(k, k_big, u32x4_gt(hx, si(0x3f85_1592)));
    let kf = f32x4_convert_i32x4(k);
    let hi = f32x4_sub(x, f32x4_mul(kf, s(LN2_HI)));
    let lo = f32x4_mul(kf, s(LN2_LO));
    let r = f32x4_sub(hi, lo);
    let xx = f32x4_mul(r, r);
    let c = f32x4_sub(r, f32x4_mul(xx, f32x4_add(s(P1), f32x4_mul(xx, s(P2)))));
    let q = f32x4_div(f32x4_mul(r, c), f32x4_sub(s(2.0), c));
    let y = f32x4_add(s(1.0), f32x4_add(f32x4_sub(q, lo), hi));
    let over = i32x4_gt(k, i32x4_splat(127));
    let under = i32x4_lt(k, i32x4_splat(-126));
    let y = sel(sel(y, f32x4_mul(y, s(f32::from_bits(0x7f00_0000))), over), f32x4_mul(y, s(f32::from_bits(0x0c80_0000))), under);
    let k = sel(sel(k, i32x4_sub(k, i32x4_splat(127)), over), i32x4_add(k, i32x4_splat(102)), under);
    let e = f32x4_mul(y, i32x4_shl(i32x4_add(k, i32x4_splat(127)), 23));
    let e = sel(e, f32x4_add(s(1.0), x), u32x4_le(hx, si(0x3900_0000)));
    let e = sel(e, s(0.0), v128_and(neg, u32x4_ge(hx, si(0x42cf_f1b5))));
    let e = sel(e, s(f32::INFINITY), v128_andnot(u32x4_ge(hx, si(0x42b1_7218)), neg));
    sel(e, x, u32x4_gt(hx, si(0x7f80_0000)))
}

/// Whole groups of 4 with simd128; returns how many were done.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn silu_mul_simd128(gate: &mut [f32], up: &[f32]) -> usize {
    use core::arch::wasm32::*;
    let n4 = gate.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 ≤ len of both slices.
        unsafe {
            let g = v128_load(gate.as_ptr().add(i) as *const v128);
            let u = v128_load(up.as_ptr().add(i) as *const v128);
            let e = expf4(f32x4_neg(g));
            v128_store(gate.as_mut_ptr().add(i) as *mut v128, f32x4_mul(f32x4_div(g, f32x4_add(f32x4_splat(1.0), e)), u));
        }
    }
    n4
}
