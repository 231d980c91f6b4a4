// hearth: a private language model in a browser tab. The page-side API; inference runs in a
// dedicated module worker (worker.js), the weights live in the browser's own storage (storage.js).
//
//   import { Hearth } from './hearth.js';
//   const llm = await Hearth.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { onProgress });
//   for await (const piece of llm.chat([{ role: 'user', content: 'Hi!' }])) out.append(piece);
//
// This surface is a contract (README.browser.md documents it): add freely, rename nothing.

import * as store from './storage.js';

/**
 * @typedef {'download_error'|'load_error'|'integrity_error'|'context_full'|'quota_exceeded'|'aborted'
 *   |'invalid_argument'|'out_of_memory'|'tokenizer_error'|'template_error'|'io_error'|'worker_crashed'|'internal_error'} ErrorType
 *
 * @typedef {object} Progress
 * @property {number} loaded  bytes so far; never goes backwards within one load
 * @property {number} total   bytes in all (the file's size)
 * @property {'download'|'storage'|'load'} phase  fetching from the network | reading from storage or a
 *   local file | copying the weights into the engine
 *
 * @typedef {object} LoadOptions
 * @property {(p: Progress) => void} [onProgress]  throttled (about 10 per second)
 * @property {string} [sha256]     expected hex SHA-256 of the file; a mismatch fails the load
 * @property {AbortSignal} [signal]
 * @property {number} [nCtx]       context length in tokens (default: the model's, at most 4096)
 * @property {boolean} [store]     keep a downloaded model in the browser's storage (default true)
 * @property {boolean} [threads]   use the threaded build when the page is cross-origin isolated (default true)
 * @property {number} [nThreads]    threads for the threaded build (default: the device's cores, at most 4)
 *
 * @typedef {object} GenerateOptions
 * @property {number} [maxTokens]       default 256
 * @property {number} [temperature]     0 is greedy (the default)
 * @property {number} [topK]
 * @property {number} [topP]
 * @property {number} [minP]
 * @property {number} [repeatPenalty]
 * @property {number} [repeatLastN]
 * @property {number} [seed]
 * @property {string[]} [stop]          text that ends the answer (not included)
 * @property {boolean} [ignoreEos]      keep going past end-of-turn tokens up to maxTokens (benchmarks)
 * @property {AbortSignal} [signal]
 * @property {boolean} [raw]            generate(): the prompt as-is, no chat template (default false)
 * @property {(piece: string) => void} [onPiece]  generate(): each piece of text as it comes
 *
 * @typedef {object} Timings
 * @property {number} [loadMs]      the model's load time (on the first result after a load)
 * @property {number} prefillMs
 * @property {number} prefillTokens  prompt tokens run through the model (the rest came from the cache)
 * @property {number} reusedTokens   prompt tokens reused from the previous turn
 * @property {number} decodeMs
 * @property {number} decodeTokens
 *
 * @typedef {object} GenerateResult
 * @property {string} text
 * @property {number[]} tokens        generated token ids
 * @property {number[]} promptTokens  the prompt's token ids
 * @property {'stop'|'stop_string'|'length'} finishReason
 * @property {Timings} timings
 *
 * @typedef {{role: 'system'|'user'|'assistant'|string, content: string}} Message
 *
 * @typedef {object} ModelInfo  what the engine reports, plus how the model was loaded
 * @property {string|null} name
 * @property {string} architecture
 * @property {string} quantization
 * @property {number} layers
 * @property {number} context           tokens this session holds
 * @property {number} contextTrain
 * @property {number} vocab
 * @property {number} sizeBytes
 * @property {string} sha256
 * @property {'network'|'storage'|'file'} source
 * @property {'opfs'|'memory'} storage  'memory': not stored (storage full, or store: false, or a local file)
 * @property {'simd'|'threads'} build
 * @property {number} threads           threads the engine computes on
 * @property {boolean} relaxedSimd      the build uses WebAssembly relaxed SIMD (its 8-bit dot products)
 * @property {string} reason            why this build runs
 * @property {boolean} crossOriginIsolated
 * @property {number} loadMs
 * @property {string[]} warnings
 */

export const VERSION = '0.1.0';

/** An error from hearth: `type` says what kind; an aborted call has `name === 'AbortError'`. */
export class HearthError extends Error {
  /** @param {ErrorType} type @param {string} message @param {string} [name] */
  constructor(type, message, name = 'HearthError') {
    super(message);
    this.name = name;
    /** @type {ErrorType} */
    this.type = type;
  }
}

const abortError = () => new HearthError('aborted', 'the operation was aborted', 'AbortError');

const OPTION_KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'repeatLastN', 'seed'];

