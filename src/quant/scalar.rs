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

/// x → Q8_K, as ggml's reference: the element of largest magnitude maps to −127 (iscale = −127/max,
/// d = 1/iscale), q = round(x·iscale) (ties to even) capped at 127; bsums[j] = sum of q[16j..16j+16].
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = (q.iter().map(|&v| v as i16).sum::<i16>()).to_le_bytes();
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

/// The eight 6-bit scales and eight 6-bit minimums of a Q4_K/Q5_K super-block, unpacked from its
/// 12 bytes: for j < 4, sc_j and m_j are the low 6 bits of bytes j and j+4; for j ≥ 4, the low 4
/// bits come from byte j+4 (sc: low nibble, m: high nibble) and the top 2 from the top bits of
/// byte j−4 (sc) and byte j (m).
#[inline(always)]
pub fn scales_mins_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// The 256 unsigned 4-bit values of a Q4_K super-block (or the low 4 bits of a Q5_K one).
#[inline(always)]
fn nibbles_k(qs: &[u8; 128]) -> [u8; 256] {
    let mut q = [0u8; 256];
    for i in 0..4 {
        for l in 0..32 {
            q[64 * i + l] = qs[32 * i + l] & 0x0f;
            q[64 * i + 32 + l] = qs[32 * i + l] >> 4;
        }
    }
    q
}

/// The 256 unsigned 5-bit values of a Q5_K super-block.
#[inline(always)]
fn five_bits_k(qs: &[u8; 128], qh: &[u8; 32]) -> [u8; 256] {
    let mut q = nibbles_k(qs);
    for i in 0..4 {
        for l in 0..32 {
            q[64 * i + l] |= ((qh[l] >> (2 * i)) & 1) << 4;
            q[64 * i + 32 + l] |= ((qh[l] >> (2 * i + 1)) & 1) << 4;
        }
    }
    q
}

/// The 256 unsigned 6-bit values (0..63; the weight is q − 32) of a Q6_K super-block.
#[inline(always)]
fn six_bits_k(ql: &[u8; 128], qh: &[u8; 64]) -> [u8; 256] {
    let mut q = [0u8; 256];
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
        let o = 128 * n;
        for l in 0..32 {
            q[o + l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            q[o + 32 + l] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            q[o + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[o + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
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
#[derive(Default)]
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

/// Σ_j sc_j · (q·a over sub-block j of 32): Q4_K/Q5_K's exact integer sum.
#[inline(always)]
fn isum_k32(q: &[u8; 256], sc: &[u8; 8], a: &[i8; 256]) -> i32 {
    (0..8).map(|j| sc[j] as i32 * (32 * j..32 * j + 32).map(|i| q[i] as i32 * a[i] as i32).sum::<i32>()).sum()
}

/// Σ_j m_j · (sum of the activations of sub-block j of 32), from Q8_K's per-16 sums.
#[inline(always)]
fn msum_k(m: &[u8; 8], y: &BlockQ8K) -> i32 {
    (0..8).map(|j| m[j] as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1))).sum()
}

/// Q4_K/Q5_K: per super-block b, the exact integer sums are scaled in f32 — (d_w·d_a)·Σ sc·q·a into
/// accumulator b mod 4 and −((dmin_w·d_a)·Σ m·bsum) into the minimum accumulator b mod 4 — and
/// summed as `Acc4` does. Every SIMD kernel computes the same integers and this same float code.
#[inline(always)]
pub fn acc_k_min(acc: &mut Acc4, b: usize, d: [u8; 2], dmin: [u8; 2], y: &BlockQ8K, isum: i32, msum: i32) {
    let da = y.d();
    acc.add(b, le(d) * da, isum);
    acc.add_min(b, -((le(dmin) * da) * msum as f32));
}

#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let (sc, m) = scales_mins_k4(&x.scales);
        let isum = isum_k32(&nibbles_k(&x.qs), &sc, &y.qs);
        acc_k_min(&mut acc, b, x.d, x.dmin, y, isum, msum_k(&m, y));
    }
    acc.sum()
}

#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let (sc, m) = scales_mins_k4(&x.scales);
        let isum = isum_k32(&five_bits_k(&x.qs, &x.qh), &sc, &y.qs);
        acc_k_min(&mut acc, b, x.d, x.dmin, y, isum, msum_k(&m, y));
    }
    acc.sum()
}

