//! LFM2 (llama.cpp's `lfm2`, `src/models/lfm2.cpp`, studied, not copied): a hybrid of
//! short-convolution blocks and GQA attention blocks. Layers whose `attention.head_count_kv`
//! entry is 0 are convolutions. Every layer (pre-norm, residual):
//!   x += mixer(norm(x))
//!   x += Wdown · (silu(Wgate·norm(x)) * (Wup·norm(x)))
//! Attention mixer: q/k per-head RMS norms before NEOX rope (a sliding window if the file sets one).
//! Convolution mixer, with L = `shortconv.l_cache` and d = L − 1:
//!   (b, c, x) = split₃(W_in · h)            (3 × n_embd)
//!   u_t = b_t ⊙ x_t
//!   y_t[ch] = Σ_{k<L} u_{t−d+k}[ch] · w[ch][k]   (u before position 0 is zero)
//!   out = W_out · (c_t ⊙ y_t)
//! The past inputs u (f32) live in the session's cache (`KvCache::conv_row`). The final norm is
//! the tensor llama.cpp names `token_embd_norm`.

use super::blocks::{add_into, rms_norm, Attention, AttnCall, Ffn, RopeParams, Scratch};
use super::{Activation, Family, Loader, QMatrix};
use crate::config::{layer_u32s, Config, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::kv_cache::{CacheLayout, KvCache};

pub struct ShortConv {
    pub in_proj: QMatrix,  // (3·n_embd, n_embd)
    pub conv: Vec<f32>,    // (n_embd, L) one kernel per channel
    pub out_proj: QMatrix, // (n_embd, n_embd)
}

#[allow(clippy::large_enum_variant)] // one per layer: boxing would buy nothing
pub enum Mixer {
    /// With its index among the cache's attention layers.
    Attention(Attention, usize),
    /// With its index among the cache's convolution layers.
    Conv(ShortConv, usize),
}

pub struct Layer {
    pub attn_norm: Vec<f32>, // (n_embd) the "operator norm"
    pub mixer: Mixer,
    pub ffn_norm: Vec<f32>, // (n_embd)
    pub ffn: Ffn,
}

pub struct Lfm2 {
    pub layers: Vec<Layer>,
    /// The convolution kernel length L.
    pub l_cache: usize,
    pub sliding_window: Option<usize>,
}

pub fn load(l: &mut Loader<'_>, c: &mut Config) -> Result<Box<dyn Family>> {
    c.rope_style = RopeStyle::Neox;
    let g = l.gguf();
    let l_cache = g.u32(&c.key("shortconv.l_cache"))? as usize;
    if !(2..=64).contains(&l_cache) {
        return Err(Error::BadMetadata { key: c.key("shortconv.l_cache"), reason: format!("{l_cache} is not in 2..=64") });
    }
    let kv_key = c.key("attention.head_count_kv");
    let kv_heads = match g.get(&kv_key) {
        Some(crate::gguf::Value::Array(_)) => layer_u32s(g, &kv_key, c.n_layer)?,
        _ => vec![c.n_head_kv; c.n_layer],
    };
    if let Some(&h) = kv_heads.iter().find(|&&h| h != 0 && h != c.n_head_kv) {
        return Err(Error::BadConfig(format!("attention layers with {h} and {} kv heads", c.n_head_kv)));
    }
    let sliding_window = g.opt_u32(&c.key("attention.sliding_window"))?.filter(|&w| w > 0).map(|w| w as usize);
    let e = c.n_embd;
    let (mut n_attn, mut n_conv) = (0, 0);
    let mut layers = Vec::with_capacity(c.n_layer);
    for (i, &kvh) in kv_heads.iter().enumerate() {
        let n = |s: &str| format!("blk.{i}.{s}");
        let attn_norm = l.vector(&n("attn_norm.weight"), e)?;
        let mixer = if kvh > 0 {
            n_attn += 1;
            Mixer::Attention(Attention::load(l, c, i, true)?, n_attn - 1)
        } else {
            n_conv += 1;
            Mixer::Conv(
                ShortConv {
                    in_proj: l.matrix(&n("shortconv.in_proj.weight"), 3 * e, e)?,
                    conv: l.f32_matrix(&n("shortconv.conv.weight"), e, l_cache)?,
                    out_proj: l.matrix(&n("shortconv.out_proj.weight"), e, e)?,
                },
                n_conv - 1,
            )
        };
        layers.push(Layer { attn_norm, mixer, ffn_norm: l.vector(&n("ffn_norm.weight"), e)?, ffn: Ffn::load(l, c, i)? });
    }
    Ok(Box::new(Lfm2 { layers, l_cache, sliding_window }))
}

impl ShortConv {
    /// xb ← W_out · (c ⊙ conv(b ⊙ x)) for `n` tokens at p0.., reading and extending conv layer
    /// `slot`'s past inputs. `Scratch::extra` holds (n, 3·n_embd) of b⊙x, c, x, then (n, n_embd) of
    /// c ⊙ conv.
    fn forward(&self, c: &Config, slot: usize, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
        let e = c.n_embd;
        let (l, d) = (self.conv.len() / e, kv.d_conv());
        s.act.reset();
        let (bcx, y) = s.extra[..n * 4 * e].split_at_mut(n * 3 * e);
        self.in_proj.matmul(s.act.get(&s.xb[..n * e], e, self.in_proj.act), n, bcx);
        // u = b ⊙ x, kept in b's place
        for row in bcx.chunks_exact_mut(3 * e) {
            let (b, rest) = row.split_at_mut(e);
            b.iter_mut().zip(&rest[e..]).for_each(|(b, &x)| *b *= x);
        }
        for t in 0..n {
            let p = p0 + t;
            let yt = &mut y[t * e..(t + 1) * e];
            for (ch, out) in yt.iter_mut().enumerate() {
                let w = &self.conv[ch * l..(ch + 1) * l];
                let mut sum = 0f32;
                for (k, &wk) in w.iter().enumerate() {
                    // input of position p - d + k
                    let u = if p + k < d {
                        0.0
                    } else if p + k - d >= p0 {
                        bcx[(p + k - d - p0) * 3 * e + ch]
                    } else {
                        kv.conv_row(slot, p + k - d)[ch]
                    };
                    sum += u * wk;
                }
                *out = bcx[t * 3 * e + e + ch] * sum;
            }
        }
        for t in 0..n {
            kv.conv_row_mut(slot, p0 + t).copy_from_slice(&bcx[t * 3 * e..t * 3 * e + e]);
        }
        s.act.reset();
        self.out_proj.matmul(s.act.get(y, e, self.out_proj.act), n, &mut s.xb);
    }
}

impl Family for Lfm2 {
    fn blocks(&self, c: &Config, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
        let e = c.n_embd;
        s.rope[0].fill(c, &RopeParams { base: c.rope_base, freq_scale: c.rope_freq_scale, factors: None }, p0, n);
        for layer in &self.layers {
            rms_norm(&s.x[..n * e], &layer.attn_norm, c.rms_eps, &mut s.xb[..n * e]);
            match &layer.mixer {
                Mixer::Attention(a, slot) => {
                    let call = AttnCall { slot: *slot, rope: 0, q_scale: None, kq_scale: 1.0 / (c.head_dim as f32).sqrt(), window: self.sliding_window };
                    a.forward(c, &call, kv, s, p0, n);
                }
                Mixer::Conv(conv, slot) => conv.forward(c, *slot, kv, s, p0, n),
            }
            add_into(&mut s.x[..n * e], &s.xb[..n * e]);
            rms_norm(&s.x[..n * e], &layer.ffn_norm, c.rms_eps, &mut s.xb[..n * e]);
            layer.ffn.forward(c, Activation::Silu, s, n);
            add_into(&mut s.x[..n * e], &s.xb[..n * e]);
        }
    }

    fn cache_layout(&self, c: &Config) -> CacheLayout {
        let conv = self.layers.iter().filter(|l| matches!(l.mixer, Mixer::Conv(..))).count();
        let attn = self.layers.len() - conv;
        CacheLayout {
            attn_layers: attn,
            kv_dim: c.kv_dim(),
            kv_heads: c.n_head_kv,
            windows: vec![self.sliding_window; attn],
            conv_layers: conv,
            conv_width: c.n_embd,
            d_conv: self.l_cache - 1,
        }
    }

    fn extra_scratch(&self, c: &Config) -> usize {
        4 * c.n_embd
    }

    fn output_norm_name(&self) -> &'static str {
        "token_embd_norm.weight"
    }

    fn weight_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let mixer = match &l.mixer {
                    Mixer::Attention(a, _) => a.bytes(),
                    Mixer::Conv(s, _) => s.in_proj.bytes() + s.out_proj.bytes() + s.conv.len() * 4,
                };
                (l.attn_norm.len() + l.ffn_norm.len()) * 4 + mixer + l.ffn.bytes()
            })
            .sum()
    }

    fn main_type(&self) -> GgmlType {
        self.layers[0].ffn.w_gate.ty
    }
}
