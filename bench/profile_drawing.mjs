// Profiles the page's main thread while the budget explorer redraws.
//
// Usage: node bench/profile_drawing.mjs URL [CHANGES]
//
// URL is a running `python3 scripts/serve.py` (for example
// http://127.0.0.1:8821/). The script compresses the demo pair at 1/16 in
// headless Chromium, opens the explorer, then records a CPU profile of the
// main thread (DevTools protocol `Profiler`) over CHANGES slider moves
// (default 8) between 1/8 and 1/32. It prints each redraw's time from the
// page and the functions with the most self time.

import path from 'node:path';

import { chromium, CHROMIUM_ARGS, REPO_ROOT } from './chromium.mjs';

const TIMEOUT_MS = 300_000;

// Moves the explorer's slider to position `index` and resolves to the page's
// drawing time once the result is painted.
function moveSlider(page, index) {
  return page.evaluate((index) => new Promise((resolve) => {
    const section = document.getElementById('explorer');
    const solvesBefore = Number(section.dataset.solves ?? 0);
    const observer = new MutationObserver(() => {
      if (section.dataset.state === 'solved' && Number(section.dataset.solves) > solvesBefore) {
        observer.disconnect();
        requestAnimationFrame(() => requestAnimationFrame(() => resolve(Number(section.dataset.drawMs))));
      }
    });
    observer.observe(section, { attributes: true });
    const slider = document.getElementById('explore-ratio');
    slider.value = String(index);
    slider.dispatchEvent(new Event('input', { bubbles: true }));
  }), index);
}

// Sums the profile's self time by function and source line.
function selfTimes(profile) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map();
  profile.samples.forEach((id, index) => {
    const frame = nodes.get(id).callFrame;
    const key = `${frame.functionName || '(anonymous)'} ${path.basename(frame.url)}:${frame.lineNumber + 1}`;
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[index] ?? 0));
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

async function main() {
  const [url, changesArgument] = process.argv.slice(2);
  if (!url) {
    console.error('usage: node bench/profile_drawing.mjs URL [CHANGES]');
    process.exit(2);
  }
  const changes = Number(changesArgument ?? 8);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(url);
    await page.setInputFiles('#base-input', path.join(REPO_ROOT, 'www/demo/base.safetensors'));
    await page.setInputFiles('#finetuned-input', path.join(REPO_ROOT, 'www/demo/finetuned.safetensors'));
    await page.selectOption('#ratio', String(1 / 16));
    await page.click('#compress');
    await page.waitForSelector('#status[data-state="done"]', { timeout: TIMEOUT_MS });
    await page.click('#explore-open');
    await page.waitForSelector('#explorer[data-state="ready"]', { timeout: TIMEOUT_MS });
    const positions = await page.evaluate(async () => {
      const { DENOMINATORS } = await import('/www/explorer.js');
      return [DENOMINATORS.indexOf(8), DENOMINATORS.indexOf(32)];
    });
    await moveSlider(page, positions[1]);

    const session = await page.context().newCDPSession(page);
    await session.send('Profiler.enable');
    await session.send('Profiler.setSamplingInterval', { interval: 200 });
    await session.send('Profiler.start');
    const draws = [];
    for (let change = 0; change < changes; change += 1) {
      draws.push(await moveSlider(page, positions[change % 2]));
    }
    const { profile } = await session.send('Profiler.stop');

    console.log(`drawing ms per change: ${draws.map(Math.round).join(' ')}`);
    console.log('self time over all changes (ms), function and source line:');
    for (const [key, microseconds] of selfTimes(profile).slice(0, 25)) {
      console.log(`${(microseconds / 1000).toFixed(0).padStart(7)}  ${key}`);
    }
  } finally {
    await browser.close();
  }
}

await main();
