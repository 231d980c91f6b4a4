// hearth's inference worker: owns the wasm engine, the model download and its storage, so the
// page never blocks. One worker holds one model. Started by hearth.js as a module worker.
//
// Protocol (structured-clone messages; ids are chosen by the page, unique per worker):
//
// /** @typedef {{ id: number, verb: 'load', args: LoadArgs }
//  *   | { id: number, verb: 'chat', args: { messages: {role: string, content: string}[], options: GenOptions } }
//  *   | { id: number, verb: 'generate', args: { prompt: string, options: GenOptions } }   // raw completion
//  *   | { id: number, verb: 'tokenize', args: { text: string, special: boolean } }
//  *   | { id: number, verb: 'detokenize', args: { tokens: number[] } }
//  *   | { id: number, verb: 'reset', args: {} }
//  *   | { id: number, verb: 'unload', args: {} }
//  *   | { id: number, verb: 'abort', args: { target: number } }            // no reply of its own
//  * } Request */
// /** @typedef {{ id: number, result: any }                                 // the call succeeded
//  *   | { id: number, error: { type: string, name: string, message: string } }
//  *   | { id: number, progress: { loaded: number, total: number, phase: 'download'|'storage'|'verify'|'load' } }
//  *   | { id: number, piece: string, token: number|null }                  // streamed text
//  *   | { id: 0, fatal: { type: 'worker_crashed', name: string, message: string } }  // then the worker closes
//  * } Response */
// LoadArgs: { source: string (absolute URL) | Blob, sha256?: string, nCtx?: number, store?: boolean,
//             threads?: boolean, nThreads?: number }
// GenOptions: the wasm options JSON (maxTokens, temperature, topK, topP, minP, repeatPenalty,
//             repeatLastN, seed, stop, ignoreEos).
//
// Every request gets exactly one `result` or `error`. Generation yields to the event loop between
// tokens (and between prefill slices), so an `abort` lands there and the call ends with
// `{type: 'aborted', name: 'AbortError'}`. A wasm trap (a Rust panic, out of memory) leaves the
// instance unusable: the worker answers every open request with `worker_crashed`, posts `fatal`
// and closes; the page starts a new worker on its next call.

import { beginEntry, deleteEntry, getEntry, sha256Hex, storageAvailable } from './storage.js';

/** Prompt tokens per prefill call: one engine batch; an abort waits at most this long. */
const PREFILL_SLICE = 64;
/** Progress messages at most this often (the last one always goes). */
const PROGRESS_MS = 100;
/** Headroom asked of the quota beyond the model's size before storing it. */
const QUOTA_MARGIN = 1.1;

const PKG_SIMD = new URL('./pkg/hearth.js', import.meta.url);
const PKG_RELAXED = new URL('./pkg-relaxed/hearth.js', import.meta.url);
const PKG_THREADS = new URL('./pkg-threads/hearth.js', import.meta.url);

class WorkerError extends Error {
  constructor(type, message, name = 'HearthError') {
    super(message);
    this.type = type;
    this.name = name;
  }
}
const aborted = () => new WorkerError('aborted', 'the operation was aborted', 'AbortError');

/** @type {any} the wasm-bindgen module */
let wasm = null;
let build = null;
/** @type {any} WasmEngine */
let engine = null;
let loadMs = null;
let loadMsReported = false;
let crashed = false;

/** Open requests: id -> { aborted, controller? } */
const jobs = new Map();
/** Generations and loads run one at a time, in order. */
let queue = Promise.resolve();

const post = (msg) => self.postMessage(msg);

// Between tokens: one trip through the event loop (a MessageChannel round trip, not setTimeout's 4 ms clamp).
const channel = new MessageChannel();
const resumers = [];
channel.port1.onmessage = () => resumers.shift()?.();
const yieldToEvents = () =>
  new Promise((resolve) => {
    resumers.push(resolve);
    channel.port2.postMessage(0);
  });

