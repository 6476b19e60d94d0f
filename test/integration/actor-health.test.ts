/**
 * The heartbeat watch the gateway routes by, against a real nats-server: it sees beats as they are
 * written, and it holds one watch (one ordered consumer) per region for as long as it runs. The
 * soak found it opening a new watch every second beside the old ones, each an ordered consumer,
 * a subscription and a timer that were never given back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager, jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  ActorState,
  assetNames,
  BreakerState,
  encode,
  ENVELOPE_VERSION,
  ensureRegionAssets,
  HEALTH_WATCH_RETRY_MS,
  watchActorHealth,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import { waitFor } from '../harness/edge.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const REGION = 'lab';

function beat(model: string): ActorHeartbeat {
  const now = Date.now();
  return {
    v: ENVELOPE_VERSION,
    actorId: `host-1/${model}`,
    host: 'host-1',
    region: REGION,
    model,
    version: 'test-1',
    state: ActorState.Running,
    breaker: BreakerState.Closed,
    isolation: 'in-process',
    pid: process.pid,
    inFlight: 0,
    processed: 0,
    errors: 0,
    restarts: 0,
    latencyMs: { p50: 0, p99: 0 },
    startedAt: now,
    at: now,
    intervalMs: 10_000,
  };
}

describe('heartbeat watch', () => {
  let nats: TestNats;
  let nc: NatsConnection;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    await ensureRegionAssets(nc, await jetstreamManager(nc), { region: REGION });
  });

  after(async () => {
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  test('sees beats, and keeps one consumer on the bucket however long it runs', async () => {
    const warnings: string[] = [];
    const health = await watchActorHealth(jetstream(nc), REGION, [], {
      warn: (_fields, message) => warnings.push(message),
    });
    try {
      const kv = await new Kvm(nc).open(assetNames.actorBucket(REGION));
      await kv.put('echo.host-1', encode(beat('echo')));
      await waitFor('the beat through the watch', () =>
        Promise.resolve(health.list().length === 1 ? true : undefined),
      );
      // Past several retry intervals: a watch that is still open must not be opened again.
      await new Promise((r) => setTimeout(r, HEALTH_WATCH_RETRY_MS * 4 + 500));
      const jsm = await jetstreamManager(nc);
      const consumers = await jsm.consumers.list(`KV_${assetNames.actorBucket(REGION)}`).next();
      console.log(`heartbeat watch: ${consumers.length} consumer(s) after 4.5 s`);
      assert.equal(consumers.length, 1, 'one watch, one ordered consumer');
      assert.equal(await health.hasHealthyActor('echo'), true);
      assert.deepEqual(warnings, []);
    } finally {
      health.close();
    }
  });
});
