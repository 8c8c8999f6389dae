//! `adamix compare`: every method on the same input, budget and quantizer.

use std::path::Path;

use adamix::compress::{compress_on, CompressOptions, Device, Event};
use adamix::container::DataSink;
use adamix::error::Result;
use adamix::gpu::open_context;
use adamix::methods::Method;
use adamix::report::Summary;

use super::open_checkpoint;
use super::output::{check_output_files, check_output_folder, AtomicOutput};

/// A sink that drops the data, when only the sizes and errors are wanted.
struct DiscardSink;

impl DataSink for DiscardSink {
    fn write(&mut self, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Compresses with each method in turn and prints size and total relative error per method.
///
/// The GPU context that `device` selects is built once and used by every
/// method that has GPU kernels (ADAMIX).
pub fn run_compare(base: &[std::path::PathBuf], finetuned: &[std::path::PathBuf], ratio: f64, device: Device, output_dir: Option<&Path>, report: Option<&Path>) -> Result<()> {
    if let Some(report) = report {
        check_output_files(&[("--report", report)])?;
    }
    if let Some(dir) = output_dir {
        check_output_folder("--output-dir", dir)?;
    }
    let base = open_checkpoint(base)?;
    let finetuned = open_checkpoint(finetuned)?;
    let gpu = open_context(device)?;
    let mut results: Vec<Summary> = Vec::new();
    for method in Method::ALL {
        eprintln!("compressing with {} ...", method.name());
        let options = CompressOptions { ratio, method, device, ..Default::default() };
        let outcome = match output_dir {
            Some(dir) => {
                let path = dir.join(format!("{}.safetensors", method.name()));
                let mut data = AtomicOutput::scratch(&path)?;
                let outcome = compress_on(&base, &finetuned, &options, gpu.as_ref(), &mut |_: Event| {}, &mut data)?;
                let mut file = AtomicOutput::create(&path)?;
                file.write_all(&outcome.header)?;
                data.copy_into(&mut file)?;
                file.commit()?;
                outcome
            }
            None => compress_on(&base, &finetuned, &options, gpu.as_ref(), &mut |_: Event| {}, &mut DiscardSink)?,
        };
        // The checkpoint's own notices were printed when it was opened.
        for notice in outcome.summary.notices.iter().filter(|n| !finetuned.notices.contains(n)) {
            eprintln!("notice: {notice}");
        }
        results.push(outcome.summary);
    }
    print_table(&results);
    if let Some(path) = report {
        let json = serde_json::to_string_pretty(&results).expect("summaries serialize");
        AtomicOutput::write_whole(path, json.as_bytes())?;
    }
    Ok(())
}

fn print_table(results: &[Summary]) {
    println!("{:<12} {:>12} {:>8} {:>10} {:>10} {:>8}  device", "method", "bytes", "ratio", "budget", "rel error", "seconds");
    for summary in results {
        let within = if summary.ratio_achieved <= summary.ratio_target * 1.02 { "ok" } else { "OVER" };
        println!("{:<12} {:>12} {:>8.5} {:>10} {:>10.4} {:>8.1}  {}",
            summary.method, summary.compressed_bytes, summary.ratio_achieved, within, summary.rel_error_total, summary.seconds, summary.device);
    }
    let adamix = results.iter().find(|s| s.method == "adamix").map(|s| s.rel_error_total);
    let best_other = results.iter().filter(|s| s.method != "adamix").map(|s| s.rel_error_total).fold(f64::INFINITY, f64::min);
    if let Some(adamix) = adamix {
        println!("adamix error is {:.1}% below the best baseline", 100.0 * (1.0 - adamix / best_other));
    }
}
