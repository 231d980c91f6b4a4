//! Qwen3: llama's blocks with a per-head RMS norm on q and k before rope, NEOX rope, and a q width
//! (`n_head × attention.key_length`) independent of the model width.

use super::llama::{Block, Llama};
use super::{Family, Loader};
use crate::config::{Config, RopeStyle};
use crate::error::Result;

pub fn load(l: &mut Loader<'_>, c: &mut Config) -> Result<Box<dyn Family>> {
    c.rope_style = RopeStyle::Neox;
    let blocks = (0..c.n_layer).map(|i| Block::load(l, c, i, true)).collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Llama { blocks, rope_freqs: None }))
}
