/**
 * `npm run bench`: Vigil's request path against two baselines, over real HTTP, on this machine.
 *
 * - **ceiling**: the same route answered in-process by Hono, no broker. Nothing can beat it.
 * - **floor**: the least a durable NATS gateway can do (JetStream publish, bare pull worker, core
 *   NATS reply). Vigil pays this transport cost too; what it adds on top is its own.
 * - **vigil**: the real gateway and actor host as child processes, on provisioned assets.
 *
 * Each system runs alone (never two at once: the figures are CPU-bound) against one nats-server,
 * at 1 and at 64 requests in flight, each cell a warm-up and then a fixed measured time, driven by
 * a separate load-generator process. Prints a table, Vigil's throughput as a fraction of the
 * floor's, and the machine; writes everything to `bench/results/latest.json`.
 *
 * `BENCH_SYSTEMS=floor,floor-kv,vigil` adds **floor-kv** (the floor plus Vigil's storage design:
 * dedup window and a stored outcome per task), which splits Vigil's gap to the floor into what the
 * design costs and what the implementation costs.
 *
 * `BENCH_SYSTEMS=vigil-otel-off,vigil,vigil-otel` measures telemetry's cost: **vigil-otel-off** runs
 * with `VIGIL_TELEMETRY=off` (no SDK at all), **vigil** as deployed without an OTLP endpoint (SDK
 * and runtime metrics, nothing exported), **vigil-otel** exporting every trace (always-on
 * sampling) and metrics every 5 s over OTLP/HTTP to a sink the bench runs (`otlp-sink.ts`), with a
 * Prometheus endpoint open; req/s are printed side by side.
 *
 * Then the **streaming** cells (`streaming.ts`): OpenAI chat streams of `ngram-chat` through the
 * gateway against the same model called in-process (time to first token, tokens per second, at
 * the same concurrencies), and the gateway's memory holding `BENCH_STREAMS_HELD` (1,000) open
 * streams. `BENCH_STREAMING=0` leaves them out.
 *
 * Env: `BENCH_SECONDS` (measured seconds per cell, default 10), `BENCH_QUICK=1` (3 s per cell),
 * `BENCH_WARMUP_SECONDS` (default 2), `BENCH_SYSTEMS` (comma-separated, default
 * `ceiling,floor,vigil`; they always run in that order, `floor-kv` after `floor`),
 * `BENCH_IN_FLIGHT` (comma-separated concurrencies, default `1,64`),
 * `BENCH_CPU_PROF=1` (every Node process under test writes a V8 CPU profile to
 * `bench/results/profiles/`; summarise one with `bench/cpu-profile-top.ts`).
 *
 * Exits 1 when a system fails to start or any cell has more than 1% errors.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createBuiltinModels } from '../actors/index.js';
import { startNatsServer, type NatsServerProcess, startNode } from '../nodes/launcher/index.js';
import { provisionRegion } from '../nodes/provision/index.js';
import { natsServerBin } from '../scripts/nats-server-provision.mjs';
import { provisionFloor } from './baselines/floor-assets.js';
import { startOtlpSink, type OtlpSink } from './otlp-sink.js';
import { runGenerator, startScript } from './child-process.js';
import {
  loadSummarySchema,
  MEASURING_LINE,
  type LoadOptions,
  type LoadSummary,
} from './load-protocol.js';
import { describeMachine, type MachineInfo } from './machine.js';
import { startProcessSampler, type ProcessSampler } from './process-sampler.js';
import { renderStreaming, runStreamingBench, type StreamingResults } from './streaming.js';
import { fmt, layout } from './table.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = join(BENCH_DIR, 'results');
const LOG_DIR = join(RESULTS_DIR, 'logs');
const PROFILE_DIR = join(RESULTS_DIR, 'profiles');

/** Requests in flight per cell: one (latency, no queueing) and 64 (throughput under load). */
const DEFAULT_CONCURRENCIES: readonly number[] = [1, 64];
/** The concurrency the floor-ratio target applies to. */
const TARGET_CONCURRENCY = 64;
/** Measured seconds per cell unless `BENCH_SECONDS` or `BENCH_QUICK` says otherwise. */
const DEFAULT_CELL_SECONDS = 10;
/** Measured seconds per cell with `BENCH_QUICK=1`. */
const QUICK_CELL_SECONDS = 3;
/** Warm-up before each cell (JIT, pools, JetStream caches), seconds. */
const DEFAULT_WARMUP_SECONDS = 2;
/** A cell with a larger fraction of errors fails the run. */
const MAX_ERROR_RATE = 0.01;
/** Vigil's throughput at 64 in flight should be at least this fraction of the floor's. */
const TARGET_FLOOR_RATIO = 0.75;
/** Other processes using more than this much CPU (% of one core) during a cell make it suspect. */
const NOISY_OTHER_CPU_PERCENT = 20;
/** A request slower than this counts as an error, ms (the gateway's longest sync wait). */
const REQUEST_TIMEOUT_MS = 30_000;

