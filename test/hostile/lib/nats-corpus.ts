/**
 * The curated NATS corpus (`corpus/nats.json`): requests published straight onto the request
 * stream, each with where it must end. A payload is an envelope (JSON here, msgpack on the wire;
 * `{id}`, `{otherId}`, `{now}`, `{later}`, `{past}`, `{pad:N}` filled in), optionally damaged
 * (`bytes.truncate`, `bytes.append`), or raw `hex`, or `text`.
 *
 * Expectations: `record:<states>` (a final record in one of them, with its reason, visible to
 * its tenant only), `letter` (a dead letter that says why), `refused` (the publish fails), or
 * `ends` (any of those: not queued for ever, not vanished); `reason`, a pattern the record's
 * error or the letter's reason must match; `noRecordUnder`, a task that must stay unwritten.
 */
import { readFileSync } from 'node:fs';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { assetNames, encode, newTaskId, TASK_ID } from '../../../protocol/index.js';
import type { TestEdge } from '../../harness/edge.js';
import {
  deadLetters,
  untilConsumed,
  visibility,
  whereItEnded,
  type RequestEnd,
} from './nats-run.js';

/** One corpus case. */
export interface NatsCorpusCase {
  name: string;
  user: 'gateway' | 'service';
  subject: string;
  envelope?: Record<string, unknown>;
  hex?: string;
  text?: string;
  /** Replace the envelope's input with an array nested this deep. */
  deep?: number;
  bytes?: { truncate?: number; append?: string };
  expect: string;
  /** A succeeded record must name this model: the one that ran. */
  ranAs?: string;
  /** A pattern the record's error message (or the letter's reason) must match. */
  reason?: string;
  /** A variable (`otherId`) naming a task that must have no record afterwards. */
  noRecordUnder?: string;
  /** How long to wait for it to end when no echo actor takes it, ms. */
  waitMs?: number;
  known?: string;
}

/** The cases in the corpus file. */
export function loadNatsCorpus(): NatsCorpusCase[] {
  return JSON.parse(
    readFileSync(new URL('../corpus/nats.json', import.meta.url), 'utf8'),
  ) as NatsCorpusCase[];
}

function fill(value: unknown, vars: Record<string, string | number>): unknown {
  if (typeof value === 'string') {
    const whole = /^\{(\w+)\}$/.exec(value);
    if (whole && whole[1]! in vars) return vars[whole[1]!];
    return value
      .replace(/\{pad:(\d+)\}/g, (_, n: string) => 'p'.repeat(Number(n)))
      .replace(/\{(\w+)\}/g, (m, k: string) => String(vars[k] ?? m));
  }
  if (Array.isArray(value)) return value.map((v) => fill(v, vars));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, vars)]));
  }
  return value;
}

/** The payload and subject of a case. */
export function corpusMessage(
  c: NatsCorpusCase,
  region: string,
): { subject: string; payload: Uint8Array; id: string; vars: Record<string, string | number> } {
  const now = Date.now();
  const id = newTaskId();
  const vars = { id, otherId: newTaskId(), now, later: now + 60_000, past: now - 1000, region };
  let payload: Uint8Array;
  if (c.hex !== undefined) payload = Buffer.from(c.hex, 'hex');
  else if (c.text !== undefined) payload = Buffer.from(c.text);
  else {
    const envelope = fill(c.envelope, vars) as Record<string, unknown>;
    if (c.deep !== undefined) {
      let input: unknown = 1;
      for (let i = 0; i < c.deep; i++) input = [input];
      envelope['input'] = input;
    }
    payload = encode(envelope);
  }
  if (c.bytes?.truncate !== undefined)
    payload = payload.subarray(
      0,
      c.bytes.truncate < 0 ? payload.length + c.bytes.truncate : c.bytes.truncate,
    );
  if (c.bytes?.append !== undefined)
    payload = Buffer.concat([payload, Buffer.from(c.bytes.append, 'hex')]);
  return { subject: String(fill(c.subject, vars)), payload, id, vars };
}

