/**
 * One delivery from the mailbox, brought to an ack, a nak or a term:
 *
 *   decode, check against the subject -> (redelivery? reuse the stored outcome) -> run an
 *   attempt (`attempt.ts`) -> judge it:
 *   success: store the final record (`task-records.ts`), reply, ack;
 *   retryable failure with attempts and time left: nak with the backoff;
 *   otherwise: dead letter (`dead-letters.ts`), final record, reply, term.
 *
 * The final record is written before the ack, so a crash anywhere leaves either a redelivery that
 * finds the record, or a redelivery that runs the task again; never a lost or a second result.
 */
import type { JsMsg } from '@nats-io/jetstream';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import {
  decodeAs,
  ErrorCode,
  FINAL_STATES,
  parseRequestSubject,
  recoverRequest,
  requestEnvelopeSchema,
  toVigilError,
  type CancelRequest,
  type RecoveredRequest,
  TaskEventType,
  TaskState,
  type DecodeLimits,
  type RequestEnvelope,
  type WireError,
} from '../protocol/index.js';
import { withinAttempt, type ActorSpans } from './actor-spans.js';
import type { TaskCounts } from './actor-stats.js';
import {
  cancelledError,
  deadlineError,
  type Attempt,
  type AttemptRun,
  type Attempts,
} from './attempt.js';
import type { Cancellations } from './cancellations.js';
import type { DeadLetters } from './dead-letters.js';
import type { Replies } from './replies.js';
import type { OutputCheck } from './runtimes/index.js';
import { TaskOutcome, type TaskMetrics } from './task-metrics.js';
import {
  UnstorableResultError,
  type StoredRecord,
  type TaskIdentity,
  type TaskRecords,
} from './task-records.js';

/** Options of {@link createDeliveryHandler}: the actor's settings and its parts. */
export interface DeliveryOptions {
  /** The actor's model: an undecodable request on its consumer is this model's task. */
  model: string;
  /** Attempts before a retryable failure is dead-lettered. */
  maxAttempts: number;
  /** Delay before attempt n+1 after retryable failure n, ms; the last entry repeats. */
  retryScheduleMs: readonly number[];
  decodeLimits: Partial<DecodeLimits> | undefined;
  /** The model's output checks, if it declares any. */
  checkOutput: OutputCheck | undefined;
  attempts: Attempts;
  /** Cancels in effect in the region. */
  cancellations: Cancellations;
  records: TaskRecords;
  replies: Replies;
  deadLetters: DeadLetters;
  spans: ActorSpans;
  counts: TaskCounts;
  metrics: TaskMetrics;
  log: Logger;
}

/** Brings one delivery to an ack, nak or term. Never throws. */
export type DeliveryHandler = (msg: JsMsg) => Promise<void>;

/**
 * The mailbox's handler for an actor. A cancel that takes effect aborts the task's run here, or,
 * when it runs nowhere here, ends the queued task at once (`cancelQueued`).
 */
export function createDeliveryHandler(options: DeliveryOptions): DeliveryHandler {
  const delivery = new TaskDelivery(options);
  options.cancellations.onEffect((request) => {
    if (request.model !== options.model || options.attempts.cancel(request)) return;
    void delivery.cancelQueued(request);
  });
  return (msg) => delivery.deliver(msg);
}

/** An unsuccessful end: `failed` (the task's own fault) or `dead` (no attempt could finish it). */
type UnsuccessfulState = typeof TaskState.Failed | typeof TaskState.Dead;

class TaskDelivery {
  readonly #o: DeliveryOptions;

  constructor(options: DeliveryOptions) {
    this.#o = options;
  }

