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
 *
 * This file is the actor's public face and its wiring, and what the circuit breaker and a drain do
 * to the mailbox. A task's path continues in `task-delivery.ts` (one delivery, judged), then
 * `attempt.ts` (one run of the model), `task-records.ts` (the compare-and-set final record) and
 * `replies.ts` (the reply and lifecycle events); failures end in `dead-letters.ts`.
 */
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino, type Logger } from 'pino';
import {
  assetNames,
  BreakerState,
  ensureModelConsumer,
  eventRetentionOf,
  MODEL_CONSUMER_DEFAULTS,
  requestByteLimit,
  type DecodeLimits,
} from '../protocol/index.js';
import { createActorSpans } from './actor-spans.js';
import { createActorTally, type ActorStats, type ActorTally } from './actor-stats.js';
import { startAttempts, type Attempts } from './attempt.js';
import {
  CIRCUIT_BREAKER_DEFAULTS,
  createCircuitBreaker,
  type CircuitBreaker,
  type CircuitBreakerOptions,
} from './circuit-breaker.js';
import { createDeadLetters } from './dead-letters.js';
import { openMailbox, type Mailbox } from './mailbox.js';
import type { ModelHandle } from './model-handle.js';
import { createReplies } from './replies.js';
import { builtinOutputCheck } from './runtimes/index.js';
import { createDeliveryHandler, type DeliveryHandler } from './task-delivery.js';
import { createTaskMetrics } from './task-metrics.js';
import { createTaskRecords } from './task-records.js';
import { createTokenEvents } from './token-events.js';
import { watchCancellations, type Cancellations } from './cancellations.js';

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

/** Defaults of {@link InferenceActorOptions}. */
export const INFERENCE_ACTOR_DEFAULTS = {
  concurrency: 4,
  maxAttempts: MODEL_CONSUMER_DEFAULTS.maxAttempts,
  retryScheduleMs: [1_000, 5_000, 15_000, 30_000] as readonly number[],
  ackWaitMs: MODEL_CONSUMER_DEFAULTS.ackWaitMs,
  runningMarkAfterMs: 1_000,
} as const;

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
  const bucketLimit = (await tasks.status()).maxValueSize;
  // A record must fit the bucket, the server's max_payload and what a reader decodes.
  const maxRecordBytes = Math.min(
    requestByteLimit(nc.info?.max_payload),
    bucketLimit > 0 ? bucketLimit : Infinity,
  );
  const eventRetentionMs = await eventRetentionOf(jsm, o.region);
  const cancels = await new Kvm(js).open(assetNames.cancelBucket(o.region));
  const actor = new InferenceActorImpl(nc, js, tasks, cancels, {
    ...o,
    maxRecordBytes,
    eventRetentionMs,
  });
  actor.mailbox = await openMailbox(
    js,
    { stream: assetNames.requestStream(o.region), consumer, concurrency: o.concurrency },
    actor.handle,
  );
  return actor;
}

type ResolvedOptions = Required<
  Omit<InferenceActorOptions, 'decodeLimits' | 'breaker' | 'onChange'>
> &
  Pick<InferenceActorOptions, 'decodeLimits' | 'breaker' | 'onChange'> & {
    /** Largest task record this actor can store (found at start-up). */
    maxRecordBytes: number;
    /** How long the region keeps task events past a task's deadline, ms (found at start-up). */
    eventRetentionMs: number;
  };

class InferenceActorImpl implements InferenceActor {
  mailbox: Mailbox | undefined;
  /** The mailbox's handler: one delivery to an ack, nak or term. */
  readonly handle: DeliveryHandler;
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  readonly #attempts: Attempts;
  readonly #tally: ActorTally;
  readonly #breaker: CircuitBreaker;
  #probeTimer: NodeJS.Timeout | undefined;
  #draining: Promise<void> | undefined;

  readonly #cancellations: Cancellations;

  constructor(nc: NatsConnection, js: JetStreamClient, tasks: KV, cancels: KV, o: ResolvedOptions) {
    this.#o = o;
    const log = o.logger.child({ actor: o.actorId, model: o.model.name });
    this.#log = log;
    this.#breaker = createCircuitBreaker(o.breaker);
    this.#breaker.onChange((state) => this.#onBreakerChange(state));
    const metrics = createTaskMetrics(o.model.name, o.region);
    this.#tally = createActorTally(this.#breaker, metrics);
    const counts = this.#tally.counts;
    const spans = createActorSpans(o.region, o.model.name);
    const replies = createReplies(nc, o.region, spans, log, o.eventRetentionMs);
    const records = createTaskRecords(tasks, {
      actorId: o.actorId,
      model: o.model,
      spans,
      replies,
      maxRecordBytes: o.maxRecordBytes,
      log,
    });
    this.#attempts = startAttempts({
      model: o.model,
      records,
      spans,
      tally: this.#tally,
      ackWaitMs: o.ackWaitMs,
      runningMarkAfterMs: o.runningMarkAfterMs,
      tokens: createTokenEvents(js, { region: o.region, retentionMs: o.eventRetentionMs, log }),
      log,
    });
    this.#cancellations = watchCancellations(cancels, log);
    this.handle = createDeliveryHandler({
      model: o.model.name,
      maxAttempts: o.maxAttempts,
      retryScheduleMs: o.retryScheduleMs,
      decodeLimits: o.decodeLimits,
      // Built-in models only: the runtime itself may be out of process.
      checkOutput: builtinOutputCheck(o.model.name),
      attempts: this.#attempts,
      cancellations: this.#cancellations,
      records,
      replies,
      deadLetters: createDeadLetters(js, {
        region: o.region,
        model: o.model.name,
        actorId: o.actorId,
        counts,
        metrics,
        log,
      }),
      spans,
      counts,
      metrics,
      log,
    });
  }

  get model(): string {
    return this.#o.model.name;
  }

  stats(): ActorStats {
    return this.#tally.stats(this.mailbox?.inFlight ?? 0, this.#draining !== undefined);
  }

  drain(graceMs: number): Promise<void> {
    this.#draining ??= (async () => {
      clearTimeout(this.#probeTimer);
      this.#o.onChange?.();
      const mailbox = this.mailbox;
      if (mailbox) {
        await mailbox.pause();
        // Past the grace period: abort what still runs; each attempt hands its delivery back.
        if (!(await mailbox.idle(graceMs))) this.#attempts.handBackAll();
        await mailbox.close();
      }
      this.#attempts.stop();
      this.#cancellations.close();
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
}
