// Module worker that runs the WebAssembly core off the page's main thread.
//
// Requests from the page:
//   {kind: 'compress', base: File[], finetuned: File[], ratio: number}
//   {kind: 'inspect', file: File}
// Messages to the page: the core's 'plan', 'progress', 'chunk' and 'tensor'
// events as they happen, then exactly one of 'result', 'inspected' or 'error'.
// The core's calls are synchronous, so the worker handles one request and the
// page starts a fresh worker for each run.

import init, { compress_files, inspect_file } from './pkg/adamix.js';

// Started at once, awaited per request, so that a module that fails to load is
// reported as an 'error' message rather than an unhandled rejection.
const ready = init();

self.onmessage = async (message) => {
  const request = message.data;
  try {
    await ready;
  } catch (error) {
    postError(`The WebAssembly module www/pkg/adamix_bg.wasm failed to load: ${describe(error)}. Rebuild it with scripts/build-web.sh.`);
    return;
  }

  try {
    if (request.kind === 'compress') {
      compress(request);
    } else if (request.kind === 'inspect') {
      const info = inspect_file(request.file);
      self.postMessage({ kind: 'inspected', info });
    } else {
      postError(`Unknown worker request kind '${request.kind}'.`);
    }
  } catch (error) {
    postError(describe(error));
  }
};

function compress({ base, finetuned, ratio }) {
  const result = compress_files(base, finetuned, { ratio }, forwardEvent);
  // The copy owns its buffer, so it can be transferred without copying again.
  const header = copyBytes(result.header);
  self.postMessage(
    { kind: 'result', header, summary: result.summary },
    [header.buffer],
  );
}

// Passes one core event to the page. The API does not promise that chunk
// bytes outlive the callback (a view into WebAssembly memory would not), so
// they are copied, and the copy's buffer is transferred without another copy.
function forwardEvent(event) {
  if (event.kind === 'chunk') {
    const bytes = copyBytes(event.bytes);
    self.postMessage({ kind: 'chunk', bytes }, [bytes.buffer]);
  } else {
    self.postMessage(event);
  }
}

function copyBytes(bytes) {
  return new Uint8Array(bytes);
}

function postError(message) {
  self.postMessage({ kind: 'error', message });
}

function describe(error) {
  if (error instanceof Error) {
    return error.message || error.name;
  }
  return String(error);
}
