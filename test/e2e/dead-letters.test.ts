/**
 * Dead letters end to end, on a real nats-server with real gateway and actor-host processes:
 * tasks that failed or died are listed, inspected and replayed through the admin API and the CLI,
 * admin and tenant keys stay apart, and an undecodable request is listed but never replayed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  assetNames,
  newTaskId,
  Priority,
  subjects,
  type DeadLetterDetail,
  type DeadLetterSummary,
} from '../../protocol/index.js';
import { runProgram, type ProgramRun } from '../harness/processes.js';
import { pollTask, startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;
const ADMIN_KEY = `admin-${randomBytes(16).toString('hex')}`;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({
    actorEnv: {
      VIGIL_ECHO_FAULTS: '{"enabled":true}',
      VIGIL_MAX_ATTEMPTS: '2',
      VIGIL_RETRY_SCHEDULE_MS: '50',
      // These tests fail echo on purpose: an open breaker would hold retries back until the
      // fail_until time passed, and the task would succeed instead of dying.
      VIGIL_BREAKER: '{"minCalls":1000}',
    },
    gatewayEnv: { VIGIL_ADMIN_KEYS: ADMIN_KEY },
  });
});
after(async () => {
  await edge?.stop();
});

const admin = (path: string, init: RequestInit = {}) =>
  edge.request(`/v1/admin${path}`, { ...init, key: ADMIN_KEY });

/** Submits an echo task without waiting; returns its id. */
async function submitEcho(input: unknown, params: Json): Promise<string> {
  const res = await edge.request('/v1/models/echo/infer', {
    method: 'POST',
    body: JSON.stringify({ input, params }),
    headers: { Prefer: 'respond-async' },
  });
  assert.equal(res.status, 202, await res.clone().text());
  return String(((await res.json()) as Json)['id']);
}

async function listLetters(query = 'limit=1000'): Promise<DeadLetterSummary[]> {
  const res = await admin(`/dead-letters?${query}`);
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { data: DeadLetterSummary[] }).data;
}

async function letterOf(taskId: string): Promise<DeadLetterSummary> {
  const letter = (await listLetters()).find((l) => l.taskId === taskId);
  assert.ok(letter, `no dead letter for task ${taskId}`);
  return letter;
}

/** Submits a task that fails until `failForMs` from now, and waits until it is dead. */
async function deadUntilLater(failForMs: number): Promise<{ id: string; failUntil: number }> {
  const failUntil = Date.now() + failForMs;
  const id = await submitEcho({ n: failUntil }, { fail_until: failUntil });
  const dead = await pollTask(edge, id);
  assert.equal(dead['state'], 'dead');
  return { id, failUntil };
}

async function waitUntil(epochMs: number): Promise<void> {
  const left = epochMs - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left + 20));
}

/** Runs the CLI with the edge's NATS settings (or `env`), returns exit code and output. */
function cli(
  args: string[],
  env: Record<string, string | undefined> = edge.adminEnv(),
): Promise<ProgramRun> {
  const set = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  return runProgram(['--import', 'tsx', 'nodes/cli/main.ts', ...args], set);
}

