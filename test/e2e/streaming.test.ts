/**
 * Token streams over real HTTP, a real nats-server and real gateway and actor-host processes:
 * the native event stream of a task (tokens, lifecycle, the final task), read again after the
 * task ended, resumed after any event with `Last-Event-ID`, and the refusals at its boundary.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import OpenAI from 'openai';
import { assetNames } from '../../protocol/index.js';
import { startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';
import { dataOf, readEvents, type ReceivedEvent } from '../harness/sse.js';

type Json = Record<string, unknown>;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({
    gatewayEnv: { VIGIL_STREAM_KEEPALIVE_MS: '1000' },
    // The echo model waits as long as a request asks, and one task at a time: a stream can
    // wait in the queue behind another (the keep-alive case).
    actorEnv: { VIGIL_ECHO_FAULTS: '{"enabled":true,"maxDelayMs":5000}', VIGIL_CONCURRENCY: '1' },
  });
});
after(async () => {
  await edge?.stop();
});

const chat = { input: 'Tell me about the sea and the ships', params: { max_tokens: 48, seed: 7 } };

function streamInfer(body: unknown, headers: Record<string, string> = {}) {
  return edge.request('/v1/models/ngram-chat/infer', {
    method: 'POST',
    body: JSON.stringify(body),
    headers,
  });
}

/** The text of the token events, in order. */
const textOf = (events: ReceivedEvent[]): string =>
  events
    .filter((e) => e.event === 'token')
    .map((e) => String(dataOf(e)['text']))
    .join('');

