/**
 * Task quotas per tenant and UTC day or month, shared by every gateway of every region through
 * the `vigil-quotas` bucket, without a bucket write per request.
 *
 * The bucket holds one counter per tenant and period (`<tenant>.<period>`, e.g.
 * `acme.2026-07-14`, `acme.2026-07`): the tasks granted so far to all gateways together. A gateway
 * takes a LEASE, a block of tasks, by raising the counter with a compare-and-set, serves the block
 * from memory, and takes the next when it is used up. A lease is only granted while it fits under
 * the quota, so:
 *
 * - **Guarantee: the tasks accepted for a tenant in a period never exceed its quota** (plus, only
 *   while the bucket cannot be reached, each gateway's outage allowance, below). A gateway serves
 *   only tasks it was granted, and a grant never lifts the counter past the quota.
 * - The price is under-use, never over-use: tasks leased to one gateway and not used there are
 *   refused elsewhere. Leases shrink near the limit (an eighth of what is left, at least one), so
 *   little is held back; a gateway gives its unused lease back when it shuts down, and one that
 *   crashes strands at most its last lease, for the rest of the period.
 *
 * If the bucket cannot be reached (a cut link to the hub, a lost stream leader), a gateway serves
 * up to `outageAllowance` tasks per tenant and period on its own (fail-open, bounded) and refuses
 * past that with a retryable 503; the tasks it served are added to the counter once the bucket
 * answers again. With allowance 0 it fails closed. The bound becomes quota + gateways × allowance.
 */
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  isRevisionConflict,
  assetNames,
  ErrorCode,
  PayloadError,
  PublishRefusedError,
  taskIdForIdempotencyKey,
  VigilError,
  type SubmitRequest,
  type Submission,
  type VigilClient,
} from '../../protocol/index.js';
import type { Logger } from 'pino';

/** The periods a quota can count over, in UTC. */
export const QuotaPeriod = { Day: 'day', Month: 'month' } as const;
/** One of {@link QuotaPeriod}. */
export type QuotaPeriod = (typeof QuotaPeriod)[keyof typeof QuotaPeriod];

/** A tenant's task quotas; an absent period is not limited. */
export interface QuotaLimits {
  /** Tasks accepted per UTC day. */
  perDay?: number;
  /** Tasks accepted per UTC calendar month. */
  perMonth?: number;
}

/** Options of {@link openTenantQuota}. */
export interface TenantQuotaOptions {
  /** Largest lease a gateway takes at once, tasks. Default 100. */
  maxLease?: number;
  /**
   * Tasks per tenant and period this gateway accepts on its own while the bucket cannot be
   * reached; 0 fails closed. Default 20.
   */
  outageAllowance?: number;
  /** Timeout of each bucket operation, ms. Default 2 000. */
  timeoutMs?: number;
  /** After a failed bucket operation, how long to serve from the allowance before trying the bucket again, ms. Default 5 000. */
  retryMs?: number;
  /**
   * How long "this quota is used up" is believed before the counter is read again (another
   * gateway may have given a lease back), ms. Default 5 000.
   */
  exhaustedRecheckMs?: number;
  logger: Logger;
  /** The clock, epoch ms; tests move it. Default `Date.now`. */
  now?: () => number;
}

/** Defaults of {@link TenantQuotaOptions}. */
export const TENANT_QUOTA_DEFAULTS = {
  maxLease: 100,
  outageAllowance: 20,
  timeoutMs: 2_000,
  retryMs: 5_000,
  exhaustedRecheckMs: 5_000,
} as const;

/** One task taken from a tenant's quotas; give it back if no task was accepted after all. */
export interface QuotaGrant {
  /** Returns the task to this gateway's lease. Idempotent. */
  refund(): void;
}

