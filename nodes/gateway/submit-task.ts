/**
 * The gateway's submit path, shared by the native infer route and the OpenAI routes: checks the
 * idempotency key and the input against its model kind's contract, asks the region router where
 * the task runs, fails fast when no actor could run
 * a synchronous call now, caps the deadline, and hands the task to `protocol/client.ts` in the
 * chosen region, spilling over to the next one only when a region refused it outright.
 *
 * A streamed task's event feed is opened while the task is published (its id is planned first),
 * not after it: the consumer's round trips overlap the publish's instead of following it (they
 * still end after the first token is made; `bench/README.md` has the times).
 */
import type { Context } from 'hono';
import type { Logger } from 'pino';
import {
  checkModelInput,
  ErrorCode,
  plannedTaskId,
  PublishRefusedError,
  ValidationError,
  VigilError,
  type ModelDeployment,
  type Priority,
  type SubmitRequest,
  type TaskEventFeed,
  type TaskRecord,
  type VigilClient,
} from '../../protocol/index.js';
import { gatewayTaskMetrics, type GatewayTaskMetrics } from '../common/index.js';
import { clientGone } from './client-gone.js';
import type { GatewayEnv } from './gateway-env.js';
import type { RegionRouter, RoutePlan } from './region-router.js';

/** A submission as the routes describe it. */
export interface TaskSubmission {
  model: ModelDeployment;
  input: unknown;
  params: Record<string, unknown>;
  priority: Priority;
  deadlineMs?: number;
  /** How long to wait for the outcome, ms; 0 = answer once accepted. */
  waitMs: number;
  /** The caller streams the task's tokens: the actor publishes them as events. */
  stream?: boolean;
  /** Open the task's event feed (after this sequence) while it is submitted. */
  events?: { afterSeq: number };
}

/** What the routes get back from a submission. */
export interface SubmittedTask {
  taskId: string;
  /** The region that holds the task. */
  region: string;
  duplicate: boolean;
  outcome?: TaskRecord;
  /** The task's event feed, when the submission asked for it; the caller closes it. */
  events?: Promise<TaskEventFeed>;
}

/** Hands the routes' submissions to NATS. */
export interface TaskSubmitter {
  /**
   * Submits the task of request `c` and waits up to `submission.waitMs` for its outcome. Throws a
   * `VigilError` (the routes' `onError` answers it) when the task was not accepted.
   */
  submit(c: Context<GatewayEnv>, submission: TaskSubmission): Promise<SubmittedTask>;
}

/** What {@link createTaskSubmitter} needs. */
export interface TaskSubmitterDeps {
  client: VigilClient;
  /** Which region a request runs in (from heartbeats and queue depths). */
  router: RegionRouter;
  /**
   * Answer synchronous calls with 503 at once when no region has a healthy actor for the model.
   * Off at edge sites, which accept and hold work while their link to the hub is cut.
   */
  failFastWithoutActors: boolean;
  /** Deadline given to tasks that do not ask for one, ms from acceptance. */
  defaultTaskDeadlineMs: number;
  /** Longest deadline a task may ask for, ms. */
  maxTaskDeadlineMs: number;
  logger: Logger;
}

/** A task without the region to run in: the same request goes to each region tried. */
type RoutedRequest = Omit<SubmitRequest, 'region'>;

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Creates the submit path the routes share. */
export function createTaskSubmitter(deps: TaskSubmitterDeps): TaskSubmitter {
  const taskMetrics = gatewayTaskMetrics();
  return {
    async submit(c, submission) {
      const key = idempotencyKeyOf(c);
      c.set('model', submission.model.name);
      // Before anything is routed, counted or published: what the model's runtime would refuse
      // is refused here, so it costs no queue slot and no quota (the quota is taken in submit).
      checkModelInput(submission.model.kind, submission.input, submission.params);
      const route = await deps.router.plan(submission.model.name);
      // Fail fast rather than queue sync or streamed work no actor can run now; async work
      // waits in the queue.
      const waits = submission.waitMs > 0 || submission.stream === true;
      if (waits && route.noHealthyActor && deps.failFastWithoutActors) {
        throw noActorError(submission.model.name);
      }
      const request = submitRequest(c, submission, key, deps);
      if (!submission.events) return submitAcrossRegions(deps, taskMetrics, request, route);
      return submitWithEvents(deps, taskMetrics, request, route, submission.events.afterSeq);
    },
  };
}

