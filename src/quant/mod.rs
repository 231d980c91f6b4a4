//! Quantized block formats (ggml's layouts), activation quantization and dot-product kernels.
//!
//! Like llama.cpp, a quantized matmul first quantizes its input vector to 8 bits — Q8_1 blocks of 32
//! for weights with a minimum (Q4_1, Q5_1), Q8_0 blocks for the others (and IQ4_NL) — and then
//! takes integer dot products block by block. The K-quants (Q2_K … Q6_K, and IQ4_XS: super-blocks
//! of 256) take their input as Q8_K, 256 i8 with an f32 scale and the sums of each 16; BF16 weights
//! take BF16 input (ggml-cpu's `vec_dot_type` table). Doing the same keeps the engine within float
//! rounding of llama.cpp's tokens. `scalar.rs` is where to read the arithmetic: one plain reference
//! per format; the SIMD variants (`simd128` for wasm, `avx2` natively, and `avx512` for Q4_K and
//! Q6_K where the CPU has AVX-512 VNNI) are tested bit for bit against it on random blocks
//! (tests/kernels.rs).

/// Calls the kernel `$k::<N>(w, nb, acts, outs)` with the activation-row counts the kernels are
/// compiled for (1, 2, 3, 4, 8); any other count in calls of those sizes, each through
/// `$again(acts, outs)` (the caller's entry point on a slice of the rows).
#[allow(unused_macros)]
macro_rules! by_row_count {
    // the wasm kernels: one activation row (decode) `touch`es ahead where that pays on this
    // machine (`simd128::touching`), batches never do
    (touch $($k:ident)::+, $w:expr, $nb:expr, $acts:expr, $out:expr, $again:expr) => {{
        let (w, nb, acts, out): (_, usize, &[&[u8]], &[*mut f32]) = ($w, $nb, $acts, $out);
        let (a, o) = (|i: usize| acts[i], |i: usize| out[i]);
        match acts.len() {
            1 if $crate::quant::simd128::touching() => $($k)::+::<1, true>(w, nb, [a(0)], [o(0)]),
            1 => $($k)::+::<1, false>(w, nb, [a(0)], [o(0)]),
            2 => $($k)::+::<2, false>(w, nb, [a(0), a(1)], [o(0), o(1)]),
            3 => $($k)::+::<3, false>(w, nb, [a(0), a(1), a(2)], [o(0), o(1), o(2)]),
            4 => $($k)::+::<4, false>(w, nb, [a(0), a(1), a(2), a(3)], [o(0), o(1), o(2), o(3)]),
            8 => $($k)::+::<8, false>(w, nb, std::array::from_fn(a), std::array::from_fn(o)),
            _ => $crate::quant::in_calls(acts, out, $again),
        }
    }};
    ($($k:ident)::+, $w:expr, $nb:expr, $acts:expr, $out:expr, $again:expr) => {{
        let (w, nb, acts, out): (_, usize, &[&[u8]], &[*mut f32]) = ($w, $nb, $acts, $out);
        let (a, o) = (|i: usize| acts[i], |i: usize| out[i]);
        match acts.len() {
            1 => $($k)::+::<1>(w, nb, [a(0)], [o(0)]),
            2 => $($k)::+::<2>(w, nb, [a(0), a(1)], [o(0), o(1)]),
            3 => $($k)::+::<3>(w, nb, [a(0), a(1), a(2)], [o(0), o(1), o(2)]),
            4 => $($k)::+::<4>(w, nb, [a(0), a(1), a(2), a(3)], [o(0), o(1), o(2), o(3)]),
            8 => $($k)::+::<8>(w, nb, std::array::from_fn(a), std::array::from_fn(o)),
            _ => $crate::quant::in_calls(acts, out, $again),
        }
    }};
}

pub mod bf16;
pub mod f16;
pub mod layout;
pub mod quantize;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;

use crate::gguf::GgmlType;

