//! Element types of safetensors tensors and their conversion to f32.
//!
//! Only float tensors are subtracted: F32, F16 and BF16 (and F64) are
//! converted to f32. Integer and bool tensors are compared byte for byte and
//! never converted.

use half::{bf16, f16};

/// A safetensors element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

impl Dtype {
    /// Parses the name used in safetensors headers, such as `"BF16"`.
    pub fn parse(name: &str) -> Option<Dtype> {
        Some(match name {
            "BOOL" => Dtype::Bool,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "F32" => Dtype::F32,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "F64" => Dtype::F64,
            _ => return None,
        })
    }

    /// The name used in safetensors headers.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F64 => "F64",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// Whether tensors of this type are deltas that can be subtracted and compressed.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }
}

/// Converts little-endian float bytes of type `dtype` to f32.
///
/// Returns `None` when `dtype` is not a float type this crate converts.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32).collect(),
        _ => return None,
    };
    Some(values)
}

/// Converts f32 values to little-endian bytes of float type `dtype`, rounding to nearest.
///
/// Returns `None` when `dtype` is not a float type this crate converts.
pub fn from_f32(dtype: Dtype, values: &[f32]) -> Option<Vec<u8>> {
    let bytes = match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        Dtype::F64 => values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect(),
        _ => return None,
    };
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for name in ["BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "I64", "U64", "F64"] {
            let dtype = Dtype::parse(name).expect("known dtype");
            assert_eq!(dtype.name(), name);
        }
        assert_eq!(Dtype::parse("F128"), None);
    }

    #[test]
    fn float_conversion_round_trips() {
        let values = [0.0f32, 1.0, -2.5, 65504.0, 1.0e-3];
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64] {
            let bytes = from_f32(dtype, &values).expect("float dtype");
            assert_eq!(bytes.len(), values.len() * dtype.size_bytes());
            let back = to_f32(dtype, &bytes).expect("float dtype");
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= a.abs() * 1e-2, "{dtype:?}: {a} came back as {b}");
            }
        }
    }

    #[test]
    fn integer_dtypes_are_not_converted() {
        assert_eq!(to_f32(Dtype::I64, &[0u8; 8]), None);
        assert!(!Dtype::I64.is_float());
    }
}
