//! Stage 4: the leading singular triplets of a delta, in f32.
//!
//! Only the top `r_max` triplets can ever be kept, so only those are
//! computed. When `r_max` is a large share of the smaller side, a full thin
//! SVD (faer) is as cheap and exact; otherwise a randomized range finder with
//! power iterations (Halko, Martinsson and Tropp, 2011, algorithm 4.4) gives
//! the leading subspace, and a thin SVD of the small projected matrix gives
//! the triplets.

use faer::{Mat, MatRef};
use rand::{rngs::SmallRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};

/// Power iterations of the randomized SVD.
pub const POWER_ITERATIONS: usize = 1;

/// Above this share of `min(m, n)` the full thin SVD is used instead of the randomized one.
const FULL_SVD_SHARE: f64 = 0.6;

/// Matrices whose smaller side is at most this get the full thin SVD whatever the rank.
///
/// A full SVD of such a matrix takes about a second or less, and it makes
/// the leading triplets independent of how many are requested, so results at
/// two budgets share the same factors.
pub const FULL_SVD_MAX_SIDE: usize = 1024;

/// The leading singular triplets `ΔW ≈ U diag(sigma) Vᵀ`.
pub struct Triplets {
    /// Singular values, descending.
    pub sigma: Vec<f32>,
    /// Left singular vectors, `[m, k]`, one column per triplet.
    pub u: Mat<f32>,
    /// Right singular vectors, `[n, k]`, one column per triplet.
    pub v: Mat<f32>,
}

/// The SVD algorithms a caller allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvdPolicy {
    /// Full SVD for small matrices or large ranks, randomized otherwise ([`choose_method`]).
    #[default]
    Auto,
    /// Always the full thin SVD, for reference runs.
    Full,
}

/// The SVD algorithm that computed a set of triplets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvdMethod {
    /// Full thin SVD, truncated.
    Full,
    /// Randomized range finder with this many columns (rank plus oversampling).
    Randomized(usize),
}

/// Chooses the algorithm for the top `k` triplets of an `[m, n]` matrix.
pub fn choose_method(m: usize, n: usize, k: usize) -> SvdMethod {
    let small_side = m.min(n);
    let columns = (k + k / 4 + 10).min(small_side);
    if small_side <= FULL_SVD_MAX_SIDE || columns as f64 >= FULL_SVD_SHARE * small_side as f64 {
        SvdMethod::Full
    } else {
        SvdMethod::Randomized(columns)
    }
}

/// Computes the top `k` singular triplets of `delta` (`[m, n]`).
pub fn top_triplets(delta: MatRef<'_, f32>, k: usize, policy: SvdPolicy, tensor: &str) -> Result<Triplets> {
    let k = k.min(delta.nrows().min(delta.ncols()));
    let method = match policy {
        SvdPolicy::Auto => choose_method(delta.nrows(), delta.ncols(), k),
        SvdPolicy::Full => SvdMethod::Full,
    };
    match method {
        SvdMethod::Full => full_svd(delta, k, tensor),
        SvdMethod::Randomized(columns) => randomized_svd(delta, k, columns, tensor),
    }
}

/// Full thin SVD, truncated to `k` triplets.
///
/// A matrix at least [`TALL_ASPECT`] times taller than wide (or wider than
/// tall) takes [`tall_svd`] instead. On [40000, 256] and [151936, 256] deltas
/// whose noise floor lies near 1e-4 · σ_1, faer 0.24's f32 `thin_svd` returned
/// wrong trailing singular values, some exactly 0, and so did an f32 QR first.
pub fn full_svd(delta: MatRef<'_, f32>, k: usize, tensor: &str) -> Result<Triplets> {
    let (m, n) = (delta.nrows(), delta.ncols());
    if n >= TALL_ASPECT * m {
        let transposed = full_svd(delta.transpose(), k, tensor)?;
        return Ok(Triplets { sigma: transposed.sigma, u: transposed.v, v: transposed.u });
    }
    if m >= TALL_ASPECT * n {
        return tall_svd(delta, k, tensor);
    }
    let svd = delta.thin_svd().map_err(|e| not_converged(tensor, e))?;
    let sigma: Vec<f32> = (0..k).map(|i| svd.S()[i]).collect();
    Ok(Triplets { sigma, u: svd.U().subcols(0, k).to_owned(), v: svd.V().subcols(0, k).to_owned() })
}

/// Aspect ratio from which [`full_svd`] takes [`tall_svd`].
pub const TALL_ASPECT: usize = 2;

/// Rows of `ΔW` widened to f64 at a time while [`tall_svd`] sums the Gram matrix.
const GRAM_BLOCK_ROWS: usize = 2048;

