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
 *
 * `main` is the start-up order, each step a function named for it; what it started, and the
 * order Ctrl-C stops them in, is kept in `launched-processes.ts`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ConfigError,
  connectNats,
  createLogger,
  makeDirectory,
  natsAuthOptions,
  type NatsConnectOptions,
  natsOptionsFromEnv,
} from '../common/index.js';
import { createBuiltinModels } from '../../actors/index.js';
import { edgeDomain, ensureEdgeSite, Role, userName } from '../../protocol/index.js';
import { readLauncherConfig, UsageError, type LauncherSettings } from './config.js';
import { LaunchedProcesses } from './launched-processes.js';
import { accountsConfig, generateNatsCredentials, type NatsCredentials } from './nats-accounts.js';
import { PROJECT_ROOT } from './node-process.js';
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

/** What this start runs, decided before anything starts. */
interface LaunchPlan {
  regions: RegionSpec[];
  edges: EdgeSiteSpec[];
  demoKey: string;
  credentials: NatsCredentials;
  /** The admin user, for provisioning regions and edge sites. */
  adminOptions: NatsConnectOptions;
}

/** A gateway as the summary and `edge.json` name it. */
interface GatewaySummary {
  name: string;
  url: string;
  nats: string;
}

/** Start-up in order, then the summary; Ctrl-C stops it all (`LaunchedProcesses.stopAll`). */
async function main(): Promise<void> {
  makeDirectory(logDir);
  const plan = planLaunch();
  const cluster = await startSupercluster({
    regions: plan.regions,
    rootDir: join(stateDir, 'data', 'nats'),
    accountsConfig: accountsConfig(plan.credentials),
    connectOptions: natsAuthOptions(plan.adminOptions),
  });
  const processes = new LaunchedProcesses(cluster, { logDir, say });
  stopOnSignals(processes);
  await provisionRegions(plan, cluster);
  await startEdgeSites(plan, cluster, processes);
  const nextPort = gatewayPorts(settings.launcher.port);
  const gateways = await startRegionNodes(plan, cluster, processes, nextPort);
  gateways.push(...(await startEdgeGateways(plan, processes, nextPort)));
  await startController(plan, cluster, processes);
  writeEdgeFile(plan, cluster, gateways[0]!);
  printSummary(plan, processes, gateways);
}

/** The topology, the demo key and every credential: secrets made once, kept in `.vigil/`. */
function planLaunch(): LaunchPlan {
  const { regions, edges } = topology();
  const demoKey = persistentSecret('demo-key', settings.launcher.demoKey);
  const credentials = generateNatsCredentials({
    outDir: join(stateDir, 'nats-creds'),
    regions: regions.map((r) => r.name),
    edgeSites: edges.map((e) => e.site),
  });
  const adminOptions = natsOptionsFromEnv(
    { ...credentials.natsEnvFor('admin'), NATS_URL: 'nats://127.0.0.1:4222' },
    'launcher',
  );
  return { regions, edges, demoKey, credentials, adminOptions };
}

