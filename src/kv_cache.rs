//! What a session keeps per position, preallocated for its context and written in place:
//! - the key/value cache of the attention layers, f16 like llama.cpp's default cache, one block of
//!   (KV heads, rows, head_dim) per attention layer — head-major, so the rows an attention unit
//!   reads (one KV head's) lie one after another in memory: `n_ctx` rows, or for a sliding-window
//!   layer (Gemma's local layers) only `window + n_batch + WINDOW_ROLLBACK` rows used as a ring
//!   (position p at row p % rows) — enough for every key a batch's queries see;
//! - for models with short-convolution layers (LFM2), each such layer's recent convolution inputs
//!   (f32, as llama.cpp's recurrent state), in a ring of `d_conv + CONV_ROLLBACK` rows indexed by
//!   position, so the state can go back a few tokens (a chat turn that re-renders the end of the
//!   previous one) without recomputing. Going back further is refused by `reusable`, and the
//!   session then starts over.

use crate::error::{Error, Result};
use crate::quant::f16;

/// How far back (tokens) a convolution state can be truncated without recomputing.
pub const CONV_ROLLBACK: usize = 64;
/// How far back a sliding-window layer's ring keeps keys beyond what the window needs.
pub const WINDOW_ROLLBACK: usize = 64;

/// The cache's shape, as a family declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheLayout {
    /// Layers with attention (each has a key and a value row per position).
    pub attn_layers: usize,
    /// Values per position of a layer's keys (and of its values): `kv_heads` heads of
    /// `kv_dim / kv_heads`.
    pub kv_dim: usize,
    pub kv_heads: usize,
    /// Per attention layer: its sliding window, if it has one (empty: none has).
    pub windows: Vec<Option<usize>>,
    /// Short-convolution layers: how many, their width, and the past inputs each step reads.
    pub conv_layers: usize,
    pub conv_width: usize,
    pub d_conv: usize,
}

impl CacheLayout {
    /// `layers` attention layers of `kv_heads` KV heads, `kv_dim` values in all, nothing else.
    pub fn attention(layers: usize, kv_heads: usize, kv_dim: usize) -> CacheLayout {
        CacheLayout { attn_layers: layers, kv_dim, kv_heads, windows: Vec::new(), conv_layers: 0, conv_width: 0, d_conv: 0 }
    }
}

pub struct KvCache {
    n_ctx: usize,
    n_batch: usize,
    kv_dim: usize,
    /// values per head (`kv_dim` / KV heads)
    head_dim: usize,
    /// Per attention layer: where its block starts in `k`/`v` (in positions: × kv_dim values),
    /// how many rows each head has (n_ctx, or a ring's), and its window (None: sees every
    /// position).
    layers: Vec<(usize, usize, Option<usize>)>,
    /// Σ rows × kv_dim f16 bits, each layer's block (KV heads, rows, head_dim)
    k: Vec<u16>,
    v: Vec<u16>,
    conv_width: usize,
    d_conv: usize,
    /// Ring rows per conv layer (`d_conv + CONV_ROLLBACK`).
    ring: usize,
    /// (conv_layers, ring, conv_width): position p's row at p % ring
    conv: Vec<f32>,
    /// Positions 0..len hold valid entries.
    len: usize,
}

/// A zeroed buffer of `elems` elements for `what` (None: the size overflowed u64, an impossible
/// context). Sizes are u64, so a context too large for this machine — or for wasm32's address
/// space — is `OutOfMemory` with its real size.
fn alloc<T: Clone + Default>(elems: Option<u64>, n_ctx: usize, what: &str) -> Result<Vec<T>> {
    let too_large = || Error::InvalidArgument(format!("context of {n_ctx} tokens is too large"));
    let bytes = elems.and_then(|e| e.checked_mul(std::mem::size_of::<T>() as u64)).ok_or_else(too_large)?;
    let oom = || Error::OutOfMemory { what: format!("{what} of a {n_ctx}-token context"), bytes };
    let n = usize::try_from(elems.unwrap_or(0)).map_err(|_| oom())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    v.resize(n, T::default());
    Ok(v)
}

