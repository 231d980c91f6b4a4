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
        _ => return None,
    })
}
