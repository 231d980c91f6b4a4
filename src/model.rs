//! The llama-family transformer: weights (immutable after load) and the forward pass over a batch
//! of tokens, written on preallocated buffers (`Scratch`) and the in-place KV cache.
//!
//! Block structure (pre-norm, residual):
//!   x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
//!   x += Wdown · (silu(Wgate·norm(x)) * (Wup·norm(x)))
//! Numerics follow llama.cpp's CPU path where it matters for matching its tokens: activations are
//! quantized to 8 bits before each quantized matmul, RMS sums in f64, keys/values/queries rounded to
//! f16, rope angles by repeated multiplication. Every float operation has one fixed order and the
//! transcendental functions come from the `libm` crate, so native and wasm builds compute
//! bit-identical logits.

use crate::attn;
use crate::config::{Arch, Config, RopeStyle};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::kv_cache::KvCache;
use crate::parallel::{self, SyncPtr};
use crate::quant::{self, act_bytes, act_type, ActType};
use crate::source::{ByteSource, SeqReader};
use std::ops::Range;

/// A weight matrix in its file format: `rows` rows of `cols` elements, row-major.
pub struct QMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    act: ActType,
    row_bytes: usize,
    data: Vec<u8>,
}

impl QMatrix {
    pub fn act_type(&self) -> ActType {
        self.act
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// out[(b, r)] = W[r] · x_b for the `n_tok` activation rows in `act` (quantized to `act_type`).
    /// Rows are split across threads.
    pub fn matmul(&self, act: &[u8], n_tok: usize, out: &mut [f32]) {
        assert!(out.len() >= n_tok * self.rows);
        let out_ptr = SyncPtr(out.as_mut_ptr());
        parallel::for_each_range(self.rows, TILE_ROWS, |range| self.matmul_rows(act, n_tok, out_ptr, range));
    }

    /// Rows `range` of `matmul` (`out` holds n_tok × rows values). A batch goes through in tiles
    /// of `TILE_ROWS` weight rows (small enough to stay in L1) × `MAX_ROWS` tokens, so each weight
    /// row is read from memory once and unpacked once per group of tokens.
    fn matmul_rows(&self, act: &[u8], n_tok: usize, out: SyncPtr<f32>, range: Range<usize>) {
        let ab = act_bytes(self.act, self.cols);
        assert!(act.len() >= n_tok * ab && range.end <= self.rows);
        let o = out.get();
        let w = &self.data[range.start * self.row_bytes..range.end * self.row_bytes];
        if n_tok == 1 {
            // SAFETY: this call's rows of a row of `out` (range ⊂ 0..rows).
            unsafe { quant::dot_rows(self.ty, self.cols, w, &[&act[..ab]], &[o.add(range.start)]) };
            return;
        }
        for (i, tile) in w.chunks(TILE_ROWS * self.row_bytes).enumerate() {
            let r0 = range.start + i * TILE_ROWS;
            let mut t0 = 0;
            while t0 < n_tok {
                let k = quant::rows_per_call(n_tok - t0);
                let acts: [&[u8]; quant::MAX_ROWS] =
                    std::array::from_fn(|j| if j < k { &act[(t0 + j) * ab..(t0 + j + 1) * ab] } else { &[] });
                // SAFETY: (t0+j)*rows + r0 + tile rows ≤ n_tok*rows ≤ out's length; rows of this
                // call's range only.
                let outs: [*mut f32; quant::MAX_ROWS] = std::array::from_fn(|j| o.wrapping_add((t0 + j) * self.rows + r0));
                unsafe { quant::dot_rows(self.ty, self.cols, tile, &acts[..k], &outs[..k]) };
                t0 += k;
            }
        }
    }
}

const TILE_ROWS: usize = 16;

/// Several matmuls in one parallel call (the q, k and v projections of one input): their row
/// tiles are numbered one after another and split across threads together, so there is one
/// hand-off instead of one per matrix and the small k and v matrices need no split of their own.
fn matmuls<const J: usize>(jobs: [(&QMatrix, &[u8], &mut [f32]); J], n_tok: usize) {
    let tiles: [usize; J] = std::array::from_fn(|i| jobs[i].0.rows.div_ceil(TILE_ROWS));
    let ptrs = jobs.map(|(m, a, o)| {
        assert!(o.len() >= n_tok * m.rows);
        (m, a, SyncPtr(o.as_mut_ptr()))
    });
    parallel::for_each_range(tiles.iter().sum(), 1, |range| {
        let mut first = 0;
        for (&(m, a, o), &n) in ptrs.iter().zip(&tiles) {
            let (lo, hi) = (range.start.max(first), range.end.min(first + n));
            if lo < hi {
                m.matmul_rows(a, n_tok, o, (lo - first) * TILE_ROWS..((hi - first) * TILE_ROWS).min(m.rows));
            }
            first += n;
        }
    });
}

/// gate = silu(W_gate·x) * (W_up·x) in one parallel call: each thread computes the same rows of
/// both and applies the activation to them.
fn gate_up(w_gate: &QMatrix, w_up: &QMatrix, act_g: &[u8], act_u: &[u8], n_tok: usize, gate: &mut [f32], up: &mut [f32]) {
    let ff = w_gate.rows;
    assert!(w_up.rows == ff && gate.len() >= n_tok * ff && up.len() >= n_tok * ff);
    let (g, u) = (SyncPtr(gate.as_mut_ptr()), SyncPtr(up.as_mut_ptr()));
    parallel::for_each_range(ff, TILE_ROWS, |range| {
        w_gate.matmul_rows(act_g, n_tok, g, range.clone());
        w_up.matmul_rows(act_u, n_tok, u, range.clone());
        for t in 0..n_tok {
            // SAFETY: rows `range` of token t, written only by this call.
            let (gr, ur) = unsafe {
                (
                    std::slice::from_raw_parts_mut(g.get().add(t * ff + range.start), range.len()),
                    std::slice::from_raw_parts(u.get().add(t * ff + range.start) as *const f32, range.len()),
                )
            };
            crate::vmath::silu_mul(gr, ur);
        }
    });
}

/// One transformer block's weights. Shapes as (rows, cols) of the math, `y = W·x`.
pub struct Block {
    pub attn_norm: Vec<f32>, // (n_embd)
    pub wq: QMatrix,         // (n_head*head_dim, n_embd)
    pub wk: QMatrix,         // (n_head_kv*head_dim, n_embd)
    pub wv: QMatrix,         // (n_head_kv*head_dim, n_embd)
    pub bq: Option<Vec<f32>>, // qwen2 biases
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub wo: QMatrix,         // (n_embd, n_head*head_dim)
    pub ffn_norm: Vec<f32>,  // (n_embd)
    pub w_gate: QMatrix,     // (n_ff, n_embd)
    pub w_up: QMatrix,       // (n_ff, n_embd)
    pub w_down: QMatrix,     // (n_embd, n_ff)
}

pub struct Model {
    pub config: Config,
    pub tok_embd: QMatrix, // (vocab, n_embd)
    pub blocks: Vec<Block>,
    pub output_norm: Vec<f32>, // (n_embd)
    /// None: tied to `tok_embd` (SmolLM2 has no `output.weight`).
    pub output: Option<QMatrix>, // (vocab, n_embd)
    /// Llama 3 rope frequency factors (`rope_freqs.weight`), one per rotated pair.
    pub rope_freqs: Option<Vec<f32>>,
}

/// Reads tensors by canonical name, checking type and shape, straight into their storage.
struct Loader<'a> {
    g: &'a Gguf,
    src: &'a mut dyn ByteSource,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.g.tensor(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    fn read(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        let range = self.g.tensor_range(t);
        let mut buf = Vec::new();
        buf.try_reserve_exact(t.size as usize)
            .map_err(|_| Error::InvalidArgument(format!("no memory for tensor {:?}", t.name)))?;
        buf.resize(t.size as usize, 0);
        self.src.read_at(range.start, &mut buf)?;
        Ok(buf)
    }

    /// A matrix of `rows` rows of `cols` (ggml dims [cols, rows]).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let t = self.info(name)?.clone();
        if t.dims != [cols as u64, rows as u64] {
            return Err(Error::TensorShape { name: t.name, found: t.dims, expected: vec![cols as u64, rows as u64] });
        }
        let unsupported = || Error::UnsupportedTensorType { name: t.name.clone(), type_name: t.ty.name().to_string() };
        let act = act_type(t.ty).ok_or_else(unsupported)?;
        // Rows must be whole blocks: 32 elements for the legacy formats, 256 for the K-quants.
        let bl = t.ty.block_len() as u64;
        if !(cols as u64).is_multiple_of(bl) {
            return Err(Error::TensorShape { name: t.name, found: t.dims, expected: vec![bl * (cols as u64).div_ceil(bl), rows as u64] });
        }
        let row_bytes = t.ty.bytes_for(cols as u64).unwrap_or(0) as usize;
        let data = self.read(&t)?;
        Ok(QMatrix { ty: t.ty, rows, cols, act, row_bytes, data })
    }

    /// A vector of `n` f32 (stored as F32 or F16).
    fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.info(name)?.clone();
        if t.dims != [n as u64] {
            return Err(Error::TensorShape { name: t.name, found: t.dims, expected: vec![n as u64] });
        }
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
            return Err(Error::UnsupportedTensorType { name: t.name, type_name: t.ty.name().to_string() });
        }
        let raw = self.read(&t)?;
        let mut out = vec![0f32; n];
        quant::dequantize_row(t.ty, &raw, &mut out);
        Ok(out)
    }

    fn opt_vector(&mut self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.g.tensor(name).is_some() {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Model {
    /// Loads a model from a GGUF byte source: parses and validates the header, then reads each
    /// tensor once into its own buffer.
    pub fn load(src: &mut dyn ByteSource) -> Result<(Gguf, Model)> {
        let len = src.len();
        let g = Gguf::read(&mut SeqReader::new(src), len)?;
        let model = Model::from_gguf(&g, src)?;
        Ok((g, model))
    }

    pub fn from_gguf(g: &Gguf, src: &mut dyn ByteSource) -> Result<Model> {
        let c = Config::from_gguf(g)?;
        let mut l = Loader { g, src };
        let (e, qd, kvd, ff) = (c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff);
        let tok_embd = l.matrix("token_embd.weight", c.vocab_size, e)?;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let qwen = c.arch == Arch::Qwen2;
            blocks.push(Block {
                attn_norm: l.vector(&n("attn_norm.weight"), e)?,
                wq: l.matrix(&n("attn_q.weight"), qd, e)?,
                wk: l.matrix(&n("attn_k.weight"), kvd, e)?,
                wv: l.matrix(&n("attn_v.weight"), kvd, e)?,
                bq: if qwen { l.opt_vector(&n("attn_q.bias"), qd)? } else { None },
                bk: if qwen { l.opt_vector(&n("attn_k.bias"), kvd)? } else { None },
                bv: if qwen { l.opt_vector(&n("attn_v.bias"), kvd)? } else { None },
                wo: l.matrix(&n("attn_output.weight"), e, qd)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), e)?,
                w_gate: l.matrix(&n("ffn_gate.weight"), ff, e)?,
                w_up: l.matrix(&n("ffn_up.weight"), ff, e)?,
                w_down: l.matrix(&n("ffn_down.weight"), e, ff)?,
            });
        }
        let output_norm = l.vector("output_norm.weight", e)?;
        let output = if g.tensor("output.weight").is_some() {
            Some(l.matrix("output.weight", c.vocab_size, e)?)
        } else {
            None
        };
        let rope_freqs = l.opt_vector("rope_freqs.weight", c.rope_dim / 2)?;
        Ok(Model { config: c, tok_embd, blocks, output_norm, output, rope_freqs })
    }

    pub fn output(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        let m = |q: &QMatrix| q.bytes();
        let v = |x: &Vec<f32>| x.len() * 4;
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                v(&b.attn_norm) + v(&b.ffn_norm) + m(&b.wq) + m(&b.wk) + m(&b.wv) + m(&b.wo)
                    + m(&b.w_gate) + m(&b.w_up) + m(&b.w_down)
                    + [&b.bq, &b.bk, &b.bv].iter().map(|o| o.as_ref().map_or(0, v)).sum::<usize>()
            })
            .sum();
        m(&self.tok_embd) + blocks + v(&self.output_norm) + self.output.as_ref().map_or(0, m)
    }

    /// Runs `tokens` at positions `kv.len()..` through the model, appending their keys and values to
    /// the cache. Writes logits for tokens `logits_from..` into `logits` ((n, vocab) row-major).
    pub fn forward(
        &self,
        tokens: &[u32],
        kv: &mut KvCache,
        s: &mut Scratch,
        logits_from: usize,
        logits: &mut [f32],
    ) -> Result<()> {
        let c = &self.config;
        let n = tokens.len();
        let p0 = kv.len();
        if n == 0 {
            return Ok(());
        }
        if n > s.n_batch {
            return Err(Error::InvalidArgument(format!("batch of {n} exceeds the scratch batch {}", s.n_batch)));
        }
        if p0 + n > kv.capacity() {
            return Err(Error::ContextFull { needed: p0 + n, capacity: kv.capacity() });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::BadToken { id, vocab: c.vocab_size });
        }
        let n_out = n.saturating_sub(logits_from);
        if logits.len() < n_out * c.vocab_size {
            return Err(Error::InvalidArgument("logits buffer too small".into()));
        }
        let (e, qd, kvd, ff) = (c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff);

        // x: (n, n_embd) embeddings
        for (i, &t) in tokens.iter().enumerate() {
            quant::dequantize_row(self.tok_embd.ty, self.tok_embd.row(t as usize), &mut s.x[i * e..(i + 1) * e]);
        }
        s.rope_table(c, self.rope_freqs.as_deref(), p0, n);

        for (li, b) in self.blocks.iter().enumerate() {
            // ---- attention ----
            rms_norm(&s.x[..n * e], &b.attn_norm, c.rms_eps, &mut s.xb[..n * e]);
            s.act.reset();
            for m in [&b.wq, &b.wk, &b.wv] {
                s.act.prepare(&s.xb[..n * e], e, m.act);
            }
            matmuls(
                [
                    (&b.wq, s.act.ready(b.wq.act), &mut s.q[..]),
                    (&b.wk, s.act.ready(b.wk.act), &mut s.k[..]),
                    (&b.wv, s.act.ready(b.wv.act), &mut s.v[..]),
                ],
                n,
            );
            add_bias(&mut s.q[..n * qd], b.bq.as_deref());
            add_bias(&mut s.k[..n * kvd], b.bk.as_deref());
            add_bias(&mut s.v[..n * kvd], b.bv.as_deref());
            for i in 0..n {
                s.rope(c, &mut RopeRows::Q, i);
                s.rope(c, &mut RopeRows::K, i);
                kv.write(li, p0 + i, &s.k[i * kvd..(i + 1) * kvd], &s.v[i * kvd..(i + 1) * kvd]);
            }
            attention(c, kv, li, p0, n, &s.q[..n * qd], &mut s.att[..n * qd], &mut s.kf, &mut s.vf);
            s.act.reset();
            b.wo.matmul(s.act.get(&s.att[..n * qd], qd, b.wo.act), n, &mut s.xb);
            add_into(&mut s.x[..n * e], &s.xb[..n * e]);

            // ---- feed-forward ----
            rms_norm(&s.x[..n * e], &b.ffn_norm, c.rms_eps, &mut s.xb[..n * e]);
            s.act.reset();
            for m in [&b.w_gate, &b.w_up] {
                s.act.prepare(&s.xb[..n * e], e, m.act);
            }
            gate_up(&b.w_gate, &b.w_up, s.act.ready(b.w_gate.act), s.act.ready(b.w_up.act), n, &mut s.gate, &mut s.up);
            s.act.reset();
            b.w_down.matmul(s.act.get(&s.gate[..n * ff], ff, b.w_down.act), n, &mut s.xb);
            add_into(&mut s.x[..n * e], &s.xb[..n * e]);
        }
        kv.set_len(p0 + n);

        if n_out > 0 {
            let rows = &s.x[logits_from * e..n * e];
            rms_norm(rows, &self.output_norm, c.rms_eps, &mut s.xb[..n_out * e]);
            let out = self.output();
            s.act.reset();
            out.matmul(s.act.get(&s.xb[..n_out * e], e, out.act), n_out, &mut logits[..n_out * c.vocab_size]);
        }
        Ok(())
    }
}

