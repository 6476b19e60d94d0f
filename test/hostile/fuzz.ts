/**
 * `npm run fuzz [-- http|nats|config ...]`: the hostile-input suites' generators at length, each
 * boundary against a fresh real edge (nats-server, gateway, actor host as processes). Runs
 * `FUZZ_RUNS` generated cases per boundary (default 10,000) from `FUZZ_SEED` (default: a new
 * seed, printed first), in chunks of 1,000 (chunk k uses seed + k, so `FUZZ_SEED=<seed + k>
 * FUZZ_RUNS=1000 npm test -- hostile/<boundary>` replays one), then prints the counts per
 * boundary and outcome and exits 1, printing the failing inputs, if any pass criterion broke:
 * an answer that is neither a typed 4xx/503 JSON error nor a correct success, another 5xx, an
 * accepted task not final and visible to its owner, a mis-answered caller, a process that exited,
 * a `/healthz` that did not answer, a log line with an unhandled error.
 */
import fc from 'fast-check';
import { allSettings, docCases, docRaw, judgeSetting, settingCases } from './lib/config-cases.js';
import { startWatchedEdge, type WatchedEdge } from './lib/edge-watch.js';
import { httpCases } from './lib/http-cases.js';
import { checkTasksFinal, runHttpCases } from './lib/http-run.js';
import { natsCases } from './lib/nats-cases.js';
import { runNatsCases } from './lib/nats-run.js';
import { FUZZ_RUNS_DEFAULT, fuzzRuns, fuzzSeed } from './lib/runs.js';
import { Tally } from './lib/tally.js';
import { ConfigError } from '../../nodes/common/index.js';

const CHUNK = 1000;
const runs = fuzzRuns(FUZZ_RUNS_DEFAULT);
const seed = fuzzSeed(Math.floor(Math.random() * 2 ** 31));
const wanted = process.argv.slice(2);
const boundaries = wanted.length > 0 ? wanted : ['http', 'nats', 'config'];
const tally = new Tally();

/** Chunks of `runs` cases: [seed of the chunk, cases in it]. */
function chunks(): [number, number][] {
  return Array.from({ length: Math.ceil(runs / CHUNK) }, (_, k) => [
    seed + k,
    Math.min(CHUNK, runs - k * CHUNK),
  ]);
}

function log(text: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
}

/** The edge's invariants after a boundary's run, as violations. */
function invariants(watched: WatchedEdge, boundary: string): void {
  const problems = watched.problems();
  for (const problem of problems)
    tally.violate(boundary, 'invariant broken', problem, '(the run as a whole)');
  if (problems.length === 0)
    tally.count(boundary, `invariants held (${watched.health.polls} /healthz polls)`);
}

async function fuzzHttp(): Promise<void> {
  const watched = await startWatchedEdge();
  try {
    for (const [chunkSeed, n] of chunks()) {
      const cases = fc.sample(httpCases({ maxBodyBytes: 1024 * 1024 }), {
        seed: chunkSeed,
        numRuns: n,
      });
      const tasks = await runHttpCases(watched.edge.gatewayUrl, cases, tally, 'http');
      await checkTasksFinal(watched.edge.gatewayUrl, tasks, tally, 'http');
      log(
        `http: chunk seed ${chunkSeed}: ${n} cases, ${tasks.length} tasks checked, ${tally.violations.length} violations so far`,
      );
    }
    invariants(watched, 'http');
  } finally {
    await watched.stop();
  }
}

async function fuzzNats(): Promise<void> {
  const watched = await startWatchedEdge({
    actorEnv: {
      VIGIL_ECHO_FAULTS: '{"enabled":true,"maxDelayMs":2000}',
      VIGIL_RETRY_SCHEDULE_MS: '200',
    },
  });
  try {
    for (const [chunkSeed, n] of chunks()) {
      await runNatsCases(
        watched.edge,
        fc.sample(natsCases, { seed: chunkSeed, numRuns: n }),
        tally,
        'nats',
      );
      log(
        `nats: chunk seed ${chunkSeed}: ${n} cases, ${tally.violations.length} violations so far`,
      );
    }
    const res = await watched.edge.request('/v1/models/echo/infer', {
      method: 'POST',
      body: '{"input":"still alive"}',
    });
    if (res.status === 200) tally.count('nats', 'actor host still serves');
    else
      tally.violate(
        'nats',
        'actor host no longer serves',
        `echo answered ${res.status}: ${await res.text()}`,
        '(the run as a whole)',
      );
    invariants(watched, 'nats');
  } finally {
    await watched.stop();
  }
}

function fuzzConfig(): void {
  const settings = new Map(allSettings().map((s) => [s.name, s]));
  for (const [chunkSeed, n] of chunks()) {
    for (const c of fc.sample(settingCases(), { seed: chunkSeed, numRuns: n })) {
      const { outcome, problem } = judgeSetting(settings.get(c.name)!, c.raw);
      const input = `${c.name}=${JSON.stringify(c.raw)}`;
      if (problem) tally.violate('config: settings', outcome, `${c.name}: ${problem}`, input);
      else tally.count('config: settings', outcome, input);
    }
    for (const c of fc.sample(docCases(), { seed: chunkSeed, numRuns: n })) {
      const input = `${c.name} ${c.path} ${c.change}: ${c.text}`;
      try {
        settings.get(c.name)!.parse(docRaw(c));
        tally.count('config: documents', 'accepted (the change was valid)', input);
      } catch (err) {
        if (err instanceof ConfigError && err.message.includes(c.name))
          tally.count('config: documents', 'ConfigError naming it', input);
        else tally.violate('config: documents', 'crashed or unnamed', String(err), input);
      }
    }
  }
  log(
    `config: ${runs} settings and ${runs} documents, ${tally.violations.length} violations so far`,
  );
}

log(`fuzz: ${runs} generated cases per boundary (${boundaries.join(', ')}), FUZZ_SEED=${seed}`);
const started = Date.now();
if (boundaries.includes('http')) await fuzzHttp();
if (boundaries.includes('nats')) await fuzzNats();
if (boundaries.includes('config')) fuzzConfig();
process.stdout.write(`\n${tally.table()}\n\n`);
if (process.env['FUZZ_EXAMPLES']) {
  for (const [key, input] of tally.examples)
    process.stdout.write(`example ${key}: ${input.slice(0, 400)}\n`);
}
log(`done in ${Math.round((Date.now() - started) / 1000)} s; FUZZ_SEED=${seed}, FUZZ_RUNS=${runs}`);
if (tally.violations.length > 0) {
  process.stdout.write(
    `\n${tally.violations.length} violations of the pass criteria, one of each kind:\n${tally.reportByOutcome()}\n`,
  );
  process.exit(1);
}
log('every pass criterion held');
