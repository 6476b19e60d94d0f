/**
 * Actors in a real edge: heartbeats, fail-fast at the gateway, the circuit breaker, progress,
 * graceful drain and discovery through the NATS services API.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Svcm } from '@nats-io/services';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  subjects,
  taskEventSchema,
  type ActorHeartbeat,
  type TaskEvent,
} from '../../protocol/index.js';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';
import { pollTask, startTestEdge, waitFor, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;
const FAST_BEAT = { assets: { heartbeatIntervalMs: 300 }, actorEnv: { VIGIL_HEARTBEAT_MS: '300' } };

async function heartbeats(edge: TestEdge): Promise<ActorHeartbeat[]> {
  const kv = await new Kvm(await edge.connect()).open(assetNames.actorBucket(edge.region));
  const beats: ActorHeartbeat[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation === 'PUT') beats.push(decodeAs(actorHeartbeatSchema, entry.value, 'beat'));
  }
  return beats;
}

const infer = (
  edge: TestEdge,
  model: string,
  body: unknown,
  headers: Record<string, string> = {},
) =>
  edge.request(`/v1/models/${model}/infer`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers,
  });

describe('actors', () => {
  test('heartbeats describe every actor; a stopped host goes stale and sync calls fail fast', async () => {
    const edge = await startTestEdge({
      ...FAST_BEAT,
      actorEnv: { ...FAST_BEAT.actorEnv, VIGIL_MODELS: 'echo' },
    });
    try {
      const [beat] = await heartbeats(edge);
      assert.ok(beat);
      assert.equal(beat.model, 'echo');
      assert.equal(beat.state, 'running');
      assert.equal(beat.breaker, 'closed');
      assert.equal(beat.intervalMs, 300);
      assert.equal(beat.pid > 0, true);

      // Operators see the same through the CLI.
      const cli = spawnSync(
        process.execPath,
        ['--import', 'tsx', 'nodes/cli/main.ts', 'actors', '--json'],
        {
          cwd: PROJECT_ROOT,
          env: { ...process.env, ...edge.adminEnv() },
          encoding: 'utf8',
        },
      );
      assert.equal(cli.status, 0, cli.stderr);
      const listed = JSON.parse(cli.stdout) as ActorHeartbeat[];
      assert.deepEqual(
        listed.map((b) => [b.model, b.state]),
        [['echo', 'running']],
      );

      // The NATS services API finds the host.
      const nc = await edge.connect();
      const pings = [];
      for await (const ping of await new Svcm(nc).client().ping('vigil-actor-host'))
        pings.push(ping);
      assert.equal(pings.length, 1);
      assert.match(String(pings[0]?.metadata?.['models']), /echo@v1/);

      // SIGSTOP: the heartbeats stop, and the gateway stops sending sync work to the model.
      const host = edge.actorHosts[0]!;
      host.signal('SIGSTOP');
      const stoppedAt = Date.now();
      const refused = await waitFor('a fast 503', async () => {
        // A short sync wait: a call accepted just before the stop must not hold the probe.
        const res = await infer(edge, 'echo', { input: 1 }, { Prefer: 'wait=1' });
        if (res.status === 503) return res;
        await res.body?.cancel();
        return undefined;
      });
      const detectMs = Date.now() - stoppedAt;
      console.log(
        `SIGSTOPped actor host detected from heartbeats after ${detectMs} ms (interval 300 ms)`,
      );
      assert.equal(((await refused.json()) as { error: Json }).error['code'], 'unavailable');
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      // Async work is still accepted: it waits in the queue.
      const queued = await infer(edge, 'echo', { input: 'later' }, { Prefer: 'respond-async' });
      assert.equal(queued.status, 202);
      const id = String(((await queued.json()) as Json)['id']);
      host.signal('SIGCONT');
      const done = await pollTask(edge, id);
      assert.equal(done['state'], 'succeeded');
    } finally {
      await edge.stop();
    }
  });

  test('the breaker opens on failures, burns no attempts while open, and closes when the model heals', async () => {
    const edge = await startTestEdge({
      ...FAST_BEAT,
      actorEnv: {
        ...FAST_BEAT.actorEnv,
        VIGIL_MODELS: 'echo',
        VIGIL_CONCURRENCY: '2',
        VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }),
        VIGIL_MAX_ATTEMPTS: '10',
        VIGIL_RETRY_SCHEDULE_MS: '100',
        VIGIL_BREAKER: JSON.stringify({
          minCalls: 4,
          failureRatio: 0.5,
          cooldownMs: 1500,
          probes: 1,
        }),
      },
    });
    try {
      const nc = await edge.connect();
      const jsm = await jetstreamManager(nc);
      const stream = assetNames.requestStream(edge.region);
      const consumer = assetNames.modelConsumer('echo');
      const healAt = Date.now() + 2500;
      const ids: string[] = [];
      for (let i = 0; i < 6; i += 1) {
        const res = await infer(
          edge,
          'echo',
          { input: i, params: { fail_until: healAt } },
          { Prefer: 'respond-async' },
        );
        ids.push(String(((await res.json()) as Json)['id']));
      }
      const open = await waitFor('the breaker to open', async () =>
        (await heartbeats(edge)).find((b) => b.breaker === 'open'),
      );
      assert.equal(open.model, 'echo');
      const deliveredAtOpen = (await jsm.consumers.info(stream, consumer)).delivered.consumer_seq;
      await new Promise((r) => setTimeout(r, 1200)); // inside the 1.5 s cooldown
      const deliveredLater = (await jsm.consumers.info(stream, consumer)).delivered.consumer_seq;
      console.log(
        `breaker open: deliveries ${deliveredAtOpen} -> ${deliveredLater} during the cooldown`,
      );
      assert.equal(
        deliveredLater,
        deliveredAtOpen,
        'no deliveries (so no attempts burnt) while open',
      );
      const results = await Promise.all(ids.map((id) => pollTask(edge, id, 30_000)));
      assert.deepEqual(
        results.map((r) => r['state']),
        ids.map(() => 'succeeded'),
      );
      const closed = await waitFor('the breaker to close', async () =>
        (await heartbeats(edge)).find((b) => b.breaker === 'closed'),
      );
      assert.ok(closed.errors > 0);
    } finally {
      await edge.stop();
    }
  });

  test('progress shows in the task and as events; SIGTERM drains in-flight work and exits 0', async () => {
    const edge = await startTestEdge({
      actorEnv: {
        VIGIL_MODELS: 'echo',
        VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }),
        VIGIL_DRAIN_GRACE_MS: '20000',
      },
    });
    try {
      const nc = await edge.connect();
      const events: TaskEvent[] = [];
      nc.subscribe(subjects.eventsOfTenant(edge.region, 'alpha'), {
        callback: (_err, msg) => {
          events.push(decodeAs(taskEventSchema, msg.data, 'event'));
        },
      });
      const res = await infer(
        edge,
        'echo',
        { input: 'slow', params: { delay_ms: 2000 } },
        { Prefer: 'respond-async' },
      );
      const id = String(((await res.json()) as Json)['id']);
      const running = await waitFor('progress in the task', async () => {
        const body = (await (await edge.request(`/v1/tasks/${id}`)).json()) as Json;
        return body['progress'] ? body : undefined;
      });
      assert.equal(running['state'], 'running');
      const progress = running['progress'] as { fraction: number; message: string };
      assert.ok(progress.fraction > 0 && progress.fraction <= 1);
      assert.equal(progress.message, 'waiting');

      const host = edge.actorHosts[0]!;
      host.signal('SIGTERM');
      assert.equal(await host.exited, 0, 'a drained host exits 0');
      const done = await pollTask(edge, id);
      assert.equal(done['state'], 'succeeded', 'the in-flight task finished during the drain');
      assert.equal(done['attempts'], 1, 'it was not handed back');
      const beats = await heartbeats(edge);
      assert.equal(beats[0]?.state, 'draining', 'the last heartbeat says draining');
      const types = [...new Set(events.filter((e) => e.taskId === id).map((e) => e.type))];
      console.log(`events for a 2 s task: ${types.join(', ')}`);
      assert.deepEqual(types, ['running', 'progress', 'succeeded']);
    } finally {
      await edge.stop();
    }
  });
});
