/**
 * The bench's own child processes (baseline servers and the load generator): spawned with tsx,
 * tracked by PID, and killed when the bench exits however it exits. Vigil's nodes go through the
 * launcher's `startNode` instead, exactly as in production.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { PROJECT_ROOT } from '../nodes/launcher/index.js';

/** Options of {@link startScript}. */
export interface StartScriptOptions {
  /** Environment on top of this process's environment. */
  env?: Record<string, string>;
  /** The `msg` of the JSON stdout line that means the script is ready. */
  readyMessage: string;
  /** Receives the script's stdout and stderr. */
  logFile: string;
  /** How long the script may take to become ready, ms. Default {@link SCRIPT_READY_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/** A running script. */
export interface ScriptProcess {
  readonly pid: number;
  /** The ready line's fields (e.g. a server's `url`). */
  readonly ready: Record<string, unknown>;
  /** Resolves with the exit code, or the signal name. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs` (default {@link SCRIPT_STOP_GRACE_MS}). Idempotent. */
  stop(graceMs?: number): Promise<number | string>;
}

/** Default start-up timeout of a script, ms. */
export const SCRIPT_READY_TIMEOUT_MS = 30_000;
/** Default time between SIGTERM and SIGKILL, ms. */
export const SCRIPT_STOP_GRACE_MS = 5_000;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Spawns `node --import tsx <file> ...args` from the project root. Its stdin is a pipe the script
 * may watch: it closes when the bench dies, even by SIGKILL, so no baseline outlives the bench.
 */
export function spawnScript(
  file: string,
  args: readonly string[],
  env: Record<string, string> = {},
): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Resolves with the exit code or signal name once `child` has exited. */
function exitOf(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode ?? 'unknown');
  }
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
}

/** Starts a long-running script and resolves once it prints its ready line. */
export function startScript(file: string, options: StartScriptOptions): Promise<ScriptProcess> {
  const child = spawnScript(file, [], options.env);
  const exited = exitOf(child);
  mkdirSync(dirname(options.logFile), { recursive: true });
  const log = createWriteStream(options.logFile, { flags: 'a' });
  child.stderr?.pipe(log, { end: false });
  void exited.then(() => log.end());

  let stopping: Promise<number | string> | undefined;
  const stop = (graceMs = SCRIPT_STOP_GRACE_MS): Promise<number | string> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
        try {
          return await exited;
        } finally {
          clearTimeout(force);
        }
      }
      return exited;
    })();
    return stopping;
  };

  return new Promise<ScriptProcess>((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? SCRIPT_READY_TIMEOUT_MS;
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} was not ready within ${timeoutMs} ms; see ${options.logFile}`));
    }, timeoutMs);
    void exited.then((code) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new Error(`${file} exited (${code}) before it was ready; see ${options.logFile}`));
    });
    createInterface({ input: child.stdout! }).on('line', (text) => {
      log.write(`${text}\n`);
      if (ready) return;
      let line: unknown;
      try {
        line = JSON.parse(text);
      } catch {
        return;
      }
      if (typeof line !== 'object' || line === null) return;
      const fields = line as Record<string, unknown>;
      if (fields['msg'] !== options.readyMessage) return;
      ready = true;
      clearTimeout(timer);
      resolve({ pid: child.pid!, ready: fields, exited, stop });
    });
  });
}

/** What {@link runGenerator} needs of a load generator. */
export interface GeneratorRun<T> {
  /** The generator script and its one argument (options as JSON). */
  file: string;
  options: unknown;
  /** How long it may run before it is killed as hung, ms. */
  limitMs: number;
  /** Parses its summary (its last non-empty stdout line that is not a marker). */
  parse(line: string): T;
  /** Called with its PID once spawned. */
  onSpawn?(pid: number): void;
  /** Marker lines it prints (`MEASURING_LINE`, ...) and what each sets off. */
  markers?: Readonly<Record<string, () => void>>;
}

/**
 * Runs a load generator to its end in its own process and returns its parsed summary line.
 * @throws when it exits non-zero or prints no summary.
 */
export async function runGenerator<T>(run: GeneratorRun<T>): Promise<T> {
  const child = spawnScript(run.file, [JSON.stringify(run.options)]);
  // 'close', not 'exit': it comes after stdout is drained, so the summary line has been read.
  const closed = new Promise<number | string>((resolve) => {
    child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  if (child.pid !== undefined) run.onSpawn?.(child.pid);
  let summaryLine = '';
  let stderr = '';
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const marker = run.markers?.[line];
    if (marker) marker();
    else if (line.trim() !== '') summaryLine = line;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // The generator stops by itself; this only catches one that hangs.
  const killer = setTimeout(() => child.kill('SIGKILL'), run.limitMs);
  let code: number | string;
  try {
    code = await closed;
  } finally {
    clearTimeout(killer);
  }
  if (code !== 0 || summaryLine === '') {
    throw new Error(`load generator exited (${code}): ${stderr.trim().slice(-500) || 'no output'}`);
  }
  return run.parse(summaryLine);
}
