/**
 * The arithmetic of tenant limits: token buckets, the RateLimit header values, the limits
 * middleware in-process through `app.request()` with a moved clock, lease sizes, quota periods
 * and the limits configuration.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { ConfigError, silentLogger } from '../../nodes/common/index.js';
import {
  createTenantLimiter,
  createTokenBucket,
  gatewayOptionsFromEnv,
  hasQuotas,
  LEASE_SHARE_DIVISOR,
  leaseSize,
  limitsOf,
  onGatewayError,
  parseCounter,
  parseTenantLimits,
  parseTenantLimitsMap,
  quotaKey,
  quotaWindow,
  rateItem,
  rateLimitHeaderValues,
  tenantLimitsFromEnv,
  type GatewayEnv,
  type TenantLimitsConfig,
} from '../../nodes/gateway/index.js';

const clock = () => {
  let t = Date.UTC(2026, 6, 14, 12, 0, 0);
  return { now: () => t, advance: (ms: number) => (t += ms) };
};

describe('token bucket', () => {
  test('starts full, serves its burst back to back, then refuses with the wait for a token', () => {
    const c = clock();
    const bucket = createTokenBucket(10, 3, c.now());
    assert.deepEqual(
      [bucket.take(c.now()), bucket.take(c.now()), bucket.take(c.now())],
      [0, 0, 0],
      'a burst of 3',
    );
    assert.equal(bucket.take(c.now()), 100, '10/s: the next token is 100 ms away');
    c.advance(40);
    assert.equal(bucket.take(c.now()), 60, 'a refusal takes nothing: 60 ms left');
    c.advance(60);
    assert.equal(bucket.take(c.now()), 0);
    assert.equal(bucket.available(c.now()), 0);
  });

  test('refills at the rate and never beyond the burst', () => {
    const c = clock();
    const bucket = createTokenBucket(2, 5, c.now());
    for (let i = 0; i < 5; i += 1) assert.equal(bucket.take(c.now()), 0);
    c.advance(1_000);
    assert.equal(bucket.available(c.now()), 2, '2 tokens per second');
    assert.equal(bucket.msUntilNext(c.now()), 500);
    c.advance(60_000);
    assert.equal(bucket.available(c.now()), 5, 'capped at the burst');
    assert.equal(bucket.msUntilNext(c.now()), 0, 'full');
  });

  test('a fractional rate: one request every two seconds', () => {
    const c = clock();
    const bucket = createTokenBucket(0.5, 1, c.now());
    assert.equal(bucket.take(c.now()), 0);
    assert.equal(bucket.take(c.now()), 2_000);
    c.advance(1_999);
    assert.equal(bucket.take(c.now()), 1);
    c.advance(1);
    assert.equal(bucket.take(c.now()), 0);
  });

  test('a clock stepping back refills nothing and does not drain', () => {
    const c = clock();
    const bucket = createTokenBucket(1, 2, c.now());
    bucket.take(c.now());
    c.advance(-10_000);
    assert.equal(bucket.available(c.now()), 1);
    c.advance(10_000);
    assert.equal(bucket.available(c.now()), 1, 'no refill for time already counted');
    c.advance(1_000);
    assert.equal(bucket.available(c.now()), 2);
  });

  test('served over time: never more than burst + rate x elapsed', () => {
    const c = clock();
    const bucket = createTokenBucket(5, 10, c.now());
    let served = 0;
    for (let i = 0; i < 1_000; i += 1) {
      if (bucket.take(c.now()) === 0) served += 1;
      c.advance(7); // 7 s in all
    }
    assert.ok(served <= 10 + 5 * 7, `served ${served}`);
    assert.ok(served >= 5 * 7, `served ${served}: the rate is honoured`);
  });
});

describe('RateLimit header values', () => {
  test('structured-field lists of quoted names with parameters', () => {
    const { policy, limit } = rateLimitHeaderValues([
      { name: 'submit', quota: 20, windowSeconds: 2, remaining: 19, resetSeconds: 1 },
      { name: 'concurrency', quota: 4, unit: 'concurrent-requests', remaining: 3 },
      { name: 'daily', quota: 1000, windowSeconds: 86_400 },
    ]);
    assert.equal(
      policy,
      '"submit";q=20;w=2, "concurrency";q=4;qu="concurrent-requests", "daily";q=1000;w=86400',
    );
    assert.equal(limit, '"submit";r=19;t=1, "concurrency";r=3', 'no r before it is known');
  });

  test('a token bucket as a policy: burst over the refill time, at least the sustained rate', () => {
    const c = clock();
    const item = (perSecond: number, burst: number) =>
      rateItem('submit', perSecond, burst, createTokenBucket(perSecond, burst, c.now()), c.now());
    assert.deepEqual(item(10, 20), { name: 'submit', quota: 20, windowSeconds: 2, remaining: 20 });
    assert.equal(item(10, 1).quota, 10, '10/s with no burst is still 10 a second');
    assert.equal(item(0.5, 1).windowSeconds, 2);
    const bucket = createTokenBucket(4, 2, c.now());
    bucket.take(c.now());
    bucket.take(c.now());
    const drained = rateItem('read', 4, 2, bucket, c.now());
    assert.equal(drained.remaining, 0);
    assert.equal(drained.resetSeconds, 1, 'the next token within a second');
  });
});

describe('limits middleware', () => {
  /** A Hono app with the limiter after a stand-in for tenant auth; `hold` keeps requests waiting. */
  const appWith = (limits: TenantLimitsConfig, now: () => number) => {
    const app = new Hono<GatewayEnv>();
    app.onError(onGatewayError(silentLogger));
    let release: () => void = () => undefined;
    let held = new Promise<void>((resolve) => (release = resolve));
    app.use('/v1/*', async (c, next) => {
      const tenant = c.req.header('X-Tenant');
      if (tenant) c.set('tenant', tenant);
      await next();
    });
    app.use('/v1/*', createTenantLimiter({ limits, now }));
    app.post('/v1/work', async (c) => {
      if (c.req.query('hold')) await held;
      return c.json({ ok: true });
    });
    app.get('/v1/work', (c) => c.json({ ok: true }));
    const request = async (
      tenant: string | undefined,
      method = 'POST',
      path = '/v1/work',
      prefer?: string,
    ) =>
      app.request(path, {
        method,
        headers: {
          ...(tenant ? { 'X-Tenant': tenant } : {}),
          ...(prefer ? { Prefer: prefer } : {}),
        },
      });
    return {
      request,
      releaseHeld: () => {
        release();
        held = new Promise<void>((resolve) => (release = resolve));
      },
    };
  };

  test('over its rate a tenant gets 429 with Retry-After and RateLimit headers; others do not', async () => {
    const c = clock();
    const { request } = appWith(
      { tenants: { alpha: { rate: { perSecond: 1, burst: 2 } } } },
      c.now,
    );
    const first = await request('alpha');
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('ratelimit-policy'), '"submit";q=2;w=2');
    assert.equal(first.headers.get('ratelimit'), '"submit";r=1;t=1');
    assert.equal((await request('alpha')).status, 200);
    const refused = await request('alpha');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal(refused.headers.get('ratelimit'), '"submit";r=0;t=1');
    const body = (await refused.json()) as { error: { code: string; retryable: boolean } };
    assert.equal(body.error.code, 'rate_limited');
    assert.equal(body.error.retryable, true);
    const other = await request('beta');
    assert.equal(other.status, 200, 'beta has no limits');
    assert.equal(other.headers.get('ratelimit-policy'), null, 'and no RateLimit headers');
    c.advance(1_000);
    assert.equal((await request('alpha')).status, 200, 'a token came back after a second');
  });

  test('reads have their own bucket: polling does not starve submissions', async () => {
    const c = clock();
    const { request } = appWith(
      { tenants: { alpha: { rate: { perSecond: 1, burst: 1 } } } },
      c.now,
    );
    assert.equal((await request('alpha', 'GET')).status, 200);
    const secondRead = await request('alpha', 'GET');
    assert.equal(secondRead.status, 429);
    assert.match(secondRead.headers.get('ratelimit-policy') ?? '', /^"read";/);
    assert.equal((await request('alpha', 'POST')).status, 200, 'the submit bucket is untouched');
  });

  test('the default limits apply to tenants not named; named tenants keep their own', async () => {
    const c = clock();
    const { request } = appWith(
      {
        tenants: { alpha: { rate: { perSecond: 100 } } },
        defaults: { rate: { perSecond: 1, burst: 1 } },
      },
      c.now,
    );
    assert.equal((await request('gamma')).status, 200);
    assert.equal((await request('gamma')).status, 429);
    for (let i = 0; i < 5; i += 1) assert.equal((await request('alpha')).status, 200);
  });

  test('concurrency counts waiting requests only, per tenant, and frees slots as they end', async () => {
    const c = clock();
    const { request, releaseHeld } = appWith({ tenants: { alpha: { maxConcurrent: 2 } } }, c.now);
    const held = [
      request('alpha', 'POST', '/v1/work?hold=1'),
      request('alpha', 'POST', '/v1/work?hold=1'),
    ];
    await new Promise((resolve) => setImmediate(resolve));
    const third = await request('alpha');
    assert.equal(third.status, 429, 'a third waiting request is refused');
    assert.equal(third.headers.get('ratelimit'), '"concurrency";r=0');
    assert.equal(third.headers.get('retry-after'), '1');
    const async = await request('alpha', 'POST', '/v1/work', 'respond-async');
    assert.equal(async.status, 200, 'a request answered at once does not wait, so it passes');
    assert.equal((await request('alpha', 'GET')).status, 200, 'a read without Prefer: wait too');
    assert.equal(
      (await request('alpha', 'GET', '/v1/work', 'wait=5')).status,
      429,
      'a long poll waits',
    );
    assert.equal((await request('beta')).status, 200, 'another tenant is not affected');
    releaseHeld();
    assert.deepEqual(
      (await Promise.all(held)).map((r) => r.status),
      [200, 200],
    );
    const after = await request('alpha');
    assert.equal(after.status, 200, 'the slots are free again');
    assert.equal(after.headers.get('ratelimit'), '"concurrency";r=1');
  });

  test('requests without a tenant (admin routes) pass untouched', async () => {
    const c = clock();
    const { request } = appWith(
      { tenants: {}, defaults: { rate: { perSecond: 1, burst: 1 } } },
      c.now,
    );
    for (let i = 0; i < 3; i += 1) {
      const res = await request(undefined);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('ratelimit-policy'), null);
    }
  });
});

