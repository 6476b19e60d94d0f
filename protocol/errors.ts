/**
 * Every failure Vigil reports has a stable `code`, says whether retrying can help, and crosses the
 * wire as `{code, message, retryable}`. Retry decisions are made from `retryable` alone, never from
 * parsing messages (house style 6 and 7).
 */

/** The closed set of error codes. HTTP status mapping lives in the gateway, not here. */
export const ErrorCode = {
  /** The request body, header or payload failed validation. */
  InvalidRequest: 'invalid_request',
  /** A msgpack payload was too large, too deep or malformed. */
  InvalidPayload: 'invalid_payload',
  /** No or wrong credentials. */
  Unauthenticated: 'unauthenticated',
  /** The tenant may not do this. */
  Forbidden: 'forbidden',
  /** The model, task or route does not exist (or belongs to another tenant). */
  NotFound: 'not_found',
  /** The same idempotency key was used for a different request. */
  Conflict: 'conflict',
  /** The body is larger than the gateway accepts. */
  PayloadTooLarge: 'payload_too_large',
  /** The request's headers are larger than the gateway accepts. */
  HeadersTooLarge: 'headers_too_large',
  /** The request's `Expect` header asks for something other than `100-continue`. */
  ExpectationFailed: 'expectation_failed',
  /** The client did not send the whole request in time. */
  RequestTimeout: 'request_timeout',
  /** The request queue is full; retry after the advertised delay. */
  QueueFull: 'queue_full',
  /** The tenant sent too much; retry after the advertised delay. */
  RateLimited: 'rate_limited',
  /** The tenant's task quota for the period is used up; retry once the period resets. */
  QuotaExceeded: 'quota_exceeded',
  /** A dependency (NATS, JetStream) is unavailable right now. */
  Unavailable: 'unavailable',
  /** The task's deadline passed before it finished. */
  DeadlineExceeded: 'deadline_exceeded',
  /** The task was cancelled (by its owner, or because its stream's reader went away). */
  Cancelled: 'cancelled',
  /** The model rejected this input; retrying the same input fails the same way. */
  ModelRejected: 'model_rejected',
  /** The model failed in a way that may pass on retry. */
  ModelFailed: 'model_failed',
  /** Retries were exhausted; the task was dead-lettered. */
  RetriesExhausted: 'retries_exhausted',
  /** A bug: something that should not happen. */
  Internal: 'internal',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The shape in which an error crosses the wire (NATS payloads and HTTP bodies). */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  /** Milliseconds after which a retry may succeed; only meaningful when `retryable`. */
  retryAfterMs?: number;
}

/** Options shared by every Vigil error. */
export interface VigilErrorOptions {
  cause?: unknown;
  /** For retryable errors: how long to wait before retrying, in milliseconds. */
  retryAfterMs?: number;
}

/** Base class: a coded error that knows whether a retry can help. */
export class VigilError extends Error {
  override name = 'VigilError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    retryable: boolean,
    options: VigilErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = retryable;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The wire form, without stack or cause. */
  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.retryAfterMs !== undefined) wire.retryAfterMs = this.retryAfterMs;
    return wire;
  }
}

/** A failure that will recur on retry: the task is failed and dead-lettered, never retried. */
export class TerminalError extends VigilError {
  override name = 'TerminalError';
  constructor(
    message: string,
    code: ErrorCode = ErrorCode.ModelRejected,
    options: VigilErrorOptions = {},
  ) {
    super(code, message, false, options);
  }
}

/** A failure that may pass on retry, after `retryAfterMs` when given. */
export class RetryableError extends VigilError {
  override name = 'RetryableError';
  constructor(
    message: string,
    code: ErrorCode = ErrorCode.ModelFailed,
    options: VigilErrorOptions = {},
  ) {
    super(code, message, true, options);
  }
}

/** Input that failed validation at a trust boundary (HTTP body, header, NATS payload, config). */
export class ValidationError extends VigilError {
  override name = 'ValidationError';
  /** Where the bad value was, as a dotted path (`params.max_tokens`), when known. */
  readonly path: string | undefined;
  constructor(message: string, path?: string, options: VigilErrorOptions = {}) {
    super(ErrorCode.InvalidRequest, path ? `${path}: ${message}` : message, false, options);
    this.path = path;
  }
}

/** A msgpack payload that is too large, too deep, truncated or otherwise not decodable. */
export class PayloadError extends VigilError {
  override name = 'PayloadError';
  constructor(message: string, options: VigilErrorOptions = {}) {
    super(ErrorCode.InvalidPayload, message, false, options);
  }
}

/** Turns anything thrown into a {@link VigilError}; unknown errors become retryable internals. */
export function toVigilError(err: unknown): VigilError {
  if (err instanceof VigilError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new VigilError(ErrorCode.Internal, message, true, { cause: err });
}
