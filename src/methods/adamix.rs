//! ADAMIX for one matrix: SVD, cost table, allocation, quantization of V,
//! reconstruction target correction, quantization of U with error feedback.
//!
//! Data-free form: the input covariance is the identity, so the error of a
//! triplet is measured in the Frobenius norm of the delta.
//!
//! The cost table comes from a [`CostTableBuilder`], which uses the GPU when
//! the run has one. Every other step runs on the CPU.

use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::{Mat, MatRef, Side};

use super::EncodedMatrix;
use crate::allocate::{allocate, Allocation, CostTable};
use crate::cost::CostTableBuilder;
use crate::error::{Error, Result};
use crate::gpu::block_on;
use crate::packed::PackedMatrix;
use crate::quant::{dequantize_into, quantize, QuantizedVector};
use crate::svd::{top_triplets, SvdPolicy, Triplets};

/// Columns of `U*` quantized between two matrix-product updates in the error feedback.
const FEEDBACK_BLOCK: usize = 64;

/// Ridge `λ` of the correction, relative to the mean diagonal of `Σ V̂ᵀ V̂ Σ`.
const RIDGE_RELATIVE: f32 = 1e-6;

/// Progress stages of one matrix, reported to the caller.
pub type StageCallback<'a> = &'a mut dyn FnMut(&str);

/// Compresses one `[m, n]` delta (row-major) with ADAMIX within `budget_bits`, on the CPU.
#[allow(clippy::too_many_arguments)]
pub fn compress_matrix(tensor: &str, delta: &[f32], m: usize, n: usize, widths: &[u8], budget_bits: u64, policy: SvdPolicy, stage: StageCallback) -> Result<EncodedMatrix> {
    block_on(compress_matrix_with(tensor, delta, m, n, widths, budget_bits, policy, &mut CostTableBuilder::cpu(tensor), stage))
}

/// [`compress_matrix`], building the cost tables with `cost_tables`, which may use the GPU.
///
/// The function is `async` only because a GPU kernel is: in the browser the
/// worker awaits WebGPU here. Every step but the cost table runs on the CPU
/// as it is reached, so with a CPU builder the future is ready at its first poll.
#[allow(clippy::too_many_arguments)]
pub async fn compress_matrix_with(tensor: &str, delta: &[f32], m: usize, n: usize, widths: &[u8], budget_bits: u64, policy: SvdPolicy, cost_tables: &mut CostTableBuilder<'_>, stage: StageCallback<'_>) -> Result<EncodedMatrix> {
    let delta_ref = MatRef::from_row_major_slice(delta, m, n);
    let r_max = crate::budget::max_rank(m, n, widths, budget_bits);
    let mut candidates = initial_candidates(m, n, widths, budget_bits, r_max, policy);
    loop {
        stage("svd");
        let triplets = top_triplets(delta_ref, candidates, policy, tensor)?;

        stage("cost table");
        let table = cost_tables.build(&triplets, widths).await;

        // The candidates suffice when the allocation drops the tail of them:
        // smaller singular values are worth less per bit, so none beyond
        // would be kept. Otherwise retry with twice as many.
        stage("allocate");
        let allocation = allocate(&table, budget_bits, None)
            .map_err(|e| Error::Numerical { tensor: tensor.into(), message: format!("bit allocation failed: {e}") })?;
        let kept_end = allocation.width_of.iter().rposition(|&w| w > 0).map_or(0, |i| i + 1);
        if candidates >= r_max || (kept_end as f64) < TAIL_SHARE * candidates as f64 {
            return encode_allocated(tensor, delta_ref, &triplets, allocation.width_of, stage);
        }
        candidates = (2 * candidates).min(r_max);
    }
}

/// Share of the candidates below which the last kept triplet must lie for the candidate set to suffice.
const TAIL_SHARE: f64 = 0.9;

