/**
 * The JetStream assets Vigil needs in a region, as data, and an idempotent `ensure` that creates
 * them or brings their limits up to date. Run by the launcher or an operator with admin rights;
 * gateways and actor hosts only bind to what exists.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type Placement,
  type StreamConfig,
  type StreamSource,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { subjects } from './subjects.js';

const NS_PER_MS = 1_000_000;

/** Asset names, derived from the region so that regions never collide in a supercluster. */
export const assetNames = {
  requestStream: (region: string): string => `VIGIL_REQ_${region.toUpperCase().replace(/-/g, '_')}`,
  deadLetterStream: (region: string): string =>
    `VIGIL_DLQ_${region.toUpperCase().replace(/-/g, '_')}`,
  /** Task events and tokens, kept briefly so that a stream can be resumed and read again. */
  eventStream: (region: string): string => `VIGIL_EVT_${region.toUpperCase().replace(/-/g, '_')}`,
  taskBucket: (region: string): string => `vigil-tasks-${region}`,
  actorBucket: (region: string): string => `vigil-actors-${region}`,
  /**
   * OpenAI requests whose task outlived the sync wait, by fingerprint: a client's retry without
   * a key finds its task there instead of starting another. Shared by every gateway.
   */
  clientRetryBucket: 'vigil-client-retries',
  /** Requests to stop tasks, watched by the region's actor hosts. */
  cancelBucket: (region: string): string => `vigil-cancels-${region}`,
  /** The model catalog is shared by every region. */
  modelBucket: 'vigil-models',
  /** Tenant task quotas (`<tenant>.<period>` counters), shared by every gateway of every region. */
  quotaBucket: 'vigil-quotas',
  modelConsumer: (model: string): string => `actor-${model}`,
  /** An edge site's own store-and-forward stream, in the site's JetStream domain. */
  edgeStream: (site: string): string => `VIGIL_EDGE_${site.toUpperCase().replace(/-/g, '_')}`,
  /** The controller's lease, firing alerts, route overrides and rollout holds; every region's. */
  controlBucket: 'vigil-control',
  /** The controller's record of every recovery action it ran and how it went. */
  controlLogStream: 'VIGIL_CONTROL_LOG',
} as const;

/** How long recovery actions stay on record, ms: long enough for a post-mortem. */
const CONTROL_LOG_RETENTION_MS = 30 * 24 * 3600_000;

/**
 * The JetStream domain every hub region shares (a supercluster is one domain). Edge sites run
 * their own domain, `edge-<site>`, so that they keep accepting work while their leaf link is cut.
 */
export const HUB_DOMAIN = 'vigil';

/** The JetStream domain of an edge site. */
export function edgeDomain(site: string): string {
  return `edge-${site}`;
}

/** Limits and durability of one region's assets. */
export interface RegionAssetsOptions {
  region: string;
  /** JetStream replicas for streams and buckets: 1 locally, 3 in production. Default 1. */
  replicas?: number;
  /**
   * The NATS cluster that holds the region's streams and buckets. In a supercluster every region
   * is a cluster named after it, and its state must live there, not wherever the request to
   * create it happened to land. Unset: wherever JetStream places it (a single server).
   */
  placementCluster?: string;
  /** Most requests waiting in the region's queue; past it publishes are refused. Default 100 000. */
  maxQueuedRequests?: number;
  /** Most bytes waiting in the region's queue. Default 1 GiB. */
  maxQueuedBytes?: number;
  /** Largest request message, bytes. Default 2 MiB. */
  maxRequestBytes?: number;
  /**
   * How long a repeated idempotency key is recognised by JetStream itself, ms. Must cover the
   * client retry horizon. Default 15 minutes.
   */
  duplicateWindowMs?: number;
  /** How long finished task records (and results) are kept, ms. Default 24 hours. */
  taskRetentionMs?: number;
  /** How long dead letters are kept, ms. Default 14 days. */
  deadLetterRetentionMs?: number;
  /**
   * How long a task's events and tokens are kept, ms: past its deadline for those an actor
   * writes (each carries a per-message TTL to that point), from publication for any other.
   * Bounds how late a client may resume or re-read a stream. Default 15 minutes.
   */
  eventRetentionMs?: number;
  /** Most bytes the event stream holds; past it the oldest events go. Default 1 GiB. */
  maxEventBytes?: number;
  /**
   * Most readers of the region's events at once (one consumer each: every open stream at every
   * gateway). nats-server caps a stream that sets none at 1,000. Default 10 000.
   */
  maxEventReaders?: number;
  /**
   * Actor heartbeat interval, ms. Default 10 s. Heartbeats expire after three intervals (the
   * actors bucket's TTL), so changing it means re-running provisioning.
   */
  heartbeatIntervalMs?: number;
}

