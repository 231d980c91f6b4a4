//! The tokenizer built from GGUF metadata, then encode/decode of a fuzzed text.
//! Input: a little-endian u16 text length, the text (lossy UTF-8), then the GGUF bytes.
#![no_main]

use hearth::gguf::Gguf;
use hearth::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let text = String::from_utf8_lossy(&data[2..2 + n]);
    let Ok(g) = Gguf::from_bytes(&data[2 + n..]) else { return };
    let Ok(tok) = Tokenizer::from_gguf(&g) else { return };
    let vocab = tok.vocab_size();
    for special in [false, true] {
        if let Ok(ids) = tok.encode(&text, special) {
            assert!(ids.iter().all(|&id| (id as usize) < vocab), "an id outside the vocabulary of {vocab}");
            let _ = tok.decode(&ids);
        }
    }
    // Parts with mixed special parsing, and ids inside and outside the vocabulary.
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let _ = tok.encode_parts(&[(a, true), (b, false)], true);
    let ids: Vec<u32> = text.bytes().map(|x| (x as u32).wrapping_mul(977)).collect();
    let _ = tok.decode(&ids);
    for id in ids.iter().take(16) {
        let _ = (tok.token_text(*id), tok.token_bytes(*id), tok.is_eog(*id), tok.is_control(*id));
    }
});
