//! The compression methods: ADAMIX and the baselines it is compared with.
//!
//! Every method turns one 2-D delta into an [`EncodedMatrix`] within the
//! same budget, counted the same way (every stored byte), and every encoded
//! matrix is written to the same container and applied by the same code.
//!
//! - `adamix`: SVD, σ²-scaled cost table, bit allocation by integer
//!   program, V quantized, U corrected for V̂ and quantized with error feedback.
//! - `delta-come`: fixed split by rank (2 triplets at 8 bits, 32 at 3 bits,
//!   then 2 bits for as many as fit), V then U, no correction.
//! - `low-rank`: the top `r` triplets in f16, `r` as large as fits.
//! - `bitdelta`: `s · sign(ΔW)` with `s = mean |ΔW|`, one bit per parameter.

pub mod adamix;
pub mod bitdelta;
pub mod delta_come;
pub mod low_rank;

use faer::Mat;
use half::f16;
use serde::Serialize;

use crate::checkpoint::Dtype;
use crate::packed::{rows_per_block, Factors, PackedMatrix};

/// A compression method for 2-D deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Adaptive mixed precision by integer program.
    Adamix,
    /// Fixed 8/3/2-bit split by rank.
    DeltaCome,
    /// Top triplets in f16.
    LowRank,
    /// One sign bit per parameter and one scale.
    Bitdelta,
}

impl Method {
    /// All methods, ADAMIX first.
    pub const ALL: [Method; 4] = [Method::Adamix, Method::DeltaCome, Method::LowRank, Method::Bitdelta];

    /// The name used on the command line, in the page and in the file.
    pub fn name(self) -> &'static str {
        match self {
            Method::Adamix => "adamix",
            Method::DeltaCome => "delta-come",
            Method::LowRank => "low-rank",
            Method::Bitdelta => "bitdelta",
        }
    }

    /// Parses [`Method::name`].
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One 2-D delta in stored form.
pub enum EncodedMatrix {
    /// Quantized singular triplets (ADAMIX and Delta-CoMe).
    Quantized {
        /// The packed triplets.
        packed: PackedMatrix,
        /// Width per candidate triplet, 0 = dropped.
        allocation: Vec<u8>,
        /// Singular values of the candidate triplets.
        spectrum: Vec<f32>,
    },
    /// Triplets with f16 factors.
    LowRank {
        /// Rows `m`.
        rows: usize,
        /// Columns `n`.
        cols: usize,
        /// `U`, `[m, r]`, column by column.
        u: Vec<f16>,
        /// `V`, `[n, r]`, column by column.
        v: Vec<f16>,
        /// σ, length `r`.
        sigma: Vec<f32>,
        /// Singular values of the candidate triplets.
        spectrum: Vec<f32>,
    },
    /// Sign bits of selected rows and one scale.
    BitDelta(bitdelta::SignMatrix),
}

