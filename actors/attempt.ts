/**
 * One attempt's life: the delivery waits at the run gate, the model runs with an abort signal,
 * and while it runs the actor's one housekeeping timer keeps the delivery alive (in-progress acks
 * at a third of the ack wait), writes the `running` record of a long attempt and its progress, and
 * aborts it at the task's deadline. What becomes of the outcome is `task-delivery.ts`'s to decide.
 */
import type { JsMsg } from '@nats-io/jetstream';
import { SpanStatusCode } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  CancelReason,
  ErrorCode,
  toVigilError,
  type CancelRequest,
  type RequestEnvelope,
  type WireError,
} from '../protocol/index.js';
import type { ActorSpans } from './actor-spans.js';
import type { ActorTally } from './actor-stats.js';
import { ExecutorGoneError } from './executors/index.js';
import type { ModelHandle } from './model-handle.js';
import { createRunGate } from './run-gate.js';
import type { TaskRecords } from './task-records.js';
import type { TokenEvents } from './token-events.js';

/**
 * Period of the actor's housekeeping timer, ms: deadlines are enforced, and in-progress acks and
 * `running` records sent, to within this.
 */
const TICK_MS = 250;

/** One attempt at a task while it runs, and what it learned about the task's record. */
export interface Attempt {
  readonly msg: JsMsg;
  readonly task: RequestEnvelope;
  /** 1 for the first delivery. */
  readonly number: number;
  /** When the attempt began (before the run gate), epoch ms. */
  readonly startedAt: number;
  readonly abort: AbortController;
  /** When the server last heard from this attempt (delivery or in-progress ack). */
  lastSignalAt: number;
  /** A `running` record has been asked for. */
  marked: boolean;
  /** Settles when the `running` record's write has. */
  marking: Promise<void>;
  /** Revision of the `running` record this attempt wrote, for the conditional final write. */
  revision: number | undefined;
  /** Another attempt stored the outcome first: this attempt's result is discarded. */
  superseded: boolean;
  /** The host drained past its grace period: the delivery goes back, unjudged. */
  handedBack: boolean;
  /** The model's executor died during the run. */
  executorDied: boolean;
  /** Past the run gate: the model is running. */
  started: boolean;
  /** Latest progress the model reported. */
  progress: { fraction: number; message?: string } | undefined;
  /** `progress` is newer than the stored one. */
  progressDirty: boolean;
  /** A progress write is under way: the next waits a tick, so two never race on the revision. */
  writingProgress: boolean;
  /** The task was cancelled while this attempt ran: its run was aborted for this reason. */
  cancelled: CancelRequest | undefined;
}

/** How an attempt's run ended: a result, or the failure as it crosses the wire. */
export interface AttemptRun {
  attempt: Attempt;
  result: unknown;
  failure: WireError | undefined;
}

/** Options of {@link startAttempts}. */
export interface AttemptsOptions {
  model: ModelHandle;
  records: TaskRecords;
  spans: ActorSpans;
  tally: ActorTally;
  /** The consumer's ack wait, ms. */
  ackWaitMs: number;
  /** A task still running after this long gets a `running` record, ms. */
  runningMarkAfterMs: number;
  /** Where a streamed task's tokens go. */
  tokens: TokenEvents;
  log: Logger;
}

/** The attempts of one actor and their housekeeping. */
export interface Attempts {
  /** Runs the model once for this delivery and counts the run. Never throws. */
  run(msg: JsMsg, task: RequestEnvelope, attempt: number): Promise<AttemptRun>;
  /**
   * True within an ack wait after the process was stalled (SIGSTOP, a long GC pause): its
   * deliveries may have been redelivered elsewhere meanwhile.
   */
  stalledRecently(): boolean;
  /** Aborts every running attempt; each hands its delivery back (a drain past its grace). */
  handBackAll(): void;
  /** Aborts the running attempts of the cancelled task; false when none runs here. */
  cancel(request: CancelRequest): boolean;
  /** Stops the housekeeping timer. */
  stop(): void;
}

/** Starts the housekeeping timer of an actor's attempts. */
export function startAttempts(options: AttemptsOptions): Attempts {
  return new AttemptsImpl(options);
}

/** The failure of a task whose deadline passed. */
export function deadlineError(): WireError {
  return {
    code: ErrorCode.DeadlineExceeded,
    message: 'the task deadline passed',
    retryable: false,
  };
}

