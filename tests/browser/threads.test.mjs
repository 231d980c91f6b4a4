// The threaded build: chosen on a cross-origin isolated page, its thread count settable, and the
// same greedy tokens as the single-threaded build and the native CLI whatever the thread count
// (the kernels' float order does not depend on how rows are split). An abort in the middle of a
// threaded generation leaves the pool working.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LONG, MODEL_URL_PATH, launch, nativeGenerate, startServer } from './helpers.mjs';

const PROMPT = 'A short history of the bicycle: the first two-wheeled machines appeared in';

describe('threads', { timeout: 4 * LONG }, () => {
  let server;
  let b;
  let page;
  let native;

  before(async () => {
    server = await startServer();
    b = await launch();
    page = await b.page();
    await page.goto(server.isolated + 'embed.html');
    native = await nativeGenerate(PROMPT, 24);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  /** Loads the model with `options`, generates greedily, unloads; returns info and result. */
  const run = (options, gen = {}) =>
    page.evaluate(
      async ({ url, options, prompt, gen }) => {
        const { Hearth } = await import('/hearth.js');
        const llm = await Hearth.load(url, options);
        try {
          const out = await llm.generate(prompt, { raw: true, maxTokens: 24, temperature: 0, ...gen });
          return { info: llm.info, tokens: out.tokens, text: out.text };
        } finally {
          await llm.unload();
        }
      },
      { url: server.isolated.replace(/\/$/, '') + MODEL_URL_PATH, options, prompt: PROMPT, gen },
    );

  it('runs the threaded build on an isolated page, with the thread count asked for', async () => {
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
    for (const n of [2, 1]) {
      const { info, tokens, text } = await run({ nThreads: n });
      assert.equal(info.build, 'threads', info.reason);
      assert.equal(info.threads, n);
      assert.match(info.reason, /cross-origin isolated/);
      assert.deepEqual(tokens, native.tokens, `${n} thread(s): the CLI's tokens`);
      assert.equal(text, native.text);
    }
  });

  it('defaults to the device cores (capped), and runs the simd build when threads are off', async () => {
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const threaded = await run({});
    assert.equal(threaded.info.build, 'threads');
    assert.equal(threaded.info.threads, Math.min(cores, 4));
    const simd = await run({ threads: false });
    assert.equal(simd.info.build, 'simd');
    assert.equal(simd.info.threads, 1);
    assert.match(simd.info.reason, /not requested/);
    assert.deepEqual(simd.tokens, native.tokens);
    assert.deepEqual(threaded.tokens, native.tokens);
  });

  it('rejects a bad thread count', async () => {
    const err = await page.evaluate(async (url) => {
      const { Hearth } = await import('/hearth.js');
      return Hearth.load(url, { nThreads: 0.5 }).then(
        () => null,
        (e) => ({ type: e.type, message: e.message }),
      );
    }, server.isolated.replace(/\/$/, '') + MODEL_URL_PATH);
    assert.equal(err?.type, 'invalid_argument');
  });

  it('stays usable after an abort in the middle of a threaded generation', async () => {
    const out = await page.evaluate(
      async ({ url, prompt }) => {
        const { Hearth } = await import('/hearth.js');
        const llm = await Hearth.load(url, { nThreads: 2 });
        try {
          const ctl = new AbortController();
          let pieces = 0;
          const first = await llm
            .generate(prompt, {
              raw: true,
              maxTokens: 200,
              temperature: 0,
              signal: ctl.signal,
              onPiece: () => ++pieces === 5 && ctl.abort(),
            })
            .then(
              () => 'finished',
              (e) => e.name,
            );
          const again = await llm.generate(prompt, { raw: true, maxTokens: 24, temperature: 0 });
          return { first, pieces, tokens: again.tokens, build: llm.info.build };
        } finally {
          await llm.unload();
        }
      },
      { url: server.isolated.replace(/\/$/, '') + MODEL_URL_PATH, prompt: PROMPT },
    );
    assert.equal(out.build, 'threads');
    assert.equal(out.first, 'AbortError');
    assert.ok(out.pieces >= 5 && out.pieces < 200);
    assert.deepEqual(out.tokens, native.tokens);
  });
});
