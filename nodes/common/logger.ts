/**
 * Structured logging through pino: one JSON object per line (`time`, `level`, `msg`, the node's
 * base fields, then the call's fields), so operators can grep by task id and ship the stream
 * anywhere. Components take pino's `Logger`; only a node decides where lines go and at what level.
 *
 * - A line written while a span is active carries its `trace_id` and `span_id`, so a log line
 *   leads to its trace in Jaeger and back; code handling a task passes `task_id`.
 * - Errors under `err` are logged whole: type, message, stack, own fields and the `cause` chain.
 * - Lines are written asynchronously (a buffered writer on stdout, flushed on exit), so a slow
 *   log consumer never blocks the event loop that serves requests.
 */
import { trace } from '@opentelemetry/api';
import { oneOf, settingsGroup } from './env.js';
import { pino, stdSerializers, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';

/** Log levels, lowest first; `silent` writes nothing. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The active span's ids, merged into every line written inside it. */
function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan()?.spanContext();
  return span && trace.isSpanContextValid(span)
    ? { trace_id: span.traceId, span_id: span.spanId }
    : {};
}

/**
 * A logger writing JSON lines at `level` and above, with `base` on every line. Lines go to
 * `destination` (tests capture them), else asynchronously to stdout.
 */
export function createLogger(
  base: Record<string, unknown>,
  level: LogLevel = 'info',
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level,
      base,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: stdSerializers.errWithCause },
      mixin: traceFields,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that writes nothing (tests, benches). */
export const silentLogger: Logger = pino({ level: 'silent' });

export type { Logger };

/** What every node reads about its logging. */
export const LOG_SETTINGS = settingsGroup({
  id: 'logging',
  title: 'Logging',
  shared: true,
  intro:
    'Every node writes its log as JSON lines on stdout (pino): `time`, `level`, `msg`, the ' +
    "node's fields, and `trace_id`/`span_id` inside a span. The readiness line " +
    '(`{"msg":"ready",...}`) is written whatever the level.',
  settings: {
    level: oneOf({
      name: 'VIGIL_LOG_LEVEL',
      values: LOG_LEVELS,
      default: 'info',
      meaning: 'The lowest level written; `silent` writes nothing.',
    }),
  },
});
