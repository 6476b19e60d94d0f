/**
 * What an HTTP answer to a hostile request must be, and what it came to: a typed JSON error
 * (`{"error": {"code", "message", "retryable"}}` with an `X-Request-Id`) with a 4xx or 503, or a
 * correct success. Anything else (another 5xx, Node's bare refusal, a dropped connection, no
 * answer in time, an echo that changed its input) is a violation.
 */
import { isDeepStrictEqual } from 'node:util';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** An answer, from fetch or from a raw socket. */
export interface Answer {
  status?: number;
  headers: Record<string, string>;
  body: string;
  /** The connection closed without a (complete) response. */
  closed: boolean;
  ms: number;
}

/** What the request was, as far as judging its answer needs. */
export interface Asked {
  method: string;
  /** The route it aims at (`infer`, `chat`, `embeddings`, `task`, `models`, `health`, `other`). */
  route: string;
  /** For echo calls with a JSON body: the input the result must echo. */
  echoInput?: unknown;
}

/** The judgement of one answer. */
export interface Judgement {
  /** The row of the outcome table: `200 success`, `400 invalid_request`, `dropped by Node`... */
  outcome: string;
  /** Set when the answer broke a pass criterion. */
  problem?: string;
  /** A task the request created, to check for a final state visible to its owner. */
  taskId?: string;
}

type Json = Record<string, unknown>;

/**
 * Causes a 503 may not hide: they are properties of the request, so telling the client to retry
 * (503 is retryable) sends it round forever. NATS's payload limit, the encoder's stack.
 */
const PERMANENT_CAUSE = /max_payload|call stack|too large|too deep/i;

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The typed error of a body, if it is one. */
function typedError(body: unknown): { code: string; retryable: boolean } | undefined {
  if (!isObject(body) || !isObject(body['error'])) return undefined;
  const { code, message, retryable } = body['error'];
  if (typeof code !== 'string' || typeof message !== 'string' || typeof retryable !== 'boolean')
    return undefined;
  return { code, retryable };
}

/** Judges one answer against the pass criteria. */
export function judge(asked: Asked, answer: Answer): Judgement {
  const { status } = answer;
  if (status === undefined) {
    return answer.closed
      ? {
          outcome: 'dropped (closed, no answer)',
          problem: 'the connection closed without an answer',
        }
      : { outcome: 'no answer in time', problem: `no answer within ${answer.ms} ms` };
  }
  const body = parseJson(answer.body);
  if (asked.method === 'HEAD' && (status < 500 || status === 503)) {
    // A HEAD answer has no body to carry the error shape; its headers still say what it was.
    return answer.headers['x-request-id']
      ? { outcome: `${status} (HEAD)` }
      : {
          outcome: `${status} (HEAD) bare`,
          problem: `HEAD answered ${status} without X-Request-Id`,
        };
  }
  if (status >= 500 && status !== 503 && !isOwnDeadline(status, body)) {
    return {
      outcome: `${status} (5xx)`,
      problem: `answered ${status}: ${answer.body.slice(0, 300)}`,
    };
  }
  if (status >= 400) return judgeError(status, body, answer);
  if (status === 200 && answer.headers['content-type']?.startsWith('text/event-stream')) {
    return judgeStream(asked, answer);
  }
  if (status >= 200 && status < 300) return judgeSuccess(asked, status, body, answer);
  return { outcome: `${status} other`, problem: `unexpected status ${status}` };
}

/**
 * The one 5xx besides 503 that is a correct answer: a synchronous call whose task missed the
 * deadline the client gave it (`deadline_ms`, as short as 1 ms) is answered 504 with the task,
 * whose record says the same (checked with the other created tasks). Any other 5xx is a fault.
 */
function isOwnDeadline(status: number, body: unknown): boolean {
  return (
    status === 504 &&
    typedError(body)?.code === 'deadline_exceeded' &&
    isObject(body) &&
    isObject(body['task'])
  );
}

