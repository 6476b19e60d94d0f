/**
 * The protocol between the host and an executor (worker thread or child process). Messages are
 * structured-cloned (`postMessage`, or `fork` with `serialization: 'advanced'`), so they are plain
 * data; both ends trust each other, so nothing here is validated.
 */

import type { WireError } from '../../protocol/index.js';
import type { ExecutorSpec } from './executor.js';

/** Host to executor: start a run. `deadline` is epoch ms; the executor aborts the run then. */
export interface RunMessage {
  type: 'run';
  id: number;
  input: unknown;
  params: Readonly<Record<string, unknown>>;
  deadline: number;
  /** Whether the host wants `token` messages; saves a message per token when nobody listens. */
  tokens: boolean;
  /** Whether the host wants `progress` messages. */
  progress: boolean;
}

/** Host to executor: are you alive? Answered with a `pong` of the same id. */
export interface PingMessage {
  type: 'ping';
  id: number;
}

/** Host to executor: abort run `id` (its caller gave up); the run still answers with a `result`. */
export interface AbortMessage {
  type: 'abort';
  id: number;
}

/**
 * Host to a child process, first and once: what to run. A worker thread gets the same spec as
 * `workerData` instead.
 */
export interface InitMessage {
  type: 'init';
  spec: ExecutorSpec;
}

/** Every message the host sends. */
export type HostMessage = InitMessage | RunMessage | PingMessage | AbortMessage;

/** Executor to host, once: the model is built and runs may be sent. */
export interface ReadyMessage {
  type: 'ready';
  model: string;
  version: string;
}

/** Executor to host: the model reported progress on run `id`. */
export interface ProgressMessage {
  type: 'progress';
  id: number;
  fraction: number;
  message?: string;
}

/** Executor to host: the model produced a token on run `id`. */
export interface TokenMessage {
  type: 'token';
  id: number;
  token: string;
  /** Which answer it belongs to, when not the first (`params.n`). */
  choice?: number;
}

/** Executor to host: run `id` ended, with the model's value or its error in wire form. */
export type ResultMessage =
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: WireError };

/** Executor to host: answer to the `ping` of the same id. */
export interface PongMessage {
  type: 'pong';
  id: number;
}

/**
 * Executor to host, just before it exits on its own: why (the model could not be built, or an
 * uncaught exception in model code). A worker thread's `error` event carries this already; a
 * child process has only its exit code, so it says it here.
 */
export interface FatalMessage {
  type: 'fatal';
  error: WireError;
}

/** Every message an executor sends. */
export type ExecutorMessage =
  ReadyMessage | ProgressMessage | TokenMessage | ResultMessage | PongMessage | FatalMessage;