/// y = x / sqrt(mean(x²) + eps) * w, row by row (sum of squares in f64, as ggml).
fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
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
        let sum: f64 = xr.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = (v * scale) * g;
        }
    }
}

fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
}


/// Causal attention for the `n` queries at positions p0.. over cache positions 0..=p, one pass
/// with a running max (no score buffer): out = Σ softmax(q·k/√d) v, at f16 precision as llama.cpp's
/// CPU flash attention (see `attn`). The layer's cached keys and values are first converted to f32
/// (`kf`, `vf`), once for all the queries; then each (query token, query head) is one unit of work,
/// so even a single decoded token gives every thread heads to do.
#[allow(clippy::too_many_arguments)]
fn attention(c: &Config, kv: &KvCache, layer: usize, p0: usize, n: usize, q: &[f32], out: &mut [f32], kf: &mut Vec<f32>, vf: &mut Vec<f32>) {
    let (hd, nh, nkv, kvd) = (c.head_dim, c.n_head, c.n_head_kv, c.kv_dim());
    let group = nh / nkv;
    let len = (p0 + n) * kvd;
    kf.resize(len, 0.0);
    vf.resize(len, 0.0);
    let (k16, v16) = (kv.keys(layer, p0 + n), kv.values(layer, p0 + n));
    let (kp, vp) = (SyncPtr(kf.as_mut_ptr()), SyncPtr(vf.as_mut_ptr()));
    parallel::for_each_range(p0 + n, 16, |rows| {
        let r = rows.start * kvd..rows.end * kvd;
        // SAFETY: rows `rows` of kf and vf (len = (p0+n)·kvd), written by this call only.
        let (kd, vd) = unsafe {
            (
                std::slice::from_raw_parts_mut(kp.get().add(r.start), r.len()),
                std::slice::from_raw_parts_mut(vp.get().add(r.start), r.len()),
            )
        };
        attn::convert_rows(&k16[r.clone()], kd);
        attn::convert_rows(&v16[r], vd);
    });
    let (keys, values) = (&kf[..], &vf[..]);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    thread_local! {
        /// Each thread's attention buffers, kept across calls (no allocation per call).
        static STATE: std::cell::RefCell<attn::State> = std::cell::RefCell::new(attn::State::new(0, 0));
    }
    parallel::for_each_range(n * nh, 1, |range| STATE.with_borrow_mut(|st| {
        let o = out_ptr.get();
        st.ensure(1, hd);
        for unit in range {
            let (i, h) = (unit / nh, unit % nh);
            let q0 = (i * nh + h) * hd;
            let u = attn::Unit { q: &q[q0..q0 + hd], keys, values, kvd, off: h / group * hd, len: p0 + i + 1 };
            attn::attend(st, &u);
            // SAFETY: units are disjoint across threads; the head's row lies inside out (n*nh*hd).
            st.write_out(0, unsafe { std::slice::from_raw_parts_mut(o.add(q0), hd) });
        }
    }));
}

