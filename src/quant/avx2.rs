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

#[inline(always)]
unsafe fn load_q8(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr() as *const __m256i)
}

/// The totals of four blocks' partial sums, as f32 lanes (exact: |sum| < 2^24).
#[inline(always)]
pub(super) unsafe fn totals4(p0: __m256i, p1: __m256i, p2: __m256i, p3: __m256i) -> __m128 {
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
pub(super) unsafe fn f16x4(a: u16, b: u16, c: u16, d: u16) -> __m128 {
    _mm_cvtph_ps(_mm_setr_epi16(a as i16, b as i16, c as i16, d as i16, 0, 0, 0, 0))
}

#[inline(always)]
pub(super) fn h(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// An activation row as `quantize_act` lays it out (blocks, then the f32 scales `d`, then for Q8_1
/// the f32 sums `s`), split into its parts for `nb` blocks.
#[inline(always)]
fn act_parts<B: Block>(row: &[u8], nb: usize, with_sums: bool) -> (&[B], *const f32, *const f32) {
    let bb = nb * std::mem::size_of::<B>();
    let need = bb + nb * 4 * (1 + with_sums as usize);
    assert!(row.len() >= need, "activation row too short: {} < {need}", row.len());
    let d = row[bb..].as_ptr() as *const f32;
    // SAFETY: in bounds by the assert (the sums follow the scales).
    let s = unsafe { d.add(nb) };
    (as_blocks(&row[..bb]), d, s)
}

/// Runs the canonical accumulation (see `scalar::Acc4`) of one weight row against `N` activation
/// rows at once, four blocks per step. Each weight block is prepared once (`$prep`: unpacked to
/// bytes) and multiplied into every activation row (`$mul(prepared, act_block)` → the block's
/// integer partial sums), so a batch pays for the unpacking once. `$dw` gives a weight block's f16
/// scale and `$mw` (optional) its minimum; the activations' scales and sums come from the row's f32
/// arrays. Each row's arithmetic is exactly the single-row order, so results do not depend on `N`.
macro_rules! canonical_dot {
    ($N:expr, $w:expr, $parts:expr, $prep:expr, $mul:expr, $dw:expr $(, $mw:expr)?) => {{
        let (w, parts) = ($w, $parts);
        let n = w.len();
        let full = n / 4 * 4;
        let mut acc = [_mm_setzero_ps(); $N];
        #[allow(unused_mut)]
        let mut accm = [_mm_setzero_ps(); $N];
        let mut b = 0;
        while b < full {
            let w4 = &w[b..b + 4];
            let p = [$prep(&w4[0]), $prep(&w4[1]), $prep(&w4[2]), $prep(&w4[3])];
            let dw = f16x4($dw(&w4[0]), $dw(&w4[1]), $dw(&w4[2]), $dw(&w4[3]));
            $( let mw = f16x4($mw(&w4[0]), $mw(&w4[1]), $mw(&w4[2]), $mw(&w4[3])); )?
            for t in 0..$N {
                let (q, d, _s) = parts[t];
                let a4 = &q[b..b + 4];
                let s = totals4($mul(p[0], &a4[0]), $mul(p[1], &a4[1]), $mul(p[2], &a4[2]), $mul(p[3], &a4[3]));
                let da = _mm_loadu_ps(d.add(b));
                acc[t] = _mm_add_ps(acc[t], _mm_mul_ps(_mm_mul_ps(dw, da), s));
                $(
                    let _ = $mw;
                    accm[t] = _mm_add_ps(accm[t], _mm_mul_ps(mw, _mm_loadu_ps(_s.add(b))));
                )?
            }
            b += 4;
        }
        let mut out = [0f32; $N];
        for t in 0..$N {
            let (q, d, _s) = parts[t];
            let mut ad = [0f32; 4];
            #[allow(unused_mut)]
            let mut am = [0f32; 4];
            _mm_storeu_ps(ad.as_mut_ptr(), acc[t]);
            _mm_storeu_ps(am.as_mut_ptr(), accm[t]);
            for b in full..n {
                let x = &w[b];
                let scale = super::f16::to_f32($dw(x)) * d.add(b).read_unaligned();
                ad[b % 4] += scale * total($mul($prep(x), &q[b])) as f32;
                $( am[b % 4] += super::f16::to_f32($mw(x)) * _s.add(b).read_unaligned(); )?
            }
            out[t] = ((ad[0] + ad[1]) + (ad[2] + ad[3])) + ((am[0] + am[1]) + (am[2] + am[3]));
        }
        out
    }};
}

/// A signed weight block ready for `maddubs`: its magnitudes, and itself (for the signs).
#[inline(always)]
unsafe fn signed(x: __m256i) -> (__m256i, __m256i) {
    (_mm256_sign_epi8(x, x), x)
}

/// Integer sums of a prepared signed block (see `signed`) times an activation block.
#[inline(always)]
unsafe fn mul_signed(p: (__m256i, __m256i), y: &[i8; 32]) -> __m256i {
    dot_u8_i8(p.0, _mm256_sign_epi8(load_q8(y), p.1))
}

/// Rows ahead of the one a legacy kernel works on whose lines it asks for (`prefetch_row`).
const PREFETCH_ROWS: usize = 8;

/// A prefetch of every line of elements `from..from + len` of `w` (clamped to `w`): on the Intel
/// Xeon hosts the hardware prefetchers do not run ahead of a kernel's reads (`tools/mlp-probe.c`),
/// so decode, which reads every weight once, waits on each line unless it is asked for early.
#[inline(always)]
pub(super) fn prefetch_row<T>(w: &[T], from: usize, len: usize) {
    let x = &w[w.len().min(from)..w.len().min(from + len)];
    let p = x.as_ptr() as *const i8;
    let mut o = 0;
    while o < std::mem::size_of_val(x) {
        // SAFETY: a prefetch of an address inside `x` (prefetches never fault anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(o)) };
        o += 64;
    }
}

/// Defines `$name::<N>(w, nb, acts, out)`: every weight row in `w` (rows of `nb` blocks) against
/// `N` activation rows, `out[t][r]` = row r · acts[t]. Dispatch, the activation layout and the
/// loop are paid once per call, not per row.
macro_rules! rows_kernel {
    ($name:ident, $WB:ty, $AB:ty, $prep:expr, $mul:expr, $dw:expr $(, $mw:expr)?) => {
        /// # Safety
        /// AVX2 and F16C present; each `out[t]` valid for `w.len() / nb` writes.
        #[target_feature(enable = "avx2,f16c")]
        pub unsafe fn $name<const N: usize>(w: &[$WB], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
            let with_sums = false $( || { let _ = $mw; true } )?;
            let parts: [(&[$AB], *const f32, *const f32); N] = std::array::from_fn(|t| act_parts::<$AB>(a[t], nb, with_sums));
            for (r, row) in w.chunks_exact(nb.max(1)).enumerate() {
                prefetch_row(w, (r + PREFETCH_ROWS) * nb, nb);
                let v = canonical_dot!(N, row, parts, $prep, $mul, $dw $(, $mw)?);
                for t in 0..N {
                    *out[t].add(r) = v[t];
                }
            }
        }
    };
}

rows_kernel!(
    rows_q4_0, BlockQ4_0, BlockQ8_0,
    |x: &BlockQ4_0| signed(_mm256_sub_epi8(unpack_nibbles(&x.qs), _mm256_set1_epi8(8))),
    |p, y: &BlockQ8_0| mul_signed(p, &y.qs),
    |x: &BlockQ4_0| h(x.d)
);
rows_kernel!(
    rows_q4_1, BlockQ4_1, BlockQ8_1,
    |x: &BlockQ4_1| unpack_nibbles(&x.qs),
    |p, y: &BlockQ8_1| dot_u8_i8(p, load_q8(&y.qs)),
    |x: &BlockQ4_1| h(x.d),
    |x: &BlockQ4_1| h(x.m)
);
rows_kernel!(
    rows_q5_0, BlockQ5_0, BlockQ8_0,
    |x: &BlockQ5_0| signed(_mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh)), _mm256_set1_epi8(16))),
    |p, y: &BlockQ8_0| mul_signed(p, &y.qs),
    |x: &BlockQ5_0| h(x.d)
);
rows_kernel!(
    rows_q5_1, BlockQ5_1, BlockQ8_1,
    |x: &BlockQ5_1| _mm256_or_si256(unpack_nibbles(&x.qs), fifth_bits(x.qh)),
    |p, y: &BlockQ8_1| dot_u8_i8(p, load_q8(&y.qs)),
    |x: &BlockQ5_1| h(x.d),
    |x: &BlockQ5_1| h(x.m)
);
rows_kernel!(
    rows_q8_0, BlockQ8_0, BlockQ8_0,
    |x: &BlockQ8_0| signed(load_q8(&x.qs)),
    |p, y: &BlockQ8_0| mul_signed(p, &y.qs),
    |x: &BlockQ8_0| h(x.d)
);

