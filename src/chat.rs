//! Chat templates: a GGUF's `tokenizer.chat_template` (Jinja, as Hugging Face writes them) rendered with
//! minijinja, or ChatML when the GGUF has none.
//!
//! The template sees what HF's `apply_chat_template` passes: `messages` (a list of `{role, content}`),
//! `add_generation_prompt`, `bos_token`, `eos_token`, the function `raise_exception(msg)`, Python's
//! string/dict methods (`.strip()`, `.startswith()`, `.items()`, … via minijinja-contrib's `pycompat`),
//! `strftime_now(format)` (UTC; Llama 3.x puts today's date in its system turn) and, when the caller sets
//! it, `enable_thinking` (Qwen3's and SmolLM3's switch; see [`RenderOptions`]). Like HF (and llama.cpp's
//! minja) it renders with `trim_blocks` and `lstrip_blocks`. tests/templates.rs checks real models'
//! templates against Jinja2's renders of them (tools/reference/make_template_fixtures.py).
//!
//! **Segments keep user text out of the special-token channel.** `render` returns the prompt as segments:
//! the template's own text (`special: true`, so `<|im_start|>` in it becomes the control token) and the
//! messages' content (`special: false`, so `<|im_end|>` typed by a user stays plain text and cannot close
//! a turn). To find which is which, the template is rendered twice: once with each content replaced by a
//! unique placeholder of private-use characters (that render holds template text only), once with the real
//! content. The real render is then cut at the template texts between placeholders; each content piece must
//! be a substring of the message's content (verbatim, trimmed, or whatever part of it the template kept).
//! If the template rewrites content so that this fails (e.g. `| upper`, or it branches on the content),
//! the segments fall back to the placeholder render's template text with each content put back verbatim —
//! still never special — and then their concatenation can differ from `render_string`.
//!
//! Limits against hostile templates: rendered output at most 4 MiB, an instruction budget (minijinja fuel)
//! and a recursion limit, all failing as `Error::Template`; and a memory cap on each render
//! ([`render_memory_cap`], kept by `crate::alloc::with_budget`), which fuel does not give: a template that
//! keeps doubling a string needs few instructions. Reaching that cap ends the process (see `alloc`).

use crate::error::{Error, Result};
use crate::gguf::{Array, Gguf, Value};
use crate::tokenizer::Tokenizer;
use std::io::Write;

/// Rendered prompts larger than this are refused.
pub const MAX_RENDERED_BYTES: usize = 4 << 20;
/// minijinja instruction budget per render: ample for thousands of messages, finite for runaway loops.
const FUEL: u64 = 20_000_000;
/// Memory a render may newly hold: ample for real templates (they hold the messages a few times over),
/// finite for runaway ones. See [`render_memory_cap`].
const RENDER_MEMORY_BASE: usize = 64 << 20;
/// Nesting limit for loops, conditionals and macros (kept low: wasm's stack is small).
const RECURSION_LIMIT: usize = 100;
/// Role names: a short identifier ("system", "user", "assistant", "tool", "ipython", …). Roles are part of
/// the template text, so they must not be able to carry special-token text.
const MAX_ROLE_LEN: usize = 64;

/// ChatML, as llama.cpp applies it when a model has no template (no default system prompt).
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] \
                      + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// One chat message.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What a render takes beyond the messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// `enable_thinking` for the template; unset leaves it undefined (each template's own default).
    pub enable_thinking: Option<bool>,
    /// The time `strftime_now` formats, in seconds since the Unix epoch; unset: now.
    pub now: Option<i64>,
}

/// A piece of a rendered prompt: template text (`special: true`, special-token text in it is parsed) or
/// message content (`special: false`, tokenized as plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub special: bool,
}

/// A compiled-on-demand chat template with the BOS/EOS texts it is given.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn template_error(e: minijinja::Error) -> Error {
    // The display form carries the kind, the detail and the line; add the causes (e.g. raise_exception's).
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::Template(msg)
}

/// The text of token `key`'s id in the GGUF vocabulary, or "" when either is missing.
fn special_text(g: &Gguf, key: &str) -> Result<String> {
    let Some(id) = g.opt_u32(key)? else { return Ok(String::new()) };
    Ok(match g.get("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::String(s))) => s.get(id as usize).unwrap_or("").to_string(),
        _ => String::new(),
    })
}

/// The environment every template renders in (see the module docs).
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<minijinja::Value, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env
}

