//! The size budget holds for the whole file: header, metadata and every stored tensor.
//!
//! The target is `ratio × 2 × (elements of the fine-tune's float tensors)`
//! bytes. Fixed costs (f16 deltas of vectors, tensors stored whole, the
//! header) are paid first, so a ratio too small for them must be rejected
//! with a message that names a ratio that fits.

mod common;

use adamix::checkpoint::Checkpoint;

use common::{
    add, compress_to_bytes, folder_entries, gaussian_orthonormal_columns, memory_checkpoint, normal_values, options_with_ratio, run_cli,
    safetensors_file, seeded_rng, stderr_text, LowRank, Tensor,
};

/// Matrices of the synthetic pair, with their shapes.
const MATRICES: [(&str, [usize; 2]); 3] = [
    ("layers.0.attention.query.weight", [256, 512]),
    ("layers.0.mlp.up.weight", [512, 256]),
    ("layers.0.mlp.down.weight", [384, 384]),
];

/// Tensors of the synthetic pair: base and fine-tune.
///
/// Each matrix delta is a rank-16 component plus dense noise, so every
/// matrix can use all of its budget. The fine-tune also contains vectors
/// (stored as f16 deltas) and a classifier that the base lacks (stored whole).
fn synthetic_tensors() -> (Vec<Tensor>, Vec<Tensor>) {
    let mut rng = seeded_rng(31);
    let (mut base, mut finetuned) = (Vec::new(), Vec::new());
    for (name, [rows, cols]) in MATRICES {
        let weight = normal_values(&mut rng, rows * cols, 0.05);
        let low_rank = LowRank::new(gaussian_orthonormal_columns(&mut rng, rows, 16), gaussian_orthonormal_columns(&mut rng, cols, 16), 5e-3);
        let delta = add(&low_rank.matrix(), &normal_values(&mut rng, rows * cols, 1e-3));
        base.push(Tensor::f32(name, &[rows, cols], &weight));
        finetuned.push(Tensor::f32(name, &[rows, cols], &add(&weight, &delta)));

        let bias_name = name.replace(".weight", ".bias");
        let bias = normal_values(&mut rng, rows, 0.02);
        base.push(Tensor::f32(&bias_name, &[rows], &bias));
        finetuned.push(Tensor::f32(&bias_name, &[rows], &add(&bias, &normal_values(&mut rng, rows, 1e-3))));
    }
    finetuned.push(Tensor::f32("classifier.weight", &[4, 384], &normal_values(&mut rng, 4 * 384, 0.05)));
    (base, finetuned)
}

fn f16_size_bytes(tensors: &[Tensor]) -> u64 {
    2 * tensors.iter().map(|t| t.numel() as u64).sum::<u64>()
}

fn open_pair(base: &[Tensor], finetuned: &[Tensor]) -> (Checkpoint, Checkpoint) {
    (
        memory_checkpoint("base.safetensors", safetensors_file(base, &[])).expect("open base"),
        memory_checkpoint("finetuned.safetensors", safetensors_file(finetuned, &[])).expect("open fine-tune"),
    )
}

#[test]
fn file_within_ratio_budget() {
    let (base_tensors, finetuned_tensors) = synthetic_tensors();
    let (base, finetuned) = open_pair(&base_tensors, &finetuned_tensors);
    let f16_bytes = f16_size_bytes(&finetuned_tensors);

    for (label, ratio) in [("1/8", 1.0 / 8.0), ("1/16", 1.0 / 16.0), ("1/32", 1.0 / 32.0)] {
        let (file, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(ratio))
            .unwrap_or_else(|e| panic!("compression at ratio {label} failed: {e}"));
        let size = file.len() as u64;
        let limit = ratio * f16_bytes as f64 * 1.02;
        assert!(size as f64 <= limit, "ratio {label}: file is {size} bytes, above {ratio} × {f16_bytes} × 1.02 = {limit:.0} bytes");
        assert_eq!(outcome.summary.compressed_bytes, size, "ratio {label}: compressed_bytes in the summary against the file");
        assert_eq!(outcome.summary.f16_delta_bytes, f16_bytes, "ratio {label}: f16_delta_bytes in the summary");
        let compressed = outcome.rows.iter().filter(|r| r.kind == "adamix").count();
        assert_eq!(compressed, MATRICES.len(), "ratio {label}: matrices compressed with adamix");
    }
}

#[test]
fn budget_grows_with_ratio() {
    let (base_tensors, finetuned_tensors) = synthetic_tensors();
    let (base, finetuned) = open_pair(&base_tensors, &finetuned_tensors);

    let mut previous: Option<(f64, u64, f64)> = None;
    for ratio in [1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0] {
        let (file, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(ratio)).expect("compress");
        let (size, error) = (file.len() as u64, outcome.summary.rel_error_total);
        if let Some((previous_ratio, previous_size, previous_error)) = previous {
            assert!(size > previous_size, "file at ratio {ratio} is {size} bytes, not larger than {previous_size} at ratio {previous_ratio}");
            assert!(error < previous_error, "error at ratio {ratio} is {error}, not below {previous_error} at ratio {previous_ratio}");
        }
        previous = Some((ratio, size, error));
    }
}

