// Browser test of the adamix page, in headless Chromium driven by playwright-core.
//
//   node tests/browser/run.mjs
//
// Needs: www/pkg/adamix.js and www/vendor/plotly.min.js (scripts/build-web.sh),
// the demo pair in www/demo/ (scripts/fetch-demo.sh), the native CLI
// target/release/adamix (cargo build --release) and /usr/bin/chromium
// (scripts/setup.sh).
// ADAMIX_TEST_TIMEOUT_S sets the time limit in seconds of one compression of
// the demo pair (default 600). ADAMIX_TEST_ONLY=TEXT runs only the parts whose
// name contains TEXT (tests/browser/harness.mjs).
//
// Prints one PASS or FAIL line per check and exits with status 1 if any check
// failed. Screenshots go to test-results/: compress.png (one compression) and
// preview.png (the whole page after Compare all methods and the budget
// explorer).

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import {
  check, CLI_PATH, openPage, pageRelativeErrors, part, REPO_ROOT, runBrowserTest, runCli, waitForRunEnd,
} from './harness.mjs';
import { buildSafetensors, seededValues } from './safetensors.mjs';

const BASE_PATH = path.join(REPO_ROOT, 'www/demo/base.safetensors');
const FINETUNED_PATH = path.join(REPO_ROOT, 'www/demo/finetuned.safetensors');
const SCREENSHOT_PATH = path.join(REPO_ROOT, 'test-results/compress.png');
const PREVIEW_PATH = path.join(REPO_ROOT, 'test-results/preview.png');

const METHODS = ['adamix', 'delta-come', 'low-rank', 'bitdelta'];

const RATIO = 1 / 16;
// Tolerances of the checks.
const REL_ERROR_TOLERANCE = 1e-4;
const SIZE_SLACK = 1.02;
const MAX_REL_ERROR_TOTAL = 0.48;
// ADAMIX's overall error must be at least this fraction below the best
// baseline's at 1/16.
const MIN_ADAMIX_MARGIN = 0.10;
// An explorer solve must match a full compression at the same ratio within
// this relative difference, per tensor and overall.
const EXPLORER_TOLERANCE = 1e-6;
// Slider positions of the budget explorer (index into its list of ratios).
const SLIDER_POSITIONS = { '1/32': { index: 4, ratio: 1 / 32 }, '1/16': { index: 8, ratio: 1 / 16 }, '1/8': { index: 12, ratio: 1 / 8 } };

const RUN_TIMEOUT_MS = Number(process.env.ADAMIX_TEST_TIMEOUT_S ?? 600) * 1000;
// A bad input must be rejected within this time, or the page counts as hung.
const BAD_INPUT_TIMEOUT_MS = 120_000;

const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16']);

// Size in bytes of the checkpoint's float tensors stored as f16.
function f16Bytes(inspection) {
  return inspection.tensors
    .filter((tensor) => FLOAT_DTYPES.has(tensor.dtype))
    .reduce((sum, tensor) => sum + 2 * tensor.shape.reduce((product, size) => product * size, 1), 0);
}

// ---- Parts of the test ----

