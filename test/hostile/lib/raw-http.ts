/**
 * HTTP/1.1 over a bare socket, for what client libraries refuse to send: CR/LF and raw bytes in
 * the request line or headers, conflicting lengths, absurd chunk sizes, bytes dribbled slowly.
 * Reads one response (by Content-Length, chunked, or to the close) and says how long it took.
 */
import { connect } from 'node:net';

/** One response as read off the socket. */
export interface RawResponse {
  /** The status code; undefined when the server closed or went quiet without answering. */
  status?: number;
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: string;
  /** Time from the first byte sent to the response read (or the give-up), ms. */
  ms: number;
  /** The server closed the connection (before the patience ran out). */
  closed: boolean;
  /** The whole response was read. */
  complete: boolean;
}

/** A request sent in pieces: bytes, then a pause before the next piece. */
export type RawPiece = { bytes: Buffer | string; pauseMs?: number };

/** Options of {@link rawRequest}. */
export interface RawRequestOptions {
  /** How long to wait for the response after the last piece is sent, ms. */
  patienceMs: number;
  /** The request is a HEAD: its response has no body whatever its Content-Length says. */
  head?: boolean;
}

/** Sends `request` (whole, or in timed pieces) to `baseUrl`'s host and port; reads one response. */
export function rawRequest(
  baseUrl: string,
  request: Buffer | string | RawPiece[],
  { patienceMs, head = false }: RawRequestOptions,
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const pieces: RawPiece[] = Array.isArray(request) ? request : [{ bytes: request }];
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(Number(url.port), url.hostname);
    let received = Buffer.alloc(0);
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parseResponse(received, head), ms: Date.now() - started, closed });
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (parseResponse(received, head).complete) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    const send = (i: number): void => {
      if (done) return;
      const piece = pieces[i];
      if (!piece) {
        timer = setTimeout(() => finish(false), patienceMs);
        return;
      }
      socket.write(piece.bytes, () => {
        if (piece.pauseMs) timer = setTimeout(() => send(i + 1), piece.pauseMs);
        else send(i + 1);
      });
    };
    socket.once('connect', () => send(0));
  });
}

/** Parses what was received so far; `complete` once the whole first response is there. */
export function parseResponse(bytes: Buffer, head = false): Omit<RawResponse, 'ms' | 'closed'> {
  // Interim answers (`100 Continue`) come before the response proper: skip them.
  while (/^HTTP\/1\.[01] 1\d\d /.test(bytes.subarray(0, 16).toString('latin1'))) {
    const interimEnd = bytes.indexOf('\r\n\r\n');
    if (interimEnd < 0 || bytes.subarray(9, 12).toString('latin1') === '101') break;
    bytes = bytes.subarray(interimEnd + 4);
  }
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return { headers: {}, body: '', complete: false };
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const status = match ? Number(match[1]) : undefined;
  const rest = bytes.subarray(end + 4);
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const body = dechunk(rest);
    return body === undefined
      ? { status, headers, body: '', complete: false }
      : { status, headers, body, complete: true };
  }
  const length = Number(headers['content-length'] ?? 0);
  // A 1xx, 204 or 304 has no body whatever it says; others carry Content-Length bytes.
  const noBody = head || status === undefined || status < 200 || status === 204 || status === 304;
  if (noBody || rest.length >= length) {
    return {
      status,
      headers,
      body: rest.subarray(0, noBody ? 0 : length).toString('utf8'),
      complete: true,
    };
  }
  return { status, headers, body: '', complete: false };
}

/** A chunked body, or undefined while its last chunk has not arrived. */
function dechunk(bytes: Buffer): string | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', at);
    if (lineEnd < 0) return undefined;
    const size = parseInt(bytes.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) return undefined;
    if (size === 0) return Buffer.concat(parts).toString('utf8');
    if (bytes.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}
