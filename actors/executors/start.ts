/**
 * How executors are started: `startExecutor` picks the isolation the spec asks for, and a
 * starter with a spare keeps one executor booted ahead of need.
 *
 * Starting an executor costs a thread or process boot plus a model load: about 0.2 s compiled
 * and 0.5 s under tsx for the built-in models, far more for a real model. With a spare, a
 * supervisor's restart takes an executor that is already up, and costs the backoff alone. The
 * price is the spare's memory (one more copy of the model), hence opt-in.
 */

import { startChildProcessExecutor } from './child-process.js';
import { ExecutorStartError } from './errors.js';
import type { ExecutorSpec, ModelExecutor } from './executor.js';
import { startInProcessExecutor } from './in-process.js';
import type { StartExecutorOptions } from './remote.js';
import { startWorkerThreadExecutor } from './worker-thread.js';

/**
 * Starts an executor of `spec.model` with the isolation the spec asks for. Resolves once the
 * model is built and the executor reported ready; rejects with `ExecutorStartError` (retryable
 * for a timeout or a failed spawn, terminal for an unknown model or bad model options), or with
 * a terminal `invalid_request` error when `options` holds a value that cannot work.
 */
export function startExecutor(
  spec: ExecutorSpec,
  options: StartExecutorOptions = {},
): Promise<ModelExecutor> {
  switch (spec.isolation) {
    case 'in-process':
      return startInProcessExecutor(spec, options);
    case 'worker-thread':
      return startWorkerThreadExecutor(spec, options);
    case 'child-process':
      return startChildProcessExecutor(spec, options);
    default:
      // Reachable from configuration that skipped validation.
      return Promise.reject(
        new ExecutorStartError(`unknown isolation ${String(spec.isolation)}`, false),
      );
  }
}

/** Starts executors of one spec; pass `start` to `Supervisor.supervise`. */
export interface ExecutorStarter {
  /** A ready executor: the spare when one is up, else a new one. Rejects as `startExecutor` does. */
  start(): Promise<ModelExecutor>;
  /** Terminates the spare and starts no more. Idempotent. */
  close(): Promise<void>;
  /** Spares booted and waiting right now (0 or 1): for metrics, and tests that need one up. */
  readonly sparesReady: number;
}

/** Options of {@link createExecutorStarter}. */
export interface ExecutorStarterOptions extends StartExecutorOptions {
  /** Executors kept booted ahead of need: 0 (start on demand) or 1. Default 0. */
  spares?: 0 | 1;
}

interface Spare {
  readonly executor: ModelExecutor;
  dead: boolean;
}

/**
 * Creates a starter of `spec` executors. With `spares: 1`, every executor it hands out is
 * followed by booting the next one, which waits, idle, for the following `start()`.
 */
export function createExecutorStarter(
  spec: ExecutorSpec,
  options: ExecutorStarterOptions = {},
): ExecutorStarter {
  const { spares = 0, ...startOptions } = options;
  let spare: Promise<Spare | undefined> | undefined;
  let ready: Spare | undefined;
  let closed = false;

  const warm = (): void => {
    if (spares === 0 || closed || spare !== undefined) return;
    // A spare that fails to start is dropped: the next start() starts one itself and says why.
    spare = startExecutor(spec, startOptions).then(
      (executor) => {
        const entry: Spare = { executor, dead: false };
        void executor.exited.then(() => (entry.dead = true));
        if (closed) void executor.terminate();
        else ready = entry;
        return entry;
      },
      () => undefined,
    );
  };

  return {
    async start() {
      if (closed) {
        throw new ExecutorStartError(`executor starter of ${spec.model} is closed`, false);
      }
      // Claimed before the await, so two concurrent calls never get the same executor.
      const claimed = spare;
      spare = undefined;
      ready = undefined;
      const taken = claimed === undefined ? undefined : await claimed;
      // A spare that died while it waited is no better than none.
      const executor =
        taken !== undefined && !taken.dead
          ? taken.executor
          : await startExecutor(spec, startOptions);
      warm();
      return executor;
    },
    async close() {
      closed = true;
      const claimed = spare;
      spare = undefined;
      ready = undefined;
      const left = claimed === undefined ? undefined : await claimed;
      await left?.executor.terminate();
    },
    get sparesReady() {
      return ready !== undefined && !ready.dead ? 1 : 0;
    },
  };
}
