/**
 * Starts OpenTelemetry for one node process. Only a node's `main.ts` calls it; everything else
 * uses `@opentelemetry/api` alone, which stays a no-op until this has run.
 *
 * Environment (read once, at start-up):
 *   `VIGIL_TELEMETRY`                      `off` disables traces and metrics entirely (default on)
 *   `OTEL_EXPORTER_OTLP_ENDPOINT`          OTLP/HTTP base URL, e.g. `http://jaeger:4318`; unset: no
 *                                          OTLP export at all, so no network attempts
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`   traces only (full URL, `.../v1/traces`)
 *   `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`  metrics only (full URL, `.../v1/metrics`)
 *   `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`  e.g. `parentbased_traceidratio` and `0.1`
 *                                          (default: parent-based, always on)
 *   `OTEL_SERVICE_NAME`                    default `vigil-<node>`
 *   `OTEL_BSP_SCHEDULE_DELAY`              span batch delay, ms (default 5 000)
 *   `OTEL_BSP_MAX_QUEUE_SIZE`              spans buffered before new ones are dropped (2 048)
 *   `OTEL_METRIC_EXPORT_INTERVAL`          OTLP metrics push interval, ms (default 60 000)
 *   `VIGIL_METRICS_PORT`                   Prometheus `/metrics` port; 0 = any free port (the
 *                                          ready line says which); unset: no Prometheus endpoint
 *   `VIGIL_METRICS_HOST`                   its interface (default 127.0.0.1)
 *
 * Exporters never touch the data path: spans go through a bounded batch processor (a full queue
 * drops spans, it never blocks), and export errors reach the OTel diagnostic logger, which is
 * rate-limited here to one line per minute.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import {
  context,
  diag,
  DiagLogLevel,
  metrics,
  propagation,
  trace,
  type DiagLogger,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HostMetricsInstrumentation } from '@opentelemetry/instrumentation-host-metrics';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import {
  defaultResource,
  detectResources,
  resourceFromAttributes,
  serviceInstanceIdDetector,
  envDetector,
  type Resource,
} from '@opentelemetry/resources';
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  type IMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { ConfigError, envInt, envString } from './env.js';

/** What a node tells {@link startTelemetry} about itself. */
export interface TelemetryNode {
  /** `gateway`, `actor-host`: the default service name is `vigil-<node>`. */
  node: string;
  region: string;
  /** Where a failing exporter is reported. */
  logger: Logger;
}

/** Running telemetry. */
export interface Telemetry {
  /** The Prometheus endpoint, when one was asked for. */
  readonly metricsUrl: string | undefined;
  /** Flushes what is buffered (bounded by the exporters' own timeouts) and stops. Idempotent. */
  shutdown(): Promise<void>;
}

/** Defaults of the variables above. */
export const TELEMETRY_DEFAULTS = {
  metricsHost: '127.0.0.1',
  batchDelayMs: 5_000,
  maxQueuedSpans: 2_048,
  metricExportIntervalMs: 60_000,
  /** Shortest time between two exporter error lines in the node's log, ms. */
  errorLogEveryMs: 60_000,
} as const;

const OFF: Telemetry = { metricsUrl: undefined, shutdown: () => Promise.resolve() };

/** Starts the SDK as the environment says; with `VIGIL_TELEMETRY=off` returns a no-op. */
export async function startTelemetry(
  env: NodeJS.ProcessEnv,
  node: TelemetryNode,
): Promise<Telemetry> {
  if (envString(env, 'VIGIL_TELEMETRY', 'on', /^(on|off)$/) === 'off') return OFF;
  const hasOtlp = (signal: string): boolean =>
    Boolean(env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`]);
  const metricsPort = env['VIGIL_METRICS_PORT']
    ? envInt(env, 'VIGIL_METRICS_PORT', 0, 0, 65_535)
    : undefined;
  const metricsHost = envString(env, 'VIGIL_METRICS_HOST', TELEMETRY_DEFAULTS.metricsHost);

  const spanProcessors = hasOtlp('TRACES')
    ? [
        new BatchSpanProcessor({
          exporter: new OTLPTraceExporter(),
          scheduledDelayMillis: envInt(
            env,
            'OTEL_BSP_SCHEDULE_DELAY',
            TELEMETRY_DEFAULTS.batchDelayMs,
            1,
          ),
          maxQueueSize: envInt(
            env,
            'OTEL_BSP_MAX_QUEUE_SIZE',
            TELEMETRY_DEFAULTS.maxQueuedSpans,
            1,
          ),
        }),
      ]
    : [];
  const metricReaders: IMetricReader[] = [];
  if (hasOtlp('METRICS')) {
    metricReaders.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter(),
        exportIntervalMillis: envInt(
          env,
          'OTEL_METRIC_EXPORT_INTERVAL',
          TELEMETRY_DEFAULTS.metricExportIntervalMs,
          100,
        ),
      }),
    );
  }
  // The node serves the scrape itself (not the exporter's own server) so port 0 works and the
  // bound address can be announced.
  const prometheus =
    metricsPort === undefined ? undefined : new PrometheusExporter({ preventServerStart: true });
  if (prometheus) metricReaders.push(prometheus);

  const sdk = startSdk({
    resource: nodeResource(env, node),
    spanProcessors,
    // With nowhere to send spans, record none: context still propagates (unsampled spans carry
    // the trace id, so logs keep it), but no span is built, timed and thrown away per request.
    sampler: spanProcessors.length === 0 ? new AlwaysOffSampler() : samplerFromEnv(env),
    metricReaders,
  });
  // Exporter trouble goes to the node's log, throttled.
  diag.setLogger(throttledDiagLogger(node.logger), {
    logLevel: DiagLogLevel.WARN,
    suppressOverrideMessage: true,
  });

  let server: Server | undefined;
  let metricsUrl: string | undefined;
  if (prometheus && metricsPort !== undefined) {
    server = createServer((req, res) => {
      if (req.url === '/metrics') prometheus.getMetricsRequestHandler(req, res);
      else res.writeHead(404).end();
    });
    const listening = server;
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.listen(metricsPort, metricsHost, () => resolve());
    });
    const address = server.address() as AddressInfo;
    metricsUrl = `http://${metricsHost}:${address.port}/metrics`;
  }

  let stopping: Promise<void> | undefined;
  return {
    metricsUrl,
    shutdown() {
      stopping ??= (async () => {
        server?.close();
        await sdk.shutdown().catch((err: unknown) => {
          node.logger.warn({ err }, 'telemetry shutdown failed');
        });
      })();
      return stopping;
    },
  };
}

