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
import {
  connect,
  nkeyAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
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
  type NatsCredentials,
} from '../launcher/index.js';
import { provisionRegion } from '../provision/index.js';
import type { NatsServerProcess } from '../launcher/index.js';

/** The tenant the drill's load runs as. */
export const DRILL_TENANT = 'drill';
/** Pause before a supervised node that exited is started again (the launcher's). */
const RESTART_DELAY_MS = 1_000;
/** Start-up attempts of a supervised node before the supervisor gives up on it. */
const MAX_START_ATTEMPTS = 20;
/** Grace a node gets to stop when the drill ends, ms, before it is killed. */
const NODE_STOP_GRACE_MS = 10_000;

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
  /**
   * An admin connection to a region's servers, or to the `servers` given (client URLs), closed
   * by `stop`.
   */
  admin(region: string, servers?: readonly string[]): Promise<NatsConnection>;
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
  const topology = new DrillTopologyImpl(options);
  try {
    await topology.start();
    return topology;
  } catch (err) {
    await topology.stop();
    throw err;
  }
}

/** The topology's processes and connections, and the supervisor that keeps its nodes up. */
class DrillTopologyImpl implements DrillTopology {
  readonly apiKey = randomBytes(24).toString('base64url');
  readonly gateways = new Map<string, SupervisedNode>();
  readonly actorHosts = new Map<string, SupervisedNode>();
  readonly restarts: RestartRecord[] = [];
  readonly #options: DrillTopologyOptions;
  /** The temp dir: credentials, NATS stores. */
  readonly #root: string;
  readonly #credentials: NatsCredentials;
  readonly #adminConnect: Pick<ConnectionOptions, 'authenticator' | 'inboxPrefix'>;
  readonly #pidLog: { role: string; pid: number }[] = [];
  readonly #connections: NatsConnection[] = [];
  readonly #nodes: SupervisedNodeImpl[] = [];
  readonly #downRegions = new Set<string>();
  /** Node starts under way (a supervised restart), so `stop` can wait for them. */
  readonly #launching = new Set<Promise<NodeProcess>>();
  readonly #gatewayPorts = new Map<string, string>();
  #supercluster: Supercluster | undefined;
  #stopping = false;
  #stopped: Promise<void> | undefined;

