/**
 * Integration tests for model executors: real worker threads and child processes running the
 * real built-in models. Each test states a property of the isolation: the same answers as the
 * model in-process, typed errors across the boundary, and that a crash, a hang, an out-of-memory
 * or a kill -9 ends the executor (never this test process) and fails its runs as retryable. The
 * last suite puts the executors under the supervisor and prints the restart times it asserts on.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, RetryableError, TerminalError, VigilError } from '../../protocol/index.js';
import type { ChatOutput } from '../../protocol/index.js';
import {
  createBuiltinModels,
  createExecutorStarter,
  createSupervisor,
  ExecutorBusyError,
  ExecutorGoneError,
  ExecutorStartError,
  Isolation,
  startExecutor,
} from '../../actors/index.js';
import type {
  ExecutorSpec,
  ModelExecutor,
  RunOptions,
  StartExecutorOptions,
  SupervisorEvent,
} from '../../actors/index.js';
import { processGone } from '../harness/processes.js';

const ISOLATED = [Isolation.WorkerThread, Isolation.ChildProcess] as const;
const ALL = [Isolation.InProcess, ...ISOLATED] as const;

const ECHO_FAULTS = { echo: { faults: { enabled: true } } };
const CHAT_INPUT = {
  messages: [{ role: 'user', content: 'Tell me about the sea and the ships.' }],
};
const CHAT_PARAMS = { max_tokens: 40, temperature: 0.7, seed: 7 };
const EMBED_INPUT = ['the quick brown fox', 'a lazy dog'];

/** An absolute deadline `ms` from now. */
const inMs = (ms: number): RunOptions => ({ deadline: Date.now() + ms });

async function start(
  isolation: Isolation,
  model: string,
  extra: Partial<ExecutorSpec> = {},
  options: StartExecutorOptions = {},
): Promise<ModelExecutor> {
  // These tests start up to nine executors at once on two cores; what they assert is how an
  // executor dies, not how fast it boots, so a loaded machine must not fail them at start-up.
  return startExecutor(
    { isolation, model, models: ECHO_FAULTS, testHooks: true, ...extra },
    { readyTimeoutMs: 60_000, ...options },
  );
}

