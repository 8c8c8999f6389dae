//! The budget explorer: a solve from its cache equals a full compression and
//! reads nothing from the checkpoint files.

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adamix::checkpoint::{ByteSource, Checkpoint, MemorySource};
use adamix::error::Result;
use adamix::compress::{Event, TensorOutput};
use adamix::container::DataSink;
use adamix::explore::{Explorer, Share};

use common::{add, compress_to_bytes, normal_values, options_with_ratio, safetensors_file, seeded_rng, Tensor};

/// A source in memory that counts the reads made through it.
struct CountingSource {
    inner: MemorySource,
    reads: Arc<AtomicUsize>,
}

impl ByteSource for CountingSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_at(offset, len)
    }
}

/// Base and fine-tune with every kind of tensor a solve handles: matrices, a
/// vector (f16 delta), an integer tensor (compared by bytes) and a tensor
/// only in the fine-tune (stored whole).
fn pair_tensors() -> (Vec<Tensor>, Vec<Tensor>) {
    let mut rng = seeded_rng(41);
    let (mut base, mut finetuned) = (Vec::new(), Vec::new());
    for (name, rows, cols) in [("layers.0.query.weight", 128, 192), ("layers.0.up.weight", 192, 128)] {
        let weight = normal_values(&mut rng, rows * cols, 0.05);
        let delta = normal_values(&mut rng, rows * cols, 1e-3);
        base.push(Tensor::f32(name, &[rows, cols], &weight));
        finetuned.push(Tensor::f32(name, &[rows, cols], &add(&weight, &delta)));
    }
    let bias = normal_values(&mut rng, 128, 0.02);
    base.push(Tensor::f32("layers.0.query.bias", &[128], &bias));
    finetuned.push(Tensor::f32("layers.0.query.bias", &[128], &add(&bias, &normal_values(&mut rng, 128, 1e-3))));
    let positions: Vec<i64> = (0..64).collect();
    base.push(Tensor::i64("position_ids", &[1, 64], &positions));
    finetuned.push(Tensor::i64("position_ids", &[1, 64], &positions));
    finetuned.push(Tensor::f32("classifier.weight", &[4, 128], &normal_values(&mut rng, 4 * 128, 0.05)));
    (base, finetuned)
}

fn counting_checkpoint(name: &str, tensors: &[Tensor], reads: &Arc<AtomicUsize>) -> Checkpoint {
    let source = CountingSource { inner: MemorySource::new(name, safetensors_file(tensors, &[])), reads: Arc::clone(reads) };
    Checkpoint::open(vec![Box::new(source)]).expect("open checkpoint")
}

fn memory_checkpoint(name: &str, tensors: &[Tensor]) -> Checkpoint {
    common::memory_checkpoint(name, safetensors_file(tensors, &[])).expect("open checkpoint")
}

#[test]
fn solve_equals_full_compression() {
    let (base_tensors, finetuned_tensors) = pair_tensors();
    let (base, finetuned) = (memory_checkpoint("base.safetensors", &base_tensors), memory_checkpoint("finetuned.safetensors", &finetuned_tensors));
    let explorer = Explorer::build(
        memory_checkpoint("base.safetensors", &base_tensors), memory_checkpoint("finetuned.safetensors", &finetuned_tensors), &mut |_| {})
        .expect("build the explorer");

    for ratio in [1.0 / 8.0, 1.0 / 4.0] {
        let (full_file, full) = compress_to_bytes(&base, &finetuned, &options_with_ratio(ratio)).expect("full compression");
        let mut data = Vec::new();
        let explored = explorer.solve(ratio, &mut |_| {}, &mut data).expect("explorer solve");
        let mut explored_file = explored.header.clone();
        explored_file.extend_from_slice(&data);

        assert!(explored_file == full_file, "at ratio {ratio} the explorer's file ({} bytes) differs from the full compression's ({} bytes)",
            explored_file.len(), full_file.len());
        for (explored_row, full_row) in explored.rows.iter().zip(&full.rows) {
            assert_eq!(explored_row.rel_error, full_row.rel_error, "relative error of {} at ratio {ratio}", full_row.name);
        }
        assert_eq!(explored.summary.rel_error_total, full.summary.rel_error_total, "total relative error at ratio {ratio}");
    }
}

