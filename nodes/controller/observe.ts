/**
 * What the controller sees, from what NATS already holds: every actor's heartbeat (a watch on
 * each region's actors bucket), each model's consumer (queue depth, acks pending, redeliveries)
 * and each region's dead-letter stream. Standbys observe too, so a controller that becomes leader
 * judges "stuck for 10 s" from history it already has.
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  ActorState,
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  isHeartbeatFresh,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import { Scope, type MetricName, type MetricValue } from './rules.js';

/** A heartbeat older than this many of its intervals counts as stale. */
export const STALE_AFTER_INTERVALS = 2;
/**
 * An actor with tasks in flight whose beats have shown no finished task for longer than this many
 * of its intervals is stuck. Progress is only seen when a beat arrives, so a busy, healthy actor
 * looks stalled for up to one interval between beats (and a beat may come late): a stall shorter
 * than two intervals says nothing.
 */
export const STUCK_AFTER_INTERVALS = 2;
/**
 * An actor not heard from in this long is forgotten, ms (its stale alert then resolves); one
 * whose last beat said `draining` is forgotten once that beat expires, with no stale alert.
 */
export const FORGET_ACTOR_AFTER_MS = 10 * 60_000;
/** How long a broken heartbeat watch waits before it is opened again, ms. */
const WATCH_RETRY_MS = 1_000;

/** What a rule is about: one actor, one model's queue in a region, or a region. */
export interface Subject {
  scope: Scope;
  region: string;
  host?: string;
  model?: string;
  /** Unique within the scope, and a KV key suffix: `<region>[.<host>][.<model>]`. */
  key: string;
}

/** One observed subject and its metric values. */
export interface Observed {
  subject: Subject;
  value(metric: MetricName): MetricValue | undefined;
}

/** An actor as last seen. */
export interface ActorSeen {
  beat: ActorHeartbeat;
  /** When the controller last saw it finish a task, or take work while idle. */
  progressAt: number;
}

/** The controller's observations. */
export interface Observer {
  /** Samples queues and dead letters; returns every subject observed, with its values. */
  sample(): Promise<Observed[]>;
  close(): void;
}

/** Options of {@link startObserver}. */
export interface ObserverOptions {
  regions: readonly string[];
  logger: Logger;
}

/** Watches the heartbeats of `regions`; `sample` adds queues and dead letters. */
export async function startObserver(
  nc: NatsConnection,
  jsm: JetStreamManager,
  options: ObserverOptions,
): Promise<Observer> {
  const { logger } = options;
  const actors = new Map<string, ActorSeen>();
  const watches = await Promise.all(
    options.regions.map((region) => watchRegion(nc, region, actors, logger)),
  );
  const deadLetterSeq = new Map<string, DeadLetterMark>();
  return {
    async sample() {
      const now = Date.now();
      const out = sampleActors(actors, now);
      // A region that cannot be read this time only loses its queue and dead-letter subjects
      // until the next sample; their alerts stay as they were (see rule-evaluator.ts).
      const perRegion = await Promise.all(
        options.regions.map(async (region) => {
          try {
            return [
              ...(await sampleQueues(jsm, region)),
              await sampleDeadLetters(jsm, region, now, deadLetterSeq),
            ];
          } catch (err) {
            logger.warn({ region, err }, 'region state unavailable');
            return undefined;
          }
        }),
      );
      for (const observed of perRegion) if (observed) out.push(...observed);
      return out;
    },
    close() {
      for (const stop of watches) stop();
    },
  };
}

/**
 * What the controller remembers after `beat`: progress is a finished task since the beat before,
 * or work taken while idle (a stall is counted from when the work came, not from the last task).
 */
export function noteBeat(
  before: ActorSeen | undefined,
  beat: ActorHeartbeat,
  now: number,
): ActorSeen {
  const progressed =
    !before || beat.processed !== before.beat.processed || before.beat.inFlight === 0;
  return { beat, progressAt: progressed ? now : before.progressAt };
}

/** Every actor still remembered, with its heartbeat metrics; forgets the ones long gone. */
function sampleActors(actors: Map<string, ActorSeen>, now: number): Observed[] {
  const out: Observed[] = [];
  for (const [key, seen] of actors) {
    const silentMs = now - seen.beat.at;
    const gone =
      silentMs > FORGET_ACTOR_AFTER_MS ||
      (seen.beat.state === ActorState.Draining && !isHeartbeatFresh(seen.beat, now));
    if (gone) actors.delete(key);
    else out.push(actorObserved(seen, now));
  }
  return out;
}