/** Resolves once `predicate` holds, polling; fails the test after `timeoutMs`. */
async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('every isolation runs the built-in models', () => {
  const reference = createBuiltinModels(ECHO_FAULTS);
  const runReference = (name: string, input: unknown, params: Record<string, unknown>) =>
    reference
      .find((model) => model.name === name)
      ?.run(input, params, { signal: new AbortController().signal });

  for (const isolation of ALL) {
    test(`${isolation}: echo, ngram-chat and hash-embed answer as the runtimes do in-process`, async () => {
      const began = performance.now();
      const [echo, chat, embed] = await Promise.all(
        ['echo', 'ngram-chat', 'hash-embed'].map((model) => start(isolation, model)),
      );
      assert.ok(echo && chat && embed);
      console.log(
        `${isolation}: three executors ready in ${(performance.now() - began).toFixed(0)} ms`,
      );
      for (const executor of [echo, chat, embed]) {
        assert.equal(executor.isolation, isolation);
        assert.equal(executor.version, 'v1');
        if (isolation === Isolation.ChildProcess) assert.notEqual(executor.pid, process.pid);
        else assert.equal(executor.pid, process.pid);
        assert.equal(await executor.ping(1_000), true);
      }

      assert.deepEqual(await echo.run({ a: [1, 'x'] }, {}, inMs(5_000)), { echo: { a: [1, 'x'] } });

      // echo reports progress every 250 ms of an injected delay; each report crosses over.
      const progress: [number, string | undefined][] = [];
      await echo.run(
        1,
        { delay_ms: 300 },
        {
          ...inMs(5_000),
          onProgress: (fraction, message) => progress.push([fraction, message]),
        },
      );
      assert.ok(progress.length >= 1, `${progress.length} progress reports`);
      assert.deepEqual(progress.at(-1), [1, 'waiting']);

      const tokens: string[] = [];
      const answer = (await chat.run(CHAT_INPUT, CHAT_PARAMS, {
        ...inMs(5_000),
        onToken: (token) => tokens.push(token),
      })) as ChatOutput;
      assert.deepEqual(answer, await runReference('ngram-chat', CHAT_INPUT, CHAT_PARAMS));
      assert.equal(
        tokens.join(''),
        answer.text,
        'every token arrived, in order, before the result',
      );
      assert.equal(tokens.length, answer.usage.completion_tokens);

      assert.deepEqual(
        await embed.run(EMBED_INPUT, { dimensions: 64 }, inMs(5_000)),
        await runReference('hash-embed', EMBED_INPUT, { dimensions: 64 }),
      );

      await Promise.all([echo.terminate(), chat.terminate(), embed.terminate()]);
      assert.deepEqual(await echo.exited, { reason: 'terminated', unexpected: false });
      await assert.rejects(echo.run(1, {}, inMs(1_000)), ExecutorGoneError);
      assert.equal(await echo.ping(100), false);
    });

    test(`${isolation}: model errors and deadlines come back typed; the executor lives on`, async () => {
      const [echo, chat] = await Promise.all([
        start(isolation, 'echo'),
        start(isolation, 'ngram-chat'),
      ]);
      try {
        const terminal = await echo
          .run(1, { fail: 'terminal' }, inMs(5_000))
          .catch((e: unknown) => e);
        assert.ok(terminal instanceof TerminalError, `terminal: ${String(terminal)}`);
        assert.equal(terminal.code, ErrorCode.ModelRejected);
        assert.equal(terminal.retryable, false);

        const retryable = await echo
          .run(1, { fail: 'retryable' }, inMs(5_000))
          .catch((e: unknown) => e);
        assert.ok(retryable instanceof RetryableError, `retryable: ${String(retryable)}`);
        assert.equal(retryable.code, ErrorCode.ModelFailed);

        const invalid = await chat
          .run(CHAT_INPUT, { max_tokens: 0 }, inMs(5_000))
          .catch((e: unknown) => e);
        // A ValidationError in-process; rebuilt from the wire as its base, TerminalError.
        assert.ok(invalid instanceof VigilError, `invalid: ${String(invalid)}`);
        assert.equal(invalid.retryable, false);
        assert.equal(invalid.code, ErrorCode.InvalidRequest);
        assert.match(invalid.message, /max_tokens/);

        // The executor aborts the run at its deadline, inside the thread or process.
        const began = performance.now();
        const late = await echo.run(1, { delay_ms: 10_000 }, inMs(150)).catch((e: unknown) => e);
        const tookMs = performance.now() - began;
        assert.ok(late instanceof RetryableError, `late: ${String(late)}`);
        assert.equal(late.code, ErrorCode.DeadlineExceeded);
        assert.ok(tookMs < 1_000, `aborted at the deadline, after ${tookMs.toFixed(0)} ms`);

        // The caller's own abort reaches the model too (RunOptions gains `signal` in the actor).
        const abort = new AbortController();
        const withSignal = { ...inMs(10_000), signal: abort.signal };
        const aborted = echo.run(1, { delay_ms: 10_000 }, withSignal).catch((e: unknown) => e);
        setTimeout(() => abort.abort(), 50);
        const abortedError = await aborted;
        assert.ok(abortedError instanceof RetryableError);
        assert.equal(abortedError.code, ErrorCode.DeadlineExceeded);

        assert.equal(await echo.ping(1_000), true);
        assert.deepEqual(await echo.run('still here', {}, inMs(5_000)), { echo: 'still here' });
      } finally {
        await Promise.all([echo.terminate(), chat.terminate()]);
      }
    });

    test(`${isolation}: an unknown model fails to start with a terminal ExecutorStartError`, async () => {
      const err = await start(isolation, 'no-such-model').catch((e: unknown) => e);
      assert.ok(err instanceof ExecutorStartError, String(err));
      assert.equal(err.retryable, false);
      assert.match(err.message, /unknown model/);
    });
  }

  test('runs beyond maxPendingRuns are refused with a retryable ExecutorBusyError', async () => {
    const echo = await start(Isolation.WorkerThread, 'echo', {}, { maxPendingRuns: 2 });
    try {
      const slow = [1, 2].map((i) => echo.run(i, { delay_ms: 200 }, inMs(5_000)));
      const refused = await echo.run(3, {}, inMs(5_000)).catch((e: unknown) => e);
      assert.ok(refused instanceof ExecutorBusyError);
      assert.equal(refused.retryable, true);
      assert.deepEqual(await Promise.all(slow), [{ echo: 1 }, { echo: 2 }]);
      assert.deepEqual(await echo.run(4, {}, inMs(5_000)), { echo: 4 }, 'room again');
    } finally {
      await echo.terminate();
    }
  });
});

