//! wasm `simd128` dot products and activation quantizers. Every product is summed exactly in
//! integers: with relaxed SIMD by 8-bit dot products against a 7-bit operand (4-/5-/6-bit quants
//! as stored; for 8-bit weights, the activations' 7-bit positive and negative parts), otherwise
//! widened to i16 and summed with `i32x4.dot_i16x8_s`. Every format goes four weight rows at a
//! time, one row per lane (`rows_loop` for the legacy formats, `rows_q4_1_x4` and `rows_q8_0_x4`
//! for Q4_1 and Q8_0 stored in four-row groups by `layout`, `k_tiles` for Q4_K and Q6_K), so
//! the float scaling and accumulation — the canonical order of `scalar::Acc4`, lane by lane, which
//! makes the results bit-identical to the scalar reference and to the native kernels — serve four
//! rows at once.

use super::f16::to_le;
use super::*;
use core::arch::wasm32::*;
use std::mem::MaybeUninit;

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

/// (elements 0..15, elements 16..31) of a nibble-packed block, as u8 lanes (`m`: 0x0f bytes).
#[inline(always)]
fn nibbles(qs: &[u8; 16], m: v128) -> (v128, v128) {
    let b = load16(qs);
    // a 16-bit shift and the mask: wasm's 8-bit shift is several instructions on x86
    (v128_and(b, m), v128_and(u16x8_shr(b, 4), m))
}

/// The fifth bits of a Q5 block as bytes 0x10 / 0, for elements 0..15 and 16..31.
#[inline(always)]
fn fifth_bits(qh: [u8; 4], c: &LConsts) -> (v128, v128) {
    let h = u32x4_splat(u32::from_le_bytes(qh));
    let (bit, m) = (c.bit, c.m10);
    let lo = u8x16_swizzle(h, c.q5_lo);
    let hi = u8x16_swizzle(h, c.q5_hi);
    (
        v128_and(u8x16_eq(v128_and(lo, bit), bit), m),
        v128_and(u8x16_eq(v128_and(hi, bit), bit), m),
    )
}

/// Exact sum of 16 lane products of x (i8) and y (i8), as i32x4 partial sums.
#[inline(always)]
fn dot16(x: v128, y: v128) -> v128 {
    let a = i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), i16x8_extend_low_i8x16(y));
    let b = i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), i16x8_extend_high_i8x16(y));
    i32x4_add(a, b)
}

/// `dot16` for x known to be in 0..=127: relaxed SIMD's 8-bit dot product where the build has it.
#[inline(always)]
fn dot16_u7(x: v128, y: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return i32x4_relaxed_dot_i8x16_i7x16_add(y, x, i32x4_splat(0));
    #[cfg(not(target_feature = "relaxed-simd"))]
    dot16(x, y)
}

/// The totals of four blocks' partial sums, as i32 lanes.
#[inline(always)]
fn totals4(p0: v128, p1: v128, p2: v128, p3: v128) -> v128 {
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(p0, p1), i32x4_shuffle::<2, 6, 3, 7>(p0, p1));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(p2, p3), i32x4_shuffle::<2, 6, 3, 7>(p2, p3));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
}

#[inline(always)]
fn total(p: v128) -> i32 {
    i32x4_extract_lane::<0>(p) + i32x4_extract_lane::<1>(p) + i32x4_extract_lane::<2>(p) + i32x4_extract_lane::<3>(p)
}

/// f16 values (bits, in the low half of each u32 lane; the high half is ignored) as f32 lanes,
/// exactly as `f16::to_f32` converts each.
#[inline(always)]
fn f16_lanes(v: v128) -> v128 {
    let sign = i32x4_shl(v128_and(v, u32x4_splat(0x8000)), 16);
    let em = v128_and(v, u32x4_splat(0x7fff));
    let shifted = i32x4_shl(em, 13);
    let finite = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x7780_0000)));
    let inf_nan = v128_or(shifted, u32x4_splat(0x7f80_0000));
    let special = u32x4_ge(em, u32x4_splat(0x7c00));
    v128_or(v128_bitselect(inf_nan, finite, special), sign)
}

/// Finite f16 values held in the high half of each u32 lane (the low half is ignored) as f32:
/// an arithmetic shift puts exponent and mantissa where f32 has them with the sign still on top,
/// the mask (`c.keep`) drops the low half and the sign's copies, and one exact multiplication by
/// 2^112 (`c.rebias`) rebiases the exponent (subnormals included). 4 operations, against
/// `f16_lanes`' 9; inf and NaN (exponent all ones) are the caller's to exclude.
#[inline(always)]
fn f16_high_finite(x: v128, c: &F16Consts) -> v128 {
    f32x4_mul(v128_and(i32x4_shr(x, 3), c.keep), c.rebias)
}

/// Four f16 scales (bits, one per u32 lane) as f32x4.
#[inline(always)]
fn scales_f32(v: v128, c: &LConsts) -> v128 {
    let e = c.exp32;
    if v128_any_true(i32x4_eq(v128_and(v, e), e)) {
        return f16_lanes(v);
    }
    f16_high_finite(i32x4_shl(v, 16), &c.f16)
}

/// Four (scale | minimum << 16) f16 pairs as two f32x4.
#[inline(always)]
fn pairs_f32(p: v128, c: &LConsts) -> (v128, v128) {
    let e = c.f16.exp16;
    if v128_any_true(i16x8_eq(v128_and(p, e), e)) {
        return (f16_lanes(p), f16_lanes(u32x4_shr(p, 16)));
    }
    (f16_high_finite(i32x4_shl(p, 16), &c.f16), f16_high_finite(p, &c.f16))
}

/// The constants of the short f16 → f32 conversions, made once per call and hidden from LLVM
/// (see `LConsts`).
pub struct F16Consts {
    /// f16's exponent bits in each u16
    exp16: v128,
    /// `f16_high_finite`'s mask and multiplier
    keep: v128,
    rebias: v128,
}

impl F16Consts {
    #[inline(always)]
    pub fn new() -> F16Consts {
        std::hint::black_box(F16Consts {
            exp16: u16x8_splat(0x7c00),
            keep: u32x4_splat(0x8fff_e000),
            rebias: f32x4_splat(f32::from_bits(0x7780_0000)),
        })
    }
}

impl Default for F16Consts {
    fn default() -> Self {
        Self::new()
    }
}

/// The constants of the legacy formats' loops and of the f16 scale conversions, made once per
/// call and hidden from LLVM (`black_box`), as `KConsts` for the K-quants: LLVM otherwise
/// rematerializes each `v128.const` at its use and V8 builds it from immediates there, three x86
/// instructions apiece, on every block.
struct LConsts {
    /// 0x0f bytes (`nibbles`)
    m4: v128,
    /// the short f16 conversion's (`pairs_f32`), and f16's exponent bits in each u32 (`scales_f32`)
    f16: F16Consts,
    exp32: v128,
    /// `fifth_bits`: one bit per byte lane, the 0x10 bytes, the swizzles of qh's bytes 0, 1 and 2, 3
    bit: v128,
    m10: v128,
    q5_lo: v128,
    q5_hi: v128,
}

impl LConsts {
    #[inline(always)]
    fn new() -> LConsts {
        std::hint::black_box(LConsts {
            m4: u8x16_splat(0x0f),
            f16: F16Consts {
                exp16: u16x8_splat(0x7c00),
                keep: u32x4_splat(0x8fff_e000),
                rebias: f32x4_splat(f32::from_bits(0x7780_0000)),
            },
            exp32: u32x4_splat(0x7c00),
            bit: u64x2_splat(0x8040_2010_0804_0201),
            m10: u8x16_splat(0x10),
            q5_lo: i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
            q5_hi: i8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        })
    }
}

#[inline(always)]
fn h(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// An activation row as `quantize_act` lays it out for wasm (blocks, the f32 scales `d`, the sums
/// `s` — f32 d·Σq for Q8_1, i32 Σq for Q8_0 — then 64 bytes per block: the values as i16, or with
/// relaxed SIMD their 7-bit parts, see `widen_act`), split into its parts
/// for `nb` blocks.
#[inline(always)]
fn act_parts(row: &[u8], nb: usize, block: usize) -> (*const f32, *const f32, *const i16) {
    let bb = nb * block;
    let scales = nb * 8;
    let need = bb + scales + nb * QK * 2;
    assert!(row.len() >= need, "activation row too short: {} < {need}", row.len());
    let d = row[bb..].as_ptr() as *const f32;
    // SAFETY: in bounds by the assert.
    unsafe { (d, d.add(nb), row[bb + scales..].as_ptr() as *const i16) }
}

/// Exact i32x4 partial sums of a prepared weight block (32 values as four i16x8) times 32 i16
/// activation values at `q` (SAFETY: `q` points at 32 readable i16).
#[inline(always)]
#[cfg_attr(target_feature = "relaxed-simd", allow(dead_code))]
unsafe fn mul_i16(p: &[v128; 4], q: *const i16) -> v128 {
    let d0 = i32x4_dot_i16x8(p[0], v128_load(q as *const v128));
    let d1 = i32x4_dot_i16x8(p[1], v128_load(q.add(8) as *const v128));
    let d2 = i32x4_dot_i16x8(p[2], v128_load(q.add(16) as *const v128));
    let d3 = i32x4_dot_i16x8(p[3], v128_load(q.add(24) as *const v128));
    i32x4_add(i32x4_add(d0, d1), i32x4_add(d2, d3))
}

/// Two u8x16 halves (elements 0..15, 16..31) widened to four i16x8.
#[inline(always)]
#[cfg_attr(target_feature = "relaxed-simd", allow(dead_code))]
fn widen_u(lo: v128, hi: v128) -> [v128; 4] {
    [u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi)]
}

/// Two i8x16 halves widened to four i16x8.
#[inline(always)]
#[cfg_attr(target_feature = "relaxed-simd", allow(dead_code))]
fn widen_s(lo: v128, hi: v128) -> [v128; 4] {
    [i16x8_extend_low_i8x16(lo), i16x8_extend_high_i8x16(lo), i16x8_extend_low_i8x16(hi), i16x8_extend_high_i8x16(hi)]
}

/// With relaxed SIMD: exact i32x4 partial sums of 32 i8 activations times 32 weights in 0..=127
/// (`lo`: elements 0..15, `hi`: 16..31). The weights are the instruction's 7-bit operand, so every
/// engine computes the same exact integers (no pair sum comes near i16 saturation: |127·31·2| < 2^15).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn relaxed_ints(w: &(v128, v128), y: &[i8; 32]) -> v128 {
    let (a0, a1) = load_q8(y);
    i32x4_relaxed_dot_i8x16_i7x16_add(a1, w.1, i32x4_relaxed_dot_i8x16_i7x16_add(a0, w.0, i32x4_splat(0)))
}

/// The integer totals as they are (kernels without a correction).
#[inline(always)]
fn exact(t: v128, _sums: v128) -> v128 {
    t
}

/// One byte of every 64 of `x` read and dropped: cache lines a kernel will use soon, requested
/// while it works on earlier ones.
///
/// Why: wasm has no prefetch instruction and (measured on an Intel Xeon host, natively with
/// `tools/mlp-probe.c` and in Chromium with `perf`) the hardware prefetchers do not run ahead of a
/// kernel's reads, so a line is only requested when the out-of-order window reaches its first
/// load. A kernel that spends ~100 instructions per line then has ~5 lines in flight, a third of
/// what the memory could serve. These reads cost a few instructions per line and run ahead of the
/// compute. They are spread through the work rather than issued in one run per tile: decode in
/// Chromium, alternating builds, the 1B model +23%, SmolLM2 +16% (likely because a read blocks
/// retirement until its line arrives, so a dense run of them fills the window with nothing else
/// to do, where reads spread out wait behind useful work).
///
/// Not on every machine: on an AMD EPYC (Zen 4) host the hardware prefetchers do run ahead, and
/// a touch that reaches a line before they do is a demand read that holds up retirement for the
/// memory's whole latency — decode in Chromium with no touches at all, alternating builds: the 1B
/// model 1.74×, SmolLM2 1.22×. So they are switched per machine: every kernel that touches is
/// compiled both ways (`const T: bool`), and `by_row_count!` runs the touching form, for one
/// activation row only, while `touching()` (`set_touch`, from timing the model both ways at load:
/// `tune::choose`).
///
/// How far ahead: in the legacy tiles and the grouped Q4_1 kernel, `AHEAD` tiles of four rows. One
/// tile ahead, a line touched at block b of a tile is used at block b of the next, one tile's work
/// later — on SmolLM2's rows of 18 blocks ~170 ns by instruction count, about the memory's
/// latency, so many lines still arrived late. The K-quant tiles and groups touch the next tile or
/// group: theirs take far longer (two ahead: 0.925× decode on the 1B model).
#[inline(always)]
fn touch<T>(x: &[T]) {
    let len = std::mem::size_of_val(x);
    let p = x.as_ptr() as *const u8;
    let mut o = 0;
    // SAFETY: every read is inside `x`.
    unsafe {
        while o < len {
            std::ptr::read_volatile(p.add(o));
            o += 64;
        }
    }
}

