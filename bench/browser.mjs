// Times the page's compression in headless Chromium, driven by playwright-core.
//
//   node bench/browser.mjs URL JSONL LABEL BASE FINETUNED RUNS [LABEL BASE FINETUNED RUNS ...]
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
// Appends one JSON line per run to JSONL.

import { execFileSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = createRequire(path.join(REPO_ROOT, 'package.json'))('playwright-core');

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
];
// Makes measureUserAgentSpecificMemory() measure at once instead of at the next garbage collection.
const EAGER_MEMORY_ARGS = ['--enable-blink-features=ForceEagerMeasureMemory'];
const DONE_OR_ERROR = '#status[data-state="done"], #status[data-state="error"]';
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
    throw new Error('usage: node bench/browser.mjs URL JSONL LABEL BASE FINETUNED RUNS [LABEL BASE FINETUNED RUNS ...]');
  }
  return cases;
}

async function main() {
  const [url, jsonl, ...rest] = process.argv.slice(2);
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
