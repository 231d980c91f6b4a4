//! AVX-512 (F + BW + DQ + VL + VNNI) kernels for the K-quants of a Q4_K_M file (Q4_K, Q6_K), chosen
//! at run time ahead of the AVX2 ones (`HEARTH_NO_AVX512=1` turns them off, to compare).
//!
//! Two shapes, both exact in integers and bit-identical to the scalar reference:
//! - 16-row tiles (`tile16_*`): 16 weight rows at once, one row per 32-bit lane. The rows' quants
//!   are transposed in registers (4 bytes of each row per lane), each `vpdpbusd` multiplies them by
//!   4 activation bytes broadcast to every lane, and a sub-block's sums are scaled by the rows'
//!   scales with `vpmulld`: no horizontal sums, and each lane's float arithmetic is the reference's
//!   `Acc4` order. Used for batches (Q6_K from 4 activation rows, Q4_K from 1), where unpacking a
//!   tile is shared by the tokens.
//! - Row by row (the rest): a super-block's 256 quants in four 512-bit vectors, `vpdpbusd` sums of
//!   4 products packed to i16 and scaled in one `vpmaddwd` (6 multiplies per super-block); four
//!   super-blocks' totals are gathered into one vector and scaled in the order of `scalar::Acc4`
//!   (block b into lane b mod 4).

use super::avx2::{f16x4, h};
use super::*;
use std::arch::x86_64::*;
use std::sync::OnceLock;

pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("HEARTH_NO_AVX512").is_none()
            && super::avx2::available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// The 8 scales and 8 minimums of a Q4_K/Q5_K super-block (`scalar::scales_mins_k4`) as 16 i16
/// lanes: sc0..sc7, m0..m7 (ggml's 32-bit unpacking).
#[inline(always)]
unsafe fn scales_mins_16(s: &[u8; 12]) -> __m256i {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc_lo = u0 & K1;
    let sc_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    let m_lo = u1 & K1;
    let m_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    _mm256_cvtepu8_epi16(_mm_setr_epi32(sc_lo as i32, sc_hi as i32, m_lo as i32, m_hi as i32))
}

/// `vpermw` indices: 512-bit lane i takes 16-bit lane `base + i / run` of the source.
#[inline(always)]
unsafe fn spread(base: usize, run: usize) -> __m512i {
    let idx: [i16; 32] = std::array::from_fn(|i| (base + i / run) as i16);
    _mm512_loadu_si512(idx.as_ptr() as *const _)
}

/// A 512-bit vector's eight 64-bit halves folded to 256 bits (exact i32 adds).
#[inline(always)]
unsafe fn fold(s: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s))
}

#[inline(always)]
unsafe fn load64(p: *const u8) -> __m512i {
    _mm512_loadu_si512(p as *const _)
}

#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// A super-block unpacked once for every activation row it meets: 4 vectors of 64 unsigned
/// quants in element order, the sub-block scales laid out for `block_sums`' packed sums, and
/// what the per-16 sums of the activations are multiplied by (`bs`: Q4_K's minimums per pair of
/// 16, Q6_K's −32·scale).
struct Prepared {
    q: [__m512i; 4],
    sc: [__m512i; 2],
    bs: __m256i,
}

/// One prepared super-block · one Q8_K block: (Σ sc·q·a as 8 partial i32 sums, Σ bs·bsums as 8
/// partial sums). For Q6_K the two are one sum (`bs` is −32·scale); for Q4_K the second is the
/// minimums' term. `vpdpbusd` sums each 4 products exactly in i32 (|sum| ≤ 4·63·128 < 2^15), two
/// such vectors are packed to i16 (no saturation can occur) and multiplied by their sub-blocks'
/// scales in `vpmaddwd`: 6 multiplies per super-block instead of 8 for `maddubs` + `madd`.
#[inline(always)]
unsafe fn block_sums(p: &Prepared, y: &BlockQ8K) -> (__m256i, __m256i) {
    let a = y.qs.as_ptr() as *const u8;
    let z = _mm512_setzero_si512();
    let v: [__m512i; 4] = std::array::from_fn(|c| _mm512_dpbusd_epi32(z, p.q[c], load64(a.add(64 * c))));
    let s = _mm512_madd_epi16(_mm512_packs_epi32(v[0], v[1]), p.sc[0]);
    let s = _mm512_dpwssd_epi32(s, _mm512_packs_epi32(v[2], v[3]), p.sc[1]);
    (fold(s), _mm256_madd_epi16(load32(y.bsums.as_ptr() as *const u8), p.bs))
}

