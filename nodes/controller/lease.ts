/**
 * Leader election through one KV key, `leader` in the `vigil-control` bucket, holding
 * `{controllerId, until, renewedAt}`. The leader renews it with compare-and-set every third of
 * the lease; a standby takes it over, with compare-and-set on the revision it saw, once that
 * revision has stood unchanged for a whole lease by the standby's own clock.
 *
 * Expiry is explicit and judged by each controller's monotonic clock, not by a bucket TTL or by
 * comparing wall clocks across machines: the bucket also holds route overrides and rollout holds
 * that must not expire, and `until` in the record is for operators only. Fencing follows from the
 * order of events: the leader starts counting its term when it *sends* a renewal, a standby starts
 * counting only when it *sees* the renewed revision, which is later; the leader stops acting one
 * renewal interval before its term ends, and at once when a renewal fails. So a leader has
 * stopped before any standby may start, as long as the clocks run at about the same rate.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { ConfigError } from '../common/index.js';

/** The key of the lease in the control bucket. */
export const LEADER_KEY = 'leader';

/** Shortest lease accepted, ms: below it a renewal's round trip is a large part of the term. */
export const MIN_LEASE_MS = 300;

/** How often the leader renews: a third of the lease, so one lost renewal is survivable. */
export function renewIntervalMs(leaseMs: number): number {
  return Math.floor(leaseMs / 3);
}

/** How often a standby looks at the lease: a tenth, so it takes over soon after expiry. */
export function standbyPollMs(leaseMs: number): number {
  return Math.max(10, Math.floor(leaseMs / 10));
}

/**
 * Until when (monotonic ms) a leader whose renewal was sent at `renewSentAt` may act: the lease
 * less one renewal interval, a margin for the renewal that follows being late.
 */
export function leaderActsUntil(renewSentAt: number, leaseMs: number): number {
  return renewSentAt + leaseMs - renewIntervalMs(leaseMs);
}

/** True when a lease revision first seen at `seenAt` (monotonic ms) has expired by `now`. */
export function leaseExpired(seenAt: number, now: number, leaseMs: number): boolean {
  return now - seenAt >= leaseMs;
}

/** Checks a lease length from configuration. */
export function checkLeaseMs(leaseMs: number, name: string): number {
  if (!Number.isInteger(leaseMs) || leaseMs < MIN_LEASE_MS) {
    throw new ConfigError(`${name}=${leaseMs} must be an integer of at least ${MIN_LEASE_MS} ms`);
  }
  return leaseMs;
}

/** The lease record, JSON. */
export interface LeaseRecord {
  controllerId: string;
  /** Wall-clock end of the term as the holder sees it, epoch ms (for operators). */
  until: number;
  renewedAt: number;
}

/** Options of {@link startLeaderLease}. */
export interface LeaderLeaseOptions {
  controllerId: string;
  /** Length of a term, ms. */
  leaseMs: number;
  /** Called on every change of leadership (after it happened). */
  onChange(leader: boolean): void;
  logger: Logger;
  /** Monotonic clock, ms. Default `performance.now`. */
  now?: () => number;
}

/** This controller's view of the lease. */
export interface LeaderLease {
  /** True while this controller holds a lease it may act under: check before every action. */
  isLeader(): boolean;
  /** Stops competing; a leader gives the lease up so a standby need not wait for it to expire. */
  release(): Promise<void>;
}

/** Starts competing for the lease in `kv`. */
export function startLeaderLease(kv: KV, options: LeaderLeaseOptions): LeaderLease {
  const lease = new LeaderLeaseImpl(kv, options);
  lease.start();
  return lease;
}

/** One step per renewal interval while leading, per standby poll while not. */
class LeaderLeaseImpl implements LeaderLease {
  readonly #kv: KV;
  readonly #options: LeaderLeaseOptions;
  readonly #now: () => number;
  /** The lease's revision as this controller last wrote it, while it leads. */
  #heldRevision: number | undefined;
  /** Until when (monotonic ms) the leader may act. */
  #actsUntil = 0;
  /** The revision a standby saw, and when it first saw it. */
  #seen: { revision: number; at: number } | undefined;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #stepping: Promise<void> = Promise.resolve();

