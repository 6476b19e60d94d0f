/**
 * Whether a process the tests started is still running.
 *
 * `kill(pid, 0)` alone is not enough: a child whose parent exited is re-parented to PID 1, and
 * until PID 1 reaps it the dead child is a zombie that `kill(pid, 0)` still finds. In containers
 * PID 1 is often not an init that reaps promptly (seen in CI), so a zombie counts as gone here.
 */

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/<pid>/stat is "pid (comm) state ...": comm may hold spaces and parentheses, so the
    // state is the first field after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    // Gone between the two checks, or no /proc (not Linux): trust kill(pid, 0).
    return process.platform !== 'linux';
  }
}

/** Waits until `pid` is gone; false when it is still running after `timeoutMs`. */
export async function processGone(pid: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() >= end) return false;
    await sleep(20);
  }
  return true;
}

/** How a program the tests ran to its end finished. */
export interface ProgramRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node <args>` from the project root to its end and collects its output. The child gets
 * this process's environment without any `VIGIL_*`, `NATS_*` or `OTEL_*` variable (so the test
 * states every setting the program sees), plus `env`.
 */
export function runProgram(args: string[], env: Record<string, string> = {}): Promise<ProgramRun> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(VIGIL|NATS|OTEL)_/.test(name)) childEnv[name] = value;
  }
  Object.assign(childEnv, env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: PROJECT_ROOT,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
