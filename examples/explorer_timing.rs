//! Times the budget explorer's solve on one pair, stage by stage.
//!
//! Usage: `cargo run --release --example explorer_timing -- BASE FINETUNED [RATIO ...]`
//! (default ratios 1/32, 1/16, 1/8). Set `RAYON_NUM_THREADS=1` for one thread.
//! Each ratio is solved three times, and the example prints the median time of
//! each stage and of the four slowest tensors.
//!
//! Built for `wasm32-wasip1` with `RUSTFLAGS="-C target-feature=+simd128"`, it
//! times the page's code path under `node bench/wasi.mjs`.

use std::collections::BTreeMap;

use adamix::checkpoint::{ByteSource, Checkpoint, MemorySource};
use adamix::clock::Stopwatch;
use adamix::compress::Event;
use adamix::explore::Explorer;

const REPEATS: usize = 3;

fn open(path: &str) -> Checkpoint {
    // In memory, so that the example also runs as WebAssembly under WASI.
    let source = MemorySource::new(path, std::fs::read(path).expect("checkpoint file reads"));
    Checkpoint::open(vec![Box::new(source) as Box<dyn ByteSource>]).expect("checkpoint opens")
}

/// Milliseconds spent in each stage and in each tensor during one solve.
#[derive(Default)]
struct SolveTimes {
    stages: BTreeMap<String, f64>,
    tensors: BTreeMap<String, f64>,
    total: f64,
}

fn solve_once(explorer: &Explorer, ratio: f64) -> SolveTimes {
    let clock = Stopwatch::start();
    let mut times = SolveTimes::default();
    let mut current: Option<(String, String, f64)> = None;
    let mut sink = Vec::new();
    explorer.solve(ratio, &mut |event| {
        if let Event::Progress { tensor, stage, .. } = event {
            let now = clock.seconds() * 1e3;
            close(&mut times, &current, now);
            current = Some((tensor.to_string(), stage.to_string(), now));
        }
    }, &mut sink).expect("solve succeeds");
    let now = clock.seconds() * 1e3;
    close(&mut times, &current, now);
    times.total = now;
    times
}

/// Adds the time since the current stage began to its stage and tensor.
fn close(times: &mut SolveTimes, current: &Option<(String, String, f64)>, now: f64) {
    if let Some((tensor, stage, since)) = current {
        *times.stages.entry(stage.clone()).or_default() += now - since;
        *times.tensors.entry(tensor.clone()).or_default() += now - since;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: explorer_timing BASE.safetensors FINETUNED.safetensors [RATIO ...]");
        std::process::exit(2);
    }
    let (base, finetuned) = (open(&args[1]), open(&args[2]));
    let mut ratios: Vec<f64> = args[3..].iter().map(|a| a.parse().expect("ratio is a number such as 0.125")).collect();
    if ratios.is_empty() {
        ratios = vec![1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0];
    }
    let clock = Stopwatch::start();
    let explorer = Explorer::build(base, finetuned, &mut |_| {}).expect("explorer opens");
    println!("open: {:.0} ms", clock.seconds() * 1e3);
    for ratio in ratios {
        let solves: Vec<SolveTimes> = (0..REPEATS).map(|_| solve_once(&explorer, ratio)).collect();
        println!("ratio {ratio:.5}: solve median {:.0} ms", median(solves.iter().map(|s| s.total).collect()));
        for stage in solves[0].stages.keys() {
            println!("  stage {stage:<10} {:>7.1} ms", median(solves.iter().map(|s| s.stages[stage]).collect()));
        }
        let mut tensors: Vec<(&String, f64)> = solves[0].tensors.keys().map(|t| (t, median(solves.iter().map(|s| s.tensors[t]).collect()))).collect();
        tensors.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (tensor, ms) in tensors.iter().take(4) {
            println!("  tensor {tensor:<50} {ms:>7.1} ms");
        }
    }
}
