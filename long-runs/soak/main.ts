/**
 * `npm run soak -- [--duration 60m] [--rate 30] [--warmup 20m] [--sample 10s] [--tsx]
 * [--task-retention 24h] [--duplicate-window 15m] [--heap-snapshots] [--report dir]
 * [--judge saved.json]`
 * (`config.ts`; `--help` lists them): a long fixed-rate load across every route against a local
 * edge of its own (`topology.ts`), every process sampled as it goes (`sampler.ts`). It stops by
 * itself, stops every process it started (by PID), prints the report and writes it as
 * `<report>/<timestamp>-soak.json` and `.md` (default `.vigil/soak`). Exits 0 when the run passed
 * the issue's criteria (`analysis.ts`), 1 when it did not, 2 on bad flags. Ctrl-C stops it all.
 * `--judge` runs nothing: it judges a saved run again, with another warm-up.
 */
import { availableParallelism, cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { natsServerBin } from '../../scripts/nats-server-provision.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  gitDescribe,
  readNatsHeap,
  runLongRun,
  writeReport,
  type RunContext,
} from '../common/index.js';
import { analyse, type SoakReport } from './analysis.js';
import { defaultWarmupMs, readSoakArgs, SOAK_CONFIG, type SoakOptions } from './config.js';
import { SoakLoad, type LoadFigures } from './load.js';
import { soakMarkdown, type RunFacts } from './markdown.js';
import { takeSample, type NatsHeapSample, type Sample } from './sampler.js';
import { startSoakTopology, type SoakTopology } from './topology.js';
import { makeDirectory } from '../../nodes/common/index.js';

/** Past the load, what start-up, settling and shutdown may take before the run gives up. */
const OVERHEAD_BUDGET_MS = 300_000;
/** Progress is printed every this many samples. */
const PRINT_EVERY = 6;

const say = (text: string): void => void process.stdout.write(text + '\n');

