// A 1B-class model in a tab: loading the synthetic Llama-3.2-1B-shaped model (tools/reference/
// gen_synth.py's weights in llama.cpp's Q4_K_M mix by `hearth quantize --type q4_k_m`, 804 MB;
// `./build.sh synth-1b` makes it, and ./build.sh test) from the network and again from storage
// never holds the weights twice: the renderer's peak resident memory (VmHWM; the page and the
// engine's worker live in it) stays below 1.3 × (weights + KV cache). Each load runs in a fresh
// renderer (the browser restarted on the same profile), so each peak is that load's own.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LONG, ROOT, launch, renderers, startServer } from './helpers.mjs';

const NAME = 'synth-1b-Q4_K_M.gguf';
const N_CTX = 4096;

describe('a 1B model in a tab', { timeout: 3 * LONG }, () => {
  it('loads from the network and from storage with the renderer below 1.3 × (weights + KV cache)', async (t) => {
    assert.ok(existsSync(join(ROOT, 'models', NAME)), `models/${NAME} is missing: ./build.sh synth-1b makes it`);
    const profile = await mkdtemp(join(tmpdir(), 'hearth-profile-'));
    const server = await startServer();
    try {
      const results = [];
      for (const expected of ['network', 'storage']) {
        const b = await launch({ profile });
        try {
          const page = await b.page();
          await page.goto(server.isolated + 'bench/');
          const r = await page.evaluate(
            async ({ url, nCtx }) => {
              const { Hearth } = await import('/hearth.js');
              const llm = await Hearth.load(url, { nCtx, nThreads: 1 });
              const g = await llm.generate('The capital of France is', { raw: true, maxTokens: 2, temperature: 0 });
              return { info: llm.info, tokens: g.tokens.length };
            },
            { url: `/models/${NAME}`, nCtx: N_CTX },
          );
          // The renderer holding the most memory is the page's (the engine's worker lives in it).
          const [renderer] = renderers(b.profile).sort((x, y) => y.rss - x.rss);
          assert.ok(renderer, 'the renderer process was found');
          const bound = 1.3 * (r.info.weightBytes + r.info.kvBytes);
          const line = `${expected}: renderer peak ${(renderer.hwm / 2 ** 20).toFixed(0)} MiB; weights ${(r.info.weightBytes / 2 ** 20).toFixed(0)} MiB + KV ${(r.info.kvBytes / 2 ** 20).toFixed(0)} MiB (bound ${(bound / 2 ** 20).toFixed(0)} MiB); wasm memory ${(r.info.wasmMemoryBytes / 2 ** 20).toFixed(0)} MiB; load ${r.info.loadMs.toFixed(0)} ms`;
          t.diagnostic(line);
          results.push(line);
          assert.equal(r.info.source, expected);
          assert.equal(r.tokens, 2);
          assert.equal(r.info.context, N_CTX);
          assert.ok(renderer.hwm < bound, line);
        } finally {
          await b.close();
        }
      }
      console.log(results.join('\n'));
    } finally {
      await server.stop();
      await rm(profile, { recursive: true, force: true });
    }
  });
});
