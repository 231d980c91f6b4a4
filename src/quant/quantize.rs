//! f32 → weight formats (ggml's reference quantizers in meaning), for `hearth quantize` and tests.

use super::f16::to_le;
use super::*;
use crate::gguf::GgmlType;

/// The element of largest magnitude, with its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4))
}

fn pack_fifth_bits(q: &[u8; 32]) -> [u8; 4] {
    let h = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | ((((v >> 4) & 1) as u32) << j));
    h.to_le_bytes()
}

pub fn q4_0(x: &[f32]) -> Vec<BlockQ4_0> {
    x.chunks_exact(QK)
        .map(|xb| {
            let d = signed_absmax(xb) / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| ((xb[j] * id + 8.5) as i8).clamp(0, 15) as u8);
            BlockQ4_0 { d: to_le(d), qs: pack_nibbles(&q) }
        })
        .collect()
}

pub fn q4_1(x: &[f32]) -> Vec<BlockQ4_1> {
    x.chunks_exact(QK)
        .map(|xb| {
            let (lo, hi) = min_max(xb);
            let d = (hi - lo) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| (((xb[j] - lo) * id + 0.5) as i8).clamp(0, 15) as u8);
            BlockQ4_1 { d: to_le(d), m: to_le(lo), qs: pack_nibbles(&q) }
        })
        .collect()
}

pub fn q5_0(x: &[f32]) -> Vec<BlockQ5_0> {
    x.chunks_exact(QK)
        .map(|xb| {
            let d = signed_absmax(xb) / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| ((xb[j] * id + 16.5) as i8).clamp(0, 31) as u8);
            BlockQ5_0 { d: to_le(d), qh: pack_fifth_bits(&q), qs: pack_nibbles(&q) }
        })
        .collect()
}

pub fn q5_1(x: &[f32]) -> Vec<BlockQ5_1> {
    x.chunks_exact(QK)
        .map(|xb| {
            let (lo, hi) = min_max(xb);
            let d = (hi - lo) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| (((xb[j] - lo) * id + 0.5) as i8).clamp(0, 31) as u8);
            BlockQ5_1 { d: to_le(d), m: to_le(lo), qh: pack_fifth_bits(&q), qs: pack_nibbles(&q) }
        })
        .collect()
}

pub fn q8_0(x: &[f32]) -> Vec<BlockQ8_0> {
    x.chunks_exact(QK)
        .map(|xb| {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            BlockQ8_0 { d: to_le(d), qs: std::array::from_fn(|j| (xb[j] * id).round() as i8) }
        })
        .collect()
}

// ---- K-quants ----
//
// A plain, deterministic scale choice (no iterative search like ggml's make_qkx2_quants):
// * Q4_K/Q5_K, per sub-block of 32: the offset is the minimum clamped to ≤ 0 (as ggml: the stored
//   `m` is non-negative). The offsets are quantized first (dmin = max/63, m rounded to nearest),
//   then each sub-block's scale is the step that spans [−dmin·m, max] with 2^bits − 1 steps;
//   d = max step/63 and sc is that step / d rounded *up* (a step a little too large costs a little
//   precision; one too small would clip the largest values). Then a small search: of the codes
//   sc−2..sc+1 and m−1..m+1, the pair with the least squared error is kept. q = round((x + dmin·m)/(d·sc)).
//   Q2_K is the same with 16 sub-blocks of 16, 4-bit codes (15 in place of 63) and q in 0..=3.
// * Q6_K, per sub-block of 16: the step is max|x|/32 (the largest value maps to ±32, clamped to
//   −32..31 as ggml); d = max step/127, sc = ±⌈step/d⌉ (sign so the largest value lands on −32),
//   then the code among |sc|−2..|sc|+1 with the least squared error; q = round(x/(d·sc)) clamped
//   to −32..31. Q3_K is the same with q in −4..=3 and codes of at most 31 (stored as sc + 32).
// * IQ4_NL / IQ4_XS: see `iq4_scale`.
// Every scale is computed from the f16-rounded super-block scales, so q matches what dequantizes.

fn round_f16(x: f32) -> f32 {
    super::f16::round(x)
}

