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

/// Reads a GGUF from `src`, writes it with its matrices in `target` to `w`. Returns a summary.
pub fn quantize_gguf(src: &mut dyn ByteSource, target: GgmlType, w: &mut dyn Write) -> Result<String> {
    if quant::quantize::quantize(target, &[0.0; 32]).is_none() {
        return Err(Error::InvalidArgument(format!("no quantizer for {}", target.name())));
    }
    let len = src.len();
    let g = Gguf::read(&mut SeqReader::new(src), len)?;
    let mut metadata: Vec<(String, Value)> = g.metadata.clone();
    match metadata.iter_mut().find(|(k, _)| k == "general.file_type") {
        Some((_, v)) => *v = Value::U32(file_type(target)),
        None => metadata.push(("general.file_type".into(), Value::U32(file_type(target)))),
    }
    metadata.retain(|(k, _)| k != "general.alignment");

    let mut datas = Vec::with_capacity(g.tensors.len());
    let mut changed = 0usize;
    let mut fell_back = 0usize;
    for t in &g.tensors {
        let mut raw = vec![0u8; t.size as usize];
        src.read_at(g.tensor_range(t).start, &mut raw)?;
        let cols = t.dims[0] as usize;
        let is_matrix = t.dims.len() == 2 && t.name.ends_with(".weight");
        let to = if cols.is_multiple_of(target.block_len()) {
            Some(target)
        } else {
            k_fallback(target).filter(|f| cols.is_multiple_of(f.block_len()))
        };
        let convertible = is_matrix && quant::act_type(t.ty).is_some();
        fell_back += usize::from(convertible && to.is_some_and(|to| to != target));
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
    let mut summary = format!("{changed} of {} tensors rewritten as {}", g.tensors.len(), target.name());
    if let Some(f) = k_fallback(target).filter(|_| fell_back > 0) {
        summary += &format!("; {fell_back} matrices in {} instead: rows not a multiple of {}", f.name(), target.block_len());
    }
    Ok(summary)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn quantize_file(input: &std::path::Path, target: GgmlType, out: &std::path::Path) -> Result<String> {
    let f = std::fs::File::open(input)?;
    let mut src = crate::source::ReadSeek::new(std::io::BufReader::new(f))?;
    let tmp = out.with_extension("partial");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let summary = quantize_gguf(&mut src, target, &mut w)?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    Ok(summary)
}
