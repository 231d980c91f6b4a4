//! GGUF container: a validating reader and a writer.
//!
//! The reader parses the header (metadata and tensor table) from any `Read`, checking every count and
//! length against the bytes the file still has *before* allocating for it, so a truncated or hostile
//! file gives a typed `Error` and never a panic, a hang or a huge allocation. (candle-core's
//! `gguf_file` sizes `vec![0u8; len]` from unchecked header fields, which is why the engine has its own.)
//! Memory is bounded by the file, not only by the limits: arrays are stored as one vector of their
//! element type (`Array`), strings of an array as one buffer, names indexed by sorted positions, so the
//! reader's peak heap use stays under 4 × the file's size + 64 KiB whether it accepts the file or not
//! (`tests/gguf_memory.rs` measures the worst shapes).
//! Tensor data is not read here: `TensorInfo::offset` says where it is, so callers can read each tensor
//! straight into its final storage (the browser reads a stored Blob slice by slice).

use crate::error::{try_reserve, Error, Result};
use std::io::{Read, Write};

pub const MAGIC: [u8; 4] = *b"GGUF";
/// The metadata of llama.cpp's split models (gguf-split): this file's shard number from 0, the shard count,
/// and (in every shard) the whole model's tensor count.
pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS: &str = "split.tensors.count";
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// At most this many tensors: the largest llama GGUFs have a few thousand.
pub const MAX_TENSORS: u64 = 1 << 16;
/// At most this many metadata entries: llama.cpp writes about fifty. (An entry takes 60 bytes in memory
/// and can be 13 in the file; the cap keeps that excess over 4× the file size under 64 KiB.)
pub const MAX_METADATA: u64 = 1 << 12;
/// Keys and tensor names are short identifiers (the GGUF spec caps keys at 65535 bytes).
pub const MAX_NAME_LEN: u64 = 1 << 16;
/// A single string value (a chat template is the largest, tens of KB).
pub const MAX_STRING_LEN: u64 = 1 << 24;
/// Vocabularies and merge lists: 256K-token vocabularies exist; 16M elements is far beyond any.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Arrays hold scalars or strings only: arrays of arrays are refused, as llama.cpp's `gguf.cpp` refuses
/// them (no model uses them, and each inner array would cost far more memory than its 12 header bytes).
pub const MAX_ARRAY_DEPTH: u32 = 1;
/// ggml tensors have at most 4 dimensions.
pub const MAX_DIMS: u32 = 4;
/// Elements of one tensor: far beyond any model this engine can hold, small enough that sizes
/// computed from it never overflow. (A file too short for its tensors is `Truncated`.)
pub const MAX_ELEMENTS: u64 = 1 << 40;
/// Alignment must be a power of two no larger than this.
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// ggml tensor types the engine knows the layout of. Ids are ggml's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    IQ4NL,
    IQ4XS,
    BF16,
}

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            20 => IQ4NL,
            23 => IQ4XS,
            30 => BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            IQ4NL => 20,
            IQ4XS => 23,
            BF16 => 30,
        }
    }

    /// Elements per block.
    pub fn block_len(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4NL => 32,
            Q2K | Q3K | Q4K | Q5K | Q6K | Q8K | IQ4XS => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2K => 84,
            Q3K => 110,
            Q4K => 144,
            Q5K => 176,
            Q6K => 210,
            Q8K => 292,
            IQ4NL => 18,
            IQ4XS => 136,
        }
    }

    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            IQ4NL => "IQ4_NL",
            IQ4XS => "IQ4_XS",
            BF16 => "BF16",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        use GgmlType::*;
        [F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K, Q8K, IQ4NL, IQ4XS, BF16]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Bytes for `n` elements, or `None` when `n` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !n.is_multiple_of(bl) {
            return None;
        }
        (n / bl).checked_mul(self.block_bytes() as u64)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

// A metadata entry (key, value) is 56 bytes on 64-bit targets: see `Array::String`.
const _: () = assert!(std::mem::size_of::<Value>() <= 32);

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// The value as an integer, if it is one of the integer types.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The elements of a metadata array, one vector of their own type: an array takes no more memory than
/// its bytes in the file (a `Vec<Value>` took 32 bytes for each one-byte element, so a crafted 128 MB
/// file could claim 4 GiB).
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    /// Boxed, so a `Value` stays 32 bytes (a metadata entry costs at most 4× its bytes in the file).
    String(Box<Strings>),
}