const REGION = 'bench';
const INFER_PATH = '/v1/models/echo/infer';
const INPUT = { text: 'hello' } as const;
const REQUEST_BODY = JSON.stringify({ input: INPUT });

/** The names of the systems, in the order they run. */
const SYSTEM_NAMES = [
  'ceiling',
  'floor',
  'floor-kv',
  'vigil-otel-off',
  'vigil',
  'vigil-otel',
] as const;
type SystemName = (typeof SYSTEM_NAMES)[number];
/** What runs unless `BENCH_SYSTEMS` says otherwise; `floor-kv` is for taking the gap apart. */
const DEFAULT_SYSTEMS: readonly SystemName[] = ['ceiling', 'floor', 'floor-kv', 'vigil'];

/** The bench's settings, read once from the environment. */
interface BenchConfig {
  seconds: number;
  warmupSeconds: number;
  systems: readonly SystemName[];
  /** Requests in flight, one cell each. */
  concurrencies: readonly number[];
  cpuProfile: boolean;
  /** Run the streaming cells. */
  streaming: boolean;
  /** Streams the gateway holds open in the memory cell. */
  streamsHeld: number;
}

/** What a started system offers the cells. */
interface RunningSystem {
  /** Full URL of the infer endpoint. */
  url: string;
  headers: Record<string, string>;
  /** Processes whose memory is reported: `server` answers HTTP, `worker` does the echo. */
  pids: { server: number; worker?: number };
  /** Where the echoed input sits in a 200 answer. */
  echoOf(body: unknown): unknown;
  /** The HTTP process's Prometheus endpoint, when it serves one. */
  metricsUrl?: string;
  /** Stops every process of the system, by PID. Idempotent. */
  stop(): Promise<void>;
}

/** What every system's start needs. */
interface BenchContext {
  nats: NatsServerProcess;
  nc: NatsConnection;
  config: BenchConfig;
  /** Where `vigil-otel` exports its telemetry. */
  otlp: OtlpSink;
}

/** One system at one concurrency. */
interface CellResult {
  concurrency: number;
  /** `null` when the load generator failed; see `failure`. */
  load: LoadSummary | null;
  /** Peak RSS over the cell, MiB, per process (`nats` is the shared nats-server). */
  rssMiB: Record<string, number | null>;
  /** CPU over the measured window, % of one core, per process and `other` (the rest). */
  cpuPercent: Record<string, number | null>;
  errorRate: number | null;
  failure?: string;
}

/** One system's part of the results. */
interface SystemResult {
  name: SystemName;
  description: string;
  started: boolean;
  failure?: string;
  cells: CellResult[];
}

/** `results/latest.json`. */
interface BenchResults {
  finishedAt: string;
  /** The commit measured, `+dirty` when the work tree had changes. */
  revision: string;
  config: BenchConfig & { requestBody: string };
  machine: MachineInfo;
  systems: SystemResult[];
  /** Vigil's req/s divided by the floor's, per concurrency (`null`: a figure is missing). */
  vigilToFloor: Record<string, number | null>;
  streaming: StreamingResults | null;
  failures: string[];
}

