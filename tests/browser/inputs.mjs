// Browser test of checkpoints in the forms users have them, in headless
// Chromium driven by playwright-core. The cases: a sharded base with its
// index, a shard missing from it, model folders dropped on the drop zones, a
// base and fine-tune in different float dtypes, and a matrix above 128 MiB
// in f32.
//
//   node tests/browser/inputs.mjs
//
// Needs: www/pkg/adamix.js and www/vendor/plotly.min.js (scripts/build-web.sh),
// the native CLI target/release/adamix (cargo build --release) and
// /usr/bin/chromium (scripts/setup.sh). Every checkpoint is written with
// seeded values to a temporary folder, which is removed at the end.
// ADAMIX_TEST_TIMEOUT_S sets the time limit in seconds of one compression
// (default 600).
//
// A folder is dropped through the DevTools protocol (Input.dispatchDragEvent
// with the folder's path), so the page's drop handler receives a directory
// entry from webkitGetAsEntry, as it does when a user drops a folder.
//
// Prints one PASS or FAIL line per check and exits with status 1 if any check
// failed.

import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import {
  check, CLI_PATH, openPage, pageRelativeErrors, part, runBrowserTest, runCli, runCliText, waitForRunEnd,
} from './harness.mjs';
import {
  buildSafetensors, buildShardIndex, roundToDtype, seededNormalValues, shardName,
} from './safetensors.mjs';

const RUN_TIMEOUT_MS = Number(process.env.ADAMIX_TEST_TIMEOUT_S ?? 600) * 1000;
// A missing shard must be reported within this time, or the page counts as hung.
const ERROR_TIMEOUT_MS = 60_000;

// Ratio of every run, one of the page's choices. At 1/8 the small matrices
// get mixed widths and every triplet of the large one is a candidate.
const RATIO = 0.125;
// The page's wasm build and the native CLI may differ in the last bits of an
// SVD, so their relative errors are compared within this tolerance.
const REL_ERROR_TOLERANCE = 1e-4;

const INDEX_NAME = 'model.safetensors.index.json';
const MISSING_SHARD = shardName(2, 3);

// The test model: float tensors and their shapes, in file order, and the
// tensor names of each of the three shards of the sharded base.
const EMBEDDING = 'model.embed_tokens.weight';
const QUERY = 'model.layers.0.self_attn.q_proj.weight';
const QUERY_BIAS = 'model.layers.0.self_attn.q_proj.bias';
const UP = 'model.layers.0.mlp.up_proj.weight';
const DOWN = 'model.layers.0.mlp.down_proj.weight';
const NORM = 'model.norm.weight';
const POSITION_IDS = 'model.position_ids';
const FLOAT_TENSORS = [
  [EMBEDDING, [320, 64]],
  [QUERY, [64, 64]],
  [QUERY_BIAS, [64]],
  [UP, [256, 64]],
  [DOWN, [64, 256]],
  [NORM, [64]],
];
const SHARDS = [[EMBEDDING, POSITION_IDS], [QUERY, QUERY_BIAS], [UP, DOWN, NORM]];

// Dtypes [base, fine-tune] of each float tensor in the mixed-dtype pair: BF16
// weights with an F16 fine-tune, an F32 matrix on both sides, and an F32 norm
// with a BF16 fine-tune.
const MIXED_DTYPES = { [DOWN]: ['F32', 'F32'], [NORM]: ['F32', 'BF16'] };
const DEFAULT_MIXED_DTYPES = ['BF16', 'F16'];

// The large matrix, a BF16 embedding: 33000 × 1024 f32 values take
// 135 168 000 bytes, above 128 MiB (134 217 728 bytes).
const LARGE_NAME = 'model.embed_tokens.weight';
const LARGE_SHAPE = [33000, 1024];

// ---- Checkpoints ----

function elementCount(shape) {
  return shape.reduce((product, size) => product * size, 1);
}

