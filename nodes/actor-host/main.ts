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
  // Past the restart intensity the host gives up: exit non-zero so systemd or Kubernetes
  // restarts the whole process (Erlang's escalation to the next supervisor up).
  void host.escalated.then(async (escalation) => {
    logger.error('escalating: exiting so the host is restarted', { ...escalation });
    await host.drain(0).catch(() => undefined);
    process.exit(70);
  });
  const graceMs = envInt(process.env, 'VIGIL_DRAIN_GRACE_MS', 30_000, 0, 3600_000);
  return {
    stop: () => host.drain(graceMs),
    ready: { host: host.hostId, models: host.actors.map((a) => a.model) },
  };
});