/// Q6_K: per super-block, the exact Σ_j sc_j · ((q − 32)·a over sub-block j of 16), scaled by
/// (d_w·d_a) into accumulator b mod 4.
#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let q = six_bits_k(&x.ql, &x.qh);
        let isum: i32 = (0..16)
            .map(|j| x.scales[j] as i32 * (16 * j..16 * j + 16).map(|i| (q[i] as i32 - 32) * y.qs[i] as i32).sum::<i32>())
            .sum();
        acc.add(b, le(x.d) * y.d(), isum);
    }
    acc.sum()
}

/// Q2_K's (and Q3_K's low) 2-bit values in element order: element 128n + 32k + l is bits 2k..2k+2
/// of qs[32n + l].
#[inline(always)]
fn two_bits_k(qs: &[u8; 64]) -> [u8; 256] {
    std::array::from_fn(|i| {
        let (n, k, l) = (i / 128, (i / 32) % 4, i % 32);
        (qs[32 * n + l] >> (2 * k)) & 3
    })
}

/// Q3_K's 256 values (−4..3): the 2-bit value, minus 4 where the element's bit of `hmask` (bit
/// 4n + k of hmask[l] for element 128n + 32k + l) is clear.
#[inline(always)]
fn three_bits_k(qs: &[u8; 64], hmask: &[u8; 32]) -> [i8; 256] {
    let q = two_bits_k(qs);
    std::array::from_fn(|i| {
        let (n, k, l) = (i / 128, (i / 32) % 4, i % 32);
        let high = (hmask[l] >> (4 * n + k)) & 1;
        q[i] as i8 - if high != 0 { 0 } else { 4 }
    })
}

/// Q3_K's sixteen signed scales (s_j − 32, s_j 6-bit) from its 12 bytes: for j = 4g + k, the low 4
/// bits are the low nibble of byte j (g < 2) or the high nibble of byte j − 8 (g ≥ 2), the top 2
/// bits are bits 2g..2g+2 of byte 8 + k.
#[inline(always)]
pub fn scales_q3_k(s: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|j| {
        let (g, k) = (j / 4, j % 4);
        let low = if g < 2 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let high = (s[8 + k] >> (2 * g)) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// IQ4_XS's eight signed sub-block scales (ls_j − 32).
#[inline(always)]
pub fn scales_iq4_xs(x: &BlockIQ4XS) -> [i8; 8] {
    let h = u16::from_le_bytes(x.scales_h);
    std::array::from_fn(|j| {
        let low = (x.scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
        let high = ((h >> (2 * j)) & 3) as u8;
        (low | (high << 4)) as i8 - 32
    })
}

/// The 32 values of an IQ4_NL block (or of an IQ4_XS sub-block), looked up in KVALUES_IQ4NL.
#[inline(always)]
fn iq4_values(qs: &[u8; 16]) -> [i8; 32] {
    nibbles(qs).map(|v| KVALUES_IQ4NL[v as usize])
}

/// Σ_j sc_j · (q·a over sub-block j of 16): the exact integer sum of Q2_K / Q3_K (and Q6_K).
#[inline(always)]
fn isum_k16<T: Copy + Into<i32>, S: Copy + Into<i32>>(q: &[T; 256], sc: &[S; 16], a: &[i8; 256]) -> i32 {
    (0..16).map(|j| sc[j].into() * (16 * j..16 * j + 16).map(|i| q[i].into() * a[i] as i32).sum::<i32>()).sum()
}

/// Q2_K: per super-block, (d_w·d_a)·Σ_j (sc_j & 15)·(q·a)_j and −(dmin_w·d_a)·Σ_j (sc_j >> 4)·bsum_j,
/// accumulated as Q4_K's (`acc_k_min`).
#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_q2_k(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let sc = x.scales.map(|s| s & 15);
        let isum = isum_k16(&two_bits_k(&x.qs), &sc, &y.qs);
        let msum: i32 = (0..16).map(|j| (x.scales[j] >> 4) as i32 * y.bsum(j)).sum();
        acc_k_min(&mut acc, b, x.d, x.dmin, y, isum, msum);
    }
    acc.sum()
}

/// Q3_K: per super-block, the exact Σ_j s_j · (q·a)_j (q in −4..3, s_j in −32..31), scaled by
/// (d_w·d_a) into accumulator b mod 4.
#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_q3_k(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let isum = isum_k16(&three_bits_k(&x.qs, &x.hmask), &scales_q3_k(&x.scales), &y.qs);
        acc.add(b, le(x.d) * y.d(), isum);
    }
    acc.sum()
}

