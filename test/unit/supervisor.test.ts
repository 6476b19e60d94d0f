/**
 * Unit tests for the one-for-one supervisor. The children are fakes that implement the real
 * `SupervisedChild` contract (they crash, hang and terminate on command), so each test can state
 * a timing property of the supervisor alone: backoff, reset after stability, intensity and
 * escalation, liveness, restarts on purpose, and stop.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChildUnavailableError, createSupervisor } from '../../actors/index.js';
import type { SupervisedChild, SupervisorEvent, SupervisorOptions } from '../../actors/index.js';

/** A child that lives until told to crash or hang, or until terminated. */
class FakeChild implements SupervisedChild {
  static started = 0;
  readonly id = ++FakeChild.started;
  readonly exited: Promise<{ reason: string; unexpected: boolean }>;
  /** While true, pings go unanswered (a blocked event loop). */
  hung = false;
  terminated = false;
  #settle!: (exit: { reason: string; unexpected: boolean }) => void;

  constructor() {
    this.exited = new Promise((resolve) => (this.#settle = resolve));
  }

  crash(reason = 'crashed'): void {
    this.#settle({ reason, unexpected: true });
  }

  ping(timeoutMs: number): Promise<boolean> {
    if (!this.hung) return Promise.resolve(true);
    return new Promise((resolve) => setTimeout(() => resolve(false), timeoutMs));
  }

  terminate(): Promise<void> {
    this.terminated = true;
    this.#settle({ reason: 'terminated', unexpected: false });
    return Promise.resolve();
  }
}

/** A `start` function: a new fake child each call. */
const fresh = (): Promise<FakeChild> => Promise.resolve(new FakeChild());

/** A supervisor whose events are recorded, with fast defaults for tests. */
function harness(options: SupervisorOptions = {}) {
  const events: (SupervisorEvent & { at: number })[] = [];
  const supervisor = createSupervisor({
    backoff: { initialMs: 20, maxMs: 1_000, factor: 2 },
    intensity: { maxRestarts: 100, withinMs: 60_000 },
    liveness: { pingIntervalMs: 1_000, pingTimeoutMs: 1_000 },
    ...options,
    onEvent: (event) => events.push({ ...event, at: performance.now() }),
  });
  const of = <T extends SupervisorEvent['type']>(type: T) =>
    events.filter(
      (e): e is Extract<SupervisorEvent, { type: T }> & { at: number } => e.type === type,
    );
  return { supervisor, events, of };
}

/** Resolves once `predicate` holds, polling; fails the test after `timeoutMs`. */
async function until(
  predicate: () => boolean,
  timeoutMs = 2_000,
  what = 'condition',
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

describe('supervisor', () => {
  test('restarts a crashed child after an exponential backoff', async () => {
    const { supervisor, of } = harness({ backoff: { initialMs: 20, maxMs: 100, factor: 2 } });
    const handle = await supervisor.supervise('m', fresh);
    const seen = [handle.child];
    for (let i = 1; i <= 5; i++) {
      handle.child?.crash();
      await until(() => of('started').length === i + 1, 2_000, `restart ${i}`);
      seen.push(handle.child);
    }
    const delays = of('restarting').map((e) => e.delayMs);
    console.log(`backoff delays: ${delays.join(', ')} ms`);
    assert.deepEqual(delays, [20, 40, 80, 100, 100], 'doubles from initialMs, capped at maxMs');
    // The supervisor really waited: each start came at least its delay after the one before.
    const exits = of('exited');
    const starts = of('started');
    starts.slice(1).forEach((start, i) => {
      const spacing = start.at - starts[i]!.at;
      assert.ok(spacing >= (delays[i] ?? 0) - 2, `restart ${i + 1} came ${spacing} ms after`);
    });
    assert.equal(new Set(seen.map((c) => c?.id)).size, 6, 'each restart is a new child');
    assert.equal(handle.restarts, 5);
    assert.equal(handle.state, 'running');
    assert.deepEqual(
      exits.map((e) => e.unexpected),
      [true, true, true, true, true],
    );
    await supervisor.stop();
  });

  test('a child that stayed up stableAfterMs starts the backoff over', async () => {
    const { supervisor, of } = harness({ stableAfterMs: 150 });
    const handle = await supervisor.supervise('m', fresh);
    handle.child?.crash();
    await until(() => of('started').length === 2);
    handle.child?.crash();
    await until(() => of('started').length === 3);
    await sleep(200);
    handle.child?.crash();
    await until(() => of('started').length === 4);
    assert.deepEqual(
      of('restarting').map((e) => e.delayMs),
      [20, 40, 20],
    );
    await supervisor.stop();
  });

  test('the backoff spaces starts: a child up longer than its delay is started again at once', async () => {
    const { supervisor, of } = harness({ backoff: { initialMs: 150, maxMs: 150, factor: 1 } });
    const handle = await supervisor.supervise('m', fresh);
    await sleep(200); // up longer than the 150 ms delay
    handle.child?.crash();
    await until(() => of('started').length === 2);
    await sleep(50); // up a third of it
    handle.child?.crash();
    await until(() => of('started').length === 3);
    const [first, second] = of('restarting');
    const [, afterFirst, afterSecond] = of('started');
    const [firstExit, secondExit] = of('exited');
    console.log(
      `waits: ${first?.waitMs} ms after ${200} ms up, ${second?.waitMs} ms after ${50} ms up; ` +
        `restarted ${Math.round(afterFirst!.at - firstExit!.at)} and ` +
        `${Math.round(afterSecond!.at - secondExit!.at)} ms after the deaths`,
    );
    assert.equal(first?.delayMs, 150);
    assert.equal(first?.waitMs, 0, 'a child that outlived the delay waits for nothing');
    assert.ok(afterFirst!.at - firstExit!.at < 30, 'and is started at once');
    assert.ok(second!.waitMs >= 90 && second!.waitMs <= 105, `waits the rest: ${second?.waitMs}`);
    assert.ok(afterSecond!.at - afterFirst!.at >= 148, 'starts stay a delay apart');
    await supervisor.stop();
  });

  test('escalates past the restart intensity and stops every child', async () => {
    const { supervisor, of } = harness({ intensity: { maxRestarts: 3, withinMs: 5_000 } });
    const other = await supervisor.supervise('other', fresh);
    const otherChild = other.child;
    const handle = await supervisor.supervise('flaky', fresh);
    for (let i = 1; i <= 3; i++) {
      handle.child?.crash();
      await until(() => of('started').length === 2 + i);
    }
    assert.equal(of('escalated').length, 0, 'three restarts are within the intensity');
    handle.child?.crash();
    const escalation = await supervisor.escalated;
    console.log(`escalated: ${JSON.stringify(escalation)}`);
    assert.deepEqual(escalation, { name: 'flaky', restarts: 4, withinMs: 5_000 });
    assert.equal(handle.state, 'escalated');
    assert.equal(handle.child, undefined);
    await until(() => other.state === 'stopped', 1_000, 'the other child to stop');
    assert.equal(otherChild?.terminated, true, 'siblings are taken down too');
    await assert.rejects(handle.current(100), ChildUnavailableError);
    await assert.rejects(handle.restart('again'), ChildUnavailableError);
    await sleep(100);
    assert.equal(of('started').length, 5, 'nothing restarts after escalation');
    await supervisor.stop();
  });

  test('restarts spread wider than the intensity window do not escalate', async () => {
    const { supervisor, of } = harness({ intensity: { maxRestarts: 2, withinMs: 150 } });
    const handle = await supervisor.supervise('m', fresh);
    for (let i = 1; i <= 5; i++) {
      handle.child?.crash();
      await until(() => of('started').length === i + 1);
      await sleep(100);
    }
    assert.equal(of('escalated').length, 0);
    assert.ok(of('restarting').every((e) => e.restartsInWindow <= 2));
    await supervisor.stop();
  });

  test('a start that throws during a restart counts as a failed restart', async () => {
    const { supervisor, of } = harness({ intensity: { maxRestarts: 10, withinMs: 60_000 } });
    let failures = 2;
    const handle = await supervisor.supervise('m', async () => {
      await sleep(1); // a start takes time
      if (of('started').length > 0 && failures > 0) {
        failures -= 1;
        throw new Error('no memory for you');
      }
      return new FakeChild();
    });
    handle.child?.crash();
    await until(() => of('started').length === 2);
    assert.equal(of('start-failed').length, 2);
    assert.equal(of('start-failed')[0]?.error, 'no memory for you');
    assert.deepEqual(
      of('restarting').map((e) => e.delayMs),
      [20, 40, 80],
      'each failed start backs off further',
    );
    assert.equal(handle.restarts, 3);
    assert.equal(of('started')[1]?.attempt, 3);
    await supervisor.stop();
  });

  test('failing starts escalate once past the intensity', async () => {
    const { supervisor, of } = harness({ intensity: { maxRestarts: 2, withinMs: 60_000 } });
    let first = true;
    const handle = await supervisor.supervise('m', async () => {
      await sleep(1); // a start takes time
      if (!first) throw new Error('broken');
      first = false;
      return new FakeChild();
    });
    handle.child?.crash();
    const escalation = await supervisor.escalated;
    assert.equal(escalation.restarts, 3);
    assert.equal(of('start-failed').length, 2);
    assert.equal(handle.state, 'escalated');
  });

  test('a first start that fails rejects and supervises nothing', async () => {
    const { supervisor } = harness();
    await assert.rejects(
      supervisor.supervise('m', () => Promise.reject(new Error('bad config'))),
      /bad config/,
    );
    // The name is free again.
    const handle = await supervisor.supervise('m', fresh);
    assert.equal(handle.state, 'running');
    await assert.rejects(supervisor.supervise('m', fresh), /already/);
    await supervisor.stop();
  });

  test('a hung child is found by liveness, terminated and replaced', async () => {
    const { supervisor, of } = harness({ liveness: { pingIntervalMs: 20, pingTimeoutMs: 50 } });
    const handle = await supervisor.supervise('m', fresh);
    const hung = handle.child;
    assert.ok(hung);
    await sleep(100);
    assert.equal(of('hung').length, 0, 'a child that answers is left alone');
    const since = performance.now();
    hung.hung = true;
    await until(() => of('started').length === 2, 2_000, 'replacement');
    const detectMs = (of('hung')[0]?.at ?? 0) - since;
    console.log(`hung child detected after ${detectMs.toFixed(0)} ms (interval 20, timeout 50)`);
    assert.ok(detectMs < 200, `detected within interval + timeout (${detectMs} ms)`);
    assert.equal(hung.terminated, true);
    const exit = of('exited')[0];
    assert.equal(exit?.unexpected, true);
    assert.match(exit?.reason ?? '', /^hung/);
    assert.notEqual(handle.child, hung);
    await supervisor.stop();
  });

  test('current() waits for a restarting child and times out when it does not come', async () => {
    const { supervisor } = harness({ backoff: { initialMs: 100, maxMs: 100, factor: 1 } });
    const handle = await supervisor.supervise('m', fresh);
    const first = handle.child;
    first?.crash();
    await until(() => handle.state === 'restarting');
    assert.equal(handle.child, undefined);
    await assert.rejects(handle.current(10), ChildUnavailableError);
    const next = await handle.current(1_000);
    assert.notEqual(next, first);
    assert.equal(handle.child, next);
    await supervisor.stop();
  });

  test('restart() replaces the child on purpose and counts as a restart', async () => {
    const { supervisor, of } = harness();
    const handle = await supervisor.supervise('m', fresh);
    const first = handle.child;
    const pending = handle.current();
    await handle.restart('model overran its deadline');
    assert.equal(await pending, first, 'callers before the restart got the running child');
    assert.equal(first?.terminated, true);
    assert.notEqual(handle.child, first);
    assert.equal(handle.restarts, 1);
    assert.deepEqual(
      of('exited').map(({ reason, unexpected }) => ({ reason, unexpected })),
      [{ reason: 'model overran its deadline', unexpected: false }],
    );
    await supervisor.stop();
  });

  test('stop() terminates every child, is idempotent, and nothing restarts after', async () => {
    const { supervisor, of } = harness();
    const a = await supervisor.supervise('a', fresh);
    const b = await supervisor.supervise('b', fresh);
    const children = [a.child, b.child];
    b.child?.crash();
    // b is in its backoff when the supervisor stops: the restart must not happen.
    await Promise.all([supervisor.stop(), supervisor.stop()]);
    await sleep(60);
    assert.ok(children[0]?.terminated);
    assert.equal(of('started').length, 2);
    assert.equal(a.state, 'stopped');
    assert.equal(b.state, 'stopped');
    await assert.rejects(a.current(), ChildUnavailableError);
    await assert.rejects(supervisor.supervise('c', fresh), ChildUnavailableError);
  });
});
