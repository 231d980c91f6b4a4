// hearth's inference worker: owns the wasm engine, the model download and its storage, so the
// page never blocks. One worker holds one model. Started by hearth.js as a module worker.
//
// Its message protocol — the requests, the answers, the error class and the load phases — is
// defined once in protocol.js, which hearth.js imports too. Generation yields to the event loop
// between tokens (and between prefill slices), so an `abort` lands there.

import { deleteEntry, getEntry, keyFor, lockName, openPartial, storageAvailable, sweep } from './storage.js';
import { HearthError, abortError as aborted, toWire } from './protocol.js';

/** Prompt tokens per prefill call: one engine batch; an abort waits at most this long. */
const PREFILL_SLICE = 64;
/** Progress messages at most this often (the last one always goes). */
const PROGRESS_MS = 100;
/** Headroom asked of the quota beyond the model's size before storing it. */
const QUOTA_MARGIN = 1.1;

// The three builds' wasm. Each URL is written out as `new URL('./…', import.meta.url)` and each
// glue module is imported by a literal path, so bundlers find, copy and rename them.
const WASM_SIMD = new URL('./pkg/hearth_bg.wasm', import.meta.url);
const WASM_RELAXED = new URL('./pkg-relaxed/hearth_bg.wasm', import.meta.url);
const WASM_THREADS = new URL('./pkg-threads/hearth_bg.wasm', import.meta.url);

/** @type {typeof import('./pkg/hearth.js') | null} the wasm-bindgen module of the build that runs */
let wasm = null;
/** @type {import('./protocol.js').BuildInfo|null} which build runs, and why */
let build = null;
/** @type {import('./pkg/hearth.js').WasmEngine | null} */
let engine = null;
let loadMs = null;
let loadMsReported = false;
let crashed = false;

/** Open requests: id -> { aborted, controller? } */
const jobs = new Map();
/** Generations and loads run one at a time, in order. */
let queue = Promise.resolve();

/** @param {import('./protocol.js').Response} msg */
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

/** Allocations the engine had failed (and handled, or reported) when the last request ended. */
let failedSeen = 0;
const failedAllocations = () => {
  try {
    return wasm ? Array.from(wasm.failedAllocations()) : [0, 0];
  } catch {
    return [0, 0];
  }
};

/** Allocations the engine refused to a chat template past its memory cap (src/alloc.rs), as of the last request. */
let refusalsSeen = 0;
const refusalsNow = () => {
  try {
    return wasm ? wasm.budgetRefusals() : 0;
  } catch {
    return 0;
  }
};

/**
 * The worker can no longer be trusted: answer everyone, say so, and close. A trap right after an
 * allocation failed is reported as `out_of_memory` (the model or context is too large for this
 * device), one after a chat template reached its memory cap as `template_error`, any other as
 * `worker_crashed`.
 */
function crash(e) {
  if (crashed) return;
  crashed = true;
  const [failed, size] = failedAllocations();
  /** @type {import('./protocol.js').WireError & {type: 'worker_crashed'|'out_of_memory'|'template_error'}} */
  const fatal =
    refusalsNow() > refusalsSeen
      ? {
          type: 'template_error',
          name: 'HearthError',
          message: "the model's chat template needed more memory than any real template does (a broken or hostile GGUF); the engine stopped it",
        }
      : failed > failedSeen
      ? {
          type: 'out_of_memory',
          name: 'HearthError',
          message: `the engine ran out of memory (${(size / 2 ** 20).toFixed(1)} MiB more could not be had, with ${(wasm.memoryBytes() / 2 ** 20).toFixed(0)} MiB in use): try a smaller context (nCtx) or a smaller model`,
        }
      : { type: 'worker_crashed', name: 'HearthError', message: `the engine crashed: ${e?.message ?? e}` };
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
      for (const sub of job.subs ?? []) sub.controller?.abort();
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
  /** @type {Job} */
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
      failedSeen = failedAllocations()[0];
      refusalsSeen = refusalsNow();
      if (jobs.delete(id)) post({ id, result });
    },
    (e) => {
      if (isTrap(e)) return crash(e);
      failedSeen = failedAllocations()[0];
      refusalsSeen = refusalsNow();
      if (jobs.delete(id)) post({ id, error: toWire(e) });
    },
  );
};

const QUICK = new Set(['tokenize', 'detokenize', 'countChat', 'stats']);

function needEngine() {
  if (!engine) throw new HearthError('invalid_argument', 'no model is loaded');
  return engine;
}

/**
 * @typedef {import('./protocol.js').Verbs} Verbs
 * @typedef {{aborted: boolean, controller: AbortController|null, subs?: Job[]}} Job  `subs`: requests of its own side by side (a split model's shards)
 * @typedef {{[V in keyof Verbs]: (id: number, job: Job, args: Verbs[V]['args']) => Verbs[V]['result'] | Promise<Verbs[V]['result']>}} Handlers
 */

