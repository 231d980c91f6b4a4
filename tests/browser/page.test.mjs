// The chat page end to end, in one browser profile so the model is downloaded once:
// first load (progress), streaming and Stop, a responsive main thread, markup in the output shown as text,
// greedy tokens equal to the native CLI's, a reload from storage, an offline reload — and not one
// request leaving 127.0.0.1 throughout.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { LONG, MODEL_PATH, MODEL_URL_PATH, foreignRequests, launch, nativeGenerate, openChat, startServer } from './helpers.mjs';

/** Collects the page's events (and main-thread timer ticks) in order, across reloads. */
const RECORDER = () => {
  window.__events = [];
  for (const name of ['hearth:progress', 'hearth:piece', 'hearth:state']) {
    document.addEventListener(name, (e) => window.__events.push({ name, detail: e.detail, t: performance.now() }));
  }
};

const waitState = (page, state) =>
  page.waitForFunction((s) => window.hearthApp?.state === s, state, { timeout: LONG });

/** Sets the page's generation settings in its own controls (as a user would, without the clicks). */
async function settings(page, values) {
  await page.evaluate(({ temperature, maxTokens, system }) => {
    const set = (id, v) => {
      if (v === undefined) return;
      const input = document.getElementById(id);
      input.value = v;
      input.dispatchEvent(new Event('input', { bubbles: true }));
    };
    set('temperature', temperature ?? '0');
    set('max-tokens', maxTokens);
    set('system', system);
  }, values);
}

async function sendMessage(page, text) {
  await page.locator('#input').fill(text);
  await page.locator('#send').click();
}

