// The chat page. Answers are rendered as markdown by markdown.js, which builds DOM nodes from the
// parser's tokens (never HTML strings); what the user typed is shown as plain text. Chats are kept
// in this browser's IndexedDB (chats.js) and listed in the sidebar; the turns go through
// `llm.conversation()` (hearth.js), seeded from the saved chat. State is in `app`;
// `window.hearthApp` exposes it for the browser tests, and the page dispatches `hearth:state`,
// `hearth:progress`, `hearth:piece`, `hearth:saved` and `hearth:restored` events on document.

import { Hearth } from './hearth.js';
import { MarkdownView, markdownReady, markdownStyles, renderMarkdown } from './markdown.js';
import { chats, downloadJson, exportChats, newChatRecord, pins, titleFrom } from './chats.js';
import { CATALOG, DEFAULT_MODEL, catalogEntry } from './models.js';
import { describeBuild, isolate } from './isolation.js';

/** @typedef {import('./chats.js').SavedChat} SavedChat */
/** @typedef {import('./chats.js').SavedMessage} SavedMessage */
/** @typedef {import('./models.js').CatalogEntry} CatalogEntry */
/** @typedef {import('./hearth.js').ModelInfo} ModelInfo */

/** localStorage key: the URL of the model last chosen in the picker, opened on the next visit. */
const LAST_MODEL = 'hearth:model';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  status: $('status'),
  running: $('running'),
  load: $('load'),
  loadBar: /** @type {HTMLProgressElement} */ ($('load-bar')),
  loadText: $('load-text'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  noticeAction: /** @type {HTMLButtonElement} */ ($('notice-action')),
  transcript: $('transcript'),
  composer: /** @type {HTMLFormElement} */ ($('composer')),
  input: /** @type {HTMLTextAreaElement} */ ($('input')),
  send: /** @type {HTMLButtonElement} */ ($('send')),
  stop: /** @type {HTMLButtonElement} */ ($('stop')),
  newChat: /** @type {HTMLButtonElement} */ ($('new-chat')),
  chatList: $('chat-list'),
  noChats: $('no-chats'),
  exportAll: $('export-all'),
  openFile: $('open-file'),
  file: /** @type {HTMLInputElement} */ ($('file')),
  stats: $('stats'),
  temperature: /** @type {HTMLInputElement} */ ($('temperature')),
  temperatureOut: $('temperature-out'),
  topP: /** @type {HTMLInputElement} */ ($('top-p')),
  topPOut: $('top-p-out'),
  maxTokens: /** @type {HTMLInputElement} */ ($('max-tokens')),
  system: /** @type {HTMLTextAreaElement} */ ($('system')),
  modelInfo: $('model-info'),
  forget: $('forget'),
  deleteEverything: $('delete-everything'),
  cancelLoad: $('cancel-load'),
  drop: $('drop'),
  models: /** @type {HTMLDialogElement} */ ($('models')),
  modelsOpen: $('models-open'),
  modelsClose: $('models-close'),
  stored: $('stored-models'),
  noStored: $('no-stored'),
  catalog: $('catalog'),
  detail: $('catalog-detail'),
  detailName: $('detail-name'),
  detailFacts: $('detail-facts'),
  detailDownload: /** @type {HTMLButtonElement} */ ($('catalog-download')),
  detailBack: $('catalog-back'),
  modelUrl: /** @type {HTMLInputElement} */ ($('model-url')),
  modelUrlLoad: $('model-url-load'),
};

const app = {
  /** @type {'loading'|'ready'|'generating'|'error'} */
  state: 'loading',
  /** @type {string|null} */
  error: null,
  /** @type {Hearth|null} */
  llm: null,
  /** @type {import('./hearth.js').Conversation|null} the turns the model sees */
  chat: null,
  /** @type {SavedChat|null} the chat on screen, as saved (every message, also those the model no longer sees) */
  record: null,
  /** @type {SavedChat[]} the saved chats, the most recently changed first */
  saved: [],
  /** The conversation's messages, without the system prompt. */
  get messages() {
    return this.chat?.messages ?? [];
  },
  /** @type {AbortController|null} */
  generation: null,
  /** @type {AbortController|null} */
  loading: null,
  /** @type {CatalogEntry|null} the catalog entry shown in the picker's detail view */
  detail: null,
  /** @type {Promise<void>|null} settles once the saved chats are listed and the latest is on screen */
  restored: null,
  /** @type {import('./isolation.js').Isolation|null} how the page came to be cross-origin isolated (or not) */
  isolation: null,
  // For scripts and the tests: the page's own actions.
  load: loadModel,
  send,
  newChat,
  regenerate,
  openSaved,
  refreshChats,
};
/** @type {any} */ (window).hearthApp = app;
document.adoptedStyleSheets = [...document.adoptedStyleSheets, markdownStyles()];

