// What the browser tests share: PASS/FAIL reporting, opening the page and
// waiting for a run, reading the results table, the native CLI, and running a
// test file in headless Chromium against the test server.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from './server.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI_PATH = path.join(REPO_ROOT, 'target/release/adamix');
const WASM_BINDINGS_PATH = path.join(REPO_ROOT, 'www/pkg/adamix.js');
const PLOTLY_PATH = path.join(REPO_ROOT, 'www/vendor/plotly.min.js');
const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
];

// ---- Reporting ----

let failures = 0;
let passes = 0;

export function check(name, condition, detail = '') {
  if (condition) {
    passes += 1;
    console.log(`PASS ${name}${detail ? ` (${detail})` : ''}`);
  } else {
    failures += 1;
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
  return condition;
}

// ADAMIX_TEST_ONLY, when set, runs only the parts whose name contains it.
const ONLY = process.env.ADAMIX_TEST_ONLY ?? '';

// Runs one part of the test. An exception counts as one failed check, so the
// remaining parts still run.
export async function part(name, body) {
  if (!name.includes(ONLY)) {
    return;
  }
  console.log(`\n== ${name}`);
  try {
    await body();
  } catch (error) {
    check(`${name} finished without an exception`, false, error.stack ?? String(error));
  }
}

// Prints the last browser console lines when a check failed, then the counts,
// and exits with status 1 if any check failed.
function finish(consoleLines) {
  if (failures > 0 && consoleLines.length > 0) {
    console.log('\nLast browser console lines:');
    for (const line of consoleLines.slice(-30)) {
      console.log(`  ${line}`);
    }
  }
  console.log(`\n${passes} passed, ${failures} failed`);
  process.exit(failures > 0 ? 1 : 0);
}

// Fails and exits when a file the test needs is missing: prerequisites is
// [[path, what to run to make it]].
function requireFiles(prerequisites) {
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
}

// ---- Page helpers ----

export const DONE_OR_ERROR = '#status[data-state="done"], #status[data-state="error"]';

// Requests of any page to somewhere other than the test server, which must
// stay empty: the page may load nothing from another host.
const foreignRequests = [];

export async function openPage(context, serverUrl, consoleLines) {
  const page = await context.newPage();
  page.on('console', (message) => consoleLines.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`page error: ${error.message}`));
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(serverUrl) && !url.startsWith('blob:') && !url.startsWith('data:')) {
      foreignRequests.push(url);
    }
  });
  await page.goto(serverUrl);
  return page;
}

// Waits until the run ends and returns {state, error}, where error is the
// text of the visible #error box or null.
export async function waitForRunEnd(page, timeoutMs) {
  await page.waitForSelector(DONE_OR_ERROR, { timeout: timeoutMs });
  const state = await page.getAttribute('#status', 'data-state');
  const error = (await page.isVisible('#error')) ? await page.textContent('#error') : null;
  return { state, error };
}

// Returns [{name, relError}] for every table row that shows a relative error.
export async function pageRelativeErrors(page) {
  return page.$$eval('#results tr[data-tensor]', (rows) => rows
    .map((row) => ({
      name: row.dataset.tensor,
      cell: row.querySelector('td[data-field="rel_error"]'),
    }))
    .filter(({ cell }) => cell !== null)
    .map(({ name, cell }) => ({ name, relError: Number(cell.dataset.value) })));
}

// ---- Native CLI ----

// Runs the native CLI and returns its standard output. Its stderr (progress
// lines) is kept out of the test output unless the command fails.
export function runCliText(args) {
  try {
    return execFileSync(CLI_PATH, args, {
      cwd: REPO_ROOT, maxBuffer: 64 << 20, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    throw new Error(`adamix ${args.join(' ')} failed with status ${error.status}: ${error.stderr?.trim()}`);
  }
}

// Runs the native CLI and parses its JSON output.
export function runCli(args) {
  return JSON.parse(runCliText(args));
}

// ---- Browser ----

async function loadPlaywright() {
  try {
    return (await import('playwright-core')).chromium;
  } catch (error) {
    console.log(`FAIL playwright-core is importable: ${error.message}; run scripts/setup.sh`);
    process.exit(1);
  }
}

// Runs the body of a browser test file against the test server in headless
// Chromium, then checks that no page loaded anything from another host and
// exits with status 1 if any check failed. Fails first when the web build,
// Chromium or a file in `prerequisites` ([[path, what to run to make it]]) is
// missing. body receives {context, serverUrl, directory, consoleLines}, where
// directory is a new temporary folder, removed at the end.
export async function runBrowserTest(prerequisites, temporaryPrefix, body) {
  requireFiles([
    [WASM_BINDINGS_PATH, 'build it with scripts/build-web.sh'],
    [PLOTLY_PATH, 'copy it with scripts/build-web.sh'],
    [CHROMIUM_PATH, 'install it with scripts/setup.sh'],
    ...prerequisites,
  ]);
  const chromium = await loadPlaywright();
  const server = await startServer(REPO_ROOT);
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const directory = await mkdtemp(path.join(os.tmpdir(), temporaryPrefix));
  const consoleLines = [];
  console.log(`serving ${REPO_ROOT} at ${server.url}`);

  try {
    await body({ context, serverUrl: server.url, directory, consoleLines });
    console.log('\n== network');
    check('pages load nothing from another host', foreignRequests.length === 0, foreignRequests.slice(0, 5).join(', '));
  } finally {
    await browser.close();
    await server.close();
    await rm(directory, { recursive: true, force: true });
  }

  finish(consoleLines);
}
