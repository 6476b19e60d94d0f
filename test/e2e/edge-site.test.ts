/**
 * An edge site: a leaf node with its own JetStream domain and a gateway beside it, attached to its
 * region's hub through a link the test can cut. While the link is cut the site keeps accepting
 * requests into its own stream; when the link returns the hub sources them and every accepted
 * request completes, exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import { assetNames, decodeAs, taskRecordSchema } from '../../protocol/index.js';
import { waitFor } from '../harness/edge.js';
import { startTestRegions, type TestRegions } from '../harness/regions.js';
import type { TcpProxy } from '../harness/tcp-proxy.js';

type Json = Record<string, unknown>;

describe('edge site: store-and-forward across a cut leaf link', () => {
  let regions: TestRegions;
  let links: TcpProxy[] = [];
  before(async () => {
    regions = await startTestRegions({
      regions: [{ name: 'eu', nodes: 1 }],
      edges: [{ site: 'pop1', region: 'eu' }],
      actorEnv: { VIGIL_MODELS: 'echo' },
      cuttableEdgeLinks: true,
    });
    links = regions.edgeLinks.get('pop1') ?? [];
  });
  after(() => regions?.stop());

  const leafLinks = async (): Promise<number> => {
    const edge = regions.edgeServers.get('pop1')!;
    const res = await fetch(`${edge.monitorUrl}/leafz`);
    return ((await res.json()) as { leafnodes: number }).leafnodes;
  };
  const submit = async (input: string, prefer = 'respond-async') => {
    const res = await regions.request('pop1', '/v1/models/echo/infer', {
      method: 'POST',
      body: JSON.stringify({ input }),
      headers: { Prefer: prefer },
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const finalState = (id: string) =>
    waitFor(
      `task ${id}`,
      async () => {
        const res = await regions.request('pop1', `/v1/tasks/${id}`, {
          headers: { Prefer: 'wait=5' },
        });
        if (res.status !== 200) return undefined;
        const body = (await res.json()) as Json;
        return ['succeeded', 'failed', 'dead'].includes(String(body['state'])) ? body : undefined;
      },
      90_000,
    );

  test('with the link up, the edge gateway serves requests through the hub', async () => {
    const { status, body } = await submit('hello from the edge', 'wait=10');
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body['region'], 'eu');
    assert.deepEqual(body['result'], { echo: 'hello from the edge' });
  });

  test('while the link is cut the edge keeps accepting; when it returns every request completes once', async () => {
    await waitFor('the leaf link', async () => ((await leafLinks()) > 0 ? true : undefined));
    await Promise.all(links.map((l) => l.cut()));
    const cutAt = Date.now();
    await waitFor('the leaf link to drop', async () =>
      (await leafLinks()) === 0 ? true : undefined,
    );

    // Keep sending while cut: async requests, and sync ones that end as 202 (bounded count).
    const accepted: string[] = [];
    const refused: number[] = [];
    for (let i = 0; i < 30; i++) {
      const { status, body } = await submit(`held ${i}`, i % 10 === 0 ? 'wait=1' : 'respond-async');
      if (status === 202) accepted.push(String(body['id']));
      else refused.push(status);
    }
    assert.deepEqual(refused, [], 'the edge refuses nothing while its link is cut');
    // A held task is visible at the edge as accepted.
    const held = await regions.request('pop1', `/v1/tasks/${accepted[0]}`);
    assert.equal(held.status, 200);
    assert.equal(((await held.json()) as Json)['state'], 'accepted');
    const heldMs = Date.now() - cutAt;

    await Promise.all(links.map((l) => l.restore()));
    const restoredAt = Date.now();
    await waitFor(
      'the leaf link to return',
      async () => ((await leafLinks()) > 0 ? true : undefined),
      30_000,
    );
    const final = await Promise.all(accepted.map((id) => finalState(id)));
    const drainedMs = Date.now() - restoredAt;
    const notSucceeded = final.filter((t) => t['state'] !== 'succeeded');
    assert.deepEqual(notSucceeded, [], 'every accepted request completes');

    // Exactly once: one record per task in the hub, each run by one attempt.
    const hub = await regions.connect('eu');
    const tasks = await new Kvm(hub).open(assetNames.taskBucket('eu'));
    let attemptsAboveOne = 0;
    for (const id of accepted) {
      const entry = await tasks.get(id);
      assert.ok(entry?.operation === 'PUT', `task ${id} has a record in the hub`);
      if (decodeAs(taskRecordSchema, entry.value, 'record').attempt > 1) attemptsAboveOne++;
    }
    assert.equal(attemptsAboveOne, 0, 'no task ran twice');
    console.log(
      `edge store-and-forward: link cut for ${heldMs} ms while ${accepted.length} requests were ` +
        `accepted at the edge (0 refused); all completed ${drainedMs} ms after the link returned; ` +
        `0 lost, 0 run twice`,
    );
  });
});