impl Array {
    /// The GGUF type id of the elements.
    fn elem_type(&self) -> u32 {
        match self {
            Array::U8(_) => 0,
            Array::I8(_) => 1,
            Array::U16(_) => 2,
            Array::I16(_) => 3,
            Array::U32(_) => 4,
            Array::I32(_) => 5,
            Array::F32(_) => 6,
            Array::Bool(_) => 7,
            Array::String(_) => 8,
            Array::U64(_) => 10,
            Array::I64(_) => 11,
            Array::F64(_) => 12,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a `Value` (strings copied).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(v) => Value::String(v.get(i)?.to_string()),
        })
    }

    pub fn as_strings(&self) -> Option<&Strings> {
        match self {
            Array::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements as i64 when they are integers that fit (`None` for other types).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> Option<i64>) -> Option<Vec<i64>> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Array::U8(v) => conv(v, |x| Some(x.into())),
            Array::I8(v) => conv(v, |x| Some(x.into())),
            Array::U16(v) => conv(v, |x| Some(x.into())),
            Array::I16(v) => conv(v, |x| Some(x.into())),
            Array::U32(v) => conv(v, |x| Some(x.into())),
            Array::I32(v) => conv(v, |x| Some(x.into())),
            Array::U64(v) => conv(v, |x| i64::try_from(x).ok()),
            Array::I64(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The elements as f32 when they are numbers (floats or integers; `None` for other types).
    pub fn to_f32s(&self) -> Option<Vec<f32>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> f32) -> Option<Vec<f32>> {
            Some(v.iter().map(|&x| f(x)).collect())
        }
        match self {
            Array::U8(v) => conv(v, |x| x as f32),
            Array::I8(v) => conv(v, |x| x as f32),
            Array::U16(v) => conv(v, |x| x as f32),
            Array::I16(v) => conv(v, |x| x as f32),
            Array::U32(v) => conv(v, |x| x as f32),
            Array::I32(v) => conv(v, |x| x as f32),
            Array::U64(v) => conv(v, |x| x as f32),
            Array::I64(v) => conv(v, |x| x as f32),
            Array::F32(v) => Some(v.clone()),
            Array::F64(v) => conv(v, |x| x as f32),
            Array::Bool(_) | Array::String(_) => None,
        }
    }
}

macro_rules! array_from {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<Vec<$t>> for Array {
            fn from(v: Vec<$t>) -> Array {
                Array::$variant(v)
            }
        }
        impl FromIterator<$t> for Array {
            fn from_iter<I: IntoIterator<Item = $t>>(iter: I) -> Array {
                Array::$variant(iter.into_iter().collect())
            }
        }
    )*};
}
array_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64,
            f32 => F32, f64 => F64, bool => Bool);

impl FromIterator<String> for Array {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Array {
        Array::String(Box::new(iter.into_iter().collect()))
    }
}

impl<'a> FromIterator<&'a str> for Array {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Array {
        Array::String(Box::new(iter.into_iter().collect()))
    }
}

/// An array of strings as one text buffer and the end offset of each string: per string, its text plus
/// 8 bytes, as in the file (a length prefix and the text).
#[derive(Clone, PartialEq, Default)]
pub struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or(""))
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }
}

