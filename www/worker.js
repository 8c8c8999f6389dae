// Module worker that runs the WebAssembly core off the page's main thread.
//
// Every request from the page is {id, kind, ...fields}. Requests:
//   {kind: 'inspect', file: File}
//   {kind: 'compress', base: File[], finetuned: File[], ratio, method, keepFile}
//   {kind: 'explorer-open', base: File[], finetuned: File[]}
//   {kind: 'explorer-solve', ratio}
//   {kind: 'explorer-write', ratio}
//   {kind: 'apply', base: File[], delta: File}
//   {kind: 'export-peft', delta: File}
// While a request runs, the core's 'plan', 'progress', 'chunk' and 'tensor'
// events go to the page with the request's id. Then exactly one
// {id, kind: 'result', result} or {id, kind: 'error', message} follows.
//
// The core's calls are synchronous, so requests run one after another in the
// order they arrive. The page cancels a request by terminating the worker.
// Only the explorer outlives a request: it stays in this worker's memory
// until the next 'explorer-open' or until the worker is terminated.

import init, * as core from './pkg/adamix.js';

// Started at once, awaited per request, so that a module that fails to load is
// reported as an 'error' message rather than an unhandled rejection.
const ready = init();

let explorer = null;

const HANDLERS = {
  inspect: ({ file }) => ({ result: core.inspect_file(file) }),
  compress,
  'explorer-open': openExplorer,
  'explorer-solve': solveExplorer,
  'explorer-write': writeExplorer,
  apply,
  'export-peft': exportPeft,
};

self.onmessage = async (message) => {
  const request = message.data;
  try {
    await ready;
  } catch (error) {
    postError(request.id, `The WebAssembly module www/pkg/adamix_bg.wasm failed to load: ${describe(error)}. Rebuild it with scripts/build-web.sh.`);
    return;
  }

  const handler = HANDLERS[request.kind];
  if (!handler) {
    postError(request.id, `Invalid worker request kind '${request.kind}'; expected one of ${Object.keys(HANDLERS).join(', ')}.`);
    return;
  }
  try {
    const { result, transfer = [] } = handler(request, eventForwarder(request));
    self.postMessage({ id: request.id, kind: 'result', result }, transfer);
  } catch (error) {
    postError(request.id, describe(error));
  }
};

function compress({ base, finetuned, ratio, method }, onEvent) {
  return withHeader(core.compress_files(base, finetuned, { ratio, method }, onEvent));
}

function openExplorer({ base, finetuned }, onEvent) {
  requireExport('Explorer');
  explorer?.free();
  explorer = null;
  const started = performance.now();
  explorer = new core.Explorer(base, finetuned, onEvent);
  const milliseconds = performance.now() - started;
  return { result: { reachable: explorer.reachable(), milliseconds } };
}

// Times the solve itself, without the messaging around it, so that the page
// can show how long a re-allocation from the cache takes.
function solveExplorer({ ratio }) {
  const current = requireExplorer();
  const started = performance.now();
  const { summary, rows } = current.solve(ratio);
  const milliseconds = performance.now() - started;
  return { result: { summary, rows, milliseconds } };
}

function writeExplorer({ ratio }, onEvent) {
  return withHeader(requireExplorer().write(ratio, onEvent));
}

function apply({ base, delta }, onEvent) {
  requireExport('apply_files');
  core.apply_files(base, delta, onEvent);
  return { result: {} };
}

function exportPeft({ delta }) {
  requireExport('export_peft');
  const { adapter, config, skipped } = core.export_peft(delta);
  const bytes = copyBytes(adapter);
  return { result: { adapter: bytes, config, skipped }, transfer: [bytes.buffer] };
}

// Copies the file header out of a compression result, so that its buffer can
// be transferred to the page.
function withHeader({ header, summary, rows }) {
  const bytes = copyBytes(header);
  return { result: { header: bytes, summary, rows }, transfer: [bytes.buffer] };
}

function requireExplorer() {
  if (!explorer) {
    throw new Error('The budget explorer is not open in this worker. Open it with Explore budget first.');
  }
  return explorer;
}

// A page newer than its www/pkg build would otherwise fail with "x is not a
// function", which does not say what to do.
function requireExport(name) {
  if (typeof core[name] !== 'function') {
    throw new Error(`www/pkg/adamix.js has no export '${name}', so it is older than this page. Rebuild it with scripts/build-web.sh.`);
  }
}

// Returns the event callback for one request. A 'compress' request with
// keepFile false only needs the totals, so its chunks are dropped here
// instead of being copied to the page.
function eventForwarder(request) {
  const keepChunks = request.keepFile !== false;
  return (event) => {
    if (event.kind === 'chunk') {
      if (keepChunks) {
        // The API does not promise that chunk bytes outlive the callback (a
        // view into WebAssembly memory would not), so they are copied, and the
        // copy's buffer is transferred without another copy.
        const bytes = copyBytes(event.bytes);
        self.postMessage({ id: request.id, kind: 'chunk', bytes }, [bytes.buffer]);
      }
      return;
    }
    self.postMessage({ ...event, id: request.id });
  };
}

function copyBytes(bytes) {
  return new Uint8Array(bytes);
}

function postError(id, message) {
  self.postMessage({ id, kind: 'error', message });
}

function describe(error) {
  if (error instanceof Error) {
    return error.message || error.name;
  }
  return String(error);
}
