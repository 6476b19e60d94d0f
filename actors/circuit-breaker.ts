/**
 * A circuit breaker over a rolling window of outcomes. When the failure ratio passes the
 * threshold (with enough calls to judge), it opens: the actor stops pulling work, so tasks wait in
 * the stream instead of burning their retries on a broken model. After a cooldown it lets a few
 * probe calls through (half-open); a probe that succeeds closes it, one that fails reopens it.
 */
import { BreakerState } from '../protocol/index.js';

/** Options of {@link createCircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Length of the rolling window, ms. Default 30 s. */
  windowMs?: number;
  /** Outcomes needed in the window before the ratio is trusted. Default 10. */
  minCalls?: number;
  /** Failure ratio at or above which the breaker opens, 0..1. Default 0.5. */
  failureRatio?: number;
  /** How long it stays open before probing, ms. Default 10 s. */
  cooldownMs?: number;
  /** Successful probes needed in half-open to close. Default 2. */
  probes?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** Defaults of {@link CircuitBreakerOptions}. */
export const CIRCUIT_BREAKER_DEFAULTS = {
  windowMs: 30_000,
  minCalls: 10,
  failureRatio: 0.5,
  cooldownMs: 10_000,
  probes: 2,
} as const;

/** The window is kept as this many buckets: memory stays constant whatever the call rate. */
const BUCKETS = 10;

/** A circuit breaker. */
export interface CircuitBreaker {
  /** The state now (an open breaker past its cooldown reports half-open). */
  readonly state: BreakerState;
  /** Records one outcome. */
  record(success: boolean): void;
  /** Failure ratio over the current window (0 when empty). */
  failureRatio(): number;
  /** Called on every change of state. */
  onChange(listener: (state: BreakerState) => void): void;
}

/** Creates a closed breaker. */
export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  const o = { ...CIRCUIT_BREAKER_DEFAULTS, now: Date.now, ...options };
  const bucketMs = o.windowMs / BUCKETS;
  const successes = new Array<number>(BUCKETS).fill(0);
  const failures = new Array<number>(BUCKETS).fill(0);
  let bucketStart = Math.floor(o.now() / bucketMs);
  let state: BreakerState = BreakerState.Closed;
  let openedAt = 0;
  let probeSuccesses = 0;
  const listeners: ((state: BreakerState) => void)[] = [];

  const roll = (): void => {
    const current = Math.floor(o.now() / bucketMs);
    const stale = Math.min(BUCKETS, current - bucketStart);
    for (let i = 1; i <= stale; i += 1) {
      const slot = (bucketStart + i) % BUCKETS;
      successes[slot] = 0;
      failures[slot] = 0;
    }
    if (stale > 0) bucketStart = current;
  };
  const totals = (): { ok: number; failed: number } => {
    roll();
    let ok = 0;
    let failed = 0;
    for (let i = 0; i < BUCKETS; i += 1) {
      ok += successes[i]!;
      failed += failures[i]!;
    }
    return { ok, failed };
  };
  const moveTo = (next: BreakerState): void => {
    if (next === state) return;
    state = next;
    if (next === BreakerState.Open) openedAt = o.now();
    if (next === BreakerState.HalfOpen) probeSuccesses = 0;
    if (next === BreakerState.Closed) {
      successes.fill(0);
      failures.fill(0);
    }
    for (const listener of listeners) listener(next);
  };
  const current = (): BreakerState => {
    if (state === BreakerState.Open && o.now() - openedAt >= o.cooldownMs)
      moveTo(BreakerState.HalfOpen);
    return state;
  };

  return {
    get state() {
      return current();
    },
    record(success) {
      const now = current();
      if (now === BreakerState.HalfOpen) {
        if (!success) moveTo(BreakerState.Open);
        else if (++probeSuccesses >= o.probes) moveTo(BreakerState.Closed);
        return;
      }
      if (now === BreakerState.Open) return; // a straggler from before it opened
      roll();
      const slot = bucketStart % BUCKETS;
      if (success) successes[slot]! += 1;
      else failures[slot]! += 1;
      const { ok, failed } = totals();
      if (ok + failed >= o.minCalls && failed / (ok + failed) >= o.failureRatio) {
        moveTo(BreakerState.Open);
      }
    },
    failureRatio() {
      const { ok, failed } = totals();
      return ok + failed === 0 ? 0 : failed / (ok + failed);
    },
    onChange(listener) {
      listeners.push(listener);
    },
  };
}
