/**
 * Spans of the consumer side, all in one place so their names, attributes and links are read
 * together: each delivery is an attempt (a `process` span whose parent is the producer's span from
 * the message headers), with the time spent queued, the model run, the result's store and the
 * reply as its parts. A no-op until a node starts the SDK.
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import type { JsMsg } from '@nats-io/jetstream';
import {
  MESSAGING_SYSTEM_NATS,
  MessagingAttr,
  natsHeaderGetter,
  type RequestEnvelope,
  type TaskRecord,
} from '../protocol/index.js';

const tracer = trace.getTracer('vigil.actor');

/**
 * Attempts remembered for linking their retries. A retry that lands on another actor, or after
 * this many later tasks, is still numbered and under the same producer span, just not linked.
 */
const MAX_REMEMBERED_ATTEMPTS = 4096;

/** An attempt's `process` span and the context its parts start in. */
export interface AttemptSpan {
  readonly span: Span;
  /** The producer's context with the attempt's span set: the model run, store and reply nest here. */
  readonly context: Context;
}

/** The spans one actor starts. */
export interface ActorSpans {
  /**
   * Starts the span of one delivery. On the first delivery it also records the wait in the queue;
   * a retry links to the attempt before it when this actor ran that one.
   */
  startAttempt(msg: JsMsg, task: RequestEnvelope, attempt: number, receivedAt: number): AttemptSpan;
  /** The model's run, in the active context. */
  startInference(task: RequestEnvelope, version: string): Span;
  /** The final record's write, in the active context. */
  startStore(record: TaskRecord): Span;
  /** The reply to the waiting client, in the active context. */
  startReply(task: Pick<RequestEnvelope, 'id'>): Span;
}

/** Spans for the actor of `model` in `region`. */
export function createActorSpans(region: string, model: string): ActorSpans {
  return new ActorSpansImpl(region, model);
}

class ActorSpansImpl implements ActorSpans {
  /** Attributes common to every task of this actor, built once. */
  readonly #attributes: Attributes;
  readonly #attemptSpans = new RecentAttemptSpans(MAX_REMEMBERED_ATTEMPTS);

  constructor(region: string, model: string) {
    this.#attributes = {
      [MessagingAttr.System]: MESSAGING_SYSTEM_NATS,
      [MessagingAttr.DestinationTemplate]: `vigil.req.${region}.${model}.{priority}.{task_id}`,
      [MessagingAttr.OperationType]: 'process',
      [MessagingAttr.Model]: model,
      [MessagingAttr.Region]: region,
    };
  }

  startAttempt(
    msg: JsMsg,
    task: RequestEnvelope,
    attempt: number,
    receivedAt: number,
  ): AttemptSpan {
    const producer = propagation.extract(ROOT_CONTEXT, msg.headers, natsHeaderGetter);
    if (attempt === 1) {
      // The wait in the queue, from acceptance to this delivery: the gap Jaeger would otherwise
      // show as empty between the publish and the processing.
      tracer
        .startSpan(
          `queued ${task.model}`,
          {
            startTime: task.createdAt,
            attributes: { ...this.#attributes, [MessagingAttr.TaskId]: task.id },
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
          ...this.#attributes,
          [MessagingAttr.DestinationName]: msg.subject,
          [MessagingAttr.MessageId]: task.id,
          [MessagingAttr.TaskId]: task.id,
          [MessagingAttr.Attempt]: attempt,
        },
      },
      producer,
    );
    this.#attemptSpans.remember(task.id, span.spanContext());
    return { span, context: trace.setSpan(producer, span) };
  }

  startInference(task: RequestEnvelope, version: string): Span {
    return tracer.startSpan(`infer ${task.model}`, {
      attributes: { [MessagingAttr.Model]: task.model, 'vigil.model.version': version },
    });
  }

  startStore(record: TaskRecord): Span {
    return tracer.startSpan(`store ${record.model}`, {
      attributes: { [MessagingAttr.TaskId]: record.id, 'vigil.task.state': record.state },
    });
  }

  startReply(task: Pick<RequestEnvelope, 'id'>): Span {
    return startReplySpan(task);
  }
}

/** The reply to a waiting client, in the active context; for senders that are not actors too. */
export function startReplySpan(task: Pick<RequestEnvelope, 'id'>): Span {
  return tracer.startSpan('send reply', {
    kind: SpanKind.PRODUCER,
    attributes: {
      [MessagingAttr.System]: MESSAGING_SYSTEM_NATS,
      [MessagingAttr.OperationType]: 'send',
      [MessagingAttr.TaskId]: task.id,
    },
  });
}

/** Span contexts of the last attempt per task, to link a retry to it; oldest forgotten first. */
class RecentAttemptSpans {
  readonly #byTask = new Map<string, SpanContext>();
  constructor(readonly limit: number) {}
  get(taskId: string): SpanContext | undefined {
    return this.#byTask.get(taskId);
  }
  remember(taskId: string, span: SpanContext): void {
    this.#byTask.delete(taskId); // re-inserted last: the newest stays longest
    this.#byTask.set(ownString(taskId), span);
    if (this.#byTask.size > this.limit) this.#byTask.delete(this.#byTask.keys().next().value!);
  }
}

/**
 * A copy of `text` that holds nothing else. A string msgpackr decoded is a slice of one string
 * made from the whole message (its native extractor reads a message's strings in one go), so a
 * decoded task id kept as a map key kept its whole request alive: measured in the soak, the
 * actor host's heap grew by the 4,096 remembered requests per model (chat and embedding inputs
 * included) until every map was full.
 */
function ownString(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}

/** Runs `work` with `attempt`'s context active, so the spans it starts nest under the attempt. */
export function withinAttempt<T>(attempt: AttemptSpan, work: () => Promise<T>): Promise<T> {
  return context.with(attempt.context, work);
}
