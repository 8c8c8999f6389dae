//! The pipeline over a whole checkpoint pair, one tensor at a time.
//!
//! read checkpoints → pair tensors → plan the budget → for each tensor:
//! delta → (matrices) SVD → cost table → allocate → quantize V, then U with
//! correction → pack → write; then the header with its metadata.
//!
//! A run builds at most one GPU context, before the first tensor, and passes
//! it by reference to every ADAMIX matrix, whose cost table is then built by
//! the GPU kernel. The kernel matches the CPU bit for bit, so the output file
//! is byte for byte the same on either device. When the GPU fails on a tensor,
//! that tensor is finished on the CPU and the report says so.

use std::collections::BTreeMap;

use faer::MatRef;
use half::f16;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::budget::{PADDING_BITS, WIDTHS};
use crate::checkpoint::{Checkpoint, Dtype};
use crate::clock::Stopwatch;
use crate::container::records::{encode_allocation, hex64};
use crate::container::{ContainerWriter, DataSink, Kind, StoredPart, TensorRecord, FORMAT_NAME, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::cost::CostTableBuilder;
use crate::explore::MatrixCache;
use crate::gpu::{block_on, open_context, GpuContext, GpuError};
use crate::methods::{adamix, bitdelta, delta_come, low_rank, squared_error, EncodedMatrix, Method};
use crate::pair::{pair, PairingReport, Plan};
use crate::svd::SvdPolicy;
use crate::report::{total_relative_error, Summary, TensorRow};

pub use crate::gpu::Device;

/// Options of a compression run.
#[derive(Debug, Clone)]
pub struct CompressOptions {
    /// Target ratio α of the file size to the f16 size of the fine-tune's float tensors.
    pub ratio: f64,
    /// Candidate widths, ascending, starting with 0.
    pub widths: Vec<u8>,
    /// Store tensors whose shape differs from the base's whole instead of failing.
    pub store_mismatched: bool,
    /// The method for 2-D deltas.
    pub method: Method,
    /// The SVD algorithms allowed.
    pub svd: SvdPolicy,
    /// Device for the GPU kernels. Only ADAMIX has GPU kernels (the cost
    /// table), so the other methods run on the CPU whatever its value.
    pub device: Device,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            ratio: 1.0 / 16.0,
            widths: WIDTHS.to_vec(),
            store_mismatched: false,
            method: Method::Adamix,
            svd: SvdPolicy::Auto,
            device: Device::Auto,
        }
    }
}