function setState(state, error = null) {
  app.state = state;
  app.error = error;
  const busy = state !== 'ready';
  el.input.disabled = state === 'loading' || (state === 'error' && !app.llm);
  el.send.disabled = busy;
  el.send.hidden = state === 'generating';
  el.stop.hidden = state !== 'generating';
  el.newChat.disabled = state === 'generating';
  for (const b of el.transcript.querySelectorAll('.actions button')) /** @type {HTMLButtonElement} */ (b).disabled = busy;
  document.dispatchEvent(new CustomEvent('hearth:state', { detail: { state, error } }));
}

// ---- formatting ---------------------------------------------------------------------------------

function bytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const seconds = (ms) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

/**
 * Shows a notice; `action` adds a button to it.
 * @param {string} text
 * @param {'error'|'warning'} [kind]
 * @param {{label: string, run: () => void}} [action]
 */
function showNotice(text, kind = 'error', action) {
  el.noticeText.textContent = text;
  el.notice.dataset.kind = kind;
  el.notice.hidden = !text;
  el.noticeAction.hidden = !action;
  el.noticeAction.textContent = action?.label ?? '';
  el.noticeAction.onclick = action ? () => (showNotice(''), action.run()) : null;
}

/**
 * The model's readable name: the catalog's for a catalog model; else built from the GGUF's
 * `general.basename`, `general.size_label` and `general.finetune` when the engine reports them
 * (`info.basename`, `info.sizeLabel`, `info.finetune`); else its `general.name`; else its file name.
 * @param {any} info
 * @returns {string}
 */
function readableName(info) {
  const listed = catalogEntry(info.url)?.name;
  if (listed) return listed;
  if (info.basename) return [info.basename, info.sizeLabel, info.finetune].filter(Boolean).join(' ');
  const name = info.name ?? info.fileName ?? decodeURIComponent(new URL(info.url ?? 'model', location.href).pathname.split('/').pop() ?? 'model');
  return info.sizeLabel && !name.includes(info.sizeLabel) ? `${name} (${info.sizeLabel})` : name;
}

/**
 * The weight types by their share of the weight bytes ("Q4_K 62% · Q6_K 21% · …"), when the engine
 * reports them (`info.weightMix`: [{type, bytes}]); null otherwise.
 * @param {any} info
 */
function weightMix(info) {
  const mix = Array.isArray(info.weightMix) ? [...info.weightMix].sort((a, b) => b.bytes - a.bytes) : null;
  const total = mix?.reduce((s, m) => s + m.bytes, 0);
  if (!mix || !total) return null;
  const shown = mix.filter((m) => m.bytes / total >= 0.01);
  const rest = total - shown.reduce((s, m) => s + m.bytes, 0);
  return [...shown.map((m) => `${m.type} ${Math.round((m.bytes / total) * 100)}%`), ...(rest > 0 ? [`other ${Math.max(1, Math.round((rest / total) * 100))}%`] : [])].join(' · ');
}

// ---- loading --------------------------------------------------------------------------------------

/** Progress text: bytes, total, speed (measured over the current phase). */
function progressView() {
  let phase = null;
  let t0 = 0;
  let from = 0;
  return (p) => {
    const now = performance.now();
    if (p.phase !== phase) {
      phase = p.phase;
      t0 = now;
      from = p.loaded;
    }
    el.loadBar.max = p.total || 1;
    el.loadBar.value = Math.min(p.loaded, p.total || p.loaded);
    const speed = now - t0 > 250 ? ((p.loaded - from) / (now - t0)) * 1000 : null;
    const verb = { download: 'Downloading', verify: 'Checking what was downloaded before', load: 'Loading weights' }[p.phase] ?? p.phase;
    el.loadText.textContent =
      `${verb}: ${bytes(p.loaded)} of ${bytes(p.total)}` + (speed ? ` · ${bytes(speed)}/s` : '');
    document.dispatchEvent(new CustomEvent('hearth:progress', { detail: p }));
  };
}

