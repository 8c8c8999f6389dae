// Times the page's compression and its budget explorer in headless Chromium,
// driven by playwright-core.
//
//   node bench/browser.mjs URL JSONL LABEL BASE FINETUNED RUNS [LABEL BASE FINETUNED RUNS ...]
//   node bench/browser.mjs explorer URL JSONL LABEL BASE FINETUNED RUNS [...]
//   node bench/browser.mjs explorer-stages URL JSONL LABEL BASE FINETUNED RUNS [...]
//
// URL is the page served on 127.0.0.1 (python3 scripts/serve.py). For each
// case, RUNS times: a fresh browser context opens the page, sets the two
// files, picks the ratio 1/16, clicks Compress and waits for #status to
// reach data-state="done". The wall time runs from the click to that state.
// The page's JSON report (the Report button) gives the core's own
// summary.seconds and each tensor's seconds.
//
// With ADAMIX_BENCH_NATIVE set to the path of the native CLI, every timed run
// is preceded by `adamix compress` of the same pair with RAYON_NUM_THREADS=1,
// so that each browser time has a native time taken under the same load.
//
// Memory: the worker runs in the page's renderer process, so that process's
// peak resident set size (VmHWM in /proc) includes the worker's WebAssembly
// memory. With ADAMIX_BENCH_MEASURE_MEMORY=1, one more run per case reads the
// worker's linear memory size itself (see MEMORY_PROBE) and polls
// performance.measureUserAgentSpecificMemory() in a cross-origin-isolated page.
//
// The explorer form (see measureExplorer) times how long the budget explorer
// takes to show the result of a ratio change, instead of the compression. The
// explorer-stages form (see measureExplorerStages) splits a solve into stages.
//
// Appends one JSON line per run to JSONL.

import { execFileSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { chromium, CHROMIUM_ARGS, DONE_OR_ERROR, REPO_ROOT } from './chromium.mjs';

// Makes measureUserAgentSpecificMemory() measure at once instead of at the next garbage collection.
const EAGER_MEMORY_ARGS = ['--enable-blink-features=ForceEagerMeasureMemory'];
const RUN_TIMEOUT_MS = Number(process.env.ADAMIX_BENCH_BROWSER_TIMEOUT_S ?? 900) * 1000;
const RATIO = '0.0625';
const MEMORY_POLL_MS = 2000;

// ---- Processes ----

async function readProcFile(pid, name) {
  try {
    return await readFile(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return null;
  }
}

// Pids of the Chromium renderer processes started under this Node.js process.
async function rendererPids() {
  const parents = new Map();
  const renderers = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const stat = await readProcFile(entry, 'stat');
    if (!stat) {
      continue;
    }
    // The command name may contain spaces, so the fields are read after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parents.set(Number(entry), Number(fields[1]));
    const cmdline = await readProcFile(entry, 'cmdline');
    if (cmdline?.includes('--type=renderer')) {
      renderers.push(Number(entry));
    }
  }
  const descends = (pid) => {
    for (let current = pid; current > 1; current = parents.get(current) ?? 0) {
      if (current === process.pid) {
        return true;
      }
    }
    return false;
  };
  return renderers.filter(descends);
}

// VmHWM (peak resident set size) and VmRSS of a process, in KiB.
async function residentKiB(pid) {
  const status = await readProcFile(pid, 'status');
  const field = (name) => Number(status?.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN);
  return { peak: field('VmHWM'), now: field('VmRSS') };
}

// CPU milliseconds used so far by the renderer threads under this Node.js
// process: `main` sums the renderers' main threads (the page's scripts and
// layout), `workers` their DedicatedWorker threads (the WebAssembly core).
// Both come from utime + stime in /proc/PID/task/TID/stat, in ticks of 10 ms
// (CLK_TCK 100 on Linux x86-64). Unlike wall time, they hardly grow when other
// processes compete for the cores.
async function rendererThreadCpuMs() {
  const cpu = { main: 0, workers: 0 };
  for (const pid of await rendererPids()) {
    let threads = [];
    try {
      threads = await readdir(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of threads) {
      const comm = (await readProcFile(`${pid}/task/${tid}`, 'comm'))?.trim();
      const stat = await readProcFile(`${pid}/task/${tid}`, 'stat');
      if (!stat) {
        continue;
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const milliseconds = (Number(fields[11]) + Number(fields[12])) * 10;
      if (tid === String(pid)) {
        cpu.main += milliseconds;
      } else if (comm === 'DedicatedWorker') {
        cpu.workers += milliseconds;
      }
    }
  }
  return cpu;
}

// ---- One run ----

// The memory run's instrumentation. Request interception adds COOP/COEP
// headers to every response (cross-origin isolation, which
// measureUserAgentSpecificMemory needs) and appends MEMORY_PROBE to the
// bindings www/pkg/adamix.js: in the worker, every message it posts then
// carries the byte length of the module's linear memory. WORKER_LISTENER, an
// init script of the page, keeps the largest length seen. Linear memory never
// shrinks, so the length on the worker's last message is its peak. The
// measured code itself is unchanged.
const MEMORY_PROBE = `
if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  const post = self.postMessage.bind(self);
  self.postMessage = (message, transfer) => {
    if (message && typeof message === 'object' && wasm) {
      message.__wasmMemoryBytes = wasm.memory.buffer.byteLength;
    }
    return post(message, transfer);
  };
}
`;
const WORKER_LISTENER = `
window.__benchWasmMemoryMax = 0;
const NativeWorker = window.Worker;
window.Worker = class extends NativeWorker {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (event) => {
      const bytes = event.data?.__wasmMemoryBytes ?? 0;
      window.__benchWasmMemoryMax = Math.max(window.__benchWasmMemoryMax, bytes);
    });
  }
};
`;

async function memoryRunRoute(route) {
  const response = await route.fetch();
  const headers = {
    ...response.headers(),
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-embedder-policy': 'require-corp',
  };
  if (new URL(route.request().url()).pathname.endsWith('/www/pkg/adamix.js')) {
    const body = (await response.text()) + MEMORY_PROBE;
    delete headers['content-length'];
    await route.fulfill({ response, headers, body });
    return;
  }
  await route.fulfill({ response, headers });
}

// Polls, until stop() is called, the resident set size of the renderers and,
// in the memory run, measureUserAgentSpecificMemory().
function startSampling(page, started, measureMemory) {
  const sampling = { rss: [], measured: [], running: true };
  const elapsed = () => (Date.now() - started) / 1000;

  const rssLoop = (async () => {
    while (sampling.running) {
      const pids = await rendererPids();
      const resident = await Promise.all(pids.map(residentKiB));
      sampling.rss.push({ at_s: elapsed(), kb: resident.reduce((sum, r) => sum + (r.now || 0), 0) });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();

  const measureLoop = (async () => {
    while (measureMemory && sampling.running) {
      const at = elapsed();
      try {
        const result = await page.evaluate(() => performance.measureUserAgentSpecificMemory());
        sampling.measured.push({
          at_s: at,
          answered_after_s: elapsed() - at,
          bytes: result.bytes,
          breakdown: result.breakdown
            .filter((entry) => entry.bytes > 0)
            .map((entry) => ({ bytes: entry.bytes, types: entry.types, scope: entry.attribution.map((a) => a.scope).join(',') })),
        });
      } catch (error) {
        sampling.measured.push({ at_s: at, error: String(error.message ?? error) });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();

  sampling.stop = async () => {
    sampling.running = false;
    await Promise.all([rssLoop, measureLoop]);
  };
  return sampling;
}

async function runOnce(browser, url, testCase, run, measureMemory) {
  const context = await browser.newContext({ acceptDownloads: true });
  if (measureMemory) {
    await context.route('**/*', memoryRunRoute);
    await context.addInitScript(WORKER_LISTENER);
  }
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`page error: ${error.message}`));

  await page.goto(url);
  await page.setInputFiles('#base-input', testCase.base);
  await page.setInputFiles('#finetuned-input', testCase.finetuned);
  await page.selectOption('#ratio', RATIO);
  // The header inspection of the chosen files runs in a short-lived worker; let it finish.
  await page.waitForTimeout(1000);
  // A fresh browser per run, so every renderer under this process belongs to this run.
  const renderers = await rendererPids();
  const idle = await Promise.all(renderers.map(residentKiB));

  const record = {
    label: testCase.label, run, url, measure_memory: measureMemory,
    load_before: (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).map(Number),
  };
  if (measureMemory) {
    record.cross_origin_isolated = await page.evaluate(() => self.crossOriginIsolated);
    record.measure_memory_available = await page.evaluate(() => typeof performance.measureUserAgentSpecificMemory === 'function');
  }

  const started = Date.now();
  await page.click('#compress');
  const sampling = startSampling(page, started, measureMemory && record.cross_origin_isolated);
  await page.waitForSelector(DONE_OR_ERROR, { timeout: RUN_TIMEOUT_MS });
  record.wall_s = (Date.now() - started) / 1000;
  await sampling.stop();

  record.state = await page.getAttribute('#status', 'data-state');
  record.status_text = (await page.textContent('#status'))?.trim();
  if (record.state === 'done') {
    record.rel_error_total = Number(await page.getAttribute('#summary', 'data-rel-error-total'));
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-report')]);
    const report = JSON.parse(await readFile(await download.path(), 'utf8'));
    record.summary_seconds = report.summary?.seconds;
    record.tensors = (report.rows ?? []).map((row) => ({ name: row.name, shape: row.shape, seconds: row.seconds, rel_error: row.rel_error }));
  } else {
    record.error = (await page.isVisible('#error')) ? (await page.textContent('#error'))?.trim() : null;
    record.console = consoleLines.slice(-20);
  }
  const resident = await Promise.all(renderers.map(residentKiB));
  record.renderers = renderers.map((pid, index) => ({ pid, idle_rss_kb: idle[index].now, peak_rss_kb: resident[index].peak }));
  record.renderer_rss_sampled_max_kb = Math.max(0, ...sampling.rss.map((sample) => sample.kb));
  record.renderer_rss_idle_kb = idle.reduce((sum, r) => sum + (r.now || 0), 0);
  if (measureMemory) {
    record.wasm_memory_max_bytes = await page.evaluate(() => window.__benchWasmMemoryMax);
    record.measure_memory_samples = sampling.measured;
  }
  await context.close();
  return record;
}

// ---- Budget explorer ----

// Ratio changes timed in each round, in this order. The slider offers 1/32,
// 1/16 and 1/8; 1/24 and 1/12 are not slider positions, so they are typed
// into the size field as megabytes, the page's other way to set a target.
const EXPLORER_CHANGES = [
  { target: '1/32', denominator: 32, via: 'slider' },
  { target: '1/24', denominator: 24, via: 'size' },
  { target: '1/16', denominator: 16, via: 'slider' },
  { target: '1/12', denominator: 12, via: 'size' },
  { target: '1/8', denominator: 8, via: 'slider' },
];
const EXPLORER_ROUNDS = Number(process.env.ADAMIX_BENCH_EXPLORER_ROUNDS ?? 3);
// Ratios at which the explorer's result is compared with a full compression
// on the page: those that the page's #ratio list offers.
const EXPLORER_CHECKED = ['1/32', '1/16', '1/8'];
const EXPLORER_CHANGE_TIMEOUT_MS = 120_000;

// Makes one ratio change in the page and times it there, so that no
// playwright round trip is counted. shown_ms runs from the change event to
// the explorer's data-state="solved" (set after the table and figures are
// drawn), painted_ms to the second animation frame after that, which is when
// the new result is on screen. The rest comes from the panel's data
// attributes: solve_ms inside the worker, round_trip_ms from sending the
// request to the drawn result, draw_ms the drawing part of it. The caller
// adds the CPU time of the worker and main threads (rendererThreadCpuMs).
async function timeExplorerChange(page, change, sliderIndex, megabytes) {
  return page.evaluate(({ via, sliderIndex, megabytes, timeoutMs }) => new Promise((resolve) => {
    const section = document.getElementById('explorer');
    const solvesBefore = Number(section.dataset.solves ?? 0);
    let started = 0;
    const timer = setTimeout(() => {
      observer.disconnect();
      resolve({ state: 'timeout', message: `no result within ${timeoutMs} ms` });
    }, timeoutMs);
    const observer = new MutationObserver(() => {
      const state = section.dataset.state;
      if (state === 'error' || state === 'unreachable') {
        observer.disconnect();
        clearTimeout(timer);
        resolve({ state, message: document.getElementById('explore-message').textContent });
        return;
      }
      if (state !== 'solved' || Number(section.dataset.solves) <= solvesBefore) {
        return;
      }
      observer.disconnect();
      clearTimeout(timer);
      const solvedAt = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => resolve({
        state,
        ratio: Number(section.dataset.ratio),
        shown_ms: solvedAt - started,
        painted_ms: performance.now() - started,
        solve_ms: Number(section.dataset.solveMs),
        round_trip_ms: Number(section.dataset.roundTripMs),
        draw_ms: Number(section.dataset.drawMs),
        solves: Number(section.dataset.solves),
      })));
    });
    observer.observe(section, { attributes: true });

    started = performance.now();
    if (via === 'slider') {
      const slider = document.getElementById('explore-ratio');
      slider.value = String(sliderIndex);
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    } else {
      const field = document.getElementById('explore-mb');
      field.value = String(megabytes);
      field.dispatchEvent(new Event('change', { bubbles: true }));
    }
  }), { via: change.via, sliderIndex, megabytes, timeoutMs: EXPLORER_CHANGE_TIMEOUT_MS });
}

// Index of the slider position for 1/denominator, from the page's own list of positions.
async function sliderIndex(page, denominator) {
  const index = await page.evaluate(async (target) => {
    const { DENOMINATORS } = await import('/www/explorer.js');
    return DENOMINATORS.indexOf(target);
  }, denominator);
  if (index < 0) {
    throw new Error(`1/${denominator} is not a position of the explorer's slider`);
  }
  return index;
}

// Downloads the page's JSON report of the shown result.
async function shownReport(page) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-report')]);
  return JSON.parse(await readFile(await download.path(), 'utf8'));
}

// Compresses `testCase` at `ratio` on a page of its own and returns its JSON report.
async function fullCompressionReport(context, url, testCase, ratio) {
  const page = await context.newPage();
  try {
    await page.goto(url);
    await page.setInputFiles('#base-input', testCase.base);
    await page.setInputFiles('#finetuned-input', testCase.finetuned);
    await page.selectOption('#ratio', String(ratio));
    await page.click('#compress');
    await page.waitForSelector(DONE_OR_ERROR, { timeout: RUN_TIMEOUT_MS });
    const state = await page.getAttribute('#status', 'data-state');
    if (state !== 'done') {
      throw new Error(`the full compression at ${ratio} ended in state ${state}: ${await page.textContent('#status')}`);
    }
    return await shownReport(page);
  } finally {
    await page.close();
  }
}

// Compares an explorer report with a full compression's report at the same
// ratio: file size, each tensor's kind, bytes, width counts and per-triplet
// allocation, which must be identical, and the relative errors.
function compareWithFullRun(target, explored, full) {
  const exploredRows = new Map(explored.rows.map((row) => [row.name, row]));
  const differences = [];
  let maxErrorDifference = 0;
  for (const row of full.rows) {
    const other = exploredRows.get(row.name);
    if (!other) {
      differences.push(`${row.name}: missing from the explorer's result`);
      continue;
    }
    for (const field of ['kind', 'bytes', 'width_counts', 'allocation']) {
      if (JSON.stringify(row[field]) !== JSON.stringify(other[field])) {
        differences.push(`${row.name}: ${field} differs`);
      }
    }
    if (row.rel_error !== null && row.rel_error !== undefined) {
      maxErrorDifference = Math.max(maxErrorDifference, Math.abs(other.rel_error - row.rel_error) / Math.abs(row.rel_error || 1));
    }
  }
  if (explored.rows.length !== full.rows.length) {
    differences.push(`the explorer has ${explored.rows.length} rows, the full compression ${full.rows.length}`);
  }
  if (explored.summary.compressed_bytes !== full.summary.compressed_bytes) {
    differences.push(`file size: explorer ${explored.summary.compressed_bytes}, full ${full.summary.compressed_bytes} bytes`);
  }
  return {
    target,
    identical_allocation: differences.length === 0,
    differences: differences.slice(0, 10),
    compressed_bytes: explored.summary.compressed_bytes,
    rel_error_total: explored.summary.rel_error_total,
    full_rel_error_total: full.summary.rel_error_total,
    max_tensor_rel_error_difference: maxErrorDifference,
  };
}

// One fresh browser: compresses the pair at 1/16, opens the explorer, times
// EXPLORER_ROUNDS rounds of EXPLORER_CHANGES and, when checkEquality is set,
// compares the explorer with full compressions at EXPLORER_CHECKED.
async function exploreOnce(browser, url, testCase, run, checkEquality) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`page error: ${error.message}`));
  const record = { label: testCase.label, run, kind: 'explorer', url, changes: [] };
  try {
    await page.goto(url);
    await page.setInputFiles('#base-input', testCase.base);
    await page.setInputFiles('#finetuned-input', testCase.finetuned);
    await page.selectOption('#ratio', RATIO);
    await page.waitForTimeout(1000);
    let started = Date.now();
    await page.click('#compress');
    await page.waitForSelector(DONE_OR_ERROR, { timeout: RUN_TIMEOUT_MS });
    record.compress_s = (Date.now() - started) / 1000;
    if (await page.getAttribute('#status', 'data-state') !== 'done') {
      throw new Error(`the compression failed: ${await page.textContent('#status')}`);
    }

    started = Date.now();
    await page.click('#explore-open');
    await page.waitForSelector('#explorer[data-state="ready"], #explorer[data-state="error"]', { timeout: RUN_TIMEOUT_MS });
    record.open_s = (Date.now() - started) / 1000;
    if (await page.getAttribute('#explorer', 'data-state') !== 'ready') {
      throw new Error(`the explorer did not open: ${await page.textContent('#explorer-status')}`);
    }
    record.workers = Number(await page.getAttribute('#explorer', 'data-workers'));
    const f16Bytes = Number(await page.getAttribute('#explorer', 'data-f16-bytes'));
    record.f16_delta_bytes = f16Bytes;

    const indexes = new Map();
    for (const change of EXPLORER_CHANGES.filter((c) => c.via === 'slider')) {
      indexes.set(change.target, await sliderIndex(page, change.denominator));
    }
    for (let round = 1; round <= EXPLORER_ROUNDS; round += 1) {
      for (const change of EXPLORER_CHANGES) {
        const megabytes = f16Bytes / change.denominator / 1e6;
        const loadBefore = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).map(Number);
        const cpuBefore = await rendererThreadCpuMs();
        const timing = await timeExplorerChange(page, change, indexes.get(change.target), megabytes);
        const cpuAfter = await rendererThreadCpuMs();
        record.changes.push({
          round, target: change.target, via: change.via, load_before: loadBefore, ...timing,
          worker_cpu_ms: cpuAfter.workers - cpuBefore.workers,
          main_cpu_ms: cpuAfter.main - cpuBefore.main,
        });
        if (timing.state !== 'solved') {
          throw new Error(`the explorer did not solve ${change.target}: ${timing.state}, ${timing.message}`);
        }
      }
    }

    if (checkEquality) {
      record.equality = [];
      for (const target of EXPLORER_CHECKED) {
        const change = EXPLORER_CHANGES.find((c) => c.target === target);
        await timeExplorerChange(page, change, indexes.get(target), null);
        const explored = await shownReport(page);
        const full = await fullCompressionReport(context, url, testCase, 1 / change.denominator);
        record.equality.push(compareWithFullRun(target, explored, full));
      }
    }
    record.state = 'done';
  } catch (error) {
    record.state = 'error';
    record.error = String(error.stack ?? error);
    record.console = consoleLines.slice(-20);
  } finally {
    await context.close();
  }
  return record;
}

function summarizeChanges(changes) {
  const stats = (field) => {
    const values = changes.map((change) => change[field]).filter(Number.isFinite).sort((a, b) => a - b);
    if (values.length === 0) {
      return 'none';
    }
    return `median ${values[Math.floor((values.length - 1) / 2)].toFixed(0)} ms (${values[0].toFixed(0)}–${values.at(-1).toFixed(0)})`;
  };
  return `worker solve ${stats('solve_ms')}, change to painted result ${stats('painted_ms')}, ` +
    `CPU of the worker ${stats('worker_cpu_ms')} and of the page's main thread ${stats('main_cpu_ms')}`;
}

// Runs `runOnce(browser, testCase, run)` RUNS times per case, each in a
// fresh browser, and appends every record to JSONL. `report(record)` prints
// the run and returns whether it failed. Returns whether any run failed.
async function runInFreshBrowsers(jsonl, cases, runOnce, report) {
  let failed = false;
  for (const testCase of cases) {
    for (let run = 1; run <= testCase.runs; run += 1) {
      const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
      let record;
      try {
        record = await runOnce(browser, testCase, run);
      } finally {
        await browser.close();
      }
      await appendFile(jsonl, `${JSON.stringify(record)}\n`);
      failed = report(record) || failed;
    }
  }
  return failed;
}

async function measureExplorer(url, jsonl, cases) {
  const runOnce = (browser, testCase, run) => exploreOnce(browser, url, testCase, run, run === 1);
  return runInFreshBrowsers(jsonl, cases, runOnce, (record) => {
    const equality = (record.equality ?? [])
      .map((check) => `${check.target} ${check.identical_allocation ? 'identical' : `DIFFERS (${check.differences.join('; ')})`}`)
      .join(', ');
    console.log(`  explorer ${record.label} run ${record.run}: ${record.state}, opened in ${record.open_s?.toFixed(1)} s, ` +
      `${record.changes.length} changes: ${summarizeChanges(record.changes)}` +
      `${equality ? `; against full compressions: ${equality}` : ''}${record.error ? `, error: ${record.error}` : ''}`);
    return record.state !== 'done' || (record.equality ?? []).some((check) => !check.identical_allocation);
  });
}

// ---- Explorer stages ----

// Where a solve spends its time. A module worker of the benchmark's own,
// served by request interception at STAGE_WORKER_PATH, opens the core's
// Explorer on the two files as one share (the page splits the tensors over
// its workers; this measures them all in one). For each change of
// EXPLORER_CHANGES it times Explorer.solve_share, which each of the page's
// workers calls, and Explorer.write_share. The progress events of
// write_share mark the stages (read, delta, allocate, quantize, measure,
// write) of every tensor, and a stage's time runs from its event to the next
// one. write also sends the file's chunks and each tensor's row to the
// callback, so its total is a little above the solve's.
const STAGE_WORKER_PATH = '/bench-explorer-stages.js';
const STAGE_WORKER = `
import init, * as core from '/www/pkg/adamix.js';

self.onmessage = async ({ data }) => {
  try {
    await init();
    let started = performance.now();
    const explorer = new core.Explorer([data.base], [data.finetuned], 0, 1, () => {});
    const openMs = performance.now() - started;
    const solves = [];
    for (const { target, ratio } of data.changes) {
      started = performance.now();
      const rows = explorer.solve_share(ratio).map((item) => JSON.parse(item.output).row);
      const solveMs = performance.now() - started;

      const stages = {};
      let current = null;
      let currentStart = 0;
      const enter = (stage) => {
        const now = performance.now();
        if (current !== null) {
          stages[current] = (stages[current] ?? 0) + now - currentStart;
        }
        current = stage;
        currentStart = now;
      };
      started = performance.now();
      explorer.write_share(ratio, (event) => {
        if (event.kind === 'progress') {
          enter(event.stage);
        }
      });
      enter(null);
      const writeMs = performance.now() - started;

      const slowest = rows.filter((row) => row.matrix).sort((a, b) => b.seconds - a.seconds).slice(0, 3)
        .map((row) => ({ name: row.name, shape: row.shape, kept_rank: row.kept_rank, ms: 1000 * row.seconds }));
      solves.push({ target, ratio, solve_ms: solveMs, write_ms: writeMs, stages_ms: stages, slowest_matrices: slowest });
    }
    explorer.free();
    self.postMessage({ open_ms: openMs, solves });
  } catch (error) {
    self.postMessage({ error: String(error?.message ?? error) });
  }
};
`;

async function explorerStagesOnce(browser, url, testCase, run) {
  const context = await browser.newContext();
  await context.route(`**${STAGE_WORKER_PATH}`, (route) => route.fulfill({ body: STAGE_WORKER, contentType: 'text/javascript' }));
  const page = await context.newPage();
  const record = { label: testCase.label, run, kind: 'explorer-stages', url };
  try {
    await page.goto(url);
    await page.setInputFiles('#base-input', testCase.base);
    await page.setInputFiles('#finetuned-input', testCase.finetuned);
    record.load_before = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).map(Number);
    const changes = [];
    for (let round = 1; round <= EXPLORER_ROUNDS; round += 1) {
      changes.push(...EXPLORER_CHANGES.map((change) => ({ target: change.target, ratio: 1 / change.denominator })));
    }
    const result = await page.evaluate(({ path, changes, timeoutMs }) => new Promise((resolve) => {
      const worker = new Worker(path, { type: 'module' });
      const timer = setTimeout(() => resolve({ error: `no result within ${timeoutMs} ms` }), timeoutMs);
      worker.onmessage = (event) => {
        clearTimeout(timer);
        resolve(event.data);
      };
      worker.onerror = (event) => {
        clearTimeout(timer);
        resolve({ error: event.message });
      };
      worker.postMessage({
        base: document.getElementById('base-input').files[0],
        finetuned: document.getElementById('finetuned-input').files[0],
        changes,
      });
    }), { path: STAGE_WORKER_PATH, changes, timeoutMs: RUN_TIMEOUT_MS });
    if (result.error) {
      throw new Error(result.error);
    }
    Object.assign(record, result, { state: 'done' });
  } catch (error) {
    record.state = 'error';
    record.error = String(error.stack ?? error);
  } finally {
    await context.close();
  }
  return record;
}

