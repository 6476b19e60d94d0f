/**
 * Gateway process: reads its configuration (`config.ts`; `--help` lists it), starts telemetry and
 * the gateway, stops cleanly on SIGTERM/SIGINT.
 */
import { runUntilSignal, startWithRetry, startUp, startTelemetry } from '../common/index.js';
import { GATEWAY_CONFIG, gatewayOptions } from './config.js';
import { startGateway } from './gateway.js';

const { settings, logger } = startUp(GATEWAY_CONFIG, process.argv.slice(2), process.env);
await runUntilSignal('gateway', logger, async () => {
  const options = gatewayOptions(settings, logger);
  // Before the gateway: meters taken earlier would stay no-ops.
  const telemetry = await startTelemetry(settings.telemetry, {
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
