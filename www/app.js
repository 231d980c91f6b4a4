// The chat page. Everything the model says is put in the page as text (Text nodes, textContent),
// never parsed as HTML. State is in `app`; `window.hearthApp` exposes it for the browser tests,
// and the page dispatches `hearth:state`, `hearth:progress` and `hearth:piece` events on document.

import { Hearth } from './hearth.js';
import { describeBuild, isolate } from './isolation.js';

const DEFAULT_MODEL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  status: $('status'),
  load: $('load'),
  loadBar: /** @type {HTMLProgressElement} */ ($('load-bar')),
  loadText: $('load-text'),
  notice: $('notice'),
  transcript: $('transcript'),
  composer: /** @type {HTMLFormElement} */ ($('composer')),
  input: /** @type {HTMLTextAreaElement} */ ($('input')),
  send: /** @type {HTMLButtonElement} */ ($('send')),
  stop: /** @type {HTMLButtonElement} */ ($('stop')),
  newChat: $('new-chat'),
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
  cancelLoad: $('cancel-load'),
  drop: $('drop'),
};

const app = {
  /** @type {'loading'|'ready'|'generating'|'error'} */
  state: 'loading',
  /** @type {string|null} */
  error: null,
  /** @type {Hearth|null} */
  llm: null,
  /** @type {import('./hearth.js').Conversation|null} the turns so far */
  chat: null,
  /** The conversation's messages, without the system prompt. */
  get messages() {
    return this.chat?.messages ?? [];
  },
  /** @type {AbortController|null} */
  generation: null,
  /** @type {AbortController|null} */
  loading: null,
};
window.hearthApp = app;

function setState(state, error = null) {
  app.state = state;
  app.error = error;
  const busy = state !== 'ready';
  el.input.disabled = state === 'loading' || (state === 'error' && !app.llm);
  el.send.disabled = busy;
  el.send.hidden = state === 'generating';
  el.stop.hidden = state !== 'generating';
  el.newChat.disabled = state === 'generating';
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

function showNotice(text, kind = 'error') {
  el.notice.textContent = text;
  el.notice.dataset.kind = kind;
  el.notice.hidden = !text;
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

function renderInfo(info) {
  const rows = [
    ['Model', info.name ?? info.fileName ?? 'unnamed'],
    ['Architecture', `${info.architecture}, ${info.layers} layers, ${info.embedding} wide`],
    ['Weights', `${info.quantization}, ${bytes(info.sizeBytes)}`],
    ['Context', `${info.context} tokens (trained on ${info.contextTrain})`],
    ['Loaded', `${describeSource(info)} in ${seconds(info.loadMs)}`],
    ['Engine', describeBuild(info, app.isolation)],
    ['Memory', `${bytes(info.wasmMemoryBytes)} of wasm memory`],
    ['SHA-256', info.sha256],
  ];
  el.modelInfo.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = String(v);
      return [dt, dd];
    }),
  );
}

/**
 * Loads a model; the one already running (if any) keeps working until the new one is ready,
 * and keeps working if the new one fails.
 * @param {string|Blob} source
 */