/// `touch` of elements `from..from + len` of `x` (clamped to `x`). With `len` a constant at the
/// call site and the range inside `x` (every tile but the last few), the reads are straight-line
/// code: one per 64 bytes from the range's first byte, no loop or bounds arithmetic per line (the
/// clamped loop costs ~6 instructions a line where this costs one).
#[inline(always)]
fn touch_at<T>(x: &[T], from: usize, len: usize) {
    let bytes = len * std::mem::size_of::<T>();
    if from <= x.len() && len <= x.len() - from {
        // SAFETY: every read is inside elements from..from + len of `x`.
        unsafe {
            let p = x.as_ptr().add(from) as *const u8;
            for i in 0..bytes.div_ceil(64) {
                std::ptr::read_volatile(p.add(64 * i));
            }
        }
    } else {
        touch(&x[x.len().min(from)..x.len().min(from + len)]);
    }
}

/// Whether one activation row runs the kernels' touching forms (see `touch`; on until
/// `set_touch` says otherwise).
static TOUCH: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// Whether the kernels `touch` the lines they will read soon.
#[inline(always)]
pub fn touching() -> bool {
    TOUCH.load(core::sync::atomic::Ordering::Relaxed)
}

/// Turns the kernels' `touch` reads on or off, for this instance (every thread). Results do not
/// change, only speed.
pub fn set_touch(on: bool) {
    TOUCH.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Tiles of four rows (in `rows_q4_1_x4` and `rows_q8_0_x4`, groups) from the one a legacy
/// kernel works on to the one it `touch`es. Two, not one: decode in Chromium, SmolLM2 (Q4_1
/// layers, Q8_0 output), alternating builds on one Intel Xeon host: 1.063× and 1.108× in two
/// runs; four ahead 1.070×.
const AHEAD: usize = 2;

/// `touch` of elements `from..from + len` of `w` (clamped to `w`), in one run: the tiles after a
/// call's first, which no earlier tile of the call touched.
#[inline(always)]
fn touch_from<T>(w: &[T], from: usize, len: usize) {
    touch(&w[w.len().min(from)..w.len().min(from + len)]);
}

/// `touch` of the one line holding byte `o` of `p` (SAFETY: readable).
#[inline(always)]
unsafe fn touch_line(p: *const u8, o: usize) {
    std::ptr::read_volatile(p.add(o));
}

/// The first four bytes of a legacy block as a u32: its f16 scale, then (formats with one) its
/// f16 minimum.
#[inline(always)]
fn head<B: Block>(x: &B) -> u32 {
    const { assert!(std::mem::size_of::<B>() >= 4) };
    // SAFETY: 4 bytes at the start of the block.
    unsafe { (x as *const B as *const u32).read_unaligned() }
}

/// Its statement, for a format with a minimum (`rows_loop!`'s optional `min`).
macro_rules! when_min {
    (min, $s:stmt) => {
        $s
    };
}

/// The f32 scales (and, with `min`, the minimums) of four blocks' `head`s.
macro_rules! tile_scales {
    ($heads:expr, $c:expr) => {
        (scales_f32($heads, $c), f32x4_splat(0.0))
    };
    ($heads:expr, $c:expr, min) => {
        pairs_f32($heads, $c)
    };
}

/// `$step(b, b % 4)` for each block b < `$nb`, written out four times so that every call's slot is
/// a constant (accumulators indexed by it then stay in registers): `$each` runs before each four
/// blocks with `$b` the first of them, `$last` before the blocks left over with `$b` the first of
/// those.
macro_rules! by_fours {
    ($nb:expr, $step:ident, $b:ident => $each:expr, $last:expr) => {{
        let mut $b = 0;
        while $b + 4 <= $nb {
            #[allow(clippy::no_effect)]
            $each;
            $step($b, 0);
            $step($b + 1, 1);
            $step($b + 2, 2);
            $step($b + 3, 3);
            $b += 4;
        }
        #[allow(clippy::no_effect)]
        $last;
        for b in $b..$nb {
            $step(b, b % 4);
        }
    }};
}

/// Every weight row in `w` (rows of `nb` blocks) against `N` activation rows, four weight rows at
/// a time, one row per lane (a last partial group repeats its last row and keeps only its own
/// lanes): the four rows' block b are unpacked (`$prep`, given the loop's constants) and
/// multiplied into each activation row's block b (`$mul`, exact i32x4 partial sums), `totals4`
/// gathers the four rows' sums into one vector and `$fix` applies the kernel's integer correction
/// (given the block's Σy splatted); the scales, the conversion and the float accumulation then
/// serve four rows at once, lane i being exactly `scalar::Acc4`'s order for row i. The activation
/// block's loads are shared by the four rows and no row has a tail of blocks to sum one by one.
macro_rules! rows_loop {
    ($N:expr, $T:expr, $AB:ty, $w:expr, $nb:expr, $a:expr, $out:expr, $prep:expr, $mul:expr, $fix:expr $(, $min:ident)?) => {{
        let (w, nb, a, out): (_, usize, [&[u8]; $N], [*mut f32; $N]) = ($w, $nb, $a, $out);
        let parts: [(*const f32, *const f32, *const i16); $N] =
            std::array::from_fn(|t| act_parts(a[t], nb, std::mem::size_of::<$AB>()));
        let blocks: [*const $AB; $N] =
            std::array::from_fn(|t| as_blocks::<$AB>(&a[t][..nb * std::mem::size_of::<$AB>()]).as_ptr());
        let rows = if nb == 0 { 0 } else { w.len() / nb };
        let lc = LConsts::new();
        // the tiles between the first and the first one it touches
        if $T {
            touch_from(w, 4 * nb, 4 * (AHEAD - 1) * nb);
        }
        let mut r0 = 0;
        while r0 < rows {
            // the tile's four rows (each nb blocks inside w)
            let rw: [*const _; 4] = std::array::from_fn(|i| w[(r0 + i).min(rows - 1) * nb..].as_ptr());
            // the blocks of the tile AHEAD on (4·nb from (r0 + 4·AHEAD)·nb), touched 16 at a time
            // (see `touch`)
            let ahead = (r0 + 4 * AHEAD) * nb;
            let next = &w[w.len().min(ahead)..w.len().min(ahead + 4 * nb)];
            let mut acc = [[f32x4_splat(0.0); 4]; $N];
            #[allow(unused_mut)]
            let mut accm = [[f32x4_splat(0.0); 4]; $N];
            // block b into the accumulators of slot j (b % 4)
            let mut step = |b: usize, j: usize| {
                // SAFETY: block b < nb of each row.
                let x = unsafe { [&*rw[0].add(b), &*rw[1].add(b), &*rw[2].add(b), &*rw[3].add(b)] };
                let p = [$prep(x[0], &lc), $prep(x[1], &lc), $prep(x[2], &lc), $prep(x[3], &lc)];
                #[allow(unused_variables)]
                let (dw, mw) = tile_scales!(u32x4(head(x[0]), head(x[1]), head(x[2]), head(x[3])), &lc $(, $min)?);
                for t in 0..$N {
                    let (d, s, q) = parts[t];
                    // SAFETY: every pointer read stays inside its row (checked by `act_parts`).
                    unsafe {
                        let (q, y) = (q.add(b * QK), &*blocks[t].add(b));
                        let sums = v128_load32_splat(s.add(b) as *const u32);
                        let ints = totals4($mul(&p[0], y, q), $mul(&p[1], y, q), $mul(&p[2], y, q), $mul(&p[3], y, q));
                        // exact integer totals (|sum| < 2^24) as floats, after the kernel's
                        // own integer correction (Q4_0/Q5_0 with relaxed SIMD: minus k·Σy)
                        let is = f32x4_convert_i32x4($fix(ints, sums));
                        let da = v128_load32_splat(d.add(b) as *const u32);
                        acc[t][j] = f32x4_add(acc[t][j], f32x4_mul(f32x4_mul(dw, da), is));
                        $(when_min!($min, accm[t][j] = f32x4_add(accm[t][j], f32x4_mul(mw, sums)));)?
                    }
                }
            };
            by_fours!(nb, step, b0 => if $T { touch_at(next, 4 * b0, 16) }, if $T { touch(&next[next.len().min(4 * b0)..]) });
            let keep = (rows - r0).min(4);
            for t in 0..$N {
                // SAFETY: the caller gives room for every row.
                unsafe { store_lanes(out[t].add(r0), acc4_sum(acc[t], accm[t]), keep) };
            }
            r0 += 4;
        }
    }};
}

/// `scalar::Acc4::sum` lane by lane (the minimums' lanes are +0.0 for a format without them, as
/// there).
#[inline(always)]
fn acc4_sum(d: [v128; 4], m: [v128; 4]) -> v128 {
    let [a0, a1, a2, a3] = d;
    let [m0, m1, m2, m3] = m;
    f32x4_add(f32x4_add(f32x4_add(a0, a1), f32x4_add(a2, a3)), f32x4_add(f32x4_add(m0, m1), f32x4_add(m2, m3)))
}

/// The first `keep` (1..=4) lanes of `v` stored at `o` (SAFETY: room for `keep` floats).
#[inline(always)]
unsafe fn store_lanes(o: *mut f32, v: v128, keep: usize) {
    if keep == 4 {
        v128_store(o as *mut v128, v);
    } else {
        let lanes = [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)];
        for (i, &x) in lanes.iter().enumerate().take(keep) {
            *o.add(i) = x;
        }
    }
}

/// Q4_0 and Q5_0 store `q + k` with `q + k` in 0..2k: relaxed SIMD multiplies the stored value
/// (7-bit) and subtracts `k · Σy`, exact in integers.
macro_rules! offset_kernel {
    ($name:ident, $WB:ty, $k:expr, $unsigned:expr) => {
        /// # Safety
        /// Each `out[t]` valid for `w.len() / nb` writes.
        pub unsafe fn $name<const N: usize, const T: bool>(w: &[$WB], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
            #[cfg(target_feature = "relaxed-simd")]
            {
                let prep = |x: &$WB, c: &LConsts| $unsigned(x, c);
                let mul = |p: &(v128, v128), y: &BlockQ8_0, _q: *const i16| relaxed_ints(p, &y.qs);
                // the activation row's per-block Σy (i32, made once per row): minus k·Σy
                let fix = |t: v128, sums: v128| i32x4_sub(t, i32x4_mul(sums, i32x4_splat($k)));
                rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, fix)
            }
            #[cfg(not(target_feature = "relaxed-simd"))]
            {
                let prep = |x: &$WB, c: &LConsts| {
                    let k = i8x16_splat($k);
                    let (lo, hi) = $unsigned(x, c);
                    widen_s(i8x16_sub(lo, k), i8x16_sub(hi, k))
                };
                let mul = |p: &[v128; 4], _y: &BlockQ8_0, q: *const i16| unsafe { mul_i16(p, q) };
                rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, exact)
            }
        }
    };
}

/// Q4_1 and Q5_1 store unsigned values with a separate minimum.
macro_rules! min_kernel {
    ($name:ident, $WB:ty, $unsigned:expr) => {
        /// # Safety
        /// Each `out[t]` valid for `w.len() / nb` writes.
        pub unsafe fn $name<const N: usize, const T: bool>(w: &[$WB], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
            #[cfg(target_feature = "relaxed-simd")]
            {
                let prep = |x: &$WB, c: &LConsts| $unsigned(x, c);
                let mul = |p: &(v128, v128), y: &BlockQ8_1, _q: *const i16| relaxed_ints(p, &y.qs);
                rows_loop!(N, T, BlockQ8_1, w, nb, a, out, prep, mul, exact, min)
            }
            #[cfg(not(target_feature = "relaxed-simd"))]
            {
                let prep = |x: &$WB, c: &LConsts| {
                    let (lo, hi) = $unsigned(x, c);
                    widen_u(lo, hi)
                };
                let mul = |p: &[v128; 4], _y: &BlockQ8_1, q: *const i16| unsafe { mul_i16(p, q) };
                rows_loop!(N, T, BlockQ8_1, w, nb, a, out, prep, mul, exact, min)
            }
        }
    };
}

/// The stored values of a Q5 block (0..31) as two u8x16 halves.
#[inline(always)]
fn q5_values(qs: &[u8; 16], qh: [u8; 4], c: &LConsts) -> (v128, v128) {
    let (lo, hi) = nibbles(qs, c.m4);
    let (hl, hh) = fifth_bits(qh, c);
    (v128_or(lo, hl), v128_or(hi, hh))
}

offset_kernel!(rows_q4_0, BlockQ4_0, 8, |x: &BlockQ4_0, c: &LConsts| nibbles(&x.qs, c.m4));
offset_kernel!(rows_q5_0, BlockQ5_0, 16, |x: &BlockQ5_0, c: &LConsts| q5_values(&x.qs, x.qh, c));
min_kernel!(rows_q4_1, BlockQ4_1, |x: &BlockQ4_1, c: &LConsts| nibbles(&x.qs, c.m4));
min_kernel!(rows_q5_1, BlockQ5_1, |x: &BlockQ5_1, c: &LConsts| q5_values(&x.qs, x.qh, c));

/// A grouped matrix's (`layout::Layout::Groups4`) bytes per group of four rows, of `nb` blocks of
/// `g` bytes (four rows' blocks), and its number of groups.
///
/// # Panics
/// If `w` is not whole groups.
#[cfg(target_feature = "relaxed-simd")]
fn groups_in(w: &[u8], nb: usize, g: usize, format: &str) -> (usize, usize) {
    let gb = nb * g;
    let groups = if nb == 0 { 0 } else { w.len() / gb };
    assert!(groups * gb == w.len(), "{format} groups of four rows: {} bytes", w.len());
    (gb, groups)
}