/// Returns the first number of candidate triplets: all of them for a full SVD, else as many as fit at 2 bits.
fn initial_candidates(m: usize, n: usize, widths: &[u8], budget_bits: u64, r_max: usize, policy: SvdPolicy) -> usize {
    let cheap_width = widths.iter().copied().find(|&w| w >= 2).unwrap_or(1);
    let guess = (budget_bits / crate::budget::triplet_cost_bits(m, n, cheap_width)) as usize;
    if policy == SvdPolicy::Full || m.min(n) <= crate::svd::FULL_SVD_MAX_SIDE {
        r_max
    } else {
        guess.clamp(1, r_max.max(1))
    }
}

/// Allocates widths from a cost table and quantizes. `triplets` and `table` may cover more triplets than fit.
///
/// This is the part that a new budget repeats; the SVD and the cost table
/// can be reused from an earlier run at a larger budget.
pub fn encode_with_table(tensor: &str, delta: MatRef<'_, f32>, triplets: &Triplets, table: &CostTable, budget_bits: u64, stage: StageCallback) -> Result<EncodedMatrix> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let r_max = crate::budget::max_rank(m, n, &table.widths, budget_bits).min(triplets.sigma.len());
    let table = crate::cost::truncate(table, r_max);

    stage("allocate");
    let Allocation { width_of, .. } = allocate(&table, budget_bits, None)
        .map_err(|e| Error::Numerical { tensor: tensor.into(), message: format!("bit allocation failed: {e}") })?;
    encode_allocated(tensor, delta, triplets, width_of, stage)
}

/// Quantizes V, corrects and quantizes U, and packs, for a given allocation over the leading triplets.
fn encode_allocated(tensor: &str, delta: MatRef<'_, f32>, triplets: &Triplets, width_of: Vec<u8>, stage: StageCallback) -> Result<EncodedMatrix> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let r_max = width_of.len();
    stage("quantize");
    let kept: Vec<usize> = (0..width_of.len()).filter(|&i| width_of[i] > 0).collect();
    let kept_widths: Vec<u8> = kept.iter().map(|&i| width_of[i]).collect();
    let sigma: Vec<f32> = kept.iter().map(|&i| triplets.sigma[i]).collect();
    let (v_parts, v_hat) = quantize_columns(&triplets.v, &kept, &kept_widths);
    let u_star = correct_left_factor(tensor, delta, &v_hat, &sigma)?;
    let u_parts = quantize_with_feedback(tensor, u_star, &v_hat, &sigma, &kept_widths)?;

    Ok(EncodedMatrix::Quantized {
        packed: PackedMatrix::pack(m, n, sigma, &u_parts, &v_parts),
        allocation: width_of,
        spectrum: triplets.sigma[..r_max].to_vec(),
    })
}

/// Quantizes the columns `kept` of `factors` at `widths`; returns the parts and the dequantized columns.
pub fn quantize_columns(factors: &Mat<f32>, kept: &[usize], widths: &[u8]) -> (Vec<QuantizedVector>, Mat<f32>) {
    let mut hat = Mat::<f32>::zeros(factors.nrows(), kept.len());
    let mut parts = Vec::with_capacity(kept.len());
    for (j, (&i, &width)) in kept.iter().zip(widths).enumerate() {
        let part = quantize(factors.col_as_slice(i), width);
        dequantize_into(&part.codes, &part.scales, &part.mins, hat.col_as_slice_mut(j));
        parts.push(part);
    }
    (parts, hat)
}

/// Computes `B = V̂ Σ` and the Gram matrix `H_U = Bᵀ B + λI`.
fn right_gram(v_hat: &Mat<f32>, sigma: &[f32]) -> (Mat<f32>, Mat<f32>) {
    let k = sigma.len();
    let b = Mat::<f32>::from_fn(v_hat.nrows(), k, |r, j| v_hat[(r, j)] * sigma[j]);
    let mut gram = b.transpose() * &b;
    let mean_diagonal = (0..k).map(|j| gram[(j, j)]).sum::<f32>() / k.max(1) as f32;
    for j in 0..k {
        gram[(j, j)] += RIDGE_RELATIVE * mean_diagonal;
    }
    (b, gram)
}

