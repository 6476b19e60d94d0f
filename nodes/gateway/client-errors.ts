/**
 * Answers for requests Node's HTTP parser refuses before the app sees them: raw non-ASCII bytes in
 * a path, a header with CR/LF or too large, a `DELETE` with a chunked body, headers that never
 * finish arriving. Node's own answer is a bare status line with no body; a client of this API
 * gets the same JSON error shape as from any route, with a request id to quote.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
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

/** Reason phrases for the statuses this module answers with. */
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
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
  const error: WireError = {
    code: known?.code ?? ErrorCode.InvalidRequest,
    message: known?.message ?? `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`,
    retryable: false,
  };
  const status = httpStatus(error.code);
  const body = JSON.stringify(errorBody(error));
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${randomUUID()}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
  // After the answer is flushed: the rest of what the client sends is not read.
  socket.once('finish', () => socket.destroy());
}
