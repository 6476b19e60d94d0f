/**
 * `GET /v1/tasks/{id}/events`: any task's events as Server-Sent Events, from whichever region
 * holds it, through any gateway. Each event's `id` is its sequence in the region's event stream,
 * so a client that lost its connection sends `Last-Event-ID` to any gateway and gets the events
 * after it, none twice; a finished task's events can be read again until they expire.
 *
 * Event names are the task event types (`running`, `progress`, `token`, `retrying`) and the
 * final state (`succeeded`, `failed`, `dead`, `cancelled`), whose data is the task as `GET /v1/tasks/{id}`
 * shows it; a new stream starts with `state`, the task as it is now. Tokens of a retried attempt
 * start again from `index` 0 with the new `attempt` number: a client shows the latest attempt's
 * text (see docs/streaming.md).
 */
import type { Context, Hono } from 'hono';
import {
  ValidationError,
  type TaskEvent,
  type TaskEventFeed,
  type VigilClient,
} from '../../protocol/index.js';
import { eventStreamResponse } from './event-stream.js';
import type { GatewayEnv } from './gateway-env.js';
import { closeFeed, followTask } from './task-follow.js';
import { ownTask, taskView, type TaskView } from './task-view.js';

/** What the events route needs. */
export interface EventsRouteDeps {
  client: VigilClient;
  /** How often an idle stream sends a keep-alive comment, ms. */
  keepAliveMs: number;
}

/** A `Last-Event-ID` the native stream accepts: a stream sequence (JavaScript-safe). */
const SEQUENCE = /^[0-9]{1,15}$/;

/** The task a stream follows. */
export interface StreamedTask {
  taskId: string;
  /** The region that holds it. */
  region: string;
  /** The task as it is now: a new stream (no `afterSeq`) starts with it, as `state`. */
  now: TaskView;
  /** Its event feed, when the submission opened it. */
  events?: Promise<TaskEventFeed>;
}

/** Answers a request with a task's event stream, after event `afterSeq` (0: from the start). */
export type TaskStreamer = (
  c: Context<GatewayEnv>,
  task: StreamedTask,
  afterSeq?: number,
) => Response;

/** Mounts `GET /v1/tasks/:id/events` on `app`; returns the streamer the infer route shares. */
export function registerEventsRoute(app: Hono<GatewayEnv>, deps: EventsRouteDeps): TaskStreamer {
  const { client } = deps;
  const streamTask: TaskStreamer = (c, { taskId, region, now, events }, afterSeq = 0) => {
    return eventStreamResponse(c, deps.keepAliveMs, async (sink) => {
      if (afterSeq === 0) {
        await sink.send({ event: 'state', data: JSON.stringify(now) }).catch((err: unknown) => {
          closeFeed(events);
          throw err;
        });
      }
      const items = followTask(client, {
        taskId,
        region,
        tenant: c.get('tenant'),
        afterSeq,
        signal: sink.signal,
        ...(events ? { feed: events } : {}),
      });
      for await (const item of items) {
        if (item.type === 'event') {
          await sink.send({
            event: item.event.type,
            id: String(item.seq),
            data: JSON.stringify(eventView(item.event)),
          });
        } else {
          const view = taskView({ region, state: item.record.state, record: item.record });
          await sink.send({
            event: item.record.state,
            ...(item.seq === undefined ? {} : { id: String(item.seq) }),
            data: JSON.stringify(view),
          });
        }
      }
    });
  };
  app.get('/v1/tasks/:id/events', async (c) => {
    const afterSeq = lastEventSeq(c.req.header('Last-Event-ID'));
    const status = await ownTask(client, c.req.param('id'), c.get('tenant'));
    const now = taskView(status);
    return streamTask(c, { taskId: now.id, region: status.region, now }, afterSeq);
  });
  return streamTask;
}

/** The sequence after which a resumed stream starts; 0 for a new stream. */
function lastEventSeq(header: string | undefined): number {
  if (header === undefined || header === '') return 0;
  if (!SEQUENCE.test(header)) {
    throw new ValidationError(
      'must be the id of an event of this stream (a sequence number)',
      'Last-Event-ID',
    );
  }
  return Number(header);
}

/** An event as the client sees it: snake_case, without the envelope's own fields. */
function eventView(event: TaskEvent): Record<string, unknown> {
  return {
    task_id: event.taskId,
    type: event.type,
    attempt: event.attempt,
    at: new Date(event.at).toISOString(),
    ...(event.text === undefined ? {} : { text: event.text }),
    ...(event.index === undefined ? {} : { index: event.index }),
    ...(event.tokens === undefined ? {} : { tokens: event.tokens }),
    ...(event.choice === undefined ? {} : { choice: event.choice }),
    ...(event.progress === undefined ? {} : { progress: event.progress }),
    ...(event.retryInMs === undefined ? {} : { retry_in_ms: event.retryInMs }),
    ...(event.error === undefined ? {} : { error: event.error }),
  };
}
