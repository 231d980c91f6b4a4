// The app shell offline, and cross-origin isolation where the host sends no COOP/COEP headers.
//
// Offline: network first (so a new build shows up at once), a cached copy when the network is off.
// It handles only the shell's own files and the app's page: the model never passes through here
// (it is stored in OPFS by the worker), nor does anything from another origin.
//
// The cache holds whole snapshots of the shell, never a mix: a snapshot is every file fetched anew
// into a new cache, marked complete last; offline answers come from the newest complete one. When
// a file fetched online differs from the snapshot's copy (a new build), a new snapshot is taken and
// the old ones go, so new JS never meets old wasm offline. A response is kept only when it is what
// its path says (a captive portal's HTML page is not kept as hearth_bg.wasm).
//
// Isolation: every response it serves (the page and the shell's scripts and wasm, from the network
// or the cache) carries Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy:
// require-corp and Cross-Origin-Resource-Policy: same-origin, added when the server did not send
// them. A page it serves is then cross-origin isolated, and the threaded build can run;
// isolation.js registers this worker and reloads the page once when it was loaded without it.
// When it adds the headers to a page it says so in `Server-Timing: coi;desc="service worker"`,
// which the page reads from its navigation timing.

const PREFIX = 'hearth-shell-';
const COMPLETE = '/__hearth_snapshot_complete__';
/**
 * The built files (paths relative to this file): `./build.sh dist` (tools/dist.mjs) writes the
 * list of everything it built here; in www/ it stays null and SHELL + OPTIONAL below apply.
 * @type {string[]|null}
 */
const BUILT = null;
const SHELL = [
  './',
  'index.html',
  'app.js',
  'style.css',
  'hearth.js',
  'protocol.js',
  'isolation.js',
  'worker.js',
  'storage.js',
  'hearth-chat.js',
  'markdown.js',
  'chats.js',
  'models.js',
  'vendor/markdown-it.mjs',
  'pkg/hearth.js',
  'pkg/hearth_bg.wasm',
];
/** Cached when present; a deployment without a threaded build is fine. */
const OPTIONAL = BUILT
  ? []
  : ['thread.js', 'pkg-relaxed/hearth.js', 'pkg-relaxed/hearth_bg.wasm', 'pkg-threads/hearth.js', 'pkg-threads/hearth_bg.wasm'];
const REQUIRED = BUILT ? ['./', ...BUILT] : SHELL;

/** @type {ServiceWorkerGlobalScope} */
const sw = /** @type {any} */ (self);

const scope = () => new URL(sw.registration.scope);
const shellPaths = () => new Set([...REQUIRED, ...OPTIONAL].map((p) => new URL(p, scope()).pathname));
/** The app's pages: the scope itself and its index.html (any query). */
const isAppPage = (url) => url.pathname === scope().pathname || url.pathname === new URL('index.html', scope()).pathname;

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** Whether a response is what `path` should be (a wasm file must start with wasm's magic bytes). */
async function fits(path, res) {
  if (!res.ok || res.type !== 'basic' || res.status !== 200) return false;
  const type = res.headers.get('Content-Type') ?? '';
  if (path.endsWith('.wasm')) {
    const head = new Uint8Array(await res.clone().arrayBuffer()).subarray(0, 4);
    return WASM_MAGIC.every((b, i) => head[i] === b);
  }
  if (/\.m?js$/.test(path)) return /javascript/.test(type);
  if (path.endsWith('.css')) return type.startsWith('text/css');
  if (path.endsWith('/') || path.endsWith('.html')) return type.startsWith('text/html');
  return !type.startsWith('text/html'); // anything else the page loads: not a portal's page
}

/** Fetches the whole shell into a new cache; the older snapshots go once it is complete. */
async function snapshot() {
  const name = `${PREFIX}${Date.now()}`;
  const cache = await caches.open(name);
  try {
    const put = async (p, required) => {
      const url = new URL(p, scope());
      const res = await fetch(new Request(url, { cache: 'no-cache' })).catch(() => null);
      if (res && (await fits(url.pathname, res))) return cache.put(url, res);
      if (required) throw new Error(`${p} could not be fetched as it should be`);
    };
    await Promise.all([...REQUIRED.map((p) => put(p, true)), ...OPTIONAL.map((p) => put(p, false))]);
    await cache.put(COMPLETE, new Response('1'));
  } catch (e) {
    await caches.delete(name);
    throw e;
  }
  for (const old of await caches.keys()) if (old.startsWith(PREFIX) && old !== name) await caches.delete(old);
}

/** The newest complete snapshot, if any. */
async function current() {
  const names = (await caches.keys()).filter((n) => n.startsWith(PREFIX)).sort().reverse();
  for (const n of names) {
    const c = await caches.open(n);
    if (await c.match(COMPLETE)) return c;
  }
  return null;
}

/**
 * Snapshots run one at a time: each deletes every other snapshot's cache when it completes, so two
 * at once (the install's, and a refresh started by the page's first fetches) could delete each
 * other's and leave none.
 */
let queue = Promise.resolve();
function oneAtATime() {
  const run = queue.then(snapshot);
  queue = run.catch(() => {});
  return run;
}

let refreshing = null;
function refresh() {
  refreshing ??= oneAtATime()
    .catch(() => {})
    .finally(() => (refreshing = null));
  return refreshing;
}

sw.addEventListener('install', (event) => {
  event.waitUntil(oneAtATime().then(() => sw.skipWaiting()));
});

sw.addEventListener('activate', (event) => {
  event.waitUntil(sw.clients.claim());
});

sw.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  const url = new URL(req.url);
  if (url.origin !== location.origin) return;
  const page = req.mode === 'navigate' && isAppPage(url);
  if (!page && !shellPaths().has(url.pathname)) return; // the model and everything else: the network
  event.respondWith(networkFirst(event, page).then((res) => isolated(res, page)));
});

const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * `res` with the isolation headers it lacks (a new Response: a fetched one's headers are
 * immutable). A page that got them from here says so in Server-Timing.
 * @param {Response} res @param {boolean} page
 */
function isolated(res, page) {
  const missing = Object.keys(ISOLATION).filter((h) => !res.headers.has(h));
  if (!missing.length || res.status === 0) return res;
  const headers = new Headers(res.headers);
  for (const h of missing) headers.set(h, ISOLATION[h]);
  if (page && missing.includes('Cross-Origin-Embedder-Policy')) headers.append('Server-Timing', 'coi;desc="service worker"');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

/** Pages are kept by path (the query, e.g. ?model=, does not make another copy). */
function key(req, page) {
  if (!page) return req.url;
  const u = new URL(req.url);
  u.search = '';
  u.hash = '';
  return u.href;
}

/** @param {FetchEvent} event @param {boolean} page @returns {Promise<Response>} */
async function networkFirst(event, page) {
  const req = event.request;
  try {
    const res = await fetch(req);
    const path = new URL(req.url).pathname;
    if (await fits(page ? '/' : path, res)) {
      // A changed file means a new build: take a new snapshot of all of it (in the background).
      const cached = await (await current())?.match(key(req, page));
      const version = (r) => r?.headers.get('ETag') ?? r?.headers.get('Last-Modified') ?? null;
      if (!cached || version(cached) !== version(res)) event.waitUntil(refresh());
    }
    return res;
  } catch (e) {
    const snap = await current();
    const hit = (await snap?.match(key(req, page))) ?? (page ? await snap?.match(new URL('./', scope()).href) : undefined);
    if (hit) return hit;
    throw e;
  }
}
