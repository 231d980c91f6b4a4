//! Where model bytes come from: a file natively, memory in tests, a stored Blob in the browser.
//! The loader reads the header sequentially and then each tensor straight into its own storage,
//! so no second copy of the file is ever held.

use crate::error::{Error, Result};
use std::io::{Read, Seek, SeekFrom};

pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ByteSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s.checked_add(buf.len()).is_some_and(|e| e <= <[u8]>::len(self)));
        let s = start.ok_or_else(|| Error::Truncated {
            context: "read".into(),
            offset,
            needed: buf.len() as u64,
            available: ByteSource::len(self).saturating_sub(offset),
        })?;
        buf.copy_from_slice(&self[s..s + buf.len()]);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// `Error::Truncated` unless `n` bytes at `offset` lie within `len`.
fn in_bounds(offset: u64, n: usize, len: u64) -> Result<()> {
    if offset.saturating_add(n as u64) > len {
        return Err(Error::Truncated { context: "read".into(), offset, needed: n as u64, available: len.saturating_sub(offset) });
    }
    Ok(())
}

/// Any `Read + Seek` (a file) as a byte source.
pub struct ReadSeek<R> {
    inner: R,
    len: u64,
}

impl<R: Read + Seek> ReadSeek<R> {
    pub fn new(mut inner: R) -> Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        Ok(ReadSeek { inner, len })
    }
}

impl<R: Read + Seek> ByteSource for ReadSeek<R> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        in_bounds(offset, buf.len(), self.len)?;
        self.inner.seek(SeekFrom::Start(offset))?;
        self.inner.read_exact(buf)?;
        Ok(())
    }
}

/// Sequential `Read` over a byte source, in chunks (for parsing the header).
pub struct SeqReader<'a> {
    src: &'a mut dyn ByteSource,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const CHUNK: usize = 1 << 20;

impl<'a> SeqReader<'a> {
    pub fn new(src: &'a mut dyn ByteSource) -> Self {
        SeqReader { src, pos: 0, buf: Vec::new(), buf_start: 0 }
    }
}

impl Read for SeqReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= buf_end {
            let n = (self.src.len().saturating_sub(self.pos)).min(CHUNK as u64) as usize;
            if n == 0 {
                return Ok(0);
            }
            self.buf.resize(n, 0);
            self.src
                .read_at(self.pos, &mut self.buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.buf_start = self.pos;
        }
        let off = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A window `[start, start + len)` of another source, as a source of its own (one shard of a split model
/// laid end to end with the others).
pub struct Window<'a> {
    src: &'a mut dyn ByteSource,
    start: u64,
    len: u64,
}

impl<'a> Window<'a> {
    pub fn new(src: &'a mut dyn ByteSource, start: u64, len: u64) -> Self {
        Window { src, start, len }
    }
}

impl ByteSource for Window<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        in_bounds(offset, buf.len(), self.len)?;
        self.src.read_at(self.start + offset, buf)
    }
}

/// Several sources back to back as one: a split model's shards, which the loader reads as one address
/// space (each shard's header and tensors at its own start; see `gguf::read_parts`).
pub struct Concat {
    parts: Vec<Box<dyn ByteSource>>,
    /// Where each part starts, and (last) the total length.
    starts: Vec<u64>,
}

impl Concat {
    pub fn new(parts: Vec<Box<dyn ByteSource>>) -> Self {
        let mut starts = vec![0u64];
        for p in &parts {
            starts.push(starts.last().unwrap() + p.len());
        }
        Concat { parts, starts }
    }

    /// Each part's length, in order.
    pub fn part_lens(&self) -> Vec<u64> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl ByteSource for Concat {
    fn len(&self) -> u64 {
        *self.starts.last().unwrap()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        in_bounds(offset, buf.len(), self.len())?;
        let (mut at, mut done) = (offset, 0usize);
        while done < buf.len() {
            let k = self.starts.partition_point(|&s| s <= at) - 1;
            let n = ((self.starts[k + 1] - at) as usize).min(buf.len() - done);
            self.parts[k].read_at(at - self.starts[k], &mut buf[done..done + n])?;
            at += n as u64;
            done += n;
        }
        Ok(())
    }
}

/// The shards of a split GGUF named as llama.cpp's gguf-split names them (`<name>-00001-of-00003.gguf`),
/// given the path of any one of them; None for any other name.
#[cfg(not(target_arch = "wasm32"))]
pub fn split_paths(path: &std::path::Path) -> Option<Vec<std::path::PathBuf>> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) {
        return None;
    }
    let n: u32 = count.parse().ok()?;
    if n < 2 || no.parse::<u32>().ok()? > n {
        return None;
    }
    Some((1..=n).map(|k| path.with_file_name(format!("{prefix}-{k:05}-of-{n:05}.gguf"))).collect())
}