// Returns `scale` · A·B for seeded Gaussian A [rows, rank] and B [rank, cols],
// plus Gaussian noise with standard deviation `noise`, row-major.
function lowRankPlusNoise(rows, cols, rank, scale, noise, seed) {
  const left = seededNormalValues(rows * rank, seed);
  const right = seededNormalValues(rank * cols, seed + 1);
  const values = seededNormalValues(rows * cols, seed + 2, noise);
  for (let i = 0; i < rows; i += 1) {
    for (let j = 0; j < cols; j += 1) {
      let sum = 0;
      for (let k = 0; k < rank; k += 1) {
        sum += left[i * rank + k] * right[k * cols + j];
      }
      values[i * cols + j] += scale * sum;
    }
  }
  return values;
}

// Returns seeded values of the test model as {name: {base, finetuned}}. Base
// weights have a standard deviation of 0.05. Matrix deltas are rank 6 (entry
// RMS about 2e-3) plus noise (2e-4), and the bias delta is dense. The norm is
// unchanged, with values exact in BF16, so it stays unchanged in every dtype.
function modelValues() {
  const values = {};
  FLOAT_TENSORS.forEach(([name, shape], position) => {
    const seed = 100 * (position + 1);
    let base = seededNormalValues(elementCount(shape), seed, 0.05);
    let delta;
    if (shape.length === 2) {
      delta = lowRankPlusNoise(shape[0], shape[1], 6, 2e-3 / Math.sqrt(6), 2e-4, seed + 1);
    } else if (name === NORM) {
      base = roundToDtype('BF16', base);
      delta = new Float32Array(base.length);
    } else {
      delta = seededNormalValues(base.length, seed + 1, 1e-3);
    }
    values[name] = { base, finetuned: base.map((value, i) => value + delta[i]) };
  });
  return values;
}

function positionIds() {
  return { name: POSITION_IDS, dtype: 'I64', shape: [1, 64], values: Array.from({ length: 64 }, (_, i) => i) };
}

// Returns the tensors of one side ('base' or 'finetuned') in file order, each
// in the dtype `dtypeOf(name)` returns (F32 by default), with values rounded
// to that dtype.
function sideTensors(values, side, dtypeOf = () => 'F32') {
  const tensors = FLOAT_TENSORS.map(([name, shape]) => {
    const dtype = dtypeOf(name);
    return { name, dtype, shape, values: roundToDtype(dtype, values[name][side]) };
  });
  return [...tensors, positionIds()];
}

// Writes every checkpoint of the small cases into `directory` and returns
// their paths.
async function writeSmallCheckpoints(directory) {
  const values = modelValues();
  const base = sideTensors(values, 'base');
  const finetunedBytes = buildSafetensors(sideTensors(values, 'finetuned'), { format: 'pt' });
  const files = {
    base: path.join(directory, 'base.safetensors'),
    finetuned: path.join(directory, 'finetuned.safetensors'),
    shardFolder: path.join(directory, 'base-sharded'),
    incompleteFolder: path.join(directory, 'base-incomplete'),
    finetunedFolder: path.join(directory, 'my-finetune'),
  };
  await writeFile(files.base, buildSafetensors(base, { format: 'pt' }));
  await writeFile(files.finetuned, finetunedBytes);

  const byName = new Map(base.map((tensor) => [tensor.name, tensor]));
  const shards = SHARDS.map((names, position) => ({
    fileName: shardName(position + 1, SHARDS.length),
    tensors: names.map((name) => byName.get(name)),
  }));
  const config = JSON.stringify({ model_type: 'llama', hidden_size: 64 });
  for (const folder of [files.shardFolder, files.incompleteFolder]) {
    await mkdir(folder);
    await writeFile(path.join(folder, INDEX_NAME), buildShardIndex(shards));
    await writeFile(path.join(folder, 'config.json'), config);
    for (const { fileName, tensors } of shards) {
      if (folder === files.shardFolder || fileName !== MISSING_SHARD) {
        await writeFile(path.join(folder, fileName), buildSafetensors(tensors, { format: 'pt' }));
      }
    }
  }
  files.shards = shards.map(({ fileName }) => path.join(files.shardFolder, fileName));
  files.index = path.join(files.shardFolder, INDEX_NAME);
  files.incompleteFiles = [shardName(1, 3), shardName(3, 3), INDEX_NAME].map((name) => path.join(files.incompleteFolder, name));

  await mkdir(files.finetunedFolder);
  await writeFile(path.join(files.finetunedFolder, 'model.safetensors'), finetunedBytes);
  await writeFile(path.join(files.finetunedFolder, 'config.json'), config);
  // A training run's folder keeps older checkpoints in subfolders, which are not read.
  await mkdir(path.join(files.finetunedFolder, 'checkpoint-500'));
  await writeFile(path.join(files.finetunedFolder, 'checkpoint-500', 'model.safetensors'), finetunedBytes);

  const mixedDtypes = (name) => MIXED_DTYPES[name] ?? DEFAULT_MIXED_DTYPES;
  const sides = {
    mixedBase: sideTensors(values, 'base', (name) => mixedDtypes(name)[0]),
    mixedFinetuned: sideTensors(values, 'finetuned', (name) => mixedDtypes(name)[1]),
  };
  // The F32 pair contains exactly the values the mixed files store.
  sides.f32Base = sides.mixedBase.map((tensor) => ({ ...tensor, dtype: tensor.dtype === 'I64' ? 'I64' : 'F32' }));
  sides.f32Finetuned = sides.mixedFinetuned.map((tensor) => ({ ...tensor, dtype: tensor.dtype === 'I64' ? 'I64' : 'F32' }));
  for (const [key, tensors] of Object.entries(sides)) {
    files[key] = path.join(directory, `${key}.safetensors`);
    await writeFile(files[key], buildSafetensors(tensors, { format: 'pt' }));
  }
  return files;
}