impl KvCache {
    /// A cache for `n_ctx` positions, written by batches of at most `n_batch` tokens.
    pub fn new(layout: &CacheLayout, n_ctx: usize, n_batch: usize) -> Result<KvCache> {
        let mut layers = Vec::with_capacity(layout.attn_layers);
        let mut total = Some(0u64);
        for i in 0..layout.attn_layers {
            let window = layout.windows.get(i).copied().flatten();
            let rows = window.map_or(n_ctx, |w| n_ctx.min(w.saturating_add(n_batch).saturating_add(WINDOW_ROLLBACK)));
            layers.push((total.unwrap_or(0) as usize, rows, window));
            total = total.and_then(|t| t.checked_add(rows as u64));
        }
        if layout.kv_heads == 0 || !layout.kv_dim.is_multiple_of(layout.kv_heads) {
            return Err(Error::InvalidArgument(format!("{} KV heads do not divide a key of {}", layout.kv_heads, layout.kv_dim)));
        }
        let size = total.and_then(|t| t.checked_mul(layout.kv_dim as u64));
        let k = alloc(size, n_ctx, "the key cache")?;
        let v = alloc(size, n_ctx, "the value cache")?;
        let ring = layout.d_conv + CONV_ROLLBACK;
        let conv = if layout.conv_layers == 0 {
            Vec::new()
        } else {
            let elems = (layout.conv_layers as u64).checked_mul(ring as u64).and_then(|s| s.checked_mul(layout.conv_width as u64));
            alloc(elems, n_ctx, "the convolution state")?
        };
        let head_dim = layout.kv_dim / layout.kv_heads;
        Ok(KvCache { n_ctx, n_batch: n_batch.max(1), kv_dim: layout.kv_dim, head_dim, layers, k, v, conv_width: layout.conv_width, d_conv: layout.d_conv, ring, conv, len: 0 })
    }

    pub fn capacity(&self) -> usize {
        self.n_ctx
    }

    /// The most tokens one forward pass may write.
    pub fn max_batch(&self) -> usize {
        self.n_batch
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets positions from `len` on. With convolution state, only to a length `reusable`
    /// allows (else the state no longer matches the tokens).
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(self.conv.is_empty() || len == 0 || len >= self.len || self.reusable(len) == len);
        self.len = self.len.min(len);
    }

    /// The longest prefix of at most `keep` positions this cache can be truncated to: `keep`,
    /// unless the convolution state of that position has left the ring (then 0, start over).
    pub fn reusable(&self, keep: usize) -> usize {
        let keep = keep.min(self.len);
        // the oldest position the next step reads must not have been overwritten in its ring
        let kept = |reach: usize, rows: usize| keep.saturating_sub(reach) + rows >= self.len;
        let conv_ok = self.conv.is_empty() || kept(self.d_conv, self.ring);
        let attn_ok = self.layers.iter().all(|&(_, rows, w)| w.is_none_or(|w| kept(w - 1, rows)));
        if keep == self.len || (conv_ok && attn_ok) {
            keep
        } else {
            0
        }
    }

