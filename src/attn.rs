//! Attention of one query position against one KV head: the online-softmax loop over the cached
//! keys and values, at llama.cpp's CPU flash-attention precision (queries, keys and values are f16;
//! the value accumulator is kept at f16 precision, rounded after every step, as its f16 V path
//! does with `VKQ16`). The loop is sequential over keys (each step rounds), so speed comes from
//! doing each step in vectors: keys and values converted 8 lanes at a time, the score's dot
//! product and the accumulator update in vectors.
//!
//! One scalar reference (`attend_scalar`) fixes the float order; the AVX2+F16C and wasm simd128
//! versions compute the same bits (tests/kernels.rs checks them on random data, natively and in
//! wasm). Dot products run in 8 lanes (`lanes[l] += q·k`, then `((l0+l4) + (l1+l5)) + (l2+l6)) +
//! (l3+l7)`), products and sums are separate roundings (no fused multiply-add: wasm has no exact one).

use crate::quant::f16;

/// The keys and values one unit reads: cache rows `0..len` of `kvd` f16 values each, this head's
/// `hd` values starting at `off`.
pub struct Unit<'a> {
    /// The unit's query heads, `heads × hd` values (rounded to f16 here).
    pub q: &'a [f32],
    pub keys: &'a [u16],
    pub values: &'a [u16],
    pub kvd: usize,
    pub off: usize,
    pub len: usize,
}

/// Per-thread buffers: for each query head its f16-rounded query, running max and sum, and value
/// accumulator; one key and one value row in f32.
pub struct State {
    hd: usize,
    qg: Vec<f32>,
    acc: Vec<f32>,
    m: Vec<f32>,
    sum: Vec<f32>,
    krow: Vec<f32>,
    vrow: Vec<f32>,
}

impl State {
    /// Buffers for units of `heads` query heads of `hd` values.
    pub fn new(heads: usize, hd: usize) -> State {
        State {
            hd,
            qg: vec![0.0; heads * hd],
            acc: vec![0.0; heads * hd],
            m: vec![0.0; heads],
            sum: vec![0.0; heads],
            krow: vec![0.0; hd],
            vrow: vec![0.0; hd],
        }
    }

    /// Head `j`'s attention output after `attend`: its accumulator over its softmax sum.
    pub fn write_out(&self, j: usize, out: &mut [f32]) {
        let inv = 1.0 / self.sum[j];
        for (o, a) in out.iter_mut().zip(&self.acc[j * self.hd..(j + 1) * self.hd]) {
            *o = a * inv;
        }
    }

    /// Prepares for a unit of `heads` heads: rounds its queries, clears the running state.
    fn start(&mut self, u: &Unit<'_>) -> usize {
        let heads = u.q.len() / self.hd;
        assert!(heads <= self.m.len() && u.q.len() == heads * self.hd, "attention unit larger than its state");
        assert!(u.len == 0 || ((u.len - 1) * u.kvd + u.off + self.hd <= u.keys.len().min(u.values.len())), "attention unit past the cache");
        for (d, v) in self.qg.iter_mut().zip(u.q) {
            *d = f16::round(*v);
        }
        self.acc[..heads * self.hd].fill(0.0);
        self.m[..heads].fill(f32::NEG_INFINITY);
        self.sum[..heads].fill(0.0);
        heads
    }

    /// The online-softmax step of head `j` for score `s`: (factor for the accumulator, weight of
    /// this value).
    #[inline(always)]
    fn step(&mut self, j: usize, s: f32) -> (f32, f32) {
        let m = self.m[j];
        let (ms, vs) = if s > m {
            self.m[j] = s;
            (libm::expf(m - s), 1.0)
        } else {
            (1.0, libm::expf(s - m))
        };
        self.sum[j] = self.sum[j] * ms + vs;
        (ms, vs)
    }
}