/** What a gateway knows of one of a tenant's quotas, for the RateLimit headers. */
export interface QuotaStatus {
  period: QuotaPeriod;
  limit: number;
  /** Tasks the tenant may still submit, as far as this gateway knows; undefined before its first lease. */
  remaining: number | undefined;
  /** Length of the period, seconds. */
  windowSeconds: number;
  /** Seconds until the period ends and the quota resets. */
  resetSeconds: number;
}

/** The quota ledger of one gateway. */
export interface TenantQuota {
  /**
   * Takes one task from each of the tenant's quotas.
   * @throws VigilError `quota_exceeded` (retry after the reset) or `unavailable` (the bucket
   *   cannot be reached and the outage allowance is used up).
   */
  take(tenant: string, limits: QuotaLimits): Promise<QuotaGrant>;
  /** The tenant's quotas as this gateway sees them. */
  status(tenant: string, limits: QuotaLimits): QuotaStatus[];
  /** Gives unused leases back to the bucket. Call after the last request. Idempotent. */
  close(): Promise<void>;
}

/** A UTC day or month. */
export interface QuotaWindow {
  /** `2026-07-14` or `2026-07`: the counter key's second token. */
  id: string;
  startMs: number;
  endMs: number;
}

/** The day or month that contains `nowMs`. */
export function quotaWindow(period: QuotaPeriod, nowMs: number): QuotaWindow {
  const now = new Date(nowMs);
  const year = now.getUTCFullYear();
  const month = now.getUTCMonth();
  if (period === QuotaPeriod.Day) {
    const startMs = Date.UTC(year, month, now.getUTCDate());
    return {
      id: new Date(startMs).toISOString().slice(0, 10),
      startMs,
      endMs: startMs + 86_400_000,
    };
  }
  const startMs = Date.UTC(year, month, 1);
  return {
    id: new Date(startMs).toISOString().slice(0, 7),
    startMs,
    endMs: Date.UTC(year, month + 1, 1),
  };
}

/** The counter key of a tenant's quota in a window. */
export function quotaKey(tenant: string, window: QuotaWindow): string {
  return `${tenant}.${window.id}`;
}

/** A lease takes this fraction of what is left of the quota (at least one task). */
export const LEASE_SHARE_DIVISOR = 8;

/**
 * How many tasks to lease: an eighth of what is left, at least one, at least as many as requests
 * are waiting for it, never more than `maxLease` or than what is left.
 */
export function leaseSize(available: number, waiting: number, maxLease: number): number {
  if (available <= 0) return 0;
  const wanted = Math.max(1, Math.floor(available / LEASE_SHARE_DIVISOR), waiting);
  return Math.min(available, maxLease, wanted);
}

const COUNTER = /^\d{1,15}$/;

/** Reads a counter's value: the decimal count of tasks granted. */
export function parseCounter(value: Uint8Array): number {
  const text = new TextDecoder().decode(value);
  if (!COUNTER.test(text))
    throw new PayloadError(`quota counter '${text.slice(0, 32)}' is not a count`);
  return Number(text);
}

/** Rounds of lease-taking one request may wait through before it is told to retry. */
const MAX_REFILLS_PER_TAKE = 8;
/** Compare-and-set attempts per lease before giving way to the next round. */
const MAX_CAS_ATTEMPTS = 6;

/** One tenant's quota for one period, in this gateway. */
interface Ledger {
  /** `<tenant>/<period>`: where the gateway keeps it. */
  readonly id: string;
  /** The counter's key in the bucket. */
  readonly key: string;
  readonly period: QuotaPeriod;
  readonly window: QuotaWindow;
  readonly limit: number;
  /** Tasks leased to this gateway and not used yet. */
  leased: number;
  /** Tasks accepted while the bucket could not be reached, not yet added to the counter. */
  debt: number;
  /** Tasks taken from the outage allowance in this period. */
  outageUsed: number;
  /** The counter as this gateway last read or wrote it; undefined before. */
  counter: number | undefined;
  /** When the counter was last seen at the quota; until a recheck, requests are refused at once. */
  exhaustedAt: number | undefined;
  /** Requests waiting for the next lease: it is made big enough for them. */
  waiting: number;
  /** The lease being taken; resolves true when it found the quota used up. */
  refill: Promise<boolean> | undefined;
}