/// Q4_1 weights in `layout::Layout::Groups4` (four rows interleaved block by block) against `N`
/// activation rows, with relaxed SIMD. Per block of the four rows: one load of the four heads,
/// four of the quants (`p[j]`: bytes 4j..4j+4 of each row, one row per lane); the low nibbles of
/// `p[j]` times activations 4j..4j+4 broadcast to every lane, the high nibbles times activations
/// 16+4j.., eight 8-bit dot products summed in one vector hold each row's exact integer total in
/// its own lane. The float scaling and accumulation are `rows_loop`'s: `scalar::Acc4`'s order,
/// lane by lane. Against `rows_q4_1` on the same rows this saves the four rows' separate head
/// loads, their address arithmetic and the horizontal sums: with `perf annotate` in Chromium
/// (Intel Xeon, SmolLM2), ~118 → ~75 x86 instructions per block of four rows; the kernel's decode
/// samples fell 7% (memory latency is most of what is left, see `touch`), prefill ran 9–16%
/// faster (alternating builds).
///
/// # Safety
/// Each `out[t]` valid for `w.len() / (nb · 20)` writes.
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn rows_q4_1_x4<const N: usize, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    const G: usize = 4 * std::mem::size_of::<BlockQ4_1>();
    let lc = LConsts::new();
    let parts: [(*const f32, *const f32, *const i16); N] =
        std::array::from_fn(|t| act_parts(a[t], nb, std::mem::size_of::<BlockQ8_1>()));
    let blocks: [*const BlockQ8_1; N] =
        std::array::from_fn(|t| as_blocks::<BlockQ8_1>(&a[t][..nb * std::mem::size_of::<BlockQ8_1>()]).as_ptr());
    let (gb, groups) = groups_in(w, nb, G, "Q4_1");
    // the groups between the first and the first one it touches
    if T {
        touch_from(w, gb, (AHEAD - 1) * gb);
    }
    for g in 0..groups {
        let base = w[g * gb..].as_ptr();
        // the group AHEAD on (touched 320 bytes per four blocks, see `touch`)
        let next = &w[w.len().min((g + AHEAD) * gb)..w.len().min((g + AHEAD + 1) * gb)];
        let mut acc = [[f32x4_splat(0.0); 4]; N];
        let mut accm = [[f32x4_splat(0.0); 4]; N];
        let mut step = |b: usize, j: usize| {
            // SAFETY: block b < nb of this group: G bytes inside w.
            let x = unsafe { base.add(b * G) };
            // the integer totals first, in the order V8 will run them (one row: each vector of
            // quants unpacked just before its two products, so few values are live at once)
            let mut ints = [i32x4_splat(0); N];
            let mut lo = [i32x4_splat(0); 4];
            let mut hi = [i32x4_splat(0); 4];
            // an activation row's block: two vector loads, each 4-byte group broadcast by a shuffle
            // (x86 `pshufd`; a 4-byte load-and-splat costs V8 three instructions); the low and the
            // high nibbles' products in two chains, so the dot products overlap
            let (mut s0, mut s1) = (i32x4_splat(0), i32x4_splat(0));
            macro_rules! products {
                ($k:literal, $a0:expr, $a1:expr) => {
                    s0 = i32x4_relaxed_dot_i8x16_i7x16_add(i32x4_shuffle::<$k, $k, $k, $k>($a0, $a0), lo[$k], s0);
                    s1 = i32x4_relaxed_dot_i8x16_i7x16_add(i32x4_shuffle::<$k, $k, $k, $k>($a1, $a1), hi[$k], s1);
                };
            }
            // SAFETY: block b of each activation row (checked by `act_parts`).
            let act = |t: usize| load_q8(unsafe { &(*blocks[t].add(b)).qs });
            let (a0, a1) = act(0);
            macro_rules! quarter {
                ($k:literal) => {{
                    // SAFETY: inside this block's G bytes.
                    let p = unsafe { load_ptr(x.add(16 + 16 * $k)) };
                    (lo[$k], hi[$k]) = (v128_and(p, lc.m4), v128_and(u16x8_shr(p, 4), lc.m4));
                    if N == 1 {
                        products!($k, a0, a1);
                    }
                }};
            }
            quarter!(0);
            quarter!(1);
            quarter!(2);
            quarter!(3);
            if N == 1 {
                ints[0] = i32x4_add(s0, s1);
            } else {
                for (t, total) in ints.iter_mut().enumerate() {
                    let (a0, a1) = act(t);
                    (s0, s1) = (i32x4_splat(0), i32x4_splat(0));
                    products!(0, a0, a1);
                    products!(1, a0, a1);
                    products!(2, a0, a1);
                    products!(3, a0, a1);
                    *total = i32x4_add(s0, s1);
                }
            }
            // SAFETY: the block's first 16 bytes.
            let (dw, mw) = pairs_f32(unsafe { load_ptr(x) }, &lc);
            for t in 0..N {
                let (d, s, _) = parts[t];
                // SAFETY: block b's scale and sum of each activation row (checked by `act_parts`).
                unsafe {
                    let sums = v128_load32_splat(s.add(b) as *const u32);
                    // exact integer totals (|sum| < 2^24) as floats
                    let is = f32x4_convert_i32x4(ints[t]);
                    let da = v128_load32_splat(d.add(b) as *const u32);
                    acc[t][j] = f32x4_add(acc[t][j], f32x4_mul(f32x4_mul(dw, da), is));
                    // the minimums' sums kept in memory (a volatile read and write): in
                    // registers they left V8 too few for the loop, which then spilled more than
                    // this costs (decode in Chromium, SmolLM2, with `touch_at`: 1.13-1.14x)
                    let pm = core::ptr::addr_of_mut!(accm[t][j]);
                    core::ptr::write_volatile(pm, f32x4_add(core::ptr::read_volatile(pm), f32x4_mul(mw, sums)));
                }
            }
        };
        by_fours!(nb, step, b0 => if T { touch_at(next, b0 * G, 4 * G) }, if T { touch(&next[next.len().min(b0 * G)..]) });
        for t in 0..N {
            // SAFETY: the caller gives room for every row.
            unsafe { store_lanes(out[t].add(4 * g), acc4_sum(acc[t], accm[t]), 4) };
        }
    }
}

/// Q8_0 weights in `layout::Layout::Groups4` (four rows interleaved block by block) against `N`
/// activation rows, with relaxed SIMD. Per block of the four rows: one 8-byte load of the four
/// f16 scales, eight of the quants (`w_j`: bytes 4j..4j+4 of each row, one row per lane), each
/// multiplied by activations 4j..4j+4 of the row's 7-bit positive and negative parts (`widen_act`)
/// broadcast to every lane: sixteen 8-bit dot products in four chains leave each row's exact
/// integer total in its own lane. The float scaling and accumulation are `rows_loop`'s
/// (`scalar::Acc4`'s order, lane by lane). Against `rows_q8_0` on the same rows this saves the
/// four rows' separate scale loads, their address arithmetic and the horizontal sums (SmolLM2's
/// output matrix, a third of the bytes a token reads, is Q8_0).
///
/// # Safety
/// Each `out[t]` valid for `w.len() / (nb · 34)` writes.
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn rows_q8_0_x4<const N: usize, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    const G: usize = 4 * std::mem::size_of::<BlockQ8_0>();
    let lc = LConsts::new();
    let parts: [(*const f32, *const f32, *const i16); N] =
        std::array::from_fn(|t| act_parts(a[t], nb, std::mem::size_of::<BlockQ8_0>()));
    let (gb, groups) = groups_in(w, nb, G, "Q8_0");
    // the groups between the first and the first one it touches
    if T {
        touch_from(w, gb, (AHEAD - 1) * gb);
    }
    for g in 0..groups {
        let base = w[g * gb..].as_ptr();
        // the group AHEAD on (touched 544 bytes per four blocks, see `touch`)
        let next = &w[w.len().min((g + AHEAD) * gb)..w.len().min((g + AHEAD + 1) * gb)];
        let mut acc = [[f32x4_splat(0.0); 4]; N];
        let accm = [[f32x4_splat(0.0); 4]; N];
        let mut step = |b: usize, j: usize| {
            // SAFETY: block b < nb of this group: G bytes inside w.
            let x = unsafe { base.add(b * G) };
            // SAFETY: the four f16 scales, the block's first 8 bytes.
            let dw = scales_f32(u32x4_extend_low_u16x8(unsafe { v128_load64_zero(x as *const u64) }), &lc);
            for t in 0..N {
                let (d, _, q) = parts[t];
                // SAFETY: block b's 64 bytes of 7-bit parts and its scale (checked by `act_parts`);
                // the quants inside this block's G bytes.
                unsafe {
                    let e = q.add(b * QK) as *const u8;
                    let (p0, p1, n0, n1) = (load_ptr(e), load_ptr(e.add(16)), load_ptr(e.add(32)), load_ptr(e.add(48)));
                    let (mut sp0, mut sn0, mut sp1, mut sn1) = (i32x4_splat(0), i32x4_splat(0), i32x4_splat(0), i32x4_splat(0));
                    macro_rules! quarter {
                        ($k:literal, $sp:ident, $sn:ident, $p:ident, $n:ident) => {{
                            let wq = load_ptr(x.add(8 + 16 * $k));
                            $sp = i32x4_relaxed_dot_i8x16_i7x16_add(wq, i32x4_shuffle::<{ $k % 4 }, { $k % 4 }, { $k % 4 }, { $k % 4 }>($p, $p), $sp);
                            $sn = i32x4_relaxed_dot_i8x16_i7x16_add(wq, i32x4_shuffle::<{ $k % 4 }, { $k % 4 }, { $k % 4 }, { $k % 4 }>($n, $n), $sn);
                        }};
                    }
                    quarter!(0, sp0, sn0, p0, n0);
                    quarter!(1, sp0, sn0, p0, n0);
                    quarter!(2, sp0, sn0, p0, n0);
                    quarter!(3, sp0, sn0, p0, n0);
                    quarter!(4, sp1, sn1, p1, n1);
                    quarter!(5, sp1, sn1, p1, n1);
                    quarter!(6, sp1, sn1, p1, n1);
                    quarter!(7, sp1, sn1, p1, n1);
                    // exact integer totals (|sum| < 2^24) as floats
                    let is = f32x4_convert_i32x4(i32x4_sub(i32x4_add(sp0, sp1), i32x4_add(sn0, sn1)));
                    let da = v128_load32_splat(d.add(b) as *const u32);
                    acc[t][j] = f32x4_add(acc[t][j], f32x4_mul(f32x4_mul(dw, da), is));
                }
            }
        };
        by_fours!(nb, step, b0 => if T { touch_at(next, b0 * G, 4 * G) }, if T { touch(&next[next.len().min(b0 * G)..]) });
        for t in 0..N {
            // SAFETY: the caller gives room for every row.
            unsafe { store_lanes(out[t].add(4 * g), acc4_sum(acc[t], accm[t]), 4) };
        }
    }
}

/// With relaxed SIMD: exact i32x4 partial sums of 32 i8 weights (`w`: elements 0..15, 16..31,
/// any value) times the activations whose y⁺ and y⁻ parts `e` points at (`widen_act`).
///
/// SAFETY: `e` points at 64 readable bytes.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn relaxed_signed(w: &(v128, v128), e: *const u8) -> v128 {
    let z = i32x4_splat(0);
    let pos = i32x4_relaxed_dot_i8x16_i7x16_add(w.1, load_ptr(e.add(16)), i32x4_relaxed_dot_i8x16_i7x16_add(w.0, load_ptr(e), z));
    let neg = i32x4_relaxed_dot_i8x16_i7x16_add(w.1, load_ptr(e.add(48)), i32x4_relaxed_dot_i8x16_i7x16_add(w.0, load_ptr(e.add(32)), z));
    i32x4_sub(pos, neg)
}

/// Q8_0 weights use all 8 bits (not a 7-bit operand): with relaxed SIMD they multiply the
/// activations' 7-bit positive and negative parts; without it, the i16 path.
///
/// # Safety
/// Each `out[t]` valid for `w.len() / nb` writes.
pub unsafe fn rows_q8_0<const N: usize, const T: bool>(w: &[BlockQ8_0], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let prep = |x: &BlockQ8_0, _: &LConsts| load_q8(&x.qs);
        let mul = |p: &(v128, v128), _y: &BlockQ8_0, q: *const i16| unsafe { relaxed_signed(p, q as *const u8) };
        rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, exact)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let prep = |x: &BlockQ8_0, _: &LConsts| {
            let (lo, hi) = load_q8(&x.qs);
            widen_s(lo, hi)
        };
        let mul = |p: &[v128; 4], _y: &BlockQ8_0, q: *const i16| unsafe { mul_i16(p, q) };
        rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, exact)
    }
}

/// 16 4-bit indices (u8 lanes) → their KVALUES_IQ4NL levels (i8 lanes).
#[inline(always)]
fn iq4_lookup(idx: v128) -> v128 {
    // SAFETY: reads exactly the 16 bytes of the table.
    let t = unsafe { v128_load(KVALUES_IQ4NL.as_ptr() as *const v128) };
    u8x16_swizzle(t, idx)
}

