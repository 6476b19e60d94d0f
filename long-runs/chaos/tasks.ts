/**
 * The chaos run's ledger, on the chaos suite's classification (`test/chaos/checker.ts`, whose
 * ideas it follows without importing it): every task gets a client id, sent as its
 * `Idempotency-Key` and inside its input, so the task id it must get is known in advance
 * (derived from tenant and key) and a retry reaches the same task. At the end each accepted task
 * is one of
 *
 * - `ok`: final, with one task id, one result however often it is read, one completion event;
 * - `lost`: accepted (answered 200/202, or found later under its derived id) but not final by the
 *   end, or unknown (404 three times in a row);
 * - `duplicated`: two task ids for one key, two different results read for one task, or more
 *   than one terminal lifecycle event for it (a second completion stored or announced);
 * - `unexpected`: final but not as expected (an echo that does not echo its input, a failure).
 *
 * Submissions never accepted (refused while every actor of a model was down, within the retry
 * window) are counted apart, never as lost.
 */
import { randomBytes } from 'node:crypto';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  decodeAs,
  FINAL_STATES,
  subjects,
  taskEventSchema,
  taskIdForIdempotencyKey,
  TaskEventType,
} from '../../protocol/index.js';

type Json = Record<string, unknown>;

/** The models the load mixes. */
export const CHAOS_MODELS = ['echo', 'ngram-chat', 'hash-embed'] as const;
export type ChaosModel = (typeof CHAOS_MODELS)[number];

/** One task the load submitted. */
export interface TrackedTask {
  readonly n: number;
  readonly key: string;
  readonly model: ChaosModel;
  readonly sync: boolean;
  readonly body: string;
  readonly expectedId: string;
  readonly ids: Set<string>;
  /** Distinct results (JSON of state and result or error) read for the task. */
  readonly results: Set<string>;
  /** HTTP statuses (0: no answer) of every send. */
  readonly answers: number[];
  accepted: boolean;
  final: Json | undefined;
  missing: boolean;
}

/** The verdict classes. */
export type Verdict = 'ok' | 'lost' | 'duplicated' | 'unexpected';

/** A verdict and why, when it is not ok. */
export interface Classification {
  verdict: Verdict;
  why?: string;
}

const isFinal = (state: unknown) => (FINAL_STATES as ReadonlySet<unknown>).has(state);

/** Builds the tasks of one run, and counts the tenant's lifecycle events. */
export class TaskLedger {
  readonly tasks: TrackedTask[] = [];
  /** Terminal events (succeeded, failed, dead) per task id. */
  readonly completions = new Map<string, number>();
  readonly #run = randomBytes(4).toString('hex');
  readonly #sub: Subscription;
  #undecodable = 0;

  constructor(
    nc: NatsConnection,
    region: string,
    private readonly tenant: string,
  ) {
    this.#sub = nc.subscribe(subjects.eventsOfTenant(region, tenant), {
      callback: (_err, msg) => {
        try {
          const event = decodeAs(taskEventSchema, msg.data, 'event');
          if (
            event.type === TaskEventType.Succeeded ||
            event.type === TaskEventType.Failed ||
            event.type === TaskEventType.Dead
          )
            this.completions.set(event.taskId, (this.completions.get(event.taskId) ?? 0) + 1);
        } catch {
          this.#undecodable += 1;
        }
      },
    });
  }

  /** The n-th task: model and sync/async in turn, echo with a delay so kills land mid-task. */
  create(n: number, syncShare: number): TrackedTask {
    const key = `chaos-${this.#run}-${n}`;
    const model = CHAOS_MODELS[n % CHAOS_MODELS.length]!;
    const sync = ((n * 7919) % 1000) / 1000 < syncShare;
    const input =
      model === 'echo'
        ? { input: { key, n }, params: { delay_ms: 50 + ((n * 37) % 350) } }
        : model === 'ngram-chat'
          ? { input: `Tell me about ${key}`, params: { max_tokens: 16 + (n % 24) } }
          : { input: [`task ${key}`, `number ${n}`] };
    const task: TrackedTask = {
      n,
      key,
      model,
      sync,
      body: JSON.stringify(input),
      expectedId: taskIdForIdempotencyKey(this.tenant, key),
      ids: new Set(),
      results: new Set(),
      answers: [],
      accepted: false,
      final: undefined,
      missing: false,
    };
    this.tasks.push(task);
    return task;
  }

  /** Notes an answer that named the task (200 final, 202 accepted, or a GET). */
  accept(task: TrackedTask, view: Json): void {
    const id = view['id'];
    if (typeof id !== 'string') return;
    task.ids.add(id);
    task.accepted = true;
    if (!isFinal(view['state'])) return;
    task.final ??= view;
    task.results.add(JSON.stringify([view['state'], view['result'] ?? view['error']]));
  }

  classify(task: TrackedTask): Classification {
    if (task.ids.size > 1) return { verdict: 'duplicated', why: `ids ${[...task.ids].join(',')}` };
    if (task.results.size > 1)
      return { verdict: 'duplicated', why: `results ${[...task.results].join(' | ')}` };
    const id = [...task.ids][0] ?? task.expectedId;
    const completions = this.completions.get(id) ?? 0;
    if (completions > 1) return { verdict: 'duplicated', why: `${completions} completion events` };
    if (task.missing) return { verdict: 'lost', why: `404 for ${id}` };
    if (!task.final) return { verdict: 'lost', why: `${id} not final by the end` };
    if (id !== task.expectedId)
      return { verdict: 'unexpected', why: `id ${id}, derived ${task.expectedId}` };
    return this.#checkResult(task, task.final);
  }

  #checkResult(task: TrackedTask, final: Json): Classification {
    if (final['state'] !== 'succeeded')
      return {
        verdict: 'unexpected',
        why: `${String(final['state'])} after ${String(final['attempts'])} attempts: ${JSON.stringify(final['error'])}`,
      };
    const result = final['result'] as Json | undefined;
    if (task.model === 'echo') {
      const echo = result?.['echo'] as Json | undefined;
      if (echo?.['key'] !== task.key)
        return { verdict: 'unexpected', why: `echo ${JSON.stringify(echo)}` };
    }
    return { verdict: 'ok' };
  }

  /** Undecodable events seen (each would hide a completion). */
  get undecodableEvents(): number {
    return this.#undecodable;
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}
