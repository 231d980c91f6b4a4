//! Chat-template rendering with the template source from the input. Rendering is bounded by minijinja's
//! fuel, a recursion limit, an output cap and a memory cap per render (`hearth::alloc::with_budget`), so
//! no template can hang or exhaust memory. Reaching the memory cap ends the process by design: a "crash"
//! whose output says "the chat template needs more than … MiB" is the cap working, not a bug.
//! Input: a flags byte (bit 0: add_generation_prompt; bits 1-2: enable_thinking unset/false/true), then
//! NUL-separated fields: template, bos, eos, then role/content pairs.
#![no_main]

use hearth::chat::{ChatTemplate, Message, RenderOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\0');
    let src = fields.next().unwrap_or("");
    let bos = fields.next().unwrap_or("");
    let eos = fields.next().unwrap_or("");
    let rest: Vec<&str> = fields.collect();
    let messages: Vec<Message> = rest
        .chunks(2)
        .map(|p| Message { role: p[0].to_string(), content: p.get(1).copied().unwrap_or("").to_string() })
        .collect();
    let Ok(t) = ChatTemplate::from_source(src, bos, eos) else { return };
    let add_generation_prompt = flags & 1 != 0;
    let opts = RenderOptions { enable_thinking: [None, Some(false), Some(true), None][(flags >> 1 & 3) as usize], now: Some(0) };
    if let Ok(segs) = t.render_with(&messages, add_generation_prompt, &opts) {
        // Content is never special: every non-special segment is part of some message's content.
        for s in segs.iter().filter(|s| !s.special) {
            assert!(
                messages.iter().any(|m| m.content.contains(s.text.as_str())),
                "plain segment {:?} is no message's content",
                s.text
            );
        }
    }
    let _ = t.render_string_with(&messages, add_generation_prompt, &opts);
});
