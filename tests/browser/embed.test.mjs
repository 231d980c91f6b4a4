// <hearth-chat> on an ordinary page: served without COOP/COEP (so not cross-origin isolated),
// the element finds hearth.js, the worker and the wasm next to its own module and chats.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LONG, foreignRequests, launch, startServer } from './helpers.mjs';

describe('<hearth-chat> embed', { timeout: 2 * LONG }, () => {
  let server;
  let b;

  before(async () => {
    server = await startServer();
    b = await launch();
  });

  after(async () => {
    await b?.close();
    await server?.stop();
  });

  it('works on a page served without COOP/COEP', async () => {
    const page = await b.page();
    const res = await page.goto(server.plain + 'embed.html');
    assert.equal(res.headers()['cross-origin-embedder-policy'], undefined);
    assert.equal(res.headers()['cross-origin-opener-policy'], undefined);
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);

    const info = await page.evaluate(async () => {
      const el = document.querySelector('hearth-chat');
      await customElements.whenDefined('hearth-chat');
      const llm = await el.ready;
      return llm.info;
    });
    assert.equal(info.build, 'simd');
    assert.equal(info.crossOriginIsolated, false);
    assert.match(info.reason, /not cross-origin isolated/);

    // Typed into the element's own input (playwright's locators pierce its open shadow root).
    await page.locator('hearth-chat input').fill('What is the capital of France?');
    await page.locator('hearth-chat button[type=submit]').click();
    const answer = page.locator('hearth-chat .msg.assistant');
    await page.waitForFunction(
      () => {
        const root = document.querySelector('hearth-chat').shadowRoot;
        const a = root.querySelector('.msg.assistant');
        return a && a.textContent.length > 0 && !root.querySelector('input').disabled;
      },
      null,
      { timeout: LONG },
    );
    assert.ok((await answer.textContent()).length > 0);
    assert.equal(await page.locator('hearth-chat .msg.user').textContent(), 'What is the capital of France?');
    // The answer went through the shared markdown renderer (markdown.js, found next to the module);
    // the question stays plain text.
    assert.equal(await page.locator('hearth-chat .msg.assistant.md').count(), 1);
    assert.equal(await page.locator('hearth-chat .msg.user *').count(), 0);
    // Themeable from outside: a custom property set on the element reaches its shadow styles.
    const bg = await page.evaluate(() => {
      const el = document.querySelector('hearth-chat');
      el.style.setProperty('--hearth-bg', 'rgb(1, 2, 3)');
      return getComputedStyle(el).backgroundColor;
    });
    assert.equal(bg, 'rgb(1, 2, 3)');
    assert.deepEqual(foreignRequests(b.requests), []);
  });
});
