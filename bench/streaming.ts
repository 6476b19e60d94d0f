/**
 * The bench's streaming cells: OpenAI chat streams of `ngram-chat` through Vigil's gateway
 * against the same model called in-process (time to first token, tokens per second, at 1 and 64
 * streams), and the gateway's memory while it holds many streams open at once.
 *
 * Each cell's load comes from `stream-load.ts` in its own process. The held streams run on a model
 * paced at one token every 5 s, so all of them are live (tokens flowing, consumers open) while
 * the gateway's memory is read; per stream is the growth over the same gateway idle, divided by
 * the count, three ways: RSS (what the machine gives, with the V8 heap's room to grow and what
 * the collector has not taken back yet), V8 heap in use (the same, without the room), and the live
 * heap (a heap snapshot, which collects first: what the streams' objects really hold).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGenerator } from './child-process.js';
import {
  MEASURING_LINE,
  STREAMS_OPEN_LINE,
  streamLoadSummarySchema,
  type StreamLoadOptions,
  type StreamLoadSummary,
} from './load-protocol.js';
import { scrape } from '../long-runs/common/index.js';
import { readRssKiB, RSS_SAMPLE_INTERVAL_MS } from './process-sampler.js';
import { fmt, layout } from './table.js';

/** Tokens per answer in the time-to-first-token and throughput cells. */
const STREAM_TOKENS = 64;
/** The model's pace while streams are held: every stream stays live, the host stays cool. */
const HELD_TOKEN_INTERVAL_MS = 5_000;
/** Streams opened and held first, unmeasured, so the gateway's idle figure is a warm one. */
const WARM_UP_STREAMS = 64;
/** Aim: gateway memory per open stream, KiB. */
const TARGET_KIB_PER_STREAM = 64;
/** Aim: time to first token through the gateway, above the in-process model's, at p50, ms. */
const TARGET_TTFT_OVERHEAD_MS = 2;
/** A stream slower than this is abandoned and counted as an error, ms. */
const STREAM_TIMEOUT_MS = 60_000;

/** A Vigil system the streaming cells run against. */
export interface StreamingSystem {
  /** The gateway's base URL. */
  baseUrl: string;
  headers: Record<string, string>;
  gatewayPid: number;
  /** The gateway's Prometheus endpoint, when it serves one (for its V8 heap). */
  metricsUrl?: string;
  /** Where the gateway writes a heap snapshot on `SIGUSR2`, when it does. */
  snapshotDir?: string;
  stop(): Promise<void>;
}

/** What the streaming cells need from the bench. */
export interface StreamingContext {
  benchDir: string;
  seconds: number;
  warmupSeconds: number;
  concurrencies: readonly number[];
  /** Streams held open for the memory cell. */
  streamsHeld: number;
  /** Starts Vigil with `env.gateway` on its gateway and `env.actor` on its actor host. */
  startVigil(
    name: string,
    env: { gateway: Record<string, string>; actor: Record<string, string> },
  ): Promise<StreamingSystem>;
  say(text?: string): void;
}

/** One streaming cell. */
export interface StreamCell {
  target: 'in-process' | 'vigil';
  concurrency: number;
  load: StreamLoadSummary | null;
  failure?: string;
}

/** The memory cell. */
export interface HeldStreams {
  streams: number;
  /** Time until every stream had shown a token, seconds. */
  openSeconds: number | null;
  /** Gateway RSS with no stream open (after a warm-up), MiB. */
  idleRssMiB: number | null;
  /** Peak gateway RSS while every stream was open, MiB. */
  heldRssMiB: number | null;
  kibPerStream: number | null;
  /** The same for the gateway's V8 heap in use (what the streams' objects take, without slack). */
  idleHeapMiB: number | null;
  heldHeapMiB: number | null;
  heapKibPerStream: number | null;
  /** The same for its live heap: the self sizes in a heap snapshot, taken after a collection. */
  idleLiveMiB: number | null;
  heldLiveMiB: number | null;
  liveKibPerStream: number | null;
  outcomes: Record<string, number>;
  failure?: string;
}

/** Everything the streaming cells found. */
export interface StreamingResults {
  tokensPerStream: number;
  cells: StreamCell[];
  held: HeldStreams | null;
  failures: string[];
}

