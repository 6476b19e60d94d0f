/**
 * `POST /v1/models/{model}/infer`, the native way in: validates the body, reads how long the
 * caller waits (`Prefer: respond-async`, `Prefer: wait=N`, else the longest sync wait), submits,
 * and answers 200 with the finished task or 202 with its URL while it still runs.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { nameToken, Priority, TaskState, validate } from '../../protocol/index.js';
import { requireModel, type ModelCatalog } from './catalog.js';
import type { GatewayEnv } from './gateway-env.js';
import { readJsonBody, type BodyLimits } from './json-body.js';
import { parsePrefer } from './prefer-header.js';
import type { TaskStreamer } from './events-route.js';
import type { TaskSubmission, TaskSubmitter } from './submit-task.js';
import { acceptedView, finalResponse, taskView } from './task-view.js';

/** What the infer route needs. */
export interface InferRouteDeps {
  catalog: ModelCatalog;
  submitter: TaskSubmitter;
  /** Longest a synchronous call waits for its result before answering 202, ms. */
  maxSyncWaitMs: number;
  /** How much of a request body is read, and for how long. */
  body: BodyLimits;
  /** Streams the events of a submitted task (`events-route.ts`). */
  streamTask: TaskStreamer;
}

const inferBodySchema = z.object({
  input: z.unknown().refine((v) => v !== undefined, 'is required'),
  params: z.record(z.string(), z.unknown()).default({}),
  priority: z.enum([Priority.Interactive, Priority.Batch]).default(Priority.Interactive),
  /** Relative deadline for the task, ms. */
  deadline_ms: z.number().int().positive().optional(),
  /** Answer with the task's events (Server-Sent Events) as they come, tokens included. */
  stream: z.boolean().default(false),
});

/** Mounts `POST /v1/models/:model/infer` on `app`. */
export function registerInferRoute(app: Hono<GatewayEnv>, deps: InferRouteDeps): void {
  app.post('/v1/models/:model/infer', async (c) => {
    const model = requireModel(deps.catalog, nameToken(c.req.param('model'), 'model'));
    const body = validate(inferBodySchema, await readJsonBody(c, deps.body), 'body');
    const prefer = parsePrefer(c.req.header('Prefer'));
    // A stream answers at once, with the events; its end is in them.
    const waitMs =
      prefer.respondAsync || body.stream
        ? 0
        : Math.min(prefer.waitMs ?? deps.maxSyncWaitMs, deps.maxSyncWaitMs);
    const submission: TaskSubmission = {
      model,
      input: body.input,
      params: body.params,
      priority: body.priority,
      waitMs,
      stream: body.stream,
      // A stream is read at once: its feed opens while the task is published.
      ...(body.stream && !prefer.respondAsync ? { events: { afterSeq: 0 } } : {}),
      ...(body.deadline_ms === undefined ? {} : { deadlineMs: body.deadline_ms }),
    };
    const { taskId, region, outcome, events } = await deps.submitter.submit(c, submission);
    c.header('Location', `/v1/tasks/${taskId}`);
    if (body.stream && !prefer.respondAsync) {
      const now = outcome
        ? taskView({ region, state: outcome.state, record: outcome })
        : acceptedView(taskId, model, region);
      return deps.streamTask(c, { taskId, region, now, ...(events ? { events } : {}) });
    }
    if (!outcome) {
      const links = {
        self: `/v1/tasks/${taskId}`,
        events: `/v1/tasks/${taskId}/events`,
      };
      return c.json({ id: taskId, object: 'task', state: TaskState.Accepted, region, links }, 202);
    }
    return finalResponse(c, outcome, region);
  });
}
