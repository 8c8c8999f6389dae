// Browser test of the adamix page, in headless Chromium driven by playwright-core.
//
//   node tests/browser/run.mjs
//
// Needs: www/pkg/adamix.js (scripts/build-web.sh), the demo pair in www/demo/
// (scripts/fetch-demo.sh), the native CLI target/release/adamix
// (cargo build --release) and /usr/bin/chromium (scripts/setup.sh).
// ADAMIX_TEST_TIMEOUT_S sets the time limit in seconds of one compression of
// the demo pair (default 600).
//
// Prints one PASS or FAIL line per check and exits with status 1 if any check
// failed. The screenshot of the finished results goes to
// test-results/compress.png.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from './server.mjs';
import { buildSafetensors, seededValues } from './safetensors.mjs';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE_PATH = path.join(REPO_ROOT, 'www/demo/base.safetensors');
const FINETUNED_PATH = path.join(REPO_ROOT, 'www/demo/finetuned.safetensors');
const CLI_PATH = path.join(REPO_ROOT, 'target/release/adamix');
const WASM_BINDINGS_PATH = path.join(REPO_ROOT, 'www/pkg/adamix.js');
const SCREENSHOT_PATH = path.join(REPO_ROOT, 'test-results/compress.png');

const RATIO = 1 / 16;
// Tolerances of the checks.
const REL_ERROR_TOLERANCE = 1e-4;
const SIZE_SLACK = 1.02;
const MAX_REL_ERROR_TOTAL = 0.48;

const RUN_TIMEOUT_MS = Number(process.env.ADAMIX_TEST_TIMEOUT_S ?? 600) * 1000;
// A bad input must be rejected within this time, or the page counts as hung.
const BAD_INPUT_TIMEOUT_MS = 120_000;

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
];

const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16']);

// ---- Reporting ----

let failures = 0;
let passes = 0;

function check(name, condition, detail = '') {
  if (condition) {
    passes += 1;
    console.log(`PASS ${name}${detail ? ` (${detail})` : ''}`);
  } else {
    failures += 1;
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
  return condition;
}

// Runs one part of the test. An exception counts as one failed check, so the
// remaining parts still run.
async function part(name, body) {
  console.log(`\n== ${name}`);
  try {
    await body();
  } catch (error) {
    check(`${name} finished without an exception`, false, error.stack ?? String(error));
  }
}

// ---- Page helpers ----

const DONE_OR_ERROR = '#status[data-state="done"], #status[data-state="error"]';

async function openPage(context, serverUrl, consoleLines) {
  const page = await context.newPage();
  page.on('console', (message) => consoleLines.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`page error: ${error.message}`));
  await page.goto(serverUrl);
  return page;
}

// Waits until the run ends and returns {state, error}, where error is the
// text of the visible #error box or null.
async function waitForRunEnd(page, timeoutMs) {
  await page.waitForSelector(DONE_OR_ERROR, { timeout: timeoutMs });
  const state = await page.getAttribute('#status', 'data-state');
  const error = (await page.isVisible('#error')) ? await page.textContent('#error') : null;
  return { state, error };
}

// Returns [{name, relError}] for every table row that shows a relative error.
async function pageRelativeErrors(page) {
  return page.$$eval('#results tr[data-tensor]', (rows) => rows
    .map((row) => ({
      name: row.dataset.tensor,
      cell: row.querySelector('td[data-field="rel_error"]'),
    }))
    .filter(({ cell }) => cell !== null)
    .map(({ name, cell }) => ({ name, relError: Number(cell.dataset.value) })));
}

// Runs the native CLI and parses its JSON output. Its stderr (progress lines)
// is kept out of the test output unless the command fails.
function runCli(args) {
  let stdout;
  try {
    stdout = execFileSync(CLI_PATH, args, {
      cwd: REPO_ROOT, maxBuffer: 64 << 20, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    throw new Error(`adamix ${args.join(' ')} failed with status ${error.status}: ${error.stderr?.trim()}`);
  }
  return JSON.parse(stdout);
}

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

// ---- Main ----

async function loadPlaywright() {
  try {
    return (await import('playwright-core')).chromium;
  } catch (error) {
    console.log(`FAIL playwright-core is importable: ${error.message}; run scripts/setup.sh`);
    process.exit(1);
  }
}

async function main() {
  const prerequisites = [
    [WASM_BINDINGS_PATH, 'build it with scripts/build-web.sh'],
    [BASE_PATH, 'place the demo pair with scripts/fetch-demo.sh'],
    [FINETUNED_PATH, 'place the demo pair with scripts/fetch-demo.sh'],
    ['/usr/bin/chromium', 'install it with scripts/setup.sh'],
  ];
  let missing = false;
  for (const [file, fix] of prerequisites) {
    if (!existsSync(file)) {
      check(`${path.relative(REPO_ROOT, file) || file} exists`, false, fix);
      missing = true;
    }
  }
  if (missing) {
    process.exit(1);
  }

  const chromium = await loadPlaywright();
  const server = await startServer(REPO_ROOT);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const temporaryDirectory = await mkdtemp(path.join(os.tmpdir(), 'adamix-browser-'));
  const consoleLines = [];
  console.log(`serving ${REPO_ROOT} at ${server.url}`);

  try {
    await part('compress the demo pair and verify with the CLI',
      () => testMainPath(context, server.url, temporaryDirectory, consoleLines));
    await part('Load demo', () => testLoadDemo(context, server.url, consoleLines));
    await part('Cancel', () => testCancel(context, server.url, consoleLines));
    for (const missingFile of ['adamix.js', 'adamix_bg.wasm']) {
      await part(`worker failure: missing ${missingFile}`,
        () => testWorkerFailure(context, server.url, consoleLines, missingFile));
    }
    await part('drop zone', () => testDropZone(context, server.url, consoleLines));
    for (const testCase of await badInputCases()) {
      await part(`bad input: ${testCase.title}`, () => testBadInput(context, server.url, consoleLines, testCase));
    }
  } finally {
    await browser.close();
    await server.close();
    await rm(temporaryDirectory, { recursive: true, force: true });
  }

  if (failures > 0 && consoleLines.length > 0) {
    console.log('\nLast browser console lines:');
    for (const line of consoleLines.slice(-30)) {
      console.log(`  ${line}`);
    }
  }
  console.log(`\n${passes} passed, ${failures} failed`);
  process.exit(failures > 0 ? 1 : 0);
}

await main();