/** Submits and opens the task's event feed at once, in the region the task is published to. */
async function submitWithEvents(
  deps: Pick<TaskSubmitterDeps, 'client' | 'logger'>,
  taskMetrics: GatewayTaskMetrics,
  request: RoutedRequest,
  route: RoutePlan,
  afterSeq: number,
): Promise<SubmittedTask> {
  const taskId = plannedTaskId(request.tenant, request.idempotencyKey);
  const open = (region: string) =>
    deps.client.events({ region, tenant: request.tenant, taskId, afterSeq });
  const first = route.regions[0]!;
  let events = open(first);
  // Settled either way, so a refused open never goes unhandled while the publish runs.
  events.catch(() => undefined);
  let submitted: SubmittedTask;
  try {
    submitted = await submitAcrossRegions(deps, taskMetrics, { ...request, taskId }, route);
  } catch (err) {
    void events.then(
      (feed) => feed.close(),
      () => undefined,
    );
    throw err;
  }
  // A keyed retry's task, or a spill-over, may live in another region than planned.
  if (submitted.region !== first) {
    void events.then(
      (feed) => feed.close(),
      () => undefined,
    );
    events = open(submitted.region);
  }
  return { ...submitted, events };
}

/** The request's `Idempotency-Key`, if it sent one that is valid. */
function idempotencyKeyOf(c: Context<GatewayEnv>): string | undefined {
  const key = c.req.header('Idempotency-Key');
  if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
    throw new ValidationError('must be 1-255 printable ASCII characters', 'Idempotency-Key');
  }
  return key;
}

function noActorError(model: string): VigilError {
  return new VigilError(
    ErrorCode.Unavailable,
    `no healthy actor serves model '${model}' right now; retry later, or send Prefer: respond-async to queue the task`,
    true,
    { retryAfterMs: 5_000 },
  );
}

/** The client's request: the tenant's task with its deadline capped and its wait within it. */
function submitRequest(
  c: Context<GatewayEnv>,
  submission: TaskSubmission,
  key: string | undefined,
  deadlines: Pick<TaskSubmitterDeps, 'defaultTaskDeadlineMs' | 'maxTaskDeadlineMs'>,
): RoutedRequest {
  const deadlineMs = Math.min(
    submission.deadlineMs ?? deadlines.defaultTaskDeadlineMs,
    deadlines.maxTaskDeadlineMs,
  );
  return {
    tenant: c.get('tenant'),
    model: submission.model.name,
    version: submission.model.version,
    priority: submission.priority,
    input: submission.input,
    params: submission.params,
    deadline: Date.now() + deadlineMs,
    waitMs: Math.min(submission.waitMs, deadlineMs),
    cancel: clientGone(c),
    ...(submission.stream ? { stream: true } : {}),
    ...(key === undefined ? {} : { idempotencyKey: key }),
  };
}

/**
 * Submits in the route's first region. The next ones only take a request the previous refused
 * outright (nothing stored), so a request never runs in two regions.
 */
async function submitAcrossRegions(
  deps: Pick<TaskSubmitterDeps, 'client' | 'logger'>,
  taskMetrics: GatewayTaskMetrics,
  request: RoutedRequest,
  route: RoutePlan,
): Promise<SubmittedTask> {
  for (const [i, region] of route.regions.entries()) {
    try {
      const submitted = await deps.client.submit({ ...request, region });
      if (!submitted.duplicate) taskMetrics.accepted(request.model, region);
      return submitted;
    } catch (err) {
      if (!(err instanceof PublishRefusedError) || i === route.regions.length - 1) throw err;
      deps.logger.warn(
        { region, model: request.model, reason: err.message },
        'region refused a request; trying the next',
      );
    }
  }
  throw new VigilError(ErrorCode.Internal, 'no region to route to', false);
}