/// (d, dmin, sc, m, q) of one super-block with a minimum: `S` sub-blocks (8 of 32 for Q4_K/Q5_K,
/// 16 of 16 for Q2_K), q in 0..=nmax, scale and minimum codes in 0..=cmax (63, or 15 for Q2_K).
fn k_min_quants<const S: usize>(xb: &[f32], nmax: f32, cmax: i32) -> (f32, f32, [u8; S], [u8; S], [u8; 256]) {
    let len = QK_K / S;
    let cm = cmax as f32;
    let subs: [(f32, f32); S] = std::array::from_fn(|j| min_max(&xb[len * j..len * j + len]));
    let max_min = subs.iter().fold(0f32, |a, &(lo, _)| a.max(-lo));
    let dmin = round_f16(max_min / cm);
    let m: [u8; S] = std::array::from_fn(|j| if dmin > 0.0 { ((-subs[j].0.min(0.0)) / dmin).round().clamp(0.0, cm) as u8 } else { 0 });
    let steps: [f32; S] = std::array::from_fn(|j| ((subs[j].1 + dmin * m[j] as f32) / nmax).max(0.0));
    let max_step = steps.iter().fold(0f32, |a, &s| a.max(s));
    let d = round_f16(max_step / cm);
    let mut sc = [0u8; S];
    let mut m = m;
    let mut q = [0u8; 256];
    for j in 0..S {
        let x = &xb[len * j..len * j + len];
        // the codes around the first choice (sc rounded up, m to nearest): keep the pair with
        // the least squared error after rounding the values
        let c = if d > 0.0 { (steps[j] / d).ceil().min(cm) as i32 } else { 0 };
        let mut best = (f32::INFINITY, 0u8, 0u8);
        for s in (c - 2).max(0)..=(c + 1).min(cmax) {
            for mm in (m[j] as i32 - 1).max(0)..=(m[j] as i32 + 1).min(cmax) {
                let (ds, ms) = (d * s as f32, dmin * mm as f32);
                let id = if ds > 0.0 { 1.0 / ds } else { 0.0 };
                let err: f32 = x.iter().map(|&v| (((v + ms) * id).round().clamp(0.0, nmax) * ds - ms - v).powi(2)).sum();
                if err < best.0 {
                    best = (err, s as u8, mm as u8);
                }
            }
        }
        (sc[j], m[j]) = (best.1, best.2);
        let (ds, ms) = (d * sc[j] as f32, dmin * m[j] as f32);
        let id = if ds > 0.0 { 1.0 / ds } else { 0.0 };
        for (q, &v) in q[len * j..len * j + len].iter_mut().zip(x) {
            *q = ((v + ms) * id).round().clamp(0.0, nmax) as u8;
        }
    }
    (d, dmin, sc, m, q)
}

/// Packs eight 6-bit scales and minimums into Q4_K/Q5_K's 12 bytes (the inverse of
/// `scalar::scales_mins_k4`).
fn pack_scales_mins_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4);
    }
    s
}

/// 256 values < 16 (or the low 4 bits) as Q4_K/Q5_K's nibbles.
fn pack_nibbles_k(q: &[u8; 256]) -> [u8; 128] {
    std::array::from_fn(|b| {
        let (i, l) = (b / 32, b % 32);
        (q[64 * i + l] & 0x0f) | ((q[64 * i + 32 + l] & 0x0f) << 4)
    })
}

pub fn q4_k(x: &[f32]) -> Vec<BlockQ4K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let (d, dmin, sc, m, q) = k_min_quants::<8>(xb, 15.0, 63);
            BlockQ4K { d: to_le(d), dmin: to_le(dmin), scales: pack_scales_mins_k4(&sc, &m), qs: pack_nibbles_k(&q) }
        })
        .collect()
}

pub fn q5_k(x: &[f32]) -> Vec<BlockQ5K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let (d, dmin, sc, m, q) = k_min_quants::<8>(xb, 31.0, 63);
            let qh: [u8; 32] = std::array::from_fn(|l| {
                (0..4).fold(0u8, |h, i| h | (((q[64 * i + l] >> 4) & 1) << (2 * i)) | (((q[64 * i + 32 + l] >> 4) & 1) << (2 * i + 1)))
            });
            BlockQ5K { d: to_le(d), dmin: to_le(dmin), scales: pack_scales_mins_k4(&sc, &m), qh, qs: pack_nibbles_k(&q) }
        })
        .collect()
}

