//! The budget explorer: compress once, then re-solve at other ratios fast.
//!
//! The expensive steps of a matrix (reading, the delta, the SVD, the cost
//! table) do not depend on the budget, except for how many triplets are
//! candidates. The explorer runs them once at the largest ratio it offers and
//! keeps the results in memory; a new ratio then only re-allocates widths,
//! re-quantizes and measures, through the same code as a full run.
//!
//! An explorer may own only a share of the tensors ([`Share`]), so that the
//! page can spread one exploration over several workers: each solves its own
//! tensors at a ratio ([`Explorer::solve_share`]) and one joins all outputs
//! ([`Explorer::finish`]). The joined result equals a single explorer's.
//!
//! NOTE: the results equal a full run's exactly when every matrix gets the
//! full SVD (smaller side at most `svd::FULL_SVD_MAX_SIDE`). For larger
//! matrices the randomized SVD at the explorer's rank differs slightly from
//! one at the run's rank.

use std::collections::HashMap;

use faer::MatRef;
use serde::Serialize;

use crate::allocate::CostTable;
use crate::budget::max_rank;
use crate::checkpoint::Checkpoint;
use crate::compress::{compress_tensor, finish_run, read_delta, CompressOptions, CompressOutcome, DeltaValues, Event, RunPlan, TensorOutput};
use crate::container::DataSink;
use crate::cost::build_cost_table;
use crate::error::{Error, Result};
use crate::gpu::block_on;
use crate::svd::{top_triplets, Triplets};

/// The largest ratio the explorer offers.
pub const EXPLORER_MAX_RATIO: f64 = 0.25;

/// The cached analysis of one matrix.
pub struct CachedMatrix {
    /// The delta and its norms.
    pub delta: DeltaValues,
    /// Leading triplets, at least as many as any offered ratio can keep.
    pub triplets: Triplets,
    /// Cost table of those triplets.
    pub table: CostTable,
}

/// Cached matrices by tensor name.
#[derive(Default)]
pub struct MatrixCache {
    entries: HashMap<String, CachedMatrix>,
}

impl MatrixCache {
    /// Returns the cached matrix `name`, if any.
    pub fn get(&self, name: &str) -> Option<&CachedMatrix> {
        self.entries.get(name)
    }
}

/// The tensors an explorer owns: share `part` of `parts`.
///
/// [`split_tensors`] decides the owner of each tensor from the headers alone,
/// so every worker given the same files and `parts` agrees on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Zero-based index of this share.
    pub part: usize,
    /// Number of shares.
    pub parts: usize,
}

impl Share {
    /// Every tensor in one explorer.
    pub const WHOLE: Share = Share { part: 0, parts: 1 };
}

/// Returns the share that owns each tensor of `run` when split `parts` ways.
///
/// Matrices go largest first to the share with the fewest matrix elements so
/// far, because a solve's time grows with them. The other tensors cost little
/// and go to the share with the fewest tensors among the least loaded.
///
/// TODO: A matrix is one unit, so the largest bounds a solve: the demo pair's
/// [30522, 384] embedding takes half of it at 1/8. The correction, the error
/// feedback and the measurement treat rows independently, so blocks of rows
/// (multiples of the quantizer's 128-row groups) could go to different shares.
pub fn split_tensors(run: &RunPlan, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    let mut order: Vec<usize> = (0..run.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(run.matrix_elements(i)));
    let mut load = vec![(0u64, 0usize); parts];
    let mut owner = vec![0; run.len()];
    for index in order {
        let part = (0..parts).min_by_key(|&p| load[p]).expect("parts is at least 1");
        owner[index] = part;
        load[part].0 += run.matrix_elements(index);
        load[part].1 += 1;
    }
    owner
}

/// The target sizes an explorer accepts.
#[derive(Debug, Clone, Serialize)]
pub struct Reachable {
    /// Smallest ratio: below it the tensors that are not compressed and the space reserved for the header leave nothing for the matrices.
    pub min_ratio: f64,
    /// Largest ratio offered.
    pub max_ratio: f64,
    /// Target size at `min_ratio`, in bytes; the file is smaller when the header needs less than its reserve.
    pub min_bytes: u64,
    /// Target size at `max_ratio`, in bytes.
    pub max_bytes: u64,
    /// f16 size of the fine-tune's float tensors, the size ratios apply to.
    pub f16_delta_bytes: u64,
}

/// A pair of checkpoints with their matrices analysed once.
pub struct Explorer {
    base: Checkpoint,
    finetuned: Checkpoint,
    cache: MatrixCache,
    reachable: Reachable,
    /// Indices of the tensors this explorer owns, ascending.
    owned: Vec<usize>,
}

impl Explorer {
    /// Reads every matrix once and computes its delta, SVD and cost table.
    ///
    /// The other tensors are kept in memory as they are in the files, so that
    /// a solve reads nothing. In the browser every read is a `FileReaderSync`
    /// call, and re-reading the 64 small tensors of the demo pair took
    /// 0.1–0.2 s of each solve (measured at load 4–5 on 2 cores). Those bytes
    /// are fewer than the f32 deltas of the matrices that the cache keeps.
    pub fn build(base: Checkpoint, finetuned: Checkpoint, events: &mut dyn FnMut(Event)) -> Result<Explorer> {
        Explorer::build_share(base, finetuned, Share::WHOLE, events)
    }