function describeSource(info) {
  if (info.source === 'file') return 'from a local file';
  if (info.source === 'storage') return 'from this browser’s storage';
  return info.storage === 'opfs' ? 'downloaded and stored' : 'downloaded (not stored)';
}

/** @param {ModelInfo & {[k: string]: any}} info */
function renderInfo(info) {
  const mix = weightMix(info);
  const rows = [
    ['Model', readableName(info)],
    ['Architecture', `${info.architecture}, ${info.layers} layers, ${info.embedding} wide`],
    ['Weights', `${mix ?? `${info.quantization} (the main type)`}, ${bytes(info.sizeBytes)}`],
    ['Context', `${info.context} tokens (trained on ${info.contextTrain})`],
    ['Loaded', `${describeSource(info)} in ${seconds(info.loadMs)}`],
    ['Engine', describeBuild(info, app.isolation)],
    ['Memory', `${bytes(info.wasmMemoryBytes)} of wasm memory`],
    ['SHA-256', info.sha256],
  ];
  facts(el.modelInfo, rows);
  el.running.textContent = `Running ${readableName(info)} · ${info.architecture} · ${mix ?? info.quantization} · ${bytes(info.sizeBytes)}`;
  el.running.hidden = false;
}

/** Fills a <dl> with [term, text] rows (text only). */
function facts(dl, rows) {
  dl.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      if (v instanceof Node) dd.append(v);
      else dd.textContent = String(v);
      return [dt, dd];
    }),
  );
}

/**
 * Loads a model; the one already running (if any) keeps working until the new one is ready,
 * and keeps working if the new one fails. A URL's file must have the SHA-256 the catalog pins, or
 * else the one it had when it was first downloaded here (recorded then).
 * @param {string|Blob} source
 * @param {{remember?: boolean}} [opts]  remember: open this model on the next visit (URLs only)
 */
async function loadModel(source, { remember = false } = {}) {
  app.generation?.abort();
  app.loading?.abort();
  const controller = (app.loading = new AbortController());
  const previous = app.llm;
  setState('loading');
  showNotice('');
  el.status.textContent = typeof source === 'string' ? 'loading the model…' : `opening ${/** @type {File} */ (source).name ?? 'the file'}…`;
  el.load.hidden = false;
  el.loadBar.removeAttribute('value');
  el.loadText.textContent = '';
  const url = typeof source === 'string' ? new URL(source, document.baseURI).href : null;
  const pin = url ? await pins.get(url).catch(() => undefined) : undefined;
  const sha256 = (url && catalogEntry(url)?.sha256) || pin?.sha256;
  try {
    const nCtx = Number(new URLSearchParams(location.search).get('ctx')) || undefined;
    const llm = await Hearth.load(source, { onProgress: progressView(), signal: controller.signal, nCtx, sha256 });
    if (controller.signal.aborted) {
      await llm.unload();
      return;
    }
    app.llm = llm;
    seedConversation();
    await previous?.unload();
    const info = llm.info;
    if (url && !sha256) await pins.put({ url, sha256: info.sha256, at: Date.now() }).catch(() => {});
    if (url && remember) localStorage.setItem(LAST_MODEL, url);
    renderInfo(info);
    el.status.textContent = `${readableName(info)} · ${describeSource(info)} · ready`;
    if (info.warnings.length) showNotice(info.warnings.join(' '), 'warning');
    el.load.hidden = true;
    setState('ready');
    el.input.focus();
  } catch (e) {
    // Superseded by another load: that one owns the page now.
    if (controller.signal.aborted && app.loading !== controller) return;
    el.load.hidden = true;
    const what = typeof source === 'string' ? 'The model could not be loaded' : `“${/** @type {File} */ (source).name ?? 'The file'}” could not be opened`;
    if (e?.name === 'AbortError') showNotice('Loading was cancelled.', 'warning');
    else if (e?.type === 'integrity_error' && pin) {
      showNotice(
        `The file at ${url} is not the one first downloaded here on ${new Date(pin.at).toLocaleDateString()}: its SHA-256 changed, so it was not used. (${e.message})`,
        'error',
        { label: 'Use the new file', run: () => pins.delete(/** @type {string} */ (url)).then(() => loadModel(source, { remember })) },
      );
    } else showNotice(`${what}: ${e.message}`);
    if (previous) {
      el.status.textContent = 'ready (the previous model is still loaded)';
      setState('ready');
    } else {
      el.status.textContent = 'no model loaded';
      setState('error', e.message);
    }
  } finally {
    if (app.loading === controller) app.loading = null;
  }
}