/// `vpermw` indices for the scales of two packed `vpdpbusd` vectors (`block_sums`): in 128-bit
/// lane k, i16 lanes 0..4 come from lanes 4k..4k+4 of the first vector and 4..8 from the second.
/// `sub(v, l)` names the scale (a 16-bit lane of the source) of lane l of vector v.
#[inline(always)]
unsafe fn packed_scales(sub: impl Fn(usize, usize) -> usize) -> __m512i {
    let idx: [i16; 32] = std::array::from_fn(|i| {
        let (k, j) = (i / 8, i % 8);
        sub(j / 4, 4 * k + j % 4) as i16
    });
    _mm512_loadu_si512(idx.as_ptr() as *const _)
}

#[inline(always)]
unsafe fn prep_q4_k(x: &BlockQ4K, idx: &[__m512i; 2], mins_idx: __m256i) -> Prepared {
    let m4 = _mm512_set1_epi8(0x0f);
    let v0 = load64(x.qs.as_ptr());
    let v1 = load64(x.qs.as_ptr().add(64));
    // per 64 elements, 32 bytes: low nibbles elements 0..32, high nibbles 32..64
    let (lo0, hi0) = (_mm512_and_si512(v0, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v0), m4));
    let (lo1, hi1) = (_mm512_and_si512(v1, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(v1), m4));
    let q = [
        _mm512_shuffle_i64x2::<0b01_00_01_00>(lo0, hi0),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(lo0, hi0),
        _mm512_shuffle_i64x2::<0b01_00_01_00>(lo1, hi1),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(lo1, hi1),
    ];
    let sm = scales_mins_16(&x.scales);
    let sm512 = _mm512_castsi256_si512(sm);
    Prepared {
        q,
        sc: std::array::from_fn(|c| _mm512_permutexvar_epi16(idx[c], sm512)),
        bs: _mm256_permutexvar_epi16(mins_idx, sm),
    }
}

#[inline(always)]
unsafe fn prep_q6_k(x: &BlockQ6K, idx: &[__m512i; 2]) -> Prepared {
    let (m4, m3) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x03));
    // 16-bit shift counts: 0 / 2 for elements 0..64 of each 128 (qh bits 0-1, 2-3), 4 / 6 after
    let c01 = _mm512_inserti64x4::<1>(_mm512_set1_epi16(0), _mm256_set1_epi16(2));
    let c23 = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(6));
    let mut q = [_mm512_setzero_si512(); 4];
    for n in 0..2 {
        let l = load64(x.ql.as_ptr().add(64 * n));
        let hb = _mm512_broadcast_i64x4(load32(x.qh.as_ptr().add(32 * n)));
        let h01 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(hb, c01), m3));
        let h23 = _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(hb, c23), m3));
        q[2 * n] = _mm512_or_si512(_mm512_and_si512(l, m4), h01);
        q[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l), m4), h23);
    }
    let s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr() as *const __m128i));
    let s512 = _mm512_castsi256_si512(s16);
    Prepared {
        q,
        sc: std::array::from_fn(|c| _mm512_permutexvar_epi16(idx[c], s512)),
        bs: _mm256_slli_epi16::<5>(_mm256_sub_epi16(_mm256_setzero_si256(), s16)),
    }
}