async function testMainPath(context, serverUrl, temporaryDirectory, consoleLines) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.setInputFiles('#base-input', BASE_PATH);
  await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
  await page.selectOption('#ratio', String(RATIO));
  await page.click('#compress');
  check('buttons are disabled while running',
    await page.isDisabled('#compress') && await page.isDisabled('#load-demo'));

  const started = Date.now();
  const { state, error } = await waitForRunEnd(page, RUN_TIMEOUT_MS);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!check('compression of the demo pair finishes', state === 'done', `state ${state}, ${seconds} s${error ? `, error: ${error}` : ''}`)) {
    return;
  }
  check('buttons are enabled after the run', await page.isEnabled('#compress') && await page.isEnabled('#load-demo'));
  check('pairing report is shown', await page.isVisible('#pairing'), await page.textContent('#pairing-counts'));
  check('summary is shown', await page.isVisible('#summary'));

  const rows = await pageRelativeErrors(page);
  const tableRows = await page.locator('#results tr[data-tensor]').count();
  check('results table has rows with a relative error', rows.length > 0, `${rows.length} of ${tableRows} rows`);

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  check('download is named after the fine-tune', download.suggestedFilename() === 'finetuned.adamix.safetensors',
    download.suggestedFilename());
  const deltaPath = path.join(temporaryDirectory, 'finetuned.adamix.safetensors');
  await download.saveAs(deltaPath);
  const fileBytes = (await stat(deltaPath)).size;
  const pageCompressedBytes = Number(await page.getAttribute('#summary', 'data-compressed-bytes'));
  const pageRelErrorTotal = Number(await page.getAttribute('#summary', 'data-rel-error-total'));
  check('downloaded size equals the summary', fileBytes === pageCompressedBytes,
    `file ${fileBytes} bytes, summary ${pageCompressedBytes}`);

  await mkdir(path.dirname(SCREENSHOT_PATH), { recursive: true });
  await page.screenshot({ path: SCREENSHOT_PATH, fullPage: true });
  console.log(`screenshot: ${path.relative(REPO_ROOT, SCREENSHOT_PATH)}`);

  if (!check('native CLI exists', existsSync(CLI_PATH), `${CLI_PATH}; build it with cargo build --release`)) {
    return;
  }
  const verification = runCli([
    'verify', '--base', BASE_PATH, '--finetuned', FINETUNED_PATH, '--delta', deltaPath, '--json',
  ]);
  const cliErrors = new Map(verification.tensors.map((tensor) => [tensor.name, tensor.rel_error]));

  let worst = { name: null, difference: 0 };
  const disagreements = [];
  for (const { name, relError } of rows) {
    if (!cliErrors.has(name)) {
      disagreements.push(`${name}: not in the CLI output`);
      continue;
    }
    const difference = Math.abs(relError - cliErrors.get(name));
    if (!(difference <= REL_ERROR_TOLERANCE)) {
      disagreements.push(`${name}: page ${relError}, CLI ${cliErrors.get(name)}`);
    }
    if (difference > worst.difference) {
      worst = { name, difference };
    }
  }
  check(`page relative errors match the CLI within ${REL_ERROR_TOLERANCE}`, disagreements.length === 0,
    disagreements.length === 0
      ? `${rows.length} tensors, largest difference ${worst.difference.toExponential(2)}${worst.name ? ` on ${worst.name}` : ''}`
      : disagreements.slice(0, 10).join('; '));
  check(`page overall relative error matches the CLI within ${REL_ERROR_TOLERANCE}`,
    Math.abs(pageRelErrorTotal - verification.rel_error_total) <= REL_ERROR_TOLERANCE,
    `page ${pageRelErrorTotal}, CLI ${verification.rel_error_total}`);
  check(`overall relative error is at most ${MAX_REL_ERROR_TOTAL}`,
    verification.rel_error_total <= MAX_REL_ERROR_TOTAL, `CLI ${verification.rel_error_total}`);
  check('CLI reads the same file size', verification.file_bytes === fileBytes,
    `CLI ${verification.file_bytes}, downloaded ${fileBytes}`);

  const f16Size = f16Bytes(runCli(['inspect', FINETUNED_PATH, '--json']));
  const limit = SIZE_SLACK * RATIO * f16Size;
  check(`file is at most ${SIZE_SLACK} × 1/16 of the f16 fine-tune`, fileBytes <= limit,
    `${fileBytes} bytes, limit ${Math.floor(limit)} (f16 size ${f16Size})`);
  await page.close();
}

// Compresses the demo pair on `device` ('gpu' or 'cpu') and saves the file
// as `fileName`. Returns {path, device, rowDevices} or null when it failed,
// where rowDevices lists the device of each compressed matrix.
async function compressOnDevice(context, serverUrl, consoleLines, device, directory, fileName) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.setInputFiles('#base-input', BASE_PATH);
  await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
  await page.selectOption('#ratio', String(RATIO));
  await page.selectOption('#device', device);
  await page.click('#compress');
  const { state, error } = await waitForRunEnd(page, RUN_TIMEOUT_MS);
  if (!check(`compression with device ${device} finishes`, state === 'done', error ?? `state ${state}`)) {
    await page.close();
    return null;
  }
  const summaryDevice = await page.getAttribute('#summary', 'data-device');
  const rowDevices = await page.$$eval('#results tr[data-kind="adamix"]', (rows) => rows.map((row) => row.dataset.device));
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const filePath = path.join(directory, fileName);
  await download.saveAs(filePath);
  await page.close();
  return { path: filePath, device: summaryDevice, rowDevices };
}

// The WebGPU kernels (SwiftShader in headless Chromium) and the CPU path must
// give the same file. (The native CLI's file differs in the last bits of the
// SVD, which runs on two threads there, and where two triplets cost nearly the
// same that can change an allocation; testMainPath compares its errors.)
async function testWebGpu(context, serverUrl, temporaryDirectory, consoleLines) {
  const gpu = await compressOnDevice(context, serverUrl, consoleLines, 'gpu', temporaryDirectory, 'gpu.safetensors');
  const cpu = await compressOnDevice(context, serverUrl, consoleLines, 'cpu', temporaryDirectory, 'cpu.safetensors');
  if (!gpu || !cpu) {
    return;
  }
  check('the summary names the WebGPU adapter when the GPU ran', gpu.device && gpu.device !== 'cpu', `Ran on: ${gpu.device}`);
  check('the summary says cpu when the CPU ran', cpu.device === 'cpu', `Ran on: ${cpu.device}`);
  const gpuMatrices = gpu.rowDevices.filter((device) => device === 'gpu').length;
  check('the GPU built the cost table of every compressed matrix', gpuMatrices > 0 && gpuMatrices === gpu.rowDevices.length,
    `${gpuMatrices} of ${gpu.rowDevices.length} matrices on the GPU; devices: ${[...new Set(gpu.rowDevices)].join(', ')}`);

  const [gpuBytes, cpuBytes] = await Promise.all([readFile(gpu.path), readFile(cpu.path)]);
  check('the file is byte-identical whether the GPU or the CPU ran', gpuBytes.equals(cpuBytes),
    `GPU ${gpuBytes.length} bytes, CPU ${cpuBytes.length} bytes${gpuBytes.equals(cpuBytes) ? '' : `, first difference at byte ${firstDifference(gpuBytes, cpuBytes)}`}`);
}

