#!/usr/bin/env node
// `./build.sh dist`: www/ as a static site for any host, in dist/ (or the folder given).
//
//   dist/index.html           the chat page (its scripts and style under assets/)
//   dist/hearth.js            the module, and
//   dist/hearth-chat.js       the element, at names that stay put: each re-exports its hashed file
//   dist/sw.js                the service worker (offline shell + cross-origin isolation), with the
//                             list of the built files written into it
//   dist/assets/…             everything the page, the element and the module load — scripts, the
//                             worker, the three wasm builds, the style, whatever www/vendor/ the page
//                             imports — named by content (`worker.3f9a1c2b.js`): cacheable for ever
//   dist/asset-manifest.json  source path → built path, and the list of files
//   dist/_headers             COOP/COEP/CORP, the CSP and cache lifetimes, for hosts that read it
//
// What goes in is found by following references from the entries, not from a list: the HTML's
// `<script src>` and `<link href>`, CSS `url()` and `@import`, and in JavaScript every static and
// dynamic `import`, `import.meta.resolve('…')` and `new URL('…', import.meta.url)` (es-module-lexer finds them, so text in
// comments and strings is never taken for one). Files are hashed after the files they reference,
// so a file's name changes whenever anything it loads changes.
//
// Usage: node tools/dist.mjs [--out DIR] [--www DIR]

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, extname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, parse } from 'es-module-lexer';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? resolve(args[args.indexOf(name) + 1]) : fallback);
const WWW = opt('--www', join(ROOT, 'www'));
const OUT = opt('--out', join(ROOT, 'dist'));

/** The page, and the two modules other sites import by a name that must not change. */
const PAGE = 'index.html';
const STABLE_MODULES = ['hearth.js', 'hearth-chat.js'];
const ASSETS = 'assets';

// The policy www/index.html carries as a meta tag; a worker's comes from its own response, so the
// host sends it too (as tools/serve.mjs does). `frame-ancestors` only works as a header. connect-src
// names Hugging Face and its CDN hosts for the model picker's downloads (see tools/serve.mjs).
const CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; " +
  "connect-src 'self' https://huggingface.co https://*.huggingface.co https://*.hf.co; " +
  "style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'";

const fail = (msg) => {
  throw new Error(`dist: ${msg}`);
};

/** A reference in a text file: where its specifier is, and the www/-relative file it names. */
/** @typedef {{start: number, end: number, target: string}} Ref */

/** Whether a specifier names a file next to the referrer (not a package, a scheme or data:). */
const isRelative = (spec) => /^\.{0,2}\//.test(spec) && !spec.startsWith('//');

