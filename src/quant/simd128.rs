//! wasm `simd128` dot products and activation quantizers. Products of 4-/5-/8-bit values are widened
//! to i16 and summed exactly with `i32x4.dot_i16x8_s`; four blocks' sums are gathered into one
//! vector and scaled and accumulated in the canonical order of `scalar::Acc4`, so the results are
//! bit-identical to the scalar reference and to the native kernels.

use super::f16::to_le;
use super::*;
use core::arch::wasm32::*;

#[inline(always)]
fn load16(p: &[u8; 16]) -> v128 {
    // SAFETY: reads exactly the 16 bytes of the array (unaligned loads are allowed in wasm).
    unsafe { v128_load(p.as_ptr() as *const v128) }
}

#[inline(always)]
fn load_q8(qs: &[i8; 32]) -> (v128, v128) {
    // SAFETY: two 16-byte loads inside the 32-byte array.
    unsafe { (v128_load(qs.as_ptr() as *const v128), v128_load(qs.as_ptr().add(16) as *const v128)) }
}

/// (elements 0..15, elements 16..31) of a nibble-packed block, as u8 lanes.
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> (v128, v128) {
    let b = load16(qs);
    (v128_and(b, u8x16_splat(0x0f)), u8x16_shr(b, 4))
}

/// The fifth bits of a Q5 block as bytes 0x10 / 0, for elements 0..15 and 16..31.
#[inline(always)]
fn fifth_bits(qh: [u8; 4]) -> (v128, v128) {
    let h = u32x4_splat(u32::from_le_bytes(qh));
    let bit = u64x2_splat(0x8040_2010_0804_0201);
    let lo = u8x16_swizzle(h, i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    let hi = u8x16_swizzle(h, i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    let m = u8x16_splat(0x10);
    (
        v128_and(u8x16_eq(v128_and(lo, bit), bit), m),
        v128_and(u8x16_eq(v128_and(hi, bit), bit), m),
    )
}

/// Exact sum of 16 lane products of x (i8, or u8 < 128) and y (i8), as i32x4 partial sums.
#[inline(always)]
fn dot16(x: v128, y: v128) -> v128 {
    let a = i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), i16x8_extend_low_i8x16(y));
    let b = i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), i16x8_extend_high_i8x16(y));
    i32x4_add(a, b)
}

/// A block's 32 products as i32x4 partial sums.
#[inline(always)]
fn block_ints(x: (v128, v128), y: (v128, v128)) -> v128 {
    i32x4_add(dot16(x.0, y.0), dot16(x.1, y.1))
}

/// The totals of four blocks' partial sums, as f32 lanes (exact: |sum| < 2^24).
#[inline(always)]
fn totals4(p0: v128, p1: v128, p2: v128, p3: v128) -> v128 {
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(p0, p1), i32x4_shuffle::<2, 6, 3, 7>(p0, p1));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(p2, p3), i32x4_shuffle::<2, 6, 3, 7>(p2, p3));
    let t = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b));
    f32x4_convert_i32x4(t)
}

#[inline(always)]
fn total(p: v128) -> i32 {
    i32x4_extract_lane::<0>(p) + i32x4_extract_lane::<1>(p) + i32x4_extract_lane::<2>(p) + i32x4_extract_lane::<3>(p)
}

/// Four f16 values (bits) as f32 lanes, exactly as `f16::to_f32` converts each.
#[inline(always)]
fn f16x4(a: u16, b: u16, c: u16, d: u16) -> v128 {
    let v = u32x4(a as u32, b as u32, c as u32, d as u32);
    let sign = i32x4_shl(v128_and(v, u32x4_splat(0x8000)), 16);
    let em = v128_and(v, u32x4_splat(0x7fff));
    let shifted = i32x4_shl(em, 13);
    let finite = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x7780_0000)));
    let inf_nan = v128_or(shifted, u32x4_splat(0x7f80_0000));
    let special = u32x4_ge(em, u32x4_splat(0x7c00));
    v128_or(v128_bitselect(inf_nan, finite, special), sign)
}

