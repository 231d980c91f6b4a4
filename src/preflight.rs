//! What a model will need in memory, from its GGUF header alone: read before any download, so a
//! model or context too large for the device is refused with the numbers (and what would fit)
//! instead of failing after a gigabyte has been fetched.
//!
//! The estimate follows what the loader and the session allocate: every tensor as stored (F16
//! vectors become f32), the f16 KV cache, the batch buffers of `Scratch`, and the header's own
//! parse plus the tokenizer built from it.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf};
use crate::session::DEFAULT_BATCH;
use crate::source::{ByteSource, SeqReader};

/// Bytes of memory a loaded model needs, by what holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    pub n_ctx: usize,
    /// The weights as the engine keeps them.
    pub weights: u64,
    /// The f16 KV cache for `n_ctx` tokens.
    pub kv_cache: u64,
    /// Batch buffers, logits, the parsed header and the tokenizer.
    pub fixed: u64,
    /// Bytes per token of context (the KV cache's), to say what context would fit.
    pub per_token: u64,
}

impl MemoryNeed {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.fixed
    }

    /// The largest context that fits in `budget` bytes (0 when even the weights do not).
    pub fn max_context(&self, budget: u64) -> u64 {
        let base = self.weights + self.fixed;
        if budget <= base {
            0
        } else {
            (budget - base) / self.per_token.max(1)
        }
    }
}

/// The estimate for `g` at `n_ctx` tokens (0: the model's own context, at most 4096, as sessions
/// default to). `header_bytes` is the size of the GGUF header (metadata and tensor table).
pub fn estimate(g: &Gguf, header_bytes: u64, n_ctx: usize) -> Result<MemoryNeed> {
    let arch = g.str("general.architecture")?;
    if !crate::model::FAMILIES.iter().any(|f| f.0 == arch) {
        return Err(Error::UnsupportedArchitecture(arch.to_string()));
    }
    // The cache is sized as if every layer had full-width attention (an upper bound: Gemma's
    // local layers and LFM2's convolution layers keep less).
    let c = Config::from_gguf(g, arch)?;
    let n_ctx = if n_ctx == 0 { c.n_ctx_train.min(4096) } else { n_ctx };
    let weights: u64 = g
        .tensors
        .iter()
        .map(|t| if t.dims.len() == 1 && t.ty == GgmlType::F16 { t.size * 2 } else { t.size })
        .sum();
    let kv_dim = c.kv_dim() as u64;
    let kv_token = 2 * c.n_layer as u64 * kv_dim * 2; // K and V, every layer, f16
    let b = DEFAULT_BATCH.min(n_ctx) as u64;
    let (e, q, ff) = (c.n_embd as u64, c.q_dim() as u64, c.n_ff as u64);
    let batch = b * (2 * e + 2 * q + 2 * kv_dim + 2 * ff) * 4 + b * e.max(ff) * 3;
    let vocab = c.vocab_size as u64;
    // The parsed metadata (strings, arrays) is a small multiple of its bytes; the tokenizer's maps
    // cost about 100 bytes per token beyond that.
    let fixed = batch + vocab * 4 + 4 * header_bytes + 100 * vocab + (16 << 20);
    let n = n_ctx as u64;
    Ok(MemoryNeed { n_ctx, weights, kv_cache: kv_token * n, fixed, per_token: kv_token })
}

/// The first bytes of a file of `len` bytes, read as a byte source: a read past them fails and
/// records how many bytes it would have needed.
pub struct Prefix<'a> {
    pub bytes: &'a [u8],
    pub len: u64,
    /// Bytes a failed read wanted (0: none failed).
    pub wanted: u64,
}

impl ByteSource for Prefix<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.bytes.len() as u64 {
            self.wanted = self.wanted.max(end);
            return Err(Error::Truncated { context: "header prefix".into(), offset, needed: buf.len() as u64, available: 0 });
        }
        buf.copy_from_slice(&self.bytes[offset as usize..end as usize]);
        Ok(())
    }
}

/// The outcome of parsing a file's first bytes.
pub enum Preflight {
    /// The header ends beyond the bytes given: read at least this many and try again.
    NeedBytes(u64),
    Need(MemoryNeed),
}

/// Parses the header from `prefix`, the first bytes of a GGUF of `file_len` bytes (of a split model: the
/// first shard's first bytes, and the size of all its shards).
pub fn preflight(prefix: &[u8], file_len: u64, n_ctx: usize) -> Result<Preflight> {
    let mut src = Prefix { bytes: prefix, len: file_len, wanted: 0 };
    let parsed = Gguf::read(&mut SeqReader::new(&mut src), file_len);
    match parsed {
        Ok(g) => {
            let header = g.data_offset;
            let mut need = estimate(&g, header, n_ctx)?;
            // The first shard of a split model lists only its own tensors: `file_len` is then the size of
            // all shards, and their bytes beyond this header are the weights (an upper bound).
            if g.split()?.is_some() {
                need.weights = need.weights.max(file_len.saturating_sub(header));
            }
            Ok(Preflight::Need(need))
        }
        // Ran out of the prefix (not of the file): more bytes are needed.
        Err(_) if src.wanted > prefix.len() as u64 && (prefix.len() as u64) < file_len => {
            Ok(Preflight::NeedBytes(src.wanted.min(file_len)))
        }
        Err(e) => Err(e),
    }
}
