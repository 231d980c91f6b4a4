//! The whole load (GGUF, config, tensors, tokenizer, template) over a small file, then a short run:
//! a typed error or an engine whose session feeds tokens and gives finite-length logits.
#![no_main]

use hearth::chat::Message;
use hearth::session::{Engine, Session};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(e) = Engine::load(&mut &data[..]) else { return };
    let vocab = e.model.config.vocab_size;
    let e = Arc::new(e);
    let Ok(mut s) = Session::new(e.clone(), 128) else { return };
    let ids = [0u32, (vocab as u32 - 1).min(7)];
    s.feed(&ids).expect("feeding in-vocabulary tokens");
    assert_eq!(s.logits().len(), vocab);
    let msgs = [Message { role: "user".into(), content: String::from_utf8_lossy(&data[data.len().saturating_sub(8)..]).into() }];
    if let Ok(tokens) = e.chat_tokens(&msgs) {
        if !tokens.is_empty() && tokens.len() <= s.n_ctx() {
            s.feed(&tokens).expect("feeding a chat prompt that fits");
        }
    }
});
