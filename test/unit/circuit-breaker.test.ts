import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createCircuitBreaker } from '../../actors/index.js';

describe('circuit breaker', () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  test('opens when the failure ratio passes the threshold with enough calls', () => {
    const c = clock();
    const breaker = createCircuitBreaker({ minCalls: 10, failureRatio: 0.5, now: c.now });
    const changes: string[] = [];
    breaker.onChange((s) => changes.push(s));
    for (let i = 0; i < 5; i += 1) breaker.record(false); // 5 of 5 failed, but too few calls
    assert.equal(breaker.state, 'closed');
    for (let i = 0; i < 4; i += 1) breaker.record(true);
    assert.equal(breaker.state, 'closed', '5 failures of 9');
    breaker.record(false); // 6 of 10
    assert.equal(breaker.state, 'open');
    assert.deepEqual(changes, ['open']);
  });

  test('half-opens after the cooldown; probes close it, a failed probe reopens it', () => {
    const c = clock();
    const breaker = createCircuitBreaker({ minCalls: 2, cooldownMs: 5_000, probes: 2, now: c.now });
    breaker.record(false);
    breaker.record(false);
    assert.equal(breaker.state, 'open');
    c.advance(4_999);
    assert.equal(breaker.state, 'open');
    c.advance(1);
    assert.equal(breaker.state, 'half-open');
    breaker.record(false);
    assert.equal(breaker.state, 'open', 'a failed probe reopens');
    c.advance(5_000);
    assert.equal(breaker.state, 'half-open');
    breaker.record(true);
    assert.equal(breaker.state, 'half-open', 'one probe is not enough');
    breaker.record(true);
    assert.equal(breaker.state, 'closed');
    assert.equal(breaker.failureRatio(), 0, 'closing starts a fresh window');
  });

  test('old outcomes leave the rolling window', () => {
    const c = clock();
    const breaker = createCircuitBreaker({
      windowMs: 10_000,
      minCalls: 4,
      failureRatio: 0.5,
      now: c.now,
    });
    for (let i = 0; i < 3; i += 1) breaker.record(false);
    c.advance(11_000);
    breaker.record(true);
    breaker.record(true);
    breaker.record(true);
    breaker.record(false);
    assert.equal(breaker.state, 'closed', 'the three old failures have rolled out');
    assert.equal(breaker.failureRatio(), 0.25);
  });
});