/** Ctrl-C (or SIGTERM) stops everything once, in order, and exits 0. */
function stopOnSignals(processes: LaunchedProcesses): void {
  const onSignal = (): void => {
    if (processes.stopping) return;
    say('\nStopping Vigil...');
    void processes.stopAll().then(() => {
      say('Vigil stopped.');
      process.exit(0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Runs `run` on an admin connection to `servers`, closed after. */
async function asAdmin(
  plan: LaunchPlan,
  servers: string[],
  run: (nc: NatsConnection) => Promise<void>,
): Promise<void> {
  const nc = await connectNats({ ...plan.adminOptions, servers: servers.join(',') }, logger);
  try {
    await run(nc);
  } finally {
    await nc.close();
  }
}

/** Every region's streams and buckets, replicated up to three ways within the region. */
async function provisionRegions(plan: LaunchPlan, cluster: Supercluster): Promise<void> {
  const models = createBuiltinModels();
  for (const region of plan.regions) {
    await asAdmin(plan, cluster.urlsOf(region.name), (nc) =>
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
}

/** Each edge site's leaf node, and its stream sourced into its hub region. */
async function startEdgeSites(
  plan: LaunchPlan,
  cluster: Supercluster,
  processes: LaunchedProcesses,
): Promise<void> {
  for (const edge of plan.edges) {
    const server = await startEdgeServer({
      site: edge.site,
      hubLeafUrls: cluster.leafUrlsOf(edge.region),
      leafSeedFile: plan.credentials.user(userName(Role.Leaf, edge.site)).seedFile,
      storeDir: join(stateDir, 'data', 'nats', `edge-${edge.site}`, 'store'),
      accountsConfig: accountsConfig(plan.credentials),
    });
    processes.addEdgeServer(edge.site, server);
    await asAdmin(plan, [server.url], async (edgeNc) =>
      asAdmin(plan, cluster.urlsOf(edge.region), async (hubNc) =>
        ensureEdgeSite(
          await jetstreamManager(edgeNc, { domain: edgeDomain(edge.site) }),
          await jetstreamManager(hubNc),
          { site: edge.site, region: edge.region },
        ),
      ),
    );
  }
}

/** Gateways listen on VIGIL_PORT and the ports after it, in start order; 0 gives each a free port. */
function gatewayPorts(firstPort: number): () => string {
  let port = firstPort;
  return () => String(firstPort === 0 ? 0 : port++);
}

/** What every gateway of `home` is told: its port, the demo key, where to spill over. */
function gatewayEnv(plan: LaunchPlan, home: string, port: string): Record<string, string> {
  return {
    VIGIL_GATEWAY_PORT: port,
    VIGIL_API_KEYS: `demo:${plan.demoKey}`,
    VIGIL_SPILL_REGIONS: spillOrder(plan.regions, home),
  };
}

/** One region alone, without edge sites: labels and the summary leave the region's name out. */
function isSingle(plan: LaunchPlan): boolean {
  return plan.regions.length === 1 && plan.edges.length === 0;
}

/**
 * Each region's actor host, then its gateway. Ctrl-C stops them in the reverse order, the gateway
 * first, so no new work reaches a draining host.
 */
async function startRegionNodes(
  plan: LaunchPlan,
  cluster: Supercluster,
  processes: LaunchedProcesses,
  nextPort: () => string,
): Promise<GatewaySummary[]> {
  const gateways: GatewaySummary[] = [];
  for (const region of plan.regions) {
    const servers = cluster.urlsOf(region.name).join(',');
    const base = { NATS_URL: servers, VIGIL_REGION: region.name };
    const label = (node: string) => (isSingle(plan) ? node : `${node}-${region.name}`);
    await processes.launch('actor-host', label('actor-host'), {
      ...base,
      ...plan.credentials.natsEnvFor(`actor-host-${region.name}`),
      VIGIL_RESCUE_REGIONS: spillOrder(plan.regions, region.name),
    });
    const gateway = await processes.launch('gateway', label('gateway'), {
      ...base,
      ...plan.credentials.natsEnvFor('gateway'),
      ...gatewayEnv(plan, region.name, nextPort()),
    });
    gateways.push({ name: region.name, url: String(gateway.ready['url']), nats: servers });
  }
  return gateways;
}

/** A gateway beside each edge site's leaf node, which accepts work while the link is cut. */
async function startEdgeGateways(
  plan: LaunchPlan,
  processes: LaunchedProcesses,
  nextPort: () => string,
): Promise<GatewaySummary[]> {
  const gateways: GatewaySummary[] = [];
  for (const edge of plan.edges) {
    const server = processes.edgeServer(edge.site);
    const gateway = await processes.launch('gateway', `gateway-edge-${edge.site}`, {
      NATS_URL: server.url,
      VIGIL_REGION: edge.region,
      VIGIL_EDGE_SITE: edge.site,
      ...plan.credentials.natsEnvFor(`edge-gateway-${edge.site}`),
      ...gatewayEnv(plan, edge.region, nextPort()),
    });
    gateways.push({
      name: `${edge.site} (edge of ${edge.region})`,
      url: String(gateway.ready['url']),
      nats: server.url,
    });
  }
  return gateways;
}

/** One controller evaluates the alert rules for every region (leader-elected: more could run). */
async function startController(
  plan: LaunchPlan,
  cluster: Supercluster,
  processes: LaunchedProcesses,
): Promise<void> {
  const { regions, credentials } = plan;
  await processes.launch('controller', 'controller', {
    NATS_URL: cluster.urlsOf(regions[0]!.name).join(','),
    VIGIL_REGION: regions[0]!.name,
    VIGIL_CONTROLLER_REGIONS: regions.map((r) => r.name).join(','),
    ...credentials.natsEnvFor('controller'),
    // The system-account user, for each nats-server's storage figures.
    VIGIL_SYS_NATS_NKEY: credentials.user('sys').seedFile,
    VIGIL_SYS_NATS_INBOX_PREFIX: credentials.user('sys').inboxPrefix,
  });
}

/** Where the running edge is, for `npx vigil` (the CLI) and other local tools. */
function writeEdgeFile(plan: LaunchPlan, cluster: Supercluster, first: GatewaySummary): void {
  const { regions, credentials } = plan;
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
}

/** Where everything runs, the demo key, and a request to try. */
function printSummary(
  plan: LaunchPlan,
  processes: LaunchedProcesses,
  gateways: readonly GatewaySummary[],
): void {
  const { regions, demoKey } = plan;
  const first = gateways[0]!;
  say('');
  if (isSingle(plan)) {
    say(`Vigil is running: gateway ${first.url}, NATS ${first.nats}, region ${first.name}`);
  } else {
    say(`Vigil is running: ${regions.length} regions of ${regions[0]!.nodes} NATS server(s) each`);
    for (const g of gateways) say(`  ${g.name.padEnd(24)} gateway ${g.url}   NATS ${g.nats}`);
  }
  say(`Demo API key (tenant "demo"): ${demoKey}`);
  say(`NATS credentials (one least-privilege user per role): ${plan.credentials.outDir}`);
  say(`Processes: ${processes.pids().join(' ')}`);
  const metrics = processes.metricsUrls();
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