/** Defaults of {@link RegionAssetsOptions}. */
export const REGION_ASSET_DEFAULTS = {
  replicas: 1,
  maxQueuedRequests: 100_000,
  maxQueuedBytes: 1024 * 1024 * 1024,
  maxRequestBytes: 2 * 1024 * 1024,
  duplicateWindowMs: 15 * 60_000,
  taskRetentionMs: 24 * 3600_000,
  deadLetterRetentionMs: 14 * 24 * 3600_000,
  eventRetentionMs: 15 * 60_000,
  maxEventBytes: 1024 * 1024 * 1024,
  maxEventReaders: 10_000,
  heartbeatIntervalMs: 10_000,
} as const;

/**
 * Largest event message, bytes: an actor splits a longer run of tokens over several events, so
 * one event is cheap to hold in a reader's bounded buffer.
 */
export const MAX_EVENT_BYTES = 64 * 1024;

/** How long the event stream recognises a repeated event publish (an actor's retry), ms. */
const EVENT_DUPLICATE_WINDOW_MS = 2 * 60_000;

/** Heartbeats expire after this many missed intervals. */
export const HEARTBEAT_EXPIRY_INTERVALS = 3;

/** The request stream: a bounded work queue that refuses, never drops, when full. */
export function requestStreamConfig(
  options: RegionAssetsOptions,
): Partial<StreamConfig> & { name: string } {
  const o = { ...REGION_ASSET_DEFAULTS, ...options };
  return {
    name: assetNames.requestStream(o.region),
    subjects: [subjects.requestsOfRegion(o.region)],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_msgs: o.maxQueuedRequests,
    max_bytes: o.maxQueuedBytes,
    max_msg_size: o.maxRequestBytes,
    duplicate_window: o.duplicateWindowMs * NS_PER_MS,
    num_replicas: o.replicas,
    ...placement(o),
    // Direct get lets any gateway answer "is this task still queued?" without a consumer.
    allow_direct: true,
  };
}

/** The dead-letter stream: kept by age, for operators to inspect and replay. */
export function deadLetterStreamConfig(
  options: RegionAssetsOptions,
): Partial<StreamConfig> & { name: string } {
  const o = { ...REGION_ASSET_DEFAULTS, ...options };
  return {
    name: assetNames.deadLetterStream(o.region),
    subjects: [subjects.deadLettersOfRegion(o.region)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: o.deadLetterRetentionMs * NS_PER_MS,
    num_replicas: o.replicas,
    ...placement(o),
    allow_direct: true,
  };
}

/**
 * The event stream: every task event of the region (lifecycle, progress, tokens), kept by age.
 * Messages may carry their own TTL (`Nats-TTL`, nats-server 2.11+): an actor keeps a task's
 * events until its deadline plus the retention, so a long task's first tokens outlive the
 * stream's `max_age`. Full, it drops the oldest: events are a view of the task, whose record
 * stays the truth.
 */
export function eventStreamConfig(
  options: RegionAssetsOptions,
): Partial<StreamConfig> & { name: string } {
  const o = { ...REGION_ASSET_DEFAULTS, ...options };
  return {
    name: assetNames.eventStream(o.region),
    subjects: [subjects.eventsOfRegion(o.region)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: o.eventRetentionMs * NS_PER_MS,
    max_bytes: o.maxEventBytes,
    max_consumers: o.maxEventReaders,
    max_msg_size: MAX_EVENT_BYTES,
    allow_msg_ttl: true,
    duplicate_window: Math.min(EVENT_DUPLICATE_WINDOW_MS, o.eventRetentionMs) * NS_PER_MS,
    num_replicas: o.replicas,
    ...placement(o),
    allow_direct: true,
  };
}

/**
 * The `Nats-TTL` of an event of a task due at `deadline`: kept until the deadline plus the
 * retention, so a stream can be resumed and read again for as long after its task ends as
 * after a short one's. Whole seconds (the server's unit), at least one.
 */
export function eventTtl(deadline: number, retentionMs: number, now: number = Date.now()): string {
  return `${Math.max(1, Math.ceil((Math.max(0, deadline - now) + retentionMs) / 1000))}s`;
}

/** The event retention a region was provisioned with: its event stream's `max_age`, ms. */
export async function eventRetentionOf(jsm: JetStreamManager, region: string): Promise<number> {
  const info = await jsm.streams.info(assetNames.eventStream(region));
  return info.config.max_age / NS_PER_MS;
}

function placement(o: RegionAssetsOptions): { placement?: Placement } {
  return o.placementCluster ? { placement: { cluster: o.placementCluster, tags: [] } } : {};
}

/** Delivery settings of one model's consumer. */
export interface ModelConsumerOptions {
  region: string;
  model: string;
  /** Attempts before a task is dead-lettered. Default 5. */
  maxAttempts?: number;
  /** How long an attempt may go without an ack or in-progress signal before redelivery, ms. Default 30 s. */
  ackWaitMs?: number;
  /** Unacknowledged deliveries allowed across all actors of the model. Default 1024. */
  maxAckPending?: number;
}

/** Defaults of {@link ModelConsumerOptions}. */
export const MODEL_CONSUMER_DEFAULTS = {
  maxAttempts: 5,
  ackWaitMs: 30_000,
  maxAckPending: 1024,
} as const;

/**
 * A model's durable pull consumer. One delivery beyond `maxAttempts` is allowed so that a task
 * whose every attempt crashed its actor still reaches an actor once more, to be dead-lettered
 * rather than left in the queue forever.
 */
export function modelConsumerConfig(
  options: ModelConsumerOptions,
): Partial<ConsumerConfig> & { durable_name: string } {
  const o = { ...MODEL_CONSUMER_DEFAULTS, ...options };
  return {
    durable_name: assetNames.modelConsumer(o.model),
    filter_subject: subjects.requestsOfModel(o.region, o.model),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: o.ackWaitMs * NS_PER_MS,
    max_deliver: o.maxAttempts + 1,
    max_ack_pending: o.maxAckPending,
  };
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamNotFound ||
      err.code === JetStreamApiCodes.ConsumerNotFound)
  );
}

