/** Whether the HTTP client of a request has gone away, for the waits that hold a waiter slot. */
import type { Context } from 'hono';
import type { Cancellation } from '../../protocol/index.js';
import type { GatewayEnv } from './gateway-env.js';

/**
 * Says whether the client has disconnected, so its wait stops holding a waiter slot. Reads Node's
 * response state when polled, with no listener or AbortController per request: `c.req.raw.signal`
 * would make @hono/node-server build a full fetch `Request` per call (a tenth of the gateway's
 * CPU, measured).
 */
export function clientGone(c: Context<GatewayEnv>): Cancellation | undefined {
  const outgoing = c.env.outgoing;
  if (!outgoing) return undefined;
  return {
    get aborted() {
      return outgoing.destroyed && !outgoing.writableFinished;
    },
  };
}