pub fn dot_iq4_nl(w: &[BlockIQ4NL], a: &[BlockQ8_0]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        acc.add(b, le(x.d) * le(y.d), idot(&iq4_values(&x.qs), &y.qs));
    }
    acc.sum()
}

/// IQ4_XS: per super-block, the exact Σ_j (ls_j − 32) · (q·a over sub-block j of 32), scaled by
/// (d_w·d_a) into accumulator b mod 4.
#[inline(never)] // kept out of the matmul loop of the formats with SIMD kernels
pub fn dot_iq4_xs(w: &[BlockIQ4XS], a: &[BlockQ8K]) -> f32 {
    let mut acc = Acc4::new();
    for (b, (x, y)) in w.iter().zip(a).enumerate() {
        let sc = scales_iq4_xs(x);
        let isum: i32 = (0..8)
            .map(|j| {
                let q = iq4_values(x.qs[16 * j..16 * j + 16].try_into().unwrap());
                let a: &[i8; 32] = y.qs[32 * j..32 * j + 32].try_into().unwrap();
                sc[j] as i32 * idot(&q, a)
            })
            .sum();
        acc.add(b, le(x.d) * y.d(), isum);
    }
    acc.sum()
}

/// Lanes of the BF16 dot product: element i is added to lane i mod 32 (products of two bf16 are
/// exact in f32; only the order of the additions matters, and this is it).
pub const BF16_LANES: usize = 32;

/// The 32 BF16 lanes summed as a tree: lane j += lane j + w for w = 16, 8, 4, 2, 1.
#[inline(always)]
pub fn reduce_bf16_lanes(mut l: [f32; BF16_LANES]) -> f32 {
    let mut w = BF16_LANES / 2;
    while w > 0 {
        for j in 0..w {
            l[j] += l[j + w];
        }
        w /= 2;
    }
    l[0]
}

/// BF16 weights · BF16 activations (`n` values each): lanes as `BF16_LANES`, then the tree.
pub fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut lanes = [0f32; BF16_LANES];
    for (i, (x, y)) in bf16s(w).zip(bf16s(a)).take(n).enumerate() {
        lanes[i % BF16_LANES] += x * y;
    }
    reduce_bf16_lanes(lanes)
}

