// The chat page's own records in this browser's IndexedDB (database `hearth-app`): the saved
// conversations, and the SHA-256 each downloaded model URL had the first time (checked on every
// later load, so a file that changes on its server is noticed). Nothing here leaves the device;
// `exportChats` makes the JSON file the user asks for.

/**
 * @typedef {object} SavedMessage
 * @property {'user'|'assistant'} role
 * @property {string} content
 * @property {string} [model]     the model that wrote an answer (its readable name)
 * @property {boolean} [stopped]  an answer stopped before its end
 *
 * @typedef {object} SavedChat
 * @property {string} id
 * @property {string} title
 * @property {boolean} [renamed]     the title was set by the user (not taken from the first message)
 * @property {number} createdAt      ms since the epoch
 * @property {number} updatedAt
 * @property {string|null} system    the system prompt of its last turn
 * @property {SavedMessage[]} messages  every message, also those the model no longer sees
 * @property {number} dropped        how many of the oldest messages the model no longer sees
 *
 * @typedef {object} ModelPin  the SHA-256 a model URL had when it was first downloaded
 * @property {string} url
 * @property {string} sha256
 * @property {number} at
 */

const DB_NAME = 'hearth-app';
const DB_VERSION = 1;

/** @type {Promise<IDBDatabase>|null} */
let opening = null;

/** @returns {Promise<IDBDatabase>} */
function db() {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const d = req.result;
      if (!d.objectStoreNames.contains('chats')) d.createObjectStore('chats', { keyPath: 'id' });
      if (!d.objectStoreNames.contains('pins')) d.createObjectStore('pins', { keyPath: 'url' });
    };
    req.onsuccess = () => {
      // Another tab upgrading the database: let go, the next call opens it again.
      req.result.onversionchange = () => {
        req.result.close();
        opening = null;
      };
      resolve(req.result);
    };
    req.onerror = () => {
      opening = null;
      reject(req.error);
    };
  });
  return opening;
}

/**
 * Runs `fn` on one store in a transaction; resolves with its request's result once committed.
 * @template T
 * @param {'chats'|'pins'} store
 * @param {IDBTransactionMode} mode
 * @param {(s: IDBObjectStore) => IDBRequest<T>} fn
 * @returns {Promise<T>}
 */
async function run(store, mode, fn) {
  const tx = (await db()).transaction(store, mode);
  const req = fn(tx.objectStore(store));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error ?? req.error);
    tx.onabort = () => reject(tx.error ?? new DOMException('the transaction was aborted', 'AbortError'));
  });
}

export const chats = {
  /** Every saved chat, the most recently changed first. @returns {Promise<SavedChat[]>} */
  async list() {
    const all = /** @type {SavedChat[]} */ (await run('chats', 'readonly', (s) => s.getAll()));
    return all.sort((a, b) => b.updatedAt - a.updatedAt);
  },
  /** @param {string} id @returns {Promise<SavedChat|undefined>} */
  get: (id) => run('chats', 'readonly', (s) => s.get(id)),
  /** @param {SavedChat} chat */
  put: (chat) => run('chats', 'readwrite', (s) => s.put(chat)),
  /** @param {string} id */
  delete: (id) => run('chats', 'readwrite', (s) => s.delete(id)),
  clear: () => run('chats', 'readwrite', (s) => s.clear()),
};

export const pins = {
  /** @param {string} url @returns {Promise<ModelPin|undefined>} */
  get: (url) => run('pins', 'readonly', (s) => s.get(url)),
  /** @param {ModelPin} pin */
  put: (pin) => run('pins', 'readwrite', (s) => s.put(pin)),
  /** @param {string} url */
  delete: (url) => run('pins', 'readwrite', (s) => s.delete(url)),
  clear: () => run('pins', 'readwrite', (s) => s.clear()),
};

/** A new, empty chat record. @returns {SavedChat} */
export function newChatRecord() {
  const now = Date.now();
  return { id: crypto.randomUUID(), title: 'New chat', createdAt: now, updatedAt: now, system: null, messages: [], dropped: 0 };
}

/** A title from the first thing said: its first line, cut at a word near 60 characters. */
export function titleFrom(text) {
  const line = text.trim().split('\n')[0].replace(/\s+/g, ' ');
  if (line.length <= 60) return line || 'New chat';
  const cut = line.slice(0, 60);
  return `${cut.slice(0, cut.lastIndexOf(' ') > 30 ? cut.lastIndexOf(' ') : 60)}…`;
}

/**
 * The export file's content: `{format: 'hearth-chats', version: 1, exportedAt, chats}`, each chat
 * as stored (title, dates, system prompt, every message with its role and content).
 * @param {SavedChat[]} list
 */
export function exportChats(list) {
  return { format: 'hearth-chats', version: 1, exportedAt: new Date().toISOString(), chats: list };
}

/** Offers `data` as a JSON file download (made here, from a blob: nothing is uploaded). */
export function downloadJson(data, fileName) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