#[test]
fn ratio_below_fixed_costs_rejected() {
    let (base_tensors, finetuned_tensors) = synthetic_tensors();
    let (base, finetuned) = open_pair(&base_tensors, &finetuned_tensors);
    let message = match compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 1024.0)) {
        Ok((file, _)) => panic!("ratio 1/1024 was accepted and gave a {} byte file", file.len()),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("choose a ratio above"), "message does not say which ratio fits: {message}");

    let folder = tempfile::tempdir().expect("temporary folder");
    let base_path = folder.path().join("base.safetensors");
    let finetuned_path = folder.path().join("finetuned.safetensors");
    let output_folder = folder.path().join("out");
    std::fs::write(&base_path, safetensors_file(&base_tensors, &[])).expect("write base");
    std::fs::write(&finetuned_path, safetensors_file(&finetuned_tensors, &[])).expect("write fine-tune");
    std::fs::create_dir(&output_folder).expect("create output folder");
    let output = run_cli([
        "compress".as_ref(), "--base".as_ref(), base_path.as_os_str(), "--finetuned".as_ref(), finetuned_path.as_os_str(),
        "--ratio".as_ref(), "1/1024".as_ref(), "--output".as_ref(), output_folder.join("delta.adamix").as_os_str(),
    ]);
    let stderr = stderr_text(&output);
    assert!(!output.status.success(), "adamix compress --ratio 1/1024 succeeded; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "adamix compress panicked; stderr:\n{stderr}");
    assert!(stderr.contains("error: "), "stderr has no 'error: ' line:\n{stderr}");
    assert!(stderr.contains("choose a ratio above"), "stderr does not name a ratio that fits:\n{stderr}");
    let left = folder_entries(&output_folder);
    assert!(left.is_empty(), "adamix compress left {left:?} in the output folder");
}

#[test]
fn no_matrices_over_target_noticed() {
    // [2000, 8] is narrower than a compressed matrix, so it is stored as an f16 delta like the vector.
    let mut rng = seeded_rng(32);
    let (mut base, mut finetuned) = (Vec::new(), Vec::new());
    for (name, shape) in [("narrow.weight", vec![2000, 8]), ("narrow.bias", vec![2000])] {
        let count: usize = shape.iter().product();
        let weight = normal_values(&mut rng, count, 0.05);
        base.push(Tensor::f32(name, &shape, &weight));
        finetuned.push(Tensor::f32(name, &shape, &add(&weight, &normal_values(&mut rng, count, 1e-3))));
    }
    let (base, finetuned) = open_pair(&base, &finetuned);

    let (file, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 8.0)).expect("compress");
    let notice = outcome.summary.notices.iter().find(|notice| notice.contains("above the target"));
    let notice = notice.unwrap_or_else(|| panic!("a {} byte file above its target got no notice: {:?}", file.len(), outcome.summary.notices));
    assert!(notice.contains(&file.len().to_string()), "the notice does not state the file size: {notice}");
    assert!(notice.contains("no tensor is a matrix"), "the notice does not give the reason: {notice}");
}

#[test]
fn delta_below_f16_dropped_noticed() {
    // A delta of about 1e-30 is below every f16 scale, so no triplet lowers its error.
    let mut rng = seeded_rng(33);
    let (rows, cols) = (256, 128);
    let zeros = vec![0.0f32; rows * cols];
    let base = [Tensor::f32("tiny.weight", &[rows, cols], &zeros)];
    let finetuned = [Tensor::f32("tiny.weight", &[rows, cols], &normal_values(&mut rng, rows * cols, 1e-30))];
    let (base, finetuned) = open_pair(&base, &finetuned);

    let (_, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 16.0)).expect("compress");
    let notice = outcome.summary.notices.iter().find(|notice| notice.contains("kept no triplet"));
    let notice = notice.unwrap_or_else(|| panic!("a dropped delta got no notice: {:?}", outcome.summary.notices));
    assert!(notice.contains("tiny.weight"), "the notice does not name the tensor: {notice}");
    assert!(notice.contains("smallest normal f16 number"), "the notice does not give the reason: {notice}");
}

#[test]
fn file_within_target_gets_no_notice() {
    let (base_tensors, finetuned_tensors) = synthetic_tensors();
    let (base, finetuned) = open_pair(&base_tensors, &finetuned_tensors);
    let (_, outcome) = compress_to_bytes(&base, &finetuned, &options_with_ratio(1.0 / 16.0)).expect("compress");
    let over = outcome.summary.notices.iter().find(|notice| notice.contains("above the target"));
    assert_eq!(over, None, "notices: {:?}", outcome.summary.notices);
    let dropped = outcome.summary.notices.iter().find(|notice| notice.contains("kept no triplet"));
    assert_eq!(dropped, None, "notices: {:?}", outcome.summary.notices);
}
