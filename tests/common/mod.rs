//! Shared by the integration tests: where the default model is, and the fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model (`$HEARTH_MODEL` or `models/…`, which `./build.sh` fetches). A missing model
/// fails the test with a clear message; `HEARTH_SKIP_MODEL_TESTS=1` skips these tests instead.
pub fn model_path() -> Option<PathBuf> {
    let p = std::env::var_os("HEARTH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(DEFAULT_MODEL));
    if p.exists() {
        return Some(p);
    }
    if std::env::var("HEARTH_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: no model at {} (HEARTH_SKIP_MODEL_TESTS=1)", p.display());
        return None;
    }
    panic!("the default model is missing at {}: run ./build.sh (it fetches it), or set HEARTH_MODEL", p.display());
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

pub mod reference;
pub mod tiny;

pub fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}
