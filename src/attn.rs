//! Attention of one query position against one KV head: the online-softmax loop over the cached
//! keys and values, at llama.cpp's CPU flash-attention precision (queries, keys and values are f16;
//! the value accumulator is kept at f16 precision, rounded after every step, as its f16 V path
//! does with `VKQ16`). Each step rounds, so the loop over keys stays sequential; speed comes from
//! doing it in vectors and from taking keys 8 at a time: their 8 scores first, then the 8
//! exponentials of the running-max updates in one vector call, then the 8 accumulator steps.
//! The cache's f16 rows of a layer are converted to f32 once per forward pass (`convert_rows`),
//! not once per query.
//!
//! One scalar reference (`attend_scalar`) fixes the float order; the AVX2+F16C and wasm simd128
//! versions compute the same bits (tests/kernels.rs checks them on random data, natively and in
//! wasm). Dot products run in 8 lanes (`lanes[l] += q·k`, then `((l0+l4) + (l1+l5)) + (l2+l6)) +
//! (l3+l7)`), products and sums are separate roundings (no fused multiply-add: wasm has no exact
//! one), exponentials are `libm::expf`'s bits (`vmath`).

use crate::quant::f16;

/// Keys 8 at a time.
const KB: usize = 8;

/// What one unit reads: f32 key and value rows `0..len` of `kvd` values each (as `convert_rows`
/// makes them), this head's `hd` values starting at `off`.
pub struct Unit<'a> {
    /// The unit's query heads, `heads × hd` values (rounded to f16 here).
    pub q: &'a [f32],
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub kvd: usize,
    pub off: usize,
    pub len: usize,
    /// Multiplies each score q·k (1/√head_dim for most models; 1 when the caller scaled q).
    pub scale: f32,
}

/// Per-thread buffers: for each query head its f16-rounded query, softmax sum and value
/// accumulator; a block's scores and exponentials.
pub struct State {
    hd: usize,
    qg: Vec<f32>,
    acc: Vec<f32>,
    sum: Vec<f32>,
    /// A second accumulator row (wasm: each step writes its result there, then the rows swap).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    spare: Vec<f32>,
}

impl State {
    /// Buffers for units of `heads` query heads of `hd` values.
    pub fn new(heads: usize, hd: usize) -> State {
        State { hd, qg: vec![0.0; heads * hd], acc: vec![0.0; heads * hd], sum: vec![0.0; heads], spare: Vec::new() }
    }

    /// Makes room for units of `heads` heads of `hd` values (allocates only to grow).
    pub fn ensure(&mut self, heads: usize, hd: usize) {
        if self.hd != hd || self.sum.len() < heads {
            *self = State::new(heads.max(self.sum.len()), hd);
        }
    }

    /// Head `j`'s attention output after `attend`: its accumulator over its softmax sum.
    pub fn write_out(&self, j: usize, out: &mut [f32]) {
        let inv = 1.0 / self.sum[j];
        for (o, a) in out.iter_mut().zip(&self.acc[j * self.hd..(j + 1) * self.hd]) {
            *o = a * inv;
        }
    }

    /// Prepares for a unit: rounds its queries, clears the accumulators; returns its head count.
    fn start(&mut self, u: &Unit<'_>) -> usize {
        let heads = u.q.len() / self.hd;
        assert!(heads <= self.sum.len() && u.q.len() == heads * self.hd, "attention unit larger than its state");
        assert!(
            u.len == 0 || ((u.len - 1) * u.kvd + u.off + self.hd <= u.keys.len().min(u.values.len())),
            "attention unit past the cache"
        );
        for (d, v) in self.qg.iter_mut().zip(u.q) {
            *d = f16::round(*v);
        }
        self.acc[..heads * self.hd].fill(0.0);
        self.sum[..heads].fill(0.0);
        heads
    }
}

