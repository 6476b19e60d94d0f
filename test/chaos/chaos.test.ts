/**
 * Chaos suite: a real edge under load while actors, executors, the gateway and nats-server are
 * killed, stopped or made to fail. Every task is followed by the checker (`checker.ts`), which
 * counts what was lost, duplicated or unexpected; each test prints those figures and asserts on
 * them.
 *
 * The short form runs in `npm test` (under two minutes on two cores). The long form runs each
 * scenario with more tasks, kills and time, still bounded:
 *
 *   VIGIL_CHAOS=long node --import tsx --test --test-reporter=spec test/chaos/chaos.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  assetNames,
  BreakerState,
  deadLetterSchema,
  decodeAs,
  ActorState,
} from '../../protocol/index.js';
import type { NodeProcess } from '../../nodes/launcher/index.js';
import { startTestEdge, type TestEdge } from '../harness/edge.js';
import {
  createChecker,
  percentile,
  runLoad,
  sleep,
  type Checker,
  type CheckerReport,
} from './checker.js';
import { isStale, watchHeartbeats, type HeartbeatWatch } from './heartbeats.js';

const LONG = process.env['VIGIL_CHAOS'] === 'long';

/** Sizes of each scenario: short for `npm test`, long behind `VIGIL_CHAOS=long`. */
const SIZE = LONG
  ? {
      executorKills: { seconds: 60, rate: 30, kills: 40, hosts: 3 },
      hostKills: { seconds: 60, rate: 30, kills: 12 },
      sigstop: { seconds: 20, rate: 25, stopAfterMs: 5_000 },
      gateway: { rounds: 6, perRound: 60 },
      poison: { good: 150, retryable: 30, terminal: 30, crash: 3 },
      breaker: { tasks: 120, openWindows: 4 },
      nats: { seconds: 40, rate: 30, restarts: 3, outageMs: [500, 3_000] },
    }
  : {
      executorKills: { seconds: 10, rate: 25, kills: 6, hosts: 2 },
      hostKills: { seconds: 10, rate: 25, kills: 3 },
      sigstop: { seconds: 7, rate: 20, stopAfterMs: 2_500 },
      gateway: { rounds: 2, perRound: 30 },
      poison: { good: 30, retryable: 6, terminal: 6, crash: 1 },
      breaker: { tasks: 30, openWindows: 1 },
      nats: { seconds: 10, rate: 25, restarts: 1, outageMs: [500, 500] },
    };

const HEARTBEAT_MS = 300;
/** Supervision for the executor kills: no escalation, restart backoff 50 ms doubling to 1 s. */
const RESTART = { maxRestarts: 1000, withinMs: 60_000, initialMs: 50, maxMs: 1_000 };
const ACK_WAIT_MS = 2_000;
const ECHO_FAULTS = JSON.stringify({ enabled: true });

/** An edge with fast heartbeats, a short ack wait and retries, echo faults on, echo only. */
function chaosEdge(actorEnv: Record<string, string> = {}): Promise<TestEdge> {
  return startTestEdge({
    assets: { heartbeatIntervalMs: HEARTBEAT_MS },
    actorEnv: {
      VIGIL_MODELS: 'echo',
      VIGIL_HEARTBEAT_MS: String(HEARTBEAT_MS),
      VIGIL_ACK_WAIT_MS: String(ACK_WAIT_MS),
      VIGIL_RETRY_SCHEDULE_MS: '50,100',
      VIGIL_ECHO_FAULTS: ECHO_FAULTS,
      ...actorEnv,
    },
  });
}

/** The property every scenario shares: every accepted task ended as expected, once. */
function assertClean(report: CheckerReport): void {
  const detail = report.examples.join('\n');
  assert.equal(report.lost, 0, `lost tasks:\n${detail}`);
  assert.equal(report.duplicated, 0, `duplicated tasks:\n${detail}`);
  assert.equal(report.unexpected, 0, `unexpected outcomes:\n${detail}`);
  assert.equal(report.ok, report.accepted);
  assert.ok(report.accepted > 0, 'some work was accepted');
}

/** A random delay for echo, so that kills land mid-task. */
const randomDelay = (min: number, max: number): { delay_ms: number } => ({
  delay_ms: min + Math.floor(Math.random() * (max - min)),
});

/**
 * A random pause that spreads the `left` remaining kills over the load's remaining time (ending
 * a second early, so the last kill still lands under load).
 */