function firstDifference(a, b) {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    if (a[i] !== b[i]) {
      return i;
    }
  }
  return length;
}

async function testLoadDemo(context, serverUrl, consoleLines) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.click('#load-demo');
  const { state, error } = await waitForRunEnd(page, RUN_TIMEOUT_MS);
  check('Load demo finishes', state === 'done', `state ${state}${error ? `, error: ${error}` : ''}`);
  check('Load demo shows the summary', await page.isVisible('#summary')
    && (await page.getAttribute('#summary', 'data-rel-error-total')) !== null,
    `overall relative error ${await page.getAttribute('#summary', 'data-rel-error-total')}`);
  check('Load demo lists the demo files',
    (await page.textContent('#base-files')).includes('base.safetensors')
    && (await page.textContent('#finetuned-files')).includes('finetuned.safetensors'));
  check('Load demo offers the download', await page.isVisible('#download'));
  await page.close();
}

async function testCancel(context, serverUrl, consoleLines) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.setInputFiles('#base-input', BASE_PATH);
  await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
  await page.click('#compress');
  await page.waitForSelector('#cancel', { state: 'visible' });
  await page.click('#cancel');
  const state = await page.getAttribute('#status', 'data-state');
  check('Cancel stops the run', state === 'cancelled', `state ${state}`);
  check('Cancel enables Compress again', await page.isEnabled('#compress'));
  check('Cancel offers no download', await page.isHidden('#download'));
  await page.close();
}

// Makes the worker's module fail to load (the bindings, or the wasm file
// that init() fetches) and checks that the page reports it instead of hanging.
async function testWorkerFailure(context, serverUrl, consoleLines, missingFile) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.route(`**/www/pkg/${missingFile}`, (route) => route.fulfill({ status: 404, body: 'Not found' }));
  await page.setInputFiles('#base-input', BASE_PATH);
  await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
  await page.click('#compress');

  let outcome;
  try {
    outcome = await waitForRunEnd(page, BAD_INPUT_TIMEOUT_MS);
  } catch (error) {
    check(`missing ${missingFile}: run ends within ${BAD_INPUT_TIMEOUT_MS / 1000} s`, false,
      `status: ${await page.textContent('#status')}`);
    await page.close();
    return;
  }
  check(`missing ${missingFile}: run ends with an error`, outcome.state === 'error', `state ${outcome.state}`);
  check(`missing ${missingFile}: error box is visible`, outcome.error !== null, outcome.error ?? '');
  check(`missing ${missingFile}: Compress is enabled again`, await page.isEnabled('#compress'));
  await page.close();
}

async function testDropZone(context, serverUrl, consoleLines) {
  const page = await openPage(context, serverUrl, consoleLines);
  const dataTransfer = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(16)], 'dropped.safetensors'));
    transfer.items.add(new File(['{}'], 'config.json'));
    return transfer;
  });
  await page.dispatchEvent('#base-drop', 'drop', { dataTransfer });
  await page.waitForSelector('#base-files li');
  const listed = await page.$$eval('#base-files .file-name', (names) => names.map((name) => name.textContent));
  check('dropped checkpoint file is listed', listed.length === 1 && listed[0] === 'dropped.safetensors',
    `listed: ${listed.join(', ')}`);
  const ignored = await page.textContent('#base-files li.ignored').catch(() => '');
  check('dropped config.json is ignored', ignored.includes('config.json'), ignored);
  await page.close();
}

// Hand-written checkpoints for the bad-input cases: a layer with a [256, 512]
// weight and a [256] bias. A much smaller file fails the size budget before
// its values are read, because 1/16 of its f16 delta is less than the header.
function smallCheckpoint({ weightShape = [256, 512], seed, nanAt = null }) {
  const weight = seededValues(weightShape[0] * weightShape[1], seed);
  if (nanAt !== null) {
    weight[nanAt] = Number.NaN;
  }
  return buildSafetensors([
    { name: 'layer.weight', dtype: 'F32', shape: weightShape, values: weight },
    { name: 'layer.bias', dtype: 'F32', shape: [weightShape[0]], values: seededValues(weightShape[0], seed + 1) },
  ]);
}