/// IQ4_NL's levels use all 8 bits (−127..113, not a 7-bit operand): as Q8_0, against the
/// activations' 7-bit parts with relaxed SIMD, else the i16 path.
///
/// # Safety
/// Each `out[t]` valid for `w.len() / nb` writes.
pub unsafe fn rows_iq4_nl<const N: usize, const T: bool>(w: &[BlockIQ4NL], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    #[cfg(target_feature = "relaxed-simd")]
    {
        let prep = |x: &BlockIQ4NL, c: &LConsts| {
            let (lo, hi) = nibbles(&x.qs, c.m4);
            (iq4_lookup(lo), iq4_lookup(hi))
        };
        let mul = |p: &(v128, v128), _y: &BlockQ8_0, q: *const i16| unsafe { relaxed_signed(p, q as *const u8) };
        rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, exact)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let prep = |x: &BlockIQ4NL, c: &LConsts| {
            let (lo, hi) = nibbles(&x.qs, c.m4);
            widen_s(iq4_lookup(lo), iq4_lookup(hi))
        };
        let mul = |p: &[v128; 4], _y: &BlockQ8_0, q: *const i16| unsafe { mul_i16(p, q) };
        rows_loop!(N, T, BlockQ8_0, w, nb, a, out, prep, mul, exact)
    }
}

/// What an 8-bit activation row carries after its scales for the kernels whose weights use all 8
/// bits (Q8_0, IQ4_NL), 64 bytes per block of 32: with relaxed SIMD the positive and the negative
/// parts of the values, max(y, 0) and max(−y, 0) (32 bytes each, both in 0..=127: relaxed SIMD's
/// 7-bit operand, so w·y = w·y⁺ − w·y⁻ takes two exact 8-bit dot products with the weights as
/// they are, −128 included); without it the values widened to i16 (wasm's plain SIMD multiplies
/// i16 lanes).
pub fn widen_act<B: Block>(blocks: &[B], qs: impl Fn(&B) -> &[i8; 32], out: &mut [u8]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK * 2)) {
        let (lo, hi) = load_q8(qs(b));
        #[cfg(target_feature = "relaxed-simd")]
        let v = {
            let z = i8x16_splat(0);
            [i8x16_max(lo, z), i8x16_max(hi, z), i8x16_max(i8x16_neg(lo), z), i8x16_max(i8x16_neg(hi), z)]
        };
        #[cfg(not(target_feature = "relaxed-simd"))]
        let v = widen_s(lo, hi);
        for (i, x) in v.iter().enumerate() {
            // SAFETY: 4 × 16 bytes inside the 64-byte chunk.
            unsafe { v128_store(o.as_mut_ptr().add(16 * i) as *mut v128, *x) };
        }
    }
}

