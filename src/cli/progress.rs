//! Progress lines and summaries printed to standard error and output.

use std::io::{IsTerminal, Write};
use std::path::Path;

use adamix::clock::Stopwatch;
use adamix::container::{DeltaFile, Kind};
use adamix::pair::PairingReport;
use adamix::report::{Summary, TensorRow};

/// A one-line progress display on standard error, with an estimate of the time left.
pub struct ProgressLine {
    clock: Stopwatch,
}

impl ProgressLine {
    /// Starts the clock.
    pub fn new() -> Self {
        ProgressLine { clock: Stopwatch::start() }
    }

    /// Prints the pairing report.
    pub fn plan(&mut self, pairing: &PairingReport, total: usize) {
        eprintln!("{total} tensors in the fine-tune; {} matched in the base", pairing.matched);
        let lists = [
            ("only in the base (not stored)", &pairing.only_in_base),
            ("only in the fine-tune (stored whole)", &pairing.only_in_finetuned),
            ("integer or bool (compared byte for byte)", &pairing.skipped_integer),
        ];
        for (label, names) in lists {
            if !names.is_empty() {
                eprintln!("  {} {label}: {}", names.len(), names.join(", "));
            }
        }
        for mismatch in &pairing.shape_mismatch {
            eprintln!("  shape mismatch, stored whole: {} {:?} -> {:?}", mismatch.name, mismatch.base_shape, mismatch.finetuned_shape);
        }
    }

    /// Shows that tensor `index` of `total` entered `stage`.
    pub fn stage(&mut self, tensor: &str, stage: &str, index: usize, total: usize) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let elapsed = self.clock.seconds();
        let eta = if index > 0 { format!(", about {:.0} s left", elapsed / index as f64 * (total - index) as f64) } else { String::new() };
        eprint!("\r\x1b[2K[{}/{total}] {tensor}: {stage} ({elapsed:.1} s{eta})", index + 1);
        let _ = std::io::stderr().flush();
    }

    /// Prints one finished tensor.
    pub fn tensor(&mut self, row: &TensorRow) {
        if row.matrix {
            let widths: Vec<String> = row.width_counts.iter().map(|(w, c)| format!("{w}b×{c}")).collect();
            eprintln!("{}{:<50} rank {:>5} [{}] error {:.4} {} bytes", clear_line(), row.name, row.kept_rank.unwrap_or(0), widths.join(" "), row.rel_error.unwrap_or(0.0), row.bytes);
        }
    }

    /// Ends the progress line.
    pub fn finish(&mut self) {
        eprintln!("{}done in {:.1} s", clear_line(), self.clock.seconds());
    }
}

/// The escape sequence that clears a progress line on a terminal, and nothing elsewhere.
fn clear_line() -> &'static str {
    if std::io::stderr().is_terminal() { "\r\x1b[2K" } else { "" }
}

/// Prints the totals of a compression run.
pub fn print_summary(summary: &Summary, output: &Path) {
    println!("wrote {}: {} bytes, {:.5} of the f16 delta size {} bytes (target {:.5})",
        output.display(), summary.compressed_bytes, summary.ratio_achieved, summary.f16_delta_bytes, summary.ratio_target);
    println!("device: {}", summary.device);
    println!("total relative error of compressed matrices: {:.4}", summary.rel_error_total);
    println!("nominal code bits per parameter: {:.3}", summary.nominal_bits_per_parameter);
    println!("{}", summary.budget_note);
    if !summary.pairing.unchanged.is_empty() {
        println!("unchanged (nothing stored): {}", summary.pairing.unchanged.join(", "));
    }
}

/// Prints the allocation summary of a compressed delta.
pub fn print_delta_summary(delta: &DeltaFile) {
    println!("compressed delta: method {}, ratio {}, base fingerprint {}", delta.method, delta.ratio, delta.base_fingerprint);
    for record in &delta.records {
        let detail = match record.kind {
            Kind::Quantized => format!("allocation {}", record.allocation.as_deref().unwrap_or("")),
            _ => String::new(),
        };
        println!("  {:<55} {:<10} {:<5} {:?} {} bytes {detail}", record.name, record.kind.label(), record.dtype, record.shape, delta.stored_bytes(&record.name));
    }
}
