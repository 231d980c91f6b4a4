//! Subcommands: tokenize, generate, chat, perplexity, bench, split, quantize. `--json` prints one JSON
//! object on stdout (errors too: `{"error":{"type","message"}}`) so scripts and tests can drive it.

use clap::{Args, Parser, Subcommand};
use hearth::chat::{Message, RenderOptions};
use hearth::generate::{GenerateOptions, Generation};
use hearth::sampler::SamplerConfig;
use hearth::session::{Engine, Session};
use hearth::{Error, Result};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(name = "hearth", version, about = "A private language model: quantized GGUF models on the CPU, natively and in the browser")]
struct Cli {
    /// Threads for the matmuls (0: all cores).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct ModelArg {
    /// GGUF model file (default: $HEARTH_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Context length in tokens (default: the model's, at most 4096).
    #[arg(long)]
    ctx: Option<usize>,
}

#[derive(Args, Clone)]
struct SampleArgs {
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// The chat template's `enable_thinking` (Qwen3, SmolLM3): `false` asks for an answer without a thinking
    /// block. Unset: the template's default.
    #[arg(long, value_name = "true|false")]
    thinking: Option<bool>,
}

impl SampleArgs {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampler: SamplerConfig {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: 64,
                seed: self.seed,
            },
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        }
    }

    fn render(&self) -> RenderOptions {
        RenderOptions { enable_thinking: self.thinking, now: None }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the token ids of a text.
    Tokenize {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Tokenize special-token text (<|im_start|>) as plain text.
        #[arg(long)]
        no_special: bool,
        #[arg(long)]
        json: bool,
    },
    /// Generate a continuation (the prompt is one user message unless --raw).
    Generate {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, conflicts_with = "file")]
        prompt: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Tokenize the prompt as-is (special-token text parsed); no chat template.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        sample: SampleArgs,
        #[arg(long)]
        json: bool,
    },
    /// Interactive chat in the terminal (/reset starts over, an empty line or EOF ends).
    Chat {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Perplexity as llama.cpp's llama-perplexity computes it.
    Perplexity {
        /// GGUF model file (default: as for the other commands).
        #[arg(long, short)]
        model: Option<PathBuf>,
        #[arg(long)]
        file: PathBuf,
        /// Tokens per chunk (llama-perplexity's -c).
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        #[arg(long)]
        json: bool,
    },
    /// Prefill and decode speed, load time.
    Bench {
        #[command(flatten)]
        model: ModelArg,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long)]
        json: bool,
    },
    /// Split a GGUF into shards as llama.cpp's gguf-split does (`<name>-00001-of-0000N.gguf`, …); any shard's
    /// path then loads the whole model.
    Split {
        #[arg(long, short)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Directory for the shards.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rewrite a GGUF's weight matrices in another format (metadata and tokenizer kept).
    Quantize {
        #[arg(long, short)]
        model: Option<PathBuf>,
        /// q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs, bf16, f16, f32, or the mix q4_k_m
        /// (llama.cpp's: Q4_K, Q6_K for the output and some attn_v/ffn_down). K-quants: matrices whose rows are not a
        /// multiple of 256 become q5_0, q5_1, q8_0 respectively, as llama.cpp does)
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_MODEL") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("models").join(DEFAULT_MODEL);
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(DEFAULT_MODEL)
}

fn model_path(m: &Option<PathBuf>) -> PathBuf {
    m.clone().unwrap_or_else(default_model_path)
}

fn open(m: &ModelArg) -> Result<(Arc<Engine>, Session, f64)> {
    let path = model_path(&m.model);
    let t0 = Instant::now();
    let engine = Engine::open(&path).map_err(|e| match e {
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), format!("{}: {io}", path.display()))),
        e => e,
    })?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let engine = Arc::new(engine);
    let n_ctx = m.ctx.unwrap_or(engine.model.config.n_ctx_train.min(4096));
    let session = Session::new(engine.clone(), n_ctx)?;
    Ok((engine, session, load_ms))
}

