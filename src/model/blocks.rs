//! The building blocks the families share: RMS norm, rope, the attention layer (projections,
//! optional biases and per-head q/k norms, rope, the f16 cache, causal or sliding-window
//! attention, output projection), the gated feed-forward, and the activation buffers they run on.
//! Each block reads its input from `Scratch::xb` (the normed residual) and leaves its output there.

use super::{gate_up, matmuls, Activation, Loader, QMatrix};
use crate::attn;
use crate::config::{Config, RopeStyle};
use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::parallel::{self, SyncPtr};
use crate::quant::{self, act_bytes, ActType};

/// y = x / sqrt(mean(x²) + eps) * w, row by row (rows of `w.len()`; sum of squares in f64, as ggml).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let d = w.len();
    let rows = x.len() / d;
    assert!(y.len() >= rows * d);
    let yp = SyncPtr(y.as_mut_ptr());
    parallel::for_each_range(rows, 1, |range| {
        // SAFETY: rows `range` of y, written by this call only.
        let y = unsafe { std::slice::from_raw_parts_mut(yp.get().add(range.start * d), range.len() * d) };
        rms_norm_rows(&x[range.start * d..range.end * d], w, eps, y);
    });
}

fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let scale = rms_scale(xr, eps);
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * g;
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// RMS norm of each `w.len()`-long row of `x`, in place (q/k norms: one row per head).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(w.len()) {
        let scale = rms_scale(row, eps);
        row.iter_mut().zip(w).for_each(|(v, &g)| *v = (*v * scale) * g);
    }
}

pub fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
}

pub fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
}

/// cos/sin of the rope angles of a batch's positions, for one frequency base.
pub struct RopeTable {
    cos: Vec<f32>, // (n_batch, rope_dim/2)
    sin: Vec<f32>,
}

/// How one layer's rope turns: θ_j = scale · p · base^(-2j/rope_dim) / factor_j.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams<'a> {
    pub base: f32,
    pub freq_scale: f32,
    /// Llama 3's per-pair frequency factors (`rope_freqs.weight`).
    pub factors: Option<&'a [f32]>,
}

impl RopeTable {
    fn new(n_batch: usize, half: usize) -> RopeTable {
        RopeTable { cos: vec![0.0; n_batch * half], sin: vec![0.0; n_batch * half] }
    }

    /// The angles of positions p0..p0+n, the power taken by repeated multiplication as ggml does.
    pub fn fill(&mut self, c: &Config, r: &RopeParams<'_>, p0: usize, n: usize) {
        let half = c.rope_dim / 2;
        let theta_scale = libm::powf(r.base, -2.0 / c.rope_dim as f32);
        for i in 0..n {
            let mut theta = (p0 + i) as f32;
            for j in 0..half {
                let ff = r.factors.map_or(1.0, |f| f[j]);
                let t = r.freq_scale * (theta / ff);
                self.cos[i * half + j] = libm::cosf(t);
                self.sin[i * half + j] = libm::sinf(t);
                theta *= theta_scale;
            }
        }
    }

    /// Rotates the `heads` heads of token `i`'s row `x` ((heads, head_dim)).
    fn apply(&self, c: &Config, x: &mut [f32], heads: usize, i: usize) {
        let half = c.rope_dim / 2;
        let (cos, sin) = (&self.cos[i * half..(i + 1) * half], &self.sin[i * half..(i + 1) * half]);
        let hd = c.head_dim;
        for h in 0..heads {
            let x = &mut x[h * hd..(h + 1) * hd];
            for j in 0..half {
                let (a, b) = match c.rope_style {
                    RopeStyle::Norm => (2 * j, 2 * j + 1),
                    RopeStyle::Neox => (j, j + half),
                };
                let (x0, x1) = (x[a], x[b]);
                x[a] = x0 * cos[j] - x1 * sin[j];
                x[b] = x0 * sin[j] + x1 * cos[j];
            }
        }
    }
}

/// Self-attention weights. Shapes as (rows, cols) of the math, `y = W·x`.
pub struct Attention {
    pub wq: QMatrix, // (n_head*head_dim, n_embd)
    pub wk: QMatrix, // (n_head_kv*head_dim, n_embd)
    pub wv: QMatrix, // (n_head_kv*head_dim, n_embd)
    /// Biases when the file has them (qwen2 does; llama.cpp adds any that are present).
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// Per-head RMS norms of q and k before rope (qwen3, gemma3, lfm2): (head_dim)
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: QMatrix, // (n_embd, n_head*head_dim)
}

