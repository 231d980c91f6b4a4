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
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(Error::Truncated {
                context: "read".into(),
                offset,
                needed: buf.len() as u64,
                available: self.len.saturating_sub(offset),
            });
        }
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
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::Other, e.to_string()))?;
            self.buf_start = self.pos;
        }
        let off = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