/// (d, sc, q) of one super-block of 16 signed sub-blocks (Q6_K: q in −32..=31, |sc| ≤ 127; Q3_K:
/// q in −4..=3, |sc| ≤ 31): per 16 the step that maps the largest-magnitude value to `qlo`,
/// d = max step/cmax, sc = ±⌈step/d⌉, then the code among |sc|−2..|sc|+1 with the least squared
/// error; q = round(x/(d·sc)) clamped, stored as q − qlo.
fn k_signed_quants(xb: &[f32], qlo: f32, qhi: f32, cmax: i32) -> (f32, [i8; 16], [u8; 256]) {
    let steps: [f32; 16] = std::array::from_fn(|j| signed_absmax(&xb[16 * j..16 * j + 16]) / qlo);
    let max_step = steps.iter().fold(0f32, |a, &s| a.max(s.abs()));
    let d = round_f16(max_step / cmax as f32);
    let sc: [i8; 16] = std::array::from_fn(|j| {
        if d <= 0.0 {
            return 0;
        }
        let x = &xb[16 * j..16 * j + 16];
        let c = (steps[j].abs() / d).ceil().min(cmax as f32) as i32;
        let sign = if steps[j] < 0.0 { -1 } else { 1 };
        let err = |s: i32| -> f32 {
            let ds = d * (sign * s) as f32;
            let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
            x.iter().map(|&v| ((v * id).round().clamp(qlo, qhi) * ds - v).powi(2)).sum()
        };
        let best = ((c - 2).max(0)..=(c + 1).min(cmax)).fold((f32::INFINITY, 0), |b, s| {
            let e = err(s);
            if e < b.0 { (e, s) } else { b }
        });
        (sign * best.1) as i8
    });
    let mut q = [0u8; 256];
    for ((qj, xj), &s) in q.chunks_exact_mut(16).zip(xb.chunks_exact(16)).zip(&sc) {
        let ds = d * s as f32;
        let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
        for (q, &x) in qj.iter_mut().zip(xj) {
            *q = ((x * id).round().clamp(qlo, qhi) as i32 - qlo as i32) as u8;
        }
    }
    (d, sc, q)
}

pub fn q6_k(x: &[f32]) -> Vec<BlockQ6K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let (d, sc, q) = k_signed_quants(xb, -32.0, 31.0, 127);
            let mut ql = [0u8; 128];
            let mut qh = [0u8; 64];
            for n in 0..2 {
                let o = 128 * n;
                for l in 0..32 {
                    ql[64 * n + l] = (q[o + l] & 0x0f) | ((q[o + 64 + l] & 0x0f) << 4);
                    ql[64 * n + 32 + l] = (q[o + 32 + l] & 0x0f) | ((q[o + 96 + l] & 0x0f) << 4);
                    qh[32 * n + l] = (q[o + l] >> 4) | ((q[o + 32 + l] >> 4) << 2) | ((q[o + 64 + l] >> 4) << 4) | ((q[o + 96 + l] >> 4) << 6);
                }
            }
            BlockQ6K { ql, qh, scales: sc, d: to_le(d) }
        })
        .collect()
}

/// 256 values < 4 as Q2_K/Q3_K's `qs` (element 128n + 32k + l at bits 2k of byte 32n + l).
fn pack_two_bits(q: &[u8; 256]) -> [u8; 64] {
    std::array::from_fn(|b| {
        let (n, l) = (b / 32, b % 32);
        (0..4).fold(0u8, |v, k| v | ((q[128 * n + 32 * k + l] & 3) << (2 * k)))
    })
}

pub fn q2_k(x: &[f32]) -> Vec<BlockQ2K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let (d, dmin, sc, m, q) = k_min_quants::<16>(xb, 3.0, 15);
            let scales = std::array::from_fn(|j| sc[j] | (m[j] << 4));
            BlockQ2K { scales, qs: pack_two_bits(&q), d: to_le(d), dmin: to_le(dmin) }
        })
        .collect()
}

pub fn q3_k(x: &[f32]) -> Vec<BlockQ3K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            // q stored as q + 4 (0..8): bit 2 is the high bit, set where the value is ≥ 0
            let (d, sc, q) = k_signed_quants(xb, -4.0, 3.0, 31);
            let hmask: [u8; 32] = std::array::from_fn(|l| {
                (0..8).fold(0u8, |h, m| h | (((q[128 * (m / 4) + 32 * (m % 4) + l] >> 2) & 1) << m))
            });
            // the inverse of `scalar::scales_q3_k`: s = sc + 32 (6 bits)
            let s6: [u8; 16] = sc.map(|c| (c as i32 + 32) as u8);
            let scales: [u8; 12] = std::array::from_fn(|b| {
                if b < 8 {
                    (s6[b] & 0x0f) | ((s6[b + 8] & 0x0f) << 4)
                } else {
                    let k = b - 8;
                    (0..4).fold(0u8, |v, g| v | (((s6[4 * g + k] >> 4) & 3) << (2 * g)))
                }
            });
            BlockQ3K { hmask, qs: pack_two_bits(&q), scales, d: to_le(d) }
        })
        .collect()
}

/// The index of the KVALUES_IQ4NL level nearest to `v` (in units of the block's scale).
fn nearest_iq4(v: f32) -> u8 {
    let mut best = 0;
    for (i, &k) in KVALUES_IQ4NL.iter().enumerate() {
        if (v - k as f32).abs() < (v - KVALUES_IQ4NL[best] as f32).abs() {
            best = i;
        }
    }
    best as u8
}

