// Takes the README's screenshots of the chat page: a real exchange with the default model
// (greedy, so it is the same each run) and the model picker showing a curated entry.
//
//   node tests/browser/screenshots.mjs        → docs/screenshot-chat.png, docs/screenshot-models.png

import { join } from 'node:path';
import { ROOT, launch, openChat, startServer } from './helpers.mjs';

const server = await startServer();
const b = await launch();
try {
  const page = await openChat(b, server.isolated);
  await page.setViewportSize({ width: 1100, height: 760 });
  await page.evaluate(() => window.hearthApp.restored);
  await page.evaluate(() => {
    document.getElementById('temperature').value = '0';
    document.getElementById('max-tokens').value = '160';
  });
  for (const text of ['Write a Python function that adds two numbers, with a short explanation.', 'Now list three ways to test it.']) {
    await page.locator('#input').fill(text);
    await page.locator('#send').click();
    await page.waitForFunction(() => window.hearthApp.state === 'generating', null, { timeout: 600_000 });
    await page.waitForFunction(() => window.hearthApp.state === 'ready', null, { timeout: 600_000 });
  }
  await page.locator('#stats').evaluate((e) => (e.textContent = '')); // (machine-dependent numbers)
  await page.locator('#input').blur();
  await page.locator('#transcript').evaluate((t) => (t.scrollTop = 0)); // the conversation from its start
  await page.screenshot({ path: join(ROOT, 'docs/screenshot-chat.png') });

  await page.locator('#models-open').click();
  await page.locator('.catalog-item[data-id="qwen3-0.6b"]').click();
  await page.screenshot({ path: join(ROOT, 'docs/screenshot-models.png') });
} finally {
  await b.close();
  await server.stop();
}
