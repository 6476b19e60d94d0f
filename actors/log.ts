/**
 * Structured logging: one JSON object per line, so operators can grep by task id and ship the
 * stream anywhere. Components take a `Logger`; only nodes decide where lines go.
 *
 * A line written while a span is active carries its `trace_id` and `span_id`, so a log line leads
 * to its trace in Jaeger and back. Code handling a task passes `task_id` as a field.
 */
import { trace } from '@opentelemetry/api';

/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A structured logger. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Log levels, lowest first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A logger writing JSON lines to `write` (default: stdout) at `level` and above. */
export function jsonLogger(
  base: LogFields,
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const emit = (lvl: LogLevel, message: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(lvl) < threshold) return;
    const line: LogFields = {
      time: new Date().toISOString(),
      level: lvl,
      msg: message,
      ...base,
      ...fields,
    };
    const span = trace.getActiveSpan()?.spanContext();
    if (span && trace.isSpanContextValid(span)) {
      line['trace_id'] = span.traceId;
      line['span_id'] = span.spanId;
    }
    const err = line['err'];
    if (err instanceof Error) line['err'] = { name: err.name, message: err.message };
    write(JSON.stringify(line) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => jsonLogger({ ...base, ...fields }, level, write),
  };
}

/** A logger that drops everything (tests, benches). */
export const silentLogger: Logger = jsonLogger({}, 'silent');