/// Quantized copies of one activation batch, one per format a matmul asks for, made on first
/// use and reused by the other matmuls of the same input (q, k and v; gate and up).
struct Acts {
    bufs: [(bool, Vec<u8>); quant::ACT_TYPES],
}

impl Acts {
    fn new() -> Self {
        Acts { bufs: std::array::from_fn(|_| (false, Vec::new())) }
    }

    /// Forgets the quantized copies: the next `get` is of a new input.
    fn reset(&mut self) {
        self.bufs.iter_mut().for_each(|b| b.0 = false);
    }

    /// `x` ((rows, cols) row-major) quantized to `at`; the same `x` since the last `reset`.
    fn get(&mut self, x: &[f32], cols: usize, at: ActType) -> &[u8] {
        self.prepare(x, cols, at);
        self.ready(at)
    }

    /// Quantizes `x` to `at` unless done since the last `reset` (rows split across threads).
    fn prepare(&mut self, x: &[f32], cols: usize, at: ActType) {
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
    fn ready(&self, at: ActType) -> &[u8] {
        let (ready, buf) = &self.bufs[at as usize];
        assert!(*ready, "activations not prepared");
        buf
    }
}

enum RopeRows {
    Q,
    K,
}

/// Activation buffers for a batch of up to `n_batch` tokens, reused across calls.
pub struct Scratch {
    pub n_batch: usize,
    x: Vec<f32>,    // (n_batch, n_embd) residual stream
    xb: Vec<f32>,   // (n_batch, n_embd) normed input / matmul output
    q: Vec<f32>,    // (n_batch, n_head*head_dim)
    k: Vec<f32>,    // (n_batch, kv_dim)
    v: Vec<f32>,    // (n_batch, kv_dim)
    att: Vec<f32>,  // (n_batch, n_head*head_dim)
    gate: Vec<f32>, // (n_batch, n_ff)
    up: Vec<f32>,   // (n_batch, n_ff)
    act: Acts,
    kf: Vec<f32>,  // (positions, kv_dim) one layer's cached keys as f32 (reserved for the context)
    vf: Vec<f32>,  // the same for values
    cos: Vec<f32>, // (n_batch, rope_dim/2)
    sin: Vec<f32>,
}

impl Scratch {
    pub fn new(c: &Config, n_batch: usize) -> Scratch {
        let n_batch = n_batch.max(1);
        let z = |d: usize| vec![0f32; n_batch * d];
        Scratch {
            n_batch,
            x: z(c.n_embd),
            xb: z(c.n_embd),
            q: z(c.q_dim()),
            k: z(c.kv_dim()),
            v: z(c.kv_dim()),
            att: z(c.q_dim()),
            gate: z(c.n_ff),
            up: z(c.n_ff),
            act: Acts::new(),
            kf: Vec::new(),
            vf: Vec::new(),
            cos: z(c.rope_dim / 2),
            sin: z(c.rope_dim / 2),
        }
    }

