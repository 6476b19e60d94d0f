/**
 * Supervision in a real edge: models in child processes are killed, crashed and hung; the host
 * survives, restarts them, hands their tasks back, and gives up (exit non-zero) past its restart
 * intensity.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import { pollTask, startTestEdge, waitFor, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;

const CHILD_ECHO = {
  assets: { heartbeatIntervalMs: 300 },
  actorEnv: {
    VIGIL_HEARTBEAT_MS: '300',
    VIGIL_MODELS: 'echo',
    VIGIL_ISOLATION: 'child-process',
    VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }),
    VIGIL_EXECUTOR_TEST_HOOKS: '1',
    VIGIL_RETRY_SCHEDULE_MS: '50',
    VIGIL_MAX_ATTEMPTS: '3',
  },
};

async function beat(edge: TestEdge): Promise<ActorHeartbeat | undefined> {
  const kv = await new Kvm(await edge.connect()).open(assetNames.actorBucket(edge.region));
  for await (const key of await kv.keys('echo.*')) {
    const entry = await kv.get(key);
    if (entry?.operation === 'PUT') return decodeAs(actorHeartbeatSchema, entry.value, 'beat');
  }
  return undefined;
}

const submit = async (edge: TestEdge, params: Json, input: unknown = 'x'): Promise<string> => {
  const res = await edge.request('/v1/models/echo/infer', {
    method: 'POST',
    body: JSON.stringify({ input, params }),
    headers: { Prefer: 'respond-async' },
  });
  assert.equal(res.status, 202);
  return String(((await res.json()) as Json)['id']);
};

describe('supervised model executors', () => {
  test('kill -9 of a model process: restarted fast, its task handed back and finished', async () => {
    const edge = await startTestEdge(CHILD_ECHO);
    try {
      const before = await waitFor('a heartbeat', () => beat(edge));
      assert.equal(before.isolation, 'child-process');
      assert.notEqual(before.pid, edge.actorHosts[0]!.pid, 'the model runs in its own process');
      const id = await submit(edge, { delay_ms: 1500 }, 'survivor');
      await new Promise((r) => setTimeout(r, 300));
      const killedAt = Date.now();
      process.kill(before.pid, 'SIGKILL');
      const after = await waitFor('a new model process', async () => {
        const b = await beat(edge);
        return b && b.pid !== before.pid && b.pid > 0 && b.state === 'running' ? b : undefined;
      });
      const restartMs = Date.now() - killedAt;
      console.log(
        `model process killed: running again after ${restartMs} ms (restarts ${after.restarts})`,
      );
      assert.ok(after.restarts >= 1);
      const done = await pollTask(edge, id);
      assert.equal(done['state'], 'succeeded');
      assert.deepEqual(done['result'], { echo: 'survivor' });
      assert.equal(done['attempts'], 2, 'the killed run was attempt 1');
      assert.equal(edge.actorHosts[0]!.ready['host'] !== undefined, true);
    } finally {
      await edge.stop();
    }
  });

  test('a task that crashes its executor every time is dead-lettered after the configured attempts', async () => {
    const edge = await startTestEdge(CHILD_ECHO);
    try {
      const poison = await submit(edge, { __crash: true });
      const healthy = await submit(edge, {}, 'fine');
      const dead = await pollTask(edge, poison);
      assert.equal(dead['state'], 'dead');
      assert.equal(dead['attempts'], 3);
      assert.equal(((await pollTask(edge, healthy)) as Json)['state'], 'succeeded');
      assert.equal(edge.actorHosts[0]!.pid > 0, true);
      const res = await edge.request('/healthz');
      assert.equal(res.status, 200);
    } finally {
      await edge.stop();
    }
  });

  test('a hung model is detected by liveness pings, replaced, and its task retried', async () => {
    const edge = await startTestEdge({
      ...CHILD_ECHO,
      actorEnv: {
        ...CHILD_ECHO.actorEnv,
        VIGIL_MAX_ATTEMPTS: '2',
        VIGIL_RESTART: JSON.stringify({ pingIntervalMs: 200, pingTimeoutMs: 400, maxRestarts: 10 }),
      },
    });
    try {
      const first = await waitFor('a heartbeat', () => beat(edge));
      const hung = await submit(edge, { __hang: true });
      const dead = await pollTask(edge, hung);
      assert.equal(dead['state'], 'dead', 'hung on every attempt: dead after 2');
      assert.equal(dead['attempts'], 2);
      const after = await waitFor('a replaced executor', async () => {
        const b = await beat(edge);
        return b && b.restarts >= 2 && b.state === 'running' ? b : undefined;
      });
      assert.notEqual(after.pid, first.pid);
      const ok = await submit(edge, {}, 'after the hang');
      assert.equal(((await pollTask(edge, ok)) as Json)['state'], 'succeeded');
    } finally {
      await edge.stop();
    }
  });

  test('past the restart intensity the host marks itself failed and exits non-zero', async () => {
    const edge = await startTestEdge({
      ...CHILD_ECHO,
      actorEnv: {
        ...CHILD_ECHO.actorEnv,
        VIGIL_MAX_ATTEMPTS: '10',
        VIGIL_RESTART: JSON.stringify({ maxRestarts: 2, withinMs: 60_000 }),
      },
    });
    try {
      await submit(edge, { __crash: true });
      const code = await edge.actorHosts[0]!.exited;
      assert.equal(code, 70, 'escalation exits with EX_SOFTWARE');
      const last = await beat(edge);
      assert.equal(last?.state, 'failed');
    } finally {
      await edge.stop();
    }
  });
});
