//! Stage 5: the cost table of a matrix, `c[i, b]` for every kept triplet and width.
//!
//! `c[i, b] = σ_i² · (‖v_i − Q_b(v_i)‖² + ‖u_i − Q_b(u_i)‖²)` and `c[i, 0] = σ_i²`:
//! the error that quantizing triplet `i` at width `b` adds to the
//! reconstruction when the input covariance is the identity. Each entry is
//! computed in f32 with the quantizer's fixed summation order, then widened to
//! f64 for the allocator.

use crate::allocate::CostTable;
use crate::budget::triplet_cost_bits;
use crate::quant::squared_error;
use crate::svd::Triplets;

/// Builds the cost table of `triplets` for an `[m, n]` matrix over `widths`.
pub fn build_cost_table(triplets: &Triplets, widths: &[u8]) -> CostTable {
    let (m, n) = (triplets.u.nrows(), triplets.v.nrows());
    let rows: Vec<Vec<f64>> = map_triplets(triplets.sigma.len(), |i| {
        let (u, v) = (triplets.u.col_as_slice(i), triplets.v.col_as_slice(i));
        let sigma_squared = triplets.sigma[i] * triplets.sigma[i];
        widths.iter().map(|&w| {
            if w == 0 {
                sigma_squared as f64
            } else {
                (sigma_squared * (squared_error(v, w) + squared_error(u, w))) as f64
            }
        }).collect()
    });
    CostTable {
        widths: widths.to_vec(),
        cost_bits: widths.iter().map(|&w| triplet_cost_bits(m, n, w)).collect(),
        error: rows.into_iter().flatten().collect(),
    }
}

/// The first `rank` rows of `table`.
pub fn truncate(table: &CostTable, rank: usize) -> CostTable {
    let rank = rank.min(table.error.len() / table.widths.len().max(1));
    CostTable { widths: table.widths.clone(), cost_bits: table.cost_bits.clone(), error: table.error[..rank * table.widths.len()].to_vec() }
}

/// Maps `f` over `0..count`, on all cores natively.
fn map_triplets<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..count).map(f).collect()
    }
}
