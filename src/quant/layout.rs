//! Where a weight matrix's blocks lie in memory. GGUF stores a matrix row after row; a kernel that
//! takes four rows at a time (one row per vector lane) can read them with fewer instructions when
//! the four rows' blocks are interleaved, so a build may rearrange a matrix once, when it loads.
//!
//! `Layout::Groups4` (Q4_1, Q8_0, Q4_K and Q6_K, wasm with relaxed SIMD): rows in groups of four;
//! for each block index b (a super-block for the K-quants), the four rows' blocks as one run of
//! bytes: first their heads (row 0 first; Q4_1 and Q4_K: f16 scale and minimum, 4 bytes each;
//! Q8_0 and Q6_K: the f16 scale, 2 bytes each — Q6_K's is the last field of its block), then the
//! rest of each block four bytes at a time — bytes 4j..4j+4 of rows 0, 1, 2, 3 for each j. In a
//! 16-byte vector of those, one row per 32-bit lane, an 8-bit dot product against four activations
//! broadcast to every lane sums each row's products in its own lane, with no horizontal sums
//! (`simd128::rows_q4_1_x4`: the low nibbles are elements 4j..4j+4, the high nibbles 16+4j..;
//! `simd128::rows_q8_0_x4`: the bytes are elements 4j..4j+4; `simd128::rows_q4_k_x4` and
//! `rows_q6_k_x4` say where their scales and quants fall), and a K-quant's sub-block scales of
//! four rows unpack as one vector.

use super::{dot_rows, row_bytes, scalar};
use crate::gguf::GgmlType;
use std::borrow::Cow;

/// How a matrix's blocks lie in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// As in the file: row after row.
    Rows,
    /// Q4_1, Q8_0, Q4_K or Q6_K in groups of four rows, interleaved block by block (see the
    /// module's comment).
    Groups4,
}

/// A `Groups4` type's block: its bytes and, of those, its head's and where the head starts in
/// the block (the rest are taken four bytes at a time).
#[derive(Clone, Copy)]
struct Grouped {
    block: usize,
    head: usize,
    head_from: usize,
}

impl Grouped {
    fn of(ty: GgmlType) -> Option<Grouped> {
        use std::mem::size_of;
        match ty {
            GgmlType::Q4_1 => Some(Grouped { block: size_of::<super::BlockQ4_1>(), head: 4, head_from: 0 }),
            GgmlType::Q8_0 => Some(Grouped { block: size_of::<super::BlockQ8_0>(), head: 2, head_from: 0 }),
            GgmlType::Q4K => Some(Grouped { block: size_of::<super::BlockQ4K>(), head: 4, head_from: 0 }),
            GgmlType::Q6K => Some(Grouped { block: size_of::<super::BlockQ6K>(), head: 2, head_from: size_of::<super::BlockQ6K>() - 2 }),
            _ => None,
        }
    }

    /// Where, in a block as the file stores it, its four-byte piece j (of the bytes after the head
    /// is taken out) starts.
    fn rest_from(self, j: usize) -> usize {
        if 4 * j < self.head_from {
            4 * j
        } else {
            4 * j + self.head
        }
    }

    /// Where, in a group's block index (4 · `block` bytes), row k's head and its piece j (bytes
    /// 4j..4j+4 of the rest) lie.
    fn head_at(self, k: usize) -> usize {
        self.head * k
    }
    fn quants_at(self, k: usize, j: usize) -> usize {
        4 * self.head + 16 * j + 4 * k
    }

    /// Row k's block as (offset in the group's block index, offset in the block, length) pieces.
    fn pieces(self, k: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        std::iter::once((self.head_at(k), self.head_from, self.head))
            .chain((0..(self.block - self.head) / 4).map(move |j| (self.quants_at(k, j), self.rest_from(j), 4)))
    }
}

/// The layout this build's kernels read fastest for a matrix of `rows` rows of `ty`.
pub fn for_build(ty: GgmlType, rows: usize) -> Layout {
    if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) && fits(Layout::Groups4, ty, rows) {
        return Layout::Groups4;
    }
    Layout::Rows
}

/// Whether a matrix of `rows` rows of `ty` can be held in `layout`.
pub fn fits(layout: Layout, ty: GgmlType, rows: usize) -> bool {
    match layout {
        Layout::Rows => true,
        Layout::Groups4 => Grouped::of(ty).is_some() && rows.is_multiple_of(4),
    }
}