async function badInputCases() {
  const finetuned = await readFile(FINETUNED_PATH);
  return [
    {
      title: 'truncated fine-tune',
      base: BASE_PATH,
      finetuned: { name: 'finetuned-truncated.safetensors', buffer: finetuned.subarray(0, 10 * 1000 * 1000) },
      expectedFile: 'finetuned-truncated.safetensors',
    },
    {
      title: 'text file named .safetensors',
      base: BASE_PATH,
      finetuned: {
        name: 'notes.safetensors',
        buffer: Buffer.from('These are meeting notes, not a safetensors checkpoint.\n'.repeat(20)),
      },
      expectedFile: 'notes.safetensors',
    },
    {
      title: 'shape mismatch',
      base: { name: 'shape-base.safetensors', buffer: smallCheckpoint({ seed: 1 }) },
      finetuned: { name: 'shape-finetuned.safetensors', buffer: smallCheckpoint({ weightShape: [256, 384], seed: 2 }) },
      expectedFile: 'shape-finetuned.safetensors',
      expectedTensor: 'layer.weight',
    },
    {
      title: 'NaN weights',
      base: { name: 'nan-base.safetensors', buffer: smallCheckpoint({ seed: 1 }) },
      finetuned: { name: 'nan-finetuned.safetensors', buffer: smallCheckpoint({ seed: 1, nanAt: 1000 }) },
      expectedFile: 'nan-finetuned.safetensors',
      expectedTensor: 'layer.weight',
    },
  ];
}

async function testBadInput(context, serverUrl, consoleLines, testCase) {
  const page = await openPage(context, serverUrl, consoleLines);
  await page.setInputFiles('#base-input', testCase.base);
  await page.setInputFiles('#finetuned-input', testCase.finetuned);
  await page.click('#compress');

  let outcome;
  try {
    outcome = await waitForRunEnd(page, BAD_INPUT_TIMEOUT_MS);
  } catch (error) {
    check(`${testCase.title}: run ends within ${BAD_INPUT_TIMEOUT_MS / 1000} s`, false,
      `status: ${await page.textContent('#status')}`);
    await page.close();
    return;
  }
  check(`${testCase.title}: run ends with an error`, outcome.state === 'error', `state ${outcome.state}`);
  check(`${testCase.title}: error box is visible`, outcome.error !== null);
  const message = outcome.error ?? '';
  check(`${testCase.title}: error names the file`, message.includes(testCase.expectedFile), message);
  if (testCase.expectedTensor) {
    check(`${testCase.title}: error names the tensor`, message.includes(testCase.expectedTensor), message);
  }
  check(`${testCase.title}: Compress is enabled again`, await page.isEnabled('#compress'));
  await page.close();
}

// ---- Compare mode, budget explorer and exports ----

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function relativeDifference(value, reference) {
  return Math.abs(value - reference) / Math.max(Math.abs(reference), 1e-30);
}

// Clicks `selector` and returns the `count` downloads it starts, in order.
async function clickForDownloads(page, selector, count, timeoutMs) {
  const downloads = [];
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${selector} started ${downloads.length} of ${count} downloads within ${timeoutMs / 1000} s`)), timeoutMs);
    const onDownload = (download) => {
      downloads.push(download);
      if (downloads.length === count) {
        clearTimeout(timer);
        page.off('download', onDownload);
        resolve(downloads);
      }
    };
    page.on('download', onDownload);
  });
  await page.click(selector);
  return done;
}

async function saveDownload(download, directory) {
  const file = path.join(directory, download.suggestedFilename());
  await download.saveAs(file);
  return file;
}

// Returns {method: {relError, bytes, withinBudget}} from the Compare table.
async function compareTableRows(page) {
  const rows = await page.$$eval('#compare-table tbody tr[data-method]', (trs) => trs.map((tr) => ({
    method: tr.dataset.method,
    relError: tr.dataset.relError === undefined ? null : Number(tr.dataset.relError),
    bytes: tr.dataset.bytes === undefined ? null : Number(tr.dataset.bytes),
    withinBudget: tr.dataset.withinBudget,
    best: tr.classList.contains('best'),
  })));
  return new Map(rows.map((row) => [row.method, row]));
}

// Returns the plot's trace count and the texts of its title and axis titles.
async function plotInfo(page, id) {
  return page.$eval(`#${id}`, (element) => ({
    traces: element.data?.length ?? 0,
    title: element.layout?.title?.text ?? '',
    xTitle: element.layout?.xaxis?.title?.text ?? '',
    yTitle: element.layout?.yaxis?.title?.text ?? '',
    showLegend: element.layout?.showlegend,
  }));
}

