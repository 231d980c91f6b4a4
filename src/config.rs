//! The hyper-parameters every architecture shares, read once from GGUF metadata (`{arch}.*` keys)
//! into a plain struct. What only one family has (Gemma's sliding window, LFM2's convolution
//! length) lives in that family's module (`model::*`), read there from the same metadata.

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// Upper bounds that keep a crafted header from sizing huge buffers (the largest models we
/// target are far below them).
pub const MAX_LAYERS: u32 = 256;
pub const MAX_EMBD: u32 = 16384;
pub const MAX_FF: u32 = 65536;
pub const MAX_HEADS: u32 = 256;
pub const MAX_HEAD_DIM: u32 = 512;
pub const MAX_VOCAB: u32 = 1 << 20;

/// How rope pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama GGUFs store q/k permuted for llama.cpp's NORM rope.
    Norm,
    /// Halves (i, i + d/2): GPT-NeoX / Qwen2.
    Neox,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `general.architecture`: the family (`model::FAMILIES`) and the metadata key prefix.
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Dimensions of each head that rope rotates (the first `rope_dim`).
    pub rope_dim: usize,
    pub rope_base: f32,
    /// Linear position scaling (1 / scaling factor); 1.0 when none.
    pub rope_freq_scale: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    /// The context length the model was trained with.
    pub n_ctx_train: usize,
    pub vocab_size: usize,
}

impl Config {
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// `{arch}.{k}`: a metadata key of this architecture.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// The shared keys of architecture `arch_name` (which the caller has recognised). Rope pairs
    /// adjacent values (`RopeStyle::Norm`) unless the family says otherwise.
    pub fn from_gguf(g: &Gguf, arch_name: &str) -> Result<Config> {
        let arch = arch_name.to_string();
        let rope_style = RopeStyle::Norm;
        let key = |k: &str| format!("{arch_name}.{k}");
        let bounded = |k: &str, max: u32| -> Result<usize> {
            let v = g.u32(&key(k))?;
            if v == 0 || v > max {
                return Err(Error::BadMetadata { key: key(k), reason: format!("{v} is not in 1..={max}") });
            }
            Ok(v as usize)
        };
        let n_layer = bounded("block_count", MAX_LAYERS)?;
        let n_embd = bounded("embedding_length", MAX_EMBD)?;
        let n_ff = bounded("feed_forward_length", MAX_FF)?;
        let n_head = bounded("attention.head_count", MAX_HEADS)?;
        // one value, or one per layer (LFM2: 0 on its convolution layers); the widest is the
        // cache's row width
        let n_head_kv = match g.get(&key("attention.head_count_kv")) {
            None => n_head,
            Some(Value::Array(_)) => {
                let per_layer = layer_u32s(g, &key("attention.head_count_kv"), n_layer)?;
                match per_layer.iter().copied().max() {
                    Some(m) if m > 0 && m <= MAX_HEADS as usize => m,
                    _ => return Err(Error::BadMetadata { key: key("attention.head_count_kv"), reason: "no layer has heads".into() }),
                }
            }
            Some(_) => bounded("attention.head_count_kv", MAX_HEADS)?,
        };
        let head_dim = match g.opt_u32(&key("attention.key_length"))? {
            Some(_) => bounded("attention.key_length", MAX_HEAD_DIM)?,
            None => n_embd / n_head,
        };
        let rope_dim = match g.opt_u32(&key("rope.dimension_count"))? {
            Some(_) => bounded("rope.dimension_count", MAX_HEAD_DIM)?,
            None => head_dim,
        };
        let rope_base = g.opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
        let rope_freq_scale = match g.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => {
                let f = g.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if f > 0.0 { 1.0 / f } else { 1.0 }
            }
            Some(other) => {
                return Err(Error::BadMetadata {
                    key: key("rope.scaling.type"),
                    reason: format!("unsupported rope scaling {other:?}"),
                })
            }
        };
        let rms_eps = g.opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let n_ctx_train = g.opt_u32(&key("context_length"))?.unwrap_or(2048).max(1) as usize;
        let vocab_size = match g.opt_u32(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => match g.get("tokenizer.ggml.tokens") {
                Some(crate::gguf::Value::Array(a)) => a.len(),
                _ => return Err(Error::MissingMetadata(key("vocab_size"))),
            },
        };
        let c = Config {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim,
            rope_base,
            rope_freq_scale,
            rope_style,
            rms_eps,
            n_ctx_train,
            vocab_size,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::BadConfig(m));
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!("{} heads is not a multiple of {} kv heads", self.n_head, self.n_head_kv));
        }
        if !self.head_dim.is_multiple_of(2) || !self.rope_dim.is_multiple_of(2) || self.rope_dim > self.head_dim {
            return bad(format!("head dim {} / rope dim {} must be even, rope ≤ head", self.head_dim, self.rope_dim));
        }
        for (name, v) in [("embedding length", self.n_embd), ("feed-forward length", self.n_ff), ("q dim", self.q_dim())] {
            if !v.is_multiple_of(32) {
                return bad(format!("{name} {v} is not a multiple of 32"));
            }
        }
        if self.vocab_size == 0 || self.vocab_size > MAX_VOCAB as usize {
            return bad(format!("vocabulary size {} is not in 1..={MAX_VOCAB}", self.vocab_size));
        }
        // written so that a NaN fails them too
        #[allow(clippy::nonminimal_bool, clippy::neg_cmp_op_on_partial_ord)]
        let bad_floats = !(self.rms_eps > 0.0 && self.rms_eps < 1.0) || !(self.rope_base > 0.0);
        if bad_floats {
            return bad(format!("rms eps {} / rope base {} out of range", self.rms_eps, self.rope_base));
        }
        Ok(())
    }
}

/// A per-layer array of `n_layer` unsigned integers (`key` must be an array).
pub fn layer_u32s(g: &Gguf, key: &str, n_layer: usize) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::BadMetadata { key: key.to_string(), reason };
    match g.get(key) {
        Some(Value::Array(a)) if a.len() == n_layer => a
            .to_i64s()
            .ok_or_else(|| bad("expected unsigned integers".to_string()))?
            .into_iter()
            .map(|i| if (0..=u32::MAX as i64).contains(&i) { Ok(i as usize) } else { Err(bad(format!("{i} is not an unsigned integer"))) })
            .collect(),
        Some(Value::Array(a)) => Err(bad(format!("{} values for {n_layer} layers", a.len()))),
        Some(v) => Err(bad(format!("expected an array, found {v:?}"))),
        None => Err(Error::MissingMetadata(key.to_string())),
    }
}
