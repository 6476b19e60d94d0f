/**
 * One mapping from Vigil's error codes to HTTP. Bodies are `{error: {code, message, retryable}}`
 * (plus `type`, which OpenAI clients read); retryable errors carry `Retry-After`.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ErrorCode, toVigilError, VigilError, type WireError } from '../../protocol/index.js';
import type { Logger } from 'pino';

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  [ErrorCode.InvalidRequest]: 400,
  [ErrorCode.InvalidPayload]: 400,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.HeadersTooLarge]: 431,
  [ErrorCode.RequestTimeout]: 408,
  [ErrorCode.ExpectationFailed]: 417,
  [ErrorCode.ModelRejected]: 422,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.QuotaExceeded]: 429,
  [ErrorCode.Internal]: 500,
  [ErrorCode.ModelFailed]: 502,
  [ErrorCode.RetriesExhausted]: 502,
  [ErrorCode.QueueFull]: 503,
  [ErrorCode.Unavailable]: 503,
  [ErrorCode.DeadlineExceeded]: 504,
  // The client's own doing, and final: like a request that conflicts with the task's state.
  [ErrorCode.Cancelled]: 409,
};

/** The HTTP status for an error code. */
export function httpStatus(code: ErrorCode): ContentfulStatusCode {
  return STATUS[code];
}

/** The JSON body of an error response. */
export function errorBody(error: WireError): { error: WireError & { type: string } } {
  const body: WireError & { type: string } = {
    code: error.code,
    message: error.message,
    retryable: error.retryable,
    type: error.code,
  };
  return { error: body };
}

/** The body for a refused bearer key (`hono/bearer-auth`'s `message` hooks): the usual error shape. */
export const unauthenticated =
  (message: string) =>
  (c: Context): ReturnType<typeof errorBody> => {
    c.header('Content-Type', 'application/json');
    return errorBody({ code: ErrorCode.Unauthenticated, message, retryable: false });
  };

/**
 * What a Hono middleware's refusal (an `HTTPException`, e.g. from `hono/bearer-auth`) tells the
 * client: the error it rendered in our shape (tenant-auth's messages), else one coded by status.
 */
async function refusalOf(err: HTTPException): Promise<WireError> {
  const rendered = await err
    .getResponse()
    .clone()
    .json()
    .catch(() => undefined);
  const error = (rendered as { error?: Partial<WireError> } | undefined)?.error;
  if (error && isErrorCode(error.code) && typeof error.message === 'string') {
    return { code: error.code, message: error.message, retryable: false };
  }
  return {
    code: codeOfStatus(err.status),
    message: err.message || 'request refused',
    retryable: false,
  };
}

function codeOfStatus(status: number): ErrorCode {
  if (status === 401) return ErrorCode.Unauthenticated;
  if (status === 413) return ErrorCode.PayloadTooLarge;
  if (status === 404) return ErrorCode.NotFound;
  return status < 500 ? ErrorCode.InvalidRequest : ErrorCode.Internal;
}

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(STATUS, code);
}

/**
 * Answers `error` as JSON with its status and, when retryable, `Retry-After` (seconds). Every
 * error also says `X-Should-Retry`: the official OpenAI clients (and every SDK generated like
 * them) obey it over their status rules, which would otherwise retry a 409 that no retry fixes
 * (a cancelled task, a key used for another request) and start a new task each time.
 */
export function errorResponse(
  c: Context,
  error: WireError,
  extra: Record<string, unknown> = {},
): Response {
  c.header('X-Should-Retry', String(error.retryable));
  if (error.retryable) {
    c.header('Retry-After', String(Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000))));
  }
  return c.json({ ...errorBody(error), ...extra }, httpStatus(error.code));
}

/** Hono `onError`: every thrown error leaves as a coded JSON response; bugs are logged. */
export function onGatewayError(logger: Logger) {
  return async (err: Error, c: Context): Promise<Response> => {
    if (err instanceof HTTPException) {
      const res = errorResponse(c, await refusalOf(err));
      const challenge = err.getResponse().headers.get('WWW-Authenticate');
      if (challenge) res.headers.set('WWW-Authenticate', challenge);
      return res;
    }
    const vigilError = toVigilError(err);
    const requestId = c.get('requestId') as string | undefined;
    if (!(err instanceof VigilError) || vigilError.code === ErrorCode.Internal) {
      logger.error({ err, path: c.req.path, requestId }, 'request failed');
    }
    // An unexpected error's own message can name internals (subjects, paths, library state):
    // the log keeps it, the client gets the request id to quote.
    const wire =
      err instanceof VigilError
        ? vigilError.toWire()
        : {
            code: ErrorCode.Internal,
            message: `internal error; quote request id ${requestId ?? 'unknown'}`,
            retryable: true,
          };
    return errorResponse(c, wire);
  };
}
