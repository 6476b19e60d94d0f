/**
 * A local OTLP/HTTP endpoint for the telemetry-on bench cells: it reads and discards what the
 * nodes export, answering 200 as a collector would, and counts requests and bytes so the run shows
 * that spans and metrics were in fact exported while the load ran.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running sink. */
export interface OtlpSink {
  /** Base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly url: string;
  /** Export requests and bytes received so far, per path (`/v1/traces`, `/v1/metrics`). */
  received(): Record<string, { requests: number; bytes: number }>;
  close(): Promise<void>;
}

/** Starts a sink on a free loopback port. */
export async function startOtlpSink(): Promise<OtlpSink> {
  const counts: Record<string, { requests: number; bytes: number }> = {};
  const server = createServer((req, res) => {
    const entry = (counts[req.url ?? ''] ??= { requests: 0, bytes: 0 });
    entry.requests += 1;
    req.on('data', (chunk: Buffer) => (entry.bytes += chunk.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => structuredClone(counts),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
