// The budget explorer panel. It opens the core's Explorer once in workers of
// its own (explorer-team.js). Each worker reads both checkpoints and computes
// the SVD and cost table of its share of the matrices. Then the panel
// re-solves ADAMIX's allocation from those caches at each ratio the user
// picks, without another SVD.
//
// The panel's data attributes are for tests and benchmarks. data-state is
// 'closed', 'opening', 'ready', 'solving', 'solved', 'unreachable' or
// 'error'. data-ratio is the ratio last solved and data-solves the number of
// solves so far. For the last solve, data-solve-ms is the time until every
// worker solved its share and one joined them, data-round-trip-ms the time
// from sending the requests to the drawn result, and data-draw-ms the drawing
// part of that. data-workers is the number of workers. The rest is the
// reachable range from the core.

import { isCancelled } from './core-worker.js';
import { ExplorerTeam } from './explorer-team.js';
import { deltaFileName } from './files.js';
import { formatBytes, formatFraction, formatMilliseconds, formatSeconds } from './format.js';

// Slider positions: ratios 1/n from 1/64 to 1/4, about four steps per
// doubling, so that the slider moves on a log scale. 1/32, 1/16 and 1/8 are
// exact positions. bench/browser.mjs imports the list to move the slider.
export const DENOMINATORS = [64, 54, 45, 38, 32, 27, 23, 19, 16, 13, 11, 9, 8, 7, 6, 5, 4];

const STAGE_LABELS = {
  read: 'reading',
  delta: 'computing the delta',
  svd: 'SVD',
  'cost table': 'building the cost table',
  allocate: 'allocating bit widths',
  quantize: 'quantizing',
  measure: 'measuring the error',
  write: 'writing',
};

const $ = (id) => document.getElementById(id);

// A ratio in the form the page shows it: "1/16", or "1/21.37".
function ratioLabel(ratio) {
  return formatFraction(ratio);
}

// Relative distance from a bound of the reachable range within which a typed
// size counts as that bound: the range is shown with four significant digits.
const BOUND_TOLERANCE = 1e-3;

// A size in MB as the size field shows it: two decimals, or three
// significant digits below 1 MB so that small targets keep their value.
function formatMegabytes(megabytes) {
  return megabytes >= 1 ? megabytes.toFixed(2) : String(Number(megabytes.toPrecision(3)));
}

function workerCount(count) {
  return count === 1 ? '1 worker' : `${count} workers`;
}

export class BudgetExplorer {
  // onResult({method, ratio, summary, rows, source}) shows a solve and returns
  // a promise that settles once its figures are drawn. onFile({blob, name,
  // method, ratio, summary}) receives a file written at the explored ratio.
  constructor({ onResult, onFile }) {
    this.onResult = onResult;
    this.onFile = onFile;
    this.section = $('explorer');
    this.team = null;
    this.inputs = null;
    this.reachable = null;
    this.targetRatio = null;
    this.shownMegabytes = null;
    this.pendingRatio = null;
    this.solving = false;
    this.writing = false;
    this.solves = 0;

    const slider = $('explore-ratio');
    slider.max = String(DENOMINATORS.length - 1);
    $('explore-ticks').replaceChildren(...DENOMINATORS.map((_, index) => new Option('', String(index))));
    slider.addEventListener('input', () => this.requestSolve(this.sliderRatio()));
    $('explore-mb').addEventListener('change', () => this.requestSolveForSize($('explore-mb').value));
    $('explore-open').addEventListener('click', () => this.open());
    $('explore-cancel').addEventListener('click', () => this.close('Cancelled. Explore budget starts again.'));
    $('explore-download').addEventListener('click', () => this.download());
  }

  // Shows the panel for a new ADAMIX result, with the explorer closed. inputs
  // is {base, finetuned, stem, ratio, matrixElements}: the files of that run,
  // its ratio and the element count of each matrix it compressed.
  show(inputs) {
    this.close();
    this.inputs = inputs;
    this.section.hidden = false;
  }

  // Hides the panel and frees the explorer's memory by ending its workers.
  hide() {
    this.close();
    this.inputs = null;
    this.section.hidden = true;
  }

  close(message = '') {
    this.team?.terminate();
    this.team = null;
    this.reachable = null;
    this.pendingRatio = null;
    this.solving = false;
    this.writing = false;
    this.solves = 0;
    for (const key of ['ratio', 'solves', 'solveMs', 'roundTripMs', 'drawMs', 'minRatio', 'maxRatio', 'minBytes', 'maxBytes', 'f16Bytes', 'workers']) {
      delete this.section.dataset[key];
    }
    this.setState('closed');
    $('explorer-start').hidden = false;
    $('explorer-building').hidden = true;
    $('explorer-controls').hidden = true;
    $('explore-open').disabled = false;
    $('explorer-status').textContent = message;
    this.showMessage(null);
  }

