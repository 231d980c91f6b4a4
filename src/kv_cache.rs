//! The key/value cache: preallocated for the session's context, written in place, f16 like
//! llama.cpp's default cache. Layout per layer: (n_ctx, kv_dim) rows, one per position.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::quant::f16;

pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    /// (n_layer, n_ctx, kv_dim) f16 bits
    k: Vec<u16>,
    v: Vec<u16>,
    /// Positions 0..len hold valid entries.
    len: usize,
}

impl KvCache {
    pub fn new(cfg: &Config, n_ctx: usize) -> Result<KvCache> {
        let kv_dim = cfg.kv_dim();
        // Sizes in u64, so a context too large for this machine (or for wasm32's address space) is
        // reported with its real size: a product past u64 is an impossible value, anything else is memory.
        let elems = (cfg.n_layer as u64)
            .checked_mul(n_ctx as u64)
            .and_then(|s| s.checked_mul(kv_dim as u64))
            .filter(|s| s.checked_mul(4).is_some())
            .ok_or_else(|| Error::InvalidArgument(format!("context of {n_ctx} tokens is too large")))?;
        let oom = || Error::OutOfMemory { what: format!("the key/value cache of a {n_ctx}-token context"), bytes: elems * 4 };
        let size = usize::try_from(elems).map_err(|_| oom())?;
        let mut k: Vec<u16> = Vec::new();
        let mut v: Vec<u16> = Vec::new();
        k.try_reserve_exact(size).map_err(|_| oom())?;
        v.try_reserve_exact(size).map_err(|_| oom())?;
        k.resize(size, 0);
        v.resize(size, 0);
        Ok(KvCache { n_ctx, kv_dim, k, v, len: 0 })
    }

    pub fn capacity(&self) -> usize {
        self.n_ctx
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Marks positions up to `len` as written (after a forward pass wrote them).
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.n_ctx);
        self.len = len;
    }

    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }

    fn offset(&self, layer: usize, pos: usize) -> usize {
        (layer * self.n_ctx + pos) * self.kv_dim
    }

    /// Stores the key and value rows of one position, rounded to f16.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let o = self.offset(layer, pos);
        for (d, s) in self.k[o..o + self.kv_dim].iter_mut().zip(k) {
            *d = f16::from_f32(*s);
        }
        for (d, s) in self.v[o..o + self.kv_dim].iter_mut().zip(v) {
            *d = f16::from_f32(*s);
        }
    }

    /// Keys of positions 0..n of a layer: (n, kv_dim) f16 bits.
    pub fn keys(&self, layer: usize, n: usize) -> &[u16] {
        let o = self.offset(layer, 0);
        &self.k[o..o + n * self.kv_dim]
    }

    pub fn values(&self, layer: usize, n: usize) -> &[u16] {
        let o = self.offset(layer, 0);
        &self.v[o..o + n * self.kv_dim]
    }
}
