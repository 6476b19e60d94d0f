/**
 * Following one task to its end, for the streaming routes: its events from the region's event
 * stream (after the client's `Last-Event-ID`), ended by its final record. The record is the
 * truth and events are a view of it, so the two are watched together: a final event ends the
 * stream at once; a final record whose event does not follow (it expired, or the task was ended
 * by a writer that publishes none) ends it after a short grace with the record alone.
 */
import {
  FINAL_STATES,
  TaskState,
  type Cancellation,
  type TaskEvent,
  type TaskEventFeed,
  type TaskRecord,
  type VigilClient,
} from '../../protocol/index.js';

/**
 * How long events may still arrive once the final record is known, ms: they were published
 * before it was stored, so they are in the stream already and come within a round trip.
 */
const FINAL_EVENT_GRACE_MS = 1_000;
/** Each wait for the final record, ms (the waits repeat until it comes or the client goes). */
const OUTCOME_WAIT_MS = 60_000;

/** What a follower yields: the task's events in order, then its end. */
export type FollowedItem =
  | { type: 'event'; seq: number; event: TaskEvent }
  | {
      type: 'end';
      /** The last event's sequence, when one was seen (the end's SSE id). */
      seq: number | undefined;
      record: TaskRecord;
    };

/** Which task to follow, and from where. */
export interface FollowOptions {
  taskId: string;
  region: string;
  tenant: string;
  /** The client's `Last-Event-ID`: events up to it are not sent again. 0 = from the start. */
  afterSeq: number;
  /** Ends the following (the client went away). */
  signal: AbortSignal;
  /** The task's event feed, opened while it was submitted; opened here when not given. */
  feed?: Promise<TaskEventFeed>;
}

/** The task's events, then its end; stops early (returns) when `options.signal` aborts. */
export async function* followTask(
  client: VigilClient,
  options: FollowOptions,
): AsyncGenerator<FollowedItem> {
  const { taskId, region, tenant, signal } = options;
  const feed = await (options.feed ??
    client.events({ region, tenant, taskId, afterSeq: options.afterSeq }));
  const events = feed[Symbol.asyncIterator]();
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted');
    signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  const outcome = waitForFinalRecord(client, taskId, region, tenant, signal);
  let lastSeq: number | undefined;
  let record: TaskRecord | undefined;
  let next = events.next();
  try {
    for (;;) {
      const winner = await Promise.race([
        next.then((r) => ({ kind: 'event' as const, r })),
        record
          ? sleep(FINAL_EVENT_GRACE_MS).then(() => ({ kind: 'grace' as const }))
          : outcome.then((rec) => ({ kind: 'record' as const, rec })),
        aborted.then(() => ({ kind: 'aborted' as const })),
      ]);
      if (winner.kind === 'aborted') return;
      if (winner.kind === 'record') {
        if (!winner.rec) return; // aborted while waiting
        record = winner.rec;
        continue;
      }
      if (winner.kind === 'grace') {
        yield { type: 'end', seq: lastSeq, record: record! };
        return;
      }
      if (winner.r.done) {
        // The feed ended (its connection closed): the record ends the stream.
        const final = record ?? (await outcome);
        if (final) yield { type: 'end', seq: lastSeq, record: final };
        return;
      }
      const { seq, event } = winner.r.value;
      lastSeq = seq;
      if (isFinalEvent(event)) {
        // Published after the record was stored: one read finds it.
        const final = record ?? (await finalRecordNow(client, taskId, tenant)) ?? (await outcome);
        if (final) yield { type: 'end', seq, record: final };
        return;
      }
      yield { type: 'event', seq, event };
      next = events.next();
    }
  } finally {
    feed.close();
  }
}

/**
 * Closes a feed opened for a stream that ends before following it (`followTask` closes the feed
 * it follows).
 */
export function closeFeed(feed: Promise<TaskEventFeed> | undefined): void {
  void feed?.then(
    (f) => f.close(),
    () => undefined,
  );
}

/** The task's record if it is final (and `tenant`'s) now; else nothing. */
async function finalRecordNow(
  client: VigilClient,
  taskId: string,
  tenant: string,
): Promise<TaskRecord | undefined> {
  const status = await client.getTask(taskId).catch(() => undefined);
  if (!status || status.state === TaskState.Accepted) return undefined;
  const { record } = status;
  return FINAL_STATES.has(record.state) && record.tenant === tenant ? record : undefined;
}

function isFinalEvent(event: TaskEvent): boolean {
  return FINAL_STATES.has(event.type as TaskState);
}

/** The task's final record, waited for until it comes or `signal` aborts (then `undefined`). */
async function waitForFinalRecord(
  client: VigilClient,
  taskId: string,
  region: string,
  tenant: string,
  signal: AbortSignal,
): Promise<TaskRecord | undefined> {
  const cancel: Cancellation = signal;
  while (!signal.aborted) {
    const record = await client.waitForOutcome(taskId, OUTCOME_WAIT_MS, cancel, region, tenant);
    if (record) return record;
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
