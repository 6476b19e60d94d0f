/**
 * What reaches the gateway below the app (issue 10): requests Node's HTTP parser refuses are
 * answered in the API's JSON error shape with a request id, and slow or stalled clients (slow
 * headers, a body that stops, a chunk size never filled) get a timely 408 and a closed
 * connection instead of holding it until the server's generic timeouts.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

let edge: TestEdge;
const TIMEOUT_MS = 1_000;

before(async () => {
  edge = await startTestEdge({
    gatewayEnv: {
      VIGIL_BODY_TIMEOUT_MS: String(TIMEOUT_MS),
      VIGIL_HEADERS_TIMEOUT_MS: String(TIMEOUT_MS),
    },
  });
});
after(async () => {
  await edge?.stop();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection. */
  closed: boolean;
  /** From the first byte sent to the answer, ms. */
  tookMs: number;
}

/**
 * Sends `parts` on a fresh connection (each after `gapMs`), then waits up to `waitMs` for the
 * answer and the connection's end.
 */
function raw(parts: (string | Buffer)[], gapMs = 0, waitMs = 10_000): Promise<RawAnswer> {
  const { hostname, port } = new URL(edge.gatewayUrl);
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(Number(port), hostname);
    const started = Date.now();
    let data = Buffer.alloc(0);
    let answeredAt = 0;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const text = data.toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(statusLine.split(' ')[1] ?? 0),
        headers,
        body: split < 0 ? '' : text.slice(split + 4),
        closed,
        tookMs: (answeredAt || Date.now()) - started,
      });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => {
      answeredAt ||= Date.now();
      data = Buffer.concat([data, chunk]);
    });
    socket.on('end', () => finish(true));
    socket.on('error', (err) => (data.length > 0 ? finish(true) : reject(err)));
    socket.on('connect', () => {
      void (async () => {
        for (const part of parts) {
          if (socket.destroyed) return;
          socket.write(part);
          if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        }
      })();
    });
  });
}

function assertJsonError(answer: RawAnswer, status: number, code: string): void {
  assert.equal(answer.status, status, `${answer.status}: ${answer.body}`);
  assert.match(answer.headers['content-type'] ?? '', /application\/json/);
  assert.match(answer.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  const error = (JSON.parse(answer.body) as { error: Record<string, unknown> }).error;
  assert.equal(error['code'], code);
  assert.equal(error['retryable'], false);
  assert.equal(typeof error['message'], 'string');
}

const auth = `Authorization: Bearer ${TENANTS.alpha.key}\r\n`;

describe("requests the parser refuses get the API's JSON error", () => {
  test('raw non-ASCII bytes in the path', async () => {
    const answer = await raw([
      Buffer.concat([
        Buffer.from('GET /v1/tasks/'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n'),
      ]),
    ]);
    assertJsonError(answer, 400, 'invalid_request');
    assert.ok(answer.closed);
  });

  test('a DELETE with a chunked body (Node 24 parses it: the app answers, in the same shape)', async () => {
    const answer = await raw([
      `DELETE /v1/tasks/x HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    ]);
    assertJsonError(answer, 404, 'not_found');
  });

  test('Content-Length together with Transfer-Encoding', async () => {
    const answer = await raw([
      `POST /v1/models/echo/infer HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ]);
    assertJsonError(answer, 400, 'invalid_request');
  });

  test('a CR inside a header value', async () => {
    const answer = await raw(['GET /healthz HTTP/1.1\r\nHost: x\r\nX-Evil: a\rb\r\n\r\n']);
    assertJsonError(answer, 400, 'invalid_request');
  });

  test('headers larger than the server accepts', async () => {
    const answer = await raw([
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    ]);
    assertJsonError(answer, 431, 'headers_too_large');
  });
});

describe('slow and stalled clients get a timely 408 and a closed connection', () => {
  test('headers that never finish', async () => {
    const answer = await raw(['GET /healthz HTTP/1.1\r\n', 'Host: x\r\n'], 100);
    assertJsonError(answer, 408, 'request_timeout');
    assert.ok(answer.closed, 'the connection is closed');
    assert.ok(answer.tookMs < TIMEOUT_MS + 2_500, `answered after ${answer.tookMs} ms`);
  });

  test('a chunk size the client never fills', async () => {
    const answer = await raw([
      `POST /v1/models/echo/infer HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      'fffffffffff\r\n{"input":',
    ]);
    assertJsonError(answer, 408, 'request_timeout');
    assert.equal(answer.headers['connection'], 'close');
    assert.ok(answer.closed, 'the connection is closed');
    assert.ok(answer.tookMs < TIMEOUT_MS + 2_500, `answered after ${answer.tookMs} ms`);
  });

  test('a body that stops halfway', async () => {
    const answer = await raw([
      `POST /v1/models/echo/infer HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n`,
      '{"input": "only part of',
    ]);
    assertJsonError(answer, 408, 'request_timeout');
    assert.ok(answer.closed);
  });

  test('the gateway serves on throughout', async () => {
    const res = await fetch(`${edge.gatewayUrl}/healthz`);
    assert.equal(res.status, 200);
  });
});