/** @type {Handlers} */
const HANDLERS = {
  load,
  chat: (id, job, { messages, options }) =>
    generation(id, job, () => needEngine().beginChat(JSON.stringify(messages), JSON.stringify(options ?? {}))),
  generate: (id, job, { prompt, options }) =>
    generation(id, job, () => needEngine().beginRaw(String(prompt), JSON.stringify(options ?? {}))),
  tokenize: (_id, _job, { text, special }) => Array.from(needEngine().tokenize(String(text), !!special)),
  countChat: (_id, _job, { messages, options }) => needEngine().chatTokenCount(JSON.stringify(messages), JSON.stringify(options ?? {})),
  stats: () => ({ wasmMemoryBytes: wasm?.memoryBytes() ?? 0, cachedTokens: engine?.cachedTokens() ?? 0 }),
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

/**
 * @param {number} id @param {Job} job @param {() => string} begin
 * @returns {Promise<import('./protocol.js').GenerateResult>}
 */
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

/**
 * Progress that never goes backwards within a phase and arrives at most every PROGRESS_MS (the
 * first and last of each phase always go).
 */
function progressReporter(id) {
  let lastAt = 0;
  let lastLoaded = -1;
  let lastPhase = null;
  return (loaded, total, phase, force = false) => {
    const now = performance.now();
    if (phase !== lastPhase) {
      lastPhase = phase;
      lastLoaded = -1;
      force = true;
    }
    if (loaded < lastLoaded) loaded = lastLoaded;
    if (!force && loaded < total && now - lastAt < PROGRESS_MS) return;
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
    w.postMessage({ module, memory });
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
      const mod = await import('./pkg-threads/hearth.js');
      const module = await WebAssembly.compileStreaming(fetch(WASM_THREADS));
      const exports = await mod.default({ module_or_path: module });
      await startHelpers(want - 1, module, exports.memory);
      // "ready" comes just before a helper enters its loop: wait until all have registered there.
      const t0 = performance.now();
      while (mod.helperThreads() < want - 1) {
        if (performance.now() - t0 > THREAD_START_MS) throw new Error('helper threads did not register');
        await new Promise((ok) => setTimeout(ok, 1));
      }
      const running = mod.setThreads(want);
      wasm = /** @type {any} */ (mod); // the engine API of the other builds; only its start-up differs
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
      const mod = await import('./pkg-relaxed/hearth.js');
      await mod.default({ module_or_path: WASM_RELAXED });
      wasm = mod;
      build = { build: 'simd', threads: 1, relaxedSimd: true, reason: why };
      return;
    } catch {
      // not deployed: the plain simd128 build below
    }
  }
  const mod = await import('./pkg/hearth.js');
  await mod.default({ module_or_path: WASM_SIMD });
  wasm = mod;
  build = { build: 'simd', threads: 1, relaxedSimd: false, reason: why };
}

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

/** Without a byte from the server for this long, a download counts as dropped (and is resumed). */
const STALL_MS = 30_000;
/** A dropped or stalled download is resumed (a `Range` request) at most this many times. */
const RESUMES = 3;
/** Bytes per read when hashing or copying stored bytes back. */
const SLICE = 8 << 20;

/** `decodeURIComponent` that keeps the text as it is when it is not a valid escape. */
function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function checkHeader(head, what) {
  if (head.byteLength < 24) throw new HearthError('load_error', `${what} is too small to be a GGUF model (${head.byteLength} bytes)`);
  if (new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) !== GGUF_MAGIC) {
    throw new HearthError('load_error', `${what} is not a GGUF model (it does not start with "GGUF")`);
  }
}

/** A storage read that failed (the file was removed by another tab, the disk went away...). */
class StorageReadError extends HearthError {
  constructor(e) {
    super('io_error', `the stored copy could not be read: ${e?.message ?? e}`);
    this.cause = e;
  }
}

/** `(offset, length) => Uint8Array` over a File or Blob, one slice at a time (no whole-file copy). */
function blobReader(blob) {
  const fr = new FileReaderSync();
  return (offset, length) => new Uint8Array(fr.readAsArrayBuffer(blob.slice(offset, offset + length)));
}

/**
 * One buffer, reused, for reads whose bytes are consumed before the next read (the engine copies
 * each slice into wasm memory at once). A new buffer per slice would leave hundreds of MB of dead
 * buffers behind a 1 GB load for the collector to find later — the weights twice, for a while.
 */
let scratchBuf = new Uint8Array(0);
/** @param {number} n @returns {Uint8Array} n bytes of the scratch buffer (valid until the next call) */
function scratch(n) {
  if (scratchBuf.byteLength < n) scratchBuf = new Uint8Array(Math.max(n, 4 << 20));
  return scratchBuf.subarray(0, n);
}

/**
 * `(offset, length) => Uint8Array` over `size` bytes read by `readInto(view, at)` (a sync access
 * handle's), into the scratch buffer: the result is valid until the next read.
 */
const scratchReader = (readInto, size) => (at, n) => readInto(scratch(Math.max(0, Math.min(n, size - at))), at);

/**
 * A stored entry's reader: a read-only sync access handle into the scratch buffer where the
 * browser has them (other tabs may read the file meanwhile), else slices of its File. `close()`
 * releases the handle.
 * @param {{record: {size: number}, file: File, handle: FileSystemFileHandle}} entry
 */
async function storedReader(entry) {
  try {
    const h = await /** @type {any} */ (entry.handle).createSyncAccessHandle({ mode: 'read-only' });
    const readInto = (view, at) => {
      const n = h.read(view, { at });
      if (n !== view.byteLength) throw new DOMException(`read ${n} of ${view.byteLength} bytes`, 'NotReadableError');
      return view;
    };
    return { read: scratchReader(readInto, entry.record.size), close: () => h.close() };
  } catch {
    return { read: blobReader(entry.file), close: () => {} };
  }
}

const memoryReader = (bytes) => (offset, length) =>
  bytes.subarray(Math.min(offset, bytes.byteLength), Math.min(offset + length, bytes.byteLength));

/**
 * Builds the engine from `read(offset, length)` (short at the end of the file), reporting 'load'
 * progress. With `hash`, the engine also computes the file's SHA-256 (`built.sha256`; with `parts`,
 * the byte lengths of a split model's shards that `read` serves back to back, one per shard in
 * `built.sha256s`). An abort lands inside: the next read throws.
 */
