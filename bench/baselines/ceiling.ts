/**
 * Baseline "ceiling": the same HTTP route answered in-process, with no broker at all. It is the
 * most this machine and this HTTP stack can do for the request; nothing that goes through NATS
 * can beat it.
 *
 * Env: none required. Prints `{"msg":"ready","url":...}` once listening.
 */
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { listen, readBody } from './http-server.js';
import { announceReady, stopOnSignal } from './lifecycle.js';

const app = new Hono<{ Bindings: HttpBindings }>();
app.post('/v1/models/echo/infer', async (c) => {
  let body: unknown;
  try {
    body = JSON.parse((await readBody(c)).toString('utf8'));
  } catch {
    return c.json({ error: 'body is not valid JSON' }, 400);
  }
  const input =
    typeof body === 'object' && body !== null ? (body as { input?: unknown }).input : undefined;
  return c.json({ echo: input });
});

const server = await listen(app);
stopOnSignal(() => server.close());
announceReady({ url: server.url });