    /// Reserves the f32 key/value rows of one layer for `n_ctx` positions now, so a forward pass
    /// never allocates (and a context too large for memory is an error here, not a crash later).
    pub fn reserve_context(&mut self, c: &Config, n_ctx: usize) -> Result<()> {
        let n = n_ctx.checked_mul(c.kv_dim()).ok_or_else(|| Error::InvalidArgument(format!("context of {n_ctx} tokens is too large")))?;
        for buf in [&mut self.kf, &mut self.vf] {
            buf.try_reserve_exact(n.saturating_sub(buf.len()))
                .map_err(|_| Error::InvalidArgument(format!("no memory for a {n_ctx}-token context")))?;
        }
        Ok(())
    }

    /// cos/sin of the rope angles for positions p0..p0+n: θ_i = p·base^(-2i/d) (÷ freq factor,
    /// × linear scale), the power taken by repeated multiplication as ggml does.
    fn rope_table(&mut self, c: &Config, freqs: Option<&[f32]>, p0: usize, n: usize) {
        let half = c.rope_dim / 2;
        let theta_scale = libm::powf(c.rope_base, -2.0 / c.rope_dim as f32);
        for i in 0..n {
            let mut theta = (p0 + i) as f32;
            for j in 0..half {
                let ff = freqs.map_or(1.0, |f| f[j]);
                let t = c.rope_freq_scale * (theta / ff);
                self.cos[i * half + j] = libm::cosf(t);
                self.sin[i * half + j] = libm::sinf(t);
                theta *= theta_scale;
            }
        }
    }

    fn rope(&mut self, c: &Config, which: &mut RopeRows, i: usize) {
        let half = c.rope_dim / 2;
        let (heads, buf) = match which {
            RopeRows::Q => (c.n_head, &mut self.q),
            RopeRows::K => (c.n_head_kv, &mut self.k),
        };
        let (cos, sin) = (&self.cos[i * half..(i + 1) * half], &self.sin[i * half..(i + 1) * half]);
        let hd = c.head_dim;
        for h in 0..heads {
            let x = &mut buf[(i * heads + h) * hd..(i * heads + h + 1) * hd];
            for j in 0..half {
                let (a, b) = match c.rope_style {
                    RopeStyle::Norm => (2 * j, 2 * j + 1),
                    RopeStyle::Neox => (j, j + c.rope_dim / 2),
                };
                let (x0, x1) = (x[a], x[b]);
                x[a] = x0 * cos[j] - x1 * sin[j];
                x[b] = x0 * sin[j] + x1 * cos[j];
            }
        }
    }
}
