/**
 * `npm start`: a whole local edge on this machine. By default one region (`local`) of one
 * nats-server; `npm start -- --regions eu,us --nodes 3 --edge pop1@eu` starts several regions,
 * each a NATS cluster of `--nodes` servers, joined into a supercluster through NATS gateways, with
 * an optional edge site (a leaf node beside its own gateway) attached to its region's hub. Every
 * region gets its streams and buckets (R3 when it has three servers), one actor host with the
 * built-in models and one gateway, and one controller evaluates the alert rules
 * (`deploy/alerts/rules.json`). Every process connects as its own least-privilege NATS user,
 * generated into `.vigil/nats-creds`. Data is kept in `.vigil/data`, so accepted tasks survive a
 * restart. Ctrl-C stops everything it started.
 *
 * What it accepts (`--regions`, `--nodes`, `--edge`, `VIGIL_PORT`, ...) is declared in
 * `config.ts`; `npm start -- --help` lists it. The nodes it starts inherit this environment and
 * read their own variables.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  createLogger,
  type LogLevel,
  ConfigError,
  connectNats,
  natsAuthOptions,
  natsOptionsFromEnv,
} from '../common/index.js';
import { createBuiltinModels } from '../../actors/index.js';
import { edgeDomain, ensureEdgeSite } from '../../protocol/index.js';
import { readLauncherConfig, UsageError, type LauncherSettings } from './config.js';
import { accountsConfig, generateNatsCredentials, type NatsCredentials } from './nats-accounts.js';
import type { NatsServerProcess } from './nats-server-process.js';
import { PROJECT_ROOT, startNode, type NodeName, type NodeProcess } from './node-process.js';
import { provisionRegion } from '../provision/index.js';
import {
  checkTopology,
  startEdgeServer,
  startSupercluster,
  type EdgeSiteSpec,
  type RegionSpec,
  type Supercluster,
} from './supercluster.js';

function say(text: string): void {
  process.stdout.write(text + '\n');
}

/** The configuration, or the process ends: help (exit 0), bad flags (2), bad values (1). */
function configure(): LauncherSettings {
  try {
    const start = readLauncherConfig(process.argv.slice(2), process.env);
    if (start.type === 'run') return start.settings;
    process.stdout.write(start.text);
    return process.exit(0);
  } catch (err) {
    if (err instanceof UsageError) {
      say(`vigil: ${err.message} (npm start -- --help lists what it accepts)`);
      return process.exit(2);
    }
    if (err instanceof ConfigError) {
      say(`vigil: invalid configuration: ${err.message}`);
      return process.exit(1);
    }
    throw err;
  }
}

const settings = configure();
const stateDir = settings.state.stateDir ?? join(PROJECT_ROOT, '.vigil');
const logDir = join(stateDir, 'logs');
const logger = createLogger({ node: 'launcher' }, 'info');

