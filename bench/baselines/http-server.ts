/**
 * Serves a Hono app on @hono/node-server exactly as Vigil's gateway does (same adapter, loopback,
 * any free port), so the baselines differ from the gateway in what they do, not in how they listen.
 */
import type { AddressInfo } from 'node:net';
import { serve, type HttpBindings, type ServerType } from '@hono/node-server';
import type { Context, Hono } from 'hono';

/** Interface the baselines listen on: loopback only. */
export const BASELINE_HOST = '127.0.0.1';

/** A listening HTTP server. */
export interface HttpServer {
  /** Base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Stops accepting connections and closes idle keep-alive sockets. */
  close(): Promise<void>;
}

/** Listens on {@link BASELINE_HOST}, port `port` (0 = any free port). */
export async function listen(app: Hono<{ Bindings: HttpBindings }>, port = 0): Promise<HttpServer> {
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: BASELINE_HOST, port }, () => resolve(s));
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${BASELINE_HOST}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive sockets would otherwise hold close() open.
        if ('closeIdleConnections' in server) server.closeIdleConnections();
      }),
  };
}

/**
 * The request body, read straight from Node's `IncomingMessage` as Vigil's gateway does
 * (`nodes/gateway/json-body.ts`), so the baselines read bodies exactly as the gateway does and
 * the comparison neither flatters nor penalises Vigil.
 */
export function readBody(c: Context<{ Bindings: HttpBindings }>): Promise<Buffer> {
  const incoming = c.env.incoming;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    incoming.once('error', reject);
  });
}
