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
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
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
  BreakerState,
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
import {
  MESSAGING_SYSTEM_NATS,
  MessagingAttr,
  natsHeaderGetter,
} from '../protocol/trace-context.js';
import {
  CIRCUIT_BREAKER_DEFAULTS,
  createCircuitBreaker,
  type CircuitBreaker,
  type CircuitBreakerOptions,
} from './circuit-breaker.js';
import { ExecutorGoneError } from './executors/errors.js';
import type { RunOptions } from './executors/executor.js';
import { pino, type Logger } from 'pino';
import { openMailbox, type Mailbox } from './mailbox.js';
import { builtinOutputCheck, type OutputCheck } from './runtimes/index.js';
import { createTaskMetrics, TaskOutcome, type TaskMetrics } from './task-metrics.js';

/**
 * Spans of the consumer side: each delivery is an attempt (a `process` span whose parent is the
 * producer's span from the message headers), with the time spent queued, the model run, the
 * result's store and the reply as its parts. A no-op until a node starts the SDK.
 */
const tracer = trace.getTracer('vigil.actor');

/** The logger of an actor not given one. */
const SILENT = pino({ level: 'silent' });

/** Options of {@link createInferenceActor}. */
export interface InferenceActorOptions {
  region: string;
  /** Where the model runs (see {@link ModelHandle}). */
  model: ModelHandle;
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
  /** The actor's circuit breaker. */
  breaker?: CircuitBreakerOptions;
  /** Called when the actor's state or breaker changes (the host writes a heartbeat at once). */
  onChange?: () => void;
  logger?: Logger;
}

/**
 * The model as the actor sees it: a runtime in the host's thread, or an executor in a worker
 * thread or child process under a supervisor. `run` rejects with the model's coded error.
 */
export interface ModelHandle {
  readonly name: string;
  readonly version: string;
  readonly isolation: string;
  /** PID of the process running the model. */
  readonly pid: number;
  /** Times the model's executor was restarted. */
  readonly restarts: number;
  /** False while the executor is being restarted (or has been given up on). */
  readonly available: boolean;
  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    options: RunOptions,
  ): Promise<unknown>;
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
  /** Runs whose outcome was discarded because another attempt stored one first. */
  superseded: number;
  /** Model runs that ended in an error (any kind). */
  errors: number;
  /** Model runs finished, successful or not. */
  processed: number;
  /** Run latency over the last {@link LATENCY_SAMPLES} runs, ms. */
  latencyMs: { p50: number; p99: number };
  breaker: BreakerState;
  draining: boolean;
}

/** Runs kept for the latency percentiles in heartbeats. */
const LATENCY_SAMPLES = 256;

/** A running inference actor. */
export interface InferenceActor {
  readonly model: string;
  stats(): ActorStats;
  /**
   * Stops pulling, lets in-flight tasks finish for up to `graceMs`, then hands the rest back for
   * immediate redelivery and waits for them to settle. Idempotent.
   */
  drain(graceMs: number): Promise<void>;
  /** `drain(0)`. */
  stop(): Promise<void>;
}

