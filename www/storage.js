// Where downloaded weights live: the Origin Private File System (OPFS), one directory per origin.
// Chosen over the Cache API by measurement (README, "Where the weights live"): reading the 98 MB
// default model back takes ~110 ms from OPFS vs ~195 ms from the Cache API in headless Chromium,
// and OPFS lets a download stream to disk in place and become an entry only once it is complete.
//
// Layout in `hearth-models/`, per model URL (key = first 32 hex digits of SHA-256(url)):
//   <key>.partial       bytes downloaded so far, written in place (a sync access handle), so a
//                       dropped connection or a closed tab leaves them for the next load to resume
//   <key>.partial.json  what they are: {url, etag, lastModified, total, startedAt}, written before
//                       the first byte; a partial without it is never resumed
//   <key>.gguf          the complete file
//   <key>.json          its record, written last: the commit marker. No record, no entry.
// A record keeps what was true at store time — size and SHA-256 — so the loader can tell damaged
// bytes from good ones. Leftovers (partials nobody resumed for a week, files without a record)
// are swept by `sweep`, which the worker runs before it downloads.
// Used by the worker (writes) and the page (Hearth.cache: list, delete, ...). The writing half
// (`openPartial`) needs a dedicated worker: sync access handles exist only there.

const DIR = 'hearth-models';
/** A partial download nobody resumed for this long is removed. */
const PARTIAL_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
/** Web Locks name held while a download of `key` is written. */
export const lockName = (key) => `hearth-store ${key}`;

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

/**
 * Runs `op` again while it fails with NoModificationAllowedError, for up to ~2 s: a worker that
 * has just ended (an aborted load) releases its file's sync access handle a moment later.
 */
async function whenReleased(op) {
  for (let wait = 25; ; wait *= 2) {
    try {
      return await op();
    } catch (e) {
      if (e?.name !== 'NoModificationAllowedError' || wait > 1000) throw e;
      await new Promise((ok) => setTimeout(ok, wait));
    }
  }
}

async function remove(d, name) {
  await whenReleased(() => d.removeEntry(name)).catch((e) => {
    if (e?.name !== 'NotFoundError') throw e;
  });
}

async function readJson(d, name) {
  try {
    return JSON.parse(await (await (await d.getFileHandle(name)).getFile()).text());
  } catch {
    return null;
  }
}

