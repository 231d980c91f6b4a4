//! Bad input never panics, hangs or allocates from an unchecked header field: each case gets its
//! exact typed error. All files here are written by the test.

mod common;

use common::tiny::*;
use hearth::gguf::{GgmlType, Gguf, Value};
use hearth::session::Engine;
use hearth::Error;

fn load(bytes: &[u8]) -> Result<Engine, Error> {
    Engine::load(&mut &bytes[..])
}

/// Raw header bytes, for files the writer would never produce.
struct Raw(Vec<u8>);
impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn str(self, s: &str) -> Raw {
        let mut r = self.u64(s.len() as u64);
        r.0.extend_from_slice(s.as_bytes());
        r
    }
    fn pad(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

fn parse(bytes: &[u8]) -> Result<Gguf, Error> {
    Gguf::from_bytes(bytes)
}

#[test]
fn a_valid_tiny_model_loads() {
    let bytes = tiny_gguf(&TinySpec::default());
    let e = load(&bytes).unwrap();
    assert_eq!(e.model.config.n_layer, 2);
    assert_eq!(e.model.config.head_dim, 16);
    assert!(e.model.output.is_none(), "tied output falls back to token_embd");
    let untied = load(&tiny_gguf(&TinySpec { tied: false, ..Default::default() })).unwrap();
    assert!(untied.model.output.is_some());
}

#[test]
fn bad_magic() {
    let mut bytes = tiny_gguf(&TinySpec::default());
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(load(&bytes), Err(Error::BadMagic { found }) if &found == b"GGML"));
    assert!(matches!(parse(b"<html>not a model</html>"), Err(Error::BadMagic { .. })));
}

#[test]
fn unsupported_version() {
    for v in [0u32, 1, 4, u32::MAX] {
        let r = Raw::new(v, 0, 0).pad(64);
        assert!(matches!(parse(&r.0), Err(Error::UnsupportedVersion(x)) if x == v), "version {v}");
    }
}

#[test]
fn empty_and_tiny_files_are_truncated() {
    for n in 0..24 {
        let bytes = &Raw::new(3, 0, 0).0[..n];
        assert!(matches!(parse(bytes), Err(Error::Truncated { .. })), "{n} bytes");
    }
}

#[test]
fn every_truncation_of_a_valid_file_is_a_typed_error() {
    let bytes = tiny_gguf(&TinySpec::default());
    let header_end = parse(&bytes).unwrap().data_offset as usize;
    // every length through the header, then a stride through the data
    let lengths = (0..header_end + 64).chain((header_end..bytes.len()).step_by(4099));
    for n in lengths {
        match load(&bytes[..n]) {
            Err(Error::Truncated { .. }) | Err(Error::BadMagic { .. }) => {}
            Err(e) => panic!("{n} bytes: unexpected error {e:?}"),
            Ok(_) => panic!("{n} of {} bytes loaded", bytes.len()),
        }
    }
}

#[test]
fn huge_counts_and_lengths_are_refused_before_allocating() {
    assert!(matches!(parse(&Raw::new(3, u64::MAX, 0).pad(64).0), Err(Error::LimitExceeded { what, .. }) if what == "tensor count"));
    assert!(matches!(parse(&Raw::new(3, 0, u64::MAX).pad(64).0), Err(Error::LimitExceeded { what, .. }) if what == "metadata count"));
    // a metadata count within the limit but more than the file can hold
    assert!(matches!(parse(&Raw::new(3, 0, 4_000).pad(64).0), Err(Error::Truncated { .. })));
    // a key of 2^62 bytes
    let r = Raw::new(3, 0, 1).u64(1 << 62).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { value, .. }) if value == 1 << 62));
    // a string value longer than the file
    let r = Raw::new(3, 0, 1).str("k").u32(8).u64(1 << 20).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::Truncated { needed, .. }) if needed == 1 << 20));
    // an array of 2^40 u32
    let r = Raw::new(3, 0, 1).str("k").u32(9).u32(4).u64(1 << 40).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { value, .. }) if value == 1 << 40));
    // an array of 1M u64 in a small file
    let r = Raw::new(3, 0, 1).str("k").u32(9).u32(10).u64(1 << 20).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::Truncated { .. })));
}

