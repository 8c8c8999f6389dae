//! ADAMIX for one matrix: SVD, cost table, allocation, quantization of V,
//! reconstruction target correction, quantization of U with error feedback.
//!
//! Data-free form: the input covariance is the identity, so the error of a
//! triplet is measured in the Frobenius norm of the delta.
//!
//! The cost table comes from a [`CostTableBuilder`], which uses the GPU when
//! the run has one. Every other step runs on the CPU.
//!
//! The squared error `‖ΔW − Δ̂‖²` comes from the factors, at `m·k²/2` work
//! instead of the `m·n·k` of rebuilding `Δ̂`, unless the error is too small
//! for that to be exact enough (see [`factor_squared_error`]).


use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use super::EncodedMatrix;
use crate::allocate::{allocate, Allocation, CostTable};
use crate::cost::CostTableBuilder;
use crate::error::{Error, Result};
use crate::gpu::block_on;
use crate::packed::PackedMatrix;
use crate::quant::{dequantize_into, quantize, quantize_into, QuantizedVector, GROUP_SIZE};
use crate::svd::{top_triplets, SvdPolicy, Triplets};

/// Columns of a row group quantized between two matrix-product updates in the error feedback.
const FEEDBACK_BLOCK: usize = 32;

/// Ridge `λ` of the correction, relative to the mean diagonal of `Σ V̂ᵀ V̂ Σ`.
const RIDGE_RELATIVE: f64 = 1e-6;

/// Progress stages of one matrix, reported to the caller.
pub type StageCallback<'a> = &'a mut dyn FnMut(&str);

/// One matrix compressed with ADAMIX, with its squared error `‖ΔW − Δ̂‖²`.
pub struct AdamixMatrix {
    /// The stored form.
    pub encoded: EncodedMatrix,
    /// `‖ΔW − Δ̂‖²` of the stored factors, from [`factor_squared_error`].
    /// `None` means the caller must rebuild `Δ̂` to measure it.
    pub squared_error: Option<f64>,
}

/// Compresses one `[m, n]` delta (row-major) with ADAMIX within `budget_bits`, on the CPU.
#[allow(clippy::too_many_arguments)]
pub fn compress_matrix(tensor: &str, delta: &[f32], m: usize, n: usize, widths: &[u8], budget_bits: u64, policy: SvdPolicy, stage: StageCallback) -> Result<AdamixMatrix> {
    let delta = MatRef::from_row_major_slice(delta, m, n);
    block_on(compress_matrix_with(tensor, delta, squared_norm(delta), widths, budget_bits, policy, &mut CostTableBuilder::cpu(tensor), stage))
}

