/**
 * Reading the heartbeat contract: which actors are alive, in a node's own region and in the other
 * regions it works with, from each region's heartbeat bucket (written by actor hosts, see
 * `actorHeartbeatSchema`). The gateway routes by it: a model with no healthy actor in a region
 * (none beating, all draining or restarting, or every breaker open) is not sent there; with none
 * anywhere, synchronous calls are answered at once with 503 instead of queueing work that cannot
 * run now. Actor hosts read it to take over the queue of a region left without actors
 * (`nodes/actor-host/backlog-rescue.ts`).
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { JetStreamClient } from '@nats-io/jetstream';
import { assetNames, HEARTBEAT_EXPIRY_INTERVALS } from './definitions.js';
import {
  ActorState,
  actorHeartbeatSchema,
  BreakerState,
  decodeAs,
  type ActorHeartbeat,
} from './envelopes.js';

/**
 * Where a heartbeat reader reports the trouble it rides out (a broken watch, an unreadable
 * entry): a node passes its logger.
 */
export interface WarningSink {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** What the gateway knows of the actors of the regions it routes to. */
export interface ActorHealth {
  /**
   * True when at least one actor of `model` in `region` is fresh, running and not open-circuited.
   * For the home region a "no" from the watch is checked against the bucket first (a just-started
   * actor may not have reached the watch yet); other regions answer from the watch alone, so an
   * unreachable region reads as unhealthy rather than stalling the request.
   */
  hasHealthyActor(model: string, region?: string): Promise<boolean>;
  /** Current heartbeats of every watched region (fresh or not), for operators. */
  list(): ActorHeartbeat[];
  close(): void;
}

/** How long a broken heartbeat watch waits before it is opened again, ms. */
export const HEALTH_WATCH_RETRY_MS = 1_000;
/** Least time between two direct reads of one model's heartbeats, ms. */
export const HEALTH_REFRESH_MIN_MS = 1_000;

/**
 * True while a heartbeat is younger than {@link HEARTBEAT_EXPIRY_INTERVALS} of its own interval:
 * the same rule as the actors bucket's TTL, for readers that hold beats the bucket has expired.
 */
export function isHeartbeatFresh(beat: ActorHeartbeat, now = Date.now()): boolean {
  return now - beat.at < beat.intervalMs * HEARTBEAT_EXPIRY_INTERVALS;
}

/** True when the actor may be sent work: fresh, running and not open-circuited. */
export function isHeartbeatHealthy(beat: ActorHeartbeat, now = Date.now()): boolean {
  return (
    isHeartbeatFresh(beat, now) &&
    beat.state === ActorState.Running &&
    beat.breaker !== BreakerState.Open
  );
}

/** One region's heartbeats, kept current by a KV watch that reopens itself when it breaks. */
class RegionBeats {
  readonly beats = new Map<string, ActorHeartbeat>();
  #kv: KV | undefined;
  #stopWatch: (() => void) | undefined;
  #closed = false;

  constructor(
    readonly region: string,
    private readonly js: JetStreamClient,
    private readonly logger: WarningSink,
  ) {}

  /** Opens the watch, and keeps reopening it until closed. Resolves after the first attempt. */
  start(): Promise<void> {
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    void (async () => {
      while (!this.#closed) {
        await this.#watchUntilItEnds(firstAttempt);
        if (this.#closed) break;
        await new Promise((r) => setTimeout(r, HEALTH_WATCH_RETRY_MS).unref());
      }
    })();
    return attempted;
  }

  /**
   * One watch, from opening to its end (broken, or stopped by `close`); `opened` is called once
   * the attempt to open it is over, whether it opened or not. Resolving only at the end matters:
   * resolving once it was open made `start` open a new watch every second beside the old ones
   * (one more ordered consumer, subscription and timer per second, for good).
   */
  async #watchUntilItEnds(opened: () => void): Promise<void> {
    let watch: Awaited<ReturnType<KV['watch']>>;
    try {
      this.#kv ??= await new Kvm(this.js).open(assetNames.actorBucket(this.region));
      watch = await this.#kv.watch();
    } catch (err) {
      this.logger.warn({ region: this.region, err }, 'cannot watch heartbeats yet');
      return opened();
    }
    this.#stopWatch = () => watch.stop();
    if (this.#closed) watch.stop();
    opened();
    try {
      for await (const entry of watch) this.apply(entry.key, entry.operation, entry.value);
    } catch (err) {
      this.logger.warn({ region: this.region, err }, 'heartbeat watch broke');
    } finally {
      this.#stopWatch = undefined;
    }
  }

  get watching(): boolean {
    return this.#stopWatch !== undefined;
  }

  apply(key: string, operation: string, value: Uint8Array): void {
    if (operation !== 'PUT') {
      this.beats.delete(key);
      return;
    }
    try {
      this.beats.set(key, decodeAs(actorHeartbeatSchema, value, 'heartbeat'));
    } catch (err) {
      this.logger.warn({ region: this.region, key, err }, 'ignoring unreadable heartbeat');
    }
  }

  anyHealthy(model: string): boolean {
    const now = Date.now();
    for (const beat of this.beats.values())
      if (beat.model === model && isHeartbeatHealthy(beat, now)) return true;
    return false;
  }

  readonly #refreshedAt = new Map<string, number>();

  /**
   * Reads the model's beats straight from the bucket, at most once per
   * {@link HEALTH_REFRESH_MIN_MS}: while a model has no actor, every request asks, and a bucket
   * scan per request would load the region that is already in trouble.
   */
  async refresh(model: string): Promise<void> {
    const now = Date.now();
    if (now - (this.#refreshedAt.get(model) ?? 0) < HEALTH_REFRESH_MIN_MS) return;
    this.#refreshedAt.set(model, now);
    const kv = this.#kv ?? (await new Kvm(this.js).open(assetNames.actorBucket(this.region)));
    for await (const key of await kv.keys(`${model}.*`)) {
      const entry = await kv.get(key);
      if (entry) this.apply(entry.key, entry.operation, entry.value);
    }
  }

  close(): void {
    this.#closed = true;
    this.#stopWatch?.();
  }
}

/**
 * Watches the actors buckets of `home` (a node's own region; none for an actor host, which watches
 * only the regions it may rescue) and `others` through `js` (at an edge site: a client of the
 * hub's domain). Watches that cannot open yet (a region not provisioned, a cut link) keep trying
 * in the background.
 */
export async function watchActorHealth(
  js: JetStreamClient,
  home: string | undefined,
  others: readonly string[],
  logger: WarningSink,
): Promise<ActorHealth> {
  const regions = new Map<string, RegionBeats>();
  for (const region of home === undefined ? others : [home, ...others]) {
    if (!regions.has(region)) regions.set(region, new RegionBeats(region, js, logger));
  }
  await Promise.all([...regions.values()].map((r) => r.start()));
  return {
    async hasHealthyActor(model, region = home) {
      const beats = region === undefined ? undefined : regions.get(region);
      if (!beats) return false;
      if (beats.anyHealthy(model)) return true;
      if (region !== home) return false;
      try {
        await beats.refresh(model);
      } catch (err) {
        logger.warn({ region, err }, 'could not read heartbeats');
        return true; // do not refuse work because monitoring is unreadable
      }
      return beats.anyHealthy(model);
    },
    list: () => [...regions.values()].flatMap((r) => [...r.beats.values()]),
    close: () => {
      for (const r of regions.values()) r.close();
    },
  };
}
