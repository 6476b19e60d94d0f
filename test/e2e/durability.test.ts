/**
 * Nothing accepted is lost: tasks accepted with no actor running, across a nats-server kill -9,
 * with a full queue, through retries to the dead-letter stream, and across an actor crash.
 * Each test counts what it submitted and what ended, and asserts on the difference.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { assetNames, deadLetterSchema, decodeAs } from '../../protocol/index.js';
import { pollTask, startTestEdge, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;

async function submitAsync(edge: TestEdge, model: string, body: unknown): Promise<Response> {
  return edge.request(`/v1/models/${model}/infer`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { Prefer: 'respond-async' },
  });
}

async function submitMany(
  edge: TestEdge,
  count: number,
  input: (i: number) => unknown = (i) => ({ n: i }),
) {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const res = await submitAsync(edge, 'echo', { input: input(i) });
    assert.equal(res.status, 202);
    ids.push(String(((await res.json()) as Json)['id']));
  }
  return ids;
}

async function countOutcomes(edge: TestEdge, ids: string[], timeoutMs = 60_000) {
  const states = new Map<string, number>();
  const results = await Promise.all(ids.map((id) => pollTask(edge, id, timeoutMs)));
  for (const body of results)
    states.set(String(body['state']), (states.get(String(body['state'])) ?? 0) + 1);
  return { states, results };
}

describe('durability of accepted tasks', () => {
  test('a task accepted while no actor runs completes once an actor starts', async () => {
    const edge = await startTestEdge({ actorHost: false });
    try {
      const ids = await submitMany(edge, 10);
      const queued = (await (await edge.request(`/v1/tasks/${ids[0]!}`)).json()) as Json;
      assert.equal(queued['state'], 'accepted', 'a queued task is visible before any actor ran it');
      await edge.startActorHost();
      const { states, results } = await countOutcomes(edge, ids);
      console.log(
        `accepted 10 with no actor; after start: ${JSON.stringify(Object.fromEntries(states))}`,
      );
      assert.equal(states.get('succeeded'), 10);
      results.forEach((body, i) => assert.deepEqual(body['result'], { echo: { n: i } }));
    } finally {
      await edge.stop();
    }
  });

  test('a nats-server kill -9 between acceptance and execution loses no accepted task', async () => {
    const edge = await startTestEdge({ actorHost: false });
    try {
      const ids = await submitMany(edge, 50);
      await edge.nats.kill('SIGKILL');
      await edge.nats.restart();
      await edge.startActorHost();
      const { states } = await countOutcomes(edge, ids);
      const lost = 50 - (states.get('succeeded') ?? 0);
      console.log(`accepted 50, killed nats-server, restarted: lost ${lost}`);
      assert.equal(lost, 0);
    } finally {
      await edge.stop();
    }
  });

  test('a full queue answers 503 with Retry-After and keeps every task it accepted', async () => {
    const edge = await startTestEdge({ actorHost: false, assets: { maxQueuedRequests: 5 } });
    try {
      const accepted: string[] = [];
      let refused = 0;
      for (let i = 0; i < 12; i += 1) {
        const res = await submitAsync(edge, 'echo', { input: i });
        const body = (await res.json()) as Json & { error?: Json };
        if (res.status === 202) accepted.push(String(body['id']));
        else {
          assert.equal(res.status, 503);
          assert.equal(body.error?.['code'], 'queue_full');
          assert.equal(body.error?.['retryable'], true);
          assert.ok(Number(res.headers.get('retry-after')) >= 1, 'Retry-After is set');
          refused += 1;
        }
      }
      assert.equal(accepted.length, 5);
      assert.equal(refused, 7);
      await edge.startActorHost();
      const { states } = await countOutcomes(edge, accepted);
      console.log(
        `queue of 5: accepted ${accepted.length}, refused ${refused}, succeeded ${states.get('succeeded')}`,
      );
      assert.equal(states.get('succeeded'), 5);
    } finally {
      await edge.stop();
    }
  });

  test('retryable failures are retried with backoff, then dead-lettered; terminal ones fail at once', async () => {
    const edge = await startTestEdge({
      actorEnv: {
        VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }),
        VIGIL_MAX_ATTEMPTS: '3',
        VIGIL_RETRY_SCHEDULE_MS: '50,100',
      },
    });
    try {
      const retryable = (await (
        await submitAsync(edge, 'echo', { input: 1, params: { fail: 'retryable' } })
      ).json()) as Json;
      const terminal = (await (
        await submitAsync(edge, 'echo', { input: 2, params: { fail: 'terminal' } })
      ).json()) as Json;
      const dead = await pollTask(edge, String(retryable['id']));
      const failed = await pollTask(edge, String(terminal['id']));
      assert.equal(dead['state'], 'dead');
      assert.equal(dead['attempts'], 3);
      assert.equal((dead['error'] as Json)['code'], 'retries_exhausted');
      assert.equal(failed['state'], 'failed');
      assert.equal(failed['attempts'], 1);

      const nc = await edge.connect();
      const jsm = await jetstreamManager(nc);
      const stream = assetNames.deadLetterStream(edge.region);
      const letters = [];
      for (let seq = 1; seq <= (await jsm.streams.info(stream)).state.last_seq; seq += 1) {
        const msg = await jsm.streams.getMessage(stream, { seq });
        if (msg) letters.push(decodeAs(deadLetterSchema, msg.data, 'dead letter'));
      }
      assert.deepEqual(
        letters.map((l) => [l.task.id, l.attempts, l.error.code]).sort(),
        [
          [String(retryable['id']), 3, 'retries_exhausted'],
          [String(terminal['id']), 1, 'model_rejected'],
        ].sort(),
      );
    } finally {
      await edge.stop();
    }
  });

  test('an actor killed mid-task: the task is redelivered and completes once', async () => {
    const edge = await startTestEdge({
      actorEnv: { VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }), VIGIL_ACK_WAIT_MS: '2000' },
    });
    try {
      const ids = await submitMany(edge, 8, (i) => i);
      const slow = (await (
        await submitAsync(edge, 'echo', { input: 'slow', params: { delay_ms: 1500 } })
      ).json()) as Json;
      await new Promise((r) => setTimeout(r, 300));
      edge.actorHosts[0]!.signal('SIGKILL');
      await edge.actorHosts[0]!.exited;
      await edge.startActorHost();
      const { states } = await countOutcomes(edge, [...ids, String(slow['id'])]);
      console.log(`actor killed mid-task: ${JSON.stringify(Object.fromEntries(states))}`);
      assert.equal(states.get('succeeded'), 9);
      const slowDone = await pollTask(edge, String(slow['id']));
      assert.deepEqual(slowDone['result'], { echo: 'slow' });
      assert.equal(
        slowDone['attempts'],
        2,
        'the killed attempt was the first; the second finished',
      );
    } finally {
      await edge.stop();
    }
  });
});