fn read_text(text: &Option<String>, file: &Option<PathBuf>) -> Result<String> {
    match (text, file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(f)) => Ok(std::fs::read_to_string(f)?),
        (None, None) => Err(Error::InvalidArgument("give --text/--prompt or --file".into())),
    }
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    hearth::parallel::set_threads(cli.threads);
    let json = matches!(
        cli.cmd,
        Cmd::Tokenize { json: true, .. } | Cmd::Generate { json: true, .. } | Cmd::Perplexity { json: true, .. } | Cmd::Bench { json: true, .. }
    );
    match run(cli.cmd) {
        Ok(()) => 0,
        Err(e) => {
            if json {
                println!("{}", json!({"error": {"type": e.kind(), "message": e.to_string()}}));
            }
            eprintln!("error: {e}");
            1
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Tokenize { model, text, file, no_special, json } => {
            let (engine, _, _) = open(&ModelArg { ctx: Some(1), ..model })?;
            let text = read_text(&text, &file)?;
            let ids = engine.tokenizer.encode(&text, !no_special)?;
            if json {
                println!("{}", serde_json::to_string(&ids).unwrap_or_default());
            } else {
                for id in ids {
                    let piece = engine.tokenizer.token_text(id).unwrap_or("");
                    println!("{id:6} -> {piece:?}");
                }
            }
            Ok(())
        }
        Cmd::Generate { model, prompt, file, raw, sample, json } => {
            let (engine, mut session, _) = open(&model)?;
            let prompt = read_text(&prompt, &file)?;
            let prompt_tokens = if raw {
                engine.tokenizer.encode(&prompt, true)?
            } else {
                engine.chat_tokens_with(&[Message { role: "user".into(), content: prompt }], &sample.render())?
            };
            session.feed(&prompt_tokens)?;
            let mut g = Generation::new(sample.options())?;
            let stdout = std::io::stdout();
            while !g.is_done() {
                let piece = g.step(&mut session)?;
                if !json {
                    let mut out = stdout.lock();
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"prompt_tokens": prompt_tokens, "tokens": g.tokens, "text": g.text, "finish_reason": g.finished})
                );
            } else {
                println!();
            }
            Ok(())
        }
        Cmd::Chat { model, system, sample } => chat(model, system, sample),
        Cmd::Perplexity { model, file, ctx, json } => perplexity(model, file, ctx, json),
        Cmd::Bench { model, prompt_tokens, gen_tokens, repeat, json } => bench(model, prompt_tokens, gen_tokens, repeat, json),
        Cmd::Quantize { model, ty, out } => quantize(model_path(&model), &ty, &out),
        Cmd::Split { model, shards, out } => {
            for p in hearth::quantize::split_file(&model_path(&model), shards, &out)? {
                println!("{}", p.display());
            }
            Ok(())
        }
    }
}

