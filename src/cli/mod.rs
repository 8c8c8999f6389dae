//! Command-line parsing and the four commands.

mod compare;
mod output;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use adamix::checkpoint::source::FileSource;
use adamix::checkpoint::{read_header, ByteSource, Checkpoint};
use adamix::compress::{compress, CompressOptions, Device, Event};
use adamix::container::DeltaFile;
use adamix::error::{Error, Result};
use adamix::methods::Method;
use adamix::svd::SvdPolicy;

use output::{check_output_files, AtomicOutput};
pub use output::{interrupted_message, remove_partial_files};
use progress::ProgressLine;

#[derive(Parser)]
#[command(name = "adamix", version, about = "Compress the delta between a fine-tuned model and its base with ADAMIX")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress the delta between a base and a fine-tuned checkpoint.
    Compress {
        /// Base checkpoint: a .safetensors file, a folder, or several shard files (repeat the flag).
        #[arg(long, required = true, num_args = 1..)]
        base: Vec<PathBuf>,
        /// Fine-tuned checkpoint, in the same forms as --base.
        #[arg(long, required = true, num_args = 1..)]
        finetuned: Vec<PathBuf>,
        /// Target size as a fraction of the f16 size of the fine-tune's float tensors, e.g. 1/16 or 0.0625.
        #[arg(long, default_value = "1/16", value_parser = parse_ratio)]
        ratio: f64,
        /// Method for 2-D deltas: adamix, delta-come, low-rank or bitdelta.
        #[arg(long, default_value = "adamix", value_parser = parse_method)]
        method: Method,
        /// Store tensors whose shape differs from the base's whole instead of failing.
        #[arg(long)]
        store_mismatched: bool,
        /// SVD algorithm: auto (randomized for large matrices) or full (exact reference, slower).
        #[arg(long, default_value = "auto", value_parser = parse_svd)]
        svd: SvdPolicy,
        /// Device that builds the ADAMIX cost tables: auto (the GPU when an adapter is found), gpu or cpu. The output file is the same on every device.
        #[arg(long, default_value = "auto", value_parser = parse_device)]
        device: Device,
        /// Write a JSON report of every tensor to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Output file for the compressed delta.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Compress with every method under the same budget and print a table of sizes and errors.
    Compare {
        /// Base checkpoint, in the same forms as for compress.
        #[arg(long, required = true, num_args = 1..)]
        base: Vec<PathBuf>,
        /// Fine-tuned checkpoint.
        #[arg(long, required = true, num_args = 1..)]
        finetuned: Vec<PathBuf>,
        /// Target size as a fraction of the f16 size of the fine-tune's float tensors.
        #[arg(long, default_value = "1/16", value_parser = parse_ratio)]
        ratio: f64,
        /// Folder to write one compressed delta per method into (METHOD.safetensors); none by default.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Write the comparison as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Device that builds the ADAMIX cost tables: auto (the GPU when an adapter is found), gpu or cpu.
        #[arg(long, default_value = "auto", value_parser = parse_device)]
        device: Device,
    },
    /// Apply a compressed delta onto its base and write the reconstructed fine-tune.
    Apply {
        /// Base checkpoint the delta was compressed against.
        #[arg(long, required = true, num_args = 1..)]
        base: Vec<PathBuf>,
        /// Compressed delta.
        #[arg(long)]
        delta: PathBuf,
        /// Output safetensors file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Export a compressed delta as a PEFT LoRA adapter (adapter_model.safetensors and adapter_config.json).
    ExportPeft {
        /// Compressed delta made with adamix, delta-come or low-rank.
        #[arg(long)]
        delta: PathBuf,
        /// Output folder; created when missing.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Measure a compressed delta against the real fine-tune, tensor by tensor.
    Verify {
        /// Base checkpoint.
        #[arg(long, required = true, num_args = 1..)]
        base: Vec<PathBuf>,
        /// Fine-tuned checkpoint the delta was made from.
        #[arg(long, required = true, num_args = 1..)]
        finetuned: Vec<PathBuf>,
        /// Compressed delta.
        #[arg(long)]
        delta: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the header of a safetensors file, and the allocation summary of a compressed delta.
    Inspect {
        /// A safetensors file.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_method(text: &str) -> std::result::Result<Method, String> {
    Method::parse(text).ok_or_else(|| format!("unknown method '{text}'; use one of adamix, delta-come, low-rank, bitdelta"))
}

fn parse_device(text: &str) -> std::result::Result<Device, String> {
    Device::parse(text).ok_or_else(|| format!("unknown device '{text}'; use auto, gpu or cpu"))
}

fn parse_svd(text: &str) -> std::result::Result<SvdPolicy, String> {
    match text {
        "auto" => Ok(SvdPolicy::Auto),
        "full" => Ok(SvdPolicy::Full),
        _ => Err(format!("unknown SVD algorithm '{text}'; use auto or full")),
    }
}

/// Parses `1/16` or `0.0625`.
fn parse_ratio(text: &str) -> std::result::Result<f64, String> {
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse().map_err(|_| format!("invalid ratio '{text}'"))?, b.trim().parse().map_err(|_| format!("invalid ratio '{text}'"))?);
            a / b
        }
        None => text.trim().parse().map_err(|_| format!("invalid ratio '{text}'; use a fraction such as 1/16"))?,
    };
    if value > 0.0 && value <= 1.0 { Ok(value) } else { Err(format!("ratio {text} must be in (0, 1]")) }
}

/// Runs the tool and maps errors to a message and exit code 1.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Compress { base, finetuned, ratio, method, store_mismatched, svd, device, report, output } => {
            run_compress(&base, &finetuned, CompressOptions { ratio, method, store_mismatched, svd, device, ..Default::default() }, report.as_deref(), &output)
        }
        Command::Compare { base, finetuned, ratio, output_dir, report, device } => {
            compare::run_compare(&base, &finetuned, ratio, device, output_dir.as_deref(), report.as_deref())
        }
        Command::Apply { base, delta, output } => run_apply(&base, &delta, &output),
        Command::ExportPeft { delta, output } => run_export_peft(&delta, &output),
        Command::Verify { base, finetuned, delta, json } => run_verify(&base, &finetuned, &delta, json),
        Command::Inspect { file, json } => run_inspect(&file, json),
    }
}

