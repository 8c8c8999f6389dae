// The workers of one budget explorer. The core's Explorer can own a share of
// the tensors, so the team opens one share per worker on the same files. A
// solve sends every worker the ratio at the same time, then the first worker
// joins all outputs into the report (and the file head when the file is
// written). The joined result equals that of a single explorer.

import { CoreWorker } from './core-worker.js';
import { poolSize } from './pool.js';

export class ExplorerTeam {
  // matrixElements lists the element count of every compressed matrix of the
  // run; the team has as many workers as a compression pool would start.
  constructor(matrixElements) {
    const largest = matrixElements.reduce((a, b) => Math.max(a, b), 0);
    const size = poolSize(largest, Math.max(matrixElements.length, 1));
    this.workers = Array.from({ length: size }, () => new CoreWorker());
  }

  get size() {
    return this.workers.length;
  }

  terminate() {
    for (const worker of this.workers) {
      worker.terminate();
    }
  }

  // Analyses every share. onProgress({done, total, tensor, stage}) follows
  // the tensors of all shares together. Resolves to {reachable, milliseconds}.
  async open({ base, finetuned }, onProgress) {
    const started = performance.now();
    const positions = this.workers.map(() => ({ done: 0, total: 0 }));
    const opened = await Promise.all(this.workers.map((worker, part) => worker.request(
      'explorer-open', { base, finetuned, part, parts: this.size }, (event) => {
        if (event.kind !== 'progress') {
          return;
        }
        positions[part] = { done: event.index, total: event.total };
        const sum = (key) => positions.reduce((total, position) => total + position[key], 0);
        onProgress({ done: sum('done'), total: sum('total'), tensor: event.tensor, stage: event.stage });
      })));
    return { reachable: opened[0].reachable, milliseconds: performance.now() - started };
  }

  // Solves at `ratio` without writing a file. Resolves to {summary, rows,
  // milliseconds}, the time from the request to the joined report.
  async solve(ratio) {
    const started = performance.now();
    const shares = await Promise.all(this.workers.map((worker) => worker.request('explorer-solve', { ratio })));
    const joined = await this.join(ratio, shares, started);
    return { summary: joined.summary, rows: joined.rows, milliseconds: performance.now() - started };
  }

  // Writes the file at `ratio`. onTensor(done, total) follows the tensors.
  // Resolves to {header, summary, rows, chunks}, chunks in file order.
  async write(ratio, onTensor) {
    const started = performance.now();
    const chunks = new Map();
    let done = 0;
    const shares = await Promise.all(this.workers.map((worker) => {
      let current = null;
      return worker.request('explorer-write', { ratio }, (event) => {
        if (event.kind === 'progress') {
          // A tensor's chunks follow the progress events that name its index.
          current = event.index;
          onTensor(done, event.total);
        } else if (event.kind === 'chunk') {
          if (!chunks.has(current)) {
            chunks.set(current, []);
          }
          chunks.get(current).push(event.bytes);
        } else if (event.kind === 'tensor') {
          done += 1;
        }
      });
    }));
    const joined = await this.join(ratio, shares, started);
    const ordered = [...chunks.keys()].sort((a, b) => a - b).flatMap((index) => chunks.get(index));
    return { ...joined, chunks: ordered };
  }

  // Has the first worker join the shares' outputs, ordered by tensor index.
  join(ratio, shares, started) {
    const outputs = shares.flatMap((share) => share.outputs)
      .sort((a, b) => a.index - b.index)
      .map((item) => item.output);
    const seconds = (performance.now() - started) / 1000;
    return this.workers[0].request('explorer-finish', { ratio, outputs, seconds });
  }
}
