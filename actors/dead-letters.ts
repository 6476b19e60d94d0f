/**
 * The actor's writes to the region's dead-letter stream: a letter for every task that ends
 * `failed` or `dead`, and the raw bytes of a request no actor may run (a poison message), which is
 * then termed so it is never retried. Listing and replaying letters is `protocol/dead-letters.ts`.
 */
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  DEAD_LETTER_HEADERS,
  encode,
  ENVELOPE_VERSION,
  subjects,
  type DeadLetter,
  type RecoveredRequest,
  type RequestEnvelope,
  type WireError,
} from '../protocol/index.js';
import type { TaskCounts } from './actor-stats.js';
import type { TaskMetrics } from './task-metrics.js';

/** Options of {@link createDeadLetters}. */
export interface DeadLettersOptions {
  region: string;
  /** The actor's model: poison messages are filed under it. */
  model: string;
  actorId: string;
  counts: TaskCounts;
  metrics: TaskMetrics;
  log: Logger;
}

/** An actor's dead letters. */
export interface DeadLetters {
  /**
   * Writes the letter of a task that ends unsuccessfully after `attempts` attempts. Deduplicated
   * on the task and its request message (`streamSequence`). Throws when it could not be stored.
   */
  write(
    task: RequestEnvelope,
    error: WireError,
    attempts: number,
    streamSequence: number,
  ): Promise<void>;
  /**
   * Dead-letters the raw bytes of a delivery no actor may run (undecodable, or contradicting its
   * subject) with the reason and, as far as it could be
   * recovered, the task and its owner (`Vigil-Task-Id`, `Vigil-Tenant` headers); a letter whose
   * owner is unknown says so in its reason. Deduplicated on the request message. Throws when the
   * letter could not be stored.
   */
  poison(msg: JsMsg, error: WireError, recovered: RecoveredRequest | undefined): Promise<void>;
}

/** Dead letters of one actor, written through `js`. */
export function createDeadLetters(js: JetStreamClient, options: DeadLettersOptions): DeadLetters {
  const o = options;
  return {
    async write(task, error, attempts, streamSequence) {
      const letter: DeadLetter = {
        v: ENVELOPE_VERSION,
        task,
        error,
        attempts,
        deadAt: Date.now(),
        actor: o.actorId,
      };
      // Dedup on the task and its request message: a crash between this write and the term must
      // not leave two letters, while a replayed task (a new request message) can die again.
      await js.publish(subjects.deadLetter(o.region, task.model), encode(letter), {
        msgID: `dlq-${task.id}-${streamSequence}`,
      });
    },
    async poison(msg, error, recovered) {
      o.log.error(
        {
          subject: msg.subject,
          seq: msg.seq,
          error,
          task_id: recovered?.taskId,
          tenant: recovered?.tenant,
        },
        'request no actor may run dead-lettered',
      );
      await letterRawRequest(js, o.region, o.model, msg, error, recovered);
      o.counts.deadLettered += 1;
      o.metrics.undecodable();
    },
  };
}

/** A queued request as the stream holds it: its subject, sequence and raw bytes. */
export interface RawRequest {
  subject: string;
  seq: number;
  data: Uint8Array;
}

/**
 * Files `request`'s raw bytes in `region`'s dead-letter stream under `model`, with the reason
 * and, as far as they were recovered, the task and its owner (`Vigil-Task-Id`, `Vigil-Tenant`
 * headers); a letter whose owner is unknown says so in its reason. Deduplicated on the request
 * message, so writers that race over one request file one letter. Throws when it was not stored.
 */
export async function letterRawRequest(
  js: JetStreamClient,
  region: string,
  model: string,
  request: RawRequest,
  error: WireError,
  recovered: RecoveredRequest | undefined,
): Promise<void> {
  const owner = recovered?.tenant;
  const reason = owner
    ? error.message
    : `${error.message}; the task's owner could not be recovered, so no task record was written`;
  const hdrs = natsHeaders();
  hdrs.set(DEAD_LETTER_HEADERS.error, `${error.code}: ${reason}`.slice(0, 1024));
  if (recovered) hdrs.set(DEAD_LETTER_HEADERS.taskId, recovered.taskId);
  if (owner) hdrs.set(DEAD_LETTER_HEADERS.tenant, owner);
  await js.publish(subjects.deadLetter(region, model), request.data, {
    msgID: `dlq-seq-${request.seq}`,
    headers: hdrs,
  });
}