#[test]
fn nested_arrays_are_bounded() {
    // an array whose element is an array whose element is an array …
    let mut r = Raw::new(3, 0, 1).str("k").u32(9);
    for _ in 0..3 {
        r = r.u32(9).u64(1);
    }
    let r = r.u32(4).u64(1).u32(7).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { what, .. }) if what.contains("nesting")));
}

#[test]
fn unknown_value_type() {
    let r = Raw::new(3, 0, 1).str("general.thing").u32(77).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::UnknownValueType { type_id: 77, key }) if key == "general.thing"));
}

#[test]
fn invalid_utf8_and_bad_bool() {
    let mut r = Raw::new(3, 0, 1).u64(2);
    r.0.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(parse(&r.u32(7).pad(64).0), Err(Error::InvalidUtf8 { .. })));
    let r = Raw::new(3, 0, 1).str("b").u32(7);
    let mut bytes = r.0;
    bytes.push(2);
    bytes.resize(bytes.len() + 64, 0);
    assert!(matches!(parse(&bytes), Err(Error::BadMetadata { key, .. }) if key == "b"));
}

#[test]
fn duplicate_keys_and_tensors() {
    let r = Raw::new(3, 0, 2).str("a").u32(4).u32(1).str("a").u32(4).u32(2).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::Duplicate { what: "metadata key", name }) if name == "a"));
    let t = |r: Raw, off: u64| r.str("w").u32(1).u64(32).u32(0).u64(off);
    let r = t(t(Raw::new(3, 2, 0), 0), 128).pad(512);
    assert!(matches!(parse(&r.0), Err(Error::Duplicate { what: "tensor", .. })));
}

#[test]
fn tensor_table_errors() {
    // 5 dimensions
    let r = Raw::new(3, 1, 0).str("w").u32(5).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { what, value: 5, .. }) if what.contains("dimension count")));
    // a dimension of 2^60
    let r = Raw::new(3, 1, 0).str("w").u32(2).u64(1 << 60).u64(1 << 60).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { what, .. }) if what.contains("dimension")));
    // a zero dimension
    let r = Raw::new(3, 1, 0).str("w").u32(1).u64(0).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::LimitExceeded { .. })));
    // unknown ggml type id
    let r = Raw::new(3, 1, 0).str("w").u32(1).u64(32).u32(99).u64(0).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::UnsupportedTensorType { type_name, .. }) if type_name.contains("99")));
    // misaligned data offset
    let r = Raw::new(3, 1, 0).str("w").u32(1).u64(32).u32(0).u64(3).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::MisalignedTensor { offset: 3, alignment: 32, .. })));
    // a row that is not a whole number of blocks
    let r = Raw::new(3, 1, 0).str("w").u32(1).u64(33).u32(8).u64(0).pad(256);
    assert!(matches!(parse(&r.0), Err(Error::TensorShape { .. })));
    // data past the end of the file
    let r = Raw::new(3, 1, 0).str("w").u32(1).u64(256).u32(0).u64(0).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::Truncated { context, .. }) if context.contains("\"w\"")));
    // overlapping tensors
    let t = |r: Raw, name: &str, off: u64| r.str(name).u32(1).u64(32).u32(0).u64(off);
    let r = t(t(Raw::new(3, 2, 0), "a", 0), "b", 64).pad(1024);
    assert!(matches!(parse(&r.0), Err(Error::TensorOutOfBounds { name }) if name == "b"));
    // bad alignment value
    let r = Raw::new(3, 0, 1).str("general.alignment").u32(4).u32(3).pad(64);
    assert!(matches!(parse(&r.0), Err(Error::BadMetadata { key, .. }) if key == "general.alignment"));
}

