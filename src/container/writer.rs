//! Streaming safetensors writer: data first, header last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
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

/// One stored tensor: its name, dtype, shape and length in bytes.
///
/// Offsets follow from the order of the parts, so parts written apart (by
/// the page's workers, one tensor each) can be joined in tensor order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPart {
    /// Name in the container, such as `layer.0.weight/u_codes`.
    pub name: String,
    /// Dtype name, such as `U8`.
    #[serde(with = "dtype_by_name")]
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Length of its bytes.
    pub len: u64,
}

/// Serializes a [`Dtype`] as its safetensors name.
mod dtype_by_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::checkpoint::Dtype;

    pub fn serialize<S: Serializer>(dtype: &Dtype, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(dtype.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Dtype, D::Error> {
        let name = String::deserialize(deserializer)?;
        Dtype::parse(&name).ok_or_else(|| D::Error::custom(format!("unknown dtype '{name}'")))
    }
}

/// Writes tensors to a [`DataSink`] and produces the matching header.
#[derive(Default)]
pub struct ContainerWriter {
    parts: Vec<StoredPart>,
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
        self.data_bytes += bytes.len() as u64;
        self.parts.push(StoredPart { name: name.to_string(), dtype, shape: shape.to_vec(), len: bytes.len() as u64 });
        Ok(())
    }

    /// Records parts whose bytes another writer already sent to the data buffer, in that order.
    pub fn append_parts(&mut self, parts: &[StoredPart]) {
        for part in parts {
            self.data_bytes += part.len;
            self.parts.push(part.clone());
        }
    }

    /// Returns the parts added so far, in data order.
    pub fn parts(&self) -> &[StoredPart] {
        &self.parts
    }

    /// Bytes written to the data buffer so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Builds the file head: the 8-byte length and the JSON header, padded with spaces to 8 bytes.
    pub fn header(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        let mut begin = 0;
        header_bytes(metadata, self.parts.iter().map(|part| {
            let entry = (part.name.as_str(), part.dtype, part.shape.as_slice(), begin, begin + part.len);
            begin += part.len;
            entry
        }))
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