function positiveNumber(name: string, fallback: number, allowZero = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new Error(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of seconds, not '${raw}'`,
    );
  }
  return value;
}

function readConfig(): BenchConfig {
  const quick = process.env['BENCH_QUICK'] === '1';
  const systems = (process.env['BENCH_SYSTEMS'] ?? DEFAULT_SYSTEMS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of systems) {
    if (!(SYSTEM_NAMES as readonly string[]).includes(name)) {
      throw new Error(`BENCH_SYSTEMS names '${name}'; the systems are ${SYSTEM_NAMES.join(', ')}`);
    }
  }
  const inFlight = process.env['BENCH_IN_FLIGHT'] ?? DEFAULT_CONCURRENCIES.join(',');
  const concurrencies = inFlight.split(',').map((s) => Number(s.trim()));
  if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 4096)) {
    throw new Error(
      `BENCH_IN_FLIGHT must be comma-separated integers from 1 to 4096, not '${inFlight}'`,
    );
  }
  return {
    seconds: positiveNumber('BENCH_SECONDS', quick ? QUICK_CELL_SECONDS : DEFAULT_CELL_SECONDS),
    concurrencies,
    warmupSeconds: positiveNumber('BENCH_WARMUP_SECONDS', DEFAULT_WARMUP_SECONDS, true),
    systems: SYSTEM_NAMES.filter((name) => systems.includes(name)),
    cpuProfile: process.env['BENCH_CPU_PROF'] === '1',
    streaming: process.env['BENCH_STREAMING'] !== '0',
    streamsHeld: streamsHeld(),
  };
}

function streamsHeld(): number {
  const raw = process.env['BENCH_STREAMS_HELD'] ?? '1000';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 4096) {
    throw new Error(`BENCH_STREAMS_HELD must be an integer from 1 to 4096, not '${raw}'`);
  }
  return n;
}

/** The commit under test: figures mean little without the code they came from. */
function revision(): string {
  try {
    const git = (args: string[]): string =>
      execFileSync('git', args, {
        cwd: dirname(BENCH_DIR),
        encoding: 'utf8',
        timeout: 10_000,
      }).trim();
    const head = git(['rev-parse', '--short', 'HEAD']);
    return git(['status', '--porcelain']) === '' ? head : `${head}+dirty`;
  } catch {
    return 'unknown';
  }
}

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

/**
 * Environment that makes a Node child record a CPU profile to `profiles/<name>.cpuprofile`, when
 * asked for. Node refuses `--cpu-prof` in NODE_OPTIONS, and `startNode` owns the command line, so
 * the profiler comes in as a preloaded module (after tsx, which it is written in).
 */
function profileEnv(config: BenchConfig, name: string): Record<string, string> {
  if (!config.cpuProfile) return {};
  mkdirSync(PROFILE_DIR, { recursive: true });
  return {
    NODE_OPTIONS: `--import tsx --import ${pathToFileURL(join(BENCH_DIR, 'cpu-profile-hook.ts')).href}`,
    BENCH_CPU_PROF_FILE: join(PROFILE_DIR, `${name}.cpuprofile`),
  };
}

/**
 * Runs `steps` in order, each starting one process; if one fails, stops those already started
 * (last first) before rethrowing, so a half-started system leaves nothing behind.
 */
async function startInOrder<T extends { stop(): Promise<unknown> }>(
  steps: readonly (() => Promise<T>)[],
): Promise<{ started: T[]; stopAll: () => Promise<void> }> {
  const started: T[] = [];
  const stopAll = async (): Promise<void> => {
    for (const proc of [...started].reverse()) await proc.stop();
  };
  try {
    for (const step of steps) started.push(await step());
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { started, stopAll };
}

/** Idempotent wrapper for a system's stop. */
function onlyOnce(stop: () => Promise<void>): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => (stopping ??= stop());
}

/** How to bring up one system under test. */
interface SystemDefinition {
  description: string;
  start: (ctx: BenchContext) => Promise<RunningSystem>;
}

/** The floor baseline, or with `storeOutcomes` its `floor-kv` variant. */
async function startFloor(
  { nats, nc, config }: BenchContext,
  storeOutcomes: boolean,
): Promise<RunningSystem> {
  await provisionFloor(nc, await jetstreamManager(nc), { storeOutcomes });
  const name = storeOutcomes ? 'floor-kv' : 'floor';
  const env = {
    NATS_URL: nats.url,
    ...(storeOutcomes ? { FLOOR_STORE_OUTCOMES: '1', FLOOR_MSG_ID: '1' } : {}),
  };
  const { started, stopAll } = await startInOrder([
    () =>
      startScript(join(BENCH_DIR, 'baselines', 'floor-worker.ts'), {
        readyMessage: 'ready',
        logFile: join(LOG_DIR, `${name}-worker.log`),
        env: { ...env, ...profileEnv(config, `${name}-worker`) },
      }),
    () =>
      startScript(join(BENCH_DIR, 'baselines', 'floor-gateway.ts'), {
        readyMessage: 'ready',
        logFile: join(LOG_DIR, `${name}-gateway.log`),
        env: { ...env, ...profileEnv(config, `${name}-gateway`) },
      }),
  ]);
  const [worker, gateway] = started;
  return {
    url: `${String(gateway!.ready['url'])}${INFER_PATH}`,
    headers: { 'Content-Type': 'application/json' },
    pids: { server: gateway!.pid, worker: worker!.pid },
    echoOf: (body) => (body as { echo?: unknown }).echo,
    stop: onlyOnce(stopAll),
  };
}

const SYSTEMS: Record<SystemName, SystemDefinition> = {
  ceiling: {
    description: 'Hono on @hono/node-server answering in-process; no NATS',
    start: async ({ config }) => {
      const { started, stopAll } = await startInOrder([
        () =>
          startScript(join(BENCH_DIR, 'baselines', 'ceiling.ts'), {
            readyMessage: 'ready',
            logFile: join(LOG_DIR, 'ceiling.log'),
            env: profileEnv(config, 'ceiling'),
          }),
      ]);
      const [server] = started;
      return {
        url: `${String(server!.ready['url'])}${INFER_PATH}`,
        headers: { 'Content-Type': 'application/json' },
        pids: { server: server!.pid },
        echoOf: (body) => (body as { echo?: unknown }).echo,
        stop: onlyOnce(stopAll),
      };
    },
  },
  floor: {
    description: 'Hono + js.publish to a file work queue, bare pull worker, core NATS reply mux',
    start: (ctx) => startFloor(ctx, false),
  },
  'floor-kv': {
    description: 'floor + msg-id dedup (15 min) + outcome stored in a KV bucket before the reply',
    start: (ctx) => startFloor(ctx, true),
  },
  'vigil-otel-off': {
    description: 'vigil with VIGIL_TELEMETRY=off: no OpenTelemetry SDK at all',
    start: (ctx) => startVigil(ctx, 'vigil-otel-off', { VIGIL_TELEMETRY: 'off' }),
  },
  vigil: {
    description: 'the real gateway and actor host (echo, concurrency 64) on provisioned assets',
    start: (ctx) => startVigil(ctx, 'vigil', {}),
  },
  'vigil-otel': {
    description: 'vigil exporting every trace and metrics every 5 s over OTLP/HTTP, /metrics open',
    start: (ctx) =>
      startVigil(ctx, 'vigil-otel', {
        OTEL_EXPORTER_OTLP_ENDPOINT: ctx.otlp.url,
        OTEL_TRACES_SAMPLER: 'parentbased_always_on',
        OTEL_METRIC_EXPORT_INTERVAL: '5000',
        VIGIL_METRICS_PORT: '0',
      }),
  },
};

/**
 * Vigil's gateway and actor host, with `nodeEnv` on both and `actorEnv` on the actor host (it
 * serves `echo` with 64 at once unless that says otherwise).
 */
async function startVigil(
  { nats, nc, config }: BenchContext,
  name: string,
  nodeEnv: Record<string, string>,
  actorEnv: Record<string, string> = {},
): Promise<RunningSystem> {
  await provisionRegion(nc, { region: REGION }, createBuiltinModels());
  const apiKey = `bench-${randomBytes(16).toString('hex')}`;
  const base = {
    NATS_URL: nats.url,
    VIGIL_REGION: REGION,
    VIGIL_LOG_LEVEL: 'warn',
    ...nodeEnv,
  };
  const { started, stopAll } = await startInOrder([
    () =>
      startNode('actor-host', {
        compiled: true,
        env: {
          ...base,
          VIGIL_MODELS: 'echo',
          VIGIL_CONCURRENCY: '64',
          ...actorEnv,
          ...profileEnv(config, `${name}-actor-host`),
        },
        logFile: join(LOG_DIR, `${name}-actor-host.log`),
      }),
    () =>
      startNode('gateway', {
        compiled: true,
        env: {
          ...base,
          VIGIL_GATEWAY_PORT: '0',
          VIGIL_API_KEYS: `bench:${apiKey}`,
          ...profileEnv(config, `${name}-gateway`),
        },
        logFile: join(LOG_DIR, `${name}-gateway.log`),
      }),
  ]);
  const [actorHost, gateway] = started;
  return {
    url: `${String(gateway!.ready['url'])}${INFER_PATH}`,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` },
    pids: { server: gateway!.pid, worker: actorHost!.pid },
    echoOf: (body) => (body as { result?: { echo?: unknown } }).result?.echo,
    ...(typeof gateway!.ready['metricsUrl'] === 'string'
      ? { metricsUrl: gateway!.ready['metricsUrl'] }
      : {}),
    stop: onlyOnce(stopAll),
  };
}

