/**
 * The host's end of an executor that runs in another thread or process: it numbers runs and
 * pings, matches answers to callers, enforces the bounds (pending runs, ready timeout, deadline
 * overrun), and turns the executor's death into `ExecutorGoneError` for every caller. The
 * transports (`worker-thread.ts`, `child-process.ts`) only move messages and kill.
 */

import { extname } from 'node:path';
import { ErrorCode, RetryableError, TerminalError } from '../../protocol/index.js';
import type { WireError } from '../../protocol/index.js';
import { errorFromWire, ExecutorGoneError, ExecutorStartError, refusal } from './errors.js';
import type {
  ExecutorExit,
  ExecutorSpec,
  Isolation,
  ModelExecutor,
  RunOptions,
} from './executor.js';
import type { ExecutorMessage, HostMessage } from './messages.js';

/** How long an executor may take to report `ready`, ms. */
export const DEFAULT_READY_TIMEOUT_MS = 10_000;
/** Most runs one executor holds at once; more reject with `ExecutorBusyError`. */
export const DEFAULT_MAX_PENDING_RUNS = 10_000;
/**
 * How long past its deadline a run may go unanswered before the executor is declared
 * unresponsive and killed, ms. The executor aborts the run at the deadline itself; this catches
 * model code that ignores its abort signal.
 */
export const DEFAULT_DEADLINE_GRACE_MS = 1_000;
/** How long a child process has between SIGTERM and SIGKILL, ms. */
export const DEFAULT_KILL_GRACE_MS = 2_000;
/** Heap limit of a worker thread or child process when the spec sets none, MiB. */
export const DEFAULT_MEMORY_LIMIT_MB = 512;

/** Options of `startExecutor` and the per-isolation start functions. */
export interface StartExecutorOptions {
  /** How long the executor may take to report ready, ms. Default {@link DEFAULT_READY_TIMEOUT_MS}. */
  readyTimeoutMs?: number;
  /** Most runs in flight at once. Default {@link DEFAULT_MAX_PENDING_RUNS}. */
  maxPendingRuns?: number;
  /** Slack past a run's deadline before the executor counts as unresponsive, ms. Default {@link DEFAULT_DEADLINE_GRACE_MS}. */
  deadlineGraceMs?: number;
  /** Child processes only: SIGTERM to SIGKILL, ms. Default {@link DEFAULT_KILL_GRACE_MS}. */
  killGraceMs?: number;
}

/** {@link StartExecutorOptions} with every default filled in. */
export type ResolvedExecutorOptions = Required<StartExecutorOptions>;

/** Fills in the defaults; throws a terminal error for a value that cannot work. */
export function resolveExecutorOptions(
  options: StartExecutorOptions = {},
): ResolvedExecutorOptions {
  const resolved = {
    readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
    maxPendingRuns: options.maxPendingRuns ?? DEFAULT_MAX_PENDING_RUNS,
    deadlineGraceMs: options.deadlineGraceMs ?? DEFAULT_DEADLINE_GRACE_MS,
    killGraceMs: options.killGraceMs ?? DEFAULT_KILL_GRACE_MS,
  };
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new TerminalError(
        `executor option ${key} must be a finite number >= 0`,
        ErrorCode.InvalidRequest,
      );
    }
  }
  if (resolved.maxPendingRuns < 1) {
    throw new TerminalError(
      'executor option maxPendingRuns must be >= 1',
      ErrorCode.InvalidRequest,
    );
  }
  return resolved;
}

/**
 * `executor-entry` next to this module, with this module's own extension: `.ts` when the host
 * runs the sources through tsx, `.js` once compiled to `dist/`.
 */
export const ENTRY_URL = new URL(
  `./executor-entry${extname(new URL(import.meta.url).pathname)}`,
  import.meta.url,
);

/** True when the entry is TypeScript, so the executor needs tsx's loader. */
export const ENTRY_IS_TYPESCRIPT = ENTRY_URL.pathname.endsWith('.ts');

/**
 * Resolves a tsx export to an absolute URL. A bare `tsx` given to `--import` is resolved from the
 * process's working directory, which need not be this project; resolving from this module is
 * what the host's own imports do.
 */