// ---- the transcript ---------------------------------------------------------------------------------

/** A new conversation for the model, holding the messages of the chat on screen it still sees. */
function seedConversation() {
  const r = app.record;
  const messages = r ? r.messages.slice(r.dropped).map(({ role, content }) => ({ role, content })) : [];
  app.chat = app.llm?.conversation({ system: el.system.value.trim() || null, messages }) ?? null;
}

/**
 * A message bubble. A user's text is a Text node; an answer is rendered as markdown.
 * @param {'user'|'assistant'} role
 * @param {string} [text]
 * @param {{index?: number, message?: SavedMessage, last?: boolean}} [at]  its place in the saved chat (for its buttons)
 */
function bubble(role, text = '', at = {}) {
  el.transcript.querySelector(':scope > .empty')?.remove();
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : at.message?.model ? `Model · ${at.message.model}` : 'Model';
  const body = document.createElement('div');
  body.className = 'text';
  if (role === 'assistant' && text) renderMarkdown(body, text);
  else body.append(document.createTextNode(text));
  div.append(who, body);
  if (at.index !== undefined) {
    div.dataset.index = String(at.index);
    const actions = document.createElement('div');
    actions.className = 'actions';
    const button = (label, cls, run) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = cls;
      b.textContent = label;
      b.disabled = app.state !== 'ready';
      b.addEventListener('click', run);
      actions.append(b);
    };
    const index = at.index;
    if (role === 'user') button('Edit', 'edit', () => editMessage(index, div));
    if (role === 'assistant' && at.last) button('Regenerate', 'regenerate', () => regenerate());
    div.append(actions);
  }
  el.transcript.append(div);
  return { div, body };
}

/** Shows the saved chat on screen (or the empty page). */
function renderTranscript() {
  el.transcript.replaceChildren();
  const r = app.record;
  if (!r?.messages.length) {
    const p = document.createElement('p');
    p.className = 'empty muted';
    p.textContent = 'Everything runs in this tab: the model, your messages, the answers. Nothing is sent anywhere. Chats are saved in this browser only.';
    el.transcript.append(p);
  } else {
    r.messages.forEach((m, i) => {
      const { div } = bubble(m.role, m.content, { index: i, message: m, last: i === r.messages.length - 1 });
      if (i < r.dropped) div.classList.add('dropped');
      if (m.stopped) div.classList.add('stopped');
    });
  }
  for (const li of el.chatList.children) li.classList.toggle('current', /** @type {HTMLElement} */ (li).dataset.id === r?.id);
  scrollToEnd();
}

function scrollToEnd() {
  el.transcript.scrollTop = el.transcript.scrollHeight;
}

function options() {
  return {
    temperature: Number(el.temperature.value),
    topP: Number(el.topP.value),
    maxTokens: Math.max(1, Math.min(4096, Math.round(Number(el.maxTokens.value) || 256))),
  };
}

/**
 * The saved chat after a turn: the messages the model no longer sees, then the conversation's —
 * each kept as the saved object it was (with its model name) when it is the same message.
 * @param {SavedChat} r
 * @param {SavedMessage[]} before  the chat's messages before the turn
 * @param {number} dropped  messages the conversation left out in this turn
 */
function syncRecord(r, before, dropped) {
  const gone = Math.min(before.length, r.dropped + dropped);
  const seen = before.slice(gone);
  r.messages = before.slice(0, gone).concat(
    (app.chat?.messages ?? []).map((m, i) => {
      const old = seen[i];
      return old && old.role === m.role && old.content === m.content ? old : { role: /** @type {'user'|'assistant'} */ (m.role), content: m.content };
    }),
  );
  r.dropped = gone;
}

