//! The real demo pair (all-MiniLM-L6-v2 and a fine-tune of it) through the
//! command line at ratio 1/16: compress, verify, apply.
//!
//! The files come from scripts/fetch-demo.sh; without them every test here
//! fails and names the script. The pipeline runs once, and each test checks
//! one property of its results.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use common::{assert_cli_success, demo_pair, header_layout, run_cli, stdout_text};

const RATIO: f64 = 1.0 / 16.0;

/// What one run of compress, verify and apply produced, read back into memory.
struct RoundTrip {
    delta_bytes: u64,
    finetuned_layout: BTreeMap<String, (String, Vec<usize>)>,
    applied_layout: BTreeMap<String, (String, Vec<usize>)>,
    applied_readable: Result<usize, String>,
    report: Value,
    verify: Value,
}

fn round_trip() -> &'static RoundTrip {
    static RESULT: OnceLock<RoundTrip> = OnceLock::new();
    RESULT.get_or_init(run_round_trip)
}

fn run_round_trip() -> RoundTrip {
    let (base, finetuned) = demo_pair();
    let folder = tempfile::tempdir().expect("temporary folder");
    let delta = folder.path().join("delta.adamix");
    let report = folder.path().join("report.json");
    let applied = folder.path().join("applied.safetensors");

    let compress = run_cli([
        "compress".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(),
        "--ratio".as_ref(), "1/16".as_ref(), "--report".as_ref(), report.as_os_str(), "--output".as_ref(), delta.as_os_str(),
    ]);
    assert_cli_success(&compress, "adamix compress");
    let verify = run_cli([
        "verify".as_ref(), "--base".as_ref(), base.as_os_str(), "--finetuned".as_ref(), finetuned.as_os_str(),
        "--delta".as_ref(), delta.as_os_str(), "--json".as_ref(),
    ]);
    assert_cli_success(&verify, "adamix verify --json");
    let apply = run_cli([
        "apply".as_ref(), "--base".as_ref(), base.as_os_str(), "--delta".as_ref(), delta.as_os_str(), "--output".as_ref(), applied.as_os_str(),
    ]);
    assert_cli_success(&apply, "adamix apply");

    let applied_bytes = std::fs::read(&applied).expect("read the applied checkpoint");
    let applied_readable = safetensors::SafeTensors::deserialize(&applied_bytes).map(|file| file.len()).map_err(|e| format!("{e:?}"));
    let report_text = std::fs::read_to_string(&report).expect("read the compress report");
    RoundTrip {
        delta_bytes: std::fs::metadata(&delta).expect("delta file metadata").len(),
        finetuned_layout: header_layout(&finetuned),
        applied_layout: header_layout(&applied),
        applied_readable,
        report: serde_json::from_str(&report_text).unwrap_or_else(|e| panic!("the compress report is not JSON: {e}")),
        verify: serde_json::from_str(&stdout_text(&verify)).unwrap_or_else(|e| panic!("verify --json printed invalid JSON: {e}")),
    }
}

#[test]
fn real_pair_size_within_ratio() {
    let result = round_trip();
    let float_elements: usize = result.finetuned_layout.values()
        .filter(|(dtype, _)| matches!(dtype.as_str(), "F32" | "F16" | "BF16" | "F64"))
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    let limit = 1.02 * RATIO * 2.0 * float_elements as f64;
    assert!(result.delta_bytes as f64 <= limit,
        "delta file is {} bytes, above 1.02 × 1/16 × 2 × {float_elements} = {limit:.0} bytes", result.delta_bytes);
    assert_eq!(result.verify["file_bytes"], result.delta_bytes, "file_bytes from verify --json against the file on disk");
    assert_eq!(result.verify["f16_delta_bytes"], 2 * float_elements, "f16_delta_bytes from verify --json");
}

#[test]
fn real_pair_error_within_bound() {
    let result = round_trip();
    let total = result.verify["rel_error_total"].as_f64();
    assert!(total.is_some_and(|e| e <= 0.48), "rel_error_total from verify --json is {total:?}, expected at most 0.48");
}

#[test]
fn real_pair_apply_keeps_layout() {
    let result = round_trip();
    assert!(result.applied_readable.is_ok(), "the safetensors crate rejects the applied checkpoint: {:?}", result.applied_readable);
    assert_eq!(result.applied_layout, result.finetuned_layout, "names, dtypes and shapes of the applied checkpoint");
}

#[test]
fn real_pair_report_matches_verify() {
    let result = round_trip();
    let verified: BTreeMap<&str, Option<f64>> = result.verify["tensors"].as_array().expect("verify --json lists tensors").iter()
        .map(|t| (t["name"].as_str().unwrap_or_default(), t["rel_error"].as_f64()))
        .collect();
    let rows = result.report["tensors"].as_array().expect("the report lists tensors");
    for row in rows {
        let is_matrix = row["shape"].as_array().is_some_and(|s| s.len() == 2 && s.iter().all(|d| d.as_u64().unwrap_or(0) >= 16));
        let kind = row["kind"].as_str().unwrap_or_default();
        assert!(!is_matrix || kind == "adamix" || kind == "unchanged", "{}: a large 2-D tensor is stored as '{kind}'", row["name"]);
    }
    let compressed: Vec<&Value> = rows.iter().filter(|row| row["kind"] == "adamix").collect();
    assert!(compressed.len() >= 30, "only {} tensors were compressed with adamix", compressed.len());

    for row in compressed {
        let name = row["name"].as_str().unwrap_or_default();
        let reported = row["rel_error"].as_f64();
        let measured = verified.get(name).copied().flatten();
        let difference = reported.zip(measured).map(|(a, b)| (a - b).abs());
        assert!(difference.is_some_and(|d| d <= 1e-4),
            "{name}: rel_error {reported:?} in the compress report, {measured:?} from verify");
    }
}