async function testCompareMode(page, f16Size) {
  await page.setInputFiles('#base-input', BASE_PATH);
  await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
  await page.selectOption('#ratio', String(RATIO));
  await page.selectOption('#method', 'adamix');
  await page.click('#compare');
  check('Compare disables the buttons while running', await page.isDisabled('#compress') && await page.isDisabled('#compare'));

  const started = Date.now();
  const { state, error } = await waitForRunEnd(page, METHODS.length * RUN_TIMEOUT_MS);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!check('Compare all methods finishes', state === 'done', `state ${state}, ${seconds} s${error ? `, error: ${error}` : ''}`)) {
    return null;
  }
  console.log(`status: ${await page.textContent('#status')}`);

  const rows = await compareTableRows(page);
  check('Compare table has one row per method', rows.size === METHODS.length && METHODS.every((method) => rows.has(method)),
    [...rows.keys()].join(', '));
  const limit = SIZE_SLACK * RATIO * f16Size;
  for (const method of METHODS) {
    const row = rows.get(method);
    if (!row || row.bytes === null) {
      check(`${method}: has a result`, false);
      continue;
    }
    console.log(`  ${method.padEnd(10)} ${String(row.bytes).padStart(9)} bytes  relative error ${row.relError.toFixed(6)}`);
    check(`${method}: file is within ${SIZE_SLACK} × 1/16 of the f16 fine-tune`, row.bytes <= limit,
      `${row.bytes} bytes, limit ${Math.floor(limit)}`);
    check(`${method}: page shows within budget`, row.withinBudget === 'true', row.withinBudget);
  }

  const adamix = rows.get('adamix');
  const baselines = METHODS.filter((method) => method !== 'adamix' && rows.get(method)?.relError !== null);
  const nextBest = baselines.reduce((best, method) => (best === null || rows.get(method).relError < rows.get(best).relError ? method : best), null);
  if (adamix?.relError !== null && nextBest) {
    const margin = (rows.get(nextBest).relError - adamix.relError) / rows.get(nextBest).relError;
    check('ADAMIX has the lowest relative error', baselines.every((method) => adamix.relError < rows.get(method).relError),
      `ADAMIX ${adamix.relError.toFixed(4)}, next best ${nextBest} ${rows.get(nextBest).relError.toFixed(4)}`);
    check(`ADAMIX's error is at least ${MIN_ADAMIX_MARGIN * 100}% below the next best`, margin >= MIN_ADAMIX_MARGIN,
      `${(margin * 100).toFixed(1)}% below ${nextBest}`);
    check('the lowest error is highlighted', adamix.best && baselines.every((method) => !rows.get(method).best));
    const note = await page.textContent('#compare-note');
    check('the page states the reduction in percent', note.includes(`${(margin * 100).toFixed(1)}%`), note);
  }
  await checkPlots(page, METHODS.length);
  return rows;
}

async function checkPlots(page, errorSeries) {
  await page.waitForSelector('#plots[data-state="ready"], #plots[data-state="error"]', { timeout: 60_000 });
  const state = await page.getAttribute('#plots', 'data-state');
  if (!check('plots are drawn', state === 'ready', `state ${state}: ${await page.textContent('#plots-error')}`)) {
    return;
  }
  const expectedTraces = {
    'plot-spectrum': (count) => count >= 2,
    'plot-widths-heatmap': (count) => count === 1,
    'plot-errors': (count) => count === errorSeries,
    'plot-width-histogram': (count) => count >= 2,
    'plot-bytes-by-type': (count) => count === 1,
    'plot-method-totals': (count) => count === 1,
  };
  for (const [id, isExpected] of Object.entries(expectedTraces)) {
    const info = await plotInfo(page, id);
    check(`${id} has the expected series`, isExpected(info.traces), `traces: ${info.traces}`);
    check(`${id} has a title and axis labels`, info.title !== '' && info.xTitle !== '' && info.yTitle !== '',
      `"${info.title}" / x "${info.xTitle}" / y "${info.yTitle}"`);
  }

  const options = await page.$$eval('#matrix-select option', (items) => items.map((item) => item.value));
  check('matrix select lists the compressed matrices', options.length > 10, `${options.length} matrices`);
  const chosen = options.find((name) => name.includes('attention.self.query')) ?? options.at(-1);
  await page.selectOption('#matrix-select', chosen);
  await page.waitForFunction((name) => document.getElementById('plot-spectrum').layout?.title?.text?.includes(name), chosen, { timeout: 10_000 });
  check('choosing a matrix redraws its spectrum', true, chosen);
  const axisType = await page.$eval('#plot-spectrum', (element) => element.layout.yaxis.type);
  check('spectrum uses a log-scale y axis', axisType === 'log', axisType);
}

