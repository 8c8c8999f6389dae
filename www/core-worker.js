// Page side of worker.js: sends requests and routes each reply and event to
// the request it belongs to.

// Rejection reason of the requests of a terminated worker.
export class CancelledError extends Error {
  constructor() {
    super('Cancelled.');
    this.name = 'CancelledError';
  }
}

export function isCancelled(error) {
  return error instanceof CancelledError;
}

// One worker running the WebAssembly core. Requests run in the order they
// are sent, because the core's calls are synchronous.
export class CoreWorker {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.failure = null;
    this.worker.onmessage = (message) => this.route(message.data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.failAll(describeWorkerError(event));
    };
    this.worker.onmessageerror = () => this.failAll('A message from the compression worker could not be read.');
  }

  // Sends a request and returns a promise of its result. onEvent receives
  // the core's events for this request ('plan', 'progress', 'chunk', 'tensor').
  request(kind, fields = {}, onEvent = () => {}) {
    if (this.failure) {
      return Promise.reject(this.failure);
    }
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onEvent });
      this.worker.postMessage({ ...fields, id, kind });
    });
  }

  // Stops the worker. Requests still running reject with a CancelledError.
  terminate() {
    this.worker.terminate();
    this.rejectAll(new CancelledError());
  }

  route(message) {
    const entry = this.pending.get(message.id);
    if (!entry) {
      return; // A late message of a request that was given up.
    }
    if (message.kind === 'result') {
      this.pending.delete(message.id);
      entry.resolve(message.result);
    } else if (message.kind === 'error') {
      this.pending.delete(message.id);
      entry.reject(new Error(message.message));
    } else {
      entry.onEvent(message);
    }
  }

  failAll(message) {
    this.failure = new Error(message);
    this.worker.terminate();
    this.rejectAll(this.failure);
  }

  rejectAll(reason) {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) {
      entry.reject(reason);
    }
  }
}

function describeWorkerError(event) {
  if (event.message) {
    return `The compression worker failed: ${event.message}`;
  }
  return 'The compression worker could not start. Check that www/pkg/adamix.js exists ' +
    '(build it with scripts/build-web.sh) and that the page is served over http://.';
}