/** Creates the model's consumer if needed and starts an actor on it. */
export async function createInferenceActor(
  nc: NatsConnection,
  options: InferenceActorOptions,
): Promise<InferenceActor> {
  const o = { ...INFERENCE_ACTOR_DEFAULTS, logger: SILENT, ...options };
  const js = jetstream(nc);
  const jsm = await js.jetstreamManager();
  const consumer = await ensureModelConsumer(jsm, {
    region: o.region,
    model: o.model.name,
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

type ResolvedOptions = Required<
  Omit<InferenceActorOptions, 'decodeLimits' | 'breaker' | 'onChange'>
> &
  Pick<InferenceActorOptions, 'decodeLimits' | 'breaker' | 'onChange'>;

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
  readonly #stats = {
    succeeded: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    reused: 0,
    superseded: 0,
    errors: 0,
    processed: 0,
  };
  readonly #latencies: number[] = [];
  readonly #breaker: CircuitBreaker;
  #probeTimer: NodeJS.Timeout | undefined;
  /** When the housekeeping timer last noticed the process had been stalled, epoch ms. */
  #stalledAt = 0;
  #lastTick = Date.now();
  /** Tasks that were running when their executor died (bounded: oldest forgotten first). */
  readonly #suspects = new BoundedSet<string>(MAX_SUSPECTS);
  readonly #attemptSpans = new RecentAttemptSpans(MAX_REMEMBERED_ATTEMPTS);
  readonly #gate = new RunGate();
  #draining: Promise<void> | undefined;
  readonly #metrics: TaskMetrics;
  /** The model's output checks (built-in models only: the runtime itself may be out of process). */
  readonly #checkOutput: OutputCheck | undefined;
  /** Span attributes common to every task of this actor, built once. */
  readonly #spanAttributes: Attributes;

  constructor(nc: NatsConnection, js: JetStreamClient, tasks: KV, options: ResolvedOptions) {
    this.#nc = nc;
    this.#js = js;
    this.#tasks = tasks;
    this.#o = options;
    this.#log = options.logger.child({ actor: options.actorId, model: options.model.name });
    this.#ticker = setInterval(() => this.#tick(), TICK_MS);
    this.#breaker = createCircuitBreaker(options.breaker);
    this.#breaker.onChange((state) => this.#onBreakerChange(state));
    this.#metrics = createTaskMetrics(options.model.name, options.region);
    this.#checkOutput = builtinOutputCheck(options.model.name);
    this.#spanAttributes = {
      [MessagingAttr.System]: MESSAGING_SYSTEM_NATS,
      [MessagingAttr.DestinationTemplate]: `vigil.req.${options.region}.${options.model.name}.{priority}.{task_id}`,
      [MessagingAttr.OperationType]: 'process',
      [MessagingAttr.Model]: options.model.name,
      [MessagingAttr.Region]: options.region,
    };
  }

  get model(): string {
    return this.#o.model.name;
  }

  stats(): ActorStats {
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    const pick = (q: number): number =>
      sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    return {
      inFlight: this.mailbox?.inFlight ?? 0,
      ...this.#stats,
      latencyMs: { p50: pick(0.5), p99: pick(0.99) },
      breaker: this.#breaker.state,
      draining: this.#draining !== undefined,
    };
  }

  drain(graceMs: number): Promise<void> {
    this.#draining ??= (async () => {
      clearTimeout(this.#probeTimer);
      this.#o.onChange?.();
      const mailbox = this.mailbox;
      if (mailbox) {
        await mailbox.pause();
        if (!(await mailbox.idle(graceMs))) {
          // Past the grace period: abort what still runs; each attempt hands its delivery back.
          for (const attempt of this.#running) {
            attempt.handedBack = true;
            attempt.abort.abort();
          }
        }
        await mailbox.close();
      }
      clearInterval(this.#ticker);
    })();
    return this.#draining;
  }

  stop(): Promise<void> {
    return this.drain(0);
  }

  /**
   * An open breaker stops the pulling (the work waits in the stream, burning no attempts); after
   * the cooldown a half-open breaker lets one task at a time through as a probe.
   */
  #onBreakerChange(state: BreakerState): void {
    this.#log.warn({ state, failureRatio: this.#breaker.failureRatio() }, 'circuit breaker');
    this.#o.onChange?.();
    if (this.#draining || !this.mailbox) return;
    clearTimeout(this.#probeTimer);
    if (state === BreakerState.Open) {
      void this.mailbox.pause();
      // Reading the state after the cooldown moves it to half-open, which resumes the pulling.
      this.#probeTimer = setTimeout(
        () => void this.#breaker.state,
        this.#o.breaker?.cooldownMs ?? CIRCUIT_BREAKER_DEFAULTS.cooldownMs,
      );
    } else if (state === BreakerState.HalfOpen) {
      this.mailbox.resume(1);
    } else {
      // Back to full prefetch: the probe's session pulled one at a time.
      const mailbox = this.mailbox;
      void mailbox.pause().then(() => mailbox.resume());
    }
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
    const receivedAt = Date.now();
    const attempt = msg.info.deliveryCount;
    const producer = propagation.extract(ROOT_CONTEXT, msg.headers, natsHeaderGetter);
    if (attempt === 1) {
      // The wait in the queue, from acceptance to this delivery: the gap Jaeger would otherwise
      // show as empty between the publish and the processing.
      tracer
        .startSpan(
          `queued ${task.model}`,
          {
            startTime: task.createdAt,
            attributes: { ...this.#spanAttributes, [MessagingAttr.TaskId]: task.id },
          },
          producer,
        )
        .end(receivedAt);
    }
    // Each attempt is its own span under the producer's, numbered; a retry is its sibling and,
    // when this actor ran the attempt before, links to it.
    const previous = attempt > 1 ? this.#attemptSpans.get(task.id) : undefined;
    const span = tracer.startSpan(
      `process ${task.model}`,
      {
        kind: SpanKind.CONSUMER,
        startTime: receivedAt,
        ...(previous
          ? { links: [{ context: previous, attributes: { [MessagingAttr.Attempt]: attempt - 1 } }] }
          : {}),
        attributes: {
          ...this.#spanAttributes,
          [MessagingAttr.DestinationName]: msg.subject,
          [MessagingAttr.MessageId]: task.id,
          [MessagingAttr.TaskId]: task.id,
          [MessagingAttr.Attempt]: attempt,
        },
      },
      producer,
    );
    this.#attemptSpans.remember(task.id, span.spanContext());
    try {
      await context.with(trace.setSpan(producer, span), () => this.#run(msg, task, span));
    } catch (err) {
      // Storing the outcome failed (NATS unavailable): the delivery is handed back and the task
      // tried again; nothing was acknowledged, so nothing is lost.
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'could not finish task' });
      this.#log.warn({ task_id: task.id, err }, 'could not finish task; handing it back');
      msg.nak(1_000);
    } finally {
      span.end();
    }
  }

  async #run(msg: JsMsg, task: RequestEnvelope, span: Span): Promise<void> {
    const attempt = msg.info.deliveryCount;
    // After a redelivery, or when this process was stalled long enough for its deliveries to be
    // redelivered elsewhere (SIGSTOP, a long GC pause), another attempt may have finished already.
    if (attempt > 1 || Date.now() - this.#stalledAt < this.#o.ackWaitMs) {
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
    // A task that was running when its executor died may be the one that killed it: it runs
    // alone next time, so a poison task cannot keep burning its neighbours' attempts.
    const suspect = this.#suspects.has(task.id);
    this.#running.add(current); // in-progress acks go out while it waits at the gate, too
    const release = await this.#gate.acquire(suspect);
    current.started = true;
    let result: unknown;
    let failure: WireError | undefined;
    const inference = tracer.startSpan(`infer ${task.model}`, {
      attributes: {
        [MessagingAttr.Model]: task.model,
        'vigil.model.version': this.#o.model.version,
      },
    });
    try {
      result = await this.#o.model.run(task.input, task.params, {
        deadline: task.deadline,
        signal: current.abort.signal,
        onProgress: (fraction, message) => current.reportProgress(fraction, message),
      });
    } catch (err) {
      failure = Date.now() >= task.deadline ? deadlineError() : toVigilError(err).toWire();
      current.executorDied = err instanceof ExecutorGoneError;
      inference.setStatus({ code: SpanStatusCode.ERROR, message: failure.code });
    } finally {
      this.#running.delete(current);
      release();
      inference.end();
    }
    if (current.executorDied) this.#suspects.add(task.id);
    else if (suspect) this.#suspects.delete(task.id);
    const startedAt = current.startedAt;
    this.#recordRun(Date.now() - startedAt, failure);
    if (current.handedBack) {
      // Drained past the grace period: not this attempt's failure, the next one runs it.
      msg.nak();
      return;
    }
    if (current.marked) await current.marking;
    if (current.superseded) {
      this.#stats.superseded += 1;
      // Another attempt already stored the outcome while this one ran.
      const stored = await this.#readRecord(task.id);
      if (stored) this.#reply(task, stored);
      msg.ack();
      return;
    }

    if (!failure) {
      const problem = this.#checkOutput?.(result);
      if (problem !== undefined) {
        // Data quality, not a failure: the output is delivered, and the failure counted and traced.
        this.#metrics.outputCheckFailed();
        span.addEvent('output check failed', { 'vigil.output_check.problem': problem });
        this.#log.warn({ task_id: task.id, problem }, 'model output failed its check');
      }
      const record = this.#record(task, attempt, TaskState.Succeeded, startedAt);
      record.result = result;
      const stored = await this.#finalize(record, current);
      this.#reply(task, stored);
      if (stored.record === record) {
        this.#stats.succeeded += 1;
        this.#metrics.finished(TaskOutcome.Succeeded, task.createdAt);
        this.#emit(task, stored.record.state, stored.record.attempt);
      } else {
        // A newer attempt stored its outcome first (this one was stalled): that outcome stands,
        // and it was announced by the attempt that stored it.
        this.#stats.superseded += 1;
      }
      msg.ack();
      return;
    }

    // The model's executor died under this task (the supervisor is restarting it): hand the
    // task back at once rather than after a backoff; the crash still counts as an attempt.
    const delay = current.executorDied ? 0 : this.#retryDelay(attempt);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.code });
    if (failure.retryable && attempt < this.#o.maxAttempts && Date.now() + delay < task.deadline) {
      this.#stats.retried += 1;
      this.#metrics.retried();
      span.setAttribute('vigil.retry_in_ms', delay);
      this.#log.info(
        {
          task_id: task.id,
          attempt,
          delayMs: delay,
          error: failure,
        },
        'retrying task',
      );
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

  /** Counts a finished run and feeds the breaker: only model failures say the model is sick. */
  #recordRun(latencyMs: number, failure: WireError | undefined): void {
    this.#stats.processed += 1;
    this.#metrics.modelRun(latencyMs);
    if (this.#latencies.length >= LATENCY_SAMPLES) this.#latencies.shift();
    this.#latencies.push(latencyMs);
    if (failure) this.#stats.errors += 1;
    const modelFault =
      failure !== undefined && failure.retryable && failure.code !== ErrorCode.DeadlineExceeded;
    if (!failure || modelFault) this.#breaker.record(!failure);
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
      version: this.#o.model.version,
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
    // Dedup on the task and its request message: a crash between this write and the term must
    // not leave two letters, while a replayed task (a new request message) can die again.
    await this.#js.publish(subjects.deadLetter(this.#o.region, task.model), encode(letter), {
      msgID: `dlq-${task.id}-${msg.info.streamSequence}`,
    });
    const record = this.#record(task, Math.max(1, attempt), state, startedAt);
    record.error = error;
    const stored = await this.#finalize(record, current);
    if (state === TaskState.Dead) this.#stats.deadLettered += 1;
    else this.#stats.failed += 1;
    if (stored.record === record) {
      this.#metrics.finished(
        state === TaskState.Dead ? TaskOutcome.Dead : TaskOutcome.Failed,
        task.createdAt,
      );
    }
    this.#log.warn({ task_id: task.id, state, attempt, error }, 'task ended unsuccessfully');
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
    const span = tracer.startSpan(`store ${record.model}`, {
      attributes: { [MessagingAttr.TaskId]: record.id, 'vigil.task.state': record.state },
    });
    try {
      const stored = await this.#compareAndSet(record, attempt);
      if (stored.record !== record) span.setAttribute('vigil.superseded', true);
      return stored;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  }

  /** {@link #finalize}'s conditional write. */
  async #compareAndSet(record: TaskRecord, attempt?: Attempt): Promise<StoredRecord> {
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
        if (attempt.progress) await this.#writeProgress(attempt);
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
      this.#log.warn({ task_id: task.id, err }, 'could not mark task running'),
    );
  }

  /**
   * Stores an attempt's latest progress in its `running` record (conditional on the revision this
   * attempt wrote, so it never overwrites another attempt's record) and tells subscribers.
   */
  async #writeProgress(attempt: Attempt): Promise<void> {
    const progress = attempt.progress;
    if (!progress || attempt.revision === undefined || attempt.superseded) return;
    attempt.progressDirty = false;
    const record = this.#record(attempt.task, attempt.number, TaskState.Running, attempt.startedAt);
    record.progress = progress;
    try {
      attempt.revision = await this.#tasks.update(
        attempt.task.id,
        encode(record),
        attempt.revision,
      );
      this.#emit(attempt.task, TaskEventType.Progress, attempt.number, { progress });
    } catch (err) {
      // Another attempt wrote the record since: progress is advisory, the final write decides.
      if (!isWrongRevision(err))
        this.#log.debug({ task_id: attempt.task.id, err }, 'progress not stored');
    }
  }

  /**
   * One timer per actor instead of three per task: every tick, attempts past their deadline are
   * aborted, long ones send an in-progress ack (so the ack wait never expires under them) and
   * get their `running` record.
   */
  #tick(): void {
    const now = Date.now();
    if (now - this.#lastTick > this.#o.ackWaitMs / 2) {
      this.#stalledAt = now;
      this.#log.warn(
        {
          stalledMs: now - this.#lastTick,
        },
        'the process was stalled; checking stored outcomes before running',
      );
    }
    this.#lastTick = now;
    const workingEveryMs = Math.max(1_000, this.#o.ackWaitMs / 3);
    for (const attempt of this.#running) {
      if (now >= attempt.task.deadline) attempt.abort.abort();
      if (now - attempt.lastSignalAt >= workingEveryMs) {
        attempt.msg.working();
        attempt.lastSignalAt = now;
      }
      if (
        attempt.started &&
        !attempt.marked &&
        (attempt.progress || now - attempt.startedAt >= this.#o.runningMarkAfterMs)
      ) {
        attempt.marked = true;
        this.#markRunning(attempt);
      } else if (attempt.progressDirty && !attempt.writingProgress) {
        attempt.writingProgress = true;
        void this.#writeProgress(attempt).finally(() => (attempt.writingProgress = false));
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
      this.#log.error({ err }, 'stored task record is unreadable');
      return undefined;
    }
  }

  /** Tells the waiting client, if any, over core NATS. Best effort: the client also polls. */
  #reply(task: RequestEnvelope, stored: StoredRecord): void {
    if (!task.replyTo) return;
    const span = tracer.startSpan('send reply', {
      kind: SpanKind.PRODUCER,
      attributes: {
        [MessagingAttr.System]: MESSAGING_SYSTEM_NATS,
        [MessagingAttr.OperationType]: 'send',
        [MessagingAttr.TaskId]: task.id,
      },
    });
    try {
      this.#nc.publish(task.replyTo, stored.payload);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      this.#log.debug({ task_id: task.id, err }, 'reply not sent');
    } finally {
      span.end();
    }
  }

  /** Publishes a lifecycle event on core NATS: a notification, never part of the guarantee. */
  #emit(
    task: RequestEnvelope,
    type: TaskEvent['type'],
    attempt: number,
    extra: Pick<TaskEvent, 'retryInMs' | 'error' | 'progress'> = {},
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
      this.#log.debug({ task_id: task.id, err }, 'event not sent');
    }
  }

  /** A payload no actor can read: dead-letter the raw bytes and term, so it is never retried. */
  async #poison(msg: JsMsg, err: unknown): Promise<void> {
    const error = toVigilError(err).toWire();
    this.#log.error(
      {
        subject: msg.subject,
        seq: msg.seq,
        error,
      },
      'undecodable request dead-lettered',
    );
    try {
      const hdrs = natsHeaders();
      hdrs.set('Vigil-Error', `${error.code}: ${error.message}`.slice(0, 1024));
      await this.#js.publish(subjects.deadLetter(this.#o.region, this.#o.model.name), msg.data, {
        msgID: `dlq-seq-${msg.seq}`,
        headers: hdrs,
      });
      this.#stats.deadLettered += 1;
      this.#metrics.undecodable();
      msg.term(`undecodable: ${error.message}`.slice(0, 256));
    } catch (publishErr) {
      this.#log.warn({ err: publishErr }, 'could not dead-letter undecodable request');
      msg.nak(1_000);
    }
  }
}

