/**
 * The life of a node process: start, report readiness on stdout, and on SIGTERM or SIGINT stop
 * once, in order, then exit 0. A second signal forces the exit. Start-up failures exit 1 with one
 * clear log line instead of a stack trace.
 *
 * Readiness is one JSON line `{"msg":"ready",...}` written whatever the log level: it is how a
 * launcher or test knows the node serves (as systemd's READY=1), not a log message.
 */
import type { Logger } from 'pino';

/** The `msg` of the readiness line. */
export const READY_MESSAGE = 'ready';

/** What a started node hands back: how to stop it, and facts for its readiness line. */
export interface StartedNode {
  stop(): Promise<void>;
  ready: Record<string, unknown>;
}

/** Runs `start`, announces readiness, and calls `stop` on the first SIGTERM/SIGINT. */
export async function runUntilSignal(
  node: string,
  logger: Logger,
  start: () => Promise<StartedNode>,
): Promise<void> {
  let stop: () => Promise<void>;
  try {
    const started = await start();
    stop = () => started.stop();
    const line = {
      time: new Date().toISOString(),
      level: 'info',
      msg: READY_MESSAGE,
      node,
      ...started.ready,
    };
    process.stdout.write(JSON.stringify(line) + '\n');
  } catch (err) {
    logger.error({ err }, 'start-up failed');
    process.exit(1);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'stopping');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** How long a node keeps retrying a start-up that failed for a passing reason, ms. */
export const START_RETRY_MS = 30_000;

/**
 * Whether a start-up error may pass by itself: a request that timed out or found no responder,
 * or JetStream answering 503, as while a just-formed cluster elects its leaders. Configuration
 * and permission errors are not retried.
 */
export function isTransientStartError(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e.name === 'TimeoutError' || e.name === 'NoRespondersError') return true;
    if ('code' in e && (e as { code?: unknown }).code === 503) return true;
  }
  return false;
}

/**
 * Runs `start` again, with backoff, while it fails for a passing reason and `START_RETRY_MS` has
 * not run out: a node started beside freshly provisioned streams should come up, not exit 1.
 */
export async function startWithRetry<T>(
  what: string,
  logger: Logger,
  start: () => Promise<T>,
): Promise<T> {
  const giveUpAt = Date.now() + START_RETRY_MS;
  for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 4_000)) {
    try {
      return await start();
    } catch (err) {
      if (!isTransientStartError(err) || Date.now() + delayMs > giveUpAt) throw err;
      logger.warn({ err, retryInMs: delayMs }, `${what} did not start yet; retrying`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
