/**
 * Starts OpenTelemetry for one node process. Only a node's `main.ts` calls it; everything else
 * uses `@opentelemetry/api` alone, which stays a no-op until this has run. What it reads is
 * declared in {@link TELEMETRY_SETTINGS} (`VIGIL_TELEMETRY`, `VIGIL_METRICS_*`, and the
 * OpenTelemetry variables Vigil honours).
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
import {
  ConfigError,
  custom,
  decimal,
  durationMs,
  host,
  int,
  oneOf,
  settingsGroup,
  text,
  url,
  type GroupValues,
} from './env.js';

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

/** Defaults of {@link TELEMETRY_SETTINGS}, and the exporter error log's throttle. */
export const TELEMETRY_DEFAULTS = {
  metricsHost: '127.0.0.1',
  batchDelayMs: 5_000,
  maxQueuedSpans: 2_048,
  metricExportIntervalMs: 60_000,
  /** Shortest time between two exporter error lines in the node's log, ms. */
  errorLogEveryMs: 60_000,
} as const;

/** Samplers by their `OTEL_TRACES_SAMPLER` names (the OpenTelemetry environment specification). */
const SAMPLERS = {
  always_on: () => new AlwaysOnSampler(),
  always_off: () => new AlwaysOffSampler(),
  traceidratio: (ratio: number) => new TraceIdRatioBasedSampler(ratio),
  parentbased_always_on: () => new ParentBasedSampler({ root: new AlwaysOnSampler() }),
  parentbased_always_off: () => new ParentBasedSampler({ root: new AlwaysOffSampler() }),
  parentbased_traceidratio: (ratio: number) =>
    new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
} as const satisfies Record<string, (ratio: number) => Sampler>;

const SAMPLER_NAMES = Object.keys(SAMPLERS) as [
  keyof typeof SAMPLERS,
  ...(keyof typeof SAMPLERS)[],
];

/** `key=value,key=value` (W3C baggage style; values may be percent-encoded). */
const RESOURCE_ATTRIBUTES = /^[^=,\s]+=[^,]*(,[^=,\s]+=[^,]*)*$/;