/// max |x| over a block of 32, and the 8 f32x4 vectors of the block.
#[inline(always)]
fn load_block(xb: &[f32]) -> ([v128; 8], f32) {
    // SAFETY: xb has exactly 32 floats (chunks_exact(QK)).
    let v: [v128; 8] = std::array::from_fn(|i| unsafe { v128_load(xb.as_ptr().add(4 * i) as *const v128) });
    // NaN lanes count as 0, as f32::max skips them (f32x4_max would propagate them; so may the
    // relaxed forms the compiler picks with relaxed SIMD on)
    let m = v.iter().fold(f32x4_splat(0.0), |m, &x| f32x4_pmax(m, v128_and(f32x4_abs(x), f32x4_eq(x, x))));
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

/// Σ_j sc_j · (q·a over sub-block j of 32) with `q` the 256 values in element order, 16 per
/// vector, unsigned < 128 (relaxed SIMD's 7-bit operand where the build has it).
#[inline(always)]
fn isum_k32(sc: &[v128; 8], y: &BlockQ8K, q: &[v128; 16]) -> i32 {
    let mut s = i32x4_splat(0);
    for j in 0..8 {
        let p = i32x4_add(dot16_u7(q[2 * j], q8k_at(y, 32 * j)), dot16_u7(q[2 * j + 1], q8k_at(y, 32 * j + 16)));
        s = i32x4_add(s, i32x4_mul(p, sc[j]));
    }
    total(s)
}

/// Σ_j sc_j · (q·a over sub-block j of 16) with `q` the 256 values in element order (vector j is
/// sub-block j), unsigned < 128.
#[inline(always)]
fn isum_k16(sc: &[v128; 16], y: &BlockQ8K, q: &[v128; 16]) -> i32 {
    let mut s = i32x4_splat(0);
    for j in 0..16 {
        s = i32x4_add(s, i32x4_mul(dot16_u7(q[j], q8k_at(y, 16 * j)), sc[j]));
    }
    total(s)
}

/// Σ_j c_j · bsum_j over Q8_K's sixteen per-16 sums (`c` as i16).
#[inline(always)]
fn bsum_dot(c: &[i16; 16], y: &BlockQ8K) -> i32 {
    // SAFETY: 16-byte loads inside the 32-byte arrays.
    let (b0, b1, c0, c1) = unsafe {
        (
            v128_load(y.bsums.as_ptr() as *const v128),
            v128_load(y.bsums.as_ptr().add(8) as *const v128),
            v128_load(c.as_ptr() as *const v128),
            v128_load(c.as_ptr().add(8) as *const v128),
        )
    };
    total(i32x4_add(i32x4_dot_i16x8(b0, c0), i32x4_dot_i16x8(b1, c1)))
}

/// The 2-bit values of a Q2_K/Q3_K `qs` in element order: vector v = 8n + 2k + half holds
/// elements 128n + 32k + 16·half .. +16, bits 2k of qs[32n + 16·half ..].
#[inline(always)]
fn two_bits(qs: &[u8; 64]) -> [v128; 16] {
    std::array::from_fn(|v| {
        let (n, k, half) = (v / 8, (v / 2) % 4, v % 2);
        v128_and(u8x16_shr(load_at(qs, 32 * n + 16 * half), 2 * k as u32), u8x16_splat(3))
    })
}

/// Scales (as i32) splatted to vectors.
#[inline(always)]
fn splats<const S: usize>(c: [i32; S]) -> [v128; S] {
    // (a closure: a `#[target_feature]` function is not an `FnMut`)
    #[allow(clippy::redundant_closure)]
    c.map(|v| i32x4_splat(v))
}

/// Defines `$name::<N>(w, nb, acts, out)` for a K-quant: every weight row in `w` (rows of `nb`
/// super-blocks) against `N` Q8_K activation rows (as `quantize_act` lays them out). Each
/// super-block is unpacked once (`$prep`: quants to bytes in element order, scales decoded) and
/// its exact integer sums are taken against every row (`$add` accumulates one row's block in
/// the scalar reference's float order), so a batch pays for the unpacking once and results do
/// not depend on `N`. `$one(w, a)` is the single-row form (for the tests).
macro_rules! k_rows_kernel {
    ($name:ident, $one:ident, $B:ty, $P:ty, $prep:expr, $add:expr) => {
        /// # Safety
        /// Each `out[t]` valid for `w.len() / nb` writes.
        pub unsafe fn $name<const N: usize>(w: &[$B], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
            let ys = q8k_rows::<N>(a, nb);
            let prep = $prep;
            let add = $add;
            for (r, row) in w.chunks_exact(nb.max(1)).enumerate() {
                let mut acc: [scalar::Acc4; N] = std::array::from_fn(|_| scalar::Acc4::new());
                for (b, x) in row.iter().enumerate() {
                    let p: $P = prep(x);
                    for t in 0..N {
                        add(&mut acc[t], b, x, &p, &ys[t][b]);
                    }
                }
                for t in 0..N {
                    // SAFETY: the caller gives room for every row.
                    unsafe { *out[t].add(r) = acc[t].sum() };
                }
            }
        }

        pub fn $one(w: &[$B], a: &[BlockQ8K]) -> f32 {
            let mut v = 0f32;
            // SAFETY: one row of output.
            unsafe { $name::<1>(w, w.len(), [blocks_as_bytes(a)], [&mut v]) };
            v
        }
    };
}

/// Q4_K/Q5_K's nibbles in element order: vector 4i + c holds elements 64i + 16c .. +16 (c < 2:
/// low nibbles of qs[32i + 16c ..], else high nibbles of qs[32i + 16(c − 2) ..]).
#[inline(always)]
fn nibbles_k(qs: &[u8; 128], m: v128) -> [v128; 16] {
    // written out: a loop here stays a loop in wasm (with the engine's stack check each time round)
    let b: [v128; 8] = [
        load_at(qs, 0), load_at(qs, 16), load_at(qs, 32), load_at(qs, 48),
        load_at(qs, 64), load_at(qs, 80), load_at(qs, 96), load_at(qs, 112),
    ];
    let lo = |v: v128| v128_and(v, m);
    // the high nibble: a 16-bit shift then the mask (wasm's 8-bit shift is several instructions)
    let hi = |v: v128| v128_and(u16x8_shr(v, 4), m);
    [
        lo(b[0]), lo(b[1]), hi(b[0]), hi(b[1]),
        lo(b[2]), lo(b[3]), hi(b[2]), hi(b[3]),
        lo(b[4]), lo(b[5]), hi(b[4]), hi(b[5]),
        lo(b[6]), lo(b[7]), hi(b[6]), hi(b[7]),
    ]
}

k_rows_kernel!(
    rows_q5_k, dot_q5_k, BlockQ5K, ([v128; 16], [v128; 8], [u8; 8]),
    |x: &BlockQ5K| {
        let (sc, m) = scalar::scales_mins_k4(&x.scales);
        let lo = nibbles_k(&x.qs, u8x16_splat(0x0f));
        let (h0, h1) = (load_at(&x.qh, 0), load_at(&x.qh, 16));
        // element 64i + l takes bit 2i of qh[l], element 64i + 32 + l bit 2i + 1 (l < 32)
        let q: [v128; 16] = std::array::from_fn(|v| {
            let (i, c) = (v / 4, v % 4);
            let h = if c % 2 == 0 { h0 } else { h1 };
            let bit = (2 * i + c / 2) as u32;
            v128_or(lo[v], u8x16_shl(v128_and(u8x16_shr(h, bit), u8x16_splat(1)), 4))
        });
        (q, splats(sc.map(|s| s as i32)), m)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ5K, p: &([v128; 16], [v128; 8], [u8; 8]), y: &BlockQ8K| {
        scalar::acc_k_min(acc, b, x.d, x.dmin, y, isum_k32(&p.1, y, &p.0), msum_k(&p.2, y));
    }
);

// ---- Q4_K and Q6_K in tiles of four weight rows ----
//
// The Q4_K_M formats, where a 1B model spends its time. The relaxed-SIMD builds load these into
// four-row groups (`rows_q4_k_x4`, `rows_q6_k_x4`) where a matrix's rows allow it; the tiles
// here serve the other builds and any matrix whose rows are not a multiple of four. Four weight
// rows go through at once: each
// row's super-block is unpacked once (`prep`: the quants in element order, the sub-block scales
// already splatted to i16 lanes) for every activation row it meets; one row's exact integer sums
// against one activation block are left as i32x4 partial sums, and the four rows' partials are
// gathered by `totals4` into one vector whose lane i is row i. The float arithmetic then runs
// on those vectors, lane i being exactly `scalar::Acc4`'s order for row i — so the results are
// bit-identical to the reference while the horizontal sums, the f16 scale conversions and the
// float adds are shared by four rows.
//
// The products: 8-bit dot products of the 7-bit quants and the i8 activations give each
// sub-block's exact i32x4 partial sums (relaxed SIMD: one instruction per 16 products); two
// sub-blocks' partials, each lane below 2^15, are narrowed into one i16x8 and scaled and summed by
// one `i32x4.dot_i16x8_s` against their two scales.

/// A 16-byte load at `p` (SAFETY: 16 readable bytes).
#[inline(always)]
unsafe fn load_ptr(p: *const u8) -> v128 {
    v128_load(p as *const v128)
}

/// A swizzle index that gives 0 (any index ≥ 16 does; with the top bit set, engines can use one
/// x86 `pshufb` without fixing the indices up first).
const Z: u8 = 0x80;

/// The swizzle that zero-extends bytes `j` and `j + 1` into i16 lanes 0..4 and 4..8.
macro_rules! pair_bytes16 {
    ($j:expr) => {
        u8x16($j, Z, $j, Z, $j, Z, $j, Z, $j + 1, Z, $j + 1, Z, $j + 1, Z, $j + 1, Z)
    };
}

/// `v`'s bytes picked by `idx`, whose indices are below 16 or 0x80 and up (`Z`: a zero byte). With
/// relaxed SIMD that is `i8x16.relaxed_swizzle`, one x86 `pshufb` (the plain swizzle gives 0 for
/// every index from 16, which costs V8 a saturating add to the indices first), exact for such
/// indices on every engine.
#[inline(always)]
fn pick(v: v128, idx: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return i8x16_relaxed_swizzle(v, idx);
    #[cfg(not(target_feature = "relaxed-simd"))]
    u8x16_swizzle(v, idx)
}

/// The swizzle that repeats i16 lanes `b / 2` and `b / 2 + 1` (bytes b .. b + 4) four times each.
macro_rules! q6_pair {
    ($b:expr) => {
        u8x16($b, $b + 1, $b, $b + 1, $b, $b + 1, $b, $b + 1, $b + 2, $b + 3, $b + 2, $b + 3, $b + 2, $b + 3, $b + 2, $b + 3)
    };
}

/// The swizzle that zero-extends byte `i` of each u32 lane into both of the lane's i16 halves.
macro_rules! lane_byte16 {
    ($i:expr) => {
        u8x16($i, Z, $i, Z, 4 + $i, Z, 4 + $i, Z, 8 + $i, Z, 8 + $i, Z, 12 + $i, Z, 12 + $i, Z)
    };
}

/// The swizzle that zero-extends byte `i` of each u32 lane into the lane.
macro_rules! lane_byte {
    ($i:expr) => {
        u8x16($i, Z, Z, Z, 4 + $i, Z, Z, Z, 8 + $i, Z, Z, Z, 12 + $i, Z, Z, Z)
    };
}

/// The constants of the Q4_K and Q6_K tiles' inner loops, made once per call and hidden from
/// LLVM (`black_box`): otherwise it rematerializes each `v128.const` at its use, and V8 builds
/// every one from immediates each time round the loop (three or four x86 instructions apiece),
/// where a constant kept in a local costs a register or one load.
struct KConsts {
    m4: v128,
    /// Q4_K's scale words (`scales_mins_k4_lanes`): 0x3f, 0x0f, 0x3f, 0 bytes, 0x0f bytes in word
    /// 3, 0x30 bytes in words 1 and 3
    k4_low: v128,
    k4_high: v128,
    k4_top: v128,
    m30: v128,
    /// swizzles: sub-blocks 2k and 2k+1's scales (u8 lanes 2k, 2k+1) into i16 lanes 0..4, 4..8
    pair: [v128; 4],
    /// swizzles: the minimums (u8 lanes 8..16) each twice as i16
    mins: [v128; 2],
    /// swizzles: i16 lanes 2j and 2j + 1, each four times (Q6_K's scales)
    q6pair: [v128; 4],
    /// the grouped kernels: 0x3f bytes, 1 in each i16, and the swizzles that zero-extend byte i
    /// of each u32 lane into that lane
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    m3f: v128,
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    one16: v128,
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    byte: [v128; 4],
    /// likewise into both i16 halves of the lane
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    byte16: [v128; 4],
}

impl KConsts {
    #[inline(always)]
    fn new() -> KConsts {
        std::hint::black_box(KConsts {
            m4: u8x16_splat(0x0f),
            k4_low: u32x4(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0),
            k4_high: u32x4(0, 0, 0, 0x0f0f_0f0f),
            k4_top: u32x4(0, 0x3030_3030, 0, 0x3030_3030),
            m30: u8x16_splat(0x30),
            pair: [pair_bytes16!(0), pair_bytes16!(2), pair_bytes16!(4), pair_bytes16!(6)],
            mins: [
                u8x16(8, Z, 8, Z, 9, Z, 9, Z, 10, Z, 10, Z, 11, Z, 11, Z),
                u8x16(12, Z, 12, Z, 13, Z, 13, Z, 14, Z, 14, Z, 15, Z, 15, Z),
            ],
            q6pair: [q6_pair!(0), q6_pair!(4), q6_pair!(8), q6_pair!(12)],
            m3f: u8x16_splat(0x3f),
            one16: i16x8_splat(1),
            byte: [lane_byte!(0), lane_byte!(1), lane_byte!(2), lane_byte!(3)],
            byte16: [lane_byte16!(0), lane_byte16!(1), lane_byte16!(2), lane_byte16!(3)],
        })
    }
}

/// Q4_K's 8 scales and 8 minimums (`scalar::scales_mins_k4`) as u8 lanes sc0..sc7, m0..m7: ggml's
/// 32-bit unpacking, on the three words in lanes 0..3 of one load.
#[inline(always)]
fn scales_mins_k4_lanes(x: &BlockQ4K, c: &KConsts) -> v128 {
    // SAFETY: 16 bytes from `scales`: its 12 and the first 4 of `qs`, inside the block.
    let v = unsafe { load_ptr(x.scales.as_ptr()) };
    let a = i32x4_shuffle::<0, 2, 1, 2>(v, v); // u0 u2 u1 u2
    let b = i32x4_shuffle::<0, 0, 1, 1>(v, v); // u0 u0 u1 u1
    // words: u0 & K1 | u2 & K2 | u1 & K1 | (u2 >> 4) & K2, the last two words then or'ed with
    // (u0 >> 6 & K3) << 4 and (u1 >> 6 & K3) << 4, taken as (u >> 2) & 0x30 in each byte
    let low = v128_or(v128_and(a, c.k4_low), v128_and(u32x4_shr(a, 4), c.k4_high));
    v128_or(low, v128_and(u32x4_shr(b, 2), c.k4_top))
}

/// Exact i32x4 partial sums of the 32 products of `q0`, `q1` (unsigned < 128) and `y0`, `y1` (i8),
/// each lane a sum of 8 products (relaxed SIMD: two chained 8-bit dot products).
#[inline(always)]
fn dot32_u7(q0: v128, q1: v128, y0: v128, y1: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return i32x4_relaxed_dot_i8x16_i7x16_add(y1, q1, i32x4_relaxed_dot_i8x16_i7x16_add(y0, q0, i32x4_splat(0)));
    #[cfg(not(target_feature = "relaxed-simd"))]
    i32x4_add(dot16(q0, y0), dot16(q1, y1))
}

/// Two sub-blocks' partial sums (i32x4 each, every lane below 2^15 in magnitude, so the narrowing
/// is exact) scaled by their scales (`sc`: i16 lanes 0..4 the first's, 4..8 the second's) and
/// summed pairwise: one `i32x4.dot_i16x8_s` for two sub-blocks.
#[inline(always)]
fn scale_pair(a: v128, b: v128, sc: v128) -> v128 {
    i32x4_dot_i16x8(i16x8_narrow_i32x4(a, b), sc)
}

/// A Q4_K super-block made ready: its quants (unpacked pair by pair in `sums_q4_k`), its
/// scales and minimums as u8 lanes (`scales_mins_k4_lanes`), and the block whose lines `sums_q4_k`
/// touches (`k_tiles`).
struct PrepQ4K {
    qs: *const u8,
    sm: v128,
    ahead: *const u8,
}

#[inline(always)]
fn prep_q4_k(x: &BlockQ4K, ahead: &BlockQ4K, c: &KConsts) -> PrepQ4K {
    PrepQ4K { qs: x.qs.as_ptr(), sm: scales_mins_k4_lanes(x, c), ahead: ahead as *const BlockQ4K as *const u8 }
}

/// Q8_K's per-16 sums as two i16x8.
#[inline(always)]
fn bsums16(y: &BlockQ8K) -> (v128, v128) {
    // SAFETY: two 16-byte loads inside the 32-byte bsums array.
    unsafe { (load_ptr(y.bsums.as_ptr() as *const u8), load_ptr(y.bsums.as_ptr().add(8) as *const u8)) }
}

/// `step(k)` for Q4_K's four sub-block pairs: written out for one activation row (a loop here
/// stays a loop in wasm, with the engine's stack check every turn), a loop for a batch (measured
/// faster there: the 1B model's prefill in Chromium 27 tok/s against 22 with the batch's steps
/// written out).
#[inline(always)]
fn pair_steps<const N: usize>(mut step: impl FnMut(usize)) {
    if N == 1 {
        step(0);
        step(1);
        step(2);
        step(3);
    } else {
        for k in 0..4 {
            step(k);
        }
    }
}

/// One Q4_K block · `N` Q8_K blocks: for each, (Σ_j sc_j·(q·y over sub-block j),
/// Σ_j m_j·(its two per-16 sums)), as i32x4 partial sums. Every lane stays exact: a sub-block's
/// partial sums are at most 8·15·128 in magnitude before they are scaled (and the integer sums
/// are the same whatever their order). Two sub-blocks' quants (64 elements: 32 bytes, unpacked
/// here) and scales are taken against every activation block before the next two, so they stay in
/// registers across the batch (with build.sh's `WASM_CODEGEN`, LLVM leaves each pair's loads
/// beside their uses instead of hoisting the block's 24 to the top, where V8 spilled them).
#[inline(always)]
fn sums_q4_k<const N: usize, const T: bool>(p: &PrepQ4K, y: [&BlockQ8K; N], c: &KConsts) -> [(v128, v128); N] {
    // the next tile's lines, before the pair steps: read inside them, LLVM hoisted each step's
    // loads up to its read, above the work, and V8 spilled them (the 1B model's decode in Chromium
    // 1.03x with the reads here, alternating builds)
    // SAFETY: bytes 0, 64 and 128 of the 144 of a block.
    if T {
        unsafe {
            touch_line(p.ahead, 0);
            touch_line(p.ahead, 64);
            touch_line(p.ahead, 128);
        }
    }
    let mut s = [i32x4_splat(0); N];
    let step = |k: usize| {
        // SAFETY: bytes 32k..32k + 32 of the 128 quant bytes.
        let (b0, b1) = unsafe { (load_ptr(p.qs.add(32 * k)), load_ptr(p.qs.add(32 * k + 16))) };
        let (q0, q1) = (v128_and(b0, c.m4), v128_and(b1, c.m4));
        // the high nibbles: a 16-bit shift then the mask (wasm's 8-bit shift is several instructions)
        let (q2, q3) = (v128_and(u16x8_shr(b0, 4), c.m4), v128_and(u16x8_shr(b1, 4), c.m4));
        let sc = pick(p.sm, c.pair[k]);
        for t in 0..N {
            let a = dot32_u7(q0, q1, q8k_at(y[t], 64 * k), q8k_at(y[t], 64 * k + 16));
            let b = dot32_u7(q2, q3, q8k_at(y[t], 64 * k + 32), q8k_at(y[t], 64 * k + 48));
            s[t] = i32x4_add(s[t], scale_pair(a, b, sc));
        }
    };
    pair_steps::<N>(step);
    let (m0, m1) = (pick(p.sm, c.mins[0]), pick(p.sm, c.mins[1]));
    std::array::from_fn(|t| {
        let (b0, b1) = bsums16(y[t]);
        (s[t], i32x4_add(i32x4_dot_i16x8(b0, m0), i32x4_dot_i16x8(b1, m1)))
    })
}

/// A Q6_K super-block made ready: its quant bytes (unpacked pair by pair in `sums_q6_k`), its
/// sixteen scales as i16 (also for the −32, through the per-16 sums) and the block whose lines
/// `sums_q6_k` touches (`k_tiles`).
struct PrepQ6K {
    ql: *const u8,
    qh: *const u8,
    sc16: [v128; 2],
    ahead: *const u8,
}

#[inline(always)]
fn prep_q6_k(x: &BlockQ6K, ahead: &BlockQ6K) -> PrepQ6K {
    // SAFETY: the 16 bytes of `scales`.
    let s = unsafe { load_ptr(x.scales.as_ptr() as *const u8) };
    PrepQ6K {
        ql: x.ql.as_ptr(),
        qh: x.qh.as_ptr(),
        sc16: [i16x8_extend_low_i8x16(s), i16x8_extend_high_i8x16(s)],
        ahead: ahead as *const BlockQ6K as *const u8,
    }
}

/// One Q6_K block · `N` Q8_K blocks: for each, Σ_j sc_j·((q − 32)·y over sub-block j) as i32x4
/// partial sums (the −32 as −32·Σ_j sc_j·bsum_j), and no minimum term. As `sums_q4_k`, two
/// sub-blocks (32 elements) at a time against the whole batch, unpacked just before: elements
/// 128n + 32j + 16h .. +16 are a nibble of ql[64n + 32(j % 2) + 16h ..] (the low one for j < 2)
/// with bits 2j..2j+2 of qh[32n + 16h ..] as bits 4-5.
#[inline(always)]
fn sums_q6_k<const N: usize, const T: bool>(p: &PrepQ6K, y: [&BlockQ8K; N], c: &KConsts) -> [(v128, v128); N] {
    // a sub-block's partial sums: 4 products each, at most 4·63·128 < 2^15 in magnitude
    let mut s = [i32x4_splat(0); N];
    let mut step = |n: usize, j: usize| {
        let k = 4 * n + j;
        let l = 64 * n + 32 * (j % 2);
        // SAFETY: 32 bytes of the 128 of `ql` and 32 of the 64 of `qh`.
        let (l0, l1, h0, h1) = unsafe {
            (load_ptr(p.ql.add(l)), load_ptr(p.ql.add(l + 16)), load_ptr(p.qh.add(32 * n)), load_ptr(p.qh.add(32 * n + 16)))
        };
        // 16-bit shifts: the masks drop what crosses from the neighbouring byte
        let nib = |v: v128| if j < 2 { v128_and(v, c.m4) } else { v128_and(u16x8_shr(v, 4), c.m4) };
        let high = |v: v128| {
            let v = match j {
                0 => u16x8_shl(v, 4),
                1 => u16x8_shl(v, 2),
                2 => v,
                _ => u16x8_shr(v, 2),
            };
            v128_and(v, c.m30)
        };
        let (q0, q1) = (v128_or(nib(l0), high(h0)), v128_or(nib(l1), high(h1)));
        let sc = pick(p.sc16[n], c.q6pair[j]);
        for t in 0..N {
            let pair = scale_pair(dot16_u7(q0, q8k_at(y[t], 32 * k)), dot16_u7(q1, q8k_at(y[t], 32 * k + 16)), sc);
            s[t] = i32x4_add(s[t], pair);
        }
    };
    // before the pair steps, as in `sums_q4_k`
    // SAFETY: bytes 0, 64, 128 and 192 of the 210 of a block.
    if T {
        unsafe {
            touch_line(p.ahead, 0);
            touch_line(p.ahead, 64);
            touch_line(p.ahead, 128);
            touch_line(p.ahead, 192);
        }
    }
    // j written out (it picks the shifts), n a loop LLVM unrolls
    for n in 0..2 {
        step(n, 0);
        step(n, 1);
        step(n, 2);
        step(n, 3);
    }
    std::array::from_fn(|t| {
        let (b0, b1) = bsums16(y[t]);
        let off = i32x4_add(i32x4_dot_i16x8(b0, p.sc16[0]), i32x4_dot_i16x8(b1, p.sc16[1]));
        (i32x4_sub(s[t], i32x4_shl(off, 5)), i32x4_splat(0))
    })
}

/// Super-blocks of one weight row read in one run by `k_tiles` (their partial sums wait on the
/// stack for the tile's other rows: `K_CHUNK`·4·32 bytes per activation row).
const K_CHUNK: usize = 16;

/// Every weight row of `w` (rows of `nb` super-blocks) against `N` Q8_K activation rows, four
/// weight rows at a time (a last partial group repeats its last row and keeps only its own lanes).
/// `prep` unpacks a super-block (given too the block whose lines `sums` touches: the same block of
/// the row four below), `sums` gives one unpacked block's (scaled, minimum) integer
/// partial sums against each activation row's block, `scales` the f32 (d, dmin) of four blocks; `MIN`:
/// the format has a minimum term.
#[inline(always)]
unsafe fn k_tiles<B, P, const N: usize, const MIN: bool>(
    w: &[B],
    nb: usize,
    a: [&[u8]; N],
    out: [*mut f32; N],
    prep: impl Fn(&B, &B) -> P,
    sums: impl Fn(&P, [&BlockQ8K; N]) -> [(v128, v128); N],
    scales: impl Fn([&B; 4]) -> (v128, v128),
) {
    if nb == 0 {
        return;
    }
    let ys = q8k_rows::<N>(a, nb);
    let rows = w.len() / nb;
    let mut r0 = 0;
    while r0 < rows {
        let rw: [&[B]; 4] = std::array::from_fn(|i| {
            let r = (r0 + i).min(rows - 1);
            &w[r * nb..(r + 1) * nb]
        });
        let mut accd = [[f32x4_splat(0.0); 4]; N];
        let mut accm = [[f32x4_splat(0.0); 4]; N];
        let mut c0 = 0;
        while c0 < nb {
            let kb = (nb - c0).min(K_CHUNK);
            // each row's run of `kb` blocks read front to back before the next row's (measured:
            // +9% decode on the 1B model over taking the four rows' blocks in turn, before `touch`)
            // (not zeroed: a 16 KiB memset per chunk at N = 8 cost prefill a quarter of its time
            // in the threaded build; every slot read below is written first)
            let mut s = [[[MaybeUninit::<(v128, v128)>::uninit(); 4]; K_CHUNK]; N];
            for (i, row) in rw.iter().enumerate() {
                // block k of the next tile's row i has its lines touched during block k's pair
                // steps (see `touch`); the last tile touches its own blocks again
                let ahead = r0 + 4 + i;
                for (k, x) in row[c0..c0 + kb].iter().enumerate() {
                    let p = prep(x, if ahead < rows { &w[ahead * nb + c0 + k] } else { x });
                    let r = sums(&p, std::array::from_fn(|t| &ys[t][c0 + k]));
                    for t in 0..N {
                        s[t][k][i].write(r[t]);
                    }
                }
            }
            for k in 0..kb {
                let b = c0 + k;
                let (dw, dmin) = scales([&rw[0][b], &rw[1][b], &rw[2][b], &rw[3][b]]);
                for t in 0..N {
                    let da = f32x4_splat(ys[t][b].d());
                    // SAFETY: slots k < kb of all four rows were written above.
                    let s = s[t][k].map(|x| unsafe { x.assume_init() });
                    // scalar::Acc4::add and (with a minimum) scalar::acc_k_min, lane by lane
                    let is = f32x4_convert_i32x4(totals4(s[0].0, s[1].0, s[2].0, s[3].0));
                    accd[t][b % 4] = f32x4_add(accd[t][b % 4], f32x4_mul(f32x4_mul(dw, da), is));
                    if MIN {
                        let ms = f32x4_convert_i32x4(totals4(s[0].1, s[1].1, s[2].1, s[3].1));
                        // in memory, as in `rows_q4_1_x4` (the 1B model in Chromium: decode
                        // 1.04-1.06x, prefill 1.06-1.16x)
                        let pm = core::ptr::addr_of_mut!(accm[t][b % 4]);
                        core::ptr::write_volatile(pm, f32x4_add(core::ptr::read_volatile(pm), f32x4_neg(f32x4_mul(f32x4_mul(dmin, da), ms))));
                    }
                }
            }
            c0 += kb;
        }
        let keep = (rows - r0).min(4);
        for t in 0..N {
            // SAFETY: the caller gives room for every row.
            store_lanes(out[t].add(r0), acc4_sum(accd[t], accm[t]), keep);
        }
        r0 += 4;
    }
}

/// # Safety
/// Each `out[t]` valid for `w.len() / nb` writes.
pub unsafe fn rows_q4_k<const N: usize, const T: bool>(w: &[BlockQ4K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    let (c, lc) = (KConsts::new(), LConsts::new());
    let prep = |x: &BlockQ4K, y: &BlockQ4K| prep_q4_k(x, y, &c);
    let sums = |p: &PrepQ4K, y: [&BlockQ8K; N]| sums_q4_k::<N, T>(p, y, &c);
    k_tiles::<_, _, N, true>(w, nb, a, out, prep, sums, |x: [&BlockQ4K; 4]| {
        let pair = |x: &BlockQ4K| h(x.d) as u32 | (h(x.dmin) as u32) << 16;
        pairs_f32(u32x4(pair(x[0]), pair(x[1]), pair(x[2]), pair(x[3])), &lc)
    })
}

/// # Safety
/// Each `out[t]` valid for `w.len() / nb` writes.
pub unsafe fn rows_q6_k<const N: usize, const T: bool>(w: &[BlockQ6K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    let (c, lc) = (KConsts::new(), LConsts::new());
    let sums = |p: &PrepQ6K, y: [&BlockQ8K; N]| sums_q6_k::<N, T>(p, y, &c);
    k_tiles::<_, _, N, false>(w, nb, a, out, prep_q6_k, sums, |x: [&BlockQ6K; 4]| {
        (scales_f32(u32x4(h(x[0].d) as u32, h(x[1].d) as u32, h(x[2].d) as u32, h(x[3].d) as u32), &lc), f32x4_splat(0.0))
    })
}

/// Q4_K weights in `layout::Layout::Groups4` (four rows interleaved super-block by super-block)
/// against `N` Q8_K activation rows, with relaxed SIMD. A group's super-block: the four rows'
/// (d, dmin) in one 16-byte load, their 12 scale bytes as three vectors (`v_j`: bytes 4j..4j+4 of
/// each row, one row per u32 lane, so ggml's 32-bit unpacking of the 6-bit scales and minimums runs
/// on all four rows at once), then 32 vectors of quants (bytes 4j..4j+4 of each row's `qs`): the
/// low nibbles of quant vector 8i+m are elements 64i+4m.. of each row, the high nibbles elements
/// 64i+32+4m.. Each is an 8-bit dot product against the activations broadcast to every lane, so a
/// sub-block's sum for each row lands in its own lane, is multiplied by that row's scale and
/// summed: no horizontal sums, and the scales, the activations' loads and the float work are
/// shared by four rows. Two ways to the same integers, chosen per CPU by `calibrate` (`I16_DOTS`):
/// i32 dot products (`i32x4.relaxed_dot_i8x16_i7x16_add_s`, one x86 instruction with AVX-VNNI),
/// then `i32x4.mul` by the scales; or i16 dot products (`i16x8.relaxed_dot_i8x16_i7x16_s`, one
/// `pmaddubsw` on any x86), a sub-block's 8 pieces summed in i16 (Q8_K's quants are within ±127:
/// at most 8 · 2 · 15 · 127 = 30480, exact), widened and scaled in one `i32x4.dot_i16x8_s`. AMD's
/// Zen 4 has AVX-512 VNNI but not AVX-VNNI, so V8 must build the i32 form from several
/// instructions there: the i16 form made the 1B model's prefill 1.32× and decode 1.12× faster in
/// Chromium on such a host. The minimums' term takes `i32x4.dot_i16x8_s` of the four
/// rows' minimums against the activations' per-32 sums. The integer totals are exact and the float
/// accumulation is `k_tiles`' (`scalar::Acc4`'s order, lane by lane), so the results are the
/// reference's bits.
///
/// # Safety
/// Each `out[t]` valid for `w.len() / (nb · 144)` writes.
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn rows_q4_k_x4<const N: usize, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    if I16_DOTS[0].load(core::sync::atomic::Ordering::Relaxed) {
        q4_k_x4::<N, true, T>(w, nb, a, out)
    } else {
        q4_k_x4::<N, false, T>(w, nb, a, out)
    }
}

/// `rows_q4_k_x4` ([0]) and `rows_q6_k_x4` ([1]) use i16 dot products (else i32 ones): set by
/// `calibrate`, or `set_i16_dots`.
#[cfg(target_feature = "relaxed-simd")]
static I16_DOTS: [core::sync::atomic::AtomicBool; 2] = [const { core::sync::atomic::AtomicBool::new(false) }; 2];

/// Whether `rows_q4_k_x4` and `rows_q6_k_x4` use their i16 forms.
#[cfg(target_feature = "relaxed-simd")]
pub fn i16_dots() -> [bool; 2] {
    I16_DOTS.each_ref().map(|f| f.load(core::sync::atomic::Ordering::Relaxed))
}

/// Makes `rows_q4_k_x4` and `rows_q6_k_x4` use their i16 (`true`) or i32 forms (the tests run both).
#[cfg(target_feature = "relaxed-simd")]
pub fn set_i16_dots(on: bool) {
    I16_DOTS.iter().for_each(|f| f.store(on, core::sync::atomic::Ordering::Relaxed));
}

/// Times the two forms of `rows_q4_k_x4` and of `rows_q6_k_x4` on a small group of four rows held
/// in cache (`clock`: milliseconds), alternating, and keeps the faster of each for this instance;
/// returns their best times per call, [Q4_K, Q6_K] × (i32 form, i16 form). Both forms give the
/// same bits, so the choice never changes a result.
#[cfg(target_feature = "relaxed-simd")]
pub fn calibrate(clock: impl Fn() -> f64) -> [(f64, f64); 2] {
    const NB: usize = 8;
    let x: Vec<f32> = (0..NB * QK_K).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
    let mut act = vec![0u8; act_bytes(ActType::Q8K, x.len())];
    quantize_act(ActType::Q8K, &x, &mut act);
    // a group of 4 rows of NB super-blocks of varied bytes, with finite scales at the head of each
    // of its super-blocks: Q4_K's four (d, dmin) = (1, 0.5), Q6_K's four d = 1
    let weights = |sb: usize, head: &[u8]| {
        let mut w: Vec<u8> = (0..4 * NB * sb).map(|i| (i * 37 % 251) as u8).collect();
        for b in w.chunks_exact_mut(4 * sb) {
            b[..head.len()].copy_from_slice(head);
        }
        w
    };
    let w4 = weights(std::mem::size_of::<BlockQ4K>(), &[0x00, 0x3c, 0x00, 0x38].repeat(4));
    let w6 = weights(std::mem::size_of::<BlockQ6K>(), &[0x00, 0x3c, 0x00, 0x3c, 0x00, 0x3c, 0x00, 0x3c]);
    let mut out = [0f32; 4];
    let mut run = |kernel: usize, i16: bool| {
        let (act, o) = (std::hint::black_box(&act[..]), [out.as_mut_ptr()]);
        // SAFETY: `out` has room for the group's 4 rows.
        unsafe {
            match (kernel, i16) {
                (0, true) => q4_k_x4::<1, true, false>(std::hint::black_box(&w4[..]), NB, [act], o),
                (0, false) => q4_k_x4::<1, false, false>(std::hint::black_box(&w4[..]), NB, [act], o),
                (_, true) => q6_k_x4::<1, true, false>(std::hint::black_box(&w6[..]), NB, [act], o),
                (_, false) => q6_k_x4::<1, false, false>(std::hint::black_box(&w6[..]), NB, [act], o),
            }
        }
        std::hint::black_box(&mut out);
    };
    let mut best = [[f64::INFINITY; 2]; 2];
    for round in 0..12 {
        let (kernel, form) = (round / 2 % 2, round % 2);
        let t0 = clock();
        let mut reps = 0;
        // at least 2 ms a timing (a worker's clock may tick in 0.1 ms)
        while reps < 64 || clock() - t0 < 2.0 {
            for _ in 0..16 {
                run(kernel, form == 1);
            }
            reps += 16;
        }
        best[kernel][form] = best[kernel][form].min((clock() - t0) / reps as f64);
    }
    for (flag, [i32_ms, i16_ms]) in I16_DOTS.iter().zip(best) {
        flag.store(i16_ms < i32_ms, core::sync::atomic::Ordering::Relaxed);
    }
    best.map(|[a, b]| (a, b))
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn q4_k_x4<const N: usize, const I16: bool, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    const G: usize = 4 * std::mem::size_of::<BlockQ4K>();
    let (c, lc) = (KConsts::new(), LConsts::new());
    let ys = q8k_rows::<N>(a, nb);
    let (gb, groups) = groups_in(w, nb, G, "Q4_K");
    for g in 0..groups {
        let base = w[g * gb..].as_ptr();
        // the next group, touched super-block by super-block (see `touch`)
        let next = &w[w.len().min((g + 1) * gb)..w.len().min((g + 2) * gb)];
        let mut accd = [[f32x4_splat(0.0); 4]; N];
        let mut accm = [[f32x4_splat(0.0); 4]; N];
        let mut step = |b: usize, j: usize| {
            if T {
                touch_at(next, b * G, G);
            }
            // SAFETY: super-block b < nb of this group: G bytes inside w.
            let x = unsafe { base.add(b * G) };
            // SAFETY: the heads and the three scale vectors, the block's first 64 bytes.
            let (heads, v0, v1, v2) = unsafe { (load_ptr(x), load_ptr(x.add(16)), load_ptr(x.add(32)), load_ptr(x.add(48))) };
            // each row's scales 0..4, 4..8 and minimums 0..4, 4..8 as the bytes of its u32 lane
            // (`scalar::scales_mins_k4`)
            let sc = [v128_and(v0, c.m3f), v128_or(v128_and(v2, c.m4), v128_and(u32x4_shr(v0, 2), c.m30))];
            let mins = [v128_and(v1, c.m3f), v128_or(v128_and(u32x4_shr(v2, 4), c.m4), v128_and(u32x4_shr(v1, 2), c.m30))];
            let mut isum = [i32x4_splat(0); N];
            for i in 0..4 {
                // sub-blocks 2i (low nibbles) and 2i + 1 (high nibbles): per activation row, four
                // chains of products (two per sub-block), so the dot products overlap
                let mut lo = [[i32x4_splat(0); 2]; N];
                let mut hi = [[i32x4_splat(0); 2]; N];
                let yv: [[v128; 4]; N] = std::array::from_fn(|t| {
                    let y = ys[t][b].qs.as_ptr() as *const u8;
                    // SAFETY: elements 64i..64i + 64 of the activation block.
                    unsafe { [load_ptr(y.add(64 * i)), load_ptr(y.add(64 * i + 16)), load_ptr(y.add(64 * i + 32)), load_ptr(y.add(64 * i + 48))] }
                });
                macro_rules! piece {
                    ($m:literal) => {{
                        // SAFETY: quant vector 8i + m, inside this super-block's G bytes.
                        let p = unsafe { load_ptr(x.add(64 + 16 * (8 * i + $m))) };
                        let (ql, qh) = (v128_and(p, c.m4), v128_and(u16x8_shr(p, 4), c.m4));
                        for t in 0..N {
                            let (ya, yb) = (yv[t][$m / 4], yv[t][2 + $m / 4]);
                            let l = i32x4_shuffle::<{ $m % 4 }, { $m % 4 }, { $m % 4 }, { $m % 4 }>(ya, ya);
                            let h = i32x4_shuffle::<{ $m % 4 }, { $m % 4 }, { $m % 4 }, { $m % 4 }>(yb, yb);
                            if I16 {
                                lo[t][$m / 4] = i16x8_add(lo[t][$m / 4], i16x8_relaxed_dot_i8x16_i7x16(l, ql));
                                hi[t][$m / 4] = i16x8_add(hi[t][$m / 4], i16x8_relaxed_dot_i8x16_i7x16(h, qh));
                            } else {
                                lo[t][$m / 4] = i32x4_relaxed_dot_i8x16_i7x16_add(l, ql, lo[t][$m / 4]);
                                hi[t][$m / 4] = i32x4_relaxed_dot_i8x16_i7x16_add(h, qh, hi[t][$m / 4]);
                            }
                        }
                    }};
                }
                piece!(0);
                piece!(1);
                piece!(2);
                piece!(3);
                piece!(4);
                piece!(5);
                piece!(6);
                piece!(7);
                let picks = if I16 { &c.byte16 } else { &c.byte };
                let (s_lo, s_hi) = (pick(sc[i / 2], picks[2 * (i % 2)]), pick(sc[i / 2], picks[2 * (i % 2) + 1]));
                for t in 0..N {
                    let (l, h) = if I16 {
                        (i32x4_dot_i16x8(i16x8_add(lo[t][0], lo[t][1]), s_lo), i32x4_dot_i16x8(i16x8_add(hi[t][0], hi[t][1]), s_hi))
                    } else {
                        (i32x4_mul(i32x4_add(lo[t][0], lo[t][1]), s_lo), i32x4_mul(i32x4_add(hi[t][0], hi[t][1]), s_hi))
                    };
                    isum[t] = i32x4_add(isum[t], i32x4_add(l, h));
                }
            }
            // the minimums as i16, rows 0 and 1 (minimums 0..4 of row 0, then of row 1) and rows 2, 3
            let m01 = [u16x8_extend_low_u8x16(mins[0]), u16x8_extend_low_u8x16(mins[1])];
            let m23 = [u16x8_extend_high_u8x16(mins[0]), u16x8_extend_high_u8x16(mins[1])];
            let (dw, mw) = pairs_f32(heads, &lc);
            for t in 0..N {
                let y = &ys[t][b];
                // the activations' per-32 sums, 0..4 and 4..8, each twice as i16
                let (b0, b1) = bsums16(y);
                let (s0, s1) = (i32x4_dot_i16x8(b0, c.one16), i32x4_dot_i16x8(b1, c.one16));
                let (s0, s1) = (i16x8_narrow_i32x4(s0, s0), i16x8_narrow_i32x4(s1, s1));
                let r01 = i32x4_add(i32x4_dot_i16x8(m01[0], s0), i32x4_dot_i16x8(m01[1], s1));
                let r23 = i32x4_add(i32x4_dot_i16x8(m23[0], s0), i32x4_dot_i16x8(m23[1], s1));
                let msum = i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(r01, r23), i32x4_shuffle::<1, 3, 5, 7>(r01, r23));
                // scalar::acc_k_min, lane by lane
                let da = f32x4_splat(y.d());
                accd[t][j] = f32x4_add(accd[t][j], f32x4_mul(f32x4_mul(dw, da), f32x4_convert_i32x4(isum[t])));
                let pm = core::ptr::addr_of_mut!(accm[t][j]);
                // SAFETY: a slot of `accm` (in memory, as in `k_tiles`).
                unsafe {
                    core::ptr::write_volatile(pm, f32x4_add(core::ptr::read_volatile(pm), f32x4_neg(f32x4_mul(f32x4_mul(mw, da), f32x4_convert_i32x4(msum)))));
                }
            }
        };
        by_fours!(nb, step, b0 => (), ());
        for t in 0..N {
            // SAFETY: the caller gives room for every row.
            unsafe { store_lanes(out[t].add(4 * g), acc4_sum(accd[t], accm[t]), 4) };
        }
    }
}

/// Q6_K weights in `layout::Layout::Groups4` (four rows interleaved super-block by super-block)
/// against `N` Q8_K activation rows, with relaxed SIMD. A group's super-block: the four rows' f16
/// scales (8 bytes), then four-byte pieces of each row (one row per u32 lane): 32 of `ql`, 16 of
/// `qh`, 4 of the sub-block scales. Bytes 4u..4u+4 of `ql` half n (A), of its second 32 (B) and of
/// `qh` half n give each row's elements 128n+4u.. (A's low nibbles with bits 0-1 of qh), +32
/// (B's, bits 2-3), +64 (A's high nibbles, bits 4-5) and +96 (B's, bits 6-7): four 8-bit dot
/// products against the activations broadcast to every lane, so each sub-block's sum for a row
/// lands in its own lane, multiplied by that row's scale — in i32 (`i32x4.mul`) or, in the i16 form
/// (`rows_q4_k_x4` says why, `calibrate` chooses), as two i16 sums of two quads each (one would
/// not hold 4 · 2 · 63 · 127) scaled and widened by `i32x4.dot_i16x8_s`. The −32 is taken as
/// −32·Σ_j sc_j·(the activations' sum over sub-block j), one `i32x4.dot_i16x8_s` per two rows and
/// four sub-blocks. Exact integers and `k_tiles`' float order (`scalar::Acc4`'s, lane by lane):
/// the reference's bits.
///
/// # Safety
/// Each `out[t]` valid for `w.len() / (nb · 210)` writes.
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn rows_q6_k_x4<const N: usize, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    if N == 8 {
        // in two halves of four: eight rows' sums (eight each in the i16 form: four sub-blocks,
        // two halves) spill far past V8's 16 vector registers, four rows' less. The 1B model's
        // prefill in Chromium 1.09x, Gemma 3 270M's 1.07x (alternating builds, 4 and 2 rounds);
        // quarters of two 0.98x of this, and Q4_K likewise in halves 0.94x
        for h in 0..2 {
            let (a4, o4): ([&[u8]; 4], [*mut f32; 4]) = (std::array::from_fn(|i| a[4 * h + i]), std::array::from_fn(|i| out[4 * h + i]));
            rows_q6_k_x4::<4, T>(w, nb, a4, o4);
        }
        return;
    }
    if I16_DOTS[1].load(core::sync::atomic::Ordering::Relaxed) {
        q6_k_x4::<N, true, T>(w, nb, a, out)
    } else {
        q6_k_x4::<N, false, T>(w, nb, a, out)
    }
}

#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn q6_k_x4<const N: usize, const I16: bool, const T: bool>(w: &[u8], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    const G: usize = 4 * std::mem::size_of::<BlockQ6K>();
    // where the pieces of `ql`, `qh` and the scales start in a group's super-block
    const QL: usize = 8;
    const QH: usize = QL + 16 * 32;
    const SC: usize = QH + 16 * 16;
    let (c, lc) = (KConsts::new(), LConsts::new());
    let ys = q8k_rows::<N>(a, nb);
    let (gb, groups) = groups_in(w, nb, G, "Q6_K");
    for g in 0..groups {
        let base = w[g * gb..].as_ptr();
        // the next group (the last touches itself again), touched super-block by super-block
        // (see `touch`)
        let next = if g + 1 < groups { base.wrapping_add(gb) } else { base };
        let mut accd = [[f32x4_splat(0.0); 4]; N];
        let mut step = |b: usize, j: usize| {
            // SAFETY: super-block b < nb of this group and of the next: G bytes inside w.
            let (x, ahead) = unsafe { (base.add(b * G), next.add(b * G)) };
            // SAFETY: the four scale pieces, inside the super-block.
            let scp: [v128; 4] = unsafe { [load_ptr(x.add(SC)), load_ptr(x.add(SC + 16)), load_ptr(x.add(SC + 32)), load_ptr(x.add(SC + 48))] };
            let mut isum = [i32x4_splat(0); N];
            // n, h written out (loops here stayed loops, their indexing arithmetic at run time)
            macro_rules! quarter {
                ($n:literal, $h:literal) => {{
                    let (n, h): (usize, usize) = ($n, $h);
                    // a quarter of the lines of the next group's super-block (spread through
                    // the work, see `touch`): lines 4q..4q + 4 of its 14
                    let q = 2 * n + h;
                    if T {
                        for line in 4 * q..(4 * q + 4).min(G.div_ceil(64)) {
                            // SAFETY: byte 64·line < G of that super-block.
                            unsafe { touch_line(ahead, 64 * line) };
                        }
                    }
                    // sub-blocks 8n + h + 2k (k < 4): elements 128n + 32k + 16h .. + 16
                    // per sub-block one i32 sum, or two i16 ones (quads 0-1 and 2-3: at most
                    // 2 · 2 · 2 · 63 · 127 = 64008 would not fit one)
                    let mut acc = [[[i32x4_splat(0); 2]; 4]; N];
                    let yv: [[v128; 4]; N] = std::array::from_fn(|t| {
                        let y = ys[t][b].qs.as_ptr() as *const u8;
                        // SAFETY: inside the activation block's 256 values.
                        std::array::from_fn(|k| unsafe { load_ptr(y.add(128 * n + 32 * k + 16 * h)) })
                    });
                    macro_rules! quad {
                        ($v:literal) => {{
                            let u = 4 * h + $v;
                            // SAFETY: pieces of this super-block.
                            let (pa, pb, ph) = unsafe {
                                (load_ptr(x.add(QL + 16 * (16 * n + u))), load_ptr(x.add(QL + 16 * (16 * n + 8 + u))), load_ptr(x.add(QH + 16 * (8 * n + u))))
                            };
                            let q = [
                                v128_or(v128_and(pa, c.m4), v128_and(u16x8_shl(ph, 4), c.m30)),
                                v128_or(v128_and(pb, c.m4), v128_and(u16x8_shl(ph, 2), c.m30)),
                                v128_or(v128_and(u16x8_shr(pa, 4), c.m4), v128_and(ph, c.m30)),
                                v128_or(v128_and(u16x8_shr(pb, 4), c.m4), v128_and(u16x8_shr(ph, 2), c.m30)),
                            ];
                            for t in 0..N {
                                for k in 0..4 {
                                    let yb = i32x4_shuffle::<$v, $v, $v, $v>(yv[t][k], yv[t][k]);
                                    if I16 {
                                        let a = &mut acc[t][k][$v / 2];
                                        *a = i16x8_add(*a, i16x8_relaxed_dot_i8x16_i7x16(yb, q[k]));
                                    } else {
                                        acc[t][k][0] = i32x4_relaxed_dot_i8x16_i7x16_add(yb, q[k], acc[t][k][0]);
                                    }
                                }
                            }
                        }};
                    }
                    quad!(0);
                    quad!(1);
                    quad!(2);
                    quad!(3);
                    for k in 0..4 {
                        // sub-block 8n + h + 2k's scale (i8, byte (h + 2k) % 4 of piece 2n + (h + 2k) / 4)
                        let sb = h + 2 * k;
                        let v = scp[2 * n + sb / 4];
                        let sc = match sb % 4 {
                            0 => i32x4_shr(i32x4_shl(v, 24), 24),
                            1 => i32x4_shr(i32x4_shl(v, 16), 24),
                            2 => i32x4_shr(i32x4_shl(v, 8), 24),
                            _ => i32x4_shr(v, 24),
                        };
                        // the scale (within ±128) in both i16 halves of each lane
                        let sc16 = i8x16_shuffle::<0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13>(sc, sc);
                        for t in 0..N {
                            let [a0, a1] = acc[t][k];
                            let d = if I16 { i32x4_add(i32x4_dot_i16x8(a0, sc16), i32x4_dot_i16x8(a1, sc16)) } else { i32x4_mul(a0, sc) };
                            isum[t] = i32x4_add(isum[t], d);
                        }
                    }
                }};
            }
            quarter!(0, 0);
            quarter!(0, 1);
            quarter!(1, 0);
            quarter!(1, 1);
            // the −32: Σ_j sc_j · bsum_j, rows 0 and 1 from the pieces' low halves, rows 2 and 3
            // from their high halves (scales 4p..4p+4 of each row as i16)
            let lo: [v128; 4] = scp.map(|v| i16x8_extend_low_i8x16(v));
            let hi: [v128; 4] = scp.map(|v| i16x8_extend_high_i8x16(v));
            // SAFETY: the four f16 scales, the super-block's first 8 bytes.
            let dw = scales_f32(u32x4_extend_low_u16x8(unsafe { v128_load64_zero(x as *const u64) }), &lc);
            for t in 0..N {
                let y = &ys[t][b];
                let (b0, b1) = bsums16(y);
                // sums 4p..4p+4, twice
                let bs = [i64x2_shuffle::<0, 0>(b0, b0), i64x2_shuffle::<1, 1>(b0, b0), i64x2_shuffle::<0, 0>(b1, b1), i64x2_shuffle::<1, 1>(b1, b1)];
                let mut r01 = i32x4_dot_i16x8(lo[0], bs[0]);
                let mut r23 = i32x4_dot_i16x8(hi[0], bs[0]);
                for p in 1..4 {
                    r01 = i32x4_add(r01, i32x4_dot_i16x8(lo[p], bs[p]));
                    r23 = i32x4_add(r23, i32x4_dot_i16x8(hi[p], bs[p]));
                }
                let off = i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(r01, r23), i32x4_shuffle::<1, 3, 5, 7>(r01, r23));
                let is = i32x4_sub(isum[t], i32x4_shl(off, 5));
                let da = f32x4_splat(y.d());
                accd[t][j] = f32x4_add(accd[t][j], f32x4_mul(f32x4_mul(dw, da), f32x4_convert_i32x4(is)));
            }
        };
        // one call site, so LLVM inlines the step (written out four times, it did not)
        for b in 0..nb {
            step(b, b % 4);
        }
        let zero = [f32x4_splat(0.0); 4];
        for t in 0..N {
            // SAFETY: the caller gives room for every row.
            unsafe { store_lanes(out[t].add(4 * g), acc4_sum(accd[t], zero), 4) };
        }
    }
}

