//! Reading a compressed delta: header checks, records and stored tensors.

use half::f16;

use super::records::{decode_allocation, Kind, TensorRecord};
use super::{FORMAT_NAME, FORMAT_VERSION};
use crate::checkpoint::{read_header, ByteSource, Dtype, Header, TensorEntry};
use crate::error::{Error, Result};
use crate::methods::bitdelta::SignMatrix;
use crate::methods::EncodedMatrix;
use crate::packed::PackedMatrix;

/// An opened compressed delta.
pub struct DeltaFile {
    source: Box<dyn ByteSource>,
    header: Header,
    /// One record per fine-tune tensor.
    pub records: Vec<TensorRecord>,
    /// Target ratio the file was made for.
    pub ratio: f64,
    /// Method that produced the matrices.
    pub method: String,
    /// Fingerprint of the base it was made against.
    pub base_fingerprint: String,
    /// The fine-tune's own metadata, restored on apply.
    pub finetuned_metadata: std::collections::BTreeMap<String, String>,
}

impl DeltaFile {
    /// Opens and checks a compressed delta.
    pub fn open(source: Box<dyn ByteSource>) -> Result<DeltaFile> {
        let header = read_header(source.as_ref())?;
        let file = source.name().to_string();
        let invalid = |message: String| Error::InvalidDelta { file: file.clone(), message };
        let get = |key: &str| header.metadata.get(key).ok_or_else(|| invalid(format!(
            "metadata entry '{key}' is missing; this is not an adamix compressed delta")));

        if get("adamix.format")? != FORMAT_NAME {
            return Err(invalid("this is not an adamix compressed delta (adamix.format differs)".into()));
        }
        let version = get("adamix.format_version")?;
        if version != FORMAT_VERSION {
            return Err(invalid(format!("format version {version} is not supported; this build reads version {FORMAT_VERSION}")));
        }
        let records: Vec<TensorRecord> = serde_json::from_str(get("adamix.tensors")?)
            .map_err(|e| invalid(format!("adamix.tensors is not a valid record list ({e})")))?;
        let ratio = get("adamix.ratio")?.parse().map_err(|_| invalid("adamix.ratio is not a number".into()))?;
        let finetuned_metadata = match header.metadata.get("adamix.finetuned_metadata") {
            Some(text) => serde_json::from_str(text).map_err(|e| invalid(format!("adamix.finetuned_metadata is invalid ({e})")))?,
            None => Default::default(),
        };
        let delta = DeltaFile {
            method: get("adamix.method")?.clone(),
            base_fingerprint: get("adamix.base_fingerprint")?.clone(),
            source, header, records, ratio, finetuned_metadata,
        };
        delta.check_records()?;
        Ok(delta)
    }

    /// Checks that every record's stored tensors exist with the right dtypes.
    fn check_records(&self) -> Result<()> {
        for record in &self.records {
            if Dtype::parse(&record.dtype).is_none() {
                return Err(self.invalid(&record.name, format!("unknown dtype '{}'", record.dtype)));
            }
            let stored: &[(&str, Dtype)] = match record.kind {
                Kind::Quantized => &[("codes", Dtype::U8), ("scales", Dtype::F16), ("mins", Dtype::F16), ("sigma", Dtype::F32)],
                Kind::LowRank => &[("u", Dtype::F16), ("v", Dtype::F16), ("sigma", Dtype::F32)],
                Kind::Bitdelta => &[("signs", Dtype::U8), ("scale", Dtype::F32)],
                Kind::F16Delta => &[("delta", Dtype::F16)],
                Kind::Whole => &[],
                Kind::Unchanged => &[],
            };
            for (suffix, dtype) in stored {
                let entry = self.stored_entry(&record.name, suffix)?;
                if entry.dtype != *dtype {
                    return Err(self.invalid(&record.name, format!("{suffix} has dtype {} where {} is expected", entry.dtype.name(), dtype.name())));
                }
            }
            let same_shape = match record.kind {
                Kind::Whole => Some(self.stored_entry(&record.name, "whole")?),
                Kind::F16Delta => Some(self.stored_entry(&record.name, "delta")?),
                _ => None,
            };
            if let Some(entry) = same_shape {
                if entry.shape != record.shape {
                    return Err(self.invalid(&record.name, format!("the stored tensor has shape {:?} where the record says {:?}", entry.shape, record.shape)));
                }
                if record.kind == Kind::Whole && entry.dtype.name() != record.dtype {
                    return Err(self.invalid(&record.name, "the stored tensor's dtype differs from the record's".into()));
                }
            }
            if record.kind.is_matrix() && record.shape.len() != 2 {
                return Err(self.invalid(&record.name, format!("shape {:?} is not 2-D", record.shape)));
            }
            if record.kind != Kind::Whole && record.base_xxh3.is_none() {
                return Err(self.invalid(&record.name, "the base hash is missing".into()));
            }
        }
        Ok(())
    }

