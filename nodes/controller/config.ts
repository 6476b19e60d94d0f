/** The controller's configuration, read once from the environment at start-up. */
import type { Logger } from 'pino';
import { NAME_TOKEN } from '../../protocol/index.js';
import { ConfigError, envInt, envList, envString } from '../common/env.js';
import { natsOptionsFromEnv, secondUserOptionsFromEnv } from '../common/nats-connection.js';
import { WEBHOOK_DEFAULTS } from './alerts.js';
import { CONTROLLER_DEFAULTS, type ControllerOptions } from './controller.js';
import { checkLeaseMs } from './lease.js';
import { loadRules } from './rules.js';

/** The rules file used when `VIGIL_ALERT_RULES` is unset, relative to the working directory. */
export const DEFAULT_RULES_FILE = 'deploy/alerts/rules.json';

/**
 * Reads:
 * - `NATS_URL`, `NATS_NKEY` + `NATS_INBOX_PREFIX` (the `controller` user), or user/password/token
 * - `VIGIL_REGION` (default `local`) and `VIGIL_CONTROLLER_REGIONS` (comma-separated; default the
 *   one region): the regions watched and acted in
 * - `VIGIL_ALERT_RULES`: the rules file (JSON; default {@link DEFAULT_RULES_FILE})
 * - `VIGIL_CONTROLLER_LEASE_MS` (10 000): the leader lease; a standby takes over this long after
 *   the leader's last renewal
 * - `VIGIL_CONTROLLER_EVAL_MS` (1 000): how often the rules are evaluated
 * - `VIGIL_SYS_NATS_NKEY` + `VIGIL_SYS_NATS_INBOX_PREFIX` (the `sys` user): optional; with them
 *   the controller also reports each nats-server's JetStream storage (system account only)
 * - `VIGIL_ALERT_WEBHOOK`: URL alerts are POSTed to (unset: NATS only);
 *   `VIGIL_ALERT_WEBHOOK_TIMEOUT_MS` (5 000), `VIGIL_ALERT_WEBHOOK_ATTEMPTS` (3)
 */
export function controllerOptionsFromEnv(
  env: NodeJS.ProcessEnv,
  logger: Logger,
): ControllerOptions {
  const region = envString(env, 'VIGIL_REGION', 'local', NAME_TOKEN);
  const listed = envList(env, 'VIGIL_CONTROLLER_REGIONS', NAME_TOKEN);
  const webhookUrl = envString(env, 'VIGIL_ALERT_WEBHOOK', '');
  if (webhookUrl !== '' && !URL.canParse(webhookUrl)) {
    throw new ConfigError(`VIGIL_ALERT_WEBHOOK=${webhookUrl} is not a URL`);
  }
  const nats = natsOptionsFromEnv(env, '');
  const sysNats = secondUserOptionsFromEnv(env, 'VIGIL_SYS_NATS', nats);
  return {
    regions: listed.length > 0 ? listed : [region],
    nats,
    ...(sysNats === undefined ? {} : { sysNats }),
    rules: loadRules(envString(env, 'VIGIL_ALERT_RULES', DEFAULT_RULES_FILE)),
    leaseMs: checkLeaseMs(
      envInt(env, 'VIGIL_CONTROLLER_LEASE_MS', CONTROLLER_DEFAULTS.leaseMs),
      'VIGIL_CONTROLLER_LEASE_MS',
    ),
    evalIntervalMs: envInt(
      env,
      'VIGIL_CONTROLLER_EVAL_MS',
      CONTROLLER_DEFAULTS.evalIntervalMs,
      10,
      600_000,
    ),
    ...(webhookUrl === ''
      ? {}
      : {
          webhook: {
            url: webhookUrl,
            timeoutMs: envInt(
              env,
              'VIGIL_ALERT_WEBHOOK_TIMEOUT_MS',
              WEBHOOK_DEFAULTS.timeoutMs,
              1,
              600_000,
            ),
            attempts: envInt(env, 'VIGIL_ALERT_WEBHOOK_ATTEMPTS', WEBHOOK_DEFAULTS.attempts, 1, 20),
          },
        }),
    logger,
  };
}
