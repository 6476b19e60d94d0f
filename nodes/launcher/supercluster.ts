/**
 * Regions and edge sites on one machine, as real nats-server processes on loopback ports: each
 * region is a NATS cluster (routes) of one or more servers, the regions join into a supercluster
 * through NATS gateways and share the JetStream domain `vigil`, and each edge site is a leaf node
 * with a JetStream domain of its own, attached to its region's servers. The launcher
 * (`npm start -- --regions ...`) and the multi-region tests both start their brokers here, so what
 * the tests prove is what users run.
 */
import { join } from 'node:path';
import { connect, type ConnectionOptions } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { edgeDomain, HUB_DOMAIN, NAME_TOKEN } from '../../protocol/index.js';
import { ConfigError, readNkeySeed } from '../common/index.js';
import { freePort, startNatsServer, type NatsServerProcess } from './nats-server-process.js';

/** One region: a cluster of `nodes` servers named `<region>-<i>`. */
export interface RegionSpec {
  name: string;
  nodes: number;
}

/** One edge site: a leaf node attached to `region`. */
export interface EdgeSiteSpec {
  site: string;
  region: string;
}

/** The account every Vigil user lives in (protocol/permissions.ts); leaf links bind to it. */
export const APPLICATION_ACCOUNT = 'VIGIL';

/** Options of {@link startSupercluster}. */
export interface SuperclusterOptions {
  regions: readonly RegionSpec[];
  /** Store dirs go to `<rootDir>/<server name>/store`. */
  rootDir: string;
  /**
   * nats-server configuration text with the accounts (an application account named
   * {@link APPLICATION_ACCOUNT} with JetStream, and a system account): gateways and leaf nodes
   * need a system account.
   */
  accountsConfig: string;
  /**
   * The address a hub server tells edge sites to dial for it (`host:port` of a load balancer or
   * relay in front of it), by server name; default its own leaf listener.
   */
  leafAdvertise?: (serverName: string) => string | undefined;
  /** How to connect for the JetStream readiness check (credentials of any user). */
  connectOptions: Omit<ConnectionOptions, 'servers'>;
  /** HTTP monitoring on every server (random ports). Default true. */
  monitor?: boolean;
  /** How long to wait for the supercluster's JetStream meta leader. Default 60 s. */
  readyTimeoutMs?: number;
}

/** A running supercluster. */
export interface Supercluster {
  /** Each region's servers, in start order; each can be killed and restarted on its own. */
  readonly regions: ReadonlyMap<string, readonly NatsServerProcess[]>;
  /** Client URLs of a region's servers, for `connect({ servers })`. */
  urlsOf(region: string): string[];
  /** Leaf URLs of a region's servers (their own listeners), for edge sites. */
  leafUrlsOf(region: string): string[];
  /** Every server, all regions. */
  readonly servers: readonly NatsServerProcess[];
  /**
   * False for one region of one server, which runs as a plain server: its assets then take no
   * placement (there is no cluster to name).
   */
  readonly clustered: boolean;
  /** Stops every server (edge sites first, if started through it). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Validates a topology: names are subject tokens, regions are unique, node counts are 1 to 5,
 * edge sites attach to a known region.
 * @throws ConfigError naming what is wrong.
 */
export function checkTopology(
  regions: readonly RegionSpec[],
  edges: readonly EdgeSiteSpec[] = [],
): void {
  if (regions.length === 0) throw new ConfigError('at least one region is needed');
  const seen = new Set<string>();
  for (const r of regions) {
    if (!NAME_TOKEN.test(r.name)) throw new ConfigError(`region '${r.name}' is not a name token`);
    if (seen.has(r.name)) throw new ConfigError(`region '${r.name}' is listed twice`);
    seen.add(r.name);
    if (!Number.isInteger(r.nodes) || r.nodes < 1 || r.nodes > 5)
      throw new ConfigError(`region '${r.name}': nodes must be 1 to 5, not ${r.nodes}`);
  }
  const sites = new Set<string>();
  for (const e of edges) {
    if (!NAME_TOKEN.test(e.site))
      throw new ConfigError(`edge site '${e.site}' is not a name token`);
    if (sites.has(e.site)) throw new ConfigError(`edge site '${e.site}' is listed twice`);
    sites.add(e.site);
    if (!seen.has(e.region))
      throw new ConfigError(`edge site '${e.site}' attaches to unknown region '${e.region}'`);
  }
}

/** Starts every region's servers, joined into one supercluster, and waits for JetStream. */
export async function startSupercluster(options: SuperclusterOptions): Promise<Supercluster> {
  checkTopology(options.regions);
  const plan = await planServers(options.regions);
  // One region of one server is a plain server: a JetStream cluster of one would wait for peers.
  const standalone = plan.length === 1 && plan[0]!.nodes.length === 1;
  const started = await startServers(plan, options, standalone);
  const supercluster = superclusterOf(started, standalone);
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await supercluster.stop();
    throw failed.reason;
  }
  try {
    await untilJetStreamServes(supercluster.servers, options, standalone);
  } catch (err) {
    await supercluster.stop();
    throw err;
  }
  return supercluster;
}

