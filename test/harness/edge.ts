/**
 * A whole edge for end-to-end tests: a real nats-server on random loopback ports with a temporary
 * store, the region's assets, and real gateway and actor-host child processes. Everything is
 * stopped, by PID, by `stop()`.
 *
 * Every node runs with least privilege, as in production: the edge generates per-role NATS
 * credentials (nodes/launcher/nats-accounts.ts), the gateway connects as `gateway`, actor hosts
 * as `actor-host-<region>`, and provisioning and test assertions as `admin`. A grant missing from
 * protocol/permissions.ts therefore fails the end-to-end tests.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../../actors/index.js';
import { Role, userName, type RegionAssetsOptions } from '../../protocol/index.js';
import { natsAuthOptions, readNkeySeed } from '../../nodes/common/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  type NatsCredentials,
  startNode,
  type NodeProcess,
} from '../../nodes/launcher/index.js';
import { provisionRegion } from '../../nodes/provision/index.js';
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
  /**
   * Write each node's output (stdout and stderr) to `<logDir>/<node>.log` (actor hosts numbered
   * `actor-host-1.log`, ...), for tests that check what the nodes logged. Default: discarded.
   */
  logDir?: string;
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
  /** The per-role NATS users of this edge (seeds in a temp dir removed by `stop`). */
  readonly credentials: NatsCredentials;
  /** The gateway's base URL. */
  gatewayUrl: string;
  gateway: NodeProcess;
  readonly actorHosts: NodeProcess[];
  /** Starts one more actor host. */
  startActorHost(env?: Record<string, string>): Promise<NodeProcess>;
  /** Restarts the gateway (same environment). */
  restartGateway(): Promise<void>;
  /** A NATS connection as the admin user, for provisioning and assertions (closed by `stop`). */
  connect(): Promise<NatsConnection>;
  /** A NATS connection as `user` (e.g. `service`, `actor-host-test`), closed by `stop`. */
  connectAs(user: string): Promise<NatsConnection>;
  /** Environment for a child process (the CLI) that connects as the admin user. */
  adminEnv(): Record<string, string>;
  /**
   * Declares that the test itself makes `user` publish or subscribe to `subject` where it may
   * not: the refusal the server logs is then what the test asserts, not a grant Vigil's own
   * processes are missing (which `stop` reports).
   */
  expectRefusal(user: string, subject: string): void;
  /** `fetch` against the gateway with tenant alpha's key unless headers say otherwise. */
  request(path: string, init?: RequestInit & { key?: string }): Promise<Response>;
  stop(): Promise<void>;
}

/** Credential dirs not yet removed: seeds are secrets, so a test process that dies still cleans up. */
const credsDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of credsDirs) rmSync(dir, { recursive: true, force: true });
});

function removeCredsDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  credsDirs.delete(dir);
}

