// Long use: a 100-turn chat whose memory stays flat after the first turn and whose answers equal a
// fresh engine's for the same conversation; a chat that outgrows its context goes on, dropping its
// oldest turns (in the API, the chat page and the element); 50 load/unload cycles leave no worker
// and no growth behind.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { blankPage, LONG, MODEL_URL_PATH } from './helpers.mjs';

describe('long use', { timeout: 6 * LONG }, () => {
  let server;
  let b;
  let page;
  let close;

  before(async () => ({ server, b, page, close } = await blankPage()));
  after(async () => close?.());

  it('chats 100 turns with flat memory, dropping old turns once the context is full, like a fresh engine', async () => {
    const r = await page.evaluate(async (url) => {
      const { Hearth } = await import('/hearth.js');
      const llm = await Hearth.load(url, { nCtx: 512, nThreads: 1 });
      const chat = llm.conversation({ system: 'You are a helpful assistant.' });
      const turns = [];
      let memoryAfterFirst = 0;
      for (let i = 1; i <= 100; i++) {
        const before = chat.messages.map((m) => ({ ...m }));
        const stream = chat.send(`Say the number ${i}.`, { maxTokens: 6, temperature: 0 });
        for await (const _ of stream);
        const res = await stream.result;
        if (i === 1) memoryAfterFirst = (await llm.stats()).wasmMemoryBytes;
        turns.push({ i, tokens: res.tokens, dropped: res.dropped, before, kept: chat.messages.length });
      }
      const memoryAtEnd = (await llm.stats()).wasmMemoryBytes;
      // A fresh engine fed the same conversations at a few turns, including ones right after a drop.
      const fresh = await Hearth.load(url, { nCtx: 512, nThreads: 1 });
      const dropTurns = turns.filter((t) => t.dropped > 0).map((t) => t.i);
      const checks = [];
      for (const i of [1, 2, dropTurns[0], dropTurns[0] + 1, 100].filter((x) => x)) {
        const t = turns[i - 1];
        // The conversation as sent at turn i: the turns kept before it, minus what it dropped.
        const kept = t.before.slice(t.dropped);
        const msgs = [{ role: 'system', content: 'You are a helpful assistant.' }, ...kept, { role: 'user', content: `Say the number ${i}.` }];
        await fresh.reset();
        const s = fresh.chat(msgs, { maxTokens: 6, temperature: 0 });
        for await (const _ of s);
        checks.push({ i, fresh: (await s.result).tokens, long: t.tokens });
      }
      await fresh.unload();
      await llm.unload();
      return { memoryAfterFirst, memoryAtEnd, dropTurns, checks, lastKept: turns.at(-1).kept };
    }, MODEL_URL_PATH);
    assert.ok(r.dropTurns.length >= 1, `the context filled and old turns were dropped: ${JSON.stringify(r.dropTurns)}`);
    assert.equal(r.memoryAtEnd, r.memoryAfterFirst, 'wasm memory did not grow after the first turn');
    for (const c of r.checks) assert.deepEqual(c.long, c.fresh, `turn ${c.i}: the long session answers as a fresh one`);
    assert.ok(r.lastKept < 200, 'the conversation was trimmed');
  });

  it('the chat page and the element say so and go on when the context fills', async () => {
    const p = await b.context.newPage();
    await p.goto(server.isolated + '?ctx=256');
    await p.waitForFunction(() => window.hearthApp?.state === 'ready', null, { timeout: LONG });
    await p.evaluate(() => {
      document.getElementById('max-tokens').value = '48';
      document.getElementById('temperature').value = '0';
    });
    let sawDrop = false;
    for (let i = 0; i < 12 && !sawDrop; i++) {
      await p.locator('#input').fill(`Tell me a fact about the number ${i}.`);
      await p.locator('#send').click();
      await p.waitForFunction(() => window.hearthApp.state === 'ready', null, { timeout: LONG });
      sawDrop = (await p.locator('.msg.dropped').count()) > 0;
    }
    assert.ok(sawDrop, 'old messages were marked as left out');
    const notice = await p.locator('#notice').textContent();
    assert.match(notice, /context/);
    // It went on: the last answer is there, and the page is ready for more.
    assert.ok((await p.locator('.msg.assistant .text').last().textContent()).length > 0);
    await p.close();

    const e = await b.context.newPage();
    await e.goto(server.plain + 'embed.html');
    const status = await e.evaluate(async () => {
      const el = document.querySelector('hearth-chat');
      el.setAttribute('context', '256');
      el.setAttribute('max-tokens', '48');
      el.setAttribute('temperature', '0');
      // (the context attribute is read at load: reload the model with it)
      el.setAttribute('model', el.getAttribute('model') + '?ctx');
      await new Promise((ok) => el.addEventListener('hearth-ready', ok, { once: true }));
      let dropped = false;
      for (let i = 0; i < 12 && !dropped; i++) {
        el.addEventListener('hearth-answer', (ev) => (dropped ||= ev.detail.dropped > 0), { once: true });
        await el.send(`Tell me a fact about the number ${i}.`);
      }
      return { dropped, status: el.shadowRoot.querySelector('.status').textContent };
    });
    assert.ok(status.dropped, 'the element dropped old turns');
    assert.match(status.status, /context/);
    await e.close();
  });

  it('50 load/unload cycles leave no worker and no growth behind', async () => {
    const cdp = await b.context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const heap = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { metrics } = await cdp.send('Performance.getMetrics');
      return metrics.find((m) => m.name === 'JSHeapUsedSize').value;
    };
    const cycle = (n) =>
      page.evaluate(
        async ({ url, n }) => {
          const { Hearth } = await import('/hearth.js');
          for (let i = 0; i < n; i++) {
            const llm = await Hearth.load(url, { nThreads: 1 });
            await llm.unload();
          }
        },
        { url: MODEL_URL_PATH, n },
      );
    const workers0 = page.workers().length;
    await cycle(5);
    const heap5 = await heap();
    await cycle(45);
    const heap50 = await heap();
    for (let i = 0; i < 50 && page.workers().length > workers0; i++) await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(page.workers().length, workers0, 'no worker left running');
    assert.ok(heap50 - heap5 < 8e6, `page heap grew by ${heap50 - heap5} bytes over 45 cycles`);
  });
});
