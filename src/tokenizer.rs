//! Text ↔ token ids, built from a GGUF's `tokenizer.ggml.*` metadata and matching llama.cpp's tokenizer
//! (`src/llama-vocab.cpp`, studied, not copied) token for token.
//!
//! Two vocabulary kinds are supported:
//!
//! * `gpt2` — byte-level BPE. The pre-tokenizer is chosen from `tokenizer.ggml.pre` exactly as llama.cpp
//!   does (a list of regexes, each splitting the pieces the previous one produced, matched and unmatched
//!   parts both kept), the pieces are byte-mapped with GPT-2's byte↔char table and merged by rank.
//!   That pipeline is a `tokenizers::Tokenizer` (Split pre-tokenizers + ByteLevel + BPE); llama.cpp's
//!   algorithm and the HF BPE model give the same merges (lowest rank first, leftmost on ties).
//! * `llama` — SentencePiece-style vocabularies with scores. llama.cpp does not run SentencePiece's
//!   unigram/BPE model here: it merges adjacent symbols greedily by the *score of the merged token*, with
//!   `▁` for spaces, an optional leading space and `<0xNN>` byte fallback. No `tokenizers` model does
//!   exactly that, so this file implements that score-driven merge itself (see [`Tokenizer::spm_fragment`]).
//!
//! Special tokens: token types 3 (CONTROL), 4 (USER_DEFINED) and 2 (UNKNOWN) are cut out of the text
//! before BPE/SPM runs, longest token text first (llama.cpp's `tokenizer_st_partition`). Without special
//! parsing, CONTROL and UNKNOWN texts are plain text, but USER_DEFINED ones still match — llama.cpp (and
//! HF tokenizers) do the same.
//!
//! Known differences from llama.cpp, all outside what real llama-family GGUFs exercise:
//! * A `tokenizer.ggml.pre` that llama.cpp rejects (or one this file does not list) falls back to the GPT-2
//!   regex instead of failing. Listed: default, gpt-2 and its aliases, smollm/starcoder family, llama3
//!   family, dbrx/smaug, qwen2 family, chatglm, falcon, deepseek-coder, deepseek-v3, tekken, gpt-4o/llama4,
//!   poro/bloom.
//! * BPE merges whose halves or result are not in the vocabulary are skipped (llama.cpp would merge and
//!   then fall back to single bytes; HF's BPE cannot represent them).
//! * Per-model LSTRIP/RSTRIP attributes (phi-3, jina, modern-bert) are not applied.
//! * Unassigned code points: the regex engine's Unicode tables (fancy-regex/regex) may be newer than
//!   llama.cpp's `unicode-data.cpp`.
//! * A special-token id in the GGUF that is out of range is an error here (llama.cpp warns and ignores it).

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use std::collections::{BinaryHeap, HashMap};

// ---- token attributes (llama.cpp's `llama_token_attr` bits; 0 = undefined) ---------------------------

const ATTR_UNKNOWN: u8 = 1 << 0;
const ATTR_UNUSED: u8 = 1 << 1;
const ATTR_NORMAL: u8 = 1 << 2;
const ATTR_CONTROL: u8 = 1 << 3;
const ATTR_USER_DEFINED: u8 = 1 << 4;
const ATTR_BYTE: u8 = 1 << 5;

/// GGUF `tokenizer.ggml.token_type` values → attribute bits. Unknown values are "undefined", as in llama.cpp.
fn attr_from_type(t: i64) -> u8 {
    match t {
        1 => ATTR_NORMAL,
        2 => ATTR_UNKNOWN,
        3 => ATTR_CONTROL,
        4 => ATTR_USER_DEFINED,
        5 => ATTR_UNUSED,
        6 => ATTR_BYTE,
        _ => 0,
    }
}

// ---- token texts llama.cpp recognizes by name (llama-vocab.cpp, "auto-detect special tokens by text") ----

/// End-of-turn candidates, used when the GGUF has no `eot_token_id`.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
/// Every token with one of these texts ends generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

// ---- pre-tokenizer regexes (llama.cpp's `llm_tokenizer_bpe` constructor) -----------------------------

