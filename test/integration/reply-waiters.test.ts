/**
 * The client's sync waiter against a real nats-server: a record on a task's reply subject is its
 * answer only when it is that task's and its tenant's. The test plays the actor: it takes the
 * request from the stream, publishes forged records on the waiting caller's reply subject, then
 * stores the real record and sends it. Safety-net re-reads are pushed past the test's span, so
 * whatever the caller is answered came from the reply subject.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  assetNames,
  createVigilClient,
  decode,
  encode,
  ENVELOPE_VERSION,
  ensureRegionAssets,
  newTaskId,
  Priority,
  subjects,
  TaskState,
  type RequestEnvelope,
  type TaskRecord,
  type VigilClient,
} from '../../protocol/index.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const REGION = 'lab';

function record(id: string, tenant: string, result: unknown): TaskRecord {
  const now = Date.now();
  return {
    v: ENVELOPE_VERSION,
    id,
    tenant,
    model: 'echo',
    version: 'v1',
    state: TaskState.Succeeded,
    attempt: 1,
    createdAt: now,
    finishedAt: now,
    result,
  };
}

describe('a waiting caller believes only its own task’s record', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let client: VigilClient;
  let tasks: KV;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    await ensureRegionAssets(nc, await jetstreamManager(nc), { region: REGION });
    // No re-read of the bucket within the test: an answer can only come from a reply.
    client = await createVigilClient(nc, { region: REGION, resultPollMs: 60_000 });
    tasks = await new Kvm(nc).open(assetNames.taskBucket(REGION));
  });

  after(async () => {
    await client?.close();
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  test('records of another task or another tenant on the reply subject are ignored', async () => {
    const requests = nc.subscribe(subjects.requestsOfRegion(REGION), { max: 1 });
    const answer = client.submit({
      tenant: 'alpha',
      model: 'echo',
      priority: Priority.Interactive,
      input: 'real',
      params: {},
      deadline: Date.now() + 60_000,
      waitMs: 20_000,
    });
    let envelope: RequestEnvelope | undefined;
    for await (const msg of requests) envelope = decode(msg.data) as RequestEnvelope;
    assert.ok(envelope?.replyTo, 'the caller waits on a reply subject');
    const forgeries = [
      record(newTaskId(), 'alpha', 'another task'),
      record(envelope.id, 'beta', 'another tenant'),
    ];
    for (const forged of forgeries) nc.publish(envelope.replyTo, encode(forged));
    // The task whose id the first forgery names has a waiter too: it must not get that record.
    const bystander = client.waitForOutcome(forgeries[0]!.id, 1_000, undefined, REGION, 'alpha');
    nc.publish(subjects.reply(client.clientId, forgeries[0]!.id), encode(forgeries[1]!));
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    const real = record(envelope.id, 'alpha', 'real');
    await tasks.create(envelope.id, encode(real));
    nc.publish(envelope.replyTo, encode(real));
    const submission = await answer;
    assert.equal(submission.taskId, envelope.id);
    assert.deepEqual(submission.outcome?.result, 'real');
    assert.equal(await bystander, undefined, 'a record of another task answers nobody');
  });
});
