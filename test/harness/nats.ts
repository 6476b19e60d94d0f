// Real nats-server processes for tests: temporary store dirs, random loopback ports, and disposal
// that removes both the process and its files. No mocked broker anywhere.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  waitForJetStreamMeta,
  freePort,
  startNatsServer,
  type NatsServerOptions,
  type NatsServerProcess,
} from '../../nodes/launcher/index.js';

export { freePort };

/** Temp dirs not yet removed; a test process that dies before disposing still cleans up. */
const tempRoots = new Set<string>();
process.on('exit', () => {
  for (const root of tempRoots) rmSync(root, { recursive: true, force: true });
});

function makeTempRoot(prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  tempRoots.add(root);
  return root;
}

function removeTempRoot(root: string): void {
  rmSync(root, { recursive: true, force: true });
  tempRoots.delete(root);
}

/** A single test server; `await using` it, or call `stop()` and rely on dispose for the files. */
export type TestNats = NatsServerProcess & {
  /** The temporary JetStream store dir (inside a temp dir removed on dispose). */
  readonly storeDir: string;
  /** Stops the server and removes its temp dir. */
  [Symbol.asyncDispose](): Promise<void>;
};

/** Options for {@link startTestNats}: anything but the store dir, which is always temporary. */
export type TestNatsOptions = Omit<NatsServerOptions, 'storeDir'>;

/** Starts one JetStream-enabled nats-server on random loopback ports with a temp store dir. */
export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const root = makeTempRoot('vigil-nats-');
  const storeDir = join(root, 'store');
  let server: NatsServerProcess;
  try {
    server = await startNatsServer({ monitorPort: 0, ...opts, storeDir });
  } catch (err) {
    removeTempRoot(root);
    throw err;
  }
  return withDispose(server, storeDir, root);
}

/** Options for {@link startTestCluster}. */
export interface TestClusterOptions {
  /** Number of routed servers. Default 3. */
  nodes?: number;
  /** Cluster name; also the prefix of each `server_name`. Default `vigil-test`. */
  name?: string;
  /** JetStream is always on; `true` documents that the cluster is a JetStream cluster. */
  jetstream?: true;
  /** How long to wait for the JetStream meta leader. Default 30 s. */
  readyTimeoutMs?: number;
}

/** A routed cluster of test servers. */
export interface TestCluster {
  /** The servers, in start order; each can be killed and restarted on its own. */
  readonly nodes: TestNats[];
  /** Client URLs of all nodes, for `connect({ servers })`. */
  readonly urls: string[];
  /** Stops every node and removes the temp dirs. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts `nodes` servers routed into one JetStream cluster and resolves once the JetStream API
 * answers (a meta leader has been elected).
 */
export async function startTestCluster(opts: TestClusterOptions = {}): Promise<TestCluster> {
  const count = opts.nodes ?? 3;
  const name = opts.name ?? 'vigil-test';
  // Every node must know every route before it starts, so the route ports are chosen up front.
  const clusterPorts = await Promise.all(Array.from({ length: count }, () => freePort()));
  const routes = clusterPorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const roots = clusterPorts.map(() => makeTempRoot(`vigil-nats-${name}-`));

  // Started together: clustered JetStream needs a quorum of peers to elect its meta leader, and a
  // server waits for it rather than failing, so sequential starts would only add delay.
  const started = await Promise.allSettled(
    clusterPorts.map((port, i) =>
      startNatsServer({
        storeDir: join(roots[i]!, 'store'),
        serverName: `${name}-${i}`,
        monitorPort: 0,
        cluster: { name, port, routes },
      }),
    ),
  );
  const nodes = started.flatMap((r, i) =>
    r.status === 'fulfilled' ? [withDispose(r.value, join(roots[i]!, 'store'), roots[i]!)] : [],
  );
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => n[Symbol.asyncDispose]()));
    for (const root of roots) removeTempRoot(root);
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }

  const urls = nodes.map((n) => n.url);
  try {
    await waitForJetStream(urls, opts.readyTimeoutMs ?? 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, urls, stop, [Symbol.asyncDispose]: stop };
}

/** Resolves once `$JS.API.INFO` answers through `urls` (unauthenticated test servers). */
export function waitForJetStream(urls: string[], timeoutMs = 30_000): Promise<void> {
  return waitForJetStreamMeta(urls, {}, timeoutMs);
}

function withDispose(server: NatsServerProcess, storeDir: string, root: string): TestNats {
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    await server.stop();
    removeTempRoot(root);
  };
  // The server handle is live (restart() keeps it), so it is extended in place rather than copied.
  return Object.defineProperties(server, {
    storeDir: { value: storeDir, enumerable: true },
    [Symbol.asyncDispose]: { value: dispose },
  }) as TestNats;
}