impl std::fmt::Debug for Strings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Strings {
        let mut s = Strings::default();
        for x in iter {
            s.push(x.as_ref());
        }
        s
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (contiguous), `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
    /// Indices into `metadata` and `tensors` sorted by name, for binary search: 4 bytes per entry where
    /// a map would hold a second copy of every name.
    meta_index: Vec<u32>,
    tensor_index: Vec<u32>,
}

/// Reads little-endian values, keeping the offset and refusing to read past `file_len`.
struct Cursor<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<'a, R: Read> Cursor<'a, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fails with `Truncated` unless `n` more bytes exist.
    fn need(&self, n: u64, context: &str) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                context: context.to_string(),
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, context: &str) -> Result<[u8; N]> {
        self.need(N as u64, context)?;
        let mut b = [0u8; N];
        self.read_exact_ctx(&mut b, context)?;
        Ok(b)
    }

    fn read_exact_ctx(&mut self, buf: &mut [u8], context: &str) -> Result<()> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Truncated {
                context: context.to_string(),
                offset: self.pos,
                needed: buf.len() as u64,
                available: 0,
            }),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn u32(&mut self, c: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(c)?))
    }
    fn u64(&mut self, c: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(c)?))
    }

    /// The length prefix of a string of at most `max` bytes that the file holds.
    fn string_len(&mut self, max: u64, what: &str) -> Result<usize> {
        let len = self.u64(what)?;
        if len > max {
            return Err(Error::LimitExceeded { what: format!("length of {what}"), value: len, limit: max });
        }
        self.need(len, what)?;
        Ok(len as usize)
    }

    /// A length-prefixed string of at most `max` bytes, in an exactly sized buffer.
    fn string(&mut self, max: u64, what: &str) -> Result<String> {
        let len = self.string_len(max, what)?;
        let mut buf = Vec::new();
        try_reserve(&mut buf, len, || what.to_string())?;
        buf.resize(len, 0);
        self.read_exact_ctx(&mut buf, what)?;
        String::from_utf8(buf).map_err(|_| Error::InvalidUtf8 { context: what.to_string() })
    }

    /// Appends a length-prefixed string of at most `max` bytes to `buf`, checking that it is UTF-8.
    fn append_string(&mut self, buf: &mut Vec<u8>, max: u64, what: &str) -> Result<()> {
        let len = self.string_len(max, what)?;
        let start = buf.len();
        // Amortized growth: an array's text takes at most twice its bytes, three times while copied.
        buf.try_reserve(len).map_err(|_| Error::OutOfMemory { what: what.to_string(), bytes: len as u64 })?;
        buf.resize(start + len, 0);
        self.read_exact_ctx(&mut buf[start..], what)?;
        if std::str::from_utf8(&buf[start..]).is_err() {
            return Err(Error::InvalidUtf8 { context: what.to_string() });
        }
        Ok(())
    }

    fn value(&mut self, type_id: u32, key: &str) -> Result<Value> {
        let c = key;
        Ok(match type_id {
            0 => Value::U8(self.bytes::<1>(c)?[0]),
            1 => Value::I8(self.bytes::<1>(c)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes(c)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(c)?)),
            4 => Value::U32(self.u32(c)?),
            5 => Value::I32(i32::from_le_bytes(self.bytes(c)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(c)?)),
            7 => Value::Bool(bool_byte(self.bytes::<1>(c)?, key)?),
            8 => Value::String(self.string(MAX_STRING_LEN, &format!("string value of {key:?}"))?),
            9 => {
                let elem_type = self.u32(c)?;
                let len = self.u64(c)?;
                if len > MAX_ARRAY_LEN {
                    return Err(Error::LimitExceeded {
                        what: format!("array length of {key:?}"),
                        value: len,
                        limit: MAX_ARRAY_LEN,
                    });
                }
                Value::Array(self.array(elem_type, len as usize, key)?)
            }
            10 => Value::U64(self.u64(c)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(c)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(c)?)),
            t => return Err(Error::UnknownValueType { key: key.to_string(), type_id: t }),
        })
    }

    /// The `len` elements of an array (`len` ≤ MAX_ARRAY_LEN), each type in a vector of its own.
    fn array(&mut self, elem_type: u32, len: usize, key: &str) -> Result<Array> {
        // Every element takes at least this many bytes, so the file must hold len of them.
        let min_size: u64 = match elem_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => {
                return Err(Error::LimitExceeded {
                    what: format!("array nesting of {key:?}"),
                    value: MAX_ARRAY_DEPTH as u64 + 1,
                    limit: MAX_ARRAY_DEPTH as u64,
                })
            }
            t => return Err(Error::UnknownValueType { key: key.to_string(), type_id: t }),
        };
        let what = format!("array {key:?}");
        self.need(len as u64 * min_size, &what)?;
        Ok(match elem_type {
            0 => Array::U8(self.elements(len, &what, |[b]| Ok(b))?),
            1 => Array::I8(self.elements(len, &what, |[b]| Ok(b as i8))?),
            2 => Array::U16(self.elements(len, &what, |b| Ok(u16::from_le_bytes(b)))?),
            3 => Array::I16(self.elements(len, &what, |b| Ok(i16::from_le_bytes(b)))?),
            4 => Array::U32(self.elements(len, &what, |b| Ok(u32::from_le_bytes(b)))?),
            5 => Array::I32(self.elements(len, &what, |b| Ok(i32::from_le_bytes(b)))?),
            6 => Array::F32(self.elements(len, &what, |b| Ok(f32::from_le_bytes(b)))?),
            7 => Array::Bool(self.elements(len, &what, |b| bool_byte(b, key))?),
            10 => Array::U64(self.elements(len, &what, |b| Ok(u64::from_le_bytes(b)))?),
            11 => Array::I64(self.elements(len, &what, |b| Ok(i64::from_le_bytes(b)))?),
            12 => Array::F64(self.elements(len, &what, |b| Ok(f64::from_le_bytes(b)))?),
            _ => {
                let mut ends = Vec::new();
                try_reserve(&mut ends, len, || what.clone())?;
                let mut text = Vec::new();
                let what = format!("string in array {key:?}");
                for _ in 0..len {
                    self.append_string(&mut text, MAX_STRING_LEN, &what)?;
                    ends.push(text.len());
                }
                let text = String::from_utf8(text).map_err(|_| Error::InvalidUtf8 { context: what })?;
                Array::String(Box::new(Strings { text, ends }))
            }
        })
    }

    /// `len` fixed-size elements of `N` bytes, read a chunk at a time into one exactly sized vector.
    fn elements<T, const N: usize>(
        &mut self,
        len: usize,
        what: &str,
        decode: impl Fn([u8; N]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        try_reserve(&mut out, len, || what.to_string())?;
        let mut chunk = [0u8; 4096];
        let per_chunk = chunk.len() / N;
        let mut left = len;
        while left > 0 {
            let k = left.min(per_chunk);
            self.read_exact_ctx(&mut chunk[..k * N], what)?;
            for e in chunk[..k * N].chunks_exact(N) {
                out.push(decode(std::array::from_fn(|i| e[i]))?);
            }
            left -= k;
        }
        Ok(out)
    }
}

/// Positions of `items` sorted by name; a name that occurs twice is a `Duplicate` error.
/// (Counts are at most 2^16, so positions fit u32.)
fn sorted_index<T>(items: &[T], name: impl Fn(&T) -> &String, what: &'static str) -> Result<Vec<u32>> {
    let mut index: Vec<u32> = (0..items.len() as u32).collect();
    index.sort_unstable_by(|&a, &b| name(&items[a as usize]).cmp(name(&items[b as usize])));
    for w in index.windows(2) {
        let (a, b) = (name(&items[w[0] as usize]), name(&items[w[1] as usize]));
        if a == b {
            return Err(Error::Duplicate { what, name: a.clone() });
        }
    }
    Ok(index)
}

fn bool_byte([b]: [u8; 1], key: &str) -> Result<bool> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::BadMetadata { key: key.to_string(), reason: format!("bool byte {b}") }),
    }
}

impl Gguf {
    /// Parses the header of a GGUF file of `file_len` bytes from `r`, positioned at its start.
    /// Reads exactly up to the end of the tensor table (not the alignment padding or the data).
    pub fn read<R: Read>(r: &mut R, file_len: u64) -> Result<Gguf> {
        let mut c = Cursor { r, pos: 0, len: file_len };
        let magic: [u8; 4] = c.bytes("magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > MAX_TENSORS {
            return Err(Error::LimitExceeded { what: "tensor count".into(), value: n_tensors, limit: MAX_TENSORS });
        }
        if n_kv > MAX_METADATA {
            return Err(Error::LimitExceeded { what: "metadata count".into(), value: n_kv, limit: MAX_METADATA });
        }
        // Each entry needs at least a key length, a type and one byte.
        c.need(n_kv.saturating_mul(13), "metadata table")?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = c.string(MAX_NAME_LEN, "metadata key")?;
            let type_id = c.u32(&key)?;
            let value = c.value(type_id, &key)?;
            metadata.push((key, value));
        }
        let meta_index = sorted_index(&metadata, |(k, _)| k, "metadata key")?;

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_i128() {
                Some(a) if a > 0 && a as u64 <= MAX_ALIGNMENT && (a as u64).is_power_of_two() => a as u64,
                _ => {
                    return Err(Error::BadMetadata {
                        key: "general.alignment".into(),
                        reason: format!("{v:?} is not a power of two up to {MAX_ALIGNMENT}"),
                    })
                }
            },
        };

        // Each tensor entry needs at least a name length, n_dims, one dim, a type and an offset.
        c.need(n_tensors.saturating_mul(32), "tensor table")?;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string(MAX_NAME_LEN, "tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::LimitExceeded {
                    what: format!("dimension count of tensor {name:?}"),
                    value: n_dims as u64,
                    limit: MAX_DIMS as u64,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut elements: u64 = 1;
            for _ in 0..n_dims {
                let d = c.u64(&name)?;
                elements = match elements.checked_mul(d) {
                    Some(e) if d > 0 && e <= MAX_ELEMENTS => e,
                    _ => {
                        return Err(Error::LimitExceeded {
                            what: format!("dimension of tensor {name:?}"),
                            value: d,
                            limit: MAX_ELEMENTS,
                        })
                    }
                };
                dims.push(d);
            }
            let type_id = c.u32(&name)?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnsupportedTensorType {
                name: name.clone(),
                type_name: format!("ggml type id {type_id}"),
            })?;
            let offset = c.u64(&name)?;
            if offset % alignment != 0 {
                return Err(Error::MisalignedTensor { name, offset, alignment });
            }
            let size = if dims[0] % ty.block_len() as u64 != 0 {
                return Err(Error::TensorShape {
                    name,
                    found: dims,
                    expected: vec![ty.block_len() as u64],
                });
            } else {
                ty.bytes_for(elements).ok_or_else(|| Error::LimitExceeded {
                    what: format!("size of tensor {name:?}"),
                    value: elements,
                    limit: u64::MAX,
                })?
            };
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }
        let tensor_index = sorted_index(&tensors, |t| &t.name, "tensor")?;

        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let data_len = file_len.saturating_sub(data_offset);
        // Tensors must lie inside the data section and must not overlap.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        let mut end = 0u64;
        for &i in &order {
            let t = &tensors[i];
            let t_end = t.offset.checked_add(t.size);
            match t_end {
                Some(e) if t.offset >= end && e <= data_len => end = e,
                Some(_) if t.offset >= end => {
                    return Err(Error::Truncated {
                        context: format!("data of tensor {:?}", t.name),
                        offset: data_offset + t.offset,
                        needed: t.size,
                        available: data_len.saturating_sub(t.offset),
                    })
                }
                _ => return Err(Error::TensorOutOfBounds { name: t.name.clone() }),
            }
        }

        Ok(Gguf { version, metadata, tensors, data_offset, file_len, meta_index, tensor_index })
    }

    /// The shard number (from 0) and the shard count of one file of a split model (llama.cpp's gguf-split
    /// writes `split.no`, `split.count` and, for the whole model, `split.tensors.count`), or None for a
    /// whole model.
    pub fn split(&self) -> Result<Option<(u32, u32)>> {
        let (Some(no), Some(count)) = (self.opt_u32(SPLIT_NO)?, self.opt_u32(SPLIT_COUNT)?) else {
            return Ok(None);
        };
        if count == 0 || no >= count {
            return Err(Gguf::bad(SPLIT_NO, format!("shard {no} of {count}")));
        }
        Ok((count > 1).then_some((no, count)))
    }

    /// One header for a split model's shards laid end to end (shard `i` starting at `starts[i]`, `total`
    /// bytes in all): the first shard's metadata, every shard's tensors with their offsets made absolute
    /// (`data_offset` is then 0). Checks that the shards are all there, in order, and that together they
    /// hold the tensors the first one counts, each name once.
    pub fn join(shards: Vec<Gguf>, starts: &[u64], total: u64) -> Result<Gguf> {
        let Some(first) = shards.first() else { return Err(Gguf::bad(SPLIT_COUNT, "no shards")) };
        let count = shards.len() as u32;
        for (i, g) in shards.iter().enumerate() {
            match g.split()? {
                Some((no, n)) if no == i as u32 && n == count => {}
                found => {
                    return Err(Gguf::bad(
                        SPLIT_NO,
                        format!("file {} of the {count} given is {}", i + 1, match found {
                            Some((no, n)) => format!("shard {} of {n}", no + 1),
                            None => "not a shard".into(),
                        }),
                    ))
                }
            }
        }
        let mut tensors = Vec::new();
        for (g, &start) in shards.iter().zip(starts) {
            for t in &g.tensors {
                tensors.push(TensorInfo { offset: start + g.data_offset + t.offset, ..t.clone() });
            }
        }
        if let Some(want) = first.opt_u32(SPLIT_TENSORS)? {
            if want as usize != tensors.len() {
                return Err(Gguf::bad(SPLIT_TENSORS, format!("{want} tensors counted, {} found in the shards", tensors.len())));
            }
        }
        let tensor_index = sorted_index(&tensors, |t| &t.name, "tensor")?;
        let Gguf { version, metadata, meta_index, .. } = shards.into_iter().next().expect("checked above");
        Ok(Gguf { version, metadata, tensors, data_offset: 0, file_len: total, meta_index, tensor_index })
    }

    /// Parses a whole GGUF held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Gguf> {
        let mut r = bytes;
        Gguf::read(&mut r, bytes.len() as u64)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = self.meta_index.binary_search_by(|&i| self.metadata[i as usize].0.as_str().cmp(key)).ok()?;
        Some(&self.metadata[self.meta_index[i] as usize].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let i = self.tensor_index.binary_search_by(|&i| self.tensors[i as usize].name.as_str().cmp(name)).ok()?;
        Some(&self.tensors[self.tensor_index[i] as usize])
    }

    /// Absolute byte range of a tensor's data in the file.
    pub fn tensor_range(&self, t: &TensorInfo) -> std::ops::Range<u64> {
        self.data_offset + t.offset..self.data_offset + t.offset + t.size
    }

    fn bad(key: &str, reason: impl Into<String>) -> Error {
        Error::BadMetadata { key: key.to_string(), reason: reason.into() }
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.get(key).ok_or_else(|| Error::MissingMetadata(key.to_string()))?;
        v.as_str().ok_or_else(|| Self::bad(key, "expected a string"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| Self::bad(key, "expected a string")),
        }
    }

    /// An unsigned integer of any GGUF integer type that fits in `u32`.
    pub fn u32(&self, key: &str) -> Result<u32> {
        self.opt_u32(key)?.ok_or_else(|| Error::MissingMetadata(key.to_string()))
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i128() {
                Some(i) if (0..=u32::MAX as i128).contains(&i) => Ok(Some(i as u32)),
                _ => Err(Self::bad(key, format!("expected an unsigned 32-bit integer, found {v:?}"))),
            },
        }
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() => Ok(Some(f as f32)),
                _ => Err(Self::bad(key, format!("expected a finite number, found {v:?}"))),
            },
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::bad(key, format!("expected a bool, found {v:?}"))),
        }
    }

    /// An array whose elements are all strings (an empty array of any type is an empty list).
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        match self.get(key) {
            None => Err(Error::MissingMetadata(key.to_string())),
            Some(Value::Array(Array::String(s))) => Ok(s.iter().collect()),
            Some(Value::Array(a)) if a.is_empty() => Ok(Vec::new()),
            Some(_) => Err(Self::bad(key, "expected an array of strings")),
        }
    }

    /// An array whose elements are all integers (any GGUF integer type), as i64.
    pub fn int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Ok(Some(Vec::new())),
            Some(Value::Array(a)) => {
                a.to_i64s().map(Some).ok_or_else(|| Self::bad(key, "expected an array of integers"))
            }
            Some(_) => Err(Self::bad(key, "expected an array of integers")),
        }
    }

    /// An array whose elements are all numbers (any GGUF integer or float type), as f32.
    pub fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if a.is_empty() => Ok(Some(Vec::new())),
            Some(Value::Array(a)) => a.to_f32s().map(Some).ok_or_else(|| Self::bad(key, "expected an array of numbers")),
            Some(_) => Err(Self::bad(key, "expected an array of numbers")),
        }
    }
}

// ---- writer -------------------------------------------------------------------------------------

/// A tensor to write: name, ggml dims (row length first), type, and its raw data.
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub ty: GgmlType,
    pub data: &'a [u8],
}

fn write_string<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&[*x as u8]),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => write_string(w, s),
        Value::Array(a) => {
            w.write_all(&a.elem_type().to_le_bytes())?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            fn all<W: Write, T: Copy, const N: usize>(w: &mut W, v: &[T], f: impl Fn(T) -> [u8; N]) -> std::io::Result<()> {
                v.iter().try_for_each(|&x| w.write_all(&f(x)))
            }
            match a {
                Array::U8(v) => w.write_all(v),
                Array::I8(v) => all(w, v, i8::to_le_bytes),
                Array::U16(v) => all(w, v, u16::to_le_bytes),
                Array::I16(v) => all(w, v, i16::to_le_bytes),
                Array::U32(v) => all(w, v, u32::to_le_bytes),
                Array::I32(v) => all(w, v, i32::to_le_bytes),
                Array::U64(v) => all(w, v, u64::to_le_bytes),
                Array::I64(v) => all(w, v, i64::to_le_bytes),
                Array::F32(v) => all(w, v, f32::to_le_bytes),
                Array::F64(v) => all(w, v, f64::to_le_bytes),
                Array::Bool(v) => all(w, v, |b| [b as u8]),
                Array::String(v) => v.iter().try_for_each(|s| write_string(w, s)),
            }
        }
    }
}

/// Writes a GGUF v3 file with the default alignment (32).
pub fn write<W: Write + ?Sized>(w: &mut W, metadata: &[(String, Value)], tensors: &[TensorData]) -> Result<()> {
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        write_string(&mut header, k)?;
        header.extend_from_slice(&v.type_id().to_le_bytes());
        write_value(&mut header, v)?;
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in tensors {
        write_string(&mut header, t.name)?;
        header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in t.dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ty.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.data.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
    }
    let pad = header.len().div_ceil(DEFAULT_ALIGNMENT as usize) * DEFAULT_ALIGNMENT as usize - header.len();
    header.resize(header.len() + pad, 0);
    w.write_all(&header)?;
    let mut written = 0u64;
    for (t, &off) in tensors.iter().zip(&offsets) {
        w.write_all(&vec![0u8; (off - written) as usize])?;
        w.write_all(t.data)?;
        written = off + t.data.len() as u64;
    }
    Ok(())
}

/// The header of a model from `src`, which holds its files back to back, `part_lens[i]` bytes each: one
/// whole GGUF, or the shards of a split one in order (joined by [`Gguf::join`]). One shard alone of a split
/// model is refused, naming how many files it needs.
pub fn read_parts(src: &mut dyn crate::source::ByteSource, part_lens: &[u64]) -> Result<Gguf> {
    use crate::source::{SeqReader, Window};
    let mut shards = Vec::with_capacity(part_lens.len());
    let mut starts = Vec::with_capacity(part_lens.len());
    let mut start = 0u64;
    for &len in part_lens {
        let mut w = Window::new(src, start, len);
        shards.push(Gguf::read(&mut SeqReader::new(&mut w), len)?);
        starts.push(start);
        start += len;
    }
    if shards.len() == 1 {
        if let Some((no, count)) = shards[0].split()? {
            return Err(Gguf::bad(
                SPLIT_COUNT,
                format!("this file is shard {} of a model split in {count}: load all {count} files together", no + 1),
            ));
        }
        return Ok(shards.pop().expect("one shard"));
    }
    Gguf::join(shards, &starts, start)
}
