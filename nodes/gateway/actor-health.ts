/**
 * The gateway's view of which actors are alive, from the region's heartbeat bucket. A model with
 * no healthy actor (none beating, all draining or restarting, or every breaker open) is answered
 * at once with 503 instead of queueing work that cannot run, unless the client asked for async.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../actors/log.js';
import {
  ActorState,
  actorHeartbeatSchema,
  assetNames,
  BreakerState,
  decodeAs,
  HEARTBEAT_EXPIRY_INTERVALS,
  type ActorHeartbeat,
} from '../../protocol/index.js';

/** What the gateway knows of the actors of its region. */
export interface ActorHealth {
  /** True when at least one actor of `model` is fresh, running and not open-circuited. */
  hasHealthyActor(model: string): Promise<boolean>;
  /** Current heartbeats (fresh or not), for operators. */
  list(): ActorHeartbeat[];
  close(): void;
}

function isHealthy(beat: ActorHeartbeat, now: number): boolean {
  return (
    now - beat.at < beat.intervalMs * HEARTBEAT_EXPIRY_INTERVALS &&
    beat.state === ActorState.Running &&
    beat.breaker !== BreakerState.Open
  );
}

/** Watches the region's actors bucket. */
export async function watchActorHealth(
  nc: NatsConnection,
  region: string,
  logger: Logger,
): Promise<ActorHealth> {
  const kv: KV = await new Kvm(nc).open(assetNames.actorBucket(region));
  const beats = new Map<string, ActorHeartbeat>();
  const apply = (key: string, operation: string, value: Uint8Array): void => {
    if (operation !== 'PUT') {
      beats.delete(key);
      return;
    }
    try {
      beats.set(key, decodeAs(actorHeartbeatSchema, value, 'heartbeat'));
    } catch (err) {
      logger.warn('ignoring unreadable heartbeat', { key, err });
    }
  };
  const watch = await kv.watch();
  void (async () => {
    for await (const entry of watch) apply(entry.key, entry.operation, entry.value);
  })().catch((err: unknown) => logger.error('heartbeat watch ended', { err }));

  const anyHealthy = (model: string): boolean => {
    const now = Date.now();
    for (const beat of beats.values())
      if (beat.model === model && isHealthy(beat, now)) return true;
    return false;
  };
  return {
    async hasHealthyActor(model) {
      if (anyHealthy(model)) return true;
      // The watch may lag a just-started actor by a few ms: before refusing, read the bucket.
      try {
        for await (const key of await kv.keys(`${model}.*`)) {
          const entry = await kv.get(key);
          if (entry) apply(entry.key, entry.operation, entry.value);
        }
      } catch (err) {
        logger.warn('could not read heartbeats', { err });
        return true; // do not refuse work because monitoring is unreadable
      }
      return anyHealthy(model);
    },
    list: () => [...beats.values()],
    close: () => watch.stop(),
  };
}