/// Four f32 (little-endian bytes) from index `i` of a scale array.
#[inline(always)]
fn load_f32x4(bytes: &[u8], i: usize) -> v128 {
    let s = &bytes[4 * i..4 * i + 16];
    // SAFETY: reads exactly the 16 bytes of `s` (unaligned loads are allowed in wasm).
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[inline(always)]
fn f32_at(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

#[inline(always)]
fn h(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// The canonical accumulation of `scalar::Acc4`, four blocks per vector step: `$ints(x, y)` gives a
/// block's integer partial sums; `$dw`/`$da` the f16 scales; `$mw`/`$sa` (optional) the weight
/// minimum and the activation sum.
macro_rules! canonical_dot {
    ($w:expr, $a:expr, $ints:expr, $dw:expr, $da:expr $(, $mw:expr, $sa:expr)?) => {{
        let (w, a, da_all) = ($w, $a, $da);
        let n = w.len().min(a.len());
        let full = n / 4 * 4;
        let mut acc = f32x4_splat(0.0);
        #[allow(unused_mut)]
        let mut accm = f32x4_splat(0.0);
        let mut b = 0;
        while b < full {
            let (w4, a4) = (&w[b..b + 4], &a[b..b + 4]);
            let s = totals4($ints(&w4[0], &a4[0]), $ints(&w4[1], &a4[1]), $ints(&w4[2], &a4[2]), $ints(&w4[3], &a4[3]));
            let dw = f16x4($dw(&w4[0]), $dw(&w4[1]), $dw(&w4[2]), $dw(&w4[3]));
            let da = load_f32x4(da_all, b);
            acc = f32x4_add(acc, f32x4_mul(f32x4_mul(dw, da), s));
            $(
                let mw = f16x4($mw(&w4[0]), $mw(&w4[1]), $mw(&w4[2]), $mw(&w4[3]));
                let sa = load_f32x4($sa, b);
                accm = f32x4_add(accm, f32x4_mul(mw, sa));
            )?
            b += 4;
        }
        let mut ad = [f32x4_extract_lane::<0>(acc), f32x4_extract_lane::<1>(acc), f32x4_extract_lane::<2>(acc), f32x4_extract_lane::<3>(acc)];
        #[allow(unused_mut)]
        let mut am = [f32x4_extract_lane::<0>(accm), f32x4_extract_lane::<1>(accm), f32x4_extract_lane::<2>(accm), f32x4_extract_lane::<3>(accm)];
        for b in full..n {
            let scale = super::f16::to_f32($dw(&w[b])) * f32_at(da_all, b);
            ad[b % 4] += scale * total($ints(&w[b], &a[b])) as f32;
            $( am[b % 4] += super::f16::to_f32($mw(&w[b])) * f32_at($sa, b); )?
        }
        ((ad[0] + ad[1]) + (ad[2] + ad[3])) + ((am[0] + am[1]) + (am[2] + am[3]))
    }};
}

pub fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0], sd: &[u8]) -> f32 {
    let eight = i8x16_splat(8);
    let ints = |x: &BlockQ4_0, y: &BlockQ8_0| {
        let (lo, hi) = nibbles(&x.qs);
        block_ints((i8x16_sub(lo, eight), i8x16_sub(hi, eight)), load_q8(&y.qs))
    };
    canonical_dot!(w, a, ints, |x: &BlockQ4_0| h(x.d), sd)
}

pub fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1], sd: &[u8], ss: &[u8]) -> f32 {
    let ints = |x: &BlockQ4_1, y: &BlockQ8_1| block_ints(nibbles(&x.qs), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ4_1| h(x.d), sd, |x: &BlockQ4_1| h(x.m), ss)
}

pub fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0], sd: &[u8]) -> f32 {
    let sixteen = i8x16_splat(16);
    let ints = |x: &BlockQ5_0, y: &BlockQ8_0| {
        let (lo, hi) = nibbles(&x.qs);
        let (hl, hh) = fifth_bits(x.qh);
        block_ints((i8x16_sub(v128_or(lo, hl), sixteen), i8x16_sub(v128_or(hi, hh), sixteen)), load_q8(&y.qs))
    };
    canonical_dot!(w, a, ints, |x: &BlockQ5_0| h(x.d), sd)
}

pub fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1], sd: &[u8], ss: &[u8]) -> f32 {
    let ints = |x: &BlockQ5_1, y: &BlockQ8_1| {
        let (lo, hi) = nibbles(&x.qs);
        let (hl, hh) = fifth_bits(x.qh);
        block_ints((v128_or(lo, hl), v128_or(hi, hh)), load_q8(&y.qs))
    };
    canonical_dot!(w, a, ints, |x: &BlockQ5_1| h(x.d), sd, |x: &BlockQ5_1| h(x.m), ss)
}