/// Something the caller may show while a run goes on.
pub enum Event<'a> {
    /// The pairing report, before any heavy work.
    Plan(&'a PairingReport, usize),
    /// Work on tensor `index` of `total` entered `stage`.
    Progress {
        /// Tensor name.
        tensor: &'a str,
        /// Stage name.
        stage: &'a str,
        /// Zero-based index of the tensor.
        index: usize,
        /// Number of tensors.
        total: usize,
    },
    /// A tensor is finished.
    Tensor(&'a TensorRow),
}

/// The result of a run: the file head (to put before the data) and the report.
pub struct CompressOutcome {
    /// The 8-byte length and the JSON header.
    pub header: Vec<u8>,
    /// Totals.
    pub summary: Summary,
    /// One row per fine-tune tensor.
    pub rows: Vec<TensorRow>,
}

/// Byte budget of a run, decided from the headers before any tensor is read.
pub(crate) struct BudgetPlan {
    pub(crate) target_bytes: u64,
    pub(crate) f16_delta_bytes: u64,
    pub(crate) fixed_bytes: u64,
    pub(crate) header_reserve_bytes: u64,
    pub(crate) matrix_bits: u64,
    pub(crate) matrix_elements: u64,
}

impl BudgetPlan {
    /// Budget of an `[m, n]` matrix: its share of the matrix bits by element count.
    pub(crate) fn matrix_budget_bits(&self, m: usize, n: usize) -> u64 {
        let share = self.matrix_bits as f64 * (m * n) as f64 / self.matrix_elements as f64;
        (share as u64).saturating_sub(PADDING_BITS)
    }
}

/// Compresses the delta between `base` and `finetuned`, writing the data to `sink`.
///
/// Builds the GPU context that `options.device` selects, once for the whole
/// run, when the method has GPU kernels. Fails when `options.device` is
/// [`Device::Gpu`] and no adapter is found or it cannot create a device.
pub fn compress(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<CompressOutcome> {
    check_options(options)?;
    let gpu = if options.method == Method::Adamix { open_context(options.device)? } else { None };
    compress_on(base, finetuned, options, gpu.as_ref(), events, sink)
}

/// [`compress`] with a GPU context the caller built, or on the CPU when `gpu` is `None`.
///
/// `options.device` is not consulted. Callers that run several compressions
/// (one per method, say) build the context once and pass it to each.
pub fn compress_on(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions, gpu: Option<&GpuContext>, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<CompressOutcome> {
    run_pipeline(base, finetuned, options, gpu, events, sink)
}

/// Runs the pipeline of [`compress`] with the GPU context given, if any.
fn run_pipeline(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions, gpu: Option<&GpuContext>, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<CompressOutcome> {
    let clock = Stopwatch::start();
    let gpu = gpu.filter(|_| options.method == Method::Adamix);

    // 1. Pair tensors and plan the budget from the headers alone.
    let run = RunPlan::new(base, finetuned, options)?;
    events(Event::Plan(&run.pairing, run.len()));

    // 2. One tensor at a time: read, compress, write, release.
    let mut outputs = Vec::with_capacity(run.len());
    for index in 0..run.len() {
        let job = TensorJob { base, finetuned, run: &run, index, options, cache: None, gpu };
        let mut stage = |stage: &str| events(Event::Progress { tensor: job.name(), stage, index, total: run.len() });
        let output = block_on(job.run(sink, &mut stage))?;
        events(Event::Tensor(&output.row));
        outputs.push(output);
    }

    // 3. The header, with the records and the base fingerprint.
    let device = gpu.map_or_else(|| "cpu".to_string(), GpuContext::adapter_label);
    finish_run(finetuned, options, &run, outputs, device, clock.seconds())
}

/// What a run decides from the headers alone, before reading any tensor.
pub struct RunPlan {
    plans: Vec<(String, Plan)>,
    budget: BudgetPlan,
    pairing: PairingReport,
}

impl RunPlan {
    /// Checks the options, pairs the tensors and plans the budget.
    pub fn new(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions) -> Result<RunPlan> {
        check_options(options)?;
        let (plans, pairing) = pair(base, finetuned, options.store_mismatched)?;
        let budget = plan_budget(finetuned, &plans, options)?;
        Ok(RunPlan { plans, budget, pairing })
    }

    /// Number of tensors of the fine-tune, each of which the run stores or records.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// Returns whether the fine-tune has no tensors.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Name of tensor `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.plans[index].0
    }

    /// Element count of tensor `index` when it is a matrix the method compresses, else 0.
    ///
    /// The page's scheduler starts the largest matrices first.
    pub fn matrix_elements(&self, index: usize) -> u64 {
        self.matrix_shape(index).map_or(0, |(m, n)| (m * n) as u64)
    }

    /// Returns the shape `[m, n]` of tensor `index` when it is a matrix the method compresses.
    pub fn matrix_shape(&self, index: usize) -> Option<(usize, usize)> {
        match self.plans[index].1 {
            Plan::Matrix(m, n) => Some((m, n)),
            _ => None,
        }
    }

    /// Returns the bit budget of an `[m, n]` matrix in this run.
    pub fn matrix_budget_bits(&self, m: usize, n: usize) -> u64 {
        self.budget.matrix_budget_bits(m, n)
    }

    pub(crate) fn budget(&self) -> &BudgetPlan {
        &self.budget
    }

    /// Returns the pairing report of the headers. Its list of unchanged tensors is empty until tensors are read.
    pub fn pairing(&self) -> &PairingReport {
        &self.pairing
    }
}

/// One tensor's share of a run: its record, its report row and its stored
/// parts, whose bytes went to the data sink.
///
/// The page's workers compress different tensors and send their outputs to
/// one worker as JSON, which joins them with [`finish_run`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorOutput {
    /// The container record.
    pub record: TensorRecord,
    /// The report row.
    pub row: TensorRow,
    /// The stored tensors, in data order.
    pub parts: Vec<StoredPart>,
    /// The GPU error after which the tensor was finished on the CPU, if any.
    pub gpu_error: Option<String>,
}

/// Compresses tensor `index` of `run`, writing its data to `sink`.
///
/// Takes the delta, SVD and cost table from `cache` when it contains the
/// tensor; the result is the same as without it. `stage` receives the names
/// of the steps as they start. The future awaits only the GPU kernels, so
/// with `gpu` `None` it is ready at its first poll.
#[allow(clippy::too_many_arguments)]
pub async fn compress_tensor(base: &Checkpoint, finetuned: &Checkpoint, options: &CompressOptions, run: &RunPlan, index: usize, gpu: Option<&GpuContext>, cache: Option<&MatrixCache>, sink: &mut dyn DataSink, stage: &mut dyn FnMut(&str)) -> Result<TensorOutput> {
    let gpu = gpu.filter(|_| options.method == Method::Adamix);
    TensorJob { base, finetuned, run, index, options, cache, gpu }.run(sink, stage).await
}

/// Joins the outputs of every tensor of `run`, in tensor order, into the file head and the report.
pub fn finish_run(finetuned: &Checkpoint, options: &CompressOptions, run: &RunPlan, outputs: Vec<TensorOutput>, device: String, seconds: f64) -> Result<CompressOutcome> {
    if outputs.len() != run.len() || outputs.iter().zip(&run.plans).any(|(output, (name, _))| &output.record.name != name) {
        return Err(Error::InvalidOptions(format!("the outputs of {} tensors do not match the run's {} tensors in order", outputs.len(), run.len())));
    }
    let mut writer = ContainerWriter::new();
    let mut pairing = run.pairing.clone();
    let mut notices = finetuned.notices.clone();
    let (mut records, mut rows) = (Vec::with_capacity(outputs.len()), Vec::with_capacity(outputs.len()));
    for output in outputs {
        writer.append_parts(&output.parts);
        if output.record.kind == Kind::Unchanged {
            pairing.unchanged.push(output.record.name.clone());
        }
        if let Some(error) = output.gpu_error {
            notices.push(format!("tensor '{}': the GPU failed, so it was compressed on the CPU instead, with the same result: {error}", output.record.name));
        }
        records.push(output.record);
        rows.push(output.row);
    }
    notices.extend(base_mismatch_notice(&rows));
    notices.extend(dropped_matrices_notice(&rows));
    let metadata = build_metadata(finetuned, options, &records)?;
    let header = writer.header(&metadata);
    notices.extend(over_target_notice(&run.budget, header.len() as u64 + writer.data_bytes(), rows.iter().any(|row| row.matrix)));
    let summary = summarize(&run.budget, &rows, header.len() as u64, writer.data_bytes(), options, pairing, device, notices, seconds);
    Ok(CompressOutcome { header, summary, rows })
}

/// Median `‖ΔW‖ / ‖W_base‖` over the compressed matrices above which the base
/// is likely not the model the fine-tune was trained from. Fine-tunes measured
/// here stay below 0.05; two unrelated models give about √2.
const SUSPICIOUS_DELTA_RATIO: f64 = 0.5;

/// Returns a notice when the deltas are about as large as the weights, the sign of a wrong base.
fn base_mismatch_notice(rows: &[TensorRow]) -> Option<String> {
    let mut ratios: Vec<f64> = rows.iter().filter(|r| r.matrix).filter_map(|r| r.delta_norm_ratio).collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    (median > SUSPICIOUS_DELTA_RATIO).then(|| format!(
        "the median ‖ΔW‖/‖W_base‖ over {} matrices is {median:.2}, where fine-tunes usually stay below 0.1: check that the base checkpoint is the model this fine-tune was trained from",
        ratios.len()))
}

/// Returns a notice when the file is larger than its target.
///
/// A run with matrices rejects a target below the fixed costs before any
/// work, so this is expected only without matrices, where the tensors stored
/// as f16 deltas or whole decide the size.
/// Smallest positive normal f16 number. The quantizer stores its group scales
/// and minimums in f16, so values far below it lose their precision.
const F16_MIN_NORMAL: f64 = 6.103_515_625e-5;

/// Returns a notice naming the changed matrices that kept no triplet, whose whole delta is therefore dropped.
fn dropped_matrices_notice(rows: &[TensorRow]) -> Option<String> {
    let dropped: Vec<&TensorRow> = rows.iter()
        .filter(|row| row.matrix && row.kept_rank == Some(0) && row.delta_norm_squared.unwrap_or(0.0) > 0.0)
        .collect();
    let largest_rms = dropped.iter()
        .map(|row| (row.delta_norm_squared.unwrap_or(0.0) / row.shape.iter().product::<usize>().max(1) as f64).sqrt())
        .fold(0.0f64, f64::max);
    let reason = if largest_rms < F16_MIN_NORMAL {
        format!("Their deltas (root mean square at most {largest_rms:.1e}) are below the smallest normal f16 number ({F16_MIN_NORMAL:.1e}), in which the quantizer stores its scales, so no width lowers their error; each dropped weight differs from the fine-tune by that root mean square")
    } else {
        "The budget is too small for one triplet of each: raise the ratio".to_string()
    };
    let names: Vec<&str> = dropped.iter().map(|row| row.name.as_str()).collect();
    let counted = if dropped.len() == 1 { "1 matrix".to_string() } else { format!("{} matrices", dropped.len()) };
    (!dropped.is_empty()).then(|| format!("{counted} kept no triplet, so the whole delta is dropped (relative error 1): {}. {reason}.", names.join(", ")))
}

fn over_target_notice(budget: &BudgetPlan, file_bytes: u64, has_matrices: bool) -> Option<String> {
    let reason = if has_matrices {
        "with compressed matrices this is not expected, so please report it with the command and the shapes of the tensors"
    } else {
        "no tensor is a matrix that can be compressed, so the tensors stored as f16 deltas or whole decide the size"
    };
    (file_bytes > budget.target_bytes).then(|| format!("the file takes {file_bytes} bytes, above the target of {} bytes: {reason}", budget.target_bytes))
}

fn check_options(options: &CompressOptions) -> Result<()> {
    if !(options.ratio > 0.0 && options.ratio <= 1.0) {
        return Err(Error::InvalidOptions(format!("ratio {} is outside (0, 1]; use a value such as 1/16", options.ratio)));
    }
    let widths_valid = options.widths.first() == Some(&0)
        && options.widths.windows(2).all(|w| w[0] < w[1])
        && options.widths.iter().all(|&w| w <= 8);
    if !widths_valid || options.widths.len() < 2 {
        return Err(Error::InvalidOptions(format!("candidate widths {:?} must start at 0, ascend and stay within 8", options.widths)));
    }
    Ok(())
}

/// Decides the byte budget: fixed costs and the header first, the matrices share the rest.
fn plan_budget(finetuned: &Checkpoint, plans: &[(String, Plan)], options: &CompressOptions) -> Result<BudgetPlan> {
    let float_elements: u64 = finetuned.names().filter_map(|n| finetuned.entry(n))
        .filter(|e| e.dtype.is_float()).map(|e| e.numel() as u64).sum();
    let f16_delta_bytes = 2 * float_elements;
    let target_bytes = (options.ratio * f16_delta_bytes as f64) as u64;

    let (mut fixed_bytes, mut header_reserve_bytes, mut matrix_elements) = (0u64, 1024u64, 0u64);
    for (name, plan) in plans {
        let entry = finetuned.entry(name).expect("plans come from the fine-tune");
        let name_bytes = name.len() as u64;
        let record_bytes = name_bytes + 160;
        let entry_bytes = name_bytes + 110;
        match plan {
            Plan::Matrix(m, n) => {
                matrix_elements += (*m * *n) as u64;
                header_reserve_bytes += record_bytes + 4 * entry_bytes + 96;
            }
            Plan::SmallDelta => {
                fixed_bytes += 2 * entry.numel() as u64;
                header_reserve_bytes += record_bytes + entry_bytes;
            }
            Plan::CompareBytes | Plan::Whole => {
                fixed_bytes += entry.byte_len();
                header_reserve_bytes += record_bytes + entry_bytes;
            }
        }
    }

    let available = target_bytes as i64 - fixed_bytes as i64 - header_reserve_bytes as i64;
    if matrix_elements > 0 && available <= 0 {
        let smallest_ratio = (fixed_bytes + header_reserve_bytes) as f64 / f16_delta_bytes as f64;
        return Err(Error::InvalidOptions(format!(
            "ratio {:.5} leaves {target_bytes} bytes, but tensors that are not compressed and the header already take {} bytes; choose a ratio above {smallest_ratio:.5}",
            options.ratio, fixed_bytes + header_reserve_bytes)));
    }
    Ok(BudgetPlan {
        target_bytes, f16_delta_bytes, fixed_bytes, header_reserve_bytes,
        matrix_bits: 8 * available.max(0) as u64,
        matrix_elements: matrix_elements.max(1),
    })
}

/// The work on one tensor of the fine-tune.
struct TensorJob<'a> {
    base: &'a Checkpoint,
    finetuned: &'a Checkpoint,
    run: &'a RunPlan,
    index: usize,
    options: &'a CompressOptions,
    cache: Option<&'a MatrixCache>,
    gpu: Option<&'a GpuContext>,
}

impl TensorJob<'_> {
    fn name(&self) -> &str {
        self.run.name(self.index)
    }

    /// Stores the tensor through a writer of its own and returns its output.
    async fn run(&self, sink: &mut dyn DataSink, stage: &mut dyn FnMut(&str)) -> Result<TensorOutput> {
        stage("read");
        let clock = Stopwatch::start();
        let name = self.name();
        let plan = self.run.plans[self.index].1;
        let entry = self.finetuned.entry(name).expect("plans come from the fine-tune");
        let mut record = TensorRecord {
            name: name.to_string(), kind: Kind::Whole, dtype: entry.dtype.name().to_string(),
            shape: entry.shape.clone(), base_xxh3: None, allocation: None, data_xxh3: None,
        };
        let mut row = TensorRow {
            name: name.to_string(), kind: String::new(), shape: entry.shape.clone(), dtype: record.dtype.clone(),
            delta_norm_ratio: None, kept_rank: None, width_counts: BTreeMap::new(), rel_error: None,
            delta_norm_squared: None, matrix: false, tensor_type: crate::report::tensor_type(name).into(), code_bits: 0, bytes: 0, budget_bytes: None, seconds: 0.0, spectrum: Vec::new(), allocation: Vec::new(),
            device: "cpu".into(),
        };
        let mut writer = ContainerWriter::new();
        writer.begin_record();
        let gpu_error = match plan {
            Plan::Whole => self.store_whole(&mut writer, sink, &mut record).map(|()| None)?,
            Plan::CompareBytes => self.compare_bytes(&mut writer, sink, &mut record).map(|()| None)?,
            Plan::SmallDelta | Plan::Matrix(..) => self.store_delta(plan, &mut writer, sink, &mut record, &mut row, stage).await?,
        };
        stage("write");
        record.data_xxh3 = writer.finish_record();
        row.kind = if record.kind.is_matrix() { self.options.method.name().into() } else { record.kind.label().into() };
        row.matrix = record.kind.is_matrix();
        row.bytes = writer.data_bytes();
        row.seconds = clock.seconds();
        Ok(TensorOutput { record, row, parts: writer.parts().to_vec(), gpu_error: gpu_error.map(|e| e.to_string()) })
    }

    fn store_whole(&self, writer: &mut ContainerWriter, sink: &mut dyn DataSink, record: &mut TensorRecord) -> Result<()> {
        let entry = self.finetuned.entry(self.name()).expect("plans come from the fine-tune");
        let bytes = self.finetuned.read_bytes(self.name())?;
        writer.add(sink, &format!("{}/whole", self.name()), entry.dtype, &entry.shape, &bytes)?;
        record.kind = Kind::Whole;
        Ok(())
    }

    fn compare_bytes(&self, writer: &mut ContainerWriter, sink: &mut dyn DataSink, record: &mut TensorRecord) -> Result<()> {
        let base_bytes = self.base.read_bytes(self.name())?;
        let ft_bytes = self.finetuned.read_bytes(self.name())?;
        let same_dtype = self.base.entry(self.name()).map(|e| e.dtype) == self.finetuned.entry(self.name()).map(|e| e.dtype);
        if same_dtype && base_bytes == ft_bytes {
            record.kind = Kind::Unchanged;
            record.base_xxh3 = Some(hex64(xxh3_64(&base_bytes)));
            return Ok(());
        }
        self.store_whole(writer, sink, record)
    }

    async fn store_delta(&self, plan: Plan, writer: &mut ContainerWriter, sink: &mut dyn DataSink, record: &mut TensorRecord, row: &mut TensorRow, stage: &mut dyn FnMut(&str)) -> Result<Option<GpuError>> {
        // 1. The delta: from the cache when an explorer built one, else read and subtract.
        let cached = self.cache.and_then(|cache| cache.get(self.name()));
        let owned;
        let delta = match cached {
            Some(entry) => &entry.delta,
            None => {
                owned = read_delta(self.base, self.finetuned, self.name(), stage)?;
                &owned
            }
        };
        record.base_xxh3 = Some(delta.base_xxh3.clone());
        if delta.delta_norm_squared == 0.0 {
            record.kind = Kind::Unchanged;
            return Ok(None);
        }
        row.delta_norm_squared = Some(delta.delta_norm_squared);
        // An all-zero base tensor has no ratio; dividing by a tiny norm printed ratios of 1e135.
        row.delta_norm_ratio = (delta.base_norm_squared > 0.0).then(|| (delta.delta_norm_squared / delta.base_norm_squared).sqrt());

        // 2. Compress: the method for matrices, f16 for the rest.
        match plan {
            Plan::Matrix(m, n) => self.store_matrix(&delta.values, m, n, writer, sink, record, row, stage).await,
            _ => self.store_f16_delta(&delta.values, delta.delta_norm_squared, writer, sink, record, row).map(|()| None),
        }
    }

    /// Stores a 2-D delta; also returns the GPU error after which its cost tables were built on the CPU, if any.
    #[allow(clippy::too_many_arguments)]
    async fn store_matrix(&self, delta: &[f32], m: usize, n: usize, writer: &mut ContainerWriter, sink: &mut dyn DataSink, record: &mut TensorRecord, row: &mut TensorRow, stage: &mut dyn FnMut(&str)) -> Result<Option<GpuError>> {
        // 1. Encode with the chosen method within the matrix's budget.
        let budget_bits = self.run.budget.matrix_budget_bits(m, n);
        let name = self.name();
        let mut cost_tables = CostTableBuilder::new(name, self.gpu);
        let (encoded, measured) = match self.options.method {
            Method::Adamix => {
                let (delta, norm_squared) = (MatRef::from_row_major_slice(delta, m, n), row.delta_norm_squared.unwrap_or(0.0));
                let adamix = match self.cache.and_then(|cache| cache.get(name)) {
                    Some(entry) => adamix::encode_with_table(name, delta, norm_squared, &entry.triplets, &entry.table, budget_bits, stage)?,
                    None => adamix::compress_matrix_with(name, delta, norm_squared, &self.options.widths, budget_bits, self.options.svd, &mut cost_tables, stage).await?,
                };
                (adamix.encoded, adamix.squared_error)
            }
            Method::DeltaCome => (delta_come::compress_matrix(name, delta, m, n, budget_bits, self.options.svd, stage)?, None),
            Method::LowRank => (low_rank::compress_matrix(name, delta, m, n, budget_bits, self.options.svd, stage)?, None),
            Method::Bitdelta => (bitdelta::compress_matrix(delta, m, n, budget_bits), None),
        };

        row.device = match cost_tables.gpu_error() {
            Some(error) => format!("cpu (fallback: {error})"),
            None if cost_tables.built_on_gpu() => "gpu".into(),
            None => "cpu".into(),
        };

        // 2. Measure: ADAMIX from its factors where they are exact enough,
        // else from the stored values rebuilt exactly as apply rebuilds them.
        // NOTE: This stays on the CPU on the GPU path too. On Mesa's lavapipe
        // (2 cores of a shared VM), `gpu::squared_error` took 20.1 s over the
        // 37 matrices of the demo pair at ratio 1/16, against 0.34 s for
        // `decode` and `squared_error` here. For the largest, [30522, 384] at
        // rank 88, it took 11.9 s against 0.28 s.
        let squared = match measured {
            Some(squared) => squared,
            None => {
                stage("measure");
                let reconstruction = encoded.decode().map_err(|message| Error::Numerical { tensor: name.into(), message })?;
                squared_error(reconstruction.as_ref(), delta)
            }
        };
        let delta_norm_squared = row.delta_norm_squared.unwrap_or(0.0);
        row.rel_error = Some((squared / delta_norm_squared.max(f64::MIN_POSITIVE)).sqrt());
        row.kept_rank = encoded.kept_rank();
        row.width_counts = encoded.width_counts();
        row.budget_bytes = Some(budget_bits / 8);
        (row.spectrum, row.allocation) = encoded.spectrum_and_allocation();
        row.code_bits = encoded.code_bits();

        // 3. Write the stored parts and the record.
        for (suffix, dtype, shape, bytes) in encoded.parts() {
            writer.add(sink, &format!("{name}/{suffix}"), dtype, &shape, &bytes)?;
        }
        record.kind = match &encoded {
            EncodedMatrix::Quantized { allocation, .. } => {
                record.allocation = Some(encode_allocation(allocation));
                Kind::Quantized
            }
            EncodedMatrix::LowRank { .. } => Kind::LowRank,
            EncodedMatrix::BitDelta(_) => Kind::Bitdelta,
        };
        Ok(cost_tables.into_gpu_error())
    }

    fn store_f16_delta(&self, delta: &[f32], delta_norm_squared: f64, writer: &mut ContainerWriter, sink: &mut dyn DataSink, record: &mut TensorRecord, row: &mut TensorRow) -> Result<()> {
        let stored: Vec<f16> = delta.iter().map(|&x| f16::from_f32(x)).collect();
        let error: f64 = delta.iter().zip(&stored).map(|(&x, s)| ((x - s.to_f32()) as f64).powi(2)).sum();
        row.rel_error = Some((error / delta_norm_squared).sqrt());
        let bytes: Vec<u8> = stored.iter().flat_map(|v| v.to_le_bytes()).collect();
        writer.add(sink, &format!("{}/delta", self.name()), Dtype::F16, &record.shape, &bytes)?;
        record.kind = Kind::F16Delta;
        Ok(())
    }
}

