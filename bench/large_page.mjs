// Compresses a sharded checkpoint pair (two folders) in the page, in headless
// Chromium driven by playwright-core, and records the time, the workers'
// peak WebAssembly memory and the output size.
//
//   node bench/large_page.mjs URL JSONL LABEL BASE_DIR FINETUNED_DIR [DEVICE]
//
// URL is the page served on 127.0.0.1 (python3 scripts/serve.py). Every
// .safetensors file and index of each folder is set on the side's file
// input, as a user who multi-selects them would. DEVICE is the page's
// Device choice (default auto). The page's status line (tensors done, time
// left) is printed every 30 s. Appends one JSON line to JSONL.

import { appendFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { chromium, CHROMIUM_ARGS, DONE_OR_ERROR } from './chromium.mjs';

const RUN_TIMEOUT_MS = 3 * 3600 * 1000;
const STATUS_INTERVAL_MS = 30_000;

async function checkpointFiles(directory) {
  const names = (await readdir(directory)).filter((name) => name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json'));
  return names.sort().map((name) => path.join(directory, name));
}

async function totalBytes(files) {
  const sizes = await Promise.all(files.map(async (file) => (await stat(file)).size));
  return sizes.reduce((a, b) => a + b, 0);
}

async function main() {
  const [url, jsonl, label, baseDir, finetunedDir, device = 'auto'] = process.argv.slice(2);
  if (!url || !jsonl || !label || !baseDir || !finetunedDir) {
    console.error('usage: node bench/large_page.mjs URL JSONL LABEL BASE_DIR FINETUNED_DIR [DEVICE]');
    process.exit(2);
  }
  const baseFiles = await checkpointFiles(baseDir);
  const finetunedFiles = await checkpointFiles(finetunedDir);
  const finetunedBytes = await totalBytes(finetunedFiles);
  console.log(`${label}: ${finetunedFiles.length} fine-tune files, ${(finetunedBytes / 1e9).toFixed(2)} GB`);

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ acceptDownloads: true });
  const directory = await mkdtemp(path.join(os.tmpdir(), 'adamix-large-page-'));
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(message.text()));
  let timer = null;
  try {
    await page.goto(url);
    await page.setInputFiles('#base-input', baseFiles);
    await page.setInputFiles('#finetuned-input', finetunedFiles);
    await page.selectOption('#ratio', '0.0625');
    await page.selectOption('#device', device);
    const started = Date.now();
    await page.click('#compress');
    timer = setInterval(async () => {
      const status = await page.textContent('#status').catch(() => '');
      console.log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${status}`);
    }, STATUS_INTERVAL_MS);
    await page.waitForSelector(DONE_OR_ERROR, { timeout: RUN_TIMEOUT_MS });
    const seconds = (Date.now() - started) / 1000;
    clearInterval(timer);
    const state = await page.getAttribute('#status', 'data-state');
    const line = { label, device, finetuned_bytes: finetunedBytes, state, seconds, status: await page.textContent('#status') };
    if (state === 'done') {
      line.compressed_bytes = Number(await page.getAttribute('#summary', 'data-compressed-bytes'));
      line.rel_error_total = Number(await page.getAttribute('#summary', 'data-rel-error-total'));
      line.adapter = await page.getAttribute('#summary', 'data-device');
      line.worker_memory_bytes = JSON.parse(await page.getAttribute('#summary', 'data-worker-memory-bytes'));
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const file = path.join(directory, 'delta.safetensors');
      await download.saveAs(file);
      line.downloaded_bytes = (await stat(file)).size;
    } else {
      line.error = await page.textContent('#error');
      line.console = consoleLines.slice(-10);
    }
    console.log(JSON.stringify(line));
    await appendFile(jsonl, `${JSON.stringify(line)}\n`);
  } finally {
    clearInterval(timer);
    await browser.close();
    await rm(directory, { recursive: true, force: true });
  }
}

await main();