export function resolveTsx(specifier: 'tsx' | 'tsx/esm/api'): string {
  try {
    return import.meta.resolve(specifier);
  } catch {
    return specifier;
  }
}

// setTimeout overflows past 2^31 - 1 ms and fires at once; longer deadlines get no timer.
const MAX_TIMER_MS = 2 ** 31 - 1;
// Pings outstanding at once; an executor that leaves this many unanswered is not answering.
const MAX_PENDING_PINGS = 64;

/** What a transport gives the host's end: a way to send, and a way to end the executor. */
export interface ExecutorLink {
  readonly isolation: Isolation;
  readonly pid: number;
  /** Sends one message; throws when the message cannot be cloned. */
  send(message: HostMessage): void;
  /** Ends the executor now, even one whose event loop is blocked; its exit is reported later. */
  kill(): void;
}

/** What a transport reports to the host's end. */
export interface RemoteExecutorConnection {
  /** Every message from the executor, in order. */
  receive(message: ExecutorMessage): void;
  /** The executor is gone; `reason` is the transport's (exit code, signal, uncaught error). */
  gone(reason: string): void;
  /** The executor once it reported ready; rejects with `ExecutorStartError`. */
  readonly ready: Promise<ModelExecutor>;
}

/** Connects a transport to a new host-side executor that waits for `ready`. */
export function connectRemoteExecutor(
  spec: ExecutorSpec,
  link: ExecutorLink,
  options: ResolvedExecutorOptions,
): RemoteExecutorConnection {
  return new RemoteExecutor(spec, link, options);
}

interface PendingRun {
  resolve(value: unknown): void;
  reject(err: Error): void;
  onToken: ((token: string, choice?: number) => void) | undefined;
  onProgress: ((fraction: number, message?: string) => void) | undefined;
  overrun: NodeJS.Timeout | undefined;
  detach: (() => void) | undefined;
}

/**
 * `RunOptions` plus the caller's abort signal, which `RunOptions` does not declare yet: when the
 * caller gives up (host draining), the executor is told to abort the run.
 */
type RunOptionsWithSignal = RunOptions & { readonly signal?: AbortSignal };

class RemoteExecutor implements ModelExecutor, RemoteExecutorConnection {
  readonly isolation: Isolation;
  readonly pid: number;
  readonly model: string;
  version = '';
  readonly exited: Promise<ExecutorExit>;
  readonly ready: Promise<ModelExecutor>;

  readonly #link: ExecutorLink;
  readonly #options: ResolvedExecutorOptions;
  readonly #runs = new Map<number, PendingRun>();
  readonly #pings = new Map<number, (alive: boolean) => void>();
  #nextId = 1;
  #isReady = false;
  #exit: ExecutorExit | undefined;
  /** Set when the host ends the executor itself: the reason it gives, over the transport's. */
  #stopping: ExecutorExit | undefined;
  #fatal: WireError | undefined;
  #settleExit!: (exit: ExecutorExit) => void;
  #settleReady!: { resolve(executor: ModelExecutor): void; reject(err: Error): void };
  readonly #readyTimer: NodeJS.Timeout;