/** One request through the system, checked: the bench only measures systems that do the work. */
async function smokeCheck(system: RunningSystem): Promise<void> {
  const res = await fetch(system.url, {
    method: 'POST',
    headers: system.headers,
    body: REQUEST_BODY,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (res.status !== 200)
    throw new Error(`smoke request answered ${res.status}: ${text.slice(0, 300)}`);
  const echoed = system.echoOf(JSON.parse(text));
  if (!isDeepStrictEqual(echoed, INPUT)) {
    throw new Error(`smoke request did not echo its input: ${text.slice(0, 300)}`);
  }
}

/**
 * Runs the load generator for one cell in its own process and parses its summary line; calls
 * `onSpawn` with its PID, `onMeasuring` when its warm-up ends and `onSummary` when it is done.
 */
async function runLoad(
  options: LoadOptions,
  onSpawn: (pid: number) => void,
  onMeasuring: () => void,
): Promise<LoadSummary> {
  return runGenerator({
    file: join(BENCH_DIR, 'load.ts'),
    options,
    limitMs: (options.warmupSeconds + options.seconds) * 1000 + options.timeoutMs + 30_000,
    parse: (line) => loadSummarySchema.parse(JSON.parse(line)),
    onSpawn,
    markers: { [MEASURING_LINE]: onMeasuring },
  });
}

async function runCell(
  ctx: BenchContext,
  system: RunningSystem,
  concurrency: number,
): Promise<CellResult> {
  const pids: Record<string, number> = { server: system.pids.server, nats: ctx.nats.pid };
  if (system.pids.worker !== undefined) pids['worker'] = system.pids.worker;
  let sampler: ProcessSampler | undefined;
  let load: LoadSummary | null = null;
  let failure: string | undefined;
  try {
    load = await runLoad(
      {
        url: system.url,
        headers: system.headers,
        body: REQUEST_BODY,
        concurrency,
        seconds: ctx.config.seconds,
        warmupSeconds: ctx.config.warmupSeconds,
        timeoutMs: REQUEST_TIMEOUT_MS,
      },
      (pid) => (sampler = startProcessSampler({ ...pids, load: pid })),
      () => sampler?.markMeasureStart(),
    );
    sampler?.markMeasureEnd();
  } catch (err) {
    failure = (err as Error).message;
  }
  const usage = sampler?.stop(load ? { load: load.cpuPercent } : {}) ?? {
    rssMiB: {},
    cpuPercent: {},
  };
  const errorRate = load === null ? null : load.count === 0 ? 1 : load.errors / load.count;
  if (load !== null && errorRate !== null && errorRate > MAX_ERROR_RATE) {
    failure = `${load.errors} of ${load.count} requests failed (${JSON.stringify(load.outcomes)})`;
  }
  return { concurrency, load, ...usage, errorRate, ...(failure === undefined ? {} : { failure }) };
}

async function runSystem(ctx: BenchContext, name: SystemName): Promise<SystemResult> {
  const { description } = SYSTEMS[name];
  say(`- ${name}: starting (${description})`);
  let system: RunningSystem;
  try {
    system = await SYSTEMS[name].start(ctx);
  } catch (err) {
    say(`  ${name}: failed to start: ${(err as Error).message}`);
    return { name, description, started: false, failure: (err as Error).message, cells: [] };
  }
  const result: SystemResult = { name, description, started: true, cells: [] };
  try {
    await smokeCheck(system);
    for (const concurrency of ctx.config.concurrencies) {
      const cell = await runCell(ctx, system, concurrency);
      result.cells.push(cell);
      const l = cell.load;
      say(
        `  ${name} @ ${concurrency} in flight: ` +
          (l
            ? `${l.rps} req/s, p50 ${l.p50} ms, p99 ${l.p99} ms, ${l.errors} errors`
            : 'no figures') +
          (cell.failure ? ` -- FAILED: ${cell.failure}` : ''),
      );
    }
  } catch (err) {
    result.started = false;
    result.failure = (err as Error).message;
    say(`  ${name}: ${result.failure}`);
  } finally {
    await system.stop();
  }
  return result;
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  return a === undefined || b === undefined || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
}

/** The figures: one row per system and concurrency. */
function renderTable(systems: readonly SystemResult[]): string[] {
  const head = [
    'system',
    'in flight',
    'req/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'errors',
    'server MiB',
    'worker MiB',
    'nats MiB',
  ];
  const rows: string[][] = [];
  for (const s of systems) {
    if (s.cells.length === 0) rows.push([s.name, '-', 'failed to start']);
    for (const c of s.cells) {
      const l = c.load;
      rows.push([
        s.name,
        String(c.concurrency),
        fmt(l?.rps, 0),
        fmt(l?.p50, 2),
        fmt(l?.p90, 2),
        fmt(l?.p99, 2),
        l ? `${l.errors}${c.failure ? ' !' : ''}` : 'failed',
        fmt(c.rssMiB['server'], 0),
        fmt(c.rssMiB['worker'], 0),
        fmt(c.rssMiB['nats'], 0),
      ]);
    }
  }
  return layout(head, rows);
}

/** CPU time per answered request, microseconds, from a % of one core and a rate. */
function microsPerRequest(percent: number | null | undefined, rps: number | undefined): string {
  if (percent === null || percent === undefined || !rps) return '-';
  return ((percent / 100 / rps) * 1e6).toFixed(0);
}

/** Where the CPU went in each cell: % of one core (the machine has cores x 100) and per request. */
function renderCpuTable(systems: readonly SystemResult[]): string[] {
  const head = [
    'system',
    'in flight',
    'server %',
    'worker %',
    'nats %',
    'load gen %',
    'other %',
    'server us/req',
    'worker us/req',
    'nats us/req',
  ];
  const rows: string[][] = [];
  for (const s of systems) {
    for (const c of s.cells) {
      const cpu = c.cpuPercent;
      const rps = c.load?.rps;
      const other = cpu['other'];
      rows.push([
        s.name,
        String(c.concurrency),
        fmt(cpu['server'], 0),
        fmt(cpu['worker'], 0),
        fmt(cpu['nats'], 0),
        fmt(cpu['load'], 0),
        `${fmt(other, 0)}${(other ?? 0) > NOISY_OTHER_CPU_PERCENT ? ' *' : ''}`,
        microsPerRequest(cpu['server'], rps),
        microsPerRequest(cpu['worker'], rps),
        microsPerRequest(cpu['nats'], rps),
      ]);
    }
  }
  return layout(head, rows);
}

async function main(): Promise<number> {
  const config = readConfig();
  rmSync(LOG_DIR, { recursive: true, force: true });
  mkdirSync(LOG_DIR, { recursive: true });
  if (config.cpuProfile) rmSync(PROFILE_DIR, { recursive: true, force: true });
  const storeRoot = mkdtempSync(join(tmpdir(), 'vigil-bench-'));
  // A signal skips `finally`: the child-process modules' exit hooks kill the children by PID,
  // and this removes the store.
  process.once('exit', () => rmSync(storeRoot, { recursive: true, force: true }));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`\nbench: ${signal}; stopping`);
      process.exit(130);
    });
  }

  const machine = describeMachine(natsServerBin());
  const measured = revision();
  const perCell = config.warmupSeconds + config.seconds;
  say(
    `Vigil bench: ${config.systems.join(', ')} at ${config.concurrencies.join(' and ')} in flight, ` +
      `${config.warmupSeconds} s warm-up + ${config.seconds} s per cell ` +
      `(about ${Math.ceil(((config.systems.length + (config.streaming ? 2 : 0)) * config.concurrencies.length * perCell + (config.streaming ? config.seconds + 30 : 0)) / 10) * 10 + 15} s)`,
  );

  const systems: SystemResult[] = [];
  const failures: string[] = [];
  let streaming: StreamingResults | null = null;
  let nats: NatsServerProcess | undefined;
  let nc: NatsConnection | undefined;
  const otlp = await startOtlpSink();
  try {
    nats = await startNatsServer({
      storeDir: join(storeRoot, 'jetstream'),
      port: 0,
      logFile: join(LOG_DIR, 'nats-server.log'),
    });
    nc = await connect({ servers: nats.url, name: 'bench', noAsyncTraces: true });
    const ctx: BenchContext = { nats, nc, config, otlp };
    for (const name of config.systems) systems.push(await runSystem(ctx, name));
    if (config.streaming) {
      streaming = await runStreamingBench({
        benchDir: BENCH_DIR,
        seconds: config.seconds,
        warmupSeconds: config.warmupSeconds,
        concurrencies: config.concurrencies,
        streamsHeld: config.streamsHeld,
        say,
        startVigil: async (name, env) => {
          const system = await startVigil(ctx, name, env.gateway, env.actor);
          return {
            baseUrl: new URL(system.url).origin,
            headers: system.headers,
            gatewayPid: system.pids.server,
            ...(system.metricsUrl ? { metricsUrl: system.metricsUrl } : {}),
            stop: () => system.stop(),
          };
        },
      });
      failures.push(...streaming.failures);
    }
  } catch (err) {
    say(`bench: ${(err as Error).message}`);
    failures.push(`set-up: ${(err as Error).message}`);
  } finally {
    await nc?.close();
    await nats?.stop();
    await otlp.close();
  }

  for (const s of systems) {
    if (!s.started) failures.push(`${s.name}: ${s.failure ?? 'did not start'}`);
    for (const c of s.cells)
      if (c.failure) failures.push(`${s.name} @ ${c.concurrency}: ${c.failure}`);
  }
  const rpsOf = (name: SystemName, concurrency: number): number | undefined =>
    systems.find((s) => s.name === name)?.cells.find((c) => c.concurrency === concurrency)?.load
      ?.rps;
  const vigilToFloor: Record<string, number | null> = {};
  for (const c of config.concurrencies)
    vigilToFloor[String(c)] = ratio(rpsOf('vigil', c), rpsOf('floor', c));

  say();
  for (const line of renderTable(systems)) say(line);
  say();
  say('CPU during the measured window, % of one core:');
  for (const line of renderCpuTable(systems)) say(line);
  const noisy = systems.flatMap((s) =>
    s.cells
      .filter((c) => (c.cpuPercent['other'] ?? 0) > NOISY_OTHER_CPU_PERCENT)
      .map((c) => `${s.name} @ ${c.concurrency}`),
  );
  if (noisy.length > 0) {
    say(
      `* other processes used CPU during ${noisy.join(', ')}: those figures are suspect; run again.`,
    );
  }
  say();
  say('Throughput as a fraction of the floor (vigil req/s / floor req/s):');
  for (const c of config.concurrencies) {
    const r = vigilToFloor[String(c)] ?? null;
    const target =
      c === TARGET_CONCURRENCY
        ? ` (target >= ${TARGET_FLOOR_RATIO}: ${r === null ? 'n/a' : r >= TARGET_FLOOR_RATIO ? 'met' : 'NOT met'})`
        : '';
    say(`  ${String(c).padStart(2)} in flight: ${fmt(r, 2)}${target}`);
  }
  for (const c of config.concurrencies) {
    const parts = [
      `floor/ceiling ${fmt(ratio(rpsOf('floor', c), rpsOf('ceiling', c)), 2)}`,
      `vigil/ceiling ${fmt(ratio(rpsOf('vigil', c), rpsOf('ceiling', c)), 2)}`,
    ];
    if (config.systems.includes('floor-kv')) {
      parts.push(
        `floor-kv/floor ${fmt(ratio(rpsOf('floor-kv', c), rpsOf('floor', c)), 2)}`,
        `vigil/floor-kv ${fmt(ratio(rpsOf('vigil', c), rpsOf('floor-kv', c)), 2)}`,
      );
    }
    say(`  (${c} in flight: ${parts.join(', ')})`);
  }
  const telemetrySystems = (['vigil-otel-off', 'vigil', 'vigil-otel'] as const).filter((name) =>
    config.systems.includes(name),
  );
  if (telemetrySystems.length > 1) {
    say();
    say(
      'Telemetry cost, req/s (off = no SDK; vigil = SDK, nothing exported; otel = all exported):',
    );
    for (const c of config.concurrencies) {
      const off = rpsOf('vigil-otel-off', c);
      const parts = telemetrySystems.map((name) => `${name} ${fmt(rpsOf(name, c) ?? null, 0)}`);
      const relative = telemetrySystems
        .filter((name) => name !== 'vigil-otel-off')
        .map((name) => `${name}/off ${fmt(ratio(rpsOf(name, c), off), 3)}`);
      say(`  ${String(c).padStart(2)} in flight: ${[...parts, ...relative].join(', ')}`);
    }
    say(`  exported to the sink: ${JSON.stringify(otlp.received())}`);
  }
  if (streaming) {
    say();
    for (const line of renderStreaming(streaming)) say(line);
  }
  say();
  say(
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}`,
  );
  say(`         Node ${machine.node}, ${machine.natsServer}; code at ${measured}`);
  say('RSS: peak of samples every 500 ms during the cell. server = the HTTP process, worker = the');
  say('process that echoes (floor worker, Vigil actor host), nats = the one shared nats-server.');

  const results: BenchResults = {
    finishedAt: new Date().toISOString(),
    revision: measured,
    config: { ...config, requestBody: REQUEST_BODY },
    machine,
    systems,
    vigilToFloor,
    streaming,
    failures,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  say(`Results: ${join(RESULTS_DIR, 'latest.json')}; logs: ${LOG_DIR}`);
  if (failures.length > 0) {
    say();
    say('FAILED:');
    for (const f of failures) say(`  ${f}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
