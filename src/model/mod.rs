//! Transformer models: weights (immutable after load) and the forward pass over a batch of tokens,
//! written on preallocated buffers (`Scratch`) and the in-place cache (`KvCache`).
//!
//! Each architecture family is one module over the shared pieces here and in `blocks`, and one
//! line in [`FAMILIES`]: `llama` (Llama 2/3, SmolLM2, TinyLlama, and `qwen2`, which differs only in
//! its rope pairing), `qwen3`, `gemma3`, `lfm2`. A family reads its own metadata, loads its blocks
//! and runs them over the residual stream; embedding lookup, the final norm and the output
//! projection are common ([`Model::forward`]).
//!
//! Numerics follow llama.cpp's CPU path where it matters for matching its tokens: activations are
//! quantized to 8 bits before each quantized matmul, RMS sums in f64, keys/values/queries rounded to
//! f16, rope angles by repeated multiplication. Every float operation has one fixed order and the
//! transcendental functions come from the `libm` crate, so native and wasm builds compute
//! bit-identical logits.

pub mod blocks;
pub mod gemma3;
pub mod lfm2;
pub mod llama;
pub mod qwen3;

pub use blocks::Scratch;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::kv_cache::{CacheLayout, KvCache};
use crate::parallel::{self, SyncPtr};
use crate::quant::layout::{self, Layout};
use crate::quant::{self, act_bytes, act_type, ActType};
use crate::source::ByteSource;
use std::borrow::Cow;
use std::ops::Range;

/// One architecture family: its blocks' weights and how they run.
pub trait Family: Send + Sync {
    /// Runs the blocks over the residual stream `s.x` ((n, n_embd)) of `n` tokens at positions
    /// `p0..p0+n`, in place, writing what each layer keeps per position to `cache`.
    fn blocks(&self, c: &Config, cache: &mut KvCache, s: &mut Scratch, p0: usize, n: usize);
    /// What the cache holds per layer and position.
    fn cache_layout(&self, c: &Config) -> CacheLayout {
        CacheLayout::attention(c.n_layer, c.n_head_kv, c.kv_dim())
    }
    /// f32 scratch per token that the family needs beyond the shared buffers.
    fn extra_scratch(&self, _c: &Config) -> usize {
        0
    }
    /// The token embeddings are multiplied by this (Gemma: √n_embd).
    fn embed_scale(&self) -> Option<f32> {
        None
    }
    /// Final logit soft-capping `cap · tanh(logit / cap)` (Gemma 2 style), when the file sets it.
    fn logit_softcap(&self) -> Option<f32> {
        None
    }
    /// The name of the final norm's tensor.
    fn output_norm_name(&self) -> &'static str {
        "output_norm.weight"
    }
    /// Bytes of the blocks' weights.
    fn weight_bytes(&self) -> usize;
    /// The type of the first block's main projection (names the file's quantization).
    fn main_type(&self) -> GgmlType;
}