// Writes the BF16 pair of one LARGE_SHAPE matrix: base entries with a
// standard deviation of 0.05, a delta of rank 8 plus noise (2e-4).
async function writeLargeCheckpoints(directory) {
  const [rows, cols] = LARGE_SHAPE;
  const base = seededNormalValues(rows * cols, 7, 0.05);
  const finetuned = lowRankPlusNoise(rows, cols, 8, 2e-3 / Math.sqrt(8), 2e-4, 8);
  for (let i = 0; i < finetuned.length; i += 1) {
    finetuned[i] += base[i];
  }
  const files = { base: path.join(directory, 'large-base.safetensors'), finetuned: path.join(directory, 'large-finetuned.safetensors') };
  await writeFile(files.base, buildSafetensors([{ name: LARGE_NAME, dtype: 'BF16', shape: LARGE_SHAPE, values: base }]));
  await writeFile(files.finetuned, buildSafetensors([{ name: LARGE_NAME, dtype: 'BF16', shape: LARGE_SHAPE, values: finetuned }]));
  return files;
}

// ---- Page helpers ----

// Chooses files with the Choose files inputs (either side may be omitted),
// compresses at RATIO and waits for the end. Returns {state, error}.
async function compress(page, { base = null, finetuned = null, timeoutMs = RUN_TIMEOUT_MS } = {}) {
  if (base) {
    await page.setInputFiles('#base-input', base);
  }
  if (finetuned) {
    await page.setInputFiles('#finetuned-input', finetuned);
  }
  await page.selectOption('#ratio', String(RATIO));
  await page.click('#compress');
  return waitForRunEnd(page, timeoutMs);
}

// Clicks the download link and saves the file in `directory`; returns {name, file}.
async function downloadDelta(page, directory) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const name = download.suggestedFilename();
  const file = path.join(await mkdtemp(path.join(directory, 'download-')), name);
  await download.saveAs(file);
  return { name, file };
}

async function listedFiles(page, side) {
  return page.$$eval(`#${side}-files .file-name`, (names) => names.map((name) => name.textContent));
}

// Drops `folder` from disk on the drop zone of `side` ('base' or
// 'finetuned') through the DevTools protocol, and waits until the zone's file
// list shows `expectedCount` files.
async function dropFolder(page, side, folder, expectedCount) {
  // The event goes to viewport coordinates, so the zone must be on screen.
  const zone = page.locator(`#${side}-drop`);
  await zone.scrollIntoViewIfNeeded();
  const box = await zone.boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  const session = await page.context().newCDPSession(page);
  const data = { items: [], files: [folder], dragOperationsMask: 1 };
  try {
    for (const type of ['dragEnter', 'dragOver', 'drop']) {
      await session.send('Input.dispatchDragEvent', { type, x, y, data });
    }
  } finally {
    await session.detach();
  }
  await page.waitForFunction(([list, count]) => document.querySelectorAll(`${list} .file-name`).length === count,
    [`#${side}-files`, expectedCount], { timeout: 10_000 });
}

