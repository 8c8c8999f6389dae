//! Streaming safetensors writer: data first, header last.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::checkpoint::Dtype;
use crate::error::Result;

/// Where tensor data goes as it is produced.
pub trait DataSink {
    /// Appends `bytes` to the data buffer.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
}

impl DataSink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Writes tensors to a [`DataSink`] and produces the matching header.
#[derive(Default)]
pub struct ContainerWriter {
    entries: Vec<Entry>,
    data_bytes: u64,
    record_hash: Option<xxhash_rust::xxh3::Xxh3>,
    record_bytes: u64,
}

impl ContainerWriter {
    /// Creates a writer with an empty data buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts hashing the stored tensors of one record.
    pub fn begin_record(&mut self) {
        self.record_hash = Some(xxhash_rust::xxh3::Xxh3::new());
        self.record_bytes = 0;
    }

    /// Returns the hash of the bytes added since [`Self::begin_record`], or `None` when there were none.
    pub fn finish_record(&mut self) -> Option<String> {
        let hash = self.record_hash.take()?;
        (self.record_bytes > 0).then(|| super::records::hex64(hash.digest()))
    }

    /// Appends one tensor's bytes; `bytes.len()` must equal `shape × dtype size`.
    pub fn add(&mut self, sink: &mut dyn DataSink, name: &str, dtype: Dtype, shape: &[usize], bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(bytes.len(), shape.iter().product::<usize>() * dtype.size_bytes(), "{name}");
        sink.write(bytes)?;
        if let Some(hash) = self.record_hash.as_mut() {
            hash.update(bytes);
            self.record_bytes += bytes.len() as u64;
        }
        let begin = self.data_bytes;
        self.data_bytes += bytes.len() as u64;
        self.entries.push(Entry { name: name.to_string(), dtype, shape: shape.to_vec(), begin, end: self.data_bytes });
        Ok(())
    }

    /// Bytes written to the data buffer so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Builds the file head: the 8-byte length and the JSON header, padded with spaces to 8 bytes.
    pub fn header(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        header_bytes(metadata, self.entries.iter().map(|e| (e.name.as_str(), e.dtype, e.shape.as_slice(), e.begin, e.end)))
    }
}

/// Serializes a safetensors head from metadata and `(name, dtype, shape, begin, end)` entries.
pub fn header_bytes<'a>(metadata: &BTreeMap<String, String>, entries: impl Iterator<Item = (&'a str, Dtype, &'a [usize], u64, u64)>) -> Vec<u8> {
    let mut object = Map::new();
    if !metadata.is_empty() {
        object.insert("__metadata__".into(), json!(metadata));
    }
    for (name, dtype, shape, begin, end) in entries {
        object.insert(name.to_string(), json!({ "dtype": dtype.name(), "shape": shape, "data_offsets": [begin, end] }));
    }
    let mut json = serde_json::to_vec(&Value::Object(object)).expect("a JSON map always serializes");
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut head = (json.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(&json);
    head
}
