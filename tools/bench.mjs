#!/usr/bin/env node
// hearth vs wllama (llama.cpp in wasm), side by side in one headless Chromium, plus the native CLI.
//
//   node tools/bench.mjs [--runs 3] [--models Q4_0,Q4_1,Q8_0,gemma-3-270m-Q4_K_M.gguf,synth-1b-Q4_K_M.gguf]
//                        [--max-tokens 128] [--n-ctx 1024]
//                        [--configs hearth-simd,hearth-threads-1,wllama-1,hearth-threads-2,wllama-2]
//                        [--no-native] [--out target/bench/latest.json]
//
// ./build.sh bench runs it after building. A benchmark, not a test: nothing is asserted about speed.
// It exits non-zero only when an engine cannot load a model at all (or the setup is broken).
//
// How it works
// - tools/serve.mjs serves www/ and models/ (cross-origin isolated, so SharedArrayBuffer and both
//   engines' threaded builds can run). wllama's files come from tests/browser/node_modules (the
//   exact version pinned in tests/browser/package.json): this script links
//   www/vendor/wllama -> tests/browser/node_modules/@wllama/wllama/esm (git-ignored); the server
//   follows the link. The page is www/bench/ (bench.js does one run; see its header).
// - One Chromium profile for the whole benchmark, one fresh page (and engine worker) per run.
//   Every configuration is first run once per model, untimed (the warm-up): it puts the model in
//   each engine's own store (hearth: its OPFS store; wllama: its cache, also OPFS) and tells which
//   configurations really run here. Then --runs rounds, alternating configurations
//   (A B C D E A B C D E …); medians are reported.
// - Load ms: wall time in the page from the call to the model being ready, with the model already
//   in the engine's store: worker start, wasm compile/instantiate, reading the weights from
//   storage, and building the engine (hearth: Hearth.load, which also checks the stored bytes'
//   SHA-256; wllama: new Wllama + loadModelFromUrl, which includes llama.cpp's warm-up decode).
// - Prefill / decode: one generation of --max-tokens greedy tokens from a fixed ~128-token English
//   prompt, end-of-sequence ignored so both decode exactly --max-tokens. Both engines time their
//   phases themselves: hearth's worker reports prefillMs/decodeMs; wllama (llama-server's
//   completion code) reports timings.prompt_ms / predicted_ms. In both, decode tok/s is generated
//   tokens / decode time, where the first token comes from the prefill's logits (128 tokens = 127
//   forward passes after the prompt). The page's own wall clock (first streamed chunk, stream end)
//   is kept in the JSON as a cross-check for wllama.
// - Peak wasm memory: the size of the engine's WebAssembly.Memory after the run (it never
//   shrinks, so that is its peak), read the same way for both engines (see www/bench/bench.js).
// - wasm size: each engine's .wasm file, raw and gzip -9 (node's zlib).
// - Native: ./target/release/hearth bench --threads N --json --repeat RUNS (its own 128-token
//   prompt, context 257; medians over RUNS), and native llama.cpp where a llama-bench binary is
//   found ($LLAMA_BENCH, else tools/reference/build-llama.sh's default build): llama-bench -p 128
//   -n MAX_TOKENS -d 0,128 -r 1 (prefill into an empty cache, decode after 128 tokens of context,
//   as hearth's runs do) at 1 and 2 threads once per round, between the browser's rounds (the
//   host's speed drifts over minutes), for the "browser ÷ native llama.cpp" table: the median of
//   each round's hearth-threads-T ÷ llama.cpp at T threads.
// - Memory bound: after every timed run, one thread's read bandwidth in the browser
//   (window.benchBandwidth: hearth's readBandwidth over 256 MiB, in an instance of its own on the
//   page's main thread; median of 3 calls, each the best of 3 passes), and natively (hearth bench's
//   figure). A decoded token reads every weight once, so weight bytes ÷ bandwidth bounds decode
//   at one thread; the report gives each engine's decode as a share of that bound.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { renderers } from './procmem.mjs';
import { createHash } from 'node:crypto';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BROWSER_DIR = join(ROOT, 'tests/browser');
const WLLAMA_DIR = join(BROWSER_DIR, 'node_modules/@wllama/wllama');
const VENDOR_LINK = join(ROOT, 'www/vendor/wllama');
const CLI = join(ROOT, 'target/release/hearth');
const BASE_MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const DEFAULT_LLAMA_BENCH = '/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench';
const LLAMA_BENCH = process.env.LLAMA_BENCH || (existsSync(DEFAULT_LLAMA_BENCH) ? DEFAULT_LLAMA_BENCH : null);

/** The same text for every engine: 128 tokens with SmolLM2's tokenizer. */
const PROMPT =
  'The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of salt and wind. ' +
  'Every evening the keeper climbed the narrow spiral stairs, counted the one hundred and twelve steps, and lit ' +
  'the great lamp that warned ships away from the rocks below. Fishermen in the village said the light had never ' +
  'once failed, not even during the storm of the long winter, when the sea rose higher than anyone could remember ' +
  'and the harbor froze solid for three weeks. One morning a young girl arrived with a letter for the keeper, ' +
  'sealed with red wax and addressed in a careful hand. He opened it by the window, and';

