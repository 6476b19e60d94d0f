/**
 * The durable inference path over real HTTP, a real nats-server and real gateway and actor-host
 * processes: sync and async calls, idempotency, tenants, validation (model input limits before a
 * task exists), and the OpenAI client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import OpenAI from 'openai';
import {
  assetNames,
  createVigilClient,
  decodeAs,
  MAX_CHAT_MAX_TOKENS,
  MAX_CHAT_MESSAGES,
  MAX_EMBEDDING_DIMENSIONS,
  MAX_EMBEDDING_INPUTS,
  MAX_CHAT_CONTENT_CHARS,
  Priority,
  subjects,
  taskEventSchema,
  type TaskEvent,
} from '../../protocol/index.js';
import { pollTask, startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({ gatewayEnv: { VIGIL_MAX_BODY_BYTES: '65536' } });
});
after(async () => {
  await edge?.stop();
});

const infer = (model: string, body: unknown, headers: Record<string, string> = {}, key?: string) =>
  edge.request(`/v1/models/${model}/infer`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers,
    ...(key === undefined ? {} : { key }),
  });

describe('native API', () => {
  test('a sync call returns the result with the task', async () => {
    const res = await infer('echo', { input: { text: 'hello' } });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('x-request-id'), 'every response carries a request id');
    const body = (await res.json()) as Json;
    assert.equal(body['state'], 'succeeded');
    assert.deepEqual(body['result'], { echo: { text: 'hello' } });
    assert.equal(body['attempts'], 1);
    assert.match(String(body['id']), /^[a-z2-7]{26}$/);
  });

  test('an async call answers 202 at once and the task can be polled to its result', async () => {
    const res = await infer(
      'ngram-chat',
      { input: 'Tell me about the fox', params: { max_tokens: 20 } },
      {
        Prefer: 'respond-async',
      },
    );
    assert.equal(res.status, 202);
    const accepted = (await res.json()) as Json;
    assert.equal(res.headers.get('location'), `/v1/tasks/${String(accepted['id'])}`);
    const done = await pollTask(edge, String(accepted['id']));
    assert.equal(done['state'], 'succeeded');
    const result = done['result'] as Json;
    assert.equal(typeof result['text'], 'string');
    assert.ok(String(result['text']).length > 0);
  });

  test('the same Idempotency-Key gives the same task and publishes once', async () => {
    const nc = await edge.connect();
    const jsm = await jetstreamManager(nc);
    const stream = assetNames.requestStream(edge.region);
    const before = (await jsm.streams.info(stream)).state.last_seq;
    const key = `retry-${Date.now()}`;
    const [first, second] = await Promise.all([
      infer('echo', { input: 1 }, { 'Idempotency-Key': key }),
      infer('echo', { input: 1 }, { 'Idempotency-Key': key }),
    ]);
    const third = await infer('echo', { input: 1 }, { 'Idempotency-Key': key });
    const bodies = (await Promise.all([first.json(), second.json(), third.json()])) as Json[];
    assert.deepEqual(
      bodies.map((b) => b['id']),
      [bodies[0]!['id'], bodies[0]!['id'], bodies[0]!['id']],
    );
    for (const b of bodies) assert.equal(b['state'], 'succeeded');
    const afterSeq = (await jsm.streams.info(stream)).state.last_seq;
    assert.equal(afterSeq - before, 1, 'three submissions, one stored request: the task ran once');
    // Another tenant using the same key gets its own task.
    const other = (await (
      await infer('echo', { input: 1 }, { 'Idempotency-Key': key }, TENANTS.beta.key)
    ).json()) as Json;
    assert.notEqual(other['id'], bodies[0]!['id']);
  });

  test('another tenant cannot see a task: 404, same as a task that does not exist', async () => {
    const body = (await (await infer('echo', { input: 'mine' })).json()) as Json;
    const own = await edge.request(`/v1/tasks/${String(body['id'])}`);
    assert.equal(own.status, 200);
    const foreign = await edge.request(`/v1/tasks/${String(body['id'])}`, {
      key: TENANTS.beta.key,
    });
    assert.equal(foreign.status, 404);
    const missing = await edge.request('/v1/tasks/aaaaaaaaaaaaaaaaaaaaaaaaaa');
    assert.equal(missing.status, 404);
    assert.deepEqual(await foreign.json(), {
      error: {
        code: 'not_found',
        message: `task '${String(body['id'])}' does not exist`,
        retryable: false,
        type: 'not_found',
      },
    });
  });

  test('unknown model is 404, a model name that is not a subject token is 400', async () => {
    const unknown = await infer('no-such-model', { input: 1 });
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { error: Json }).error['code'], 'not_found');
    const dotted = await infer('echo.evil', { input: 1 });
    assert.equal(dotted.status, 400);
    const wildcard = await infer('%3E', { input: 1 });
    assert.equal(wildcard.status, 400);
  });

  test('malformed bodies are 400 with a JSON error', async () => {
    const notJson = await edge.request('/v1/models/echo/infer', {
      method: 'POST',
      body: '{"input":',
    });
    assert.equal(notJson.status, 400);
    assert.deepEqual(((await notJson.json()) as { error: Json }).error, {
      code: 'invalid_request',
      message: 'body: is not valid JSON',
      retryable: false,
      type: 'invalid_request',
    });
    const noInput = await infer('echo', { params: {} });
    assert.equal(noInput.status, 400);
    const badParams = await infer('echo', { input: 1, params: [1, 2] });
    assert.equal(badParams.status, 400);
    const badKey = await infer('echo', { input: 1 }, { 'Idempotency-Key': 'has space' });
    assert.equal(badKey.status, 400);
    const badChatParam = await infer('ngram-chat', { input: 'hi', params: { max_tokens: -5 } });
    assert.equal(badChatParam.status, 400, 'a model-level validation error answers 400');
    const refusal = (await badChatParam.json()) as { error: Json; task?: Json };
    assert.equal(refusal.error['message'], 'params.max_tokens: at least 1');
    assert.equal(refusal.task, undefined, 'refused before a task existed');
  });

  test('a body over the limit is 413', async () => {
    const res = await infer('echo', { input: 'x'.repeat(70_000) });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: Json }).error['code'], 'payload_too_large');
  });

  test('missing or wrong API key is 401 with a JSON error and a challenge', async () => {
    const missing = await edge.request('/v1/models', { key: '' });
    assert.equal(missing.status, 401);
    assert.match(missing.headers.get('www-authenticate') ?? '', /Bearer/);
    assert.equal(((await missing.json()) as { error: Json }).error['code'], 'unauthenticated');
    const wrong = await edge.request('/v1/models', { key: 'not-a-real-key-at-all' });
    assert.equal(wrong.status, 401);
    const health = await edge.request('/healthz', { key: '' });
    assert.equal(health.status, 200, 'health checks need no key');
    assert.equal((await edge.request('/readyz', { key: '' })).status, 200);
  });

  test('client-requested faults are refused unless the operator enabled them', async () => {
    const res = await infer('echo', { input: 1, params: { fail: 'retryable' } });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: Json; task: Json };
    assert.match(String(body.error['message']), /disabled/);
    assert.equal(body.task['attempts'], 1, 'a refused fault is not retried');
  });
});

describe('OpenAI-compatible API, through the official openai client', () => {
  const client = () =>
    new OpenAI({ apiKey: TENANTS.alpha.key, baseURL: `${edge.gatewayUrl}/v1`, maxRetries: 0 });

  test('models.list shows the built-in models', async () => {
    const models = await client().models.list();
    const ids = models.data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['echo', 'hash-embed', 'ngram-chat']);
  });

  test('chat.completions.create answers deterministically for the same seed', async () => {
    const ask = () =>
      client().chat.completions.create({
        model: 'ngram-chat',
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: 'What did the tortoise say to the hare?' },
        ],
        max_tokens: 30,
        seed: 7,
      });
    const [a, b] = await Promise.all([ask(), ask()]);
    assert.equal(a.object, 'chat.completion');
    assert.equal(a.choices[0]?.message.role, 'assistant');
    assert.ok((a.choices[0]?.message.content ?? '').length > 0);
    assert.equal(a.choices[0]?.message.content, b.choices[0]?.message.content);
    assert.ok(a.usage && a.usage.completion_tokens > 0 && a.usage.completion_tokens <= 30);
  });

  test('embeddings.create returns normalised vectors (base64 by default in the client, and float)', async () => {
    const res = await client().embeddings.create({
      model: 'hash-embed',
      input: ['the quick brown fox', 'a lazy dog'],
    });
    assert.equal(res.data.length, 2);
    for (const item of res.data) {
      const norm = Math.sqrt(item.embedding.reduce((s, x) => s + x * x, 0));
      assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
    }
    const floats = await client().embeddings.create({
      model: 'hash-embed',
      input: 'the quick brown fox',
      encoding_format: 'float',
    });
    assert.deepEqual(floats.data[0]?.embedding, res.data[0]?.embedding);
  });

  test('errors reach the client as typed API errors', async () => {
    await assert.rejects(
      client().chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'hi' }],
      }),
      (err: unknown) => err instanceof OpenAI.NotFoundError,
    );
    await assert.rejects(
      client().chat.completions.create({
        model: 'hash-embed',
        messages: [{ role: 'user', content: 'hi' }],
      }),
      (err: unknown) => err instanceof OpenAI.BadRequestError,
    );
    const badKey = new OpenAI({
      apiKey: 'wrong-key-wrong-key',
      baseURL: `${edge.gatewayUrl}/v1`,
      maxRetries: 0,
    });
    await assert.rejects(
      badKey.models.list(),
      (err: unknown) => err instanceof OpenAI.AuthenticationError,
    );
  });
});

describe('model input limits are checked before a task exists (issue 10)', () => {
  /** Requests published to the region's request stream so far. */
  async function requestsStored(): Promise<number> {
    const jsm = await jetstreamManager(await edge.connect());
    return (await jsm.streams.info(assetNames.requestStream(edge.region))).state.last_seq;
  }

  /** Asserts a 400 `invalid_request` whose message matches `limit`, with no task in it. */
  async function assertRefused(res: Response, limit: RegExp): Promise<void> {
    const text = await res.text();
    assert.equal(res.status, 400, text.slice(0, 300));
    const body = JSON.parse(text) as { error: Json; task?: Json; id?: string };
    assert.equal(body.error['code'], 'invalid_request');
    assert.match(String(body.error['message']), limit);
    assert.equal(body.task, undefined, `a task came of it: ${text.slice(0, 300)}`);
  }

  const openAi = (path: string, body: unknown) =>
    edge.request(path, { method: 'POST', body: JSON.stringify(body) });
  const messages = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ role: 'user', content: `Tell me about the fox ${i}` }));
  const strings = (n: number) => Array.from({ length: n }, (_, i) => `text ${i}`);

  test('65 chat messages, or max_tokens past 1024, is a 400 on both routes and publishes nothing', async () => {
    const before = await requestsStored();
    const tooMany = messages(MAX_CHAT_MESSAGES + 1);
    await assertRefused(
      await infer('ngram-chat', { input: { messages: tooMany } }),
      /^input\.messages: at most 64 messages$/,
    );
    await assertRefused(
      await infer('ngram-chat', { input: { messages: tooMany } }, { Prefer: 'respond-async' }),
      /^input\.messages: at most 64 messages$/,
    );
    await assertRefused(
      await openAi('/v1/chat/completions', { model: 'ngram-chat', messages: tooMany }),
      /^body\.messages: at most 64 messages$/,
    );
    await assertRefused(
      await openAi('/v1/chat/completions', {
        model: 'ngram-chat',
        messages: messages(1),
        max_completion_tokens: MAX_CHAT_MAX_TOKENS + 1,
      }),
      /^body\.max_completion_tokens: at most 1024$/,
    );
    // Content parts are joined into one message, and the joined content is held to the limit.
    const half = { type: 'text', text: 'x'.repeat(MAX_CHAT_CONTENT_CHARS / 2 + 1) };
    await assertRefused(
      await openAi('/v1/chat/completions', {
        model: 'ngram-chat',
        messages: [{ role: 'user', content: [half, half] }],
      }),
      /^input\.messages\.0\.content: at most 32768 characters$/,
    );
    assert.equal(await requestsStored(), before, 'a refused request published nothing');

    const native = await infer('ngram-chat', {
      input: { messages: messages(MAX_CHAT_MESSAGES) },
      params: { max_tokens: MAX_CHAT_MAX_TOKENS },
    });
    assert.equal(native.status, 200, (await native.clone().text()).slice(0, 300));
    const openAiChat = await openAi('/v1/chat/completions', {
      model: 'ngram-chat',
      messages: messages(MAX_CHAT_MESSAGES),
      max_tokens: 8,
    });
    assert.equal(openAiChat.status, 200, (await openAiChat.clone().text()).slice(0, 300));
    assert.equal(await requestsStored(), before + 2, 'the inputs at the bounds ran');
  });

  test('257 embedding inputs, or dimensions past their bounds, is a 400 and publishes nothing', async () => {
    const before = await requestsStored();
    const tooMany = strings(MAX_EMBEDDING_INPUTS + 1);
    await assertRefused(
      await openAi('/v1/embeddings', { model: 'hash-embed', input: tooMany }),
      /^input: at most 256 strings$/,
    );
    await assertRefused(
      await infer('hash-embed', { input: tooMany }),
      /^input: at most 256 strings$/,
    );
    await assertRefused(
      await openAi('/v1/embeddings', {
        model: 'hash-embed',
        input: 'w',
        dimensions: MAX_EMBEDDING_DIMENSIONS + 1,
      }),
      /^body\.dimensions: at most 4096$/,
    );
    await assertRefused(
      await infer('hash-embed', { input: 'w', params: { dimensions: 31 } }),
      /^params\.dimensions: at least 32$/,
    );
    assert.equal(await requestsStored(), before, 'a refused request published nothing');

    const batch = await openAi('/v1/embeddings', {
      model: 'hash-embed',
      input: strings(MAX_EMBEDDING_INPUTS),
      dimensions: 32,
      encoding_format: 'base64',
    });
    assert.equal(batch.status, 200, (await batch.clone().text()).slice(0, 300));
    assert.equal(((await batch.json()) as { data: unknown[] }).data.length, MAX_EMBEDDING_INPUTS);
    const wide = await infer('hash-embed', {
      input: 'w',
      params: { dimensions: MAX_EMBEDDING_DIMENSIONS },
    });
    assert.equal(wide.status, 200, (await wide.clone().text()).slice(0, 300));
    assert.equal(await requestsStored(), before + 2, 'the inputs at the bounds ran');
  });
});

