//! Rewriting a GGUF's weight matrices in another block format (`hearth quantize`): metadata,
//! tokenizer and 1-D tensors are kept; every 2-D `.weight` matrix whose rows fit the target's block
//! is dequantized and quantized again. For the K-quants (blocks of 256), a matrix whose rows are a
//! multiple of 32 but not of 256 gets llama.cpp's fallback instead (Q2_K, Q3_K, IQ4_XS → IQ4_NL,
//! Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0: a 32-block format of at least the same precision); other
//! matrices are kept as they are.

use crate::error::{Error, Result};
use crate::gguf::{self, GgmlType, Gguf, TensorData, Value};
use crate::quant;
use crate::source::{ByteSource, SeqReader};
use std::io::Write;

/// llama.cpp's `general.file_type` for a whole-model type.
fn file_type(t: GgmlType) -> u32 {
    use GgmlType::*;
    match t {
        F32 => 0,
        F16 => 1,
        Q4_0 => 2,
        Q4_1 => 3,
        Q8_0 => 7,
        Q5_0 => 8,
        Q5_1 => 9,
        // MOSTLY_Q2_K, MOSTLY_Q3_K_S, MOSTLY_Q4_K_S, MOSTLY_Q5_K_S, MOSTLY_Q6_K: one K type for
        // every matrix that fits it
        Q2K => 10,
        Q3K => 11,
        Q4K => 14,
        Q5K => 16,
        Q6K => 18,
        IQ4NL => 25,
        IQ4XS => 30,
        BF16 => 32,
        _ => 0,
    }
}

/// The 32-block format llama.cpp uses for a matrix whose rows do not fit a K-quant's 256.
pub fn k_fallback(t: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    match t {
        Q2K | Q3K | IQ4XS => Some(IQ4NL),
        Q4K => Some(Q5_0),
        Q5K => Some(Q5_1),
        Q6K => Some(Q8_0),
        _ => None,
    }
}

/// What `hearth quantize` writes: one type for every matrix, or a mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    One(GgmlType),
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the output matrix (the token embedding when it is tied)
    /// and for `attn_v` and `ffn_down` in the layers llama.cpp's `use_more_bits` picks (the first and
    /// last eighth, and every third between).
    Q4KM,
}