/// The memory cap of one render of `messages`: 64 MiB plus 16 times their text (a template holds each
/// content a few times: the value, its trimmed or escaped copies, the output).
pub fn render_memory_cap(messages: &[Message]) -> usize {
    let text: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    RENDER_MEMORY_BASE.saturating_add(text.saturating_mul(16))
}

/// An `io::Write` into memory that refuses to grow past `MAX_RENDERED_BYTES`.
struct CappedBuffer {
    buf: Vec<u8>,
    overflowed: bool,
}

impl Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---- placeholders: private-use code points (plane 15) that stand for message contents ----------------

const PH_OPEN: char = '\u{F0000}';
const PH_CLOSE: char = '\u{F0001}';
/// Hex digits of the message index are U+F0010..=U+F001F.
const PH_DIGIT0: u32 = 0xF0010;
/// Every code point in U+F0000..=U+F001F belongs to a placeholder.
fn is_ph_char(c: char) -> bool {
    (0xF0000..=0xF001F).contains(&(c as u32))
}

fn placeholder(k: usize) -> String {
    let mut s = String::new();
    s.push(PH_OPEN);
    for d in format!("{k:x}").chars() {
        let v = d.to_digit(16).unwrap_or(0);
        s.push(char::from_u32(PH_DIGIT0 + v).unwrap_or(PH_CLOSE));
    }
    s.push(PH_CLOSE);
    s
}

/// The placeholder render as template text and content references.
#[derive(Debug)]
enum Piece {
    Text(String),
    Content(usize),
}

/// Splits the placeholder render into pieces, or `None` when a placeholder was cut or altered (or the
/// template itself contains these code points).
fn parse_placeholders(rendered: &str, n_messages: usize) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = rendered.chars();
    while let Some(c) = chars.next() {
        if !is_ph_char(c) {
            text.push(c);
            continue;
        }
        if c != PH_OPEN {
            return None;
        }
        let mut k: usize = 0;
        let mut digits = 0;
        loop {
            let d = chars.next()?;
            if d == PH_CLOSE {
                break;
            }
            let v = (d as u32).checked_sub(PH_DIGIT0).filter(|&v| v < 16)?;
            k = k.checked_mul(16)?.checked_add(v as usize)?;
            digits += 1;
        }
        if digits == 0 || k >= n_messages {
            return None;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Content(k));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Some(pieces)
}

/// Cuts the real render `r` along `pieces`: template texts must match exactly; each content must be a
/// substring of that message's content. Returns the segments, or `None` if no such cut exists within
/// the search budget. A depth-first search with an explicit stack (one frame per piece, so long
/// conversations cannot overflow wasm's small stack); it rarely backtracks.
fn align(r: &str, pieces: &[Piece], contents: &[&str]) -> Option<Vec<Segment>> {
    // Bytes that substring checks may scan in all: bounds the search on adversarial content.
    let mut budget: usize = 64 << 20;

    // The lengths piece `i` may take at byte `pos` of `r`, most likely first.
    let mut candidates = |i: usize, pos: usize| -> Option<Vec<usize>> {
        let rest = &r[pos..];
        match &pieces[i] {
            Piece::Text(t) => Some(if rest.starts_with(t.as_str()) { vec![t.len()] } else { Vec::new() }),
            Piece::Content(k) => {
                let c = contents[*k];
                // Verbatim, then the usual trims.
                let mut lens: Vec<usize> = Vec::new();
                for form in [c, c.trim(), c.trim_start(), c.trim_end()] {
                    if rest.starts_with(form) && !lens.contains(&form.len()) {
                        lens.push(form.len());
                    }
                }
                // Then any cut that the next template text (or the end of the render) allows.
                match pieces.get(i + 1) {
                    Some(Piece::Text(next)) => {
                        for (q, _) in rest.match_indices(next.as_str()).take(64) {
                            if q > c.len() {
                                break;
                            }
                            if !lens.contains(&q) {
                                lens.push(q);
                            }
                        }
                    }
                    None if rest.len() <= c.len() && !lens.contains(&rest.len()) => lens.push(rest.len()),
                    _ => {}
                }
                // Keep the cuts whose text really is part of the content.
                let mut ok = Vec::with_capacity(lens.len());
                for len in lens {
                    budget = budget.checked_sub(c.len())?;
                    if rest.is_char_boundary(len) && c.contains(&rest[..len]) {
                        ok.push(len);
                    }
                }
                Some(ok)
            }
        }
    };

    struct Frame {
        pos: usize,
        lens: Vec<usize>,
        next: usize,
    }
    let mut stack: Vec<Frame> = Vec::with_capacity(pieces.len());
    let mut pos = 0;
    loop {
        let i = stack.len();
        if i == pieces.len() {
            if pos == r.len() {
                break;
            }
        } else {
            let lens = candidates(i, pos)?;
            stack.push(Frame { pos, lens, next: 0 });
        }
        // Take the next untried length, dropping exhausted frames (backtracking).
        loop {
            let top = stack.last_mut()?;
            if let Some(&len) = top.lens.get(top.next) {
                top.next += 1;
                pos = top.pos + len;
                break;
            }
            stack.pop();
        }
    }

    let parts = pieces.iter().zip(&stack).map(|(p, f)| {
        let len = f.lens[f.next - 1];
        (&r[f.pos..f.pos + len], matches!(p, Piece::Text(_)))
    });
    Some(join_segments(parts))
}

