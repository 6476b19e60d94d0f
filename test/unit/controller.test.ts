/**
 * The controller's pure parts: rules files that are wrong fail with a ConfigError naming the rule
 * and the field; conditions compare as written; the lease arithmetic keeps a leader's acting
 * window strictly before any standby may take over.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError } from '../../nodes/common/index.js';
import {
  actorObserved,
  type ActorSeen,
  checkLeaseMs,
  conditionHolds,
  DEFAULT_RULES_FILE,
  leaderActsUntil,
  leaseExpired,
  noteBeat,
  parseRules,
  renewIntervalMs,
  standbyPollMs,
  STUCK_AFTER_INTERVALS,
} from '../../nodes/controller/index.js';
import { ActorState, BreakerState, type ActorHeartbeat } from '../../protocol/index.js';
import { PROJECT_ROOT } from '../../nodes/launcher/index.js';

const stuck = {
  name: 'actor-stuck',
  when: { metric: 'heartbeat.stuck' },
  forMs: 10_000,
  severity: 'critical',
  action: { type: 'restart-actor' },
};

/** Parses a file of `rules` and returns the ConfigError's message, failing if it parsed. */
function refusal(rules: unknown[]): string {
  try {
    parseRules(JSON.stringify({ rules }), 'rules.json');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    return err.message;
  }
  assert.fail('the rules were accepted');
}

describe('alert rules', () => {
  test('the shipped rules file parses', () => {
    const rules = parseRules(
      readFileSync(join(PROJECT_ROOT, DEFAULT_RULES_FILE), 'utf8'),
      DEFAULT_RULES_FILE,
    );
    assert.ok(rules.some((r) => r.name === 'actor-stuck' && r.action === 'restart-actor'));
  });

  test('defaults: boolean metrics compare with true, the cooldown is filled in', () => {
    const [rule] = parseRules(JSON.stringify({ rules: [stuck] }), 'rules.json');
    assert.equal(rule?.op, '==');
    assert.equal(rule?.value, true);
    assert.equal(rule?.scope, 'actor');
    assert.ok((rule?.cooldownMs ?? 0) > 0);
    assert.equal(rule?.keepFiringForMs, 0, 'resolves as soon as the condition clears');
    const [kept] = parseRules(
      JSON.stringify({ rules: [{ ...stuck, keepFiringForMs: 60_000 }] }),
      'rules.json',
    );
    assert.equal(kept?.keepFiringForMs, 60_000);
  });

  const cases: { name: string; rules: unknown[]; says: RegExp }[] = [
    {
      name: 'a missing field names the rule and the field',
      rules: [{ ...stuck, forMs: undefined }],
      says: /rules\[0\] \('actor-stuck'\): forMs/,
    },
    {
      name: 'an unknown metric',
      rules: [{ ...stuck, when: { metric: 'heartbeat.mood' } }],
      says: /'actor-stuck'.*when\.metric/,
    },
    {
      name: 'a numeric metric without a value',
      rules: [{ ...stuck, action: undefined, when: { metric: 'queue.depth', op: '>' } }],
      says: /'actor-stuck'.*when\.value: queue\.depth needs a value/,
    },
    {
      name: 'a value of the wrong type',
      rules: [
        { ...stuck, action: undefined, when: { metric: 'queue.depth', op: '>', value: 'x' } },
      ],
      says: /when\.value: queue\.depth is a number/,
    },
    {
      name: 'an ordering on a string metric',
      rules: [{ ...stuck, when: { metric: 'heartbeat.breaker', op: '>', value: 'open' } }],
      says: /when\.op: heartbeat\.breaker compares with == or !=/,
    },
    {
      name: 'an action on a subject it cannot act on',
      rules: [{ ...stuck, when: { metric: 'queue.depth', op: '>', value: 5 } }],
      says: /'actor-stuck'.*action\.type: restart-actor acts on actor, but queue\.depth describes a model/,
    },
    {
      name: 'an unknown field (a typo is not silently ignored)',
      rules: [{ ...stuck, for: 10_000 }],
      says: /'actor-stuck'.*"for"/,
    },
    {
      name: 'a severity that is not a subject token we know',
      rules: [{ ...stuck, severity: 'page' }],
      says: /'actor-stuck'.*severity/,
    },
    {
      name: 'a rule name that is not a token',
      rules: [{ ...stuck, name: 'Actor Stuck' }],
      says: /'Actor Stuck'.*name/,
    },
    {
      name: 'a negative keepFiringForMs',
      rules: [{ ...stuck, keepFiringForMs: -1 }],
      says: /'actor-stuck'.*keepFiringForMs/,
    },
    {
      name: 'two rules with one name',
      rules: [stuck, stuck],
      says: /rule 'actor-stuck' is defined twice/,
    },
  ];
  for (const c of cases) {
    test(`refused: ${c.name}`, () => {
      assert.match(refusal(c.rules), c.says);
    });
  }

  test('not JSON, or not a rules file', () => {
    assert.throws(() => parseRules('{', 'r.json'), /r\.json is not valid JSON/);
    assert.throws(() => parseRules('{"rule": []}', 'r.json'), ConfigError);
  });

  test('conditions compare as written; different types never match', () => {
    assert.equal(conditionHolds(5, '>', 4), true);
    assert.equal(conditionHolds(4, '>', 4), false);
    assert.equal(conditionHolds(4, '>=', 4), true);
    assert.equal(conditionHolds(3, '<', 4), true);
    assert.equal(conditionHolds(4, '<=', 3), false);
    assert.equal(conditionHolds('open', '==', 'open'), true);
    assert.equal(conditionHolds('open', '!=', 'open'), false);
    assert.equal(conditionHolds('5', '>', 4), false);
    assert.equal(conditionHolds(true, '==', true), true);
  });
});

