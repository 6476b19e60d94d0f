/**
 * The streaming load generator: one child process per cell, as `load.ts` is for the request
 * cells, so the bench's bookkeeping and the servers under test never share its event loop.
 *
 *   node --import tsx bench/stream-load.ts '<StreamLoadOptions as JSON>'
 *
 * Three modes:
 * - `gateway`: `concurrency` closed loops of OpenAI chat streams (`stream: true`, usage included)
 *   over keep-alive sockets; time to first token is from sending the request to the first chunk
 *   that carries text.
 * - `in-process`: the same model, the same request, called in this process (`model.run` with
 *   `onToken`): what the model alone costs, with no transport at all.
 * - `hold`: opens `concurrency` streams at once, prints {@link STREAMS_OPEN_LINE} when every one
 *   has shown a token, keeps them open `seconds`, then closes them all (the client goes away).
 *
 * Prints {@link MEASURING_LINE} when the warm-up ends and, last, one JSON summary line. It stops
 * by itself: no loop starts a stream after the deadline, and every stream has a timeout.
 */
import { Agent, request } from 'node:http';
import { hrtime } from 'node:process';
import { createParser } from 'eventsource-parser';
import { createNgramChatModel } from '../actors/index.js';
import {
  MEASURING_LINE,
  ms3,
  parseGeneratorArgs,
  percentile,
  STREAMS_OPEN_LINE,
  streamLoadOptionsSchema,
  streamRequest,
  type StreamLoadOptions,
  type StreamLoadSummary,
} from './load-protocol.js';

const NS_PER_MS = 1e6;
const NS_PER_S = 1e9;

/** What one stream came to. */
interface StreamOutcome {
  /** `ok`, an HTTP status, `error:<code>`, `timeout`, or `incomplete` (no `[DONE]`). */
  outcome: string;
  /** Request sent to first text, ms. */
  ttftMs?: number;
  /** Completion tokens the stream carried (its usage chunk). */
  tokens: number;
}

/**
 * One chat stream through the gateway, read to its end (or until `signal` aborts it); calls
 * `onFirstToken` when the first text arrives.
 */
function gatewayStream(
  o: StreamLoadOptions,
  agent: Agent,
  seed: number,
  signal?: AbortSignal,
  onFirstToken?: () => void,
): Promise<StreamOutcome> {
  const url = new URL(o.url);
  const body = Buffer.from(JSON.stringify(streamRequest(o.tokens, seed)), 'utf8');
  const t0 = hrtime.bigint();
  return new Promise((resolve) => {
    let ttftMs: number | undefined;
    let tokens = 0;
    let done = false;
    /** The code of an error chunk, which ends a stream. */
    let failed: string | undefined;
    let settled = false;
    const settle = (outcome: StreamOutcome): void => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    const parser = createParser({
      onEvent(event) {
        if (event.data === '[DONE]') {
          done = true;
          return;
        }
        const chunk = JSON.parse(event.data) as {
          choices?: { delta?: { content?: string } }[];
          usage?: { completion_tokens: number };
          error?: { code?: string };
        };
        if (chunk.error) failed = `stream-error:${chunk.error.code ?? 'unknown'}`;
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        if (ttftMs === undefined && chunk.choices?.[0]?.delta?.content) {
          ttftMs = Number(hrtime.bigint() - t0) / NS_PER_MS;
          onFirstToken?.();
        }
      },
    });
    const req = request(
      {
        agent,
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { ...o.headers, 'Content-Length': String(body.byteLength) },
        signal,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          settle({ outcome: String(res.statusCode), tokens: 0 });
          return;
        }
        res.setEncoding('utf8');
        res.on('data', (text: string) => parser.feed(text));
        res.once('end', () =>
          settle({
            outcome: done ? 'ok' : (failed ?? 'incomplete'),
            ...(ttftMs === undefined ? {} : { ttftMs }),
            tokens,
          }),
        );
        res.once('error', () => settle({ outcome: signal?.aborted ? 'closed' : 'error', tokens }));
        // An aborted response may end with neither `end` nor `error`.
        res.once('close', () =>
          settle({ outcome: signal?.aborted ? 'closed' : done ? 'ok' : 'incomplete', tokens }),
        );
      },
    );
    req.setTimeout(o.timeoutMs, () => {
      settle({ outcome: 'timeout', tokens });
      req.destroy();
    });
    req.once('error', (err: NodeJS.ErrnoException) =>
      settle({ outcome: signal?.aborted ? 'closed' : `error:${err.code ?? err.name}`, tokens }),
    );
    req.end(body);
  });
}

/** The same request's model, called here. */
function inProcessRunner(o: StreamLoadOptions): (seed: number) => Promise<StreamOutcome> {
  const model = createNgramChatModel();
  return async (seed) => {
    const { input, params } = modelRequest(o.tokens, seed);
    const t0 = hrtime.bigint();
    let ttftMs: number | undefined;
    let tokens = 0;
    await model.run(input, params, {
      signal: new AbortController().signal,
      onToken: () => {
        tokens += 1;
        ttftMs ??= Number(hrtime.bigint() - t0) / NS_PER_MS;
      },
    });
    return { outcome: 'ok', ...(ttftMs === undefined ? {} : { ttftMs }), tokens };
  };
}

