/**
 * The chaos checker: every task a chaos test submits gets a client-side id (`cid`), sent as the
 * `Idempotency-Key` and inside the echo input, so the result proves which task it belongs to. At
 * the end each task is classified:
 *
 * - `ok`: it reached the state expected of it (`succeeded` with its own echo, or the configured
 *   terminal state and attempts for a poison task);
 * - `lost`: accepted, but no final state by the end (or the task is unknown: 404);
 * - `duplicated`: two task ids for one client id, two different results seen for one task, or
 *   more than one terminal lifecycle event for one task (a second completion stored or reported);
 * - `unexpected`: anything else (a wrong result, a failure where success was due, wrong attempts).
 *
 * Refused submissions (429, 503, no answer and no trace of the task) were never accepted, so they
 * are counted apart and never as lost. `report()` prints one line of counts and figures.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import {
  assetNames,
  decodeAs,
  subjects,
  taskEventSchema,
  taskIdForIdempotencyKey,
  taskRecordSchema,
  TaskEventType,
  type TaskRecord,
} from '../../protocol/index.js';
import { TENANTS, type TestEdge } from '../harness/edge.js';

type Json = Record<string, unknown>;

/** What a task must end as to count as `ok`. */
export type Expectation =
  { type: 'succeeded' } | { type: 'failed'; attempts: number } | { type: 'dead'; attempts: number };

/** The classes of {@link Checker.classify}. */
export const Verdict = {
  Ok: 'ok',
  Lost: 'lost',
  Duplicated: 'duplicated',
  Unexpected: 'unexpected',
} as const;

/** One of the {@link Verdict} values. */
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** Options of {@link Checker.submit}. */
export interface SubmitOptions {
  /** Echo params (`delay_ms`, `fail`, `fail_until`, ...). */
  params?: Json;
  /** Default `{type: 'succeeded'}`. */
  expect?: Expectation;
  /** Synchronous call waiting up to this many seconds (`Prefer: wait=N`); default async. */
  waitSeconds?: number;
  /**
   * Times the submission is sent again, with the same `Idempotency-Key`, after no answer or a
   * retryable refusal (429, 502, 503, 504). Default 0.
   */
  retries?: number;
  /** Pause before each retry, ms. Default 200. */
  retryDelayMs?: number;
}

/** What the checker knows of one submitted task. */
export interface TrackedTask {
  readonly cid: string;
  readonly n: number;
  readonly input: { cid: string; n: number };
  readonly expect: Expectation;
  /** The id the system must give this task: derived from the tenant and the idempotency key. */
  readonly expectedId: string;
  /** Task ids the gateway answered with. */
  readonly ids: Set<string>;
  /** HTTP statuses, or `no-answer`, of every submission attempt. */
  readonly answers: (number | 'no-answer')[];
  /** The system acknowledged it (200/202/final error with a task), or it was found later. */
  accepted: boolean;
  /** Distinct results (JSON) seen for the task, from any response. */
  readonly results: Set<string>;
  /** Final view (`GET /v1/tasks/{id}` or a sync answer), once seen. */
  final: Json | undefined;
  /** `GET` answered 404 for a task the system had accepted. */
  missing: boolean;
  submittedAt: number;
  acceptedAt: number | undefined;
}

/** Why a task counts as duplicated. */
export type DuplicateKind = 'ids' | 'results' | 'completions';

/** A verdict and, when it is not ok, why. */
export interface Classification {
  verdict: Verdict;
  why?: string;
  /** Set on `duplicated`. */
  kind?: DuplicateKind;
}

/** The figures {@link Checker.report} prints. */
export interface CheckerReport {
  tasks: number;
  accepted: number;
  refused: number;
  ok: number;
  lost: number;
  duplicated: number;
  unexpected: number;
  /**
   * Duplicates by kind: two task ids for one client id, two different results for one task, or
   * more than one terminal event (a second completion stored or reported).
   */
  duplicatedBy: Record<DuplicateKind, number>;
  /** A few explanations of non-ok verdicts, for the failure message. */
  examples: string[];
}