/// [`compress_matrix`], building the cost tables with `cost_tables`, which may use the GPU.
///
/// The function is `async` only because a GPU kernel is: in the browser the
/// worker awaits WebGPU here. Every step but the cost table runs on the CPU
/// as it is reached, so with a CPU builder the future is ready at its first poll.
#[allow(clippy::too_many_arguments)]
pub async fn compress_matrix_with(tensor: &str, delta: MatRef<'_, f32>, delta_norm_squared: f64, widths: &[u8], budget_bits: u64, policy: SvdPolicy, cost_tables: &mut CostTableBuilder<'_>, stage: StageCallback<'_>) -> Result<AdamixMatrix> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let r_max = crate::budget::max_rank(m, n, widths, budget_bits);
    let mut candidates = initial_candidates(m, n, widths, budget_bits, r_max, policy);
    loop {
        stage("svd");
        let triplets = top_triplets(delta, candidates, policy, tensor)?;

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
            return encode_allocated(tensor, delta, delta_norm_squared, &triplets, allocation.width_of, stage);
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
pub fn encode_with_table(tensor: &str, delta: MatRef<'_, f32>, delta_norm_squared: f64, triplets: &Triplets, table: &CostTable, budget_bits: u64, stage: StageCallback) -> Result<AdamixMatrix> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let r_max = crate::budget::max_rank(m, n, &table.widths, budget_bits).min(triplets.sigma.len());
    let table = crate::cost::truncate(table, r_max);

    stage("allocate");
    let Allocation { width_of, .. } = allocate(&table, budget_bits, None)
        .map_err(|e| Error::Numerical { tensor: tensor.into(), message: format!("bit allocation failed: {e}") })?;
    encode_allocated(tensor, delta, delta_norm_squared, triplets, width_of, stage)
}

/// Quantizes V, corrects and quantizes U, packs and measures, for a given allocation over the leading triplets.
fn encode_allocated(tensor: &str, delta: MatRef<'_, f32>, delta_norm_squared: f64, triplets: &Triplets, width_of: Vec<u8>, stage: StageCallback) -> Result<AdamixMatrix> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let r_max = width_of.len();
    stage("quantize");
    let kept: Vec<usize> = (0..width_of.len()).filter(|&i| width_of[i] > 0).collect();
    let kept_widths: Vec<u8> = kept.iter().map(|&i| width_of[i]).collect();
    let sigma: Vec<f32> = kept.iter().map(|&i| triplets.sigma[i]).collect();
    let (v_parts, v_hat) = quantize_columns(&triplets.v, &kept, &kept_widths);
    let right = RightFactor::new(tensor, &v_parts, &v_hat, &sigma)?;
    let whitened = whitened_target(delta, &right);
    let feedback = quantize_with_feedback(&whitened, &right, &kept_widths);

    stage("measure");
    let squared_error = factor_squared_error(delta_norm_squared, &feedback, &right);
    let encoded = EncodedMatrix::Quantized {
        packed: PackedMatrix::pack(m, n, sigma, &feedback.parts, &v_parts),
        allocation: width_of,
        spectrum: triplets.sigma[..r_max].to_vec(),
    };
    Ok(AdamixMatrix { encoded, squared_error })
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

/// The quantized right factor `B = V̂ Σ` with the Hessian `H_U = Bᵀ B + λI` of the left factor's least squares.
pub struct RightFactor {
    /// `B = V̂ Σ`, `[n, k]`.
    pub b: Mat<f32>,
    /// The ridge `λ`: [`RIDGE_RELATIVE`] of the mean diagonal of `Bᵀ B`.
    pub ridge: f64,
    /// `L`, the lower Cholesky factor of `H_U⁻¹ = L Lᵀ`, computed in f64 and rounded.
    pub inverse_factor: Mat<f32>,
}

/// Returns the lower Cholesky factor `L` of `(G + λI)⁻¹ = L Lᵀ` from the lower half of `G`, or `None` when `G + λI` is not positive definite.
///
/// With `J` the reversal of rows and columns and `J (G + λI) J = M Mᵀ`
/// (lower Cholesky), `L = J M⁻ᵀ J`: one Cholesky factorization and one
/// triangular inverse, in f64, instead of an explicit inverse.
fn lower_factor_of_inverse(gram: &Mat<f64>, ridge: f64) -> Option<Mat<f32>> {
    let k = gram.nrows();
    let last = k.saturating_sub(1);
    let reversed = Mat::<f64>::from_fn(k, k, |i, j| {
        let (a, b) = (last - i, last - j);
        let value = if a >= b { gram[(a, b)] } else { gram[(b, a)] };
        value + if i == j { ridge } else { 0.0 }
    });
    let factor = reversed.llt(Side::Lower).ok()?;
    let mut inverse = Mat::<f64>::zeros(k, k);
    faer::linalg::triangular_inverse::invert_lower_triangular(inverse.as_mut(), factor.L(), Par::Seq);
    Some(Mat::<f32>::from_fn(k, k, |i, j| if i >= j { inverse[(last - j, last - i)] as f32 } else { 0.0 }))
}

impl RightFactor {
    /// Computes `B`, the ridge and the Cholesky factor of `H_U⁻¹` from the quantized `V̂` (`v_parts`, dequantized `v_hat`) and `σ`.
    ///
    /// `Bᵀ B` is summed exactly from the codes of `V̂` (see [`exact_gram`]).
    pub fn new(tensor: &str, v_parts: &[QuantizedVector], v_hat: &Mat<f32>, sigma: &[f32]) -> Result<RightFactor> {
        let k = sigma.len();
        let b = Mat::<f32>::from_fn(v_hat.nrows(), k, |r, j| v_hat[(r, j)] * sigma[j]);
        let mut gram = exact_gram(v_parts);
        for j in 0..k {
            for i in j..k {
                gram[(i, j)] *= sigma[i] as f64 * sigma[j] as f64;
            }
        }
        let mean_diagonal = (0..k).map(|j| gram[(j, j)]).sum::<f64>() / k.max(1) as f64;
        let ridge = RIDGE_RELATIVE * mean_diagonal;
        let inverse_factor = lower_factor_of_inverse(&gram, ridge)
            .ok_or_else(|| Error::Numerical { tensor: tensor.into(), message: "Σ V̂ᵀ V̂ Σ is not positive definite; the delta may be degenerate".into() })?;
        Ok(RightFactor { b, ridge, inverse_factor })
    }

    fn rank(&self) -> usize {
        self.b.ncols()
    }
}

/// Returns `Y = ΔW B L`, shape `[m, k]`, as one product of `ΔW` with `B L`.
///
/// The reconstruction target correction is `U* = ΔW B H_U⁻¹ = Y Lᵀ`: the
/// least-squares left factor for the full delta given the quantized right
/// factor, which also absorbs part of the dropped tail. The error feedback
/// rebuilds each column of `U*` from `Y` when it reaches it, so `U*` is
/// never formed. `B L` costs `n·k²/2`, so `Y` costs one `m·n·k` product,
/// no more than `ΔW B` alone.
pub fn whitened_target(delta: MatRef<'_, f32>, right: &RightFactor) -> Mat<f32> {
    let mut whitening = Mat::<f32>::zeros(right.b.nrows(), right.rank());
    triangular::matmul(&mut whitening, BlockStructure::Rectangular, Accum::Replace, &right.b, BlockStructure::Rectangular,
        &right.inverse_factor, BlockStructure::TriangularLower, 1.0, Par::Seq);
    delta * whitening
}

/// Smallest `‖ΔW − Δ̂‖² / ‖ΔW‖²` that [`factor_squared_error`] returns.
///
/// The formula subtracts `‖Y‖²`, a term of the size of `‖ΔW‖²` that carries
/// the rounding of an f32 product, an estimated 1e-7 of it. Above 0.01 (a
/// relative error of 0.1) that moves the relative error by less than 1e-6.
const FACTOR_ERROR_MIN_SHARE: f64 = 0.01;

/// Returns `‖ΔW − Û Bᵀ‖²` from sums the error feedback collected: `‖ΔW‖² − ‖Y‖² + ‖E‖² − λ‖Û‖²`.
///
/// With `H = Bᵀ B + λI`, `U* = ΔW B H⁻¹` and `D = U* − Û`, expanding the
/// square gives `‖ΔW‖² − tr(U* H U*ᵀ) + tr(D H Dᵀ) − λ‖Û‖²`. The first trace
/// is `‖ΔW B L‖² = ‖Y‖²`. GPTQ's feedback makes `D = E R` with `R = Lᵀ` and
/// `E` the scaled errors `(x − q) / R[j, j]`, and `R H Rᵀ = I`, so the second
/// trace is `‖E‖²` (the loss GPTQ accumulates). No `m·k²` product is needed.
///
/// `L` is computed in f64 and rounded to f32, so `R H Rᵀ` is the identity to
/// the rounding of `L`. On the demo pair from 1/32 to 1/4 the relative errors
/// from this formula agree with `adamix verify`, which rebuilds `Δ̂`, within
/// 1.1e-7 (the formula `‖ΔW‖² − 2⟨Û, ΔW B⟩ + ⟨Ûᵀ Û, Bᵀ B⟩` with exact Gram
/// matrices, `m·k²/2` work, agreed within 1.6e-7).
///
/// NOTE: on synthetic matrices of 16 rows and 2048 to 8192 columns with steep
/// spectra plus noise (relative errors 0.11 to 0.2), this formula was off by
/// up to 9.2e-7 where the Gram formula was off by 3e-8. The rounding of `L`,
/// which an ill-conditioned `H` amplifies, is the likely cause (not proven). Returns `None` when the error is below
/// [`FACTOR_ERROR_MIN_SHARE`] of `‖ΔW‖²`, where rounding would show, so that
/// the caller rebuilds `Δ̂`.
pub fn factor_squared_error(delta_norm_squared: f64, feedback: &Feedback, right: &RightFactor) -> Option<f64> {
    if right.rank() == 0 {
        return Some(delta_norm_squared);
    }
    let squared = delta_norm_squared - feedback.target_norm_squared + feedback.scaled_error_squared - right.ridge * feedback.estimate_norm_squared;
    (squared >= FACTOR_ERROR_MIN_SHARE * delta_norm_squared).then_some(squared)
}

/// Returns the lower half of `X̂ᵀ X̂` in f64, summed exactly from the codes of the quantized columns `parts` of `X̂`.
///
/// Within a quantizer group every entry of column `i` is `a_i + s_i q_i`
/// (stored minimum, scale and integer code), so a group adds
/// `len a_i a_j + a_i s_j Σq_j + s_i a_j Σq_i + s_i s_j Σ q_i q_j` to
/// `(X̂ᵀ X̂)_ij`. The code products `Σ q_i q_j` are integers below 2²⁴, so an
/// f32 matrix product sums them exactly. The rest runs in f64, at `k²/2`
/// work per group.
///
/// Summing `Bᵀ B` as an f64 matrix product instead took 7% of a budget
/// explorer's solve in WebAssembly.
fn exact_gram(parts: &[QuantizedVector]) -> Mat<f64> {
    let k = parts.len();
    let mut gram = Mat::<f64>::zeros(k, k);
    let Some(len) = parts.first().map(|part| part.codes.len()) else { return gram };
    let mut codes = Mat::<f32>::zeros(GROUP_SIZE, k);
    let mut code_products = Mat::<f32>::zeros(k, k);
    for (g, start) in (0..len).step_by(GROUP_SIZE).enumerate() {
        let rows = start..(start + GROUP_SIZE).min(len);
        for (j, part) in parts.iter().enumerate() {
            for (slot, &q) in codes.col_as_slice_mut(j).iter_mut().zip(&part.codes[rows.clone()]) {
                *slot = q as f32;
            }
        }
        let group_codes = codes.as_ref().subrows(0, rows.len());
        triangular::matmul(&mut code_products, BlockStructure::TriangularLower, Accum::Replace, group_codes.transpose(),
            BlockStructure::Rectangular, group_codes, BlockStructure::Rectangular, 1.0, Par::Seq);
        GroupTerms::new(parts, g, group_codes).add_to(rows.len() as f64, &code_products, &mut gram);
    }
    gram
}

/// The stored minimums `a_i` and scales `s_i` of one group of every column, with `s_i Σq_i`.
struct GroupTerms {
    mins: Vec<f64>,
    scales: Vec<f64>,
    scaled_code_sums: Vec<f64>,
}

impl GroupTerms {
    /// Collects group `group` of every column in `parts`, whose codes as f32 are the columns of `codes`.
    fn new(parts: &[QuantizedVector], group: usize, codes: MatRef<'_, f32>) -> GroupTerms {
        let mins = parts.iter().map(|part| part.mins[group].to_f64()).collect();
        let scales: Vec<f64> = parts.iter().map(|part| part.scales[group].to_f64()).collect();
        let scaled_code_sums = scales.iter().zip(codes.col_iter())
            .map(|(&scale, column)| scale * column.iter().map(|&q| q as f64).sum::<f64>())
            .collect();
        GroupTerms { mins, scales, scaled_code_sums }
    }

    /// Adds this group's share of `X̂ᵀ X̂` to the lower half of `gram`, from the lower half of the code products.
    ///
    /// `X_ij = count a_i a_j + a_i s_j Σq_j + s_i a_j Σq_i + s_i s_j Σ q_i q_j`.
    fn add_to(&self, count: f64, code_products: &Mat<f32>, gram: &mut Mat<f64>) {
        for j in 0..self.mins.len() {
            let (min_j, scale_j, sum_j) = (self.mins[j], self.scales[j], self.scaled_code_sums[j]);
            let with_min_i = count * min_j + sum_j;
            let terms = self.mins[j..].iter().zip(&self.scales[j..]).zip(&self.scaled_code_sums[j..])
                .zip(&code_products.col_as_slice(j)[j..]);
            for (slot, (((&min_i, &scale_i), &sum_i), &products)) in gram.col_as_slice_mut(j)[j..].iter_mut().zip(terms) {
                *slot += min_i * with_min_i + sum_i * min_j + scale_i * scale_j * products as f64;
            }
        }
    }
}

/// Codes below 2⁸ in groups of [`GROUP_SIZE`]: every sum of code products is an integer that f32 represents exactly.
const _: () = assert!(GROUP_SIZE * 255 * 255 < 1 << 24);

/// Returns `‖a‖²` summed in f64, in the order the values lie in memory.
fn squared_norm(a: MatRef<'_, f32>) -> f64 {
    let a = if a.row_stride().unsigned_abs() < a.col_stride().unsigned_abs() { a } else { a.transpose() };
    (0..a.ncols()).map(|j| a.col(j).iter().map(|&x| x as f64 * x as f64).sum::<f64>()).sum()
}

/// The quantized left factor `Û` from the error feedback, with the sums that measure its error.
pub struct Feedback {
    /// The quantized columns of `Û`.
    pub parts: Vec<QuantizedVector>,
    /// `‖Y‖²`, the squared norm of the whitened target.
    pub target_norm_squared: f64,
    /// `‖E‖²`, the squared norm of the scaled errors `(x − q) / R[j, j]`.
    pub scaled_error_squared: f64,
    /// `‖Û‖²`.
    pub estimate_norm_squared: f64,
}

/// Quantizes the columns of `U* = Y Lᵀ` in order with GPTQ-style error feedback under `H_U`.
///
/// GPTQ quantizes column `j` and subtracts its error divided by `R[j, j]`
/// from the later columns through row `j` of `R = Lᵀ`, the upper Cholesky
/// factor of `H_U⁻¹`. With `a_i = Y_i − e_i` (`e_i` the scaled error of
/// column `i`), the column that GPTQ quantizes at step `j` is
/// `Σ_{i<j} a_i R[i, j] + Y_j R[j, j]`, so the feedback accumulates the `a_i`
/// and `U*` is never formed.
///
/// The feedback never mixes rows and a quantizer group is [`GROUP_SIZE`]
/// rows of a column, so the rows are processed one group at a time, and
/// only a group's `[GROUP_SIZE, k]` blocks are read and written while its
/// columns are quantized. Within a group, updates beyond the current
/// [`FEEDBACK_BLOCK`] columns are applied once per block as a matrix product.
pub fn quantize_with_feedback(whitened: &Mat<f32>, right: &RightFactor, widths: &[u8]) -> Feedback {
    let (m, k) = (whitened.nrows(), widths.len());
    let parts = widths.iter().map(|&width| QuantizedVector::with_capacity(width, m)).collect();
    let mut feedback = Feedback { parts, target_norm_squared: 0.0, scaled_error_squared: 0.0, estimate_norm_squared: 0.0 };
    let lower = right.inverse_factor.as_ref();
    let (mut target, mut columns) = (vec![0.0f32; GROUP_SIZE * k], vec![0.0f32; GROUP_SIZE * k]);
    for first_row in (0..m).step_by(GROUP_SIZE) {
        let rows = (first_row + GROUP_SIZE).min(m) - first_row;
        let target = &mut target[..rows * k];
        let columns = &mut columns[..rows * k];
        for j in 0..k {
            let source = &whitened.col_as_slice(j)[first_row..first_row + rows];
            target[j * rows..(j + 1) * rows].copy_from_slice(source);
            for (x, &y) in columns[j * rows..(j + 1) * rows].iter_mut().zip(source) {
                *x = y * lower[(j, j)];
            }
            feedback.target_norm_squared += source.iter().map(|&y| y as f64 * y as f64).sum::<f64>();
        }
        RowGroup { target, columns, rows }.quantize(lower, &mut feedback);
    }
    feedback
}

/// One row group of the error feedback: its rows of `Y` and the columns of `U*` as GPTQ updates them.
struct RowGroup<'a> {
    /// The group's rows of `Y`, column-major.
    target: &'a [f32],
    /// The group's rows of the columns being quantized, column-major.
    /// Column `l` starts as `Y_l R[l, l]` and gains `a_i R[i, l]` from each earlier column `i`.
    columns: &'a mut [f32],
    /// Number of rows in the group.
    rows: usize,
}

impl RowGroup<'_> {
    /// Quantizes every column in order, appending column `j`'s codes to `feedback.parts[j]` and adding to its sums.
    fn quantize(&mut self, lower: MatRef<'_, f32>, feedback: &mut Feedback) {
        let (rows, k) = (self.rows, feedback.parts.len());
        let mut steps = Mat::<f32>::zeros(rows, FEEDBACK_BLOCK);
        let mut dequantized = vec![0.0f32; rows];
        for start in (0..k).step_by(FEEDBACK_BLOCK) {
            let end = (start + FEEDBACK_BLOCK).min(k);
            for j in start..end {
                let (done, later) = self.columns.split_at_mut((j + 1) * rows);
                let column = &done[j * rows..];

                // 1. Quantize column j as it is after the feedback of the earlier columns.
                let part = &mut feedback.parts[j];
                let (first_code, group) = (part.codes.len(), part.scales.len());
                quantize_into(column, part);
                dequantize_into(&part.codes[first_code..], &part.scales[group..], &part.mins[group..], &mut dequantized);

                // 2. Its step a_j = Y_j − e_j, spread over the rest of the block through row j of R.
                let inverse_diagonal = 1.0 / lower[(j, j)];
                let step = steps.col_as_slice_mut(j - start);
                let target = &self.target[j * rows..(j + 1) * rows];
                // The sums run in f64: an f32 sum of 128 squares is off by an estimated 7e-7 of itself,
                // and the error formula subtracts terms of the size of ‖ΔW‖².
                let (mut error_squared, mut estimate_squared) = (0.0f64, 0.0f64);
                for (((a, &x), &q), &y) in step.iter_mut().zip(column).zip(&dequantized).zip(target) {
                    let scaled_error = (x - q) * inverse_diagonal;
                    *a = y - scaled_error;
                    error_squared += scaled_error as f64 * scaled_error as f64;
                    estimate_squared += q as f64 * q as f64;
                }
                feedback.scaled_error_squared += error_squared;
                feedback.estimate_norm_squared += estimate_squared;
                for (offset, later_column) in later[..(end - j - 1) * rows].chunks_exact_mut(rows).enumerate() {
                    let weight = lower[(j + 1 + offset, j)];
                    for (x, &a) in later_column.iter_mut().zip(step.iter()) {
                        *x += a * weight;
                    }
                }
            }
            // 3. The block's steps spread over all later columns in one matrix product.
            if end < k {
                let tail = MatMut::from_column_major_slice_mut(&mut self.columns[end * rows..], rows, k - end);
                let coupling = lower.submatrix(end, start, k - end, end - start).transpose();
                matmul::matmul(tail, Accum::Add, steps.as_ref().subcols(0, end - start), coupling, 1.0, Par::Seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    use super::*;
    use crate::budget::WIDTHS;
    use crate::methods::squared_error;

    /// Returns an `[m, n]` delta with a decaying spectrum plus noise, row-major.
    fn decaying_delta(m: usize, n: usize, seed: u64) -> Vec<f32> {
        delta_with_decay(m, n, seed, 1.2, 0.05)
    }

    /// Returns an `[m, n]` delta whose triplet `t` has weight `(t + 1)^-decay`, plus Gaussian noise of deviation `noise_level`, row-major.
    fn delta_with_decay(m: usize, n: usize, seed: u64, decay: f32, noise_level: f32) -> Vec<f32> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut draw = |count: usize| -> Vec<f32> { (0..count).map(|_| rng.sample::<f32, _>(StandardNormal)).collect() };
        let rank = m.min(n) / 2;
        let (left, right, noise) = (draw(m * rank), draw(rank * n), draw(m * n));
        let mut delta = vec![0.0f32; m * n];
        for (index, value) in delta.iter_mut().enumerate() {
            let (row, col) = (index / n, index % n);
            let low_rank: f32 = (0..rank).map(|t| left[row * rank + t] * right[t * n + col] * (t as f32 + 1.0).powf(-decay)).sum();
            *value = 1e-3 * (low_rank + noise_level * noise[index]);
        }
        delta
    }

    #[test]
    fn factor_error_matches_rebuilt_delta() {
        // The last case keeps so much that its error is below FACTOR_ERROR_MIN_SHARE, so it gets no factor error.
        // With a decay of 3, σ falls by about 10⁴ over the first 20 triplets, so `Σ V̂ᵀ V̂ Σ` is ill-conditioned.
        let cases = [(96, 160, 32, 1, 1.2, 0.05, true), (300, 64, 48, 2, 1.2, 0.05, true), (512, 96, 64, 5, 1.2, 0.05, true),
            (600, 200, 16, 7, 3.0, 0.3, true), (256, 256, 8, 8, 3.0, 0.3, true), (128, 128, 3, 3, 1.2, 0.05, false)];
        for (m, n, divisor, seed, decay, noise_level, answers) in cases {
            let delta = delta_with_decay(m, n, seed, decay, noise_level);
            let budget_bits = (16 * m * n / divisor) as u64;
            let compressed = compress_matrix("w", &delta, m, n, &WIDTHS, budget_bits, SvdPolicy::Auto, &mut |_| {}).expect("compress");
            let rebuilt = squared_error(compressed.encoded.decode().expect("decode").as_ref(), &delta);
            let norm: f64 = delta.iter().map(|&x| (x as f64).powi(2)).sum();
            let from_rebuilt = (rebuilt / norm).sqrt();
            assert_eq!(compressed.squared_error.is_some(), answers, "[{m}, {n}] at 1/{divisor}: relative error {from_rebuilt}");
            if let Some(from_factors) = compressed.squared_error.map(|squared| (squared / norm).sqrt()) {
                assert!((from_factors - from_rebuilt).abs() <= 1e-6,
                    "[{m}, {n}] at 1/{divisor}: relative error {from_factors} from the factors, {from_rebuilt} from the rebuilt delta");
            }
        }
    }

    /// Plain GPTQ on `U* = ΔW B H_U⁻¹`: each column in turn, its scaled error subtracted from every later column.
    fn plain_feedback(projected: &Mat<f32>, right: &RightFactor, widths: &[u8]) -> Vec<QuantizedVector> {
        let lower = &right.inverse_factor;
        let mut u_star = projected * (lower * lower.transpose());
        let mut parts = Vec::new();
        for (j, &width) in widths.iter().enumerate() {
            let part = quantize(u_star.col_as_slice(j), width);
            let mut dequantized = vec![0.0f32; u_star.nrows()];
            dequantize_into(&part.codes, &part.scales, &part.mins, &mut dequantized);
            let error: Vec<f32> = u_star.col_as_slice(j).iter().zip(&dequantized).map(|(&x, &q)| (x - q) / lower[(j, j)]).collect();
            for later in j + 1..widths.len() {
                let weight = lower[(later, j)];
                for (x, &e) in u_star.col_as_slice_mut(later).iter_mut().zip(&error) {
                    *x -= e * weight;
                }
            }
            parts.push(part);
        }
        parts
    }

    #[test]
    fn feedback_matches_plain_gptq() {
        let (m, n, k) = (300, 80, 70);
        let delta = decaying_delta(m, n, 6);
        let delta = MatRef::from_row_major_slice(&delta, m, n);
        let svd = delta.thin_svd().expect("svd");
        let kept: Vec<usize> = (0..k).collect();
        let widths: Vec<u8> = (0..k).map(|i| [8, 4, 3, 2][i * 4 / k]).collect();
        let (v_parts, v_hat) = quantize_columns(&svd.V().to_owned(), &kept, &widths);
        let sigma: Vec<f32> = (0..k).map(|i| svd.S()[i]).collect();
        let right = RightFactor::new("w", &v_parts, &v_hat, &sigma).expect("right factor");
        let projected = delta * &right.b;

        let parts = quantize_with_feedback(&whitened_target(delta, &right), &right, &widths).parts;
        let reference = plain_feedback(&projected, &right, &widths);
        let codes = m * k;
        let differing: usize = parts.iter().zip(&reference).map(|(a, b)| a.codes.iter().zip(&b.codes).filter(|(x, y)| x != y).count()).sum();
        assert!(differing * 1000 <= codes, "{differing} of {codes} codes differ from plain GPTQ");
        for (part, plain) in parts.iter().zip(&reference) {
            assert_eq!(part.scales.len(), plain.scales.len());
        }
    }

    #[test]
    fn factor_error_without_triplets() {
        let delta = decaying_delta(40, 30, 4);
        let compressed = compress_matrix("w", &delta, 40, 30, &WIDTHS, 8, SvdPolicy::Auto, &mut |_| {}).expect("compress");
        let norm: f64 = delta.iter().map(|&x| (x as f64).powi(2)).sum();
        assert_eq!(compressed.encoded.kept_rank(), Some(0));
        let squared = compressed.squared_error.expect("nothing kept leaves the whole delta");
        assert!((squared - norm).abs() <= 1e-12 * norm, "{squared} against {norm}");
    }
}