fn with_meta(f: impl Fn(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let spec = TinySpec::default();
    let mut meta = metadata(&spec);
    f(&mut meta);
    write(&meta, &tensors(&spec))
}

fn set(meta: &mut [(String, Value)], key: &str, v: Value) {
    meta.iter_mut().find(|(k, _)| k == key).unwrap().1 = v;
}

#[test]
fn model_metadata_errors() {
    let b = with_meta(|m| set(m, "general.architecture", Value::String("gpt2".into())));
    assert!(matches!(load(&b), Err(Error::UnsupportedArchitecture(a)) if a == "gpt2"));
    let b = with_meta(|m| m.retain(|(k, _)| k != "llama.block_count"));
    assert!(matches!(load(&b), Err(Error::MissingMetadata(k)) if k == "llama.block_count"));
    let b = with_meta(|m| set(m, "llama.block_count", Value::U32(1_000_000)));
    assert!(matches!(load(&b), Err(Error::BadMetadata { key, .. }) if key == "llama.block_count"));
    let b = with_meta(|m| set(m, "llama.embedding_length", Value::String("64".into())));
    assert!(matches!(load(&b), Err(Error::BadMetadata { key, .. }) if key == "llama.embedding_length"));
    let b = with_meta(|m| set(m, "llama.attention.head_count_kv", Value::U32(3)));
    assert!(matches!(load(&b), Err(Error::BadConfig(msg)) if msg.contains("kv heads")));
    let b = with_meta(|m| set(m, "llama.attention.layer_norm_rms_epsilon", Value::F32(f32::NAN)));
    assert!(matches!(load(&b), Err(Error::BadMetadata { .. })));
}

#[test]
fn tensor_errors() {
    let spec = TinySpec::default();
    let meta = metadata(&spec);
    // missing
    let mut ts = tensors(&spec);
    ts.retain(|t| t.0 != "blk.1.ffn_up.weight");
    assert!(matches!(load(&write(&meta, &ts)), Err(Error::MissingTensor(n)) if n == "blk.1.ffn_up.weight"));
    // misshapen: ffn_up with swapped dims
    let mut ts = tensors(&spec);
    let t = ts.iter_mut().find(|t| t.0 == "blk.0.ffn_up.weight").unwrap();
    t.1 = vec![128, 64];
    t.3 = hearth::quant::quantize::quantize(GgmlType::Q8_0, &vec![0.0; 128 * 64]).unwrap();
    assert!(matches!(load(&write(&meta, &ts)), Err(Error::TensorShape { name, .. }) if name == "blk.0.ffn_up.weight"));
    // a format without a kernel (Q8_1 is an activation format, never a weight)
    let mut ts = tensors(&spec);
    let t = ts.iter_mut().find(|t| t.0 == "blk.0.attn_q.weight").unwrap();
    t.2 = GgmlType::Q8_1;
    t.3 = vec![0u8; 64 * 64 / 32 * 36];
    assert!(matches!(load(&write(&meta, &ts)), Err(Error::UnsupportedTensorType { name, type_name }) if name == "blk.0.attn_q.weight" && type_name == "Q8_1"));
    // a norm stored quantized
    let mut ts = tensors(&spec);
    let t = ts.iter_mut().find(|t| t.0 == "output_norm.weight").unwrap();
    t.2 = GgmlType::Q8_0;
    t.3 = vec![0u8; 64 / 32 * 34];
    assert!(matches!(load(&write(&meta, &ts)), Err(Error::UnsupportedTensorType { .. })));
}

#[test]
fn every_supported_weight_format_loads_and_runs() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0] {
        let e = std::sync::Arc::new(load(&tiny_gguf(&TinySpec { weight_type: ty, ..Default::default() })).unwrap());
        let mut s = hearth::session::Session::new(e, 32).unwrap();
        s.feed(&[5, 6, 7]).unwrap();
        assert!(s.logits().iter().all(|v| v.is_finite()), "{ty:?}");
    }
}

#[test]
fn writer_and_reader_round_trip() {
    let spec = TinySpec::default();
    let bytes = tiny_gguf(&spec);
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata, metadata(&spec));
    let ts = tensors(&spec);
    assert_eq!(g.tensors.len(), ts.len());
    for (info, (name, dims, ty, data)) in g.tensors.iter().zip(&ts) {
        assert_eq!((&info.name, &info.dims, info.ty), (name, dims, *ty));
        let r = g.tensor_range(info);
        assert_eq!(&bytes[r.start as usize..r.end as usize], &data[..]);
    }
}