/** Opens the `vigil-quotas` bucket (which must exist: provisioning creates it). */
export async function openTenantQuota(
  nats: NatsConnection | JetStreamClient,
  options: TenantQuotaOptions,
): Promise<TenantQuota> {
  const o = { ...TENANT_QUOTA_DEFAULTS, now: Date.now, ...options };
  const kv = await new Kvm(nats).open(assetNames.quotaBucket, {
    timeout: o.timeoutMs,
    allow_direct: true,
  });
  // Fail at start-up, not on the first request, when provisioning has not created the bucket.
  await kv.status();
  return new TenantQuotaImpl(kv, o);
}

type ResolvedOptions = Required<Omit<TenantQuotaOptions, 'logger' | 'now'>> & {
  logger: Logger;
  now: () => number;
};

class TenantQuotaImpl implements TenantQuota {
  readonly #kv: KV;
  readonly #o: ResolvedOptions;
  /** Ledgers by `<tenant>/<period>`; a new window replaces the old one. */
  readonly #ledgers = new Map<string, Ledger>();
  /** Until when the bucket is treated as unreachable, epoch ms. */
  #unreachableUntil = 0;
  #closing: Promise<void> | undefined;

  constructor(kv: KV, options: ResolvedOptions) {
    this.#kv = kv;
    this.#o = options;
  }

