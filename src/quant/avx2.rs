//! AVX2 dot products for the native CLI (x86-64), chosen at run time. Each block's 32 products are
//! summed exactly in integers (maddubs → madd); four blocks' sums are gathered into one vector and
//! scaled and accumulated in the canonical order of `scalar::Acc4`, so the result is bit-identical
//! to the scalar reference and to the wasm kernels.

use super::*;
use std::arch::x86_64::*;
use std::sync::OnceLock;

pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c"))
}

/// 16 packed bytes → 32 nibbles (elements 0..15 from the low nibbles, 16..31 from the high ones).
#[inline(always)]
unsafe fn unpack_nibbles(qs: &[u8; 16]) -> __m256i {
    let b = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    _mm256_set_m128i(hi, lo)
}

/// The 32 bits of `qh` as bytes: 0x10 where the bit is set, else 0.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let h = _mm256_set1_epi32(i32::from_le_bytes(qh));
    // byte j of the result takes byte j/8 of h
    let idx = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(h, idx);
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// u8 × i8 products summed in pairs, then in fours: 8 exact i32 partial sums.
#[inline(always)]
unsafe fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// i8 × i8 the same way (the sign moves onto y so maddubs sees an unsigned x).
#[inline(always)]
unsafe fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[inline(always)]
unsafe fn load_q8(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr() as *const __m256i)
}

/// The totals of four blocks' partial sums, as f32 lanes (exact: |sum| < 2^24).
#[inline(always)]
unsafe fn totals4(p0: __m256i, p1: __m256i, p2: __m256i, p3: __m256i) -> __m128 {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)))
}

#[inline(always)]
unsafe fn total(p: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Four f16 values (bits) as f32 lanes (F16C: exact, like `f16::to_f32`).
#[inline(always)]
unsafe fn f16x4(a: u16, b: u16, c: u16, d: u16) -> __m128 {
    _mm_cvtph_ps(_mm_setr_epi16(a as i16, b as i16, c as i16, d as i16, 0, 0, 0, 0))
}

#[inline(always)]
fn h(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// Runs the canonical accumulation (see `scalar::Acc4`) over blocks, four at a time: `$ints(x, y)`
/// gives a block's integer partial sums; `$dw`/`$da` the f16 scales of weight and activation block;
/// `$mw`/`$sa` (optional) the weight minimum and the activation sum.
macro_rules! canonical_dot {
    ($w:expr, $a:expr, $ints:expr, $dw:expr, $da:expr $(, $mw:expr, $sa:expr)?) => {{
        let (w, a) = ($w, $a);
        let n = w.len().min(a.len());
        let full = n / 4 * 4;
        let mut acc = _mm_setzero_ps();
        #[allow(unused_mut)]
        let mut accm = _mm_setzero_ps();
        let mut b = 0;
        while b < full {
            let (w4, a4) = (&w[b..b + 4], &a[b..b + 4]);
            let s = totals4($ints(&w4[0], &a4[0]), $ints(&w4[1], &a4[1]), $ints(&w4[2], &a4[2]), $ints(&w4[3], &a4[3]));
            let dw = f16x4($dw(&w4[0]), $dw(&w4[1]), $dw(&w4[2]), $dw(&w4[3]));
            let da = f16x4($da(&a4[0]), $da(&a4[1]), $da(&a4[2]), $da(&a4[3]));
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_mul_ps(dw, da), s));
            $(
                let mw = f16x4($mw(&w4[0]), $mw(&w4[1]), $mw(&w4[2]), $mw(&w4[3]));
                let sa = f16x4($sa(&a4[0]), $sa(&a4[1]), $sa(&a4[2]), $sa(&a4[3]));
                accm = _mm_add_ps(accm, _mm_mul_ps(mw, sa));
            )?
            b += 4;
        }
        let mut ad = [0f32; 4];
        #[allow(unused_mut)]
        let mut am = [0f32; 4];
        _mm_storeu_ps(ad.as_mut_ptr(), acc);
        _mm_storeu_ps(am.as_mut_ptr(), accm);
        for b in full..n {
            let scale = super::f16::to_f32($dw(&w[b])) * super::f16::to_f32($da(&a[b]));
            ad[b % 4] += scale * total($ints(&w[b], &a[b])) as f32;
            $( am[b % 4] += super::f16::to_f32($mw(&w[b])) * super::f16::to_f32($sa(&a[b])); )?
        }
        ((ad[0] + ad[1]) + (ad[2] + ad[3])) + ((am[0] + am[1]) + (am[2] + am[3]))
    }};
}

#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let ints = |x: &BlockQ4_0, y: &BlockQ8_0| dot_i8_i8(_mm256_sub_epi8(unpack_nibbles(&x.qs), _mm256_set1_epi8(8)), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ4_0| h(x.d), |y: &BlockQ8_0| h(y.d))
}

#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let ints = |x: &BlockQ4_1, y: &BlockQ8_1| dot_u8_i8(unpack_nibbles(&x.qs), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ4_1| h(x.d), |y: &BlockQ8_1| h(y.d), |x: &BlockQ4_1| h(x.m), |y: &BlockQ8_1| h(y.s))
}

#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let ints = |x: &BlockQ5_0, y: &BlockQ8_0| {
        let q = _mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh));
        dot_i8_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), load_q8(&y.qs))
    };
    canonical_dot!(w, a, ints, |x: &BlockQ5_0| h(x.d), |y: &BlockQ8_0| h(y.d))
}

#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let ints = |x: &BlockQ5_1, y: &BlockQ8_1| dot_u8_i8(_mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh)), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ5_1| h(x.d), |y: &BlockQ8_1| h(y.d), |x: &BlockQ5_1| h(x.m), |y: &BlockQ8_1| h(y.s))
}

#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let ints = |x: &BlockQ8_0, y: &BlockQ8_0| dot_i8_i8(load_q8(&x.qs), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ8_0| h(x.d), |y: &BlockQ8_0| h(y.d))
}
