// The worker protocol, defined once: what hearth.js (the page side) and worker.js (the engine's
// worker) send each other, the error class both throw, and the load phases. Both import this
// module, and `tsc --checkJs` (./build.sh test) checks each side against these types, so the two
// cannot drift apart.
//
// Messages are structured clones. The page picks the ids (unique per worker); every request gets
// exactly one `result` or `error`, after any number of `progress` (load) or `piece` (chat,
// generate) messages with its id. `abort` has no reply of its own: the aborted call ends with an
// error `{type: 'aborted', name: 'AbortError'}`. A wasm trap leaves the engine unusable: the worker
// answers every open request with `worker_crashed` (or `out_of_memory` when an allocation had just
// failed, `template_error` when a chat template reached its memory cap), posts `fatal` with id 0
// and closes; the page starts a new worker on its next call.

/**
 * What kind of error: the `type` of every HearthError. The engine's own (src/error.rs `kind()`):
 * load_error, tokenizer_error, template_error, invalid_argument, context_full, out_of_memory,
 * aborted, io_error; the worker's: download_error, integrity_error, quota_exceeded,
 * worker_crashed, internal_error (a bug: anything else that was thrown).
 * @typedef {'download_error'|'load_error'|'integrity_error'|'context_full'|'quota_exceeded'|'aborted'
 *   |'invalid_argument'|'tokenizer_error'|'template_error'|'io_error'|'out_of_memory'|'worker_crashed'
 *   |'internal_error'} ErrorType
 */

/**
 * The phases of a load, in order: fetching from the network | checking the bytes an earlier,
 * interrupted download left | reading the weights into the engine (from storage, a local file or
 * the download).
 * @typedef {'download'|'verify'|'load'} Phase
 */
/** @type {readonly Phase[]} */
export const PHASES = Object.freeze(['download', 'verify', 'load']);

/**
 * @typedef {object} Progress
 * @property {number} loaded  bytes so far; never goes backwards within a phase
 * @property {number} total   bytes in all (the file's size)
 * @property {Phase} phase
 */

/**
 * An error from hearth: `type` says what kind; an aborted call has `name === 'AbortError'`.
 * The same class on both sides of the worker; it crosses as a {@link WireError}.
 */
export class HearthError extends Error {
  /** @param {ErrorType} type @param {string} message @param {string} [name] */
  constructor(type, message, name = 'HearthError') {
    super(message);
    this.name = name;
    /** @type {ErrorType} */
    this.type = type;
  }
}

/** The error every aborted call ends with. */
export const abortError = () => new HearthError('aborted', 'the operation was aborted', 'AbortError');

/**
 * An error as it crosses the worker boundary.
 * @typedef {{type: ErrorType, name: string, message: string}} WireError
 */

/**
 * Any thrown value as a WireError: HearthErrors as they are; DOM AbortError and QuotaExceededError
 * by their names; an engine error (a plain object with a `type`, from the wasm) keeps its type;
 * anything else is an `internal_error`.
 * @param {any} e
 * @returns {WireError}
 */
export function toWire(e) {
  if (e instanceof HearthError) return { type: e.type, name: e.name, message: e.message };
  if (e?.name === 'AbortError') return { type: 'aborted', name: 'AbortError', message: e.message || 'aborted' };
  if (e?.name === 'QuotaExceededError') return { type: 'quota_exceeded', name: 'QuotaExceededError', message: e.message };
  const type = typeof e?.type === 'string' ? e.type : 'internal_error';
  return { type, name: 'HearthError', message: String(e?.message ?? e) };
}

/** @param {WireError} w @returns {HearthError} */
export const fromWire = (w) => new HearthError(w.type, w.message, w.name);

// ---- requests ------------------------------------------------------------------------------------

/**
 * @typedef {object} LoadArgs
 * @property {string|Blob} source     an absolute URL, or a File/Blob read in place
 * @property {string|string[]} [sha256]  expected hex SHA-256 (a split model's: one per shard, or the first shard's)
 * @property {number} [nCtx]          context length (0 or absent: the model's, capped by the engine)
 * @property {boolean} [store]        keep a downloaded model in OPFS (default true)
 * @property {boolean} threads        whether the threaded build may run
 * @property {number} [nThreads]      threads for the threaded build
 * @property {number} [stallTimeoutMs]
 */

/**
 * The generation options the engine takes (the wasm's options JSON; hearth.js checks them).
 * @typedef {object} EngineOptions
 * @property {number} [maxTokens]
 * @property {number} [temperature]
 * @property {number} [topK]
 * @property {number} [topP]
 * @property {number} [minP]
 * @property {number} [repeatPenalty]
 * @property {number} [repeatLastN]
 * @property {number} [seed]
 * @property {string[]} [stop]
 * @property {boolean} [ignoreEos]
 * @property {boolean} [enableThinking]  the chat template's `enable_thinking` (chats only)
 */

/** @typedef {{role: 'system'|'user'|'assistant'|string, content: string}} Message */

