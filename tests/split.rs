//! Split GGUFs (llama.cpp's gguf-split layout): `hearth split` writes them, and the shards load as one
//! model — from any shard's path natively, or laid end to end (as the browser hands them over) — giving the
//! whole file's tokens. One shard alone, shards out of order or a shard missing are typed errors.

mod common;

use common::tiny::*;
use hearth::generate::{GenerateOptions, Generation};
use hearth::gguf::{Gguf, SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS};
use hearth::sampler::SamplerConfig;
use hearth::session::{Engine, Session};
use hearth::source::{ByteSource, Concat};
use hearth::Error;
use std::path::PathBuf;
use std::sync::Arc;

fn tokens(engine: Engine) -> Vec<u32> {
    let engine = Arc::new(engine);
    let mut s = Session::new(engine.clone(), 64).unwrap();
    s.feed(&engine.tokenizer.encode("hello world, once more", false).unwrap()).unwrap();
    let opts = GenerateOptions { max_tokens: 12, sampler: SamplerConfig::greedy(), stop: vec![], ignore_eos: true };
    let mut g = Generation::new(opts).unwrap();
    while !g.is_done() {
        g.step(&mut s).unwrap();
    }
    g.tokens
}

fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("hearth-split-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("tiny.gguf");
    std::fs::write(&whole, tiny_gguf(&TinySpec { n_layer: 3, ..Default::default() })).unwrap();
    (dir, whole)
}

#[test]
fn shards_load_as_the_whole_model() {
    let (dir, whole) = setup("whole");
    let want = tokens(Engine::open(&whole).unwrap());
    let paths = hearth::quantize::split_file(&whole, 3, &dir.join("shards")).unwrap();
    let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["tiny-00001-of-00003.gguf", "tiny-00002-of-00003.gguf", "tiny-00003-of-00003.gguf"]);
    // The layout gguf-split writes: metadata in the first shard, split.* in every one.
    let headers: Vec<Gguf> = paths.iter().map(|p| Gguf::from_bytes(&std::fs::read(p).unwrap()).unwrap()).collect();
    let n_tensors = Gguf::from_bytes(&std::fs::read(&whole).unwrap()).unwrap().tensors.len();
    for (i, g) in headers.iter().enumerate() {
        assert_eq!(g.split().unwrap(), Some((i as u32, 3)));
        assert_eq!(g.get(SPLIT_TENSORS).and_then(|v| v.as_i128()), Some(n_tensors as i128));
        assert_eq!(g.get("general.architecture").is_some(), i == 0);
        assert!(!g.tensors.is_empty());
    }
    assert_eq!(headers.iter().map(|g| g.tensors.len()).sum::<usize>(), n_tensors);
    // Any shard's path opens the whole model.
    for p in &paths {
        assert_eq!(tokens(Engine::open(p).unwrap()), want, "{}", p.display());
    }
    // The shards back to back, as the browser hands them to the engine.
    let parts: Vec<Box<dyn ByteSource>> = paths.iter().map(|p| Box::new(std::fs::read(p).unwrap()) as Box<dyn ByteSource>).collect();
    let mut src = Concat::new(parts);
    let lens = src.part_lens();
    let joined = Engine::load_split(&mut src, &lens).unwrap();
    assert_eq!(joined.weight_mix, Engine::open(&whole).unwrap().weight_mix, "the same tensors, by type");
    assert_eq!(tokens(joined), want);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_shard_alone_out_of_order_or_missing_is_a_typed_error() {
    let (dir, whole) = setup("errors");
    let paths = hearth::quantize::split_file(&whole, 3, &dir.join("shards")).unwrap();
    let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // one shard on its own
    match Engine::load(&mut bytes[0].as_slice()) {
        Err(Error::BadMetadata { key, reason }) => {
            assert_eq!(key, SPLIT_COUNT);
            assert!(reason.contains("shard 1 of a model split in 3: load all 3 files together"), "{reason}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // out of order
    let mut src = Concat::new(vec![Box::new(bytes[1].clone()), Box::new(bytes[0].clone()), Box::new(bytes[2].clone())]);
    let lens = src.part_lens();
    match Engine::load_split(&mut src, &lens) {
        Err(Error::BadMetadata { key, reason }) => {
            assert_eq!(key, SPLIT_NO);
            assert!(reason.contains("file 1 of the 3 given is shard 2 of 3"), "{reason}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // two of three
    let mut src = Concat::new(vec![Box::new(bytes[0].clone()), Box::new(bytes[1].clone())]);
    let lens = src.part_lens();
    assert!(matches!(Engine::load_split(&mut src, &lens), Err(Error::BadMetadata { .. })));
    // a missing file, natively
    std::fs::remove_file(&paths[2]).unwrap();
    assert!(matches!(Engine::open(&paths[0]), Err(Error::Io(_))));
    // and splitting a shard again is refused
    assert!(matches!(hearth::quantize::split_file(&paths[0], 2, &dir), Err(Error::InvalidArgument(_))));
    std::fs::remove_dir_all(&dir).ok();
}
