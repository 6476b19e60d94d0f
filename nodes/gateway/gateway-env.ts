/**
 * The Hono environment every gateway route and middleware shares. Its own module so that the
 * routes, the limits and the app can all name it without importing each other.
 */
import type { HttpBindings } from '@hono/node-server';
import type { RequestIdVariables } from 'hono/request-id';
import type { HttpMetricsVariables } from './http-metrics.js';

/** Hono variables set by the gateway's middleware. */
export type GatewayEnv = {
  Variables: RequestIdVariables & HttpMetricsVariables & { tenant: string };
  /** Node's request and response, when served by `@hono/node-server` (absent in `app.request`). */
  Bindings: Partial<HttpBindings>;
};
