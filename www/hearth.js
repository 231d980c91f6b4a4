// hearth: a private language model in a browser tab. The page-side API; inference runs in a
// dedicated module worker (worker.js), the weights live in the browser's own storage (storage.js).
//
//   import { Hearth } from './hearth.js';
//   const llm = await Hearth.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { onProgress });
//   for await (const piece of llm.chat([{ role: 'user', content: 'Hi!' }])) out.append(piece);
//
// This surface is a contract (README.md, "The JS API", documents it): add freely, rename nothing.

import * as store from './storage.js';
import { HearthError, abortError, fromWire } from './protocol.js';

export { HearthError };

/**
 * The types shared with the worker (www/protocol.js defines them once).
 * @typedef {import('./protocol.js').ErrorType} ErrorType
 * @typedef {import('./protocol.js').Progress} Progress
 * @typedef {import('./protocol.js').Message} Message
 * @typedef {import('./protocol.js').Timings} Timings
 * @typedef {import('./protocol.js').GenerateResult} GenerateResult
 * @typedef {import('./protocol.js').ModelInfo} ModelInfo  what the engine reports, plus which build
 *   runs and how the model was loaded
 *
 * @typedef {object} LoadOptions
 * @property {(p: Progress) => void} [onProgress]  throttled (about 10 per second)
 * @property {string|string[]} [sha256]  expected hex SHA-256 of the file (a split model: one per shard,
 *   or the first shard's); a mismatch fails the load
 * @property {AbortSignal} [signal]
 * @property {number} [nCtx]       context length in tokens (default: the model's, at most 4096)
 * @property {boolean} [store]     keep a downloaded model in the browser's storage (default true)
 * @property {boolean} [threads]   use the threaded build when the page is cross-origin isolated (default true)
 * @property {number} [nThreads]    threads for the threaded build (default: the device's cores, at most 4)
 * @property {number} [stallTimeoutMs]  a download that gets no data for this long is resumed, or fails
 *   after a few tries (default 30000)
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
 * @property {string|string[]} [stop]   text that ends the answer (not included)
 * @property {boolean} [ignoreEos]      keep going past end-of-turn tokens up to maxTokens (benchmarks)
 * @property {boolean} [enableThinking] chats: the template's `enable_thinking` (Qwen3, SmolLM3: false asks
 *   for an answer without a thinking block); unset leaves the template's default
 * @property {AbortSignal} [signal]
 * @property {boolean} [raw]            generate(): the prompt as-is, no chat template (default false)
 * @property {(piece: string) => void} [onPiece]  generate(): each piece of text as it comes
 */

export const VERSION = '0.1.0';

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
  for (const k of /** @type {const} */ (['ignoreEos', 'enableThinking'])) {
    if (options[k] === undefined || options[k] === null) continue;
    if (typeof options[k] !== 'boolean') throw new HearthError('invalid_argument', `${k} must be a boolean`);
    out[k] = options[k];
  }
  return out;
}

/** Text as the engine takes it: a lone UTF-16 surrogate (half of a pasted emoji) becomes U+FFFD. */
const wellFormed = (s) =>
  typeof s.toWellFormed === 'function' ? s.toWellFormed() : s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

function checkMessages(messages) {
  if (!Array.isArray(messages) || !messages.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string')) {
    throw new HearthError('invalid_argument', 'messages must be an array of {role, content} strings');
  }
  return messages.map(({ role, content }) => ({ role: wellFormed(role), content: wellFormed(content) }));
}

/**
 * Starts the worker. The `new Worker(new URL('./worker.js', import.meta.url), {type: 'module'})`
 * is written out whole so bundlers (Vite, webpack) find the worker and bundle it. A module served
 * from another origin than the page (an embed) cannot start a worker from its own URL: that goes
 * through a one-line blob module that imports it (named with `import.meta.resolve`, which bundlers
 * leave alone: they would otherwise copy worker.js unbundled for it).
 */