function isTrap(e) {
  return e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /memory|allocation/i.test(e.message));
}

function toWire(e) {
  if (e instanceof WorkerError) return { type: e.type, name: e.name, message: e.message };
  if (e?.name === 'AbortError') return { type: 'aborted', name: 'AbortError', message: e.message || 'aborted' };
  if (e?.name === 'QuotaExceededError') return { type: 'quota_exceeded', name: 'QuotaExceededError', message: e.message };
  const type = typeof e?.type === 'string' ? e.type : 'internal_error';
  return { type, name: 'HearthError', message: String(e?.message ?? e) };
}

/** The worker can no longer be trusted: answer everyone, say so, and close. */
function crash(e) {
  if (crashed) return;
  crashed = true;
  const fatal = { type: 'worker_crashed', name: 'HearthError', message: `the engine crashed: ${e?.message ?? e}` };
  for (const id of jobs.keys()) post({ id, error: fatal });
  jobs.clear();
  post({ id: 0, fatal });
  engine = null;
  self.close();
}

self.onmessage = ({ data }) => {
  const { id, verb, args } = data ?? {};
  if (verb === 'abort') {
    const job = jobs.get(args?.target);
    if (job) {
      job.aborted = true;
      job.controller?.abort();
    }
    return;
  }
  if (crashed) {
    post({ id, error: { type: 'worker_crashed', name: 'HearthError', message: 'the engine crashed; load the model again' } });
    return;
  }
  const handler = HANDLERS[verb];
  if (!handler) {
    post({ id, error: { type: 'invalid_argument', name: 'HearthError', message: `unknown verb ${verb}` } });
    return;
  }
  const job = { aborted: false, controller: null };
  jobs.set(id, job);
  const run = async () => {
    if (job.aborted) throw aborted();
    return handler(id, job, args ?? {});
  };
  // Quick verbs answer at once; engine-bound ones wait their turn.
  const done = QUICK.has(verb) ? run() : (queue = queue.then(run, run));
  done.then(
    (result) => {
      if (jobs.delete(id)) post({ id, result });
    },
    (e) => {
      if (isTrap(e)) return crash(e);
      if (jobs.delete(id)) post({ id, error: toWire(e) });
    },
  );
};

const QUICK = new Set(['tokenize', 'detokenize']);

function needEngine() {
  if (!engine) throw new WorkerError('invalid_argument', 'no model is loaded');
  return engine;
}

const HANDLERS = {
  load,
  chat: (id, job, { messages, options }) =>
    generation(id, job, () => needEngine().beginChat(JSON.stringify(messages), JSON.stringify(options ?? {}))),
  generate: (id, job, { prompt, options }) =>
    generation(id, job, () => needEngine().beginRaw(String(prompt), JSON.stringify(options ?? {}))),
  tokenize: (_id, _job, { text, special }) => Array.from(needEngine().tokenize(String(text), !!special)),
  detokenize: (_id, _job, { tokens }) => needEngine().detokenize(Uint32Array.from(tokens)),
  reset: () => {
    engine?.reset();
    return null;
  },
  unload: () => {
    engine?.free();
    engine = null;
    return null;
  },
};

// ---- generation -------------------------------------------------------------------------------

async function generation(id, job, begin) {
  const started = JSON.parse(begin());
  const t0 = performance.now();
  const prefillTokens = started.prefill;
  for (let left = prefillTokens; left > 0; ) {
    await yieldToEvents();
    if (job.aborted) throw aborted();
    left = engine.prefill(PREFILL_SLICE);
  }
  const t1 = performance.now();
  let last;
  for (;;) {
    await yieldToEvents();
    if (job.aborted) throw aborted();
    last = JSON.parse(engine.step());
    if (last.piece) post({ id, piece: last.piece, token: last.token ?? null });
    if (last.done) break;
  }
  const t2 = performance.now();
  const timings = {
    prefillMs: t1 - t0,
    prefillTokens,
    reusedTokens: started.promptTokens - prefillTokens,
    decodeMs: t2 - t1,
    decodeTokens: last.tokens.length,
  };
  if (!loadMsReported && loadMs !== null) {
    timings.loadMs = loadMs;
    loadMsReported = true;
  }
  return {
    text: last.text,
    tokens: last.tokens,
    promptTokens: last.promptTokens,
    finishReason: last.finishReason,
    timings,
  };
}

