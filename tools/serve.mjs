#!/usr/bin/env node
// hearth's development server: no dependencies, loopback only.
//
//   http://127.0.0.1:$PORT/      www/ and /models/, cross-origin isolated (COOP same-origin +
//                                 COEP require-corp + CORP same-origin): the chat page, and the
//                                 page where a threaded build (www/pkg-threads/) may run.
//   http://127.0.0.1:$PORT+1/    the same files WITHOUT COOP/COEP, as an ordinary site that embeds
//                                 <hearth-chat> would serve them (crossOriginIsolated is false there).
//
// Models are served with Content-Length, Accept-Ranges, ETag and single-range requests (206 / 416,
// If-Range honoured). HTML may not be framed by other sites (frame-ancestors).
// Environment: PORT (8080), PLAIN_PORT (PORT+1), HOST (127.0.0.1), HEARTH_WWW (www/), HEARTH_MODELS (models/),
// HEARTH_QUIET=1 to skip the request log. Prints one line `listening <isolated-url> <plain-url>`
// once both listeners are up (the browser tests wait for it).
//
// HEARTH_FAULTS=1 (the browser tests) adds `/fault/<faults>/<any name>`: a model file served with
// faults, for the failure-mode tests. <faults> is comma-separated: `file=NAME` (under models/;
// default the default model), `drop=N` (the first request for the whole file is cut after N bytes),
// `stall=N` (the first request for the whole file stops sending after N bytes, connection left open),
// `stallall=N` (every request stalls), `gzip` (compressed: Content-Encoding, and Content-Length of
// the compressed bytes, as static hosts send it), `unasked206` (a 206 with Content-Range for a request that asked for no range),
// `noranges` (Range is ignored), `split` (serve the file named after the faults, under models/: the
// shards of a split model keep their faults). Otherwise the name after the faults is not read (any
// escapes may stand there).

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const WWW = resolve(process.env.HEARTH_WWW ?? join(ROOT, 'www'));
const MODELS = resolve(process.env.HEARTH_MODELS ?? join(ROOT, 'models'));
const HOST = process.env.HOST ?? '127.0.0.1';
const PORT = Number(process.env.PORT ?? 8080);
const QUIET = process.env.HEARTH_QUIET === '1';
const FAULTS = process.env.HEARTH_FAULTS === '1';
const DEFAULT_MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';

// The page's policy (www/index.html has it as a meta tag). A worker's CSP comes from its own
// response, not from the page, so scripts carry it as a header too (ignored for page scripts).
// connect-src names Hugging Face, where the model picker's downloads come from: huggingface.co
// answers a file's /resolve/ URL with a redirect to one of its CDN hosts (cdn-lfs*.huggingface.co,
// cdn-lfs*.hf.co, cas-bridge.xethub.hf.co, *.cdn.hf.co …), and CSP checks every hop.
const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; " +
  "connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; " +
  "style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'";

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
};

/** Maps a URL path to a file under `base`, or null when it would escape it. */
function within(base, urlPath) {
  const rel = normalize(decodeURIComponent(urlPath)).replace(/^([/\\])+/, '');
  const full = resolve(base, rel);
  return full === base || full.startsWith(base + sep) ? full : null;
}

/** Parses a single `bytes=` range against `size`: {start, end} (inclusive), 'invalid', or null (none). */
export function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid'; // multi-range or junk: not served
  let start, end;
  if (m[1] === '') {
    // suffix: the last N bytes
    const n = Number(m[2]);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'invalid' : { start, end };
}

/** `/fault/a,b=1/name` → {a: true, b: '1'}; null for any other path. */
function faultSpec(path) {
  const m = /^\/fault\/([^/]*)\/([^/]*)$/.exec(path);
  if (!m) return null;
  const spec = { name: m[2] };
  for (const part of m[1].split(',').filter(Boolean)) {
    const [k, v] = part.split('=');
    spec[k] = v ?? true;
  }
  return spec;
}

/** URLs whose one-shot fault (drop, stall) has happened. */
const faultsDone = new Set();
const gzipCache = new Map();
/** The gzip of `file` (kept while its mtime stays). */
async function gzipped(file, mtimeMs) {
  const hit = gzipCache.get(file);
  if (hit?.mtimeMs === mtimeMs) return hit.body;
  const body = gzipSync(await readFile(file), { level: 1 });
  gzipCache.set(file, { mtimeMs, body });
  return body;
}

/** Pipes `stream` to `res`, cutting (`drop`) or stalling (`stall`) after `after` bytes. */
function pipeWithFault(stream, res, req, { after, mode }) {
  let sent = 0;
  stream.on('data', (chunk) => {
    if (sent + chunk.length <= after) {
      sent += chunk.length;
      if (!res.write(chunk)) {
        stream.pause();
        res.once('drain', () => stream.resume());
      }
      return;
    }
    const head = chunk.subarray(0, after - sent);
    sent = after;
    stream.destroy();
    res.write(head, () => {
      if (mode === 'drop') res.socket?.destroy();
      // 'stall': nothing more is sent; the connection stays open until the client gives up.
    });
  });
  stream.on('end', () => res.end());
  stream.on('error', () => res.destroy());
  req.on('close', () => stream.destroy());
}