/// A float delta `W_ft − W_base` in f32, with what the report and the container need.
pub struct DeltaValues {
    /// Row-major values.
    pub values: Vec<f32>,
    /// XXH3-64 of the base tensor's bytes, as 16 hex digits.
    pub base_xxh3: String,
    /// `‖ΔW‖²`.
    pub delta_norm_squared: f64,
    /// `‖W_base‖²`.
    pub base_norm_squared: f64,
}

/// Reads both sides of tensor `name`, hashes the base and subtracts in f32.
pub fn read_delta(base: &Checkpoint, finetuned: &Checkpoint, name: &str, stage: &mut dyn FnMut(&str)) -> Result<DeltaValues> {
    let base_bytes = base.read_bytes(name)?;
    let base_xxh3 = hex64(xxh3_64(&base_bytes));
    let base_entry = base.entry(name).expect("paired tensors exist in the base");
    let base_values = checked_f32(base, name, base_entry.dtype, &base_bytes)?;
    drop(base_bytes);
    let mut values = finetuned.read_f32(name)?;
    stage("delta");
    for (d, b) in values.iter_mut().zip(&base_values) {
        *d -= b;
    }
    let delta_norm_squared = values.iter().map(|&x| (x as f64).powi(2)).sum();
    let base_norm_squared = base_values.iter().map(|&x| (x as f64).powi(2)).sum();
    Ok(DeltaValues { values, base_xxh3, delta_norm_squared, base_norm_squared })
}

