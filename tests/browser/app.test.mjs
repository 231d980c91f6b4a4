// The chat page as an app people keep: chats saved in IndexedDB (survive a reload, renamed,
// exported, deleted), regenerate and edit-and-resend, answers rendered as markdown with nothing
// from the text becoming markup of its own, the model picker (a curated entry shown before any
// download, a pasted URL loaded), and "delete everything". One browser profile; the default model
// is downloaded once from the loopback server, and nothing may leave 127.0.0.1.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { LONG, MODEL_URL_PATH, foreignRequests, launch, opfsFiles, openChat, startServer } from './helpers.mjs';

const waitState = (page, state) => page.waitForFunction((s) => window.hearthApp?.state === s, state, { timeout: LONG });

/** Sets the generation settings in the page's own controls. */
async function settings(page, { temperature = '0', maxTokens = '8' } = {}) {
  await page.evaluate(
    ({ temperature, maxTokens }) => {
      document.getElementById('temperature').value = temperature;
      document.getElementById('max-tokens').value = maxTokens;
    },
    { temperature, maxTokens },
  );
}

/** Types a message, sends it and waits for the answer to end. */
async function turn(page, text) {
  const before = await page.evaluate(() => document.querySelectorAll('.msg.assistant').length);
  await page.locator('#input').fill(text);
  await page.locator('#send').click();
  await page.waitForFunction(
    (n) => window.hearthApp.state === 'ready' && document.querySelectorAll('.msg.assistant:not(.streaming)').length > n,
    before,
    { timeout: LONG },
  );
}

/** The chats as saved in IndexedDB (through the page's own module). */
const savedChats = (page) => page.evaluate(async () => (await import('./chats.js')).chats.list());

/** Opens the page (or reloads it) and waits for the model and the saved chats. */
async function ready(page) {
  await waitState(page, 'ready');
  await page.evaluate(() => window.hearthApp.restored);
}

/** Saves a chat with the given answer and opens it, as the sidebar would. */
async function showSavedAnswer(page, answer) {
  return page.evaluate(async (content) => {
    const { chats, newChatRecord } = await import('./chats.js');
    const r = newChatRecord();
    r.title = 'Rendered';
    r.messages = [
      { role: 'user', content: 'Show me.' },
      { role: 'assistant', content },
    ];
    await chats.put(r);
    await window.hearthApp.refreshChats();
    await window.hearthApp.openSaved(r.id);
    return r.id;
  }, answer);
}

