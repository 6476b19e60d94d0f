/**
 * What the bench hands the load generator (`load.ts`) and what it prints back. Both sides import
 * these types so the JSON between the two processes has one definition.
 */
import { z } from 'zod';

/** One cell of load: a fixed request, a fixed number in flight, a fixed time. */
export interface LoadOptions {
  /** Full URL of the endpoint, `http://127.0.0.1:<port>/...`; plain HTTP only. */
  url: string;
  /** Request headers, sent on every request. */
  headers: Record<string, string>;
  /** Request body (UTF-8), sent on every request. */
  body: string;
  /** Requests in flight at once: one async loop and one keep-alive socket each. */
  concurrency: number;
  /** Measured time, seconds. */
  seconds: number;
  /** Time before the measurement at the same load, seconds; nothing from it is recorded. */
  warmupSeconds: number;
  /** A request slower than this is abandoned and counted as an error, ms. */
  timeoutMs: number;
}

/** Validates the options the load generator receives on its command line. */
export const loadOptionsSchema = z.object({
  url: z.url({ protocol: /^http$/ }),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
  concurrency: z.number().int().min(1).max(4096),
  seconds: z.number().positive().max(3600),
  warmupSeconds: z.number().min(0).max(600),
  timeoutMs: z.number().int().positive().max(600_000),
});

/** The line the load generator prints when its warm-up ends and the measured window begins. */
export const MEASURING_LINE = '{"event":"measuring"}';

/**
 * The one JSON line the load generator prints. Latencies are milliseconds over the requests that
 * got a 2xx answer, `null` when there were none.
 */
export interface LoadSummary {
  /** Requests started in the measured window and finished, whatever their outcome. */
  count: number;
  /** Of those, non-2xx answers, transport errors and timeouts. */
  errors: number;
  /** Outcome counts: HTTP status codes, `error:<code>` and `timeout`. */
  outcomes: Record<string, number>;
  /** From the start of the measured window to the end of its last request. */
  seconds: number;
  /** 2xx answers per second. */
  rps: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  /** The generator's own CPU over the measured window, % of one core. */
  cpuPercent: number;
}

/** Validates the load generator's output line in the parent. */
export const loadSummarySchema = z.object({
  count: z.number().int().min(0),
  errors: z.number().int().min(0),
  outcomes: z.record(z.string(), z.number().int().min(0)),
  seconds: z.number().min(0),
  rps: z.number().min(0),
  p50: z.number().nullable(),
  p90: z.number().nullable(),
  p99: z.number().nullable(),
  max: z.number().nullable(),
  cpuPercent: z.number().min(0),
});

/** The streaming cells' load: OpenAI chat streams through a gateway, or the model in-process. */
export interface StreamLoadOptions {
  mode: 'gateway' | 'in-process' | 'hold';
  /** The chat completions URL (`gateway`, `hold`); unused in-process. */
  url: string;
  headers: Record<string, string>;
  /** Streams at once (`hold`: how many are opened and held). */
  concurrency: number;
  /** Completion tokens per stream (the answer is made exactly this long). */
  tokens: number;
  /** Measured time (`hold`: how long the streams are held open), seconds. */
  seconds: number;
  warmupSeconds: number;
  /** A stream slower than this is abandoned and counted as an error, ms. */
  timeoutMs: number;
}

export const streamLoadOptionsSchema = z.object({
  mode: z.enum(['gateway', 'in-process', 'hold']),
  url: z.string(),
  headers: z.record(z.string(), z.string()),
  concurrency: z.number().int().min(1).max(4096),
  tokens: z.number().int().min(1).max(1024),
  seconds: z.number().positive().max(3600),
  warmupSeconds: z.number().min(0).max(600),
  timeoutMs: z.number().int().positive().max(600_000),
});

/** The line `hold` prints once every stream has shown a token. */
export const STREAMS_OPEN_LINE = '{"event":"streams-open"}';

/**
 * The one chat request every streaming cell sends: a fixed prompt, an answer of exactly `tokens`
 * tokens (`min_tokens` keeps it from ending early), a seed per stream.
 */
export function streamRequest(tokens: number, seed: number) {
  return {
    model: 'ngram-chat',
    messages: [{ role: 'user' as const, content: 'Tell me about the sea and the ships.' }],
    max_tokens: tokens,
    min_tokens: tokens,
    seed,
    stream: true,
    stream_options: { include_usage: true },
  };
}

/** The one JSON line the streaming load generator prints. Times are ms; `null` when none. */
export interface StreamLoadSummary {
  /** Streams started in the measured window and finished, whatever their outcome. */
  count: number;
  /** Of those, streams that did not end with `[DONE]` and a token (`hold`: not closed by us). */
  errors: number;
  outcomes: Record<string, number>;
  /** The measured window (`hold`: the time until every stream had shown a token), seconds. */
  seconds: number;
  streamsPerSecond: number;
  /** Time to first token: request sent to first text. */
  ttftP50: number | null;
  ttftP99: number | null;
  /** Completion tokens over the measured window, and per second. */
  tokens: number;
  tokensPerSecond: number;
  cpuPercent: number;
}

export const streamLoadSummarySchema = z.object({
  count: z.number().int().min(0),
  errors: z.number().int().min(0),
  outcomes: z.record(z.string(), z.number().int().min(0)),
  seconds: z.number().min(0),
  streamsPerSecond: z.number().min(0),
  ttftP50: z.number().nullable(),
  ttftP99: z.number().nullable(),
  tokens: z.number().int().min(0),
  tokensPerSecond: z.number().min(0),
  cpuPercent: z.number().min(0),
});

/** A load generator's options, from its one command-line argument (JSON), checked by `schema`. */
export function parseGeneratorArgs<T>(
  argv: readonly string[],
  schema: z.ZodType<T>,
  script: string,
): T {
  const raw = argv[2];
  if (raw === undefined) throw new Error(`usage: ${script} '<options as JSON>'`);
  const parsed = schema.safeParse(JSON.parse(raw));
  if (!parsed.success) throw new Error(`${script}: bad options: ${parsed.error.message}`);
  return parsed.data;
}

/** Nearest-rank percentile of an ascending array; `null` when it is empty. */
export function percentile(sorted: Float64Array, q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] ?? null;
}

/** Rounds to microseconds: more digits than that is noise in a JSON line. */
export function ms3(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}