describe('listing and inspecting', () => {
  let failedId: string;
  let deadId: string;

  before(async () => {
    [failedId, deadId] = await Promise.all([
      submitEcho({ text: 'terminal' }, { fail: 'terminal' }),
      submitEcho({ text: 'retryable' }, { fail: 'retryable' }),
    ]);
    assert.equal((await pollTask(edge, failedId))['state'], 'failed');
    assert.equal((await pollTask(edge, deadId))['state'], 'dead');
  });

  test('a terminal failure and an exhausted task are both listed, with model, state, attempts and code', async () => {
    const failed = await letterOf(failedId);
    assert.equal(failed.model, 'echo');
    assert.equal(failed.tenant, TENANTS.alpha.tenant);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.attempts, 1);
    assert.equal(failed.error.code, 'model_rejected');
    assert.equal(failed.undecodable, false);
    assert.ok(!Number.isNaN(Date.parse(failed.time)));

    const dead = await letterOf(deadId);
    assert.equal(dead.model, 'echo');
    assert.equal(dead.state, 'dead');
    assert.equal(dead.attempts, 2, 'VIGIL_MAX_ATTEMPTS=2');
    assert.equal(dead.error.code, 'retries_exhausted');

    // Filters and pages: another model has none of them; from= starts past the first.
    assert.equal((await listLetters('model=hash-embed')).length, 0);
    const echoOnly = await listLetters('model=echo');
    assert.ok(echoOnly.every((l) => l.model === 'echo'));
    const page = await admin(`/dead-letters?limit=1&from=${Math.min(failed.seq, dead.seq)}`);
    const body = (await page.json()) as { data: DeadLetterSummary[]; next_from: number | null };
    assert.equal(body.data.length, 1);
    assert.equal(body.data[0]?.seq, Math.min(failed.seq, dead.seq));
    assert.equal(body.next_from, Math.min(failed.seq, dead.seq) + 1);
    const ordered = await listLetters();
    assert.deepEqual(
      ordered.map((l) => l.seq),
      [...ordered.map((l) => l.seq)].sort((a, b) => a - b),
      'oldest first',
    );
  });

  test('show returns the whole letter with its task envelope', async () => {
    const { seq } = await letterOf(failedId);
    const res = await admin(`/dead-letters/${seq}`);
    assert.equal(res.status, 200);
    const detail = (await res.json()) as DeadLetterDetail;
    assert.equal(detail.seq, seq);
    assert.equal(detail.subject, subjects.deadLetter(edge.region, 'echo'));
    assert.ok(detail.letter);
    assert.equal(detail.letter.task.id, failedId);
    assert.deepEqual(detail.letter.task.input, { text: 'terminal' });
    assert.deepEqual(detail.letter.task.params, { fail: 'terminal' });
    assert.ok(detail.letter.task.deadline > detail.letter.task.createdAt);
    assert.equal(detail.letter.error.retryable, false);
    assert.equal(detail.raw, undefined);
  });

  test('an unknown or malformed sequence is a 404 or a 400', async () => {
    assert.equal((await admin('/dead-letters/987654321')).status, 404);
    assert.equal((await admin('/dead-letters/987654321/replay', { method: 'POST' })).status, 404);
    const bad = await admin('/dead-letters/abc');
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: Json }).error['code'], 'invalid_request');
    assert.equal((await admin('/dead-letters?limit=1001')).status, 400);
    assert.equal((await admin('/dead-letters?model=Not.A.Model')).status, 400);
  });
});

