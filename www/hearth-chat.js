// <hearth-chat model="URL"></hearth-chat>: a private chat box for any page, in one tag.
//
//   <script type="module" src="https://example.com/hearth/hearth-chat.js"></script>
//   <hearth-chat model="/models/SmolLM2-135M-Instruct.Q4_1.gguf"></hearth-chat>
//
// hearth.js, the worker and the wasm load from next to this file (import.meta.url), so the host
// page needs no COOP/COEP: on a page that is not cross-origin isolated the single-threaded build
// runs. Attributes: model (required; resolved against the page), system (a system prompt),
// max-tokens, temperature, context (tokens the model holds; older turns are left out as the chat
// outgrows it), placeholder. Styling: the CSS custom properties below, set on the element
// or any ancestor; parts `transcript`, `input`, `send`, `status` for ::part(). Events: `hearth-ready`
// (detail: model info), `hearth-error` (detail: the error), `hearth-answer` (detail: the result).
// Answers are rendered as markdown by markdown.js (DOM built from the parser's tokens, no HTML
// strings; links only to http(s)/mailto, images never loaded); what the user typed stays plain text.

import { Hearth } from './hearth.js';
import { MarkdownView, markdownReady, markdownStyles } from './markdown.js';

const CSS = `
:host {
  --_bg: var(--hearth-bg, Canvas);
  --_fg: var(--hearth-fg, CanvasText);
  --_accent: var(--hearth-accent, #c2410c);
  --_accent-fg: var(--hearth-accent-fg, #fff);
  --_muted: var(--hearth-muted, color-mix(in srgb, var(--_fg) 60%, transparent));
  --_line: var(--hearth-border, color-mix(in srgb, var(--_fg) 18%, transparent));
  --_user: var(--hearth-user-bg, color-mix(in srgb, var(--_accent) 12%, var(--_bg)));
  --_radius: var(--hearth-radius, 10px);
  --md-line: var(--_line);
  --md-link: var(--_accent);
  display: flex;
  flex-direction: column;
  min-height: 16rem;
  height: var(--hearth-height, 28rem);
  font: var(--hearth-font, 15px/1.5 system-ui, sans-serif);
  color: var(--_fg);
  background: var(--_bg);
  border: 1px solid var(--_line);
  border-radius: var(--_radius);
  overflow: hidden;
  box-sizing: border-box;
}
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
.status { margin: 0; padding: 0.4rem 0.75rem; font-size: 0.8em; color: var(--_muted); border-bottom: 1px solid var(--_line); }
.status.error { color: var(--hearth-error, #b42318); }
progress { display: block; width: 100%; height: 3px; border: 0; accent-color: var(--_accent); }
progress[hidden] { display: none; }
.transcript { flex: 1; overflow-y: auto; padding: 0.75rem; display: flex; flex-direction: column; gap: 0.5rem; }
.msg { margin: 0; padding: 0.45rem 0.7rem; border-radius: var(--_radius); white-space: pre-wrap; overflow-wrap: anywhere; max-width: 90%; }
.msg.user { align-self: flex-end; background: var(--_user); }
.msg.assistant { align-self: flex-start; border: 1px solid var(--_line); }
form { display: flex; gap: 0.4rem; padding: 0.5rem; border-top: 1px solid var(--_line); }
input { flex: 1; min-width: 0; font: inherit; color: inherit; background: transparent; padding: 0.4rem 0.6rem; border: 1px solid var(--_line); border-radius: var(--_radius); }
button { font: inherit; padding: 0.4rem 0.9rem; border-radius: var(--_radius); border: 1px solid var(--_accent); background: var(--_accent); color: var(--_accent-fg); cursor: pointer; }
button.stop { background: transparent; color: var(--_fg); border-color: var(--_line); }
button:disabled, input:disabled { opacity: 0.5; cursor: default; }
`;

let sheet = null;
/** One constructed stylesheet for every instance (allowed by strict style-src policies, unlike <style>). */
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

export class HearthChat extends HTMLElement {
  static observedAttributes = ['model'];

  /** @type {Hearth|null} the loaded model, for scripting */
  llm = null;
  /** Resolves with the Hearth instance once the model is loaded (rejects if it fails). */
  ready;
  #readyResolve;
  #readyReject;
  /** @type {import('./hearth.js').Conversation|null} */
  #chat = null;
  #generation = null;
  #loading = null;
  #ui;