  async deliver(msg: JsMsg): Promise<void> {
    let task: RequestEnvelope;
    try {
      task = decodeAs(requestEnvelopeSchema, msg.data, 'request', this.#o.decodeLimits);
    } catch (err) {
      const reason = toVigilError(err).message;
      await this.#refuse(msg, `the request could not be read: ${reason}`, `undecodable: ${reason}`);
      return;
    }
    const contradiction = this.#contradiction(msg.subject, task);
    if (contradiction !== undefined) {
      await this.#refuse(msg, contradiction, `invalid: ${contradiction}`);
      return;
    }
    const traced = this.#o.spans.startAttempt(msg, task, msg.info.deliveryCount, Date.now());
    try {
      await withinAttempt(traced, () => this.#settle(msg, task, traced.span));
    } catch (err) {
      // Storing the outcome failed (NATS unavailable): the delivery is handed back and the task
      // tried again; nothing was acknowledged, so nothing is lost.
      traced.span.setStatus({ code: SpanStatusCode.ERROR, message: 'could not finish task' });
      this.#o.log.warn({ task_id: task.id, err }, 'could not finish task; handing it back');
      msg.nak(1_000);
    } finally {
      traced.span.end();
    }
  }

  /**
   * Why an envelope that decoded may not run as the task its subject names, if it may not. The
   * stream accepted the subject's task (its id is the `Nats-Msg-Id`, the key a caller reads, the
   * token `GET /v1/tasks/{id}` finds it by) for the subject's model (the consumer that delivered
   * it); an envelope that says otherwise would store its outcome where nobody looks, or run on a
   * model it did not ask for. Only a publisher that bypassed the gateway and client sends one.
   */
  #contradiction(subject: string, task: RequestEnvelope): string | undefined {
    const parsed = parseRequestSubject(subject);
    if (!parsed) {
      // Bounded: the reason is stored in the record, whose error message a reader caps.
      return `the subject ${subject.slice(0, 300)} does not name a task (vigil.req.<region>.<model>.<priority>.<task id>)`;
    }
    if (task.id !== parsed.taskId) {
      return `the envelope's task id ${task.id} is not the subject's ${parsed.taskId}`;
    }
    if (task.model !== parsed.model || task.model !== this.#o.model) {
      return `the envelope's model ${task.model} is not the subject's ${parsed.model} (served by the ${this.#o.model} actor)`;
    }
    return undefined;
  }

  /**
   * A delivery no actor may run (undecodable, or contradicting its subject) still ends where its
   * owner looks: the raw bytes go to the dead-letter stream with the reason, and when the subject
   * and the envelope's top level give up the task and its tenant, the subject's task gets its
   * final record (`failed`, `invalid_payload`; never over a record it has), the caller waiting on
   * that task's reply subject its reply, and the tenant its event. Only then is the delivery termed; if NATS cannot take the
   * letter or the record, it comes back.
   */
  async #refuse(msg: JsMsg, reason: string, termReason: string): Promise<void> {
    const error: WireError = { code: ErrorCode.InvalidPayload, message: reason, retryable: false };
    const recovered = recoverRequest(msg.subject, msg.data);
    try {
      await this.#o.deadLetters.poison(msg, error, recovered);
      if (recovered?.tenant) await this.#endRefused(msg, recovered, recovered.tenant, error);
      msg.term(termReason.slice(0, 256));
    } catch (storeErr) {
      this.#o.log.warn(
        { err: storeErr },
        'could not dead-letter a request no actor may run; handing it back',
      );
      msg.nak(1_000);
    }
  }

  /** The final record, reply and event of a refused request whose owner is known. */
  async #endRefused(
    msg: JsMsg,
    recovered: RecoveredRequest,
    tenant: string,
    error: WireError,
  ): Promise<void> {
    const task: TaskIdentity = {
      id: recovered.taskId,
      tenant,
      model: this.#o.model,
      // The stream's own timestamp of the request when the envelope did not say.
      createdAt: recovered.createdAt ?? Math.floor(msg.info.timestampNanos / 1e6),
      ...(recovered.replyTo ? { replyTo: recovered.replyTo } : {}),
    };
    const record = this.#o.records.build(task, msg.info.deliveryCount, TaskState.Failed);
    record.error = error;
    const stored = await this.#o.records.createOnly(record);
    // A task that has a record already belongs to another message: leave its story alone.
    if (!stored.created) return;
    this.#o.counts.failed += 1;
    this.#o.metrics.finished(TaskOutcome.Failed, task.createdAt);
    this.#o.replies.reply(task, stored);
    this.#o.replies.emit(task, TaskState.Failed, record.attempt, { error });
  }

  /**
   * Ends a cancelled task that runs nowhere here: its final `cancelled` record, unless it has one
   * (it finished, or another host ended it first, or runs it now and has its `running` record:
   * that host aborts it). Its request stays queued until delivered, then is acknowledged unrun.
   */
  async cancelQueued(request: CancelRequest): Promise<void> {
    const task: TaskIdentity = {
      id: request.taskId,
      tenant: request.tenant,
      model: request.model,
      createdAt: request.createdAt,
    };
    const record = this.#o.records.build(task, 1, TaskState.Cancelled);
    record.error = cancelledError(request);
    try {
      const stored = await this.#o.records.createOnly(record);
      if (!stored.created) return;
      this.#o.counts.cancelled += 1;
      this.#o.metrics.finished(TaskOutcome.Cancelled, task.createdAt);
      this.#o.replies.emit(task, TaskState.Cancelled, record.attempt, { error: record.error });
    } catch (err) {
      // Its delivery ends it instead: the cancel is checked there.
      this.#o.log.warn({ task_id: task.id, err }, 'could not end a cancelled queued task now');
    }
  }

  async #settle(msg: JsMsg, task: RequestEnvelope, span: Span): Promise<void> {
    const number = msg.info.deliveryCount;
    const cancel = this.#o.cancellations.inEffect(task.id);
    if (cancel) {
      await this.#endCancelled(msg, task, number, cancel);
      return;
    }
    // After a redelivery, or when this process was stalled long enough for its deliveries to be
    // redelivered elsewhere (SIGSTOP, a long GC pause), another attempt may have finished already.
    if (number > 1 || this.#o.attempts.stalledRecently()) {
      const stored = await this.#o.records.read(task.id);
      if (stored && FINAL_STATES.has(stored.record.state)) {
        this.#o.counts.reused += 1;
        this.#o.replies.reply(task, stored);
        msg.ack();
        return;
      }
    }
    if (number > this.#o.maxAttempts) {
      // Reached only through the consumer's spare delivery: every attempt crashed or timed out.
      await this.#endUnsuccessfully(msg, task, number - 1, TaskState.Dead, {
        code: ErrorCode.RetriesExhausted,
        message: `no attempt of ${this.#o.maxAttempts} completed (actor crash or timeout)`,
        retryable: false,
      });
      return;
    }
    if (Date.now() >= task.deadline) {
      await this.#endUnsuccessfully(msg, task, number, TaskState.Failed, deadlineError());
      return;
    }
    await this.#judge(await this.#o.attempts.run(msg, task, number), span);
  }

  /** Decides what an attempt's run means for its delivery. */
  async #judge({ attempt, result, failure }: AttemptRun, span: Span): Promise<void> {
    const { msg, task } = attempt;
    if (attempt.handedBack) {
      // Drained past the grace period: not this attempt's failure, the next one runs it.
      msg.nak();
      return;
    }
    if (attempt.marked) await attempt.marking;
    if (attempt.superseded) {
      this.#o.counts.superseded += 1;
      // Another attempt already stored the outcome while this one ran.
      const stored = await this.#o.records.read(task.id);
      if (stored) this.#o.replies.reply(task, stored);
      msg.ack();
      return;
    }
    // A run that finished before its cancel took effect stands; an aborted one is cancelled.
    if (failure && attempt.cancelled) {
      await this.#endCancelled(msg, task, attempt.number, attempt.cancelled, attempt);
      return;
    }
    if (failure) await this.#retryOrEnd(attempt, failure, span);
    else await this.#succeed(attempt, result, span);
  }

  async #succeed(attempt: Attempt, result: unknown, span: Span): Promise<void> {
    const { msg, task } = attempt;
    const problem = this.#o.checkOutput?.(result);
    if (problem !== undefined) {
      // Data quality, not a failure: the output is delivered, and the failure counted and traced.
      this.#o.metrics.outputCheckFailed();
      span.addEvent('output check failed', { 'vigil.output_check.problem': problem });
      this.#o.log.warn({ task_id: task.id, problem }, 'model output failed its check');
    }
    const record = this.#o.records.build(
      task,
      attempt.number,
      TaskState.Succeeded,
      attempt.startedAt,
    );
    record.result = result;
    let stored: StoredRecord;
    try {
      stored = await this.#o.records.finalize(record, attempt);
    } catch (err) {
      if (!(err instanceof UnstorableResultError)) throw err;
      // A result no reader could decode is the task's failure, not a success nobody can see.
      span.setStatus({ code: SpanStatusCode.ERROR, message: err.code });
      const error = err.toWire();
      await this.#endUnsuccessfully(msg, task, attempt.number, TaskState.Failed, error, attempt);
      return;
    }
    this.#o.replies.reply(task, stored);
    if (stored.record === record) {
      this.#o.counts.succeeded += 1;
      this.#o.metrics.finished(TaskOutcome.Succeeded, task.createdAt);
      this.#o.metrics.usage(task.tenant, result);
      this.#o.replies.emit(task, stored.record.state, stored.record.attempt);
    } else {
      // A newer attempt stored its outcome first (this one was stalled): that outcome stands,
      // and it was announced by the attempt that stored it.
      this.#o.counts.superseded += 1;
    }
    msg.ack();
  }

  async #retryOrEnd(attempt: Attempt, failure: WireError, span: Span): Promise<void> {
    const { msg, task, number } = attempt;
    // The model's executor died under this task (the supervisor is restarting it): hand the
    // task back at once rather than after a backoff; the crash still counts as an attempt.
    const delay = attempt.executorDied ? 0 : this.#retryDelay(number);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.code });
    if (failure.retryable && number < this.#o.maxAttempts && Date.now() + delay < task.deadline) {
      this.#o.counts.retried += 1;
      this.#o.metrics.retried();
      span.setAttribute('vigil.retry_in_ms', delay);
      this.#o.log.info(
        { task_id: task.id, attempt: number, delayMs: delay, error: failure },
        'retrying task',
      );
      this.#o.replies.emit(task, TaskEventType.Retrying, number, {
        retryInMs: delay,
        error: failure,
      });
      msg.nak(delay);
      return;
    }
    if (failure.retryable) {
      const exhausted: WireError = {
        code: ErrorCode.RetriesExhausted,
        message: `gave up after ${number} attempts; last error: ${failure.message}`,
        retryable: false,
      };
      await this.#endUnsuccessfully(msg, task, number, TaskState.Dead, exhausted, attempt);
    } else {
      await this.#endUnsuccessfully(msg, task, number, TaskState.Failed, failure, attempt);
    }
  }

  /**
   * Stores the `cancelled` record (conditional, like any final record: an outcome stored first
   * stands), replies, emits the event and acknowledges: a cancel is final and nobody's failure,
   * so no dead letter and no retry.
   */
  async #endCancelled(
    msg: JsMsg,
    task: RequestEnvelope,
    attempts: number,
    request: CancelRequest,
    attempt?: Attempt,
  ): Promise<void> {
    const record = this.#o.records.build(
      task,
      Math.max(1, attempts),
      TaskState.Cancelled,
      attempt?.startedAt,
    );
    record.error = cancelledError(request);
    const stored = await this.#o.records.finalize(record, attempt);
    if (stored.record === record) {
      this.#o.counts.cancelled += 1;
      this.#o.metrics.finished(TaskOutcome.Cancelled, task.createdAt);
      this.#o.replies.emit(task, TaskState.Cancelled, record.attempt, { error: record.error });
      this.#o.log.info({ task_id: task.id, reason: request.reason }, 'task cancelled');
    }
    this.#o.replies.reply(task, stored);
    msg.ack();
  }

  #retryDelay(attempt: number): number {
    const schedule = this.#o.retryScheduleMs;
    return schedule[Math.min(attempt - 1, schedule.length - 1)] ?? 1_000;
  }

  /**
   * Dead-letters, stores the final record, replies, and terms the delivery. `attempt` is the run
   * that failed, if one ran (its `running` record's revision makes the final write conditional).
   */
  async #endUnsuccessfully(
    msg: JsMsg,
    task: RequestEnvelope,
    attempts: number,
    state: UnsuccessfulState,
    error: WireError,
    attempt?: Attempt,
  ): Promise<void> {
    const counted = Math.max(1, attempts);
    await this.#o.deadLetters.write(task, error, counted, msg.info.streamSequence);
    const record = this.#o.records.build(task, counted, state, attempt?.startedAt);
    record.error = error;
    const stored = await this.#o.records.finalize(record, attempt);
    if (state === TaskState.Dead) this.#o.counts.deadLettered += 1;
    else this.#o.counts.failed += 1;
    if (stored.record === record) {
      this.#o.metrics.finished(
        state === TaskState.Dead ? TaskOutcome.Dead : TaskOutcome.Failed,
        task.createdAt,
      );
    }
    this.#o.log.warn(
      { task_id: task.id, state, attempt: attempts, error },
      'task ended unsuccessfully',
    );
    this.#o.replies.reply(task, stored);
    const { state: finalState, attempt: finalAttempt, error: finalError } = stored.record;
    this.#o.replies.emit(task, finalState, finalAttempt, finalError ? { error: finalError } : {});
    msg.term(`${state}: ${error.code}`);
  }
}
