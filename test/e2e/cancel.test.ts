/**
 * Cancellation over real HTTP, a real nats-server and real gateway and actor-host processes:
 * `POST /v1/tasks/{id}/cancel` stops a running model (its tokens stop) and ends a queued task
 * without running it; an OpenAI stream whose client goes away stops its task at once without an
 * Idempotency-Key, after the grace with one, and not at all when the client comes back in time.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pollTask, startTestEdge, TENANTS, waitFor, type TestEdge } from '../harness/edge.js';
import { dataOf, readEvents } from '../harness/sse.js';

type Json = Record<string, unknown>;
/** ngram-chat paced at this per token: long answers stream for seconds. */
const TOKEN_INTERVAL_MS = 25;
const GRACE_MS = 1_500;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({
    actorEnv: {
      VIGIL_MODELS: 'ngram-chat',
      VIGIL_CHAT_TOKEN_INTERVAL_MS: String(TOKEN_INTERVAL_MS),
      VIGIL_CONCURRENCY: '1',
    },
    gatewayEnv: { VIGIL_STREAM_ABANDON_GRACE_MS: String(GRACE_MS) },
  });
});
after(async () => {
  await edge?.stop();
});

/** An answer of 400 tokens (10 s): `min_tokens` keeps it from ending at a sentence end. */
const long = {
  input: 'Tell me a long tale of the sea',
  params: { max_tokens: 400, min_tokens: 400 },
};

async function submitAsync(body: unknown): Promise<string> {
  const res = await edge.request('/v1/models/ngram-chat/infer', {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { Prefer: 'respond-async' },
  });
  assert.equal(res.status, 202);
  return String(((await res.json()) as Json)['id']);
}

const cancel = (id: string, key?: string) =>
  edge.request(`/v1/tasks/${id}/cancel`, { method: 'POST', ...(key ? { key } : {}) });

async function state(id: string): Promise<Json> {
  const res = await edge.request(`/v1/tasks/${id}`);
  // An accepted task is always found, whatever state it is in at that instant.
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as Json;
}

describe('cancel', () => {
  test('a running task stops: its tokens stop and it ends cancelled', async () => {
    const id = await submitAsync({ ...long, stream: true });
    const reading = readEvents(await edge.request(`/v1/tasks/${id}/events`), { timeoutMs: 30_000 });
    await waitFor('tokens', async () =>
      (await state(id))['state'] === 'running' ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const askedAt = Date.now();
    const res = await cancel(id);
    assert.equal(res.status, 202);
    const { events } = await reading;
    const last = events.at(-1)!;
    assert.equal(last.event, 'cancelled');
    const tokens = events.filter((e) => e.event === 'token');
    const lastTokenAt = Date.parse(String(dataOf(tokens.at(-1)!)['at']));
    const stoppedMs = lastTokenAt - askedAt;
    const view = dataOf(last);
    console.log(
      `cancel: ${tokens.length} token events; the last ${stoppedMs} ms after the cancel was asked; ` +
        `ended ${last.at - askedAt} ms after`,
    );
    assert.equal(view['state'], 'cancelled');
    assert.equal((view['error'] as Json)['code'], 'cancelled');
    assert.ok(stoppedMs < 500, `tokens went on for ${stoppedMs} ms after the cancel`);
    // The count stays where it stopped.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const again = await readEvents(await edge.request(`/v1/tasks/${id}/events`));
    assert.equal(again.events.filter((e) => e.event === 'token').length, tokens.length);
    assert.equal((await cancel(id)).status, 200, 'cancelling a cancelled task is answered 200');
  });

  test('a queued task ends cancelled at once and never runs', async () => {
    const busy = await submitAsync(long);
    const queued = await submitAsync({ ...long, stream: true });
    assert.equal((await state(queued))['state'], 'accepted');
    const askedAt = Date.now();
    assert.equal((await cancel(queued)).status, 202);
    const ended = await waitFor('the queued task to end', async () => {
      const s = await state(queued);
      return s['state'] === 'accepted' ? undefined : s;
    });
    console.log(
      `queued task ${String(ended['state'])} ${Date.now() - askedAt} ms after the cancel`,
    );
    assert.equal(ended['state'], 'cancelled');
    await cancel(busy);
    await pollTask(edge, busy);
    // Delivered after its cancel: acknowledged without running, so no token was ever produced.
    await waitFor('the queue to drain', async () => {
      const { events } = await readEvents(await edge.request(`/v1/tasks/${queued}/events`));
      return events.at(-1)?.event === 'cancelled' ? events : undefined;
    });
    const { events } = await readEvents(await edge.request(`/v1/tasks/${queued}/events`));
    assert.equal(events.filter((e) => e.event === 'token').length, 0, 'it never ran');
  });

  test('a finished task answers 409; another tenant and unknown ids 404', async () => {
    const res = await edge.request('/v1/models/ngram-chat/infer', {
      method: 'POST',
      body: JSON.stringify({ input: 'short', params: { max_tokens: 3 } }),
    });
    const done = String(((await res.json()) as Json)['id']);
    const conflict = await cancel(done);
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as { error: Json }).error['code'], 'conflict');
    const running = await submitAsync(long);
    assert.equal((await cancel(running, TENANTS.beta.key)).status, 404);
    assert.equal((await cancel('a'.repeat(26))).status, 404);
    assert.equal((await cancel(running)).status, 202);
    assert.equal((await pollTask(edge, running))['state'], 'cancelled');
  });
});