    /// Marks positions up to `len` as written (after a forward pass wrote them).
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.n_ctx);
        self.len = len;
    }

    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2 + self.conv.len() * 4
    }

    /// Where head `h`'s row of position `pos` of attention layer `layer` starts in `k`/`v`.
    fn offset(&self, layer: usize, h: usize, pos: usize) -> usize {
        let (start, rows, _) = self.layers[layer];
        start * self.kv_dim + (h * rows + pos % rows) * self.head_dim
    }

    /// Stores the key and value rows (`kv_dim` values, head after head) of one position of
    /// attention layer `layer`, rounded to f16.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.kv_dim / hd {
            let o = self.offset(layer, h, pos);
            let (src_k, src_v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            // branch-free `from_f32`: these loops vectorize
            self.k[o..o + hd].iter_mut().zip(src_k).for_each(|(d, s)| *d = f16::from_f32(*s));
            self.v[o..o + hd].iter_mut().zip(src_v).for_each(|(d, s)| *d = f16::from_f32(*s));
        }
    }

    /// KV head `h`'s keys and values of positions `lo..hi` of an attention layer, as
    /// (head_dim)-row f16 bits in position order: one or, where a ring wraps, two runs of rows.
    pub fn rows(&self, layer: usize, h: usize, lo: usize, hi: usize) -> [(&[u16], &[u16]); 2] {
        let (_, rows, _) = self.layers[layer];
        debug_assert!(lo <= hi && hi - lo <= rows && hi <= self.n_ctx);
        let (d, base) = (self.head_dim, self.offset(layer, h, 0));
        let (a, b) = (lo % rows, lo % rows + (hi - lo));
        let run = |r0: usize, r1: usize| {
            let range = base + r0 * d..base + r1 * d;
            (&self.k[range.clone()], &self.v[range])
        };
        if b <= rows {
            [run(a, b), run(0, 0)]
        } else {
            [run(a, rows), run(0, b - rows)]
        }
    }

    /// Past inputs a convolution step reads (the kernel length minus one).
    pub fn d_conv(&self) -> usize {
        self.d_conv
    }

    /// The convolution input of position `pos` in conv layer `layer` (`conv_width` values). Valid
    /// for the last `d_conv + CONV_ROLLBACK` positions written.
    pub fn conv_row(&self, layer: usize, pos: usize) -> &[f32] {
        let o = (layer * self.ring + pos % self.ring) * self.conv_width;
        &self.conv[o..o + self.conv_width]
    }

    pub fn conv_row_mut(&mut self, layer: usize, pos: usize) -> &mut [f32] {
        let o = (layer * self.ring + pos % self.ring) * self.conv_width;
        &mut self.conv[o..o + self.conv_width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` gives back what `write` stored, head by head, in position order — also where a
    /// sliding window's ring has wrapped (two runs) — and the layers do not overlap.
    #[test]
    fn rows_return_each_heads_writes_in_order() {
        let (heads, hd) = (3, 4);
        let mut layout = CacheLayout::attention(2, heads, heads * hd);
        layout.windows = vec![None, Some(5)];
        let (n_ctx, n_batch) = (200, 2);
        let mut kv = KvCache::new(&layout, n_ctx, n_batch).unwrap();
        // the key of (layer, position, element): an integer below 2048, exact in f16; values are
        // its negation
        let key = |l: usize, p: usize, e: usize| ((l * 512 + p * 13 + e) % 2048) as f32;
        for p in 0..150 {
            for l in 0..2 {
                let k: Vec<f32> = (0..heads * hd).map(|e| key(l, p, e)).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                kv.write(l, p, &k, &v);
            }
            kv.set_len(p + 1);
            for (l, reach) in [(0, p + 1), (1, 5 + n_batch)] {
                let lo = (p + 1).saturating_sub(reach);
                for h in 0..heads {
                    let runs = kv.rows(l, h, lo, p + 1);
                    let got: Vec<(f32, f32)> = runs
                        .iter()
                        .flat_map(|(k, v)| k.iter().zip(v.iter()))
                        .map(|(&k, &v)| (f16::to_f32(k), f16::to_f32(v)))
                        .collect();
                    let want: Vec<(f32, f32)> = (lo..=p).flat_map(|q| (0..hd).map(move |e| (key(l, q, h * hd + e), -key(l, q, h * hd + e)))).collect();
                    assert_eq!(got, want, "layer {l} head {h} positions {lo}..={p}");
                }
            }
        }
    }
}
