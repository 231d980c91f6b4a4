// The app shell offline. Network first (so a new build shows up at once), the cache when the
// network is off. It handles only the shell's own files: the model never passes through here
// (it is stored in OPFS by the worker), nor does anything from another origin.

const CACHE = 'hearth-shell-v2';
const SHELL = [
  './',
  'index.html',
  'app.js',
  'style.css',
  'hearth.js',
  'worker.js',
  'storage.js',
  'hearth-chat.js',
  'pkg/hearth.js',
  'pkg/hearth_bg.wasm',
];
/** Cached when present; a deployment without a threaded build is fine. */
const OPTIONAL = [
  'thread.js',
  'pkg-relaxed/hearth.js',
  'pkg-relaxed/hearth_bg.wasm',
  'pkg-threads/hearth.js',
  'pkg-threads/hearth_bg.wasm',
];

const scope = () => new URL(self.registration.scope);
const shellPaths = () => new Set([...SHELL, ...OPTIONAL].map((p) => new URL(p, scope()).pathname));

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(SHELL.map((p) => new Request(new URL(p, scope()), { cache: 'no-cache' })));
      await Promise.all(OPTIONAL.map((p) => cache.add(new URL(p, scope())).catch(() => {})));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith('hearth-shell-') && name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  const url = new URL(req.url);
  if (url.origin !== location.origin) return;
  const isPage = req.mode === 'navigate' && url.pathname.startsWith(scope().pathname);
  if (!isPage && !shellPaths().has(url.pathname)) return; // the model and everything else: the network
  event.respondWith(networkFirst(req, isPage));
});

/** Pages are kept by path (the query, e.g. ?model=, does not make another copy). */
function key(req, isPage) {
  if (!isPage) return req;
  const u = new URL(req.url);
  u.search = '';
  u.hash = '';
  return u.href;
}

async function networkFirst(req, isPage) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(req);
    if (res.ok && res.type === 'basic') await cache.put(key(req, isPage), res.clone());
    return res;
  } catch (e) {
    const hit = (await cache.match(key(req, isPage))) ?? (isPage ? await cache.match(new URL('./', scope()).href) : undefined);
    if (hit) return hit;
    throw e;
  }
}
