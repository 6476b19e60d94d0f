/**
 * `GET /v1/tasks/{id}`: a task's state from whichever region holds it, long-polled with
 * `Prefer: wait=N`. A tenant sees only its own tasks.
 */
import type { Hono } from 'hono';
import {
  ErrorCode,
  FINAL_STATES,
  TASK_ID,
  VigilError,
  type VigilClient,
} from '../../protocol/index.js';
import { clientGone } from './client-gone.js';
import type { GatewayEnv } from './gateway-env.js';
import { parsePrefer } from './prefer-header.js';
import { ownerOf, taskView } from './task-view.js';

/** What the task route needs. */
export interface TasksRouteDeps {
  client: VigilClient;
  /** Longest a `Prefer: wait` poll waits, ms. */
  maxSyncWaitMs: number;
}

/** Mounts `GET /v1/tasks/:id` on `app`. */
export function registerTasksRoute(app: Hono<GatewayEnv>, deps: TasksRouteDeps): void {
  const { client } = deps;
  app.get('/v1/tasks/:id', async (c) => {
    const id = c.req.param('id');
    const notFound = new VigilError(ErrorCode.NotFound, `task '${id}' does not exist`, false);
    if (!TASK_ID.test(id)) throw notFound;
    let status = await client.getTask(id);
    // A tenant sees only its own tasks; another tenant's id is indistinguishable from none.
    if (!status || ownerOf(status) !== c.get('tenant')) throw notFound;
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
}