/** The SDK's parts, set as the API's globals; `shutdown` flushes and stops them. */
interface SdkParts {
  resource: Resource;
  spanProcessors: BatchSpanProcessor[];
  sampler: Sampler;
  metricReaders: IMetricReader[];
}

/**
 * Starts the SDK from the packages Vigil uses (traces, metrics, W3C propagation, async context)
 * rather than `@opentelemetry/sdk-node`, which also installs gRPC, protobuf, Zipkin and log
 * exporters that no node here uses.
 */
function startSdk(parts: SdkParts): { shutdown(): Promise<void> } {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  );
  const tracerProvider = new TracerProvider({
    resource: parts.resource,
    sampler: parts.sampler,
    spanProcessors: parts.spanProcessors,
  });
  trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider = new MeterProvider({
    resource: parts.resource,
    readers: parts.metricReaders,
  });
  metrics.setGlobalMeterProvider(meterProvider);
  // Event-loop, GC and heap observers (runtime) and process CPU and memory (host) cost on every
  // loop turn and collection: only when some reader will collect what they measure. Their
  // instruments are made when a meter provider is set (what registerInstrumentations does).
  const instrumentations =
    parts.metricReaders.length > 0
      ? [
          new RuntimeNodeInstrumentation(),
          new HostMetricsInstrumentation({ metricGroups: ['process.cpu', 'process.memory'] }),
        ]
      : [];
  for (const instrumentation of instrumentations) instrumentation.setMeterProvider(meterProvider);
  return {
    async shutdown() {
      for (const instrumentation of instrumentations) instrumentation.disable();
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
      contextManager.disable();
    },
  };
}

/**
 * The node's resource: the SDK's defaults (telemetry SDK, `service.name` fallback), a service
 * instance id, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`, then Vigil's own attributes.
 */
function nodeResource(env: NodeJS.ProcessEnv, node: TelemetryNode): Resource {
  return defaultResource()
    .merge(detectResources({ detectors: [serviceInstanceIdDetector, envDetector] }))
    .merge(
      resourceFromAttributes({
        ...(env['OTEL_SERVICE_NAME'] ? {} : { 'service.name': `vigil-${node.node}` }),
        'cloud.region': node.region,
        'host.name': hostname(),
      }),
    );
}

/** Samplers by their `OTEL_TRACES_SAMPLER` names (the OpenTelemetry environment specification). */
const SAMPLERS: Record<string, (ratio: number) => Sampler> = {
  always_on: () => new AlwaysOnSampler(),
  always_off: () => new AlwaysOffSampler(),
  traceidratio: (ratio) => new TraceIdRatioBasedSampler(ratio),
  parentbased_always_on: () => new ParentBasedSampler({ root: new AlwaysOnSampler() }),
  parentbased_always_off: () => new ParentBasedSampler({ root: new AlwaysOffSampler() }),
  parentbased_traceidratio: (ratio) =>
    new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
};

/**
 * `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default parent-based, always on).
 * @throws ConfigError on an unknown sampler or a ratio outside [0, 1].
 */
function samplerFromEnv(env: NodeJS.ProcessEnv): Sampler {
  const name = envString(env, 'OTEL_TRACES_SAMPLER', 'parentbased_always_on');
  const make = SAMPLERS[name];
  if (!make) {
    throw new ConfigError(
      `OTEL_TRACES_SAMPLER=${name} must be one of ${Object.keys(SAMPLERS).join(', ')}`,
    );
  }
  const rawRatio = env['OTEL_TRACES_SAMPLER_ARG'];
  const ratio = rawRatio === undefined || rawRatio === '' ? 1 : Number(rawRatio);
  if (!(ratio >= 0 && ratio <= 1)) {
    throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG=${rawRatio} must be a number from 0 to 1`);
  }
  return make(ratio);
}

/**
 * OTel's diagnostics into the node's log, at most one line per {@link
 * TELEMETRY_DEFAULTS.errorLogEveryMs}: a collector that is down must not flood the log (or the
 * disk) on every batch.
 */
function throttledDiagLogger(logger: Logger): DiagLogger {
  let lastAt = 0;
  let suppressed = 0;
  const report = (message: string, ...args: unknown[]): void => {
    const now = Date.now();
    if (now - lastAt < TELEMETRY_DEFAULTS.errorLogEveryMs) {
      suppressed += 1;
      return;
    }
    lastAt = now;
    logger.warn(
      {
        detail: args.map((arg) => (arg instanceof Error ? arg.message : String(arg))).join(' '),
        suppressedSinceLast: suppressed,
      },
      'telemetry: ' + message,
    );
    suppressed = 0;
  };
  const ignore = (): void => undefined;
  return { error: report, warn: report, info: ignore, debug: ignore, verbose: ignore };
}
