/**
 * Where a request runs. A request stays in the region that received it while that region has a
 * healthy actor for the model and the model's queue there is below the spill threshold; otherwise
 * it spills over to the nearest region that has both. The decision reads only in-memory state
 * (the heartbeat watches and a queue-depth sample refreshed in the background), so routing costs
 * the request path no round trip.
 *
 * The controller can shift a model's traffic: a route override (`route.<model>` in the control
 * bucket, `{avoid: [regions]}`) puts those regions last, behind every other healthy region the
 * gateway may spill to. They still take work when no other region can.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { z } from 'zod';
import type { Logger } from 'pino';
import { assetNames, NAME_TOKEN, type ActorHealth } from '../../protocol/index.js';

/** Routing settings. */
export interface RegionRoutingOptions {
  /** The gateway's own region. */
  home: string;
  /** Regions work may spill over to, nearest first. */
  spillRegions: readonly string[];
  /**
   * A model's queue depth (requests waiting for an actor) at which new work for it spills over to
   * another region. Default {@link REGION_ROUTING_DEFAULTS.spillQueueDepth}.
   */
  spillQueueDepth?: number;
  /** How often the queue depths in use are sampled, ms. */
  depthSampleMs?: number;
}

/** Defaults of {@link RegionRoutingOptions}. */
export const REGION_ROUTING_DEFAULTS = {
  spillQueueDepth: 1_000,
  depthSampleMs: 1_000,
  /** A (region, model) depth not asked for in this long stops being sampled, ms. */
  depthIdleMs: 60_000,
} as const;

/** A routing decision. */
export interface RoutePlan {
  /**
   * Regions to publish to, in order: the first is the choice; the next ones are tried only when a
   * region refuses the request outright (its queue is full or missing), never after an ambiguous
   * failure, so a request is never stored twice.
   */
  regions: string[];
  /** True when no watched region has a healthy actor for the model right now. */
  noHealthyActor: boolean;
}

/** Chooses regions for requests. */
export interface RegionRouter {
  readonly home: string;
  plan(model: string): Promise<RoutePlan>;
  /** The last sampled queue depth of `model` in `region`, if any. */
  queueDepth(region: string, model: string): number | undefined;
  close(): void;
}

/** The route overrides in force, kept current by a watch on the control bucket. */
export interface RouteOverrides {
  /** Regions the model's new work avoids while another healthy region can take it. */
  avoided(model: string): readonly string[];
  close(): void;
}

/** How long a broken override watch waits before it is opened again, ms. */
const OVERRIDE_WATCH_RETRY_MS = 1_000;

/** Route override keys: `route.<model>`. */
const ROUTE_KEY_PREFIX = 'route.';

const routeOverrideSchema = z.object({ avoid: z.array(z.string().regex(NAME_TOKEN)).max(64) });

/**
 * Watches the controller's route overrides. Routing must not depend on the control plane: a
 * bucket that cannot be read means no overrides, and the watch is retried in the background.
 */
export function watchRouteOverrides(js: JetStreamClient, logger: Logger): RouteOverrides {
  const avoid = new Map<string, readonly string[]>();
  let closed = false;
  let stop: (() => void) | undefined;
  void (async () => {
    while (!closed) {
      try {
        const kv = await new Kvm(js).open(assetNames.controlBucket);
        const watch = await kv.watch({ key: `${ROUTE_KEY_PREFIX}>` });
        stop = () => watch.stop();
        if (closed) watch.stop();
        for await (const entry of watch) {
          const model = entry.key.slice(ROUTE_KEY_PREFIX.length);
          if (entry.operation !== 'PUT') {
            avoid.delete(model);
            continue;
          }
          const parsed = routeOverrideSchema.safeParse(entry.json());
          if (parsed.success) avoid.set(model, parsed.data.avoid);
          else logger.warn({ key: entry.key }, 'ignoring unreadable route override');
        }
      } catch (err) {
        logger.warn({ err }, 'route overrides unavailable');
      }
      if (!closed) await new Promise((r) => setTimeout(r, OVERRIDE_WATCH_RETRY_MS).unref());
    }
  })();
  return {
    avoided: (model) => avoid.get(model) ?? [],
    close() {
      closed = true;
      stop?.();
    },
  };
}

/** Samples the queue depth of (region, model) pairs that routing asked about recently. */
class QueueDepths {
  readonly #sampled = new Map<string, { depth?: number; askedAt: number }>();
  readonly #timer: NodeJS.Timeout;
  #sampling = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly logger: Logger,
    sampleMs: number,
  ) {
    this.#timer = setInterval(() => void this.#sample(), sampleMs);
    this.#timer.unref();
  }

  get(region: string, model: string): number | undefined {
    const key = `${region}\u0000${model}`;
    const entry = this.#sampled.get(key);
    if (entry) {
      entry.askedAt = Date.now();
      return entry.depth;
    }
    this.#sampled.set(key, { askedAt: Date.now() });
    return undefined;
  }

  async #sample(): Promise<void> {
    if (this.#sampling) return; // a slow region must not pile up samplers
    this.#sampling = true;
    try {
      const now = Date.now();
      await Promise.all(
        [...this.#sampled].map(async ([key, entry]) => {
          if (now - entry.askedAt > REGION_ROUTING_DEFAULTS.depthIdleMs) {
            this.#sampled.delete(key);
            return;
          }
          const [region, model] = key.split('\u0000') as [string, string];
          try {
            const info = await this.jsm.consumers.info(
              assetNames.requestStream(region),
              assetNames.modelConsumer(model),
            );
            entry.depth = info.num_pending;
          } catch (err) {
            // Unknown depth is not a reason to move work: health decides for unreachable regions.
            delete entry.depth;
            this.logger.debug({ region, model, err }, 'queue depth unavailable');
          }
        }),
      );
    } finally {
      this.#sampling = false;
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Builds the router from the heartbeat view and a JetStream manager that reaches every region;
 * it takes over `overrides` (closed with it).
 */
export function createRegionRouter(
  options: RegionRoutingOptions,
  health: ActorHealth,
  jsm: JetStreamManager,
  logger: Logger,
  overrides?: RouteOverrides,
): RegionRouter {
  const o = { ...REGION_ROUTING_DEFAULTS, ...options };
  const depths = new QueueDepths(jsm, logger, o.depthSampleMs);
  const regions = [o.home, ...o.spillRegions.filter((r) => r !== o.home)];
  return {
    home: o.home,
    async plan(model) {
      const healthy: string[] = [];
      for (const region of regions) {
        if (await health.hasHealthyActor(model, region)) healthy.push(region);
      }
      if (healthy.length === 0) return { regions: [o.home], noHealthyActor: true };
      const avoided = overrides?.avoided(model) ?? [];
      if (avoided.length > 0) {
        // Stable: the regions still preferred keep their order, the avoided ones go last.
        healthy.sort((a, b) => Number(avoided.includes(a)) - Number(avoided.includes(b)));
      }
      const shallow = healthy.filter((r) => (depths.get(r, model) ?? 0) < o.spillQueueDepth);
      // Best: the nearest region that can run it now. Then the other healthy ones, for when a
      // queue turns out to be full.
      const first = shallow[0] ?? healthy[0]!;
      const rest = healthy.filter((r) => r !== first);
      // Queueing at home beats refusing when every healthy region's queue is full.
      if (!healthy.includes(o.home)) rest.push(o.home);
      return { regions: [first, ...rest], noHealthyActor: false };
    },
    queueDepth: (region, model) => depths.get(region, model),
    close: () => {
      depths.close();
      overrides?.close();
    },
  };
}
