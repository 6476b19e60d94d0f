/**
 * Turns the soak's samples into its verdict: per process, a least-squares line through memory
 * after warm-up (its slope per 10 minutes, and its values at the end of warm-up and at the end);
 * event-loop delay;
 * descriptors and consumers at start and end; errors. The pass criteria are the issue's:
 *
 * - 0 errors;
 * - RSS after warm-up grows at most 10 % and less than 1 MB per 10 minutes (every process);
 * - event-loop delay p99 at most 50 ms (the worst 10 s interval after warm-up, as the runtime
 *   instrumentation reports it: the raw timer delay, resolution included);
 * - descriptors and JetStream consumers flat (the end no more than a small margin above warm-up).
 */
import { linearFit, percentile, round } from '../common/index.js';
import type { LoadFigures } from './load.js';
import type { Sample } from './sampler.js';

/** 1 MB per 10 minutes, in MiB. */
export const MAX_SLOPE_MIB = 1_000_000 / (1024 * 1024);
/** Most RSS growth after warm-up, as a fraction of the warm-up figure. */
export const MAX_GROWTH = 0.1;
/** Worst event-loop delay p99 allowed, ms. */
export const MAX_LOOP_P99_MS = 50;
/** Descriptors may end this many above their warm-up count (client sockets come and go). */
const FD_MARGIN = 5;
const TEN_MINUTES = 600_000;

/**
 * A series' figures after warm-up. `warm` and `end` are the fitted line's values, not samples:
 * a garbage-collected heap swings by tens of MiB over minutes (V8's and Go's collectors grow and
 * return memory in steps), so any one sample, or a minute's mean, says which phase of that cycle
 * it caught more than whether memory grows. The line through every sample does not; `min` and
 * `max` show the swing.
 */
export interface Trend {
  warm: number;
  end: number;
  /** Per 10 minutes, from the least-squares fit. */
  slope: number;
  growthPercent: number;
  min: number;
  max: number;
}

/** One process's figures. */
export interface ProcessFigures {
  pid: number;
  rssMiB?: Trend;
  heapUsedMiB?: Trend;
  fds?: { start: number; warm: number; end: number; max: number };
  threads?: { start: number; end: number };
  loopP99Ms?: { median: number; worst: number; over50: number };
  handles?: { warm: Record<string, number>; end: Record<string, number> };
  verdict: string[];
}

/** The soak's report. */
export interface SoakReport {
  passed: boolean;
  failures: string[];
  processes: Record<string, ProcessFigures>;
  server: {
    memMiB?: Trend;
    consumers: { start: number; warm: number; end: number };
    subscriptions: { start: number; warm: number; end: number };
    connections: { start: number; end: number };
    streams: Record<
      string,
      { warm: { messages: number; bytes: number }; end: { messages: number; bytes: number } }
    >;
  };
  load: { min: number; mean: number; max: number };
}

export function trend(
  points: { t: number; v: number | undefined }[],
  warmupMs: number,
): Trend | undefined {
  const after = points.filter(
    (p): p is { t: number; v: number } => p.v !== undefined && p.t >= warmupMs,
  );
  const fit = linearFit(after.map((p) => ({ x: p.t, y: p.v })));
  if (!fit || after.length === 0) return undefined;
  const fitted = (t: number) => fit.intercept + fit.slope * t;
  const warm = fitted(after[0]!.t);
  const end = fitted(after[after.length - 1]!.t);
  return {
    warm: round(warm),
    end: round(end),
    slope: round(fit.slope * TEN_MINUTES, 2),
    growthPercent: round(((end - warm) / warm) * 100, 1),
    min: round(Math.min(...after.map((p) => p.v))),
    max: round(Math.max(...after.map((p) => p.v))),
  };
}

/** The first sample at or after warm-up (or the last one). */
function atWarmup(samples: readonly Sample[], warmupMs: number): Sample {
  return samples.find((s) => s.t >= warmupMs) ?? samples[samples.length - 1]!;
}