/// Segments from (text, special) parts: empty parts dropped, neighbours of the same kind joined.
fn join_segments<'a>(parts: impl Iterator<Item = (&'a str, bool)>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (text, special) in parts {
        if text.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.special == special => last.text.push_str(text),
            _ => out.push(Segment { text: text.to_string(), special }),
        }
    }
    out
}

fn check_role(role: &str) -> Result<()> {
    let ok = !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "message role {role:?} is not a name of at most {MAX_ROLE_LEN} letters, digits, '_' or '-'"
        )))
    }
}

impl ChatTemplate {
    /// The GGUF's `tokenizer.chat_template`, or ChatML when it has none. `bos_token`/`eos_token` are the
    /// vocabulary texts of `tokenizer.ggml.bos_token_id`/`eos_token_id` ("" when absent).
    pub fn from_gguf(g: &Gguf) -> Result<ChatTemplate> {
        let bos = special_text(g, "tokenizer.ggml.bos_token_id")?;
        let eos = special_text(g, "tokenizer.ggml.eos_token_id")?;
        match g.opt_str("tokenizer.chat_template")? {
            Some(src) if !src.trim().is_empty() => ChatTemplate::from_source(src, &bos, &eos),
            _ => ChatTemplate::from_source(CHATML, &bos, &eos),
        }
    }

    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
    pub fn chatml() -> ChatTemplate {
        ChatTemplate { source: CHATML.to_string(), bos: String::new(), eos: String::new(), env: environment() }
    }

    /// A template from Jinja source; syntax errors are reported here as `Error::Template`.
    pub fn from_source(src: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let t =
            ChatTemplate { source: src.to_string(), bos: bos.to_string(), eos: eos.to_string(), env: environment() };
        t.env.template_from_str(&t.source).map_err(template_error)?;
        Ok(t)
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn render_raw(&self, messages: &[Message], add_generation_prompt: bool, opts: &RenderOptions) -> Result<String> {
        let tmpl = self.env.template_from_str(&self.source).map_err(template_error)?;
        let now = opts.now.unwrap_or_else(unix_now);
        let strftime_now = minijinja::Value::from_function(move |fmt: &str| -> std::result::Result<String, minijinja::Error> {
            strftime(fmt, now).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
        });
        let base = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
            strftime_now => strftime_now,
        };
        let ctx = match opts.enable_thinking {
            Some(on) => minijinja::context! { enable_thinking => on, ..base },
            None => base,
        };
        let mut out = CappedBuffer { buf: Vec::new(), overflowed: false };
        let cap = render_memory_cap(messages);
        let res = crate::alloc::with_budget("the chat template", cap, || tmpl.render_captured_to(ctx, &mut out));
        if out.overflowed {
            return Err(Error::Template(format!("the rendered prompt exceeds {MAX_RENDERED_BYTES} bytes")));
        }
        res.map_err(template_error)?;
        String::from_utf8(out.buf).map_err(|_| Error::Template("the template produced invalid UTF-8".into()))
    }