/// One Q4_K row · one Q8_K row (for the tests).
pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut v = 0f32;
    // SAFETY: one row of output.
    unsafe { rows_q4_k::<1, false>(w, w.len(), [blocks_as_bytes(a)], [&mut v]) };
    v
}

/// One Q6_K row · one Q8_K row (for the tests).
pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut v = 0f32;
    // SAFETY: one row of output.
    unsafe { rows_q6_k::<1, false>(w, w.len(), [blocks_as_bytes(a)], [&mut v]) };
    v
}

k_rows_kernel!(
    rows_q2_k, dot_q2_k, BlockQ2K, ([v128; 16], [v128; 16], [i16; 16]),
    |x: &BlockQ2K| (two_bits(&x.qs), splats(x.scales.map(|s| (s & 15) as i32)), x.scales.map(|s| (s >> 4) as i16)),
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ2K, p: &([v128; 16], [v128; 16], [i16; 16]), y: &BlockQ8K| {
        scalar::acc_k_min(acc, b, x.d, x.dmin, y, isum_k16(&p.1, y, &p.0), bsum_dot(&p.2, y));
    }
);

// Q3_K: u = q + 4·h in 0..8 (the value is u − 4, the −4 taken through the per-16 sums)
k_rows_kernel!(
    rows_q3_k, dot_q3_k, BlockQ3K, ([v128; 16], [v128; 16], [i16; 16]),
    |x: &BlockQ3K| {
        let sc = scalar::scales_q3_k(&x.scales);
        let low = two_bits(&x.qs);
        let (h0, h1) = (load_at(&x.hmask, 0), load_at(&x.hmask, 16));
        let q: [v128; 16] = std::array::from_fn(|v| {
            let (n, k, half) = (v / 8, (v / 2) % 4, v % 2);
            let hm = if half == 0 { h0 } else { h1 };
            let h = u8x16_shl(v128_and(u8x16_shr(hm, (4 * n + k) as u32), u8x16_splat(1)), 2);
            v128_or(low[v], h)
        });
        (q, splats(sc.map(|s| s as i32)), sc.map(|s| s as i16))
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ3K, p: &([v128; 16], [v128; 16], [i16; 16]), y: &BlockQ8K| {
        let isum = isum_k16(&p.1, y, &p.0) - 4 * bsum_dot(&p.2, y);
        acc.add(b, super::f16::le(x.d) * y.d(), isum);
    }
);

// IQ4_XS: the levels are 8-bit (no 7-bit operand, no relaxed form): i8 products through i16
k_rows_kernel!(
    rows_iq4_xs, dot_iq4_xs, BlockIQ4XS, ([v128; 16], [v128; 8]),
    |x: &BlockIQ4XS| {
        let q: [v128; 16] = std::array::from_fn(|v| {
            let b = load_at(&x.qs, 16 * (v / 2));
            iq4_lookup(if v % 2 == 0 { v128_and(b, u8x16_splat(0x0f)) } else { u8x16_shr(b, 4) })
        });
        (q, splats(scalar::scales_iq4_xs(x).map(|s| s as i32)))
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockIQ4XS, p: &([v128; 16], [v128; 8]), y: &BlockQ8K| {
        let mut s = i32x4_splat(0);
        for j in 0..8 {
            let d = i32x4_add(dot16(p.0[2 * j], q8k_at(y, 32 * j)), dot16(p.0[2 * j + 1], q8k_at(y, 32 * j + 16)));
            s = i32x4_add(s, i32x4_mul(d, p.1[j]));
        }
        acc.add(b, super::f16::le(x.d) * y.d(), total(s));
    }
);

/// `scalar::dot_bf16`, bit for bit: lanes 0..32 are eight f32x4, the products added with a
/// separate multiply and add, the tail and the tree as the reference does them.
pub fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n);
    let full = n / scalar::BF16_LANES * scalar::BF16_LANES;
    let z = u16x8_splat(0);
    // eight bf16 → two f32x4: each value into the high half of a 32-bit lane
    let widen = |v: v128| (i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(v, z), i16x8_shuffle::<12, 4, 13, 5, 14, 6, 15, 7>(v, z));
    let mut c = [f32x4_splat(0.0); 8];
    let mut i = 0;
    while i < full {
        for k in 0..4 {
            let o = 2 * (i + 8 * k);
            let (w0, w1) = widen(load_at(w, o));
            let (a0, a1) = widen(load_at(a, o));
            c[2 * k] = f32x4_add(c[2 * k], f32x4_mul(w0, a0));
            c[2 * k + 1] = f32x4_add(c[2 * k + 1], f32x4_mul(w1, a1));
        }
        i += scalar::BF16_LANES;
    }
    let mut lanes = [0f32; scalar::BF16_LANES];
    for (k, c) in c.iter().enumerate() {
        // SAFETY: 16 bytes inside the 128-byte array.
        unsafe { v128_store(lanes.as_mut_ptr().add(4 * k) as *mut v128, *c) };
    }
    let bf = |b: &[u8], i: usize| super::bf16::to_f32(u16::from_le_bytes([b[2 * i], b[2 * i + 1]]));
    for i in full..n {
        lanes[i % scalar::BF16_LANES] += bf(w, i) * bf(a, i);
    }
    scalar::reduce_bf16_lanes(lanes)
}

