/**
 * The OpenAI surface with the official `openai` client over real HTTP, a real nats-server and real
 * gateway and actor-host processes: every field is honoured or refused (a 400 naming the field and
 * the model, raised as `BadRequestError`), never dropped; the models' capability declarations are
 * shown; the legacy `POST /v1/completions` answers, streamed and not.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { MAX_CHAT_CHOICES } from '../../protocol/index.js';
import { startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';
import { readEvents } from '../harness/sse.js';

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
      fields: [
        'temperature',
        'top_p',
        'seed',
        'stop',
        'presence_penalty',
        'frequency_penalty',
        'min_tokens',
      ],
      maxChoices: MAX_CHAT_CHOICES,
    });
  });

  test('every field the model cannot honour is a 400 naming the field and the model', async () => {
    const refused: [string, Record<string, unknown>][] = [
      ['logit_bias', { logit_bias: { '1': 5 } }],
      ['logprobs', { logprobs: true }],
      ['top_logprobs', { top_logprobs: 2 }],
      ['response_format', { response_format: { type: 'json_object' } }],
      ['tools', { tools: [{ type: 'function', function: { name: 'f' } }] }],
      ['n', { n: MAX_CHAT_CHOICES + 1 }],
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

    // A stop sequence ends the text before it, streamed or not.
    const free = (await ask({ seed: 5, min_tokens: 40 })).choices[0]!.message.content!;
    const words = free.split(' ');
    const stop = ` ${words[4]!}`;
    const cut = free.slice(0, free.indexOf(stop));
    const stopped = await ask({ seed: 5, min_tokens: 40, stop: [stop, 'zzzz'] });
    assert.equal(stopped.choices[0]!.message.content, cut, `ends before '${stop}'`);
    assert.equal(stopped.choices[0]!.finish_reason, 'stop');
    const streamed = await openai().chat.completions.create({
      model: 'ngram-chat',
      messages,
      max_tokens: 40,
      seed: 5,
      min_tokens: 40,
      stop: [stop, 'zzzz'],
      stream: true,
    } as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming);
    let text = '';
    for await (const chunk of streamed) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, cut, 'no streamed chunk carries text past the stop');

    // Penalties make repeated words rarer (summed over a few seeded 120-token answers).
    const repeats = async (extra: Record<string, unknown>) => {
      let total = 0;
      for (const seed of [1, 2, 3]) {
        const text = (await ask({ seed, max_tokens: 120, min_tokens: 120, ...extra })).choices[0]!
          .message.content!;
        const words = text.toLowerCase().split(/\W+/).filter(Boolean);
        total += words.length - new Set(words).size;
      }
      return total;
    };
    const plain = await repeats({});
    const frequency = await repeats({ frequency_penalty: 1.5 });
    const presence = await repeats({ presence_penalty: 1.5 });
    console.log(
      `repeated words: plain ${plain}, frequency 1.5 ${frequency}, presence 1.5 ${presence}`,
    );
    assert.ok(frequency < plain * 0.8, 'frequency_penalty cuts repeats');
    assert.ok(presence < plain * 0.8, 'presence_penalty cuts repeats');
    // A tiny nucleus keeps only the likeliest token: the greedy answer, whatever the seed.
    const nucleus = async (seed: number) =>
      (await ask({ seed, top_p: 0.01, temperature: 1 })).choices[0]!.message.content;
    const greedy = (await ask({ temperature: 0 })).choices[0]!.message.content;
    assert.equal(await nucleus(1), greedy);
    assert.equal(await nucleus(2), greedy);
  });
});

describe('several answers (n)', () => {
  const ask = { model: 'ngram-chat', messages, max_tokens: 30, seed: 7, temperature: 1 };

  test('n: 3 gives three answers, the first the n: 1 answer, usage counting all', async () => {
    const one = await openai().chat.completions.create(ask);
    const three = await openai().chat.completions.create({ ...ask, n: 3 });
    assert.deepEqual(
      three.choices.map((c) => c.index),
      [0, 1, 2],
    );
    const texts = three.choices.map((c) => c.message.content!);
    assert.equal(texts[0], one.choices[0]!.message.content, 'the first is the n: 1 answer');
    assert.equal(new Set(texts).size, 3, `three different answers: ${JSON.stringify(texts)}`);
    for (const c of three.choices) assert.ok(c.message.content && c.finish_reason);
    // The model's tokens: words (with inner apostrophes) and sentence marks.
    const token = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*|[.,;:!?]/gu;
    const words = texts.reduce((sum, t) => sum + (t.match(token)?.length ?? 0), 0);
    assert.equal(three.usage!.completion_tokens, words, 'usage counts every answer');
    assert.equal(three.usage!.prompt_tokens, one.usage!.prompt_tokens);
  });

  test('streamed, each chunk names its answer, and the client assembles all three', async () => {
    const whole = await openai().chat.completions.create({ ...ask, n: 3 });
    const stream = await openai().chat.completions.create({
      ...ask,
      n: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    const texts = ['', '', ''];
    const roles = new Set<number>();
    const finishes: (string | null)[] = [null, null, null];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (c.delta.role) roles.add(c.index);
        texts[c.index] += c.delta.content ?? '';
        if (c.finish_reason) finishes[c.index] = c.finish_reason;
      }
    }
    assert.deepEqual(
      texts,
      whole.choices.map((c) => c.message.content),
    );
    assert.deepEqual(
      finishes,
      whole.choices.map((c) => c.finish_reason),
    );
    assert.deepEqual([...roles].sort(), [0, 1, 2], 'each answer opens with the role');
    assert.deepEqual(usage, whole.usage);

    // The `.stream()` helper puts them together too.
    const helper = openai().chat.completions.stream({ ...ask, n: 3 });
    const final = await helper.finalChatCompletion();
    assert.deepEqual(
      final.choices.map((c) => c.message.content),
      whole.choices.map((c) => c.message.content),
    );

    // The legacy endpoint, streamed and not.
    const legacy = { model: 'ngram-chat', prompt: 'The old captain said', max_tokens: 12, seed: 3 };
    const completions = await openai().completions.create({ ...legacy, n: 2, temperature: 1 });
    assert.equal(completions.choices.length, 2);
    const legacyTexts = ['', ''];
    const legacyStream = await openai().completions.create({
      ...legacy,
      n: 2,
      temperature: 1,
      stream: true,
    });
    for await (const chunk of legacyStream) {
      for (const c of chunk.choices) legacyTexts[c.index] += c.text;
    }
    assert.deepEqual(
      legacyTexts,
      completions.choices.map((c) => c.text),
    );
  });

  test('a stream of several answers resumes from any chunk, in any answer', async () => {
    const body = JSON.stringify({ ...ask, n: 2, stream: true });
    const key = `n-resume-${Date.now()}`;
    const post = (lastEventId?: string) =>
      edge.request('/v1/chat/completions', {
        method: 'POST',
        body,
        headers: {
          'Idempotency-Key': key,
          ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}),
        },
      });
    const whole = await readEvents(await post());
    const chunks = whole.events.filter((e) => e.data !== '[DONE]');
    const textOf = (events: typeof chunks, from = 0) => {
      const texts = ['', ''];
      for (const e of events.slice(from)) {
        for (const c of (JSON.parse(e.data) as OpenAI.ChatCompletionChunk).choices) {
          texts[c.index] += c.delta.content ?? '';
        }
      }
      return texts;
    };
    const full = textOf(chunks);
    assert.ok(full[0] && full[1], 'two answers');
    // Chunks of the second answer carry it in their ids (`<seq>.<attempt>.<length>.<hash>.1`).
    assert.ok(
      chunks.some((c) => c.id?.endsWith('.1') && c.id.split('.').length === 5),
      JSON.stringify(chunks.map((c) => c.id)),
    );
    // Resume after each chunk that carries text: what follows completes both answers exactly.
    for (let i = 0; i < chunks.length; i++) {
      const resumed = await readEvents(await post(chunks[i]!.id));
      const rest = textOf(resumed.events.filter((e) => e.data !== '[DONE]'));
      const shown = textOf(chunks.slice(0, i + 1));
      assert.deepEqual(
        [shown[0]! + rest[0]!, shown[1]! + rest[1]!],
        full,
        `resumed after chunk ${i} (${chunks[i]!.id})`,
      );
      assert.equal(resumed.events.at(-1)?.data, '[DONE]');
    }
    // The key reused by a request for another number of answers: a typed conflict, not text.
    const other = await edge.request('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ ...ask, n: 1, stream: true }),
      headers: { 'Idempotency-Key': key },
    });
    const ended = await readEvents(other);
    const error = (
      JSON.parse(ended.events.at(-1)!.data) as { error: { code: string; message: string } }
    ).error;
    assert.equal(error.code, 'conflict', JSON.stringify(ended.events));
    assert.match(error.message, /Idempotency-Key/);
    // A cursor naming an answer the request does not have is a 400.
    const res = await post('1.1.0.0.5');
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Last-Event-ID/);
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