function judgeError(status: number, body: unknown, answer: Answer): Judgement {
  const error = typedError(body);
  if (!error) {
    const bare = answer.body.length === 0;
    return {
      outcome: bare ? `${status} bare (Node's parser)` : `${status} untyped`,
      problem: `${status} without the JSON error shape: ${JSON.stringify(answer.body.slice(0, 200))}`,
    };
  }
  const task = isObject(body) && isObject(body['task']) ? String(body['task']['id']) : undefined;
  const message = isObject(body) && isObject(body['error']) ? String(body['error']['message']) : '';
  if (status === 503 && PERMANENT_CAUSE.test(message)) {
    return {
      outcome: '503 for a request that cannot succeed',
      problem: `503 (retryable) for a request no retry will get through: ${message}`,
    };
  }
  const outcome = `${status} ${error.code}${task ? ' (task ended so)' : ''}`;
  if (!answer.headers['x-request-id']) return { outcome, problem: 'error without an X-Request-Id' };
  if (error.retryable && !answer.headers['retry-after'])
    return { outcome, problem: 'retryable error without Retry-After' };
  return task ? { outcome, taskId: task } : { outcome };
}

/** Final events of the native stream. */
const FINAL_EVENTS = new Set(['succeeded', 'failed', 'dead', 'cancelled']);

/**
 * A stream (read to its end) is correct when every event is well formed and it ends as its kind
 * says: an OpenAI stream with `[DONE]` or a typed error chunk; a native stream (its first event
 * `state` names the task, checked afterwards like any created task) with the task's final state
 * or a typed `error` event.
 */
function judgeStream(asked: Asked, answer: Answer): Judgement {
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (e) => events.push(e) }).feed(answer.body);
  const last = events.at(-1);
  const cut = (what: string): Judgement => ({
    outcome: '200 stream cut',
    problem: `${what}: ${answer.body.slice(-300)}`,
  });
  if (!last) return cut('an event stream without events');
  const chunkObject: Record<string, string> = {
    chat: 'chat.completion.chunk',
    completions: 'text_completion',
  };
  const object = chunkObject[asked.route];
  if (object !== undefined) {
    const chunks = events.filter((e) => e.data !== '[DONE]').map((e) => parseJson(e.data));
    const malformed = chunks.find(
      (c) => !isObject(c) || (c['object'] !== object && !typedError(c)),
    );
    if (malformed !== undefined) return cut(`a chunk that is neither a chunk nor an error`);
    if (last.data === '[DONE]') return { outcome: '200 stream [DONE]' };
    const error = typedError(parseJson(last.data));
    return error ? { outcome: `200 stream ended: ${error.code}` } : cut('a stream without its end');
  }
  const first = parseJson(events[0]!.data);
  const taskId = events[0]!.event === 'state' && isObject(first) ? String(first['id']) : undefined;
  const ended = FINAL_EVENTS.has(last.event ?? '') || last.event === 'error';
  if (!ended)
    return { ...cut('a native stream without its final event'), ...(taskId ? { taskId } : {}) };
  return { outcome: `200 stream ${last.event}`, ...(taskId ? { taskId } : {}) };
}

function judgeSuccess(asked: Asked, status: number, body: unknown, answer: Answer): Judgement {
  if (asked.method === 'HEAD' || status === 204) return { outcome: `${status} success` };
  if (!isObject(body)) {
    return {
      outcome: `${status} not JSON`,
      problem: `success without a JSON object: ${answer.body.slice(0, 200)}`,
    };
  }
  if (asked.route === 'infer') {
    const id = typeof body['id'] === 'string' ? body['id'] : undefined;
    if (!id)
      return { outcome: `${status} infer without id`, problem: 'an infer success names no task' };
    if (status === 202) return { outcome: '202 accepted', taskId: id };
    if (body['state'] !== 'succeeded')
      return {
        outcome: `${status} not final`,
        problem: `200 with state ${String(body['state'])}`,
        taskId: id,
      };
    if (asked.echoInput !== undefined) {
      const expected = JSON.parse(JSON.stringify(asked.echoInput)) as unknown;
      const echoed = isObject(body['result']) ? body['result']['echo'] : undefined;
      if (!isDeepStrictEqual(echoed, expected)) {
        return {
          outcome: '200 echo differs',
          problem: `echo changed its input: sent ${JSON.stringify(expected).slice(0, 200)}, got ${JSON.stringify(echoed).slice(0, 200)}`,
          taskId: id,
        };
      }
    }
    return { outcome: '200 success', taskId: id };
  }
  const expectedObject: Record<string, string> = {
    chat: 'chat.completion',
    completions: 'text_completion',
    embeddings: 'list',
    models: 'list',
  };
  const want = expectedObject[asked.route];
  if (
    want !== undefined &&
    body['object'] !== want &&
    !(asked.route === 'models' && body['object'] === 'model')
  ) {
    return {
      outcome: `${status} wrong object`,
      problem: `object ${String(body['object'])}, not ${want}`,
    };
  }
  return { outcome: `${status} success` };
}