/// 32 4-bit indices (as `unpack_nibbles` gives them) → their KVALUES_IQ4NL levels, as i8.
#[inline(always)]
unsafe fn iq4_lookup(idx: __m256i) -> __m256i {
    let t = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i);
    _mm256_shuffle_epi8(_mm256_set_m128i(t, t), idx)
}

rows_kernel!(
    rows_iq4_nl, BlockIQ4NL, BlockQ8_0,
    |x: &BlockIQ4NL| signed(iq4_lookup(unpack_nibbles(&x.qs))),
    |p, y: &BlockQ8_0| mul_signed(p, &y.qs),
    |x: &BlockIQ4NL| h(x.d)
);

/// Single-row forms (for the tests): `a` is a whole activation row as `quantize_act` lays it out.
macro_rules! one_row {
    ($name:ident, $rows:ident, $WB:ty) => {
        /// # Safety
        /// AVX2 and F16C present.
        #[target_feature(enable = "avx2,f16c")]
        pub unsafe fn $name(w: &[$WB], a: &[u8]) -> f32 {
            let mut v = 0f32;
            $rows::<1>(w, w.len(), [a], [&mut v]);
            v
        }
    };
}
one_row!(dot_q4_0, rows_q4_0, BlockQ4_0);
one_row!(dot_q4_1, rows_q4_1, BlockQ4_1);
one_row!(dot_q5_0, rows_q5_0, BlockQ5_0);
one_row!(dot_q5_1, rows_q5_1, BlockQ5_1);
one_row!(dot_q8_0, rows_q8_0, BlockQ8_0);
one_row!(dot_iq4_nl, rows_iq4_nl, BlockIQ4NL);

