/**
 * Where a model's code runs. The inference actor (mailbox, NATS, records) stays in the host
 * process; the model runs in an executor, so a crash, an endless loop or a leak in model code
 * takes down the executor, never the host, and the supervisor starts a new one.
 */
import type { WireError } from '../../protocol/index.js';
import type { BuiltinModelsOptions } from '../runtimes/index.js';

/** How a model is isolated from the host. */
export const Isolation = {
  /** In the host's own thread: no isolation; for tests and trusted, cheap models. */
  InProcess: 'in-process',
  /** A worker thread with its own heap limit (the default). */
  WorkerThread: 'worker-thread',
  /** A child process: survives native crashes, can be killed by PID. */
  ChildProcess: 'child-process',
} as const;

/** One of the {@link Isolation} values. */
export type Isolation = (typeof Isolation)[keyof typeof Isolation];

/** What to start: a built-in model by name, with its options (must be structured-cloneable). */
export interface ExecutorSpec {
  isolation: Isolation;
  /** Built-in model name (`echo`, `ngram-chat`, `hash-embed`). */
  model: string;
  models?: BuiltinModelsOptions;
  /** Heap limit of a worker thread or child process, MiB. Default 512. */
  memoryLimitMb?: number;
  /**
   * Tests only: lets params `__crash: true` make the executor `process.exit(13)`, `__hang: true`
   * spin forever and `__oom: true` allocate until its heap limit ends it, so crash, hang and
   * out-of-memory handling can be tested against real threads and processes.
   */
  testHooks?: boolean;
}

/** Per-run callbacks and limits. */
export interface RunOptions {
  /** Absolute deadline, epoch ms: the run is aborted (inside the executor) when it passes. */
  deadline: number;
  onProgress?: (fraction: number, message?: string) => void;
  onToken?: (token: string, choice?: number) => void;
  /**
   * Aborts the run before its deadline (another attempt finished first, the host is draining):
   * the executor is told to abort, and the run rejects with the model's abort error.
   */
  signal?: AbortSignal;
}

/** Why an executor went away. */
export interface ExecutorExit {
  /** Exit code, signal name, or a short reason (`out of memory`, `unresponsive`). */
  reason: string;
  /** False when it was stopped on purpose (`terminate`). */
  unexpected: boolean;
}

/** A running executor of one model. */
export interface ModelExecutor {
  readonly isolation: Isolation;
  /** PID of the process running the model (the host's own for in-process and worker threads). */
  readonly pid: number;
  readonly model: string;
  readonly version: string;
  /**
   * Runs one task. Rejects with a `VigilError` the model threw (terminal or retryable, as it
   * said), or with `ExecutorGoneError` (retryable) when the executor died during the run.
   */
  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    options: RunOptions,
  ): Promise<unknown>;
  /** Resolves true when the executor answers within `timeoutMs` (its event loop is alive). */
  ping(timeoutMs: number): Promise<boolean>;
  /** Settles when the executor is gone, for whatever reason. Never rejects. */
  readonly exited: Promise<ExecutorExit>;
  /** Stops it (runs in progress reject with `ExecutorGoneError`). Idempotent. */
  terminate(): Promise<void>;
}

/** The error a run gets when its executor died under it; the task is retried. */
export type ExecutorGoneWire = WireError & { code: 'model_failed'; retryable: true };
