/**
 * Runs hostile NATS messages against a real edge and judges where each one ended:
 *
 * - a request the stream accepted must end as a final task record (with its reason) when its
 *   tenant can be told, visible to that tenant and to no other; else as a dead letter that says
 *   why. Nothing accepted may stay queued or vanish;
 * - junk on a reply subject must not change what a waiting caller is answered: every answer must
 *   be the task's stored outcome;
 * - every command gets a typed answer (`hostCommandReplySchema`);
 * - and through all of it the actor host keeps working.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  assetNames,
  decode,
  encode,
  hostCommandReplySchema,
  newTaskId,
  subjects,
  taskRecordSchema,
  type TaskRecord,
} from '../../../protocol/index.js';
import { TENANTS, type TestEdge } from '../../harness/edge.js';
import {
  isTaskId,
  recoverableTenant,
  type CommandCase,
  type EventCase,
  type NatsCase,
  type ReplyCase,
  type RequestCase,
} from './nats-cases.js';
import type { Tally } from './tally.js';

const KEYS: Record<string, string> = { alpha: TENANTS.alpha.key, beta: TENANTS.beta.key };
const FINAL = new Set(['succeeded', 'failed', 'dead']);

/** The connections a run publishes through, each as the user allowed to publish there. */
interface Publishers {
  admin: NatsConnection;
  gateway: NatsConnection;
  service: NatsConnection;
  actorHost: NatsConnection;
  controller: NatsConnection;
}

async function publishers(edge: TestEdge): Promise<Publishers> {
  return {
    admin: await edge.connect(),
    gateway: await edge.connectAs('gateway'),
    service: await edge.connectAs('service'),
    actorHost: await edge.connectAs(`actor-host-${edge.region}`),
    controller: await edge.connectAs('controller'),
  };
}

/** Runs `items` through `work`, `concurrency` at a time. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < items.length; i = next++) await work(items[i]!, i);
    }),
  );
}

/** The family of a request's damage, for the outcome table: the byte damage, else the field's. */
function family(c: RequestCase): string {
  const parts = c.mutation.split(', ');
  return parts[1] ?? parts[0]!;
}

/** Runs every case at `boundary`; the counts and violations go to `tally`. */
export async function runNatsCases(
  edge: TestEdge,
  cases: readonly NatsCase[],
  tally: Tally,
  boundary: string,
): Promise<void> {
  const p = await publishers(edge);
  const requests = cases.filter((c): c is RequestCase => c.kind === 'request');
  const replies = cases.filter((c): c is ReplyCase => c.kind === 'reply');
  const commands = cases.filter((c): c is CommandCase => c.kind === 'command');
  const events = cases.filter((c): c is EventCase => c.kind === 'event');
  await Promise.all([
    runRequests(edge, p, requests, tally, boundary),
    runReplies(edge, p, replies, tally, boundary),
    runCommands(edge, p, commands, tally, boundary),
  ]);
  for (const c of events) {
    p.actorHost.publish(
      `vigil.evt.${edge.region}.${c.tenant}.${'a'.repeat(26)}`,
      Buffer.from(c.payloadHex, 'hex'),
    );
    tally.count(boundary, 'event: published (no node may act on it)');
  }
  await p.actorHost.flush();
}

/** Publishes the requests, waits until the actor has taken them all, and judges each end. */
async function runRequests(
  edge: TestEdge,
  p: Publishers,
  cases: readonly RequestCase[],
  tally: Tally,
  boundary: string,
): Promise<void> {
  const acks = new Map<RequestCase, number>();
  await pool(cases, 16, async (c) => {
    const js = jetstream(c.user === 'gateway' ? p.gateway : p.service);
    const subject = subjects.request(
      edge.region,
      'echo',
      c.priority === 'batch' ? 'batch' : 'interactive',
      c.subjectId,
    );
    try {
      const ack = await js.publish(subject, Buffer.from(c.payloadHex, 'hex'), { timeout: 10_000 });
      acks.set(c, ack.seq);
    } catch (err) {
      tally.count(
        boundary,
        `request ${family(c)}: refused at publish (${(err as Error).name})`,
        JSON.stringify(c),
      );
    }
  });
  const jsm = await jetstreamManager(p.admin);
  await untilConsumed(jsm, edge.region);
  const tasks = await new Kvm(p.admin).open(assetNames.taskBucket(edge.region));
  const letters = await deadLetters(jsm, edge.region);
  await pool([...acks], 8, async ([c, seq]) =>
    judgeRequest(edge, jsm, tasks, letters, c, seq, tally, boundary),
  );
}

