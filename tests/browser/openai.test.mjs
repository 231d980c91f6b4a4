// The OpenAI-shaped surface: a snippet written for the OpenAI JS client's shapes runs unchanged with
// `llm` in the client's place, streaming and not, and gives the tokens `llm.chat` gives.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { blankPage, LONG, MODEL_URL_PATH } from './helpers.mjs';

describe('llm.chat.completions.create', { timeout: 2 * LONG }, () => {
  let server;
  let b;
  let page;
  let close;

  before(async () => ({ server, b, page, close } = await blankPage()));
  after(async () => close?.());

  it('answers as the OpenAI client would, streaming and not', async () => {
    const r = await page.evaluate(async (url) => {
      const { Hearth } = await import('/hearth.js');
      const client = await Hearth.load(url, { nThreads: 1 });
      const messages = [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is the capital of France?' },
      ];
      // ---- as written for `new OpenAI()` ----
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, max_tokens: 12, temperature: 0 });
      const text = completion.choices[0].message.content;
      let streamed = '';
      const finish = [];
      let usage = null;
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages,
        max_tokens: 12,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      for await (const chunk of stream) {
        streamed += chunk.choices[0]?.delta?.content || '';
        if (chunk.choices[0]?.finish_reason) finish.push(chunk.choices[0].finish_reason);
        if (chunk.usage) usage = chunk.usage;
      }
      // ---- end of the snippet ----
      const plain = client.chat([messages[0], messages[1]], { maxTokens: 12 });
      for await (const _ of plain);
      const viaChat = await plain.result;
      await client.unload();
      return { completion, text, streamed, finish, usage, viaChat };
    }, MODEL_URL_PATH);
    assert.equal(r.completion.object, 'chat.completion');
    assert.match(r.completion.id, /^chatcmpl-/);
    assert.equal(r.completion.choices[0].message.role, 'assistant');
    assert.ok(['stop', 'length'].includes(r.completion.choices[0].finish_reason));
    assert.ok(r.text.length > 0);
    assert.equal(r.text, r.viaChat.text, 'the same answer as llm.chat');
    assert.equal(r.streamed, r.text, 'streaming gives the same text');
    assert.deepEqual(r.finish, [r.completion.choices[0].finish_reason]);
    assert.deepEqual(r.usage, r.completion.usage);
    assert.equal(r.usage.completion_tokens, r.viaChat.tokens.length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  });
});
