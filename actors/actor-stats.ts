/**
 * What an actor counts about itself for its heartbeats (the OpenTelemetry instruments are in
 * `task-metrics.ts`), and the one place a model run's outcome reaches the circuit breaker.
 */
import { ErrorCode, type BreakerState, type WireError } from '../protocol/index.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import type { TaskMetrics } from './task-metrics.js';

/** Runs kept for the latency percentiles in heartbeats. */
const LATENCY_SAMPLES = 256;

/** Counters an actor keeps about itself. */
export interface ActorStats {
  inFlight: number;
  succeeded: number;
  failed: number;
  retried: number;
  deadLettered: number;
  /** Tasks ended as cancelled (aborted mid-run, or never run). */
  cancelled: number;
  /** Redeliveries answered from an already stored outcome. */
  reused: number;
  /** Runs whose outcome was discarded because another attempt stored one first. */
  superseded: number;
  /** Model runs that ended in an error (any kind). */
  errors: number;
  /** Model runs finished, successful or not. */
  processed: number;
  /** Run latency over the last 256 runs, ms. */
  latencyMs: { p50: number; p99: number };
  breaker: BreakerState;
  draining: boolean;
}

/** The task counts of {@link ActorStats}, bumped where each outcome happens. */
export type TaskCounts = Pick<
  ActorStats,
  | 'succeeded'
  | 'failed'
  | 'retried'
  | 'deadLettered'
  | 'cancelled'
  | 'reused'
  | 'superseded'
  | 'errors'
  | 'processed'
>;

/** An actor's running tally. */
export interface ActorTally {
  readonly counts: TaskCounts;
  /** Counts a finished run and feeds the breaker: only model failures say the model is sick. */
  modelRun(latencyMs: number, failure: WireError | undefined): void;
  /** The stats now, with what only the actor knows. */
  stats(inFlight: number, draining: boolean): ActorStats;
}

/** A tally at zero that feeds `breaker` and `metrics`. */
export function createActorTally(breaker: CircuitBreaker, metrics: TaskMetrics): ActorTally {
  return new ActorTallyImpl(breaker, metrics);
}

class ActorTallyImpl implements ActorTally {
  readonly counts: TaskCounts = {
    succeeded: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    cancelled: 0,
    reused: 0,
    superseded: 0,
    errors: 0,
    processed: 0,
  };
  readonly #latencies: number[] = [];
  readonly #breaker: CircuitBreaker;
  readonly #metrics: TaskMetrics;

  constructor(breaker: CircuitBreaker, metrics: TaskMetrics) {
    this.#breaker = breaker;
    this.#metrics = metrics;
  }

  modelRun(latencyMs: number, failure: WireError | undefined): void {
    this.counts.processed += 1;
    this.#metrics.modelRun(latencyMs);
    if (this.#latencies.length >= LATENCY_SAMPLES) this.#latencies.shift();
    this.#latencies.push(latencyMs);
    if (failure) this.counts.errors += 1;
    // A client's bad input or a passed deadline says nothing about the model's health.
    const modelFault =
      failure !== undefined && failure.retryable && failure.code !== ErrorCode.DeadlineExceeded;
    if (!failure || modelFault) this.#breaker.record(!failure);
  }

  stats(inFlight: number, draining: boolean): ActorStats {
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    const pick = (q: number): number =>
      sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    return {
      inFlight,
      ...this.counts,
      latencyMs: { p50: pick(0.5), p99: pick(0.99) },
      breaker: this.#breaker.state,
      draining,
    };
  }
}
