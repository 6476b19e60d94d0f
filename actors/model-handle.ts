/** The model as the actor sees it. */
import type { RunOptions } from './executors/index.js';

/**
 * The model as the actor sees it: a runtime in the host's thread, or an executor in a worker
 * thread or child process under a supervisor. `run` rejects with the model's coded error.
 */
export interface ModelHandle {
  readonly name: string;
  readonly version: string;
  readonly isolation: string;
  /** PID of the process running the model. */
  readonly pid: number;
  /** Times the model's executor was restarted. */
  readonly restarts: number;
  /** False while the executor is being restarted (or has been given up on). */
  readonly available: boolean;
  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    options: RunOptions,
  ): Promise<unknown>;
}
