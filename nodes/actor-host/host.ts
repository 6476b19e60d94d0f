/**
 * An actor host: one NATS connection, one inference actor per model it serves, heartbeats for
 * each actor in the region's actors bucket, and a NATS service (`$SRV.PING/INFO/STATS`) through
 * which internal services find them. `main.ts` builds the options from the environment; tests
 * call this directly.
 *
 * This file is the wiring: what starts in which order (`start`), and what stops in which order
 * (`drain`). The parts are named for what they do: the actors and their heartbeats are in
 * `actors/`, the controller's commands in `host-commands.ts`, discovery in `host-service.ts`,
 * taking over other regions' queues in `backlog-rescue.ts`, and ending its region's requests for
 * models no actor serves in `actors/unserved-requests.ts`.
 */
import { hostname } from 'node:os';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Service } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  createHeartbeats,
  createInferenceActor,
  createSupervisor,
  startUnservedRequestSweep,
  superviseModel,
  type CircuitBreakerOptions,
  type Escalation,
  type ExecutorSpec,
  type Heartbeats,
  type InferenceActor,
  type InferenceActorOptions,
  type ModelHandle,
  type SupervisedModel,
  type Supervisor,
  type SupervisorEvent,
  type SupervisorOptions,
  type UnservedRequestSweep,
} from '../../actors/index.js';
import {
  ActorState,
  assetNames,
  BreakerState,
  newTaskId,
  watchActorHealth,
  type ActorHealth,
} from '../../protocol/index.js';
import { connectNats, type NatsConnectOptions } from '../common/index.js';
import {
  BACKLOG_RESCUE_DEFAULTS,
  startBacklogRescue,
  type BacklogRescue,
} from './backlog-rescue.js';
import { listenForCommands } from './host-commands.js';
import { registerHostService } from './host-service.js';

/** Everything an actor host needs to start. */
export interface ActorHostOptions {
  region: string;
  nats: NatsConnectOptions;
  /** The models to serve, each in its executor (isolation) under the host's supervisor. */
  executors: readonly ExecutorSpec[];
  /** Restart strategy: backoff, intensity (past it the host escalates), liveness pings. */
  supervision?: SupervisorOptions;
  /** Executors kept booted ahead of a crash, per model: 0 or 1. */
  spares?: 0 | 1;
  /** Tasks each actor runs at once. */
  concurrency: number;
  /** Attempts before a retryable failure is dead-lettered. */
  maxAttempts: number;
  /** Backoff between attempts, ms; the last entry repeats. */
  retryScheduleMs: readonly number[];
  /** Consumer ack wait, ms. */
  ackWaitMs: number;
  /** Heartbeat interval, ms (must match the actors bucket's TTL: three intervals). */
  heartbeatIntervalMs: number;
  breaker?: CircuitBreakerOptions;
  logger: Logger;
  /**
   * Other regions whose queues this host takes over while they have no healthy actor for a model
   * it serves (`backlog-rescue.ts`). Default: none.
   */
  rescue?: { regions: readonly string[]; graceMs?: number; checkIntervalMs?: number };
  /**
   * Ending requests for a model no actor serves in the region (no consumer), once they waited
   * `graceMs` (`actors/unserved-requests.ts`). Defaults: `UNSERVED_REQUESTS_DEFAULTS`.
   */
  unserved?: { graceMs?: number; checkIntervalMs?: number };
  /**
   * What a controller's `drain` command does. Default: SIGTERM to this process, so the host
   * drains and exits exactly as when its orchestrator stops it, and is replaced.
   */
  onDrainCommand?: () => void;
}

/** A started host. */
export interface ActorHost {
  readonly hostId: string;
  readonly actors: readonly InferenceActor[];
  /**
   * Resolves when a model restarted more often than the restart intensity allows: the host has
   * then marked itself failed in its heartbeats, and its process should exit non-zero so that
   * systemd or Kubernetes restarts it.
   */
  readonly escalated: Promise<Escalation>;
  /** Writes every actor's heartbeat now. */
  beat(): Promise<void>;
  /**
   * Graceful stop: stop pulling, finish in-flight work within `graceMs`, hand the rest back for
   * immediate redelivery, write a last heartbeat that says `draining`, disconnect. Idempotent.
   */
  drain(graceMs: number): Promise<void>;
}

/** Host ids become KV key and subject tokens. */
function tokenSafe(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '-');
}

