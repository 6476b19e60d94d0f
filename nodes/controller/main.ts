/**
 * Controller process: reads its configuration (`config.ts`; `--help` lists it), competes for the
 * lease, evaluates alert rules.
 */
import { runUntilSignal, startWithRetry, startUp, startTelemetry } from '../common/index.js';
import { CONTROLLER_CONFIG, controllerOptions } from './config.js';
import { startController } from './controller.js';

const { settings, logger } = startUp(CONTROLLER_CONFIG, process.argv.slice(2), process.env);
await runUntilSignal('controller', logger, async () => {
  const options = controllerOptions(settings, logger);
  // Metrics only matter here (stream storage, NATS state); the controller serves no requests.
  const telemetry = await startTelemetry(settings.telemetry, {
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
