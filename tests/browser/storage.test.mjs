// The weights in the browser's storage, and what happens when things go wrong: a damaged stored
// copy, an aborted download, a full disk, garbage or truncated local files.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { LONG, MODEL_PATH, MODEL_URL_PATH, foreignRequests, launch, opfsFiles, openChat, startServer } from './helpers.mjs';

const waitState = (page, state) => page.waitForFunction((s) => window.hearthApp?.state === s, state, { timeout: LONG });

async function chatWorks(page) {
  await page.evaluate(() => {
    document.getElementById('max-tokens').value = '6';
    document.getElementById('temperature').value = '0';
  });
  const before = await page.locator('.msg.assistant').count();
  await page.locator('#input').fill('Say hello.');
  await page.locator('#send').click();
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant').length > n && window.hearthApp.state === 'ready', before, {
    timeout: LONG,
  });
  const text = await page.locator('.msg.assistant .text').last().textContent();
  assert.ok(text.length > 0, 'the model answered');
}

describe('model storage', { timeout: 4 * LONG }, () => {
  let server;
  let b;
  let page;
  let size;
  let sha256;

  before(async () => {
    size = (await stat(MODEL_PATH)).size;
    server = await startServer();
    b = await launch();
    page = await openChat(b, server.isolated);
    sha256 = await page.evaluate(() => window.hearthApp.llm.info.sha256);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('two loads of the same model at once both work (one stores it, the other runs from memory)', async () => {
    const r = await page.evaluate(async (path) => {
      const { Hearth } = await import('./hearth.js');
      await Hearth.cache.clear();
      const [a, b] = await Promise.all([Hearth.load(path), Hearth.load(path)]);
      const out = [];
      for (const llm of [a, b]) {
        const g = await llm.generate('1, 2, 3,', { raw: true, maxTokens: 4, temperature: 0 });
        out.push({ tokens: g.tokens, storage: llm.info.storage, warnings: llm.info.warnings ?? [] });
        await llm.unload();
      }
      return { out, cached: (await Hearth.cache.list()).length };
    }, MODEL_URL_PATH);
    assert.deepEqual(r.out[0].tokens, r.out[1].tokens, 'both engines give the same tokens');
    assert.equal(r.out[0].tokens.length, 4);
    assert.equal(r.cached, 1, 'the model is stored once');
    const storages = r.out.map((o) => o.storage).sort();
    assert.ok(storages.includes('opfs'), `one load stored it: ${JSON.stringify(r.out)}`);
  });

  it('detects a stored copy whose bytes were damaged, and fetches it again', async () => {
    const files = await opfsFiles(page);
    const gguf = files.find(([n]) => n.endsWith('.gguf'));
    assert.ok(gguf, `a stored model: ${JSON.stringify(files)}`);
    assert.equal(gguf[1], size);
    // Flip bytes in the middle of the tensor data: same size, same header, different content.
    await page.evaluate(async (name) => {
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('hearth-models');
      const fh = await dir.getFileHandle(name);
      const size = (await fh.getFile()).size;
      const w = await fh.createWritable({ keepExistingData: true });
      await w.seek(Math.floor(size / 2));
      await w.write(new Uint8Array(4096).fill(0x5a));
      await w.close();
    }, gguf[0]);
    assert.equal((await opfsFiles(page)).find(([n]) => n === gguf[0])[1], size, 'the damage kept the size');

    const mark = b.requests.length;
    await page.reload();
    await waitState(page, 'ready');
    const info = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(info.source, 'network', 'the damaged copy was not used');
    assert.equal(info.sha256, sha256, 'the model now in use is the good one');
    assert.ok(info.warnings.some((w) => /damaged/.test(w)), JSON.stringify(info.warnings));
    assert.ok(b.requests.slice(mark).some((u) => new URL(u).pathname === MODEL_URL_PATH), 'the model was fetched again');
    const stored = await page.evaluate(async () => (await import('./hearth.js')).Hearth.cache.list());
    assert.deepEqual(stored.map((e) => [e.size, e.sha256]), [[size, sha256]]);
    await chatWorks(page);
  });

  it('an aborted download leaves no usable-looking entry behind, and does not poison the next load', async () => {
    const outcome = await page.evaluate(async (url) => {
      const { Hearth } = await import('./hearth.js');
      await Hearth.cache.clear();
      const controller = new AbortController();
      const seen = [];
      try {
        await Hearth.load(url, {
          signal: controller.signal,
          onProgress: (p) => {
            seen.push(p.loaded);
            if (p.phase === 'download' && p.loaded > 0) controller.abort();
          },
        });
        return { ok: true, seen };
      } catch (e) {
        return { ok: false, name: e.name, type: e.type, seen, entries: await Hearth.cache.list() };
      }
    }, MODEL_URL_PATH);
    assert.equal(outcome.ok, false, 'the load was aborted');
    assert.equal(outcome.name, 'AbortError');
    assert.equal(outcome.type, 'aborted');
    assert.ok(outcome.seen.at(-1) < size, 'it stopped part-way');
    assert.deepEqual(outcome.entries, []);
    // What was downloaded may stay as a partial file (the next load resumes it); never a record.
    const left = (await opfsFiles(page)).map(([n]) => n);
    assert.ok(left.every((n) => /\.partial(\.json)?$/.test(n)), `only partial files: ${left}`);

    const next = await page.evaluate(async (url) => {
      const { Hearth } = await import('./hearth.js');
      const llm = await Hearth.load(url);
      const r = await llm.generate('One, two, three,', { raw: true, maxTokens: 4 });
      const out = { source: llm.info.source, sha256: llm.info.sha256, tokens: r.tokens.length, entries: await Hearth.cache.list(), warnings: llm.info.warnings };
      await llm.unload();
      return out;
    }, MODEL_URL_PATH);
    assert.equal(next.source, 'network');
    assert.equal(next.sha256, sha256);
    assert.equal(next.tokens, 4);
    assert.equal(next.entries.length, 1, `stored again: ${JSON.stringify(next.warnings)}`);
  });

  it('waits a moment for a store lock another context still holds; runs from memory when it stays held', async () => {
    // A worker that an abort has just ended keeps its lock for a moment: the load right after it
    // must still store the model. A lock held for long (another tab downloading) is not waited out.
    const r = await page.evaluate(async (path) => {
      const { Hearth } = await import('./hearth.js');
      const { keyFor, lockName } = await import('./storage.js');
      const name = lockName(await keyFor(new URL(path, location.href).href));
      const holdFor = (ms) =>
        new Promise((held) => navigator.locks.request(name, () => (held(), new Promise((ok) => setTimeout(ok, ms)))));
      const out = [];
      for (const ms of [800, 6000]) {
        await Hearth.cache.clear();
        await holdFor(ms);
        const llm = await Hearth.load(path);
        out.push({ storage: llm.info.storage, warnings: llm.info.warnings ?? [], entries: (await Hearth.cache.list()).length });
        await llm.unload();
        await navigator.locks.request(name, () => {}); // (the long hold has ended)
      }
      return out;
    }, MODEL_URL_PATH);
    assert.deepEqual(r[0], { storage: 'opfs', warnings: [], entries: 1 }, JSON.stringify(r[0]));
    assert.equal(r[1].storage, 'memory');
    assert.equal(r[1].entries, 0);
    assert.ok(r[1].warnings.some((w) => /another tab is storing this model/.test(w)), JSON.stringify(r[1].warnings));
  });

  it('rejects a download whose SHA-256 does not match, and stores nothing', async () => {
    const r = await page.evaluate(async (url) => {
      const { Hearth } = await import('./hearth.js');
      await Hearth.cache.clear();
      try {
        await Hearth.load(url, { sha256: '0'.repeat(64) });
        return { ok: true };
      } catch (e) {
        return { ok: false, type: e.type, message: e.message, entries: await Hearth.cache.list() };
      }
    }, MODEL_URL_PATH);
    assert.equal(r.ok, false);
    assert.equal(r.type, 'integrity_error');
    assert.match(r.message, /SHA-256/);
    assert.deepEqual(r.entries, []);
    assert.deepEqual(await opfsFiles(page), []);
  });

  for (const [what, make, expect] of [
    ['garbage', async () => Buffer.from('this is not a model, just some text pretending to be one\n'.repeat(100)), /not a GGUF model/],
    // cut inside the tensor data, as an interrupted copy would be
    ['truncated', async () => (await readFile(MODEL_PATH)).subarray(0, 20 << 20), /truncated GGUF/],
  ]) {
    it(`a ${what} local file gives a clear message and the page keeps working`, async () => {
      const mark = b.requests.length;
      await page.evaluate(() => (window.__running = window.hearthApp.llm));
      const name = `${what}.gguf`;
      await page.locator('#file').setInputFiles({ name, mimeType: 'application/octet-stream', buffer: await make() });
      await page.locator('#notice').waitFor({ state: 'visible', timeout: LONG });
      await waitState(page, 'ready');
      const notice = await page.locator('#notice').textContent();
      assert.ok(notice.includes(name), notice);
      assert.match(notice.replaceAll(name, ''), expect);
      // The model that was running still is.
      assert.equal(await page.evaluate(() => window.hearthApp.llm === window.__running), true);
      await chatWorks(page);
      // The file was read in place: nothing was sent, nothing fetched for it.
      assert.ok(!b.requests.slice(mark).some((u) => u.includes(what)), 'the file never went to the network');
    });
  }

  it('loads a good local file in place', async () => {
    const mark = b.requests.length;
    await page.locator('#file').setInputFiles(MODEL_PATH);
    await page.waitForFunction(() => window.hearthApp.state === 'ready' && window.hearthApp.llm?.info.source === 'file', null, {
      timeout: LONG,
    });
    const info = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(info.sha256, sha256);
    assert.equal(info.storage, 'memory');
    assert.ok(!b.requests.slice(mark).some((u) => u.endsWith('.gguf')), 'no model request');
    await chatWorks(page);
  });

  it('runs from memory, and says so, when storage is too small', async () => {
    const cdp = await b.context.newCDPSession(page);
    await page.evaluate(async () => (await import('./hearth.js')).Hearth.cache.clear());
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(server.isolated).origin, quotaSize: 20e6 });
    try {
      await page.reload();
      await waitState(page, 'ready');
      const info = await page.evaluate(() => window.hearthApp.llm.info);
      assert.equal(info.storage, 'memory');
      assert.equal(info.source, 'network');
      assert.ok(info.warnings.some((w) => /storage/.test(w)), JSON.stringify(info.warnings));
      assert.match(await page.locator('#notice').textContent(), /memory/);
      assert.deepEqual(await opfsFiles(page), []);
      await chatWorks(page);
    } finally {
      await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(server.isolated).origin }).catch(() => {});
    }
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