/** Starts a host serving `options.executors`' models. */
export async function startActorHost(options: ActorHostOptions): Promise<ActorHost> {
  const hostId = tokenSafe(`${hostname()}-${process.pid}-${newTaskId().slice(0, 6)}`);
  const logger = options.logger.child({ host: hostId });
  const nc = await connectNats(
    { ...options.nats, name: options.nats.name || `actor-host-${hostId}` },
    logger,
  );
  const host = new ActorHostImpl(nc, hostId, options, logger);
  await host.start();
  return host;
}

class ActorHostImpl implements ActorHost {
  readonly hostId: string;
  readonly actors: InferenceActor[] = [];
  readonly #nc: NatsConnection;
  readonly #o: ActorHostOptions;
  readonly #log: Logger;
  readonly #startedAt = Date.now();
  readonly #supervisor: Supervisor;
  /** The served models, in the order of `actors`. */
  readonly #supervised: SupervisedModel[] = [];
  readonly #models: ModelHandle[] = [];
  #state: ActorState = ActorState.Starting;
  #heartbeats: Heartbeats | undefined;
  #service: Service | undefined;
  #health: ActorHealth | undefined;
  #rescue: BacklogRescue | undefined;
  #unserved: UnservedRequestSweep | undefined;
  #escalated: Promise<Escalation> | undefined;
  #draining: Promise<void> | undefined;