const CONFIGS = [
  { id: 'hearth-simd', engine: 'hearth', build: 'simd', threads: 1, label: 'hearth' },
  { id: 'hearth-threads-1', engine: 'hearth', build: 'threads', threads: 1, label: 'hearth' },
  { id: 'wllama-1', engine: 'wllama', threads: 1, label: 'wllama' },
  { id: 'hearth-threads-2', engine: 'hearth', build: 'threads', threads: 2, label: 'hearth' },
  { id: 'wllama-2', engine: 'wllama', threads: 2, label: 'wllama' },
];

class Fatal extends Error {}

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    models: { type: 'string', default: 'Q4_0,Q4_1,Q8_0,gemma-3-270m-Q4_K_M.gguf,synth-1b-Q4_K_M.gguf' },
    'max-tokens': { type: 'string', default: '128' },
    'n-ctx': { type: 'string', default: '1024' },
    configs: { type: 'string', default: CONFIGS.map((c) => c.id).join(',') },
    native: { type: 'boolean', default: true },
    'no-native': { type: 'boolean', default: false },
    out: { type: 'string', default: 'target/bench/latest.json' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 9).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const RUNS = Math.max(1, Number(opt.runs) | 0);
const MAX_TOKENS = Math.max(2, Number(opt['max-tokens']) | 0);
const N_CTX = Number(opt['n-ctx']) | 0;
const NATIVE = opt.native && !opt['no-native'];
const SELECTED = opt.configs.split(',').map((s) => s.trim()).filter(Boolean);
for (const id of SELECTED) {
  if (!CONFIGS.some((c) => c.id === id)) {
    process.stderr.write(`bench: unknown config ${id} (known: ${CONFIGS.map((c) => c.id).join(', ')})\n`);
    process.exit(2);
  }
}
const configs = CONFIGS.filter((c) => SELECTED.includes(c.id));

const say = (s) => process.stderr.write(s + '\n');
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const MiB = (b) => (b == null ? null : b / 2 ** 20);

// ---- setup ------------------------------------------------------------------------------------

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
}