/** Creates a stream, or updates the limits of an existing one to `config`. */
export async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
): Promise<void> {
  try {
    const info = await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, { ...info.config, ...config });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add(config);
  }
}

/** Creates a model's consumer, or updates its delivery settings. */
export async function ensureModelConsumer(
  jsm: JetStreamManager,
  options: ModelConsumerOptions,
): Promise<string> {
  const config = modelConsumerConfig(options);
  const stream = assetNames.requestStream(options.region);
  try {
    const info = await jsm.consumers.info(stream, config.durable_name);
    await jsm.consumers.update(stream, config.durable_name, { ...info.config, ...config });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, config);
  }
  return config.durable_name;
}

/** Creates (or updates) a region's streams and buckets, and the shared model catalog. */
export async function ensureRegionAssets(
  nc: NatsConnection,
  jsm: JetStreamManager,
  options: RegionAssetsOptions,
): Promise<void> {
  const o = { ...REGION_ASSET_DEFAULTS, ...options };
  await ensureStream(jsm, requestStreamConfig(o));
  await ensureStream(jsm, deadLetterStreamConfig(o));
  await ensureStream(jsm, eventStreamConfig(o));
  const kvm = new Kvm(nc);
  await kvm.create(assetNames.taskBucket(o.region), {
    history: 1,
    ttl: o.taskRetentionMs,
    storage: StorageType.File,
    replicas: o.replicas,
    maxValueSize: o.maxRequestBytes * 2,
    ...placement(o),
  });
  await kvm.create(assetNames.actorBucket(o.region), {
    history: 1,
    ttl: o.heartbeatIntervalMs * HEARTBEAT_EXPIRY_INTERVALS,
    // Heartbeats are soft state, rewritten every interval: memory is enough and cheaper.
    storage: StorageType.Memory,
    replicas: o.replicas,
    ...placement(o),
  });
  // A cancel matters until its task's deadline at most: kept as long as task records.
  await kvm.create(assetNames.cancelBucket(o.region), {
    history: 1,
    ttl: o.taskRetentionMs,
    storage: StorageType.File,
    replicas: o.replicas,
    ...placement(o),
  });
  await kvm.create(assetNames.modelBucket, {
    history: 5,
    storage: StorageType.File,
    replicas: o.replicas,
  });
  await kvm.create(assetNames.quotaBucket, {
    history: 1,
    storage: StorageType.File,
    replicas: o.replicas,
    // Counters outlive their day or month for a while (for operators), then go.
    ttl: QUOTA_COUNTER_RETENTION_MS,
  });
  // Soft state, for as long as a client retries: memory is enough (a lost entry costs at most a
  // second run of one task, as without it).
  await kvm.create(assetNames.clientRetryBucket, {
    history: 1,
    ttl: CLIENT_RETRY_MEMORY_MS,
    storage: StorageType.Memory,
    replicas: o.replicas,
  });
  // No bucket TTL: route overrides and rollout holds must stay until someone lifts them, and the
  // leader lease carries its own expiry (nodes/controller/lease.ts).
  await kvm.create(assetNames.controlBucket, {
    history: 1,
    storage: StorageType.File,
    replicas: o.replicas,
  });
  await ensureStream(jsm, {
    name: assetNames.controlLogStream,
    subjects: [subjects.allActionLogs],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: CONTROL_LOG_RETENTION_MS * NS_PER_MS,
    num_replicas: o.replicas,
  });
}