  constructor(nc: NatsConnection, hostId: string, options: ActorHostOptions, logger: Logger) {
    this.#nc = nc;
    this.hostId = hostId;
    this.#o = options;
    this.#log = logger;
    this.#supervisor = createSupervisor({
      ...options.supervision,
      onEvent: (event) => {
        logSupervisorEvent(logger, event);
        if (event.type !== 'restarting') void this.beat();
      },
    });
  }

  get escalated(): Promise<Escalation> {
    // Set by a successful start, the only way to get hold of a host.
    return this.#escalated!;
  }

  /** Starts every part in order; on failure stops what started, closes the connection, throws. */
  async start(): Promise<void> {
    try {
      this.#heartbeats = createHeartbeats({
        bucket: await new Kvm(this.#nc).open(assetNames.actorBucket(this.#o.region)),
        region: this.#o.region,
        hostId: this.hostId,
        startedAt: this.#startedAt,
        intervalMs: this.#o.heartbeatIntervalMs,
        hostState: () => this.#state,
        logger: this.#log,
      });
      await this.#superviseModels();
      await this.#startActors(this.#heartbeats);
      this.#state = ActorState.Running;
      await this.beat();
      this.#heartbeats.start();
      this.#service = await registerHostService(this.#nc, {
        region: this.#o.region,
        hostId: this.hostId,
        actors: this.actors.map((actor, i) => ({ actor, model: this.#models[i]! })),
        statusOf: (actor, model) => this.#heartbeats!.of(actor, model),
      });
      listenForCommands(this.#nc, {
        region: this.#o.region,
        hostId: this.hostId,
        models: this.#supervised,
        onDrain: this.#o.onDrainCommand ?? (() => process.kill(process.pid, 'SIGTERM')),
        afterCommand: () => void this.beat(),
        logger: this.#log,
      });
      this.#rescue = await this.#startRescue();
      this.#unserved = await startUnservedRequestSweep(this.#nc, {
        ...this.#o.unserved,
        region: this.#o.region,
        actorId: `${this.hostId}/unserved`,
        logger: this.#log,
      });
    } catch (err) {
      await this.#closeAfterFailedStart();
      throw err;
    }
    this.#escalated = this.#supervisor.escalated.then(async (escalation) => {
      this.#state = ActorState.Failed;
      await this.beat();
      return escalation;
    });
  }

  beat(): Promise<void> {
    // Nothing to write before the actors bucket is open.
    return this.#heartbeats?.beat() ?? Promise.resolve();
  }

  drain(graceMs: number): Promise<void> {
    this.#draining ??= this.#drainInOrder(graceMs);
    return this.#draining;
  }

  /** One executor per model under the host's supervisor, each up before the next starts. */
  async #superviseModels(): Promise<void> {
    for (const spec of this.#o.executors) {
      const model = await superviseModel(this.#supervisor, spec, this.#o.spares ?? 0);
      this.#supervised.push(model);
      this.#models.push(model.handle);
    }
  }

  /** One actor per model on this region's queue, beating from its start. */
  async #startActors(heartbeats: Heartbeats): Promise<void> {
    for (const model of this.#models) {
      const actor = await createInferenceActor(this.#nc, {
        ...this.#actorOptions(model),
        region: this.#o.region,
        actorId: `${this.hostId}/${model.name}`,
        concurrency: this.#o.concurrency,
        onChange: () => void this.beat(),
        logger: this.#log,
      });
      this.actors.push(actor);
      heartbeats.add(actor, model);
      this.#log.info(
        { model: model.name, version: model.version, isolation: model.isolation },
        'actor started',
      );
    }
  }

  /** What every actor of this host shares, whichever region's queue it works on. */
  #actorOptions(
    model: ModelHandle,
  ): Pick<
    InferenceActorOptions,
    'model' | 'maxAttempts' | 'retryScheduleMs' | 'ackWaitMs' | 'breaker'
  > {
    return {
      model,
      maxAttempts: this.#o.maxAttempts,
      retryScheduleMs: this.#o.retryScheduleMs,
      ackWaitMs: this.#o.ackWaitMs,
      ...(this.#o.breaker ? { breaker: this.#o.breaker } : {}),
    };
  }

  /** Actors on other regions' queues share this host's models at half its concurrency. */
  async #startRescue(): Promise<BacklogRescue | undefined> {
    const rescue = this.#o.rescue;
    const regions = rescue?.regions ?? [];
    if (regions.length === 0) return undefined;
    const js = jetstream(this.#nc);
    this.#health = await watchActorHealth(js, undefined, regions, this.#log);
    return startBacklogRescue({
      regions,
      models: this.#models,
      graceMs: rescue?.graceMs ?? BACKLOG_RESCUE_DEFAULTS.graceMs,
      checkIntervalMs: rescue?.checkIntervalMs ?? BACKLOG_RESCUE_DEFAULTS.checkIntervalMs,
      releaseGraceMs: BACKLOG_RESCUE_DEFAULTS.releaseGraceMs,
      fitFor: (model) => this.#fitToRescue(model),
      adopt: (region, model) =>
        createInferenceActor(this.#nc, {
          ...this.#actorOptions(model),
          region,
          actorId: `${this.hostId}/${model.name}@${region}`,
          concurrency: Math.max(1, Math.floor(this.#o.concurrency / 2)),
          logger: this.#log.child({ rescuing: region }),
        }),
      health: this.#health,
      jsm: await js.jetstreamManager(),
      logger: this.#log,
    });
  }

  /** A host whose own actor for the model cannot work (restarting, breaker open) takes no more. */
  #fitToRescue(model: ModelHandle): boolean {
    const actor = this.actors[this.#models.indexOf(model)];
    return (
      this.#state === ActorState.Running &&
      model.available &&
      actor !== undefined &&
      actor.stats().breaker !== BreakerState.Open
    );
  }

  async #closeAfterFailedStart(): Promise<void> {
    await this.#rescue?.stop();
    this.#heartbeats?.stop();
    this.#health?.close();
    await Promise.allSettled(this.actors.map((a) => a.stop()));
    await this.#supervisor.stop();
    await Promise.allSettled(this.#supervised.map((m) => m.close()));
    await this.#nc.close();
  }

  /** Stops taking work first, then lets it finish, then releases the models and the connection. */
  async #drainInOrder(graceMs: number): Promise<void> {
    if (this.#state !== ActorState.Failed) this.#state = ActorState.Draining;
    const drained = Promise.allSettled([
      ...this.actors.map((a) => a.drain(graceMs)),
      this.#rescue?.stop(),
      this.#unserved?.stop(),
    ]);
    await this.beat(); // the last heartbeat says draining: gateways stop sending work here
    await drained;
    this.#health?.close();
    await this.#supervisor.stop();
    await Promise.allSettled(this.#supervised.map((m) => m.close()));
    this.#heartbeats?.stop();
    await this.#service?.stop().catch(() => undefined);
    await this.beat();
    await this.#nc.drain();
  }
}

/** The supervisor's events worth an operator's attention; every one but `restarting` is beaten. */
function logSupervisorEvent(logger: Logger, event: SupervisorEvent): void {
  if (event.type === 'started' && event.attempt > 0) {
    logger.warn(
      { model: event.name, attempt: event.attempt, downMs: event.downMs },
      'model executor restarted',
    );
  } else if (event.type === 'exited' && event.unexpected) {
    logger.warn({ model: event.name, reason: event.reason }, 'model executor died');
  } else if (event.type === 'hung') {
    logger.warn({ model: event.name }, 'model executor unresponsive; replacing it');
  } else if (event.type === 'escalated') {
    logger.error({ ...event }, 'restart intensity exceeded; giving up');
  }
}