/// Runs one format's rows: every weight row of `w` (rows of `nb` super-blocks) against `N`
/// activation rows, four super-blocks per step (see the module doc). `$prep` unpacks a block,
/// `$d` and `$dmin` give its f16 scales (`$dmin` None: no minimum term).
macro_rules! k512_rows {
    ($w:expr, $nb:expr, $a:expr, $out:expr, $N:expr, $prep:expr, $dmin:expr) => {{
        let (w, nb, out) = ($w, $nb, $out);
        let ys = q8k_rows::<$N>($a, nb);
        let full = nb / 4 * 4;
        let has_min = $dmin.is_some();
        let neg = _mm256_set1_ps(-0.0);
        for (r, row) in w.chunks_exact(nb.max(1)).enumerate() {
            // the lines of the row four on, asked for early (see `avx2::prefetch_row`)
            super::avx2::prefetch_row(w, (r + 4) * nb, nb);
            // lanes 0..4: token 2p's Acc4 lanes, 4..8: token 2p+1's (an odd last token in lanes 0..4
            // of the next pair)
            let mut accd = [_mm256_setzero_ps(); 4];
            let mut accm = [_mm256_setzero_ps(); 4];
            let mut g = 0;
            while g < full {
                // integer sums of the four blocks against every token (Q6_K: its offset included)
                let mut is = [[_mm256_setzero_si256(); 4]; $N];
                let mut ms = [[_mm256_setzero_si256(); 4]; $N];
                for j in 0..4 {
                    let p = $prep(&row[g + j]);
                    for t in 0..$N {
                        let (i, m) = block_sums(&p, &ys[t][g + j]);
                        if has_min {
                            is[t][j] = i;
                            ms[t][j] = m;
                        } else {
                            is[t][j] = _mm256_add_epi32(i, m);
                        }
                    }
                }
                let x = &row[g..g + 4];
                let dw = f16x4(h(x[0].d), h(x[1].d), h(x[2].d), h(x[3].d));
                let dw = _mm256_set_m128(dw, dw);
                let dm = $dmin.map(|f| {
                    let v = f16x4(h(f(&x[0])), h(f(&x[1])), h(f(&x[2])), h(f(&x[3])));
                    _mm256_set_m128(v, v)
                });
                // two tokens at a time: one 8-way reduction and one set of float ops for both
                let mut t = 0;
                while t < $N {
                    let u = if t + 1 < $N { t + 1 } else { t };
                    let (y0, y1) = (&ys[t][g..g + 4], &ys[u][g..g + 4]);
                    let da = _mm256_setr_ps(y0[0].d(), y0[1].d(), y0[2].d(), y0[3].d(), y1[0].d(), y1[1].d(), y1[2].d(), y1[3].d());
                    let s = totals8([is[t][0], is[t][1], is[t][2], is[t][3], is[u][0], is[u][1], is[u][2], is[u][3]]);
                    accd[t / 2] = _mm256_add_ps(accd[t / 2], _mm256_mul_ps(_mm256_mul_ps(dw, da), s));
                    if let Some(dm) = dm {
                        let m = totals8([ms[t][0], ms[t][1], ms[t][2], ms[t][3], ms[u][0], ms[u][1], ms[u][2], ms[u][3]]);
                        // scalar: m += -((dmin·da)·msum)
                        accm[t / 2] = _mm256_add_ps(accm[t / 2], _mm256_xor_ps(_mm256_mul_ps(_mm256_mul_ps(dm, da), m), neg));
                    }
                    t += 2;
                }
                g += 4;
            }
            for t in 0..$N {
                let mut ad = [0f32; 8];
                let mut am = [0f32; 8];
                _mm256_storeu_ps(ad.as_mut_ptr(), accd[t / 2]);
                _mm256_storeu_ps(am.as_mut_ptr(), accm[t / 2]);
                let (ad, am) = (&mut ad[4 * (t % 2)..4 * (t % 2) + 4], &mut am[4 * (t % 2)..4 * (t % 2) + 4]);
                for b in full..nb {
                    let x = &row[b];
                    let y = &ys[t][b];
                    let (i, m) = block_sums(&$prep(x), y);
                    let da = y.d();
                    match $dmin {
                        Some(f) => {
                            ad[b % 4] += (super::f16::le(x.d) * da) * total(i) as f32;
                            am[b % 4] += -((super::f16::le(f(x)) * da) * total(m) as f32);
                        }
                        None => ad[b % 4] += (super::f16::le(x.d) * da) * total(_mm256_add_epi32(i, m)) as f32,
                    }
                }
                *out[t].add(r) = ((ad[0] + ad[1]) + (ad[2] + ad[3])) + ((am[0] + am[1]) + (am[2] + am[3]));
            }
        }
    }};
}

