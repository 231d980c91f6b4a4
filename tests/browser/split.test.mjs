// A split GGUF (llama.cpp's gguf-split layout, written by `hearth split`) in the browser: the three
// shards of the default model load as one model from the first shard's URL and give the CLI's
// tokens; each shard is downloaded (resuming after a dropped connection), stored and verified on its
// own; progress spans all of them and never goes backwards; the next load reads them from storage
// with no request; a stored shard whose bytes changed is fetched again.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blankPage, LONG, MODEL_PATH, nativeGenerate, ROOT } from './helpers.mjs';

const PROMPT = 'The capital of France is';

describe('a split GGUF in the browser', { timeout: 3 * LONG }, () => {
  let dir;
  let server;
  let b;
  let page;
  let names;
  let sizes;
  let native;
  let close;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-split-'));
    const { stdout } = await promisify(execFile)(join(ROOT, 'target/release/hearth'), ['split', '--model', MODEL_PATH, '--shards', '3', '--out', dir]);
    names = stdout.trim().split('\n').map((p) => p.split('/').pop());
    sizes = await Promise.all(names.map(async (n) => (await stat(join(dir, n))).size));
    native = (await nativeGenerate(PROMPT, 12)).tokens;
    ({ server, b, page, close } = await blankPage({ HEARTH_FAULTS: '1', HEARTH_MODELS: dir }));
  });

  after(async () => {
    await close?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Loads `url` in the page, generates greedily, and reports what happened. */
  const run = (url) =>
    page.evaluate(
      async ({ url, prompt }) => {
        const { Hearth } = await import('/hearth.js');
        const progress = [];
        try {
          const llm = await Hearth.load(url, { nThreads: 1, onProgress: (p) => progress.push(p) });
          const g = await llm.generate(prompt, { raw: true, maxTokens: 12, temperature: 0 });
          const out = { ok: true, tokens: g.tokens, info: llm.info, progress, stored: (await Hearth.cache.list()).map((m) => m.name).sort() };
          await llm.unload();
          return out;
        } catch (e) {
          return { ok: false, type: e.type, message: e.message, progress };
        }
      },
      { url, prompt: PROMPT },
    );

  it('downloads every shard (each resumed after a dropped connection), stores each, and gives the CLI tokens', async () => {
    assert.deepEqual(names, names.map((_, i) => `SmolLM2-135M-Instruct.Q4_1-0000${i + 1}-of-00003.gguf`));
    const from = b.requestLog.length;
    // Each shard's first request is cut after 5 MB; the URL of any shard names all three.
    const r = await run(`${server.isolated}fault/split,drop=5000000/${names[1]}`);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.tokens, native, "the CLI's tokens");
    const total = sizes.reduce((a, n) => a + n, 0);
    assert.equal(r.info.sizeBytes, total);
    assert.deepEqual(r.info.shards.map((s) => s.size), sizes);
    assert.equal(r.info.source, 'network');
    assert.equal(r.info.storage, 'opfs');
    assert.deepEqual(r.stored, [...names].sort(), 'each shard is stored on its own');
    // Every shard was asked for again after its drop; from where it stopped when bytes had arrived
    // (a reset connection may lose what was in flight, so at least one of them).
    const log = b.requestLog.slice(from);
    for (const name of names) {
      const gets = log.filter((q) => q.url.endsWith(name) && !/^bytes=0-\d+$/.test(q.range ?? ''));
      assert.ok(gets.length >= 2, `${name} was fetched again after the drop: ${JSON.stringify(gets)}`);
    }
    assert.ok(log.some((q) => /^bytes=[1-9]\d*-$/.test(q.range ?? '')), `a shard resumed: ${JSON.stringify(log)}`);
    assert.ok(r.info.warnings.some((w) => /dropped/.test(w)));
    const downloads = r.progress.filter((p) => p.phase === 'download');
    assert.ok(downloads.every((p) => p.total === total), 'progress counts all shards');
    for (let i = 1; i < downloads.length; i++) assert.ok(downloads[i].loaded >= downloads[i - 1].loaded, 'progress never goes backwards');
    assert.equal(downloads.at(-1).loaded, total);
  });

  it('loads again from storage with no request, and fetches a damaged shard again', async () => {
    const url = `${server.isolated}fault/split,drop=5000000/${names[0]}`; // the URLs stored by the test above (its drops are one-shot)
    const from = b.requestLog.length;
    const again = await run(url);
    assert.ok(again.ok, JSON.stringify(again));
    assert.equal(again.info.source, 'storage');
    assert.deepEqual(again.tokens, native);
    assert.equal(b.requestLog.slice(from).filter((q) => q.url.includes('/fault/')).length, 0, 'no shard was requested');
    // Damage the stored second shard (same size, other bytes).
    const damaged = await page.evaluate(async (name) => {
      const { listEntries, keyFor } = await import('/storage.js');
      const entry = (await listEntries()).find((e) => e.name === name);
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle('hearth-models');
      const fh = await dir.getFileHandle(`${await keyFor(entry.url)}.gguf`);
      const w = await fh.createWritable({ keepExistingData: true });
      await w.write({ type: 'write', position: entry.size - 4096, data: new Uint8Array(4096).fill(7) });
      await w.close();
      return true;
    }, names[1]);
    assert.ok(damaged);
    const from2 = b.requestLog.length;
    const healed = await run(url);
    assert.ok(healed.ok, JSON.stringify(healed));
    assert.deepEqual(healed.tokens, native);
    assert.ok(healed.info.warnings.some((w) => /damaged/.test(w)), JSON.stringify(healed.info.warnings));
    const fetched = new Set(b.requestLog.slice(from2).filter((q) => q.url.includes('/fault/') && !q.range?.startsWith('bytes=0-')).map((q) => q.url.split('/').pop()));
    assert.deepEqual([...fetched], [names[1]], 'only the damaged shard was downloaded again');
  });

  it('refuses one shard served alone as a typed error naming the files it needs', async () => {
    const lone = await page.evaluate(async (name) => {
      const { Hearth } = await import('/hearth.js');
      const blob = await (await fetch(`/models/${name}`)).blob();
      try {
        await Hearth.load(new File([blob], 'one.gguf'), { nThreads: 1 });
        return { ok: true };
      } catch (e) {
        return { ok: false, type: e.type, message: e.message };
      }
    }, names[0]);
    assert.equal(lone.ok, false);
    assert.equal(lone.type, 'load_error');
    assert.match(lone.message, /shard 1 of a model split in 3: load all 3 files together/);
  });
});