/** The failure of a task that was cancelled: final, and nobody's fault. */
export function cancelledError(request: CancelRequest): WireError {
  return {
    code: ErrorCode.Cancelled,
    message:
      request.reason === CancelReason.Abandoned
        ? 'cancelled: the client reading its stream went away and did not come back'
        : 'cancelled by its owner',
    retryable: false,
  };
}

class AttemptsImpl implements Attempts {
  readonly #o: AttemptsOptions;
  /** Attempts whose model is running now (or waiting at the gate), walked by the one timer. */
  readonly #running = new Set<Attempt>();
  readonly #gate = createRunGate();
  readonly #ticker: NodeJS.Timeout;
  /** When the housekeeping timer last noticed the process had been stalled, epoch ms. */
  #stalledAt = 0;
  #lastTick = Date.now();

  constructor(options: AttemptsOptions) {
    this.#o = options;
    this.#ticker = setInterval(() => this.#tick(), TICK_MS);
  }

  async run(msg: JsMsg, task: RequestEnvelope, number: number): Promise<AttemptRun> {
    const attempt = newAttempt(msg, task, number);
    this.#running.add(attempt); // in-progress acks go out while it waits at the gate, too
    const pass = await this.#gate.enter(task.id);
    attempt.started = true;
    let result: unknown;
    let failure: WireError | undefined;
    const inference = this.#o.spans.startInference(task, this.#o.model.version);
    const tokens = task.stream ? this.#o.tokens.open(task, number) : undefined;
    try {
      result = await this.#o.model.run(task.input, task.params, {
        deadline: task.deadline,
        signal: attempt.abort.signal,
        onProgress: (fraction, message) => reportProgress(attempt, fraction, message),
        ...(tokens ? { onToken: (token: string, choice = 0) => tokens.push(token, choice) } : {}),
      });
      // The text is stored before the outcome is, so a reader sees it before the end.
      await tokens?.finish();
    } catch (err) {
      tokens?.discard();
      failure = attempt.cancelled
        ? cancelledError(attempt.cancelled)
        : Date.now() >= task.deadline
          ? deadlineError()
          : toVigilError(err).toWire();
      attempt.executorDied = err instanceof ExecutorGoneError;
      inference.setStatus({ code: SpanStatusCode.ERROR, message: failure.code });
    } finally {
      this.#running.delete(attempt);
      pass.leave(attempt.executorDied);
      inference.end();
    }
    this.#o.tally.modelRun(Date.now() - attempt.startedAt, failure);
    return { attempt, result, failure };
  }

  stalledRecently(): boolean {
    return Date.now() - this.#stalledAt < this.#o.ackWaitMs;
  }

  handBackAll(): void {
    for (const attempt of this.#running) {
      attempt.handedBack = true;
      attempt.abort.abort();
    }
  }

  cancel(request: CancelRequest): boolean {
    let found = false;
    for (const attempt of this.#running) {
      if (attempt.task.id !== request.taskId) continue;
      attempt.cancelled = request;
      attempt.abort.abort();
      found = true;
    }
    return found;
  }

  stop(): void {
    clearInterval(this.#ticker);
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
      this.#o.log.warn(
        { stalledMs: now - this.#lastTick },
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
        this.#o.records.markRunning(attempt);
      } else if (attempt.progressDirty && !attempt.writingProgress) {
        attempt.writingProgress = true;
        void this.#o.records
          .writeProgress(attempt)
          .finally(() => (attempt.writingProgress = false));
      }
    }
  }
}

function newAttempt(msg: JsMsg, task: RequestEnvelope, number: number): Attempt {
  const startedAt = Date.now();
  return {
    msg,
    task,
    number,
    startedAt,
    abort: new AbortController(),
    lastSignalAt: startedAt,
    marked: false,
    marking: Promise.resolve(),
    revision: undefined,
    superseded: false,
    handedBack: false,
    executorDied: false,
    started: false,
    progress: undefined,
    progressDirty: false,
    writingProgress: false,
    cancelled: undefined,
  };
}

/** Keeps the model's latest progress, clamped, for the next tick to store. */
function reportProgress(attempt: Attempt, fraction: number, message?: string): void {
  if (!Number.isFinite(fraction)) return;
  attempt.progress = { fraction: Math.min(1, Math.max(0, fraction)) };
  if (message !== undefined) attempt.progress.message = message.slice(0, 256);
  attempt.progressDirty = true;
}