// ---- loading ----------------------------------------------------------------------------------

/** Progress that never goes backwards and arrives at most every PROGRESS_MS. */
function progressReporter(id) {
  let lastAt = 0;
  let lastLoaded = -1;
  return (loaded, total, phase, force = false) => {
    const now = performance.now();
    if (loaded < lastLoaded) loaded = lastLoaded;
    if (!force && now - lastAt < PROGRESS_MS) return;
    lastAt = now;
    lastLoaded = loaded;
    post({ id, progress: { loaded, total, phase } });
  };
}

/** Threads used by default: what the device has, capped (this work is bound by memory bandwidth). */
const DEFAULT_THREADS = 4;
/** Most threads asked for explicitly. */
const MAX_THREADS = 16;
/** A helper thread that has not started after this long is given up on (the simd build runs). */
const THREAD_START_MS = 20_000;

/** Helper workers of the threaded build (they end with this worker). */
const helpers = [];

/** Starts `n` helper threads on the threaded build's module and memory; resolves when all run. */
function startHelpers(n, module, memory) {
  const started = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(new URL('./thread.js', import.meta.url), { type: 'module', name: `hearth-thread-${i + 1}` });
    helpers.push(w);
    started.push(
      new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`helper thread ${i + 1} did not start in ${THREAD_START_MS} ms`)), THREAD_START_MS);
        w.onmessage = ({ data }) => {
          clearTimeout(timer);
          if (data?.ready) ok();
          else fail(new Error(`helper thread ${i + 1}: ${data?.error ?? 'failed'}`));
        };
        w.onerror = (e) => {
          clearTimeout(timer);
          fail(new Error(`helper thread ${i + 1}: ${e.message || 'failed to start'}`));
        };
      }),
    );
    w.postMessage({ pkg: PKG_THREADS.href, module, memory });
  }
  return Promise.all(started);
}

function stopHelpers() {
  for (const w of helpers.splice(0)) w.terminate();
}

/**
 * Whether this engine has WebAssembly relaxed SIMD: a 1-function module using
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s` validates only where it does.
 */
function hasRelaxedSimd() {
  const v128 = [0xfd, 0x0c, ...new Array(16).fill(0)];
  const body = [0, ...v128, ...v128, ...v128, 0xfd, 0x93, 0x02, 0x0b];
  const head = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b, 3, 2, 1, 0];
  try {
    return WebAssembly.validate(new Uint8Array([...head, 10, body.length + 2, 1, body.length, ...body]));
  } catch {
    return false;
  }
}

/**
 * Picks and starts a build: the threaded one (relaxed SIMD + atomics) when the page is
 * cross-origin isolated and the engine has relaxed SIMD; else the single-threaded relaxed-SIMD
 * build; else the plain simd128 one. `build` says which runs and why.
 */
