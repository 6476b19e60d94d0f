/**
 * Runs a model in the host's own thread, with no isolation: for tests and for trusted, cheap
 * models where a message hop per task costs more than it protects. It keeps the executor
 * contract (deadline abort, bounded runs, `ExecutorGoneError` on terminate) so the actor does not
 * care which isolation it got; it cannot stop model code that ignores its abort signal.
 */

import { ErrorCode, RetryableError } from '../../protocol/index.js';
import { createBuiltinModels } from '../runtimes/index.js';
import type { ModelRuntime } from '../runtimes/index.js';
import { ExecutorGoneError, ExecutorStartError, refusal } from './errors.js';
import type {
  ExecutorExit,
  ExecutorSpec,
  Isolation,
  ModelExecutor,
  RunOptions,
} from './executor.js';
import { resolveExecutorOptions } from './remote.js';
import type { ResolvedExecutorOptions, StartExecutorOptions } from './remote.js';

// setTimeout overflows past 2^31 - 1 ms and fires at once; longer deadlines get no timer.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options of {@link startInProcessExecutor}. */
export interface InProcessExecutorOptions extends StartExecutorOptions {
  /** A runtime to run instead of the built-in `spec.model` (tests, custom trusted models). */
  runtime?: ModelRuntime;
}

/**
 * Starts `spec.model` (or `options.runtime`) in the host's own thread. Rejects with a terminal
 * `ExecutorStartError` when the model is unknown or its options are bad.
 */
export function startInProcessExecutor(
  spec: ExecutorSpec,
  options: InProcessExecutorOptions = {},
): Promise<ModelExecutor> {
  // Through a promise chain, so that bad options reject rather than throw, as elsewhere.
  return Promise.resolve().then(() => buildInProcessExecutor(spec, options));
}

function buildInProcessExecutor(
  spec: ExecutorSpec,
  options: InProcessExecutorOptions,
): ModelExecutor {
  const resolved = resolveExecutorOptions(options);
  let runtime: ModelRuntime;
  try {
    runtime = options.runtime ?? pickModel(spec);
  } catch (err) {
    if (err instanceof ExecutorStartError) throw err;
    throw new ExecutorStartError(
      `model ${spec.model} could not be built: ${err instanceof Error ? err.message : String(err)}`,
      false,
      { cause: err },
    );
  }
  return new InProcessExecutor(runtime, resolved);
}

function pickModel(spec: ExecutorSpec): ModelRuntime {
  const models = createBuiltinModels(spec.models);
  const runtime = models.find((model) => model.name === spec.model);
  if (runtime === undefined) {
    const known = models.map((model) => model.name).join(', ');
    throw new ExecutorStartError(
      `unknown model ${spec.model}; built-in models are ${known}`,
      false,
    );
  }
  return runtime;
}

interface ActiveRun {
  /** Aborts the run and rejects its caller with `err` now. */
  fail(err: Error): void;
}

type RunOptionsWithSignal = RunOptions & { readonly signal?: AbortSignal };

class InProcessExecutor implements ModelExecutor {
  readonly isolation: Isolation = 'in-process';
  readonly pid = process.pid;
  readonly model: string;
  readonly version: string;
  readonly exited: Promise<ExecutorExit>;

  readonly #runtime: ModelRuntime;
  readonly #options: ResolvedExecutorOptions;
  readonly #runs = new Set<ActiveRun>();
  #exit: ExecutorExit | undefined;
  #settleExit!: (exit: ExecutorExit) => void;

  constructor(runtime: ModelRuntime, options: ResolvedExecutorOptions) {
    this.#runtime = runtime;
    this.#options = options;
    this.model = runtime.name;
    this.version = runtime.version;
    this.exited = new Promise((resolve) => (this.#settleExit = resolve));
  }

  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    options: RunOptionsWithSignal,
  ): Promise<unknown> {
    const refused = refusal(this.model, this.#exit, this.#runs.size, this.#options.maxPendingRuns);
    if (refused) return Promise.reject(refused);
    return new Promise<unknown>((resolve, reject) => {
      const abort = new AbortController();
      const run: ActiveRun = {
        fail: (err) => {
          abort.abort();
          settle(() => reject(err));
        },
      };
      this.#runs.add(run);
      const untilDeadline = options.deadline - Date.now();
      const deadlineTimer =
        untilDeadline <= MAX_TIMER_MS
          ? setTimeout(() => abort.abort(), Math.max(0, untilDeadline))
          : undefined;
      // The model shares our thread, so nothing can stop it; the caller at least gets its answer
      // on time and the late result is dropped.
      const overrunTimer =
        untilDeadline + this.#options.deadlineGraceMs <= MAX_TIMER_MS
          ? setTimeout(
              () =>
                settle(() =>
                  reject(
                    new RetryableError('model ignored its deadline', ErrorCode.DeadlineExceeded),
                  ),
                ),
              Math.max(0, untilDeadline + this.#options.deadlineGraceMs),
            )
          : undefined;
      const { signal } = options;
      const onAbort = (): void => abort.abort();
      if (signal?.aborted === true) abort.abort();
      else signal?.addEventListener('abort', onAbort, { once: true });

      const settle = (finish: () => void): void => {
        if (!this.#runs.delete(run)) return;
        clearTimeout(deadlineTimer);
        clearTimeout(overrunTimer);
        signal?.removeEventListener('abort', onAbort);
        finish();
      };
      let pending: Promise<unknown>;
      try {
        pending = this.#runtime.run(input, params, {
          signal: abort.signal,
          onToken: options.onToken,
          onProgress: options.onProgress,
        });
      } catch (err) {
        // A runtime that throws before returning its promise breaks the contract; treat it as
        // the rejection it should have been.
        pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      pending.then(
        (value) => settle(() => resolve(value)),
        (err: unknown) => settle(() => reject(err instanceof Error ? err : new Error(String(err)))),
      );
    });
  }

  ping(): Promise<boolean> {
    // Answering at all proves the host's (and so the model's) event loop is alive.
    return Promise.resolve(this.#exit === undefined);
  }

  terminate(): Promise<void> {
    if (this.#exit === undefined) {
      const exit: ExecutorExit = { reason: 'terminated', unexpected: false };
      this.#exit = exit;
      for (const run of [...this.#runs]) run.fail(new ExecutorGoneError(this.model, exit.reason));
      this.#settleExit(exit);
    }
    return this.exited.then(() => undefined);
  }
}
