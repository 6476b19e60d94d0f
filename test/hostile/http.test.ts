/**
 * The HTTP boundary under hostile input, against a real gateway, actor host and nats-server (each
 * a process, each its own NATS user), with the gateway's shipped limits. Pass: every answer is a
 * typed 4xx/503 JSON error or a correct success; no other 5xx; every accepted task ends in a
 * state its owner can read; `/healthz` answers throughout; no process exits or logs an unhandled
 * error. The curated corpus (`corpus/http.json`) states each case's expected answer; then
 * `FUZZ_RUNS` (1,000) generated requests from `FUZZ_SEED`; then slow clients.
 *
 * Cases marked `[known: ...]` fail until the defect they name is fixed (issue 10).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { TENANTS } from '../harness/edge.js';
import { startWatchedEdge, type WatchedEdge } from './lib/edge-watch.js';
import { httpCases } from './lib/http-cases.js';
import { loadHttpCorpus, runCorpusCase } from './lib/http-corpus.js';
import { checkTasksFinal, runHttpCases, type CreatedTask } from './lib/http-run.js';
import { rawRequest, type RawPiece } from './lib/raw-http.js';
import { fuzzRuns, fuzzSeed } from './lib/runs.js';
import { Tally } from './lib/tally.js';

/** The gateway's default body limit (`VIGIL_MAX_BODY_BYTES`): the suite tests what ships. */
const MAX_BODY_BYTES = 1024 * 1024;

let watched: WatchedEdge;
const corpusTasks: CreatedTask[] = [];

before(async () => {
  watched = await startWatchedEdge();
});
after(async () => {
  await watched?.stop();
});

describe('HTTP corpus', { concurrency: 8 }, () => {
  for (const c of loadHttpCorpus()) {
    const title = c.known ? `${c.name} [known: ${c.known}]` : c.name;
    test(title, async () => {
      const { answer, outcome, problems, taskId } = await runCorpusCase(c, watched.edge.gatewayUrl);
      if (taskId) corpusTasks.push({ id: taskId, key: TENANTS.alpha.key, input: c.name });
      assert.deepEqual(
        problems,
        [],
        `${c.name}: ${outcome} after ${answer.ms} ms: ${answer.status ?? 'no status'} ${answer.body.slice(0, 300)}`,
      );
    });
  }
});

describe('HTTP generated', () => {
  test('generated hostile requests: every answer typed or correct, every accepted task final', async (t) => {
    const seed = fuzzSeed();
    const runs = fuzzRuns();
    const tally = new Tally();
    const cases = fc.sample(httpCases({ maxBodyBytes: MAX_BODY_BYTES }), { seed, numRuns: runs });
    const url = watched.edge.gatewayUrl;
    const tasks = await runHttpCases(url, cases, tally, 'http');
    await checkTasksFinal(url, tasks, tally, 'http');
    t.diagnostic(`seed ${seed}, ${runs} cases, ${tasks.length} tasks created\n${tally.table()}`);
    assert.equal(tally.total('http'), runs + tasks.length);
    assert.equal(
      tally.violations.length,
      0,
      `${tally.violations.length} violations (replay: FUZZ_SEED=${seed} FUZZ_RUNS=${runs} npm test -- hostile/http)\n${tally.reportByOutcome()}`,
    );
  });

  test('slow clients: dribbled headers and bodies do not hold up others, and are answered', async () => {
    const url = watched.edge.gatewayUrl;
    const host = new URL(url).host;
    const body = (i: number) => `{"input":"slow-${i}"}`;
    const request = (i: number) =>
      `POST /v1/models/echo/infer HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${TENANTS.alpha.key}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body(i).length}\r\n\r\n${body(i)}`;
    const dribble = (text: string, pieces: number, pauseMs: number): RawPiece[] => {
      const size = Math.ceil(text.length / pieces);
      return Array.from({ length: pieces }, (_, k) => ({
        bytes: text.slice(k * size, (k + 1) * size),
        pauseMs,
      }));
    };
    const slow = Array.from({ length: 40 }, (_, i) => {
      const text = request(i);
      const headerEnd = text.indexOf('\r\n\r\n') + 4;
      // Half dribble their headers, half their bodies: 20 pieces, 150 ms apart (3 s each).
      const pieces =
        i % 2 === 0
          ? dribble(text, 20, 150)
          : [
              { bytes: text.slice(0, headerEnd), pauseMs: 150 },
              ...dribble(text.slice(headerEnd), 20, 150),
            ];
      return rawRequest(url, pieces, { patienceMs: 10_000 });
    });
    const quick: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = Date.now();
      const health = await fetch(`${url}/healthz`);
      const infer = await watched.edge.request('/v1/models/echo/infer', {
        method: 'POST',
        body: JSON.stringify({ input: `quick-${i}` }),
      });
      assert.equal(health.status, 200);
      assert.equal(infer.status, 200, await infer.text());
      quick.push(Date.now() - started);
      await new Promise((r) => setTimeout(r, 200));
    }
    const answers = await Promise.all(slow);
    const worst = Math.max(...quick);
    assert.ok(
      worst < 2000,
      `a request beside 40 slow clients took ${worst} ms (all: ${quick.join(', ')})`,
    );
    answers.forEach((answer, i) => {
      assert.equal(
        answer.status,
        200,
        `slow client ${i}: ${answer.status ?? 'no answer'} ${answer.body.slice(0, 200)}`,
      );
      const echoed = (JSON.parse(answer.body) as { result: { echo: string } }).result.echo;
      assert.equal(echoed, `slow-${i}`);
    });
  });
});

describe('HTTP invariants', () => {
  test('accepted corpus tasks are final; /healthz answered throughout; no exit or unhandled error', async () => {
    const tally = new Tally();
    await checkTasksFinal(watched.edge.gatewayUrl, corpusTasks, tally, 'http corpus');
    assert.equal(tally.violations.length, 0, tally.report());
    assert.ok(watched.health.polls > 10, `only ${watched.health.polls} health polls`);
    assert.deepEqual(watched.problems(), []);
  });
});