#[test]
fn solve_reads_no_file() {
    let (base_tensors, finetuned_tensors) = pair_tensors();
    let reads = Arc::new(AtomicUsize::new(0));
    let explorer = Explorer::build(
        counting_checkpoint("base.safetensors", &base_tensors, &reads), counting_checkpoint("finetuned.safetensors", &finetuned_tensors, &reads), &mut |_| {})
        .expect("build the explorer");
    let reads_after_build = reads.load(Ordering::SeqCst);

    let outcome = explorer.solve(1.0 / 8.0, &mut |_| {}, &mut Vec::new()).expect("explorer solve");

    let kinds: Vec<&str> = outcome.rows.iter().map(|row| row.kind.as_str()).collect();
    for kind in ["f16 delta", "unchanged", "whole"] {
        assert!(kinds.contains(&kind), "the pair has no tensor stored as {kind}: {kinds:?}");
    }
    assert_eq!(reads.load(Ordering::SeqCst), reads_after_build, "reads from the checkpoint files during a solve");
}

#[test]
fn shares_joined_equal_full_compression() {
    let (base_tensors, finetuned_tensors) = pair_tensors();
    let (base, finetuned) = (memory_checkpoint("base.safetensors", &base_tensors), memory_checkpoint("finetuned.safetensors", &finetuned_tensors));
    let shares: Vec<Explorer> = (0..2)
        .map(|part| Explorer::build_share(
            memory_checkpoint("base.safetensors", &base_tensors), memory_checkpoint("finetuned.safetensors", &finetuned_tensors),
            Share { part, parts: 2 }, &mut |_| {}).expect("build a share"))
        .collect();
    let ratio = 1.0 / 8.0;

    // Each share solves its own tensors; their data chunks follow the
    // progress event that names their tensor, as the page receives them. The
    // file is the head followed by every tensor's data in tensor order.
    let mut solved: Vec<(usize, TensorOutput, Vec<u8>)> = Vec::new();
    for share in &shares {
        let pieces = RefCell::new(Vec::<(usize, Vec<u8>)>::new());
        let mut events = |event: Event| {
            if let Event::Progress { index, .. } = event {
                let mut pieces = pieces.borrow_mut();
                if pieces.last().map(|(last, _)| *last) != Some(index) {
                    pieces.push((index, Vec::new()));
                }
            }
        };
        let outputs = share.solve_share(ratio, &mut events, &mut PieceSink(&pieces)).expect("solve a share");
        assert!(!outputs.is_empty(), "every share owns tensors");
        for ((index, output), (piece_index, data)) in outputs.into_iter().zip(pieces.into_inner()) {
            assert_eq!(index, piece_index, "data order of the share");
            solved.push((index, output, data));
        }
    }
    solved.sort_by_key(|(index, ..)| *index);

    let indices: Vec<usize> = solved.iter().map(|(index, ..)| *index).collect();
    assert_eq!(indices, (0..finetuned_tensors.len()).collect::<Vec<_>>(), "the shares together own every tensor once");
    let outputs = solved.iter().map(|(_, output, _)| output.clone()).collect();
    let joined = shares[1].finish(ratio, outputs, 0.0).expect("join the shares");
    let mut file = joined.header.clone();
    for (_, _, data) in &solved {
        file.extend_from_slice(data);
    }

    let (full_file, full) = compress_to_bytes(&base, &finetuned, &options_with_ratio(ratio)).expect("full compression");
    assert!(file == full_file, "the joined shares' file ({} bytes) differs from the full compression's ({} bytes)", file.len(), full_file.len());
    assert_eq!(joined.summary.rel_error_total, full.summary.rel_error_total, "total relative error");
}

#[test]
fn share_outside_parts_is_rejected() {
    let (base_tensors, finetuned_tensors) = pair_tensors();
    let result = Explorer::build_share(
        memory_checkpoint("base.safetensors", &base_tensors), memory_checkpoint("finetuned.safetensors", &finetuned_tensors),
        Share { part: 2, parts: 2 }, &mut |_| {});
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("share 2 of 2"), "{message}");
}

/// Appends each write to the data of the last tensor that started.
struct PieceSink<'a>(&'a RefCell<Vec<(usize, Vec<u8>)>>);

impl DataSink for PieceSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let mut pieces = self.0.borrow_mut();
        let (_, data) = pieces.last_mut().expect("a tensor's data follows its progress event");
        data.extend_from_slice(bytes);
        Ok(())
    }
}
