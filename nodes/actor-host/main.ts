/**
 * Actor host process: reads the environment, starts telemetry and the actors, drains on
 * SIGTERM/SIGINT. Telemetry settings: see `nodes/common/telemetry.ts` (`OTEL_*`,
 * `VIGIL_TELEMETRY`, `VIGIL_METRICS_PORT`, `VIGIL_METRICS_HOST`); the service name defaults to
 * `vigil-actor-host`.
 */
import { envInt } from '../common/env.js';
import { createLogger, logLevelFromEnv } from '../common/logger.js';
import { runUntilSignal, startWithRetry } from '../common/process.js';
import { startTelemetry } from '../common/telemetry.js';
import { actorHostOptionsFromEnv } from './config.js';
import { startActorHost } from './host.js';

const logger = createLogger({ node: 'actor-host' }, logLevelFromEnv(process.env));
await runUntilSignal('actor-host', logger, async () => {
  const options = actorHostOptionsFromEnv(process.env, logger);
  // Before the actors: meters taken earlier would stay no-ops.
  const telemetry = await startTelemetry(process.env, {
    node: 'actor-host',
    region: options.region,
    logger,
  });
  const host = await startWithRetry('actor host', logger, () => startActorHost(options)).catch(
    async (err: unknown) => {
      await telemetry.shutdown();
      throw err;
    },
  );
  // Past the restart intensity the host gives up: exit non-zero so systemd or Kubernetes
  // restarts the whole process (Erlang's escalation to the next supervisor up).
  void host.escalated.then(async (escalation) => {
    logger.error({ ...escalation }, 'escalating: exiting so the host is restarted');
    await host.drain(0).catch(() => undefined);
    await telemetry.shutdown();
    process.exit(70);
  });
  const graceMs = envInt(process.env, 'VIGIL_DRAIN_GRACE_MS', 30_000, 0, 3600_000);
  return {
    stop: async () => {
      await host.drain(graceMs);
      await telemetry.shutdown();
    },
    ready: {
      host: host.hostId,
      models: host.actors.map((a) => a.model),
      ...(telemetry.metricsUrl === undefined ? {} : { metricsUrl: telemetry.metricsUrl }),
    },
  };
});
