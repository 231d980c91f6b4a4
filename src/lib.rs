//! hearth: a private language model in a browser tab.
//!
//! One engine serves the CLI, the tests and the browser:
//! `gguf` (container) → `config` (the shared `{arch}.*` metadata) → `quant` (block formats and kernels) →
//! `model` (one module per architecture family: weights + forward pass) with `kv_cache` → `session` (state, prefix reuse) →
//! `generate` (sampling loop, stop conditions, UTF-8-safe streaming), with `tokenizer`, `chat`
//! (templates) and `sampler` beside it; `tune` fits the kernels to the machine at load. `wasm` is
//! the browser's thin binding; `cli` the native one.

#![cfg_attr(all(target_arch = "wasm32", target_feature = "atomics"), feature(stdarch_wasm_atomic_wait))]

pub mod alloc;
pub mod attn;
pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod membw;
pub mod model;
pub mod parallel;
pub mod preflight;
pub mod quant;
pub mod quantize;
pub mod sampler;
pub mod session;
pub mod source;
pub mod tokenizer;
pub mod tune;
pub mod vmath;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
