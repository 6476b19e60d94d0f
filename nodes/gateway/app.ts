/**
 * The gateway's HTTP surface: authentication, limits and error mapping around the native task API
 * and the OpenAI-compatible API. It holds no state of its own; everything durable is in NATS.
 */
import type { HttpBindings } from '@hono/node-server';
import { httpInstrumentationMiddleware } from '@hono/otel';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
import { createMiddleware } from 'hono/factory';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import { secureHeaders } from 'hono/secure-headers';
import {
  ErrorCode,
  FINAL_STATES,
  nameToken,
  Priority,
  PublishRefusedError,
  TASK_ID,
  TaskState,
  validate,
  ValidationError,
  VigilError,
  type Cancellation,
  type ModelDeployment,
  type TaskRecord,
  type VigilClient,
} from '../../protocol/index.js';
import type { Logger } from 'pino';
import { isAdminPath, registerAdminRoutes, type AdminRoutesDeps } from './admin-routes.js';
import type { ApiKeyStore } from './api-keys.js';
import type { RegionRouter } from './region-router.js';
import type { ModelCatalog } from './catalog.js';
import { errorResponse, onGatewayError, unauthenticated } from './http-errors.js';
import { httpMetricsMiddleware, NO_METRICS, type HttpMetricsVariables } from './http-metrics.js';
import { registerOpenAiRoutes } from './openai-routes.js';
import { readJsonBody } from './json-body.js';
import { ownerOf, taskView } from './task-view.js';
import { z } from 'zod';
import { gatewayTaskMetrics } from '../common/metrics.js';

/** Limits and timings of the HTTP surface. */
export interface GatewayAppOptions {
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  /** Longest a synchronous call waits for its result before answering 202, ms. */
  maxSyncWaitMs: number;
  /** Deadline given to tasks that do not ask for one, ms from acceptance. */
  defaultTaskDeadlineMs: number;
  /** Longest deadline a task may ask for, ms. */
  maxTaskDeadlineMs: number;
}

/** What the app needs from the rest of the gateway. */
export interface GatewayAppDeps {
  client: VigilClient;
  catalog: ModelCatalog;
  apiKeys: ApiKeyStore;
  /** Admin keys and dead-letter access; absent: no admin routes (`/v1/admin/*` is a 404). */
  admin?: AdminRoutesDeps;
  /** Per-tenant limits and RateLimit headers (`tenant-limits.ts`); absent: tenants are unlimited. */
  limits?: MiddlewareHandler<GatewayEnv>;
  /** Which region a request runs in (from heartbeats and queue depths). */
  router: RegionRouter;
  /**
   * Answer synchronous calls with 503 at once when no region has a healthy actor for the model.
   * Off at edge sites, which accept and hold work while their link to the hub is cut.
   */
  failFastWithoutActors: boolean;
  logger: Logger;
  /** True when NATS is connected and the catalog is loaded. */
  isReady(): boolean;
  options: GatewayAppOptions;
}

/** Hono variables set by the gateway's middleware. */
export type GatewayEnv = {
  Variables: RequestIdVariables & HttpMetricsVariables & { tenant: string };
  /** Node's request and response, when served by `@hono/node-server` (absent in `app.request`). */
  Bindings: Partial<HttpBindings>;
};

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

const inferBodySchema = z.object({
  input: z.unknown().refine((v) => v !== undefined, 'is required'),
  params: z.record(z.string(), z.unknown()).default({}),
  priority: z.enum([Priority.Interactive, Priority.Batch]).default(Priority.Interactive),
  /** Relative deadline for the task, ms. */
  deadline_ms: z.number().int().positive().optional(),
});

/** A submission as the routes describe it. */
export interface TaskSubmission {
  model: ModelDeployment;
  input: unknown;
  params: Record<string, unknown>;
  priority: Priority;
  deadlineMs?: number;
  /** How long to wait for the outcome, ms; 0 = answer once accepted. */
  waitMs: number;
}

/** What the routes get back from {@link submitTask}. */
export interface SubmittedTask {
  taskId: string;
  /** The region that holds the task. */
  region: string;
  duplicate: boolean;
  outcome?: TaskRecord;
}

