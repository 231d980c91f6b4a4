//! Attention against one KV head: the online-softmax loop over the cached keys and values, at
//! llama.cpp's CPU flash-attention precision (queries, keys and values are f16; the value
//! accumulator is kept at f16 precision, rounded after every step, as its f16 V path does with
//! `VKQ16`). Each step rounds, so a query's loop over keys stays sequential; speed comes from doing
//! it in vectors and from taking keys 8 at a time: their 8 scores first, then the 8 exponentials
//! of the running-max updates in one vector call, then the 8 accumulator steps.
//!
//! A unit is every query that reads one KV head: the query heads of its group (GQA), for one or a
//! few consecutive tokens — its lanes. The cache's f16 rows are converted to f32 a block of 8 keys
//! at a time into a small buffer, once for all the lanes: no f32 copy of the cache is written to
//! memory, and the thread that runs a unit reads only the cache itself (each lane's results do not
//! depend on where blocks start, so lanes with different key ranges share the blocks).
//!
//! One scalar reference (`attend_scalar`) fixes the float order; the AVX2+F16C and wasm simd128
//! versions compute the same bits (tests/kernels.rs checks them on random data, natively and in
//! wasm). Dot products run in 8 lanes (`lanes[l] += q·k`, then `((l0+l4) + (l1+l5)) + (l2+l6)) +
//! (l3+l7)`), products and sums are separate roundings (no fused multiply-add: wasm has no exact
//! one), exponentials are `libm::expf`'s bits (`vmath`).

use crate::quant::f16;
use std::ops::Range;

/// Keys 8 at a time.
const KB: usize = 8;

/// One unit of attention work: `tokens` consecutive query tokens × `heads` query heads (its lanes,
/// lane `t * heads + j`), all over the same KV head.
pub struct Unit<'a> {
    /// Token t's queries: `heads × hd` values from `t * q_stride` (rounded to f16 here).
    pub q: &'a [f32],
    pub q_stride: usize,
    pub tokens: usize,
    pub heads: usize,
    /// The KV head's cache rows in reach, `hd` f16 values each, in position order: one run, or
    /// two where a ring wraps (`[run, &[]]` for one).
    pub keys: [&'a [u16]; 2],
    pub values: [&'a [u16]; 2],
    /// Token t sees rows `(end + t).saturating_sub(window)..end + t` (`window`: `usize::MAX` for
    /// none).
    pub end: usize,
    pub window: usize,
    /// Multiplies each score q·k (1/√head_dim for most models; 1 when the caller scaled q).
    pub scale: f32,
}

impl Unit<'_> {
    /// The rows token `t` sees.
    fn span(&self, t: usize) -> Range<usize> {
        let e = self.end + t;
        e.saturating_sub(self.window)..e
    }
}

/// The `hd`-value cache rows of one run pair (the keys' or the values'), with the first run's row
/// count worked out once per unit, not per row.
struct Rows<'a> {
    runs: [&'a [u16]; 2],
    split: usize,
}

impl<'a> Rows<'a> {
    fn new(runs: [&'a [u16]; 2], hd: usize) -> Rows<'a> {
        Rows { runs, split: runs[0].len() / hd }
    }

    /// Row `r`'s `hd` values.
    #[inline(always)]
    fn get(&self, r: usize, hd: usize) -> &'a [u16] {
        let (run, r) = if r < self.split { (self.runs[0], r) } else { (self.runs[1], r - self.split) };
        &run[r * hd..][..hd]
    }
}

/// Per-thread buffers, kept across units: for each lane its f16-rounded query, running max,
/// softmax sum and value accumulator (and a second accumulator row: wasm's steps write their
/// result there, then the rows swap), a block's exponent arguments; the block's keys and values
/// as f32.
pub struct State {
    hd: usize,
    qg: Vec<f32>,
    acc: Vec<f32>,
    spare: Vec<f32>,
    /// the lane's current accumulator is its `spare` row
    flip: Vec<bool>,
    max: Vec<f32>,
    sum: Vec<f32>,
    arg: Vec<[f32; KB]>,
    moved: Vec<[bool; KB]>,
    /// the rows of the current block each lane sees
    part: Vec<Range<usize>>,
    kb: Vec<f32>,
    vb: Vec<f32>,
}

impl State {
    /// Buffers for units of up to `lanes` lanes of `hd` values.
    pub fn new(lanes: usize, hd: usize) -> State {
        let z = |n: usize| vec![0f32; n];
        State {
            hd,
            qg: z(lanes * hd),
            acc: z(lanes * hd),
            spare: z(lanes * hd),
            flip: vec![false; lanes],
            max: z(lanes),
            sum: z(lanes),
            arg: vec![[0.0; KB]; lanes],
            moved: vec![[false; KB]; lanes],
            part: vec![0..0; lanes],
            kb: z(KB * hd),
            vb: z(KB * hd),
        }
    }

    /// Makes room for units of `lanes` lanes of `hd` values (allocates only to grow).
    pub fn ensure(&mut self, lanes: usize, hd: usize) {
        if self.hd != hd || self.sum.len() < lanes {
            *self = State::new(lanes.max(self.sum.len()), hd);
        }
    }