/// `scalar::quantize_q8_k`, bit for bit: NaN lanes are skipped by the max and quantize to 0, the
/// first element of largest magnitude gives the scale's sign, rounding is to nearest even and
/// capped at 127.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        // SAFETY: 64 loads of 4 floats inside the 256 of the chunk.
        let v: [v128; 64] = std::array::from_fn(|i| unsafe { v128_load(xb.as_ptr().add(4 * i) as *const v128) });
        let m = v.iter().fold(f32x4_splat(0.0), |m, &x| f32x4_pmax(m, v128_and(f32x4_abs(x), f32x4_eq(x, x))));
        let amax = f32x4_extract_lane::<0>(m).max(f32x4_extract_lane::<1>(m)).max(f32x4_extract_lane::<2>(m)).max(f32x4_extract_lane::<3>(m));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let am = f32x4_splat(amax);
        let first = (0..64)
            .find_map(|i| {
                let hit = i32x4_bitmask(f32x4_eq(f32x4_abs(v[i]), am));
                (hit != 0).then(|| 4 * i + hit.trailing_zeros() as usize)
            })
            .unwrap_or(0);
        let iscale = -127.0 / xb[first];
        let is = f32x4_splat(iscale);
        // trunc_sat of a rounded value: NaN → 0, as the scalar `as i32`
        let qi: [v128; 64] = std::array::from_fn(|i| i32x4_min(i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(is, v[i]))), i32x4_splat(127)));
        for c in 0..16 {
            let lo = i16x8_narrow_i32x4(qi[4 * c], qi[4 * c + 1]);
            let hi = i16x8_narrow_i32x4(qi[4 * c + 2], qi[4 * c + 3]);
            // SAFETY: 16 bytes inside the 256-byte array.
            unsafe { v128_store(b.qs.as_mut_ptr().add(16 * c) as *mut v128, i8x16_narrow_i16x8(lo, hi)) };
        }
        let sums: [v128; 16] = std::array::from_fn(|j| i32x4_add(i32x4_add(qi[4 * j], qi[4 * j + 1]), i32x4_add(qi[4 * j + 2], qi[4 * j + 3])));
        for (o, s) in b.bsums.iter_mut().zip(&sums) {
            *o = (total(*s) as i16).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

/// `f16::round` on 4 lanes (the same bit operations, written out so they surely stay vectors).
#[inline(always)]
fn round4_f16(x: v128) -> v128 {
    let sign = v128_and(x, u32x4_splat(0x8000_0000));
    let a = v128_and(x, u32x4_splat(0x7fff_ffff));
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let normal = v128_and(i32x4_add(i32x4_add(a, u32x4_splat(0x0fff)), odd), u32x4_splat(!0x1fff));
    let half = f32x4_splat(0.5);
    let sub = f32x4_sub(f32x4_add(a, half), half);
    let r = v128_bitselect(sub, normal, u32x4_lt(a, u32x4_splat(0x3880_0000)));
    let r = v128_bitselect(u32x4_splat(0x7f80_0000), r, u32x4_gt(r, u32x4_splat(0x477f_e000)));
    let r = v128_bitselect(v128_or(a, u32x4_splat(0x0040_0000)), r, u32x4_gt(a, u32x4_splat(0x7f80_0000)));
    v128_or(r, sign)
}

/// `round4_f16` with a short path: when every lane is zero or in f16's normal range
/// (2^-14 ≤ |x| ≤ 65504), rounding is an integer add and mask on the bits (the sign rides along:
/// no carry reaches it); otherwise the general version.
#[inline(always)]
pub fn round4_f16_fast(x: v128) -> v128 {
    let a = v128_and(x, u32x4_splat(0x7fff_ffff));
    let outside = u32x4_gt(i32x4_sub(a, u32x4_splat(0x3880_0000)), u32x4_splat(0x477f_e000 - 0x3880_0000));
    if v128_any_true(v128_and(outside, a)) {
        return round4_f16(x);
    }
    let odd = v128_and(u32x4_shr(x, 13), u32x4_splat(1));
    v128_and(i32x4_add(x, i32x4_add(odd, u32x4_splat(0x0fff))), u32x4_splat(!0x1fff))
}

/// Eight f16 values (bits) as two f32x4, exactly as `f16::to_f32` converts each. Without inf or
/// NaN among them (exponent all ones), each value is placed in the high half of a 32-bit lane,
/// shifted into f32's layout by an arithmetic shift (the sign stays on top) and rebiased by one
/// exact multiplication by 2^112 (subnormals included). `c`: made once per loop, not per call.
#[inline(always)]
pub fn f16x8_to_f32(h: v128, c: &F16Consts) -> (v128, v128) {
    let e = c.exp16;
    if v128_any_true(i16x8_eq(v128_and(h, e), e)) {
        return (f16_lanes(u32x4_extend_low_u16x8(h)), f16_lanes(u32x4_extend_high_u16x8(h)));
    }
    let z = u32x4_splat(0);
    let lo = i16x8_shuffle::<8, 0, 9, 1, 10, 2, 11, 3>(h, z);
    let hi = i16x8_shuffle::<12, 4, 13, 5, 14, 6, 15, 7>(h, z);
    (f16_high_finite(lo, c), f16_high_finite(hi, c))
}

/// Eight lanes rounded to f16 precision in place (attention's value accumulator).
#[inline(always)]
pub fn round8_f16(c: &mut [f32; 8]) {
    // SAFETY: two 16-byte loads and stores inside the 32-byte array.
    unsafe {
        let p = c.as_mut_ptr() as *mut v128;
        v128_store(p, round4_f16(v128_load(p)));
        v128_store(p.add(1), round4_f16(v128_load(p.add(1))));
    }
}