/** The options the engine takes, checked here so a typo fails loudly and early. */
function engineOptions(options = {}) {
  const out = {};
  for (const k of OPTION_KEYS) {
    const v = options[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new HearthError('invalid_argument', `${k} must be a finite number`);
    out[k] = v;
  }
  if (options.stop !== undefined) {
    const stop = typeof options.stop === 'string' ? [options.stop] : options.stop;
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) {
      throw new HearthError('invalid_argument', 'stop must be a string or an array of strings');
    }
    out.stop = stop;
  }
  if (options.ignoreEos !== undefined) {
    if (typeof options.ignoreEos !== 'boolean') throw new HearthError('invalid_argument', 'ignoreEos must be a boolean');
    out.ignoreEos = options.ignoreEos;
  }
  return out;
}

function checkMessages(messages) {
  if (!Array.isArray(messages) || !messages.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string')) {
    throw new HearthError('invalid_argument', 'messages must be an array of {role, content} strings');
  }
  return messages.map(({ role, content }) => ({ role, content }));
}

/** Starts the worker; cross-origin module URLs (an embed served from elsewhere) go through a blob shim. */
function startWorker() {
  const url = new URL('./worker.js', import.meta.url);
  if (typeof location === 'undefined' || url.origin === location.origin) return new Worker(url, { type: 'module', name: 'hearth' });
  const shim = new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module', name: 'hearth' });
}

/** One worker and its open calls. */
class Connection {
  constructor() {
    this.worker = startWorker();
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, onProgress?: Function, onPiece?: Function}>} */
    this.calls = new Map();
    this.dead = null;
    this.worker.onmessage = ({ data }) => this.#receive(data);
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.#die(`the worker failed: ${e.message || 'it could not start'}`);
    };
    this.worker.onmessageerror = () => this.#die('a message from the worker could not be read');
  }

  #receive(msg) {
    if (msg.fatal) return this.#die(msg.fatal.message);
    const call = this.calls.get(msg.id);
    if (!call) return;
    if (msg.piece !== undefined) return call.onPiece?.(msg.piece, msg.token);
    if (msg.progress) return call.onProgress?.(msg.progress);
    this.calls.delete(msg.id);
    if (msg.error) call.reject(new HearthError(msg.error.type, msg.error.message, msg.error.name));
    else call.resolve(msg.result);
  }

  #die(message) {
    if (this.dead) return;
    this.dead = new HearthError('worker_crashed', message);
    for (const call of this.calls.values()) call.reject(this.dead);
    this.calls.clear();
    this.worker.terminate();
  }

  /**
   * One request. The promise settles exactly once: result, error, abort or worker death.
   * @returns {Promise<any>}
   */
  call(verb, args, { signal, onProgress, onPiece, transfer } = {}) {
    if (this.dead) return Promise.reject(this.dead);
    if (signal?.aborted) return Promise.reject(abortError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ id: 0, verb: 'abort', args: { target: id } });
      const settle = (fn) => (v) => {
        signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      this.calls.set(id, { resolve: settle(resolve), reject: settle(reject), onProgress, onPiece });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.worker.postMessage({ id, verb, args }, transfer ?? []);
    });
  }

  close() {
    this.#die('the model was unloaded');
  }
}

/**
 * The text of one answer as it is generated: `for await (const piece of stream)`. Leaving the loop
 * early stops the generation. `stream.result` is the whole GenerateResult.
 * @implements {AsyncIterableIterator<string>}
 */
export class TokenStream {
  #pieces = [];
  #waiting = null;
  #finished = false;
  #error = null;
  #controller;

  /** @param {(onPiece: (p: string) => void, signal: AbortSignal) => Promise<GenerateResult>} run */
  constructor(run, signal) {
    this.#controller = new AbortController();
    if (signal) {
      if (signal.aborted) this.#controller.abort();
      else signal.addEventListener('abort', () => this.#controller.abort(), { once: true });
    }
    /** @type {Promise<GenerateResult>} */
    this.result = run((p) => this.#push(p), this.#controller.signal);
    this.result.then(
      () => this.#end(null),
      (e) => this.#end(e),
    );
  }

  #push(piece) {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = null;
      w.resolve({ value: piece, done: false });
    } else this.#pieces.push(piece);
  }