/// Elements per block of the legacy formats and of the 8-bit activations.
pub const QK: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ4_0 {
    pub d: [u8; 2], // f16 scale
    pub qs: [u8; 16], // element j in the low nibble of qs[j], element j+16 in the high nibble
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],  // f16 scale
    pub m: [u8; 2],  // f16 minimum: x = q*d + m
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4], // bit j: fifth bit of element j
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2], // f16 of d * sum(qs)
    pub qs: [i8; 32],
}

/// Elements per super-block of the K-quants and of Q8_K.
pub const QK_K: usize = 256;

/// Q4_K: 8 sub-blocks of 32; x = d·sc_j·q − dmin·m_j, with 6-bit sc_j, m_j packed in `scales`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: [u8; 2],    // f16 scale of the sub-block scales
    pub dmin: [u8; 2], // f16 scale of the sub-block minimums
    pub scales: [u8; 12], // see `scalar::scales_mins_k4`
    pub qs: [u8; 128], // per 64 elements, 32 bytes: elements 0..32 low nibbles, 32..64 high nibbles
}

/// Q5_K: as Q4_K plus a fifth bit per element: bit 2i of qh[l] for element 64i+l, bit 2i+1 for 64i+32+l.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// Q6_K: 16 sub-blocks of 16; x = d·sc_j·(q − 32) with 6-bit q and i8 sc_j. Per 128 elements,
/// 64 bytes of `ql` and 32 of `qh`: element l (l < 32) takes the low nibble of ql[l] and bits 0-1 of
/// qh[l]; l+32: low nibble of ql[l+32], bits 2-3; l+64: high nibble of ql[l], bits 4-5; l+96: high
/// nibble of ql[l+32], bits 6-7.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: [u8; 2],
}

/// Q2_K: 16 sub-blocks of 16; x = d·(sc_j & 15)·q − dmin·(sc_j >> 4) with 2-bit q. Per 128
/// elements, 32 bytes of `qs`: element 32k + l (k < 4, l < 32) is bits 2k..2k+2 of qs[l].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2K {
    pub scales: [u8; 16], // sub-block j: scale in the low nibble, minimum in the high nibble
    pub qs: [u8; 64],
    pub d: [u8; 2],    // f16 scale of the scales
    pub dmin: [u8; 2], // f16 scale of the minimums
}

/// Q3_K: 16 sub-blocks of 16; x = d·(s_j − 32)·(q − 4·(1 − h)) with 2-bit q laid out as Q2_K's and a
/// high bit h: bit 4n + k of hmask[l] for element 128n + 32k + l. The 6-bit s_j are packed in 12
/// bytes (see `scalar::scales_q3_k`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: [u8; 2], // f16
}

/// ggml's `kvalues_iq4nl`: the 16 non-linear levels of IQ4_NL and IQ4_XS.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// IQ4_NL: 32 elements, x = d·KVALUES_IQ4NL[q], the 4-bit indices packed as Q4_0's (element j in
/// the low nibble of qs[j], element j+16 in the high nibble).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockIQ4NL {
    pub d: [u8; 2], // f16
    pub qs: [u8; 16],
}

/// IQ4_XS: 8 sub-blocks of 32; x = d·(ls_j − 32)·KVALUES_IQ4NL[q] with a 6-bit ls_j: low 4 bits in
/// nibble j % 2 of scales_l[j / 2], high 2 bits at bits 2j..2j+2 of scales_h. Sub-block j's indices
/// are qs[16j..16j+16], packed as IQ4_NL's.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIQ4XS {
    pub d: [u8; 2],        // f16
    pub scales_h: [u8; 2], // u16
    pub scales_l: [u8; 4],
    pub qs: [u8; 128],
}

/// Q8_K (activations only): 256 i8, an f32 scale, and the sum of each 16 values as i16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: [u8; 4],            // f32
    pub qs: [i8; 256],
    pub bsums: [[u8; 2]; 16], // i16
}

