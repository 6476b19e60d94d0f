/**
 * The bench's streaming cells: OpenAI chat streams of `ngram-chat` through Vigil's gateway
 * against the same model called in-process (time to first token, tokens per second, at 1 and 64
 * streams), and the gateway's memory while it holds many streams open at once.
 *
 * Each cell's load comes from `stream-load.ts` in its own process. The held streams run on a model
 * paced at one token every 5 s, so all of them are live (tokens flowing, consumers open) while
 * the gateway's RSS is read; per stream is the growth over the same gateway idle, divided by the
 * count.
 */
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
import { readRssKiB } from './process-sampler.js';
import { fmt, layout } from './table.js';

/** Tokens per answer in the time-to-first-token and throughput cells. */
const STREAM_TOKENS = 64;
/** The model's pace while streams are held: every stream stays live, the host stays cool. */
const HELD_TOKEN_INTERVAL_MS = 5_000;
/** Streams opened and held first, unmeasured, so the gateway's idle figure is a warm one. */
const WARM_UP_STREAMS = 64;
/** Aim: gateway memory per open stream, KiB. */
export const TARGET_KIB_PER_STREAM = 64;
/** Aim: time to first token through the gateway, above the in-process model's, at p50, ms. */
export const TARGET_TTFT_OVERHEAD_MS = 2;
/** A stream slower than this is abandoned and counted as an error, ms. */
const STREAM_TIMEOUT_MS = 60_000;
const RSS_SAMPLE_MS = 500;

/** A Vigil system the streaming cells run against. */
export interface StreamingSystem {
  /** The gateway's base URL. */
  baseUrl: string;
  headers: Record<string, string>;
  gatewayPid: number;
  /** The gateway's Prometheus endpoint, when it serves one (for its V8 heap). */
  metricsUrl?: string;
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
  try {
    // The gateway serves its metrics for its heap figure (a Prometheus endpoint, as deployed).
    system = await ctx.startVigil(name, {
      gateway: { VIGIL_METRICS_PORT: '0' },
      actor: { VIGIL_MODELS: 'ngram-chat', ...actorEnv },
    });
  } catch (err) {
    results.failures.push(`${name}: failed to start: ${(err as Error).message}`);
    ctx.say(`  ${name}: failed to start: ${(err as Error).message}`);
    return;
  }
  try {
    await use(system);
  } finally {
    await system.stop();
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

/** Median of a few readings of the gateway's memory, taken `RSS_SAMPLE_MS` apart. */
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
    await new Promise((resolve) => setTimeout(resolve, RSS_SAMPLE_MS));
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
    outcomes: {},
  };
  try {
    await runStreamLoad(ctx, loadOptions(ctx, 'hold', WARM_UP_STREAMS, system, tokens, 2));
    const idle = await steadyMemoryMiB(system, 5);
    held.idleRssMiB = round1(idle.rss);
    held.idleHeapMiB = round1(idle.heap);
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
    const load = await runStreamLoad(
      ctx,
      loadOptions(ctx, 'hold', n, system, tokens, ctx.seconds),
      {
        [STREAMS_OPEN_LINE]: () => {
          sample();
          sampler = setInterval(sample, RSS_SAMPLE_MS);
        },
      },
    );
    clearInterval(sampler);
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
    }
  } catch (err) {
    held.failure = (err as Error).message;
  }
  ctx.say(
    `  vigil holding ${n} streams: ` +
      (held.kibPerStream !== null
        ? `gateway RSS ${held.idleRssMiB} MiB idle, ${held.heldRssMiB} MiB held: ` +
          `${held.kibPerStream} KiB per stream; V8 heap ${held.idleHeapMiB} -> ` +
          `${held.heldHeapMiB} MiB, ${held.heapKibPerStream} KiB per stream ` +
          `(all open in ${held.openSeconds} s)`
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
      h.kibPerStream === null
        ? ''
        : ` (aim <= ${TARGET_KIB_PER_STREAM} KiB: ${h.kibPerStream <= TARGET_KIB_PER_STREAM ? 'met' : 'NOT met'})`;
    lines.push(
      `  gateway memory with ${h.streams} open streams: ` +
        (h.kibPerStream === null
          ? `no figures${h.failure ? ` (${h.failure})` : ''}`
          : `RSS ${fmt(h.idleRssMiB, 1)} MiB idle, ${fmt(h.heldRssMiB, 1)} MiB peak held, ` +
            `${h.kibPerStream} KiB per stream${aim}; V8 heap in use ${fmt(h.idleHeapMiB, 1)} -> ` +
            `${fmt(h.heldHeapMiB, 1)} MiB, ${h.heapKibPerStream ?? '-'} KiB per stream`),
    );
  }
  return lines;
}