/// How one layer's attention runs.
pub struct AttnCall {
    /// The layer's index among the cache's attention layers.
    pub slot: usize,
    /// Which of `Scratch::rope` holds this layer's angles.
    pub rope: usize,
    /// Multiplies q (in f32, before its rounding to f16) — Gemma's query scale, applied as
    /// llama.cpp does, ahead of the kernel.
    pub q_scale: Option<f32>,
    /// Multiplies q·k in the kernel.
    pub kq_scale: f32,
    /// Sliding window: a query at p sees keys p-window+1..=p.
    pub window: Option<usize>,
}

impl AttnCall {
    /// The first cache position a query at `p` sees.
    fn first_seen(&self, p: usize) -> usize {
        self.window.map_or(0, |w| (p + 1).saturating_sub(w))
    }
}

impl Attention {
    /// Layer `i`'s `attn_{q,k,v,output}` (biases if present); `qk_norm`: `attn_{q,k}_norm` required.
    pub fn load(l: &mut Loader<'_>, c: &Config, i: usize, qk_norm: bool) -> Result<Attention> {
        let n = |s: &str| format!("blk.{i}.{s}");
        let (e, qd, kvd, hd) = (c.n_embd, c.q_dim(), c.kv_dim(), c.head_dim);
        Ok(Attention {
            wq: l.matrix(&n("attn_q.weight"), qd, e)?,
            wk: l.matrix(&n("attn_k.weight"), kvd, e)?,
            wv: l.matrix(&n("attn_v.weight"), kvd, e)?,
            bq: l.opt_vector(&n("attn_q.bias"), qd)?,
            bk: l.opt_vector(&n("attn_k.bias"), kvd)?,
            bv: l.opt_vector(&n("attn_v.bias"), kvd)?,
            q_norm: if qk_norm { Some(l.vector(&n("attn_q_norm.weight"), hd)?) } else { None },
            k_norm: if qk_norm { Some(l.vector(&n("attn_k_norm.weight"), hd)?) } else { None },
            wo: l.matrix(&n("attn_output.weight"), e, qd)?,
        })
    }

    pub fn bytes(&self) -> usize {
        let v = |o: &Option<Vec<f32>>| o.as_ref().map_or(0, |x| x.len() * 4);
        [&self.wq, &self.wk, &self.wv, &self.wo].iter().map(|m| m.bytes()).sum::<usize>()
            + [&self.bq, &self.bk, &self.bv, &self.q_norm, &self.k_norm].into_iter().map(v).sum::<usize>()
    }

    /// xb ← Wo · attention(rope(norm_q(Wq·xb)), rope(norm_k(Wk·xb)), Wv·xb) for `n` tokens at p0..
    pub fn forward(&self, c: &Config, call: &AttnCall, kv: &mut KvCache, s: &mut Scratch, p0: usize, n: usize) {
        let (e, qd, kvd) = (c.n_embd, c.q_dim(), c.kv_dim());
        s.act.reset();
        for m in [&self.wq, &self.wk, &self.wv] {
            s.act.prepare(&s.xb[..n * e], e, m.act);
        }
        matmuls(
            [
                (&self.wq, s.act.ready(self.wq.act), &mut s.q[..]),
                (&self.wk, s.act.ready(self.wk.act), &mut s.k[..]),
                (&self.wv, s.act.ready(self.wv.act), &mut s.v[..]),
            ],
            n,
        );
        add_bias(&mut s.q[..n * qd], self.bq.as_deref());
        add_bias(&mut s.k[..n * kvd], self.bk.as_deref());
        add_bias(&mut s.v[..n * kvd], self.bv.as_deref());
        if let Some(w) = &self.q_norm {
            rms_norm_in_place(&mut s.q[..n * qd], w, c.rms_eps);
        }
        if let Some(w) = &self.k_norm {
            rms_norm_in_place(&mut s.k[..n * kvd], w, c.rms_eps);
        }
        let rope = &s.rope[call.rope];
        for i in 0..n {
            rope.apply(c, &mut s.q[i * qd..(i + 1) * qd], c.n_head, i);
            rope.apply(c, &mut s.k[i * kvd..(i + 1) * kvd], c.n_head_kv, i);
            kv.write(call.slot, p0 + i, &s.k[i * kvd..(i + 1) * kvd], &s.v[i * kvd..(i + 1) * kvd]);
        }
        if let Some(k) = call.q_scale {
            s.q[..n * qd].iter_mut().for_each(|v| *v *= k);
        }
        attention(c, call, kv, p0, n, &s.q[..n * qd], &mut s.att[..n * qd]);
        s.act.reset();
        self.wo.matmul(s.act.get(&s.att[..n * qd], qd, self.wo.act), n, &mut s.xb);
    }
}