// Checks that `rows` has the same tensors and exactly the same relative errors as `expected`.
function checkSameRows(label, rows, expected) {
  const expectedErrors = new Map(expected.map(({ name, relError }) => [name, relError]));
  const differences = rows
    .filter(({ name, relError }) => expectedErrors.get(name) !== relError)
    .map(({ name, relError }) => `${name}: ${relError}, expected ${expectedErrors.get(name)}`);
  return check(label, rows.length === expected.length && rows.length > 0 && differences.length === 0,
    differences.length === 0 ? `${rows.length} tensors, expected ${expected.length}` : differences.slice(0, 5).join('; '));
}

// Checks the page's relative errors against a CLI result {name: error} within REL_ERROR_TOLERANCE.
function checkRowsMatchCli(label, rows, cliErrors) {
  let largest = 0;
  const problems = [];
  for (const { name, relError } of rows) {
    const difference = Math.abs(relError - cliErrors.get(name));
    largest = Math.max(largest, difference);
    if (!(difference <= REL_ERROR_TOLERANCE)) {
      problems.push(`${name}: page ${relError}, CLI ${cliErrors.get(name)}`);
    }
  }
  check(`${label} within ${REL_ERROR_TOLERANCE}`, rows.length > 0 && problems.length === 0,
    problems.length === 0 ? `${rows.length} tensors, largest difference ${largest.toExponential(2)}` : problems.slice(0, 5).join('; '));
}

function verifiedErrors(verification) {
  return new Map(verification.tensors.map((tensor) => [tensor.name, tensor.rel_error]));
}

// Relative errors of `adamix compress --report` on the CPU, by tensor name.
async function cliReportErrors(base, finetuned, directory) {
  const output = await mkdtemp(path.join(directory, 'cli-'));
  const report = path.join(output, 'report.json');
  runCliText(['compress', '--base', base, '--finetuned', finetuned, '--ratio', '1/8', '--device', 'cpu',
    '--report', report, '--output', path.join(output, 'delta.adamix.safetensors')]);
  const { tensors } = JSON.parse(await readFile(report, 'utf8'));
  return new Map(tensors.filter((row) => row.rel_error !== null).map((row) => [row.name, row.rel_error]));
}

// Checks that a run failed because shard 2 of 3 is missing, and that the page
// offers no download.
async function checkMissingShardRejected(page, label, outcome) {
  const message = outcome.error ?? '';
  check(`${label}: run ends with an error`, outcome.state === 'error', `state ${outcome.state}`);
  check(`${label}: error names the missing shard and the index`,
    message.includes(MISSING_SHARD) && message.includes('is missing') && message.includes(INDEX_NAME), message);
  check(`${label}: error says to add the shard`, message.includes(`Add ${MISSING_SHARD}`), message);
  check(`${label}: no download link is shown`, await page.isHidden('#download'));
  check(`${label}: no result is shown`, await page.isHidden('#summary'));
  check(`${label}: Compress is enabled again`, await page.isEnabled('#compress'));
}

// ---- Parts of the test ----

// Compresses the single-file pair; returns {rows, file} as the reference of
// the sharded runs.
async function compressSingleFile(context, serverUrl, consoleLines, files, directory) {
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    const { state, error } = await compress(page, { base: files.base, finetuned: files.finetuned });
    if (!check('single-file pair compresses', state === 'done', `state ${state}${error ? `, error: ${error}` : ''}`)) {
      return null;
    }
    const rows = await pageRelativeErrors(page);
    const { file } = await downloadDelta(page, directory);
    return { rows, file };
  } finally {
    await page.close();
  }
}

