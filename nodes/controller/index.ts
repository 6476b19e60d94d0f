/** The controller: leader-elected alert rules with automatic recovery. */
export { startController, CONTROLLER_DEFAULTS } from './controller.js';
export type { Controller, ControllerOptions } from './controller.js';
export { CONTROLLER_CONFIG, controllerOptionsFromEnv, DEFAULT_RULES_FILE } from './config.js';
export {
  ActionType,
  conditionHolds,
  loadRules,
  METRICS,
  parseRules,
  Scope,
  SEVERITIES,
} from './rules.js';
export type { AlertRule, MetricName, MetricValue, Operator, Severity } from './rules.js';
export {
  checkLeaseMs,
  LEADER_KEY,
  leaderActsUntil,
  leaseExpired,
  renewIntervalMs,
  standbyPollMs,
} from './lease.js';
export type { LeaseRecord } from './lease.js';
export { alertSubject } from './alerts.js';
export type { AlertEvent } from './alerts.js';
export { isReversible, rolloutHoldKey, routeOverrideKey } from './actions.js';
export type { ActionRecord, Holder, RolloutHold, RouteOverride } from './actions.js';