/** Sends `text` as the next message of the chat on screen (a new chat when there is none). */
async function send(text) {
  if (app.state !== 'ready' || !app.llm || !text.trim()) return;
  if (!app.chat) seedConversation();
  const chat = /** @type {import('./hearth.js').Conversation} */ (app.chat);
  showNotice('');
  const r = (app.record ??= newChatRecord());
  const before = r.messages;
  const kept = chat.messages.length;
  chat.system = el.system.value.trim() || null;
  bubble('user', text);
  const answer = bubble('assistant');
  answer.div.classList.add('streaming');
  const view = new MarkdownView(answer.body);
  scrollToEnd();
  const controller = (app.generation = new AbortController());
  setState('generating');
  el.input.value = '';
  const stream = chat.send(text, { ...options(), signal: controller.signal });
  let dropped = 0;
  let stopped = false;
  try {
    for await (const piece of stream) {
      view.append(piece);
      scrollToEnd();
      document.dispatchEvent(new CustomEvent('hearth:piece', { detail: piece }));
    }
    const res = /** @type {import('./hearth.js').TurnResult} */ (await stream.result);
    dropped = res.dropped;
    if (res.dropped) {
      showNotice(`The conversation outgrew the model’s context: the ${res.dropped} oldest messages were left out of this answer’s view (the system prompt is kept).`, 'warning');
    }
    const t = res.timings;
    const rate = (n, ms) => (ms > 0 ? ((n / ms) * 1000).toFixed(1) : '–');
    el.stats.textContent =
      `${t.decodeTokens} tokens · ${rate(t.decodeTokens, t.decodeMs)} tok/s · prompt ${t.prefillTokens} new tokens at ${rate(t.prefillTokens, t.prefillMs)} tok/s` +
      (t.reusedTokens ? ` (${t.reusedTokens} reused)` : '');
  } catch (e) {
    // The conversation kept what was said when there is something to keep (see Conversation).
    dropped = e?.dropped ?? 0;
    if (e?.name === 'AbortError') {
      stopped = true;
    } else if (e?.type === 'context_full') {
      showNotice(
        view.text
          ? 'The answer filled the model’s context and stopped there. Older messages will be left out to make room as the chat goes on.'
          : `This message is too long for the model’s context (${e.message}).`,
        'warning',
      );
    } else if (e?.type === 'out_of_memory') {
      showNotice(`The engine ran out of memory (${e.message}). It restarts with your next message.`);
    } else if (e?.type === 'worker_crashed') {
      showNotice(`The engine crashed (${e.message}). It restarts with your next message.`);
    } else {
      showNotice(`Generation failed: ${e.message}`);
    }
  } finally {
    view.finish();
    if (app.generation === controller) app.generation = null;
    // The turn is over: the saved chat takes what the conversation kept.
    const turnKept = chat.messages.length > kept - dropped;
    if (app.chat === chat && app.record === r) {
      syncRecord(r, before, dropped);
      const last = r.messages.at(-1);
      if (turnKept && last?.role === 'assistant' && !before.includes(last)) {
        last.model = app.llm ? readableName(app.llm.info) : undefined;
        if (stopped) last.stopped = true;
      }
      if (!r.renamed) r.title = titleFrom(r.messages.find((m) => m.role === 'user')?.content ?? text);
      r.system = chat.system;
      r.updatedAt = Date.now();
      renderTranscript();
      if (!turnKept) bubble('user', text).div.classList.add('unsent');
      if (r.messages.length) await save(r);
    }
    if (/** @type {string} */ (app.state) === 'generating') setState('ready'); // (a model load may have taken over)
    el.input.focus();
  }
}

/** Regenerates the last answer: the question is asked again, the old answer is replaced. */
async function regenerate() {
  const r = app.record;
  const n = r?.messages.length ?? 0;
  if (!r || app.state !== 'ready' || n < 2 || r.messages[n - 1].role !== 'assistant' || r.messages[n - 2].role !== 'user') return;
  const question = r.messages[n - 2].content;
  truncate(n - 2);
  await send(question);
}

