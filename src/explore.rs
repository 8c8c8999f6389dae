//! The budget explorer: compress once, then re-solve at other ratios fast.
//!
//! The expensive steps of a matrix (reading, the delta, the SVD, the cost
//! table) do not depend on the budget, except for how many triplets are
//! candidates. The explorer runs them once at the largest ratio it offers and
//! keeps the results in memory; a new ratio then only re-allocates widths,
//! re-quantizes and measures, through the same code as a full run.
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
use crate::compress::{check_options, compress_with_cache, plan_budget, read_delta, CompressOptions, CompressOutcome, DeltaValues, Event};
use crate::container::DataSink;
use crate::cost::build_cost_table;
use crate::error::{Error, Result};
use crate::pair::{pair, Plan};
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

/// The sizes an explorer can reach.
#[derive(Debug, Clone, Serialize)]
pub struct Reachable {
    /// Smallest ratio: below it the tensors that are not compressed and the header leave nothing for the matrices.
    pub min_ratio: f64,
    /// Largest ratio offered.
    pub max_ratio: f64,
    /// File size at `min_ratio`, in bytes.
    pub min_bytes: u64,
    /// File size at `max_ratio`, in bytes.
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
}

impl Explorer {
    /// Reads every matrix once and computes its delta, SVD and cost table.
    ///
    /// The other tensors are kept in memory as they are in the files, so that
    /// a solve reads nothing. In the browser every read is a `FileReaderSync`
    /// call, and re-reading the 64 small tensors of the demo pair took
    /// 0.1–0.2 s of each solve (measured at load 4–5 on 2 cores). Those bytes
    /// are fewer than the f32 deltas of the matrices that the cache keeps.
    pub fn build(mut base: Checkpoint, mut finetuned: Checkpoint, events: &mut dyn FnMut(Event)) -> Result<Explorer> {
        let options = CompressOptions { ratio: EXPLORER_MAX_RATIO, ..Default::default() };
        check_options(&options)?;
        let (plans, pairing) = pair(&base, &finetuned, options.store_mismatched)?;
        let budget = plan_budget(&finetuned, &plans, &options)?;
        events(Event::Plan(&pairing, plans.len()));

        let mut cache = MatrixCache::default();
        for (index, (name, plan)) in plans.iter().enumerate() {
            let mut stage = |stage: &str| events(Event::Progress { tensor: name, stage, index, total: plans.len() });
            stage("read");
            let Plan::Matrix(m, n) = *plan else {
                finetuned.keep_in_memory(name)?;
                if base.entry(name).is_some() {
                    base.keep_in_memory(name)?;
                }
                continue;
            };
            let delta = read_delta(&base, &finetuned, name, &mut stage)?;
            let rank = if delta.delta_norm_squared == 0.0 { 0 } else { max_rank(m, n, &options.widths, budget.matrix_budget_bits(m, n)) };
            stage("svd");
            let triplets = top_triplets(MatRef::from_row_major_slice(&delta.values, m, n), rank, options.svd, name)?;
            stage("cost table");
            let table = build_cost_table(&triplets, &options.widths);
            cache.entries.insert(name.clone(), CachedMatrix { delta, triplets, table });
        }

        let fixed_bytes = budget.fixed_bytes + budget.header_reserve_bytes;
        let reachable = Reachable {
            min_ratio: (fixed_bytes + 1) as f64 / budget.f16_delta_bytes as f64,
            max_ratio: EXPLORER_MAX_RATIO,
            min_bytes: fixed_bytes + 1,
            max_bytes: budget.target_bytes,
            f16_delta_bytes: budget.f16_delta_bytes,
        };
        Ok(Explorer { base, finetuned, cache, reachable })
    }

    /// Returns the sizes this explorer can reach.
    pub fn reachable(&self) -> &Reachable {
        &self.reachable
    }

    /// Compresses at `ratio` from the cache, writing the data to `sink`.
    pub fn solve(&self, ratio: f64, events: &mut dyn FnMut(Event), sink: &mut dyn DataSink) -> Result<CompressOutcome> {
        let r = &self.reachable;
        if !(ratio >= r.min_ratio && ratio <= r.max_ratio) {
            return Err(Error::InvalidOptions(format!(
                "ratio {ratio:.5} cannot be reached: the smallest is {:.5} ({} bytes, all taken by tensors that are not compressed and the header) and the largest offered is {:.5} ({} bytes)",
                r.min_ratio, r.min_bytes, r.max_ratio, r.max_bytes)));
        }
        let options = CompressOptions { ratio, ..Default::default() };
        compress_with_cache(&self.base, &self.finetuned, &options, events, sink, Some(&self.cache))
    }
}