fn bf16s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(2).map(|c| super::bf16::to_f32(u16::from_le_bytes([c[0], c[1]])))
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
        BF16 => dot_bf16(n, w, a),
        IQ4NL => dot_iq4_nl(as_blocks(w), as_blocks(a)),
        Q2K => dot_q2_k(as_blocks(w), as_blocks(a)),
        Q3K => dot_q3_k(as_blocks(w), as_blocks(a)),
        IQ4XS => dot_iq4_xs(as_blocks(w), as_blocks(a)),
        Q4_0 => dot_q4_0(as_blocks(w), as_blocks(a)),
        Q4_1 => dot_q4_1(as_blocks(w), as_blocks(a)),
        Q5_0 => dot_q5_0(as_blocks(w), as_blocks(a)),
        Q5_1 => dot_q5_1(as_blocks(w), as_blocks(a)),
        Q8_0 => dot_q8_0(as_blocks(w), as_blocks(a)),
        Q4K => dot_q4_k(as_blocks(w), as_blocks(a)),
        Q5K => dot_q5_k(as_blocks(w), as_blocks(a)),
        Q6K => dot_q6_k(as_blocks(w), as_blocks(a)),
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
        BF16 => out.iter_mut().zip(bf16s(w)).for_each(|(o, v)| *o = v),
        IQ4NL => {
            for (o, b) in out.chunks_exact_mut(QK).zip(as_blocks::<BlockIQ4NL>(w)) {
                let d = le(b.d);
                o.iter_mut().zip(iq4_values(&b.qs)).for_each(|(o, q)| *o = d * q as f32);
            }
        }
        // as ggml's dequantize_row_iq4_xs: (d·(ls − 32))·kvalue
        IQ4XS => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockIQ4XS>(w)) {
                let d = le(b.d);
                let sc = scales_iq4_xs(b);
                for (j, o) in o.chunks_exact_mut(32).enumerate() {
                    let dl = d * sc[j] as f32;
                    let q = iq4_values(b.qs[16 * j..16 * j + 16].try_into().unwrap());
                    o.iter_mut().zip(q).for_each(|(o, q)| *o = dl * q as f32);
                }
            }
        }
        // as ggml's dequantize_row_q2_K / q3_K: (d·sc)·q − dmin·m, (d·(s − 32))·q
        Q2K => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockQ2K>(w)) {
                let (d, dmin) = (le(b.d), le(b.dmin));
                let q = two_bits_k(&b.qs);
                for (j, o) in o.chunks_exact_mut(16).enumerate() {
                    let (dl, ml) = (d * (b.scales[j] & 15) as f32, dmin * (b.scales[j] >> 4) as f32);
                    o.iter_mut().zip(&q[16 * j..]).for_each(|(o, &q)| *o = dl * q as f32 - ml);
                }
            }
        }
        Q3K => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockQ3K>(w)) {
                let d = le(b.d);
                let (q, sc) = (three_bits_k(&b.qs, &b.hmask), scales_q3_k(&b.scales));
                for (j, o) in o.chunks_exact_mut(16).enumerate() {
                    let dl = d * sc[j] as f32;
                    o.iter_mut().zip(&q[16 * j..]).for_each(|(o, &q)| *o = dl * q as f32);
                }
            }
        }
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
        // K-quants as ggml's dequantize_row_q*_K, to the float: (d·sc)·q − dmin·m, (d·sc)·(q − 32).
        Q4K => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockQ4K>(w)) {
                dequant_k_min(o, b.d, b.dmin, &b.scales, &nibbles_k(&b.qs));
            }
        }
        Q5K => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockQ5K>(w)) {
                dequant_k_min(o, b.d, b.dmin, &b.scales, &five_bits_k(&b.qs, &b.qh));
            }
        }
        Q6K => {
            for (o, b) in out.chunks_exact_mut(QK_K).zip(as_blocks::<BlockQ6K>(w)) {
                let d = le(b.d);
                let q = six_bits_k(&b.ql, &b.qh);
                for (j, o) in o.chunks_exact_mut(16).enumerate() {
                    let ds = d * b.scales[j] as f32;
                    o.iter_mut().zip(&q[16 * j..]).for_each(|(o, &q)| *o = ds * (q as i32 - 32) as f32);
                }
            }
        }
        _ => out.fill(f32::NAN),
    }
}

fn dequant_k_min(o: &mut [f32], d: [u8; 2], dmin: [u8; 2], scales: &[u8; 12], q: &[u8; 256]) {
    let (d, dmin) = (le(d), le(dmin));
    let (sc, m) = scales_mins_k4(scales);
    for (j, o) in o.chunks_exact_mut(32).enumerate() {
        let (ds, ms) = (d * sc[j] as f32, dmin * m[j] as f32);
        o.iter_mut().zip(&q[32 * j..]).for_each(|(o, &q)| *o = ds * q as f32 - ms);
    }
}
