/**
 * The life of a baseline process: announce readiness as one JSON line on stdout (the format the
 * bench's `startScript` waits for), and stop once, cleanly, on SIGTERM or SIGINT, when the bench's
 * end of stdin closes (the bench died), or after a maximum lifetime, whichever comes first.
 */

/** A baseline that outlives this is stopped anyway, ms (env `BENCH_CHILD_MAX_SECONDS`). */
export const DEFAULT_CHILD_MAX_LIFETIME_MS = 30 * 60_000;

/** Prints the ready line `{"msg":"ready",...fields}`. */
export function announceReady(fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ msg: 'ready', pid: process.pid, ...fields })}\n`);
}

/** Runs `stop` once on the first stop condition, then exits (1 if `stop` failed). */
export function stopOnSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const onStop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`stop after ${why} failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  // stdin is the bench's pipe: end-of-file means the bench is gone, even if it was SIGKILLed.
  process.stdin.on('end', () => onStop('stdin closed'));
  process.stdin.resume();
  const maxSeconds = Number(process.env['BENCH_CHILD_MAX_SECONDS']);
  const maxMs = maxSeconds > 0 ? maxSeconds * 1000 : DEFAULT_CHILD_MAX_LIFETIME_MS;
  setTimeout(() => onStop('maximum lifetime'), maxMs).unref();
}

/** Reads a required environment variable, failing at start-up with its name. */
export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