    /// [`Explorer::build`] for the tensors of `share` only.
    pub fn build_share(mut base: Checkpoint, mut finetuned: Checkpoint, share: Share, events: &mut dyn FnMut(Event)) -> Result<Explorer> {
        if share.part >= share.parts {
            return Err(Error::InvalidOptions(format!("explorer share {} of {} does not exist; shares count from 0", share.part, share.parts)));
        }
        let run = RunPlan::new(&base, &finetuned, &explorer_options(EXPLORER_MAX_RATIO))?;
        events(Event::Plan(run.pairing(), run.len()));
        let owners = split_tensors(&run, share.parts);
        let owned: Vec<usize> = (0..run.len()).filter(|&i| owners[i] == share.part).collect();

        let mut cache = MatrixCache::default();
        for (position, &index) in owned.iter().enumerate() {
            let name = run.name(index);
            let mut stage = |stage: &str| events(Event::Progress { tensor: name, stage, index: position, total: owned.len() });
            stage("read");
            let Some((m, n)) = run.matrix_shape(index) else {
                finetuned.keep_in_memory(name)?;
                if base.entry(name).is_some() {
                    base.keep_in_memory(name)?;
                }
                continue;
            };
            let entry = analyse_matrix(&base, &finetuned, &run, name, m, n, &mut stage)?;
            cache.entries.insert(name.to_string(), entry);
        }

        let reachable = reachable_sizes(&run);
        Ok(Explorer { base, finetuned, cache, reachable, owned })
    }

    /// Returns the sizes this explorer can reach.
    pub fn reachable(&self) -> &Reachable {
        &self.reachable
    }

    /// Compresses at `ratio` from the cache, writing the data to `sink`. The explorer must own every tensor.
    pub fn solve(&self, ratio: f64, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<CompressOutcome> {
        let clock = crate::clock::Stopwatch::start();
        let outputs = self.solve_share(ratio, events, sink)?;
        self.finish(ratio, outputs.into_iter().map(|(_, output)| output).collect(), clock.seconds())
    }

    /// Compresses this explorer's own tensors at `ratio`, in tensor order,
    /// writing their data to `sink`; returns each with its tensor index.
    pub fn solve_share(&self, ratio: f64, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<Vec<(usize, TensorOutput)>> {
        self.check_reachable(ratio)?;
        let options = explorer_options(ratio);
        let run = RunPlan::new(&self.base, &self.finetuned, &options)?;
        let mut outputs = Vec::with_capacity(self.owned.len());
        for &index in &self.owned {
            let name = run.name(index);
            let mut stage = |stage: &str| events(Event::Progress { tensor: name, stage, index, total: run.len() });
            let output = block_on(compress_tensor(&self.base, &self.finetuned, &options, &run, index, None, Some(&self.cache), sink, &mut stage))?;
            events(Event::Tensor(&output.row));
            outputs.push((index, output));
        }
        Ok(outputs)
    }

    /// Joins the outputs of every share at `ratio`, in tensor order, into the file head and the report.
    ///
    /// The device is reported as `cpu`: a solve builds no cost table, so it needs no GPU.
    pub fn finish(&self, ratio: f64, outputs: Vec<TensorOutput>, seconds: f64) -> Result<CompressOutcome> {
        self.check_reachable(ratio)?;
        let options = explorer_options(ratio);
        let run = RunPlan::new(&self.base, &self.finetuned, &options)?;
        finish_run(&self.finetuned, &options, &run, outputs, "cpu".into(), seconds)
    }

    fn check_reachable(&self, ratio: f64) -> Result<()> {
        let r = &self.reachable;
        if ratio >= r.min_ratio && ratio <= r.max_ratio {
            return Ok(());
        }
        Err(Error::InvalidOptions(format!(
            "ratio {ratio:.5} cannot be reached: the smallest is {:.5} ({} bytes, all taken by tensors that are not compressed and the space reserved for the header) and the largest offered is {:.5} ({} bytes)",
            r.min_ratio, r.min_bytes, r.max_ratio, r.max_bytes)))
    }
}

/// Returns the options of a run at `ratio`: ADAMIX with the default widths, the only method the explorer offers.
fn explorer_options(ratio: f64) -> CompressOptions {
    CompressOptions { ratio, ..Default::default() }
}

/// Computes the delta, the leading triplets that the largest ratio can keep, and their cost table.
fn analyse_matrix(base: &Checkpoint, finetuned: &Checkpoint, run: &RunPlan, name: &str, m: usize, n: usize, stage: &mut dyn FnMut(&str)) -> Result<CachedMatrix> {
    let options = explorer_options(EXPLORER_MAX_RATIO);
    let delta = read_delta(base, finetuned, name, stage)?;
    let rank = if delta.delta_norm_squared == 0.0 { 0 } else { max_rank(m, n, &options.widths, run.matrix_budget_bits(m, n)) };
    stage("svd");
    let triplets = top_triplets(MatRef::from_row_major_slice(&delta.values, m, n), rank, options.svd, name)?;
    stage("cost table");
    let table = build_cost_table(&triplets, &options.widths);
    Ok(CachedMatrix { delta, triplets, table })
}

/// Returns the reachable range of a run planned at the largest ratio offered.
fn reachable_sizes(run: &RunPlan) -> Reachable {
    let budget = run.budget();
    let fixed_bytes = budget.fixed_bytes + budget.header_reserve_bytes;
    Reachable {
        min_ratio: (fixed_bytes + 1) as f64 / budget.f16_delta_bytes as f64,
        max_ratio: EXPLORER_MAX_RATIO,
        min_bytes: fixed_bytes + 1,
        max_bytes: budget.target_bytes,
        f16_delta_bytes: budget.f16_delta_bytes,
    }
}
