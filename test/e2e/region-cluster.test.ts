/**
 * A region of three NATS servers with its assets replicated three ways (R3): killing one server
 * under load, the one leading the request stream (the worst case), loses no accepted task. The
 * load retries refused requests with the same Idempotency-Key, as a client should; the test counts
 * every key and prints the longest gap in acceptance (PubAcks: the load is asynchronous) around
 * the kill.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { assetNames } from '../../protocol/index.js';
import { waitFor } from '../harness/edge.js';
import { startTestRegions, type TestRegions } from '../harness/regions.js';

type Json = Record<string, unknown>;
const WORKERS = 8;
const TASKS = 320;
const KILL_AFTER = 100;
const MAX_TRIES = 100;

describe('a three-node region', () => {
  let regions: TestRegions;
  before(async () => {
    regions = await startTestRegions({
      regions: [{ name: 'eu', nodes: 3 }],
      actorEnv: { VIGIL_MODELS: 'echo', VIGIL_CONCURRENCY: '16' },
    });
  });
  after(() => regions?.stop());

  test('killing the request stream leader under load loses no accepted task', async () => {
    const admin = await regions.connect('eu');
    const jsm = await jetstreamManager(admin);
    const info = await jsm.streams.info(assetNames.requestStream('eu'));
    assert.equal(info.config.num_replicas, 3);
    const leaderName = info.cluster?.leader;
    const leader = regions.supercluster.regions
      .get('eu')!
      .find((s) => s.options.serverName === leaderName);
    assert.ok(leader, `leader ${leaderName} is one of ours`);

    const acceptedAt: number[] = [];
    const outcomes = new Map<string, { id: string; state: string }>();
    let refusals = 0;
    let killedAt = 0;
    let next = 0;
    const send = async (key: string): Promise<void> => {
      for (let attempt = 1; attempt <= MAX_TRIES; attempt++) {
        try {
          const res = await regions.request('eu', '/v1/models/echo/infer', {
            method: 'POST',
            body: JSON.stringify({ input: key }),
            headers: { 'Idempotency-Key': key, Prefer: 'respond-async' },
          });
          const body = (await res.json()) as Json;
          if (res.status === 200 || res.status === 202) {
            acceptedAt.push(Date.now());
            outcomes.set(key, { id: String(body['id']), state: String(body['state']) });
            return;
          }
          refusals++;
        } catch {
          refusals++; // the gateway's connection is moving to another server
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${key} was never accepted in ${MAX_TRIES} tries`);
    };
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (next < TASKS) {
          const n = next++;
          if (n === KILL_AFTER) {
            killedAt = Date.now();
            await leader.kill('SIGKILL');
          }
          await send(`cluster-${n}`);
        }
      }),
    );

    // Every key was accepted; now every accepted task must reach success.
    assert.equal(outcomes.size, TASKS);
    const final = await Promise.all(
      [...outcomes.values()].map(({ id, state }) =>
        state === 'succeeded'
          ? Promise.resolve('succeeded')
          : waitFor(
              `task ${id}`,
              async () => {
                const res = await regions.request('eu', `/v1/tasks/${id}`, {
                  headers: { Prefer: 'wait=5' },
                });
                const body = (await res.json()) as Json;
                return ['succeeded', 'failed', 'dead'].includes(String(body['state']))
                  ? String(body['state'])
                  : undefined;
              },
              60_000,
            ),
      ),
    );
    const lost = final.filter((s) => s !== 'succeeded').length;
    assert.equal(lost, 0, 'no accepted task is lost');

    acceptedAt.sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < acceptedAt.length; i++) {
      if (acceptedAt[i]! >= killedAt) gap = Math.max(gap, acceptedAt[i]! - acceptedAt[i - 1]!);
    }
    const after = await jsm.streams.info(assetNames.requestStream('eu'));
    console.log(
      `three-node region: killed stream leader ${leaderName} after ${KILL_AFTER} of ${TASKS} tasks; ` +
        `longest acceptance gap after the kill ${gap} ms; ${refusals} refused sends retried; ` +
        `new leader ${after.cluster?.leader}; 0 lost`,
    );
    await leader.restart();
  });
});
