/**
 * Symmetric limits and visible ends (issue 10): whatever an actor would refuse to decode, the
 * gateway and the typed client refuse first, naming the limit, and publish nothing; and a request
 * that reaches an actor undecodable still ends where its owner looks, a final record with the
 * reason, or a dead letter that says the owner is unknown.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import {
  assetNames,
  createVigilClient,
  encode,
  ENVELOPE_VERSION,
  newTaskId,
  Priority,
  subjects,
  type DeadLetterSummary,
} from '../../protocol/index.js';
import { pollTask, startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;
const ADMIN_KEY = `admin-${'k'.repeat(24)}`;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({
    // Bodies past the wire's 8 MiB reach the submit path, which must refuse them itself.
    gatewayEnv: { VIGIL_ADMIN_KEYS: ADMIN_KEY, VIGIL_MAX_BODY_BYTES: String(12 * 1024 * 1024) },
  });
});
after(async () => {
  await edge?.stop();
});

/** Messages in the region's request stream so far (published, whether or not consumed). */
async function requestsStored(): Promise<number> {
  const jsm = await jetstreamManager(await edge.connect());
  return (await jsm.streams.info(assetNames.requestStream(edge.region))).state.last_seq;
}

function nested(depth: number): unknown {
  let value: unknown = 'bottom';
  for (let i = 0; i < depth; i += 1) value = [value];
  return value;
}