async function testExports(page, temporaryDirectory) {
  const directory = await mkdtemp(path.join(temporaryDirectory, 'exports-'));

  const [report] = await clickForDownloads(page, '#download-report', 1, 30_000);
  const reportText = await readFile(await saveDownload(report, directory), 'utf8');
  let parsed = null;
  try {
    parsed = JSON.parse(reportText);
  } catch (error) {
    check('report parses as JSON', false, error.message);
  }
  if (parsed) {
    const tableRows = await page.locator('#results tr[data-tensor]').count();
    check('report parses as JSON', true, `${report.suggestedFilename()}, ${reportText.length} characters`);
    check('report names the method and ratio', parsed.method === 'adamix' && parsed.ratio === RATIO,
      `method ${parsed.method}, ratio ${parsed.ratio}`);
    check('report has every tensor row', Array.isArray(parsed.rows) && parsed.rows.length === tableRows,
      `${parsed.rows?.length} rows, table ${tableRows}`);
    check('report rows carry allocations and timings',
      parsed.rows.some((row) => Array.isArray(row.allocation) && row.allocation.length > 0)
      && parsed.rows.every((row) => typeof row.seconds === 'number'));
    check('report summary equals the page', String(parsed.summary?.rel_error_total) === await page.getAttribute('#summary', 'data-rel-error-total'));
    check('report has the comparison of all methods', parsed.comparison?.methods?.length === METHODS.length,
      `${parsed.comparison?.methods?.length} methods`);
  }

  const peftDownloads = await clickForDownloads(page, '#export-peft', 2, RUN_TIMEOUT_MS);
  const peftNames = peftDownloads.map((download) => download.suggestedFilename()).sort();
  check('PEFT export downloads the adapter and its config',
    peftNames.join(',') === 'adapter_config.json,adapter_model.safetensors', peftNames.join(', '));
  const peftFiles = new Map();
  for (const download of peftDownloads) {
    peftFiles.set(download.suggestedFilename(), await saveDownload(download, directory));
  }
  if (peftFiles.has('adapter_config.json')) {
    const config = JSON.parse(await readFile(peftFiles.get('adapter_config.json'), 'utf8'));
    check('adapter_config.json is a LoRA config', config.peft_type === 'LORA' && Object.keys(config.rank_pattern ?? {}).length > 0,
      `peft_type ${config.peft_type}, ${Object.keys(config.rank_pattern ?? {}).length} modules`);
  }
  if (peftFiles.has('adapter_model.safetensors')) {
    const adapter = runCli(['inspect', peftFiles.get('adapter_model.safetensors'), '--json']);
    const names = adapter.tensors.map((tensor) => tensor.name);
    check('CLI reads adapter_model.safetensors with LoRA tensors',
      names.length > 0 && names.every((name) => /\.(lora_[AB]\.weight|lora_embedding_[AB])$/.test(name)),
      `${names.length} tensors, e.g. ${names[0]}`);
  }
  const skipped = await page.isVisible('#peft-skipped') ? await page.textContent('#peft-skipped') : '';
  console.log(`  PEFT skipped: ${skipped.slice(0, 200)}${skipped.length > 200 ? '…' : ''}`);

  const [reconstructed] = await clickForDownloads(page, '#export-reconstructed', 1, RUN_TIMEOUT_MS);
  check('reconstructed checkpoint is named after the fine-tune',
    reconstructed.suggestedFilename() === 'finetuned.reconstructed.safetensors', reconstructed.suggestedFilename());
  const reconstructedPath = await saveDownload(reconstructed, directory);
  const rebuilt = runCli(['inspect', reconstructedPath, '--json']);
  const original = runCli(['inspect', FINETUNED_PATH, '--json']);
  const describeTensors = (inspection) => new Map(inspection.tensors.map((tensor) => [tensor.name, `${tensor.dtype} [${tensor.shape.join(', ')}]`]));
  const rebuiltTensors = describeTensors(rebuilt);
  const originalTensors = describeTensors(original);
  const differences = [...originalTensors]
    .filter(([name, description]) => rebuiltTensors.get(name) !== description)
    .map(([name, description]) => `${name}: fine-tune ${description}, reconstructed ${rebuiltTensors.get(name) ?? 'missing'}`);
  for (const name of rebuiltTensors.keys()) {
    if (!originalTensors.has(name)) {
      differences.push(`${name}: only in the reconstructed checkpoint`);
    }
  }
  check('reconstructed checkpoint has the fine-tune\'s names, shapes and dtypes', differences.length === 0,
    differences.length === 0 ? `${rebuiltTensors.size} tensors` : differences.slice(0, 5).join('; '));
}

// Moves the explorer's slider to `position` and waits for the solve.
// Returns {milliseconds, relTotal, rows}.
async function moveExplorer(page, position) {
  const { index, ratio } = SLIDER_POSITIONS[position];
  await page.$eval('#explore-ratio', (slider, value) => {
    slider.value = String(value);
    slider.dispatchEvent(new Event('input', { bubbles: true }));
  }, index);
  await page.waitForSelector(`#explorer[data-state="solved"][data-ratio="${ratio}"], #explorer[data-state="error"]`, { timeout: RUN_TIMEOUT_MS });
  const state = await page.getAttribute('#explorer', 'data-state');
  if (state !== 'solved') {
    throw new Error(`the explorer failed at ${position}: ${await page.textContent('#explore-message')}`);
  }
  return {
    milliseconds: Number(await page.getAttribute('#explorer', 'data-solve-ms')),
    relTotal: Number(await page.getAttribute('#summary', 'data-rel-error-total')),
    rows: await pageRelativeErrors(page),
  };
}

