/**
 * The drill's own edge: a supercluster of regions in a temp dir, provisioned, with one gateway
 * and one actor host per region as child processes, every one as its own least-privilege NATS
 * user: the launcher's building blocks (nodes/launcher/), so a drill exercises what `npm start`
 * runs. Nodes are supervised like the launcher does it: one that exits is started again after a
 * second, unless its region is down on purpose. Every pid ever started is remembered, so the
 * report can name them and a caller can check that none is left.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../../actors/index.js';
import { readNkeySeed } from '../common/index.js';
import {
  accountsConfig,
  generateNatsCredentials,
  startNode,
  type NodeName,
  type NodeProcess,
  startSupercluster,
  type RegionSpec,
  type Supercluster,
} from '../launcher/index.js';
import { provisionRegion } from '../provision/index.js';
import type { NatsServerProcess } from '../launcher/index.js';

/** The tenant the drill's load runs as. */
export const DRILL_TENANT = 'drill';
/** Pause before a supervised node that exited is started again (the launcher's). */
const RESTART_DELAY_MS = 1_000;
/** Start-up attempts of a supervised node before the supervisor gives up on it. */
const MAX_START_ATTEMPTS = 20;

/** Options of {@link startDrillTopology}. */
export interface DrillTopologyOptions {
  regions: readonly RegionSpec[];
  /** Extra environment of every actor host. */
  actorEnv?: Record<string, string>;
  /** Where node logs go (one file per node). */
  logDir: string;
}

/** A supervised node: the process behind it changes when it is restarted. */
export interface SupervisedNode {
  readonly label: string;
  readonly region: string;
  /** The current process; undefined while it is being started again. */
  readonly current: NodeProcess | undefined;
  /** Resolves once a process started after `since` (ms epoch) is ready. */
  readyAfter(since: number): Promise<{ pid: number; readyAt: number }>;
}

/** One restart done by the supervisor. */
export interface RestartRecord {
  label: string;
  oldPid: number;
  exitedAt: number;
  newPid: number;
  readyAt: number;
}

