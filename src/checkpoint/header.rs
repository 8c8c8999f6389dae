//! Safetensors header parsing with the checks the format requires.
//!
//! Layout of a safetensors file: an 8-byte little-endian header length `N`,
//! then `N` bytes of JSON, then the data buffer. The JSON maps each tensor
//! name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
//! the data buffer) and may hold a `__metadata__` map of strings.
//!
//! Checks, in order, before any allocation sized by the file: the header
//! length against the file size and against [`MAX_HEADER_BYTES`]; valid UTF-8
//! JSON; no duplicate names; known dtypes; `shape × dtype size` equal to the
//! byte range, computed with checked arithmetic; offsets inside the data
//! buffer; no overlaps and no holes between tensors.

use std::collections::BTreeMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::dtype::Dtype;
use super::source::ByteSource;
use crate::error::{Error, Result};

/// Largest header accepted, in bytes (the limit the reference implementation uses).
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One tensor entry of a header, with offsets made absolute within the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// First byte of the tensor in the file.
    pub begin_byte: u64,
    /// One past the last byte of the tensor in the file.
    pub end_byte: u64,
}

impl TensorEntry {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the tensor's data in bytes.
    pub fn byte_len(&self) -> u64 {
        self.end_byte - self.begin_byte
    }
}

/// A parsed header: tensors in data order, and the metadata strings.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Tensors sorted by their position in the file.
    pub tensors: Vec<TensorEntry>,
    /// The `__metadata__` map, empty when absent.
    pub metadata: BTreeMap<String, String>,
    /// Bytes taken by the length prefix and the JSON header.
    pub header_bytes: u64,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// JSON object entries in file order, keeping duplicate keys so they can be rejected.
struct EntryList(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for EntryList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = EntryList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object mapping tensor names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<EntryList, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push((key, value));
                }
                Ok(EntryList(entries))
            }
        }
        deserializer.deserialize_map(EntryVisitor)
    }
}

/// Reads and checks the header of `source`.
pub fn read_header(source: &dyn ByteSource) -> Result<Header> {
    let file = source.name();
    let json_bytes = read_header_json(source)?;
    let entries: EntryList = serde_json::from_slice(&json_bytes)
        .map_err(|e| Error::file(file, format!("the header is not valid safetensors JSON ({e}); is this a safetensors file?")))?;

    let header_bytes = 8 + json_bytes.len() as u64;
    let data_bytes = source.len() - header_bytes;
    let mut header = Header { header_bytes, ..Header::default() };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(Error::tensor(file, &name, "the name appears twice in the header; the file is corrupt"));
        }
        if name == "__metadata__" {
            header.metadata = parse_metadata(file, value)?;
            continue;
        }
        header.tensors.push(parse_entry(file, &name, value, header_bytes, data_bytes)?);
    }
    check_layout(file, &mut header.tensors, header_bytes, data_bytes)?;
    Ok(header)
}

/// Reads the length prefix and the JSON bytes, checking sizes before allocating.
fn read_header_json(source: &dyn ByteSource) -> Result<Vec<u8>> {
    let file = source.name();
    let file_len = source.len();
    if file_len < 8 {
        return Err(Error::file(file, format!("the file is {file_len} bytes long, too short for a safetensors file; it is truncated or not a safetensors file")));
    }
    let prefix = source.read_at(0, 8)?;
    let json_len = u64::from_le_bytes(prefix.try_into().expect("8 bytes were read"));
    if json_len > MAX_HEADER_BYTES {
        return Err(Error::file(file, format!("the header length is {json_len} bytes, above the limit of {MAX_HEADER_BYTES}; this is not a safetensors file or it is corrupt")));
    }
    if json_len > file_len - 8 {
        return Err(Error::file(file, format!("the header length is {json_len} bytes but the file has only {} bytes after the length prefix; the file is truncated or not a safetensors file", file_len - 8)));
    }
    let json_bytes = source.read_at(8, json_len as usize)?;
    if json_bytes.first() != Some(&b'{') {
        return Err(Error::file(file, "the header does not start with '{'; this is not a safetensors file"));
    }
    Ok(json_bytes)
}

fn parse_metadata(file: &str, value: serde_json::Value) -> Result<BTreeMap<String, String>> {
    serde_json::from_value(value)
        .map_err(|e| Error::file(file, format!("the __metadata__ entry must map strings to strings ({e})")))
}

fn parse_entry(file: &str, name: &str, value: serde_json::Value, header_bytes: u64, data_bytes: u64) -> Result<TensorEntry> {
    let raw: RawEntry = serde_json::from_value(value)
        .map_err(|e| Error::tensor(file, name, format!("invalid header entry ({e}); expected {{dtype, shape, data_offsets}}")))?;
    let dtype = Dtype::parse(&raw.dtype)
        .ok_or_else(|| Error::tensor(file, name, format!("unknown dtype '{}'", raw.dtype)))?;
    let [begin, end] = raw.data_offsets;
    if begin > end || end > data_bytes {
        return Err(Error::tensor(file, name, format!(
            "data offsets [{begin}, {end}] lie outside the data buffer of {data_bytes} bytes; the file is truncated or corrupt")));
    }
    let expected = raw.shape.iter()
        .try_fold(dtype.size_bytes() as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| Error::tensor(file, name, format!("shape {:?} overflows the addressable size", raw.shape)))?;
    if expected != end - begin {
        return Err(Error::tensor(file, name, format!(
            "shape {:?} of {} needs {expected} bytes but the data offsets span {} bytes; the file is corrupt", raw.shape, raw.dtype, end - begin)));
    }
    Ok(TensorEntry { name: name.to_string(), dtype, shape: raw.shape, begin_byte: header_bytes + begin, end_byte: header_bytes + end })
}

/// Sorts entries by offset and rejects overlaps and holes in the data buffer.
fn check_layout(file: &str, tensors: &mut [TensorEntry], header_bytes: u64, data_bytes: u64) -> Result<()> {
    tensors.sort_by_key(|t| (t.begin_byte, t.end_byte));
    let mut position = header_bytes;
    for tensor in tensors.iter() {
        if tensor.begin_byte < position {
            return Err(Error::tensor(file, &tensor.name, "its data overlaps the previous tensor's; the file is corrupt"));
        }
        if tensor.begin_byte > position {
            return Err(Error::tensor(file, &tensor.name, format!(
                "there is a hole of {} bytes before its data; the file is corrupt", tensor.begin_byte - position)));
        }
        position = tensor.end_byte;
    }
    if position != header_bytes + data_bytes {
        return Err(Error::file(file, format!(
            "the tensors cover {} of the {data_bytes} data bytes; the file has trailing bytes or is corrupt", position - header_bytes)));
    }
    Ok(())
}
