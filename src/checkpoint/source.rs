//! Byte sources: where checkpoint bytes come from.
//!
//! A checkpoint is never read whole. The reader asks a [`ByteSource`] for one
//! byte range at a time (the header, then one tensor), so memory holds at most
//! the largest tensor. Natively the source is a file read with positioned
//! reads; in the browser it is a `File` read through `File.slice` (see
//! `wasm.rs`); in tests it is a buffer in memory.

use crate::error::{Error, Result};

/// A random-access, read-only sequence of bytes with a name to show the user.
pub trait ByteSource {
    /// The name shown in messages (a file name or path).
    fn name(&self) -> &str;

    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `len` bytes starting at `offset`.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

/// A byte source held in memory, for tests and small inputs.
pub struct MemorySource {
    name: String,
    bytes: Vec<u8>,
}

impl MemorySource {
    /// Wraps `bytes` under the display name `name`.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        MemorySource { name: name.into(), bytes }
    }
}

impl ByteSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.checked_add(len as u64).filter(|&end| end <= self.len());
        match end {
            Some(end) => Ok(self.bytes[offset as usize..end as usize].to_vec()),
            None => Err(Error::file(
                &self.name,
                format!("read of {len} bytes at offset {offset} is past the end of the file ({} bytes); the file is truncated", self.len()),
            )),
        }
    }
}

/// A file on disk, read with positioned reads.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    name: String,
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
        let len = file.metadata().map_err(|e| Error::io(&name, e))?.len();
        Ok(FileSource { name, file, len })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if offset.checked_add(len as u64).is_none_or(|end| end > self.len) {
            return Err(Error::file(
                &self.name,
                format!("read of {len} bytes at offset {offset} is past the end of the file ({} bytes); the file is truncated", self.len),
            ));
        }
        let mut buffer = vec![0u8; len];
        self.file.read_exact_at(&mut buffer, offset).map_err(|e| Error::io(&self.name, e))?;
        Ok(buffer)
    }
}