describe('replay', () => {
  test('a task that died runs again under the same id, succeeds, and its letter is gone', async () => {
    const { id, failUntil } = await deadUntilLater(1_500);
    const { seq } = await letterOf(id);
    await waitUntil(failUntil);

    const res = await admin(`/dead-letters/${seq}/replay`, { method: 'POST' });
    assert.equal(res.status, 202, await res.clone().text());
    assert.deepEqual(await res.json(), { id, links: { self: `/v1/tasks/${id}` } });

    const done = await pollTask(edge, id);
    assert.equal(done['state'], 'succeeded', JSON.stringify(done));
    assert.deepEqual(done['result'], { echo: { n: failUntil } });
    assert.equal(done['attempts'], 1, 'the replay is a fresh run');
    assert.ok(!(await listLetters()).some((l) => l.seq === seq || l.taskId === id));
    assert.equal((await admin(`/dead-letters/${seq}`)).status, 404);
    assert.equal((await admin(`/dead-letters/${seq}/replay`, { method: 'POST' })).status, 404);
    // The owner sees it; another tenant still does not.
    const other = await edge.request(`/v1/tasks/${id}`, { key: TENANTS.beta.key });
    assert.equal(other.status, 404);
  });

  test('concurrent replays of one letter queue the task once', async () => {
    const { id, failUntil } = await deadUntilLater(1_000);
    const { seq } = await letterOf(id);
    await waitUntil(failUntil);
    const nc = await edge.connect();
    const jsm = await jetstreamManager(nc);
    const stream = assetNames.requestStream(edge.region);
    const before = (await jsm.streams.info(stream)).state.last_seq;

    const answers = await Promise.all(
      Array.from({ length: 4 }, () => admin(`/dead-letters/${seq}/replay`, { method: 'POST' })),
    );
    const statuses = answers.map((r) => r.status);
    console.log(`concurrent replays answered ${statuses.join(', ')}`);
    assert.ok(statuses.includes(202));
    assert.ok(
      statuses.every((s) => s === 202 || s === 404),
      statuses.join(),
    );
    for (const r of answers.filter((a) => a.status === 202)) {
      assert.equal(((await r.json()) as Json)['id'], id);
    }
    const queued = (await jsm.streams.info(stream)).state.last_seq - before;
    assert.equal(queued, 1, `replays published ${queued} requests`);
    assert.equal((await pollTask(edge, id))['state'], 'succeeded');
    assert.ok(!(await listLetters()).some((l) => l.taskId === id));
  });

  test('an undecodable request is listed as such and cannot be replayed', async () => {
    const nc = await edge.connect();
    const garbage = new Uint8Array([0xc1, 0xde, 0xad, 0xbe, 0xef]);
    const taskId = newTaskId();
    await jetstream(nc).publish(
      subjects.request(edge.region, 'echo', Priority.Batch, taskId),
      garbage,
    );
    let letter: DeadLetterSummary | undefined;
    for (let i = 0; i < 100 && !letter; i++) {
      letter = (await listLetters()).find((l) => l.undecodable);
      if (!letter) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(letter, 'the undecodable request was dead-lettered');
    assert.equal(letter.model, 'echo');
    // The task id comes from the subject; no owner could be read from the bytes.
    assert.equal(letter.taskId, taskId);
    assert.equal(letter.tenant, undefined);
    assert.equal(letter.error.code, 'invalid_payload');

    const detail = (await (await admin(`/dead-letters/${letter.seq}`)).json()) as DeadLetterDetail;
    assert.equal(detail.letter, undefined);
    assert.deepEqual(new Uint8Array(Buffer.from(detail.raw ?? '', 'base64')), garbage);

    const res = await admin(`/dead-letters/${letter.seq}/replay`, { method: 'POST' });
    assert.equal(res.status, 400);
    const error = ((await res.json()) as { error: Json }).error;
    assert.equal(error['code'], 'invalid_request');
    assert.match(String(error['message']), /undecodable/);
    assert.ok(
      (await listLetters()).some((l) => l.seq === letter.seq),
      'the letter is kept',
    );
  });
});

describe('keys', () => {
  test('tenant keys cannot use admin routes, and admin keys cannot use tenant routes', async () => {
    const asTenant = await edge.request('/v1/admin/dead-letters', { key: TENANTS.alpha.key });
    assert.equal(asTenant.status, 401);
    assert.equal(((await asTenant.json()) as { error: Json }).error['code'], 'unauthenticated');
    const anonymous = await edge.request('/v1/admin/dead-letters', { key: '' });
    assert.equal(anonymous.status, 401);
    const replayAsTenant = await edge.request('/v1/admin/dead-letters/1/replay', {
      method: 'POST',
      key: TENANTS.alpha.key,
    });
    assert.equal(replayAsTenant.status, 401);

    const submitAsAdmin = await edge.request('/v1/models/echo/infer', {
      method: 'POST',
      body: JSON.stringify({ input: 'x' }),
      key: ADMIN_KEY,
    });
    assert.equal(submitAsAdmin.status, 401);
    const readAsAdmin = await edge.request(`/v1/tasks/${newTaskId()}`, { key: ADMIN_KEY });
    assert.equal(readAsAdmin.status, 401);
    assert.equal((await edge.request('/v1/models', { key: ADMIN_KEY })).status, 401);
  });

  test('without admin keys the admin routes do not exist', async () => {
    const bare = await startTestEdge({ region: 'bare', actorHost: false });
    try {
      for (const key of [ADMIN_KEY, TENANTS.alpha.key, '']) {
        const res = await bare.request('/v1/admin/dead-letters', { key });
        assert.equal(res.status, 404, `key '${key.slice(0, 5)}'`);
      }
      // Tenant routes are unaffected.
      assert.equal((await bare.request('/v1/models')).status, 200);
    } finally {
      await bare.stop();
    }
  });
});

describe('CLI', () => {
  test('lists the same letters as the admin API, shows one, and refuses bad usage', async () => {
    const fromApi = await listLetters();
    assert.ok(fromApi.length >= 3);
    const decodable = fromApi.find((l) => !l.undecodable);
    assert.ok(decodable);
    const [json, table, show, badFlag, badSeq, missing, undecodableReplay, help] =
      await Promise.all([
        cli(['dlq', 'list', '--json', '--limit', '1000']),
        cli(['dlq', 'list']),
        cli(['dlq', 'show', String(decodable.seq), '--json']),
        cli(['dlq', 'list', '--bogus']),
        cli(['dlq', 'show', 'abc']),
        cli(['dlq', 'show', '987654321']),
        cli(['dlq', 'replay', String(fromApi.find((l) => l.undecodable)?.seq ?? 0)]),
        cli(['help']),
      ]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), fromApi);

    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^SEQ\s+TIME\s+MODEL\s+STATE\s+ATTEMPTS\s+TASK\s+TENANT\s+ERROR/);
    assert.ok(table.stdout.includes(String(decodable.taskId)));

    assert.equal(show.code, 0, show.stderr);
    const detail = JSON.parse(show.stdout) as DeadLetterDetail;
    assert.equal(detail.letter?.task.id, decodable.taskId);

    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /Usage: npx vigil/);
    assert.equal(badSeq.code, 2);
    assert.match(badSeq.stderr, /<seq> must be an integer/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /dead letter 987654321 does not exist/);
    assert.equal(undecodableReplay.code, 1);
    assert.match(undecodableReplay.stderr, /cannot be replayed/);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /dlq replay <seq>/);
  });

  test('says clearly when no edge is running', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vigil-cli-'));
    try {
      const result = await cli(['dlq', 'list'], { VIGIL_STATE_DIR: stateDir });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /no running edge found/);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
