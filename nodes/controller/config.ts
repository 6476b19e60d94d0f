/** The controller's configuration: what it reads, declared once, and the options built from it. */
import type { Logger } from 'pino';
import {
  durationMs,
  file,
  int,
  name,
  names,
  nodeConfig,
  parseConfig,
  settingsGroup,
  url,
  type ConfigValues,
  type Env,
  LOG_SETTINGS,
  inboxPrefixSetting,
  NATS_SETTINGS,
  natsConnectOptions,
  nkeySeedSetting,
  secondUserOptions,
  TELEMETRY_SETTINGS,
} from '../common/index.js';
import { WEBHOOK_DEFAULTS } from './alerts.js';
import { CONTROLLER_DEFAULTS, type ControllerOptions } from './controller.js';
import { MIN_LEASE_MS } from './lease.js';
import { loadRules } from './rules.js';

/** The rules file used when `VIGIL_ALERT_RULES` is unset, relative to the working directory. */
export const DEFAULT_RULES_FILE = 'deploy/alerts/rules.json';

/** What the controller itself reads. */
export const CONTROLLER_SETTINGS = settingsGroup({
  id: 'controller-settings',
  title: 'Controller',
  settings: {
    region: name({
      name: 'VIGIL_REGION',
      default: 'local',
      meaning:
        'The region of its connection; the one watched when `VIGIL_CONTROLLER_REGIONS` is unset.',
    }),
    regions: names({
      name: 'VIGIL_CONTROLLER_REGIONS',
      defaultText: '`VIGIL_REGION`',
      meaning: 'The regions it watches and acts in (`eu,us`).',
    }),
    rules: file({
      name: 'VIGIL_ALERT_RULES',
      holds: 'JSON file',
      defaultRaw: DEFAULT_RULES_FILE,
      read: (path) => loadRules(path),
      meaning:
        'The alert rules (conditions, severities, recovery actions), checked whole at start-up; ' +
        'a relative path is from the working directory.',
    }),
    leaseMs: durationMs({
      name: 'VIGIL_CONTROLLER_LEASE_MS',
      min: MIN_LEASE_MS,
      default: CONTROLLER_DEFAULTS.leaseMs,
      meaning: "The leader lease: a standby takes over this long after the leader's last renewal.",
    }),
    evalIntervalMs: durationMs({
      name: 'VIGIL_CONTROLLER_EVAL_MS',
      min: 10,
      max: 600_000,
      default: CONTROLLER_DEFAULTS.evalIntervalMs,
      meaning: 'How often the leader evaluates the rules.',
    }),
    sysNkeySeed: nkeySeedSetting(
      'VIGIL_SYS_NATS_NKEY',
      "The system account's `sys` user's seed file: with it, the controller also reports each " +
        "nats-server's JetStream storage (only that account may ask).",
    ),
    sysInboxPrefix: inboxPrefixSetting(
      'VIGIL_SYS_NATS_INBOX_PREFIX',
      "The `sys` user's inbox prefix (`_INBOX_sys`).",
    ),
    webhookUrl: url({
      name: 'VIGIL_ALERT_WEBHOOK',
      secret: true,
      meaning:
        'Alerts are also POSTed here as JSON (webhook URLs often carry a token, so the value is ' +
        'never shown). Unset: alerts go to NATS only.',
    }),
    webhookTimeoutMs: durationMs({
      name: 'VIGIL_ALERT_WEBHOOK_TIMEOUT_MS',
      min: 1,
      max: 600_000,
      default: WEBHOOK_DEFAULTS.timeoutMs,
      meaning: 'How long one POST to the webhook may take.',
    }),
    webhookAttempts: int({
      name: 'VIGIL_ALERT_WEBHOOK_ATTEMPTS',
      min: 1,
      max: 20,
      default: WEBHOOK_DEFAULTS.attempts,
      meaning: 'Attempts per alert before the webhook delivery is given up (it stays on NATS).',
    }),
  },
});

/** Everything the controller reads. */
export const CONTROLLER_CONFIG = nodeConfig({
  node: 'controller',
  title: 'Controller',
  usage: 'node dist/nodes/controller/main.js [--help]',
  summary:
    'Evaluates the alert rules over heartbeats, queues and NATS state, and runs their recovery ' +
    'actions. Leader-elected through a KV lease: run two for a standby.',
  groups: {
    controller: CONTROLLER_SETTINGS,
    log: LOG_SETTINGS,
    nats: NATS_SETTINGS,
    telemetry: TELEMETRY_SETTINGS,
  },
});

/** The controller's parsed configuration. */
export type ControllerSettings = ConfigValues<(typeof CONTROLLER_CONFIG)['groups']>;

/** The controller's options from its parsed configuration. */
export function controllerOptions(settings: ControllerSettings, logger: Logger): ControllerOptions {
  const { controller: c } = settings;
  const nats = natsConnectOptions(settings.nats, '');
  const sysNats = secondUserOptions(nats, c.sysNkeySeed, c.sysInboxPrefix);
  return {
    regions: c.regions !== undefined && c.regions.length > 0 ? c.regions : [c.region],
    nats,
    ...(sysNats === undefined ? {} : { sysNats }),
    rules: c.rules,
    leaseMs: c.leaseMs,
    evalIntervalMs: c.evalIntervalMs,
    ...(c.webhookUrl === undefined
      ? {}
      : {
          webhook: {
            url: c.webhookUrl,
            timeoutMs: c.webhookTimeoutMs,
            attempts: c.webhookAttempts,
          },
        }),
    logger,
  };
}

/**
 * The controller's options from `env` (tests; `main.ts` goes through `startUp`).
 * @throws ConfigError naming every bad variable.
 */
export function controllerOptionsFromEnv(env: Env, logger: Logger): ControllerOptions {
  return controllerOptions(parseConfig(CONTROLLER_CONFIG, env), logger);
}
