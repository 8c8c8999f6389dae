//! Tensor records: the per-tensor metadata of a compressed delta.

use serde::{Deserialize, Serialize};

/// How a tensor of the fine-tune is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A 2-D delta as quantized singular triplets (ADAMIX, Delta-CoMe).
    Quantized,
    /// A 2-D delta as f16 singular triplets (low-rank baseline).
    LowRank,
    /// A 2-D delta as sign bits and a scale (BitDelta baseline).
    Bitdelta,
    /// A small delta stored as f16.
    F16Delta,
    /// The fine-tune's tensor stored as is.
    Whole,
    /// Equal to the base; nothing stored.
    Unchanged,
}

impl Kind {
    /// Whether this kind stores a compressed 2-D delta.
    pub fn is_matrix(self) -> bool {
        matches!(self, Kind::Quantized | Kind::LowRank | Kind::Bitdelta)
    }

    /// The name shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Quantized => "quantized",
            Kind::LowRank => "low-rank",
            Kind::Bitdelta => "bitdelta",
            Kind::F16Delta => "f16 delta",
            Kind::Whole => "whole",
            Kind::Unchanged => "unchanged",
        }
    }
}

/// One tensor of the fine-tune, as the container records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRecord {
    /// The fine-tune's tensor name.
    pub name: String,
    /// How it is stored.
    pub kind: Kind,
    /// The fine-tune's dtype name.
    pub dtype: String,
    /// The fine-tune's shape.
    pub shape: Vec<usize>,
    /// XXH3-64 of the base tensor's bytes, as 16 hex digits, for kinds that read the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_xxh3: Option<String>,
    /// Run-length encoded widths of the candidate triplets, for kind `quantized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<String>,
    /// XXH3-64 of the stored tensors' bytes, concatenated in file order, as 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_xxh3: Option<String>,
}

/// Encodes widths as `WIDTHxCOUNT` runs joined by commas.
pub fn encode_allocation(widths: &[u8]) -> String {
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for &w in widths {
        match runs.last_mut() {
            Some((last, count)) if *last == w => *count += 1,
            _ => runs.push((w, 1)),
        }
    }
    runs.iter().map(|(w, c)| format!("{w}x{c}")).collect::<Vec<_>>().join(",")
}

/// Decodes [`encode_allocation`]'s output; returns `None` when it is malformed.
pub fn decode_allocation(text: &str) -> Option<Vec<u8>> {
    let mut widths = Vec::new();
    if text.is_empty() {
        return Some(widths);
    }
    for run in text.split(',') {
        let (width, count) = run.split_once('x')?;
        let (width, count): (u8, usize) = (width.parse().ok()?, count.parse().ok()?);
        if width > 8 || count > 1 << 24 {
            return None;
        }
        widths.extend(std::iter::repeat_n(width, count));
    }
    Some(widths)
}

/// Formats a 64-bit hash as 16 hex digits.
pub fn hex64(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_round_trips() {
        let widths = vec![8, 8, 3, 3, 3, 0, 2, 2, 0, 0];
        let text = encode_allocation(&widths);
        assert_eq!(text, "8x2,3x3,0x1,2x2,0x2");
        assert_eq!(decode_allocation(&text), Some(widths));
        assert_eq!(decode_allocation(""), Some(vec![]));
    }

    #[test]
    fn malformed_allocation_is_rejected() {
        for text in ["8", "9x1", "ax2", "3x", "3x1,,"] {
            assert_eq!(decode_allocation(text), None, "{text}");
        }
    }
}
