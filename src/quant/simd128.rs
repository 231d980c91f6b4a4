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