/// A family's loader: reads its own metadata (adjusting the shared config, e.g. its rope style)
/// and its blocks' tensors.
pub type LoadFamily = fn(&mut Loader<'_>, &mut Config) -> Result<Box<dyn Family>>;

/// Every supported `general.architecture`, with its loader. Adding a family: one module, one line.
pub const FAMILIES: &[(&str, LoadFamily)] = &[
    ("llama", llama::load),
    ("qwen2", llama::load),
    ("qwen3", qwen3::load),
    ("gemma3", gemma3::load),
    ("lfm2", lfm2::load),
];

/// The names in [`FAMILIES`], for error messages.
pub fn supported_architectures() -> String {
    FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
}

pub struct Model {
    pub config: Config,
    pub tok_embd: QMatrix, // (vocab, n_embd)
    pub output_norm: Vec<f32>, // (n_embd)
    /// None: tied to `tok_embd` (SmolLM2, Gemma have no `output.weight`).
    pub output: Option<QMatrix>, // (vocab, n_embd)
    pub family: Box<dyn Family>,
}

impl Model {
    /// Loads a model from a GGUF byte source: parses and validates the header, then reads each
    /// tensor once into its own buffer.
    pub fn load(src: &mut dyn ByteSource) -> Result<(Gguf, Model)> {
        let len = src.len();
        Model::load_parts(src, &[len])
    }

    /// A model whose files `src` holds back to back, `part_lens` bytes each (a split GGUF's shards).
    pub fn load_parts(src: &mut dyn ByteSource, part_lens: &[u64]) -> Result<(Gguf, Model)> {
        let g = crate::gguf::read_parts(src, part_lens)?;
        let model = Model::from_gguf(&g, src)?;
        Ok((g, model))
    }

    pub fn from_gguf(g: &Gguf, src: &mut dyn ByteSource) -> Result<Model> {
        let arch = g.str("general.architecture")?;
        let load = FAMILIES
            .iter()
            .find(|f| f.0 == arch)
            .map(|f| f.1)
            .ok_or_else(|| Error::UnsupportedArchitecture(arch.to_string()))?;
        let mut c = Config::from_gguf(g, arch)?;
        let mut l = Loader { g, src };
        let tok_embd = l.matrix("token_embd.weight", c.vocab_size, c.n_embd)?;
        let family = load(&mut l, &mut c)?;
        c.validate()?;
        let output_norm = l.vector(family.output_norm_name(), c.n_embd)?;
        let output = if l.has("output.weight") { Some(l.matrix("output.weight", c.vocab_size, c.n_embd)?) } else { None };
        Ok(Model { config: c, tok_embd, output_norm, output, family })
    }

    pub fn output(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }

    /// The type of the first block's main weight, as a name ("Q4_1", "Q5_0", ...).
    pub fn file_type(&self) -> &'static str {
        self.family.main_type().name()
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        self.tok_embd.bytes() + self.output_norm.len() * 4 + self.output.as_ref().map_or(0, QMatrix::bytes) + self.family.weight_bytes()
    }

    /// An empty cache for `n_ctx` positions written `n_batch` at a time, shaped for this model.
    pub fn new_cache(&self, n_ctx: usize, n_batch: usize) -> Result<KvCache> {
        KvCache::new(&self.family.cache_layout(&self.config), n_ctx, n_batch)
    }

    /// Activation buffers for batches of up to `n_batch` tokens.
    pub fn new_scratch(&self, n_batch: usize) -> Scratch {
        Scratch::new(&self.config, n_batch, self.family.extra_scratch(&self.config))
    }

    /// Runs `tokens` at positions `kv.len()..` through the model, appending what each layer keeps
    /// to the cache. Writes logits for tokens `logits_from..` into `logits` ((n, vocab) row-major).
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
        if n > kv.max_batch() {
            return Err(Error::InvalidArgument(format!("batch of {n} exceeds the cache's batch {}", kv.max_batch())));
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
        let e = c.n_embd;

        // x: (n, n_embd) embeddings
        for (i, &t) in tokens.iter().enumerate() {
            let row = &mut s.x[i * e..(i + 1) * e];
            quant::dequantize_row(self.tok_embd.ty, &self.tok_embd.row(t as usize), row);
            if let Some(k) = self.family.embed_scale() {
                row.iter_mut().for_each(|v| *v *= k);
            }
        }
        self.family.blocks(c, kv, s, p0, n);
        kv.set_len(p0 + n);

        if n_out > 0 {
            let rows = &s.x[logits_from * e..n * e];
            blocks::rms_norm(rows, &self.output_norm, c.rms_eps, &mut s.xb[..n_out * e]);
            let out = self.output();
            s.act.reset();
            let logits = &mut logits[..n_out * c.vocab_size];
            out.matmul(s.act.get(&s.xb[..n_out * e], e, out.act), n_out, logits);
            if let Some(cap) = self.family.logit_softcap() {
                // as ggml: scale by 1/cap, tanh, scale by cap
                let inv = 1.0 / cap;
                logits.iter_mut().for_each(|v| *v = libm::tanhf(*v * inv) * cap);
            }
        }
        Ok(())
    }
}

/// A weight matrix in its file format: `rows` rows of `cols` elements, row-major.
pub struct QMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    act: ActType,
    row_bytes: usize,
    /// How `data`'s blocks lie (this build's kernels' choice, made at load)
    layout: Layout,
    data: Vec<u8>,
}

impl QMatrix {
    pub fn act_type(&self) -> ActType {
        self.act
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `r` as the file stores it.
    pub fn row(&self, r: usize) -> Cow<'_, [u8]> {
        layout::row(self.layout, self.ty, self.cols, &self.data, r)
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
    pub(crate) fn matmul_rows(&self, act: &[u8], n_tok: usize, out: SyncPtr<f32>, range: Range<usize>) {
        let ab = act_bytes(self.act, self.cols);
        assert!(act.len() >= n_tok * ab && range.end <= self.rows);
        let o = out.get();
        let w = &self.data[range.start * self.row_bytes..range.end * self.row_bytes];
        if n_tok == 1 {
            // SAFETY: this call's rows of a row of `out` (range ⊂ 0..rows).
            unsafe { layout::dot_rows_in(self.layout, self.ty, self.cols, w, &[&act[..ab]], &[o.add(range.start)]) };
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
                unsafe { layout::dot_rows_in(self.layout, self.ty, self.cols, tile, &acts[..k], &outs[..k]) };
                t0 += k;
            }
        }
    }
}

