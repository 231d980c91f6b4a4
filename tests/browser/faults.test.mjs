// The fault matrix of downloads and storage: each test reproduces one way loading can go wrong —
// on a loopback server that drops, stalls, compresses or answers 206 unasked (tools/serve.mjs
// with HEARTH_FAULTS=1), with Chromium's CDP for quota and offline, and with a prelude module run
// in the engine's worker before it starts that makes OPFS calls fail — and checks what the user
// gets: a model that runs, a typed error, and no good stored copy lost.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { LONG, MODEL_PATH, MODEL_URL_PATH, ROOT, foreignRequests, launch, opfsFiles, startServer } from './helpers.mjs';

/** A page on the isolated origin with nothing loaded (the benchmark page does nothing by itself). */
const BLANK = 'bench/';

/**
 * Makes every engine worker the page starts run `prelude` (JS source) first: the Worker
 * constructor is wrapped so a module worker named "hearth" starts from a blob that imports the
 * prelude, then the real worker.js.
 */
const withWorkerPrelude = (prelude) => {
  const Native = window.Worker;
  window.Worker = class extends Native {
    constructor(url, opts) {
      if (opts?.type === 'module' && opts?.name === 'hearth' && window.__workerPrelude) {
        const pre = 'data:text/javascript;base64,' + btoa(window.__workerPrelude);
        const real = new URL(String(url), location.href).href;
        const shim = `import ${JSON.stringify(pre)};\nimport ${JSON.stringify(real)};\n`;
        url = URL.createObjectURL(new Blob([shim], { type: 'text/javascript' }));
      }
      super(url, opts);
    }
  };
  window.__workerPrelude = prelude;
};

/** Runs `Hearth.load(url, opts)` in the page and one short greedy generation; never throws. */
async function tryLoad(page, url, opts = {}) {
  return page.evaluate(
    async ({ url, opts }) => {
      const { Hearth } = await import('/hearth.js');
      const phases = [];
      try {
        const llm = await Hearth.load(url, { ...opts, onProgress: (p) => phases.push(p.phase) });
        const g = await llm.generate('1, 2, 3,', { raw: true, maxTokens: 6, temperature: 0 });
        const out = { ok: true, info: llm.info, tokens: g.tokens, phases: [...new Set(phases)] };
        await llm.unload();
        return out;
      } catch (e) {
        return { ok: false, type: e.type, name: e.name, message: e.message, phases: [...new Set(phases)] };
      }
    },
    { url, opts },
  );
}

const storedList = (page) => page.evaluate(async () => (await import('/hearth.js')).Hearth.cache.list());
const clearStore = (page) => page.evaluate(async () => (await import('/hearth.js')).Hearth.cache.clear());