/// The totals of eight vectors' i32 lanes (exact), as f32: lanes 0..4 those of v[0..4], 4..8
/// those of v[4..8].
#[inline(always)]
unsafe fn totals8(v: [__m256i; 8]) -> __m256 {
    let (h01, h23) = (_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let (h45, h67) = (_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    let (x, y) = (_mm256_hadd_epi32(h01, h23), _mm256_hadd_epi32(h45, h67));
    let s = _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(x, y), _mm256_permute2x128_si256::<0x31>(x, y));
    _mm256_cvtepi32_ps(s)
}

#[inline(always)]
unsafe fn total(p: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Q4_K rows × `N` Q8_K activation rows: `*out[t].add(r) = W[r] · a[t]`.
///
/// # Safety
/// `available()`; each `out[t]` valid for `w.len() / nb` writes.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,f16c")]
pub unsafe fn rows_q4_k<const N: usize>(w: &[BlockQ4K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    // q[c] holds sub-blocks 2c (dpbusd lanes 0..8) and 2c+1 (8..16); scale vectors for the
    // pairs (q0, q1) and (q2, q3). The minimums pair up with the per-16 sums (lanes 2j, 2j+1
    // take m_j, which sits at lane 8 + j of the scale vector).
    let idx: [__m512i; 2] = std::array::from_fn(|h| packed_scales(|v, l| 2 * (2 * h + v) + l / 8));
    let mins_idx = _mm512_castsi512_si256(spread(8, 2));
    let dmin: Option<fn(&BlockQ4K) -> [u8; 2]> = Some(|x| x.dmin);
    // 16 weight rows at a time with one row per lane (see `tile16_q4_k`; faster than the
    // row-by-row code even for one activation row)
    let mut w = w;
    let mut out = out;
    if N >= 1 && nb > 0 {
        let ys = q8k_rows::<N>(a, nb);
        while w.len() >= 16 * nb {
            tile16_q4_k::<N>(&w[..16 * nb], &w[16 * nb..w.len().min(32 * nb)], nb, &ys, out);
            w = &w[16 * nb..];
            out = out.map(|o| o.wrapping_add(16));
        }
    }
    k512_rows!(w, nb, a, out, N, |x: &BlockQ4K| prep_q4_k(x, &idx, mins_idx), dmin)
}

/// Eight vectors of two 8-dword halves each (vector r: row r's dwords in the low half, row
/// r + 8's in the high half) transposed: vector k holds dword k of rows 0..16, one per lane.
#[inline(always)]
unsafe fn transpose_8x16(z: [__m512i; 8]) -> [__m512i; 8] {
    let t: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (z[2 * (i / 2)], z[2 * (i / 2) + 1]);
        if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
    });
    // t[0]: (r0,r1) dwords 0,1 | 4,5 per 128-bit lane; t[1]: 2,3 | 6,7; t[2], t[3]: rows 2,3; …
    let u: [__m512i; 8] = std::array::from_fn(|i| {
        let (g, k) = (i / 4, i % 4); // rows 4g..4g+4; k: which dword of each 128-bit lane
        let (a, b) = (t[4 * g + k / 2], t[4 * g + 2 + k / 2]);
        if k % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
    });
    // u[4g + k]: dword k (and k + 4 in the upper 128-bit lane of each half) of rows 4g..4g+4
    let lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    std::array::from_fn(|k| {
        let (a, b) = (u[k % 4], u[4 + k % 4]);
        if k < 4 { _mm512_permutex2var_epi64(a, lo, b) } else { _mm512_permutex2var_epi64(a, hi, b) }
    })
}

/// 16 Q4_K weight rows × `N` activation rows with one weight row per 32-bit lane: the rows'
/// quants are transposed in registers (4 bytes of a row per lane), each `vpdpbusd` takes 4
/// activation bytes broadcast to every lane, and a sub-block's sums are scaled by the rows'
/// 6-bit scales with `vpmulld` — no horizontal sums at all. Each lane's float arithmetic is the
/// scalar reference's (`Acc4` lanes as four vectors), so every result is bit-identical to it.
#[inline(always)]
unsafe fn tile16_q4_k<const N: usize>(w: &[BlockQ4K], next: &[BlockQ4K], nb: usize, ys: &[&[BlockQ8K]; N], out: [*mut f32; N]) {
    let m4 = _mm512_set1_epi8(0x0f);
    let lo8 = _mm512_set1_epi32(0xff);
    let negz = _mm512_set1_ps(-0.0);
    let mut accd = [[_mm512_setzero_ps(); 4]; N];
    let mut accm = [[_mm512_setzero_ps(); 4]; N];
    for b in 0..nb {
        // per row: sc0..3, sc4..7, m0..3, m4..7 as bytes of four dwords (ggml's unpacking), d|dmin
        let mut u = [[0u32; 16]; 5];
        for r in 0..16 {
            // block b of the next tile's row r, asked for early (see `avx2::prefetch_row`)
            super::avx2::prefetch_row(next, r * nb + b, 1);
            let x = &w[r * nb + b];
            let s = &x.scales;
            let v = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
            let (u0, u1, u2) = (v(0), v(1), v(2));
            u[0][r] = u0 & 0x3f3f_3f3f;
            u[1][r] = (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4);
            u[2][r] = u1 & 0x3f3f_3f3f;
            u[3][r] = ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4);
            u[4][r] = u32::from_le_bytes([x.d[0], x.d[1], x.dmin[0], x.dmin[1]]);
        }
        let uv: [__m512i; 5] = std::array::from_fn(|q| _mm512_loadu_si512(u[q].as_ptr() as *const _));
        // sub-block j's scale of each row (i32 lanes)
        let sc: [__m512i; 8] = std::array::from_fn(|j| _mm512_and_si512(_mm512_srl_epi32(uv[j / 4], _mm_cvtsi32_si128(8 * (j % 4) as i32)), lo8));
        // minimums in i16 pairs (m_2k, m_2k+1) per lane
        let mp: [__m512i; 4] = std::array::from_fn(|k| {
            let v = _mm512_srl_epi32(uv[2 + k / 2], _mm_cvtsi32_si128(16 * (k % 2) as i32));
            _mm512_or_si512(_mm512_and_si512(v, lo8), _mm512_slli_epi32::<8>(_mm512_and_si512(v, _mm512_set1_epi32(0xff00))))
        });
        let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(uv[4]));
        let dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(uv[4])));
        let mut isum = [_mm512_setzero_si512(); N];
        for i in 0..4 {
            // bytes 32i..32i+32 of each row's qs: elements 64i.. (low nibbles), 64i+32.. (high)
            let z: [__m512i; 8] = std::array::from_fn(|r| {
                let lo = _mm256_loadu_si256(w[r * nb + b].qs.as_ptr().add(32 * i) as *const __m256i);
                let hi = _mm256_loadu_si256(w[(r + 8) * nb + b].qs.as_ptr().add(32 * i) as *const __m256i);
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            });
            let q = transpose_8x16(z);
            let ql: [__m512i; 8] = std::array::from_fn(|k| _mm512_and_si512(q[k], m4));
            let qh: [__m512i; 8] = std::array::from_fn(|k| _mm512_and_si512(_mm512_srli_epi16::<4>(q[k]), m4));
            for t in 0..N {
                let a = ys[t][b].qs.as_ptr().add(64 * i) as *const i32;
                // four chains of four (exact i32 sums), so the adds need not wait on each other
                let mut acc = [_mm512_setzero_si512(); 4];
                for k in 0..4 {
                    acc[0] = _mm512_dpbusd_epi32(acc[0], ql[k], _mm512_set1_epi32(a.add(k).read_unaligned()));
                    acc[1] = _mm512_dpbusd_epi32(acc[1], ql[4 + k], _mm512_set1_epi32(a.add(4 + k).read_unaligned()));
                    acc[2] = _mm512_dpbusd_epi32(acc[2], qh[k], _mm512_set1_epi32(a.add(8 + k).read_unaligned()));
                    acc[3] = _mm512_dpbusd_epi32(acc[3], qh[4 + k], _mm512_set1_epi32(a.add(12 + k).read_unaligned()));
                }
                let (sl, sh) = (_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3]));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(sl, sc[2 * i]), _mm512_mullo_epi32(sh, sc[2 * i + 1])));
            }
        }
        for t in 0..N {
            let y = &ys[t][b];
            // the minimums against the pairs of per-16 sums
            let pv = super::avx2::bsum_pairs(y);
            let mut msum = _mm512_madd_epi16(mp[0], _mm512_set1_epi32(pv[0]));
            for k in 1..4 {
                msum = _mm512_add_epi32(msum, _mm512_madd_epi16(mp[k], _mm512_set1_epi32(pv[k])));
            }
            let da = _mm512_set1_ps(y.d());
            let l = b % 4;
            accd[t][l] = _mm512_add_ps(accd[t][l], _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum[t])));
            accm[t][l] = _mm512_add_ps(accm[t][l], _mm512_xor_ps(_mm512_mul_ps(_mm512_mul_ps(dm, da), _mm512_cvtepi32_ps(msum)), negz));
        }
    }
    for t in 0..N {
        let [a0, a1, a2, a3] = accd[t];
        let [m0, m1, m2, m3] = accm[t];
        let d = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        let m = _mm512_add_ps(_mm512_add_ps(m0, m1), _mm512_add_ps(m2, m3));
        _mm512_storeu_ps(out[t], _mm512_add_ps(d, m));
    }
}