function buildEngine(read, total, { nCtx, hash, report, job, what, parts = undefined }) {
  let done = 0;
  let readError = null;
  const reader = (offset, length) => {
    if (job.aborted) throw aborted();
    let out;
    try {
      out = read(offset, length);
    } catch (e) {
      readError = e;
      throw e;
    }
    done += length;
    report(Math.min(done, total), total, 'load');
    return out;
  };
  try {
    checkHeader(reader(0, 24), what);
    const built = new wasm.WasmEngine(reader, total, nCtx >>> 0, hash, parts);
    report(total, total, 'load', true);
    return built;
  } catch (e) {
    if (job.aborted) throw aborted();
    if (isTrap(e) || e instanceof HearthError) throw e;
    if (readError) throw new StorageReadError(readError);
    throw new HearthError(e?.type === 'io_error' ? 'load_error' : e?.type ?? 'load_error', String(e?.message ?? e));
  }
}

/** SHA-256 of all of `read`'s `size` bytes, read in order. */
async function hashAll(read, size, job, report) {
  const h = new wasm.Sha256();
  try {
    for (let at = 0; at < size; at += SLICE) {
      if (job.aborted) throw aborted();
      h.update(read(at, Math.min(SLICE, size - at)));
      report(Math.min(at + SLICE, size), size, 'verify');
      await yieldToEvents();
    }
    return h.finish();
  } finally {
    h.free();
  }
}

/** What one engine's wasm memory can grow to (wasm32: 4 GiB, the threaded build included). */
const WASM_LIMIT = 4 * 2 ** 30;
/** Bytes read first to find the header (a 262k-token vocabulary's header is ~6 MB). */
const HEADER_PREFIX = 8 << 20;

const gib = (n) => `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 2 : 1)} GiB`;

/**
 * Refuses a model that cannot fit before its weights are read or downloaded: parses the header
 * from `readPrefix(n)` (the file's first n bytes) and compares what the engine will allocate with
 * what its memory can still grow by. Says the numbers and what would fit. A header that names
 * an architecture the engine does not run fails here too (`load_error`).
 */
async function checkFits(readPrefix, size, nCtx, what) {
  let n = Math.min(HEADER_PREFIX, size);
  for (let tries = 0; tries < 4; tries++) {
    const prefix = await readPrefix(n);
    if (!prefix) return null;
    if (tries === 0) checkHeader(prefix, what); // not a GGUF at all: say so plainly
    let need;
    try {
      need = JSON.parse(wasm.preflight(prefix, size, nCtx >>> 0));
    } catch (e) {
      // A file the engine cannot run (an unknown architecture, bad metadata) fails here, before
      // its weights are read; anything else is left to the load, which says precisely what.
      if (e?.type === 'load_error') throw new HearthError('load_error', `${what}: ${e.message}`);
      return null;
    }
    if (need.needBytes) {
      if (need.needBytes <= n || n >= size) return null;
      n = Math.min(size, need.needBytes + (1 << 20));
      continue;
    }
    const budget = WASM_LIMIT - wasm.memoryBytes();
    if (need.total <= budget) return need;
    const fits = Math.floor((budget - need.weights - need.fixed) / need.perToken);
    const advice =
      fits >= 256
        ? `a context of at most ${fits} tokens would fit (nCtx)`
        : 'its weights alone are too large: a smaller model or a smaller quantization would fit';
    throw new HearthError(
      'out_of_memory',
      `${what} needs ${gib(need.total)} of memory — weights ${gib(need.weights)}, KV cache ${gib(need.kvCache)} ` +
        `for ${need.nCtx} tokens, ${gib(need.fixed)} more — and the engine can hold ${gib(budget)} more: ${advice}`,
    );
  }
  return null;
}

/**
 * The first `n` bytes of `url` (a `Range` request; a server without ranges is cut off) and the
 * file's size when the response says it; null when they cannot be had within `stallMs`.
 */
