// One benchmark run in this page: load a model in one engine, generate greedily from a raw prompt,
// report timings and the engine's peak wasm memory. tools/bench.mjs opens a fresh page per run
// (same browser profile, so both engines' model stores stay warm) and calls window.benchRun(cfg).
//
// Peak wasm memory: every module worker this page starts gets a small prelude module first (the
// Worker constructor below wraps it) that keeps a reference to each WebAssembly.Memory created or
// exported in that worker. A wasm memory never shrinks, so its size after the run is its peak.
// The page asks for the sizes over a BroadcastChannel. Same mechanism for both engines; it does not
// count JS-side copies (e.g. the bytes read from storage before they are copied into the engine).

const PRELUDE = `
const mems = [];
const NativeMemory = WebAssembly.Memory;
const keep = (m) => { if (m instanceof NativeMemory && !mems.includes(m)) mems.push(m); };
WebAssembly.Memory = new Proxy(NativeMemory, {
  construct(target, args, newTarget) { const m = Reflect.construct(target, args, newTarget); keep(m); return m; },
});
const scan = (inst) => { try { for (const v of Object.values(inst.exports)) keep(v); } catch {} };
for (const name of ['instantiate', 'instantiateStreaming']) {
  const f = WebAssembly[name];
  if (!f) continue;
  WebAssembly[name] = async function (...args) { const r = await f.apply(this, args); scan(r.instance ?? r); return r; };
}
const NativeInstance = WebAssembly.Instance;
WebAssembly.Instance = new Proxy(NativeInstance, {
  construct(target, args, newTarget) { const i = Reflect.construct(target, args, newTarget); scan(i); return i; },
});
const channel = new BroadcastChannel('hearth-bench-memory');
channel.onmessage = ({ data }) => {
  if (data?.ask) channel.postMessage({ ask: data.ask, name: self.name || '', bytes: mems.map((m) => m.buffer.byteLength) });
};
`;
const preludeUrl = URL.createObjectURL(new Blob([PRELUDE], { type: 'text/javascript' }));

const NativeWorker = window.Worker;
window.Worker = class BenchWorker extends NativeWorker {
  constructor(url, options = {}) {
    if (options?.type !== 'module') {
      super(url, options);
      return;
    }
    // Static imports evaluate in order: the prelude runs before the engine's worker module.
    const target = new URL(String(url), location.href).href;
    const shim = `import ${JSON.stringify(preludeUrl)};\nimport ${JSON.stringify(target)};\n`;
    super(URL.createObjectURL(new Blob([shim], { type: 'text/javascript' })), options);
  }
};

/** Sizes of the wasm memories of every instrumented worker of this page (bytes; the largest worker). */
async function wasmMemory(waitMs = 1000) {
  const channel = new BroadcastChannel('hearth-bench-memory');
  const ask = Math.random().toString(36).slice(2);
  const answers = [];
  channel.onmessage = ({ data }) => {
    if (data?.ask === ask) answers.push(data);
  };
  channel.postMessage({ ask });
  await new Promise((r) => setTimeout(r, waitMs));
  channel.close();
  const perWorker = answers.map((a) => a.bytes.reduce((s, b) => s + b, 0));
  return { bytes: perWorker.length ? Math.max(...perWorker) : null, workers: answers };
}

const log = (s) => {
  const el = document.getElementById('log');
  if (el) el.textContent += s + '\n';
};

async function runHearth(cfg) {
  const { Hearth } = await import('../hearth.js');
  const wantThreads = cfg.build === 'threads';
  const t0 = performance.now();
  const llm = await Hearth.load(cfg.modelUrl, { threads: wantThreads, nThreads: cfg.threads, nCtx: cfg.nCtx });
  const loadWallMs = performance.now() - t0;
  const info = llm.info;
  try {
    const r = await llm.generate(cfg.prompt, {
      raw: true,
      maxTokens: cfg.maxTokens,
      temperature: 0,
      repeatPenalty: 1,
      ignoreEos: true,
    });
    const out = {
      engine: 'hearth',
      loadWallMs,
      info: { ...info, warnings: info.warnings },
      build: info.build,
      threads: info.threads ?? (info.build === 'simd' ? 1 : null),
      prefillMs: r.timings.prefillMs,
      prefillTokens: r.timings.prefillTokens,
      promptTokens: r.promptTokens.length,
      decodeMs: r.timings.decodeMs,
      decodeTokens: r.timings.decodeTokens,
      finishReason: r.finishReason,
      engineLoadMs: r.timings.loadMs ?? info.loadMs,
      selfReportedMemoryBytes: info.memoryBytes ?? info.wasmMemoryBytes ?? null,
      tokens: r.tokens,
      text: r.text,
    };
    if (cfg.detail) {
      // Text after each generated token, to compare greedy outputs across engines.
      out.prefixes = [];
      for (let k = 1; k <= r.tokens.length; k++) out.prefixes.push(await llm.detokenize(r.tokens.slice(0, k)));
    }
    out.memory = await wasmMemory();
    await window.benchHold?.(); // tools/bench.mjs reads the renderer's memory while the engine is loaded
    return out;
  } finally {
    await llm.unload();
  }
}

