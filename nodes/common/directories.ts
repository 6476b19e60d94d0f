/** Directories named by flags and settings, made without hanging on the paths Node's own code spins on. */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './env.js';

/**
 * `mkdir -p`, one level at a time. Node's recursive mkdir (24.x) retries for ever at 100 % CPU
 * where mkdir answers ENOENT under a directory that exists, as everywhere under /proc: a report
 * or credentials directory given there would freeze the program instead of failing it. Here the
 * first level that cannot be made throws its own error (ENOENT, EACCES, ENOTDIR, EEXIST for a
 * file in the way). Levels made get `mode` (before the umask).
 */
export function makeDirectory(path: string, mode?: number): void {
  const target = resolve(path);
  const parent = dirname(target);
  if (parent !== target && !existsSync(parent)) makeDirectory(parent, mode);
  try {
    mkdirSync(target, mode === undefined ? undefined : { mode });
  } catch (err) {
    // Made meanwhile by another process, or there all along: fine if it is a directory.
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    if (!exists || !statSync(target).isDirectory()) throw err;
  }
}

/**
 * {@link makeDirectory} for a directory a user named: one that cannot be made is a ConfigError
 * naming `what` (a flag or setting) and the path, not a stack trace.
 */
export function makeNamedDirectory(what: string, path: string, mode?: number): void {
  try {
    makeDirectory(path, mode);
  } catch (err) {
    throw new ConfigError(`${what} ${path} cannot be made: ${(err as Error).message}`);
  }
}