describe('leader lease arithmetic', () => {
  test('renewal every third, standby polls every tenth', () => {
    assert.equal(renewIntervalMs(9_000), 3_000);
    assert.equal(standbyPollMs(10_000), 1_000);
    assert.equal(standbyPollMs(50), 10, 'never busier than every 10 ms');
  });

  test('expiry is a whole lease after the revision was first seen', () => {
    assert.equal(leaseExpired(1_000, 10_999, 10_000), false);
    assert.equal(leaseExpired(1_000, 11_000, 10_000), true);
  });

  test('a leader stops acting before any standby may take over (fencing)', () => {
    for (const leaseMs of [300, 1_000, 2_000, 10_000, 60_000]) {
      for (const sentAt of [0, 123, 50_000]) {
        // A standby sees the renewed revision no earlier than the leader sent it.
        for (const seenDelay of [0, 1, renewIntervalMs(leaseMs)]) {
          const seenAt = sentAt + seenDelay;
          const actsUntil = leaderActsUntil(sentAt, leaseMs);
          assert.equal(leaseExpired(seenAt, actsUntil, leaseMs), false);
          assert.ok(actsUntil < seenAt + leaseMs, `lease ${leaseMs}: margin kept`);
          assert.equal(actsUntil - sentAt, leaseMs - renewIntervalMs(leaseMs));
        }
      }
    }
  });

  test('lease lengths below the minimum are configuration errors naming the variable', () => {
    assert.equal(checkLeaseMs(10_000, 'X'), 10_000);
    assert.throws(
      () => checkLeaseMs(100, 'VIGIL_CONTROLLER_LEASE_MS'),
      /VIGIL_CONTROLLER_LEASE_MS=100/,
    );
    assert.throws(() => checkLeaseMs(1.5e3 + 0.5, 'L'), ConfigError);
  });
});

describe('stuck actors from heartbeats', () => {
  const INTERVAL_MS = 1_000;
  const beat = (at: number, inFlight: number, processed: number): ActorHeartbeat => ({
    v: 1,
    actorId: 'a1',
    host: 'h1',
    region: 'eu',
    model: 'chat',
    version: 'v1',
    state: ActorState.Running,
    breaker: BreakerState.Closed,
    isolation: 'worker-thread',
    pid: 1,
    inFlight,
    processed,
    errors: 0,
    restarts: 0,
    latencyMs: { p50: 1, p99: 2 },
    startedAt: 0,
    at,
    intervalMs: INTERVAL_MS,
  });

  /**
   * Feeds beats at their times and samples every 250 ms (as the controller's evaluation does,
   * at any phase); returns when, sampled, the actor was stuck.
   */
  function stuckAt(beats: ActorHeartbeat[], untilMs: number): number[] {
    let seen: ActorSeen | undefined;
    let next = 0;
    const stuck: number[] = [];
    for (let now = 0; now <= untilMs; now += 250) {
      while (next < beats.length && beats[next]!.at <= now) {
        seen = noteBeat(seen, beats[next]!, beats[next]!.at);
        next += 1;
      }
      if (seen && actorObserved(seen, now).value('heartbeat.stuck') === true) stuck.push(now);
    }
    return stuck;
  }

  test('a busy actor that finishes tasks is never stuck, however long it stays busy', () => {
    // Ten minutes always busy, a task finished before every beat; beats up to 90 % late.
    const beats: ActorHeartbeat[] = [];
    for (let i = 0, at = 0; i < 600; i += 1) {
      at += INTERVAL_MS + ((i * 7919) % 10) * 90;
      beats.push(beat(at, 1 + (i % 4), i + 1));
    }
    assert.deepEqual(stuckAt(beats, beats.at(-1)!.at + 500), []);
  });

  test('an idle actor is never stuck', () => {
    const beats = Array.from({ length: 120 }, (_, i) => beat((i + 1) * INTERVAL_MS, 0, 5));
    assert.deepEqual(stuckAt(beats, 121 * INTERVAL_MS), []);
  });

  test('an actor whose task hangs is stuck once no task finished for two intervals', () => {
    // Finishes tasks until 10 s, then holds one task without finishing anything until 70 s.
    const beats = Array.from({ length: 80 }, (_, i) => {
      const at = (i + 1) * INTERVAL_MS;
      if (at <= 10_000) return beat(at, 1, i + 1);
      return beat(at, at < 70_000 ? 1 : 0, 10);
    });
    const stuck = stuckAt(beats, 80 * INTERVAL_MS);
    const limit = 10_000 + STUCK_AFTER_INTERVALS * INTERVAL_MS;
    assert.equal(stuck[0], limit + 250, 'stuck from the first sample past two intervals');
    assert.equal(stuck.at(-1), 69_750, 'until the beat that shows it idle');
    assert.equal(stuck.length, (69_750 - limit) / 250, 'every sample in between');
  });

  test('work taken while idle counts its stall from when it came', () => {
    // Idle for a minute, then one task that never finishes.
    const beats = Array.from({ length: 70 }, (_, i) => {
      const at = (i + 1) * INTERVAL_MS;
      return beat(at, at >= 60_000 ? 1 : 0, 3);
    });
    const stuck = stuckAt(beats, 70 * INTERVAL_MS);
    assert.equal(stuck[0], 60_000 + STUCK_AFTER_INTERVALS * INTERVAL_MS + 250);
  });
});