/** Publishes one case and says what is wrong with where it ended (empty: it passed). */
export async function runNatsCorpusCase(
  edge: TestEdge,
  nc: NatsConnection,
  admin: NatsConnection,
  c: NatsCorpusCase,
): Promise<{ end: string; problems: string[] }> {
  const { subject, payload, id, vars } = corpusMessage(c, edge.region);
  let seq: number;
  try {
    seq = (await jetstream(nc).publish(subject, payload, { timeout: 10_000 })).seq;
  } catch (err) {
    const end = `refused at publish: ${(err as Error).message}`;
    return {
      end,
      problems:
        c.expect === 'refused' || c.expect === 'ends' ? [] : [`${end}; expected ${c.expect}`],
    };
  }
  if (c.expect === 'refused')
    return {
      end: 'stored',
      problems: ['the stream stored it; expected the publish to be refused'],
    };
  const jsm = await jetstreamManager(admin);
  await untilConsumed(jsm, edge.region);
  if (c.waitMs) await new Promise((r) => setTimeout(r, c.waitMs));
  const tasks = await new Kvm(admin).open(assetNames.taskBucket(edge.region));
  const letters = await deadLetters(jsm, edge.region);
  const last = subject.split('.').at(-1)!;
  const lookup = TASK_ID.test(last) ? last : id;
  const where = await whereItEnded(
    jsm,
    edge.region,
    tasks,
    letters,
    lookup,
    seq,
    Buffer.from(payload).toString('hex'),
  );
  const problems = await check(edge, c, where, lookup);
  // Ended means out of the queue too: nothing ended may count against its bound.
  if (where.end === 'record' || where.end === 'letter') {
    const held = await jsm.streams
      .getMessage(assetNames.requestStream(edge.region), { seq })
      .catch(() => null);
    if (held) problems.push(`ended as a ${where.end}, but still held in the request stream`);
  }
  if (c.noRecordUnder !== undefined) {
    const other = String(vars[c.noRecordUnder]);
    const entry = await tasks.get(other);
    if (entry?.operation === 'PUT')
      problems.push(`task ${other} got a record; it was never accepted`);
  }
  return { end: describe(where), problems };
}

function describe(where: RequestEnd): string {
  if (where.end === 'record')
    return `record ${where.record.state} (${where.record.error?.message ?? 'no error'})`;
  if (where.end === 'letter') return `dead letter (${where.letter.reason})`;
  return where.end;
}

async function check(
  edge: TestEdge,
  c: NatsCorpusCase,
  where: RequestEnd,
  id: string,
): Promise<string[]> {
  const [kind, states] = c.expect.split(':');
  if (where.end === 'record') {
    const { record } = where;
    const problems: string[] = [];
    if (kind === 'letter') problems.push('expected a dead letter (owner unknown), found a record');
    if (states && !states.split('|').includes(record.state))
      problems.push(`record state ${record.state}, expected ${states}`);
    if (!['succeeded', 'failed', 'dead'].includes(record.state))
      problems.push(`record not final: ${record.state}`);
    if (record.state !== 'succeeded' && !record.error?.message)
      problems.push('a failed record must say why');
    if (c.ranAs && record.state === 'succeeded' && record.model !== c.ranAs)
      problems.push(`record says model ${record.model}, but ${c.ranAs} ran it`);
    if (c.reason && !new RegExp(c.reason).test(record.error?.message ?? ''))
      problems.push(`the record's reason does not match /${c.reason}/`);
    const seen = await visibility(edge, id, record.tenant);
    if (seen) problems.push(seen);
    return problems;
  }
  if (where.end === 'letter') {
    if (kind === 'record')
      return [`expected a final record, found only a dead letter (${where.letter.reason})`];
    if (!where.letter.reason) return ['the dead letter does not say why'];
    if (c.reason && !new RegExp(c.reason).test(where.letter.reason))
      return [`the dead letter's reason does not match /${c.reason}/`];
    return [];
  }
  return [`accepted, then ${where.end}: expected ${c.expect}`];
}