function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${availableParallelism()} cores (${cpu}), ${(totalmem() / 1024 ** 3).toFixed(1)} GiB`;
}

function natsVersion(): string {
  try {
    return execFileSync(natsServerBin(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'nats-server (version unknown)';
  }
}

/** One progress line: every process's RSS and heap, the errors so far, the load average. */
function progress(s: Sample): string {
  const procs = Object.entries(s.processes)
    .map(
      ([n, p]) =>
        `${n} ${p.rssMiB ?? '?'}${p.heapUsedMiB === undefined ? '' : `/${p.heapUsedMiB}`}`,
    )
    .join(', ');
  return (
    `soak ${(s.t / 60_000).toFixed(1)} min: ${procs} MiB (RSS/heap); nats mem ${s.server.memMiB ?? '?'}; ` +
    `consumers ${s.server.consumers ?? '?'}; sent ${s.sent}, errors ${s.errors}; load ${s.load.join(' ')}`
  );
}

/** Sends SIGUSR2 (the nodes' heap-snapshot signal) to every node. */
function heapSnapshots(topology: SoakTopology, when: string): void {
  for (const p of topology.processes)
    if (p.metricsUrl) {
      say(`soak: heap snapshot of ${p.name} (${when})`);
      process.kill(p.pid, 'SIGUSR2');
    }
}

/** nats-server's heap is read (after a forced GC) this often, and at warm-up end and the end. */
const NATS_HEAP_EVERY_MS = 300_000;
/** Provisioning's duplicate window, ms. */
const DEFAULT_DUPLICATE_WINDOW_MS = 15 * 60_000;

/** Samples every `o.sampleMs` until stopped; nats-server's heap every few minutes. */
class Sampling {
  readonly samples: Sample[] = [];
  readonly natsHeaps: NatsHeapSample[] = [];
  readonly #startedAt = Date.now();
  #chain = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #snapshotted = false;
  #nextHeapAt = 0;

  constructor(
    private readonly o: SoakOptions,
    private readonly topology: SoakTopology,
    private readonly load: SoakLoad,
    private readonly heapDir: string,
  ) {}

  get startedAt(): number {
    return this.#startedAt;
  }

  start(): void {
    this.#chain = this.#sample();
    this.#timer = setInterval(() => {
      this.#chain = this.#chain.then(() => this.#sample());
    }, this.o.sampleMs);
  }

  /** Stops the timer and takes a last sample (and nats-server's heap). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#chain;
    this.#nextHeapAt = 0;
    await this.#sample('end');
  }

  /** Task records held, and requests stored within the duplicate window before `s`. */
  #retained(s: Sample): { taskRecords: number; requestsInWindow: number } {
    const streams = (x: Sample) => Object.entries(x.server.streams ?? {});
    const of = (x: Sample, prefix: string) => streams(x).find(([n]) => n.startsWith(prefix))?.[1];
    const windowMs = this.o.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
    const before = this.samples.find((x) => x.t >= s.t - windowMs) ?? s;
    return {
      taskRecords: of(s, 'KV_vigil-tasks-')?.messages ?? 0,
      requestsInWindow:
        (of(s, 'VIGIL_REQ_')?.lastSeq ?? 0) - (of(before, 'VIGIL_REQ_')?.lastSeq ?? 0),
    };
  }

  async #sample(label?: string): Promise<void> {
    const { topology, o } = this;
    const s = await takeSample(topology.processes, topology.monitorUrl, this.#startedAt, {
      sent: this.load.figures().sent,
      errors: this.load.errorCount(),
    });
    this.samples.push(s);
    if (this.samples.length % PRINT_EVERY === 1) say(progress(s));
    const warmedUp = s.t >= o.warmupMs;
    if (o.heapSnapshots && !this.#snapshotted && warmedUp) {
      this.#snapshotted = true;
      heapSnapshots(topology, 'end of warm-up');
    }
    if (topology.edge.profUrl && s.t >= this.#nextHeapAt) {
      // At the start, at the end of warm-up, then every few minutes.
      this.#nextHeapAt = warmedUp ? s.t + NATS_HEAP_EVERY_MS : o.warmupMs;
      const read = await readNatsHeap(topology.edge.profUrl);
      if (read) {
        this.natsHeaps.push({ t: s.t, heap: read.heap, ...this.#retained(s) });
        writeRaw(this.heapDir, `nats-heap-${label ?? Math.round(s.t / 1000) + 's'}.txt`, read.raw);
      }
    }
  }
}

function writeRaw(dir: string, name: string, text: string): void {
  makeDirectory(dir);
  writeFileSync(join(dir, name), text);
}

async function run(o: SoakOptions, stamp: string, onTopology: (t: SoakTopology) => void) {
  const logDir = join(o.reportDir, `${stamp}-logs`);
  const heapDir = join(o.reportDir, `${stamp}-heap`);
  const topology = await startSoakTopology({
    logDir,
    compiled: o.compiled,
    ...(o.taskRetentionMs === undefined ? {} : { taskRetentionMs: o.taskRetentionMs }),
    ...(o.duplicateWindowMs === undefined ? {} : { duplicateWindowMs: o.duplicateWindowMs }),
    ...(o.heapSnapshots
      ? { nodeOptions: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${heapDir}` }
      : {}),
  });
  onTopology(topology);
  say(
    `soak: ${topology.processes.map((p) => `${p.name} pid ${p.pid}`).join(', ')}; ` +
      `gateway ${topology.gatewayUrl}; logs ${logDir}`,
  );
  const load = new SoakLoad(topology.gatewayUrl, topology.edge.apiKey);
  const sampling = new Sampling(o, topology, load, heapDir);
  sampling.start();
  await load.run(o.rate, sampling.startedAt + o.durationMs, () => false);
  await sampling.stop();
  await load.settle();
  if (o.heapSnapshots) {
    heapSnapshots(topology, 'end');
    await new Promise((r) => setTimeout(r, 20_000));
  }
  const pids = Object.fromEntries(topology.processes.map((p) => [p.name, p.pid]));
  await topology.stop();
  return {
    samples: sampling.samples,
    natsHeaps: sampling.natsHeaps,
    pids,
    figures: load.figures(),
    startedAt: sampling.startedAt,
  };
}