describe('failure modes of loading', { timeout: 6 * LONG }, () => {
  let server;
  let b;
  let page;
  let size;
  /** Tokens of the reference generation (from a clean load). */
  let reference;
  const modelUrl = () => server.isolated + MODEL_URL_PATH.slice(1);
  const fault = (spec, name = 'm.gguf', base = server.isolated) => `${base}fault/${spec}/${name}`;
  /** Requests for `pathPart` since `from` (an index into the log): all, whole-file, resumes. */
  const requestsFor = (from, pathPart) => b.requestLog.slice(from).filter((r) => r.url.includes(pathPart));
  const downloads = (from, pathPart) => requestsFor(from, pathPart).filter((r) => !r.range);
  const resumes = (from, pathPart) => requestsFor(from, pathPart).filter((r) => /^bytes=[1-9]\d*-$/.test(r.range ?? ''));

  before(async () => {
    size = (await stat(MODEL_PATH)).size;
    server = await startServer({ HEARTH_FAULTS: '1' });
    b = await launch();
    await b.context.addInitScript(withWorkerPrelude, '');
    page = await b.page();
    await page.goto(server.isolated + BLANK);
    const r = await tryLoad(page, modelUrl(), { store: false });
    assert.ok(r.ok, JSON.stringify(r));
    reference = r.tokens;
  });

  afterEach(async () => {
    await page.evaluate(() => (window.__workerPrelude = ''));
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('keeps a good stored model when loading fails for a reason that is not damage', async () => {
    await clearStore(page);
    const first = await tryLoad(page, modelUrl());
    assert.ok(first.ok && first.info.storage === 'opfs', JSON.stringify(first));
    // A context far too large for memory: the engine refuses it, the bytes are fine.
    const big = await tryLoad(page, modelUrl(), { nCtx: 1e7 });
    assert.equal(big.ok, false);
    assert.equal(big.type, 'out_of_memory', JSON.stringify(big));
    assert.equal((await storedList(page)).length, 1, 'the stored copy is still there');
    // And the next load runs from it, without the network.
    const mark = b.requestLog.length;
    const again = await tryLoad(page, modelUrl());
    assert.ok(again.ok, JSON.stringify(again));
    assert.equal(again.info.source, 'storage');
    assert.deepEqual(again.tokens, reference);
    assert.deepEqual(requestsFor(mark, MODEL_URL_PATH), [], 'no download');
  });

  for (const [what, prelude, expectWarning] of [
    [
      'the OPFS root throws',
      `navigator.storage.getDirectory = () => Promise.reject(new DOMException('The operation is insecure.', 'SecurityError'));`,
      /storage/,
    ],
    ['sync access handles are missing', `delete FileSystemFileHandle.prototype.createSyncAccessHandle;`, /cannot be stored/],
    [
      'a write fails part-way (not the quota)',
      `const w = FileSystemSyncAccessHandle.prototype.write; let n = 0;
       FileSystemSyncAccessHandle.prototype.write = function (b, o) {
         if ((n += b.byteLength) > 30e6) throw new DOMException('disk error', 'InvalidStateError');
         return w.call(this, b, o);
       };`,
      /could not be stored \(disk error\)/,
    ],
    [
      'committing the entry fails',
      `FileSystemHandle.prototype.move = FileSystemFileHandle.prototype.move = function () { return Promise.reject(new DOMException('no', 'InvalidModificationError')); };`,
      /could not be stored/,
    ],
  ]) {
    it(`runs from memory, downloading once, when ${what}`, async () => {
      await clearStore(page);
      await page.evaluate((p) => (window.__workerPrelude = p), prelude);
      const mark = b.requestLog.length;
      const r = await tryLoad(page, modelUrl());
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.info.storage, 'memory');
      assert.equal(r.info.source, 'network');
      assert.ok(r.info.warnings.some((w) => expectWarning.test(w)), JSON.stringify(r.info.warnings));
      assert.deepEqual(r.tokens, reference);
      assert.equal(downloads(mark, MODEL_URL_PATH).length, 1, 'the model was downloaded once');
      await page.evaluate(() => (window.__workerPrelude = ''));
      assert.deepEqual(await storedList(page), [], 'nothing half-stored looks like an entry');
    });
  }

  it('falls back to the network when the stored file cannot be read, without deleting it', async () => {
    await clearStore(page);
    assert.ok((await tryLoad(page, modelUrl())).ok);
    await page.evaluate(
      (p) => (window.__workerPrelude = p),
      `FileReaderSync.prototype.readAsArrayBuffer = function () { throw new DOMException('gone', 'NotReadableError'); };
       const open = FileSystemFileHandle.prototype.createSyncAccessHandle;
       FileSystemFileHandle.prototype.createSyncAccessHandle = function (o) {
         if (o?.mode === 'read-only') return Promise.reject(new DOMException('gone', 'NotReadableError'));
         return open.call(this, o);
       };`,
    );
    const r = await tryLoad(page, modelUrl(), { store: true });
    // Stored files are read through a read-only sync access handle, else FileReaderSync: with both
    // failing the copy cannot be read, so the download runs (and stores it again through its
    // read-write sync access handle).
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.info.source, 'network');
    assert.ok(r.info.warnings.some((w) => /could not be read/.test(w)), JSON.stringify(r.info.warnings));
    assert.deepEqual(r.tokens, reference);
  });

  it('survives the quota running out part-way through the write, downloading once', async () => {
    await clearStore(page);
    const cdp = await b.context.newCDPSession(page);
    const origin = new URL(server.isolated).origin;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 60e6 });
    try {
      // Compressed, so the size is not known before the write starts.
      const url = fault('gzip');
      const mark = b.requestLog.length;
      const r = await tryLoad(page, url);
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.info.storage, 'memory');
      assert.ok(r.info.warnings.some((w) => /storage is full/.test(w)), JSON.stringify(r.info.warnings));
      assert.deepEqual(r.tokens, reference);
      assert.equal(downloads(mark, '/fault/gzip/').length, 1, 'downloaded once');
      assert.deepEqual(await opfsFiles(page), [], 'the partial file was removed');
    } finally {
      await cdp.send('Storage.overrideQuotaForOrigin', { origin }).catch(() => {});
    }
  });

  it('loads a compressed download from another origin (Content-Encoding hidden by CORS)', async () => {
    await clearStore(page);
    const r = await tryLoad(page, fault('gzip', 'm.gguf', server.plain));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.tokens, reference);
    assert.equal(r.info.sizeBytes, size);
  });

  it('takes a 206 sent for a request that asked for no range', async () => {
    await clearStore(page);
    const r = await tryLoad(page, fault('unasked206'));
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.tokens, reference);
  });

  it('resumes a dropped download where it stopped', async () => {
    await clearStore(page);
    const url = fault(`drop=${Math.floor(size / 2)}`);
    const mark = b.requestLog.length;
    const r = await tryLoad(page, url);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.info.storage, 'opfs');
    assert.deepEqual(r.tokens, reference);
    assert.ok(r.info.warnings.some((w) => /resumed/.test(w)), JSON.stringify(r.info.warnings));
    assert.equal(downloads(mark, '/fault/').length, 1, 'one download...');
    assert.equal(resumes(mark, '/fault/').length, 1, '...and one request for the rest');
  });

  it('refuses a model or context that cannot fit before downloading it, saying what would', async () => {
    await clearStore(page);
    const mark = b.requestLog.length;
    const r = await tryLoad(page, modelUrl(), { nCtx: 4_000_000 });
    assert.equal(r.ok, false);
    assert.equal(r.type, 'out_of_memory', JSON.stringify(r));
    assert.match(r.message, /KV cache/);
    assert.match(r.message, /a context of at most \d+ tokens would fit/);
    assert.deepEqual(downloads(mark, MODEL_URL_PATH), [], 'only the header was read, nothing downloaded');
    assert.ok(requestsFor(mark, MODEL_URL_PATH).every((q) => /^bytes=0-\d+$/.test(q.range ?? '')));
  });

  it('resumes a stalled download, and gives up on a server that always stalls', async () => {
    await clearStore(page);
    const once = await tryLoad(page, fault('stall=3000000'), { stallTimeoutMs: 1500 });
    assert.ok(once.ok, JSON.stringify(once));
    assert.deepEqual(once.tokens, reference);
    const t0 = Date.now();
    const always = await tryLoad(page, fault('stallall=3000000'), { stallTimeoutMs: 1000 });
    assert.equal(always.ok, false);
    assert.equal(always.type, 'download_error');
    assert.match(always.message, /no data for 1 s/);
    assert.ok(Date.now() - t0 < LONG / 2);
  });

  it('reports the later phases, not just the download', async () => {
    await clearStore(page);
    const r = await tryLoad(page, modelUrl());
    assert.ok(r.ok);
    assert.deepEqual(r.phases, ['download', 'load']);
  });

  it('an abort while the engine reads the weights ends the load and its worker', async () => {
    await clearStore(page);
    const before = page.workers().length;
    const r = await page.evaluate(async (url) => {
      const { Hearth } = await import('/hearth.js');
      const controller = new AbortController();
      try {
        await Hearth.load(url, {
          signal: controller.signal,
          onProgress: (p) => p.phase === 'load' && controller.abort(),
        });
        return { ok: true };
      } catch (e) {
        return { ok: false, name: e.name, type: e.type };
      }
    }, modelUrl());
    assert.deepEqual(r, { ok: false, name: 'AbortError', type: 'aborted' });
    for (let i = 0; i < 50 && page.workers().length > before; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(page.workers().length, before, 'the worker is gone');
    assert.deepEqual(await storedList(page), []);
  });

  it('stores a model whose URL has a malformed escape in its name', async () => {
    await clearStore(page);
    const r = await tryLoad(page, fault('plain', 'odd%E0%A4%A.gguf'));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.info.storage, 'opfs');
    const list = await storedList(page);
    assert.equal(list.length, 1);
    assert.equal(list[0].name, 'odd%E0%A4%A.gguf');
  });

  it('sweeps leftovers and replaces an older ?v= copy instead of keeping both', async () => {
    await clearStore(page);
    assert.ok((await tryLoad(page, fault('plain', 'm.gguf?v=1'))).ok);
    // Leftovers: an orphan .gguf, a partial without a description, a record without a file.
    await page.evaluate(async () => {
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('hearth-models', { create: true });
      for (const name of ['a'.repeat(32) + '.gguf', 'b'.repeat(32) + '.partial', 'c'.repeat(32) + '.json']) {
        const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
        await w.write(new Uint8Array(1000));
        await w.close();
      }
    });
    const r = await tryLoad(page, fault('plain', 'm.gguf?v=2'));
    assert.ok(r.ok, JSON.stringify(r));
    const list = await storedList(page);
    assert.deepEqual(
      list.map((e) => new URL(e.url).search),
      ['?v=2'],
    );
    const files = (await opfsFiles(page)).map(([n]) => n);
    assert.equal(files.length, 2, `only the new entry's file and record remain: ${files}`);
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});