  setState(state) {
    this.section.dataset.state = state;
  }

  showMessage(text) {
    const box = $('explore-message');
    box.textContent = text ?? '';
    box.hidden = !text;
  }

  // ---- Opening ----

  async open() {
    if (!this.inputs || this.team) {
      return;
    }
    const team = new ExplorerTeam(this.inputs.matrixElements ?? []);
    this.team = team;
    this.section.dataset.workers = String(team.size);
    this.setState('opening');
    $('explorer-start').hidden = true;
    $('explorer-building').hidden = false;
    $('explorer-progress').removeAttribute('value');
    $('explorer-status').textContent = 'Reading both checkpoints';

    let opened;
    try {
      opened = await team.open(this.inputs, (progress) => this.showBuildProgress(progress, team.size));
    } catch (error) {
      if (this.team === team && !isCancelled(error)) {
        this.close();
        this.setState('error');
        $('explorer-status').textContent = `Opening the budget explorer failed: ${error.message}`;
      }
      return;
    }
    if (this.team !== team) {
      return;
    }
    this.reachable = opened.reachable;
    this.showControls(opened.milliseconds);
  }

  showBuildProgress({ done, total, tensor, stage }, workers) {
    const progress = $('explorer-progress');
    progress.max = Math.max(total, 1);
    progress.value = done;
    const label = STAGE_LABELS[stage] ?? stage;
    $('explorer-status').textContent = `Analysing tensor ${done + 1} of ${total} on ${workerCount(workers)}: ${tensor} (${label})`;
  }

  showControls(milliseconds) {
    const { min_ratio: minRatio, max_ratio: maxRatio, min_bytes: minBytes, max_bytes: maxBytes, f16_delta_bytes: f16Bytes } = this.reachable;
    Object.assign(this.section.dataset, {
      minRatio: String(minRatio),
      maxRatio: String(maxRatio),
      minBytes: String(minBytes),
      maxBytes: String(maxBytes),
      f16Bytes: String(f16Bytes),
      solves: '0',
    });
    $('explorer-building').hidden = true;
    $('explorer-status').textContent = '';
    $('explorer-controls').hidden = false;
    $('explore-range').textContent =
      `Reachable targets: ${formatBytes(minBytes)} (${ratioLabel(minRatio)}) to ${formatBytes(maxBytes)} (${ratioLabel(maxRatio)}) ` +
      `of the ${formatBytes(f16Bytes)} f16 delta. Analysing the pair took ${formatSeconds(milliseconds / 1000)}.`;
    $('explore-time').textContent = 'Move the slider or enter a size to re-solve the allocation.';
    this.setTarget(this.inputs.ratio);
    this.setState('ready');
  }

  // ---- Targets ----

  sliderRatio() {
    return 1 / DENOMINATORS[Number($('explore-ratio').value)];
  }

  // Shows `ratio` on the slider (at its position if it has one) and as a
  // size in MB.
  setTarget(ratio) {
    this.targetRatio = ratio;
    const index = DENOMINATORS.findIndex((denominator) => 1 / denominator === ratio);
    if (index >= 0) {
      $('explore-ratio').value = String(index);
    }
    $('explore-ratio-label').textContent = index >= 0 ? ratioLabel(ratio) : `${ratioLabel(ratio)} (from the size)`;
    if (this.reachable) {
      this.shownMegabytes = formatMegabytes(ratio * this.reachable.f16_delta_bytes / 1e6);
      $('explore-mb').value = this.shownMegabytes;
    }
  }

  requestSolveForSize(text) {
    // Chromium fires 'change' when the field loses focus after the slider
    // rewrote it, so a value the page wrote itself is not a new target.
    if (!this.reachable || text === this.shownMegabytes) {
      return;
    }
    const megabytes = Number(text);
    if (text.trim() === '' || !(megabytes > 0)) {
      // A number field hands over '' for text that is not a number.
      const problem = text.trim() === '' ? 'The target size is empty or not a number.' : `The target size '${text}' is not above 0.`;
      this.showMessage(`${problem} Enter a size in megabytes above 0.`);
      $('explore-ratio-label').textContent = 'no target';
      this.setState('unreachable');
      return;
    }
    this.requestSolve(this.boundedRatio(megabytes * 1e6));
  }

  // Returns the ratio of a target of `bytes`. The reachable range is shown
  // rounded to four digits, so a size typed as shown counts as the bound.
  boundedRatio(bytes) {
    const { min_ratio: minRatio, max_ratio: maxRatio, min_bytes: minBytes, max_bytes: maxBytes, f16_delta_bytes: f16Bytes } = this.reachable;
    if (Math.abs(bytes - maxBytes) <= BOUND_TOLERANCE * maxBytes) {
      return maxRatio;
    }
    if (Math.abs(bytes - minBytes) <= BOUND_TOLERANCE * minBytes) {
      return minRatio;
    }
    return bytes / f16Bytes;
  }