describe('quota leases', () => {
  test('a lease is an eighth of what is left, at least one, at most the cap and what is left', () => {
    assert.equal(LEASE_SHARE_DIVISOR, 8);
    assert.equal(leaseSize(30, 0, 100), 3);
    assert.equal(leaseSize(7, 0, 100), 1, 'small near the limit');
    assert.equal(leaseSize(1, 0, 100), 1);
    assert.equal(leaseSize(0, 5, 100), 0, 'nothing left: no lease');
    assert.equal(leaseSize(-3, 5, 100), 0, 'over the limit (outage debt): no lease');
    assert.equal(leaseSize(1_000_000, 0, 100), 100, 'capped');
    assert.equal(leaseSize(30, 12, 100), 12, 'big enough for the requests waiting for it');
    assert.equal(leaseSize(5, 12, 100), 5, 'but never more than what is left');
  });

  test('any sequence of leases stays within the quota and ends at exactly the quota', () => {
    for (const quota of [1, 2, 7, 30, 1000, 123_457]) {
      let granted = 0;
      let leases = 0;
      for (;;) {
        const size = leaseSize(quota - granted, leases % 3, 50);
        if (size === 0) break;
        granted += size;
        leases += 1;
        assert.ok(granted <= quota, `quota ${quota}: granted ${granted}`);
      }
      assert.equal(granted, quota, `quota ${quota} is fully grantable`);
    }
  });

  test('UTC days and months, across month, year and leap-day boundaries', () => {
    const day = quotaWindow('day', Date.UTC(2026, 6, 14, 23, 59, 59, 999));
    assert.deepEqual(day, {
      id: '2026-07-14',
      startMs: Date.UTC(2026, 6, 14),
      endMs: Date.UTC(2026, 6, 15),
    });
    assert.equal(quotaWindow('day', Date.UTC(2026, 6, 15)).id, '2026-07-15');
    const december = quotaWindow('month', Date.UTC(2026, 11, 31, 12));
    assert.equal(december.id, '2026-12');
    assert.equal(december.endMs, Date.UTC(2027, 0, 1));
    const leapFebruary = quotaWindow('month', Date.UTC(2028, 1, 29));
    assert.equal((leapFebruary.endMs - leapFebruary.startMs) / 86_400_000, 29);
    assert.equal(quotaKey('acme', day), 'acme.2026-07-14');
    assert.equal(quotaKey('acme', december), 'acme.2026-12');
  });

  test('counters are decimal counts; anything else is refused', () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    assert.equal(parseCounter(bytes('0')), 0);
    assert.equal(parseCounter(bytes('31')), 31);
    for (const bad of ['', '-1', '1.5', ' 3', 'abc', '1'.repeat(16)]) {
      assert.throws(() => parseCounter(bytes(bad)), { name: 'PayloadError' }, JSON.stringify(bad));
    }
  });
});