  async take(tenant: string, limits: QuotaLimits): Promise<QuotaGrant> {
    if (this.#closing) throw new VigilError(ErrorCode.Unavailable, 'the gateway is stopping', true);
    const taken: { ledger: Ledger; fromAllowance: boolean }[] = [];
    try {
      for (const [period, limit] of periodsOf(limits)) {
        const ledger = this.#ledger(tenant, period, limit);
        taken.push({ ledger, fromAllowance: await this.#takeOne(ledger) });
      }
    } catch (err) {
      for (const unit of taken) this.#giveBack(unit.ledger, unit.fromAllowance);
      throw err;
    }
    let refunded = false;
    return {
      refund: () => {
        if (refunded) return;
        refunded = true;
        for (const unit of taken) this.#giveBack(unit.ledger, unit.fromAllowance);
      },
    };
  }

  status(tenant: string, limits: QuotaLimits): QuotaStatus[] {
    const now = this.#o.now();
    return periodsOf(limits).map(([period, limit]) => {
      const window = quotaWindow(period, now);
      const ledger = this.#ledgers.get(`${tenant}/${period}`);
      const current = ledger && ledger.window.id === window.id ? ledger : undefined;
      return {
        period,
        limit,
        remaining:
          current?.counter === undefined
            ? undefined
            : Math.max(0, limit - current.counter - current.debt) + current.leased,
        windowSeconds: (window.endMs - window.startMs) / 1000,
        resetSeconds: Math.max(1, Math.ceil((window.endMs - now) / 1000)),
      };
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const open = [...this.#ledgers.values()].filter((l) => l.leased > 0 || l.debt > 0);
      await Promise.all(open.map((ledger) => this.#settle(ledger)));
    })();
    return this.#closing;
  }

  /** The current ledger of a tenant's period, starting a fresh one when the period rolled over. */
  #ledger(tenant: string, period: QuotaPeriod, limit: number): Ledger {
    const window = quotaWindow(period, this.#o.now());
    const id = `${tenant}/${period}`;
    let ledger = this.#ledgers.get(id);
    // A lease of a past period is worth nothing; so is an outage debt that rolled over with it.
    if (!ledger || ledger.window.id !== window.id || ledger.limit !== limit) {
      ledger = {
        id,
        key: quotaKey(tenant, window),
        period,
        window,
        limit,
        leased: 0,
        debt: 0,
        outageUsed: 0,
        counter: undefined,
        exhaustedAt: undefined,
        waiting: 0,
        refill: undefined,
      };
      this.#ledgers.set(id, ledger);
    }
    return ledger;
  }

  /** Takes one task; true when it came from the outage allowance. */
  async #takeOne(ledger: Ledger): Promise<boolean> {
    for (let round = 0; round < MAX_REFILLS_PER_TAKE; round++) {
      if (ledger.leased > 0) {
        ledger.leased--;
        return false;
      }
      const now = this.#o.now();
      if (
        ledger.exhaustedAt !== undefined &&
        now - ledger.exhaustedAt < this.#o.exhaustedRecheckMs
      ) {
        throw this.#exceeded(ledger, now);
      }
      if (now < this.#unreachableUntil) return this.#takeFromAllowance(ledger);
      ledger.waiting++;
      try {
        ledger.refill ??= this.#refill(ledger).finally(() => {
          ledger.refill = undefined;
        });
        const exhausted = await ledger.refill;
        if (exhausted && ledger.leased === 0) throw this.#exceeded(ledger, this.#o.now());
      } finally {
        ledger.waiting--;
      }
    }
    // Only under heavy contention for the counter: the client retries soon.
    throw new VigilError(ErrorCode.Unavailable, 'quota leases are contended; retry', true, {
      retryAfterMs: 1000,
    });
  }

  #takeFromAllowance(ledger: Ledger): boolean {
    if (ledger.outageUsed >= this.#o.outageAllowance) {
      throw new VigilError(
        ErrorCode.Unavailable,
        'the quota store cannot be reached and this gateway has used its allowance for the tenant',
        true,
        { retryAfterMs: this.#o.retryMs },
      );
    }
    ledger.outageUsed++;
    ledger.debt++;
    return true;
  }

  #giveBack(ledger: Ledger, fromAllowance: boolean): void {
    if (this.#ledgers.get(ledger.id) !== ledger) return; // the period rolled over since
    if (fromAllowance) {
      ledger.debt--;
      ledger.outageUsed--;
    } else {
      ledger.leased++;
    }
  }

  /**
   * Takes the next lease with a compare-and-set on the counter, adding any outage debt; true when
   * the quota is used up. Never throws: a bucket that cannot be reached switches the gateway to
   * its outage allowance.
   */
  async #refill(ledger: Ledger): Promise<boolean> {
    let size = 0;
    try {
      const result = await this.#updateCounter(ledger.key, (counter) => {
        size = leaseSize(ledger.limit - counter - ledger.debt, ledger.waiting, this.#o.maxLease);
        return size === 0 && ledger.debt === 0 ? undefined : counter + ledger.debt + size;
      });
      if (!result) return false;
      if (result.written === undefined) {
        ledger.counter = result.read;
        ledger.exhaustedAt = this.#o.now();
        return true;
      }
      ledger.leased += size;
      ledger.debt = 0;
      ledger.counter = result.written;
      ledger.exhaustedAt = size === 0 ? this.#o.now() : undefined;
      return size === 0;
    } catch (err) {
      this.#markUnreachable(err);
      return false;
    }
  }

  /** Gives the unused lease back and records outage debt, at shutdown. Best effort, bounded. */
  async #settle(ledger: Ledger): Promise<void> {
    try {
      const result = await this.#updateCounter(ledger.key, (counter) =>
        Math.max(0, counter - ledger.leased + ledger.debt),
      );
      if (result) {
        ledger.leased = 0;
        ledger.debt = 0;
      }
    } catch (err) {
      this.#o.logger.warn({ key: ledger.key, err }, 'could not give an unused quota lease back');
    }
  }

