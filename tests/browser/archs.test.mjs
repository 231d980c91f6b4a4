// Every architecture family in the browser: the tiny synthetic llama (Llama 3 rope), qwen2, qwen3,
// gemma3 and lfm2 models (tools/reference/gen_tiny.py, made by ./build.sh) and the real Gemma 3 270M
// Q4_K_M load through `Hearth.load` and give exactly the native CLI's greedy tokens — the CLI that
// tests/archs.rs checks against llama.cpp's fixtures for the same files — in the simd build, and
// for Gemma in the threaded build at 2 threads too. The page names what it runs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { blankPage, LONG, nativeGenerate, ROOT } from './helpers.mjs';

const SETS = [
  { set: 'tiny-llama', arch: 'llama' },
  { set: 'tiny-qwen2', arch: 'qwen2' },
  { set: 'tiny-qwen3', arch: 'qwen3' },
  { set: 'tiny-gemma3', arch: 'gemma3' },
  { set: 'tiny-lfm2', arch: 'lfm2' },
  { set: 'gemma3-270m', arch: 'gemma3', threads: true },
];
const MAX_TOKENS = 16;

/** The set's model file under models/ (or models/tiny/), as the fixture's meta names it, and two of its prompts. */
function setModel(set) {
  const greedy = JSON.parse(readFileSync(join(ROOT, 'tests/fixtures', set, 'greedy.json'), 'utf8'));
  const name = greedy.meta.model.split('/').pop();
  const rel = ['', 'tiny/'].map((d) => d + name).find((r) => existsSync(join(ROOT, 'models', r)));
  assert.ok(rel, `${set}: models/${name} is missing (./build.sh tiny-models / fetch-gemma make it)`);
  const prompts = greedy.cases.filter((c) => c.kind === 'raw').slice(0, 2).map((c) => c.prompt);
  return { rel, path: join(ROOT, 'models', rel), prompts };
}

describe('every architecture family in Chromium', { timeout: 3 * LONG }, () => {
  let server;
  let b;
  let page;
  let close;

  before(async () => ({ server, b, page, close } = await blankPage()));
  after(async () => close?.());

  for (const { set, arch, threads } of SETS) {
    it(`${set}: the CLI's tokens${threads ? ', in both builds' : ''}`, async () => {
      const { rel, path, prompts } = setModel(set);
      assert.equal(prompts.length, 2);
      const native = [];
      for (const p of prompts) native.push((await nativeGenerate(p, MAX_TOKENS, path)).tokens);
      for (const build of threads ? ['simd', 'threads'] : ['simd']) {
        const r = await page.evaluate(
          async ({ url, prompts, maxTokens, build }) => {
            const { Hearth } = await import('/hearth.js');
            const llm = await Hearth.load(url, build === 'threads' ? { threads: true, nThreads: 2 } : { threads: false });
            const out = [];
            for (const p of prompts) out.push((await llm.generate(p, { raw: true, maxTokens, temperature: 0 })).tokens);
            const info = llm.info;
            await llm.unload();
            return { out, info };
          },
          { url: '/models/' + rel, prompts, maxTokens: MAX_TOKENS, build },
        );
        assert.equal(r.info.architecture, arch);
        assert.equal(r.info.build, build, `${set}: the ${build} build runs`);
        if (build === 'threads') assert.equal(r.info.threads, 2);
        assert.deepEqual(r.out, native, `${set} (${build}): the browser's greedy tokens are the CLI's`);
        // What it runs: the weight mix by bytes, largest first, adding up to the file's tensor data.
        const mix = r.info.weightMix;
        assert.ok(mix.every((m, i) => i === 0 || mix[i - 1].bytes >= m.bytes), JSON.stringify(mix));
        const bytes = mix.reduce((a, m) => a + m.bytes, 0);
        assert.ok(bytes <= r.info.sizeBytes && bytes > 0.9 * r.info.sizeBytes - (8 << 20), `${bytes} of ${r.info.sizeBytes}`);
        if (set === 'gemma3-270m') assert.deepEqual(mix.map((m) => m.type).sort(), ['F32', 'Q4_K', 'Q5_0', 'Q6_K', 'Q8_0']);
        // Tuned at load: the kernels' early reads timed on this model's decode pass both ways, the
        // faster kept; the K-quant kernels' two forms timed only when the model has K-quants (a
        // fresh worker per load).
        const t = r.info.touchReads;
        assert.ok(t && t.onMs >= 0 && t.offMs >= 0 && t.used === t.onMs <= t.offMs, `${set} (${build}): ${JSON.stringify(t)}`);
        const kquants = mix.some((m) => m.type === 'Q4_K' || m.type === 'Q6_K');
        assert.equal(r.info.q4kDots != null && r.info.q6kDots != null, kquants, `${set} (${build}): ${JSON.stringify(r.info.q4kDots)}`);
      }
    });
  }
});
