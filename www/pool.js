// Compresses a checkpoint pair with a pool of Web Workers, each running the
// WebAssembly core on different tensors at the same time.
//
// Every worker opens a session on the same files and options (reading only
// the headers), then takes the next tensor from a shared queue, largest
// matrix first, until none is left. The chunks of each tensor are kept
// apart and joined in tensor order at the end, and the first worker joins
// the outputs into the file head, so the file equals that of one worker.

import { CoreWorker } from './core-worker.js';

// Most workers a pool starts, whatever the number of cores.
const MAX_WORKERS = 8;

// Bytes a worker needs per element of the largest matrix it compresses: the
// tensor's bytes, the base and the delta in f32, and the SVD's work space.
// Measured: 192 MiB of WebAssembly memory for MiniLM (largest matrix 11.7 M
// elements) and 215 MiB for one [4096, 4096] matrix (BENCHMARKS.md).
const WORKER_BYTES_PER_ELEMENT = 16;
// Bytes a worker needs besides the matrix: the module, the small tensors.
const WORKER_BASE_BYTES = 64 * 1024 * 1024;
// A worker's WebAssembly memory stops at 4 GiB (wasm32); a little is kept free.
const WORKER_MEMORY_LIMIT = 3.75 * 2 ** 30;
// Share of the device's memory (navigator.deviceMemory) the pool may plan for.
const MEMORY_SHARE = 0.75;
// Assumed memory in GiB where the browser does not report it.
const DEFAULT_DEVICE_MEMORY_GIB = 4;

// Returns how many workers to start for a run whose largest matrix has
// `largestElements` elements and which has `tensorCount` tensors: one per
// core, at most as many as fit in half of the device's memory, at least one.
export function poolSize(largestElements, tensorCount) {
  const cores = navigator.hardwareConcurrency || 1;
  const memoryBytes = (navigator.deviceMemory || DEFAULT_DEVICE_MEMORY_GIB) * 2 ** 30 * MEMORY_SHARE;
  const perWorker = WORKER_BASE_BYTES + WORKER_BYTES_PER_ELEMENT * largestElements;
  const byMemory = Math.floor(memoryBytes / perWorker);
  return Math.max(1, Math.min(cores, MAX_WORKERS, byMemory, tensorCount));
}

// A pool of workers for one compression. terminate() stops every worker, so
// that the page's Cancel works as it does with one worker.
export class CompressionPool {
  constructor() {
    this.workers = [];
    this.terminated = false;
  }

  terminate() {
    this.terminated = true;
    for (const worker of this.workers) {
      worker.terminate();
    }
  }

  // Runs the compression. `request` is {base, finetuned, ratio, method,
  // device, keepFile}. `handlers` receives:
  //   onPlan({pairing, device, tensors, workers})  once, before any tensor;
  //   onProgress({done, total, running, etaSeconds})  as work goes on, where
  //     running lists {tensor, stage} per busy worker;
  //   onTensor(row)  as each tensor finishes.
  // Resolves to {header, summary, rows, chunks, workerMemoryBytes}, where
  // chunks is the list of data chunks in file order (empty when keepFile is
  // false) and workerMemoryBytes the peak WebAssembly memory of each worker.
  async run(request, handlers) {
    const started = performance.now();
    const first = this.startWorker();
    const plan = await first.request('session-open', sessionFields(request));
    checkWorkerMemory(plan.tensors);
    const size = poolSize(largestMatrix(plan.tensors), plan.tensors.length);
    handlers.onPlan({ ...plan, workers: size });

    const progress = new ProgressTracker(plan.tensors, started, handlers.onProgress);
    const queue = largestFirst(plan.tensors);
    const outputs = new Array(plan.tensors.length);
    const memoryBytes = new Array(size).fill(0);
    const chunks = plan.tensors.map(() => []);
    const runWorker = async (worker, slot) => {
      if (worker !== first) {
        await worker.request('session-open', sessionFields(request));
      }
      while (queue.length > 0 && !this.terminated) {
        const index = queue.shift();
        const result = await worker.request('session-tensor', { index, keepFile: request.keepFile }, (event) => {
          if (event.kind === 'chunk') {
            chunks[index].push(event.bytes);
          } else if (event.kind === 'progress') {
            progress.stage(slot, event.tensor, event.stage);
          }
        });
        outputs[index] = result.output;
        memoryBytes[slot] = Math.max(memoryBytes[slot], result.memoryBytes ?? 0);
        progress.finish(slot, index);
        handlers.onTensor(result.row);
      }
    };

    const extra = Array.from({ length: size - 1 }, () => this.startWorker());
    await Promise.all([first, ...extra].map((worker, slot) => runWorker(worker, slot)));
    const seconds = (performance.now() - started) / 1000;
    const joined = await first.request('session-finish', { outputs, seconds });
    return { ...joined, chunks: chunks.flat(), workerMemoryBytes: memoryBytes };
  }

