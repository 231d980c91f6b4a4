//! Gemma 3 (llama.cpp's `gemma3`, `src/models/gemma3.cpp`, studied, not copied).
//!
//! Embeddings × √n_embd. Block (pre- and post-norm, residual):
//!   x += post_attention_norm(Wo · attention(rope(q_norm(Wq·norm(x))) · scale, rope(k_norm(Wk·norm(x))), Wv·norm(x)))
//!   x += post_ffw_norm(Wdown · (gelu_tanh(Wgate·norm(x)) * (Wup·norm(x))))
//! NEOX rope. Local layers (all but every `sliding_window_pattern`-th, 6 by default) attend over a
//! sliding window of `attention.sliding_window` keys and turn rope with `rope.freq_base_swa`
//! (10000 by default, no scaling); global layers see every key and use `rope.freq_base`. The query
//! is multiplied by 1/√head_dim (1/√(n_embd/n_head) for the 62-layer 27B) before the f16 kernel,
//! which then uses scale 1, as llama.cpp. Logits are soft-capped when the file sets
//! `final_logit_softcapping`. The norm weights in the GGUF already include Gemma's `1 +`.

use super::blocks::{add_into, rms_norm, Attention, AttnCall, Ffn, RopeParams, Scratch};
use super::{Activation, Family, Loader};
use crate::config::{Config, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Value};
use crate::kv_cache::{CacheLayout, KvCache};

pub struct Block {
    pub attn_norm: Vec<f32>, // (n_embd)
    pub attn: Attention,
    pub post_attention_norm: Vec<f32>, // (n_embd)
    pub ffn_norm: Vec<f32>,            // (n_embd)
    pub ffn: Ffn,
    pub post_ffw_norm: Vec<f32>, // (n_embd)
}

/// What only Gemma 3 has, from `gemma3.*` metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma3Config {
    /// Keys a local layer's query sees (None: every layer is global).
    pub sliding_window: Option<usize>,
    /// Per layer: local (sliding window, local rope base) or global.
    pub is_local: Vec<bool>,
    pub rope_base_local: f32,
    /// Multiplies q before attention.
    pub query_scale: f32,
    /// cap in cap·tanh(logit/cap)
    pub final_logit_softcap: Option<f32>,
    /// √n_embd
    pub embed_scale: f32,
}

impl Gemma3Config {
    pub fn from_gguf(g: &crate::gguf::Gguf, c: &Config) -> Result<Gemma3Config> {
        let window = g.opt_u32(&c.key("attention.sliding_window"))?.filter(|&w| w > 0).map(|w| w as usize);
        let pattern_key = c.key("attention.sliding_window_pattern");
        let is_local = match (window, g.get(&pattern_key)) {
            (None, _) => vec![false; c.n_layer],
            (Some(_), Some(Value::Array(crate::gguf::Array::Bool(b)))) if b.len() == c.n_layer => b.clone(),
            (Some(_), Some(Value::Array(a))) => {
                return Err(Error::BadMetadata { key: pattern_key, reason: format!("{} values for {} layers", a.len(), c.n_layer) })
            }
            (Some(_), _) => {
                // every n-th layer global (n = 0: all local)
                let n = g.opt_u32(&pattern_key)?.unwrap_or(6) as usize;
                (0..c.n_layer).map(|i| n == 0 || i % n < n - 1).collect()
            }
        };
        let rope_base_local = g.opt_f32(&c.key("rope.freq_base_swa"))?.unwrap_or(10000.0);
        let final_logit_softcap = g.opt_f32(&c.key("final_logit_softcapping"))?.filter(|&v| v != 0.0);
        let query_scale = if c.n_layer == 62 { 1.0 / ((c.n_embd / c.n_head) as f32).sqrt() } else { 1.0 / (c.head_dim as f32).sqrt() };
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN fails it too
        let bad_base = !(rope_base_local > 0.0);
        if bad_base {
            return Err(Error::BadConfig(format!("local rope base {rope_base_local}")));
        }
        Ok(Gemma3Config { sliding_window: window, is_local, rope_base_local, query_scale, final_logit_softcap, embed_scale: (c.n_embd as f32).sqrt() })
    }
}

pub struct Gemma3 {
    pub config: Gemma3Config,
    pub blocks: Vec<Block>,
}

pub fn load(l: &mut Loader<'_>, c: &mut Config) -> Result<Box<dyn Family>> {
    c.rope_style = RopeStyle::Neox;
    let config = Gemma3Config::from_gguf(l.gguf(), c)?;
    let e = c.n_embd;
    let mut blocks = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        blocks.push(Block {
            attn_norm: l.vector(&n("attn_norm.weight"), e)?,
            attn: Attention::load(l, c, i, true)?,
            post_attention_norm: l.vector(&n("post_attention_norm.weight"), e)?,
            ffn_norm: l.vector(&n("ffn_norm.weight"), e)?,
            ffn: Ffn::load(l, c, i)?,
            post_ffw_norm: l.vector(&n("post_ffw_norm.weight"), e)?,
        });
    }
    Ok(Box::new(Gemma3 { config, blocks }))
}

impl Family for Gemma3 {
    fn blocks(&self, c: &Config, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
        let g = &self.config;
        let e = c.n_embd;
        s.rope[0].fill(c, &RopeParams { base: c.rope_base, freq_scale: c.rope_freq_scale, factors: None }, p0, n);
        if g.is_local.iter().any(|&l| l) {
            s.rope[1].fill(c, &RopeParams { base: g.rope_base_local, freq_scale: 1.0, factors: None }, p0, n);
        }
        for (li, b) in self.blocks.iter().enumerate() {
            let local = g.is_local[li];
            let call = AttnCall {
                slot: li,
                rope: local as usize,
                q_scale: Some(g.query_scale),
                kq_scale: 1.0,
                window: if local { g.sliding_window } else { None },
            };
            rms_norm(&s.x[..n * e], &b.attn_norm, c.rms_eps, &mut s.xb[..n * e]);
            b.attn.forward(c, &call, kv, s, p0, n);
            rms_norm(&s.xb[..n * e], &b.post_attention_norm, c.rms_eps, &mut s.xc[..n * e]);
            add_into(&mut s.x[..n * e], &s.xc[..n * e]);

            rms_norm(&s.x[..n * e], &b.ffn_norm, c.rms_eps, &mut s.xb[..n * e]);
            b.ffn.forward(c, Activation::GeluTanh, s, n);
            rms_norm(&s.xb[..n * e], &b.post_ffw_norm, c.rms_eps, &mut s.xc[..n * e]);
            add_into(&mut s.x[..n * e], &s.xc[..n * e]);
        }
    }

    fn cache_layout(&self, c: &Config) -> CacheLayout {
        let g = &self.config;
        let mut layout = CacheLayout::attention(c.n_layer, c.n_head_kv, c.kv_dim());
        layout.windows = g.is_local.iter().map(|&l| if l { g.sliding_window } else { None }).collect();
        layout
    }

    fn embed_scale(&self) -> Option<f32> {
        Some(self.config.embed_scale)
    }

    fn logit_softcap(&self) -> Option<f32> {
        self.config.final_logit_softcap
    }

    fn weight_bytes(&self) -> usize {
        let v = |x: &Vec<f32>| x.len() * 4;
        self.blocks
            .iter()
            .map(|b| v(&b.attn_norm) + v(&b.post_attention_norm) + v(&b.ffn_norm) + v(&b.post_ffw_norm) + b.attn.bytes() + b.ffn.bytes())
            .sum()
    }

    fn main_type(&self) -> GgmlType {
        self.blocks[0].attn.wq.ty
    }
}
