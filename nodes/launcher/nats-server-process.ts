// Starts and controls one real nats-server process: the local launcher's persistent edge, and every
// test that needs a broker. Configuration goes into a real config file beside the store dir rather
// than a long command line, so a failing server can be rerun by hand with `nats-server -c <file>`.

import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';

import { natsServerBin } from '../../scripts/nats-server-provision.mjs';
import { makeDirectory, NATS_MAX_PINGS_OUT, NATS_PING_INTERVAL_MS } from '../common/index.js';

/** Options for {@link startNatsServer}. Ports: 0 or undefined means a random free port. */
export interface NatsServerOptions {
  /** Client port; 0 or undefined = random free port (nats-server `-1`). */
  port?: number;
  /** Interface every listener binds to. Default {@link DEFAULT_NATS_HOST} (loopback). */
  host?: string;
  /** JetStream store dir; created if missing. The config dir is placed beside it. */
  storeDir: string;
  /** `server_name`; needed by clustered JetStream and stable across restarts. Default: random. */
  serverName?: string;
  /**
   * JetStream limits (nats-server size strings such as `256MB`) and domain. Defaults
   * {@link DEFAULT_JS_MAX_MEMORY} and {@link DEFAULT_JS_MAX_FILE}.
   */
  jetstream?: { maxMemory?: string; maxFile?: string; domain?: string };
  /** Route listener (0 = random port) and routes to the other members. */
  cluster?: { name: string; port?: number; routes?: string[] };
  /** Gateway listener (0/undefined = random port) and outbound gateways. */
  gateway?: { name: string; port?: number; gateways?: { name: string; urls: string[] }[] };
  /**
   * Leafnode listener and remotes. `port` 0 = random; undefined = random unless `remotes` are
   * given, in which case the server only solicits and does not listen. The listener has no
   * authorization of its own: a leaf link authenticates as a user of the accounts in
   * `extraConfig`, whose permissions then bound what the link carries.
   */
  leafnodes?: {
    port?: number;
    /**
     * The `host:port` this server tells leaf nodes to dial (its INFO's `leafnode_urls`): a leaf
     * node reconnects to what it learned there, so behind a load balancer (or a test's relay) it
     * must name that, or edge sites go around it.
     */
    advertise?: string;
    /**
     * Links this server dials, each bound to a local account, authenticated with the seed of a
     * user of the remote server (`nkeySeed`, the seed's text) or a credentials file.
     */
    remotes?: { urls: string[]; account?: string; credentials?: string; nkeySeed?: string }[];
  };
  /** Extra nats-server config text appended verbatim (accounts, authorization, tls). */
  extraConfig?: string;
  /** HTTP monitoring port; 0 = random, undefined = off. */
  monitorPort?: number;
  /** Receives the server's stdout and stderr. Default `<storeDir>.nats/nats-server.log`. */
  logFile?: string;
  /** Executable. Default: the provisioned binary (`natsServerBin()`). */
  binPath?: string;
}

/**
 * A running nats-server. The handle is live: after {@link NatsServerProcess.restart} it describes
 * the new process (new `pid` and `exited`), on the same ports and store dir.
 */
export interface NatsServerProcess {
  /** Pid of the current process. */
  readonly pid: number;
  /** Client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Concrete client port. */
  readonly port: number;
  /** Route URL, when a cluster block was given. */
  readonly clusterUrl?: string;
  /** Gateway URL, when a gateway block was given. */
  readonly gatewayUrl?: string;
  /** Leafnode URL, when the server listens for leafnodes. */
  readonly leafUrl?: string;
  /** Monitoring base URL, when monitoring is on. */
  readonly monitorUrl?: string;
  /** The options as given, with every random port replaced by the port actually used. */
  readonly options: NatsServerOptions;
  /** SIGTERM, wait for exit, SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the process if it still runs and starts it again on the same ports and store dir. */
  restart(): Promise<NatsServerProcess>;
  /** Resolves with the exit code (null when killed by a signal) of the current process. */
  readonly exited: Promise<number | null>;
}

/** Loopback: Vigil's local servers are never reachable from outside the machine. */
export const DEFAULT_NATS_HOST = '127.0.0.1';
/** JetStream memory-store limit unless `jetstream.maxMemory` says otherwise. */
export const DEFAULT_JS_MAX_MEMORY = '1GB';
/** JetStream file-store limit unless `jetstream.maxFile` says otherwise. */
export const DEFAULT_JS_MAX_FILE = '10GB';
/** How long a server may take to listen (and report JetStream healthy) before start fails. */
export const NATS_READY_TIMEOUT_MS = 15_000;
/** How long stop() waits after SIGTERM before SIGKILL. */
export const NATS_STOP_GRACE_MS = 10_000;

