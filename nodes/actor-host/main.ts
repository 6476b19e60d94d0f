/**
 * Actor host process: reads its configuration (`config.ts`; `--help` lists it), starts telemetry
 * and the actors, drains on SIGTERM/SIGINT.
 */
import { runUntilSignal, startWithRetry, startUp, startTelemetry } from '../common/index.js';
import { ACTOR_HOST_CONFIG, actorHostOptions } from './config.js';
import { startActorHost } from './host.js';

const { settings, logger } = startUp(ACTOR_HOST_CONFIG, process.argv.slice(2), process.env);
await runUntilSignal('actor-host', logger, async () => {
  const options = actorHostOptions(settings, logger);
  // Before the actors: meters taken earlier would stay no-ops.
  const telemetry = await startTelemetry(settings.telemetry, {
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
  return {
    stop: async () => {
      await host.drain(settings.host.drainGraceMs);
      await telemetry.shutdown();
    },
    ready: {
      host: host.hostId,
      models: host.actors.map((a) => a.model),
      ...(telemetry.metricsUrl === undefined ? {} : { metricsUrl: telemetry.metricsUrl }),
    },
  };
});
