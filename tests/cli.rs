//! The `hearth` command line against llama.cpp's reference outputs on the default model:
//! tokenize, generate --raw --json, and perplexity within 1% of llama-perplexity.

mod common;

use common::*;
use std::process::Command;

fn hearth(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("run hearth");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

#[test]
fn tokenize_matches_llama_tokenize() {
    let Some(model) = model_path() else { return };
    let model = model.to_str().unwrap();
    let cases = json("tokenize.json");
    for case in cases["cases"].as_array().unwrap().iter().take(6) {
        let text = case["text"].as_str().unwrap();
        let mut args = vec!["tokenize", "--model", model, "--text", text, "--json"];
        if !case["parse_special"].as_bool().unwrap() {
            args.push("--no-special");
        }
        let (out, err, ok) = hearth(&args);
        assert!(ok, "{err}");
        let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(ids, common::ids(&case["ids"]), "{text:?}");
    }
}

#[test]
fn generate_raw_json_is_greedy_llama_cpp() {
    let Some(model) = model_path() else { return };
    let cases = json("greedy.json");
    // a continuation that matches llama.cpp to the end (model_fixtures shows which ones do)
    let case = cases["cases"].as_array().unwrap().iter().find(|c| c["name"] == "capital_france").unwrap();
    let prompt = case["prompt"].as_str().unwrap();
    let (out, err, ok) = hearth(&["generate", "--model", model.to_str().unwrap(), "--raw", "--prompt", prompt, "--max-tokens", "24", "--temperature", "0", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&v["prompt_tokens"]), ids(&case["prompt_ids"]));
    let tokens = ids(&v["tokens"]);
    assert_eq!(tokens, ids(&case["generated_ids"])[..24]);
    assert!(v["text"].as_str().unwrap().len() > 10);
}

#[test]
fn json_errors_are_typed() {
    let (out, _, ok) = hearth(&["tokenize", "--model", "/nonexistent/model.gguf", "--text", "x", "--json"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["type"], "io_error");
    let garbage = std::env::temp_dir().join("hearth-garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all, just text").unwrap();
    let (out, _, ok) = hearth(&["generate", "--model", garbage.to_str().unwrap(), "--prompt", "x", "--json"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["type"], "load_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("not a GGUF file"));
}

#[test]
fn perplexity_within_one_percent_of_llama_cpp() {
    let Some(model) = model_path() else { return };
    let reference = json("perplexity.json");
    for run in reference["runs"].as_array().unwrap() {
        let ctx = run["n_ctx"].as_u64().unwrap().to_string();
        let file = fixture(run["copy"].as_str().unwrap());
        let (out, err, ok) = hearth(&["perplexity", "--model", model.to_str().unwrap(), "--file", file.to_str().unwrap(), "--ctx", &ctx, "--json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let (ours, theirs) = (v["ppl"].as_f64().unwrap(), run["ppl"].as_f64().unwrap());
        println!("ctx {ctx}: ppl {ours:.4} vs llama.cpp {theirs:.4} ({:+.3}%)", (ours / theirs - 1.0) * 100.0);
        assert_eq!(v["scored_tokens"], run["scored_tokens"]);
        assert!((ours / theirs - 1.0).abs() < 0.01, "ctx {ctx}: {ours} vs {theirs}");
    }
}

#[test]
fn quantize_rewrites_matrices_and_keeps_the_rest() {
    let dir = std::env::temp_dir().join(format!("hearth-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("tiny.gguf");
    std::fs::write(&input, common::tiny::tiny_gguf(&common::tiny::TinySpec { weight_type: hearth::gguf::GgmlType::F32, ..Default::default() })).unwrap();
    for ty in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16"] {
        let out = dir.join(format!("tiny-{ty}.gguf"));
        let (_, err, ok) = hearth(&["quantize", "--model", input.to_str().unwrap(), "--type", ty, "--out", out.to_str().unwrap()]);
        assert!(ok, "{ty}: {err}");
        let before = hearth::gguf::Gguf::from_bytes(&std::fs::read(&input).unwrap()).unwrap();
        let after = hearth::gguf::Gguf::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
        let want = hearth::gguf::GgmlType::from_name(ty).unwrap();
        for t in &after.tensors {
            let expect = if t.dims.len() == 2 { want } else { before.tensor(&t.name).unwrap().ty };
            assert_eq!(t.ty, expect, "{ty}: {}", t.name);
        }
        assert_eq!(after.get("tokenizer.ggml.tokens"), before.get("tokenizer.ggml.tokens"));
        // it loads and generates
        let (out_json, err, ok) = hearth(&["generate", "--model", out.to_str().unwrap(), "--raw", "--prompt", "hello", "--max-tokens", "4", "--json"]);
        assert!(ok, "{ty}: {err}");
        let v: serde_json::Value = serde_json::from_str(out_json.trim()).unwrap();
        assert!(v["tokens"].as_array().unwrap().len() <= 4);
    }
    let (_, err, ok) = hearth(&["quantize", "--model", input.to_str().unwrap(), "--type", "iq2_xxs", "--out", dir.join("x.gguf").to_str().unwrap()]);
    assert!(!ok && err.contains("unsupported"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A chat template that doubles a string in a loop needs few instructions (fuel does not stop it) and
/// gigabytes of memory: the render's memory cap stops it at once, saying why. The child runs with its
/// address space limited to 1 GiB, so only the cap's refusal (not the 2 GiB string) can end it this way.
#[test]
fn a_template_that_grows_without_bound_is_stopped_by_its_memory_cap() {
    use common::tiny::{metadata, tensors, write, TinySpec};
    let dir = std::env::temp_dir().join(format!("hearth-template-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = TinySpec::default();
    let hostile = "{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let mut meta = metadata(&spec);
    meta.push(("tokenizer.chat_template".into(), hearth::gguf::Value::String(hostile.into())));
    let path = dir.join("hostile-template.gguf");
    std::fs::write(&path, write(&meta, &tensors(&spec))).unwrap();
    let out = Command::new("prlimit")
        .args(["--as=1073741824", "--", env!("CARGO_BIN_EXE_hearth"), "generate", "--model", path.to_str().unwrap(), "--prompt", "hi", "--max-tokens", "1"])
        .output()
        .expect("run hearth under prlimit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the chat template needs more than 64 MiB of memory"), "{err}");
    // A template that stays within the cap renders: the same loop, 20 doublings (an 8 MiB string).
    let bounded = hearth::chat::ChatTemplate::from_source(&hostile.replace("range(40)", "range(20)"), "", "").unwrap();
    let msg = hearth::chat::Message { role: "user".into(), content: "hi".into() };
    assert_eq!(bounded.render_string(&[msg], true).unwrap(), (8usize << 20).to_string());
    std::fs::remove_dir_all(&dir).ok();
}

/// `--type q4_k_m` writes llama.cpp's Q4_K_M mix: Q4_K, and Q6_K for the (tied) output and for `attn_v`
/// and `ffn_down` in the layers llama.cpp's `use_more_bits` picks (of 8: 0, 3, 6, 7). On the synthetic
/// 1B model the types chosen were checked against llama-quantize's, tensor by tensor (all 147 equal).
#[test]
fn quantize_q4_k_m_writes_llama_cpp_s_mix() {
    use hearth::gguf::GgmlType::{F32, Q4K, Q6K};
    let dir = std::env::temp_dir().join(format!("hearth-q4km-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("tiny.gguf");
    let spec = common::tiny::TinySpec { n_layer: 8, n_embd: 256, n_ff: 512, n_head: 4, n_head_kv: 2, weight_type: F32, ..Default::default() };
    std::fs::write(&input, common::tiny::tiny_gguf(&spec)).unwrap();
    let out = dir.join("tiny-q4_k_m.gguf");
    let (_, err, ok) = hearth(&["quantize", "--model", input.to_str().unwrap(), "--type", "q4_k_m", "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let g = hearth::gguf::Gguf::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(g.get("general.file_type").and_then(|v| v.as_i128()), Some(15));
    for t in &g.tensors {
        let layer = t.name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
        let more = layer.is_some_and(|i| [0, 3, 6, 7].contains(&i)) && (t.name.ends_with("attn_v.weight") || t.name.ends_with("ffn_down.weight"));
        let want = if t.dims.len() == 1 { F32 } else if more || t.name == "token_embd.weight" { Q6K } else { Q4K };
        assert_eq!(t.ty, want, "{}", t.name);
    }
    let (_, err, ok) = hearth(&["generate", "--model", out.to_str().unwrap(), "--raw", "--prompt", "hello", "--max-tokens", "4", "--json"]);
    assert!(ok, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