/**
 * @typedef {object} Timings
 * @property {number} [loadMs]       the model's load time (on the first result after a load)
 * @property {number} prefillMs
 * @property {number} prefillTokens  prompt tokens run through the model (the rest came from the cache)
 * @property {number} reusedTokens   prompt tokens reused from the previous turn
 * @property {number} decodeMs
 * @property {number} decodeTokens
 */

/**
 * @typedef {object} GenerateResult
 * @property {string} text
 * @property {number[]} tokens        generated token ids
 * @property {number[]} promptTokens  the prompt's token ids
 * @property {'stop'|'stop_string'|'length'} finishReason
 * @property {Timings} timings
 */

/**
 * The engine's own facts about the model (src/wasm.rs `WasmEngine::info`).
 * @typedef {object} EngineInfo
 * @property {string|null} name       general.name
 * @property {string} architecture    general.architecture
 * @property {string} quantization    the file's weight type, e.g. "Q4_1"
 * @property {{type: string, bytes: number}[]} weightMix  bytes of tensor data by type, largest first
 * @property {number} layers
 * @property {number} embedding       model width
 * @property {number} heads
 * @property {number} kvHeads
 * @property {number} vocab
 * @property {number} contextTrain    the context the model was trained with
 * @property {number} context         tokens this session holds
 * @property {number} weightBytes
 * @property {number} kvBytes         the KV cache's size
 * @property {number} threads         threads the engine computes on
 * @property {boolean} simd           built with wasm simd128
 * @property {boolean} threaded       built with wasm atomics (the threaded build)
 * @property {{form: 'i16'|'i32', i32Ms: number, i16Ms: number}|null} q4kDots  the relaxed-SIMD
 *   Q4_K kernel's two forms as timed on this CPU when an engine of this worker first loaded a model
 *   with Q4_K or Q6_K weights, and the one kept (null without relaxed SIMD or before then)
 * @property {{form: 'i16'|'i32', i32Ms: number, i16Ms: number}|null} q6kDots  likewise for Q6_K
 * @property {{used: boolean, onMs: number, offMs: number}|null} touchReads  the kernels' early
 *   reads of the lines they will need (wasm has no prefetch): one decoded token's pass of this
 *   model timed with and without them when it loaded (the best of two each, one each for a pass
 *   over 150 ms), and whether they were kept (null without wasm SIMD)
 */

/**
 * Which build the worker started, and why.
 * @typedef {object} BuildInfo
 * @property {'simd'|'threads'} build
 * @property {number} threads         threads the engine computes on
 * @property {boolean} relaxedSimd    the build uses WebAssembly relaxed SIMD (its 8-bit dot products)
 * @property {string} reason          why this build runs
 */

/**
 * How this load went.
 * @typedef {object} LoadFacts
 * @property {boolean} crossOriginIsolated  the worker's (and so the page's)
 * @property {'network'|'storage'|'file'} source
 * @property {'opfs'|'memory'} storage  'memory': not stored (storage full, or store: false, or a local file)
 * @property {string|null} url          the model's URL (null for a local file)
 * @property {string|null} fileName     a local file's name (null for a URL)
 * @property {number} sizeBytes         the file's size
 * @property {string} sha256            the file's hex SHA-256 (a split model's: its first shard's)
 * @property {{url: string, size: number, sha256: string}[]|null} shards  a split model's shards, in order (null for one file)
 * @property {number} loadMs
 * @property {number} wasmMemoryBytes   the engine's memory after the load
 * @property {string[]} warnings        what went less well than it could (shown by the page)
 */

/**
 * What `load` answers and `llm.info` is: the engine's facts, the build, and how the model was loaded.
 * @typedef {EngineInfo & BuildInfo & LoadFacts} ModelInfo
 */

/** @typedef {{wasmMemoryBytes: number, cachedTokens: number}} Stats */

/**
 * Each verb: what it takes and what it answers.
 * @typedef {object} Verbs
 * @property {{args: LoadArgs, result: ModelInfo}} load  streams `progress`
 * @property {{args: {messages: Message[], options: EngineOptions}, result: GenerateResult}} chat  streams `piece`
 * @property {{args: {prompt: string, options: EngineOptions}, result: GenerateResult}} generate  raw completion; streams `piece`
 * @property {{args: {text: string, special: boolean}, result: number[]}} tokenize
 * @property {{args: {messages: Message[], options?: EngineOptions}, result: number}} countChat  prompt tokens of a conversation
 * @property {{args: {tokens: number[]}, result: string}} detokenize
 * @property {{args: {}, result: Stats}} stats
 * @property {{args: {}, result: null}} reset  forgets the KV cache
 * @property {{args: {}, result: null}} unload  frees the engine
 */

/** @typedef {keyof Verbs} Verb */

/**
 * A message to the worker.
 * @typedef {{[V in Verb]: {id: number, verb: V, args: Verbs[V]['args']}}[Verb]
 *   | {id: 0, verb: 'abort', args: {target: number}}} Request
 */

/**
 * A message from the worker.
 * @typedef {{id: number, result: any}
 *   | {id: number, error: WireError}
 *   | {id: number, progress: Progress}
 *   | {id: number, piece: string, token: number|null}
 *   | {id: 0, fatal: WireError & {type: 'worker_crashed'|'out_of_memory'|'template_error'}}} Response
 */