/** A secret kept in `.vigil/` (mode 0600) so restarts reuse it; generated on first use. */
function persistentSecret(file: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const path = join(stateDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const secret = randomBytes(24).toString('base64url');
  writeFileSync(path, secret + '\n', { mode: 0o600 });
  return secret;
}

/** The topology asked for on the command line, else in the environment. */
function topology(): { regions: RegionSpec[]; edges: EdgeSiteSpec[] } {
  const { regions: names, nodes, edges } = settings.launcher;
  const regions = (names.length > 0 ? names : ['local']).map((name) => ({ name, nodes }));
  checkTopology(regions, edges);
  return { regions, edges };
}

/** Regions other than `home`, nearest first: here, by distance in the listed order. */
function spillOrder(regions: readonly RegionSpec[], home: string): string {
  const at = regions.findIndex((r) => r.name === home);
  return regions
    .map((r, i) => ({ name: r.name, distance: Math.abs(i - at) }))
    .filter((r) => r.name !== home)
    .sort((a, b) => a.distance - b.distance)
    .map((r) => r.name)
    .join(',');
}

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  const { regions, edges } = topology();
  // Gateways listen on VIGIL_PORT and the ports after it; 0 gives each a free port.
  const firstPort = settings.launcher.port;
  const demoKey = persistentSecret('demo-key', settings.launcher.demoKey);
  const credentials: NatsCredentials = generateNatsCredentials({
    outDir: join(stateDir, 'nats-creds'),
    regions: regions.map((r) => r.name),
    edgeSites: edges.map((e) => e.site),
  });
  const leafUsers = edges.map((e) => ({
    user: `leaf-${e.site}`,
    password: persistentSecret(`leaf-${e.site}-password`, undefined),
  }));
  const adminOptions = natsOptionsFromEnv(
    { ...credentials.natsEnvFor('admin'), NATS_URL: 'nats://127.0.0.1:4222' },
    'launcher',
  );

  const cluster: Supercluster = await startSupercluster({
    regions,
    rootDir: join(stateDir, 'data', 'nats'),
    accountsConfig: accountsConfig(credentials),
    leafUsers,
    connectOptions: natsAuthOptions(adminOptions),
  });
  const edgeServers = new Map<string, NatsServerProcess>();
  const children: NodeProcess[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const child of [...children].reverse()) await child.stop();
    await Promise.all([...edgeServers.values()].map((s) => s.stop()));
    await cluster.stop();
  };
  const onSignal = (): void => {
    if (stopping) return;
    say('\nStopping Vigil...');
    void stopAll().then(() => {
      say('Vigil stopped.');
      process.exit(0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const admin = async (servers: string[], run: (nc: NatsConnection) => Promise<void>) => {
    const nc = await connectNats({ ...adminOptions, servers: servers.join(',') }, logger);
    try {
      await run(nc);
    } finally {
      await nc.close();
    }
  };
  const models = createBuiltinModels();
  for (const region of regions) {
    await admin(cluster.urlsOf(region.name), (nc) =>
      provisionRegion(
        nc,
        {
          region: region.name,
          replicas: Math.min(3, region.nodes),
          ...(cluster.clustered ? { placementCluster: region.name } : {}),
        },
        models,
      ),
    );
  }
  for (const [i, edge] of edges.entries()) {
    const server = await startEdgeServer({
      site: edge.site,
      hubLeafUrls: cluster.leafUrlsOf(edge.region),
      leafUser: leafUsers[i]!,
      storeDir: join(stateDir, 'data', 'nats', `edge-${edge.site}`, 'store'),
      accountsConfig: accountsConfig(credentials),
    });
    edgeServers.set(edge.site, server);
    await admin([server.url], async (edgeNc) =>
      admin(cluster.urlsOf(edge.region), async (hubNc) =>
        ensureEdgeSite(
          await jetstreamManager(edgeNc, { domain: edgeDomain(edge.site) }),
          await jetstreamManager(hubNc),
          { site: edge.site, region: edge.region },
        ),
      ),
    );
  }

  const echoWarnings = (name: string) => (line: Record<string, unknown>) => {
    if (line['level'] === 'warn' || line['level'] === 'error')
      say(`[${name}] ${line['level']}: ${String(line['msg'])}`);
  };
  const level: LogLevel = 'info';
  const launch = async (
    node: NodeName,
    label: string,
    extraEnv: Record<string, string>,
  ): Promise<NodeProcess> => {
    const child = await startNode(node, {
      // Every node serves Prometheus `/metrics` on a free loopback port (the summary lists them).
      env: { VIGIL_LOG_LEVEL: level, VIGIL_METRICS_PORT: '0', ...extraEnv },
      logFile: join(logDir, `${label}.log`),
      onLog: echoWarnings(label),
    });
    children.push(child);
    // Keep the edge up: a node that dies is started again (supervision proper lives in the host).
    void child.exited.then(async (code) => {
      if (stopping) return;
      say(`[launcher] ${label} exited (${code}); restarting it`);
      children.splice(children.indexOf(child), 1);
      await new Promise((r) => setTimeout(r, 1000));
      if (!stopping)
        await launch(node, label, extraEnv).catch((err: unknown) =>
          say(`[launcher] ${String(err)}`),
        );
    });
    return child;
  };

  const single = regions.length === 1 && edges.length === 0;
  const gatewayUrls: { name: string; url: string; nats: string }[] = [];
  let port = firstPort;
  const gatewayEnv = (home: string) => ({
    VIGIL_GATEWAY_PORT: String(firstPort === 0 ? 0 : port++),
    VIGIL_API_KEYS: `demo:${demoKey}`,
    VIGIL_SPILL_REGIONS: spillOrder(regions, home),
  });
  for (const region of regions) {
    const servers = cluster.urlsOf(region.name).join(',');
    const base = { NATS_URL: servers, VIGIL_REGION: region.name };
    const label = (node: string) => (single ? node : `${node}-${region.name}`);
    await launch('actor-host', label('actor-host'), {
      ...base,
      ...credentials.natsEnvFor(`actor-host-${region.name}`),
      VIGIL_RESCUE_REGIONS: spillOrder(regions, region.name),
    });
    const gateway = await launch('gateway', label('gateway'), {
      ...base,
      ...credentials.natsEnvFor('gateway'),
      ...gatewayEnv(region.name),
    });
    gatewayUrls.push({ name: region.name, url: String(gateway.ready['url']), nats: servers });
  }
  for (const edge of edges) {
    const server = edgeServers.get(edge.site)!;
    const gateway = await launch('gateway', `gateway-edge-${edge.site}`, {
      NATS_URL: server.url,
      VIGIL_REGION: edge.region,
      VIGIL_EDGE_SITE: edge.site,
      ...credentials.natsEnvFor(`edge-gateway-${edge.site}`),
      ...gatewayEnv(edge.region),
    });
    gatewayUrls.push({
      name: `${edge.site} (edge of ${edge.region})`,
      url: String(gateway.ready['url']),
      nats: server.url,
    });
  }

  // One controller evaluates the alert rules for every region (leader-elected: more could run).
  await launch('controller', 'controller', {
    NATS_URL: cluster.urlsOf(regions[0]!.name).join(','),
    VIGIL_REGION: regions[0]!.name,
    VIGIL_CONTROLLER_REGIONS: regions.map((r) => r.name).join(','),
    ...credentials.natsEnvFor('controller'),
    // The system-account user, for each nats-server's storage figures.
    VIGIL_SYS_NATS_NKEY: credentials.user('sys').seedFile,
    VIGIL_SYS_NATS_INBOX_PREFIX: credentials.user('sys').inboxPrefix,
  });

  // Where the running edge is, for `npx vigil` (the CLI) and other local tools.
  const first = gatewayUrls[0]!;
  writeFileSync(
    join(stateDir, 'edge.json'),
    JSON.stringify(
      {
        region: regions[0]!.name,
        regions: regions.map((r) => r.name),
        gatewayUrl: first.url,
        natsUrl: cluster.urlsOf(regions[0]!.name).join(','),
        natsNkey: credentials.user('admin').seedFile,
        natsInboxPrefix: credentials.user('admin').inboxPrefix,
      },
      null,
      2,
    ) + '\n',
  );
  say('');
  if (single) {
    say(`Vigil is running: gateway ${first.url}, NATS ${first.nats}, region ${first.name}`);
  } else {
    say(`Vigil is running: ${regions.length} regions of ${regions[0]!.nodes} NATS server(s) each`);
    for (const g of gatewayUrls) say(`  ${g.name.padEnd(24)} gateway ${g.url}   NATS ${g.nats}`);
  }
  say(`Demo API key (tenant "demo"): ${demoKey}`);
  say(`NATS credentials (one least-privilege user per role): ${credentials.outDir}`);
  const pids = [
    ...cluster.servers.map((s) => `nats-server=${s.pid}`),
    ...[...edgeServers.values()].map((s) => `nats-leaf=${s.pid}`),
    ...children.map((c) => `${c.name}=${c.pid}`),
  ];
  say(`Processes: ${pids.join(' ')}`);
  const metrics = children.flatMap((c) =>
    typeof c.ready['metricsUrl'] === 'string' ? [`${c.name}=${c.ready['metricsUrl']}`] : [],
  );
  if (metrics.length > 0) say(`Metrics (Prometheus): ${metrics.join(' ')}`);
  say(`Logs: ${logDir}    Stop: Ctrl-C`);
  say('');
  say('Try:');
  say(
    `  curl -s ${first.url}/v1/models/ngram-chat/infer -H "Authorization: Bearer ${demoKey}" ` +
      `-H 'Content-Type: application/json' -d '{"input":"Tell me about liberty","params":{"max_tokens":40}}'`,
  );
  say('');
}

main().catch((err: unknown) => {
  say(`vigil: could not start: ${(err as Error).message}`);
  process.exit(1);
});
