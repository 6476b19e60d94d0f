/**
 * Backlog rescue. When every actor of a model in a region is gone, gateways send new work to
 * other regions, but the tasks already queued there would wait for that region to get an actor
 * back. An actor host serving the model in another region takes the queue over instead: it runs
 * one more inference actor on that region's consumer (its stream, its task records, its dead
 * letters; only the worker is elsewhere), until the region has an actor of its own again or its
 * queue is empty.
 *
 * Nothing is copied or moved. The region's JetStream consumer hands each task to one actor at a
 * time, wherever that actor runs, and the final record's compare-and-set makes a redelivery after
 * a crash harmless, as everywhere else. Several hosts may rescue one queue at once; they share it.
 *
 * The rescuing actor writes no heartbeat: the region keeps reading as having no healthy actor, so
 * gateways keep sending new work where it runs faster, and the rescue ends when a real actor
 * returns. A region that cannot be read (a cut link) is left alone: its queue is not rescued on a
 * guess.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { InferenceActor, ModelHandle } from '../../actors/index.js';
import type { Logger } from 'pino';
import { assetNames, type ActorHealth } from '../../protocol/index.js';

/** Options of {@link startBacklogRescue}. */
export interface BacklogRescueOptions {
  /** The regions whose queues this host may take over (not its own). */
  regions: readonly string[];
  /** The models this host serves; only their queues are rescued. */
  models: readonly ModelHandle[];
  /** How long a region must have had no healthy actor for a model before its queue is taken, ms. */
  graceMs: number;
  /** How often the regions are looked at, ms. */
  checkIntervalMs: number;
  /** Whether this host is fit to take more work for `model` (running, breaker not open). */
  fitFor(model: ModelHandle): boolean;
  /** Starts an actor for `model` on `region`'s queue. */
  adopt(region: string, model: ModelHandle): Promise<InferenceActor>;
  /** How long a released actor may finish its tasks before handing the rest back, ms. */
  releaseGraceMs: number;
  health: ActorHealth;
  jsm: JetStreamManager;
  logger: Logger;
}

/** Defaults for the host's options. */
export const BACKLOG_RESCUE_DEFAULTS = {
  /** Past the heartbeat expiry (three beats of 10 s), so a restart in place is not raced. */
  graceMs: 60_000,
  checkIntervalMs: 5_000,
  releaseGraceMs: 5_000,
} as const;

/** A queue being rescued. */
export interface Rescue {
  region: string;
  model: string;
  since: number;
}

/** Running rescues. */
export interface BacklogRescue {
  /** The queues this host is working on now. */
  current(): Rescue[];
  /** Stops looking and releases every rescued queue. */
  stop(): Promise<void>;
}

/** Tasks waiting in a model's queue of `region`, delivered or not; undefined when unreadable. */
async function backlogOf(
  jsm: JetStreamManager,
  region: string,
  model: string,
): Promise<number | undefined> {
  try {
    const info = await jsm.consumers.info(
      assetNames.requestStream(region),
      assetNames.modelConsumer(model),
    );
    return info.num_pending + info.num_ack_pending;
  } catch {
    return undefined;
  }
}

/** Starts looking for queues to rescue. */
export function startBacklogRescue(o: BacklogRescueOptions): BacklogRescue {
  /** Per `region/model`: since when no healthy actor was seen. */
  const unhealthySince = new Map<string, number>();
  const rescues = new Map<string, { rescue: Rescue; actor: InferenceActor }>();
  let stopped = false;

  const release = async (key: string, why: string): Promise<void> => {
    const running = rescues.get(key);
    if (!running) return;
    rescues.delete(key);
    await running.actor.drain(o.releaseGraceMs);
    o.logger.info(
      {
        region: running.rescue.region,
        model: running.rescue.model,
        why,
        processed: running.actor.stats().processed,
        forMs: Date.now() - running.rescue.since,
      },
      'queue of another region released',
    );
  };

  const look = async (region: string, model: ModelHandle): Promise<void> => {
    const key = `${region}/${model.name}`;
    const now = Date.now();
    const healthy = await o.health.hasHealthyActor(model.name, region);
    if (healthy) {
      unhealthySince.delete(key);
      return release(key, 'the region has an actor again');
    }
    const backlog = await backlogOf(o.jsm, region, model.name);
    if (backlog === undefined) return; // unreadable: nothing is decided on a guess
    const since = unhealthySince.get(key) ?? now;
    unhealthySince.set(key, since);
    const running = rescues.get(key);
    if (running) {
      if (backlog === 0 && running.actor.stats().inFlight === 0) {
        await release(key, 'the queue is empty');
      }
      return;
    }
    if (backlog === 0 || now - since < o.graceMs || !o.fitFor(model) || stopped) return;
    const actor = await o.adopt(region, model);
    if (stopped) return actor.stop();
    rescues.set(key, { rescue: { region, model: model.name, since: now }, actor });
    o.logger.warn(
      {
        region,
        model: model.name,
        backlog,
        noActorForMs: now - since,
      },
      'taking over the queue of a region without actors',
    );
  };

  let timer: NodeJS.Timeout | undefined;
  let looking: Promise<void> = Promise.resolve();
  const loop = (): void => {
    looking = (async () => {
      for (const region of o.regions) {
        for (const model of o.models) {
          if (stopped) return;
          await look(region, model).catch((err: unknown) =>
            o.logger.warn({ region, model: model.name, err }, 'backlog rescue check failed'),
          );
        }
      }
    })().finally(() => {
      if (!stopped) timer = setTimeout(loop, o.checkIntervalMs);
    });
  };
  timer = setTimeout(loop, o.checkIntervalMs);

  return {
    current: () => [...rescues.values()].map((r) => r.rescue),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await looking;
      await Promise.all([...rescues.keys()].map((key) => release(key, 'the host stops')));
    },
  };
}
