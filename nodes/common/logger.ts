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
import { ConfigError } from './env.js';
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

/**
 * `VIGIL_LOG_LEVEL` (default `info`).
 * @throws ConfigError naming the variable when it is not one of {@link LOG_LEVELS}.
 */
export function logLevelFromEnv(env: NodeJS.ProcessEnv): LogLevel {
  const raw = env['VIGIL_LOG_LEVEL'];
  if (raw === undefined || raw === '') return 'info';
  const level = LOG_LEVELS.find((l) => l === raw);
  if (!level)
    throw new ConfigError(`VIGIL_LOG_LEVEL=${raw} must be one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