/// Rejects an output path that names one of the input files, which writing would destroy.
fn check_output_is_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(output_real) = output.canonicalize() else { return Ok(()) };
    for input in inputs {
        let files: Vec<PathBuf> = if input.is_dir() {
            std::fs::read_dir(input).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
        } else {
            vec![input.to_path_buf()]
        };
        if files.iter().any(|f| f.canonicalize().is_ok_and(|real| real == output_real)) {
            return Err(Error::InvalidOptions(format!("the output {} is also an input; write the output to another path", output.display())));
        }
    }
    Ok(())
}

/// Opens a checkpoint from files and folders; a folder contributes its .safetensors files and index.
pub(crate) fn open_checkpoint(paths: &[PathBuf]) -> Result<Checkpoint> {
    let mut sources: Vec<Box<dyn ByteSource>> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path).map_err(|e| Error::io(path.display(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".safetensors") || p.to_string_lossy().ends_with(".safetensors.index.json"))
                .collect();
            files.sort();
            let subfolders = subfolder_names(path);
            if files.is_empty() && !subfolders.is_empty() {
                return Err(Error::file(path.display(), format!(
                    "the folder contains no .safetensors file, and its subfolders are not read ({}); pass the subfolder that contains the checkpoint", subfolders.join(", "))));
            }
            if files.is_empty() {
                return Err(Error::file(path.display(), "the folder contains no .safetensors file"));
            }
            if !subfolders.is_empty() {
                eprintln!("notice: {}: subfolders are not read ({}); only the folder's own files are", path.display(), subfolders.join(", "));
            }
            for file in files {
                sources.push(Box::new(FileSource::open(&file)?));
            }
        } else {
            sources.push(Box::new(FileSource::open(path)?));
        }
    }
    let checkpoint = Checkpoint::open(sources)?;
    for notice in &checkpoint.notices {
        eprintln!("notice: {notice}");
    }
    Ok(checkpoint)
}

/// Names of the folders directly inside `folder`, each with a trailing `/`, sorted.
fn subfolder_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder).map(|entries| entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| format!("{}/", e.file_name().to_string_lossy()))
        .collect()).unwrap_or_default();
    names.sort();
    names
}

fn run_compress(base: &[PathBuf], finetuned: &[PathBuf], options: CompressOptions, report: Option<&Path>, output: &Path) -> Result<()> {
    let mut outputs = vec![("--output", output)];
    outputs.extend(report.map(|report| ("--report", report)));
    check_output_files(&outputs)?;
    let inputs: Vec<&Path> = base.iter().chain(finetuned).map(PathBuf::as_path).collect();
    check_output_is_not_input(output, &inputs)?;
    if let Some(report) = report {
        check_output_is_not_input(report, &inputs)?;
    }
    let base = open_checkpoint(base)?;
    let finetuned = open_checkpoint(finetuned)?;
    let mut data = AtomicOutput::scratch(output)?;
    let mut progress = ProgressLine::new();
    let outcome = compress(&base, &finetuned, &options, &mut |event| match event {
        Event::Plan(pairing, total) => progress.plan(pairing, total),
        Event::Progress { tensor, stage, index, total } => progress.stage(tensor, stage, index, total),
        Event::Tensor(row) => progress.tensor(row),
    }, &mut data)?;
    progress.finish();

    let mut file = AtomicOutput::create(output)?;
    file.write_all(&outcome.header)?;
    data.copy_into(&mut file)?;
    file.commit()?;
    if let Some(path) = report {
        let json = serde_json::json!({ "summary": outcome.summary, "tensors": outcome.rows });
        AtomicOutput::write_whole(path, serde_json::to_string_pretty(&json).expect("report serializes").as_bytes())?;
    }
    progress::print_summary(&outcome.summary, output);
    // The checkpoint's own notices were printed when it was opened.
    for notice in outcome.summary.notices.iter().filter(|n| !finetuned.notices.contains(n)) {
        eprintln!("notice: {notice}");
    }
    Ok(())
}

