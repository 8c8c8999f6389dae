//! Low-rank baseline: the top `r` singular triplets with f16 factors.
//!
//! A triplet costs `16 · (m + n)` bits of factors plus its σ as f32, and `r`
//! is as large as the budget allows.

use faer::MatRef;
use half::f16;

use super::EncodedMatrix;
use crate::budget::SIGMA_BITS;
use crate::error::Result;
use crate::svd::{top_triplets, SvdPolicy};

/// Stored bits of one f16 triplet of an `[m, n]` matrix.
pub fn triplet_bits(m: usize, n: usize) -> u64 {
    16 * (m + n) as u64 + SIGMA_BITS
}

/// Keeps the top triplets of `delta` (`[m, n]`, row-major) in f16 within `budget_bits`.
pub fn compress_matrix(tensor: &str, delta: &[f32], m: usize, n: usize, budget_bits: u64, policy: SvdPolicy, stage: &mut dyn FnMut(&str)) -> Result<EncodedMatrix> {
    let rank = ((budget_bits / triplet_bits(m, n)) as usize).min(m.min(n));
    stage("svd");
    let triplets = top_triplets(MatRef::from_row_major_slice(delta, m, n), rank, policy, tensor)?;
    stage("quantize");
    let to_f16 = |column: &[f32]| column.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let u = (0..rank).flat_map(|i| to_f16(triplets.u.col_as_slice(i))).collect();
    let v = (0..rank).flat_map(|i| to_f16(triplets.v.col_as_slice(i))).collect();
    Ok(EncodedMatrix::LowRank { rows: m, cols: n, u, v, sigma: triplets.sigma.clone(), spectrum: triplets.sigma })
}
