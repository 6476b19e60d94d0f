/**
 * `echo`: returns its input unchanged. It exists to test the data path without model noise, and
 * it is where fault drills inject delays and failures. Faults are an operator switch: a client may
 * ask for a delay or a failure only when the operator turned injection on, so no request can make
 * a production node misbehave on its own.
 */

import { z } from 'zod';
import {
  ErrorCode,
  RetryableError,
  TerminalError,
  validate,
  ValidationError,
} from '../../protocol/index.js';
import { ModelKind, throwIfAborted } from './runtime.js';
import type { ModelRunContext, ModelRuntime } from './runtime.js';

/** Cap on a client-requested `params.delay_ms` when the options set none, in milliseconds. */
export const DEFAULT_ECHO_MAX_DELAY_MS = 60_000;

// Node timers overflow past 2^31 - 1 ms; a day is far beyond any drill and keeps the sum in range.
const MAX_DELAY_MS = 86_400_000;

/** Operator-controlled fault injection for the echo model. */
export interface EchoFaultOptions {
  /** Master switch. When false, the other fields are ignored and fault params are rejected. */
  enabled: boolean;
  /** Fraction of calls, in [0, 1], that fail with a `RetryableError`. Default 0. */
  failureRate?: number;
  /** Delay added to every call, in milliseconds. Default 0. */
  delayMs?: number;
  /** Cap for a client-requested `params.delay_ms`, in milliseconds. Default {@link DEFAULT_ECHO_MAX_DELAY_MS}. */
  maxDelayMs?: number;
}

/** Options for {@link createEchoModel}. */
export interface EchoOptions {
  /** Fault injection; off when absent. */
  faults?: EchoFaultOptions;
}

/** The request params that ask for a fault; each is rejected unless the operator enabled faults. */
const FAULT_PARAM_KEYS = ['delay_ms', 'fail', 'fail_until'] as const;

const faultOptionsSchema = z.object({
  enabled: z.boolean(),
  failureRate: z.number().min(0).max(1).default(0),
  delayMs: z.number().int().min(0).max(MAX_DELAY_MS).default(0),
  maxDelayMs: z.number().int().min(0).max(MAX_DELAY_MS).default(DEFAULT_ECHO_MAX_DELAY_MS),
});

const faultParamsSchema = z.object({
  delay_ms: z.number().int().min(0).optional(),
  fail: z.enum(['retryable', 'terminal']).optional(),
  /** Epoch ms: every call before it fails retryably (a task that dies now and passes later). */
  fail_until: z.number().int().min(0).optional(),
});

/** `echo`'s output check: an object holding the input under `echo`. */
export function checkEchoOutput(output: unknown): string | undefined {
  if (typeof output !== 'object' || output === null || !Object.hasOwn(output, 'echo'))
    return 'output is not an object with an echo field';
  return undefined;
}

/** Creates the `echo` model. Throws `ValidationError` when the fault options are out of range. */
export function createEchoModel(options: EchoOptions = {}): ModelRuntime {
  const faults =
    options.faults === undefined
      ? undefined
      : validate(faultOptionsSchema, options.faults, 'echo.faults');
  const faultsEnabled = faults?.enabled === true;

  return {
    name: 'echo',
    version: 'v1',
    kind: ModelKind.Echo,
    description: faultsEnabled
      ? 'Returns its input unchanged (fault injection enabled)'
      : 'Returns its input unchanged',
    checkOutput: checkEchoOutput,
    async run(input, params, ctx): Promise<{ echo: unknown }> {
      throwIfAborted(ctx);
      if (faults === undefined || !faults.enabled) {
        const key = FAULT_PARAM_KEYS.find((name) => params[name] !== undefined);
        if (key !== undefined) {
          throw new ValidationError('fault injection is disabled by the operator', `params.${key}`);
        }
        return { echo: input };
      }

      const requested = validate(faultParamsSchema, params, 'params');
      const delayMs = faults.delayMs + Math.min(requested.delay_ms ?? 0, faults.maxDelayMs);
      if (delayMs > 0) await sleepReportingProgress(delayMs, ctx);
      // Math.random, not a seeded PRNG: this is operator-configured chaos, not model output.
      if (faults.failureRate > 0 && Math.random() < faults.failureRate) {
        throw new RetryableError('injected failure (failureRate)', ErrorCode.ModelFailed);
      }
      if (requested.fail === 'terminal') {
        throw new TerminalError('injected terminal failure', ErrorCode.ModelRejected);
      }
      if (requested.fail === 'retryable') {
        throw new RetryableError('injected retryable failure', ErrorCode.ModelFailed);
      }
      if (requested.fail_until !== undefined && Date.now() < requested.fail_until) {
        throw new RetryableError(
          `injected retryable failure until ${new Date(requested.fail_until).toISOString()}`,
          ErrorCode.ModelFailed,
        );
      }
      return { echo: input };
    },
  };
}

/** Progress is reported this often during a delay, ms. */
const PROGRESS_EVERY_MS = 250;

/** A delay in steps, reporting the fraction done after each: a stand-in for a long model run. */
async function sleepReportingProgress(ms: number, ctx: ModelRunContext): Promise<void> {
  const start = Date.now();
  // One reading of the clock per step, so the step that ends the loop is the one reported as 1
  // (reading it twice let the clock pass `ms` between the report and the check).
  for (let waited = 0; waited < ms;) {
    await sleep(Math.min(PROGRESS_EVERY_MS, ms - waited), ctx.signal);
    waited = Date.now() - start;
    ctx.onProgress?.(Math.min(1, waited / ms), 'waiting');
  }
}

/** Waits `ms`, but rejects as soon as `signal` aborts so a drained or expired task stops at once. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new RetryableError('aborted', ErrorCode.DeadlineExceeded));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new RetryableError('aborted', ErrorCode.DeadlineExceeded));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
