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
// * Q6_K, per sub-block of 16: the step is max|x|/32 (the largest value maps to ±32, clamped to
//   −32..31 as ggml); d = max step/127, sc = ±⌈step/d⌉ (sign so the largest value lands on −32),
//   then the code among |sc|−2..|sc|+1 with the least squared error; q = round(x/(d·sc)) clamped
//   to −32..31.
// Every scale is computed from the f16-rounded super-block scales, so q matches what dequantizes.

fn round_f16(x: f32) -> f32 {
    super::f16::round(x)
}

/// (d, dmin, sc, m, q) of one Q4_K/Q5_K super-block with q in 0..=nmax.
fn k_min_quants(xb: &[f32], nmax: f32) -> (f32, f32, [u8; 8], [u8; 8], [u8; 256]) {
    let subs: [(f32, f32); 8] = std::array::from_fn(|j| min_max(&xb[32 * j..32 * j + 32]));
    let max_min = subs.iter().fold(0f32, |a, &(lo, _)| a.max(-lo));
    let dmin = round_f16(max_min / 63.0);
    let m: [u8; 8] = std::array::from_fn(|j| if dmin > 0.0 { ((-subs[j].0.min(0.0)) / dmin).round().clamp(0.0, 63.0) as u8 } else { 0 });
    let steps: [f32; 8] = std::array::from_fn(|j| ((subs[j].1 + dmin * m[j] as f32) / nmax).max(0.0));
    let max_step = steps.iter().fold(0f32, |a, &s| a.max(s));
    let d = round_f16(max_step / 63.0);
    let mut sc = [0u8; 8];
    let mut m = m;
    let mut q = [0u8; 256];
    for j in 0..8 {
        let x = &xb[32 * j..32 * j + 32];
        // the 6-bit codes around the first choice (sc rounded up, m to nearest): keep the pair with
        // the least squared error after rounding the values
        let c = if d > 0.0 { (steps[j] / d).ceil().min(63.0) as i32 } else { 0 };
        let mut best = (f32::INFINITY, 0u8, 0u8);
        for s in (c - 2).max(0)..=(c + 1).min(63) {
            for mm in (m[j] as i32 - 1).max(0)..=(m[j] as i32 + 1).min(63) {
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
        for (q, &v) in q[32 * j..32 * j + 32].iter_mut().zip(x) {
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
            let (d, dmin, sc, m, q) = k_min_quants(xb, 15.0);
            BlockQ4K { d: to_le(d), dmin: to_le(dmin), scales: pack_scales_mins_k4(&sc, &m), qs: pack_nibbles_k(&q) }
        })
        .collect()
}

pub fn q5_k(x: &[f32]) -> Vec<BlockQ5K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            let (d, dmin, sc, m, q) = k_min_quants(xb, 31.0);
            let qh: [u8; 32] = std::array::from_fn(|l| {
                (0..4).fold(0u8, |h, i| h | (((q[64 * i + l] >> 4) & 1) << (2 * i)) | (((q[64 * i + 32 + l] >> 4) & 1) << (2 * i + 1)))
            });
            BlockQ5K { d: to_le(d), dmin: to_le(dmin), scales: pack_scales_mins_k4(&sc, &m), qh, qs: pack_nibbles_k(&q) }
        })
        .collect()
}

pub fn q6_k(x: &[f32]) -> Vec<BlockQ6K> {
    x.chunks_exact(QK_K)
        .map(|xb| {
            // signed step per 16: the largest-magnitude value v maps to −32
            let steps: [f32; 16] = std::array::from_fn(|j| signed_absmax(&xb[16 * j..16 * j + 16]) / -32.0);
            let max_step = steps.iter().fold(0f32, |a, &s| a.max(s.abs()));
            let d = round_f16(max_step / 127.0);
            // the scale code around the first choice (magnitude rounded up) with the least squared error
            let sc: [i8; 16] = std::array::from_fn(|j| {
                if d <= 0.0 {
                    return 0;
                }
                let x = &xb[16 * j..16 * j + 16];
                let c = (steps[j].abs() / d).ceil().min(127.0) as i32;
                let sign = if steps[j] < 0.0 { -1 } else { 1 };
                let err = |s: i32| -> f32 {
                    let ds = d * (sign * s) as f32;
                    let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
                    x.iter().map(|&v| ((v * id).round().clamp(-32.0, 31.0) * ds - v).powi(2)).sum()
                };
                let best = ((c - 2).max(0)..=(c + 1).min(127)).fold((f32::INFINITY, 0), |b, s| {
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
                    *q = ((x * id).round().clamp(-32.0, 31.0) as i32 + 32) as u8;
                }
            }
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

/// Quantizes `x` (a whole number of rows of a multiple of the block length) to `ty`.
/// Returns `None` for formats without a quantizer here.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    use GgmlType::*;
    Some(match ty {
        F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        F16 => x.iter().flat_map(|&v| to_le(v)).collect(),
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
