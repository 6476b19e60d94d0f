/**
 * Vigil's node-level metrics through the OpenTelemetry metrics API (no-ops until the node starts
 * the SDK). Three layers:
 *
 * - infrastructure: NATS connection state and (from the controller) JetStream storage per stream
 *   and per server store dir here; process CPU and memory, event-loop delay and GC from `@opentelemetry/host-metrics` and
 *   the runtime instrumentation (`telemetry.ts`);
 * - application: HTTP latency, rate and status per route and model (`gateway/http-metrics.ts`); queue depth,
 *   ack-pending and redeliveries per model, sampled from consumer info when a reader collects;
 * - business: tasks accepted here; the actors count what becomes of them (`actors/task-metrics.ts`).
 *
 * The hot path only adds to counters, with attribute objects cached per (model, region).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { metrics, type Attributes, type Meter } from '@opentelemetry/api';
import { assetNames } from '../../protocol/index.js';

/**
 * The API has no proxy meter: a meter taken before the SDK starts stays a no-op, so each factory
 * takes its meter when called (after `startTelemetry`).
 */
const vigilMeter = (): Meter => metrics.getMeter('vigil.node');

/** Business counters the gateway feeds. */
export interface GatewayTaskMetrics {
  /** A new task was stored in `region`'s queue (duplicates are not counted). */
  accepted(model: string, region: string): void;
}

/** The gateway's task counters. */
export function gatewayTaskMetrics(): GatewayTaskMetrics {
  const meter = vigilMeter();
  const counter = meter.createCounter('vigil.tasks.accepted', {
    description: 'Tasks accepted into a queue (new tasks, not duplicates)',
    unit: '{task}',
  });
  const attributes = new AttributeCache();
  return {
    accepted(model, region) {
      counter.add(1, attributes.get(model, region));
    },
  };
}

/** Where {@link observeQueues} reads the queues from. */
export interface QueueSource {
  jsm: JetStreamManager;
  region: string;
  /** The models whose queues to sample (read at each collection). */
  models(): readonly string[];
}

/**
 * Queue gauges per model, sampled from consumer info when a metric reader collects (a scrape or
 * an OTLP push), never per request. A model whose consumer does not exist yet has no point.
 */
export function observeQueues(source: QueueSource): void {
  const meter = vigilMeter();
  const pending = meter.createObservableGauge('vigil.queue.pending', {
    description: 'Tasks waiting for an actor (consumer lag)',
    unit: '{task}',
  });
  const ackPending = meter.createObservableGauge('vigil.queue.ack_pending', {
    description: 'Tasks delivered to an actor and not yet acknowledged',
    unit: '{task}',
  });
  const redelivered = meter.createObservableGauge('vigil.queue.redelivered', {
    description: 'Tasks delivered more than once and not yet acknowledged',
    unit: '{task}',
  });
  const attributes = new AttributeCache();
  const stream = assetNames.requestStream(source.region);
  meter.addBatchObservableCallback(
    async (result) => {
      await Promise.all(
        source.models().map(async (model) => {
          try {
            const info = await source.jsm.consumers.info(stream, assetNames.modelConsumer(model));
            const attrs = attributes.get(model, source.region);
            result.observe(pending, info.num_pending, attrs);
            result.observe(ackPending, info.num_ack_pending, attrs);
            result.observe(redelivered, info.num_redelivered, attrs);
          } catch {
            // No consumer yet (no actor ever ran the model) or NATS unreachable: no point.
          }
        }),
      );
    },
    [pending, ackPending, redelivered],
  );
}

/**
 * JetStream storage per stream (bytes and messages), sampled from stream info when a reader
 * collects. Only the controller's user may read every stream's info, so the controller reports it.
 */
