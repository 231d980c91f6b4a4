//! The browser's binding: a small, step-wise API over the same engine the CLI uses. JS (the worker)
//! drives the loop — `beginChat`/`beginRaw`, then `prefill` slices and `step` calls — so it can
//! yield between tokens and an abort lands between them. Errors cross into JS here and only here,
//! as `Error` objects with a `type` (see `Error::kind`). Results are JSON strings for the worker to
//! parse: no serde bridge in the binary.

use crate::chat::{Message, RenderOptions};
use crate::error::Error;
use crate::generate::{GenerateOptions, Generation};
use crate::session::{Engine, Session};
use crate::source::ByteSource;
use serde_json::json;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The template's options in a chat's options JSON: `enableThinking` (true, false, or absent: the
/// template's default). The generation options in the same JSON are read by `begin`.
fn render_options(options_json: &str) -> Result<RenderOptions, JsValue> {
    if options_json.trim().is_empty() {
        return Ok(RenderOptions::default());
    }
    let v: serde_json::Value = serde_json::from_str(options_json).map_err(|e| bad_arg(format!("options: {e}")))?;
    let enable_thinking = match v.get("enableThinking") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad_arg("enableThinking must be a boolean".into())),
    };
    Ok(RenderOptions { enable_thinking, now: None })
}

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = js_sys::Reflect::set(&err, &"type".into(), &e.kind().into());
    err.into()
}