  // Checks the target against the reachable range and queues a solve. While
  // a solve runs, only the latest target waits, so that a dragged slider
  // does not queue every position it passed.
  requestSolve(ratio) {
    if (!this.reachable) {
      return;
    }
    this.setTarget(ratio);
    const problem = this.unreachableMessage(ratio);
    if (problem) {
      this.pendingRatio = null;
      this.showMessage(problem);
      this.setState('unreachable');
      return;
    }
    this.showMessage(null);
    this.pendingRatio = ratio;
    if (!this.solving) {
      this.solvePending();
    }
  }

  unreachableMessage(ratio) {
    const { min_ratio: minRatio, max_ratio: maxRatio, min_bytes: minBytes, max_bytes: maxBytes, f16_delta_bytes: f16Bytes } = this.reachable;
    if (ratio >= minRatio && ratio <= maxRatio) {
      return null;
    }
    const target = `${formatBytes(ratio * f16Bytes)} (${ratioLabel(ratio)})`;
    const range = `The reachable targets are ${formatBytes(minBytes)} (${ratioLabel(minRatio)}) to ${formatBytes(maxBytes)} (${ratioLabel(maxRatio)}).`;
    if (ratio < minRatio) {
      return `A target of ${target} is not reachable: the tensors stored without compression and the space reserved for ` +
        `the header take ${formatBytes(minBytes)}, so a smaller target leaves nothing for the matrices. ${range} Nothing was solved.`;
    }
    return `A target of ${target} is not reachable: the explorer offers at most ${ratioLabel(maxRatio)} of the f16 delta. ${range} Nothing was solved.`;
  }

  // ---- Solving ----

  async solvePending() {
    const team = this.team;
    this.solving = true;
    while (this.pendingRatio !== null && this.team === team) {
      const ratio = this.pendingRatio;
      this.pendingRatio = null;
      this.setState('solving');
      $('explore-time').textContent = `Solving at ${ratioLabel(ratio)}…`;
      const started = performance.now();
      let solved;
      try {
        solved = await team.solve(ratio);
      } catch (error) {
        if (this.team !== team || isCancelled(error)) {
          return;
        }
        this.showMessage(`Solving at ${ratioLabel(ratio)} failed: ${error.message}`);
        this.setState('error');
        continue;
      }
      if (this.team !== team) {
        return;
      }
      this.solves += 1;
      const received = performance.now();
      await this.onResult({ method: 'adamix', ratio, summary: solved.summary, rows: solved.rows, source: 'explorer' });
      const drawn = performance.now();
      this.showSolveTime(ratio, solved, drawn - started, drawn - received);
    }
    if (this.team === team) {
      this.solving = false;
      if (this.section.dataset.state === 'solving') {
        this.setState('solved');
      }
    }
  }

  showSolveTime(ratio, solved, roundTrip, drawing) {
    Object.assign(this.section.dataset, {
      ratio: String(ratio),
      solves: String(this.solves),
      solveMs: String(solved.milliseconds),
      roundTripMs: String(roundTrip),
      drawMs: String(drawing),
    });
    $('explore-time').textContent =
      `Solved at ${ratioLabel(ratio)} in ${formatMilliseconds(solved.milliseconds)} on ${workerCount(this.team.size)} ` +
      `(${formatMilliseconds(roundTrip)} with drawing; solve ${this.solves} since opening): ` +
      `${formatBytes(solved.summary.compressed_bytes)}, relative error ${solved.summary.rel_error_total.toFixed(4)}.`;
  }

  // ---- Writing ----

  async download() {
    const team = this.team;
    if (!team || this.writing || this.targetRatio === null || this.unreachableMessage(this.targetRatio)) {
      return;
    }
    const ratio = this.targetRatio;
    this.writing = true;
    $('explore-download').disabled = true;

    let written;
    try {
      written = await team.write(ratio, (done, total) => {
        $('explore-time').textContent = `Writing the file at ${ratioLabel(ratio)}: ${done} of ${total} tensors written`;
      });
    } catch (error) {
      if (this.team === team && !isCancelled(error)) {
        this.showMessage(`Writing the file at ${ratioLabel(ratio)} failed: ${error.message}`);
      }
      return;
    } finally {
      this.writing = false;
      $('explore-download').disabled = false;
    }

    // A Blob made from the chunk list avoids copying the file into one array.
    const blob = new Blob([written.header, ...written.chunks], { type: 'application/octet-stream' });
    const name = deltaFileName(this.inputs.stem, 'adamix', ratioLabel(ratio));
    $('explore-time').textContent = `Wrote ${name} (${formatBytes(blob.size)}).`;
    this.onFile({ blob, name, method: 'adamix', ratio, summary: written.summary });
  }
}
