/**
 * The actor's writes to the region's dead-letter stream: a letter for every task that ends
 * `failed` or `dead`, and the raw bytes of a request no actor can read (a poison message), which is
 * then termed so it is never retried. Listing and replaying letters is `protocol/dead-letters.ts`.
 */
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  encode,
  ENVELOPE_VERSION,
  subjects,
  toVigilError,
  type DeadLetter,
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
   * Dead-letters an undecodable delivery's raw bytes and terms it; if the letter cannot be
   * stored, hands the delivery back after a second instead. Never throws.
   */
  poison(msg: JsMsg, err: unknown): Promise<void>;
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
    async poison(msg, err) {
      const error = toVigilError(err).toWire();
      o.log.error(
        { subject: msg.subject, seq: msg.seq, error },
        'undecodable request dead-lettered',
      );
      try {
        const hdrs = natsHeaders();
        hdrs.set('Vigil-Error', `${error.code}: ${error.message}`.slice(0, 1024));
        await js.publish(subjects.deadLetter(o.region, o.model), msg.data, {
          msgID: `dlq-seq-${msg.seq}`,
          headers: hdrs,
        });
        o.counts.deadLettered += 1;
        o.metrics.undecodable();
        msg.term(`undecodable: ${error.message}`.slice(0, 256));
      } catch (publishErr) {
        o.log.warn({ err: publishErr }, 'could not dead-letter undecodable request');
        msg.nak(1_000);
      }
    },
  };
}
