// Shared parts of the browser benchmarks: playwright-core's Chromium, its
// flags and the selector of a finished run.

import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const { chromium } = createRequire(path.join(REPO_ROOT, 'package.json'))('playwright-core');

// The flags of the browser tests: no sandbox (root in a container), no
// network chatter, and WebGPU on SwiftShader.
export { CHROMIUM_ARGS } from '../tests/browser/harness.mjs';

export const DONE_OR_ERROR = '#status[data-state="done"], #status[data-state="error"]';