function handler(isolated) {
  return async (req, res) => {
    try {
      await serve(isolated, req, res);
    } catch (e) {
      // A bad request (e.g. a malformed %-escape) gets an answer; the server goes on.
      if (!res.headersSent) res.writeHead(e instanceof URIError ? 400 : 500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(e instanceof URIError ? 'bad request\n' : 'internal error\n');
      if (!(e instanceof URIError)) console.error(e);
    }
  };
}

async function serve(isolated, req, res) {
  const t0 = Date.now();
  res.on('finish', () => {
    if (!QUIET) console.log(`${isolated ? 'iso ' : 'plain'} ${req.method} ${req.url} ${res.statusCode} ${Date.now() - t0}ms`);
  });
  if (isolated) {
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  } else {
    // An embedding site may load the module, worker and wasm from here, and resume downloads.
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'ETag, Content-Range, Accept-Ranges');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': 'Range, If-Range', 'Access-Control-Max-Age': '600' }).end();
      return;
    }
  }
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  let path;
  try {
    path = new URL(req.url, 'http://x').pathname;
  } catch {
    res.writeHead(400).end();
    return;
  }
  const fault = FAULTS ? faultSpec(path) : null;
  const isModel = path.startsWith('/models/') || !!fault;
  let file = fault
    ? within(MODELS, String(fault.file === true || !fault.file ? ((fault.split && fault.name) || DEFAULT_MODEL) : fault.file))
    : isModel
      ? within(MODELS, path.slice('/models/'.length))
      : within(WWW, path);
  if (!file) {
    res.writeHead(403).end();
    return;
  }
  let st = await stat(file).catch(() => null);
  if (st?.isDirectory()) {
    if (!path.endsWith('/')) {
      res.writeHead(301, { Location: path + '/' }).end();
      return;
    }
    file = join(file, 'index.html');
    st = await stat(file).catch(() => null);
  }
  if (!st?.isFile()) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
    return;
  }
  const headers = {
    'Content-Type': MIME[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'Last-Modified': st.mtime.toUTCString(),
    ETag: `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`,
    // The app revalidates (the service worker handles offline); models are stored by the page.
    'Cache-Control': 'no-cache',
    'Accept-Ranges': 'bytes',
  };
  if (isolated && /\.m?js$/.test(file)) headers['Content-Security-Policy'] = CSP;
  // The page's meta-tag policy cannot say who may frame it: a header must.
  if (/\.html$/.test(file)) headers['Content-Security-Policy'] = "frame-ancestors 'self'";
  if (fault?.gzip) {
    // As a static host or CDN sends it: compressed, with the compressed Content-Length.
    const body = await gzipped(file, st.mtimeMs);
    delete headers['Accept-Ranges'];
    res.writeHead(200, { ...headers, 'Content-Encoding': 'gzip', 'Content-Length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  // A range applies unless If-Range names another version of the file.
  const ifRange = req.headers['if-range'];
  const wanted = fault?.noranges || (ifRange && ifRange !== headers.ETag && ifRange !== headers['Last-Modified']) ? undefined : req.headers.range;
  let range = parseRange(wanted, st.size);
  if (fault?.unasked206 && !range && st.size > 0) range = { start: 0, end: st.size - 1 };
  if (range === 'invalid') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${st.size}` }).end();
    return;
  }
  const { start, end } = range ?? { start: 0, end: st.size - 1 };
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
  headers['Content-Length'] = String(Math.max(0, end - start + 1));
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return;
  }
  const stream = createReadStream(file, { start, end });
  const whole = !wanted;
  // drop and stall hit the first request for the whole file at this URL; stallall every one.
  const first = fault && whole && (fault.drop || fault.stall) && !faultsDone.has(req.url);
  if (first) faultsDone.add(req.url);
  const cut = first || fault?.stallall;
  if (cut) {
    const mode = fault.drop && whole ? 'drop' : 'stall';
    pipeWithFault(stream, res, req, { after: Number(fault.drop || fault.stall || fault.stallall), mode });
    return;
  }
  stream.on('error', () => res.destroy());
  req.on('close', () => stream.destroy());
  stream.pipe(res);
}

function listen(port, isolated) {
  return new Promise((ok, fail) => {
    const server = createServer(handler(isolated));
    server.on('error', fail);
    server.listen(port, HOST, () => ok(server));
  });
}

const isolated = await listen(PORT, true);
// PORT=0 (the tests) picks free ports for both; otherwise the plain one is PORT+1 unless PLAIN_PORT says.
const plain = await listen(Number(process.env.PLAIN_PORT ?? (PORT === 0 ? 0 : PORT + 1)), false);
const url = (s) => `http://${HOST}:${s.address().port}/`;
console.log(`listening ${url(isolated)} ${url(plain)}`);
console.log(`  ${url(isolated)}  chat page (cross-origin isolated)`);
console.log(`  ${url(plain)}  same files without COOP/COEP (embed demo: ${url(plain)}embed.html)`);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    isolated.close();
    plain.close();
    process.exit(0);
  });
}