/**
 * How long a gateway remembers an OpenAI request whose task outlived the sync wait, ms: longer
 * than the official clients' retries take (two, with backoffs of seconds, each waiting the sync
 * wait), well inside the task's deadline.
 */
const CLIENT_RETRY_MEMORY_MS = 15 * 60_000;

/** How long a quota counter is kept after its last write: past the end of any month. */
const QUOTA_COUNTER_RETENTION_MS = 40 * 24 * 3600_000;

/** Limits of an edge site's store-and-forward stream. */
export interface EdgeSiteOptions {
  site: string;
  /** The hub region whose request stream drains this site. */
  region: string;
  /** Most requests held at the site (link cut); past it the edge refuses. Default 100 000. */
  maxHeldRequests?: number;
  /** Most bytes held at the site. Default 1 GiB. */
  maxHeldBytes?: number;
  /** Largest request, bytes (as the hub's request stream). Default 2 MiB. */
  maxRequestBytes?: number;
  /**
   * How long the site keeps a request after accepting it, ms: the longest link outage it rides
   * out, and the hub must source a request before it ages out. Default 7 days.
   */
  holdMs?: number;
  /** Dedup window for the edge's own acceptance, ms (as the hub's). Default 15 minutes. */
  duplicateWindowMs?: number;
}

/** Defaults of {@link EdgeSiteOptions}. */
export const EDGE_SITE_DEFAULTS = {
  maxHeldRequests: 100_000,
  maxHeldBytes: 1024 * 1024 * 1024,
  maxRequestBytes: REGION_ASSET_DEFAULTS.maxRequestBytes,
  holdMs: 7 * 24 * 3600_000,
  duplicateWindowMs: REGION_ASSET_DEFAULTS.duplicateWindowMs,
} as const;

/**
 * An edge site's stream, created in the site's own domain. It keeps what it accepted by age
 * (limits retention): the hub's request stream sources from it and remembers how far it got, so
 * a cut link only delays forwarding. Discard-new: a site that is full refuses, never drops.
 */
export function edgeStreamConfig(
  options: EdgeSiteOptions,
): Partial<StreamConfig> & { name: string } {
  const o = { ...EDGE_SITE_DEFAULTS, ...options };
  return {
    name: assetNames.edgeStream(o.site),
    subjects: [subjects.edgeRequestsOfSite(o.site)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_msgs: o.maxHeldRequests,
    max_bytes: o.maxHeldBytes,
    max_msg_size: o.maxRequestBytes,
    max_age: o.holdMs * NS_PER_MS,
    duplicate_window: o.duplicateWindowMs * NS_PER_MS,
    num_replicas: 1,
    allow_direct: true,
  };
}

/**
 * How a hub's request stream sources one edge site: across domains, only the requests for this
 * region, re-subjected into the region's own request subjects so the model consumers see them.
 * The `Nats-Msg-Id` header travels with each message, so the hub deduplicates a retried submit.
 */
export function edgeSourceConfig(options: EdgeSiteOptions): StreamSource {
  return {
    name: assetNames.edgeStream(options.site),
    domain: edgeDomain(options.site),
    subject_transforms: [
      {
        src: subjects.edgeRequestsForRegion(options.site, options.region),
        dest: subjects.requestsOfRegion(options.region),
      },
    ],
  };
}

/**
 * Creates an edge site's stream (with `edgeJsm`, a manager in the site's domain) and makes the hub
 * region's request stream (through `hubJsm`) source it. Idempotent.
 */
export async function ensureEdgeSite(
  edgeJsm: JetStreamManager,
  hubJsm: JetStreamManager,
  options: EdgeSiteOptions,
): Promise<void> {
  await ensureStream(edgeJsm, edgeStreamConfig(options));
  const hubStream = assetNames.requestStream(options.region);
  const info = await hubJsm.streams.info(hubStream);
  const source = edgeSourceConfig(options);
  const others = (info.config.sources ?? []).filter((s) => s.name !== source.name);
  // The server reports a domain source as its external API prefix; compare by name only.
  if (others.length === (info.config.sources ?? []).length) {
    await hubJsm.streams.update(hubStream, { ...info.config, sources: [...others, source] });
  }
}