/** Turns a user message into an editor; sending the edit replaces it and everything after it. */
function editMessage(index, div) {
  const r = app.record;
  if (!r || app.state !== 'ready' || div.querySelector('.editor')) return;
  const editor = document.createElement('div');
  editor.className = 'editor';
  const area = document.createElement('textarea');
  area.value = r.messages[index].content;
  area.rows = Math.min(10, area.value.split('\n').length + 1);
  area.setAttribute('aria-label', 'Edit the message');
  const ok = document.createElement('button');
  ok.type = 'button';
  ok.className = 'primary save-edit';
  ok.textContent = 'Send';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.textContent = 'Cancel';
  editor.append(area, ok, cancel);
  const body = /** @type {HTMLElement} */ (div.querySelector('.text'));
  body.hidden = true;
  div.append(editor);
  area.focus();
  cancel.addEventListener('click', () => {
    editor.remove();
    body.hidden = false;
  });
  ok.addEventListener('click', async () => {
    const text = area.value;
    if (!text.trim() || app.state !== 'ready' || app.record !== r) return;
    truncate(index);
    await send(text);
  });
}

/** Keeps the first `n` messages of the chat on screen; the model then sees those it saw of them. */
function truncate(n) {
  const r = /** @type {SavedChat} */ (app.record);
  r.messages = r.messages.slice(0, n);
  r.dropped = Math.min(r.dropped, n);
  seedConversation();
  renderTranscript();
}

async function newChat() {
  app.generation?.abort();
  app.record = null;
  seedConversation();
  renderTranscript();
  el.stats.textContent = '';
  showNotice('');
  await app.llm?.reset().catch(() => {});
}

// ---- saved chats --------------------------------------------------------------------------------

/** Saves a chat and refreshes the list. @param {SavedChat} r */
async function save(r) {
  try {
    await chats.put(r);
    await refreshChats();
    document.dispatchEvent(new CustomEvent('hearth:saved', { detail: { id: r.id } }));
  } catch (e) {
    showNotice(`The chat could not be saved in this browser: ${e?.message ?? e}`, 'warning');
  }
}

async function refreshChats() {
  app.saved = await chats.list();
  el.noChats.hidden = app.saved.length > 0;
  el.exportAll.hidden = app.saved.length === 0;
  el.chatList.replaceChildren(...app.saved.map(chatItem));
}

/** One saved chat in the sidebar: open it, rename, export, delete. @param {SavedChat} c */
function chatItem(c) {
  const li = document.createElement('li');
  li.className = 'chat-item';
  li.dataset.id = c.id;
  li.classList.toggle('current', c.id === app.record?.id);
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'chat-open';
  const title = document.createElement('span');
  title.className = 'chat-title';
  title.textContent = c.title;
  const when = document.createElement('span');
  when.className = 'chat-date muted';
  when.textContent = new Date(c.updatedAt).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  open.append(title, when);
  open.addEventListener('click', () => openSaved(c.id));
  const tools = document.createElement('div');
  tools.className = 'chat-tools';
  const tool = (label, cls, run) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.textContent = label;
    b.title = `${label} “${c.title}”`;
    b.addEventListener('click', run);
    tools.append(b);
  };
  tool('Rename', 'chat-rename', () => renameInPlace(li, c));
  tool('Export', 'chat-export', () => downloadJson(exportChats([c]), `hearth-chat-${slug(c.title)}.json`));
  tool('Delete', 'chat-delete', () => deleteChat(c));
  li.append(open, tools);
  return li;
}

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'chat';

/** Opens a saved chat: shown in full, and the model continues it. @param {string} id */
async function openSaved(id) {
  if (app.state === 'generating') return;
  const r = await chats.get(id);
  if (!r) return refreshChats();
  app.record = r;
  if (r.system !== null) el.system.value = r.system;
  seedConversation();
  renderTranscript();
  showNotice('');
}

/** @param {HTMLElement} li @param {SavedChat} c */
function renameInPlace(li, c) {
  const title = /** @type {HTMLElement} */ (li.querySelector('.chat-title'));
  if (li.querySelector('.chat-title-input')) return;
  const input = document.createElement('input');
  input.className = 'chat-title-input';
  input.value = c.title;
  input.setAttribute('aria-label', 'Chat title');
  li.prepend(input);
  /** @type {HTMLElement} */ (li.querySelector('.chat-open')).hidden = true;
  input.focus();
  input.select();
  let done = false;
  const finish = async (keep) => {
    if (done) return;
    done = true;
    const name = input.value.trim();
    if (keep && name && name !== c.title) {
      const r = app.record?.id === c.id ? app.record : (await chats.get(c.id)) ?? c;
      r.title = name;
      r.renamed = true;
      await save(r);
    } else {
      input.remove();
      /** @type {HTMLElement} */ (li.querySelector('.chat-open')).hidden = false;
    }
    title.textContent = c.title;
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') finish(true);
    else if (e.key === 'Escape') finish(false);
  });
  input.addEventListener('blur', () => finish(true));
}