/// A tensor to store: name suffix, dtype, shape and bytes.
pub type StoredPart = (&'static str, Dtype, Vec<usize>, Vec<u8>);

/// Something that produces rows of a reconstructed delta `Δ̂`.
pub trait Reconstruction {
    /// Shape `[m, n]`.
    fn shape(&self) -> (usize, usize);
    /// Rows `start..start + count` of `Δ̂`, row-major.
    fn rows(&self, start: usize, count: usize) -> Vec<f32>;
}

impl Reconstruction for Factors {
    fn shape(&self) -> (usize, usize) {
        (self.u.nrows(), self.v.nrows())
    }

    fn rows(&self, start: usize, count: usize) -> Vec<f32> {
        self.reconstruct_rows(start, count)
    }
}

/// `‖Δ − Δ̂‖²` against a row-major delta, computed in blocks of rows.
pub fn squared_error(reconstruction: &dyn Reconstruction, delta: &[f32]) -> f64 {
    let (m, n) = reconstruction.shape();
    let mut total = 0.0f64;
    for start in (0..m).step_by(rows_per_block(n)) {
        let count = rows_per_block(n).min(m - start);
        let rows = reconstruction.rows(start, count);
        total += delta[start * n..(start + count) * n].iter().zip(&rows).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    }
    total
}

/// Adds `Δ̂` to `values`, row-major `[m, n]`, in blocks of rows.
pub fn add_into(reconstruction: &dyn Reconstruction, values: &mut [f32]) {
    let (m, n) = reconstruction.shape();
    for start in (0..m).step_by(rows_per_block(n)) {
        let count = rows_per_block(n).min(m - start);
        for (v, d) in values[start * n..(start + count) * n].iter_mut().zip(&reconstruction.rows(start, count)) {
            *v += d;
        }
    }
}

fn f16_bytes(values: &[f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl EncodedMatrix {
    /// The tensors this matrix is stored as, with name suffixes as `FORMAT.md` specifies.
    pub fn parts(&self) -> Vec<StoredPart> {
        match self {
            EncodedMatrix::Quantized { packed, .. } => {
                let (k, groups) = (packed.widths.len(), packed.groups_per_triplet());
                vec![
                    ("codes", Dtype::U8, vec![packed.codes.len()], packed.codes.clone()),
                    ("scales", Dtype::F16, vec![k, groups], f16_bytes(&packed.scales)),
                    ("mins", Dtype::F16, vec![k, groups], f16_bytes(&packed.mins)),
                    ("sigma", Dtype::F32, vec![k], f32_bytes(&packed.sigma)),
                ]
            }
            EncodedMatrix::LowRank { rows, cols, u, v, sigma, .. } => {
                let r = sigma.len();
                vec![
                    ("u", Dtype::F16, vec![r, *rows], f16_bytes(u)),
                    ("v", Dtype::F16, vec![r, *cols], f16_bytes(v)),
                    ("sigma", Dtype::F32, vec![r], f32_bytes(sigma)),
                ]
            }
            EncodedMatrix::BitDelta(signs) => signs.parts(),
        }
    }

    /// The decoded delta, ready to produce rows; fails when stored parts are inconsistent.
    pub fn decode(&self) -> std::result::Result<Box<dyn Reconstruction>, String> {
        match self {
            EncodedMatrix::Quantized { packed, .. } => Ok(Box::new(packed.unpack()?)),
            EncodedMatrix::LowRank { rows, cols, u, v, sigma, .. } => {
                let r = sigma.len();
                if u.len() != rows * r || v.len() != cols * r {
                    return Err(format!("low-rank factors have {} and {} values where {} and {} are expected", u.len(), v.len(), rows * r, cols * r));
                }
                let u = Mat::<f32>::from_fn(*rows, r, |i, j| u[j * rows + i].to_f32());
                let v = Mat::<f32>::from_fn(*cols, r, |i, j| v[j * cols + i].to_f32());
                Ok(Box::new(Factors { u, v, sigma: sigma.clone() }))
            }
            EncodedMatrix::BitDelta(signs) => Ok(Box::new(signs.clone())),
        }
    }

    /// Stored triplets per width (f16 factors count as width 16; sign bits as width 1 with rank 0).
    pub fn width_counts(&self) -> std::collections::BTreeMap<u8, usize> {
        let mut counts = std::collections::BTreeMap::new();
        match self {
            EncodedMatrix::Quantized { packed, .. } => packed.widths.iter().for_each(|&w| *counts.entry(w).or_default() += 1),
            EncodedMatrix::LowRank { sigma, .. } => { counts.insert(16, sigma.len()); }
            EncodedMatrix::BitDelta(_) => {}
        }
        counts
    }

    /// Stored triplets, or `None` for methods without a rank.
    pub fn kept_rank(&self) -> Option<usize> {
        match self {
            EncodedMatrix::Quantized { packed, .. } => Some(packed.widths.len()),
            EncodedMatrix::LowRank { sigma, .. } => Some(sigma.len()),
            EncodedMatrix::BitDelta(_) => None,
        }
    }

    /// Singular values of the candidate triplets and the width each got, when the method has them.
    pub fn spectrum_and_allocation(&self) -> (Vec<f32>, Vec<u8>) {
        match self {
            EncodedMatrix::Quantized { spectrum, allocation, .. } => (spectrum.clone(), allocation.clone()),
            EncodedMatrix::LowRank { spectrum, sigma, .. } => {
                let allocation = (0..spectrum.len()).map(|i| if i < sigma.len() { 16 } else { 0 }).collect();
                (spectrum.clone(), allocation)
            }
            EncodedMatrix::BitDelta(_) => (Vec::new(), Vec::new()),
        }
    }

    /// Code bits, the figure papers quote as bits per parameter.
    pub fn code_bits(&self) -> u64 {
        match self {
            EncodedMatrix::Quantized { packed, .. } => packed.widths.iter().map(|&w| w as u64 * (packed.rows + packed.cols) as u64).sum(),
            EncodedMatrix::LowRank { rows, cols, sigma, .. } => 16 * (rows + cols) as u64 * sigma.len() as u64,
            EncodedMatrix::BitDelta(signs) => signs.kept_rows.len() as u64 * signs.cols as u64,
        }
    }
}
