/**
 * An actor host: one NATS connection, one inference actor per model it serves, heartbeats for
 * each actor in the region's actors bucket, and a NATS service (`$SRV.PING/INFO/STATS`) through
 * which internal services find them. `main.ts` builds the options from the environment; tests
 * call this directly.
 */
import { hostname } from 'node:os';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Svcm, type Service } from '@nats-io/services';
import {
  createHeartbeats,
  createInferenceActor,
  superviseModel,
  type Heartbeats,
  type InferenceActor,
  type ModelHandle,
  type SupervisedModel,
} from '../../actors/index.js';
import type { CircuitBreakerOptions } from '../../actors/circuit-breaker.js';
import type { ExecutorSpec } from '../../actors/executors/index.js';
import {
  createSupervisor,
  type Escalation,
  type SupervisorOptions,
} from '../../actors/supervisor.js';
import type { Logger } from 'pino';
import {
  ActorState,
  assetNames,
  BreakerState,
  HostCommandName,
  hostCommandSchema,
  newTaskId,
  subjects,
  type HostCommand,
  type HostCommandReply,
  watchActorHealth,
  type ActorHealth,
} from '../../protocol/index.js';
import { connectNats, type NatsConnectOptions } from '../common/nats-connection.js';
import {
  BACKLOG_RESCUE_DEFAULTS,
  startBacklogRescue,
  type BacklogRescue,
} from './backlog-rescue.js';

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

