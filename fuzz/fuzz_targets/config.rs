//! The model configuration read from GGUF metadata: a `Config` that passed `validate`, or a typed error.
#![no_main]

use hearth::config::Config;
use hearth::gguf::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data) else { return };
    let Ok(arch) = g.str("general.architecture") else { return };
    let Ok(c) = Config::from_gguf(&g, arch) else { return };
    c.validate().expect("from_gguf returned a config that does not validate");
    assert!(c.kv_dim() > 0 && c.q_dim() > 0 && c.n_layer > 0 && c.vocab_size > 0);
});