  /**
   * Reads the counter at `key` and writes `next(counter)` with a compare-and-set, again on a
   * conflict. `next` returning `undefined` reads without writing. Resolves with what was read and
   * written, or `undefined` when contention outlasted the attempts; throws when the bucket fails.
   */
  async #updateCounter(
    key: string,
    next: (counter: number) => number | undefined,
  ): Promise<{ read: number; written?: number } | undefined> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const entry = await this.#kv.get(key);
      const counter = entry && entry.operation === 'PUT' ? parseCounter(entry.value) : 0;
      const value = next(counter);
      if (value === undefined) return { read: counter };
      try {
        if (entry) await this.#kv.update(key, String(value), entry.revision);
        else await this.#kv.create(key, String(value));
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
        await jitter(attempt);
        continue;
      }
      return { read: counter, written: value };
    }
    return undefined;
  }

  #markUnreachable(err: unknown): void {
    const now = this.#o.now();
    if (now >= this.#unreachableUntil) {
      this.#o.logger.warn(
        {
          err,
          allowance: this.#o.outageAllowance,
          retryMs: this.#o.retryMs,
        },
        'quota bucket unreachable; serving from the outage allowance',
      );
    }
    this.#unreachableUntil = now + this.#o.retryMs;
  }

  #exceeded(ledger: Ledger, now: number): VigilError {
    const per = ledger.period === QuotaPeriod.Day ? 'daily' : 'monthly';
    return new VigilError(
      ErrorCode.QuotaExceeded,
      `the ${per} quota of ${ledger.limit} tasks is used up; it resets at ${new Date(ledger.window.endMs).toISOString()}`,
      true,
      { retryAfterMs: ledger.window.endMs - now },
    );
  }
}

function periodsOf(limits: QuotaLimits): [QuotaPeriod, number][] {
  const periods: [QuotaPeriod, number][] = [];
  if (limits.perDay !== undefined) periods.push([QuotaPeriod.Day, limits.perDay]);
  if (limits.perMonth !== undefined) periods.push([QuotaPeriod.Month, limits.perMonth]);
  return periods;
}

/** A short random pause after a lost compare-and-set, growing with the attempt, so racing gateways spread out. */
function jitter(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * (attempt + 1)));
}

/**
 * A client whose submissions count against the tenant's quotas: one task is taken before
 * publishing and given back when nothing new was stored (a duplicate, or a publish refused
 * outright). A publish that timed out keeps its task: it may have been stored, and the quota must
 * not be exceeded.
 */
export function withTenantQuota(
  client: VigilClient,
  quota: TenantQuota,
  quotaOf: (tenant: string) => QuotaLimits | undefined,
): VigilClient {
  const submit = async (request: SubmitRequest): Promise<Submission> => {
    const limits = quotaOf(request.tenant);
    if (!limits) return client.submit(request);
    let grant: QuotaGrant;
    try {
      grant = await quota.take(request.tenant, limits);
    } catch (err) {
      // A retry of a task already accepted is no new task: it gets its task even past the quota.
      if (
        err instanceof VigilError &&
        err.code === ErrorCode.QuotaExceeded &&
        request.idempotencyKey !== undefined &&
        (await client.getTask(taskIdForIdempotencyKey(request.tenant, request.idempotencyKey)))
      ) {
        return client.submit(request);
      }
      throw err;
    }
    try {
      const submission = await client.submit(request);
      if (submission.duplicate) grant.refund();
      return submission;
    } catch (err) {
      if (err instanceof PublishRefusedError || isRefusedBeforePublish(err)) grant.refund();
      throw err;
    }
  };
  return {
    get clientId() {
      return client.clientId;
    },
    get waiting() {
      return client.waiting;
    },
    submit,
    waitForOutcome: (...args) => client.waitForOutcome(...args),
    getTask: (taskId) => client.getTask(taskId),
    events: (options) => client.events(options),
    close: () => client.close(),
  };
}

/** Errors a submission fails with before anything is published. */
function isRefusedBeforePublish(err: unknown): boolean {
  return (
    err instanceof VigilError &&
    (err.code === ErrorCode.PayloadTooLarge || err.code === ErrorCode.InvalidRequest)
  );
}