/// GPT-2's split. llama.cpp writes it without the final `|\s+`, but its hand-written matcher for this
/// regex (`unicode_regex_split_custom_gpt2`) behaves as if it were there, as HF's ByteLevel regex is.
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_DEEPSEEK3_WORDS: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// How a `tokenizer.ggml.pre` value tokenizes.
struct PreTokenizer {
    regexes: &'static [&'static str],
    /// A whole pre-token that is in the vocabulary is emitted as is (llama3-style `ignore_merges`).
    ignore_merges: bool,
    /// llama.cpp's `add_bos` default for this pre-tokenizer (the GGUF's `add_bos_token` overrides it).
    add_bos: bool,
}

fn pre_tokenizer(pre: Option<&str>) -> PreTokenizer {
    let p = |regexes, ignore_merges, add_bos| PreTokenizer { regexes, ignore_merges, add_bos };
    match pre.unwrap_or("default") {
        "default" | "" => p(&[r"[\p{P}\$\+<=>\^~\|]+", RE_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => p(&[RE_LLAMA3], true, true),
        "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => p(&[RE_LLAMA3], false, false),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            p(&[r"\p{N}", RE_GPT2], false, false)
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan" | "solar-open" | "megrez" => {
            p(&[RE_QWEN2], false, false)
        }
        "falcon" => p(&[r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, r"[0-9][0-9][0-9]"], false, false),
        "deepseek-coder" => p(&[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"], false, false),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" => {
            p(&[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", RE_DEEPSEEK3_WORDS], false, false)
        }
        "tekken" => p(&[RE_TEKKEN], true, true),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => p(&[RE_GPT4O], false, false),
        "poro-chat" | "bloom" | "gpt3-finnish" => p(&[r" ?[^(\s|.,!?…。，、।۔،)]+"], false, false),
        // gpt-2 and its aliases, mpt, olmo, jais, ... and anything unknown: the GPT-2 regex.
        _ => p(&[RE_GPT2], false, false),
    }
}

// ---- GPT-2 byte ↔ char table -------------------------------------------------------------------------

/// GPT-2's byte-level alphabet, inverted: entry `c` is the byte that code point `c` stands for. Printable
/// bytes stand for themselves; the other 68 bytes take the code points 256, 257, … in byte order
/// (`bytes_to_unicode` in GPT-2's encoder). Code points ≥ 324 are not in the alphabet.
fn gpt2_char_to_byte_table() -> [Option<u8>; 324] {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut table = [None; 324];
    let mut next = 256;
    for b in 0..=255u8 {
        if printable(b) {
            table[b as usize] = Some(b);
        } else {
            table[next] = Some(b);
            next += 1;
        }
    }
    table
}

/// `<0xNN>` → the byte.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

// ---- the tokenizer -------------------------------------------------------------------------------------

#[derive(Clone)]
enum Model {
    /// Byte-level BPE: pre-tokenizer + byte mapping + merges, as a `tokenizers` pipeline.
    Bpe(Box<tokenizers::Tokenizer>),
    /// llama.cpp's SentencePiece-style merge: per-token scores and the byte-fallback token of each byte.
    Spm { scores: Vec<f32>, byte_tokens: Box<[Option<u32>; 256]> },
}

/// A piece of input text after special-token partitioning.
enum Fragment {
    Text(String),
    Token(u32),
}

/// A GGUF vocabulary with llama.cpp's tokenization rules. Cheap to share (`&Tokenizer` is all that
/// encoding needs); `Clone` copies the vocabulary.
#[derive(Clone)]
pub struct Tokenizer {
    model: Model,
    /// `tokenizer.ggml.tokens` (an empty entry becomes `[EMPTY_<id>]`, as in llama.cpp).
    tokens: Vec<String>,
    attrs: Vec<u8>,
    token_to_id: HashMap<String, u32>,
    /// `token_bytes(id)` is `piece_bytes[piece_offsets[id]..piece_offsets[id + 1]]`.
    piece_bytes: Vec<u8>,
    piece_offsets: Vec<usize>,
    /// CONTROL / USER_DEFINED / UNKNOWN tokens, longest text first (ties: lower id first).
    specials: Vec<u32>,
    /// First byte of a special token's text → indices into `specials`, for a quick "which occur" scan.
    specials_by_first_byte: HashMap<u8, Vec<usize>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Sorted end-of-generation ids.
    eog: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "model",
                &match self.model {
                    Model::Bpe(_) => "gpt2 (byte-level BPE)",
                    Model::Spm { .. } => "llama (SentencePiece-style)",
                },
            )
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("eog", &self.eog)
            .finish()
    }
}

fn bad(key: &str, reason: impl Into<String>) -> Error {
    Error::BadMetadata { key: key.to_string(), reason: reason.into() }
}

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        const K_MODEL: &str = "tokenizer.ggml.model";
        const K_TOKENS: &str = "tokenizer.ggml.tokens";
        const K_TYPES: &str = "tokenizer.ggml.token_type";
        const K_SCORES: &str = "tokenizer.ggml.scores";
        const K_MERGES: &str = "tokenizer.ggml.merges";

        let model_name = g.str(K_MODEL)?;
        let is_bpe = match model_name {
            "gpt2" => true,
            "llama" => false,
            other => return Err(Error::Tokenizer(format!("unsupported tokenizer model {other:?}"))),
        };

        // Vocabulary, types, scores: all arrays must have one entry per token.
        let raw_tokens = g.str_array(K_TOKENS)?;
        let n = raw_tokens.len();
        if n == 0 {
            return Err(bad(K_TOKENS, "the vocabulary is empty"));
        }
        if n > u32::MAX as usize {
            return Err(bad(K_TOKENS, format!("{n} tokens do not fit 32-bit ids")));
        }
        let types = g.int_array(K_TYPES)?;
        if let Some(t) = &types {
            if t.len() != n {
                return Err(bad(K_TYPES, format!("{} entries for {n} tokens", t.len())));
            }
        }
        let scores = g.f32_array(K_SCORES)?;
        if let Some(s) = &scores {
            if s.len() != n {
                return Err(bad(K_SCORES, format!("{} entries for {n} tokens", s.len())));
            }
        }

        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in raw_tokens.iter().enumerate() {
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { (*t).to_string() };
            if let Some(prev) = token_to_id.insert(text.clone(), i as u32) {
                return Err(bad(K_TOKENS, format!("duplicate token {text:?} at ids {prev} and {i}")));
            }
            tokens.push(text);
        }
        let mut attrs: Vec<u8> = match &types {
            Some(t) => t.iter().map(|&t| attr_from_type(t)).collect(),
            None => vec![ATTR_NORMAL; n],
        };

        // Pre-tokenizer and the defaults llama.cpp derives from the model kind.
        let pre_name = g.opt_str("tokenizer.ggml.pre")?;
        let pre = pre_tokenizer(pre_name);
        let (mut add_bos, mut add_space_prefix) = if is_bpe { (pre.add_bos, false) } else { (true, true) };
        // llama.cpp's default ids when the GGUF names none (disabled when outside the vocabulary).
        let in_vocab = |id: u32| ((id as usize) < n).then_some(id);
        let (mut bos, mut eos, mut unk) =
            if is_bpe { (in_vocab(11), in_vocab(11), None) } else { (in_vocab(1), in_vocab(2), in_vocab(0)) };
        if let Some(v) = g.opt_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }
        if let Some(v) = g.opt_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        let add_eos = g.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);

        // Special ids named by the GGUF must be inside the vocabulary.
        let id_key = |key: &str| -> Result<Option<u32>> {
            match g.opt_u32(key)? {
                Some(id) if id as usize >= n => {
                    Err(bad(key, format!("token id {id} is outside the vocabulary of {n}")))
                }
                other => Ok(other),
            }
        };
        if let Some(id) = id_key("tokenizer.ggml.bos_token_id")? {
            bos = Some(id);
        }
        if let Some(id) = id_key("tokenizer.ggml.eos_token_id")? {
            eos = Some(id);
        }
        if let Some(id) = id_key("tokenizer.ggml.unknown_token_id")? {
            unk = Some(id);
        }
        let mut eot = id_key("tokenizer.ggml.eot_token_id")?;
        let mut eom = id_key("tokenizer.ggml.eom_token_id")?;
        let pad = id_key("tokenizer.ggml.padding_token_id")?;
        let mut fim_pre = id_key("tokenizer.ggml.fim_pre_token_id")?;
        let mut fim_suf = id_key("tokenizer.ggml.fim_suf_token_id")?;
        let mut fim_mid = id_key("tokenizer.ggml.fim_mid_token_id")?;
        let mut fim_pad = id_key("tokenizer.ggml.fim_pad_token_id")?;
        let mut fim_rep = id_key("tokenizer.ggml.fim_rep_token_id")?;
        let mut fim_sep = id_key("tokenizer.ggml.fim_sep_token_id")?;
        if add_bos && bos.is_none() {
            return Err(bad("tokenizer.ggml.add_bos_token", "is true, but no BOS token id is set"));
        }
        if add_eos && eos.is_none() {
            return Err(bad("tokenizer.ggml.add_eos_token", "is true, but no EOS token id is set"));
        }

        // Recognize special tokens by their text where the GGUF did not name them; each one found this
        // way becomes a control token (llama.cpp: "control-looking token ... its type will be overridden").
        for (i, text) in tokens.iter().enumerate() {
            let id = i as u32;
            let t = text.as_str();
            for (slot, names) in [
                (&mut eot, EOT_TEXTS),
                (&mut eom, &["<|eom_id|>"][..]),
                (&mut fim_pre, FIM_PRE_TEXTS),
                (&mut fim_suf, FIM_SUF_TEXTS),
                (&mut fim_mid, FIM_MID_TEXTS),
                (&mut fim_pad, FIM_PAD_TEXTS),
                (&mut fim_rep, FIM_REP_TEXTS),
                (&mut fim_sep, FIM_SEP_TEXTS),
            ] {
                if slot.is_none() && names.contains(&t) {
                    *slot = Some(id);
                    attrs[i] |= ATTR_CONTROL;
                }
            }
        }
        // End of generation: FIM pad/repo/separator, every EOG-named token, eos, eot, eom.
        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for (i, text) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&text.as_str()) {
                eog.push(i as u32);
                attrs[i] |= ATTR_CONTROL;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        // llama.cpp's workarounds: with <|return|>/<|call|> (or <|calls|>/<|flush|>), <|end|> does not end
        // generation; with <|tool_response>, </s> does not.
        let eog_with = |eog: &[u32], name: &str| eog.iter().copied().find(|&id| tokens[id as usize] == name);
        if let Some(end) = eog_with(&eog, "<|end|>") {
            let call = eog_with(&eog, "<|call|>").is_some() || eog_with(&eog, "<|calls|>").is_some();
            let ret = eog_with(&eog, "<|return|>").is_some();
            let flush = eog_with(&eog, "<|flush|>").is_some();
            if call && (ret || flush) {
                eog.retain(|&id| id != end);
                attrs[end as usize] = ATTR_USER_DEFINED;
            }
        }
        if eog_with(&eog, "<|tool_response>").is_some() {
            if let Some(s) = eog_with(&eog, "</s>") {
                eog.retain(|&id| id != s);
                attrs[s as usize] = ATTR_NORMAL;
            }
        }

        // Special-token partition order: longest text first.
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| attrs[id as usize] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN) != 0)
            .collect();
        specials.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()).then(a.cmp(&b)));
        let mut specials_by_first_byte: HashMap<u8, Vec<usize>> = HashMap::new();
        for (idx, &id) in specials.iter().enumerate() {
            if let Some(&b) = tokens[id as usize].as_bytes().first() {
                specials_by_first_byte.entry(b).or_default().push(idx);
            }
        }

        // The bytes each token stands for (llama.cpp's token_to_piece without `special`).
        let gpt2_bytes = gpt2_char_to_byte_table();
        let mut piece_bytes = Vec::new();
        let mut piece_offsets = Vec::with_capacity(n + 1);
        piece_offsets.push(0);
        for (text, &attr) in tokens.iter().zip(&attrs) {
            if attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                // control and unknown tokens print nothing
            } else if attr & ATTR_USER_DEFINED != 0 {
                piece_bytes.extend_from_slice(text.as_bytes());
            } else if attr & ATTR_NORMAL != 0 {
                if is_bpe {
                    for c in text.chars() {
                        match gpt2_bytes.get(c as usize).copied().flatten() {
                            Some(b) => piece_bytes.push(b),
                            // Not a byte-level character: keep it as UTF-8 (llama.cpp prints an
                            // "[UNK_BYTE_…]" marker instead).
                            None => piece_bytes.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
                        }
                    }
                } else {
                    piece_bytes.extend_from_slice(text.replace('▁', " ").as_bytes());
                }
            } else if attr & ATTR_BYTE != 0 {
                if let Some(b) = parse_byte_token(text) {
                    piece_bytes.push(b);
                }
            }
            piece_offsets.push(piece_bytes.len());
        }

        let model = if is_bpe {
            Model::Bpe(Box::new(build_bpe(g, K_MERGES, &token_to_id, &pre)?))
        } else {
            // llama.cpp scores every token 0 when the GGUF has no scores.
            let scores = scores.unwrap_or_else(|| vec![0.0; n]);
            let mut byte_tokens: Box<[Option<u32>; 256]> = Box::new([None; 256]);
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                // llama.cpp's byte_to_token: "<0xNN>", else the byte itself as a one-byte token.
                let hex = format!("<0x{b:02X}>");
                *slot = token_to_id.get(hex.as_str()).copied().or_else(|| {
                    (b < 0x80).then(|| char::from(b as u8).to_string()).and_then(|s| token_to_id.get(&s).copied())
                });
            }
            Model::Spm { scores, byte_tokens }
        };

        Ok(Tokenizer {
            model,
            tokens,
            attrs,
            token_to_id,
            piece_bytes,
            piece_offsets,
            specials,
            specials_by_first_byte,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        })
    }

    /// Token ids for `text`. `parse_special`: special/control token text such as `<|im_start|>` maps to
    /// its id (llama-tokenize's default); otherwise that text is tokenized as plain text
    /// (`--no-parse-special`). Adds BOS/EOS only when the GGUF's `add_bos_token`/`add_eos_token` say so.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_parts(&[(text, parse_special)], true)
    }

    /// Same as [`encode`](Self::encode) but never adds BOS/EOS (for appending segments).
    pub fn encode_segment(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_parts(&[(text, parse_special)], false)
    }

    /// Tokenizes consecutive parts as one text, each part with its own `parse_special`. Plain text that
    /// meets at a part boundary is tokenized as one run, so the result equals `encode` of the joined text
    /// whenever the plain parts hold no special-token text; special-token text inside a plain part stays
    /// plain text. `add_special` adds BOS/EOS per the GGUF.
    pub fn encode_parts(&self, parts: &[(&str, bool)], add_special: bool) -> Result<Vec<u32>> {
        let mut fragments: Vec<Fragment> = Vec::new();
        for &(text, parse_special) in parts {
            self.partition(text, parse_special, &mut fragments);
        }

        let mut out = Vec::new();
        if add_special && self.add_bos {
            // from_gguf guarantees a BOS id when add_bos is set.
            out.extend(self.bos);
        }
        match &self.model {
            Model::Bpe(bpe) => {
                for f in &fragments {
                    match f {
                        Fragment::Token(id) => out.push(*id),
                        Fragment::Text(t) => {
                            let enc = bpe.encode(t.as_str(), false).map_err(|e| Error::Tokenizer(e.to_string()))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                    }
                }
            }
            Model::Spm { scores, byte_tokens } => {
                // A leading space goes before the first text and before text that follows a special token.
                let mut after_special = true;
                for f in &fragments {
                    match f {
                        Fragment::Token(id) => {
                            out.push(*id);
                            after_special = true;
                        }
                        Fragment::Text(t) => {
                            let mut text = String::with_capacity(t.len() + 3);
                            if self.add_space_prefix && after_special {
                                text.push(' ');
                            }
                            text.push_str(t);
                            let escaped = text.replace(' ', "▁");
                            self.spm_fragment(&escaped, scores, byte_tokens, &mut out)?;
                            after_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// Cuts special-token text out of `text` (llama.cpp's `tokenizer_st_partition`): for each special token,
    /// longest first, every occurrence in the text not yet cut becomes that token. Appends to `out`, joining
    /// text with a preceding text fragment.
    fn partition(&self, text: &str, parse_special: bool, out: &mut Vec<Fragment>) {
        // Which special tokens occur at all (one pass over the text, checking only tokens whose first byte
        // matches), so that long texts and large special vocabularies stay cheap.
        let bytes = text.as_bytes();
        let mut present = vec![false; self.specials.len()];
        let mut any = false;
        for (pos, b) in bytes.iter().enumerate() {
            if let Some(candidates) = self.specials_by_first_byte.get(b) {
                for &idx in candidates {
                    let id = self.specials[idx];
                    if !present[idx] && bytes[pos..].starts_with(self.tokens[id as usize].as_bytes()) {
                        present[idx] = true;
                        any = true;
                    }
                }
            }
        }

        enum Piece {
            Raw(usize, usize),
            Token(u32),
        }
        let mut pieces = vec![Piece::Raw(0, text.len())];
        if any {
            for (idx, &id) in self.specials.iter().enumerate() {
                if !present[idx] {
                    continue;
                }
                // Without special parsing only user-defined tokens are cut out.
                if !parse_special && self.attrs[id as usize] & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                    continue;
                }
                let needle = self.tokens[id as usize].as_str();
                let mut next = Vec::with_capacity(pieces.len() + 2);
                for p in pieces {
                    match p {
                        Piece::Raw(start, end) => {
                            // Occurrences of a valid UTF-8 needle in valid UTF-8 text start and end on
                            // character boundaries, so the slices below are well-formed.
                            let mut cur = start;
                            for (m, _) in text[start..end].match_indices(needle) {
                                let m = start + m;
                                if m > cur {
                                    next.push(Piece::Raw(cur, m));
                                }
                                next.push(Piece::Token(id));
                                cur = m + needle.len();
                            }
                            if cur < end {
                                next.push(Piece::Raw(cur, end));
                            }
                        }
                        token => next.push(token),
                    }
                }
                pieces = next;
            }
        }

        for p in pieces {
            match p {
                Piece::Raw(start, end) if start < end => match out.last_mut() {
                    Some(Fragment::Text(t)) => t.push_str(&text[start..end]),
                    _ => out.push(Fragment::Text(text[start..end].to_string())),
                },
                Piece::Raw(..) => {}
                Piece::Token(id) => out.push(Fragment::Token(id)),
            }
        }
    }

    /// llama.cpp's SPM tokenization of one text fragment (spaces already escaped to `▁`): start from one
    /// symbol per character, repeatedly merge the adjacent pair whose concatenation is the vocabulary token
    /// with the highest score (leftmost on ties), then emit each symbol's token, or its bytes as byte
    /// tokens when the symbol is not in the vocabulary.
    fn spm_fragment(
        &self,
        text: &str,
        scores: &[f32],
        byte_tokens: &[Option<u32>; 256],
        out: &mut Vec<u32>,
    ) -> Result<()> {
        #[derive(Clone, Copy)]
        struct Symbol {
            start: usize,
            len: usize, // 0 once merged into its left neighbour
            prev: Option<usize>,
            next: Option<usize>,
        }
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            len: usize,
        }
        impl Eq for Bigram {}
        impl Ord for Bigram {
            // Max-heap: higher score first, then the leftmost pair.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
            }
        }
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }

        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: None });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        if symbols.is_empty() {
            return Ok(());
        }

        let mut queue = BinaryHeap::new();
        let try_add =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: Option<usize>, right: Option<usize>| {
                let (Some(l), Some(r)) = (left, right) else { return };
                let (a, b) = (symbols[l], symbols[r]);
                let piece = &text[a.start..a.start + a.len + b.len];
                if let Some(&id) = self.token_to_id.get(piece) {
                    queue.push(Bigram { score: scores[id as usize], left: l, right: r, len: piece.len() });
                }
            };
        for i in 1..symbols.len() {
            try_add(&symbols, &mut queue, Some(i - 1), Some(i));
        }
        while let Some(bg) = queue.pop() {
            let (l, r) = (symbols[bg.left], symbols[bg.right]);
            // Skip pairs made stale by an earlier merge.
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.len {
                continue;
            }
            symbols[bg.left].len += r.len;
            symbols[bg.right].len = 0;
            symbols[bg.left].next = r.next;
            if let Some(nx) = r.next {
                symbols[nx].prev = Some(bg.left);
            }
            try_add(&symbols, &mut queue, symbols[bg.left].prev, Some(bg.left));
            try_add(&symbols, &mut queue, Some(bg.left), symbols[bg.left].next);
        }

        // Every merged symbol is a vocabulary token (only such pairs are queued), so only unmerged single
        // characters can be missing from the vocabulary: those become byte tokens. (llama.cpp's
        // `resegment` via `rev_merge` therefore never splits anything further.)
        let mut i = Some(0);
        while let Some(idx) = i {
            let s = symbols[idx];
            let piece = &text[s.start..s.start + s.len];
            match self.token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        // llama.cpp throws when a byte has no token; the unknown token is the fallback here.
                        let id = byte_tokens[b as usize].or(self.unk).ok_or_else(|| {
                            Error::Tokenizer(format!("the vocabulary has no token for byte 0x{b:02X}"))
                        })?;
                        out.push(id);
                    }
                }
            }
            i = s.next;
        }
        Ok(())
    }

    /// The raw bytes a token stands for: GPT-2 byte decoding for byte-level BPE; `▁`→space and `<0xNN>`→byte
    /// for SentencePiece vocabularies; user-defined tokens their text. Control and unknown tokens (and ids
    /// outside the vocabulary) give an empty slice. For UTF-8-safe streaming.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.piece_offsets.get(i), self.piece_offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.piece_bytes[a..b],
            _ => &[],
        }
    }

    /// Lossy UTF-8 of the concatenated token bytes (ids outside the vocabulary contribute nothing).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The end-of-turn token (from the GGUF, or found by its text as llama.cpp does).
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }

    /// The end-of-message token (`<|eom_id|>`), if any.
    pub fn eom_id(&self) -> Option<u32> {
        self.eom
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode` puts BOS first (the GGUF's `add_bos_token`, else llama.cpp's default for the model).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode` puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether `id` ends generation (see [`eog_ids`](Self::eog_ids)).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// End-of-generation ids, sorted, as llama.cpp computes them: eos, eot, eom, the FIM pad/repo/separator
    /// tokens, and every token whose text is one of `<|eot_id|>`, `<|im_end|>`, `<|end|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, `<|end_of_text|>`, `<EOT>`, `</s>`, `<｜end▁of▁sentence｜>`, ….
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` is a control token (never printed; matched in text only with special parsing).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs.get(id as usize).is_some_and(|a| a & ATTR_CONTROL != 0)
    }

    /// The vocabulary string of `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary string is exactly `text`.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
}

