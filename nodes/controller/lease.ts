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
import { ConfigError } from '../common/env.js';

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
  const now = options.now ?? (() => performance.now());
  const { controllerId, leaseMs, logger } = options;
  let heldRevision: number | undefined;
  let actsUntil = 0;
  let seen: { revision: number; at: number } | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let stepping: Promise<void> = Promise.resolve();

  const record = (): Uint8Array =>
    new TextEncoder().encode(
      JSON.stringify({
        controllerId,
        until: Date.now() + leaseMs,
        renewedAt: Date.now(),
      } satisfies LeaseRecord),
    );
  const isLeader = (): boolean => heldRevision !== undefined && now() < actsUntil;
  const become = (revision: number, sentAt: number): void => {
    const was = heldRevision !== undefined;
    heldRevision = revision;
    actsUntil = leaderActsUntil(sentAt, leaseMs);
    if (!was) {
      logger.info({ revision }, 'leader: lease acquired');
      options.onChange(true);
    }
  };
  const stepDown = (why: string, err?: unknown): void => {
    if (heldRevision === undefined) return;
    heldRevision = undefined;
    actsUntil = 0;
    seen = undefined;
    logger.warn({ why, err }, 'stepping down');
    options.onChange(false);
  };

  const step = async (): Promise<void> => {
    if (heldRevision !== undefined) {
      const sentAt = now();
      try {
        become(await kv.update(LEADER_KEY, record(), heldRevision), sentAt);
      } catch (err) {
        stepDown('lease renewal failed', err);
      }
      return;
    }
    const entry = await kv.get(LEADER_KEY);
    const sentAt = now();
    if (!entry) {
      become(await kv.create(LEADER_KEY, record()), sentAt);
    } else if (entry.operation !== 'PUT') {
      // Released by its last holder: free at once.
      become(await kv.update(LEADER_KEY, record(), entry.revision), sentAt);
    } else if (seen?.revision !== entry.revision) {
      seen = { revision: entry.revision, at: sentAt };
    } else if (leaseExpired(seen.at, sentAt, leaseMs)) {
      // The record is not read: a malformed one must not keep the lease from being taken over.
      logger.warn({ revision: entry.revision }, 'lease expired; taking over');
      become(await kv.update(LEADER_KEY, record(), entry.revision), sentAt);
    }
  };
  const loop = (): void => {
    if (stopped) return;
    stepping = step()
      .catch((err: unknown) => {
        // Lost a race for the lease, or NATS is unreachable: stay a standby and look again.
        logger.debug({ err }, 'lease not taken');
      })
      .finally(() => {
        if (stopped) return;
        const delay =
          heldRevision === undefined ? standbyPollMs(leaseMs) : renewIntervalMs(leaseMs);
        timer = setTimeout(loop, delay);
      });
  };
  loop();

  return {
    isLeader,
    async release() {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      await stepping;
      const revision = heldRevision;
      stepDown('stopping');
      if (revision !== undefined) {
        await kv.delete(LEADER_KEY, { previousSeq: revision }).catch((err: unknown) => {
          logger.warn({ err }, 'lease not released; a standby takes over when it expires');
        });
      }
    },
  };
}