/** Writes a small JSON file: through a sync access handle in a worker, else `createWritable`. */
async function writeJson(d, name, value) {
  const fh = await d.getFileHandle(name, { create: true });
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  if (typeof fh.createSyncAccessHandle === 'function') {
    const h = await fh.createSyncAccessHandle();
    try {
      h.truncate(0);
      if (h.write(bytes, { at: 0 }) !== bytes.byteLength) throw new DOMException('short write', 'QuotaExceededError');
      h.flush();
    } finally {
      h.close();
    }
    return;
  }
  const w = await fh.createWritable();
  try {
    await w.write(bytes);
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

async function readRecord(d, key) {
  const rec = await readJson(d, `${key}.json`);
  return rec && typeof rec.url === 'string' && Number.isFinite(rec.size) && typeof rec.sha256 === 'string' ? rec : null;
}

/**
 * The stored entry for `url`, if complete: its record and file (a disk-backed File, not yet read).
 * An entry whose file is missing or of the wrong size is removed and reported as absent.
 * `handle` is its file handle (for a read-only sync access handle: reads with no garbage).
 * @returns {Promise<{record: StoredModel, file: File, handle: FileSystemFileHandle} | null>}
 */
export async function getEntry(url) {
  const d = await dir();
  const key = await keyFor(url);
  const record = await readRecord(d, key);
  if (!record || record.url !== url) return null;
  let file = null;
  let handle = null;
  try {
    handle = await d.getFileHandle(`${key}.gguf`);
    file = await handle.getFile();
  } catch {}
  if (!file || file.size !== record.size) {
    await deleteEntry(url);
    return null;
  }
  return { record, file, handle };
}

/**
 * @typedef {object} PartialMeta  what a partial download is of
 * @property {string} url
 * @property {string|null} etag
 * @property {string|null} lastModified
 * @property {number} total        bytes of the whole file (0: unknown)
 * @property {string} startedAt
 */

/**
 * A download of `url` written in place. `offset` bytes are already there (from an earlier,
 * interrupted download described by `meta`; 0 when none can be resumed). Holds the file's sync
 * access handle: one writer per file, across tabs.
 */
export class Partial {
  /** @param {FileSystemDirectoryHandle} d @param {string} key @param {any} handle @param {PartialMeta|null} meta */
  constructor(d, key, fileHandle, handle, meta) {
    this.d = d;
    this.key = key;
    this.fileHandle = fileHandle;
    this.handle = handle;
    /** @type {PartialMeta|null} */
    this.meta = meta;
    this.offset = meta ? handle.getSize() : 0;
    this.sinceFlush = 0;
  }

  /** Starts over for a new response: the bytes so far are dropped and `meta` describes the new ones. */
  async restart(meta) {
    this.handle.truncate(0);
    this.handle.flush();
    this.offset = 0;
    this.meta = meta;
    await writeJson(this.d, `${this.key}.partial.json`, meta);
  }

  /** Appends `chunk` (a QuotaExceededError or any other storage error is thrown as is). */
  write(chunk) {
    const n = this.handle.write(chunk, { at: this.offset });
    if (n !== chunk.byteLength) {
      this.handle.truncate(this.offset);
      throw new DOMException(`storage took ${n} of ${chunk.byteLength} bytes`, 'QuotaExceededError');
    }
    this.offset += n;
    this.sinceFlush += n;
    // On disk every 32 MB, so a killed tab leaves most of what it downloaded to resume from.
    if (this.sinceFlush >= 32 << 20) {
      this.handle.flush();
      this.sinceFlush = 0;
    }
  }

  /** Bytes [from, to) of what was written, into `out` (a Uint8Array of to - from bytes). */
  readInto(out, from) {
    const n = this.handle.read(out, { at: from });
    if (n !== out.byteLength) throw new DOMException(`read ${n} of ${out.byteLength} bytes`, 'NotReadableError');
    return out;
  }

  /** Flushes and releases the file; the partial stays for a later resume. */
  close() {
    if (!this.handle) return;
    try {
      this.handle.flush();
    } catch {}
    this.handle.close();
    this.handle = null;
  }

  /** Makes the written bytes the entry for `record.url`: rename, then the record last. */
  async commit(record) {
    this.close();
    await remove(this.d, `${this.key}.gguf`);
    await this.fileHandle.move(`${this.key}.gguf`);
    await remove(this.d, `${this.key}.partial.json`);
    await writeJson(this.d, `${this.key}.json`, record);
  }

  /** Removes the partial (and its description). */
  async discard() {
    this.close();
    await remove(this.d, `${this.key}.partial`).catch(() => {});
    await remove(this.d, `${this.key}.partial.json`).catch(() => {});
  }
}

/**
 * Opens `url`'s partial download for writing, keeping what an earlier download left when its
 * description says it is of the same URL. Throws when the file is held by another writer
 * (NoModificationAllowedError) or storage fails.
 * @returns {Promise<Partial>}
 */
export async function openPartial(url) {
  const d = await dir();
  const key = await keyFor(url);
  const fileHandle = await d.getFileHandle(`${key}.partial`, { create: true });
  // (a sync access handle exists in workers only, where this runs; the DOM types do not have it)
  const handle = await whenReleased(() => /** @type {any} */ (fileHandle).createSyncAccessHandle());
  let meta = await readJson(d, `${key}.partial.json`);
  if (!meta || meta.url !== url || !(meta.etag || meta.lastModified)) {
    meta = null;
    handle.truncate(0);
  }
  return new Partial(d, key, fileHandle, handle, meta);
}

/** Removes everything stored for `url` (record first, so a half-removed entry is never valid). */
export async function deleteEntry(url) {
  const d = await dir();
  const key = await keyFor(url);
  for (const suffix of ['json', 'gguf', 'partial', 'partial.json']) await remove(d, `${key}.${suffix}`);
}

/** Every hearth file: key → {json?, gguf?, partial?, partialJson?} handles. */
async function filesByKey(d) {
  const byKey = new Map();
  for await (const [name, h] of d.entries()) {
    if (h.kind !== 'file') continue;
    const m = /^([0-9a-f]{32})\.(json|gguf|partial|partial\.json)$/.exec(name);
    if (!m) continue;
    const slot = { json: 'json', gguf: 'gguf', partial: 'partial', 'partial.json': 'partialJson' }[m[2]];
    if (!byKey.has(m[1])) byKey.set(m[1], {});
    byKey.get(m[1])[slot] = h;
  }
  return byKey;
}

/**
 * Complete entries, newest first.
 * @returns {Promise<StoredModel[]>}
 */
export async function listEntries() {
  const d = await dir();
  const out = [];
  for (const [key, files] of await filesByKey(d)) {
    if (!files.json || !files.gguf) continue;
    const rec = await readRecord(d, key);
    if (rec && (await files.gguf.getFile()).size === rec.size) out.push(rec);
  }
  return out.sort((a, b) => String(b.storedAt).localeCompare(String(a.storedAt)));
}

/**
 * Removes what no entry or live download owns: a `.gguf` without its record (a crash between
 * rename and record), a record without its `.gguf`, a partial without a description, and partials
 * untouched for a week. Files whose download is being written (its Web Lock held, in any tab) are
 * left alone. Also removes `keepOnly`'s other versions: entries whose URL differs from it only in
 * the query (`?v=2` replacing `?v=1`). Returns the names removed.
 * @param {{keepOnly?: string, now?: number}} [opts]
 * @returns {Promise<string[]>}
 */
export async function sweep({ keepOnly, now = Date.now() } = {}) {
  const d = await dir();
  const held = new Set();
  try {
    const { held: locks = [] } = (await navigator.locks?.query()) ?? {};
    for (const l of locks) if (l.name?.startsWith('hearth-store ')) held.add(l.name.slice('hearth-store '.length));
  } catch {}
  const sameFile = (u) => {
    try {
      const a = new URL(u);
      const b = new URL(keepOnly);
      return a.origin === b.origin && a.pathname === b.pathname && u !== keepOnly;
    } catch {
      return false;
    }
  };
  const removed = [];
  const drop = async (key, suffix) => {
    await remove(d, `${key}.${suffix}`);
    removed.push(`${key}.${suffix}`);
  };
  for (const [key, f] of await filesByKey(d)) {
    if (held.has(key)) continue;
    const rec = f.json ? await readRecord(d, key) : null;
    if (rec && f.gguf && keepOnly && sameFile(rec.url)) {
      await drop(key, 'json');
      await drop(key, 'gguf');
    } else if (f.json && !f.gguf) await drop(key, 'json');
    else if (f.gguf && !rec) await drop(key, 'gguf');
    if (f.partial) {
      const meta = f.partialJson ? await readJson(d, `${key}.partial.json`) : null;
      const touched = (await f.partial.getFile()).lastModified;
      if (!meta || now - touched > PARTIAL_MAX_AGE_MS || (keepOnly && sameFile(meta.url))) {
        await drop(key, 'partial');
        if (f.partialJson) await drop(key, 'partial.json');
      }
    } else if (f.partialJson) await drop(key, 'partial.json');
  }
  return removed;
}

/** Removes every stored model. */
export async function clearEntries() {
  const root = await navigator.storage.getDirectory();
  await whenReleased(() => root.removeEntry(DIR, { recursive: true })).catch((e) => {
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
