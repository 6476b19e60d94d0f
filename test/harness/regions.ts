/**
 * Several regions (and edge sites) for end-to-end tests: a real supercluster on loopback ports
 * (nodes/launcher/supercluster.ts, the same code `npm start -- --regions` runs), every node with
 * its least-privilege NATS user, the regions provisioned where they belong, and a real gateway and
 * actor host per region (and a gateway per edge site) as child processes. `stop()` stops them all
 * by PID and removes the temp dirs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../../actors/index.js';
import {
  edgeDomain,
  ensureEdgeSite,
  Role,
  userName,
  type RegionAssetsOptions,
} from '../../protocol/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  type NatsCredentials,
  startNode,
  type NodeProcess,
  startEdgeServer,
  startSupercluster,
  type EdgeSiteSpec,
  type RegionSpec,
  type Supercluster,
} from '../../nodes/launcher/index.js';
import { provisionRegion } from '../../nodes/provision/index.js';
import type { NatsServerProcess } from '../../nodes/launcher/index.js';
import { readNkeySeed } from '../../nodes/common/index.js';
import { TENANTS } from './edge.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** Options of {@link startTestRegions}. */
export interface TestRegionsOptions {
  regions: RegionSpec[];
  edges?: EdgeSiteSpec[];
  /** Limits for every region's assets (replicas default to min(3, nodes)). */
  assets?: Omit<RegionAssetsOptions, 'region'>;
  /** Extra environment for every actor host. */
  actorEnv?: Record<string, string>;
  /** Extra environment for every gateway. */
  gatewayEnv?: Record<string, string>;
  /**
   * Puts a relay the test can cut (`edgeLinks`) between each edge site and its hub's servers;
   * the hubs advertise the relay, so the site cannot go around it.
   */
  cuttableEdgeLinks?: boolean;
}

/** A running multi-region test setup. */
export interface TestRegions {
  readonly supercluster: Supercluster;
  readonly credentials: NatsCredentials;
  readonly edgeServers: ReadonlyMap<string, NatsServerProcess>;
  /** With `cuttableEdgeLinks`: the relays between each edge site and its hub's servers. */
  readonly edgeLinks: ReadonlyMap<string, TcpProxy[]>;
  /** Gateways by region name or edge site name. */
  readonly gateways: Map<string, NodeProcess>;
  /** Actor hosts by region. */
  readonly actorHosts: Map<string, NodeProcess[]>;
  gatewayUrl(regionOrSite: string): string;
  /** `fetch` against a region's (or edge site's) gateway, as tenant alpha unless `key` says. */
  request(
    regionOrSite: string,
    path: string,
    init?: RequestInit & { key?: string },
  ): Promise<Response>;
  startActorHost(region: string, env?: Record<string, string>): Promise<NodeProcess>;
  /** An admin connection to a region's servers (closed by `stop`). */
  connect(region: string): Promise<NatsConnection>;
  stop(): Promise<void>;
}

/** Regions each other region spills to, nearest first: here, simply the listed order. */
function spillOrder(regions: RegionSpec[], home: string): string {
  return regions
    .map((r) => r.name)
    .filter((r) => r !== home)
    .join(',');
}

