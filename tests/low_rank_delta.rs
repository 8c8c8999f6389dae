//! A fine-tune whose delta has exact rank 8, compressed through the whole pipeline.
//!
//! At ratio 1/16 a `[256, 512]` matrix has room for all 8 triplets at the
//! widest width (8 bits), so what is left is the error of quantizing the
//! singular vectors. For Gaussian singular vectors that error cannot fall
//! below the error of storing the exact factors at 8 bits (about 0.85% here,
//! because one 8-bit code per entry with f16 group scales leaves about 0.6%
//! per vector). For Hadamard singular vectors, whose entries are all
//! `±1/√n`, the quantizer is exact up to f16 rounding, so the pipeline must
//! reconstruct the delta to within 1e-3.

mod common;

use adamix::apply::verify;
use adamix::report::TensorRow;

use common::{
    add, compress_to_bytes, gaussian_orthonormal_columns, hadamard_orthonormal_columns, memory_checkpoint, normal_values,
    open_delta, options_with_ratio, product, reference_quantize, relative_error, safetensors_file, seeded_rng, LowRank, Tensor,
};

const NAME: &str = "layer.0.mlp.weight";
const ROWS: usize = 256;
const COLS: usize = 512;
const RANK: usize = 8;
const ENTRY_RMS: f64 = 1e-2;

/// Compresses `base + delta` against `base` at ratio 1/16; returns the row of the matrix and the error `verify` measures.
fn compress_and_verify(delta: &[f32]) -> (TensorRow, f64) {
    let mut rng = seeded_rng(80);
    let base_values = normal_values(&mut rng, ROWS * COLS, 0.05);
    let finetuned_values = add(&base_values, delta);
    let base = memory_checkpoint("base.safetensors", safetensors_file(&[Tensor::f32(NAME, &[ROWS, COLS], &base_values)], &[]))
        .expect("open base");
    let finetuned = memory_checkpoint("finetuned.safetensors", safetensors_file(&[Tensor::f32(NAME, &[ROWS, COLS], &finetuned_values)], &[]))
        .expect("open fine-tune");

    let (file, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 16.0)).expect("compress");
    let delta_file = open_delta("delta.adamix", file).expect("open the compressed delta");
    let report = verify(&base, &finetuned, &delta_file, &mut |_, _, _| {}).expect("verify");
    let verified = report.tensors[0].rel_error.expect("a float tensor has an error");
    assert!((report.rel_error_total - verified).abs() < 1e-9,
        "total relative error {} differs from the only matrix's {verified}", report.rel_error_total);
    (outcome.rows[0].clone(), verified)
}

fn assert_all_triplets_kept(row: &TensorRow) {
    assert_eq!(row.kind, "adamix", "kind of {NAME}");
    let kept_rank = row.kept_rank.unwrap_or(0);
    assert!(kept_rank >= RANK, "kept rank {kept_rank} is below the delta's rank {RANK}; allocation {:?}", row.allocation);
    let leading_widths = &row.allocation[..RANK.min(row.allocation.len())];
    assert!(leading_widths.iter().all(|&w| w > 0), "a leading triplet was dropped: widths {leading_widths:?}");
}

#[test]
fn rank8_gaussian_delta_at_8bit_floor() {
    let mut rng = seeded_rng(8);
    let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, ROWS, RANK), gaussian_orthonormal_columns(&mut rng, COLS, RANK), ENTRY_RMS);
    let delta = low_rank.matrix();

    // The floor: the exact factors, each stored at 8 bits.
    let u_hat: Vec<Vec<f64>> = low_rank.u.iter().map(|u| reference_quantize(u, 8)).collect();
    let v_hat: Vec<Vec<f64>> = low_rank.v.iter().map(|v| reference_quantize(v, 8)).collect();
    let floor = relative_error(&delta, &product(&u_hat, &low_rank.sigma, &v_hat));

    let (row, verified) = compress_and_verify(&delta);
    assert_all_triplets_kept(&row);
    assert!(verified <= 1.05 * floor, "relative error {verified} is above 1.05 × the 8-bit floor {floor}; widths {:?}", row.width_counts);
    assert!(verified < 1e-2, "relative error {verified} is not below 1e-2; widths {:?}", row.width_counts);
}

#[test]
fn rank8_hadamard_delta_nearly_exact() {
    let mut rng = seeded_rng(9);
    let low_rank = LowRank::new(hadamard_orthonormal_columns(&mut rng, ROWS, RANK), hadamard_orthonormal_columns(&mut rng, COLS, RANK), ENTRY_RMS);
    let delta = low_rank.matrix();

    let (row, verified) = compress_and_verify(&delta);
    assert_all_triplets_kept(&row);
    assert!(verified < 1e-3, "relative error {verified} from verify is not below 1e-3 (compress measured {:?}, widths {:?})",
        row.rel_error, row.width_counts);
}