/// The scale of one block of IQ4 levels and its indices: of the scales that map the
/// largest-magnitude value to the levels near −127 (max/(−127 + t), t = −8..=8), with each value
/// at its nearest level, the one whose least-squares refit (Σx·k / Σk²) leaves the least error.
fn iq4_scale(x: &[f32]) -> (f32, Vec<u8>) {
    let max = signed_absmax(x);
    if max == 0.0 {
        return (0.0, vec![0; x.len()]);
    }
    let mut best = (f32::INFINITY, 0f32, vec![]);
    for t in -8..=8 {
        let d0 = max / (KVALUES_IQ4NL[0] as f32 + t as f32);
        let idx: Vec<u8> = x.iter().map(|&v| nearest_iq4(v / d0)).collect();
        let (sxk, skk) = idx.iter().zip(x).fold((0f32, 0f32), |(a, b), (&i, &v)| {
            let k = KVALUES_IQ4NL[i as usize] as f32;
            (a + v * k, b + k * k)
        });
        let d = if skk > 0.0 { sxk / skk } else { d0 };
        let err: f32 = idx.iter().zip(x).map(|(&i, &v)| (d * KVALUES_IQ4NL[i as usize] as f32 - v).powi(2)).sum();
        if err < best.0 {
            best = (err, d, idx);
        }
    }
    (best.1, best.2)
}

/// 32 indices as IQ4_NL's nibbles (element j low nibble of byte j, element j+16 high nibble).
fn pack_iq4(idx: &[u8]) -> [u8; 16] {
    std::array::from_fn(|j| idx[j] | (idx[j + 16] << 4))
}

pub fn iq4_nl(x: &[f32]) -> Vec<BlockIQ4NL> {
    x.chunks_exact(QK)
        .map(|xb| {
            let d = round_f16(iq4_scale(xb).0);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let idx: Vec<u8> = xb.iter().map(|&v| nearest_iq4(v * id)).collect();
            BlockIQ4NL { d: to_le(d), qs: pack_iq4(&idx) }
        })
        .collect()
}

/// IQ4_XS: each sub-block's scale as IQ4_NL's, then d = (largest-magnitude scale)/−32 and the
/// sub-block codes ls − 32 = round(scale/d) in −32..=31; indices from the coded scales.
pub fn iq4_xs(x: &[f32]) -> Vec<BlockIQ4XS> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let scales: Vec<f32> = xb.chunks_exact(32).map(|s| iq4_scale(s).0).collect();
            let d = round_f16(signed_absmax(&scales) / -32.0);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let ls: [u8; 8] = std::array::from_fn(|j| ((scales[j] * id).round().clamp(-32.0, 31.0) as i32 + 32) as u8);
            let mut b = BlockIQ4XS { d: to_le(d), ..Default::default() };
            let mut h = 0u16;
            for (j, (xs, &l)) in xb.chunks_exact(32).zip(&ls).enumerate() {
                b.scales_l[j / 2] |= (l & 0x0f) << (4 * (j % 2));
                h |= ((l >> 4) as u16) << (2 * j);
                let dl = d * (l as i32 - 32) as f32;
                let il = if dl != 0.0 { 1.0 / dl } else { 0.0 };
                let idx: Vec<u8> = xs.iter().map(|&v| nearest_iq4(v * il)).collect();
                b.qs[16 * j..16 * j + 16].copy_from_slice(&pack_iq4(&idx));
            }
            b.scales_h = h.to_le_bytes();
            b
        })
        .collect()
}

/// Quantizes `x` (a whole number of rows of a multiple of the block length) to `ty`.
/// Returns `None` for formats without a quantizer here.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    use GgmlType::*;
    Some(match ty {
        F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        F16 => x.iter().flat_map(|&v| to_le(v)).collect(),
        BF16 => x.iter().flat_map(|&v| super::bf16::from_f32(v).to_le_bytes()).collect(),
        IQ4NL => blocks_as_bytes(&iq4_nl(x)).to_vec(),
        IQ4XS => blocks_as_bytes(&iq4_xs(x)).to_vec(),
        Q2K => blocks_as_bytes(&q2_k(x)).to_vec(),
        Q3K => blocks_as_bytes(&q3_k(x)).to_vec(),
        Q4_0 => blocks_as_bytes(&q4_0(x)).to_vec(),
        Q4_1 => blocks_as_bytes(&q4_1(x)).to_vec(),
        Q5_0 => blocks_as_bytes(&q5_0(x)).to_vec(),
        Q5_1 => blocks_as_bytes(&q5_1(x)).to_vec(),
        Q8_0 => blocks_as_bytes(&q8_0(x)).to_vec(),
        Q4K => blocks_as_bytes(&q4_k(x)).to_vec(),
        Q5K => blocks_as_bytes(&q5_k(x)).to_vec(),
        Q6K => blocks_as_bytes(&q6_k(x)).to_vec(),
        _ => return None,
    })
}
