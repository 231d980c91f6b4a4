//! Long use, natively: a 100-turn chat on one session keeps its memory flat after the first turn,
//! and every answer equals what a fresh session gives for the same conversation.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::model_path;
use hearth::chat::Message;
use hearth::generate::{GenerateOptions, Generation};
use hearth::session::{Engine, Session};
use std::sync::Arc;


fn greedy(max_tokens: usize) -> GenerateOptions {
    let mut o = GenerateOptions { max_tokens, ..GenerateOptions::default() };
    o.sampler.temperature = 0.0;
    o
}

/// One turn on `s`: the conversation's tokens fed (the cached prefix reused), then a greedy answer.
fn answer(engine: &Engine, s: &mut Session, messages: &[Message]) -> (Vec<u32>, String) {
    let tokens = engine.chat_tokens(messages).expect("template");
    s.feed(&tokens).expect("feed");
    let mut g = Generation::new(greedy(6)).expect("options");
    while !g.is_done() {
        g.step(s).expect("step");
    }
    (g.tokens.clone(), g.text.clone())
}

#[test]
fn a_hundred_turns_keep_memory_flat_and_answer_like_a_fresh_session() {
    let Some(path) = model_path() else { return };
    let engine = Arc::new(Engine::open(&path).expect("load"));
    let mut s = Session::new(engine.clone(), 4096).expect("session");
    let mut messages = vec![Message { role: "system".into(), content: "You are a helpful assistant.".into() }];
    let mut live_after_first = 0;
    let mut text_bytes = 0;
    let mut answers = Vec::new();
    for i in 1..=100 {
        messages.push(Message { role: "user".into(), content: format!("Say the number {i}.") });
        let (tokens, text) = answer(&engine, &mut s, &messages);
        if i == 1 {
            live_after_first = hearth::alloc::live_bytes();
        } else {
            text_bytes += text.len() + format!("Say the number {i}.").len();
        }
        messages.push(Message { role: "assistant".into(), content: text });
        answers.push((messages.clone(), tokens));
    }
    // What may grow: the conversation itself (its text and message list, kept by this test and
    // by `answers`), nothing of the engine's.
    let grown = hearth::alloc::live_bytes() - live_after_first;
    let conversation_bytes: usize = answers.iter().map(|(m, t)| m.iter().map(|x| x.content.len() + 64).sum::<usize>() + t.len() * 4 + 64).sum();
    println!("live bytes after turn 1: {live_after_first}; grown by {grown} over 99 turns; conversation copies ≈ {conversation_bytes}, text {text_bytes}");
    assert!(grown <= conversation_bytes as isize + (64 << 10), "memory grew by {grown} bytes beyond the conversation's {conversation_bytes}");
    assert!(s.tokens().len() > 1000, "the session held the whole chat: {} tokens", s.tokens().len());

    // A fresh session fed the same conversation answers the same, at the first, a middle and the last turn.
    for i in [1usize, 50, 100] {
        let (msgs, tokens) = &answers[i - 1];
        let asked = &msgs[..msgs.len() - 1];
        let mut fresh = Session::new(engine.clone(), 4096).expect("session");
        let (again, _) = answer(&engine, &mut fresh, asked);
        assert_eq!(&again, tokens, "turn {i}: the long session and a fresh one disagree");
    }
}
