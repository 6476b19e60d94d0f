/** Controller process: reads the environment, competes for the lease, evaluates alert rules. */
import { createLogger, logLevelFromEnv } from '../common/logger.js';
import { runUntilSignal, startWithRetry } from '../common/process.js';
import { startTelemetry } from '../common/telemetry.js';
import { controllerOptionsFromEnv } from './config.js';
import { startController } from './controller.js';

const logger = createLogger({ node: 'controller' }, logLevelFromEnv(process.env));
await runUntilSignal('controller', logger, async () => {
  const options = controllerOptionsFromEnv(process.env, logger);
  // Metrics only matter here (stream storage, NATS state); the controller serves no requests.
  const telemetry = await startTelemetry(process.env, {
    node: 'controller',
    region: options.regions[0] ?? 'local',
    logger,
  });
  let controller;
  try {
    controller = await startWithRetry('controller', logger, () => startController(options));
  } catch (err) {
    await telemetry.shutdown();
    throw err;
  }
  const running = controller;
  return {
    stop: async () => {
      await running.stop();
      await telemetry.shutdown();
    },
    ready: {
      controllerId: running.controllerId,
      regions: options.regions,
      rules: options.rules.map((r) => r.name),
      ...(telemetry.metricsUrl === undefined ? {} : { metricsUrl: telemetry.metricsUrl }),
    },
  };
});
