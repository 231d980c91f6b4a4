//! The generation loop, one token per `step`: sample from the session's logits, stop on
//! end-of-generation ids, stop strings or the token limit, feed the token back, and hand out text
//! that never splits a UTF-8 character nor shows a stop string (or a prefix of one that may yet
//! complete).

use crate::error::Result;
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::Session;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GenerateOptions {
    pub max_tokens: usize,
    #[serde(flatten)]
    pub sampler: SamplerConfig,
    /// Text that ends generation; it is not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks decode exactly `max_tokens`).
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampler: SamplerConfig::default(), stop: Vec::new(), ignore_eos: false }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token (EOS / end of turn).
    Stop,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` reached.
    Length,
    /// The caller cancelled between tokens.
    Cancelled,
}

/// Bytes in, the longest complete UTF-8 prefix out; invalid sequences become U+FFFD.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix is valid by construction.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // an incomplete character at the end: keep it for the next push
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{fffd}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

pub struct Generation {
    pub options: GenerateOptions,
    sampler: Sampler,
    utf8: Utf8Stream,
    /// Decoded text not yet handed out (it may be the start of a stop string).
    held: String,
    /// Tokens generated (without the stop token).
    pub tokens: Vec<u32>,
    /// All text handed out so far.
    pub text: String,
    pub finished: Option<FinishReason>,
}

impl Generation {
    pub fn new(options: GenerateOptions) -> Result<Generation> {
        options.sampler.validate()?;
        let sampler = Sampler::new(options.sampler.clone());
        Ok(Generation {
            options,
            sampler,
            utf8: Utf8Stream::default(),
            held: String::new(),
            tokens: Vec::new(),
            text: String::new(),
            finished: None,
        })
    }

    pub fn is_done(&self) -> bool {
        self.finished.is_some()
    }

    /// One token: returns the text it releases (possibly empty). After the last step `finished` is set.
    /// The session holds every generated token except the last (stop token or limit), which the next
    /// `Session::feed` of a longer conversation runs.
    pub fn step(&mut self, session: &mut Session) -> Result<String> {
        if self.finished.is_some() {
            return Ok(String::new());
        }
        if self.tokens.len() >= self.options.max_tokens {
            return Ok(self.finish(FinishReason::Length));
        }
        let engine = session.engine().clone();
        let tok = &engine.tokenizer;
        // Only the penalty window is needed, not the whole history.
        let history: Vec<u32> = if self.sampler.config.repeat_penalty != 1.0 {
            let held = session.tokens();
            held[held.len().saturating_sub(self.sampler.config.repeat_last_n)..].to_vec()
        } else {
            Vec::new()
        };
        let id = self.sampler.sample(session.logits_mut(), &history);
        if tok.is_eog(id) && !self.options.ignore_eos {
            return Ok(self.finish(FinishReason::Stop));
        }
        self.tokens.push(id);
        let piece = self.utf8.push(tok.token_bytes(id));
        self.held.push_str(&piece);

        // A complete stop string ends generation; the text before it is released.
        if let Some(cut) = self.options.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(cut);
            let out = std::mem::take(&mut self.held);
            self.text.push_str(&out);
            self.finished = Some(FinishReason::StopString);
            return Ok(out);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let hold = self
            .options
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let release_to = self.held.len() - hold;
        let out: String = self.held.drain(..release_to).collect();
        self.text.push_str(&out);

        if self.tokens.len() >= self.options.max_tokens {
            let rest = self.finish(FinishReason::Length);
            return Ok(out + &rest);
        }
        session.append(&[id])?;
        Ok(out)
    }

    /// Ends the generation between tokens; returns the text still held back (a partial stop
    /// string or an incomplete character). The session stays consistent: it holds every token fed.
    pub fn cancel(&mut self) -> String {
        if self.finished.is_some() {
            return String::new();
        }
        self.finish(FinishReason::Cancelled)
    }

    fn finish(&mut self, reason: FinishReason) -> String {
        self.finished = Some(reason);
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&self.utf8.finish());
        self.text.push_str(&out);
        out
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on char boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_never_splits_a_character() {
        let s = "a€😀b";
        let bytes = s.as_bytes();
        let mut u = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            let piece = u.push(&[*b]);
            assert!(piece.chars().all(|c| c != '\u{fffd}'));
            out.push_str(&piece);
        }
        out.push_str(&u.finish());
        assert_eq!(out, s);
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes() {
        let mut u = Utf8Stream::default();
        assert_eq!(u.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(u.push(&[0xe2, 0x82]), "");
        assert_eq!(u.finish(), "\u{fffd}");
    }

    #[test]
    fn suffix_prefix() {
        assert_eq!(longest_suffix_prefix("hello wor", "world"), 3);
        assert_eq!(longest_suffix_prefix("hello", "world"), 0);
        assert_eq!(longest_suffix_prefix("ab", "b"), 0); // a whole stop string is found, not held
    }
}