// ---- K-quants (super-blocks of 256, Q8_K activations) ----
//
// Each super-block's integer sums are computed exactly in SIMD (maddubs → madd by the sub-block
// scale); the scale unpacking and the float accumulation are the scalar reference's own code
// (`scalar::scales_mins_k4`, `scalar::acc_k_min`, `Acc4`), so results are bit-identical to it.

#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Σ_j m_j · (bsum_2j + bsum_2j+1): the minimums against Q8_K's per-16 sums.
#[inline(always)]
unsafe fn msum_k(m: &[u8; 8], y: &BlockQ8K) -> i32 {
    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
    // pairs of per-16 sums (exact: |sum of 32| ≤ 4064)
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.as_ptr() as *const __m128i));
    let p = _mm_madd_epi16(pairs, mins);
    let s = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Σ over the four 64-element chunks of sc · (q·a): `q[2i]` holds chunk i's 32 low-half values
/// (sub-block 2i), `q[2i+1]` its 32 high-half values (sub-block 2i+1), unsigned < 128.
#[inline(always)]
unsafe fn isum_k32(sc: &[u8; 8], y: &BlockQ8K, q: &[__m256i; 8]) -> i32 {
    let a = y.qs.as_ptr() as *const u8;
    let mut s = _mm256_setzero_si256();
    for i in 0..4 {
        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q[2 * i], load32(a.add(64 * i))), _mm256_set1_epi16(sc[2 * i] as i16));
        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q[2 * i + 1], load32(a.add(64 * i + 32))), _mm256_set1_epi16(sc[2 * i + 1] as i16));
        s = _mm256_add_epi32(s, _mm256_add_epi32(p0, p1));
    }
    total(s)
}

/// Σ_i Σ_lanes scv[i] · (q[i]·a[32i..32i+32]) with q unsigned < 128 and scv the i16 scales of
/// each lane pair: the exact integer sum of the formats with sub-blocks of 16 (Q2_K, Q3_K, Q6_K),
/// where q[i] holds sub-blocks 2i (lanes 0..16) and 2i+1 (lanes 16..32).
#[inline(always)]
unsafe fn isum_k16(q: &[__m256i; 8], scv: &[__m256i; 8], y: &BlockQ8K) -> i32 {
    let a = y.qs.as_ptr() as *const u8;
    let mut s = _mm256_setzero_si256();
    for i in 0..8 {
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(q[i], load32(a.add(32 * i))), scv[i]));
    }
    total(s)
}

/// Sixteen sub-block scales as the eight `scv` vectors of `isum_k16`.
#[inline(always)]
unsafe fn pair_scales(sc: [i16; 16]) -> [__m256i; 8] {
    std::array::from_fn(|i| _mm256_set_m128i(_mm_set1_epi16(sc[2 * i + 1]), _mm_set1_epi16(sc[2 * i])))
}

/// The 2-bit values of a Q2_K/Q3_K `qs` in element order: vector 4n + k is `qs[32n..32n+32]`
/// shifted right by 2k (elements 128n + 32k .. +32).
#[inline(always)]
unsafe fn two_bits(qs: &[u8; 64]) -> [__m256i; 8] {
    std::array::from_fn(|i| {
        let (n, k) = (i / 4, i % 4);
        let q = load32(qs.as_ptr().add(32 * n));
        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * k as i32)), _mm256_set1_epi8(3))
    })
}

/// Σ_j c_j · bsum_j over Q8_K's sixteen per-16 sums (`c` as i16, |c| ≤ 64).
#[inline(always)]
unsafe fn bsum_dot(c: __m256i, y: &BlockQ8K) -> i32 {
    total(_mm256_madd_epi16(c, _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i)))
}

/// Defines `$name::<N>(w, nb, acts, out)` for a K-quant: every weight row in `w` (rows of `nb`
/// super-blocks) against `N` Q8_K activation rows (as `quantize_act` lays them out). Each
/// super-block is unpacked once (`$prep`: quants to bytes, scales decoded) and its exact integer
/// sums are taken against every row (`$add` accumulates one row's block in the scalar
/// reference's float order), so a batch pays for the unpacking once and results do not depend on
/// `N`. `$one(w, a)` is the single-row form (for the tests).
macro_rules! k_rows_kernel {
    ($name:ident, $one:ident, $B:ty, $P:ty, $prep:expr, $add:expr) => {
        /// # Safety
        /// AVX2 and F16C present; each `out[t]` valid for `w.len() / nb` writes.
        #[target_feature(enable = "avx2,f16c")]
        pub unsafe fn $name<const N: usize>(w: &[$B], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
            let bytes = nb * std::mem::size_of::<BlockQ8K>();
            let ys: [&[BlockQ8K]; N] = std::array::from_fn(|t| {
                assert!(a[t].len() >= bytes, "activation row too short: {} < {bytes}", a[t].len());
                as_blocks(&a[t][..bytes])
            });
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
                    *out[t].add(r) = acc[t].sum();
                }
            }
        }

        /// # Safety
        /// AVX2 and F16C present.
        #[target_feature(enable = "avx2,f16c")]
        pub unsafe fn $one(w: &[$B], a: &[BlockQ8K]) -> f32 {
            let mut v = 0f32;
            $name::<1>(w, w.len(), [blocks_as_bytes(a)], [&mut v]);
            v
        }
    };
}

