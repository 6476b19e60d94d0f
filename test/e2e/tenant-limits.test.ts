/**
 * Tenant limits end to end, on a real nats-server with real gateway and actor-host processes:
 * rates and their isolation between tenants, the concurrency limit, a day's task quota shared by
 * two gateways (never exceeded, and exactly what the stream received), quotas across gateway
 * restarts and a killed gateway, the openai client's RateLimitError, admin routes left alone; and
 * the quota ledger in-process against a real server: racing gateways, and the bounded outage
 * allowance while the server is down.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import OpenAI from 'openai';
import {
  assetNames,
  ensureRegionAssets,
  ErrorCode,
  Role,
  VigilError,
} from '../../protocol/index.js';
import { silentLogger } from '../../nodes/common/index.js';
import { startNode, type NodeProcess } from '../../nodes/launcher/index.js';
import {
  openTenantQuota,
  quotaKey,
  quotaWindow,
  type TenantQuota,
} from '../../nodes/gateway/index.js';
import { startTestEdge, waitFor, type TestEdge } from '../harness/edge.js';
import { startTestNats } from '../harness/nats.js';

type Json = Record<string, unknown>;
const key = (tenant: string) => `${tenant}-${randomBytes(12).toString('hex')}`;
const KEYS = {
  rated: key('rated'),
  calm: key('calm'),
  busy: key('busy'),
  metered: key('metered'),
  durable: key('durable'),
  oai: key('oai'),
  oaiquota: key('oaiquota'),
  plain: key('plain'),
  free: key('free'),
} as const;

/** Tasks per UTC day of the tenant shared by two gateways. */
const METERED_PER_DAY = 30;
/** Tasks per UTC day of the tenant whose gateways are restarted and killed. */
const DURABLE_PER_DAY = 60;

const LIMITS = {
  // One token per 20 s after a burst of 3: a test run sees the burst and nothing more.
  rated: { rate: { perSecond: 0.05, burst: 3 } },
  calm: { rate: { perSecond: 0.05, burst: 3 } },
  busy: { maxConcurrent: 2 },
  metered: { quota: { perDay: METERED_PER_DAY } },
  durable: { quota: { perDay: DURABLE_PER_DAY } },
  oai: { rate: { perSecond: 0.05, burst: 1 } },
  oaiquota: { quota: { perDay: 1 } },
  // Named with no limits: the default does not apply.
  free: {},
};

let edge: TestEdge;
let gatewayEnv: Record<string, string>;
let adminNc: NatsConnection;
let secondGateway: NodeProcess | undefined;

before(async () => {
  // Quotas count per UTC day: a run must not straddle midnight.
  const untilMidnight = quotaWindow('day', Date.now()).endMs - Date.now();
  if (untilMidnight < 120_000) await new Promise((r) => setTimeout(r, untilMidnight + 1_000));
  gatewayEnv = {
    VIGIL_API_KEYS: Object.entries(KEYS)
      .map(([tenant, k]) => `${tenant}:${k}`)
      .join(','),
    VIGIL_TENANT_LIMITS: JSON.stringify(LIMITS),
    // Tenants not named (here: plain) get a strict default.
    VIGIL_DEFAULT_TENANT_LIMITS: JSON.stringify({ rate: { perSecond: 0.05, burst: 2 } }),
    VIGIL_ADMIN_KEYS: `admin-${randomBytes(12).toString('hex')}`,
  };
  edge = await startTestEdge({
    gatewayEnv,
    actorEnv: { VIGIL_ECHO_FAULTS: JSON.stringify({ enabled: true }) },
  });
  adminNc = await edge.connect();
});
after(async () => {
  await secondGateway?.stop();
  await edge?.stop();
});

/** Starts one more gateway process on the same NATS, as the gateway user, with the same limits. */
const startSecondGateway = () =>
  startNode('gateway', {
    env: {
      NATS_URL: edge.nats.url,
      VIGIL_REGION: edge.region,
      VIGIL_LOG_LEVEL: 'warn',
      VIGIL_GATEWAY_PORT: '0',
      ...edge.credentials.natsEnvFor(Role.Gateway),
      ...gatewayEnv,
      VIGIL_ADMIN_KEYS: '',
    },
  });