/** Options of {@link createChecker}. */
export interface CheckerOptions {
  /** Printed first on the report line: `chaos <name>: ...`. */
  name: string;
  /** Default tenant alpha. */
  tenant?: { tenant: string; key: string };
  /** Default `echo`. */
  model?: string;
}

/** Counts of lifecycle events per task, from `vigil.evt.<region>.<tenant>.>`. */
export interface EventCounts {
  succeeded: number;
  failed: number;
  dead: number;
  retrying: number;
  running: number;
  /** Attempt numbers carried by the terminal events. */
  terminalAttempts: number[];
  /** `type@attempt+ms` of each event, ms after the first one (the first 20), for diagnosis. */
  log: string[];
  firstAt: number;
}

const FINAL = new Set(['succeeded', 'failed', 'dead']);
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);
/** Tasks polled at once while settling: bounded, so the gateway's waiter map stays small. */
const POLL_CONCURRENCY = 32;

/** A checker bound to one edge and tenant. */
export interface Checker {
  readonly name: string;
  readonly tasks: readonly TrackedTask[];
  /** Lifecycle events seen, per task id. */
  readonly events: ReadonlyMap<string, EventCounts>;
  /** Submits one echo task and records the answer(s). Never throws. */
  submit(options?: SubmitOptions): Promise<TrackedTask>;
  /**
   * Brings every accepted task to a final state or gives up at `timeoutMs`: long polls
   * `GET /v1/tasks/{id}`, looks up tasks that got no answer by their derived id, and re-reads every
   * final task once to catch a second, different result. Resolves with the tasks still not final.
   */
  settle(timeoutMs: number): Promise<number>;
  /** Final records straight from the task bucket (for the actor and attempt of each task). */
  records(): Promise<Map<string, TaskRecord>>;
  /** The verdict on one task, with the reason when it is not ok. */
  classify(task: TrackedTask): Classification;
  /** Counts verdicts, prints `chaos <name>: tasks ... ; <figures>`, and returns the counts. */
  report(figures?: Record<string, string | number>): CheckerReport;
  /** Unsubscribes from events. */
  close(): Promise<void>;
}

/** Subscribes to the tenant's lifecycle events and returns an empty checker. */
export async function createChecker(edge: TestEdge, options: CheckerOptions): Promise<Checker> {
  const nc = await edge.connect();
  return new CheckerImpl(edge, nc, options);
}

class CheckerImpl implements Checker {
  readonly name: string;
  readonly tasks: TrackedTask[] = [];
  readonly events = new Map<string, EventCounts>();
  readonly #edge: TestEdge;
  readonly #nc: NatsConnection;
  readonly #tenant: { tenant: string; key: string };
  readonly #model: string;
  readonly #sub: Subscription;
  readonly #run = randomBytes(4).toString('hex');
  #undecodableEvents = 0;