// Q4_K: (quants, sc, m)
k_rows_kernel!(
    rows_q4_k_each, dot_q4_k, BlockQ4K, ([__m256i; 8], [u8; 8], [u8; 8]),
    |x: &BlockQ4K| {
        let (sc, m) = scalar::scales_mins_k4(&x.scales);
        let m4 = _mm256_set1_epi8(0x0f);
        let q: [__m256i; 8] = std::array::from_fn(|c| {
            let v = load32(x.qs.as_ptr().add(32 * (c / 2)));
            if c % 2 == 0 { _mm256_and_si256(v, m4) } else { _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) }
        });
        (q, sc, m)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ4K, p: &([__m256i; 8], [u8; 8], [u8; 8]), y: &BlockQ8K| {
        let isum = isum_k32(&p.1, y, &p.0);
        scalar::acc_k_min(acc, b, x.d, x.dmin, y, isum, msum_k(&p.2, y));
    }
);

// Q5_K: as Q4_K with the fifth bits: bit 2i of qh[l] for chunk i's low half, 2i+1 for its high half
k_rows_kernel!(
    rows_q5_k, dot_q5_k, BlockQ5K, ([__m256i; 8], [u8; 8], [u8; 8]),
    |x: &BlockQ5K| {
        let (sc, m) = scalar::scales_mins_k4(&x.scales);
        let (m4, b4) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
        let qh = load32(x.qh.as_ptr());
        let q: [__m256i; 8] = std::array::from_fn(|c| {
            let v = load32(x.qs.as_ptr().add(32 * (c / 2)));
            let bit = _mm256_set1_epi8((1u8 << c) as i8);
            let h = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), b4);
            let v = if c % 2 == 0 { _mm256_and_si256(v, m4) } else { _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) };
            _mm256_or_si256(v, h)
        });
        (q, sc, m)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ5K, p: &([__m256i; 8], [u8; 8], [u8; 8]), y: &BlockQ8K| {
        let isum = isum_k32(&p.1, y, &p.0);
        scalar::acc_k_min(acc, b, x.d, x.dmin, y, isum, msum_k(&p.2, y));
    }
);

// Q6_K: (unsigned 6-bit quants, pair scales, scales as i16 for the −32 offset through the sums)
k_rows_kernel!(
    rows_q6_k_each, dot_q6_k, BlockQ6K, ([__m256i; 8], [__m256i; 8], __m256i),
    |x: &BlockQ6K| {
        let (m4, m2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x03));
        let q: [__m256i; 8] = std::array::from_fn(|i| {
            // vector 4n + k: elements 128n + 32k .. +32
            let (n, k) = (i / 4, i % 4);
            let ql = load32(x.ql.as_ptr().add(64 * n + 32 * (k % 2)));
            let qh = load32(x.qh.as_ptr().add(32 * n));
            let lo = if k < 2 { _mm256_and_si256(ql, m4) } else { _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4) };
            let hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32)), m2);
            _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4))
        });
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr() as *const __m128i));
        (q, pair_scales(x.scales.map(|s| s as i16)), sc16)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ6K, p: &([__m256i; 8], [__m256i; 8], __m256i), y: &BlockQ8K| {
        let isum = isum_k16(&p.0, &p.1, y) - 32 * bsum_dot(p.2, y);
        acc.add(b, super::f16::le(x.d) * y.d(), isum);
    }
);

// Q2_K: (2-bit quants, pair scales, minimums as i16)
k_rows_kernel!(
    rows_q2_k, dot_q2_k, BlockQ2K, ([__m256i; 8], [__m256i; 8], __m256i),
    |x: &BlockQ2K| {
        let sc8 = _mm_loadu_si128(x.scales.as_ptr() as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0f)));
        (two_bits(&x.qs), pair_scales(x.scales.map(|s| (s & 15) as i16)), mins)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ2K, p: &([__m256i; 8], [__m256i; 8], __m256i), y: &BlockQ8K| {
        scalar::acc_k_min(acc, b, x.d, x.dmin, y, isum_k16(&p.0, &p.1, y), bsum_dot(p.2, y));
    }
);