describe('the chat app', { timeout: 4 * LONG }, () => {
  let server;
  let b;
  let page;

  before(async () => {
    server = await startServer();
    b = await launch();
    await b.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(server.isolated).origin });
    page = await openChat(b, server.isolated);
    await ready(page);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('keeps a chat across a reload, and renames, exports and deletes it', async () => {
    await settings(page);
    await turn(page, 'Hello there, who are you?');
    const answer = await page.locator('.msg.assistant .text').last().textContent();
    assert.ok(answer.length > 0);
    assert.equal(await page.locator('#chat-list .chat-item').count(), 1);
    assert.equal(await page.locator('.chat-item .chat-title').textContent(), 'Hello there, who are you?');

    await page.reload();
    await ready(page);
    assert.equal(await page.locator('.msg.user .text').textContent(), 'Hello there, who are you?');
    assert.equal(await page.locator('.msg.assistant .text').textContent(), answer);
    assert.equal((await page.evaluate(() => window.hearthApp.messages)).length, 2, 'the model continues the restored chat');

    await page.locator('.chat-item .chat-rename').click();
    await page.locator('.chat-title-input').fill('Greetings');
    await page.locator('.chat-title-input').press('Enter');
    await page.waitForFunction(() => document.querySelector('.chat-item .chat-title')?.textContent === 'Greetings', null, { timeout: LONG });
    await page.reload();
    await ready(page);
    assert.equal(await page.locator('.chat-item .chat-title').textContent(), 'Greetings');

    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('.chat-item .chat-export').click()]);
    assert.match(download.suggestedFilename(), /^hearth-chat-greetings\.json$/);
    const exported = JSON.parse(await readFile(await download.path(), 'utf8'));
    assert.equal(exported.format, 'hearth-chats');
    assert.equal(exported.version, 1);
    assert.equal(exported.chats.length, 1);
    const [c] = exported.chats;
    assert.equal(c.title, 'Greetings');
    assert.deepEqual(
      c.messages.map((m) => [m.role, m.content]),
      [
        ['user', 'Hello there, who are you?'],
        ['assistant', answer],
      ],
    );
    assert.equal(c.system, 'You are a helpful assistant.');
    assert.ok(typeof c.messages[1].model === 'string' && c.messages[1].model.length > 0, 'the answer names its model');

    page.once('dialog', (d) => d.accept());
    await page.locator('.chat-item .chat-delete').click();
    await page.waitForFunction(() => document.querySelectorAll('#chat-list .chat-item').length === 0, null, { timeout: LONG });
    assert.equal(await page.locator('.msg').count(), 0, 'the deleted chat left the screen');
    await page.reload();
    await ready(page);
    assert.deepEqual(await savedChats(page), []);
    assert.equal(await page.locator('#chat-list .chat-item').count(), 0);
  });

  it('regenerates the last answer, and resends an edited message in place of the old turns', async () => {
    await page.locator('#new-chat').click();
    await settings(page, { temperature: '1', maxTokens: '8' });
    await turn(page, 'Tell me a joke.');
    await turn(page, 'Another one, please.');
    assert.equal(await page.locator('.msg').count(), 4);

    await page.evaluate(() => {
      window.__generations = 0;
      document.addEventListener('hearth:state', (e) => e.detail.state === 'generating' && window.__generations++);
    });
    await page.locator('.msg.assistant .regenerate').click();
    await page.waitForFunction(() => window.hearthApp.state === 'ready' && window.__generations === 1, null, { timeout: LONG });
    let [saved] = await savedChats(page);
    assert.deepEqual(saved.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant'], 'the answer was replaced, not added');
    assert.equal(saved.messages[2].content, 'Another one, please.');
    assert.equal(await page.locator('.msg').count(), 4);
    assert.equal(await page.locator('.regenerate').count(), 1, 'only the last answer offers Regenerate');

    await page.locator('.msg.user .edit').first().click();
    await page.locator('.msg.user .editor textarea').fill('Tell me a fact.');
    await page.locator('.msg.user .save-edit').click();
    await page.waitForFunction(() => window.hearthApp.state === 'ready' && document.querySelectorAll('.msg').length === 2 && !document.querySelector('.streaming'), null, {
      timeout: LONG,
    });
    [saved] = await savedChats(page);
    assert.deepEqual(saved.messages.map((m) => m.role), ['user', 'assistant']);
    assert.equal(saved.messages[0].content, 'Tell me a fact.');
    assert.equal(await page.locator('.msg.user .text').textContent(), 'Tell me a fact.');
    // The model sees exactly what is on screen.
    assert.deepEqual(
      await page.evaluate(() => window.hearthApp.messages.map((m) => [m.role, m.content])),
      saved.messages.map((m) => [m.role, m.content]),
    );
  });

  it('renders markdown in answers: emphasis, lists, and code blocks with a working Copy button', async () => {
    // A live answer is rendered as markdown while it streams (the block being written re-rendered).
    await page.evaluate(() => {
      window.__sawLive = false;
      new MutationObserver(() => {
        if (document.querySelector('.msg.streaming .text.md .md-tail')?.childNodes.length) window.__sawLive = true;
      }).observe(document.getElementById('transcript'), { childList: true, subtree: true });
    });
    await settings(page, { maxTokens: '24' });
    await turn(page, 'Say hello.');
    assert.equal(await page.evaluate(() => window.__sawLive), true, 'the answer was rendered while it streamed');
    const code = 'def add(a, b):\n    return a + b\n';
    await showSavedAnswer(page, `Here is **bold** and *italic* and \`inline\`.\n\n- one\n- two\n\n1. first\n2. second\n\n\`\`\`python\n${code}\`\`\`\n\n> quoted\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n`);
    const answer = page.locator('.msg.assistant .text');
    assert.equal(await answer.locator('strong').textContent(), 'bold');
    assert.equal(await answer.locator('em').textContent(), 'italic');
    assert.equal(await answer.locator('p code').textContent(), 'inline');
    assert.deepEqual(await answer.locator('ul > li').allTextContents(), ['one', 'two']);
    assert.deepEqual(await answer.locator('ol > li').allTextContents(), ['first', 'second']);
    assert.equal(await answer.locator('blockquote').textContent(), 'quoted');
    assert.equal(await answer.locator('td').nth(1).evaluate((td) => td.style.textAlign), 'right');
    assert.equal(await answer.locator('.code .code-lang').textContent(), 'python');
    assert.equal(await answer.locator('.code pre code').textContent(), code);
    await answer.locator('.code .copy').click();
    await page.waitForFunction(() => document.querySelector('.code .copy').textContent !== 'Copy', null, { timeout: LONG });
    assert.equal(await answer.locator('.code .copy').textContent(), 'Copied');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), code);
  });

  it('renders a streamed answer block by block: only the block being written is parsed again, and it ends as the whole text renders', async () => {
    const r = await page.evaluate(async () => {
      const { MarkdownView, renderMarkdown } = await import('./markdown.js');
      // 200 blocks; every tenth a code fence with a blank line inside (which must not be cut).
      const text = Array.from({ length: 200 }, (_, i) => (i % 10 === 5 ? `\`\`\`js\nlet x = ${i};\n\nx++;\n\`\`\`` : `Paragraph **${i}**, with some words.`)).join('\n\n');
      const live = document.createElement('div');
      const view = new MarkdownView(live);
      let maxTail = 0;
      for (let i = 0; i < text.length; i += 7) {
        view.append(text.slice(i, i + 7));
        if (i % 70 === 0) {
          await new Promise(requestAnimationFrame);
          maxTail = Math.max(maxTail, view.text.length - view.doneAt);
        }
      }
      await new Promise(requestAnimationFrame);
      const streamed = live.querySelector('.md-done').innerHTML + live.querySelector('.md-tail').innerHTML;
      view.finish();
      const whole = document.createElement('div');
      renderMarkdown(whole, text);
      return { maxTail, length: text.length, streamedSame: streamed === whole.innerHTML, finishedSame: live.innerHTML === whole.innerHTML };
    });
    assert.ok(r.maxTail < 120, `at most about one block was left to parse again each frame: ${r.maxTail} of ${r.length} characters`);
    assert.equal(r.streamedSame, true, 'block by block, the answer came out as the whole text renders (no fence was cut)');
    assert.equal(r.finishedSame, true);
  });

  it('turns no HTML, link or image in markdown into live markup: nothing runs, nothing loads', async () => {
    const hostile = [
      '<img src="/pixel-html.png" onerror="window.__pwned=1"> <script>window.__pwned=2</script> <b>not bold</b>',
      '',
      '[click me](javascript:window.__pwned=3) [data](data:text/html,<script>parent.__pwned=4</script>) [vb](vbscript:x) [fine](https://example.com/page) [mail](mailto:a@example.com) [relative](/local/page) [ftp](ftp://example.com/f)',
      '',
      '![a cat](/pixel-md.png) ![remote](https://example.com/cat.png "t")',
      '',
      '<iframe src="/frame.html"></iframe>',
      '',
      '<a href="javascript:window.__pwned=5">raw link</a> <javascript:window.__pwned=6> [ref][x]',
      '',
      '[x]: javascript:window.__pwned=7',
      '',
      '<svg onload="window.__pwned=8"></svg><style>body{display:none}</style>',
    ].join('\n');
    const mark = b.requests.length;
    await showSavedAnswer(page, hostile);
    const answer = page.locator('.msg.assistant .text');
    for (const tag of ['img', 'script', 'iframe', 'b', 'svg', 'style', 'object', 'embed', 'video', 'audio', 'link', 'meta', 'form', 'input']) {
      assert.equal(await page.locator(`#transcript ${tag}`).count(), 0, `no <${tag}> was created`);
    }
    const hrefs = await answer.locator('a').evaluateAll((as) => as.map((a) => a.href));
    assert.deepEqual(hrefs, ['https://example.com/page', 'mailto:a@example.com', 'https://example.com/cat.png']);
    const text = await answer.textContent();
    assert.match(text, /<img src="\/pixel-html.png" onerror=/, 'the HTML is shown as text');
    assert.match(text, /<script>window.__pwned=2<\/script>/);
    assert.match(text, /\[image: a cat\]/);
    assert.equal(await answer.locator('a.image-link').textContent(), '[image: remote]');
    // markdown-it refuses javascript:, vbscript: and data: links: they stay text.
    assert.match(text, /\[click me\]\(javascript:window.__pwned=3\)/);
    assert.match(text, /\[ref\]\[x\]/);
    // Other links it parses, whose URL is neither http(s) nor mailto, are text too: clicking does nothing.
    for (const label of ['relative', 'ftp']) {
      const span = answer.locator('.link-off', { hasText: label });
      assert.equal(await span.evaluate((e) => e.closest('a')), null, `“${label}” is not a link`);
      await span.click();
    }
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.evaluate(() => getComputedStyle(document.body).display), 'grid', 'no style from the text applies');
    const asked = b.requests.slice(mark).map((u) => new URL(u).pathname);
    for (const p of ['/pixel-html.png', '/pixel-md.png', '/frame.html', '/cat.png']) assert.ok(!asked.includes(p), `${p} was not requested`);
  });

  it('shows a curated model’s name, size and license before any download, and loads a pasted URL', async () => {
    const mark = b.requests.length;
    await page.locator('#models-open').click();
    await page.locator('#models').waitFor({ state: 'visible' });
    assert.ok((await page.locator('#catalog .catalog-item').count()) >= 12);
    assert.match(await page.locator('#models').textContent(), /only its weights/);
    await page.locator('.catalog-item[data-id="qwen2.5-0.5b"]').click();
    const detail = await page.locator('#catalog-detail').textContent();
    assert.match(detail, /Qwen2\.5 0\.5B Instruct/);
    assert.match(detail, /≈ 398\.0 MB \(approximate\)/);
    assert.match(detail, /Apache-2\.0/);
    assert.match(detail, /huggingface\.co\/bartowski\/Qwen2\.5-0\.5B-Instruct-GGUF\/resolve\/main\/Qwen2\.5-0\.5B-Instruct-Q4_K_M\.gguf/);
    assert.match(await page.locator('#catalog-download').textContent(), /Download ≈ 398\.0 MB and run/);
    assert.deepEqual(foreignRequests(b.requests.slice(mark)), [], 'looking downloads nothing');
    await page.locator('#catalog-back').click();

    const pasted = `${server.isolated}${MODEL_URL_PATH.slice(1)}?pasted=1`;
    await page.locator('#model-url').fill(pasted);
    await page.locator('#model-url-load').click();
    await page.waitForFunction((u) => window.hearthApp.state === 'ready' && window.hearthApp.llm?.info.url === u, pasted, { timeout: LONG });
    const info = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(info.source, 'network');
    assert.ok(b.requests.slice(mark).includes(pasted), 'the pasted URL was fetched');
    const running = await page.locator('#running').textContent();
    assert.match(running, /^Running .+ · llama · .+ · 98\.4 MB$/);
    if (Array.isArray(info.weightMix)) {
      // The weight types by their share of the bytes, largest first.
      const shares = [...running.matchAll(/([A-Z0-9_]+) (\d+)%/g)].map((m) => [m[1], Number(m[2])]);
      assert.ok(shares.length >= 1 && shares[0][0] === info.weightMix.sort((x, y) => y.bytes - x.bytes)[0].type, running);
      const sum = shares.reduce((t, [, p]) => t + p, 0);
      assert.ok(sum >= 98 && sum <= 102, `the shares add up to about 100%: ${running}`);
    } else {
      assert.match(running, / · Q4_1 · /, 'without a weight mix from the engine, its main type');
    }
    const pin = await page.evaluate(async (u) => (await import('./chats.js')).pins.get(u), pasted);
    assert.equal(pin.sha256, info.sha256, 'its hash was recorded on the first download');

    await page.locator('#models-open').click();
    await page.waitForFunction((u) => [...document.querySelectorAll('.stored-model')].some((li) => li.dataset.url === u), pasted, { timeout: LONG });
    assert.match(await page.locator('.stored-model').filter({ hasText: '98.4 MB' }).first().textContent(), /98\.4 MB · in use/);
    await page.locator('#models-close').click();

    // Chosen in the picker, it is the model the next visit opens (from storage, checked by its hash).
    await page.reload();
    await ready(page);
    const again = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(again.url, pasted);
    assert.equal(again.source, 'storage');
  });

  it('deletes everything: the stored models and the chats', async () => {
    await settings(page);
    await turn(page, 'Remember this.');
    assert.ok((await savedChats(page)).length >= 1);
    assert.ok((await opfsFiles(page)).length > 0);
    await page.locator('#settings summary').click();
    page.once('dialog', (d) => d.accept());
    await page.locator('#delete-everything').click();
    await page.waitForFunction(() => /Deleted every stored model/.test(document.getElementById('notice').textContent), null, { timeout: LONG });
    assert.deepEqual(await opfsFiles(page), []);
    assert.deepEqual(await savedChats(page), []);
    assert.equal(await page.locator('#chat-list .chat-item').count(), 0);
    assert.equal(await page.locator('.msg').count(), 0);
    assert.equal(await page.evaluate(() => localStorage.getItem('hearth:model')), null);
    assert.equal(await page.evaluate(async (u) => (await import('./chats.js')).pins.get(u), `${server.isolated}${MODEL_URL_PATH.slice(1)}?pasted=1`), undefined);
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.ok(b.requests.length > 10);
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