const TILE_ROWS: usize = 16;

/// Several matmuls in one parallel call (the q, k and v projections of one input): their row
/// tiles are numbered one after another and split across threads together, so there is one
/// hand-off instead of one per matrix and the small k and v matrices need no split of their own.
pub(crate) fn matmuls<const J: usize>(jobs: [(&QMatrix, &[u8], &mut [f32]); J], n_tok: usize) {
    let tiles: [usize; J] = std::array::from_fn(|i| jobs[i].0.rows.div_ceil(TILE_ROWS));
    let ptrs = jobs.map(|(m, a, o)| {
        assert!(o.len() >= n_tok * m.rows);
        (m, a, SyncPtr(o.as_mut_ptr()))
    });
    let all: usize = tiles.iter().sum();
    parallel::for_each_range(all, 1, |range| {
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

/// The gated feed-forward's nonlinearity, `act(gate) · up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(g)·u (llama, qwen, lfm2).
    Silu,
    /// GeGLU with the tanh approximation, through ggml's f16 table (gemma).
    GeluTanh,
}

/// gate = act(W_gate·x) * (W_up·x) in one parallel call: each thread computes the same rows of
/// both and applies the activation to them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_up(act: Activation, w_gate: &QMatrix, w_up: &QMatrix, act_g: &[u8], act_u: &[u8], n_tok: usize, gate: &mut [f32], up: &mut [f32]) {
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
            match act {
                Activation::Silu => crate::vmath::silu_mul(gr, ur),
                Activation::GeluTanh => crate::vmath::gelu_tanh_mul(gr, ur),
            }
        }
    });
}

/// Reads tensors by canonical name, checking type and shape, straight into their storage.
pub struct Loader<'a> {
    g: &'a Gguf,
    src: &'a mut dyn ByteSource,
}

impl<'a> Loader<'a> {
    /// The file's metadata (a family's own keys).
    pub fn gguf(&self) -> &'a Gguf {
        self.g
    }

    pub fn has(&self, name: &str) -> bool {
        self.g.tensor(name).is_some()
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.g.tensor(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    fn read(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        let range = self.g.tensor_range(t);
        let oom = || Error::OutOfMemory { what: format!("tensor {:?}", t.name), bytes: t.size };
        let size = usize::try_from(t.size).map_err(|_| oom())?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|_| oom())?;
        buf.resize(size, 0);
        self.src.read_at(range.start, &mut buf)?;
        Ok(buf)
    }

    /// A matrix of `rows` rows of `cols` (ggml dims [cols, rows]).
    pub fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
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
        let mut data = self.read(&t)?;
        let layout = layout::for_build(t.ty, rows);
        layout::arrange(layout, t.ty, cols, &mut data);
        Ok(QMatrix { ty: t.ty, rows, cols, act, row_bytes, layout, data })
    }

    /// A vector of `n` f32 (stored as F32 or F16).
    pub fn vector(&mut self, name: &str, n: usize) -> Result<Vec<f32>> {
        self.f32_tensor(name, &[n as u64])
    }

    /// A small matrix of `rows` rows of `cols` as plain f32 (stored as F32 or F16), row-major.
    pub fn f32_matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        self.f32_tensor(name, &[cols as u64, rows as u64])
    }

    fn f32_tensor(&mut self, name: &str, dims: &[u64]) -> Result<Vec<f32>> {
        let t = self.info(name)?.clone();
        if t.dims != dims {
            return Err(Error::TensorShape { name: t.name, found: t.dims, expected: dims.to_vec() });
        }
        let n = dims.iter().product::<u64>() as usize;
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
            return Err(Error::UnsupportedTensorType { name: t.name, type_name: t.ty.name().to_string() });
        }
        let raw = self.read(&t)?;
        let mut out = vec![0f32; n];
        quant::dequantize_row(t.ty, &raw, &mut out);
        Ok(out)
    }

    pub fn opt_vector(&mut self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.g.tensor(name).is_some() {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

