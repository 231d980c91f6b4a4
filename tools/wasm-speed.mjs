// Single-threaded wasm speed of one model: prefill and decode tok/s, for quick before/after
// comparisons of the wasm kernels while working on them. The benchmark that counts (against
// wllama, in Chromium) is tools/bench.mjs; this one only compares builds.
//
//   node --experimental-wasm-relaxed-simd tools/wasm-speed.mjs [--pkg www/pkg-relaxed] \
//        [--prompt 64] [--gen 32] [--runs 3] models/FILE.gguf
//   node tools/wasm-speed.mjs --browser --pkg www/pkg-relaxed --pkg www/pkg-b … models/FILE.gguf
//
// In node, V8 is older than Chromium's (node 20 lowers relaxed SIMD's dot product to five
// instructions, Chromium 156 to one VNNI instruction): for kernel work, measure with --browser,
// which runs the same loop in headless Chromium (the test server's isolated origin, one page),
// each --pkg (a wasm-bindgen --target web directory under www/) in turn, round after round
// (every other round in reverse order), so the builds alternate under the same machine noise, and
// reports each build's medians and its median ratio to the first build's run in the same round.
// `--chromium-arg=--js-flags=--perf-prof,--perf-prof-annotate-wasm` under `perf record` shows the
// kernels' machine code (docs/bench.md).
import { readFileSync, openSync, readSync, fstatSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { relative, resolve } from 'node:path';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    pkg: { type: 'string', multiple: true },
    prompt: { type: 'string', default: '64' },
    gen: { type: 'string', default: '32' },
    runs: { type: 'string', default: '3' },
    browser: { type: 'boolean', default: false },
    'chromium-arg': { type: 'string', multiple: true },
  },
});
const file = positionals[0] ?? 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const pkgs = opt.pkg ?? ['www/pkg-relaxed'];
const nPrompt = Number(opt.prompt), nGen = Number(opt.gen), runs = Number(opt.runs);

/**
 * Loads the model into `pkg`'s engine and times `runs` prefill + decode rounds; the same code runs
 * in node and, serialized, in the page.
 */
async function measure(pkg, read, size, nPrompt, nGen, runs, log) {
  const t0 = performance.now();
  const engine = new pkg.WasmEngine(read, size, 512, false, undefined);
  const info = JSON.parse(engine.info());
  log(`${info.name} (${info.architecture}) loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  for (const k of ['q4kDots', 'q6kDots']) {
    const f = info[k];
    if (f) log(`${k}: ${f.form} (i32 ${f.i32Ms.toFixed(5)} ms, i16 ${f.i16Ms.toFixed(5)} ms)`);
  }
  const t = info.touchReads;
  if (t) log(`touch reads ${t.used ? 'kept' : 'off'}: a pass ${t.onMs.toFixed(1)} ms with them, ${t.offMs.toFixed(1)} ms without`);
  const words = 'the quick brown fox jumps over the lazy dog while a small bird sings in the old tree '.repeat(64);
  // trim the prompt to about nPrompt tokens
  const prompt = engine.detokenize(engine.tokenize(words, false).slice(0, nPrompt));
  const out = [];
  for (let run = 0; run < runs; run++) {
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
    out.push({ prefill: begun.prefill / ((p1 - p0) / 1000), decode: n / ((p2 - p1) / 1000) });
    log(`run ${run}: prefill ${begun.prefill} tok ${out.at(-1).prefill.toFixed(1)} tok/s, decode ${n} tok ${out.at(-1).decode.toFixed(2)} tok/s`);
  }
  engine.free();
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (!opt.browser) {
  const fd = openSync(file, 'r');
  const size = fstatSync(fd).size;
  const read = (offset, length) => {
    const buf = new Uint8Array(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  };
  for (const dir of pkgs) {
    const pkg = await import(resolve(dir, 'hearth.js'));
    pkg.initSync({ module: readFileSync(resolve(dir, 'hearth_bg.wasm')) });
    console.log(dir);
    await measure(pkg, read, size, nPrompt, nGen, runs, console.log);
  }
} else {
  const { blankPage, ROOT } = await import('../tests/browser/helpers.mjs');
  const urlOf = (p, top) => {
    const rel = relative(resolve(ROOT, top), resolve(p));
    if (rel.startsWith('..')) throw new Error(`${p} is not under ${top}/ (the test server serves only www/ and models/)`);
    return '/' + (top === 'models' ? 'models/' : '') + rel.split('\\').join('/');
  };
  const modelUrl = urlOf(file, 'models');
  const s = await blankPage({}, { args: opt['chromium-arg'] ?? [] });
  const results = Object.fromEntries(pkgs.map((p) => [p, []]));
  try {
    await s.page.evaluate(async (url) => {
      globalThis.__model = new Uint8Array(await (await fetch(url)).arrayBuffer());
    }, modelUrl);
    // one run per build per round: the builds alternate, every other round in reverse order (A B
    // B A …), so a build's place in the round and a drift of the host's speed weigh on every
    // build alike
    for (let r = 0; r < runs; r++) {
      for (const dir of r % 2 ? [...pkgs].reverse() : pkgs) {
        const lines = await s.page.evaluate(
          async ([src, pkgUrl, nPrompt, nGen]) => {
            const measure = eval(`(${src})`);
            const pkg = await import(pkgUrl + '/hearth.js?' + encodeURIComponent(pkgUrl));
            await pkg.default();
            const buf = globalThis.__model;
            const lines = [];
            const out = await measure(pkg, (o, l) => buf.subarray(o, o + l), buf.length, nPrompt, nGen, 1, (l) => lines.push(l));
            return { lines, out };
          },
          [measure.toString(), urlOf(dir, 'www'), nPrompt, nGen],
        );
        for (const l of lines.lines.slice(1)) console.log(`${dir}: ${l}`);
        results[dir].push(...lines.out);
      }
    }
  } finally {
    await s.close();
  }
  console.log(`medians (and of each round's ratio to ${pkgs[0]}):`);
  const base = results[pkgs[0]];
  for (const dir of pkgs) {
    const rs = results[dir];
    const ratio = (k) => median(rs.map((x, i) => x[k] / base[i][k])).toFixed(3);
    console.log(
      `  ${dir}: prefill ${median(rs.map((x) => x.prefill)).toFixed(1)} tok/s (${ratio('prefill')}×), ` +
        `decode ${median(rs.map((x) => x.decode)).toFixed(2)} tok/s (${ratio('decode')}×)`,
    );
  }
}
