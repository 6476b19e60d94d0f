/**
 * The code that runs inside an executor, worker thread or child process alike: it builds the
 * model named by its spec, says `ready`, then serves `run`, `ping` and `abort` messages from the
 * host until the host terminates it. A worker thread gets its spec as `workerData`; a child
 * process gets it in an `init` message (argv and the environment are too small for a corpus).
 */

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ErrorCode, TerminalError, toVigilError } from '../../protocol/index.js';
import type { WireError } from '../../protocol/index.js';
import { createBuiltinModels } from '../runtimes/index.js';
import type { ModelRunContext, ModelRuntime } from '../runtimes/index.js';
import type { ExecutorSpec } from './executor.js';
import type { ExecutorMessage, HostMessage, RunMessage } from './messages.js';

/** The exit code of the `__crash` test hook. */
const TEST_CRASH_EXIT_CODE = 13;
// Exit code after a fatal error was reported (model not built, uncaught exception).
const FATAL_EXIT_CODE = 70;
// If a fatal report cannot be flushed (host gone), exit anyway after this long.
const FATAL_FLUSH_MS = 1_000;
// setTimeout overflows past 2^31 - 1 ms and fires at once; longer deadlines get no timer.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The two ways this file can be reached, behind one shape. */
interface HostPort {
  send(message: ExecutorMessage): void;
  /** Reports a fatal error, then ends the executor. */
  die(error: WireError): void;
}

const port = connect();
if (port !== undefined) void serve(port.host, port.spec);

function connect(): { host: HostPort; spec: Promise<ExecutorSpec> } | undefined {
  if (!isMainThread && parentPort !== null) {
    const channel = parentPort;
    return {
      host: {
        send: (message) => channel.postMessage(message),
        die: (error) => {
          channel.postMessage({ type: 'fatal', error } satisfies ExecutorMessage);
          // Closing the port lets the thread end once the message is out; exiting at once could
          // drop it.
          process.exitCode = FATAL_EXIT_CODE;
          channel.close();
        },
      },
      spec: Promise.resolve(workerData as ExecutorSpec),
    };
  }
  if (process.send !== undefined) {
    const host: HostPort = {
      send: (message) => {
        // The callback keeps a closed channel from turning into an uncaught 'error' event; the
        // 'disconnect' handler below ends the process then.
        process.send?.(message, undefined, undefined, () => undefined);
      },
      die: (error) => {
        const exit = (): never => process.exit(FATAL_EXIT_CODE);
        setTimeout(exit, FATAL_FLUSH_MS).unref();
        process.send?.(
          { type: 'fatal', error } satisfies ExecutorMessage,
          undefined,
          undefined,
          exit,
        );
      },
    };
    // The host died (even by SIGKILL, which runs no exit hook there): nobody will read results.
    process.on('disconnect', () => process.exit(0));
    // Model code threw outside a run (a timer callback, an unhandled rejection): its state is
    // suspect, so the executor ends, but says why first; a worker's 'error' event does this
    // by itself.
    process.on('uncaughtException', (err) => {
      host.die(fatalError('uncaught exception in model code', err));
    });
    const spec = new Promise<ExecutorSpec>((resolve) => {
      const onInit = (message: HostMessage): void => {
        if (message.type !== 'init') return;
        process.off('message', onInit);
        resolve(message.spec);
      };
      process.on('message', onInit);
    });
    return { host, spec };
  }
  process.stderr.write('executor-entry: start me as a worker thread or a forked child process\n');
  process.exitCode = 2;
  return undefined;
}

/** What run `message` hands its model: the abort signal, and tokens and progress to the host. */
function runContext(host: HostPort, message: RunMessage, signal: AbortSignal): ModelRunContext {
  const { id } = message;
  return {
    signal,
    onToken: message.tokens
      ? (token, choice) => host.send({ type: 'token', id, token, ...(choice ? { choice } : {}) })
      : undefined,
    onProgress: message.progress
      ? (fraction, text) => host.send({ type: 'progress', id, fraction, message: text })
      : undefined,
  };
}

async function serve(host: HostPort, specPromise: Promise<ExecutorSpec>): Promise<void> {
  const spec = await specPromise;
  let runtime: ModelRuntime;
  try {
    runtime = pickModel(spec);
  } catch (err) {
    host.die(fatalError(`model ${spec.model} could not be built`, err));
    return;
  }
  const runs = new Map<number, AbortController>();

  const onMessage = (message: HostMessage): void => {
    switch (message.type) {
      case 'init':
        // Consumed before the model was built; a second one changes nothing.
        return;
      case 'run':
        startRun(message);
        return;
      case 'ping':
        host.send({ type: 'pong', id: message.id });
        return;
      case 'abort':
        runs.get(message.id)?.abort();
        return;
    }
  };

  function startRun(message: RunMessage): void {
    const { id, params } = message;
    if (spec.testHooks === true) {
      if (params['__crash'] === true) process.exit(TEST_CRASH_EXIT_CODE);
      if (params['__oom'] === true) {
        // Allocates until the heap limit ends the executor.
        const hoard: number[][] = [];
        for (;;) hoard.push(new Array<number>(1 << 16).fill(hoard.length));
      }
      if (params['__hang'] === true) {
        while (true) {
          // Blocks the event loop for good: only Worker#terminate or a signal ends it.
        }
      }
    }
    const abort = new AbortController();
    runs.set(id, abort);
    const untilDeadline = message.deadline - Date.now();
    const timer =
      untilDeadline <= MAX_TIMER_MS ? setTimeout(() => abort.abort(), untilDeadline) : undefined;
    const ctx = runContext(host, message, abort.signal);
    runtime.run(message.input, params, ctx).then(
      (value) => {
        finish();
        try {
          host.send({ type: 'result', id, ok: true, value });
        } catch (err) {
          // A value postMessage cannot clone (a function, a class instance with private state)
          // fails the same way every time.
          const error = new TerminalError(
            `model ${spec.model} returned a value that cannot be sent to the host: ${errorText(err)}`,
            ErrorCode.Internal,
          );
          host.send({ type: 'result', id, ok: false, error: error.toWire() });
        }
      },
      (err: unknown) => {
        finish();
        host.send({ type: 'result', id, ok: false, error: toVigilError(err).toWire() });
      },
    );

    function finish(): void {
      clearTimeout(timer);
      runs.delete(id);
    }
  }

  if (parentPort !== null && !isMainThread) {
    parentPort.on('message', onMessage);
  } else {
    process.on('message', (message) => onMessage(message as HostMessage));
  }
  host.send({ type: 'ready', model: runtime.name, version: runtime.version });
}

function pickModel(spec: ExecutorSpec): ModelRuntime {
  const models = createBuiltinModels(spec.models);
  const runtime = models.find((model) => model.name === spec.model);
  if (runtime === undefined) {
    const known = models.map((model) => model.name).join(', ');
    throw new TerminalError(`unknown model; built-in models are ${known}`, ErrorCode.NotFound);
  }
  return runtime;
}

function fatalError(context: string, err: unknown): WireError {
  const wire = toVigilError(err).toWire();
  return { ...wire, message: `${context}: ${wire.message}` };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