/** Suspect task ids remembered per actor. */
const MAX_SUSPECTS = 1024;
/**
 * Attempts remembered for linking their retries. A retry that lands on another actor, or after
 * this many later tasks, is still numbered and under the same producer span, just not linked.
 */
const MAX_REMEMBERED_ATTEMPTS = 4096;

/** A set that forgets its oldest entries past `limit`. */
/** Span contexts of the last attempt per task, to link a retry to it; oldest forgotten first. */
class RecentAttemptSpans {
  readonly #byTask = new Map<string, SpanContext>();
  constructor(readonly limit: number) {}
  get(taskId: string): SpanContext | undefined {
    return this.#byTask.get(taskId);
  }
  remember(taskId: string, span: SpanContext): void {
    this.#byTask.delete(taskId); // re-inserted last: the newest stays longest
    this.#byTask.set(taskId, span);
    if (this.#byTask.size > this.limit) this.#byTask.delete(this.#byTask.keys().next().value!);
  }
}

class BoundedSet<T> {
  readonly #items = new Set<T>();
  constructor(readonly limit: number) {}
  has(item: T): boolean {
    return this.#items.has(item);
  }
  add(item: T): void {
    this.#items.add(item);
    if (this.#items.size > this.limit) this.#items.delete(this.#items.values().next().value as T);
  }
  delete(item: T): void {
    this.#items.delete(item);
  }
}

/**
 * Shared runs go together; an exclusive run waits for them to end and runs alone. Exclusive
 * requests are served before new shared ones, so a suspect is not starved by a busy queue.
 */
class RunGate {
  #shared = 0;
  #exclusive = false;
  #exclusiveWaiting = 0;
  #wakers: (() => void)[] = [];

