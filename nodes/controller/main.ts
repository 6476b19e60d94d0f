/** Controller process: reads the environment, competes for the lease, evaluates alert rules. */
import { jsonLogger, LOG_LEVELS, type LogLevel } from '../../actors/log.js';
import { runUntilSignal } from '../common/process.js';
import { controllerOptionsFromEnv } from './config.js';
import { startController } from './controller.js';

const level = (process.env['VIGIL_LOG_LEVEL'] ?? 'info') as LogLevel;
const logger = jsonLogger({ node: 'controller' }, LOG_LEVELS.includes(level) ? level : 'info');
await runUntilSignal('controller', logger, async () => {
  const options = controllerOptionsFromEnv(process.env, logger);
  const controller = await startController(options);
  return {
    stop: () => controller.stop(),
    ready: {
      controllerId: controller.controllerId,
      regions: options.regions,
      rules: options.rules.map((r) => r.name),
    },
  };
});
