/**
 * An OTLP/HTTP receiver for tests: what the nodes' exporters send (JSON), kept as spans with the
 * service and region that sent them, and metric posts counted per service. Real HTTP, started on
 * a random loopback port; no in-process exporter.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as the receiver saw it, with the service and region that sent it. */
export interface ReceivedSpan {
  service: string;
  /** The sender's `cloud.region` resource attribute. */
  region: string;
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, unknown>;
  /** Span ids this span links to. */
  links: string[];
}

/** OTLP span kinds (the proto enum, as JSON numbers). */
export const Kind = { Internal: 1, Server: 2, Producer: 4, Consumer: 5 } as const;

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}

const valueOf = (v: OtlpValue): unknown =>
  v.stringValue ??
  (v.intValue === undefined ? undefined : Number(v.intValue)) ??
  v.boolValue ??
  v.doubleValue;

const attributesOf = (list: OtlpAttribute[] | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map((a) => [a.key, valueOf(a.value)]));

/** A bounded OTLP/HTTP receiver: JSON traces parsed into spans, metric posts counted per service. */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly metricPosts = new Map<string, number>();
  #server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= 16 * 1024 * 1024) chunks.push(chunk);
      });
      req.on('end', () => {
        try {
          assert.match(String(req.headers['content-type']), /json/);
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<
            string,
            unknown
          >;
          if (req.url === '/v1/traces') this.#traces(body);
          else if (req.url === '/v1/metrics') this.#metrics(body);
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } catch {
          res.writeHead(400).end();
        }
      });
    });
    const server = this.#server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.#server?.closeAllConnections();
      this.#server?.close(() => resolve());
    });
  }

  #traces(body: Record<string, unknown>): void {
    type Otlp = {
      resource?: { attributes?: OtlpAttribute[] };
      scopeSpans?: {
        spans?: {
          name: string;
          kind: number;
          traceId: string;
          spanId: string;
          parentSpanId?: string;
          startTimeUnixNano: string;
          endTimeUnixNano: string;
          attributes?: OtlpAttribute[];
          links?: { spanId: string }[];
        }[];
      }[];
    };
    for (const rs of (body['resourceSpans'] ?? []) as Otlp[]) {
      const resource = attributesOf(rs.resource?.attributes);
      const service = String(resource['service.name']);
      const region = String(resource['cloud.region']);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            service,
            region,
            name: s.name,
            kind: s.kind,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? '',
            startMs: Number(BigInt(s.startTimeUnixNano) / 1_000_000n),
            endMs: Number(BigInt(s.endTimeUnixNano) / 1_000_000n),
            attributes: attributesOf(s.attributes),
            links: (s.links ?? []).map((l) => l.spanId),
          });
        }
      }
    }
  }

  #metrics(body: Record<string, unknown>): void {
    type Otlp = { resource?: { attributes?: OtlpAttribute[] } };
    for (const rm of (body['resourceMetrics'] ?? []) as Otlp[]) {
      const service = String(attributesOf(rm.resource?.attributes)['service.name']);
      this.metricPosts.set(service, (this.metricPosts.get(service) ?? 0) + 1);
    }
  }
}
