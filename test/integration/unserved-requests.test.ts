/**
 * The unserved-request sweep against a real nats-server, run as the actor host's own NATS user
 * (so a grant missing from protocol/permissions.ts fails here): a request for a model that has
 * no consumer ends once it waited the grace, with its owner's failed record, the caller's reply,
 * the tenant's event, a dead letter, and its removal from the stream; one whose owner cannot be
 * told ends as a letter; nothing is decided over an existing record or a consumer that appeared;
 * two sweepers give one outcome; and while every request has a consumer the sweep lists nothing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { startUnservedRequestSweep, type UnservedRequestSweep } from '../../actors/index.js';
import {
  assetNames,
  DEAD_LETTER_HEADERS,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  ensureModelConsumer,
  ensureRegionAssets,
  ErrorCode,
  newTaskId,
  Role,
  subjects,
  taskEventSchema,
  taskRecordSchema,
  TaskState,
  userName,
  type TaskRecord,
} from '../../protocol/index.js';
import { natsAuthOptions, readNkeySeed } from '../../nodes/common/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  type NatsCredentials,
} from '../../nodes/launcher/index.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const REGION = 'lab';
const HOST_USER = userName(Role.ActorHost, REGION);
const SILENT = pino({ level: 'silent' });
/** Sweeps run only when a test calls `sweep()`. */
const NEVER = 3_600_000;

let nats: TestNats;
let credsDir: string;
let credentials: NatsCredentials;
let admin: NatsConnection;
let host: NatsConnection;
let jsm: JetStreamManager;
let tasks: KV;
const sweeps: UnservedRequestSweep[] = [];

function connectAs(user: string): Promise<NatsConnection> {
  const { seedFile, inboxPrefix } = credentials.user(user);
  return connect({
    servers: nats.url,
    ...natsAuthOptions({
      servers: nats.url,
      name: user,
      nkeySeed: readNkeySeed(seedFile, user),
      inboxPrefix,
    }),
  });
}

async function sweeper(graceMs: number): Promise<UnservedRequestSweep> {
  const sweep = await startUnservedRequestSweep(host, {
    region: REGION,
    graceMs,
    checkIntervalMs: NEVER,
    actorId: 'test/unserved',
    logger: SILENT,
  });
  sweeps.push(sweep);
  return sweep;
}

/** Queues a request for `model` as a gateway would, or with `payload` instead of an envelope. */
async function queue(
  model: string,
  envelope: Record<string, unknown> = {},
  payload?: Uint8Array,
): Promise<{ id: string; seq: number; replyTo: string }> {
  const id = newTaskId();
  const replyTo = subjects.reply('gw', id);
  const now = Date.now();
  const bytes =
    payload ??
    encode({
      v: ENVELOPE_VERSION,
      id,
      tenant: 'alpha',
      model,
      priority: 'batch',
      input: 'x',
      params: {},
      createdAt: now,
      deadline: now + 60_000,
      replyTo,
      ...envelope,
    });
  const ack = await jetstream(admin).publish(subjects.request(REGION, model, 'batch', id), bytes);
  return { id, seq: ack.seq, replyTo };
}

async function stillQueued(seq: number): Promise<boolean> {
  const msg = await jsm.streams.getMessage(assetNames.requestStream(REGION), { seq });
  return msg !== null;
}

async function recordOf(id: string): Promise<TaskRecord | undefined> {
  const entry = await tasks.get(id);
  return entry?.operation === 'PUT' ? decodeAs(taskRecordSchema, entry.value, 'record') : undefined;
}

async function letterFor(seq: number) {
  const stream = assetNames.deadLetterStream(REGION);
  const { state } = await jsm.streams.info(stream);
  for (let s = state.first_seq; s <= state.last_seq && state.messages > 0; s++) {
    const m = await jsm.streams.getMessage(stream, { seq: s });
    if (m?.header?.get('Nats-Msg-Id') === `dlq-seq-${seq}`) return m;
  }
  return undefined;
}

before(async () => {
  credsDir = mkdtempSync(join(tmpdir(), 'vigil-unserved-'));
  credentials = generateNatsCredentials({ outDir: credsDir, regions: [REGION] });
  nats = await startTestNats({ extraConfig: accountsConfig(credentials) });
  admin = await connectAs(Role.Admin);
  jsm = await jetstreamManager(admin);
  await ensureRegionAssets(admin, jsm, { region: REGION });
  await ensureModelConsumer(jsm, { region: REGION, model: 'echo' });
  tasks = await new Kvm(admin).open(assetNames.taskBucket(REGION));
  host = await connectAs(HOST_USER);
});

after(async () => {
  await Promise.allSettled(sweeps.map((s) => s.stop()));
  await host?.close();
  await admin?.close();
  await nats?.[Symbol.asyncDispose]();
  if (credsDir) rmSync(credsDir, { recursive: true, force: true });
});