const spacing = (end: number, left: number): number =>
  left <= 0 ? 0 : Math.max(0, ((end - 1_000 - Date.now()) / left) * (0.4 + Math.random() * 0.6));

const pick = <T>(items: readonly T[]): T | undefined =>
  items[Math.floor(Math.random() * items.length)];

/** Runs `body` with an edge, a checker and a heartbeat watch, and always stops all three. */
async function withEdge(
  name: string,
  edge: TestEdge,
  body: (checker: Checker, beats: HeartbeatWatch) => Promise<void>,
): Promise<void> {
  let checker: Checker | undefined;
  let beats: HeartbeatWatch | undefined;
  try {
    checker = await createChecker(edge, { name });
    beats = await watchHeartbeats(await edge.connect(), edge.region);
    await body(checker, beats);
  } finally {
    beats?.stop();
    await checker?.close();
    await edge.stop();
  }
}

/**
 * Runs `chaos` while `checker` submits load: the load goes on until every planned fault landed
 * (at most twice the planned time), and the chaos loop stops early if the load ends first.
 */
async function underLoad(
  checker: Parameters<typeof runLoad>[0],
  load: { rate: number; seconds: number; delayMs: [number, number] },
  chaos: (loadRunning: () => boolean) => Promise<void>,
): Promise<void> {
  let loadDone = false;
  let chaosDone = false;
  const faults = chaos(() => !loadDone).finally(() => (chaosDone = true));
  await runLoad(checker, {
    ratePerSecond: load.rate,
    durationMs: load.seconds * 1000,
    keepGoing: () => !chaosDone,
    maxDurationMs: load.seconds * 2000,
    maxTasks: load.rate * load.seconds * 2,
    submit: () => ({ params: randomDelay(load.delayMs[0], load.delayMs[1]) }),
  });
  loadDone = true;
  await faults;
}

