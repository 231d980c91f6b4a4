#!/usr/bin/env node
// Native hearth vs native llama.cpp, alternating, on the same GGUF files (issues 9 and 10).
//
//   node tools/bench-native.mjs [--models a.gguf,b.gguf] [--threads 1,2] [--runs 3]
//                               [--prompt-tokens 128] [--gen-tokens 128] [--out target/bench/native.json]
//   LLAMA_BENCH=/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench node tools/bench-native.mjs
//
// ./build.sh bench-native runs it after building (with the 1B model of ./build.sh synth-1b when it is
// there). A benchmark, not a test: nothing is asserted about speed.
//
// - hearth: target/release/hearth bench --model M --threads T --repeat 1 --prompt-tokens P --gen-tokens G
//   --json (its own text prompt; prefill = one batch of P tokens, decode = G single-token steps).
// - llama.cpp (when $LLAMA_BENCH names a llama-bench binary, or one is at the default path of
//   tools/reference/build-llama.sh): llama-bench -m M -t T -p P -n G -d 0,P -r 1 -o json (random
//   prompt tokens; its pp test into an empty cache and its tg test after P tokens of context, as
//   hearth's decode follows its prompt; each after its own warm-up run).
// - Rounds: for each run, for each model, for each thread count, hearth then llama.cpp — so both
//   see the same machine state within a few seconds. Medians over the runs, and hearth ÷ llama.cpp
//   per (model, threads) from those medians. Every process is started under `nice -n 10`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CLI = join(ROOT, 'target/release/hearth');
const DEFAULT_LLAMA_BENCH = '/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench';

const { values: opt } = parseArgs({
  options: {
    models: { type: 'string', default: '' },
    threads: { type: 'string', default: '1,2' },
    runs: { type: 'string', default: '3' },
    'prompt-tokens': { type: 'string', default: '128' },
    'gen-tokens': { type: 'string', default: '128' },
    out: { type: 'string', default: 'target/bench/native.json' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 9).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const say = (s) => process.stderr.write(s + '\n');
const RUNS = Math.max(1, Number(opt.runs) | 0);
const P = Math.max(1, Number(opt['prompt-tokens']) | 0);
const G = Math.max(1, Number(opt['gen-tokens']) | 0);
const THREADS = opt.threads.split(',').map((t) => Number(t) | 0).filter((t) => t > 0);
const defaults = ['models/SmolLM2-135M-Instruct.Q4_1.gguf', 'models/gemma-3-270m-Q4_K_M.gguf', 'models/synth-1b-Q4_K_M.gguf'];
const MODELS = (opt.models ? opt.models.split(',') : defaults.filter((m) => existsSync(join(ROOT, m)))).map((m) => resolve(ROOT, m.trim()));
const LLAMA = process.env.LLAMA_BENCH || (existsSync(DEFAULT_LLAMA_BENCH) ? DEFAULT_LLAMA_BENCH : null);
if (!existsSync(CLI)) {
  say(`bench-native: ${CLI} is missing (cargo build --release)`);
  process.exit(2);
}
for (const m of MODELS) if (!existsSync(m)) (say(`bench-native: no model ${m}`), process.exit(2));

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

function run(cmd, args) {
  const r = spawnSync('nice', ['-n', '10', cmd, ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${basename(cmd)} failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

function hearth(model, t) {
  const out = run(CLI, ['bench', '--model', model, '--threads', String(t), '--repeat', '1', '--prompt-tokens', String(P), '--gen-tokens', String(G), '--json']);
  const j = JSON.parse(out.trim().split('\n').pop());
  return { prefill: j.prefill_tok_s, decode: j.decode_tok_s, kernels: j.kernels };
}

function llama(model, t) {
  // decode after P tokens of context (-d), as hearth's decode follows its P-token prompt
  const out = run(LLAMA, ['-m', model, '-t', String(t), '-p', String(P), '-n', String(G), '-d', `0,${P}`, '-r', '1', '-o', 'json']);
  const rows = JSON.parse(out);
  const pp = rows.find((r) => r.n_prompt > 0 && r.n_gen === 0 && !r.n_depth);
  const tg = rows.find((r) => r.n_gen > 0 && r.n_prompt === 0 && r.n_depth === P);
  return { prefill: pp?.avg_ts, decode: tg?.avg_ts, build: rows[0]?.build_commit };
}

const cpu = cpus()[0]?.model ?? '?';
say(`bench-native: ${MODELS.length} model(s), threads ${THREADS.join(',')}, ${RUNS} run(s), ${P} prompt + ${G} generated tokens; llama.cpp: ${LLAMA ?? 'none (set LLAMA_BENCH)'}`);
const started = new Date();
const load0 = loadavg();
const res = {}; // key model|t -> { hearth: [], llama: [] }
for (let i = 0; i < RUNS; i++) {
  for (const m of MODELS) {
    for (const t of THREADS) {
      const slot = (res[`${m}|${t}`] ??= { model: m, threads: t, hearth: [], llama: [] });
      say(`  run ${i + 1}/${RUNS} ${basename(m)} t${t}: hearth`);
      try {
        slot.hearth.push(hearth(m, t));
      } catch (e) {
        slot.hearthError = String(e.message);
      }
      if (LLAMA) {
        say(`  run ${i + 1}/${RUNS} ${basename(m)} t${t}: llama.cpp`);
        try {
          slot.llama.push(llama(m, t));
        } catch (e) {
          slot.llamaError = String(e.message);
        }
      }
    }
  }
}
const f1 = (x) => (x == null ? '—' : x.toFixed(1));
const f2 = (x) => (x == null ? '—' : x.toFixed(2));
const L = [];
L.push(`## native hearth vs llama.cpp — ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`);
L.push('');
L.push(`- CPU: ${cpu}, ${cpus().length} cores; load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
L.push(`- ${RUNS} alternating run(s) (hearth, llama.cpp per model and thread count), medians; ${P} prompt tokens, ${G} generated; llama.cpp: ${LLAMA ?? 'not run'}`);
L.push('');
L.push('| model | threads | hearth prefill tok/s | llama.cpp prefill tok/s | ratio | hearth decode tok/s | llama.cpp decode tok/s | ratio | hearth kernels |');
L.push('|---|---:|---:|---:|---:|---:|---:|---:|---|');
for (const s of Object.values(res)) {
  const h = { prefill: median(s.hearth.map((r) => r.prefill)), decode: median(s.hearth.map((r) => r.decode)) };
  const l = { prefill: median(s.llama.map((r) => r.prefill)), decode: median(s.llama.map((r) => r.decode)) };
  s.median = { hearth: h, llama: l };
  const ratio = (a, b) => (a != null && b ? a / b : null);
  const note = [s.hearthError && `hearth: ${s.hearthError}`, s.llamaError && `llama.cpp: ${s.llamaError}`].filter(Boolean).join('; ');
  L.push(
    `| ${basename(s.model)} | ${s.threads} | ${f1(h.prefill)} | ${f1(l.prefill)} | ${f2(ratio(h.prefill, l.prefill))} | ${f1(h.decode)} | ${f1(l.decode)} | ${f2(ratio(h.decode, l.decode))} | ${s.hearth[0]?.kernels ?? note} |`,
  );
}
const md = L.join('\n');
console.log(md);
const out = resolve(ROOT, opt.out);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ date: started.toISOString(), cpu, runs: RUNS, promptTokens: P, genTokens: G, llamaBench: LLAMA, results: Object.values(res) }, null, 2));
say(`bench-native: raw results in ${out}`);
