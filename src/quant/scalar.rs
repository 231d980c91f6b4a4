//! Plain reference kernels, one per format: the definition every SIMD kernel is tested against.
//! They follow ggml's reference code (`ggml-quants.c`) in meaning, written anew.

use super::f16::{le, to_le};
use super::*;
use crate::gguf::GgmlType;

/// x → Q8_0: d = max|x|/127, q = round(x/d) (ties to even, as ggml's AVX2 path).
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = to_le(d);
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round_ties_even() as i8;
        }
    }
}

/// x → Q8_1: as Q8_0, plus s = d * sum(q).
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = to_le(d);
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.s = to_le(d * sum as f32);
    }
}

/// The 32 unsigned 4-bit values of a block, in element order.
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// The 32 unsigned 5-bit values of a Q5 block.
#[inline(always)]
fn five_bits(qs: &[u8; 16], qh: [u8; 4]) -> [u8; 32] {
    let h = u32::from_le_bytes(qh);
    let mut q = nibbles(qs);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((h >> j) & 1) as u8) << 4;
    }
    q
}

#[inline(always)]
fn idot<T: Copy + Into<i32>>(a: &[T; 32], b: &[i8; 32]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x.into() * y as i32).sum()
}

/// The canonical float arithmetic of every quantized dot product, which each SIMD kernel
/// reproduces exactly (so the CLI and the browser compute bit-identical logits): block b's exact
/// integer sum is scaled by (d_w·d_a) and added to accumulator b mod 4; formats with a minimum add
/// m_w·s_a to a second set of four; the result is ((a0+a1)+(a2+a3)) + ((m0+m1)+(m2+m3)).
pub struct Acc4 {
    d: [f32; 4],
    m: [f32; 4],
}

impl Acc4 {
    #[inline(always)]
    pub fn new() -> Self {
        Acc4 { d: [0.0; 4], m: [0.0; 4] }
    }
    #[inline(always)]
    pub fn add(&mut self, b: usize, scale: f32, isum: i32) {
        self.d[b % 4] += scale * isum as f32;
    }
    #[inline(always)]
    pub fn add_min(&mut self, b: usize, m: f32) {
        self.m[b % 4] += m;
    }
    #[inline(always)]
    pub fn sum(&self) -> f32 {
        let [a0, a1, a2, a3] = self.d;
        let [m0, m1, m2, m3] = self.m;
        ((a0 + a1) + (a2 + a3)) + ((m0 + m1) + (m2 + m3))
    }
}

pub fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let q = nibbles(&x.qs).map(|v| v as i8 - 8);
        acc.add(b, le(x.d) * le(y.d), idot(&q, &y.qs));
    }
    acc.sum()
}

pub fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        acc.add(b, le(x.d) * le(y.d), idot(&nibbles(&x.qs), &y.qs));
        acc.add_min(b, le(x.m) * le(y.s));
    }
    acc.sum()
}

pub fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let q = five_bits(&x.qs, x.qh).map(|v| v as i8 - 16);
        acc.add(b, le(x.d) * le(y.d), idot(&q, &y.qs));
    }
    acc.sum()
}

pub fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        acc.add(b, le(x.d) * le(y.d), idot(&five_bits(&x.qs, x.qh), &y.qs));
        acc.add_min(b, le(x.m) * le(y.s));
    }
    acc.sum()
}

pub fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        acc.add(b, le(x.d) * le(y.d), idot(&x.qs, &y.qs));
    }
    acc.sum()
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn f16s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(2).map(|c| le([c[0], c[1]]))
}

/// Reference dot product of a weight row with its activation format (see `act_type`).
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    use GgmlType::*;
    match ty {
        F32 => f32s(w).zip(f32s(a)).take(n).map(|(x, y)| x * y).sum(),
        F16 => f16s(w).zip(f32s(a)).take(n).map(|(x, y)| x * y).sum(),
        Q4_0 => dot_q4_0(as_blocks(w), as_blocks(a)),
        Q4_1 => dot_q4_1(as_blocks(w), as_blocks(a)),
        Q5_0 => dot_q5_0(as_blocks(w), as_blocks(a)),
        Q5_1 => dot_q5_1(as_blocks(w), as_blocks(a)),
        Q8_0 => dot_q8_0(as_blocks(w), as_blocks(a)),
        // The loader only accepts formats that `act_type` knows.
        _ => f32::NAN,
    }
}

/// Dequantizes `out.len()` elements of format `ty`.
pub fn dequantize_row(ty: GgmlType, w: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match ty {
        F32 => out.iter_mut().zip(f32s(w)).for_each(|(o, v)| *o = v),
        F16 => out.iter_mut().zip(f16s(w)).for_each(|(o, v)| *o = v),
        Q4_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockQ4_0>(w)) {
                let d = le(b.d);
                o.iter_mut().zip(nibbles(&b.qs)).for_each(|(o, q)| *o = (q as i32 - 8) as f32 * d);
            }
        }
        Q4_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockQ4_1>(w)) {
                let (d, m) = (le(b.d), le(b.m));
                o.iter_mut().zip(nibbles(&b.qs)).for_each(|(o, q)| *o = q as f32 * d + m);
            }
        }
        Q5_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockQ5_0>(w)) {
                let d = le(b.d);
                o.iter_mut().zip(five_bits(&b.qs, b.qh)).for_each(|(o, q)| *o = (q as i32 - 16) as f32 * d);
            }
        }
        Q5_1 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockQ5_1>(w)) {
                let (d, m) = (le(b.d), le(b.m));
                o.iter_mut().zip(five_bits(&b.qs, b.qh)).for_each(|(o, q)| *o = q as f32 * d + m);
            }
        }
        Q8_0 => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockQ8_0>(w)) {
                let d = le(b.d);
                o.iter_mut().zip(b.qs).for_each(|(o, q)| *o = q as f32 * d);
            }
        }
        _ => out.fill(f32::NAN),
    }
}