/// Reconstruction target correction: `U* = ΔW V̂ Σ (Σ V̂ᵀ V̂ Σ + λI)⁻¹`, shape `[m, k]`.
///
/// The least-squares left factor for the full delta given the quantized
/// right factor; it also absorbs part of the dropped tail.
pub fn correct_left_factor(tensor: &str, delta: MatRef<'_, f32>, v_hat: &Mat<f32>, sigma: &[f32]) -> Result<Mat<f32>> {
    if sigma.is_empty() {
        return Ok(Mat::zeros(delta.nrows(), 0));
    }
    let (b, gram) = right_gram(v_hat, sigma);
    let projected = delta * &b;
    let llt = gram.llt(Side::Lower).map_err(|e| Error::Numerical {
        tensor: tensor.into(), message: format!("Σ V̂ᵀ V̂ Σ is not positive definite ({e:?})") })?;
    let u_star_t = llt.solve(projected.transpose());
    Ok(u_star_t.transpose().to_owned())
}

/// Quantizes the columns of `u_star` in order with GPTQ-style error feedback under `H_U`.
///
/// After column `j` is quantized, its error divided by `R[j, j]` is
/// subtracted from the later columns through row `j` of `R`, the upper
/// Cholesky factor of `H_U⁻¹`. Updates to columns beyond the current block
/// are applied once per block as a matrix product.
pub fn quantize_with_feedback(tensor: &str, mut u_star: Mat<f32>, v_hat: &Mat<f32>, sigma: &[f32], widths: &[u8]) -> Result<Vec<QuantizedVector>> {
    let k = widths.len();
    if k == 0 {
        return Ok(Vec::new());
    }
    let numerical = |what: &str| Error::Numerical { tensor: tensor.into(), message: format!("{what} is not positive definite; the delta may be degenerate") };
    let (_, gram) = right_gram(v_hat, sigma);
    let inverse = gram.llt(Side::Lower).map_err(|_| numerical("Σ V̂ᵀ V̂ Σ"))?.inverse();
    let lower = inverse.llt(Side::Lower).map_err(|_| numerical("(Σ V̂ᵀ V̂ Σ)⁻¹"))?.L().to_owned();
    let r = |row: usize, col: usize| lower[(col, row)];

    let m = u_star.nrows();
    let mut parts = Vec::with_capacity(k);
    let mut dequantized = vec![0.0f32; m];
    for start in (0..k).step_by(FEEDBACK_BLOCK) {
        let end = (start + FEEDBACK_BLOCK).min(k);
        let mut block_error = Mat::<f32>::zeros(m, end - start);
        for j in start..end {
            // 1. Quantize column j as it is after earlier feedback.
            let part = quantize(u_star.col_as_slice(j), widths[j]);
            dequantize_into(&part.codes, &part.scales, &part.mins, &mut dequantized);

            // 2. Scaled error of this column.
            let diagonal = r(j, j);
            let column = u_star.col_as_slice(j);
            for row in 0..m {
                block_error[(row, j - start)] = (column[row] - dequantized[row]) / diagonal;
            }
            parts.push(part);

            // 3. Spread it over the rest of the block.
            for later in j + 1..end {
                let weight = r(j, later);
                let (error_column, target) = (block_error.col_as_slice(j - start), u_star.col_as_slice_mut(later));
                for row in 0..m {
                    target[row] -= error_column[row] * weight;
                }
            }
        }
        // 4. Spread the block's errors over all later columns at once.
        if end < k {
            let coupling = Mat::<f32>::from_fn(end - start, k - end, |a, b| r(start + a, end + b));
            let update = &block_error * &coupling;
            let mut tail = u_star.as_mut().subcols_mut(end, k - end);
            tail -= &update;
        }
    }
    Ok(parts)
}
