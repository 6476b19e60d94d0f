/**
 * Two regions joined into a supercluster, each with its own gateway and actor host, every node
 * under its least-privilege NATS user: work stays home while home can run it, spills over to the
 * other region when home has no healthy actor or its queue is past the threshold, results still
 * reach the caller (in the same trace), any region answers for any task (but never to another
 * tenant), and the queue of a region left without actors is worked off by another region's host.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { assetNames, createVigilClient, Priority } from '../../protocol/index.js';
import { TENANTS, waitFor } from '../harness/edge.js';
import { OtlpReceiver } from '../harness/otlp-receiver.js';
import { startTestRegions, type TestRegions } from '../harness/regions.js';

type Json = Record<string, unknown>;
const BEAT_MS = 300;
/** Past the 3 s waits of the failover test's requests, so that those are answered by us. */
const RESCUE_GRACE_MS = 5_000;

describe('regions: spill-over and failover', () => {
  let regions: TestRegions;
  const receiver = new OtlpReceiver();
  before(async () => {
    await receiver.start();
    const telemetry = {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    };
    regions = await startTestRegions({
      regions: [
        { name: 'eu', nodes: 1 },
        { name: 'us', nodes: 1 },
      ],
      assets: { heartbeatIntervalMs: BEAT_MS },
      actorEnv: {
        ...telemetry,
        VIGIL_HEARTBEAT_MS: String(BEAT_MS),
        VIGIL_MODELS: 'echo',
        VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true, maxDelayMs: 5_000 }),
        VIGIL_RESCUE_GRACE_MS: String(RESCUE_GRACE_MS),
        VIGIL_RESCUE_CHECK_MS: '250',
      },
      gatewayEnv: { ...telemetry, VIGIL_SPILL_QUEUE_DEPTH: '4' },
    });
  });
  after(async () => {
    await regions?.stop();
    await receiver.stop();
  });

  const infer = (
    at: string,
    input: unknown,
    init: { params?: Json; headers?: Record<string, string> } = {},
  ) =>
    regions.request(at, '/v1/models/echo/infer', {
      method: 'POST',
      body: JSON.stringify({ input, params: init.params ?? {} }),
      ...(init.headers ? { headers: init.headers } : {}),
    });

  test('a request runs in the region that received it while that region is healthy', async () => {
    for (const at of ['eu', 'us']) {
      const res = await infer(at, `hello ${at}`);
      const body = (await res.json()) as Json;
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body['state'], 'succeeded');
      assert.equal(body['region'], at);
    }
  });

  test('any region answers for any task, and never to another tenant', async () => {
    const res = await infer('us', 'made in us');
    const { id } = (await res.json()) as { id: string };
    for (const at of ['eu', 'us']) {
      const seen = await regions.request(at, `/v1/tasks/${id}`);
      const body = (await seen.json()) as Json;
      assert.equal(seen.status, 200);
      assert.equal(body['region'], 'us');
      assert.equal(body['state'], 'succeeded');
      const other = await regions.request(at, `/v1/tasks/${id}`, { key: TENANTS.beta.key });
      assert.equal(other.status, 404, `tenant beta must not see alpha's task from ${at}`);
    }
  });

  test('a retry with the same Idempotency-Key at another region gets the same task', async () => {
    const headers = { 'Idempotency-Key': `cross-region-${Date.now()}`, Prefer: 'respond-async' };
    const first = await infer('eu', 'once', { headers });
    const firstBody = (await first.json()) as Json;
    assert.equal(first.status, 202);
    const retry = await infer('us', 'once', { headers: { ...headers, Prefer: 'wait=10' } });
    const retryBody = (await retry.json()) as Json;
    assert.equal(retryBody['id'], firstBody['id']);
    assert.equal(retryBody['region'], 'eu', 'the task stays where it was first accepted');
    assert.equal(retryBody['state'], 'succeeded');
  });

  test('past the queue threshold, new work spills over to the other region', async () => {
    // Slow tasks at eu's single actor (concurrency 4): the queue grows past 4, the gateway's
    // depth sample sees it, and later submissions go to us (bounded: at most 120 tasks).
    const sent: { id: string; region: string }[] = [];
    for (let i = 0; i < 120 && !sent.some((t) => t.region === 'us'); i++) {
      const res = await infer('eu', `queued ${i}`, {
        params: { delay_ms: 400 },
        headers: { Prefer: 'respond-async' },
      });
      assert.equal(res.status, 202);
      const body = (await res.json()) as { id: string; region: string };
      sent.push(body);
      await new Promise((r) => setTimeout(r, 50));
    }
    const spilledAfter = sent.findIndex((t) => t.region === 'us');
    assert.ok(spilledAfter > 0, `no task spilled over after ${sent.length} sent`);
    assert.ok(
      sent.slice(0, spilledAfter).every((t) => t.region === 'eu'),
      'home first',
    );
    const final = await Promise.all(sent.map((t) => finalState('eu', t.id)));
    assert.deepEqual(
      final.filter((t) => t['state'] !== 'succeeded'),
      [],
      'every accepted task succeeds',
    );
    for (const [i, t] of final.entries()) assert.equal(t['region'], sent[i]!.region);
    console.log(
      `queue spill-over: the first ${spilledAfter} tasks stayed in eu, then work went to us; ` +
        `${sent.length} sent, all succeeded`,
    );
  });

  test('with every actor of a model in a region killed, requests are served by another region', async () => {
    const hosts = regions.actorHosts.get('eu') ?? [];
    const killedAt = Date.now();
    for (const host of hosts) host.signal('SIGKILL');
    await Promise.all(hosts.map((h) => h.exited));
    regions.actorHosts.set('eu', []);
    // A request every 100 ms at eu (bounded) until one is served; each waits up to 3 s.
    const sent: Promise<{ status: number; body: Json; doneAt: number }>[] = [];
    let servedAt: number | undefined;
    for (let i = 0; i < 60 && servedAt === undefined; i++) {
      sent.push(
        infer('eu', `failover ${i}`, { headers: { Prefer: 'wait=3' } }).then(async (res) => {
          const body = (await res.json()) as Json;
          if (res.status === 200) servedAt ??= Date.now();
          return { status: res.status, body, doneAt: Date.now() };
        }),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    const answers = await Promise.all(sent);
    const served = answers.filter((a) => a.status === 200);
    assert.ok(servedAt !== undefined && served.length > 0, 'eu never served again');
    assert.ok(
      served.every((a) => a.body['region'] === 'us'),
      'served by us',
    );
    const waiting = answers.filter((a) => a.status === 202);
    assert.deepEqual(
      answers.filter((a) => a.status !== 200 && a.status !== 202).map((a) => a.status),
      [],
      'no request failed',
    );
    console.log(
      `failover: eu's actors killed; requests at eu served again (by us) ${servedAt - killedAt} ms ` +
        `later (heartbeat ${BEAT_MS} ms, stale after ${3 * BEAT_MS} ms); ` +
        `${waiting.length} accepted into eu's queue before that`,
    );
    // A spilled request stays one trace: eu's gateway span, us's actor under it.
    const traceId = randomBytes(16).toString('hex');
    const traced = await infer('eu', 'traced', {
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    assert.equal(((await traced.json()) as Json)['region'], 'us');
    const spans = await waitFor('the spilled trace', async () => {
      const found = receiver.spans.filter((s) => s.traceId === traceId);
      return Promise.resolve(
        found.some((s) => s.name === 'process echo') && found.some((s) => s.name === 'send echo')
          ? found
          : undefined,
      );
    });
    const send = spans.find((s) => s.name === 'send echo')!;
    const processed = spans.find((s) => s.name === 'process echo')!;
    assert.equal(send.service, 'vigil-gateway');
    assert.equal(send.region, 'eu');
    assert.equal(processed.service, 'vigil-actor-host');
    assert.equal(processed.region, 'us');
    assert.equal(processed.parentSpanId, send.spanId, 'one trace across the regions');

    // Work still queued in eu (accepted before its actors were seen dead, and more put there
    // directly now, as an internal service may) is taken over by us's actor host once eu has had
    // no actor for the rescue grace: every task completes while eu still has no actor.
    const nc = await regions.connect('eu');
    const client = await createVigilClient(nc, { region: 'eu' });
    const queued: string[] = [];
    for (let i = 0; i < 10; i++) {
      const submission = await client.submit({
        tenant: TENANTS.alpha.tenant,
        model: 'echo',
        priority: Priority.Batch,
        input: `queued in eu ${i}`,
        params: {},
        deadline: Date.now() + 120_000,
        waitMs: 0,
      });
      assert.equal(submission.region, 'eu');
      queued.push(submission.taskId);
    }
    await client.close();
    const ids = [...waiting.map((a) => String(a.body['id'])), ...queued];
    const final = await Promise.all(ids.map((id) => finalState('eu', id)));
    assert.deepEqual(
      final.map((t) => [t['state'], t['region']]),
      ids.map(() => ['succeeded', 'eu']),
    );
    assert.deepEqual(regions.actorHosts.get('eu'), [], 'eu still has no actor host');
    const info = await (
      await jetstreamManager(nc)
    ).consumers.info(assetNames.requestStream('eu'), assetNames.modelConsumer('echo'));
    assert.equal(info.num_pending + info.num_ack_pending, 0, "eu's queue is empty");
    console.log(
      `backlog rescue: ${ids.length} tasks queued in eu without actors (${waiting.length} from ` +
        `before the failover) all done by us's host ${Date.now() - killedAt} ms after the kill ` +
        `(rescue grace ${RESCUE_GRACE_MS} ms); 0 lost`,
    );
  });

  async function finalState(at: string, id: string): Promise<Json> {
    return waitFor(
      `task ${id}`,
      async () => {
        const res = await regions.request(at, `/v1/tasks/${id}`, {
          headers: { Prefer: 'wait=5' },
        });
        const body = (await res.json()) as Json;
        return ['succeeded', 'failed', 'dead'].includes(String(body['state'])) ? body : undefined;
      },
      60_000,
    );
  }
});
