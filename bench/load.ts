/**
 * The load generator: one child process per cell, so that the bench's own bookkeeping and the
 * servers under test never share its event loop.
 *
 *   node --import tsx bench/load.ts '<LoadOptions as JSON>'
 *
 * Runs `concurrency` closed loops over keep-alive sockets for the warm-up and then the measured
 * time. On stdout it prints {@link MEASURING_LINE} when the warm-up ends (so the parent can start
 * its CPU accounting) and, last, one JSON summary line ({@link LoadSummary}). It stops by itself:
 * no loop starts a request after the deadline, and every request has a timeout.
 */
import { Agent, request } from 'node:http';
import { hrtime } from 'node:process';
import {
  loadOptionsSchema,
  MEASURING_LINE,
  ms3,
  parseGeneratorArgs,
  percentile,
  type LoadOptions,
  type LoadSummary,
} from './load-protocol.js';

const NS_PER_MS = 1e6;
const NS_PER_S = 1e9;

/** What one request came to: an HTTP status, or why there was none. */
type Outcome = { type: 'status'; status: number } | { type: 'failed'; reason: string };

async function run(options: LoadOptions): Promise<LoadSummary> {
  const url = new URL(options.url);
  const body = Buffer.from(options.body, 'utf8');
  const headers = { ...options.headers, 'Content-Length': String(body.byteLength) };
  // One socket per loop, kept open: the cell measures the server, not TCP handshakes.
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });

  const send = (): Promise<Outcome> =>
    new Promise((resolve) => {
      const req = request(
        {
          agent,
          hostname: url.hostname,
          port: url.port,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers,
        },
        (res) => {
          // The body must be read to the end before the socket can carry the next request.
          res.resume();
          res.once('end', () => resolve({ type: 'status', status: res.statusCode ?? 0 }));
          res.once('error', (err: NodeJS.ErrnoException) =>
            resolve({ type: 'failed', reason: `error:${err.code ?? err.name}` }),
          );
        },
      );
      req.setTimeout(options.timeoutMs, () => {
        resolve({ type: 'failed', reason: 'timeout' });
        req.destroy();
      });
      req.once('error', (err: NodeJS.ErrnoException) =>
        resolve({ type: 'failed', reason: `error:${err.code ?? err.name}` }),
      );
      req.end(body);
    });

  const start = hrtime.bigint();
  const measureFrom = start + BigInt(Math.round(options.warmupSeconds * NS_PER_S));
  let cpuAtMeasureStart = process.cpuUsage();
  setTimeout(() => {
    cpuAtMeasureStart = process.cpuUsage();
    process.stdout.write(`${MEASURING_LINE}\n`);
  }, options.warmupSeconds * 1000);
  const until = measureFrom + BigInt(Math.round(options.seconds * NS_PER_S));
  const latenciesMs: number[] = [];
  const outcomes: Record<string, number> = {};
  let count = 0;
  let errors = 0;
  let lastEnd = measureFrom;

  const loop = async (): Promise<void> => {
    while (hrtime.bigint() < until) {
      const t0 = hrtime.bigint();
      const outcome = await send();
      const t1 = hrtime.bigint();
      // Requests begun in the warm-up are left out; those still running at the deadline are
      // kept, and the window is stretched to their end so the rate stays honest.
      if (t0 < measureFrom) continue;
      count += 1;
      if (t1 > lastEnd) lastEnd = t1;
      const key = outcome.type === 'status' ? String(outcome.status) : outcome.reason;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
      if (outcome.type === 'status' && outcome.status >= 200 && outcome.status < 300) {
        latenciesMs.push(Number(t1 - t0) / NS_PER_MS);
      } else {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, () => loop()));
  const cpu = process.cpuUsage(cpuAtMeasureStart);
  agent.destroy();

  const sorted = Float64Array.from(latenciesMs).sort();
  const seconds = Number(lastEnd - measureFrom) / NS_PER_S;
  return {
    count,
    errors,
    outcomes,
    seconds: Math.round(seconds * 1000) / 1000,
    rps: seconds > 0 ? Math.round((sorted.length / seconds) * 10) / 10 : 0,
    p50: ms3(percentile(sorted, 0.5)),
    p90: ms3(percentile(sorted, 0.9)),
    p99: ms3(percentile(sorted, 0.99)),
    max: ms3(percentile(sorted, 1)),
    cpuPercent: seconds > 0 ? Math.round((cpu.user + cpu.system) / 1e4 / seconds) : 0,
  };
}

try {
  const summary = await run(parseGeneratorArgs(process.argv, loadOptionsSchema, 'load.ts'));
  process.stdout.write(`${JSON.stringify(summary)}\n`);
} catch (err) {
  process.stderr.write(`load: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
