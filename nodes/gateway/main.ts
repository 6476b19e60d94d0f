/**
 * Gateway process: reads the environment, starts telemetry and the gateway, stops cleanly on
 * SIGTERM/SIGINT. Telemetry settings: see `nodes/common/telemetry.ts` (`OTEL_*`, `VIGIL_TELEMETRY`,
 * `VIGIL_METRICS_PORT`, `VIGIL_METRICS_HOST`); the service name defaults to `vigil-gateway`.
 */
import { createLogger, logLevelFromEnv } from '../common/logger.js';
import { runUntilSignal, startWithRetry } from '../common/process.js';
import { startTelemetry } from '../common/telemetry.js';
import { gatewayOptionsFromEnv } from './config.js';
import { startGateway } from './gateway.js';

const logger = createLogger({ node: 'gateway' }, logLevelFromEnv(process.env));
await runUntilSignal('gateway', logger, async () => {
  const options = gatewayOptionsFromEnv(process.env, logger);
  // Before the gateway: meters taken earlier would stay no-ops.
  const telemetry = await startTelemetry(process.env, {
    node: 'gateway',
    region: options.region,
    logger,
  });
  const gateway = await startWithRetry('gateway', logger, () => startGateway(options)).catch(
    async (err: unknown) => {
      await telemetry.shutdown();
      throw err;
    },
  );
  return {
    stop: async () => {
      await gateway.close();
      await telemetry.shutdown();
    },
    ready: {
      url: gateway.url,
      ...(telemetry.metricsUrl === undefined ? {} : { metricsUrl: telemetry.metricsUrl }),
    },
  };
});