/** A running drill topology. */
export interface DrillTopology {
  readonly supercluster: Supercluster;
  readonly apiKey: string;
  readonly gateways: ReadonlyMap<string, SupervisedNode>;
  readonly actorHosts: ReadonlyMap<string, SupervisedNode>;
  readonly restarts: readonly RestartRecord[];
  /** The gateway's URL in `region` (a restarted gateway keeps its port). */
  gatewayUrl(region: string): string;
  /** An admin connection to a region's servers (closed by `stop`). */
  admin(region: string): Promise<NatsConnection>;
  /** Stops supervising a region's nodes (its fault is under way) or resumes it. */
  setRegionDown(region: string, down: boolean): void;
  /** Every pid started so far: NATS servers (restarts included) and nodes. */
  pids(): { role: string; pid: number }[];
  /** Adds a pid the drill learned of (a model executor) to {@link pids}. */
  notePid(role: string, pid: number): void;
  /** Stops every process by PID and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the supercluster, provisions every region, and starts its gateway and actor host. */
export async function startDrillTopology(options: DrillTopologyOptions): Promise<DrillTopology> {
  const root = mkdtempSync(join(tmpdir(), 'vigil-drill-'));
  const regionNames = options.regions.map((r) => r.name);
  const credentials = generateNatsCredentials({
    outDir: join(root, 'creds'),
    regions: regionNames,
  });
  const adminConnect = {
    authenticator: nkeyAuthenticator(
      readNkeySeed(credentials.user('admin').seedFile, 'admin seed'),
    ),
    inboxPrefix: credentials.user('admin').inboxPrefix,
  };
  const apiKey = randomBytes(24).toString('base64url');
  const pidLog: { role: string; pid: number }[] = [];
  const connections: NatsConnection[] = [];
  const nodes: { node: SupervisedNodeImpl; stop(): Promise<void> }[] = [];
  const downRegions = new Set<string>();
  /** Node starts under way (a supervised restart), so `stop` can wait for them. */
  const launching = new Set<Promise<NodeProcess>>();
  const restarts: RestartRecord[] = [];
  let stopping = false;
  let supercluster: Supercluster | undefined;
  const gateways = new Map<string, SupervisedNode>();
  const actorHosts = new Map<string, SupervisedNode>();
  const gatewayPorts = new Map<string, string>();

  const notePid = (role: string, pid: number) => {
    if (!pidLog.some((p) => p.pid === pid)) pidLog.push({ role, pid });
  };
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      stopping = true;
      await Promise.allSettled(nodes.map((n) => n.stop()));
      await Promise.allSettled([...launching].map((l) => l.then((child) => child.stop(10_000))));
      await Promise.allSettled(connections.map((nc) => nc.close()));
      await supercluster?.stop();
      rmSync(root, { recursive: true, force: true });
    })();
    return stopped;
  };

  /** Starts a node and keeps it running until the drill stops (or its region is down). */
  const supervise = async (
    kind: NodeName,
    region: string,
    env: () => Record<string, string>,
  ): Promise<SupervisedNode> => {
    const label = `${kind}-${region}`;
    const node = new SupervisedNodeImpl(label, region);
    let current: NodeProcess | undefined;
    const launch = async (): Promise<NodeProcess> => {
      const starting = startNode(kind, {
        env: env(),
        logFile: join(options.logDir, `${label}.log`),
      });
      launching.add(starting);
      const child = await starting.finally(() => launching.delete(starting));
      notePid(label, child.pid);
      // A restart that finished while the drill was stopping must not outlive it.
      if (stopping) {
        await child.stop(10_000);
        throw new Error(`${label} started while the drill was stopping`);
      }
      current = child;
      node.started(child);
      void child.exited.then(async () => {
        if (stopping) return;
        const exitedAt = Date.now();
        node.exited();
        // A region under a fault stays down until the drill restores it (setRegionDown).
        for (let attempt = 1; attempt <= MAX_START_ATTEMPTS && !stopping; attempt++) {
          await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
          if (stopping) return;
          if (downRegions.has(region)) {
            attempt--;
            continue;
          }
          try {
            const next = await launch();
            restarts.push({
              label,
              oldPid: child.pid,
              exitedAt,
              newPid: next.pid,
              readyAt: Date.now(),
            });
            return;
          } catch {
            // its NATS servers may still be coming back; the next attempt follows
          }
        }
      });
      return child;
    };
    await launch();
    nodes.push({ node, stop: async () => void (await current?.stop(10_000)) });
    return node;
  };

  try {
    supercluster = await startSupercluster({
      regions: options.regions,
      rootDir: join(root, 'nats'),
      accountsConfig: accountsConfig(credentials),
      connectOptions: adminConnect,
    });
    const sc = supercluster;
    for (const s of sc.servers) notePid(`nats-${s.options.serverName}`, s.pid);
    const models = createBuiltinModels();
    const admin = async (region: string) => {
      const nc = await connect({
        ...adminConnect,
        servers: sc.urlsOf(region),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      connections.push(nc);
      return nc;
    };
    for (const region of options.regions) {
      await provisionRegion(
        await admin(region.name),
        {
          region: region.name,
          replicas: Math.min(3, region.nodes),
          ...(sc.clustered ? { placementCluster: region.name } : {}),
        },
        models,
      );
    }
    const nodeEnv = (user: string, region: string) => ({
      NATS_URL: sc.urlsOf(region).join(','),
      VIGIL_REGION: region,
      VIGIL_LOG_LEVEL: 'warn',
      ...credentials.natsEnvFor(user),
    });
    for (const region of regionNames) {
      actorHosts.set(
        region,
        await supervise('actor-host', region, () => ({
          ...nodeEnv(`actor-host-${region}`, region),
          ...options.actorEnv,
        })),
      );
      const gateway = await supervise('gateway', region, () => ({
        ...nodeEnv('gateway', region),
        // A restarted gateway takes the port its first process was given, so clients keep it.
        VIGIL_GATEWAY_PORT: gatewayPorts.get(region) ?? '0',
        VIGIL_API_KEYS: `${DRILL_TENANT}:${apiKey}`,
        VIGIL_SPILL_REGIONS: regionNames.filter((r) => r !== region).join(','),
      }));
      gatewayPorts.set(region, new URL(String(gateway.current!.ready['url'])).port);
      gateways.set(region, gateway);
    }
    return {
      supercluster: sc,
      apiKey,
      gateways,
      actorHosts,
      restarts,
      gatewayUrl: (region) => `http://127.0.0.1:${gatewayPorts.get(region)}`,
      admin,
      setRegionDown(region, down) {
        if (down) downRegions.add(region);
        else downRegions.delete(region);
      },
      pids() {
        for (const s of sc.servers) notePid(`nats-${s.options.serverName}`, s.pid);
        return [...pidLog];
      },
      notePid,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Tracks the process behind a supervised node and who waits for its next start. */
class SupervisedNodeImpl implements SupervisedNode {
  current: NodeProcess | undefined;
  #starts: { pid: number; readyAt: number }[] = [];
  #waiters: (() => void)[] = [];

  constructor(
    readonly label: string,
    readonly region: string,
  ) {}

  started(child: NodeProcess): void {
    this.current = child;
    this.#starts.push({ pid: child.pid, readyAt: Date.now() });
    for (const wake of this.#waiters.splice(0)) wake();
  }

  exited(): void {
    this.current = undefined;
  }

  async readyAfter(since: number): Promise<{ pid: number; readyAt: number }> {
    for (;;) {
      const start = this.#starts.find((s) => s.readyAt >= since);
      if (start) return start;
      await new Promise<void>((wake) => this.#waiters.push(wake));
    }
  }
}

/** The servers of a region, for faults that kill them. */
export function regionServers(
  topology: DrillTopology,
  region: string,
): readonly NatsServerProcess[] {
  return topology.supercluster.regions.get(region) ?? [];
}
