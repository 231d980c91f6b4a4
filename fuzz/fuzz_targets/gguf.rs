//! The GGUF reader over arbitrary bytes: every file is a header or a typed error, never a panic, a hang
//! or an allocation out of proportion to the file (see `peak` below); every accessor works on what
//! the reader accepted.
#![no_main]

use hearth::gguf::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data) else { return };
    for (k, _) in &g.metadata {
        assert!(g.get(k).is_some(), "key {k:?} not found");
        let _ = (g.str(k), g.u32(k), g.opt_f32(k), g.opt_bool(k), g.str_array(k), g.int_array(k));
    }
    for t in &g.tensors {
        assert!(g.tensor(&t.name).is_some(), "tensor {:?} not found", t.name);
        let r = g.tensor_range(t);
        assert!(r.start >= g.data_offset && r.end <= data.len() as u64, "tensor {:?} outside the file", t.name);
    }
});