/** Ports this process has handed out, so two servers it starts never get the same one. */
const handedOut = new Set<number>();

/**
 * The kernel's ephemeral port range (`ip_local_port_range`), from which it picks both the local
 * ports of outgoing connections and the ports of `listen(0)`. Default: Linux's 32768-60999.
 */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low && high && low <= high) return [low, high];
  } catch {
    // not Linux: assume its default
  }
  return [32768, 60999];
}

/** True when `port` can be listened on at `host` right now. */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolveListen) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolveListen(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolveListen(true)));
  });
}

/**
 * Resolves with a TCP port that was free on `host` a moment ago, for the ports nats-server cannot
 * pick itself (gateways, leaf nodes, routes that other servers must know in advance). Taken below
 * the ephemeral range: a port from `listen(0)` is free only until some outgoing connection gets
 * it as its local port, which happened under load (a leaf port taken between the choice and the
 * server's start); outside the range, only another explicit listener could take it.
 */
export async function freePort(host: string = DEFAULT_NATS_HOST): Promise<number> {
  const [ephemeralLow] = ephemeralRange();
  const low = Math.max(1024, Math.min(20_000, ephemeralLow - 4_000));
  const high = ephemeralLow - 1;
  for (let tries = 0; tries < 200 && high > low; tries += 1) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port) || !(await canListen(host, port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port on ${host} below the ephemeral range (${low}-${high})`);
}

/**
 * Starts a nats-server and resolves once it accepts clients and, when monitoring is on, reports
 * JetStream healthy. Rejects after {@link NATS_READY_TIMEOUT_MS} with the tail of its log.
 */
export async function startNatsServer(options: NatsServerOptions): Promise<NatsServerProcess> {
  const host = options.host ?? DEFAULT_NATS_HOST;
  const storeDir = resolve(options.storeDir);
  const confDir = join(dirname(storeDir), `${basename(storeDir)}.nats`);
  // Ports nats-server cannot report in its ports file are chosen up front.
  const gateway = options.gateway && {
    ...options.gateway,
    port: options.gateway.port || (await freePort(host)),
  };
  const leafListens =
    options.leafnodes &&
    (options.leafnodes.port !== undefined || !options.leafnodes.remotes?.length);
  const leafnodes = options.leafnodes && {
    ...options.leafnodes,
    ...(leafListens ? { port: options.leafnodes.port || (await freePort(host)) } : {}),
  };
  const resolved: NatsServerOptions = {
    ...options,
    host,
    storeDir,
    serverName: options.serverName ?? `vigil-${randomBytes(4).toString('hex')}`,
    logFile: resolve(options.logFile ?? join(confDir, 'nats-server.log')),
    binPath: options.binPath ?? natsServerBin(),
    ...(gateway ? { gateway } : {}),
    ...(leafnodes ? { leafnodes } : {}),
  };
  const server = new NatsServer(resolved, confDir);
  await server.launch();
  return server;
}

// ---------------------------------------------------------------------------------------------

/** Children still running, killed if this process exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const killAll = () => {
    for (const child of live) child.kill('SIGKILL');
    live.clear();
  };
  process.on('exit', killAll);
  // 'exit' does not fire when a signal ends the process. If nobody else handles the signal, kill
  // the children and re-raise it so the process still dies of it; a program that handles the
  // signal itself (the launcher's graceful shutdown) stops its servers, and 'exit' catches the rest.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      if (process.listenerCount(sig) > 1) return;
      killAll();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

class NatsServer implements NatsServerProcess {
  #child: ChildProcess | undefined;
  #exited: Promise<number | null> = Promise.resolve(null);
  #running = false;
  #options: NatsServerOptions;
  readonly #confDir: string;
  readonly #portsDir: string;
  readonly #confFile: string;

  constructor(options: NatsServerOptions, confDir: string) {
    this.#options = options;
    this.#confDir = confDir;
    this.#portsDir = join(confDir, 'ports');
    this.#confFile = join(confDir, 'nats-server.conf');
  }

  get pid(): number {
    return this.#child?.pid ?? -1;
  }
  get options(): NatsServerOptions {
    return this.#options;
  }
  get port(): number {
    return this.#options.port ?? 0;
  }
  get url(): string {
    return `nats://${this.#host}:${this.port}`;
  }
  get clusterUrl(): string | undefined {
    const c = this.#options.cluster;
    return c ? `nats://${this.#host}:${c.port}` : undefined;
  }
  get gatewayUrl(): string | undefined {
    const g = this.#options.gateway;
    return g ? `nats://${this.#host}:${g.port}` : undefined;
  }
  get leafUrl(): string | undefined {
    const l = this.#options.leafnodes;
    return l?.port ? `nats://${this.#host}:${l.port}` : undefined;
  }
  get monitorUrl(): string | undefined {
    const m = this.#options.monitorPort;
    return m !== undefined ? `http://${this.#host}:${m}` : undefined;
  }
  get exited(): Promise<number | null> {
    return this.#exited;
  }
  get #host(): string {
    return this.#options.host ?? DEFAULT_NATS_HOST;
  }

  async launch(): Promise<void> {
    const o = this.#options;
    makeDirectory(o.storeDir);
    makeDirectory(this.#portsDir);
    makeDirectory(dirname(o.logFile!));
    // The file can hold a leaf link's seed: readable by this user only, also when it existed.
    writeFileSync(this.#confFile, renderConfig(o, this.#portsDir), { mode: 0o600 });
    chmodSync(this.#confFile, 0o600);

    installExitHooks();
    const logFd = openSync(o.logFile!, 'a');
    let child: ChildProcess;
    try {
      // Its own process group: a terminal's Ctrl-C reaches only the parent, which stops the
      // server last, after the nodes that need it have drained.
      child = spawn(o.binPath!, ['-c', this.#confFile], {
        stdio: ['ignore', logFd, logFd],
        cwd: this.#confDir,
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    this.#child = child;
    this.#running = true;
    live.add(child);
    this.#exited = new Promise<number | null>((resolveExit) => {
      const done = (code: number | null) => {
        live.delete(child);
        if (this.#child === child) this.#running = false;
        this.#removePortsFile(child.pid);
        resolveExit(code);
      };
      child.once('exit', (code) => done(code));
      child.once('error', () => done(null));
    });

    try {
      const ports = await this.#waitReady(child);
      // Pin every random port to the one the server took, so restart() comes back on the same ones.
      this.#options = {
        ...o,
        port: ports.nats,
        ...(o.cluster ? { cluster: { ...o.cluster, port: ports.cluster ?? o.cluster.port } } : {}),
        ...(o.monitorPort !== undefined ? { monitorPort: ports.monitoring ?? o.monitorPort } : {}),
      };
    } catch (err) {
      await this.kill('SIGKILL');
      throw err;
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || !this.#running) return this.#exited.then(() => undefined);
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), NATS_STOP_GRACE_MS);
    try {
      await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.#child && this.#running) this.#child.kill(signal);
    await this.#exited;
  }

  async restart(): Promise<NatsServerProcess> {
    await this.stop();
    await this.launch();
    return this;
  }

  /** Waits for the ports file, a TCP accept on the client port and, if monitored, JS health. */
  async #waitReady(child: ChildProcess): Promise<Ports> {
    const deadline = Date.now() + NATS_READY_TIMEOUT_MS;
    let exitCode: number | null | undefined;
    void this.#exited.then((code) => (exitCode = code));
    let ports: Ports | undefined;
    let last = 'no ports file yet';
    while (Date.now() < deadline) {
      if (exitCode !== undefined) {
        throw this.#startError(`nats-server exited (code ${exitCode}) during start-up`);
      }
      ports ??= this.#readPortsFile(child.pid);
      if (ports) {
        const url = ports.monitoring;
        if (!(await canConnect(this.#host, ports.nats))) {
          last = `client port ${ports.nats} does not accept connections`;
        } else if (url !== undefined && !(await jetStreamHealthy(this.#host, url))) {
          last = 'JetStream not healthy yet (/healthz?js-enabled-only=true)';
        } else {
          return ports;
        }
      }
      await sleep(50);
    }
    throw this.#startError(
      `nats-server did not become ready within ${NATS_READY_TIMEOUT_MS / 1000} s (${last})`,
    );
  }

  #readPortsFile(pid: number | undefined): Ports | undefined {
    if (pid === undefined) return undefined;
    const name = readdirSync(this.#portsDir).find((f) => f.endsWith(`_${pid}.ports`));
    if (!name) return undefined;
    try {
      const raw = JSON.parse(readFileSync(join(this.#portsDir, name), 'utf8')) as RawPorts;
      const nats = portOf(raw.nats);
      if (nats === undefined) return undefined;
      return { nats, cluster: portOf(raw.cluster), monitoring: portOf(raw.monitoring) };
    } catch {
      return undefined; // written but not complete yet
    }
  }

  #removePortsFile(pid: number | undefined): void {
    // nats-server removes it on a clean shutdown; SIGKILL leaves it behind.
    if (pid === undefined) return;
    try {
      for (const f of readdirSync(this.#portsDir)) {
        if (f.endsWith(`_${pid}.ports`)) rmSync(join(this.#portsDir, f), { force: true });
      }
    } catch {
      // the directory went away with its parent; nothing to clean
    }
  }

  #startError(message: string): Error {
    return new Error(
      `${message}; config ${this.#confFile}; log tail:\n${logTail(this.#options.logFile!)}`,
    );
  }
}

interface RawPorts {
  nats?: string[];
  cluster?: string[];
  monitoring?: string[];
}

interface Ports {
  nats: number;
  cluster: number | undefined;
  monitoring: number | undefined;
}

function portOf(urls: string[] | undefined): number | undefined {
  const first = urls?.[0];
  if (!first) return undefined;
  const port = Number(new URL(first).port);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

/** nats-server config text. Random ports are `-1`, which nats-server resolves and reports. */
function renderConfig(o: NatsServerOptions, portsDir: string): string {
  const host = o.host ?? DEFAULT_NATS_HOST;
  const q = (s: string) => JSON.stringify(s);
  const hp = (port: number | undefined) => q(`${host}:${port || -1}`);
  const list = (xs: string[]) => `[${xs.map(q).join(', ')}]`;
  const js = o.jetstream ?? {};
  const lines = [
    '# Written by nodes/launcher/nats-server-process.ts; regenerated on every start.',
    `server_name: ${q(o.serverName!)}`,
    `listen: ${hp(o.port)}`,
    `ports_file_dir: ${q(portsDir)}`,
    // Keep-alive on every client link, as the nodes ping the server (nodes/common): a client on
    // a half-open link is dropped within a minute, and quiet links carry traffic.
    `ping_interval: "${NATS_PING_INTERVAL_MS / 1000}s"`,
    `ping_max: ${NATS_MAX_PINGS_OUT}`,
    'jetstream {',
    `  store_dir: ${q(o.storeDir)}`,
    `  max_mem: ${sizeBytes(js.maxMemory ?? DEFAULT_JS_MAX_MEMORY, 'jetstream.maxMemory')}`,
    `  max_file: ${sizeBytes(js.maxFile ?? DEFAULT_JS_MAX_FILE, 'jetstream.maxFile')}`,
    ...(js.domain ? [`  domain: ${q(js.domain)}`] : []),
    '}',
  ];
  if (o.monitorPort !== undefined) lines.push(`http: ${hp(o.monitorPort)}`);
  if (o.cluster) {
    lines.push(
      'cluster {',
      `  name: ${q(o.cluster.name)}`,
      `  listen: ${hp(o.cluster.port)}`,
      ...(o.cluster.routes?.length ? [`  routes: ${list(o.cluster.routes)}`] : []),
      '}',
    );
  }
  if (o.gateway) {
    lines.push(
      'gateway {',
      `  name: ${q(o.gateway.name)}`,
      `  listen: ${hp(o.gateway.port)}`,
      ...(o.gateway.gateways?.length
        ? [
            '  gateways: [',
            ...o.gateway.gateways.map((g) => `    { name: ${q(g.name)}, urls: ${list(g.urls)} }`),
            '  ]',
          ]
        : []),
      '}',
    );
  }
  if (o.leafnodes) {
    const l = o.leafnodes;
    lines.push('leafnodes {');
    if (l.port !== undefined) lines.push(`  listen: ${hp(l.port)}`);
    if (l.advertise) lines.push(`  advertise: ${q(l.advertise)}`);
    if (l.remotes?.length) {
      lines.push('  remotes: [');
      for (const r of l.remotes) {
        const fields = [`urls: ${list(r.urls)}`];
        if (r.account) fields.push(`account: ${q(r.account)}`);
        if (r.credentials) fields.push(`credentials: ${q(r.credentials)}`);
        if (r.nkeySeed) fields.push(`nkey: ${q(r.nkeySeed)}`);
        lines.push(`    { ${fields.join(', ')} }`);
      }
      lines.push('  ]');
    }
    lines.push('}');
  }
  if (o.extraConfig) lines.push(o.extraConfig);
  return `${lines.join('\n')}\n`;
}

/**
 * `256MB`, `1G`, `512KiB` or plain bytes, as bytes. nats-server reads quoted sizes only with a
 * one-letter suffix, so the config gets a plain integer instead.
 */
function sizeBytes(size: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?\s*$/i.exec(size);
  if (!m)
    throw new Error(`${what}: cannot read size ${JSON.stringify(size)} (use e.g. 256MB or 10GB)`);
  const exponents: Record<string, number> = { K: 1, M: 2, G: 3, T: 4 };
  const unit = exponents[(m[2] ?? '').toUpperCase()] ?? 0;
  return Math.round(Number(m[1]) * 1024 ** unit);
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolveOk) => {
    const sock = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolveOk(ok);
    };
    sock.setTimeout(1_000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

async function jetStreamHealthy(host: string, port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://${host}:${port}/healthz?js-enabled-only=true`, {
      signal: AbortSignal.timeout(1_000),
    });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

function logTail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