impl BlockQ8K {
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes(self.bsums[j]) as i32
    }
}

macro_rules! zero_default {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: plain byte arrays; all-zero is a valid value.
                unsafe { std::mem::zeroed() }
            }
        }
    )*};
}
zero_default!(BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockIQ4XS, BlockQ8K);


// Every block type is made of byte arrays only (alignment 1), so any byte slice of the right length
// can be viewed as a slice of blocks.
macro_rules! check_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(std::mem::size_of::<$t>() == $n && std::mem::align_of::<$t>() == 1);
    };
}
check_size!(BlockQ4_0, 18);
check_size!(BlockQ4_1, 20);
check_size!(BlockQ5_0, 22);
check_size!(BlockQ5_1, 24);
check_size!(BlockQ8_0, 34);
check_size!(BlockQ8_1, 36);
check_size!(BlockQ4K, 144);
check_size!(BlockQ5K, 176);
check_size!(BlockQ6K, 210);
check_size!(BlockQ8K, 292);
check_size!(BlockQ2K, 84);
check_size!(BlockQ3K, 110);
check_size!(BlockIQ4NL, 18);
check_size!(BlockIQ4XS, 136);

/// Marker for the block types above: plain old data of alignment 1.
///
/// # Safety
/// An implementor must be made of byte arrays only (alignment 1, every bit pattern valid), so any
/// byte slice of a whole number of blocks can be viewed as blocks (`as_blocks`).
pub unsafe trait Block: Copy + Default {}
unsafe impl Block for BlockQ4_0 {}
unsafe impl Block for BlockQ4_1 {}
unsafe impl Block for BlockQ5_0 {}
unsafe impl Block for BlockQ5_1 {}
unsafe impl Block for BlockQ8_0 {}
unsafe impl Block for BlockQ8_1 {}
unsafe impl Block for BlockQ4K {}
unsafe impl Block for BlockQ5K {}
unsafe impl Block for BlockQ6K {}
unsafe impl Block for BlockQ8K {}
unsafe impl Block for BlockQ2K {}
unsafe impl Block for BlockQ3K {}
unsafe impl Block for BlockIQ4NL {}
unsafe impl Block for BlockIQ4XS {}

/// Views bytes as blocks. `bytes.len()` must be a multiple of the block size (checked at load).
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    debug_assert_eq!(n * std::mem::size_of::<B>(), bytes.len());
    // SAFETY: B is POD with alignment 1 and the slice covers n whole blocks of `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const B, n) }
}

pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: as above; the borrow is unique.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut B, n) }
}

pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: B is POD; the byte view covers exactly the blocks.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, std::mem::size_of_val(blocks)) }
}

/// The 8-bit format a weight type's dot product takes its input in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActType {
    /// Plain f32 input (F32/F16 weights).
    F32,
    /// bfloat16 input (BF16 weights), rounded as ggml's `GGML_FP32_TO_BF16`.
    BF16,
    Q8_0,
    Q8_1,
    /// Super-blocks of 256 for the K-quants.
    Q8K,
}

/// How many `ActType`s there are (their `as usize` values are 0..ACT_TYPES).
pub const ACT_TYPES: usize = 5;
const _: () = assert!(ActType::Q8K as usize == ACT_TYPES - 1);

/// Weight formats with a matmul kernel.
pub fn act_type(ty: GgmlType) -> Option<ActType> {
    use GgmlType::*;
    match ty {
        F32 | F16 => Some(ActType::F32),
        BF16 => Some(ActType::BF16),
        Q4_0 | Q5_0 | Q8_0 | IQ4NL => Some(ActType::Q8_0),
        Q4_1 | Q5_1 => Some(ActType::Q8_1),
        Q2K | Q3K | Q4K | Q5K | Q6K | IQ4XS => Some(ActType::Q8K),
        _ => None,
    }
}