  constructor() {
    super();
    this.ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.ready.catch(() => {}); // reported through the status line and `hearth-error`
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [styles(), markdownStyles()];
    const make = (tag, props = {}) => Object.assign(document.createElement(tag), props);
    const status = make('p', { className: 'status', textContent: 'loading the model…' });
    status.setAttribute('part', 'status');
    status.setAttribute('role', 'status');
    const progress = make('progress', { max: 1 });
    const transcript = make('div', { className: 'transcript' });
    transcript.setAttribute('part', 'transcript');
    transcript.setAttribute('aria-live', 'polite');
    const form = make('form');
    const input = make('input', { type: 'text', disabled: true, placeholder: this.getAttribute('placeholder') ?? 'Ask something…' });
    input.setAttribute('part', 'input');
    input.setAttribute('aria-label', 'Message');
    const send = make('button', { type: 'submit', textContent: 'Send', disabled: true });
    send.setAttribute('part', 'send');
    const stop = make('button', { type: 'button', textContent: 'Stop', className: 'stop', hidden: true });
    form.append(input, send, stop);
    root.append(status, progress, transcript, form);
    this.#ui = { status, progress, transcript, input, send, stop };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.send(input.value);
    });
    stop.addEventListener('click', () => this.#generation?.abort());
  }

  connectedCallback() {
    if (!this.llm && !this.#loading) this.#load();
  }

  disconnectedCallback() {
    // Moving the element around the page should not reload it: only let go once it is really gone.
    queueMicrotask(() => {
      if (this.isConnected) return;
      this.#generation?.abort();
      this.#loading?.abort();
      this.llm?.unload();
      this.llm = null;
    });
  }

  attributeChangedCallback(name, old, value) {
    if (name === 'model' && old !== null && old !== value && this.isConnected) {
      this.#generation?.abort();
      this.llm?.unload();
      this.llm = null;
      this.#chat = null;
      this.#ui.input.disabled = this.#ui.send.disabled = true;
      this.#load(); // (aborts a load still under way: its worker ends)
    }
  }

  async #load() {
    const { status, progress, input, send } = this.#ui;
    const model = this.getAttribute('model');
    if (!model) {
      status.textContent = 'no model: set the model attribute';
      status.classList.add('error');
      return;
    }
    this.#loading?.abort();
    const controller = (this.#loading = new AbortController());
    progress.hidden = false;
    progress.removeAttribute('value');
    try {
      const nCtx = Number(this.getAttribute('context')) || undefined;
      const llm = await Hearth.load(new URL(model, document.baseURI).href, {
        signal: controller.signal,
        nCtx,
        onProgress: ({ loaded, total, phase }) => {
          progress.max = total || 1;
          progress.value = loaded;
          const mb = (n) => (n / 1e6).toFixed(1);
          status.textContent = `${phase === 'download' ? 'downloading' : 'loading'} the model: ${mb(loaded)} of ${mb(total)} MB`;
        },
      });
      await markdownReady; // (settles either way: without the library answers are plain text)
      if (controller.signal.aborted || !this.isConnected) {
        await llm.unload();
        return;
      }
      this.llm = llm;
      this.#chat = llm.conversation();
      status.textContent = `${llm.info.name ?? 'model'} · runs in this tab, nothing leaves it`;
      progress.hidden = true;
      input.disabled = send.disabled = false;
      this.#readyResolve(llm);
      this.dispatchEvent(new CustomEvent('hearth-ready', { detail: llm.info }));
    } catch (e) {
      if (controller.signal.aborted) return;
      progress.hidden = true;
      status.textContent = `the model could not be loaded: ${e.message}`;
      status.classList.add('error');
      this.#readyReject(e);
      this.dispatchEvent(new CustomEvent('hearth-error', { detail: e }));
    } finally {
      if (this.#loading === controller) this.#loading = null;
    }
  }

  /** Sends a message as if typed; resolves with the answer's GenerateResult (or null if stopped). */
  async send(text) {
    const { transcript, input, send, stop, status } = this.#ui;
    const chat = this.#chat;
    if (!this.llm || !chat || this.#generation || !text.trim()) return null;
    const line = (role, t) => {
      const p = document.createElement('div');
      p.className = `msg ${role}`;
      p.textContent = t; // text, never HTML
      transcript.append(p);
      return p;
    };
    line('user', text);
    const view = new MarkdownView(line('assistant', ''));
    input.value = '';
    input.disabled = send.disabled = true;
    stop.hidden = false;
    chat.system = this.getAttribute('system');
    const num = (name, dflt) => {
      const v = Number(this.getAttribute(name));
      return this.hasAttribute(name) && Number.isFinite(v) ? v : dflt;
    };
    const controller = (this.#generation = new AbortController());
    const stream = chat.send(text, {
      maxTokens: num('max-tokens', 256),
      temperature: num('temperature', 0.7),
      signal: controller.signal,
    });
    try {
      for await (const piece of stream) {
        view.append(piece);
        transcript.scrollTop = transcript.scrollHeight;
      }
      const result = /** @type {import('./hearth.js').TurnResult} */ (await stream.result);
      if (result.dropped) status.textContent = `the chat outgrew the model's context: its ${result.dropped} oldest messages were left out`;
      this.dispatchEvent(new CustomEvent('hearth-answer', { detail: result }));
      return result;
    } catch (e) {
      if (e?.type === 'context_full') {
        status.textContent = view.text
          ? 'the answer filled the context; older messages will be left out to go on'
          : `this message is too long for the model's context`;
      } else if (e?.name !== 'AbortError') status.textContent = `error: ${e.message}`;
      return null;
    } finally {
      view.finish();
      this.#generation = null;
      stop.hidden = true;
      input.disabled = send.disabled = false;
      input.focus();
    }
  }
}

if (!customElements.get('hearth-chat')) customElements.define('hearth-chat', HearthChat);