/** @returns {string} the www/-relative path `spec` names from the file `from` */
function resolveRef(from, spec) {
  const path = posix.normalize(posix.join(posix.dirname(from), spec.split(/[?#]/)[0]));
  if (path.startsWith('..')) fail(`${from} refers to ${spec}, outside ${WWW}`);
  if (!existsSync(join(WWW, path))) fail(`${from} refers to ${spec}, which does not exist (${join(WWW, path)})`);
  return path;
}

/** Module references: static and dynamic imports, re-exports, `new URL('…', import.meta.url)`. */
function jsRefs(path, text) {
  const [imports] = parse(text, path);
  /** @type {Ref[]} */
  const refs = [];
  for (const i of imports) {
    if (i.type === 'import-meta') {
      // `import.meta.resolve('./x')`: resolved as an import is.
      const resolveCall = /^\.resolve\(\s*(['"])([^'"\n]+)\1\s*\)/.exec(text.slice(i.end));
      if (resolveCall) {
        const spec = resolveCall[2];
        if (!isRelative(spec)) continue;
        const start = i.end + resolveCall[0].indexOf(resolveCall[1]) + 1;
        refs.push({ start, end: start + spec.length, target: resolveRef(path, spec) });
        continue;
      }
      // `new URL('x', import.meta.url)`: in `new URL(…)` anything but a scheme is relative.
      const before = /new\s+URL\(\s*(['"])([^'"\n]+)\1\s*,\s*$/.exec(text.slice(Math.max(0, i.start - 300), i.start));
      if (!before || !/^\.url\s*\)/.test(text.slice(i.end))) continue;
      const spec = before[2];
      if (/^[a-z][a-z0-9+.-]*:/i.test(spec)) continue;
      const end = i.start - before[0].length + before[0].lastIndexOf(before[1]);
      refs.push({ start: end - spec.length, end, target: resolveRef(path, spec.startsWith('.') || spec.startsWith('/') ? spec : `./${spec}`) });
      continue;
    }
    if (i.specifier === undefined) fail(`${path}: an import whose path is computed at run time cannot be followed (at ${i.start})`);
    const quoted = i.type === 'dynamic';
    const start = quoted ? i.start + 1 : i.start;
    const end = quoted ? i.end - 1 : i.end;
    if (!isRelative(i.specifier)) fail(`${path} imports "${i.specifier}": a static site cannot resolve a package name`);
    refs.push({ start, end, target: resolveRef(path, i.specifier) });
  }
  return refs;
}

/** `<script src>` and `<link href>` (data: and other schemes left alone). */
function htmlRefs(path, text) {
  /** @type {Ref[]} */
  const refs = [];
  for (const m of text.matchAll(/<(?:script|link)\b[^>]*?\s(?:src|href)\s*=\s*(["'])([^"']+)\1/gi)) {
    const spec = m[2];
    if (/^[a-z][a-z0-9+.-]*:/i.test(spec) || spec.startsWith('//')) continue;
    const end = m.index + m[0].length - 1;
    refs.push({ start: end - spec.length, end, target: resolveRef(path, spec.startsWith('/') ? `.${spec}` : spec) });
  }
  return refs;
}

/** CSS `url(…)` and `@import '…'`. */
function cssRefs(path, text) {
  /** @type {Ref[]} */
  const refs = [];
  for (const m of text.matchAll(/url\(\s*(["']?)([^"')]+)\1\s*\)|@import\s+(["'])([^"']+)\3/g)) {
    const spec = m[2] ?? m[4];
    if (/^[a-z][a-z0-9+.-]*:/i.test(spec) || spec.startsWith('#')) continue;
    const at = m.index + m[0].lastIndexOf(spec);
    refs.push({ start: at, end: at + spec.length, target: resolveRef(path, spec) });
  }
  return refs;
}

const TEXT = { '.js': jsRefs, '.mjs': jsRefs, '.html': htmlRefs, '.css': cssRefs };

/** www/-relative source path → dist-relative built path. */
const built = new Map();
/** dist-relative path → bytes, written at the end. */
const outputs = new Map();
const visiting = new Set();

/** Builds `path` after everything it references; returns its dist-relative path. */
async function build(path, { stableAs = null } = {}) {
  if (built.has(path) && !stableAs) return built.get(path);
  if (visiting.has(path)) fail(`a reference cycle through ${path}`);
  visiting.add(path);
  const bytes = await readFile(join(WWW, path));
  const refsOf = TEXT[extname(path)];
  const outPath = stableAs ?? null;
  let content = bytes;
  let text = null;
  if (refsOf) {
    text = bytes.toString('utf8');
    const refs = refsOf(path, text).sort((a, b) => b.start - a.start);
    for (const r of refs) {
      const target = await build(r.target);
      const from = posix.dirname(outPath ?? posix.join(ASSETS, path));
      let spec = posix.relative(from, target);
      if (!spec.startsWith('.')) spec = `./${spec}`;
      text = text.slice(0, r.start) + spec + text.slice(r.end);
    }
    content = Buffer.from(text, 'utf8');
  }
  visiting.delete(path);
  if (stableAs) {
    outputs.set(stableAs, content);
    return stableAs;
  }
  const hash = createHash('sha256').update(content).digest('hex').slice(0, 10);
  const ext = extname(path);
  const out = posix.join(ASSETS, `${path.slice(0, -ext.length)}.${hash}${ext}`);
  outputs.set(out, content);
  built.set(path, out);
  return out;
}

async function main() {
  await init;
  for (const f of [PAGE, 'sw.js', ...STABLE_MODULES]) if (!existsSync(join(WWW, f))) fail(`${join(WWW, f)} is missing`);
  for (const pkg of ['pkg', 'pkg-relaxed', 'pkg-threads']) {
    if (!existsSync(join(WWW, pkg, 'hearth_bg.wasm'))) fail(`${join(WWW, pkg)} is not built (./build.sh wasm)`);
  }

  await build(PAGE, { stableAs: PAGE });
  for (const m of STABLE_MODULES) {
    const target = await build(m);
    const exports = (await readFile(join(WWW, m), 'utf8')).match(/^export\s+default\b/m) ? `export { default } from './${target}';\n` : '';
    outputs.set(m, Buffer.from(`// ${m} at a name that stays put; the code is in the content-named file.\nexport * from './${target}';\n${exports}`));
  }

  // The service worker, told the files it keeps for offline use: the page and all it loads.
  const files = [...outputs.keys()].sort();
  const sw = await readFile(join(WWW, 'sw.js'), 'utf8');
  const marker = /^const BUILT = null;$/m;
  if (!marker.test(sw)) fail('sw.js has no `const BUILT = null;` line to write the file list into');
  outputs.set('sw.js', Buffer.from(sw.replace(marker, `const BUILT = ${JSON.stringify(files)};`)));

  const manifest = { files: Object.fromEntries([...built].sort()), entries: [PAGE, ...STABLE_MODULES, 'sw.js'], all: files };
  outputs.set('asset-manifest.json', Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));

  outputs.set(
    '_headers',
    Buffer.from(
      [
        '# For hosts that read a _headers file (Netlify, Cloudflare Pages): cross-origin isolation, so the',
        '# threaded build runs without the service worker reloading the page; the CSP, also for the workers;',
        '# content-named files cached for ever. Elsewhere sw.js adds the isolation headers itself.',
        '/*',
        '  Cross-Origin-Opener-Policy: same-origin',
        '  Cross-Origin-Embedder-Policy: require-corp',
        '  Cross-Origin-Resource-Policy: same-origin',
        '  X-Content-Type-Options: nosniff',
        `  Content-Security-Policy: ${CSP}`,
        '/',
        "  Content-Security-Policy: frame-ancestors 'self'",
        '/index.html',
        "  Content-Security-Policy: frame-ancestors 'self'",
        `/${ASSETS}/*`,
        '  Cache-Control: public, max-age=31536000, immutable',
        '',
      ].join('\n'),
    ),
  );

  await rm(OUT, { recursive: true, force: true });
  for (const [path, bytes] of outputs) {
    await mkdir(dirname(join(OUT, path)), { recursive: true });
    await writeFile(join(OUT, path), bytes);
  }
  const size = [...outputs.values()].reduce((n, b) => n + b.length, 0);
  console.log(`dist: ${outputs.size} files, ${(size / 2 ** 20).toFixed(1)} MiB in ${relative(process.cwd(), OUT) || '.'}`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