impl Mix {
    /// `q4_k_m`, or a type name (`q8_0`, `q4_k`, …).
    pub fn from_name(name: &str) -> Option<Mix> {
        if name.eq_ignore_ascii_case("q4_k_m") {
            return Some(Mix::Q4KM);
        }
        GgmlType::from_name(name).map(Mix::One)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mix::One(t) => t.name(),
            Mix::Q4KM => "Q4_K_M",
        }
    }

    fn file_type(self) -> u32 {
        match self {
            Mix::One(t) => file_type(t),
            Mix::Q4KM => 15, // LLAMA_FTYPE_MOSTLY_Q4_K_M
        }
    }

    /// The type for the matrix `name` of a model with `n_layer` layers (`tied`: no `output.weight`).
    fn for_tensor(self, name: &str, n_layer: usize, tied: bool) -> GgmlType {
        let Mix::One(t) = self else {
            let more_bits = |i: usize| i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2;
            let layer = name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
            let wide = name == "output.weight"
                || (tied && name == "token_embd.weight")
                || layer.is_some_and(|i| (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight")) && more_bits(i));
            return if wide { GgmlType::Q6K } else { GgmlType::Q4K };
        };
        t
    }
}

/// Reads a GGUF from `src`, writes it with its matrices in `target` to `w`. Returns a summary.
pub fn quantize_gguf(src: &mut dyn ByteSource, target: GgmlType, w: &mut dyn Write) -> Result<String> {
    quantize_gguf_mix(src, Mix::One(target), w)
}

/// [`quantize_gguf`] with a [`Mix`].
pub fn quantize_gguf_mix(src: &mut dyn ByteSource, mix: Mix, w: &mut dyn Write) -> Result<String> {
    if let Mix::One(target) = mix {
        if quant::quantize::quantize(target, &[0.0; 32]).is_none() {
            return Err(Error::InvalidArgument(format!("no quantizer for {}", target.name())));
        }
    }
    let len = src.len();
    let g = Gguf::read(&mut SeqReader::new(src), len)?;
    let n_layer = g
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1);
    let tied = g.tensor("output.weight").is_none();
    let mut metadata: Vec<(String, Value)> = g.metadata.clone();
    match metadata.iter_mut().find(|(k, _)| k == "general.file_type") {
        Some((_, v)) => *v = Value::U32(mix.file_type()),
        None => metadata.push(("general.file_type".into(), Value::U32(mix.file_type()))),
    }
    metadata.retain(|(k, _)| k != "general.alignment");

    let mut datas = Vec::with_capacity(g.tensors.len());
    let mut changed = 0usize;
    let mut fell_back = 0usize;
    let mut fallbacks: Vec<GgmlType> = Vec::new();
    for t in &g.tensors {
        let mut raw = vec![0u8; t.size as usize];
        src.read_at(g.tensor_range(t).start, &mut raw)?;
        let cols = t.dims[0] as usize;
        let is_matrix = t.dims.len() == 2 && t.name.ends_with(".weight");
        let target = mix.for_tensor(&t.name, n_layer, tied);
        let to = if cols.is_multiple_of(target.block_len()) {
            Some(target)
        } else {
            k_fallback(target).filter(|f| cols.is_multiple_of(f.block_len()))
        };
        let convertible = is_matrix && quant::act_type(t.ty).is_some();
        if convertible && to.is_some_and(|to| to != target) {
            fell_back += 1;
            fallbacks.extend(to.filter(|to| !fallbacks.contains(to)));
        }
        match to {
            Some(to) if convertible && t.ty != to => {
                let mut f = vec![0f32; t.elements() as usize];
                quant::dequantize_row(t.ty, &raw, &mut f);
                raw = quant::quantize::quantize(to, &f).unwrap_or_default();
                datas.push((to, raw));
                changed += 1;
            }
            _ => datas.push((t.ty, raw)),
        }
    }
    let tensors: Vec<TensorData> = g
        .tensors
        .iter()
        .zip(&datas)
        .map(|(t, (ty, data))| TensorData { name: &t.name, dims: &t.dims, ty: *ty, data })
        .collect();
    gguf::write(w, &metadata, &tensors)?;
    let mut summary = format!("{changed} of {} tensors rewritten as {}", g.tensors.len(), mix.name());
    if mix == Mix::Q4KM {
        let count = |ty: GgmlType| datas.iter().filter(|(t, _)| *t == ty).count();
        summary += &format!(" ({} Q4_K, {} Q6_K)", count(GgmlType::Q4K), count(GgmlType::Q6K));
    }
    if fell_back > 0 {
        let names: Vec<&str> = fallbacks.iter().map(|f| f.name()).collect();
        summary += &format!("; {fell_back} matrices in {} instead: rows not a multiple of their block", names.join("/"));
    }
    Ok(summary)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn quantize_file(input: &std::path::Path, target: Mix, out: &std::path::Path) -> Result<String> {
    let f = std::fs::File::open(input)?;
    let mut src = crate::source::ReadSeek::new(std::io::BufReader::new(f))?;
    let tmp = out.with_extension("partial");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let summary = quantize_gguf_mix(&mut src, target, &mut w)?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    Ok(summary)
}

/// Splits a GGUF into `shards` files as llama.cpp's gguf-split does (`hearth split`): the metadata in the
/// first, the tensors in file order spread so each shard holds about the same bytes, and in every shard
/// `split.no`, `split.count` (u16) and `split.tensors.count` (i32). Writes `<dir>/<stem>-0000K-of-0000N.gguf`
/// and returns their paths. Splitting is for hosting (a file-size limit, parallel downloads): the shards
/// load as one model, natively (`Engine::open` on any of them) and in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub fn split_file(input: &std::path::Path, shards: usize, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut src = crate::source::ReadSeek::new(std::io::BufReader::new(std::fs::File::open(input)?))?;
    let len = src.len();
    let g = Gguf::read(&mut SeqReader::new(&mut src), len)?;
    if g.split()?.is_some() {
        return Err(Error::InvalidArgument("the file is already one shard of a split model".into()));
    }
    if shards < 2 || shards > g.tensors.len() || shards > 99_999 {
        return Err(Error::InvalidArgument(format!("--shards must be 2 to {} for this file", g.tensors.len().min(99_999))));
    }
    let mut order: Vec<&gguf::TensorInfo> = g.tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let total: u64 = order.iter().map(|t| t.size).sum();
    // Shard k takes the tensors that start in its share of the bytes; when a few large tensors leave a
    // shard empty, the tensors are spread by count instead.
    let mut groups: Vec<Vec<&gguf::TensorInfo>> = vec![Vec::new(); shards];
    let mut acc = 0u64;
    for t in &order {
        let k = (acc as u128 * shards as u128 / total.max(1) as u128) as usize;
        groups[k.min(shards - 1)].push(t);
        acc += t.size;
    }
    if groups.iter().any(Vec::is_empty) {
        let n = order.len();
        groups = (0..shards).map(|k| order[k * n / shards..(k + 1) * n / shards].to_vec()).collect();
    }
    let stem = input.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let split_meta = |no: usize| {
        vec![
            (gguf::SPLIT_NO.to_string(), Value::U16(no as u16)),
            (gguf::SPLIT_COUNT.to_string(), Value::U16(shards as u16)),
            (gguf::SPLIT_TENSORS.to_string(), Value::I32(g.tensors.len() as i32)),
        ]
    };
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (no, group) in groups.iter().enumerate() {
        let mut meta = split_meta(no);
        if no == 0 {
            meta.splice(0..0, g.metadata.iter().filter(|(k, _)| !k.starts_with("split.")).cloned());
        }
        let mut datas = Vec::with_capacity(group.len());
        for t in group {
            let mut buf = vec![0u8; t.size as usize];
            src.read_at(g.data_offset + t.offset, &mut buf)?;
            datas.push(buf);
        }
        let tensors: Vec<TensorData> = group
            .iter()
            .zip(&datas)
            .map(|(t, d)| TensorData { name: &t.name, dims: &t.dims, ty: t.ty, data: d })
            .collect();
        let path = dir.join(format!("{stem}-{:05}-of-{shards:05}.gguf", no + 1));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        gguf::write(&mut w, &meta, &tensors)?;
        w.flush()?;
        paths.push(path);
    }
    Ok(paths)
}