  constructor(kv: KV, options: LeaderLeaseOptions) {
    this.#kv = kv;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  isLeader(): boolean {
    return this.#heldRevision !== undefined && this.#now() < this.#actsUntil;
  }

  async release(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#stepping;
    const revision = this.#heldRevision;
    this.#stepDown('stopping');
    if (revision !== undefined) {
      await this.#kv.delete(LEADER_KEY, { previousSeq: revision }).catch((err: unknown) => {
        this.#options.logger.warn(
          { err },
          'lease not released; a standby takes over when it expires',
        );
      });
    }
  }

  /** Takes the first step now and schedules the next after each. */
  start(): void {
    if (this.#stopped) return;
    const { leaseMs, logger } = this.#options;
    this.#stepping = this.#step()
      .catch((err: unknown) => {
        // Lost a race for the lease, or NATS is unreachable: stay a standby and look again.
        logger.debug({ err }, 'lease not taken');
      })
      .finally(() => {
        if (this.#stopped) return;
        const delay =
          this.#heldRevision === undefined ? standbyPollMs(leaseMs) : renewIntervalMs(leaseMs);
        this.#timer = setTimeout(() => this.start(), delay);
      });
  }

  #step(): Promise<void> {
    return this.#heldRevision === undefined ? this.#compete() : this.#renew(this.#heldRevision);
  }

  /** The leader's step: renew by compare-and-set, or step down at once if that fails. */
  async #renew(heldRevision: number): Promise<void> {
    const sentAt = this.#now();
    try {
      this.#become(await this.#kv.update(LEADER_KEY, this.#record(), heldRevision), sentAt);
    } catch (err) {
      this.#stepDown('lease renewal failed', err);
    }
  }

  /** A standby's step: take a free lease, or one whose revision stood for a whole lease. */
  async #compete(): Promise<void> {
    const kv = this.#kv;
    const entry = await kv.get(LEADER_KEY);
    const sentAt = this.#now();
    if (!entry) {
      this.#become(await kv.create(LEADER_KEY, this.#record()), sentAt);
    } else if (entry.operation !== 'PUT') {
      // Released by its last holder: free at once.
      this.#become(await kv.update(LEADER_KEY, this.#record(), entry.revision), sentAt);
    } else if (this.#seen?.revision !== entry.revision) {
      this.#seen = { revision: entry.revision, at: sentAt };
    } else if (leaseExpired(this.#seen.at, sentAt, this.#options.leaseMs)) {
      // The record is not read: a malformed one must not keep the lease from being taken over.
      this.#options.logger.warn({ revision: entry.revision }, 'lease expired; taking over');
      this.#become(await kv.update(LEADER_KEY, this.#record(), entry.revision), sentAt);
    }
  }

  /** Holds `revision`, written by a request sent at `sentAt`: the term counts from then. */
  #become(revision: number, sentAt: number): void {
    const was = this.#heldRevision !== undefined;
    this.#heldRevision = revision;
    this.#actsUntil = leaderActsUntil(sentAt, this.#options.leaseMs);
    if (!was) {
      this.#options.logger.info({ revision }, 'leader: lease acquired');
      this.#options.onChange(true);
    }
  }

  #stepDown(why: string, err?: unknown): void {
    if (this.#heldRevision === undefined) return;
    this.#heldRevision = undefined;
    this.#actsUntil = 0;
    this.#seen = undefined;
    this.#options.logger.warn({ why, err }, 'stepping down');
    this.#options.onChange(false);
  }

  #record(): Uint8Array {
    const { controllerId, leaseMs } = this.#options;
    return new TextEncoder().encode(
      JSON.stringify({
        controllerId,
        until: Date.now() + leaseMs,
        renewedAt: Date.now(),
      } satisfies LeaseRecord),
    );
  }
}
