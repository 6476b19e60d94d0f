/**
 * Baseline "floor", worker side: a bare pull consumer that decodes each request, echoes its input
 * to the reply subject named in its header (core NATS) and acks it. It does the model's work and
 * nothing of Vigil's: no envelope validation, no stored outcome, no retry bookkeeping.
 *
 * With `FLOOR_STORE_OUTCOMES=1` (the `floor-kv` variant) it first stores the answer in the outcome
 * bucket with a KV create, as Vigil's actor stores its final record, so up to `FLOOR_PREFETCH`
 * messages are handled at once while those writes are in flight.
 *
 * Env: `NATS_URL` (required), `FLOOR_PREFETCH` (messages pulled ahead, default 64, as Vigil's
 * actor host runs with concurrency 64), `FLOOR_STORE_OUTCOMES`. Prints `{"msg":"ready"}` once
 * consuming.
 */
import { jetstream, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { FLOOR } from './floor-assets.js';
import { announceReady, requireEnv, stopOnSignal } from './lifecycle.js';

const DEFAULT_PREFETCH = 64;

const prefetch = Number(process.env['FLOOR_PREFETCH'] ?? DEFAULT_PREFETCH);
if (!Number.isInteger(prefetch) || prefetch < 1) {
  throw new Error('FLOOR_PREFETCH must be a positive integer');
}
const storeOutcomes = process.env['FLOOR_STORE_OUTCOMES'] === '1';

const nc = await connect({
  servers: requireEnv('NATS_URL'),
  name: 'floor-worker',
  noAsyncTraces: true,
});
const js = jetstream(nc);
const outcomes: KV | undefined = storeOutcomes
  ? await new Kvm(js).open(FLOOR.outcomeBucket)
  : undefined;
const consumer = await js.consumers.get(FLOOR.stream, FLOOR.consumer);
const messages = await consumer.consume({ max_messages: prefetch });
const utf8 = new TextEncoder();
const errorHeaders = natsHeaders();
errorHeaders.set(FLOOR.errorHeader, 'bad-request');
const requestPrefix = FLOOR.request('', '').length;

/** The answer to one request: the echo, or an error flagged in a header. */
function answer(msg: JsMsg): { data: Uint8Array; failed: boolean } {
  try {
    const request = msg.json<{ input?: unknown }>();
    return { data: utf8.encode(JSON.stringify({ echo: request.input })), failed: false };
  } catch {
    return { data: utf8.encode('{"error":"body is not valid JSON"}'), failed: true };
  }
}

function reply(msg: JsMsg, out: { data: Uint8Array; failed: boolean }): void {
  const replyTo = msg.headers?.get(FLOOR.replyHeader);
  if (replyTo) nc.publish(replyTo, out.data, out.failed ? { headers: errorHeaders } : {});
}

async function storeAndReply(kv: KV, msg: JsMsg): Promise<void> {
  const out = answer(msg);
  try {
    // The subject's tail `<gateway>.<id>` is a valid, unique key.
    await kv.create(msg.subject.slice(requestPrefix), out.data);
  } catch (err) {
    process.stderr.write(`outcome not stored: ${String(err)}\n`);
    msg.nak();
    return;
  }
  reply(msg, out);
  msg.ack();
}

const done = (async () => {
  let inFlight = 0;
  let slotFreed: (() => void) | undefined;
  for await (const msg of messages) {
    if (!outcomes) {
      reply(msg, answer(msg));
      msg.ack();
      continue;
    }
    // Bounded like Vigil's mailbox: never more than `prefetch` outcome writes in flight.
    while (inFlight >= prefetch) await new Promise<void>((resolve) => (slotFreed = resolve));
    inFlight += 1;
    void storeAndReply(outcomes, msg).finally(() => {
      inFlight -= 1;
      slotFreed?.();
    });
  }
})();

stopOnSignal(async () => {
  await messages.close();
  await done;
  await nc.drain();
});
announceReady();