/** What a run's `<timestamp>-soak.json` holds (`writeReport` below). */
interface SavedRun {
  facts: RunFacts;
  report: SoakReport;
  load: LoadFigures;
  natsHeaps: NatsHeapSample[];
  samples: Sample[];
}

/** The fields `--judge` reads, present and of their types. */
function isSavedRun(value: unknown): value is SavedRun {
  const v = value as Partial<SavedRun> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.facts?.durationMs === 'number' &&
    Array.isArray(v.samples) &&
    v.samples.every((s) => typeof s?.t === 'number' && typeof s.processes === 'object') &&
    typeof v.report?.processes === 'object' &&
    typeof v.load === 'object' &&
    Array.isArray(v.natsHeaps)
  );
}

/**
 * `--judge`: the verdict of a saved run with another warm-up, from its own samples, so a rule
 * about warm-up can be tried on runs already made. Prints the report; writes nothing.
 */
function judgeSaved(judge: NonNullable<SoakOptions['judge']>): number {
  let saved: SavedRun;
  try {
    saved = JSON.parse(readFileSync(judge.file, 'utf8')) as SavedRun;
  } catch (err) {
    say(`soak: --judge ${judge.file} cannot be read: ${(err as Error).message}`);
    return 2;
  }
  if (!isSavedRun(saved)) {
    say(`soak: --judge ${judge.file} is not a saved soak run (a <timestamp>-soak.json)`);
    return 2;
  }
  const warmupMs = judge.warmupMs ?? defaultWarmupMs(saved.facts.durationMs);
  if (warmupMs >= saved.facts.durationMs) {
    say(
      `soak: --warmup must be shorter than the saved run (${saved.facts.durationMs / 60_000} min)`,
    );
    return 2;
  }
  const pids = Object.fromEntries(
    Object.entries(saved.report.processes).map(([name, p]) => [name, p.pid]),
  );
  const report = analyse(saved.samples, pids, warmupMs, saved.load);
  const facts = { ...saved.facts, warmupMs };
  say(soakMarkdown(facts, report, saved.load, saved.natsHeaps));
  say(`soak: judged ${judge.file} again with a ${warmupMs / 60_000} min warm-up`);
  return report.passed ? 0 : 1;
}

async function soak(o: SoakOptions, { stamp, started }: RunContext): Promise<number> {
  if (o.judge) return judgeSaved(o.judge);
  const commit = gitDescribe();
  say(
    `soak: ${o.durationMs / 60_000} min at ${o.rate} req/s, warm-up ${o.warmupMs / 60_000} min, ` +
      `nodes ${o.compiled ? 'compiled (dist/)' : 'through tsx'}, commit ${commit}`,
  );
  const result = await run(o, stamp, (topology) => started(() => topology.stop()));
  const report = analyse(result.samples, result.pids, o.warmupMs, result.figures);
  const facts: RunFacts = {
    commit,
    startedAt: new Date(result.startedAt).toISOString(),
    durationMs: o.durationMs,
    warmupMs: o.warmupMs,
    rate: o.rate,
    sampleMs: o.sampleMs,
    runtime: o.compiled
      ? 'nodes compiled (`dist/`, as containers and the bench run them)'
      : 'nodes through tsx',
    machine: machine(),
    node: process.version,
    natsServer: natsVersion(),
    retention:
      `task records kept ${o.taskRetentionMs === undefined ? '24 h' : `${o.taskRetentionMs / 60_000} min`}, ` +
      `duplicate window ${o.duplicateWindowMs === undefined ? '15 min' : `${o.duplicateWindowMs / 60_000} min`}`,
  };
  const markdown = soakMarkdown(facts, report, result.figures, result.natsHeaps);
  const base = writeReport(
    o.reportDir,
    'soak',
    { facts, report, load: result.figures, natsHeaps: result.natsHeaps, samples: result.samples },
    markdown,
  );
  say('\n' + markdown);
  say(`soak: report ${base}.json and .md`);
  return report.passed ? 0 : 1;
}

runLongRun({
  name: 'soak',
  usage: SOAK_CONFIG.usage,
  readArgs: readSoakArgs,
  budgetMs: (o) => o.durationMs + OVERHEAD_BUDGET_MS,
  run: soak,
});