/// Converts float bytes to f32 and rejects non-finite values, naming the file and tensor.
fn checked_f32(checkpoint: &Checkpoint, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let values = crate::checkpoint::dtype::to_f32(dtype, bytes)
        .ok_or_else(|| Error::tensor(checkpoint.file_of(name), name, format!("dtype {} is not a float type", dtype.name())))?;
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::tensor(checkpoint.file_of(name), name, format!(
            "element {position} is {}; the checkpoint contains non-finite weights, so re-export it from a healthy training run", values[position])));
    }
    Ok(values)
}

fn build_metadata(finetuned: &Checkpoint, options: &CompressOptions, records: &[TensorRecord]) -> Result<BTreeMap<String, String>> {
    let mut hashes = Vec::new();
    for record in records {
        if let Some(hash) = &record.base_xxh3 {
            hashes.extend_from_slice(hash.as_bytes());
        }
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("adamix.format".into(), FORMAT_NAME.into());
    metadata.insert("adamix.format_version".into(), FORMAT_VERSION.into());
    metadata.insert("adamix.method".into(), options.method.name().into());
    metadata.insert("adamix.ratio".into(), format!("{}", options.ratio));
    metadata.insert("adamix.base_fingerprint".into(), hex64(xxh3_64(&hashes)));
    metadata.insert("adamix.finetuned_metadata".into(), serde_json::to_string(finetuned.metadata()).expect("strings serialize"));
    metadata.insert("adamix.tensors".into(), serde_json::to_string(records).expect("records serialize"));
    Ok(metadata)
}

#[allow(clippy::too_many_arguments)]
fn summarize(budget: &BudgetPlan, rows: &[TensorRow], header_bytes: u64, data_bytes: u64, options: &CompressOptions, pairing: PairingReport, device: String, notices: Vec<String>, seconds: f64) -> Summary {
    let matrix_rows = rows.iter().filter(|r| r.matrix);
    let matrix_bytes: u64 = matrix_rows.clone().map(|r| r.bytes).sum();
    let matrix_params: u64 = matrix_rows.clone().map(|r| (r.shape[0] * r.shape[1]) as u64).sum();
    let code_bits: u64 = matrix_rows.map(|r| r.code_bits).sum();
    let compressed_bytes = header_bytes + data_bytes;
    let fixed_bytes = data_bytes - matrix_bytes;
    let budget_note = format!(
        "Target {} bytes ({:.4} × {} f16 bytes). Tensors not compressed take {} bytes and the header {} bytes (reserved {} + {}), so the matrices shared {} bytes in proportion to their size and used {}.",
        budget.target_bytes, options.ratio, budget.f16_delta_bytes, fixed_bytes, header_bytes,
        budget.fixed_bytes, budget.header_reserve_bytes, budget.matrix_bits / 8, matrix_bytes);
    Summary {
        method: options.method.name(),
        compressed_bytes,
        f16_delta_bytes: budget.f16_delta_bytes,
        ratio_target: options.ratio,
        ratio_achieved: compressed_bytes as f64 / budget.f16_delta_bytes.max(1) as f64,
        rel_error_total: total_relative_error(rows),
        matrix_bytes,
        fixed_bytes,
        header_bytes,
        nominal_bits_per_parameter: code_bits as f64 / matrix_params.max(1) as f64,
        budget_note,
        seconds,
        pairing,
        device,
        notices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix_row(delta_norm_ratio: f64) -> TensorRow {
        TensorRow {
            name: "w".into(), kind: "adamix".into(), shape: vec![4, 4], dtype: "F32".into(), delta_norm_ratio: Some(delta_norm_ratio),
            kept_rank: Some(1), width_counts: BTreeMap::new(), rel_error: Some(0.1), delta_norm_squared: Some(1.0), matrix: true,
            tensor_type: "other".into(), code_bits: 0, bytes: 0, budget_bytes: None, seconds: 0.0, spectrum: Vec::new(), allocation: Vec::new(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn wrong_base_gets_notice() {
        let rows: Vec<TensorRow> = [1.4, 1.3, 0.02].into_iter().map(matrix_row).collect();
        let notice = base_mismatch_notice(&rows).expect("a median ratio of 1.3 is suspicious");
        assert!(notice.contains("1.30"), "{notice}");
        assert!(notice.contains("base checkpoint"), "{notice}");
    }

    #[test]
    fn usual_fine_tune_gets_no_notice() {
        let rows: Vec<TensorRow> = [0.01, 0.03, 0.9].into_iter().map(matrix_row).collect();
        assert_eq!(base_mismatch_notice(&rows), None);
        assert_eq!(base_mismatch_notice(&[]), None);
    }
}
