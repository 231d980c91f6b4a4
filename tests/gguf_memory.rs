//! The GGUF reader's memory is bounded by its input: for any file, accepted or rejected, the reader's
//! peak heap use stays under 4 × the file's size + 64 KiB. Each case is a crafted file that packs the
//! most in-memory structure into the fewest file bytes (one-byte array elements, empty strings, tiny
//! metadata entries and tensors). Measured by hearth's global allocator, which counts per thread the
//! bytes held while a closure runs (`hearth::alloc::peak_of`; a `realloc` counts old and new at once).

use hearth::gguf::{Gguf, MAX_ARRAY_LEN, MAX_METADATA, MAX_TENSORS};
use hearth::Error;
use hearth::alloc::peak_of;

/// Parses `bytes`, checks the bound and returns the result (dropped outside the measurement).
fn parse_bounded(name: &str, bytes: &[u8]) -> Result<Gguf, Error> {
    let (peak, result) = peak_of(|| {
        let r = Gguf::from_bytes(bytes);
        let ok = r.as_ref().map(|_| ()).map_err(|e| e.to_string());
        drop(r);
        ok
    });
    let bound = 4 * bytes.len() + (64 << 10);
    eprintln!("{name}: {} bytes, peak {peak} bytes ({:.2}×), {result:?}", bytes.len(), peak as f64 / bytes.len() as f64);
    assert!(peak <= bound, "{name}: peak {peak} bytes for a {}-byte file (bound {bound})", bytes.len());
    Gguf::from_bytes(bytes)
}

/// Header bytes: magic, version 3, counts.
fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v
}

fn push_str(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s);
}

/// One metadata entry "k": an array of `len` elements of type `elem_type`, each `elem` bytes.
fn array_file(elem_type: u32, len: u64, elem: &[u8]) -> Vec<u8> {
    let mut v = header(0, 1);
    push_str(&mut v, b"k");
    v.extend_from_slice(&9u32.to_le_bytes());
    v.extend_from_slice(&elem_type.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    for _ in 0..len {
        v.extend_from_slice(elem);
    }
    v
}

#[test]
fn an_array_of_16m_one_byte_values_takes_its_own_size() {
    // The case: 16 M one-byte elements once cost 32 bytes each (512 MiB from a 16 MB file).
    let len = MAX_ARRAY_LEN;
    for (ty, name) in [(0u32, "u8"), (1, "i8"), (7, "bool")] {
        let bytes = array_file(ty, len, &[1]);
        let g = parse_bounded(&format!("16M {name}"), &bytes).unwrap();
        assert_eq!(g.get("k").and_then(|v| v.as_array()).map(|a| a.len()), Some(len as usize));
    }
}

#[test]
fn arrays_of_short_strings_take_about_their_own_size() {
    // empty strings: 8 bytes each in the file, one 8-byte offset each in memory
    let bytes = array_file(8, 2 << 20, &0u64.to_le_bytes());
    let g = parse_bounded("2M empty strings", &bytes).unwrap();
    assert_eq!(g.str_array("k").unwrap().len(), 2 << 20);
    // one-byte strings
    let mut one = 1u64.to_le_bytes().to_vec();
    one.push(b'x');
    let bytes = array_file(8, 1_600_000, &one);
    let g = parse_bounded("1.6M one-byte strings", &bytes).unwrap();
    let s = g.str_array("k").unwrap();
    assert_eq!((s.len(), s[1_599_999]), (1_600_000, "x"));
}

#[test]
fn rejected_files_are_bounded_too() {
    // the last of 1.6M strings is not UTF-8: everything before it was decoded, then refused
    let mut one = 1u64.to_le_bytes().to_vec();
    one.push(b'x');
    let mut bytes = array_file(8, 1_600_000, &one);
    *bytes.last_mut().unwrap() = 0xff;
    assert!(matches!(parse_bounded("1.6M strings, the last invalid", &bytes), Err(Error::InvalidUtf8 { .. })));
    // 16M one-byte values, then a tensor table that is missing
    let mut bytes = array_file(0, MAX_ARRAY_LEN, &[7]);
    bytes[8..16].copy_from_slice(&1u64.to_le_bytes());
    assert!(matches!(parse_bounded("16M u8, then no tensor table", &bytes), Err(Error::Truncated { .. })));
    // 16M bools, the last one not 0 or 1
    let mut bytes = array_file(7, MAX_ARRAY_LEN, &[1]);
    *bytes.last_mut().unwrap() = 2;
    assert!(matches!(parse_bounded("16M bools, the last bad", &bytes), Err(Error::BadMetadata { .. })));
}

/// Distinct short keys: 1, 2, then 3 printable ASCII bytes.
fn short_name(mut i: usize) -> Vec<u8> {
    let mut s = Vec::new();
    loop {
        s.push(b'!' + (i % 94) as u8);
        i /= 94;
        if i == 0 {
            return s;
        }
        i -= 1;
    }
}

#[test]
fn the_most_metadata_entries_in_the_fewest_bytes() {
    let n = MAX_METADATA as usize;
    let mut v = header(0, n as u64);
    for i in 0..n {
        push_str(&mut v, &short_name(i));
        v.extend_from_slice(&0u32.to_le_bytes());
        v.push(i as u8);
    }
    let g = parse_bounded("4K one-byte entries", &v).unwrap();
    assert_eq!(g.metadata.len(), n);
    let k = String::from_utf8(short_name(1234)).unwrap();
    assert!(matches!(g.get(&k), Some(hearth::gguf::Value::U8(x)) if *x == 1234u16 as u8));
}

#[test]
fn the_most_entries_with_one_repeated_name_are_refused_within_the_bound() {
    // all-zero entries: an empty key, type u8, value 0 — 13 bytes each, refused as duplicates at the end
    let n = MAX_METADATA as usize;
    let mut v = header(0, n as u64);
    v.resize(v.len() + 13 * n, 0);
    assert!(matches!(parse_bounded("4K entries with one empty key", &v), Err(Error::Duplicate { .. })));
    // all-zero tensors but for one dimension of 1: 32 bytes each, refused as duplicates
    let n = MAX_TENSORS as usize;
    let mut v = header(n as u64, 0);
    for _ in 0..n {
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&[0; 12]);
    }
    assert!(matches!(parse_bounded("64K tensors with one empty name", &v), Err(Error::Duplicate { .. })));
}

#[test]
fn the_most_tensors_in_the_fewest_bytes() {
    // 64K one-element F16 tensors, two bytes of data each (alignment 1)
    let n = MAX_TENSORS as usize;
    let mut v = header(n as u64, 1);
    push_str(&mut v, b"general.alignment");
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n {
        push_str(&mut v, &short_name(i));
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&(2 * i as u64).to_le_bytes());
    }
    v.resize(v.len() + 2 * n, 0);
    let g = parse_bounded("64K one-element tensors", &v).unwrap();
    assert_eq!(g.tensors.len(), n);
    let name = String::from_utf8(short_name(777)).unwrap();
    assert_eq!(g.tensor(&name).map(|t| t.offset), Some(2 * 777));
}
