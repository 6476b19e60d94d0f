/**
 * What the actor tells others: the reply to a client waiting for its task (core NATS), and the
 * task's lifecycle events (published without an acknowledgement; the region's event stream keeps
 * them). Both are notifications, never part of the guarantee: the outcome is already in the task
 * record, which the client also polls, so a lost one costs only latency.
 */
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { SpanStatusCode } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { encode, ENVELOPE_VERSION, eventTtl, subjects, type TaskEvent } from '../protocol/index.js';
import type { ActorSpans } from './actor-spans.js';
import type { StoredRecord, TaskIdentity } from './task-records.js';

/** The extra fields an event may carry. */
export type EventDetail = Pick<TaskEvent, 'retryInMs' | 'error' | 'progress'>;

/** An actor's notifications. Neither method throws. */
export interface Replies {
  /** Sends the stored record (its bytes are the reply) to the client waiting on `task.replyTo`. */
  reply(task: TaskIdentity, stored: StoredRecord): void;
  /** Publishes a lifecycle event on the task's event subject. */
  emit(task: TaskIdentity, type: TaskEvent['type'], attempt: number, extra?: EventDetail): void;
}

/**
 * Notifications of an actor in `region`. With the region's event retention (ms), an event of a
 * task whose deadline is known is kept until that deadline plus the retention (`Nats-TTL`), like
 * the task's tokens; without, for the event stream's `max_age`.
 */
export function createReplies(
  nc: NatsConnection,
  region: string,
  spans: Pick<ActorSpans, 'startReply'>,
  log: Logger,
  eventRetentionMs?: number,
): Replies {
  return {
    reply(task, stored) {
      if (!task.replyTo) return;
      const span = spans.startReply(task);
      try {
        nc.publish(task.replyTo, stored.payload);
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        log.debug({ task_id: task.id, err }, 'reply not sent');
      } finally {
        span.end();
      }
    },
    emit(task, type, attempt, extra = {}) {
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
        const subject = subjects.event(region, task.tenant, task.id);
        if (eventRetentionMs === undefined || task.deadline === undefined) {
          nc.publish(subject, encode(event));
        } else {
          const headers = natsHeaders();
          headers.set('Nats-TTL', eventTtl(task.deadline, eventRetentionMs));
          nc.publish(subject, encode(event), { headers });
        }
      } catch (err) {
        log.debug({ task_id: task.id, err }, 'event not sent');
      }
    },
  };
}
