/**
 * Runs a model in a child process: the strongest isolation Vigil has. A native crash, an abort or
 * a runaway allocation ends the child, which has its own PID, heap limit and signals; the host
 * sees only an exit code or a signal name.
 */

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ExecutorStartError } from './errors.js';
import type { ExecutorSpec, ModelExecutor } from './executor.js';
import type { ExecutorMessage, HostMessage } from './messages.js';
import {
  connectRemoteExecutor,
  DEFAULT_MEMORY_LIMIT_MB,
  ENTRY_IS_TYPESCRIPT,
  ENTRY_URL,
  resolveExecutorOptions,
  resolveTsx,
} from './remote.js';
import type { StartExecutorOptions } from './remote.js';

// A child whose IPC channel closed but that has not exited after this long is killed: the host
// can no longer talk to it.
const DISCONNECT_KILL_MS = 500;

// Children still alive; the host's exit hook kills them so that no executor outlives its host.
// (A host killed by SIGKILL runs no hook: the child then sees its IPC channel close and exits.)
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts `spec.model` in a new child process; resolves once the model is built and the child said
 * `ready`, rejects with `ExecutorStartError` otherwise.
 */
export async function startChildProcessExecutor(
  spec: ExecutorSpec,
  options: StartExecutorOptions = {},
): Promise<ModelExecutor> {
  const resolved = resolveExecutorOptions(options);
  installExitHook();
  const execArgv = [
    ...(ENTRY_IS_TYPESCRIPT ? ['--import', resolveTsx('tsx')] : []),
    `--max-old-space-size=${spec.memoryLimitMb ?? DEFAULT_MEMORY_LIMIT_MB}`,
  ];
  const child = fork(fileURLToPath(ENTRY_URL), [], {
    serialization: 'advanced',
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  if (child.pid === undefined) {
    // fork reports a failed spawn (no such executable, no PIDs left) on the next tick.
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new ExecutorStartError(`could not start a child process: ${err.message}`, true, {
      cause: err,
    });
  }
  liveChildren.add(child);
  let killTimer: NodeJS.Timeout | undefined;
  const connection = connectRemoteExecutor(
    spec,
    {
      isolation: 'child-process',
      pid: child.pid,
      send: (message) => {
        // The callback takes a closed-channel error that would otherwise be an 'error' event;
        // the exit that closed the channel is reported by the 'exit' handler.
        child.send(message, undefined, undefined, () => undefined);
      },
      kill: () => {
        if (killTimer !== undefined || child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), resolved.killGraceMs);
      },
    },
    resolved,
  );
  child.on('message', (message: ExecutorMessage) => connection.receive(message));
  // After spawn, 'error' means a failed send or kill; the exit, if any, follows on its own.
  child.on('error', () => undefined);
  child.on('disconnect', () => {
    setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, DISCONNECT_KILL_MS).unref();
  });
  child.on('exit', (code, signal) => {
    clearTimeout(killTimer);
    liveChildren.delete(child);
    connection.gone(signal ?? `exit code ${code ?? 'unknown'}`);
  });
  const init: HostMessage = { type: 'init', spec };
  child.send(init, undefined, undefined, () => undefined);
  return connection.ready;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}