describe(`chaos (${LONG ? 'long' : 'short'} form)`, () => {
  test('kill -9 model executors mid-task under load: 0 lost, 0 duplicated; restart time', async () => {
    const { seconds, rate, kills, hosts } = SIZE.executorKills;
    const edge = await chaosEdge({
      VIGIL_ISOLATION: 'child-process',
      VIGIL_CONCURRENCY: '4',
      // Each crash counts as an attempt of every task it interrupts; a task interrupted ten
      // times in a row would be dead-lettered by design, which is not what this test is about.
      VIGIL_MAX_ATTEMPTS: '10',
      // Many kills in a minute is the point here, not the escalation past the intensity; the
      // backoff (doubling from 50 ms while an executor has not stayed up 10 s) is capped at 1 s
      // so that the restart time measures a restart, not mostly the configured wait.
      VIGIL_RESTART: JSON.stringify(RESTART),
    });
    await withEdge('kill-executors', edge, async (checker, beats) => {
      for (let i = 1; i < hosts; i += 1) await edge.startActorHost();
      const hostPids = new Set(edge.actorHosts.map((h) => h.pid));
      const executors = () =>
        beats
          .latest()
          .filter(
            (s) =>
              s.beat.isolation === 'child-process' &&
              s.beat.state === ActorState.Running &&
              s.beat.pid > 0 &&
              !hostPids.has(s.beat.pid) &&
              !isStale(s.beat),
          );
      await beats.waitFor('every executor up', () => executors().length === hosts);

      const restartMs: number[] = [];
      await underLoad(checker, { rate, seconds, delayMs: [50, 400] }, async (loadRunning) => {
        const end = Date.now() + seconds * 1000;
        await sleep(1_000);
        for (let k = 0; k < kills && loadRunning(); k += 1) {
          const target = pick(executors());
          if (target) {
            const { actorId, pid } = target.beat;
            const killedAt = Date.now();
            process.kill(pid, 'SIGKILL');
            const back = await beats.waitFor(
              `a new executor of ${actorId}`,
              (s) =>
                s.beat.actorId === actorId &&
                s.beat.pid > 0 &&
                s.beat.pid !== pid &&
                s.beat.state === ActorState.Running,
            );
            restartMs.push(back.seenAt - killedAt);
          }
          await sleep(spacing(end, kills - k - 1));
        }
      });
      await checker.settle(60_000);
      const records = await checker.records();
      const retried = [...records.values()].filter((r) => r.attempt > 1).length;
      const restarts = Math.max(0, ...beats.latest().map((s) => s.beat.restarts));
      const report = checker.report({
        kills: restartMs.length,
        backoff: `${RESTART.initialMs}..${RESTART.maxMs} ms`,
        'restart p50': `${percentile(restartMs, 0.5)} ms`,
        'restart p99': `${percentile(restartMs, 0.99)} ms`,
        'tasks run again': retried,
        'most restarts of one executor': restarts,
      });
      assertClean(report);
      assert.equal(restartMs.length, kills, 'every planned kill happened');
      assert.ok(retried > 0, 'kills landed mid-task (some tasks ran more than once)');
    });
  });

  test('kill -9 whole actor hosts under load: in-flight work is redelivered, 0 lost, 0 duplicated', async () => {
    const { seconds, rate, kills } = SIZE.hostKills;
    const edge = await chaosEdge({ VIGIL_CONCURRENCY: '4', VIGIL_MAX_ATTEMPTS: '10' });
    await withEdge('kill-hosts', edge, async (checker) => {
      await edge.startActorHost();
      const live = new Set<NodeProcess>(edge.actorHosts);
      const replaceMs: number[] = [];
      await underLoad(checker, { rate, seconds, delayMs: [50, 400] }, async (loadRunning) => {
        const end = Date.now() + seconds * 1000;
        await sleep(1_500);
        for (let k = 0; k < kills && loadRunning(); k += 1) {
          const victim = pick([...live])!;
          const killedAt = Date.now();
          victim.signal('SIGKILL');
          live.delete(victim);
          await victim.exited;
          live.add(await edge.startActorHost());
          replaceMs.push(Date.now() - killedAt);
          await sleep(spacing(end, kills - k - 1));
        }
      });
      await checker.settle(60_000);
      const records = await checker.records();
      const redelivered = [...records.values()].filter((r) => r.attempt > 1).length;
      const report = checker.report({
        'host kills': replaceMs.length,
        'replacement host ready p50': `${percentile(replaceMs, 0.5)} ms`,
        'tasks redelivered': redelivered,
      });
      assertClean(report);
      assert.equal(replaceMs.length, kills);
    });
  });

  test('SIGSTOP an actor host: detected from heartbeats, its tasks finish on the other host', async () => {
    const { seconds, rate, stopAfterMs } = SIZE.sigstop;
    const edge = await chaosEdge({ VIGIL_CONCURRENCY: '4' });
    await withEdge('sigstop', edge, async (checker, beats) => {
      const stopped = edge.actorHosts[0]!;
      const other = await edge.startActorHost();
      const stoppedHost = String(stopped.ready['host']);
      const beatOf = (host: string) => beats.latest().find((s) => s.beat.host === host);
      await beats.waitFor(
        'both hosts beating',
        () => beatOf(String(other.ready['host'])) !== undefined,
      );

      let stoppedAt = 0;
      let detectMs = -1;
      const chaos = (async () => {
        await sleep(stopAfterMs);
        stopped.signal('SIGSTOP');
        stoppedAt = Date.now();
        // Stale by the gateway's rule: no beat for three intervals.
        for (let i = 0; i < 200; i += 1) {
          const seen = beatOf(stoppedHost);
          if (!seen || isStale(seen.beat)) {
            detectMs = Date.now() - stoppedAt;
            return;
          }
          await sleep(25);
        }
      })();
      await runLoad(checker, {
        ratePerSecond: rate,
        durationMs: seconds * 1000,
        maxTasks: rate * seconds,
        submit: () => ({ params: randomDelay(100, 400) }),
      });
      await chaos;
      // Everything must finish while the stopped host is still stopped.
      await checker.settle(30_000);
      const records = await checker.records();
      const stoppedActor = `${stoppedHost}/echo`;
      const all = [...records.values()];
      const byStoppedAfterStop = all.filter(
        (r) => r.actor === stoppedActor && (r.finishedAt ?? 0) > stoppedAt,
      ).length;
      const redelivered = all.filter((r) => r.attempt > 1);
      const report = checker.report({
        'stale after': `${detectMs} ms (interval ${HEARTBEAT_MS} ms)`,
        'redelivered after the ack wait': redelivered.length,
        'finished by the stopped host after SIGSTOP': byStoppedAfterStop,
      });
      assert.ok(detectMs >= 0, 'the stopped host went stale within 5 s');
      assert.ok(detectMs < HEARTBEAT_MS * 3 + 1_000, `detected in ${detectMs} ms`);
      assertClean(report);
      assert.equal(byStoppedAfterStop, 0);
      assert.ok(redelivered.length > 0, 'the stopped host was holding tasks');
      assert.ok(
        redelivered.every((r) => r.actor !== stoppedActor),
        'redelivered tasks finished on the other host',
      );

      // SIGCONT: the stopped host wakes up with attempts whose deliveries were given to the
      // other host long ago. They must neither store nor report a second completion.
      stopped.signal('SIGCONT');
      await beats.waitFor(
        'the resumed host to beat again',
        (s) => s.beat.host === stoppedHost && s.seenAt > stoppedAt && !isStale(s.beat),
      );
      await sleep(ACK_WAIT_MS);
      await checker.settle(10_000);
      const after = checker.report({ phase: 'after SIGCONT' });
      assertClean(after);
    });
  });

  test('a delivery that waits in the prefetch buffer past the ack wait still runs once', async () => {
    // What the executor kills above expose, with no chaos at all: one healthy host with two
    // slots. A (100 ms) frees a slot early, so the next pull brings C and D; C takes the slot, D
    // waits in the mailbox's buffer behind B and C (3 s each), past the 2 s ack wait.
    const edge = await chaosEdge({ VIGIL_CONCURRENCY: '2' });
    await withEdge('prefetch-buffer', edge, async (checker) => {
      for (const delay of [100, 3_000, 3_000, 500]) {
        await checker.submit({ params: { delay_ms: delay } });
        await sleep(20);
      }
      await checker.settle(30_000);
      const runs = checker.tasks.map((t) => checker.events.get(t.expectedId)?.succeeded ?? 0);
      const report = checker.report({ 'completions per task': runs.join(',') });
      assertClean(report);
    });
  });

  test('kill -9 the gateway between publish and reply; retries with the same Idempotency-Key make no duplicates', async () => {
    const { rounds, perRound } = SIZE.gateway;
    const edge = await chaosEdge({ VIGIL_CONCURRENCY: '8' });
    await withEdge('kill-gateway', edge, async (checker) => {
      const downMs: number[] = [];
      /** The kill time of each task's round, by task index. */
      const killTimes: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        const first = checker.tasks.length;
        const submissions = Array.from({ length: perRound }, () =>
          checker.submit({
            params: randomDelay(300, 900),
            waitSeconds: 10,
            retries: 40,
            retryDelayMs: 250,
          }),
        );
        // The gateway holds every request waiting for its reply when it dies.
        await sleep(250);
        const gateway = edge.gateway;
        const killedAt = Date.now();
        gateway.signal('SIGKILL');
        await gateway.exited;
        await edge.restartGateway();
        downMs.push(Date.now() - killedAt);
        await Promise.all(submissions);
        for (let i = first; i < checker.tasks.length; i += 1) killTimes[i] = killedAt;
      }
      await checker.settle(30_000);
      const records = await checker.records();
      const cutOff = checker.tasks.filter((t) => t.answers.includes('no-answer'));
      // Published by the gateway that died (the stored envelope predates the kill), answered to
      // the client only through a retry at the new gateway: the window this test is about.
      const betweenPublishAndReply = cutOff.filter(
        (t) => (records.get(t.expectedId)?.createdAt ?? Infinity) < killTimes[t.n]!,
      ).length;
      const sends = checker.tasks.reduce((sum, t) => sum + t.answers.length, 0);
      const report = checker.report({
        'gateway kills': rounds,
        'requests cut off': cutOff.length,
        'of which published before the kill': betweenPublishAndReply,
        'HTTP sends': sends,
        'gateway down p50': `${percentile(downMs, 0.5)} ms`,
      });
      assertClean(report);
      assert.equal(report.refused, 0, 'every request got through on a retry');
      assert.ok(betweenPublishAndReply > 0, 'the kill fell between publish and reply');
      for (const task of checker.tasks) {
        assert.deepEqual([...task.ids], [task.expectedId], `one task id for ${task.cid}`);
        assert.equal(task.results.size, 1, `one result for ${task.cid}`);
        assert.equal(checker.events.get(task.expectedId)?.succeeded, 1, `ran once: ${task.cid}`);
      }
    });
  });

  test('poison tasks are dead-lettered after exactly the configured attempts; every task ends', async () => {
    const { good, retryable, terminal, crash } = SIZE.poison;
    const maxAttempts = 3;
    const edge = await chaosEdge({
      VIGIL_MAX_ATTEMPTS: String(maxAttempts),
      VIGIL_CONCURRENCY: '4',
      VIGIL_ISOLATION: 'child-process',
      VIGIL_EXECUTOR_TEST_HOOKS: '1',
      VIGIL_RESTART: JSON.stringify({ maxRestarts: 1000, withinMs: 60_000 }),
      // The breaker cannot tell a poison task from a sick model: with its defaults, a burst of
      // retryable poison opens it, and its half-open probes mostly pick the poison being retried,
      // so good work waits through 10 s cooldowns (seen: 174 of 213 tasks unfinished after 90 s).
      // The breaker has its own scenario below; here it stays out of the way.
      VIGIL_BREAKER: JSON.stringify({ minCalls: 1_000_000 }),
    });
    await withEdge('poison', edge, async (checker, beats) => {
      const kinds = [
        ...Array.from({ length: good }, () => 'good' as const),
        ...Array.from({ length: retryable }, () => 'retryable' as const),
        ...Array.from({ length: terminal }, () => 'terminal' as const),
      ].sort(() => Math.random() - 0.5);
      await Promise.all(
        kinds.map((kind) =>
          kind === 'good'
            ? checker.submit({ params: randomDelay(10, 50) })
            : checker.submit({
                params: { fail: kind },
                expect:
                  kind === 'retryable'
                    ? { type: 'dead', attempts: maxAttempts }
                    : { type: 'failed', attempts: 1 },
              }),
        ),
      );
      await checker.settle(30_000);
      // A task that crashes its executor takes down whatever else runs there, so these go alone.
      for (let i = 0; i < crash; i += 1) {
        await checker.submit({
          params: { __crash: true },
          expect: { type: 'dead', attempts: maxAttempts },
        });
      }
      await checker.settle(60_000);

      // Exactly one dead letter per failed or dead task, none for the others.
      const nc = await edge.connect();
      const jsm = await jetstreamManager(nc);
      const stream = assetNames.deadLetterStream(edge.region);
      const letters = new Map<string, number>();
      const info = await jsm.streams.info(stream);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq += 1) {
        const msg = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (!msg) continue;
        const letter = decodeAs(deadLetterSchema, msg.data, 'dead letter');
        letters.set(letter.task.id, (letters.get(letter.task.id) ?? 0) + 1);
      }
      let letterErrors = 0;
      for (const task of checker.tasks) {
        const want = task.expect.type === 'succeeded' ? 0 : 1;
        if ((letters.get(task.expectedId) ?? 0) !== want) letterErrors += 1;
      }
      const terminalTasks = checker.tasks.filter((t) =>
        ['succeeded', 'failed', 'dead'].includes(String(t.final?.['state'])),
      ).length;
      const report = checker.report({
        'max attempts': maxAttempts,
        'crash poisons': crash,
        'terminal tasks': `${terminalTasks}/${checker.tasks.length}`,
        'dead letters': [...letters.values()].reduce((a, b) => a + b, 0),
        'tasks with a wrong letter count': letterErrors,
        'breaker opened': beats.history.filter(
          (b) => b.beat.breaker === BreakerState.Open && b.previous?.breaker !== BreakerState.Open,
        ).length,
      });
      assertClean(report);
      assert.equal(terminalTasks, checker.tasks.length, 'every task is terminal');
      assert.equal(letterErrors, 0, 'one dead letter per failed or dead task, none otherwise');
    });
  });

  test('a model failing half its calls: the breaker opens, burns no attempts while open, work resumes when healed', async () => {
    const { tasks, openWindows } = SIZE.breaker;
    const cooldownMs = 1_500;
    const maxAttempts = 30;
    const sickEnv = {
      VIGIL_CONCURRENCY: '2',
      VIGIL_MAX_ATTEMPTS: String(maxAttempts),
      VIGIL_BREAKER: JSON.stringify({ minCalls: 6, failureRatio: 0.4, cooldownMs, probes: 2 }),
    };
    const edge = await chaosEdge({
      ...sickEnv,
      VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true, failureRate: 0.5 }),
    });
    await withEdge('breaker', edge, async (checker, beats) => {
      const nc = await edge.connect();
      const jsm = await jetstreamManager(nc);
      const stream = assetNames.requestStream(edge.region);
      const consumer = assetNames.modelConsumer('echo');
      const delivered = async () =>
        (await jsm.consumers.info(stream, consumer)).delivered.consumer_seq;
      const sick = edge.actorHosts[0]!;
      const sickHost = String(sick.ready['host']);

      // Each open window: deliveries read just after it opened and just before the cooldown ends.
      let burntWhileOpen = 0;
      let seenOpen = 0;
      let lastOpenAt = 0;
      const windows: string[] = [];
      // The beat written as it opened, not a periodic one that restates an open breaker. Each
      // wait starts before the open it waits for: the first before any task is submitted, as the
      // breaker may open while the rest are still being sent (and a missed open may not recur).
      const nextOpen = () =>
        beats.waitFor(
          'the breaker to open',
          (s) =>
            s.beat.host === sickHost &&
            s.beat.breaker === BreakerState.Open &&
            s.previous?.breaker !== BreakerState.Open &&
            s.beat.at > lastOpenAt,
          20_000,
        );
      let opening = nextOpen();
      const submitting = Promise.all(
        Array.from({ length: tasks }, () => checker.submit({ params: randomDelay(20, 60) })),
      );
      submitting.catch(() => undefined); // awaited below; a failure is reported there
      for (let w = 0; w < openWindows; w += 1) {
        const open = await opening;
        seenOpen += 1;
        lastOpenAt = open.beat.at;
        // Buffered deliveries are handed back as it opens; judge from 200 ms on.
        await sleep(Math.max(0, open.beat.at + 200 - Date.now()));
        const first = await delivered();
        await sleep(Math.max(0, open.beat.at + cooldownMs - 200 - Date.now()));
        const last = await delivered();
        burntWhileOpen += last - first;
        windows.push(`${first}->${last}`);
        if (w + 1 < openWindows) opening = nextOpen();
      }
      await submitting;

      // Heal: the host restarts with the model's faults off.
      const healedAt = Date.now();
      await sick.stop();
      const healthy = await edge.startActorHost({ VIGIL_ECHO_FAULTS: ECHO_FAULTS });
      const left = await checker.settle(60_000);
      const records = await checker.records();
      const finishedAfterHeal = [...records.values()].filter((r) => (r.finishedAt ?? 0) > healedAt);
      const healMs = Math.max(0, ...finishedAfterHeal.map((r) => r.finishedAt! - healedAt));
      const healthyBeat = beats.latest().find((s) => s.beat.host === String(healthy.ready['host']));
      const attempts = checker.tasks.map((t) => Number(t.final?.['attempts'] ?? 0));
      const report = checker.report({
        'open windows watched': seenOpen,
        'deliveries while open': `${burntWhileOpen} (${windows.join(', ')})`,
        'most attempts of a task': Math.max(...attempts),
        'finished after heal': `${finishedAfterHeal.length}, the last ${healMs} ms after it`,
        'breaker after heal': healthyBeat?.beat.breaker ?? 'unknown',
      });
      assert.equal(seenOpen, openWindows, 'the breaker opened');
      assert.equal(burntWhileOpen, 0, 'no deliveries, so no attempts burnt, while open');
      assert.equal(left, 0);
      assertClean(report);
      assert.ok(Math.max(...attempts) < maxAttempts, 'no task came near its retry budget');
      assert.ok(finishedAfterHeal.length > 0, 'work was waiting, and resumed after the heal');
      assert.equal(healthyBeat?.beat.breaker, BreakerState.Closed);
    });
  });

  test('restart nats-server under load: 0 accepted tasks lost', async () => {
    const { seconds, rate, restarts, outageMs: outage } = SIZE.nats;
    const edge = await chaosEdge({ VIGIL_CONCURRENCY: '8' });
    await withEdge('nats-restart', edge, async (checker) => {
      const outageMs: number[] = [];
      await underLoad(checker, { rate, seconds, delayMs: [20, 200] }, async (loadRunning) => {
        const gapMs = (seconds * 1000) / (restarts + 1);
        for (let r = 0; r < restarts && loadRunning(); r += 1) {
          await sleep(gapMs * 0.8);
          const killedAt = Date.now();
          await edge.nats.kill('SIGKILL');
          await sleep(outage[0]! + Math.random() * (outage[1]! - outage[0]!));
          await edge.nats.restart();
          outageMs.push(Date.now() - killedAt);
        }
      });
      await checker.settle(90_000);
      const report = checker.report({
        'nats-server restarts': outageMs.length,
        'outage p50': `${percentile(outageMs, 0.5)} ms`,
      });
      assertClean(report);
      assert.equal(outageMs.length, restarts);
      assert.ok(report.refused > 0, 'submissions during the outage were refused (not accepted)');
    });
  });
});
