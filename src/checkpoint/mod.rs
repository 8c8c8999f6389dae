//! Stage 1 of the pipeline: open a checkpoint and read its tensors one at a time.
//!
//! A checkpoint is one or more safetensors files, optionally with a
//! `model.safetensors.index.json` whose `weight_map` names the shard of every
//! tensor. Opening reads only the headers. Tensor data is read by byte range
//! when the pipeline reaches that tensor, so peak memory is set by the largest
//! tensor, not by the checkpoint.

pub mod dtype;
pub mod header;
pub mod source;

use std::collections::{BTreeMap, HashMap};

pub use dtype::Dtype;
pub use header::{read_header, Header, TensorEntry};
pub use source::{ByteSource, MemorySource};

use crate::error::{Error, Result};

/// Name suffix of a sharded checkpoint's index file.
pub const INDEX_SUFFIX: &str = ".index.json";

/// An opened checkpoint: its files, their headers and where each tensor lives.
pub struct Checkpoint {
    files: Vec<Box<dyn ByteSource>>,
    headers: Vec<Header>,
    /// Tensor name → (file index, entry index), in file order then data order.
    locations: Vec<(usize, usize)>,
    by_name: HashMap<String, usize>,
    /// Bytes of the tensors that [`Checkpoint::keep_in_memory`] read, by name.
    in_memory: HashMap<String, Vec<u8>>,
    /// Things the user should know about the input, such as an ignored file.
    pub notices: Vec<String>,
}

impl Checkpoint {
    /// Opens a checkpoint from its files: safetensors files and at most one index.
    ///
    /// With an index, only the shards it names are used; other safetensors
    /// files are ignored with a notice, and a missing shard is an error that
    /// lists the tensors it holds.
    pub fn open(sources: Vec<Box<dyn ByteSource>>) -> Result<Checkpoint> {
        let (index, mut shards): (Vec<_>, Vec<_>) = sources.into_iter().partition(|s| s.name().ends_with(INDEX_SUFFIX));
        if shards.is_empty() {
            return Err(Error::Mismatch { message: "no .safetensors file was given; choose the checkpoint's .safetensors file(s) or its folder".into() });
        }
        let mut notices = Vec::new();
        match index.as_slice() {
            [] => notices.extend(incomplete_shards_notice(&shards)),
            [index] => shards = select_shards(index.as_ref(), shards, &mut notices)?,
            _ => return Err(Error::Mismatch { message: format!(
                "{} index files were given ({}); give one checkpoint at a time",
                index.len(), index.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")) }),
        }
        shards.sort_by(|a, b| a.name().cmp(b.name()));

        let mut checkpoint = Checkpoint { files: Vec::new(), headers: Vec::new(), locations: Vec::new(), by_name: HashMap::new(), in_memory: HashMap::new(), notices };
        for shard in shards {
            checkpoint.add_file(shard)?;
        }
        Ok(checkpoint)
    }

    fn add_file(&mut self, source: Box<dyn ByteSource>) -> Result<()> {
        let header = read_header(source.as_ref())?;
        let file_index = self.files.len();
        for (entry_index, entry) in header.tensors.iter().enumerate() {
            if let Some(&previous) = self.by_name.get(&entry.name) {
                let (other_file, _) = self.locations[previous];
                return Err(Error::tensor(source.name(), &entry.name, format!(
                    "the tensor is also in {}; a checkpoint must hold each tensor once", self.files[other_file].name())));
            }
            self.by_name.insert(entry.name.clone(), self.locations.len());
            self.locations.push((file_index, entry_index));
        }
        self.files.push(source);
        self.headers.push(header);
        Ok(())
    }

    /// Names of all tensors, in file order then data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.locations.iter().map(|&(f, e)| self.headers[f].tensors[e].name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    /// Returns whether the checkpoint contains no tensors.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// Returns the header entry of tensor `name`, if present.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.by_name.get(name).map(|&i| {
            let (f, e) = self.locations[i];
            &self.headers[f].tensors[e]
        })
    }

    /// The file name holding tensor `name` (or the first file when absent), for messages.
    pub fn file_of(&self, name: &str) -> &str {
        let file = self.by_name.get(name).map_or(0, |&i| self.locations[i].0);
        self.files[file].name()
    }

    /// Names of the files, joined for messages.
    pub fn display_name(&self) -> String {
        let names: Vec<&str> = self.files.iter().map(|f| f.name()).collect();
        names.join(", ")
    }

    /// Reads tensor `name` now and serves later [`Checkpoint::read_bytes`]
    /// calls for it from memory, for callers that read it many times.
    pub fn keep_in_memory(&mut self, name: &str) -> Result<()> {
        if !self.in_memory.contains_key(name) {
            let bytes = self.read_bytes(name)?;
            self.in_memory.insert(name.to_string(), bytes);
        }
        Ok(())
    }

