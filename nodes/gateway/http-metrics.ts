/**
 * The HTTP layer of the gateway's metrics: the semantic-convention histogram
 * `http.server.request.duration` per method, route and status, and per model on the inference
 * routes (`vigil.model`), so that request rate, latency and error rate read per route and model;
 * plus `http.server.active_requests` per method.
 *
 * `@hono/otel` records the same histogram but can add no attribute to it, so the gateway hands
 * that middleware a no-op meter provider (it keeps making the server span) and records the
 * histogram here, with the same name, unit and buckets. The model is set by the routes once it
 * was found in the catalog: an unknown name in a URL never becomes a label.
 */
import {
  createNoopMeter,
  metrics,
  ValueType,
  type Attributes,
  type MeterProvider,
} from '@opentelemetry/api';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { routePath } from 'hono/route';

/** The variable the routes set to the catalog model a request is for. */
export interface HttpMetricsVariables {
  model: string | undefined;
}

/** Given to `@hono/otel` so that it does not record a second, model-less histogram. */
export const NO_METRICS: MeterProvider = { getMeter: () => createNoopMeter() };

/** The semantic conventions' advice for `http.server.request.duration`, seconds. */
const DURATION_BUCKETS_S = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

/** Records the duration of every request. Call after the node started the OTel SDK. */
export function httpMetricsMiddleware<E extends { Variables: HttpMetricsVariables }>() {
  const meter = metrics.getMeter('vigil.gateway');
  const duration = meter.createHistogram('http.server.request.duration', {
    description: 'Duration of HTTP server requests',
    unit: 's',
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
  });
  const active = meter.createUpDownCounter('http.server.active_requests', {
    description: 'HTTP server requests in flight',
    unit: '{request}',
  });
  // Methods come from clients: the standard ones are labels, anything else is `_OTHER`.
  const methods = new Map<string, Attributes>(
    ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', '_OTHER'].map((m) => [
      m,
      { 'http.request.method': m },
    ]),
  );
  const other = methods.get('_OTHER')!;

  return createMiddleware<E>(async (c, next) => {
    const started = performance.now();
    const method = methods.get(c.req.method) ?? other;
    active.add(1, method);
    try {
      await next();
    } finally {
      active.add(-1, method);
      duration.record((performance.now() - started) / 1000, requestAttributes(c, method));
    }
  });
}

function requestAttributes<E extends { Variables: HttpMetricsVariables }>(
  c: Context<E>,
  method: Attributes,
): Attributes {
  const model = c.get('model');
  return {
    ...method,
    'http.route': routePath(c),
    'http.response.status_code': c.res.status,
    ...(model === undefined ? {} : { 'vigil.model': model }),
  };
}