const submit = (
  baseUrl: string,
  tenantKey: string,
  body: Json = { input: 'x' },
  prefer = 'respond-async',
) =>
  fetch(`${baseUrl}/v1/models/echo/infer`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${tenantKey}`,
      'Content-Type': 'application/json',
      ...(prefer ? { Prefer: prefer } : {}),
    },
    body: JSON.stringify(body),
  });

/** Requests ever stored in the region's request stream. */
const storedRequests = async (): Promise<number> => {
  const jsm = await jetstreamManager(adminNc);
  return (await jsm.streams.info(assetNames.requestStream(edge.region))).state.last_seq;
};

/** The day counter of a tenant's quota in the shared bucket. */
const dayCounter = async (tenant: string): Promise<number> => {
  const kv = await new Kvm(adminNc).open(assetNames.quotaBucket);
  const entry = await kv.get(quotaKey(tenant, quotaWindow('day', Date.now())));
  return entry ? Number(entry.string()) : 0;
};

const errorCode = async (res: Response): Promise<string> =>
  String(((await res.json()) as { error: Json }).error['code']);

describe('rates', () => {
  test('over its rate a tenant gets 429 with Retry-After and RateLimit headers, publishing nothing; another tenant is unaffected', async () => {
    const storedBefore = await storedRequests();
    const started = Date.now();
    const statuses: number[] = [];
    let refusal: Response | undefined;
    for (let i = 0; i < 8; i += 1) {
      const res = await submit(edge.gatewayUrl, KEYS.rated);
      statuses.push(res.status);
      assert.match(res.headers.get('ratelimit-policy') ?? '', /^"submit";q=3;w=60/);
      if (res.status === 429) refusal ??= res;
      else await res.body?.cancel();
    }
    const elapsedS = (Date.now() - started) / 1000;
    const accepted = statuses.filter((s) => s === 202).length;
    console.log(`rated tenant: ${accepted} of 8 accepted in ${elapsedS.toFixed(2)} s`);
    assert.ok(accepted >= 3, 'the burst is served');
    assert.ok(accepted <= 3 + Math.floor(elapsedS * 0.05), `at most burst + rate x time`);
    assert.equal(statuses.filter((s) => s !== 202 && s !== 429).length, 0, String(statuses));
    assert.ok(refusal);
    assert.equal(await errorCode(refusal), ErrorCode.RateLimited);
    const retryAfter = Number(refusal.headers.get('retry-after'));
    assert.ok(
      retryAfter >= 1 && retryAfter <= 20,
      `Retry-After ${retryAfter}: until the next token`,
    );
    assert.match(refusal.headers.get('ratelimit') ?? '', /^"submit";r=0;t=\d+$/);
    assert.equal(
      (await storedRequests()) - storedBefore,
      accepted,
      'only accepted submissions reached the stream',
    );

    // Same limits, its own bucket: all of its burst goes through.
    const calm = [];
    for (let i = 0; i < 3; i += 1) calm.push((await submit(edge.gatewayUrl, KEYS.calm)).status);
    assert.deepEqual(calm, [202, 202, 202]);
  });

  test('polling has its own bucket: a tenant out of submit tokens still reads its tasks', async () => {
    const res = await fetch(`${edge.gatewayUrl}/v1/models`, {
      headers: { Authorization: `Bearer ${KEYS.rated}` },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('ratelimit-policy') ?? '', /^"read";q=3;w=60$/);
    assert.match(res.headers.get('ratelimit') ?? '', /^"read";r=2;t=\d+$/);
  });

  test('tenants not named get the default limits; admin routes get none', async () => {
    const plain = [];
    for (let i = 0; i < 3; i += 1) plain.push((await submit(edge.gatewayUrl, KEYS.plain)).status);
    assert.deepEqual(plain, [202, 202, 429]);
    for (let i = 0; i < 5; i += 1) {
      const res = await fetch(`${edge.gatewayUrl}/v1/admin/dead-letters`, {
        headers: { Authorization: `Bearer ${gatewayEnv['VIGIL_ADMIN_KEYS']}` },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('ratelimit-policy'), null);
      await res.body?.cancel();
    }
  });
});

describe('concurrency', () => {
  test('a tenant may have at most maxConcurrent requests waiting; async ones and other tenants pass', async () => {
    const storedBefore = await storedRequests();
    const slow = [1, 2].map(() =>
      submit(edge.gatewayUrl, KEYS.busy, { input: 'slow', params: { delay_ms: 6_000 } }, ''),
    );
    // Both are waiting once both are in the stream (they count before they publish).
    await waitFor('two waiting submissions', async () =>
      (await storedRequests()) - storedBefore >= 2 ? true : undefined,
    );
    const third = await submit(edge.gatewayUrl, KEYS.busy, { input: 'third' }, '');
    assert.equal(third.status, 429);
    assert.equal(await errorCode(third), ErrorCode.RateLimited);
    assert.equal(third.headers.get('retry-after'), '1');
    assert.equal(third.headers.get('ratelimit'), '"concurrency";r=0');
    assert.equal(
      third.headers.get('ratelimit-policy'),
      '"concurrency";q=2;qu="concurrent-requests"',
    );
    const asyncOne = await submit(edge.gatewayUrl, KEYS.busy, { input: 'async' });
    assert.equal(asyncOne.status, 202, 'answered at once: it does not wait, so it is not counted');
    assert.equal(
      (await submit(edge.gatewayUrl, KEYS.free, { input: 'x' }, '')).status,
      200,
      'another tenant',
    );
    assert.deepEqual(
      (await Promise.all(slow)).map((r) => r.status),
      [200, 200],
    );
    const afterwards = await submit(edge.gatewayUrl, KEYS.busy, { input: 'again' }, '');
    assert.equal(afterwards.status, 200, 'slots are free once the waits end');
    assert.equal(
      (await storedRequests()) - storedBefore,
      5,
      'two slow, one async, one other tenant, one afterwards: the refused one was not published',
    );
  });
});

describe('quotas', () => {
  test('a day quota shared by two gateways is never exceeded, and the stream holds exactly the accepted tasks', async () => {
    secondGateway = await startSecondGateway();
    const urls = [edge.gatewayUrl, String(secondGateway.ready['url'])];
    const storedBefore = await storedRequests();
    const keyed = (idempotencyKey: string) =>
      fetch(`${urls[0]}/v1/models/echo/infer`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${KEYS.metered}`,
          'Content-Type': 'application/json',
          Prefer: 'respond-async',
          'Idempotency-Key': idempotencyKey,
        },
        body: JSON.stringify({ input: 'keyed' }),
      });
    const first = await keyed('order-1');
    assert.equal(first.status, 202);
    const firstId = ((await first.json()) as Json)['id'];
    const accepted = [1, 0];
    // A gateway refuses only with no lease left and the counter at the quota: once both have
    // refused, nothing is left anywhere.
    const refused = [false, false];
    let quotaRefusal: Response | undefined;
    // Rounds of 5 concurrent submissions to each gateway, until both refuse.
    for (let round = 0; round < 20 && !(refused[0] && refused[1]); round++) {
      const results = await Promise.all(
        urls.flatMap((url, g) =>
          Array.from({ length: 5 }, async () => ({ g, res: await submit(url, KEYS.metered) })),
        ),
      );
      for (const { g, res } of results) {
        if (res.status === 202) {
          accepted[g] = accepted[g]! + 1;
          await res.body?.cancel();
          continue;
        }
        assert.equal(res.status, 429, `gateway ${g}`);
        refused[g] = true;
        quotaRefusal ??= res;
        if (quotaRefusal !== res) await res.body?.cancel();
      }
    }
    const total = accepted[0]! + accepted[1]!;
    console.log(
      `quota ${METERED_PER_DAY}/day over two gateways: accepted ${accepted[0]} + ${accepted[1]} = ${total}`,
    );
    assert.ok(total <= METERED_PER_DAY, `accepted ${total}: never above the quota`);
    assert.equal(total, METERED_PER_DAY, 'both gateways drained: no lease was left unused');
    assert.ok(accepted[0]! > 0 && accepted[1]! > 0, 'both gateways served the tenant');
    assert.equal(
      (await storedRequests()) - storedBefore,
      total,
      'refused requests published nothing',
    );
    assert.equal(await dayCounter('metered'), METERED_PER_DAY);

    const retried = await keyed('order-1');
    assert.ok(
      retried.status === 200 || retried.status === 202,
      `a retry of an accepted task is no new task, so it is not refused: ${retried.status}`,
    );
    assert.equal(((await retried.json()) as Json)['id'], firstId);
    const fresh = await keyed('order-2');
    assert.equal(fresh.status, 429, 'a new key is a new task');
    await fresh.body?.cancel();
    assert.equal((await storedRequests()) - storedBefore, total, 'the retry stored nothing new');

    assert.ok(quotaRefusal);
    assert.equal(await errorCode(quotaRefusal), ErrorCode.QuotaExceeded);
    const untilMidnight = (quotaWindow('day', Date.now()).endMs - Date.now()) / 1000;
    const retryAfter = Number(quotaRefusal.headers.get('retry-after'));
    assert.ok(Math.abs(retryAfter - untilMidnight) <= 5, `Retry-After ${retryAfter}: at the reset`);
    assert.equal(quotaRefusal.headers.get('x-should-retry'), 'false');
    assert.equal(
      quotaRefusal.headers.get('ratelimit-policy'),
      `"daily";q=${METERED_PER_DAY};w=86400`,
    );
    assert.match(quotaRefusal.headers.get('ratelimit') ?? '', /^"daily";r=0;t=\d+$/);
  });

  test('the quota survives restarts and a killed gateway: leases are never granted twice', async () => {
    secondGateway ??= await startSecondGateway();
    const secondUrl = String(secondGateway.ready['url']);
    let accepted = 0;
    for (let i = 0; i < 3; i += 1) {
      const res = await submit(secondUrl, KEYS.durable);
      assert.equal(res.status, 202);
      accepted += 1;
    }
    // The killed gateway cannot give its lease back: those tasks are lost for today, not reissued.
    secondGateway.signal('SIGKILL');
    await secondGateway.exited;
    secondGateway = undefined;
    const stranded = (await dayCounter('durable')) - accepted;
    for (let i = 0; i < 10; i += 1) {
      assert.equal((await submit(edge.gatewayUrl, KEYS.durable)).status, 202);
      accepted += 1;
    }
    await edge.restartGateway(); // graceful: its unused lease goes back
    let refused: Response | undefined;
    for (let i = 0; i < DURABLE_PER_DAY + 5 && !refused; i += 1) {
      const res = await submit(edge.gatewayUrl, KEYS.durable);
      if (res.status === 202) accepted += 1;
      else refused = res;
      await res.body?.cancel();
    }
    console.log(
      `quota ${DURABLE_PER_DAY}/day across a kill -9 and a restart: accepted ${accepted}, stranded by the kill ${stranded}`,
    );
    assert.ok(refused, 'the quota ran out');
    assert.equal(refused.status, 429);
    assert.ok(accepted <= DURABLE_PER_DAY);
    assert.equal(
      accepted,
      DURABLE_PER_DAY - stranded,
      "only the killed gateway's lease went unused",
    );
    assert.equal(await dayCounter('durable'), DURABLE_PER_DAY);
  });
});

