//! An engine (model + tokenizer + template, immutable, shareable) and a session over it (the KV
//! cache, the tokens it holds, scratch buffers). Callers never compute positions: a session feeds
//! what is new and reuses the longest common prefix of what it already holds.

use crate::chat::{tokenize_segments, ChatTemplate, Message, RenderOptions};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::kv_cache::KvCache;
use crate::model::{Model, Scratch};
use crate::source::ByteSource;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

/// Tokens per forward pass in prefill: enough to amortise reading each weight row, small enough
/// that scratch stays a few MB.
pub const DEFAULT_BATCH: usize = 64;

pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// The GGUF's chat template (ChatML when it has none), or why it cannot be used: a template
    /// minijinja cannot compile fails chats with a typed error, not the whole load.
    pub template: std::result::Result<ChatTemplate, String>,
    /// `general.name`, when the file has it.
    pub name: Option<String>,
    pub file_type: String,
    /// Bytes of tensor data in the file by weight type ("Q4_K", "Q6_K", "F32", …), largest first: what a
    /// quant mix such as Q4_K_M really holds.
    pub weight_mix: Vec<(&'static str, u64)>,
}

impl Engine {
    pub fn load(src: &mut dyn ByteSource) -> Result<Engine> {
        let (g, model) = Model::load(src)?;
        Engine::from_parts(&g, model)
    }

    /// A model whose files `src` holds back to back, `part_lens` bytes each (a split GGUF's shards, in order).
    pub fn load_split(src: &mut dyn ByteSource, part_lens: &[u64]) -> Result<Engine> {
        let (g, model) = Model::load_parts(src, part_lens)?;
        Engine::from_parts(&g, model)
    }

    pub fn from_parts(g: &Gguf, model: Model) -> Result<Engine> {
        let tokenizer = Tokenizer::from_gguf(g)?;
        if tokenizer.vocab_size() != model.config.vocab_size {
            return Err(Error::BadConfig(format!(
                "tokenizer has {} tokens, the model's embedding {}",
                tokenizer.vocab_size(),
                model.config.vocab_size
            )));
        }
        let template = ChatTemplate::from_gguf(g).map_err(|e| e.to_string());
        let name = g.opt_str("general.name").ok().flatten().map(str::to_string);
        let file_type = model.file_type().to_string();
        let mut weight_mix: Vec<(&'static str, u64)> = Vec::new();
        for t in &g.tensors {
            match weight_mix.iter_mut().find(|(n, _)| *n == t.ty.name()) {
                Some((_, b)) => *b += t.size,
                None => weight_mix.push((t.ty.name(), t.size)),
            }
        }
        weight_mix.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Ok(Engine { model, tokenizer, template, name, file_type, weight_mix })
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// A model file, or all shards of a split one when `path` is named like one of them
    /// (`…-00001-of-00003.gguf`).
    pub fn open(path: &std::path::Path) -> Result<Engine> {
        let open = |p: &std::path::Path| -> Result<crate::source::ReadSeek<std::io::BufReader<std::fs::File>>> {
            crate::source::ReadSeek::new(std::io::BufReader::new(std::fs::File::open(p)?))
        };
        match crate::source::split_paths(path) {
            Some(paths) => {
                let parts = paths.iter().map(|p| Ok(Box::new(open(p)?) as Box<dyn ByteSource>)).collect::<Result<Vec<_>>>()?;
                let mut src = crate::source::Concat::new(parts);
                let lens = src.part_lens();
                Engine::load_split(&mut src, &lens)
            }
            None => Engine::load(&mut open(path)?),
        }
    }

    /// `n` forward passes of one token, as decode runs them (every weight read once), on a cache
    /// and scratch of their own: no session's state changes. `before(i)` runs before pass `i`;
    /// returns each pass's time by `clock`. For tuning the kernels to the machine (`tune`).
    pub fn time_passes(&self, n: usize, mut before: impl FnMut(usize), clock: impl Fn() -> f64) -> Result<Vec<f64>> {
        let mut kv = self.model.new_cache(1, 1)?;
        let mut s = self.model.new_scratch(1);
        let mut logits = vec![0f32; self.model.config.vocab_size];
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            kv.truncate(0);
            before(i);
            let t0 = clock();
            self.model.forward(&[0], &mut kv, &mut s, 0, &mut logits)?;
            times.push(clock() - t0);
        }
        Ok(times)
    }

    /// Prompt tokens for a chat: the template's text with special tokens, message content as plain text.
    pub fn chat_tokens(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.chat_tokens_with(messages, &RenderOptions::default())
    }

    /// [`chat_tokens`](Self::chat_tokens) with the template's [`RenderOptions`] (e.g. `enable_thinking`).
    pub fn chat_tokens_with(&self, messages: &[Message], opts: &RenderOptions) -> Result<Vec<u32>> {
        let template = self.template.as_ref().map_err(|e| Error::Template(e.clone()))?;
        let segs = template.render_with(messages, true, opts)?;
        tokenize_segments(&self.tokenizer, &segs)
    }
}

pub struct Session {
    engine: Arc<Engine>,
    kv: KvCache,
    scratch: Scratch,
    /// The tokens whose keys and values the cache holds, in order.
    tokens: Vec<u32>,
    /// Logits after the last token fed (vocab).
    logits: Vec<f32>,
    /// Tokens run through the model by the last `feed` (the rest were reused).
    pub last_prefilled: usize,
    /// Tokens queued by `start_feed`.
    pending: Vec<u32>,
}

impl Session {
    pub fn new(engine: Arc<Engine>, n_ctx: usize) -> Result<Session> {
        Session::with_batch(engine, n_ctx, DEFAULT_BATCH)
    }

