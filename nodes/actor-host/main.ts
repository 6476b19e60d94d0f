/** Actor host process: reads the environment, starts the actors, drains on SIGTERM/SIGINT. */
import { jsonLogger, LOG_LEVELS, type LogLevel } from '../../actors/log.js';
import { envInt } from '../common/env.js';
import { runUntilSignal } from '../common/process.js';
import { actorHostOptionsFromEnv } from './config.js';
import { startActorHost } from './host.js';

const level = (process.env['VIGIL_LOG_LEVEL'] ?? 'info') as LogLevel;
const logger = jsonLogger({ node: 'actor-host' }, LOG_LEVELS.includes(level) ? level : 'info');
await runUntilSignal('actor-host', logger, async () => {
  const host = await startActorHost(actorHostOptionsFromEnv(process.env, logger));
  const graceMs = envInt(process.env, 'VIGIL_DRAIN_GRACE_MS', 30_000, 0, 3600_000);
  return {
    stop: () => host.drain(graceMs),
    ready: { host: host.hostId, models: host.actors.map((a) => a.model) },
  };
});
