//! The fuzzer's seed corpus (`fuzz/seeds/<target>/`): tiny valid inputs for each fuzz target, written by
//! this file (`HEARTH_WRITE_SEEDS=1 cargo test --test fuzz_seeds` rewrites them) and checked here to be
//! accepted by the code each target drives, so every fuzz run starts from inputs that go deep.

mod common;

use common::tiny::*;
use hearth::chat::{ChatTemplate, Message};
use hearth::config::Config;
use hearth::gguf::{GgmlType, Gguf, Value};
use hearth::session::{Engine, Session};
use hearth::tokenizer::Tokenizer;
use std::path::PathBuf;

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("seeds").join(target)
}

/// Small models: one or two layers of 32-wide weights over the tiny byte-level vocabulary.
fn models() -> Vec<(&'static str, Vec<u8>)> {
    let spec = |arch, weight_type, tied, n_layer, n_head| TinySpec {
        n_layer,
        n_embd: 32,
        n_ff: 32,
        n_head,
        n_head_kv: 1,
        weight_type,
        tied,
        seed: 7,
        arch,
    };
    let mut out = vec![
        ("llama-q4_0", tiny_gguf(&spec("llama", GgmlType::Q4_0, true, 1, 1))),
        ("llama-f16-2heads", tiny_gguf(&spec("llama", GgmlType::F16, true, 1, 2))),
        ("llama-q8_0-untied", tiny_gguf(&spec("llama", GgmlType::Q8_0, false, 1, 1))),
        ("qwen2-q8_0", tiny_gguf(&spec("qwen2", GgmlType::Q8_0, true, 1, 1))),
    ];
    let s = spec("llama", GgmlType::Q5_1, true, 1, 1);
    let mut meta = metadata(&s);
    meta.push(("tokenizer.chat_template".into(), Value::String(TEMPLATES[1].into())));
    meta.push(("llama.rope.dimension_count".into(), Value::U32(16)));
    out.push(("llama-q5_1-template", write(&meta, &tensors(&s))));
    out
}

/// Tokenizer-only GGUFs: byte-level BPE with three pre-tokenizers, and a SentencePiece-style vocabulary.
fn tokenizers() -> Vec<(&'static str, Vec<u8>)> {
    let bpe = |pre: &str| {
        let mut meta: Vec<(String, Value)> =
            metadata(&TinySpec::default()).into_iter().filter(|(k, _)| k.starts_with("tokenizer.")).collect();
        meta.iter_mut().find(|(k, _)| k == "tokenizer.ggml.pre").unwrap().1 = Value::String(pre.into());
        write(&meta, &[])
    };
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (i, piece) in ["▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "ld"].iter().enumerate() {
        tokens.push(piece.to_string());
        types.push(1);
        scores.push(-(i as f32) / 2.0);
    }
    let spm = write(
        &[
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().collect())),
            ("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().collect())),
            ("tokenizer.ggml.scores".into(), Value::Array(scores.into_iter().collect())),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ],
        &[],
    );
    vec![("bpe-gpt2", bpe("gpt2")), ("bpe-llama3", bpe("llama3")), ("bpe-qwen2", bpe("qwen2")), ("spm", spm)]
}

const TEXT: &str = "Hello world! <|im_start|>user\nhe said «héllo» 12345 \t\n  x 🙂 don't";

/// The tokenizer target's input: a u16 text length, the text, the GGUF.
fn tokenizer_input(text: &str, gguf: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(gguf);
    v
}

const TEMPLATES: &[&str] = &[
    // ChatML (hearth's default)
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    // SmolLM2: a default system prompt
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    // Llama 3: trimmed content
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    // Mistral: alternation enforced with raise_exception
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
    // Gemma: a renamed role
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
    // namespace, macros, Python methods, filters
    "{% set ns = namespace(sys='') %}{% macro turn(m) %}<{{ m.role | upper }}>{{ m.content.strip() }}{% endmacro %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.sys = m.content %}{% else %}{{ turn(m) }}{% endif %}{% endfor %}{{ ns.sys | length }}{% for k, v in {'a': 1}.items() %}{{ k }}{{ v }}{% endfor %}{{ messages | length }}",
];

/// The chat target's input: flags, then NUL-separated template, bos, eos, role, content, …
fn chat_input(template: &str, add_generation_prompt: bool) -> Vec<u8> {
    let mut v = vec![add_generation_prompt as u8];
    let fields = [template, "<s>", "</s>", "system", "Be brief.", "user", "Hi <|im_end|> there", "assistant", " Hello! ", "user", "ok"];
    v.extend_from_slice(fields.join("\0").as_bytes());
    v
}

fn messages() -> Vec<Message> {
    [("system", "Be brief."), ("user", "Hi <|im_end|> there"), ("assistant", " Hello! "), ("user", "ok")]
        .iter()
        .map(|(r, c)| Message { role: r.to_string(), content: c.to_string() })
        .collect()
}

/// Every seed, by target.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in models() {
        for target in ["gguf", "config", "model"] {
            out.push((target, name.to_string(), bytes.clone()));
        }
    }
    for (name, bytes) in tokenizers() {
        out.push(("gguf", format!("tokenizer-{name}"), bytes.clone()));
        out.push(("tokenizer", name.to_string(), tokenizer_input(TEXT, &bytes)));
    }
    for (i, t) in TEMPLATES.iter().enumerate() {
        out.push(("chat", format!("template-{i}"), chat_input(t, i % 2 == 0)));
    }
    out
}

#[test]
fn the_committed_seeds_are_the_generated_ones() {
    let write = std::env::var("HEARTH_WRITE_SEEDS").is_ok_and(|v| v == "1");
    for (target, name, bytes) in seeds() {
        let path = seeds_dir(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (HEARTH_WRITE_SEEDS=1 writes it)", path.display()));
        assert!(committed == bytes, "{} differs from the generator's (HEARTH_WRITE_SEEDS=1 rewrites it)", path.display());
        assert!(bytes.len() < 32 << 10, "{} is {} bytes: seeds stay small", path.display(), bytes.len());
    }
}

#[test]
fn every_seed_goes_all_the_way_through_its_target() {
    for (name, bytes) in models() {
        let g = Gguf::from_bytes(&bytes).unwrap();
        Config::from_gguf(&g, g.str("general.architecture").unwrap()).unwrap();
        let e = std::sync::Arc::new(Engine::load(&mut bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}")));
        let mut s = Session::new(e.clone(), 128).unwrap();
        s.feed(&[0, 7]).unwrap();
        let prompt = e.chat_tokens(&messages()[1..2]).unwrap();
        s.feed(&prompt).unwrap();
    }
    for (name, bytes) in tokenizers() {
        let tok = Tokenizer::from_gguf(&Gguf::from_bytes(&bytes).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(tok.encode(TEXT, true).unwrap().len() > 10, "{name}");
    }
    for (i, t) in TEMPLATES.iter().enumerate() {
        let tmpl = ChatTemplate::from_source(t, "<s>", "</s>").unwrap();
        let msgs = messages();
        // Mistral's template refuses a system turn: it is seeded with a conversation that fails.
        let r = tmpl.render(&msgs, true);
        assert_eq!(r.is_err(), i == 3, "template {i}: {r:?}");
        tmpl.render(&msgs[1..], true).unwrap_or_else(|e| panic!("template {i}: {e}"));
    }
}
