/**
 * The gateway's one error mapping: a coded error keeps its message, status and Retry-After; an
 * unexpected one is a 500 that names the request id and none of its internals (OWASP API8).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import { requestId } from 'hono/request-id';
import { ErrorCode, VigilError } from '../../protocol/index.js';
import { onGatewayError, type GatewayEnv } from '../../nodes/gateway/index.js';
import { createLogger } from '../../nodes/common/index.js';

function appThrowing(err: unknown) {
  const logged: Record<string, unknown>[] = [];
  const logger = createLogger({}, 'info', {
    write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>),
  });
  const app = new Hono<GatewayEnv>();
  app.onError(onGatewayError(logger));
  app.use(requestId({ headerName: 'X-Request-Id' }));
  app.get('/boom', () => {
    throw err;
  });
  return { app, logged };
}

describe('error responses', () => {
  test('an unexpected error is a 500 naming the request id, not its internals', async () => {
    const secret = 'connect ECONNREFUSED 10.0.0.7:4222 reading /srv/vigil/.vigil/nats-creds';
    const { app, logged } = appThrowing(new Error(secret));
    const res = await app.request('/boom');
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.ok(!text.includes('10.0.0.7') && !text.includes('/srv'), text);
    const error = (JSON.parse(text) as { error: Record<string, unknown> }).error;
    assert.equal(error['code'], 'internal');
    assert.equal(
      error['message'],
      `internal error; quote request id ${res.headers.get('x-request-id')}`,
    );
    assert.match(
      String((logged[0]?.['err'] as Record<string, unknown>)['message']),
      /ECONNREFUSED/,
    );
    assert.equal(logged[0]?.['requestId'], res.headers.get('x-request-id'));
  });

  test('a coded error keeps its message, status and Retry-After', async () => {
    const { app } = appThrowing(
      new VigilError(ErrorCode.QueueFull, 'the request queue is full', true, {
        retryAfterMs: 2000,
      }),
    );
    const res = await app.request('/boom');
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '2');
    const error = ((await res.json()) as { error: Record<string, unknown> }).error;
    assert.equal(error['message'], 'the request queue is full');
  });
});