/// The gated feed-forward: Wdown · (act(Wgate·x) * (Wup·x)).
pub struct Ffn {
    pub w_gate: QMatrix, // (n_ff, n_embd)
    pub w_up: QMatrix,   // (n_ff, n_embd)
    pub w_down: QMatrix, // (n_embd, n_ff)
}

impl Ffn {
    pub fn load(l: &mut Loader<'_>, c: &Config, i: usize) -> Result<Ffn> {
        let n = |s: &str| format!("blk.{i}.{s}");
        let (e, ff) = (c.n_embd, c.n_ff);
        Ok(Ffn {
            w_gate: l.matrix(&n("ffn_gate.weight"), ff, e)?,
            w_up: l.matrix(&n("ffn_up.weight"), ff, e)?,
            w_down: l.matrix(&n("ffn_down.weight"), e, ff)?,
        })
    }

    pub fn bytes(&self) -> usize {
        self.w_gate.bytes() + self.w_up.bytes() + self.w_down.bytes()
    }

    /// xb ← Wdown · (act(Wgate·xb) * (Wup·xb)) for `n` tokens.
    pub fn forward(&self, c: &Config, act: Activation, s: &mut Scratch, n: usize) {
        let (e, ff) = (c.n_embd, c.n_ff);
        s.act.reset();
        for m in [&self.w_gate, &self.w_up] {
            s.act.prepare(&s.xb[..n * e], e, m.act);
        }
        gate_up(act, &self.w_gate, &self.w_up, s.act.ready(self.w_gate.act), s.act.ready(self.w_up.act), n, &mut s.gate, &mut s.up);
        s.act.reset();
        self.w_down.matmul(s.act.get(&s.gate[..n * ff], ff, self.w_down.act), n, &mut s.xb);
    }
}

/// Query tokens per attention unit in a batch (a unit's keys are converted once for all of them).
const TOKENS_PER_UNIT: usize = 8;

/// Attention for the `n` queries at positions p0.. over cache positions up to each query's own
/// (from `p - window + 1` with a sliding window), one pass with a running max (no score buffer):
/// out = Σ softmax(q·k·kq_scale) v, at f16 precision as llama.cpp's CPU flash attention (see
/// `attn`). A unit of work is one KV head's query heads for up to `TOKENS_PER_UNIT` tokens: it
/// reads that head's cache rows once (they are converted to f32 a block at a time, on the thread
/// that uses them), so a decoded token gives the threads `n_head_kv` units.
fn attention(c: &Config, call: &AttnCall, kv: &KvCache, p0: usize, n: usize, q: &[f32], out: &mut [f32]) {
    let (hd, nh, nkv, qd) = (c.head_dim, c.n_head, c.n_head_kv, c.q_dim());
    let group = nh / nkv;
    let chunk = TOKENS_PER_UNIT.min(n);
    let chunks = n.div_ceil(chunk);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    thread_local! {
        /// Each thread's attention buffers, kept across calls (no allocation per call).
        static STATE: std::cell::RefCell<attn::State> = std::cell::RefCell::new(attn::State::new(0, 0));
    }
    let (scale, window) = (call.kq_scale, call.window.unwrap_or(usize::MAX));
    parallel::for_each_range(chunks * nkv, 1, |range| STATE.with_borrow_mut(|st| {
        for unit in range {
            let (g, i0) = (unit % nkv, unit / nkv * chunk);
            let tokens = chunk.min(n - i0);
            // the unit's query heads: h0.. (its KV head's group)
            let (h0, heads) = (g * group, group);
            // cache rows from the first position the unit's first token sees to its last token
            let (p, first) = (p0 + i0, call.first_seen(p0 + i0));
            let [(k0, v0), (k1, v1)] = kv.rows(call.slot, g, first, p + tokens);
            st.ensure(tokens * heads, hd);
            let u = attn::Unit {
                q: &q[i0 * qd + h0 * hd..],
                q_stride: qd,
                tokens,
                heads,
                keys: [k0, k1],
                values: [v0, v1],
                end: p + 1 - first,
                window,
                scale,
            };
            attn::attend(st, &u);
            for t in 0..tokens {
                for j in 0..heads {
                    let at = ((i0 + t) * nh + h0 + j) * hd;
                    // SAFETY: head h0+j of token i0+t, inside out (n·nh·hd); units are disjoint
                    // (token, KV head) pairs, so no other thread writes these heads.
                    st.write_out(t * heads + j, unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(at), hd) });
                }
            }
        }
    }));
}