// Each test owns its executor, so they run side by side; what they assert is not a race.
describe('a dying executor takes only itself down', { concurrency: true }, () => {
  for (const isolation of ISOLATED) {
    test(`${isolation}: process.exit in the executor fails its runs with ExecutorGoneError`, async () => {
      const echo = await start(isolation, 'echo');
      const bystander = echo
        .run('bystander', { delay_ms: 5_000 }, inMs(10_000))
        .catch((e: unknown) => e);
      const crashed = await echo.run(1, { __crash: true }, inMs(5_000)).catch((e: unknown) => e);
      assert.ok(crashed instanceof ExecutorGoneError, String(crashed));
      assert.equal(crashed.retryable, true);
      assert.equal(crashed.code, ErrorCode.ModelFailed);
      assert.ok((await bystander) instanceof ExecutorGoneError, 'every run in it fails');
      assert.deepEqual(await echo.exited, { reason: 'exit code 13', unexpected: true });
    });

    test(`${isolation}: a blocked event loop fails ping() and terminate() still stops it`, async () => {
      const echo = await start(isolation, 'echo');
      const run = echo.run(1, { __hang: true }, inMs(60_000)).catch((e: unknown) => e);
      assert.equal(await echo.ping(300), false, 'no pong from a spinning executor');
      const began = performance.now();
      await echo.terminate();
      const stopMs = performance.now() - began;
      console.log(`${isolation}: hung executor stopped in ${stopMs.toFixed(0)} ms`);
      assert.ok(stopMs < 1_000);
      assert.ok((await run) instanceof ExecutorGoneError);
      assert.deepEqual(await echo.exited, { reason: 'terminated', unexpected: false });
    });

    test(`${isolation}: a run past its deadline plus grace gets the executor killed as unresponsive`, async () => {
      const echo = await start(isolation, 'echo', {}, { deadlineGraceMs: 100 });
      const began = performance.now();
      const run = await echo.run(1, { __hang: true }, inMs(100)).catch((e: unknown) => e);
      const tookMs = performance.now() - began;
      assert.ok(run instanceof ExecutorGoneError, String(run));
      const exit = await echo.exited;
      assert.equal(exit.unexpected, true);
      assert.match(exit.reason, /^unresponsive/);
      assert.ok(tookMs < 1_500, `killed ${tookMs.toFixed(0)} ms after the run started`);
    });

    test(`${isolation}: running out of memory ends the executor, not the host`, async () => {
      const echo = await start(isolation, 'echo', { memoryLimitMb: 32 });
      const heapBefore = process.memoryUsage().heapUsed;
      const run = await echo.run(1, { __oom: true }, inMs(20_000)).catch((e: unknown) => e);
      assert.ok(run instanceof ExecutorGoneError, String(run));
      const exit = await echo.exited;
      console.log(`${isolation}: out of memory -> ${JSON.stringify(exit)}`);
      assert.equal(exit.unexpected, true);
      assert.equal(
        exit.reason,
        isolation === Isolation.WorkerThread ? 'out of memory (heap limit 32 MiB)' : 'SIGABRT',
      );
      // This process is fine: it is running this line, with its heap where it was.
      assert.ok(process.memoryUsage().heapUsed < heapBefore + 64 * 1024 * 1024);
    });
  }

  test('child-process: kill -9 settles exited with the signal and fails its runs', async () => {
    const echo = await start(Isolation.ChildProcess, 'echo');
    const run = echo.run(1, { delay_ms: 5_000 }, inMs(10_000)).catch((e: unknown) => e);
    process.kill(echo.pid, 'SIGKILL');
    assert.deepEqual(await echo.exited, { reason: 'SIGKILL', unexpected: true });
    const err = await run;
    assert.ok(err instanceof ExecutorGoneError);
    assert.match(err.message, /SIGKILL/);
  });
});