/// Q6_K rows × `N` Q8_K activation rows.
///
/// # Safety
/// As `rows_q4_k`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,f16c")]
pub unsafe fn rows_q6_k<const N: usize>(w: &[BlockQ6K], nb: usize, a: [&[u8]; N], out: [*mut f32; N]) {
    // q[c] holds sub-blocks 4c..4c+4 of 16, four dpbusd lanes each
    let idx: [__m512i; 2] = std::array::from_fn(|h| packed_scales(|v, l| 4 * (2 * h + v) + l / 4));
    let dmin: Option<fn(&BlockQ6K) -> [u8; 2]> = None;
    // 16-row tiles from four activation rows on (for fewer, unpacking Q6_K into lanes costs more
    // than it saves)
    let mut w = w;
    let mut out = out;
    if N >= 4 && nb > 0 {
        let ys = q8k_rows::<N>(a, nb);
        while w.len() >= 16 * nb {
            tile16_q6_k::<N>(&w[..16 * nb], &w[16 * nb..w.len().min(32 * nb)], nb, &ys, out);
            w = &w[16 * nb..];
            out = out.map(|o| o.wrapping_add(16));
        }
    }
    k512_rows!(w, nb, a, out, N, |x: &BlockQ6K| prep_q6_k(x, &idx), dmin)
}