async function infer(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return edge.request('/v1/models/echo/infer', {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

async function errorOf(res: Response): Promise<Json> {
  return ((await res.json()) as { error: Json }).error;
}

describe('the gateway refuses what an actor could not decode, and publishes nothing', () => {
  test('input nested past the wire depth is a 400 naming the limit, at once', async () => {
    const before = await requestsStored();
    const started = Date.now();
    for (const depth of [40, 31]) {
      const res = await infer({ input: nested(depth) });
      assert.equal(res.status, 400);
      const error = await errorOf(res);
      assert.equal(error['code'], 'invalid_request');
      assert.match(String(error['message']), /^input: nests deeper than 30 levels/);
      assert.ok(res.headers.get('x-request-id'));
    }
    assert.ok(Date.now() - started < 2_000, 'answered at once, not after the sync wait');
    // The deepest input that fits is published and runs: the limit is where the actor's is.
    const fits = await infer({ input: nested(29) });
    assert.equal(fits.status, 200, (await fits.clone().text()).slice(0, 300));
    assert.equal(await requestsStored(), before + 1, 'only the input that fits was published');
  });

  test('a result too deep to read back fails its task with the reason, at once', async () => {
    // Echo wraps its input one level deeper ({echo: input}): at the input limit, its result is
    // past what a record can carry to the gateway.
    const started = Date.now();
    const res = await infer({ input: nested(30) });
    assert.equal(res.status, 400, (await res.clone().text()).slice(0, 300));
    const body = (await res.json()) as { error: Json; task: Json };
    assert.equal(body.error['code'], 'invalid_payload');
    assert.match(String(body.error['message']), /model's result: nests deeper than 30 levels/);
    assert.equal(body.task['state'], 'failed');
    assert.ok(Date.now() - started < 5_000, 'the caller heard at once');
  });

  test('a __proto__ key is refused rather than renamed by the decoder', async () => {
    const before = await requestsStored();
    const res = await infer('{"input":{"a":{"__proto__":{"polluted":true}}}}');
    assert.equal(res.status, 400);
    assert.match(String((await errorOf(res))['message']), /__proto__/);
    assert.equal(await requestsStored(), before);
  });

  test('a body within the gateway limit whose task exceeds the server limit is a 413', async () => {
    const before = await requestsStored();
    // Within this gateway's 12 MiB body limit, past the 8 MiB a request may be on the wire.
    const res = await infer({ input: 'x'.repeat(8_500_000) });
    assert.equal(res.status, 413, await res.clone().text());
    const error = await errorOf(res);
    assert.equal(error['code'], 'payload_too_large');
    assert.match(String(error['message']), /more than the \d+ bytes a request may be/);
    assert.equal(await requestsStored(), before);
  });

  test('the typed client refuses data MessagePack cannot carry plainly, before publishing', async () => {
    const client = await createVigilClient(await edge.connectAs('service'), {
      region: edge.region,
    });
    const before = await requestsStored();
    const base = { tenant: 'alpha', model: 'echo', version: 'v1', priority: Priority.Batch };
    const submit = (input: unknown) =>
      client.submit({ ...base, input, params: {}, deadline: Date.now() + 60_000, waitMs: 0 });
    await assert.rejects(submit({ when: new Date() }), /not plain data/);
    await assert.rejects(submit([1, undefined, 3]), /undefined element/);
    await assert.rejects(submit(nested(32)), /nests deeper/);
    assert.equal(await requestsStored(), before);
    await client.close();
  });
});

describe('a request no actor can decode still ends where its owner looks', () => {
  async function letters(): Promise<DeadLetterSummary[]> {
    const res = await edge.request('/v1/admin/dead-letters?limit=1000', { key: ADMIN_KEY });
    return ((await res.json()) as { data: DeadLetterSummary[] }).data;
  }

  async function letterFor(taskId: string): Promise<DeadLetterSummary> {
    for (let i = 0; i < 100; i += 1) {
      const letter = (await letters()).find((l) => l.taskId === taskId);
      if (letter) return letter;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`no dead letter for ${taskId}`);
  }

  test('a readable owner gets a failed record with the reason, and the waiting caller its reply', async () => {
    const nc = await edge.connectAs('service');
    const client = await createVigilClient(nc, { region: edge.region });
    const taskId = newTaskId();
    // What a careless client could publish past the typed client: the right shape at the top,
    // an input too deep for any actor to decode.
    const envelope = {
      v: ENVELOPE_VERSION,
      id: taskId,
      tenant: TENANTS.alpha.tenant,
      model: 'echo',
      version: 'v1',
      priority: Priority.Interactive,
      input: nested(40),
      params: {},
      createdAt: Date.now(),
      deadline: Date.now() + 60_000,
      replyTo: subjects.reply(client.clientId, taskId),
    };
    const waited = client.waitForOutcome(taskId, 20_000);
    const started = Date.now();
    const hdrs = natsHeaders();
    await jetstream(nc).publish(
      subjects.request(edge.region, 'echo', Priority.Interactive, taskId),
      encode(envelope),
      { msgID: taskId, headers: hdrs },
    );
    const outcome = await waited;
    assert.ok(outcome, 'the waiter got the outcome');
    assert.ok(Date.now() - started < 5_000, `the reply came at once, not from polling`);
    assert.equal(outcome.state, 'failed');
    assert.equal(outcome.error?.code, 'invalid_payload');
    assert.match(outcome.error?.message ?? '', /could not be read: payload nests deeper than 32/);

    const view = await pollTask(edge, taskId);
    assert.equal(view['state'], 'failed');
    assert.equal((view['error'] as Json)['code'], 'invalid_payload');
    const other = await edge.request(`/v1/tasks/${taskId}`, { key: TENANTS.beta.key });
    assert.equal(other.status, 404, "another tenant's task stays invisible");

    const letter = await letterFor(taskId);
    assert.equal(letter.undecodable, true);
    assert.equal(letter.tenant, TENANTS.alpha.tenant);
    await client.close();
  });

  test('without a readable owner the dead letter says so, and no record is written', async () => {
    const nc = await edge.connectAs('service');
    const taskId = newTaskId();
    await jetstream(nc).publish(
      subjects.request(edge.region, 'echo', Priority.Batch, taskId),
      new Uint8Array([0xc1, 0xde, 0xad, 0xbe, 0xef]),
    );
    const letter = await letterFor(taskId);
    assert.equal(letter.tenant, undefined);
    assert.match(letter.error.message, /owner could not be recovered/);
    const res = await edge.request(`/v1/tasks/${taskId}`);
    assert.equal(res.status, 404);
  });

  test('an unreadable message never overwrites a task that has a record', async () => {
    const accepted = await infer({ input: { hello: 'world' } });
    assert.equal(accepted.status, 200);
    const taskId = String(((await accepted.json()) as Json)['id']);
    const nc = await edge.connectAs('service');
    const forged = encode({ tenant: TENANTS.alpha.tenant, v: 99 });
    await jetstream(nc).publish(
      subjects.request(edge.region, 'echo', Priority.Batch, taskId),
      forged,
      { msgID: `forged-${taskId}` },
    );
    await letterFor(taskId);
    const view = await pollTask(edge, taskId);
    assert.equal(view['state'], 'succeeded', 'the first outcome stands');
  });
});
