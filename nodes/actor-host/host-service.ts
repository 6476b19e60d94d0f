/**
 * The host's discovery through the standard NATS services protocol (`@nats-io/services`):
 * `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` find every host, and each model has a status endpoint
 * answering with its actor's heartbeat as of now, for callers that cannot wait for the next beat.
 */
import { Svcm, type Service } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import type { InferenceActor, ModelHandle } from '../../actors/index.js';
import { subjects, type ActorHeartbeat } from '../../protocol/index.js';

/** One actor the service describes. */
export interface ServedActor {
  actor: InferenceActor;
  model: ModelHandle;
}

/** Options of {@link registerHostService}. */
export interface HostServiceOptions {
  region: string;
  hostId: string;
  actors: readonly ServedActor[];
  /** The status an endpoint answers with. */
  statusOf(actor: InferenceActor, model: ModelHandle): ActorHeartbeat;
}

/** Registers the `vigil-actor-host` service with a status endpoint per model. */
export async function registerHostService(
  nc: NatsConnection,
  o: HostServiceOptions,
): Promise<Service> {
  const service = await new Svcm(nc).add({
    name: 'vigil-actor-host',
    version: '0.1.0',
    description: 'Vigil inference actors',
    metadata: {
      region: o.region,
      host: o.hostId,
      models: o.actors.map(({ model }) => `${model.name}@${model.version}`).join(','),
    },
  });
  for (const { actor, model } of o.actors) {
    service.addEndpoint(`${model.name}-status`, {
      subject: subjects.serviceStatus(o.region, model.name, o.hostId),
      metadata: { model: model.name },
      handler: (_err, msg) => {
        msg.respond(JSON.stringify(o.statusOf(actor, model)));
      },
    });
  }
  return service;
}