function processFigures(
  name: string,
  pid: number,
  samples: readonly Sample[],
  warmupMs: number,
): ProcessFigures {
  const series = (pick: (s: Sample) => number | undefined) =>
    samples.map((s) => ({ t: s.t, v: pick(s) }));
  const p = (s: Sample) => s.processes[name];
  const first = samples[0]!;
  const warmS = atWarmup(samples, warmupMs);
  const last = samples[samples.length - 1]!;
  const out: ProcessFigures = { pid, verdict: [] };
  const rss = trend(
    series((s) => p(s)?.rssMiB),
    warmupMs,
  );
  if (rss) out.rssMiB = rss;
  const heap = trend(
    series((s) => p(s)?.heapUsedMiB),
    warmupMs,
  );
  if (heap) out.heapUsedMiB = heap;
  const fdsAfter = samples.filter((s) => s.t >= warmupMs).map((s) => p(s)?.fds ?? 0);
  if (p(first)?.fds !== undefined)
    out.fds = {
      start: p(first)!.fds!,
      warm: p(warmS)?.fds ?? 0,
      end: p(last)?.fds ?? 0,
      max: Math.max(0, ...fdsAfter),
    };
  if (p(first)?.threads !== undefined)
    out.threads = { start: p(first)!.threads!, end: p(last)?.threads ?? 0 };
  const loops = samples
    .filter((s) => s.t >= warmupMs)
    .flatMap((s) => (p(s)?.loopP99Ms === undefined ? [] : [p(s)!.loopP99Ms!]));
  if (loops.length > 0)
    out.loopP99Ms = {
      median: percentile(loops, 0.5)!,
      worst: Math.max(...loops),
      over50: loops.filter((v) => v > MAX_LOOP_P99_MS).length,
    };
  if (p(warmS)?.handles) out.handles = { warm: p(warmS)!.handles!, end: p(last)?.handles ?? {} };
  judgeProcess(name, out);
  return out;
}

/** The criteria for one process; failures go to `verdict`. */
function judgeProcess(name: string, f: ProcessFigures): void {
  const r = f.rssMiB;
  if (r && r.growthPercent > MAX_GROWTH * 100)
    f.verdict.push(
      `${name}: RSS grew ${r.growthPercent} % after warm-up (${r.warm} -> ${r.end} MiB)`,
    );
  if (r && r.slope >= MAX_SLOPE_MIB)
    f.verdict.push(`${name}: RSS slope ${r.slope} MiB per 10 minutes (limit 1 MB)`);
  if (f.loopP99Ms && f.loopP99Ms.worst > MAX_LOOP_P99_MS)
    f.verdict.push(
      `${name}: event-loop p99 reached ${f.loopP99Ms.worst} ms (${f.loopP99Ms.over50} intervals over ${MAX_LOOP_P99_MS} ms)`,
    );
  if (f.fds && f.fds.end > f.fds.warm + FD_MARGIN)
    f.verdict.push(`${name}: descriptors ${f.fds.warm} -> ${f.fds.end}`);
}

/** Everything the report says, and the verdict. */
export function analyse(
  samples: readonly Sample[],
  pids: Readonly<Record<string, number>>,
  warmupMs: number,
  load: LoadFigures,
): SoakReport {
  const processes: Record<string, ProcessFigures> = {};
  for (const [name, pid] of Object.entries(pids))
    processes[name] = processFigures(name, pid, samples, warmupMs);
  const first = samples[0]!;
  const warmS = atWarmup(samples, warmupMs);
  const last = samples[samples.length - 1]!;
  const streams: SoakReport['server']['streams'] = {};
  for (const [stream, end] of Object.entries(last.server.streams ?? {})) {
    const warm = warmS.server.streams?.[stream] ?? { messages: 0, bytes: 0 };
    streams[stream] = {
      warm: { messages: warm.messages, bytes: warm.bytes },
      end: { messages: end.messages, bytes: end.bytes },
    };
  }
  const three = (pick: (s: Sample) => number | undefined) => ({
    start: pick(first) ?? 0,
    warm: pick(warmS) ?? 0,
    end: pick(last) ?? 0,
  });
  const memMiB = trend(
    samples.map((s) => ({ t: s.t, v: s.server.memMiB })),
    warmupMs,
  );
  const server: SoakReport['server'] = {
    ...(memMiB ? { memMiB } : {}),
    consumers: three((s) => s.server.consumers),
    subscriptions: three((s) => s.server.subscriptions),
    connections: { start: first.server.connections ?? 0, end: last.server.connections ?? 0 },
    streams,
  };
  const failures = Object.values(processes).flatMap((p) => p.verdict);
  const errors = Object.values(load.errors).reduce((a, b) => a + b, 0);
  if (errors > 0) failures.unshift(`${errors} errors: ${JSON.stringify(load.errors)}`);
  if (server.consumers.end !== server.consumers.warm)
    failures.push(`consumers ${server.consumers.warm} -> ${server.consumers.end}`);
  const loads = samples.map((s) => s.load[0]);
  return {
    passed: failures.length === 0,
    failures,
    processes,
    server,
    load: {
      min: Math.min(...loads),
      mean: round(loads.reduce((a, b) => a + b, 0) / loads.length, 2),
      max: Math.max(...loads),
    },
  };
}