async function loadWasm(threads, nThreads) {
  if (wasm) return;
  const relaxed = hasRelaxedSimd();
  const requested = Number.isInteger(nThreads) && nThreads > 0 ? Math.min(nThreads, MAX_THREADS) : 0;
  const want = requested || Math.max(1, Math.min(navigator.hardwareConcurrency || 1, DEFAULT_THREADS));
  let why = null;
  if (!threads) why = 'threads were not requested';
  else if (!self.crossOriginIsolated) why = 'the page is not cross-origin isolated (no SharedArrayBuffer)';
  else if (!relaxed) why = 'this browser has no WebAssembly relaxed SIMD, which the threaded build uses';
  else {
    try {
      const mod = await import(PKG_THREADS.href);
      const module = await WebAssembly.compileStreaming(fetch(new URL('hearth_bg.wasm', PKG_THREADS)));
      const exports = await mod.default({ module_or_path: module });
      await startHelpers(want - 1, module, exports.memory);
      // "ready" comes just before a helper enters its loop: wait until all have registered there.
      const t0 = performance.now();
      while (mod.helperThreads() < want - 1) {
        if (performance.now() - t0 > THREAD_START_MS) throw new Error('helper threads did not register');
        await new Promise((ok) => setTimeout(ok, 1));
      }
      const running = mod.setThreads(want);
      wasm = mod;
      build = {
        build: 'threads',
        threads: running,
        relaxedSimd: true,
        reason: `the page is cross-origin isolated; ${running} thread${running > 1 ? 's' : ''} (${requested ? 'asked for' : `of ${navigator.hardwareConcurrency || 1} cores, at most ${DEFAULT_THREADS} by default`})`,
      };
      return;
    } catch (e) {
      stopHelpers();
      why = `the threaded build could not start (${e?.message ?? e})`;
    }
  }
  if (relaxed) {
    try {
      const mod = await import(PKG_RELAXED.href);
      await mod.default({ module_or_path: new URL('hearth_bg.wasm', PKG_RELAXED) });
      wasm = mod;
      build = { build: 'simd', threads: 1, relaxedSimd: true, reason: why };
      return;
    } catch {
      // not deployed: the plain simd128 build below
    }
  }
  const mod = await import(PKG_SIMD.href);
  await mod.default({ module_or_path: new URL('hearth_bg.wasm', PKG_SIMD) });
  wasm = mod;
  build = { build: 'simd', threads: 1, relaxedSimd: false, reason: why };
}

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

function checkHeader(bytes, what) {
  if (bytes.byteLength < 24) throw new WorkerError('load_error', `${what} is too small to be a GGUF model (${bytes.byteLength} bytes)`);
  if (new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) !== GGUF_MAGIC) {
    throw new WorkerError('load_error', `${what} is not a GGUF model (it does not start with "GGUF")`);
  }
}

/** Builds the engine from bytes in memory, reporting 'load' progress as the tensors are copied in. */
function buildEngine(bytes, nCtx, report) {
  const total = bytes.byteLength;
  let read = 0;
  const reader = (offset, length) => {
    read += length;
    report(Math.min(read, total), total, 'load');
    // Out of range: a short array, which the engine reports as a truncated file.
    return bytes.subarray(Math.min(offset, total), Math.min(offset + length, total));
  };
  try {
    return new wasm.WasmEngine(reader, total, nCtx >>> 0);
  } catch (e) {
    if (isTrap(e)) throw e;
    throw new WorkerError(e?.type === 'io_error' ? 'load_error' : e?.type ?? 'load_error', String(e?.message ?? e));
  }
}

/**
 * Loads bytes into a new engine while the SHA-256 runs beside it (crypto.subtle works off-thread),
 * and checks the hash before the engine is kept. Returns the engine and the hex digest.
 */
async function engineFromBytes(bytes, { nCtx, expectSha, what, report }) {
  checkHeader(bytes, what);
  const digest = sha256Hex(bytes);
  let built;
  try {
    built = buildEngine(bytes, nCtx, report);
  } catch (e) {
    await digest.catch(() => {});
    throw e;
  }
  const sha256 = await digest;
  if (expectSha && sha256 !== expectSha) {
    built.free();
    throw new WorkerError('integrity_error', `${what} does not match its SHA-256 (expected ${expectSha}, got ${sha256})`);
  }
  return { built, sha256 };
}

async function quotaAllows(size) {
  if (!size) return true; // unknown size: try, and fall back on QuotaExceededError
  try {
    const { usage = 0, quota } = await navigator.storage.estimate();
    return quota === undefined || quota - usage >= size * QUOTA_MARGIN;
  } catch {
    return true;
  }
}

