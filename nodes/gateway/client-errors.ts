/**
 * Answers for requests refused before the app sees them: by Node's HTTP parser (raw non-ASCII
 * bytes in a path, a header with CR/LF or too large, a `DELETE` with a chunked body, headers that
 * never finish arriving), by Node's server (`CONNECT`, an `Expect` other than `100-continue`) or
 * by `@hono/node-server` building the request (a backslash in the path). Their own answers are a
 * bare status line, a dropped connection and an empty 400; a client of this API gets the same
 * JSON error shape as from any route, with a request id to quote.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { RequestError } from '@hono/node-server';
import { ErrorCode, type WireError } from '../../protocol/index.js';
import { errorBody, httpStatus } from './http-errors.js';

/** What the parser's error codes mean to a client. */
const PARSER_ERRORS: Record<string, { code: ErrorCode; message: string }> = {
  HPE_HEADER_OVERFLOW: {
    code: ErrorCode.HeadersTooLarge,
    message: 'the request headers are larger than the server accepts',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    code: ErrorCode.RequestTimeout,
    message: 'the request did not arrive in time',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    code: ErrorCode.PayloadTooLarge,
    message: 'the chunk extensions are larger than the server accepts',
  },
  HPE_INVALID_METHOD: { code: ErrorCode.InvalidRequest, message: 'the method is not valid' },
  HPE_INVALID_URL: { code: ErrorCode.InvalidRequest, message: 'the request target is not valid' },
  HPE_INVALID_HEADER_TOKEN: {
    code: ErrorCode.InvalidRequest,
    message: 'a header name or value holds characters HTTP does not allow',
  },
  HPE_UNEXPECTED_CONTENT_LENGTH: {
    code: ErrorCode.InvalidRequest,
    message: 'the request has both Content-Length and Transfer-Encoding',
  },
  HPE_INVALID_TRANSFER_ENCODING: {
    code: ErrorCode.InvalidRequest,
    message: 'the Transfer-Encoding is not valid (or not allowed on this method)',
  },
  HPE_INVALID_CHUNK_SIZE: { code: ErrorCode.InvalidRequest, message: 'a chunk size is not valid' },
};

/**
 * The server's `clientError` listener: writes a JSON error on the socket and closes it, as Node
 * would with a bare status line. A socket already answering (a response was started) or already
 * gone is only destroyed.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const answering = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    ?.headersSent;
  if (err.code === 'ECONNRESET' || !socket.writable || answering) {
    socket.destroy();
    return;
  }
  const known = PARSER_ERRORS[err.code ?? ''];
  answerOnSocket(socket, {
    code: known?.code ?? ErrorCode.InvalidRequest,
    message: known?.message ?? `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`,
    retryable: false,
  });
}

/**
 * The server's `connect` listener: this API tunnels nothing, and without a listener Node drops
 * a `CONNECT` without a word.
 */
export function answerConnect(_request: IncomingMessage, socket: Duplex): void {
  answerOnSocket(socket, {
    code: ErrorCode.InvalidRequest,
    message: 'CONNECT is not supported: this API tunnels nothing',
    retryable: false,
  });
}

/** The server's `checkExpectation` listener: an `Expect` other than `100-continue`. */
export function answerExpectation(request: IncomingMessage, response: ServerResponse): void {
  const error: WireError = {
    code: ErrorCode.ExpectationFailed,
    message: 'the only Expect this server meets is 100-continue',
    retryable: false,
  };
  const body = JSON.stringify(errorBody(error));
  response.shouldKeepAlive = false;
  response.writeHead(httpStatus(error.code), {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'X-Request-Id': randomUUID(),
  });
  response.end(body);
  // The body the client may still send after its Expect is not read.
  request.resume();
}

/**
 * `@hono/node-server`'s error handler, for a request it could not build from Node's (a backslash
 * in the path, an absolute target that is no URL): a 400 in our shape instead of its empty one.
 * Anything else (the app's own errors are answered by `onGatewayError`) keeps its default answer.
 */
export function answerRequestError(err: unknown): Response | undefined {
  if (!(err instanceof RequestError)) return undefined;
  const error: WireError = {
    code: ErrorCode.InvalidRequest,
    message: `the request target is not valid (${err.message})`,
    retryable: false,
  };
  return new Response(JSON.stringify(errorBody(error)), {
    status: httpStatus(error.code),
    headers: { 'Content-Type': 'application/json', 'X-Request-Id': randomUUID() },
  });
}

/** Writes `error` as a whole HTTP/1.1 response on a raw socket, then closes it. */
function answerOnSocket(socket: Duplex, error: WireError): void {
  const status = httpStatus(error.code);
  const body = JSON.stringify(errorBody(error));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${randomUUID()}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
  // After the answer is flushed: the rest of what the client sends is not read.
  socket.once('finish', () => socket.destroy());
}
