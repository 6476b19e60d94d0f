/**
 * The floor baseline's JetStream assets: one file-backed work-queue stream and one durable pull
 * consumer, with nothing of Vigil's (no dedup window, no task bucket, no dead letters). Its names
 * are its own so that it can share a nats-server with Vigil's region without touching it.
 *
 * The `floor-kv` variant adds the two storage habits of Vigil's design and nothing else: a dedup
 * window as long as Vigil's, and a KV bucket like Vigil's task bucket where the worker stores each
 * outcome before it replies. The gap from floor to floor-kv is what the design costs; the gap from
 * floor-kv to Vigil is what its implementation costs.
 */
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
} from '@nats-io/jetstream';

/** Names shared by the floor gateway, the floor worker and the bench. */
export const FLOOR = {
  stream: 'FLOOR',
  /** The stream's subjects; a request goes to `floor.req.<gateway>.<id>`. */
  requestSubjects: 'floor.req.>',
  consumer: 'floor-worker',
  /** The `floor-kv` variant's outcome bucket. */
  outcomeBucket: 'floor-outcomes',
  /** Header that carries the core NATS subject the worker answers on. */
  replyHeader: 'Floor-Reply',
  /** Header the worker sets on a reply when the request could not be read. */
  errorHeader: 'Floor-Error',
  /** The request subject of request `id` from gateway `gatewayId`. */
  request: (gatewayId: string, id: string): string => `floor.req.${gatewayId}.${id}`,
  /** Every reply to gateway `gatewayId` (its one wildcard subscription). */
  repliesOf: (gatewayId: string): string => `floor.rep.${gatewayId}.>`,
  /** The reply subject of request `id` from gateway `gatewayId`. */
  reply: (gatewayId: string, id: string): string => `floor.rep.${gatewayId}.${id}`,
} as const;

/** Unacknowledged deliveries the floor consumer allows: Vigil's model consumer default. */
export const FLOOR_MAX_ACK_PENDING = 1024;

/** The `floor-kv` variant's dedup window and outcome retention: Vigil's defaults. */
export const FLOOR_KV_DEDUP_WINDOW_MS = 15 * 60_000;
/** How long the `floor-kv` variant keeps outcomes, ms: Vigil's task retention default. */
export const FLOOR_KV_OUTCOME_TTL_MS = 24 * 3600_000;

const NS_PER_MS = 1_000_000;

/** Which floor to provision. */
export interface FloorVariant {
  /** Also a Vigil-length dedup window and the outcome bucket (`floor-kv`). */
  storeOutcomes: boolean;
}

async function deleteIfPresent(what: () => Promise<unknown>): Promise<void> {
  try {
    await what();
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound))
      throw err;
  }
}

/** Deletes the floor's assets if they exist and creates them afresh. */
export async function provisionFloor(
  nc: NatsConnection,
  jsm: JetStreamManager,
  variant: FloorVariant,
): Promise<void> {
  await deleteIfPresent(() => jsm.streams.delete(FLOOR.stream));
  // A KV bucket is the stream KV_<bucket>.
  await deleteIfPresent(() => jsm.streams.delete(`KV_${FLOOR.outcomeBucket}`));
  await jsm.streams.add({
    name: FLOOR.stream,
    subjects: [FLOOR.requestSubjects],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: 1,
    ...(variant.storeOutcomes ? { duplicate_window: FLOOR_KV_DEDUP_WINDOW_MS * NS_PER_MS } : {}),
  });
  if (variant.storeOutcomes) {
    await new Kvm(nc).create(FLOOR.outcomeBucket, {
      history: 1,
      ttl: FLOOR_KV_OUTCOME_TTL_MS,
      storage: StorageType.File,
      replicas: 1,
    });
  }
  await jsm.consumers.add(FLOOR.stream, {
    durable_name: FLOOR.consumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: 30_000 * NS_PER_MS,
    max_ack_pending: FLOOR_MAX_ACK_PENDING,
  });
}
