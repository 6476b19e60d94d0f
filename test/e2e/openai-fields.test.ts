/**
 * The OpenAI surface with the official `openai` client over real HTTP, a real nats-server and real
 * gateway and actor-host processes: every field is honoured or refused (a 400 naming the field and
 * the model, raised as `BadRequestError`), never dropped; the models' capability declarations are
 * shown; the legacy `POST /v1/completions` answers, streamed and not.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

let edge: TestEdge;
before(async () => {
  edge = await startTestEdge();
});
after(async () => {
  await edge?.stop();
});

const openai = () =>
  new OpenAI({ apiKey: TENANTS.alpha.key, baseURL: `${edge.gatewayUrl}/v1`, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'Tell me about the sea and the ships' }];

describe('capabilities', () => {
  test("a model's catalog entry shows what it honours", async () => {
    const model = (await openai().models.retrieve('ngram-chat')) as unknown as {
      capabilities: { streaming: boolean; fields: string[]; maxChoices: number };
    };
    assert.deepEqual(model.capabilities, {
      streaming: true,
      fields: ['temperature', 'seed', 'min_tokens'],
      maxChoices: 1,
    });
  });

  test('every field the model cannot honour is a 400 naming the field and the model', async () => {
    const refused: [string, Record<string, unknown>][] = [
      ['top_p', { top_p: 0.5 }],
      ['stop', { stop: ['.'] }],
      ['presence_penalty', { presence_penalty: 1 }],
      ['frequency_penalty', { frequency_penalty: 1 }],
      ['logit_bias', { logit_bias: { '1': 5 } }],
      ['logprobs', { logprobs: true }],
      ['top_logprobs', { top_logprobs: 2 }],
      ['response_format', { response_format: { type: 'json_object' } }],
      ['tools', { tools: [{ type: 'function', function: { name: 'f' } }] }],
      ['n', { n: 3 }],
    ];
    for (const [field, extra] of refused) {
      await assert.rejects(
        openai().chat.completions.create({
          model: 'ngram-chat',
          messages,
          ...extra,
        } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming),
        (err: unknown) =>
          err instanceof OpenAI.BadRequestError &&
          err.message.includes(field) &&
          err.message.includes('ngram-chat'),
        field,
      );
    }
    // Their defaults ask for nothing, and are accepted.
    const plain = await openai().chat.completions.create({
      model: 'ngram-chat',
      messages,
      logprobs: false,
      response_format: { type: 'text' },
      n: 1,
      user: 'end-user-42',
    });
    assert.ok(plain.choices[0]!.message.content);
  });

  test('a field this gateway does not know is refused by name', async () => {
    const res = await edge.request('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: 'ngram-chat', messages, temprature: 0.5 }),
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /temprature/);
  });

  test('honoured fields change the output as they should', async () => {
    const ask = (extra: Record<string, unknown>) =>
      openai().chat.completions.create({
        model: 'ngram-chat',
        messages,
        max_tokens: 40,
        ...extra,
      } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
    const a = await ask({ seed: 1 });
    const again = await ask({ seed: 1 });
    const b = await ask({ seed: 2 });
    assert.equal(a.choices[0]!.message.content, again.choices[0]!.message.content, 'same seed');
    assert.notEqual(a.choices[0]!.message.content, b.choices[0]!.message.content, 'other seed');
    const long = await ask({ min_tokens: 40 });
    assert.equal(long.usage!.completion_tokens, 40, 'min_tokens keeps it from ending early');
    assert.equal(long.choices[0]!.finish_reason, 'length');
    const short = await ask({ max_tokens: 3 });
    assert.equal(short.usage!.completion_tokens, 3);
  });
});

describe('POST /v1/completions', () => {
  test('completions.create answers a text_completion, streamed or not, with usage', async () => {
    const whole = await openai().completions.create({
      model: 'ngram-chat',
      prompt: 'The old captain said',
      max_tokens: 24,
      seed: 9,
    });
    assert.equal(whole.object, 'text_completion');
    assert.ok(whole.choices[0]!.text.length > 0);
    const stream = await openai().completions.create({
      model: 'ngram-chat',
      prompt: 'The old captain said',
      max_tokens: 24,
      seed: 9,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish ??= chunk.choices[0]?.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, whole.choices[0]!.text, 'streamed text equals the whole answer');
    assert.equal(finish, whole.choices[0]!.finish_reason);
    assert.deepEqual(usage, whole.usage);
  });

  test('what the legacy endpoint cannot do is refused by name', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['prompt', { prompt: ['one', 'two'] }],
      ['prompt', { prompt: [[1, 2, 3]] }],
      ['echo', { echo: true }],
      ['suffix', { suffix: 'end' }],
      ['best_of', { best_of: 2 }],
      ['logprobs', { logprobs: 2 }],
    ];
    for (const [field, extra] of cases) {
      await assert.rejects(
        openai().completions.create({
          model: 'ngram-chat',
          prompt: 'hello',
          ...extra,
        } as OpenAI.CompletionCreateParamsNonStreaming),
        (err: unknown) => err instanceof OpenAI.BadRequestError && err.message.includes(field),
        field,
      );
    }
  });
});