  constructor(options: DrillTopologyOptions) {
    this.#options = options;
    this.#root = mkdtempSync(join(tmpdir(), 'vigil-drill-'));
    this.#credentials = generateNatsCredentials({
      outDir: join(this.#root, 'creds'),
      regions: options.regions.map((r) => r.name),
    });
    const admin = this.#credentials.user('admin');
    this.#adminConnect = {
      authenticator: nkeyAuthenticator(readNkeySeed(admin.seedFile, 'admin seed')),
      inboxPrefix: admin.inboxPrefix,
    };
  }

  get supercluster(): Supercluster {
    // Set by a successful start, the only way a caller gets hold of a topology.
    return this.#supercluster!;
  }

  /** The supercluster, every region's streams and buckets, then every region's nodes. */
  async start(): Promise<void> {
    this.#supercluster = await startSupercluster({
      regions: this.#options.regions,
      rootDir: join(this.#root, 'nats'),
      accountsConfig: accountsConfig(this.#credentials),
      connectOptions: this.#adminConnect,
    });
    this.#noteServerPids();
    const models = createBuiltinModels();
    for (const region of this.#options.regions) {
      await provisionRegion(
        await this.admin(region.name),
        {
          region: region.name,
          replicas: Math.min(3, region.nodes),
          ...(this.supercluster.clustered ? { placementCluster: region.name } : {}),
        },
        models,
      );
    }
    for (const region of this.#options.regions) await this.#startRegionNodes(region.name);
  }

  gatewayUrl(region: string): string {
    return `http://127.0.0.1:${this.#gatewayPorts.get(region)}`;
  }

  async admin(region: string, servers?: readonly string[]): Promise<NatsConnection> {
    const nc = await connect({
      ...this.#adminConnect,
      servers: servers ? [...servers] : this.supercluster.urlsOf(region),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    this.#connections.push(nc);
    return nc;
  }

  setRegionDown(region: string, down: boolean): void {
    if (down) this.#downRegions.add(region);
    else this.#downRegions.delete(region);
  }

  pids(): { role: string; pid: number }[] {
    this.#noteServerPids();
    return [...this.#pidLog];
  }

  notePid(role: string, pid: number): void {
    if (!this.#pidLog.some((p) => p.pid === pid)) this.#pidLog.push({ role, pid });
  }

  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      await Promise.allSettled(this.#nodes.map(async (n) => n.current?.stop(NODE_STOP_GRACE_MS)));
      await Promise.allSettled(
        [...this.#launching].map((l) => l.then((child) => child.stop(NODE_STOP_GRACE_MS))),
      );
      await Promise.allSettled(this.#connections.map((nc) => nc.close()));
      await this.#supercluster?.stop();
      rmSync(this.#root, { recursive: true, force: true });
    })();
    return this.#stopped;
  }

  /** Servers restarted by a fault are new processes: their pids join the log too. */
  #noteServerPids(): void {
    for (const s of this.#supercluster?.servers ?? [])
      this.notePid(`nats-${s.options.serverName}`, s.pid);
  }

  /** The region's actor host, then its gateway, each as the region's least-privilege user. */
  async #startRegionNodes(region: string): Promise<void> {
    const regionNames = this.#options.regions.map((r) => r.name);
    const host = await this.#supervise('actor-host', region, () => ({
      ...this.#nodeEnv(`actor-host-${region}`, region),
      ...this.#options.actorEnv,
    }));
    this.actorHosts.set(region, host);
    const gateway = await this.#supervise('gateway', region, () => ({
      ...this.#nodeEnv('gateway', region),
      // A restarted gateway takes the port its first process was given, so clients keep it.
      VIGIL_GATEWAY_PORT: this.#gatewayPorts.get(region) ?? '0',
      VIGIL_API_KEYS: `${DRILL_TENANT}:${this.apiKey}`,
      VIGIL_SPILL_REGIONS: regionNames.filter((r) => r !== region).join(','),
    }));
    this.#gatewayPorts.set(region, new URL(String(gateway.current!.ready['url'])).port);
    this.gateways.set(region, gateway);
  }

  #nodeEnv(user: string, region: string): Record<string, string> {
    return {
      NATS_URL: this.supercluster.urlsOf(region).join(','),
      VIGIL_REGION: region,
      VIGIL_LOG_LEVEL: 'warn',
      ...this.#credentials.natsEnvFor(user),
    };
  }

  /** Starts a node and keeps it running until the drill stops (or its region is down). */
  async #supervise(
    kind: NodeName,
    region: string,
    env: () => Record<string, string>,
  ): Promise<SupervisedNode> {
    const node = new SupervisedNodeImpl(kind, region, env);
    await this.#launch(node);
    this.#nodes.push(node);
    return node;
  }

  /** Starts the node's next process; once that exits, `#restartAfterExit` takes over. */
  async #launch(node: SupervisedNodeImpl): Promise<NodeProcess> {
    const starting = startNode(node.kind, {
      env: node.env(),
      logFile: join(this.#options.logDir, `${node.label}.log`),
    });
    this.#launching.add(starting);
    const child = await starting.finally(() => this.#launching.delete(starting));
    this.notePid(node.label, child.pid);
    // A restart that finished while the drill was stopping must not outlive it.
    if (this.#stopping) {
      await child.stop(NODE_STOP_GRACE_MS);
      throw new Error(`${node.label} started while the drill was stopping`);
    }
    node.started(child);
    void child.exited.then(() => this.#restartAfterExit(node, child));
    return child;
  }

  /** Starts the node again after a pause, up to a bound, and records how long that took. */
  async #restartAfterExit(node: SupervisedNodeImpl, exited: NodeProcess): Promise<void> {
    if (this.#stopping) return;
    const exitedAt = Date.now();
    node.exited();
    // A region under a fault stays down until the drill restores it (setRegionDown).
    for (let attempt = 1; attempt <= MAX_START_ATTEMPTS && !this.#stopping; attempt++) {
      await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
      if (this.#stopping) return;
      if (this.#downRegions.has(node.region)) {
        attempt--;
        continue;
      }
      try {
        const next = await this.#launch(node);
        this.restarts.push({
          label: node.label,
          oldPid: exited.pid,
          exitedAt,
          newPid: next.pid,
          readyAt: Date.now(),
        });
        return;
      } catch {
        // its NATS servers may still be coming back; the next attempt follows
      }
    }
  }
}

/** Tracks the process behind a supervised node and who waits for its next start. */
class SupervisedNodeImpl implements SupervisedNode {
  readonly label: string;
  current: NodeProcess | undefined;
  #starts: { pid: number; readyAt: number }[] = [];
  #waiters: (() => void)[] = [];

  constructor(
    readonly kind: NodeName,
    readonly region: string,
    /** Read at every start: a restarted gateway's port is known only after the first. */
    readonly env: () => Record<string, string>,
  ) {
    this.label = `${kind}-${region}`;
  }

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
