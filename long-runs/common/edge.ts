/**
 * The edge a long run drives: one region on one nats-server (as `npm start` runs it by default),
 * in a temp dir on random loopback ports, provisioned, with per-role NATS users; nodes are started
 * on it with `startNode`, each as its role's user. A running `npm start` and its `.vigil` are
 * never touched. Every process is remembered by PID and stopped by PID.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../../actors/index.js';
import { readNkeySeed } from '../../nodes/common/index.js';
import {
  accountsConfig,
  freePort,
  generateNatsCredentials,
  startNode,
  startSupercluster,
  type NatsCredentials,
  type NatsServerProcess,
  type NodeName,
  type NodeProcess,
  type Supercluster,
} from '../../nodes/launcher/index.js';
import { provisionRegion } from '../../nodes/provision/index.js';
import type { RegionAssetsOptions } from '../../protocol/index.js';

/** The tenant every long run's load runs as. */
export const RUN_TENANT = 'longrun';
/** Grace a node gets to stop at the end, ms, before SIGKILL (above the host's 30 s drain). */
const NODE_STOP_GRACE_MS = 40_000;

/** Options of {@link startRunEdge}. */
export interface RunEdgeOptions {
  region: string;
  /** One log file per node goes here, and the nats-server's. */
  logDir: string;
  /** Run `dist/` (built by `npm run build`) rather than the TypeScript through tsx. */
  compiled: boolean;
  /** Limits of the region's assets (heartbeat interval, retention). */
  assets?: Omit<RegionAssetsOptions, 'region'>;
  /** Open nats-server's Go profiling port (`prof_port`) on loopback. */
  profiling?: boolean;
}

/** A running long-run edge. */
export interface RunEdge {
  readonly region: string;
  readonly server: NatsServerProcess;
  /** nats-server's profiling base URL, when asked for. */
  readonly profUrl: string | undefined;
  readonly credentials: NatsCredentials;
  /** The API key of {@link RUN_TENANT}. */
  readonly apiKey: string;
  /** NATS settings for a node connecting as `user`, plus region and log level. */
  nodeEnv(user: string): Record<string, string>;
  /** Starts a node, its log in `<label>.log`; it is stopped by {@link stop}. */
  startNode(kind: NodeName, label: string, env: Record<string, string>): Promise<NodeProcess>;
  /** An admin connection (closed by `stop`). */
  admin(): Promise<NatsConnection>;
  /** A connection as `user` (closed by `stop`). */
  connectAs(user: string): Promise<NatsConnection>;
  /** Stops every node started (by PID), the connections, the server; removes the temp dir. */
  stop(): Promise<void>;
}

/** Starts the server, provisions the region. */
export async function startRunEdge(options: RunEdgeOptions): Promise<RunEdge> {
  const root = mkdtempSync(join(tmpdir(), 'vigil-longrun-'));
  const credentials = generateNatsCredentials({
    outDir: join(root, 'creds'),
    regions: [options.region],
  });
  const nodes: NodeProcess[] = [];
  const connections: NatsConnection[] = [];
  let cluster: Supercluster | undefined;
  const profPort = options.profiling ? await freePort() : undefined;
  const connectAs = async (user: string): Promise<NatsConnection> => {
    const c = credentials.user(user);
    const nc = await connect({
      servers: cluster!.urlsOf(options.region),
      authenticator: nkeyAuthenticator(readNkeySeed(c.seedFile, user)),
      inboxPrefix: c.inboxPrefix,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    connections.push(nc);
    return nc;
  };
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await Promise.allSettled(nodes.map((n) => n.stop(NODE_STOP_GRACE_MS)));
      await Promise.allSettled(connections.map((nc) => nc.close()));
      await cluster?.stop();
      rmSync(root, { recursive: true, force: true });
    })());
  try {
    const admin = credentials.user('admin');
    cluster = await startSupercluster({
      regions: [{ name: options.region, nodes: 1 }],
      rootDir: join(root, 'nats'),
      // Extra server configuration travels with the accounts' text (both are appended verbatim).
      accountsConfig:
        accountsConfig(credentials) + (profPort === undefined ? '' : `\nprof_port: ${profPort}\n`),
      connectOptions: {
        authenticator: nkeyAuthenticator(readNkeySeed(admin.seedFile, 'admin')),
        inboxPrefix: admin.inboxPrefix,
      },
    });
    await provisionRegion(
      await connectAs('admin'),
      { region: options.region, ...options.assets },
      createBuiltinModels(),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const server = cluster.servers[0]!;
  const edge: RunEdge = {
    region: options.region,
    server,
    profUrl: profPort === undefined ? undefined : `http://127.0.0.1:${profPort}`,
    credentials,
    apiKey: randomBytes(24).toString('base64url'),
    nodeEnv: (user) => ({
      NATS_URL: server.url,
      VIGIL_REGION: options.region,
      VIGIL_LOG_LEVEL: 'info',
      ...credentials.natsEnvFor(user),
    }),
    async startNode(kind, label, env) {
      const node = await startNode(kind, {
        env,
        compiled: options.compiled,
        logFile: join(options.logDir, `${label}.log`),
      });
      nodes.push(node);
      return node;
    },
    admin: () => connectAs('admin'),
    connectAs,
    stop,
  };
  return edge;
}
