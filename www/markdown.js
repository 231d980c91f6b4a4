// Markdown for model answers, shared by the chat page and <hearth-chat>. markdown-it (pinned in
// build.sh, vendored into the git-ignored www/vendor/) parses with raw HTML disabled, and this file
// turns its token stream into DOM nodes itself: only elements from a fixed list are ever created,
// every piece of text goes in as a Text node, and no HTML string — escaped or not — is ever handed
// to the DOM (no innerHTML anywhere). Links are links only for http(s) and mailto URLs; images are
// never loaded (nothing leaves the device): they become a link showing their alt text.
//
//   await markdownReady;                      // the parser, loaded once (falls back to plain text)
//   renderMarkdown(div, text);                // a whole message
//   const view = new MarkdownView(div);       // a streamed one:
//   view.append(piece); … view.finish();      //   re-rendered at most once a frame, see below

/** @type {import('./vendor/markdown-it.mjs').MarkdownIt|null} markdown-it's types: build.sh puts the package's declarations next to it */
let parser = null;

/**
 * Resolves once the parser is loaded: true, or false when it could not be (then messages show as
 * plain text, which is still safe).
 * @type {Promise<boolean>}
 */
// (A relative import resolves against this module's URL, so the element finds it from any page;
// tools/dist.mjs follows it, as it follows every import written as a literal.)
export const markdownReady = import('./vendor/markdown-it.mjs').then(
  (mod) => {
    // html: false — tags in the text stay text; breaks: a single newline is a line break, as
    // chat models write.
    parser = new mod.default({ html: false, breaks: true, linkify: false, typographer: false });
    return true;
  },
  (e) => {
    console.warn(`hearth: markdown is off (${e?.message ?? e}); answers show as plain text`);
    return false;
  },
);

