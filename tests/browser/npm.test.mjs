// The npm package as a user gets it: `npm pack` (which writes the types), the tarball installed
// into a throwaway app, the app built by Vite, served, and run in Chromium — the worker, the
// helper threads and the wasm as the bundler emitted them, with the CLI's tokens in the threaded
// build (an isolated page) and the single-threaded one (a plain page); and a TypeScript file
// using the package checks against the types it ships.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LONG, MODEL_URL_PATH, ROOT, foreignRequests, launch, nativeGenerate, startServer } from './helpers.mjs';

const run = promisify(execFile);
const PROMPT = 'Rivers carry water from the mountains to';
const PKG = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'));

const APP = {
  'package.json': JSON.stringify({ name: 'throwaway', private: true, type: 'module' }),
  // No vite.config.js: Vite's defaults, as a user starts with.
  'index.html': `<!doctype html><meta charset="utf-8"><title>app</title><script type="module" src="./main.js"></script>\n`,
  'main.js': `import { Hearth, HearthError } from '${PKG.name}';
window.generate = async (url, options, prompt) => {
  const llm = await Hearth.load(url, options);
  try {
    const r = await llm.generate(prompt, { raw: true, maxTokens: 16, temperature: 0 });
    return { tokens: r.tokens, text: r.text, info: llm.info, typed: HearthError.name };
  } finally {
    await llm.unload();
  }
};
`,
  // Checked by tsc against the package's own types (never run).
  'check.ts': `import { Hearth, HearthError, type ModelInfo, type GenerateResult } from '${PKG.name}';
export async function use(url: string): Promise<string> {
  const llm = await Hearth.load(url, { nThreads: 2, onProgress: ({ loaded, total, phase }) => void [loaded, total, phase] });
  const info: ModelInfo = llm.info;
  const build: 'simd' | 'threads' = info.build;
  const r: GenerateResult = await llm.generate('hi', { raw: true, maxTokens: 4 });
  for await (const piece of llm.chat([{ role: 'user', content: 'hi' }])) void piece;
  const turn = await llm.conversation({ system: 'be brief' }).send('hi').result;
  const dropped: number = turn.dropped;
  const e = new HearthError('load_error', 'x');
  return build + r.text + dropped + e.type + info.url;
}
`,
  'tsconfig.json': JSON.stringify({
    compilerOptions: { target: 'es2022', module: 'es2022', moduleResolution: 'bundler', strict: true, noEmit: true, lib: ['es2022', 'dom', 'dom.iterable'] },
    files: ['check.ts'],
  }),
};

describe('the npm package in a bundled app', { timeout: 4 * LONG }, () => {
  let work;
  let app;
  let tarball;
  let server;
  let b;
  let native;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'hearth-npm-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, maxBuffer: 1 << 24 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('[')));
    tarball = { path: join(work, packed.filename), files: packed.files.map((f) => f.path) };
    app = join(work, 'app');
    await mkdir(app);
    for (const [name, text] of Object.entries(APP)) await writeFile(join(app, name), text);
    // The tarball has no dependencies: installing it needs no registry.
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball.path], { cwd: app });
    await run(process.execPath, [join(ROOT, 'tests/browser/node_modules/vite/bin/vite.js'), 'build'], { cwd: app, maxBuffer: 1 << 24 });
    server = await startServer({ HEARTH_WWW: join(app, 'dist') });
    b = await launch();
    native = await nativeGenerate(PROMPT, 16);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs the module, the worker, the three wasm builds and the types, and nothing else', () => {
    for (const f of ['package.json', 'www/hearth.js', 'www/worker.js', 'www/protocol.js', 'www/thread.js', 'types/hearth.d.ts', 'types/protocol.d.ts']) {
      assert.ok(tarball.files.includes(f), `${f} is in the package`);
    }
    for (const d of ['pkg', 'pkg-relaxed', 'pkg-threads']) assert.ok(tarball.files.includes(`www/${d}/hearth_bg.wasm`), `www/${d}/hearth_bg.wasm`);
    assert.deepEqual(tarball.files.filter((f) => !/^(package\.json|README\.md|LICENSE|www\/|types\/)/.test(f)), []);
    assert.ok(!tarball.files.some((f) => /app\.js|sw\.js|index\.html/.test(f)), 'not the chat page');
  });

  it('bundles the worker and emits the wasm as assets', async () => {
    const files = await readdir(join(app, 'dist'), { recursive: true });
    assert.equal(files.filter((f) => f.endsWith('.wasm')).length, 3, files.join(' '));
    assert.ok(!files.some((f) => f.includes('node_modules')), files.join(' '));
  });

  for (const [where, build] of [['an isolated page', 'threads'], ['a plain page', 'simd']]) {
    it(`gives the CLI's tokens in ${where} (the ${build} build)`, async () => {
      const base = build === 'threads' ? server.isolated : server.plain;
      const page = await b.page();
      const seen = b.requests.length;
      await page.goto(base + 'index.html');
      await page.waitForFunction(() => typeof window.generate === 'function');
      const out = await page.evaluate(
        ({ url, prompt, options }) => window.generate(url, options, prompt),
        { url: base.replace(/\/$/, '') + MODEL_URL_PATH, prompt: PROMPT, options: build === 'threads' ? { nThreads: 2 } : {} },
      );
      assert.equal(out.info.build, build, out.info.reason);
      if (build === 'threads') assert.equal(out.info.threads, 2);
      assert.deepEqual(out.tokens, native.tokens);
      assert.equal(out.text, native.text);
      const asked = b.requests.slice(seen).map((u) => new URL(u).pathname);
      assert.ok(asked.some((p) => /^\/assets\/worker[-.\w]*\.js$/.test(p)), `the bundled worker ran: ${asked.join(' ')}`);
      assert.ok(asked.some((p) => /^\/assets\/.*\.wasm$/.test(p)), `the wasm came from the bundle's assets: ${asked.join(' ')}`);
      if (build === 'threads') assert.ok(asked.some((p) => /^\/assets\/thread[-.\w]*\.js$/.test(p)), `the helper thread was bundled: ${asked.join(' ')}`);
    });
  }

  it('type-checks a TypeScript user of the package against its types', async () => {
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = await run(process.execPath, [tsc, '-p', join(app, 'tsconfig.json')], { cwd: app }).catch((e) => e);
    assert.equal(r.code ?? 0, 0, `${r.stdout}${r.stderr}`);
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