    /// Reads the raw bytes of tensor `name`.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.in_memory.get(name) {
            return Ok(bytes.clone());
        }
        let &i = self.by_name.get(name).ok_or_else(|| Error::tensor(self.display_name(), name, "the tensor is not in this checkpoint"))?;
        let (f, e) = self.locations[i];
        let entry = &self.headers[f].tensors[e];
        let len = usize::try_from(entry.byte_len())
            .map_err(|_| Error::tensor(self.files[f].name(), name, "the tensor is larger than this platform can address"))?;
        self.files[f].read_at(entry.begin_byte, len)
    }

    /// Reads float tensor `name` as f32, rejecting NaN and infinite values.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let entry = self.entry(name).ok_or_else(|| Error::tensor(self.display_name(), name, "the tensor is not in this checkpoint"))?;
        let bytes = self.read_bytes(name)?;
        let values = dtype::to_f32(entry.dtype, &bytes)
            .ok_or_else(|| Error::tensor(self.file_of(name), name, format!("dtype {} is not a float type", entry.dtype.name())))?;
        if let Some(position) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::tensor(self.file_of(name), name, format!(
                "element {position} is {}; the checkpoint contains non-finite weights, so re-export it from a healthy training run", values[position])));
        }
        Ok(values)
    }

    /// Returns the metadata of the first file.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.headers[0].metadata
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len()).sum()
    }
}

/// Returns a notice when the files are named as shards (`-00001-of-00003`)
/// but fewer than their count were given, without an index to say which.
fn incomplete_shards_notice(shards: &[Box<dyn ByteSource>]) -> Option<String> {
    let totals: Vec<usize> = shards.iter().filter_map(|s| shard_total(s.name())).collect();
    let total = *totals.iter().max()?;
    (shards.len() < total).then(|| format!(
        "{} looks like one of {total} shards, but the files given hold {} of them and no index, so the tensors of the other shards count as missing from this checkpoint; give every shard and the model.safetensors.index.json",
        shards[0].name(), shards.len()))
}

/// Returns the shard count `M` of a name ending in `-0000N-of-0000M.safetensors`.
fn shard_total(name: &str) -> Option<usize> {
    let stem = name.strip_suffix(".safetensors")?;
    let (_, total) = stem.rsplit_once("-of-")?;
    (total.len() >= 2 && total.bytes().all(|b| b.is_ascii_digit())).then(|| total.parse().ok()).flatten()
}

/// Keeps the shards an index names and reports missing ones with their tensors.
fn select_shards(index: &dyn ByteSource, shards: Vec<Box<dyn ByteSource>>, notices: &mut Vec<String>) -> Result<Vec<Box<dyn ByteSource>>> {
    let bytes = index.read_at(0, index.len() as usize)?;
    let weight_map = parse_index(index.name(), &bytes)?;
    let mut tensors_of_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, shard) in &weight_map {
        tensors_of_shard.entry(shard.as_str()).or_default().push(tensor.as_str());
    }

    let base_name = |s: &str| s.rsplit(['/', '\\']).next().unwrap_or(s).to_string();
    let mut kept = Vec::new();
    for shard in shards {
        if tensors_of_shard.contains_key(base_name(shard.name()).as_str()) {
            kept.push(shard);
        } else {
            notices.push(format!("{} is not named in {}, so it was ignored", shard.name(), index.name()));
        }
    }
    let present: Vec<String> = kept.iter().map(|s| base_name(s.name())).collect();
    for (shard, tensors) in &tensors_of_shard {
        if !present.iter().any(|p| p == shard) {
            let listed: Vec<&str> = tensors.iter().take(5).copied().collect();
            let more = if tensors.len() > 5 { format!(" and {} more", tensors.len() - 5) } else { String::new() };
            return Err(Error::file(index.name(), format!(
                "shard {shard} is missing; it holds {} tensor(s): {}{more}. Add {shard} to the files you chose", tensors.len(), listed.join(", "))));
        }
    }
    Ok(kept)
}

fn parse_index(file: &str, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| Error::file(file, format!("not a valid safetensors index: {e}; expected a JSON object with a weight_map")))?;
    Ok(index.weight_map)
}

#[cfg(test)]
mod shard_name_tests {
    use super::shard_total;

    #[test]
    fn shard_total_reads_hugging_face_names() {
        assert_eq!(shard_total("model-00001-of-00003.safetensors"), Some(3));
        assert_eq!(shard_total("dir/model-00002-of-00002.safetensors"), Some(2));
        assert_eq!(shard_total("model.safetensors"), None);
        assert_eq!(shard_total("one-of-x.safetensors"), None);
    }
}