export function observeStreamStorage(
  jsm: JetStreamManager,
  streams: () => readonly string[],
): void {
  const meter = vigilMeter();
  const bytes = meter.createObservableGauge('vigil.jetstream.stream.bytes', {
    description: 'Bytes a stream holds (its share of the JetStream store)',
    unit: 'By',
  });
  const messages = meter.createObservableGauge('vigil.jetstream.stream.messages', {
    description: 'Messages a stream holds',
    unit: '{message}',
  });
  const attributes = new Map<string, Attributes>();
  meter.addBatchObservableCallback(
    async (result) => {
      await Promise.all(
        streams().map(async (stream) => {
          try {
            const info = await jsm.streams.info(stream);
            let attrs = attributes.get(stream);
            if (!attrs) attributes.set(stream, (attrs = { 'vigil.stream': stream }));
            result.observe(bytes, info.state.bytes, attrs);
            result.observe(messages, info.state.messages, attrs);
          } catch {
            // Not provisioned, or its region is unreachable: no point this time.
          }
        }),
      );
    },
    [bytes, messages],
  );
}

/** How long a storage sample waits for every server's answer, ms. */
const SERVER_PING_WAIT_MS = 1_000;

/**
 * Each nats-server's JetStream file store (the disk of its store dir: used, and the most it may
 * use), from `$SYS.REQ.SERVER.PING.JSZ` when a reader collects. Only a system-account user may ask
 * (`sys`); every server in the supercluster answers.
 */
export function observeServerStorage(sys: NatsConnection): void {
  const meter = vigilMeter();
  const used = meter.createObservableGauge('vigil.nats.server.storage.used', {
    description: "JetStream file storage used on a server (its store dir's content)",
    unit: 'By',
  });
  const limit = meter.createObservableGauge('vigil.nats.server.storage.limit', {
    description: 'JetStream file storage a server may use (max_file_store)',
    unit: 'By',
  });
  meter.addBatchObservableCallback(
    async (result) => {
      try {
        const replies = await sys.requestMany('$SYS.REQ.SERVER.PING.JSZ', undefined, {
          strategy: 'timer',
          maxWait: SERVER_PING_WAIT_MS,
        });
        for await (const msg of replies) {
          const reply = msg.json<JszReply>();
          const attrs: Attributes = {
            'vigil.nats.server': reply.server?.name ?? 'unknown',
            'vigil.nats.cluster': reply.server?.cluster ?? '',
          };
          if (typeof reply.data?.storage === 'number')
            result.observe(used, reply.data.storage, attrs);
          const max = reply.data?.config?.max_storage;
          if (typeof max === 'number') result.observe(limit, max, attrs);
        }
      } catch {
        // No system account reachable this time: no points.
      }
    },
    [used, limit],
  );
}

/** The part of a `$SYS.REQ.SERVER.PING.JSZ` answer read here. */
interface JszReply {
  server?: { name?: string; cluster?: string };
  data?: { storage?: number; config?: { max_storage?: number } };
}

/** A gauge that is 1 while `nc` is connected, 0 while it is disconnected or reconnecting. */
export function observeNatsConnection(nc: NatsConnection, role: string): void {
  let connected = 1;
  const attrs: Attributes = { 'vigil.nats.role': role };
  vigilMeter()
    .createObservableGauge('vigil.nats.connected', {
      description: '1 while the NATS connection is up',
    })
    .addCallback((result) => result.observe(nc.isClosed() ? 0 : connected, attrs));
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnecting') connected = 0;
      else if (status.type === 'reconnect') connected = 1;
    }
  })();
}

/** One attributes object per (model, region), so counting allocates nothing. */
class AttributeCache {
  readonly #byModel = new Map<string, Map<string, Attributes>>();
  get(model: string, region: string): Attributes {
    let byRegion = this.#byModel.get(model);
    if (!byRegion) {
      byRegion = new Map();
      this.#byModel.set(model, byRegion);
    }
    let attrs = byRegion.get(region);
    if (!attrs) {
      attrs = { 'vigil.model': model, 'vigil.region': region };
      byRegion.set(region, attrs);
    }
    return attrs;
  }
}