function startWorker() {
  if (typeof location === 'undefined' || new URL(import.meta.url).origin === location.origin) {
    return new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'hearth' });
  }
  const shim = new Blob([`import ${JSON.stringify(import.meta.resolve('./worker.js'))};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module', name: 'hearth' });
}

/**
 * @typedef {import('./protocol.js').Verbs} Verbs
 * @typedef {import('./protocol.js').Response} Response
 * @typedef {{resolve: (v: any) => void, reject: (e: any) => void, onProgress?: (p: Progress) => void,
 *   onPiece?: (piece: string, token: number|null) => void}} OpenCall
 */

/** One worker and its open calls. */
class Connection {
  constructor() {
    this.worker = startWorker();
    this.nextId = 1;
    /** @type {Map<number, OpenCall>} */
    this.calls = new Map();
    /** @type {HearthError|null} */
    this.dead = null;
    this.worker.onmessage = ({ data }) => this.#receive(data);
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.#die(new HearthError('worker_crashed', `the worker failed: ${e.message || 'it could not start'}`));
    };
    this.worker.onmessageerror = () => this.#die(new HearthError('worker_crashed', 'a message from the worker could not be read'));
  }

  /** @param {Response} msg */
  #receive(msg) {
    if ('fatal' in msg) return this.#die(fromWire(msg.fatal));
    const call = this.calls.get(msg.id);
    if (!call) return;
    if ('piece' in msg) return call.onPiece?.(msg.piece, msg.token);
    if ('progress' in msg) return call.onProgress?.(msg.progress);
    this.calls.delete(msg.id);
    if ('error' in msg) call.reject(fromWire(msg.error));
    else call.resolve(msg.result);
  }

  /** @param {HearthError} error  what every open and later call fails with */
  #die(error) {
    if (this.dead) return;
    this.dead = error;
    for (const call of this.calls.values()) call.reject(this.dead);
    this.calls.clear();
    this.worker.terminate();
  }

  /**
   * One request. The promise settles exactly once: result, error, abort or worker death.
   * @template {keyof Verbs} V
   * @param {V} verb
   * @param {Verbs[V]['args']} args
   * @param {{signal?: AbortSignal, onProgress?: OpenCall['onProgress'], onPiece?: OpenCall['onPiece']}} [hooks]
   * @returns {Promise<Verbs[V]['result']>}
   */
  call(verb, args, { signal, onProgress, onPiece } = {}) {
    if (this.dead) return Promise.reject(this.dead);
    if (signal?.aborted) return Promise.reject(abortError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => this.worker.postMessage(/** @type {import('./protocol.js').Request} */ ({ id: 0, verb: 'abort', args: { target: id } }));
      const settle = (fn) => (v) => {
        signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      this.calls.set(id, { resolve: settle(resolve), reject: settle(reject), onProgress, onPiece });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.worker.postMessage(/** @type {import('./protocol.js').Request} */ ({ id, verb, args }));
    });
  }

  /** Ends the worker at once (and with it whatever it was doing and the memory it held). */
  close(error = new HearthError('worker_crashed', 'the model was unloaded')) {
    this.#die(error);
  }
}

/**
 * The text of one answer as it is generated: `for await (const piece of stream)`. Leaving the loop
 * early stops the generation. `stream.result` is the whole GenerateResult (a TurnResult for a
 * Conversation's turn).
 * @template {GenerateResult} [R=GenerateResult]
 * @implements {AsyncIterableIterator<string>}
 */
export class TokenStream {
  #pieces = [];
  #waiting = null;
  #finished = false;
  #error = null;
  #controller;

  /**
   * @param {(onPiece: (p: string) => void, signal: AbortSignal) => Promise<R>} run
   * @param {AbortSignal} [signal]
   */
  constructor(run, signal) {
    this.#controller = new AbortController();
    if (signal) {
      if (signal.aborted) this.#controller.abort();
      else signal.addEventListener('abort', () => this.#controller.abort(), { once: true });
    }
    /** @type {Promise<R>} */
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
  /** @type {Promise<{conn: Connection, info: ModelInfo}>|null} */
  #reloading = null;

  /** Use `Hearth.load`. */
  constructor(conn, source, options, info) {
    this.#conn = conn;
    this.#source = source;
    this.#options = options;
    this.#info = info;
    // `llm.chat(messages)` streams; `llm.chat.completions.create(params)` is the OpenAI-shaped
    // surface over the same engine (see `openaiCompletion`).
    const chat = /** @type {any} */ ((messages, opts) => Hearth.prototype.chat.call(this, messages, opts));
    chat.completions = { create: (/** @type {any} */ params) => openaiCompletion(this, params) };
    /** @type {((messages: Message[], options?: GenerateOptions) => TokenStream) & {completions: {create: (params: any) => Promise<any>}}} */
    this.chat = chat;
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
    let lastPhase = null;
    const onProgress = options.onProgress
      ? (p) => {
          if (p.phase !== lastPhase) (lastPhase = p.phase), (lastLoaded = -1);
          if (p.loaded < lastLoaded) return; // never backwards within a phase
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
      stallTimeoutMs: options.stallTimeoutMs,
    };
    // An abort ends the worker at once, whatever phase it is in (a download, or the engine reading
    // the weights in one synchronous call): nothing of the load is left behind. What a download
    // had stored stays as a partial file for the next load to resume.
    const signal = options.signal;
    const onAbort = () => conn.close(abortError());
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw abortError();
      const info = await conn.call('load', args, { onProgress });
      if (signal?.aborted) throw abortError();
      for (const w of info.warnings) console.warn(`hearth: ${w}`);
      return { conn, info };
    } catch (e) {
      conn.close();
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** @type {ModelInfo} */
  get info() {
    return this.#info;
  }

  /**
   * After a crash the next call starts a new worker and loads the same model again (from storage).
   * @returns {Promise<Connection>}
   */
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
    const text = wellFormed(prompt);
    if (options.raw) return conn.call('generate', { prompt: text, options: opts }, { signal: options.signal, onPiece });
    return conn.call('chat', { messages: [{ role: 'user', content: text }], options: opts }, { signal: options.signal, onPiece });
  }

  /**
   * Token ids of a text (special-token text like `<|im_end|>` parsed only with `special: true`).
   * @returns {Promise<number[]>}
   */
  async tokenize(text, { special = false } = {}) {
    return (await this.#connection()).call('tokenize', { text: wellFormed(String(text)), special });
  }

  /**
   * Prompt tokens `messages` take in the model's chat template (with the prompt for the answer).
   * @param {Message[]} messages
   * @param {{enableThinking?: boolean}} [options]  as the chat will be rendered
   * @returns {Promise<number>}
   */
  async countTokens(messages, options = {}) {
    const args = { messages: checkMessages(messages), options: engineOptions({ enableThinking: options.enableThinking }) };
    return (await this.#connection()).call('countChat', args);
  }

  /**
   * A conversation that keeps its turns and fits them to the context (see `Conversation`).
   * @param {{system?: string|null, messages?: Message[]}} [options]
   */
  conversation(options = {}) {
    return new Conversation(this, options);
  }

  /** @returns {Promise<string>} */
  async detokenize(tokens) {
    return (await this.#connection()).call('detokenize', { tokens: Array.from(tokens, Number) });
  }

  /**
   * The engine's memory now (wasm memory never shrinks: this is also its peak) and the tokens its
   * KV cache holds.
   * @returns {Promise<{wasmMemoryBytes: number, cachedTokens: number}>}
   */
  async stats() {
    return (await this.#connection()).call('stats', {});
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
    list: () => store.listEntries(),
    /** @param {string|URL} url  as passed to load (relative URLs resolve against the page) */
    delete: (url) => store.deleteEntry(new URL(String(url), document.baseURI).href),
    clear: () => store.clearEntries(),
    usage: () => store.usage(),
  };
}

// ---- the OpenAI-shaped surface ------------------------------------------------------------------

const FINISH = { stop: 'stop', stop_string: 'stop', length: 'length' };
const completionId = () => `chatcmpl-${Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('')}`;

/**
 * `llm.chat.completions.create(params)` as the OpenAI JS client has it, on this engine: `messages`,
 * `stream`, `max_tokens` (or `max_completion_tokens`), `temperature` and `top_p` (OpenAI's defaults,
 * 1 and 1), `stop`, `seed`, `signal`, `stream_options.include_usage`, and llama.cpp server's
 * `chat_template_kwargs.enable_thinking`; `model` is ignored (the loaded
 * model answers) and `n` must be 1. Resolves with a `chat.completion` object, or with an async
 * iterable of `chat.completion.chunk`s when `stream` is true (its `controller` aborts it).
 * @param {Hearth} llm
 * @param {any} params
 */
async function openaiCompletion(llm, params) {
  if (!params || typeof params !== 'object') throw new HearthError('invalid_argument', 'create() takes an object of parameters');
  if (params.n !== undefined && params.n !== 1) throw new HearthError('invalid_argument', 'n must be 1');
  const messages = checkMessages(
    (params.messages ?? []).map((/** @type {any} */ m) => ({
      role: m?.role,
      // content may be a string or OpenAI's array of text parts
      content: Array.isArray(m?.content) ? m.content.map((/** @type {any} */ p) => (p?.type === 'text' ? p.text : '')).join('') : m?.content,
    })),
  );
  const controller = new AbortController();
  params.signal?.addEventListener('abort', () => controller.abort(), { once: true });
  if (params.signal?.aborted) controller.abort();
  const options = {
    maxTokens: params.max_completion_tokens ?? params.max_tokens ?? undefined,
    temperature: params.temperature ?? 1,
    topP: params.top_p ?? 1,
    seed: params.seed ?? undefined,
    stop: params.stop ?? undefined,
    enableThinking: params.chat_template_kwargs?.enable_thinking ?? undefined,
    signal: controller.signal,
  };
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const model = llm.info.name ?? llm.info.url ?? 'hearth';
  const usage = (/** @type {GenerateResult} */ r) => ({
    prompt_tokens: r.promptTokens.length,
    completion_tokens: r.tokens.length,
    total_tokens: r.promptTokens.length + r.tokens.length,
  });
  const stream = Hearth.prototype.chat.call(llm, messages, options);
  if (!params.stream) {
    const r = await stream.result;
    return {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, finish_reason: FINISH[r.finishReason] ?? 'stop', logprobs: null }],
      usage: usage(r),
    };
  }
  const chunk = (/** @type {any} */ delta, /** @type {string|null} */ finish) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
  });
  const includeUsage = !!params.stream_options?.include_usage;
  async function* chunks() {
    yield chunk({ role: 'assistant', content: '' }, null);
    for await (const piece of stream) yield chunk({ content: piece }, null);
    const r = await stream.result;
    yield chunk({}, FINISH[r.finishReason] ?? 'stop');
    if (includeUsage) yield { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage(r) };
  }
  const it = chunks();
  return { controller, [Symbol.asyncIterator]: () => it };
}

/**
 * @typedef {GenerateResult & {dropped: number}} TurnResult  `dropped`: older messages left out to
 *   make room (they stay in `messages` no more)
 */

/**
 * A chat: the turns so far, sent whole with each new message (the engine reuses its cache for the
 * unchanged beginning). When the next turn would not fit in the context with room for the answer,
 * the oldest turns are dropped until half the context is free — the system prompt always stays. What happens to a turn that fails:
 * stopped (AbortError), the question and the partial answer are kept (when there is one); the
 * context filled during the answer (`context_full`), both are kept too and older turns make room
 * next time; any other error, the turn is not kept.
 */
export class Conversation {
  /** @type {Hearth} */
  #llm;

  /** @param {Hearth} llm @param {{system?: string|null, messages?: Message[]}} [options] */
  constructor(llm, { system = null, messages = [] } = {}) {
    this.#llm = llm;
    /** @type {string|null} */
    this.system = system;
    /** @type {Message[]} the turns kept, without the system prompt */
    this.messages = checkMessages(messages);
  }

  #all(messages) {
    return this.system ? [{ role: 'system', content: this.system }, ...messages] : messages;
  }

  /**
   * Drops the oldest turns until `next` fits with room for the answer; returns how many messages went.
   * @param {Message} next
   * @param {GenerateOptions} options
   */
  async #fit(next, { maxTokens = 256, enableThinking } = {}) {
    const context = this.#llm.info.context;
    const room = Math.min(maxTokens, Math.floor(context / 4));
    /** Prompt tokens with the messages from `from` on. */
    const count = (from) => this.#llm.countTokens(this.#all([...this.messages.slice(from), next]), { enableThinking });
    let n = await count(0);
    // Once the context is full, drop down to half of it (as llama.cpp's context shift does): the
    // turns after this one then reuse the cache instead of each dropping a turn and re-reading all.
    const target = n + room > context ? Math.floor((context - room) / 2) : context - room;
    let dropped = 0;
    if (n > target && this.messages.length) {
      // Turns start at user messages (a turn: a user message and what answered it). The fewest
      // oldest turns to drop, by binary search over where the kept part starts: a few counts, not
      // one per turn. Everything goes when nothing smaller fits.
      const starts = this.messages.map((m, i) => (i > 0 && m.role === 'user' ? i : -1)).filter((i) => i > 0);
      starts.push(this.messages.length);
      let lo = 0;
      let hi = starts.length - 1;
      let best = hi;
      let bestN = null;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const m = await count(starts[mid]);
        if (m <= target) {
          (best = mid), (bestN = m), (hi = mid - 1);
        } else lo = mid + 1;
      }
      dropped = starts[best];
      n = bestN ?? (await count(dropped));
      this.messages.splice(0, dropped);
    }
    if (n >= context) {
      throw new HearthError('context_full', `the message does not fit in the context: ${n} tokens, the context holds ${context}`);
    }
    return dropped;
  }

  /**
   * Sends a user message; streams the answer. `stream.result` resolves with a TurnResult.
   * @param {string} text
   * @param {GenerateOptions} [options]
   * @returns {TokenStream<TurnResult>}
   */
  send(text, options = {}) {
    return new TokenStream(async (onPiece, signal) => {
      if (typeof text !== 'string') throw new HearthError('invalid_argument', 'the message must be a string');
      const user = { role: 'user', content: wellFormed(text) };
      const dropped = await this.#fit(user, options);
      const inner = this.#llm.chat(this.#all([...this.messages, user]), { ...options, signal });
      let partial = '';
      try {
        for await (const piece of inner) {
          partial += piece;
          onPiece(piece);
        }
        const r = await inner.result;
        this.messages.push(user, { role: 'assistant', content: r.text });
        return { ...r, dropped };
      } catch (e) {
        if (partial && (e?.name === 'AbortError' || e?.type === 'context_full')) {
          this.messages.push(user, { role: 'assistant', content: partial });
        }
        if (e && typeof e === 'object') e.dropped = dropped;
        throw e;
      }
    }, options.signal);
  }

  /** Forgets the turns (the system prompt stays). */
  clear() {
    this.messages = [];
  }
}

export default Hearth;