/** Starts the supercluster, provisions it, and starts the nodes. */
export async function startTestRegions(options: TestRegionsOptions): Promise<TestRegions> {
  const root = mkdtempSync(join(tmpdir(), 'vigil-regions-'));
  const credentials = generateNatsCredentials({
    outDir: join(root, 'creds'),
    regions: options.regions.map((r) => r.name),
    edgeSites: (options.edges ?? []).map((e) => e.site),
  });
  const adminSeed = readNkeySeed(credentials.user('admin').seedFile, 'admin seed');
  const adminConnect = {
    authenticator: nkeyAuthenticator(adminSeed),
    inboxPrefix: credentials.user('admin').inboxPrefix,
  };
  const connections: NatsConnection[] = [];
  const gateways = new Map<string, NodeProcess>();
  const actorHosts = new Map<string, NodeProcess[]>();
  const edgeServers = new Map<string, NatsServerProcess>();
  let supercluster: Supercluster | undefined;
  // One relay per hub server an edge site dials, created before the hubs so they can advertise it.
  const relays = new Map<string, TcpProxy>();
  const edgeLinks = new Map<string, TcpProxy[]>();
  if (options.cuttableEdgeLinks) {
    for (const edge of options.edges ?? []) {
      const hub = options.regions.find((r) => r.name === edge.region);
      const links: TcpProxy[] = [];
      for (let i = 0; i < (hub?.nodes ?? 0); i++) {
        const relay = await startTcpProxy();
        relays.set(`${edge.region}-${i}`, relay);
        links.push(relay);
      }
      edgeLinks.set(edge.site, links);
    }
  }

  const stop = async () => {
    const nodes = [...gateways.values(), ...[...actorHosts.values()].flat()];
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await Promise.allSettled([...edgeServers.values()].map((s) => s.stop()));
    await supercluster?.stop();
    await Promise.allSettled([...relays.values()].map((r) => r.close()));
    rmSync(root, { recursive: true, force: true });
  };

  try {
    supercluster = await startSupercluster({
      regions: options.regions,
      rootDir: join(root, 'nats'),
      accountsConfig: accountsConfig(credentials),
      leafAdvertise: (server) => {
        const relay = relays.get(server);
        return relay ? `127.0.0.1:${relay.port}` : undefined;
      },
      connectOptions: adminConnect,
    });
    const sc = supercluster;
    for (const [name, relay] of relays) {
      const leafUrl = sc.servers.find((s) => s.options.serverName === name)?.leafUrl;
      if (leafUrl) relay.retarget({ host: '127.0.0.1', port: Number(new URL(leafUrl).port) });
    }
    const connectTo = async (servers: string[]) => {
      const nc = await connect({
        ...adminConnect,
        servers,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      connections.push(nc);
      return nc;
    };
    const models = createBuiltinModels();
    for (const region of options.regions) {
      const admin = await connectTo(sc.urlsOf(region.name));
      await provisionRegion(
        admin,
        {
          replicas: Math.min(3, region.nodes),
          ...options.assets,
          region: region.name,
          ...(sc.clustered ? { placementCluster: region.name } : {}),
        },
        models,
      );
    }

    const regionNames = options.regions.map((r) => r.name);
    const nodeEnv = (user: string, servers: string[], region: string) => ({
      NATS_URL: servers.join(','),
      VIGIL_REGION: region,
      VIGIL_LOG_LEVEL: 'warn',
      ...credentials.natsEnvFor(user),
    });
    const gatewayEnv = (home: string) => ({
      VIGIL_GATEWAY_PORT: '0',
      VIGIL_API_KEYS: Object.values(TENANTS)
        .map((t) => `${t.tenant}:${t.key}`)
        .join(','),
      VIGIL_SPILL_REGIONS: spillOrder(options.regions, home),
      ...options.gatewayEnv,
    });

    const startActorHost = async (region: string, env: Record<string, string> = {}) => {
      const host = await startNode('actor-host', {
        env: {
          ...nodeEnv(`actor-host-${region}`, sc.urlsOf(region), region),
          VIGIL_RESCUE_REGIONS: spillOrder(options.regions, region),
          ...options.actorEnv,
          ...env,
        },
      });
      const list = actorHosts.get(region) ?? [];
      list.push(host);
      actorHosts.set(region, list);
      return host;
    };

    await Promise.all(
      regionNames.map(async (region) => {
        gateways.set(
          region,
          await startNode('gateway', {
            env: { ...nodeEnv('gateway', sc.urlsOf(region), region), ...gatewayEnv(region) },
          }),
        );
        await startActorHost(region);
      }),
    );

    for (const edge of options.edges ?? []) {
      const links = edgeLinks.get(edge.site);
      const server = await startEdgeServer({
        site: edge.site,
        hubLeafUrls: links
          ? links.map((relay) => `nats://127.0.0.1:${relay.port}`)
          : sc.leafUrlsOf(edge.region),
        leafSeedFile: credentials.user(userName(Role.Leaf, edge.site)).seedFile,
        storeDir: join(root, 'nats', `edge-${edge.site}`, 'store'),
        accountsConfig: accountsConfig(credentials),
      });
      edgeServers.set(edge.site, server);
      const edgeAdmin = await connectTo([server.url]);
      const hubAdmin = await connectTo(sc.urlsOf(edge.region));
      await ensureEdgeSite(
        await jetstreamManager(edgeAdmin, { domain: edgeDomain(edge.site) }),
        await jetstreamManager(hubAdmin),
        { site: edge.site, region: edge.region },
      );
      gateways.set(
        edge.site,
        await startNode('gateway', {
          env: {
            ...nodeEnv(`edge-gateway-${edge.site}`, [server.url], edge.region),
            ...gatewayEnv(edge.region),
            VIGIL_EDGE_SITE: edge.site,
          },
        }),
      );
    }

    const gatewayUrl = (name: string) => {
      const gw = gateways.get(name);
      if (!gw) throw new Error(`no gateway for '${name}'`);
      return String(gw.ready['url']);
    };
    return {
      supercluster: sc,
      credentials,
      edgeServers,
      edgeLinks,
      gateways,
      actorHosts,
      gatewayUrl,
      request(name, path, init = {}) {
        const { key = TENANTS.alpha.key, ...rest } = init;
        const headers = new Headers(rest.headers);
        if (!headers.has('Authorization') && key) headers.set('Authorization', `Bearer ${key}`);
        if (rest.body !== undefined && !headers.has('Content-Type'))
          headers.set('Content-Type', 'application/json');
        return fetch(gatewayUrl(name) + path, { ...rest, headers });
      },
      startActorHost,
      connect: (region) => connectTo(sc.urlsOf(region)),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