async function fetchPrefix(url, job, n, stallMs) {
  let res;
  try {
    res = await request(url, job, 0, null, n);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    return null; // the download proper will report the network's error
  }
  const size = res.status === 206 ? parseContentRange(res.headers.get('Content-Range'))?.size : undefined;
  const encoding = res.headers.get('Content-Encoding');
  const length = Number(res.headers.get('Content-Length') ?? 0) || 0;
  const total = size ?? (res.status === 200 && !encoding && res.type !== 'cors' ? length : 0);
  const out = new Uint8Array(n);
  let got = 0;
  const reader = res.body.getReader();
  let timer;
  const stalled = new Promise((_, fail) => (timer = setTimeout(() => fail(new Error('stalled')), stallMs)));
  stalled.catch(() => {});
  try {
    while (got < n) {
      const { done, value } = await Promise.race([reader.read(), stalled]);
      if (done) break;
      const take = Math.min(value.byteLength, n - got);
      out.set(value.subarray(0, take), got);
      got += take;
    }
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
    job.controller.abort();
  }
  return { bytes: out.subarray(0, got), total };
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

/**
 * @param {number} id @param {Job} job @param {import('./protocol.js').LoadArgs} args
 * @returns {Promise<import('./protocol.js').ModelInfo>}
 */
async function load(id, job, args) {
  if (engine) throw new HearthError('invalid_argument', 'this worker already holds a model');
  const t0 = performance.now();
  const stallMs = Number(args.stallTimeoutMs) > 0 ? Number(args.stallTimeoutMs) : STALL_MS;
  const opts = {
    nCtx: Number(args.nCtx ?? 0) || 0,
    expectSha: typeof args.sha256 === 'string' && args.sha256 ? args.sha256.toLowerCase() : null,
    expectShas: Array.isArray(args.sha256) ? args.sha256.map((h) => String(h).toLowerCase()) : null,
    report: progressReporter(id),
    job,
    warnings: [],
    stallMs,
  };
  try {
    await loadWasm(!!args.threads, args.nThreads);
  } catch (e) {
    throw new HearthError('load_error', `the engine could not be started: ${e?.message ?? e}`);
  }
  if (job.aborted) throw aborted();

  const out =
    typeof args.source !== 'string'
      ? await loadBlob(args.source, opts)
      : await loadUrl(args.source, { ...opts, store: args.store !== false });
  if (job.aborted) {
    // Aborted while the last step finished: the load does not count, its memory goes.
    out.built.free();
    throw aborted();
  }
  engine = out.built;
  loadMs = performance.now() - t0;
  loadMsReported = false;
  /** @type {import('./protocol.js').EngineInfo} */
  const info = JSON.parse(engine.info());
  return {
    ...info,
    ...build,
    crossOriginIsolated: !!self.crossOriginIsolated,
    source: out.source,
    storage: out.storage,
    url: typeof args.source === 'string' ? args.source : null,
    fileName: args.source instanceof File ? args.source.name : null,
    sizeBytes: out.size,
    sha256: out.sha256,
    shards: out.shards ?? null,
    loadMs,
    wasmMemoryBytes: wasm.memoryBytes(),
    warnings: opts.warnings,
  };
}

/** An engine whose file hash must equal `expectSha`, else it is freed and the load fails. */
function checked(built, sha256, expectSha, what) {
  if (expectSha && sha256 !== expectSha) {
    built.free();
    throw new HearthError('integrity_error', `${what} does not match its SHA-256 (expected ${expectSha}, got ${sha256})`);
  }
  return built;
}

/** A local file, read in place slice by slice (never uploaded, never copied whole). */
async function loadBlob(blob, opts) {
  const what = blob.name ? `the file "${blob.name}"` : 'the file';
  await checkFits(async (n) => new Uint8Array(await blob.slice(0, n).arrayBuffer()), blob.size, opts.nCtx, what);
  const built = buildEngine(blobReader(blob), blob.size, { ...opts, hash: true, what });
  const sha256 = built.sha256;
  checked(built, sha256, opts.expectSha, what);
  return { built, sha256, size: blob.size, source: 'file', storage: 'memory' };
}

async function loadUrl(url, opts) {
  const shards = splitUrls(url);
  if (shards) return loadSplit(shards, opts);
  const { warnings, job } = opts;
  const canStore = opts.store && storageAvailable();
  // 1. From storage, when a complete entry exists and its bytes still check out.
  if (canStore) {
    const out = await fromStoredEntry(url, opts);
    if (out) return out;
  }
  if (job.aborted) throw aborted();

  // 2. From the network: first the header, to refuse a model that cannot fit before downloading
  // it; then into storage when it can hold it (one writer per model across tabs and embeds, by
  // Web Lock; a second concurrent load waits a moment for it, then runs from memory), else into
  // memory.
  const head = await fetchPrefix(url, job, HEADER_PREFIX, opts.stallMs);
  if (head?.total) {
    const prefix = async (n) =>
      n <= head.bytes.byteLength ? head.bytes.subarray(0, n) : ((await fetchPrefix(url, job, n, opts.stallMs))?.bytes ?? null);
    await checkFits(prefix, head.total, opts.nCtx, `the model at ${url}`);
  }
  if (job.aborted) throw aborted();
  if (canStore) {
    try {
      await sweep({ keepOnly: url });
    } catch {}
    const release = await holdLock(lockName(await keyFor(url)));
    /** @type {Awaited<ReturnType<typeof toStorage>>} */
    let stored = 'busy';
    if (release) {
      try {
        // Whoever held the lock while this load waited may have stored the model meanwhile.
        stored = (release.waited && (await fromStoredEntry(url, opts))) || (await toStorage(url, opts));
      } finally {
        release();
      }
    }
    if (stored === 'busy') warnings.push('another tab is storing this model right now: this one runs from memory');
    else if (stored) return stored;
  }
  const sink = new MemorySink();
  const sha256 = await download(url, sink, opts);
  const bytes = sink.bytes();
  const what = `the model at ${url}`;
  const built = buildEngine(memoryReader(bytes), bytes.byteLength, { ...opts, hash: false, what });
  checked(built, sha256, opts.expectSha, what);
  return { built, sha256, size: bytes.byteLength, source: 'network', storage: 'memory' };
}

/** The model from its complete stored entry, when there is one (of the expected SHA-256) and it checks out; else null. */
async function fromStoredEntry(url, opts) {
  let entry = null;
  try {
    entry = await getEntry(url);
  } catch (e) {
    opts.warnings.push(`the browser's storage could not be read (${e?.message ?? e})`);
  }
  if (!entry || (opts.expectSha && entry.record.sha256 !== opts.expectSha)) return null;
  return fromStorage(url, entry, opts);
}

// ---- split models -----------------------------------------------------------------------------

/** Shards downloaded at once. */
const SHARD_DOWNLOADS = 2;

/**
 * The URLs of all shards of a split GGUF named as llama.cpp's gguf-split names them
 * (`…-00001-of-00003.gguf`, any query kept), given any one of them; null for any other URL.
 * @param {string} url
 */
function splitUrls(url) {
  const u = new URL(url);
  const m = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/.exec(u.pathname);
  const count = m ? Number(m[3]) : 0;
  if (!m || count < 2 || Number(m[2]) < 1 || Number(m[2]) > count) return null;
  return Array.from({ length: count }, (_, i) => {
    const v = new URL(u);
    v.pathname = `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`;
    return v.href;
  });
}

/**
 * How long a load waits for another context's store lock before it runs from memory. A worker
 * that an abort has just ended still holds its lock for a moment (Chromium frees it when the
 * worker's thread is gone), and the load right after it must not lose its store to that.
 */
const LOCK_WAIT_MS = 3000;

/**
 * Holds the Web Lock `name` until the returned function is called: at once when it is free, else
 * after waiting up to LOCK_WAIT_MS for it (`waited` then says so: whoever held it may have stored
 * what the caller was about to download); null when another tab still holds it.
 * @param {string} name @returns {Promise<((() => void) & {waited?: boolean}) | null>}
 */
async function holdLock(name) {
  if (!navigator.locks) return () => {};
  /** @type {(() => void) & {waited?: boolean}} */
  let release = () => {};
  const held = new Promise((ok) => (release = () => ok(undefined)));
  const take = (/** @type {LockOptions} */ options) =>
    new Promise((ok) => {
      navigator.locks
        .request(name, options, (lock) => {
          ok(!!lock);
          return lock ? held : undefined;
        })
        .catch(() => ok(false)); // (the wait ran out: an AbortError before the lock was granted)
    });
  if (await take({ ifAvailable: true })) return release;
  if (!(await take({ signal: AbortSignal.timeout(LOCK_WAIT_MS) }))) return null;
  release.waited = true;
  return release;
}

/**
 * A split model: each shard comes from storage when stored, else is downloaded (at most
 * SHARD_DOWNLOADS at once, each resumable and stored on its own, under its own Web Lock); then the
 * engine reads them back to back, computing each shard's SHA-256 as it goes, and a stored shard
 * whose bytes changed is deleted and fetched again. Progress counts the bytes of all shards.
 * `sha256` may be one hash per shard (an array), or the first shard's.
 * @param {string[]} urls
 */
async function loadSplit(urls, opts, retried = false) {
  const { warnings, job } = opts;
  const what = `the model at ${urls[0]} (${urls.length} files)`;
  const canStore = opts.store && storageAvailable();
  const expect = Array.isArray(opts.expectShas) ? opts.expectShas : opts.expectSha ? [opts.expectSha] : [];
  /** @type {{url: string, size: number, sha256: string|null, read: (at: number, n: number) => Uint8Array, stored: boolean, commit: (() => Promise<void>)|null, release: (() => void)|null, discard: (() => Promise<void>)|null}[]} */
  const shards = [];
  /** @type {(() => void)[]} */
  const closers = [];
  // 1. Stored shards, and the others' sizes (a Range request for their first bytes).
  const heads = [];
  for (const url of urls) {
    let entry = null;
    if (canStore) {
      try {
        entry = await getEntry(url);
      } catch (e) {
        warnings.push(`the browser's storage could not be read (${e?.message ?? e})`);
      }
    }
    if (entry) {
      const reader = await storedReader(entry);
      closers.push(reader.close);
      shards.push({ url, size: entry.record.size, sha256: entry.record.sha256, read: reader.read, stored: true, commit: null, release: null, discard: null });
      heads.push(null);
    } else {
      const head = await fetchPrefix(url, job, url === urls[0] ? HEADER_PREFIX : 24, opts.stallMs);
      if (!head?.total) throw new HearthError('download_error', `could not fetch ${url}: its size is not known`);
      shards.push({ url, size: head.total, sha256: null, read: () => new Uint8Array(0), stored: false, commit: null, release: null, discard: null });
      heads.push(head);
    }
    if (job.aborted) throw aborted();
  }
  const total = shards.reduce((n, sh) => n + sh.size, 0);
  const first = heads[0] ?? { bytes: shards[0].read(0, Math.min(HEADER_PREFIX, shards[0].size)) };
  await checkFits(async (n) => (n <= first.bytes.byteLength ? first.bytes.subarray(0, n) : null), total, opts.nCtx, what);
  if (job.aborted) throw aborted();

  // 2. The missing shards, downloaded with progress over all of them.
  const done = shards.map((sh) => (sh.stored ? sh.size : 0));
  const report = (i) => (loaded, _total, phase) => {
    done[i] = Math.max(done[i], phase === 'download' ? loaded : 0);
    opts.report(done.reduce((a, b) => a + b, 0), total, 'download');
  };
  if (canStore) await sweep({ keepOnly: urls[0] }).catch(() => {});
  const missing = shards.map((sh, i) => i).filter((i) => !shards[i].stored);
  const downloadShard = async (i) => {
    const sh = shards[i];
    // Its own request controller (downloads run side by side); aborted with the load.
    /** @type {Job} */
    const own = { get aborted() { return job.aborted; }, controller: null };
    (job.subs ??= []).push(own);
    const sub = { ...opts, job: own, report: report(i) };
    let partial = null;
    if (canStore) {
      sh.release = await holdLock(lockName(await keyFor(sh.url)));
      if (!sh.release) warnings.push(`another tab is storing ${sh.url} right now: this one keeps it in memory`);
      else {
        try {
          partial = await openPartial(sh.url);
        } catch (e) {
          warnings.push(`${sh.url} cannot be stored here (${e?.message ?? e}): it is kept in memory`);
        }
      }
    }
    /** @type {StorageSink|null} */
    const stored = partial ? new StorageSink(partial, warnings) : null;
    const sink = stored ?? new MemorySink();
    try {
      sh.sha256 = await download(sh.url, sink, sub);
    } catch (e) {
      if (stored && (stored.memory || job.aborted || !partial.meta)) await partial.discard().catch(() => {});
      else partial?.close();
      throw e;
    }
    const mem = stored ? stored.memory : /** @type {MemorySink} */ (sink);
    if (mem) {
      const bytes = mem.bytes();
      sh.size = bytes.byteLength;
      sh.read = memoryReader(bytes);
      if (partial) await partial.discard().catch(() => {});
    } else {
      const size = (sh.size = partial.offset);
      sh.read = scratchReader((view, at) => partial.readInto(view, at), size);
      sh.discard = () => partial.discard();
      sh.commit = () =>
        partial.commit({
          url: sh.url,
          size,
          sha256: sh.sha256,
          storedAt: new Date().toISOString(),
          etag: partial.meta?.etag ?? null,
          name: safeDecode(new URL(sh.url).pathname.split('/').pop() || 'model.gguf'),
        });
    }
  };
  const releaseAll = () => shards.forEach((sh) => sh.release?.());
  try {
    let next = 0;
    const worker = async () => {
      while (next < missing.length) await downloadShard(missing[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(SHARD_DOWNLOADS, missing.length) }, worker));
  } catch (e) {
    for (const sh of shards) await sh.discard?.().catch(() => {});
    releaseAll();
    closers.forEach((close) => close());
    throw e;
  }
  if (job.aborted) {
    releaseAll();
    closers.forEach((close) => close());
    throw aborted();
  }

  // 3. The engine over all shards back to back; each shard's hash checked.
  const sizes = shards.map((sh) => sh.size);
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  const read = (at, n) => {
    let k = starts.length - 1;
    while (starts[k] > at) k--;
    if (at + n <= starts[k] + sizes[k]) return shards[k].read(at - starts[k], n); // within one shard
    const out = new Uint8Array(Math.max(0, Math.min(n, total - at)));
    for (let got = 0; got < out.byteLength; ) {
      let k = starts.length - 1;
      while (starts[k] > at + got) k--;
      const piece = shards[k].read(at + got - starts[k], Math.min(out.byteLength - got, starts[k] + sizes[k] - (at + got)));
      out.set(piece, got);
      got += piece.byteLength;
      if (!piece.byteLength) break;
    }
    return out;
  };
  let built;
  try {
    // Downloaded shards were hashed as they streamed: the engine hashes the shards only when some
    // come from storage (it hashes all parts or none).
    built = buildEngine(read, total, { ...opts, hash: shards.some((sh) => sh.stored), what, parts: sizes });
  } catch (e) {
    for (const sh of shards) await sh.discard?.().catch(() => {});
    releaseAll();
    throw e;
  } finally {
    closers.forEach((close) => close());
  }
  /** @type {string[]} each shard's SHA-256: computed by the engine, or by the download */
  const hashes = built.sha256s ?? shards.map((sh) => /** @type {string} */ (sh.sha256));
  const damaged = shards.filter((sh, i) => sh.stored && hashes[i] !== sh.sha256);
  const wrong = shards.findIndex((sh, i) => hashes[i] !== sh.sha256 || (expect[i] && hashes[i] !== expect[i]));
  if (damaged.length && !retried) {
    built.free();
    releaseAll();
    for (const sh of damaged) {
      warnings.push(`the stored copy of ${sh.url} was damaged; downloading it again`);
      await deleteEntry(sh.url).catch(() => {});
    }
    for (const sh of shards) if (!sh.stored) await sh.commit?.().catch(() => {}); // the good downloads stay
    return loadSplit(urls, opts, true);
  }
  if (wrong >= 0) {
    built.free();
    for (const sh of shards) await sh.discard?.().catch(() => {});
    releaseAll();
    throw new HearthError('integrity_error', `${shards[wrong].url} does not match its SHA-256 (expected ${expect[wrong] ?? shards[wrong].sha256}, got ${hashes[wrong]})`);
  }
  // 4. The downloaded shards kept.
  let kept = shards.every((sh) => sh.stored || sh.commit);
  for (const sh of shards) {
    if (!sh.commit) continue;
    try {
      await sh.commit();
    } catch (e) {
      kept = false;
      await sh.discard?.().catch(() => {});
      await deleteEntry(sh.url).catch(() => {});
      warnings.push(`${sh.url} could not be stored (${e?.message ?? e}): it will be downloaded again next time`);
    }
  }
  releaseAll();
  return {
    built,
    sha256: hashes[0],
    size: total,
    source: shards.every((sh) => sh.stored) ? 'storage' : 'network',
    storage: kept ? 'opfs' : 'memory',
    shards: shards.map((sh, i) => ({ url: sh.url, size: sh.size, sha256: hashes[i] })),
  };
}

/**
 * The stored copy into a new engine, its SHA-256 computed as it is read. Returns null when the
 * copy cannot be used (then the model is downloaded again): damaged bytes are deleted, a copy
 * that cannot be read is left alone. An error that is not about the bytes — a context too large,
 * a weight type this engine does not know — fails the load and keeps the copy: the same bytes
 * downloaded again would fail the same way, and offline they are all there is.
 */
async function fromStorage(url, entry, opts) {
  const reader = await storedReader(entry);
  try {
    return await fromStorageWith(url, entry, reader.read, opts);
  } finally {
    reader.close();
  }
}

/** `fromStorage` with the stored file's reader. */
async function fromStorageWith(url, entry, read, opts) {
  const { record } = entry;
  const { job, warnings } = opts;
  const damaged = async (why) => {
    warnings.push(`the stored copy was damaged (${why}); downloading it again`);
    await deleteEntry(url).catch(() => {});
    return null;
  };
  let built;
  try {
    built = buildEngine(read, record.size, { ...opts, hash: true, what: 'the stored copy' });
  } catch (e) {
    if (e?.name === 'AbortError' || isTrap(e)) throw e;
    if (e instanceof StorageReadError) {
      warnings.push(`${e.message}; downloading it again`);
      return null;
    }
    // The engine refused the file: only its hash says whether the bytes changed.
    let sha;
    try {
      sha = await hashAll(read, record.size, job, opts.report);
    } catch (h) {
      if (h?.name === 'AbortError') throw h;
      warnings.push(`the stored copy could not be read (${h?.message ?? h}); downloading it again`);
      return null;
    }
    if (sha === record.sha256) throw e;
    return damaged(e.message);
  }
  const sha256 = built.sha256;
  if (sha256 !== record.sha256) {
    built.free();
    return damaged(`its SHA-256 is ${sha256}, stored as ${record.sha256}`);
  }
  return { built, sha256: record.sha256, size: record.size, source: 'storage', storage: 'opfs' };
}

/** Bytes collected in memory, in a buffer that grows as they come. */
class MemorySink {
  constructor() {
    this.buf = new Uint8Array(0);
    this.offset = 0;
  }
  reserve(total) {
    if (total > this.buf.length) this.grow(total);
  }
  grow(n) {
    const bigger = new Uint8Array(n);
    bigger.set(this.buf.subarray(0, this.offset));
    this.buf = bigger;
  }
  write(chunk) {
    const end = this.offset + chunk.byteLength;
    if (end > this.buf.length) this.grow(Math.max(end, this.buf.length * 2, 1 << 24));
    this.buf.set(chunk, this.offset);
    this.offset = end;
  }
  restart() {
    this.offset = 0;
  }
  bytes() {
    return this.buf.subarray(0, this.offset);
  }
}

/**
 * Bytes written in place to the model's partial file. When storage fails part-way (the quota runs
 * out, the disk errs) the bytes written so far are copied back into memory and the download goes
 * on there: nothing is downloaded twice.
 */
class StorageSink {
  /** @param {import('./storage.js').Partial} partial */
  constructor(partial, warnings) {
    this.partial = partial;
    this.warnings = warnings;
    /** @type {MemorySink|null} */
    this.memory = null;
  }
  get offset() {
    return this.memory ? this.memory.offset : this.partial.offset;
  }
  reserve(total) {
    this.memory?.reserve(total);
  }
  write(chunk) {
    if (this.memory) return this.memory.write(chunk);
    try {
      this.partial.write(chunk);
    } catch (e) {
      this.toMemory(e);
      this.memory.write(chunk);
    }
  }
  toMemory(e) {
    const memory = new MemorySink();
    const n = this.partial.offset;
    memory.grow(Math.max(n, this.partial.meta?.total || 0));
    for (let at = 0; at < n; at += SLICE) this.partial.readInto(memory.buf.subarray(at, Math.min(at + SLICE, n)), at);
    memory.offset = n;
    this.memory = memory;
    this.partial.discard().catch(() => {});
    const full = e?.name === 'QuotaExceededError';
    this.warnings.push(
      full
        ? 'storage is full: the model runs from memory and will be downloaded again next time'
        : `the model could not be stored (${e?.message ?? e}): it runs from memory and will be downloaded again next time`,
    );
  }
  async restart(meta) {
    if (this.memory) return this.memory.restart();
    try {
      await this.partial.restart(meta);
    } catch (e) {
      this.toMemory(e);
      this.memory.restart();
    }
  }
}

/** Downloads `url` into its partial file and builds the engine from it; then stores it. */
async function toStorage(url, opts) {
  const { warnings, job } = opts;
  let partial;
  try {
    partial = await openPartial(url);
  } catch (e) {
    if (e?.name === 'NoModificationAllowedError') return 'busy';
    warnings.push(`the model cannot be stored here (${e?.message ?? e}): it runs from memory and will be downloaded again next time`);
    return null;
  }
  const sink = new StorageSink(partial, warnings);
  let sha256;
  try {
    sha256 = await download(url, sink, opts);
  } catch (e) {
    // A cancelled or failed download frees its space; a dropped connection's bytes were kept by
    // `download` for as long as it could resume, and are kept no longer than this load.
    if (sink.memory || job.aborted || !partial.meta) await partial.discard().catch(() => {});
    else partial.close();
    throw e;
  }
  const what = `the model at ${url}`;
  if (sink.memory) {
    const bytes = sink.memory.bytes();
    const built = buildEngine(memoryReader(bytes), bytes.byteLength, { ...opts, hash: false, what });
    checked(built, sha256, opts.expectSha, what);
    return { built, sha256, size: bytes.byteLength, source: 'network', storage: 'memory' };
  }
  const size = partial.offset;
  let built;
  try {
    built = buildEngine(scratchReader((view, at) => partial.readInto(view, at), size), size, {
      ...opts,
      hash: false,
      what,
    });
    checked(built, sha256, opts.expectSha, what);
  } catch (e) {
    await partial.discard().catch(() => {});
    throw e;
  }
  try {
    await partial.commit({
      url,
      size,
      sha256,
      storedAt: new Date().toISOString(),
      etag: partial.meta?.etag ?? null,
      name: safeDecode(new URL(url).pathname.split('/').pop() || 'model.gguf'),
    });
    return { built, sha256, size, source: 'network', storage: 'opfs' };
  } catch (e) {
    // The model loaded: it runs, it just is not kept.
    await partial.discard().catch(() => {});
    await deleteEntry(url).catch(() => {});
    warnings.push(`the model could not be stored (${e?.message ?? e}): it runs from memory and will be downloaded again next time`);
    return { built, sha256, size, source: 'network', storage: 'memory' };
  }
}

/**
 * Streams `url` into `sink`, resuming with `Range` requests after a dropped or stalled connection
 * (and from what an earlier, interrupted download left in a stored partial). Checks the byte count
 * against the server's and returns the SHA-256 of the whole file.
 */
async function download(url, sink, opts) {
  const { job, report } = opts;
  const hasher = new wasm.Sha256();
  try {
    const partial = sink.partial;
    let validator = partial?.meta ? partial.meta.etag ?? partial.meta.lastModified : null;
    if (sink.offset > 0) {
      // Bytes from an earlier download: hash them (they are checked with the rest at the end).
      const n = sink.offset;
      for (let at = 0; at < n; at += SLICE) {
        if (job.aborted) throw aborted();
        hasher.update(partial.readInto(scratch(Math.min(SLICE, n - at)), at));
        report(Math.min(at + SLICE, n), partial.meta.total || n, 'verify');
        await yieldToEvents();
      }
    }
    let total = 0;
    let trusted = true;
    let quotaChecked = false;
    for (let attempt = 0; ; attempt++) {
      const from = sink.offset;
      const res = await request(url, job, from, validator);
      // A resumed response whose Content-Range CORS hides is taken to start where it was asked to.
      const range =
        res.status === 206
          ? (parseContentRange(res.headers.get('Content-Range')) ?? (from > 0 ? { start: from, size: total || partial?.meta?.total || 0 } : null))
          : null;
      if (res.status === 206 && (!range || range.start !== from)) {
        res.body?.cancel().catch(() => {});
        throw new HearthError('download_error', `could not fetch ${url}: the server sent bytes ${res.headers.get('Content-Range')} when ${from > 0 ? `bytes from ${from}` : 'the whole file'} were asked for`);
      }
      if (from > 0 && res.status === 200) {
        // The server sent the whole file: it changed since (If-Range), or it does not do ranges.
        hasher.finish(); // (resets it)
        await sink.restart(meta(url, res, 0));
        validator = res.headers.get('ETag') ?? res.headers.get('Last-Modified');
      } else if (from === 0 && partial) {
        await sink.restart(meta(url, res, range ? range.size : 0));
      }
      // The size to check against. A compressed transfer's Content-Length is not the file's, and a
      // cross-origin response does not say whether it was compressed (Content-Encoding is not
      // exposed by CORS): then the count is only a progress hint.
      const encoding = res.headers.get('Content-Encoding');
      const length = Number(res.headers.get('Content-Length') ?? 0) || 0;
      if (range) (total = range.size), (trusted = true);
      else if (encoding && encoding !== 'identity') (total = 0), (trusted = true);
      else (total = length), (trusted = res.type !== 'cors' || encoding !== null);
      validator ??= res.headers.get('ETag') ?? res.headers.get('Last-Modified');
      if (partial && !quotaChecked && trusted && total && !sink.memory) {
        quotaChecked = true;
        if (!(await quotaAllows(total - sink.offset))) sink.toMemory(new DOMException('not enough free storage for the model', 'QuotaExceededError'));
      }
      if (trusted && total) sink.reserve(total);
      try {
        await pump(res, sink, hasher, { total: trusted ? total : 0, hint: total, job, report, stallMs: opts.stallMs });
        break;
      } catch (e) {
        if (!(e instanceof Dropped)) throw e;
        if (attempt >= RESUMES || !validator || (total && !trusted)) {
          throw new HearthError('download_error', `the download of ${url} failed after ${sink.offset} bytes: ${e.message}`);
        }
        opts.warnings.push(`the connection dropped after ${sink.offset} bytes (${e.message}); resumed`);
      }
    }
    if (trusted && total && sink.offset !== total) {
      throw new HearthError('download_error', `the download of ${url} ended after ${sink.offset} of ${total} bytes`);
    }
    if (sink.partial && !sink.memory) sink.partial.handle.flush();
    return hasher.finish();
  } finally {
    hasher.free();
  }
}

/** What a partial download is of (for resuming it later). */
function meta(url, res, size) {
  return {
    url,
    etag: res.headers.get('ETag'),
    lastModified: res.headers.get('Last-Modified'),
    total: size || Number(res.headers.get('Content-Length') ?? 0) || 0,
    startedAt: new Date().toISOString(),
  };
}

/** `bytes a-b/size` → {start, end, size}; null if it is not that. */
function parseContentRange(h) {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(h?.trim() ?? '');
  return m ? { start: Number(m[1]), end: Number(m[2]), size: Number(m[3]) } : null;
}

/**
 * A GET of `url` from byte `from` (with `If-Range: validator` when resuming), or of its first
 * `prefix` bytes only; a network error or an HTTP error status is a `download_error`.
 */
async function request(url, job, from, validator, prefix = 0) {
  job.controller = new AbortController();
  /** @type {Record<string, string>} */
  const headers = {};
  if (prefix > 0) headers.Range = `bytes=0-${prefix - 1}`;
  else if (from > 0) {
    headers.Range = `bytes=${from}-`;
    if (validator) headers['If-Range'] = validator;
  }
  let res;
  try {
    res = await fetch(url, { signal: job.controller.signal, cache: 'no-store', headers });
  } catch (e) {
    if (job.aborted) throw aborted();
    throw new HearthError('download_error', `could not fetch ${url}: ${e?.message ?? e}`);
  }
  if (!(res.ok || res.status === 206) || !res.body) {
    throw new HearthError('download_error', `could not fetch ${url}: HTTP ${res.status}`);
  }
  return res;
}

/** The connection dropped or stalled: the download may resume. */
class Dropped extends Error {}

/** Streams `res`'s body into `sink` and `hasher`, reporting progress; a stall counts as a drop. */
async function pump(res, sink, hasher, { total, hint, job, report, stallMs }) {
  const reader = res.body.getReader();
  let timer = null;
  let stall;
  const stalled = new Promise((_, fail) => (stall = () => fail(new Dropped(`no data for ${stallMs / 1000} s`))));
  stalled.catch(() => {});
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(stall, stallMs);
  };
  const progressTotal = () => Math.max(hint, sink.offset);
  arm();
  report(sink.offset, progressTotal(), 'download', true);
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), stalled]);
      if (done) break;
      arm();
      if (job.aborted) throw aborted();
      if (total && sink.offset + value.byteLength > total) {
        throw new HearthError('download_error', `the server sent more than the ${total} bytes it announced`);
      }
      sink.write(value);
      hasher.update(value);
      report(sink.offset, progressTotal(), 'download');
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    job.controller?.abort();
    if (job.aborted || e?.name === 'AbortError') throw aborted();
    if (e instanceof HearthError || e instanceof Dropped) throw e;
    throw new Dropped(e?.message ?? String(e));
  } finally {
    clearTimeout(timer);
  }
  report(sink.offset, progressTotal(), 'download', true);
  if (total && sink.offset < total) throw new Dropped(`the response ended after ${sink.offset} of ${total} bytes`);
}