    /// Renders `messages` (plus the assistant's opening when `add_generation_prompt`) as segments: template
    /// text with `special: true`, message content verbatim with `special: false`. See the module docs.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<Segment>> {
        self.render_with(messages, add_generation_prompt, &RenderOptions::default())
    }

    /// [`render`](Self::render) with [`RenderOptions`].
    pub fn render_with(&self, messages: &[Message], add_generation_prompt: bool, opts: &RenderOptions) -> Result<Vec<Segment>> {
        let opts = RenderOptions { now: Some(opts.now.unwrap_or_else(unix_now)), ..*opts }; // one clock for both renders
        for m in messages {
            check_role(&m.role)?;
        }
        let masked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(k, m)| Message { role: m.role.clone(), content: placeholder(k) })
            .collect();
        let skeleton = self.render_raw(&masked, add_generation_prompt, &opts)?;
        let pieces = parse_placeholders(&skeleton, messages.len()).ok_or_else(|| {
            Error::Template("the template alters message content in a way that cannot be separated safely".into())
        })?;
        let real = self.render_raw(messages, add_generation_prompt, &opts)?;
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        if let Some(segs) = align(&real, &pieces, &contents) {
            return Ok(segs);
        }
        // Fallback: the template's text with each content verbatim (never special).
        Ok(join_segments(pieces.iter().map(|p| match p {
            Piece::Text(t) => (t.as_str(), true),
            Piece::Content(k) => (contents[*k], false),
        })))
    }

    /// The rendered prompt as one string (exactly what the template produces).
    pub fn render_string(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_string_with(messages, add_generation_prompt, &RenderOptions::default())
    }

    /// [`render_string`](Self::render_string) with [`RenderOptions`].
    pub fn render_string_with(&self, messages: &[Message], add_generation_prompt: bool, opts: &RenderOptions) -> Result<String> {
        for m in messages {
            check_role(&m.role)?;
        }
        self.render_raw(messages, add_generation_prompt, opts)
    }
}

/// Seconds since the Unix epoch (the browser's clock in wasm, where `SystemTime` has none).
fn unix_now() -> i64 {
    #[cfg(target_arch = "wasm32")]
    return (js_sys::Date::now() / 1000.0).floor() as i64;
    #[cfg(not(target_arch = "wasm32"))]
    return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
}

/// Python's `time.strftime(fmt)` for a UTC time, with the conversions chat templates use: `%Y %y %m %d %e %H
/// %I %M %S %p %j %b %B %a %A %%` and glibc's `%-d`, `%-m`, `%-H`, `%-I` (no padding). Anything else is an error.
pub fn strftime(fmt: &str, unix: i64) -> std::result::Result<String, String> {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (h, mi, se) = (secs / 3600, secs / 60 % 60, secs % 60);
    // Days since 1970-01-01 to a proleptic Gregorian date (the "civil from days" method, eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let d = doy_march - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let yday = BEFORE[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = it.next().ok_or("strftime_now: a format ends with %")?;
        let pad = spec != '-';
        if !pad {
            spec = it.next().ok_or("strftime_now: a format ends with %-")?;
        }
        let num = |v: i64, w: usize| if pad { format!("{v:0w$}") } else { v.to_string() };
        match spec {
            'Y' => out.push_str(&y.to_string()),
            'y' => out.push_str(&num(y.rem_euclid(100), 2)),
            'm' => out.push_str(&num(m, 2)),
            'd' => out.push_str(&num(d, 2)),
            'e' => out.push_str(&format!("{d:2}")),
            'H' => out.push_str(&num(h, 2)),
            'I' => out.push_str(&num(h12, 2)),
            'M' => out.push_str(&num(mi, 2)),
            'S' => out.push_str(&num(se, 2)),
            'j' => out.push_str(&num(yday, 3)),
            'p' => out.push_str(if h < 12 { "AM" } else { "PM" }),
            'b' => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            'B' => out.push_str(MONTHS[(m - 1) as usize]),
            'a' => out.push_str(&DAYS[wday][..3]),
            'A' => out.push_str(DAYS[wday]),
            '%' if pad => out.push('%'),
            other => {
                let spec = if pad { other.to_string() } else { format!("-{other}") };
                return Err(format!("strftime_now: %{spec} is not supported"));
            }
        }
    }
    Ok(out)
}

/// Tokenizes rendered segments: `special` segments with special-token parsing, the others as plain text
/// (plain runs that meet at a boundary are tokenized together, as one prompt string would be). BOS is put
/// first when the tokenizer adds BOS, unless the template already rendered it; EOS is never appended.
pub fn tokenize_segments(tok: &Tokenizer, segs: &[Segment]) -> Result<Vec<u32>> {
    let parts: Vec<(&str, bool)> = segs.iter().map(|s| (s.text.as_str(), s.special)).collect();
    let mut ids = tok.encode_parts(&parts, false)?;
    if tok.add_bos() {
        if let Some(bos) = tok.bos_id() {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
    }
    Ok(ids)
}
