// `./build.sh dist` on an ordinary static host: dist/ (built once here by tools/dist.mjs) served by
// `python3 -m http.server`, which sends no COOP/COEP and knows no ranges. The page reloads itself
// once under its service worker, becomes cross-origin isolated, runs the threaded build with the
// CLI's tokens, chats, and after that first visit starts and chats with the server gone.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LONG, ROOT, foreignRequests, launch, nativeGenerate } from './helpers.mjs';

const PROMPT = 'The old lighthouse keeper climbed the stairs and';

/** Serves `dir` with Python's static file server on a free port; resolves with its base URL. */
async function staticServer(dir) {
  const child = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const port = await new Promise((ok, fail) => {
    let buf = '';
    child.on('exit', (code) => fail(new Error(`http.server exited with ${code}`)));
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) ok(m[1]);
    });
  });
  child.stdout.resume();
  child.stderr.resume();
  return {
    base: `http://127.0.0.1:${port}/`,
    stop: () =>
      new Promise((ok) => {
        if (child.exitCode !== null || child.signalCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill('SIGTERM');
      }),
  };
}

/** Waits until the page (which may reload itself meanwhile) has a model loaded or failed. */
async function whenSettled(page) {
  for (;;) {
    try {
      await page.waitForFunction(() => ['ready', 'error'].includes(window.hearthApp?.state), null, { timeout: LONG });
      return page.evaluate(() => ({ state: window.hearthApp.state, error: window.hearthApp.error }));
    } catch (e) {
      if (!/context was destroyed|navigat/i.test(e.message)) throw e;
    }
  }
}


async function chat(page, text) {
  await page.evaluate(() => {
    const input = /** @type {HTMLInputElement} */ (document.getElementById('max-tokens'));
    input.value = '8';
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const before = await page.locator('.msg.assistant').count();
  await page.locator('#input').fill(text);
  await page.locator('#send').click();
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant').length > n && window.hearthApp.state === 'ready', before, {
    timeout: LONG,
  });
  return page.locator('.msg.assistant .text').last().textContent();
}

describe('dist/ on a plain static server', { timeout: 4 * LONG }, () => {
  let work;
  let site;
  let server;
  let b;
  let page;
  let native;
  const navigations = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'hearth-dist-'));
    site = join(work, 'site');
    await promisify(execFile)(process.execPath, [join(ROOT, 'tools/dist.mjs'), '--out', site], { cwd: ROOT });
    // The model where the page looks for it by default (dist/ itself ships no model).
    await symlink(join(ROOT, 'models'), join(site, 'models'));
    server = await staticServer(site);
    b = await launch();
    page = await b.page();
    page.on('framenavigated', (f) => f === page.mainFrame() && navigations.push(f.url()));
    native = await nativeGenerate(PROMPT, 16);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('is content-named, with a manifest, _headers and the service worker told every file', async () => {
    const manifest = JSON.parse(await readFile(join(site, 'asset-manifest.json'), 'utf8'));
    for (const src of ['app.js', 'hearth.js', 'worker.js', 'protocol.js', 'thread.js', 'pkg/hearth_bg.wasm', 'pkg-relaxed/hearth_bg.wasm', 'pkg-threads/hearth_bg.wasm']) {
      assert.match(manifest.files[src] ?? '', /^assets\/.+\.[0-9a-f]{10}\.(js|wasm)$/, src);
    }
    const assets = await readdir(join(site, 'assets'), { recursive: true });
    assert.ok(assets.every((f) => !/\.(js|wasm|css)$/.test(f) || /\.[0-9a-f]{10}\.\w+$/.test(f)), assets.join(' '));
    const html = await readFile(join(site, 'index.html'), 'utf8');
    assert.ok(html.includes(manifest.files['app.js']) && html.includes(manifest.files['style.css']));
    assert.match(await readFile(join(site, '_headers'), 'utf8'), /Cross-Origin-Embedder-Policy: require-corp/);
    const sw = await readFile(join(site, 'sw.js'), 'utf8');
    for (const f of manifest.all) assert.ok(sw.includes(JSON.stringify(f)), `sw.js lists ${f}`);
  });

  it('becomes cross-origin isolated through its service worker, runs the threaded build with the CLI’s tokens, and chats', async () => {
    const first = await page.goto(server.base);
    assert.equal(first.headers()['cross-origin-embedder-policy'], undefined, 'the server sends no COEP');
    assert.equal(first.headers()['cross-origin-opener-policy'], undefined, 'the server sends no COOP');
    const settled = await whenSettled(page);
    assert.equal(settled.state, 'ready', `${settled.error}\n${b.logs.join('\n')}`);
    assert.equal(navigations.length, 2, `one reload: ${navigations.join(' ')}`);
    const state = await page.evaluate(() => ({
      isolated: crossOriginIsolated,
      isolation: window.hearthApp.isolation,
      info: window.hearthApp.llm.info,
      engineRow: document.getElementById('model-info').textContent,
    }));
    assert.equal(state.isolated, true);
    assert.equal(state.isolation.by, 'service worker');
    assert.equal(state.info.build, 'threads', state.info.reason);
    assert.equal(state.info.source, 'network');
    assert.match(state.engineRow, /threaded build, \d threads?: the page is cross-origin isolated.*\(isolated by the service worker\)/);

    const out = await page.evaluate((prompt) => window.hearthApp.llm.generate(prompt, { raw: true, maxTokens: 16, temperature: 0 }), PROMPT);
    assert.deepEqual(out.tokens, native.tokens);
    assert.ok((await chat(page, 'Hello!')).length > 0);
  });

  it('starts offline after the first visit (the server gone), isolated, from storage, and chats', async () => {
    await page.evaluate(() => navigator.serviceWorker.ready);
    await server.stop();
    await b.context.setOffline(true);
    try {
      await page.reload();
      const settled = await whenSettled(page);
      assert.equal(settled.state, 'ready', `${settled.error}\n${b.logs.join('\n')}`);
      const info = await page.evaluate(() => window.hearthApp.llm.info);
      assert.equal(info.source, 'storage');
      assert.equal(info.build, 'threads', info.reason);
      assert.equal(await page.evaluate(() => crossOriginIsolated), true);
      const out = await page.evaluate((prompt) => window.hearthApp.llm.generate(prompt, { raw: true, maxTokens: 16, temperature: 0 }), PROMPT);
      assert.deepEqual(out.tokens, native.tokens);
      assert.ok((await chat(page, 'Hi there')).length > 0);
    } finally {
      await b.context.setOffline(false);
    }
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.ok(b.requests.length > 10, 'the request log is being recorded');
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