/** Starts nats-server, provisions the region, and starts the gateway (and an actor host). */
export async function startTestEdge(options: TestEdgeOptions = {}): Promise<TestEdge> {
  const region = options.region ?? 'test';
  const credsDir = mkdtempSync(join(tmpdir(), 'vigil-creds-'));
  credsDirs.add(credsDir);
  let nats: TestNats;
  let credentials: NatsCredentials;
  try {
    credentials = generateNatsCredentials({ outDir: credsDir, regions: [region] });
    const extraConfig = [options.nats?.extraConfig, accountsConfig(credentials)];
    nats = await startTestNats({
      ...options.nats,
      extraConfig: extraConfig.filter((text) => text !== undefined).join('\n'),
    });
  } catch (err) {
    removeCredsDir(credsDir);
    throw err;
  }
  const connections: NatsConnection[] = [];
  const expectedRefusals: { user: string; subject: string }[] = [];
  const actorHosts: NodeProcess[] = [];
  let gateway: NodeProcess | undefined;
  const baseEnv = { NATS_URL: nats.url, VIGIL_REGION: region, VIGIL_LOG_LEVEL: 'warn' };
  const admin = credentials.user(Role.Admin);
  const gatewayEnv: Record<string, string> = {
    ...baseEnv,
    ...credentials.natsEnvFor(Role.Gateway),
    VIGIL_GATEWAY_PORT: '0',
    VIGIL_API_KEYS: Object.values(TENANTS)
      .map((t) => `${t.tenant}:${t.key}`)
      .join(','),
    ...options.gatewayEnv,
  };
  // Admin routes replay dead letters, which the gateway user may not write.
  if (gatewayEnv['VIGIL_ADMIN_KEYS']) {
    gatewayEnv['VIGIL_ADMIN_NATS_NKEY'] = admin.seedFile;
    gatewayEnv['VIGIL_ADMIN_NATS_INBOX_PREFIX'] = admin.inboxPrefix;
  }
  const actorHostEnv = credentials.natsEnvFor(userName(Role.ActorHost, region));
  const logFile = (node: string) =>
    options.logDir === undefined ? {} : { logFile: join(options.logDir, `${node}.log`) };
  const startGatewayProcess = () =>
    startNode('gateway', { env: gatewayEnv, ...logFile('gateway') });

  const edge: TestEdge = {
    nats,
    region,
    credentials,
    gatewayUrl: '',
    gateway: undefined as unknown as NodeProcess,
    actorHosts,
    async startActorHost(env = {}) {
      const host = await startNode('actor-host', {
        env: { ...baseEnv, ...actorHostEnv, ...options.actorEnv, ...env },
        ...logFile(`actor-host-${actorHosts.length + 1}`),
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
    connect() {
      return edge.connectAs(Role.Admin);
    },
    async connectAs(user) {
      const { seedFile, inboxPrefix } = credentials.user(user);
      const nc = await connect({
        servers: nats.url,
        ...natsAuthOptions({
          servers: nats.url,
          name: user,
          nkeySeed: readNkeySeed(seedFile, user),
          inboxPrefix,
        }),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      connections.push(nc);
      return nc;
    },
    expectRefusal(user, subject) {
      expectedRefusals.push({ user, subject });
    },
    adminEnv() {
      return { NATS_URL: nats.url, VIGIL_REGION: region, ...credentials.natsEnvFor(Role.Admin) };
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
      const refused = await shutdown();
      if (refused.length > 0) {
        throw new Error(
          `nats-server refused ${refused.length} operation(s) of Vigil's own processes: grant ` +
            `them in protocol/permissions.ts, or stop doing them:\n  ${refused.join('\n  ')}`,
        );
      }
    },
  };
  /** Stops everything; returns the permission violations the server logged meanwhile. */
  const shutdown = async (): Promise<string[]> => {
    await Promise.allSettled([gateway?.stop(), ...actorHosts.map((h) => h.stop())]);
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await nats.stop();
    const refused = permissionViolations(nats.options.logFile!, credentials).filter(
      (line) =>
        !expectedRefusals.some(
          (e) => line.includes(`"${e.user}"`) && line.includes(`Subject "${e.subject}"`),
        ),
    );
    await nats[Symbol.asyncDispose]();
    removeCredsDir(credsDir);
    return refused;
  };
  try {
    const admin = await edge.connect();
    await provisionRegion(admin, { region, ...options.assets }, createBuiltinModels());
    await edge.restartGateway();
    if (options.actorHost ?? true) await edge.startActorHost();
  } catch (err) {
    await shutdown();
    throw err;
  }
  return edge;
}

/**
 * The distinct permission violations in a nats-server log, each with the user's name instead of
 * its public key: nats-server 2.15 writes `"VIGIL/nkey:U..." - Publish Violation - Subject "..."`,
 * older servers `Publish Violation - Nkey "U...", Subject "..."`.
 */
function permissionViolations(logFile: string, credentials: NatsCredentials): string[] {
  let log: string;
  try {
    log = readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  const names = new Map(credentials.users.map((u) => [u.publicKey, u.user]));
  const found = new Set<string>();
  for (const line of log.split('\n')) {
    const at = line.search(/(Publish|Subscription) Violation - /);
    if (at < 0) continue;
    const key = /nkey:(\w+)"/.exec(line)?.[1];
    const violation = line
      .slice(at)
      .replace(/Nkey "(\w+)"/, (whole, k: string) =>
        names.has(k) ? `User "${names.get(k)}"` : whole,
      );
    found.add(key === undefined ? violation : `User "${names.get(key) ?? key}" - ${violation}`);
  }
  return [...found];
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
    if (
      ['succeeded', 'failed', 'dead', 'cancelled'].includes(String(body['state'])) ||
      Date.now() > until
    )
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