fn chat(model: ModelArg, system: Option<String>, sample: SampleArgs) -> Result<()> {
    let (engine, mut session, _) = open(&model)?;
    let mut messages: Vec<Message> = system.into_iter().map(|s| Message { role: "system".into(), content: s }).collect();
    let base = messages.clone();
    eprintln!("hearth chat — {} ({}). /reset starts over; an empty line ends.", engine.name.as_deref().unwrap_or("model"), engine.file_type);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if line == "/reset" {
            messages = base.clone();
            session.reset();
            continue;
        }
        messages.push(Message { role: "user".into(), content: line });
        let tokens = engine.chat_tokens_with(&messages, &sample.render())?;
        let t0 = Instant::now();
        match session.feed(&tokens) {
            Ok(_) => {}
            Err(e @ Error::ContextFull { .. }) => {
                eprintln!("[{e}; /reset to start over]");
                messages.pop();
                continue;
            }
            Err(e) => return Err(e),
        }
        let prefilled = session.last_prefilled;
        let mut g = Generation::new(sample.options())?;
        let mut out = std::io::stdout();
        let t1 = Instant::now();
        while !g.is_done() {
            match g.step(&mut session) {
                Ok(piece) => {
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
                Err(e @ Error::ContextFull { .. }) => {
                    eprintln!("\n[{e}]");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        println!();
        let dt = t1.elapsed().as_secs_f64();
        eprintln!(
            "[{} prefilled ({} reused) in {:.0} ms, {} tokens at {:.1} tok/s]",
            prefilled,
            tokens.len() - prefilled,
            (t1 - t0).as_secs_f64() * 1e3,
            g.tokens.len(),
            g.tokens.len() as f64 / dt.max(1e-9)
        );
        messages.push(Message { role: "assistant".into(), content: g.text.clone() });
    }
    Ok(())
}

/// llama-perplexity's definition: text with one trailing newline removed, tokenized without
/// special parsing (BOS first if the model adds one); non-overlapping chunks of `ctx` tokens from
/// an empty cache, each starting with BOS if the model adds one; the second half of each chunk
/// scored (positions ctx/2 .. ctx-2 predict the next token).
fn perplexity(model: Option<PathBuf>, file: PathBuf, ctx: usize, json: bool) -> Result<()> {
    if ctx < 4 {
        return Err(Error::InvalidArgument("--ctx must be at least 4".into()));
    }
    let (engine, _, _) = open(&ModelArg { model, ctx: Some(1) })?;
    let mut session = Session::with_batch(engine.clone(), ctx, 512)?;
    let mut text = std::fs::read_to_string(&file)?;
    if text.ends_with('\n') {
        text.pop();
    }
    let tokens = engine.tokenizer.encode(&text, false)?;
    let n_chunks = tokens.len() / ctx;
    if n_chunks == 0 {
        return Err(Error::InvalidArgument(format!("{} tokens is less than one chunk of {ctx}", tokens.len())));
    }
    let vocab = engine.model.config.vocab_size;
    let first = ctx / 2;
    let (mut nll, mut count) = (0f64, 0usize);
    let mut running = Vec::new();
    // a model that adds BOS starts every chunk with it (in place of the chunk's first token)
    let bos = engine.tokenizer.bos_id().filter(|_| engine.tokenizer.add_bos());
    let mut chunk = vec![0u32; ctx];
    for c in 0..n_chunks {
        chunk.copy_from_slice(&tokens[c * ctx..(c + 1) * ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let logits = session.all_logits(&chunk, first)?;
        for p in first..ctx - 1 {
            let row = &logits[(p - first) * vocab..(p - first + 1) * vocab];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            nll += lse - row[chunk[p + 1] as usize] as f64;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        if !json {
            eprint!("[{}]{:.4},", c + 1, ppl);
        }
    }
    let ppl = (nll / count as f64).exp();
    if json {
        println!("{}", json!({"ppl": ppl, "chunks": n_chunks, "scored_tokens": count, "ctx": ctx, "running": running}));
    } else {
        eprintln!();
        println!("ppl: {ppl:.4}");
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(model: ModelArg, prompt_tokens: usize, gen_tokens: usize, repeat: usize, json: bool) -> Result<()> {
    let repeat = repeat.max(1);
    let mut loads = Vec::new();
    let (mut engine, mut session);
    loop {
        let (e, s, load_ms) = open(&ModelArg { ctx: Some(prompt_tokens + gen_tokens + 1), ..model.clone() })?;
        loads.push(load_ms);
        (engine, session) = (e, s);
        if loads.len() >= repeat {
            break;
        }
    }
    // A prompt of ordinary text, repeated to the requested length.
    let seed_text = "The quick brown fox jumps over the lazy dog. A private language model lives in a browser tab, \
                     and after the first download nothing leaves the device. ";
    let base = engine.tokenizer.encode(seed_text, false)?;
    let prompt: Vec<u32> = base.iter().cycle().take(prompt_tokens.max(1)).copied().collect();
    let (mut pf, mut dc) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        session.reset();
        let t0 = Instant::now();
        session.feed(&prompt)?;
        pf.push(prompt.len() as f64 / t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for _ in 0..gen_tokens {
            let id = hearth::sampler::argmax(session.logits());
            session.append(&[id])?;
        }
        dc.push(gen_tokens as f64 / t1.elapsed().as_secs_f64());
    }
    let (load, pf, dc) = (median(&mut loads), median(&mut pf), median(&mut dc));
    // decode against the memory's bound: one thread's read bandwidth over 256 MiB
    let clock = Instant::now();
    let bandwidth = hearth::membw::read_bandwidth(256 << 20, 3, || clock.elapsed().as_secs_f64() * 1000.0);
    let weight_bytes = engine.model.weight_bytes();
    let bound = bandwidth / weight_bytes as f64;
    let threads = hearth::parallel::threads();
    #[cfg(target_arch = "x86_64")]
    let simd = if hearth::quant::avx512::available() {
        "avx512-vnni (K-quants), avx2"
    } else if hearth::quant::avx2::available() {
        "avx2"
    } else {
        "scalar"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd = "scalar";
    if json {
        println!(
            "{}",
            json!({"load_ms": load, "prefill_tok_s": pf, "decode_tok_s": dc, "prompt_tokens": prompt.len(),
                   "gen_tokens": gen_tokens, "threads": threads, "kernels": simd, "repeat": repeat,
                   "weights_bytes": weight_bytes, "read_bandwidth_bytes_s": bandwidth, "decode_bound_tok_s": bound})
        );
    } else {
        println!("threads {threads} ({simd}), median of {repeat}: load {load:.0} ms, prefill {pf:.1} tok/s ({} tokens), decode {dc:.1} tok/s ({gen_tokens} tokens)", prompt.len());
        println!(
            "memory: one thread reads {:.1} GB/s; {:.1} MiB of weights per token bound decode at {bound:.1} tok/s ({:.0}% of it reached)",
            bandwidth / 1e9,
            weight_bytes as f64 / (1 << 20) as f64,
            100.0 * dc / bound
        );
    }
    let _ = &mut engine;
    Ok(())
}

fn quantize(input: PathBuf, ty: &str, out: &Path) -> Result<()> {
    use hearth::quantize::Mix;
    let target = Mix::from_name(ty)
        .filter(|m| match m {
            Mix::One(t) => hearth::quant::quantize::quantize(*t, &[0.0; 32]).is_some(),
            Mix::Q4KM => true,
        })
        .ok_or_else(|| Error::InvalidArgument(format!("unknown or unsupported --type {ty:?} (q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs, bf16, f16, f32, q4_k_m)")))?;
    let report = hearth::quantize::quantize_file(&input, target, out)?;
    eprintln!("{report}");
    Ok(())
}