/** Starts a host serving `options.models`. */
export async function startActorHost(options: ActorHostOptions): Promise<ActorHost> {
  const hostId = tokenSafe(`${hostname()}-${process.pid}-${newTaskId().slice(0, 6)}`);
  const logger = options.logger.child({ host: hostId });
  const nc = await connectNats(
    { ...options.nats, name: options.nats.name || `actor-host-${hostId}` },
    logger,
  );
  const startedAt = Date.now();
  let heartbeats: Heartbeats | undefined;
  const models: ModelHandle[] = [];
  const supervised: SupervisedModel[] = [];
  const supervisor = createSupervisor({
    ...options.supervision,
    onEvent: (event) => {
      if (event.type === 'started' && event.attempt > 0) {
        logger.warn(
          {
            model: event.name,
            attempt: event.attempt,
            downMs: event.downMs,
          },
          'model executor restarted',
        );
      } else if (event.type === 'exited' && event.unexpected) {
        logger.warn({ model: event.name, reason: event.reason }, 'model executor died');
      } else if (event.type === 'hung') {
        logger.warn({ model: event.name }, 'model executor unresponsive; replacing it');
      } else if (event.type === 'escalated') {
        logger.error({ ...event }, 'restart intensity exceeded; giving up');
      }
      if (event.type !== 'restarting') void beat();
    },
  });
  const actors: InferenceActor[] = [];
  let state: ActorState = ActorState.Starting;

  /** Writes every actor's heartbeat; nothing before the actors bucket is open. */
  const beat = (): Promise<void> => heartbeats?.beat() ?? Promise.resolve();

  /** Runs one controller command; never throws (the outcome is the reply). */
  const runCommand = async (command: string, body: HostCommand): Promise<HostCommandReply> => {
    if (command === HostCommandName.Drain) {
      logger.warn({ reason: body.reason }, 'drain requested by the controller');
      // After the reply is flushed: the drain closes the connection the reply goes out on.
      setImmediate(options.onDrainCommand ?? (() => process.kill(process.pid, 'SIGTERM')));
      return { ok: true };
    }
    if (command !== HostCommandName.Restart)
      return { ok: false, error: `unknown command '${command}'` };
    const i = models.findIndex((m) => m.name === body.model);
    if (i < 0) return { ok: false, error: `model '${String(body.model)}' is not served here` };
    logger.warn(
      {
        model: body.model,
        reason: body.reason,
      },
      'model restart requested by the controller',
    );
    try {
      await supervised[i]!.restart(body.reason ?? 'controller');
      return {
        ok: true,
        model: models[i]!.name,
        pid: models[i]!.pid,
        restarts: models[i]!.restarts,
      };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  };
  const listenForCommands = (): void => {
    const commands = subjects.hostCommandsOf(options.region, hostId);
    const prefix = commands.slice(0, -1); // the command is the last token
    nc.subscribe(commands, {
      callback: (err, msg) => {
        if (err) return logger.warn({ err }, 'command subscription failed');
        let parsed: ReturnType<typeof hostCommandSchema.safeParse>;
        try {
          parsed = hostCommandSchema.safeParse(msg.json());
        } catch {
          parsed = hostCommandSchema.safeParse(undefined);
        }
        if (!parsed.success) {
          msg.respond(JSON.stringify({ ok: false, error: 'unreadable command' }));
          return;
        }
        void runCommand(msg.subject.slice(prefix.length), parsed.data).then((reply) => {
          msg.respond(JSON.stringify(reply));
          void beat();
        });
      },
    });
  };

  /** Actors on other regions' queues share this host's models at half its concurrency. */
  const startRescue = async (): Promise<BacklogRescue | undefined> => {
    const regions = options.rescue?.regions ?? [];
    if (regions.length === 0) return undefined;
    health = await watchActorHealth(jetstream(nc), undefined, regions, logger);
    return startBacklogRescue({
      regions,
      models,
      graceMs: options.rescue?.graceMs ?? BACKLOG_RESCUE_DEFAULTS.graceMs,
      checkIntervalMs: options.rescue?.checkIntervalMs ?? BACKLOG_RESCUE_DEFAULTS.checkIntervalMs,
      releaseGraceMs: BACKLOG_RESCUE_DEFAULTS.releaseGraceMs,
      // A host whose own actor for the model cannot work (restarting, breaker open) takes no more.
      fitFor: (model) => {
        const actor = actors[models.indexOf(model)];
        return (
          state === ActorState.Running &&
          model.available &&
          actor !== undefined &&
          actor.stats().breaker !== BreakerState.Open
        );
      },
      adopt: (region, model) =>
        createInferenceActor(nc, {
          region,
          model,
          actorId: `${hostId}/${model.name}@${region}`,
          concurrency: Math.max(1, Math.floor(options.concurrency / 2)),
          maxAttempts: options.maxAttempts,
          retryScheduleMs: options.retryScheduleMs,
          ackWaitMs: options.ackWaitMs,
          ...(options.breaker ? { breaker: options.breaker } : {}),
          logger: logger.child({ rescuing: region }),
        }),
      health,
      jsm: await jetstream(nc).jetstreamManager(),
      logger,
    });
  };

  let service: Service | undefined;
  let health: ActorHealth | undefined;
  let rescue: BacklogRescue | undefined;
  try {
    heartbeats = createHeartbeats({
      bucket: await new Kvm(nc).open(assetNames.actorBucket(options.region)),
      region: options.region,
      hostId,
      startedAt,
      intervalMs: options.heartbeatIntervalMs,
      hostState: () => state,
      logger,
    });
    for (const spec of options.executors) {
      const model = await superviseModel(supervisor, spec, options.spares ?? 0);
      supervised.push(model);
      models.push(model.handle);
    }
    for (const model of models) {
      const actor = await createInferenceActor(nc, {
        region: options.region,
        model,
        actorId: `${hostId}/${model.name}`,
        concurrency: options.concurrency,
        maxAttempts: options.maxAttempts,
        retryScheduleMs: options.retryScheduleMs,
        ackWaitMs: options.ackWaitMs,
        ...(options.breaker ? { breaker: options.breaker } : {}),
        onChange: () => void beat(),
        logger,
      });
      actors.push(actor);
      heartbeats.add(actor, model);
      logger.info(
        {
          model: model.name,
          version: model.version,
          isolation: model.isolation,
        },
        'actor started',
      );
    }
    state = ActorState.Running;
    await beat();
    heartbeats.start();

    // Discovery through the standard NATS services protocol: $SRV.PING, $SRV.INFO, $SRV.STATS.
    service = await new Svcm(nc).add({
      name: 'vigil-actor-host',
      version: '0.1.0',
      description: 'Vigil inference actors',
      metadata: {
        region: options.region,
        host: hostId,
        models: models.map((m) => `${m.name}@${m.version}`).join(','),
      },
    });
    listenForCommands();
    rescue = await startRescue();
    actors.forEach((actor, i) => {
      const model = models[i]!;
      service!.addEndpoint(`${model.name}-status`, {
        subject: subjects.serviceStatus(options.region, model.name, hostId),
        metadata: { model: model.name },
        handler: (_err, msg) => {
          msg.respond(JSON.stringify(heartbeats!.of(actor, model)));
        },
      });
    });
  } catch (err) {
    heartbeats?.stop();
    health?.close();
    await Promise.allSettled(actors.map((a) => a.stop()));
    await supervisor.stop();
    await Promise.allSettled(supervised.map((m) => m.close()));
    await nc.close();
    throw err;
  }

  const escalated = supervisor.escalated.then(async (escalation) => {
    state = ActorState.Failed;
    await beat();
    return escalation;
  });

  let draining: Promise<void> | undefined;
  return {
    hostId,
    actors,
    escalated,
    beat,
    drain(graceMs: number): Promise<void> {
      draining ??= (async () => {
        if (state !== ActorState.Failed) state = ActorState.Draining;
        const drained = Promise.allSettled([
          ...actors.map((a) => a.drain(graceMs)),
          rescue?.stop(),
        ]);
        await beat(); // the last heartbeat says draining: gateways stop sending work here
        await drained;
        health?.close();
        await supervisor.stop();
        await Promise.allSettled(supervised.map((m) => m.close()));
        heartbeats?.stop();
        await service?.stop().catch(() => undefined);
        await beat();
        await nc.drain();
      })();
      return draining;
    },
  };
}
