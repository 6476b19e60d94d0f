/**
 * The failures of the executor layer itself, as opposed to the model's own errors (which cross
 * from the executor unchanged, terminal or retryable as the model said).
 */

import { ErrorCode, RetryableError, TerminalError, VigilError } from '../../protocol/index.js';
import type { VigilErrorOptions, WireError } from '../../protocol/index.js';

/**
 * The executor died (crash, out of memory, killed, found hung, terminated) while a run was in
 * it, or before it was sent. Retryable: the task did nothing wrong, and a restarted executor (or
 * another node) can run it.
 */
export class ExecutorGoneError extends RetryableError {
  override name = 'ExecutorGoneError';
  /** Why the executor went away, as in `ExecutorExit.reason`. */
  readonly reason: string;
  constructor(model: string, reason: string, options: VigilErrorOptions = {}) {
    super(`executor of model ${model} died (${reason})`, ErrorCode.ModelFailed, options);
    this.reason = reason;
  }
}

/**
 * An executor could not be started: it did not report ready in time, failed to spawn, or the
 * entry could not build its model. Retryable unless the executor itself reported a terminal
 * error (an unknown model or bad model options: the same spec fails the same way).
 */
export class ExecutorStartError extends VigilError {
  override name = 'ExecutorStartError';
  constructor(message: string, retryable: boolean, options: VigilErrorOptions = {}) {
    super(retryable ? ErrorCode.Unavailable : ErrorCode.Internal, message, retryable, options);
  }
}

/**
 * The executor already holds as many runs as it accepts (see `maxPendingRuns`). Retryable: the
 * actor naks the task and it comes back when the executor has room.
 */
export class ExecutorBusyError extends RetryableError {
  override name = 'ExecutorBusyError';
  constructor(model: string, limit: number) {
    super(`executor of model ${model} already has ${limit} runs pending`, ErrorCode.Unavailable);
  }
}

/**
 * Rebuilds the error a model threw inside an executor from its wire form, keeping its code,
 * message, retryability and retry delay (the stack stays behind: it is the executor's).
 */
export function errorFromWire(wire: WireError): VigilError {
  const options = wire.retryAfterMs === undefined ? {} : { retryAfterMs: wire.retryAfterMs };
  return wire.retryable
    ? new RetryableError(wire.message, wire.code, options)
    : new TerminalError(wire.message, wire.code);
}

/**
 * Why an executor cannot take another run, if it cannot: it is gone, or it already holds
 * `maxPendingRuns`. Shared by every executor so they refuse alike.
 */
export function refusal(
  model: string,
  exit: { reason: string } | undefined,
  pendingRuns: number,
  maxPendingRuns: number,
): VigilError | undefined {
  if (exit !== undefined) return new ExecutorGoneError(model, exit.reason);
  if (pendingRuns >= maxPendingRuns) return new ExecutorBusyError(model, maxPendingRuns);
  return undefined;
}