/// In wasm an 8-bit activation row also carries 64 more bytes per block, made once per row instead
/// of once per weight row that meets it (`simd128::widen_act`): its values widened to i16 (plain
/// SIMD multiplies i16 lanes), or with relaxed SIMD their positive and negative parts (7-bit
/// operands against 8-bit weights).
const ACT_I16: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// Bytes of one activation row of `n` values (n a multiple of 32 for the 8-bit types, of 256 for
/// Q8_K): the blocks, their scales as f32 arrays (d, and s for Q8_1, converted once per row so the
/// kernels need not convert them for every weight row), in wasm for Q8_0 each block's Σq as i32,
/// and in wasm the 64 bytes per block of `ACT_I16`. (Q8_K's scale is already f32 and it has no
/// such copy.)
pub fn act_bytes(at: ActType, n: usize) -> usize {
    let wide = if ACT_I16 { n * 2 } else { 0 };
    match at {
        ActType::F32 => n * 4,
        ActType::BF16 => n * 2,
        ActType::Q8_0 => n / QK * (34 + 4 + if ACT_I16 { 4 } else { 0 }) + wide,
        ActType::Q8_1 => n / QK * (36 + 8) + wide,
        ActType::Q8K => n / QK_K * 292,
    }
}

/// `N` Q8_K activation rows (as `quantize_act` lays them out) as blocks of `nb`, for the K-quant
/// kernels; a row too short for `nb` blocks is a bug in the caller, and panics.
#[inline(always)]
pub fn q8k_rows<const N: usize>(a: [&[u8]; N], nb: usize) -> [&[BlockQ8K]; N] {
    let bytes = nb * std::mem::size_of::<BlockQ8K>();
    std::array::from_fn(|t| {
        assert!(a[t].len() >= bytes, "activation row too short: {} < {bytes}", a[t].len());
        as_blocks(&a[t][..bytes])
    })
}

/// Bytes of the 8-bit blocks alone at the start of an activation row.
pub fn act_block_bytes(at: ActType, n: usize) -> usize {
    match at {
        ActType::F32 => n * 4,
        ActType::BF16 => n * 2,
        ActType::Q8_0 => n / QK * 34,
        ActType::Q8_1 => n / QK * 36,
        ActType::Q8K => n / QK_K * 292,
    }
}

/// Quantizes one activation row `x` into `out` (`act_bytes(at, x.len())` bytes).
pub fn quantize_act(at: ActType, x: &[f32], out: &mut [u8]) {
    let nb = x.len() / QK;
    let (blocks, scales) = out.split_at_mut(act_block_bytes(at, x.len()));
    match at {
        ActType::F32 => {
            for (o, v) in blocks.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        ActType::BF16 => {
            for (o, &v) in blocks.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&bf16::from_f32(v).to_le_bytes());
            }
        }
        ActType::Q8_0 => {
            quantize_q8_0(x, as_blocks_mut(blocks));
            let (ds, _rest) = scales.split_at_mut(nb * 4);
            for (o, b) in ds.chunks_exact_mut(4).zip(as_blocks::<BlockQ8_0>(blocks)) {
                o.copy_from_slice(&f16::le(b.d).to_le_bytes());
            }
            // wasm: each block's Σq as i32 (Q4_0/Q5_0's relaxed kernels subtract k·Σq), then
            // the values as i16 or their 7-bit parts (`ACT_I16`)
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                let (sums, wide) = _rest.split_at_mut(nb * 4);
                for (o, b) in sums.chunks_exact_mut(4).zip(as_blocks::<BlockQ8_0>(blocks)) {
                    o.copy_from_slice(&b.qs.iter().map(|&q| q as i32).sum::<i32>().to_le_bytes());
                }
                simd128::widen_act(as_blocks::<BlockQ8_0>(blocks), |b| &b.qs, wide);
            }
        }
        ActType::Q8_1 => {
            quantize_q8_1(x, as_blocks_mut(blocks));
            let (ds, rest) = scales.split_at_mut(nb * 4);
            let (ss, _wide) = rest.split_at_mut(nb * 4);
            for ((od, os), b) in ds.chunks_exact_mut(4).zip(ss.chunks_exact_mut(4)).zip(as_blocks::<BlockQ8_1>(blocks)) {
                od.copy_from_slice(&f16::le(b.d).to_le_bytes());
                os.copy_from_slice(&f16::le(b.s).to_le_bytes());
            }
            // (with relaxed SIMD, Q4_1/Q5_1 multiply the 8-bit values themselves)
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(target_feature = "relaxed-simd")))]
            simd128::widen_act(as_blocks::<BlockQ8_1>(blocks), |b| &b.qs, _wide);
        }
        ActType::Q8K => quantize_q8_k(x, as_blocks_mut(blocks)),
    }
}

pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::quantize_q8_0(x, out);
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 and F16C are available (checked).
        return unsafe { avx2::quantize_q8_0(x, out) };
    }
    #[allow(unreachable_code)]
    scalar::quantize_q8_0(x, out)
}

pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::quantize_q8_1(x, out);
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 and F16C are available (checked).
        return unsafe { avx2::quantize_q8_1(x, out) };
    }
    #[allow(unreachable_code)]
    scalar::quantize_q8_1(x, out)
}

/// One weight row `w` (of `n` values in format `ty`) · one activation row `a` (as `quantize_act`
/// lays it out).
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut out = 0f32;
    // SAFETY: one row, one output.
    unsafe { dot_rows(ty, n, w, &[a], &[&mut out as *mut f32]) };
    out
}

/// `again` on the rows of `acts` (and their `out`) in turn, as many at a time as `rows_per_call`
/// says (`by_row_count!`'s counts with no kernel of their own).
#[allow(dead_code)]
fn in_calls(acts: &[&[u8]], out: &[*mut f32], again: impl Fn(&[&[u8]], &[*mut f32])) {
    let mut t = 0;
    while t < acts.len() {
        let c = rows_per_call(acts.len() - t);
        again(&acts[t..t + c], &out[t..t + c]);
        t += c;
    }
}

/// Most activation rows one kernel call takes (a weight row is unpacked once for all of them).
pub const MAX_ROWS: usize = 8;

/// How many of `left` activation rows the next kernel call should take: 8, 4 or what is left (the
/// kernels are compiled for 1, 2, 3, 4 and 8 rows).
pub fn rows_per_call(left: usize) -> usize {
    if left >= 8 {
        8
    } else {
        left.min(4)
    }
}