describe('the chat page', { timeout: 4 * LONG }, () => {
  let server;
  let b;
  let page;

  before(async () => {
    server = await startServer();
    b = await launch();
    await b.context.addInitScript(RECORDER);
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('loads the default model with progress that only goes up, phase by phase', async () => {
    page = await openChat(b, server.isolated);
    const size = (await stat(MODEL_PATH)).size;
    const progress = await page.evaluate(() => window.__events.filter((e) => e.name === 'hearth:progress').map((e) => e.detail));
    const download = progress.filter((p) => p.phase === 'download');
    assert.ok(download.length >= 3, `expected several download progress events, got ${download.length}`);
    for (let i = 1; i < progress.length; i++) {
      if (progress[i].phase !== progress[i - 1].phase) continue;
      assert.ok(progress[i].loaded >= progress[i - 1].loaded, `progress went backwards at ${i}: ${JSON.stringify(progress.slice(i - 1, i + 1))}`);
    }
    // Each phase in turn, none revisited: the download, then the engine reading the weights in.
    const phases = progress.map((p) => p.phase).filter((ph, i, all) => ph !== all[i - 1]);
    assert.deepEqual(phases, ['download', 'load']);
    assert.equal(progress.at(-1).loaded, progress.at(-1).total, 'the last phase reached its end');
    assert.equal(download.at(-1).loaded, size);
    assert.ok(download.every((p) => p.total === size));
    const info = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(info.source, 'network');
    assert.equal(info.storage, 'opfs');
    assert.equal(info.sizeBytes, size);
    assert.equal(info.crossOriginIsolated, true);
    assert.match(await page.locator('#model-info').textContent(), /Q4_1/);
    const stored = await page.evaluate(async () => (await import('./hearth.js')).Hearth.cache.list());
    assert.equal(stored.length, 1);
    assert.equal(stored[0].size, size);
    assert.equal(stored[0].sha256, info.sha256);
  });

  it('streams an answer, and Stop ends it with the page usable again', async () => {
    await settings(page, { temperature: '0', maxTokens: '400' });
    await page.evaluate(() => (window.__events.length = 0));
    await sendMessage(page, 'Write a long story about a dragon who learns to bake bread.');
    await waitState(page, 'generating');
    await page.waitForFunction(() => window.__events.filter((e) => e.name === 'hearth:piece').length >= 4, null, { timeout: LONG });
    await page.locator('#stop').click();
    await waitState(page, 'ready');
    const pieces = await page.evaluate(() => window.__events.filter((e) => e.name === 'hearth:piece').length);
    const answer = page.locator('.msg.assistant').last();
    assert.match((await answer.getAttribute('class')) ?? '', /stopped/, 'the answer is marked as stopped');
    const text = await answer.locator('.text').textContent();
    assert.ok(text.length > 0, 'the stopped answer keeps its text');
    assert.ok(pieces < 400, 'Stop ended the generation before maxTokens');
    assert.equal(await page.locator('#stop').isHidden(), true);
    assert.equal(await page.locator('#input').isEnabled(), true);

    // The next turn works, and reuses the conversation held in the KV cache.
    await settings(page, { maxTokens: '8' });
    await sendMessage(page, 'Thank you!');
    await waitState(page, 'generating');
    await waitState(page, 'ready');
    assert.equal(await page.locator('.msg.assistant').count(), 2);
    assert.match(await page.locator('#stats').textContent(), /tok\/s.*\(\d+ reused\)/);
    assert.equal(await page.locator('#notice').isHidden(), true);
  });

  it('keeps the main thread ticking while the model generates', async () => {
    await page.locator('#new-chat').click();
    await settings(page, { maxTokens: '48' });
    await page.evaluate(() => {
      window.__events.length = 0;
      window.__ticker = setInterval(() => window.__events.push({ name: 'tick', t: performance.now() }), 10);
    });
    await sendMessage(page, 'Name three colors of the rainbow.');
    await waitState(page, 'generating');
    await waitState(page, 'ready');
    const events = await page.evaluate(() => {
      clearInterval(window.__ticker);
      return window.__events.map((e) => e.name);
    });
    const first = events.indexOf('hearth:piece');
    const last = events.lastIndexOf('hearth:piece');
    assert.ok(first >= 0 && last > first, 'several pieces arrived');
    const during = events.slice(first, last + 1);
    const ticks = during.filter((n) => n === 'tick').length;
    const pieces = during.filter((n) => n === 'hearth:piece').length;
    // Ticks interleave with the pieces: between consecutive pieces the timer ran at least once,
    // for most of them (a frozen main thread would give no ticks between pieces at all).
    let gapsWithTicks = 0;
    let sawTick = false;
    for (const n of during.slice(1)) {
      if (n === 'tick') sawTick = true;
      else if (n === 'hearth:piece') {
        if (sawTick) gapsWithTicks++;
        sawTick = false;
      }
    }
    assert.ok(ticks >= 5, `the timer ticked only ${ticks} times during generation`);
    assert.ok(gapsWithTicks >= Math.floor((pieces - 1) / 2), `timer ticks between only ${gapsWithTicks} of ${pieces - 1} piece gaps`);
  });

  it('shows model output containing HTML as text, and runs nothing', async () => {
    await page.locator('#new-chat').click();
    await settings(page, { maxTokens: '24', system: '' });
    const payload = '<img src=x onerror="window.__pwned=1">';
    // A one-shot example makes this small model echo markup.
    await page.evaluate(() => {
      window.hearthApp.messages.push(
        { role: 'user', content: 'Repeat exactly: <b>hi</b>' },
        { role: 'assistant', content: '<b>hi</b>' },
      );
    });
    await sendMessage(page, `Repeat exactly: ${payload}`);
    await waitState(page, 'generating');
    await waitState(page, 'ready');
    const answer = await page.locator('.msg.assistant .text').last().textContent();
    assert.match(answer, /<[a-z]+[^>]*>/, `the model was expected to echo markup, said ${JSON.stringify(answer)}`);
    // Answers are rendered as markdown (markdown.js), whose HTML is text: the only elements are
    // the renderer's own, never one named in the text. What the user typed is plain text.
    assert.equal(await page.locator('#transcript .msg.user .text *').count(), 0, 'no element was created from user text');
    for (const tag of ['img', 'b', 'script', 'iframe', 'svg', 'style']) {
      assert.equal(await page.locator(`#transcript ${tag}`).count(), 0, `no <${tag}> was created`);
    }
    assert.match(await page.locator('.msg.user .text').last().textContent(), /<img src=x onerror=/);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.ok(!b.requests.some((u) => new URL(u).pathname === '/x'), 'nothing tried to load the <img> source');
    await settings(page, { system: 'You are a helpful assistant.' });
  });

  it('produces the same greedy tokens as the native CLI for a raw prompt', async () => {
    const prompt = 'The three most important inventions of the twentieth century are';
    const native = await nativeGenerate(prompt, 32);
    const web = await page.evaluate(
      (p) => window.hearthApp.llm.generate(p, { raw: true, maxTokens: 32, temperature: 0 }),
      prompt,
    );
    assert.deepEqual(web.promptTokens, native.prompt_tokens);
    assert.deepEqual(web.tokens, native.tokens);
    assert.equal(web.text, native.text);
    assert.equal(web.timings.decodeTokens, 32);
    assert.ok(web.timings.prefillMs > 0 && web.timings.decodeMs > 0);
  });

  it('loads from storage after a reload, without asking the network for the model', async () => {
    const mark = b.requests.length;
    await page.reload();
    await waitState(page, 'ready');
    const info = await page.evaluate(() => window.hearthApp.llm.info);
    assert.equal(info.source, 'storage');
    assert.equal(info.storage, 'opfs');
    const modelRequests = b.requests.slice(mark).filter((u) => new URL(u).pathname === MODEL_URL_PATH);
    assert.deepEqual(modelRequests, []);
    await settings(page, { maxTokens: '8' });
    await sendMessage(page, 'Hello!');
    await waitState(page, 'generating');
    await waitState(page, 'ready');
    assert.ok((await page.locator('.msg.assistant .text').last().textContent()).length > 0);
  });

  it('reloads and chats with the network off', async () => {
    await page.evaluate(() => navigator.serviceWorker.ready);
    await b.context.setOffline(true);
    try {
      await page.reload();
      await waitState(page, 'ready');
      assert.equal(await page.evaluate(() => navigator.onLine), false);
      assert.equal(await page.evaluate(() => window.hearthApp.llm.info.source), 'storage');
      await settings(page, { maxTokens: '8' });
      await sendMessage(page, 'Hi there');
      await waitState(page, 'generating');
      await waitState(page, 'ready');
      assert.ok((await page.locator('.msg.assistant .text').last().textContent()).length > 0);
      assert.equal(await page.locator('#notice').isHidden(), true);
    } finally {
      await b.context.setOffline(false);
    }
  });

  it('made no request beyond 127.0.0.1', () => {
    assert.ok(b.requests.length > 10, 'the request log is being recorded');
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
