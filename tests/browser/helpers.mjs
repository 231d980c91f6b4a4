// Shared by the browser tests and benchmarks: start tools/serve.mjs on free ports, launch Debian's
// Chromium headless through playwright-core with a fresh profile, and log every request the
// browser makes (pages, workers and the service worker all show on the context's `request` event).

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const MODEL_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
export const MODEL_PATH = join(ROOT, 'models', MODEL_NAME);
export const MODEL_URL_PATH = `/models/${MODEL_NAME}`;
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Timeouts are generous on purpose: the machine may be a busy 2-core box. */
export const LONG = 10 * 60_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Starts tools/serve.mjs on free ports.
 * @returns {Promise<{isolated: string, plain: string, stop: () => Promise<void>}>} base URLs ending in '/'
 */
export async function startServer(env = {}) {
  const child = spawn(process.execPath, [join(ROOT, 'tools/serve.mjs')], {
    env: { ...process.env, PORT: '0', PLAIN_PORT: '0', HEARTH_QUIET: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((ok, fail) => {
    let buf = '';
    child.on('exit', (code) => fail(new Error(`serve.mjs exited with ${code}`)));
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /^listening (\S+) (\S+)$/m.exec(buf);
      if (m) ok(m);
    });
  });
  child.stdout.resume();
  return {
    isolated: line[1],
    plain: line[2],
    stop: () =>
      new Promise((ok) => {
        if (child.exitCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * Launches Chromium with a fresh (or the given) profile directory; `args` adds flags.
 * @param {{profile?: string, keepProfile?: boolean, args?: string[]}} [opts]
 */
export async function launch(opts = {}) {
  const profile = opts.profile ?? (await mkdtemp(join(tmpdir(), 'hearth-profile-')));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
    serviceWorkers: 'allow',
    viewport: { width: 1000, height: 800 },
  });
  context.setDefaultTimeout(LONG);
  /** Every URL the browser asked for, in order; `requestLog` adds the Range header asked for. */
  const requests = [];
  const requestLog = [];
  context.on('request', (r) => {
    requests.push(r.url());
    requestLog.push({ url: r.url(), range: r.headers().range ?? null });
  });
  /** Console lines and page errors, for failure messages. */
  const logs = [];
  const watch = (page) => {
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  };
  context.on('page', watch);
  context.pages().forEach(watch);
  return {
    context,
    profile,
    requests,
    requestLog,
    logs,
    async page() {
      return context.pages()[0] ?? context.newPage();
    },
    async close() {
      await context.close().catch(() => {});
      if (!opts.keepProfile && !opts.profile) await rm(profile, { recursive: true, force: true });
    },
  };
}

export { renderers } from '../../tools/procmem.mjs';

/** Requests that went anywhere but the loopback test server. */
export function foreignRequests(requests) {
  return requests.filter((u) => {
    if (u.startsWith('data:') || u.startsWith('blob:')) return false;
    try {
      return new URL(u).hostname !== '127.0.0.1';
    } catch {
      return true;
    }
  });
}

/**
 * A test server (started with `env`), a browser and a blank page on the isolated origin (the bench
 * page, which loads nothing by itself); `close()` ends them.
 */
export async function blankPage(env = {}, launchOpts = {}) {
  const server = await startServer(env);
  const b = await launch(launchOpts);
  const page = await b.page();
  await page.goto(server.isolated + 'bench/');
  return {
    server,
    b,
    page,
    close: async () => {
      await b.close();
      await server.stop();
    },
  };
}

/** The native CLI's greedy generation for a raw prompt (on the default model unless `model` names a file). */
export async function nativeGenerate(prompt, maxTokens, model = MODEL_PATH) {
  const bin = join(ROOT, 'target/release/hearth');
  const { stdout } = await promisify(execFile)(
    bin,
    ['generate', '--model', model, '--raw', '--prompt', prompt, '--max-tokens', String(maxTokens), '--temperature', '0', '--json'],
    { cwd: ROOT, maxBuffer: 1 << 24 },
  );
  return JSON.parse(stdout);
}

/** Opens the chat page and waits until the default model is loaded (the page's `hearthReady`). */
export async function openChat(b, base) {
  const page = await b.page();
  await page.goto(base);
  await page.waitForFunction(() => window.hearthApp?.state === 'ready' || window.hearthApp?.state === 'error', null, {
    timeout: LONG,
  });
  const state = await page.evaluate(() => ({ state: window.hearthApp.state, error: window.hearthApp.error }));
  if (state.state !== 'ready') throw new Error(`the page failed to load the model: ${state.error}\n${b.logs.join('\n')}`);
  return page;
}

/** Every file in hearth's OPFS directory of the page's origin: [name, size], sorted. */
export const opfsFiles = (page) =>
  page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    const out = [];
    try {
      const dir = await root.getDirectoryHandle('hearth-models');
      for await (const [name, h] of dir.entries()) out.push([name, h.kind === 'file' ? (await h.getFile()).size : -1]);
    } catch (e) {
      if (e.name !== 'NotFoundError') throw e;
    }
    return out.sort();
  });
