/**
 * The curated HTTP corpus (`corpus/http.json`): raw requests, each with the class of answer it
 * must get. Placeholders keep the file readable: `{{host}}`, `{{alpha}}`/`{{beta}}` (the tenants'
 * keys), `{{length}}` (the body's byte count), `{{deep:N}}` (an array nested N deep),
 * `{{pad:N}}` (N letters). Characters up to U+00FF are sent as single bytes (latin1), so a file
 * written in JSON can still carry raw non-ASCII bytes.
 */
import { readFileSync } from 'node:fs';
import { TENANTS } from '../../harness/edge.js';
import { judge, type Answer } from './http-judge.js';
import { rawRequest } from './raw-http.js';

/** What a corpus case's answer must be, beyond the pass criteria every answer meets. */
export interface HttpExpectation {
  /** Allowed statuses, or any 4xx. */
  status: number[] | '4xx';
  /** The error code it must carry. */
  code?: string;
  /** A regular expression the error message must match (the limit it names). */
  message?: string;
  /** No task may come of it (the request was refused before acceptance). */
  noTask?: boolean;
  /** A 200 must echo the body's `input` unchanged. */
  echo?: boolean;
  /** It must be answered within this many ms of sending. */
  withinMs?: number;
  /** The server must close the connection after answering. */
  closes?: boolean;
}

/** One corpus case. */
export interface HttpCorpusCase {
  name: string;
  raw: string;
  expect: HttpExpectation;
  /** How long to wait for the answer, ms (default 5000). */
  patienceMs?: number;
  /** The defect that makes it fail today, if known: issue 10's, or one the suite found. */
  known?: string;
}

/** The cases in the corpus file. */
export function loadHttpCorpus(): HttpCorpusCase[] {
  const path = new URL('../corpus/http.json', import.meta.url);
  return JSON.parse(readFileSync(path, 'utf8')) as HttpCorpusCase[];
}

/** The case's bytes, placeholders filled in. */
export function corpusBytes(c: HttpCorpusCase, baseUrl: string): Buffer {
  let text = c.raw
    .replaceAll('{{host}}', new URL(baseUrl).host)
    .replaceAll('{{alpha}}', TENANTS.alpha.key)
    .replaceAll('{{beta}}', TENANTS.beta.key)
    .replace(/\{\{deep:(\d+)\}\}/g, (_, n: string) => '['.repeat(Number(n)) + ']'.repeat(Number(n)))
    .replace(/\{\{pad:(\d+)\}\}/g, (_, n: string) => 'a'.repeat(Number(n)));
  const bodyAt = text.indexOf('\r\n\r\n');
  if (text.includes('{{length}}') && bodyAt >= 0) {
    const length = Buffer.byteLength(text.slice(bodyAt + 4), 'latin1');
    text = text.replace('{{length}}', String(length));
  }
  return Buffer.from(text, 'latin1');
}

/** The body's `input`, for echo checks. */
function inputOf(bytes: Buffer): unknown {
  const at = bytes.indexOf('\r\n\r\n');
  try {
    return (JSON.parse(bytes.subarray(at + 4).toString('utf8')) as { input?: unknown }).input;
  } catch {
    return undefined;
  }
}

/** Sends one corpus case; the problems with its answer (empty when it passed). */
export async function runCorpusCase(
  c: HttpCorpusCase,
  baseUrl: string,
): Promise<{ answer: Answer; outcome: string; problems: string[]; taskId?: string }> {
  const bytes = corpusBytes(c, baseUrl);
  const method = bytes.subarray(0, bytes.indexOf(' ')).toString('latin1');
  const answer = await rawRequest(baseUrl, bytes, {
    patienceMs: c.patienceMs ?? 5000,
    head: method === 'HEAD',
  });
  const route = routeOf(bytes.subarray(0, 200).toString('latin1'));
  const e = c.expect;
  const echoInput = e.echo ? inputOf(bytes) : undefined;
  const judgement = judge(
    { method, route, ...(echoInput === undefined ? {} : { echoInput }) },
    answer,
  );
  const problems = judgement.problem ? [judgement.problem] : [];
  const status = answer.status;
  const statusOk =
    status !== undefined &&
    (e.status === '4xx' ? status >= 400 && status < 500 : e.status.includes(status));
  if (!statusOk) problems.push(`status ${status ?? 'none'}, expected ${String(e.status)}`);
  const body = safeJson(answer.body) as
    { error?: { code?: string; message?: string }; task?: unknown } | undefined;
  if (e.code !== undefined && body?.error?.code !== e.code)
    problems.push(`code ${String(body?.error?.code)}, expected ${e.code}`);
  if (e.message !== undefined && !new RegExp(e.message, 'i').test(body?.error?.message ?? ''))
    problems.push(`message ${JSON.stringify(body?.error?.message)} does not name /${e.message}/`);
  if (e.noTask && (judgement.taskId !== undefined || body?.task !== undefined))
    problems.push('a task was created: the request was accepted before it was refused');
  if (e.withinMs !== undefined && (status === undefined || answer.ms > e.withinMs))
    problems.push(`answered after ${answer.ms} ms, expected within ${e.withinMs} ms`);
  if (e.closes && !answer.closed && answer.headers['connection']?.toLowerCase() !== 'close')
    problems.push('the connection was left open');
  return {
    answer,
    outcome: judgement.outcome,
    problems,
    ...(judgement.taskId === undefined ? {} : { taskId: judgement.taskId }),
  };
}

/** The route a raw request's line aims at, for judging its answer. */
function routeOf(requestLine: string): string {
  const path = requestLine.split(' ')[1] ?? '';
  if (path.startsWith('/v1/chat/completions')) return 'chat';
  if (path.startsWith('/v1/completions')) return 'completions';
  if (/\/infer(\?|$)/.test(path)) return 'infer';
  if (/\/events(\?|$)/.test(path)) return 'events';
  return 'other';
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