describe('internal services over NATS', () => {
  test('the typed client submits and waits; lifecycle events arrive on the tenant subject', async () => {
    const nc = await edge.connect();
    const events: TaskEvent[] = [];
    const sub = nc.subscribe(subjects.eventsOfTenant(edge.region, 'svc'), {
      callback: (_err, msg) => {
        events.push(decodeAs(taskEventSchema, msg.data, 'event'));
      },
    });
    const client = await createVigilClient(nc, { region: edge.region });
    const submission = await client.submit({
      tenant: 'svc',
      model: 'hash-embed',
      priority: Priority.Batch,
      input: ['internal services talk NATS'],
      params: { dimensions: 64 },
      deadline: Date.now() + 30_000,
      waitMs: 10_000,
    });
    assert.equal(submission.duplicate, false);
    assert.equal(submission.outcome?.state, 'succeeded');
    const output = submission.outcome?.result as { embeddings: number[][] };
    assert.equal(output.embeddings[0]?.length, 64);
    const status = await client.getTask(submission.taskId);
    assert.equal(status?.state, 'succeeded');
    await nc.flush();
    const deadline = Date.now() + 5_000;
    while (!events.some((e) => e.taskId === submission.taskId) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(
      events.filter((e) => e.taskId === submission.taskId).map((e) => e.type),
      ['succeeded'],
    );
    sub.unsubscribe();
    await client.close();
  });
});