  async acquire(exclusive: boolean): Promise<() => void> {
    if (exclusive) this.#exclusiveWaiting += 1;
    while (this.#exclusive || (exclusive ? this.#shared > 0 : this.#exclusiveWaiting > 0)) {
      await new Promise<void>((resolve) => this.#wakers.push(resolve));
    }
    if (exclusive) {
      this.#exclusiveWaiting -= 1;
      this.#exclusive = true;
    } else {
      this.#shared += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (exclusive) this.#exclusive = false;
      else this.#shared -= 1;
      const wakers = this.#wakers;
      this.#wakers = [];
      for (const wake of wakers) wake();
    };
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
  /** The host drained past its grace period: the delivery goes back, unjudged. */
  handedBack = false;
  /** The model's executor died during the run. */
  executorDied = false;
  /** Past the run gate: the model is running. */
  started = false;
  marking: Promise<void> = Promise.resolve();
  /** Latest progress the model reported, and whether it is newer than the stored one. */
  progress: { fraction: number; message?: string } | undefined;
  progressDirty = false;
  writingProgress = false;

  reportProgress(fraction: number, message?: string): void {
    if (!Number.isFinite(fraction)) return;
    this.progress = { fraction: Math.min(1, Math.max(0, fraction)) };
    if (message !== undefined) this.progress.message = message.slice(0, 256);
    this.progressDirty = true;
  }

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