function ensureCli() {
  if (existsSync(CLI)) return;
  say('==> building the CLI (cargo build --release)');
  const r = spawnSync('nice', ['-n', '10', 'cargo', 'build', '--release'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(CLI)) throw new Fatal('cargo build --release failed: the native CLI is needed to make the model copies and for the native rows');
}

/** `Q4_0` → models/SmolLM2-135M-Instruct.Q4_0.gguf (made from the Q4_1 file if missing); `x.gguf` → models/x.gguf. */
function resolveModel(spec) {
  const name = spec.endsWith('.gguf') ? spec.split('/').pop() : `SmolLM2-135M-Instruct.${spec.toUpperCase()}.gguf`;
  const file = join(ROOT, 'models', name);
  if (!existsSync(file)) {
    const m = /^SmolLM2-135M-Instruct\.(Q4_0|Q4_1|Q5_0|Q5_1|Q8_0|F16)\.gguf$/.exec(name);
    const base = join(ROOT, 'models', BASE_MODEL);
    if (!m || !existsSync(base)) throw new Fatal(`model ${file} is missing (models must be under models/ to be served)`);
    ensureCli();
    say(`==> making ${name} from ${BASE_MODEL}`);
    const r = spawnSync('nice', ['-n', '10', CLI, 'quantize', '--model', base, '--type', m[1].toLowerCase(), '--out', file + '.partial'], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (r.status !== 0) throw new Fatal(`hearth quantize failed for ${name}`);
    execFileSync('mv', [file + '.partial', file]);
  }
  return { name, file, url: `/models/${encodeURIComponent(name)}`, label: name.replace(/^SmolLM2-135M-Instruct\./, '').replace(/\.gguf$/, '') };
}

/** wllama's files, served through www/vendor/wllama (a symlink into node_modules). */
function ensureWllama() {
  const pin = JSON.parse(readFileSync(join(BROWSER_DIR, 'package.json'), 'utf8')).devDependencies?.['@wllama/wllama'];
  if (!pin) throw new Fatal('@wllama/wllama is not in tests/browser/package.json');
  if (!existsSync(join(WLLAMA_DIR, 'package.json'))) {
    throw new Fatal(`@wllama/wllama is not installed: run (cd tests/browser && npm install) (or ./build.sh bench)`);
  }
  const version = JSON.parse(readFileSync(join(WLLAMA_DIR, 'package.json'), 'utf8')).version;
  if (version !== pin) throw new Fatal(`installed @wllama/wllama is ${version}, package.json pins ${pin}: run (cd tests/browser && npm install)`);
  const esm = join(WLLAMA_DIR, 'esm');
  for (const f of ['index.js', 'wasm/wllama.wasm']) if (!existsSync(join(esm, f))) throw new Fatal(`@wllama/wllama ${version} has no esm/${f}`);
  const want = relative(dirname(VENDOR_LINK), esm);
  let ok = false;
  try {
    const st = lstatSync(VENDOR_LINK);
    if (st.isSymbolicLink() && readlinkSync(VENDOR_LINK) === want) ok = true;
    else if (st.isSymbolicLink()) rmSync(VENDOR_LINK);
    else throw new Fatal(`${VENDOR_LINK} exists and is not a symlink; remove it (bench.mjs links it to ${esm})`);
  } catch (e) {
    if (e instanceof Fatal) throw e;
  }
  if (!ok) {
    mkdirSync(dirname(VENDOR_LINK), { recursive: true });
    symlinkSync(want, VENDOR_LINK);
  }
  return { version, esm };
}

function fileSize(path) {
  if (!existsSync(path)) return null;
  const buf = readFileSync(path);
  return { path: relative(ROOT, path), raw: buf.length, gzip: gzipSync(buf, { level: 9 }).length };
}

function sizes(wllamaEsm) {
  const js = (paths) => {
    const all = paths.map(fileSize).filter(Boolean);
    return { files: all.map((f) => f.path), raw: all.reduce((s, f) => s + f.raw, 0), gzip: all.reduce((s, f) => s + f.gzip, 0) };
  };
  return {
    'hearth-simd': { wasm: fileSize(join(ROOT, 'www/pkg/hearth_bg.wasm')), js: js(['www/hearth.js', 'www/worker.js', 'www/storage.js', 'www/pkg/hearth.js'].map((p) => join(ROOT, p))) },
    'hearth-relaxed': {
      wasm: fileSize(join(ROOT, 'www/pkg-relaxed/hearth_bg.wasm')),
      js: js(['www/hearth.js', 'www/worker.js', 'www/storage.js', 'www/pkg-relaxed/hearth.js'].map((p) => join(ROOT, p))),
    },
    'hearth-threads': {
      wasm: fileSize(join(ROOT, 'www/pkg-threads/hearth_bg.wasm')),
      js: js(['www/hearth.js', 'www/worker.js', 'www/storage.js', 'www/pkg-threads/hearth.js'].map((p) => join(ROOT, p))),
    },
    wllama: { wasm: fileSize(join(wllamaEsm, 'wasm/wllama.wasm')), js: js([join(wllamaEsm, 'index.js')]) },
  };
}

/** sha256 prefixes and mtimes of the wasm files served, to notice a rebuild in the middle of a run. */
function wasmStamp() {
  const out = {};
  for (const p of ['www/pkg/hearth_bg.wasm', 'www/pkg-relaxed/hearth_bg.wasm', 'www/pkg-threads/hearth_bg.wasm']) {
    const f = join(ROOT, p);
    if (!existsSync(f)) continue;
    out[p] = createHash('sha256').update(readFileSync(f)).digest('hex').slice(0, 16);
  }
  return out;
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  let chromium = null;
  try {
    chromium = sh(process.env.CHROMIUM ?? '/usr/bin/chromium', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {}
  let top = null;
  try {
    top = sh('ps', ['-eo', 'pcpu,comm', '--sort=-pcpu']).split('\n').slice(1, 6).map((l) => l.trim()).filter(Boolean);
  } catch {}
  let rev = null;
  try {
    rev = sh('git', ['rev-parse', '--short', 'HEAD']).trim();
    if (sh('git', ['status', '--porcelain', '--untracked-files=no']).trim()) rev += '+dirty';
  } catch {}
  return { cpu: model, cores: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)), top, chromium, hearthRev: rev };
}

// ---- browser runs -----------------------------------------------------------------------------

/** Why a run's configuration is not the one asked for (null when it is). */
function mismatch(cfg, r) {
  if (!r.crossOriginIsolated) return 'the page is not cross-origin isolated';
  if (cfg.engine === 'hearth') {
    if (r.build !== cfg.build) return `the ${r.build} build ran instead (${r.info?.reason ?? 'no reason given'})`;
    if (r.threads !== cfg.threads) return `asked ${cfg.threads} thread(s), the engine ran ${r.threads ?? 'an unreported number of'} (nThreads not supported yet?)`;
  } else {
    if (r.threads !== cfg.threads) return `asked ${cfg.threads} thread(s), wllama ran ${r.threads}`;
    if (cfg.threads > 1 && !r.multithread) return 'wllama did not start its multi-thread mode';
  }
  return null;
}

async function main() {
  const helpers = await import('../tests/browser/helpers.mjs').catch((e) => {
    throw new Fatal(`cannot load tests/browser/helpers.mjs / playwright-core (${e.message}): run (cd tests/browser && npm install)`);
  });
  const wl = ensureWllama();
  if (NATIVE) ensureCli();
  const models = opt.models.split(',').map((s) => s.trim()).filter(Boolean).map(resolveModel);
  if (!existsSync(join(ROOT, 'www/pkg/hearth_bg.wasm'))) throw new Fatal('www/pkg/hearth_bg.wasm is missing: build the wasm module first (./build.sh)');

  const started = new Date();
  const stampStart = wasmStamp();
  const env = machine();
  say(`==> bench: ${models.map((m) => m.label).join(', ')}; configs ${configs.map((c) => c.id).join(' ')}; ${RUNS} runs; ${MAX_TOKENS} tokens; load average ${env.loadavg.join(' ')}`);

  // What else the machine is doing: the 1-minute load average every 5 s, and the busiest processes.
  const loadSamples = [];
  const busy = new Map();
  const sampler = setInterval(() => {
    loadSamples.push(loadavg()[0]);
    try {
      for (const l of sh('ps', ['-eo', 'pcpu,comm', '--sort=-pcpu', '--no-headers']).split('\n').slice(0, 4)) {
        const m = /^\s*([\d.]+)\s+(.*)$/.exec(l);
        if (m && Number(m[1]) >= 20) busy.set(m[2], (busy.get(m[2]) ?? 0) + 1);
      }
    } catch {}
  }, 5000);
  sampler.unref();
  const server = await helpers.startServer();
  const b = await helpers.launch();
  const results = { models: {}, warmup: {} };
  let browserVersion = null;
  let userAgent = null;
  let libllama = null;
  const usedPids = new Set();
  const runOnce = async (cfg, model, { maxTokens = MAX_TOKENS, detail = false, verbose = false } = {}) => {
    const page = await b.context.newPage();
    const crashed = new Promise((_, fail) => page.on('crash', () => fail(new Error('the page crashed'))));
    const before = b.requests.filter((u) => u.includes('/models/')).length;
    // The page calls benchHold() after generating, before it unloads the engine: then the page's
    // renderer (its workers live in it too) is the one holding the most memory, and its peak RSS
    // is this run's, unless an earlier run already used that process.
    let rendererSeen = null;
    await page.exposeFunction('benchHold', () => {
      const procs = renderers(b.profile).sort((x, y) => y.rss - x.rss);
      if (!procs.length) return;
      const p = procs[0];
      const reused = usedPids.has(p.pid);
      rendererSeen = { pid: p.pid, rssBytes: p.rss, peakRssBytes: reused ? null : p.hwm, reused };
      usedPids.add(p.pid);
    });
    try {
      await page.goto(server.isolated + 'bench/');
      await page.waitForFunction(() => window.benchReady === true);
      const run = page.evaluate((c) => window.benchRun(c), {
        engine: cfg.engine,
        build: cfg.build,
        threads: cfg.threads,
        modelUrl: model.url,
        prompt: PROMPT,
        maxTokens,
        nCtx: N_CTX,
        detail,
        verbose,
      });
      const r = await Promise.race([run, crashed]);
      if (rendererSeen) r.renderer = rendererSeen;
      r.modelFetches = b.requests.filter((u) => u.includes('/models/')).length - before;
      return r;
    } finally {
      await page.close().catch(() => {});
    }
  };

  try {
    browserVersion = b.context.browser()?.version() ?? null;
    for (const model of models) {
      const per = (results.models[model.label] = { file: model.name, sizeBytes: readFileSync(model.file).length, configs: {} });
      // Warm-up: stores the model for each engine, compiles, and finds what really runs here.
      for (const cfg of configs) {
        const slot = (per.configs[cfg.id] = { ...cfg, runs: [], na: null });
        say(`  ${model.label} warm-up ${cfg.id}`);
        try {
          const r = await runOnce(cfg, model, { maxTokens: 8, verbose: cfg.engine === 'wllama' });
          userAgent ??= r.userAgent;
          if (r.libllama) libllama = r.libllama;
          slot.warmup = { build: r.build, threads: r.threads, loadWallMs: r.loadWallMs, reason: r.info?.reason, source: r.info?.source, modelFetches: r.modelFetches };
          slot.na = mismatch(cfg, r);
        } catch (e) {
          slot.na = `failed: ${String(e?.message ?? e).split('\n')[0]}`;
          slot.error = String(e?.stack ?? e);
        }
        if (slot.na) say(`    n/a: ${slot.na}`);
      }
      for (const engine of ['hearth', 'wllama']) {
        const mine = configs.filter((c) => c.engine === engine);
        if (mine.length && mine.every((c) => per.configs[c.id].error)) {
          const errs = mine.map((c) => `${c.id}: ${per.configs[c.id].na}`).join('\n  ');
          throw new Fatal(`${engine} cannot load ${model.name} at all:\n  ${errs}\n--- browser console (last lines) ---\n${b.logs.slice(-30).join('\n')}`);
        }
      }
      // Measured rounds, configurations alternating.
      const live = configs.filter((c) => !per.configs[c.id].na);
      /** @type {Record<number, any>[]} */
      const llamaRounds = [];
      for (let i = 0; i < RUNS; i++) {
        for (const cfg of live) {
          const slot = per.configs[cfg.id];
          say(`  ${model.label} run ${i + 1}/${RUNS} ${cfg.id}`);
          let r;
          try {
            r = await runOnce(cfg, model, { detail: i === 0 && cfg.id === 'hearth-simd' });
          } catch (e) {
            throw new Fatal(`${cfg.id} on ${model.name} failed in run ${i + 1} after a good warm-up: ${e?.message ?? e}\n${b.logs.slice(-30).join('\n')}`);
          }
          const bad = mismatch(cfg, r);
          if (bad) slot.na ??= `run ${i + 1}: ${bad}`;
          slot.runs.push(r);
        }
        // Native llama.cpp once per round, between the browser's runs: the host's speed drifts
        // over minutes, and a ratio of runs far apart in time would measure the drift.
        if (NATIVE && LLAMA_BENCH) llamaRounds.push(llamaNative(model, i + 1));
      }
      for (const cfg of configs) summarize(per.configs[cfg.id]);
      per.agreement = agreement(per.configs);
      if (NATIVE) per.native = native(model);
      if (NATIVE && LLAMA_BENCH) per.llama = llamaSummary(llamaRounds, per.configs);
    }
    say('  memory read bandwidth, one thread, in the browser');
    const page = await b.context.newPage();
    try {
      await page.goto(server.isolated + 'bench/');
      await page.waitForFunction(() => window.benchReady === true);
      const samples = [];
      for (let i = 0; i < 3; i++) samples.push(await page.evaluate(() => window.benchBandwidth()));
      results.bandwidth = { browserBytesS: median(samples), samples };
    } catch (e) {
      results.bandwidth = { error: String(e?.message ?? e).split('\n')[0] };
    } finally {
      await page.close().catch(() => {});
    }
  } finally {
    clearInterval(sampler);
    await b.close();
    await server.stop();
  }

  const report = {
    date: started.toISOString(),
    finished: new Date().toISOString(),
    machine: {
      ...env,
      loadavgEnd: loadavg().map((x) => +x.toFixed(2)),
      load1During: loadSamples.length ? { min: +Math.min(...loadSamples).toFixed(2), median: +median(loadSamples).toFixed(2), max: +Math.max(...loadSamples).toFixed(2) } : null,
      // process name -> how many 5 s samples saw it among the busiest (>= 20% of a core)
      busyProcesses: Object.fromEntries([...busy].sort((a, b) => b[1] - a[1])),
      samples: loadSamples.length,
    },
    browser: { chromium: env.chromium, playwrightVersion: browserVersion, userAgent },
    wllama: { version: wl.version, libllama },
    settings: { runs: RUNS, maxTokens: MAX_TOKENS, nCtx: N_CTX, prompt: PROMPT, configs: configs.map((c) => c.id) },
    sizes: sizes(wl.esm),
    hearthWasm: { atStart: stampStart, atEnd: wasmStamp() },
    ...results,
  };
  const out = resolve(ROOT, opt.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(markdown(report));
  say(`==> raw results: ${relative(ROOT, out)}`);
}

function summarize(slot) {
  const runs = slot.runs;
  const notes = [];
  if (runs.length) {
    const dt = [...new Set(runs.map((r) => r.decodeTokens))];
    if (dt.some((n) => n !== MAX_TOKENS)) notes.push(`decoded ${dt.join('/')} tokens, not ${MAX_TOKENS} (ignoreEos not honoured?)`);
    if (runs.some((r) => r.modelFetches > 0)) notes.push('the model was fetched from the server during a measured run');
    if (slot.engine === 'hearth' && runs.some((r) => r.info?.source !== 'storage')) notes.push(`loaded from ${[...new Set(runs.map((r) => r.info?.source))].join('/')}, not storage`);
    if (runs.some((r) => r.prefillTokens !== r.promptTokens)) notes.push('part of the prompt came from a cache');
  }
  slot.notes = notes;
  // hearth's single-thread build is the relaxed-SIMD one (www/pkg-relaxed/) where the browser has it
  slot.relaxedSimd = slot.engine === 'hearth' && runs.some((r) => r.info?.relaxedSimd);
  slot.median = runs.length
    ? {
        loadMs: median(runs.map((r) => r.loadWallMs)),
        prefillTokS: median(runs.map((r) => (r.prefillTokens / r.prefillMs) * 1000)),
        decodeTokS: median(runs.map((r) => (r.decodeTokens / r.decodeMs) * 1000)),
        promptTokens: median(runs.map((r) => r.promptTokens)),
        decodeTokens: median(runs.map((r) => r.decodeTokens)),
        peakWasmBytes: Math.max(...runs.map((r) => r.memory?.bytes ?? 0)) || null,
        peakRendererBytes: median(runs.map((r) => r.renderer?.peakRssBytes)),
        wallDecodeTokS: slot.engine === 'wllama' ? median(runs.map((r) => ((r.wall.chunks - 1) / r.wall.streamMs) * 1000)) : null,
      }
    : null;
  for (const r of runs) {
    // keep the JSON readable: the prefix list is only needed for the agreement
    r.prefixCount = r.prefixes?.length;
  }
}

/** How many of the first generated tokens agree with hearth-simd's (by token id for hearth, by text for wllama). */
function agreement(slots) {
  const ref = slots['hearth-simd']?.runs?.[0];
  if (!ref?.prefixes) return null;
  const out = {};
  for (const [id, slot] of Object.entries(slots)) {
    if (id === 'hearth-simd' || !slot.runs.length) continue;
    const r = slot.runs[0];
    let n = 0;
    if (slot.engine === 'hearth') {
      while (n < ref.tokens.length && n < r.tokens.length && ref.tokens[n] === r.tokens[n]) n++;
      out[id] = { agree: n, of: Math.min(ref.tokens.length, r.tokens.length), by: 'token ids' };
    } else if (Array.isArray(r.tokens) && r.tokens.length) {
      while (n < ref.tokens.length && n < r.tokens.length && ref.tokens[n] === r.tokens[n]) n++;
      out[id] = { agree: n, of: Math.min(ref.tokens.length, r.tokens.length), by: 'token ids' };
    } else {
      // wllama's streamed text: hearth's text after token k must be a prefix of it
      while (n < ref.prefixes.length && r.text.startsWith(ref.prefixes[n])) n++;
      out[id] = { agree: n, of: ref.prefixes.length, by: "text (hearth's tokenization)" };
    }
    if (n < ref.tokens.length) {
      out[id].hearth = ref.text.slice(0, 160);
      out[id].other = r.text.slice(0, 160);
    }
  }
  delete ref.prefixes;
  return out;
}

function native(model) {
  const rows = {};
  for (const t of [1, 2]) {
    say(`  ${model.label} native --threads ${t}`);
    const r = spawnSync(CLI, ['bench', '--model', model.file, '--threads', String(t), '--repeat', String(RUNS), '--prompt-tokens', '128', '--gen-tokens', String(MAX_TOKENS), '--json'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    if (r.status !== 0) {
      rows[t] = { error: (r.stderr || '').trim().split('\n').pop() };
      continue;
    }
    rows[t] = JSON.parse(r.stdout.trim().split('\n').pop());
  }
  return rows;
}

/** One round of native llama.cpp (llama-bench, one repetition) on the model at 1 and 2 threads: prefill/decode tok/s. */
function llamaNative(model, round) {
  const rows = {};
  for (const t of [1, 2]) {
    say(`  ${model.label} run ${round}/${RUNS} llama.cpp native --threads ${t}`);
    // prefill: 128 tokens into an empty cache; decode: MAX_TOKENS tokens after 128 (-d), as
    // hearth's runs decode after their 128-token prompt (attention grows with the position)
    const r = spawnSync(LLAMA_BENCH, ['-m', model.file, '-t', String(t), '-p', '128', '-n', String(MAX_TOKENS), '-d', '0,128', '-r', '1', '-o', 'json'], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) {
      rows[t] = { error: (r.stderr || '').trim().split('\n').pop() };
      continue;
    }
    try {
      const out = JSON.parse(r.stdout);
      const pp = out.find((x) => x.n_prompt > 0 && x.n_gen === 0 && !x.n_depth);
      const tg = out.find((x) => x.n_gen > 0 && x.n_prompt === 0 && x.n_depth === 128);
      rows[t] = { threads: t, prefill_tok_s: pp?.avg_ts ?? null, decode_tok_s: tg?.avg_ts ?? null, build: out[0]?.build_commit ?? null };
    } catch (e) {
      rows[t] = { error: `unreadable llama-bench output: ${e.message}` };
    }
  }
  return rows;
}

/**
 * llama.cpp's medians over the rounds, and hearth's browser speed ÷ llama.cpp's as the median of
 * the ratios within each round (hearth-threads-T's run of that round ÷ llama.cpp at T threads).
 */
function llamaSummary(rounds, configs) {
  const rows = {};
  for (const t of [1, 2]) {
    const ok = rounds.map((r) => r[t]).filter((n) => n && !n.error);
    if (!ok.length) {
      rows[t] = { error: rounds.map((r) => r[t]?.error).find(Boolean) ?? 'no run' };
      continue;
    }
    const H = configs[`hearth-threads-${t}`];
    const hearth = (i, key) => {
      const run = H && !H.na ? H.runs[i] : null;
      if (!run) return null;
      return key === 'prefill' ? (run.prefillTokens / run.prefillMs) * 1000 : (run.decodeTokens / run.decodeMs) * 1000;
    };
    const ratios = (key, field) =>
      rounds.flatMap((r, i) => (r[t] && !r[t].error && r[t][field] && hearth(i, key) ? [hearth(i, key) / r[t][field]] : []));
    const pre = ratios('prefill', 'prefill_tok_s');
    const dec = ratios('decode', 'decode_tok_s');
    rows[t] = {
      threads: t,
      rounds: ok.length,
      prefill_tok_s: median(ok.map((n) => n.prefill_tok_s)),
      decode_tok_s: median(ok.map((n) => n.decode_tok_s)),
      build: ok[0].build,
      browserPrefillRatio: pre.length ? median(pre) : null,
      browserDecodeRatio: dec.length ? median(dec) : null,
      browserDecodeRatios: dec,
    };
  }
  return rows;
}

// ---- report -----------------------------------------------------------------------------------

const f0 = (x) => (x == null ? '—' : Math.round(x).toString());
const f1 = (x) => (x == null ? '—' : x.toFixed(1));
const f2 = (x) => (x == null ? '—' : x.toFixed(2));

function markdown(rep) {
  const L = [];
  const wasmCell = (s) => (s?.wasm ? `${f2(MiB(s.wasm.raw))} / ${f2(MiB(s.wasm.gzip))}` : '—');
  L.push(`## hearth vs wllama — ${rep.date.slice(0, 16).replace('T', ' ')} UTC`);
  L.push('');
  L.push(`- CPU: ${rep.machine.cpu}, ${rep.machine.cores} cores; load average at start ${rep.machine.loadavg.join(' ')}, at end ${rep.machine.loadavgEnd.join(' ')}`);
  const d = rep.machine.load1During;
  if (d) {
    const others = Object.entries(rep.machine.busyProcesses)
      .filter(([name]) => !/chrom|node|hearth/.test(name))
      .map(([name, n]) => `${name} in ${n}/${rep.machine.samples}`);
    L.push(`- 1-min load average during the run: ${d.min}–${d.max} (median ${d.median}); other busy processes (5 s samples): ${others.join(', ') || 'none'}`);
  }
  L.push(`- Browser: ${rep.browser.chromium ?? '?'} (headless${rep.browser.playwrightVersion ? `, reports ${rep.browser.playwrightVersion}` : ''})`);
  if (JSON.stringify(rep.hearthWasm.atStart) !== JSON.stringify(rep.hearthWasm.atEnd)) {
    L.push(`- **WARNING: hearth's wasm files changed during the run** (rebuilt?): rows may mix builds`);
  }
  L.push(`- hearth ${rep.machine.hearthRev ?? ''}; wllama ${rep.wllama.version} (llama.cpp ${rep.wllama.libllama ?? '?'})`);
  L.push(`- ${rep.settings.runs} runs per configuration, alternating, medians; the same 128-token English prompt (token counts as each engine saw it below), ${rep.settings.maxTokens} greedy tokens (EOS ignored), context ${rep.settings.nCtx}`);
  L.push('');
  L.push('| model | engine | build | threads | load ms | prompt tok | prefill tok/s | decode tok/s | peak wasm MiB | peak tab RSS MiB | wasm MiB raw / gzip | notes |');
  L.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const [label, per] of Object.entries(rep.models)) {
    for (const slot of Object.values(per.configs)) {
      const sizeKey = slot.engine === 'wllama' ? 'wllama' : slot.build === 'simd' && slot.relaxedSimd ? 'hearth-relaxed' : `hearth-${slot.build}`;
      const build =
        slot.engine === 'wllama' ? `wasm (${slot.threads > 1 ? 'pthreads' : 'no pthreads'})` : `${slot.build}${slot.relaxedSimd ? ' (relaxed)' : ''}`;
      const m = slot.median;
      if (slot.na || !m) {
        L.push(`| ${label} | ${slot.label} | ${build} | ${slot.threads} | n/a | n/a | n/a | n/a | n/a | n/a | ${wasmCell(rep.sizes[sizeKey])} | n/a (${slot.na ?? 'not run'}) |`);
        continue;
      }
      L.push(
        `| ${label} | ${slot.label} | ${build} | ${slot.threads} | ${f0(m.loadMs)} | ${f0(m.promptTokens)} | ${f1(m.prefillTokS)} | ${f1(m.decodeTokS)} | ${f1(MiB(m.peakWasmBytes))} | ${f0(MiB(m.peakRendererBytes))} | ${wasmCell(rep.sizes[sizeKey])} | ${slot.notes.join('; ')} |`,
      );
    }
    for (const [t, n] of Object.entries(per.native ?? {})) {
      if (n.error) L.push(`| ${label} | hearth native | ${'cli'} | ${t} | n/a | n/a | n/a | n/a | — | — | — | n/a (${n.error}) |`);
      else L.push(`| ${label} | hearth native | cli (${n.kernels}) | ${n.threads} | ${f0(n.load_ms)} | ${n.prompt_tokens} | ${f1(n.prefill_tok_s)} | ${f1(n.decode_tok_s)} | — | — | — | own prompt, context 257 |`);
    }
  }
  L.push('');
  L.push('### hearth ÷ wllama at equal threads (tok/s: > 1 means hearth is faster; load ms and memory: < 1 means hearth is lower)');
  L.push('');
  L.push('| model | hearth | vs wllama | load ms | prefill tok/s | decode tok/s | peak wasm memory |');
  L.push('|---|---|---|---:|---:|---:|---:|');
  const pairs = [
    ['hearth-simd', 'wllama-1'],
    ['hearth-threads-1', 'wllama-1'],
    ['hearth-threads-2', 'wllama-2'],
  ];
  for (const [label, per] of Object.entries(rep.models)) {
    for (const [h, w] of pairs) {
      const H = per.configs[h];
      const W = per.configs[w];
      if (!H || !W) continue;
      const name = (s) => (s.engine === 'wllama' ? `${s.threads} thread${s.threads > 1 ? 's' : ''}` : `${s.build}, ${s.threads} thread${s.threads > 1 ? 's' : ''}`);
      if (H.na || W.na || !H.median || !W.median) {
        L.push(`| ${label} | ${name(H)} | ${name(W)} | n/a | n/a | n/a | n/a |`);
        continue;
      }
      const r = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
      L.push(
        `| ${label} | ${name(H)} | ${name(W)} | ${r(H.median.loadMs, W.median.loadMs)} | ${r(H.median.prefillTokS, W.median.prefillTokS)} | ${r(H.median.decodeTokS, W.median.decodeTokS)} | ${r(H.median.peakWasmBytes, W.median.peakWasmBytes)} |`,
      );
    }
  }
  L.push('');
  const hasLlama = Object.values(rep.models).some((per) => per.llama);
  if (hasLlama) {
    L.push('### hearth in the browser ÷ llama.cpp native at equal threads (llama-bench, same machine, same run)');
    L.push('');
    L.push('llama-bench runs once per round between the browser runs; a ratio is the median of the ratios within each round. llama.cpp decodes after 128 tokens of context (-d 128), as hearth does after its prompt.');
    L.push('');
    L.push('| model | threads | llama.cpp prefill tok/s | llama.cpp decode tok/s | browser prefill ÷ native | browser decode ÷ native |');
    L.push('|---|---:|---:|---:|---:|---:|');
    for (const [label, per] of Object.entries(rep.models)) {
      for (const [t, n] of Object.entries(per.llama ?? {})) {
        if (n.error) {
          L.push(`| ${label} | ${t} | n/a | n/a | n/a (${n.error}) | — |`);
          continue;
        }
        const x = (v) => (v ? `${v.toFixed(2)}×` : '—');
        L.push(`| ${label} | ${t} | ${f1(n.prefill_tok_s)} | ${f1(n.decode_tok_s)} | ${x(n.browserPrefillRatio)} | ${x(n.browserDecodeRatio)} |`);
      }
    }
    L.push('');
  }
  const bw = rep.bandwidth?.browserBytesS;
  if (bw) {
    L.push(`### Decode against the memory's bound (one thread reads ${(bw / 1e9).toFixed(1)} GB/s in the browser)`);
    L.push('');
    L.push('A decoded token reads every weight once: weight bytes ÷ that bandwidth is the least time a token can take at one thread.');
    L.push('');
    L.push('| model | weights MiB | bound tok/s | hearth 1 thread | share of bound | wllama 1 thread | share of bound |');
    L.push('|---|---:|---:|---:|---:|---:|---:|');
    for (const [label, per] of Object.entries(rep.models)) {
      const hs = per.configs['hearth-threads-1'] ?? per.configs['hearth-simd'];
      const ws = per.configs['wllama-1'];
      const weights = hs?.runs?.[0]?.info?.weightBytes ?? per.sizeBytes;
      const bound = bw / weights;
      const h = hs && !hs.na ? hs.median?.decodeTokS : null;
      const w = ws && !ws.na ? ws.median?.decodeTokS : null;
      const pc = (x) => (x ? `${Math.round((100 * x) / bound)}%` : '—');
      L.push(`| ${label} | ${f1(MiB(weights))} | ${f1(bound)} | ${f1(h)} | ${pc(h)} | ${f1(w)} | ${pc(w)} |`);
    }
    const nat = Object.values(rep.models).flatMap((per) => Object.values(per.native ?? {})).find((n) => n.read_bandwidth_bytes_s);
    if (nat) L.push('', `Natively (hearth bench, same machine) one thread reads ${(nat.read_bandwidth_bytes_s / 1e9).toFixed(1)} GB/s.`);
    L.push('');
  } else if (rep.bandwidth?.error) {
    L.push(`(memory bandwidth probe failed: ${rep.bandwidth.error})`, '');
  }
  L.push('### Greedy outputs (informative): first generated tokens that agree with hearth simd');
  L.push('');
  for (const [label, per] of Object.entries(rep.models)) {
    if (!per.agreement) {
      L.push(`- ${label}: not compared (no hearth simd run)`);
      continue;
    }
    const parts = Object.entries(per.agreement).map(([id, a]) => `${id} ${a.agree}/${a.of}${a.by.startsWith('text') ? ' (by text)' : ''}`);
    L.push(`- ${label}: ${parts.join(', ') || '—'}`);
  }
  L.push('');
  L.push(
    "Load: page wall time to a ready model, weights already in the engine's browser store (hearth: Hearth.load incl. SHA-256 check of the stored copy; " +
      'wllama: new Wllama + loadModelFromUrl from its cache, incl. llama.cpp warm-up). Prefill/decode: timed by each engine (hearth worker timings; ' +
      "llama.cpp's prompt_ms/predicted_ms). Peak wasm memory: the engine's WebAssembly.Memory size after the run; " +
      "peak tab RSS: the page's renderer process's peak resident memory (VmHWM; it holds the page and the engine's workers; median). gzip at level 9.",
  );
  return L.join('\n');
}

main().catch((e) => {
  say(`\nbench: FAILED: ${e instanceof Fatal ? e.message : e?.stack ?? e}`);
  process.exit(1);
});