fn run_apply(base: &[PathBuf], delta: &Path, output: &Path) -> Result<()> {
    check_output_files(&[("--output", output)])?;
    let inputs: Vec<&Path> = base.iter().map(PathBuf::as_path).chain([delta]).collect();
    check_output_is_not_input(output, &inputs)?;
    let base = open_checkpoint(base)?;
    let delta = DeltaFile::open(Box::new(FileSource::open(delta)?))?;
    let mut file = AtomicOutput::create(output)?;
    let mut progress = ProgressLine::new();
    adamix::apply::apply(&base, &delta, &mut file, &mut |name, index, total| progress.stage(name, "apply", index, total))?;
    progress.finish();
    file.commit()?;
    eprintln!("wrote {} ({} tensors)", output.display(), delta.records.len());
    Ok(())
}

fn run_export_peft(delta: &Path, output: &Path) -> Result<()> {
    if output.exists() && !output.is_dir() {
        return Err(Error::InvalidOptions(format!(
            "--output {} is a file, but export-peft writes a folder (adapter_model.safetensors and adapter_config.json); choose a folder path. Nothing was written",
            output.display())));
    }
    let delta = DeltaFile::open(Box::new(FileSource::open(delta)?))?;
    let adapter = adamix::export::export_peft(&delta)?;
    std::fs::create_dir_all(output).map_err(|e| Error::io(output.display(), e))?;
    AtomicOutput::write_whole(&output.join("adapter_model.safetensors"), &adapter.model)?;
    AtomicOutput::write_whole(&output.join("adapter_config.json"), adapter.config.as_bytes())?;
    for name in &adapter.skipped {
        eprintln!("not in the adapter: {name}");
    }
    println!("wrote {}/adapter_model.safetensors and adapter_config.json", output.display());
    Ok(())
}

fn run_verify(base: &[PathBuf], finetuned: &[PathBuf], delta: &Path, json: bool) -> Result<()> {
    let base = open_checkpoint(base)?;
    let finetuned = open_checkpoint(finetuned)?;
    let delta = DeltaFile::open(Box::new(FileSource::open(delta)?))?;
    let mut progress = ProgressLine::new();
    let report = adamix::apply::verify(&base, &finetuned, &delta, &mut |name, index, total| progress.stage(name, "verify", index, total))?;
    progress.finish();
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
        return Ok(());
    }
    for tensor in &report.tensors {
        let error = tensor.rel_error.map_or("-".to_string(), |e| format!("{e:.6}"));
        println!("{:<60} {:<10} {error}", tensor.name, tensor.kind);
    }
    println!("total relative error of compressed matrices: {:.6}", report.rel_error_total);
    println!("file: {} bytes = {:.5} of the f16 size ({} bytes)", report.file_bytes, report.file_bytes as f64 / report.f16_delta_bytes as f64, report.f16_delta_bytes);
    Ok(())
}

fn run_inspect(path: &Path, json: bool) -> Result<()> {
    let source = FileSource::open(path)?;
    let header = read_header(&source)?;
    let tensors: Vec<_> = header.tensors.iter().map(|t| serde_json::json!({ "name": t.name, "dtype": t.dtype.name(), "shape": t.shape })).collect();
    let delta = if header.metadata.contains_key("adamix.format") { Some(DeltaFile::open(Box::new(FileSource::open(path)?))?) } else { None };
    if json {
        let value = serde_json::json!({ "file_bytes": source.len(), "header_bytes": header.header_bytes, "tensors": tensors, "metadata": header.metadata });
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON serializes"));
        return Ok(());
    }
    println!("{}: {} bytes, header {} bytes, {} tensors", path.display(), source.len(), header.header_bytes, header.tensors.len());
    match delta {
        Some(delta) => progress::print_delta_summary(&delta),
        None => {
            for t in &header.tensors {
                println!("  {:<60} {:<5} {:?}", t.name, t.dtype.name(), t.shape);
            }
        }
    }
    Ok(())
}