  #end(error) {
    this.#finished = true;
    this.#error = error;
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = null;
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** @returns {Promise<IteratorResult<string>>} */
  next() {
    if (this.#pieces.length) return Promise.resolve({ value: this.#pieces.shift(), done: false });
    if (this.#finished) {
      if (this.#error) {
        const e = this.#error;
        this.#error = null; // thrown once; later calls just end
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  /** Called when a for-await loop is left early: stop generating. */
  async return() {
    this.abort();
    await this.result.catch(() => {});
    this.#pieces.length = 0;
    return { value: undefined, done: true };
  }

  /** Stops the generation (the result rejects with an AbortError). */
  abort() {
    this.#controller.abort();
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

export class Hearth {
  /** @type {Connection} */
  #conn;
  #source;
  #options;
  /** @type {ModelInfo} */
  #info;
  #reloading = null;

  /** Use `Hearth.load`. */
  constructor(conn, source, options, info) {
    this.#conn = conn;
    this.#source = source;
    this.#options = options;
    this.#info = info;
  }

  /**
   * Loads a model: a URL (fetched once, then read from the browser's storage), or a local
   * File/Blob (read in place, never uploaded).
   * @param {string|URL|Blob} source
   * @param {LoadOptions} [options]
   * @returns {Promise<Hearth>}
   */
  static async load(source, options = {}) {
    const { conn, info } = await Hearth.#start(source, options);
    return new Hearth(conn, source, options, info);
  }

  static async #start(source, options) {
    if (options.nThreads !== undefined && !(Number.isInteger(options.nThreads) && options.nThreads >= 1)) {
      throw new HearthError('invalid_argument', 'nThreads must be a whole number ≥ 1');
    }
    let wire;
    if (typeof Blob !== 'undefined' && source instanceof Blob) wire = source;
    else if (typeof source === 'string' || source instanceof URL) {
      const base = typeof document !== 'undefined' ? document.baseURI : location.href;
      wire = new URL(String(source), base);
      wire.hash = '';
      wire = wire.href;
    } else throw new HearthError('invalid_argument', 'the model must be a URL, a File or a Blob');
    if (typeof wire === 'string' && options.store !== false) {
      // Ask the browser not to evict the weights under storage pressure (a hint; it may say no).
      navigator.storage?.persist?.().catch(() => {});
    }
    const conn = new Connection();
    let lastLoaded = -1;
    const onProgress = options.onProgress
      ? (p) => {
          if (p.loaded < lastLoaded) return; // never backwards
          lastLoaded = p.loaded;
          try {
            options.onProgress(p);
          } catch (e) {
            console.error(e);
          }
        }
      : undefined;
    const args = {
      source: wire,
      sha256: options.sha256,
      nCtx: options.nCtx,
      store: options.store,
      threads: options.threads !== false,
      nThreads: options.nThreads,
    };
    try {
      const info = await conn.call('load', args, { signal: options.signal, onProgress });
      for (const w of info.warnings) console.warn(`hearth: ${w}`);
      return { conn, info };
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  /** @type {ModelInfo} */
  get info() {
    return this.#info;
  }

  /** After a crash the next call starts a new worker and loads the same model again (from storage). */
  async #connection() {
    if (!this.#conn) throw new HearthError('invalid_argument', 'the model was unloaded');
    if (!this.#conn.dead) return this.#conn;
    this.#reloading ??= Hearth.#start(this.#source, { ...this.#options, onProgress: undefined, signal: undefined }).finally(() => {
      this.#reloading = null;
    });
    const { conn, info } = await this.#reloading;
    this.#conn = conn;
    this.#info = info;
    return conn;
  }

  /**
   * Streams an answer to a conversation. The KV cache is kept between calls, so only what is new
   * since the previous call is run through the model.
   * @param {Message[]} messages
   * @param {GenerateOptions} [options]
   * @returns {TokenStream}
   */
  chat(messages, options = {}) {
    return new TokenStream(async (onPiece, signal) => {
      const args = { messages: checkMessages(messages), options: engineOptions(options) };
      return (await this.#connection()).call('chat', args, { signal, onPiece });
    }, options.signal);
  }

  /**
   * Generates a whole answer. `raw: true` continues the prompt as-is; otherwise the prompt is one
   * user message in the model's chat template.
   * @param {string} prompt
   * @param {GenerateOptions} [options]
   * @returns {Promise<GenerateResult>}
   */
  async generate(prompt, options = {}) {
    if (typeof prompt !== 'string') throw new HearthError('invalid_argument', 'the prompt must be a string');
    const conn = await this.#connection();
    const opts = engineOptions(options);
    const onPiece = options.onPiece;
    if (options.raw) return conn.call('generate', { prompt, options: opts }, { signal: options.signal, onPiece });
    return conn.call('chat', { messages: [{ role: 'user', content: prompt }], options: opts }, { signal: options.signal, onPiece });
  }

  /**
   * Token ids of a text (special-token text like `<|im_end|>` parsed only with `special: true`).
   * @returns {Promise<number[]>}
   */
  async tokenize(text, { special = false } = {}) {
    return (await this.#connection()).call('tokenize', { text: String(text), special });
  }

  /** @returns {Promise<string>} */
  async detokenize(tokens) {
    return (await this.#connection()).call('detokenize', { tokens: Array.from(tokens, Number) });
  }

  /** Forgets the conversation held in the KV cache. */
  async reset() {
    await (await this.#connection()).call('reset', {});
  }

  /** Frees the engine and ends the worker. Further calls fail. */
  async unload() {
    const conn = this.#conn;
    this.#conn = null;
    if (!conn || conn.dead) return;
    await conn.call('unload', {}).catch(() => {});
    conn.close();
  }

  /** Models kept in the browser's storage (this origin's OPFS). */
  static cache = {
    /** @returns {Promise<store.StoredModel[]>} */
    list: () => store.listEntries({ sweep: false }),
    /** @param {string|URL} url  as passed to load (relative URLs resolve against the page) */
    delete: (url) => store.deleteEntry(new URL(String(url), document.baseURI).href),
    clear: () => store.clearEntries(),
    usage: () => store.usage(),
  };
}

export default Hearth;
