// Cross-origin isolation on any host, and which build runs and why, in words for the page.
//
// The threaded build needs SharedArrayBuffer, which a page has only when it is cross-origin
// isolated: served with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
// require-corp. Where the host sends those headers (tools/serve.mjs, a host that reads dist's
// `_headers`), the page is isolated from the start. Where it sends none (GitHub Pages, a plain
// `python3 -m http.server`), the service worker (sw.js) adds them to the page and the files it
// serves; but a page is isolated or not from the response it was loaded with, so the first visit,
// which the service worker did not serve yet, is reloaded once, as soon as the service worker
// controls it. If the page is still not isolated after that one reload, it stays as it is (the
// single-threaded build runs) and `reason` says why.
//
//   import { isolate, describeBuild } from './isolation.js';
//   const isolation = await isolate('./sw.js');   // may reload the page once (then never resolves)
//   status.textContent = describeBuild(llm.info, isolation);

const RELOADED = 'hearth-isolation-reloaded';

/**
 * @typedef {object} Isolation
 * @property {boolean} isolated       `crossOriginIsolated`
 * @property {'headers'|'service worker'|null} by  what made the page isolated: the server's
 *   headers, or the service worker adding them
 * @property {string} reason          one sentence on how it came to be so
 */

/** @returns {Isolation} */
function current(notIsolatedBecause = 'the server sends no COOP/COEP headers and no service worker adds them') {
  if (!globalThis.crossOriginIsolated) return { isolated: false, by: null, reason: `not cross-origin isolated: ${notIsolatedBecause}` };
  const nav = /** @type {PerformanceNavigationTiming|undefined} */ (performance.getEntriesByType?.('navigation')[0]);
  const bySw = !!nav?.serverTiming?.some((t) => t.name === 'coi' && t.description === 'service worker');
  return bySw
    ? { isolated: true, by: 'service worker', reason: 'cross-origin isolated by the service worker (the server sends no COOP/COEP headers)' }
    : { isolated: true, by: 'headers', reason: 'cross-origin isolated by the server’s COOP/COEP headers' };
}

/**
 * Registers the service worker at `swUrl` (the offline shell, and the isolation headers) and
 * resolves with the page's isolation. When the page is not isolated and has not been reloaded for
 * this yet, it waits until the service worker controls the page and reloads it (the promise then
 * never resolves).
 * @param {string|URL} swUrl  resolved against the page, as `navigator.serviceWorker.register` does
 * @returns {Promise<Isolation>}
 */
export async function isolate(swUrl) {
  if (!('serviceWorker' in navigator)) return current('this browser has no service workers');
  let registration;
  try {
    registration = await navigator.serviceWorker.register(swUrl);
  } catch (e) {
    return current(`the service worker could not be registered (${e?.message ?? e})`);
  }
  if (globalThis.crossOriginIsolated) {
    sessionStorage.removeItem(RELOADED);
    return current();
  }
  if (sessionStorage.getItem(RELOADED)) {
    sessionStorage.removeItem(RELOADED);
    return current('the page was reloaded under the service worker and is still not isolated (this browser may not allow it)');
  }
  // A page the newest service worker already controls cannot gain isolation by a reload. One that
  // no service worker controls yet (a first visit, a hard reload), or an older one does while a
  // new one installs, can: once it is controlled (at once for a hard reload: a normal reload is).
  const sw = navigator.serviceWorker;
  const pending = registration.installing || registration.waiting;
  if (sw.controller && !pending) return current('the service worker serves this page without making it isolated');
  if (pending && !(await controlled(pending))) return current('the service worker could not be installed');
  sessionStorage.setItem(RELOADED, '1');
  location.reload();
  return new Promise(() => {});
}

/**
 * Whether the page comes under a service worker as `worker` activates: true at the next
 * controllerchange, false when `worker` becomes redundant (its install failed) first.
 * @param {ServiceWorker} worker
 * @returns {Promise<boolean>}
 */
function controlled(worker) {
  return new Promise((resolve) => {
    navigator.serviceWorker.addEventListener('controllerchange', () => resolve(true), { once: true });
    worker.addEventListener('statechange', () => worker.state === 'redundant' && resolve(false));
  });
}

/**
 * One line for the page: which build runs and why.
 * @param {import('./protocol.js').ModelInfo} info
 * @param {Isolation} [isolation]  from `isolate`
 */
export function describeBuild(info, isolation) {
  const build =
    info.build === 'threads'
      ? `threaded build, ${info.threads} thread${info.threads > 1 ? 's' : ''}`
      : `single-threaded ${info.relaxedSimd ? 'relaxed-SIMD' : 'SIMD'} build`;
  const how = info.build === 'threads' && isolation?.by ? ` (isolated by ${isolation.by === 'headers' ? 'the server’s headers' : 'the service worker'})` : '';
  const not = info.build !== 'threads' && isolation && !isolation.isolated ? `; ${isolation.reason}` : '';
  return `${build}: ${info.reason}${how}${not}`;
}
