/**
 * Reading one task's events from its region's event stream, in order, from any point: an
 * ordered consumer (ephemeral, in memory, no acks) filtered to the task's event subject, starting
 * after the last sequence the reader saw. Any gateway in any region can open one, so a stream
 * resumes wherever its client reconnects; the stream's sequence numbers are the events' ids.
 *
 * A feed holds at most a few events of its own (the consumer's pull batch): a reader that stops
 * reading stops pulling, and the events wait in the stream, not in the reader's memory.
 */
import {
  DeliverPolicy,
  JetStreamApiError,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { assetNames } from './definitions.js';
import { decodeAs, taskEventSchema, type TaskEvent } from './envelopes.js';
import { ErrorCode, RetryableError } from './errors.js';
import { subjects } from './subjects.js';

/**
 * Events a feed pulls at a time: its whole buffer. (A reader that dies without closing leaves its
 * consumer to the 5 minutes of inactivity nats.js gives every ordered consumer; one that closes
 * deletes it at once.)
 */
const PULL_BATCH = 8;

/** One event with its place in the event stream (its SSE id). */
export interface SequencedEvent {
  seq: number;
  event: TaskEvent;
}

/** Where a feed reads. */
export interface TaskEventFeedOptions {
  /** The region that holds the task. */
  region: string;
  tenant: string;
  taskId: string;
  /** Start after this stream sequence (a resumed stream's `Last-Event-ID`); 0 = from the start. */
  afterSeq?: number;
}

/** A task's events as they are stored, then as they come. */
export interface TaskEventFeed extends AsyncIterable<SequencedEvent> {
  /** Stops reading and removes the consumer. Idempotent. */
  close(): void;
}

/** Opens a feed of a task's events through `js` (the hub's JetStream, at an edge site). */
export async function openTaskEventFeed(
  js: JetStreamClient,
  options: TaskEventFeedOptions,
): Promise<TaskEventFeed> {
  const afterSeq = options.afterSeq ?? 0;
  const consumer = await js.consumers
    .get(assetNames.eventStream(options.region), {
      filter_subjects: subjects.event(options.region, options.tenant, options.taskId),
      ...(afterSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    })
    .catch((err: unknown) => {
      throw tooManyReaders(err) ?? err;
    });
  const messages = await consumer.consume({ max_messages: PULL_BATCH });
  return new Feed(consumer, messages, options.taskId);
}

/** JetStream's "maximum consumers limit reached". */
const MAX_CONSUMERS_REACHED = 10026;

/** The region's limit of readers at once, told as what it is: retry later. */
function tooManyReaders(err: unknown): RetryableError | undefined {
  if (!(err instanceof JetStreamApiError) || err.code !== MAX_CONSUMERS_REACHED) return undefined;
  return new RetryableError(
    "too many event streams are open in the task's region; try again shortly",
    ErrorCode.Unavailable,
    { retryAfterMs: 1_000 },
  );
}

class Feed implements TaskEventFeed {
  #closed = false;

  constructor(
    private readonly consumer: Consumer,
    private readonly messages: ConsumerMessages,
    private readonly taskId: string,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<SequencedEvent> {
    try {
      for await (const msg of this.messages) {
        const event = this.#decode(msg);
        if (event) yield { seq: msg.seq, event };
      }
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Unsubscribes at once; the returned promise settles only when an iteration takes the stop,
    // and once the reader stopped iterating none will: the delete must not wait for it.
    void this.messages.close();
    // Removed now rather than left to expire: closed streams hold no server state, and a stream
    // holds at most 1,000 consumers (nats-server's limit), so readers must not outlive readers.
    this.consumer.delete().catch(() => undefined);
  }

  /** The event, or nothing for a message that is not one of this task's (never trusted). */
  #decode(msg: JsMsg): TaskEvent | undefined {
    try {
      const event = decodeAs(taskEventSchema, msg.data, 'task event');
      return event.taskId === this.taskId ? event : undefined;
    } catch {
      return undefined;
    }
  }
}
