/**
 * Runs a model in a worker thread with its own heap limit: a crash, an out-of-memory or a
 * `process.exit` in model code ends the thread, not the host, and `Worker#terminate` stops even a
 * thread whose event loop never yields.
 */

import { Worker } from 'node:worker_threads';
import type { ExecutorSpec, ModelExecutor } from './executor.js';
import type { ExecutorMessage } from './messages.js';
import {
  connectRemoteExecutor,
  DEFAULT_MEMORY_LIMIT_MB,
  ENTRY_IS_TYPESCRIPT,
  ENTRY_URL,
  resolveExecutorOptions,
  resolveTsx,
} from './remote.js';
import type { StartExecutorOptions } from './remote.js';

/**
 * Starts `spec.model` in a new worker thread; resolves once the model is built and the thread
 * said `ready`, rejects with `ExecutorStartError` otherwise.
 */
export async function startWorkerThreadExecutor(
  spec: ExecutorSpec,
  options: StartExecutorOptions = {},
): Promise<ModelExecutor> {
  const resolved = resolveExecutorOptions(options);
  const worker = new Worker(workerEntry(), {
    workerData: spec,
    resourceLimits: { maxOldGenerationSizeMb: spec.memoryLimitMb ?? DEFAULT_MEMORY_LIMIT_MB },
    // Explicit, not inherited from the host: the host's `--import tsx` does nothing in a worker
    // on Node 20 (see workerEntry), and its inspector or test flags are not the model's business.
    execArgv: [],
  });
  let uncaught: string | undefined;
  const connection = connectRemoteExecutor(
    spec,
    {
      isolation: 'worker-thread',
      pid: process.pid,
      send: (message) => worker.postMessage(message),
      kill: () => void worker.terminate(),
    },
    resolved,
  );
  worker.on('message', (message: ExecutorMessage) => connection.receive(message));
  // Emitted for an uncaught exception or an out-of-memory in the thread; 'exit' follows.
  worker.on('error', (err: Error & { code?: string }) => {
    uncaught ??=
      err.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `out of memory (heap limit ${spec.memoryLimitMb ?? DEFAULT_MEMORY_LIMIT_MB} MiB)`
        : `uncaught ${err.name}: ${err.message}`;
  });
  worker.on('exit', (code) => connection.gone(uncaught ?? `exit code ${code}`));
  return connection.ready;
}

/**
 * What the worker loads. Compiled, that is `executor-entry.js` itself. From sources, the thread
 * needs tsx's loader, and `execArgv: ['--import', 'tsx']` does not give it one on Node 20:
 * tsx 4 registers its ESM hooks only on the main thread there (workers inherit hooks only from
 * Node 22.22 / 24.11), and Node 20 does not pass the host's hooks to workers, so the entry fails
 * with ERR_UNKNOWN_FILE_EXTENSION. A one-line ES module registers tsx inside the thread (its
 * `register()` API works in any thread) and then imports the entry.
 */
function workerEntry(): URL {
  if (!ENTRY_IS_TYPESCRIPT) return ENTRY_URL;
  const source =
    `import { register } from ${JSON.stringify(resolveTsx('tsx/esm/api'))};\n` +
    `register();\n` +
    `await import(${JSON.stringify(ENTRY_URL.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}