fn bad_arg(msg: String) -> JsValue {
    js_error(Error::InvalidArgument(msg))
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Model bytes read on demand through a synchronous JS callback `(offset, length) => Uint8Array`
/// (the worker slices a stored File or Blob with FileReaderSync), so each tensor is copied once,
/// straight into its own buffer in wasm memory, and no copy of the whole file is ever held.
///
/// With hashing on it also computes the SHA-256 of each part (the file, or each shard of a split model
/// laid end to end) on the way: every read that continues where the hash stands is hashed in place (the
/// loader reads tensors in file order in the usual layout), and `finish_hash` reads whatever was skipped,
/// in order, afterwards.
struct JsSource {
    read: js_sys::Function,
    len: u64,
    hash: Option<PartHashes>,
}

/// SHA-256s of consecutive parts, fed in order.
struct PartHashes {
    h: sha2::Sha256,
    /// How far the hashed prefix reaches.
    pos: u64,
    /// Where each part ends.
    ends: Vec<u64>,
    done: Vec<String>,
}

impl PartHashes {
    fn feed(&mut self, mut data: &[u8]) {
        use sha2::Digest;
        while !data.is_empty() && self.done.len() < self.ends.len() {
            let end = self.ends[self.done.len()];
            let n = ((end - self.pos) as usize).min(data.len());
            self.h.update(&data[..n]);
            self.pos += n as u64;
            data = &data[n..];
            if self.pos == end {
                self.done.push(hex(&self.h.finalize_reset()));
            }
        }
    }
}

/// Bytes per read when hashing what the loader skipped.
const HASH_SLICE: u64 = 8 << 20;

impl JsSource {
    fn finish_hash(&mut self) -> crate::Result<Option<Vec<String>>> {
        let Some(mut pos) = self.hash.as_ref().map(|h| h.pos) else { return Ok(None) };
        let mut buf = Vec::new();
        while pos < self.len {
            let n = (self.len - pos).min(HASH_SLICE) as usize;
            buf.resize(n, 0);
            self.read_at(pos, &mut buf)?; // hashes it, as it continues the hashed prefix
            pos += n as u64;
        }
        Ok(self.hash.take().map(|h| h.done))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ByteSource for JsSource {
    fn len(&self) -> u64 {
        self.len
    }

    /// Asks JS for the bytes a slice at a time: a JS buffer is garbage once copied, and a whole large
    /// tensor (a 128k-token embedding is 200+ MB) in one would stand beside its copy in wasm memory
    /// until collected — the weights twice, for a moment, in the tab.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        let io = |m: String| Error::Io(std::io::Error::other(m));
        for (k, piece) in buf.chunks_mut(READ_SLICE).enumerate() {
            let at = offset + (k * READ_SLICE) as u64;
            let got = self
                .read
                .call2(&JsValue::NULL, &JsValue::from_f64(at as f64), &JsValue::from_f64(piece.len() as f64))
                .map_err(|e| io(format!("model read failed: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))))?;
            let arr: js_sys::Uint8Array = got.dyn_into().map_err(|_| io("model read did not return a Uint8Array".into()))?;
            if arr.length() as usize != piece.len() {
                return Err(Error::Truncated {
                    context: "model read".into(),
                    offset: at,
                    needed: piece.len() as u64,
                    available: arr.length() as u64,
                });
            }
            arr.copy_to(piece);
            if let Some(h) = &mut self.hash {
                if h.pos == at {
                    h.feed(piece);
                }
            }
        }
        Ok(())
    }
}

/// Bytes per read from JS (see `JsSource::read_at`).
const READ_SLICE: usize = 4 << 20;

/// SHA-256 over bytes handed in piece by piece (a download as it streams): `crypto.subtle` has
/// no incremental digest.
#[wasm_bindgen]
pub struct Sha256(sha2::Sha256);

#[wasm_bindgen]
impl Sha256 {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Sha256 {
        Sha256(sha2::Digest::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    /// The hex digest; the hasher starts over.
    pub fn finish(&mut self) -> String {
        hex(&sha2::Digest::finalize_reset(&mut self.0))
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
pub struct WasmEngine {
    engine: Arc<Engine>,
    session: Session,
    generation: Option<Generation>,
    prompt_tokens: Vec<u32>,
    sha256: Option<Vec<String>>,
    /// The kernels' `touch` reads timed on this model at load (`tune_touch`).
    touch: Option<crate::tune::Timed>,
}

#[wasm_bindgen]
impl WasmEngine {
    /// Loads a GGUF of `size` bytes through `read(offset, length) => Uint8Array`, with a context of
    /// `n_ctx` tokens (0: the model's, at most 4096). `parts`, when given, are the byte lengths of a split
    /// model's shards, which `read` serves back to back in order (they sum to `size`). With `hash`, the
    /// SHA-256 of the file, or of each shard, is computed on the way (`sha256`, `sha256s`); the hash is
    /// finished only once the model has loaded.
    #[wasm_bindgen(constructor)]
    pub fn new(read: js_sys::Function, size: f64, n_ctx: u32, hash: bool, parts: Option<Vec<f64>>) -> Result<WasmEngine, JsValue> {
        if !(size.is_finite() && size >= 0.0) {
            return Err(bad_arg(format!("bad model size {size}")));
        }
        let lens: Vec<u64> = match parts {
            Some(p) if !p.is_empty() => {
                if p.iter().any(|&n| !(n.is_finite() && n > 0.0)) || p.iter().sum::<f64>() != size {
                    return Err(bad_arg(format!("the parts' sizes {p:?} do not add up to {size}")));
                }
                p.iter().map(|&n| n as u64).collect()
            }
            _ => vec![size as u64],
        };
        let ends = lens.iter().scan(0u64, |at, &n| { *at += n; Some(*at) }).collect();
        let hash = hash.then(|| PartHashes { h: sha2::Digest::new(), pos: 0, ends, done: Vec::new() });
        let mut src = JsSource { read, len: size as u64, hash };
        let engine = Arc::new(Engine::load_split(&mut src, &lens).map_err(js_error)?);
        if engine.weight_mix.iter().any(|(t, _)| matches!(*t, "Q4_K" | "Q6_K")) {
            kernel_forms();
        }
        let touch = tune_touch(&engine);
        let n_ctx = if n_ctx == 0 { engine.model.config.n_ctx_train.min(4096) } else { n_ctx as usize };
        let session = Session::new(engine.clone(), n_ctx).map_err(js_error)?;
        let sha256 = src.finish_hash().map_err(js_error)?;
        Ok(WasmEngine { engine, session, generation: None, prompt_tokens: Vec::new(), sha256, touch })
    }

    /// The file's hex SHA-256 (a split model's: the first shard's) when the engine was made with `hash`.
    #[wasm_bindgen(getter)]
    pub fn sha256(&self) -> Option<String> {
        self.sha256.as_ref().and_then(|h| h.first().cloned())
    }

    /// Each part's hex SHA-256 (one for a whole file) when the engine was made with `hash`.
    #[wasm_bindgen(getter)]
    pub fn sha256s(&self) -> Option<Vec<String>> {
        self.sha256.clone()
    }

    /// Model facts as JSON: name, architecture, sizes, quantization, context, threads.
    pub fn info(&self) -> String {
        let c = &self.engine.model.config;
        json!({
            "name": self.engine.name,
            "architecture": c.arch,
            "quantization": self.engine.file_type,
            "weightMix": self.engine.weight_mix.iter().map(|(t, b)| json!({"type": t, "bytes": b})).collect::<Vec<_>>(),
            "layers": c.n_layer,
            "embedding": c.n_embd,
            "heads": c.n_head,
            "kvHeads": c.n_head_kv,
            "vocab": c.vocab_size,
            "contextTrain": c.n_ctx_train,
            "context": self.session.n_ctx(),
            "weightBytes": self.engine.model.weight_bytes(),
            "kvBytes": self.session.kv_bytes(),
            "threads": crate::parallel::threads(),
            "simd": cfg!(target_feature = "simd128"),
            "threaded": cfg!(target_feature = "atomics"),
            "q4kDots": forms_json(0),
            "q6kDots": forms_json(1),
            "touchReads": self.touch.map(|t| json!({ "used": t.kept, "onMs": t.on, "offMs": t.off })),
        })
        .to_string()
    }

    /// Token ids of `text` (special-token text parsed when `parse_special`).
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, JsValue> {
        self.engine.tokenizer.encode(text, parse_special).map_err(js_error)
    }

    pub fn detokenize(&self, ids: Vec<u32>) -> String {
        self.engine.tokenizer.decode(&ids)
    }

    /// Starts a chat turn: `messages_json` is `[{role, content}]`, `options_json` the generation
    /// options (`maxTokens`, `temperature`, `topK`, `topP`, `minP`, `repeatPenalty`, `seed`, `stop`).
    /// Reuses the cached prefix; returns `{promptTokens, prefill}` (tokens still to prefill).
    #[wasm_bindgen(js_name = beginChat)]
    pub fn begin_chat(&mut self, messages_json: &str, options_json: &str) -> Result<String, JsValue> {
        let messages: Vec<Message> =
            serde_json::from_str(messages_json).map_err(|e| bad_arg(format!("messages: {e}")))?;
        let tokens = self.engine.chat_tokens_with(&messages, &render_options(options_json)?).map_err(js_error)?;
        self.begin(tokens, options_json)
    }

    /// Tokens `messages_json` (`[{role, content}]`) takes in the chat template, with the prompt for
    /// the answer (so a caller can drop old turns before the context runs out).
    #[wasm_bindgen(js_name = chatTokenCount)]
    pub fn chat_token_count(&self, messages_json: &str, options_json: &str) -> Result<u32, JsValue> {
        let messages: Vec<Message> =
            serde_json::from_str(messages_json).map_err(|e| bad_arg(format!("messages: {e}")))?;
        Ok(self.engine.chat_tokens_with(&messages, &render_options(options_json)?).map_err(js_error)?.len() as u32)
    }

    /// Starts a raw completion: the prompt is tokenized as-is (special-token text parsed), no template.
    #[wasm_bindgen(js_name = beginRaw)]
    pub fn begin_raw(&mut self, prompt: &str, options_json: &str) -> Result<String, JsValue> {
        let tokens = self.engine.tokenizer.encode(prompt, true).map_err(js_error)?;
        self.begin(tokens, options_json)
    }

    fn begin(&mut self, tokens: Vec<u32>, options_json: &str) -> Result<String, JsValue> {
        let options: GenerateOptions = if options_json.trim().is_empty() {
            GenerateOptions::default()
        } else {
            serde_json::from_str(options_json).map_err(|e| bad_arg(format!("options: {e}")))?
        };
        self.generation = None;
        let generation = Generation::new(options).map_err(js_error)?;
        let queued = self.session.start_feed(&tokens).map_err(js_error)?;
        self.prompt_tokens = tokens;
        self.generation = Some(generation);
        Ok(json!({"promptTokens": self.prompt_tokens.len(), "prefill": queued}).to_string())
    }

    /// Prefills up to `max_tokens` of the queued prompt; returns the number still queued.
    pub fn prefill(&mut self, max_tokens: u32) -> Result<u32, JsValue> {
        self.session.feed_some(max_tokens as usize).map_err(js_error)?;
        Ok(self.session.pending() as u32)
    }

    /// One token: `{piece, token, done, finishReason}`; when done, also `tokens` and `text`.
    pub fn step(&mut self) -> Result<String, JsValue> {
        if self.session.pending() > 0 {
            return Err(bad_arg("prefill is not finished".into()));
        }
        let g = self.generation.as_mut().ok_or_else(|| bad_arg("no generation started".into()))?;
        let piece = g.step(&mut self.session).map_err(js_error)?;
        let token = g.tokens.last().copied();
        let out = if g.is_done() {
            json!({"piece": piece, "token": token, "done": true, "finishReason": g.finished,
                   "tokens": g.tokens, "text": g.text, "promptTokens": self.prompt_tokens})
        } else {
            json!({"piece": piece, "token": token, "done": false})
        };
        Ok(out.to_string())
    }

    /// Forgets the conversation (the KV cache is kept allocated).
    pub fn reset(&mut self) {
        self.session.reset();
        self.generation = None;
    }

    /// Tokens the session holds (for tests of prefix reuse).
    #[wasm_bindgen(js_name = cachedTokens)]
    pub fn cached_tokens(&self) -> u32 {
        self.session.tokens().len() as u32
    }
}

/// What a model needs in memory, from `prefix` (the first bytes of a GGUF of `file_size` bytes) at
/// a context of `n_ctx` tokens (0: the model's, at most 4096). JSON: `{needBytes}` when the header
/// goes on past the prefix, else `{nCtx, weights, kvCache, fixed, perToken, total}`.
#[wasm_bindgen]
pub fn preflight(prefix: &[u8], file_size: f64, n_ctx: u32) -> Result<String, JsValue> {
    use crate::preflight::{preflight, Preflight};
    if !(file_size.is_finite() && file_size >= 0.0) {
        return Err(bad_arg(format!("bad model size {file_size}")));
    }
    Ok(match preflight(prefix, file_size as u64, n_ctx as usize).map_err(js_error)? {
        Preflight::NeedBytes(n) => json!({ "needBytes": n }),
        Preflight::Need(m) => json!({
            "nCtx": m.n_ctx, "weights": m.weights, "kvCache": m.kv_cache,
            "fixed": m.fixed, "perToken": m.per_token, "total": m.total(),
        }),
    }
    .to_string())
}

/// Threaded build: a helper thread's entry point. The JS side starts each helper worker on the same
/// module and memory and calls this; it never returns.
#[cfg(target_feature = "atomics")]
#[wasm_bindgen(js_name = threadMain)]
pub fn thread_main() {
    crate::parallel::thread_main()
}

/// Threaded build: helper threads registered so far.
#[cfg(target_feature = "atomics")]
#[wasm_bindgen(js_name = helperThreads)]
pub fn helper_threads() -> u32 {
    crate::parallel::helpers() as u32
}

/// Threads that parallel work uses, the calling one included (0: all started), capped at the
/// helpers running + 1. Returns the count now in use.
#[wasm_bindgen(js_name = setThreads)]
pub fn set_threads(n: u32) -> u32 {
    crate::parallel::set_threads(n as usize);
    crate::parallel::threads() as u32
}

/// Allocations that failed so far, and the size of the last one. A failed allocation that Rust
/// does not handle aborts the wasm instance (a trap): the worker compares the count from before a
/// call with the one after its trap to report `out_of_memory` instead of a crash (see `alloc`).
#[wasm_bindgen(js_name = failedAllocations)]
pub fn failed_allocations() -> js_sys::Array {
    let (n, size) = crate::alloc::failed_allocations();
    js_sys::Array::of2(&(n as f64).into(), &(size as f64).into())
}

/// Allocations refused so far because work on untrusted input (a chat template's render) reached its
/// memory cap: after a trap, a count that grew means the GGUF's template, not the device, is at fault.
#[wasm_bindgen(js_name = budgetRefusals)]
pub fn budget_refusals() -> f64 {
    crate::alloc::budget_refusals() as f64
}

static FORMS: std::sync::OnceLock<Option<[(f64, f64); 2]>> = std::sync::OnceLock::new();

/// The relaxed-SIMD Q4_K and Q6_K kernels' two forms timed on this CPU, once per instance (at the
/// first load of a model with those types), the faster kept (`quant::simd128::calibrate`):
/// [Q4_K, Q6_K] × (i32 form, i16 form) ms per call; `None` without relaxed SIMD or a clock.
fn kernel_forms() -> Option<[(f64, f64); 2]> {
    *FORMS.get_or_init(|| {
        let clock = clock()?;
        #[cfg(target_feature = "relaxed-simd")]
        return Some(crate::quant::simd128::calibrate(clock));
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            let _ = clock;
            None
        }
    })
}

/// `performance.now()` as a clock (ms), when this global has it.
fn clock() -> Option<impl Fn() -> f64> {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok().filter(|p| p.is_object())?;
    let now: js_sys::Function = js_sys::Reflect::get(&perf, &"now".into()).ok()?.dyn_into().ok()?;
    Some(move || now.call0(&perf).ok().and_then(|v| v.as_f64()).unwrap_or(0.0))
}

/// Kernel `k`'s (0: Q4_K, 1: Q6_K) form in use and both forms' timings, once they were timed.
fn forms_json(k: usize) -> Option<serde_json::Value> {
    let (i32_ms, i16_ms) = (*FORMS.get()?)?[k];
    #[cfg(target_feature = "relaxed-simd")]
    let i16 = crate::quant::simd128::i16_dots()[k];
    #[cfg(not(target_feature = "relaxed-simd"))]
    let i16 = false;
    Some(json!({ "form": if i16 { "i16" } else { "i32" }, "i32Ms": i32_ms, "i16Ms": i16_ms }))
}

/// Whether the wasm kernels' `touch` reads (see `quant::simd128`) pay with this model on this
/// machine, timed on its own forward passes and set for the instance (`tune::choose`); `None`
/// without simd128 kernels, a clock or a pass.
fn tune_touch(engine: &Engine) -> Option<crate::tune::Timed> {
    #[cfg(target_feature = "simd128")]
    return crate::tune::choose(engine, crate::quant::simd128::set_touch, clock()?).ok();
    #[cfg(not(target_feature = "simd128"))]
    {
        let _ = engine;
        None
    }
}

/// One thread's memory read bandwidth in bytes per second over `mib` MiB, the best of 3 passes
/// (the benchmark's decode bound: weight bytes ÷ this is the least time a token can take); `now` is
/// a millisecond clock, `() => performance.now()`. The buffer stays in this instance's memory
/// (which never shrinks): call it from an instance of its own, not the engine's.
#[wasm_bindgen(js_name = readBandwidth)]
pub fn read_bandwidth(mib: u32, now: &js_sys::Function) -> f64 {
    let clock = || now.call0(&JsValue::NULL).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    crate::membw::read_bandwidth((mib as usize) << 20, 3, clock)
}

/// Bytes of wasm linear memory right now (for the benchmark's peak-memory figure).
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    let mem: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let buf: js_sys::ArrayBuffer = mem.buffer().unchecked_into();
    buf.byte_length() as f64
}
