// Module worker that runs the WebAssembly core off the page's main thread.
//
// Every request from the page is {id, kind, ...fields}. Requests:
//   {kind: 'inspect', file: File}
//   {kind: 'session-open', base: File[], finetuned: File[], ratio, method, device}
//   {kind: 'session-tensor', index, keepFile}
//   {kind: 'session-finish', outputs: string[], seconds}
//   {kind: 'explorer-open', base: File[], finetuned: File[], part, parts}
//   {kind: 'explorer-solve', ratio}
//   {kind: 'explorer-write', ratio}
//   {kind: 'explorer-finish', ratio, outputs: string[], seconds}
//   {kind: 'apply', base: File[], delta: File}
//   {kind: 'export-peft', delta: File}
//   {kind: 'profile-kernels', m, n, candidates, repeats, useGpu}  (benchmarks)
// While a request runs, the core's 'plan', 'progress', 'chunk' and 'tensor'
// events go to the page with the request's id. Then exactly one
// {id, kind: 'result', result} or {id, kind: 'error', message} follows.
//
// A compression is a session: the page opens one in each worker of its pool
// (pool.js), sends each worker different tensors, then has one worker join
// the outputs. The budget explorer works the same way (explorer-team.js):
// each worker owns a share of the tensors, solves or writes them, and one
// joins the outputs. A tensor's request may await WebGPU; the page sends a
// worker its next request only after the last one answered. The page cancels
// by terminating the worker. The session and the explorer outlive their
// requests: each stays in this worker's memory until the next one of its kind
// is opened or the worker is terminated.

import init, * as core from './pkg/adamix.js';

// Started at once, awaited per request, so that a module that fails to load is
// reported as an 'error' message rather than an unhandled rejection.
const ready = init();

let explorer = null;
let session = null;

const HANDLERS = {
  inspect: ({ file }) => ({ result: core.inspect_file(file) }),
  'session-open': openSession,
  'session-tensor': compressTensor,
  'session-finish': finishSession,
  'explorer-open': openExplorer,
  'explorer-solve': solveExplorer,
  'explorer-write': writeExplorer,
  'explorer-finish': finishExplorer,
  apply,
  'export-peft': exportPeft,
  'profile-kernels': profileKernels,
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
    const { result, transfer = [] } = await handler(request, eventForwarder(request));
    self.postMessage({ id: request.id, kind: 'result', result }, transfer);
  } catch (error) {
    postError(request.id, describe(error));
  }
};

async function openSession({ base, finetuned, ratio, method, device }) {
  requireExport('Session');
  session?.free();
  session = null;
  session = await core.Session.open(base, finetuned, { ratio, method, device });
  return { result: session.plan() };
}

// Also returns the size of this worker's WebAssembly memory, which only
// grows, so that the page can show each worker's peak.
async function compressTensor({ index }, onEvent) {
  const { output, row } = await requireSession().compress_tensor(index, onEvent);
  const { memory } = await ready;
  return { result: { output, row, memoryBytes: memory.buffer.byteLength } };
}

function finishSession({ outputs, seconds }) {
  return withHeader(requireSession().finish(outputs, seconds));
}

function openExplorer({ base, finetuned, part, parts }, onEvent) {
  requireExport('Explorer');
  explorer?.free();
  explorer = null;
  explorer = new core.Explorer(base, finetuned, part, parts, onEvent);
  return { result: { reachable: explorer.reachable() } };
}

// Solves this worker's share; its outputs go to explorer-finish.
function solveExplorer({ ratio }) {
  return { result: { outputs: requireExplorer().solve_share(ratio) } };
}

// Solves this worker's share and sends its data as chunk events.
function writeExplorer({ ratio }, onEvent) {
  return { result: { outputs: requireExplorer().write_share(ratio, onEvent) } };
}

function finishExplorer({ ratio, outputs, seconds }) {
  return withHeader(requireExplorer().finish(ratio, outputs, seconds));
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

async function profileKernels({ m, n, candidates, repeats, useGpu }) {
  requireExport('profile_kernels');
  return { result: await core.profile_kernels(m, n, candidates, repeats, useGpu) };
}

// Copies the file header out of a compression result, so that its buffer can
// be transferred to the page.
function withHeader({ header, summary, rows }) {
  const bytes = copyBytes(header);
  return { result: { header: bytes, summary, rows }, transfer: [bytes.buffer] };
}

function requireSession() {
  if (!session) {
    throw new Error('No compression session is open in this worker; the page sends session-open first.');
  }
  return session;
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

// Returns the event callback for one request. A 'session-tensor' request
// with keepFile false only needs the totals, so its chunks are dropped here
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