describe('abandoned OpenAI streams', () => {
  const chat = (key?: string, lastEventId?: string) =>
    edge.request('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({
        model: 'ngram-chat',
        messages: [{ role: 'user', content: 'Tell me a long tale of the sea' }],
        max_tokens: 200,
        min_tokens: 200,
        seed: 3,
        stream: true,
      }),
      headers: {
        ...(key ? { 'Idempotency-Key': key } : {}),
        ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}),
      },
    });

  test('without an Idempotency-Key the task stops as soon as its client goes', async () => {
    const { events } = await readEvents(await chat(), { stopWhen: (_e, seen) => seen.length >= 4 });
    // The completion's id names the task.
    const id = String(dataOf(events[0]!)['id']).replace(/^chatcmpl-/, '');
    const goneAt = Date.now();
    const ended = await waitFor('the task to end', async () => {
      const s = await state(id);
      return s['state'] === 'running' || s['state'] === 'accepted' ? undefined : s;
    });
    console.log(
      `unkeyed stream abandoned: task ${String(ended['state'])} after ${Date.now() - goneAt} ms`,
    );
    assert.equal(ended['state'], 'cancelled');
  });

  test('with a key the task waits out the grace for its client, then stops', async () => {
    const key = `abandon-${Date.now()}`;
    const { events } = await readEvents(await chat(key), {
      stopWhen: (_e, seen) => seen.length >= 4,
    });
    const id = String(dataOf(events[0]!)['id']).replace(/^chatcmpl-/, '');
    const goneAt = Date.now();
    const ended = await waitFor(
      'the task to end',
      async () => {
        const s = await state(id);
        return s['state'] === 'running' || s['state'] === 'accepted' ? undefined : s;
      },
      15_000,
    );
    const afterMs = Date.now() - goneAt;
    console.log(
      `keyed stream abandoned: task ${String(ended['state'])} after ${afterMs} ms (grace ${GRACE_MS})`,
    );
    assert.equal(ended['state'], 'cancelled');
    assert.ok(afterMs >= GRACE_MS - 100, `cancelled after ${afterMs} ms, before the grace`);
  });

  test('a client that comes back within the grace keeps its task and gets the whole answer', async () => {
    const key = `back-${Date.now()}`;
    const first = await readEvents(await chat(key), { stopWhen: (_e, seen) => seen.length >= 4 });
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS / 3));
    const rest = await readEvents(await chat(key, first.events.at(-1)!.id));
    assert.equal(rest.events.at(-1)!.data, '[DONE]');
    // Past the grace: the task was not cancelled, it finished.
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS));
    const id = String(dataOf(first.events[0]!)['id']).replace(/^chatcmpl-/, '');
    assert.equal((await state(id))['state'], 'succeeded');
  });
});
