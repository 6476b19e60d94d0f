/**
 * Actor heartbeats: each actor's state and load, written to the region's actors bucket every
 * interval and on every change (restart, breaker, drain). The bucket expires an entry after three
 * intervals, so an actor that stops beating disappears by itself; gateways, the controller and
 * other regions' hosts read the beats through `protocol/actor-health.ts`.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { ActorState, encode, ENVELOPE_VERSION, type ActorHeartbeat } from '../protocol/index.js';
import type { InferenceActor } from './inference-actor.js';
import type { ModelHandle } from './model-handle.js';

/** Options of {@link createHeartbeats}. */
export interface HeartbeatsOptions {
  /** The region's actors bucket. */
  bucket: KV;
  region: string;
  /** The host the actors run on: part of each actor's id and key. */
  hostId: string;
  /** When the host started, epoch ms. */
  startedAt: number;
  /** How often beats are written, ms; each beat says so, for its readers' freshness rule. */
  intervalMs: number;
  /** The host's own state: starting, running, draining, or failed (it gave up restarting). */
  hostState(): ActorState;
  logger: Logger;
}

/** The heartbeats of one host's actors. */
export interface Heartbeats {
  /** Beats for `actor`, which runs `model`, from the next beat on. */
  add(actor: InferenceActor, model: ModelHandle): void;
  /** `actor`'s heartbeat as of now (also what its status endpoint answers). */
  of(actor: InferenceActor, model: ModelHandle): ActorHeartbeat;
  /**
   * Writes every actor's heartbeat now. A beat asked for while one is being written follows it,
   * never overlaps it, so the bucket never goes back to an older state. Never rejects.
   */
  beat(): Promise<void>;
  /** Beats every interval until {@link stop}. */
  start(): void;
  stop(): void;
}

/** Heartbeats written to `options.bucket`; none is written before the first `beat()`. */
export function createHeartbeats(options: HeartbeatsOptions): Heartbeats {
  return new HeartbeatsImpl(options);
}

class HeartbeatsImpl implements Heartbeats {
  readonly #o: HeartbeatsOptions;
  readonly #actors: { actor: InferenceActor; model: ModelHandle }[] = [];
  #beating: Promise<void> = Promise.resolve();
  #ticker: NodeJS.Timeout | undefined;

  constructor(options: HeartbeatsOptions) {
    this.#o = options;
  }

  add(actor: InferenceActor, model: ModelHandle): void {
    this.#actors.push({ actor, model });
  }

  of(actor: InferenceActor, model: ModelHandle): ActorHeartbeat {
    const stats = actor.stats();
    const host = this.#o.hostState();
    return {
      v: ENVELOPE_VERSION,
      actorId: `${this.#o.hostId}/${model.name}`,
      host: this.#o.hostId,
      region: this.#o.region,
      model: model.name,
      version: model.version,
      // A failed host outranks everything; then the actor's own drain, then its executor.
      state:
        host === ActorState.Failed
          ? ActorState.Failed
          : stats.draining
            ? ActorState.Draining
            : !model.available
              ? ActorState.Restarting
              : host,
      breaker: stats.breaker,
      isolation: model.isolation,
      pid: model.pid,
      inFlight: stats.inFlight,
      processed: stats.processed,
      errors: stats.errors,
      restarts: model.restarts,
      latencyMs: stats.latencyMs,
      startedAt: this.#o.startedAt,
      at: Date.now(),
      intervalMs: this.#o.intervalMs,
    };
  }

  beat(): Promise<void> {
    this.#beating = this.#beating.then(async () => {
      await Promise.all(
        this.#actors.map(({ actor, model }) =>
          this.#o.bucket
            .put(`${model.name}.${this.#o.hostId}`, encode(this.of(actor, model)))
            .catch((err: unknown) =>
              this.#o.logger.warn({ model: model.name, err }, 'heartbeat not written'),
            ),
        ),
      );
    });
    return this.#beating;
  }

  start(): void {
    clearInterval(this.#ticker);
    this.#ticker = setInterval(() => void this.beat(), this.#o.intervalMs);
  }

  stop(): void {
    clearInterval(this.#ticker);
  }
}
