/**
 * The inference actor: takes tasks for one model from its mailbox and brings each to a final
 * state. Per task, in order:
 *
 *   decode -> (redelivery? reuse the stored outcome) -> run the model -> store the final record
 *   (compare-and-set: the first final record wins) -> reply to the waiting client -> ack
 *
 * The final record is written before the ack, so a crash anywhere leaves either a redelivery that
 * finds the record, or a redelivery that runs the task again; never a lost or a second result.
 * Retryable failures are naked with backoff; terminal failures and exhausted retries are written
 * to the dead-letter stream and termed.
 */
import {
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import {
  assetNames,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  ensureModelConsumer,
  ErrorCode,
  FINAL_STATES,
  MODEL_CONSUMER_DEFAULTS,
  requestEnvelopeSchema,
  subjects,
  taskRecordSchema,
  TaskEventType,
  TaskState,
  toVigilError,
  type DeadLetter,
  type TaskEvent,
  type DecodeLimits,
  type RequestEnvelope,
  type TaskRecord,
  type WireError,
} from '../protocol/index.js';
import { silentLogger, type Logger } from './log.js';
import { openMailbox, type Mailbox } from './mailbox.js';
import type { ModelRuntime } from './runtimes/runtime.js';

/** Options of {@link createInferenceActor}. */
export interface InferenceActorOptions {
  region: string;
  runtime: ModelRuntime;
  /** Identifies this actor in task records and logs. */
  actorId: string;
  /** Tasks run at once (and prefetched). Default 4. */
  concurrency?: number;
  /** Attempts before a retryable failure is dead-lettered. Default 5. */
  maxAttempts?: number;
  /** Delay before attempt n+1 after retryable failure n, ms; the last entry repeats. */
  retryScheduleMs?: readonly number[];
  /** The consumer's ack wait, ms; in-progress signals go out at a third of it. Default 30 s. */
  ackWaitMs?: number;
  /** A task still running after this long gets a `running` record, ms. Default 1 000. */
  runningMarkAfterMs?: number;
  /** Limits for decoding request payloads. */
  decodeLimits?: Partial<DecodeLimits>;
  logger?: Logger;
}

/** Defaults of {@link InferenceActorOptions}. */
export const INFERENCE_ACTOR_DEFAULTS = {
  concurrency: 4,
  maxAttempts: MODEL_CONSUMER_DEFAULTS.maxAttempts,
  retryScheduleMs: [1_000, 5_000, 15_000, 30_000] as readonly number[],
  ackWaitMs: MODEL_CONSUMER_DEFAULTS.ackWaitMs,
  runningMarkAfterMs: 1_000,
} as const;

/**
 * Period of the actor's housekeeping timer, ms: deadlines are enforced, and in-progress acks and
 * `running` records sent, to within this.
 */
const TICK_MS = 250;

/** Counters an actor keeps about itself. */
export interface ActorStats {
  inFlight: number;
  succeeded: number;
  failed: number;
  retried: number;
  deadLettered: number;
  /** Redeliveries answered from an already stored outcome. */
  reused: number;
}

/** A running inference actor. */
export interface InferenceActor {
  readonly model: string;
  stats(): ActorStats;
  /** Stops taking work, hands buffered work back, waits for in-flight tasks. Idempotent. */
  stop(): Promise<void>;
}

/** Creates the model's consumer if needed and starts an actor on it. */
export async function createInferenceActor(
  nc: NatsConnection,
  options: InferenceActorOptions,
): Promise<InferenceActor> {
  const o = { ...INFERENCE_ACTOR_DEFAULTS, logger: silentLogger, ...options };
  const js = jetstream(nc);
  const jsm = await js.jetstreamManager();
  const consumer = await ensureModelConsumer(jsm, {
    region: o.region,
    model: o.runtime.name,
    maxAttempts: o.maxAttempts,
    ackWaitMs: o.ackWaitMs,
  });
  const tasks = await new Kvm(js).open(assetNames.taskBucket(o.region));
  const actor = new InferenceActorImpl(nc, js, tasks, o);
  actor.mailbox = await openMailbox(
    js,
    { stream: assetNames.requestStream(o.region), consumer, concurrency: o.concurrency },
    (msg) => actor.handle(msg),
  );
  return actor;
}

type ResolvedOptions = Required<Omit<InferenceActorOptions, 'decodeLimits'>> &
  Pick<InferenceActorOptions, 'decodeLimits'>;

class InferenceActorImpl implements InferenceActor {
  mailbox: Mailbox | undefined;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #tasks: KV;
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  /** Attempts whose model is running now, walked by the actor's one timer. */
  readonly #running = new Set<Attempt>();
  readonly #ticker: NodeJS.Timeout;
  readonly #stats: Omit<ActorStats, 'inFlight'> = {
    succeeded: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    reused: 0,
  };

  constructor(nc: NatsConnection, js: JetStreamClient, tasks: KV, options: ResolvedOptions) {
    this.#nc = nc;
    this.#js = js;
    this.#tasks = tasks;
    this.#o = options;
    this.#log = options.logger.child({ actor: options.actorId, model: options.runtime.name });
    this.#ticker = setInterval(() => this.#tick(), TICK_MS);
  }

  get model(): string {
    return this.#o.runtime.name;
  }

  stats(): ActorStats {
    return { inFlight: this.mailbox?.inFlight ?? 0, ...this.#stats };
  }

  async stop(): Promise<void> {
    await this.mailbox?.close();
    clearInterval(this.#ticker);
  }

  /** Brings one delivery to an ack, nak or term. Never throws. */
  async handle(msg: JsMsg): Promise<void> {
    let task: RequestEnvelope;
    try {
      task = decodeAs(requestEnvelopeSchema, msg.data, 'request', this.#o.decodeLimits);
    } catch (err) {
      await this.#poison(msg, err);
      return;
    }
    try {
      await this.#run(msg, task);
    } catch (err) {
      // Storing the outcome failed (NATS unavailable): the delivery is handed back and the task
      // tried again; nothing was acknowledged, so nothing is lost.
      this.#log.warn('could not finish task; handing it back', { task: task.id, err });
      msg.nak(1_000);
    }
  }

  async #run(msg: JsMsg, task: RequestEnvelope): Promise<void> {
    const attempt = msg.info.deliveryCount;
    if (attempt > 1) {
      const stored = await this.#readRecord(task.id);
      if (stored && FINAL_STATES.has(stored.record.state)) {
        this.#stats.reused += 1;
        this.#reply(task, stored);
        msg.ack();
        return;
      }
    }
    if (attempt > this.#o.maxAttempts) {
      // Reached only through the consumer's spare delivery: every attempt crashed or timed out.
      await this.#finishUnsuccessfully(msg, task, attempt - 1, TaskState.Dead, {
        code: ErrorCode.RetriesExhausted,
        message: `no attempt of ${this.#o.maxAttempts} completed (actor crash or timeout)`,
        retryable: false,
      });
      return;
    }
    if (Date.now() >= task.deadline) {
      await this.#finishUnsuccessfully(msg, task, attempt, TaskState.Failed, deadlineError());
      return;
    }

    const current = new Attempt(msg, task, attempt);
    this.#running.add(current);
    let result: unknown;
    let failure: WireError | undefined;
    try {
      result = await this.#o.runtime.run(task.input, task.params, {
        signal: current.abort.signal,
      });
    } catch (err) {
      failure =
        current.abort.signal.aborted && Date.now() >= task.deadline
          ? deadlineError()
          : toVigilError(err).toWire();
    } finally {
      this.#running.delete(current);
    }
    const startedAt = current.startedAt;
    if (current.marked) await current.marking;
    if (current.superseded) {
      // Another attempt already stored the outcome while this one ran.
      const stored = await this.#readRecord(task.id);
      if (stored) this.#reply(task, stored);
      msg.ack();
      return;
    }

    if (!failure) {
      const record = this.#record(task, attempt, TaskState.Succeeded, startedAt);
      record.result = result;
      const stored = await this.#finalize(record, current);
      this.#stats.succeeded += 1;
      this.#reply(task, stored);
      this.#emit(task, stored.record.state, stored.record.attempt);
      msg.ack();
      return;
    }

    const delay = this.#retryDelay(attempt);
    if (failure.retryable && attempt < this.#o.maxAttempts && Date.now() + delay < task.deadline) {
      this.#stats.retried += 1;
      this.#log.info('retrying task', { task: task.id, attempt, delayMs: delay, error: failure });
      this.#emit(task, TaskEventType.Retrying, attempt, { retryInMs: delay, error: failure });
      msg.nak(delay);
      return;
    }
    if (failure.retryable) {
      const exhausted: WireError = {
        code: ErrorCode.RetriesExhausted,
        message: `gave up after ${attempt} attempts; last error: ${failure.message}`,
        retryable: false,
      };
      await this.#finishUnsuccessfully(
        msg,
        task,
        attempt,
        TaskState.Dead,
        exhausted,
        startedAt,
        current,
      );
    } else {
      await this.#finishUnsuccessfully(
        msg,
        task,
        attempt,
        TaskState.Failed,
        failure,
        startedAt,
        current,
      );
    }
  }

  #retryDelay(attempt: number): number {
    const schedule = this.#o.retryScheduleMs;
    return schedule[Math.min(attempt - 1, schedule.length - 1)] ?? 1_000;
  }

  #record(
    task: RequestEnvelope,
    attempt: number,
    state: TaskRecord['state'],
    startedAt?: number,
  ): TaskRecord {
    const record: TaskRecord = {
      v: ENVELOPE_VERSION,
      id: task.id,
      tenant: task.tenant,
      model: task.model,
      version: this.#o.runtime.version,
      state,
      attempt,
      createdAt: task.createdAt,
      actor: this.#o.actorId,
    };
    if (startedAt !== undefined) record.startedAt = startedAt;
    if (FINAL_STATES.has(state)) record.finishedAt = Date.now();
    return record;
  }

  /** Dead-letters, stores the final record, replies, and terms the delivery. */
  async #finishUnsuccessfully(
    msg: JsMsg,
    task: RequestEnvelope,
    attempt: number,
    state: typeof TaskState.Failed | typeof TaskState.Dead,
    error: WireError,
    startedAt?: number,
    current?: Attempt,
  ): Promise<void> {
    const letter: DeadLetter = {
      v: ENVELOPE_VERSION,
      task,
      error,
      attempts: Math.max(1, attempt),
      deadAt: Date.now(),
      actor: this.#o.actorId,
    };
    // Dedup on the task id: a crash between this write and the term must not leave two letters.
    await this.#js.publish(subjects.deadLetter(this.#o.region, task.model), encode(letter), {
      msgID: `dlq-${task.id}`,
    });
    const record = this.#record(task, Math.max(1, attempt), state, startedAt);
    record.error = error;
    const stored = await this.#finalize(record, current);
    if (state === TaskState.Dead) this.#stats.deadLettered += 1;
    else this.#stats.failed += 1;
    this.#log.warn('task ended unsuccessfully', { task: task.id, state, attempt, error });
    this.#reply(task, stored);
    const { state: finalState, attempt: finalAttempt, error: finalError } = stored.record;
    this.#emit(task, finalState, finalAttempt, finalError ? { error: finalError } : {});
    msg.term(`${state}: ${error.code}`);
  }

  /**
   * Stores `record` as the task's outcome unless another attempt stored one first: the create or
   * update is conditional on the revision this attempt last saw, so exactly one final record is
   * ever written. Returns whichever record is stored.
   */
  async #finalize(record: TaskRecord, attempt?: Attempt): Promise<StoredRecord> {
    const payload = encode(record);
    let revision = attempt?.revision;
    for (let tries = 0; tries < 5; tries += 1) {
      try {
        if (revision === undefined) await this.#tasks.create(record.id, payload);
        else await this.#tasks.update(record.id, payload, revision);
        return { record, payload };
      } catch (err) {
        if (!isWrongRevision(err)) throw err;
        const entry = await this.#tasks.get(record.id);
        const current = entry?.operation === 'PUT' ? this.#decodeRecord(entry.value) : undefined;
        if (entry && current && FINAL_STATES.has(current.state)) {
          return { record: current, payload: entry.value };
        }
        revision = entry?.revision;
      }
    }
    throw new Error(`could not store the outcome of task ${record.id}: the record kept changing`);
  }

  /** Writes a `running` record for a long task, learning whether another attempt already finished. */
  #markRunning(attempt: Attempt): void {
    const { task } = attempt;
    const payload = encode(
      this.#record(task, attempt.number, TaskState.Running, attempt.startedAt),
    );
    attempt.marking = (async () => {
      try {
        attempt.revision = await this.#tasks.create(task.id, payload);
        this.#emit(task, TaskEventType.Running, attempt.number);
      } catch (err) {
        if (!isWrongRevision(err)) return;
        const entry = await this.#tasks.get(task.id);
        const current = entry?.operation === 'PUT' ? this.#decodeRecord(entry.value) : undefined;
        if (current && FINAL_STATES.has(current.state)) {
          attempt.superseded = true;
          attempt.abort.abort();
        } else if (entry) {
          attempt.revision = await this.#tasks
            .update(task.id, payload, entry.revision)
            .catch(() => entry.revision);
        }
      }
    })().catch((err: unknown) =>
      this.#log.warn('could not mark task running', { task: task.id, err }),
    );
  }

  /**
   * One timer per actor instead of three per task: every tick, attempts past their deadline are
   * aborted, long ones send an in-progress ack (so the ack wait never expires under them) and
   * get their `running` record.
   */
  #tick(): void {
    const now = Date.now();
    const workingEveryMs = Math.max(1_000, this.#o.ackWaitMs / 3);
    for (const attempt of this.#running) {
      if (now >= attempt.task.deadline) attempt.abort.abort();
      if (now - attempt.lastSignalAt >= workingEveryMs) {
        attempt.msg.working();
        attempt.lastSignalAt = now;
      }
      if (!attempt.marked && now - attempt.startedAt >= this.#o.runningMarkAfterMs) {
        attempt.marked = true;
        this.#markRunning(attempt);
      }
    }
  }

  async #readRecord(taskId: string): Promise<StoredRecord | undefined> {
    const entry = await this.#tasks.get(taskId);
    if (entry?.operation !== 'PUT') return undefined;
    const record = this.#decodeRecord(entry.value);
    return record && { record, payload: entry.value };
  }

  #decodeRecord(bytes: Uint8Array): TaskRecord | undefined {
    try {
      return decodeAs(taskRecordSchema, bytes, 'task record');
    } catch (err) {
      this.#log.error('stored task record is unreadable', { err });
      return undefined;
    }
  }

  /** Tells the waiting client, if any, over core NATS. Best effort: the client also polls. */
  #reply(task: RequestEnvelope, stored: StoredRecord): void {
    if (!task.replyTo) return;
    try {
      this.#nc.publish(task.replyTo, stored.payload);
    } catch (err) {
      this.#log.debug('reply not sent', { task: task.id, err });
    }
  }

  /** Publishes a lifecycle event on core NATS: a notification, never part of the guarantee. */
  #emit(
    task: RequestEnvelope,
    type: TaskEvent['type'],
    attempt: number,
    extra: Pick<TaskEvent, 'retryInMs' | 'error'> = {},
  ): void {
    const event: TaskEvent = {
      v: ENVELOPE_VERSION,
      type,
      taskId: task.id,
      tenant: task.tenant,
      model: task.model,
      attempt,
      at: Date.now(),
      ...extra,
    };
    try {
      this.#nc.publish(subjects.event(this.#o.region, task.tenant, task.id), encode(event));
    } catch (err) {
      this.#log.debug('event not sent', { task: task.id, err });
    }
  }

  /** A payload no actor can read: dead-letter the raw bytes and term, so it is never retried. */
  async #poison(msg: JsMsg, err: unknown): Promise<void> {
    const error = toVigilError(err).toWire();
    this.#log.error('undecodable request dead-lettered', {
      subject: msg.subject,
      seq: msg.seq,
      error,
    });
    try {
      const hdrs = natsHeaders();
      hdrs.set('Vigil-Error', `${error.code}: ${error.message}`.slice(0, 1024));
      await this.#js.publish(subjects.deadLetter(this.#o.region, this.#o.runtime.name), msg.data, {
        msgID: `dlq-seq-${msg.seq}`,
        headers: hdrs,
      });
      this.#stats.deadLettered += 1;
      msg.term(`undecodable: ${error.message}`.slice(0, 256));
    } catch (publishErr) {
      this.#log.warn('could not dead-letter undecodable request', { err: publishErr });
      msg.nak(1_000);
    }
  }
}

/** A final record as stored, with its bytes, which are also the reply. */
interface StoredRecord {
  record: TaskRecord;
  payload: Uint8Array;
}

/** One attempt at a task while it runs, and what it learned about the task's record. */
class Attempt {
  readonly startedAt = Date.now();
  readonly abort = new AbortController();
  /** When the server last heard from this attempt (delivery or in-progress ack). */
  lastSignalAt = this.startedAt;
  /** A `running` record has been asked for. */
  marked = false;
  /** Revision of the `running` record this attempt wrote, for the conditional final write. */
  revision: number | undefined;
  /** Another attempt stored the outcome first: this attempt's result is discarded. */
  superseded = false;
  marking: Promise<void> = Promise.resolve();

  constructor(
    readonly msg: JsMsg,
    readonly task: RequestEnvelope,
    readonly number: number,
  ) {}
}

function deadlineError(): WireError {
  return {
    code: ErrorCode.DeadlineExceeded,
    message: 'the task deadline passed',
    retryable: false,
  };
}

function isWrongRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