/** Streams `res`'s body; each chunk goes to `sink` (which may throw), progress reported. */
async function pump(res, total, job, report, sink) {
  const reader = res.body.getReader();
  let loaded = 0;
  report(0, total, 'download', true);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (job.aborted) throw aborted();
      loaded += value.byteLength;
      await sink(value, loaded);
      report(loaded, total || loaded, 'download');
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (job.aborted || e?.name === 'AbortError') throw aborted();
    if (e instanceof WorkerError || e?.name === 'QuotaExceededError') throw e;
    throw new WorkerError('download_error', `the download failed after ${loaded} bytes: ${e?.message ?? e}`);
  }
  report(loaded, total || loaded, 'download', true);
  if (total && loaded !== total) {
    throw new WorkerError('download_error', `the download ended after ${loaded} of ${total} bytes`);
  }
  return loaded;
}

async function fetchModel(url, job) {
  job.controller = new AbortController();
  let res;
  try {
    res = await fetch(url, { signal: job.controller.signal, cache: 'no-store' });
  } catch (e) {
    if (job.aborted) throw aborted();
    throw new WorkerError('download_error', `could not fetch ${url}: ${e?.message ?? e}`);
  }
  if (!res.ok || !res.body) throw new WorkerError('download_error', `could not fetch ${url}: HTTP ${res.status}`);
  // The byte count to check against. A compressed transfer's Content-Length is not the file's.
  const encoded = (res.headers.get('Content-Encoding') ?? 'identity') !== 'identity';
  const total = encoded ? 0 : Number(res.headers.get('Content-Length') ?? 0) || 0;
  return { res, total };
}

/** Downloads into one buffer (no storage): the size must check out as well. */
async function downloadToMemory(res, total, job, report) {
  let buf = new Uint8Array(total || 1 << 24);
  const loaded = await pump(res, total, job, report, (chunk, end) => {
    if (end > buf.length) {
      if (total) throw new WorkerError('download_error', `the server sent more than the ${total} bytes it announced`);
      const bigger = new Uint8Array(Math.max(end, buf.length * 2));
      bigger.set(buf.subarray(0, end - chunk.byteLength));
      buf = bigger;
    }
    buf.set(chunk, end - chunk.byteLength);
  });
  return buf.subarray(0, loaded);
}

async function load(id, job, args) {
  if (engine) throw new WorkerError('invalid_argument', 'this worker already holds a model');
  const t0 = performance.now();
  const report = progressReporter(id);
  const nCtx = Number(args.nCtx ?? 0) || 0;
  const expectSha = args.sha256 ? String(args.sha256).toLowerCase() : null;
  const warnings = [];
  try {
    await loadWasm(!!args.threads, args.nThreads);
  } catch (e) {
    throw new WorkerError('load_error', `the engine could not be started: ${e?.message ?? e}`);
  }
  if (job.aborted) throw aborted();

  let out;
  if (typeof args.source !== 'string') {
    out = await loadBlob(args.source, { nCtx, expectSha, report });
  } else {
    out = await loadUrl(args.source, job, { nCtx, expectSha, report, store: args.store !== false, warnings });
  }
  engine = out.built;
  loadMs = performance.now() - t0;
  loadMsReported = false;
  const info = JSON.parse(engine.info());
  return {
    ...info,
    ...build,
    crossOriginIsolated: !!self.crossOriginIsolated,
    source: out.source,
    storage: out.storage,
    url: typeof args.source === 'string' ? args.source : null,
    fileName: typeof args.source === 'string' ? null : args.source.name ?? null,
    sizeBytes: out.size,
    sha256: out.sha256,
    loadMs,
    wasmMemoryBytes: wasm.memoryBytes(),
    warnings,
  };
}