/// The byte-level BPE pipeline: the pre-tokenizer's regexes (each splits every piece, keeping matched and
/// unmatched parts), GPT-2 byte mapping, then merges by rank.
fn build_bpe(
    g: &Gguf,
    key: &str,
    token_to_id: &HashMap<String, u32>,
    pre: &PreTokenizer,
) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    use tokenizers::SplitDelimiterBehavior;

    let lines = g.str_array(key)?;
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    let mut merges = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        // "left right": split at the first space after the first byte (llama.cpp: `find(' ', 1)`).
        let sp = line.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1);
        let (a, b) = match sp {
            Some(p) if p + 1 < line.len() => (&line[..p], &line[p + 1..]),
            _ => return Err(bad(key, format!("merge {i} ({line:?}) is not two tokens separated by a space"))),
        };
        // A repeated pair keeps its first (best) rank, as in llama.cpp; pairs whose halves or result are
        // not tokens cannot be represented in the BPE model and are skipped.
        let joined = format!("{a}{b}");
        if token_to_id.contains_key(a)
            && token_to_id.contains_key(b)
            && token_to_id.contains_key(joined.as_str())
            && seen.insert((a, b))
        {
            merges.push((a.to_string(), b.to_string()));
        }
    }
    let vocab: Vocab = token_to_id.iter().map(|(k, &v)| (k.clone(), v)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("cannot build the BPE model: {e}")))?;

    let mut steps = Vec::with_capacity(pre.regexes.len() + 1);
    for re in pre.regexes {
        let split = Split::new(SplitPattern::Regex((*re).to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    // Bytes → GPT-2 characters only; the splitting was done above.
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));

    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(steps))));
    Ok(tok)
}
