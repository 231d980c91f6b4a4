// Where downloaded weights live: the Origin Private File System (OPFS), one directory per origin.
// Chosen over the Cache API by measurement (README.browser.md, "Where the weights live"): reading
// the 98 MB default model back takes ~110 ms from OPFS vs ~195 ms from the Cache API in headless
// Chromium, and OPFS lets a download stream to disk and become visible only once it is complete.
//
// Layout in `hearth-models/`, per model URL (key = first 32 hex digits of SHA-256(url)):
//   <key>.partial  bytes being downloaded (never read; removed on abort, swept when found later)
//   <key>.gguf     the complete file
//   <key>.json     its record, written last: the commit marker. No record, no entry.
// A record keeps what was true at store time — size and SHA-256 — so the loader can tell damaged
// bytes from good ones. Used by the worker (writes) and the page (Hearth.cache: list, delete, ...).

const DIR = 'hearth-models';

/**
 * @typedef {object} StoredModel
 * @property {string} url         the model's absolute URL (the key)
 * @property {number} size        bytes
 * @property {string} sha256      hex SHA-256 of the bytes, computed when stored
 * @property {string} storedAt    ISO date
 * @property {string|null} etag   the server's ETag, when it sent one
 * @property {string} [name]      file name part of the URL
 */

/** @returns {Promise<string>} hex SHA-256 of an ArrayBuffer or view. */
export async function sha256Hex(data) {
  const digest = await crypto.subtle.digest('SHA-256', data);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function keyFor(url) {
  return (await sha256Hex(new TextEncoder().encode(url))).slice(0, 32);
}

/** Whether this context has an OPFS at all (not in some private modes or very old browsers). */
export function storageAvailable() {
  return typeof navigator !== 'undefined' && !!navigator.storage?.getDirectory;
}

async function dir() {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create: true });
}

async function remove(d, name) {
  await d.removeEntry(name).catch((e) => {
    if (e?.name !== 'NotFoundError') throw e;
  });
}

async function readRecord(d, key) {
  try {
    const file = await (await d.getFileHandle(`${key}.json`)).getFile();
    const rec = JSON.parse(await file.text());
    return rec && typeof rec.url === 'string' && Number.isFinite(rec.size) && typeof rec.sha256 === 'string' ? rec : null;
  } catch {
    return null;
  }
}

/**
 * The stored entry for `url`, if complete: its record and file (a disk-backed File, not yet read).
 * An entry whose file is missing or of the wrong size is removed and reported as absent.
 * @returns {Promise<{record: StoredModel, file: File} | null>}
 */
export async function getEntry(url) {
  const d = await dir();
  const key = await keyFor(url);
  const record = await readRecord(d, key);
  if (!record || record.url !== url) return null;
  let file = null;
  try {
    file = await (await d.getFileHandle(`${key}.gguf`)).getFile();
  } catch {}
  if (!file || file.size !== record.size) {
    await deleteEntry(url);
    return null;
  }
  return { record, file };
}

/**
 * Starts storing `url`: bytes go to `<key>.partial` and become an entry only after `commit`.
 * @returns {Promise<{write(chunk: Uint8Array): Promise<void>, finish(): Promise<File>,
 *   commit(record: StoredModel): Promise<void>, abort(): Promise<void>}>}
 */
export async function beginEntry(url) {
  const d = await dir();
  const key = await keyFor(url);
  await deleteEntry(url); // a new download replaces whatever was there
  const handle = await d.getFileHandle(`${key}.partial`, { create: true });
  const writable = await handle.createWritable({ keepExistingData: false });
  let open = true;
  return {
    async write(chunk) {
      await writable.write(chunk);
    },
    /** Closes the partial file and returns it for verification (still not an entry). */
    async finish() {
      open = false;
      await writable.close();
      return handle.getFile();
    },
    /** Makes the verified file the entry for `url`: rename, then write the record last. */
    async commit(record) {
      await remove(d, `${key}.gguf`);
      await handle.move(`${key}.gguf`);
      const rh = await d.getFileHandle(`${key}.json`, { create: true });
      const w = await rh.createWritable();
      await w.write(JSON.stringify(record));
      await w.close();
    },
    async abort() {
      if (open) {
        open = false;
        await writable.abort().catch(() => {});
      }
      await remove(d, `${key}.partial`).catch(() => {});
    },
  };
}

/** Removes everything stored for `url` (record first, so a half-removed entry is never valid). */
export async function deleteEntry(url) {
  const d = await dir();
  const key = await keyFor(url);
  await remove(d, `${key}.json`);
  await remove(d, `${key}.gguf`);
  await remove(d, `${key}.partial`);
}

/**
 * Complete entries, newest first. Files without a record (an interrupted download, a crash
 * between rename and record) are swept unless `sweep` is false (the worker may be writing one).
 * @returns {Promise<StoredModel[]>}
 */
export async function listEntries({ sweep = false } = {}) {
  const d = await dir();
  const records = [];
  const files = new Map();
  for await (const [name, h] of d.entries()) {
    if (h.kind !== 'file') continue;
    const m = /^([0-9a-f]{32})\.(json|gguf|partial)$/.exec(name);
    if (!m) continue;
    if (m[2] === 'json') {
      const rec = await readRecord(d, m[1]);
      if (rec) records.push({ key: m[1], rec });
    } else files.set(name, h);
  }
  const out = [];
  for (const { key, rec } of records) {
    const fh = files.get(`${key}.gguf`);
    const size = fh ? (await fh.getFile()).size : -1;
    if (size === rec.size) out.push(rec);
    files.delete(`${key}.gguf`);
  }
  if (sweep) for (const name of files.keys()) if (name.endsWith('.gguf')) await remove(d, name);
  return out.sort((a, b) => String(b.storedAt).localeCompare(String(a.storedAt)));
}

/** Removes every stored model. */
export async function clearEntries() {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(DIR, { recursive: true }).catch((e) => {
    if (e?.name !== 'NotFoundError') throw e;
  });
}

/**
 * Bytes the stored models take, and the origin's usage and quota as the browser reports them.
 * @returns {Promise<{models: number, count: number, usage: number|null, quota: number|null, persisted: boolean|null}>}
 */
export async function usage() {
  const entries = await listEntries();
  const est = (await navigator.storage.estimate?.()) ?? {};
  const persisted = (await navigator.storage.persisted?.()) ?? null;
  return {
    models: entries.reduce((n, e) => n + e.size, 0),
    count: entries.length,
    usage: est.usage ?? null,
    quota: est.quota ?? null,
    persisted,
  };
}
