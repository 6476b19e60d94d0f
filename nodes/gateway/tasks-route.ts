/**
 * `GET /v1/tasks/{id}`: a task's state from whichever region holds it, long-polled with
 * `Prefer: wait=N`; `POST /v1/tasks/{id}/cancel` stops it. A tenant sees only its own tasks.
 */
import type { Hono } from 'hono';
import { ErrorCode, FINAL_STATES, TaskState, type VigilClient } from '../../protocol/index.js';
import { clientGone } from './client-gone.js';
import type { GatewayEnv } from './gateway-env.js';
import { parsePrefer } from './prefer-header.js';
import { errorResponse } from './http-errors.js';
import type { TaskCanceller } from './task-cancel.js';
import { ownTask, taskView } from './task-view.js';

/** What the task route needs. */
export interface TasksRouteDeps {
  client: VigilClient;
  /** Longest a `Prefer: wait` poll waits, ms. */
  maxSyncWaitMs: number;
  canceller: TaskCanceller;
}

/** Mounts `GET /v1/tasks/:id` on `app`. */
export function registerTasksRoute(app: Hono<GatewayEnv>, deps: TasksRouteDeps): void {
  const { client } = deps;
  app.get('/v1/tasks/:id', async (c) => {
    const id = c.req.param('id');
    let status = await ownTask(client, id, c.get('tenant'));
    const prefer = parsePrefer(c.req.header('Prefer'));
    if (prefer.waitMs && !FINAL_STATES.has(status.state)) {
      const outcome = await client.waitForOutcome(
        id,
        Math.min(prefer.waitMs, deps.maxSyncWaitMs),
        clientGone(c),
        status.region,
        c.get('tenant'),
      );
      if (outcome) status = { region: status.region, state: outcome.state, record: outcome };
    }
    return c.json(taskView(status));
  });

  // Asks the task's region to stop it: 202 with the task as it is now; the `cancelled` state
  // follows (GET, or its events). A task that ended cancelled answers 200; one that ended
  // otherwise, 409 with the task.
  app.post('/v1/tasks/:id/cancel', async (c) => {
    const status = await ownTask(client, c.req.param('id'), c.get('tenant'));
    const view = taskView(status);
    if (status.state === TaskState.Cancelled) return c.json(view, 200);
    if (FINAL_STATES.has(status.state)) {
      return errorResponse(
        c,
        {
          code: ErrorCode.Conflict,
          message: `task ${view.id} has already ended (${status.state})`,
          retryable: false,
        },
        { task: view },
      );
    }
    const { model, createdAt } =
      status.state === TaskState.Accepted ? status.request : status.record;
    await deps.canceller.cancel({
      taskId: view.id,
      region: status.region,
      tenant: c.get('tenant'),
      model,
      createdAt,
    });
    return c.json(view, 202);
  });
}
