/**
 * The soak's load: requests at a fixed rate, open loop (a request is sent on time whether or not
 * the ones before it were answered), cycling through every route in fixed proportions so that
 * each route's share is exact over any few seconds. Every answer is checked (status and shape);
 * anything else is an error, counted by kind. Asynchronous submissions are polled through
 * `GET /v1/tasks/{id}` slots of the cycle until final; at the end the ones still open are
 * followed to a final state within a bound, and one that never gets there is an error.
 */
import { randomBytes } from 'node:crypto';
import { percentile } from '../common/index.js';

/** Most requests waiting for an answer; past it a request is not sent and counts as an error. */
const MAX_IN_FLIGHT = 512;
/** How long one request may take, ms. */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long open asynchronous tasks get to end after the load, ms. */
const SETTLE_MS = 60_000;
/** Finished async task ids kept to be read again when no task is open. */
const FINISHED_KEPT = 256;
/** Keyed submissions repeat a recent key every this many (the retry of a careful client). */
const KEY_REPEAT_EVERY = 4;

/** The routes, as the report names them. */
export type Route =
  | 'infer-echo'
  | 'infer-chat'
  | 'infer-embed'
  | 'infer-keyed'
  | 'submit-async'
  | 'get-task'
  | 'chat-completions'
  | 'embeddings'
  | 'list-models'
  | 'healthz'
  | 'readyz';

/** One cycle of 25 requests: each route's share of the load is its count / 25. */
const CYCLE: readonly Route[] = (
  [
    ['infer-echo', 2],
    ['infer-chat', 2],
    ['infer-embed', 1],
    ['infer-keyed', 1],
    ['submit-async', 3],
    ['get-task', 4],
    ['chat-completions', 4],
    ['embeddings', 3],
    ['list-models', 2],
    ['healthz', 2],
    ['readyz', 1],
  ] as const
)
  .flatMap(([route, n]) => Array.from({ length: n }, () => route))
  // Interleaved rather than grouped: the same route never comes n times in a row.
  .map((route, i, all) => all[(i * 7) % all.length]!);

const PROMPTS = [
  'Tell me about liberty',
  'What is the sea',
  'The old house on the hill',
  'Speak of the war and the peace',
  'A letter to my brother',
];
const WORDS = ['river', 'stone', 'light', 'garden', 'engine', 'winter', 'harbour', 'letter'];
const MODELS = ['echo', 'ngram-chat', 'hash-embed'] as const;

/** What one route's requests met. */
export interface RouteFigures {
  sent: number;
  ok: number;
  /** Latency of answered requests, ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** What the load did. */
export interface LoadFigures {
  sent: number;
  ok: number;
  /** Errors by kind: `http-503 infer-chat`, `timeout get-task`, `connection healthz`... */
  errors: Record<string, number>;
  /** A few errors in full, for the report. */
  examples: string[];
  byRoute: Record<string, RouteFigures>;
  asyncSubmitted: number;
  asyncFinal: number;
}

type Json = Record<string, unknown>;

/** The answer's status and JSON body, or a transport failure's kind. */
type Answer = { status: number; body: Json | undefined } | { failure: string; detail: string };

/** A fixed-rate load against one gateway. */
export class SoakLoad {
  readonly #url: string;
  readonly #auth: string;
  readonly #latencies = new Map<Route, number[]>();
  readonly #sent = new Map<Route, number>();
  readonly #ok = new Map<Route, number>();
  readonly #errors = new Map<string, number>();
  readonly #examples: string[] = [];
  readonly #open = new Map<string, number>();
  readonly #finished: string[] = [];
  readonly #keys: string[] = [];
  readonly #pending = new Set<Promise<void>>();
  readonly #run = randomBytes(4).toString('hex');
  #asyncSubmitted = 0;
  #asyncFinal = 0;
  #n = 0;

  constructor(gatewayUrl: string, apiKey: string) {
    this.#url = gatewayUrl;
    this.#auth = `Bearer ${apiKey}`;
  }

