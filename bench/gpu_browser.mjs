// Times the GPU kernels and the whole page on WebGPU (SwiftShader) against
// the CPU path in headless Chromium, driven by playwright-core.
//
//   node bench/gpu_browser.mjs URL JSONL RUNS LABEL M N BASE FINETUNED [LABEL M N BASE FINETUNED ...]
//
// URL is the page served on 127.0.0.1 (python3 scripts/serve.py). For each
// case: the worker request 'profile-kernels' times every kernel on a
// synthetic [M, N] delta on WebGPU and its CPU reference in the same worker
// (src/gpu/profile.rs), then
// the page compresses BASE and FINETUNED at 1/16 RUNS times with Device GPU
// and RUNS times with Device CPU, alternating, and the files of the two
// devices are compared byte for byte. Appends one JSON line per measurement.

import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { chromium, CHROMIUM_ARGS, DONE_OR_ERROR } from './chromium.mjs';

const RUN_TIMEOUT_MS = 1_800_000;
const CANDIDATES = 1024;
const PROFILE_REPEATS = 3;

async function profileKernels(context, url, m, n, useGpu) {
  // The page only hosts the worker; the kernels run in the worker.
  const page = await context.newPage();
  await page.goto(url);
  const result = await page.evaluate(async ({ m, n, candidates, repeats, useGpu }) => {
    const { CoreWorker } = await import(new URL('www/core-worker.js', window.location.href).href);
    const worker = new CoreWorker();
    try {
      return await worker.request('profile-kernels', { m, n, candidates, repeats, useGpu });
    } finally {
      worker.terminate();
    }
  }, { m, n, candidates: CANDIDATES, repeats: PROFILE_REPEATS, useGpu });
  await page.close();
  return result;
}

// Compresses the pair on `device`; returns {seconds, summarySeconds, device, bytes}.
async function compressPage(context, url, base, finetuned, device, directory) {
  const page = await context.newPage();
  await page.goto(url);
  await page.setInputFiles('#base-input', base);
  await page.setInputFiles('#finetuned-input', finetuned);
  await page.selectOption('#ratio', '0.0625');
  await page.selectOption('#device', device);
  const started = Date.now();
  await page.click('#compress');
  await page.waitForSelector(DONE_OR_ERROR, { timeout: RUN_TIMEOUT_MS });
  const seconds = (Date.now() - started) / 1000;
  if (await page.getAttribute('#status', 'data-state') !== 'done') {
    const error = await page.textContent('#error');
    await page.close();
    throw new Error(`compression on ${device} failed: ${error}`);
  }
  const summaryDevice = await page.getAttribute('#summary', 'data-device');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const file = path.join(directory, `${device}.safetensors`);
  await download.saveAs(file);
  await page.close();
  return { seconds, device: summaryDevice, bytes: await readFile(file) };
}

async function main() {
  const [url, jsonl, runsText, ...rest] = process.argv.slice(2);
  if (!url || !jsonl || rest.length === 0 || rest.length % 5 !== 0) {
    console.error('usage: node bench/gpu_browser.mjs URL JSONL RUNS LABEL M N BASE FINETUNED [...]');
    process.exit(2);
  }
  const runs = Number(runsText);
  const record = async (line) => {
    console.log(JSON.stringify(line));
    await appendFile(jsonl, `${JSON.stringify(line)}\n`);
  };
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ acceptDownloads: true });
  const directory = await mkdtemp(path.join(os.tmpdir(), 'adamix-gpu-bench-'));
  try {
    for (let i = 0; i < rest.length; i += 5) {
      const [label, m, n, base, finetuned] = rest.slice(i, i + 5);
      const profile = await profileKernels(context, url, Number(m), Number(n), true);
      await record({ kind: 'kernels', where: 'chromium', label, m: Number(m), n: Number(n), ...profile });
      const files = {};
      for (let run = 0; run < runs; run += 1) {
        for (const device of ['gpu', 'cpu']) {
          const result = await compressPage(context, url, base, finetuned, device, directory);
          files[device] = result.bytes;
          await record({ kind: 'page', label, device, adapter: result.device, seconds: result.seconds, file_bytes: result.bytes.length });
        }
      }
      await record({ kind: 'identical', label, identical: files.gpu.equals(files.cpu) });
    }
  } finally {
    await browser.close();
    await rm(directory, { recursive: true, force: true });
  }
}

await main();
