//! Tiny llama GGUFs written by the tests themselves: random weights, a byte-level vocabulary of
//! 3 control tokens + 256 byte tokens + a few merges. No download needed.
#![allow(dead_code)]

use hearth::gguf::{self, GgmlType, TensorData, Value};
use hearth::quant::quantize::quantize;

pub struct TinySpec {
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub weight_type: GgmlType,
    pub tied: bool,
    pub seed: u64,
    pub arch: &'static str,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec { n_layer: 2, n_embd: 64, n_ff: 128, n_head: 4, n_head_kv: 2, weight_type: GgmlType::Q8_0, tied: true, seed: 1, arch: "llama" }
    }
}

/// GPT-2's byte → printable-char mapping (bytes that are printable map to themselves).
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

fn byte_str(s: &str) -> String {
    s.bytes().map(byte_char).collect()
}

pub const MERGES: &[(&str, &str)] = &[("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r")];

/// Token strings: control tokens, the 256 bytes, then one token per merge.
pub fn vocab() -> (Vec<String>, Vec<i32>) {
    let mut tokens = vec!["<|endoftext|>".to_string(), "<|im_start|>".to_string(), "<|im_end|>".to_string()];
    let mut types = vec![3, 3, 3];
    for b in 0..=255u8 {
        tokens.push(byte_char(b).to_string());
        types.push(1);
    }
    for (a, b) in MERGES {
        tokens.push(byte_str(a) + &byte_str(b));
        types.push(1);
    }
    (tokens, types)
}

pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Roughly normal, mean 0, standard deviation `scale`.
    pub fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..4).map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32).sum();
        (s - 2.0) * 1.732 * scale
    }
}

pub fn metadata(spec: &TinySpec) -> Vec<(String, Value)> {
    let (tokens, types) = vocab();
    let a = spec.arch;
    let s = |k: &str, v: &str| (k.to_string(), Value::String(v.to_string()));
    let u = |k: String, v: u32| (k, Value::U32(v));
    vec![
        s("general.architecture", a),
        s("general.name", "tiny test model"),
        u(format!("{a}.block_count"), spec.n_layer),
        u(format!("{a}.context_length"), 256),
        u(format!("{a}.embedding_length"), spec.n_embd),
        u(format!("{a}.feed_forward_length"), spec.n_ff),
        u(format!("{a}.attention.head_count"), spec.n_head),
        u(format!("{a}.attention.head_count_kv"), spec.n_head_kv),
        (format!("{a}.rope.freq_base"), Value::F32(10000.0)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        s("tokenizer.ggml.model", "gpt2"),
        s("tokenizer.ggml.pre", "gpt2"),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().collect())),
        ("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().collect())),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(MERGES.iter().map(|(x, y)| format!("{} {}", byte_str(x), byte_str(y))).collect()),
        ),
        u("tokenizer.ggml.bos_token_id".into(), 1),
        u("tokenizer.ggml.eos_token_id".into(), 2),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ]
}

/// (name, ggml dims, type, data) of every tensor.
pub fn tensors(spec: &TinySpec) -> Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> {
    let mut rng = Rng::new(spec.seed);
    let vocab = vocab().0.len() as u64;
    let (e, ff) = (spec.n_embd as u64, spec.n_ff as u64);
    let hd = e / spec.n_head as u64;
    let kvd = hd * spec.n_head_kv as u64;
    let mut out = Vec::new();
    let mut mat = |name: String, rows: u64, cols: u64, ty: GgmlType, scale: f32, out: &mut Vec<_>| {
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal(scale)).collect();
        out.push((name, vec![cols, rows], ty, quantize(ty, &x).unwrap()));
    };
    let wt = spec.weight_type;
    mat("token_embd.weight".into(), vocab, e, GgmlType::Q8_0, 1.0, &mut out);
    let ones = |n: u64| quantize(GgmlType::F32, &vec![1.0; n as usize]).unwrap();
    for i in 0..spec.n_layer {
        out.push((format!("blk.{i}.attn_norm.weight"), vec![e], GgmlType::F32, ones(e)));
        mat(format!("blk.{i}.attn_q.weight"), e, e, wt, 0.3, &mut out);
        mat(format!("blk.{i}.attn_k.weight"), kvd, e, wt, 0.3, &mut out);
        mat(format!("blk.{i}.attn_v.weight"), kvd, e, wt, 0.3, &mut out);
        mat(format!("blk.{i}.attn_output.weight"), e, e, wt, 0.2, &mut out);
        out.push((format!("blk.{i}.ffn_norm.weight"), vec![e], GgmlType::F32, ones(e)));
        mat(format!("blk.{i}.ffn_gate.weight"), ff, e, wt, 0.3, &mut out);
        mat(format!("blk.{i}.ffn_up.weight"), ff, e, wt, 0.3, &mut out);
        mat(format!("blk.{i}.ffn_down.weight"), e, ff, wt, 0.2, &mut out);
    }
    out.push(("output_norm.weight".into(), vec![e], GgmlType::F32, ones(e)));
    if !spec.tied {
        mat("output.weight".into(), vocab, e, wt, 1.0, &mut out);
    }
    out
}

pub fn write(meta: &[(String, Value)], tensors: &[(String, Vec<u64>, GgmlType, Vec<u8>)]) -> Vec<u8> {
    let td: Vec<TensorData> =
        tensors.iter().map(|(n, d, t, data)| TensorData { name: n, dims: d, ty: *t, data }).collect();
    let mut out = Vec::new();
    gguf::write(&mut out, meta, &td).unwrap();
    out
}

pub fn tiny_gguf(spec: &TinySpec) -> Vec<u8> {
    write(&metadata(spec), &tensors(spec))
}

pub fn tiny_engine(spec: &TinySpec) -> std::sync::Arc<hearth::session::Engine> {
    let bytes = tiny_gguf(spec);
    std::sync::Arc::new(hearth::session::Engine::load(&mut bytes.as_slice()).expect("tiny model loads"))
}