// Compares the shown errors of an explorer solve with those of a full
// compression, tensor by tensor, within EXPLORER_TOLERANCE (relative).
function compareErrors(label, explored, full) {
  const fullErrors = new Map(full.rows.map(({ name, relError }) => [name, relError]));
  const problems = [];
  let worst = 0;
  for (const { name, relError } of explored.rows) {
    if (!fullErrors.has(name)) {
      problems.push(`${name}: not in the full compression`);
      continue;
    }
    const difference = relativeDifference(relError, fullErrors.get(name));
    worst = Math.max(worst, difference);
    if (!(difference <= EXPLORER_TOLERANCE)) {
      problems.push(`${name}: explorer ${relError}, full ${fullErrors.get(name)}`);
    }
  }
  check(`${label}: per-tensor errors equal a full compression within ${EXPLORER_TOLERANCE} relative`,
    problems.length === 0 && explored.rows.length === full.rows.length,
    problems.length === 0 ? `${explored.rows.length} tensors, largest relative difference ${worst.toExponential(2)}` : problems.slice(0, 5).join('; '));
  check(`${label}: overall error equals a full compression within ${EXPLORER_TOLERANCE} relative`,
    relativeDifference(explored.relTotal, full.relTotal) <= EXPLORER_TOLERANCE,
    `explorer ${explored.relTotal}, full ${full.relTotal}`);
}

// Compresses with ADAMIX at `ratio` on a page of its own and returns the
// shown {relTotal, rows}.
async function fullCompression(context, serverUrl, consoleLines, ratio) {
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    await page.setInputFiles('#base-input', BASE_PATH);
    await page.setInputFiles('#finetuned-input', FINETUNED_PATH);
    await page.selectOption('#method', 'adamix');
    await page.selectOption('#ratio', String(ratio));
    await page.click('#compress');
    const { state, error } = await waitForRunEnd(page, RUN_TIMEOUT_MS);
    if (state !== 'done') {
      throw new Error(`the full compression at ${ratio} ended in state ${state}: ${error}`);
    }
    return {
      relTotal: Number(await page.getAttribute('#summary', 'data-rel-error-total')),
      rows: await pageRelativeErrors(page),
    };
  } finally {
    await page.close();
  }
}

// Enters a target size in MB and checks that it is reported as unreachable,
// with the smallest and largest reachable sizes, and is not solved.
async function checkUnreachableTarget(page, label, megabytes, reachable) {
  const solvesBefore = await page.getAttribute('#explorer', 'data-solves');
  await page.fill('#explore-mb', megabytes.toFixed(3));
  await page.dispatchEvent('#explore-mb', 'change');
  await page.waitForSelector('#explorer[data-state="unreachable"]', { timeout: 10_000 });
  const message = await page.isVisible('#explore-message') ? await page.textContent('#explore-message') : '';
  const [smallest, largest] = await page.evaluate(async ([minBytes, maxBytes]) => {
    const { formatBytes } = await import('/www/format.js');
    return [formatBytes(minBytes), formatBytes(maxBytes)];
  }, [reachable.minBytes, reachable.maxBytes]);
  check(`${label}: page reports unreachable`, message.includes('not reachable'), message);
  check(`${label}: the message gives the smallest and largest reachable sizes`,
    message.includes(smallest) && message.includes(largest), `expected ${smallest} and ${largest}`);
  check(`${label}: nothing is solved`, await page.getAttribute('#explorer', 'data-solves') === solvesBefore,
    `solves before ${solvesBefore}, after ${await page.getAttribute('#explorer', 'data-solves')}`);
}

