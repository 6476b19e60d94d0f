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
