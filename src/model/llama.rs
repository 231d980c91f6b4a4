//! The llama family: Llama 2/3.x, SmolLM/SmolLM2, TinyLlama — and `qwen2`, the same blocks with
//! q/k/v biases (loaded whenever present, as llama.cpp does) and NEOX rope.
//!
//! Block (pre-norm, residual):
//!   x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
//!   x += Wdown · (silu(Wgate·norm(x)) * (Wup·norm(x)))
//! Rope pairs adjacent values for `llama` (its GGUFs store q/k permuted for llama.cpp's NORM rope)
//! and halves for `qwen2`; Llama 3 divides each pair's frequency by `rope_freqs.weight`.

use super::blocks::{rms_norm, Attention, AttnCall, Ffn, RopeParams, Scratch};
use super::{Activation, Family, Loader};
use crate::config::{Config, RopeStyle};
use crate::error::Result;
use crate::gguf::GgmlType;
use crate::kv_cache::KvCache;

pub struct Block {
    pub attn_norm: Vec<f32>, // (n_embd)
    pub attn: Attention,
    pub ffn_norm: Vec<f32>, // (n_embd)
    pub ffn: Ffn,
}

pub struct Llama {
    pub blocks: Vec<Block>,
    /// Llama 3 rope frequency factors, one per rotated pair: (rope_dim/2)
    pub rope_freqs: Option<Vec<f32>>,
}

impl Block {
    /// Layer `i`'s tensors; `qk_norm`: with per-head q/k norms (qwen3).
    pub fn load(l: &mut Loader<'_>, c: &Config, i: usize, qk_norm: bool) -> Result<Block> {
        Ok(Block {
            attn_norm: l.vector(&format!("blk.{i}.attn_norm.weight"), c.n_embd)?,
            attn: Attention::load(l, c, i, qk_norm)?,
            ffn_norm: l.vector(&format!("blk.{i}.ffn_norm.weight"), c.n_embd)?,
            ffn: Ffn::load(l, c, i)?,
        })
    }
}

pub fn load(l: &mut Loader<'_>, c: &mut Config) -> Result<Box<dyn Family>> {
    c.rope_style = if c.arch == "qwen2" { RopeStyle::Neox } else { RopeStyle::Norm };
    let blocks = (0..c.n_layer).map(|i| Block::load(l, c, i, false)).collect::<Result<Vec<_>>>()?;
    let rope_freqs = l.opt_vector("rope_freqs.weight", c.rope_dim / 2)?;
    Ok(Box::new(Llama { blocks, rope_freqs }))
}

/// One pre-norm block as llama has it: attention then SwiGLU, each added to the stream.
pub fn block(c: &Config, b: &Block, call: &AttnCall, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
    let e = c.n_embd;
    rms_norm(&s.x[..n * e], &b.attn_norm, c.rms_eps, &mut s.xb[..n * e]);
    b.attn.forward(c, call, kv, s, p0, n);
    super::blocks::add_into(&mut s.x[..n * e], &s.xb[..n * e]);
    rms_norm(&s.x[..n * e], &b.ffn_norm, c.rms_eps, &mut s.xb[..n * e]);
    b.ffn.forward(c, Activation::Silu, s, n);
    super::blocks::add_into(&mut s.x[..n * e], &s.xb[..n * e]);
}

impl Family for Llama {
    fn blocks(&self, c: &Config, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
        let rope = RopeParams { base: c.rope_base, freq_scale: c.rope_freq_scale, factors: self.rope_freqs.as_deref() };
        s.rope[0].fill(c, &rope, p0, n);
        for (li, b) in self.blocks.iter().enumerate() {
            let call = AttnCall { slot: li, rope: 0, q_scale: None, kq_scale: 1.0 / (c.head_dim as f32).sqrt(), window: None };
            block(c, b, &call, kv, s, p0, n);
        }
    }

    fn weight_bytes(&self) -> usize {
        self.blocks.iter().map(|b| (b.attn_norm.len() + b.ffn_norm.len()) * 4 + b.attn.bytes() + b.ffn.bytes()).sum::<usize>()
            + self.rope_freqs.as_ref().map_or(0, |f| f.len() * 4)
    }

    fn main_type(&self) -> GgmlType {
        self.blocks[0].attn.wq.ty
    }
}