/// Rearranges a matrix of `ty` with rows of `n` values, stored row after row in `data`, into
/// `layout`, in place (one group of rows of scratch).
///
/// # Panics
/// If the matrix cannot be held in `layout` (`fits`) or `data` is not whole rows.
pub fn arrange(layout: Layout, ty: GgmlType, n: usize, data: &mut [u8]) {
    let rb = row_bytes(ty, n);
    if layout == Layout::Rows || rb == 0 {
        return;
    }
    assert!(data.len().is_multiple_of(rb) && fits(layout, ty, data.len() / rb), "{ty:?} cannot be held in {layout:?}");
    let gt = Grouped::of(ty).expect("a grouped type");
    let nb = rb / gt.block;
    let mut rows4 = vec![0u8; 4 * rb];
    for group in data.chunks_exact_mut(4 * rb) {
        rows4.copy_from_slice(group);
        for b in 0..nb {
            let g = &mut group[4 * b * gt.block..4 * (b + 1) * gt.block];
            for k in 0..4 {
                let x = &rows4[k * rb + b * gt.block..k * rb + (b + 1) * gt.block];
                for (at, from, len) in gt.pieces(k) {
                    g[at..at + len].copy_from_slice(&x[from..from + len]);
                }
            }
        }
    }
}

/// Row `r` of a matrix in `layout` (`ty`, rows of `n` values), as the file stores it.
pub fn row(layout: Layout, ty: GgmlType, n: usize, data: &[u8], r: usize) -> Cow<'_, [u8]> {
    let rb = row_bytes(ty, n);
    match layout {
        Layout::Rows => Cow::Borrowed(&data[r * rb..(r + 1) * rb]),
        Layout::Groups4 => {
            let gt = Grouped::of(ty).expect("a grouped type");
            let k = r % 4;
            let group = &data[(r - k) * rb..(r - k + 4) * rb];
            let mut out = vec![0u8; rb];
            for (b, x) in out.chunks_exact_mut(gt.block).enumerate() {
                let g = &group[4 * b * gt.block..4 * (b + 1) * gt.block];
                for (at, from, len) in gt.pieces(k) {
                    x[from..from + len].copy_from_slice(&g[at..at + len]);
                }
            }
            Cow::Owned(out)
        }
    }
}

/// `dot_rows` for weights in `layout`: the rows in `w` (whole groups of the layout) against each
/// activation row in `acts`, row r's result to `out[t].add(r)`.
///
/// # Safety
/// As `dot_rows`: each `out[t]` valid for one write per weight row.
// (the reference path is unreachable in the builds that have a kernel for every count)
#[allow(unreachable_code)]
pub unsafe fn dot_rows_in(layout: Layout, ty: GgmlType, n: usize, w: &[u8], acts: &[&[u8]], out: &[*mut f32]) {
    if layout == Layout::Rows {
        return dot_rows(ty, n, w, acts, out);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    {
        let again = |a: &[&[u8]], o: &[*mut f32]| dot_rows_in(layout, ty, n, w, a, o);
        match ty {
            GgmlType::Q4_1 => by_row_count!(touch super::simd128::rows_q4_1_x4, w, n / super::QK, acts, out, again),
            GgmlType::Q8_0 => by_row_count!(touch super::simd128::rows_q8_0_x4, w, n / super::QK, acts, out, again),
            GgmlType::Q4K => by_row_count!(touch super::simd128::rows_q4_k_x4, w, n / super::QK_K, acts, out, again),
            GgmlType::Q6K => by_row_count!(touch super::simd128::rows_q6_k_x4, w, n / super::QK_K, acts, out, again),
            _ => unreachable!("{ty:?} is not held in groups (`fits`)"),
        }
        return;
    }
    // any other build: row by row, through the reference
    let rb = row_bytes(ty, n).max(1);
    let bb = super::act_block_bytes(super::act_type(ty).expect("a quantized type"), n);
    for r in 0..w.len() / rb {
        let row = row(layout, ty, n, w, r);
        for (a, o) in acts.iter().zip(out) {
            *o.add(r) = scalar::vec_dot(ty, n, &row, &a[..bb.min(a.len())]);
        }
    }
}
