/**
 * How every Vigil process connects to NATS: reconnect forever (an edge outlives broker restarts),
 * and no async stack traces on the hot path (measured: capturing one per request and publish cost
 * a third of the gateway's throughput).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../actors/log.js';

/** Where and as whom to connect. */
export interface NatsConnectOptions {
  /** Comma-separated server URLs. */
  servers: string;
  /** Connection name, shown in nats-server monitoring. */
  name: string;
  user?: string;
  pass?: string;
  token?: string;
}

/** Connects with Vigil's connection policy and logs status changes. */
export async function connectNats(
  options: NatsConnectOptions,
  logger: Logger,
): Promise<NatsConnection> {
  const nc = await connect({
    servers: options.servers.split(',').map((s) => s.trim()),
    name: options.name,
    ...(options.user === undefined ? {} : { user: options.user, pass: options.pass ?? '' }),
    ...(options.token === undefined ? {} : { token: options.token }),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') {
        logger.warn(`nats ${status.type}`, {
          server: 'server' in status ? status.server : undefined,
        });
      }
    }
  })();
  return nc;
}

/** Reads NATS connection settings from the environment (node `main.ts` files only). */
export function natsOptionsFromEnv(env: NodeJS.ProcessEnv, name: string): NatsConnectOptions {
  const options: NatsConnectOptions = { servers: env['NATS_URL'] ?? 'nats://127.0.0.1:4222', name };
  if (env['NATS_USER']) options.user = env['NATS_USER'];
  if (env['NATS_PASSWORD']) options.pass = env['NATS_PASSWORD'];
  if (env['NATS_TOKEN']) options.token = env['NATS_TOKEN'];
  return options;
}