/** Waits until the echo actor has nothing pending or unacknowledged (or 90 s pass). */
export async function untilConsumed(jsm: JetStreamManager, region: string): Promise<void> {
  const until = Date.now() + 90_000;
  for (;;) {
    const info = await jsm.consumers.info(
      assetNames.requestStream(region),
      assetNames.modelConsumer('echo'),
    );
    if (info.num_pending === 0 && info.num_ack_pending === 0) return;
    if (Date.now() > until) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Letter {
  msgId: string;
  reason: string;
  taskId?: string;
  dataHex: string;
}

/** Every letter in the region's dead-letter stream, with the reason it gives. */
export async function deadLetters(jsm: JetStreamManager, region: string): Promise<Letter[]> {
  const stream = assetNames.deadLetterStream(region);
  const { state } = await jsm.streams.info(stream);
  const out: Letter[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m) continue;
    let reason = m.header?.get('Vigil-Error') ?? '';
    let taskId: string | undefined;
    try {
      const letter = decode(m.data) as { task?: { id?: string }; error?: { message?: string } };
      reason ||= letter.error?.message ?? '';
      taskId = letter.task?.id;
    } catch {
      // a raw poison message: the reason is in the header
    }
    out.push({
      msgId: m.header?.get('Nats-Msg-Id') ?? '',
      reason,
      ...(taskId ? { taskId } : {}),
      dataHex: Buffer.from(m.data).toString('hex'),
    });
  }
  return out;
}

/** Where an accepted request ended: its task record, a dead letter, still queued, or nowhere. */
export type RequestEnd =
  | { end: 'record'; record: TaskRecord }
  | { end: 'unreadable record' }
  | { end: 'letter'; letter: Letter }
  | { end: 'queued' }
  | { end: 'nowhere' };

/** Finds where the request with task id `subjectId` (stream sequence `seq`) ended. */
export async function whereItEnded(
  jsm: JetStreamManager,
  region: string,
  tasks: KV,
  letters: readonly Letter[],
  subjectId: string,
  seq: number,
  payloadHex: string,
): Promise<RequestEnd> {
  const entry = isTaskId(subjectId) ? await tasks.get(subjectId) : null;
  if (entry && entry.operation === 'PUT') {
    const parsed = taskRecordSchema.safeParse(safeDecode(entry.value));
    return parsed.success ? { end: 'record', record: parsed.data } : { end: 'unreadable record' };
  }
  const letter = letters.find(
    (l) => l.msgId.endsWith(`-${seq}`) || l.dataHex === payloadHex || l.taskId === subjectId,
  );
  if (letter) return { end: 'letter', letter };
  const queued = await jsm.streams
    .getMessage(assetNames.requestStream(region), { seq })
    .catch(() => null);
  return queued ? { end: 'queued' } : { end: 'nowhere' };
}

function safeDecode(bytes: Uint8Array): unknown {
  try {
    return decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Judges one accepted request: a final record (with its reason, under the tenant that sent it,
 * visible to it alone) wherever the tenant can be told; else a dead letter that says why.
 */
async function judgeRequest(
  edge: TestEdge,
  jsm: JetStreamManager,
  tasks: KV,
  letters: readonly Letter[],
  c: RequestCase,
  seq: number,
  tally: Tally,
  boundary: string,
): Promise<void> {
  const name = `request ${family(c)}`;
  const input = JSON.stringify({ ...c, streamSeq: seq });
  const owner = recoverableTenant(Buffer.from(c.payloadHex, 'hex'));
  const where = await whereItEnded(
    jsm,
    edge.region,
    tasks,
    letters,
    c.subjectId,
    seq,
    c.payloadHex,
  );
  if (where.end === 'record') {
    const { record } = where;
    if (!FINAL.has(record.state)) {
      return tally.violate(
        boundary,
        `${name}: not final`,
        `record in state ${record.state}`,
        input,
      );
    }
    if (owner !== undefined && record.tenant !== owner) {
      return tally.violate(
        boundary,
        `${name}: record under another tenant`,
        `record says tenant ${record.tenant}, the request ${owner}`,
        input,
      );
    }
    if (record.state !== 'succeeded' && !record.error?.message) {
      return tally.violate(
        boundary,
        `${name}: ${record.state} without a reason`,
        'a failed record must say why',
        input,
      );
    }
    if (
      contradictsSubject(c) &&
      !(record.state === 'failed' && record.error?.code === 'invalid_payload')
    ) {
      return tally.violate(
        boundary,
        `${name}: run though it contradicts its subject`,
        `record ${record.state} (${record.error?.code ?? 'no error'}); expected failed, invalid_payload`,
        input,
      );
    }
    // Every generated request goes to the echo model's subject: echo is what ran it.
    if (record.state === 'succeeded' && record.model !== 'echo') {
      return tally.violate(
        boundary,
        `${name}: record names a model that did not run`,
        `record says ${record.model}; the echo actor ran it`,
        input,
      );
    }
    const seen = await visibility(edge, c.subjectId, record.tenant);
    if (seen) return tally.violate(boundary, `${name}: visibility`, seen, input);
    return tally.count(boundary, `${name}: final record (${record.state})`, input);
  }
  if (owner !== undefined) {
    return tally.violate(
      boundary,
      `${name}: no final record though its owner is known`,
      `tenant ${owner} and task ${c.subjectId} can be told, but it ended as: ${where.end}`,
      input,
    );
  }
  if (where.end !== 'letter')
    return tally.violate(
      boundary,
      `${name}: ${where.end}`,
      `accepted, then ${where.end}: no record and no dead letter`,
      input,
    );
  if (!where.letter.reason)
    return tally.violate(
      boundary,
      `${name}: dead letter without a reason`,
      'the letter does not say why',
      input,
    );
  return tally.count(boundary, `${name}: dead-lettered, owner unknown`, input);
}

/**
 * True for an undamaged request whose envelope names another task or model than its subject
 * (always the echo model's): an actor must refuse it, not run it.
 */
function contradictsSubject(c: RequestCase): boolean {
  if (c.mutation !== 'id mismatch' && c.mutation !== 'model mismatch') return false;
  const envelope = safeDecode(Buffer.from(c.payloadHex, 'hex')) as {
    id?: unknown;
    model?: unknown;
  };
  return envelope.id !== c.subjectId || envelope.model !== 'echo';
}

/** A problem with who can see task `id` of `tenant` over HTTP, if there is one. */
export async function visibility(
  edge: TestEdge,
  id: string,
  tenant: string,
): Promise<string | undefined> {
  for (const [name, key] of Object.entries(KEYS)) {
    const res = await edge.request(`/v1/tasks/${id}`, { key });
    await res.arrayBuffer();
    const want = name === tenant ? 200 : 404;
    if (res.status !== want)
      return `GET /v1/tasks/${id} as ${name}: ${res.status}, expected ${want} (owner ${tenant})`;
  }
  return undefined;
}

/**
 * Sends junk to the reply subjects of callers waiting right now (sync echo calls held 400 ms
 * by the echo model), then checks that each caller was answered with its task's stored outcome.
 */
async function runReplies(
  edge: TestEdge,
  p: Publishers,
  cases: readonly ReplyCase[],
  tally: Tally,
  boundary: string,
): Promise<void> {
  if (cases.length === 0) return;
  const live: { id: string; replyTo: string }[] = [];
  const watch = p.admin.subscribe(`vigil.req.${edge.region}.echo.>`, {
    callback: (_err, msg) => {
      try {
        const e = decode(msg.data) as { id?: string; replyTo?: string; input?: unknown };
        if (e.replyTo && e.id && typeof e.input === 'string' && e.input.startsWith('waiter-'))
          live.push({ id: e.id, replyTo: e.replyTo });
      } catch {
        // hostile requests of the other cases pass here too
      }
    },
  });
  let sending = true;
  const answers: { id?: string; status: number; body: string }[] = [];
  const waiter = async (w: number) => {
    for (let n = 0; sending; n++) {
      const res = await edge.request('/v1/models/echo/infer', {
        method: 'POST',
        body: JSON.stringify({ input: `waiter-${w}-${n}`, params: { delay_ms: 400 } }),
      });
      const body = await res.text();
      answers.push({ status: res.status, body, id: (JSON.parse(body) as { id?: string }).id });
    }
  };
  const waiters = Array.from({ length: 6 }, (_, w) => waiter(w));
  for (const [i, c] of cases.entries()) {
    while (live.length === 0) await new Promise((r) => setTimeout(r, 20));
    const recent = live.slice(-6);
    const target = recent[c.target % recent.length]!;
    // Another task's id must not be the target's own: that record would be the trusted actor
    // host's forgery which the generator leaves out (see nats-cases.ts, and the trust test).
    const others = live.filter((w) => w.id !== target.id);
    const otherId = others[(c.target * 7) % Math.max(1, others.length)]?.id ?? newTaskId();
    const payload =
      c.payloadHex !== undefined
        ? Buffer.from(c.payloadHex, 'hex')
        : forgedRecord(c, target.id, otherId, i);
    p.actorHost.publish(target.replyTo, payload);
    tally.count(
      boundary,
      `reply ${c.mutation.replace(/\(.*\)/, '(...)')}: sent to a live waiter`,
      JSON.stringify(c),
    );
    // About one junk reply per waiter's wait (6 waiters, 400 ms each): most waiters see some.
    await new Promise((r) => setTimeout(r, 20));
  }
  sending = false;
  await Promise.all(waiters);
  watch.unsubscribe();
  await judgeAnswers(edge, answers, cases, tally, boundary);
}

/** A task record built to look like a reply, with `FORGED-<case>` as its result. */
function forgedRecord(c: ReplyCase, targetId: string, otherId: string, i: number): Uint8Array {
  const r = c.record!;
  const now = Date.now();
  return encode({
    v: r.v,
    id: r.idFrom === 'target' ? targetId : otherId,
    tenant: r.tenant,
    model: 'echo',
    version: 'v1',
    state: r.state,
    attempt: 1,
    createdAt: now,
    finishedAt: now,
    result: { echo: `FORGED-${i}` },
  });
}

/** Every waiter's answer must be its stored outcome. */
async function judgeAnswers(
  edge: TestEdge,
  answers: readonly { id?: string; status: number; body: string }[],
  cases: readonly ReplyCase[],
  tally: Tally,
  boundary: string,
): Promise<void> {
  await pool(answers, 8, async (a) => {
    const forged = /FORGED-(\d+)/.exec(a.body);
    const input = forged ? JSON.stringify(cases[Number(forged[1])]) : a.body.slice(0, 300);
    if (a.status !== 200 || !a.id) {
      return tally.violate(
        boundary,
        `waiter: answered ${a.status}`,
        `answered ${a.status}: ${a.body.slice(0, 200)}`,
        input,
      );
    }
    const stored = await edge.request(`/v1/tasks/${a.id}`);
    const truth = (await stored.json()) as { state?: string; result?: unknown };
    const answered = JSON.parse(a.body) as { state?: string; result?: unknown; id?: string };
    if (
      answered.state !== truth.state ||
      JSON.stringify(answered.result) !== JSON.stringify(truth.result)
    ) {
      return tally.violate(
        boundary,
        'waiter: mis-answered',
        `answered ${JSON.stringify(answered.result)} (${String(answered.state)}), stored ${JSON.stringify(truth.result)} (${String(truth.state)})`,
        input,
      );
    }
    tally.count(boundary, 'waiter: answered with its stored outcome');
  });
}

/** Sends each command as the controller; every one must get a typed answer. */
async function runCommands(
  edge: TestEdge,
  p: Publishers,
  cases: readonly CommandCase[],
  tally: Tally,
  boundary: string,
): Promise<void> {
  const host = String(edge.actorHosts[0]!.ready['host']);
  await pool(cases, 4, async (c) => {
    const subject = subjects.hostCommand(
      edge.region,
      c.host === 'real' ? host : 'no-such-host',
      c.command,
    );
    const input = JSON.stringify(c);
    try {
      const msg = await p.controller.request(subject, Buffer.from(c.body, 'latin1'), {
        timeout: 3000,
      });
      const reply = hostCommandReplySchema.safeParse(JSON.parse(msg.string()));
      if (!reply.success)
        return tally.violate(boundary, 'command: untyped answer', `answer ${msg.string()}`, input);
      if (reply.data.ok)
        return tally.violate(
          boundary,
          'command: junk carried out',
          `answer ${msg.string()}`,
          input,
        );
      return tally.count(
        boundary,
        `command: refused (${reply.data.error.replace(/'.*'/, "'...'")})`,
        input,
      );
    } catch (err) {
      const name = (err as Error).name;
      if (c.host === 'other' && /no ?responders/i.test(`${name} ${(err as Error).message}`)) {
        return tally.count(boundary, 'command: no such host (no responders)', input);
      }
      return tally.violate(boundary, `command: no answer (${name})`, (err as Error).message, input);
    }
  });
}