pub fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0], sd: &[u8]) -> f32 {
    let ints = |x: &BlockQ8_0, y: &BlockQ8_0| block_ints(load_q8(&x.qs), load_q8(&y.qs));
    canonical_dot!(w, a, ints, |x: &BlockQ8_0| h(x.d), sd)
}

/// max |x| over a block of 32, and the 8 f32x4 vectors of the block.
#[inline(always)]
fn load_block(xb: &[f32]) -> ([v128; 8], f32) {
    // SAFETY: xb has exactly 32 floats (chunks_exact(QK)).
    let v: [v128; 8] = std::array::from_fn(|i| unsafe { v128_load(xb.as_ptr().add(4 * i) as *const v128) });
    let m = v.iter().fold(f32x4_splat(0.0), |m, &x| f32x4_max(m, f32x4_abs(x)));
    let amax = f32x4_extract_lane::<0>(m)
        .max(f32x4_extract_lane::<1>(m))
        .max(f32x4_extract_lane::<2>(m))
        .max(f32x4_extract_lane::<3>(m));
    (v, amax)
}

/// Rounds v*id to nearest (ties to even) and packs 32 values to i8; returns the integer sum too.
#[inline(always)]
fn round_pack(v: &[v128; 8], id: f32, out: &mut [i8; 32]) -> i32 {
    let s = f32x4_splat(id);
    let q: [v128; 8] = std::array::from_fn(|i| i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v[i], s))));
    let w: [v128; 4] = std::array::from_fn(|i| i16x8_narrow_i32x4(q[2 * i], q[2 * i + 1]));
    let b0 = i8x16_narrow_i16x8(w[0], w[1]);
    let b1 = i8x16_narrow_i16x8(w[2], w[3]);
    // SAFETY: two 16-byte stores inside the 32-byte array.
    unsafe {
        v128_store(out.as_mut_ptr() as *mut v128, b0);
        v128_store(out.as_mut_ptr().add(16) as *mut v128, b1);
    }
    let t = q.iter().fold(i32x4_splat(0), |a, &x| i32x4_add(a, x));
    i32x4_extract_lane::<0>(t) + i32x4_extract_lane::<1>(t) + i32x4_extract_lane::<2>(t) + i32x4_extract_lane::<3>(t)
}

pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (v, amax) = load_block(xb);
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = to_le(amax / 127.0);
        round_pack(&v, id, &mut b.qs);
    }
}

pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (v, amax) = load_block(xb);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = to_le(d);
        let sum = round_pack(&v, id, &mut b.qs);
        b.s = to_le(d * sum as f32);
    }
}

// ---- K-quants (super-blocks of 256, Q8_K activations) ----
//
// Each super-block's integer sums are exact (i16 products summed by `i32x4.dot_i16x8_s`, then
// multiplied by the sub-block scale in i32); the scale unpacking and the float accumulation are the
// scalar reference's own code, so results are bit-identical to it.