// Q3_K: u = q + 4·h in 0..8 (the value is u − 4, the −4 taken through the per-16 sums)
k_rows_kernel!(
    rows_q3_k, dot_q3_k, BlockQ3K, ([__m256i; 8], [__m256i; 8], __m256i),
    |x: &BlockQ3K| {
        let s8 = scalar::scales_q3_k(&x.scales);
        let hm = load32(x.hmask.as_ptr());
        let low = two_bits(&x.qs);
        let q: [__m256i; 8] = std::array::from_fn(|i| {
            let bit = _mm256_set1_epi8((1u8 << i) as i8); // bit 4n + k of hmask for vector 4n + k
            let h = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), _mm256_set1_epi8(4));
            _mm256_or_si256(low[i], h)
        });
        let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(s8.as_ptr() as *const __m128i));
        (q, pair_scales(s8.map(|s| s as i16)), sc16)
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockQ3K, p: &([__m256i; 8], [__m256i; 8], __m256i), y: &BlockQ8K| {
        let isum = isum_k16(&p.0, &p.1, y) - 4 * bsum_dot(p.2, y);
        acc.add(b, super::f16::le(x.d) * y.d(), isum);
    }
);

// IQ4_XS: (|levels|, levels (for the signs), sub-block scales ls − 32 as i16 vectors)
k_rows_kernel!(
    rows_iq4_xs, dot_iq4_xs, BlockIQ4XS, ([__m256i; 8], [__m256i; 8], [__m256i; 8]),
    |x: &BlockIQ4XS| {
        let sc = scalar::scales_iq4_xs(x);
        let q: [__m256i; 8] = std::array::from_fn(|j| iq4_lookup(unpack_nibbles(&*(x.qs.as_ptr().add(16 * j) as *const [u8; 16]))));
        (q.map(|v| _mm256_sign_epi8(v, v)), q, sc.map(|c| _mm256_set1_epi16(c as i16)))
    },
    |acc: &mut scalar::Acc4, b: usize, x: &BlockIQ4XS, p: &([__m256i; 8], [__m256i; 8], [__m256i; 8]), y: &BlockQ8K| {
        let a = y.qs.as_ptr() as *const u8;
        let mut s = _mm256_setzero_si256();
        for j in 0..8 {
            let pr = _mm256_maddubs_epi16(p.0[j], _mm256_sign_epi8(load32(a.add(32 * j)), p.1[j]));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(pr, p.2[j]));
        }
        acc.add(b, super::f16::le(x.d) * y.d(), total(s));
    }
);

// ---- Q4_K and Q6_K in 8-row tiles ----
//
// Eight weight rows at once, one row per 32-bit lane: the rows' quants are transposed in registers
// (4 bytes of a row per lane), `maddubs` multiplies them by 4 activation bytes broadcast to every
// lane (two exact i16 sums per lane, added in i16 while they cannot overflow), and `madd` by the
// rows' sub-block scales (each i16 pair of a lane carries its row's scale twice) gives each row's
// exact i32 sum: no horizontal sums, and each lane's float arithmetic is the scalar reference's
// (`Acc4` lanes as four vectors), so results are bit-identical to it.

/// Q4_K rows × `N` Q8_K activation rows (8-row tiles, then row by row; the tiles are faster even
/// for one activation row).
///
/// # Safety
/// AVX2 and F16C present; each `out[t]` valid for `w.len() / nb` writes.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn rows_q4_k<const N: usize>(w: &[BlockQ4K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    let (mut w, mut out) = (w, out);
    if nb > 0 {
        let ys = q8k_rows(a, nb);
        while w.len() >= 8 * nb {
            tile8_q4_k::<N>(&w[..8 * nb], nb, &ys, out);
            w = &w[8 * nb..];
            out = out.map(|o| o.wrapping_add(8));
        }
    }
    rows_q4_k_each::<N>(w, nb, a, out)
}

/// Q6_K rows × `N` Q8_K activation rows (8-row tiles, then row by row).
///
/// # Safety
/// As `rows_q4_k`.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn rows_q6_k<const N: usize>(w: &[BlockQ6K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    let (mut w, mut out) = (w, out);
    if nb > 0 {
        let ys = q8k_rows(a, nb);
        while w.len() >= 8 * nb {
            tile8_q6_k::<N>(&w[..8 * nb], nb, &ys, out);
            w = &w[8 * nb..];
            out = out.map(|o| o.wrapping_add(8));
        }
    }
    rows_q6_k_each::<N>(w, nb, a, out)
}

/// Q8_K's sixteen per-16 sums added in pairs (the 8 values Q4_K's minimums multiply), as four i32
/// each holding two adjacent i16 pair sums: ready to splat against minimums packed the same way.
#[inline(always)]
pub(super) unsafe fn bsum_pairs(y: &BlockQ8K) -> [i32; 4] {
    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
    // exact: |sum of 32| ≤ 4064
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs));
    let mut pv = [0i32; 4];
    _mm_storeu_si128(pv.as_mut_ptr() as *mut __m128i, pairs);
    pv
}