  constructor(spec: ExecutorSpec, link: ExecutorLink, options: ResolvedExecutorOptions) {
    this.isolation = link.isolation;
    this.pid = link.pid;
    this.model = spec.model;
    this.#link = link;
    this.#options = options;
    this.exited = new Promise((resolve) => (this.#settleExit = resolve));
    this.ready = new Promise((resolve, reject) => (this.#settleReady = { resolve, reject }));
    this.#readyTimer = setTimeout(() => {
      this.#kill({
        reason: `did not report ready within ${options.readyTimeoutMs} ms`,
        unexpected: true,
      });
    }, options.readyTimeoutMs);
  }

  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    options: RunOptionsWithSignal,
  ): Promise<unknown> {
    const refused = refusal(this.model, this.#exit, this.#runs.size, this.#options.maxPendingRuns);
    if (refused) return Promise.reject(refused);
    const { signal } = options;
    if (signal?.aborted === true) {
      return Promise.reject(new RetryableError('aborted', ErrorCode.DeadlineExceeded));
    }
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const pending: PendingRun = {
        resolve,
        reject,
        onToken: options.onToken,
        onProgress: options.onProgress,
        overrun: undefined,
        detach: undefined,
      };
      try {
        this.#link.send({
          type: 'run',
          id,
          input,
          params,
          deadline: options.deadline,
          tokens: options.onToken !== undefined,
          progress: options.onProgress !== undefined,
        });
      } catch (err) {
        // Only a value the structured clone cannot copy gets here; it fails the same way again.
        reject(
          new TerminalError(
            `input or params cannot be sent to the executor: ${err instanceof Error ? err.message : String(err)}`,
            ErrorCode.InvalidRequest,
            { cause: err },
          ),
        );
        return;
      }
      this.#runs.set(id, pending);
      const overrunMs = options.deadline - Date.now() + this.#options.deadlineGraceMs;
      if (overrunMs <= MAX_TIMER_MS) {
        pending.overrun = setTimeout(
          () => {
            this.#kill({
              reason: `unresponsive: a run was still going ${this.#options.deadlineGraceMs} ms past its deadline`,
              unexpected: true,
            });
          },
          Math.max(0, overrunMs),
        );
      }
      if (signal !== undefined) {
        const onAbort = (): void => {
          try {
            this.#link.send({ type: 'abort', id });
          } catch {
            // Nothing to clone in an abort; a closed channel means the exit is on its way.
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        pending.detach = () => signal.removeEventListener('abort', onAbort);
      }
    });
  }

  ping(timeoutMs: number): Promise<boolean> {
    if (this.#exit !== undefined || this.#pings.size >= MAX_PENDING_PINGS) {
      return Promise.resolve(false);
    }
    const id = this.#nextId++;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(false), timeoutMs);
      const settle = (alive: boolean): void => {
        clearTimeout(timer);
        this.#pings.delete(id);
        resolve(alive);
      };
      this.#pings.set(id, settle);
      try {
        this.#link.send({ type: 'ping', id });
      } catch {
        settle(false);
      }
    });
  }

  async terminate(): Promise<void> {
    this.#kill({ reason: 'terminated', unexpected: false });
    await this.exited;
  }

  receive(message: ExecutorMessage): void {
    switch (message.type) {
      case 'ready':
        if (this.#isReady || this.#exit !== undefined) return;
        this.#isReady = true;
        this.version = message.version;
        clearTimeout(this.#readyTimer);
        this.#settleReady.resolve(this);
        return;
      case 'token':
        this.#runs.get(message.id)?.onToken?.(message.token, message.choice);
        return;
      case 'progress':
        this.#runs.get(message.id)?.onProgress?.(message.fraction, message.message);
        return;
      case 'result': {
        const pending = this.#runs.get(message.id);
        if (pending === undefined) return;
        this.#forget(message.id, pending);
        if (message.ok) pending.resolve(message.value);
        else pending.reject(errorFromWire(message.error));
        return;
      }
      case 'pong':
        this.#pings.get(message.id)?.(true);
        return;
      case 'fatal':
        this.#fatal = message.error;
        return;
    }
  }

  gone(reason: string): void {
    if (this.#exit !== undefined) return;
    const exit: ExecutorExit = this.#stopping ?? {
      reason: this.#fatal?.message ?? reason,
      unexpected: true,
    };
    this.#exit = exit;
    clearTimeout(this.#readyTimer);
    if (!this.#isReady) {
      // A fatal report is the executor's own verdict on whether the same spec can ever start.
      const retryable = this.#fatal?.retryable ?? true;
      this.#settleReady.reject(
        new ExecutorStartError(
          `executor of model ${this.model} did not start: ${exit.reason}`,
          retryable,
        ),
      );
    }
    for (const [id, pending] of this.#runs) {
      this.#forget(id, pending);
      pending.reject(new ExecutorGoneError(this.model, exit.reason));
    }
    for (const settle of this.#pings.values()) settle(false);
    this.#settleExit(exit);
  }

  #forget(id: number, pending: PendingRun): void {
    this.#runs.delete(id);
    clearTimeout(pending.overrun);
    pending.detach?.();
  }

  /** Ends the executor for `exit`'s reason; the first reason given wins. */
  #kill(exit: ExecutorExit): void {
    if (this.#exit !== undefined) return;
    this.#stopping ??= exit;
    this.#link.kill();
  }
}
