/**
 * The model as the actor sees it, and its one implementation: a model running in an executor
 * (worker thread or child process) under the host's supervisor. While the executor is being
 * restarted, runs wait for the new one instead of failing, so a crash costs only the tasks it was
 * running.
 */
import {
  createExecutorStarter,
  type ExecutorSpec,
  type ExecutorStarter,
  type ModelExecutor,
  type RunOptions,
} from './executors/index.js';
import type { SupervisedHandle, Supervisor } from './supervisor.js';

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

/** A supervised model and how to release it. */
export interface SupervisedModel {
  readonly handle: ModelHandle;
  /**
   * Replaces the executor on purpose (the controller's `restart-actor`): counts as a restart.
   * Resolves once the new executor is up.
   */
  restart(reason: string): Promise<void>;
  /** Stops keeping a spare; the supervisor stops the executor itself. */
  close(): Promise<void>;
}

/** Starts `spec` under `supervisor` and resolves once its first executor is up. */
export async function superviseModel(
  supervisor: Supervisor,
  spec: ExecutorSpec,
  spares: 0 | 1,
): Promise<SupervisedModel> {
  const starter: ExecutorStarter = createExecutorStarter(spec, { spares });
  let supervised: SupervisedHandle<ModelExecutor>;
  try {
    supervised = await supervisor.supervise(spec.model, () => starter.start());
  } catch (err) {
    await starter.close();
    throw err;
  }
  const first = await supervised.current();
  const handle: ModelHandle = {
    name: spec.model,
    version: first.version,
    isolation: spec.isolation,
    get pid() {
      return supervised.child?.pid ?? 0;
    },
    get restarts() {
      return supervised.restarts;
    },
    get available() {
      return supervised.state === 'running';
    },
    async run(input, params, options) {
      const executor = await supervised.current();
      return executor.run(input, params, options);
    },
  };
  return {
    handle,
    restart: (reason) => supervised.restart(reason),
    close: () => starter.close(),
  };
}
