/** Gateway process: reads the environment, starts the gateway, stops cleanly on SIGTERM/SIGINT. */
import { jsonLogger, LOG_LEVELS, type LogLevel } from '../../actors/log.js';
import { runUntilSignal } from '../common/process.js';
import { gatewayOptionsFromEnv } from './config.js';
import { startGateway } from './gateway.js';

const level = (process.env['VIGIL_LOG_LEVEL'] ?? 'info') as LogLevel;
const logger = jsonLogger({ node: 'gateway' }, LOG_LEVELS.includes(level) ? level : 'info');
await runUntilSignal('gateway', logger, async () => {
  const gateway = await startGateway(gatewayOptionsFromEnv(process.env, logger));
  return { stop: () => gateway.close(), ready: { url: gateway.url } };
});
