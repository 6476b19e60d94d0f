/**
 * A whole edge for end-to-end tests: a real nats-server on random loopback ports with a temporary
 * store, the region's assets, and real gateway and actor-host child processes. Everything is
 * stopped, by PID, by `stop()`.
 */
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../../actors/runtimes/index.js';
import type { RegionAssetsOptions } from '../../protocol/index.js';
import { startNode, type NodeProcess } from '../../nodes/launcher/node-process.js';
import { provisionRegion } from '../../nodes/launcher/provision.js';
import { startTestNats, type TestNats, type TestNatsOptions } from './nats.js';

/** Options of {@link startTestEdge}. */
export interface TestEdgeOptions {
  region?: string;
  /** Limits for the region's assets (e.g. a tiny queue). */
  assets?: Omit<RegionAssetsOptions, 'region'>;
  /** Start an actor host at once. Default true. */
  actorHost?: boolean;
  /** Extra environment for the actor host(s). */
  actorEnv?: Record<string, string>;
  /** Extra environment for the gateway. */
  gatewayEnv?: Record<string, string>;
  nats?: TestNatsOptions;
}

/** Two tenants, each with one API key. */
export const TENANTS = {
  alpha: { tenant: 'alpha', key: `alpha-${randomBytes(12).toString('hex')}` },
  beta: { tenant: 'beta', key: `beta-${randomBytes(12).toString('hex')}` },
} as const;

/** A running test edge. */
export interface TestEdge {
  readonly nats: TestNats;
  readonly region: string;
  /** The gateway's base URL. */
  gatewayUrl: string;
  gateway: NodeProcess;
  readonly actorHosts: NodeProcess[];
  /** Starts one more actor host. */
  startActorHost(env?: Record<string, string>): Promise<NodeProcess>;
  /** Restarts the gateway (same environment). */
  restartGateway(): Promise<void>;
  /** A NATS connection for test assertions (closed by `stop`). */
  connect(): Promise<NatsConnection>;
  /** `fetch` against the gateway with tenant alpha's key unless headers say otherwise. */
  request(path: string, init?: RequestInit & { key?: string }): Promise<Response>;
  stop(): Promise<void>;
}

/** Starts nats-server, provisions the region, and starts the gateway (and an actor host). */
export async function startTestEdge(options: TestEdgeOptions = {}): Promise<TestEdge> {
  const region = options.region ?? 'test';
  const nats = await startTestNats(options.nats);
  const connections: NatsConnection[] = [];
  const actorHosts: NodeProcess[] = [];
  let gateway: NodeProcess | undefined;
  const baseEnv = { NATS_URL: nats.url, VIGIL_REGION: region, VIGIL_LOG_LEVEL: 'warn' };
  const gatewayEnv = {
    ...baseEnv,
    VIGIL_GATEWAY_PORT: '0',
    VIGIL_API_KEYS: Object.values(TENANTS)
      .map((t) => `${t.tenant}:${t.key}`)
      .join(','),
    ...options.gatewayEnv,
  };
  const startGatewayProcess = () => startNode('gateway', { env: gatewayEnv });

  const edge: TestEdge = {
    nats,
    region,
    gatewayUrl: '',
    gateway: undefined as unknown as NodeProcess,
    actorHosts,
    async startActorHost(env = {}) {
      const host = await startNode('actor-host', {
        env: { ...baseEnv, ...options.actorEnv, ...env },
      });
      actorHosts.push(host);
      return host;
    },
    async restartGateway() {
      await gateway?.stop();
      gateway = await startGatewayProcess();
      edge.gateway = gateway;
      edge.gatewayUrl = String(gateway.ready['url']);
    },
    async connect() {
      const nc = await connect({
        servers: nats.url,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      connections.push(nc);
      return nc;
    },
    request(path, init = {}) {
      const { key = TENANTS.alpha.key, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (!headers.has('Authorization') && key) headers.set('Authorization', `Bearer ${key}`);
      if (rest.body !== undefined && !headers.has('Content-Type'))
        headers.set('Content-Type', 'application/json');
      return fetch(edge.gatewayUrl + path, { ...rest, headers });
    },
    async stop() {
      await Promise.allSettled([gateway?.stop(), ...actorHosts.map((h) => h.stop())]);
      await Promise.allSettled(connections.map((nc) => nc.close()));
      await nats[Symbol.asyncDispose]();
    },
  };
  try {
    const admin = await edge.connect();
    await provisionRegion(admin, { region, ...options.assets }, createBuiltinModels());
    await edge.restartGateway();
    if (options.actorHost ?? true) await edge.startActorHost();
  } catch (err) {
    await edge.stop();
    throw err;
  }
  return edge;
}

/** Polls `GET /v1/tasks/{id}` until the task is final or `timeoutMs` passes; returns the last body. */
export async function pollTask(
  edge: TestEdge,
  id: string,
  timeoutMs = 30_000,
  key: string = TENANTS.alpha.key,
): Promise<Record<string, unknown>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await edge.request(`/v1/tasks/${id}`, { key, headers: { Prefer: 'wait=5' } });
    const body = (await res.json()) as Record<string, unknown>;
    if (['succeeded', 'failed', 'dead'].includes(String(body['state'])) || Date.now() > until)
      return body;
  }
}

/** Polls `probe` every 20 ms until it returns a value; throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
