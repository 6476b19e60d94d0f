/**
 * Follows the region's actor heartbeats for chaos tests: the latest beat of every actor, with the
 * local time each was seen, so a test can wait for a new pid after a kill, for a stale beat after
 * a SIGSTOP, or for a breaker to open, and time it.
 */
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  isHeartbeatFresh,
  type ActorHeartbeat,
} from '../../protocol/index.js';

/** A beat and when this process saw it. */
export interface SeenBeat {
  beat: ActorHeartbeat;
  /** The same actor's beat before this one, if any: a change is `previous` -> `beat`. */
  previous: ActorHeartbeat | undefined;
  seenAt: number;
}

/** A running heartbeat watch. */
export interface HeartbeatWatch {
  /** Latest beat per actor id. */
  latest(): SeenBeat[];
  /** Every beat seen, oldest first (bounded: the oldest are dropped past 50 000). */
  readonly history: readonly SeenBeat[];
  /**
   * Resolves with the first beat (latest ones first, then each new one) that satisfies `test`;
   * rejects after `timeoutMs`.
   */
  waitFor(what: string, test: (seen: SeenBeat) => boolean, timeoutMs?: number): Promise<SeenBeat>;
  stop(): void;
}

const HISTORY_LIMIT = 50_000;

/** True when the beat is older than the gateway's freshness rule allows (three intervals). */
export function isStale(beat: ActorHeartbeat, now = Date.now()): boolean {
  return !isHeartbeatFresh(beat, now);
}

/**
 * Watches `vigil-actors-<region>`: every beat as it is written (a core subscription to the
 * bucket's subjects), after the beats already there. Not a KV watch: the bucket keeps one beat
 * per actor, and a watch that lags behind a quick change (open, half-open, closed) skips the
 * beats written meanwhile, which a test waiting for one of them would then never see.
 */
export async function watchHeartbeats(nc: NatsConnection, region: string): Promise<HeartbeatWatch> {
  const bucket = assetNames.actorBucket(region);
  const kv = await new Kvm(nc).open(bucket);
  const latest = new Map<string, SeenBeat>();
  const history: SeenBeat[] = [];
  const waiters = new Set<(seen: SeenBeat) => void>();
  const see = (data: Uint8Array): void => {
    let beat: ActorHeartbeat;
    try {
      beat = decodeAs(actorHeartbeatSchema, data, 'heartbeat');
    } catch {
      return; // a delete or purge marker, or junk
    }
    const before = latest.get(beat.actorId)?.beat;
    // The beats already there may arrive after a newer one: an older beat changes nothing.
    if (before && before.at > beat.at) return;
    const seen = { beat, previous: before, seenAt: Date.now() };
    latest.set(beat.actorId, seen);
    history.push(seen);
    if (history.length > HISTORY_LIMIT) history.shift();
    for (const waiter of [...waiters]) waiter(seen);
  };
  const sub = nc.subscribe(`$KV.${bucket}.>`, {
    callback: (err, msg) => {
      if (!err) see(msg.data);
    },
  });
  await nc.flush();
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation === 'PUT') see(entry.value);
  }
  const watch = { stop: () => sub.unsubscribe() };

  return {
    latest: () => [...latest.values()],
    history,
    waitFor(what, test, timeoutMs = 15_000) {
      const hit = [...latest.values()].find(test);
      if (hit) return Promise.resolve(hit);
      return new Promise<SeenBeat>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        const check = (seen: SeenBeat): void => {
          if (!test(seen)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(seen);
        };
        waiters.add(check);
      });
    },
    stop() {
      watch.stop();
      waiters.clear();
    },
  };
}