/** @param {SavedChat} c */
async function deleteChat(c) {
  if (!confirm(`Delete the chat “${c.title}” from this browser?`)) return;
  await chats.delete(c.id);
  if (app.record?.id === c.id) await newChat();
  await refreshChats();
}

async function deleteEverything() {
  if (!confirm('Delete every stored model and every saved chat from this browser? This cannot be undone.')) return;
  app.generation?.abort();
  const failed = [];
  await Hearth.cache.clear().catch((e) => failed.push(`the stored models (${e.message})`));
  await chats.clear().catch((e) => failed.push(`the chats (${e.message})`));
  await pins.clear().catch((e) => failed.push(`the recorded model hashes (${e.message})`));
  localStorage.removeItem(LAST_MODEL);
  app.record = null;
  seedConversation();
  renderTranscript();
  await refreshChats().catch(() => {});
  if (failed.length) showNotice(`Not everything could be deleted: ${failed.join(', ')}.`);
  else showNotice('Deleted every stored model and every chat. The model in use keeps running until you leave the page.', 'warning');
}

// ---- the model picker -----------------------------------------------------------------------------

async function openPicker() {
  showDetail(null);
  renderCatalog();
  if (!el.models.open) el.models.showModal();
  await refreshStored();
}

async function refreshStored() {
  let stored = [];
  try {
    stored = await Hearth.cache.list();
  } catch (e) {
    showNotice(`The stored models could not be listed: ${e.message}`, 'warning');
  }
  el.noStored.hidden = stored.length > 0;
  el.stored.replaceChildren(
    ...stored.map((m) => {
      const li = document.createElement('li');
      li.className = 'stored-model';
      li.dataset.url = m.url;
      const name = document.createElement('span');
      name.className = 'model-name';
      name.textContent = catalogEntry(m.url)?.name ?? m.name;
      const size = document.createElement('span');
      size.className = 'muted';
      size.textContent = `${bytes(m.size)}${/** @type {any} */ (app.llm?.info)?.url === m.url ? ' · in use' : ''}`;
      const use = document.createElement('button');
      use.type = 'button';
      use.className = 'use';
      use.textContent = 'Use';
      use.addEventListener('click', () => {
        el.models.close();
        loadModel(m.url, { remember: true });
      });
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = 'Delete';
      del.addEventListener('click', async () => {
        try {
          await Hearth.cache.delete(m.url);
        } catch (e) {
          showNotice(`“${name.textContent}” could not be deleted: ${e.message}`);
        }
        await refreshStored();
      });
      li.append(name, size, use, del);
      return li;
    }),
  );
}

function renderCatalog() {
  if (el.catalog.children.length) return;
  el.catalog.replaceChildren(
    ...CATALOG.map((entry) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'catalog-item';
      b.dataset.id = entry.id;
      const name = document.createElement('span');
      name.className = 'model-name';
      name.textContent = entry.name;
      const meta = document.createElement('span');
      meta.className = 'muted small';
      meta.textContent = `${entry.arch} · ${entry.quant} · ≈ ${bytes(entry.approxBytes)} · ${entry.license}`;
      b.append(name, meta);
      b.addEventListener('click', () => showDetail(entry));
      li.append(b);
      return li;
    }),
  );
}

/** Shows what a catalog entry is before anything is downloaded. @param {CatalogEntry|null} entry */
function showDetail(entry) {
  app.detail = entry;
  el.detail.hidden = !entry;
  el.catalog.hidden = !!entry;
  if (!entry) return;
  el.detailName.textContent = entry.name;
  const a = (href, text) => {
    const l = document.createElement('a');
    l.href = href;
    l.textContent = text;
    l.target = '_blank';
    l.rel = 'noopener noreferrer';
    return l;
  };
  const abs = new URL(entry.url, document.baseURI);
  facts(el.detailFacts, [
    ['Parameters', entry.params],
    ['Architecture', entry.arch],
    ['Weights', entry.quant],
    ['Size', `≈ ${bytes(entry.approxBytes)} (approximate)`],
    ['License', a(entry.licenseUrl, entry.license)],
    ['File', abs.origin === location.origin ? `${abs.pathname} (this site)` : a(entry.page ?? entry.url, entry.url)],
    ['Checked by', entry.sha256 ? `its pinned SHA-256 ${entry.sha256.slice(0, 16)}…` : 'the SHA-256 of its first download, recorded here and checked on every later load'],
  ]);
  el.detailDownload.textContent = abs.origin === location.origin ? 'Run' : `Download ≈ ${bytes(entry.approxBytes)} and run`;
}

