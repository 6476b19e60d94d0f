/**
 * Runs hostile HTTP cases against a real gateway, judges every answer, and afterwards checks that
 * every task a request created reached a final state its owner can see.
 */
import { TENANTS } from '../../harness/edge.js';
import type { HttpCase, KeyChoice } from './http-cases.js';
import { judge, type Answer, type Judgement } from './http-judge.js';
import { rawRequest } from './raw-http.js';
import type { Tally } from './tally.js';

/** Answers slower than this are counted apart, ms. */
const SLOW_MS = 5000;

/** How long a raw request may wait for its answer once sent, ms. */
export const RAW_PATIENCE_MS = 5000;

const KEYS: Record<KeyChoice, string | undefined> = {
  alpha: TENANTS.alpha.key,
  beta: TENANTS.beta.key,
  wrong: 'wrong-key-000000000000000000',
  none: undefined,
};

/** A task an accepted request created, with the key of its owner. */
export interface CreatedTask {
  id: string;
  key: string;
  input: string;
}

/** The raw bytes of a case (as sent over a socket). */
export function rawBytes(baseUrl: string, c: HttpCase): Buffer {
  const body =
    c.body === undefined ? Buffer.alloc(0) : Buffer.from(c.body, c.binary ? 'latin1' : 'utf8');
  const key = KEYS[c.key];
  const lines = [`${c.method} ${c.path} HTTP/1.1`, `Host: ${new URL(baseUrl).host}`];
  if (key) lines.push(`Authorization: Bearer ${key}`);
  for (const [name, value] of c.headers) lines.push(`${name}: ${value}`);
  if (!c.ownFraming && (body.length > 0 || c.method === 'POST'))
    lines.push(`Content-Length: ${body.length}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body]);
}

/** Sends one case and reads its answer. */
export async function sendCase(baseUrl: string, c: HttpCase): Promise<Answer> {
  if (c.transport === 'raw') {
    return rawRequest(baseUrl, rawBytes(baseUrl, c), {
      patienceMs: RAW_PATIENCE_MS,
      head: c.method === 'HEAD',
    });
  }
  const headers = new Headers();
  const key = KEYS[c.key];
  if (key) headers.set('Authorization', `Bearer ${key}`);
  for (const [name, value] of c.headers) headers.append(name, value);
  const started = Date.now();
  try {
    const res = await fetch(baseUrl + c.path, {
      method: c.method,
      headers,
      ...(c.body === undefined ? {} : { body: c.body }),
      signal: AbortSignal.timeout(60_000),
    });
    const body = await res.text();
    return {
      status: res.status,
      headers: Object.fromEntries(res.headers),
      body,
      closed: false,
      ms: Date.now() - started,
    };
  } catch (err) {
    return { headers: {}, body: String(err), closed: true, ms: Date.now() - started };
  }
}

/** A printable description of a case, for a violation's `input`. */
export function describeCase(baseUrl: string, c: HttpCase): string {
  return c.transport === 'raw'
    ? rawBytes(baseUrl, c).toString('latin1')
    : `${c.method} ${c.path} headers=${JSON.stringify(c.headers)} key=${c.key} body=${c.body ?? ''}`;
}

/** Runs `cases` (`concurrency` at a time), counting outcomes at `boundary` and recording tasks. */
export async function runHttpCases(
  baseUrl: string,
  cases: readonly HttpCase[],
  tally: Tally,
  boundary: string,
  concurrency = 12,
): Promise<CreatedTask[]> {
  const tasks: CreatedTask[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < cases.length; i = next++) {
      const c = cases[i]!;
      const answer = await sendCase(baseUrl, c);
      const judgement: Judgement = judge(
        { method: c.method.toUpperCase(), route: c.route, echoInput: c.echoInput },
        answer,
      );
      const outcome = `${c.category}: ${judgement.outcome}`;
      // Not a violation in itself, but worth seeing: what keeps a hostile request waiting.
      if (answer.ms > SLOW_MS)
        tally.count(
          boundary,
          `${c.category}: answered after more than ${SLOW_MS / 1000} s`,
          describeCase(baseUrl, c),
        );
      if (judgement.problem)
        tally.violate(boundary, outcome, judgement.problem, describeCase(baseUrl, c));
      else tally.count(boundary, outcome, describeCase(baseUrl, c));
      const key = KEYS[c.key];
      if (judgement.taskId && key)
        tasks.push({ id: judgement.taskId, key, input: describeCase(baseUrl, c) });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return tasks;
}

/**
 * Checks that every created task is final and visible to its owner (`GET /v1/tasks/{id}` with the
 * owner's key), waiting up to `timeoutMs` in all; counts `final and visible` or a violation.
 */
export async function checkTasksFinal(
  baseUrl: string,
  tasks: readonly CreatedTask[],
  tally: Tally,
  boundary: string,
  timeoutMs = 60_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < tasks.length; i = next++) {
      const task = tasks[i]!;
      let last = '';
      for (;;) {
        const res = await fetch(`${baseUrl}/v1/tasks/${task.id}`, {
          headers: { Authorization: `Bearer ${task.key}`, Prefer: 'wait=2' },
        }).catch((err: unknown) => err as Error);
        if (!(res instanceof Error)) {
          const text = await res.text();
          last = `${res.status} ${text.slice(0, 300)}`;
          const state =
            res.status === 200 ? (JSON.parse(text) as { state?: string }).state : undefined;
          if (state && ['succeeded', 'failed', 'dead', 'cancelled'].includes(state)) {
            tally.count(boundary, `accepted task: final (${state})`);
            break;
          }
          if (res.status === 404) {
            tally.violate(
              boundary,
              'accepted task: vanished (404)',
              `task ${task.id} was accepted, then its owner gets 404`,
              task.input,
            );
            break;
          }
          if (res.status >= 400 && res.status < 500 && res.status !== 429) {
            tally.violate(
              boundary,
              `accepted task: unreadable (GET answers ${res.status})`,
              `task ${task.id} was accepted, then its owner cannot read it: ${last}`,
              task.input,
            );
            break;
          }
        } else last = res.message;
        if (Date.now() > until) {
          tally.violate(
            boundary,
            'accepted task: not final in time',
            `task ${task.id}: ${last}`,
            task.input,
          );
          break;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}
