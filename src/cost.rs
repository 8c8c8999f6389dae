//! Stage 5: the cost table of a matrix, `c[i, b]` for every kept triplet and width.
//!
//! `c[i, b] = σ_i² · (‖v_i − Q_b(v_i)‖² + ‖u_i − Q_b(u_i)‖²)` and `c[i, 0] = σ_i²`:
//! the error that quantizing triplet `i` at width `b` adds to the
//! reconstruction when the input covariance is the identity. Each entry is
//! computed in f32 with the quantizer's fixed summation order, then widened to
//! f64 for the allocator.
//!
//! [`build_cost_table`] is the CPU reference. [`CostTableBuilder`] uses the
//! GPU kernel [`gpu::cost_table`] instead when the run has a GPU context. The
//! kernel reproduces every entry bit for bit, so the allocation, and with it
//! the output file, does not depend on where the table was built.

use crate::allocate::CostTable;
use crate::budget::triplet_cost_bits;
use crate::gpu::{self, GpuContext, GpuError};
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

/// Builds the cost tables of one tensor, on the GPU when a context is given.
///
/// When the GPU fails, the builder logs a warning that names the tensor, keeps
/// the error for the report and builds this table and every later one of the
/// tensor on the CPU. The table is never left empty or zero.
pub struct CostTableBuilder<'a> {
    tensor: &'a str,
    gpu: Option<&'a GpuContext>,
    gpu_error: Option<GpuError>,
    built_on_gpu: bool,
}

impl<'a> CostTableBuilder<'a> {
    /// Creates a builder for tensor `tensor` that uses `gpu` when it is `Some`, else the CPU.
    pub fn new(tensor: &'a str, gpu: Option<&'a GpuContext>) -> Self {
        CostTableBuilder { tensor, gpu, gpu_error: None, built_on_gpu: false }
    }

    /// Creates a builder that uses the CPU only.
    pub fn cpu(tensor: &'a str) -> Self {
        CostTableBuilder::new(tensor, None)
    }

    /// Builds the cost table of `triplets` over `widths`, on the GPU unless there is no context or it already failed for this tensor.
    ///
    /// Without a GPU context the future is ready at its first poll.
    pub async fn build(&mut self, triplets: &Triplets, widths: &[u8]) -> CostTable {
        if let (Some(ctx), None) = (self.gpu, &self.gpu_error) {
            match gpu::cost_table(ctx, triplets, widths).await {
                Ok(table) => {
                    self.built_on_gpu = true;
                    return table;
                }
                Err(error) => {
                    log::warn!("tensor '{}': the GPU cost table failed, so the CPU builds it: {error}", self.tensor);
                    self.gpu_error = Some(error);
                }
            }
        }
        build_cost_table(triplets, widths)
    }

    /// Returns the GPU error after which the builder switched to the CPU, if any.
    pub fn gpu_error(&self) -> Option<&GpuError> {
        self.gpu_error.as_ref()
    }

    /// Takes the GPU error after which the builder switched to the CPU, if any.
    pub fn into_gpu_error(self) -> Option<GpuError> {
        self.gpu_error
    }

    /// Returns whether the GPU built at least one table.
    pub fn built_on_gpu(&self) -> bool {
        self.built_on_gpu
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
