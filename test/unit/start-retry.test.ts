/**
 * Start-up retries: a node retries a start that failed for a passing reason (a timed-out request,
 * no responder, JetStream 503, also when wrapped as a cause), and fails at once on anything else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  silentLogger,
  ConfigError,
  isTransientStartError,
  startWithRetry,
} from '../../nodes/common/index.js';

const named = (name: string, cause?: unknown): Error =>
  Object.assign(new Error(name, cause === undefined ? {} : { cause }), { name });

test('passing start-up errors are told from lasting ones', () => {
  assert.equal(isTransientStartError(named('TimeoutError')), true);
  assert.equal(isTransientStartError(named('NoRespondersError')), true);
  assert.equal(isTransientStartError(Object.assign(new Error('unavailable'), { code: 503 })), true);
  assert.equal(
    isTransientStartError(new Error('open failed', { cause: named('TimeoutError') })),
    true,
  );
  assert.equal(isTransientStartError(new ConfigError('VIGIL_REGION is bad')), false);
  assert.equal(isTransientStartError(named('PermissionViolationError')), false);
  assert.equal(isTransientStartError('timeout'), false);
});

test('a start that times out is tried again; a configuration error is not', async () => {
  let calls = 0;
  const started = await startWithRetry('node', silentLogger, () => {
    calls++;
    return calls < 3 ? Promise.reject(named('TimeoutError')) : Promise.resolve('up');
  });
  assert.equal(started, 'up');
  assert.equal(calls, 3);

  let configCalls = 0;
  await assert.rejects(
    startWithRetry('node', silentLogger, () => {
      configCalls++;
      return Promise.reject(new ConfigError('bad'));
    }),
    ConfigError,
  );
  assert.equal(configCalls, 1);
});