/** Builds the gateway's Hono app. */
export function createGatewayApp(deps: GatewayAppDeps): Hono<GatewayEnv> {
  const { client, catalog, apiKeys, options } = deps;
  const app = new Hono<GatewayEnv>();
  const taskMetrics = gatewayTaskMetrics();
  app.onError(onGatewayError(deps.logger));
  app.notFound((c) =>
    errorResponse(c, {
      code: ErrorCode.NotFound,
      message: `no route for ${c.req.method} ${c.req.path}`,
      retryable: false,
    }),
  );
  // The server span (parent: the client's `traceparent`, if any), a no-op until the node starts
  // the OTel SDK; the request-duration histogram is ours, to carry the model (http-metrics.ts).
  app.use(httpInstrumentationMiddleware({ meterProvider: NO_METRICS }));
  app.use(httpMetricsMiddleware<GatewayEnv>());
  app.use(requestId({ headerName: 'X-Request-Id' }));
  // A JSON API needs the headers that stop content sniffing and framing and pin HTTPS; the
  // browser-document policies (COOP, CORP, Origin-Agent-Cluster, download and DNS-prefetch
  // hints) only add bytes to every response.
  app.use(
    secureHeaders({
      crossOriginResourcePolicy: false,
      crossOriginOpenerPolicy: false,
      originAgentCluster: false,
      xDnsPrefetchControl: false,
      xDownloadOptions: false,
      xPermittedCrossDomainPolicies: false,
      xXssProtection: false,
      xFrameOptions: 'DENY',
    }),
  );

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) =>
    deps.isReady()
      ? c.json({ status: 'ready' })
      : errorResponse(c, {
          code: ErrorCode.Unavailable,
          message: 'not connected to NATS yet',
          retryable: true,
        }),
  );

  const tenantAuth = bearerAuth<GatewayEnv>({
    realm: 'vigil',
    verifyToken: (token, c) => {
      const tenant = apiKeys.tenantOf(token);
      if (tenant === undefined) return false;
      c.set('tenant', tenant);
      return true;
    },
    noAuthenticationHeader: {
      message: unauthenticated('an API key is required: Authorization: Bearer <key>'),
    },
    invalidAuthenticationHeader: {
      message: unauthenticated('the Authorization header must be: Bearer <key>'),
    },
    invalidToken: { message: unauthenticated('the API key is not valid') },
  });
  // Admin paths are authenticated with admin keys by the admin routes, never with tenant keys.
  app.use(
    '/v1/*',
    createMiddleware<GatewayEnv>((c, next) =>
      isAdminPath(c.req.path) ? next() : tenantAuth(c, next),
    ),
  );
  if (deps.limits) app.use('/v1/*', deps.limits);
  if (deps.admin) registerAdminRoutes(app, deps.admin);

  /** Validates the common parts and hands the task to NATS. */
  const submitTask = async (
    c: Context<GatewayEnv>,
    submission: TaskSubmission,
  ): Promise<SubmittedTask> => {
    const key = c.req.header('Idempotency-Key');
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new ValidationError('must be 1-255 printable ASCII characters', 'Idempotency-Key');
    }
    c.set('model', submission.model.name);
    const route = await deps.router.plan(submission.model.name);
    // Fail fast rather than queue sync work no actor can run now; async work waits in the queue.
    if (submission.waitMs > 0 && route.noHealthyActor && deps.failFastWithoutActors) {
      throw new VigilError(
        ErrorCode.Unavailable,
        `no healthy actor serves model '${submission.model.name}' right now; retry later, or send Prefer: respond-async to queue the task`,
        true,
        { retryAfterMs: 5_000 },
      );
    }
    const deadlineMs = Math.min(
      submission.deadlineMs ?? options.defaultTaskDeadlineMs,
      options.maxTaskDeadlineMs,
    );
    const request = {
      tenant: c.get('tenant'),
      model: submission.model.name,
      version: submission.model.version,
      priority: submission.priority,
      input: submission.input,
      params: submission.params,
      deadline: Date.now() + deadlineMs,
      waitMs: Math.min(submission.waitMs, deadlineMs),
      cancel: clientGone(c),
      ...(key === undefined ? {} : { idempotencyKey: key }),
    };
    // The first region is the choice; the next ones only take a request the previous refused
    // outright (nothing stored), so a request never runs in two regions.
    for (const [i, region] of route.regions.entries()) {
      try {
        const submitted = await client.submit({ ...request, region });
        if (!submitted.duplicate) taskMetrics.accepted(request.model, region);
        return submitted;
      } catch (err) {
        if (!(err instanceof PublishRefusedError) || i === route.regions.length - 1) throw err;
        deps.logger.warn(
          {
            region,
            model: request.model,
            reason: err.message,
          },
          'region refused a request; trying the next',
        );
      }
    }
    throw new VigilError(ErrorCode.Internal, 'no region to route to', false);
  };
  const modelOr404 = (name: string): ModelDeployment => {
    const model = catalog.get(name);
    if (!model) throw new VigilError(ErrorCode.NotFound, `model '${name}' does not exist`, false);
    return model;
  };

  app.post('/v1/models/:model/infer', async (c) => {
    const model = modelOr404(nameToken(c.req.param('model'), 'model'));
    const body = validate(inferBodySchema, await readJsonBody(c, options.maxBodyBytes), 'body');
    const prefer = parsePrefer(c.req.header('Prefer'));
    const waitMs = prefer.respondAsync
      ? 0
      : Math.min(prefer.waitMs ?? options.maxSyncWaitMs, options.maxSyncWaitMs);
    const submission: TaskSubmission = {
      model,
      input: body.input,
      params: body.params,
      priority: body.priority,
      waitMs,
      ...(body.deadline_ms === undefined ? {} : { deadlineMs: body.deadline_ms }),
    };
    const { taskId, region, outcome } = await submitTask(c, submission);
    c.header('Location', `/v1/tasks/${taskId}`);
    if (!outcome) {
      return c.json(
        {
          id: taskId,
          object: 'task',
          state: TaskState.Accepted,
          region,
          links: { self: `/v1/tasks/${taskId}` },
        },
        202,
      );
    }
    return finalResponse(c, outcome, region);
  });

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
        Math.min(prefer.waitMs, options.maxSyncWaitMs),
        clientGone(c),
        status.region,
      );
      if (outcome) status = { region: status.region, state: outcome.state, record: outcome };
    }
    return c.json(taskView(status));
  });

  registerOpenAiRoutes(app, {
    catalog,
    submitTask,
    modelOr404,
    maxSyncWaitMs: options.maxSyncWaitMs,
    maxBodyBytes: options.maxBodyBytes,
  });
  return app;
}