/// `*out[t].add(r) = W[r] · acts[t]` for every row r of `w` (whole rows of `n` values in format
/// `ty`) and any number of activation rows (laid out by `quantize_act`; `MAX_ROWS` at most per
/// kernel call, so a weight block is unpacked once for that many). The results are
/// bit-identical to the scalar reference row by row, whatever the number of activation rows.
///
/// # Safety
/// Each `out[t]` must be valid for writing `w.len() / row_bytes` floats.
pub unsafe fn dot_rows(ty: GgmlType, n: usize, w: &[u8], acts: &[&[u8]], out: &[*mut f32]) {
    use GgmlType::*;
    debug_assert!(out.len() >= acts.len());
    let w_bytes = w;
    macro_rules! go {
        ($m:ident :: $f:ident) => {
            go!($m::$f, QK)
        };
        ($m:ident :: $f:ident, $block:expr) => {{
            let again = |a: &[&[u8]], o: &[*mut f32]| dot_rows(ty, n, w_bytes, a, o);
            by_row_count!($m::$f, as_blocks(w), n / $block, acts, out, again);
            return;
        }};
        (touch $m:ident :: $f:ident) => {
            go!(touch $m::$f, QK)
        };
        (touch $m:ident :: $f:ident, $block:expr) => {{
            let again = |a: &[&[u8]], o: &[*mut f32]| dot_rows(ty, n, w_bytes, a, o);
            by_row_count!(touch $m::$f, as_blocks(w), n / $block, acts, out, again);
            return;
        }};
    }
    // BF16: rows of `n` values against BF16 activation rows, one pair at a time
    #[allow(unused_macros)]
    macro_rules! bf16_rows {
        ($f:expr) => {{
            let rb = 2 * n;
            for (r, row) in w.chunks_exact(rb.max(1)).enumerate() {
                for (a, o) in acts.iter().zip(out) {
                    *o.add(r) = $f(n, row, a);
                }
            }
            return;
        }};
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        match ty {
            Q4K => go!(avx512::rows_q4_k, QK_K),
            Q6K => go!(avx512::rows_q6_k, QK_K),
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        match ty {
            BF16 => bf16_rows!(avx2::dot_bf16),
            IQ4NL => go!(avx2::rows_iq4_nl),
            Q2K => go!(avx2::rows_q2_k, QK_K),
            Q3K => go!(avx2::rows_q3_k, QK_K),
            Q4K => go!(avx2::rows_q4_k, QK_K),
            Q5K => go!(avx2::rows_q5_k, QK_K),
            Q6K => go!(avx2::rows_q6_k, QK_K),
            IQ4XS => go!(avx2::rows_iq4_xs, QK_K),
            Q4_0 => go!(avx2::rows_q4_0),
            Q4_1 => go!(avx2::rows_q4_1),
            Q5_0 => go!(avx2::rows_q5_0),
            Q5_1 => go!(avx2::rows_q5_1),
            Q8_0 => go!(avx2::rows_q8_0),
            _ => {}
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    match ty {
        BF16 => bf16_rows!(simd128::dot_bf16),
        IQ4NL => go!(touch simd128::rows_iq4_nl),
        Q2K => go!(simd128::rows_q2_k, QK_K),
        Q3K => go!(simd128::rows_q3_k, QK_K),
        Q4K => go!(touch simd128::rows_q4_k, QK_K),
        Q5K => go!(simd128::rows_q5_k, QK_K),
        Q6K => go!(touch simd128::rows_q6_k, QK_K),
        IQ4XS => go!(simd128::rows_iq4_xs, QK_K),
        Q4_0 => go!(touch simd128::rows_q4_0),
        Q4_1 => go!(touch simd128::rows_q4_1),
        Q5_0 => go!(touch simd128::rows_q5_0),
        Q5_1 => go!(touch simd128::rows_q5_1),
        Q8_0 => go!(touch simd128::rows_q8_0),
        _ => {}
    }
    let Some(at) = act_type(ty) else {
        for o in out {
            for r in 0..w.len() / row_bytes(ty, n).max(1) {
                *o.add(r) = f32::NAN;
            }
        }
        return;
    };
    let rb = row_bytes(ty, n).max(1);
    let bb = act_block_bytes(at, n);
    for (r, row) in w.chunks_exact(rb).enumerate() {
        for (a, o) in acts.iter().zip(out) {
            *o.add(r) = scalar::vec_dot(ty, n, row, &a[..bb.min(a.len())]);
        }
    }
}

/// Bytes of one row of `n` values in format `ty`.
pub fn row_bytes(ty: GgmlType, n: usize) -> usize {
    ty.bytes_for(n as u64).unwrap_or(0) as usize
}

/// x → Q8_K, bit-identical to `scalar::quantize_q8_k` on every target (so native and wasm
/// quantize activations identically).
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd128::quantize_q8_k(x, out);
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 and F16C are available (checked).
        return unsafe { avx2::quantize_q8_k(x, out) };
    }
    #[allow(unreachable_code)]
    scalar::quantize_q8_k(x, out)
}

pub fn dequantize_row(ty: GgmlType, w: &[u8], out: &mut [f32]) {
    scalar::dequantize_row(ty, w, out)
}