async function measureExplorerStages(url, jsonl, cases) {
  const runOnce = (browser, testCase, run) => explorerStagesOnce(browser, url, testCase, run);
  return runInFreshBrowsers(jsonl, cases, runOnce, (record) => {
    const stageMeans = {};
    for (const solve of record.solves ?? []) {
      for (const [stage, milliseconds] of Object.entries(solve.stages_ms)) {
        stageMeans[stage] = (stageMeans[stage] ?? 0) + milliseconds / record.solves.length;
      }
    }
    const stages = Object.entries(stageMeans).map(([stage, milliseconds]) => `${stage} ${milliseconds.toFixed(0)}`).join(', ');
    console.log(`  explorer stages ${record.label} run ${record.run}: ${record.state}, mean ms per write: ${stages}` +
      `${record.error ? `, error: ${record.error}` : ''}`);
    return record.state !== 'done';
  });
}

// ---- Native reference ----

// Wall seconds of the native CLI on the same pair, on one thread, or null without ADAMIX_BENCH_NATIVE.
async function nativeSeconds(testCase) {
  const binary = process.env.ADAMIX_BENCH_NATIVE;
  if (!binary) {
    return null;
  }
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'adamix-bench-native-'));
  try {
    const started = Date.now();
    execFileSync(binary, [
      'compress', '--base', testCase.base, '--finetuned', testCase.finetuned, '--ratio', '1/16',
      '-o', path.join(scratch, 'delta.safetensors'),
    ], { env: { ...process.env, RAYON_NUM_THREADS: '1' }, stdio: 'ignore' });
    return (Date.now() - started) / 1000;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

// ---- Main ----

function parseCases(argv) {
  const cases = [];
  for (let i = 0; i + 3 < argv.length; i += 4) {
    const [label, base, finetuned, runs] = argv.slice(i, i + 4);
    cases.push({ label, base: path.resolve(base), finetuned: path.resolve(finetuned), runs: Number(runs) });
  }
  if (cases.length === 0 || argv.length % 4 !== 0 || cases.some((c) => !(c.runs >= 0))) {
    throw new Error('usage: node bench/browser.mjs [explorer|explorer-stages] URL JSONL LABEL BASE FINETUNED RUNS [LABEL BASE FINETUNED RUNS ...]');
  }
  return cases;
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === 'explorer' || args[0] === 'explorer-stages') {
    const [url, jsonl, ...rest] = args.slice(1);
    const measure = args[0] === 'explorer' ? measureExplorer : measureExplorerStages;
    process.exitCode = await measure(url, jsonl, parseCases(rest)) ? 1 : 0;
    return;
  }
  const [url, jsonl, ...rest] = args;
  const cases = parseCases(rest);
  const measureMemory = process.env.ADAMIX_BENCH_MEASURE_MEMORY === '1';
  let failed = false;
  for (const testCase of cases) {
    const plans = [...Array(testCase.runs).keys()].map((run) => ({ run: run + 1, memory: false }));
    if (measureMemory) {
      plans.push({ run: 'memory', memory: true });
    }
    for (const plan of plans) {
      const native = plan.memory ? null : await nativeSeconds(testCase);
      // A fresh browser per run, so that no renderer or cache outlives a run.
      const args = plan.memory ? [...CHROMIUM_ARGS, ...EAGER_MEMORY_ARGS] : CHROMIUM_ARGS;
      const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args });
      let record;
      try {
        record = await runOnce(browser, url, testCase, plan.run, plan.memory);
      } catch (error) {
        record = { label: testCase.label, run: plan.run, state: 'exception', error: String(error.stack ?? error) };
      } finally {
        await browser.close();
      }
      if (native !== null) {
        record.native_1thread_wall_s = native;
      }
      await appendFile(jsonl, `${JSON.stringify(record)}\n`);
      const peak = Math.max(...(record.renderers ?? []).map((r) => r.peak_rss_kb), 0) / 1024;
      const memory = record.measure_memory
        ? `, worker linear memory ${(record.wasm_memory_max_bytes / 2 ** 20).toFixed(0)} MiB`
        : '';
      console.log(`  browser ${testCase.label} run ${plan.run}: ${record.state}, wall ${record.wall_s?.toFixed(1)} s, ` +
        `core ${record.summary_seconds?.toFixed(1)} s, native 1 thread ${native?.toFixed(1)} s, rel. error ${record.rel_error_total}, renderer peak RSS ${peak.toFixed(0)} MiB${memory}` +
        `${record.error ? `, error: ${record.error}` : ''}`);
      failed ||= record.state !== 'done';
    }
  }
  process.exitCode = failed ? 1 : 0;
}

await main();
