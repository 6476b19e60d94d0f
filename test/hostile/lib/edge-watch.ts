/**
 * The invariants every hostile run checks on the edge it ran against, whatever the inputs were:
 * `/healthz` answered throughout (polled while the run goes on), no node process exited, and no
 * node logged an unhandled error or a fatal line. A real edge (`startTestEdge`): nats-server,
 * gateway and actor host as processes, each as its own NATS user.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestEdge, type TestEdge, type TestEdgeOptions } from '../../harness/edge.js';

/** How often `/healthz` is asked, and how long an answer may take. */
const HEALTH_POLL_MS = 250;
const HEALTH_TIMEOUT_MS = 2000;

/** Log lines that break the pass criteria: an unhandled rejection or exception, a fatal level. */
const BAD_LOG_LINE = /unhandled|uncaught|"level":\s*("fatal"|60)|FATAL ERROR|Trace:/i;

/** An edge under watch. */
export interface WatchedEdge {
  readonly edge: TestEdge;
  /** `/healthz` polls so far, and the ones that failed or were slow. */
  readonly health: { polls: number; failures: string[] };
  /** Everything that broke an invariant so far (exits, bad health, bad log lines). */
  problems(): string[];
  /** Stops polling, stops the edge (by PID) and removes the logs. */
  stop(): Promise<void>;
}

/** Starts an edge with node logs kept, and polls its `/healthz` until `stop`. */
export async function startWatchedEdge(options: TestEdgeOptions = {}): Promise<WatchedEdge> {
  const logDir = mkdtempSync(join(tmpdir(), 'vigil-hostile-logs-'));
  let edge: TestEdge;
  try {
    edge = await startTestEdge({ ...options, logDir });
  } catch (err) {
    rmSync(logDir, { recursive: true, force: true });
    throw err;
  }
  const exits: string[] = [];
  let stopping = false;
  for (const node of [edge.gateway, ...edge.actorHosts]) {
    void node.exited.then((code) => {
      if (!stopping) exits.push(`${node.name} (pid ${node.pid}) exited: ${code}`);
    });
  }
  const health = { polls: 0, failures: [] as string[] };
  const poll = setInterval(() => {
    const started = Date.now();
    health.polls += 1;
    fetch(`${edge.gatewayUrl}/healthz`, { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) }).then(
      async (res) => {
        await res.arrayBuffer();
        if (res.status !== 200) health.failures.push(`healthz answered ${res.status}`);
      },
      (err: unknown) =>
        health.failures.push(
          `healthz failed after ${Date.now() - started} ms: ${(err as Error).message}`,
        ),
    );
  }, HEALTH_POLL_MS);
  return {
    edge,
    health,
    problems() {
      const lines = readdirSync(logDir).flatMap((file) =>
        readFileSync(join(logDir, file), 'utf8')
          .split('\n')
          .filter((line) => BAD_LOG_LINE.test(line))
          .map((line) => `${file}: ${line.slice(0, 500)}`),
      );
      return [...exits, ...health.failures.slice(0, 5), ...lines];
    },
    async stop() {
      stopping = true;
      clearInterval(poll);
      try {
        await edge.stop();
      } finally {
        rmSync(logDir, { recursive: true, force: true });
      }
    },
  };
}
