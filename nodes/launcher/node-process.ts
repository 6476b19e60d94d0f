/**
 * Runs a Vigil node (`nodes/<name>/main.ts`) as a child process and knows when it is ready, from
 * the readiness line the node prints (see `runUntilSignal`). Used by the local launcher, the tests and the bench.
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { makeDirectory, READY_MESSAGE } from '../common/index.js';

/** Project root (this file is `nodes/launcher/node-process.ts`). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The nodes that can be started. */
export type NodeName = 'gateway' | 'actor-host' | 'controller';

/** Options of {@link startNode}. */
export interface StartNodeOptions {
  /** Environment on top of this process's environment. */
  env: Record<string, string>;
  /** Where the node's output goes; default: discarded. */
  logFile?: string;
  /** Called with each parsed JSON log line (for echoing warnings). */
  onLog?: (line: Record<string, unknown>) => void;
  /**
   * Run the compiled `dist/nodes/<name>/main.js` (`npm run build`) instead of the TypeScript
   * through tsx: what containers run, and what the bench measures.
   */
  compiled?: boolean;
  /** Start-up timeout, ms. Default 30 s. */
  timeoutMs?: number;
}

/** A running node process. */
export interface NodeProcess {
  readonly name: NodeName;
  readonly pid: number;
  /** The ready line's fields (e.g. the gateway's `url`). */
  readonly ready: Record<string, unknown>;
  /** Resolves with the exit code, or the signal name. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, wait; SIGKILL after `graceMs` (default 40 s: above the actor host's 30 s drain). Idempotent. */
  stop(graceMs?: number): Promise<number | string>;
  /** Sends a signal without waiting (chaos tests: SIGKILL, SIGSTOP). */
  signal(signal: NodeJS.Signals): void;
}

/** Old space may grow this much past its live size before a full GC (V8's default: up to 300). */
const OLD_SPACE_GROWTH_PERCENT = 50;

/**
 * V8 flags a node runs with, here and in its container image (`deploy/containers/Dockerfile`
 * passes the same on the node's command line; a test holds the two equal).
 *
 * The actor host runs with semi-spaces of at most 16 MiB and without V8's memory reducer. Left to
 * itself, Node 24 grew the host's main-thread new space to 128 MiB under steady load, and the
 * memory reducer shrank it to 4 MiB whenever the allocation rate dipped, and handed the model
 * workers' old-space pages back some minutes after start: measured per isolate in a soak, new
 * space went 32 -> 64 -> 128 -> 4 MiB while the live heaps stayed flat, and the host's RSS swung
 * by 100 MiB every few minutes. The cap alone still let the reducer shrink new space and climb
 * back (a 30 MiB swing); fixing new space instead (`--min-semi-space-size`, a process-wide flag)
 * also fixed each worker's at 32 MiB, which idle workers fill slowly, so their RSS crept. With the
 * cap and no reducer the host keeps the pages it grew to.
 *
 * The gateway runs without the memory reducer too: its new space also grows to 128 MiB under
 * load, and in one 60-minute soak the reducer took it back at minute 40 (RSS 225 -> 117 MiB, then
 * climbing back). Its young generation is not capped: the HTTP path allocates the most, and a
 * smaller one costs throughput. What this does to the soak and to throughput is in
 * `docs/chaos.md`.
 *
 * The gateway and the controller promote short-lived garbage steadily (a request's objects, a
 * sample's), and V8 lets old space grow to up to four times what survived the last full GC
 * before it collects: their RSS rose in steps each time a peak set a new high (gateway heap
 * used 31 -> 106 -> 119 MiB between collections, RSS +2 to +24 MiB over 40 minutes; controller
 * 1 MiB steps). For the gateway a fixed growth factor ({@link OLD_SPACE_GROWTH_PERCENT}) bounds
 * the peaks (heap used at most 92 MiB in a 45-minute soak, slope 0.93 MiB per 10 minutes). The
 * controller runs without it: its first full collection came 7 minutes later with it (minute 27,
 * heap used 33.8 MiB), and its RSS climbed to it, then levelled off (`docs/chaos.md`, run G).
 */

export const NODE_V8_FLAGS: Readonly<Record<NodeName, readonly string[]>> = {
  gateway: ['--no-memory-reducer', `--heap-growing-percent=${OLD_SPACE_GROWTH_PERCENT}`],
  'actor-host': ['--max-semi-space-size=16', '--no-memory-reducer'],
  controller: [],
};

