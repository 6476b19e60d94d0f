/**
 * Baseline "floor", HTTP side: the least a durable NATS gateway can do per request. It stores the
 * raw body in a JetStream work queue (`js.publish`, awaiting the PubAck) and waits for the worker's
 * answer on core NATS, through one wildcard subscription shared by all requests (a reply mux, as
 * Vigil's client does). No auth, no validation, no task record, no idempotency: what is left is
 * the cost of the transport, which Vigil cannot avoid either.
 *
 * With `FLOOR_MSG_ID=1` (the `floor-kv` variant) each publish carries a message id, so JetStream
 * deduplicates it as it does Vigil's requests.
 *
 * Env: `NATS_URL` (required), `FLOOR_MSG_ID`. Prints `{"msg":"ready","url":...}` once listening.
 */
import { randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { FLOOR } from './floor-assets.js';
import { listen, readBody } from './http-server.js';
import { announceReady, requireEnv, stopOnSignal } from './lifecycle.js';

/** Most requests waiting for a reply at once; past it the gateway answers 503 (Vigil's default). */
const MAX_PENDING = 10_000;
/** Longest wait for a reply before answering 504, ms (Vigil's `maxSyncWaitMs` default). */
const REPLY_TIMEOUT_MS = 30_000;

/** Either the reply (its bytes and whether the worker flagged it as an error) or none in time. */
type Reply = { data: Uint8Array; failed: boolean } | undefined;

const withMsgId = process.env['FLOOR_MSG_ID'] === '1';
const nc = await connect({
  servers: requireEnv('NATS_URL'),
  name: 'floor-gateway',
  noAsyncTraces: true,
});
const js = jetstream(nc);
const gatewayId = randomBytes(6).toString('hex');
const replyPrefix = FLOOR.reply(gatewayId, '');
const pending = new Map<string, (reply: Reply) => void>();

nc.subscribe(FLOOR.repliesOf(gatewayId), {
  callback: (err, msg) => {
    if (err) return;
    const settle = pending.get(msg.subject.slice(replyPrefix.length));
    settle?.({ data: msg.data, failed: msg.headers?.has(FLOOR.errorHeader) ?? false });
  },
});

let nextId = 0;
const app = new Hono<{ Bindings: HttpBindings }>();
app.post('/v1/models/echo/infer', async (c) => {
  if (pending.size >= MAX_PENDING) return c.json({ error: 'too many requests waiting' }, 503);
  const id = (nextId++).toString(36);
  let timer: NodeJS.Timeout | undefined;
  // Registered before the publish: the reply can arrive in the same socket read as the PubAck.
  const replied = new Promise<Reply>((resolve) => {
    pending.set(id, resolve);
    timer = setTimeout(() => resolve(undefined), REPLY_TIMEOUT_MS);
  });
  try {
    const body = await readBody(c);
    const hdrs = natsHeaders();
    hdrs.set(FLOOR.replyHeader, FLOOR.reply(gatewayId, id));
    const subject = FLOOR.request(gatewayId, id);
    await js.publish(
      subject,
      body,
      withMsgId ? { headers: hdrs, msgID: subject } : { headers: hdrs },
    );
    const reply = await replied;
    if (!reply) return c.json({ error: 'no reply in time' }, 504);
    // The reply's bytes are a view of the NATS socket buffer, never a SharedArrayBuffer.
    const data = reply.data as Uint8Array<ArrayBuffer>;
    return c.body(data, reply.failed ? 400 : 200, { 'Content-Type': 'application/json' });
  } finally {
    clearTimeout(timer);
    pending.delete(id);
  }
});

const server = await listen(app);
stopOnSignal(async () => {
  await server.close();
  await nc.drain();
});
announceReady({ url: server.url });
