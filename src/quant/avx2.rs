//! AVX2 + FMA dot products for the native CLI (x86-64), chosen at run time. Each block's 32 products
//! are summed exactly in integers (maddubs → madd), then scaled and accumulated in 8 f32 lanes.

use super::f16::le;
use super::*;
use std::arch::x86_64::*;
use std::sync::OnceLock;

pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
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

/// Sum of u8 × i8 products, as 8 f32 lanes.
#[inline(always)]
unsafe fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(x, y);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// Sum of i8 × i8 products, as 8 f32 lanes.
#[inline(always)]
unsafe fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256 {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[inline(always)]
unsafe fn load_q8(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr() as *const __m256i)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_sub_epi8(unpack_nibbles(&x.qs), _mm256_set1_epi8(8));
        let p = dot_i8_i8(q, load_q8(&y.qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(le(x.d) * le(y.d)), p, acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (x, y) in w.iter().zip(a) {
        let p = dot_u8_i8(unpack_nibbles(&x.qs), load_q8(&y.qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(le(x.d) * le(y.d)), p, acc);
        mins += le(x.m) * le(y.s);
    }
    hsum(acc) + mins
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh));
        let q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        let p = dot_i8_i8(q, load_q8(&y.qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(le(x.d) * le(y.d)), p, acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (x, y) in w.iter().zip(a) {
        let q = _mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh));
        let p = dot_u8_i8(q, load_q8(&y.qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(le(x.d) * le(y.d)), p, acc);
        mins += le(x.m) * le(y.s);
    }
    hsum(acc) + mins
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let p = dot_i8_i8(load_q8(&x.qs), load_q8(&y.qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(le(x.d) * le(y.d)), p, acc);
    }
    hsum(acc)
}