/// 32 bytes at offset `off` of each of 16 Q6_K rows' block `b`, transposed (dword k of every row).
#[inline(always)]
unsafe fn rows_dwords<B>(w: &[B], nb: usize, b: usize, field: impl Fn(&B) -> *const u8, off: usize) -> [__m512i; 8] {
    let z: [__m512i; 8] = std::array::from_fn(|r| {
        let lo = _mm256_loadu_si256(field(&w[r * nb + b]).add(off) as *const __m256i);
        let hi = _mm256_loadu_si256(field(&w[(r + 8) * nb + b]).add(off) as *const __m256i);
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    });
    transpose_8x16(z)
}

/// 16 Q6_K weight rows × `N` activation rows, one weight row per lane (as `tile16_q4_k`): 16
/// sub-blocks of 16 (4 `vpdpbusd` each) scaled by the rows' i8 scales, the −32 offset through
/// the per-16 sums.
#[inline(always)]
unsafe fn tile16_q6_k<const N: usize>(w: &[BlockQ6K], next: &[BlockQ6K], nb: usize, ys: &[&[BlockQ8K]; N], out: [*mut f32; N]) {
    let (m4, m2) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x03));
    let mut accd = [[_mm512_setzero_ps(); 4]; N];
    for b in 0..nb {
        // per row: the 16 i8 scales as four dwords, and d
        let mut u = [[0u32; 16]; 5];
        for r in 0..16 {
            // block b of the next tile's row r, asked for early (see `avx2::prefetch_row`)
            super::avx2::prefetch_row(next, r * nb + b, 1);
            let x = &w[r * nb + b];
            for (q, uq) in u.iter_mut().take(4).enumerate() {
                uq[r] = u32::from_le_bytes([x.scales[4 * q] as u8, x.scales[4 * q + 1] as u8, x.scales[4 * q + 2] as u8, x.scales[4 * q + 3] as u8]);
            }
            u[4][r] = u16::from_le_bytes(x.d) as u32;
        }
        let uv: [__m512i; 5] = std::array::from_fn(|q| _mm512_loadu_si512(u[q].as_ptr() as *const _));
        // scale j of each row, sign-extended to i32
        let sc: [__m512i; 16] = std::array::from_fn(|j| {
            _mm512_srai_epi32::<24>(_mm512_sll_epi32(uv[j / 4], _mm_cvtsi32_si128(24 - 8 * (j % 4) as i32)))
        });
        // scales in i16 pairs (s_2k, s_2k+1) per lane, for the per-16 sums
        let sp: [__m512i; 8] = std::array::from_fn(|k| {
            let lo = _mm512_and_si512(sc[2 * k], _mm512_set1_epi32(0xffff));
            _mm512_or_si512(lo, _mm512_slli_epi32::<16>(sc[2 * k + 1]))
        });
        let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(uv[4]));
        let mut isum = [_mm512_setzero_si512(); N];
        for n in 0..2 {
            let qh = rows_dwords(w, nb, b, |x: &BlockQ6K| x.qh.as_ptr(), 32 * n);
            for half in 0..2 {
                let ql = rows_dwords(w, nb, b, |x: &BlockQ6K| x.ql.as_ptr(), 64 * n + 32 * half);
                for k in [half, half + 2] {
                    // elements 128n + 32k + 4g .. +4 of each row, in lane order
                    let v: [__m512i; 8] = std::array::from_fn(|g| {
                        let lo = if k < 2 { _mm512_and_si512(ql[g], m4) } else { _mm512_and_si512(_mm512_srli_epi16::<4>(ql[g]), m4) };
                        let hb = _mm512_and_si512(_mm512_srl_epi16(qh[g], _mm_cvtsi32_si128(2 * k as i32)), m2);
                        _mm512_or_si512(lo, _mm512_slli_epi16::<4>(hb))
                    });
                    let j0 = 8 * n + 2 * k; // sub-blocks j0 (g < 4) and j0 + 1
                    for t in 0..N {
                        let a = ys[t][b].qs.as_ptr().add(128 * n + 32 * k) as *const i32;
                        let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                        for g in 0..4 {
                            s0 = _mm512_dpbusd_epi32(s0, v[g], _mm512_set1_epi32(a.add(g).read_unaligned()));
                            s1 = _mm512_dpbusd_epi32(s1, v[4 + g], _mm512_set1_epi32(a.add(4 + g).read_unaligned()));
                        }
                        isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(s0, sc[j0]), _mm512_mullo_epi32(s1, sc[j0 + 1])));
                    }
                }
            }
        }
        for t in 0..N {
            let y = &ys[t][b];
            let bs = y.bsums.as_ptr() as *const i32;
            let mut off = _mm512_madd_epi16(sp[0], _mm512_set1_epi32(bs.read_unaligned()));
            for (k, &spk) in sp.iter().enumerate().skip(1) {
                off = _mm512_add_epi32(off, _mm512_madd_epi16(spk, _mm512_set1_epi32(bs.add(k).read_unaligned())));
            }
            let total = _mm512_sub_epi32(isum[t], _mm512_slli_epi32::<5>(off));
            let l = b % 4;
            accd[t][l] = _mm512_add_ps(accd[t][l], _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(y.d())), _mm512_cvtepi32_ps(total)));
        }
    }
    let z = _mm512_setzero_ps();
    let zero = _mm512_add_ps(_mm512_add_ps(z, z), _mm512_add_ps(z, z));
    for t in 0..N {
        let [a0, a1, a2, a3] = accd[t];
        let d = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        _mm512_storeu_ps(out[t], _mm512_add_ps(d, zero));
    }
}

/// Single-row forms (for the tests).
///
/// # Safety
/// `available()`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,f16c")]
pub unsafe fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut v = 0f32;
    rows_q4_k::<1>(w, w.len(), [blocks_as_bytes(a)], [&mut v]);
    v
}

/// # Safety
/// `available()`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,f16c")]
pub unsafe fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut v = 0f32;
    rows_q6_k::<1>(w, w.len(), [blocks_as_bytes(a)], [&mut v]);
    v
}
