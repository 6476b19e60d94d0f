/**
 * The gateway's HTTP surface: the middleware every request passes (telemetry, request id, secure
 * headers, tenant authentication, tenant limits) and the routes behind it. A request's path goes
 * on in `infer-route.ts` (or `openai-routes.ts`), then `submit-task.ts`. The app holds no state of
 * its own; everything durable is in NATS.
 */
import { httpInstrumentationMiddleware } from '@hono/otel';
import { Hono, type MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { requestId } from 'hono/request-id';
import { secureHeaders } from 'hono/secure-headers';
import { ErrorCode, VigilError, type VigilClient } from '../../protocol/index.js';
import type { Logger } from 'pino';
import { registerAdminRoutes, type AdminRoutesDeps } from './admin-routes.js';
import type { ApiKeyStore } from './api-keys.js';
import type { ModelCatalog } from './catalog.js';
import type { GatewayEnv } from './gateway-env.js';
import { errorResponse, onGatewayError } from './http-errors.js';
import { httpMetricsMiddleware, NO_METRICS } from './http-metrics.js';
import { registerEventsRoute } from './events-route.js';
import { registerInferRoute } from './infer-route.js';
import { registerOpenAiRoutes } from './openai-routes.js';
import type { RegionRouter } from './region-router.js';
import { createTaskSubmitter } from './submit-task.js';
import type { ClientRetries } from './client-retries.js';
import type { TaskCanceller } from './task-cancel.js';
import { registerTasksRoute } from './tasks-route.js';
import { tenantAuth } from './tenant-auth.js';

/** Limits and timings of the HTTP surface. */
export interface GatewayAppOptions {
  /** Largest request body, bytes. */
  maxBodyBytes: number;
  /** Longest a request body may take to arrive, ms; past it, 408 and the connection closed. */
  bodyTimeoutMs: number;
  /** Longest a request's headers may take to arrive, ms; past it, 408 (`http-server.ts`). */
  headersTimeoutMs: number;
  /** Longest a synchronous call waits for its result before answering 202, ms. */
  maxSyncWaitMs: number;
  /** How often an idle event stream sends a keep-alive comment, ms. */
  streamKeepAliveMs: number;
  /**
   * How long an OpenAI stream's task goes on after its client disconnected, ms, for the client
   * to resume it (same `Idempotency-Key`, `Last-Event-ID`) at any gateway; then it is cancelled.
   */
  streamAbandonGraceMs: number;
  /** Deadline given to tasks that do not ask for one, ms from acceptance. */
  defaultTaskDeadlineMs: number;
  /** Longest deadline a task may ask for, ms. */
  maxTaskDeadlineMs: number;
}

/** What the app needs from the rest of the gateway. */
export interface GatewayAppDeps {
  client: VigilClient;
  /** Writes cancel requests (and abandoned streams' pending ones). */
  canceller: TaskCanceller;
  /** Finds the task of an OpenAI request its client retries without a key. */
  retries: ClientRetries;
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

/** Builds the gateway's Hono app: middleware first, then the routes, in the order they match. */
export function createGatewayApp(deps: GatewayAppDeps): Hono<GatewayEnv> {
  const { client, catalog, options } = deps;
  const app = new Hono<GatewayEnv>();
  app.onError(onGatewayError(deps.logger));
  app.notFound((c) =>
    errorResponse(c, {
      code: ErrorCode.NotFound,
      message: `no route for ${c.req.method} ${c.req.path}`,
      retryable: false,
    }),
  );
  useResponseMiddleware(app);
  registerHealthRoutes(app, () => deps.isReady());

  app.use('/v1/*', tenantAuth(deps.apiKeys));
  if (deps.limits) app.use('/v1/*', deps.limits);
  if (deps.admin) registerAdminRoutes(app, deps.admin);

  const submitter = createTaskSubmitter({
    client,
    router: deps.router,
    failFastWithoutActors: deps.failFastWithoutActors,
    defaultTaskDeadlineMs: options.defaultTaskDeadlineMs,
    maxTaskDeadlineMs: options.maxTaskDeadlineMs,
    logger: deps.logger,
  });
  const { maxSyncWaitMs } = options;
  const body = { maxBytes: options.maxBodyBytes, timeoutMs: options.bodyTimeoutMs };
  const streamTask = registerEventsRoute(app, { client, keepAliveMs: options.streamKeepAliveMs });
  registerInferRoute(app, { catalog, submitter, maxSyncWaitMs, body, streamTask });
  registerTasksRoute(app, { client, maxSyncWaitMs, canceller: deps.canceller });
  registerOpenAiRoutes(app, {
    catalog,
    submitter,
    client,
    canceller: deps.canceller,
    retries: deps.retries,
    keepAliveMs: options.streamKeepAliveMs,
    abandonGraceMs: options.streamAbandonGraceMs,
    maxSyncWaitMs,
    body,
  });
  return app;
}

/** Telemetry, the request id and the security headers, on every response. */
function useResponseMiddleware(app: Hono<GatewayEnv>): void {
  // The server span (parent: the client's `traceparent`, if any), a no-op until the node starts
  // the OTel SDK; the request-duration histogram is ours, to carry the model (http-metrics.ts).
  app.use(httpInstrumentationMiddleware({ meterProvider: NO_METRICS }));
  app.use(httpMetricsMiddleware<GatewayEnv>());
  app.use(requestId({ headerName: 'X-Request-Id' }));
  app.use(requireHostOnHttp11);
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
}

/**
 * HTTP/1.1 requires a Host header (RFC 9112, 3.2). Node would refuse one without it with a bare
 * 400; the server lets it through (`requireHostHeader: false`) so that the refusal is ours.
 */
const requireHostOnHttp11 = createMiddleware<GatewayEnv>(async (c, next) => {
  if (c.env?.incoming?.httpVersion === '1.1' && c.req.header('host') === undefined) {
    throw new VigilError(
      ErrorCode.InvalidRequest,
      'an HTTP/1.1 request needs a Host header',
      false,
    );
  }
  await next();
});

/** `GET /healthz` (the process is up) and `GET /readyz` (connected to NATS); no key needed. */
function registerHealthRoutes(app: Hono<GatewayEnv>, isReady: () => boolean): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) =>
    isReady()
      ? c.json({ status: 'ready' })
      : errorResponse(c, {
          code: ErrorCode.Unavailable,
          message: 'not connected to NATS yet',
          retryable: true,
        }),
  );
}