/// Eight rows' 8 dwords (vector r: row r) transposed: vector k holds dword k of rows 0..8.
#[inline(always)]
unsafe fn transpose_8x8(z: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (z[2 * (i / 2)], z[2 * (i / 2) + 1]);
        if i % 2 == 0 { _mm256_unpacklo_epi32(a, b) } else { _mm256_unpackhi_epi32(a, b) }
    });
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (g, k) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + k / 2], t[4 * g + 2 + k / 2]);
        if k % 2 == 0 { _mm256_unpacklo_epi64(a, b) } else { _mm256_unpackhi_epi64(a, b) }
    });
    // u[4g + k]: dword k (low 128 bits) and k + 4 (high) of rows 4g..4g+4
    std::array::from_fn(|k| {
        if k < 4 { _mm256_permute2x128_si256::<0x20>(u[k], u[4 + k]) } else { _mm256_permute2x128_si256::<0x31>(u[k - 4], u[k]) }
    })
}

/// 32 bytes at `field(row) + off` of block `b` of each of 8 rows, transposed.
#[inline(always)]
unsafe fn rows_dwords8<B>(w: &[B], nb: usize, b: usize, field: impl Fn(&B) -> *const u8, off: usize) -> [__m256i; 8] {
    transpose_8x8(std::array::from_fn(|r| load32(field(&w[r * nb + b]).add(off))))
}

/// An i32 lane's value (|v| < 2^15) as the same i16 twice, for `madd`.
#[inline(always)]
unsafe fn twice16(v: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32::<16>(v))
}

#[inline(always)]
unsafe fn tile8_q4_k<const N: usize>(w: &[BlockQ4K], nb: usize, ys: &[&[BlockQ8K]; N], out: [*mut f32; N]) {
    let m4 = _mm256_set1_epi8(0x0f);
    let lo8 = _mm256_set1_epi32(0xff);
    let negz = _mm256_set1_ps(-0.0);
    let mut accd = [[_mm256_setzero_ps(); 4]; N];
    let mut accm = [[_mm256_setzero_ps(); 4]; N];
    for b in 0..nb {
        // per row: sc0..3, sc4..7, m0..3, m4..7 as bytes of four dwords (ggml's unpacking)
        let mut u = [[0u32; 8]; 4];
        let (mut d, mut dmin) = ([0u16; 8], [0u16; 8]);
        for r in 0..8 {
            let x = &w[r * nb + b];
            let s = &x.scales;
            let v = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
            let (u0, u1, u2) = (v(0), v(1), v(2));
            u[0][r] = u0 & 0x3f3f_3f3f;
            u[1][r] = (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4);
            u[2][r] = u1 & 0x3f3f_3f3f;
            u[3][r] = ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4);
            (d[r], dmin[r]) = (h(x.d), h(x.dmin));
        }
        let uv: [__m256i; 4] = std::array::from_fn(|q| _mm256_loadu_si256(u[q].as_ptr() as *const __m256i));
        let sc: [__m256i; 8] = std::array::from_fn(|j| twice16(_mm256_and_si256(_mm256_srl_epi32(uv[j / 4], _mm_cvtsi32_si128(8 * (j % 4) as i32)), lo8)));
        let mp: [__m256i; 4] = std::array::from_fn(|k| {
            let v = _mm256_srl_epi32(uv[2 + k / 2], _mm_cvtsi32_si128(16 * (k % 2) as i32));
            _mm256_or_si256(_mm256_and_si256(v, lo8), _mm256_slli_epi32::<8>(_mm256_and_si256(v, _mm256_set1_epi32(0xff00))))
        });
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
        let dm = _mm256_cvtph_ps(_mm_loadu_si128(dmin.as_ptr() as *const __m128i));
        let mut isum = [_mm256_setzero_si256(); N];
        for i in 0..4 {
            let q = rows_dwords8(w, nb, b, |x: &BlockQ4K| x.qs.as_ptr(), 32 * i);
            let ql: [__m256i; 8] = std::array::from_fn(|k| _mm256_and_si256(q[k], m4));
            let qh: [__m256i; 8] = std::array::from_fn(|k| _mm256_and_si256(_mm256_srli_epi16::<4>(q[k]), m4));
            for t in 0..N {
                let a = ys[t][b].qs.as_ptr().add(64 * i) as *const i32;
                // i16 sums of 8 groups: at most 8·2·15·128 < 2^15
                let (mut sl, mut sh) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for k in 0..8 {
                    sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(ql[k], _mm256_set1_epi32(a.add(k).read_unaligned())));
                    sh = _mm256_add_epi16(sh, _mm256_maddubs_epi16(qh[k], _mm256_set1_epi32(a.add(8 + k).read_unaligned())));
                }
                isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_madd_epi16(sl, sc[2 * i]), _mm256_madd_epi16(sh, sc[2 * i + 1])));
            }
        }
        for t in 0..N {
            let y = &ys[t][b];
            let pv = bsum_pairs(y);
            let mut msum = _mm256_madd_epi16(mp[0], _mm256_set1_epi32(pv[0]));
            for k in 1..4 {
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[k], _mm256_set1_epi32(pv[k])));
            }
            let da = _mm256_set1_ps(y.d());
            let l = b % 4;
            accd[t][l] = _mm256_add_ps(accd[t][l], _mm256_mul_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum[t])));
            accm[t][l] = _mm256_add_ps(accm[t][l], _mm256_xor_ps(_mm256_mul_ps(_mm256_mul_ps(dm, da), _mm256_cvtepi32_ps(msum)), negz));
        }
    }
    for t in 0..N {
        let [a0, a1, a2, a3] = accd[t];
        let [m0, m1, m2, m3] = accm[t];
        let d = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        let m = _mm256_add_ps(_mm256_add_ps(m0, m1), _mm256_add_ps(m2, m3));
        _mm256_storeu_ps(out[t], _mm256_add_ps(d, m));
    }
}