async function testShardedBase(context, serverUrl, consoleLines, files, directory, single) {
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    const { state, error } = await compress(page, { base: [...files.shards, files.index], finetuned: files.finetuned });
    const listed = await listedFiles(page, 'base');
    check('base list shows the three shards and the index', listed.length === 4 && listed.includes(INDEX_NAME),
      listed.join(', '));
    if (!check('sharded base compresses', state === 'done', `state ${state}${error ? `, error: ${error}` : ''}`)) {
      return;
    }
    const rows = await pageRelativeErrors(page);
    checkSameRows('sharded base gives the single-file relative errors', rows, single.rows);
    const { file } = await downloadDelta(page, directory);
    const [shardedBytes, singleBytes] = [await readFile(file), await readFile(single.file)];
    check('sharded base writes the single-file delta byte for byte', shardedBytes.equals(singleBytes),
      `${shardedBytes.length} and ${singleBytes.length} bytes`);

    const verification = runCli(['verify', '--base', files.shardFolder, '--finetuned', files.finetuned, '--delta', file, '--json']);
    checkRowsMatchCli('CLI verify on the shard folder matches the page', rows, verifiedErrors(verification));
    const applied = path.join(directory, 'applied-sharded.safetensors');
    runCliText(['apply', '--base', files.shardFolder, '--delta', file, '--output', applied]);
    const appliedTensors = runCli(['inspect', applied, '--json']).tensors.map((tensor) => tensor.name).sort();
    const expectedTensors = runCli(['inspect', files.finetuned, '--json']).tensors.map((tensor) => tensor.name).sort();
    check('CLI apply onto the shard folder writes every fine-tune tensor',
      appliedTensors.join(',') === expectedTensors.join(','), `${appliedTensors.length} tensors`);

    // The same page after a successful run: the old result must not stay offered.
    const outcome = await compress(page, { base: files.incompleteFiles, timeoutMs: ERROR_TIMEOUT_MS });
    await checkMissingShardRejected(page, 'missing shard after a successful run', outcome);
  } finally {
    await page.close();
  }
}

async function testFolderDrop(context, serverUrl, consoleLines, files, directory, single) {
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    await dropFolder(page, 'base', files.shardFolder, 4);
    const listed = (await listedFiles(page, 'base')).sort();
    const expected = [...files.shards.map((file) => path.basename(file)), INDEX_NAME].sort();
    check('dropped folder lists its shards and index', listed.join(',') === expected.join(','), listed.join(', '));
    check('dropped folder lists config.json as ignored',
      (await page.textContent('#base-files')).includes('Ignored (not a checkpoint file): config.json'));

    await dropFolder(page, 'finetuned', files.finetunedFolder, 1);
    check('dropped fine-tune folder lists only its own model.safetensors',
      (await listedFiles(page, 'finetuned')).join(',') === 'model.safetensors');
    const finetunedList = await page.textContent('#finetuned-files');
    check('dropped fine-tune folder names its subfolder as not read',
      finetunedList.includes('Not read (subfolders') && finetunedList.includes('my-finetune/checkpoint-500/'), finetunedList);

    const { state, error } = await compress(page);
    if (!check('dropped folders compress', state === 'done', `state ${state}${error ? `, error: ${error}` : ''}`)) {
      return;
    }
    checkSameRows('dropped folders give the single-file relative errors', await pageRelativeErrors(page), single.rows);
    const { name } = await downloadDelta(page, directory);
    check('download is named after the dropped fine-tune folder', name === 'my-finetune.adamix.safetensors', name);

    await dropFolder(page, 'base', files.incompleteFolder, 3);
    const outcome = await compress(page, { timeoutMs: ERROR_TIMEOUT_MS });
    await checkMissingShardRejected(page, 'dropped folder without a shard', outcome);
  } finally {
    await page.close();
  }
}

