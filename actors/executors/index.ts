/**
 * The executors folder's one door: where a model's code runs (in-process, worker thread, child
 * process) behind one `ModelExecutor` contract, and the errors of that layer.
 */

export { Isolation } from './executor.js';
export type {
  ExecutorExit,
  ExecutorGoneWire,
  ExecutorSpec,
  ModelExecutor,
  RunOptions,
} from './executor.js';
export { createExecutorStarter, startExecutor } from './start.js';
export type { ExecutorStarter, ExecutorStarterOptions } from './start.js';
export { ExecutorBusyError, ExecutorGoneError, ExecutorStartError } from './errors.js';
export {
  DEFAULT_DEADLINE_GRACE_MS,
  DEFAULT_KILL_GRACE_MS,
  DEFAULT_MAX_PENDING_RUNS,
  DEFAULT_MEMORY_LIMIT_MB,
  DEFAULT_READY_TIMEOUT_MS,
} from './remote.js';
export type { StartExecutorOptions } from './remote.js';
export { startChildProcessExecutor } from './child-process.js';
export { startInProcessExecutor } from './in-process.js';
export type { InProcessExecutorOptions } from './in-process.js';
export { startWorkerThreadExecutor } from './worker-thread.js';
