/**
 * `npm run soak -- [--duration 60m] [--rate 30] [--warmup 10m] [--sample 10s] [--tsx]
 * [--task-retention 24h] [--duplicate-window 15m] [--heap-snapshots] [--report dir]`
 * (`config.ts`; `--help` lists them): a long fixed-rate load across every route against a local
 * edge of its own (`topology.ts`), every process sampled as it goes (`sampler.ts`). It stops by
 * itself, stops every process it started (by PID), prints the report and writes it as
 * `<report>/<timestamp>-soak.json` and `.md` (default `.vigil/soak`). Exits 0 when the run passed
 * the issue's criteria (`analysis.ts`), 1 when it did not, 2 on bad flags. Ctrl-C stops it all.
 */
import { availableParallelism, cpus, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { natsServerBin } from '../../scripts/nats-server-provision.mjs';
import { gitDescribe, writeReport } from '../common/index.js';
import { analyse } from './analysis.js';
import { readSoakArgs, SOAK_CONFIG, type SoakOptions } from './config.js';
import { SoakLoad } from './load.js';
import { soakMarkdown, type RunFacts } from './markdown.js';
import { takeSample, type Sample } from './sampler.js';
import { startSoakTopology, type SoakTopology } from './topology.js';

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

async function run(o: SoakOptions, stamp: string, onTopology: (t: SoakTopology) => void) {
  const logDir = join(o.reportDir, `${stamp}-logs`);
  const snapshotDir = join(o.reportDir, `${stamp}-heap`);
  const topology = await startSoakTopology({
    logDir,
    compiled: o.compiled,
    ...(o.taskRetentionMs === undefined ? {} : { taskRetentionMs: o.taskRetentionMs }),
    ...(o.duplicateWindowMs === undefined ? {} : { duplicateWindowMs: o.duplicateWindowMs }),
    ...(o.heapSnapshots
      ? { nodeOptions: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}` }
      : {}),
  });
  onTopology(topology);
  say(
    `soak: ${topology.processes.map((p) => `${p.name} pid ${p.pid}`).join(', ')}; gateway ${topology.gatewayUrl}; ` +
      `logs ${logDir}`,
  );
  const load = new SoakLoad(topology.gatewayUrl, topology.edge.apiKey);
  const samples: Sample[] = [];
  const startedAt = Date.now();
  let snapshotted = false;
  const sample = async () => {
    const s = await takeSample(topology.processes, topology.monitorUrl, startedAt, {
      sent: load.figures().sent,
      errors: load.errorCount(),
    });
    samples.push(s);
    if (samples.length % PRINT_EVERY === 1) say(progress(s));
    if (o.heapSnapshots && !snapshotted && s.t >= o.warmupMs) {
      snapshotted = true;
      heapSnapshots(topology, 'end of warm-up');
    }
  };
  await sample();
  let sampling = Promise.resolve();
  const timer = setInterval(() => {
    sampling = sampling.then(sample);
  }, o.sampleMs);
  await load.run(o.rate, startedAt + o.durationMs, () => false);
  clearInterval(timer);
  await sampling;
  await sample();
  await load.settle();
  if (o.heapSnapshots) {
    heapSnapshots(topology, 'end');
    await new Promise((r) => setTimeout(r, 20_000));
  }
  const pids = Object.fromEntries(topology.processes.map((p) => [p.name, p.pid]));
  await topology.stop();
  return { samples, pids, figures: load.figures(), startedAt };
}

async function main(): Promise<number> {
  let o: SoakOptions;
  try {
    const read = readSoakArgs(process.argv.slice(2));
    if (read.type === 'help') {
      process.stdout.write(read.text);
      return 0;
    }
    o = read.options;
  } catch (err) {
    say(`soak: ${(err as Error).message}\nusage: ${SOAK_CONFIG.usage} (--help lists the flags)`);
    return 2;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let topology: SoakTopology | undefined;
  const stopAndExit = (why: string, code: number) => {
    say(`soak: ${why}; stopping every process it started`);
    void (topology?.stop() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  process.once('SIGINT', () => stopAndExit('interrupted', 130));
  process.once('SIGTERM', () => stopAndExit('terminated', 143));
  setTimeout(
    () => stopAndExit('over its time budget', 1),
    o.durationMs + OVERHEAD_BUDGET_MS,
  ).unref();
  const commit = gitDescribe();
  say(
    `soak: ${o.durationMs / 60_000} min at ${o.rate} req/s, warm-up ${o.warmupMs / 60_000} min, ` +
      `nodes ${o.compiled ? 'compiled (dist/)' : 'through tsx'}, commit ${commit}`,
  );
  let result;
  try {
    result = await run(o, stamp, (t) => (topology = t));
  } catch (err) {
    await topology?.stop();
    throw err;
  }
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
  const markdown = soakMarkdown(facts, report, result.figures);
  const base = writeReport(
    o.reportDir,
    'soak',
    { facts, report, load: result.figures, samples: result.samples },
    markdown,
  );
  say('\n' + markdown);
  say(`soak: report ${base}.json and .md`);
  return report.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`soak: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