async function loadBlob(blob, { nCtx, expectSha, report }) {
  const what = blob.name ? `the file "${blob.name}"` : 'the file';
  report(0, blob.size, 'storage', true);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  report(bytes.byteLength, blob.size, 'storage', true);
  const { built, sha256 } = await engineFromBytes(bytes, { nCtx, expectSha, what, report });
  return { built, sha256, size: bytes.byteLength, source: 'file', storage: 'memory' };
}

async function loadUrl(url, job, { nCtx, expectSha, report, store, warnings }) {
  const canStore = store && storageAvailable();
  // 1. From storage, when a complete entry exists and its bytes still check out.
  if (canStore) {
    const entry = await getEntry(url).catch(() => null);
    if (entry && (!expectSha || entry.record.sha256 === expectSha)) {
      const size = entry.record.size;
      report(0, size, 'storage', true);
      const bytes = new Uint8Array(await entry.file.arrayBuffer());
      report(size, size, 'storage', true);
      try {
        const { built, sha256 } = await engineFromBytes(bytes, {
          nCtx,
          expectSha: entry.record.sha256,
          what: 'the stored copy',
          report,
        });
        return { built, sha256, size, source: 'storage', storage: 'opfs' };
      } catch (e) {
        if (isTrap(e)) throw e;
        // Damaged bytes (hash, header or structure): forget the copy and fetch it again.
        warnings.push(`the stored copy was damaged (${e.message}); downloading it again`);
        await deleteEntry(url);
      }
    }
  }
  if (job.aborted) throw aborted();

  // 2. From the network.
  const { res, total } = await fetchModel(url, job);
  if (canStore && (await quotaAllows(total))) {
    // One download stores a given model at a time, across tabs and embeds (Web Locks): a second
    // concurrent load runs from memory instead of racing on the same files.
    const store = async () => {
      const entry = await beginEntry(url);
      try {
        return await downloadToStorage(entry, url, res, total, job, { nCtx, expectSha, report });
      } catch (e) {
        if (e?.name !== 'QuotaExceededError') throw e;
        warnings.push('storage is full: the model runs from memory and will be downloaded again next time');
        const again = await fetchModel(url, job);
        return fromMemory(url, again.res, again.total, job, { nCtx, expectSha, report });
      }
    };
    const stored = navigator.locks
      ? await navigator.locks.request(`hearth-store ${url}`, { ifAvailable: true }, (lock) => (lock ? store() : null))
      : await store();
    if (stored) return stored;
    warnings.push('another tab is storing this model right now: this one runs from memory');
    return fromMemory(url, res, total, job, { nCtx, expectSha, report });
  }
  if (canStore) warnings.push('not enough free storage for the model: it runs from memory and will be downloaded again next time');
  return fromMemory(url, res, total, job, { nCtx, expectSha, report });
}

async function fromMemory(url, res, total, job, { nCtx, expectSha, report }) {
  const bytes = await downloadToMemory(res, total, job, report);
  const { built, sha256 } = await engineFromBytes(bytes, { nCtx, expectSha, what: `the model at ${url}`, report });
  return { built, sha256, size: bytes.byteLength, source: 'network', storage: 'memory' };
}

async function downloadToStorage(entry, url, res, total, job, { nCtx, expectSha, report }) {
  let built = null;
  try {
    await pump(res, total, job, report, (chunk) => entry.write(chunk));
    const file = await entry.finish();
    if (job.aborted) throw aborted();
    const bytes = new Uint8Array(await file.arrayBuffer());
    const loaded = await engineFromBytes(bytes, { nCtx, expectSha, what: `the model at ${url}`, report });
    built = loaded.built;
    await entry.commit({
      url,
      size: bytes.byteLength,
      sha256: loaded.sha256,
      storedAt: new Date().toISOString(),
      etag: res.headers.get('ETag'),
      name: decodeURIComponent(new URL(url).pathname.split('/').pop() || 'model.gguf'),
    });
    return { built, sha256: loaded.sha256, size: bytes.byteLength, source: 'network', storage: 'opfs' };
  } catch (e) {
    built?.free();
    await entry.abort();
    throw e;
  }
}