/// f16 cache rows → f32, exactly (`f16::to_f32`), 8 lanes at a time where the target has vectors.
pub fn convert_rows(src: &[u16], dst: &mut [f32]) {
    assert!(dst.len() >= src.len());
    // (in wasm the SIMD part always runs and sets it)
    #[allow(unused_assignments)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::quant::avx2::available() {
        // SAFETY: AVX2 and F16C are available (checked); whole groups of 8 inside both slices.
        unsafe {
            use std::arch::x86_64::*;
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn run(src: &[u16], dst: &mut [f32]) -> usize {
                let n8 = src.len() / 8 * 8;
                for i in (0..n8).step_by(8) {
                    let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
                }
                n8
            }
            done = run(src, dst);
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::*;
        let n8 = src.len() / 8 * 8;
        // (V8 would otherwise rebuild the conversion's three constants on every turn)
        let c = crate::quant::simd128::F16Consts::new();
        for i in (0..n8).step_by(8) {
            // SAFETY: whole groups of 8 inside both slices.
            unsafe {
                let (a, b) = crate::quant::simd128::f16x8_to_f32(v128_load(src.as_ptr().add(i) as *const v128), &c);
                v128_store(dst.as_mut_ptr().add(i) as *mut v128, a);
                v128_store(dst.as_mut_ptr().add(i + 4) as *mut v128, b);
            }
        }
        done = n8;
    }
    for (d, &h) in dst[done..src.len()].iter_mut().zip(&src[done..]) {
        *d = f16::to_f32(h);
    }
}

/// Runs one unit with the fastest exact version this target has.
pub fn attend(st: &mut State, u: &Unit<'_>) {
    if st.hd.is_multiple_of(8) {
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

/// One block's scores, keys `t0..t0 + nb`: `dot(q, k)·scale` each, the running max `m` moved
/// along, and each key's exponent argument with whether it moved the max.
#[inline(always)]
fn block_scores(q: &[f32], u: &Unit<'_>, t0: usize, nb: usize, m: &mut f32, dot: impl Fn(&[f32], &[f32]) -> f32) -> ([f32; KB], [bool; KB]) {
    let hd = q.len();
    let mut arg = [0f32; KB];
    let mut moved = [false; KB];
    for i in 0..nb {
        let base = (t0 + i) * u.kvd + u.off;
        let s = dot(q, &u.keys[base..base + hd]) * u.scale;
        // the online softmax: a new max scales what was summed by e^(m-s), else this value is
        // weighted by e^(s-m)
        if s > *m {
            arg[i] = *m - s;
            moved[i] = true;
            *m = s;
        } else {
            arg[i] = s - *m;
        }
    }
    (arg, moved)
}

/// The common loop: per head, keys in blocks of `KB`: scores (`$dot(q, k) -> f32`), the running
/// max and each step's exponent argument, the exponentials (`$exp(&mut [f32; KB])`), then the
/// sequential steps: the accumulator scaled by `ms` (`$scale(acc, ms)`) when the max moved and
/// `acc += v·vs` (`$axpy(acc, v, vs)`), each rounded to f16.
macro_rules! attend_body {
    ($st:expr, $u:expr, $dot:expr, $exp:expr, $scale:expr, $axpy:expr) => {{
        let (st, u) = ($st, $u);
        let heads = st.start(u);
        let hd = st.hd;
        for j in 0..heads {
            let q = &st.qg[j * hd..(j + 1) * hd];
            let acc = &mut st.acc[j * hd..(j + 1) * hd];
            let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
            let mut t0 = 0;
            while t0 < u.len {
                let nb = KB.min(u.len - t0);
                let (mut arg, moved) = block_scores(q, u, t0, nb, &mut m, $dot);
                $exp(&mut arg);
                for i in 0..nb {
                    let (ms, vs) = if moved[i] { (arg[i], 1.0) } else { (1.0, arg[i]) };
                    sum = sum * ms + vs;
                    if ms != 1.0 {
                        $scale(&mut *acc, ms);
                    }
                    let base = (t0 + i) * u.kvd + u.off;
                    $axpy(&mut *acc, &u.values[base..base + hd], vs);
                }
                t0 += nb;
            }
            st.sum[j] = sum;
        }
    }};
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
    attend_body!(
        st,
        u,
        dot8,
        |a: &mut [f32; KB]| a.iter_mut().for_each(|x| *x = libm::expf(*x)),
        |acc: &mut [f32], ms: f32| acc.iter_mut().for_each(|x| *x = f16::round(*x * ms)),
        |acc: &mut [f32], v: &[f32], vs: f32| acc.iter_mut().zip(v).for_each(|(x, v)| *x = f16::round(*x + v * vs))
    )
}

/// AVX2 + F16C: rounding to f16 is two conversions. `hd` a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn attend_avx2(st: &mut State, u: &Unit<'_>) {
    use std::arch::x86_64::*;
    let round = |x: __m256| _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
    // SAFETY (every pointer access below): slices of whole groups of 8 (hd % 8 == 0, bounds
    // checked by the slicing in the loop).
    let dot = |q: &[f32], k: &[f32]| {
        let mut l = _mm256_setzero_ps();
        for c in (0..q.len()).step_by(8) {
            l = _mm256_add_ps(l, _mm256_mul_ps(_mm256_loadu_ps(q.as_ptr().add(c)), _mm256_loadu_ps(k.as_ptr().add(c))));
        }
        let p = _mm_add_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps::<1>(l));
        let mut p4 = [0f32; 4];
        _mm_storeu_ps(p4.as_mut_ptr(), p);
        ((p4[0] + p4[1]) + p4[2]) + p4[3]
    };
    let exp = |a: &mut [f32; KB]| _mm256_storeu_ps(a.as_mut_ptr(), crate::vmath::expf8(_mm256_loadu_ps(a.as_ptr())));
    let scale = |acc: &mut [f32], ms: f32| {
        let m8 = _mm256_set1_ps(ms);
        for c in (0..acc.len()).step_by(8) {
            let p = acc.as_mut_ptr().add(c);
            _mm256_storeu_ps(p, round(_mm256_mul_ps(_mm256_loadu_ps(p), m8)));
        }
    };
    let axpy = |acc: &mut [f32], v: &[f32], vs: f32| {
        let v8 = _mm256_set1_ps(vs);
        for c in (0..acc.len()).step_by(8) {
            let p = acc.as_mut_ptr().add(c);
            _mm256_storeu_ps(p, round(_mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(_mm256_loadu_ps(v.as_ptr().add(c)), v8))));
        }
    };
    attend_body!(st, u, dot, exp, scale, axpy)
}