/** One server of a region, with the ports it listens on. */
interface PlannedServer {
  name: string;
  clusterPort: number;
  gatewayPort: number;
  leafPort: number;
}

/** A region's servers, before any has started. */
interface RegionPlan {
  region: RegionSpec;
  nodes: PlannedServer[];
}

/** Names and ports of every server: each must know every route and gateway before it starts. */
function planServers(regions: readonly RegionSpec[]): Promise<RegionPlan[]> {
  return Promise.all(
    regions.map(async (region) => ({
      region,
      nodes: await Promise.all(
        Array.from({ length: region.nodes }, async (_, i) => ({
          name: `${region.name}-${i}`,
          clusterPort: await freePort(),
          gatewayPort: await freePort(),
          leafPort: await freePort(),
        })),
      ),
    })),
  );
}

/** How one server's start went: the server and its region, or why it did not start. */
type ServerStart = PromiseSettledResult<{ region: string; server: NatsServerProcess }>;

/**
 * Starts every planned server at once: the JetStream meta group spans the supercluster and needs
 * a quorum of its peers to elect a leader; a server waits for it rather than failing. Settled, not
 * all-or-nothing, so the servers that did start can be stopped when one did not.
 */
function startServers(
  plan: readonly RegionPlan[],
  options: SuperclusterOptions,
  standalone: boolean,
): Promise<ServerStart[]> {
  const gateways = plan.map(({ region, nodes }) => ({
    name: region.name,
    urls: nodes.map((n) => `nats://127.0.0.1:${n.gatewayPort}`),
  }));
  return Promise.allSettled(
    plan.flatMap(({ region, nodes }) =>
      nodes.map((node) => {
        const advertise = options.leafAdvertise?.(node.name);
        return startNatsServer({
          storeDir: join(options.rootDir, node.name, 'store'),
          serverName: node.name,
          ...(options.monitor === false ? {} : { monitorPort: 0 }),
          jetstream: { domain: HUB_DOMAIN },
          ...(standalone
            ? {}
            : {
                // A one-server region in a supercluster still is a cluster (clustered JetStream
                // needs routes); it routes to itself, which nats-server ignores.
                cluster: {
                  name: region.name,
                  port: node.clusterPort,
                  routes: nodes.map((n) => `nats-route://127.0.0.1:${n.clusterPort}`),
                },
                gateway: { name: region.name, port: node.gatewayPort, gateways },
              }),
          // Edge sites' links authenticate as their leaf users in `accountsConfig`, whose
          // permissions bound what each link carries (protocol/permissions.ts).
          leafnodes: {
            port: node.leafPort,
            ...(advertise ? { advertise } : {}),
          },
          extraConfig: options.accountsConfig,
        }).then((server) => ({ region: region.name, server }));
      }),
    ),
  );
}