#[inline(always)]
unsafe fn tile8_q6_k<const N: usize>(w: &[BlockQ6K], nb: usize, ys: &[&[BlockQ8K]; N], out: [*mut f32; N]) {
    let (m4, m2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x03));
    let mut accd = [[_mm256_setzero_ps(); 4]; N];
    for b in 0..nb {
        let mut u = [[0u32; 8]; 4];
        let mut d = [0u16; 8];
        for r in 0..8 {
            let x = &w[r * nb + b];
            for (q, uq) in u.iter_mut().take(4).enumerate() {
                uq[r] = u32::from_le_bytes([x.scales[4 * q] as u8, x.scales[4 * q + 1] as u8, x.scales[4 * q + 2] as u8, x.scales[4 * q + 3] as u8]);
            }
            d[r] = h(x.d);
        }
        let uv: [__m256i; 4] = std::array::from_fn(|q| _mm256_loadu_si256(u[q].as_ptr() as *const __m256i));
        // scale j of each row, sign-extended
        let sc: [__m256i; 16] = std::array::from_fn(|j| _mm256_srai_epi32::<24>(_mm256_sll_epi32(uv[j / 4], _mm_cvtsi32_si128(24 - 8 * (j % 4) as i32))));
        let sp: [__m256i; 8] = std::array::from_fn(|k| _mm256_or_si256(_mm256_and_si256(sc[2 * k], _mm256_set1_epi32(0xffff)), _mm256_slli_epi32::<16>(sc[2 * k + 1])));
        let sc2: [__m256i; 16] = sc.map(|v| twice16(v));
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(d.as_ptr() as *const __m128i));
        let mut isum = [_mm256_setzero_si256(); N];
        for n in 0..2 {
            let qh = rows_dwords8(w, nb, b, |x: &BlockQ6K| x.qh.as_ptr(), 32 * n);
            for half in 0..2 {
                let ql = rows_dwords8(w, nb, b, |x: &BlockQ6K| x.ql.as_ptr(), 64 * n + 32 * half);
                for k in [half, half + 2] {
                    let v: [__m256i; 8] = std::array::from_fn(|g| {
                        let lo = if k < 2 { _mm256_and_si256(ql[g], m4) } else { _mm256_and_si256(_mm256_srli_epi16::<4>(ql[g]), m4) };
                        let hb = _mm256_and_si256(_mm256_srl_epi16(qh[g], _mm_cvtsi32_si128(2 * k as i32)), m2);
                        _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hb))
                    });
                    let j0 = 8 * n + 2 * k;
                    for t in 0..N {
                        let a = ys[t][b].qs.as_ptr().add(128 * n + 32 * k) as *const i32;
                        let p = |g: usize| _mm256_maddubs_epi16(v[g], _mm256_set1_epi32(a.add(g).read_unaligned()));
                        // i16 sums of two groups: at most 2·2·63·128 < 2^15
                        let s = [
                            _mm256_madd_epi16(_mm256_add_epi16(p(0), p(1)), sc2[j0]),
                            _mm256_madd_epi16(_mm256_add_epi16(p(2), p(3)), sc2[j0]),
                            _mm256_madd_epi16(_mm256_add_epi16(p(4), p(5)), sc2[j0 + 1]),
                            _mm256_madd_epi16(_mm256_add_epi16(p(6), p(7)), sc2[j0 + 1]),
                        ];
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), _mm256_add_epi32(s[2], s[3])));
                    }
                }
            }
        }
        for t in 0..N {
            let y = &ys[t][b];
            let bs = y.bsums.as_ptr() as *const i32;
            let mut off = _mm256_madd_epi16(sp[0], _mm256_set1_epi32(bs.read_unaligned()));
            for (k, &spk) in sp.iter().enumerate().skip(1) {
                off = _mm256_add_epi32(off, _mm256_madd_epi16(spk, _mm256_set1_epi32(bs.add(k).read_unaligned())));
            }
            let total = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<5>(off));
            let l = b % 4;
            accd[t][l] = _mm256_add_ps(accd[t][l], _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y.d())), _mm256_cvtepi32_ps(total)));
        }
    }
    let z = _mm256_setzero_ps();
    let zero = _mm256_add_ps(_mm256_add_ps(z, z), _mm256_add_ps(z, z));
    for t in 0..N {
        let [a0, a1, a2, a3] = accd[t];
        let d = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        _mm256_storeu_ps(out[t], _mm256_add_ps(d, zero));
    }
}