/// wasm simd128. The value accumulator's step `acc = round(acc + v·vs)` is the loop's cost, and
/// rounding to f16 has no instruction here: it is an integer add and mask on the bits, exact when
/// every result is zero or in f16's normal range (see `round4_f16_fast`). So the steps run that
/// short path and keep, over the whole row, the largest |result| and the smallest nonzero one;
/// when one of them left the range (rarely: near-zero sums) the steps are done again from the
/// untouched source with the general rounding. Steps write to a second row and the rows swap
/// roles, so the source stays intact. Four keys whose scores did not move the running max are
/// one pass over the row (the accumulator stays in a register between them). The constants are
/// made once per call from opaque values: V8 would otherwise rebuild each `v128.const` at every
/// use.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn attend_simd128(st: &mut State, u: &Unit<'_>) {
    use crate::quant::simd128::round4_f16_fast;
    use core::arch::wasm32::*;
    use core::hint::black_box;
    // SAFETY (every pointer access below): rows of `hd` values (a multiple of 8) inside the
    // slices they come from, bounds checked by the slicing where they are taken.
    let ld = |p: *const f32| unsafe { v128_load(p as *const v128) };
    let st4 = |p: *mut f32, v: v128| unsafe { v128_store(p as *mut v128, v) };
    let abs = u32x4_splat(black_box(0x7fff_ffff));
    let (one, half, keep) = (u32x4_splat(black_box(1)), u32x4_splat(black_box(0x0fff)), u32x4_splat(black_box(!0x1fff)));
    // f16's normal range, as bits of |x|: 2^-14 ..= 65504
    const LO: u32 = 0x3880_0000;
    const HI: u32 = 0x477f_e000;
    // One short-path step on four lanes: `y` rounded; `mx` and `mn` track max |y| and min |y|-1
    // (unsigned: a zero lane wraps to the top and never counts as small).
    let step = |y: v128, mx: &mut v128, mn: &mut v128| {
        let a = v128_and(y, abs);
        *mx = i32x4_max(*mx, a);
        *mn = u32x4_min(*mn, i32x4_sub(a, one));
        let odd = v128_and(u32x4_shr(y, 13), one);
        v128_and(i32x4_add(y, i32x4_add(odd, half)), keep)
    };
    let in_range = |mx: v128, mn: v128| {
        !v128_any_true(v128_or(u32x4_gt(mx, u32x4_splat(HI)), u32x4_lt(mn, u32x4_splat(LO - 1))))
    };
    // src + v·vs rounded into dst by the short path; false when a lane needs the general one
    let axpy_short = |src: *const f32, dst: *mut f32, v: *const f32, vs: f32, hd: usize| {
        let v4 = f32x4_splat(vs);
        let (mut mx, mut mn) = (u32x4_splat(0), u32x4_splat(u32::MAX));
        for c in (0..hd).step_by(4) {
            let y = unsafe { f32x4_add(ld(src.add(c)), f32x4_mul(ld(v.add(c)), v4)) };
            st4(unsafe { dst.add(c) }, step(y, &mut mx, &mut mn));
        }
        in_range(mx, mn)
    };
    // four steps in one pass: src + v0·vs0, then + v1·vs1, ..., each rounded
    let axpy4_short = |src: *const f32, dst: *mut f32, v: [*const f32; 4], vs: [f32; 4], hd: usize| {
        let s = vs.map(|x| f32x4_splat(x));
        let (mut mx, mut mn) = (u32x4_splat(0), u32x4_splat(u32::MAX));
        for c in (0..hd).step_by(4) {
            let mut y = ld(unsafe { src.add(c) });
            for k in 0..4 {
                y = step(f32x4_add(y, f32x4_mul(ld(unsafe { v[k].add(c) }), s[k])), &mut mx, &mut mn);
            }
            st4(unsafe { dst.add(c) }, y);
        }
        in_range(mx, mn)
    };
    let axpy_general = |src: *const f32, dst: *mut f32, v: *const f32, vs: f32, hd: usize| {
        let v4 = f32x4_splat(vs);
        for c in (0..hd).step_by(4) {
            unsafe { st4(dst.add(c), round4_f16_fast(f32x4_add(ld(src.add(c)), f32x4_mul(ld(v.add(c)), v4)))) };
        }
    };
    let dot = |q: &[f32], k: &[f32]| {
        let (mut l0, mut l1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for c in (0..q.len()).step_by(8) {
            let (qp, kp) = unsafe { (q.as_ptr().add(c), k.as_ptr().add(c)) };
            l0 = f32x4_add(l0, f32x4_mul(ld(qp), ld(kp)));
            l1 = f32x4_add(l1, f32x4_mul(ld(unsafe { qp.add(4) }), ld(unsafe { kp.add(4) })));
        }
        let p = f32x4_add(l0, l1);
        ((f32x4_extract_lane::<0>(p) + f32x4_extract_lane::<1>(p)) + f32x4_extract_lane::<2>(p)) + f32x4_extract_lane::<3>(p)
    };
    let heads = st.start(u);
    let hd = st.hd;
    st.spare.resize(hd, 0.0);
    for j in 0..heads {
        let q = &st.qg[j * hd..(j + 1) * hd];
        let acc = st.acc[j * hd..(j + 1) * hd].as_mut_ptr();
        let (mut cur, mut other) = (acc, st.spare.as_mut_ptr());
        let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
        let mut t0 = 0;
        while t0 < u.len {
            let nb = KB.min(u.len - t0);
            // the same scores, exponentials and sums as `attend_body`
            let (mut arg, moved) = block_scores(q, u, t0, nb, &mut m, dot);
            let p = arg.as_mut_ptr();
            st4(p, crate::vmath::expf4(ld(p)));
            let p4 = unsafe { p.add(4) };
            st4(p4, crate::vmath::expf4(ld(p4)));
            let value = |i: usize| {
                let base = (t0 + i) * u.kvd + u.off;
                u.values[base..base + hd].as_ptr()
            };
            let mut i = 0;
            while i < nb {
                if i + 4 <= nb && !moved[i..i + 4].contains(&true) {
                    // four steps as below with ms = 1 (`sum * 1.0` is `sum`)
                    let (v, vs) = ([value(i), value(i + 1), value(i + 2), value(i + 3)], [arg[i], arg[i + 1], arg[i + 2], arg[i + 3]]);
                    for x in vs {
                        sum += x;
                    }
                    if !axpy4_short(cur, other, v, vs, hd) {
                        axpy_general(cur, other, v[0], vs[0], hd);
                        for k in 1..4 {
                            axpy_general(other, other, v[k], vs[k], hd);
                        }
                    }
                    core::mem::swap(&mut cur, &mut other);
                    i += 4;
                    continue;
                }
                let (ms, vs) = if moved[i] { (arg[i], 1.0) } else { (1.0, arg[i]) };
                sum = sum * ms + vs;
                if ms != 1.0 {
                    let m4 = f32x4_splat(ms);
                    for c in (0..hd).step_by(4) {
                        let p = unsafe { cur.add(c) };
                        st4(p, round4_f16_fast(f32x4_mul(ld(p), m4)));
                    }
                }
                let v = value(i);
                if !axpy_short(cur, other, v, vs, hd) {
                    axpy_general(cur, other, v, vs, hd);
                }
                core::mem::swap(&mut cur, &mut other);
                i += 1;
            }
            t0 += nb;
        }
        if cur != acc {
            // SAFETY: both rows hold `hd` values; `spare` and `acc` do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(cur, acc, hd) };
        }
        st.sum[j] = sum;
    }
}
