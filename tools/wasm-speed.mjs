// Single-threaded wasm speed in node (V8, no browser): prefill and decode tok/s of one model, for
// quick before/after comparisons of the wasm kernels while working on them. The benchmark that
// counts (against wllama, in Chromium) is tools/bench.mjs; this one only compares builds.
//
//   node --experimental-wasm-relaxed-simd tools/wasm-speed.mjs [--pkg www/pkg-relaxed] \
//        [--prompt 64] [--gen 32] [--runs 3] models/FILE.gguf
import { readFileSync, openSync, readSync, fstatSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    pkg: { type: 'string', default: 'www/pkg-relaxed' },
    prompt: { type: 'string', default: '64' },
    gen: { type: 'string', default: '32' },
    runs: { type: 'string', default: '3' },
  },
});
const file = positionals[0] ?? 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const pkg = await import(resolve(opt.pkg, 'hearth.js'));
pkg.initSync({ module: readFileSync(resolve(opt.pkg, 'hearth_bg.wasm')) });

const fd = openSync(file, 'r');
const size = fstatSync(fd).size;
const read = (offset, length) => {
  const buf = new Uint8Array(length);
  readSync(fd, buf, 0, length, offset);
  return buf;
};
const t0 = performance.now();
const engine = new pkg.WasmEngine(read, size, 512, false, undefined);
const info = JSON.parse(engine.info());
console.log(`${info.name} (${info.architecture}) loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s from ${opt.pkg}`);

const nPrompt = Number(opt.prompt), nGen = Number(opt.gen);
const words = 'the quick brown fox jumps over the lazy dog while a small bird sings in the old tree '.repeat(64);
let prompt = words;
// trim the prompt to about nPrompt tokens
const ids = engine.tokenize(prompt, false);
prompt = engine.detokenize(ids.slice(0, nPrompt));
for (let run = 0; run < Number(opt.runs); run++) {
  engine.reset();
  const begun = JSON.parse(engine.beginRaw(prompt, JSON.stringify({ maxTokens: nGen, temperature: 0, ignoreEos: true })));
  const p0 = performance.now();
  while (engine.prefill(512) > 0);
  const p1 = performance.now();
  let n = 0;
  for (;;) {
    const s = JSON.parse(engine.step());
    n++;
    if (s.done) break;
  }
  const p2 = performance.now();
  console.log(`run ${run}: prefill ${begun.prefill} tok ${(begun.prefill / ((p1 - p0) / 1000)).toFixed(1)} tok/s, ` +
    `decode ${n} tok ${(n / ((p2 - p1) / 1000)).toFixed(2)} tok/s`);
}