  /** Sends `rate` requests a second until `until` (ms epoch) or `stopped()`. */
  async run(rate: number, until: number, stopped: () => boolean): Promise<void> {
    const start = Date.now();
    const gapMs = 1000 / rate;
    for (let i = 0; ; i++) {
      const due = start + i * gapMs;
      if (due >= until || stopped()) break;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const route = CYCLE[i % CYCLE.length]!;
      this.#count(this.#sent, route);
      if (this.#pending.size >= MAX_IN_FLIGHT) {
        this.#error(route, 'load-skipped', 'too many requests waiting');
        continue;
      }
      const p = this.#send(route).finally(() => this.#pending.delete(p));
      this.#pending.add(p);
    }
    await Promise.all(this.#pending);
  }

  /** Follows every open asynchronous task to a final state, within a bound. */
  async settle(): Promise<void> {
    const until = Date.now() + SETTLE_MS;
    while (this.#open.size > 0 && Date.now() < until) {
      await Promise.all([...this.#open.keys()].slice(0, 32).map((id) => this.#poll(id, 2)));
    }
    for (const id of this.#open.keys()) this.#error('get-task', 'not-final', `task ${id}`);
  }

  figures(): LoadFigures {
    const byRoute: Record<string, RouteFigures> = {};
    for (const [route, sent] of this.#sent) {
      const lat = this.#latencies.get(route) ?? [];
      byRoute[route] = {
        sent,
        ok: this.#ok.get(route) ?? 0,
        p50Ms: percentile(lat, 0.5) ?? 0,
        p99Ms: percentile(lat, 0.99) ?? 0,
        maxMs: lat.reduce((m, v) => Math.max(m, v), 0),
      };
    }
    const sum = (m: Map<unknown, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    return {
      sent: sum(this.#sent),
      ok: sum(this.#ok),
      errors: Object.fromEntries(this.#errors),
      examples: this.#examples,
      byRoute,
      asyncSubmitted: this.#asyncSubmitted,
      asyncFinal: this.#asyncFinal,
    };
  }

  /** Errors so far (the sampler logs them as they come). */
  errorCount(): number {
    return [...this.#errors.values()].reduce((a, b) => a + b, 0);
  }

  async #send(route: Route): Promise<void> {
    const n = this.#n++;
    switch (route) {
      case 'infer-echo':
      case 'infer-chat':
      case 'infer-embed':
        return this.#infer(route, n);
      case 'infer-keyed':
        return this.#keyed(n);
      case 'submit-async':
        return this.#submitAsync(n);
      case 'get-task':
        return this.#getTask();
      case 'chat-completions':
        return this.#chatCompletion(n);
      case 'embeddings':
        return this.#embeddings(n);
      case 'list-models':
        return this.#check(route, await this.#call('GET', '/v1/models'), 200, (b) =>
          Array.isArray(b['data']),
        );
      case 'healthz':
      case 'readyz':
        return this.#check(route, await this.#call('GET', `/${route}`), 200, () => true);
    }
  }

  async #infer(route: 'infer-echo' | 'infer-chat' | 'infer-embed', n: number): Promise<void> {
    const model = { 'infer-echo': 'echo', 'infer-chat': 'ngram-chat', 'infer-embed': 'hash-embed' }[
      route
    ];
    const answer = await this.#call('POST', `/v1/models/${model}/infer`, taskBody(model, n));
    this.#check(route, answer, 200, (b) => b['state'] === 'succeeded');
  }

  /** A keyed synchronous echo; every 4th repeats a recent key and must get the same task. */
  async #keyed(n: number): Promise<void> {
    const repeat = n % KEY_REPEAT_EVERY === 0 && this.#keys.length > 0;
    const key = repeat
      ? this.#keys[Math.floor(Math.random() * this.#keys.length)]!
      : `soak-${this.#run}-${n}`;
    if (!repeat) this.#keys.push(key);
    if (this.#keys.length > 64) this.#keys.shift();
    const answer = await this.#call('POST', '/v1/models/echo/infer', taskBody('echo', key), {
      'Idempotency-Key': key,
    });
    this.#check('infer-keyed', answer, 200, (b) => {
      const result = b['result'] as Json | undefined;
      return b['state'] === 'succeeded' && (result?.['echo'] as Json)?.['key'] === key;
    });
  }

  async #submitAsync(n: number): Promise<void> {
    const model = MODELS[n % MODELS.length]!;
    const answer = await this.#call('POST', `/v1/models/${model}/infer`, taskBody(model, n), {
      Prefer: 'respond-async',
    });
    this.#check('submit-async', answer, 202, (b) => {
      if (typeof b['id'] !== 'string') return false;
      this.#asyncSubmitted++;
      this.#open.set(b['id'], Date.now());
      return true;
    });
  }

  /** Reads the oldest open async task, or a finished one when none is open. */
  async #getTask(): Promise<void> {
    const open = this.#open.keys().next();
    if (!open.done) {
      this.#open.delete(open.value);
      return this.#poll(open.value, 0);
    }
    const id = this.#finished[Math.floor(Math.random() * this.#finished.length)];
    if (id === undefined) {
      return this.#check('get-task', await this.#call('GET', '/healthz'), 200, () => true);
    }
    const answer = await this.#call('GET', `/v1/tasks/${id}`);
    this.#check('get-task', answer, 200, (b) => b['state'] === 'succeeded');
  }

  async #poll(id: string, waitSeconds: number): Promise<void> {
    this.#open.delete(id);
    const headers: Record<string, string> =
      waitSeconds > 0 ? { Prefer: `wait=${waitSeconds}` } : {};
    const answer = await this.#call('GET', `/v1/tasks/${id}`, undefined, headers);
    this.#check('get-task', answer, 200, (b) => {
      const state = b['state'];
      if (state === 'succeeded') {
        this.#asyncFinal++;
        this.#finished.push(id);
        if (this.#finished.length > FINISHED_KEPT) this.#finished.shift();
        return true;
      }
      if (state !== 'accepted' && state !== 'running') return false;
      this.#open.set(id, Date.now());
      return true;
    });
  }

  async #chatCompletion(n: number): Promise<void> {
    const answer = await this.#call('POST', '/v1/chat/completions', {
      model: 'ngram-chat',
      messages: [{ role: 'user', content: PROMPTS[n % PROMPTS.length]! }],
      max_tokens: 16 + (n % 32),
    });
    this.#check('chat-completions', answer, 200, (b) => Array.isArray(b['choices']));
  }

  async #embeddings(n: number): Promise<void> {
    const input = Array.from({ length: 1 + (n % 4) }, (_, i) => phrase(n + i));
    const answer = await this.#call('POST', '/v1/embeddings', { model: 'hash-embed', input });
    this.#check(
      'embeddings',
      answer,
      200,
      (b) => Array.isArray(b['data']) && b['data'].length === input.length,
    );
  }

  async #call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer & { ms: number }> {
    const start = performance.now();
    try {
      const res = await fetch(this.#url + path, {
        method,
        headers: {
          Authorization: this.#auth,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await res.text();
      let json: Json | undefined;
      try {
        json = JSON.parse(text) as Json;
      } catch {
        json = undefined;
      }
      return { status: res.status, body: json, ms: performance.now() - start };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const failure = e.name === 'TimeoutError' ? 'timeout' : 'connection';
      const detail = `${e.name}: ${e.message} ${e.cause?.code ?? ''} ${e.cause?.message ?? ''}`;
      return { failure, detail, ms: performance.now() - start };
    }
  }

  #check(
    route: Route,
    answer: Answer & { ms: number },
    status: number,
    shapeOk: (body: Json) => boolean,
  ): void {
    if ('failure' in answer) return this.#error(route, answer.failure, answer.detail);
    if (answer.status !== status) {
      const body = JSON.stringify(answer.body)?.slice(0, 200) ?? '';
      return this.#error(route, `http-${answer.status}`, body);
    }
    if (!answer.body || !shapeOk(answer.body)) {
      return this.#error(route, 'bad-body', JSON.stringify(answer.body)?.slice(0, 200) ?? '');
    }
    this.#count(this.#ok, route);
    let lat = this.#latencies.get(route);
    if (!lat) this.#latencies.set(route, (lat = []));
    lat.push(Math.round(answer.ms * 10) / 10);
  }

  #error(route: Route, kind: string, detail: string): void {
    this.#count(this.#errors, `${kind} ${route}`);
    if (this.#examples.length < 20)
      this.#examples.push(`${new Date().toISOString()} ${route} ${kind}: ${detail}`);
  }

  #count<K>(map: Map<K, number>, key: K): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}

/** A few words, different for each n. */
function phrase(n: number): string {
  return Array.from({ length: 3 + (n % 5) }, (_, i) => WORDS[(n * 3 + i * 5) % WORDS.length]).join(
    ' ',
  );
}

/** The body of a native inference request for `model`. */
function taskBody(model: string, n: number | string): Json {
  const i = typeof n === 'number' ? n : n.length;
  if (model === 'ngram-chat')
    return { input: PROMPTS[i % PROMPTS.length], params: { max_tokens: 16 + (i % 32) } };
  if (model === 'hash-embed') return { input: phrase(i) };
  return { input: { key: n, text: phrase(i) } };
}