/// Quantized copies of one activation batch, one per format a matmul asks for, made on first
/// use and reused by the other matmuls of the same input (q, k and v; gate and up).
pub struct Acts {
    bufs: [(bool, Vec<u8>); quant::ACT_TYPES],
}

impl Acts {
    fn new() -> Self {
        Acts { bufs: std::array::from_fn(|_| (false, Vec::new())) }
    }

    /// Forgets the quantized copies: the next `get` is of a new input.
    pub fn reset(&mut self) {
        self.bufs.iter_mut().for_each(|b| b.0 = false);
    }

    /// `x` ((rows, cols) row-major) quantized to `at`; the same `x` since the last `reset`.
    pub fn get(&mut self, x: &[f32], cols: usize, at: ActType) -> &[u8] {
        self.prepare(x, cols, at);
        self.ready(at)
    }

    /// Quantizes `x` to `at` unless done since the last `reset` (rows split across threads).
    pub fn prepare(&mut self, x: &[f32], cols: usize, at: ActType) {
        let rows = x.len() / cols;
        let ab = act_bytes(at, cols);
        let (ready, buf) = &mut self.bufs[at as usize];
        if !*ready {
            buf.resize(rows * ab, 0);
            let out = SyncPtr(buf.as_mut_ptr());
            parallel::for_each_range(rows, 1, |range| {
                for r in range {
                    // SAFETY: row r of the buffer (rows × ab bytes), written by this call only.
                    let br = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * ab), ab) };
                    quant::quantize_act(at, &x[r * cols..(r + 1) * cols], br);
                }
            });
            *ready = true;
        }
    }

    /// The quantized copy `prepare` made.
    pub fn ready(&self, at: ActType) -> &[u8] {
        let (ready, buf) = &self.bufs[at as usize];
        assert!(*ready, "activations not prepared");
        buf
    }
}

/// Activation buffers for a batch of up to `n_batch` tokens, reused across calls.
pub struct Scratch {
    pub n_batch: usize,
    pub x: Vec<f32>,    // (n_batch, n_embd) residual stream
    pub xb: Vec<f32>,   // (n_batch, n_embd) normed input / block output
    pub xc: Vec<f32>,   // (n_batch, n_embd) a second block-sized buffer (post-norm outputs)
    pub q: Vec<f32>,    // (n_batch, n_head*head_dim)
    pub k: Vec<f32>,    // (n_batch, kv_dim)
    pub v: Vec<f32>,    // (n_batch, kv_dim)
    pub att: Vec<f32>,  // (n_batch, n_head*head_dim)
    pub gate: Vec<f32>, // (n_batch, n_ff)
    pub up: Vec<f32>,   // (n_batch, n_ff)
    /// (n_batch, the family's `extra_scratch`) for what only one family computes
    pub extra: Vec<f32>,
    pub act: Acts,
    /// Rope angles of the batch's positions: [0] the model's base, [1] a second base (Gemma's
    /// local layers).
    pub rope: [RopeTable; 2],
}

impl Scratch {
    pub fn new(c: &Config, n_batch: usize, extra: usize) -> Scratch {
        let n_batch = n_batch.max(1);
        let z = |d: usize| vec![0f32; n_batch * d];
        Scratch {
            n_batch,
            x: z(c.n_embd),
            xb: z(c.n_embd),
            xc: z(c.n_embd),
            q: z(c.q_dim()),
            k: z(c.kv_dim()),
            v: z(c.kv_dim()),
            att: z(c.q_dim()),
            gate: z(c.n_ff),
            up: z(c.n_ff),
            extra: z(extra),
            act: Acts::new(),
            rope: [RopeTable::new(n_batch, c.rope_dim / 2), RopeTable::new(n_batch, c.rope_dim / 2)],
        }
    }
}