/**
 * Says whether the client has disconnected, so its wait stops holding a waiter slot. Reads Node's
 * response state when polled, with no listener or AbortController per request: `c.req.raw.signal`
 * would make @hono/node-server build a full fetch `Request` per call (a tenth of the gateway's
 * CPU, measured).
 */
function clientGone(c: Context<GatewayEnv>): Cancellation | undefined {
  const outgoing = c.env.outgoing;
  if (!outgoing) return undefined;
  return {
    get aborted() {
      return outgoing.destroyed && !outgoing.writableFinished;
    },
  };
}

/** A finished task: 200 with the task, or the error's status with the error and the task. */
export function finalResponse(c: Context, record: TaskRecord, region: string): Response {
  const view = taskView({ region, state: record.state, record });
  if (record.state === TaskState.Succeeded) return c.json(view, 200);
  const error = record.error ?? {
    code: ErrorCode.Internal,
    message: 'task failed',
    retryable: false,
  };
  return errorResponse(c, { ...error, retryable: false }, { task: view });
}

/** RFC 7240 `Prefer`: `respond-async` and `wait=<seconds>`. */
export function parsePrefer(header: string | undefined): {
  respondAsync: boolean;
  waitMs?: number;
} {
  const result: { respondAsync: boolean; waitMs?: number } = { respondAsync: false };
  for (const part of (header ?? '').split(',')) {
    const [name, value] = part.trim().toLowerCase().split('=');
    if (name === 'respond-async') result.respondAsync = true;
    if (name === 'wait' && value !== undefined && /^\d{1,6}$/.test(value))
      result.waitMs = Number(value) * 1000;
  }
  return result;
}