/** `OTEL_RESOURCE_ATTRIBUTES` as the specification writes it, into attributes. */
function parseResourceAttributes(raw: string, label: string): Record<string, string> {
  const problem = `${label}=${raw} must be key=value pairs separated by commas`;
  if (!RESOURCE_ATTRIBUTES.test(raw.trim())) throw new ConfigError(problem);
  const attributes: Record<string, string> = {};
  for (const pair of raw.trim().split(',')) {
    const at = pair.indexOf('=');
    try {
      attributes[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      throw new ConfigError(`${problem} ('${pair}' is not percent-encoded correctly)`);
    }
  }
  return attributes;
}

/**
 * What every long-running node reads about traces and metrics: Vigil's own switches and the
 * OpenTelemetry variables it honours.
 */
export const TELEMETRY_SETTINGS = settingsGroup({
  id: 'telemetry',
  title: 'Telemetry',
  shared: true,
  intro:
    'Traces and metrics through OpenTelemetry. Nothing is exported unless an OTLP endpoint is ' +
    'set, and nothing is served unless `VIGIL_METRICS_PORT` is. The OTLP exporters also read ' +
    "the specification's other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, " +
    'compression) themselves.',
  settings: {
    mode: oneOf({
      name: 'VIGIL_TELEMETRY',
      values: ['on', 'off'],
      default: 'on',
      meaning: '`off` starts no telemetry at all: no spans, no metrics, no endpoint.',
    }),
    otlpEndpoint: url({
      name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
      meaning:
        'OTLP/HTTP base URL for traces and metrics, e.g. `http://jaeger:4318` (`/v1/traces` ' +
        'and `/v1/metrics` are added). Unset: no OTLP export, so no network attempts.',
    }),
    otlpTracesEndpoint: url({
      name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      meaning: 'Traces only: the full URL (`.../v1/traces`), over the base URL.',
    }),
    otlpMetricsEndpoint: url({
      name: 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
      meaning: 'Metrics only: the full URL (`.../v1/metrics`), over the base URL.',
    }),
    sampler: oneOf({
      name: 'OTEL_TRACES_SAMPLER',
      values: SAMPLER_NAMES,
      default: 'parentbased_always_on',
      type: 'sampler name',
      meaning:
        'Which traces are recorded: `always_on`, `always_off`, `traceidratio`, or one of them ' +
        "behind `parentbased_` (follow the caller's decision); `parentbased_traceidratio` with " +
        'a ratio for production.',
    }),
    samplerRatio: decimal({
      name: 'OTEL_TRACES_SAMPLER_ARG',
      min: 0,
      max: 1,
      default: 1,
      meaning: 'The ratio of the `traceidratio` samplers.',
    }),
    serviceName: text({
      name: 'OTEL_SERVICE_NAME',
      defaultText: '`vigil-<node>`',
      meaning: "The traces' and metrics' `service.name`.",
    }),
    resourceAttributes: custom({
      name: 'OTEL_RESOURCE_ATTRIBUTES',
      type: 'key=value,...',
      allowed: 'key=value pairs separated by commas (values may be percent-encoded)',
      parse: parseResourceAttributes,
      meaning: 'More resource attributes; Vigil adds `cloud.region` and `host.name`.',
    }),
    batchDelayMs: durationMs({
      name: 'OTEL_BSP_SCHEDULE_DELAY',
      min: 1,
      default: TELEMETRY_DEFAULTS.batchDelayMs,
      meaning: 'How long spans wait to be exported in a batch.',
    }),
    maxQueuedSpans: int({
      name: 'OTEL_BSP_MAX_QUEUE_SIZE',
      min: 1,
      default: TELEMETRY_DEFAULTS.maxQueuedSpans,
      meaning: 'Spans buffered for export; when full, new spans are dropped (never waited for).',
    }),
    metricExportIntervalMs: durationMs({
      name: 'OTEL_METRIC_EXPORT_INTERVAL',
      min: 100,
      default: TELEMETRY_DEFAULTS.metricExportIntervalMs,
      meaning: 'How often metrics are pushed over OTLP.',
    }),
    metricsPort: int({
      name: 'VIGIL_METRICS_PORT',
      min: 0,
      max: 65_535,
      meaning:
        'Serve Prometheus `/metrics` on this port; 0 takes a free one (the ready line says ' +
        'which). Unset: no endpoint.',
    }),
    metricsHost: host({
      name: 'VIGIL_METRICS_HOST',
      default: TELEMETRY_DEFAULTS.metricsHost,
      meaning: 'The interface the metrics endpoint listens on.',
    }),
  },
});

/** The parsed {@link TELEMETRY_SETTINGS}. */
export type TelemetrySettings = GroupValues<typeof TELEMETRY_SETTINGS>;

const OFF: Telemetry = { metricsUrl: undefined, shutdown: () => Promise.resolve() };

/** Where a signal goes: its own endpoint, else the base URL plus `/v1/<signal>`, else nowhere. */
function otlpUrl(base: string | undefined, own: string | undefined, signal: string) {
  if (own !== undefined) return own;
  if (base === undefined) return undefined;
  return `${base}${base.endsWith('/') ? '' : '/'}v1/${signal}`;
}

/** Starts the SDK as `settings` say; with `VIGIL_TELEMETRY=off` returns a no-op. */
export async function startTelemetry(
  settings: TelemetrySettings,
  node: TelemetryNode,
): Promise<Telemetry> {
  if (settings.mode === 'off') return OFF;
  const tracesUrl = otlpUrl(settings.otlpEndpoint, settings.otlpTracesEndpoint, 'traces');
  const metricsUrl = otlpUrl(settings.otlpEndpoint, settings.otlpMetricsEndpoint, 'metrics');
  const spanProcessors =
    tracesUrl === undefined
      ? []
      : [
          new BatchSpanProcessor({
            exporter: new OTLPTraceExporter({ url: tracesUrl }),
            scheduledDelayMillis: settings.batchDelayMs,
            maxQueueSize: settings.maxQueuedSpans,
          }),
        ];
  const metricReaders: IMetricReader[] = [];
  if (metricsUrl !== undefined) {
    metricReaders.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: metricsUrl }),
        exportIntervalMillis: settings.metricExportIntervalMs,
      }),
    );
  }
  // The node serves the scrape itself (not the exporter's own server) so port 0 works and the
  // bound address can be announced.
  const prometheus =
    settings.metricsPort === undefined
      ? undefined
      : new PrometheusExporter({ preventServerStart: true });
  if (prometheus) metricReaders.push(prometheus);

  const sdk = startSdk({
    resource: nodeResource(settings, node),
    spanProcessors,
    sampler: SAMPLERS[settings.sampler](settings.samplerRatio),
    metricReaders,
  });
  // Exporter trouble goes to the node's log, throttled.
  diag.setLogger(throttledDiagLogger(node.logger), {
    logLevel: DiagLogLevel.WARN,
    suppressOverrideMessage: true,
  });
  const server =
    prometheus && settings.metricsPort !== undefined
      ? await serveMetrics(prometheus, settings.metricsPort, settings.metricsHost)
      : undefined;

  let stopping: Promise<void> | undefined;
  return {
    metricsUrl: server?.url,
    shutdown() {
      stopping ??= (async () => {
        server?.server.close();
        await sdk.shutdown().catch((err: unknown) => {
          node.logger.warn({ err }, 'telemetry shutdown failed');
        });
      })();
      return stopping;
    },
  };
}