describe('openai client', () => {
  const client = (apiKey: string, options: { maxRetries?: number; fetch?: typeof fetch } = {}) =>
    new OpenAI({ apiKey, baseURL: `${edge.gatewayUrl}/v1`, ...options });
  const chat = (openai: OpenAI) =>
    openai.chat.completions.create({
      model: 'ngram-chat',
      messages: [{ role: 'user', content: 'Tell me about liberty' }],
      max_tokens: 8,
    });

  test('over the rate: RateLimitError', async () => {
    const openai = client(KEYS.oai, { maxRetries: 0 });
    await chat(openai);
    await assert.rejects(chat(openai), (err: unknown) => {
      assert.ok(err instanceof OpenAI.RateLimitError, String(err));
      assert.equal(err.status, 429);
      assert.equal(err.code, ErrorCode.RateLimited);
      return true;
    });
  });

  test('over the quota: RateLimitError at once, not retried until the reset', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls += 1;
      return fetch(input, init);
    };
    const openai = client(KEYS.oaiquota, { fetch: counting }); // the default: 2 retries
    await chat(openai);
    await assert.rejects(
      chat(openai),
      (err: unknown) =>
        err instanceof OpenAI.RateLimitError && err.code === ErrorCode.QuotaExceeded,
    );
    assert.equal(calls, 2, 'one call each: the refusal said not to retry');
  });
});