describe('native event stream', () => {
  test('stream: true answers with the task state, its tokens in order, then the finished task', async () => {
    const res = await streamInfer({ ...chat, stream: true });
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const { events, ended } = await readEvents(res);
    assert.ok(ended, 'the server ends the stream after the final event');
    const names = events.map((e) => e.event);
    console.log(`native stream events: ${names.join(' ')}`);
    assert.equal(names[0], 'state');
    assert.equal(dataOf(events[0]!)['state'], 'accepted');
    assert.equal(names.at(-1), 'succeeded');
    const final = dataOf(events.at(-1)!);
    const result = final['result'] as Json;
    const tokens = events.filter((e) => e.event === 'token');
    assert.ok(tokens.length > 0, 'tokens arrive as events');
    assert.equal(textOf(events), result['text'], 'the tokens spell the result, none twice');
    let index = 0;
    for (const t of tokens) {
      const d = dataOf(t);
      assert.equal(d['index'], index, 'token events follow one another without a gap');
      index += Number(d['tokens']);
    }
    assert.equal(index, (result['usage'] as Json)['completion_tokens']);
    const ids = events.filter((e) => e.id !== undefined).map((e) => Number(e.id));
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      'ids are increasing stream sequences',
    );
    assert.equal(new Set(ids).size, ids.length);
  });

  test('a finished stream is read again from the start, and after any event with Last-Event-ID', async () => {
    const first = await readEvents(await streamInfer({ ...chat, stream: true }));
    const taskId = String(dataOf(first.events[0]!)['id']);
    const again = await readEvents(await edge.request(`/v1/tasks/${taskId}/events`));
    const withIds = (events: ReceivedEvent[]) =>
      events.filter((e) => e.id !== undefined).map((e) => `${e.id}:${e.event}:${e.data}`);
    assert.deepEqual(withIds(again.events), withIds(first.events), 'the same events, same ids');
    assert.equal(again.events[0]!.event, 'state');
    assert.equal(dataOf(again.events[0]!)['state'], 'succeeded');

    const tokens = first.events.filter((e) => e.event === 'token');
    for (const cut of [tokens[0]!, tokens.at(-1)!]) {
      const resumed = await readEvents(
        await edge.request(`/v1/tasks/${taskId}/events`, { headers: { 'Last-Event-ID': cut.id! } }),
      );
      const expected = first.events.filter(
        (e) => e.id !== undefined && Number(e.id) > Number(cut.id),
      );
      assert.deepEqual(
        withIds(resumed.events),
        withIds(expected),
        `after ${cut.id}: every later event, none before`,
      );
      assert.notEqual(resumed.events[0]?.event, 'state', 'a resumed stream does not restart');
    }
  });

  test('a task submitted without streaming has lifecycle events and its end, no tokens', async () => {
    const res = await streamInfer(chat, { Prefer: 'respond-async' });
    assert.equal(res.status, 202);
    const accepted = (await res.json()) as Json;
    assert.equal(
      (accepted['links'] as Json)['events'],
      `/v1/tasks/${String(accepted['id'])}/events`,
    );
    const { events } = await readEvents(
      await edge.request(`/v1/tasks/${String(accepted['id'])}/events`),
    );
    assert.equal(events.at(-1)!.event, 'succeeded');
    assert.equal(events.filter((e) => e.event === 'token').length, 0);
  });

  test('a stream waiting in the queue sends keep-alive comments, then its events', async () => {
    const echo = (body: unknown, headers: Record<string, string> = {}) =>
      edge.request('/v1/models/echo/infer', {
        method: 'POST',
        body: JSON.stringify(body),
        headers,
      });
    // The only slot is taken for 3.5 s; the streamed task waits behind it, saying nothing.
    const busy = await echo(
      { input: 'first', params: { delay_ms: 3500 } },
      { Prefer: 'respond-async' },
    );
    assert.equal(busy.status, 202);
    const started = Date.now();
    const { events, comments } = await readEvents(await echo({ input: 'queued', stream: true }));
    const silentMs = (events.find((e) => e.event !== 'state')?.at ?? 0) - started;
    console.log(
      `keep-alive comments while queued ${silentMs} ms (interval 1 s): ${comments.length}`,
    );
    assert.equal(events.at(-1)!.event, 'succeeded');
    assert.deepEqual(dataOf(events.at(-1)!)['result'], { echo: 'queued' });
    assert.ok(silentMs > 2500, `the stream waited only ${silentMs} ms`);
    assert.ok(comments.length >= 2, `only ${comments.length} keep-alive comments`);
  });

  test('another tenant cannot read the stream; a bad Last-Event-ID is a typed 400', async () => {
    const { events } = await readEvents(await streamInfer({ ...chat, stream: true }));
    const taskId = String(dataOf(events[0]!)['id']);
    const other = await edge.request(`/v1/tasks/${taskId}/events`, { key: TENANTS.beta.key });
    assert.equal(other.status, 404);
    assert.equal(((await other.json()) as { error: Json }).error['code'], 'not_found');
    for (const bad of ['abc', '-1', '1.5', '9'.repeat(20)]) {
      const res = await edge.request(`/v1/tasks/${taskId}/events`, {
        headers: { 'Last-Event-ID': bad },
      });
      assert.equal(res.status, 400, bad);
      const error = ((await res.json()) as { error: Json }).error;
      assert.equal(error['code'], 'invalid_request');
      assert.match(String(error['message']), /Last-Event-ID/);
    }
  });

  test("several answers' tokens name their answer; the final task has them all", async () => {
    const res = await streamInfer({
      ...chat,
      params: { ...chat.params, n: 2, temperature: 1 },
      stream: true,
    });
    const { events } = await readEvents(res);
    const tokens = events.filter((e) => e.event === 'token').map(dataOf);
    const textOf = (choice: number) =>
      tokens
        .filter((t) => (t['choice'] ?? 0) === choice)
        .map((t) => String(t['text']))
        .join('');
    const result = dataOf(events.at(-1)!)['result'] as { choices: { text: string }[] };
    assert.equal(result.choices.length, 2);
    assert.equal(textOf(0), result.choices[0]!.text);
    assert.equal(textOf(1), result.choices[1]!.text);
    assert.ok(tokens.some((t) => t['choice'] === 1));
  });

  test('a reader that finishes or goes away leaves no consumer behind', async () => {
    // A stream holds at most 1,000 consumers: readers must not outlive their streams.
    const nc = await edge.connect();
    const jsm = await jetstreamManager(nc);
    const stream = assetNames.eventStream(edge.region);
    const consumers = async () => (await jsm.streams.info(stream)).state.consumer_count;
    for (let i = 0; i < 20; i++) {
      const res = await streamInfer({ ...chat, stream: true });
      // Half read to the end, half leave after the first event.
      await readEvents(res, { stopWhen: () => i % 2 === 1 });
    }
    const deadline = Date.now() + 5_000;
    let left = await consumers();
    while (left > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      left = await consumers();
    }
    assert.equal(left, 0, 'consumers left on the event stream');
  });
});