    /// Lane `l`'s attention output after `attend`: its accumulator over its softmax sum.
    pub fn write_out(&self, l: usize, out: &mut [f32]) {
        let inv = 1.0 / self.sum[l];
        for (o, a) in out.iter_mut().zip(&self.acc[l * self.hd..(l + 1) * self.hd]) {
            *o = a * inv;
        }
    }

    /// Prepares for a unit: checks its shape, rounds its queries, clears the lanes; returns their
    /// count.
    fn start(&mut self, u: &Unit<'_>) -> usize {
        let (hd, lanes) = (self.hd, u.tokens * u.heads);
        assert!(lanes <= self.sum.len(), "attention unit larger than its state");
        assert!(u.tokens == 0 || (u.tokens - 1) * u.q_stride + u.heads * hd <= u.q.len(), "attention queries short");
        let rows = |runs: &[&[u16]; 2]| runs.iter().map(|r| r.len() / hd).sum::<usize>();
        assert!(
            u.end + u.tokens.saturating_sub(1) <= rows(&u.keys).min(rows(&u.values)),
            "attention unit past the cache"
        );
        for t in 0..u.tokens {
            let q = &u.q[t * u.q_stride..][..u.heads * hd];
            for (d, v) in self.qg[t * u.heads * hd..].iter_mut().zip(q) {
                *d = f16::round(*v);
            }
        }
        self.acc[..lanes * hd].fill(0.0);
        self.flip[..lanes].fill(false);
        self.max[..lanes].fill(f32::NEG_INFINITY);
        self.sum[..lanes].fill(0.0);
        lanes
    }
}

/// A lane's accumulator during one block's steps: `cur` holds it; steps that write elsewhere
/// (wasm) write to `other` and swap the two.
pub struct Lane {
    cur: *mut f32,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    other: *mut f32,
    sum: f32,
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

/// The loop every version shares, with its own conversion of `hd` f16 values (`convert`), dot
/// product, exponentials of a block's arguments and a lane's steps over a block's rows
/// (`steps(lane, values, rows, arg, moved)`): blocks of `KB` cache rows from the first row any
/// lane sees; per block its keys converted, each lane's scores on the rows it sees (the running max
/// moved along, each key's exponent argument and whether it moved the max), the exponentials,
/// the values converted, each lane's steps.
#[inline(always)]
fn drive(
    st: &mut State,
    u: &Unit<'_>,
    convert: impl Fn(&[u16], &mut [f32]),
    dot: impl Fn(&[f32], &[f32]) -> f32,
    exp: impl Fn(&mut [f32; KB]),
    mut steps: impl FnMut(&mut Lane, &[f32], Range<usize>, &[f32; KB], &[bool; KB]),
) {
    let lanes = st.start(u);
    if lanes == 0 {
        return;
    }
    let State { hd, qg, acc, spare, flip, max, sum, arg, moved, part, kb, vb } = st;
    let hd = *hd;
    let (keys, values) = (Rows::new(u.keys, hd), Rows::new(u.values, hd));
    let (first, last) = (u.span(0).start, u.span(u.tokens - 1).end);
    // the part of block t0..t0+nb lane l sees, as rows of the block
    let seen = |l: usize, t0: usize, nb: usize| {
        let s = u.span(l / u.heads);
        s.start.max(t0) - t0..s.end.min(t0 + nb).max(t0) - t0
    };
    let mut t0 = first;
    while t0 < last {
        let nb = KB.min(last - t0);
        for i in 0..nb {
            convert(keys.get(t0 + i, hd), &mut kb[i * hd..(i + 1) * hd]);
        }
        for l in 0..lanes {
            let r = seen(l, t0, nb);
            part[l] = r.clone();
            if r.is_empty() {
                continue;
            }
            let q = &qg[l * hd..(l + 1) * hd];
            let m = &mut max[l];
            for i in r {
                let s = dot(q, &kb[i * hd..(i + 1) * hd]) * u.scale;
                // the online softmax: a new max scales what was summed by e^(m-s), else this
                // value is weighted by e^(s-m)
                if s > *m {
                    arg[l][i] = *m - s;
                    moved[l][i] = true;
                    *m = s;
                } else {
                    arg[l][i] = s - *m;
                    moved[l][i] = false;
                }
            }
            exp(&mut arg[l]);
        }
        for i in 0..nb {
            convert(values.get(t0 + i, hd), &mut vb[i * hd..(i + 1) * hd]);
        }
        for l in 0..lanes {
            let r = part[l].clone();
            if r.is_empty() {
                continue;
            }
            let (a, b) = (acc[l * hd..].as_mut_ptr(), spare[l * hd..].as_mut_ptr());
            let mut lane = if flip[l] { Lane { cur: b, other: a, sum: sum[l] } } else { Lane { cur: a, other: b, sum: sum[l] } };
            steps(&mut lane, vb, r, &arg[l], &moved[l]);
            flip[l] = lane.cur == b;
            sum[l] = lane.sum;
        }
        t0 += nb;
    }
    for l in 0..lanes {
        if flip[l] {
            acc[l * hd..(l + 1) * hd].copy_from_slice(&spare[l * hd..(l + 1) * hd]);
        }
    }
}

/// A lane's steps over a block's rows `r` of `vb`, one key at a time, in place: the accumulator
/// scaled by `ms` when the max moved (`scale(acc, ms)`), then `acc += v·vs` (`axpy(acc, v, vs)`),
/// each rounded to f16 by the two helpers.
#[inline(always)]
fn steps_in_place(
    lane: &mut Lane,
    vb: &[f32],
    r: Range<usize>,
    arg: &[f32; KB],
    moved: &[bool; KB],
    hd: usize,
    scale: impl Fn(&mut [f32], f32),
    axpy: impl Fn(&mut [f32], &[f32], f32),
) {
    // SAFETY: `cur` is the lane's own accumulator row of `hd` values (`drive`), not aliased here.
    let acc = unsafe { std::slice::from_raw_parts_mut(lane.cur, hd) };
    for i in r {
        let (ms, vs) = if moved[i] { (arg[i], 1.0) } else { (1.0, arg[i]) };
        lane.sum = lane.sum * ms + vs;
        if ms != 1.0 {
            scale(&mut *acc, ms);
        }
        axpy(&mut *acc, &vb[i * hd..(i + 1) * hd], vs);
    }
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
    let hd = st.hd;
    drive(
        st,
        u,
        |h: &[u16], d: &mut [f32]| d.iter_mut().zip(h).for_each(|(d, &h)| *d = f16::to_f32(h)),
        dot8,
        |a: &mut [f32; KB]| a.iter_mut().for_each(|x| *x = libm::expf(*x)),
        |lane, vb, r, arg, moved| {
            steps_in_place(
                lane,
                vb,
                r,
                arg,
                moved,
                hd,
                |acc: &mut [f32], ms: f32| acc.iter_mut().for_each(|x| *x = f16::round(*x * ms)),
                |acc: &mut [f32], v: &[f32], vs: f32| acc.iter_mut().zip(v).for_each(|(x, v)| *x = f16::round(*x + v * vs)),
            )
        },
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
    let convert = |h: &[u16], d: &mut [f32]| {
        for c in (0..d.len()).step_by(8) {
            _mm256_storeu_ps(d.as_mut_ptr().add(c), _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().add(c) as *const __m128i)));
        }
    };
    let hd = st.hd;
    drive(st, u, convert, dot, exp, |lane, vb, r, arg, moved| steps_in_place(lane, vb, r, arg, moved, hd, scale, axpy))
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
    let c = crate::quant::simd128::F16Consts::new();
    let convert = |h: &[u16], d: &mut [f32]| {
        for i in (0..d.len()).step_by(8) {
            // SAFETY: whole groups of 8 inside both rows (hd % 8 == 0).
            unsafe {
                let (a, b) = crate::quant::simd128::f16x8_to_f32(v128_load(h.as_ptr().add(i) as *const v128), &c);
                v128_store(d.as_mut_ptr().add(i) as *mut v128, a);
                v128_store(d.as_mut_ptr().add(i + 4) as *mut v128, b);
            }
        }
    };
    let exp = |a: &mut [f32; KB]| {
        let p = a.as_mut_ptr();
        st4(p, crate::vmath::expf4(ld(p)));
        let p4 = unsafe { p.add(4) };
        st4(p4, crate::vmath::expf4(ld(p4)));
    };
    let hd = st.hd;
    drive(st, u, convert, dot, exp, |lane, vb, r, arg, moved| {
        let value = |i: usize| vb[i * hd..(i + 1) * hd].as_ptr();
        let (mut i, end) = (r.start, r.end);
        while i < end {
            if i + 4 <= end && !moved[i..i + 4].contains(&true) {
                // four steps as below with ms = 1 (`sum * 1.0` is `sum`)
                let (v, vs) = ([value(i), value(i + 1), value(i + 2), value(i + 3)], [arg[i], arg[i + 1], arg[i + 2], arg[i + 3]]);
                for x in vs {
                    lane.sum += x;
                }
                if !axpy4_short(lane.cur, lane.other, v, vs, hd) {
                    axpy_general(lane.cur, lane.other, v[0], vs[0], hd);
                    for k in 1..4 {
                        axpy_general(lane.other, lane.other, v[k], vs[k], hd);
                    }
                }
                core::mem::swap(&mut lane.cur, &mut lane.other);
                i += 4;
                continue;
            }
            let (ms, vs) = if moved[i] { (arg[i], 1.0) } else { (1.0, arg[i]) };
            lane.sum = lane.sum * ms + vs;
            if ms != 1.0 {
                let m4 = f32x4_splat(ms);
                for c in (0..hd).step_by(4) {
                    let p = unsafe { lane.cur.add(c) };
                    st4(p, round4_f16_fast(f32x4_mul(ld(p), m4)));
                }
            }
            let v = value(i);
            if !axpy_short(lane.cur, lane.other, v, vs, hd) {
                axpy_general(lane.cur, lane.other, v, vs, hd);
            }
            core::mem::swap(&mut lane.cur, &mut lane.other);
            i += 1;
        }
    })
}