describe('quota ledger against a real nats-server', () => {
  const logger = silentLogger;

  test('racing gateways share a quota exactly: every task granted once, none beyond', async () => {
    await using nats = await startTestNats();
    const connections = await Promise.all([0, 1, 2].map(() => connect({ servers: nats.url })));
    try {
      await ensureRegionAssets(connections[0]!, await jetstreamManager(connections[0]!), {
        region: 'q',
      });
      const quotas = await Promise.all(
        connections.map((nc) => openTenantQuota(nc, { logger, exhaustedRecheckMs: 0 })),
      );
      const limits = { perDay: 50, perMonth: 70 };
      let granted = 0;
      const takeAll = async (quota: TenantQuota, n: number) => {
        for (let i = 0; i < n; i += 1) {
          try {
            await quota.take('acme', limits);
            granted += 1;
          } catch (err) {
            if (!(err instanceof VigilError) || err.code !== ErrorCode.QuotaExceeded) throw err;
          }
        }
      };
      // 3 gateways x 8 concurrent callers x 5 takes, then each drained one by one.
      await Promise.all(quotas.flatMap((q) => Array.from({ length: 8 }, () => takeAll(q, 5))));
      for (const quota of quotas) await takeAll(quota, 10);
      console.log(`racing ledgers: ${granted} tasks granted of a quota of 50`);
      assert.equal(granted, 50);
      const kv = await new Kvm(connections[0]!).open(assetNames.quotaBucket);
      assert.equal(await counter(kv, quotaKey('acme', quotaWindow('day', Date.now()))), 50);
      await Promise.all(quotas.map((q) => q.close()));
      assert.equal(
        await counter(kv, quotaKey('acme', quotaWindow('month', Date.now()))),
        50,
        'the month counts the same 50 tasks once the unused month leases are given back',
      );
    } finally {
      await Promise.all(connections.map((nc) => nc.close()));
    }
  });

  test('while the bucket is unreachable a gateway serves only its allowance, and settles it after', async () => {
    await using nats = await startTestNats();
    const nc = await connect({
      servers: nats.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    try {
      await ensureRegionAssets(nc, await jetstreamManager(nc), { region: 'q' });
      const quota = await openTenantQuota(nc, {
        logger,
        outageAllowance: 3,
        timeoutMs: 500,
        retryMs: 300,
      });
      const limits = { perDay: 100 };
      await quota.take('acme', limits); // leases floor(100 / 8) = 12
      const kv = await new Kvm(nc).open(assetNames.quotaBucket);
      const dayKey = quotaKey('acme', quotaWindow('day', Date.now()));
      assert.equal(await counter(kv, dayKey), 12);
      for (let i = 0; i < 11; i += 1) await quota.take('acme', limits); // the rest of the lease

      await nats.stop();
      let served = 0;
      let refusal: unknown;
      for (let i = 0; i < 10 && refusal === undefined; i += 1) {
        try {
          await quota.take('acme', limits);
          served += 1;
        } catch (err) {
          refusal = err;
        }
      }
      assert.equal(served, 3, 'the outage allowance, and no more');
      assert.ok(refusal instanceof VigilError);
      assert.equal(refusal.code, ErrorCode.Unavailable);
      assert.equal(refusal.retryable, true);

      await nats.restart();
      await waitFor('the quota bucket again', async () => {
        try {
          await quota.take('acme', limits);
          return true;
        } catch {
          return undefined;
        }
      });
      const afterOutage = await counter(kv, dayKey);
      console.log(
        `counter after the outage: ${afterOutage} (12 leased + 3 served in the outage + a new lease)`,
      );
      assert.equal(
        afterOutage,
        12 + 3 + Math.floor((100 - 15) / 8),
        'the outage debt was recorded',
      );
      await quota.close();
      assert.equal(await counter(kv, dayKey), 12 + 3 + 1, 'close gave the unused lease back');
    } finally {
      await nc.close();
    }
  });
});

async function counter(kv: KV, k: string): Promise<number> {
  const entry = await kv.get(k);
  return entry ? Number(entry.string()) : 0;
}