describe('OpenAI streaming', () => {
  const openai = () =>
    new OpenAI({ apiKey: TENANTS.alpha.key, baseURL: `${edge.gatewayUrl}/v1`, maxRetries: 0 });
  const messages = [{ role: 'user' as const, content: 'Tell me about the sea and the ships' }];

  test('create({stream: true}) gives the role, content deltas, the finish reason and usage', async () => {
    const whole = await openai().chat.completions.create({
      model: 'ngram-chat',
      messages,
      max_tokens: 40,
      seed: 11,
    });
    const stream = await openai().chat.completions.create({
      model: 'ngram-chat',
      messages,
      max_tokens: 40,
      seed: 11,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    console.log(`OpenAI chunks: ${chunks.length}`);
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id for the whole completion');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, whole.choices[0]!.message.content, 'the same text as without streaming');
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finishes.length, 1);
    assert.equal(finishes[0]!.choices[0]!.finish_reason, whole.choices[0]!.finish_reason);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, [], 'usage comes in a last chunk without choices');
    assert.deepEqual(last.usage, whole.usage);
  });

  test('the .stream() helper assembles the same completion', async () => {
    const runner = openai().chat.completions.stream({
      model: 'ngram-chat',
      messages,
      max_tokens: 30,
      seed: 5,
    });
    let deltas = '';
    runner.on('content', (delta) => (deltas += delta));
    const completion = await runner.finalChatCompletion();
    const whole = await openai().chat.completions.create({
      model: 'ngram-chat',
      messages,
      max_tokens: 30,
      seed: 5,
    });
    assert.equal(completion.choices[0]!.message.content, whole.choices[0]!.message.content);
    assert.equal(deltas, whole.choices[0]!.message.content);
  });

  test('stream_options without stream, and a Last-Event-ID without its key, are typed 400s', async () => {
    await assert.rejects(
      openai().chat.completions.create({
        model: 'ngram-chat',
        messages,
        stream_options: { include_usage: true },
      }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && /stream_options/.test(err.message),
    );
    const res = await edge.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Last-Event-ID': '5.1.10.abc' },
      body: JSON.stringify({ model: 'ngram-chat', messages, stream: true }),
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Last-Event-ID/);
  });
});

describe('keep-alive on every link', () => {
  /** The kernel's view of the gateway's side of a loopback connection from `clientPort`. */
  function gatewaySocketTimer(gatewayPort: number, clientPort: number): string | undefined {
    const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex(gatewayPort)}`) && f[2]?.endsWith(`:${hex(clientPort)}`)) {
        return f[5]; // tr:tm->when; timer 02 is the keep-alive timer
      }
    }
    return undefined;
  }

  test("the gateway's sockets have TCP keep-alive", async () => {
    const url = new URL(edge.gatewayUrl);
    const socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    socket.write(`GET /healthz HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    await once(socket, 'data');
    // Idle now, kept open by HTTP keep-alive: the kernel's keep-alive timer runs on it.
    const timer = gatewaySocketTimer(Number(url.port), socket.localPort!);
    socket.destroy();
    console.log(`gateway socket timer: ${timer}`);
    assert.match(timer ?? '', /^02:/, 'the keep-alive timer (02) runs on an idle connection');
  });

  test('nats-server is set to ping its clients every 20 s, 3 missed dropping the link', async () => {
    const varz = (await (await fetch(`${edge.nats.monitorUrl!}/varz`)).json()) as Json;
    assert.equal(varz['ping_interval'], 20_000_000_000);
    assert.equal(varz['ping_max'], 3);
  });
});

describe("a region's limit of readers", () => {
  let small: TestEdge;
  before(async () => {
    small = await startTestEdge({
      assets: { maxEventReaders: 1 },
      actorEnv: { VIGIL_ECHO_FAULTS: '{"enabled":true,"maxDelayMs":5000}' },
    });
  });
  after(async () => {
    await small?.stop();
  });

  test('a stream past it ends with a typed, retryable unavailable error', async () => {
    const echo = (input: string, delayMs: number) =>
      small.request('/v1/models/echo/infer', {
        method: 'POST',
        body: JSON.stringify({ input, params: { delay_ms: delayMs }, stream: true }),
      });
    // The one reader the region allows is taken while this stream is open.
    const holding = await echo('first', 1500);
    const held = readEvents(holding);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { events } = await readEvents(await echo('second', 0));
    const last = events.at(-1)!;
    assert.equal(last.event, 'error', JSON.stringify(events));
    const error = dataOf(last)['error'] as Json;
    assert.equal(error['code'], 'unavailable');
    assert.equal(error['retryable'], true);
    assert.match(String(error['message']), /too many event streams/);
    assert.equal((await held).events.at(-1)!.event, 'succeeded');
    // Once it is free, a stream reads again.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const again = await readEvents(await echo('third', 0));
    assert.equal(again.events.at(-1)!.event, 'succeeded');
  });
});
