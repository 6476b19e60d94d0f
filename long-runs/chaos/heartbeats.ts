/**
 * The latest heartbeat of every actor, with the local time each was seen, so the killer can pick
 * a live executor by its pid and time how long its supervisor took to run a new one. Hosts write
 * a beat on every change (a restart among them), so a new pid shows as soon as it runs.
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
  seenAt: number;
}

/** A running heartbeat watch. */
export interface HeartbeatWatch {
  /** Latest beat per actor id. */
  latest(): SeenBeat[];
  /** Resolves with the first beat, current or new, that passes `test`; undefined at `timeoutMs`. */
  waitFor(test: (seen: SeenBeat) => boolean, timeoutMs: number): Promise<SeenBeat | undefined>;
  /** Every pid ever seen running a model, so none is left behind at the end. */
  readonly pids: ReadonlySet<number>;
  stop(): void;
}

/** True when the beat is fresh by the gateway's rule. */
export const isFresh = (beat: ActorHeartbeat): boolean => isHeartbeatFresh(beat);

/** Watches `vigil-actors-<region>`. */
export async function watchHeartbeats(nc: NatsConnection, region: string): Promise<HeartbeatWatch> {
  const kv = await new Kvm(nc).open(assetNames.actorBucket(region));
  const latest = new Map<string, SeenBeat>();
  const pids = new Set<number>();
  const waiters = new Set<(seen: SeenBeat) => void>();
  const watch = await kv.watch({ ignoreDeletes: true });
  void (async () => {
    for await (const entry of watch) {
      if (entry.operation !== 'PUT') continue;
      let beat: ActorHeartbeat;
      try {
        beat = decodeAs(actorHeartbeatSchema, entry.value, 'heartbeat');
      } catch {
        continue;
      }
      const seen = { beat, seenAt: Date.now() };
      latest.set(beat.actorId, seen);
      if (beat.pid > 0) pids.add(beat.pid);
      for (const waiter of [...waiters]) waiter(seen);
    }
  })().catch(() => undefined);
  return {
    latest: () => [...latest.values()],
    pids,
    waitFor(test, timeoutMs) {
      const hit = [...latest.values()].find(test);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => {
        const done = (seen: SeenBeat | undefined) => {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(seen);
        };
        const timer = setTimeout(() => done(undefined), timeoutMs);
        const check = (seen: SeenBeat): void => {
          if (test(seen)) done(seen);
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