/** Serves `/metrics` for Prometheus on `host:port`; resolves once it listens. */
async function serveMetrics(
  prometheus: PrometheusExporter,
  port: number,
  host: string,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') prometheus.getMetricsRequestHandler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return { server, url: `http://${host}:${address.port}/metrics` };
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
  // With nowhere to send spans or metrics, no provider at all: the API's no-op tracer still
  // propagates context (a span started under an incoming trace carries its trace id, so logs keep
  // it) and no-op instruments cost nothing, where an SDK provider with an always-off sampler and
  // no readers still built, sampled and dropped a span per step of every task (measured: 4 % of
  // the actor host's CPU under load).
  const tracerProvider =
    parts.spanProcessors.length > 0
      ? new TracerProvider({
          resource: parts.resource,
          sampler: parts.sampler,
          spanProcessors: parts.spanProcessors,
        })
      : undefined;
  if (tracerProvider) trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider =
    parts.metricReaders.length > 0
      ? new MeterProvider({ resource: parts.resource, readers: parts.metricReaders })
      : undefined;
  if (meterProvider) metrics.setGlobalMeterProvider(meterProvider);
  // Event-loop, GC and heap observers and process CPU and memory cost on every loop turn and
  // collection: only when some reader will collect what they measure.
  const instrumentations = meterProvider ? processInstrumentations(meterProvider) : [];
  return {
    async shutdown() {
      for (const instrumentation of instrumentations) instrumentation.disable();
      await Promise.all([tracerProvider?.shutdown(), meterProvider?.shutdown()]);
      contextManager.disable();
    },
  };
}

/** Runtime (event loop, GC, heap) and host (process CPU, memory) metrics, recording into `meters`. */
function processInstrumentations(
  meters: MeterProvider,
): (RuntimeNodeInstrumentation | HostMetricsInstrumentation)[] {
  const instrumentations = [
    new RuntimeNodeInstrumentation(),
    new HostMetricsInstrumentation({ metricGroups: ['process.cpu', 'process.memory'] }),
  ];
  // Their instruments are made when a meter provider is set (what registerInstrumentations does).
  for (const instrumentation of instrumentations) instrumentation.setMeterProvider(meters);
  return instrumentations;
}

/**
 * The node's resource: the SDK's defaults (telemetry SDK, `service.name` fallback), a service
 * instance id, `OTEL_RESOURCE_ATTRIBUTES`, then the service name and Vigil's own attributes.
 */
function nodeResource(settings: TelemetrySettings, node: TelemetryNode): Resource {
  return defaultResource()
    .merge(detectResources({ detectors: [serviceInstanceIdDetector] }))
    .merge(
      resourceFromAttributes({
        ...settings.resourceAttributes,
        'service.name': settings.serviceName ?? `vigil-${node.node}`,
        'cloud.region': node.region,
        'host.name': hostname(),
      }),
    );
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