/** The OpenAI request's model input and params, as the gateway hands them to the model. */
function modelRequest(tokens: number, seed: number) {
  const r = streamRequest(tokens, seed);
  return {
    input: { messages: r.messages },
    params: { max_tokens: r.max_tokens, min_tokens: r.min_tokens, seed: r.seed },
  };
}

/** Closed loops for the warm-up and then the measured time. */
async function closedLoops(
  o: StreamLoadOptions,
  one: (seed: number) => Promise<StreamOutcome>,
): Promise<StreamLoadSummary> {
  const start = hrtime.bigint();
  const measureFrom = start + BigInt(Math.round(o.warmupSeconds * NS_PER_S));
  const until = measureFrom + BigInt(Math.round(o.seconds * NS_PER_S));
  let cpuAtMeasureStart = process.cpuUsage();
  setTimeout(() => {
    cpuAtMeasureStart = process.cpuUsage();
    process.stdout.write(`${MEASURING_LINE}\n`);
  }, o.warmupSeconds * 1000);
  const ttfts: number[] = [];
  const outcomes: Record<string, number> = {};
  let count = 0;
  let errors = 0;
  let tokens = 0;
  let seed = 0;
  let lastEnd = measureFrom;
  const loop = async (): Promise<void> => {
    while (hrtime.bigint() < until) {
      const t0 = hrtime.bigint();
      const result = await one((seed += 1));
      const t1 = hrtime.bigint();
      if (t0 < measureFrom) continue;
      count += 1;
      if (t1 > lastEnd) lastEnd = t1;
      outcomes[result.outcome] = (outcomes[result.outcome] ?? 0) + 1;
      if (result.outcome !== 'ok' || result.ttftMs === undefined) {
        errors += 1;
        continue;
      }
      ttfts.push(result.ttftMs);
      tokens += result.tokens;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, () => loop()));
  const cpu = process.cpuUsage(cpuAtMeasureStart);
  const seconds = Number(lastEnd - measureFrom) / NS_PER_S;
  const sorted = Float64Array.from(ttfts).sort();
  return {
    count,
    errors,
    outcomes,
    seconds: Math.round(seconds * 1000) / 1000,
    streamsPerSecond: seconds > 0 ? Math.round((ttfts.length / seconds) * 10) / 10 : 0,
    ttftP50: ms3(percentile(sorted, 0.5)),
    ttftP99: ms3(percentile(sorted, 0.99)),
    tokens,
    tokensPerSecond: seconds > 0 ? Math.round(tokens / seconds) : 0,
    cpuPercent: seconds > 0 ? Math.round((cpu.user + cpu.system) / 1e4 / seconds) : 0,
  };
}

/** Opens every stream at once, says so when each has shown a token, holds, then closes them. */
async function hold(o: StreamLoadOptions, agent: Agent): Promise<StreamLoadSummary> {
  const closeAll = new AbortController();
  const t0 = hrtime.bigint();
  let open = 0;
  let announced = false;
  let allOpen!: () => void;
  const opened = new Promise<void>((resolve) => (allOpen = resolve));
  const streams = Array.from({ length: o.concurrency }, (_, i) =>
    gatewayStream(o, agent, i + 1, closeAll.signal, () => {
      open += 1;
      if (open === o.concurrency) allOpen();
    }),
  );
  // Every stream ending before the hold (refused, failed) ends the wait too; counted below.
  const finished = Promise.all(streams);
  const openTimeout = setTimeout(() => closeAll.abort(), o.timeoutMs);
  await Promise.race([opened, finished]);
  clearTimeout(openTimeout);
  const openSeconds = Number(hrtime.bigint() - t0) / NS_PER_S;
  if (open === o.concurrency) {
    announced = true;
    process.stdout.write(`${STREAMS_OPEN_LINE}\n`);
    await new Promise((resolve) => setTimeout(resolve, o.seconds * 1000));
  }
  closeAll.abort();
  const results = await finished;
  const outcomes: Record<string, number> = {};
  for (const r of results) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
  const sorted = Float64Array.from(results.flatMap((r) => r.ttftMs ?? [])).sort();
  return {
    count: results.length,
    // Every stream should have been open at the hold, and closed by this side.
    errors: announced ? results.filter((r) => r.outcome !== 'closed').length : results.length,
    outcomes,
    seconds: Math.round(openSeconds * 1000) / 1000,
    streamsPerSecond: 0,
    ttftP50: ms3(percentile(sorted, 0.5)),
    ttftP99: ms3(percentile(sorted, 0.99)),
    tokens: 0,
    tokensPerSecond: 0,
    cpuPercent: 0,
  };
}

async function run(o: StreamLoadOptions): Promise<StreamLoadSummary> {
  // One socket per stream, kept open between streams.
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  try {
    if (o.mode === 'in-process') return await closedLoops(o, inProcessRunner(o));
    if (o.mode === 'hold') return await hold(o, agent);
    return await closedLoops(o, (seed) => gatewayStream(o, agent, seed));
  } finally {
    agent.destroy();
  }
}

try {
  const summary = await run(
    parseGeneratorArgs(process.argv, streamLoadOptionsSchema, 'stream-load.ts'),
  );
  process.stdout.write(`${JSON.stringify(summary)}\n`);
} catch (err) {
  process.stderr.write(`stream-load: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