/// Runs one unit with the fastest exact version this target has.
pub fn attend(st: &mut State, u: &Unit<'_>) {
    if st.hd % 8 == 0 {
        #[cfg(target_arch = "x86_64")]
        if crate::quant::avx2::available() {
            // SAFETY: AVX2 and F16C are available (checked).
            return unsafe { attend_avx2(st, u) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return attend_simd128(st, u);
    }
    attend_scalar(st, u)
}

/// 8-lane dot product in the canonical order.
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let d = (((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + (lanes[2] + lanes[6])) + (lanes[3] + lanes[7]);
    ra.iter().zip(rb).fold(d, |d, (x, y)| d + x * y)
}

/// The reference: the same steps one value at a time.
pub fn attend_scalar(st: &mut State, u: &Unit<'_>) {
    let heads = st.start(u);
    let hd = st.hd;
    let scale = 1.0 / (hd as f32).sqrt();
    for t in 0..u.len {
        let base = t * u.kvd + u.off;
        for (k, &bits) in st.krow.iter_mut().zip(&u.keys[base..base + hd]) {
            *k = f16::to_f32(bits);
        }
        for (v, &bits) in st.vrow.iter_mut().zip(&u.values[base..base + hd]) {
            *v = f16::to_f32(bits);
        }
        for j in 0..heads {
            let s = dot8(&st.qg[j * hd..(j + 1) * hd], &st.krow) * scale;
            let (ms, vs) = st.step(j, s);
            let a = &mut st.acc[j * hd..(j + 1) * hd];
            if ms != 1.0 {
                a.iter_mut().for_each(|x| *x = f16::round(*x * ms));
            }
            for (x, v) in a.iter_mut().zip(&st.vrow) {
                *x = f16::round(*x + v * vs);
            }
        }
    }
}

/// AVX2 + F16C: conversions and rounding are single instructions. `hd` a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn attend_avx2(st: &mut State, u: &Unit<'_>) {
    use std::arch::x86_64::*;
    let heads = st.start(u);
    let (hd, nc) = (st.hd, st.hd / 8);
    let scale = 1.0 / (hd as f32).sqrt();
    let round = |x: __m256| _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
    let (kr, vr) = (st.krow.as_mut_ptr(), st.vrow.as_mut_ptr());
    for t in 0..u.len {
        let base = t * u.kvd + u.off;
        // SAFETY (all pointer accesses): rows bounds-checked in `start`; buffers hold heads×hd.
        let (kp, vp) = (u.keys.as_ptr().add(base), u.values.as_ptr().add(base));
        for c in 0..nc {
            _mm256_storeu_ps(kr.add(8 * c), _mm256_cvtph_ps(_mm_loadu_si128(kp.add(8 * c) as *const __m128i)));
            _mm256_storeu_ps(vr.add(8 * c), _mm256_cvtph_ps(_mm_loadu_si128(vp.add(8 * c) as *const __m128i)));
        }
        for j in 0..heads {
            let q = st.qg.as_ptr().add(j * hd);
            let mut l = _mm256_setzero_ps();
            for c in 0..nc {
                l = _mm256_add_ps(l, _mm256_mul_ps(_mm256_loadu_ps(q.add(8 * c)), _mm256_loadu_ps(kr.add(8 * c))));
            }
            let p = _mm_add_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps::<1>(l));
            let mut p4 = [0f32; 4];
            _mm_storeu_ps(p4.as_mut_ptr(), p);
            let s = (((p4[0] + p4[1]) + p4[2]) + p4[3]) * scale;
            let (ms, vs) = st.step(j, s);
            let a = st.acc.as_mut_ptr().add(j * hd);
            if ms != 1.0 {
                let m8 = _mm256_set1_ps(ms);
                for c in 0..nc {
                    _mm256_storeu_ps(a.add(8 * c), round(_mm256_mul_ps(_mm256_loadu_ps(a.add(8 * c)), m8)));
                }
            }
            let v8 = _mm256_set1_ps(vs);
            for c in 0..nc {
                let x = _mm256_add_ps(_mm256_loadu_ps(a.add(8 * c)), _mm256_mul_ps(_mm256_loadu_ps(vr.add(8 * c)), v8));
                _mm256_storeu_ps(a.add(8 * c), round(x));
            }
        }
    }
}

/// wasm simd128: the f16 conversions and the rounding take a short path for the ordinary range
/// and fall back to the exact general bit operations when a vector holds anything else.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn attend_simd128(st: &mut State, u: &Unit<'_>) {
    use crate::quant::simd128::{f16x8_to_f32, round4_f16_fast};
    use core::arch::wasm32::*;
    let heads = st.start(u);
    let (hd, nc) = (st.hd, st.hd / 4);
    let scale = 1.0 / (hd as f32).sqrt();
    let (kr, vr) = (st.krow.as_mut_ptr(), st.vrow.as_mut_ptr());
    // SAFETY (all pointer accesses): rows bounds-checked in `start`; buffers hold heads×hd.
    unsafe {
        for t in 0..u.len {
            let base = t * u.kvd + u.off;
            let (kp, vp) = (u.keys.as_ptr().add(base), u.values.as_ptr().add(base));
            for c in (0..nc).step_by(2) {
                let (k0, k1) = f16x8_to_f32(v128_load(kp.add(4 * c) as *const v128));
                v128_store(kr.add(4 * c) as *mut v128, k0);
                v128_store(kr.add(4 * c + 4) as *mut v128, k1);
                let (v0, v1) = f16x8_to_f32(v128_load(vp.add(4 * c) as *const v128));
                v128_store(vr.add(4 * c) as *mut v128, v0);
                v128_store(vr.add(4 * c + 4) as *mut v128, v1);
            }
            for j in 0..heads {
                let q = st.qg.as_ptr().add(j * hd);
                let (mut l0, mut l1) = (f32x4_splat(0.0), f32x4_splat(0.0));
                for c in (0..nc).step_by(2) {
                    let ld = |p: *const f32, i: usize| v128_load(p.add(4 * i) as *const v128);
                    l0 = f32x4_add(l0, f32x4_mul(ld(q, c), ld(kr, c)));
                    l1 = f32x4_add(l1, f32x4_mul(ld(q, c + 1), ld(kr, c + 1)));
                }
                let p = f32x4_add(l0, l1);
                let s = (((f32x4_extract_lane::<0>(p) + f32x4_extract_lane::<1>(p)) + f32x4_extract_lane::<2>(p))
                    + f32x4_extract_lane::<3>(p))
                    * scale;
                let (ms, vs) = st.step(j, s);
                let a = st.acc.as_mut_ptr().add(j * hd);
                if ms != 1.0 {
                    let m4 = f32x4_splat(ms);
                    for c in 0..nc {
                        let p = a.add(4 * c) as *mut v128;
                        v128_store(p, round4_f16_fast(f32x4_mul(v128_load(p), m4)));
                    }
                }
                let v4 = f32x4_splat(vs);
                for c in 0..nc {
                    let p = a.add(4 * c) as *mut v128;
                    let x = f32x4_add(v128_load(p), f32x4_mul(v128_load(vr.add(4 * c) as *const v128), v4));
                    v128_store(p, round4_f16_fast(x));
                }
            }
        }
    }
}