// ---- wiring ---------------------------------------------------------------------------------------

el.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send(el.input.value);
});
el.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send(el.input.value);
  }
});
el.stop.addEventListener('click', () => app.generation?.abort());
el.newChat.addEventListener('click', newChat);
el.exportAll.addEventListener('click', async () => downloadJson(exportChats(await chats.list()), 'hearth-chats.json'));
el.modelsOpen.addEventListener('click', openPicker);
el.modelsClose.addEventListener('click', () => el.models.close());
el.detailBack.addEventListener('click', () => showDetail(null));
el.detailDownload.addEventListener('click', () => {
  const entry = app.detail;
  if (!entry) return;
  el.models.close();
  loadModel(entry.url, { remember: true });
});
el.modelUrlLoad.addEventListener('click', () => {
  const text = el.modelUrl.value.trim();
  let url;
  try {
    url = new URL(text, document.baseURI);
  } catch {
    url = null;
  }
  if (!url || !/^https?:$/.test(url.protocol)) {
    el.modelUrl.setCustomValidity('an http(s) link to a .gguf file');
    el.modelUrl.reportValidity();
    return;
  }
  el.modelUrl.setCustomValidity('');
  el.models.close();
  loadModel(url.href, { remember: true });
});
el.openFile.addEventListener('click', () => el.file.click());
el.file.addEventListener('change', () => {
  const f = el.file.files?.[0];
  el.file.value = '';
  if (el.models.open) el.models.close();
  if (f) loadModel(f);
});
el.forget.addEventListener('click', async () => {
  try {
    await Hearth.cache.clear();
    showNotice('Stored models deleted. The model in use keeps running until you leave the page.', 'warning');
  } catch (e) {
    showNotice(`The stored models could not be deleted: ${e.message}`);
  }
});
el.deleteEverything.addEventListener('click', deleteEverything);
el.cancelLoad.addEventListener('click', () => app.loading?.abort());
for (const [input, out] of [
  [el.temperature, el.temperatureOut],
  [el.topP, el.topPOut],
]) {
  input.addEventListener('input', () => (out.textContent = /** @type {HTMLInputElement} */ (input).value));
}

// Drag and drop a .gguf anywhere on the page.
let dragDepth = 0;
const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
document.addEventListener('dragenter', (e) => {
  if (!hasFiles(e)) return;
  dragDepth++;
  el.drop.hidden = false;
});
document.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    el.drop.hidden = true;
  }
});
document.addEventListener('dragover', (e) => {
  if (hasFiles(e)) e.preventDefault();
});
document.addEventListener('drop', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  el.drop.hidden = true;
  const f = e.dataTransfer.files[0];
  if (f) loadModel(f);
});

// The service worker keeps the app shell offline (never the model: it lives in OPFS) and makes the
// page cross-origin isolated where the host sends no COOP/COEP headers (it may reload it once).
app.isolation = await isolate('./sw.js');

/** The saved chats, and the latest one back on screen (once markdown can render it). */
async function restore() {
  await markdownReady;
  try {
    await refreshChats();
  } catch (e) {
    showNotice(`Saved chats cannot be kept in this browser (${e?.message ?? e}).`, 'warning');
    return;
  }
  if (!app.record && app.saved.length && app.state !== 'generating') {
    app.record = app.saved[0];
    if (app.record.system !== null) el.system.value = app.record.system;
    seedConversation();
  }
  renderTranscript();
  document.dispatchEvent(new CustomEvent('hearth:restored'));
}

setState('loading');
app.restored = restore();
loadModel(new URLSearchParams(location.search).get('model') ?? localStorage.getItem(LAST_MODEL) ?? DEFAULT_MODEL.url);