/** The handle over the servers that started, by region in start order; its stop is idempotent. */
function superclusterOf(started: readonly ServerStart[], standalone: boolean): Supercluster {
  const byRegion = new Map<string, NatsServerProcess[]>();
  const servers: NatsServerProcess[] = [];
  for (const result of started) {
    if (result.status !== 'fulfilled') continue;
    servers.push(result.value.server);
    const list = byRegion.get(result.value.region) ?? [];
    list.push(result.value.server);
    byRegion.set(result.value.region, list);
  }
  let stopped = false;
  return {
    regions: byRegion,
    servers,
    clustered: !standalone,
    urlsOf: (region) => (byRegion.get(region) ?? []).map((s) => s.url),
    leafUrlsOf: (region) =>
      (byRegion.get(region) ?? []).flatMap((s) => (s.leafUrl ? [s.leafUrl] : [])),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** Resolves once the supercluster's JetStream API answers and can place replicated streams. */
async function untilJetStreamServes(
  servers: readonly NatsServerProcess[],
  options: SuperclusterOptions,
  standalone: boolean,
): Promise<void> {
  const timeoutMs = options.readyTimeoutMs ?? 60_000;
  await waitForJetStreamMeta(
    servers.map((s) => s.url),
    options.connectOptions,
    timeoutMs,
  );
  // A meta leader can answer before it has heard from every peer; placing an R3 stream then
  // fails with "no suitable peers". Wait until the leader sees them all current.
  if (options.monitor !== false && !standalone) await waitForMetaPeers(servers, timeoutMs);
}

/** Options of {@link startEdgeServer}. */
export interface EdgeServerOptions {
  site: string;
  /** Leaf URLs of the hub region's servers (or of a proxy in front of them). */
  hubLeafUrls: readonly string[];
  /** Seed file of the site's leaf user (`leaf-<site>` of the generated credentials). */
  leafSeedFile: string;
  storeDir: string;
  /** Accounts text, as for the hubs (the site's own users and a system account). */
  accountsConfig: string;
  monitor?: boolean;
}

/**
 * Starts an edge site's leaf node: JetStream domain `edge-<site>`, so it accepts work on its own
 * while the link is cut, and a leaf link binding its application account to the hub's.
 */
export function startEdgeServer(options: EdgeServerOptions): Promise<NatsServerProcess> {
  const seed = new TextDecoder().decode(readNkeySeed(options.leafSeedFile, 'leafSeedFile'));
  return startNatsServer({
    storeDir: options.storeDir,
    serverName: `edge-${options.site}`,
    ...(options.monitor === false ? {} : { monitorPort: 0 }),
    jetstream: { domain: edgeDomain(options.site) },
    leafnodes: {
      remotes: [
        {
          urls: options.hubLeafUrls.map((u) => u.replace(/^nats:\/\//, 'nats-leaf://')),
          account: APPLICATION_ACCOUNT,
          nkeySeed: seed,
        },
      ],
    },
    extraConfig: options.accountsConfig,
  });
}

/** Resolves once the JetStream meta leader reports every other server as a current peer. */
async function waitForMetaPeers(
  servers: readonly NatsServerProcess[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const server of servers) {
      try {
        const res = await fetch(`${server.monitorUrl}/jsz`, { signal: AbortSignal.timeout(1_000) });
        const { meta_cluster: meta } = (await res.json()) as {
          meta_cluster?: { replicas?: { current?: boolean }[] };
        };
        const peers = meta?.replicas ?? [];
        if (peers.length === servers.length - 1 && peers.every((p) => p.current)) return;
      } catch {
        // not answering yet: ask the next one
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the JetStream meta group did not see all ${servers.length} servers in time`);
}

/** Resolves once the JetStream API answers through `urls` (a meta leader has been elected). */
export async function waitForJetStreamMeta(
  urls: string[],
  connectOptions: Omit<ConnectionOptions, 'servers'>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const nc = await connect({ ...connectOptions, servers: urls, timeout: 5_000 });
  try {
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new Error(`JetStream did not answer within ${timeoutMs / 1000} s`, { cause: lastError });
  } finally {
    await nc.close();
  }
}