async function loadModel(source) {
  app.generation?.abort();
  app.loading?.abort();
  const controller = (app.loading = new AbortController());
  const previous = app.llm;
  setState('loading');
  showNotice('');
  el.status.textContent = typeof source === 'string' ? 'loading the model…' : `opening ${source.name ?? 'the file'}…`;
  el.load.hidden = false;
  el.loadBar.removeAttribute('value');
  el.loadText.textContent = '';
  try {
    const nCtx = Number(new URLSearchParams(location.search).get('ctx')) || undefined;
    const llm = await Hearth.load(source, { onProgress: progressView(), signal: controller.signal, nCtx });
    if (controller.signal.aborted) {
      await llm.unload();
      return;
    }
    app.llm = llm;
    app.chat = llm.conversation();
    await previous?.unload();
    clearTranscript();
    const info = llm.info;
    renderInfo(info);
    el.status.textContent = `${info.name ?? info.fileName ?? 'model'} · ${describeSource(info)} · ready`;
    if (info.warnings.length) showNotice(info.warnings.join(' '), 'warning');
    el.load.hidden = true;
    setState('ready');
    el.input.focus();
  } catch (e) {
    // Superseded by another load: that one owns the page now.
    if (controller.signal.aborted && app.loading !== controller) return;
    el.load.hidden = true;
    const what = typeof source === 'string' ? 'The model could not be loaded' : `“${source.name ?? 'The file'}” could not be opened`;
    if (e?.name === 'AbortError') showNotice('Loading was cancelled.', 'warning');
    else showNotice(`${what}: ${e.message}`);
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

function clearTranscript() {
  el.transcript.replaceChildren();
}

/** A message bubble; its text is a Text node, appended to piece by piece. */
function bubble(role, text = '') {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Model';
  const body = document.createElement('p');
  body.className = 'text';
  const node = document.createTextNode(text);
  body.append(node);
  div.append(who, body);
  el.transcript.append(div);
  return { div, node };
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

async function send(text) {
  if (app.state !== 'ready' || !app.llm || !app.chat || !text.trim()) return;
  showNotice('');
  const chat = app.chat;
  chat.system = el.system.value.trim() || null;
  const kept = chat.messages.length;
  const asked = bubble('user', text);
  const answer = bubble('assistant');
  answer.div.classList.add('streaming');
  scrollToEnd();
  const controller = (app.generation = new AbortController());
  setState('generating');
  el.input.value = '';
  const stream = chat.send(text, { ...options(), signal: controller.signal });
  try {
    for await (const piece of stream) {
      answer.node.appendData(piece);
      scrollToEnd();
      document.dispatchEvent(new CustomEvent('hearth:piece', { detail: piece }));
    }
    const r = await stream.result;
    if (r.dropped) {
      markDropped(r.dropped);
      showNotice(`The conversation outgrew the model’s context: the ${r.dropped} oldest messages were left out of this answer’s view (the system prompt is kept).`, 'warning');
    }
    const t = r.timings;
    const rate = (n, ms) => (ms > 0 ? ((n / ms) * 1000).toFixed(1) : '–');
    el.stats.textContent =
      `${t.decodeTokens} tokens · ${rate(t.decodeTokens, t.decodeMs)} tok/s · prompt ${t.prefillTokens} new tokens at ${rate(t.prefillTokens, t.prefillMs)} tok/s` +
      (t.reusedTokens ? ` (${t.reusedTokens} reused)` : '');
  } catch (e) {
    // The conversation kept what was said when there is something to keep (see Conversation).
    if (e?.dropped) markDropped(e.dropped);
    if (chat.messages.length <= kept - (e?.dropped ?? 0)) {
      asked.div.classList.add('unsent');
      answer.div.remove();
    }
    if (e?.name === 'AbortError') {
      answer.div.classList.add('stopped');
    } else if (e?.type === 'context_full') {
      showNotice(
        answer.node.data
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
    answer.div.classList.remove('streaming');
    if (app.generation === controller) app.generation = null;
    if (app.state === 'generating') setState('ready'); // (a model load may have taken over)
    el.input.focus();
  }
}

/** Greys out the bubbles of the `n` oldest messages still shown as part of the conversation. */
function markDropped(n) {
  const live = [...el.transcript.querySelectorAll('.msg:not(.dropped):not(.unsent)')];
  for (const div of live.slice(0, n)) div.classList.add('dropped');
}

async function newChat() {
  app.generation?.abort();
  app.chat?.clear();
  clearTranscript();
  el.stats.textContent = '';
  showNotice('');
  await app.llm?.reset().catch(() => {});
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
el.openFile.addEventListener('click', () => el.file.click());
el.file.addEventListener('change', () => {
  const f = el.file.files?.[0];
  el.file.value = '';
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
el.cancelLoad.addEventListener('click', () => app.loading?.abort());
for (const [input, out] of [
  [el.temperature, el.temperatureOut],
  [el.topP, el.topPOut],
]) {
  input.addEventListener('input', () => (out.textContent = input.value));
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

app.load = loadModel;
app.send = send;
app.newChat = newChat;

// The service worker keeps the app shell offline (never the model: it lives in OPFS) and makes the
// page cross-origin isolated where the host sends no COOP/COEP headers (it may reload it once).
app.isolation = await isolate('./sw.js');

setState('loading');
loadModel(new URLSearchParams(location.search).get('model') ?? DEFAULT_MODEL);