/** Element names a token may become; any other opening token becomes a <span>. */
const TAGS = new Set(['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'ul', 'ol', 'li', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'strong', 'em', 's']);
/** URL schemes a link may have. */
const LINK_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

/** `href` as an absolute http(s)/mailto URL, or null (javascript:, data:, relative paths …). */
export function safeHref(href) {
  if (!href) return null;
  try {
    const url = new URL(href);
    return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens in a new tab and tells the other site nothing about this page. */
function link(href, text) {
  const a = document.createElement('a');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  a.referrerPolicy = 'no-referrer';
  if (text !== undefined) a.textContent = text;
  return a;
}

/** A fenced or indented code block: its language, a Copy button, and the code as text. */
function codeBlock(code, lang) {
  const box = document.createElement('div');
  box.className = 'code';
  const bar = document.createElement('div');
  bar.className = 'code-bar';
  const name = document.createElement('span');
  name.className = 'code-lang';
  name.textContent = lang;
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'copy';
  copy.textContent = 'Copy';
  copy.addEventListener('click', () => {
    navigator.clipboard.writeText(code).then(
      () => (copy.textContent = 'Copied'),
      () => (copy.textContent = 'Copy failed'),
    );
  });
  bar.append(name, copy);
  const pre = document.createElement('pre');
  const el = document.createElement('code');
  el.textContent = code;
  pre.append(el);
  box.append(bar, pre);
  return box;
}

/** An image, not loaded: a link to it (when its URL is http/https) labelled with its alt text. */
function imageStandIn(token) {
  const alt = (token.children ?? []).map((c) => c.content).join('') || token.content;
  const label = `[image: ${alt || 'no description'}]`;
  const href = safeHref(String(token.attrGet('src') ?? ''));
  const el = href ? link(href, label) : document.createElement('span');
  if (!href) el.textContent = label;
  el.className = 'image-link';
  el.title = href ? `Not loaded. Opens ${href}` : 'Not loaded';
  return el;
}

/** An element for an opening token (the tag only from TAGS; links only to safe URLs). */
function open(token) {
  if (token.type === 'link_open') {
    const href = safeHref(String(token.attrGet('href') ?? ''));
    if (href) return link(href);
    const span = document.createElement('span');
    span.className = 'link-off';
    return span;
  }
  const el = document.createElement(TAGS.has(token.tag) ? token.tag : 'span');
  if (token.type === 'ordered_list_open') {
    const start = Number(token.attrGet('start'));
    if (Number.isInteger(start) && start !== 1) /** @type {HTMLOListElement} */ (el).start = start;
  }
  const align = /text-align:(left|right|center)/.exec(String(token.attrGet('style') ?? ''));
  if (align) el.style.textAlign = align[1];
  return el;
}

/**
 * Appends the DOM for `tokens` (a block or inline stream) to `parent`.
 * @param {import('./vendor/markdown-it.mjs').Token[]} tokens
 * @param {Node} parent
 */
function build(tokens, parent) {
  /** @type {Node[]} */
  const stack = [parent];
  for (const t of tokens) {
    const top = stack[stack.length - 1];
    if (t.nesting === 1) {
      // A tight list's paragraphs are not elements of their own.
      if (t.hidden) {
        stack.push(top);
        continue;
      }
      const el = open(t);
      top.appendChild(el);
      stack.push(el);
    } else if (t.nesting === -1) {
      if (stack.length > 1) stack.pop();
    } else if (t.type === 'inline') {
      build(t.children ?? [], top);
    } else if (t.type === 'softbreak' || t.type === 'hardbreak') {
      top.appendChild(document.createElement('br'));
    } else if (t.type === 'code_inline') {
      const code = document.createElement('code');
      code.textContent = t.content;
      top.appendChild(code);
    } else if (t.type === 'fence' || t.type === 'code_block') {
      top.appendChild(codeBlock(t.content, (t.info ?? '').trim().split(/\s+/)[0] || 'code'));
    } else if (t.type === 'hr') {
      top.appendChild(document.createElement('hr'));
    } else if (t.type === 'image') {
      top.appendChild(imageStandIn(t));
    } else if (t.content) {
      // text, and anything else (html_* tokens cannot occur with html: false; they would be text too)
      top.appendChild(document.createTextNode(t.content));
    }
  }
}

/** DOM nodes for `text`, in a fragment (plain text when the parser is not loaded). */
function fragment(text) {
  const frag = document.createDocumentFragment();
  if (!parser) frag.append(document.createTextNode(text));
  else build(parser.parse(text, {}), frag);
  return frag;
}

/**
 * Renders `text` as markdown into `el` (replacing what it held).
 * @param {Element} el
 * @param {string} text
 */
export function renderMarkdown(el, text) {
  el.classList.toggle('md', !!parser);
  el.replaceChildren(fragment(text));
}

/**
 * Where the text from `from` on may be cut into finished blocks: just after its last blank line
 * that is outside a fenced code block and followed by a line starting with a non-space (an
 * indented line could continue a list item). -1 when there is none. One pass over the lines.
 * @param {string} text
 * @param {number} from  a position outside any fence (a previous cut, or 0)
 */
export function lastCut(text, from) {
  let cut = -1;
  /** @type {string|null} the open fence's marker */
  let fence = null;
  for (let at = from, nl = text.indexOf('\n', at); nl !== -1; at = nl + 1, nl = text.indexOf('\n', at)) {
    const line = text.slice(at, nl);
    const m = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (m && !fence) fence = m[1];
    else if (m && m[1][0] === fence?.[0] && m[1].length >= fence.length && !m[2].trim()) fence = null;
    else if (!fence && !line.trim() && at > from && /\S/.test(text[nl + 1] ?? ' ')) cut = nl + 1;
  }
  return cut;
}

/**
 * An answer rendered as it streams. Finished blocks are rendered once: text up to the last blank
 * line that is outside a code fence (and not followed by an indented line, which could continue a
 * list item) is parsed and appended for good; only the text after it — the block being written —
 * is parsed again, at most once per animation frame. So a long answer costs about linear time, not
 * quadratic. `finish()` renders the whole text once more, so that what spans blocks (a loose list,
 * a reference link) comes out as the library renders it.
 */
export class MarkdownView {
  /** @param {Element} el  where the answer goes (its children are replaced) */
  constructor(el) {
    this.el = el;
    this.text = '';
    /** Where the text not yet rendered for good begins. */
    this.doneAt = 0;
    this.frame = 0;
    this.stable = document.createElement('div');
    this.stable.className = 'md-done';
    this.tail = document.createElement('div');
    this.tail.className = 'md-tail';
    el.classList.toggle('md', !!parser);
    el.replaceChildren(this.stable, this.tail);
  }

  /** @param {string} piece */
  append(piece) {
    this.text += piece;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.#render());
  }

  #render() {
    this.frame = 0;
    if (!parser) {
      this.tail.textContent = this.text;
      return;
    }
    const cut = lastCut(this.text, this.doneAt);
    if (cut > this.doneAt) {
      this.stable.append(fragment(this.text.slice(this.doneAt, cut)));
      this.doneAt = cut;
    }
    this.tail.replaceChildren(fragment(this.text.slice(this.doneAt)));
  }

  /** The whole text, rendered once from the start. */
  finish() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    renderMarkdown(this.el, this.text);
  }
}

/** Styles for rendered markdown; the page and the element adopt this sheet. */
const CSS = `
.md { white-space: normal; }
.md > :first-child, .md .md-done > :first-child, .md-tail > :first-child { margin-top: 0; }
.md > :last-child, .md-tail > :last-child { margin-bottom: 0; }
.md-done, .md-tail { display: contents; }
.md p, .md ul, .md ol, .md blockquote, .md table, .md .code, .md h1, .md h2, .md h3, .md h4, .md h5, .md h6 { margin: 0.5em 0; }
.md h1, .md h2, .md h3, .md h4, .md h5, .md h6 { font-size: 1em; font-weight: 650; }
.md h1 { font-size: 1.2em; } .md h2 { font-size: 1.1em; }
.md ul, .md ol { padding-left: 1.4em; }
.md blockquote { padding-left: 0.8em; border-left: 3px solid var(--md-line, color-mix(in srgb, currentColor 25%, transparent)); color: var(--md-muted, inherit); }
.md code { font: 0.9em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--md-code-bg, color-mix(in srgb, currentColor 8%, transparent)); padding: 0.05em 0.3em; border-radius: 4px; }
.md .code { border: 1px solid var(--md-line, color-mix(in srgb, currentColor 20%, transparent)); border-radius: 8px; overflow: hidden; }
.md .code-bar { display: flex; justify-content: space-between; align-items: center; padding: 0.15em 0.3em 0.15em 0.7em; font-size: 0.8em; background: var(--md-code-bg, color-mix(in srgb, currentColor 8%, transparent)); }
.md .code-lang { opacity: 0.7; }
.md .copy { font: inherit; padding: 0.1em 0.6em; border-radius: 6px; border: 1px solid var(--md-line, color-mix(in srgb, currentColor 20%, transparent)); background: transparent; color: inherit; cursor: pointer; }
.md pre { margin: 0; padding: 0.6em 0.8em; overflow-x: auto; white-space: pre; }
.md pre code { background: none; padding: 0; font-size: 0.85em; }
.md table { border-collapse: collapse; display: block; overflow-x: auto; }
.md th, .md td { border: 1px solid var(--md-line, color-mix(in srgb, currentColor 20%, transparent)); padding: 0.2em 0.5em; }
.md hr { border: 0; border-top: 1px solid var(--md-line, color-mix(in srgb, currentColor 20%, transparent)); }
.md a { color: var(--md-link, inherit); }
.md .image-link { font-style: italic; }
.md .link-off { text-decoration: underline dotted; }
`;

/** @type {CSSStyleSheet|null} */
let sheet = null;
/** The markdown stylesheet, one constructed sheet for every document and shadow root. */
export function markdownStyles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}
