// Measures the two browser stores for model weights on the default model, in headless Chromium:
// Cache API vs the Origin Private File System (OPFS). For each: the time to store the file, and
// the time to get all of its bytes back in a worker (what a load from storage costs), plus the
// SHA-256 of the whole file with crypto.subtle (hearth verifies stored weights on every load).
// Runs alternate between the stores; medians of RUNS. Usage: node tests/browser/storage-bench.mjs [RUNS]
// The figures go into README.md ("Where the weights live, and why there").

import { launch, startServer, MODEL_URL_PATH } from './helpers.mjs';

const RUNS = Number(process.argv[2] ?? 5);

// Runs inside a dedicated worker (where hearth's loader runs).
const WORKER = `
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const t = async (f) => { const t0 = performance.now(); await f(); return performance.now() - t0; };
onmessage = async ({ data: { url, runs } }) => { try {
  const buf = await (await fetch(url)).arrayBuffer();
  const size = buf.byteLength;
  const root = await navigator.storage.getDirectory();
  const cache = await caches.open('bench');
  const r = { size, cachePut: [], cacheRead: [], cacheBlobSlices: [], opfsWrite: [], opfsRead: [], opfsSyncRead: [], opfsBlobSlices: [], sha256: [] };
  const slices = (blob) => { // FileReaderSync over 8 MiB slices: the streaming alternative
    const fr = new FileReaderSync(); let n = 0;
    for (let o = 0; o < blob.size; o += 8 << 20) n += fr.readAsArrayBuffer(blob.slice(o, o + (8 << 20))).byteLength;
    if (n !== size) throw new Error('short read');
  };
  for (let i = 0; i < runs; i++) {
    await cache.delete(url);
    r.cachePut.push(await t(() => cache.put(url, new Response(buf))));
    r.cacheRead.push(await t(async () => { const b = await (await cache.match(url)).arrayBuffer(); if (b.byteLength !== size) throw 0; }));
    r.cacheBlobSlices.push(await t(async () => slices(await (await cache.match(url)).blob())));
    await root.removeEntry('bench.gguf').catch(() => {});
    r.opfsWrite.push(await t(async () => {
      const fh = await root.getFileHandle('bench.gguf', { create: true });
      const w = await fh.createWritable(); await w.write(buf); await w.close();
    }));
    r.opfsRead.push(await t(async () => { const fh = await root.getFileHandle('bench.gguf'); const b = await (await fh.getFile()).arrayBuffer(); if (b.byteLength !== size) throw 0; }));
    r.opfsBlobSlices.push(await t(async () => slices(await (await root.getFileHandle('bench.gguf')).getFile())));
    r.opfsSyncRead.push(await t(async () => {
      const h = await (await root.getFileHandle('bench.gguf')).createSyncAccessHandle();
      const b = new Uint8Array(h.getSize()); h.read(b, { at: 0 }); h.close();
    }));
    r.sha256.push(await t(() => crypto.subtle.digest('SHA-256', buf)));
  }
  await cache.delete(url); await caches.delete('bench'); await root.removeEntry('bench.gguf').catch(() => {});
  const out = { size };
  for (const [k, v] of Object.entries(r)) if (Array.isArray(v)) out[k] = { median: Math.round(median(v)), runs: v.map(Math.round) };
  postMessage(out);
} catch (e) { postMessage({ error: String(e && e.stack || e) }); } };`;

const server = await startServer();
const b = await launch();
try {
  const page = await b.page();
  page.on('crash', () => console.error('the page crashed'));
  await page.goto(server.isolated + 'storage-bench'); // any page of the origin without the app's CSP
  const result = await page.evaluate(
    async ({ code, url, runs }) => {
      const w = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
      return new Promise((ok, fail) => {
        w.onmessage = (e) => ok(e.data);
        w.onerror = (e) => fail(new Error(e.message));
        w.postMessage({ url, runs });
      });
    },
    { code: WORKER, url: new URL(MODEL_URL_PATH, server.isolated).href, runs: RUNS },
  );
  if (result.error) throw new Error(result.error);
  console.log(`Chromium ${b.context.browser()?.version() ?? ''}, ${(result.size / 1e6).toFixed(1)} MB, ${RUNS} runs, ms (median):`);
  for (const [k, v] of Object.entries(result)) if (k !== 'size') console.log(`  ${k.padEnd(16)} ${String(v.median).padStart(6)}   [${v.runs.join(', ')}]`);
} finally {
  await b.close();
  await server.stop();
}