/// Eight bf16 values (16 bytes at `p`) as f32 lanes.
#[inline(always)]
unsafe fn bf16x8(p: *const u8) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)), 16))
}

/// `scalar::dot_bf16`, bit for bit: lanes 0..32 are four vectors of 8, the products added with a
/// separate multiply and add (no FMA), the tail and the tree as the reference does them.
///
/// # Safety
/// The CPU must have AVX2 and F16C (`available()`).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n);
    let full = n / scalar::BF16_LANES * scalar::BF16_LANES;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut c = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < full {
        for (k, c) in c.iter_mut().enumerate() {
            let o = 2 * (i + 8 * k);
            *c = _mm256_add_ps(*c, _mm256_mul_ps(bf16x8(wp.add(o)), bf16x8(ap.add(o))));
        }
        i += scalar::BF16_LANES;
    }
    let mut lanes = [0f32; scalar::BF16_LANES];
    for (k, c) in c.iter().enumerate() {
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * k), *c);
    }
    let bf = |b: &[u8], i: usize| super::bf16::to_f32(u16::from_le_bytes([b[2 * i], b[2 * i + 1]]));
    for i in full..n {
        lanes[i % scalar::BF16_LANES] += bf(w, i) * bf(a, i);
    }
    scalar::reduce_bf16_lanes(lanes)
}

/// One block of 32 activations → (max |x|, the 32 rounded `x · id` as i8, their sum), as the
/// scalar quantizers compute them: NaN lanes are skipped by the max and quantize to 0, rounding
/// is to nearest even, and the i8 conversion saturates.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn quantize_block(xb: &[f32], q: &mut [i8; 32]) -> (f32, i32) {
    assert!(xb.len() >= 32);
    let p = xb.as_ptr();
    let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    // max(|x|, m) returns m when |x| is NaN, as f32::max does
    let m = v.iter().fold(_mm256_setzero_ps(), |m, &x| _mm256_max_ps(_mm256_and_ps(x, abs), m));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let mut qi = [_mm256_setzero_si256(); 4];
    for (o, &x) in qi.iter_mut().zip(&v) {
        let y = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, id));
        let ord = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
        *o = _mm256_and_si256(_mm256_cvtps_epi32(y), ord);
    }
    let w = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
    let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, w);
    let s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    (amax, _mm_cvtsi128_si32(s))
}

/// `scalar::quantize_q8_0`, bit for bit.
///
/// # Safety
/// AVX2 and F16C available.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (amax, _) = quantize_block(xb, &mut b.qs);
        b.d = f16::to_le(amax / 127.0);
    }
}

/// `scalar::quantize_q8_1`, bit for bit.
///
/// # Safety
/// AVX2 and F16C available.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (amax, sum) = quantize_block(xb, &mut b.qs);
        let d = amax / 127.0;
        b.d = f16::to_le(d);
        b.s = f16::to_le(d * sum as f32);
    }
}

/// `scalar::quantize_q8_k`, bit for bit: NaN lanes are skipped by the max and quantize to 0, the
/// first element of largest magnitude gives the scale's sign, rounding is to nearest even and
/// capped at 127.
///
/// # Safety
/// AVX2 and F16C available.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let p = xb.as_ptr();
        let v: [__m256; 32] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(8 * i)));
        // max(|x|, m) returns m when |x| is NaN, as the scalar comparison skips it
        let m = v.iter().fold(_mm256_setzero_ps(), |m, &x| _mm256_max_ps(_mm256_and_ps(x, abs), m));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let am = _mm256_set1_ps(amax);
        let first = (0..32)
            .find_map(|i| {
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(v[i], abs), am));
                (hit != 0).then(|| 8 * i + hit.trailing_zeros() as usize)
            })
            .unwrap_or(0);
        let iscale = -127.0 / xb[first];
        let is = _mm256_set1_ps(iscale);
        let cap = _mm256_set1_epi32(127);
        let qi: [__m256i; 32] = std::array::from_fn(|i| {
            let y = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(is, v[i]));
            let ord = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
            _mm256_min_epi32(_mm256_and_si256(_mm256_cvtps_epi32(y), ord), cap)
        });
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for c in 0..8 {
            let w = _mm256_packs_epi16(_mm256_packs_epi32(qi[4 * c], qi[4 * c + 1]), _mm256_packs_epi32(qi[4 * c + 2], qi[4 * c + 3]));
            _mm256_storeu_si256(b.qs.as_mut_ptr().add(32 * c) as *mut __m256i, _mm256_permutevar8x32_epi32(w, order));
        }
        // per-16 sums: vectors 2j and 2j+1 are elements 16j .. 16j+16
        let sums: [__m256i; 16] = std::array::from_fn(|j| _mm256_add_epi32(qi[2 * j], qi[2 * j + 1]));
        for g in 0..4 {
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[4 * g], sums[4 * g + 1]), _mm256_hadd_epi32(sums[4 * g + 2], sums[4 * g + 3]));
            let t = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let t16 = _mm_packs_epi32(t, t);
            _mm_storel_epi64(b.bsums.as_mut_ptr().add(4 * g) as *mut __m128i, t16);
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}