  constructor(edge: TestEdge, nc: NatsConnection, options: CheckerOptions) {
    this.name = options.name;
    this.#edge = edge;
    this.#nc = nc;
    this.#tenant = options.tenant ?? TENANTS.alpha;
    this.#model = options.model ?? 'echo';
    this.#sub = nc.subscribe(subjects.eventsOfTenant(edge.region, this.#tenant.tenant), {
      callback: (_err, msg) => {
        try {
          this.#count(decodeAs(taskEventSchema, msg.data, 'event'));
        } catch {
          this.#undecodableEvents += 1;
        }
      },
    });
  }

  #count(event: { type: string; taskId: string; attempt: number; at: number }): void {
    let counts = this.events.get(event.taskId);
    if (!counts) {
      counts = {
        succeeded: 0,
        failed: 0,
        dead: 0,
        retrying: 0,
        running: 0,
        terminalAttempts: [],
        log: [],
        firstAt: event.at,
      };
      this.events.set(event.taskId, counts);
    }
    if (counts.log.length < 20)
      counts.log.push(`${event.type}@${event.attempt}+${event.at - counts.firstAt}ms`);
    switch (event.type) {
      case TaskEventType.Succeeded:
      case TaskEventType.Failed:
      case TaskEventType.Dead:
        counts[event.type] += 1;
        counts.terminalAttempts.push(event.attempt);
        return;
      case TaskEventType.Retrying:
      case TaskEventType.Running:
        counts[event.type] += 1;
        return;
      default:
        return;
    }
  }

  async submit(options: SubmitOptions = {}): Promise<TrackedTask> {
    const n = this.tasks.length;
    const cid = `${this.name}-${this.#run}-${n}`;
    const task: TrackedTask = {
      cid,
      n,
      input: { cid, n },
      expect: options.expect ?? { type: 'succeeded' },
      expectedId: taskIdForIdempotencyKey(this.#tenant.tenant, cid),
      ids: new Set(),
      answers: [],
      accepted: false,
      results: new Set(),
      final: undefined,
      missing: false,
      submittedAt: Date.now(),
      acceptedAt: undefined,
    };
    this.tasks.push(task);
    const body = JSON.stringify({ input: task.input, params: options.params ?? {} });
    const prefer =
      options.waitSeconds === undefined ? 'respond-async' : `wait=${options.waitSeconds}`;
    const tries = 1 + (options.retries ?? 0);
    for (let i = 0; i < tries; i += 1) {
      if (i > 0) await sleep(options.retryDelayMs ?? 200);
      let res: Response;
      try {
        res = await this.#edge.request(`/v1/models/${this.#model}/infer`, {
          method: 'POST',
          body,
          key: this.#tenant.key,
          headers: { Prefer: prefer, 'Idempotency-Key': cid },
        });
      } catch {
        task.answers.push('no-answer');
        continue;
      }
      task.answers.push(res.status);
      let json: Json | undefined;
      try {
        json = (await res.json()) as Json;
      } catch {
        // A gateway killed mid-body: no answer either.
        task.answers[task.answers.length - 1] = 'no-answer';
        continue;
      }
      // 200: the final task; 202: accepted; a failed task comes back as an error with `task`.
      const view = res.status === 200 || res.status === 202 ? json : (json['task'] as Json);
      if (view && typeof view['id'] === 'string') {
        this.#accept(task, view['id']);
        if (FINAL.has(String(view['state']))) this.#seeFinal(task, view);
        return task;
      }
      if (!RETRYABLE_STATUSES.has(res.status)) return task; // a terminal refusal (400, 404...)
    }
    return task;
  }

  #accept(task: TrackedTask, id: string): void {
    task.ids.add(id);
    if (!task.accepted) {
      task.accepted = true;
      task.acceptedAt = Date.now();
    }
  }

  #seeFinal(task: TrackedTask, view: Json): void {
    task.final ??= view;
    if (view['state'] === 'succeeded') task.results.add(JSON.stringify(view['result']));
    else task.results.add(JSON.stringify({ state: view['state'], error: view['error'] }));
  }

  /** One GET; `wait` long polls. Returns undefined when the gateway did not answer. */
  async #get(id: string, waitSeconds: number): Promise<{ status: number; body: Json } | undefined> {
    try {
      const res = await this.#edge.request(`/v1/tasks/${id}`, {
        key: this.#tenant.key,
        headers: waitSeconds > 0 ? { Prefer: `wait=${waitSeconds}` } : {},
      });
      return { status: res.status, body: (await res.json()) as Json };
    } catch {
      return undefined;
    }
  }

  async settle(timeoutMs: number): Promise<number> {
    const until = Date.now() + timeoutMs;
    // A submission that got no answer may still have been accepted: look it up by its derived id.
    await pool(
      this.tasks.filter((t) => !t.accepted),
      POLL_CONCURRENCY,
      async (task) => {
        for (let i = 0; i < 20 && Date.now() < until; i += 1) {
          const got = await this.#get(task.expectedId, 0);
          if (got?.status === 404) return; // never accepted: refused
          if (got?.status === 200) {
            this.#accept(task, String(got.body['id']));
            return;
          }
          await sleep(250);
        }
      },
    );
    const pending = (): TrackedTask[] => this.tasks.filter((t) => t.accepted && !t.final);
    await pool(pending(), POLL_CONCURRENCY, async (task) => {
      const id = [...task.ids][0]!;
      let notFound = 0;
      while (!task.final && !task.missing && Date.now() < until) {
        const left = Math.max(1, Math.min(3, Math.floor((until - Date.now()) / 1000)));
        const got = await this.#get(id, left);
        if (!got || got.status >= 500) {
          await sleep(250); // gateway or NATS away: ask again
        } else if (got.status === 404) {
          // Three answers in a row, not one: a read racing a reconnect must not count as a loss.
          notFound += 1;
          if (notFound >= 3) task.missing = true;
          else await sleep(500);
        } else {
          notFound = 0;
          if (FINAL.has(String(got.body['state']))) this.#seeFinal(task, got.body);
        }
      }
    });
    // Every id of every task read once more: a second, different result is a duplicate.
    await pool(
      this.tasks.filter((t) => t.accepted),
      POLL_CONCURRENCY,
      async (task) => {
        for (const id of task.ids) {
          const got = await this.#get(id, 0);
          if (got?.status === 200 && FINAL.has(String(got.body['state'])))
            this.#seeFinal(task, got.body);
        }
      },
    );
    // Events travel on core NATS: let the last ones land before anyone counts them.
    await this.#nc.flush();
    await sleep(300);
    return pending().length;
  }

  async records(): Promise<Map<string, TaskRecord>> {
    const kv: KV = await new Kvm(this.#nc).open(assetNames.taskBucket(this.#edge.region));
    const out = new Map<string, TaskRecord>();
    await pool(
      this.tasks.flatMap((t) => [...t.ids]),
      POLL_CONCURRENCY,
      async (id) => {
        const entry = await kv.get(id);
        if (entry?.operation === 'PUT')
          out.set(id, decodeAs(taskRecordSchema, entry.value, 'task record'));
      },
    );
    return out;
  }

  classify(task: TrackedTask): Classification {
    if (task.ids.size > 1) {
      const why = `ids ${[...task.ids].join(',')}`;
      return { verdict: Verdict.Duplicated, kind: 'ids', why };
    }
    if (task.results.size > 1) {
      const why = `results ${[...task.results].join(' | ')}`;
      return { verdict: Verdict.Duplicated, kind: 'results', why };
    }
    const id = [...task.ids][0];
    const counts = id === undefined ? undefined : this.events.get(id);
    const completions = counts ? counts.succeeded + counts.failed + counts.dead : 0;
    if (completions > 1) {
      return {
        verdict: Verdict.Duplicated,
        kind: 'completions',
        why: `${completions} terminal events: ${counts!.log.join(' ')}`,
      };
    }
    if (task.missing) return { verdict: Verdict.Lost, why: `404 for ${id}` };
    const final = task.final;
    if (!final) return { verdict: Verdict.Lost, why: `${id} not final by the end` };
    if (id !== task.expectedId)
      return { verdict: Verdict.Unexpected, why: `id ${id}, derived ${task.expectedId}` };
    const state = String(final['state']);
    const expect = task.expect;
    if (state !== expect.type) {
      return {
        verdict: Verdict.Unexpected,
        why: `${state} (attempts ${String(final['attempts'])}, ${JSON.stringify(final['error'])}), expected ${expect.type}`,
      };
    }
    if (expect.type === 'succeeded') {
      const want = JSON.stringify({ echo: task.input });
      const got = JSON.stringify(final['result']);
      if (got !== want) return { verdict: Verdict.Unexpected, why: `result ${got}, want ${want}` };
    } else if (final['attempts'] !== expect.attempts) {
      return {
        verdict: Verdict.Unexpected,
        why: `${state} after ${String(final['attempts'])} attempts, expected ${expect.attempts}`,
      };
    }
    return { verdict: Verdict.Ok };
  }

  report(figures: Record<string, string | number> = {}): CheckerReport {
    const counts: CheckerReport = {
      tasks: this.tasks.length,
      accepted: 0,
      refused: 0,
      ok: 0,
      lost: 0,
      duplicated: 0,
      unexpected: 0,
      duplicatedBy: { ids: 0, results: 0, completions: 0 },
      examples: [],
    };
    for (const task of this.tasks) {
      if (!task.accepted) {
        counts.refused += 1;
        continue;
      }
      counts.accepted += 1;
      const { verdict, why, kind } = this.classify(task);
      counts[verdict] += 1;
      if (kind) counts.duplicatedBy[kind] += 1;
      if (verdict !== Verdict.Ok && counts.examples.length < 5)
        counts.examples.push(`${task.cid} (${[...task.ids].join(',')}): ${verdict}: ${why ?? ''}`);
    }
    const extra = Object.entries(figures)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ');
    console.log(
      `chaos ${this.name}: tasks ${counts.tasks} accepted ${counts.accepted} refused ${counts.refused} ` +
        `ok ${counts.ok} lost ${counts.lost} duplicated ${counts.duplicated} unexpected ${counts.unexpected}` +
        (counts.duplicated
          ? ` (duplicates: two ids ${counts.duplicatedBy.ids}, two results ${counts.duplicatedBy.results}, ` +
            `second completion ${counts.duplicatedBy.completions})`
          : '') +
        (this.#undecodableEvents ? ` (undecodable events ${this.#undecodableEvents})` : '') +
        (extra ? `; ${extra}` : ''),
    );
    for (const example of counts.examples) console.log(`  ${example}`);
    return counts;
  }

  async close(): Promise<void> {
    this.#sub.unsubscribe();
    await this.#nc.flush().catch(() => undefined);
  }
}

/** Runs `work` over `items` with at most `concurrency` at once. */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next]!;
      next += 1;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Submissions per second. */
  ratePerSecond: number;
  /** How long to keep submitting, ms (at least; see `keepGoing`). */
  durationMs: number;
  /**
   * Past `durationMs`, submitting goes on while this says true (chaos that has not finished),
   * up to `maxDurationMs`.
   */
  keepGoing?: () => boolean;
  /** Hard cap on the load's duration, ms. Default `durationMs`. */
  maxDurationMs?: number;
  /** Hard cap on submissions (the loop is bounded in count as well as time). */
  maxTasks: number;
  /** Submissions in flight at once; beyond, the loop waits. Default 64. */
  maxInFlight?: number;
  /** Options of each submission (called per task). */
  submit?: (i: number) => SubmitOptions;
  /** Called once per tick with the elapsed time: chaos goes here (never awaited by the loop). */
  onTick?: (elapsedMs: number) => void;
}

/**
 * Submits at a steady rate for a bounded time and count, without waiting for each answer (open
 * loop, as real clients do), and resolves once every submission has been answered or given up.
 */
export async function runLoad(checker: Checker, options: LoadOptions): Promise<number> {
  const started = Date.now();
  const gapMs = 1000 / options.ratePerSecond;
  const maxInFlight = options.maxInFlight ?? 64;
  const inFlight = new Set<Promise<unknown>>();
  let sent = 0;
  const maxDurationMs = Math.max(options.durationMs, options.maxDurationMs ?? 0);
  const going = (): boolean => {
    const elapsed = Date.now() - started;
    if (elapsed >= maxDurationMs) return false;
    return elapsed < options.durationMs || (options.keepGoing?.() ?? false);
  };
  while (sent < options.maxTasks && going()) {
    while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
    const p: Promise<unknown> = checker
      .submit(options.submit?.(sent) ?? {})
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    sent += 1;
    options.onTick?.(Date.now() - started);
    const due = started + sent * gapMs;
    await sleep(Math.max(0, due - Date.now()));
  }
  await Promise.all(inFlight);
  return sent;
}

/** The q-quantile (0..1) of `values` by nearest rank; 0 when empty. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
