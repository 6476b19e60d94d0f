/**
 * An actor host: one NATS connection and one inference actor per model it serves. `main.ts`
 * builds the options from the environment; tests call this directly.
 */
import { hostname } from 'node:os';
import { createInferenceActor, type InferenceActor } from '../../actors/index.js';
import type { Logger } from '../../actors/log.js';
import type { ModelRuntime } from '../../actors/runtimes/index.js';
import { newTaskId } from '../../protocol/index.js';
import { connectNats, type NatsConnectOptions } from '../common/nats-connection.js';

/** Everything an actor host needs to start. */
export interface ActorHostOptions {
  region: string;
  nats: NatsConnectOptions;
  /** The models to serve, already loaded. */
  runtimes: readonly ModelRuntime[];
  /** Tasks each actor runs at once. */
  concurrency: number;
  /** Attempts before a retryable failure is dead-lettered. */
  maxAttempts: number;
  /** Backoff between attempts, ms; the last entry repeats. */
  retryScheduleMs: readonly number[];
  /** Consumer ack wait, ms. */
  ackWaitMs: number;
  logger: Logger;
}

/** A started host. */
export interface ActorHost {
  readonly hostId: string;
  readonly actors: readonly InferenceActor[];
  /** Stops pulling, finishes in-flight tasks, hands buffered ones back, disconnects. Idempotent. */
  close(): Promise<void>;
}

/** Starts a host serving `options.runtimes`. */
export async function startActorHost(options: ActorHostOptions): Promise<ActorHost> {
  const hostId = `${hostname()}-${process.pid}-${newTaskId().slice(0, 6)}`;
  const logger = options.logger.child({ host: hostId });
  const nc = await connectNats(
    { ...options.nats, name: options.nats.name || `actor-host-${hostId}` },
    logger,
  );
  const actors: InferenceActor[] = [];
  try {
    for (const runtime of options.runtimes) {
      actors.push(
        await createInferenceActor(nc, {
          region: options.region,
          runtime,
          actorId: `${hostId}/${runtime.name}`,
          concurrency: options.concurrency,
          maxAttempts: options.maxAttempts,
          retryScheduleMs: options.retryScheduleMs,
          ackWaitMs: options.ackWaitMs,
          logger,
        }),
      );
      logger.info('actor started', { model: runtime.name, version: runtime.version });
    }
  } catch (err) {
    await Promise.allSettled(actors.map((a) => a.stop()));
    await nc.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    hostId,
    actors,
    close(): Promise<void> {
      closing ??= (async () => {
        await Promise.allSettled(actors.map((a) => a.stop()));
        await nc.drain();
      })();
      return closing;
    },
  };
}