/** One actor's heartbeat metrics. */
export function actorObserved(seen: ActorSeen, now: number): Observed {
  const b = seen.beat;
  const stalledMs = b.inFlight > 0 ? now - seen.progressAt : 0;
  const values: Record<string, MetricValue> = {
    // Heartbeats age out of the bucket without a delete marker, so staleness is judged from
    // the last beat kept here; a host that drained said goodbye and is not stale.
    'heartbeat.stale':
      b.state !== ActorState.Draining && now - b.at > b.intervalMs * STALE_AFTER_INTERVALS,
    'heartbeat.stuck': stalledMs > b.intervalMs * STUCK_AFTER_INTERVALS,
    'heartbeat.stalled-ms': stalledMs,
    'heartbeat.in-flight': b.inFlight,
    'heartbeat.errors': b.errors,
    'heartbeat.restarts': b.restarts,
    'heartbeat.latency-p99-ms': b.latencyMs.p99,
    'heartbeat.breaker': b.breaker,
    'heartbeat.state': b.state,
  };
  return {
    subject: {
      scope: Scope.Actor,
      region: b.region,
      host: b.host,
      model: b.model,
      key: `${b.region}.${b.host}.${b.model}`,
    },
    value: (metric) => values[metric],
  };
}

/** Each model's queue in `region`, from its consumer. */
async function sampleQueues(jsm: JetStreamManager, region: string): Promise<Observed[]> {
  const out: Observed[] = [];
  const prefix = assetNames.modelConsumer('');
  for await (const info of jsm.consumers.list(assetNames.requestStream(region))) {
    if (!info.name.startsWith(prefix)) continue;
    const model = info.name.slice(prefix.length);
    const values: Record<string, MetricValue> = {
      'queue.depth': info.num_pending,
      'queue.ack-pending': info.num_ack_pending,
      'queue.redelivered': info.num_redelivered,
    };
    out.push({
      subject: { scope: Scope.Model, region, model, key: `${region}.${model}` },
      value: (metric) => values[metric],
    });
  }
  return out;
}

/** Where a region's dead-letter stream stood at the last sample. */
interface DeadLetterMark {
  seq: number;
  at: number;
}

/** `region`'s dead letters: how many are kept, and how many were written per minute since `marks`. */
async function sampleDeadLetters(
  jsm: JetStreamManager,
  region: string,
  now: number,
  marks: Map<string, DeadLetterMark>,
): Promise<Observed> {
  const info = await jsm.streams.info(assetNames.deadLetterStream(region));
  const before = marks.get(region);
  marks.set(region, { seq: info.state.last_seq, at: now });
  // Sequence numbers count every letter ever written, so a letter aged out is not a negative rate.
  const rate =
    before && now > before.at
      ? ((info.state.last_seq - before.seq) * 60_000) / (now - before.at)
      : 0;
  const values: Record<string, MetricValue> = {
    'dead-letters.rate': rate,
    'dead-letters.count': info.state.messages,
  };
  return {
    subject: { scope: Scope.Region, region, key: region },
    value: (metric) => values[metric],
  };
}

/** The regions whose queue and dead-letter subjects were missing from a sample. */
export function unreadRegions(observed: readonly Observed[], regions: readonly string[]): string[] {
  const read = new Set(
    observed.filter((o) => o.subject.scope === Scope.Region).map((o) => o.subject.region),
  );
  return regions.filter((r) => !read.has(r));
}

/** Keeps `actors` current from one region's bucket; returns how to stop. */
async function watchRegion(
  nc: NatsConnection,
  region: string,
  actors: Map<string, ActorSeen>,
  logger: Logger,
): Promise<() => void> {
  const kv: KV = await new Kvm(nc).open(assetNames.actorBucket(region));
  let closed = false;
  let stopWatch: (() => void) | undefined;
  const run = async (): Promise<void> => {
    while (!closed) {
      try {
        const iter = await kv.watch({ key: '>' });
        stopWatch = () => iter.stop();
        for await (const entry of iter) {
          const key = `${region}.${entry.key}`;
          if (entry.operation !== 'PUT') {
            actors.delete(key); // removed on purpose by an operator
            continue;
          }
          let beat: ActorHeartbeat;
          try {
            beat = decodeAs(actorHeartbeatSchema, entry.value, 'heartbeat');
          } catch (err) {
            logger.warn({ key: entry.key, err }, 'unreadable heartbeat ignored');
            continue;
          }
          actors.set(key, noteBeat(actors.get(key), beat, Date.now()));
        }
      } catch (err) {
        logger.warn({ region, err }, 'heartbeat watch broke; reopening');
      }
      if (!closed) await new Promise((resolve) => setTimeout(resolve, WATCH_RETRY_MS));
    }
  };
  void run();
  return () => {
    closed = true;
    stopWatch?.();
  };
}