async function runWllama(cfg) {
  const mod = await import('/vendor/wllama/index.js');
  const { Wllama, LoggerWithoutDebug } = mod;
  const t0 = performance.now();
  const wllama = new Wllama(
    { default: '/vendor/wllama/wasm/wllama.wasm' },
    { logger: cfg.verbose ? console : LoggerWithoutDebug, suppressNativeLog: !cfg.verbose },
  );
  await wllama.loadModelFromUrl(new URL(cfg.modelUrl, location.href).href, {
    n_threads: cfg.threads,
    n_ctx: cfg.nCtx,
    n_gpu_layers: 0, // CPU (wasm) only; also skips WebGPU device setup
    n_parallel: 1,
  });
  const loadWallMs = performance.now() - t0;
  try {
    let final = null;
    let text = '';
    let chunks = 0;
    let tFirst = null;
    let tokens = null;
    const tStart = performance.now();
    await wllama.createCompletion({
      prompt: cfg.prompt,
      max_tokens: cfg.maxTokens,
      temperature: 0,
      repeat_penalty: 1,
      ignore_eos: true,
      cache_prompt: false,
      return_tokens: true,
      stream: true,
      onData: (c) => {
        chunks++;
        if (tFirst === null) tFirst = performance.now();
        const piece = c.choices?.[0]?.text ?? '';
        text += piece;
        if (Array.isArray(c.tokens)) (tokens ??= []).push(...c.tokens);
        if (c.timings) final = c;
      },
    });
    const tEnd = performance.now();
    const t = final?.timings ?? {};
    const ctx = wllama.getLoadedContextInfo();
    const memory = await wasmMemory();
    await window.benchHold?.(); // tools/bench.mjs reads the renderer's memory while the engine is loaded
    return {
      engine: 'wllama',
      loadWallMs,
      libllama: typeof Wllama.getLibllamaVersion === 'function' ? Wllama.getLibllamaVersion() : null,
      multithread: wllama.isMultithread(),
      threads: wllama.getNumThreads(),
      build: wllama.isMultithread() ? 'pthreads' : 'single-thread',
      prefillMs: t.prompt_ms ?? null,
      prefillTokens: t.prompt_n ?? null,
      promptTokens: final?.usage?.prompt_tokens ?? t.prompt_n ?? null,
      cachedTokens: t.cache_n ?? null,
      decodeMs: t.predicted_ms ?? null,
      decodeTokens: t.predicted_n ?? null,
      finishReason: final?.choices?.[0]?.finish_reason ?? null,
      wall: { firstChunkMs: tFirst === null ? null : tFirst - tStart, streamMs: tFirst === null ? null : tEnd - tFirst, chunks },
      ctx: { n_ctx: ctx.n_ctx, n_batch: ctx.n_batch, n_ubatch: ctx.n_ubatch },
      tokens,
      text,
      memory,
    };
  } finally {
    await wllama.exit();
  }
}

window.benchRun = async (cfg) => {
  log(`${cfg.engine} ${cfg.build ?? ''} threads=${cfg.threads} ${cfg.modelUrl}`);
  const r = cfg.engine === 'hearth' ? await runHearth(cfg) : await runWllama(cfg);
  r.crossOriginIsolated = self.crossOriginIsolated;
  r.hardwareConcurrency = navigator.hardwareConcurrency;
  r.userAgent = navigator.userAgent;
  log(`  load ${Math.round(r.loadWallMs)} ms, prefill ${r.prefillTokens} tok in ${Math.round(r.prefillMs)} ms, decode ${r.decodeTokens} tok in ${Math.round(r.decodeMs)} ms`);
  return r;
};
// One thread's memory read bandwidth in this browser (bytes/s), from an instance of hearth's plain
// simd128 build of its own on the page's main thread (so the probe's 256 MiB buffer is in no
// engine's memory). tools/bench.mjs calls it once, after every timed run.
window.benchBandwidth = async () => {
  const mod = await import('../pkg/hearth.js');
  await mod.default();
  return mod.readBandwidth(256, () => performance.now());
};

window.benchReady = true;