/** Runs every streaming cell, each system alone. */
export async function runStreamingBench(ctx: StreamingContext): Promise<StreamingResults> {
  const results: StreamingResults = {
    tokensPerStream: STREAM_TOKENS,
    cells: [],
    held: null,
    failures: [],
  };
  ctx.say('- streaming: ngram-chat in-process, then through the gateway');
  for (const concurrency of ctx.concurrencies) {
    results.cells.push(await cell(ctx, 'in-process', concurrency, undefined));
  }
  await withVigil(ctx, results, 'vigil-stream', { VIGIL_CONCURRENCY: '64' }, async (system) => {
    for (const concurrency of ctx.concurrencies) {
      results.cells.push(await cell(ctx, 'vigil', concurrency, system));
    }
  });
  await withVigil(
    ctx,
    results,
    'vigil-stream-held',
    {
      VIGIL_CONCURRENCY: String(Math.min(1024, ctx.streamsHeld)),
      VIGIL_CHAT_TOKEN_INTERVAL_MS: String(HELD_TOKEN_INTERVAL_MS),
    },
    async (system) => {
      results.held = await holdStreams(ctx, system);
    },
  );
  for (const c of results.cells) {
    if (c.failure) results.failures.push(`streaming ${c.target} @ ${c.concurrency}: ${c.failure}`);
  }
  if (results.held?.failure) results.failures.push(`held streams: ${results.held.failure}`);
  return results;
}