/// Computes the SVD of a tall `[m, n]` delta through its Gram matrix in f64.
///
/// `G = ΔWᵀ ΔW` is summed in f64 over blocks of rows, so it needs `n²` f64
/// and one block in memory besides the delta. Its eigenvectors are `V` and
/// the roots of its eigenvalues are `σ`, accurate for `σ_i` above about
/// `1e-7 · σ_1`. Then `U = ΔW V Σ⁻¹`, in f32.
fn tall_svd(delta: MatRef<'_, f32>, k: usize, tensor: &str) -> Result<Triplets> {
    let (m, n) = (delta.nrows(), delta.ncols());
    let mut gram = Mat::<f64>::zeros(n, n);
    for start in (0..m).step_by(GRAM_BLOCK_ROWS) {
        let rows = GRAM_BLOCK_ROWS.min(m - start);
        let block = Mat::<f64>::from_fn(rows, n, |i, j| delta[(start + i, j)] as f64);
        gram += block.transpose() * &block;
    }
    let eigen = gram.self_adjoint_eigen(faer::Side::Lower).map_err(|e| not_converged(tensor, e))?;
    let (values, vectors) = (eigen.S(), eigen.U());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));

    let sigma: Vec<f32> = order[..k].iter().map(|&j| values[j].max(0.0).sqrt() as f32).collect();
    let v = Mat::<f32>::from_fn(n, k, |i, j| vectors[(i, order[j])] as f32);
    let mut u = delta * &v;
    for (j, &s) in sigma.iter().enumerate() {
        let scale = if s > f32::MIN_POSITIVE { 1.0 / s } else { 0.0 };
        u.col_as_slice_mut(j).iter_mut().for_each(|x| *x *= scale);
    }
    Ok(Triplets { sigma, u, v })
}

fn not_converged(tensor: &str, error: impl std::fmt::Debug) -> Error {
    Error::Numerical { tensor: tensor.into(), message: format!("the SVD did not converge ({error:?})") }
}

/// Randomized SVD: range finder with `columns` samples and [`POWER_ITERATIONS`] power iterations.
pub fn randomized_svd(delta: MatRef<'_, f32>, k: usize, columns: usize, tensor: &str) -> Result<Triplets> {
    let n = delta.ncols();

    // 1. Sample the range: Q = orth(ΔW Ω) with a Gaussian Ω of shape [n, columns], fixed seed.
    let mut rng = SmallRng::seed_from_u64(0x5eed_0f_ad);
    let omega = Mat::<f32>::from_fn(n, columns, |_, _| StandardNormal.sample(&mut rng));
    let mut q = orthonormal_basis(&(delta * &omega));

    // 2. Power iterations, re-orthonormalizing each product to keep small directions.
    for _ in 0..POWER_ITERATIONS {
        let z = orthonormal_basis(&(delta.transpose() * &q));
        q = orthonormal_basis(&(delta * &z));
    }

    // 3. Project: B = Qᵀ ΔW, shape [columns, n], and take its SVD through B Bᵀ = W Λ Wᵀ.
    let b = q.transpose() * delta;
    let (w, sigma) = gram_eigen(&b, tensor)?;

    // 4. Lift back: U = Q W and V = Bᵀ W Λ^-½, for the leading k.
    let u = &q * w.subcols(0, k);
    let mut v = b.transpose() * w.subcols(0, k);
    for j in 0..k {
        let scale = if sigma[j] > f32::MIN_POSITIVE { 1.0 / sigma[j] } else { 0.0 };
        v.col_as_slice_mut(j).iter_mut().for_each(|x| *x *= scale);
    }
    Ok(Triplets { sigma: sigma[..k].to_vec(), u, v })
}

/// Eigenvectors `W` (columns, by descending eigenvalue) and singular values `√λ` of `B Bᵀ`.
///
/// The Gram matrix is formed with an f32 product and decomposed in f64. Its
/// squared condition number limits accuracy to singular values above about
/// `3e-4 · σ_1`, which carry less than 1e-7 of the energy.
fn gram_eigen(b: &Mat<f32>, tensor: &str) -> Result<(Mat<f32>, Vec<f32>)> {
    let gram = b * b.transpose();
    let l = gram.nrows();
    let gram64 = Mat::<f64>::from_fn(l, l, |i, j| 0.5 * (gram[(i, j)] as f64 + gram[(j, i)] as f64));
    let eigen = gram64.self_adjoint_eigen(faer::Side::Lower).map_err(|e| Error::Numerical { tensor: tensor.into(), message: format!("the eigendecomposition did not converge ({e:?})") })?;
    let values = eigen.S();
    let vectors = eigen.U();
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &c| values[c].total_cmp(&values[a]));
    let w = Mat::<f32>::from_fn(l, l, |i, j| vectors[(i, order[j])] as f32);
    let sigma = order.iter().map(|&j| values[j].max(0.0).sqrt() as f32).collect();
    Ok((w, sigma))
}

