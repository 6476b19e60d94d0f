/**
 * What `npm start` has started, in start order: the supercluster, the edge sites' leaf nodes and
 * the nodes. It keeps the nodes up (one that dies is started again) and stops everything in the
 * reverse of that order: each region's gateway before its actor host, so no new work arrives
 * while the host drains, and every node before the nats-servers it drains through.
 */
import { join } from 'node:path';
import type { LogLevel } from '../common/index.js';
import type { NatsServerProcess } from './nats-server-process.js';
import { startNode, type NodeName, type NodeProcess } from './node-process.js';
import type { Supercluster } from './supercluster.js';

/** Pause before a node that exited is started again. */
const RESTART_DELAY_MS = 1000;
/** The nodes' log level, whatever `VIGIL_LOG_LEVEL` says in the launcher's environment. */
const NODE_LOG_LEVEL: LogLevel = 'info';

/** The processes of one `npm start`. */
export class LaunchedProcesses {
  readonly #cluster: Supercluster;
  readonly #logDir: string;
  readonly #say: (text: string) => void;
  readonly #edgeServers = new Map<string, NatsServerProcess>();
  /** Running nodes, in start order (a restarted node moves to the end). */
  readonly #children: NodeProcess[] = [];
  #stopping = false;

  constructor(cluster: Supercluster, options: { logDir: string; say: (text: string) => void }) {
    this.#cluster = cluster;
    this.#logDir = options.logDir;
    this.#say = options.say;
  }

  /** True once {@link stopAll} began: nothing is started again. */
  get stopping(): boolean {
    return this.#stopping;
  }

  addEdgeServer(site: string, server: NatsServerProcess): void {
    this.#edgeServers.set(site, server);
  }

  edgeServer(site: string): NatsServerProcess {
    return this.#edgeServers.get(site)!;
  }

  /** Starts a node (its log in `<label>.log`) and starts it again whenever it exits. */
  async launch(node: NodeName, label: string, env: Record<string, string>): Promise<NodeProcess> {
    const child = await startNode(node, {
      // Every node serves Prometheus `/metrics` on a free loopback port (the summary lists them).
      env: { VIGIL_LOG_LEVEL: NODE_LOG_LEVEL, VIGIL_METRICS_PORT: '0', ...env },
      logFile: join(this.#logDir, `${label}.log`),
      onLog: (line) => this.#echoWarning(label, line),
    });
    this.#children.push(child);
    void child.exited.then((code) => this.#restart(child, code, { node, label, env }));
    return child;
  }

  /** Nodes newest first, then the leaf nodes, then the supercluster. */
  async stopAll(): Promise<void> {
    this.#stopping = true;
    for (const child of [...this.#children].reverse()) await child.stop();
    await Promise.all([...this.#edgeServers.values()].map((s) => s.stop()));
    await this.#cluster.stop();
  }

  /** `role=pid` of every process, servers first, for the summary. */
  pids(): string[] {
    return [
      ...this.#cluster.servers.map((s) => `nats-server=${s.pid}`),
      ...[...this.#edgeServers.values()].map((s) => `nats-leaf=${s.pid}`),
      ...this.#children.map((c) => `${c.name}=${c.pid}`),
    ];
  }

  /** `node=url` of every node's Prometheus endpoint. */
  metricsUrls(): string[] {
    return this.#children.flatMap((c) =>
      typeof c.ready['metricsUrl'] === 'string' ? [`${c.name}=${c.ready['metricsUrl']}`] : [],
    );
  }

  /** Keeps the edge up; supervision proper (backoff, escalation) lives in the actor host. */
  async #restart(
    child: NodeProcess,
    code: number | string,
    again: { node: NodeName; label: string; env: Record<string, string> },
  ): Promise<void> {
    if (this.#stopping) return;
    this.#say(`[launcher] ${again.label} exited (${code}); restarting it`);
    this.#children.splice(this.#children.indexOf(child), 1);
    await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
    if (!this.#stopping)
      await this.launch(again.node, again.label, again.env).catch((err: unknown) =>
        this.#say(`[launcher] ${String(err)}`),
      );
  }

  /** The terminal shows a node's warnings and errors; the rest stays in its log file. */
  #echoWarning(label: string, line: Record<string, unknown>): void {
    if (line['level'] === 'warn' || line['level'] === 'error')
      this.#say(`[${label}] ${line['level']}: ${String(line['msg'])}`);
  }
}