    pub fn with_batch(engine: Arc<Engine>, n_ctx: usize, n_batch: usize) -> Result<Session> {
        if n_ctx == 0 {
            return Err(Error::InvalidArgument("context length must be at least 1".into()));
        }
        let c = &engine.model.config;
        let n_batch = n_batch.clamp(1, n_ctx);
        let kv = engine.model.new_cache(n_ctx, n_batch)?;
        let scratch = engine.model.new_scratch(n_batch);
        let logits = vec![0f32; c.vocab_size];
        Ok(Session { engine, kv, scratch, tokens: Vec::new(), logits, last_prefilled: 0, pending: Vec::new() })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.capacity()
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Logits for the token after the last one fed.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    pub fn logits_mut(&mut self) -> &mut [f32] {
        &mut self.logits
    }

    pub fn reset(&mut self) {
        self.kv.truncate(0);
        self.tokens.clear();
        self.pending.clear();
        self.last_prefilled = 0;
    }

    /// Makes the session hold exactly `tokens`: keeps the longest common prefix already cached and
    /// runs only the rest (at least the last token, for its logits). Returns the number run.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<usize> {
        let n = self.start_feed(tokens)?;
        while !self.feed_some(usize::MAX)? {}
        Ok(n)
    }

    /// The first half of `feed`: drops what differs from `tokens` and queues the rest, which
    /// `feed_some` then runs a slice at a time (so a caller can yield or cancel in between).
    /// Returns the number of tokens queued.
    pub fn start_feed(&mut self, tokens: &[u32]) -> Result<usize> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("empty prompt".into()));
        }
        if tokens.len() > self.n_ctx() {
            return Err(Error::ContextFull { needed: tokens.len(), capacity: self.n_ctx() });
        }
        let common = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // a recurrent state (LFM2's convolutions) may not reach back that far: then start over
        let keep = self.kv.reusable(common.min(tokens.len() - 1));
        self.kv.truncate(keep);
        self.tokens.truncate(keep);
        self.pending = tokens[keep..].to_vec();
        self.last_prefilled = self.pending.len();
        Ok(self.pending.len())
    }

    /// Runs up to `max` queued tokens; true when none are left (the logits are then current).
    pub fn feed_some(&mut self, max: usize) -> Result<bool> {
        let n = self.pending.len().min(max.max(1));
        let batch: Vec<u32> = self.pending.drain(..n).collect();
        if let Err(e) = self.append(&batch) {
            self.pending.clear();
            return Err(e);
        }
        Ok(self.pending.is_empty())
    }

    /// Tokens queued by `start_feed` and not yet run.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Runs `tokens` after those held, in batches; the logits of the last one become `logits()`.
    pub fn append(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx() {
            return Err(Error::ContextFull { needed, capacity: self.n_ctx() });
        }
        let Session { engine, kv, scratch, tokens: held, logits, .. } = self;
        let model = &engine.model;
        let nb = scratch.n_batch;
        crate::parallel::run(|| -> Result<()> {
            let last = tokens.len().div_ceil(nb) - 1;
            for (ci, chunk) in tokens.chunks(nb).enumerate() {
                // only the very last token's logits are wanted
                let from = if ci == last { chunk.len() - 1 } else { chunk.len() };
                if let Err(e) = model.forward(chunk, kv, scratch, from, logits) {
                    kv.truncate(held.len());
                    return Err(e);
                }
                held.extend_from_slice(chunk);
            }
            Ok(())
        })
    }

    /// Logits for every position from `from` on, for `tokens` run from an empty cache
    /// ((tokens.len() - from, vocab) row-major). Used by perplexity.
    pub fn all_logits(&mut self, tokens: &[u32], from: usize) -> Result<Vec<f32>> {
        self.reset();
        if tokens.len() > self.n_ctx() {
            return Err(Error::ContextFull { needed: tokens.len(), capacity: self.n_ctx() });
        }
        let vocab = self.engine.model.config.vocab_size;
        let mut out = vec![0f32; tokens.len().saturating_sub(from) * vocab];
        let Session { engine, kv, scratch, tokens: held, .. } = self;
        let nb = scratch.n_batch;
        let model = &engine.model;
        crate::parallel::run(|| -> Result<()> {
            let mut pos = 0;
            for chunk in tokens.chunks(nb) {
                let lf = from.saturating_sub(pos).min(chunk.len());
                let o0 = (pos + lf).saturating_sub(from) * vocab;
                let n_out = chunk.len() - lf;
                model.forward(chunk, kv, scratch, lf, &mut out[o0..o0 + n_out * vocab])?;
                held.extend_from_slice(chunk);
                pos += chunk.len();
            }
            Ok(())
        })?;
        Ok(out)
    }
}