describe('the development server', () => {
  it('answers a malformed escape with 400 and keeps serving', async () => {
    const server = await startServer();
    try {
      const bad = await fetch(server.isolated + '%');
      assert.equal(bad.status, 400);
      const good = await fetch(server.isolated + 'hearth.js');
      assert.equal(good.status, 200);
      assert.match(good.headers.get('content-type'), /javascript/);
      const html = await fetch(server.isolated);
      assert.match(html.headers.get('content-security-policy') ?? '', /frame-ancestors 'self'/);
    } finally {
      await server.stop();
    }
  });
});

describe('failure modes of the page and the element', { timeout: 4 * LONG }, () => {
  let server;
  let b;

  before(async () => {
    server = await startServer({ HEARTH_FAULTS: '1' });
    b = await launch();
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('the service worker keeps only the app shell, as whole snapshots of what each path should be', async () => {
    const page = await b.page();
    await page.goto(server.isolated);
    await page.waitForFunction(() => window.hearthApp?.state === 'ready', null, { timeout: LONG });
    await page.waitForFunction(async () => (await navigator.serviceWorker.ready) && navigator.serviceWorker.controller, null, {
      timeout: LONG,
    });
    // Navigating to the model (a download link, say) goes to the network and is not kept.
    const nav = await b.context.newPage();
    await nav.goto(server.isolated + 'models/SmolLM2-135M-Instruct.Q4_1.gguf').catch(() => {});
    await nav.close();
    const cached = await page.evaluate(async () => {
      const out = [];
      for (const name of await caches.keys()) {
        const c = await caches.open(name);
        for (const req of await c.keys()) {
          const res = await c.match(req);
          out.push({ cache: name, path: new URL(req.url).pathname, type: res.headers.get('content-type') });
        }
      }
      return out;
    });
    assert.ok(!cached.some((c) => c.path.endsWith('.gguf')), `the model is not in the Cache API: ${JSON.stringify(cached)}`);
    assert.equal(new Set(cached.map((c) => c.cache)).size, 1, 'one snapshot');
    for (const c of cached.filter((c) => c.path.endsWith('.wasm'))) assert.match(c.type, /application\/wasm/);
    assert.ok(cached.some((c) => c.path.endsWith('/pkg/hearth_bg.wasm')));
    await page.close();
  });

  it('the page can cancel a load, and says so', async () => {
    const page = await b.context.newPage();
    await page.goto(server.isolated + '?model=' + encodeURIComponent('fault/stall=5000000/cancel-me.gguf'));
    await page.locator('#cancel-load').waitFor({ state: 'visible', timeout: LONG });
    await page.waitForFunction(() => /Downloading/.test(document.getElementById('load-text').textContent), null, { timeout: LONG });
    const workers = page.workers().length;
    await page.locator('#cancel-load').click();
    await page.waitForFunction(() => !document.getElementById('notice').hidden, null, { timeout: LONG });
    assert.match(await page.locator('#notice').textContent(), /cancelled/);
    assert.equal(await page.locator('#load').isHidden(), true);
    for (let i = 0; i < 50 && page.workers().length >= workers; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.ok(page.workers().length < workers, 'the load’s worker ended');
    await page.close();
  });

  it('the chat page cannot be framed by another site; its delete button reports failures', async () => {
    const page = await b.context.newPage();
    // Another origin (the plain port) frames the chat page.
    await page.goto(server.plain + 'embed.html');
    await page.evaluate((src) => {
      const f = document.createElement('iframe');
      f.src = src;
      document.body.append(f);
    }, server.isolated);
    await new Promise((ok) => setTimeout(ok, 2000));
    const child = page.frames().find((f) => f !== page.mainFrame());
    // Blocked by frame-ancestors: Chromium shows its error page in the frame instead.
    assert.notEqual(child?.url(), server.isolated, 'the chat page did not load inside the frame');
    const res = await fetch(server.isolated);
    assert.match(res.headers.get('content-security-policy'), /frame-ancestors 'self'/);

    await page.goto(server.isolated);
    await page.waitForFunction(() => window.hearthApp?.state === 'ready', null, { timeout: LONG });
    await page.evaluate(() => {
      FileSystemDirectoryHandle.prototype.removeEntry = () => Promise.reject(new DOMException('locked', 'NoModificationAllowedError'));
    });
    await page.locator('#settings summary').click();
    await page.locator('#forget').click();
    await page.waitForFunction(() => !document.getElementById('notice').hidden, null, { timeout: LONG });
    assert.match(await page.locator('#notice').textContent(), /could not be deleted: locked/);
    await page.close();
  });

  it('a lone surrogate in a message is no error', async () => {
    const page = await b.context.newPage();
    await page.goto(server.isolated + 'bench/');
    const r = await page.evaluate(async () => {
      const { Hearth } = await import('/hearth.js');
      const llm = await Hearth.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { nThreads: 1 });
      try {
        const g = await llm.generate('half an emoji: \uD83D and more', { maxTokens: 3 });
        const t = await llm.tokenize('\uDE00');
        return { ok: true, n: g.tokens.length, t: t.length };
      } catch (e) {
        return { ok: false, message: e.message };
      } finally {
        await llm.unload();
      }
    });
    assert.ok(r.ok, JSON.stringify(r));
    await page.close();
  });

  it('an element given a new model while loading ends up with that model and one worker', async () => {
    const page = await b.context.newPage();
    await page.goto(server.plain + 'embed.html');
    await page.evaluate(() => document.querySelector('hearth-chat').remove());
    // (the removed element's worker ends in the background)
    for (let i = 0; i < 100 && page.workers().length > 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    const workers0 = page.workers().length;
    const url = await page.evaluate(async () => {
      await customElements.whenDefined('hearth-chat');
      const el = document.createElement('hearth-chat');
      el.setAttribute('model', 'fault/stall=2000000/first.gguf');
      document.body.append(el);
      await new Promise((ok) => setTimeout(ok, 300));
      el.setAttribute('model', 'fault/plain/second.gguf');
      const info = await new Promise((ok) => el.addEventListener('hearth-ready', (e) => ok(e.detail), { once: true }));
      return info.url;
    });
    assert.match(url, /second\.gguf$/);
    for (let i = 0; i < 50 && page.workers().length > workers0 + 1; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(page.workers().length, workers0 + 1, 'only the new model’s worker runs');
    // Removed from the page: its worker ends.
    await page.evaluate(() => document.querySelector('hearth-chat').remove());
    for (let i = 0; i < 50 && page.workers().length > workers0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(page.workers().length, workers0);
    await page.close();
  });
});

describe('a model that changes on the server mid-download', { timeout: 2 * LONG }, () => {
  it('restarts cleanly from the new file (If-Range)', async () => {
    const { mkdtemp, copyFile, open, rm } = await import('node:fs/promises');
    const { createHash } = await import('node:crypto');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'hearth-models-'));
    const file = join(dir, 'changing.gguf');
    await copyFile(MODEL_PATH, file);
    const server = await startServer({ HEARTH_FAULTS: '1', HEARTH_MODELS: dir });
    const b = await launch();
    try {
      const page = await b.page();
      await page.goto(server.isolated + 'bench/');
      const size = (await stat(file)).size;
      // The first request stalls half-way; meanwhile the file changes (same size, other bytes in
      // the last tensor's data, a new mtime and so a new ETag); the resume names the old ETag.
      const load = tryLoad(page, `${server.isolated}fault/file=changing.gguf,stall=${Math.floor(size / 2)}/changing.gguf`, { stallTimeoutMs: 3000 });
      await new Promise((ok) => setTimeout(ok, 1500));
      const fh = await open(file, 'r+');
      await fh.write(Buffer.alloc(4096, 0x11), 0, 4096, size - 8192);
      await fh.close();
      const later = new Date(Date.now() + 5000);
      const { utimes } = await import('node:fs/promises');
      await utimes(file, later, later);
      const changed = createHash('sha256').update(await (await import('node:fs/promises')).readFile(file)).digest('hex');
      const r = await load;
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.info.sha256, changed, 'the model loaded is the new file, whole');
      assert.ok(b.requestLog.some((q) => q.url.includes('changing.gguf') && /^bytes=[1-9]\d*-$/.test(q.range ?? '')), 'a resume was asked for');
    } finally {
      await b.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the service worker with a misbehaving host', { timeout: 2 * LONG }, () => {
  it('keeps no wrong response (a portal page as wasm) and replaces the whole snapshot when a file changes', async () => {
    const { mkdtemp, mkdir, writeFile, readFile, rm, cp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const www = join(ROOT, 'www');
    const dir = await mkdtemp(join(tmpdir(), 'hearth-www-'));
    // A copy of www/ whose threaded wasm is a captive portal's HTML page.
    await cp(www, dir, { recursive: true, dereference: true });
    await mkdir(join(dir, 'pkg-threads'), { recursive: true });
    await writeFile(join(dir, 'pkg-threads', 'hearth_bg.wasm'), '<!doctype html><title>Log in to the Wi-Fi</title>');
    const server = await startServer({ HEARTH_WWW: dir });
    const b = await launch();
    const snapshot = (page) =>
      page.evaluate(async () => {
        const out = {};
        for (const name of await caches.keys()) {
          const c = await caches.open(name);
          out[name] = {};
          for (const req of await c.keys()) out[name][new URL(req.url).pathname] = (await c.match(req)).headers.get('content-type');
        }
        return out;
      });
    try {
      const page = await b.page();
      await page.goto(server.isolated);
      await page.waitForFunction(() => window.hearthApp?.state === 'ready', null, { timeout: LONG });
      await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: LONG });
      await page.waitForFunction(async () => (await caches.keys()).length === 1 && (await (await caches.open((await caches.keys())[0])).match('/__hearth_snapshot_complete__')) !== undefined, null, { timeout: LONG });
      const first = await snapshot(page);
      const [name] = Object.keys(first);
      assert.ok(!('/pkg-threads/hearth_bg.wasm' in first[name]), `the portal page was not kept as wasm: ${JSON.stringify(first)}`);
      assert.match(first[name]['/pkg/hearth_bg.wasm'], /application\/wasm/);
      // A new build: one file changes; the next visit online takes a whole new snapshot.
      await new Promise((ok) => setTimeout(ok, 1100)); // (a new mtime, so a new ETag)
      await writeFile(join(dir, 'style.css'), (await readFile(join(www, 'style.css'), 'utf8')) + '\n/* v2 */\n');
      await page.reload();
      await page.waitForFunction(async (old) => {
        const names = await caches.keys();
        return names.length === 1 && names[0] !== old;
      }, name, { timeout: LONG });
      const second = await snapshot(page);
      assert.deepEqual(Object.keys(second[Object.keys(second)[0]]).sort(), Object.keys(first[name]).sort(), 'the same files, all fetched anew');
    } finally {
      await b.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a GGUF whose chat template grows without bound', { timeout: 2 * LONG }, () => {
  it('fails the chat with template_error at the render memory cap, and keeps the stored model', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { execFileSync } = await import('node:child_process');
    const dir = await mkdtemp(join(tmpdir(), 'hearth-models-'));
    // The default model with a template that doubles a string 40 times (8 TiB if nothing stopped it);
    // written with gguf-py's gguf_new_metadata (pinned by build.sh for the tiny-model generator).
    const hostile = "{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    execFileSync('python3', ['-m', 'gguf.scripts.gguf_new_metadata', '--chat-template', hostile, '--force', MODEL_PATH, join(dir, 'hostile.gguf')], { stdio: 'ignore' });
    const server = await startServer({ HEARTH_MODELS: dir });
    const b = await launch();
    try {
      const page = await b.page();
      await page.goto(server.isolated + 'bench/');
      const r = await page.evaluate(async () => {
        const { Hearth } = await import('/hearth.js');
        const llm = await Hearth.load('/models/hostile.gguf', { nThreads: 1 });
        const raw = await llm.generate('1, 2, 3,', { raw: true, maxTokens: 2, temperature: 0 });
        try {
          await llm.generate('hi', { maxTokens: 2 });
          return { ok: true, raw: raw.tokens.length };
        } catch (e) {
          return { ok: false, type: e.type, message: e.message, raw: raw.tokens.length, stored: (await Hearth.cache.list()).map((m) => m.name) };
        }
      });
      assert.equal(r.raw, 2, 'the model itself runs (raw prompts need no template)');
      assert.equal(r.ok, false, JSON.stringify(r));
      assert.equal(r.type, 'template_error', JSON.stringify(r));
      assert.match(r.message, /chat template/);
      assert.deepEqual(r.stored, ['hostile.gguf'], 'the stored copy is kept');
    } finally {
      await b.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