/** Lines of output kept for the error of a node that dies before it is ready. */
const START_FAILURE_TAIL_LINES = 20;

/** A node's process: stdout and stderr are pipes, stdin is closed. */
type NodeChild = ChildProcessByStdio<null, Readable, Readable>;

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Spawns `nodes/<name>/main.ts` and resolves once it reports ready. */
export function startNode(name: NodeName, options: StartNodeOptions): Promise<NodeProcess> {
  const child = spawnNode(name, options);
  children.add(child);
  const log = options.logFile ? logTo(child, options.logFile) : undefined;
  // The last lines it wrote, so a node that dies during start-up says why in the error.
  const tail = new OutputTail(START_FAILURE_TAIL_LINES);
  createInterface({ input: child.stderr }).on('line', (text) => tail.add(text));
  const exited = new Promise<number | string>((resolveExit) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      log?.end();
      resolveExit(code ?? signal ?? 'unknown');
    });
  });
  return untilReady(name, child, { options, log, tail, exited });
}

/** The node's process: its TypeScript through tsx, or the compiled build when asked. */
function spawnNode(name: NodeName, options: StartNodeOptions): NodeChild {
  return spawn(
    process.execPath,
    [
      ...NODE_V8_FLAGS[name],
      ...(options.compiled
        ? [join(PROJECT_ROOT, 'dist', 'nodes', name, 'main.js')]
        : ['--import', 'tsx', join(PROJECT_ROOT, 'nodes', name, 'main.ts')]),
    ],
    {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a terminal's Ctrl-C reaches only the parent, which stops the
      // nodes in order (gateway, then actor host, then nats-server).
      detached: true,
    },
  );
}

/**
 * Appends the child's stderr to `logFile`. Its stdout is written there line by line by
 * `untilReady`, which parses each line on the way.
 */
function logTo(child: NodeChild, logFile: string): WriteStream {
  makeDirectory(dirname(logFile));
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stderr.pipe(log, { end: false });
  return log;
}

/** The last `limit` lines of output. */
class OutputTail {
  readonly #lines: string[] = [];
  constructor(readonly limit: number) {}

  add(text: string): void {
    this.#lines.push(text);
    if (this.#lines.length > this.limit) this.#lines.shift();
  }

  text(): string {
    return this.#lines.join('\n');
  }
}

/** What {@link untilReady} watches besides the child. */
interface StartingNode {
  options: StartNodeOptions;
  log: WriteStream | undefined;
  tail: OutputTail;
  exited: Promise<number | string>;
}

/**
 * Resolves on the node's readiness line; rejects when it exits first (with its last output) or
 * misses the start-up timeout (after killing it).
 */
function untilReady(
  name: NodeName,
  child: NodeChild,
  { options, log, tail, exited }: StartingNode,
): Promise<NodeProcess> {
  return new Promise<NodeProcess>((resolveReady, reject) => {
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not become ready within ${options.timeoutMs ?? 30_000} ms`));
    }, options.timeoutMs ?? 30_000);
    void exited.then((code) => {
      if (ready) return;
      clearTimeout(timer);
      reject(
        new Error(`${name} exited (${code}) before it was ready; its last output:\n${tail.text()}`),
      );
    });
    createInterface({ input: child.stdout }).on('line', (text) => {
      log?.write(text + '\n');
      if (!ready) tail.add(text);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      options.onLog?.(line);
      if (!ready && line['msg'] === READY_MESSAGE) {
        ready = true;
        clearTimeout(timer);
        resolveReady(runningNode(name, child, line, exited));
      }
    });
  });
}

/** The handle of a node that reported ready. */
function runningNode(
  name: NodeName,
  child: ChildProcess,
  ready: Record<string, unknown>,
  exited: Promise<number | string>,
): NodeProcess {
  let stopping: Promise<number | string> | undefined;
  return {
    name,
    pid: child.pid!,
    ready,
    exited,
    signal: (signal) => {
      child.kill(signal);
    },
    stop(graceMs = 40_000) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGCONT'); // a stopped process cannot handle SIGTERM
          child.kill('SIGTERM');
          const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
          const code = await exited;
          clearTimeout(force);
          return code;
        }
        return exited;
      })();
      return stopping;
    },
  };
}
