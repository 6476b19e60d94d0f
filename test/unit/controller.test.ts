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
  checkLeaseMs,
  conditionHolds,
  DEFAULT_RULES_FILE,
  leaderActsUntil,
  leaseExpired,
  parseRules,
  renewIntervalMs,
  standbyPollMs,
} from '../../nodes/controller/index.js';
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