async function testBudgetExplorer(page, context, serverUrl, consoleLines, temporaryDirectory, compareRows) {
  check('budget explorer is offered after an ADAMIX result', await page.isVisible('#explore-open'));
  const started = Date.now();
  await page.click('#explore-open');
  await page.waitForSelector('#explorer[data-state="ready"], #explorer[data-state="error"]', { timeout: RUN_TIMEOUT_MS });
  const state = await page.getAttribute('#explorer', 'data-state');
  if (!check('budget explorer opens', state === 'ready',
    `state ${state}, ${((Date.now() - started) / 1000).toFixed(1)} s: ${await page.textContent('#explorer-status')}`)) {
    return [];
  }
  const reachable = {
    minBytes: Number(await page.getAttribute('#explorer', 'data-min-bytes')),
    maxBytes: Number(await page.getAttribute('#explorer', 'data-max-bytes')),
    minRatio: Number(await page.getAttribute('#explorer', 'data-min-ratio')),
    maxRatio: Number(await page.getAttribute('#explorer', 'data-max-ratio')),
  };
  console.log(`  reachable: ${reachable.minBytes} to ${reachable.maxBytes} bytes (ratio ${reachable.minRatio} to ${reachable.maxRatio}); ${await page.textContent('#explore-range')}`);

  const solveTimes = [];
  const at32 = await moveExplorer(page, '1/32');
  solveTimes.push(at32.milliseconds);
  const at16 = await moveExplorer(page, '1/16');
  solveTimes.push(at16.milliseconds);
  console.log(`  explorer: 1/32 error ${at32.relTotal}, 1/16 error ${at16.relTotal}`);
  check('explorer at 1/16 equals the compression at 1/16 within 1e-6 relative',
    relativeDifference(at16.relTotal, compareRows.get('adamix').relError) <= EXPLORER_TOLERANCE,
    `explorer ${at16.relTotal}, compression ${compareRows.get('adamix').relError}`);
  check('explorer at 1/32 has a higher error than at 1/16', at32.relTotal > at16.relTotal);

  const full32 = await fullCompression(context, serverUrl, consoleLines, 1 / 32);
  compareErrors('explorer at 1/32', at32, full32);

  for (const position of ['1/8', '1/32', '1/16', '1/8', '1/32', '1/16']) {
    solveTimes.push((await moveExplorer(page, position)).milliseconds);
  }
  const shownTime = await page.textContent('#explore-time');
  check('the page shows the solve time', /Solved at 1\/16 in [\d.]+ (ms|s)/.test(shownTime), shownTime);

  await checkUnreachableTarget(page, 'target below the smallest size', reachable.minBytes / 2 / 1e6, reachable);
  await checkUnreachableTarget(page, 'target above the largest size', 2 * reachable.maxBytes / 1e6, reachable);

  await moveExplorer(page, '1/32');
  const [download] = await clickForDownloads(page, '#explore-download', 1, RUN_TIMEOUT_MS);
  check('Download at this ratio names the ratio', download.suggestedFilename() === 'finetuned.1-32.adamix.safetensors',
    download.suggestedFilename());
  const deltaPath = await saveDownload(download, temporaryDirectory);
  const fileBytes = (await stat(deltaPath)).size;
  const shownBytes = Number(await page.getAttribute('#summary', 'data-compressed-bytes'));
  check('file at 1/32 has the size the explorer showed', fileBytes === shownBytes, `file ${fileBytes}, shown ${shownBytes}`);
  const verification = runCli(['verify', '--base', BASE_PATH, '--finetuned', FINETUNED_PATH, '--delta', deltaPath, '--json']);
  check(`CLI error of the file at 1/32 matches the explorer within ${REL_ERROR_TOLERANCE}`,
    Math.abs(verification.rel_error_total - at32.relTotal) <= REL_ERROR_TOLERANCE,
    `CLI ${verification.rel_error_total}, explorer ${at32.relTotal}`);

  // Back at the ratio of the comparison, the error figure shows all methods again.
  await moveExplorer(page, '1/16');
  return solveTimes;
}

async function testPreview(context, serverUrl, temporaryDirectory, consoleLines) {
  if (!check('native CLI exists', existsSync(CLI_PATH), `${CLI_PATH}; build it with cargo build --release`)) {
    return;
  }
  const f16Size = f16Bytes(runCli(['inspect', FINETUNED_PATH, '--json']));
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    const compareRows = await testCompareMode(page, f16Size);
    if (!compareRows?.get('adamix')?.relError) {
      return;
    }
    await testExports(page, temporaryDirectory);
    const solveTimes = await testBudgetExplorer(page, context, serverUrl, consoleLines, temporaryDirectory, compareRows);
    if (solveTimes.length > 0) {
      console.log(`  explorer solve times (ms, measured in the worker around explorer.solve): ${solveTimes.map((time) => time.toFixed(0)).join(', ')}; median ${median(solveTimes).toFixed(0)} ms`);
    }

    await page.waitForSelector('#plots[data-state="ready"]', { timeout: 60_000 });
    await mkdir(path.dirname(PREVIEW_PATH), { recursive: true });
    await page.screenshot({ path: PREVIEW_PATH, fullPage: true });
    console.log(`screenshot: ${path.relative(REPO_ROOT, PREVIEW_PATH)}`);
  } finally {
    await page.close();
  }
}

// ---- Main ----

async function main() {
  const prerequisites = [
    [BASE_PATH, 'place the demo pair with scripts/fetch-demo.sh'],
    [FINETUNED_PATH, 'place the demo pair with scripts/fetch-demo.sh'],
  ];
  await runBrowserTest(prerequisites, 'adamix-browser-', async ({ context, serverUrl, directory, consoleLines }) => {
    await part('compress the demo pair and verify with the CLI',
      () => testMainPath(context, serverUrl, directory, consoleLines));
    await part('Compare all methods, exports and the budget explorer',
      () => testPreview(context, serverUrl, directory, consoleLines));
    await part('WebGPU and CPU give the same file', () => testWebGpu(context, serverUrl, directory, consoleLines));
    await part('Load demo', () => testLoadDemo(context, serverUrl, consoleLines));
    await part('Cancel', () => testCancel(context, serverUrl, consoleLines));
    for (const missingFile of ['adamix.js', 'adamix_bg.wasm']) {
      await part(`worker failure: missing ${missingFile}`,
        () => testWorkerFailure(context, serverUrl, consoleLines, missingFile));
    }
    await part('drop zone', () => testDropZone(context, serverUrl, consoleLines));
    for (const testCase of await badInputCases()) {
      await part(`bad input: ${testCase.title}`, () => testBadInput(context, serverUrl, consoleLines, testCase));
    }
  });
}

await main();