/// An orthonormal basis of the columns of `y`, by Cholesky QR with a Householder fallback.
///
/// Cholesky QR (`Yᵀ Y = L Lᵀ`, `Q = Y L⁻ᵀ`) runs on matrix products, several
/// times faster than Householder QR for tall matrices. It needs `Yᵀ Y` to be
/// positive definite, so a rank-deficient `y` takes the Householder path.
fn orthonormal_basis(y: &Mat<f32>) -> Mat<f32> {
    let gram = y.transpose() * y;
    let l = gram.nrows();
    let gram64 = Mat::<f64>::from_fn(l, l, |i, j| gram[(i, j)] as f64);
    let Ok(llt) = gram64.llt(faer::Side::Lower) else {
        return y.qr().compute_thin_Q();
    };
    let lower = Mat::<f32>::from_fn(l, l, |i, j| llt.L()[(i, j)] as f32);
    let mut q_t = y.transpose().to_owned();
    lower.solve_lower_triangular_in_place(&mut q_t);
    q_t.transpose().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a matrix with known singular values `s_i = (i + 1)^-0.7`, built from random orthonormal factors.
    fn long_tailed(m: usize, n: usize, seed: u64) -> (Mat<f32>, Vec<f32>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let r = m.min(n);
        let a = Mat::<f32>::from_fn(m, r, |_, _| StandardNormal.sample(&mut rng));
        let b = Mat::<f32>::from_fn(n, r, |_, _| StandardNormal.sample(&mut rng));
        let (qa, qb) = (orthonormal_basis(&a), orthonormal_basis(&b));
        let sigma: Vec<f32> = (0..r).map(|i| ((i + 1) as f32).powf(-0.7)).collect();
        let scaled = Mat::<f32>::from_fn(m, r, |i, j| qa[(i, j)] * sigma[j]);
        (&scaled * qb.transpose(), sigma)
    }

    #[test]
    fn full_svd_recovers_spectrum() {
        let (matrix, sigma) = long_tailed(200, 120, 1);
        let triplets = full_svd(matrix.as_ref(), 10, "test").expect("svd");
        for i in 0..10 {
            assert!((triplets.sigma[i] - sigma[i]).abs() < 1e-4, "sigma {i}: {} vs {}", triplets.sigma[i], sigma[i]);
        }
    }

    #[test]
    fn full_svd_tall_and_wide_recover_spectrum() {
        let (matrix, sigma) = long_tailed(900, 100, 3);
        for (label, triplets) in [("tall", full_svd(matrix.as_ref(), 100, "test")), ("wide", full_svd(matrix.transpose(), 100, "test"))] {
            let triplets = triplets.expect("svd");
            for i in 0..100 {
                assert!((triplets.sigma[i] - sigma[i]).abs() < 1e-4, "{label} sigma {i}: {} vs {}", triplets.sigma[i], sigma[i]);
            }
            let rebuilt = Mat::<f32>::from_fn(triplets.u.nrows(), triplets.v.nrows(), |r, c| (0..100).map(|j| triplets.u[(r, j)] * triplets.sigma[j] * triplets.v[(c, j)]).sum());
            let reference = if label == "tall" { matrix.clone() } else { matrix.transpose().to_owned() };
            let error = (&rebuilt - &reference).norm_l2() / reference.norm_l2();
            assert!(error < 1e-4, "{label}: reconstruction error {error}");
        }
    }

    #[test]
    fn randomized_matches_full_on_leading_values() {
        let (matrix, sigma) = long_tailed(600, 500, 2);
        let triplets = randomized_svd(matrix.as_ref(), 40, 70, "test").expect("svd");
        for i in 0..20 {
            let relative = (triplets.sigma[i] - sigma[i]).abs() / sigma[i];
            assert!(relative < 0.02, "sigma {i}: {} vs {}", triplets.sigma[i], sigma[i]);
        }
        let u_norm: f32 = (0..600).map(|r| triplets.u[(r, 0)].powi(2)).sum();
        assert!((u_norm - 1.0).abs() < 1e-3, "u_0 has norm² {u_norm}");
    }

    #[test]
    fn method_choice_follows_share() {
        assert_eq!(choose_method(384, 384, 148), SvdMethod::Full);
        assert_eq!(choose_method(30522, 384, 10), SvdMethod::Full);
        assert_eq!(choose_method(4096, 4096, 1000), SvdMethod::Randomized(1260));
        assert_eq!(choose_method(4096, 4096, 3000), SvdMethod::Full);
    }
}