describe('limits configuration', () => {
  test('accepts the documented shape and resolves tenants and defaults', () => {
    const tenants = parseTenantLimitsMap(
      {
        acme: {
          rate: { perSecond: 10, burst: 20 },
          reads: { perSecond: 50 },
          maxConcurrent: 8,
          quota: { perDay: 1000, perMonth: 20_000 },
        },
        tiny: { rate: { perSecond: 0.5 } },
      },
      'VIGIL_TENANT_LIMITS',
    );
    const config: TenantLimitsConfig = { tenants, defaults: { maxConcurrent: 2 } };
    assert.equal(limitsOf(config, 'acme')?.quota?.perDay, 1000);
    assert.deepEqual(limitsOf(config, 'other'), { maxConcurrent: 2 });
    assert.equal(limitsOf(config, 'constructor')?.maxConcurrent, 2, 'no prototype lookups');
    assert.equal(hasQuotas(config), true);
    assert.equal(hasQuotas({ tenants: { tiny: tenants['tiny']! } }), false);
  });

  test('a bad value is a ConfigError naming the source, the tenant and the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ acme: { rate: { perSecond: 0 } } }, /^VIGIL_TENANT_LIMITS\.acme\.rate\.perSecond: /],
      [
        { acme: { rate: { perSecond: 1, burst: 1.5 } } },
        /^VIGIL_TENANT_LIMITS\.acme\.rate\.burst: /,
      ],
      [{ acme: { quota: { perDay: -1 } } }, /^VIGIL_TENANT_LIMITS\.acme\.quota\.perDay: /],
      [{ acme: { maxConcurent: 3 } }, /^VIGIL_TENANT_LIMITS\.acme: .*maxConcurent/],
      [{ 'Not A Tenant': {} }, /^VIGIL_TENANT_LIMITS\.Not A Tenant: is not a tenant name/],
      [[], /^VIGIL_TENANT_LIMITS: /],
    ];
    for (const [value, message] of cases) {
      assert.throws(
        () => parseTenantLimitsMap(value, 'VIGIL_TENANT_LIMITS'),
        (err: unknown) => err instanceof ConfigError && message.test(err.message),
        JSON.stringify(value),
      );
    }
    assert.throws(
      () => parseTenantLimits({ rate: { perSecond: 'ten' } }, 'VIGIL_DEFAULT_TENANT_LIMITS'),
      (err: unknown) =>
        err instanceof ConfigError &&
        /^VIGIL_DEFAULT_TENANT_LIMITS\.rate\.perSecond: /.test(err.message),
    );
  });

  test('keys file, then VIGIL_TENANT_LIMITS over it per tenant, then the default for the rest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-limits-'));
    try {
      const file = join(dir, 'keys.json');
      writeFileSync(
        file,
        JSON.stringify({
          keys: [
            { tenant: 'acme', key: 'acme-key-0123456789' },
            { tenant: 'zeta', key: 'zeta-key-0123456789' },
          ],
          tenants: {
            acme: { maxConcurrent: 1, quota: { perDay: 10 } },
            zeta: { maxConcurrent: 3 },
          },
        }),
      );
      const env = {
        VIGIL_API_KEYS_FILE: file,
        VIGIL_TENANT_LIMITS: JSON.stringify({ acme: { maxConcurrent: 5 } }),
        VIGIL_DEFAULT_TENANT_LIMITS: JSON.stringify({ rate: { perSecond: 2 } }),
      };
      const options = gatewayOptionsFromEnv(env, silentLogger);
      const limits = options.tenantLimits!;
      assert.deepEqual(limitsOf(limits, 'acme'), { maxConcurrent: 5 }, 'the variable wins whole');
      assert.deepEqual(limitsOf(limits, 'zeta'), { maxConcurrent: 3 });
      assert.deepEqual(limitsOf(limits, 'other'), { rate: { perSecond: 2 } });
      assert.equal(hasQuotas(limits), false, 'the file quota was replaced');

      writeFileSync(
        file,
        JSON.stringify({
          keys: [{ tenant: 'acme', key: 'acme-key-0123456789' }],
          tenants: { acme: { quota: { perDay: 'lots' } } },
        }),
      );
      assert.throws(
        () => gatewayOptionsFromEnv({ VIGIL_API_KEYS_FILE: file }, silentLogger),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.startsWith(`VIGIL_API_KEYS_FILE (${file}): tenants.acme.quota.perDay: `),
      );
      assert.equal(tenantLimitsFromEnv({}, undefined), undefined, 'nothing set: nothing limited');
      assert.throws(
        () => tenantLimitsFromEnv({ VIGIL_TENANT_LIMITS: '{"acme":' }, undefined),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.startsWith('VIGIL_TENANT_LIMITS is not valid JSON'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