#[inline(always)]
fn load_at(p: &[u8], i: usize) -> v128 {
    let s = &p[i..i + 16];
    // SAFETY: reads exactly the 16 bytes of `s` (unaligned loads are allowed in wasm).
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[inline(always)]
fn q8k_at(y: &BlockQ8K, i: usize) -> v128 {
    let s = &y.qs[i..i + 16];
    // SAFETY: as `load_at`.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

/// Σ_j m_j · (bsum_2j + bsum_2j+1): the minimums against Q8_K's per-16 sums.
#[inline(always)]
fn msum_k(m: &[u8; 8], y: &BlockQ8K) -> i32 {
    // SAFETY: two 16-byte loads inside the 32-byte bsums array.
    let (b0, b1) = unsafe { (v128_load(y.bsums.as_ptr() as *const v128), v128_load(y.bsums.as_ptr().add(8) as *const v128)) };
    // the mins each twice, as i16, against the 16 sums
    let m16 = u16x8(m[0] as u16, m[0] as u16, m[1] as u16, m[1] as u16, m[2] as u16, m[2] as u16, m[3] as u16, m[3] as u16);
    let m16b = u16x8(m[4] as u16, m[4] as u16, m[5] as u16, m[5] as u16, m[6] as u16, m[6] as u16, m[7] as u16, m[7] as u16);
    total(i32x4_add(i32x4_dot_i16x8(b0, m16), i32x4_dot_i16x8(b1, m16b)))
}

/// Σ over the four 64-element chunks of sc · (q·a): `q(i)` gives chunk i's low-half values
/// (sub-block 2i) and high-half values (sub-block 2i+1), 16 lanes at a time, unsigned < 128.
#[inline(always)]
fn isum_k32(sc: &[u8; 8], y: &BlockQ8K, q: impl Fn(usize) -> [v128; 4]) -> i32 {
    let mut s = i32x4_splat(0);
    for i in 0..4 {
        let [l0, l1, h0, h1] = q(i);
        let o = 64 * i;
        let lo = i32x4_add(dot16(l0, q8k_at(y, o)), dot16(l1, q8k_at(y, o + 16)));
        let hi = i32x4_add(dot16(h0, q8k_at(y, o + 32)), dot16(h1, q8k_at(y, o + 48)));
        s = i32x4_add(s, i32x4_mul(lo, i32x4_splat(sc[2 * i] as i32)));
        s = i32x4_add(s, i32x4_mul(hi, i32x4_splat(sc[2 * i + 1] as i32)));
    }
    total(s)
}

pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let m4 = u8x16_splat(0x0f);
    let mut acc = scalar::Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let (sc, m) = scalar::scales_mins_k4(&x.scales);
        let isum = isum_k32(&sc, y, |i| {
            let (q0, q1) = (load_at(&x.qs, 32 * i), load_at(&x.qs, 32 * i + 16));
            [v128_and(q0, m4), v128_and(q1, m4), u8x16_shr(q0, 4), u8x16_shr(q1, 4)]
        });
        scalar::acc_k_min(&mut acc, b, x.d, x.dmin, y, isum, msum_k(&m, y));
    }
    acc.sum()
}

pub fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let m4 = u8x16_splat(0x0f);
    let mut acc = scalar::Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let (sc, m) = scalar::scales_mins_k4(&x.scales);
        let (h0, h1) = (load_at(&x.qh, 0), load_at(&x.qh, 16));
        let isum = isum_k32(&sc, y, |i| {
            let (q0, q1) = (load_at(&x.qs, 32 * i), load_at(&x.qs, 32 * i + 16));
            // bit 2i of qh[l] → 16 for the low half, bit 2i+1 for the high half
            let fifth = |h: v128, bit: u32| u8x16_shl(v128_and(u8x16_shr(h, bit), u8x16_splat(1)), 4);
            let (bl, bh) = (2 * i as u32, 2 * i as u32 + 1);
            [
                v128_or(v128_and(q0, m4), fifth(h0, bl)),
                v128_or(v128_and(q1, m4), fifth(h1, bl)),
                v128_or(u8x16_shr(q0, 4), fifth(h0, bh)),
                v128_or(u8x16_shr(q1, 4), fifth(h1, bh)),
            ]
        });
        scalar::acc_k_min(&mut acc, b, x.d, x.dmin, y, isum, msum_k(&m, y));
    }
    acc.sum()
}

pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let (m4, m2, thirty_two) = (u8x16_splat(0x0f), u8x16_splat(0x03), i8x16_splat(32));
    let mut acc = scalar::Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let mut s = i32x4_splat(0);
        for n in 0..2 {
            for half in 0..2 {
                // lanes l = 16·half .. 16·half+16 of this 128-element chunk's four groups of 32
                let l = 16 * half;
                let ql0 = load_at(&x.ql, 64 * n + l);
                let ql1 = load_at(&x.ql, 64 * n + 32 + l);
                let qh = load_at(&x.qh, 32 * n + l);
                let hb = |sh: u32| u8x16_shl(v128_and(u8x16_shr(qh, sh), m2), 4);
                let q = [
                    v128_or(v128_and(ql0, m4), hb(0)),
                    v128_or(v128_and(ql1, m4), hb(2)),
                    v128_or(u8x16_shr(ql0, 4), hb(4)),
                    v128_or(u8x16_shr(ql1, 4), hb(6)),
                ];
                for (k, q) in q.into_iter().enumerate() {
                    let e = 128 * n + 32 * k + l; // first element; its sub-block of 16 is e/16
                    let p = dot16(i8x16_sub(q, thirty_two), q8k_at(y, e));
                    s = i32x4_add(s, i32x4_mul(p, i32x4_splat(x.scales[e / 16] as i32)));
                }
            }
        }
        acc.add(b, super::f16::le(x.d) * y.d(), total(s));
    }
    acc.sum()
}