    fn invalid(&self, tensor: &str, message: String) -> Error {
        Error::InvalidDelta { file: self.source.name().to_string(), message: format!("tensor '{tensor}': {message}") }
    }

    /// Returns the file name.
    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// Total size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.source.len()
    }

    /// Bytes of the length prefix and the JSON header.
    pub fn header_bytes(&self) -> u64 {
        self.header.header_bytes
    }

    fn stored_entry(&self, name: &str, suffix: &str) -> Result<&TensorEntry> {
        let full = format!("{name}/{suffix}");
        self.header.tensors.iter().find(|t| t.name == full)
            .ok_or_else(|| self.invalid(name, format!("stored tensor '{full}' is missing")))
    }

    /// Bytes stored for record `name` (all its stored tensors).
    pub fn stored_bytes(&self, name: &str) -> u64 {
        let prefix = format!("{name}/");
        self.header.tensors.iter().filter(|t| t.name.starts_with(&prefix)).map(|t| t.byte_len()).sum()
    }

    /// Checks the stored bytes of `record` against its recorded hash, so corruption is reported, not applied.
    pub fn check_data(&self, record: &TensorRecord) -> Result<()> {
        let Some(expected) = &record.data_xxh3 else { return Ok(()) };
        let prefix = format!("{}/", record.name);
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for entry in self.header.tensors.iter().filter(|t| t.name.starts_with(&prefix)) {
            hasher.update(&self.source.read_at(entry.begin_byte, entry.byte_len() as usize)?);
        }
        let actual = super::records::hex64(hasher.digest());
        if &actual != expected {
            return Err(self.invalid(&record.name, format!(
                "the stored data is corrupt (hash {actual}, expected {expected}); download or copy the compressed delta again")));
        }
        Ok(())
    }

    /// Reads the raw bytes of stored tensor `NAME/suffix`.
    pub fn read_stored(&self, name: &str, suffix: &str) -> Result<Vec<u8>> {
        let entry = self.stored_entry(name, suffix)?;
        self.source.read_at(entry.begin_byte, entry.byte_len() as usize)
    }

    /// Reads the stored form of a 2-D record.
    pub fn read_matrix(&self, record: &TensorRecord) -> Result<EncodedMatrix> {
        let f16s = |bytes: Vec<u8>| bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>();
        let f32s = |bytes: Vec<u8>| bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<_>>();
        let (rows, cols) = (record.shape[0], record.shape[1]);
        let matrix = match record.kind {
            Kind::Quantized => EncodedMatrix::Quantized { packed: self.read_packed(record)?, allocation: Vec::new(), spectrum: Vec::new() },
            Kind::LowRank => EncodedMatrix::LowRank {
                rows, cols,
                u: f16s(self.read_stored(&record.name, "u")?),
                v: f16s(self.read_stored(&record.name, "v")?),
                sigma: f32s(self.read_stored(&record.name, "sigma")?),
                spectrum: Vec::new(),
            },
            Kind::Bitdelta => {
                let kept_rows = match self.stored_entry(&record.name, "rows") {
                    Ok(_) => self.read_stored(&record.name, "rows")?.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                    Err(_) => (0..rows as u32).collect(),
                };
                let scale = f32s(self.read_stored(&record.name, "scale")?).first().copied().unwrap_or(0.0);
                let signs = SignMatrix { rows, cols, kept_rows, signs: self.read_stored(&record.name, "signs")?, scale };
                signs.check().map_err(|message| self.invalid(&record.name, message))?;
                EncodedMatrix::BitDelta(signs)
            }
            _ => return Err(self.invalid(&record.name, "the record is not a 2-D delta".into())),
        };
        Ok(matrix)
    }

    /// Reads the packed matrix of a `quantized` record.
    pub fn read_packed(&self, record: &TensorRecord) -> Result<PackedMatrix> {
        let allocation = record.allocation.as_deref().and_then(decode_allocation)
            .ok_or_else(|| self.invalid(&record.name, "the allocation is missing or malformed".into()))?;
        let f16s = |bytes: Vec<u8>| bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>();
        let packed = PackedMatrix {
            rows: record.shape[0],
            cols: record.shape[1],
            widths: allocation.into_iter().filter(|&w| w > 0).collect(),
            sigma: self.read_stored(&record.name, "sigma")?.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            codes: self.read_stored(&record.name, "codes")?,
            scales: f16s(self.read_stored(&record.name, "scales")?),
            mins: f16s(self.read_stored(&record.name, "mins")?),
        };
        packed.check_sizes().map_err(|message| self.invalid(&record.name, message))?;
        Ok(packed)
    }
}