async function testMixedDtypes(context, serverUrl, consoleLines, files, directory) {
  const results = {};
  for (const [label, base, finetuned] of [['mixed', files.mixedBase, files.mixedFinetuned], ['F32', files.f32Base, files.f32Finetuned]]) {
    const page = await openPage(context, serverUrl, consoleLines);
    try {
      const { state, error } = await compress(page, { base, finetuned });
      if (!check(`${label}-dtype pair compresses`, state === 'done', `state ${state}${error ? `, error: ${error}` : ''}`)) {
        return;
      }
      results[label] = {
        rows: await pageRelativeErrors(page),
        baseInfo: await page.textContent('#base-files .file-info'),
        finetunedInfo: await page.textContent('#finetuned-files .file-info'),
        download: label === 'mixed' ? await downloadDelta(page, directory) : null,
      };
    } finally {
      await page.close();
    }
  }

  const { mixed } = results;
  check('base list shows the BF16 and F32 dtypes', mixed.baseInfo.includes('BF16') && mixed.baseInfo.includes('F32'), mixed.baseInfo);
  check('fine-tune list shows the F16, F32 and BF16 dtypes',
    ['F16', 'F32', 'BF16'].every((dtype) => mixed.finetunedInfo.includes(dtype)), mixed.finetunedInfo);
  checkSameRows('mixed dtypes give the relative errors of the F32 pair with the same values', mixed.rows, results.F32.rows);
  checkRowsMatchCli('mixed-dtype relative errors match the CLI report', mixed.rows,
    await cliReportErrors(files.mixedBase, files.mixedFinetuned, directory));
  const verification = runCli(['verify', '--base', files.mixedBase, '--finetuned', files.mixedFinetuned, '--delta', mixed.download.file, '--json']);
  check('CLI verify reads the mixed-dtype download', verification.tensors.length === FLOAT_TENSORS.length + 1,
    `${verification.tensors.length} tensors`);
}

async function testLargeTensor(context, serverUrl, consoleLines, directory) {
  const started = Date.now();
  const files = await writeLargeCheckpoints(directory);
  console.log(`  wrote the [${LARGE_SHAPE.join(', ')}] BF16 pair in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const page = await openPage(context, serverUrl, consoleLines);
  try {
    const runStarted = Date.now();
    const { state, error } = await compress(page, { base: files.base, finetuned: files.finetuned });
    const seconds = ((Date.now() - runStarted) / 1000).toFixed(1);
    if (!check('[33000, 1024] BF16 pair compresses', state === 'done', `state ${state}, ${seconds} s${error ? `, error: ${error}` : ''}`)) {
      return;
    }
    const rows = await pageRelativeErrors(page);
    check('the large matrix has a relative error', rows.length === 1 && rows[0].name === LARGE_NAME && rows[0].relError > 0,
      rows.map(({ name, relError }) => `${name} ${relError}`).join(', '));
    const { file } = await downloadDelta(page, directory);
    const fileBytes = (await stat(file)).size;
    const summaryBytes = Number(await page.getAttribute('#summary', 'data-compressed-bytes'));
    check('downloaded size equals the summary', fileBytes === summaryBytes, `file ${fileBytes} bytes, summary ${summaryBytes}`);
    checkRowsMatchCli('large-matrix relative error matches the CLI report', rows, await cliReportErrors(files.base, files.finetuned, directory));
    const verification = runCli(['verify', '--base', files.base, '--finetuned', files.finetuned, '--delta', file, '--json']);
    check('CLI verify reads the large download', verification.file_bytes === fileBytes, `CLI ${verification.file_bytes}, downloaded ${fileBytes}`);
  } finally {
    await page.close();
  }
}

// ---- Main ----

async function main() {
  const prerequisites = [[CLI_PATH, 'build it with cargo build --release']];
  await runBrowserTest(prerequisites, 'adamix-inputs-', async ({ context, serverUrl, directory, consoleLines }) => {
    let files = null;
    let single = null;
    await part('single-file pair', async () => {
      files = await writeSmallCheckpoints(directory);
      single = await compressSingleFile(context, serverUrl, consoleLines, files, directory);
    });
    if (single) {
      await part('sharded base and a missing shard, chosen with Choose files',
        () => testShardedBase(context, serverUrl, consoleLines, files, directory, single));
      await part('model folders dropped on the drop zones',
        () => testFolderDrop(context, serverUrl, consoleLines, files, directory, single));
    }
    if (files) {
      await part('BF16 base with an F16 fine-tune and F32 tensors',
        () => testMixedDtypes(context, serverUrl, consoleLines, files, directory));
    }
    await part('matrix above 128 MiB in f32', () => testLargeTensor(context, serverUrl, consoleLines, directory));
  });
}

await main();