// The two hosts boot in parallel: each spends most of its time starting node and tsx.
describe('child processes do not outlive their host', { concurrency: true }, () => {
  const indexUrl = new URL('../../actors/executors/index.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx');

  /** Starts a host process with a child-process executor; resolves with both pids. */
  async function host(then: string) {
    const script =
      `const { startExecutor } = await import(${JSON.stringify(indexUrl)});\n` +
      `const ex = await startExecutor({ isolation: 'child-process', model: 'echo' });\n` +
      `console.log(ex.pid);\n${then}\n`;
    const proc = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const childPid = await new Promise<number>((resolve, reject) => {
      proc.stdout.once('data', (data: Buffer) => resolve(Number(String(data).trim())));
      proc.once('exit', (code) => reject(new Error(`host exited early with ${code}`)));
    });
    return { proc, childPid };
  }

  test('a host that exits kills its executors (exit hook)', async () => {
    const { proc, childPid } = await host('process.exit(3);');
    const [code] = await new Promise<[number | null]>((resolve) =>
      proc.once('exit', (c) => resolve([c])),
    );
    assert.equal(code, 3);
    assert.equal(await processGone(childPid, 2_000), true, `executor ${childPid} is gone`);
  });

  test('a host killed with SIGKILL leaves no executor behind (IPC disconnect)', async () => {
    const { proc, childPid } = await host('setInterval(() => {}, 1000);');
    proc.kill('SIGKILL');
    assert.equal(await processGone(childPid, 2_000), true, `executor ${childPid} is gone`);
  });
});

