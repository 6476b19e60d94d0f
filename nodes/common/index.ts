/**
 * What every node shares, through one door: the declared configuration (settings, `--help`,
 * start-up), the logger, the NATS connection, telemetry and metrics, and a node's life as a
 * process (readiness line, signals, retried start-up).
 */
export { renderHelp } from './config-help.js';
export { makeDirectory, makeNamedDirectory } from './directories.js';
export {
  ConfigError,
  REDACTED,
  custom,
  decimal,
  DURATION_MS_ITEM,
  MAX_TIMER_MS,
  durationMs,
  file,
  flag,
  flagOf,
  host,
  humanDuration,
  int,
  json,
  list,
  name,
  names,
  nodeConfig,
  oneOf,
  parseConfig,
  parseSettings,
  readFlags,
  settingsGroup,
  text,
  url,
} from './env.js';
export type {
  ConfigValues,
  Env,
  Flag,
  GroupMap,
  GroupValues,
  NodeConfig,
  Rule,
  Setting,
  SettingsGroup,
  SettingsShape,
} from './env.js';
export { LOG_SETTINGS, createLogger, silentLogger } from './logger.js';
export type { LogLevel } from './logger.js';
export {
  gatewayTaskMetrics,
  observeNatsConnection,
  observeQueues,
  observeServerStorage,
  observeStreamStorage,
} from './metrics.js';
export type { GatewayTaskMetrics } from './metrics.js';
export {
  NATS_SETTINGS,
  connectNats,
  NATS_MAX_PINGS_OUT,
  NATS_PING_INTERVAL_MS,
  inboxPrefixSetting,
  natsAuthOptions,
  natsConnectOptions,
  natsOptionsFromEnv,
  nkeySeedSetting,
  readNkeySeed,
  secondUserOptions,
} from './nats-connection.js';
export type { NatsConnectOptions, NatsSettings } from './nats-connection.js';
export { READY_MESSAGE, isTransientStartError, runUntilSignal, startWithRetry } from './process.js';
export { readNodeConfig, startUp } from './start-up.js';
export { TELEMETRY_SETTINGS, startTelemetry } from './telemetry.js';