  startWorker() {
    const worker = new CoreWorker();
    this.workers.push(worker);
    return worker;
  }
}

function sessionFields({ base, finetuned, ratio, method, device }) {
  return { base, finetuned, ratio, method, device };
}

// Rejects, before any work, a matrix too large for one worker's memory.
// TODO: Such matrices need the delta streamed in row blocks through the
// randomized SVD, the correction and the error measurement, because these only
// multiply the delta by thin matrices. Today a worker holds the delta whole.
function checkWorkerMemory(tensors) {
  for (const tensor of tensors) {
    const needed = WORKER_BASE_BYTES + WORKER_BYTES_PER_ELEMENT * tensor.matrix_elements;
    if (needed > WORKER_MEMORY_LIMIT) {
      const gib = (needed / 2 ** 30).toFixed(1);
      throw new Error(`Tensor '${tensor.name}' has ${tensor.matrix_elements.toLocaleString('en-US')} elements, so ` +
        `compressing it needs about ${gib} GiB of WebAssembly memory, more than the 4 GiB a browser worker can ` +
        'address. Compress this checkpoint with the native command-line tool (adamix compress), which has no such limit.');
    }
  }
}

function largestMatrix(tensors) {
  return tensors.reduce((largest, tensor) => Math.max(largest, tensor.matrix_elements), 0);
}

// Tensor indices with the largest matrices first, then the rest in file
// order, so that the longest jobs do not start last and leave a worker idle.
function largestFirst(tensors) {
  return tensors.map((tensor, index) => index)
    .sort((a, b) => tensors[b].matrix_elements - tensors[a].matrix_elements || a - b);
}

// Counts finished work and estimates the time left. A tensor's work is its
// element count when it is a matrix, else one unit per tensor of the
// smallest matrix's size: reading and storing it is cheap by comparison.
class ProgressTracker {
  constructor(tensors, started, onProgress) {
    const smallestMatrix = Math.min(...tensors.map((t) => t.matrix_elements).filter((e) => e > 0), Infinity);
    const unit = Number.isFinite(smallestMatrix) ? smallestMatrix / 16 : 1;
    this.work = tensors.map((tensor) => Math.max(tensor.matrix_elements, unit));
    this.totalWork = this.work.reduce((a, b) => a + b, 0);
    this.doneWork = 0;
    this.done = 0;
    this.running = new Map();
    this.started = started;
    this.onProgress = onProgress;
  }

  stage(slot, tensor, stage) {
    this.running.set(slot, { tensor, stage });
    this.report();
  }

  finish(slot, index) {
    this.running.delete(slot);
    this.done += 1;
    this.doneWork += this.work[index];
    this.report();
  }

  report() {
    const elapsed = (performance.now() - this.started) / 1000;
    const etaSeconds = this.doneWork > 0
      ? elapsed * (this.totalWork - this.doneWork) / this.doneWork
      : null;
    this.onProgress({
      done: this.done,
      total: this.work.length,
      running: [...this.running.values()],
      etaSeconds,
    });
  }
}