describe('requests for a model no actor serves', () => {
  test('while every queued request has a consumer, a sweep reads two counts and lists nothing', async () => {
    const served = await queue('echo');
    const infos: string[] = [];
    const spy = admin.subscribe(`$JS.API.STREAM.INFO.${assetNames.requestStream(REGION)}`, {
      callback: (_err, msg) => void infos.push(msg.string()),
    });
    await admin.flush();
    assert.equal(await (await sweeper(0)).sweep(), 0);
    await admin.flush();
    spy.unsubscribe();
    assert.equal(infos.length, 1, 'one stream info');
    assert.ok(!infos[0]!.includes('subjects_filter'), 'no subject listing');
    assert.ok(await stillQueued(served.seq), "the consumer's request is left alone");
  });

  test('one that waited the grace ends: record, reply, event, letter, out of the stream', async () => {
    const young = await sweeper(60_000);
    const { id, seq, replyTo } = await queue('nosuchmodel');
    assert.equal(await young.sweep(), 0, 'within the grace it waits');
    assert.ok(await stillQueued(seq));
    const reply = admin.subscribe(replyTo, { max: 1 });
    const event = admin.subscribe(subjects.event(REGION, 'alpha', id), { max: 1 });
    await admin.flush();
    assert.equal(await (await sweeper(0)).sweep(), 1);
    const record = await recordOf(id);
    assert.equal(record?.state, TaskState.Failed);
    assert.equal(record?.tenant, 'alpha');
    assert.equal(record?.model, 'nosuchmodel');
    assert.equal(record?.error?.code, ErrorCode.NotFound);
    assert.equal(record?.error?.message, `no actor serves model nosuchmodel in region ${REGION}`);
    for await (const m of reply) assert.equal(decodeAs(taskRecordSchema, m.data, 'r').id, id);
    for await (const m of event)
      assert.equal(decodeAs(taskEventSchema, m.data, 'e').type, 'failed');
    const letter = await letterFor(seq);
    assert.equal(letter?.header?.get(DEAD_LETTER_HEADERS.taskId), id);
    assert.equal(letter?.header?.get(DEAD_LETTER_HEADERS.tenant), 'alpha');
    assert.equal(await stillQueued(seq), false);
  });

  test('one whose owner cannot be told ends as a letter that says so', async () => {
    const { seq } = await queue('nosuchmodel', {}, Uint8Array.of(0xc1));
    assert.equal(await (await sweeper(0)).sweep(), 1);
    const letter = await letterFor(seq);
    assert.match(letter?.header?.get(DEAD_LETTER_HEADERS.error) ?? '', /owner could not be/);
    assert.equal(await stillQueued(seq), false);
  });

  test('a stored outcome is never overwritten; a task someone runs keeps its request', async () => {
    const done = await queue('othermodel');
    const now = Date.now();
    const succeeded: TaskRecord = {
      v: ENVELOPE_VERSION,
      id: done.id,
      tenant: 'alpha',
      model: 'othermodel',
      version: 'v1',
      state: TaskState.Succeeded,
      attempt: 1,
      createdAt: now,
      finishedAt: now,
      result: { echo: 'done' },
    };
    await tasks.create(done.id, encode(succeeded));
    const running = await queue('othermodel');
    const { finishedAt: _f, result: _r, ...rest } = succeeded;
    await tasks.create(running.id, encode({ ...rest, id: running.id, state: TaskState.Running }));
    await (await sweeper(0)).sweep();
    assert.equal((await recordOf(done.id))?.state, TaskState.Succeeded);
    assert.equal(await stillQueued(done.seq), false, 'an ended task needs no request');
    assert.equal((await recordOf(running.id))?.state, TaskState.Running);
    assert.ok(await stillQueued(running.seq), 'a running task keeps its request');
    await jsm.streams.deleteMessage(assetNames.requestStream(REGION), running.seq);
  });

  test('a model that got a consumer keeps its requests; two sweepers end one once', async () => {
    const late = await queue('latemodel');
    await ensureModelConsumer(jsm, { region: REGION, model: 'latemodel' });
    const racing = await queue('racemodel');
    const [a, b] = [await sweeper(0), await sweeper(0)];
    const replies: unknown[] = [];
    const reply = admin.subscribe(racing.replyTo, {
      callback: (_e, m) => void replies.push(m.data),
    });
    await admin.flush();
    const ended = (await Promise.all([a.sweep(), b.sweep()])).reduce((x, y) => x + y, 0);
    await admin.flush();
    reply.unsubscribe();
    assert.ok(await stillQueued(late.seq), 'its consumer will deliver it');
    assert.equal(await recordOf(late.id), undefined);
    assert.ok(ended >= 1);
    assert.equal((await recordOf(racing.id))?.state, TaskState.Failed);
    assert.equal(replies.length, 1, 'one caller told once');
    assert.equal(await stillQueued(racing.seq), false);
  });
});