async function withVigil(
  ctx: StreamingContext,
  results: StreamingResults,
  name: string,
  actorEnv: Record<string, string>,
  use: (system: StreamingSystem) => Promise<void>,
): Promise<void> {
  let system: StreamingSystem;
  // The gateway serves its metrics (a Prometheus endpoint, as deployed) for its heap in use, and
  // writes a heap snapshot when asked, for its live heap.
  const snapshotDir = mkdtempSync(join(tmpdir(), 'vigil-bench-heap-'));
  try {
    system = await ctx.startVigil(name, {
      gateway: {
        VIGIL_METRICS_PORT: '0',
        NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}`,
      },
      actor: { VIGIL_MODELS: 'ngram-chat', ...actorEnv },
    });
  } catch (err) {
    rmSync(snapshotDir, { recursive: true, force: true });
    results.failures.push(`${name}: failed to start: ${(err as Error).message}`);
    ctx.say(`  ${name}: failed to start: ${(err as Error).message}`);
    return;
  }
  try {
    await use({ ...system, snapshotDir });
  } finally {
    await system.stop();
    rmSync(snapshotDir, { recursive: true, force: true });
  }
}

function loadOptions(
  ctx: StreamingContext,
  mode: StreamLoadOptions['mode'],
  concurrency: number,
  system: StreamingSystem | undefined,
  tokens: number,
  seconds: number,
): StreamLoadOptions {
  return {
    mode,
    url: system ? `${system.baseUrl}/v1/chat/completions` : '',
    headers: system?.headers ?? {},
    concurrency,
    tokens,
    seconds,
    warmupSeconds: mode === 'hold' ? 0 : ctx.warmupSeconds,
    timeoutMs: STREAM_TIMEOUT_MS,
  };
}

function runStreamLoad(
  ctx: StreamingContext,
  options: StreamLoadOptions,
  markers: Record<string, () => void> = {},
): Promise<StreamLoadSummary> {
  return runGenerator({
    file: join(ctx.benchDir, 'stream-load.ts'),
    options,
    limitMs: (options.warmupSeconds + options.seconds) * 1000 + 2 * options.timeoutMs + 30_000,
    parse: (line) => streamLoadSummarySchema.parse(JSON.parse(line)),
    markers: { [MEASURING_LINE]: () => undefined, ...markers },
  });
}

async function cell(
  ctx: StreamingContext,
  target: StreamCell['target'],
  concurrency: number,
  system: StreamingSystem | undefined,
): Promise<StreamCell> {
  const mode = target === 'vigil' ? 'gateway' : 'in-process';
  const result: StreamCell = { target, concurrency, load: null };
  try {
    const options = loadOptions(ctx, mode, concurrency, system, STREAM_TOKENS, ctx.seconds);
    result.load = await runStreamLoad(ctx, options);
    const l = result.load;
    if (l.count === 0 || l.errors / l.count > 0.01) {
      result.failure = `${l.errors} of ${l.count} streams failed (${JSON.stringify(l.outcomes)})`;
    }
  } catch (err) {
    result.failure = (err as Error).message;
  }
  const l = result.load;
  ctx.say(
    `  ${target} @ ${concurrency} streams: ` +
      (l
        ? `time to first token p50 ${l.ttftP50} ms, p99 ${l.ttftP99} ms, ${l.tokensPerSecond} tokens/s`
        : 'no figures') +
      (result.failure ? ` -- FAILED: ${result.failure}` : ''),
  );
  return result;
}

/** The gateway's memory now, MiB: RSS, and V8 heap in use when it serves metrics. */
async function memoryMiB(system: StreamingSystem): Promise<{ rss?: number; heap?: number }> {
  const kib = readRssKiB(system.gatewayPid);
  const metrics = system.metricsUrl ? await scrape(system.metricsUrl) : undefined;
  const heapBytes = metrics
    ?.filter((s) => s.name === 'v8js_memory_heap_used')
    .reduce((sum, s) => sum + s.value, 0);
  return {
    ...(kib === undefined ? {} : { rss: kib / 1024 }),
    ...(heapBytes ? { heap: heapBytes / MIB } : {}),
  };
}

const MIB = 1024 * 1024;
const median = (xs: number[]): number | null =>
  xs.length === 0 ? null : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round1 = (x: number | null): number | null => (x === null ? null : Math.round(x * 10) / 10);

/**
 * The gateway's live heap, MiB: it writes a heap snapshot on `SIGUSR2` (collecting first) into
 * `snapshotDir`, and the sum of its objects' self sizes is what is alive. `null` when the gateway
 * takes no snapshots or none comes in time.
 */
async function liveHeapMiB(system: StreamingSystem): Promise<number | null> {
  const dir = system.snapshotDir;
  if (!dir) return null;
  const before = new Set(readdirSync(dir));
  process.kill(system.gatewayPid, 'SIGUSR2');
  const deadline = Date.now() + SNAPSHOT_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const file = readdirSync(dir).find((name) => !before.has(name));
    if (!file) continue;
    try {
      // Written in one go; it parses once it is whole.
      const bytes = liveBytes(JSON.parse(readFileSync(join(dir, file), 'utf8')) as HeapSnapshot);
      rmSync(join(dir, file), { force: true });
      return bytes / MIB;
    } catch {
      continue;
    }
  }
  return null;
}

const SNAPSHOT_TIMEOUT_MS = 30_000;

/** The parts of V8's heap snapshot format read here. */
interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[] } };
  nodes: number[];
}

/** The sum of the self sizes of a snapshot's nodes. */
function liveBytes(s: HeapSnapshot): number {
  const fields = s.snapshot.meta.node_fields;
  const size = fields.indexOf('self_size');
  let total = 0;
  for (let i = size; i < s.nodes.length; i += fields.length) total += s.nodes[i]!;
  return total;
}

/** Median of a few readings of the gateway's memory, taken `RSS_SAMPLE_INTERVAL_MS` apart. */
async function steadyMemoryMiB(
  system: StreamingSystem,
  samples: number,
): Promise<{ rss: number | null; heap: number | null }> {
  const rss: number[] = [];
  const heap: number[] = [];
  for (let i = 0; i < samples; i++) {
    const m = await memoryMiB(system);
    if (m.rss !== undefined) rss.push(m.rss);
    if (m.heap !== undefined) heap.push(m.heap);
    await new Promise((resolve) => setTimeout(resolve, RSS_SAMPLE_INTERVAL_MS));
  }
  return { rss: median(rss), heap: median(heap) };
}

async function holdStreams(ctx: StreamingContext, system: StreamingSystem): Promise<HeldStreams> {
  const n = ctx.streamsHeld;
  // The answer outlasts the hold: every stream is still producing when it is closed.
  const tokens = 1024;
  const held: HeldStreams = {
    streams: n,
    openSeconds: null,
    idleRssMiB: null,
    heldRssMiB: null,
    kibPerStream: null,
    idleHeapMiB: null,
    heldHeapMiB: null,
    heapKibPerStream: null,
    idleLiveMiB: null,
    heldLiveMiB: null,
    liveKibPerStream: null,
    outcomes: {},
  };
  try {
    await runStreamLoad(ctx, loadOptions(ctx, 'hold', WARM_UP_STREAMS, system, tokens, 2));
    const idle = await steadyMemoryMiB(system, 5);
    held.idleRssMiB = round1(idle.rss);
    held.idleHeapMiB = round1(idle.heap);
    const idleLive = await liveHeapMiB(system);
    // Peaks over the hold: a capacity plan needs the most a stream takes.
    let peakRss = 0;
    let peakHeap = 0;
    let sampler: NodeJS.Timeout | undefined;
    const sample = (): void => {
      void memoryMiB(system).then((m) => {
        peakRss = Math.max(peakRss, m.rss ?? 0);
        peakHeap = Math.max(peakHeap, m.heap ?? 0);
      });
    };
    let heldLive: Promise<number | null> = Promise.resolve(null);
    const load = await runStreamLoad(
      ctx,
      loadOptions(ctx, 'hold', n, system, tokens, ctx.seconds),
      {
        [STREAMS_OPEN_LINE]: () => {
          sample();
          sampler = setInterval(sample, RSS_SAMPLE_INTERVAL_MS);
          // Halfway through the hold, every stream open and settled, the live heap; the RSS and
          // heap peaks are of the first half (a snapshot costs memory of its own).
          heldLive = new Promise((resolve) => setTimeout(resolve, (ctx.seconds * 1000) / 2)).then(
            () => {
              clearInterval(sampler);
              return liveHeapMiB(system);
            },
          );
        },
      },
    );
    clearInterval(sampler);
    const live = await heldLive;
    held.outcomes = load.outcomes;
    held.openSeconds = load.seconds;
    if (load.errors > 0 || peakRss === 0) {
      held.failure = `${load.errors} of ${load.count} streams were not held open (${JSON.stringify(load.outcomes)})`;
    } else {
      held.heldRssMiB = round1(peakRss);
      if (idle.rss !== null) held.kibPerStream = Math.round(((peakRss - idle.rss) * 1024) / n);
      if (peakHeap > 0 && idle.heap !== null) {
        held.heldHeapMiB = round1(peakHeap);
        held.heapKibPerStream = Math.round(((peakHeap - idle.heap) * 1024) / n);
      }
      if (live !== null && idleLive !== null) {
        held.idleLiveMiB = round1(idleLive);
        held.heldLiveMiB = round1(live);
        held.liveKibPerStream = Math.round(((live - idleLive) * 1024) / n);
      }
    }
  } catch (err) {
    held.failure = (err as Error).message;
  }
  ctx.say(
    `  vigil holding ${n} streams: ` +
      (held.kibPerStream !== null
        ? `gateway RSS ${held.idleRssMiB} MiB idle, ${held.heldRssMiB} MiB held: ` +
          `${held.kibPerStream} KiB per stream; V8 heap ${held.idleHeapMiB} -> ` +
          `${held.heldHeapMiB} MiB, ${held.heapKibPerStream} KiB per stream; live heap ` +
          `${held.idleLiveMiB} -> ${held.heldLiveMiB} MiB, ${held.liveKibPerStream} KiB per ` +
          `stream (all open in ${held.openSeconds} s)`
        : 'no figures') +
      (held.failure ? ` -- FAILED: ${held.failure}` : ''),
  );
  return held;
}

/** The streaming figures, side by side, with the aims. */
export function renderStreaming(results: StreamingResults): string[] {
  const lines = [
    `Streaming: ngram-chat, ${results.tokensPerStream}-token answers, OpenAI chat streams ` +
      '(vigil) against model.run in one process (in-process):',
  ];
  const head = [
    'target',
    'streams',
    'TTFT p50 ms',
    'TTFT p99 ms',
    'tokens/s',
    'streams/s',
    'errors',
  ];
  const rows = results.cells.map((c) => [
    c.target,
    String(c.concurrency),
    fmt(c.load?.ttftP50, 2),
    fmt(c.load?.ttftP99, 2),
    fmt(c.load?.tokensPerSecond, 0),
    fmt(c.load?.streamsPerSecond, 1),
    c.load ? `${c.load.errors}${c.failure ? ' !' : ''}` : 'failed',
  ]);
  lines.push(...layout(head, rows));
  const concurrencies = [...new Set(results.cells.map((c) => c.concurrency))];
  for (const concurrency of concurrencies) {
    const of = (target: StreamCell['target']) =>
      results.cells.find((c) => c.target === target && c.concurrency === concurrency)?.load
        ?.ttftP50;
    const vigil = of('vigil');
    const alone = of('in-process');
    if (vigil == null || alone == null) continue;
    const overhead = vigil - alone;
    const aim =
      concurrency === 1
        ? ` (aim <= ${TARGET_TTFT_OVERHEAD_MS} ms: ${overhead <= TARGET_TTFT_OVERHEAD_MS ? 'met' : 'NOT met'})`
        : '';
    lines.push(
      `  time to first token at ${concurrency} stream${concurrency === 1 ? '' : 's'}, ` +
        `gateway over in-process at p50: ${overhead.toFixed(2)} ms${aim}`,
    );
  }
  const h = results.held;
  if (h) {
    const aim =
      h.liveKibPerStream === null
        ? ''
        : ` (aim <= ${TARGET_KIB_PER_STREAM} KiB: ${h.liveKibPerStream <= TARGET_KIB_PER_STREAM ? 'met' : 'NOT met'})`;
    lines.push(
      `  gateway memory with ${h.streams} open streams: ` +
        (h.kibPerStream === null
          ? `no figures${h.failure ? ` (${h.failure})` : ''}`
          : `live heap ${fmt(h.idleLiveMiB, 1)} -> ${fmt(h.heldLiveMiB, 1)} MiB, ` +
            `${h.liveKibPerStream ?? '-'} KiB per stream${aim}; V8 heap in use ` +
            `${fmt(h.idleHeapMiB, 1)} -> ${fmt(h.heldHeapMiB, 1)} MiB peak, ` +
            `${h.heapKibPerStream ?? '-'} KiB per stream; RSS ${fmt(h.idleRssMiB, 1)} -> ` +
            `${fmt(h.heldRssMiB, 1)} MiB peak, ${h.kibPerStream} KiB per stream`),
    );
  }
  return lines;
}
