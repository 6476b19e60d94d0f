/**
 * The client's publish path against a real nats-server, when the PubAck does not come: a late
 * PubAck is waited out by sending the same message again with the same `Nats-Msg-Id`, so the
 * submission is accepted once the server answers and JetStream holds one copy; a stream that
 * nobody serves (no leader, or none at all) refuses outright, which is what lets the gateway send
 * the request to another region without risk of it running twice.
 *
 * The late PubAck is made by SIGSTOPping the server after the client connected: every attempt
 * waits in the socket, and when the server resumes it reads them all, in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  assetNames,
  createVigilClient,
  ensureRegionAssets,
  Priority,
  PublishRefusedError,
  subjects,
  type SubmitRequest,
  type Submission,
  type VigilClient,
} from '../../protocol/index.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const REGION = 'lab';
const ATTEMPT_MS = 200;

const request = (input: string, extra: Partial<SubmitRequest> = {}): SubmitRequest => ({
  tenant: 'alpha',
  model: 'echo',
  priority: Priority.Batch,
  input,
  params: {},
  deadline: Date.now() + 60_000,
  waitMs: 0,
  ...extra,
});

describe('publishing a task when the PubAck is late or cannot come', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let client: VigilClient;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    await ensureRegionAssets(nc, await jetstreamManager(nc), { region: REGION });
    client = await createVigilClient(nc, {
      region: REGION,
      publishAttemptTimeoutMs: ATTEMPT_MS,
      publishTimeoutMs: 10_000,
    });
  });

  after(async () => {
    await client?.close();
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  test('a PubAck later than an attempt: sent again with its message id, accepted once', async () => {
    const jsm = await jetstreamManager(nc);
    const stream = assetNames.requestStream(REGION);
    const before = (await jsm.streams.info(stream)).state.messages;
    // Every attempt on the wire, as a plain subscriber sees it (the stream stores one).
    const sent: string[] = [];
    const wire = nc.subscribe(subjects.requestsOfRegion(REGION), {
      callback: (_, msg) => void sent.push(msg.headers?.get('Nats-Msg-Id') ?? ''),
    });
    await nc.flush();
    process.kill(nats.pid, 'SIGSTOP');
    const stalledMs = ATTEMPT_MS * 5;
    const resumed = new Promise((r) => setTimeout(r, stalledMs)).then(() =>
      process.kill(nats.pid, 'SIGCONT'),
    );
    const started = Date.now();
    let submission: Submission;
    try {
      submission = await client.submit(request('late-ack'));
    } finally {
      await resumed;
    }
    const tookMs = Date.now() - started;
    await nc.flush();
    wire.unsubscribe();
    const after = (await jsm.streams.info(stream)).state.messages;
    console.log(
      `late PubAck: server stopped ${stalledMs} ms, attempts every ${ATTEMPT_MS} ms; accepted ` +
        `after ${tookMs} ms; ${sent.length} sends, ${after - before} message stored`,
    );
    assert.ok(sent.length >= 2, `sent again after a late PubAck (${sent.length} sends)`);
    assert.ok(
      sent.every((id) => id === submission.taskId),
      'every send carries the task id as its message id',
    );
    assert.ok(tookMs >= stalledMs, 'the answer came after the server resumed');
    assert.equal(submission.duplicate, false, 'the task is this submission’s own');
    assert.equal(after - before, 1, 'JetStream kept one copy of the resent message');
  });

  test('a stream that nobody serves refuses outright: nothing was stored', async () => {
    // No stream listens on another region's subjects: the server answers "no responders" at
    // once, as it does for a stream whose leader is being elected.
    const started = Date.now();
    await assert.rejects(client.submit(request('nobody', { region: 'nowhere' })), (err) => {
      assert.ok(err instanceof PublishRefusedError, `refused, not ${String(err)}`);
      return true;
    });
    assert.ok(Date.now() - started < ATTEMPT_MS, 'refused at once, without retries');
  });
});
