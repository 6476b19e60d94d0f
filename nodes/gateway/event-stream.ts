/**
 * A Server-Sent Events response, shared by the native and the OpenAI streams: Hono's `streamSSE`,
 * with a keep-alive comment whenever the stream has been quiet for an interval (proxies close
 * idle connections; comments are ignored by every SSE parser), and an abort signal for when the
 * client goes away. Writes wait for the socket (Hono's stream applies backpressure), so a slow
 * reader holds the producer, never a growing buffer.
 */
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { toVigilError } from '../../protocol/index.js';
import type { GatewayEnv } from './gateway-env.js';

/** What a producer writes into the stream. */
export interface EventSink {
  /** One event; `id` becomes the client's `Last-Event-ID` when it reconnects. */
  send(event: { data: string; event?: string; id?: string }): Promise<void>;
  /** Aborted when the client disconnected. */
  readonly signal: AbortSignal;
}

/** Answers `c` with an event stream that `produce` writes; the stream ends when it returns. */
export function eventStreamResponse(
  c: Context<GatewayEnv>,
  keepAliveMs: number,
  produce: (sink: EventSink) => Promise<void>,
): Response {
  // Proxies that buffer (nginx) would hold the events back; this asks them not to.
  c.header('X-Accel-Buffering', 'no');
  return streamSSE(c, async (stream) => {
    const gone = new AbortController();
    stream.onAbort(() => gone.abort());
    c.env.outgoing?.once('close', () => gone.abort());
    let lastWriteAt = Date.now();
    const keepAlive = setInterval(() => {
      if (Date.now() - lastWriteAt < keepAliveMs || stream.closed) return;
      lastWriteAt = Date.now();
      void comment(stream);
    }, keepAliveMs / 2);
    const sink: EventSink = {
      signal: gone.signal,
      async send(event) {
        lastWriteAt = Date.now();
        if (!gone.signal.aborted) await stream.writeSSE(event);
      },
    };
    try {
      await produce(sink);
    } catch (err) {
      // The headers are gone: a failure can only be told as the stream's last event.
      const error = toVigilError(err).toWire();
      await sink.send({ event: 'error', data: JSON.stringify({ error }) }).catch(() => undefined);
    } finally {
      clearInterval(keepAlive);
    }
  });
}

/** A comment line: keeps the connection busy, shows nothing to the client. */
async function comment(stream: SSEStreamingApi): Promise<void> {
  await stream.write(': keep-alive\n\n').catch(() => undefined);
}