describe('supervised executors', () => {
  const cases = [
    { isolation: Isolation.WorkerThread, model: 'echo', spares: 0 },
    { isolation: Isolation.WorkerThread, model: 'ngram-chat', spares: 0 },
    { isolation: Isolation.ChildProcess, model: 'echo', spares: 0 },
    { isolation: Isolation.WorkerThread, model: 'ngram-chat', spares: 1 },
    { isolation: Isolation.ChildProcess, model: 'echo', spares: 1 },
  ] as const;
  const inputs: Record<string, [unknown, Record<string, unknown>]> = {
    echo: ['hi', {}],
    'ngram-chat': [CHAT_INPUT, CHAT_PARAMS],
  };
  const CRASHES = 2;
  // The target: a crashed actor is running again within 1 s. A spare meets it whatever
  // the machine's load (the restart costs the 50 ms backoff). Without one the restart waits for a
  // boot: 0.2-0.3 s compiled, 0.4-0.7 s under tsx, and past 1 s under tsx on a loaded two-core
  // box, so there the test holds it to a bound that only a bug (a missed exit, a ready timeout,
  // a wrong backoff) would break, and prints the figures.
  const budgetMs = (spares: number): number => (spares > 0 ? 1_000 : 2_500);

  for (const { isolation, model, spares } of cases) {
    test(`${isolation} ${model}, ${spares} spare: a crashed executor is running again within ${budgetMs(spares)} ms`, async () => {
      const [input, params] = inputs[model] ?? [undefined, {}];
      const events: SupervisorEvent[] = [];
      const starter = createExecutorStarter(
        { isolation, model, models: ECHO_FAULTS, testHooks: true },
        { spares },
      );
      // stableAfterMs 0: every crash is a healthy executor's first, so its backoff is the initial
      // 50 ms; how the backoff grows in a crash loop is the unit tests' business.
      const supervisor = createSupervisor({
        stableAfterMs: 0,
        onEvent: (event) => events.push(event),
      });
      try {
        const handle = await supervisor.supervise(model, () => starter.start());
        const downMs: number[] = [];
        const serviceGapMs: number[] = [];
        for (let i = 0; i < CRASHES; i++) {
          if (spares > 0) await until(() => starter.sparesReady > 0, 5_000, 'a spare');
          const executor = await handle.current();
          const crashedAt = performance.now();
          await assert.rejects(executor.run(1, { __crash: true }, inMs(5_000)), ExecutorGoneError);
          // What a caller sees: from the crash to the first answer from the new executor.
          const next = await handle.current(5_000);
          assert.notEqual(next, executor);
          await next.run(input, params, inMs(5_000));
          serviceGapMs.push(performance.now() - crashedAt);
          const started = events.filter((e) => e.type === 'started').at(-1);
          assert.ok(started?.type === 'started' && started.downMs !== undefined);
          downMs.push(started.downMs);
        }
        const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
        console.log(
          `${isolation} ${model}, ${spares} spare: death -> new executor started ${fmt(downMs)} ms ` +
            `(50 ms backoff included); crash -> first answer ${fmt(serviceGapMs)} ms`,
        );
        assert.equal(handle.restarts, CRASHES);
        for (const ms of downMs) assert.ok(ms < budgetMs(spares), `restart took ${ms} ms`);
        const exits = events.filter((e) => e.type === 'exited');
        assert.ok(
          exits.every((e) => e.type === 'exited' && e.unexpected && e.reason === 'exit code 13'),
        );
      } finally {
        await supervisor.stop();
        await starter.close();
      }
    });
  }
});

// The two run side by side: each measures only its own executor against its own clock.
describe('supervised executors that hang', { concurrency: true }, () => {
  for (const isolation of ISOLATED) {
    test(`${isolation}: a hung executor is found by liveness and replaced`, async () => {
      const events: (SupervisorEvent & { at: number })[] = [];
      const supervisor = createSupervisor({
        liveness: { pingIntervalMs: 100, pingTimeoutMs: 300 },
        onEvent: (event) => events.push({ ...event, at: performance.now() }),
      });
      try {
        const handle = await supervisor.supervise('echo', () => start(isolation, 'echo'));
        const hung = await handle.current();
        const hungAt = performance.now();
        const run = hung.run(1, { __hang: true }, inMs(60_000)).catch((e: unknown) => e);
        await until(() => handle.restarts > 0 && handle.state === 'running', 5_000, 'replacement');
        const next = await handle.current();
        assert.notEqual(next, hung);
        assert.deepEqual(await next.run('alive', {}, inMs(5_000)), { echo: 'alive' });
        const detected = events.find((e) => e.type === 'hung');
        const started = events.filter((e) => e.type === 'started').at(-1);
        assert.ok(detected && started);
        console.log(
          `${isolation}: hang detected after ${(detected.at - hungAt).toFixed(0)} ms ` +
            `(ping every 100, timeout 300), replacement up after ${(started.at - hungAt).toFixed(0)} ms`,
        );
        assert.ok((await run) instanceof ExecutorGoneError);
        assert.deepEqual((await hung.exited).unexpected, false, 'terminated by the supervisor');
        const exited = events.find((e) => e.type === 'exited');
        assert.ok(exited?.type === 'exited' && exited.unexpected && /^hung/.test(exited.reason));
      } finally {
        await supervisor.stop();
      }
    });
  }
});
