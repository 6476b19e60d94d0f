/**
 * Per-tenant limits at the gateway: request rates, concurrent waiting requests, and the IETF
 * `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) on every tenant
 * response. Task quotas, shared by all gateways, are in `tenant-quota.ts`; this middleware only
 * reports them.
 *
 * Written here rather than with `hono-rate-limiter`: that middleware counts fixed windows in a
 * store, with a store call per request, so it neither smooths bursts (a token bucket) nor leases
 * quota from a shared counter, and a tenant's limits here differ by request kind.
 *
 * - **Rate**: token buckets in this process (no network round trip), one per tenant and kind:
 *   `submit` for requests that create work (POST) and `read` for the rest (GET: task polls,
 *   model lists). Long polls therefore never eat the tokens submissions need, and the other way
 *   round. Without a `reads` setting, reads get the `rate` numbers in a bucket of their own.
 * - **Concurrency**: requests of the tenant that wait in this gateway at once (synchronous
 *   submissions and `Prefer: wait` polls); a request answered at once does not count.
 *
 * Refusals are `429 rate_limited` with `Retry-After` (seconds until a token, or 1 s for
 * concurrency) and publish nothing: the check runs before the route.
 */
import type { MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { z } from 'zod';
import { ErrorCode, NAME_TOKEN, VigilError } from '../../protocol/index.js';
import { ConfigError, json, parseSettings, settingsGroup, type Env } from '../common/index.js';
import type { GatewayEnv } from './gateway-env.js';
import { parsePrefer } from './prefer-header.js';
import { errorResponse } from './http-errors.js';
import {
  QuotaPeriod,
  type QuotaLimits,
  type QuotaStatus,
  type TenantQuota,
} from './tenant-quota.js';

const MAX_RATE = 1_000_000;

const rateSchema = z
  .object({
    /** Sustained requests per second (fractions allowed: 0.5 is one every two seconds). */
    perSecond: z.number().positive().max(MAX_RATE),
    /** Requests allowed back to back after a quiet spell. Default: one second's worth, at least 1. */
    burst: z.number().int().min(1).max(MAX_RATE).optional(),
  })
  .strict();

/** One tenant's limits as the operator writes them (JSON); every field is optional. */
export const tenantLimitsSchema = z
  .object({
    /** Requests that create work (POST). */
    rate: rateSchema.optional(),
    /** Other requests (GET); default: the `rate` numbers, in a bucket of their own. */
    reads: rateSchema.optional(),
    /** Requests waiting for a result at once in one gateway. */
    maxConcurrent: z.number().int().min(1).max(MAX_RATE).optional(),
    /** Tasks accepted per UTC day and month, across all gateways and regions. */
    quota: z
      .object({
        perDay: z.number().int().min(0).optional(),
        perMonth: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** One tenant's limits. */
export type TenantLimits = z.infer<typeof tenantLimitsSchema>;

/** The limits of every tenant: named ones, and a default for the rest. */
export interface TenantLimitsConfig {
  tenants: Readonly<Record<string, TenantLimits>>;
  /** For tenants not named; absent: they are not limited. */
  defaults?: TenantLimits;
}

/** The limits that apply to `tenant`, if any. */
export function limitsOf(config: TenantLimitsConfig, tenant: string): TenantLimits | undefined {
  return Object.hasOwn(config.tenants, tenant) ? config.tenants[tenant] : config.defaults;
}

/** True when some tenant, or the default, has a task quota (the gateway then needs the bucket). */
export function hasQuotas(config: TenantLimitsConfig): boolean {
  return [...Object.values(config.tenants), config.defaults].some(
    (limits) => limits?.quota?.perDay !== undefined || limits?.quota?.perMonth !== undefined,
  );
}

/**
 * Validates one tenant's limits from configuration.
 * @throws ConfigError naming `source` and the bad field.
 */
export function parseTenantLimits(value: unknown, source: string): TenantLimits {
  return parseConfig(tenantLimitsSchema, value, source);
}

/**
 * Validates `{ "<tenant>": limits, ... }` from configuration.
 * @throws ConfigError naming `source`, the tenant and the bad field.
 */
export function parseTenantLimitsMap(value: unknown, source: string): Record<string, TenantLimits> {
  const tenants = parseConfig(z.record(z.string(), tenantLimitsSchema), value, source);
  for (const tenant of Object.keys(tenants)) {
    if (!NAME_TOKEN.test(tenant)) {
      throw new ConfigError(`${source}.${tenant}: is not a tenant name (${String(NAME_TOKEN)})`);
    }
  }
  return tenants;
}

/** The limits shape in the reference. */
const LIMITS_EXAMPLE =
  '{"rate":{"perSecond":10,"burst":20},"reads":{...},"maxConcurrent":8,' +
  '"quota":{"perDay":10000,"perMonth":200000}}';

/** The variables that limit tenants, beside the keys file's `tenants`. */
export const TENANT_LIMITS_SETTINGS = settingsGroup({
  id: 'tenant-limits',
  title: 'Tenant limits',
  intro:
    'Per-tenant request rates, concurrency and task quotas (see the README). Limits come from ' +
    "the keys file's `tenants`, then `VIGIL_TENANT_LIMITS` (a tenant named there replaces the " +
    "file's entry), and `VIGIL_DEFAULT_TENANT_LIMITS` for every other tenant. Every field is " +
    `optional: \`${LIMITS_EXAMPLE}\`. A tenant with no limits is not limited.`,
  settings: {
    tenants: json({
      name: 'VIGIL_TENANT_LIMITS',
      schema: z.unknown().transform((value) => parseTenantLimitsMap(value, 'VIGIL_TENANT_LIMITS')),
      example: '{"<tenant>": limits}',
      meaning: "Limits of named tenants, over the keys file's.",
    }),
    defaults: json({
      name: 'VIGIL_DEFAULT_TENANT_LIMITS',
      schema: tenantLimitsSchema,
      example: LIMITS_EXAMPLE,
      meaning: 'Limits of every tenant not named in the keys file or `VIGIL_TENANT_LIMITS`.',
    }),
  },
});

/**
 * The limits configuration: the keys file's `tenants`, then `tenants` (a tenant named there
 * replaces the file's entry), and `defaults` for every other tenant. Undefined when nothing is
 * limited.
 */
export function tenantLimitsConfig(
  fileTenants: Readonly<Record<string, TenantLimits>> | undefined,
  tenants: Readonly<Record<string, TenantLimits>> | undefined,
  defaults: TenantLimits | undefined,
): TenantLimitsConfig | undefined {
  const merged = { ...fileTenants, ...tenants };
  if (Object.keys(merged).length === 0 && defaults === undefined) return undefined;
  return { tenants: merged, ...(defaults === undefined ? {} : { defaults }) };
}

/**
 * {@link tenantLimitsConfig} from the keys file's `tenants` (not validated yet) and `env`.
 * @throws ConfigError naming the variable (or file), the tenant and the bad field.
 */
export function tenantLimitsFromEnv(
  env: Env,
  keysFileTenants: unknown,
  keysFilePath = 'VIGIL_API_KEYS_FILE',
): TenantLimitsConfig | undefined {
  const fileTenants =
    keysFileTenants === undefined
      ? undefined
      : parseTenantLimitsMap(keysFileTenants, `${keysFilePath}: tenants`);
  const { tenants, defaults } = parseSettings(TENANT_LIMITS_SETTINGS, env);
  return tenantLimitsConfig(fileTenants, tenants, defaults);
}

function parseConfig<T>(schema: z.ZodType<T>, value: unknown, source: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue && issue.path.length > 0 ? `.${issue.path.join('.')}` : '';
  throw new ConfigError(`${source}${path}: ${issue?.message ?? 'is invalid'}`);
}

/** A token bucket: `burst` tokens at most, refilled at `perSecond`. */
export interface TokenBucket {
  /** Takes a token if there is one: returns 0, or else the ms until one is due (nothing taken). */
  take(nowMs: number): number;
  /** Whole tokens available now. */
  available(nowMs: number): number;
  /** Ms until the next whole token; 0 when the bucket is full. */
  msUntilNext(nowMs: number): number;
}

/** A full token bucket. */
export function createTokenBucket(perSecond: number, burst: number, nowMs: number): TokenBucket {
  let tokens = burst;
  let at = nowMs;
  const refill = (now: number): void => {
    // A clock that steps back refills nothing rather than draining the bucket.
    if (now > at) tokens = Math.min(burst, tokens + ((now - at) * perSecond) / 1000);
    at = Math.max(at, now);
  };
  const msUntil = (target: number): number =>
    Math.max(1, Math.ceil(((target - tokens) * 1000) / perSecond));
  return {
    take(now) {
      refill(now);
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return msUntil(1);
    },
    available(now) {
      refill(now);
      return Math.floor(tokens);
    },
    msUntilNext(now) {
      refill(now);
      return tokens >= burst ? 0 : msUntil(Math.floor(tokens) + 1);
    },
  };
}

/** The default burst of a rate: one second's worth, at least one request. */
export function defaultBurst(perSecond: number): number {
  return Math.max(1, Math.ceil(perSecond));
}

/** One policy of the RateLimit headers, with its current service limit. */
export interface RateLimitItem {
  /** Policy name, e.g. `submit`, `daily`. */
  name: string;
  /** `q`: the quota of the policy. */
  quota: number;
  /** `w`: its window, seconds; absent for concurrency. */
  windowSeconds?: number;
  /** `qu`: the quota unit, when not requests. */
  unit?: 'concurrent-requests';
  /** `r`: what is left; absent when not known yet. */
  remaining?: number;
  /** `t`: seconds within which no more than `remaining` can be used. */
  resetSeconds?: number;
}

/**
 * Formats the `RateLimit-Policy` and `RateLimit` header values (structured-field lists of
 * quoted policy names with parameters), e.g. `"submit";q=20;w=2` and `"submit";r=19;t=1`.
 */
export function rateLimitHeaderValues(items: readonly RateLimitItem[]): {
  policy: string;
  limit: string;
} {
  const policy = items.map((item) => {
    let text = `"${item.name}";q=${item.quota}`;
    if (item.unit !== undefined) text += `;qu="${item.unit}"`;
    if (item.windowSeconds !== undefined) text += `;w=${item.windowSeconds}`;
    return text;
  });
  const limit = items
    .filter((item) => item.remaining !== undefined)
    .map((item) => {
      let text = `"${item.name}";r=${item.remaining}`;
      if (item.resetSeconds !== undefined) text += `;t=${item.resetSeconds}`;
      return text;
    });
  return { policy: policy.join(', '), limit: limit.join(', ') };
}

/**
 * The policy of a token bucket in the draft's terms, which have no burst: `burst` requests over
 * the time a drained bucket takes to refill, and never less than the sustained rate over it.
 */
export function rateItem(
  name: string,
  perSecond: number,
  burst: number,
  bucket: TokenBucket,
  nowMs: number,
): RateLimitItem {
  const windowSeconds = Math.max(1, Math.ceil(burst / perSecond));
  const untilNext = bucket.msUntilNext(nowMs);
  return {
    name,
    quota: Math.max(burst, Math.floor(perSecond * windowSeconds)),
    windowSeconds,
    remaining: bucket.available(nowMs),
    ...(untilNext > 0 ? { resetSeconds: Math.ceil(untilNext / 1000) } : {}),
  };
}

/** Options of {@link createTenantLimiter}. */
export interface TenantLimiterOptions {
  limits: TenantLimitsConfig;
  /** The gateway's quota ledger; needed when any tenant has a quota. */
  quota?: TenantQuota;
  /** The clock, epoch ms; tests move it. Default `Date.now`. */
  now?: () => number;
}

/** A tenant's runtime state in this gateway. */
interface TenantState {
  readonly limits: TenantLimits;
  readonly submit: { bucket: TokenBucket; perSecond: number; burst: number } | undefined;
  readonly read: { bucket: TokenBucket; perSecond: number; burst: number } | undefined;
  /** Requests of the tenant waiting in this gateway now. */
  waiting: number;
}

/** Refusals for concurrency say to retry after this long: a slot frees when any wait ends. */
const CONCURRENCY_RETRY_MS = 1000;

/**
 * The limits middleware, for `/v1/*` after tenant authentication. Requests without a tenant (the
 * admin routes, authenticated by admin keys) pass untouched.
 */
export function createTenantLimiter(options: TenantLimiterOptions): MiddlewareHandler<GatewayEnv> {
  const now = options.now ?? Date.now;
  // Bounded: one entry per tenant that holds an API key and has sent a request.
  const states = new Map<string, TenantState | null>();
  const stateOf = (tenant: string): TenantState | null => {
    let state = states.get(tenant);
    if (state === undefined) {
      const limits = limitsOf(options.limits, tenant);
      state = limits ? newTenantState(limits, now()) : null;
      states.set(tenant, state);
    }
    return state;
  };

  return createMiddleware<GatewayEnv>(async (c, next) => {
    const tenant = c.get('tenant') as string | undefined;
    const state = tenant === undefined ? null : stateOf(tenant);
    if (tenant === undefined || state === null) return next();

    const at = now();
    const submits = c.req.method !== 'GET' && c.req.method !== 'HEAD';
    const rate = submits ? state.submit : state.read;
    const items: RateLimitItem[] = [];
    let refusal: VigilError | undefined;
    if (rate) {
      const waitMs = rate.bucket.take(at);
      items.push(
        rateItem(submits ? 'submit' : 'read', rate.perSecond, rate.burst, rate.bucket, at),
      );
      if (waitMs > 0) {
        refusal = new VigilError(
          ErrorCode.RateLimited,
          `more than ${rate.perSecond} ${submits ? 'submissions' : 'reads'} per second (burst ${rate.burst})`,
          true,
          { retryAfterMs: waitMs },
        );
      }
    }
    const max = state.limits.maxConcurrent;
    const waits =
      max !== undefined &&
      refusal === undefined &&
      holdsWaiter(c.req.method, c.req.header('Prefer'));
    if (max !== undefined && waits) {
      if (state.waiting >= max) {
        refusal = new VigilError(
          ErrorCode.RateLimited,
          `more than ${max} requests waiting at once`,
          true,
          { retryAfterMs: CONCURRENCY_RETRY_MS },
        );
      }
      items.push({
        name: 'concurrency',
        quota: max,
        unit: 'concurrent-requests',
        remaining: Math.max(0, max - state.waiting - (refusal ? 0 : 1)),
      });
    }
    const quotaLimits = submits ? state.limits.quota : undefined;

    if (refusal) {
      if (quotaLimits && options.quota)
        items.push(...quotaItems(options.quota.status(tenant, quotaLimits)));
      setRateLimitHeaders(c.header.bind(c), items);
      return errorResponse(c, refusal.toWire());
    }

    if (waits) state.waiting++;
    try {
      await next();
    } finally {
      if (waits) state.waiting--;
    }
    if (quotaLimits && options.quota)
      items.push(...quotaItems(options.quota.status(tenant, quotaLimits)));
    const headers = c.res.headers;
    setRateLimitHeaders((name, value) => headers.set(name, value), items);
    // The openai client otherwise sleeps for Retry-After, hours at the end of a day's quota.
    if (c.error instanceof VigilError && c.error.code === ErrorCode.QuotaExceeded) {
      headers.set('X-Should-Retry', 'false');
    }
  });
}

function newTenantState(limits: TenantLimits, nowMs: number): TenantState {
  const bucketOf = (rate: TenantLimits['rate']) => {
    if (!rate) return undefined;
    const burst = rate.burst ?? defaultBurst(rate.perSecond);
    return {
      bucket: createTokenBucket(rate.perSecond, burst, nowMs),
      perSecond: rate.perSecond,
      burst,
    };
  };
  return {
    limits,
    submit: bucketOf(limits.rate),
    read: bucketOf(limits.reads ?? limits.rate),
    waiting: 0,
  };
}

/** True for requests that wait for a result: submissions not sent async, and `Prefer: wait` polls. */
function holdsWaiter(method: string, prefer: string | undefined): boolean {
  const { respondAsync, waitMs } = parsePrefer(prefer);
  if (method === 'GET' || method === 'HEAD') return waitMs !== undefined && waitMs > 0;
  return !respondAsync && waitMs !== 0;
}

function quotaItems(statuses: readonly QuotaStatus[]): RateLimitItem[] {
  return statuses.map((s) => ({
    name: s.period === QuotaPeriod.Day ? 'daily' : 'monthly',
    quota: s.limit,
    windowSeconds: s.windowSeconds,
    ...(s.remaining === undefined ? {} : { remaining: s.remaining, resetSeconds: s.resetSeconds }),
  }));
}

function setRateLimitHeaders(
  set: (name: string, value: string) => void,
  items: readonly RateLimitItem[],
): void {
  if (items.length === 0) return;
  const { policy, limit } = rateLimitHeaderValues(items);
  set('RateLimit-Policy', policy);
  if (limit) set('RateLimit', limit);
}

/** The task quotas of `tenant`, if it has any. */
export function quotaLimitsOf(config: TenantLimitsConfig, tenant: string): QuotaLimits | undefined {
  const quota = limitsOf(config, tenant)?.quota;
  return quota && (quota.perDay !== undefined || quota.perMonth !== undefined) ? quota : undefined;
}
